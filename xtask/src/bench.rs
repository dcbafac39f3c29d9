//! Benchmarks that print figures. They never fail on a number: this machine is shared and noisy.

use crate::{cargo, root, status, Result};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const SIGNAL_HELP: &str = "\
cargo xtask bench signal [--connections N] [--rates R1,R2,..] [--duration SECS] [--payload BYTES]

Starts the release confab-signal pinned to core 0 and confab-loadgen pinned to core 1.
The generator holds N connections in rooms of 2-8 peers and relays signal messages at each
total rate R (messages/s), then prints connections held, relayed messages/s, relay latency
p50/p99, the server's CPU seconds and peak RSS, and the generator's own CPU (a generator near
one full core means the figure is the generator's limit, not the server's).
Defaults: N=10000, rates 10000,20000, 15 s each, 200-byte payload.
Targets: 10,000 connections held; p99 under 20 ms at 20,000 messages/s.";

pub fn main(args: &[String]) -> Result {
    match args.first().map(String::as_str) {
        Some("signal") => signal(&args[1..]),
        Some("call") => call(&args[1..]),
        Some("app") => app(&args[1..]),
        Some("vs-browser") => vs_browser(&args[1..]),
        Some(other) => Err(format!(
            "unknown benchmark `{other}` (have: signal, call, app, vs-browser)"
        )),
        None => Err("which benchmark? `cargo xtask bench signal|call|app|vs-browser`".into()),
    }
}

const CALL_HELP: &str = "\
cargo xtask bench call [--duration SECS] [--sizes 640x480,1280x720] [--codecs h264,vp8]

Runs two confab-peer processes calling each other through a local confab-signal (release
builds, loopback), 30 fps test pattern and tone, once per size and codec, and prints per
configuration: setup (join -> first decoded frame) and answer -> first frame, capture ->
decoded latency p50/p95 (read from the pattern's timestamps), frames per second received,
CPU seconds per minute of call and peak RSS (per peer process).
Targets: first frame < 150 ms after the answer; 720p latency p50 < 15 ms; a 720p duplex
call under 40 % of one core (24 CPU s/min per peer).";

/// Starts a release confab-signal on 127.0.0.1:0; returns it and its URL.
fn start_signal(bin: &std::path::Path) -> Result<(Killed, String)> {
    spawn_signal(Command::new(bin.join("confab-signal")))
}

/// Starts a prepared confab-signal command on 127.0.0.1:0; returns it and its URL.
fn spawn_signal(mut server: Command) -> Result<(Killed, String)> {
    server
        .args(["--listen", "127.0.0.1:0"])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped());
    let mut server = Killed(
        server
            .spawn()
            .map_err(|e| format!("starting confab-signal: {e}"))?,
    );
    let mut line = String::new();
    BufReader::new(server.0.stdout.take().expect("piped"))
        .read_line(&mut line)
        .map_err(|e| e.to_string())?;
    let url = line
        .split_whitespace()
        .last()
        .filter(|u| u.starts_with("ws"))
        .ok_or_else(|| format!("confab-signal did not say where it listens: {line:?}"))?
        .to_owned();
    Ok((server, url))
}

fn json_path<'a>(json: &'a str, keys: &[&str]) -> Option<&'a str> {
    // Tiny reader for the flat numbers we need: finds the keys in order.
    let mut rest = json;
    for k in keys {
        let pat = format!("\"{k}\":");
        let i = rest.find(&pat)?;
        rest = &rest[i + pat.len()..];
    }
    Some(rest.trim_start())
}

fn num_at(json: &str, keys: &[&str]) -> f64 {
    json_path(json, keys)
        .and_then(|r| {
            let end = r.find([',', '}', '\n']).unwrap_or(r.len());
            r[..end].trim().parse().ok()
        })
        .unwrap_or(f64::NAN)
}

