//! The room logic of the Confab signaling server, as a pure state machine.
//!
//! [`Rooms`] is fed connection events, text frames and the current time, and answers with
//! [`Output`]s: text to send to a connection, or a connection to close. It owns no socket, no
//! task and no clock, so every rule of protocol v1 is tested here without I/O. The shell
//! (`confab-signal`) owns the sockets and carries the outputs out.
//!
//! Invariants:
//! - a signal's `from` is always the sender's own id, stamped here; a client's `from` is ignored;
//! - a signal reaches only a peer of the sender's own room; otherwise `unknown-peer`, nothing relayed;
//! - ids come from a seeded CSPRNG (128 bits), are unique among live peers and never reused in practice;
//! - an error never closes the connection unless the client keeps erring (its error budget runs out).

use confab_protocol::{
    validate_name, validate_password, validate_room, ClientMessage, ErrorCode, PeerId, PeerInfo,
    ServerMessage, SignalData,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sha2::{Digest, Sha256};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::time::{Duration, Instant};
use subtle::ConstantTimeEq;

/// A connection, as numbered by the state machine. Never sent to clients.
pub type ConnId = u64;

/// WebSocket close code for policy violations.
pub const CLOSE_POLICY: u16 = 1008;
/// WebSocket close code for "try again later".
pub const CLOSE_TRY_AGAIN: u16 = 1013;

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
        }
    }
}

/// What the shell must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Send one text frame to a connection.
    Send { conn: ConnId, text: String },
    /// A signal relayed from `from` to `conn`. If `conn` cannot take it now, the sender is
    /// told (a flood must not get its target disconnected).
    Relay {
        conn: ConnId,
        text: String,
        from: ConnId,
    },
    /// Close a connection with a WebSocket close code and reason. The state machine has
    /// already forgotten it (and told its room).
    Close {
        conn: ConnId,
        code: u16,
        reason: String,
    },
}

/// Why a new connection was refused; send `text`, then close with `code`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub text: String,
    pub code: u16,
    pub reason: String,
}

#[derive(Debug)]
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

    /// Takes one token if there is one.
    fn take(&mut self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = self.last.max(now);
        self.tokens = (self.tokens + elapsed * self.per_sec).min(self.capacity);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
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
}

#[derive(Debug)]
struct Member {
    conn: ConnId,
    id: PeerId,
    name: String,
}

#[derive(Debug)]
struct Room {
    /// In join order.
    members: Vec<Member>,
    password: Option<[u8; 32]>,
}

