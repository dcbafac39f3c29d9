//! `confab-bench`: the benchmarks that drive a window or a browser and measure whole process
//! trees. Run through `cargo xtask bench app|vs-browser`; they print figures and never fail
//! on a number.

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use confab_bench::procs::{tree_cpu_by_name, tree_cpu_seconds, tree_pss_mib, Killed};
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[derive(Parser)]
#[command(name = "confab-bench", about)]
struct Cli {
    #[command(subcommand)]
    what: What,
}

#[derive(Subcommand)]
enum What {
    /// The desktop app: time to window, memory idle and in a 720p call, CPU, frames drawn.
    App {
        #[arg(long, default_value_t = 20.0)]
        duration: f64,
        /// Where the release binaries are.
        #[arg(long)]
        bin_dir: PathBuf,
    },
    /// The same call with Chromium <-> Chromium and confab-peer <-> confab-peer.
    VsBrowser {
        #[arg(long, default_value_t = 15.0)]
        duration: f64,
        #[arg(long)]
        bin_dir: PathBuf,
        #[arg(long, default_value = "640x480,1280x720")]
        sizes: String,
    },
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let rt = tokio::runtime::Runtime::new()?;
    match cli.what {
        What::App { duration, bin_dir } => app(duration, &bin_dir),
        What::VsBrowser {
            duration,
            bin_dir,
            sizes,
        } => {
            if std::env::var_os("CONFAB_IN_NETNS").is_none() {
                // Chromium in a loopback-only namespace, so both calls use the same path.
                let status = Command::new("unshare")
                    .args([
                        "-n",
                        "--",
                        "sh",
                        "-c",
                        "ip link set lo up && exec \"$0\" \"$@\"",
                    ])
                    .arg(std::env::current_exe()?)
                    .args(std::env::args().skip(1))
                    .env("CONFAB_IN_NETNS", "1")
                    .status()
                    .context("unshare (util-linux) and ip (iproute2)")?;
                if !status.success() {
                    bail!("the benchmark failed inside its network namespace");
                }
                return Ok(());
            }
            rt.block_on(vs_browser(duration, &bin_dir, &sizes))
        }
    }
}

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
    std::thread::sleep(Duration::from_millis(600));
    Ok((x, display))
}

fn signal_server(bin: &Path) -> Result<(Killed, String)> {
    let mut s = Killed(
        Command::new(bin.join("confab-signal"))
            .args(["--listen", "127.0.0.1:0", "--test-hooks"])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .spawn()
            .context("confab-signal")?,
    );
    let mut line = String::new();
    BufReader::new(s.0.stdout.take().expect("piped")).read_line(&mut line)?;
    let url = line
        .split_whitespace()
        .last()
        .context("confab-signal's URL")?
        .to_owned();
    Ok((s, url))
}

