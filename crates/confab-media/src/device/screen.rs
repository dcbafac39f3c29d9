//! Screens and windows to share, through xcap (X11 on Linux; GDI/WGC on Windows;
//! ScreenCaptureKit on macOS), or on a Wayland desktop through the desktop's own picker
//! ([`super::portal`]).
//!
//! On Wayland, where the desktop portal can cast (GNOME, KDE, wlroots with its portal), the
//! list is that one entry: Wayland lets no program list or read other windows, the desktop's
//! picker shows them all (XWayland's too), and xcap would read a screen there one screenshot
//! at a time. Without such a portal (a bare wlroots compositor), xcap lists screens read
//! through wlroots' screencopy and XWayland's windows.
//!
//! [`sources`] lists what can be shared, each with a small picture for the picker; a share is
//! started like a camera ([`super::VideoCapture::start`] with [`VideoSourceSpec::Screen`]): a
//! device thread captures the screen or window at the share's frame rate, turns it into I420 of
//! at most [`MAX_WIDTH`]×[`MAX_HEIGHT`] (halved until it fits: detail over motion) and
//! publishes it on the share's frame bus. A window that goes away ends the capture after
//! [`GIVE_UP`] of failures, and the share says so ([`super::VideoCapture::ended`]).
//!
//! Windows are listed from the window manager's list (X11's `_NET_CLIENT_LIST_STACKING`), as on
//! any desktop; minimized or empty windows and this program's own windows are left out.

use super::worker::Worker;
use super::{FrameBus, ScreenRef, VideoFormat};
use crate::convert::{rgba_to_i420, shrink_rgba};
use crate::frame::{now_us, VideoFrame};
use crate::MediaError;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The largest shared picture: a screen bigger than this each way is halved until it fits.
pub const MAX_WIDTH: usize = 1920;
pub const MAX_HEIGHT: usize = 1080;
/// How long capture may fail in a row (a closed window) before the share ends.
pub const GIVE_UP: Duration = Duration::from_secs(3);
/// How long the first picture of a screen or window may take.
const OPEN_TIMEOUT: Duration = Duration::from_secs(10);

/// A screen or a window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ShareKind {
    Screen,
    Window,
    /// Whatever the person picks in the desktop's own picker (Wayland).
    Picker,
}

/// Something that can be shared, as the picker shows it.
#[derive(Debug, Clone)]
pub struct ShareSource {
    /// Its share id (`screen:ID`, `window:ID`), for [`super::share_source`].
    pub id: String,
    pub kind: ShareKind,
    /// The screen's name ("Screen 1 (primary)") or the window's title (its program's name when
    /// it has none).
    pub title: String,
    pub width: u32,
    pub height: u32,
    /// A small picture of it (at most `thumb_width` wide), when it could be captured.
    pub thumbnail: Option<VideoFrame>,
}

fn worded(what: &str, e: xcap::XCapError) -> MediaError {
    MediaError::Device(format!("cannot capture {what}: {e}"))
}

/// What can be shared now: the screens, then the windows front to back, each with a picture at
/// most `thumb_width` wide. An error in words when this system allows no capture at all.
pub fn sources(thumb_width: usize) -> Result<Vec<ShareSource>, MediaError> {
    #[cfg(target_os = "linux")]
    if super::portal::wayland_session() && super::portal::available() {
        return Ok(vec![ShareSource {
            id: ScreenRef::Portal.to_string(),
            kind: ShareKind::Picker,
            title: "Screen or window".into(),
            width: 0,
            height: 0,
            thumbnail: None,
        }]);
    }
    let monitors = xcap::Monitor::all().map_err(|e| worded("the screens", e))?;
    let mut out = Vec::new();
    for (n, m) in monitors.iter().enumerate() {
        let Ok(id) = m.id() else { continue };
        let (width, height) = (m.width().unwrap_or(0), m.height().unwrap_or(0));
        let primary = m.is_primary().unwrap_or(false);
        let name = m.friendly_name().or_else(|_| m.name()).unwrap_or_default();
        let mut title = format!("Screen {}", n + 1);
        if primary {
            title.push_str(" (primary)");
        }
        if !name.trim().is_empty() {
            title = format!("{title} · {}", name.trim());
        }
        let thumbnail = m
            .capture_image()
            .ok()
            .and_then(|img| thumb(img.as_raw(), img.width(), img.height(), thumb_width));
        out.push(ShareSource {
            id: ScreenRef::Screen(Some(id)).to_string(),
            kind: ShareKind::Screen,
            title,
            width,
            height,
            thumbnail,
        });
    }
    // Without a window manager there is no list of windows: the screens alone then.
    let windows = xcap::Window::all().unwrap_or_default();
    let me = std::process::id();
    for w in windows {
        let Ok(id) = w.id() else { continue };
        let (width, height) = (w.width().unwrap_or(0), w.height().unwrap_or(0));
        if width < 2 || height < 2 || w.is_minimized().unwrap_or(false) || w.pid().ok() == Some(me)
        {
            continue;
        }
        let title = w
            .title()
            .ok()
            .filter(|t| !t.trim().is_empty())
            .or_else(|| w.app_name().ok().filter(|t| !t.trim().is_empty()))
            .unwrap_or_else(|| format!("Window {id}"));
        let thumbnail = w
            .capture_image()
            .ok()
            .and_then(|img| thumb(img.as_raw(), img.width(), img.height(), thumb_width));
        out.push(ShareSource {
            id: ScreenRef::Window(id).to_string(),
            kind: ShareKind::Window,
            title: label(&title),
            width,
            height,
            thumbnail,
        });
    }
    if out.is_empty() {
        return Err(MediaError::Device(
            "there is no screen or window this computer lets Confab capture".into(),
        ));
    }
    Ok(out)
}

