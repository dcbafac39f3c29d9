//! The call flow: a pure state machine fed room events, call-flow signals, user commands, link
//! events and time. It answers with [`Action`]s that the caller carries out. The rules are those
//! of `docs/protocol.md`, "Call flow"; `callcore.js` in the web client is a line-by-line port,
//! and both pass `scenarios/*.json`.

use crate::Millis;
use confab_protocol::call::CallSignal;
use confab_protocol::{PeerId, PeerInfo};
use serde::Serialize;
use std::collections::BTreeMap;

/// How long a ring waits for an answer.
pub const RING_TIMEOUT_MS: Millis = 30_000;
/// How long a peer that left the room keeps its link, waiting to come back under a new id.
pub const REJOIN_GRACE_MS: Millis = 30_000;

/// The link with one remote peer, as the call logic sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Phase {
    /// No call with this peer.
    Idle,
    /// We rang; waiting for accept or decline.
    Ringing,
    /// They rang; waiting for the user.
    Incoming,
    /// Accepted; the peer connection is being set up.
    Connecting,
    /// Media flows.
    Connected,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Participant {
    pub id: PeerId,
    pub name: String,
    pub in_call: bool,
    pub audio: bool,
    pub video: bool,
    pub phase: Phase,
}

/// Something worth telling the user once (the rest is state).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Notice {
    IncomingCall {
        from: PeerId,
        name: String,
    },
    RingCancelled {
        from: PeerId,
        name: String,
    },
    Declined {
        peer: PeerId,
        name: String,
        reason: Option<String>,
    },
    NoAnswer {
        peer: PeerId,
        name: String,
    },
    HungUp {
        peer: PeerId,
        name: String,
    },
    LinkFailed {
        peer: PeerId,
        name: String,
    },
    CallEnded,
}

/// What the caller must do. Serialized as in the scenario tables.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "action", rename_all = "kebab-case")]
pub enum Action {
    /// Send a call-flow signal to a peer of the room.
    Send {
        to: PeerId,
        signal: CallSignal,
    },
    /// Create the peer connection; the offerer sends the first offer, the polite side rolls
    /// back its own offer when offers collide.
    OpenLink {
        peer: PeerId,
        offerer: bool,
        polite: bool,
    },
    CloseLink {
        peer: PeerId,
    },
    /// The peer reconnected under a new id: the same link now talks to `to`.
    RebindLink {
        from: PeerId,
        to: PeerId,
    },
    Notice {
        notice: Notice,
    },
    /// The snapshot changed (a hint to re-render; scenario tables leave it out).
    Changed,
}

/// Why a user command was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    #[error("join a room first")]
    NotJoined,
    #[error("there is nobody else in the room to call")]
    NobodyToCall,
    #[error("no one with that id is in the room")]
    UnknownPeer,
    #[error("that person is not calling you")]
    NotRinging,
    #[error("already in a call with that person")]
    AlreadyInCall,
}

impl CallError {
    /// Stable, machine-readable; the same strings `callcore.js` returns.
    pub fn code(self) -> &'static str {
        match self {
            CallError::NotJoined => "not-joined",
            CallError::NobodyToCall => "nobody-to-call",
            CallError::UnknownPeer => "unknown-peer",
            CallError::NotRinging => "not-ringing",
            CallError::AlreadyInCall => "already-in-call",
        }
    }
}

#[derive(Debug)]
struct Peer {
    name: String,
    in_call: bool,
    audio: bool,
    video: bool,
    session: Option<String>,
    phase: Phase,
    /// When the phase was entered (ring timeouts).
    since: Millis,
    /// Gone from the room (peer-left or our own reconnection) but its link may live on.
    away_since: Option<Millis>,
}

impl Peer {
    fn linked(&self) -> bool {
        matches!(self.phase, Phase::Connecting | Phase::Connected)
    }
}

