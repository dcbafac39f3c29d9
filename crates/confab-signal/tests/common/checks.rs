//! Protocol rules that hold the same whether a room's people share one server or are spread
//! over the nodes of a cluster. Each check starts its own [`Nodes`] (`n` of them) and puts its
//! i-th client on node `i % n`; `on_nodes!` makes tests of them, so the single-node tests and
//! the cluster tests are the same code.

use super::nodes::Nodes;
use super::{Client, Ended, WAIT};
use serde_json::Value;
use std::collections::BTreeMap;
use std::time::Duration;

/// Long enough to see a message that should not come, even one relayed by another node.
const SILENCE: Duration = Duration::from_millis(300);

/// `on_nodes!(N; check, …)`: one `#[tokio::test]` per check, each on `N` fresh nodes.
macro_rules! on_nodes {
    ($n:expr; $($check:ident),+ $(,)?) => {$(
        #[tokio::test]
        async fn $check() {
            $crate::common::checks::$check($n).await;
        }
    )+};
}
pub(crate) use on_nodes;

fn id(v: &Value) -> String {
    v["id"].as_str().expect("an id").to_owned()
}

/// Client `i` (on node `i % n`) joins `room` as `name`; returns it and its id.
async fn joined(nodes: &Nodes, i: usize, room: &str, name: &str) -> (Client, String) {
    let mut c = nodes.client(i).await;
    let w = c.join(room, name).await;
    (c, id(&w))
}

async fn expect_joined(c: &mut Client, who: &str, name: &str) {
    let j = c.recv().await;
    assert_eq!(
        (j["type"].as_str(), j["id"].as_str(), j["name"].as_str()),
        (Some("peer-joined"), Some(who), Some(name)),
        "{j}"
    );
}

async fn expect_left(c: &mut Client, who: &str) {
    let l = c.recv().await;
    assert_eq!(
        (l["type"].as_str(), l["id"].as_str()),
        (Some("peer-left"), Some(who)),
        "{l}"
    );
}

/// An offer as a browser or the engine would send it (~5 KB of SDP).
fn sdp(kind: &str) -> String {
    let mut s =
        String::from("v=0\r\no=- 4611731400430051336 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n");
    s.push_str("a=group:BUNDLE 0 1\r\na=msid-semantic: WMS\r\n");
    for (mid, media) in [(0, "audio"), (1, "video")] {
        s.push_str(&format!(
            "m={media} 9 UDP/TLS/RTP/SAVPF 111 96 97 102\r\nc=IN IP4 0.0.0.0\r\n"
        ));
        s.push_str(&format!(
            "a=mid:{mid}\r\na=ice-ufrag:Zx4q\r\na=ice-pwd:9fDCvC7Nq8a0b3pD8r1mLz0Q\r\n"
        ));
        s.push_str("a=fingerprint:sha-256 7B:8B:F0:65:5F:78:E2:51:3B:AC:6F:F3:3F:46:1B:35:DC:B8:5F:64:1A:24:C2:43:F0:A1:58:D0:A1:2C:19:08\r\n");
        for pt in 96..120 {
            s.push_str(&format!("a=rtpmap:{pt} H264/90000\r\na=rtcp-fb:{pt} nack pli\r\na=fmtp:{pt} level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f\r\n"));
        }
    }
    serde_json::json!({"kind":"description","description":{"type":kind,"sdp":s}}).to_string()
}

