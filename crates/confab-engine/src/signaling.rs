//! The signaling client: one WebSocket to the server, protocol v1, reconnecting with backoff
//! and joining again when the connection drops. A read loop and the writes share one task;
//! what goes in and out passes through bounded channels.

use crate::error::JoinError;
use crate::route::{self, RouteWatch};
use confab_protocol::{ClientMessage, ErrorCode, PeerId, PeerInfo, ServerMessage, SignalData};
use futures_util::{SinkExt, StreamExt};
use std::net::IpAddr;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

#[derive(Debug, Clone)]
pub struct JoinParams {
    /// The servers to join through, normalized (see [`normalize_urls`]): the nodes of one
    /// cluster, tried in order; when the one in use dies the client moves to the next.
    pub urls: Vec<String>,
    pub room: String,
    pub name: String,
    pub password: Option<String>,
    /// Not a single frame from the server for this long: the connection is dead.
    pub silence_limit: Duration,
}

/// What the signaling client reports.
#[derive(Debug)]
pub enum SigEvent {
    Welcome {
        id: PeerId,
        room: String,
        peers: Vec<PeerInfo>,
        /// The SFU this room's calls go through, if the server names one.
        sfu: Option<confab_protocol::SfuInfo>,
        /// The way to the server this connection started on: when it moves, the connection
        /// is on a dead path (the engine then sends [`Check::Moved`]).
        route: Option<RouteWatch>,
    },
    PeerJoined {
        id: PeerId,
        name: String,
    },
    PeerLeft {
        id: PeerId,
    },
    Signal {
        from: PeerId,
        data: SignalData,
    },
    /// A refused request (the connection stays).
    Error {
        code: ErrorCode,
        message: String,
    },
    /// The connection dropped; it is being re-established.
    Reconnecting {
        reason: String,
        attempt: u32,
    },
    /// Rejoining after a drop was refused (the room filled up, the password changed…). The
    /// client keeps trying with backoff; the engine stops it when no call is left to save.
    RejoinRefused {
        error: JoinError,
        attempt: u32,
    },
    /// Cannot go on (server unreachable at first, join refused): the client has stopped.
    Fatal(JoinError),
}

/// What the engine asks of the connection in use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    /// Prove it within [`CHECK_LIMIT`] (a link lost its path: ours may have gone with it).
    Ping,
    /// Its route moved (the welcome's `route`): leave it and connect again now.
    Moved,
}

/// A connection that has not heard a single frame (not even a ping: the server pings every
/// 20 s) for this long is dead.
pub const SILENCE_LIMIT: Duration = Duration::from_secs(45);

/// Asked to check the connection (a link lost its path: the network may have changed, and
/// a TCP connection over a dead path is silent rather than closed), the client pings the
/// server; no frame within this long and it connects again.
pub const CHECK_LIMIT: Duration = Duration::from_secs(3);

/// Most servers one join may list.
pub const MAX_SERVERS: usize = 8;

/// Normalizes a list of servers as people type it: addresses separated by commas or spaces
/// (`a.example:8787, b.example:8787`), each as [`normalize_url`] does; duplicates dropped, the
/// order kept (the first is tried first).
pub fn normalize_urls(input: &str) -> Result<Vec<String>, String> {
    let mut out: Vec<String> = Vec::new();
    for part in input
        .split([',', ' ', '\t', '\n'])
        .filter(|p| !p.trim().is_empty())
    {
        let url = normalize_url(part)?;
        if !out.contains(&url) {
            out.push(url);
        }
    }
    if out.is_empty() {
        return Err("the server address is empty".into());
    }
    if out.len() > MAX_SERVERS {
        return Err(format!("at most {MAX_SERVERS} servers, not {}", out.len()));
    }
    Ok(out)
}

