//! The room logic of the Confab signaling server, as a pure state machine.
//!
//! [`Rooms`] is fed connection events, decoded frames and the current time, and answers with
//! [`Output`]s: text to send to a connection, or a connection to close. It owns no socket, no
//! task and no clock, so every rule of protocol v1 is tested here without I/O. The shell
//! (`confab-signal`) owns the sockets and carries the outputs out; it decodes frames with
//! [`decode`] before it takes its lock, and hands the result to [`Rooms::apply`].
//!
//! Invariants:
//! - a signal's `from` is always the sender's own id, stamped here; a client's `from` is ignored;
//! - a signal reaches only a peer of the sender's own room; otherwise `unknown-peer`, nothing relayed;
//! - ids come from a seeded CSPRNG (128 bits), are unique among live peers and never reused in practice;
//! - an error never closes the connection unless the client keeps erring (its error budget runs
//!   out), and errors caused by others (a signal to a peer that just left, a limit on a shared
//!   address, a room locked by someone else's guessing) never count against it;
//! - room updates (`welcome`, `peer-joined`, `peer-left`) are [`Output::Update`]s: the shell
//!   delivers them or disconnects the client, never drops them;
//! - everything kept per address or per room is bounded ([`Config::tracked_addresses`],
//!   [`Config::departed_per_room`]).

use confab_protocol::{
    check_name, check_password, check_room, ClientMessage, ErrorCode, PeerId, PeerInfo,
    ServerMessage, SignalData,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sha2::{Digest, Sha256};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::fmt;
use std::net::IpAddr;
use std::time::{Duration, Instant};
use subtle::ConstantTimeEq;

/// A connection, as numbered by the state machine. Never sent to clients.
pub type ConnId = u64;

/// WebSocket close code for policy violations.
pub const CLOSE_POLICY: u16 = 1008;
/// WebSocket close code for "try again later".
pub const CLOSE_TRY_AGAIN: u16 = 1013;
/// Close code of a connection whose member joined again from another connection (its rejoin
/// token was presented): the client has moved on; it must not reconnect from this one.
pub const CLOSE_REPLACED: u16 = 4000;

/// How often idle per-address and per-room records are swept out.
const PRUNE_EVERY: Duration = Duration::from_secs(10);

/// Limits of the room logic.
#[derive(Debug, Clone)]
pub struct Config {
    /// Peers a room holds at most.
    pub room_capacity: usize,
    /// Connections held at most (joined or not).
    pub max_connections: usize,
    /// Rooms that may exist at once.
    pub max_rooms: usize,
    /// Largest text frame accepted, in bytes; larger ones get `too-large`.
    pub max_message_bytes: usize,
    /// Messages a connection may send per second, sustained.
    pub rate_per_sec: f64,
    /// Messages a connection may send in a burst.
    pub rate_burst: f64,
    /// A connection that has not joined a room this long after connecting (or leaving) is closed.
    pub join_timeout: Duration,
    /// Errors a connection may cause in a burst before it is closed (refills one per second).
    pub error_budget: f64,
    /// Joins one connection may make in a burst, and per second after that (a leave needs no
    /// token of its own: it always follows a join).
    pub join_burst: f64,
    pub join_per_sec: f64,
    /// Joins one address (an IPv4 address, or an IPv6 /64) may make in a burst, and per
    /// second after that, over all its connections.
    pub address_join_burst: f64,
    pub address_join_per_sec: f64,
    /// Wrong passwords one address may give before it must wait (1 s, doubling with every
    /// further failure up to `password_backoff_max`).
    pub password_failures_per_address: u32,
    /// Wrong passwords a room may receive (from all addresses together) before it stops
    /// answering addresses it does not know, with the same backoff.
    pub password_failures_per_room: u32,
    /// The longest wait the password backoff imposes.
    pub password_backoff_max: Duration,
    /// Failures are forgotten after this long without a new one.
    pub password_memory: Duration,
    /// Addresses (and rooms) whose join and password history is kept at most; the oldest
    /// idle entries make room for new ones. (Addresses with live connections are kept on top
    /// of this, at most one per connection.)
    pub tracked_addresses: usize,
    /// Ids of peers that left, remembered per room so that signals still in flight to them
    /// are not held against their senders.
    pub departed_per_room: usize,
    /// How long a departed id is remembered.
    pub departed_memory: Duration,
    /// The SFU rooms' calls go through (`welcome` names it), if any.
    pub sfu: Option<Sfu>,
}

/// An SFU and the secret the VideoRoom rooms and PINs are derived from. Every node of a
/// cluster needs the same secret, so that every node can make and remove any member's
/// VideoRoom room.
#[derive(Clone)]
pub struct Sfu {
    pub url: String,
    pub secret: String,
    /// Calls go through the SFU once a room holds more than this many people (0: always).
    pub above: u32,
    /// Janus VideoRoom's `admin_key`, when it has one (only who knows it makes rooms). Used by
    /// the server's SFU shell only; never sent.
    pub admin_key: Option<String>,
}

impl std::fmt::Debug for Sfu {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sfu")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

impl Sfu {
    fn digest(&self, what: &str, room: &str, token: &str) -> [u8; 32] {
        let mut h = Sha256::new();
        for part in [
            self.secret.as_bytes(),
            what.as_bytes(),
            room.as_bytes(),
            token.as_bytes(),
        ] {
            h.update((part.len() as u64).to_le_bytes());
            h.update(part);
        }
        h.finalize().into()
    }

    /// The VideoRoom room and PIN of the member of `room` holding `token`: **every member
    /// publishes in a VideoRoom room of its own**, which lets in only its token and requires
    /// every subscription to name the private id of a participant in it. Only the member is
    /// ever in it, so only the member can subscribe to what it publishes there: it subscribes
    /// for the people its call let in and hands them the subscriptions (`sfu-offer`). Keyed
    /// hashes of the room's name and the token, so that nobody else can work them out.
    pub fn info(&self, room: &str, token: &str) -> confab_protocol::SfuInfo {
        let digest = |what: &str| self.digest(what, room, token);
        let id = digest("videoroom-id");
        let mut n = [0u8; 8];
        n.copy_from_slice(&id[..8]);
        let room_id = (u64::from_le_bytes(n) & confab_protocol::MAX_SFU_ROOM).max(1);
        confab_protocol::SfuInfo {
            url: self.url.clone(),
            room: room_id,
            pin: hex::encode(&digest("videoroom-pin")[..16]),
            token: None,
            above: self.above,
        }
    }

    /// The SFU's WebSocket URL.
    pub fn ws_url(&self) -> &str {
        confab_protocol::sfu_ws_url(&self.url)
    }

    /// The member's VideoRoom room's secret (to edit, kick from or destroy it): never sent to
    /// anyone.
    pub fn secret(&self, room: &str, token: &str) -> String {
        hex::encode(&self.digest("videoroom-secret", room, token)[..16])
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            room_capacity: 8,
            max_connections: 10_000,
            max_rooms: 10_000,
            max_message_bytes: 64 * 1024,
            rate_per_sec: 50.0,
            rate_burst: 200.0,
            join_timeout: Duration::from_secs(30),
            error_budget: 20.0,
            join_burst: 5.0,
            join_per_sec: 0.5,
            address_join_burst: 60.0,
            address_join_per_sec: 2.0,
            password_failures_per_address: 5,
            password_failures_per_room: 20,
            password_backoff_max: Duration::from_secs(300),
            password_memory: Duration::from_secs(15 * 60),
            tracked_addresses: 20_000,
            departed_per_room: 32,
            departed_memory: Duration::from_secs(60),
            sfu: None,
        }
    }
}

/// A client's address as the limits count it: an IPv4 address, or the /64 network of an IPv6
/// address (one host usually holds a whole /64, so per-address counts would be free to dodge).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AddrKey {
    V4([u8; 4]),
    V6Net([u8; 8]),
}

