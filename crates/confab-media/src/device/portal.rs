//! Sharing on a Wayland desktop (GNOME, KDE, a wlroots desktop with its portal): the desktop
//! portal's ScreenCast, and the chosen screen's or window's video through PipeWire.
//!
//! On Wayland a program cannot list or read other windows; the desktop shows its own picker and
//! hands over a PipeWire stream of what the person chose. So [`super::screen::sources`] offers
//! one entry there ("Screen or window", id `portal`), and sharing it goes:
//!
//! 1. over D-Bus (ashpd, on a session-bus connection of the share's own): `CreateSession`,
//!    `SelectSources` (a screen or a window, one of them, the cursor drawn in), `Start` (the
//!    desktop's picker; the person may take up to [`PICK_TIMEOUT`], or cancel), then
//!    `OpenPipeWireRemote` (a PipeWire connection that sees only the chosen stream). The
//!    share's cancel flag (set by whoever started it: the call ended, sharing stopped) gives
//!    all of this up at once, as does a portal that does not answer the steps before the
//!    picker within [`SETUP_TIMEOUT`];
//! 2. over PipeWire, on the share's thread: a video stream linked to the chosen node, offered
//!    packed RGB formats in memory the compositor shares with us (no GPU buffers), its frames
//!    checked against their own size and stride; the newest buffer is held (older ones go
//!    straight back) and read only when the share's next picture is due, turned into I420
//!    of at most [`super::screen::MAX_WIDTH`]×[`super::screen::MAX_HEIGHT`]; the last
//!    picture is sent again at that rate while the screen is still (a compositor sends frames
//!    only when something changes, and someone joining needs a picture). PipeWire's loop is entered once for the reader's life, so that every
//!    stream callback runs on the share's thread, never on PipeWire's real-time thread;
//! 3. on stop, or when the desktop ends the cast (its "stop sharing" button, the window
//!    closed), the stream is disconnected and the portal session closed, so that the desktop's
//!    "you are sharing" indicator goes away with it.
//!
//! Nothing here trusts the compositor's numbers: a frame whose size, stride or offset does not
//! fit its buffer is dropped, never read out of bounds.

use super::screen::to_share_frame;
use super::worker::Worker;
use super::{FrameBus, VideoFormat};
use crate::frame::{now_us, VideoFrame};
use crate::MediaError;
use ashpd::desktop::screencast::{
    CursorMode, OpenPipeWireRemoteOptions, Screencast, SelectSourcesOptions, SourceType,
    StartCastOptions,
};
use ashpd::desktop::{ResponseError, Session};
use pipewire as pw;
use pw::spa;
use pw::spa::param::format::{FormatProperties, MediaSubtype, MediaType};
use pw::spa::param::video::{VideoFormat as PwFormat, VideoInfoRaw};
use pw::spa::param::ParamType;
use pw::spa::pod::serialize::PodSerializer;
use pw::spa::pod::{self, Pod};
use pw::spa::utils::{Direction, Fraction, Rectangle, SpaTypes};
use pw::stream::{StreamFlags, StreamState};
use std::cell::RefCell;
use std::future::Future;
use std::os::fd::OwnedFd;
use std::ptr::NonNull;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The share id of "whatever the desktop's picker gives" (see [`super::id::share_source`]).
pub const SHARE_ID: &str = "portal";
/// How long the desktop's picker may wait for the person to choose.
pub const PICK_TIMEOUT: Duration = Duration::from_secs(120);
/// How long the first picture may take once something is chosen.
const FIRST_PICTURE: Duration = Duration::from_secs(5);
/// How long asking whether the portal can cast may take (it may be started on demand), and
/// closing a session.
const ASK_TIMEOUT: Duration = Duration::from_secs(3);
/// How long the steps before the desktop's picker may take.
const SETUP_TIMEOUT: Duration = Duration::from_secs(10);
/// The PipeWire node's name, as `pw-top` and session managers show it.
pub const NODE_NAME: &str = "confab-share";

