//! Hostile and broken clients against the real server. Each test is named after the attack.

mod common;

use common::checks::on_nodes;
use common::{pair, start, until, Client, Ended, WAIT};
use futures_util::{SinkExt, StreamExt};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;

// Shared with the cluster tests (`tests/cluster.rs` runs them on three nodes).
on_nodes!(1; spoofed_sender, oversize_message, room_full, wrong_password, double_join);

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

/// Waits (up to WAIT) until `f` holds.
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
    until("the raw upgrade counted", || server.counts().0 == 3).await;
    until("the silent connection gone, the others staying", || {
        server.counts().0 == 2
    })
    .await;
    let n = tcp.read(&mut buf).await.unwrap_or(0);
    assert!(
        n == 0 || buf[0] == 0x88 || buf[0] == 0x89,
        "ping or close, then EOF"
    );
    for r in readers {
        r.abort();
    }
}

/// a and b joined to room "r", b with a tiny receive buffer (see
/// [`Client::connect_small_window`]).
async fn small_window_pair(
    server: &confab_signal::SignalServer,
) -> (Client, String, Client, String) {
    let mut a = Client::connect(server).await;
    let a_id = a.join("r", "Ada").await["id"].as_str().unwrap().to_owned();
    let mut b = Client::connect_small_window(server).await;
    let b_id = b.join("r", "Bob").await["id"].as_str().unwrap().to_owned();
    assert_eq!(a.recv().await["type"], "peer-joined");
    (a, a_id, b, b_id)
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
    until("the server lets the dropped one go", || {
        server.counts().0 == 2
    })
    .await;
    let mut again = Client::connect(&server).await;
    again.join("r", "B").await;
}

// ------------------------------------------------------------------ issue 9: the server side

