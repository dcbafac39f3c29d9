//! Probing a line for more than the call sends: a camera sending a simple picture never fills
//! what it is given, so what it sends (and the far end acknowledges) cannot show that a line
//! has widened — after a narrow spell the estimate is held to what was acknowledged
//! ([`super::estimate`]), the picture stays small, and small pictures are all it sends.
//! libwebrtc probes then (its "ALR probing", which it turns on for shared screens): a short
//! burst at twice the estimate, on top of the media, read back from the far end's arrival
//! times. A burst the line carries raises the estimate at once, and the next one goes twice
//! as high; a burst it spreads out or drops shows the line is full, and the next waits
//! [`Prober::EVERY`]. The burst's window counts everything that left in it (the media too:
//! the line carried all of it).
//!
//! Pure: fed the time, the estimate and the congestion reports; the pacer sends the bursts
//! (retransmissions of its recent pictures on their RTX stream, which the receiver throws
//! away as duplicates), on links that have RTX streams.

use rtc::interceptor::PacketReport;
use std::time::{Duration, Instant};

/// One burst: its rate and when it left, and the packets of it that came back.
#[derive(Debug)]
struct Burst {
    rate: f64,
    from: Instant,
    /// Departure, arrival (far clock, `None`: lost) and size of every packet that left within it.
    packets: Vec<(Instant, Option<Duration>, usize)>,
}

/// When to probe, and what a probe showed.
#[derive(Debug, Default)]
pub(super) struct Prober {
    burst: Option<Burst>,
    /// No burst before this.
    next: Option<Instant>,
    /// Since when the line has been calm (no loss or queue seen).
    calm_since: Option<Instant>,
}

impl Prober {
    /// A burst's length: long enough for the far end's arrivals to show a rate through a
    /// few milliseconds of jitter.
    pub(super) const LENGTH: Duration = Duration::from_millis(100);
    /// A burst's packets, at the most (100 ms of 1200-byte packets at ~98 Mbit/s).
    pub(super) const MAX_PACKETS: usize = 1024;
    /// A burst goes at this times the estimate.
    const FACTOR: f64 = 2.0;
    /// Bursts are sent only while the call sends less than this share of its estimate (it is
    /// held back by its picture, not by the line: libwebrtc's "application limited region").
    const LIMITED: f64 = 0.8;
    /// The line must have been calm this long.
    const CALM: Duration = Duration::from_secs(2);
    /// Between bursts, unless the last was carried whole.
    const EVERY: Duration = Duration::from_secs(5);
    /// A burst whose reports have not all come in this long after it is given up.
    const WAIT: Duration = Duration::from_secs(1);
    /// At least this many of a burst's packets must arrive, and no more than this share lost.
    const MIN_PACKETS: usize = 5;
    const MAX_LOSS: f64 = 0.1;
    /// Carried at this share of its rate or more, the next burst follows at once.
    const CARRIED: f64 = 0.8;
    /// A burst is sent only if it could show at least this times the estimate (near the most
    /// the call may send, it could not raise it by much).
    const WORTH: f64 = 1.5;

    /// Congestion (loss, a queue) was seen now: no burst for a while.
    pub(super) fn congested(&mut self, now: Instant) {
        self.calm_since = Some(now);
    }

    /// Whether to send a burst now, and at what rate: with the estimate `target` (the most
    /// it may be `max`) and `acked` delivered lately.
    pub(super) fn want(
        &mut self,
        now: Instant,
        target: f64,
        max: f64,
        acked: Option<f64>,
    ) -> Option<f64> {
        let calm_since = *self.calm_since.get_or_insert(now);
        if self.burst.is_some()
            || self.next.is_some_and(|next| now < next)
            || now.saturating_duration_since(calm_since) < Self::CALM
            || (target * Self::FACTOR).min(max) < target * Self::WORTH
            || acked.is_none_or(|a| a >= target * Self::LIMITED)
        {
            return None;
        }
        let rate = (target * Self::FACTOR).min(max);
        self.burst = Some(Burst {
            rate,
            from: now,
            packets: Vec::new(),
        });
        Some(rate)
    }