/// Resolves once `cancel` is set.
async fn cancelled(cancel: &AtomicBool) {
    while !cancel.load(Ordering::Relaxed) {
        async_io::Timer::after(Duration::from_millis(50)).await;
    }
}

/// Whether this is a Wayland session.
pub fn wayland_session() -> bool {
    std::env::var_os("WAYLAND_DISPLAY").is_some()
        || std::env::var("XDG_SESSION_TYPE").is_ok_and(|t| t == "wayland")
}

/// Whether the desktop portal on the session bus can cast a screen or a window (a Wayland
/// desktop with a ScreenCast back-end: GNOME, KDE, wlroots with xdg-desktop-portal-wlr).
pub fn available() -> bool {
    let ask = async {
        let conn = ashpd::zbus::Connection::session().await.ok()?;
        let cast = Screencast::with_connection(conn).await.ok()?;
        let types = cast.available_source_types().await.ok()?;
        Some(types.intersects(SourceType::Monitor | SourceType::Window))
    };
    async_io::block_on(within(ASK_TIMEOUT, ask))
        .flatten()
        .unwrap_or(false)
}

/// `fut`, or `None` once `limit` has passed.
async fn within<T>(limit: Duration, fut: impl Future<Output = T>) -> Option<T> {
    futures_lite::future::or(async { Some(fut.await) }, async {
        async_io::Timer::after(limit).await;
        None
    })
    .await
}

fn portal_error(step: &str, e: ashpd::Error) -> MediaError {
    MediaError::Device(match e {
        ashpd::Error::Response(ResponseError::Cancelled) => {
            return MediaError::Cancelled("nothing was shared: the choice was cancelled".into())
        }
        ashpd::Error::PortalNotFound(_) => {
            "this desktop's portal cannot share screens (no ScreenCast back-end)".into()
        }
        e => format!("the desktop portal could not {step}: {e}"),
    })
}

/// A screen cast the person chose: the portal session (closed when dropped) and what PipeWire
/// needs to read it.
struct Cast {
    session: Closing,
    node: u32,
    remote: OwnedFd,
    /// "screen" or "window", as the portal says.
    what: &'static str,
}

impl Cast {
    /// Asks the portal for a screen or window: the desktop shows its picker. Given up as
    /// [`MediaError::Cancelled`] once `cancel` is set, whatever step it is at (the session,
    /// if there is one yet, is closed on the way out).
    async fn choose(cancel: &AtomicBool) -> Result<Cast, MediaError> {
        futures_lite::future::or(Cast::ask(), async {
            cancelled(cancel).await;
            Err(MediaError::Cancelled(
                "nothing was shared: sharing was stopped before anything was chosen".into(),
            ))
        })
        .await
    }

