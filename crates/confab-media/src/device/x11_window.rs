//! A window's own picture on X11, covered or not. xcap reads a window with `GetImage` on the
//! window itself, which without a compositing manager gives whatever covers it (black, or the
//! other window); here the X server keeps the window's picture off screen for us (the
//! Composite extension, redirected "automatically": it still shows on screen as before), and
//! the picture is read from that. Falls back to xcap where the extension is missing.

use xcb::{composite, x, XidNew};

pub(super) struct Composited {
    conn: xcb::Connection,
    window: x::Window,
}

impl Composited {
    /// `None` when there is no X server here or it has no Composite 0.2 or later.
    pub(super) fn open(id: u32) -> Option<Self> {
        let (conn, _) =
            xcb::Connection::connect_with_extensions(None, &[xcb::Extension::Composite], &[])
                .ok()?;
        let version = conn
            .wait_for_reply(conn.send_request(&composite::QueryVersion {
                client_major_version: 0,
                client_minor_version: 4,
            }))
            .ok()?;
        if (version.major_version(), version.minor_version()) < (0, 2) {
            return None;
        }
        // An id the X server gave out (xcap listed it); a wrong one is refused right here.
        let window = x::Window::new(id);
        conn.send_and_check_request(&composite::RedirectWindow {
            window,
            update: composite::Redirect::Automatic,
        })
        .ok()?;
        // Where it was covered its picture off screen starts blank, until it paints there
        // again (the X server asks it to: an Expose for what was not kept).
        Some(Composited { conn, window })
    }

    /// The window's pixels (RGBA, width, height); `None` once it is gone, or in a format this
    /// does not read.
    pub(super) fn capture(&self) -> Option<(Vec<u8>, usize, usize)> {
        let geometry = self
            .conn
            .wait_for_reply(self.conn.send_request(&x::GetGeometry {
                drawable: x::Drawable::Window(self.window),
            }))
            .ok()?;
        if !matches!(geometry.depth(), 24 | 32) {
            return None;
        }
        let (w, h) = (geometry.width(), geometry.height());
        let pixmap: x::Pixmap = self.conn.generate_id();
        self.conn
            .send_and_check_request(&composite::NameWindowPixmap {
                window: self.window,
                pixmap,
            })
            .ok()?;
        let image = self
            .conn
            .wait_for_reply(self.conn.send_request(&x::GetImage {
                format: x::ImageFormat::ZPixmap,
                drawable: x::Drawable::Pixmap(pixmap),
                x: 0,
                y: 0,
                width: w,
                height: h,
                plane_mask: u32::MAX,
            }));
        self.conn.send_request(&x::FreePixmap { pixmap });
        let image = image.ok()?;
        let (w, h) = (usize::from(w), usize::from(h));
        let data = image.data();
        // Depth 24 and 32 come as 32 bits a pixel, blue first (the X servers Confab runs on
        // are little-endian).
        if w == 0 || h == 0 || data.len() < w * h * 4 {
            return None;
        }
        let mut rgba = vec![0u8; w * h * 4];
        for (o, i) in rgba.chunks_exact_mut(4).zip(data.chunks_exact(4)) {
            o.copy_from_slice(&[i[2], i[1], i[0], 255]);
        }
        Some((rgba, w, h))
    }
}
