//! Hostile and broken clients against the real server. Each test is named after the attack.

mod common;

use common::{pair, start, Client, Ended, WAIT};
use futures_util::SinkExt;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;

#[tokio::test]
async fn spoofed_sender() {
    let server = start(|_| {}).await;
    let (mut a, a_id, mut b, b_id) = pair(&server, "r").await;
    let mut c = Client::connect(&server).await;
    let c_id = c.join("r", "Cy").await["id"].as_str().unwrap().to_owned();
    a.recv().await; // peer-joined c
    b.recv().await;
    // a claims to be c, twice: in `from`, and with a fake `from` inside a nested object.
    a.send(format!(
        r#"{{"type":"signal","from":"{c_id}","to":"{b_id}","data":{{"kind":"ring"}}}}"#
    ))
    .await;
    let got = b.recv().await;
    assert_eq!(
        got["from"],
        a_id.as_str(),
        "the server stamps the real sender"
    );
    assert_eq!(got["data"]["kind"], "ring");
    c.expect_silence(Duration::from_millis(200)).await;
}

#[tokio::test]
async fn cross_room_relay() {
    let server = start(|_| {}).await;
    let (mut a, _, _b, _) = pair(&server, "room-1").await;
    let (_c, _, mut d, d_id) = pair(&server, "room-2").await;
    a.signal(&d_id, r#"{"kind":"ring"}"#).await;
    a.expect_error("unknown-peer").await;
    d.expect_silence(Duration::from_millis(200)).await;
    // Not even to an id that once existed: after d leaves, its id is dead.
    d.send(r#"{"type":"leave"}"#).await;
    a.signal(&d_id, r#"{}"#).await;
    a.expect_error("unknown-peer").await;
}

#[tokio::test]
async fn oversize_message() {
    let server = start(|c| c.limits.max_message_bytes = 4096).await;
    let (mut a, _, mut b, b_id) = pair(&server, "r").await;
    // Over the limit but readable: an error, and the connection stays.
    let pad = "x".repeat(5000);
    a.signal(&b_id, &format!(r#"{{"pad":"{pad}"}}"#)).await;
    let msg = a.expect_error("too-large").await;
    assert!(msg.contains("4096"), "{msg}");
    b.expect_silence(Duration::from_millis(200)).await;
    a.signal(&b_id, r#"{"still":"here"}"#).await;
    assert_eq!(b.recv().await["data"]["still"], "here");
    // Far over the limit: the error, then close 1009, never a 64 MiB buffer.
    let huge = "y".repeat(64 * 1024);
    a.signal(&b_id, &format!(r#"{{"pad":"{huge}"}}"#)).await;
    a.expect_error("too-large").await;
    assert_eq!(
        a.ended(WAIT).await,
        Ended::Closed(1009, "message too big".into())
    );
    assert_eq!(b.recv().await["type"], "peer-left");
}

#[tokio::test]
async fn malformed_json() {
    let server = start(|_| {}).await;
    let mut a = Client::connect(&server).await;
    for bad in [
        "{",
        "null",
        "[]",
        "\"join\"",
        r#"{"type":"join","room":["r"],"name":"A"}"#,
    ] {
        a.send(bad).await;
        a.expect_error("bad-message").await;
    }
    a.ws.send(Message::Binary(vec![1, 2, 3].into()))
        .await
        .unwrap();
    let msg = a.expect_error("bad-message").await;
    assert!(msg.contains("binary"), "{msg}");
    a.join("r", "Ada").await; // still usable
}

#[tokio::test]
async fn unknown_type() {
    let server = start(|_| {}).await;
    let mut a = Client::connect(&server).await;
    a.send(r#"{"type":"shout","text":"hi"}"#).await;
    let msg = a.expect_error("bad-message").await;
    assert!(msg.contains("shout"), "{msg}");
    a.send(r#"{"kind":"join"}"#).await;
    a.expect_error("bad-message").await;
    a.join("r", "Ada").await;
}

#[tokio::test]
async fn room_full() {
    let server = start(|c| c.limits.room_capacity = 2).await;
    let (_a, _, _b, _) = pair(&server, "r").await;
    let mut c = Client::connect(&server).await;
    c.send(r#"{"type":"join","room":"r","name":"Cy"}"#).await;
    c.expect_error("room-full").await;
    c.join("r2", "Cy").await;
}

#[tokio::test]
async fn wrong_password() {
    let server = start(|_| {}).await;
    let mut a = Client::connect(&server).await;
    a.send(r#"{"type":"join","room":"r","name":"A","password":"open sesame"}"#)
        .await;
    assert_eq!(a.recv().await["type"], "welcome");
    let mut b = Client::connect(&server).await;
    b.send(r#"{"type":"join","room":"r","name":"B","password":"open"}"#)
        .await;
    b.expect_error("wrong-password").await;
    b.send(r#"{"type":"join","room":"r","name":"B"}"#).await;
    b.expect_error("wrong-password").await;
    a.expect_silence(Duration::from_millis(100)).await;
    b.send(r#"{"type":"join","room":"r","name":"B","password":"open sesame"}"#)
        .await;
    assert_eq!(b.recv().await["type"], "welcome");
}

#[tokio::test]
async fn password_guessing_is_cut_off() {
    let server = start(|c| c.limits.error_budget = 5.0).await;
    let mut a = Client::connect(&server).await;
    a.send(r#"{"type":"join","room":"r","name":"A","password":"pw"}"#)
        .await;
    a.recv().await;
    let mut b = Client::connect(&server).await;
    for i in 0..5 {
        b.send(format!(
            r#"{{"type":"join","room":"r","name":"B","password":"guess{i}"}}"#
        ))
        .await;
        b.expect_error("wrong-password").await;
    }
    b.send(r#"{"type":"join","room":"r","name":"B","password":"guess5"}"#)
        .await;
    assert_eq!(
        b.ended(WAIT).await,
        Ended::Closed(1008, "too many errors".into())
    );
}

#[tokio::test]
async fn rate_limited() {
    let server = start(|c| {
        c.limits.rate_per_sec = 5.0;
        c.limits.rate_burst = 5.0;
        c.limits.error_budget = 10.0;
    })
    .await;
    let (mut a, _, mut b, b_id) = pair(&server, "r").await;
    // The join used one token; four signals pass, the fifth is refused.
    for i in 0..5 {
        a.signal(&b_id, &format!(r#"{{"n":{i}}}"#)).await;
    }
    for i in 0..4 {
        assert_eq!(b.recv().await["data"]["n"], i);
    }
    a.expect_error("rate-limited").await;
    b.expect_silence(Duration::from_millis(100)).await;
    // Waiting refills the bucket; the connection was never closed.
    tokio::time::sleep(Duration::from_millis(450)).await;
    a.signal(&b_id, r#"{"n":"after"}"#).await;
    assert_eq!(b.recv().await["data"]["n"], "after");
    // A client that keeps flooding is closed with 1008.
    for i in 0..40 {
        if a.ws
            .send(Message::Text(
                format!(r#"{{"type":"signal","to":"{b_id}","data":{{"f":{i}}}}}"#).into(),
            ))
            .await
            .is_err()
        {
            break;
        }
    }
    assert_eq!(
        a.ended(WAIT).await,
        Ended::Closed(1008, "too many errors".into())
    );
}

#[tokio::test]
async fn slow_handshake() {
    let server = start(|c| c.handshake_timeout = Duration::from_millis(500)).await;
    // Half a request line, then nothing.
    let mut tcp = TcpStream::connect(server.local_addr()).await.unwrap();
    tcp.write_all(b"GET /ws HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let started = Instant::now();
    let mut buf = [0u8; 1024];
    let n = tokio::time::timeout(WAIT, async {
        let mut total = 0;
        loop {
            match tcp.read(&mut buf).await {
                Ok(0) | Err(_) => return total,
                Ok(n) => total += n,
            }
        }
    })
    .await
    .expect("the server hangs up on a slow handshake");
    assert!(started.elapsed() >= Duration::from_millis(400));
    // hyper may answer 408 before closing; it never upgrades.
    let answered = String::from_utf8_lossy(&buf[..n.min(buf.len())]).to_string();
    assert!(!answered.contains("101"), "{answered}");
    // A connection that sends nothing at all is dropped too.
    let mut silent = TcpStream::connect(server.local_addr()).await.unwrap();
    let n = tokio::time::timeout(WAIT, silent.read(&mut buf))
        .await
        .expect("dropped");
    assert!(matches!(n, Ok(0) | Err(_)) || String::from_utf8_lossy(&buf).contains("408"));
    assert_eq!(server.counts().0, 0);
}

#[tokio::test]
async fn never_joins() {
    let server = start(|c| c.limits.join_timeout = Duration::from_millis(300)).await;
    let mut idle = Client::connect(&server).await;
    let (mut a, _, _b, _) = pair(&server, "r").await;
    match idle.ended(WAIT).await {
        Ended::Closed(1008, reason) => assert!(reason.contains("no join"), "{reason}"),
        other => panic!("{other:?}"),
    }
    a.expect_silence(Duration::from_millis(400)).await; // joined peers are not touched
    assert_eq!(server.counts(), (2, 1));
}

#[tokio::test]
async fn silent_client_times_out() {
    let server = start(|c| {
        c.ping_interval = Duration::from_millis(100);
        c.idle_timeout = Duration::from_millis(400);
    })
    .await;
    let (a, _, b, _) = pair(&server, "r").await;
    // Clients that read answer pings (tungstenite replies while reading).
    let readers: Vec<_> = [a, b]
        .into_iter()
        .map(|mut c| tokio::spawn(async move { c.ended(Duration::from_secs(30)).await }))
        .collect();
    // A raw upgrade that then never reads nor answers pings.
    let mut tcp = TcpStream::connect(server.local_addr()).await.unwrap();
    tcp.write_all(
        b"GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
          Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
    )
    .await
    .unwrap();
    let mut buf = [0u8; 256];
    let n = tcp.read(&mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 101"));
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(server.counts().0, 3);
    tokio::time::sleep(Duration::from_millis(900)).await;
    assert_eq!(
        server.counts().0,
        2,
        "the silent connection is gone, the others stay"
    );
    let n = tcp.read(&mut buf).await.unwrap_or(0);
    assert!(
        n == 0 || buf[0] == 0x88 || buf[0] == 0x89,
        "ping or close, then EOF"
    );
    for r in readers {
        r.abort();
    }
}

/// Floods `to` with 60 KB signals from a's write half until aborted.
fn flood(
    mut a_tx: futures_util::stream::SplitSink<
        tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<TcpStream>>,
        Message,
    >,
    to: String,
    count: usize,
) -> tokio::task::JoinHandle<()> {
    let pad = "z".repeat(60_000);
    tokio::spawn(async move {
        for _ in 0..count {
            let text = format!(r#"{{"type":"signal","to":"{to}","data":{{"p":"{pad}"}}}}"#);
            if a_tx.send(Message::Text(text.into())).await.is_err() {
                break;
            }
        }
    })
}

#[tokio::test]
async fn slow_reader() {
    let server = start(|c| {
        c.outbound_queue = 16;
        c.write_timeout = Duration::from_secs(1);
        c.limits.rate_per_sec = 100_000.0;
        c.limits.rate_burst = 100_000.0;
        c.limits.error_budget = 100_000.0;
    })
    .await;
    let (a, _, b, b_id) = pair(&server, "r").await;
    // b never reads again; a floods it and reads its own side.
    let (a_tx, mut a_rx) = futures_util::StreamExt::split(a.ws);
    let flood = flood(a_tx, b_id, 4000);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let (mut saw_left, mut told) = (false, false);
    while let Ok(Some(Ok(msg))) =
        tokio::time::timeout_at(deadline, futures_util::StreamExt::next(&mut a_rx)).await
    {
        if let Message::Text(t) = msg {
            told |= t.as_str().contains("not keeping up");
            if t.as_str().contains("peer-left") {
                saw_left = true;
                break;
            }
        }
    }
    flood.abort();
    assert!(told, "the sender hears that its messages are not delivered");
    assert!(
        saw_left,
        "the room hears that the client that does not read was dropped"
    );
    assert_eq!(server.counts().0, 1, "only a is left");
    drop(b);
}

#[tokio::test]
async fn flood_cannot_evict_a_reader() {
    let server = start(|c| {
        c.outbound_queue = 16;
        c.limits.rate_per_sec = 100_000.0;
        c.limits.rate_burst = 100_000.0;
        c.limits.error_budget = 100_000.0;
    })
    .await;
    let (a, _, b, b_id) = pair(&server, "r").await;
    // b reads everything, just not as fast as a can send.
    let reader = tokio::spawn(async move {
        let mut b = b;
        let mut got = 0usize;
        while let Ok(Some(Ok(_))) = tokio::time::timeout(
            Duration::from_secs(2),
            futures_util::StreamExt::next(&mut b.ws),
        )
        .await
        {
            got += 1;
        }
        (b, got)
    });
    let (a_tx, mut a_rx) = futures_util::StreamExt::split(a.ws);
    let flood = flood(a_tx, b_id, 300);
    flood.await.unwrap();
    // Drain a's replies (some may say "not keeping up").
    while let Ok(Some(Ok(_))) = tokio::time::timeout(
        Duration::from_millis(500),
        futures_util::StreamExt::next(&mut a_rx),
    )
    .await
    {}
    let (_b, got) = reader.await.unwrap();
    assert!(got > 16, "b received the flood it could take: {got}");
    assert_eq!(server.counts().0, 2, "the flood did not get b disconnected");
}

#[tokio::test]
async fn abrupt_disconnect_notifies_room() {
    let server = start(|_| {}).await;
    let (mut a, _, b, b_id) = pair(&server, "r").await;
    // Drop b's TCP connection without a close frame.
    let tcp = match b.ws.into_inner() {
        tokio_tungstenite::MaybeTlsStream::Plain(t) => t,
        _ => unreachable!(),
    };
    drop(tcp);
    let left = a.recv().await;
    assert_eq!(left["type"], "peer-left");
    assert_eq!(left["id"], b_id.as_str());
    assert_eq!(server.counts(), (1, 1));
}

#[tokio::test]
async fn server_full() {
    let server = start(|c| c.limits.max_connections = 1).await;
    let mut a = Client::connect(&server).await;
    a.join("r", "A").await;
    let mut b = Client::connect(&server).await;
    b.expect_error("server-full").await;
    assert_eq!(
        b.ended(WAIT).await,
        Ended::Closed(1013, "server full".into())
    );
}

#[tokio::test]
async fn connection_flood_from_one_address() {
    let server = start(|c| c.max_connections_per_ip = 3).await;
    let mut held = Vec::new();
    for _ in 0..3 {
        let mut c = Client::connect(&server).await;
        c.join("r", "A").await;
        held.push(c);
    }
    // The fourth from the same address is closed before any handshake.
    let refused = tokio_tungstenite::connect_async(server.ws_url()).await;
    assert!(
        refused.is_err(),
        "a fourth connection from one address is refused"
    );
    // A place frees up when one leaves.
    drop(held.pop());
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut again = Client::connect(&server).await;
    again.join("r", "B").await;
}
