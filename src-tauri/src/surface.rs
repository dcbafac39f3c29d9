//! The window's native video surface (Linux): the call's tiles are holes in a transparent
//! page, and their pictures are painted under the page by GTK where the window says each
//! tile is ([`Place`]). WebKit then paints only what changes in the page (a name, a button),
//! not a large picture 30 times a second: WebKit decoding and painting each picture was most
//! of the app's CPU in a call (see README, `bench app`).
//!
//! Needs WebKit to composite with its DMA-BUF renderer: without compositing a transparent page
//! shows black over other widgets, and the older X11 renderer never clears what the page no
//! longer covers (the join screen stays on the screen behind the call). So it is used unless
//! either is turned off (`WEBKIT_DISABLE_COMPOSITING_MODE`, `WEBKIT_DISABLE_DMABUF_RENDERER`,
//! a common workaround for some GPU drivers) or the user turns it off (`--no-native-video`);
//! the window then falls back to its streams (`crate::frames`).
//!
//! Threads: the window's commands (any thread) and the frames thread only write [`Shared`]
//! and ask the GTK main thread to apply it; the widgets live on that thread alone. One drawing
//! area under the page paints the page's background and every tile; a new picture repaints
//! only its tile's rectangle.

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
        if !(0.0..=MAX_EXTENT).contains(&self.radius) || !(-1000..=1000).contains(&self.z) {
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
    /// The window said something of the places since the main thread last took them.
    said: bool,
    /// The newest picture of each tile, not yet taken to the main thread.
    next: HashMap<String, Picture>,
    /// The page's background and a tile's, RGB.
    page: [u8; 3],
    tile: [u8; 3],
}

struct Shared {
    state: Mutex<State>,
    /// The main thread has been asked to apply the state and has not yet. (Only Linux has
    /// the surface's main-thread side; elsewhere `install` gives none.)
    #[cfg_attr(not(target_os = "linux"), allow(dead_code))]
    asked: AtomicBool,
    /// The widgets are in place.
    ready: AtomicBool,
    frames: Weak<UiFrames>,
    /// A benchmark measures: each remote picture's pattern is read as it is painted.
    #[cfg_attr(not(target_os = "linux"), allow(dead_code))]
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

    /// The window paints this tile natively from now on (`tile_way native`, taken): only
    /// such a tile is ever placed.
    pub fn adopt(&self, key: &str) {
        self.place_if(key, None, true);
    }

    /// The window shows this tile there (`None`: it does not show it now). A place for a tile
    /// that does not take the native way (one that went, a word from before the window opened
    /// its video again, taken late) changes nothing.
    pub fn place(&self, key: &str, place: Option<Place>) {
        self.place_if(key, place, false);
    }

    fn place_if(&self, key: &str, place: Option<Place>, new: bool) {
        let mut unpainted = Vec::new();
        {
            let mut s = lock(&self.shared.state);
            if new && s.places.len() >= MAX_TILES && !s.places.contains_key(key) {
                // Tiles the window no longer shows go first.
                let hidden: Vec<String> = s
                    .places
                    .iter()
                    .filter(|(_, p)| p.is_none())
                    .map(|(k, _)| k.clone())
                    .collect();
                for k in hidden {
                    s.places.remove(&k);
                    if s.next.remove(&k).is_some() {
                        unpainted.push(k);
                    }
                }
            }
            s.said = true;
            let room = s.places.len() < MAX_TILES;
            match s.places.get_mut(key) {
                // (Adopted again: where it was stays.)
                Some(_) if new => {}
                Some(p) => *p = place,
                None if new && room => {
                    s.places.insert(key.to_owned(), place);
                }
                None => {}
            }
        }
        self.shared.dropped(&unpainted);
        self.shared.ask();
    }

    /// The tile went, or no longer takes this way: nothing is painted for it any more.
    pub fn remove(&self, key: &str) {
        let unpainted = {
            let mut s = lock(&self.shared.state);
            s.said = true;
            s.places.remove(key);
            s.next.remove(key).is_some()
        };
        if unpainted {
            self.shared.dropped(&[key.to_owned()]);
        }
        self.shared.ask();
    }

