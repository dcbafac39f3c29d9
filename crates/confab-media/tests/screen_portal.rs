//! Sharing on a Wayland desktop through the desktop portal's ScreenCast and PipeWire.
//!
//! Real: the D-Bus session bus (dbus-daemon), the PipeWire daemon, Confab's portal client
//! (ashpd) and PipeWire consumer. Stood in for: the compositor's stream of the screen, by a
//! PipeWire video source in this test made as mutter makes its own (a node that drives itself,
//! one picture per frame time in shared memory, here the numbered test pattern in BGRx); the
//! desktop portal, by a D-Bus service in this test speaking the portal's ScreenCast
//! interface as xdg-desktop-portal does (requests answered by `Response` signals, a session
//! object, a PipeWire connection handed over as a file descriptor), and the session manager,
//! by `pw-link` joining the screen's node to Confab's once it shows up. The real portal cannot
//! run here: its wlroots back-end cannot cast from a headless compositor without a GPU, and
//! GNOME's and KDE's need their sessions.
//!
//! Checked: the picker's list is the one "Screen or window" entry; a share reads the pattern
//! back with its numbers moving; stopping closes the portal session (the desktop's "you are
//! sharing" indicator goes with it) and the screen's stream; a choice cancelled in the
//! desktop's picker is a `Cancelled` error, with the session closed, and so is a picker given
//! up (the call ended while the person had not chosen); a stream the desktop ends ends the
//! share. Linux only; pipewire, pipewire-bin (`pw-link`) and dbus-daemon are Debian
//! packages `cargo xtask test` installs.
#![cfg(target_os = "linux")]

mod screen_common;

use anyhow::{bail, Context, Result};
use confab_media::device::screen::{self, ShareKind};
use confab_media::device::{share_source, FrameBus, VideoCapture, VideoFormat};
use confab_media::{convert, pattern, MediaError};
use screen_common::{assert_moving, private_bus, read_frames, Killed, Removed};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use zbus::zvariant::{ObjectPath, OwnedObjectPath, OwnedValue, Value};

/// The screen's size and frame rate, and how many numbered pictures it loops through.
const SCREEN: (usize, usize) = (640, 360);
const SCREEN_FPS: u32 = 10;
const PICTURES: u32 = 100;
/// The screen's PipeWire node.
const SCREEN_NODE: &str = "confab-test-screen";

/// What the stand-in portal does and has seen.
#[derive(Default)]
struct Desk {
    /// The next `Start` is cancelled, as a person closing the picker.
    cancel_next: bool,
    /// The next `Start` is not answered, as a person who has not chosen yet.
    hold_next: bool,
    /// The screen's stream, while a cast runs.
    screen: Option<Screen>,
    sessions_opened: usize,
    /// `Start` calls: the desktop's picker shown.
    pickers: usize,
    sessions_closed: usize,
}

/// The stand-in's world: where PipeWire listens, the pictures, and the shared state.
#[derive(Clone)]
struct World {
    run: PathBuf,
    desk: Arc<Mutex<Desk>>,
}

impl World {
    fn desk(&self) -> std::sync::MutexGuard<'_, Desk> {
        self.desk.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn pw(&self, program: &str) -> Command {
        let mut c = Command::new(program);
        c.env("XDG_RUNTIME_DIR", &self.run)
            .stdin(Stdio::null())
            .stderr(Stdio::null());
        c
    }

    /// Starts the screen's stream and answers its node id.
    fn start_screen(&self) -> Result<u32> {
        let (screen, node) = Screen::start(self.run.join("pipewire-0"))?;
        self.desk().screen = Some(screen);
        Ok(node)
    }

    /// The first port of the node `node` in `pw-link`'s list (`-o` outputs, `-i` inputs).
    fn port(&self, which: &str, node: &str) -> Option<String> {
        let out = self.pw("pw-link").arg(which).output().ok()?;
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::trim)
            .find(|l| l.starts_with(&format!("{node}:")))
            .map(str::to_string)
    }

    /// The session manager's part: once Confab's stream shows up, link the screen to it.
    fn link_when_ready(&self) {
        let world = self.clone();
        std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let (Some(out), Some(inp)) = (
                    world.port("-o", SCREEN_NODE),
                    world.port("-i", confab_media::device::portal::NODE_NAME),
                ) {
                    let _ = world.pw("pw-link").args([&out, &inp]).status();
                    return;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        });
    }
}

