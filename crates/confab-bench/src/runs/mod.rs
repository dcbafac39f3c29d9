//! The benchmark runners: start the programs, collect their reports, print and write figures.

pub mod app;
pub mod audio;
pub mod call;
pub mod network;
pub mod network_kernel;
pub mod room;
pub mod signal;
pub mod smoke;
pub mod vs_browser;

use anyhow::{bail, Context, Result};
use confab_bench::procs::Killed;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};

/// Starts a prepared confab-signal command on 127.0.0.1:0; returns it and its WebSocket URL
/// (the last word of the first line it prints).
pub fn start_signal(mut server: Command) -> Result<(Killed, String)> {
    server
        .args(["--listen", "127.0.0.1:0"])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped());
    let mut server = Killed(server.spawn().context("starting confab-signal")?);
    let url = signal_url(&mut server.0)?;
    Ok((server, url))
}

/// The WebSocket URL a started confab-signal (its stdout piped) says it listens on: the last
/// word of the first line it prints.
pub fn signal_url(server: &mut std::process::Child) -> Result<String> {
    let mut line = String::new();
    BufReader::new(server.stdout.take().context("confab-signal's stdout")?)
        .read_line(&mut line)
        .context("reading confab-signal's address")?;
    match line
        .split_whitespace()
        .last()
        .filter(|u| u.starts_with("ws"))
    {
        Some(url) => Ok(url.to_owned()),
        None => bail!("confab-signal did not say where it listens: {line:?}"),
    }
}

/// Whether `program` is on the PATH.
pub fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(program).is_file()))
}

/// `program`, pinned to one core with taskset when there is one.
pub fn pinned(core: u32, program: &Path) -> Command {
    if on_path("taskset") {
        let mut c = Command::new("taskset");
        c.arg("-c").arg(core.to_string()).arg(program);
        c
    } else {
        Command::new(program)
    }
}

/// Writes `value` to `out/name` and says where.
pub fn write_figures<T: serde::Serialize>(out: &Path, name: &'static str, value: &T) -> Result<()> {
    let path = confab_bench::figures::write_json(out, name, value)?;
    println!("figures written to {}", path.display());
    Ok(())
}

/// Where a confab-peer's log goes: with `CONFAB_BENCH_LOG_DIR` set, `NAME.log` there (the
/// folder made if missing; each run overwrites the last; the peer's `RUST_LOG` is the
/// bench's), else nowhere.
pub(crate) fn peer_log(name: &str) -> Result<Stdio> {
    match std::env::var_os("CONFAB_BENCH_LOG_DIR") {
        Some(dir) => {
            std::fs::create_dir_all(&dir)
                .with_context(|| format!("making {}", Path::new(&dir).display()))?;
            let path = Path::new(&dir).join(format!("{name}.log"));
            let file = std::fs::File::create(&path)
                .with_context(|| format!("making {}", path.display()))?;
            Ok(file.into())
        }
        None => Ok(Stdio::null()),
    }
}