    async fn ask() -> Result<Cast, MediaError> {
        let setup = async {
            let conn = ashpd::zbus::Connection::session().await.map_err(|e| {
                MediaError::Device(format!("no session bus to reach the portal: {e}"))
            })?;
            let cast = Screencast::with_connection(conn)
                .await
                .map_err(|e| portal_error("be reached", e))?;
            let types = cast
                .available_source_types()
                .await
                .map_err(|e| portal_error("say what it can share", e))?
                & (SourceType::Monitor | SourceType::Window);
            if types.is_empty() {
                return Err(MediaError::Device(
                    "this desktop's portal shares neither screens nor windows".into(),
                ));
            }
            let session = cast
                .create_session(Default::default())
                .await
                .map_err(|e| portal_error("open a session", e))?;
            // From here on, every way out closes the session, taking the desktop's picker
            // with it.
            let session = Closing(session);
            let mut select = SelectSourcesOptions::default()
                .set_sources(types)
                .set_multiple(false);
            // Portal version 2 and later say which cursor modes they have; the cursor is drawn
            // in where it can be (people point at what they show).
            if let Ok(modes) = cast.available_cursor_modes().await {
                if modes.contains(CursorMode::Embedded) {
                    select = select.set_cursor_mode(CursorMode::Embedded);
                }
            }
            cast.select_sources(&session.0, select)
                .await
                .and_then(|r| r.response())
                .map_err(|e| portal_error("offer screens and windows", e))?;
            Ok((cast, session))
        };
        let (cast, session) = within(SETUP_TIMEOUT, setup).await.ok_or_else(|| {
            MediaError::Device(format!(
                "the desktop portal did not answer within {} s",
                SETUP_TIMEOUT.as_secs()
            ))
        })??;
        let pick = async {
            let streams = cast
                .start(&session.0, None, StartCastOptions::default())
                .await
                .and_then(|r| r.response())
                .map_err(|e| portal_error("start sharing", e))?;
            let stream = streams.streams().first().ok_or_else(|| {
                MediaError::Device("the desktop portal started sharing nothing".into())
            })?;
            let what = match stream.source_type() {
                Some(SourceType::Window) => "window",
                _ => "screen",
            };
            let remote = cast
                .open_pipe_wire_remote(&session.0, OpenPipeWireRemoteOptions::default())
                .await
                .map_err(|e| portal_error("open the video stream", e))?;
            Ok::<_, MediaError>((stream.pipe_wire_node_id(), what, remote))
        };
        let (node, what, remote) = within(PICK_TIMEOUT, pick).await.ok_or_else(|| {
            MediaError::Device(format!(
                "nothing was chosen to share within {} s",
                PICK_TIMEOUT.as_secs()
            ))
        })??;
        Ok(Cast {
            session,
            node,
            remote,
            what,
        })
    }
}

/// A portal session, closed when dropped.
struct Closing(Session<Screencast>);

impl Drop for Closing {
    fn drop(&mut self) {
        // A portal that does not answer must not hold the share's thread.
        let _ = async_io::block_on(within(ASK_TIMEOUT, self.0.close()));
    }
}

/// What the stream's callbacks leave for the share's loop.
#[derive(Default)]
struct Seen {
    format: Option<(PwFormat, usize, usize)>,
    /// The newest buffer the compositor sent, kept out of the stream (not queued back) until
    /// the share's loop reads it or a newer one comes: nothing is copied for a picture that
    /// is never sent.
    held: Option<NonNull<pw::sys::pw_buffer>>,
    /// Why the stream ended, once it has.
    ended: Option<String>,
}

/// The picture in a buffer of `format`, as a share picture.
///
/// # Safety
/// `buf` was dequeued from a stream connected with `MAP_BUFFERS` and is not queued back yet.
unsafe fn read_buffer(
    buf: NonNull<pw::sys::pw_buffer>,
    format: (PwFormat, usize, usize),
) -> Option<VideoFrame> {
    let spa_buf = buf.as_ref().buffer;
    if spa_buf.is_null() || (*spa_buf).n_datas == 0 || (*spa_buf).datas.is_null() {
        return None;
    }
    // `Data` is a transparent wrapper of `spa_data`, as pipewire's own `Buffer` reads it.
    let data = &mut *((*spa_buf).datas as *mut spa::buffer::Data);
    let chunk = data.chunk();
    let (offset, stride, size) = (
        chunk.offset() as usize,
        chunk.stride().max(0) as usize,
        chunk.size() as usize,
    );
    // An empty chunk (a cursor-only update) carries no picture.
    if size == 0 || chunk.flags().contains(spa::buffer::ChunkFlags::CORRUPTED) {
        return None;
    }
    let stride = if stride == 0 { format.1 * 4 } else { stride };
    let rgba = packed_to_rgba(data.data()?, offset, stride, format)?;
    to_share_frame(&rgba, format.1, format.2)
}

/// The PipeWire side of a cast: a connection through the portal's remote, and one stream.
/// PipeWire's loop is entered from creation to drop (see the module's notes).
struct Reader {
    /// Dropped first: listeners, then what they listen to.
    objects: Option<Objects>,
    main_loop: pw::main_loop::MainLoopRc,
}

/// Fields drop in this order: each listener before its object.
struct Objects {
    _listener: pw::stream::StreamListener<()>,
    stream: pw::stream::StreamRc,
    _gone: pw::registry::Listener,
    _registry: pw::registry::RegistryRc,
    seen: Rc<RefCell<Seen>>,
}

