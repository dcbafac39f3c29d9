//! `cargo xtask`: the project's own commands. Standard library only, so it builds in seconds.
//!
//! - `cargo xtask run [-- ARGS]`   install what is missing, build, start Confab
//! - `cargo xtask test`            install test prerequisites, fmt + clippy + every test
//! - `cargo xtask bench signal|call|network|room|app|vs-browser|audio`  build, then run that benchmark of
//!   `confab-bench` (prints figures, writes `target/bench/*.json`)
//! - `cargo xtask fuzz TARGET [S]` coverage-guided fuzzing of a parser (nightly, cargo-fuzz)
//! - `cargo xtask cross`           check (and build) the workspace for Windows from Linux

mod bench;
mod bundle;
mod cross;
mod deps;
mod fuzz;

use std::path::PathBuf;
use std::process::{Command, ExitCode};

pub type Result<T = ()> = std::result::Result<T, String>;

const HELP: &str = "\
cargo xtask <command>

  run [-- ARGS]      install missing system packages, build (release) and start the Confab
                     app; ARGS go to it (e.g. -- --room team --name Ada)
  test               install test prerequisites, then cargo fmt --check, clippy -D warnings,
                     the JavaScript tests (node --test tests/js/), every test of the
                     workspace, a short fuzz run of each target (needs nightly) and a
                     check of the .deb (and `cross` below, only with CONFAB_CROSS=1)
  fuzz TARGET|all [SECONDS], fuzz cmin TARGET|all, fuzz list
                     coverage-guided fuzzing of the parsers of outside input (nightly,
                     cargo-fuzz); SECONDS defaults to 600
  bench signal|call|network|room|app|vs-browser|audio
                     benchmarks (crates/confab-bench) that print figures and write them
                     to target/bench/NAME.json (add --help to each)
  bundle [--debug] [--out DIR]
                     build the installer for this system (.deb on Debian/Ubuntu)
  cross [--build] [--installer] [--wine]
                     Linux only: clippy over the workspace for Windows (x86_64-pc-windows-gnu,
                     MinGW-w64); --build also builds confab.exe, confab-signal.exe and
                     confab-peer.exe, --installer also packs them with NSIS (output in
                     target/cross), --wine runs the Windows signal server and peer under
                     Wine in a call with the Linux confab-peer (and, with --installer,
                     installs, checks and uninstalls under Wine)
  deps [build|test]  only install the system packages
