//! Rooms shared by several nodes (`confab-signal --redis`), still without I/O.
//!
//! A clustered [`Rooms`] holds two kinds of members: its own connections, and *remote* ones
//! that another node holds. It learns about remote members only from what its shell feeds in
//! (the shared store's answers and events), and it asks for what needs every node's agreement
//! with [`Output::Cluster`]:
//!
//! - a join is decided by the store, atomically for all nodes ([`ClusterOp::Claim`] →
//!   [`Rooms::claimed`]): the password and the room's capacity hold across nodes exactly as on
//!   one. This node's own limits (rates, password backoff) are checked first, as on one node;
//! - a leave frees the seat ([`ClusterOp::Release`]);
//! - a signal to a remote member goes to its node ([`ClusterOp::Forward`]), which hands it to
//!   the member ([`Rooms::remote_signal`]). `from` is stamped by the sender's node; nodes trust
//!   each other and the store, never a client.
//!
//! Every room in the store has a version, raised by each join and leave. Events carry it, and
//! the store's snapshots of a room carry the version they show: an event older than what this
//! node already reflects is ignored, and a snapshot at least as new as it replaces the remote
//! members outright (one older only adds members not known to have left).

use super::*;

/// A member another node holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemotePeer {
    pub id: PeerId,
    pub name: String,
    pub node: String,
    /// Its place at the SFU, if the room has one (and its node said).
    pub sfu: Option<SfuSeat>,
}

/// A seat: one peer in one room. What a claim asks for, and what a node re-registers when the
/// store comes back after an outage ([`Rooms::seats`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seat {
    pub room: String,
    pub id: PeerId,
    pub name: String,
    /// SHA-256 of the password the joiner gave (or the room's, for [`Rooms::seats`]).
    pub password: Option<[u8; 32]>,
    /// The member's place at the SFU, if the room has one.
    pub sfu: Option<SfuSeat>,
    /// This membership's rejoin token (its `welcome` gives it; the store keeps only a digest).
    pub rejoin: Option<RejoinToken>,
    /// The digest of the rejoin token this join presented: the store frees the seat it names,
    /// on whichever node, before it counts the room ([`Rooms::replaced`]).
    pub replaces: Option<[u8; 32]>,
}

/// A membership's rejoin token: a secret of its client's, shown only as a digest.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct RejoinToken(pub [u8; 16]);

impl RejoinToken {
    /// What the store keeps and compares: SHA-256 of the token.
    pub fn digest(&self) -> [u8; 32] {
        Sha256::digest(self.0).into()
    }
}

impl std::fmt::Debug for RejoinToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RejoinToken(…)")
    }
}

/// Work for the cluster shell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClusterOp {
    /// Take `seat` for connection `conn` if the room's password matches and it has fewer than
    /// `capacity` members; answer with [`Rooms::claimed`].
    Claim {
        conn: ConnId,
        seat: Seat,
        capacity: usize,
    },
    /// A local member left: free its seat and tell the room's other nodes.
    Release { room: String, id: PeerId },
    /// A signal (`text`, already stamped with the sender's id `sender`) from connection
    /// `from` for `to`, held by `node`.
    Forward {
        node: String,
        room: String,
        to: PeerId,
        text: String,
        from: ConnId,
        sender: PeerId,
    },
}

/// The store's answer to a [`ClusterOp::Claim`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClaimResult {
    /// The seat is taken; the room (at version `ver`) has this password and these members
    /// besides the new one. `sfu`: the place at the SFU the store gave the seat, when not the
    /// one asked for (the membership the join's rejoin token replaced had one: it carries
    /// over).
    Seated {
        ver: u64,
        password: Option<[u8; 32]>,
        members: Vec<RemotePeer>,
        sfu: Option<SfuSeat>,
    },
    Full,
    WrongPassword,
    /// The store could not be asked: this node decides alone from what it knows, and the shell
    /// registers the seat when the store is back ([`Rooms::seats`]).
    Unavailable,
}

/// What a clustered [`Rooms`] keeps besides the rooms.
#[derive(Debug)]
pub(crate) struct Node {
    id: String,
    /// Joins waiting for the store's answer, by connection.
    claims: HashMap<ConnId, Seat>,
}

impl Rooms {
    /// The room logic of one node of a cluster; `node` names it in the shared store.
    pub fn clustered(config: Config, seed: [u8; 32], node: String) -> Self {
        let mut rooms = Rooms::new(config, seed);
        rooms.cluster = Some(Node {
            id: node,
            claims: HashMap::new(),
        });
        rooms
    }

    /// This node's name in the cluster (`None` on a lone server).
    pub fn node_id(&self) -> Option<&str> {
        self.cluster.as_ref().map(|n| n.id.as_str())
    }

    pub(crate) fn claim(&mut self, conn: ConnId, seat: Seat, out: &mut Vec<Output>) {
        let capacity = self.config.room_capacity;
        let Some(node) = &mut self.cluster else {
            return;
        };
        self.rooms.entry(seat.room.clone()).or_default().claims += 1;
        node.claims.insert(conn, seat.clone());
        out.push(Output::Cluster(ClusterOp::Claim {
            conn,
            seat,
            capacity,
        }));
    }