/// A member that joins and leaves in a loop. The others' clients answer every `peer-joined`
/// (as the engine does with `state`) and keep signalling the flapper's old ids: those errors
/// are the flapper's doing, so they must never cost the victims their connections.
#[tokio::test]
async fn flapping_member() {
    let server = start(|c| {
        c.limits.address_join_burst = 8.0;
        c.limits.address_join_per_sec = 1.0;
    })
    .await;
    let (a, a_id, b, b_id) = pair(&server, "r").await;
    let run_for = Duration::from_secs(3);
    let started = tokio::time::Instant::now();

    // Victims: signal each other every 100 ms, answer every peer-joined at once, and every
    // 50 ms signal one of the flapper's old ids.
    let victim = |mut me: Client, other: String| {
        tokio::spawn(async move {
            let (mut sent, mut got, mut unknown_peer) = (0u32, 0u32, 0u32);
            let mut other_done = false;
            let mut old_ids: Vec<String> = Vec::new();
            let mut to_other = tokio::time::interval(Duration::from_millis(100));
            let mut to_old = tokio::time::interval(Duration::from_millis(50));
            let end = tokio::time::Instant::now() + run_for + Duration::from_millis(500);
            loop {
                tokio::select! {
                    _ = tokio::time::sleep_until(end) => break,
                    _ = to_other.tick() => {
                        me.signal(&other, &format!(r#"{{"kind":"state","n":{sent}}}"#)).await;
                        sent += 1;
                    }
                    _ = to_old.tick() => {
                        let pick = (old_ids.len() as u32).wrapping_mul(7).wrapping_add(sent);
                        if let Some(id) = old_ids.get(pick as usize % old_ids.len().max(1)) {
                            me.signal(id, r#"{"kind":"state"}"#).await;
                        }
                    }
                    msg = futures_util::StreamExt::next(&mut me.ws) => match msg {
                        Some(Ok(Message::Text(t))) => {
                            let v: serde_json::Value = serde_json::from_str(t.as_str()).unwrap();
                            match v["type"].as_str() {
                                Some("peer-joined") => {
                                    let id = v["id"].as_str().unwrap().to_owned();
                                    me.signal(&id, r#"{"kind":"state"}"#).await;
                                    old_ids.push(id);
                                }
                                Some("signal") if v["data"]["kind"] == "done" => other_done = true,
                                Some("signal") => got += 1,
                                Some("error") if v["code"] == "unknown-peer" => unknown_peer += 1,
                                Some("peer-left") => {}
                                _ => panic!("victim got {v}"),
                            }
                        }
                        Some(Ok(Message::Close(f))) => panic!("a victim was closed: {f:?}"),
                        Some(Ok(_)) => {}
                        other => panic!("a victim's connection ended: {other:?}"),
                    },
                }
            }
            // Count everything the other sent before its end marker.
            me.signal(&other, r#"{"kind":"done"}"#).await;
            while !other_done {
                let v = me.recv().await;
                match (v["type"].as_str(), v["data"]["kind"].as_str()) {
                    (Some("signal"), Some("done")) => other_done = true,
                    (Some("signal"), _) => got += 1,
                    _ => {}
                }
            }
            (me, sent, got, unknown_peer, old_ids.len())
        })
    };
    let va = victim(a, b_id.clone());
    let vb = victim(b, a_id.clone());

    // The flapper: three connections from the victims' address, each sending join and leave
    // as fast as the message rate limit lets it (50 messages a second).
    let mut flappers = Vec::new();
    for n in 0..3 {
        let f = Client::connect(&server).await;
        let (mut tx, mut rx) = f.ws.split();
        let writer = tokio::spawn(async move {
            while started.elapsed() < run_for {
                for msg in [
                    format!(r#"{{"type":"join","room":"r","name":"Flap{n}"}}"#),
                    r#"{"type":"leave"}"#.to_owned(),
                ] {
                    if tx.send(Message::Text(msg.into())).await.is_err() {
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        });
        flappers.push(tokio::spawn(async move {
            let (mut welcomes, mut refused) = (0u32, 0u32);
            let end = tokio::time::Instant::now() + run_for;
            while let Ok(Some(Ok(msg))) = tokio::time::timeout_at(end, rx.next()).await {
                if let Message::Text(t) = msg {
                    let v: serde_json::Value = serde_json::from_str(t.as_str()).unwrap();
                    welcomes += (v["type"] == "welcome") as u32;
                    refused += (v["code"] == "rate-limited") as u32;
                }
            }
            writer.abort();
            (welcomes, refused)
        }));
    }
    let (mut welcomes, mut refused) = (0, 0);
    for f in flappers {
        let (w, r) = f.await.unwrap();
        welcomes += w;
        refused += r;
    }
    let (mut a, a_sent, a_got, a_unknown, a_old) = va.await.unwrap();
    let (mut b, b_sent, b_got, b_unknown, _) = vb.await.unwrap();
    // The flapper was held to the address's join rate: 8 at once (two went to the victims),
    // then one a second.
    assert!(welcomes <= 6 + 4, "the flapper joined {welcomes} times");
    assert!(refused > 0, "the flapper heard rate-limited");
    assert!(
        a_old >= 3,
        "the victims saw the flapper come and go ({a_old} ids)"
    );
    assert!(
        a_unknown > 0 && b_unknown > 0,
        "signals to old ids are answered unknown-peer"
    );
    // Every relay between the victims went through.
    assert_eq!((a_got, b_got), (b_sent, a_sent), "relays received = sent");
    assert!(a_sent >= 20, "the victims kept talking ({a_sent} signals)");
    // And both are still connected and talking.
    a.signal(&b_id, r#"{"after":1}"#).await;
    let got = loop {
        let v = b.recv().await;
        if v["type"] == "signal" && v["data"]["after"] == 1 {
            break v;
        }
    };
    assert_eq!(got["from"], a_id.as_str());
    drop(a);
}

/// Guessing a room's password with a fresh connection per guess (so that no connection's own
/// error budget ever runs out): failures count per address and per room, with backoff.
#[tokio::test]
async fn password_guessing_across_reconnects() {
    let server = start(|c| {
        c.limits.password_failures_per_address = 3;
        c.limits.password_failures_per_room = 5;
    })
    .await;
    let mut a = Client::connect(&server).await;
    a.send(r#"{"type":"join","room":"r","name":"A","password":"pw"}"#)
        .await;
    assert_eq!(a.recv().await["type"], "welcome");
    let guess = |ip: &'static str, password: &'static str| {
        let server = &server;
        async move {
            let mut c = Client::connect_from(server, ip).await;
            c.send(format!(
                r#"{{"type":"join","room":"r","name":"M","password":"{password}"}}"#
            ))
            .await;
            let v = c.recv().await;
            if v["type"] == "welcome" {
                "welcome".to_owned()
            } else {
                v["code"].as_str().unwrap_or("?").to_owned()
            }
        }
    };
    // One address: three wrong guesses, then it is not even asked — not even the right one.
    for i in 0..3 {
        assert_eq!(
            guess("127.0.0.2", ["a", "b", "c"][i]).await,
            "wrong-password"
        );
    }
    assert_eq!(guess("127.0.0.2", "d").await, "rate-limited");
    assert_eq!(
        guess("127.0.0.2", "pw").await,
        "rate-limited",
        "a blocked address learns nothing, even with the right password"
    );
    // Other addresses: the room's own count (five) runs out, then the room stops answering
    // strangers for a while.
    assert_eq!(guess("127.0.0.3", "e").await, "wrong-password");
    assert_eq!(guess("127.0.0.4", "f").await, "wrong-password");
    assert_eq!(guess("127.0.0.5", "pw").await, "rate-limited");
    // Those already in the room (their address) still get back in: a reconnect after a drop
    // is never locked out by someone else's guessing.
    assert_eq!(guess("127.0.0.1", "pw").await, "welcome");
}

/// A full room must not tell a stranger with a wrong password that it is full (and so that
/// people are in it): the password is checked first.
#[tokio::test]
async fn room_full_does_not_reveal_occupancy_to_a_wrong_password() {
    let server = start(|c| c.limits.room_capacity = 2).await;
    let mut a = Client::connect(&server).await;
    a.send(r#"{"type":"join","room":"r","name":"A","password":"pw"}"#)
        .await;
    a.recv().await;
    let mut b = Client::connect(&server).await;
    b.send(r#"{"type":"join","room":"r","name":"B","password":"pw"}"#)
        .await;
    assert_eq!(b.recv().await["type"], "welcome");
    let mut c = Client::connect(&server).await;
    c.send(r#"{"type":"join","room":"r","name":"C","password":"nope"}"#)
        .await;
    c.expect_error("wrong-password").await;
    c.send(r#"{"type":"join","room":"r","name":"C","password":"pw"}"#)
        .await;
    c.expect_error("room-full").await;
}

/// Names that read differently from what they are: direction overrides, invisible
/// characters, separators. And one person's "Zoë" is everyone's "Zoë" (NFC).
#[tokio::test]
async fn spoofed_display_names() {
    let server = start(|_| {}).await;
    let mut a = Client::connect(&server).await;
    a.join("r", "Ada").await;
    let mut m = Client::connect(&server).await;
    for bad in [
        r#"Ada\u202egnp.exe"#,
        r#"A\u200bda"#,
        r#"Ada\u2066"#,
        r#"Ada\u2028Admin"#,
        r#"\ufeffAda"#,
        r#"\u3164"#,
    ] {
        m.send(format!(r#"{{"type":"join","room":"r","name":"{bad}"}}"#))
            .await;
        let msg = m.expect_error("invalid-name").await;
        assert!(msg.contains("U+"), "the message names the character: {msg}");
    }
    // Decomposed and padded: stored and announced in the normalized form.
    m.send(r#"{"type":"join","room":"r","name":"  Zoe\u0308  M "}"#)
        .await;
    let w = m.recv().await;
    assert_eq!(w["type"], "welcome");
    let joined = a.recv().await;
    assert_eq!(joined["type"], "peer-joined");
    assert_eq!(joined["name"], "Zo\u{eb} M");
    let mut late = Client::connect(&server).await;
    let w = late.join("r", "Late").await;
    assert_eq!(w["peers"][1]["name"], "Zo\u{eb} M");
}

/// A reader that keeps reading, slowly, while it is flooded: the server's queue for it stays
/// bounded in bytes, not just in messages.
#[tokio::test]
async fn slow_reader_memory_is_bounded_in_bytes() {
    let server = start(|c| {
        c.outbound_queue = 64;
        c.outbound_queue_bytes = 128 * 1024;
        c.write_timeout = Duration::from_secs(5);
        c.limits.rate_per_sec = 100_000.0;
        c.limits.rate_burst = 100_000.0;
        c.limits.error_budget = 100_000.0;
    })
    .await;
    let (a, _, b, b_id) = small_window_pair(&server).await;
    // b stops reading for a while (under the write timeout).
    let (a_tx, mut a_rx) = futures_util::StreamExt::split(a.ws);
    let drain_a = tokio::spawn(async move {
        let mut told = 0;
        while let Ok(Some(Ok(m))) = tokio::time::timeout(
            Duration::from_secs(3),
            futures_util::StreamExt::next(&mut a_rx),
        )
        .await
        {
            if let Message::Text(t) = m {
                told += t.as_str().contains("not keeping up") as u32;
            }
        }
        told
    });
    let flood = flood(a_tx, b_id, 2000);
    let mut peak = 0;
    let until = tokio::time::Instant::now() + Duration::from_millis(2500);
    while tokio::time::Instant::now() < until {
        peak = peak.max(server.stats().queued_bytes);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    flood.abort();
    // At most the byte limit plus one message (a message always fits an empty queue).
    assert!(
        peak <= 128 * 1024 + 61_000,
        "{peak} bytes were queued for one client"
    );
    assert!(peak >= 60_000, "the queue did fill ({peak} bytes)");
    assert!(drain_a.await.unwrap() > 0, "the sender was told");
    drop(b);
}

/// Room updates (`peer-joined`, `peer-left`) are never dropped: a client whose queue cannot
/// take one is disconnected (so it resyncs when it joins again), never left with a wrong
/// picture of the room.
#[tokio::test]
async fn room_updates_are_never_silently_dropped() {
    let server = start(|c| {
        c.outbound_queue = 8;
        c.outbound_queue_bytes = 1 << 20;
        c.write_timeout = Duration::from_secs(20);
        c.limits.rate_per_sec = 100_000.0;
        c.limits.rate_burst = 100_000.0;
        c.limits.error_budget = 100_000.0;
    })
    .await;
    let (a, _, mut b, b_id) = small_window_pair(&server).await;
    let (a_tx, mut a_rx) = futures_util::StreamExt::split(a.ws);
    // b does not read while a floods it (past the socket buffers) and others come and go.
    flood(a_tx, b_id.clone(), 300).await.unwrap();
    let mut told = false;
    while let Ok(Some(Ok(Message::Text(t)))) =
        tokio::time::timeout(Duration::from_millis(300), a_rx.next()).await
    {
        told |= t.as_str().contains("not keeping up");
    }
    assert!(told, "b's queue filled up");
    let mut others = Vec::new();
    for i in 0..4 {
        let mut c = Client::connect(&server).await;
        c.join("r", &format!("C{i}")).await;
        c.send(r#"{"type":"leave"}"#).await;
        others.push(c);
    }
    // a (reading) sees the four come and go: the server has dealt with all of it.
    let mut gone = 0;
    while gone < 4 {
        match tokio::time::timeout(WAIT, a_rx.next()).await {
            Ok(Some(Ok(Message::Text(t)))) => gone += t.as_str().contains("peer-left") as u32,
            Ok(Some(Ok(_))) => {}
            other => panic!("a stopped hearing the room: {other:?}"),
        }
    }
    // Now b reads everything: either it got every update, or its connection ended.
    let (mut joined, mut left) = (0, 0);
    let ended = loop {
        match tokio::time::timeout(Duration::from_secs(2), b.ws.next()).await {
            Ok(Some(Ok(Message::Text(t)))) => {
                let v: serde_json::Value = serde_json::from_str(t.as_str()).unwrap();
                joined += (v["type"] == "peer-joined") as u32;
                left += (v["type"] == "peer-left") as u32;
            }
            Ok(Some(Ok(Message::Close(_)))) | Ok(None) | Ok(Some(Err(_))) => break true,
            Ok(Some(Ok(_))) => {}
            Err(_) => break false,
        }
    };
    assert!(
        ended || (joined == 4 && left == 4),
        "b is still connected but saw {joined} of 4 joins and {left} of 4 leaves"
    );
    drop(a_rx);
}

/// Request headers are read into a small buffer: a client cannot make the server hold
/// hundreds of kilobytes of headers.
#[tokio::test]
async fn oversize_headers() {
    let server = start(|_| {}).await;
    let mut tcp = TcpStream::connect(server.local_addr()).await.unwrap();
    let pad = "a".repeat(100 * 1024);
    // The server may hang up while we are still writing; that is fine.
    let _ = tcp
        .write_all(format!("GET /healthz HTTP/1.1\r\nHost: x\r\nX-Pad: {pad}\r\n\r\n").as_bytes())
        .await;
    let mut out = Vec::new();
    let _ = tokio::time::timeout(WAIT, tcp.read_to_end(&mut out)).await;
    let answer = String::from_utf8_lossy(&out);
    assert!(
        !answer.starts_with("HTTP/1.1 200"),
        "100 KiB of headers were read: {answer}"
    );
}

/// Connections still in their TLS/HTTP handshake have a small limit of their own, and one
/// address cannot take all of it: a crowd of silent sockets holds little.
#[tokio::test]
async fn handshake_flood() {
    let server = start(|c| {
        c.max_handshakes = 6;
        c.max_handshakes_per_ip = 2;
        c.handshake_timeout = Duration::from_secs(3);
    })
    .await;
    let (mut a, _, mut b, b_id) = pair(&server, "r").await;
    assert_eq!(
        server.stats().handshakes,
        0,
        "a WebSocket is no longer in its handshake"
    );
    let silent_from = |ip: &'static str| {
        let addr = server.local_addr();
        async move {
            let socket = tokio::net::TcpSocket::new_v4().unwrap();
            socket
                .bind(std::net::SocketAddr::new(ip.parse().unwrap(), 0))
                .unwrap();
            socket.connect(addr).await.unwrap()
        }
    };
    // One address: two are held, the rest are closed at once.
    let mut one = Vec::new();
    for _ in 0..10 {
        one.push(silent_from("127.0.0.1").await);
    }
    let mut closed = 0;
    for tcp in &mut one {
        let mut buf = [0u8; 16];
        if let Ok(Ok(0)) =
            tokio::time::timeout(Duration::from_millis(300), tcp.read(&mut buf)).await
        {
            closed += 1;
        }
    }
    assert_eq!(closed, 8, "all but two from one address are closed");
    assert_eq!(server.stats().handshakes, 2);
    // Many addresses: the server-wide limit holds.
    let mut many = Vec::new();
    for ip in ["127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5"] {
        for _ in 0..2 {
            many.push(silent_from(ip).await);
        }
    }
    let deadline = tokio::time::Instant::now() + Duration::from_millis(500);
    let mut peak = 0;
    while tokio::time::Instant::now() < deadline {
        peak = peak.max(server.stats().handshakes);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(peak, 6, "{peak} handshakes held at once");
    // Those already connected are not affected.
    a.signal(&b_id, r#"{"still":"here"}"#).await;
    assert_eq!(b.recv().await["data"]["still"], "here");
    // Once the crowd goes, newcomers get in.
    drop(one);
    drop(many);
    let mut c = Client::connect(&server).await;
    c.join("r", "Cy").await;
}

/// Cross-site WebSocket hijacking: a page on another site must not open the signaling
/// connection with the visitor's browser. Native clients send no Origin and are let in.
#[tokio::test]
async fn cross_site_websocket_hijacking() {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let server = start(|_| {}).await;
    let port = server.local_addr().port();
    let with_origin = |origin: Option<&str>, host: String| {
        let mut req = server.ws_url().into_client_request().unwrap();
        req.headers_mut().insert("host", host.parse().unwrap());
        if let Some(o) = origin {
            req.headers_mut().insert("origin", o.parse().unwrap());
        }
        tokio_tungstenite::connect_async(req)
    };
    let host = format!("127.0.0.1:{port}");
    for evil in [
        "http://evil.example",
        "null",
        "http://127.0.0.1.evil.example",
        &format!("http://127.0.0.1:{}", port + 1),
    ] {
        match with_origin(Some(evil), host.clone()).await {
            Err(tokio_tungstenite::tungstenite::Error::Http(res)) => {
                assert_eq!(res.status(), 403, "{evil}")
            }
            other => panic!("Origin {evil} was let in: {other:?}"),
        }
    }
    // The server's own page, and the same with another spelling of the host.
    for (origin, host) in [
        (Some(format!("http://127.0.0.1:{port}")), host.clone()),
        (
            Some(format!("http://LocalHost:{port}")),
            format!("localhost:{port}"),
        ),
        (None, host.clone()),
    ] {
        let (ws, _) = with_origin(origin.as_deref(), host)
            .await
            .unwrap_or_else(|e| panic!("{origin:?} refused: {e}"));
        let mut c = Client { ws };
        c.join("r", "Ada").await;
    }
}

/// Mallory, a member of the room, speaks to Janus with a client of her own and tries to get
/// into Ada's place at the SFU without anyone's say. Every member publishes in a VideoRoom room of its own
/// (only its token gets in, and a subscription must name the private id of a participant in
/// it), so even knowing Ada's room and PIN (which only Ada's `welcome` holds) she cannot join
/// it, cannot subscribe in it with her own private id or none, and Ada's feed is not in hers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unadmitted_member_subscribes_with_a_raw_janus_client() {
    use confab_janus::{NO_SUCH_FEED, UNAUTHORIZED};
    let janus = confab_netlab::janus::Janus::start().expect("janus starts");
    let server = start(|c| {
        c.limits.sfu = Some(janus.sfu("a-lone-secret-of-16", 0));
    })
    .await;
    let (ada, sfu, mallory, hers) = ada_and_mallory(&server).await;
    assert_ne!(sfu["room"], hers["room"], "a VideoRoom room of one's own");
    assert_ne!(sfu["pin"], hers["pin"]);
    let (mut j, ada_at) = common::seated_at_janus(&janus, &sfu).await;
    let ada_feed = common::seat_id(&sfu);

    // Mallory in her own room: her private id is good there only.
    let mut m = confab_janus::Janus::connect(&janus.url().replace("janus+", ""))
        .await
        .unwrap();
    m.create_session().await.unwrap();
    let own = m.attach().await.unwrap();
    let sit = serde_json::json!({"request": "join", "ptype": "publisher", "room": hers["room"],
                                 "pin": hers["pin"], "token": hers["token"]});
    let deadline = Instant::now() + WAIT;
    let seat = loop {
        match m.plugin("joining her room", own, sit.clone()).await {
            Ok(seat) => break seat,
            Err(e) => assert!(Instant::now() < deadline, "Mallory's own room: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let private_id = seat["private_id"].as_u64().expect("a private id");

    let refusal = async |m: &mut confab_janus::Janus, body: serde_json::Value| {
        let h = m.attach().await.unwrap();
        match m.plugin("trying", h, body.clone()).await {
            Ok(answer) => panic!("let in with {body}: {answer}"),
            Err(e) => e.code().unwrap_or_else(|| panic!("not a refusal: {e}")),
        }
    };
    let (room, pin) = (&sfu["room"], &sfu["pin"]);
    // Into Ada's room as a publisher, with her own token.
    let publish = serde_json::json!({"request": "join", "ptype": "publisher", "room": room,
                                     "pin": pin, "token": hers["token"]});
    assert_eq!(refusal(&mut m, publish).await, UNAUTHORIZED);
    // Subscribing in Ada's room, naming her own private id, or none: refused (Ada's seat
    // here sends no media, which Janus says first; with Ada's media up it is the private id
    // that is refused: the engine's `unadmitted_member_subscribes_with_a_raw_janus_client`).
    let subscribe = serde_json::json!({"request": "join", "ptype": "subscriber", "room": room,
                                       "pin": pin, "feed": ada_feed, "private_id": private_id});
    let refused = [NO_SUCH_FEED, UNAUTHORIZED];
    assert!(refused.contains(&refusal(&mut m, subscribe.clone()).await));
    let mut bare = subscribe;
    bare.as_object_mut().unwrap().remove("private_id");
    assert!(refused.contains(&refusal(&mut m, bare).await));
    // Ada's feed in her own room: not there.
    let mine = serde_json::json!({"request": "join", "ptype": "subscriber", "room": hers["room"],
                                  "pin": hers["pin"], "feed": ada_feed, "private_id": private_id});
    assert_eq!(refusal(&mut m, mine).await, NO_SUCH_FEED);
    // Ada is where she was.
    assert_eq!(
        common::at_janus(&mut j, ada_at, room.as_u64().unwrap()).await,
        std::collections::BTreeSet::from([ada_feed])
    );
    m.close().await;
    j.close().await;
    drop((ada, mallory));
}

/// Ada's VideoRoom room goes at Janus behind the server's back (Janus restarted, or another
/// node of a cluster removed it while this one was cut off): the server notices within a few
/// seconds and makes it again, so that her next publish finds it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_s_room_lost_at_janus_is_made_again() {
    let janus = confab_netlab::janus::Janus::start().expect("janus starts");
    let sfu_conf = janus.sfu("a-lone-secret-of-16", 0);
    let server = start(|c| c.limits.sfu = Some(sfu_conf.clone())).await;
    let mut ada = Client::connect(&server).await;
    let sfu = ada.join("big", "Ada").await["sfu"].clone();
    let (mut j, seat) = common::seated_at_janus(&janus, &sfu).await;
    let room = sfu["room"].as_u64().unwrap();
    let token = sfu["token"].as_str().unwrap();
    let spec = confab_janus::RoomSpec {
        room,
        pin: sfu["pin"].as_str().unwrap().into(),
        secret: sfu_conf.secret("big", token),
    };
    // (It stood: Ada sits in it. Asking at once whether it is gone would race the server's
    // check, which may make it again at any moment.)
    spec.destroy(&mut j, seat)
        .await
        .expect("removed behind its back");
    let h = j.attach().await.unwrap();
    let gone = Instant::now();
    while !common::stands_at_janus(&mut j, h, room).await {
        assert!(
            gone.elapsed() < Duration::from_secs(15),
            "Ada's room is not made again"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    common::sit_at_janus(&mut j, &sfu, common::seat_id(&sfu), &sfu["token"])
        .await
        .expect("her token opens it again");
    j.close().await;
    drop(ada);
}

/// Ada and Mallory join room "big" of a server with an SFU: each client and its `welcome.sfu`.
async fn ada_and_mallory(
    server: &confab_signal::SignalServer,
) -> (Client, serde_json::Value, Client, serde_json::Value) {
    let mut ada = Client::connect(server).await;
    let sfu = ada.join("big", "Ada").await["sfu"].clone();
    let mut mallory = Client::connect(server).await;
    let hers = mallory.join("big", "Mallory").await["sfu"].clone();
    (ada, sfu, mallory, hers)
}

/// Ada (`sfu`) and Mallory (`hers`) both sit at Janus under their own feeds, each in her own
/// room, reached directly (not through the server's way there): the connection, and Ada's
/// place.
async fn both_seated(
    janus: &confab_netlab::janus::Janus,
    sfu: &serde_json::Value,
    hers: &serde_json::Value,
) -> (confab_janus::Janus, u64) {
    let (mut j, ada_at) = common::seated_at_janus(janus, sfu).await;
    let feed = common::seat_id(hers);
    common::sit_at_janus(&mut j, hers, feed, &hers["token"])
        .await
        .expect("Mallory sits at Janus");
    (j, ada_at)
}

/// The signaling server loses its way to Janus (its connection cut, new ones refused) just as
/// Mallory leaves: the removal of her VideoRoom room cannot be carried out. Once Janus can be
/// reached again, it is tried again by itself: her room is gone (and with it her feed and
/// every subscription she handed out), while Ada's stays.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drop_lost_to_an_unreachable_sfu() {
    let janus = confab_netlab::janus::Janus::start().expect("janus starts");
    let port: u16 = janus.url().rsplit(':').next().unwrap().parse().unwrap();
    let relay = confab_netlab::tcp::FreezingRelay::start(([127, 0, 0, 1], port).into())
        .await
        .unwrap();
    let mut sfu_conf = janus.sfu("a-lone-secret-of-16", 0);
    sfu_conf.url = format!("janus+ws://{}", relay.addr());
    let server = start(|c| {
        c.limits.sfu = Some(sfu_conf);
        c.sfu_remove_after = Duration::from_millis(500);
    })
    .await;
    let (mut ada, sfu, mut mallory, hers) = ada_and_mallory(&server).await;
    let room = hers["room"].as_u64().unwrap();
    let feed = common::seat_id(&hers);
    let (mut j, ada_at) = both_seated(&janus, &sfu, &hers).await;

    relay.cut();
    // Every relayed connection has seen the cut before the kick is sent.
    tokio::time::sleep(Duration::from_millis(500)).await;
    mallory.send(r#"{"type":"leave"}"#).await;
    // The server has taken her leave (and tried her kick) once Ada hears she left.
    loop {
        let m = ada.recv().await;
        if m["type"] == "peer-left" {
            break;
        }
    }
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert!(
        common::at_janus(&mut j, ada_at, room).await.contains(&feed),
        "the removal got through the cut"
    );
    relay.restore();
    mallory_goes_ada_stays(j, ada_at, &sfu, &hers, Duration::from_secs(10)).await;
    drop(ada);
}

/// Within `wait`, Mallory's VideoRoom room (`hers`) is gone and her token opens nothing,
/// while Ada (`sfu`, seated as `ada_at` on `j`) stays in hers.
async fn mallory_goes_ada_stays(
    mut j: confab_janus::Janus,
    ada_at: u64,
    sfu: &serde_json::Value,
    hers: &serde_json::Value,
    wait: Duration,
) {
    let room = hers["room"].as_u64().unwrap();
    let feed = common::seat_id(hers);
    let deadline = Instant::now() + wait;
    while common::stands_at_janus(&mut j, ada_at, room).await {
        assert!(
            Instant::now() < deadline,
            "Mallory's SFU room stays after the server could reach Janus again"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let h = j.attach().await.unwrap();
    let again = serde_json::json!({"request": "join", "ptype": "publisher", "room": room,
                                   "pin": hers["pin"], "id": feed + 1, "token": hers["token"]});
    assert!(
        j.plugin("joining", h, again).await.is_err(),
        "her token still opens a room"
    );
    let adas = sfu["room"].as_u64().unwrap();
    assert!(common::at_janus(&mut j, ada_at, adas)
        .await
        .contains(&common::seat_id(sfu)));
    j.close().await;
}

/// The server's SFU work piles up just as Mallory leaves (Janus stalls a moment while people
/// come and go: the shell waits on its answer, and its queue, one op here, is full): the
/// removal of her room does not fit. It is not lost: the room is noted, and once the shell
/// gets to it made good from the rooms as they are: her room gone, Ada's there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drop_lost_to_a_full_sfu_queue() {
    let janus = confab_netlab::janus::Janus::start().expect("janus starts");
    let server = start(|c| {
        c.limits.sfu = Some(janus.sfu("a-lone-secret-of-16", 0));
        c.sfu_queue = 1;
    })
    .await;
    let (mut ada, sfu, mut mallory, hers) = ada_and_mallory(&server).await;
    let (j, ada_at) = both_seated(&janus, &sfu, &hers).await;

    let signal = |sig: &str| {
        let done = std::process::Command::new("kill")
            .args([sig, &janus.pid().to_string()])
            .status()
            .expect("kill runs");
        assert!(done.success(), "kill {sig}");
    };
    signal("-STOP");
    // The shell takes Carol's room to make, and waits for Janus; Dan's waits in the queue.
    let mut carol = Client::connect(&server).await;
    carol.join("elsewhere-1", "Carol").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut dan = Client::connect(&server).await;
    dan.join("elsewhere-2", "Dan").await;
    mallory.send(r#"{"type":"leave"}"#).await;
    loop {
        let m = ada.recv().await;
        if m["type"] == "peer-left" {
            break;
        }
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    signal("-CONT");
    mallory_goes_ada_stays(j, ada_at, &sfu, &hers, WAIT).await;
    drop((ada, carol, dan));
}