impl From<IpAddr> for AddrKey {
    fn from(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V4(v4) => AddrKey::V4(v4.octets()),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => AddrKey::V4(v4.octets()),
                None => {
                    let o = v6.octets();
                    AddrKey::V6Net([o[0], o[1], o[2], o[3], o[4], o[5], o[6], o[7]])
                }
            },
        }
    }
}

impl fmt::Display for AddrKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AddrKey::V4(o) => write!(f, "{}", std::net::Ipv4Addr::from(*o)),
            AddrKey::V6Net(o) => {
                let mut full = [0u8; 16];
                full[..8].copy_from_slice(o);
                write!(f, "{}/64", std::net::Ipv6Addr::from(full))
            }
        }
    }
}

/// What the shell must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Send one text frame to a connection (an error): if it does not fit the connection's
    /// queue right now, it may be dropped.
    Send { conn: ConnId, text: String },
    /// A room update (`welcome`, `peer-joined`, `peer-left`): deliver it, or, when the
    /// connection cannot take it, disconnect the connection ([`Rooms::disconnect`]) so that it
    /// learns the room afresh when it joins again. Never drop it.
    Update { conn: ConnId, text: String },
    /// A signal relayed from `from` to `conn`. If `conn` cannot take it now, the sender is
    /// told (a flood must not get its target disconnected).
    Relay {
        conn: ConnId,
        text: String,
        /// The sender's connection; `None` when another node relayed it (cluster).
        from: Option<ConnId>,
    },
    /// Close a connection with a WebSocket close code and reason. The state machine has
    /// already forgotten it (and told its room).
    Close {
        conn: ConnId,
        code: u16,
        reason: String,
    },
    /// Work for the cluster shell (only from a clustered [`Rooms`]).
    Cluster(ClusterOp),
    /// Work for the SFU shell (only with [`Config::sfu`]): each member's VideoRoom room is made
    /// and removed by the server, the only one that knows its secret ([`Sfu::secret`]).
    Sfu(SfuOp),
}

/// What the server does at the SFU for a member of a room (by the room's name and the member's
/// token; [`Sfu::info`] and [`Sfu::secret`] say which VideoRoom room and with what). Its
/// `Debug` leaves the tokens out: they let whoever holds them into the member's VideoRoom
/// room, and ops are logged.
#[derive(Clone, PartialEq, Eq)]
pub enum SfuOp {
    /// A member was given `token` (in its `welcome`): make its VideoRoom room, unless it
    /// exists (the shell also checks for its members' rooms every few seconds and makes them
    /// again if Janus lost them).
    Make { room: String, token: String },
    /// The member holding `token` has left: remove its VideoRoom room, and with it its
    /// publishing and every subscription it opened (whoever it handed them to stops receiving
    /// it), unless a member holds the token again by then ([`Rooms::sfu_members`]). At once if
    /// the member said `leave`; after a wait if its connection went (a client whose signaling
    /// is away keeps its media meanwhile, and publishes anew when it is back).
    Drop {
        room: String,
        token: String,
        /// The member said `leave`: nothing to wait for.
        at_once: bool,
    },
}

/// Stands for a token in `Debug` output.
const HIDDEN: &str = "<hidden>";

impl fmt::Debug for SfuOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SfuOp::Make { room, .. } => f
                .debug_struct("Make")
                .field("room", room)
                .field("token", &HIDDEN)
                .finish(),
            SfuOp::Drop { room, at_once, .. } => f
                .debug_struct("Drop")
                .field("room", room)
                .field("token", &HIDDEN)
                .field("at_once", at_once)
                .finish(),
        }
    }
}

/// A member's own place at the SFU (its `welcome` gives it): the token that lets it into its
/// own VideoRoom room, which is keyed on it (not in its `Debug`).
#[derive(Clone, PartialEq, Eq)]
pub struct SfuSeat {
    pub token: String,
}

