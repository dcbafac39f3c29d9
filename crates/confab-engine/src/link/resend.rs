//! Which retransmissions go out. webrtc 0.21's NACK responder resends a packet each time the
//! far end asks for it; on a line that has just filled (a call starting at 1.5 Mbit/s on a
//! 300 kbit/s line, measured in the kernel lab) the receiver asks again before the first resend
//! can have reached it, and the resends took 400-500 kbit/s — more than the whole line —
//! for a second and a half: every packet behind them was lost or late, and the picture froze
//! until they stopped. As libwebrtc does, a packet is not resent again within a round trip
//! (the first resend is still on its way), and resends together keep to a share of what the
//! link carries (libwebrtc's retransmission rate limiter). What is not resent is asked for
//! again or, past the receiver's wait, replaced by a keyframe.
//!
//! Pure: fed the packet's identity, its size, the time, the round trip and the estimate.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

/// Resends take at most this share of the estimate (media and resends together stay near it:
/// at 10 % loss the resends of a picture's packets need about that much).
const SHARE: f64 = 0.3;
/// What resends may take at once, in seconds of their share.
const BURST_SECS: f64 = 0.25;
/// A packet is not resent again sooner than this share of a round trip after its last resend
/// (the far end asks again a round trip after it asked, and the round trip read here runs a
/// little long: a resend lost too must not wait a second round trip), nor sooner than
/// [`MIN_APART`]; nor sooner than [`UNKNOWN_RTT`] while the round trip is not known.
const APART_OF_RTT: f64 = 0.75;
const MIN_APART: Duration = Duration::from_millis(20);
const UNKNOWN_RTT: Duration = Duration::from_millis(100);
/// How many resent packets are remembered (2.5 s of a 2 Mbit/s video's packets).
const REMEMBERED: usize = 512;

/// A resent packet: the SSRC it is resent on and the sequence number of the packet it carries
/// (for RTX, the original's from its payload).
pub(super) type PacketKey = (u32, u16);

#[derive(Debug, Default)]
pub(super) struct ResendGate {
    /// When each remembered packet was last resent, and in which order they were.
    last: HashMap<PacketKey, Instant>,
    order: VecDeque<(PacketKey, Instant)>,
    /// Bits resends may still take, and when that was worked out.
    budget: f64,
    refilled: Option<Instant>,
}

impl ResendGate {
    /// Whether the resend of `key` (`bits` long) goes out now, on a link with round trip `rtt`
    /// (`None`: not known yet) and an estimate of `estimate_bps`. Counted as sent if so.
    pub(super) fn allow(
        &mut self,
        key: PacketKey,
        bits: f64,
        now: Instant,
        rtt: Option<Duration>,
        estimate_bps: f64,
    ) -> bool {
        let rate = estimate_bps.max(0.0) * SHARE;
        let full = rate * BURST_SECS;
        let since = self.refilled.map_or(BURST_SECS, |t| {
            now.saturating_duration_since(t).as_secs_f64()
        });
        self.budget = (self.budget + since * rate).min(full);
        self.refilled = Some(now);
        let apart = rtt
            .map_or(UNKNOWN_RTT, |r| r.mul_f64(APART_OF_RTT))
            .max(MIN_APART);
        if self
            .last
            .get(&key)
            .is_some_and(|t| now.saturating_duration_since(*t) < apart)
        {
            return false;
        }
        // A packet larger than the whole burst would never go: it may take the budget below
        // nothing, once it is full.
        if self.budget < bits.min(full) {
            return false;
        }
        self.budget -= bits;
        self.last.insert(key, now);
        self.order.push_back((key, now));
        while self.order.len() > REMEMBERED {
            if let Some((k, t)) = self.order.pop_front() {
                if self.last.get(&k) == Some(&t) {
                    self.last.remove(&k);
                }
            }
        }
        true
    }
}

impl ResendGate {
    /// The resend of `key` that [`Self::allow`] let through did not go after all (the
    /// pacer's queue was full): its bits back, and it may be resent when asked again.
    pub(super) fn refused(&mut self, key: PacketKey, bits: f64) {
        self.last.remove(&key);
        self.budget += bits;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn a_packet_asked_for_again_within_most_of_a_round_trip_is_not_resent_twice() {
        let (mut g, t) = (ResendGate::default(), Instant::now());
        let rtt = Some(200 * MS);
        assert!(g.allow((1, 7), 8000.0, t, rtt, 1e6));
        assert!(
            !g.allow((1, 7), 8000.0, t + 50 * MS, rtt, 1e6),
            "on its way"
        );
        assert!(!g.allow((1, 7), 8000.0, t + 149 * MS, rtt, 1e6));
        assert!(
            g.allow((1, 8), 8000.0, t + 50 * MS, rtt, 1e6),
            "another packet"
        );
        assert!(
            g.allow((2, 7), 8000.0, t + 50 * MS, rtt, 1e6),
            "another stream"
        );
        assert!(
            g.allow((1, 7), 8000.0, t + 150 * MS, rtt, 1e6),
            "lost again: resent"
        );
        // Not known yet: 100 ms.
        let (mut g, t) = (ResendGate::default(), Instant::now());
        assert!(g.allow((1, 7), 8000.0, t, None, 1e6));
        assert!(!g.allow((1, 7), 8000.0, t + 99 * MS, None, 1e6));
        assert!(g.allow((1, 7), 8000.0, t + 100 * MS, None, 1e6));
    }

    #[test]
    fn resends_keep_to_their_share_of_the_line() {
        // 300 kbit/s estimated: 90 kbit/s of resends, 22.5 kbit at once. Asked for 1000-byte
        // packets at 500 kbit/s (the storm measured), for 10 s.
        let (mut g, mut t) = (ResendGate::default(), Instant::now());
        let mut sent = 0.0;
        for seq in 0..625u16 {
            t += 16 * MS;
            if g.allow((1, seq), 8000.0, t, Some(500 * MS), 300_000.0) {
                sent += 8000.0;
            }
        }
        let bps = sent / 10.0;
        assert!((80_000.0..=95_000.0).contains(&bps), "{bps}");
        // A wide line lets every one of them through.
        let (mut g, mut t) = (ResendGate::default(), Instant::now());
        for seq in 0..625u16 {
            t += 16 * MS;
            assert!(g.allow((1, seq), 8000.0, t, Some(500 * MS), 2_000_000.0));
        }
    }

    #[test]
    fn what_is_remembered_is_bounded() {
        let (mut g, mut t) = (ResendGate::default(), Instant::now());
        for seq in 0..5000u16 {
            t += MS;
            g.allow((1, seq), 100.0, t, Some(10_000 * MS), 1e9);
        }
        assert!(g.last.len() <= REMEMBERED && g.order.len() <= REMEMBERED);
        // The oldest are forgotten: resent again (they were long ago).
        assert!(g.allow((1, 0), 100.0, t, Some(10_000 * MS), 1e9));
        assert!(!g.allow((1, 4999), 100.0, t, Some(10_000 * MS), 1e9));
    }
}
