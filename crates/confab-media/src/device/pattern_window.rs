//! A window painted with the test pattern, numbered and repainted at a steady rate: what tests
//! (and demos) share to prove that a real screen or window capture carries a readable, moving
//! picture end to end. Plain X11 (xcb), so it runs under Xvfb; Linux only. It asks the window
//! manager to keep it above other windows (`_NET_WM_STATE_ABOVE`).

use super::worker::Worker;
use crate::frame::now_us;
use crate::{convert, pattern, MediaError};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use xcb::{x, Xid};

/// Rows sent in one PutImage request: well under the core protocol's 256 KiB request limit.
const ROWS_PER_REQUEST: usize = 32;

/// An open pattern window; closed when dropped.
pub struct PatternWindow {
    /// The X window id, as screen capture lists it (`window:ID`).
    pub id: u32,
    /// The frame number painted last.
    painted: Arc<AtomicU32>,
    display: Option<String>,
    window: x::Window,
    _painter: Worker,
}

fn x_error(e: impl std::fmt::Display) -> MediaError {
    MediaError::Device(format!("pattern window: {e}"))
}

impl PatternWindow {
    /// Opens a `width`×`height` window called `title` on `display` (`None`: `$DISPLAY`) at
    /// `x`,`y` and paints pattern frame 0, 1, 2, … at `fps`.
    pub fn open(
        display: Option<&str>,
        title: &str,
        (x, y): (i16, i16),
        (width, height): (u16, u16),
        fps: f32,
    ) -> Result<Self, MediaError> {
        let (w, h) = (usize::from(width) & !1, usize::from(height) & !1);
        if w < pattern::MIN_WIDTH || h < pattern::MIN_HEIGHT {
            return Err(MediaError::Device(format!(
                "a pattern window needs at least {}x{}",
                pattern::MIN_WIDTH,
                pattern::MIN_HEIGHT
            )));
        }
        let (conn, screen_num) = xcb::Connection::connect(display).map_err(x_error)?;
        let (window, gc, depth) = {
            let setup = conn.get_setup();
            let screen = setup
                .roots()
                .nth(usize::try_from(screen_num).unwrap_or(0))
                .ok_or_else(|| x_error("no screen"))?;
            if screen.root_depth() != 24 {
                return Err(x_error(format!(
                    "needs a 24-bit screen, this one has {} bits",
                    screen.root_depth()
                )));
            }
            let window: x::Window = conn.generate_id();
            conn.send_request(&x::CreateWindow {
                depth: x::COPY_FROM_PARENT as u8,
                wid: window,
                parent: screen.root(),
                x,
                y,
                width: w as u16,
                height: h as u16,
                border_width: 0,
                class: x::WindowClass::InputOutput,
                visual: screen.root_visual(),
                value_list: &[x::Cw::BackPixel(screen.black_pixel())],
            });
            let gc: x::Gcontext = conn.generate_id();
            conn.send_request(&x::CreateGc {
                cid: gc,
                drawable: x::Drawable::Window(window),
                value_list: &[],
            });
            (window, gc, screen.root_depth())
        };
        let atom = |name: &[u8]| -> Result<x::Atom, MediaError> {
            let cookie = conn.send_request(&x::InternAtom {
                only_if_exists: false,
                name,
            });
            Ok(conn.wait_for_reply(cookie).map_err(x_error)?.atom())
        };
        let (net_wm_name, utf8) = (atom(b"_NET_WM_NAME")?, atom(b"UTF8_STRING")?);
        // Kept above other windows: without a compositor, X11 has no picture of the covered
        // parts of a window, and a test device should be seen whole.
        let (state, above) = (atom(b"_NET_WM_STATE")?, atom(b"_NET_WM_STATE_ABOVE")?);
        conn.send_request(&x::ChangeProperty {
            mode: x::PropMode::Replace,
            window,
            property: state,
            r#type: x::ATOM_ATOM,
            data: &[above],
        });
        for (property, kind, data) in [
            (x::ATOM_WM_NAME, x::ATOM_STRING, title.as_bytes()),
            (net_wm_name, utf8, title.as_bytes()),
            (
                x::ATOM_WM_CLASS,
                x::ATOM_STRING,
                b"confab-pattern\0Confab-pattern\0".as_slice(),
            ),
        ] {
            conn.send_request(&x::ChangeProperty {
                mode: x::PropMode::Replace,
                window,
                property,
                r#type: kind,
                data,
            });
        }
        conn.send_request(&x::MapWindow { window });
        conn.flush().map_err(x_error)?;
        let id = window.resource_id();
        let painted = Arc::new(AtomicU32::new(0));
        let count = painted.clone();
        let painter = Worker::spawn("pattern window", move |stop| {
            paint_loop(&conn, window, gc, depth, (w, h), fps, &count, stop);
            conn.send_request(&x::DestroyWindow { window });
            let _ = conn.flush();
        })?;
        Ok(PatternWindow {
            id,
            painted,
            display: display.map(str::to_owned),
            window,
            _painter: painter,
        })
    }