impl fmt::Debug for SfuSeat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SfuSeat").field("token", &HIDDEN).finish()
    }
}

impl SfuSeat {
    /// The token, as the cluster stores it.
    pub fn encode(&self) -> String {
        self.token.clone()
    }

    /// The reverse of [`SfuSeat::encode`] (an older node's `FEED:TOKEN` too); `None` for
    /// anything else (an empty field: a node without an SFU).
    pub fn decode(s: &str) -> Option<SfuSeat> {
        let token = s.rsplit_once(':').map_or(s, |(_, t)| t);
        let ok =
            (1..=64).contains(&token.len()) && token.bytes().all(|b| b.is_ascii_alphanumeric());
        ok.then(|| SfuSeat {
            token: token.into(),
        })
    }
}

/// The tokens of a room's members ([`Rooms::sfu_members`]): whose VideoRoom rooms stay. Its
/// `Debug` counts them.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct SfuMembers {
    /// On every node this one knows of.
    pub tokens: Vec<String>,
}

impl fmt::Debug for SfuMembers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SfuMembers")
            .field("tokens", &self.tokens.len())
            .finish()
    }
}

/// Why a new connection was refused; send `text`, then close with `code`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub text: String,
    pub code: u16,
    pub reason: String,
}

/// One text frame, decoded without the state machine (so the shell can do it outside its
/// lock): [`decode`] makes it, [`Rooms::apply`] takes it.
#[derive(Debug, Clone)]
pub enum Inbound {
    Message(ClientMessage),
    /// Over the size limit (this many bytes); not parsed.
    TooLarge(usize),
    /// Not a valid message; the reason, for the client.
    Invalid(String),
}

/// Decodes one text frame: a frame over `max_message_bytes` is not even parsed.
pub fn decode(text: &str, max_message_bytes: usize) -> Inbound {
    if text.len() > max_message_bytes {
        return Inbound::TooLarge(text.len());
    }
    match ClientMessage::decode(text) {
        Ok(msg) => Inbound::Message(msg),
        Err(e) => Inbound::Invalid(e.message),
    }
}

#[derive(Debug, Clone)]
struct Bucket {
    tokens: f64,
    capacity: f64,
    per_sec: f64,
    last: Instant,
}

impl Bucket {
    fn new(capacity: f64, per_sec: f64, now: Instant) -> Self {
        Bucket {
            tokens: capacity,
            capacity,
            per_sec,
            last: now,
        }
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = self.last.max(now);
        self.tokens = (self.tokens + elapsed * self.per_sec).min(self.capacity);
    }

    /// Takes one token if there is one.
    fn take(&mut self, now: Instant) -> bool {
        self.refill(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Time until the next token.
    fn wait(&self) -> Duration {
        let missing = (1.0 - self.tokens).max(0.0);
        Duration::from_secs_f64(missing / self.per_sec.max(1e-9)).min(Duration::from_secs(3600))
    }

    fn full(&mut self, now: Instant) -> bool {
        self.refill(now);
        self.tokens >= self.capacity
    }
}

/// Wrong passwords, with backoff.
#[derive(Debug, Clone, Copy)]
struct Failures {
    count: u32,
    last: Instant,
    blocked_until: Option<Instant>,
}

impl Failures {
    fn new(now: Instant) -> Self {
        Failures {
            count: 0,
            last: now,
            blocked_until: None,
        }
    }

    fn forgotten(&self, now: Instant, memory: Duration) -> bool {
        self.count == 0 || now.saturating_duration_since(self.last) >= memory
    }

    /// How long attempts are still refused.
    fn blocked(&mut self, now: Instant, memory: Duration) -> Option<Duration> {
        if self.forgotten(now, memory) {
            *self = Failures::new(now);
        }
        self.blocked_until
            .filter(|&until| until > now)
            .map(|until| until - now)
    }

    /// One more failure: after `free` of them, a wait of 1 s, doubling with each further one.
    fn record(&mut self, now: Instant, free: u32, memory: Duration, max: Duration) {
        if self.forgotten(now, memory) {
            *self = Failures::new(now);
        }
        self.count = self.count.saturating_add(1);
        self.last = now;
        if self.count >= free {
            let doublings = (self.count - free).min(20);
            let wait = Duration::from_secs(1u64 << doublings).min(max);
            self.blocked_until = Some(now + wait);
        }
    }
}

/// What is known about one address.
#[derive(Debug)]
struct AddrState {
    joins: Bucket,
    failures: Failures,
    /// Live connections from it (an entry with any is never evicted).
    conns: u32,
    last_seen: Instant,
}

#[derive(Debug)]
struct Joined {
    id: PeerId,
    room: String,
}

#[derive(Debug)]
struct Conn {
    joined: Option<Joined>,
    join_deadline: Option<Instant>,
    /// Has an entry in `Rooms::deadlines`.
    queued: bool,
    rate: Bucket,
    errors: Bucket,
    joins: Bucket,
    addr: AddrKey,
}

#[derive(Debug)]
struct Member {
    id: PeerId,
    name: String,
    at: Place,
    /// Local members: the secret their `welcome` gave, which a later join of the same room
    /// presents to replace this membership at once ([`Rooms::replace_former`]).
    rejoin: Option<[u8; 16]>,
    /// In a room with an SFU: the token the member was given.
    sfu: Option<SfuSeat>,
}

/// Where a member is held: on a connection of this server, or (in a cluster) by another node.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Place {
    Local { conn: ConnId, addr: AddrKey },
    Remote { node: String },
}

impl Member {
    fn conn(&self) -> Option<ConnId> {
        match self.at {
            Place::Local { conn, .. } => Some(conn),
            Place::Remote { .. } => None,
        }
    }

