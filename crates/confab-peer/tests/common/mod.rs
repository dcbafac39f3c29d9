//! What the process tests share: the built binaries, confab-signal started as a process.
// Each test file uses part of it.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

/// A workspace binary built beside this test (`cargo build --workspace` first).
pub fn built(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test path");
    let dir = exe
        .parent()
        .and_then(|p| p.parent())
        .expect("target/<profile>");
    let path = dir.join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    assert!(
        path.exists(),
        "{} is missing: build the binaries first (`cargo xtask test` does)",
        path.display()
    );
    path
}

/// Starts the built confab-signal on a free port with `extra` arguments; returns it and the
/// URL it prints.
pub fn signal_server(extra: &[&str]) -> (Child, String) {
    let mut child = Command::new(built("confab-signal"))
        .args(["--listen", "127.0.0.1:0"])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("confab-signal starts");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let url = line.split_whitespace().last().expect("a URL").to_owned();
    (child, url)
}

/// Kills (and reaps) a child process when dropped, so a failed test leaves nothing running.
pub struct Proc(pub Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