    /// The room `conn` is waiting to join, if it is.
    pub(crate) fn claiming(&self, conn: ConnId) -> Option<&str> {
        let node = self.cluster.as_ref()?;
        node.claims.get(&conn).map(|s| s.room.as_str())
    }

    /// Forgets a join still waiting for its seat (the client left or went); a seat the store
    /// grants it after all is released when the answer comes.
    pub(crate) fn cancel_claim(&mut self, conn: ConnId) -> bool {
        self.cluster
            .as_mut()
            .is_some_and(|n| n.claims.remove(&conn).is_some())
    }

    /// The store's answer to a claim. `seat` is the one the claim asked for.
    pub fn claimed(
        &mut self,
        conn: ConnId,
        seat: Seat,
        result: ClaimResult,
        now: Instant,
        out: &mut Vec<Output>,
    ) {
        let Some(node) = &mut self.cluster else {
            return;
        };
        let waiting = node.claims.get(&conn) == Some(&seat);
        if waiting {
            node.claims.remove(&conn);
        }
        if let Some(r) = self.rooms.get_mut(&seat.room) {
            r.claims = r.claims.saturating_sub(1);
        }
        if !waiting {
            if matches!(result, ClaimResult::Seated { .. }) {
                out.push(Output::Cluster(ClusterOp::Release {
                    room: seat.room.clone(),
                    id: seat.id,
                }));
            }
            self.drop_if_unused(&seat.room);
            return;
        }
        let Some(addr) = self.conns.get(&conn).map(|c| c.addr) else {
            return;
        };
        let refused = match result {
            ClaimResult::Seated {
                ver,
                password,
                members,
                sfu,
            } => {
                // `welcome` lists the others in join order: the store's, which is every
                // node's (this node may have learned of them in another order).
                let order: HashMap<PeerId, usize> = members
                    .iter()
                    .enumerate()
                    .map(|(i, p)| (p.id.clone(), i))
                    .collect();
                self.rooms.entry(seat.room.clone()).or_default().password = password;
                self.remote_snapshot(&seat.room, ver, members, now, out);
                if let Some(r) = self.rooms.get_mut(&seat.room) {
                    r.members
                        .sort_by_key(|m| order.get(&m.id).copied().unwrap_or(usize::MAX));
                }
                let sfu = match sfu {
                    Some(carried) if seat.sfu.is_some() => Some(carried),
                    _ => seat.sfu,
                };
                self.seat(
                    conn,
                    Seat {
                        password,
                        sfu,
                        ..seat
                    },
                    out,
                );
                return;
            }
            ClaimResult::Full => self.room_full(&seat.room),
            ClaimResult::WrongPassword => self.wrong_password(addr, &seat.room, now),
            ClaimResult::Unavailable => {
                if let Some(r) = self.rooms.get_mut(&seat.room) {
                    if r.members.is_empty() && r.password.is_none() {
                        r.password = seat.password;
                    }
                }
                match self.check_seat(addr, &seat.room, seat.password, now) {
                    Ok(()) => {
                        self.seat(conn, seat, out);
                        return;
                    }
                    Err(refused) => refused,
                }
            }
        };
        self.drop_if_unused(&seat.room);
        self.fail(conn, refused, now, out);
    }

    fn drop_if_unused(&mut self, room: &str) {
        if self.rooms.get(room).is_some_and(Room::unused) {
            self.rooms.remove(room);
        }
    }

    /// The store's view of `room` at version `ver`: the members every node holds. True if
    /// (the view being no older than this node's, or empty) a member of this node is not
    /// among them:
    /// its seat was freed by a join on another node that presented its rejoin token, and that
    /// news never came, or the store lost it; either way the shell registers this node's seats
    /// again, and the store answers which were replaced ([`Rooms::restore_refused`]).
    pub fn remote_snapshot(
        &mut self,
        room: &str,
        ver: u64,
        members: Vec<RemotePeer>,
        now: Instant,
        out: &mut Vec<Output>,
    ) -> bool {
        let Some(me) = self.cluster.as_ref().map(|n| n.id.clone()) else {
            return false;
        };
        let config = &self.config;
        let Some(r) = self.rooms.get_mut(room) else {
            return false;
        };
        let fresh = ver >= r.ver;
        // (A room the store no longer has at all comes back empty at version 0.)
        let unseated = (fresh || members.is_empty())
            && r.members
                .iter()
                .any(|m| m.conn().is_some() && !members.iter().any(|p| p.id == m.id));
        if fresh {
            let gone: Vec<PeerId> = r
                .members
                .iter()
                .filter(|m| {
                    matches!(m.at, Place::Remote { .. }) && !members.iter().any(|p| p.id == m.id)
                })
                .map(|m| m.id.clone())
                .collect();
            for id in gone {
                r.members.retain(|m| m.id != id);
                r.tell_locals(&ServerMessage::PeerLeft { id: id.clone() }.encode(), out);
                r.depart(id, None, now, config);
            }
        }
        r.forget_departed(now, config.departed_memory);
        for p in members {
            // This node's own seats are known here better than in any snapshot.
            let known = p.node == me || r.members.iter().any(|m| m.id == p.id);
            let left = !fresh && r.departed.iter().any(|d| d.id == p.id);
            if !known && !left {
                add_remote(r, p, out);
            }
        }
        r.ver = r.ver.max(ver);
        unseated
    }