pub struct CallCore {
    session: String,
    me: Option<PeerId>,
    peers: BTreeMap<PeerId, Peer>,
    in_call: bool,
    audio: bool,
    video: bool,
    auto_accept: bool,
    /// Call everyone as soon as someone is in the room (set by `call_when_present`).
    call_on_arrival: bool,
    ring_timeout: Millis,
    rejoin_grace: Millis,
    out: Vec<Action>,
}

impl CallCore {
    pub fn new(session: String, auto_accept: bool) -> Self {
        CallCore {
            session,
            me: None,
            peers: BTreeMap::new(),
            in_call: false,
            audio: true,
            video: true,
            auto_accept,
            call_on_arrival: false,
            ring_timeout: RING_TIMEOUT_MS,
            rejoin_grace: REJOIN_GRACE_MS,
            out: Vec::new(),
        }
    }

    pub fn with_timeouts(mut self, ring: Millis, rejoin_grace: Millis) -> Self {
        self.ring_timeout = ring;
        self.rejoin_grace = rejoin_grace;
        self
    }

    /// Takes the actions produced so far.
    pub fn drain(&mut self) -> Vec<Action> {
        std::mem::take(&mut self.out)
    }

    pub fn me(&self) -> Option<&PeerId> {
        self.me.as_ref()
    }

    pub fn in_call(&self) -> bool {
        self.in_call
    }

    pub fn media(&self) -> (bool, bool) {
        (self.audio, self.video)
    }

    pub fn set_auto_accept(&mut self, on: bool) {
        self.auto_accept = on;
    }

    /// Whether a call will start as soon as someone is in the room.
    pub fn calling_on_arrival(&self) -> bool {
        self.call_on_arrival
    }

    /// The people in the room, in id order.
    pub fn participants(&self) -> Vec<Participant> {
        self.peers
            .iter()
            .filter(|(_, p)| p.away_since.is_none())
            .map(|(id, p)| Participant {
                id: id.clone(),
                name: p.name.clone(),
                in_call: p.in_call,
                audio: p.audio,
                video: p.video,
                phase: p.phase,
            })
            .collect()
    }

    pub fn name_of(&self, id: &PeerId) -> Option<&str> {
        self.peers.get(id).map(|p| p.name.as_str())
    }

    fn state_signal(&self) -> CallSignal {
        CallSignal::State {
            in_call: self.in_call,
            audio: self.audio,
            video: self.video,
            session: Some(self.session.clone()),
        }
    }

    fn send(&mut self, to: &PeerId, signal: CallSignal) {
        self.out.push(Action::Send {
            to: to.clone(),
            signal,
        });
    }

    fn notice(&mut self, notice: Notice) {
        self.out.push(Action::Notice { notice });
    }

    fn broadcast_state(&mut self) {
        let s = self.state_signal();
        let ids: Vec<PeerId> = self.present().cloned().collect();
        for id in ids {
            self.send(&id, s.clone());
        }
        self.out.push(Action::Changed);
    }

    fn present(&self) -> impl Iterator<Item = &PeerId> {
        self.peers
            .iter()
            .filter(|(_, p)| p.away_since.is_none())
            .map(|(id, _)| id)
    }

    fn set_phase(&mut self, id: &PeerId, phase: Phase, now: Millis) {
        if let Some(p) = self.peers.get_mut(id) {
            p.phase = phase;
            p.since = now;
        }
        self.out.push(Action::Changed);
    }

    fn name(&self, id: &PeerId) -> String {
        self.name_of(id).unwrap_or("someone").to_owned()
    }

    /// The polite side of a pair (rolls back on offer collisions) is the one with the larger id.
    fn polite_with(&self, peer: &PeerId) -> bool {
        self.me.as_ref().is_some_and(|me| me > peer)
    }

    fn open_link(&mut self, peer: &PeerId, offerer: bool) {
        let polite = self.polite_with(peer);
        self.out.push(Action::OpenLink {
            peer: peer.clone(),
            offerer,
            polite,
        });
    }

    // ----- room events ---------------------------------------------------------------------

