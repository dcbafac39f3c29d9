//! `bench app`: the release desktop app under Xvfb: three launches, then a 720p call with a
//! confab-peer. [`call`] is also `bench vs-browser`'s app side.

use super::{start_signal, write_figures};
use crate::Dirs;
use anyhow::{Context, Result};
use confab_bench::figures::{app_table, drawn_fps, AppCall, AppRun};
use confab_bench::procs::{
    app_cpu_by_part, env_of, find_in_tree, tree_cpu_by_name, tree_cpu_seconds, tree_pss_mib,
    Killed, Xvfb,
};
use confab_bench::reports::{per_min, AppFigures};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

const SIZE: &str = "1280x720";

/// How the app paints its pictures in a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Painting {
    /// As it does by default on Linux: its native video surface under the page, which needs
    /// WebKit's compositing (software GL under Xvfb).
    Native,
    /// With WebKit's compositing off: no native surface, each tile loads an MJPEG stream.
    Streams,
}
const LAUNCHES: usize = 3;

/// A running app: killed (and its log reader joined) on drop.
pub(super) struct App {
    process: Option<Killed>,
    reader: Option<JoinHandle<()>>,
    /// Launch -> "window ready".
    ready_ms: f64,
}

impl App {
    pub(super) fn pid(&self) -> u32 {
        self.process.as_ref().map_or(0, |p| p.0.id())
    }
}

impl Drop for App {
    fn drop(&mut self) {
        drop(self.process.take());
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
    }
}

/// Where one app keeps its state: settings, and (through XDG) WebKit's caches and data.
pub(super) struct AppHome {
    config: PathBuf,
    xdg: PathBuf,
}

impl AppHome {
    pub(super) fn fresh(dir: &Path) -> Result<AppHome> {
        let _ = std::fs::remove_dir_all(dir);
        std::fs::create_dir_all(dir.join("xdg"))?;
        Ok(AppHome {
            config: dir.join("config"),
            xdg: dir.join("xdg"),
        })
    }
}

/// Starts the app in `room` and waits for its window.
pub(super) fn launch(
    bin: &Path,
    display: &str,
    home: &AppHome,
    join: Option<(&str, &str, &str)>,
    figures: Option<&Path>,
    painting: Painting,
) -> Result<App> {
    let compositing_off = match painting {
        Painting::Native => "0",
        Painting::Streams => "1",
    };
    let mut c = Command::new(bin.join("confab"));
    if let Some((url, room, size)) = join {
        c.args(["--server", url, "--room", room, "--name", "App", "--call"])
            .args(["--size", size]);
    }
    c.arg("--multi-instance")
        .args(["--camera", "test", "--mic", "tone", "--speaker", "none"])
        .args(["--bind", "127.0.0.1"])
        .arg("--config-dir")
        .arg(&home.config)
        .env("XDG_CACHE_HOME", home.xdg.join("cache"))
        .env("XDG_DATA_HOME", home.xdg.join("data"))
        .env("DISPLAY", display)
        .env("WEBKIT_DISABLE_COMPOSITING_MODE", compositing_off)
        .env("GDK_BACKEND", "x11")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    if let Some(f) = figures {
        c.arg("--stats-json").arg(f);
    }
    let launched = Instant::now();
    let mut process = Killed(c.spawn().context("the app")?);
    let stderr = process.0.stderr.take().context("the app's stderr")?;
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    // Reads the app's log until it exits (when the App is dropped).
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(|l| l.ok()) {
            if line.contains("window ready") {
                let _ = tx.try_send(());
            }
        }
    });
    let mut app = App {
        process: Some(process),
        reader: Some(reader),
        ready_ms: 0.0,
    };
    rx.recv_timeout(Duration::from_secs(60))
        .context("the app's window did not come up within 60 s")?;
    app.ready_ms = launched.elapsed().as_secs_f64() * 1000.0;
    Ok(app)
}

/// Launch -> window ready, `n` times: the first on a fresh config and cache folder, the others
/// on what the first left (warm).
fn launches(bin: &Path, display: &str, dir: &Path, n: usize) -> Result<Vec<f64>> {
    let home = AppHome::fresh(dir)?;
    let mut out = Vec::new();
    for i in 0..n {
        let app = launch(bin, display, &home, None, None, Painting::Native)
            .with_context(|| format!("launch {} of {n}", i + 1))?;
        out.push(app.ready_ms);
        // Let it finish starting (settings written, devices listed) before it is closed.
        std::thread::sleep(Duration::from_millis(1500));
    }
    Ok(out)
}

