//! Which layer of a simulcast camera a receiver asks the SFU for. The SFU forwards one of the
//! sender's encodings (full size or half size) to each receiver; only the receiver sees how
//! much of it arrives. It asks for the half-size layer when the link from the SFU is in
//! trouble — it loses packets, or the pictures keep breaking (retransmissions fill the gaps of
//! a line that is merely too narrow, so loss alone does not show it: the receiver asking for
//! keyframe after keyframe does) — and tries the full one again after a clean spell that
//! doubles each time a try fails (so a slow line is not flooded every few seconds). Pure: fed
//! the link's readings and the time.

use crate::Millis;
use std::collections::VecDeque;

/// One reading of the link from the SFU.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Reading {
    /// Packet loss over the link's measuring window, percent (`None`: nothing measured yet).
    pub loss_pct: Option<f64>,
    /// Keyframes asked for since the link began (a running count).
    pub keyframe_requests: u64,
    /// A picture has come through this link. Before that nothing is judged: a link being set
    /// up asks for its first keyframe again and again, and a sender with the camera off sends
    /// nothing to judge.
    pub receiving: bool,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LayerRules {
    /// Loss (percent, over the link's measuring window) that sends the receiver to the half
    /// layer.
    pub down_at_loss_pct: f64,
    /// Loss below this is a clean reading.
    pub clean_below_pct: f64,
    /// Clean time on the half layer before trying the full one again; doubled after a try
    /// that failed, up to `max_wait`.
    pub wait: Millis,
    pub max_wait: Millis,
    /// A try failed when loss comes back within this time of it.
    pub trial: Millis,
    /// No change sooner than this after the last one (the loss window still holds readings
    /// from before it).
    pub settle: Millis,
    /// This many keyframe requests within `request_window` is trouble; any is not clean.
    pub requests_in_window: u64,
    pub request_window: Millis,
}

impl Default for LayerRules {
    fn default() -> Self {
        LayerRules {
            down_at_loss_pct: 8.0,
            clean_below_pct: 2.0,
            wait: 10_000,
            max_wait: 160_000,
            trial: 15_000,
            settle: 3_000,
            requests_in_window: 4,
            request_window: 3_000,
        }
    }
}

/// The layer a receiver wants from the SFU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Want {
    Full,
    Half,
}

#[derive(Debug, Clone)]
pub struct LayerChoice {
    rules: LayerRules,
    want: Want,
    changed_at: Millis,
    /// When the readings on the half layer became clean.
    clean_since: Option<Millis>,
    wait: Millis,
    /// The last move up was a try (it came after a move down).
    trying: bool,
    /// Keyframe request counts over the last `request_window` (and the one before), oldest
    /// first.
    requests: VecDeque<(Millis, u64)>,
}

impl LayerChoice {
    /// Starts on the full layer.
    pub fn new(rules: LayerRules, now: Millis) -> Self {
        LayerChoice {
            rules,
            want: Want::Full,
            changed_at: now,
            clean_since: None,
            wait: rules.wait,
            trying: false,
            requests: VecDeque::new(),
        }
    }

    pub fn want(&self) -> Want {
        self.want
    }

    /// One reading, once a second or so. `Some` when the layer to ask for changes.
    pub fn tick(&mut self, now: Millis, reading: Reading) -> Option<Want> {
        let r = self.rules;
        if !reading.receiving {
            // The settling time starts with the first picture.
            self.requests.clear();
            self.changed_at = now;
            return None;
        }
        // Kept: the readings within the window, and the last one before it (the count the
        // window starts from).
        self.requests.push_back((now, reading.keyframe_requests));
        while self
            .requests
            .get(1)
            .is_some_and(|(t, _)| now.saturating_sub(*t) > r.request_window)
        {
            self.requests.pop_front();
        }
        let asked = self
            .requests
            .front()
            .map_or(0, |(_, n)| reading.keyframe_requests.saturating_sub(*n));
        if now.saturating_sub(self.changed_at) < r.settle {
            return None;
        }
        let loss = reading.loss_pct.unwrap_or(0.0);
        let trouble = loss >= r.down_at_loss_pct || asked >= r.requests_in_window;
        let clean = loss < r.clean_below_pct && asked == 0;
        match self.want {
            Want::Full if trouble => {
                let failed_try = self.trying && now - self.changed_at <= r.trial;
                self.wait = if failed_try {
                    self.wait.saturating_mul(2).min(r.max_wait)
                } else {
                    r.wait
                };
                self.set(Want::Half, now)
            }
            Want::Full => None,
            Want::Half if clean => {
                let since = *self.clean_since.get_or_insert(now);
                if now - since >= self.wait {
                    self.trying = true;
                    self.set(Want::Full, now)
                } else {
                    None
                }
            }
            Want::Half => {
                self.clean_since = None;
                None
            }
        }
    }

