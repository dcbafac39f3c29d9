//! The window's native video surface (Linux): the call's tiles are holes in a transparent
//! page, and their pictures are painted under the page by GTK, one drawing area per tile,
//! where the window says each tile is. WebKit then paints only what changes in the page (a
//! name, a button), not a large picture 30 times a second: WebKit decoding and painting each
//! picture was most of the app's CPU in a call (see README, `bench app`).
//!
//! Needs WebKit to composite with its DMA-BUF renderer: without compositing a transparent page
//! shows black over other widgets, and the older X11 renderer never clears what the page no
//! longer covers (the join screen stays on the screen behind the call). So it is used unless
//! either is turned off (`WEBKIT_DISABLE_COMPOSITING_MODE`, `WEBKIT_DISABLE_DMABUF_RENDERER`,
//! a common workaround for some GPU drivers) or the user turns it off (`--no-native-video`);
//! the window then falls back to its streams (`crate::frames`).
//!
//! Threads: the window's commands (any thread) and the frames thread only write [`Shared`]
//! and ask the GTK main thread to apply it; the widgets live on that thread alone.

use crate::frames::{Picture, Surface, UiFrames};
use serde::Deserialize;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};

/// Where the window shows a tile, in the page's CSS pixels (GTK's logical pixels).
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Place {
    pub x: f64,
    pub y: f64,
    pub width: f64,
    pub height: f64,
    /// The tile's rounded corners.
    #[serde(default)]
    pub radius: f64,
    /// Painted mirrored (the self view).
    #[serde(default)]
    pub mirror: bool,
    /// Stacking: a higher tile is painted over a lower one (the floating self view).
    #[serde(default)]
    pub z: i32,
}

/// Larger than any screen: a place beyond it is not one.
const MAX_EXTENT: f64 = 32_768.0;
/// Tiles the surface keeps at most (the window shows fewer).
const MAX_TILES: usize = 64;

impl Place {
    /// A place the window could mean: finite, on a plausible screen, not empty.
    pub fn check(&self) -> Result<(), &'static str> {
        let all = [self.x, self.y, self.width, self.height, self.radius];
        if all.iter().any(|v| !v.is_finite()) {
            return Err("a tile's place must be numbers");
        }
        if self.x.abs() > MAX_EXTENT || self.y.abs() > MAX_EXTENT {
            return Err("that tile is off any screen");
        }
        if !(1.0..=MAX_EXTENT).contains(&self.width) || !(1.0..=MAX_EXTENT).contains(&self.height) {
            return Err("that is not a tile's size");
        }
        if !(0.0..=MAX_EXTENT).contains(&self.radius) || self.z.abs() > 1000 {
            return Err("that is not a tile's shape");
        }
        Ok(())
    }
}

/// What the window said, and the pictures not yet painted: written from any thread.
#[derive(Default)]
struct State {
    /// Each tile the surface paints, and where (`None`: not shown now).
    places: HashMap<String, Option<Place>>,
    /// The newest picture of each tile, not yet taken to the main thread.
    next: HashMap<String, Picture>,
    /// The page's background and a tile's, RGB.
    page: [u8; 3],
    tile: [u8; 3],
}

struct Shared {
    state: Mutex<State>,
    /// The main thread has been asked to apply the state and has not yet.
    asked: AtomicBool,
    /// The widgets are in place.
    ready: AtomicBool,
    frames: Weak<UiFrames>,
    /// A benchmark measures: each remote picture's pattern is read as it is painted.
    measure: bool,
}

/// The surface as the rest of the app sees it (any thread).
pub struct NativeVideo {
    shared: Arc<Shared>,
}

impl NativeVideo {
    /// The widgets are in place: the window may make holes for its tiles.
    pub fn ready(&self) -> bool {
        self.shared.ready.load(Ordering::Acquire)
    }

    /// The window shows this tile there (`None`: it does not show it now, or it went).
    pub fn place(&self, key: &str, place: Option<Place>) {
        {
            let mut s = lock(&self.shared.state);
            if s.places.len() >= MAX_TILES && !s.places.contains_key(key) {
                // Tiles the window no longer shows go first.
                s.places.retain(|_, p| p.is_some());
                if s.places.len() >= MAX_TILES {
                    return;
                }
            }
            s.places.insert(key.to_owned(), place);
        }
        self.shared.ask();
    }

    /// The tile went: its area goes.
    pub fn remove(&self, key: &str) {
        {
            let mut s = lock(&self.shared.state);
            s.places.remove(key);
            s.next.remove(key);
        }
        self.shared.ask();
    }

    /// The page's colors: its background (painted where the page is transparent outside the
    /// tiles) and a tile's (around a picture of another shape).
    pub fn colors(&self, page: [u8; 3], tile: [u8; 3]) {
        {
            let mut s = lock(&self.shared.state);
            s.page = page;
            s.tile = tile;
        }
        self.shared.ask();
    }
}