/// An offer, an answer and a burst of candidates arrive as sent, in order, each wrapped with its
/// real sender.
pub async fn relay_of_offer_answer_and_candidates_is_byte_for_byte(n: usize) {
    let nodes = Nodes::start(n, |_| {}).await;
    let (mut a, a_id) = joined(&nodes, 0, "call", "Ada").await;
    let (mut b, b_id) = joined(&nodes, 1, "call", "Bob").await;
    expect_joined(&mut a, &b_id, "Bob").await;
    let offer = sdp("offer");
    assert!(offer.len() > 4000, "{}", offer.len());
    let answer = sdp("answer");
    // Each candidate its own (the port), so that their order shows.
    let candidate = |i: usize| {
        format!(
            r#"{{"kind":"candidate","candidate":{{"candidate":"candidate:3 1 udp 2122260223 192.168.1.20 {} typ host generation 0 ufrag Zx4q network-id 1","sdpMid":"0","sdpMLineIndex":0,"usernameFragment":"Zx4q"}}}}"#,
            50000 + i
        )
    };
    a.signal(&b_id, &offer).await;
    let got = b.recv_text().await;
    assert_eq!(
        got,
        format!(r#"{{"type":"signal","from":"{a_id}","data":{offer}}}"#)
    );
    b.signal(&a_id, &answer).await;
    let got = a.recv_text().await;
    assert_eq!(
        got,
        format!(r#"{{"type":"signal","from":"{b_id}","data":{answer}}}"#)
    );
    for i in 0..40 {
        a.signal(&b_id, &candidate(i)).await;
    }
    for i in 0..40 {
        assert_eq!(
            b.recv_text().await,
            format!(
                r#"{{"type":"signal","from":"{a_id}","data":{}}}"#,
                candidate(i)
            )
        );
    }
}

/// Four people join one room one after another, signal each other, and go: everyone sees
/// everyone join (with the same id and name), `welcome` lists the others in join order, every
/// signal arrives stamped with its real sender, and a leave and a dropped connection are a
/// `peer-left` for everyone still there.
pub async fn a_room_sees_joins_signals_and_leaves(n: usize) {
    let nodes = Nodes::start(n, |_| {}).await;
    // A long name too: it must not change the order anyone is listed in.
    let names = [
        "Ada with a name long enough to fill most of the sixty-four chars",
        "Bob",
        "Cy",
        "Dee",
    ];
    let mut clients: Vec<Client> = Vec::new();
    let mut ids: Vec<String> = Vec::new();
    for (i, name) in names.iter().enumerate() {
        let mut c = nodes.client(i).await;
        let w = c.join("r", name).await;
        let listed: Vec<(&str, &str)> = w["peers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| (p["id"].as_str().unwrap(), p["name"].as_str().unwrap()))
            .collect();
        let before: Vec<(&str, &str)> = ids.iter().map(String::as_str).zip(names).collect();
        assert_eq!(listed, before, "{name}'s welcome: {w}");
        let me = id(&w);
        for earlier in clients.iter_mut() {
            expect_joined(earlier, &me, name).await;
        }
        clients.push(c);
        ids.push(me);
    }
    // Everyone signals everyone: each arrives once, from its real sender.
    for (i, c) in clients.iter_mut().enumerate() {
        for (j, to) in ids.iter().enumerate() {
            if i != j {
                c.signal(to, &format!(r#"{{"n":{i}}}"#)).await;
            }
        }
    }
    for (j, c) in clients.iter_mut().enumerate() {
        let mut got = BTreeMap::new();
        for _ in 1..names.len() {
            let s = c.recv().await;
            assert_eq!(s["type"], "signal", "{s}");
            let from = s["from"].as_str().unwrap().to_owned();
            let sender = ids.iter().position(|x| *x == from).expect("a member");
            assert_eq!(s["data"]["n"], sender, "{s}");
            assert!(got.insert(sender, ()).is_none(), "twice from {sender}");
        }
        assert!(!got.contains_key(&j));
        c.expect_silence(SILENCE).await;
    }
    // Bob leaves, Cy's connection drops: the others hear both, with the same ids.
    clients[1].send(r#"{"type":"leave"}"#).await;
    for k in [0, 2, 3] {
        expect_left(&mut clients[k], &ids[1]).await;
    }
    drop(clients.remove(2));
    for k in [0, 2] {
        expect_left(&mut clients[k], &ids[2]).await;
    }
    // The departed are gone for signals too.
    clients[0].signal(&ids[2], "{}").await;
    clients[0].expect_error("unknown-peer").await;
}

/// A member claiming to be another: the server stamps the real sender, and the one
/// impersonated hears nothing.
pub async fn spoofed_sender(n: usize) {
    let nodes = Nodes::start(n, |_| {}).await;
    let (mut a, a_id) = joined(&nodes, 0, "r", "Ada").await;
    let (mut b, b_id) = joined(&nodes, 1, "r", "Bob").await;
    expect_joined(&mut a, &b_id, "Bob").await;
    let (mut c, c_id) = joined(&nodes, 2, "r", "Cy").await;
    expect_joined(&mut a, &c_id, "Cy").await;
    expect_joined(&mut b, &c_id, "Cy").await;
    // a claims to be c, in `from` and inside the data.
    a.send(format!(
        r#"{{"type":"signal","from":"{c_id}","to":"{b_id}","data":{{"kind":"ring","from":"{c_id}"}}}}"#
    ))
    .await;
    let got = b.recv().await;
    assert_eq!(
        got["from"],
        a_id.as_str(),
        "the server stamps the real sender"
    );
    assert_eq!(got["data"]["kind"], "ring");
    // And as b, to c.
    a.send(format!(
        r#"{{"type":"signal","from":"{b_id}","to":"{c_id}","data":{{}}}}"#
    ))
    .await;
    assert_eq!(c.recv().await["from"], a_id.as_str());
    c.expect_silence(SILENCE).await;
    b.expect_silence(SILENCE).await;
}

/// Filling a room: with its capacity taken (by people on every node), the next joiner gets
/// `room-full` on whichever node it asks, with the same words.
pub async fn room_full(n: usize) {
    let capacity = n.max(2);
    let nodes = Nodes::start(n, |c| c.limits.room_capacity = capacity).await;
    let mut members: Vec<(Client, String)> = Vec::new();
    for i in 0..capacity {
        let name = format!("P{i}");
        let (c, me) = joined(&nodes, i, "r", &name).await;
        for (m, _) in members.iter_mut() {
            expect_joined(m, &me, &name).await;
        }
        members.push((c, me));
    }
    for i in 0..n {
        let mut c = nodes.client(i).await;
        c.send(r#"{"type":"join","room":"r","name":"Late"}"#).await;
        let msg = c.expect_error("room-full").await;
        assert_eq!(msg, format!("room r is full ({capacity} people)"));
        c.join("r2", "Late").await;
    }
    // Once someone leaves, there is a seat again, from any node.
    let (mut first, first_id) = members.remove(0);
    first.send(r#"{"type":"leave"}"#).await;
    for (m, _) in members.iter_mut() {
        expect_left(m, &first_id).await;
    }
    let mut late = nodes.client(n - 1).await;
    let w = late.join("r", "Late").await;
    assert_eq!(w["peers"].as_array().unwrap().len(), capacity - 1, "{w}");
}

/// Joining a room with a wrong or no password: refused with the same words everywhere, and
/// nobody inside hears of it.
pub async fn wrong_password(n: usize) {
    let nodes = Nodes::start(n, |_| {}).await;
    let mut a = nodes.client(0).await;
    a.send(r#"{"type":"join","room":"r","name":"A","password":"open sesame"}"#)
        .await;
    assert_eq!(a.recv().await["type"], "welcome");
    let mut b = nodes.client(1).await;
    b.send(r#"{"type":"join","room":"r","name":"B","password":"open"}"#)
        .await;
    let msg = b.expect_error("wrong-password").await;
    assert_eq!(msg, "room r needs the right password");
    b.send(r#"{"type":"join","room":"r","name":"B"}"#).await;
    b.expect_error("wrong-password").await;
    a.expect_silence(SILENCE).await;
    b.send(r#"{"type":"join","room":"r","name":"B","password":"open sesame"}"#)
        .await;
    let w = b.recv().await;
    assert_eq!(w["type"], "welcome", "{w}");
    expect_joined(&mut a, &id(&w), "B").await;
}

/// A second join while in a room, or while the first is still being decided: refused, and
/// the room sees the joiner once.
pub async fn double_join(n: usize) {
    let nodes = Nodes::start(n, |_| {}).await;
    let (mut a, a_id) = joined(&nodes, 0, "r", "Ada").await;
    for room in ["r", "r2"] {
        a.send(format!(r#"{{"type":"join","room":"{room}","name":"Ada"}}"#))
            .await;
        let msg = a.expect_error("already-joined").await;
        assert_eq!(msg, "you are already in room r; leave it first");
    }
    // Two joins at once: one welcome and one refusal (in either order: on a cluster the
    // welcome waits for the shared store, the refusal does not).
    let mut b = nodes.client(1).await;
    b.send(r#"{"type":"join","room":"r","name":"Bob"}"#).await;
    b.send(r#"{"type":"join","room":"r","name":"Bob"}"#).await;
    let (x, y) = (b.recv().await, b.recv().await);
    let (welcome, refusal) = if x["type"] == "welcome" {
        (x, y)
    } else {
        (y, x)
    };
    assert_eq!(welcome["type"], "welcome", "{welcome}");
    assert_eq!(refusal["code"], "already-joined", "{refusal}");
    let listed: Vec<&Value> = welcome["peers"].as_array().unwrap().iter().collect();
    assert_eq!(listed.len(), 1, "{welcome}");
    assert_eq!(listed[0]["id"], a_id.as_str());
    let b_id = id(&welcome);
    expect_joined(&mut a, &b_id, "Bob").await;
    // A third person sees each of them once.
    let mut c = nodes.client(2).await;
    let w = c.join("r", "Cy").await;
    let ids: Vec<&str> = w["peers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec![a_id.as_str(), b_id.as_str()], "{w}");
    a.recv().await;
    a.expect_silence(SILENCE).await;
    b.recv().await;
    b.expect_silence(SILENCE).await;
}

/// Messages over the size limit: an error and nothing relayed when readable, the connection
/// closed (1009) when far over, and its room hears it left.
pub async fn oversize_message(n: usize) {
    let nodes = Nodes::start(n, |c| c.limits.max_message_bytes = 4096).await;
    let (mut a, a_id) = joined(&nodes, 0, "r", "Ada").await;
    let (mut b, b_id) = joined(&nodes, 1, "r", "Bob").await;
    expect_joined(&mut a, &b_id, "Bob").await;
    // Over the limit but readable: an error, and the connection stays.
    let pad = "x".repeat(5000);
    a.signal(&b_id, &format!(r#"{{"pad":"{pad}"}}"#)).await;
    let msg = a.expect_error("too-large").await;
    assert!(msg.contains("4096"), "{msg}");
    b.expect_silence(SILENCE).await;
    a.signal(&b_id, r#"{"still":"here"}"#).await;
    let got = b.recv().await;
    assert_eq!(got["data"]["still"], "here");
    assert_eq!(got["from"], a_id.as_str());
    // Far over the limit: the error, then close 1009, never a 64 MiB buffer.
    let huge = "y".repeat(64 * 1024);
    a.signal(&b_id, &format!(r#"{{"pad":"{huge}"}}"#)).await;
    a.expect_error("too-large").await;
    assert_eq!(
        a.ended(WAIT).await,
        Ended::Closed(1009, "message too big".into())
    );
    expect_left(&mut b, &a_id).await;
}
