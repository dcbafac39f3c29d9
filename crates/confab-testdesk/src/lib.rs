//! A stand-in Wayland desktop for Confab's sharing tests (`confab-media`'s `screen_portal`,
//! the app's UI test of sharing through the desktop's picker). Test support only.
//!
//! Real: a D-Bus session bus of its own ([`private_bus`]: it starts no service, so a portal
//! installed on the machine stays out), a PipeWire daemon. Stood in for: the desktop portal,
//! by a D-Bus service speaking the portal's ScreenCast interface as xdg-desktop-portal does
//! (requests answered by `Response` signals, a session object, a PipeWire connection handed
//! over as a file descriptor); the compositor's stream of the screen, by a PipeWire video
//! source made as mutter makes its own (a node that drives itself, one picture per frame time
//! in shared memory, BGRx pictures the test paints, numbered as they go); and the session manager, by `pw-link`
//! joining the screen's node to the consumer's once it shows up. The real portals cannot run
//! on a headless machine (xdg-desktop-portal-wlr cannot cast from a compositor without a GPU;
//! GNOME's and KDE's need their sessions).
//!
//! What the stand-in portal does is steered through [`Desktop`]: the next picker cancelled
//! or left open, the cast ended by the desktop; and it counts sessions and pickers.
//! Linux only: pipewire-bin (the daemon, `pw-link`) and dbus-daemon are Debian packages
//! `cargo xtask test` installs.
#![cfg(target_os = "linux")]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use zbus::zvariant::{ObjectPath, OwnedObjectPath, OwnedValue, Value};

