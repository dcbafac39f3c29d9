//! Pictures to the UI: the engine hands decoded (and local) frames to [`UiFrames`]; one thread
//! turns the newest frame of each tile into a JPEG and sends it to the window. A tile the
//! window cannot keep up with skips frames instead of queueing them.
//!
//! Three ways to the window. **The native surface** (Linux, where WebKit composites): the
//! window's tiles in the call are holes in a transparent page, and the pictures are painted
//! under them by the window's own video surface ([`Surface`], `crate::surface`), as BGRx
//! at the tile's size, at most [`NATIVE_WINDOW`] waiting to be painted. **Streams** (the
//! default elsewhere): each tile's `<img>` loads an MJPEG stream from [`crate::stream`]; a
//! picture goes when the stream has taken the one before (at most [`STREAM_WINDOW`] queued),
//! and the channel only tells the window which tiles have pictures. **The channel** (the
//! fallback, everywhere): each picture is a channel message the window draws on a canvas and
//! acks, at most [`WINDOW`] in flight per tile. The window says which way each tile takes
//! ([`UiFrames::set_way`]).
//!
//! Channel message layout (binary): `kind: u8` (1 = frame, 2 = tile ended, 3 = tile has
//! pictures: load its stream), `key_len: u8`, `key` (UTF-8: `local` or the peer id), then for
//! a frame `width: u16 BE`, `height: u16 BE` and the JPEG bytes.

use confab_engine::{FrameSource, VideoSink};
use confab_media::VideoFrame;
use hyper::body::Bytes;
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};
use tauri::ipc::{Channel, InvokeResponseBody};

/// Frames in flight per tile over the channel.
pub const WINDOW: u32 = 3;
/// Pictures queued per tile stream before the socket takes them.
pub const STREAM_WINDOW: u32 = 2;
/// Pictures handed to the native surface per tile and not yet painted.
pub const NATIVE_WINDOW: u32 = 2;

/// How a tile's pictures reach the window (the window says, per tile).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Way {
    /// Its `<img>` loads its stream (or, without streams, the channel).
    Stream,
    /// Over the channel although the window streams (it streams a few tiles at most).
    Channel,
    /// Painted by the window's native video surface under the tile.
    Native,
}

/// A picture for the native surface: BGRx rows, 4 bytes a pixel, no padding (cairo's RGB24
/// on a little-endian machine). Only Linux has a native surface to read them (elsewhere the
/// tests make and read them).
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
pub struct Picture {
    pub width: usize,
    pub height: usize,
    pub bgrx: PictureBytes,
}

/// Buffers of pictures the native surface is done with, kept for the next ones: a fresh
/// buffer for each 720p picture was allocated and cleared 30 times a second.
#[derive(Default)]
pub struct Buffers(Mutex<Vec<Vec<u8>>>);

/// Buffers kept at most (a remote tile's and the self view's, a few of each).
const KEPT_BUFFERS: usize = 6;

impl Buffers {
    /// A buffer of `len` bytes used before, or a new empty one.
    fn take(&self, len: usize) -> Vec<u8> {
        let mut g = self.0.lock().unwrap_or_else(|p| p.into_inner());
        match g.iter().position(|b| b.len() == len) {
            Some(i) => g.swap_remove(i),
            None => Vec::new(),
        }
    }

    /// Keeps none (nothing is painted natively any more).
    fn clear(&self) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }

    fn give(&self, buffer: Vec<u8>) {
        let mut g = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if g.len() == KEPT_BUFFERS {
            g.remove(0);
        }
        g.push(buffer);
    }
}

/// A picture's bytes; back to the [`Buffers`] they came from once nothing paints them.
pub struct PictureBytes {
    bytes: Vec<u8>,
    home: std::sync::Weak<Buffers>,
}

impl std::ops::Deref for PictureBytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.bytes
    }
}

impl AsMut<[u8]> for PictureBytes {
    fn as_mut(&mut self) -> &mut [u8] {
        &mut self.bytes
    }
}

impl Drop for PictureBytes {
    fn drop(&mut self) {
        if let Some(home) = self.home.upgrade() {
            home.give(std::mem::take(&mut self.bytes));
        }
    }
}

/// The window's native video surface: paints the newest picture of each tile under the
/// tile's hole in the page, and tells [`UiFrames::painted`] (or [`UiFrames::dropped`]).
pub trait Surface: Send + Sync {
    /// Takes the tile's next picture; `false` if the tile has nowhere to be painted now.
    fn show(&self, key: &str, picture: Picture) -> bool;
}
const JPEG_QUALITY: u8 = 72;
/// The self view goes to the window at 15 fps: people glance at it, and every picture costs a
/// JPEG encode here and a decode and paint in the window.
const SELF_VIEW_INTERVAL: Duration = Duration::from_millis(66);
/// What we share is previewed in the share bar once a second: enough to see it is the right
/// window, and a JPEG of a whole screen five times a second would be work for nothing.
const SHARE_PREVIEW_INTERVAL: Duration = Duration::from_secs(1);
/// On-screen latencies kept: a minute of one remote tile at 30 fps.
const LATENCIES: usize = 1800;

