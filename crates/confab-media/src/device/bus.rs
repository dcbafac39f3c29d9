//! The frame bus: the newest captured frame, handed to any number of consumers (encoders,
//! local preview). A slow consumer skips frames instead of queueing them.

use crate::frame::VideoFrame;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// The latest captured frame, for any number of consumers (encoders, local preview). A slow
/// consumer skips frames instead of queueing them.
#[derive(Default)]
pub struct FrameBus {
    slot: Mutex<(u64, Option<Arc<VideoFrame>>)>,
    cond: Condvar,
    closed: AtomicBool,
}

impl FrameBus {
    pub fn new() -> Arc<Self> {
        Arc::new(FrameBus::default())
    }

    pub fn publish(&self, frame: VideoFrame) {
        let mut s = self.slot.lock().unwrap_or_else(|p| p.into_inner());
        s.0 += 1;
        s.1 = Some(Arc::new(frame));
        self.cond.notify_all();
    }

    /// Waits for a frame newer than `seen` (updated), at most `timeout`.
    pub fn next(&self, seen: &mut u64, timeout: Duration) -> Option<Arc<VideoFrame>> {
        let deadline = Instant::now() + timeout;
        let mut s = self.slot.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            if s.0 > *seen {
                *seen = s.0;
                return s.1.clone();
            }
            if self.closed.load(Ordering::Relaxed) {
                return None;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            s = self
                .cond
                .wait_timeout(s, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    /// Hands the newest frame out again, now (a new consumer need not wait for the next
    /// capture).
    pub fn nudge(&self) {
        let mut s = self.slot.lock().unwrap_or_else(|p| p.into_inner());
        if s.1.is_some() {
            s.0 += 1;
            self.cond.notify_all();
        }
    }

    /// The newest frame without waiting.
    pub fn latest(&self) -> Option<Arc<VideoFrame>> {
        self.slot
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .1
            .clone()
    }

    /// Wakes every waiter for good.
    pub fn close(&self) {
        self.closed.store(true, Ordering::Relaxed);
        self.cond.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(ts: u64) -> VideoFrame {
        VideoFrame {
            width: 2,
            height: 2,
            data: vec![0; 6],
            timestamp_us: ts,
        }
    }

    #[test]
    fn a_slow_consumer_gets_the_newest_frame_not_a_queue() {
        let bus = FrameBus::new();
        let mut seen = 0;
        for ts in 1..=3 {
            bus.publish(frame(ts));
        }
        let f = bus.next(&mut seen, Duration::from_secs(1)).unwrap();
        assert_eq!(f.timestamp_us, 3);
        // Nothing newer: waiting ends at the timeout with nothing.
        assert!(bus.next(&mut seen, Duration::from_millis(20)).is_none());
        // A nudge hands the newest one out again.
        bus.nudge();
        assert_eq!(
            bus.next(&mut seen, Duration::from_secs(1))
                .unwrap()
                .timestamp_us,
            3
        );
        assert_eq!(bus.latest().unwrap().timestamp_us, 3);
    }

    #[test]
    fn a_closed_bus_ends_every_wait() {
        let bus = FrameBus::new();
        let b = bus.clone();
        let waiter = std::thread::spawn(move || {
            let started = Instant::now();
            let got = b.next(&mut 0, Duration::from_secs(30));
            (got.is_none(), started.elapsed())
        });
        bus.close();
        let (none, waited) = waiter.join().unwrap();
        assert!(none);
        assert!(
            waited < Duration::from_secs(30),
            "ended by the close, not the timeout"
        );
    }
}