    /// Where the window's picture is on the screen now (a window manager places windows as it
    /// likes), asked of the X server.
    pub fn position(&self) -> Result<(i32, i32), MediaError> {
        let (conn, screen_num) =
            xcb::Connection::connect(self.display.as_deref()).map_err(x_error)?;
        let root = conn
            .get_setup()
            .roots()
            .nth(usize::try_from(screen_num).unwrap_or(0))
            .ok_or_else(|| x_error("no screen"))?
            .root();
        let cookie = conn.send_request(&x::TranslateCoordinates {
            src_window: self.window,
            dst_window: root,
            src_x: 0,
            src_y: 0,
        });
        let reply = conn.wait_for_reply(cookie).map_err(x_error)?;
        Ok((i32::from(reply.dst_x()), i32::from(reply.dst_y())))
    }

    /// The frame number painted last.
    pub fn painted(&self) -> u32 {
        self.painted.load(Ordering::Relaxed)
    }
}

#[allow(clippy::too_many_arguments)]
fn paint_loop(
    conn: &xcb::Connection,
    window: x::Window,
    gc: x::Gcontext,
    depth: u8,
    (w, h): (usize, usize),
    fps: f32,
    painted: &AtomicU32,
    stop: &AtomicBool,
) {
    let period = Duration::from_secs_f64(1.0 / f64::from(fps.clamp(0.5, 60.0)));
    // Each picture is put together off screen and shown with one request: painted straight
    // onto the window in strips, a compositor (XWayland) could show half of one picture and
    // half of the next, and a capture read a torn pattern.
    let pixmap: x::Pixmap = conn.generate_id();
    conn.send_request(&x::CreatePixmap {
        depth,
        pid: pixmap,
        drawable: x::Drawable::Window(window),
        width: w as u16,
        height: h as u16,
    });
    let start = Instant::now();
    let mut n = 0u32;
    while !stop.load(Ordering::Relaxed) {
        let ts = now_us();
        let frame = pattern::frame(
            w,
            h,
            pattern::Stamp {
                frame: n,
                capture_us: ts as u32,
            },
            ts,
        );
        // 24-bit ZPixmap on a little-endian server: B, G, R, pad.
        let mut bgrx = convert::to_rgba(&frame);
        for px in bgrx.chunks_exact_mut(4) {
            px.swap(0, 2);
        }
        for (strip, rows) in bgrx.chunks(w * 4 * ROWS_PER_REQUEST).enumerate() {
            conn.send_request(&x::PutImage {
                format: x::ImageFormat::ZPixmap,
                drawable: x::Drawable::Pixmap(pixmap),
                gc,
                width: w as u16,
                height: (rows.len() / (w * 4)) as u16,
                dst_x: 0,
                dst_y: (strip * ROWS_PER_REQUEST) as i16,
                left_pad: 0,
                depth,
                data: rows,
            });
        }
        conn.send_request(&x::CopyArea {
            src_drawable: x::Drawable::Pixmap(pixmap),
            dst_drawable: x::Drawable::Window(window),
            gc,
            src_x: 0,
            src_y: 0,
            dst_x: 0,
            dst_y: 0,
            width: w as u16,
            height: h as u16,
        });
        if conn.flush().is_err() {
            break;
        }
        painted.store(n, Ordering::Relaxed);
        n = n.wrapping_add(1);
        let due = start + period * n;
        let now = Instant::now();
        if due > now {
            std::thread::sleep(due - now);
        }
    }
    conn.send_request(&x::FreePixmap { pixmap });
}
