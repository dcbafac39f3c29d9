//! `bench room`: everyone in a room calls everyone, in a mesh and through Janus, per room size.

use super::{start_signal, write_figures};
use crate::Dirs;
use anyhow::{bail, Context, Result};
use confab_bench::figures::{room_table, RoomRow};
use confab_bench::procs::{cpu_seconds, Killed};
use confab_bench::reports::{per_min, PeerReport};
use confab_netlab::janus::Janus;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

pub fn run(duration: f64, people: &[usize], size: &str, fps: u32, dirs: &Dirs) -> Result<()> {
    let bin = dirs.bin()?;
    let dir = std::env::temp_dir().join(format!("confab-bench-room-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let janus = Janus::start().context("starting janus (apt-get install janus)")?;
    let video = format!("{size}@{fps}");
    let mut rows = Vec::new();
    for &n in people {
        for mode in ["mesh", "sfu"] {
            let janus_before = cpu_seconds(janus.pid()).unwrap_or(0.0);
            let started = Instant::now();
            let reports = one(&bin, &dir, n, mode, &janus, size, fps, duration)
                .with_context(|| format!("{n} people, {mode}"))?;
            let janus_cpu = (mode == "sfu")
                .then(|| cpu_seconds(janus.pid()).unwrap_or(0.0) - janus_before)
                .and_then(|c| per_min(c, started.elapsed().as_secs_f64()));
            let row = RoomRow::new(mode, &video, duration, &reports, janus_cpu);
            println!(
                "{n} people, {mode}: {:.1} CPU s/min per peer, uplink {:.0} kbit/s",
                row.cpu_s_per_min_mean.unwrap_or(f64::NAN),
                row.uplink_kbps_mean
            );
            rows.push(row);
        }
    }
    drop(janus);
    std::fs::remove_dir_all(&dir).ok();
    println!();
    println!(
        "everyone calls everyone, {video} test pattern + tone, H.264, {duration} s per run; \
         mesh: peer to peer; sfu: through Janus (VideoRoom) on this machine"
    );
    print!("{}", room_table(&rows));
    println!(
        "CPU per peer: the peer's whole process (encode once, decode everyone); uplink: all it \
         sends (to each peer, or once to Janus); Janus s/min: the SFU for the whole call"
    );
    write_figures(&dirs.out()?, "room.json", &rows)
}

/// One room: `n` peers join at once and call each other; each writes its report at the end.
#[allow(clippy::too_many_arguments)]
fn one(
    bin: &Path,
    dir: &Path,
    n: usize,
    mode: &str,
    janus: &Janus,
    size: &str,
    fps: u32,
    duration: f64,
) -> Result<Vec<PeerReport>> {
    let mut server = Command::new(bin.join("confab-signal"));
    if mode == "sfu" {
        server.args(janus.signal_args());
    }
    let (server, url) = start_signal(server)?;
    let room = format!("bench-room-{n}-{mode}");
    let paths: Vec<_> = (0..n)
        .map(|i| dir.join(format!("{mode}-{n}-{i}.json")))
        .collect();
    let mut peers = Vec::new();
    for (i, path) in paths.iter().enumerate() {
        let mut c = Command::new(bin.join("confab-peer"));
        c.args([
            "--server",
            &url,
            "--room",
            &room,
            "--name",
            &format!("p{i}"),
        ])
        .args(["--size", size, "--fps", &fps.to_string(), "--codec", "h264"])
        .args(["--audio", &format!("tone:{}", 300 + 60 * i)])
        .args(["--call", "--auto-accept"])
        .args(["--duration", &duration.to_string(), "--stats-json"])
        .arg(path)
        .stderr(Stdio::null());
        peers.push(Killed(c.spawn().context("starting confab-peer")?));
    }
    let mut failed = Vec::new();
    for (i, p) in peers.iter_mut().enumerate() {
        if !p.0.wait()?.success() {
            failed.push(i);
        }
    }
    drop(server);
    if !failed.is_empty() {
        bail!("peers {failed:?} failed");
    }
    paths
        .iter()
        .map(|p| {
            let text =
                std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
            serde_json::from_str(&text)
                .with_context(|| format!("confab-peer's report {}", p.display()))
        })
        .collect()
}
