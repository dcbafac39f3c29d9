//! `bench signal`: the signaling server under a load generator, each pinned to its own core.

use super::{pinned, start_signal, write_figures};
use crate::Dirs;
use anyhow::{bail, Context, Result};
use confab_bench::figures::{signal_table, SignalRow};
use confab_bench::procs::{cpu_seconds, peak_rss_mib, Killed};
use confab_bench::reports::LoadgenSummary;
use std::io::{BufRead, BufReader};
use std::process::Stdio;

pub fn run(
    connections: usize,
    rates: &[f64],
    duration: f64,
    payload: usize,
    dirs: &Dirs,
) -> Result<()> {
    let bin = dirs.bin()?;
    let mut rows = Vec::new();
    for &rate in rates {
        // A fresh server per rate, so peak RSS and CPU are that run's.
        let room_for = (connections + 100).to_string();
        let mut server = pinned(0, &bin.join("confab-signal"));
        server
            .args(["--max-connections", &room_for])
            .args(["--max-rooms", &connections.to_string()])
            // The generator is one address.
            .args(["--max-connections-per-ip", &room_for])
            .args(["--address-join-burst", &room_for])
            .args(["--max-handshakes", "1024"])
            .args(["--max-handshakes-per-ip", "1024"])
            // One core, one worker: no cross-thread wake-ups on a pinned process.
            .env("TOKIO_WORKER_THREADS", "1");
        let (server, url) = start_signal(server)?;
        let pid = server.0.id();

        let mut gen = pinned(1, &bin.join("confab-loadgen"));
        gen.args(["--url", &url])
            .args(["--connections", &connections.to_string()])
            .args(["--rate", &rate.to_string()])
            .args(["--duration", &duration.to_string()])
            .args(["--payload", &payload.to_string()])
            .stdout(Stdio::piped());
        let mut gen = Killed(gen.spawn().context("starting confab-loadgen")?);
        let out = BufReader::new(gen.0.stdout.take().context("confab-loadgen's stdout")?);
        // The generator marks the relay phase on stdout; the server is sampled around it.
        let (mut cpu_start, mut cpu_end, mut summary) = (None, None, None);
        for line in out.lines() {
            let line = line.context("reading confab-loadgen")?;
            match line.trim() {
                "phase relay" => cpu_start = cpu_seconds(pid),
                "phase done" => cpu_end = cpu_seconds(pid),
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
            bail!("confab-loadgen failed at {rate}/s ({st})");
        };
        let server_cpu = cpu_start.zip(cpu_end).map(|(a, b)| b - a);
        rows.push(SignalRow::new(
            rate,
            payload,
            &summary,
            server_cpu,
            peak_rss_mib(pid),
        ));
        drop(server);
    }

    println!();
    println!("signaling server: {connections} connections wanted, rooms of 2-8, {payload}-byte payload, {duration} s per rate");
    print!("{}", signal_table(&rows));
    println!("targets: 10000 held; p99 < 20 ms at 20000/s (server CPU is over the relay phase)");
    write_figures(&dirs.out()?, "signal.json", &rows)
}
