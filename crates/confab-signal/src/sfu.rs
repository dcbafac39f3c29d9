//! The SFU shell: makes and removes the VideoRoom rooms the room logic asks for
//! ([`confab_rooms::SfuOp`]), over one Janus connection that this task owns. Clients only join
//! rooms; the room's `secret` (to edit, kick from or destroy it) and Janus's `admin_key` (to
//! make rooms) stay here.
//!
//! Never in the way of signaling: the hub hands work over without waiting (a full queue drops
//! it: the next join asks to make the room again), and a media server that is down costs a
//! warning, not a join.

use confab_janus::{Janus, JanusError, RoomSpec};
use confab_rooms::{Sfu, SfuOp};
use std::time::Duration;
use tokio::sync::mpsc;
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

/// Carries out the room logic's SFU work until cancelled.
pub async fn ops_loop(sfu: Sfu, mut ops: mpsc::Receiver<SfuOp>, cancel: CancellationToken) {
    let mut admin: Option<Admin> = None;
    loop {
        let op = tokio::select! {
            _ = cancel.cancelled() => break,
            op = ops.recv() => match op {
                Some(op) => op,
                None => break,
            },
            _ = tokio::time::sleep(IDLE), if admin.is_some() => {
                if let Some(a) = admin.take() {
                    a.janus.close().await;
                }
                continue;
            }
        };
        // One try on the open connection, one on a new one (Janus may have restarted).
        for attempt in 0..2 {
            let a = match admin.as_mut() {
                Some(a) => a,
                None => match Admin::open(&sfu).await {
                    Ok(a) => admin.insert(a),
                    Err(e) => {
                        tracing::warn!("the media server: {e}");
                        break;
                    }
                },
            };
            match a.apply(&sfu, &op).await {
                Ok(()) => break,
                Err(e @ JanusError::Refused { .. }) => {
                    tracing::warn!(?op, "the media server: {e}");
                    break;
                }
                Err(e) => {
                    admin = None;
                    if attempt == 1 {
                        tracing::warn!(?op, "the media server: {e}");
                    }
                }
            }
        }
    }
    if let Some(a) = admin {
        a.janus.close().await;
    }
}
