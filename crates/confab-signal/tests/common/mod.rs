//! A real server on 127.0.0.1:0 and real WebSocket clients.
#![allow(dead_code)]

pub mod checks;
pub mod nodes;

use confab_signal::{SignalConfig, SignalServer};
use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub const WAIT: Duration = Duration::from_secs(5);

pub async fn start(tweak: impl FnOnce(&mut SignalConfig)) -> SignalServer {
    let mut config = SignalConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        ..SignalConfig::default()
    };
    tweak(&mut config);
    SignalServer::start(config).await.expect("server starts")
}

pub struct Client {
    pub ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

/// How a connection ended, seen from the client.
#[derive(Debug, PartialEq)]
pub enum Ended {
    Closed(u16, String),
    Dropped,
}

impl Client {
    pub async fn connect(server: &SignalServer) -> Client {
        let (ws, _) = tokio_tungstenite::connect_async(server.ws_url())
            .await
            .expect("websocket connects");
        Client { ws }
    }

    /// Connects with a tiny receive buffer, so that a client that stops reading backs the
    /// server up after kilobytes instead of the megabytes loopback sockets buffer by default.
    pub async fn connect_small_window(server: &SignalServer) -> Client {
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        socket.set_recv_buffer_size(4096).expect("SO_RCVBUF");
        let tcp = socket
            .connect(server.local_addr())
            .await
            .expect("tcp connects");
        let (ws, _) = tokio_tungstenite::client_async(server.ws_url(), MaybeTlsStream::Plain(tcp))
            .await
            .expect("websocket connects");
        Client { ws }
    }

    /// Connects from another loopback address (127.0.0.2, …): a different client address as
    /// far as the server can tell.
    pub async fn connect_from(server: &SignalServer, ip: &str) -> Client {
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        socket
            .bind(std::net::SocketAddr::new(ip.parse().expect("ip"), 0))
            .expect("bind to a loopback address");
        let tcp = socket
            .connect(server.local_addr())
            .await
            .expect("tcp connects");
        let (ws, _) = tokio_tungstenite::client_async(server.ws_url(), MaybeTlsStream::Plain(tcp))
            .await
            .expect("websocket connects");
        Client { ws }
    }

    pub async fn send(&mut self, text: impl Into<String>) {
        self.ws
            .send(Message::Text(text.into().into()))
            .await
            .expect("send");
    }

    /// The next text frame, as JSON.
    pub async fn recv(&mut self) -> Value {
        loop {
            let msg = tokio::time::timeout(WAIT, self.ws.next())
                .await
                .expect("a message within the wait")
                .expect("the connection is open")
                .expect("no websocket error");
            match msg {
                Message::Text(t) => return serde_json::from_str(t.as_str()).expect("JSON"),
                Message::Close(c) => panic!("closed while waiting for a message: {c:?}"),
                _ => continue,
            }
        }
    }

    /// The next text frame, raw.
    pub async fn recv_text(&mut self) -> String {
        loop {
            match tokio::time::timeout(WAIT, self.ws.next()).await {
                Ok(Some(Ok(Message::Text(t)))) => return t.as_str().to_owned(),
                Ok(Some(Ok(Message::Close(c)))) => panic!("closed: {c:?}"),
                Ok(Some(Ok(_))) => continue,
                other => panic!("no text frame: {other:?}"),
            }
        }
    }

    /// Asserts nothing arrives for a while.
    pub async fn expect_silence(&mut self, d: Duration) {
        if let Ok(Some(Ok(Message::Text(t)))) = tokio::time::timeout(d, self.ws.next()).await {
            panic!("expected nothing, got {t}");
        }
    }

    /// Reads until the connection ends; returns the close frame, skipping other frames.
    pub async fn ended(&mut self, within: Duration) -> Ended {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            match tokio::time::timeout_at(deadline, self.ws.next()).await {
                Err(_) => panic!("the connection did not end within {within:?}"),
                Ok(Some(Ok(Message::Close(Some(f))))) => {
                    return Ended::Closed(u16::from(f.code), f.reason.as_str().to_owned())
                }
                Ok(Some(Ok(Message::Close(None)))) => {
                    return Ended::Closed(u16::from(CloseCode::Status), String::new())
                }
                Ok(Some(Ok(_))) => continue,
                Ok(Some(Err(_))) | Ok(None) => return Ended::Dropped,
            }
        }
    }

