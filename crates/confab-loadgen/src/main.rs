//! `confab-loadgen`: holds N WebSocket connections to a Confab signaling server (or spread
//! over the nodes of a cluster, `--url` once per node) in rooms of 2–8 peers, relays signal
//! messages between them at a total rate, and prints what it saw: connections held, messages
//! relayed per second, relay latency p50/p99, its own CPU.
//!
//! Every message carries its send time; the receiver (same process, same monotonic clock)
//! records the difference, so latency is measured end to end through the server.

use anyhow::Context;
use clap::Parser;
use confab_protocol::{ClientMessage, PeerId, ServerMessage, SignalData};
use futures_util::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{watch, Semaphore};
use tokio_tungstenite::tungstenite::Message;

#[derive(Debug, Parser)]
#[command(name = "confab-loadgen", about)]
struct Args {
    /// WebSocket URL of the server. Give it once per node to spread the clients over the
    /// nodes of a cluster: client i goes to the (i mod K)-th of K URLs, so a room's members
    /// sit on different nodes.
    #[arg(long, default_value = "ws://127.0.0.1:8787/ws", action = clap::ArgAction::Append)]
    url: Vec<String>,
    /// Connections to hold.
    #[arg(long, default_value_t = 1000)]
    connections: usize,
    /// Smallest room.
    #[arg(long, default_value_t = 2)]
    room_min: usize,
    /// Largest room.
    #[arg(long, default_value_t = 8)]
    room_max: usize,
    /// Signal messages per second, all connections together.
    #[arg(long, default_value_t = 2000.0)]
    rate: f64,
    /// Seconds of relaying, after every connection has joined.
    #[arg(long, default_value_t = 20.0)]
    duration: f64,
    /// Bytes of padding in each message (an ICE candidate is ~200, an offer ~5000).
    #[arg(long, default_value_t = 200)]
    payload: usize,
    /// Connections opened at once while ramping up.
    #[arg(long, default_value_t = 256)]
    ramp: usize,
    /// Write the summary as JSON to this file too.
    #[arg(long)]
    json: Option<std::path::PathBuf>,
}

#[derive(Serialize, Deserialize)]
struct Probe {
    /// Microseconds since the generator started.
    t: u64,
    pad: String,
}

#[derive(Default)]
struct Counters {
    joined: AtomicU64,
    failed: AtomicU64,
    sent: AtomicU64,
    received: AtomicU64,
    errors: AtomicU64,
    dropped: AtomicU64,
}

struct Shared {
    origin: Instant,
    counters: Counters,
    latency: Mutex<Histogram<u64>>,
    payload: String,
}

#[derive(Serialize)]
struct Summary {
    connections_wanted: usize,
    connections_held: u64,
    connect_failures: u64,
    connections_dropped: u64,
    ramp_seconds: f64,
    duration_seconds: f64,
    messages_sent: u64,
    messages_relayed: u64,
    relayed_per_second: f64,
    errors: u64,
    latency_ms_p50: f64,
    latency_ms_p99: f64,
    latency_ms_max: f64,
    generator_cpu_seconds: f64,
}

/// Windows has no descriptor limit to raise.
#[cfg(not(unix))]
fn raise_fd_limit() {}

