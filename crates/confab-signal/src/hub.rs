//! The one place where the room state machine meets the connections: a lock around
//! [`Rooms`] and the outbound queue of every connection.
//!
//! Frames are decoded before the lock is taken; the lock is never held across an `.await`;
//! delivery is `try_send` on queues bounded in messages and in bytes. What does not fit is
//! handled by its kind: a relayed signal is dropped and its sender told, an error is dropped,
//! and a room update that does not fit gets its client disconnected (it learns the room afresh
//! when it joins again) — so that a room update is never lost while the client stays. Relays
//! and errors may fill only three quarters of a queue: the rest is kept for room updates, so a
//! flood cannot get its target disconnected.

use confab_protocol::{ErrorCode, PeerId, ServerMessage};
use confab_rooms::{
    ClaimResult, ClusterOp, ConnId, Inbound, Output, Refusal, RemotePeer, Rooms, Seat,
    CLOSE_TRY_AGAIN,
};
use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

/// A frame for a connection's writer task.
#[derive(Debug)]
pub enum Frame {
    Text(String),
    Ping,
    Close(u16, String),
}

/// Why the hub tells a session to stop: close code and reason.
pub type StopReason = (u16, String);

/// The size of every connection's outbound queue.
#[derive(Debug, Clone, Copy)]
pub struct QueueLimits {
    pub messages: usize,
    pub bytes: usize,
}

impl QueueLimits {
    /// Slots a droppable frame must leave free (kept for room updates).
    pub fn reserved_messages(&self) -> usize {
        self.messages / 4
    }

    fn droppable_bytes(&self) -> usize {
        self.bytes - self.bytes / 4
    }
}

/// The hub's end of a connection's outbound queue.
pub struct Outbox {
    pub tx: mpsc::Sender<Frame>,
    /// Bytes of text frames queued (and being written); the writer takes off what it wrote.
    pub queued: Arc<AtomicUsize>,
}

impl Outbox {
    /// Queues a text frame if it fits: a room update may use the whole queue, anything else
    /// only what is not kept for room updates. A frame always fits an empty queue.
    fn offer(&self, text: String, update: bool, limits: QueueLimits) -> bool {
        let len = text.len();
        let queued = self.queued.load(Ordering::Relaxed);
        let (slots_kept, byte_cap) = if update {
            (0, limits.bytes)
        } else {
            (limits.reserved_messages(), limits.droppable_bytes())
        };
        if self.tx.capacity() <= slots_kept || (queued > 0 && queued + len > byte_cap) {
            return false;
        }
        // Count first: the writer may take the frame off before `try_send` returns.
        self.queued.fetch_add(len, Ordering::Relaxed);
        if self.tx.try_send(Frame::Text(text)).is_ok() {
            true
        } else {
            self.queued.fetch_sub(len, Ordering::Relaxed);
            false
        }
    }
}

struct Link {
    outbox: Outbox,
    stop: oneshot::Sender<StopReason>,
}

struct State {
    rooms: Rooms,
    links: HashMap<ConnId, Link>,
}

pub struct Hub {
    state: Mutex<State>,
    max_message_bytes: usize,
    queue: QueueLimits,
    cluster: Option<ClusterLink>,
    /// Cluster work that did not fit the shell's queue, so far (for the log).
    cluster_refused: AtomicU64,
    /// Where the room logic's SFU work goes (`crate::sfu`), with `--sfu`.
    sfu: Option<crate::sfu::SfuQueue>,
}

/// The hub's side of the cluster shell (`crate::cluster`): where the room logic's cluster work
/// goes, and what the shell reports back.
pub struct ClusterLink {
    pub ops: mpsc::Sender<ClusterOp>,
    /// The shared store answered the last heartbeat.
    pub healthy: Arc<AtomicBool>,
    /// Some cluster work could not be queued: the shell re-registers this node's seats.
    pub dirty: Arc<AtomicBool>,
}