    fn addr(&self) -> Option<AddrKey> {
        match self.at {
            Place::Local { addr, .. } => Some(addr),
            Place::Remote { .. } => None,
        }
    }
}

#[derive(Debug)]
struct Departed {
    id: PeerId,
    /// Local members only: remote ones' addresses are their node's business.
    addr: Option<AddrKey>,
    at: Instant,
}

#[derive(Debug, Default)]
struct Room {
    /// In join order (remote members in the order this node learned of them).
    members: Vec<Member>,
    password: Option<[u8; 32]>,
    /// The most recent departures, oldest first.
    departed: VecDeque<Departed>,
    /// Cluster only: the room's version in the shared store that this record reflects, and
    /// local joins waiting for their seat.
    ver: u64,
    claims: usize,
}

impl Room {
    fn forget_departed(&mut self, now: Instant, memory: Duration) {
        while self
            .departed
            .front()
            .is_some_and(|d| now.saturating_duration_since(d.at) >= memory)
        {
            self.departed.pop_front();
        }
    }

    /// Whether `id` left this room lately.
    fn recently_left(&mut self, id: &PeerId, now: Instant, memory: Duration) -> bool {
        self.forget_departed(now, memory);
        self.departed.iter().any(|d| &d.id == id)
    }

    /// Whether someone from `addr` is in this room or left it lately.
    fn knows(&mut self, addr: AddrKey, now: Instant, memory: Duration) -> bool {
        self.forget_departed(now, memory);
        self.members.iter().any(|m| m.addr() == Some(addr))
            || self.departed.iter().any(|d| d.addr == Some(addr))
    }

    /// The connections of this server's members.
    fn local_conns(&self) -> impl Iterator<Item = ConnId> + '_ {
        self.members.iter().filter_map(Member::conn)
    }

    /// Whether the record may go: nobody here holds or waits for a seat.
    fn unused(&self) -> bool {
        self.claims == 0 && self.local_conns().next().is_none()
    }

    /// Sends `text` to every local member.
    fn tell_locals(&self, text: &str, out: &mut Vec<Output>) {
        for conn in self.local_conns() {
            out.push(Output::Update {
                conn,
                text: text.to_owned(),
            });
        }
    }

    /// Remembers a departure (bounded), so a signal still on its way is not held against its sender.
    fn depart(&mut self, id: PeerId, addr: Option<AddrKey>, now: Instant, config: &Config) {
        self.forget_departed(now, config.departed_memory);
        if config.departed_per_room > 0 {
            if self.departed.len() >= config.departed_per_room {
                self.departed.pop_front();
            }
            self.departed.push_back(Departed { id, addr, at: now });
        }
    }
}

fn password_digest(password: &str) -> [u8; 32] {
    Sha256::digest(password.as_bytes()).into()
}

/// Whether an error counts against the connection's error budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Blame {
    /// The client's own doing.
    Client,
    /// Someone else's doing (a peer that just left, a shared address, a room under attack).
    Others,
}

type Refused = (ErrorCode, String, Blame);

fn own(code: ErrorCode, message: impl Into<String>) -> Refused {
    (code, message.into(), Blame::Client)
}