pub fn key(source: &FrameSource) -> String {
    match source {
        FrameSource::Local => "local".into(),
        FrameSource::Remote(p) => p.to_string(),
        FrameSource::LocalShare => "local-share".into(),
        FrameSource::RemoteShare(p) => format!("share:{p}"),
    }
}

/// A tile's open stream: its newest connection.
struct Stream {
    id: u64,
    /// The window's count of stream loads when it asked for this one.
    n: u64,
    tx: tokio::sync::mpsc::Sender<Bytes>,
}

#[derive(Default)]
struct Inner {
    channel: Option<Channel<InvokeResponseBody>>,
    /// Pictures go over streams (else over the channel).
    streaming: bool,
    streams: HashMap<String, Stream>,
    next_stream: u64,
    /// How many times the window opened its channel: streams belong to one opening.
    epoch: u64,
    /// Tiles the window was told have pictures (streaming), until they end.
    announced: HashSet<String>,
    /// What the window last said of each tile: which way its pictures go, and the count of
    /// the window's word.
    ways: HashMap<String, (Way, u64)>,
    /// The window's native video surface, where there is one.
    surface: Option<Arc<dyn Surface>>,
    pending: HashMap<String, Arc<VideoFrame>>,
    ended: VecDeque<String>,
    in_flight: HashMap<String, u32>,
    /// Frames drawn (acked) per tile, since the last report.
    drawn: HashMap<String, u64>,
    /// Capture -> on screen of the latest remote pictures, ms (only when the window measures).
    latencies: VecDeque<f32>,
    /// How many pixels wide each tile is on screen (frames are halved while at least twice
    /// that): no point encoding, sending and decoding pixels nobody sees.
    shown_width: HashMap<String, usize>,
    /// When the self view last went out (it goes at most every [`SELF_VIEW_INTERVAL`]).
    self_view_sent: Option<Instant>,
    /// When a picture of what we share was last taken for the preview.
    share_preview_at: Option<Instant>,
}

#[derive(Default)]
pub struct UiFrames {
    inner: Mutex<Inner>,
    cond: Condvar,
    stop: AtomicBool,
    /// Picture buffers for the native surface, used again.
    buffers: Arc<Buffers>,
}

fn message(kind: u8, key: &str, body: &[u8]) -> Vec<u8> {
    let k = key.as_bytes();
    let k = &k[..k.len().min(255)];
    let mut m = Vec::with_capacity(2 + k.len() + body.len());
    m.push(kind);
    m.push(k.len() as u8);
    m.extend_from_slice(k);
    m.extend_from_slice(body);
    m
}

impl UiFrames {
    pub fn new() -> Arc<Self> {
        Arc::new(UiFrames::default())
    }

    /// The window (re)opened its video channel; `streaming`: it loads tiles' pictures from
    /// streams (streams of an earlier opening end, and later loads of theirs are refused).
    /// Returns this opening's number, which the window's stream loads carry.
    pub fn open(&self, channel: Channel<InvokeResponseBody>, streaming: bool) -> u64 {
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        g.epoch += 1;
        g.channel = Some(channel);
        g.streaming = streaming;
        g.streams.clear();
        g.announced.clear();
        g.ways.clear();
        g.in_flight.clear();
        self.buffers.clear();
        self.cond.notify_all();
        g.epoch
    }

    /// The UI drew a frame of this tile: one more may go. (For a tile it streams, the window
    /// says so only while it measures: the pictures its stream took are counted instead.)
    pub fn ack(&self, key: &str) {
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        // (Only for a picture that went over the channel: nothing else is counted.)
        if !g.streams.contains_key(key) && g.in_flight.get(key).is_some_and(|n| *n > 0) {
            release(&mut g, key);
            *g.drawn.entry(key.to_owned()).or_default() += 1;
        }
        self.cond.notify_all();
    }

    /// A stream for this tile opened, the window's `n`th load in its channel opening `epoch`:
    /// its pictures go there from now on (an older stream of the tile ends). `None` while the
    /// window takes pictures over the channel, for an earlier opening, or for a load older
    /// than the tile's stream (one the window cancelled, arriving late).
    pub fn attach(
        &self,
        key: &str,
        epoch: u64,
        n: u64,
    ) -> Option<(u64, tokio::sync::mpsc::Receiver<Bytes>)> {
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        // (Or the window has said something of the tile since this load: it dropped it.)
        let stale = g.streams.get(key).is_some_and(|s| s.n >= n)
            || g.ways.get(key).is_some_and(|&(_, said)| said > n);
        let full = g.streams.len() >= 64 && !g.streams.contains_key(key);
        if !g.streaming || epoch != g.epoch || stale || full {
            return None;
        }
        g.next_stream += 1;
        let id = g.next_stream;
        let (tx, rx) = tokio::sync::mpsc::channel(STREAM_WINDOW as usize);
        g.streams.insert(key.to_owned(), Stream { id, n, tx });
        g.in_flight.remove(key);
        self.cond.notify_all();
        Some((id, rx))
    }

