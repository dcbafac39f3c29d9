//! What the screen-sharing tests (X11 and Wayland) share: child processes killed on drop,
//! and reading the numbered pattern back from a capture.
// Each sharing test uses its part of these.
#![allow(dead_code)]

use anyhow::{bail, Context, Result};
use confab_media::device::screen::{self, ShareSource};
use confab_media::device::{share_source, FrameBus, VideoCapture, VideoFormat};
use confab_media::{convert, pattern};
use std::time::{Duration, Instant};

/// What can be shared, once the window titled `title` is listed (within 15 s: once the window
/// manager has taken it in).
pub fn listed_with(title: &str) -> Result<Vec<ShareSource>> {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let list = screen::sources(320)?;
        if list.iter().any(|s| s.title == title) {
            return Ok(list);
        }
        if Instant::now() > deadline {
            bail!(
                "the pattern window is not listed: {:?}",
                list.iter().map(|s| &s.title).collect::<Vec<_>>()
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A share of `id` for 3 s: every picture `size`, carrying the pattern (cut out at `at`), its
/// numbers moving forward.
pub fn shares_moving(
    id: &str,
    share: VideoFormat,
    size: (usize, usize),
    at: Option<((usize, usize), (usize, usize))>,
    what: &str,
) -> Result<()> {
    let bus = FrameBus::new();
    let cap = VideoCapture::start(&share_source(id)?, share, bus.clone())?.context("a capture")?;
    assert_eq!((cap.format.width, cap.format.height), size, "{what}");
    assert_moving(&read_frames(&bus, Duration::from_secs(3), at), size, what);
    Ok(())
}

/// A share of the window `id` ends once `close` has closed the window.
pub fn closing_ends_the_share(id: &str, share: VideoFormat, close: impl FnOnce()) -> Result<()> {
    let cap =
        VideoCapture::start(&share_source(id)?, share, FrameBus::new())?.context("a capture")?;
    std::thread::sleep(Duration::from_millis(500));
    close();
    let deadline = Instant::now() + screen::GIVE_UP + Duration::from_secs(3);
    while !cap.ended() {
        if Instant::now() > deadline {
            bail!("the capture of a closed window did not end");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(())
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