#[cfg(unix)]
fn raise_fd_limit() {
    // SAFETY: plain libc calls on a local struct.
    unsafe {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

/// CPU seconds (user + system) of this process so far (NaN if the system does not say).
fn cpu_seconds() -> f64 {
    cpu_time::ProcessTime::try_now().map_or(f64::NAN, |t| t.as_duration().as_secs_f64())
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    anyhow::ensure!(
        (2..=64).contains(&args.room_min) && args.room_min <= args.room_max,
        "rooms need 2 or more peers, and --room-min ≤ --room-max"
    );
    anyhow::ensure!(
        args.rate > 0.0 && args.duration > 0.0,
        "--rate and --duration must be positive"
    );
    raise_fd_limit();
    let shared = Arc::new(Shared {
        origin: Instant::now(),
        counters: Counters::default(),
        latency: Mutex::new(Histogram::new_with_bounds(1, 60_000_000, 3)?),
        payload: "x".repeat(args.payload),
    });

    // Rooms of random size between min and max.
    let mut rng = rand::rng();
    let mut rooms = Vec::with_capacity(args.connections);
    let (mut room, mut left) = (0usize, 0usize);
    for _ in 0..args.connections {
        if left == 0 {
            room += 1;
            left = rng.random_range(args.room_min..=args.room_max);
        }
        rooms.push(format!("bench-{room}"));
        left -= 1;
    }

    let per_conn_interval = Duration::from_secs_f64(args.connections as f64 / args.rate);
    let (go_tx, go_rx) = watch::channel(None::<Instant>);
    let ramp = Arc::new(Semaphore::new(args.ramp));
    let ramp_started = Instant::now();
    let mut tasks = Vec::with_capacity(args.connections);
    for (i, room) in rooms.into_iter().enumerate() {
        let shared = shared.clone();
        let url = args.url[i % args.url.len()].clone();
        let go = go_rx.clone();
        let ramp = ramp.clone();
        let duration = Duration::from_secs_f64(args.duration);
        tasks.push(tokio::spawn(async move {
            client(i, url, room, shared, go, ramp, per_conn_interval, duration).await
        }));
    }
    // Wait until everyone has joined or failed.
    loop {
        let c = &shared.counters;
        let done = c.joined.load(Ordering::Relaxed) + c.failed.load(Ordering::Relaxed);
        if done as usize >= args.connections {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let ramp_seconds = ramp_started.elapsed().as_secs_f64();
    eprintln!(
        "{} connections joined in {ramp_seconds:.1} s ({} failed); relaying for {} s",
        shared.counters.joined.load(Ordering::Relaxed),
        shared.counters.failed.load(Ordering::Relaxed),
        args.duration
    );
    let cpu_before = cpu_seconds();
    let start = Instant::now() + Duration::from_millis(200);
    // Markers on stdout so that a supervisor can sample the server around the relay phase.
    println!("phase relay");
    go_tx.send(Some(start)).ok();
    let sent_before = shared.counters.sent.load(Ordering::Relaxed);
    tokio::time::sleep_until((start + Duration::from_secs_f64(args.duration)).into()).await;
    let held = shared.counters.joined.load(Ordering::Relaxed)
        - shared.counters.dropped.load(Ordering::Relaxed);
    let cpu = cpu_seconds() - cpu_before;
    println!("phase done");
    // Let the last messages arrive, then close everything.
    for t in tasks {
        let _ = t.await;
    }
    let c = &shared.counters;
    let h = shared.latency.lock().unwrap_or_else(|p| p.into_inner());
    let relayed = c.received.load(Ordering::Relaxed);
    let summary = Summary {
        connections_wanted: args.connections,
        connections_held: held,
        connect_failures: c.failed.load(Ordering::Relaxed),
        connections_dropped: c.dropped.load(Ordering::Relaxed),
        ramp_seconds,
        duration_seconds: args.duration,
        messages_sent: c.sent.load(Ordering::Relaxed) - sent_before,
        messages_relayed: relayed,
        relayed_per_second: relayed as f64 / args.duration,
        errors: c.errors.load(Ordering::Relaxed),
        latency_ms_p50: h.value_at_quantile(0.5) as f64 / 1000.0,
        latency_ms_p99: h.value_at_quantile(0.99) as f64 / 1000.0,
        latency_ms_max: h.max() as f64 / 1000.0,
        generator_cpu_seconds: cpu,
    };
    let json = serde_json::to_string(&summary)?;
    if let Some(path) = &args.json {
        std::fs::write(path, &json).with_context(|| format!("writing {}", path.display()))?;
    }
    println!("{json}");
    Ok(())
}

#[allow(clippy::too_many_arguments)]
async fn client(
    i: usize,
    url: String,
    room: String,
    shared: Arc<Shared>,
    mut go: watch::Receiver<Option<Instant>>,
    ramp: Arc<Semaphore>,
    interval: Duration,
    duration: Duration,
) {
    let c = &shared.counters;
    let permit = ramp.acquire().await;
    // Small buffers: tungstenite zeroes its 128 KiB default read buffer on every read, which
    // would make the generator measure memset.
    let config = tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
        .read_buffer_size(4096)
        .write_buffer_size(0);
    let connect = tokio_tungstenite::connect_async_with_config(&url, Some(config), true);
    let ws = match tokio::time::timeout(Duration::from_secs(20), connect).await {
        Ok(Ok((ws, _))) => ws,
        Ok(Err(e)) => {
            if c.failed.fetch_add(1, Ordering::Relaxed) < 3 {
                eprintln!("connection {i} failed: {e}");
            }
            return;
        }
        Err(_) => {
            c.failed.fetch_add(1, Ordering::Relaxed);
            return;
        }
    };
    let (mut tx, mut rx) = ws.split();
    let join = ClientMessage::Join {
        room,
        name: format!("load {i}"),
        password: None,
        rejoin: None,
    };
    if tx.send(Message::Text(join.encode().into())).await.is_err() {
        c.failed.fetch_add(1, Ordering::Relaxed);
        return;
    }
    let mut peers: Vec<PeerId> = loop {
        match rx.next().await {
            Some(Ok(Message::Text(t))) => match ServerMessage::decode(t.as_str()) {
                Ok(ServerMessage::Welcome { peers, .. }) => {
                    break peers.into_iter().map(|p| p.id).collect();
                }
                _ => {
                    c.failed.fetch_add(1, Ordering::Relaxed);
                    return;
                }
            },
            Some(Ok(_)) => continue,
            _ => {
                c.failed.fetch_add(1, Ordering::Relaxed);
                return;
            }
        }
    };
    drop(permit);
    c.joined.fetch_add(1, Ordering::Relaxed);

    let mut start = None;
    let mut ticker: Option<tokio::time::Interval> = None;
    let mut end = tokio::time::Instant::now() + Duration::from_secs(3600);
    let mut rng = rand::rngs::SmallRng::from_os_rng();
    loop {
        tokio::select! {
            changed = go.changed(), if start.is_none() => {
                if changed.is_err() { return; }
                if let Some(s) = *go.borrow() {
                    start = Some(s);
                    // Spread the first sends over one interval so the load is smooth.
                    let offset = interval.mul_f64(rng.random::<f64>());
                    let mut t = tokio::time::interval_at((s + offset).into(), interval);
                    t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                    ticker = Some(t);
                    end = (s + duration).into();
                }
            }
            _ = async { ticker.as_mut().unwrap().tick().await }, if ticker.is_some() => {
                if tokio::time::Instant::now() >= end {
                    ticker = None;
                    // Drain for a second, then leave.
                    end += Duration::from_secs(1);
                    continue;
                }
                if peers.is_empty() { continue; }
                let to = peers[rng.random_range(0..peers.len())].clone();
                let probe = Probe { t: shared.origin.elapsed().as_micros() as u64, pad: shared.payload.clone() };
                let msg = ClientMessage::Signal { to, data: SignalData::from_value(&probe).expect("object") };
                if tx.send(Message::Text(msg.encode().into())).await.is_err() {
                    c.dropped.fetch_add(1, Ordering::Relaxed);
                    return;
                }
                c.sent.fetch_add(1, Ordering::Relaxed);
            }
            _ = tokio::time::sleep_until(end), if start.is_some() && ticker.is_none() => break,
            msg = rx.next() => match msg {
                Some(Ok(Message::Text(t))) => match ServerMessage::decode(t.as_str()) {
                    Ok(ServerMessage::Signal { data, .. }) => {
                        if let Ok(p) = data.parse::<Probe>() {
                            let now = shared.origin.elapsed().as_micros() as u64;
                            c.received.fetch_add(1, Ordering::Relaxed);
                            let mut h = shared.latency.lock().unwrap_or_else(|p| p.into_inner());
                            let _ = h.record(now.saturating_sub(p.t).max(1));
                        }
                    }
                    Ok(ServerMessage::PeerJoined { id, .. }) => peers.push(id),
                    Ok(ServerMessage::PeerLeft { id }) => peers.retain(|p| *p != id),
                    Ok(ServerMessage::Error { .. }) => { c.errors.fetch_add(1, Ordering::Relaxed); }
                    _ => {}
                },
                Some(Ok(_)) => {}
                _ => {
                    c.dropped.fetch_add(1, Ordering::Relaxed);
                    return;
                }
            }
        }
    }
    let _ = tx.send(Message::Close(None)).await;
}
