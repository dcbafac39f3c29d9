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
//! server anyone in the room under a feed no member holds is kicked with it.
//!
//! Never in the way of signaling: the hub hands work over without waiting (a full queue drops
//! it: the next join asks to make the room again), and a media server that is down costs a
//! warning, not a join.

use crate::hub::Hub;
use confab_janus::{Janus, JanusError, RoomSpec, NO_SUCH_FEED};
use confab_rooms::{Sfu, SfuMembers, SfuOp};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Work waiting for the shell at most.
pub const OPS_QUEUE: usize = 256;
/// Departures one room's waiting work holds at most.
const KICKS_PER_ROOM: usize = 1024;
/// An idle connection is closed after this (Janus would end its session at 60 s).
const IDLE: Duration = Duration::from_secs(20);

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
            } => self.kick(&spec(room), feeds, tokens, members).await,
        };
        // Events that came meanwhile are no business of ours.
        self.janus.take_early();
        done
    }

    /// Takes `tokens` off the room's list and kicks `feeds` (unless a member holds them), and
    /// (knowing every member) anyone in the room under a feed no member was given.
    async fn kick(
        &mut self,
        spec: &RoomSpec,
        feeds: &[u64],
        tokens: &[String],
        members: &SfuMembers,
    ) -> Result<(), JanusError> {
        let gone: Vec<String> = tokens
            .iter()
            .filter(|t| !members.tokens.contains(t))
            .cloned()
            .collect();
        match spec.allow(&mut self.janus, self.handle, false, &gone).await {
            Err(e) if e.code() == Some(confab_janus::NO_SUCH_ROOM) => return Ok(()),
            done => done?,
        }
        let mut out: Vec<u64> = feeds
            .iter()
            .copied()
            .filter(|f| !members.feeds.contains(f))
            .collect();
        if members.complete {
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
            let present = listed["participants"].as_array().into_iter().flatten();
            for id in present.filter_map(|p| p["id"].as_u64()) {
                if !members.feeds.contains(&id) && !out.contains(&id) {
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

/// What the shell does at the SFU.
#[derive(Debug)]
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
    },
}

/// A room's work waiting for its time.
struct Waiting {
    at: Instant,
    /// The room emptied: remove it, if it is still empty then.
    remove: bool,
    /// Feeds and tokens of members who left.
    kick: Vec<(u64, String)>,
}

/// Carries out the room logic's SFU work until cancelled. A room emptied is removed only
/// after `remove_after`, and only if nobody is in it by then: a member back within it keeps
/// their SFU session, and another node's join that this node had not heard of yet when its
/// own last member left does not lose its room. A member's feed is kicked after the same wait,
/// unless a member holds it again by then (the same client back after a lost connection).
pub async fn ops_loop(
    sfu: Sfu,
    hub: Arc<Hub>,
    remove_after: Duration,
    mut ops: mpsc::Receiver<SfuOp>,
    cancel: CancellationToken,
) {
    let mut admin: Option<Admin> = None;
    let mut waiting: HashMap<String, Waiting> = HashMap::new();
    let mut idle_since = Instant::now();
    loop {
        let due = waiting.values().map(|w| w.at).min();
        let op = tokio::select! {
            _ = cancel.cancelled() => break,
            op = ops.recv() => match op {
                Some(SfuOp::Make { room, token }) => {
                    if let Some(w) = waiting.get_mut(&room) {
                        w.remove = false;
                    }
                    // Everyone's tokens: a restarted SFU gets the room back with all of them.
                    let mut allowed = hub.read_rooms(|r| r.sfu_members(&room)).tokens;
                    if !allowed.contains(&token) {
                        allowed.push(token);
                    }
                    Work::Make { room, allowed }
                }
                Some(later) => {
                    let (room, remove, seat) = match later {
                        SfuOp::Remove { room } => (room, true, None),
                        SfuOp::Kick { room, feed, token } => (room, false, Some((feed, token))),
                        SfuOp::Make { .. } => unreachable!("matched above"),
                    };
                    let full = waiting.len() >= OPS_QUEUE * 16;
                    match waiting.get_mut(&room) {
                        Some(w) => {
                            w.remove |= remove;
                            // Bounded (joins are rate-limited well below this in 10 s): past
                            // it, a lone server's sweep still kicks the feeds, but their tokens
                            // stay on the list until the room empties.
                            if w.kick.len() < KICKS_PER_ROOM {
                                w.kick.extend(seat);
                            }
                        }
                        None if !full => {
                            let at = Instant::now() + remove_after;
                            let kick = seat.into_iter().collect();
                            waiting.insert(room, Waiting { at, remove, kick });
                        }
                        // Bounded: such a room stays at the SFU until Janus restarts.
                        None => tracing::warn!(room, "too much work waiting for the SFU"),
                    }
                    continue;
                }
                None => break,
            },
            _ = tokio::time::sleep_until(due.unwrap_or_else(Instant::now)), if due.is_some() => {
                let now = Instant::now();
                let ready: Vec<String> = waiting
                    .iter()
                    .filter(|(_, w)| w.at <= now)
                    .map(|(room, _)| room.clone())
                    .collect();
                for room in ready {
                    let Some(w) = waiting.remove(&room) else { continue };
                    let (in_use, members) =
                        hub.read_rooms(|r| (r.room_in_use(&room), r.sfu_members(&room)));
                    let work = if !in_use && w.remove {
                        Work::Remove(room)
                    } else if w.kick.is_empty() {
                        continue;
                    } else {
                        let (feeds, tokens) = w.kick.into_iter().unzip();
                        Work::Kick { room, feeds, tokens, members }
                    };
                    carry_out(&sfu, &mut admin, work).await;
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
        carry_out(&sfu, &mut admin, op).await;
        idle_since = Instant::now();
    }
    if let Some(a) = admin {
        a.janus.close().await;
    }
}

/// One op: one try on the open connection, one on a new one (Janus may have restarted).
async fn carry_out(sfu: &Sfu, admin: &mut Option<Admin>, op: Work) {
    for attempt in 0..2 {
        let a = match admin.as_mut() {
            Some(a) => a,
            None => match Admin::open(sfu).await {
                Ok(a) => admin.insert(a),
                Err(e) => {
                    tracing::warn!("the media server: {e}");
                    return;
                }
            },
        };
        match a.apply(sfu, &op).await {
            Ok(()) => return,
            Err(e @ JanusError::Refused { .. }) => {
                tracing::warn!(?op, "the media server: {e}");
                return;
            }
            Err(e) => {
                *admin = None;
                if attempt == 1 {
                    tracing::warn!(?op, "the media server: {e}");
                }
            }
        }
    }
}