    fn set(&mut self, want: Want, now: Millis) -> Option<Want> {
        self.want = want;
        self.changed_at = now;
        self.clean_since = None;
        Some(want)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reading(loss: f64, keyframe_requests: u64, receiving: bool) -> Reading {
        Reading {
            loss_pct: Some(loss),
            keyframe_requests,
            receiving,
        }
    }

    fn lossy(loss: f64) -> Reading {
        reading(loss, 0, true)
    }

    /// Feeds one reading a second from `from` to `to` (exclusive); the changes, with times.
    fn run(c: &mut LayerChoice, from: Millis, to: Millis, loss: f64) -> Vec<(Millis, Want)> {
        (from..to)
            .step_by(1000)
            .filter_map(|t| c.tick(t, lossy(loss)).map(|w| (t, w)))
            .collect()
    }

    #[test]
    fn a_clean_link_stays_on_the_full_layer() {
        let mut c = LayerChoice::new(LayerRules::default(), 0);
        assert_eq!(run(&mut c, 0, 600_000, 0.5), []);
        assert_eq!(
            c.tick(
                600_000,
                Reading {
                    receiving: true,
                    ..Reading::default()
                },
            ),
            None
        );
        assert_eq!(c.want(), Want::Full);
    }

    #[test]
    fn loss_moves_to_the_half_layer_and_a_clean_spell_back() {
        let mut c = LayerChoice::new(LayerRules::default(), 0);
        // Not in the first seconds (settling), then at the first lossy reading.
        assert_eq!(run(&mut c, 0, 6_000, 30.0), [(3_000, Want::Half)]);
        // Still lossy for a while (the window still holds the full layer's loss).
        assert_eq!(run(&mut c, 6_000, 10_000, 20.0), []);
        // Clean from 10 s: back up 10 s later.
        assert_eq!(run(&mut c, 10_000, 30_000, 0.0), [(20_000, Want::Full)]);
    }

    #[test]
    fn a_failed_try_doubles_the_wait_and_a_lasting_one_resets_it() {
        let mut c = LayerChoice::new(LayerRules::default(), 0);
        assert_eq!(c.tick(5_000, lossy(50.0)), Some(Want::Half));
        // Clean from the end of the settling time (8 s): up 10 s later. Loss again at once:
        // down, and now 20 s to wait, then 40 s.
        assert_eq!(run(&mut c, 6_000, 19_000, 0.0), [(18_000, Want::Full)]);
        assert_eq!(run(&mut c, 19_000, 23_000, 40.0), [(21_000, Want::Half)]);
        assert_eq!(run(&mut c, 23_000, 50_000, 0.0), [(44_000, Want::Full)]);
        assert_eq!(run(&mut c, 50_000, 54_000, 40.0), [(50_000, Want::Half)]);
        assert_eq!(run(&mut c, 54_000, 100_000, 0.0), [(94_000, Want::Full)]);
        // This try lasts past the trial time: the next loss starts over at 10 s.
        assert_eq!(run(&mut c, 95_000, 120_000, 0.0), []);
        assert_eq!(c.tick(120_000, lossy(40.0)), Some(Want::Half));
        assert_eq!(run(&mut c, 121_000, 140_000, 0.0), [(133_000, Want::Full)]);
    }

    #[test]
    fn the_wait_never_exceeds_its_cap() {
        let rules = LayerRules::default();
        let mut c = LayerChoice::new(rules, 0);
        let mut t = 5_000;
        let mut ups = Vec::new();
        for _ in 0..12 {
            assert_eq!(c.tick(t, lossy(50.0)), Some(Want::Half));
            let down = t;
            loop {
                t += 1000;
                if c.tick(t, lossy(0.0)) == Some(Want::Full) {
                    break;
                }
            }
            ups.push(t - down);
            t += rules.settle;
        }
        // Each spell: the settling time, then the wait.
        assert!(
            ups.iter().all(|w| *w <= rules.settle + rules.max_wait),
            "{ups:?}"
        );
        assert_eq!(ups[..4], [13_000, 23_000, 43_000, 83_000]);
        assert!(ups.last().unwrap() >= &rules.max_wait, "{ups:?}");
    }

    /// A line that is only too narrow: retransmissions fill every gap (no loss), but the
    /// pictures keep breaking and the receiver keeps asking for keyframes.
    #[test]
    fn keyframe_after_keyframe_is_trouble_too() {
        let mut c = LayerChoice::new(LayerRules::default(), 0);
        let at = |n| reading(0.0, n, true);
        // A request now and then (the first picture, a lost packet): nothing.
        assert_eq!(c.tick(1_000, at(1)), None);
        assert_eq!(c.tick(4_000, at(2)), None);
        assert_eq!(c.tick(9_000, at(3)), None);
        // Two a second: down once four fall within three seconds.
        assert_eq!(c.tick(10_000, at(5)), None);
        assert_eq!(c.tick(11_000, at(7)), Some(Want::Half));
        // On the half layer, any request keeps the spell from being clean.
        assert_eq!(c.tick(14_000, at(7)), None);
        assert_eq!(c.tick(20_000, at(8)), None);
        let quiet: Vec<_> = (21..40)
            .filter_map(|s| c.tick(s * 1000, at(8)).map(|w| (s, w)))
            .collect();
        // The request at 20 s leaves the window after 23 s: clean from 24 s, up at 34 s.
        assert_eq!(quiet, [(34, Want::Full)]);
    }

    /// A link being set up asks for its first keyframe every 300 ms until one comes: that is
    /// not trouble, and neither is anything in the settling time after the first picture.
    #[test]
    fn nothing_is_judged_before_the_first_picture() {
        let mut c = LayerChoice::new(LayerRules::default(), 0);
        let setting_up = |n| reading(30.0, n, false);
        assert_eq!(c.tick(1_000, setting_up(3)), None);
        assert_eq!(c.tick(2_000, setting_up(6)), None);
        assert_eq!(c.tick(5_000, setting_up(15)), None);
        let flowing = |n| reading(0.0, n, true);
        let lossy_now = reading(30.0, 16, true);
        // The count so far is the baseline, not many requests in the window; and loss within
        // the settling time after the first picture is not judged yet.
        assert_eq!(c.tick(6_000, flowing(16)), None);
        assert_eq!(c.tick(7_000, lossy_now), None);
        assert_eq!(c.tick(9_000, flowing(16)), None);
        assert_eq!(c.want(), Want::Full);
        assert_eq!(c.tick(10_000, lossy_now), Some(Want::Half));
    }

    #[test]
    fn jittery_loss_on_the_half_layer_restarts_the_clean_spell() {
        let mut c = LayerChoice::new(LayerRules::default(), 0);
        assert_eq!(c.tick(3_000, lossy(9.0)), Some(Want::Half));
        // Clean for 8 s, one lossy reading, clean again: 10 s from the last lossy one.
        assert_eq!(run(&mut c, 4_000, 12_000, 0.0), []);
        assert_eq!(c.tick(12_000, lossy(5.0)), None);
        assert_eq!(run(&mut c, 13_000, 30_000, 1.0), [(23_000, Want::Full)]);
    }
}
