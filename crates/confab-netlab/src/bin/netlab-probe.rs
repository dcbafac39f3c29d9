//! `netlab-probe`: the small program the kernel-lab tests run inside network namespaces
//! (`ip netns exec NS netlab-probe …`). Every subcommand prints JSON lines on stdout.
//!
//! - `udp-sink`: counts numbered datagrams until idle, prints what arrived.
//! - `udp-blast`: sends numbered datagrams at a paced rate.
//! - `udp-echo`: answers each datagram with the address it came from.
//! - `udp-ping`: sends datagrams to an echo server, reports the replies and how it was seen.
//! - `rtc`: one webrtc peer connection; the offer/answer go over stdout/stdin as JSON lines.

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand, ValueEnum};
use confab_netlab::harness::{PeerOptions, TestPeer};
use serde_json::json;
use std::io::{BufRead, Write};
use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};
use webrtc::data_channel::DataChannelEvent;
use webrtc::peer_connection::{RTCIceServer, RTCPeerConnectionState, RTCSessionDescription};

#[derive(Parser)]
#[command(about = "Network lab probe: runs inside a test's network namespace")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq)]
enum Role {
    Offer,
    Answer,
}

#[derive(Subcommand)]
enum Cmd {
    /// Receive numbered datagrams; stop `idle_ms` after the last one (or after `max_secs`).
    UdpSink {
        #[arg(long)]
        bind: SocketAddr,
        #[arg(long, default_value_t = 1000)]
        idle_ms: u64,
        #[arg(long, default_value_t = 30)]
        max_secs: u64,
    },
    /// Send `count` datagrams of `size` bytes at `rate_bps`.
    UdpBlast {
        #[arg(long)]
        to: SocketAddr,
        #[arg(long)]
        rate_bps: u64,
        #[arg(long, default_value_t = 1000)]
        size: usize,
        #[arg(long)]
        count: u64,
    },
    /// Echo server: answers each datagram with the sender's address as text.
    UdpEcho {
        #[arg(long)]
        bind: SocketAddr,
        #[arg(long, default_value_t = 30)]
        max_secs: u64,
    },
    /// Send `count` datagrams to an echo server and count the answers.
    UdpPing {
        #[arg(long)]
        to: SocketAddr,
        #[arg(long, default_value_t = 5)]
        count: u32,
        #[arg(long, default_value_t = 300)]
        timeout_ms: u64,
    },
    /// A webrtc peer connection: `offer` prints its offer and reads the answer, `answer`
    /// reads the offer and prints its answer (one JSON line each). Once connected the
    /// offerer sends "ping" on a data channel and the answerer answers "pong".
    Rtc {
        #[arg(long, value_enum)]
        role: Role,
        /// Local IP address to gather on.
        #[arg(long)]
        bind: std::net::IpAddr,
        /// TURN server URL (`turn:IP:PORT?transport=udp`).
        #[arg(long)]
        turn: Option<String>,
        #[arg(long, default_value = "")]
        user: String,
        #[arg(long, default_value = "")]
        pass: String,
        /// Only relay candidates.
        #[arg(long)]
        relay_only: bool,
        #[arg(long, default_value_t = 15)]
        timeout_secs: u64,
    },
}

static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();

/// One JSON line on stdout, stamped with the milliseconds since the probe started.
fn out(mut v: serde_json::Value) {
    if let Some(o) = v.as_object_mut() {
        let ms = START.get_or_init(Instant::now).elapsed().as_millis() as u64;
        o.insert("t_ms".into(), json!(ms));
    }
    let mut stdout = std::io::stdout().lock();
    let _ = writeln!(stdout, "{v}");
    let _ = stdout.flush();
}

fn main() {
    START.get_or_init(Instant::now);
    let cli = Cli::parse();
    let res = match cli.cmd {
        Cmd::UdpSink {
            bind,
            idle_ms,
            max_secs,
        } => udp_sink(bind, idle_ms, max_secs),
        Cmd::UdpBlast {
            to,
            rate_bps,
            size,
            count,
        } => udp_blast(to, rate_bps, size, count),
        Cmd::UdpEcho { bind, max_secs } => udp_echo(bind, max_secs),
        Cmd::UdpPing {
            to,
            count,
            timeout_ms,
        } => udp_ping(to, count, timeout_ms),
        Cmd::Rtc {
            role,
            bind,
            turn,
            user,
            pass,
            relay_only,
            timeout_secs,
        } => rtc(role, bind, turn, user, pass, relay_only, timeout_secs),
    };
    if let Err(e) = res {
        out(json!({ "error": format!("{e:#}") }));
        std::process::exit(1);
    }
}

