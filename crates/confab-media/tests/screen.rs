//! Screen and window capture for sharing, on a real X server (Xvfb) with a real window manager
//! (openbox, which keeps the list of windows as on any desktop): a window painted with the
//! numbered test pattern is listed with a readable thumbnail, captured alone and as part of the
//! screen with its moving numbers read back, and a closed window ends its capture.
//! Linux only (Xvfb and openbox are Debian packages `cargo xtask test` installs).
#![cfg(target_os = "linux")]

mod screen_common;

use anyhow::{Context, Result};
use confab_bench::procs::Xvfb;
use confab_media::device::pattern_window::PatternWindow;
use confab_media::device::screen::ShareKind;
use confab_media::device::{share_source, FrameBus, VideoCapture, VideoFormat};
use confab_media::pattern;
use screen_common::{
    assert_moving, closing_ends_the_share, listed_with, read_frames, shares_moving,
};
use std::time::Duration;

/// A plain black window over `at` (override-redirect: the window manager leaves it where it is).
struct Cover(xcb::Connection, xcb::x::Window);

impl Drop for Cover {
    fn drop(&mut self) {
        let _ = self
            .0
            .send_and_check_request(&xcb::x::DestroyWindow { window: self.1 });
    }
}

impl Cover {
    fn over(display: &str, (x, y): (i32, i32), (w, h): (u16, u16)) -> Result<Cover> {
        use xcb::x;
        let (conn, n) = xcb::Connection::connect(Some(display))?;
        let screen = conn
            .get_setup()
            .roots()
            .nth(usize::try_from(n)?)
            .context("a screen")?;
        let window: x::Window = conn.generate_id();
        conn.send_request(&x::CreateWindow {
            depth: x::COPY_FROM_PARENT as u8,
            wid: window,
            parent: screen.root(),
            x: i16::try_from(x - 30)?,
            y: i16::try_from(y - 30)?,
            width: w,
            height: h,
            border_width: 0,
            class: x::WindowClass::InputOutput,
            visual: screen.root_visual(),
            value_list: &[
                x::Cw::BackPixel(screen.black_pixel()),
                x::Cw::OverrideRedirect(true),
            ],
        });
        conn.send_and_check_request(&x::MapWindow { window })?;
        // Mapped and drawn before anyone looks.
        std::thread::sleep(Duration::from_millis(300));
        Ok(Cover(conn, window))
    }
}

#[test]
fn a_pattern_window_is_listed_and_shared_alone_or_with_its_screen() -> Result<()> {
    // An X server of our own, 1280x800, with openbox managing its windows.
    let xvfb = Xvfb::start(1280, 800)?.with_window_manager()?;
    let display = xvfb.display.clone();
    // xcap connects to $DISPLAY; this test binary has this one test.
    std::env::set_var("DISPLAY", &display);
    std::env::remove_var("WAYLAND_DISPLAY");
    std::env::remove_var("XDG_SESSION_TYPE");
    let title = "Confab pattern window";
    let window = PatternWindow::open(Some(&display), title, (100, 60), (640, 480), 10.0)?;

    let list = listed_with(title)?;
    let screen_src = list
        .iter()
        .find(|s| s.kind == ShareKind::Screen)
        .context("a screen is listed")?;
    assert_eq!((screen_src.width, screen_src.height), (1280, 800));
    assert!(
        screen_src.title.starts_with("Screen 1"),
        "{}",
        screen_src.title
    );
    let thumb = screen_src
        .thumbnail
        .as_ref()
        .context("the screen's picture")?;
    assert_eq!((thumb.width, thumb.height), (320, 200));
    let win_src = list.iter().find(|s| s.title == title).unwrap();
    assert_eq!(win_src.kind, ShareKind::Window);
    assert_eq!(win_src.id, format!("window:{}", window.id));
    assert_eq!((win_src.width, win_src.height), (640, 480));
    // The window's picture is the pattern at half size: still readable.
    let thumb = win_src.thumbnail.as_ref().context("the window's picture")?;
    assert_eq!((thumb.width, thumb.height), (320, 240));
    assert!(
        pattern::read(thumb).is_some(),
        "the thumbnail shows the pattern"
    );
    // The screens come first.
    assert_eq!(list[0].kind, ShareKind::Screen);

    let share = VideoFormat {
        width: 1280,
        height: 720,
        fps: 5.0,
    };
    // The window alone, at its own size, under its title.
    let cap = VideoCapture::start(&share_source(&win_src.id)?, share, FrameBus::new())?
        .context("a capture")?;
    assert_eq!(cap.description, title);
    drop(cap);
    shares_moving(&win_src.id, share, (640, 480), None, "window")?;

    // Covered by another window (no compositing manager here, as on many X11 desktops), the
    // shared window still shows itself, not what covers it.
    let cover = Cover::over(&display, window.position()?, (700, 560))?;
    let bus = FrameBus::new();
    let cap = VideoCapture::start(&share_source(&win_src.id)?, share, bus.clone())?
        .context("a capture")?;
    // (Its first picture can be the blank it had before it painted itself again.)
    std::thread::sleep(Duration::from_millis(400));
    assert_moving(
        &read_frames(&bus, Duration::from_secs(3), None),
        (640, 480),
        "covered window",
    );
    drop(cap);
    drop(cover);
    // Uncovered again: the pattern window paints on its own clock, not on Expose.
    std::thread::sleep(Duration::from_millis(400));

    // The whole screen, the window read back where the window manager put it.
    let (x, y) = window.position()?;
    let at = Some(((x as usize, y as usize), (640, 480)));
    shares_moving(&screen_src.id, share, (1280, 800), at, "screen")?;

    // A shared window that closes ends its capture.
    closing_ends_the_share(&win_src.id, share, || drop(window))?;
    // And a window that is gone cannot be shared, in words.
    let err = VideoCapture::start(&share_source(&win_src.id)?, share, FrameBus::new())
        .err()
        .context("sharing a closed window fails")?;
    assert!(err.to_string().contains("not open"), "{err}");
    Ok(())
}