    /// The window takes this tile's pictures this way from now on: over the channel although
    /// it streams (it streams a few tiles at most), on its native surface, or back to its
    /// stream (also said of a tile that went). `count`: the window's count of its stream
    /// loads and of these words, one count for both. A word older than the last one on the
    /// tile (the window's commands can be taken out of order) changes nothing; a way other
    /// than the stream ends the tile's stream from an earlier load (the window dropped it,
    /// but its connection can take a while to close), and a late load from before the word
    /// is refused. Returns whether the word was taken.
    pub fn set_way(&self, key: &str, way: Way, count: u64) -> bool {
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        match g.ways.get(key) {
            Some(&(_, said)) if said >= count => return false,
            None if g.ways.len() >= 64 => {
                // Full: what is only an old "stream" goes first (the window says it of a tile
                // after it ended, so one is left for everyone who was ever in the call).
                g.ways.retain(|_, &mut (way, _)| way != Way::Stream);
                if g.ways.len() >= 64 {
                    return false;
                }
            }
            _ => {}
        }
        let was = g.ways.insert(key.to_owned(), (way, count)).map(|w| w.0);
        if way != Way::Stream && g.streams.get(key).is_some_and(|s| s.n < count) {
            g.streams.remove(key);
            // What went to the stream is not coming back as deliveries.
            g.in_flight.remove(key);
        }
        if was == Some(Way::Native) && way != Way::Native {
            // What the surface holds is not coming back as painted.
            g.in_flight.remove(key);
        }
        self.cond.notify_all();
        true
    }

    /// The window's native video surface, where it has one (Linux only).
    #[cfg_attr(not(target_os = "linux"), allow(dead_code))]
    pub fn set_surface(&self, surface: Arc<dyn Surface>) {
        self.inner.lock().unwrap_or_else(|p| p.into_inner()).surface = Some(surface);
    }

    /// The native surface painted a picture of this tile (that came from here).
    #[cfg_attr(not(target_os = "linux"), allow(dead_code))]
    pub fn painted(&self, key: &str) {
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if g.ways.get(key).is_some_and(|w| w.0 == Way::Native) {
            release(&mut g, key);
            *g.drawn.entry(key.to_owned()).or_default() += 1;
        }
        self.cond.notify_all();
    }

    /// The native surface let a picture of this tile go unpainted (a newer one came first).
    pub fn dropped(&self, key: &str) {
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if g.ways.get(key).is_some_and(|w| w.0 == Way::Native) {
            release(&mut g, key);
        }
        self.cond.notify_all();
    }

    /// Stream `id` of this tile took a picture.
    pub fn delivered(&self, key: &str, id: u64) {
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if g.streams.get(key).is_some_and(|s| s.id == id) {
            release(&mut g, key);
            *g.drawn.entry(key.to_owned()).or_default() += 1;
            self.cond.notify_all();
        }
    }

    #[cfg(test)]
    pub fn streams_open(&self) -> usize {
        self.inner.lock().unwrap().streams.len()
    }

    /// Stream `id` of this tile closed.
    pub fn detach(&self, key: &str, id: u64) {
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if g.streams.get(key).is_some_and(|s| s.id == id) {
            g.streams.remove(key);
            g.in_flight.remove(key);
        }
    }

    /// The UI shows this tile `width` device pixels wide; 0: nobody can see it (the window is
    /// hidden or minimized, or the tile is out of view), so it gets no pictures until it shows.
    pub fn set_shown_width(&self, key: &str, width: usize) {
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if g.shown_width.len() < 64 || g.shown_width.contains_key(key) {
            let width = if width == 0 { 0 } else { width.max(160) };
            g.shown_width.insert(key.to_owned(), width);
        }
        self.cond.notify_all();
    }

    /// Frames drawn per tile since the last call.
    pub fn take_drawn(&self) -> HashMap<String, u64> {
        std::mem::take(&mut self.inner.lock().unwrap_or_else(|p| p.into_inner()).drawn)
    }

    /// The window drew a remote picture captured `ms` before.
    pub fn drawn_latency(&self, ms: f64) {
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if g.latencies.len() == LATENCIES {
            g.latencies.pop_front();
        }
        g.latencies.push_back(ms as f32);
    }

    /// Capture -> on screen p50 and p95 over the last [`LATENCIES`] remote pictures drawn.
    pub fn latency_percentiles(&self) -> Option<(f64, f64)> {
        let v: Vec<f32> = {
            let g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
            g.latencies.iter().copied().collect()
        };
        let at = |q| f64::from(confab_media::quantile(&v, q));
        (!v.is_empty()).then(|| (at(0.5), at(0.95)))
    }