/// The formats offered to the compositor: packed 8-bit RGB in any order, any size, any rate.
fn enum_format() -> Result<Vec<u8>, MediaError> {
    let obj = pod::object!(
        SpaTypes::ObjectParamFormat,
        ParamType::EnumFormat,
        pod::property!(FormatProperties::MediaType, Id, MediaType::Video),
        pod::property!(FormatProperties::MediaSubtype, Id, MediaSubtype::Raw),
        pod::property!(
            FormatProperties::VideoFormat,
            Choice,
            Enum,
            Id,
            PwFormat::BGRx,
            PwFormat::BGRx,
            PwFormat::BGRA,
            PwFormat::RGBx,
            PwFormat::RGBA
        ),
        pod::property!(
            FormatProperties::VideoSize,
            Choice,
            Range,
            Rectangle,
            Rectangle {
                width: 1280,
                height: 720
            },
            Rectangle {
                width: 1,
                height: 1
            },
            Rectangle {
                width: 8192,
                height: 8192
            }
        ),
        pod::property!(
            FormatProperties::VideoFramerate,
            Choice,
            Range,
            Fraction,
            Fraction { num: 30, denom: 1 },
            Fraction { num: 0, denom: 1 },
            Fraction {
                num: 1000,
                denom: 1
            }
        ),
    );
    PodSerializer::serialize(std::io::Cursor::new(Vec::new()), &pod::Value::Object(obj))
        .map(|(c, _)| c.into_inner())
        .map_err(|e| MediaError::Device(format!("the PipeWire format offer: {e:?}")))
}

/// The bytes of a picture of `format` in a buffer: rows of `stride` bytes from `offset`, 4
/// bytes a pixel, the last row no longer than the picture. `None` when the numbers do not fit
/// the buffer, or the format is not one offered.
fn picture_bytes(
    data: &[u8],
    offset: usize,
    stride: usize,
    (format, w, h): (PwFormat, usize, usize),
) -> Option<&[u8]> {
    if !matches!(
        format,
        PwFormat::BGRx | PwFormat::BGRA | PwFormat::RGBx | PwFormat::RGBA
    ) {
        return None;
    }
    let row = w.checked_mul(4)?;
    if w == 0 || h == 0 || stride < row {
        return None;
    }
    let end = offset
        .checked_add(stride.checked_mul(h - 1)?)?
        .checked_add(row)?;
    data.get(offset..end)
}

/// The picture in a buffer of `format` (see [`picture_bytes`]) as tightly packed RGBA.
fn packed_to_rgba(
    data: &[u8],
    offset: usize,
    stride: usize,
    (format, w, h): (PwFormat, usize, usize),
) -> Option<Vec<u8>> {
    let pixels = picture_bytes(data, offset, stride, (format, w, h))?;
    let bgr = matches!(format, PwFormat::BGRx | PwFormat::BGRA);
    let row = w * 4;
    let mut out = Vec::with_capacity(row * h);
    for y in 0..h {
        for px in pixels[y * stride..y * stride + row].chunks_exact(4) {
            let (r, b) = if bgr { (px[2], px[0]) } else { (px[0], px[2]) };
            out.extend_from_slice(&[r, px[1], b, 255]);
        }
    }
    Some(out)
}

impl Reader {
    fn connect(remote: OwnedFd, node: u32) -> Result<Reader, MediaError> {
        let pw_err = |what: &str, e: pw::Error| MediaError::Device(format!("PipeWire {what}: {e}"));
        pw::init();
        let main_loop = pw::main_loop::MainLoopRc::new(None).map_err(|e| pw_err("loop", e))?;
        // Entered until the reader is dropped (which leaves it, whatever fails below): the
        // stream's callbacks are then always handed to this thread.
        // SAFETY: entered on this thread, left on this thread in `Drop`, after every object
        // made below is gone; between the two the loop is only iterated here.
        unsafe { main_loop.loop_().enter() };
        let mut reader = Reader {
            objects: None,
            main_loop,
        };
        reader.objects = Some(Objects::make(&reader.main_loop, remote, node)?);
        Ok(reader)
    }
}