    /// Another node seated `peer` in `room` (version `ver`).
    pub fn remote_joined(&mut self, room: &str, ver: u64, peer: RemotePeer, out: &mut Vec<Output>) {
        let Some(me) = self.node_id() else {
            return;
        };
        if peer.node == me {
            return;
        }
        let Some(r) = self.rooms.get_mut(room).filter(|r| ver > r.ver) else {
            return;
        };
        r.ver = ver;
        if !r.members.iter().any(|m| m.id == peer.id) {
            add_remote(r, peer, out);
        }
    }

    /// The store freed the seat of this node's member `id` of `room`: its rejoin token was
    /// presented in a join on another node (the same person, back through another node while
    /// this connection is dead). It goes now, not when the dead connection is noticed.
    pub fn replaced(&mut self, room: &str, id: &PeerId, now: Instant, out: &mut Vec<Output>) {
        let conn = self
            .rooms
            .get(room)
            .and_then(|r| r.members.iter().find(|m| &m.id == id))
            .and_then(Member::conn);
        if let Some(conn) = conn {
            self.close(
                conn,
                crate::CLOSE_REPLACED,
                "you joined again from another connection".into(),
                now,
                out,
            );
        }
    }

    /// A remote member of `room` left (version `ver`).
    pub fn remote_left(
        &mut self,
        room: &str,
        ver: u64,
        id: &PeerId,
        now: Instant,
        out: &mut Vec<Output>,
    ) {
        let config = &self.config;
        let Some(r) = self.rooms.get_mut(room).filter(|r| ver > r.ver) else {
            return;
        };
        r.ver = ver;
        let gone = remove_remote(r, |m| &m.id == id, now, config, out);
        drop_at_sfu(room, gone, config, out);
    }

    /// `node` is gone (its heartbeat expired; its seats were freed at version `ver`): its
    /// members leave the rooms here. Not those that already reflect a later version: there the
    /// store's news (or snapshot) after the reaping was applied, and a member of `node` in them
    /// is one it seated again after coming back.
    pub fn node_gone(&mut self, node: &str, ver: u64, now: Instant, out: &mut Vec<Output>) {
        let config = &self.config;
        for (name, r) in self.rooms.iter_mut().filter(|(_, r)| r.ver <= ver) {
            let which = |m: &Member| matches!(&m.at, Place::Remote { node: n } if n == node);
            let gone = remove_remote(r, which, now, config, out);
            // Nobody else will: the dead node took its members' SFU places with it.
            drop_at_sfu(name, gone, config, out);
        }
    }

    /// This node has been out of reach of the store longer than its heartbeat lives: the other
    /// nodes have let its members go, and its members now hear the same of theirs. They come
    /// back (as `peer-joined`) with the snapshots read when the store is reached again.
    pub fn store_lost(&mut self, now: Instant, out: &mut Vec<Output>) {
        self.remove_remotes(u64::MAX, |_| true, now, out);
    }

    /// Removes the remote members `which` from every room at most at version `up_to`.
    fn remove_remotes(
        &mut self,
        up_to: u64,
        which: impl Fn(&Member) -> bool,
        now: Instant,
        out: &mut Vec<Output>,
    ) {
        let config = &self.config;
        for r in self.rooms.values_mut().filter(|r| r.ver <= up_to) {
            remove_remote(r, &which, now, config, out);
        }
    }

    /// A signal another node relayed: delivered when `to` is held here and `from` is a remote
    /// member of the same room; dropped otherwise.
    pub fn remote_signal(
        &mut self,
        room: &str,
        from: &PeerId,
        to: &PeerId,
        text: String,
        out: &mut Vec<Output>,
    ) {
        let Some(r) = self.rooms.get(room) else {
            return;
        };
        let sender_known = r
            .members
            .iter()
            .any(|m| &m.id == from && matches!(m.at, Place::Remote { .. }));
        let target = r
            .members
            .iter()
            .find(|m| &m.id == to)
            .and_then(Member::conn);
        if let (true, Some(conn)) = (sender_known, target) {
            out.push(Output::Relay {
                conn,
                text,
                from: None,
            });
        }
    }

    /// The nodes holding members of rooms this node has members in (whose liveness it watches).
    pub fn remote_nodes(&self) -> Vec<String> {
        let mut nodes: Vec<String> = self
            .rooms
            .values()
            .flat_map(|r| r.members.iter())
            .filter_map(|m| match &m.at {
                Place::Remote { node } => Some(node.clone()),
                Place::Local { .. } => None,
            })
            .collect();
        nodes.sort();
        nodes.dedup();
        nodes
    }

    /// Rooms this node has members in or joins waiting for (whose snapshots it wants).
    pub fn room_names(&self) -> Vec<String> {
        self.rooms.keys().cloned().collect()
    }

    /// After the store was lost: what it says next is news whatever its version (a store that
    /// restarted empty counts versions from the start again).
    pub fn forget_versions(&mut self) {
        for r in self.rooms.values_mut() {
            r.ver = 0;
        }
    }