/// The screen's stream, as a compositor makes it: a PipeWire video source node that drives
/// itself, one picture per frame time (the numbered pattern, BGRx, in shared memory). Runs on
/// a thread of its own until dropped.
struct Screen {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Screen {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Screen {
    /// Starts the stream on PipeWire's socket `socket`; answers it once its node has an id.
    fn start(socket: PathBuf) -> Result<(Screen, u32)> {
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, rx) = std::sync::mpsc::channel();
        let thread = std::thread::spawn({
            let stop = stop.clone();
            move || {
                if let Err(e) = Screen::run(&socket, &stop, &tx) {
                    let _ = tx.send(Err(e));
                }
            }
        });
        let screen = Screen {
            stop,
            thread: Some(thread),
        };
        let node = rx
            .recv_timeout(Duration::from_secs(10))
            .context("the screen's stream did not get a node within 10 s")??;
        Ok((screen, node))
    }

    fn run(
        socket: &Path,
        stop: &AtomicBool,
        node: &std::sync::mpsc::Sender<Result<u32>>,
    ) -> Result<()> {
        use pipewire as pw;
        let pictures: Vec<Vec<u8>> = (0..PICTURES)
            .map(|n| {
                let stamp = pattern::Stamp {
                    frame: n,
                    capture_us: 0,
                };
                let rgba = convert::to_rgba(&pattern::frame(SCREEN.0, SCREEN.1, stamp, 0));
                rgba.chunks_exact(4)
                    .flat_map(|p| [p[2], p[1], p[0], 0])
                    .collect()
            })
            .collect();
        pw::init();
        let main_loop = pw::main_loop::MainLoopRc::new(None)?;
        // Entered for the stream's life, so that its callbacks run on this thread (see
        // `device::portal`); left once everything made on it is gone.
        // SAFETY: entered and left on this thread, iterated only here in between.
        unsafe { main_loop.loop_().enter() };
        let ran = Screen::stream(&main_loop, socket, stop, node, pictures);
        unsafe { main_loop.loop_().leave() };
        ran
    }

