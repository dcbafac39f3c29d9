//! The SFU shell: makes and removes the VideoRoom rooms the room logic asks for, and kicks
//! ex-members out of them ([`confab_rooms::SfuOp`]), over one Janus connection that this task
//! owns. Clients only join rooms; the room's `secret` (to edit, kick from or destroy it) and
//! Janus's `admin_key` (to make rooms) stay here.
//!
//! Only members get in, and ex-members get out: each member's `welcome` carries a feed id and a
//! token of its own; the room lets in only the tokens on its `allowed` list (added at each
//! join), and requires every subscription to name the `private_id` of its subscriber's own
//! feed (`require_pvtid`). When a member leaves, its token comes off the list and its feed is
//! kicked, and Janus stops the media of every subscription that feed made: whatever the
//! ex-member still holds at the SFU goes dark, and it cannot join the room again. On a lone
//! server anyone in the room under a feed no member publishes as is kicked with it.
//!
//! A member publishes anew under a new feed each time (after hanging up, or being let go while
//! in the room): the later ones are derived from its token (`SfuInfo::feed_for`), so the
//! server knows them without being told, and nobody else can work them out. A feed id once
//! told to the room is not published again by its member (for its first 64 publishes):
//! someone sitting on it neither keeps the member out (Janus takes one publisher an id) nor
//! is taken for them, and goes at the next sweep once the member publishes under a later one.
//!
//! Never in the way of signaling: the hub hands work over without waiting ([`SfuQueue`]; a
//! room whose work does not fit the queue is noted, and made good from the rooms as they are
//! once the shell gets to it), and a media server that is down costs a warning, not a join.

use crate::cluster::Store;
use crate::hub::Hub;
use confab_janus::{Janus, JanusError, RoomSpec, NO_SUCH_FEED};
use confab_rooms::{Sfu, SfuMembers, SfuOp};
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
const KICKS_PER_ROOM: usize = 1024;
/// An idle connection is closed after this (Janus would end its session at 60 s).
const IDLE: Duration = Duration::from_secs(20);
/// Work that could not reach Janus is tried again after this, then twice as long each time.
const RETRY_FIRST: Duration = Duration::from_secs(2);
/// Tries again at most this often (2 + 4 + … + 32 s: about a minute), then gives up (a Janus
/// back after longer has most likely restarted, and gets each room back at its next join).
const RETRY_TRIES: u32 = 5;
/// Work waiting to be tried again at most.
const RETRIES_MAX: usize = OPS_QUEUE;

/// The hub's way to the shell: a bounded queue, and beside it the work that did not fit, by
/// room: the room, and the departures whose kicks did not fit (bounded as a room's waiting
/// kicks). It is not lost: the shell makes it good from the rooms as they are when it gets to
/// it ([`resync`]): the departures kicked as they would have been (at once, or after the wait
/// for a connection that went), a room in use made again with every member's token and swept
/// of whoever no member holds (a lone server at once; a node of a cluster after the wait), an
/// empty one removed after the wait.
pub struct SfuQueue {
    ops: mpsc::Sender<SfuOp>,
    missed: Arc<Missed>,
}

/// Where the shell takes its work from ([`SfuQueue::new`]).
pub struct SfuInbox {
    ops: mpsc::Receiver<SfuOp>,
    missed: Arc<Missed>,
}

/// A departure whose kick did not fit the queue: its feed and token, and whether it said
/// `leave` (kicked at once).
type MissedKick = (u64, String, bool);

#[derive(Default)]
struct Missed {
    rooms: Mutex<HashMap<String, Vec<MissedKick>>>,
    /// Rung when a room is noted.
    bell: Notify,
}