fn app(duration: f64, bin: &Path) -> Result<()> {
    let (_x, display) = xvfb()?;
    let (_server, url) = signal_server(bin)?;
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
                "--multi-instance",
            ])
            .args([
                "--camera",
                "test",
                "--mic",
                "tone",
                "--speaker",
                "none",
                "--bind",
                "127.0.0.1",
            ])
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
    let stderr = app.0.stderr.take().expect("piped");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(|l| l.ok()) {
            if line.contains("window ready") {
                let _ = tx.send(());
            }
        }
    });
    rx.recv_timeout(Duration::from_secs(60))
        .context("the app's window did not come up within 60 s")?;
    let window_ms = launched.elapsed().as_secs_f64() * 1000.0;
    std::thread::sleep(Duration::from_secs(4));
    let idle_pss = tree_pss_mib(pid);
    let _peer = Killed(
        Command::new(bin.join("confab-peer"))
            .args([
                "--server",
                &url,
                "--room",
                "bench-app",
                "--name",
                "Peer",
                "--auto-accept",
                "--bind",
                "127.0.0.1",
            ])
            .args([
                "--size",
                "1280x720",
                "--fps",
                "30",
                "--duration",
                &(duration + 20.0).to_string(),
            ])
            .stderr(Stdio::null())
            .spawn()
            .context("confab-peer")?,
    );
    std::thread::sleep(Duration::from_secs(6));
    let cpu0 = tree_cpu_seconds(pid);
    let by_name0 = tree_cpu_by_name(pid);
    let t0 = Instant::now();
    let mut peak: f64 = 0.0;
    let mut drawn: std::collections::BTreeMap<String, Vec<f64>> = Default::default();
    while t0.elapsed().as_secs_f64() < duration {
        std::thread::sleep(Duration::from_secs(1));
        peak = peak.max(tree_pss_mib(pid));
        if let Some(j) = std::fs::read_to_string(&figures)
            .ok()
            .and_then(|t| serde_json::from_str::<Value>(&t).ok())
        {
            if let Some(m) = j["drawn_per_second"].as_object() {
                for (k, v) in m {
                    let tile = if k == "local" {
                        "local".to_owned()
                    } else {
                        "remote".to_owned()
                    };
                    drawn
                        .entry(tile)
                        .or_default()
                        .push(v.as_f64().unwrap_or(0.0));
                }
            }
        }
    }
    let cpu = tree_cpu_seconds(pid) - cpu0;
    let by_name = tree_cpu_by_name(pid);
    let secs = t0.elapsed().as_secs_f64();
    println!();
    println!("desktop app (release, Xvfb, compositing off): 720p 30 fps call with a confab-peer, {secs:.0} s measured");
    println!("  window ready after launch    {window_ms:>7.0} ms      (target < 1000)");
    println!("  memory idle (PSS, all procs) {idle_pss:>7.0} MiB");
    println!("  memory in the call (peak)    {peak:>7.0} MiB     (target < 300)");
    println!(
        "  CPU in the call              {:>7.1} s/min    ({:.0} % of one core)",
        cpu / secs * 60.0,
        cpu / secs * 100.0
    );
    for (name, c) in &by_name {
        let d = c - by_name0.get(name).copied().unwrap_or(0.0);
        println!(
            "      of which {name:<18} {:>5.0} % of one core",
            d / secs * 100.0
        );
    }
    for (tile, v) in &drawn {
        let avg = v.iter().sum::<f64>() / v.len().max(1) as f64;
        println!("  frames drawn, {tile:<6} tile   {avg:>7.1} fps     (target 30)");
    }
    std::fs::remove_dir_all(&dir).ok();
    Ok(())
}

#[derive(Default, Debug)]
struct Row {
    setup_ms: f64,
    p50: f64,
    p95: f64,
    fps: f64,
    cpu_per_min: f64,
    peak_mib: f64,
}

fn fmt(v: f64) -> String {
    if v.is_finite() {
        format!("{v:.1}")
    } else {
        "-".into()
    }
}

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
    for _ in 0..200 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            break;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    let profile = std::env::temp_dir().join(format!(
        "confab-bench-chrome-{}-{port_hint}",
        std::process::id()
    ));
    let c = confab_bench::chromium_session(&format!("http://127.0.0.1:{port}"), &profile).await?;
    Ok((driver, c, profile))
}