impl Hub {
    pub fn new(
        rooms: Rooms,
        queue: QueueLimits,
        cluster: Option<ClusterLink>,
        sfu: Option<crate::sfu::SfuQueue>,
    ) -> Self {
        Hub {
            max_message_bytes: rooms.config().max_message_bytes,
            queue,
            cluster,
            cluster_refused: AtomicU64::new(0),
            sfu,
            state: Mutex::new(State {
                rooms,
                links: HashMap::new(),
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // The state stays consistent even if a holder panicked: every mutation is one call
        // into `Rooms`, which finishes before the guard drops.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn counts(&self) -> (usize, usize) {
        let s = self.lock();
        (s.rooms.connection_count(), s.rooms.room_count())
    }

    /// Bytes waiting in every outbound queue.
    pub fn queued_bytes(&self) -> usize {
        let s = self.lock();
        s.links
            .values()
            .map(|l| l.outbox.queued.load(Ordering::Relaxed))
            .sum()
    }

    pub fn connect(
        &self,
        ip: IpAddr,
        outbox: Outbox,
        stop: oneshot::Sender<StopReason>,
    ) -> Result<ConnId, Refusal> {
        let mut s = self.lock();
        let conn = s.rooms.connect(ip, Instant::now())?;
        s.links.insert(conn, Link { outbox, stop });
        Ok(conn)
    }

    /// Decodes a text frame. Takes no lock: parsing JSON never holds up other connections.
    pub fn decode(&self, text: &str) -> Inbound {
        confab_rooms::decode(text, self.max_message_bytes)
    }

    pub fn receive(&self, conn: ConnId, text: &str) {
        let inbound = self.decode(text);
        let mut out = Vec::new();
        let mut s = self.lock();
        s.rooms.apply(conn, inbound, Instant::now(), &mut out);
        self.deliver(&mut s, out);
    }

    pub fn receive_binary(&self, conn: ConnId) {
        let mut out = Vec::new();
        let mut s = self.lock();
        s.rooms.receive_binary(conn, Instant::now(), &mut out);
        self.deliver(&mut s, out);
    }

    pub fn reject_unreadable(&self, conn: ConnId) {
        let mut out = Vec::new();
        let mut s = self.lock();
        s.rooms.reject_unreadable(conn, Instant::now(), &mut out);
        self.deliver(&mut s, out);
    }

    /// The connection ended (or is being ended by its session). Idempotent.
    pub fn disconnect(&self, conn: ConnId) {
        let mut out = Vec::new();
        let mut s = self.lock();
        s.links.remove(&conn);
        s.rooms.disconnect(conn, Instant::now(), &mut out);
        self.deliver(&mut s, out);
    }

    /// Joins `room` as `name` on a connection of its own (its messages are kept unread).
    #[cfg(test)]
    pub(crate) fn join_for_test(&self, room: &str, name: &str) -> ConnId {
        let (tx, rx) = mpsc::channel(64);
        // Kept open for the test's length: a closed outbox would end the connection.
        Box::leak(Box::new(rx));
        let (stop, _) = oneshot::channel();
        let outbox = Outbox {
            tx,
            queued: Arc::default(),
        };
        let conn = self
            .connect("10.1.2.3".parse().unwrap(), outbox, stop)
            .expect("connects");
        self.receive(
            conn,
            &format!(r#"{{"type":"join","room":"{room}","name":"{name}"}}"#),
        );
        conn
    }

    /// Whether the cluster's store is reachable (`None` on a lone server).
    pub fn store_healthy(&self) -> Option<bool> {
        self.cluster
            .as_ref()
            .map(|c| c.healthy.load(Ordering::Relaxed))
    }

    /// Runs one call into the room logic and delivers what it answers.
    pub fn with_rooms(&self, f: impl FnOnce(&mut Rooms, Instant, &mut Vec<Output>)) {
        let mut out = Vec::new();
        let mut s = self.lock();
        f(&mut s.rooms, Instant::now(), &mut out);
        self.deliver(&mut s, out);
    }

    /// Reads the room logic (no outputs).
    pub fn read_rooms<T>(&self, f: impl FnOnce(&Rooms) -> T) -> T {
        f(&self.lock().rooms)
    }

    pub fn claimed(&self, conn: ConnId, seat: Seat, result: ClaimResult) {
        self.with_rooms(|r, now, out| r.claimed(conn, seat, result, now, out));
    }

    pub fn remote_joined(&self, room: &str, ver: u64, peer: RemotePeer) {
        self.with_rooms(|r, _, out| r.remote_joined(room, ver, peer, out));
    }

    pub fn replaced(&self, room: &str, id: &PeerId) {
        self.with_rooms(|r, now, out| r.replaced(room, id, now, out));
    }

    pub fn remote_left(&self, room: &str, ver: u64, id: &PeerId) {
        self.with_rooms(|r, now, out| r.remote_left(room, ver, id, now, out));
    }

    /// Whether a seat of this node is missing from the store ([`Rooms::remote_snapshot`]).
    pub fn remote_snapshot(&self, room: &str, ver: u64, members: Vec<RemotePeer>) -> bool {
        let mut unseated = false;
        self.with_rooms(|r, now, out| unseated = r.remote_snapshot(room, ver, members, now, out));
        unseated
    }

    pub fn remote_signal(&self, room: &str, from: &PeerId, to: &PeerId, text: String) {
        self.with_rooms(|r, _, out| r.remote_signal(room, from, to, text, out));
    }

    pub fn node_gone(&self, node: &str, ver: u64) {
        self.with_rooms(|r, now, out| r.node_gone(node, ver, now, out));
    }

    /// A signal for another node could not be handed to the store: its sender is told.
    pub fn forward_failed(&self, from: ConnId) {
        let s = self.lock();
        if let Some(link) = s.links.get(&from) {
            let err = ServerMessage::error(
                ErrorCode::RateLimited,
                "the other side's server cannot be reached right now; that message was not \
                 delivered",
            );
            link.outbox.offer(err.encode(), false, self.queue);
        }
    }

    fn tick(&self) -> Option<Instant> {
        let mut out = Vec::new();
        let mut s = self.lock();
        s.rooms.tick(Instant::now(), &mut out);
        self.deliver(&mut s, out);
        s.rooms.next_deadline()
    }

    /// Carries outputs to the queues, never waiting.
    fn deliver(&self, s: &mut State, out: Vec<Output>) {
        let mut work: VecDeque<Output> = out.into();
        while let Some(o) = work.pop_front() {
            match o {
                Output::Send { conn, text } => {
                    if let Some(link) = s.links.get(&conn) {
                        if !link.outbox.offer(text, false, self.queue) {
                            tracing::debug!(conn, "queue full: an error message was dropped");
                        }
                    }
                }
                Output::Update { conn, text } => {
                    let Some(link) = s.links.get(&conn) else {
                        continue;
                    };
                    if !link.outbox.offer(text, true, self.queue) {
                        // Never a silently missed peer-joined/peer-left: the client goes, and
                        // its room hears that (more work, for other connections).
                        tracing::info!(
                            conn,
                            "disconnecting a client that cannot take room updates"
                        );
                        let mut more = Vec::new();
                        s.rooms.close(
                            conn,
                            CLOSE_TRY_AGAIN,
                            "not keeping up".into(),
                            Instant::now(),
                            &mut more,
                        );
                        work.extend(more);
                    }
                }
                Output::Relay { conn, text, from } => {
                    let Some(link) = s.links.get(&conn) else {
                        continue;
                    };
                    if !link.outbox.offer(text, false, self.queue) {
                        if let Some(sender) = from.and_then(|from| s.links.get(&from)) {
                            let err = ServerMessage::error(
                                ErrorCode::RateLimited,
                                "the other side is not keeping up; that message was not delivered",
                            );
                            sender.outbox.offer(err.encode(), false, self.queue);
                        }
                    }
                }
                Output::Cluster(op) => {
                    let Some(cluster) = &self.cluster else {
                        continue;
                    };
                    let Err(e) = cluster.ops.try_send(op) else {
                        continue;
                    };
                    // The shell is behind: never wait. A join decides without the store, a
                    // release is made good by re-registering this node's seats, a signal's
                    // sender is told.
                    // Logged at the 1st, 2nd, 4th, 8th, ... time: under load this is every message.
                    let refused = self.cluster_refused.fetch_add(1, Ordering::Relaxed) + 1;
                    if refused.is_power_of_two() {
                        tracing::warn!(refused, "cluster queue full: {e}");
                    }
                    let op = match e {
                        mpsc::error::TrySendError::Full(op)
                        | mpsc::error::TrySendError::Closed(op) => op,
                    };
                    match op {
                        ClusterOp::Claim { conn, seat, .. } => {
                            let mut more = Vec::new();
                            s.rooms.claimed(
                                conn,
                                seat,
                                ClaimResult::Unavailable,
                                Instant::now(),
                                &mut more,
                            );
                            work.extend(more);
                            cluster.dirty.store(true, Ordering::Relaxed);
                        }
                        ClusterOp::Release { .. } => cluster.dirty.store(true, Ordering::Relaxed),
                        ClusterOp::Forward { from, .. } => {
                            if let Some(sender) = s.links.get(&from) {
                                let err = ServerMessage::error(
                                    ErrorCode::RateLimited,
                                    "the server is busy; that message was not delivered",
                                );
                                sender.outbox.offer(err.encode(), false, self.queue);
                            }
                        }
                    }
                }
                Output::Sfu(op) => {
                    // Never waits (what does not fit is made good later).
                    if let Some(q) = &self.sfu {
                        q.hand(op);
                    }
                }
                Output::Close { conn, code, reason } => {
                    if let Some(link) = s.links.remove(&conn) {
                        let _ = link.stop.send((code, reason));
                    }
                }
            }
        }
    }
}

/// Runs the state machine's timers (join deadlines, forgetting) until cancelled.
pub async fn tick_loop(hub: Arc<Hub>, cancel: CancellationToken) {
    loop {
        let next = hub.tick();
        // Wake at the next deadline, and at least once a second so that new ones are seen.
        let wait = next
            .map(|d| d.saturating_duration_since(Instant::now()))
            .unwrap_or(Duration::from_secs(1))
            .min(Duration::from_secs(1));
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hub() -> Hub {
        Hub::new(
            Rooms::new(confab_rooms::Config::default(), [1; 32]),
            QueueLimits {
                messages: 8,
                bytes: 1000,
            },
            None,
            None,
        )
    }

    /// The JSON of a message is parsed before the hub's lock is taken: a connection sending
    /// large messages never holds up the others.
    #[test]
    fn parsing_happens_outside_the_lock() {
        let hub = Arc::new(hub());
        let held = hub.lock();
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        let h = hub.clone();
        let parser = std::thread::spawn(move || {
            let big = format!(
                r#"{{"type":"signal","to":"x","data":{{"sdp":"{}"}}}}"#,
                "v".repeat(60_000)
            );
            let parsed = h.decode(&big);
            let _ = done_tx.send(matches!(parsed, Inbound::Message(_)));
        });
        let parsed = done_rx
            .recv_timeout(Duration::from_secs(5))
            .expect("decoding finished while the lock was held");
        assert!(parsed);
        drop(held);
        parser.join().unwrap();
    }

    #[test]
    fn droppable_frames_leave_room_for_updates() {
        let limits = QueueLimits {
            messages: 8,
            bytes: 1000,
        };
        let (tx, _rx) = mpsc::channel(limits.messages);
        let outbox = Outbox {
            tx,
            queued: Arc::default(),
        };
        let mut relays = 0;
        while outbox.offer("r".repeat(10), false, limits) {
            relays += 1;
        }
        assert_eq!(relays, 6, "two of eight slots are kept");
        assert!(outbox.offer("u".into(), true, limits));
        assert!(outbox.offer("u".into(), true, limits));
        assert!(!outbox.offer("u".into(), true, limits), "the queue is full");
        assert_eq!(outbox.queued.load(Ordering::Relaxed), 62);
        // Bytes: a droppable frame may bring the queue to 750 bytes, an update to 1000, and
        // anything fits an empty queue.
        let (tx, _rx) = mpsc::channel(limits.messages);
        let outbox = Outbox {
            tx,
            queued: Arc::default(),
        };
        assert!(outbox.offer("x".repeat(5000), false, limits));
        assert!(!outbox.offer("x".into(), false, limits));
        let (tx, _rx) = mpsc::channel(limits.messages);
        let outbox = Outbox {
            tx,
            queued: Arc::default(),
        };
        assert!(outbox.offer("x".repeat(700), false, limits));
        assert!(!outbox.offer("x".repeat(100), false, limits));
        assert!(outbox.offer("x".repeat(300), true, limits));
        assert!(!outbox.offer("x".into(), true, limits));
    }
}