/// Normalizes what people type as a server: `host:port` → `ws://host:port/ws`.
pub fn normalize_url(input: &str) -> Result<String, String> {
    let s = input.trim();
    if s.is_empty() {
        return Err("the server address is empty".into());
    }
    let with_scheme = if s.contains("://") {
        s.to_owned()
    } else {
        format!("ws://{s}")
    };
    let (scheme, rest) = with_scheme.split_once("://").expect("has ://");
    let scheme = match scheme.to_ascii_lowercase().as_str() {
        "ws" | "http" => "ws",
        "wss" | "https" => "wss",
        other => {
            return Err(format!(
                "a server address starts with ws:// or wss://, not {other}://"
            ))
        }
    };
    let (host, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    if host.is_empty() || host.contains(char::is_whitespace) {
        return Err(format!("`{input}` is not a server address"));
    }
    let path = if path.is_empty() || path == "/" {
        confab_protocol::WS_PATH
    } else {
        path
    };
    Ok(format!("{scheme}://{host}{path}"))
}

/// Whether a (normalized) server URL sends signaling unencrypted to an address outside this
/// computer and the private networks: anyone on the way could read and change it (it carries
/// names, room passwords and the session descriptions that the verification code guards).
pub fn insecure_public(url: &str) -> bool {
    let Some(rest) = url.strip_prefix("ws://") else {
        return false;
    };
    let authority = rest.split('/').next().unwrap_or("");
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => authority.rsplit_once(':').map_or(authority, |(h, _)| h),
    };
    let host = host.to_ascii_lowercase();
    if host == "localhost" || host.ends_with(".local") || host.ends_with(".localhost") {
        return false;
    }
    match host.parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V4(v4)) => {
            !(v4.is_loopback() || v4.is_private() || v4.is_link_local() || v4.is_unspecified())
        }
        Ok(std::net::IpAddr::V6(v6)) => {
            let s = v6.segments()[0];
            !(v6.is_loopback() || (s & 0xfe00) == 0xfc00 || (s & 0xffc0) == 0xfe80)
        }
        // A name: it may resolve anywhere.
        Err(_) => true,
    }
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// The server's address at the other end of the connection.
fn server_of(ws: &Ws) -> Option<std::net::IpAddr> {
    use tokio_tungstenite::MaybeTlsStream;
    let tcp = match ws.get_ref() {
        MaybeTlsStream::Plain(s) => s,
        MaybeTlsStream::Rustls(s) => s.get_ref().0,
        _ => return None,
    };
    tcp.peer_addr().ok().map(|a| a.ip())
}

async fn connect(url: &str) -> Result<Ws, JoinError> {
    let config = tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
        .read_buffer_size(16 * 1024)
        .max_message_size(Some(1 << 20));
    match tokio::time::timeout(
        Duration::from_secs(10),
        tokio_tungstenite::connect_async_with_config(url, Some(config), true),
    )
    .await
    {
        Ok(Ok((ws, _))) => Ok(ws),
        Ok(Err(e)) => Err(JoinError::Unreachable(format!(
            "cannot reach the server at {url}: {e}"
        ))),
        Err(_) => Err(JoinError::Unreachable(format!(
            "the server at {url} did not answer within 10 s"
        ))),
    }
}