    /// We joined (or rejoined after a reconnection, under a new id).
    pub fn welcome(&mut self, me: PeerId, peers: Vec<PeerInfo>, now: Millis) {
        self.me = Some(me);
        // Whoever we knew is away until they show up again under a new id; peers without a
        // link are simply forgotten.
        let old: Vec<PeerId> = self.peers.keys().cloned().collect();
        for id in old {
            if self.peers[&id].linked() {
                let p = self.peers.get_mut(&id).expect("listed");
                p.away_since.get_or_insert(now);
            } else {
                self.peers.remove(&id);
            }
        }
        for info in peers {
            match self.peers.get_mut(&info.id) {
                // Same id as before (only our connection dropped): the link carries on.
                Some(p) => {
                    p.away_since = None;
                    p.name = info.name;
                }
                None => self.add_peer(info.id, info.name, now),
            }
        }
        self.broadcast_state();
        // Rings that were pending are gone with the old connection.
        self.maybe_end_call();
        self.maybe_call_on_arrival(now);
    }

    fn add_peer(&mut self, id: PeerId, name: String, now: Millis) {
        self.peers.insert(
            id,
            Peer {
                name,
                in_call: false,
                audio: true,
                video: true,
                session: None,
                phase: Phase::Idle,
                since: now,
                away_since: None,
            },
        );
    }

    pub fn peer_joined(&mut self, id: PeerId, name: String, now: Millis) {
        if self.me.is_none() || self.me.as_ref() == Some(&id) {
            return;
        }
        if let Some(p) = self.peers.get_mut(&id) {
            // Already known (a duplicate announcement): keep its state, take the name.
            p.name = name;
            self.out.push(Action::Changed);
            return;
        }
        self.add_peer(id.clone(), name, now);
        let s = self.state_signal();
        self.send(&id, s);
        self.out.push(Action::Changed);
        self.maybe_call_on_arrival(now);
    }

    pub fn peer_left(&mut self, id: &PeerId, now: Millis) {
        let Some(p) = self.peers.get_mut(id) else {
            return;
        };
        match p.phase {
            // Media may still flow: wait for a rejoin under a new id.
            Phase::Connecting | Phase::Connected => {
                p.away_since = Some(now);
            }
            Phase::Incoming => {
                let name = p.name.clone();
                self.peers.remove(id);
                self.notice(Notice::RingCancelled {
                    from: id.clone(),
                    name,
                });
            }
            Phase::Idle | Phase::Ringing => {
                self.peers.remove(id);
            }
        }
        self.out.push(Action::Changed);
        self.maybe_end_call();
    }

    /// Our signaling connection dropped (links stay).
    pub fn disconnected(&mut self) {
        self.out.push(Action::Changed);
    }

    // ----- signals -------------------------------------------------------------------------

    /// A call-flow signal other than descriptions and candidates (those go to the link).
    pub fn signal(&mut self, from: &PeerId, sig: CallSignal, now: Millis) {
        if !self.peers.contains_key(from) {
            return;
        }
        match sig {
            CallSignal::State {
                in_call,
                audio,
                video,
                session,
            } => {
                if let Some(s) = &session {
                    self.rebind_if_same_session(from, s);
                }
                let p = self.peers.get_mut(from).expect("checked");
                p.in_call = in_call;
                p.audio = audio;
                p.video = video;
                p.session = session;
                self.out.push(Action::Changed);
                // Fill the mesh: two peers in a call without a link; the smaller id rings.
                let phase = self.peers[from].phase;
                if self.in_call
                    && in_call
                    && phase == Phase::Idle
                    && self.me.as_ref().is_some_and(|me| me < from)
                {
                    self.ring(from, now);
                }
            }
            CallSignal::Ring => self.on_ring(from, now),
            CallSignal::Accept => {
                if self.peers[from].phase == Phase::Ringing {
                    self.set_phase(from, Phase::Connecting, now);
                    self.open_link(from, true);
                }
            }
            CallSignal::Decline { reason } => {
                if self.peers[from].phase == Phase::Ringing {
                    self.set_phase(from, Phase::Idle, now);
                    let name = self.name(from);
                    self.notice(Notice::Declined {
                        peer: from.clone(),
                        name,
                        reason,
                    });
                    self.maybe_end_call();
                }
            }
            CallSignal::HangUp => {
                let phase = self.peers[from].phase;
                let name = self.name(from);
                match phase {
                    Phase::Idle => {}
                    Phase::Incoming => {
                        self.set_phase(from, Phase::Idle, now);
                        self.notice(Notice::RingCancelled {
                            from: from.clone(),
                            name,
                        });
                    }
                    Phase::Ringing => {
                        self.set_phase(from, Phase::Idle, now);
                        self.notice(Notice::Declined {
                            peer: from.clone(),
                            name,
                            reason: None,
                        });
                        self.maybe_end_call();
                    }
                    Phase::Connecting | Phase::Connected => {
                        self.set_phase(from, Phase::Idle, now);
                        self.out.push(Action::CloseLink { peer: from.clone() });
                        self.notice(Notice::HungUp {
                            peer: from.clone(),
                            name,
                        });
                        self.maybe_end_call();
                    }
                }
            }
            CallSignal::Description { .. } | CallSignal::Candidate { .. } => {}
        }
    }

