//! The signaling server's room logic (`confab_rooms::Rooms`) under hostile clients: several
//! connections from a few addresses connect, send any text (joins, signals, leaves, garbage),
//! binary frames, disconnect, and time passes. The input is a script of two-byte operations
//! (see the match); a text frame follows its operation, length-prefixed. Small limits make
//! every refusal reachable. Nothing may panic, every frame the server sends is a message its
//! clients can decode, it only sends to connections it holds, and it never holds more than
//! its limits.
#![no_main]

use confab_protocol::ServerMessage;
use confab_rooms::{Config, ConnId, Output, Rooms};
use libfuzzer_sys::fuzz_target;
use std::collections::BTreeSet;
use std::net::IpAddr;
use std::time::{Duration, Instant};

const ADDRS: [&str; 4] = ["192.0.2.1", "192.0.2.2", "2001:db8::1", "2001:db8::2"];

fuzz_target!(|data: &[u8]| {
    let config = Config {
        room_capacity: 3,
        max_connections: 6,
        max_rooms: 2,
        max_message_bytes: 512,
        rate_burst: 20.0,
        error_budget: 5.0,
        join_burst: 3.0,
        address_join_burst: 6.0,
        password_failures_per_address: 2,
        password_failures_per_room: 4,
        tracked_addresses: 3,
        departed_per_room: 2,
        ..Config::default()
    };
    let limits = config.clone();
    let mut rooms = Rooms::new(config, [7; 32]);
    let mut now = Instant::now();
    let mut live: Vec<ConnId> = Vec::new();
    let mut out = Vec::new();
    let mut rest = data;
    while let [op, arg, tail @ ..] = rest {
        rest = tail;
        let pick = |live: &[ConnId]| live.get(usize::from(*arg) % live.len().max(1)).copied();
        match op % 6 {
            0 => {
                let ip: IpAddr = ADDRS[usize::from(*arg) % ADDRS.len()].parse().unwrap();
                if let Ok(c) = rooms.connect(ip, now) {
                    live.push(c);
                }
            }
            1 | 2 => {
                let len = usize::from(*arg).min(rest.len());
                let (frame, next) = rest.split_at(len);
                rest = next;
                let Some(&who) = frame.first() else { continue };
                let Some(conn) = live.get(usize::from(who) % live.len().max(1)).copied() else {
                    continue;
                };
                match std::str::from_utf8(&frame[1..]) {
                    Ok(text) => rooms.receive(conn, text, now, &mut out),
                    Err(_) => rooms.reject_unreadable(conn, now, &mut out),
                }
            }
            3 => {
                if let Some(conn) = pick(&live) {
                    rooms.receive_binary(conn, now, &mut out);
                }
            }
            4 => {
                if let Some(conn) = pick(&live) {
                    live.retain(|&c| c != conn);
                    rooms.disconnect(conn, now, &mut out);
                }
            }
            _ => {
                now += Duration::from_millis(u64::from(*arg) * 250);
                rooms.tick(now, &mut out);
            }
        }
        let open: BTreeSet<ConnId> = live.iter().copied().collect();
        for o in out.drain(..) {
            match o {
                Output::Send { conn, text }
                | Output::Update { conn, text }
                | Output::Relay { conn, text, .. } => {
                    assert!(
                        open.contains(&conn),
                        "a frame to a connection it does not hold"
                    );
                    if let Err(e) = ServerMessage::decode(&text) {
                        panic!("the server sent a frame its clients cannot decode ({e}): {text}");
                    }
                }
                Output::Close { conn, .. } => live.retain(|&c| c != conn),
                Output::Cluster(op) => panic!("a lone server asked for cluster work: {op:?}"),
                Output::Sfu(op) => panic!("a server without an SFU asked for SFU work: {op:?}"),
            }
        }
        assert!(rooms.connection_count() <= limits.max_connections);
        assert!(rooms.room_count() <= limits.max_rooms);
    }
});
