//! Several call cores wired together through a simulated room: signals are delivered in order,
//! and a link comes up once both ends have opened it (one of them as offerer).

use super::*;
use crate::Millis;
use std::collections::{BTreeSet, VecDeque};

struct Net {
    cores: BTreeMap<PeerId, CallCore>,
    names: BTreeMap<PeerId, String>,
    now: Millis,
    queue: VecDeque<(PeerId, PeerId, CallSignal)>,
    /// (who, with whom, offerer)
    opened: Vec<(PeerId, PeerId, bool)>,
    /// (who, from, to)
    rebound: Vec<(PeerId, PeerId, PeerId)>,
    closed: Vec<(PeerId, PeerId)>,
    notices: Vec<(PeerId, Notice)>,
    links: BTreeSet<(PeerId, PeerId)>,
}

fn id(s: &str) -> PeerId {
    PeerId::from(s)
}

impl Net {
    fn new() -> Self {
        Net {
            cores: BTreeMap::new(),
            names: BTreeMap::new(),
            now: 1_000,
            queue: VecDeque::new(),
            opened: Vec::new(),
            rebound: Vec::new(),
            closed: Vec::new(),
            notices: Vec::new(),
            links: BTreeSet::new(),
        }
    }

    /// Joins `who` to the room (ids order the roles: "a" < "b" < "c").
    fn join(&mut self, who: &str, auto_accept: bool) {
        let me = id(who);
        let peers: Vec<PeerInfo> = self
            .cores
            .keys()
            .map(|p| PeerInfo {
                id: p.clone(),
                name: self.names[p].clone(),
            })
            .collect();
        let mut core = CallCore::new(
            format!("session-{who}"),
            format!("secret-{who}"),
            auto_accept,
        );
        core.welcome(me.clone(), peers, self.now);
        self.cores.insert(me.clone(), core);
        self.names.insert(me.clone(), who.to_uppercase());
        let others: Vec<PeerId> = self.cores.keys().filter(|p| **p != me).cloned().collect();
        for o in others {
            self.cores
                .get_mut(&o)
                .unwrap()
                .peer_joined(me.clone(), who.to_uppercase(), self.now);
        }
        self.run();
    }

    fn core(&mut self, who: &str) -> &mut CallCore {
        self.cores.get_mut(&id(who)).unwrap()
    }

    /// Delivers everything until quiet; links come up when both ends opened them.
    fn run(&mut self) {
        for _ in 0..1000 {
            let ids: Vec<PeerId> = self.cores.keys().cloned().collect();
            for me in ids {
                let actions = self.cores.get_mut(&me).unwrap().drain();
                for a in actions {
                    match a {
                        Action::Send { to, signal } => {
                            self.queue.push_back((me.clone(), to, signal))
                        }
                        Action::OpenLink {
                            peer,
                            offerer,
                            polite,
                        } => {
                            assert_eq!(polite, me > peer, "the larger id is polite");
                            self.opened.push((me.clone(), peer, offerer))
                        }
                        Action::CloseLink { peer } => {
                            self.closed.push((me.clone(), peer.clone()));
                            self.links.remove(&(me.clone(), peer));
                        }
                        Action::Notice { notice } => self.notices.push((me.clone(), notice)),
                        Action::RebindLink { from, to } => {
                            self.rebound.push((me.clone(), from.clone(), to.clone()));
                            if self.links.remove(&(me.clone(), from.clone())) {
                                self.links.insert((me.clone(), to));
                            }
                        }
                        Action::Changed => {}
                    }
                }
            }
            // Links: both ends opened, exactly one offerer.
            let opened = self.opened.clone();
            for (a, b, _) in &opened {
                let both = opened.iter().any(|(x, y, _)| x == b && y == a);
                if both && !self.links.contains(&(a.clone(), b.clone())) {
                    let offerers = opened
                        .iter()
                        .filter(|(x, y, o)| *o && ((x == a && y == b) || (x == b && y == a)))
                        .count();
                    assert_eq!(offerers, 1, "one offerer for {a}-{b}: {opened:?}");
                    self.links.insert((a.clone(), b.clone()));
                    let now = self.now;
                    self.cores.get_mut(a).unwrap().link_connected(b, now);
                }
            }
            match self.queue.pop_front() {
                Some((from, to, sig)) => {
                    let now = self.now;
                    if let Some(c) = self.cores.get_mut(&to) {
                        c.signal(&from, sig, now);
                    }
                }
                None => {
                    if self.cores.values().all(|c| c.out.is_empty()) {
                        return;
                    }
                }
            }
        }
        panic!("the network never went quiet");
    }