    /// A seat of this node that the shared store would not take back after an outage (the
    /// others filled the room, or made it again with another password, meanwhile): its
    /// connection is closed (1013), so that its client joins again and hears why. `replaced`:
    /// the store freed it for a join on another node that presented its rejoin token (whose
    /// news this node missed): closed as [`Rooms::replaced`] would have.
    pub fn restore_refused(
        &mut self,
        room: &str,
        id: &PeerId,
        replaced: bool,
        now: Instant,
        out: &mut Vec<Output>,
    ) {
        if replaced {
            return self.replaced(room, id, now, out);
        }
        let conn = self.peers.get(id).copied().filter(|c| {
            self.conns
                .get(c)
                .and_then(|c| c.joined.as_ref())
                .is_some_and(|j| j.room == room)
        });
        if let Some(conn) = conn {
            self.close(
                conn,
                crate::CLOSE_TRY_AGAIN,
                "room changed while this server was cut off from the others; join again".into(),
                now,
                out,
            );
        }
    }

    /// Every seat this node's connections hold, with their room's password: what it
    /// registers again when the store comes back.
    pub fn seats(&self) -> Vec<Seat> {
        let mut seats = Vec::new();
        for (name, r) in &self.rooms {
            for m in r.members.iter().filter(|m| m.conn().is_some()) {
                seats.push(Seat {
                    room: name.clone(),
                    id: m.id.clone(),
                    name: m.name.clone(),
                    password: r.password,
                    sfu: m.sfu.clone(),
                    rejoin: m.rejoin.map(RejoinToken),
                    replaces: None,
                });
            }
        }
        seats
    }
}

fn add_remote(r: &mut Room, peer: RemotePeer, out: &mut Vec<Output>) {
    let joined = ServerMessage::PeerJoined {
        id: peer.id.clone(),
        name: peer.name.clone(),
    };
    r.tell_locals(&joined.encode(), out);
    r.members.push(Member {
        id: peer.id,
        name: peer.name,
        at: Place::Remote { node: peer.node },
        rejoin: None,
        sfu: peer.sfu,
    });
}

/// Takes the remote members `which` picks out of `r`; returns their SFU places.
fn remove_remote(
    r: &mut Room,
    which: impl Fn(&Member) -> bool,
    now: Instant,
    config: &Config,
    out: &mut Vec<Output>,
) -> Vec<SfuSeat> {
    let gone: Vec<(PeerId, Option<SfuSeat>)> = r
        .members
        .iter()
        .filter(|m| matches!(m.at, Place::Remote { .. }) && which(m))
        .map(|m| (m.id.clone(), m.sfu.clone()))
        .collect();
    let mut seats = Vec::new();
    for (id, sfu) in gone {
        r.members.retain(|m| m.id != id);
        r.tell_locals(&ServerMessage::PeerLeft { id: id.clone() }.encode(), out);
        r.depart(id, None, now, config);
        seats.extend(sfu);
    }
    seats
}

