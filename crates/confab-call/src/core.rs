//! The call flow: a pure state machine fed room events, call-flow signals, user commands, link
//! events and time. It answers with [`Action`]s that the caller carries out. The rules are those
//! of `docs/protocol.md`, "Call flow"; `callcore.js` in the web client is a line-by-line port,
//! and both pass `scenarios/*.json`.

use crate::Millis;
use confab_protocol::call::CallSignal;
use confab_protocol::{PeerId, PeerInfo};
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

/// How long a ring waits for an answer.
pub const RING_TIMEOUT_MS: Millis = 30_000;
/// How long a peer that left the room keeps its link, waiting to come back under a new id.
pub const REJOIN_GRACE_MS: Millis = 30_000;
/// A request to join our call is shown after this long, unless a call member lets the
/// newcomer in first (a newcomer's rings to the members usually arrive just before the member
/// who admitted it says so).
pub const JOIN_REQUEST_GRACE_MS: Millis = 2_000;

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
    /// Someone not yet in our call asks to join it: admit (`accept`) or deny (`decline`).
    JoinRequest {
        from: PeerId,
        name: String,
    },
    /// Another member of our call let `peer` in, so we did too.
    Admitted {
        peer: PeerId,
        name: String,
        by: String,
    },
    /// `peer` is in the call with us now.
    JoinedCall {
        peer: PeerId,
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
    /// Their half of the link secret (from their `ring` or `accept`).
    their_nonce: Option<String>,
    /// Known to the two ends of a link only: proves a returning peer (`resume`).
    link_secret: Option<String>,
    /// A member of our call let them in: their ring is accepted without asking.
    vouched: bool,
    /// Their ring (or request to join) was shown to the user.
    announced: bool,
}

impl Peer {
    fn linked(&self) -> bool {
        matches!(self.phase, Phase::Connecting | Phase::Connected)
    }
}

/// SHA-256 as hex, first 32 characters (128 bits).
pub(crate) fn hash(text: &str) -> String {
    let digest = Sha256::digest(text.as_bytes());
    digest[..16].iter().map(|b| format!("{b:02x}")).collect()
}

/// What a returning peer sends to prove it held the link (bound to both ids).
pub fn resume_proof(link_secret: &str, from: &PeerId, to: &PeerId) -> String {
    hash(&format!("{link_secret}:{from}:{to}"))
}

/// Longest nonce taken from the other side, and most proofs looked at in one `resume`.
const MAX_NONCE: usize = 64;
const MAX_PROOFS: usize = 16;
/// Most resumes kept for later (see `CallCore::early_resumes`).
const MAX_EARLY_RESUMES: usize = 16;

pub struct CallCore {
    session: String,
    /// Never sent: the link nonces derive from it.
    secret: String,
    me: Option<PeerId>,
    /// Our ids before a rejoin (the last few): a server that has not yet noticed an old
    /// connection died still lists it, and that is us, not someone else.
    former: Vec<PeerId>,
    peers: BTreeMap<PeerId, Peer>,
    in_call: bool,
    audio: bool,
    video: bool,
    auto_accept: bool,
    /// Admit everyone who asks to join our call, without asking the user.
    admit_all: bool,
    /// Call everyone as soon as someone is in the room (set by `call_when_present`).
    call_on_arrival: bool,
    ring_timeout: Millis,
    rejoin_grace: Millis,
    /// Resumes that came before the old id was gone (a dead node's or a dropped connection's
    /// member is announced as left only later): tried again when someone leaves.
    early_resumes: Vec<(PeerId, Vec<String>)>,
    out: Vec<Action>,
}

/// How many of our former ids are remembered (one per rejoin).
const MAX_FORMER_IDS: usize = 8;