async fn browser_pair(url_base: &str, size: &str, duration: f64) -> Result<Row> {
    let (d1, c1, p1) = chrome(1).await?;
    let (d2, c2, p2) = chrome(2).await?;
    let (pid1, pid2) = (d1.0.id(), d2.0.id());
    let room = format!("vs-chrome-{size}");
    let q = |name: &str, extra: &str| {
        format!("{url_base}/?room={room}&name={name}&join=1&source=test&size={size}&codec=h264&bitrate=1500{extra}")
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
    let r = c1
        .execute("return await window.confabWeb.report();", vec![])
        .await?;
    let cpu = tree_cpu_seconds(pid1) + tree_cpu_seconds(pid2) - cpu0;
    let secs = t0.elapsed().as_secs_f64();
    let _ = c1.close().await;
    let _ = c2.close().await;
    drop((d1, d2));
    let _ = std::fs::remove_dir_all(p1);
    let _ = std::fs::remove_dir_all(p2);
    let p = r
        .as_array()
        .and_then(|a| a.first())
        .cloned()
        .unwrap_or_default();
    Ok(Row {
        setup_ms: p["setup_ms"].as_f64().unwrap_or(f64::NAN),
        p50: p["latency_ms_p50"].as_f64().unwrap_or(f64::NAN),
        p95: p["latency_ms_p95"].as_f64().unwrap_or(f64::NAN),
        fps: p["fps"].as_f64().unwrap_or(f64::NAN),
        cpu_per_min: cpu / secs * 60.0,
        peak_mib: peak,
    })
}

fn confab_pair(bin: &Path, ws: &str, size: &str, duration: f64) -> Result<Row> {
    let dir = std::env::temp_dir().join(format!("confab-bench-vs-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let room = format!("vs-confab-{size}");
    let peer = |name: &str, extra: &[&str], out: &Path| -> Result<Killed> {
        Ok(Killed(
            Command::new(bin.join("confab-peer"))
                .args([
                    "--server",
                    ws,
                    "--room",
                    &room,
                    "--name",
                    name,
                    "--bind",
                    "127.0.0.1",
                ])
                .args([
                    "--size",
                    size,
                    "--fps",
                    "30",
                    "--codec",
                    "h264",
                    "--bitrate",
                    "1500",
                ])
                .args(["--duration", &duration.to_string(), "--stats-json"])
                .arg(out)
                .args(extra)
                .stderr(Stdio::null())
                .spawn()?,
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
    let read = |p: &Path| -> Value {
        std::fs::read_to_string(p)
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or_default()
    };
    let (a, b) = (read(&ja), read(&jb));
    // Each peer reports its whole-process CPU at exit: that is the exact figure.
    let cpu =
        a["cpu_seconds"].as_f64().unwrap_or(cpu_last) + b["cpu_seconds"].as_f64().unwrap_or(0.0);
    let p = &a["peers"][0];
    Ok(Row {
        setup_ms: a["setup_ms"].as_f64().unwrap_or(f64::NAN),
        p50: p["video"]["latency_ms_p50"].as_f64().unwrap_or(f64::NAN),
        p95: p["video"]["latency_ms_p95"].as_f64().unwrap_or(f64::NAN),
        fps: p["video"]["fps"].as_f64().unwrap_or(f64::NAN),
        cpu_per_min: cpu / secs * 60.0,
        peak_mib: peak,
    })
}

async fn vs_browser(duration: f64, bin: &Path, sizes: &str) -> Result<()> {
    let server = confab_signal::SignalServer::start(confab_signal::SignalConfig {
        listen: "127.0.0.1:0".parse()?,
        test_hooks: true,
        ..Default::default()
    })
    .await?;
    let http = format!("http://{}", server.local_addr());
    let mut rows = Vec::new();
    for size in sizes.split(',') {
        let chrome = browser_pair(&http, size, duration).await?;
        let ws = server.ws_url();
        let (bin, size_owned) = (bin.to_owned(), size.to_owned());
        let confab =
            tokio::task::spawn_blocking(move || confab_pair(&bin, &ws, &size_owned, duration))
                .await??;
        rows.push((size.to_owned(), chrome, confab));
    }
    server.shutdown(Duration::from_secs(1)).await;
    println!();
    println!("the same call, twice, on this machine: Chromium <-> Chromium vs confab-peer <-> confab-peer");
    println!("(H.264, 30 fps test pattern, 1.5 Mbit/s, loopback; CPU and memory are whole process trees, both sides)");
    println!(
        "{:>9} {:<8} {:>9} {:>9} {:>9} {:>7} {:>10} {:>9}",
        "size", "who", "setup ms", "p50 ms", "p95 ms", "fps", "CPU s/min", "peak MiB"
    );
    for (size, c, f) in &rows {
        for (who, r) in [("chromium", c), ("confab", f)] {
            println!(
                "{:>9} {:<8} {:>9} {:>9} {:>9} {:>7} {:>10} {:>9}",
                size,
                who,
                fmt(r.setup_ms),
                fmt(r.p50),
                fmt(r.p95),
                fmt(r.fps),
                fmt(r.cpu_per_min),
                fmt(r.peak_mib)
            );
        }
        let ratio = |a: f64, b: f64| {
            if (a / b).is_finite() {
                format!("{:.2}", a / b)
            } else {
                "-".into()
            }
        };
        println!(
            "{:>9} {:<8} {:>9} {:>9} {:>9} {:>7} {:>10} {:>9}",
            size,
            "ratio",
            ratio(f.setup_ms, c.setup_ms),
            ratio(f.p50, c.p50),
            ratio(f.p95, c.p95),
            ratio(f.fps, c.fps),
            ratio(f.cpu_per_min, c.cpu_per_min),
            ratio(f.peak_mib, c.peak_mib)
        );
    }
    println!("ratio = Confab / Chromium: below 1 is Confab ahead (for fps, above 1). Chromium's latency is capture -> presented");
    println!("(requestVideoFrameCallback), Confab's capture -> decoded (a headless peer presents nothing).");
    Ok(())
}