/// A small I420 picture of an RGBA one, at most `width` wide.
fn thumb(rgba: &[u8], w: u32, h: u32, width: usize) -> Option<VideoFrame> {
    let (w, h) = (w as usize, h as usize);
    let factor = w.div_ceil(width.max(2));
    let (small, sw, sh) = shrink_rgba(rgba, w, h, factor);
    rgba_to_i420(&small, sw * 4, sw, sh)
}

/// The picture to send of a captured RGBA one: halved until it fits the largest share size,
/// even-sized, I420.
pub fn to_share_frame(rgba: &[u8], w: usize, h: usize) -> Option<VideoFrame> {
    let mut factor = 1;
    while w / factor > MAX_WIDTH || h / factor > MAX_HEIGHT {
        factor *= 2;
    }
    if factor == 1 {
        return rgba_to_i420(rgba, w * 4, w, h);
    }
    let (small, sw, sh) = shrink_rgba(rgba, w, h, factor);
    rgba_to_i420(&small, sw * 4, sw, sh)
}

enum Target {
    Monitor(xcap::Monitor),
    /// On X11 also read through Composite, so that a covered window still shows itself.
    Window(xcap::Window, Option<WindowPicture>),
}

#[cfg(target_os = "linux")]
type WindowPicture = super::x11_window::Composited;
#[cfg(not(target_os = "linux"))]
type WindowPicture = std::convert::Infallible;

/// The window's own picture, covered or not, where the system can give it.
fn window_picture(id: u32) -> Option<WindowPicture> {
    #[cfg(target_os = "linux")]
    {
        if !super::portal::wayland_session() {
            return super::x11_window::Composited::open(id);
        }
    }
    let _ = id;
    None
}

impl Target {
    fn find(which: ScreenRef) -> Result<(Target, String), MediaError> {
        match which {
            ScreenRef::Screen(id) => {
                let mut all = xcap::Monitor::all().map_err(|e| worded("the screens", e))?;
                let at = match id {
                    Some(id) => all.iter().position(|m| m.id().is_ok_and(|m| m == id)),
                    // The primary screen, or the first when none is marked.
                    None => all
                        .iter()
                        .position(|m| m.is_primary().unwrap_or(false))
                        .or((!all.is_empty()).then_some(0)),
                };
                let Some(n) = at else {
                    return Err(MediaError::Device(match id {
                        Some(id) => format!("there is no screen {id} (any more)"),
                        None => "there is no screen to share".into(),
                    }));
                };
                Ok((
                    Target::Monitor(all.swap_remove(n)),
                    format!("Screen {}", n + 1),
                ))
            }
            ScreenRef::Portal => Err(MediaError::Device(
                "the desktop's own picker is not read through xcap".into(),
            )),
            ScreenRef::Window(id) => {
                let all = xcap::Window::all().map_err(|e| worded("the windows", e))?;
                let w = all
                    .into_iter()
                    .find(|w| w.id().is_ok_and(|w| w == id))
                    .ok_or_else(|| {
                        MediaError::Device(format!("the window {id} is not open (any more)"))
                    })?;
                let title = w
                    .title()
                    .ok()
                    .filter(|t| !t.trim().is_empty())
                    .unwrap_or_else(|| format!("window {id}"));
                Ok((Target::Window(w, window_picture(id)), label(&title)))
            }
        }
    }

    fn capture(&self) -> Option<VideoFrame> {
        #[cfg(target_os = "linux")]
        if let Target::Window(_, Some(own)) = self {
            if let Some((rgba, w, h)) = own.capture() {
                return to_share_frame(&rgba, w, h);
            }
        }
        let img = match self {
            Target::Monitor(m) => m.capture_image(),
            Target::Window(w, _) => w.capture_image(),
        }
        .ok()?;
        let (w, h) = (img.width() as usize, img.height() as usize);
        to_share_frame(img.as_raw(), w, h)
    }
}

