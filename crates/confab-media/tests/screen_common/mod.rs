//! What the screen-sharing tests (X11 and Wayland) share: child processes killed on drop,
//! and reading the numbered pattern back from a capture.
// Each sharing test uses its part of these.
#![allow(dead_code)]

use anyhow::{bail, Context, Result};
use confab_media::device::screen::{self, ShareSource};
use confab_media::device::{share_source, FrameBus, VideoCapture, VideoFormat};
use confab_media::{convert, pattern};
use std::process::Child;
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

/// A D-Bus session bus of the test's own, listening in `dir`, that starts no service by itself
/// (a desktop portal installed on the machine stays out of the test). Answers the bus process
/// and its address.
pub fn private_bus(dir: &std::path::Path) -> Result<(Killed, String)> {
    use std::io::BufRead;
    use std::process::{Command, Stdio};
    let config = dir.join("bus.conf");
    std::fs::write(
        &config,
        format!(
            "<!DOCTYPE busconfig PUBLIC \"-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN\" \
             \"http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd\">\n\
             <busconfig><type>session</type><listen>unix:path={}</listen>\
             <auth>EXTERNAL</auth><policy context=\"default\">\
             <allow send_destination=\"*\" eavesdrop=\"true\"/><allow eavesdrop=\"true\"/>\
             <allow own=\"*\"/></policy></busconfig>\n",
            dir.join("bus").display()
        ),
    )?;
    let mut bus = Killed(
        Command::new("dbus-daemon")
            .arg(format!("--config-file={}", config.display()))
            .args(["--nofork", "--nopidfile", "--print-address=1"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .context(
                "dbus-daemon (package dbus-daemon) must be installed: `cargo xtask test` does",
            )?,
    );
    let mut line = String::new();
    std::io::BufReader::new(bus.0.stdout.take().context("the bus's address")?)
        .read_line(&mut line)?;
    if line.trim().is_empty() {
        bail!("dbus-daemon did not start");
    }
    Ok((bus, line.trim().to_string()))
}

/// A folder removed when dropped (after the processes using it: declared after them).
pub struct Removed(pub std::path::PathBuf);

impl Drop for Removed {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

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