    /// A peer that reconnected under a new id announces the session of one that went away:
    /// its link carries over. Only a peer that is away can be taken over this way (sessions are
    /// visible to the whole room, so a present peer's session proves nothing), and never onto
    /// an id that already has a link.
    fn rebind_if_same_session(&mut self, new_id: &PeerId, session: &str) {
        let old = self
            .peers
            .iter()
            .find(|(id, p)| {
                *id != new_id && p.away_since.is_some() && p.session.as_deref() == Some(session)
            })
            .map(|(id, _)| id.clone());
        let Some(old) = old else { return };
        if self
            .peers
            .get(new_id)
            .is_some_and(|p| p.phase != Phase::Idle)
        {
            return;
        }
        let Some(old_peer) = self.peers.remove(&old) else {
            return;
        };
        if old_peer.linked() {
            let p = self.peers.get_mut(new_id).expect("caller checked");
            p.phase = old_peer.phase;
            p.since = old_peer.since;
            self.out.push(Action::RebindLink {
                from: old,
                to: new_id.clone(),
            });
        }
        self.out.push(Action::Changed);
    }

    fn on_ring(&mut self, from: &PeerId, now: Millis) {
        let phase = self.peers[from].phase;
        match phase {
            Phase::Connecting | Phase::Connected | Phase::Incoming => {}
            Phase::Ringing => {
                // Both rang at once (glare): the smaller id makes the offer.
                let me_smaller = self.me.as_ref().is_some_and(|me| me < from);
                self.set_phase(from, Phase::Connecting, now);
                if me_smaller {
                    self.open_link(from, true);
                } else {
                    self.send(from, CallSignal::Accept);
                    self.open_link(from, false);
                }
            }
            Phase::Idle => {
                if self.in_call || self.auto_accept {
                    self.accept_now(from, now);
                } else {
                    self.set_phase(from, Phase::Incoming, now);
                    let name = self.name(from);
                    self.notice(Notice::IncomingCall {
                        from: from.clone(),
                        name,
                    });
                }
            }
        }
    }

    fn accept_now(&mut self, from: &PeerId, now: Millis) {
        self.set_phase(from, Phase::Connecting, now);
        self.send(from, CallSignal::Accept);
        self.open_link(from, false);
        self.enter_call(now);
    }

    /// Becomes in-call: announces it, rings every in-call peer we have no link with, and
    /// accepts rings that were waiting.
    fn enter_call(&mut self, now: Millis) {
        if self.in_call {
            return;
        }
        self.in_call = true;
        self.call_on_arrival = false;
        self.broadcast_state();
        let ids: Vec<(PeerId, Phase, bool)> = self
            .peers
            .iter()
            .filter(|(_, p)| p.away_since.is_none())
            .map(|(id, p)| (id.clone(), p.phase, p.in_call))
            .collect();
        for (id, phase, in_call) in ids {
            match phase {
                Phase::Incoming => self.accept_now(&id, now),
                Phase::Idle if in_call => self.ring(&id, now),
                _ => {}
            }
        }
    }