    fn phase(&self, who: &str, of: &str) -> Phase {
        self.cores[&id(who)]
            .participants()
            .into_iter()
            .find(|p| p.id == id(of))
            .map(|p| p.phase)
            .unwrap()
    }

    fn connected(&self, a: &str, b: &str) -> bool {
        self.phase(a, b) == Phase::Connected && self.phase(b, a) == Phase::Connected
    }

    fn notices_of(&self, who: &str) -> Vec<&Notice> {
        self.notices
            .iter()
            .filter(|(w, _)| *w == id(who))
            .map(|(_, n)| n)
            .collect()
    }

    fn advance(&mut self, ms: Millis) {
        self.now += ms;
        let now = self.now;
        for c in self.cores.values_mut() {
            c.tick(now);
        }
        self.run();
    }
}

#[test]
fn call_ring_accept_connect() {
    let mut n = Net::new();
    n.join("a", false);
    n.join("b", false);
    let now = n.now;
    n.core("a").call(None, now).unwrap();
    n.run();
    assert_eq!(n.phase("a", "b"), Phase::Ringing);
    assert_eq!(n.phase("b", "a"), Phase::Incoming);
    assert!(matches!(
        n.notices_of("b")[..],
        [Notice::IncomingCall { .. }]
    ));
    assert!(n.core("a").in_call() && !n.core("b").in_call());
    n.core("b").accept(&id("a"), now).unwrap();
    n.run();
    assert!(n.connected("a", "b"));
    assert!(
        n.opened.contains(&(id("a"), id("b"), true)),
        "the ringer offers"
    );
    assert!(n.core("b").in_call());
    // Both see each other in the call.
    assert!(n.core("a").participants()[0].in_call);
}

#[test]
fn decline_ends_the_callers_call() {
    let mut n = Net::new();
    n.join("a", false);
    n.join("b", false);
    let now = n.now;
    n.core("a").call(Some(&id("b")), now).unwrap();
    n.run();
    n.core("b").decline(&id("a"), now).unwrap();
    n.run();
    assert_eq!(n.phase("a", "b"), Phase::Idle);
    assert!(!n.core("a").in_call());
    assert!(n
        .notices_of("a")
        .iter()
        .any(|x| matches!(x, Notice::Declined { .. })));
    assert!(n
        .notices_of("a")
        .iter()
        .any(|x| matches!(x, Notice::CallEnded)));
    assert!(n.opened.is_empty());
}

#[test]
fn glare_ends_in_one_call() {
    let mut n = Net::new();
    n.join("a", false);
    n.join("b", false);
    let now = n.now;
    // Both call before either ring arrives.
    n.core("a").call(None, now).unwrap();
    n.core("b").call(None, now).unwrap();
    n.run();
    assert!(n.connected("a", "b"));
    let offers: Vec<_> = n.opened.iter().filter(|(_, _, o)| *o).collect();
    assert_eq!(
        offers,
        vec![&(id("a"), id("b"), true)],
        "the smaller id offers"
    );
    assert!(n
        .notices
        .iter()
        .all(|(_, x)| !matches!(x, Notice::IncomingCall { .. })));
}

#[test]
fn three_party_mesh_fills_in() {
    let mut n = Net::new();
    for p in ["a", "b", "c"] {
        n.join(p, false);
    }
    let now = n.now;
    n.core("a").call(None, now).unwrap();
    n.run();
    n.core("b").accept(&id("a"), now).unwrap();
    n.run();
    n.core("c").accept(&id("a"), now).unwrap();
    n.run();
    assert!(
        n.connected("a", "b") && n.connected("a", "c") && n.connected("b", "c"),
        "{:?}",
        n.opened
    );
}

#[test]
fn newcomer_joins_a_running_call() {
    let mut n = Net::new();
    n.join("a", true);
    n.join("b", true);
    let now = n.now;
    n.core("a").call(None, now).unwrap();
    n.run();
    assert!(n.connected("a", "b"));
    n.join("c", false);
    // c sees who is in the call and calls them; the call members accept on their own.
    assert!(n.core("c").participants().iter().all(|p| p.in_call));
    n.core("c").call(None, now).unwrap();
    n.run();
    assert!(n.connected("c", "a") && n.connected("c", "b"));
}

