use super::*;
use serde_json::Value;
use std::net::{Ipv4Addr, Ipv6Addr};

const HOME: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));

struct Harness {
    rooms: Rooms,
    now: Instant,
    out: Vec<Output>,
}

impl Harness {
    fn new() -> Self {
        Self::with(Config::default())
    }

    fn with(config: Config) -> Self {
        Harness {
            rooms: Rooms::new(config, [7; 32]),
            now: Instant::now(),
            out: Vec::new(),
        }
    }

    fn connect(&mut self) -> ConnId {
        self.connect_from(HOME)
    }

    fn connect_from(&mut self, ip: IpAddr) -> ConnId {
        self.rooms.connect(ip, self.now).expect("connect")
    }

    fn disconnect(&mut self, conn: ConnId) {
        self.rooms.disconnect(conn, self.now, &mut self.out);
    }

    fn send(&mut self, conn: ConnId, text: &str) {
        self.rooms.receive(conn, text, self.now, &mut self.out);
    }

    /// Joins and returns (conn, peer id), discarding the outputs.
    fn joined(&mut self, room: &str, name: &str) -> (ConnId, String) {
        let c = self.connect();
        self.join_as(c, room, name)
    }

    fn join_as(&mut self, c: ConnId, room: &str, name: &str) -> (ConnId, String) {
        self.send(
            c,
            &format!(r#"{{"type":"join","room":"{room}","name":"{name}"}}"#),
        );
        let welcome = self.take_for(c);
        assert_eq!(welcome[0]["type"], "welcome", "{welcome:?}");
        self.out.clear();
        (c, welcome[0]["id"].as_str().unwrap().to_owned())
    }

    fn advance(&mut self, d: Duration) {
        self.now += d;
        self.rooms.tick(self.now, &mut self.out);
    }

    /// The JSON frames sent to `conn`, removed from the outputs.
    fn take_for(&mut self, conn: ConnId) -> Vec<Value> {
        let mut mine = Vec::new();
        self.out.retain(|o| match o {
            Output::Send { conn: c, text }
            | Output::Update { conn: c, text }
            | Output::Relay { conn: c, text, .. }
                if *c == conn =>
            {
                mine.push(serde_json::from_str(text).unwrap());
                false
            }
            _ => true,
        });
        mine
    }

    fn closes(&self) -> Vec<(ConnId, u16)> {
        self.out
            .iter()
            .filter_map(|o| match o {
                Output::Close { conn, code, .. } => Some((*conn, *code)),
                _ => None,
            })
            .collect()
    }

    fn error_code(&mut self, conn: ConnId) -> String {
        let frames = self.take_for(conn);
        assert_eq!(frames.len(), 1, "{frames:?}");
        assert_eq!(frames[0]["type"], "error");
        assert!(!frames[0]["message"].as_str().unwrap().is_empty());
        frames[0]["code"].as_str().unwrap().to_owned()
    }
}

#[test]
fn join_welcomes_with_peers_and_announces() {
    let mut h = Harness::new();
    let (a, a_id) = h.joined("team", "Ada");
    let b = h.connect();
    h.send(b, r#"{"type":"join","room":"team","name":"Bob"}"#);
    let to_b = h.take_for(b);
    assert_eq!(to_b[0]["type"], "welcome");
    assert_eq!(to_b[0]["room"], "team");
    assert_eq!(to_b[0]["peers"][0]["id"], a_id.as_str());
    assert_eq!(to_b[0]["peers"][0]["name"], "Ada");
    let b_id = to_b[0]["id"].as_str().unwrap();
    assert_eq!(b_id.len(), 32);
    assert_ne!(b_id, a_id);
    let to_a = h.take_for(a);
    assert_eq!(to_a.len(), 1);
    assert_eq!(to_a[0]["type"], "peer-joined");
    assert_eq!(to_a[0]["id"], b_id);
    assert_eq!(to_a[0]["name"], "Bob");
}

#[test]
fn signal_is_stamped_with_the_senders_id() {
    let mut h = Harness::new();
    let (a, a_id) = h.joined("r", "A");
    let (b, b_id) = h.joined("r", "B");
    h.send(
        a,
        &format!(r#"{{"type":"signal","to":"{b_id}","from":"{b_id}","data":{{"x":1}}}}"#),
    );
    let got = h.take_for(b);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0]["from"], a_id.as_str());
    assert_eq!(got[0]["data"]["x"], 1);
    assert!(h.out.is_empty());
}

#[test]
fn signal_to_other_room_or_self_is_unknown_peer() {
    let mut h = Harness::new();
    let (a, a_id) = h.joined("r1", "A");
    let (_c, c_id) = h.joined("r2", "C");
    for to in [c_id.as_str(), a_id.as_str(), "nobody"] {
        h.send(
            a,
            &format!(r#"{{"type":"signal","to":"{to}","data":{{}}}}"#),
        );
        assert_eq!(h.error_code(a), "unknown-peer");
        assert!(h.out.is_empty(), "nothing relayed: {:?}", h.out);
    }
}

#[test]
fn leave_and_disconnect_notify_the_room_and_empty_rooms_vanish() {
    let mut h = Harness::new();
    let (a, _) = h.joined("r", "A");
    let (b, b_id) = h.joined("r", "B");
    h.send(b, r#"{"type":"leave"}"#);
    let to_a = h.take_for(a);
    assert_eq!(to_a[0]["type"], "peer-left");
    assert_eq!(to_a[0]["id"], b_id.as_str());
    assert!(h.take_for(b).is_empty());
    h.send(b, r#"{"type":"leave"}"#);
    assert_eq!(h.error_code(b), "not-joined");
    assert_eq!(h.rooms.room_count(), 1);
    h.disconnect(a);
    assert_eq!(h.rooms.room_count(), 0);
    assert_eq!(h.rooms.connection_count(), 1);
    // b can join again, under a new id.
    h.send(b, r#"{"type":"join","room":"r","name":"B"}"#);
    let w = h.take_for(b);
    assert_eq!(w[0]["type"], "welcome");
    assert_ne!(w[0]["id"], b_id.as_str());
}

#[test]
fn validation_errors() {
    let mut h = Harness::new();
    let c = h.connect();
    let cases = [
        (r#"{"type":"join","room":"a b","name":"A"}"#, "invalid-room"),
        (r#"{"type":"join","room":"","name":"A"}"#, "invalid-room"),
        (r#"{"type":"join","room":"r","name":""}"#, "invalid-name"),
        (
            r#"{"type":"join","room":"r","name":"a\u0000"}"#,
            "invalid-name",
        ),
        (r#"{"type":"nope"}"#, "bad-message"),
        ("{", "bad-message"),
        (r#"{"type":"signal","to":"x","data":{}}"#, "not-joined"),
        (r#"{"type":"leave"}"#, "not-joined"),
    ];
    for (text, code) in cases {
        h.send(c, text);
        assert_eq!(h.error_code(c), code, "{text}");
    }
    h.send(c, r#"{"type":"join","room":"r","name":"A"}"#);
    h.out.clear();
    h.send(c, r#"{"type":"join","room":"r2","name":"A"}"#);
    assert_eq!(h.error_code(c), "already-joined");
    assert!(h.closes().is_empty(), "errors alone do not close");
}

#[test]
fn room_capacity() {
    let mut h = Harness::with(Config {
        room_capacity: 2,
        ..Config::default()
    });
    h.joined("r", "A");
    h.joined("r", "B");
    let c = h.connect();
    h.send(c, r#"{"type":"join","room":"r","name":"C"}"#);
    assert_eq!(h.error_code(c), "room-full");
    h.send(c, r#"{"type":"join","room":"other","name":"C"}"#);
    assert_eq!(h.take_for(c)[0]["type"], "welcome");
}

#[test]
fn password_set_by_first_joiner() {
    let mut h = Harness::new();
    let a = h.connect();
    h.send(
        a,
        r#"{"type":"join","room":"r","name":"A","password":"pw"}"#,
    );
    assert_eq!(h.take_for(a)[0]["type"], "welcome");
    let b = h.connect();
    for wrong in [
        r#"{"type":"join","room":"r","name":"B"}"#,
        r#"{"type":"join","room":"r","name":"B","password":"pW"}"#,
        r#"{"type":"join","room":"r","name":"B","password":""}"#,
    ] {
        h.send(b, wrong);
        assert_eq!(h.error_code(b), "wrong-password");
    }
    h.send(
        b,
        r#"{"type":"join","room":"r","name":"B","password":"pw"}"#,
    );
    assert_eq!(h.take_for(b)[0]["type"], "welcome");
}

#[test]
fn room_password_vanishes_with_the_room() {
    let mut h = Harness::new();
    let a = h.connect();
    h.send(
        a,
        r#"{"type":"join","room":"r","name":"A","password":"pw"}"#,
    );
    h.disconnect(a);
    let (_b, _) = h.joined("r", "B");
}

#[test]
fn limits_on_connections_and_rooms() {
    let mut h = Harness::with(Config {
        max_connections: 2,
        max_rooms: 1,
        ..Config::default()
    });
    h.joined("r", "A");
    let b = h.connect();
    let refused = h.rooms.connect(HOME, h.now).unwrap_err();
    assert_eq!(refused.code, CLOSE_TRY_AGAIN);
    assert!(refused.text.contains("server-full"));
    h.send(b, r#"{"type":"join","room":"r2","name":"B"}"#);
    assert_eq!(h.error_code(b), "server-full");
}

#[test]
fn oversize_message_is_an_error_not_a_close() {
    let mut h = Harness::with(Config {
        max_message_bytes: 100,
        ..Config::default()
    });
    let (a, _) = h.joined("r", "A");
    let (_b, b_id) = h.joined("r", "B");
    let big = format!(
        r#"{{"type":"signal","to":"{b_id}","data":{{"pad":"{}"}}}}"#,
        "x".repeat(100)
    );
    h.send(a, &big);
    assert_eq!(h.error_code(a), "too-large");
    assert!(h.out.is_empty());
}

#[test]
fn rate_limit_then_close_on_persistent_abuse() {
    let mut h = Harness::with(Config {
        rate_per_sec: 10.0,
        rate_burst: 5.0,
        error_budget: 3.0,
        ..Config::default()
    });
    let (a, _) = h.joined("r", "A");
    let (_b, b_id) = h.joined("r", "B");
    let msg = format!(r#"{{"type":"signal","to":"{b_id}","data":{{}}}}"#);
    for _ in 0..5 {
        h.send(a, &msg);
    }
    assert_eq!(h.out.len(), 5, "the burst is relayed");
    h.out.clear();
    h.send(a, &msg);
    assert_eq!(h.error_code(a), "rate-limited");
    // Time refills the bucket.
    h.advance(Duration::from_millis(200));
    h.send(a, &msg);
    assert_eq!(h.out.len(), 1);
    assert!(matches!(h.out[0], Output::Relay { from, .. } if from == Some(a)));
    h.out.clear();
    // Keep flooding: three more errors are answered, then the connection is closed.
    for _ in 0..10 {
        h.send(a, &msg);
    }
    assert_eq!(h.closes(), vec![(a, CLOSE_POLICY)]);
    assert_eq!(h.rooms.connection_count(), 1, "a is forgotten");
}

#[test]
fn never_joins_is_closed_after_the_join_timeout() {
    let mut h = Harness::new();
    let idle = h.connect();
    let (a, _) = h.joined("r", "A");
    h.advance(Duration::from_secs(29));
    assert!(h.closes().is_empty());
    h.advance(Duration::from_secs(2));
    assert_eq!(h.closes(), vec![(idle, CLOSE_POLICY)]);
    h.out.clear();
    // A peer that leaves and stays idle gets a new deadline.
    h.send(a, r#"{"type":"leave"}"#);
    h.advance(Duration::from_secs(31));
    assert_eq!(h.closes(), vec![(a, CLOSE_POLICY)]);
    assert_eq!(h.rooms.connection_count(), 0);
    assert_eq!(h.rooms.next_deadline(), None);
}

fn unlimited_joins() -> Config {
    Config {
        rate_per_sec: 1e9,
        rate_burst: 1e9,
        join_burst: 1e9,
        join_per_sec: 1e9,
        address_join_burst: 1e9,
        address_join_per_sec: 1e9,
        ..Config::default()
    }
}

#[test]
fn ids_are_unique_and_unguessable_looking() {
    let mut h = Harness::with(unlimited_joins());
    let mut seen = std::collections::HashSet::new();
    for i in 0..500 {
        let (_, id) = h.joined(&format!("r{}", i % 100), "P");
        assert_eq!(id.len(), 32);
        assert!(id.chars().all(|c| c.is_ascii_hexdigit()));
        assert!(seen.insert(id));
    }
}

#[test]
fn join_order_is_kept_in_welcome() {
    let mut h = Harness::new();
    let ids: Vec<String> = ["A", "B", "C"].iter().map(|n| h.joined("r", n).1).collect();
    let d = h.connect();
    h.send(d, r#"{"type":"join","room":"r","name":"D"}"#);
    let w = h.take_for(d);
    let listed: Vec<&str> = w[0]["peers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_str().unwrap())
        .collect();
    assert_eq!(listed, ids);
}

#[test]
fn join_leave_loops_keep_one_deadline_per_connection() {
    let mut h = Harness::with(unlimited_joins());
    let c = h.connect();
    for _ in 0..1000 {
        h.send(c, r#"{"type":"join","room":"r","name":"A"}"#);
        h.send(c, r#"{"type":"leave"}"#);
    }
    assert_eq!(
        h.rooms.deadlines.len(),
        1,
        "one entry, re-armed, not a thousand"
    );
    // The latest leave's deadline still applies.
    h.advance(Duration::from_secs(29));
    assert!(h.closes().is_empty());
    h.advance(Duration::from_secs(2));
    assert_eq!(h.closes(), vec![(c, CLOSE_POLICY)]);
}

// ------------------------------------------------------------------ issue 9

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn signal_to(to: &str) -> String {
    format!(r#"{{"type":"signal","to":"{to}","data":{{"kind":"state"}}}}"#)
}

#[test]
fn signals_to_a_peer_that_just_left_cost_nothing() {
    let mut h = Harness::with(Config {
        error_budget: 3.0,
        ..Config::default()
    });
    let (a, _) = h.joined("r", "A");
    let (_b, _) = h.joined("r", "B");
    let (f, f_id) = h.joined("r", "Flap");
    h.send(f, r#"{"type":"leave"}"#);
    h.out.clear();
    // Far more than the budget: each one is answered, none is held against a.
    for _ in 0..10 {
        h.send(a, &signal_to(&f_id));
        assert_eq!(h.error_code(a), "unknown-peer");
        assert!(h.out.is_empty(), "nothing relayed: {:?}", h.out);
    }
    // An id that was never in the room is still the sender's mistake.
    for _ in 0..3 {
        h.send(a, &signal_to("0123456789abcdef0123456789abcdef"));
        assert_eq!(h.error_code(a), "unknown-peer");
    }
    h.send(a, &signal_to("0123456789abcdef0123456789abcdef"));
    assert_eq!(h.closes(), vec![(a, CLOSE_POLICY)]);
}

#[test]
fn departed_ids_are_forgotten_after_a_while() {
    let mut h = Harness::with(Config {
        error_budget: 1.0,
        ..Config::default()
    });
    let (a, _) = h.joined("r", "A");
    let (f, f_id) = h.joined("r", "Flap");
    h.send(f, r#"{"type":"leave"}"#);
    h.out.clear();
    h.advance(Duration::from_secs(59));
    h.out.clear(); // f's join timeout
    h.send(a, &signal_to(&f_id));
    assert_eq!(h.error_code(a), "unknown-peer");
    h.advance(Duration::from_secs(2));
    h.send(a, &signal_to(&f_id));
    assert_eq!(h.error_code(a), "unknown-peer");
    h.send(a, &signal_to(&f_id));
    assert_eq!(
        h.closes(),
        vec![(a, CLOSE_POLICY)],
        "a minute later it is a's mistake"
    );
}

#[test]
fn departed_ids_are_bounded_per_room() {
    let mut h = Harness::with(Config {
        departed_per_room: 4,
        ..unlimited_joins()
    });
    let (_a, _) = h.joined("r", "A");
    let f = h.connect();
    for _ in 0..50 {
        h.join_as(f, "r", "Flap");
        h.send(f, r#"{"type":"leave"}"#);
    }
    assert_eq!(h.rooms.rooms["r"].departed.len(), 4);
}

#[test]
fn joins_are_rate_limited_per_connection() {
    let mut h = Harness::with(Config {
        join_burst: 2.0,
        join_per_sec: 0.5,
        error_budget: 2.0,
        ..Config::default()
    });
    let (_a, _) = h.joined("r", "A");
    let f = h.connect();
    h.join_as(f, "r", "F");
    h.send(f, r#"{"type":"leave"}"#);
    h.join_as(f, "r", "F");
    h.send(f, r#"{"type":"leave"}"#);
    h.out.clear();
    h.send(f, r#"{"type":"join","room":"r","name":"F"}"#);
    assert_eq!(h.error_code(f), "rate-limited");
    assert!(h.out.is_empty(), "the room heard nothing");
    h.advance(Duration::from_secs(2));
    h.join_as(f, "r", "F");
    // Its own doing: charged, and a connection that keeps at it is closed.
    h.send(f, r#"{"type":"leave"}"#);
    h.out.clear();
    for _ in 0..3 {
        h.send(f, r#"{"type":"join","room":"r","name":"F"}"#);
    }
    assert!(h.closes().contains(&(f, CLOSE_POLICY)), "{:?}", h.out);
}

#[test]
fn joins_are_rate_limited_per_address_without_charging_neighbours() {
    let mut h = Harness::with(Config {
        address_join_burst: 3.0,
        address_join_per_sec: 1.0,
        error_budget: 1.0,
        ..Config::default()
    });
    for name in ["A", "B", "C"] {
        h.joined("r", name);
    }
    // A fourth person behind the same address waits; the refusals are not held against it.
    let d = h.connect();
    for _ in 0..4 {
        h.send(d, r#"{"type":"join","room":"r","name":"D"}"#);
        assert_eq!(h.error_code(d), "rate-limited");
    }
    assert!(h.closes().is_empty());
    // Someone elsewhere is not affected.
    let e = h.connect_from(ip("198.51.100.7"));
    h.join_as(e, "r", "E");
    h.advance(Duration::from_secs(1));
    h.join_as(d, "r", "D");
}

#[test]
fn ipv6_addresses_count_per_64() {
    assert_eq!(
        AddrKey::from(ip("2001:db8:1:2:aaaa::1")),
        AddrKey::from(ip("2001:db8:1:2:ffff::2"))
    );
    assert_ne!(
        AddrKey::from(ip("2001:db8:1:2::1")),
        AddrKey::from(ip("2001:db8:1:3::1"))
    );
    assert_eq!(
        AddrKey::from(ip("::ffff:192.0.2.9")),
        AddrKey::from(ip("192.0.2.9"))
    );
    assert_eq!(
        AddrKey::from(ip("2001:db8:1:2::1")).to_string(),
        "2001:db8:1:2::/64"
    );
    let mut h = Harness::with(Config {
        address_join_burst: 1.0,
        address_join_per_sec: 0.001,
        ..Config::default()
    });
    let a = h.connect_from(ip("2001:db8:1:2::1"));
    h.join_as(a, "r", "A");
    let b = h.connect_from(IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 1, 2, 9, 9, 9, 9)));
    h.send(b, r#"{"type":"join","room":"r","name":"B"}"#);
    assert_eq!(h.error_code(b), "rate-limited", "same /64, same address");
}

fn join_with_password(h: &mut Harness, ip_: &str, password: &str) -> String {
    let c = h.connect_from(ip(ip_));
    h.send(
        c,
        &format!(r#"{{"type":"join","room":"r","name":"M","password":"{password}"}}"#),
    );
    let frames = h.take_for(c);
    let v = &frames[0];
    if v["type"] == "welcome" {
        "welcome".into()
    } else {
        v["code"].as_str().unwrap().to_owned()
    }
}

#[test]
fn password_guessing_backs_off_per_address_and_per_room() {
    let mut h = Harness::with(Config {
        password_failures_per_address: 2,
        password_failures_per_room: 4,
        password_backoff_max: Duration::from_secs(8),
        ..Config::default()
    });
    let a = h.connect();
    h.send(
        a,
        r#"{"type":"join","room":"r","name":"A","password":"pw"}"#,
    );
    h.out.clear();
    let x = "203.0.113.1";
    assert_eq!(join_with_password(&mut h, x, "1"), "wrong-password");
    assert_eq!(join_with_password(&mut h, x, "2"), "wrong-password");
    assert_eq!(join_with_password(&mut h, x, "pw"), "rate-limited");
    // The wait doubles: 1 s after the 2nd failure, 2 s after the 3rd, ... up to 8 s.
    h.advance(Duration::from_millis(1100));
    assert_eq!(join_with_password(&mut h, x, "3"), "wrong-password");
    h.advance(Duration::from_millis(1100));
    assert_eq!(join_with_password(&mut h, x, "pw"), "rate-limited");
    h.advance(Duration::from_millis(1000));
    // The room has had 3 failures; one more from anyone locks it for strangers.
    assert_eq!(
        join_with_password(&mut h, "203.0.113.2", "4"),
        "wrong-password"
    );
    assert_eq!(
        join_with_password(&mut h, "203.0.113.3", "pw"),
        "rate-limited"
    );
    // a's address is known to the room: its people get back in.
    assert_eq!(join_with_password(&mut h, "192.0.2.1", "pw"), "welcome");
    // Other rooms are not affected.
    let c = h.connect_from(ip("203.0.113.3"));
    h.join_as(c, "other", "C");
    assert!(
        h.closes().is_empty(),
        "refusals are not errors of the client"
    );
    // Failures are forgotten after a quiet while.
    h.advance(Duration::from_secs(15 * 60));
    assert_eq!(join_with_password(&mut h, x, "pw"), "welcome");
}

#[test]
fn a_wrong_password_never_learns_that_the_room_is_full() {
    let mut h = Harness::with(Config {
        room_capacity: 1,
        ..Config::default()
    });
    let a = h.connect();
    h.send(
        a,
        r#"{"type":"join","room":"r","name":"A","password":"pw"}"#,
    );
    h.out.clear();
    assert_eq!(
        join_with_password(&mut h, "203.0.113.1", "nope"),
        "wrong-password"
    );
    assert_eq!(join_with_password(&mut h, "203.0.113.1", "pw"), "room-full");
}

#[test]
fn address_and_room_records_are_bounded() {
    let mut h = Harness::with(Config {
        tracked_addresses: 10,
        password_failures_per_room: 1_000_000,
        ..Config::default()
    });
    let a = h.connect();
    h.send(
        a,
        r#"{"type":"join","room":"r","name":"A","password":"pw"}"#,
    );
    for i in 0..200u32 {
        let addr = format!("10.{}.{}.1", i / 250, i % 250);
        assert_eq!(join_with_password(&mut h, &addr, "guess"), "wrong-password");
        let conns: Vec<ConnId> = h.rooms.conns.keys().copied().filter(|&c| c != a).collect();
        for c in conns {
            h.disconnect(c);
        }
        assert!(h.rooms.addrs.len() <= 10, "{}", h.rooms.addrs.len());
    }
    for i in 0..50 {
        let keeper = h.connect();
        h.send(
            keeper,
            &format!(r#"{{"type":"join","room":"room{i}","name":"K","password":"x"}}"#),
        );
        let c = h.connect_from(ip(&format!("10.9.9.{i}")));
        h.send(
            c,
            &format!(r#"{{"type":"join","room":"room{i}","name":"A","password":"y"}}"#),
        );
        assert_eq!(h.error_code(c), "wrong-password");
        h.disconnect(c);
        h.out.clear();
    }
    assert!(h.rooms.room_failures.len() <= 10);
    assert!(h.rooms.tracked_count() <= 20);
    // Idle records go by themselves.
    h.advance(Duration::from_secs(16 * 60));
    assert_eq!(
        h.rooms.tracked_count(),
        1,
        "only the address still connected"
    );
}

#[test]
fn names_are_stored_and_announced_normalized() {
    let mut h = Harness::new();
    let (a, _) = h.joined("r", "A");
    let b = h.connect();
    h.send(b, r#"{"type":"join","room":"r","name":" Zoe\u0308   B "}"#);
    assert_eq!(h.take_for(a)[0]["name"], "Zo\u{eb} B");
    let c = h.connect();
    h.send(c, r#"{"type":"join","room":"r","name":"C"}"#);
    assert_eq!(h.take_for(c)[0]["peers"][1]["name"], "Zo\u{eb} B");
    for bad in [r#"B\u202e"#, r#"B\u200b"#, r#"B\u2029"#] {
        let d = h.connect();
        h.send(
            d,
            &format!(r#"{{"type":"join","room":"r","name":"{bad}"}}"#),
        );
        assert_eq!(h.error_code(d), "invalid-name");
    }
}

#[test]
fn room_updates_must_be_delivered() {
    let mut h = Harness::new();
    let (a, _) = h.joined("r", "A");
    let b = h.connect();
    h.send(b, r#"{"type":"join","room":"r","name":"B"}"#);
    h.send(b, r#"{"type":"leave"}"#);
    h.send(b, r#"{"type":"leave"}"#);
    let kinds: Vec<(ConnId, &str)> = h
        .out
        .iter()
        .map(|o| match o {
            Output::Update { conn, .. } => (*conn, "update"),
            Output::Send { conn, .. } => (*conn, "send"),
            Output::Relay { conn, .. } => (*conn, "relay"),
            Output::Close { conn, .. } => (*conn, "close"),
            Output::Cluster(_) => unreachable!("a lone server asks no cluster"),
            Output::Sfu(_) => unreachable!("a server without an SFU asks nothing of one"),
        })
        .collect();
    // peer-joined to a, welcome to b, peer-left to a: updates; the error to b: droppable.
    assert_eq!(
        kinds,
        vec![(a, "update"), (b, "update"), (a, "update"), (b, "send")]
    );
}

#[test]
fn decoding_needs_no_state() {
    assert!(matches!(decode("{", 100), Inbound::Invalid(_)));
    assert!(matches!(
        decode(&"x".repeat(101), 100),
        Inbound::TooLarge(101)
    ));
    assert!(matches!(
        decode(r#"{"type":"leave"}"#, 100),
        Inbound::Message(ClientMessage::Leave)
    ));
}

fn with_sfu(secret: &str) -> Harness {
    Harness::with(Config {
        sfu: Some(crate::Sfu {
            url: "janus+ws://sfu.example:8188".into(),
            secret: secret.into(),
            above: 6,
            admin_key: None,
        }),
        ..Config::default()
    })
}

/// The `sfu` of the `welcome` `name` gets on joining `room`.
fn welcome_sfu(h: &mut Harness, room: &str, name: &str) -> Value {
    let c = h.connect();
    h.send(
        c,
        &format!(r#"{{"type":"join","room":"{room}","name":"{name}"}}"#),
    );
    let w = h.take_for(c);
    assert_eq!(w[0]["type"], "welcome", "{w:?}");
    w[0].get("sfu").cloned().unwrap_or(Value::Null)
}

/// The SFU work in the outputs, removed from them.
fn sfu_ops(h: &mut Harness) -> Vec<SfuOp> {
    let mut ops = Vec::new();
    h.out.retain(|o| match o {
        Output::Sfu(op) => {
            ops.push(op.clone());
            false
        }
        _ => true,
    });
    ops
}

/// The server makes each member's VideoRoom room at its join, and removes it when the member leaves (at once on `leave`, after the
/// wait when its connection went), so that nobody stays in it unseen; its secret is the
/// server's alone, never in a `welcome`, and different for another member or room.
#[test]
fn each_member_s_sfu_room_is_made_at_its_join_and_dropped_when_it_leaves() {
    let mut h = with_sfu("a-secret-of-sixteen+");
    let made = |ops: &[SfuOp]| match ops {
        [SfuOp::Make { room, token }] if room == "big" => token.clone(),
        _ => panic!("{ops:?}"),
    };
    let (ann, bob) = (h.connect(), h.connect());
    h.send(ann, r#"{"type":"join","room":"big","name":"Ann"}"#);
    let anns = made(&sfu_ops(&mut h));
    h.send(bob, r#"{"type":"join","room":"big","name":"Bob"}"#);
    let bobs = made(&sfu_ops(&mut h));
    assert_ne!(anns, bobs);
    h.send(ann, r#"{"type":"leave"}"#);
    let drop = |token: &str, at_once| SfuOp::Drop {
        room: "big".into(),
        token: token.into(),
        at_once,
    };
    assert_eq!(sfu_ops(&mut h), [drop(&anns, true)], "only Ann's room goes");
    assert_eq!(
        h.rooms.sfu_members("big").tokens,
        std::slice::from_ref(&bobs)
    );
    h.disconnect(bob);
    assert_eq!(sfu_ops(&mut h), [drop(&bobs, false)], "after the wait");
    assert!(h.rooms.sfu_members("big").tokens.is_empty());

    let sfu = h.rooms.config().sfu.clone().unwrap();
    let secret = sfu.secret("big", &anns);
    assert_eq!(secret.len(), 32);
    assert_ne!(secret, sfu.secret("bigger", &anns));
    assert_ne!(secret, sfu.secret("big", &bobs));
    assert_ne!(secret, sfu.info("big", &anns).pin);
    assert!(!welcome_sfu(&mut h, "big", "Cy")
        .to_string()
        .contains(&secret));
    // Without an SFU there is no such work.
    let mut plain = Harness::new();
    let di = plain.connect();
    plain.send(di, r#"{"type":"join","room":"big","name":"Di"}"#);
    assert_eq!(sfu_ops(&mut plain), []);
}

/// With an SFU, `welcome` names it with the member's own VideoRoom room and PIN, keyed on the
/// room's name, the member's token and the server's secret: different for every member (so
/// nobody else's subscription can be opened there), the same on a node with the same secret,
/// different with another secret.
#[test]
fn welcome_names_the_member_s_own_sfu_room_keyed_on_the_secret() {
    let mut h = with_sfu("a-secret-of-sixteen+");
    let sfu = welcome_sfu(&mut h, "big", "Ann");
    assert!(
        sfu.get("feed").is_none(),
        "no feed to publish under: Janus picks it ({sfu})"
    );
    assert_eq!(sfu["url"], "janus+ws://sfu.example:8188");
    let (room, pin) = (sfu["room"].as_u64().unwrap(), sfu["pin"].as_str().unwrap());
    let token = sfu["token"].as_str().unwrap();
    assert!((1..=confab_protocol::MAX_SFU_ROOM).contains(&room));
    assert_eq!(pin.len(), 32);
    let bobs = welcome_sfu(&mut h, "big", "Bob");
    assert_ne!(bobs["room"], sfu["room"], "a room of one's own");
    assert_ne!(bobs["pin"], sfu["pin"]);
    let other_node = with_sfu("a-secret-of-sixteen+")
        .rooms
        .config()
        .sfu
        .clone()
        .unwrap();
    let there = other_node.info("big", token);
    assert_eq!(
        (there.room, there.pin.as_str()),
        (room, pin),
        "a node with the same secret agrees"
    );
    let other_room = other_node.info("bigger", token);
    assert_ne!(other_room.room, room);
    assert_ne!(other_room.pin, pin);
    let guessed = with_sfu("another-secret-of-16")
        .rooms
        .config()
        .sfu
        .clone()
        .unwrap();
    let guessed = guessed.info("big", token);
    assert_ne!(guessed.room, room);
    assert_ne!(guessed.pin, pin);
    // Without an SFU, welcome has no such field.
    assert!(welcome_sfu(&mut Harness::new(), "big", "Flo").is_null());
}

/// Each membership gets a token of its own at the SFU (random: nobody can guess another's,
/// nor its room; back without its rejoin token, a member is a new one there too). The server makes the member's VideoRoom
/// room at the join, and drops it when the member leaves.
#[test]
fn sfu_seats_are_each_members_own_and_dropped_when_they_leave() {
    let mut h = with_sfu("a-secret-of-sixteen+");
    let join = |h: &mut Harness, name: &str| {
        let c = h.connect();
        h.send(
            c,
            &format!(r#"{{"type":"join","room":"big","name":"{name}"}}"#),
        );
        let w = h.take_for(c);
        assert_eq!(w[0]["type"], "welcome", "{w:?}");
        let token = w[0]["sfu"]["token"].as_str().expect("a token").to_owned();
        assert_eq!(token.len(), 32);
        let ops = sfu_ops(h);
        assert_eq!(
            ops,
            [SfuOp::Make {
                room: "big".into(),
                token: token.clone()
            }]
        );
        (c, token)
    };
    let (ann, token) = join(&mut h, "Ann");
    let (_bob, bobs) = join(&mut h, "Bob");
    let (_cy, cys) = join(&mut h, "Cy");
    assert!(token != bobs && bobs != cys && token != cys);
    assert_eq!(h.rooms.sfu_members("big").tokens.len(), 3);

    // A connection that goes waits (its client's media may still flow); one who says `leave`
    // goes at once.
    h.disconnect(ann);
    assert_eq!(
        sfu_ops(&mut h),
        [SfuOp::Drop {
            room: "big".into(),
            token: token.clone(),
            at_once: false,
        }]
    );
    assert!(!h.rooms.sfu_members("big").tokens.contains(&token));
    // Back: a new member at the SFU too.
    let (ann, new_token) = join(&mut h, "Ann");
    assert_ne!(new_token, token);
    h.send(ann, r#"{"type":"leave"}"#);
    assert_eq!(
        sfu_ops(&mut h),
        [SfuOp::Drop {
            room: "big".into(),
            token: new_token,
            at_once: true,
        }]
    );
    // Without an SFU: no seats.
    assert!(Harness::new().rooms.sfu_members("big").tokens.is_empty());
}

/// SFU ops and seats are logged (the shell warns with them): a member's token lets whoever
/// holds it into the VideoRoom room, so no `Debug` of them shows it.
#[test]
fn sfu_token_in_logs() {
    let token = "Tok3nThatMustNotBeLogged".to_string();
    let seat = SfuSeat {
        token: token.clone(),
    };
    let printed = [
        format!(
            "{:?}",
            SfuOp::Make {
                room: "r".into(),
                token: token.clone(),
            }
        ),
        format!(
            "{:?}",
            SfuOp::Drop {
                room: "r".into(),
                token: token.clone(),
                at_once: true,
            }
        ),
        format!("{seat:?}"),
        format!(
            "{:?}",
            SfuMembers {
                tokens: vec![token.clone()],
            }
        ),
        format!(
            "{:?}",
            Seat {
                room: "r".into(),
                id: PeerId("p".into()),
                name: "Ann".into(),
                password: None,
                sfu: Some(seat.clone()),
                rejoin: None,
                replaces: None,
            }
        ),
    ];
    for p in &printed {
        assert!(!p.contains(&token), "a token in {p}");
        assert!(p.contains("<hidden>") || p.contains("tokens: 1"), "{p}");
    }
}

/// Joins on a fresh connection (presenting `rejoin`, if any) and returns (conn, welcome).
fn welcome_with_token(
    h: &mut Harness,
    room: &str,
    name: &str,
    rejoin: Option<&str>,
) -> (ConnId, Value) {
    let c = h.connect();
    let token = rejoin
        .map(|t| format!(r#","rejoin":"{t}""#))
        .unwrap_or_default();
    h.send(
        c,
        &format!(r#"{{"type":"join","room":"{room}","name":"{name}"{token}}}"#),
    );
    let welcome = h.take_for(c);
    assert_eq!(welcome[0]["type"], "welcome", "{welcome:?}");
    (c, welcome[0].clone())
}

/// Joins on a fresh connection and returns (conn, id, rejoin token).
fn join_with_token(
    h: &mut Harness,
    room: &str,
    name: &str,
    rejoin: Option<&str>,
) -> (ConnId, String, String) {
    let (c, welcome) = welcome_with_token(h, room, name, rejoin);
    let id = welcome["id"].as_str().unwrap().to_owned();
    let token = welcome["rejoin"]
        .as_str()
        .expect("a rejoin token")
        .to_owned();
    assert_eq!(token.len(), confab_protocol::REJOIN_TOKEN_LEN);
    (c, id, token)
}

#[test]
fn a_rejoin_replaces_the_dead_connection_at_once() {
    // Room of two, full: Ada's connection died without a close (the server cannot know yet).
    let mut h = Harness::with(Config {
        room_capacity: 2,
        ..Config::default()
    });
    let (bob, _) = h.joined("r", "Bob");
    let (ghost, old_id, token) = join_with_token(&mut h, "r", "Ada", None);
    h.out.clear();
    // Ada is back on a new connection with her token: the ghost goes first, then she is seated
    // in its seat under a new id.
    let (_, new_id, new_token) = join_with_token(&mut h, "r", "Ada", Some(&token));
    assert_ne!(new_id, old_id);
    assert_ne!(new_token, token, "every membership has its own token");
    assert_eq!(h.closes(), vec![(ghost, CLOSE_REPLACED)]);
    let told: Vec<(String, String)> = h
        .take_for(bob)
        .iter()
        .map(|m| {
            (
                m["type"].as_str().unwrap().into(),
                m["id"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert_eq!(
        told,
        [("peer-left".into(), old_id), ("peer-joined".into(), new_id)]
    );
    // The old token named a membership that is gone: presenting it again does nothing.
    h.out.clear();
    let c = h.connect();
    h.send(
        c,
        &format!(r#"{{"type":"join","room":"r","name":"Eve","rejoin":"{token}"}}"#),
    );
    assert_eq!(h.error_code(c), "room-full");
    assert!(h.closes().is_empty());
}

/// The `sfu` token of a `welcome` message.
fn sfu_token(m: &Value) -> String {
    m["sfu"]["token"].as_str().expect("an SFU token").to_owned()
}

/// Ada back on a new connection with her rejoin token (her old one not noticed dead yet) keeps
/// her place at the SFU: the same token, so her VideoRoom room, what she publishes there and
/// the subscriptions she handed out flow on. Her old membership's drop is asked for after the
/// wait as for any connection that went, and the shell lets it be: a member holds the token.
#[test]
fn a_rejoin_keeps_its_place_at_the_sfu() {
    let mut h = with_sfu("a-secret-of-sixteen+");
    let (_bob, _) = h.joined("big", "Bob");
    let (c, w) = welcome_with_token(&mut h, "big", "Ada", None);
    let (token, rejoin) = (sfu_token(&w), w["rejoin"].as_str().unwrap().to_owned());
    sfu_ops(&mut h);
    let (_, w) = welcome_with_token(&mut h, "big", "Ada", Some(&rejoin));
    assert_eq!(sfu_token(&w), token, "the same place at the SFU");
    assert_eq!(h.closes(), vec![(c, CLOSE_REPLACED)]);
    assert_eq!(
        sfu_ops(&mut h),
        [
            SfuOp::Drop {
                room: "big".into(),
                token: token.clone(),
                at_once: false,
            },
            SfuOp::Make {
                room: "big".into(),
                token: token.clone(),
            },
        ]
    );
    let held = h.rooms.sfu_members("big").tokens;
    assert_eq!(held.iter().filter(|t| **t == token).count(), 1, "held once");
}

/// Mallory guesses rejoin tokens, or presents her own in another room: she gets a place at the
/// SFU of her own, never Ada's.
#[test]
fn forged_rejoin_takes_no_place_at_the_sfu() {
    let mut h = with_sfu("a-secret-of-sixteen+");
    let adas = sfu_token(&welcome_with_token(&mut h, "big", "Ada", None).1);
    let (_, w) = welcome_with_token(&mut h, "other", "Mallory", None);
    let (hers, rejoin) = (sfu_token(&w), w["rejoin"].as_str().unwrap().to_owned());
    for guess in [
        "00000000000000000000000000000000".to_owned(),
        "ffffffffffffffffffffffffffffffff".to_owned(),
        rejoin,
    ] {
        let got = sfu_token(&welcome_with_token(&mut h, "big", "Mallory", Some(&guess)).1);
        assert!(got != adas && got != hers, "a place of her own");
    }
    assert!(h.closes().is_empty(), "nobody replaced");
}

#[test]
fn forged_rejoin_token_drops_nobody() {
    let mut h = Harness::new();
    let (ada, ..) = join_with_token(&mut h, "r", "Ada", None);
    h.out.clear();
    // Someone who knows the room guesses (or makes up) a token: joined as a newcomer, nobody
    // dropped.
    for guess in [
        "00000000000000000000000000000000",
        "ffffffffffffffffffffffffffffffff",
    ] {
        join_with_token(&mut h, "r", "Mallory", Some(guess));
    }
    assert!(h.closes().is_empty());
    assert!(h.take_for(ada).iter().all(|m| m["type"] == "peer-joined"));
    // A malformed one is refused as a bad message, with words.
    let c = h.connect();
    h.send(
        c,
        r#"{"type":"join","room":"r","name":"M","rejoin":"nothex"}"#,
    );
    assert_eq!(h.error_code(c), "bad-message");
}

#[test]
fn rejoin_token_of_another_room_drops_nobody() {
    // A token names a membership of one room: presented for another it replaces nothing.
    let mut h = Harness::new();
    let (ada, _, token) = join_with_token(&mut h, "one", "Ada", None);
    h.out.clear();
    join_with_token(&mut h, "two", "Ada", Some(&token));
    assert!(h.closes().is_empty());
    assert!(h.take_for(ada).is_empty(), "Ada is still in room one");
}

#[test]
fn a_live_connection_presenting_its_own_token_keeps_itself() {
    // Leave, then join again on the same connection with its own token: nothing to replace.
    let mut h = Harness::new();
    let (c, _, token) = join_with_token(&mut h, "r", "Ada", None);
    h.send(c, r#"{"type":"leave"}"#);
    h.out.clear();
    h.send(
        c,
        &format!(r#"{{"type":"join","room":"r","name":"Ada","rejoin":"{token}"}}"#),
    );
    assert_eq!(h.take_for(c)[0]["type"], "welcome");
    assert!(h.closes().is_empty());
}

#[test]
fn ping_is_answered_joined_or_not() {
    let mut h = Harness::new();
    let c = h.connect();
    h.send(c, r#"{"type":"ping"}"#);
    assert_eq!(h.take_for(c), [serde_json::json!({"type": "pong"})]);
    let (c, _) = h.joined("r", "Ada");
    h.send(c, r#"{"type":"ping"}"#);
    assert_eq!(h.take_for(c), [serde_json::json!({"type": "pong"})]);
}

/// A seat travels through the cluster as its token; one from an older node (`FEED:TOKEN`)
/// reads the same, and anything else is no seat.
#[test]
fn sfu_seat_reads_an_older_node_s_encoding() {
    let seat = SfuSeat {
        token: "abc123".into(),
    };
    assert_eq!(SfuSeat::decode(&seat.encode()), Some(seat.clone()));
    assert_eq!(SfuSeat::decode("4242:abc123"), Some(seat));
    for bad in ["", "4242:", "a b", "x\"y", &"t".repeat(65)] {
        assert_eq!(SfuSeat::decode(bad), None, "{bad:?}");
    }
}
