//! The SFU shell: makes and removes the VideoRoom rooms the room logic asks for
//! ([`confab_rooms::SfuOp`]), over one Janus connection that this task owns. Clients only join
//! rooms; the room's `secret` (to edit, kick from or destroy it) and Janus's `admin_key` (to
//! make rooms) stay here.
//!
//! Never in the way of signaling: the hub hands work over without waiting (a full queue drops
//! it: the next join asks to make the room again), and a media server that is down costs a
//! warning, not a join.

use crate::hub::Hub;
use confab_janus::{Janus, JanusError, RoomSpec};
use confab_rooms::{Sfu, SfuOp};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Work waiting for the shell at most.
pub const OPS_QUEUE: usize = 256;
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

    async fn apply(&mut self, sfu: &Sfu, op: &SfuOp) -> Result<(), JanusError> {
        let spec = |room: &str| {
            let info = sfu.info(room);
            RoomSpec {
                room: info.room,
                pin: info.pin,
                secret: sfu.secret(room),
            }
        };
        let done = match op {
            SfuOp::Make { room } => {
                spec(room)
                    .ensure(&mut self.janus, self.handle, sfu.admin_key.as_deref())
                    .await
            }
            SfuOp::Remove { room } => spec(room).destroy(&mut self.janus, self.handle).await,
        };
        // Events that came meanwhile are no business of ours.
        self.janus.take_early();
        done
    }
}

/// Carries out the room logic's SFU work until cancelled. A room emptied is removed only
/// after `remove_after`, and only if nobody is in it by then: a member back within it keeps
/// their SFU session, and another node's join that this node had not heard of yet when its
/// own last member left does not lose its room.
pub async fn ops_loop(
    sfu: Sfu,
    hub: Arc<Hub>,
    remove_after: Duration,
    mut ops: mpsc::Receiver<SfuOp>,
    cancel: CancellationToken,
) {
    let mut admin: Option<Admin> = None;
    let mut removing: HashMap<String, Instant> = HashMap::new();
    let mut idle_since = Instant::now();
    loop {
        let due = removing.values().min().copied();
        let op = tokio::select! {
            _ = cancel.cancelled() => break,
            op = ops.recv() => match op {
                Some(SfuOp::Remove { room }) => {
                    if removing.len() < OPS_QUEUE * 16 {
                        removing.insert(room, Instant::now() + remove_after);
                    } else {
                        // Bounded: such a room stays at the SFU until Janus restarts.
                        tracing::warn!(room, "too many rooms waiting to be removed at the SFU");
                    }
                    continue;
                }
                Some(op) => op,
                None => break,
            },
            _ = tokio::time::sleep_until(due.unwrap_or_else(Instant::now)), if due.is_some() => {
                let now = Instant::now();
                let ready: Vec<String> = removing
                    .iter()
                    .filter(|(_, at)| **at <= now)
                    .map(|(room, _)| room.clone())
                    .collect();
                for room in ready {
                    removing.remove(&room);
                    if !hub.read_rooms(|r| r.room_in_use(&room)) {
                        carry_out(&sfu, &mut admin, SfuOp::Remove { room }).await;
                    }
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
        if let SfuOp::Make { room } = &op {
            removing.remove(room);
        }
        carry_out(&sfu, &mut admin, op).await;
        idle_since = Instant::now();
    }
    if let Some(a) = admin {
        a.janus.close().await;
    }
}

/// One op: one try on the open connection, one on a new one (Janus may have restarted).
async fn carry_out(sfu: &Sfu, admin: &mut Option<Admin>, op: SfuOp) {
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