/// The app in a call with a confab-peer at `size`: idle in the room first, then the call,
/// measured for `duration` seconds once it settled.
pub fn call(
    bin: &Path,
    display: &str,
    url: &str,
    size: &str,
    duration: f64,
    dir: &Path,
    painting: Painting,
) -> Result<AppCall> {
    let home = AppHome::fresh(dir)?;
    let figures = dir.join("figures.json");
    let room = format!("bench-app-{size}");
    let app = launch(
        bin,
        display,
        &home,
        Some((url, &room, size)),
        Some(&figures),
        painting,
    )?;
    let pid = app.pid();
    // Settle, then measure the idle room.
    std::thread::sleep(Duration::from_secs(3));
    let idle_pss_mib = tree_pss_mib(pid);
    let (idle0, t_idle) = (tree_cpu_seconds(pid), Instant::now());
    std::thread::sleep(Duration::from_secs(5));
    let idle_cpu_pct_of_core =
        Some((tree_cpu_seconds(pid) - idle0) / t_idle.elapsed().as_secs_f64() * 100.0);
    let peer = Killed(
        Command::new(bin.join("confab-peer"))
            .args(["--server", url, "--room", &room, "--name", "Peer"])
            .arg("--auto-accept")
            .args(["--bind", "127.0.0.1", "--size", size, "--fps", "30"])
            .args(["--duration", &(duration + 20.0).to_string()])
            .stderr(Stdio::null())
            .spawn()
            .context("confab-peer")?,
    );
    // Let the call start and settle before measuring it.
    std::thread::sleep(Duration::from_secs(6));
    let cpu0 = tree_cpu_seconds(pid);
    let by_name0 = tree_cpu_by_name(pid);
    let parts0 = app_cpu_by_part(pid);
    let t0 = Instant::now();
    let mut peak: f64 = 0.0;
    let mut samples = Vec::new();
    let mut last = AppFigures::default();
    while t0.elapsed().as_secs_f64() < duration {
        std::thread::sleep(Duration::from_secs(1));
        peak = peak.max(tree_pss_mib(pid));
        if let Some(f) = AppFigures::read(&figures) {
            samples.push(f.drawn_per_second.clone());
            last = f;
        }
    }
    let cpu = tree_cpu_seconds(pid) - cpu0;
    // What WebKit's web process was started with (the app decides before WebKit starts).
    let cpu_painting = find_in_tree(pid, "WebKitWebProces")
        .map(|web| env_of(web, "WEBKIT_SKIA_ENABLE_CPU_RENDERING").is_some_and(|v| v != "0"));
    let by_name = tree_cpu_by_name(pid);
    let parts = app_cpu_by_part(pid);
    let secs = t0.elapsed().as_secs_f64();
    drop(peer);
    drop(app);
    std::fs::remove_dir_all(dir).ok();
    let since = |now: &std::collections::BTreeMap<String, f64>,
                 before: &std::collections::BTreeMap<String, f64>,
                 scale: f64| {
        now.iter()
            .map(|(k, c)| {
                (
                    k.clone(),
                    (c - before.get(k).copied().unwrap_or(0.0)) * scale,
                )
            })
            .collect()
    };
    Ok(AppCall {
        size: size.into(),
        measured_s: secs,
        idle_cpu_pct_of_core,
        idle_pss_mib,
        call_peak_pss_mib: peak,
        cpu_s_per_min: per_min(cpu, secs),
        cpu_pct_of_core_by_process: since(&by_name, &by_name0, 100.0 / secs),
        cpu_s_per_min_by_part: since(&parts, &parts0, 60.0 / secs),
        drawn_fps: drawn_fps(&samples),
        onscreen_latency_ms_p50: last.onscreen_latency_ms_p50,
        onscreen_latency_ms_p95: last.onscreen_latency_ms_p95,
        cpu_painting,
    })
}

pub fn run(duration: f64, dirs: &Dirs) -> Result<()> {
    let bin = dirs.bin()?;
    let x = Xvfb::start(1280, 800)?;
    let mut server = Command::new(bin.join("confab-signal"));
    server.arg("--test-hooks");
    let (_server, url) = start_signal(server)?;
    let dir = std::env::temp_dir().join(format!("confab-bench-app-{}", std::process::id()));
    let launches_ms = launches(&bin, &x.display, &dir.join("launches"), LAUNCHES)?;
    let native = call(
        &bin,
        &x.display,
        &url,
        SIZE,
        duration,
        &dir.join("call"),
        Painting::Native,
    )?;
    let streams = call(
        &bin,
        &x.display,
        &url,
        SIZE,
        duration,
        &dir.join("call-streams"),
        Painting::Streams,
    )
    .map_err(|e| eprintln!("bench app: the call with pictures as streams: {e:#}"))
    .ok();
    std::fs::remove_dir_all(&dir).ok();
    let run = AppRun {
        window_ready_ms: launches_ms.iter().copied().fold(0.0, f64::max),
        launches_ms,
        call: native,
        streams,
    };
    println!();
    println!(
        "desktop app (release, Xvfb, native video surface): {SIZE} 30 fps call with a confab-peer, {:.0} s measured",
        run.call.measured_s
    );
    print!("{}", app_table(&run));
    write_figures(&dirs.out()?, "app.json", &run)
}