    /// The window opened its video again: it says anew which tiles are where. (The pictures
    /// waiting are not given back one by one: opening again forgets every tile's count.)
    pub fn clear(&self) {
        {
            let mut s = lock(&self.shared.state);
            s.said = true;
            s.places.clear();
            s.next.clear();
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
            self.shared.dropped(&[key.to_owned()]);
        }
        self.shared.ask();
        true
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Shared {
    fn new(frames: &Arc<UiFrames>, measure: bool) -> Arc<Self> {
        Arc::new(Shared {
            state: Mutex::new(State {
                page: [0xf4, 0xf5, 0xfa],
                tile: [0x1a, 0x1d, 0x29],
                ..State::default()
            }),
            asked: AtomicBool::new(false),
            ready: AtomicBool::new(false),
            frames: Arc::downgrade(frames),
            measure,
        })
    }

    /// Pictures of these tiles went unpainted: the next ones may come.
    fn dropped(&self, keys: &[String]) {
        if let Some(f) = self.frames.upgrade() {
            for k in keys {
                f.dropped(k);
            }
        }
    }

    /// Asks the main thread to apply the state (once the widgets are there: `install` applies
    /// what was said before).
    fn ask(self: &Arc<Self>) {
        #[cfg(target_os = "linux")]
        if self.ready.load(Ordering::Acquire) && !self.asked.swap(true, Ordering::AcqRel) {
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

/// Where the machine has no usable GPU (no DRM render node this user may open: a headless
/// server or CI machine, a container without the GPU passed in; or `LIBGL_ALWAYS_SOFTWARE`
/// set), WebKit's GL is Mesa's software rasterizer, and Skia painting the page through it only
/// costs memory: measured in a 720p call under Xvfb, the web process's PSS 198 -> 165 MiB with
/// Skia's CPU rendering, its CPU the same (1.3-1.5 % of a core). So the app asks for CPU
/// rendering there, before WebKit starts (its web process inherits the environment; call this
/// first thing in `main`, before any thread exists). A value the user set is kept. Not told
/// apart: a virtual GPU with a render node but no 3D (Mesa renders in software anyway).
pub fn paint_on_the_cpu_without_a_gpu() {
    const VAR: &str = "WEBKIT_SKIA_ENABLE_CPU_RENDERING";
    let software = std::env::var("LIBGL_ALWAYS_SOFTWARE").ok();
    if cfg!(target_os = "linux")
        && cpu_painting_wanted(std::env::var_os(VAR).is_some(), software.as_deref(), || {
            has_render_node(std::path::Path::new("/dev/dri"))
        })
    {
        std::env::set_var(VAR, "1");
    }
}

/// The rule of [`paint_on_the_cpu_without_a_gpu`]: never over the user's own setting; on the
/// CPU when GL is forced into software (`LIBGL_ALWAYS_SOFTWARE`, any value but "0") or no
/// render node can be opened (`gpu`, only looked at when it matters).
fn cpu_painting_wanted(user_set: bool, software: Option<&str>, gpu: impl FnOnce() -> bool) -> bool {
    !user_set && (software.is_some_and(|v| v != "0") || !gpu())
}

/// Whether `dri` (`/dev/dri`) holds a render node (`renderD128`, ...) this user may open for
/// reading and writing, as Mesa would: a GPU that renders for us. (Opening one does nothing.)
fn has_render_node(dri: &std::path::Path) -> bool {
    std::fs::read_dir(dri).is_ok_and(|entries| {
        entries.flatten().any(|e| {
            e.file_name().to_string_lossy().starts_with("renderD")
                && std::fs::OpenOptions::new()
                    .read(true)
                    .write(true)
                    .open(e.path())
                    .is_ok()
        })
    })
}

/// Puts the surface under the window's page (on the main thread, soon) and returns it; the
/// frames go to it once it is [`NativeVideo::ready`]. `None` where there is none.
pub fn install(
    window: &tauri::WebviewWindow,
    frames: &Arc<UiFrames>,
    measure: bool,
) -> Option<Arc<NativeVideo>> {
    let shared = Shared::new(frames, measure);
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
    use std::cell::RefCell;
    use std::collections::HashMap;
    use std::rc::Rc;
    use std::sync::atomic::Ordering;
    use std::sync::{Arc, Weak};
    use webkit2gtk::{SettingsExt, WebViewExt};

    /// One tile as the main thread paints it.
    #[derive(Default)]
    struct Tile {
        place: Option<Place>,
        picture: Option<cairo::ImageSurface>,
        /// The picture has not been painted yet.
        fresh: bool,
        /// A benchmark measures: the picture's test-pattern stamp.
        stamp: Option<Stamp>,
    }

    /// What the one drawing area under the page paints: the page's background, and each
    /// tile in its place (one area for all: areas of their own would each ask the window for
    /// room, and a tile reaching past the window would keep it from getting smaller).
    #[derive(Default)]
    struct Canvas {
        page: [u8; 3],
        tile: [u8; 3],
        tiles: HashMap<String, Tile>,
    }

    struct Widgets {
        area: gtk::DrawingArea,
        canvas: Rc<RefCell<Canvas>>,
    }

    thread_local! {
        static WIDGETS: RefCell<Option<Widgets>> = const { RefCell::new(None) };
    }

    /// Moves the page over a drawing area: the window's box held the page; it now holds an
    /// overlay with the area under the (transparent) page.
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
        let area = gtk::DrawingArea::new();
        let canvas = Rc::new(RefCell::new(Canvas::default()));
        let (c, weak) = (canvas.clone(), Arc::downgrade(shared));
        area.connect_draw(move |_, cr| {
            draw(&mut c.borrow_mut(), cr, &weak);
            gtk::glib::Propagation::Stop
        });
        let overlay = gtk::Overlay::new();
        parent.remove(&webview);
        overlay.add(&area);
        overlay.add_overlay(&webview);
        parent.pack_start(&overlay, true, true, 0);
        overlay.show_all();
        webview.grab_focus();
        WIDGETS.with(|w| *w.borrow_mut() = Some(Widgets { area, canvas }));
        shared.ready.store(true, Ordering::Release);
        tracing::info!("video is painted on a native surface under the page");
        apply(shared);
    }

    /// The part of the area a place covers, whole pixels around it.
    fn rect(p: &Place) -> (i32, i32, i32, i32) {
        let (x, y) = (p.x.floor() as i32, p.y.floor() as i32);
        let (r, b) = (
            (p.x + p.width).ceil() as i32,
            (p.y + p.height).ceil() as i32,
        );
        (x, y, r - x, b - y)
    }

    /// Brings the canvas in line with what the window said, hands it the new pictures, and
    /// asks GTK to paint again where something changed.
    pub(super) fn apply(shared: &Arc<Shared>) {
        shared.asked.store(false, Ordering::Release);
        let (places, next, page, tile) = {
            let mut s = lock(&shared.state);
            // (Only when they changed: a new picture alone does not copy them.)
            let places = std::mem::take(&mut s.said).then(|| s.places.clone());
            (places, std::mem::take(&mut s.next), s.page, s.tile)
        };
        WIDGETS.with(|w| {
            let w = w.borrow();
            let Some(w) = w.as_ref() else { return };
            let mut canvas = w.canvas.borrow_mut();
            let mut dirty: Vec<Place> = Vec::new();
            let mut unpainted: Vec<String> = Vec::new();
            let whole = (canvas.page, canvas.tile) != (page, tile);
            canvas.page = page;
            canvas.tile = tile;
            if let Some(places) = &places {
                // Tiles that went.
                canvas.tiles.retain(|k, t| {
                    let keep = places.contains_key(k);
                    if !keep {
                        dirty.extend(t.place);
                        if t.fresh {
                            unpainted.push(k.clone());
                        }
                    }
                    keep
                });
                for (key, place) in places {
                    let t = canvas.tiles.entry(key.clone()).or_default();
                    if t.place != *place {
                        dirty.extend(t.place);
                        dirty.extend(*place);
                        t.place = *place;
                    }
                }
            }
            for (key, picture) in next {
                let Some(t) = canvas.tiles.get_mut(&key) else {
                    unpainted.push(key);
                    continue;
                };
                let remote = !key.starts_with("local") && !key.starts_with("share:");
                let stamp = (shared.measure && remote)
                    .then(|| read_stamp(&picture))
                    .flatten();
                let surface = cairo::ImageSurface::create_for_data(
                    picture.bgrx,
                    cairo::Format::Rgb24,
                    picture.width as i32,
                    picture.height as i32,
                    (picture.width * 4) as i32,
                );
                match surface {
                    Ok(s) => {
                        if t.fresh {
                            // The last one was never painted (the tile is not showing).
                            unpainted.push(key.clone());
                        }
                        t.picture = Some(s);
                        t.fresh = true;
                        t.stamp = stamp;
                        dirty.extend(t.place);
                    }
                    Err(e) => {
                        tracing::debug!("a picture the surface cannot hold: {e}");
                        unpainted.push(key.clone());
                    }
                }
            }
            drop(canvas);
            shared.dropped(&unpainted);
            if whole {
                w.area.queue_draw();
            } else {
                for p in &dirty {
                    let (x, y, width, height) = rect(p);
                    w.area.queue_draw_area(x, y, width, height);
                }
            }
        });
    }

    /// Paints what GTK asks for: the page's background, then the tiles there, lowest first.
    fn draw(canvas: &mut Canvas, cr: &cairo::Context, shared: &Weak<Shared>) {
        let [r, g, b] = canvas.page;
        cr.set_source_rgb(
            f64::from(r) / 255.0,
            f64::from(g) / 255.0,
            f64::from(b) / 255.0,
        );
        let _ = cr.paint();
        let (cx, cy, cr_, cb) = cr.clip_extents().unwrap_or((0.0, 0.0, 0.0, 0.0));
        let mut shown: Vec<(&String, &mut Tile)> = canvas
            .tiles
            .iter_mut()
            .filter(|(_, t)| {
                t.place.is_some_and(|p| {
                    p.x < cr_ && p.x + p.width > cx && p.y < cb && p.y + p.height > cy
                })
            })
            .collect();
        shown.sort_by_key(|(k, t)| (t.place.map_or(0, |p| p.z), (*k).clone()));
        let shared = shared.upgrade();
        let frames = shared.as_ref().and_then(|s| s.frames.upgrade());
        for (key, t) in shown {
            let Some(p) = t.place else { continue };
            cr.save().ok();
            cr.translate(p.x, p.y);
            paint(cr, &p, canvas.tile, t.picture.as_ref());
            cr.restore().ok();
            if std::mem::take(&mut t.fresh) {
                if let Some(f) = &frames {
                    if let Some(ms) = t.stamp.take().and_then(age_ms) {
                        f.drawn_latency(ms);
                    }
                    f.painted(key);
                }
            }
        }
    }

    /// One tile at the origin: its color inside its rounded corners, the picture fitted inside
    /// (as the page's `object-fit: contain`), mirrored for the self view.
    fn paint(cr: &cairo::Context, p: &Place, tile: [u8; 3], picture: Option<&cairo::ImageSurface>) {
        let (w, h) = (p.width, p.height);
        let radius = p.radius.min(w / 2.0).min(h / 2.0);
        cr.new_path();
        if radius > 0.0 {
            use std::f64::consts::{FRAC_PI_2, PI};
            cr.new_sub_path();
            cr.arc(w - radius, radius, radius, -FRAC_PI_2, 0.0);
            cr.arc(w - radius, h - radius, radius, 0.0, FRAC_PI_2);
            cr.arc(radius, h - radius, radius, FRAC_PI_2, PI);
            cr.arc(radius, radius, radius, PI, 3.0 * FRAC_PI_2);
            cr.close_path();
        } else {
            cr.rectangle(0.0, 0.0, w, h);
        }
        cr.clip();
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
        if p.mirror {
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
    use crate::frames::{TestRunner, Way};
    use confab_engine::{FrameSource, VideoSink};
    use confab_media::pattern;
    use std::time::{Duration, Instant};

    #[test]
    fn the_users_setting_stands_and_software_gl_counts_as_no_gpu() {
        let gpu = || true;
        let none = || false;
        assert!(
            !cpu_painting_wanted(false, None, gpu),
            "a GPU: WebKit's default"
        );
        assert!(cpu_painting_wanted(false, None, none), "no GPU: on the CPU");
        assert!(
            cpu_painting_wanted(false, Some("1"), gpu),
            "GL forced into software"
        );
        assert!(cpu_painting_wanted(false, Some("true"), gpu));
        assert!(
            !cpu_painting_wanted(false, Some("0"), gpu),
            "\"0\" forces nothing"
        );
        // Whatever the machine, a value the user set is theirs.
        assert!(!cpu_painting_wanted(true, None, none));
        assert!(!cpu_painting_wanted(true, Some("1"), none));
    }

    #[test]
    #[cfg(target_os = "linux")]
    fn only_a_render_node_we_may_open_counts_as_a_gpu() {
        let d = std::env::temp_dir().join(format!("confab-dri-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        assert!(!has_render_node(&d), "no /dev/dri at all");
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("card0"), b"").unwrap();
        assert!(
            !has_render_node(&d),
            "a display controller alone renders nothing"
        );
        let node = d.join("renderD128");
        std::fs::write(&node, b"").unwrap();
        assert!(has_render_node(&d));
        // One this user may not open (not in the `render` group) renders nothing for us.
        // (Root opens anything: the check means something only for other users.)
        let root = {
            use std::os::unix::fs::MetadataExt;
            std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
        };
        if !root {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&node, std::fs::Permissions::from_mode(0o400)).unwrap();
            assert!(!has_render_node(&d), "a node we may not open");
        }
        let _ = std::fs::remove_dir_all(&d);
    }

    /// The surface's side of the frames' accounting, without GTK (the widgets are never in
    /// place here, so nothing is taken to a main thread): a picture the surface lets go
    /// unpainted is always given back, so pictures keep coming.
    #[test]
    fn unpainted_pictures_are_given_back() {
        let frames = UiFrames::new();
        let (channel, _rx) = crate::frames::test_channel();
        frames.open(channel, true);
        let native = Arc::new(NativeVideo {
            shared: Shared::new(&frames, false),
        });
        frames.set_surface(native.clone());
        let _runner = TestRunner::start(&frames);
        let a = FrameSource::Remote(confab_protocol::PeerId("a".into()));
        let send = |n: u32| {
            let stamp = pattern::Stamp {
                frame: n,
                capture_us: 0,
            };
            frames.frame(&a, &Arc::new(pattern::frame(640, 480, stamp, 0)));
        };
        // The newest picture waiting for the tile, once it is `n`.
        let waits = |n: u32| {
            let end = Instant::now() + Duration::from_secs(5);
            loop {
                let got = lock(&native.shared.state)
                    .next
                    .get("a")
                    .map(|p| pattern::read_bgrx(&p.bgrx, p.width, p.height).map(|s| s.frame));
                if got == Some(Some(n)) {
                    return true;
                }
                if Instant::now() > end {
                    return false;
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        };
        frames.set_way("a", Way::Native, 1);
        native.adopt("a");
        // Not placed yet: nowhere to paint, nothing waits.
        send(1);
        std::thread::sleep(Duration::from_millis(200));
        assert!(lock(&native.shared.state).next.is_empty());
        native.place("a", Some(place()));
        // Never painted, each picture replaces the last: far more than the window of 2 go.
        for n in 2..12 {
            send(n);
            assert!(waits(n), "picture {n} reached the surface");
        }
        // Hidden, then shown again: pictures come again.
        native.place("a", None);
        send(20);
        std::thread::sleep(Duration::from_millis(200));
        native.place("a", Some(place()));
        send(21);
        assert!(waits(21), "after showing again");
        // Removed with a picture waiting: a place said before, taken late, does not bring it
        // back; taken natively again and placed, its pictures are not stuck.
        native.remove("a");
        assert!(lock(&native.shared.state).next.is_empty());
        native.place("a", Some(place()));
        assert!(!lock(&native.shared.state).places.contains_key("a"));
        native.adopt("a");
        native.place("a", Some(place()));
        for n in 30..34 {
            send(n);
            assert!(waits(n), "picture {n} after the tile came back");
        }
        // Many tiles the window no longer shows make room for a new one, and the pictures
        // they held are given back.
        native.place("a", None);
        for i in 0..MAX_TILES {
            native.adopt(&format!("gone{i}"));
        }
        native.adopt("a");
        native.place("a", Some(place()));
        assert!(lock(&native.shared.state).places.len() <= MAX_TILES);
        send(40);
        assert!(waits(40), "a tile placed again when the table was full");
    }

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