    fn stream(
        main_loop: &pipewire::main_loop::MainLoopRc,
        socket: &Path,
        stop: &AtomicBool,
        node: &std::sync::mpsc::Sender<Result<u32>>,
        pictures: Vec<Vec<u8>>,
    ) -> Result<()> {
        use pipewire as pw;
        use pw::spa;
        use spa::pod::{self, serialize::PodSerializer, Pod, Value as PodValue};
        let stride = SCREEN.0 * 4;
        let size = stride * SCREEN.1;
        let serialize = |v: PodValue| {
            PodSerializer::serialize(std::io::Cursor::new(Vec::new()), &v)
                .map(|(c, _)| c.into_inner())
                .map_err(|e| anyhow::anyhow!("a pod: {e:?}"))
        };
        let context = pw::context::ContextRc::new(main_loop, None)?;
        let core = context.connect_fd_rc(
            std::os::unix::net::UnixStream::connect(socket)?.into(),
            None,
        )?;
        let stream = pw::stream::StreamRc::new(
            core,
            "Test screen",
            pw::properties::properties! {
                *pw::keys::MEDIA_CLASS => "Video/Source",
                *pw::keys::NODE_NAME => SCREEN_NODE,
            },
        )?;
        let buffers = serialize(PodValue::Object(pod::Object {
            type_: spa::utils::SpaTypes::ObjectParamBuffers.as_raw(),
            id: spa::param::ParamType::Buffers.as_raw(),
            properties: vec![
                pod::Property::new(spa::sys::SPA_PARAM_BUFFERS_buffers, PodValue::Int(4)),
                pod::Property::new(spa::sys::SPA_PARAM_BUFFERS_blocks, PodValue::Int(1)),
                pod::Property::new(spa::sys::SPA_PARAM_BUFFERS_size, PodValue::Int(size as i32)),
                pod::Property::new(
                    spa::sys::SPA_PARAM_BUFFERS_stride,
                    PodValue::Int(stride as i32),
                ),
                pod::Property::new(
                    spa::sys::SPA_PARAM_BUFFERS_dataType,
                    PodValue::Int(1 << spa::sys::SPA_DATA_MemFd),
                ),
            ],
        }))?;
        let mut n = 0u32;
        let _listener = stream
            .add_local_listener::<()>()
            .param_changed(move |stream, _, id, param| {
                if id == spa::param::ParamType::Format.as_raw() && param.is_some() {
                    if let Some(b) = Pod::from_bytes(&buffers) {
                        let _ = stream.update_params(&mut [b]);
                    }
                }
            })
            .process(move |stream, _| {
                let Some(mut buffer) = stream.dequeue_buffer() else {
                    return;
                };
                let Some(data) = buffer.datas_mut().first_mut() else {
                    return;
                };
                if let Some(bytes) = data.data() {
                    if bytes.len() >= size {
                        bytes[..size].copy_from_slice(&pictures[(n % PICTURES) as usize]);
                        n += 1;
                    }
                }
                let chunk = data.chunk_mut();
                *chunk.offset_mut() = 0;
                *chunk.stride_mut() = stride as i32;
                *chunk.size_mut() = size as u32;
            })
            .register()?;
        let format = serialize(PodValue::Object(pod::object!(
            spa::utils::SpaTypes::ObjectParamFormat,
            spa::param::ParamType::EnumFormat,
            pod::property!(
                spa::param::format::FormatProperties::MediaType,
                Id,
                spa::param::format::MediaType::Video
            ),
            pod::property!(
                spa::param::format::FormatProperties::MediaSubtype,
                Id,
                spa::param::format::MediaSubtype::Raw
            ),
            pod::property!(
                spa::param::format::FormatProperties::VideoFormat,
                Id,
                spa::param::video::VideoFormat::BGRx
            ),
            pod::property!(
                spa::param::format::FormatProperties::VideoSize,
                Rectangle,
                spa::utils::Rectangle {
                    width: SCREEN.0 as u32,
                    height: SCREEN.1 as u32
                }
            ),
            pod::property!(
                spa::param::format::FormatProperties::VideoFramerate,
                Fraction,
                spa::utils::Fraction {
                    num: SCREEN_FPS,
                    denom: 1
                }
            ),
        )))?;
        stream.connect(
            spa::utils::Direction::Output,
            None,
            pw::stream::StreamFlags::DRIVER | pw::stream::StreamFlags::MAP_BUFFERS,
            &mut [Pod::from_bytes(&format).context("the format pod")?],
        )?;
        let period = Duration::from_secs(1) / SCREEN_FPS;
        let mut next = Instant::now();
        let mut told = false;
        while !stop.load(Ordering::Relaxed) {
            // SAFETY: the loop is entered on this thread (`run`).
            unsafe {
                main_loop
                    .loop_()
                    .iterate_unguarded(pw::loop_::Timeout::Finite(Duration::from_millis(10)));
            }
            if !told && stream.node_id() != u32::MAX {
                told = true;
                let _ = node.send(Ok(stream.node_id()));
            }
            // A compositor's stream: a new picture each frame time, pushed by the source.
            if Instant::now() >= next {
                next += period;
                if stream.state() == pw::stream::StreamState::Streaming {
                    let _ = stream.trigger_process();
                }
            }
        }
        let _ = stream.disconnect();
        Ok(())
    }
}

/// A request's or session's object path, as xdg-desktop-portal makes it from the caller's
/// unique name and the token it chose.
fn handle_path(
    kind: &str,
    sender: &str,
    options: &HashMap<String, OwnedValue>,
    key: &str,
) -> String {
    let token = options
        .get(key)
        .and_then(|v| String::try_from(v.clone()).ok())
        .unwrap_or_else(|| "t".into());
    let sender = sender.trim_start_matches(':').replace('.', "_");
    format!("/org/freedesktop/portal/desktop/{kind}/{sender}/{token}")
}

/// Who asks (the caller's unique name) and the path of the request the call makes.
fn asked(
    header: &zbus::message::Header<'_>,
    options: &HashMap<String, OwnedValue>,
) -> (String, String) {
    let sender = header.sender().map(|s| s.to_string()).unwrap_or_default();
    let request = handle_path("request", &sender, options, "handle_token");
    (sender, request)
}

fn object_path(path: String) -> zbus::fdo::Result<OwnedObjectPath> {
    Ok(ObjectPath::try_from(path)
        .map_err(zbus::Error::from)?
        .into())
}

/// Answers a request: its `Response` signal, a moment after the call returns (a portal
/// answers once the person has chosen).
fn respond(
    conn: &zbus::Connection,
    to: String,
    request: String,
    code: u32,
    results: HashMap<String, OwnedValue>,
) {
    let conn = conn.clone();
    std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(50));
        let _ = zbus::block_on(conn.emit_signal(
            Some(to.as_str()),
            request.as_str(),
            "org.freedesktop.portal.Request",
            "Response",
            &(code, results),
        ));
    });
}

struct ScreenCast(World);

