//! Several nodes sharing rooms through a real `redis-server` (started on a free port, stopped
//! on drop): joins, leaves, signals, capacity and passwords across nodes, a node that dies.

mod common;

use common::{Client, WAIT};
use confab_signal::SignalServer;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Redis {
    child: Child,
    url: String,
}

impl Redis {
    fn start() -> Redis {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server runs (cargo xtask test installs it)");
        let deadline = Instant::now() + WAIT;
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        Redis {
            child,
            url: format!("redis://127.0.0.1:{port}"),
        }
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn node(redis: &Redis, capacity: usize) -> SignalServer {
    let url = redis.url.clone();
    let server = common::start(move |c| {
        c.redis = Some(url);
        c.limits.room_capacity = capacity;
    })
    .await;
    let deadline = Instant::now() + WAIT;
    while server.store_healthy() != Some(true) {
        assert!(Instant::now() < deadline, "the node never reached redis");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    server
}

fn id(v: &serde_json::Value) -> String {
    v["id"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn people_on_two_nodes_share_a_room() {
    let redis = Redis::start();
    let (n1, n2) = (node(&redis, 8).await, node(&redis, 8).await);
    assert_ne!(n1.node_id(), n2.node_id());
    let mut ada = Client::connect(&n1).await;
    let ada_id = id(&ada.join("r", "Ada").await);
    let mut bob = Client::connect(&n2).await;
    let welcome = bob.join("r", "Bob").await;
    assert_eq!(welcome["peers"][0]["id"], ada_id.as_str(), "{welcome}");
    assert_eq!(welcome["peers"][0]["name"], "Ada");
    let bob_id = id(&welcome);
    let joined = ada.recv().await;
    assert_eq!(joined["type"], "peer-joined", "{joined}");
    assert_eq!(joined["id"], bob_id.as_str());
    // Signals cross nodes, stamped with the real sender whatever the client claims.
    bob.send(format!(
        r#"{{"type":"signal","to":"{ada_id}","from":"{ada_id}","data":{{"x":1}}}}"#
    ))
    .await;
    let sig = ada.recv().await;
    assert_eq!(sig["type"], "signal", "{sig}");
    assert_eq!(sig["from"], bob_id.as_str());
    assert_eq!(sig["data"]["x"], 1);
    ada.signal(&bob_id, r#"{"y":2}"#).await;
    let sig = bob.recv().await;
    assert_eq!(
        (sig["from"].as_str(), &sig["data"]["y"]),
        (Some(ada_id.as_str()), &2.into())
    );
    // A leave on one node is a peer-left on the other.
    bob.send(r#"{"type":"leave"}"#).await;
    let left = ada.recv().await;
    assert_eq!(left["type"], "peer-left", "{left}");
    assert_eq!(left["id"], bob_id.as_str());
}

#[tokio::test]
async fn capacity_and_password_hold_across_nodes() {
    let redis = Redis::start();
    let (n1, n2) = (node(&redis, 2).await, node(&redis, 2).await);
    let mut ada = Client::connect(&n1).await;
    ada.send(r#"{"type":"join","room":"locked","name":"Ada","password":"s3cret"}"#)
        .await;
    assert_eq!(ada.recv().await["type"], "welcome");
    let mut eve = Client::connect(&n2).await;
    eve.send(r#"{"type":"join","room":"locked","name":"Eve","password":"guess"}"#)
        .await;
    eve.expect_error("wrong-password").await;
    eve.send(r#"{"type":"join","room":"locked","name":"Eve"}"#)
        .await;
    eve.expect_error("wrong-password").await;
    let mut bob = Client::connect(&n2).await;
    bob.send(r#"{"type":"join","room":"locked","name":"Bob","password":"s3cret"}"#)
        .await;
    assert_eq!(bob.recv().await["type"], "welcome");
    // Two people: the room is full on every node.
    let mut cy = Client::connect(&n1).await;
    cy.send(r#"{"type":"join","room":"locked","name":"Cy","password":"s3cret"}"#)
        .await;
    cy.expect_error("room-full").await;
}

/// `confab-signal` as a process on a free port, joined to `redis`.
fn node_process(redis: &Redis) -> (Child, String) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
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
    let deadline = Instant::now() + WAIT;
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "confab-signal did not listen");
        std::thread::sleep(Duration::from_millis(20));
    }
    (child, format!("ws://127.0.0.1:{port}/ws"))
}

#[tokio::test]
async fn a_node_that_dies_has_its_people_leave_within_5_s() {
    let redis = Redis::start();
    let n1 = node(&redis, 8).await;
    let (mut n2, n2_url) = node_process(&redis);
    let mut ada = Client::connect(&n1).await;
    ada.join("r", "Ada").await;
    let (ws, _) = tokio_tungstenite::connect_async(n2_url.as_str())
        .await
        .unwrap();
    let mut bob = Client { ws };
    // The process reaches Redis within a second or so; until then it seats people alone.
    let deadline = Instant::now() + WAIT;
    let bob_id = loop {
        let welcome = bob.join("r", "Bob").await;
        if welcome["peers"].as_array().is_some_and(|p| p.len() == 1) {
            break id(&welcome);
        }
        assert!(Instant::now() < deadline, "node 2 never saw Ada: {welcome}");
        bob.send(r#"{"type":"leave"}"#).await;
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let joined = ada.recv().await;
    assert_eq!(joined["type"], "peer-joined", "{joined}");
    assert_eq!(joined["id"], bob_id.as_str());
    // Node 2 is killed: no goodbye to Redis, its heartbeat just expires.
    n2.kill().unwrap();
    n2.wait().unwrap();
    let started = Instant::now();
    let left = tokio::time::timeout(Duration::from_secs(6), ada.recv())
        .await
        .expect("peer-left within 5 s");
    assert_eq!(left["type"], "peer-left", "{left}");
    assert_eq!(left["id"], bob_id.as_str());
    assert!(
        started.elapsed() <= Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn redis_outage_keeps_local_rooms_and_resyncs() {
    let mut redis = Redis::start();
    let (n1, n2) = (node(&redis, 8).await, node(&redis, 8).await);
    let mut ada = Client::connect(&n1).await;
    let ada_id = id(&ada.join("r", "Ada").await);
    let mut bob = Client::connect(&n1).await;
    let bob_id = id(&bob.join("r", "Bob").await);
    assert_eq!(ada.recv().await["type"], "peer-joined");
    let url = redis.url.clone();
    let _ = redis.child.kill();
    let _ = redis.child.wait();
    // Local rooms go on; health says what is missing.
    let deadline = Instant::now() + WAIT;
    while n1.store_healthy() != Some(false) {
        assert!(Instant::now() < deadline, "the outage was not noticed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    ada.signal(&bob_id, r#"{"z":3}"#).await;
    assert_eq!(bob.recv().await["from"], ada_id.as_str());
    // Redis comes back empty on the same port: node 1 registers its people again, and a
    // newcomer on node 2 sees them.
    let port = url.rsplit(':').next().unwrap().to_owned();
    redis.child = Command::new("redis-server")
        .args([
            "--port",
            &port,
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while n1.store_healthy() != Some(true) || n2.store_healthy() != Some(true) {
        assert!(Instant::now() < deadline, "the nodes did not come back");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Registration runs right after the first good heartbeat.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut cy = Client::connect(&n2).await;
    let welcome = cy.join("r", "Cy").await;
    let peers = welcome["peers"].as_array().unwrap();
    assert_eq!(peers.len(), 2, "{welcome}");
}