/// Why the stand-in desktop could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum DeskError {
    #[error("{0}")]
    Setup(String),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("PipeWire: {0}")]
    PipeWire(#[from] pipewire::Error),
    #[error("D-Bus: {0}")]
    Bus(#[from] zbus::Error),
}

pub type Result<T> = std::result::Result<T, DeskError>;

/// The screen's PipeWire node.
pub const SCREEN_NODE: &str = "confab-test-screen";

/// Paints picture `n` (BGRx, `width`×`height`).
pub type Paint = dyn Fn(u64) -> Vec<u8> + Send + Sync;

/// What the screen shows: picture 0, 1, 2… as `paint` makes them, at `fps`.
pub struct Pictures {
    pub width: usize,
    pub height: usize,
    pub fps: u32,
    pub paint: Arc<Paint>,
}

impl Pictures {
    /// Pictures painted in RGBA (tightly packed, `width`×`height`) by `rgba`, turned into the
    /// BGRx a compositor sends.
    pub fn from_rgba(
        width: usize,
        height: usize,
        fps: u32,
        rgba: impl Fn(u64) -> Vec<u8> + Send + Sync + 'static,
    ) -> Pictures {
        Pictures {
            width,
            height,
            fps,
            paint: Arc::new(move |n| {
                rgba(n)
                    .chunks_exact(4)
                    .flat_map(|p| [p[2], p[1], p[0], 0])
                    .collect()
            }),
        }
    }
}

/// A child process, killed and reaped when dropped.
pub struct Killed(pub Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A folder removed when dropped (after the processes using it: declared after them).
pub struct Removed(pub PathBuf);

impl Drop for Removed {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A D-Bus session bus of the test's own, listening in `dir`, that starts no service by itself
/// (a desktop portal installed on the machine stays out of the test). Answers the bus process
/// and its address.
pub fn private_bus(dir: &Path) -> Result<(Killed, String)> {
    use std::io::BufRead;
    let config = dir.join("bus.conf");
    std::fs::write(
        &config,
        format!(
            "<!DOCTYPE busconfig PUBLIC \"-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN\" \
             \"http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd\">\n\
             <busconfig><type>session</type><listen>unix:path={}</listen>\
             <auth>EXTERNAL</auth><policy context=\"default\">\
             <allow send_destination=\"*\" eavesdrop=\"true\"/><allow eavesdrop=\"true\"/>\
             <allow own=\"*\"/></policy></busconfig>\n",
            dir.join("bus").display()
        ),
    )?;
    let mut bus = Killed(
        Command::new("dbus-daemon")
            .arg(format!("--config-file={}", config.display()))
            .args(["--nofork", "--nopidfile", "--print-address=1"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| {
                DeskError::Setup(format!(
                    "dbus-daemon (package dbus-daemon) must be installed, as `cargo xtask \
                     test` does: {e}"
                ))
            })?,
    );
    let out = bus
        .0
        .stdout
        .take()
        .ok_or_else(|| DeskError::Setup("the bus's address".into()))?;
    let mut line = String::new();
    std::io::BufReader::new(out).read_line(&mut line)?;
    if line.trim().is_empty() {
        return Err(DeskError::Setup("dbus-daemon did not start".into()));
    }
    Ok((bus, line.trim().to_string()))
}

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

/// The stand-in's world: where PipeWire listens, the pictures, whose stream to link the screen
/// to, and the shared state.
#[derive(Clone)]
struct World {
    run: PathBuf,
    pictures: Arc<Pictures>,
    consumer: String,
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
        let (screen, node) = Screen::start(self.run.join("pipewire-0"), self.pictures.clone())?;
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

    /// The session manager's part: once the consumer's stream shows up, link the screen to it.
    fn link_when_ready(&self) {
        let world = self.clone();
        std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let (Some(out), Some(inp)) = (
                    world.port("-o", SCREEN_NODE),
                    world.port("-i", &world.consumer),
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
/// itself, one picture per frame time (BGRx, in shared memory). Runs on a thread of its own
/// until dropped.
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
    fn start(socket: PathBuf, pictures: Arc<Pictures>) -> Result<(Screen, u32)> {
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, rx) = std::sync::mpsc::channel();
        let thread = std::thread::spawn({
            let stop = stop.clone();
            move || {
                if let Err(e) = Screen::run(&socket, &stop, &tx, &pictures) {
                    let _ = tx.send(Err(e));
                }
            }
        });
        let screen = Screen {
            stop,
            thread: Some(thread),
        };
        let node = rx.recv_timeout(Duration::from_secs(10)).map_err(|_| {
            DeskError::Setup("the screen's stream did not get a node within 10 s".into())
        })??;
        Ok((screen, node))
    }

    fn run(
        socket: &Path,
        stop: &AtomicBool,
        node: &std::sync::mpsc::Sender<Result<u32>>,
        pictures: &Pictures,
    ) -> Result<()> {
        use pipewire as pw;
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
        pictures: &Pictures,
    ) -> Result<()> {
        use pipewire as pw;
        use pw::spa;
        use spa::pod::{self, serialize::PodSerializer, Pod, Value as PodValue};
        let (width, height, fps) = (pictures.width, pictures.height, pictures.fps);
        let stride = width * 4;
        let size = stride * height;
        let paint = pictures.paint.clone();
        let serialize = |v: PodValue| {
            PodSerializer::serialize(std::io::Cursor::new(Vec::new()), &v)
                .map(|(c, _)| c.into_inner())
                .map_err(|e| DeskError::Setup(format!("a pod: {e:?}")))
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
        let mut n = 0u64;
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
                    let picture = paint(n);
                    if bytes.len() >= size && picture.len() == size {
                        bytes[..size].copy_from_slice(&picture);
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
                    width: width as u32,
                    height: height as u32
                }
            ),
            pod::property!(
                spa::param::format::FormatProperties::VideoFramerate,
                Fraction,
                spa::utils::Fraction { num: fps, denom: 1 }
            ),
        )))?;
        stream.connect(
            spa::utils::Direction::Output,
            None,
            pw::stream::StreamFlags::DRIVER | pw::stream::StreamFlags::MAP_BUFFERS,
            &mut [Pod::from_bytes(&format)
                .ok_or_else(|| DeskError::Setup("the format pod".into()))?],
        )?;
        let period = Duration::from_secs(1) / fps.max(1);
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
                let size = (world.pictures.width as i32, world.pictures.height as i32);
                let props: HashMap<String, Value> = HashMap::from([
                    ("source_type".to_string(), Value::from(1u32)),
                    ("size".to_string(), Value::from(size)),
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

/// The stand-in desktop: its bus, PipeWire, the portal on the bus. Everything is stopped and
/// removed when dropped.
pub struct Desktop {
    world: World,
    _portal: zbus::Connection,
    _pipewire: Killed,
    _bus: Killed,
    _dir: Removed,
    /// The session bus's address (for `DBUS_SESSION_BUS_ADDRESS`).
    pub bus_address: String,
}

impl Desktop {
    /// Starts the desktop in a folder of its own under `name`: casts show `pictures`, linked
    /// to the PipeWire stream whose node is called `consumer`.
    pub fn start(name: &str, pictures: Pictures, consumer: &str) -> Result<Desktop> {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("confab-desk-{name}-{}", std::process::id()));
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
                .map_err(|e| {
                    DeskError::Setup(format!(
                        "pipewire (package pipewire-bin) must be installed, as `cargo xtask \
                         test` does: {e}"
                    ))
                })?,
        );
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::os::unix::net::UnixStream::connect(run.join("pipewire-0")).is_err() {
            if Instant::now() > deadline {
                return Err(DeskError::Setup(
                    "PipeWire did not start within 10 s".into(),
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let world = World {
            run,
            pictures: Arc::new(pictures),
            consumer: consumer.to_string(),
            desk: Arc::default(),
        };
        let portal = zbus::block_on(async {
            zbus::connection::Builder::address(bus_address.as_str())?
                .name("org.freedesktop.portal.Desktop")?
                .serve_at("/org/freedesktop/portal/desktop", ScreenCast(world.clone()))?
                .build()
                .await
        })?;
        Ok(Desktop {
            world,
            _portal: portal,
            _pipewire: pipewire,
            _bus: bus,
            _dir: removed,
            bus_address,
        })
    }

    /// The next picker is cancelled, as a person closing it.
    pub fn cancel_next(&self) {
        self.world.desk().cancel_next = true;
    }

    /// The next picker stays open, as for a person who has not chosen yet.
    pub fn hold_next(&self) {
        self.world.desk().hold_next = true;
    }

    /// The desktop ends the cast (its own "stop sharing" button): the screen's stream goes.
    pub fn end_cast(&self) {
        self.world.desk().screen = None;
    }

    /// Whether the screen's stream runs (a cast started, its session not closed).
    pub fn casting(&self) -> bool {
        self.world.desk().screen.is_some()
    }

    /// Portal sessions opened and closed so far.
    pub fn sessions(&self) -> (usize, usize) {
        let d = self.world.desk();
        (d.sessions_opened, d.sessions_closed)
    }

    /// How many times the desktop's picker was shown (`Start` calls).
    pub fn pickers(&self) -> usize {
        self.world.desk().pickers
    }

    /// Whether the consumer's stream is there (its input port listed).
    pub fn consumer_there(&self) -> bool {
        self.world.port("-i", &self.world.consumer).is_some()
    }
}