#[zbus::interface(name = "org.freedesktop.portal.ScreenCast")]
impl ScreenCast {
    #[zbus(property, name = "version")]
    fn version(&self) -> u32 {
        5
    }

    #[zbus(property)]
    fn available_source_types(&self) -> u32 {
        1 | 2
    }

    #[zbus(property)]
    fn available_cursor_modes(&self) -> u32 {
        1 | 2
    }

    async fn create_session(
        &self,
        options: HashMap<String, OwnedValue>,
        #[zbus(header)] header: zbus::message::Header<'_>,
        #[zbus(connection)] conn: &zbus::Connection,
    ) -> zbus::fdo::Result<OwnedObjectPath> {
        let (sender, request) = asked(&header, &options);
        let session = handle_path("session", &sender, &options, "session_handle_token");
        conn.object_server()
            .at(session.as_str(), SessionObject(self.0.clone()))
            .await?;
        self.0.desk().sessions_opened += 1;
        let results = HashMap::from([(
            "session_handle".to_string(),
            OwnedValue::try_from(Value::from(session.clone())).map_err(zbus::Error::from)?,
        )]);
        respond(conn, sender, request.clone(), 0, results);
        object_path(request)
    }

    async fn select_sources(
        &self,
        _session: ObjectPath<'_>,
        options: HashMap<String, OwnedValue>,
        #[zbus(header)] header: zbus::message::Header<'_>,
        #[zbus(connection)] conn: &zbus::Connection,
    ) -> zbus::fdo::Result<OwnedObjectPath> {
        let (sender, request) = asked(&header, &options);
        // One source, a screen or a window, as Confab asks.
        let multiple = options
            .get("multiple")
            .and_then(|v| bool::try_from(v.clone()).ok());
        let types = options
            .get("types")
            .and_then(|v| u32::try_from(v.clone()).ok());
        let code = if multiple == Some(false) && types == Some(1 | 2) {
            0
        } else {
            2
        };
        respond(conn, sender, request.clone(), code, HashMap::new());
        object_path(request)
    }

    async fn start(
        &self,
        _session: ObjectPath<'_>,
        _parent_window: String,
        options: HashMap<String, OwnedValue>,
        #[zbus(header)] header: zbus::message::Header<'_>,
        #[zbus(connection)] conn: &zbus::Connection,
    ) -> zbus::fdo::Result<OwnedObjectPath> {
        let (sender, request) = asked(&header, &options);
        let (cancel, hold) = {
            let mut desk = self.0.desk();
            desk.pickers += 1;
            (
                std::mem::take(&mut desk.cancel_next),
                std::mem::take(&mut desk.hold_next),
            )
        };
        if hold {
            // The picker stays open.
        } else if cancel {
            // The person closed the picker: response 1, "cancelled by the user".
            respond(conn, sender, request.clone(), 1, HashMap::new());
        } else {
            let world = self.0.clone();
            let conn = conn.clone();
            let to = sender.clone();
            let req = request.clone();
            std::thread::spawn(move || {
                let Ok(node) = world.start_screen() else {
                    respond(&conn, to, req, 2, HashMap::new());
                    return;
                };
                let props: HashMap<String, Value> = HashMap::from([
                    ("source_type".to_string(), Value::from(1u32)),
                    (
                        "size".to_string(),
                        Value::from((SCREEN.0 as i32, SCREEN.1 as i32)),
                    ),
                ]);
                let streams = vec![(node, props)];
                let Ok(streams) = OwnedValue::try_from(Value::from(streams)) else {
                    return;
                };
                respond(
                    &conn,
                    to,
                    req,
                    0,
                    HashMap::from([("streams".to_string(), streams)]),
                );
            });
        }
        object_path(request)
    }

    async fn open_pipe_wire_remote(
        &self,
        _session: ObjectPath<'_>,
        _options: HashMap<String, OwnedValue>,
    ) -> zbus::fdo::Result<zbus::zvariant::OwnedFd> {
        let socket = std::os::unix::net::UnixStream::connect(self.0.run.join("pipewire-0"))
            .map_err(|e| zbus::fdo::Error::Failed(format!("PipeWire: {e}")))?;
        self.0.link_when_ready();
        Ok(std::os::fd::OwnedFd::from(socket).into())
    }
}

/// A portal session: closing it ends the cast, as a desktop does.
struct SessionObject(World);

#[zbus::interface(name = "org.freedesktop.portal.Session")]
impl SessionObject {
    #[zbus(property, name = "version")]
    fn version(&self) -> u32 {
        1
    }

