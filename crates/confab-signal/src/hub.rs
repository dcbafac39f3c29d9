//! The one place where the room state machine meets the connections: a lock around
//! [`Rooms`] and the outbound queue of every connection.
//!
//! The lock is never held across an `.await`; delivery is `try_send` on bounded queues, and a
//! connection whose queue is full is disconnected (never buffered without end).

use confab_rooms::{ConnId, Output, Refusal, Rooms};
use std::collections::HashMap;
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

struct Link {
    tx: mpsc::Sender<Frame>,
    stop: oneshot::Sender<StopReason>,
}

struct State {
    rooms: Rooms,
    links: HashMap<ConnId, Link>,
}

pub struct Hub {
    state: Mutex<State>,
}

impl Hub {
    pub fn new(rooms: Rooms) -> Self {
        Hub {
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

    pub fn connect(
        &self,
        tx: mpsc::Sender<Frame>,
        stop: oneshot::Sender<StopReason>,
    ) -> Result<ConnId, Refusal> {
        let mut s = self.lock();
        let conn = s.rooms.connect(Instant::now())?;
        s.links.insert(conn, Link { tx, stop });
        Ok(conn)
    }

    pub fn receive(&self, conn: ConnId, text: &str) {
        let mut out = Vec::new();
        let mut s = self.lock();
        s.rooms.receive(conn, text, Instant::now(), &mut out);
        deliver(&mut s, out);
    }

    pub fn receive_binary(&self, conn: ConnId) {
        let mut out = Vec::new();
        let mut s = self.lock();
        s.rooms.receive_binary(conn, Instant::now(), &mut out);
        deliver(&mut s, out);
    }

    pub fn reject_unreadable(&self, conn: ConnId) {
        let mut out = Vec::new();
        let mut s = self.lock();
        s.rooms.reject_unreadable(conn, &mut out);
        deliver(&mut s, out);
    }

    /// The connection ended (or is being ended by its session). Idempotent.
    pub fn disconnect(&self, conn: ConnId) {
        let mut out = Vec::new();
        let mut s = self.lock();
        s.links.remove(&conn);
        s.rooms.disconnect(conn, &mut out);
        deliver(&mut s, out);
    }

    fn tick(&self) -> Option<Instant> {
        let mut out = Vec::new();
        let mut s = self.lock();
        s.rooms.tick(Instant::now(), &mut out);
        deliver(&mut s, out);
        s.rooms.next_deadline()
    }
}

/// Carries outputs to the queues, never waiting. A full queue drops the message (a relayed
/// signal's sender is told); a client that does not read at all is found by its writer's
/// timeout, which ends its session.
fn deliver(s: &mut State, out: Vec<Output>) {
    for o in out {
        match o {
            Output::Send { conn, text } => {
                if let Some(link) = s.links.get(&conn) {
                    if link.tx.try_send(Frame::Text(text)).is_err() {
                        tracing::debug!(conn, "queue full: a room update was dropped");
                    }
                }
            }
            Output::Relay { conn, text, from } => {
                let Some(link) = s.links.get(&conn) else {
                    continue;
                };
                if let Err(mpsc::error::TrySendError::Full(_)) = link.tx.try_send(Frame::Text(text))
                {
                    if let Some(sender) = s.links.get(&from) {
                        let err = confab_protocol::ServerMessage::error(
                            confab_protocol::ErrorCode::RateLimited,
                            "the other side is not keeping up; that message was not delivered",
                        );
                        let _ = sender.tx.try_send(Frame::Text(err.encode()));
                    }
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

/// Runs the state machine's timers (join deadlines) until cancelled.
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
