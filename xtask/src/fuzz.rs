//! `cargo xtask fuzz`: coverage-guided fuzzing (cargo-fuzz / libFuzzer) of the parsers that take
//! another machine's bytes. The targets are the files of `fuzz/fuzz_targets/`; their corpora
//! live in `fuzz/corpus/TARGET/` and a crash is written to `fuzz/artifacts/TARGET/`.
//!
//! cargo-fuzz needs the nightly toolchain (sanitizer flags); it builds in `fuzz/target`, never
//! in the stable target directory.

use crate::{root, status, Result};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

pub const HELP: &str = "\
cargo xtask fuzz TARGET|all [SECONDS]
                     run a fuzz target (or each in turn) for SECONDS (default 600) on its
                     corpus in fuzz/corpus/TARGET, which keeps what it finds; needs the
                     nightly toolchain, installs cargo-fuzz if missing
cargo xtask fuzz cmin TARGET|all
                     minimize the corpus of a target (or of each)
cargo xtask fuzz list
                     the targets";

/// The fuzz targets: the files of `fuzz/fuzz_targets/`.
pub fn targets() -> Result<Vec<String>> {
    let dir = root().join("fuzz/fuzz_targets");
    let mut out: Vec<String> = std::fs::read_dir(&dir)
        .map_err(|e| format!("cannot read {}: {e}", dir.display()))?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            name.strip_suffix(".rs").map(str::to_owned)
        })
        .collect();
    out.sort();
    Ok(out)
}

pub fn main(args: &[String]) -> Result {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    match args[..] {
        ["list"] => {
            for t in targets()? {
                println!("{t}");
            }
            Ok(())
        }
        ["cmin", which] => {
            ready()?;
            for t in chosen(which)? {
                cmin(&t)?;
            }
            Ok(())
        }
        [which] => run_all(which, 600),
        [which, secs] => {
            let secs: u64 = secs
                .parse()
                .ok()
                .filter(|&s| s > 0)
                .ok_or_else(|| format!("SECONDS must be a positive number (got `{secs}`)"))?;
            run_all(which, secs)
        }
        _ => Err(format!("usage:\n{HELP}")),
    }
}

fn chosen(which: &str) -> Result<Vec<String>> {
    let all = targets()?;
    if which == "all" {
        return Ok(all);
    }
    if all.iter().any(|t| t == which) {
        Ok(vec![which.to_owned()])
    } else {
        Err(format!(
            "no fuzz target `{which}` (targets: {}, or all)",
            all.join(", ")
        ))
    }
}

fn run_all(which: &str, secs: u64) -> Result {
    ready()?;
    let corpus_root = root().join("fuzz/corpus");
    for t in chosen(which)? {
        let corpus = corpus_root.join(&t);
        std::fs::create_dir_all(&corpus)
            .map_err(|e| format!("cannot create {}: {e}", corpus.display()))?;
        run(&t, secs, &[&corpus])?;
    }
    Ok(())
}

/// A short run of every target inside `cargo xtask test`: new inputs go to a scratch directory,
/// the committed corpus is only read. Without nightly it says so and skips, loudly.
pub fn smoke(secs: u64) -> Result {
    if let Err(why) = nightly() {
        eprintln!(
            "xtask: SKIPPED the fuzz runs ({why}). Install it with \
             `rustup toolchain install nightly` to have them run."
        );
        return Ok(());
    }
    ready()?;
    let scratch = root().join("fuzz/target/smoke-corpus");
    for t in targets()? {
        let new = scratch.join(&t);
        let _ = std::fs::remove_dir_all(&new);
        std::fs::create_dir_all(&new)
            .map_err(|e| format!("cannot create {}: {e}", new.display()))?;
        run(&t, secs, &[&new, &root().join("fuzz/corpus").join(&t)])?;
    }
    Ok(())
}

/// `cargo +nightly …` in the fuzz project, with nothing of the stable cargo that started xtask
/// leaking in (its binary, its toolchain, a shared target directory).
fn nightly_cargo() -> Command {
    let mut c = Command::new("cargo");
    c.arg("+nightly")
        .current_dir(root())
        .env_remove("CARGO")
        .env_remove("RUSTC")
        .env_remove("RUSTDOC")
        .env_remove("RUSTUP_TOOLCHAIN")
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("RUSTFLAGS");
    c
}

fn quiet(mut cmd: Command) -> bool {
    cmd.stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn nightly() -> Result {
    let mut v = nightly_cargo();
    v.arg("--version");
    if quiet(v) {
        Ok(())
    } else {
        Err("the nightly Rust toolchain is not installed (cargo-fuzz needs it)".into())
    }
}

/// Nightly present, cargo-fuzz installed (installs it if missing).
fn ready() -> Result {
    nightly()?;
    let mut v = nightly_cargo();
    v.args(["fuzz", "--version"]);
    if quiet(v) {
        return Ok(());
    }
    let mut install = Command::new("cargo");
    install
        .args(["install", "cargo-fuzz", "--locked"])
        .env_remove("CARGO_TARGET_DIR");
    status(install, "installing cargo-fuzz (cargo install cargo-fuzz)")
}

fn target_dir() -> PathBuf {
    root().join("fuzz/target")
}

fn run(target: &str, secs: u64, corpora: &[&Path]) -> Result {
    let mut cmd = nightly_cargo();
    // Debug assertions on: an arithmetic overflow on hostile input is a finding too.
    cmd.args(["fuzz", "run", "--debug-assertions"])
        .arg("--target-dir")
        .arg(target_dir())
        .arg(target)
        .args(corpora)
        .arg("--")
        .arg(format!("-max_total_time={secs}"))
        // A slow input (quadratic work on hostile text) counts as a finding.
        .arg("-timeout=10")
        .arg("-print_final_stats=1");
    status(cmd, &format!("fuzzing `{target}` for {secs} s")).map_err(|e| {
        format!(
            "{e}\nThe input that failed is in fuzz/artifacts/{target}/; reproduce it with \
             `cargo +nightly fuzz run {target} fuzz/artifacts/{target}/FILE`, fix the crate, \
             add a unit test named after the input and copy the file into fuzz/corpus/{target}/"
        )
    })
}

fn cmin(target: &str) -> Result {
    let mut cmd = nightly_cargo();
    cmd.args(["fuzz", "cmin", "--debug-assertions"])
        .arg("--target-dir")
        .arg(target_dir())
        .arg(target)
        // The smallest set of inputs that keeps the coverage (a plain merge keeps far more).
        .args(["--", "-set_cover_merge=1"]);
    status(cmd, &format!("minimizing the corpus of `{target}`"))
}