#[test]
fn hang_up_in_a_three_way_call_leaves_the_others_talking() {
    let mut n = Net::new();
    for p in ["a", "b", "c"] {
        n.join(p, true);
    }
    let now = n.now;
    n.core("b").call(None, now).unwrap();
    n.run();
    assert!(n.connected("a", "b") && n.connected("a", "c") && n.connected("b", "c"));
    n.core("c").hang_up(now);
    n.run();
    assert!(!n.core("c").in_call());
    assert!(n.connected("a", "b"));
    assert_eq!(n.phase("a", "c"), Phase::Idle);
    assert!(n.closed.contains(&(id("c"), id("a"))) && n.closed.contains(&(id("a"), id("c"))));
    // Then b hangs up: a's call is over.
    n.core("b").hang_up(now);
    n.run();
    assert!(!n.core("a").in_call());
}

#[test]
fn unanswered_ring_times_out() {
    let mut n = Net::new();
    n.join("a", false);
    n.join("b", false);
    let now = n.now;
    n.core("a").call(None, now).unwrap();
    n.run();
    n.advance(31_000);
    assert_eq!(n.phase("a", "b"), Phase::Idle);
    assert_eq!(n.phase("b", "a"), Phase::Idle);
    assert!(n
        .notices_of("a")
        .iter()
        .any(|x| matches!(x, Notice::NoAnswer { .. })));
    assert!(n
        .notices_of("b")
        .iter()
        .any(|x| matches!(x, Notice::RingCancelled { .. })));
    assert!(!n.core("a").in_call());
}

#[test]
fn caller_cancels_the_ring() {
    let mut n = Net::new();
    n.join("a", false);
    n.join("b", false);
    let now = n.now;
    n.core("a").call(None, now).unwrap();
    n.run();
    n.core("a").hang_up(now);
    n.run();
    assert_eq!(n.phase("b", "a"), Phase::Idle);
    assert!(n
        .notices_of("b")
        .iter()
        .any(|x| matches!(x, Notice::RingCancelled { .. })));
    assert_eq!(
        n.core("b").accept(&id("a"), now),
        Err(CallError::NotRinging)
    );
}

#[test]
fn commands_are_checked() {
    let mut n = Net::new();
    let now = n.now;
    let mut lonely = CallCore::new("s".into(), "k".into(), false);
    assert_eq!(lonely.call(None, now), Err(CallError::NotJoined));
    n.join("a", false);
    assert_eq!(n.core("a").call(None, now), Err(CallError::NobodyToCall));
    assert_eq!(
        n.core("a").call(Some(&id("zz")), now),
        Err(CallError::UnknownPeer)
    );
    assert_eq!(
        n.core("a").accept(&id("zz"), now),
        Err(CallError::UnknownPeer)
    );
    n.join("b", false);
    assert_eq!(
        n.core("a").decline(&id("b"), now),
        Err(CallError::NotRinging)
    );
}

#[test]
fn a_peer_that_reconnects_keeps_its_call() {
    let mut n = Net::new();
    n.join("a", true);
    n.join("b", true);
    let now = n.now;
    n.core("a").call(None, now).unwrap();
    n.run();
    assert!(n.connected("a", "b"));
    // b's signaling drops: the server tells a that b left; b comes back as "b2".
    n.core("a").peer_left(&id("b"), now);
    n.run();
    assert!(n.closed.is_empty(), "media still flows: the link stays");
    let mut b = n.cores.remove(&id("b")).unwrap();
    b.welcome(
        id("b2"),
        vec![PeerInfo {
            id: id("a"),
            name: "A".into(),
        }],
        now,
    );
    n.cores.insert(id("b2"), b);
    n.names.insert(id("b2"), "B".into());
    n.core("a").peer_joined(id("b2"), "B".into(), now);
    n.run();
    assert!(n.closed.is_empty());
    assert_eq!(
        n.rebound,
        vec![(id("a"), id("b"), id("b2"))],
        "a's link moved to b's new id"
    );
    assert_eq!(n.phase("a", "b2"), Phase::Connected);
    assert_eq!(n.phase("b2", "a"), Phase::Connected);
    assert!(n.core("a").in_call());
    // A peer that never comes back is let go after the grace period.
    n.core("a").peer_left(&id("b2"), now);
    n.advance(31_000);
    assert!(n.closed.contains(&(id("a"), id("b2"))));
    assert!(!n.core("a").in_call());
}