impl Objects {
    fn make(
        main_loop: &pw::main_loop::MainLoopRc,
        remote: OwnedFd,
        node: u32,
    ) -> Result<Objects, MediaError> {
        let pw_err = |what: &str, e: pw::Error| MediaError::Device(format!("PipeWire {what}: {e}"));
        let context =
            pw::context::ContextRc::new(main_loop, None).map_err(|e| pw_err("context", e))?;
        let core = context
            .connect_fd_rc(remote, None)
            .map_err(|e| pw_err("connection through the portal", e))?;
        let seen = Rc::new(RefCell::new(Seen::default()));
        // The chosen node going away is the desktop ending the cast (its "stop sharing"
        // button, the shared window closed): through the portal's connection, that node is
        // the only one there is to see.
        let registry = core.get_registry_rc().map_err(|e| pw_err("registry", e))?;
        let gone = registry
            .add_listener_local()
            .global_remove({
                let seen = seen.clone();
                move |id| {
                    if id == node {
                        seen.borrow_mut()
                            .ended
                            .get_or_insert_with(|| "the desktop ended the share".into());
                    }
                }
            })
            .register();
        let stream = pw::stream::StreamRc::new(
            core,
            "Confab screen share",
            pw::properties::properties! {
                *pw::keys::MEDIA_TYPE => "Video",
                *pw::keys::MEDIA_CATEGORY => "Capture",
                *pw::keys::MEDIA_ROLE => "Screen",
                *pw::keys::NODE_NAME => NODE_NAME,
                // Only the chosen node: never linked to another (a camera) when it goes away.
                "node.dont-reconnect" => "true",
            },
        )
        .map_err(|e| pw_err("stream", e))?;
        let listener = stream
            .add_local_listener::<()>()
            .state_changed({
                let seen = seen.clone();
                move |_, _, _, new| {
                    let why = match new {
                        StreamState::Error(e) => format!("the shared video failed: {e}"),
                        StreamState::Unconnected => "the desktop stopped the share".into(),
                        _ => return,
                    };
                    seen.borrow_mut().ended.get_or_insert(why);
                }
            })
            .param_changed({
                let seen = seen.clone();
                move |_, _, id, param| {
                    let Some(param) = param else { return };
                    if id != ParamType::Format.as_raw() {
                        return;
                    }
                    let mut info = VideoInfoRaw::new();
                    if info.parse(param).is_ok() {
                        let size = info.size();
                        seen.borrow_mut().format =
                            Some((info.format(), size.width as usize, size.height as usize));
                    }
                }
            })
            .process({
                let seen = seen.clone();
                move |stream, _| {
                    let mut seen = seen.borrow_mut();
                    // The newest buffer is kept; older ones go straight back to the compositor.
                    // SAFETY: buffers are dequeued from this stream and queued back to it (or
                    // kept in `held` until the share's loop reads them).
                    while let Some(b) = NonNull::new(unsafe { stream.dequeue_raw_buffer() }) {
                        if let Some(older) = seen.held.replace(b) {
                            unsafe { stream.queue_raw_buffer(older.as_ptr()) };
                        }
                    }
                }
            })
            // A buffer the stream takes away (a new format) is no longer ours to read.
            .remove_buffer({
                let seen = seen.clone();
                move |_, _, gone| {
                    let mut seen = seen.borrow_mut();
                    if seen.held.is_some_and(|b| b.as_ptr() == gone) {
                        seen.held = None;
                    }
                }
            })
            .register()
            .map_err(|e| pw_err("listener", e))?;
        let offer = enum_format()?;
        let offer = Pod::from_bytes(&offer)
            .ok_or_else(|| MediaError::Device("the PipeWire format offer".into()))?;
        stream
            .connect(
                Direction::Input,
                Some(node),
                StreamFlags::AUTOCONNECT | StreamFlags::MAP_BUFFERS,
                &mut [offer],
            )
            .map_err(|e| pw_err("stream connection", e))?;
        Ok(Objects {
            _listener: listener,
            stream,
            _gone: gone,
            _registry: registry,
            seen,
        })
    }
}

