//! Screen and window capture for sharing on Wayland: sway (a wlroots compositor) on wlroots'
//! headless back-end, with XWayland. What people run on a wlroots desktop: xcap lists the
//! screens and windows through XWayland, reads a window through XWayland, and reads the
//! screen through the compositor (wlroots' screencopy, after asking GNOME Shell and the desktop
//! portal, which are not there). A window painted with the numbered test pattern is listed
//! with a readable thumbnail and captured alone and as part of the screen, its numbers read
//! back moving; a closed window ends its capture. Not covered: GNOME's and KDE's portal
//! path (it needs their session). Linux only; sway, xwayland and dbus-daemon are Debian
//! packages `cargo xtask test` installs.
#![cfg(target_os = "linux")]

mod screen_common;

use anyhow::{bail, Context, Result};
use confab_media::device::pattern_window::PatternWindow;
use confab_media::device::screen::ShareKind;
use confab_media::device::VideoFormat;
use confab_media::pattern;
use confab_testdesk::{private_bus, Killed, Removed};
use screen_common::{closing_ends_the_share, listed_with, shares_moving};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A Wayland desktop of our own: sway on the headless back-end (one 1280x800 output, software
/// rendering), XWayland started at once, every window floating. sway refuses to run as root,
/// so it runs as `nobody`, and lets root's programs into XWayland (`xhost`: XWayland admits
/// only its own user); xcap gets a session bus of our own (it asks GNOME Shell and the
/// portal there first), where no portal answers: this is a bare wlroots desktop.
struct Wayland {
    _sway: Killed,
    _bus: Killed,
    _dir: Removed,
    /// XWayland's display, and the compositor's socket.
    display: String,
    socket: PathBuf,
    bus_address: String,
}

fn wayland_desktop() -> Result<Wayland> {
    use std::os::unix::fs::PermissionsExt;
    let dir = std::env::temp_dir().join(format!("confab-wayland-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let removed = Removed(dir.clone());
    let run = dir.join("run");
    std::fs::create_dir_all(&run)?;
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777))?;
    // nobody's own runtime directory (65534: nobody and nogroup on Debian).
    std::os::unix::fs::chown(&run, Some(65534), Some(65534))
        .context("sway runs as nobody: the test needs root, as `cargo xtask test` runs")?;
    std::fs::set_permissions(&run, std::fs::Permissions::from_mode(0o700))?;
    let env_file = dir.join("env");
    let config = dir.join("config");
    std::fs::write(
        &config,
        format!(
            "xwayland force\n\
             output HEADLESS-1 resolution 1280x800 position 0 0\n\
             for_window [class=\".*\"] floating enable\n\
             exec sh -c 'i=0; until xhost +si:localuser:root || [ $i -ge 100 ]; do \
             i=$((i+1)); sleep 0.1; done; \
             echo \"$DISPLAY $WAYLAND_DISPLAY\" > {}.tmp && mv {}.tmp {}'\n",
            env_file.display(),
            env_file.display(),
            env_file.display()
        ),
    )?;
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o644))?;
    let sway = Killed(
        Command::new("setpriv")
            .args([
                "--reuid=nobody",
                "--regid=nogroup",
                "--clear-groups",
                "sway",
                "-c",
            ])
            .arg(&config)
            .env_remove("DISPLAY")
            .env_remove("WAYLAND_DISPLAY")
            .env("XDG_RUNTIME_DIR", &run)
            .env("HOME", &dir)
            .env("WLR_BACKENDS", "headless")
            .env("WLR_LIBINPUT_NO_DEVICES", "1")
            .env("WLR_RENDERER", "pixman")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("sway (package sway) must be installed: `cargo xtask test` does")?,
    );
    let deadline = Instant::now() + Duration::from_secs(15);
    let told = loop {
        if let Ok(s) = std::fs::read_to_string(&env_file) {
            break s;
        }
        if Instant::now() > deadline {
            bail!("sway did not start (with XWayland) within 15 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let mut words = told.split_whitespace();
    let display = words.next().context("XWayland's display")?.to_string();
    let socket = run.join(words.next().context("the compositor's socket")?);
    // (Told once root is let in; a connection proves it.)
    while let Err(e) = xcb::Connection::connect(Some(&display)) {
        if Instant::now() > deadline {
            bail!("XWayland ({display}) takes no connection: {e}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    // A bus of our own that starts no service: xcap asks GNOME Shell and the portal there
    // first, and a portal installed on this machine must not answer.
    let (bus, bus_address) = private_bus(&dir)?;
    Ok(Wayland {
        _sway: sway,
        _bus: bus,
        _dir: removed,
        display,
        socket,
        bus_address,
    })
}

#[test]
fn a_pattern_window_is_listed_and_shared_alone_or_with_its_screen_on_wayland() -> Result<()> {
    let desk = wayland_desktop()?;
    // xcap reads these; this test binary has this one test.
    std::env::set_var("DISPLAY", &desk.display);
    std::env::set_var("WAYLAND_DISPLAY", &desk.socket);
    std::env::set_var("XDG_SESSION_TYPE", "wayland");
    std::env::set_var("DBUS_SESSION_BUS_ADDRESS", &desk.bus_address);
    let title = "Confab pattern window";
    let window = PatternWindow::open(Some(&desk.display), title, (100, 60), (640, 480), 10.0)?;

    // Listed as soon as XWayland maps it, perhaps before its first picture: listed again
    // until its picture shows (the X11 test's window manager takes longer).
    let deadline = Instant::now() + Duration::from_secs(15);
    let list = loop {
        let list = listed_with(title)?;
        let drawn = list.iter().any(|s| {
            s.title == title
                && s.thumbnail
                    .as_ref()
                    .is_some_and(|t| pattern::read(t).is_some())
        });
        if drawn || Instant::now() > deadline {
            break list;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let screen_src = list
        .iter()
        .find(|s| s.kind == ShareKind::Screen)
        .context("a screen is listed")?;
    assert_eq!((screen_src.width, screen_src.height), (1280, 800));
    let win_src = list.iter().find(|s| s.title == title).unwrap();
    assert_eq!(win_src.kind, ShareKind::Window);
    assert_eq!((win_src.width, win_src.height), (640, 480));
    let thumb = win_src.thumbnail.as_ref().context("the window's picture")?;
    assert!(
        pattern::read(thumb).is_some(),
        "the thumbnail shows the pattern"
    );

    let share = VideoFormat {
        width: 1280,
        height: 720,
        fps: 5.0,
    };
    // The window alone, through XWayland.
    shares_moving(&win_src.id, share, (640, 480), None, "window")?;
    // The whole screen, through the compositor: the window where sway put it.
    let (x, y) = window.position()?;
    let at = Some(((x as usize, y as usize), (640, 480)));
    shares_moving(&screen_src.id, share, (1280, 800), at, "screen")?;
    // A shared window that closes ends its capture.
    closing_ends_the_share(&win_src.id, share, || drop(window))?;
    Ok(())
}
