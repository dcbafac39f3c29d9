//! When a call through an SFU goes back to direct links. The room being down to two people is
//! the reason (the engine and the web client judge that); this is the guard on when. A room
//! whose size is pushed to and fro — someone joining and leaving again and again, perhaps on
//! purpose — would otherwise move the call back and forth, each move a second or two without
//! pictures. So the call goes back only once the room has stayed small for [`WAIT_MS`]; a move
//! back less than [`FORGET_MS`] after the last one waits twice as long as that one did, up to
//! [`MAX_WAIT_MS`]. (Only the side that offers the direct link acts on this wait; the other
//! follows its offer: see the engine's `Actor::check_mesh_return`.)

use crate::Millis;

/// How long the room stays small before the first move back.
pub const WAIT_MS: Millis = 5_000;
/// The longest wait, however often the call moved back lately.
pub const MAX_WAIT_MS: Millis = 80_000;
/// A move back this long after the last one waits [`WAIT_MS`] again.
pub const FORGET_MS: Millis = 120_000;

/// The wait before a call through an SFU goes back to direct links (pure: fed time).
#[derive(Debug, Clone, Default)]
pub struct MeshReturn {
    /// When the call goes back while the room stays small, and the wait that makes.
    due: Option<(Millis, Millis)>,
    /// The last move back: when, and after what wait.
    last: Option<(Millis, Millis)>,
}

impl MeshReturn {
    /// Fed at every room event and tick: `small` says the call goes through the SFU and the
    /// room is small enough for direct links. True when the call is to go back now.
    pub fn tick(&mut self, now: Millis, small: bool) -> bool {
        if !small {
            self.due = None;
            return false;
        }
        let (due, wait) = match self.due {
            Some(pending) => pending,
            None => {
                let wait = self.next_wait(now);
                *self.due.insert((now + wait, wait))
            }
        };
        if now < due {
            return false;
        }
        self.due = None;
        self.last = Some((now, wait));
        true
    }

    /// The call went back another way (the other side's direct offer came): counted like a
    /// move of ours.
    pub fn moved(&mut self, now: Millis) {
        let wait = match self.due.take() {
            Some((_, wait)) => wait,
            None => self.next_wait(now),
        };
        self.last = Some((now, wait));
    }

    /// The wait for a move back starting at `now`: twice the last one's if that was lately.
    fn next_wait(&self, now: Millis) -> Millis {
        match self.last {
            Some((at, wait)) if now.saturating_sub(at) < FORGET_MS => (wait * 2).min(MAX_WAIT_MS),
            _ => WAIT_MS,
        }
    }
}
