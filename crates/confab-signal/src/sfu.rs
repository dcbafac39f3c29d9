//! The SFU shell: makes and removes each member's VideoRoom room as the room logic asks
//! ([`confab_rooms::SfuOp`]), over one Janus connection that this task owns. Clients only join
//! rooms; a room's `secret` (to edit, kick from or destroy it) and Janus's `admin_key` (to make
//! rooms) stay here.
//!
//! **Every member publishes in a VideoRoom room of its own** ([`Sfu::info`]): made at its join,
//! letting in only its token (`allowed`), and requiring every subscription to name the
//! `private_id` of a participant in it (`require_pvtid`). Only the member is ever in it, so only
//! the member can subscribe to what it publishes: it subscribes for the people its call let in
//! and hands them the subscriptions over Confab's signaling. Nobody else can subscribe, so
//! admission at the SFU is the call's own. When the member leaves, its room is removed (at once
//! on `leave`; after a wait if its connection went), and with it its publishing and every
//! subscription it handed out — unless a member holds its token again: a rejoin with the
//! rejoin token keeps it (in a cluster the store is asked before a removal: the member may be
//! back through another node that this one has not heard from). Every few seconds the shell checks that one
//! of its members' rooms (each in turn) is still at Janus; if not (Janus restarted, or another
//! node removed it while this one was cut off from the cluster), it makes every one of its
//! members' rooms again.
//!
//! Never in the way of signaling: the hub hands work over without waiting ([`SfuQueue`]; a
//! room whose work does not fit the queue is noted, and made good from the rooms as they are
//! once the shell gets to it), and a media server that is down costs a warning, not a join.

use crate::cluster::Store;
use crate::hub::Hub;
use confab_janus::{Janus, JanusError, RoomSpec};
use confab_rooms::{Sfu, SfuOp};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, Notify};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Work waiting for the shell at most.
pub const OPS_QUEUE: usize = 256;
/// Rooms with work waiting (for its time, or noted when it did not fit the queue) at most.
const ROOMS_MAX: usize = OPS_QUEUE * 16;
/// Departures one room's waiting work holds at most.
const DROPS_PER_ROOM: usize = 1024;
/// An idle connection is closed after this (Janus would end its session at 60 s).
const IDLE: Duration = Duration::from_secs(20);
/// Work that could not reach Janus is tried again after this, then twice as long each time.
const RETRY_FIRST: Duration = Duration::from_secs(2);
/// Tries again at most this often (2 + 4 + … + 32 s: about a minute), then gives up (a Janus
/// back after longer has most likely restarted, and gets each room back at its next join).
const RETRY_TRIES: u32 = 5;
/// Work waiting to be tried again at most.
const RETRIES_MAX: usize = OPS_QUEUE;
/// Publishers a member's own room takes: the member, publishing anew before its last
/// session is gone.
const MEMBER_PUBLISHERS: usize = 4;
/// How often one of this node's members' rooms is checked for at Janus.
const CHECK_EVERY: Duration = Duration::from_secs(5);

/// The hub's way to the shell: a bounded queue, and beside it the work that did not fit, by
/// room: the departures whose drops did not fit (bounded as a room's waiting drops). It is not
/// lost: the shell makes it good from the rooms as they are when it gets to it ([`resync`]):
/// the departures dropped as they would have been (at once, or after the wait for a connection
/// that went), and every member's room made again (a join's make may be among the missed).
pub struct SfuQueue {
    ops: mpsc::Sender<SfuOp>,
    missed: Arc<Missed>,
}

/// Where the shell takes its work from ([`SfuQueue::new`]).
pub struct SfuInbox {
    ops: mpsc::Receiver<SfuOp>,
    missed: Arc<Missed>,
}

/// A departure whose drop did not fit the queue: its token, and whether it said `leave`
/// (dropped at once).
type MissedDrop = (String, bool);

#[derive(Default)]
struct Missed {
    rooms: Mutex<HashMap<String, Vec<MissedDrop>>>,
    /// Rung when a room is noted.
    bell: Notify,
}

