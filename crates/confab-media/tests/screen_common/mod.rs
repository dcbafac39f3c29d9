//! What the screen-sharing tests (X11 and Wayland) share: child processes killed on drop,
//! and reading the numbered pattern back from a capture.

use confab_media::device::FrameBus;
use confab_media::{convert, pattern};
use std::process::Child;
use std::time::{Duration, Instant};

/// A child process, killed and reaped when dropped.
pub struct Killed(pub Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Frames from a capture for `how_long`, with the pattern numbers read from each (cut out at
/// `at` when the pattern sits inside a larger picture).
pub fn read_frames(
    bus: &FrameBus,
    how_long: Duration,
    at: Option<((usize, usize), (usize, usize))>,
) -> Vec<((usize, usize), Option<u32>)> {
    let mut seen = 0;
    let mut out = Vec::new();
    let end = Instant::now() + how_long;
    while Instant::now() < end {
        let Some(f) = bus.next(&mut seen, Duration::from_millis(500)) else {
            continue;
        };
        let number = match at {
            None => pattern::read(&f).map(|s| s.frame),
            Some(((x, y), (w, h))) => {
                let rgba = convert::to_rgba(&f);
                let mut cut = Vec::with_capacity(w * h * 4);
                for row in y..y + h {
                    cut.extend_from_slice(&rgba[(row * f.width + x) * 4..][..w * 4]);
                }
                pattern::read_rgba(&cut, w, h).map(|s| s.frame)
            }
        };
        out.push(((f.width, f.height), number));
    }
    out
}

pub fn assert_moving(frames: &[((usize, usize), Option<u32>)], size: (usize, usize), what: &str) {
    assert!(
        frames.len() >= 8,
        "{what}: only {} frames in 3 s",
        frames.len()
    );
    assert!(
        frames.iter().all(|(s, _)| *s == size),
        "{what}: sizes {:?}",
        frames.iter().map(|f| f.0).collect::<Vec<_>>()
    );
    let numbers: Vec<u32> = frames.iter().filter_map(|f| f.1).collect();
    assert_eq!(
        numbers.len(),
        frames.len(),
        "{what}: every picture carries a readable pattern: {frames:?}"
    );
    assert!(
        numbers.windows(2).all(|w| w[0] <= w[1]) && numbers.last() > numbers.first(),
        "{what}: the numbers move forward: {numbers:?}"
    );
}
