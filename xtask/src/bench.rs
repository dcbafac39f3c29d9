//! `cargo xtask bench ...`: builds what a benchmark runs (release) and hands the command line
//! to `confab-bench`, where every benchmark lives (tables, `target/bench/*.json`, the parsing of
//! the programs' reports with serde). Kept here: which packages each one needs.

use crate::{cargo, root, status, Result};
use std::path::PathBuf;
use std::process::Command;

/// A benchmark: its name, the packages it runs (besides `confab-bench`), whether it needs
/// the test packages (Xvfb, Chromium, ...) rather than only the build ones, and the system
/// packages it needs besides those.
struct Bench {
    name: &'static str,
    packages: &'static [&'static str],
    test_packages: bool,
    system: &'static [&'static str],
}

const BENCHES: &[Bench] = &[
    Bench {
        name: "signal",
        packages: &["confab-signal", "confab-loadgen"],
        test_packages: false,
        // `--nodes K` joins K nodes through a real Redis.
        system: &["redis-server"],
    },
    Bench {
        name: "call",
        packages: &["confab-signal", "confab-peer"],
        test_packages: false,
        system: &[],
    },
    Bench {
        name: "network",
        packages: &["confab-signal", "confab-peer"],
        test_packages: false,
        // `--kernel`: the kernel lab, and Chromium beside Confab.
        system: &["iproute2", "nftables", "chromium"],
    },
    Bench {
        name: "room",
        packages: &["confab-signal", "confab-peer"],
        test_packages: false,
        // Calls through an SFU run through a real Janus.
        system: &["janus"],
    },
    Bench {
        name: "app",
        packages: &["confab", "confab-signal", "confab-peer"],
        test_packages: true,
        system: &[],
    },
    Bench {
        name: "vs-browser",
        packages: &["confab", "confab-signal", "confab-peer"],
        test_packages: true,
        system: &[],
    },
    Bench {
        name: "audio",
        // Its program, confab-audio-bench, is a binary of confab-media.
        packages: &["confab-media"],
        test_packages: false,
        // Its speech fixtures (without it, only the built-in synthetic voices).
        system: &["espeak-ng"],
    },
];

fn names() -> String {
    BENCHES.iter().map(|b| b.name).collect::<Vec<_>>().join("|")
}

pub fn main(args: &[String]) -> Result {
    let Some(first) = args.first() else {
        return Err(format!(
            "which benchmark? `cargo xtask bench {}` (add --help to any)",
            names()
        ));
    };
    let Some(bench) = BENCHES.iter().find(|b| b.name == first) else {
        return Err(format!(
            "unknown benchmark `{first}` (have: {})",
            names().replace('|', ", ")
        ));
    };
    let help = args.iter().any(|a| a == "--help" || a == "-h");
    let mut build = cargo();
    build.args(["build", "--release", "-p", "confab-bench"]);
    if help {
        // The help lives with the benchmark: only confab-bench is needed to print it.
        status(build, "building confab-bench (release)")?;
    } else {
        let mut system = if bench.test_packages {
            crate::deps::test_packages()
        } else {
            crate::deps::BUILD.to_vec()
        };
        system.extend(bench.system);
        crate::deps::ensure(&system)?;
        for p in bench.packages {
            build.args(["-p", p]);
        }
        status(
            build,
            &format!(
                "building {} and confab-bench (release)",
                bench.packages.join(", ")
            ),
        )?;
    }
    let bin = target_dir().join("release");
    let mut run = Command::new(bin.join("confab-bench"));
    // `-h` would print clap's short help; today's `-h` printed the whole text.
    run.args(args.iter().map(|a| if a == "-h" { "--help" } else { a }));
    if !help {
        run.arg("--bin-dir")
            .arg(&bin)
            .arg("--out-dir")
            .arg(target_dir().join("bench"));
    }
    status(run, &format!("bench {}", bench.name))
}

/// `confab-bench smoke` on the debug binaries the tests built (call, network and network
/// --kernel, briefly and small; figures to `target/bench-smoke`).
pub fn smoke() -> Result {
    let mut build = cargo();
    build.args(["build", "-p", "confab-bench"]);
    status(build, "building confab-bench")?;
    let bin = target_dir().join("debug");
    let mut run = Command::new(bin.join("confab-bench"));
    run.arg("smoke")
        .arg("--bin-dir")
        .arg(&bin)
        .arg("--out-dir")
        .arg(target_dir().join("bench-smoke"));
    status(run, "bench smoke")
}

/// Cargo's target directory: `CARGO_TARGET_DIR` when set (relative to the workspace), else
/// `target` in the workspace.
fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(d) if !d.is_empty() => root().join(d),
        _ => root().join("target"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_benchmark_runs_binaries_that_are_workspace_packages() {
        let manifest = std::fs::read_to_string(root().join("Cargo.toml")).unwrap();
        for b in BENCHES {
            for p in b.packages {
                let dir = if *p == "confab" {
                    root().join("src-tauri")
                } else {
                    root().join("crates").join(p)
                };
                let own = std::fs::read_to_string(dir.join("Cargo.toml")).unwrap();
                assert!(own.contains(&format!("name = \"{p}\"")), "{p}");
                let member = dir
                    .strip_prefix(root())
                    .unwrap()
                    .to_str()
                    .unwrap()
                    .to_owned();
                assert!(manifest.contains(&format!("\"{member}\"")), "{member}");
            }
        }
        assert_eq!(names(), "signal|call|network|room|app|vs-browser|audio");
    }

    #[test]
    fn unknown_or_missing_benchmarks_are_refused_before_building() {
        let e = main(&["lan-party".into()]).unwrap_err();
        assert!(e.contains("unknown benchmark `lan-party`"), "{e}");
        assert!(
            e.contains("signal, call, network, room, app, vs-browser, audio"),
            "{e}"
        );
        let e = main(&[]).unwrap_err();
        assert!(e.contains("which benchmark?"), "{e}");
    }
}