    /// A picture that did not go: the tile may have another.
    fn release(&self, key: &str) {
        release(
            &mut self.inner.lock().unwrap_or_else(|p| p.into_inner()),
            key,
        );
        self.cond.notify_all();
    }

    pub fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
        self.cond.notify_all();
    }

    /// The sender loop; runs on a thread of its own until [`UiFrames::stop`].
    pub fn run(&self) {
        let mut rotate = 0usize;
        while !self.stop.load(Ordering::Relaxed) {
            let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
            let Some(channel) = g.channel.clone() else {
                let _ = self.cond.wait_timeout(g, Duration::from_millis(200));
                continue;
            };
            if let Some(k) = g.ended.pop_front() {
                drop(g);
                let _ = channel.send(InvokeResponseBody::Raw(message(2, &k, &[])));
                continue;
            }
            // Streaming: a tile's first picture (again) tells the window to show its stream.
            if g.streaming {
                let new = g
                    .pending
                    .keys()
                    .find(|k| !g.announced.contains(*k))
                    .cloned();
                if let Some(k) = new {
                    g.announced.insert(k.clone());
                    drop(g);
                    let _ = channel.send(InvokeResponseBody::Raw(message(3, &k, &[])));
                    continue;
                }
            }
            // The self view waits its turn (see SELF_VIEW_INTERVAL).
            let self_view_due = g.self_view_sent.map(|t| t + SELF_VIEW_INTERVAL);
            let self_view_early = self_view_due.is_some_and(|due| Instant::now() < due);
            // Fairness: start the search at a rotating tile.
            let mut ready: Vec<String> = g
                .pending
                .keys()
                .filter(|k| {
                    let window = if g.streams.contains_key(*k) {
                        STREAM_WINDOW
                    } else if way(&g, k) == Some(Way::Native) {
                        NATIVE_WINDOW
                    } else {
                        WINDOW
                    };
                    g.in_flight.get(*k).copied().unwrap_or(0) < window
                })
                .filter(|k| match way(&g, k) {
                    Some(Way::Native) => g.surface.is_some(),
                    Some(Way::Channel) => true,
                    _ => !g.streaming || g.streams.contains_key(*k),
                })
                .filter(|k| g.shown_width.get(*k) != Some(&0))
                .filter(|k| !(self_view_early && *k == "local"))
                .cloned()
                .collect();
            if ready.is_empty() {
                // Wake for the self view's turn if that is what waits, else for news.
                let wait = match self_view_due {
                    Some(due) if self_view_early && g.pending.contains_key("local") => {
                        due.saturating_duration_since(Instant::now())
                    }
                    _ => Duration::from_millis(200),
                };
                let _ = self.cond.wait_timeout(g, wait);
                continue;
            }
            ready.sort();
            rotate = rotate.wrapping_add(1);
            let k = ready[rotate % ready.len()].clone();
            let frame = g.pending.remove(&k).expect("listed");
            if k == "local" {
                g.self_view_sent = Some(Instant::now());
            }
            *g.in_flight.entry(k.clone()).or_default() += 1;
            // The self view is small: at most half size unless the UI says otherwise.
            let shown = g
                .shown_width
                .get(&k)
                .copied()
                .unwrap_or(if k.starts_with("local") {
                    640
                } else {
                    usize::MAX
                });
            let stream = g.streams.get(&k).map(|s| s.tx.clone());
            let surface = g
                .surface
                .clone()
                .filter(|_| way(&g, &k) == Some(Way::Native));
            drop(g);
            let started = Instant::now();
            let min = if k == "local" {
                SELF_VIEW_MIN_WIDTH
            } else {
                MIN_WIDTH
            };
            let frame = scale_for(frame, shown, min);
            if let Some(surface) = surface {
                let mut bytes = self.buffers.take(frame.width * frame.height * 4);
                confab_media::convert::to_bgrx_into(&frame, &mut bytes);
                let picture = Picture {
                    width: frame.width,
                    height: frame.height,
                    bgrx: PictureBytes {
                        bytes,
                        home: Arc::downgrade(&self.buffers),
                    },
                };
                if !surface.show(&k, picture) {
                    self.release(&k);
                }
                continue;
            }
            match confab_media::convert::to_jpeg(&frame, JPEG_QUALITY) {
                Ok(jpeg) => {
                    let sent = match stream {
                        Some(tx) => tx.try_send(Bytes::from(jpeg)).is_ok(),
                        None => {
                            let mut body = Vec::with_capacity(4 + jpeg.len());
                            body.extend_from_slice(&(frame.width as u16).to_be_bytes());
                            body.extend_from_slice(&(frame.height as u16).to_be_bytes());
                            body.extend_from_slice(&jpeg);
                            channel
                                .send(InvokeResponseBody::Raw(message(1, &k, &body)))
                                .is_ok()
                        }
                    };
                    if !sent {
                        self.release(&k);
                    }
                    tracing::trace!(tile = %k, ms = started.elapsed().as_secs_f64() * 1000.0, "frame sent");
                }
                Err(e) => {
                    tracing::debug!("cannot encode a frame for the UI: {e}");
                    self.release(&k);
                }
            }
        }
    }
}