    fn ring(&mut self, id: &PeerId, now: Millis) {
        self.set_phase(id, Phase::Ringing, now);
        self.send(id, CallSignal::Ring);
    }

    // ----- link events ---------------------------------------------------------------------

    pub fn link_connected(&mut self, id: &PeerId, now: Millis) {
        if self
            .peers
            .get(id)
            .is_some_and(|p| p.phase == Phase::Connecting)
        {
            self.set_phase(id, Phase::Connected, now);
        }
    }

    /// The link failed for good (its health gave up, or it could not be built).
    pub fn link_failed(&mut self, id: &PeerId, now: Millis) {
        let Some(p) = self.peers.get(id) else { return };
        if !p.linked() {
            return;
        }
        let name = p.name.clone();
        let away = p.away_since.is_some();
        self.out.push(Action::CloseLink { peer: id.clone() });
        self.notice(Notice::LinkFailed {
            peer: id.clone(),
            name,
        });
        if away {
            self.peers.remove(id);
        } else {
            self.set_phase(id, Phase::Idle, now);
            self.send(id, CallSignal::HangUp);
        }
        self.out.push(Action::Changed);
        self.maybe_end_call();
    }

    // ----- user commands -------------------------------------------------------------------

    /// Rings everyone in the room (`None`) or one peer.
    pub fn call(&mut self, target: Option<&PeerId>, now: Millis) -> Result<(), CallError> {
        if self.me.is_none() {
            return Err(CallError::NotJoined);
        }
        let targets: Vec<PeerId> = match target {
            Some(t) => {
                let p = self
                    .peers
                    .get(t)
                    .filter(|p| p.away_since.is_none())
                    .ok_or(CallError::UnknownPeer)?;
                match p.phase {
                    Phase::Connecting | Phase::Connected => return Err(CallError::AlreadyInCall),
                    Phase::Incoming => return self.accept(t, now),
                    Phase::Idle | Phase::Ringing => vec![t.clone()],
                }
            }
            None => {
                let all: Vec<PeerId> = self.present().cloned().collect();
                if all.is_empty() {
                    return Err(CallError::NobodyToCall);
                }
                all
            }
        };
        self.call_on_arrival = false;
        let was_in_call = self.in_call;
        self.in_call = true;
        if !was_in_call {
            self.broadcast_state();
        }
        for id in targets {
            match self.peers[&id].phase {
                Phase::Idle => self.ring(&id, now),
                Phase::Incoming => self.accept_now(&id, now),
                _ => {}
            }
        }
        if !was_in_call {
            // Join whoever else is already in a call with them.
            let ids: Vec<PeerId> = self
                .peers
                .iter()
                .filter(|(_, p)| p.away_since.is_none() && p.in_call && p.phase == Phase::Idle)
                .map(|(id, _)| id.clone())
                .collect();
            for id in ids {
                self.ring(&id, now);
            }
        }
        self.out.push(Action::Changed);
        Ok(())
    }

    /// Calls everyone as soon as someone is in the room: now if someone is, otherwise when the
    /// first person arrives. Cancelled by a call, a hang-up or leaving.
    pub fn call_when_present(&mut self, now: Millis) -> Result<(), CallError> {
        if self.me.is_none() {
            return Err(CallError::NotJoined);
        }
        if self.in_call {
            return Ok(());
        }
        self.call_on_arrival = true;
        self.maybe_call_on_arrival(now);
        Ok(())
    }

    fn maybe_call_on_arrival(&mut self, now: Millis) {
        if self.call_on_arrival && !self.in_call && self.present().next().is_some() {
            self.call_on_arrival = false;
            // Someone is present, so this cannot fail.
            let _ = self.call(None, now);
        }
    }

    pub fn accept(&mut self, from: &PeerId, now: Millis) -> Result<(), CallError> {
        match self.peers.get(from).map(|p| p.phase) {
            None => Err(CallError::UnknownPeer),
            Some(Phase::Incoming) => {
                self.accept_now(from, now);
                Ok(())
            }
            Some(_) => Err(CallError::NotRinging),
        }
    }