fn seconds(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

/// All rooms and connections of one server.
pub struct Rooms {
    config: Config,
    rng: StdRng,
    next_conn: ConnId,
    conns: HashMap<ConnId, Conn>,
    rooms: HashMap<String, Room>,
    peers: HashMap<PeerId, ConnId>,
    /// Join deadlines, earliest first; at most one entry per connection (`Conn::queued`), so
    /// join/leave loops cannot grow it.
    deadlines: BinaryHeap<Reverse<(Instant, ConnId)>>,
    addrs: HashMap<AddrKey, AddrState>,
    /// Wrong passwords per room name (kept while the room comes and goes).
    room_failures: HashMap<String, Failures>,
    next_prune: Option<Instant>,
    /// This server is one node of several sharing rooms ([`Rooms::clustered`]).
    cluster: Option<cluster::Node>,
}

impl Rooms {
    /// `seed` feeds the id generator: give it 32 bytes from the OS in production, a constant in tests.
    pub fn new(config: Config, seed: [u8; 32]) -> Self {
        Rooms {
            config,
            rng: StdRng::from_seed(seed),
            next_conn: 1,
            conns: HashMap::new(),
            rooms: HashMap::new(),
            peers: HashMap::new(),
            deadlines: BinaryHeap::new(),
            addrs: HashMap::new(),
            room_failures: HashMap::new(),
            next_prune: None,
            cluster: None,
        }
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Connections held.
    pub fn connection_count(&self) -> usize {
        self.conns.len()
    }

    /// Rooms that exist (each has at least one peer).
    pub fn room_count(&self) -> usize {
        self.rooms.len()
    }

    /// Whether anyone is in `room` or joining it, here or (clustered) on a node this one
    /// has heard of.
    pub fn room_in_use(&self, room: &str) -> bool {
        self.rooms
            .get(room)
            .is_some_and(|r| r.claims > 0 || !r.members.is_empty())
    }

    /// This node's own members with a place at the SFU, by room: (room, their tokens).
    pub fn sfu_local(&self) -> Vec<(String, Vec<String>)> {
        let mut out: Vec<(String, Vec<String>)> = self
            .rooms
            .iter()
            .map(|(name, r)| {
                let tokens = r
                    .members
                    .iter()
                    .filter(|m| m.conn().is_some())
                    .filter_map(|m| m.sfu.as_ref().map(|s| s.token.clone()))
                    .collect();
                (name.clone(), tokens)
            })
            .filter(|(_, t): &(String, Vec<String>)| !t.is_empty())
            .collect();
        out.sort();
        out
    }

    /// The members of `room` whose VideoRoom rooms stay, as far as this node can tell.
    pub fn sfu_members(&self, room: &str) -> SfuMembers {
        let members = self.rooms.get(room).into_iter().flat_map(|r| &r.members);
        SfuMembers {
            tokens: members
                .filter_map(|m| m.sfu.as_ref())
                .map(|s| s.token.clone())
                .collect(),
        }
    }

    /// Addresses and room names with a join or password history kept.
    pub fn tracked_count(&self) -> usize {
        self.addrs.len() + self.room_failures.len()
    }

    /// A new connection from `ip`. Refused when the server holds its maximum.
    pub fn connect(&mut self, ip: IpAddr, now: Instant) -> Result<ConnId, Refusal> {
        if self.conns.len() >= self.config.max_connections {
            return Err(Refusal {
                text: ServerMessage::error(
                    ErrorCode::ServerFull,
                    "the server holds as many connections as it can; try again later",
                )
                .encode(),
                code: CLOSE_TRY_AGAIN,
                reason: "server full".into(),
            });
        }
        let addr = AddrKey::from(ip);
        self.address(addr, now).conns += 1;
        let conn = self.next_conn;
        self.next_conn += 1;
        let deadline = now + self.config.join_timeout;
        self.conns.insert(
            conn,
            Conn {
                joined: None,
                join_deadline: Some(deadline),
                queued: true,
                rate: Bucket::new(self.config.rate_burst, self.config.rate_per_sec, now),
                errors: Bucket::new(self.config.error_budget, 1.0, now),
                joins: Bucket::new(self.config.join_burst, self.config.join_per_sec, now),
                addr,
            },
        );
        self.deadlines.push(Reverse((deadline, conn)));
        Ok(conn)
    }

    /// The connection is gone (closed by either side). Its room hears `peer-left`.
    pub fn disconnect(&mut self, conn: ConnId, now: Instant, out: &mut Vec<Output>) {
        self.leave_room(conn, false, now, out);
        if let Some(c) = self.conns.remove(&conn) {
            if let Some(a) = self.addrs.get_mut(&c.addr) {
                a.conns = a.conns.saturating_sub(1);
                a.last_seen = now;
            }
        }
    }

    /// Closes connections whose join deadline has passed, and (every 10 s) forgets address and
    /// room records that hold nothing any more.
    pub fn tick(&mut self, now: Instant, out: &mut Vec<Output>) {
        while let Some(&Reverse((deadline, conn))) = self.deadlines.peek() {
            if deadline > now {
                break;
            }
            self.deadlines.pop();
            let Some(c) = self.conns.get_mut(&conn) else {
                continue;
            };
            c.queued = false;
            match c.join_deadline {
                // Re-armed by a later leave: queue the new deadline instead.
                Some(d) if d > deadline => {
                    c.queued = true;
                    self.deadlines.push(Reverse((d, conn)));
                    continue;
                }
                Some(_) => {}
                None => continue,
            }
            {
                let limit = self.config.join_timeout;
                self.close(
                    conn,
                    CLOSE_POLICY,
                    format!("no join within {limit:?}"),
                    now,
                    out,
                );
            }
        }
        if self.next_prune.is_none_or(|t| t <= now) {
            self.prune(now);
            self.next_prune = Some(now + PRUNE_EVERY);
        }
    }

    /// The earliest join deadline [`Rooms::tick`] must act on. (Call `tick` also every few
    /// seconds regardless: it forgets expired address and room records then.)
    pub fn next_deadline(&self) -> Option<Instant> {
        self.deadlines.peek().map(|&Reverse((d, _))| d)
    }

    /// One text frame from a connection: [`decode`] and [`Rooms::apply`] in one.
    pub fn receive(&mut self, conn: ConnId, text: &str, now: Instant, out: &mut Vec<Output>) {
        let inbound = decode(text, self.config.max_message_bytes);
        self.apply(conn, inbound, now, out);
    }

    /// One decoded text frame from a connection.
    pub fn apply(&mut self, conn: ConnId, inbound: Inbound, now: Instant, out: &mut Vec<Output>) {
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        if !c.rate.take(now) {
            let msg = format!(
                "slow down: at most {} messages a second",
                self.config.rate_per_sec
            );
            self.fail(conn, own(ErrorCode::RateLimited, msg), now, out);
            return;
        }
        let msg = match inbound {
            Inbound::Message(msg) => msg,
            Inbound::TooLarge(len) => {
                let msg = format!(
                    "a message may be at most {} bytes; this one has {len}",
                    self.config.max_message_bytes,
                );
                self.fail(conn, own(ErrorCode::TooLarge, msg), now, out);
                return;
            }
            Inbound::Invalid(reason) => {
                self.fail(conn, own(ErrorCode::BadMessage, reason), now, out);
                return;
            }
        };
        let result = match msg {
            ClientMessage::Join {
                room,
                name,
                password,
                rejoin,
            } => self.join(conn, room, name, password, rejoin, now, out),
            ClientMessage::Signal { to, data } => self.signal(conn, to, data, now, out),
            ClientMessage::Leave => {
                if self.leave_room(conn, true, now, out) {
                    // Back to waiting for a join, with a fresh deadline.
                    let deadline = now + self.config.join_timeout;
                    if let Some(c) = self.conns.get_mut(&conn) {
                        c.join_deadline = Some(deadline);
                        if !c.queued {
                            c.queued = true;
                            self.deadlines.push(Reverse((deadline, conn)));
                        }
                    }
                    Ok(())
                } else {
                    Err(own(ErrorCode::NotJoined, "you are not in a room"))
                }
            }
            ClientMessage::Ping => {
                out.push(Output::Send {
                    conn,
                    text: ServerMessage::Pong.encode(),
                });
                Ok(())
            }
        };
        if let Err(refused) = result {
            self.fail(conn, refused, now, out);
        }
    }

    /// A binary frame: not part of protocol v1.
    pub fn receive_binary(&mut self, conn: ConnId, now: Instant, out: &mut Vec<Output>) {
        self.fail(
            conn,
            own(
                ErrorCode::BadMessage,
                "binary frames are not part of protocol v1; send JSON text frames",
            ),
            now,
            out,
        );
    }

    /// Tells a client about a message too large even to read (the shell's hard limit): the error,
    /// then the close.
    pub fn reject_unreadable(&mut self, conn: ConnId, now: Instant, out: &mut Vec<Output>) {
        let text = ServerMessage::error(
            ErrorCode::TooLarge,
            format!(
                "a message may be at most {} bytes",
                self.config.max_message_bytes
            ),
        )
        .encode();
        out.push(Output::Send { conn, text });
        self.close(conn, 1009, "message too big".into(), now, out);
    }

    /// The record of an address, made if needed (making room by forgetting the stalest idle
    /// record when the table is full).
    fn address(&mut self, addr: AddrKey, now: Instant) -> &mut AddrState {
        if !self.addrs.contains_key(&addr) && self.addrs.len() >= self.config.tracked_addresses {
            self.prune(now);
            if self.addrs.len() >= self.config.tracked_addresses {
                let stalest = self
                    .addrs
                    .iter()
                    .filter(|(_, a)| a.conns == 0)
                    .min_by_key(|(_, a)| a.last_seen.max(a.failures.last))
                    .map(|(k, _)| *k);
                if let Some(k) = stalest {
                    self.addrs.remove(&k);
                }
            }
        }
        let config = &self.config;
        self.addrs.entry(addr).or_insert_with(|| AddrState {
            joins: Bucket::new(config.address_join_burst, config.address_join_per_sec, now),
            failures: Failures::new(now),
            conns: 0,
            last_seen: now,
        })
    }

    /// The failure record of a room name, made if needed (bounded like the addresses).
    fn room_failures(&mut self, room: &str, now: Instant) -> &mut Failures {
        if !self.room_failures.contains_key(room)
            && self.room_failures.len() >= self.config.tracked_addresses
        {
            self.prune(now);
            if self.room_failures.len() >= self.config.tracked_addresses {
                let stalest = self
                    .room_failures
                    .iter()
                    .min_by_key(|(_, f)| f.last)
                    .map(|(k, _)| k.clone());
                if let Some(k) = stalest {
                    self.room_failures.remove(&k);
                }
            }
        }
        self.room_failures
            .entry(room.to_owned())
            .or_insert_with(|| Failures::new(now))
    }

    /// Forgets address and room records that hold nothing any more.
    fn prune(&mut self, now: Instant) {
        let memory = self.config.password_memory;
        self.addrs
            .retain(|_, a| a.conns > 0 || !a.joins.full(now) || !a.failures.forgotten(now, memory));
        self.room_failures.retain(|_, f| !f.forgotten(now, memory));
    }

    #[allow(clippy::too_many_arguments)]
    fn join(
        &mut self,
        conn: ConnId,
        room: String,
        name: String,
        password: Option<String>,
        rejoin: Option<String>,
        now: Instant,
        out: &mut Vec<Output>,
    ) -> Result<(), Refused> {
        let Some(c) = self.conns.get(&conn) else {
            return Ok(());
        };
        if let Some(j) = &c.joined {
            return Err(own(
                ErrorCode::AlreadyJoined,
                format!("you are already in room {}; leave it first", j.room),
            ));
        }
        if let Some(joining) = self.claiming(conn) {
            return Err(own(
                ErrorCode::AlreadyJoined,
                format!("you are already joining room {joining}; leave it first"),
            ));
        }
        let addr = c.addr;
        check_room(&room).map_err(|e| own(ErrorCode::InvalidRoom, e.to_string()))?;
        let name = check_name(&name).map_err(|e| own(ErrorCode::InvalidName, e.to_string()))?;
        let password = password.filter(|p| !p.is_empty());
        if let Some(p) = &password {
            check_password(p).map_err(|e| own(ErrorCode::BadMessage, e.to_string()))?;
        }

        // Join rate: this connection's own, then its address's (shared with others behind the
        // same NAT, so not held against this connection).
        let c = self.conns.get_mut(&conn).expect("checked above");
        if !c.joins.take(now) {
            let wait = seconds(c.joins.wait());
            return Err(own(
                ErrorCode::RateLimited,
                format!("you are joining too often; try again in {wait} s"),
            ));
        }
        let a = self.address(addr, now);
        a.last_seen = now;
        if !a.joins.take(now) {
            let wait = seconds(a.joins.wait());
            return Err((
                ErrorCode::RateLimited,
                format!("too many joins from your network address; try again in {wait} s"),
                Blame::Others,
            ));
        }

        // The same person back on a new connection: their old membership goes first (and with
        // it its seat, which a full room needs), and its place at the SFU carries over.
        let former = rejoin
            .as_deref()
            .and_then(|token| self.replace_former(conn, &room, token, now, out));

        // In a cluster the token may name a membership on another node: the store frees it.
        let replaces = rejoin
            .as_deref()
            .and_then(|t| <[u8; 16]>::try_from(hex::decode(t).ok()?).ok())
            .map(|t| RejoinToken(t).digest());
        let config = self.config.clone();
        let digest = password.as_deref().map(password_digest);
        // This membership's own token at the SFU: random, so that nobody can guess another's
        // (nor its room). Someone back with their rejoin token keeps their old membership's
        // (its VideoRoom room stays, and what they publish and receive there flows on: the
        // token proves it is them); in a cluster the store carries it over for a membership
        // on another node ([`ClaimResult::Seated`]).
        let sfu = config.sfu.is_some().then(|| {
            former.unwrap_or_else(|| SfuSeat {
                token: hex::encode(self.rng.random::<[u8; 16]>()),
            })
        });
        if !self.rooms.contains_key(&room) && self.rooms.len() >= config.max_rooms {
            return Err(own(
                ErrorCode::ServerFull,
                "the server holds as many rooms as it can; try again later",
            ));
        }
        let clustered = self.cluster.is_some();
        if clustered {
            // The shared store decides the password and the seat, atomically for every node;
            // this node's own backoff comes first.
            self.password_blocked(addr, &room, now)?;
        } else {
            self.check_seat(addr, &room, digest, now)?;
        }
        let seat = Seat {
            room,
            id: self.fresh_id(),
            name,
            password: digest,
            sfu,
            rejoin: Some(RejoinToken(self.rng.random())),
            replaces: replaces.filter(|_| clustered),
        };
        if clustered {
            self.claim(conn, seat, out);
        } else {
            self.seat(conn, seat, out);
        }
        Ok(())
    }

    /// Closes the connection of the local member of `room` that `token` was given to, if it is
    /// still there: its room hears `peer-left` now rather than when the dead connection is
    /// noticed (up to a minute). A token only ever names a membership of the room it is
    /// presented for; one that names nobody (the member already gone, or a guess) does nothing.
    /// The former membership's place at the SFU, if it had one.
    fn replace_former(
        &mut self,
        conn: ConnId,
        room: &str,
        token: &str,
        now: Instant,
        out: &mut Vec<Output>,
    ) -> Option<SfuSeat> {
        let token = <[u8; 16]>::try_from(hex::decode(token).ok()?).ok()?;
        let (former, sfu) = self.rooms.get(room).and_then(|r| {
            r.members.iter().find_map(|m| {
                let mine = m.rejoin.is_some_and(|t| bool::from(t.ct_eq(&token)));
                m.conn()
                    .filter(|&c| mine && c != conn)
                    .map(|c| (c, m.sfu.clone()))
            })
        })?;
        self.close(
            former,
            CLOSE_REPLACED,
            "you joined again from another connection".into(),
            now,
            out,
        );
        sfu
    }

    /// Whether this node may seat someone from `addr` in `room` from what it knows itself:
    /// the password first (whether a room is full is for those who may enter it), then room.
    fn check_seat(
        &mut self,
        addr: AddrKey,
        room: &str,
        digest: Option<[u8; 32]>,
        now: Instant,
    ) -> Result<(), Refused> {
        let Some(r) = self.rooms.get(room) else {
            return Ok(());
        };
        if let Some(want) = r.password {
            self.password_blocked(addr, room, now)?;
            let given = digest.unwrap_or_else(|| password_digest(""));
            if !bool::from(given.ct_eq(&want)) {
                return Err(self.wrong_password(addr, room, now));
            }
        }
        let r = self.rooms.get(room).expect("checked above");
        if r.members.len() >= self.config.room_capacity {
            return Err(self.room_full(room));
        }
        Ok(())
    }

    fn room_full(&self, room: &str) -> Refused {
        own(
            ErrorCode::RoomFull,
            format!("room {room} is full ({} people)", self.config.room_capacity),
        )
    }

    /// Refuses a password attempt while `addr`, or `room` for addresses it does not know, must
    /// wait after too many wrong ones.
    fn password_blocked(&mut self, addr: AddrKey, room: &str, now: Instant) -> Result<(), Refused> {
        let memory = self.config.password_memory;
        let departed_memory = self.config.departed_memory;
        let known = self
            .rooms
            .get_mut(room)
            .is_some_and(|r| r.knows(addr, now, departed_memory));
        if let Some(wait) = self
            .addrs
            .get_mut(&addr)
            .and_then(|a| a.failures.blocked(now, memory))
        {
            return Err((
                ErrorCode::RateLimited,
                format!(
                    "too many wrong passwords from your network address; try again in {} s",
                    seconds(wait)
                ),
                Blame::Others,
            ));
        }
        if !known {
            if let Some(wait) = self.room_failures(room, now).blocked(now, memory) {
                return Err((
                    ErrorCode::RateLimited,
                    format!(
                        "room {room} has had too many wrong passwords; try again in {} s",
                        seconds(wait)
                    ),
                    Blame::Others,
                ));
            }
        }
        Ok(())
    }

    /// Counts a wrong password against `addr` and `room`; the error for the client.
    fn wrong_password(&mut self, addr: AddrKey, room: &str, now: Instant) -> Refused {
        let config = &self.config;
        let (memory, max) = (config.password_memory, config.password_backoff_max);
        let (per_addr, per_room) = (
            config.password_failures_per_address,
            config.password_failures_per_room,
        );
        if let Some(a) = self.addrs.get_mut(&addr) {
            a.failures.record(now, per_addr, memory, max);
        }
        self.room_failures(room, now)
            .record(now, per_room, memory, max);
        own(
            ErrorCode::WrongPassword,
            format!("room {room} needs the right password"),
        )
    }

    /// Seats a connection in a room (made if needed, with `seat`'s password): its room hears
    /// `peer-joined`, it gets `welcome` with everyone already there.
    fn seat(&mut self, conn: ConnId, seat: Seat, out: &mut Vec<Output>) {
        let Seat {
            room,
            id,
            name,
            password: digest,
            sfu: sfu_seat,
            rejoin,
            ..
        } = seat;
        let Some(addr) = self.conns.get(&conn).map(|c| c.addr) else {
            return;
        };
        let rejoin: [u8; 16] = match rejoin {
            Some(t) => t.0,
            None => self.rng.random(),
        };
        let sfu = self.config.sfu.as_ref().map(|s| confab_protocol::SfuInfo {
            token: sfu_seat.as_ref().map(|s| s.token.clone()),
            ..s.info(&room, sfu_seat.as_ref().map_or("", |s| s.token.as_str()))
        });
        let r = self.rooms.entry(room.clone()).or_insert_with(|| Room {
            password: digest,
            ..Room::default()
        });
        let joined = ServerMessage::PeerJoined {
            id: id.clone(),
            name: name.clone(),
        }
        .encode();
        r.tell_locals(&joined, out);
        let welcome = ServerMessage::Welcome {
            id: id.clone(),
            room: room.clone(),
            peers: r
                .members
                .iter()
                .map(|m| PeerInfo {
                    id: m.id.clone(),
                    name: m.name.clone(),
                })
                .collect(),
            sfu,
            rejoin: Some(hex::encode(rejoin)),
        };
        out.push(Output::Update {
            conn,
            text: welcome.encode(),
        });
        if let Some(s) = &sfu_seat {
            out.push(Output::Sfu(SfuOp::Make {
                room: room.clone(),
                token: s.token.clone(),
            }));
        }
        r.members.push(Member {
            id: id.clone(),
            name,
            at: Place::Local { conn, addr },
            rejoin: Some(rejoin),
            sfu: sfu_seat,
        });
        self.peers.insert(id.clone(), conn);
        if let Some(c) = self.conns.get_mut(&conn) {
            c.joined = Some(Joined { id, room });
            c.join_deadline = None;
        }
    }

    fn signal(
        &mut self,
        conn: ConnId,
        to: PeerId,
        data: SignalData,
        now: Instant,
        out: &mut Vec<Output>,
    ) -> Result<(), Refused> {
        let Some(me) = self.conns.get(&conn).and_then(|c| c.joined.as_ref()) else {
            return Err(own(
                ErrorCode::NotJoined,
                "join a room before sending signals",
            ));
        };
        let target = self.peers.get(&to).copied().filter(|&t| {
            t != conn
                && self
                    .conns
                    .get(&t)
                    .and_then(|c| c.joined.as_ref())
                    .is_some_and(|j| j.room == me.room)
        });
        // In a cluster, a member held by another node is reached through it.
        let remote = match target {
            Some(_) => None,
            None => self.rooms.get(&me.room).and_then(|r| {
                r.members.iter().find_map(|m| match &m.at {
                    Place::Remote { node } if m.id == to => Some(node.clone()),
                    _ => None,
                })
            }),
        };
        if target.is_none() && remote.is_none() {
            // A peer that just left is not the sender's mistake: its signal was on its way.
            let memory = self.config.departed_memory;
            let blame = if self
                .rooms
                .get_mut(&me.room)
                .is_some_and(|r| r.recently_left(&to, now, memory))
            {
                Blame::Others
            } else {
                Blame::Client
            };
            return Err((
                ErrorCode::UnknownPeer,
                format!(
                    "no peer {} in room {}",
                    confab_protocol::truncate(to.as_str(), 40),
                    me.room
                ),
                blame,
            ));
        }
        let text = ServerMessage::Signal {
            from: me.id.clone(),
            data,
        }
        .encode();
        match (target, remote) {
            (Some(target), _) => out.push(Output::Relay {
                conn: target,
                text,
                from: Some(conn),
            }),
            (None, Some(node)) => out.push(Output::Cluster(ClusterOp::Forward {
                node,
                room: me.room.clone(),
                to,
                text,
                from: conn,
                sender: me.id.clone(),
            })),
            (None, None) => {}
        }
        Ok(())
    }

    /// Takes the connection out of its room, if it is in one.
    /// `said_leave`: the client asked to leave (else its connection went).
    fn leave_room(
        &mut self,
        conn: ConnId,
        said_leave: bool,
        now: Instant,
        out: &mut Vec<Output>,
    ) -> bool {
        if self.cancel_claim(conn) {
            return true;
        }
        let Some(c) = self.conns.get_mut(&conn) else {
            return false;
        };
        let Some(joined) = c.joined.take() else {
            return false;
        };
        let addr = c.addr;
        self.peers.remove(&joined.id);
        if self.cluster.is_some() {
            out.push(Output::Cluster(ClusterOp::Release {
                room: joined.room.clone(),
                id: joined.id.clone(),
            }));
        }
        if let Some(room) = self.rooms.get_mut(&joined.room) {
            let seat = room
                .members
                .iter()
                .find(|m| m.conn() == Some(conn))
                .and_then(|m| m.sfu.clone());
            if let Some(SfuSeat { token, .. }) = seat {
                out.push(Output::Sfu(SfuOp::Drop {
                    room: joined.room.clone(),
                    token,
                    at_once: said_leave,
                }));
            }
            room.members.retain(|m| m.conn() != Some(conn));
            if room.unused() {
                self.rooms.remove(&joined.room);
            } else {
                let left = ServerMessage::PeerLeft {
                    id: joined.id.clone(),
                }
                .encode();
                room.tell_locals(&left, out);
                room.depart(joined.id, Some(addr), now, &self.config);
            }
        }
        true
    }

    /// Answers a refusal: an error to the client, charged to its error budget when it was its
    /// own doing (and closing it when the budget is spent).
    fn fail(&mut self, conn: ConnId, refused: Refused, now: Instant, out: &mut Vec<Output>) {
        let (code, message, blame) = refused;
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        if blame == Blame::Others || c.errors.take(now) {
            out.push(Output::Send {
                conn,
                text: ServerMessage::error(code, message).encode(),
            });
        } else {
            self.close(conn, CLOSE_POLICY, "too many errors".into(), now, out);
        }
    }

    /// Closes a connection: forgets it (its room hears `peer-left`) and tells the shell.
    pub fn close(
        &mut self,
        conn: ConnId,
        code: u16,
        reason: String,
        now: Instant,
        out: &mut Vec<Output>,
    ) {
        if !self.conns.contains_key(&conn) {
            return;
        }
        self.disconnect(conn, now, out);
        out.push(Output::Close { conn, code, reason });
    }

    fn fresh_id(&mut self) -> PeerId {
        loop {
            let bytes: [u8; 16] = self.rng.random();
            let id = PeerId(hex::encode(bytes));
            if !self.peers.contains_key(&id) {
                return id;
            }
        }
    }
}

mod cluster;
pub use cluster::{ClaimResult, ClusterOp, RejoinToken, RemotePeer, Seat};

#[cfg(test)]
mod tests;