/// Joins and waits for the welcome (or the refusal). `rejoin` is the token of our last
/// membership when this is a rejoin, so the server drops that one at once; the welcome's new
/// token is stored back in its place.
async fn join(
    ws: &mut Ws,
    p: &JoinParams,
    rejoin: &mut Option<String>,
) -> Result<SigEvent, JoinError> {
    let msg = ClientMessage::Join {
        room: p.room.clone(),
        name: p.name.clone(),
        password: p.password.clone(),
        rejoin: rejoin.clone(),
    };
    ws.send(Message::Text(msg.encode().into()))
        .await
        .map_err(|e| JoinError::Disconnected(format!("the server closed the connection: {e}")))?;
    let wait = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(m) = ws.next().await {
            match m {
                Ok(Message::Text(t)) => match ServerMessage::decode(t.as_str()) {
                    Ok(ServerMessage::Welcome {
                        id,
                        room,
                        peers,
                        sfu,
                        rejoin: token,
                    }) => {
                        *rejoin = token;
                        return Ok(SigEvent::Welcome {
                            id,
                            room,
                            peers,
                            sfu,
                            route: server_of(ws).and_then(RouteWatch::new),
                        });
                    }
                    Ok(ServerMessage::Error { code, message }) => {
                        return Err(JoinError::Refused { code, message })
                    }
                    _ => continue,
                },
                Ok(Message::Close(f)) => {
                    let why = f.map(|f| f.reason.to_string()).unwrap_or_default();
                    return Err(JoinError::Disconnected(format!(
                        "the server closed the connection {why}"
                    )));
                }
                Ok(_) => continue,
                Err(e) => return Err(JoinError::Disconnected(e.to_string())),
            }
        }
        Err(JoinError::Disconnected(
            "the server closed the connection".to_owned(),
        ))
    });
    wait.await.unwrap_or(Err(JoinError::Timeout))
}

fn backoff(attempt: u32) -> Duration {
    Duration::from_millis((250u64 << attempt.min(6)).min(10_000))
}

/// How often a backoff looks at the way to the server.
const ROUTE_POLL: Duration = Duration::from_millis(250);

/// Waits out the backoff after `attempt` failures, or less: when the way to the server we
/// were last joined through comes back, or changes (a network returned or took over after
/// an outage), the next attempt is made at once rather than up to 10 s later.
async fn wait_backoff(attempt: u32, server: Option<IpAddr>) {
    let until = tokio::time::Instant::now() + backoff(attempt);
    let Some(server) = server else {
        tokio::time::sleep_until(until).await;
        return;
    };
    let before = route::source_for(server).ok();
    loop {
        let left = until.saturating_duration_since(tokio::time::Instant::now());
        if left.is_zero() {
            return;
        }
        tokio::time::sleep(left.min(ROUTE_POLL)).await;
        let now = route::source_for(server).ok();
        if now.is_some() && now != before {
            tracing::info!("the way to the server is back; connecting again now");
            return;
        }
    }
}

