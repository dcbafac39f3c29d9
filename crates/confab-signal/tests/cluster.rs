//! Several nodes sharing rooms through a real `redis-server` (started on a free port, stopped
//! on drop): the single-node protocol checks on three nodes, a node that dies, a node cut off
//! from Redis while the others keep it, and a Redis restart.

mod common;

use common::checks::on_nodes;
use common::nodes::{cluster_node, free_port, wait_listening, Redis};
use common::{
    at_janus, http_get, sit_at_janus, stands_at_janus, until, until_within, Client, Ended, WAIT,
};
use confab_signal::SignalServer;
use serde_json::Value;
use std::collections::BTreeSet;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};

/// The checks every single-node test makes (`tests/server.rs`, `tests/attacks.rs`), with the
/// i-th client of each on node `i % 3`.
mod three_nodes {
    use super::*;

    on_nodes!(3;
        relay_of_offer_answer_and_candidates_is_byte_for_byte,
        a_room_sees_joins_signals_and_leaves,
        spoofed_sender,
        room_full,
        wrong_password,
        double_join,
        oversize_message,
    );
}

fn id(v: &Value) -> String {
    v["id"].as_str().unwrap().to_owned()
}

/// A client of `node` in room "r"; its id.
async fn member(node: &SignalServer, name: &str) -> (Client, String) {
    let mut c = Client::connect(node).await;
    let me = id(&c.join("r", name).await);
    (c, me)
}

/// Ada joins `room` through `node` again, presenting her rejoin `token`: the connection and
/// what the server first answered.
async fn ada_back(node: &SignalServer, room: &str, token: &str) -> (Client, Value) {
    let mut c = Client::connect(node).await;
    c.send(format!(
        r#"{{"type":"join","room":"{room}","name":"Ada","rejoin":"{token}"}}"#
    ))
    .await;
    let w = c.recv().await;
    (c, w)
}

/// The next `count` messages, as (type, id) pairs, in whatever order they come.
async fn events(c: &mut Client, count: usize, within: Duration) -> BTreeSet<(String, String)> {
    let mut got = BTreeSet::new();
    for _ in 0..count {
        let v = tokio::time::timeout(within, c.recv())
            .await
            .unwrap_or_else(|_| panic!("{count} events within {within:?}; got {got:?}"));
        let event = (v["type"].as_str().unwrap().to_owned(), id(&v));
        assert!(got.insert(event), "the same event twice: {v}");
    }
    got
}

fn expected(kind: &str, ids: &[&String]) -> BTreeSet<(String, String)> {
    ids.iter()
        .map(|id| (kind.to_owned(), (*id).clone()))
        .collect()
}

