//! The picture size a link's camera is sent at, from what the link carries: a 720p picture
//! squeezed into 150 kbit/s is a smear whose every keyframe is larger than a narrow line's
//! queue (tail drop cuts it, the receiver asks again: a keyframe storm), while the same bits
//! carry a clean, moving 320x180 picture. Pure: fed the encoder's target and the time.
//!
//! One step at a time, down quickly (a link that cannot carry its size loses pictures) and up
//! slowly (a rate that only just allows the bigger size would bring it back down at once): the
//! gap between the two thresholds (a factor of two) and the wait keep the size from flapping.

use super::Scale;
use std::time::{Duration, Instant};

/// Bits a second per pixel a size needs to look good at a camera's frame rate (libwebrtc
/// starts 720p at ~0.9 Mbit/s and 360p at ~0.3).
const BITS_PER_PIXEL: f64 = 1.0;
/// Below this share of what its size needs, the picture steps down.
const DOWN_BELOW: f64 = 0.5;
/// Below this share it steps down at once, as far as the rate asks: a line found that much
/// narrower than the picture (at a call's start, 1.5 Mbit/s assumed, 300 kbit/s found) is
/// full already, and each second at the old size is a second of lost packets and keyframe
/// requests, frozen. A dip of a healthy line is rarely that deep.
const AT_ONCE_BELOW: f64 = 0.2;
/// How long a rate must stay below (above) the threshold before the size changes.
const DOWN_AFTER: Duration = Duration::from_secs(1);
const UP_AFTER: Duration = Duration::from_secs(4);
/// No picture is sent narrower than this (the test pattern, faces, need the pixels).
const MIN_WIDTH: usize = 240;

/// One link's choice of size.
#[derive(Debug)]
pub(super) struct Ladder {
    scale: Scale,
    /// The size the rate has asked for, and since when.
    pending: Option<(Scale, Instant)>,
}

impl Default for Ladder {
    fn default() -> Self {
        Ladder {
            scale: Scale::Full,
            pending: None,
        }
    }
}

fn needs(width: usize, height: usize, scale: Scale) -> f64 {
    let d = scale.divisor();
    ((width / d) * (height / d)) as f64 * BITS_PER_PIXEL
}

impl Ladder {
    pub(super) fn scale(&self) -> Scale {
        self.scale
    }