#[test]
fn mute_is_announced() {
    let mut n = Net::new();
    n.join("a", false);
    n.join("b", false);
    n.core("a").set_media(false, true);
    n.run();
    let p = &n.core("b").participants()[0];
    assert!(!p.audio && p.video);
}

#[test]
fn spoofed_session_cannot_take_over_a_live_call() {
    let mut n = Net::new();
    n.join("a", true);
    n.join("b", true);
    n.join("m", false);
    let now = n.now;
    n.core("a").call(Some(&id("b")), now).unwrap();
    n.run();
    assert!(n.connected("a", "b"));
    // m saw b's session in b's state broadcast and claims it.
    let spoof = CallSignal::State {
        in_call: false,
        audio: true,
        video: true,
        session: Some("session-b".into()),
    };
    n.core("a").signal(&id("m"), spoof, now);
    n.run();
    assert!(
        n.rebound.is_empty(),
        "b is present: its session proves nothing"
    );
    assert!(n.connected("a", "b"));
    assert_eq!(n.phase("a", "m"), Phase::Idle);
}

#[test]
fn a_rejoin_drops_pending_rings_and_ends_an_empty_call() {
    let mut n = Net::new();
    n.join("a", false);
    n.join("b", false);
    let now = n.now;
    n.core("a").call(None, now).unwrap();
    n.run();
    assert!(n.core("a").in_call());
    // a's connection drops and it rejoins under a new id before b answers.
    let a = n.core("a");
    a.welcome(
        id("a2"),
        vec![PeerInfo {
            id: id("b"),
            name: "B".into(),
        }],
        now,
    );
    assert!(!a.in_call(), "nobody is ringing or connected any more");
}

#[test]
fn call_when_present_waits_for_someone() {
    let mut n = Net::new();
    n.join("a", false);
    let now = n.now;
    n.core("a").call_when_present(now).unwrap();
    n.run();
    assert!(!n.core("a").in_call(), "nobody to call yet");
    assert!(n.core("a").calling_on_arrival());
    n.join("b", true);
    assert!(n.connected("a", "b"), "a called b as soon as b arrived");
    assert!(!n.core("a").calling_on_arrival(), "only once");
}

#[test]
fn call_when_present_calls_at_once_when_someone_is_there() {
    let mut n = Net::new();
    n.join("a", true);
    n.join("b", false);
    let now = n.now;
    n.core("b").call_when_present(now).unwrap();
    n.run();
    assert!(n.connected("a", "b"));
    let mut lonely = CallCore::new("s".into(), "k".into(), false);
    assert_eq!(lonely.call_when_present(now), Err(CallError::NotJoined));
}

#[test]
fn hang_up_cancels_call_when_present() {
    let mut n = Net::new();
    n.join("a", false);
    let now = n.now;
    n.core("a").call_when_present(now).unwrap();
    n.core("a").hang_up(now);
    n.join("b", false);
    assert!(!n.core("a").in_call());
    assert_eq!(n.phase("b", "a"), Phase::Idle, "no ring after the hang-up");
}

/// Everyone who opened a link with `who`.
fn linked_with(n: &Net, who: &str) -> Vec<PeerId> {
    n.opened
        .iter()
        .filter(|(_, peer, _)| *peer == id(who))
        .map(|(me, _, _)| me.clone())
        .collect()
}