/// Remote members left `room` for good (the store said so): every node still holding the
/// room removes their VideoRoom rooms too, after the wait (their own node may be gone).
fn drop_at_sfu(room: &str, gone: Vec<SfuSeat>, config: &Config, out: &mut Vec<Output>) {
    if config.sfu.is_none() {
        return;
    }
    for SfuSeat { token, .. } in gone {
        out.push(Output::Sfu(SfuOp::Drop {
            room: room.into(),
            token,
            at_once: false,
        }));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: fn() -> Instant = Instant::now;

    fn node(name: &str) -> Rooms {
        Rooms::clustered(Config::default(), [7; 32], name.into())
    }

    fn join(r: &mut Rooms, room: &str, name: &str, password: Option<&str>) -> (ConnId, Seat) {
        let now = T0();
        let conn = r.connect("10.0.0.1".parse().unwrap(), now).unwrap();
        let mut out = Vec::new();
        let pw = password
            .map(|p| format!(r#","password":"{p}""#))
            .unwrap_or_default();
        r.receive(
            conn,
            &format!(r#"{{"type":"join","room":"{room}","name":"{name}"{pw}}}"#),
            now,
            &mut out,
        );
        match out.as_slice() {
            [Output::Cluster(ClusterOp::Claim { conn: c, seat, .. })] if *c == conn => {
                (conn, seat.clone())
            }
            other => panic!("expected one claim, got {other:?}"),
        }
    }

    /// A node's settings with an SFU that takes every call.
    fn with_sfu() -> Config {
        Config {
            sfu: Some(crate::Sfu {
                url: "janus+ws://sfu.example:8188".into(),
                secret: "a-secret-of-sixteen+".into(),
                above: 0,
                admin_key: None,
            }),
            ..Config::default()
        }
    }

    fn texts(out: &[Output], to: ConnId) -> Vec<String> {
        out.iter()
            .filter_map(|o| match o {
                Output::Update { conn, text } | Output::Send { conn, text } if *conn == to => {
                    Some(text.clone())
                }
                Output::Relay { conn, text, .. } if *conn == to => Some(text.clone()),
                _ => None,
            })
            .collect()
    }

    fn remote(id: &str, name: &str, node: &str) -> RemotePeer {
        RemotePeer {
            id: PeerId(id.into()),
            name: name.into(),
            node: node.into(),
            sfu: None,
        }
    }

    /// The store seats `seat` (at version 3, without a password) with `members` there.
    fn seat_at_3(r: &mut Rooms, conn: ConnId, seat: Seat, members: Vec<RemotePeer>) -> Vec<Output> {
        let mut out = Vec::new();
        r.claimed(conn, seat, seated(3, members), T0(), &mut out);
        out
    }

    #[test]
    fn a_join_waits_for_the_store_and_welcomes_with_remote_members() {
        let mut a = node("a");
        let (conn, seat) = join(&mut a, "r", "Ada", None);
        let out = seat_at_3(&mut a, conn, seat, vec![remote("b1", "Bob", "b")]);
        let t = texts(&out, conn);
        assert_eq!(t.len(), 1, "{out:?}");
        assert!(
            t[0].contains(r#""type":"welcome""#) && t[0].contains("Bob"),
            "{t:?}"
        );
        assert_eq!(a.remote_nodes(), vec!["b".to_string()]);
    }

    /// With an SFU, a claim carries the joiner's SFU place (so every node learns it), the
    /// welcome gives it, and a remote member's place comes with its news: every node holding
    /// the room knows every member's token, and removes a remote member's VideoRoom room when
    /// the store says it left or its node died (never for a split of this node's own).
    #[test]
    fn sfu_places_travel_with_seats_and_leaves_drop_them_on_every_node() {
        let mut a = Rooms::clustered(with_sfu(), [7; 32], "a".into());
        let (conn, seat) = join(&mut a, "r", "Ada", None);
        let ada = seat.sfu.clone().expect("a claim carries the SFU place");
        let mut out = seat_at_3(&mut a, conn, seat, vec![]);
        let w = texts(&out, conn);
        assert!(
            w[0].contains(&format!(r#""token":"{}""#, ada.token)),
            "{w:?}"
        );
        let sfu = |n: u64| {
            Some(SfuSeat {
                token: format!("t{n}"),
            })
        };
        let bob = RemotePeer {
            sfu: sfu(42),
            ..remote("b1", "Bob", "b")
        };
        let cy = RemotePeer {
            sfu: sfu(43),
            ..remote("c1", "Cy", "c")
        };
        a.remote_joined("r", 4, bob, &mut out);
        a.remote_joined("r", 5, cy, &mut out);
        let m = a.sfu_members("r");
        assert_eq!(m.tokens, [ada.token.clone(), "t42".into(), "t43".into()]);
        let drops = |out: &mut Vec<Output>| -> Vec<SfuOp> {
            out.drain(..)
                .filter_map(|o| match o {
                    Output::Sfu(op @ SfuOp::Drop { .. }) => Some(op),
                    _ => None,
                })
                .collect()
        };
        out.clear();
        a.remote_left("r", 6, &PeerId("b1".into()), T0(), &mut out);
        let drop = |n: u64| SfuOp::Drop {
            room: "r".into(),
            token: format!("t{n}"),
            at_once: false,
        };
        assert_eq!(drops(&mut out), [drop(42)]);
        a.node_gone("c", 7, T0(), &mut out);
        assert_eq!(drops(&mut out), [drop(43)]);
        // Cut off from the store: the others' members leave here, but their rooms stay.
        a.remote_joined("r", 8, remote("d1", "Di", "d"), &mut out);
        out.clear();
        a.store_lost(T0(), &mut out);
        assert_eq!(drops(&mut out), []);
    }

    /// A join presenting a rejoin token asks the store to free the seat it names (by its
    /// digest: the token itself never leaves the node), and the welcome gives the token the
    /// claim registered; when the store says another node's join replaced one of this node's
    /// members, its connection is closed as replaced.
    #[test]
    fn a_rejoin_token_travels_as_a_digest_and_a_replaced_member_is_closed() {
        let mut a = node("a");
        let (conn, seat) = join(&mut a, "r", "Ada", None);
        let token = seat.rejoin.expect("a claim carries the membership's token");
        assert_eq!(seat.replaces, None);
        let out = seat_at_3(&mut a, conn, seat, vec![]);
        let w: serde_json::Value = serde_json::from_str(&texts(&out, conn)[0]).unwrap();
        assert_eq!(w["rejoin"], hex::encode(token.0));
        assert!(!format!("{token:?}").contains(&hex::encode(token.0)[..8]));

        let mut b = node("b");
        let back = b.connect("10.0.0.2".parse().unwrap(), T0()).unwrap();
        let mut out = Vec::new();
        let hex_token = hex::encode(token.0);
        let join = format!(r#"{{"type":"join","room":"r","name":"Ada","rejoin":"{hex_token}"}}"#);
        b.receive(back, &join, T0(), &mut out);
        let again = match out.as_slice() {
            [Output::Cluster(ClusterOp::Claim { seat, .. })] => seat.clone(),
            other => panic!("expected one claim, got {other:?}"),
        };
        assert_eq!(again.replaces, Some(token.digest()));
        assert!(
            !format!("{out:?}").contains(&hex_token),
            "the token stays on the node"
        );

        let mut out = Vec::new();
        let id = PeerId(w["id"].as_str().unwrap().into());
        a.replaced("r", &id, T0(), &mut out);
        assert!(
            out.iter().any(|o| matches!(o,
                Output::Close { conn: c, code, .. } if *c == conn && *code == crate::CLOSE_REPLACED)),
            "{out:?}"
        );
        // Someone not here: nothing.
        let mut out = Vec::new();
        a.replaced("r", &PeerId("nobody".into()), T0(), &mut out);
        assert!(out.is_empty(), "{out:?}");
    }

    /// The news that a join on another node replaced Ada never came: the store's fresh view
    /// of the room without her says so (the shell then registers this node's seats again),
    /// and the store's answer that her seat was replaced closes her as the news would have.
    /// A stale view, or one with her, says nothing.
    #[test]
    fn a_missed_replacement_is_found_in_the_snapshot() {
        let mut a = node("a");
        let (conn, seat) = join(&mut a, "r", "Ada", None);
        let ada = RemotePeer {
            id: seat.id.clone(),
            name: "Ada".into(),
            node: "a".into(),
            sfu: None,
        };
        let out = seat_at_3(&mut a, conn, seat, vec![]);
        assert!(!texts(&out, conn).is_empty());
        let mut out = Vec::new();
        let bob = || remote("b1", "Bob", "b");
        assert!(
            !a.remote_snapshot("r", 2, vec![bob()], T0(), &mut out),
            "stale"
        );
        assert!(!a.remote_snapshot("r", 4, vec![ada.clone(), bob()], T0(), &mut out));
        assert!(
            a.remote_snapshot("r", 5, vec![bob()], T0(), &mut out),
            "Ada is not there"
        );
        assert!(
            a.remote_snapshot("r", 0, vec![], T0(), &mut out),
            "the room is gone from the store"
        );
        out.clear();
        a.restore_refused("r", &ada.id, true, T0(), &mut out);
        assert!(
            out.iter().any(|o| matches!(o,
                Output::Close { conn: c, code, .. } if *c == conn && *code == crate::CLOSE_REPLACED)),
            "{out:?}"
        );
    }

    #[test]
    fn a_second_join_while_waiting_is_refused() {
        let mut a = node("a");
        let (conn, _) = join(&mut a, "r", "Ada", None);
        let mut out = Vec::new();
        a.receive(
            conn,
            r#"{"type":"join","room":"s","name":"Ada"}"#,
            T0(),
            &mut out,
        );
        assert!(texts(&out, conn)[0].contains("already-joined"), "{out:?}");
        assert!(!out.iter().any(|o| matches!(o, Output::Cluster(_))));
    }

    #[test]
    fn a_full_room_elsewhere_is_full_here() {
        let mut a = node("a");
        let (conn, seat) = join(&mut a, "r", "Ada", None);
        let mut out = Vec::new();
        a.claimed(conn, seat, ClaimResult::Full, T0(), &mut out);
        assert!(texts(&out, conn)[0].contains("room-full"), "{out:?}");
        assert_eq!(a.room_count(), 0, "nothing is kept for a refused join");
    }

    #[test]
    fn wrong_passwords_from_the_store_count_toward_the_backoff() {
        let mut a = node("a");
        let now = T0();
        for _ in 0..a.config().password_failures_per_address {
            let (conn, seat) = join(&mut a, "r", "Eve", Some("guess"));
            let mut out = Vec::new();
            a.claimed(conn, seat, ClaimResult::WrongPassword, now, &mut out);
            assert!(texts(&out, conn)[0].contains("wrong-password"), "{out:?}");
        }
        // The next attempt is refused here, without asking the store.
        let conn = a.connect("10.0.0.1".parse().unwrap(), now).unwrap();
        let mut out = Vec::new();
        a.receive(
            conn,
            r#"{"type":"join","room":"r","name":"Eve","password":"again"}"#,
            now,
            &mut out,
        );
        assert!(
            !out.iter().any(|o| matches!(o, Output::Cluster(_))),
            "{out:?}"
        );
        assert!(texts(&out, conn)[0].contains("rate-limited"), "{out:?}");
    }

    /// A rejoin through this node whose rejoin token freed a seat on another: the store hands
    /// back that seat's SFU place, and the member keeps it (its VideoRoom room stays, what it
    /// publishes flows on). Without an SFU here, nothing is carried.
    #[test]
    fn a_rejoin_through_another_node_keeps_its_place_at_the_sfu() {
        let carried = SfuSeat {
            token: "0123456789abcdef0123456789abcdef".into(),
        };
        for (config, kept) in [(with_sfu(), true), (Config::default(), false)] {
            let mut b = Rooms::clustered(config, [7; 32], "b".into());
            let (conn, seat) = join(&mut b, "r", "Ada", None);
            let mut out = Vec::new();
            let result = ClaimResult::Seated {
                ver: 3,
                password: None,
                members: vec![],
                sfu: Some(carried.clone()),
            };
            b.claimed(conn, seat, result, T0(), &mut out);
            let w = &texts(&out, conn)[0];
            assert_eq!(w.contains(&carried.token), kept, "{w}");
            let made: Vec<&SfuOp> = out
                .iter()
                .filter_map(|o| match o {
                    Output::Sfu(op) => Some(op),
                    _ => None,
                })
                .collect();
            if kept {
                assert_eq!(
                    made,
                    [&SfuOp::Make {
                        room: "r".into(),
                        token: carried.token.clone()
                    }]
                );
                assert_eq!(
                    b.sfu_members("r").tokens,
                    std::slice::from_ref(&carried.token)
                );
            } else {
                assert!(made.is_empty(), "{made:?}");
            }
        }
    }

    #[test]
    fn a_join_cancelled_in_flight_gives_its_seat_back() {
        let mut a = node("a");
        let (conn, seat) = join(&mut a, "r", "Ada", None);
        let mut out = Vec::new();
        a.disconnect(conn, T0(), &mut out);
        a.claimed(
            conn,
            seat.clone(),
            ClaimResult::Seated {
                ver: 1,
                password: None,
                members: vec![],
                sfu: None,
            },
            T0(),
            &mut out,
        );
        assert!(
            out.contains(&Output::Cluster(ClusterOp::Release {
                room: "r".into(),
                id: seat.id
            })),
            "{out:?}"
        );
        assert_eq!(a.room_count(), 0);
    }

    #[test]
    fn events_older_than_the_room_are_ignored() {
        let mut a = node("a");
        let (conn, seat) = join(&mut a, "r", "Ada", None);
        let mut out = Vec::new();
        // Bob joins (v5) before the claim's answer (v4, without Bob) arrives.
        a.remote_joined("r", 5, remote("b1", "Bob", "b"), &mut out);
        a.claimed(
            conn,
            seat,
            ClaimResult::Seated {
                ver: 4,
                password: None,
                members: vec![remote("c1", "Cy", "c")],
                sfu: None,
            },
            T0(),
            &mut out,
        );
        let welcome = &texts(&out, conn)[0];
        assert!(
            welcome.contains("Bob") && welcome.contains("Cy"),
            "{welcome}"
        );
        // A stale "Bob left" (v3) changes nothing; a new one (v6) does.
        out.clear();
        a.remote_left("r", 3, &PeerId("b1".into()), T0(), &mut out);
        assert!(out.is_empty(), "{out:?}");
        a.remote_left("r", 6, &PeerId("b1".into()), T0(), &mut out);
        assert!(texts(&out, conn)[0].contains("peer-left"), "{out:?}");
        // A stale snapshot does not bring Bob back; a fresh one without Cy removes Cy.
        out.clear();
        a.remote_snapshot("r", 5, vec![remote("b1", "Bob", "b")], T0(), &mut out);
        assert!(out.is_empty(), "{out:?}");
        a.remote_snapshot("r", 7, vec![], T0(), &mut out);
        let t = texts(&out, conn);
        assert!(t.len() == 1 && t[0].contains("c1"), "{t:?}");
    }

    #[test]
    fn spoofed_remote_sender_is_dropped() {
        let mut a = node("a");
        let (conn, seat) = join(&mut a, "r", "Ada", None);
        let mut out = Vec::new();
        let members = vec![remote("b1", "Bob", "b")];
        let result = ClaimResult::Seated {
            ver: 1,
            password: None,
            members,
            sfu: None,
        };
        a.claimed(conn, seat.clone(), result, T0(), &mut out);
        out.clear();
        let to = seat.id.clone();
        a.remote_signal("r", &PeerId("mallory".into()), &to, "x".into(), &mut out);
        a.remote_signal("other", &PeerId("b1".into()), &to, "x".into(), &mut out);
        assert!(out.is_empty(), "{out:?}");
        a.remote_signal("r", &PeerId("b1".into()), &to, "hi".into(), &mut out);
        assert_eq!(
            out,
            vec![Output::Relay {
                conn,
                text: "hi".into(),
                from: None
            }]
        );
    }

    #[test]
    fn a_signal_to_a_remote_member_goes_to_its_node_stamped() {
        let mut a = node("a");
        let (conn, seat) = join(&mut a, "r", "Ada", None);
        let mut out = Vec::new();
        let result = ClaimResult::Seated {
            ver: 1,
            password: None,
            members: vec![remote("b1", "Bob", "b")],
            sfu: None,
        };
        a.claimed(conn, seat.clone(), result, T0(), &mut out);
        out.clear();
        a.receive(
            conn,
            r#"{"type":"signal","to":"b1","from":"forged","data":{"x":1}}"#,
            T0(),
            &mut out,
        );
        match out.as_slice() {
            [Output::Cluster(ClusterOp::Forward { node, to, text, .. })] => {
                assert_eq!((node.as_str(), to.as_str()), ("b", "b1"));
                assert!(text.contains(seat.id.as_str()) && !text.contains("forged"));
            }
            other => panic!("{other:?}"),
        }
    }

    /// Node "a" with Ada seated in room "r" beside Bob (node b) and Cy (node c), at version 3.
    fn ada_with_bob_and_cy() -> (Rooms, ConnId, Seat, Vec<RemotePeer>) {
        let mut a = node("a");
        let (conn, seat) = join(&mut a, "r", "Ada", None);
        let members = vec![remote("b1", "Bob", "b"), remote("c1", "Cy", "c")];
        let mut out = Vec::new();
        a.claimed(
            conn,
            seat.clone(),
            seated(3, members.clone()),
            T0(),
            &mut out,
        );
        (a, conn, seat, members)
    }

    #[test]
    fn a_dead_node_s_members_leave() {
        let (mut a, conn, _, _) = ada_with_bob_and_cy();
        let mut out = Vec::new();
        a.node_gone("b", 4, T0(), &mut out);
        let t = texts(&out, conn);
        assert!(t.len() == 1 && t[0].contains("b1"), "{t:?}");
        assert_eq!(a.remote_nodes(), vec!["c".to_string()]);
    }

    /// Node b is reaped at version 5, but came back and seated Bob again (version 6) and that
    /// news was applied here before the reaping's answer: Bob stays.
    #[test]
    fn a_node_reaped_before_its_return_keeps_the_members_it_seated_again() {
        let (mut a, _, _, _) = ada_with_bob_and_cy();
        let mut out = Vec::new();
        a.remote_left("r", 4, &PeerId("b1".into()), T0(), &mut out);
        a.remote_joined("r", 6, remote("b2", "Bob", "b"), &mut out);
        out.clear();
        a.node_gone("b", 5, T0(), &mut out);
        assert!(out.is_empty(), "{out:?}");
        assert_eq!(a.remote_nodes(), vec!["b".to_string(), "c".to_string()]);
    }

    fn seated(ver: u64, members: Vec<RemotePeer>) -> ClaimResult {
        ClaimResult::Seated {
            ver,
            password: None,
            members,
            sfu: None,
        }
    }

    fn peer_ids(welcome: &str) -> Vec<String> {
        let v: serde_json::Value = serde_json::from_str(welcome).unwrap();
        v["peers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["id"].as_str().unwrap().to_owned())
            .collect()
    }

    /// Bob (node b) joined before Ada (here), but this node heard of him after seating her:
    /// a later joiner's welcome still lists Bob first, as the store does.
    #[test]
    fn a_welcome_lists_the_others_in_the_store_s_join_order() {
        let mut a = node("a");
        let (ada, seat) = join(&mut a, "r", "Ada", None);
        let mut out = Vec::new();
        a.claimed(ada, seat.clone(), seated(2, vec![]), T0(), &mut out);
        a.remote_snapshot("r", 2, vec![remote("b1", "Bob", "b")], T0(), &mut out);
        let (cy, cy_seat) = join(&mut a, "r", "Cy", None);
        out.clear();
        let store = vec![
            remote("b1", "Bob", "b"),
            remote(seat.id.as_str(), "Ada", "a"),
        ];
        a.claimed(cy, cy_seat, seated(3, store), T0(), &mut out);
        let welcome = &texts(&out, cy)[0];
        assert_eq!(
            peer_ids(welcome),
            vec!["b1".to_string(), seat.id.0.clone()],
            "{welcome}"
        );
    }

    #[test]
    fn a_node_cut_off_from_the_store_lets_the_others_go_and_gets_them_back() {
        let (mut a, ada, seat, members) = ada_with_bob_and_cy();
        let mut out = Vec::new();
        a.store_lost(T0(), &mut out);
        let t = texts(&out, ada);
        assert_eq!(t.len(), 2, "{t:?}");
        assert!(t.iter().all(|m| m.contains("peer-left")), "{t:?}");
        assert!(t[0].contains("b1") && t[1].contains("c1"), "{t:?}");
        assert!(a.remote_nodes().is_empty());
        assert_eq!(a.seats(), vec![seat], "its own stay");
        // The store is back (versions start over): the snapshot brings them back, once.
        out.clear();
        a.forget_versions();
        a.remote_snapshot("r", 1, members.clone(), T0(), &mut out);
        a.remote_snapshot("r", 1, members, T0(), &mut out);
        let t = texts(&out, ada);
        assert_eq!(t.len(), 2, "{t:?}");
        assert!(t.iter().all(|m| m.contains("peer-joined")), "{t:?}");
    }

    #[test]
    fn without_the_store_a_node_decides_alone_and_keeps_the_seat_for_later() {
        let mut a = node("a");
        let (conn, seat) = join(&mut a, "r", "Ada", Some("pw"));
        let mut out = Vec::new();
        a.claimed(conn, seat.clone(), ClaimResult::Unavailable, T0(), &mut out);
        assert!(texts(&out, conn)[0].contains("welcome"), "{out:?}");
        let seats = a.seats();
        assert_eq!(seats.len(), 1);
        assert_eq!(seats[0].password, Some(password_digest("pw")));
        // A second joiner with the wrong password is refused from what this node knows.
        let (conn2, seat2) = join(&mut a, "r", "Eve", Some("nope"));
        out.clear();
        a.claimed(conn2, seat2, ClaimResult::Unavailable, T0(), &mut out);
        assert!(texts(&out, conn2)[0].contains("wrong-password"), "{out:?}");
    }
}
