//! The call flow (`confab_call::CallCore`) driven by a hostile room: peers that join, leave and
//! rejoin, and send any call-flow signal in any order, mixed with the user's own commands, link
//! events and time. The input is a script of one-byte operations (see `step`); a signal's JSON
//! follows its operation, length-prefixed. Nothing may panic, and we never ring, signal or link
//! to ourselves.
#![no_main]

use confab_call::{Action, CallCore};
use confab_protocol::call::CallSignal;
use confab_protocol::{PeerId, PeerInfo};
use libfuzzer_sys::fuzz_target;

const IDS: [&str; 5] = ["a", "b", "c", "d", "m"];

fuzz_target!(|data: &[u8]| {
    let mut core = CallCore::new("s-me".into(), "k-me".into(), data.first() == Some(&1));
    let mut me = PeerId::from("m");
    let mut now = 0u64;
    core.welcome(
        me.clone(),
        vec![
            PeerInfo {
                id: "a".into(),
                name: "A".into(),
            },
            PeerInfo {
                id: "b".into(),
                name: "B".into(),
            },
        ],
        now,
    );
    check(&mut core, &me);
    let mut rest = data.get(1..).unwrap_or(&[]);
    while let [op, arg, tail @ ..] = rest {
        rest = tail;
        let id = PeerId::from(IDS[usize::from(*arg) % IDS.len()]);
        match op % 18 {
            0 => core.peer_joined(id, format!("P{arg}"), now),
            1 => core.peer_left(&id, now),
            2 => {
                let len = usize::from(*arg).min(rest.len());
                let (json, next) = rest.split_at(len);
                rest = next;
                if let Ok(sig) = serde_json::from_slice::<CallSignal>(json) {
                    let from = PeerId::from(IDS[len % 4]);
                    core.signal(&from, sig, now);
                }
            }
            3 => core.link_connected(&id, now),
            4 => core.link_failed(&id, now),
            5 => drop(core.call(Some(&id), now)),
            6 => drop(core.call(None, now)),
            7 => drop(core.accept(&id, now)),
            8 => drop(core.decline(&id, now)),
            9 => core.hang_up(now),
            10 => core.leave(now),
            11 => core.set_media(arg & 1 != 0, arg & 2 != 0),
            12 | 13 => {
                now += u64::from(*arg) * 500;
                core.tick(now);
            }
            14 => core.disconnected(),
            15 => {
                // A new id from the server; a hostile one may hand out an id already in the
                // room, or list us among the others.
                me = if arg & 0x80 != 0 {
                    PeerId::from(IDS[usize::from(*arg) % IDS.len()])
                } else {
                    PeerId::from(format!("m{arg}").as_str())
                };
                let peers = IDS[..usize::from(*arg >> 4) % 6]
                    .iter()
                    .map(|&i| PeerInfo {
                        id: i.into(),
                        name: i.to_uppercase(),
                    })
                    .collect();
                core.welcome(me.clone(), peers, now);
            }
            16 => drop(core.call_when_present(now)),
            _ => core.set_admit_all(arg & 1 != 0),
        }
        check(&mut core, &me);
        let _ = core.participants();
    }
});

/// What the core asks for: never a signal or a link to ourselves.
fn check(core: &mut CallCore, me: &PeerId) {
    for a in core.drain() {
        match &a {
            Action::Send { to, .. } => assert_ne!(to, me, "a signal to ourselves: {a:?}"),
            Action::OpenLink { peer, .. } => assert_ne!(peer, me, "a link to ourselves: {a:?}"),
            _ => {}
        }
    }
}