    pub fn decline(&mut self, from: &PeerId, now: Millis) -> Result<(), CallError> {
        match self.peers.get(from).map(|p| p.phase) {
            None => Err(CallError::UnknownPeer),
            Some(Phase::Incoming) => {
                self.set_phase(from, Phase::Idle, now);
                self.send(
                    from,
                    CallSignal::Decline {
                        reason: Some("declined".into()),
                    },
                );
                Ok(())
            }
            Some(_) => Err(CallError::NotRinging),
        }
    }

    /// Leaves the call (stays in the room).
    pub fn hang_up(&mut self, now: Millis) {
        self.call_on_arrival = false;
        let ids: Vec<(PeerId, Phase, bool)> = self
            .peers
            .iter()
            .map(|(id, p)| (id.clone(), p.phase, p.away_since.is_some()))
            .collect();
        for (id, phase, away) in ids {
            match phase {
                Phase::Ringing => {
                    self.send(&id, CallSignal::HangUp);
                    self.set_phase(&id, Phase::Idle, now);
                }
                Phase::Connecting | Phase::Connected => {
                    self.send(&id, CallSignal::HangUp);
                    self.out.push(Action::CloseLink { peer: id.clone() });
                    if away {
                        self.peers.remove(&id);
                    } else {
                        self.set_phase(&id, Phase::Idle, now);
                    }
                }
                Phase::Idle | Phase::Incoming => {}
            }
        }
        if self.in_call {
            self.in_call = false;
            self.broadcast_state();
            self.notice(Notice::CallEnded);
        }
    }

    /// Leaving the room: hang up, then forget everyone.
    pub fn leave(&mut self, now: Millis) {
        self.hang_up(now);
        self.peers.clear();
        self.me = None;
        self.out.push(Action::Changed);
    }

    pub fn set_media(&mut self, audio: bool, video: bool) {
        if (audio, video) != (self.audio, self.video) {
            self.audio = audio;
            self.video = video;
            self.broadcast_state();
        }
    }

    /// Ring timeouts and rejoin grace.
    pub fn tick(&mut self, now: Millis) {
        let expired: Vec<(PeerId, Phase)> = self
            .peers
            .iter()
            .filter(|(_, p)| {
                matches!(p.phase, Phase::Ringing | Phase::Incoming)
                    && now.saturating_sub(p.since) >= self.ring_timeout
            })
            .map(|(id, p)| (id.clone(), p.phase))
            .collect();
        for (id, phase) in expired {
            let name = self.name(&id);
            self.set_phase(&id, Phase::Idle, now);
            if phase == Phase::Ringing {
                self.send(&id, CallSignal::HangUp);
                self.notice(Notice::NoAnswer { peer: id, name });
            } else {
                self.notice(Notice::RingCancelled { from: id, name });
            }
        }
        let gone: Vec<PeerId> = self
            .peers
            .iter()
            .filter(|(_, p)| {
                p.away_since
                    .is_some_and(|t| now.saturating_sub(t) >= self.rejoin_grace)
            })
            .map(|(id, _)| id.clone())
            .collect();
        for id in gone {
            let name = self.name(&id);
            self.peers.remove(&id);
            self.out.push(Action::CloseLink { peer: id.clone() });
            self.notice(Notice::HungUp { peer: id, name });
            self.out.push(Action::Changed);
        }
        self.maybe_end_call();
    }

    /// A call with nobody connected, connecting or being rung is over.
    fn maybe_end_call(&mut self) {
        if !self.in_call {
            return;
        }
        let anyone = self.peers.values().any(|p| {
            matches!(
                p.phase,
                Phase::Ringing | Phase::Connecting | Phase::Connected
            )
        });
        if !anyone {
            self.in_call = false;
            self.broadcast_state();
            self.notice(Notice::CallEnded);
        }
    }
}

#[cfg(test)]
mod tests;