impl Missed {
    fn take(&self) -> HashMap<String, Vec<MissedDrop>> {
        std::mem::take(&mut *self.rooms.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

impl SfuQueue {
    /// A queue of `capacity` ops (at least one).
    pub fn new(capacity: usize) -> (SfuQueue, SfuInbox) {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        let missed = Arc::new(Missed::default());
        let inbox = SfuInbox {
            ops: rx,
            missed: missed.clone(),
        };
        (SfuQueue { ops: tx, missed }, inbox)
    }

    /// Hands `op` over without waiting; if the queue is full, notes it instead.
    pub fn hand(&self, op: SfuOp) {
        let (room, dropped) = match self.ops.try_send(op) {
            Ok(()) | Err(mpsc::error::TrySendError::Closed(_)) => return,
            Err(mpsc::error::TrySendError::Full(op)) => match op {
                SfuOp::Make { room, .. } => (room, None),
                SfuOp::Drop {
                    room,
                    token,
                    at_once,
                } => (room, Some((token, at_once))),
            },
        };
        let mut rooms = self.missed.rooms.lock().unwrap_or_else(|e| e.into_inner());
        if !rooms.contains_key(&room) && rooms.len() >= ROOMS_MAX {
            // (Bounded: a room past it waits for its next join or departure.)
            tracing::warn!("the SFU shell is far behind: a room's work was dropped");
            return;
        }
        let drops = rooms.entry(room).or_insert_with(|| {
            tracing::warn!("the SFU shell is behind: a room's work is made good later");
            Vec::new()
        });
        match dropped {
            Some(d) if drops.len() < DROPS_PER_ROOM => drops.push(d),
            Some(_) => tracing::warn!("the SFU shell is far behind: a departure was dropped"),
            None => {}
        }
        drop(rooms);
        self.missed.bell.notify_one();
    }
}

/// The session and VideoRoom handle the shell works through.
struct Admin {
    janus: Janus,
    handle: u64,
}

impl Admin {
    async fn open(sfu: &Sfu) -> Result<Admin, JanusError> {
        let mut janus = Janus::connect(sfu.ws_url()).await?;
        janus.create_session().await?;
        let handle = janus.attach().await?;
        Ok(Admin { janus, handle })
    }

    async fn apply(&mut self, sfu: &Sfu, op: &Work) -> Result<(), JanusError> {
        let spec = |room: &str, token: &str| {
            let info = sfu.info(room, token);
            RoomSpec {
                room: info.room,
                pin: info.pin,
                secret: sfu.secret(room, token),
            }
        };
        let (room, tokens) = match op {
            Work::Make { room, tokens } | Work::Drop { room, tokens } => (room, tokens),
        };
        for token in tokens {
            let spec = spec(room, token);
            let done = match op {
                Work::Make { .. } => {
                    spec.ensure(
                        &mut self.janus,
                        self.handle,
                        sfu.admin_key.as_deref(),
                        std::slice::from_ref(token),
                        MEMBER_PUBLISHERS,
                    )
                    .await
                }
                Work::Drop { .. } => spec.destroy(&mut self.janus, self.handle).await,
            };
            // Events that came meanwhile are no business of ours.
            self.janus.take_early();
            match done {
                Ok(()) => {}
                // Refused for this member (said in the log): the others still get theirs.
                Err(e @ JanusError::Refused { .. }) if !stale(&e) => {
                    tracing::warn!(room, "the media server: {e}");
                }
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Whether the member's room is at Janus.
    async fn exists(&mut self, sfu: &Sfu, room: &str, token: &str) -> Result<bool, JanusError> {
        let ask = serde_json::json!({"request": "exists", "room": sfu.info(room, token).room});
        let answer = self
            .janus
            .plugin("asking for a room", self.handle, ask)
            .await;
        self.janus.take_early();
        Ok(answer?["exists"].as_bool().unwrap_or(true))
    }
}

/// A refusal that says our connection is stale (a session or handle Janus no longer has).
fn stale(e: &JanusError) -> bool {
    matches!(
        e.code(),
        Some(confab_janus::NO_SUCH_SESSION | confab_janus::NO_SUCH_HANDLE)
    )
}

/// What the shell does at the SFU: make or remove the rooms of the members of `room` holding
/// `tokens` (its `Debug`, for the logs, leaves the tokens out).
#[derive(Clone, PartialEq, Eq)]
enum Work {
    Make { room: String, tokens: Vec<String> },
    Drop { room: String, tokens: Vec<String> },
}

impl std::fmt::Debug for Work {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (kind, room, tokens) = match self {
            Work::Make { room, tokens } => ("Make", room, tokens),
            Work::Drop { room, tokens } => ("Drop", room, tokens),
        };
        f.debug_struct(kind)
            .field("room", room)
            .field("members", &tokens.len())
            .finish()
    }
}

impl Work {
    fn room(&self) -> &str {
        match self {
            Work::Make { room, .. } | Work::Drop { room, .. } => room,
        }
    }

    fn tokens_mut(&mut self) -> &mut Vec<String> {
        match self {
            Work::Make { tokens, .. } | Work::Drop { tokens, .. } => tokens,
        }
    }
}

/// The drops that wait for their time (pure: fed departures and time): each departed member's
/// room at its own time.
#[derive(Default)]
struct Schedule {
    /// Room → when, whose token.
    rooms: HashMap<String, Vec<(Instant, String)>>,
}

impl Schedule {
    /// A drop of `token`'s room in `room`, due at `at`; false if there is no room for it.
    fn later(&mut self, room: String, token: String, at: Instant) -> bool {
        let full = self.rooms.len() >= ROOMS_MAX;
        let w = match self.rooms.get_mut(&room) {
            Some(w) => w,
            None if !full => self.rooms.entry(room).or_default(),
            None => return false,
        };
        // Bounded (joins are rate-limited well below this in a wait).
        if w.len() >= DROPS_PER_ROOM {
            return false;
        }
        w.push((at, token));
        true
    }

    /// When something is next due.
    fn next(&self) -> Option<Instant> {
        self.rooms.values().flatten().map(|d| d.0).min()
    }

    /// The drops due at `now`, a room's together.
    fn take_due(&mut self, now: Instant) -> Vec<Work> {
        let mut out = Vec::new();
        self.rooms.retain(|room, waiting| {
            let (due, later): (Vec<_>, Vec<_>) = waiting.drain(..).partition(|d| d.0 <= now);
            *waiting = later;
            if !due.is_empty() {
                out.push(Work::Drop {
                    room: room.clone(),
                    tokens: due.into_iter().map(|d| d.1).collect(),
                });
            }
            !waiting.is_empty()
        });
        out.sort_by(|a, b| a.room().cmp(b.room()));
        out
    }
}

/// Work that could not reach Janus (pure: fed failures and time): each tried again after
/// `RETRY_FIRST`, doubling, `RETRY_TRIES` times at most; one entry a room and kind (its
/// members merged), bounded.
#[derive(Default)]
struct Retries {
    /// When, how many tries so far, what.
    waiting: Vec<(Instant, u32, Work)>,
}

impl Retries {
    /// `again` failed its `tries`-th try at `now`: tried again later, unless it has had its
    /// tries or there is no room (false).
    fn failed(&mut self, again: Work, tries: u32, now: Instant) -> bool {
        if tries > RETRY_TRIES {
            return false;
        }
        self.put(now + RETRY_FIRST * 2u32.pow(tries - 1), tries, again)
    }

    /// Waits again, untried (Janus was found unreachable by other work first): counted as
    /// a first try at least, so that it is tried when it comes due.
    fn put_back(&mut self, again: Work, tries: u32, now: Instant) -> bool {
        self.put(now + RETRY_FIRST, tries.max(1), again)
    }

    fn put(&mut self, at: Instant, tries: u32, mut again: Work) -> bool {
        let same = self.waiting.iter().position(|w| {
            std::mem::discriminant(&w.2) == std::mem::discriminant(&again)
                && w.2.room() == again.room()
        });
        let Some(i) = same else {
            if self.waiting.len() >= RETRIES_MAX {
                return false;
            }
            self.waiting.push((at, tries, again));
            return true;
        };
        // One entry a room and kind: the earlier time and the fewer tries of the two, the
        // members merged, as many as a room waits.
        let w = &mut self.waiting[i];
        w.0 = w.0.min(at);
        w.1 = w.1.min(tries);
        let tokens = w.2.tokens_mut();
        for t in std::mem::take(again.tokens_mut()) {
            if !tokens.contains(&t) && tokens.len() < DROPS_PER_ROOM {
                tokens.push(t);
            }
        }
        true
    }

    fn next(&self) -> Option<Instant> {
        self.waiting.iter().map(|w| w.0).min()
    }

    /// What is due at `now`, with its tries so far.
    fn take_due(&mut self, now: Instant) -> Vec<(u32, Work)> {
        let (due, later): (Vec<_>, Vec<_>) = self.waiting.drain(..).partition(|w| w.0 <= now);
        self.waiting = later;
        due.into_iter().map(|(_, tries, a)| (tries, a)).collect()
    }
}

/// Carries out the room logic's SFU work until cancelled. A member who said `leave` has its
/// room removed at once; one whose connection went, after `drop_after` (its client keeps its
/// media while its signaling is away), unless a member holds its token again by then.
pub async fn ops_loop(
    sfu: Sfu,
    hub: Arc<Hub>,
    store: Option<Arc<Store>>,
    drop_after: Duration,
    inbox: SfuInbox,
    cancel: CancellationToken,
) {
    let SfuInbox { mut ops, missed } = inbox;
    let mut admin: Option<Admin> = None;
    let mut schedule = Schedule::default();
    let mut retries = Retries::default();
    // Janus could not be reached by the last try: new work waits with the retries (the next
    // of which finds out whether it is back) rather than each taking its full answer time.
    let mut unreachable = false;
    let mut idle_since = Instant::now();
    let mut check = tokio::time::interval(CHECK_EVERY);
    check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut checked = 0usize;
    loop {
        let due = schedule.next();
        let retry = retries.next();
        let work: Vec<(u32, Work)> = tokio::select! {
            _ = cancel.cancelled() => break,
            op = ops.recv() => match op {
                Some(SfuOp::Make { room, token }) => vec![(0, Work::Make { room, tokens: vec![token] })],
                Some(SfuOp::Drop { room, token, at_once: true }) => {
                    vec![(0, Work::Drop { room, tokens: vec![token] })]
                }
                Some(SfuOp::Drop { room, token, at_once: false }) => {
                    // A connection that went may be a client whose signaling is away, its
                    // media still flowing: its drop waits.
                    if !schedule.later(room, token, Instant::now() + drop_after) {
                        // Bounded: such a room stays at the SFU until Janus restarts.
                        tracing::warn!("too much work waiting for the SFU: a drop was lost");
                    }
                    continue;
                }
                None => break,
            },
            _ = missed.bell.notified() => resync(missed.take(), &hub, &mut schedule, drop_after),
            _ = tokio::time::sleep_until(due.unwrap_or_else(Instant::now)), if due.is_some() => {
                let ready = schedule.take_due(Instant::now());
                if hub.store_healthy() == Some(false) {
                    // Cut off from the store, this node has let the other nodes' people go
                    // and cannot tell whether a departed member is back through another one:
                    // its drops wait until it can.
                    for w in ready {
                        if let Work::Drop { room, tokens } = w {
                            for t in tokens {
                                schedule.later(room.clone(), t, Instant::now() + drop_after);
                            }
                        }
                    }
                    continue;
                }
                ready.into_iter().map(|w| (0, w)).collect()
            }
            _ = tokio::time::sleep_until(retry.unwrap_or_else(Instant::now)), if retry.is_some() => {
                retries.take_due(Instant::now())
            }
            _ = tokio::time::sleep_until(idle_since + IDLE), if admin.is_some() => {
                if let Some(a) = admin.take() {
                    a.janus.close().await;
                }
                continue;
            }
            _ = check.tick(), if !unreachable => {
                let local = hub.read_rooms(|r| r.sfu_local());
                let seats: Vec<(&String, &String)> =
                    local.iter().flat_map(|(r, ts)| ts.iter().map(move |t| (r, t))).collect();
                let Some((room, token)) = seats.get(checked % seats.len().max(1)) else {
                    continue;
                };
                checked = checked.wrapping_add(1);
                // (The checks keep the connection in use: it stays open.)
                idle_since = Instant::now();
                match present(&sfu, &mut admin, room, token).await {
                    Some(false) => {
                        tracing::warn!("a member's SFU room is gone: making every one of ours again");
                        local
                            .into_iter()
                            .map(|(room, tokens)| (0, Work::Make { room, tokens }))
                            .collect()
                    }
                    _ => continue,
                }
            }
        };
        // While Janus cannot be reached, one try a round finds out whether it is back (a
        // retry, not new work); the rest waits with the retries untried, rather than each
        // taking its full answer time.
        let mut tried = false;
        for (tries, w) in work {
            let Some(w) = afresh(w, &hub) else {
                continue;
            };
            let Some(w) = unheld(w, store.as_deref(), &mut schedule, drop_after).await else {
                continue;
            };
            let kept = if unreachable && (tries == 0 || tried) {
                retries.put_back(w, tries, Instant::now())
            } else {
                tried = true;
                if tries > 0 {
                    tracing::info!(?w, tries, "trying the media server again");
                }
                let ok = carry_out(&sfu, &mut admin, &w).await;
                unreachable = !ok;
                // (The try may have taken the full answer time: the wait counts from its end.)
                ok || retries.failed(w, tries + 1, Instant::now())
            };
            if !kept {
                tracing::warn!("SFU work given up: the media server could not be reached");
            }
        }
        idle_since = Instant::now();
    }
    if let Some(a) = admin {
        a.janus.close().await;
    }
}

/// The work that makes good what was missed ([`SfuQueue`]), by room: the departures are
/// dropped as their ops said (at once, or after `drop_after` for a connection that went: its
/// member may be back meanwhile); every member's room is made again (a join's make may have
/// been missed; making one that exists costs an answer).
fn resync(
    rooms: HashMap<String, Vec<MissedDrop>>,
    hub: &Hub,
    schedule: &mut Schedule,
    drop_after: Duration,
) -> Vec<(u32, Work)> {
    let later = Instant::now() + drop_after;
    let mut work = Vec::new();
    for (room, drops) in rooms {
        let mut now = Vec::new();
        for (token, at_once) in drops {
            if at_once {
                now.push(token);
            } else if !schedule.later(room.clone(), token, later) {
                tracing::warn!("too much work waiting for the SFU: a drop was lost");
            }
        }
        if !now.is_empty() {
            work.push((
                0,
                Work::Drop {
                    room: room.clone(),
                    tokens: now,
                },
            ));
        }
        let tokens = hub.read_rooms(|r| r.sfu_members(&room)).tokens;
        if !tokens.is_empty() {
            work.push((0, Work::Make { room, tokens }));
        }
    }
    work.sort_by(|a, b| a.1.room().cmp(b.1.room()));
    work
}

/// `work` as the rooms are now: a member's room is made only while a member holds its token
/// (one who left meanwhile does not get it back), and removed only while none does; `None` if
/// nothing is left to do.
fn afresh(mut work: Work, hub: &Hub) -> Option<Work> {
    let held = hub.read_rooms(|r| r.sfu_members(work.room())).tokens;
    let make = matches!(work, Work::Make { .. });
    work.tokens_mut().retain(|t| held.contains(t) == make);
    (!work.tokens_mut().is_empty()).then_some(work)
}

/// In a cluster, `work` without the removal of a room whose token a seat of another node holds
/// in the store: a member back through another node keeps its token (its rejoin carries it
/// over), and this node may not know (the member was its last in the room, news was lost, or
/// it was cut off). This node's own seats are its room logic's to say ([`afresh`]): the store
/// may still list one whose release is on its way. A removal the store cannot be asked about
/// waits (`None`: nothing to do now).
async fn unheld(
    work: Work,
    store: Option<&Store>,
    schedule: &mut Schedule,
    drop_after: Duration,
) -> Option<Work> {
    let Some(store) = store else {
        return Some(work);
    };
    let (room, mut tokens) = match work {
        Work::Drop { room, tokens } => (room, tokens),
        make => return Some(make),
    };
    match store.snapshot(&room).await {
        Some((_, members)) => {
            let held = |t: &String| {
                members
                    .iter()
                    .filter(|m| m.node != store.node())
                    .any(|m| m.sfu.as_ref().is_some_and(|s| &s.token == t))
            };
            tokens.retain(|t| !held(t));
            (!tokens.is_empty()).then_some(Work::Drop { room, tokens })
        }
        None => {
            for t in tokens {
                if !schedule.later(room.clone(), t, Instant::now() + drop_after) {
                    tracing::warn!("too much work waiting for the SFU: a drop was lost");
                }
            }
            None
        }
    }
}

/// One piece of work: one try on the open connection, one on a new one (Janus may have
/// restarted). False if Janus could not be reached (worth trying again later).
async fn carry_out(sfu: &Sfu, admin: &mut Option<Admin>, op: &Work) -> bool {
    for attempt in 0..2 {
        let a = match admin.as_mut() {
            Some(a) => a,
            None => match Admin::open(sfu).await {
                Ok(a) => admin.insert(a),
                Err(e) => {
                    tracing::warn!("the media server: {e}");
                    return false;
                }
            },
        };
        match a.apply(sfu, op).await {
            Ok(()) => return true,
            // A session or handle Janus no longer has: the connection is stale (as lost).
            Err(e @ JanusError::Refused { .. }) if !stale(&e) => {
                tracing::warn!(?op, "the media server: {e}");
                return true;
            }
            Err(e) => {
                *admin = None;
                if attempt == 1 {
                    tracing::warn!(?op, "the media server: {e}");
                }
            }
        }
    }
    false
}

/// Whether the member's room is at Janus (`None`: Janus could not be asked).
async fn present(sfu: &Sfu, admin: &mut Option<Admin>, room: &str, token: &str) -> Option<bool> {
    for _ in 0..2 {
        let a = match admin.as_mut() {
            Some(a) => a,
            None => admin.insert(Admin::open(sfu).await.ok()?),
        };
        match a.exists(sfu, room, token).await {
            Ok(there) => return Some(there),
            Err(_) => *admin = None,
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drop(room: &str, tokens: &[&str]) -> Work {
        Work::Drop {
            room: room.into(),
            tokens: tokens.iter().map(|t| t.to_string()).collect(),
        }
    }

    /// Work that could not reach Janus is tried again after 2, 4, 8, 16 and 32 s, then given
    /// up; what waits is bounded.
    #[test]
    fn work_janus_did_not_get_is_tried_again_for_a_minute() {
        let t0 = Instant::now();
        let mut r = Retries::default();
        let gone = drop("r", &["t7"]);
        let mut at = t0;
        let mut waits = Vec::new();
        let mut tries = 1;
        while r.failed(gone.clone(), tries, at) {
            let next = r.next().unwrap();
            waits.push((next - at).as_secs());
            assert!(r.take_due(next - Duration::from_millis(1)).is_empty());
            let due = r.take_due(next);
            assert_eq!(due, vec![(tries, gone.clone())]);
            (at, tries) = (next, tries + 1);
        }
        assert_eq!(waits, [2, 4, 8, 16, 32]);
        assert_eq!(r.next(), None, "given up");
        // Work put back untried while Janus cannot be reached is tried when it comes due,
        // even merged into an entry with more tries.
        assert!(r.failed(drop("q", &["t8"]), 5, t0));
        assert!(r.put_back(drop("q", &["t9"]), 0, t0));
        assert_eq!(
            r.take_due(t0 + Duration::from_secs(60)),
            [(1, drop("q", &["t8", "t9"]))]
        );
        // One entry a room and kind: a room's members merge.
        let make = |t: &str| Work::Make {
            room: "r".into(),
            tokens: vec![t.into()],
        };
        assert!(r.failed(drop("r", &["t1"]), 1, t0) && r.failed(drop("r", &["t2"]), 1, t0));
        assert!(r.failed(drop("r", &["t1"]), 1, t0));
        assert!(r.failed(make("t3"), 1, t0) && r.failed(make("t3"), 2, t0));
        let due = r.take_due(t0 + Duration::from_secs(60));
        assert_eq!(due, [(1, drop("r", &["t1", "t2"])), (1, make("t3"))]);
        for i in 0..RETRIES_MAX + 5 {
            r.failed(drop(&format!("r{i}"), &["t"]), 1, t0);
        }
        assert_eq!(r.waiting.len(), RETRIES_MAX, "bounded");
    }

    /// Each departure waits its own time: a second member leaving just before the first's
    /// drop is due is not dropped with it.
    #[test]
    fn each_drop_waits_its_own_time() {
        let t0 = Instant::now();
        let wait = Duration::from_secs(10);
        let mut s = Schedule::default();
        assert!(s.later("r".into(), "t1".into(), t0 + wait));
        let t1 = t0 + Duration::from_secs(9);
        assert!(s.later("r".into(), "t2".into(), t1 + wait));
        assert!(s.later("q".into(), "t3".into(), t0 + wait));
        assert_eq!(s.next(), Some(t0 + wait));
        assert_eq!(s.take_due(t0 + wait - Duration::from_millis(1)), []);
        assert_eq!(
            s.take_due(t0 + wait),
            [drop("q", &["t3"]), drop("r", &["t1"])]
        );
        assert_eq!(s.next(), Some(t1 + wait));
        assert_eq!(s.take_due(t1 + wait), [drop("r", &["t2"])]);
        assert_eq!(s.next(), None);
        for i in 0..DROPS_PER_ROOM + 5 {
            s.later("p".into(), format!("t{i}"), t0);
        }
        assert_eq!(s.rooms["p"].len(), DROPS_PER_ROOM, "bounded");
    }

    /// Work that does not fit the queue is not dropped: its room is noted once, with the
    /// departures whose drops did not fit, and the shell is rung.
    #[tokio::test]
    async fn work_that_does_not_fit_the_queue_notes_its_room() {
        let (q, mut inbox) = SfuQueue::new(1);
        let make = |room: &str| SfuOp::Make {
            room: room.into(),
            token: "t".into(),
        };
        let gone = |room: &str, token: &str, at_once| SfuOp::Drop {
            room: room.into(),
            token: token.into(),
            at_once,
        };
        q.hand(make("a"));
        q.hand(make("b"));
        q.hand(gone("b", "t2", false));
        q.hand(gone("c", "t3", true));
        assert!(matches!(inbox.ops.try_recv(), Ok(SfuOp::Make { room, .. }) if room == "a"));
        assert!(inbox.ops.try_recv().is_err(), "nothing else was queued");
        tokio::time::timeout(Duration::from_secs(1), inbox.missed.bell.notified())
            .await
            .expect("the shell is rung");
        let mut noted: Vec<(String, Vec<MissedDrop>)> = inbox.missed.take().into_iter().collect();
        noted.sort();
        assert_eq!(
            noted,
            [
                ("b".into(), vec![("t2".into(), false)]),
                ("c".into(), vec![("t3".into(), true)])
            ]
        );
        assert!(inbox.missed.take().is_empty(), "taken");
        // Room in the queue again: work is queued, not noted.
        q.hand(gone("d", "t4", true));
        assert!(matches!(inbox.ops.try_recv(), Ok(SfuOp::Drop { room, .. }) if room == "d"));
        assert!(inbox.missed.take().is_empty());
    }

    fn hub_with(members: &[(&str, &str)]) -> Hub {
        let sfu = confab_rooms::Sfu {
            url: "janus+ws://127.0.0.1:1".into(),
            secret: "a-secret-of-sixteen+".into(),
            above: 0,
            admin_key: None,
        };
        let config = confab_rooms::Config {
            sfu: Some(sfu),
            ..confab_rooms::Config::default()
        };
        let hub = crate::hub::Hub::new(
            confab_rooms::Rooms::new(config, [1; 32]),
            crate::hub::QueueLimits {
                messages: 8,
                bytes: 1000,
            },
            None,
            None,
        );
        for (room, name) in members {
            hub.join_for_test(room, name);
        }
        hub
    }

    /// A missed departure is dropped as its op said: at once after `leave`, after the wait
    /// for a connection that went; every member's room is made again.
    #[test]
    fn missed_departures_are_dropped_as_they_would_have_been() {
        let hub = hub_with(&[("r", "Ann")]);
        let anns = hub.read_rooms(|r| r.sfu_members("r")).tokens;
        let mut s = Schedule::default();
        let wait = Duration::from_secs(10);
        let missed = HashMap::from([(
            "r".to_owned(),
            vec![("t1".to_owned(), true), ("t2".to_owned(), false)],
        )]);
        let t0 = Instant::now();
        let work = resync(missed, &hub, &mut s, wait);
        assert_eq!(
            work,
            [
                (0, drop("r", &["t1"])),
                (
                    0,
                    Work::Make {
                        room: "r".into(),
                        tokens: anns.clone()
                    }
                )
            ]
        );
        assert_eq!(
            s.take_due(t0 + wait + Duration::from_millis(50)),
            [drop("r", &["t2"])]
        );
        // As the rooms are when carried out: a member's room is not dropped while a member
        // holds its token, nor made once none does.
        let theirs: Vec<&str> = anns.iter().map(String::as_str).collect();
        assert_eq!(afresh(drop("r", &theirs), &hub), None);
        assert_eq!(
            afresh(drop("r", &["t1", theirs[0]]), &hub),
            Some(drop("r", &["t1"]))
        );
        let gone = Work::Make {
            room: "r".into(),
            tokens: vec!["t1".into()],
        };
        assert_eq!(afresh(gone, &hub), None);
    }
}