#[test]
fn room_guesser_gets_no_media_without_being_admitted() {
    let mut n = Net::new();
    n.join("a", false);
    n.join("b", false);
    let now = n.now;
    n.core("a").call(None, now).unwrap();
    n.run();
    n.core("b").accept(&id("a"), now).unwrap();
    n.run();
    assert!(n.connected("a", "b"));
    // c guessed the room name and rings everyone in the call.
    n.join("c", false);
    let now = n.now;
    n.core("c").call(None, now).unwrap();
    n.run();
    assert!(
        linked_with(&n, "c").is_empty(),
        "nobody opened a link to c: {:?}",
        n.opened
    );
    assert_eq!(n.phase("a", "c"), Phase::Incoming);
    assert_eq!(n.phase("b", "c"), Phase::Incoming);
    // After a moment the members are asked.
    n.advance(JOIN_REQUEST_GRACE_MS);
    for who in ["a", "b"] {
        assert!(
            n.notices_of(who)
                .iter()
                .any(|x| matches!(x, Notice::JoinRequest { from, .. } if *from == id("c"))),
            "{who} is asked"
        );
    }
    // a says no: c hears it was denied, and still has no link.
    let now = n.now;
    n.core("a").decline(&id("c"), now).unwrap();
    n.run();
    assert!(n.notices_of("c").iter().any(|x| matches!(
        x,
        Notice::Declined { reason: Some(r), .. } if r == "denied"
    )));
    assert!(linked_with(&n, "c").is_empty());
}

#[test]
fn an_admitted_newcomer_is_let_in_by_every_member() {
    let mut n = Net::new();
    for p in ["a", "b"] {
        n.join(p, false);
    }
    let now = n.now;
    n.core("a").call(None, now).unwrap();
    n.run();
    n.core("b").accept(&id("a"), now).unwrap();
    n.run();
    n.join("c", false);
    let now = n.now;
    n.core("c").call(None, now).unwrap();
    n.run();
    // a admits c; b follows a without asking anyone.
    n.core("a").accept(&id("c"), now).unwrap();
    n.run();
    assert!(n.connected("a", "c") && n.connected("b", "c") && n.connected("a", "b"));
    assert!(n
        .notices_of("b")
        .iter()
        .any(|x| matches!(x, Notice::Admitted { peer, by, .. } if *peer == id("c") && by == "A")));
    n.advance(JOIN_REQUEST_GRACE_MS);
    assert!(
        !n.notices_of("b")
            .iter()
            .any(|x| matches!(x, Notice::JoinRequest { .. })),
        "b was never asked"
    );
}

#[test]
fn spoofed_admit_from_outside_the_call_is_ignored() {
    let mut n = Net::new();
    for p in ["a", "b"] {
        n.join(p, false);
    }
    let now = n.now;
    n.core("a").call(None, now).unwrap();
    n.run();
    n.core("b").accept(&id("a"), now).unwrap();
    n.run();
    n.join("m", false);
    n.join("x", false);
    // m (not in the call) vouches for x, and for itself; then both ring b.
    let now = n.now;
    for (who, vouched) in [("m", "x"), ("m", "m")] {
        n.core("b")
            .signal(&id(who), CallSignal::Admit { peer: id(vouched) }, now);
    }
    n.core("x").call(Some(&id("b")), now).unwrap();
    n.core("m").call(Some(&id("b")), now).unwrap();
    n.run();
    assert_eq!(n.phase("b", "x"), Phase::Incoming);
    assert_eq!(n.phase("b", "m"), Phase::Incoming);
    assert!(linked_with(&n, "x").is_empty() && linked_with(&n, "m").is_empty());
}

#[test]
fn forged_or_replayed_resume_proofs_take_over_nothing() {
    let mut n = Net::new();
    n.join("a", true);
    n.join("b", true);
    n.join("m", false);
    let now = n.now;
    n.core("a").call(Some(&id("b")), now).unwrap();
    n.run();
    assert!(n.connected("a", "b"));
    // b drops; m tries to take its place before b is back.
    n.core("a").peer_left(&id("b"), now);
    n.run();
    let forged = CallSignal::Resume {
        proofs: vec!["00".repeat(16), "not even hex".into()],
    };
    n.core("a").signal(&id("m"), forged, now);
    // Even b's real proof, bound to b's new id and a, is worthless coming from m.
    let secret = n.cores[&id("a")].peers[&id("b")]
        .link_secret
        .clone()
        .expect("the link has a secret");
    let replay = CallSignal::Resume {
        proofs: vec![resume_proof(&secret, &id("b2"), &id("a"))],
    };
    n.core("a").signal(&id("m"), replay, now);
    n.run();
    assert!(n.rebound.is_empty(), "{:?}", n.rebound);
    assert_eq!(n.phase("a", "m"), Phase::Idle);
}