/// `confab-signal` as a process on a free port, joined to `redis`.
fn node_process(redis: &Redis) -> (Child, String) {
    let port = free_port();
    let child = Command::new(env!("CARGO_BIN_EXE_confab-signal"))
        .args([
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--redis",
            &redis.url,
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("confab-signal starts");
    wait_listening(port, "confab-signal");
    (child, format!("ws://127.0.0.1:{port}/ws"))
}

/// Three nodes, one of them a process that is killed: the survivors tell its people's rooms
/// `peer-left` within 5 s, and its people get back in through another node at once.
#[tokio::test]
async fn a_killed_node_s_people_leave_and_rejoin_elsewhere() {
    let redis = Redis::start();
    let n1 = cluster_node(&redis.url, |_| {}).await;
    let n2 = cluster_node(&redis.url, |_| {}).await;
    let (mut n3, n3_url) = node_process(&redis);
    let (mut ada, ada_id) = member(&n1, "Ada").await;
    let (mut bob, bob_id) = member(&n2, "Bob").await;
    assert_eq!(ada.recv().await["id"], bob_id.as_str());
    let (ws, _) = tokio_tungstenite::connect_async(n3_url.as_str())
        .await
        .unwrap();
    let mut cy = Client { ws };
    // The process reaches Redis within a second or so; until then it seats people alone.
    let deadline = Instant::now() + WAIT;
    let cy_id = loop {
        let welcome = cy.join("r", "Cy").await;
        if welcome["peers"].as_array().is_some_and(|p| p.len() == 2) {
            break id(&welcome);
        }
        assert!(
            Instant::now() < deadline,
            "node 3 never saw the room: {welcome}"
        );
        cy.send(r#"{"type":"leave"}"#).await;
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    for x in [&mut ada, &mut bob] {
        let j = x.recv().await;
        assert_eq!(
            (j["type"].as_str(), j["id"].as_str()),
            (Some("peer-joined"), Some(cy_id.as_str()))
        );
    }
    // Node 3 is killed: no goodbye to Redis, its heartbeat just expires.
    n3.kill().unwrap();
    n3.wait().unwrap();
    let killed = Instant::now();
    assert_eq!(cy.ended(WAIT).await, Ended::Dropped);
    // Cy's app reconnects to another node and joins again, before the old seat is freed.
    let mut cy = Client::connect(&n2).await;
    let welcome = cy.join("r", "Cy").await;
    let rejoined = killed.elapsed();
    let new_cy = id(&welcome);
    assert_ne!(new_cy, cy_id);
    let listed: BTreeSet<String> = welcome["peers"]
        .as_array()
        .unwrap()
        .iter()
        .map(id)
        .collect();
    assert!(
        listed.contains(&ada_id) && listed.contains(&bob_id),
        "{welcome}"
    );
    // Measured here (debug build, five runs): 1-5 ms from the kill to the new welcome.
    assert!(
        rejoined < Duration::from_secs(3),
        "rejoined after {rejoined:?}"
    );
    // Ada and Bob see the new Cy come and the old one go (in either order), the old one
    // within 5 s of the kill; the new Cy sees its old self go if it was listed.
    let both = expected("peer-joined", &[&new_cy])
        .union(&expected("peer-left", &[&cy_id]))
        .cloned()
        .collect();
    assert_eq!(events(&mut ada, 2, Duration::from_secs(6)).await, both);
    let reaped = killed.elapsed();
    assert_eq!(events(&mut bob, 2, Duration::from_secs(6)).await, both);
    if listed.contains(&cy_id) {
        assert_eq!(
            events(&mut cy, 1, Duration::from_secs(6)).await,
            expected("peer-left", &[&cy_id])
        );
    }
    // Measured here (five runs): 3.92-3.93 s (a 3 s heartbeat, checked every second).
    assert!(
        reaped <= Duration::from_secs(5),
        "peer-left after {reaped:?}"
    );
    // The new Cy is a full member: signals reach it across nodes.
    ada.signal(&new_cy, r#"{"back":true}"#).await;
    let s = cy.recv().await;
    assert_eq!(
        (s["from"].as_str(), &s["data"]["back"]),
        (Some(ada_id.as_str()), &true.into())
    );
}

/// A TCP forwarder between one node and `redis-server`. [`Link::cut`] closes every connection
/// through it and closes new ones at once until [`Link::heal`]: a real socket cut, the node sees
/// its connections end and its reconnects fail. [`Link::stall`] silently stops the connections
/// open so far, as a NAT or firewall that forgot them would: nothing arrives and nothing says
/// so, while new connections work.
struct Link {
    port: u16,
    state: watch::Sender<LinkState>,
    task: JoinHandle<()>,
}

#[derive(Clone, Copy, Default)]
struct LinkState {
    cut: bool,
    /// Connections opened before this many stalls are stalled.
    stalls: u64,
}

impl Link {
    async fn start(to: u16) -> Link {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (state, watch) = watch::channel(LinkState::default());
        let task = tokio::spawn(Self::forward(listener, to, watch));
        Link { port, state, task }
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    fn cut(&self) {
        self.state.send_modify(|s| s.cut = true);
    }

    fn heal(&self) {
        self.state.send_modify(|s| s.cut = false);
    }

    fn stall(&self) {
        self.state.send_modify(|s| s.stalls += 1);
    }

    /// Owns every connection's task: they end with it.
    async fn forward(listener: TcpListener, to: u16, state: watch::Receiver<LinkState>) {
        let mut conns = JoinSet::new();
        loop {
            let (mut inbound, _) = tokio::select! {
                accepted = listener.accept() => accepted.unwrap(),
                Some(_) = conns.join_next() => continue,
            };
            if state.borrow().cut {
                continue; // dropped: closed at once
            }
            let mut state = state.clone();
            let mine = state.borrow().stalls;
            conns.spawn(async move {
                let Ok(mut outbound) = TcpStream::connect(("127.0.0.1", to)).await else {
                    return;
                };
                tokio::select! {
                    _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => return,
                    _ = state.wait_for(|s| s.cut || s.stalls > mine) => {}
                }
                // Stalled: both sockets stay open, nothing moves, until a cut closes them.
                let _ = state.wait_for(|s| s.cut).await;
            });
        }
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Node 3 loses Redis while nodes 1 and 2 keep it. Node 3 goes on serving its own people and
/// says so on `/healthz`; the others see its people leave once its heartbeat expires; each
/// side sees the other's people leave. When the link is back, node 3 registers its people
/// again (one who joined during the split too): everyone sees everyone once, with the ids
/// they had.
#[tokio::test]
async fn a_node_cut_off_from_redis_serves_its_own_and_resyncs() {
    let redis = Redis::start();
    let link = Link::start(redis.port).await;
    let n1 = cluster_node(&redis.url, |_| {}).await;
    let n2 = cluster_node(&redis.url, |_| {}).await;
    let n3 = cluster_node(&link.url(), |_| {}).await;
    let (mut ada, ada_id) = member(&n1, "Ada").await;
    let (mut bob, bob_id) = member(&n2, "Bob").await;
    let (mut cy, cy_id) = member(&n3, "Cy").await;
    let (mut dee, dee_id) = member(&n3, "Dee").await;
    let them = [&cy_id, &dee_id];
    let us = [&ada_id, &bob_id];
    assert_eq!(
        events(&mut ada, 3, WAIT).await,
        expected("peer-joined", &[&bob_id, &cy_id, &dee_id])
    );
    assert_eq!(
        events(&mut bob, 2, WAIT).await,
        expected("peer-joined", &them)
    );
    assert_eq!(
        events(&mut cy, 1, WAIT).await,
        expected("peer-joined", &[&dee_id])
    );

    link.cut();
    let cut = Instant::now();
    // Until it is reaped, node 3's people are still listed elsewhere; a signal to one is not
    // delivered, and its sender is told (nobody listens on node 3's channel).
    until("node 3 notices", || n3.store_healthy() == Some(false)).await;
    ada.signal(&cy_id, r#"{"lost":true}"#).await;
    let msg = ada.expect_error("rate-limited").await;
    assert!(msg.contains("cannot be reached"), "{msg}");
    // Nodes 1 and 2: node 3's people leave once its heartbeat expires.
    assert_eq!(
        events(&mut ada, 2, Duration::from_secs(7)).await,
        expected("peer-left", &them)
    );
    let seen_gone = cut.elapsed();
    assert_eq!(
        events(&mut bob, 2, Duration::from_secs(7)).await,
        expected("peer-left", &them)
    );
    // Measured here (four runs): 3.93 s.
    assert!(
        seen_gone <= Duration::from_secs(5),
        "peer-left after {seen_gone:?}"
    );
    // Node 3 says it is cut off; the others do not.
    let health = http_get(n3.local_addr(), "/healthz").await;
    assert!(health.starts_with("HTTP/1.1 503"), "{health}");
    assert!(
        health.ends_with("redis unreachable: serving local rooms only\n"),
        "{health}"
    );
    assert!(http_get(n1.local_addr(), "/healthz")
        .await
        .starts_with("HTTP/1.1 200"));
    // Node 3's people see the other side leave too (it has been reaped by now).
    for x in [&mut cy, &mut dee] {
        assert_eq!(
            events(x, 2, Duration::from_secs(7)).await,
            expected("peer-left", &us)
        );
    }
    // Node 3 goes on serving its own: signals, and a newcomer seated by node 3 alone.
    cy.signal(&dee_id, r#"{"split":1}"#).await;
    let s = dee.recv().await;
    assert_eq!(
        (s["from"].as_str(), &s["data"]["split"]),
        (Some(cy_id.as_str()), &1.into())
    );
    let mut eve = Client::connect(&n3).await;
    let w = eve.join("r", "Eve").await;
    let eve_id = id(&w);
    let listed: Vec<String> = w["peers"].as_array().unwrap().iter().map(id).collect();
    assert_eq!(listed, vec![cy_id.clone(), dee_id.clone()], "{w}");
    for x in [&mut cy, &mut dee] {
        assert_eq!(
            events(x, 1, WAIT).await,
            expected("peer-joined", &[&eve_id])
        );
    }
    // And the others go on among themselves.
    ada.signal(&bob_id, r#"{"split":2}"#).await;
    assert_eq!(bob.recv().await["from"], ada_id.as_str());

    link.heal();
    let healed = Instant::now();
    until("node 3 is back", || n3.store_healthy() == Some(true)).await;
    let them = [&cy_id, &dee_id, &eve_id];
    for x in [&mut ada, &mut bob] {
        assert_eq!(events(x, 3, WAIT).await, expected("peer-joined", &them));
    }
    for x in [&mut cy, &mut dee, &mut eve] {
        assert_eq!(events(x, 2, WAIT).await, expected("peer-joined", &us));
    }
    let resynced = healed.elapsed();
    // Measured here (three runs): 40-60 ms; at most a heartbeat (1 s) after the link is back.
    assert!(
        resynced <= Duration::from_secs(4),
        "resynced after {resynced:?}"
    );
    // Nothing twice, not even after the next snapshots (every 5 s).
    for x in [&mut ada, &mut bob, &mut cy, &mut dee, &mut eve] {
        x.expect_silence(Duration::from_millis(1200)).await;
    }
    tokio::time::sleep(Duration::from_secs(5)).await;
    for x in [&mut ada, &mut bob, &mut cy, &mut dee, &mut eve] {
        x.expect_silence(Duration::from_millis(100)).await;
    }
    // A newcomer anywhere sees all five, each once.
    let mut fay = Client::connect(&n1).await;
    let w = fay.join("r", "Fay").await;
    let listed: Vec<String> = w["peers"].as_array().unwrap().iter().map(id).collect();
    let all: BTreeSet<String> = [&ada_id, &bob_id, &cy_id, &dee_id, &eve_id]
        .into_iter()
        .cloned()
        .collect();
    assert_eq!(listed.len(), 5, "{w}");
    assert_eq!(listed.iter().cloned().collect::<BTreeSet<_>>(), all, "{w}");
    let fay_id = id(&w);
    for x in [&mut ada, &mut bob, &mut cy, &mut dee, &mut eve] {
        assert_eq!(
            events(x, 1, WAIT).await,
            expected("peer-joined", &[&fay_id])
        );
    }
    // And signals cross the healed link both ways.
    eve.signal(&ada_id, r#"{"healed":true}"#).await;
    assert_eq!(ada.recv().await["from"], eve_id.as_str());
    bob.signal(&dee_id, r#"{"healed":true}"#).await;
    assert_eq!(dee.recv().await["from"], bob_id.as_str());
}

/// While node 3 is cut off from Redis, its member's room is filled on the other side (capacity
/// 2). When the link is back, node 3 cannot register that seat again as it was: the room is
/// full. The member's connection is closed (1013, in words), the full room never sees a third
/// person, and joining again is refused as room-full, as any join would be.
#[tokio::test]
async fn a_room_filled_during_a_split_is_not_overfilled_when_it_heals() {
    let redis = Redis::start();
    let link = Link::start(redis.port).await;
    let two = |c: &mut confab_signal::SignalConfig| c.limits.room_capacity = 2;
    let n1 = cluster_node(&redis.url, two).await;
    let n3 = cluster_node(&link.url(), two).await;
    let (mut cy, _) = member(&n3, "Cy").await;
    link.cut();
    until("node 3 notices", || n3.store_healthy() == Some(false)).await;
    // Ada takes the room's other seat; Cy's is free on the Redis side once node 3's heartbeat
    // expires and it is reaped: then Bob gets in.
    let (mut ada, _) = member(&n1, "Ada").await;
    let (mut bob, bob_id) = loop {
        let mut c = Client::connect(&n1).await;
        c.send(r#"{"type":"join","room":"r","name":"Bob"}"#.to_owned())
            .await;
        let w = c.recv().await;
        if w["type"] == "welcome" {
            break (c, id(&w));
        }
        assert_eq!(w["code"], "room-full", "{w}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    // Ada heard Cy leave (the reap) and Bob arrive.
    let heard = events(&mut ada, 2, WAIT).await;
    assert!(
        heard.contains(&("peer-joined".to_owned(), bob_id.clone())),
        "{heard:?}"
    );
    link.heal();
    until("node 3 is back", || n3.store_healthy() == Some(true)).await;
    match cy.ended(Duration::from_secs(5)).await {
        Ended::Closed(code, reason) => {
            assert_eq!(code, 1013, "{reason}");
            assert!(reason.contains("join again"), "{reason}");
        }
        Ended::Dropped => panic!("dropped without a close frame"),
    }
    // Two people, not three: nobody on node 1 hears Cy come back.
    for x in [&mut ada, &mut bob] {
        x.expect_silence(Duration::from_millis(1500)).await;
    }
    let mut again = Client::connect(&n3).await;
    again
        .send(r#"{"type":"join","room":"r","name":"Cy"}"#.to_owned())
        .await;
    let w = again.recv().await;
    assert_eq!(w["code"], "room-full", "{w}");
}

/// The same with a password: while node 3 is cut off, its member's room empties on the Redis
/// side (reaped) and is made again with a password. Healing does not let the member into a
/// room whose password they never gave.
#[tokio::test]
async fn a_room_made_again_with_a_password_during_a_split_keeps_it() {
    let redis = Redis::start();
    let link = Link::start(redis.port).await;
    let n1 = cluster_node(&redis.url, |_| {}).await;
    let n3 = cluster_node(&link.url(), |_| {}).await;
    let (mut cy, _) = member(&n3, "Cy").await;
    link.cut();
    until("node 3 notices", || n3.store_healthy() == Some(false)).await;
    // A room's password is its first joiner's: Ada tries until Cy has been reaped and she is
    // the first (while Cy is listed she is seated without one, and leaves again).
    let mut ada = loop {
        let mut c = Client::connect(&n1).await;
        c.send(r#"{"type":"join","room":"r","name":"Ada","password":"s3cret"}"#.to_owned())
            .await;
        let w = c.recv().await;
        if w["type"] == "welcome" && w["peers"].as_array().is_some_and(|p| p.is_empty()) {
            break c;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    link.heal();
    until("node 3 is back", || n3.store_healthy() == Some(true)).await;
    match cy.ended(Duration::from_secs(5)).await {
        Ended::Closed(code, reason) => assert_eq!(code, 1013, "{reason}"),
        Ended::Dropped => panic!("dropped without a close frame"),
    }
    ada.expect_silence(Duration::from_millis(1500)).await;
    let mut again = Client::connect(&n3).await;
    again
        .send(r#"{"type":"join","room":"r","name":"Cy"}"#.to_owned())
        .await;
    assert_eq!(again.recv().await["code"], "wrong-password");
}

/// The next signal `c` receives within `within`, skipping room news.
async fn next_signal(c: &mut Client, within: Duration) -> Option<Value> {
    let deadline = tokio::time::Instant::now() + within;
    while let Ok(v) = tokio::time::timeout_at(deadline, c.recv()).await {
        if v["type"] == "signal" {
            return Some(v);
        }
    }
    None
}

/// Node 2's connections to Redis die without a word (a NAT or firewall forgetting them). Its
/// commands time out and connect again; its subscription never errs, but hears none of the
/// node's own pings, so it is made again: Ada's signals reach Bob again within seconds.
#[tokio::test]
async fn a_subscription_that_dies_silently_is_made_again() {
    let redis = Redis::start();
    let link = Link::start(redis.port).await;
    let n1 = cluster_node(&redis.url, |_| {}).await;
    let n2 = cluster_node(&link.url(), |_| {}).await;
    let (mut ada, ada_id) = member(&n1, "Ada").await;
    let (mut bob, bob_id) = member(&n2, "Bob").await;
    assert_eq!(
        events(&mut ada, 1, WAIT).await,
        expected("peer-joined", &[&bob_id])
    );
    link.stall();
    let stalled = Instant::now();
    // Ada keeps signalling Bob (room news may come and go meanwhile if node 2's heartbeat
    // lapses: only signals count here).
    let heard = loop {
        assert!(
            stalled.elapsed() < Duration::from_secs(15),
            "Bob never heard Ada again"
        );
        ada.signal(&bob_id, r#"{"again":true}"#).await;
        if let Some(s) = next_signal(&mut bob, Duration::from_millis(500)).await {
            break s;
        }
    };
    let deaf_for = stalled.elapsed();
    assert_eq!(
        (heard["from"].as_str(), &heard["data"]["again"]),
        (Some(ada_id.as_str()), &true.into())
    );
    // Measured here (four runs): 5.01-5.02 s (a command timeout, then three unheard pings).
    assert!(deaf_for <= Duration::from_secs(8), "deaf for {deaf_for:?}");
    until("node 2 is healthy", || n2.store_healthy() == Some(true)).await;
    bob.signal(&ada_id, r#"{"back":1}"#).await;
    let s = next_signal(&mut ada, WAIT).await.expect("Ada hears Bob");
    assert_eq!(s["from"], bob_id.as_str());
}

/// Ada's node is cut off from Redis just as her path to it dies; she comes back through
/// another node with her rejoin token. The news that her old membership was replaced never
/// reaches her old node; when its link heals it must not register that seat again (a ghost
/// Ada beside the real one until the dead connection times out): the store remembers the
/// token as replaced, and the old connection is closed as replaced. Bob hears the old Ada
/// leave and the new one join, and no ghost after.
#[tokio::test]
async fn a_rejoin_whose_news_the_old_node_missed() {
    rejoin_past_a_cut_off_node(true).await;
}

/// The same when Ada was alone in her room: her node's seats are reaped while it is cut off,
/// so her rejoin through the other node finds the room empty. Her old seat still counts as
/// replaced: when the link heals it is closed, not registered beside her.
#[tokio::test]
async fn a_rejoin_into_an_emptied_room_whose_news_the_old_node_missed() {
    rejoin_past_a_cut_off_node(false).await;
}

/// Ada on node 1 (reaching Redis through a link that is cut), Bob on node 2 if `with_bob`;
/// see the two tests above.
async fn rejoin_past_a_cut_off_node(with_bob: bool) {
    let redis = Redis::start();
    let link = Link::start(redis.port).await;
    let n1 = cluster_node(&link.url(), |_| {}).await;
    let n2 = cluster_node(&redis.url, |_| {}).await;
    let mut ada = Client::connect(&n1).await;
    let w = ada.join("r", "Ada").await;
    let (old, token) = (id(&w), w["rejoin"].as_str().unwrap().to_owned());
    let mut bob = None;
    if with_bob {
        bob = Some(member(&n2, "Bob").await.0);
        assert_eq!(ada.recv().await["type"], "peer-joined");
    }
    link.cut();
    until("node 1 notices", || n1.store_healthy() == Some(false)).await;
    if !with_bob {
        // Someone on node 2 sees Ada's seat reaped once node 1's heartbeat has expired, and
        // leaves: the room is empty.
        let (mut probe, _) = member(&n2, "Probe").await;
        let heard = events(&mut probe, 1, Duration::from_secs(15)).await;
        assert!(
            heard.iter().any(|(kind, _)| kind == "peer-left"),
            "node 1 was never reaped: {heard:?}"
        );
        probe.send(r#"{"type":"leave"}"#.to_owned()).await;
    }
    let (mut again, w) = ada_back(&n2, "r", &token).await;
    assert_eq!(w["type"], "welcome", "{w}");
    if let Some(bob) = bob.as_mut() {
        let mut heard = events(bob, 2, WAIT).await;
        assert!(heard.remove(&("peer-left".to_owned(), old)), "{heard:?}");
        assert_eq!(heard, expected("peer-joined", &[&id(&w)]));
    }

    link.heal();
    until("node 1 is back", || n1.store_healthy() == Some(true)).await;
    match ada.ended(WAIT).await {
        Ended::Closed(code, reason) => assert_eq!(code, 4000, "closed as replaced: {reason}"),
        Ended::Dropped => panic!("dropped without a close frame"),
    }
    // No ghost: nobody hears the old Ada again.
    for x in bob.iter_mut().chain([&mut again]) {
        x.expect_silence(Duration::from_millis(1500)).await;
    }
}

#[tokio::test]
async fn redis_outage_keeps_local_rooms_and_resyncs() {
    let mut redis = Redis::start();
    let n1 = cluster_node(&redis.url, |_| {}).await;
    let n2 = cluster_node(&redis.url, |_| {}).await;
    let (mut ada, ada_id) = member(&n1, "Ada").await;
    let (mut bob, bob_id) = member(&n1, "Bob").await;
    assert_eq!(ada.recv().await["type"], "peer-joined");
    let _ = redis.child.kill();
    let _ = redis.child.wait();
    // Local rooms go on; health says what is missing.
    until("the outage is noticed", || {
        n1.store_healthy() == Some(false)
    })
    .await;
    ada.signal(&bob_id, r#"{"z":3}"#).await;
    assert_eq!(bob.recv().await["from"], ada_id.as_str());
    // Redis comes back empty on the same port: node 1 registers its people again, and a
    // newcomer on node 2 sees them.
    redis.restart();
    until_within("the nodes come back", Duration::from_secs(10), || {
        n1.store_healthy() == Some(true) && n2.store_healthy() == Some(true)
    })
    .await;
    // Registration runs right after the first good heartbeat.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut cy = Client::connect(&n2).await;
    let welcome = cy.join("r", "Cy").await;
    let peers = welcome["peers"].as_array().unwrap();
    assert_eq!(peers.len(), 2, "{welcome}");
}

/// Two nodes of a cluster whose rooms' calls go through a real Janus (a departure's kick
/// waits 500 ms), and what the tests hold of it.
struct SfuCluster {
    nodes: [confab_signal::SignalServer; 2],
    /// The first node's way to Redis, with [`ada_and_mallory_across_nodes_through`].
    link: Option<Link>,
    _redis: Redis,
    _janus: confab_netlab::janus::Janus,
}

/// The cluster, Ada's client and `welcome.sfu`, Mallory's, and a session at Janus.
type AdaAndMallory = (
    SfuCluster,
    Client,
    serde_json::Value,
    Client,
    serde_json::Value,
    confab_janus::Janus,
);

/// Ada on the first node and Mallory on the second in room "big" (Ada's node has heard of
/// Mallory, and so of her SFU seat): their clients, their `welcome`s' `sfu`, and a session at
/// Janus.
async fn ada_and_mallory_across_nodes() -> AdaAndMallory {
    ada_and_mallory_across_nodes_through(false).await
}

/// The same, the first node reaching Redis through a [`Link`] that can be cut if `link`.
async fn ada_and_mallory_across_nodes_through(link: bool) -> AdaAndMallory {
    let redis = Redis::start();
    let janus = confab_netlab::janus::Janus::start().expect("janus starts");
    let tweak = |c: &mut confab_signal::SignalConfig| {
        c.limits.sfu = Some(janus.sfu("a-cluster-secret-of-16", 0));
        c.sfu_remove_after = Duration::from_millis(500);
    };
    let link = match link {
        true => Some(Link::start(redis.port).await),
        false => None,
    };
    let first = link.as_ref().map_or(redis.url.clone(), Link::url);
    let nodes = [
        cluster_node(&first, tweak).await,
        cluster_node(&redis.url, tweak).await,
    ];
    let mut ada = Client::connect(&nodes[0]).await;
    let sfu = ada.join("big", "Ada").await["sfu"].clone();
    let mut mallory = Client::connect(&nodes[1]).await;
    let hers = mallory.join("big", "Mallory").await["sfu"].clone();
    assert_ne!(hers["room"], sfu["room"], "a VideoRoom room of one's own");
    assert_eq!(ada.recv().await["type"], "peer-joined");
    let mut j = confab_janus::Janus::connect(&janus.url().replace("janus+", ""))
        .await
        .unwrap();
    j.create_session().await.unwrap();
    let cluster = SfuCluster {
        nodes,
        link,
        _redis: redis,
        _janus: janus,
    };
    (cluster, ada, sfu, mallory, hers, j)
}

/// Ada's node is cut off from Redis: after 3 s it lets the other nodes' people (Bob, here
/// under the helper's name Mallory) go, as they let Ada go. Then Ada's connection drops. Her
/// node removes her own VideoRoom room after the wait (a rejoin is a new member with a room of
/// its own, so nobody can be back in it), but never Bob's: he keeps his place at the SFU.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_off_node_leaves_the_others_at_the_sfu() {
    let (cluster, mut ada, sfu, _bob, his, mut j) =
        ada_and_mallory_across_nodes_through(true).await;
    let ada_at = sit_at_janus(&mut j, &sfu, common::seat_id(&sfu), &sfu["token"])
        .await
        .unwrap();
    let bob_feed = common::seat_id(&his);
    sit_at_janus(&mut j, &his, bob_feed, &his["token"])
        .await
        .unwrap();
    cluster.link.as_ref().unwrap().cut();
    let n1 = &cluster.nodes[0];
    until("node 1 notices", || n1.store_healthy() == Some(false)).await;
    // Ada hears Bob go once her node has let the others' people go.
    let left = tokio::time::timeout(Duration::from_secs(10), ada.recv())
        .await
        .expect("Bob leaves Ada's view");
    assert_eq!(left["type"], "peer-left", "{left}");
    drop(ada);
    let adas = sfu["room"].as_u64().unwrap();
    let deadline = Instant::now() + WAIT;
    while stands_at_janus(&mut j, ada_at, adas).await {
        assert!(Instant::now() < deadline, "Ada's room stays after she left");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Past the wait (500 ms) of anything else her node might do.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let there = at_janus(&mut j, ada_at, his["room"].as_u64().unwrap()).await;
    assert!(there.contains(&bob_feed), "Bob lost his place: {there:?}");
    j.close().await;
}

/// Ada on one node and Mallory on another share a room whose calls go through a real Janus.
/// Mallory sits in her own VideoRoom room under her own feed and, with her token, under one of
/// her making, then leaves. Her room goes at once, with both; Ada's stays (on a node of its
/// own, whose wait for Mallory's departure passes too).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ex_member_keeps_watching_across_nodes() {
    let (_cluster, _ada, sfu, mut mallory, hers, mut j) = ada_and_mallory_across_nodes().await;
    let ada_feed = common::seat_id(&sfu);
    let ada_at = sit_at_janus(&mut j, &sfu, ada_feed, &sfu["token"])
        .await
        .expect("Ada sits at Janus");
    let her_room = hers["room"].as_u64().unwrap();
    for id in [common::seat_id(&hers), 777] {
        sit_at_janus(&mut j, &hers, id, &hers["token"])
            .await
            .unwrap_or_else(|e| panic!("{id} never got in: {e}"));
    }
    assert_eq!(at_janus(&mut j, ada_at, her_room).await.len(), 2);

    mallory.send(r#"{"type":"leave"}"#.to_owned()).await;
    let deadline = Instant::now() + WAIT;
    while stands_at_janus(&mut j, ada_at, her_room).await {
        assert!(
            Instant::now() < deadline,
            "Mallory's room stays after she left"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // And Ada stays, past the other node's wait.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        at_janus(&mut j, ada_at, sfu["room"].as_u64().unwrap()).await,
        BTreeSet::from([ada_feed])
    );
    j.close().await;
}

/// Ada, the only one of room "big" on node A, comes back through node B with her rejoin token
/// (her network changed; A is alive). She keeps her place at the SFU, and her VideoRoom room
/// stays: A, which closes her old connection and no longer holds the room, removes it only if
/// no seat in the store holds its token — hers, now on B, does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejoin_through_another_node_keeps_its_room_at_the_sfu() {
    let redis = Redis::start();
    let janus = confab_netlab::janus::Janus::start().expect("janus starts");
    let tweak = |c: &mut confab_signal::SignalConfig| {
        c.limits.sfu = Some(janus.sfu("a-cluster-secret-of-16", 0));
        c.sfu_remove_after = Duration::from_millis(500);
    };
    let nodes = [
        cluster_node(&redis.url, tweak).await,
        cluster_node(&redis.url, tweak).await,
    ];
    let mut ada = Client::connect(&nodes[0]).await;
    let w = ada.join("big", "Ada").await;
    let (sfu, token) = (w["sfu"].clone(), w["rejoin"].as_str().unwrap().to_owned());
    let (mut bob, _) = {
        let mut c = Client::connect(&nodes[1]).await;
        let me = id(&c.join("big", "Bob").await);
        (c, me)
    };
    assert_eq!(ada.recv().await["type"], "peer-joined");
    let (_ada, back) = ada_back(&nodes[1], "big", &token).await;
    assert_eq!(back["type"], "welcome", "{back}");
    assert_eq!(back["sfu"], sfu, "the same place at the SFU");
    let _ = events(&mut bob, 2, WAIT).await;
    let mut j = confab_janus::Janus::connect(&janus.url().replace("janus+", ""))
        .await
        .unwrap();
    j.create_session().await.unwrap();
    let h = j.attach().await.unwrap();
    let room = sfu["room"].as_u64().unwrap();
    // Past A's wait (500 ms) for the connection that went, and its work.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        stands_at_janus(&mut j, h, room).await,
        "Ada's room was removed"
    );
    j.close().await;
    drop(ada);
}

/// Ada, seated on node A, comes back through node B with the rejoin token A gave her (as when
/// her path to A died unnoticed and the balancer sent her elsewhere): the store frees her old
/// seat before it counts the room, so the full room takes her back; A closes her old
/// connection as replaced; Bob hears the old membership leave at once, then the new one join.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejoin_through_another_node_replaces_the_old_membership() {
    let redis = Redis::start();
    let two = |c: &mut confab_signal::SignalConfig| c.limits.room_capacity = 2;
    let (a, b) = (
        cluster_node(&redis.url, two).await,
        cluster_node(&redis.url, two).await,
    );
    let mut ada = Client::connect(&a).await;
    let w = ada.join("full", "Ada").await;
    let (old, token) = (id(&w), w["rejoin"].as_str().unwrap().to_owned());
    let (mut bob, _) = {
        let mut c = Client::connect(&b).await;
        let me = id(&c.join("full", "Bob").await);
        (c, me)
    };
    assert_eq!(ada.recv().await["type"], "peer-joined");
    // The room is full: someone else is refused.
    let mut cy = Client::connect(&b).await;
    cy.send(r#"{"type":"join","room":"full","name":"Cy"}"#.to_owned())
        .await;
    cy.expect_error("room-full").await;
    // A guessed token frees nothing.
    let mut guess = Client::connect(&b).await;
    guess
        .send(format!(
            r#"{{"type":"join","room":"full","name":"Ada","rejoin":"{}"}}"#,
            "0".repeat(32)
        ))
        .await;
    guess.expect_error("room-full").await;

    let (_again, w) = ada_back(&b, "full", &token).await;
    assert_eq!(w["type"], "welcome", "the full room takes her back: {w}");
    let new = id(&w);
    let peers: Vec<&str> = w["peers"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p["name"].as_str())
        .collect();
    assert_eq!(peers, ["Bob"], "her old membership is gone: {w}");
    match ada.ended(Duration::from_secs(5)).await {
        Ended::Closed(code, _) => assert_eq!(code, 4000, "closed as replaced"),
        Ended::Dropped => panic!("dropped without a close frame"),
    }
    let mut heard = events(&mut bob, 2, Duration::from_secs(5)).await;
    assert!(heard.remove(&("peer-left".to_owned(), old)), "{heard:?}");
    assert_eq!(heard, expected("peer-joined", &[&new]));
}