";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let rest = args.get(1..).unwrap_or(&[]);
    let result = match args.first().map(String::as_str) {
        Some("run") => run(rest),
        Some("test") => test(rest),
        Some("bench") => bench::main(rest),
        Some("fuzz") => fuzz::main(rest),
        Some("cross") => cross::main(rest),
        Some("bundle") => bundle::parse(rest)
            .and_then(|o| bundle::deb(&o))
            .map(|deb| {
                println!("{}", deb.display());
            }),
        Some("deps") => match rest.first().map(String::as_str) {
            Some("test") => deps::ensure(&deps::test_packages()),
            _ => deps::ensure(deps::BUILD),
        },
        Some("help") | Some("--help") | Some("-h") | None => {
            print!("{HELP}");
            Ok(())
        }
        Some(other) => Err(format!("unknown command `{other}`\n\n{HELP}")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The workspace root. Taken from the environment `cargo run` sets, not from the build: an
/// xtask binary that cargo finds fresh in a target directory copied or shared from another
/// checkout must not build and run that other checkout.
pub fn root() -> PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")))
        .parent()
        .expect("xtask lives in the workspace")
        .to_owned()
}

pub fn cargo() -> Command {
    let mut c = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    c.current_dir(root());
    c
}

/// Runs a command, failing with its description if it fails.
pub fn status(mut cmd: Command, what: &str) -> Result {
    eprintln!("xtask: {what}");
    let st = cmd
        .status()
        .map_err(|e| format!("{what}: cannot start {:?}: {e}", cmd.get_program()))?;
    if st.success() {
        Ok(())
    } else {
        Err(format!("{what} failed ({st})"))
    }
}

fn run(args: &[String]) -> Result {
    deps::ensure(deps::BUILD)?;
    if cfg!(target_os = "linux")
        && std::env::var_os("DISPLAY").is_none()
        && std::env::var_os("WAYLAND_DISPLAY").is_none()
    {
        return Err("there is no display here (DISPLAY and WAYLAND_DISPLAY are unset): Confab is a \
                    desktop app. To run only the signaling server: cargo run --release -p confab-signal"
            .into());
    }
    let mut build = cargo();
    build.args(["build", "--release", "-p", "confab", "-p", "confab-signal"]);
    status(build, "building Confab (release)")?;
    let bin = root().join("target/release/confab");
    let args: Vec<&String> = args.iter().skip_while(|a| *a == "--").collect();
    eprintln!("xtask: starting {}", bin.display());
    let mut cmd = Command::new(&bin);
    cmd.args(args);
    status(cmd, "confab")
}

/// The plain-JS parts: ESLint over the window, the web client and the Node tests, then the
/// Node tests (the call rules' scenario tables against the web client's port, shared modules).
fn js_checks() -> Result {
    let mut ci = Command::new("npm");
    ci.current_dir(root())
        .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"]);
    status(ci, "npm ci (ESLint)")?;
    let mut lint = Command::new("npx");
    lint.current_dir(root())
        .args(["--no-install", "eslint", "."]);
    status(lint, "eslint")?;
    let mut node = Command::new("node");
    node.current_dir(root()).args(["--test", "tests/js/"]);
    status(node, "node --test tests/js/")
}

/// No merge left half done: a tracked text file with a conflict marker at the start of a line
/// fails the run (one was once committed into ARCHITECTURE.md). Fuzz corpora are bytes, not text.
fn no_conflict_markers() -> Result {
    let out = Command::new("git")
        .current_dir(root())
        .args(["ls-files", "-z"])
        .output();
    let files = match out {
        Ok(o) if o.status.success() => o.stdout,
        _ => {
            eprintln!("xtask: not a git checkout, conflict-marker check skipped");
            return Ok(());
        }
    };
    let text = [
        "rs", "md", "js", "mjs", "html", "css", "toml", "json", "yml", "sh", "py",
    ];
    let mut found = Vec::new();
    for name in files.split(|b| *b == 0).filter(|n| !n.is_empty()) {
        let name = String::from_utf8_lossy(name).into_owned();
        let is_text = name
            .rsplit_once('.')
            .is_some_and(|(_, ext)| text.contains(&ext));
        if !is_text || name.starts_with("fuzz/corpus/") {
            continue;
        }
        let Ok(body) = std::fs::read_to_string(root().join(&name)) else {
            continue;
        };
        for (i, line) in body.lines().enumerate() {
            if line.starts_with("<<<<<<< ") || line.starts_with(">>>>>>> ") {
                found.push(format!("{name}:{}", i + 1));
            }
        }
    }
    if found.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "merge conflict markers in tracked files: {}",
            found.join(", ")
        ))
    }
}

fn test(args: &[String]) -> Result {
    if !args.is_empty() {
        return Err(format!(
            "`cargo xtask test` takes no arguments (got {args:?})"
        ));
    }
    deps::ensure(&deps::test_packages())?;
    no_conflict_markers()?;
    let mut fmt = cargo();
    fmt.args(["fmt", "--all", "--", "--check"]);
    status(fmt, "cargo fmt --check")?;
    let mut clippy = cargo();
    clippy.args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]);
    status(clippy, "cargo clippy -D warnings")?;
    js_checks()?;
    // Tests start the workspace's binaries as processes; `cargo test --workspace` builds them
    // (with the test build's features) before any test runs.
    let mut tests = cargo();
    // CONFAB_TEST_PACKAGES: the packages above were installed (Debian, Ubuntu), so a test
    // that needs one (coturn, espeak-ng) fails without it instead of skipping. Elsewhere
    // nothing was installed, and such tests skip, saying so.
    tests
        .args(["test", "--workspace", "--no-fail-fast"])
        .env("RUST_BACKTRACE", "1");
    if deps::installs_here() {
        tests.env("CONFAB_TEST_PACKAGES", "installed");
    }
    status(tests, "cargo test --workspace")?;
    // Every fuzz target for a short while (the 10-minute runs are `cargo xtask fuzz all 600`).
    fuzz::smoke(20)?;
    // The benchmarks' harnesses still run and their figures still come (on the debug
    // binaries the tests built: not a measurement).
    bench::smoke()?;
    // The installer: packed from the debug binaries the tests just built, unpacked, checked.
    let out = root().join("target/bundle-check");
    let deb = bundle::deb(&bundle::Options {
        debug: true,
        build: false,
        out,
    })?;
    bundle::verify(&deb)?;
    // Windows, checked from here with CONFAB_CROSS=1 when the Rust target is installed.
    cross::from_test()
}