    /// One congestion report: the rate the line carried the burst at, once its packets are
    /// all reported (`Some(None)`: it showed nothing; `None`: not done yet, or none out).
    pub(super) fn report(&mut self, now: Instant, reports: &[PacketReport]) -> Option<Option<f64>> {
        let burst = self.burst.as_mut()?;
        let until = burst.from + Self::LENGTH;
        let mut past = false;
        for r in reports {
            if r.departure > until {
                past = true;
            } else if r.departure >= burst.from && burst.packets.len() < Self::MAX_PACKETS {
                burst
                    .packets
                    .push((r.departure, r.arrival.filter(|_| r.arrived), r.size));
            }
        }
        if !past && now < until + Self::WAIT {
            return None;
        }
        let burst = self.burst.take()?;
        let carried = Self::carried(&burst.packets);
        self.next = Some(match carried {
            Some(rate) if rate >= burst.rate * Self::CARRIED => now,
            _ => now + Self::EVERY,
        });
        tracing::debug!(
            probe_kbps = burst.rate / 1000.0,
            carried_kbps = carried.map(|r| r / 1000.0),
            packets = burst.packets.len(),
            "probe"
        );
        Some(carried)
    }

    /// The rate a burst's packets were carried at: the lesser of the rate they left at and
    /// the rate they arrived at (libwebrtc's probe estimate).
    fn carried(packets: &[(Instant, Option<Duration>, usize)]) -> Option<f64> {
        let arrived: Vec<_> = packets.iter().filter(|p| p.1.is_some()).collect();
        let lost = packets.len() - arrived.len();
        if arrived.len() < Self::MIN_PACKETS || lost as f64 > packets.len() as f64 * Self::MAX_LOSS
        {
            return None;
        }
        let first_left = arrived.iter().map(|p| p.0).min()?;
        let last_left = arrived.iter().map(|p| p.0).max()?;
        let first_in = arrived.iter().filter_map(|p| p.1).min()?;
        let last_in = arrived.iter().filter_map(|p| p.1).max()?;
        let sent_span = last_left
            .saturating_duration_since(first_left)
            .as_secs_f64();
        let recv_span = last_in.saturating_sub(first_in).as_secs_f64();
        if sent_span < 0.5 * Self::LENGTH.as_secs_f64() || recv_span <= 0.0 {
            return None;
        }
        // The bytes that left (arrived) after the first did, over the time since: what
        // opens a span is not counted against it.
        let sent_bytes: usize = arrived
            .iter()
            .filter(|p| p.0 > first_left)
            .map(|p| p.2)
            .sum();
        let recv_bytes: usize = arrived
            .iter()
            .filter(|p| p.1.is_some_and(|at| at > first_in))
            .map(|p| p.2)
            .sum();
        let sent = sent_bytes as f64 * 8.0 / sent_span;
        let received = recv_bytes as f64 * 8.0 / recv_span;
        Some(sent.min(received))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn report(id: u64, left: Instant, arrival: Option<Duration>, size: usize) -> PacketReport {
        super::super::estimate::test_packet(id, size, left, arrival)
    }

    /// A burst at `rate` over the probe's length, on a line of `line` bits/s that delivers
    /// each packet 20 ms after it left or later, if the line is slower.
    fn burst(t0: Instant, rate: f64, line: f64, lose_every: usize) -> Vec<PacketReport> {
        let size = 1200;
        let gap = size as f64 * 8.0 / rate;
        let n = (Prober::LENGTH.as_secs_f64() / gap).round() as usize + 1;
        let mut free = 0.0f64;
        (0..n)
            .map(|i| {
                let left = i as f64 * gap;
                free = free.max(left) + size as f64 * 8.0 / line;
                let arrival = Duration::from_secs_f64(1.0 + free + 0.02);
                let lost = lose_every > 0 && i % lose_every == lose_every - 1;
                report(
                    i as u64,
                    t0 + Duration::from_secs_f64(left),
                    (!lost).then_some(arrival),
                    size,
                )
            })
            .collect()
    }

    fn calm(p: &mut Prober, t0: Instant) -> Instant {
        assert_eq!(p.want(t0, 300_000.0, 2_500_000.0, Some(150_000.0)), None);
        t0 + Prober::CALM
    }

    #[test]
    fn a_call_sending_under_its_estimate_on_a_calm_line_probes_at_twice_it() {
        let mut p = Prober::default();
        let t = calm(&mut p, Instant::now());
        assert_eq!(
            p.want(t, 300_000.0, 2_500_000.0, Some(290_000.0)),
            None,
            "not while it sends what it may"
        );
        assert_eq!(
            p.want(t, 1_800_000.0, 2_500_000.0, Some(100_000.0)),
            None,
            "not near the most it may send"
        );
        assert_eq!(p.want(t, 300_000.0, 2_500_000.0, None), None);
        assert_eq!(
            p.want(t, 300_000.0, 2_500_000.0, Some(150_000.0)),
            Some(600_000.0)
        );
        assert_eq!(
            p.want(t, 300_000.0, 2_500_000.0, Some(150_000.0)),
            None,
            "one burst at a time"
        );
    }

    #[test]
    fn no_probe_within_two_seconds_of_congestion() {
        let mut p = Prober::default();
        let t = calm(&mut p, Instant::now());
        p.congested(t);
        assert_eq!(
            p.want(t + 1900 * MS, 300_000.0, 2_500_000.0, Some(1.0)),
            None
        );
        assert!(p
            .want(t + 2000 * MS, 300_000.0, 2_500_000.0, Some(1.0))
            .is_some());
    }

    #[test]
    fn a_wide_line_carries_the_burst_and_the_next_goes_at_once() {
        let mut p = Prober::default();
        let t = calm(&mut p, Instant::now());
        let rate = p.want(t, 300_000.0, 2_500_000.0, Some(150_000.0)).unwrap();
        let reports = burst(t, rate, 10_000_000.0, 0);
        assert_eq!(p.report(t + 50 * MS, &reports[..3]), None, "not all in yet");
        let after = report(99, t + 150 * MS, Some(Duration::from_secs(2)), 1200);
        let carried = p
            .report(t + 200 * MS, &[&reports[3..], &[after][..]].concat())
            .expect("read")
            .expect("a rate");
        assert!(
            (carried - rate).abs() < rate * 0.15,
            "{carried} for a burst at {rate}"
        );
        assert!(
            p.want(t + 200 * MS, carried, 2_500_000.0, Some(150_000.0))
                .is_some(),
            "the next at once"
        );
    }

    #[test]
    fn a_narrow_line_shows_its_own_rate_and_the_next_waits() {
        let mut p = Prober::default();
        let t = calm(&mut p, Instant::now());
        let rate = p.want(t, 300_000.0, 2_500_000.0, Some(150_000.0)).unwrap();
        let mut reports = burst(t, rate, 400_000.0, 0);
        reports.push(report(99, t + 150 * MS, Some(Duration::from_secs(2)), 1200));
        let carried = p.report(t + 300 * MS, &reports).unwrap().unwrap();
        assert!(
            (carried - 400_000.0).abs() < 60_000.0,
            "{carried}: the line's 400k"
        );
        assert_eq!(
            p.want(
                t + 4 * Duration::from_secs(1),
                300_000.0,
                2_500_000.0,
                Some(150_000.0)
            ),
            None
        );
        assert!(p
            .want(
                t + 300 * MS + Prober::EVERY,
                300_000.0,
                2_500_000.0,
                Some(150_000.0)
            )
            .is_some());
    }

    #[test]
    fn a_burst_that_loses_packets_or_never_comes_back_shows_nothing() {
        let mut p = Prober::default();
        let t = calm(&mut p, Instant::now());
        let rate = p.want(t, 300_000.0, 2_500_000.0, Some(150_000.0)).unwrap();
        let mut reports = burst(t, rate, 10_000_000.0, 4);
        reports.push(report(99, t + 150 * MS, Some(Duration::from_secs(2)), 1200));
        assert_eq!(
            p.report(t + 300 * MS, &reports),
            Some(None),
            "a quarter lost"
        );

        let t = t + 300 * MS + Prober::EVERY;
        assert!(p.want(t, 300_000.0, 2_500_000.0, Some(150_000.0)).is_some());
        assert_eq!(p.report(t + 500 * MS, &[]), None);
        assert_eq!(
            p.report(t + Prober::LENGTH + Prober::WAIT, &[]),
            Some(None),
            "given up"
        );
    }
}