    /// Sends a join and returns the welcome.
    pub async fn join(&mut self, room: &str, name: &str) -> Value {
        self.send(format!(
            r#"{{"type":"join","room":"{room}","name":"{name}"}}"#
        ))
        .await;
        let w = self.recv().await;
        assert_eq!(w["type"], "welcome", "{w}");
        w
    }

    pub async fn signal(&mut self, to: &str, data: &str) {
        self.send(format!(r#"{{"type":"signal","to":"{to}","data":{data}}}"#))
            .await;
    }

    /// Expects an error with this code; returns its message.
    pub async fn expect_error(&mut self, code: &str) -> String {
        let e = self.recv().await;
        assert_eq!(e["type"], "error", "{e}");
        assert_eq!(e["code"], code, "{e}");
        let message = e["message"].as_str().unwrap().to_owned();
        assert!(!message.is_empty());
        message
    }
}

/// Two clients joined to the same room: (a, a_id, b, b_id).
pub async fn pair(server: &SignalServer, room: &str) -> (Client, String, Client, String) {
    let mut a = Client::connect(server).await;
    let a_id = a.join(room, "Ada").await["id"].as_str().unwrap().to_owned();
    let mut b = Client::connect(server).await;
    let b_id = b.join(room, "Bob").await["id"].as_str().unwrap().to_owned();
    let joined = a.recv().await;
    assert_eq!(joined["type"], "peer-joined");
    assert_eq!(joined["id"], b_id.as_str());
    (a, a_id, b, b_id)
}

/// A plain HTTP/1.1 GET; the whole response, head and body.
pub async fn http_get(addr: std::net::SocketAddr, path: &str) -> String {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await
    .unwrap();
    let mut out = String::new();
    tokio::time::timeout(WAIT, tcp.read_to_string(&mut out))
        .await
        .unwrap()
        .unwrap();
    out
}

/// Waits (at most [`WAIT`]) until `f` holds.
pub async fn until(what: &str, f: impl Fn() -> bool) {
    until_within(what, WAIT, f).await
}

pub async fn until_within(what: &str, within: Duration, f: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + within;
    while !f() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: not within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Whether the VideoRoom room `room` is at Janus (its participants can be listed).
pub async fn stands_at_janus(j: &mut confab_janus::Janus, handle: u64, room: u64) -> bool {
    let list = serde_json::json!({"request": "listparticipants", "room": room});
    j.plugin("listing", handle, list).await.is_ok()
}

/// The feeds in a VideoRoom room at Janus (as `listparticipants` says).
pub async fn at_janus(
    j: &mut confab_janus::Janus,
    handle: u64,
    room: u64,
) -> std::collections::BTreeSet<u64> {
    let list = serde_json::json!({"request": "listparticipants", "room": room});
    let listed = j.plugin("listing", handle, list).await.expect("the room");
    listed["participants"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| p["id"].as_u64())
        .collect()
}

/// The feed id a test seats the member whose `welcome` gave `sfu` under at Janus (Janus would
/// pick one; a fixed one is easy to look for): from its room, which is its own.
pub fn seat_id(sfu: &Value) -> u64 {
    sfu["room"].as_u64().unwrap() % 1_000_000_000 + 1
}

/// A session of its own at Janus, seated as the member whose `welcome` gave `sfu` (its room
/// and token); the session and the seat's handle.
pub async fn seated_at_janus(
    janus: &confab_netlab::janus::Janus,
    sfu: &Value,
) -> (confab_janus::Janus, u64) {
    let mut j = confab_janus::Janus::connect(&janus.url().replace("janus+", ""))
        .await
        .expect("janus answers");
    j.create_session().await.expect("a session");
    let seat = sit_at_janus(&mut j, sfu, seat_id(sfu), &sfu["token"])
        .await
        .expect("the member sits at Janus");
    (j, seat)
}

/// Joins a VideoRoom room at Janus as a publisher under `id` with `token`, on a new handle,
/// trying again while the room or the token may still be a moment behind the `welcome`.
pub async fn sit_at_janus(
    j: &mut confab_janus::Janus,
    sfu: &Value,
    id: u64,
    token: &Value,
) -> Result<u64, confab_janus::JanusError> {
    let h = j.attach().await?;
    let sit = serde_json::json!({"request": "join", "ptype": "publisher", "room": sfu["room"],
                                 "pin": sfu["pin"], "id": id, "token": token});
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        match j.plugin("joining", h, sit.clone()).await {
            Ok(_) => return Ok(h),
            Err(e) if std::time::Instant::now() >= deadline => return Err(e),
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}