impl Missed {
    fn take(&self) -> HashMap<String, Vec<MissedKick>> {
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
        let (room, kick) = match self.ops.try_send(op) {
            Ok(()) | Err(mpsc::error::TrySendError::Closed(_)) => return,
            Err(mpsc::error::TrySendError::Full(op)) => match op {
                SfuOp::Make { room, .. } | SfuOp::Remove { room } => (room, None),
                SfuOp::Kick {
                    room,
                    feed,
                    token,
                    at_once,
                } => (room, Some((feed, token, at_once))),
            },
        };
        let mut rooms = self.missed.rooms.lock().unwrap_or_else(|e| e.into_inner());
        if !rooms.contains_key(&room) && rooms.len() >= ROOMS_MAX {
            // (Bounded: a room past it waits for its next join or departure.)
            tracing::warn!("the SFU shell is far behind: a room's work was dropped");
            return;
        }
        let kicks = rooms.entry(room).or_insert_with(|| {
            tracing::warn!("the SFU shell is behind: a room's work is made good later");
            Vec::new()
        });
        // (Past the bound, a lone server's sweep still takes them.)
        if let Some(k) = kick.filter(|_| kicks.len() < KICKS_PER_ROOM) {
            kicks.push(k);
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
        let spec = |room: &str| {
            let info = sfu.info(room);
            RoomSpec {
                room: info.room,
                pin: info.pin,
                secret: sfu.secret(room),
            }
        };
        let done = match op {
            Work::Make { room, allowed } => {
                spec(room)
                    .ensure(
                        &mut self.janus,
                        self.handle,
                        sfu.admin_key.as_deref(),
                        allowed,
                    )
                    .await
            }
            Work::Remove(room) => spec(room).destroy(&mut self.janus, self.handle).await,
            Work::Kick {
                room,
                feeds,
                tokens,
                members,
                stray_tokens,
            } => {
                self.kick(&spec(room), feeds, tokens, members, *stray_tokens)
                    .await
            }
        };
        // Events that came meanwhile are no business of ours.
        self.janus.take_early();
        done
    }

    /// Takes `tokens` off the room's list and kicks `feeds` (unless a member holds them) and
    /// the later feeds of those tokens, and (knowing every member) anyone in the room under a
    /// feed no member publishes as ([`confab_rooms::SfuFeeds::strays`]), and with
    /// `stray_tokens` any token on the list no member holds: what a kick lost on the way left
    /// behind (a full queue, a Janus that could not be reached, a bound) goes with the next
    /// departure.
    async fn kick(
        &mut self,
        spec: &RoomSpec,
        feeds: &[u64],
        tokens: &[String],
        members: &SfuMembers,
        stray_tokens: bool,
    ) -> Result<(), JanusError> {
        let gone: Vec<String> = tokens
            .iter()
            .filter(|t| !members.tokens.contains(t))
            .cloned()
            .collect();
        let listed = match spec.allow(&mut self.janus, self.handle, false, &gone).await {
            // Nothing to take off: the list is asked for (a sweep needs it).
            Ok(None) if gone.is_empty() && members.complete && stray_tokens => {
                spec.listed(&mut self.janus, self.handle).await
            }
            done => done,
        };
        let listed = match listed {
            Err(e) if e.code() == Some(confab_janus::NO_SUCH_ROOM) => return Ok(()),
            done => done?,
        };
        if members.complete && stray_tokens {
            let stray: Vec<String> = listed
                .into_iter()
                .flatten()
                .filter(|t| !members.tokens.contains(t))
                .collect();
            if !stray.is_empty() {
                tracing::info!(
                    room = spec.room,
                    tokens = stray.len(),
                    "tokens no member holds taken off the SFU room's list"
                );
                spec.allow(&mut self.janus, self.handle, false, &stray)
                    .await?;
            }
        }
        // A member publishes as its first feed, then as later ones derived from its token
        // (`SfuInfo::feed_for`): every one of them is the member's, until it makes another.
        let known = members.feeds();
        let later = known.later_feeds_of(&gone);
        let mut out: Vec<u64> = feeds.iter().copied().filter(|f| !known.held(*f)).collect();
        // Who is there is asked when anyone else may have to go: a stray (knowing every
        // member), or a departed member's later feed.
        if members.complete || !later.is_empty() {
            let list = serde_json::json!({"request": "listparticipants", "room": spec.room});
            let listed = match self
                .janus
                .plugin("listing the room", self.handle, list)
                .await
            {
                Ok(listed) => listed,
                Err(e) if e.code() == Some(confab_janus::NO_SUCH_ROOM) => return Ok(()),
                Err(e) => return Err(e),
            };
            let present: Vec<u64> = listed["participants"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|p| p["id"].as_u64())
                .collect();
            let strays = known.strays(&present);
            for id in present {
                if (strays.contains(&id) || later.contains(&id)) && !out.contains(&id) {
                    out.push(id);
                }
            }
        }
        for feed in out {
            match spec.kick(&mut self.janus, self.handle, feed).await {
                Ok(()) => tracing::info!(room = spec.room, feed, "kicked from the SFU room"),
                Err(e) if e.code() == Some(NO_SUCH_FEED) => {}
                Err(e) if e.code() == Some(confab_janus::NO_SUCH_ROOM) => return Ok(()),
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

/// What the shell does at the SFU (its `Debug`, for the logs, leaves the tokens out).
enum Work {
    Make {
        room: String,
        allowed: Vec<String>,
    },
    Remove(String),
    Kick {
        room: String,
        feeds: Vec<u64>,
        tokens: Vec<String>,
        members: SfuMembers,
        /// Also take off the list the tokens no member holds (`members` must be complete).
        stray_tokens: bool,
    },
}

impl std::fmt::Debug for Work {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Work::Make { room, allowed } => f
                .debug_struct("Make")
                .field("room", room)
                .field("tokens", &allowed.len())
                .finish(),
            Work::Remove(room) => f.debug_tuple("Remove").field(room).finish(),
            Work::Kick {
                room,
                feeds,
                members,
                ..
            } => f
                .debug_struct("Kick")
                .field("room", room)
                .field("feeds", feeds)
                .field("members", members)
                .finish(),
        }
    }
}

/// A room's work waiting for its time.
#[derive(Default)]
struct Waiting {
    /// The room emptied: remove it then, if it is still empty.
    remove: Option<Instant>,
    /// Members who left: when, their feed and token.
    kick: Vec<(Instant, u64, String)>,
    /// Sweep the room then (a node of a cluster, after a join or missed work:
    /// [`sweep_after_join`]).
    sweep: Option<Instant>,
}

impl Waiting {
    fn due(&self) -> Option<Instant> {
        let kicks = self.kick.iter().map(|k| k.0);
        self.remove.into_iter().chain(self.sweep).chain(kicks).min()
    }
}

/// Work on a room at the SFU as it stood when it came due ([`Schedule::take_due`]) or
/// failed ([`Retries`]): it is made afresh from the rooms when carried out ([`afresh`]), since
/// who is in a room may have changed meanwhile.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Due {
    Make(String),
    /// The room, and the seats whose kicks were still waiting (moot if it goes; kicked if it
    /// stays after all).
    Remove {
        room: String,
        feeds: Vec<u64>,
        tokens: Vec<String>,
    },
    Kick {
        room: String,
        feeds: Vec<u64>,
        tokens: Vec<String>,
    },
}

impl Due {
    fn of(work: &Work) -> Due {
        match work {
            Work::Make { room, .. } => Due::Make(room.clone()),
            Work::Remove(room) => Due::Remove {
                room: room.clone(),
                feeds: Vec::new(),
                tokens: Vec::new(),
            },
            Work::Kick {
                room,
                feeds,
                tokens,
                ..
            } => Due::Kick {
                room: room.clone(),
                feeds: feeds.clone(),
                tokens: tokens.clone(),
            },
        }
    }

    fn room(&self) -> &str {
        match self {
            Due::Make(room) | Due::Remove { room, .. } | Due::Kick { room, .. } => room,
        }
    }
}

/// The work that waits (pure: fed ops and time): a room's removal, and each departed member's
/// kick, each at its own time; a join cancels a waiting removal.
#[derive(Default)]
struct Schedule {
    rooms: HashMap<String, Waiting>,
}

impl Schedule {
    /// Someone joined `room`: it is not to be removed.
    fn joined(&mut self, room: &str) {
        if let Some(w) = self.rooms.get_mut(room) {
            w.remove = None;
        }
    }

    /// A removal or kick, due at `at`; false if there is no room for it (bounded).
    fn later(&mut self, op: SfuOp, at: Instant) -> bool {
        let (room, seat) = match op {
            SfuOp::Remove { room } => (room, None),
            SfuOp::Kick {
                room, feed, token, ..
            } => (room, Some((feed, token))),
            SfuOp::Make { room, .. } => {
                self.joined(&room);
                return true;
            }
        };
        let full = self.rooms.len() >= ROOMS_MAX;
        let w = match self.rooms.get_mut(&room) {
            Some(w) => w,
            None if !full => self.rooms.entry(room).or_default(),
            None => return false,
        };
        match seat {
            None => w.remove = Some(at),
            // Bounded (joins are rate-limited well below this in 10 s): past it, a lone
            // server's next sweep (at a join or departure) takes their feeds and tokens.
            Some((feed, token)) if w.kick.len() < KICKS_PER_ROOM => {
                w.kick.push((at, feed, token));
            }
            Some(_) => {}
        }
        true
    }

    /// A sweep of `room` at `at` (the earlier of two); false if there is no room for it.
    fn sweep(&mut self, room: &str, at: Instant) -> bool {
        if !self.rooms.contains_key(room) && self.rooms.len() >= ROOMS_MAX {
            return false;
        }
        let w = self.rooms.entry(room.to_string()).or_default();
        w.sweep = Some(w.sweep.map_or(at, |s| s.min(at)));
        true
    }

    /// The seats of `room` whose kicks still wait: their members may be back (a connection
    /// that blinked), so no sweep takes them before their time.
    fn waiting(&self, room: &str) -> (Vec<u64>, Vec<String>) {
        self.rooms
            .get(room)
            .map(|w| w.kick.iter().map(|k| (k.1, k.2.clone())).unzip())
            .unwrap_or_default()
    }

    /// When something is next due.
    fn next(&self) -> Option<Instant> {
        self.rooms.values().filter_map(Waiting::due).min()
    }

    /// What is due at `now`: a room removed if nobody is in it (`in_use`) then, with every
    /// kick still waiting for it; otherwise the kicks due, and a sweep (a kick of nobody:
    /// carried out as due work, it takes whoever no member holds).
    fn take_due(&mut self, now: Instant, in_use: impl Fn(&str) -> bool) -> Vec<Due> {
        let ready: Vec<String> = self
            .rooms
            .iter()
            .filter(|(_, w)| w.due().is_some_and(|at| at <= now))
            .map(|(room, _)| room.clone())
            .collect();
        let mut out = Vec::new();
        for room in ready {
            let Some(w) = self.rooms.get_mut(&room) else {
                continue;
            };
            if w.remove.is_some_and(|at| at <= now) {
                if !in_use(&room) {
                    let (feeds, tokens) = self.waiting(&room);
                    self.rooms.remove(&room);
                    out.push(Due::Remove {
                        room,
                        feeds,
                        tokens,
                    });
                    continue;
                }
                w.remove = None;
            }
            let (due, later): (Vec<_>, Vec<_>) = w.kick.drain(..).partition(|k| k.0 <= now);
            w.kick = later;
            let sweep = w.sweep.is_some_and(|at| at <= now);
            if sweep {
                w.sweep = None;
            }
            if w.due().is_none() {
                self.rooms.remove(&room);
            }
            if !due.is_empty() || sweep {
                let (feeds, tokens) = due.into_iter().map(|k| (k.1, k.2)).unzip();
                out.push(Due::Kick {
                    room,
                    feeds,
                    tokens,
                });
            }
        }
        out
    }
}

/// Work that could not reach Janus (pure: fed failures and time): each tried again after
/// `RETRY_FIRST`, doubling, `RETRY_TRIES` times at most; one entry a room and kind (a room's
/// kicks merged), bounded. A kick lost to an unreachable Janus is thus made good without
/// waiting for another departure, in a cluster too (where no node may sweep what it cannot
/// tell from a join not heard of yet).
#[derive(Default)]
struct Retries {
    /// When, how many tries so far, what.
    waiting: Vec<(Instant, u32, Due)>,
}

impl Retries {
    /// `again` failed its `tries`-th try at `now`: tried again later, unless it has had its
    /// tries or there is no room (false).
    fn failed(&mut self, again: Due, tries: u32, now: Instant) -> bool {
        if tries > RETRY_TRIES {
            return false;
        }
        self.put(now + RETRY_FIRST * 2u32.pow(tries - 1), tries, again)
    }

    /// Waits again as it is (not tried: Janus was found unreachable by other work first).
    fn put_back(&mut self, again: Due, tries: u32, now: Instant) -> bool {
        self.put(now + RETRY_FIRST, tries, again)
    }

    fn put(&mut self, at: Instant, tries: u32, again: Due) -> bool {
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
        // One entry a room and kind: the earlier time and the fewer tries of the two, and a
        // room's kicks (or the seats going with its removal) merged, as many as a room waits.
        let w = &mut self.waiting[i];
        w.0 = w.0.min(at);
        w.1 = w.1.min(tries);
        if let (
            Due::Kick { feeds, tokens, .. } | Due::Remove { feeds, tokens, .. },
            Due::Kick {
                feeds: more,
                tokens: more_tokens,
                ..
            }
            | Due::Remove {
                feeds: more,
                tokens: more_tokens,
                ..
            },
        ) = (&mut w.2, again)
        {
            for (f, t) in more.into_iter().zip(more_tokens) {
                if !feeds.contains(&f) && feeds.len() < KICKS_PER_ROOM {
                    feeds.push(f);
                    tokens.push(t);
                }
            }
        }
        true
    }

    fn next(&self) -> Option<Instant> {
        self.waiting.iter().map(|w| w.0).min()
    }

    /// What is due at `now`, with its tries so far.
    fn take_due(&mut self, now: Instant) -> Vec<(u32, Due)> {
        let (due, later): (Vec<_>, Vec<_>) = self.waiting.drain(..).partition(|w| w.0 <= now);
        self.waiting = later;
        due.into_iter().map(|(_, tries, a)| (tries, a)).collect()
    }
}

/// Carries out the room logic's SFU work until cancelled. A room emptied is removed only
/// after `remove_after`, and only if nobody is in it by then: a member back within it finds
/// the room there, and another node's join that this node had not heard of yet when its own
/// last member left does not lose its room. A member who said `leave` is kicked at once; one
/// whose connection went, after the same wait (its client keeps its media while its
/// signaling is away), unless the room is removed by then. `lone`: no other node serves the
/// rooms, so a token on a room's list that no member holds is a leftover, and goes.
pub async fn ops_loop(
    sfu: Sfu,
    hub: Arc<Hub>,
    store: Option<Arc<Store>>,
    remove_after: Duration,
    inbox: SfuInbox,
    cancel: CancellationToken,
) {
    // A lone server knows every member at once; a node of a cluster may not have heard of a
    // join yet, so it leaves tokens it does not know on the list.
    let lone = store.is_none();
    let SfuInbox { mut ops, missed } = inbox;
    let mut admin: Option<Admin> = None;
    let mut schedule = Schedule::default();
    let mut retries = Retries::default();
    // Janus could not be reached by the last try: new work waits with the retries (the next
    // of which finds out whether it is back) rather than each taking its full answer time.
    let mut unreachable = false;
    let mut idle_since = Instant::now();
    loop {
        let due = schedule.next();
        let retry = retries.next();
        let op = tokio::select! {
            _ = cancel.cancelled() => break,
            op = ops.recv() => match op {
                Some(SfuOp::Make { room, token }) => {
                    schedule.joined(&room);
                    // Everyone's tokens: a restarted SFU gets the room back with all of them.
                    let mut allowed = hub.read_rooms(|r| r.sfu_members(&room)).tokens;
                    if !allowed.contains(&token) {
                        allowed.push(token);
                    }
                    Work::Make { room, allowed }
                }
                Some(SfuOp::Kick { room, feed, token, at_once: true }) => {
                    // Said `leave`: nothing to wait for. In a cluster only this member goes:
                    // the sweep of feeds no member holds waits with the departures that wait
                    // (a join on another node may not have reached this one yet).
                    let mut members = hub.read_rooms(|r| r.sfu_members(&room));
                    members.complete &= lone;
                    hold_waiting(&mut members, schedule.waiting(&room));
                    let (feeds, tokens) = (vec![feed], vec![token]);
                    Work::Kick { room, feeds, tokens, members, stray_tokens: lone }
                }
                Some(later) => {
                    // A connection that went may be a client whose signaling is away, its
                    // media still flowing: its kick waits.
                    if !schedule.later(later.clone(), Instant::now() + remove_after) {
                        // Bounded: such a room stays at the SFU until Janus restarts.
                        tracing::warn!(?later, "too much work waiting for the SFU");
                    }
                    continue;
                }
                None => break,
            },
            _ = missed.bell.notified() => {
                let work = resync(missed.take(), &hub, &mut schedule, remove_after, lone);
                if let Some(ok) = run_due(work, &sfu, &mut admin, &hub, store.as_deref(), &mut schedule, &mut retries, lone, lone, remove_after).await {
                    unreachable = !ok;
                }
                idle_since = Instant::now();
                continue;
            }
            _ = tokio::time::sleep_until(due.unwrap_or_else(Instant::now)), if due.is_some() => {
                let now = Instant::now();
                let ready = schedule.take_due(now, |room| held(&hub, room));
                // Due kicks sweep in a cluster too (the wait let joins arrive).
                let ready = ready.into_iter().map(|d| (0, d)).collect();
                if let Some(ok) = run_due(ready, &sfu, &mut admin, &hub, store.as_deref(), &mut schedule, &mut retries, lone, true, remove_after).await {
                    unreachable = !ok;
                }
                idle_since = Instant::now();
                continue;
            }
            _ = tokio::time::sleep_until(retry.unwrap_or_else(Instant::now)), if retry.is_some() => {
                let again = retries.take_due(Instant::now());
                if let Some(ok) = run_due(again, &sfu, &mut admin, &hub, store.as_deref(), &mut schedule, &mut retries, lone, lone, remove_after).await {
                    unreachable = !ok;
                }
                idle_since = Instant::now();
                continue;
            }
            _ = tokio::time::sleep_until(idle_since + IDLE), if admin.is_some() => {
                if let Some(a) = admin.take() {
                    a.janus.close().await;
                }
                continue;
            }
        };
        if unreachable {
            if !retries.put_back(Due::of(&op), 0, Instant::now()) {
                tracing::warn!(
                    ?op,
                    "too much work waiting to be tried again at the SFU; dropped"
                );
            }
        } else if !carry_out(&sfu, &mut admin, &op).await {
            unreachable = true;
            if !retries.failed(Due::of(&op), 1, Instant::now()) {
                tracing::warn!(
                    ?op,
                    "too much work waiting to be tried again at the SFU; dropped"
                );
            }
        } else if let Work::Make { room, .. } = &op {
            // Someone joined, and will want a place to publish.
            let later = Instant::now() + remove_after;
            if let Some(sweep) = sweep_after_join(room.clone(), lone, &mut schedule, later) {
                if let Some(work) = afresh(&sweep, &hub, &schedule, lone, true) {
                    carry_out(&sfu, &mut admin, &work).await;
                }
            }
        }
        idle_since = Instant::now();
    }
    if let Some(a) = admin {
        a.janus.close().await;
    }
}

/// The work that makes good what was missed ([`SfuQueue`]), by room: the departures are
/// kicked as their ops said (at once, or after `remove_after` for a connection that went: its
/// member may be back meanwhile, and until then no sweep takes it); a room in use is made
/// again now with every member's token (a restarted Janus, a join's make lost) and swept of
/// whoever no member holds ([`sweep_after_join`]); an empty room is removed after the wait, if
/// still empty.
fn resync(
    rooms: HashMap<String, Vec<MissedKick>>,
    hub: &Hub,
    schedule: &mut Schedule,
    remove_after: Duration,
    lone: bool,
) -> Vec<(u32, Due)> {
    let later = Instant::now() + remove_after;
    let mut work = Vec::new();
    for (room, kicks) in rooms {
        let (mut feeds, mut tokens) = (Vec::new(), Vec::new());
        for (feed, token, at_once) in kicks {
            if at_once {
                feeds.push(feed);
                tokens.push(token);
            } else {
                let kick = SfuOp::Kick {
                    room: room.clone(),
                    feed,
                    token,
                    at_once,
                };
                if !schedule.later(kick, later) {
                    tracing::warn!("too much work waiting for the SFU: a kick dropped");
                }
            }
        }
        if !feeds.is_empty() {
            work.push((
                0,
                Due::Kick {
                    room: room.clone(),
                    feeds,
                    tokens,
                },
            ));
        }
        if !held(hub, &room) {
            if !schedule.later(SfuOp::Remove { room }, later) {
                tracing::warn!("too much work waiting for the SFU: a removal dropped");
            }
            continue;
        }
        schedule.joined(&room);
        work.push((0, Due::Make(room.clone())));
        work.extend(sweep_after_join(room, lone, schedule, later).map(|d| (0, d)));
    }
    work
}

/// Someone joined `room` (or its work was missed): whoever sits in it under a feed no member
/// publishes as (a member filling its publisher places under made-up ids, a departure's kick
/// lost) goes, not only at the next departure. On a lone server at once: the sweep to carry
/// out now. On a node of a cluster after the wait (`later`; a join on another node may not
/// have reached this one yet), at most one sweep a room and wait: `None`.
fn sweep_after_join(
    room: String,
    lone: bool,
    schedule: &mut Schedule,
    later: Instant,
) -> Option<Due> {
    if lone {
        return Some(Due::Kick {
            room,
            feeds: Vec::new(),
            tokens: Vec::new(),
        });
    }
    if !schedule.sweep(&room, later) {
        tracing::warn!("too much work waiting for the SFU: a sweep dropped");
    }
    None
}

/// Carries out work that came due (`tries` 0) or is tried again, each made afresh from the
/// rooms. Once Janus is found unreachable, the rest waits untried (each try of an unreachable
/// Janus may take its full answer time, and the queue of new work waits meanwhile). Whether
/// the last try reached Janus (`None`: nothing was tried).
#[allow(clippy::too_many_arguments)]
async fn run_due(
    due: Vec<(u32, Due)>,
    sfu: &Sfu,
    admin: &mut Option<Admin>,
    hub: &Hub,
    store: Option<&Store>,
    schedule: &mut Schedule,
    retries: &mut Retries,
    lone: bool,
    sweep: bool,
    remove_after: Duration,
) -> Option<bool> {
    let mut reached = None;
    for (tries, due) in due {
        let kept = if reached == Some(false) {
            retries.put_back(due, tries, Instant::now())
        } else {
            let Some(work) = afresh(&due, hub, schedule, lone, sweep) else {
                continue;
            };
            let work = match work {
                Work::Remove(room) => match still_wanted(store, hub, &room).await {
                    Some(false) => Work::Remove(room),
                    wanted => {
                        if wanted.is_none() {
                            // Cut off from the store: this node has let the others' people
                            // go and cannot tell. Asked again after the wait, until it can.
                            let again = SfuOp::Remove { room: room.clone() };
                            if !schedule.later(again, Instant::now() + remove_after) {
                                tracing::warn!(
                                    "too much work waiting for the SFU: a removal dropped"
                                );
                            }
                        } else {
                            tracing::debug!(room, "in use through another node: not removed");
                        }
                        // The departures that waited with the removal go all the same.
                        let Due::Remove { feeds, tokens, .. } = &due else {
                            continue;
                        };
                        if feeds.is_empty() {
                            continue;
                        }
                        let (feeds, tokens) = (feeds.clone(), tokens.clone());
                        let kick = Due::Kick {
                            room,
                            feeds,
                            tokens,
                        };
                        match afresh(&kick, hub, schedule, lone, sweep) {
                            Some(w) => w,
                            None => continue,
                        }
                    }
                },
                other => other,
            };
            if tries > 0 {
                tracing::info!(?work, tries, "trying the media server again");
            }
            let ok = carry_out(sfu, admin, &work).await;
            reached = Some(ok);
            // (The try may have taken the full answer time: the wait counts from its end.)
            ok || retries.failed(due, tries + 1, Instant::now())
        };
        if !kept {
            tracing::warn!("SFU work given up: the media server could not be reached");
        }
    }
    reached
}

/// Whether someone may still be in `room` ([`confab_rooms::Rooms::room_in_use`]); always on a
/// node cut off from the store (it has let the other nodes' people go, and cannot tell).
fn in_use(hub: &Hub, room: &str) -> bool {
    hub.store_healthy() == Some(false) || held(hub, room)
}

/// Whether this server holds someone in `room` (or someone joining it). On a node of a
/// cluster that is not the last word on a removal: someone may have joined through another
/// node, or (cut off from the store) this node cannot tell; [`still_wanted`] asks the store.
fn held(hub: &Hub, room: &str) -> bool {
    hub.read_rooms(|r| r.room_in_use(room))
}

/// On a node of a cluster, whether the VideoRoom room of `room` is still wanted elsewhere:
/// `Some(true)` if the store holds someone of another node in it (joined there while this one
/// waited to remove it), `Some(false)` if nobody, `None` if the store cannot be asked (cut
/// off: the removal waits). A lone server holds every member: `Some(false)`.
async fn still_wanted(store: Option<&Store>, hub: &Hub, room: &str) -> Option<bool> {
    match store {
        None => Some(false),
        // Known to be cut off: not worth the store's answer time.
        Some(_) if hub.store_healthy() == Some(false) => None,
        Some(s) => s.others_in(room).await,
    }
}

/// The work for `due`, made from the rooms as they are now: none if it is moot (a room to
/// make that nobody is in any more). A room to remove that someone is back in, or that waits
/// to be removed later (it emptied again), stays: the kicks that went with it are done instead.
/// `sweep`: a kick also takes whoever no member holds (knowing every member).
fn afresh(due: &Due, hub: &Hub, schedule: &Schedule, lone: bool, sweep: bool) -> Option<Work> {
    let in_use = |room: &str| in_use(hub, room);
    let kick = |room: &String, feeds: &Vec<u64>, tokens: &Vec<String>| {
        let mut members = hub.read_rooms(|r| r.sfu_members(room));
        // A node cut off from the store has let the other nodes' people go (its rooms hold
        // only its own): no sweep then, or it would kick theirs out of the shared room.
        members.complete &= sweep && hub.store_healthy() != Some(false);
        hold_waiting(&mut members, schedule.waiting(room));
        Work::Kick {
            room: room.clone(),
            feeds: feeds.clone(),
            tokens: tokens.clone(),
            members,
            stray_tokens: lone,
        }
    };
    match due {
        Due::Make(room) => in_use(room).then(|| Work::Make {
            room: room.clone(),
            allowed: hub.read_rooms(|r| r.sfu_members(room)).tokens,
        }),
        Due::Remove {
            room,
            feeds,
            tokens,
        } if held(hub, room) || schedule.rooms.contains_key(room) => {
            (!feeds.is_empty()).then(|| kick(room, feeds, tokens))
        }
        Due::Remove { room, .. } => Some(Work::Remove(room.clone())),
        Due::Kick {
            room,
            feeds,
            tokens,
        } => Some(kick(room, feeds, tokens)),
    }
}

/// Seats whose kicks still wait count as held by members, for a sweep's sake.
fn hold_waiting(members: &mut SfuMembers, (feeds, tokens): (Vec<u64>, Vec<String>)) {
    members.feeds.extend(feeds);
    members.tokens.extend(tokens);
}

/// One op: one try on the open connection, one on a new one (Janus may have restarted).
/// False if Janus could not be reached (worth trying again later).
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
            Err(e @ JanusError::Refused { .. })
                if !matches!(
                    e.code(),
                    Some(confab_janus::NO_SUCH_SESSION | confab_janus::NO_SUCH_HANDLE)
                ) =>
            {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn kick(room: &str, feed: u64) -> SfuOp {
        SfuOp::Kick {
            room: room.into(),
            feed,
            token: format!("t{feed}"),
            at_once: false,
        }
    }

    /// Work that could not reach Janus is tried again after 2, 4, 8, 16 and 32 s, then given
    /// up; what waits is bounded.
    #[test]
    fn work_janus_did_not_get_is_tried_again_for_a_minute() {
        let t0 = Instant::now();
        let mut r = Retries::default();
        let kick = Due::Kick {
            room: "r".into(),
            feeds: vec![7],
            tokens: vec!["t7".into()],
        };
        let mut at = t0;
        let mut waits = Vec::new();
        let mut tries = 1;
        while r.failed(kick.clone(), tries, at) {
            let next = r.next().unwrap();
            waits.push((next - at).as_secs());
            assert!(r.take_due(next - Duration::from_millis(1)).is_empty());
            let due = r.take_due(next);
            assert_eq!(due, vec![(tries, kick.clone())]);
            (at, tries) = (next, tries + 1);
        }
        assert_eq!(waits, [2, 4, 8, 16, 32]);
        assert_eq!(r.next(), None, "given up");
        // One entry a room and kind: a room's kicks merge, a second make is the first.
        let kick = |feed: u64| Due::Kick {
            room: "r".into(),
            feeds: vec![feed],
            tokens: vec![format!("t{feed}")],
        };
        assert!(r.failed(kick(1), 1, t0) && r.failed(kick(2), 1, t0) && r.failed(kick(1), 1, t0));
        assert!(r.failed(Due::Make("r".into()), 1, t0) && r.failed(Due::Make("r".into()), 2, t0));
        let due = r.take_due(t0 + Duration::from_secs(60));
        assert_eq!(
            due,
            [
                (
                    1,
                    Due::Kick {
                        room: "r".into(),
                        feeds: vec![1, 2],
                        tokens: vec!["t1".into(), "t2".into()],
                    }
                ),
                (1, Due::Make("r".into()))
            ]
        );
        for i in 0..RETRIES_MAX + 5 {
            r.failed(Due::Make(format!("r{i}")), 1, t0);
        }
        assert_eq!(r.waiting.len(), RETRIES_MAX, "bounded");
    }

    /// A sweep, due or at once, holds the seats whose kicks still wait (a member whose
    /// connection blinked keeps its media for the whole wait).
    #[test]
    fn seats_waiting_for_their_kick_are_held() {
        let t0 = Instant::now();
        let wait = Duration::from_secs(10);
        let mut s = Schedule::default();
        assert!(s.later(kick("r", 1), t0 + wait));
        assert!(s.later(kick("r", 2), t0 + wait + Duration::from_secs(5)));
        assert_eq!(s.waiting("r"), (vec![1, 2], vec!["t1".into(), "t2".into()]));
        s.take_due(t0 + wait, |_| true);
        assert_eq!(
            s.waiting("r"),
            (vec![2], vec!["t2".into()]),
            "1's kick is done"
        );
        let mut members = SfuMembers {
            feeds: vec![7],
            tokens: vec!["t7".into()],
            complete: true,
        };
        hold_waiting(&mut members, s.waiting("r"));
        assert_eq!(members.feeds, [7, 2]);
        assert_eq!(members.tokens, ["t7", "t2"]);
        assert_eq!(s.waiting("elsewhere"), (vec![], vec![]));
    }

    /// Each departure waits its own time: a second member leaving just before the first's
    /// kick is due is not kicked with it.
    #[test]
    fn each_kick_waits_its_own_time() {
        let t0 = Instant::now();
        let wait = Duration::from_secs(10);
        let mut s = Schedule::default();
        assert!(s.later(kick("r", 1), t0 + wait));
        let t1 = t0 + Duration::from_secs(9);
        assert!(s.later(kick("r", 2), t1 + wait));
        assert_eq!(s.next(), Some(t0 + wait));
        let in_use = |_: &str| true;
        assert_eq!(s.take_due(t0 + wait - Duration::from_millis(1), in_use), []);
        assert_eq!(
            s.take_due(t0 + wait, in_use),
            [Due::Kick {
                room: "r".into(),
                feeds: vec![1],
                tokens: vec!["t1".into()],
            }]
        );
        assert_eq!(s.next(), Some(t1 + wait));
        assert_eq!(
            s.take_due(t1 + wait, in_use),
            [Due::Kick {
                room: "r".into(),
                feeds: vec![2],
                tokens: vec!["t2".into()],
            }]
        );
        assert_eq!(s.next(), None);
    }

    /// An emptied room is removed once its wait is over, taking the kicks still waiting with
    /// it; a join meanwhile keeps it (its kicks still come).
    #[test]
    fn a_room_is_removed_only_if_still_empty_and_a_join_keeps_it() {
        let t0 = Instant::now();
        let wait = Duration::from_secs(10);
        let mut s = Schedule::default();
        s.later(kick("r", 1), t0 + wait);
        s.later(SfuOp::Remove { room: "r".into() }, t0 + wait);
        s.later(kick("r", 2), t0 + wait + Duration::from_secs(1));
        assert_eq!(
            s.take_due(t0 + wait, |_| false),
            [Due::Remove {
                room: "r".into(),
                feeds: vec![1, 2],
                tokens: vec!["t1".into(), "t2".into()],
            }],
            "the kicks still waiting go with it (moot once it is gone)"
        );
        assert_eq!(s.next(), None);

        s.later(kick("q", 3), t0 + wait);
        s.later(SfuOp::Remove { room: "q".into() }, t0 + wait);
        s.joined("q");
        assert_eq!(
            s.take_due(t0 + wait, |_| false),
            [Due::Kick {
                room: "q".into(),
                feeds: vec![3],
                tokens: vec!["t3".into()],
            }]
        );
        // Still in use when due: kept, and nothing more waits.
        s.later(SfuOp::Remove { room: "p".into() }, t0 + wait);
        assert_eq!(s.take_due(t0 + wait, |_| true), []);
        assert_eq!(s.next(), None);
    }

    /// Work that does not fit the queue is not dropped: its room is noted once, with the
    /// departures whose kicks did not fit, and the shell is rung.
    #[tokio::test]
    async fn work_that_does_not_fit_the_queue_notes_its_room() {
        let (q, mut inbox) = SfuQueue::new(1);
        let make = |room: &str| SfuOp::Make {
            room: room.into(),
            token: "t".into(),
        };
        q.hand(make("a"));
        q.hand(make("b"));
        q.hand(kick("b", 2));
        q.hand(SfuOp::Remove { room: "c".into() });
        assert!(matches!(inbox.ops.try_recv(), Ok(SfuOp::Make { room, .. }) if room == "a"));
        assert!(inbox.ops.try_recv().is_err(), "nothing else was queued");
        tokio::time::timeout(Duration::from_secs(1), inbox.missed.bell.notified())
            .await
            .expect("the shell is rung");
        let mut noted: Vec<(String, Vec<MissedKick>)> = inbox.missed.take().into_iter().collect();
        noted.sort();
        assert_eq!(
            noted,
            [
                ("b".into(), vec![(2, "t2".into(), false)]),
                ("c".into(), vec![])
            ]
        );
        assert!(inbox.missed.take().is_empty(), "taken");
        // Room in the queue again: work is queued, not noted.
        q.hand(kick("d", 3));
        assert!(matches!(inbox.ops.try_recv(), Ok(SfuOp::Kick { room, .. }) if room == "d"));
        assert!(inbox.missed.take().is_empty());
    }

    /// A missed departure is kicked as its op said: at once after `leave`, after the wait
    /// for a connection that went (held meanwhile: no sweep takes it); a room nobody is in any
    /// more is removed after the wait.
    #[test]
    fn missed_departures_are_kicked_as_they_would_have_been() {
        let hub = crate::hub::Hub::new(
            confab_rooms::Rooms::new(confab_rooms::Config::default(), [1; 32]),
            crate::hub::QueueLimits {
                messages: 8,
                bytes: 1000,
            },
            None,
            None,
        );
        let mut s = Schedule::default();
        let wait = Duration::from_secs(10);
        let missed = HashMap::from([(
            "r".to_owned(),
            vec![(1, "t1".to_owned(), true), (2, "t2".to_owned(), false)],
        )]);
        let t0 = Instant::now();
        let work = resync(missed, &hub, &mut s, wait, true);
        assert_eq!(
            work,
            [(
                0,
                Due::Kick {
                    room: "r".into(),
                    feeds: vec![1],
                    tokens: vec!["t1".into()],
                }
            )]
        );
        assert_eq!(
            s.waiting("r"),
            (vec![2], vec!["t2".into()]),
            "held until due"
        );
        let due = s.take_due(t0 + wait + Duration::from_millis(50), |_| false);
        assert_eq!(
            due,
            [Due::Remove {
                room: "r".into(),
                feeds: vec![2],
                tokens: vec!["t2".into()],
            }]
        );
    }

    /// A missed room's sweep (a node of a cluster) comes at its time, with the kicks due
    /// then; a room removed by then takes it with it.
    #[test]
    fn a_missed_rooms_sweep_waits_its_time() {
        let t0 = Instant::now();
        let wait = Duration::from_secs(10);
        let mut s = Schedule::default();
        assert!(s.sweep("r", t0 + wait));
        assert!(s.sweep("r", t0 + wait * 2), "the earlier stands");
        assert!(s.later(kick("r", 1), t0 + wait));
        assert_eq!(s.next(), Some(t0 + wait));
        let in_use = |_: &str| true;
        assert_eq!(s.take_due(t0 + wait - Duration::from_millis(1), in_use), []);
        assert_eq!(
            s.take_due(t0 + wait, in_use),
            [Due::Kick {
                room: "r".into(),
                feeds: vec![1],
                tokens: vec!["t1".into()],
            }]
        );
        assert_eq!(s.next(), None);
        assert!(s.sweep("q", t0 + wait));
        assert_eq!(
            s.take_due(t0 + wait, in_use),
            [Due::Kick {
                room: "q".into(),
                feeds: vec![],
                tokens: vec![],
            }],
            "a sweep alone is a kick of nobody"
        );
        s.sweep("p", t0 + wait);
        s.later(SfuOp::Remove { room: "p".into() }, t0 + wait);
        assert_eq!(
            s.take_due(t0 + wait, |_| false),
            [Due::Remove {
                room: "p".into(),
                feeds: vec![],
                tokens: vec![],
            }]
        );
        assert_eq!(s.next(), None);
    }
}