impl Reader {
    /// What the callbacks left (a reader is only handed out with its objects).
    fn seen(&self) -> Option<std::cell::RefMut<'_, Seen>> {
        self.objects.as_ref().map(|o| o.seen.borrow_mut())
    }

    /// Runs PipeWire's loop for at most `wait`.
    fn turn(&self, wait: Duration) {
        // SAFETY: the loop was entered on this thread when the reader was made.
        unsafe {
            self.main_loop
                .loop_()
                .iterate_unguarded(pw::loop_::Timeout::Finite(wait));
        }
    }

    /// The newest picture, once.
    fn picture(&self) -> Option<VideoFrame> {
        let o = self.objects.as_ref()?;
        let (held, format) = {
            let mut seen = o.seen.borrow_mut();
            (seen.held.take()?, seen.format)
        };
        // SAFETY: `held` came from this stream (mapped) and was not queued back; it goes back
        // right after.
        let picture = format.and_then(|f| unsafe { read_buffer(held, f) });
        unsafe { o.stream.queue_raw_buffer(held.as_ptr()) };
        picture
    }

    /// Why the stream ended, if it has.
    fn ended(&self) -> Option<String> {
        match self.seen() {
            Some(seen) => seen.ended.clone(),
            None => Some("the shared video is gone".into()),
        }
    }

    /// The first picture, within [`FIRST_PICTURE`] (given up once `cancel` is set).
    fn first(&self, cancel: &AtomicBool) -> Result<VideoFrame, MediaError> {
        let deadline = Instant::now() + FIRST_PICTURE;
        loop {
            if cancel.load(Ordering::Relaxed) {
                return Err(MediaError::Cancelled(
                    "nothing was shared: sharing was stopped before its first picture".into(),
                ));
            }
            if let Some(f) = self.picture() {
                return Ok(f);
            }
            if let Some(why) = self.ended() {
                return Err(MediaError::Device(why));
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(MediaError::Device(format!(
                    "the chosen screen or window sent no picture within {} s",
                    FIRST_PICTURE.as_secs()
                )));
            }
            self.turn((deadline - now).min(Duration::from_millis(50)));
        }
    }

    /// Publishes pictures at `fps` until `stop` is set or the stream ends: the newest one, or
    /// the last one again while the screen is still.
    fn run(&self, first: VideoFrame, fps: f32, bus: &FrameBus, stop: &AtomicBool) {
        let period = Duration::from_secs_f64(1.0 / f64::from(fps));
        let mut last = first;
        let mut next = Instant::now();
        while !stop.load(Ordering::Relaxed) {
            if let Some(why) = self.ended() {
                tracing::info!("{why}");
                return;
            }
            let now = Instant::now();
            if now >= next {
                // The newest picture, converted only when it is due.
                if let Some(f) = self.picture() {
                    last = f;
                }
                let mut f = last.clone();
                f.timestamp_us = now_us();
                bus.publish(f);
                next += period;
                // Behind by more than a picture (a stalled machine): start afresh.
                if next < now {
                    next = now + period;
                }
            }
            self.turn(next.saturating_duration_since(Instant::now()).min(period));
        }
    }
}

impl Drop for Reader {
    fn drop(&mut self) {
        if let Some(o) = self.objects.take() {
            if let Some(held) = o.seen.borrow_mut().held.take() {
                // SAFETY: dequeued from this stream, not queued back yet.
                unsafe { o.stream.queue_raw_buffer(held.as_ptr()) };
            }
            let _ = o.stream.disconnect();
            drop(o);
        }
        // SAFETY: entered on this thread in `connect`; everything made on the loop is gone.
        unsafe { self.main_loop.loop_().leave() };
    }
}