impl Surface for NativeVideo {
    fn show(&self, key: &str, picture: Picture) -> bool {
        let replaced = {
            let mut s = lock(&self.shared.state);
            if !matches!(s.places.get(key), Some(Some(_))) {
                return false;
            }
            s.next.insert(key.to_owned(), picture).is_some()
        };
        if replaced {
            if let Some(f) = self.shared.frames.upgrade() {
                f.dropped(key);
            }
        }
        self.shared.ask();
        true
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Shared {
    fn ask(self: &Arc<Self>) {
        #[cfg(target_os = "linux")]
        if !self.asked.swap(true, Ordering::AcqRel) {
            let me = self.clone();
            gtk::glib::MainContext::default().invoke(move || gtk_side::apply(&me));
        }
    }
}

/// Whether this window can have a native surface: on Linux, unless WebKit's compositing or
/// its DMA-BUF renderer is turned off (see the module's notes).
pub fn wanted() -> bool {
    let off = |var| std::env::var(var).is_ok_and(|v| v != "0");
    cfg!(target_os = "linux")
        && !off("WEBKIT_DISABLE_COMPOSITING_MODE")
        && !off("WEBKIT_DISABLE_DMABUF_RENDERER")
}

/// Puts the surface under the window's page (on the main thread, soon) and returns it; the
/// frames go to it once it is [`NativeVideo::ready`]. `None` where there is none.
pub fn install(
    window: &tauri::WebviewWindow,
    frames: &Arc<UiFrames>,
    measure: bool,
) -> Option<Arc<NativeVideo>> {
    let shared = Arc::new(Shared {
        state: Mutex::new(State {
            page: [0xf4, 0xf5, 0xfa],
            tile: [0x1a, 0x1d, 0x29],
            ..State::default()
        }),
        asked: AtomicBool::new(false),
        ready: AtomicBool::new(false),
        frames: Arc::downgrade(frames),
        measure,
    });
    #[cfg(target_os = "linux")]
    {
        let s = shared.clone();
        if let Err(e) = window.with_webview(move |w| gtk_side::install(&s, w.inner())) {
            tracing::warn!("no native video surface: {e}");
            return None;
        }
        let native = Arc::new(NativeVideo { shared });
        frames.set_surface(native.clone());
        Some(native)
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = (window, shared);
        None
    }
}

#[cfg(target_os = "linux")]
mod gtk_side {
    use super::{lock, Place, Shared};
    use confab_media::pattern::Stamp;
    use gtk::cairo;
    use gtk::prelude::*;
    use std::cell::{Cell, RefCell};
    use std::collections::HashMap;
    use std::rc::Rc;
    use std::sync::atomic::Ordering;
    use std::sync::Arc;
    use webkit2gtk::{SettingsExt, WebViewExt};

    /// One tile's drawing area and what it paints.
    struct Area {
        da: gtk::DrawingArea,
        place: Rc<Cell<Option<Place>>>,
        picture: Rc<RefCell<Option<cairo::ImageSurface>>>,
        /// The picture has not been painted yet.
        fresh: Rc<Cell<bool>>,
        /// A benchmark measures: the picture's test-pattern stamp.
        stamp: Rc<Cell<Option<Stamp>>>,
    }

    struct Widgets {
        under: gtk::Fixed,
        page: Rc<Cell<[u8; 3]>>,
        tile: Rc<Cell<[u8; 3]>>,
        areas: HashMap<String, Area>,
        /// The tiles in the order they are stacked (lowest first).
        order: Vec<String>,
    }

    thread_local! {
        static WIDGETS: RefCell<Option<Widgets>> = const { RefCell::new(None) };
    }

    /// Moves the page over a fixed container of drawing areas: the window's box held the
    /// page; it now holds an overlay with the container under the (transparent) page.
    pub(super) fn install(shared: &Arc<Shared>, webview: webkit2gtk::WebView) {
        let Some(parent) = webview.parent().and_then(|p| p.downcast::<gtk::Box>().ok()) else {
            tracing::warn!("no native video surface: the page is not where it was expected");
            return;
        };
        if let Some(settings) = WebViewExt::settings(&webview) {
            settings
                .set_hardware_acceleration_policy(webkit2gtk::HardwareAccelerationPolicy::Always);
        }
        webview.set_background_color(&gtk::gdk::RGBA::new(0.0, 0.0, 0.0, 0.0));
        let under = gtk::Fixed::new();
        let page = Rc::new(Cell::new([0u8; 3]));
        let p = page.clone();
        under.connect_draw(move |_, cr| {
            let [r, g, b] = p.get();
            cr.set_source_rgb(
                f64::from(r) / 255.0,
                f64::from(g) / 255.0,
                f64::from(b) / 255.0,
            );
            let _ = cr.paint();
            gtk::glib::Propagation::Proceed
        });
        let overlay = gtk::Overlay::new();
        parent.remove(&webview);
        overlay.add(&under);
        overlay.add_overlay(&webview);
        parent.pack_start(&overlay, true, true, 0);
        overlay.show_all();
        webview.grab_focus();
        WIDGETS.with(|w| {
            *w.borrow_mut() = Some(Widgets {
                under,
                page,
                tile: Rc::new(Cell::new([0u8; 3])),
                areas: HashMap::new(),
                order: Vec::new(),
            })
        });
        shared.ready.store(true, Ordering::Release);
        tracing::info!("video is painted on a native surface under the page");
        apply(shared);
    }

    /// Brings the widgets in line with what the window said and hands them new pictures.
    pub(super) fn apply(shared: &Arc<Shared>) {
        shared.asked.store(false, Ordering::Release);
        let (places, next, page, tile) = {
            let mut s = lock(&shared.state);
            (
                s.places.clone(),
                std::mem::take(&mut s.next),
                s.page,
                s.tile,
            )
        };
        WIDGETS.with(|w| {
            let mut w = w.borrow_mut();
            let Some(w) = w.as_mut() else { return };
            if w.page.get() != page {
                w.page.set(page);
                w.under.queue_draw();
            }
            w.tile.set(tile);
            // Tiles that went.
            let gone: Vec<String> = w
                .areas
                .keys()
                .filter(|k| !places.contains_key(*k))
                .cloned()
                .collect();
            for k in gone {
                if let Some(a) = w.areas.remove(&k) {
                    w.under.remove(&a.da);
                }
                w.order.retain(|o| *o != k);
            }
            for (key, place) in &places {
                if !w.areas.contains_key(key) {
                    let area = new_area(shared, key, w.tile.clone());
                    w.under.put(&area.da, 0, 0);
                    w.areas.insert(key.clone(), area);
                    w.order.push(key.clone());
                }
                let a = &w.areas[key];
                match place {
                    Some(p) => {
                        w.under.move_(&a.da, p.x.round() as i32, p.y.round() as i32);
                        a.da.set_size_request(p.width.round() as i32, p.height.round() as i32);
                        if a.place.get().map(|o| (o.radius, o.mirror)) != Some((p.radius, p.mirror))
                        {
                            a.da.queue_draw();
                        }
                        a.da.show();
                    }
                    None => a.da.hide(),
                }
                a.place.set(*place);
            }
            // Stacking: GtkFixed paints its children in the order they were put.
            let z = |k: &String| places.get(k).copied().flatten().map_or(0, |p| p.z);
            let mut wanted = w.order.clone();
            wanted.sort_by_key(z);
            if wanted != w.order {
                for k in &wanted {
                    let da = w.areas[k].da.clone();
                    w.under.remove(&da);
                    let p = places.get(k).copied().flatten();
                    let (x, y) = p.map_or((0, 0), |p| (p.x.round() as i32, p.y.round() as i32));
                    w.under.put(&da, x, y);
                    if p.is_none() {
                        da.hide();
                    }
                }
                w.order = wanted;
            }
            for (key, picture) in next {
                let Some(a) = w.areas.get(&key) else { continue };
                let remote = !key.starts_with("local") && !key.starts_with("share:");
                a.stamp.set(None);
                if shared.measure && remote {
                    a.stamp.set(read_stamp(&picture));
                }
                let stride = picture.width * 4;
                let surface = cairo::ImageSurface::create_for_data(
                    picture.bgrx,
                    cairo::Format::Rgb24,
                    picture.width as i32,
                    picture.height as i32,
                    stride as i32,
                );
                match surface {
                    Ok(s) => {
                        if a.fresh.replace(true) {
                            // The last one was never painted (the area is not showing).
                            if let Some(f) = shared.frames.upgrade() {
                                f.dropped(&key);
                            }
                        }
                        *a.picture.borrow_mut() = Some(s);
                        a.da.queue_draw();
                    }
                    Err(e) => {
                        tracing::debug!("a picture the surface cannot hold: {e}");
                        if let Some(f) = shared.frames.upgrade() {
                            f.dropped(&key);
                        }
                    }
                }
            }
        });
    }

    fn new_area(shared: &Arc<Shared>, key: &str, tile: Rc<Cell<[u8; 3]>>) -> Area {
        let da = gtk::DrawingArea::new();
        let area = Area {
            da: da.clone(),
            place: Rc::new(Cell::new(None)),
            picture: Rc::new(RefCell::new(None)),
            fresh: Rc::new(Cell::new(false)),
            stamp: Rc::new(Cell::new(None)),
        };
        let (place, picture, fresh, stamp) = (
            area.place.clone(),
            area.picture.clone(),
            area.fresh.clone(),
            area.stamp.clone(),
        );
        let shared = Arc::downgrade(shared);
        let key = key.to_owned();
        da.connect_draw(move |da, cr| {
            let (w, h) = (
                f64::from(da.allocated_width()),
                f64::from(da.allocated_height()),
            );
            let p = place.get();
            paint(cr, w, h, p, tile.get(), picture.borrow().as_ref());
            if fresh.replace(false) {
                if let Some(shared) = shared.upgrade() {
                    if let Some(f) = shared.frames.upgrade() {
                        if let Some(ms) = stamp.take().and_then(age_ms) {
                            f.drawn_latency(ms);
                        }
                        f.painted(&key);
                    }
                }
            }
            gtk::glib::Propagation::Stop
        });
        area
    }

    /// The tile: its color inside its rounded corners, the picture fitted inside (as the
    /// page's `object-fit: contain`), mirrored for the self view.
    fn paint(
        cr: &cairo::Context,
        w: f64,
        h: f64,
        place: Option<Place>,
        tile: [u8; 3],
        picture: Option<&cairo::ImageSurface>,
    ) {
        let radius = place.map_or(0.0, |p| p.radius).min(w / 2.0).min(h / 2.0);
        if radius > 0.0 {
            use std::f64::consts::{FRAC_PI_2, PI};
            cr.new_sub_path();
            cr.arc(w - radius, radius, radius, -FRAC_PI_2, 0.0);
            cr.arc(w - radius, h - radius, radius, 0.0, FRAC_PI_2);
            cr.arc(radius, h - radius, radius, FRAC_PI_2, PI);
            cr.arc(radius, radius, radius, PI, 3.0 * FRAC_PI_2);
            cr.close_path();
            cr.clip();
        }
        let [r, g, b] = tile;
        cr.set_source_rgb(
            f64::from(r) / 255.0,
            f64::from(g) / 255.0,
            f64::from(b) / 255.0,
        );
        let _ = cr.paint();
        let Some(pic) = picture else { return };
        let (pw, ph) = (f64::from(pic.width()), f64::from(pic.height()));
        if pw < 1.0 || ph < 1.0 {
            return;
        }
        let scale = (w / pw).min(h / ph);
        let (dw, dh) = (pw * scale, ph * scale);
        let (x, y) = ((w - dw) / 2.0, (h - dh) / 2.0);
        if place.is_some_and(|p| p.mirror) {
            cr.translate(x + dw, y);
            cr.scale(-scale, scale);
        } else {
            cr.translate(x, y);
            cr.scale(scale, scale);
        }
        if cr.set_source_surface(pic, 0.0, 0.0).is_ok() {
            // A picture the size it is shown (the frames thread sizes it so) needs no filter.
            let device = scale * cr.target().device_scale().0.max(1.0);
            if (device - 1.0).abs() < 0.02 {
                cr.source().set_filter(cairo::Filter::Fast);
            }
            let _ = cr.paint();
        }
    }

    /// A benchmark's reading: the test pattern's stamp in a picture about to be painted.
    fn read_stamp(pic: &super::Picture) -> Option<Stamp> {
        confab_media::pattern::read_bgrx(&pic.bgrx, pic.width, pic.height)
    }

    /// How long ago the stamped picture was captured, as it is painted.
    fn age_ms(stamp: Stamp) -> Option<f64> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .ok()?
            .as_micros() as u64;
        stamp.age_us(now).map(|us| f64::from(us) / 1000.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn place() -> Place {
        Place {
            x: 16.0,
            y: 60.0,
            width: 800.0,
            height: 450.0,
            radius: 14.0,
            mirror: false,
            z: 0,
        }
    }

    #[test]
    fn a_place_from_the_window_is_checked() {
        assert!(place().check().is_ok());
        for bad in [
            Place {
                width: f64::NAN,
                ..place()
            },
            Place {
                x: f64::INFINITY,
                ..place()
            },
            Place {
                width: 0.0,
                ..place()
            },
            Place {
                height: 1e9,
                ..place()
            },
            Place { y: -1e7, ..place() },
            Place {
                radius: -1.0,
                ..place()
            },
            Place {
                z: 1_000_000,
                ..place()
            },
        ] {
            assert!(bad.check().is_err(), "{bad:?}");
        }
        // From the window's JSON: unknown fields are refused, shape fields may be left out.
        let p: Place =
            serde_json::from_str(r#"{"x":1,"y":2,"width":3,"height":4}"#).expect("a place");
        assert_eq!((p.radius, p.mirror, p.z), (0.0, false, 0));
        assert!(
            serde_json::from_str::<Place>(r#"{"x":1,"y":2,"width":3,"height":4,"q":1}"#).is_err()
        );
    }
}