impl CallCore {
    /// `session` is announced to the room; `secret` is never sent (give 128 random bits).
    pub fn new(session: String, secret: String, auto_accept: bool) -> Self {
        CallCore {
            session,
            secret,
            me: None,
            former: Vec::new(),
            peers: BTreeMap::new(),
            in_call: false,
            audio: true,
            video: true,
            auto_accept,
            admit_all: false,
            call_on_arrival: false,
            ring_timeout: RING_TIMEOUT_MS,
            rejoin_grace: REJOIN_GRACE_MS,
            early_resumes: Vec::new(),
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

    /// Admit everyone who asks to join our call (the room is open), or ask each time.
    pub fn set_admit_all(&mut self, on: bool) {
        self.admit_all = on;
    }

    pub fn admits_all(&self) -> bool {
        self.admit_all
    }

    /// Whether a call will start as soon as someone is in the room.
    pub fn calling_on_arrival(&self) -> bool {
        self.call_on_arrival
    }

    /// The people in the room, in id order.
    /// Everyone else in the room as these rules know it, those away included (a rejoin is
    /// still waited for).
    pub fn known_peers(&self) -> usize {
        self.peers.len()
    }

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

    /// Our half of the secret of a link with `peer` (sent in our `ring` or `accept`).
    fn my_nonce(&self, peer: &PeerId) -> String {
        hash(&format!("{}:nonce:{peer}", self.secret))
    }

    fn open_link(&mut self, peer: &PeerId, offerer: bool) {
        let mine = self.my_nonce(peer);
        if let Some(p) = self.peers.get_mut(peer) {
            p.link_secret = p.their_nonce.as_ref().map(|theirs| {
                let (a, b) = if mine <= *theirs {
                    (mine.as_str(), theirs.as_str())
                } else {
                    (theirs.as_str(), mine.as_str())
                };
                hash(&format!("{a}:{b}"))
            });
        }
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
        // Our own id is never one of the others, whatever the server says: a server that
        // listed it (or handed us the id of someone we knew) would have us signal, ring and
        // link to ourselves.
        if let Some(p) = self.peers.remove(&me) {
            if p.linked() {
                self.out.push(Action::CloseLink { peer: me.clone() });
            }
        }
        if let Some(old) = self.me.take().filter(|old| *old != me) {
            self.former.push(old);
            if self.former.len() > MAX_FORMER_IDS {
                self.former.remove(0);
            }
        }
        let peers: Vec<PeerInfo> = peers
            .into_iter()
            .filter(|p| p.id != me && !self.former.contains(&p.id))
            .collect();
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
        // Links that survived our reconnection: prove to the others who we were (before our
        // state, so that they carry the link over rather than ring the new id).
        let present: Vec<PeerId> = self.present().cloned().collect();
        for y in present {
            self.send_resume(&y);
        }
        self.broadcast_state();
        // Rings that were pending are gone with the old connection.
        self.maybe_end_call();
        self.maybe_call_on_arrival(now);
    }

    /// Sends `to` the proofs of the links it may have held with us under another id: the link
    /// with `to` itself (it may see us as away), and every link whose peer is away.
    fn send_resume(&mut self, to: &PeerId) {
        let Some(me) = self.me.clone() else { return };
        let to_is_linked = self.peers.get(to).is_some_and(Peer::linked);
        let proofs: Vec<String> = self
            .peers
            .iter()
            .filter(|(id, p)| {
                p.linked() && (*id == to || (p.away_since.is_some() && !to_is_linked))
            })
            .filter_map(|(_, p)| p.link_secret.as_ref())
            .map(|secret| resume_proof(secret, &me, to))
            .take(MAX_PROOFS)
            .collect();
        if !proofs.is_empty() {
            self.send(to, CallSignal::Resume { proofs });
        }
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
                their_nonce: None,
                link_secret: None,
                vouched: false,
                announced: false,
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
        // Someone we held a link with may be back under this id.
        self.send_resume(&id);
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
            // Media may still flow: wait for a rejoin under a new id (which may have come
            // already).
            Phase::Connecting | Phase::Connected => {
                p.away_since = Some(now);
                for (new_id, proofs) in std::mem::take(&mut self.early_resumes) {
                    self.on_resume(&new_id, &proofs);
                }
            }
            Phase::Incoming => {
                let (name, announced) = (p.name.clone(), p.announced);
                self.peers.remove(id);
                if announced {
                    self.notice(Notice::RingCancelled {
                        from: id.clone(),
                        name,
                    });
                }
            }
            Phase::Idle | Phase::Ringing => {
                self.peers.remove(id);
            }
        }
        self.early_resumes.retain(|(n, _)| n != id);
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
                let p = self.peers.get_mut(from).expect("checked");
                p.in_call = in_call;
                p.audio = audio;
                p.video = video;
                p.session = session;
                self.out.push(Action::Changed);
                self.fill_mesh(from, now);
            }
            CallSignal::Ring { nonce } => {
                self.take_nonce(from, nonce);
                self.on_ring(from, now);
            }
            CallSignal::Accept { nonce } => {
                if self.peers[from].phase == Phase::Ringing {
                    self.take_nonce(from, nonce);
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
                        let announced = self.peers[from].announced;
                        self.set_phase(from, Phase::Idle, now);
                        if announced {
                            self.notice(Notice::RingCancelled {
                                from: from.clone(),
                                name,
                            });
                        }
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
            CallSignal::Admit { peer } => self.on_admit(from, &peer, now),
            CallSignal::Resume { proofs } => self.on_resume(from, &proofs),
            // The link's own business.
            CallSignal::Description { .. }
            | CallSignal::Candidate { .. }
            | CallSignal::Verify { .. }
            | CallSignal::SfuOffer { .. }
            | CallSignal::SfuAnswer { .. }
            | CallSignal::SfuCandidate { .. }
            | CallSignal::SfuLayer { .. } => {}
        }
    }

    fn take_nonce(&mut self, from: &PeerId, nonce: Option<String>) {
        if let (Some(p), Some(n)) = (self.peers.get_mut(from), nonce) {
            if !n.is_empty() && n.len() <= MAX_NONCE {
                p.their_nonce = Some(n);
            }
        }
    }

    /// Fills the mesh: two members of one call without a link; the smaller id rings. A member
    /// is someone our call let in (`vouched`): a `state` claiming "in a call" proves nothing.
    fn fill_mesh(&mut self, peer: &PeerId, now: Millis) {
        let due = self.in_call
            && self.me.as_ref().is_some_and(|me| me < peer)
            && self.peers.get(peer).is_some_and(|p| {
                p.in_call && p.vouched && p.phase == Phase::Idle && p.away_since.is_none()
            });
        if due {
            self.ring(peer, now);
        }
    }

    /// A member of our call let `peer` in: we accept `peer` without asking.
    /// (Sent to members whose link is connected; taken from members whose link is connecting
    /// or connected.)
    fn on_admit(&mut self, by: &PeerId, peer: &PeerId, now: Millis) {
        // Only from someone in our call (a link we agreed to: its "connected" may not have
        // reached us yet when they vouch).
        let trusted = self.in_call
            && self
                .peers
                .get(by)
                .is_some_and(|p| p.linked() && p.away_since.is_none());
        if !trusted || by == peer {
            return;
        }
        let Some(p) = self.peers.get_mut(peer) else {
            return;
        };
        p.vouched = true;
        if p.phase == Phase::Incoming {
            let (name, by_name) = (self.name(peer), self.name(by));
            self.notice(Notice::Admitted {
                peer: peer.clone(),
                name,
                by: by_name,
            });
            self.accept_now(peer, now);
        } else {
            self.fill_mesh(peer, now);
        }
    }

    /// A peer back under a new id proves which link was its: that link carries over. Only a
    /// peer that is away can be taken over, never onto an id that already has a link, and only
    /// with a proof nobody but the two ends of the link can make.
    fn on_resume(&mut self, new_id: &PeerId, proofs: &[String]) {
        let Some(me) = self.me.clone() else { return };
        // Our ring to the new id (the mesh filling in) may have crossed its proof: a link beats
        // a ring. Anything further along is never replaced. (A kept early resume may name an id
        // that is gone since.)
        match self.peers.get(new_id) {
            Some(p) if matches!(p.phase, Phase::Idle | Phase::Ringing) => {}
            _ => return,
        }
        let proofs = &proofs[..proofs.len().min(MAX_PROOFS)];
        let old = self
            .peers
            .iter()
            .find(|(id, p)| {
                // Whether or not its old id has been announced gone: after a network change
                // the server notices the old connection only when it times out, and meanwhile
                // the link needs the new id for its ICE restart. Only the other end of the
                // link can make the proof.
                *id != new_id
                    && p.linked()
                    && p.link_secret
                        .as_ref()
                        .is_some_and(|s| proofs.contains(&resume_proof(s, new_id, &me)))
            })
            .map(|(id, _)| id.clone());
        let Some(old) = old else {
            // Perhaps its old id has not been announced as gone yet: keep the proofs for then.
            self.early_resumes.retain(|(n, _)| n != new_id);
            if self.early_resumes.len() == MAX_EARLY_RESUMES {
                self.early_resumes.remove(0);
            }
            self.early_resumes.push((new_id.clone(), proofs.to_vec()));
            return;
        };
        self.early_resumes.retain(|(n, _)| n != new_id);
        let Some(old_peer) = self.peers.remove(&old) else {
            return;
        };
        let p = self.peers.get_mut(new_id).expect("checked above");
        p.phase = old_peer.phase;
        p.since = old_peer.since;
        p.link_secret = old_peer.link_secret;
        p.their_nonce = old_peer.their_nonce;
        p.vouched = true;
        self.out.push(Action::RebindLink {
            from: old,
            to: new_id.clone(),
        });
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
                    let nonce = Some(self.my_nonce(from));
                    self.send(from, CallSignal::Accept { nonce });
                    self.open_link(from, false);
                }
            }
            Phase::Idle => {
                // Someone in our call gets our media only once we (or a call member, or the
                // "admit everyone" setting) let them in.
                let vouched = self.peers[from].vouched;
                if self.auto_accept || (self.in_call && (vouched || self.admit_all)) {
                    self.accept_now(from, now);
                } else {
                    self.set_phase(from, Phase::Incoming, now);
                    if let Some(p) = self.peers.get_mut(from) {
                        p.announced = !self.in_call;
                    }
                    if !self.in_call {
                        let name = self.name(from);
                        self.notice(Notice::IncomingCall {
                            from: from.clone(),
                            name,
                        });
                    }
                    // A request to join our call waits JOIN_REQUEST_GRACE_MS (see `tick`).
                }
            }
        }
    }

    fn accept_now(&mut self, from: &PeerId, now: Millis) {
        self.set_phase(from, Phase::Connecting, now);
        let nonce = Some(self.my_nonce(from));
        self.send(from, CallSignal::Accept { nonce });
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
        let nonce = Some(self.my_nonce(id));
        self.send(id, CallSignal::Ring { nonce });
    }

    /// Tells every other member of our call that `peer` is in (so they accept its ring without
    /// asking), and tells `peer` who they are.
    fn vouch(&mut self, peer: &PeerId) {
        let members: Vec<PeerId> = self
            .peers
            .iter()
            .filter(|(id, p)| *id != peer && p.phase == Phase::Connected && p.away_since.is_none())
            .map(|(id, _)| id.clone())
            .collect();
        for m in members {
            self.send(&m, CallSignal::Admit { peer: peer.clone() });
            self.send(peer, CallSignal::Admit { peer: m });
        }
    }

    // ----- link events ---------------------------------------------------------------------

    pub fn link_connected(&mut self, id: &PeerId, now: Millis) {
        if self
            .peers
            .get(id)
            .is_some_and(|p| p.phase == Phase::Connecting)
        {
            self.set_phase(id, Phase::Connected, now);
            let name = self.name(id);
            self.notice(Notice::JoinedCall {
                peer: id.clone(),
                name,
            });
            if self.in_call {
                self.vouch(id);
            }
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

    /// Accepts a call, or admits someone who asks to join ours.
    pub fn accept(&mut self, from: &PeerId, now: Millis) -> Result<(), CallError> {
        match self.peers.get(from).map(|p| p.phase) {
            None => Err(CallError::UnknownPeer),
            Some(Phase::Incoming) => {
                if self.in_call {
                    // Tell the others first, so that they let the newcomer in when it rings.
                    self.vouch(from);
                }
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
                let reason = if self.in_call { "denied" } else { "declined" };
                self.send(
                    from,
                    CallSignal::Decline {
                        reason: Some(reason.into()),
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

    /// Ring timeouts, requests to join, and rejoin grace.
    pub fn tick(&mut self, now: Millis) {
        let due: Vec<PeerId> = self
            .peers
            .iter()
            .filter(|(_, p)| {
                p.phase == Phase::Incoming
                    && !p.announced
                    && now.saturating_sub(p.since) >= JOIN_REQUEST_GRACE_MS
            })
            .map(|(id, _)| id.clone())
            .collect();
        for id in due {
            let name = self.name(&id);
            if let Some(p) = self.peers.get_mut(&id) {
                p.announced = true;
            }
            self.notice(Notice::JoinRequest { from: id, name });
            self.out.push(Action::Changed);
        }
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
            if let Some(p) = self.peers.get_mut(&id) {
                p.announced = false;
            }
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