/// Starts a share of whatever the person picks in the desktop's picker, publishing into `bus`
/// at `want.fps`; `ended` is set when it stops by itself (the desktop ended it). Answers what
/// is shared in words ("the chosen screen", "the chosen window") and the first picture's
/// format.
pub(super) fn start(
    want: VideoFormat,
    bus: Arc<FrameBus>,
    ended: Arc<AtomicBool>,
    cancel: Arc<AtomicBool>,
) -> Result<(Worker, (String, VideoFormat)), MediaError> {
    let fps = want.fps.clamp(1.0, 30.0);
    Worker::start(
        "screen share",
        // Every step has its own deadline; this one only catches a step that ignores its own.
        SETUP_TIMEOUT + PICK_TIMEOUT + FIRST_PICTURE + ASK_TIMEOUT * 2,
        move || {
            let Cast {
                session,
                node,
                remote,
                what,
            } = async_io::block_on(Cast::choose(&cancel))?;
            let reader = Reader::connect(remote, node)?;
            let first = reader.first(&cancel)?;
            let format = VideoFormat {
                width: first.width,
                height: first.height,
                fps,
            };
            let description = format!("the chosen {what}");
            Ok(((session, reader, first), (description, format)))
        },
        move |(session, reader, first), stop| {
            reader.run(first, fps, &bus, stop);
            ended.store(true, Ordering::Relaxed);
            // The stream first, then the portal session (the desktop's indicator goes away).
            drop(reader);
            drop(session);
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pattern;

    fn bgrx_of(frame: &VideoFrame, stride: usize, offset: usize) -> Vec<u8> {
        let rgba = crate::convert::to_rgba(frame);
        let mut out = vec![7u8; offset + stride * frame.height];
        for y in 0..frame.height {
            for x in 0..frame.width {
                let s = &rgba[(y * frame.width + x) * 4..][..4];
                let d = &mut out[offset + y * stride + x * 4..][..4];
                d.copy_from_slice(&[s[2], s[1], s[0], 0]);
            }
        }
        out
    }

    #[test]
    fn a_padded_bgrx_picture_reads_back_as_its_pattern() {
        let f = pattern::numbered(640, 360, 41);
        let data = bgrx_of(&f, 640 * 4 + 64, 128);
        let rgba = packed_to_rgba(&data, 128, 640 * 4 + 64, (PwFormat::BGRx, 640, 360)).unwrap();
        let out = to_share_frame(&rgba, 640, 360).unwrap();
        assert_eq!(pattern::read(&out).map(|s| s.frame), Some(41));
    }

    #[test]
    fn a_compositor_buffer_too_short_for_its_numbers_is_dropped() {
        let data = vec![0u8; 640 * 4 * 360];
        let format = (PwFormat::BGRx, 640, 360);
        assert!(packed_to_rgba(&data, 0, 640 * 4, format).is_some());
        // One byte of offset, a wider stride, a narrower stride, a huge one: all refused.
        assert!(packed_to_rgba(&data, 1, 640 * 4, format).is_none());
        assert!(packed_to_rgba(&data, 0, 640 * 4 + 4, format).is_none());
        assert!(packed_to_rgba(&data, 0, 640 * 4 - 4, format).is_none());
        assert!(packed_to_rgba(&data, 0, usize::MAX / 2, format).is_none());
        assert!(packed_to_rgba(&data, usize::MAX, 640 * 4, format).is_none());
        assert!(packed_to_rgba(&data, 0, 0, (PwFormat::BGRx, 0, 0)).is_none());
        assert!(packed_to_rgba(&data, 0, 640 * 4, (PwFormat::NV12, 640, 360)).is_none());
    }

    #[test]
    fn rgb_orders_are_told_apart() {
        let px = [10u8, 20, 30, 0];
        assert_eq!(
            packed_to_rgba(&px, 0, 4, (PwFormat::BGRx, 1, 1)).unwrap(),
            [30, 20, 10, 255]
        );
        assert_eq!(
            packed_to_rgba(&px, 0, 4, (PwFormat::RGBA, 1, 1)).unwrap(),
            [10, 20, 30, 255]
        );
    }
}