    /// The size to encode this frame at, for a captured `width` x `height` and an encoder
    /// target of `bits` a second; `heard`: whether that target comes from a reading of the
    /// line yet. Before the far end's first reports the estimate is only held low as a
    /// precaution (a call sharing its screen gave its camera 42 kbit/s of it, and stepped
    /// a 640x480 camera down at once for seconds on a line that carried megabits): the
    /// picture keeps its size until the line has been heard from.
    pub(super) fn choose(
        &mut self,
        bits: u32,
        width: usize,
        height: usize,
        heard: bool,
        now: Instant,
    ) -> Scale {
        if !heard {
            self.pending = None;
            return self.scale;
        }
        let bits = bits as f64;
        let allowed = |s: Scale| width / s.divisor() >= MIN_WIDTH;
        if bits < needs(width, height, self.scale) * AT_ONCE_BELOW {
            let mut to = self.scale;
            while let Some(down) = to.smaller().filter(|d| allowed(*d)) {
                to = down;
                if bits >= needs(width, height, to) * DOWN_BELOW {
                    break;
                }
            }
            if to != self.scale {
                self.scale = to;
                self.pending = None;
                return self.scale;
            }
        }
        let want = match (self.scale.smaller(), self.scale.larger()) {
            (Some(down), _)
                if allowed(down) && bits < needs(width, height, self.scale) * DOWN_BELOW =>
            {
                down
            }
            (_, Some(up)) if bits >= needs(width, height, up) => up,
            _ => self.scale,
        };
        if want == self.scale {
            self.pending = None;
            return self.scale;
        }
        let wait = if want.divisor() > self.scale.divisor() {
            DOWN_AFTER
        } else {
            UP_AFTER
        };
        match self.pending {
            Some((s, since)) if s == want => {
                if now.saturating_duration_since(since) >= wait {
                    self.scale = want;
                    self.pending = None;
                }
            }
            _ => self.pending = Some((want, now)),
        }
        self.scale
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `bits` for `secs` seconds of 30 fps frames; the size at the end.
    fn run(l: &mut Ladder, t: &mut Instant, bits: u32, secs: f64) -> Scale {
        let mut s = Scale::Full;
        for _ in 0..(secs * 30.0) as usize {
            *t += Duration::from_millis(33);
            s = l.choose(bits, 1280, 720, true, *t);
        }
        s
    }

    #[test]
    fn a_720p_camera_steps_down_on_a_narrow_line_and_back_up_when_it_widens() {
        let (mut l, mut t) = (Ladder::default(), Instant::now());
        assert_eq!(run(&mut l, &mut t, 1_500_000, 5.0), Scale::Full);
        // 300 kbit/s: 640x360 needs 230k, so half size holds; 100k: quarter (320x180).
        assert_eq!(
            run(&mut l, &mut t, 300_000, 0.5),
            Scale::Full,
            "not at once"
        );
        assert_eq!(run(&mut l, &mut t, 300_000, 1.0), Scale::Half);
        assert_eq!(run(&mut l, &mut t, 300_000, 5.0), Scale::Half);
        assert_eq!(run(&mut l, &mut t, 100_000, 2.5), Scale::Quarter);
        assert_eq!(
            run(&mut l, &mut t, 50_000, 5.0),
            Scale::Quarter,
            "the floor"
        );
        // Back up one step at a time, each after a steady wait.
        assert_eq!(run(&mut l, &mut t, 2_000_000, 3.0), Scale::Quarter);
        assert_eq!(run(&mut l, &mut t, 2_000_000, 1.5), Scale::Half);
        assert_eq!(run(&mut l, &mut t, 2_000_000, 4.5), Scale::Full);
    }

    #[test]
    fn a_line_found_far_narrower_than_the_picture_steps_down_at_once_as_far_as_it_asks() {
        let (mut l, mut t) = (Ladder::default(), Instant::now());
        t += Duration::from_millis(33);
        assert_eq!(l.choose(1_300_000, 1280, 720, true, t), Scale::Full);
        // 150 kbit/s: under a fifth of 720p's need (921k), over half of 360p's (115k).
        t += Duration::from_millis(33);
        assert_eq!(
            l.choose(150_000, 1280, 720, true, t),
            Scale::Half,
            "at once"
        );
        let (mut l, mut t) = (Ladder::default(), Instant::now());
        t += Duration::from_millis(33);
        l.choose(1_300_000, 1280, 720, true, t);
        t += Duration::from_millis(33);
        assert_eq!(
            l.choose(87_000, 1280, 720, true, t),
            Scale::Quarter,
            "two steps at once"
        );
        // Back up as before: one step at a time, after the wait.
        assert_eq!(run(&mut l, &mut t, 2_000_000, 3.0), Scale::Quarter);
        assert_eq!(run(&mut l, &mut t, 2_000_000, 1.5), Scale::Half);
    }

    /// A call sharing its screen at its start: the camera's part of the start's precautionary
    /// 300 kbit/s is 42 kbit/s, under a fifth of 640x480's need. Before the far end has been
    /// heard from it keeps its size; heard, the same rate steps it down at once.
    #[test]
    fn a_start_held_low_before_the_line_is_heard_keeps_the_size() {
        let (mut l, mut t) = (Ladder::default(), Instant::now());
        for _ in 0..90 {
            t += Duration::from_millis(33);
            assert_eq!(l.choose(42_000, 640, 480, false, t), Scale::Full);
        }
        t += Duration::from_millis(33);
        assert_eq!(l.choose(42_000, 640, 480, true, t), Scale::Half, "heard");
    }

    #[test]
    fn a_rate_between_the_thresholds_keeps_the_size() {
        let (mut l, mut t) = (Ladder::default(), Instant::now());
        assert_eq!(run(&mut l, &mut t, 300_000, 2.0), Scale::Half);
        // 600k: too little for 720p (921k), more than half of 360p's need: stays.
        assert_eq!(run(&mut l, &mut t, 600_000, 30.0), Scale::Half);
    }

    #[test]
    fn a_dip_shorter_than_the_wait_changes_nothing() {
        let (mut l, mut t) = (Ladder::default(), Instant::now());
        for _ in 0..10 {
            assert_eq!(run(&mut l, &mut t, 200_000, 0.8), Scale::Full);
            assert_eq!(run(&mut l, &mut t, 1_200_000, 0.2), Scale::Full);
        }
    }

    #[test]
    fn a_small_camera_is_not_made_smaller_than_the_floor() {
        let (mut l, mut t) = (Ladder::default(), Instant::now());
        for _ in 0..200 {
            t += Duration::from_millis(33);
            // 320x240 halved would be 160 wide.
            assert_eq!(l.choose(10_000, 320, 240, true, t), Scale::Full);
        }
        for _ in 0..200 {
            t += Duration::from_millis(33);
            l.choose(10_000, 640, 480, true, t);
        }
        assert_eq!(
            l.choose(10_000, 640, 480, true, t),
            Scale::Half,
            "320x240, no less"
        );
    }
}