    async fn close(
        &self,
        #[zbus(header)] header: zbus::message::Header<'_>,
        #[zbus(object_server)] server: &zbus::ObjectServer,
    ) -> zbus::fdo::Result<()> {
        {
            let mut desk = self.0.desk();
            desk.sessions_closed += 1;
            desk.screen = None;
        }
        if let Some(path) = header.path() {
            let _ = server.remove::<SessionObject, _>(path.to_owned()).await;
        }
        Ok(())
    }
}

/// The stand-in desktop: its bus, PipeWire, the portal on the bus.
struct Desktop {
    world: World,
    _portal: zbus::Connection,
    _pipewire: Killed,
    _bus: Killed,
    _dir: Removed,
    bus_address: String,
}

fn desktop() -> Result<Desktop> {
    use std::os::unix::fs::PermissionsExt;
    let dir = std::env::temp_dir().join(format!("confab-portal-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let removed = Removed(dir.clone());
    let run = dir.join("run");
    std::fs::create_dir_all(&run)?;
    std::fs::set_permissions(&run, std::fs::Permissions::from_mode(0o700))?;
    let (bus, bus_address) = private_bus(&dir)?;
    let pipewire = Killed(
        Command::new("pipewire")
            .env("XDG_RUNTIME_DIR", &run)
            .env("DBUS_SESSION_BUS_ADDRESS", &bus_address)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("pipewire (package pipewire) must be installed: `cargo xtask test` does")?,
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::os::unix::net::UnixStream::connect(run.join("pipewire-0")).is_err() {
        if Instant::now() > deadline {
            bail!("PipeWire did not start within 10 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let world = World {
        run,
        desk: Arc::default(),
    };
    let portal = zbus::block_on(async {
        zbus::connection::Builder::address(bus_address.as_str())?
            .name("org.freedesktop.portal.Desktop")?
            .serve_at("/org/freedesktop/portal/desktop", ScreenCast(world.clone()))?
            .build()
            .await
    })
    .context("the stand-in portal on the test's bus")?;
    Ok(Desktop {
        world,
        _portal: portal,
        _pipewire: pipewire,
        _bus: bus,
        _dir: removed,
        bus_address,
    })
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

/// Whether Confab's PipeWire stream is there (its input port listed).
fn confab_stream_there(world: &World) -> bool {
    world
        .port("-i", confab_media::device::portal::NODE_NAME)
        .is_some()
}

#[test]
fn a_screen_chosen_in_the_desktop_portal_is_shared_and_stopping_closes_the_session() -> Result<()> {
    let desk = desktop()?;
    let world = &desk.world;
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
    assert_eq!(world.desk().sessions_opened, 1);
    assert!(confab_stream_there(world));
    // Stopping closes the portal session and Confab's stream.
    drop(cap);
    wait_for("the session closed on stop", Duration::from_secs(5), || {
        world.desk().sessions_closed == 1
    })?;
    wait_for(
        "Confab's stream gone on stop",
        Duration::from_secs(5),
        || !confab_stream_there(world),
    )?;

    // The person cancels the desktop's picker: a Cancelled error, the session closed.
    world.desk().cancel_next = true;
    match VideoCapture::start(&spec, want, FrameBus::new()) {
        Err(MediaError::Cancelled(m)) => assert!(m.contains("cancelled"), "{m}"),
        Err(e) => bail!("a cancelled picker gave another error: {e}"),
        Ok(_) => bail!("a cancelled picker started a share"),
    }
    wait_for(
        "the cancelled session closed",
        Duration::from_secs(5),
        || world.desk().sessions_closed == 2,
    )?;

    // The call ends (or sharing is stopped) while the desktop's picker is still open: the
    // picker is given up at once, its session closed.
    world.desk().hold_next = true;
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
        || world.desk().pickers == 3,
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
        || world.desk().sessions_closed == 3,
    )?;

    // The desktop ends the cast (its "stop sharing" button): the share ends by itself.
    let cap = VideoCapture::start(&spec, want, FrameBus::new())?.context("a capture")?;
    assert!(!cap.ended());
    world.desk().screen = None;
    wait_for(
        "the share ended with the desktop's stream",
        Duration::from_secs(10),
        || cap.ended(),
    )?;
    // Confab closes the session by itself, before the share is dropped.
    wait_for(
        "the ended share's session closed",
        Duration::from_secs(5),
        || world.desk().sessions_closed == 4,
    )?;
    assert!(!confab_stream_there(world));
    drop(cap);
    Ok(())
}