fn way(g: &Inner, key: &str) -> Option<Way> {
    g.ways.get(key).map(|w| w.0)
}

fn release(g: &mut Inner, key: &str) {
    if let Some(n) = g.in_flight.get_mut(key) {
        *n = n.saturating_sub(1);
    }
}

/// Pictures to the window are never made smaller than this wide (a tile drawn smaller than a
/// 640-wide picture still reads well, and its pattern still reads in tests)...
const MIN_WIDTH: usize = 640;
/// ... but the self view, in a 1:1 call a small picture floating in a corner (at most 280
/// pixels wide): a 640-wide picture of it cost encoding, decoding and scaling down at every
/// paint, for nothing anyone sees (nobody reads its pattern back).
const SELF_VIEW_MIN_WIDTH: usize = 160;

/// The frame at the width its tile is shown at (never below `min`, never wider than it
/// came), height in proportion: halved (a cheap box filter) while at least twice as wide,
/// then resized the rest of the way unless within 10 %. A picture the window draws 1:1 costs
/// it no scaling when painting, and fewer pixels to encode, send and decode.
fn scale_for(frame: Arc<VideoFrame>, shown: usize, min: usize) -> Arc<VideoFrame> {
    let target = shown.max(min);
    let mut f = frame;
    if f.width <= target {
        return f;
    }
    while f.width / 2 >= target {
        f = Arc::new(f.half());
    }
    if f.width.saturating_mul(9) > target.saturating_mul(10) {
        let height = f.height * target / f.width;
        f = Arc::new(f.resized(target, height));
    }
    f
}

impl VideoSink for UiFrames {
    fn frame(&self, source: &FrameSource, frame: &Arc<VideoFrame>) {
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if g.channel.is_none() {
            return;
        }
        // What we share goes only to the share bar's small preview, once a second.
        if *source == FrameSource::LocalShare {
            let now = Instant::now();
            if g.share_preview_at
                .is_some_and(|t| now.duration_since(t) < SHARE_PREVIEW_INTERVAL)
            {
                return;
            }
            g.share_preview_at = Some(now);
        }
        g.pending.insert(key(source), frame.clone());
        self.cond.notify_all();
    }

    fn ended(&self, source: &FrameSource) {
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let k = key(source);
        g.pending.remove(&k);
        g.in_flight.remove(&k);
        g.announced.remove(&k);
        g.ways.remove(&k);
        if !k.starts_with("local") {
            g.shown_width.remove(&k);
            g.drawn.remove(&k);
        }
        g.ended.push_back(k);
        // The call's last native tile went: its buffers are not kept for the next call.
        if !g.ways.values().any(|w| w.0 == Way::Native) {
            self.buffers.clear();
        }
        self.cond.notify_all();
    }
}

/// The sender loop on a thread of its own, for a test: stopped and joined when dropped.
#[cfg(test)]
pub struct TestRunner {
    frames: Arc<UiFrames>,
    thread: Option<std::thread::JoinHandle<()>>,
}

#[cfg(test)]
impl TestRunner {
    pub fn start(frames: &Arc<UiFrames>) -> Self {
        let f = frames.clone();
        TestRunner {
            frames: frames.clone(),
            thread: Some(std::thread::spawn(move || f.run())),
        }
    }
}

