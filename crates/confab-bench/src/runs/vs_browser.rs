//! `bench vs-browser`: the same call with two headless Chromium tabs running the web client,
//! then with two confab-peers, then the desktop app (under Xvfb, both tiles drawn) and one tab
//! in one call with each other, then the app with a confab-peer (run inside a loopback-only
//! network namespace, see `main`).

use super::write_figures;
use crate::Dirs;
use anyhow::{Context, Result};
use confab_bench::figures::{
    drawn_fps, vs_browser_sides_table, vs_browser_table, Contestant, HeadToHead, VsBrowserRow,
};
use confab_bench::procs::{tree_cpu_seconds, tree_pss_mib, Killed};
use confab_bench::reports::{per_min, AppFigures, BrowserPeer, PeerReport};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

async fn chrome(port_hint: usize) -> Result<(Killed, fantoccini::Client, PathBuf)> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let driver = Killed(
        Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("chromedriver")?,
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        anyhow::ensure!(
            Instant::now() < deadline,
            "chromedriver did not listen within 5 s"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let profile = std::env::temp_dir().join(format!(
        "confab-bench-chrome-{}-{port_hint}",
        std::process::id()
    ));
    let c = confab_bench::chromium_session(&format!("http://127.0.0.1:{port}"), &profile).await?;
    Ok((driver, c, profile))
}

async fn browser_pair(url_base: &str, size: &str, duration: f64) -> Result<Contestant> {
    let (d1, c1, p1) = chrome(1).await?;
    let (d2, c2, p2) = chrome(2).await?;
    let (pid1, pid2) = (d1.0.id(), d2.0.id());
    let room = format!("vs-chrome-{size}");
    let q = |name: &str, extra: &str| {
        format!("{url_base}/?room={room}&name={name}&join=1&source=test&tone=440&size={size}&codec=h264&bitrate=1500{extra}")
    };
    let cpu0 = tree_cpu_seconds(pid1) + tree_cpu_seconds(pid2);
    let t0 = Instant::now();
    c2.goto(&q("B", "&accept=1")).await?;
    c1.goto(&q("A", "&call=1")).await?;
    let mut peak: f64 = 0.0;
    while t0.elapsed().as_secs_f64() < duration {
        tokio::time::sleep(Duration::from_secs(1)).await;
        peak = peak.max(tree_pss_mib(pid1) + tree_pss_mib(pid2));
    }
    let report = c1
        .execute("return await window.confabWeb.report();", vec![])
        .await?;
    let cpu = tree_cpu_seconds(pid1) + tree_cpu_seconds(pid2) - cpu0;
    let secs = t0.elapsed().as_secs_f64();
    let _ = c1.close().await;
    let _ = c2.close().await;
    drop((d1, d2));
    let _ = std::fs::remove_dir_all(p1);
    let _ = std::fs::remove_dir_all(p2);
    let report: Vec<BrowserPeer> =
        serde_json::from_value(report).context("the web client's report()")?;
    let p = report.into_iter().next().unwrap_or_default();
    Ok(Contestant {
        setup_ms: p.setup_ms,
        latency_ms_p50: p.latency_ms_p50,
        latency_ms_p95: p.latency_ms_p95,
        fps: p.fps,
        cpu_s_per_min: per_min(cpu, secs),
        peak_mib: Some(peak),
    })
}

/// The desktop app (native surface, under Xvfb) and one Chromium tab in one call with each
/// other: H.264 at `size`, each side sending at most 2.5 Mbit/s (the app's own cap), both
/// process trees measured over the same `duration` seconds once the call has settled.
async fn head_to_head(
    bin: &Path,
    display: &str,
    url_base: &str,
    ws: &str,
    size: &str,
    duration: f64,
) -> Result<HeadToHead> {
    let (driver, tab, profile) = chrome(3).await?;
    let room = format!("vs-head-{size}");
    let dir = std::env::temp_dir().join(format!("confab-bench-vs-head-{}", std::process::id()));
    let figures = dir.join("figures.json");
    // Outside the measurement, so that the app is stopped off the runtime's threads however
    // the measurement ends (stopping waits for it and its WebKit processes).
    let mut running: Option<super::app::App> = None;
    let measured = async {
        tab.goto(&format!(
            "{url_base}/?room={room}&name=Tab&join=1&source=test&tone=440&size={size}&codec=h264&bitrate=2500&accept=1"
        ))
        .await?;
        let (b, d, w, r, s, f, home) = (
            bin.to_owned(),
            display.to_owned(),
            ws.to_owned(),
            room.clone(),
            size.to_owned(),
            figures.clone(),
            dir.clone(),
        );
        let launched = tokio::task::spawn_blocking(move || {
            let home = super::app::AppHome::fresh(&home)?;
            super::app::launch(
                &b,
                &d,
                &home,
                Some((&w, &r, &s)),
                Some(&f),
                super::app::Painting::Native,
            )
        })
        .await??;
        let app = running.insert(launched);
        let read = || AppFigures::read(&figures);
        let drawing = |f: &AppFigures| {
            drawn_fps(std::slice::from_ref(&f.drawn_per_second))
                .get("remote")
                .is_some_and(|&n| n > 0.0)
        };
        // The call is up when the app draws the tab's pictures; then let it settle.
        let deadline = Instant::now() + Duration::from_secs(30);
        while !read().is_some_and(|f| drawing(&f)) {
            anyhow::ensure!(
                Instant::now() < deadline,
                "the app drew none of the tab's pictures within 30 s"
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        tokio::time::sleep(Duration::from_secs(6)).await;
        let (pa, pt) = (app.pid(), driver.0.id());
        let (a0, t0) = (tree_cpu_seconds(pa), tree_cpu_seconds(pt));
        let start = Instant::now();
        let mut samples = Vec::new();
        while start.elapsed().as_secs_f64() < duration {
            tokio::time::sleep(Duration::from_secs(1)).await;
            if let Some(f) = read() {
                samples.push(f.drawn_per_second);
            }
        }
        let (a1, t1) = (tree_cpu_seconds(pa), tree_cpu_seconds(pt));
        let secs = start.elapsed().as_secs_f64();
        let report = tab
            .execute("return await window.confabWeb.report();", vec![])
            .await?;
        let report: Vec<BrowserPeer> =
            serde_json::from_value(report).context("the web client's report()")?;
        let tab_fps = report.into_iter().next().and_then(|p| p.fps);
        Ok(HeadToHead::new(
            secs,
            a1 - a0,
            t1 - t0,
            drawn_fps(&samples).get("remote").copied(),
            tab_fps,
        ))
    }
    .await;
    if let Some(app) = running.take() {
        let _ = tokio::task::spawn_blocking(move || drop(app)).await;
    }
    let _ = tab.close().await;
    drop(driver);
    let _ = std::fs::remove_dir_all(profile);
    let _ = std::fs::remove_dir_all(&dir);
    measured
}

fn confab_pair(bin: &Path, ws: &str, size: &str, duration: f64) -> Result<Contestant> {
    let dir = std::env::temp_dir().join(format!("confab-bench-vs-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let room = format!("vs-confab-{size}");
    let peer = |name: &str, extra: &[&str], out: &Path| -> Result<Killed> {
        Ok(Killed(
            Command::new(bin.join("confab-peer"))
                .args(["--server", ws, "--room", &room, "--name", name])
                .args(["--bind", "127.0.0.1", "--size", size, "--fps", "30"])
                .args(["--codec", "h264", "--bitrate", "1500"])
                .args(["--duration", &duration.to_string(), "--stats-json"])
                .arg(out)
                .args(extra)
                .stderr(Stdio::null())
                .spawn()
                .context("confab-peer")?,
        ))
    };
    let (ja, jb) = (dir.join("a.json"), dir.join("b.json"));
    let t0 = Instant::now();
    let mut b = peer("B", &["--auto-accept"], &jb)?;
    let mut a = peer("A", &["--call"], &ja)?;
    let (pa, pb) = (a.0.id(), b.0.id());
    let mut peak: f64 = 0.0;
    let mut cpu_last = 0.0;
    while a.0.try_wait()?.is_none() || b.0.try_wait()?.is_none() {
        std::thread::sleep(Duration::from_millis(500));
        peak = peak.max(tree_pss_mib(pa) + tree_pss_mib(pb));
        let c = tree_cpu_seconds(pa) + tree_cpu_seconds(pb);
        if c > 0.0 {
            cpu_last = c;
        }
    }
    let secs = t0.elapsed().as_secs_f64();
    let read = |p: &Path| -> Option<PeerReport> {
        serde_json::from_str(&std::fs::read_to_string(p).ok()?).ok()
    };
    let (a, b) = (read(&ja), read(&jb));
    let _ = std::fs::remove_dir_all(&dir);
    // Each peer reports its whole-process CPU at exit: that is the exact figure. Without both
    // reports, the last sample taken while they ran.
    let cpu = match (&a, &b) {
        (Some(a), Some(b)) => a.cpu_seconds + b.cpu_seconds,
        _ => cpu_last,
    };
    let from_b = a.as_ref().and_then(|a| a.remote());
    Ok(Contestant {
        setup_ms: a.as_ref().and_then(|a| a.setup_ms),
        latency_ms_p50: from_b.and_then(|p| p.video.latency_ms_p50),
        latency_ms_p95: from_b.and_then(|p| p.video.latency_ms_p95),
        fps: from_b.and_then(|p| p.video.fps),
        cpu_s_per_min: per_min(cpu, secs),
        peak_mib: Some(peak),
    })
}

pub async fn run(duration: f64, sizes: &[String], dirs: &Dirs) -> Result<()> {
    let bin = dirs.bin()?;
    let server = confab_signal::SignalServer::start(confab_signal::SignalConfig {
        listen: "127.0.0.1:0".parse()?,
        test_hooks: true,
        ..Default::default()
    })
    .await?;
    let http = format!("http://{}", server.local_addr());
    let x = confab_bench::procs::Xvfb::start(1280, 800)?;
    let mut rows = Vec::new();
    for size in sizes {
        let chromium = browser_pair(&http, size, duration).await?;
        let ws = server.ws_url();
        let (b, size_owned, w) = (bin.clone(), size.clone(), ws.clone());
        let confab =
            tokio::task::spawn_blocking(move || confab_pair(&b, &w, &size_owned, duration))
                .await??;
        let head = head_to_head(&bin, &x.display, &http, &ws, size, duration)
            .await
            .map_err(|e| {
                eprintln!("bench vs-browser: the app and a tab head to head at {size}: {e:#}")
            })
            .ok();
        let (b, size_owned, display) = (bin.clone(), size.clone(), x.display.clone());
        let dir = std::env::temp_dir().join(format!("confab-bench-vs-app-{}", std::process::id()));
        let app = tokio::task::spawn_blocking(move || {
            super::app::call(
                &b,
                &display,
                &ws,
                &size_owned,
                duration,
                &dir,
                super::app::Painting::Native,
            )
        })
        .await?;
        // The other two contestants still count when the app cannot run here.
        let app = app
            .map_err(|e| eprintln!("bench vs-browser: the desktop app at {size}: {e:#}"))
            .ok();
        rows.push(VsBrowserRow::new(size, chromium, confab, app, head));
    }
    server.shutdown(Duration::from_secs(1)).await;
    println!();
    println!("the same call, twice, on this machine: Chromium <-> Chromium vs confab-peer <-> confab-peer");
    println!("(H.264, 30 fps test pattern, 1.5 Mbit/s, loopback; CPU and memory are whole process trees, both sides)");
    print!("{}", vs_browser_table(&rows));
    println!("ratio = Confab / Chromium: below 1 is Confab ahead (for fps, above 1). Chromium's latency is capture -> presented");
    println!("(requestVideoFrameCallback), Confab's capture -> decoded (a headless peer presents nothing).");
    println!();
    println!("per side: one Chromium tab, one confab-peer, and the desktop app (its whole process tree, in a call with a confab-peer; goal app/tab <= 0.6),");
    println!("then the app and one tab in one call with each other, over the same seconds (2.5 Mbit/s each way; fps: what the app drew of the tab's");
    println!("pictures while measured / what the tab presented of the app's over its whole call)");
    print!("{}", vs_browser_sides_table(&rows));
    write_figures(&dirs.out()?, "vs-browser.json", &rows)
}
