//! `bench app`: the release desktop app under Xvfb in a 720p call with a confab-peer.

use super::{start_signal, write_figures};
use crate::Dirs;
use anyhow::{Context, Result};
use confab_bench::figures::{app_table, drawn_fps, AppRun};
use confab_bench::procs::{tree_cpu_by_name, tree_cpu_seconds, tree_pss_mib, Killed};
use confab_bench::reports::{per_min, AppFigures};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const SIZE: &str = "1280x720";

fn xvfb() -> Result<(Killed, String)> {
    let display = format!(":{}", 300 + std::process::id() % 500);
    let x = Killed(
        Command::new("Xvfb")
            .args([
                display.as_str(),
                "-screen",
                "0",
                "1280x800x24",
                "-nolisten",
                "tcp",
            ])
            .stderr(Stdio::null())
            .spawn()
            .context("Xvfb")?,
    );
    // Xvfb is ready when its socket exists.
    let socket = format!("/tmp/.X11-unix/X{}", &display[1..]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !std::path::Path::new(&socket).exists() {
        anyhow::ensure!(
            Instant::now() < deadline,
            "Xvfb {display} did not start within 10 s"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok((x, display))
}

pub fn run(duration: f64, dirs: &Dirs) -> Result<()> {
    let bin = dirs.bin()?;
    let (_x, display) = xvfb()?;
    let mut server = Command::new(bin.join("confab-signal"));
    server.arg("--test-hooks");
    let (_server, url) = start_signal(server)?;
    let dir = std::env::temp_dir().join(format!("confab-bench-app-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let figures = dir.join("figures.json");
    let launched = Instant::now();
    let mut app = Killed(
        Command::new(bin.join("confab"))
            .args([
                "--server",
                &url,
                "--room",
                "bench-app",
                "--name",
                "App",
                "--call",
            ])
            .arg("--multi-instance")
            .args(["--camera", "test", "--mic", "tone", "--speaker", "none"])
            .args(["--bind", "127.0.0.1"])
            .arg("--config-dir")
            .arg(dir.join("config"))
            .arg("--stats-json")
            .arg(&figures)
            .env("DISPLAY", &display)
            .env("WEBKIT_DISABLE_COMPOSITING_MODE", "1")
            .env("GDK_BACKEND", "x11")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .context("the app")?,
    );
    let pid = app.0.id();
    let stderr = app.0.stderr.take().context("the app's stderr")?;
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    // Reads the app's log until it exits (when `app` is dropped), joined below.
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(|l| l.ok()) {
            if line.contains("window ready") {
                let _ = tx.try_send(());
            }
        }
    });
    rx.recv_timeout(Duration::from_secs(60))
        .context("the app's window did not come up within 60 s")?;
    let window_ready_ms = launched.elapsed().as_secs_f64() * 1000.0;
    // Settle, then measure the idle room.
    std::thread::sleep(Duration::from_secs(4));
    let idle_pss_mib = tree_pss_mib(pid);
    let peer = Killed(
        Command::new(bin.join("confab-peer"))
            .args([
                "--server",
                &url,
                "--room",
                "bench-app",
                "--name",
                "Peer",
                "--auto-accept",
            ])
            .args(["--bind", "127.0.0.1", "--size", SIZE, "--fps", "30"])
            .args(["--duration", &(duration + 20.0).to_string()])
            .stderr(Stdio::null())
            .spawn()
            .context("confab-peer")?,
    );
    // Let the call start and settle before measuring it.
    std::thread::sleep(Duration::from_secs(6));
    let cpu0 = tree_cpu_seconds(pid);
    let by_name0 = tree_cpu_by_name(pid);
    let t0 = Instant::now();
    let mut peak: f64 = 0.0;
    let mut samples = Vec::new();
    while t0.elapsed().as_secs_f64() < duration {
        std::thread::sleep(Duration::from_secs(1));
        peak = peak.max(tree_pss_mib(pid));
        // The app rewrites the file every second; a half-written one is skipped.
        if let Some(f) = std::fs::read_to_string(&figures)
            .ok()
            .and_then(|t| serde_json::from_str::<AppFigures>(&t).ok())
        {
            samples.push(f.drawn_per_second);
        }
    }
    let cpu = tree_cpu_seconds(pid) - cpu0;
    let by_name = tree_cpu_by_name(pid);
    let secs = t0.elapsed().as_secs_f64();
    drop(peer);
    drop(app);
    let _ = reader.join();
    let run = AppRun {
        size: SIZE.into(),
        measured_s: secs,
        window_ready_ms,
        idle_pss_mib,
        call_peak_pss_mib: peak,
        cpu_s_per_min: per_min(cpu, secs),
        cpu_pct_of_core_by_process: by_name
            .iter()
            .map(|(name, c)| {
                let d = c - by_name0.get(name).copied().unwrap_or(0.0);
                (name.clone(), d / secs * 100.0)
            })
            .collect(),
        drawn_fps: drawn_fps(&samples),
    };
    std::fs::remove_dir_all(&dir).ok();
    println!();
    println!("desktop app (release, Xvfb, compositing off): {SIZE} 30 fps call with a confab-peer, {secs:.0} s measured");
    print!("{}", app_table(&run));
    write_figures(&dirs.out()?, "app.json", &run)
}