fn password_digest(password: &str) -> [u8; 32] {
    Sha256::digest(password.as_bytes()).into()
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

    /// A new connection. Refused when the server holds its maximum.
    pub fn connect(&mut self, now: Instant) -> Result<ConnId, Refusal> {
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
            },
        );
        self.deadlines.push(Reverse((deadline, conn)));
        Ok(conn)
    }

    /// The connection is gone (closed by either side). Its room hears `peer-left`.
    pub fn disconnect(&mut self, conn: ConnId, out: &mut Vec<Output>) {
        self.leave_room(conn, out);
        self.conns.remove(&conn);
    }

    /// Closes connections whose join deadline has passed.
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
                self.close(conn, CLOSE_POLICY, format!("no join within {limit:?}"), out);
            }
        }
    }

    /// The earliest moment [`Rooms::tick`] has something to do.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.deadlines.peek().map(|&Reverse((d, _))| d)
    }

    /// One text frame from a connection.
    pub fn receive(&mut self, conn: ConnId, text: &str, now: Instant, out: &mut Vec<Output>) {
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        if !c.rate.take(now) {
            let msg = format!(
                "slow down: at most {} messages a second",
                self.config.rate_per_sec
            );
            self.fail(conn, ErrorCode::RateLimited, msg, now, out);
            return;
        }
        if text.len() > self.config.max_message_bytes {
            let msg = format!(
                "a message may be at most {} bytes; this one has {}",
                self.config.max_message_bytes,
                text.len()
            );
            self.fail(conn, ErrorCode::TooLarge, msg, now, out);
            return;
        }
        let msg = match ClientMessage::decode(text) {
            Ok(msg) => msg,
            Err(e) => {
                self.fail(conn, ErrorCode::BadMessage, e.message, now, out);
                return;
            }
        };
        let result = match msg {
            ClientMessage::Join {
                room,
                name,
                password,
            } => self.join(conn, room, name, password, out),
            ClientMessage::Signal { to, data } => self.signal(conn, to, data, out),
            ClientMessage::Leave => {
                if self.leave_room(conn, out) {
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
                    Err((ErrorCode::NotJoined, "you are not in a room".to_owned()))
                }
            }
        };
        if let Err((code, message)) = result {
            self.fail(conn, code, message, now, out);
        }
    }

    /// A binary frame: not part of protocol v1.
    pub fn receive_binary(&mut self, conn: ConnId, now: Instant, out: &mut Vec<Output>) {
        self.fail(
            conn,
            ErrorCode::BadMessage,
            "binary frames are not part of protocol v1; send JSON text frames".into(),
            now,
            out,
        );
    }

    /// Tells a client about a message too large even to read (the shell's hard limit): the error,
    /// then the close.
    pub fn reject_unreadable(&mut self, conn: ConnId, out: &mut Vec<Output>) {
        let text = ServerMessage::error(
            ErrorCode::TooLarge,
            format!(
                "a message may be at most {} bytes",
                self.config.max_message_bytes
            ),
        )
        .encode();
        out.push(Output::Send { conn, text });
        self.close(conn, 1009, "message too big".into(), out);
    }

    fn join(
        &mut self,
        conn: ConnId,
        room: String,
        name: String,
        password: Option<String>,
        out: &mut Vec<Output>,
    ) -> Result<(), (ErrorCode, String)> {
        if let Some(j) = self.conns.get(&conn).and_then(|c| c.joined.as_ref()) {
            return Err((
                ErrorCode::AlreadyJoined,
                format!("you are already in room {}; leave it first", j.room),
            ));
        }
        validate_room(&room).map_err(|m| (ErrorCode::InvalidRoom, m))?;
        validate_name(&name).map_err(|m| (ErrorCode::InvalidName, m))?;
        let password = password.filter(|p| !p.is_empty());
        if let Some(p) = &password {
            validate_password(p).map_err(|m| (ErrorCode::BadMessage, m))?;
        }
        match self.rooms.get(&room) {
            Some(r) => {
                if r.members.len() >= self.config.room_capacity {
                    return Err((
                        ErrorCode::RoomFull,
                        format!("room {room} is full ({} people)", self.config.room_capacity),
                    ));
                }
                if let Some(want) = &r.password {
                    let given = password_digest(password.as_deref().unwrap_or(""));
                    if !bool::from(given.ct_eq(want)) {
                        return Err((
                            ErrorCode::WrongPassword,
                            format!("room {room} needs the right password"),
                        ));
                    }
                }
            }
            None => {
                if self.rooms.len() >= self.config.max_rooms {
                    return Err((
                        ErrorCode::ServerFull,
                        "the server holds as many rooms as it can; try again later".into(),
                    ));
                }
            }
        }
        let id = self.fresh_id();
        let r = self.rooms.entry(room.clone()).or_insert_with(|| Room {
            members: Vec::new(),
            password: password.as_deref().map(password_digest),
        });
        let joined = ServerMessage::PeerJoined {
            id: id.clone(),
            name: name.clone(),
        }
        .encode();
        for m in &r.members {
            out.push(Output::Send {
                conn: m.conn,
                text: joined.clone(),
            });
        }
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
        };
        out.push(Output::Send {
            conn,
            text: welcome.encode(),
        });
        r.members.push(Member {
            conn,
            id: id.clone(),
            name,
        });
        self.peers.insert(id.clone(), conn);
        let c = self.conns.get_mut(&conn).expect("caller checked");
        c.joined = Some(Joined { id, room });
        c.join_deadline = None;
        Ok(())
    }

    fn signal(
        &mut self,
        conn: ConnId,
        to: PeerId,
        data: SignalData,
        out: &mut Vec<Output>,
    ) -> Result<(), (ErrorCode, String)> {
        let Some(me) = self.conns.get(&conn).and_then(|c| c.joined.as_ref()) else {
            return Err((
                ErrorCode::NotJoined,
                "join a room before sending signals".into(),
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
        let Some(target) = target else {
            return Err((
                ErrorCode::UnknownPeer,
                format!(
                    "no peer {} in room {}",
                    confab_protocol::truncate(to.as_str(), 40),
                    me.room
                ),
            ));
        };
        let text = ServerMessage::Signal {
            from: me.id.clone(),
            data,
        }
        .encode();
        out.push(Output::Relay {
            conn: target,
            text,
            from: conn,
        });
        Ok(())
    }

    /// Takes the connection out of its room, if it is in one.
    fn leave_room(&mut self, conn: ConnId, out: &mut Vec<Output>) -> bool {
        let Some(c) = self.conns.get_mut(&conn) else {
            return false;
        };
        let Some(joined) = c.joined.take() else {
            return false;
        };
        self.peers.remove(&joined.id);
        if let Some(room) = self.rooms.get_mut(&joined.room) {
            room.members.retain(|m| m.conn != conn);
            if room.members.is_empty() {
                self.rooms.remove(&joined.room);
            } else {
                let left = ServerMessage::PeerLeft { id: joined.id }.encode();
                for m in &room.members {
                    out.push(Output::Send {
                        conn: m.conn,
                        text: left.clone(),
                    });
                }
            }
        }
        true
    }

    fn fail(
        &mut self,
        conn: ConnId,
        code: ErrorCode,
        message: String,
        now: Instant,
        out: &mut Vec<Output>,
    ) {
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        if c.errors.take(now) {
            out.push(Output::Send {
                conn,
                text: ServerMessage::error(code, message).encode(),
            });
        } else {
            self.close(conn, CLOSE_POLICY, "too many errors".into(), out);
        }
    }

    fn close(&mut self, conn: ConnId, code: u16, reason: String, out: &mut Vec<Output>) {
        if !self.conns.contains_key(&conn) {
            return;
        }
        self.disconnect(conn, out);
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

#[cfg(test)]
mod tests;