fn call(args: &[String]) -> Result {
    if args.iter().any(|a| a == "--help" || a == "-h") {
        println!("{CALL_HELP}");
        return Ok(());
    }
    let duration: f64 = flag(args, "--duration", 10.0)?;
    let sizes: String = flag(args, "--sizes", "640x480,1280x720".to_string())?;
    let codecs: String = flag(args, "--codecs", "h264,vp8".to_string())?;
    crate::deps::ensure(crate::deps::BUILD)?;
    let mut build = cargo();
    build.args([
        "build",
        "--release",
        "-p",
        "confab-signal",
        "-p",
        "confab-peer",
    ]);
    status(build, "building confab-signal and confab-peer (release)")?;
    let bin = root().join("target/release");
    let dir = std::env::temp_dir().join(format!("confab-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let mut rows = Vec::new();
    for size in sizes.split(',') {
        for codec in codecs.split(',') {
            let (server, url) = start_signal(&bin)?;
            let room = format!("bench-{size}-{codec}");
            let peer = |name: &str, extra: &[&str], out: &std::path::Path| {
                let mut c = Command::new(bin.join("confab-peer"));
                c.args(["--server", &url, "--room", &room, "--name", name])
                    .args([
                        "--size",
                        size,
                        "--fps",
                        "30",
                        "--codec",
                        codec,
                        "--bind",
                        "127.0.0.1",
                    ])
                    .args(["--duration", &duration.to_string(), "--stats-json"])
                    .arg(out)
                    .args(extra)
                    .stderr(Stdio::null());
                c.spawn().map_err(|e| format!("starting confab-peer: {e}"))
            };
            let (ja, jb) = (dir.join("a.json"), dir.join("b.json"));
            let mut b = peer("B", &["--auto-accept", "--audio", "tone:660"], &jb)?;
            std::thread::sleep(Duration::from_millis(300));
            let mut a = peer("A", &["--call", "--audio", "tone:440"], &ja)?;
            let sa = a.wait().map_err(|e| e.to_string())?;
            let sb = b.wait().map_err(|e| e.to_string())?;
            drop(server);
            if !sa.success() || !sb.success() {
                return Err(format!("a peer failed at {size} {codec} ({sa}, {sb})"));
            }
            let read = |p: &std::path::Path| std::fs::read_to_string(p).map_err(|e| e.to_string());
            rows.push((size.to_owned(), codec.to_owned(), read(&ja)?, read(&jb)?));
        }
    }
    println!();
    println!("confab-peer <-> confab-peer, loopback, 30 fps test pattern + tone, {duration} s per run; A calls, B answers");
    println!(
        "{:>9} {:>5} {:>9} {:>10} {:>14} {:>14} {:>9} {:>11} {:>9}",
        "size",
        "codec",
        "setup ms",
        "answer->1st",
        "A<-B p50/p95",
        "B<-A p50/p95",
        "fps A/B",
        "CPU s/min",
        "RSS MiB"
    );
    for (size, codec, a, b) in &rows {
        let lat = |j: &str| {
            format!(
                "{:.1}/{:.1}",
                num_at(j, &["latency_ms_p50"]),
                num_at(j, &["latency_ms_p95"])
            )
        };
        let per_min =
            |j: &str| num_at(j, &["cpu_seconds"]) / num_at(j, &["duration_seconds"]) * 60.0;
        println!(
            "{:>9} {:>5} {:>9.0} {:>10.0} ms {:>14} {:>14} {:>4.0}/{:<4.0} {:>5.1}/{:<5.1} {:>4.0}/{:<4.0}",
            size,
            codec,
            num_at(a, &["setup_ms"]),
            num_at(a, &["answer_to_first_frame_ms"]),
            lat(a),
            lat(b),
            num_at(a, &["video", "fps"]),
            num_at(b, &["video", "fps"]),
            per_min(a),
            per_min(b),
            num_at(a, &["peak_rss_mb"]),
            num_at(b, &["peak_rss_mb"]),
        );
    }
    println!("targets: answer->first frame < 150 ms; 720p p50 < 15 ms; 720p duplex < 24 CPU s/min per peer (40 % of a core)");
    std::fs::remove_dir_all(dir).ok();
    Ok(())
}

fn flag<T: std::str::FromStr>(args: &[String], name: &str, default: T) -> Result<T> {
    match args.iter().position(|a| a == name) {
        None => Ok(default),
        Some(i) => args
            .get(i + 1)
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| format!("{name} needs a value")),
    }
}

/// CPU seconds (user + system) of a process, from /proc.
fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0) // USER_HZ is 100 on Linux
}

/// Peak resident set (VmHWM), in MiB.
fn peak_rss_mib(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

fn pinned(core: u32, program: &std::path::Path) -> Command {
    if crate::deps::which("taskset") {
        let mut c = Command::new("taskset");
        c.arg("-c").arg(core.to_string()).arg(program);
        c
    } else {
        Command::new(program)
    }
}

struct Killed(Child);
impl Drop for Killed {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status();
        let _ = self.0.wait();
    }
}

fn json_num(json: &str, key: &str) -> f64 {
    let pat = format!("\"{key}\":");
    json.find(&pat)
        .and_then(|i| {
            let rest = &json[i + pat.len()..];
            let end = rest.find([',', '}']).unwrap_or(rest.len());
            rest[..end].trim().parse().ok()
        })
        .unwrap_or(f64::NAN)
}