/// Starts capturing a screen or window at `want.fps` (the size is [`MAX_WIDTH`]×[`MAX_HEIGHT`]
/// at most, whatever `want` says), publishing into `bus`; `ended` is set when it stops by
/// itself; `cancel` gives up a share still waiting for the person to choose (the desktop's
/// picker). Answers what is shared, in words (the screen's or window's name), and the first
/// picture's format.
pub(super) fn start(
    which: ScreenRef,
    want: VideoFormat,
    bus: Arc<FrameBus>,
    ended: Arc<AtomicBool>,
    cancel: Arc<AtomicBool>,
) -> Result<(Worker, (String, VideoFormat)), MediaError> {
    if which == ScreenRef::Portal {
        #[cfg(target_os = "linux")]
        return super::portal::start(want, bus, ended, cancel);
        #[cfg(not(target_os = "linux"))]
        {
            let _ = cancel;
            return Err(MediaError::Device(
                "the desktop portal is for Linux's Wayland desktops".into(),
            ));
        }
    }
    let fps = want.fps.clamp(1.0, 30.0);
    Worker::start(
        "screen capture",
        OPEN_TIMEOUT,
        move || {
            let (target, name) = Target::find(which)?;
            let first = target.capture().ok_or_else(|| {
                MediaError::Device(format!("{name} cannot be captured on this system"))
            })?;
            let format = VideoFormat {
                width: first.width,
                height: first.height,
                fps,
            };
            // The name alone: what the share bar and the snapshot say is shared.
            let description = name;
            Ok(((target, first), (description, format)))
        },
        move |(target, first), stop| {
            run(&target, first, fps, &bus, stop);
            ended.store(true, Ordering::Relaxed);
        },
    )
}

fn run(target: &Target, first: VideoFrame, fps: f32, bus: &FrameBus, stop: &AtomicBool) {
    let period = Duration::from_secs_f64(1.0 / f64::from(fps));
    let publish = |mut f: VideoFrame| {
        f.timestamp_us = now_us();
        bus.publish(f);
    };
    publish(first);
    let start = Instant::now();
    let mut n = 1u32;
    let mut failing_since: Option<Instant> = None;
    while !stop.load(Ordering::Relaxed) {
        let due = start + period * n;
        let now = Instant::now();
        if due > now {
            std::thread::sleep(due - now);
        }
        n = n.wrapping_add(1);
        match target.capture() {
            Some(f) => {
                failing_since = None;
                publish(f);
            }
            None => {
                let since = *failing_since.get_or_insert_with(Instant::now);
                if since.elapsed() >= GIVE_UP {
                    tracing::info!("the shared screen or window cannot be captured any more");
                    return;
                }
            }
        }
    }
}

/// A window title as the picker may show it: other programs choose their titles, so no control
/// or direction-changing characters, at most 200 characters.
fn label(title: &str) -> String {
    let clean: String = title
        .chars()
        .filter(|c| !c.is_control() && !matches!(c, '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}'))
        .take(200)
        .collect();
    clean.trim().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pattern;

    fn rgba_of(frame: &VideoFrame) -> Vec<u8> {
        crate::convert::to_rgba(frame)
    }

    #[test]
    fn a_captured_picture_keeps_its_pattern_and_size_when_it_fits() {
        let f = pattern::numbered(1280, 800, 77);
        let out = to_share_frame(&rgba_of(&f), 1280, 800).unwrap();
        assert_eq!((out.width, out.height), (1280, 800));
        assert_eq!(pattern::read(&out).map(|s| s.frame), Some(77));
    }

    #[test]
    fn a_big_screen_is_halved_until_it_fits_and_stays_readable() {
        let f = pattern::numbered(3840, 2160, 9);
        let out = to_share_frame(&rgba_of(&f), 3840, 2160).unwrap();
        assert_eq!((out.width, out.height), (1920, 1080));
        assert_eq!(pattern::read(&out).map(|s| s.frame), Some(9));
        let f = pattern::numbered(2560, 1600, 10);
        let out = to_share_frame(&rgba_of(&f), 2560, 1600).unwrap();
        assert_eq!((out.width, out.height), (1280, 800));
        assert_eq!(pattern::read(&out).map(|s| s.frame), Some(10));
    }

    #[test]
    fn an_odd_sized_window_is_cut_to_even_and_a_short_buffer_is_refused() {
        let rgba = vec![200u8; 641 * 481 * 4];
        let out = to_share_frame(&rgba, 641, 481).unwrap();
        assert_eq!((out.width, out.height), (640, 480));
        assert!(to_share_frame(&rgba[..100], 641, 481).is_none());
        assert!(to_share_frame(&rgba, 1, 1).is_none());
        assert!(to_share_frame(&[], 0, 0).is_none());
    }

    #[test]
    fn a_window_title_loses_control_and_direction_characters() {
        assert_eq!(label("  Notes\u{202e}txt.exe\n "), "Notestxt.exe");
        assert_eq!(label(&"x".repeat(500)).len(), 200);
    }

    #[test]
    fn a_thumbnail_is_at_most_as_wide_as_asked() {
        let f = pattern::numbered(1280, 800, 1);
        let t = thumb(&rgba_of(&f), 1280, 800, 320).unwrap();
        assert_eq!((t.width, t.height), (320, 200));
        let t = thumb(&rgba_of(&f), 1280, 800, 300).unwrap();
        assert!(t.width <= 300 && t.width >= 250, "{}", t.width);
    }
}
