//! Whether the line's queue is growing, from the one-way delay's trend: libwebrtc's trendline
//! estimator and overuse detector (pure: fed inter-group delays, no clock of its own).
//!
//! Why not webrtc 0.21's own delay half: it compares a Kalman-filtered delay change *per group*
//! (the GCC draft's m(i)) with a 12.5 ms threshold. At video's packet rates a group is a
//! picture, 30 ms apart, so a sender 10 % over a line's rate grows the queue by 3 ms a group and
//! is never seen: in the network lab a 300 kbit/s line's 200 ms queue filled, then dropped, with
//! that half still climbing. libwebrtc fits a line through the smoothed accumulated delay of
//! the last 20 groups and scales its slope by the number of deltas seen (up to 60) and a gain of
//! 4, against a threshold that adapts to the path's jitter; a queue growing 10 % of the time is
//! then seen within a second.

use std::collections::VecDeque;

/// Groups in the fit.
const WINDOW: usize = 20;
const SMOOTHING: f64 = 0.9;
const GAIN: f64 = 4.0;
const MAX_DELTAS: f64 = 60.0;
/// The adaptive threshold (ms): where it starts, its bounds, how fast it moves up and down, and
/// how far outside it a trend may be and still move it (a sudden spike does not).
const THRESHOLD_START: f64 = 12.5;
const THRESHOLD_BOUNDS: (f64, f64) = (6.0, 600.0);
const K_UP: f64 = 0.0087;
const K_DOWN: f64 = 0.039;
const MAX_ADAPT_OFFSET: f64 = 15.0;
/// How long (ms) the trend must stay over the threshold, still rising, before it is overuse.
const OVERUSE_MS: f64 = 10.0;

/// What the delay's trend says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(super) enum Trend {
    #[default]
    Normal,
    /// The queue is growing: more is sent than the line carries.
    Overusing,
    /// The queue is draining.
    Underusing,
}

#[derive(Debug)]
pub(super) struct Trendline {
    first_ms: Option<f64>,
    accumulated: f64,
    smoothed: f64,
    history: VecDeque<(f64, f64)>,
    deltas: f64,
    threshold: f64,
    last_update_ms: Option<f64>,
    prev_trend: f64,
    time_over: Option<f64>,
    over_count: u32,
    state: Trend,
}

impl Default for Trendline {
    fn default() -> Self {
        Trendline {
            first_ms: None,
            accumulated: 0.0,
            smoothed: 0.0,
            history: VecDeque::with_capacity(WINDOW + 1),
            deltas: 0.0,
            threshold: THRESHOLD_START,
            last_update_ms: None,
            prev_trend: 0.0,
            time_over: None,
            over_count: 0,
            state: Trend::Normal,
        }
    }
}

impl Trendline {
    /// One inter-group delay: `delta_ms` (arrival spread minus send spread) for the group
    /// that ended at `at_ms` (send time, any origin). Returns what the trend says now.
    pub(super) fn update(&mut self, at_ms: f64, delta_ms: f64) -> Trend {
        let first = *self.first_ms.get_or_insert(at_ms);
        self.deltas = (self.deltas + 1.0).min(MAX_DELTAS);
        self.accumulated += delta_ms;
        self.smoothed = SMOOTHING * self.smoothed + (1.0 - SMOOTHING) * self.accumulated;
        self.history.push_back((at_ms - first, self.smoothed));
        if self.history.len() > WINDOW {
            self.history.pop_front();
        }
        let trend = if self.history.len() == WINDOW {
            slope(&self.history).unwrap_or(self.prev_trend)
        } else {
            self.prev_trend
        };
        self.detect(trend, delta_ms, at_ms);
        self.state
    }

    fn detect(&mut self, trend: f64, delta_ms: f64, now_ms: f64) {
        let modified = self.deltas * trend * GAIN;
        if modified > self.threshold {
            let over = match self.time_over {
                // The first time over: half a group's time, as libwebrtc counts it.
                None => delta_ms.abs().max(1.0) / 2.0,
                Some(t) => t + (now_ms - self.last_update_ms.unwrap_or(now_ms)).max(0.0),
            };
            self.time_over = Some(over);
            self.over_count += 1;
            if over > OVERUSE_MS && self.over_count > 1 && trend >= self.prev_trend {
                self.time_over = Some(0.0);
                self.over_count = 0;
                self.state = Trend::Overusing;
            }
        } else if modified < -self.threshold {
            self.time_over = None;
            self.over_count = 0;
            self.state = Trend::Underusing;
        } else {
            self.time_over = None;
            self.over_count = 0;
            self.state = Trend::Normal;
        }
        self.prev_trend = trend;
        self.adapt(modified, now_ms);
    }

    fn adapt(&mut self, modified: f64, now_ms: f64) {
        let last = self.last_update_ms.replace(now_ms);
        if modified.abs() > self.threshold + MAX_ADAPT_OFFSET {
            return;
        }
        let k = if modified.abs() < self.threshold {
            K_DOWN
        } else {
            K_UP
        };
        let elapsed = last.map_or(0.0, |l| (now_ms - l).clamp(0.0, 100.0));
        self.threshold += k * (modified.abs() - self.threshold) * elapsed;
        self.threshold = self.threshold.clamp(THRESHOLD_BOUNDS.0, THRESHOLD_BOUNDS.1);
    }
}

/// The least-squares slope of y over x.
fn slope(points: &VecDeque<(f64, f64)>) -> Option<f64> {
    let n = points.len() as f64;
    let (sx, sy) = points
        .iter()
        .fold((0.0, 0.0), |(a, b), (x, y)| (a + x, b + y));
    let (mx, my) = (sx / n, sy / n);
    let (mut num, mut den) = (0.0, 0.0);
    for (x, y) in points {
        num += (x - mx) * (y - my);
        den += (x - mx) * (x - mx);
    }
    (den != 0.0).then(|| num / den)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds groups every `gap` ms, each `delta` ms later than the last (plus `jitter`,
    /// alternating sign), for `secs`; the trends seen.
    fn run(t: &mut Trendline, gap: f64, delta: f64, jitter: f64, secs: f64) -> Vec<Trend> {
        let mut out = Vec::new();
        let mut at = 0.0;
        let mut sign = 1.0;
        while at < secs * 1000.0 {
            at += gap;
            sign = -sign;
            out.push(t.update(at, delta + sign * jitter));
        }
        out
    }

    #[test]
    fn a_queue_growing_a_tenth_of_the_time_is_overuse_within_a_second() {
        // 30 fps pictures, 3 ms more queue each: a sender 10 % over the line.
        let mut t = Trendline::default();
        let seen = run(&mut t, 33.0, 3.3, 0.0, 1.0);
        assert!(seen.contains(&Trend::Overusing), "{seen:?}");
    }

    #[test]
    fn a_steady_or_jittery_path_is_not_overuse() {
        let mut t = Trendline::default();
        let seen = run(&mut t, 33.0, 0.0, 0.0, 20.0);
        assert!(seen.iter().all(|s| *s == Trend::Normal), "steady");
        // ±10 ms of jitter a picture, no trend.
        let mut t = Trendline::default();
        let seen = run(&mut t, 33.0, 0.0, 10.0, 20.0);
        assert!(!seen.contains(&Trend::Overusing), "jitter alone");
    }

    #[test]
    fn a_draining_queue_is_underuse() {
        let mut t = Trendline::default();
        run(&mut t, 33.0, 3.3, 0.0, 2.0);
        let seen = run(&mut t, 33.0, -5.0, 0.0, 1.0);
        assert_eq!(seen.last(), Some(&Trend::Underusing), "{seen:?}");
    }
}