fn signal(args: &[String]) -> Result {
    if args.iter().any(|a| a == "--help" || a == "-h") {
        println!("{SIGNAL_HELP}");
        return Ok(());
    }
    let connections: usize = flag(args, "--connections", 10_000)?;
    let rates: String = flag(args, "--rates", "10000,20000".to_string())?;
    let duration: f64 = flag(args, "--duration", 15.0)?;
    let payload: usize = flag(args, "--payload", 200)?;
    let rates: Vec<f64> = rates
        .split(',')
        .map(|r| r.trim().parse().map_err(|_| format!("bad rate `{r}`")))
        .collect::<Result<_>>()?;

    crate::deps::ensure(crate::deps::BUILD)?;
    let mut build = cargo();
    build.args([
        "build",
        "--release",
        "-p",
        "confab-signal",
        "-p",
        "confab-loadgen",
    ]);
    status(
        build,
        "building the server and the load generator (release)",
    )?;
    let bin = root().join("target/release");

    let mut rows = Vec::new();
    for rate in rates {
        // A fresh server per rate, so peak RSS and CPU are that run's.
        let mut server = pinned(0, &bin.join("confab-signal"));
        server
            .args(["--max-connections", &(connections + 100).to_string()])
            .args(["--max-rooms", &connections.to_string()])
            // The generator is one address.
            .args(["--max-connections-per-ip", &(connections + 100).to_string()])
            .args(["--address-join-burst", &(connections + 100).to_string()])
            .args(["--max-handshakes", "1024"])
            .args(["--max-handshakes-per-ip", "1024"])
            // One core, one worker: no cross-thread wake-ups on a pinned process.
            .env("TOKIO_WORKER_THREADS", "1");
        let (server, url) = spawn_signal(server)?;
        let pid = server.0.id();

        let mut gen = pinned(1, &bin.join("confab-loadgen"));
        gen.args(["--url", &url])
            .args(["--connections", &connections.to_string()])
            .args(["--rate", &rate.to_string()])
            .args(["--duration", &duration.to_string()])
            .args(["--payload", &payload.to_string()])
            .stdout(Stdio::piped());
        let mut gen = gen
            .spawn()
            .map_err(|e| format!("starting confab-loadgen: {e}"))?;
        let out = BufReader::new(gen.stdout.take().expect("piped"));
        let (mut cpu_start, mut cpu_end, mut summary) = (None, None, String::new());
        for line in out.lines() {
            let line = line.map_err(|e| e.to_string())?;
            match line.trim() {
                "phase relay" => cpu_start = cpu_seconds(pid),
                "phase done" => cpu_end = cpu_seconds(pid),
                l if l.starts_with('{') => summary = l.to_owned(),
                _ => {}
            }
        }
        let st = gen.wait().map_err(|e| e.to_string())?;
        if !st.success() || summary.is_empty() {
            return Err(format!("confab-loadgen failed ({st})"));
        }
        let rss = peak_rss_mib(pid).unwrap_or(f64::NAN);
        let server_cpu = match (cpu_start, cpu_end) {
            (Some(a), Some(b)) => b - a,
            _ => f64::NAN,
        };
        drop(server);
        std::thread::sleep(Duration::from_millis(200));
        rows.push((rate, summary, server_cpu, rss));
    }

    println!();
    println!("signaling server: {connections} connections wanted, rooms of 2-8, {payload}-byte payload, {duration} s per rate");
    println!(
        "{:>9} {:>8} {:>10} {:>9} {:>9} {:>9} {:>11} {:>9} {:>9}",
        "rate/s",
        "held",
        "relayed/s",
        "p50 ms",
        "p99 ms",
        "max ms",
        "server CPU",
        "peak MiB",
        "gen CPU"
    );
    for (rate, s, server_cpu, rss) in &rows {
        println!(
            "{:>9} {:>8} {:>10.0} {:>9.2} {:>9.2} {:>9.1} {:>9.1} s {:>9.1} {:>7.1} s",
            rate,
            json_num(s, "connections_held"),
            json_num(s, "relayed_per_second"),
            json_num(s, "latency_ms_p50"),
            json_num(s, "latency_ms_p99"),
            json_num(s, "latency_ms_max"),
            server_cpu,
            rss,
            json_num(s, "generator_cpu_seconds"),
        );
    }
    println!("targets: 10000 held; p99 < 20 ms at 20000/s (server CPU is over the relay phase)");
    Ok(())
}

/// Runs a benchmark of `confab-bench` (which drives browsers and measures process trees).
fn bench_tool(what: &str, args: &[String]) -> Result {
    crate::deps::ensure(&crate::deps::test_packages())?;
    let mut build = cargo();
    build.args([
        "build",
        "--release",
        "-p",
        "confab",
        "-p",
        "confab-peer",
        "-p",
        "confab-signal",
        "-p",
        "confab-bench",
    ]);
    status(
        build,
        "building the app, confab-peer, confab-signal and confab-bench (release)",
    )?;
    let bin = root().join("target/release");
    let mut run = Command::new(bin.join("confab-bench"));
    run.arg(what).args(args).arg("--bin-dir").arg(&bin);
    status(run, &format!("bench {what}"))
}

fn app(args: &[String]) -> Result {
    bench_tool("app", args)
}

fn vs_browser(args: &[String]) -> Result {
    bench_tool("vs-browser", args)
}
