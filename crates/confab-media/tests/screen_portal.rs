//! Sharing on a Wayland desktop through the desktop portal's ScreenCast and PipeWire.
//!
//! Real: the D-Bus session bus, the PipeWire daemon, Confab's portal client (ashpd) and
//! PipeWire reader. Stood in for (`confab-testdesk`): the portal, the compositor's stream of
//! the screen (here the numbered test pattern in BGRx, 10 fps) and the session manager.
//!
//! Checked: the picker's list is the one "Screen or window" entry; a share reads the pattern
//! back with its numbers moving; stopping closes the portal session and Confab's stream; a
//! choice cancelled in the desktop's picker is a `Cancelled` error, with the session closed,
//! and so is a picker given up (the call ended while the person had not chosen); a stream the
//! desktop ends ends the share, and Confab closes the session by itself. Linux only.
#![cfg(target_os = "linux")]

mod screen_common;

use anyhow::{bail, Context, Result};
use confab_media::device::portal::NODE_NAME;
use confab_media::device::screen::{self, ShareKind};
use confab_media::device::{share_source, FrameBus, VideoCapture, VideoFormat};
use confab_media::{convert, pattern, MediaError};
use confab_testdesk::{Desktop, Pictures};
use screen_common::{assert_moving, read_frames};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The screen's size.
const SCREEN: (usize, usize) = (640, 360);

/// The numbered test pattern's picture `n` of `size`, as RGBA.
fn numbered((w, h): (usize, usize)) -> impl Fn(u64) -> Vec<u8> + Send + Sync + 'static {
    move |n| {
        let stamp = pattern::Stamp {
            frame: n as u32,
            capture_us: 0,
        };
        convert::to_rgba(&pattern::frame(w, h, stamp, 0))
    }
}

fn wait_for(what: &str, limit: Duration, mut done: impl FnMut() -> bool) -> Result<()> {
    let deadline = Instant::now() + limit;
    while !done() {
        if Instant::now() > deadline {
            bail!("{what} within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(())
}

#[test]
fn a_screen_chosen_in_the_desktop_portal_is_shared_and_stopping_closes_the_session() -> Result<()> {
    let desk = Desktop::start(
        "portal",
        Pictures::from_rgba(SCREEN.0, SCREEN.1, 10, numbered(SCREEN)),
        NODE_NAME,
    )?;
    // What Confab reads to know it is on Wayland and where the portal is; this test binary has
    // this one test.
    std::env::set_var("XDG_SESSION_TYPE", "wayland");
    std::env::set_var("DBUS_SESSION_BUS_ADDRESS", &desk.bus_address);

    // The picker offers the desktop's own picker, and nothing else.
    let list = screen::sources(320)?;
    assert_eq!(list.len(), 1, "{list:?}");
    assert_eq!(list[0].kind, ShareKind::Picker);
    assert_eq!(list[0].id, "portal");

    let want = VideoFormat {
        width: 1280,
        height: 720,
        fps: 5.0,
    };
    let spec = share_source(&list[0].id)?;

    // A share: the pattern read back, its numbers moving.
    let bus = FrameBus::new();
    let cap = VideoCapture::start(&spec, want, bus.clone())?.context("a capture")?;
    assert_eq!((cap.format.width, cap.format.height), SCREEN);
    assert_eq!(cap.description, "the chosen screen");
    assert_moving(
        &read_frames(&bus, Duration::from_secs(3), None),
        SCREEN,
        "the portal's screen",
    );
    assert_eq!(desk.sessions().0, 1);
    assert!(desk.consumer_there());
    // Stopping closes the portal session and Confab's stream.
    drop(cap);
    wait_for("the session closed on stop", Duration::from_secs(5), || {
        desk.sessions().1 == 1
    })?;
    wait_for(
        "Confab's stream gone on stop",
        Duration::from_secs(5),
        || !desk.consumer_there(),
    )?;

    // The person cancels the desktop's picker: a Cancelled error, the session closed.
    desk.cancel_next();
    match VideoCapture::start(&spec, want, FrameBus::new()) {
        Err(MediaError::Cancelled(m)) => assert!(m.contains("cancelled"), "{m}"),
        Err(e) => bail!("a cancelled picker gave another error: {e}"),
        Ok(_) => bail!("a cancelled picker started a share"),
    }
    wait_for(
        "the cancelled session closed",
        Duration::from_secs(5),
        || desk.sessions().1 == 2,
    )?;

    // The call ends (or sharing is stopped) while the desktop's picker is still open: the
    // picker is given up at once, its session closed.
    desk.hold_next();
    let cancel = Arc::new(AtomicBool::new(false));
    let waiting = std::thread::spawn({
        let (spec, cancel) = (spec.clone(), cancel.clone());
        move || {
            VideoCapture::start_cancellable(&spec, want, FrameBus::new(), cancel)
                .map(|c| c.is_some())
        }
    });
    wait_for(
        "the desktop's picker shown",
        Duration::from_secs(10),
        || desk.pickers() == 3,
    )?;
    let asked = Instant::now();
    cancel.store(true, Ordering::Relaxed);
    match waiting.join() {
        Ok(Err(MediaError::Cancelled(m))) => assert!(m.contains("stopped"), "{m}"),
        Ok(other) => bail!("a picker given up gave {other:?}"),
        Err(_) => bail!("the share's start panicked"),
    }
    assert!(
        asked.elapsed() < Duration::from_secs(3),
        "given up after {:?}",
        asked.elapsed()
    );
    wait_for(
        "the given-up session closed",
        Duration::from_secs(5),
        || desk.sessions().1 == 3,
    )?;

    // The desktop ends the cast (its "stop sharing" button): the share ends by itself.
    let cap = VideoCapture::start(&spec, want, FrameBus::new())?.context("a capture")?;
    assert!(!cap.ended());
    desk.end_cast();
    wait_for(
        "the share ended with the desktop's stream",
        Duration::from_secs(10),
        || cap.ended(),
    )?;
    // Confab closes the session by itself, before the share is dropped.
    wait_for(
        "the ended share's session closed",
        Duration::from_secs(5),
        || desk.sessions().1 == 4,
    )?;
    assert!(!desk.consumer_there());
    drop(cap);
    Ok(())
}