#[cfg(test)]
impl Drop for TestRunner {
    fn drop(&mut self) {
        self.frames.stop();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A channel whose messages a test receives.
#[cfg(test)]
pub fn test_channel() -> (
    Channel<InvokeResponseBody>,
    std::sync::mpsc::Receiver<Vec<u8>>,
) {
    let (tx, rx) = std::sync::mpsc::channel::<Vec<u8>>();
    let tx = Mutex::new(tx);
    let channel = Channel::new(move |body| {
        if let InvokeResponseBody::Raw(b) = body {
            let _ = tx.lock().unwrap_or_else(|p| p.into_inner()).send(b);
        }
        Ok(())
    });
    (channel, rx)
}

#[cfg(test)]
mod tests {
    use super::*;
    use confab_media::pattern;

    #[test]
    fn frames_are_scaled_to_their_tile() {
        let f = Arc::new(VideoFrame::black(1280, 720));
        let m = MIN_WIDTH;
        assert_eq!(scale_for(f.clone(), 1280, m).width, 1280);
        assert_eq!(scale_for(f.clone(), 640, m).width, 640);
        assert_eq!(scale_for(f.clone(), 400, m).width, 640);
        assert_eq!(
            scale_for(f.clone(), 200, m).width,
            640,
            "never below 640 wide"
        );
        assert_eq!(
            scale_for(f.clone(), usize::MAX, m).width,
            1280,
            "size not known yet"
        );
        assert_eq!(scale_for(f.clone(), usize::MAX / 2, m).width, 1280);
        // Shown 800 wide: drawn 1:1, the height in proportion.
        let s = scale_for(f.clone(), 800, m);
        assert_eq!((s.width, s.height), (800, 450));
        // Within 10 % of its width: left as it came.
        assert_eq!(scale_for(f.clone(), 1200, m).width, 1280);
        // A 1080p picture in a 700-wide tile: halved, then resized.
        let big = Arc::new(VideoFrame::black(1920, 1080));
        let s = scale_for(big, 700, m);
        assert_eq!((s.width, s.height), (700, 392));
        // An odd width from the window comes out even.
        assert_eq!(scale_for(f.clone(), 777, m).width, 776);
        // The self view floating 280 wide: halved twice, then resized.
        let s = scale_for(f, 280, SELF_VIEW_MIN_WIDTH);
        assert_eq!((s.width, s.height), (280, 156));
    }

    #[test]
    fn on_screen_latency_percentiles_cover_the_last_pictures() {
        let f = UiFrames::new();
        assert_eq!(f.latency_percentiles(), None);
        for ms in 1..=100 {
            f.drawn_latency(f64::from(ms));
        }
        assert_eq!(f.latency_percentiles(), Some((51.0, 95.0)));
        // Bounded: only the last LATENCIES count.
        for _ in 0..LATENCIES {
            f.drawn_latency(7.0);
        }
        assert_eq!(f.latency_percentiles(), Some((7.0, 7.0)));
        assert_eq!(f.inner.lock().unwrap().latencies.len(), LATENCIES);
    }

    /// The window streams some tiles and takes the others' pictures over the channel (it can
    /// stream 6 at most): each tile's pictures go the way the window asked for it.
    #[test]
    fn streamed_tiles_and_tiles_over_the_channel_side_by_side() {
        let frames = UiFrames::new();
        let (channel, rx) = test_channel();
        let epoch = frames.open(channel, true);
        let _runner = crate::frames::TestRunner::start(&frames);
        let (a, b) = (
            confab_protocol::PeerId("a".into()),
            confab_protocol::PeerId("b".into()),
        );
        let picture = |n: usize| Arc::new(VideoFrame::black(640 + 16 * n, 480));
        let (_id, mut stream) = frames.attach("a", epoch, 1).expect("a's stream");
        frames.frame(&FrameSource::Remote(a.clone()), &picture(0));
        frames.frame(&FrameSource::Remote(b.clone()), &picture(0));
        let next = || rx.recv_timeout(Duration::from_secs(5)).expect("a message");
        let recv_stream = |s: &mut tokio::sync::mpsc::Receiver<Bytes>| {
            let end = Instant::now() + Duration::from_secs(5);
            loop {
                if let Ok(b) = s.try_recv() {
                    return b;
                }
                assert!(Instant::now() < end, "no picture on the stream");
                std::thread::sleep(Duration::from_millis(5));
            }
        };
        // Both are announced; a's picture goes to its stream, b's nowhere yet.
        let mut told: Vec<Vec<u8>> = vec![next(), next()];
        told.sort();
        assert_eq!(told, [message(3, "a", &[]), message(3, "b", &[])]);
        assert_eq!(&recv_stream(&mut stream)[..2], &[0xFF, 0xD8], "a JPEG");
        assert!(
            rx.recv_timeout(Duration::from_millis(300)).is_err(),
            "b's picture went before the window asked"
        );
        // The window takes b over the channel: its newest picture comes there, with its size.
        frames.set_way("b", Way::Channel, 2);
        let m = next();
        assert_eq!(&m[..3], &[1, 1, b'b']);
        assert_eq!(&m[3..7], &[2, 128, 1, 224], "640x480");
        // Over the channel, WINDOW pictures at most are in flight until the window drew one.
        let mut width = 640;
        for n in 1..=WINDOW as usize {
            frames.frame(&FrameSource::Remote(b.clone()), &picture(n));
            width = 640 + 16 * n;
            if n < WINDOW as usize {
                let m = next();
                assert_eq!(&m[..3], &[1, 1, b'b']);
                assert_eq!(&m[3..5], &(width as u16).to_be_bytes());
            }
        }
        frames.frame(&FrameSource::Remote(a.clone()), &picture(1));
        assert_eq!(&recv_stream(&mut stream)[..2], &[0xFF, 0xD8]);
        assert!(
            rx.recv_timeout(Duration::from_millis(300)).is_err(),
            "b's picture went with {WINDOW} in flight"
        );
        frames.ack("b");
        let m = next();
        assert_eq!(
            &m[..5],
            &[&[1, 1, b'b'][..], &(width as u16).to_be_bytes()].concat()[..]
        );
        // No longer by channel (the window streams it now, or it went): nothing more comes.
        for _ in 0..WINDOW {
            frames.ack("b");
        }
        frames.set_way("b", Way::Stream, 4);
        // A word the window said before that, taken late: nothing changes.
        frames.set_way("b", Way::Channel, 3);
        frames.frame(&FrameSource::Remote(b), &picture(2));
        assert!(rx.recv_timeout(Duration::from_millis(300)).is_err());
        // a to the channel. Said before a's stream was loaded (taken late): the stream stays.
        // Said after it: the stream ends, a's pictures come over the channel, and a load the
        // window made before that word, arriving late, is refused.
        frames.set_way("a", Way::Channel, 0);
        assert_eq!(frames.streams_open(), 1);
        frames.set_way("a", Way::Channel, 5);
        assert_eq!(frames.streams_open(), 0);
        assert!(
            frames.attach("a", epoch, 4).is_none(),
            "a load from before the word"
        );
        frames.frame(&FrameSource::Remote(a), &picture(2));
        assert_eq!(&next()[..5], &[1, 1, b'a', 2, 160], "a's picture, 672 wide");
        let end = Instant::now() + Duration::from_secs(5);
        loop {
            match stream.try_recv() {
                Err(tokio::sync::mpsc::error::TryRecvError::Disconnected) => break,
                _ => assert!(Instant::now() < end, "a's stream did not end"),
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// The window says "no" of each tile after it ended: in a long call with people coming and
    /// going, those words do not fill the table and keep a new tile off the channel.
    #[test]
    fn many_ended_tiles_do_not_keep_a_new_one_off_the_channel() {
        let frames = UiFrames::new();
        let (channel, _rx) = test_channel();
        frames.open(channel, true);
        for i in 0..200u64 {
            frames.set_way(&format!("gone{i}"), Way::Stream, i + 1);
        }
        frames.set_way("new", Way::Channel, 1000);
        let g = frames.inner.lock().unwrap();
        assert_eq!(g.ways.get("new"), Some(&(Way::Channel, 1000)));
        assert!(g.ways.len() <= 64, "{}", g.ways.len());
    }

    /// What a test surface was shown: the tile, the picture's width, height and bytes.
    type Shown = (String, usize, usize, Vec<u8>);

    /// A native surface that keeps what it is shown, taking pictures only while `open`.
    #[derive(Default)]
    struct Kept {
        open: AtomicBool,
        shown: Mutex<Vec<Shown>>,
    }

    impl Surface for Kept {
        fn show(&self, key: &str, p: Picture) -> bool {
            if !self.open.load(Ordering::Relaxed) {
                return false;
            }
            let mut g = self.shown.lock().unwrap();
            g.push((key.into(), p.width, p.height, p.bgrx.to_vec()));
            true
        }
    }

    impl Kept {
        fn wait(&self, n: usize) -> Vec<Shown> {
            let end = Instant::now() + Duration::from_secs(5);
            loop {
                let g = self.shown.lock().unwrap();
                if g.len() >= n || Instant::now() > end {
                    return g.clone();
                }
                drop(g);
                std::thread::sleep(Duration::from_millis(5));
            }
        }
    }

    #[test]
    fn tiles_painted_natively_get_bgrx_at_their_size_a_few_at_a_time() {
        let frames = UiFrames::new();
        let (channel, rx) = test_channel();
        frames.open(channel, true);
        let surface = Arc::new(Kept::default());
        surface.open.store(true, Ordering::Relaxed);
        frames.set_surface(surface.clone());
        let _runner = TestRunner::start(&frames);
        let a = FrameSource::Remote(confab_protocol::PeerId("a".into()));
        let stamp = |n| pattern::Stamp {
            frame: n,
            capture_us: 5,
        };
        let picture = |n| Arc::new(pattern::frame(1280, 720, stamp(n), 0));
        frames.set_way("a", Way::Native, 1);
        frames.set_shown_width("a", 800);
        frames.frame(&a, &picture(1));
        assert_eq!(
            rx.recv_timeout(Duration::from_secs(5)).unwrap(),
            message(3, "a", &[])
        );
        let got = surface.wait(1);
        let (key, w, h, bgrx) = &got[0];
        assert_eq!(
            (key.as_str(), *w, *h),
            ("a", 800, 450),
            "at the tile's width"
        );
        assert_eq!(bgrx.len(), 800 * 450 * 4);
        assert_eq!(
            pattern::read_bgrx(bgrx, *w, *h),
            Some(stamp(1)),
            "the picture itself"
        );
        // NATIVE_WINDOW pictures wait to be painted at most; a painted or dropped one lets
        // the next go.
        for n in 2..=4 {
            frames.frame(&a, &picture(n));
            std::thread::sleep(Duration::from_millis(100));
        }
        assert_eq!(
            surface.wait(NATIVE_WINDOW as usize + 1).len(),
            NATIVE_WINDOW as usize
        );
        frames.painted("a");
        let got = surface.wait(NATIVE_WINDOW as usize + 1);
        assert_eq!(got.len(), NATIVE_WINDOW as usize + 1);
        assert_eq!(
            pattern::read_bgrx(&got[2].3, 800, 450),
            Some(stamp(4)),
            "the newest picture, not the ones in between"
        );
        assert!(
            frames.take_drawn()["a"] == 1,
            "a painted picture counts as drawn"
        );
        frames.dropped("a");
        frames.frame(&a, &picture(5));
        assert_eq!(surface.wait(4).len(), 4);
        // Nowhere to paint it: the picture goes back, and the next goes when there is.
        frames.painted("a");
        frames.painted("a");
        surface.open.store(false, Ordering::Relaxed);
        frames.frame(&a, &picture(6));
        std::thread::sleep(Duration::from_millis(200));
        surface.open.store(true, Ordering::Relaxed);
        frames.frame(&a, &picture(7));
        assert_eq!(
            pattern::read_bgrx(&surface.wait(5)[4].3, 800, 450),
            Some(stamp(7))
        );
        // Back to its stream: nothing more for the surface, and nothing over the channel.
        frames.set_way("a", Way::Stream, 2);
        frames.frame(&a, &picture(8));
        std::thread::sleep(Duration::from_millis(300));
        assert_eq!(surface.wait(6).len(), 5);
        assert!(rx.recv_timeout(Duration::from_millis(100)).is_err());
    }

    #[test]
    fn picture_buffers_are_used_again() {
        let buffers = Arc::new(Buffers::default());
        let mut b = buffers.take(16);
        assert!(b.is_empty(), "nothing kept yet");
        b.resize(16, 7);
        let p = PictureBytes {
            bytes: b,
            home: Arc::downgrade(&buffers),
        };
        let at = p.as_ptr();
        drop(p);
        let again = buffers.take(16);
        assert_eq!((again.as_ptr(), again.len()), (at, 16), "the same buffer");
        assert!(buffers.take(16).is_empty(), "taken once");
        assert!(buffers.take(8).is_empty(), "only one of the size asked for");
        for _ in 0..10 {
            buffers.give(vec![0; 4]);
        }
        assert_eq!(
            buffers.0.lock().unwrap().len(),
            KEPT_BUFFERS,
            "a few kept at most"
        );
    }

    #[test]
    fn a_tile_nobody_can_see_gets_no_pictures_until_it_shows() {
        let frames = UiFrames::new();
        let (channel, rx) = test_channel();
        frames.open(channel, false);
        frames.set_shown_width("local", 0);
        let _runner = crate::frames::TestRunner::start(&frames);
        frames.frame(&FrameSource::Local, &Arc::new(VideoFrame::black(640, 480)));
        assert!(
            rx.recv_timeout(Duration::from_millis(500)).is_err(),
            "a hidden tile was sent a picture"
        );
        // Shown again: the newest picture goes out at once.
        frames.set_shown_width("local", 320);
        let m = rx
            .recv_timeout(Duration::from_secs(5))
            .expect("a picture once shown");
        assert_eq!(&m[..7], &[&[1u8, 5][..], b"local"].concat()[..]);
        assert_eq!(
            &m[7..11],
            &[1, 64, 0, 240],
            "the self view at the 320x240 it is shown at"
        );
    }

    #[test]
    fn the_self_view_goes_at_15_fps_while_remote_tiles_go_at_once() {
        let frames = UiFrames::new();
        let (channel, rx) = test_channel();
        frames.open(channel, false);
        let _runner = crate::frames::TestRunner::start(&frames);
        // 30 fps from the camera and from a peer for one second; the window acks at once.
        let peer = confab_protocol::PeerId("p1".into());
        let start = Instant::now();
        for i in 0..30u32 {
            let picture = Arc::new(VideoFrame::black(320, 240));
            frames.frame(&FrameSource::Local, &picture);
            frames.frame(&FrameSource::Remote(peer.clone()), &picture);
            std::thread::sleep(
                (start + Duration::from_millis(33) * (i + 1))
                    .saturating_duration_since(Instant::now()),
            );
            // Acked as drawn: counted per tile in take_drawn.
            while let Ok(m) = rx.try_recv() {
                frames.ack(&String::from_utf8_lossy(&m[2..2 + m[1] as usize]));
            }
        }
        let drawn = frames.take_drawn();
        let (local, remote) = (drawn["local"], drawn["p1"]);
        assert!((10..=17).contains(&local), "self view: {local} in 1 s");
        assert!(remote >= 25, "remote tile: {remote} in 1 s");
    }

    #[test]
    fn message_layout() {
        let m = message(1, "local", &[0, 2, 0, 1, 0xff, 0xd8]);
        assert_eq!(
            m,
            [&[1u8, 5][..], b"local", &[0, 2, 0, 1, 0xff, 0xd8]].concat()
        );
        let long = "x".repeat(300);
        assert_eq!(message(2, &long, &[]).len(), 2 + 255);
    }
}