#[test]
fn a_resume_before_the_old_id_leaves_carries_the_link_over_at_once() {
    let mut n = Net::new();
    n.join("a", true);
    n.join("b", true);
    let now = n.now;
    n.core("a").call(Some(&id("b")), now).unwrap();
    n.run();
    assert!(n.connected("a", "b"));
    let secret = n.cores[&id("a")].peers[&id("b")]
        .link_secret
        .clone()
        .expect("the link has a secret");
    // b's network changed: it is back as b2 while the server still lists b (its old
    // connection has not timed out). Its proof moves the link at once.
    let a = n.core("a");
    a.peer_joined(id("b2"), "B".into(), now);
    a.drain();
    let proof = CallSignal::Resume {
        proofs: vec![resume_proof(&secret, &id("b2"), &id("a"))],
    };
    a.signal(&id("b2"), proof, now);
    let actions = a.drain();
    assert!(
        actions.iter().any(
            |x| matches!(x, Action::RebindLink { from, to } if *from == id("b") && *to == id("b2"))
        ),
        "{actions:?}"
    );
    assert!(!a.peers.contains_key(&id("b")));
    // When the server lets b go at last, nothing more happens (and nothing panics).
    a.peer_left(&id("b"), now);
    let actions = a.drain();
    assert!(
        !actions
            .iter()
            .any(|x| matches!(x, Action::RebindLink { .. } | Action::CloseLink { .. })),
        "{actions:?}"
    );
    assert!(a.peers.contains_key(&id("b2")));
}

#[test]
fn a_link_survives_both_ends_reconnecting() {
    // A server restart: both come back under new ids and find each other by proof.
    let mut n = Net::new();
    n.join("a", true);
    n.join("b", true);
    let now = n.now;
    n.core("a").call(None, now).unwrap();
    n.run();
    assert!(n.connected("a", "b"));
    let mut a = n.cores.remove(&id("a")).unwrap();
    let mut b = n.cores.remove(&id("b")).unwrap();
    a.welcome(id("a2"), vec![], now);
    b.welcome(
        id("b2"),
        vec![PeerInfo {
            id: id("a2"),
            name: "A".into(),
        }],
        now,
    );
    a.peer_joined(id("b2"), "B".into(), now);
    n.cores.insert(id("a2"), a);
    n.cores.insert(id("b2"), b);
    n.names.insert(id("a2"), "A".into());
    n.names.insert(id("b2"), "B".into());
    n.run();
    assert!(
        n.rebound.contains(&(id("a2"), id("b"), id("b2"))),
        "{:?}",
        n.rebound
    );
    assert!(
        n.rebound.contains(&(id("b2"), id("a"), id("a2"))),
        "{:?}",
        n.rebound
    );
    assert_eq!(n.phase("a2", "b2"), Phase::Connected);
    assert_eq!(n.phase("b2", "a2"), Phase::Connected);
    assert!(n.closed.is_empty());
}

#[test]
fn welcome_that_lists_us_among_the_others() {
    // A hostile (or broken) server lists our own id among the room's peers (found by the
    // `callcore` fuzz target): we must not send state, ring or open a link to ourselves.
    let info = |s: &str| PeerInfo {
        id: id(s),
        name: s.to_uppercase(),
    };
    let mut core = CallCore::new("s-a".into(), "k-a".into(), true);
    core.welcome(id("a"), vec![info("a"), info("b")], 0);
    core.call(None, 10).expect("b is there to call");
    let actions = core.drain();
    let mut to = Vec::new();
    for a in &actions {
        match a {
            Action::Send { to: t, .. } => to.push(t.clone()),
            Action::OpenLink { peer, .. } => to.push(peer.clone()),
            _ => {}
        }
    }
    assert!(!to.is_empty(), "{actions:?}");
    assert!(to.iter().all(|t| *t == id("b")), "{actions:?}");
    let ids: Vec<PeerId> = core.participants().into_iter().map(|p| p.id).collect();
    assert_eq!(ids, vec![id("b")]);

    // Handed the id of someone we knew: that entry goes, and nothing is sent to it.
    core.welcome(id("b"), vec![info("b"), info("c")], 20);
    let actions = core.drain();
    assert!(
        actions.iter().all(|a| match a {
            Action::Send { to, .. } => *to == id("c"),
            Action::OpenLink { peer, .. } => *peer == id("c"),
            _ => true,
        }),
        "{actions:?}"
    );
    let ids: Vec<PeerId> = core.participants().into_iter().map(|p| p.id).collect();
    assert_eq!(ids, vec![id("c")]);
}
