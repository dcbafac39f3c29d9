//! `bench call`: two confab-peers calling each other through a local confab-signal.

use super::{start_signal, write_figures};
use crate::Dirs;
use anyhow::{bail, Context, Result};
use confab_bench::figures::{call_table, phases_table, CallRow};
use confab_bench::procs::Killed;
use confab_bench::reports::PeerReport;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

/// How long a peer may take to join before the run is given up.
const JOIN_DEADLINE: Duration = Duration::from_secs(30);

pub fn run(duration: f64, sizes: &[String], codecs: &[String], dirs: &Dirs) -> Result<()> {
    let bin = dirs.bin()?;
    let dir = std::env::temp_dir().join(format!("confab-bench-call-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let mut rows = Vec::new();
    for size in sizes {
        for codec in codecs {
            let (a, b) = one(&bin, &dir, size, codec, duration)
                .with_context(|| format!("the {size} {codec} call"))?;
            rows.push(CallRow::new(size, codec, duration, &a, &b));
        }
    }
    std::fs::remove_dir_all(&dir).ok();
    println!();
    println!("confab-peer <-> confab-peer, loopback, 30 fps test pattern + tone, {duration} s per run; A calls, B answers");
    print!("{}", call_table(&rows));
    println!();
    println!("where answer->first frame went, ms after the answer (encoded/sent: B's pictures, on B's clock)");
    print!("{}", phases_table(&rows));
    println!("targets: answer->first frame < 150 ms; 720p p50 < 15 ms; 720p duplex < 24 CPU s/min per peer (40 % of a core)");
    write_figures(&dirs.out()?, "call.json", &rows)
}

/// One call: B joins and waits, A calls it; both write their report at the end.
fn one(
    bin: &Path,
    dir: &Path,
    size: &str,
    codec: &str,
    duration: f64,
) -> Result<(PeerReport, PeerReport)> {
    let (server, url) = start_signal(Command::new(bin.join("confab-signal")))?;
    let room = format!("bench-{size}-{codec}");
    let peer = |name: &str, extra: &[&str], out: &Path| {
        let mut c = Command::new(bin.join("confab-peer"));
        c.args(["--server", &url, "--room", &room, "--name", name])
            .args(["--size", size, "--fps", "30", "--codec", codec])
            .args(["--bind", "127.0.0.1"])
            .args(["--duration", &duration.to_string(), "--stats-json"])
            .arg(out)
            .args(extra);
        c
    };
    let (ja, jb) = (dir.join("a.json"), dir.join("b.json"));
    let mut b = peer("B", &["--auto-accept", "--audio", "tone:660"], &jb);
    let mut b = Killed(
        b.stderr(Stdio::piped())
            .spawn()
            .context("starting confab-peer B")?,
    );
    // B is in the room before A arrives, so A's setup time is the call's, not B's join.
    let stderr = b.0.stderr.take().context("B's stderr")?;
    let (joined_tx, joined) = std::sync::mpsc::sync_channel(1);
    let drain = std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(|l| l.ok()) {
            if line.starts_with("confab-peer: joined") {
                let _ = joined_tx.try_send(());
            }
        }
    });
    if joined.recv_timeout(JOIN_DEADLINE).is_err() {
        drop(b);
        let _ = drain.join();
        bail!("confab-peer B did not join within {JOIN_DEADLINE:?}");
    }
    let mut a = peer("A", &["--call", "--audio", "tone:440"], &ja);
    let mut a = Killed(
        a.stderr(Stdio::null())
            .spawn()
            .context("starting confab-peer A")?,
    );
    let sa = a.0.wait()?;
    let sb = b.0.wait()?;
    let _ = drain.join();
    drop(server);
    if !sa.success() || !sb.success() {
        bail!("a peer failed (A: {sa}, B: {sb})");
    }
    Ok((PeerReport::read(&ja)?, PeerReport::read(&jb)?))
}