fn udp_sink(bind: SocketAddr, idle_ms: u64, max_secs: u64) -> Result<()> {
    let sock = UdpSocket::bind(bind).with_context(|| format!("cannot bind {bind}"))?;
    sock.set_read_timeout(Some(Duration::from_millis(50)))?;
    out(json!({ "ready": sock.local_addr()?.to_string() }));
    let start = Instant::now();
    let mut buf = vec![0u8; 65_536];
    let (mut packets, mut bytes) = (0u64, 0u64);
    let mut distinct = std::collections::HashSet::new();
    let (mut first, mut last): (Option<Instant>, Option<Instant>) = (None, None);
    while start.elapsed() < Duration::from_secs(max_secs) {
        if last.is_some_and(|l| l.elapsed() > Duration::from_millis(idle_ms)) {
            break;
        }
        match sock.recv_from(&mut buf) {
            Ok((n, _)) => {
                let now = Instant::now();
                first.get_or_insert(now);
                last = Some(now);
                packets += 1;
                bytes += n as u64;
                if n >= 8 {
                    let mut seq = [0u8; 8];
                    seq.copy_from_slice(&buf[..8]);
                    distinct.insert(u64::from_be_bytes(seq));
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(e) => return Err(e).context("receive"),
        }
    }
    let span = match (first, last) {
        (Some(f), Some(l)) => (l - f).as_secs_f64(),
        _ => 0.0,
    };
    out(json!({
        "packets": packets,
        "distinct": distinct.len(),
        "bytes": bytes,
        "span_s": span,
    }));
    Ok(())
}

fn udp_blast(to: SocketAddr, rate_bps: u64, size: usize, count: u64) -> Result<()> {
    if size < 8 || rate_bps == 0 {
        bail!("size must be at least 8 bytes and the rate above 0");
    }
    let sock = UdpSocket::bind(if to.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" })?;
    let gap = Duration::from_secs_f64(size as f64 * 8.0 / rate_bps as f64);
    let start = Instant::now();
    let mut buf = vec![0u8; size];
    let (mut sent, mut errors) = (0u64, 0u64);
    for seq in 0..count {
        let due = start + gap * seq as u32;
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        buf[..8].copy_from_slice(&seq.to_be_bytes());
        match sock.send_to(&buf, to) {
            Ok(_) => sent += 1,
            Err(_) => errors += 1,
        }
    }
    out(json!({ "sent": sent, "errors": errors, "secs": start.elapsed().as_secs_f64() }));
    Ok(())
}

fn udp_echo(bind: SocketAddr, max_secs: u64) -> Result<()> {
    let sock = UdpSocket::bind(bind).with_context(|| format!("cannot bind {bind}"))?;
    sock.set_read_timeout(Some(Duration::from_millis(100)))?;
    out(json!({ "ready": sock.local_addr()?.to_string() }));
    let start = Instant::now();
    let mut buf = vec![0u8; 2048];
    while start.elapsed() < Duration::from_secs(max_secs) {
        if let Ok((_, from)) = sock.recv_from(&mut buf) {
            let _ = sock.send_to(from.to_string().as_bytes(), from);
        }
    }
    Ok(())
}

fn udp_ping(to: SocketAddr, count: u32, timeout_ms: u64) -> Result<()> {
    let sock = UdpSocket::bind("0.0.0.0:0")?;
    sock.set_read_timeout(Some(Duration::from_millis(timeout_ms)))?;
    let mut replies = 0;
    let mut seen_as = None;
    let mut buf = [0u8; 256];
    for _ in 0..count {
        // A send error (no route) counts as no reply.
        if sock.send_to(b"ping", to).is_err() {
            continue;
        }
        if let Ok((n, _)) = sock.recv_from(&mut buf) {
            replies += 1;
            seen_as = Some(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
    }
    out(json!({ "sent": count, "replies": replies, "seen_as": seen_as }));
    Ok(())
}

fn read_sdp(
    lines: &mut impl Iterator<Item = std::io::Result<String>>,
) -> Result<RTCSessionDescription> {
    let line = lines
        .next()
        .context("stdin closed before the description came")?
        .context("read stdin")?;
    let v: serde_json::Value = serde_json::from_str(&line).context("a JSON line")?;
    serde_json::from_value(v.get("sdp").cloned().context("no \"sdp\" in the line")?)
        .context("a session description")
}

async fn next_sdp(
    rx: &mut tokio::sync::mpsc::Receiver<Result<RTCSessionDescription>>,
    timeout: Duration,
) -> Result<RTCSessionDescription> {
    match tokio::time::timeout(timeout, rx.recv()).await {
        Ok(Some(sdp)) => sdp,
        Ok(None) => bail!("stdin reader ended"),
        Err(_) => bail!("no description on stdin within {timeout:?}"),
    }
}

#[allow(clippy::too_many_arguments)]
fn rtc(
    role: Role,
    bind: std::net::IpAddr,
    turn: Option<String>,
    user: String,
    pass: String,
    relay_only: bool,
    timeout_secs: u64,
) -> Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let timeout = Duration::from_secs(timeout_secs);
        let mut peer = TestPeer::new(PeerOptions {
            udp_addrs: vec![SocketAddr::new(bind, 0).to_string()],
            ice_servers: turn
                .into_iter()
                .map(|url| RTCIceServer {
                    urls: vec![url],
                    username: user.clone(),
                    credential: pass.clone(),
                })
                .collect(),
            relay_only,
            ..Default::default()
        })
        .await?;
        // stdin is read on a thread of its own (blocking) and handed over by a channel.
        let (tx, mut rx) = tokio::sync::mpsc::channel(1);
        let reader = std::thread::spawn(move || {
            let stdin = std::io::stdin();
            let mut lines = stdin.lock().lines();
            let _ = tx.blocking_send(read_sdp(&mut lines));
        });
        let dc = match role {
            Role::Offer => {
                let dc = peer
                    .pc
                    .create_data_channel("probe", None)
                    .await
                    .context("create data channel")?;
                let offer = peer.offer().await?;
                out(json!({ "sdp": offer }));
                let answer = next_sdp(&mut rx, timeout).await?;
                peer.accept(answer).await?;
                dc
            }
            Role::Answer => {
                let offer = next_sdp(&mut rx, timeout).await?;
                let answer = peer.answer(offer).await?;
                out(json!({ "sdp": answer }));
                match tokio::time::timeout(timeout, peer.channels.recv()).await {
                    Ok(Some(dc)) => dc,
                    _ => bail!("no data channel from the offerer within {timeout:?}"),
                }
            }
        };
        peer.wait_state(RTCPeerConnectionState::Connected, timeout)
            .await?;
        let pair = peer.selected_pair().await;
        out(json!({
            "connected": true,
            "local_type": pair.as_ref().map(|p| p.local_type.clone()),
            "remote_type": pair.as_ref().and_then(|p| p.remote_type.clone()),
            "local_address": pair.as_ref().map(|p| p.local_address.clone()),
            "remote_address": pair.as_ref().and_then(|p| p.remote_address.clone()),
        }));
        let deadline = tokio::time::Instant::now() + timeout;
        let echoed = loop {
            let ev = tokio::time::timeout_at(deadline, dc.poll())
                .await
                .context("no data channel message in time")?;
            match ev {
                Some(DataChannelEvent::OnOpen) if role == Role::Offer => {
                    dc.send_text("ping").await.context("send ping")?;
                }
                Some(DataChannelEvent::OnMessage(m)) => {
                    let text = String::from_utf8_lossy(&m.data).into_owned();
                    if role == Role::Answer && text == "ping" {
                        dc.send_text("pong").await.context("send pong")?;
                    }
                    break text;
                }
                Some(_) => {}
                None => bail!("the data channel closed"),
            }
        };
        out(json!({ "message": echoed }));
        if role == Role::Answer {
            // Let the pong go out before closing.
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        peer.close().await;
        drop(rx);
        let _ = reader.join();
        Ok(())
    })
}