/// Runs until cancelled or a fatal error. Messages to send come from `out`; everything heard
/// goes to `events`; a word on `check` has the connection proved within [`CHECK_LIMIT`], or
/// left at once when its route moved.
pub async fn run(
    params: JoinParams,
    mut out: mpsc::Receiver<ClientMessage>,
    mut check: mpsc::Receiver<Check>,
    events: mpsc::Sender<SigEvent>,
    cancel: CancellationToken,
) {
    let mut check_open = true;
    let mut attempt: u32 = 0;
    let mut ever_joined = false;
    // The server's address when we were last joined (the backoff watches the way to it).
    let mut last_server: Option<IpAddr> = None;
    // The token of our membership, presented when we join again (see `join`).
    let mut rejoin: Option<String> = None;
    // The server in use, and how many failed one after another before the first join.
    let (mut at, mut failed_first) = (0usize, 0usize);
    let servers = params.urls.len().max(1);
    loop {
        let Some(url) = params.urls.get(at % servers).cloned() else {
            let _ = events
                .send(SigEvent::Fatal(JoinError::Unreachable(
                    "no server to join".into(),
                )))
                .await;
            return;
        };
        let connected = tokio::select! {
            _ = cancel.cancelled() => return,
            c = connect(&url) => c,
        };
        let mut ws = match connected {
            Ok(ws) => ws,
            Err(e) => {
                // The next server of the list, if there is one.
                at += 1;
                if !ever_joined {
                    failed_first += 1;
                    if failed_first < servers {
                        tracing::info!("{e}; trying the next server");
                        continue;
                    }
                    let _ = events.send(SigEvent::Fatal(e)).await;
                    return;
                }
                attempt += 1;
                let _ = events
                    .send(SigEvent::Reconnecting {
                        reason: e.to_string(),
                        attempt,
                    })
                    .await;
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    _ = wait_backoff(attempt, last_server) => continue,
                }
            }
        };
        let joined = tokio::select! {
            _ = cancel.cancelled() => return,
            j = join(&mut ws, &params, &mut rejoin) => j,
        };
        match joined {
            Ok(welcome) => {
                ever_joined = true;
                attempt = 0;
                if let SigEvent::Welcome { route: Some(r), .. } = &welcome {
                    last_server = Some(r.far());
                }
                if events.send(welcome).await.is_err() {
                    return;
                }
            }
            Err(e) => {
                if !ever_joined {
                    // A server that did not answer may be down: the next one may. A refusal
                    // (room full, wrong password) is the same on every node of a cluster.
                    failed_first += 1;
                    if e.transient() && failed_first < servers {
                        at += 1;
                        tracing::info!("{e}; trying the next server");
                        continue;
                    }
                    let _ = events.send(SigEvent::Fatal(e)).await;
                    return;
                }
                attempt += 1;
                // After a drop every refusal is retried: the engine decides whether a call
                // is still worth waiting for.
                let ev = if e.transient() {
                    SigEvent::Reconnecting {
                        reason: e.to_string(),
                        attempt,
                    }
                } else {
                    SigEvent::RejoinRefused { error: e, attempt }
                };
                let _ = events.send(ev).await;
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    _ = wait_backoff(attempt, last_server) => continue,
                }
            }
        }
        failed_first = 0;
        // Joined: pump until the connection drops, goes silent, or we are told to stop.
        let mut heard = tokio::time::Instant::now();
        // A check under way: the server must be heard by then.
        let mut checking: Option<tokio::time::Instant> = None;
        let mut at_once = false;
        let reason = loop {
            tokio::select! {
                _ = tokio::time::sleep_until(heard + params.silence_limit) => {
                    break format!("no word from the server for {} s", params.silence_limit.as_secs());
                }
                _ = tokio::time::sleep_until(checking.unwrap_or(heard)), if checking.is_some() => {
                    break format!(
                        "the server did not answer a check within {} s (the network may have changed)",
                        CHECK_LIMIT.as_secs()
                    );
                }
                asked = check.recv(), if check_open => match asked {
                    Some(Check::Moved) => {
                        // A new network, not a failing server: no reason to wait.
                        at_once = true;
                        break "our network changed: the way to the server now leaves from another address (or none)".to_owned();
                    }
                    Some(Check::Ping) if checking.is_none() => {
                        if let Err(e) = ws.send(Message::Ping(Vec::new().into())).await {
                            break format!("sending failed: {e}");
                        }
                        checking = Some(tokio::time::Instant::now() + CHECK_LIMIT);
                    }
                    Some(Check::Ping) => {}
                    None => check_open = false,
                },
                _ = cancel.cancelled() => {
                    let _ = ws.send(Message::Text(ClientMessage::Leave.encode().into())).await;
                    let _ = tokio::time::timeout(Duration::from_secs(1), ws.close(None)).await;
                    return;
                }
                msg = out.recv() => match msg {
                    Some(m) => {
                        if let Err(e) = ws.send(Message::Text(m.encode().into())).await {
                            break format!("sending failed: {e}");
                        }
                    }
                    None => {
                        let _ = tokio::time::timeout(Duration::from_secs(1), ws.close(None)).await;
                        return;
                    }
                },
                incoming = ws.next() => {
                    if matches!(incoming, Some(Ok(_))) {
                        heard = tokio::time::Instant::now();
                        checking = None;
                    }
                    match incoming {
                    Some(Ok(Message::Text(t))) => {
                        let ev = match ServerMessage::decode(t.as_str()) {
                            Ok(ServerMessage::PeerJoined { id, name }) => SigEvent::PeerJoined { id, name },
                            Ok(ServerMessage::PeerLeft { id }) => SigEvent::PeerLeft { id },
                            Ok(ServerMessage::Signal { from, data }) => SigEvent::Signal { from, data },
                            Ok(ServerMessage::Error { code, message }) => SigEvent::Error { code, message },
                            Ok(ServerMessage::Welcome { .. } | ServerMessage::Pong) => continue,
                            Err(e) => {
                                tracing::warn!("ignoring a message from the server: {e}");
                                continue;
                            }
                        };
                        if events.send(ev).await.is_err() {
                            return;
                        }
                    }
                    Some(Ok(Message::Close(f))) => {
                        break f.map(|f| format!("the server closed the connection: {}", f.reason)).unwrap_or_else(|| "the server closed the connection".into());
                    }
                    Some(Ok(_)) => {}
                    Some(Err(e)) => break format!("the connection failed: {e}"),
                    None => break "the connection ended".into(),
                    }
                }
            }
        };
        attempt += 1;
        // With several servers, the rejoin goes to the next: this one may be the one that died.
        at += 1;
        tracing::info!("signaling connection lost ({reason}); reconnecting");
        let _ = events
            .send(SigEvent::Reconnecting { reason, attempt })
            .await;
        if at_once {
            continue;
        }
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = wait_backoff(attempt, last_server) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{normalize_url, normalize_urls, MAX_SERVERS};

    #[test]
    fn unencrypted_public_servers_are_told_apart() {
        use super::insecure_public;
        for private in [
            "ws://127.0.0.1:8787/ws",
            "ws://localhost:8787/ws",
            "ws://10.1.2.3:8787/ws",
            "ws://192.168.1.5/ws",
            "ws://172.20.0.1:1/ws",
            "ws://[::1]:8787/ws",
            "ws://[fd00::5]:8787/ws",
            "ws://laptop.local:8787/ws",
            "wss://example.org/ws",
        ] {
            assert!(!insecure_public(private), "{private}");
        }
        for public in [
            "ws://example.org:8787/ws",
            "ws://203.0.113.7:8787/ws",
            "ws://[2001:db8::1]:8787/ws",
        ] {
            assert!(insecure_public(public), "{public}");
        }
    }

    #[test]
    fn a_list_of_servers_is_normalized_in_order_without_duplicates() {
        assert_eq!(
            normalize_urls(" a:1, b:2  wss://c ,a:1").unwrap(),
            ["ws://a:1/ws", "ws://b:2/ws", "wss://c/ws"]
        );
        assert_eq!(normalize_urls("h:1").unwrap(), ["ws://h:1/ws"]);
        assert!(normalize_urls(" , ").is_err());
        let e = normalize_urls("a:1, ftp://b").unwrap_err();
        assert!(e.contains("ftp"), "{e}");
        let many: Vec<String> = (0..=MAX_SERVERS).map(|i| format!("h{i}:1")).collect();
        let e = normalize_urls(&many.join(",")).unwrap_err();
        assert!(e.contains("at most 8"), "{e}");
    }

    #[test]
    fn server_addresses_are_normalized() {
        assert_eq!(
            normalize_url("localhost:8787").unwrap(),
            "ws://localhost:8787/ws"
        );
        assert_eq!(normalize_url("ws://h:1/ws").unwrap(), "ws://h:1/ws");
        assert_eq!(
            normalize_url("wss://example.org").unwrap(),
            "wss://example.org/ws"
        );
        assert_eq!(
            normalize_url("https://example.org/").unwrap(),
            "wss://example.org/ws"
        );
        assert_eq!(normalize_url("ws://h:1/custom").unwrap(), "ws://h:1/custom");
        assert!(normalize_url("").is_err());
        assert!(normalize_url("ftp://x").is_err());
        assert!(normalize_url("ws://").is_err());
        assert!(normalize_url("a b").is_err());
    }
}
