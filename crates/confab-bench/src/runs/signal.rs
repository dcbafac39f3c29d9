//! `bench signal`: the signaling server under a load generator, each pinned to its own core;
//! with `--nodes N`, also N nodes sharing rooms through a real `redis-server` (all on the
//! server's core), the generator's clients spread over them.

use super::{pinned, start_signal, write_figures};
use crate::Dirs;
use anyhow::{bail, Context, Result};
use confab_bench::figures::{signal_table, SignalRow};
use confab_bench::procs::{cpu_seconds, peak_rss_mib, Killed};
use confab_bench::reports::LoadgenSummary;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// What a run measures: its connections, rate, length and payload.
pub struct Load {
    pub connections: usize,
    pub duration: f64,
    pub payload: usize,
}

pub fn run(load: &Load, rates: &[f64], nodes: usize, dirs: &Dirs) -> Result<()> {
    if nodes == 0 {
        bail!("--nodes must be at least 1");
    }
    let bin = dirs.bin()?;
    let mut rows = Vec::new();
    for &rate in rates {
        // A fresh server (or cluster) per rate and size, so peak RSS and CPU are that run's;
        // one node first, so that a cluster's figures stand beside it.
        for n in if nodes > 1 { vec![1, nodes] } else { vec![1] } {
            rows.push(one_run(load, rate, n, &bin)?);
        }
    }

    let Load {
        connections,
        duration,
        payload,
    } = load;
    println!();
    println!("signaling server: {connections} connections wanted, rooms of 2-8, {payload}-byte payload, {duration} s per rate");
    if nodes > 1 {
        println!("{nodes} nodes: one redis-server and {nodes} confab-signal --redis on the server's one core; the generator's clients round robin over them (server CPU and peak MiB: all nodes and Redis)");
    }
    print!("{}", signal_table(&rows));
    println!("targets: 10000 held; p99 < 20 ms at 20000/s (server CPU is over the relay phase)");
    write_figures(&dirs.out()?, "signal.json", &rows)
}

/// One rate on `nodes` nodes (one without Redis, or several through one).
fn one_run(load: &Load, rate: f64, nodes: usize, bin: &Path) -> Result<SignalRow> {
    let redis = if nodes > 1 {
        Some(start_redis()?)
    } else {
        None
    };
    let mut servers = Vec::new();
    for _ in 0..nodes {
        let room_for = (load.connections + 100).to_string();
        let mut server = pinned(0, &bin.join("confab-signal"));
        server
            .args(["--max-connections", &room_for])
            .args(["--max-rooms", &load.connections.to_string()])
            // The generator is one address.
            .args(["--max-connections-per-ip", &room_for])
            .args(["--address-join-burst", &room_for])
            .args(["--max-handshakes", "1024"])
            .args(["--max-handshakes-per-ip", "1024"])
            // One core, one worker: no cross-thread wake-ups on a pinned process.
            .env("TOKIO_WORKER_THREADS", "1");
        if let Some((_, url)) = &redis {
            server.args(["--redis", url]);
        }
        let (server, url) = start_signal(server)?;
        if redis.is_some() {
            wait_healthy(&url)?;
        }
        servers.push((server, url));
    }
    let mut pids: Vec<u32> = servers.iter().map(|(s, _)| s.0.id()).collect();
    if let Some((r, _)) = &redis {
        pids.push(r.0.id());
    }
    let cpu = |pids: &[u32]| pids.iter().map(|p| cpu_seconds(*p)).sum::<Option<f64>>();

    let mut gen = pinned(1, &bin.join("confab-loadgen"));
    for (_, url) in &servers {
        gen.args(["--url", url]);
    }
    gen.args(["--connections", &load.connections.to_string()])
        .args(["--rate", &rate.to_string()])
        .args(["--duration", &load.duration.to_string()])
        .args(["--payload", &load.payload.to_string()])
        .stdout(Stdio::piped());
    let mut gen = Killed(gen.spawn().context("starting confab-loadgen")?);
    let out = BufReader::new(gen.0.stdout.take().context("confab-loadgen's stdout")?);
    // The generator marks the relay phase on stdout; the servers are sampled around it.
    let (mut cpu_start, mut cpu_end, mut summary) = (None, None, None);
    for line in out.lines() {
        let line = line.context("reading confab-loadgen")?;
        match line.trim() {
            "phase relay" => cpu_start = cpu(&pids),
            "phase done" => cpu_end = cpu(&pids),
            l if l.starts_with('{') => {
                summary = Some(
                    serde_json::from_str::<LoadgenSummary>(l)
                        .with_context(|| format!("confab-loadgen's summary {l:?}"))?,
                )
            }
            _ => {}
        }
    }
    let st = gen.0.wait()?;
    let Some(summary) = summary.filter(|_| st.success()) else {
        bail!("confab-loadgen failed at {rate}/s on {nodes} node(s) ({st})");
    };
    let server_cpu = cpu_start.zip(cpu_end).map(|(a, b)| b - a);
    let peak_rss = pids.iter().map(|p| peak_rss_mib(*p)).sum::<Option<f64>>();
    Ok(SignalRow::new(
        rate,
        load.payload,
        nodes,
        &summary,
        server_cpu,
        peak_rss,
    ))
}

/// A `redis-server` on a free port, pinned with the nodes; its `redis://` URL.
fn start_redis() -> Result<(Killed, String)> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let mut cmd: Command = pinned(0, Path::new("redis-server"));
    cmd.args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no"])
        .stdout(Stdio::null());
    let redis = Killed(
        cmd.spawn()
            .context("starting redis-server (cargo xtask bench signal installs it)")?,
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        if Instant::now() > deadline {
            bail!("redis-server did not listen on port {port}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok((redis, format!("redis://127.0.0.1:{port}")))
}

/// Waits until the node at `ws_url` has reached Redis (`/healthz` answers 200): before that it
/// would seat people alone.
fn wait_healthy(ws_url: &str) -> Result<()> {
    let addr = ws_url
        .strip_prefix("ws://")
        .and_then(|r| r.split('/').next())
        .with_context(|| format!("an address in {ws_url}"))?;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut answer = String::new();
        if let Ok(mut tcp) = TcpStream::connect(addr) {
            let _ = tcp.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
            let _ = tcp.read_to_string(&mut answer);
        }
        if answer.starts_with("HTTP/1.1 200") {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("the node at {addr} never reached redis: {answer:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
