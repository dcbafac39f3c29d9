//! The adapter between the window and the engine: commands in, events out. No call logic lives
//! here; every command is one engine call (or a settings/host operation) with its error turned
//! into `{code, message}`.

use crate::frames::UiFrames;
use crate::host::{Host, Hosting};
use crate::ipc::{IpcError, IpcResult};
use crate::settings::{Settings, Store};
use confab_engine::media_kit::device::{
    self, AudioSourceSpec, DeviceIdError, SpeakerSpec, VideoSourceSpec,
};
use confab_engine::{Engine, EngineEvent, ErrorCode, IceServer, Joined, Snapshot};
use confab_protocol::PeerId;
use serde::Serialize;
use std::sync::{Arc, Mutex};
use tauri::ipc::{Channel, InvokeResponseBody};
use tauri::{AppHandle, Emitter, State};

/// What the app was launched to do (command line or invite link).
#[derive(Debug, Clone, Default, Serialize)]
pub struct Launch {
    pub server: Option<String>,
    pub room: Option<String>,
    pub name: Option<String>,
    pub call: bool,
    /// Something about the launch the user should know (a bad link, damaged settings).
    pub notices: Vec<String>,
    /// A benchmark reads the figures (`--stats-json`): the window reads the test pattern's
    /// capture time back from each remote picture it draws and sends it with the ack.
    pub measure: bool,
}

pub struct AppState {
    pub engine: Engine,
    pub frames: Arc<UiFrames>,
    /// Where the window loads each tile's MJPEG stream (`None`: the loopback server could not
    /// start, or `--video-channel`; pictures then go over the channel).
    pub video_base: Option<String>,
    /// The window's native video surface (Linux, where WebKit composites), if it has one.
    pub native: Option<Arc<crate::surface::NativeVideo>>,
    pub store: Store,
    pub settings: Mutex<Settings>,
    pub launch: Mutex<Launch>,
    pub host: Host,
    pub started: std::time::Instant,
    /// Background tasks of the app (event forwarding, device watching, figures), awaited on
    /// exit after `stop` is set.
    pub tasks: Mutex<Vec<tauri::async_runtime::JoinHandle<()>>>,
    pub stop: tokio::sync::watch::Sender<bool>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The camera, microphone and speaker the settings name (device ids in
/// `confab_media::device::id`'s grammar), as the engine takes them.
pub struct DeviceSpecs {
    pub camera: VideoSourceSpec,
    pub microphone: AudioSourceSpec,
    pub speaker: Option<Option<String>>,
}

/// The devices the settings name. An id that is none (a hand-edited or damaged settings file)
/// falls back to the default device, with a notice saying so.
pub fn device_specs(s: &Settings, notices: &mut Vec<String>) -> DeviceSpecs {
    fn or_default<T>(
        id: &str,
        what: &str,
        parsed: Result<T, DeviceIdError>,
        default: T,
        notices: &mut Vec<String>,
    ) -> T {
        parsed.unwrap_or_else(|e| {
            notices.push(format!(
                "The {what} in the settings ({id:?}) cannot be used ({e}); the default {what} \
                 is used instead."
            ));
            default
        })
    }
    DeviceSpecs {
        camera: or_default(
            &s.camera,
            "camera",
            s.camera.parse(),
            VideoSourceSpec::Camera(None),
            notices,
        ),
        microphone: or_default(
            &s.microphone,
            "microphone",
            s.microphone.parse(),
            AudioSourceSpec::Mic(None),
            notices,
        ),
        speaker: or_default(
            &s.speaker,
            "speaker",
            s.speaker.parse(),
            SpeakerSpec::Speaker(None),
            notices,
        )
        .into_option(),
    }
}

/// A `--camera` argument: any id that names a camera (kept as given, like the settings).
pub fn camera_arg(id: &str) -> Result<String, DeviceIdError> {
    id.parse::<VideoSourceSpec>().map(|_| id.to_string())
}

/// A `--mic` argument: any id that names a microphone.
pub fn mic_arg(id: &str) -> Result<String, DeviceIdError> {
    id.parse::<AudioSourceSpec>().map(|_| id.to_string())
}

/// A `--speaker` argument: any id that names a speaker.
pub fn speaker_arg(id: &str) -> Result<String, DeviceIdError> {
    id.parse::<SpeakerSpec>().map(|_| id.to_string())
}

/// A known name showed another certificate than before.
#[derive(Debug, Clone, Serialize)]
pub struct IdentityChanged {
    pub id: String,
    pub name: String,
    pub code: Option<String>,
}

/// Forwards engine events to the window; points out a known name with a new certificate.
pub async fn forward_events(app: AppHandle, mut events: tokio::sync::mpsc::Receiver<EngineEvent>) {
    while let Some(ev) = events.recv().await {
        if let EngineEvent::State(s) = &ev {
            note_identities(&app, s);
        }
        if let Err(e) = app.emit("engine", &ev) {
            tracing::debug!("cannot emit an event: {e}");
        }
    }
}

fn note_identities(app: &AppHandle, snap: &Snapshot) {
    use tauri::Manager;
    let Some(state) = app.try_state::<AppState>() else {
        return;
    };
    let mut changed = Vec::new();
    let mut dirty = false;
    let saved = {
        let mut s = lock(&state.settings);
        for v in &snap.verification {
            let (Some(fp), Some(p)) = (
                &v.fingerprint,
                snap.participants.iter().find(|p| p.id == v.id),
            ) else {
                continue;
            };
            match crate::identity::note(&mut s.known_peers, &p.name, fp) {
                crate::identity::Seen::Same => {}
                crate::identity::Seen::First => dirty = true,
                crate::identity::Seen::Changed => {
                    dirty = true;
                    changed.push(IdentityChanged {
                        id: v.id.to_string(),
                        name: p.name.clone(),
                        code: v.code.clone(),
                    });
                }
            }
        }
        dirty.then(|| s.clone())
    };
    if let Some(s) = saved {
        if let Err(e) = state.store.save(&s) {
            tracing::warn!("settings not saved: {e}");
        }
    }
    for c in changed {
        let _ = app.emit("identity-changed", &c);
    }
}

/// Tells the window when cameras, microphones or speakers come and go (checked every few
/// seconds; listing is cheap and quiet).
pub async fn watch_devices(app: AppHandle, mut stop: tokio::sync::watch::Receiver<bool>) {
    let ids = |l: &device::DeviceList| -> Vec<String> {
        l.cameras
            .iter()
            .chain(&l.microphones)
            .chain(&l.speakers)
            .map(|d| d.id.clone())
            .collect()
    };
    let mut last: Option<Vec<String>> = None;
    loop {
        if let Ok(list) = tokio::task::spawn_blocking(device::list).await {
            let now = ids(&list);
            if last.as_ref().is_some_and(|l| *l != now) {
                let _ = app.emit("devices-changed", ());
            }
            last = Some(now);
        }
        tokio::select! {
            _ = stop.changed() => return,
            _ = tokio::time::sleep(std::time::Duration::from_secs(4)) => {}
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Commands

#[tauri::command]
pub async fn get_state(state: State<'_, AppState>) -> IpcResult<Snapshot> {
    Ok(state.engine.snapshot().await?)
}

/// The window's script asks for this first thing: the moment the UI is up.
#[tauri::command]
pub async fn get_launch(state: State<'_, AppState>) -> IpcResult<Launch> {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // One line benchmarks read (stderr, so it never mixes with output).
        eprintln!(
            "confab: window ready after {} ms",
            state.started.elapsed().as_millis()
        );
    });
    // Told once; only `measure` holds for the window's life (a reload asks again).
    let mut launch = lock(&state.launch);
    let measure = launch.measure;
    let out = std::mem::take(&mut *launch);
    launch.measure = measure;
    Ok(out)
}

#[tauri::command]
pub async fn join_room(
    state: State<'_, AppState>,
    server: String,
    room: String,
    name: String,
    password: Option<String>,
    insecure_ok: Option<bool>,
) -> IpcResult<Joined> {
    // One server, or the nodes of a cluster separated by commas (tried in order).
    let urls = confab_engine::signaling::normalize_urls(&server)
        .map_err(|m| IpcError::new(ErrorCode::BadAddress, m))?;
    let insecure = urls
        .iter()
        .find(|u| confab_engine::signaling::insecure_public(u));
    if let (Some(url), false) = (insecure, insecure_ok == Some(true)) {
        return Err(IpcError::new(
            ErrorCode::InsecureServer,
            format!(
                "{url} is not encrypted (ws://) and not on a private network: anyone on the way \
                 could read your name and room password. Ask for a wss:// address, or press \
                 Join again to go ahead."
            ),
        ));
    }
    let joined = state
        .engine
        .join(&server, &room, &name, password.as_deref())
        .await?;
    let mut s = lock(&state.settings).clone();
    s.remember_join(&urls.join(", "), &room, &name);
    if let Err(e) = state.store.save(&s) {
        tracing::warn!("settings not saved: {e}");
    }
    *lock(&state.settings) = s;
    Ok(joined)
}

/// Leaves the room; a room hosted on this computer stops with it.
#[tauri::command]
pub async fn leave_room(app: AppHandle, state: State<'_, AppState>) -> IpcResult<()> {
    let left = state.engine.leave().await;
    stop_host(&app, &state).await;
    Ok(left?)
}

#[tauri::command]
pub async fn call(state: State<'_, AppState>, peer: Option<String>) -> IpcResult<()> {
    Ok(state.engine.call(peer.map(PeerId)).await?)
}

#[tauri::command]
pub async fn accept_call(state: State<'_, AppState>, peer: String) -> IpcResult<()> {
    Ok(state.engine.accept(PeerId(peer)).await?)
}

#[tauri::command]
pub async fn decline_call(state: State<'_, AppState>, peer: String) -> IpcResult<()> {
    Ok(state.engine.decline(PeerId(peer)).await?)
}

#[tauri::command]
pub async fn hang_up(state: State<'_, AppState>) -> IpcResult<()> {
    Ok(state.engine.hang_up().await?)
}

#[tauri::command]
pub async fn set_mic_enabled(state: State<'_, AppState>, enabled: bool) -> IpcResult<()> {
    Ok(state.engine.set_mic_enabled(enabled).await?)
}

#[tauri::command]
pub async fn set_camera_enabled(state: State<'_, AppState>, enabled: bool) -> IpcResult<()> {
    Ok(state.engine.set_camera_enabled(enabled).await?)
}

/// Lets everyone who asks to join our call in without asking, or asks each time.
#[tauri::command]
pub async fn set_admit_all(state: State<'_, AppState>, enabled: bool) -> IpcResult<()> {
    Ok(state.engine.set_admit_all(enabled).await?)
}

#[tauri::command]
pub async fn set_preview(state: State<'_, AppState>, enabled: bool) -> IpcResult<()> {
    Ok(state.engine.set_preview(enabled).await?)
}

#[derive(Debug, Clone, Serialize)]
pub struct DeviceInfo {
    pub id: String,
    pub name: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Devices {
    pub cameras: Vec<DeviceInfo>,
    pub microphones: Vec<DeviceInfo>,
    pub speakers: Vec<DeviceInfo>,
    /// The ids chosen now (empty = the default device).
    pub selected: Selected,
}

#[derive(Debug, Clone, Serialize)]
pub struct Selected {
    pub camera: String,
    pub microphone: String,
    pub speaker: String,
}

#[tauri::command]
pub async fn list_devices(state: State<'_, AppState>) -> IpcResult<Devices> {
    let list = tokio::task::spawn_blocking(device::list)
        .await
        .map_err(|e| IpcError::new(ErrorCode::Device, format!("cannot list devices: {e}")))?;
    let conv = |v: Vec<device::Device>| {
        v.into_iter()
            .map(|d| DeviceInfo {
                id: d.id,
                name: d.name,
            })
            .collect()
    };
    let s = lock(&state.settings).clone();
    Ok(Devices {
        cameras: conv(list.cameras),
        microphones: conv(list.microphones),
        speakers: conv(list.speakers),
        selected: Selected {
            camera: s.camera,
            microphone: s.microphone,
            speaker: s.speaker,
        },
    })
}

/// Switches devices (each argument optional), during a call too, and remembers the choice.
#[tauri::command]
pub async fn select_devices(
    state: State<'_, AppState>,
    camera: Option<String>,
    microphone: Option<String>,
    speaker: Option<String>,
) -> IpcResult<()> {
    // Every id is checked before anything changes: a bad one changes nothing.
    let invalid = |e: DeviceIdError| IpcError::invalid(e.to_string());
    let camera_spec = camera
        .as_deref()
        .map(str::parse::<VideoSourceSpec>)
        .transpose()
        .map_err(invalid)?;
    let mic_spec = microphone
        .as_deref()
        .map(str::parse::<AudioSourceSpec>)
        .transpose()
        .map_err(invalid)?;
    let speaker_spec = speaker
        .as_deref()
        .map(str::parse::<SpeakerSpec>)
        .transpose()
        .map_err(invalid)?;
    let mut s = lock(&state.settings).clone();
    if let Some(c) = &camera {
        s.camera = c.clone();
    }
    if let Some(m) = &microphone {
        s.microphone = m.clone();
    }
    if let Some(sp) = &speaker {
        s.speaker = sp.clone();
    }
    let result = state
        .engine
        .select_devices(
            camera_spec,
            mic_spec,
            speaker_spec.map(SpeakerSpec::into_option),
        )
        .await;
    // Remember the choice even if the device failed now (it may be plugged in later).
    let _ = state.store.save(&s);
    *lock(&state.settings) = s;
    Ok(result?)
}

/// The join screen's microphone test: the level comes on `progress` as it is recorded and
/// played back; the answer says what was heard.
#[tauri::command]
pub async fn check_microphone(
    state: State<'_, AppState>,
    progress: Channel<device::mic_check::MicCheckProgress>,
) -> IpcResult<device::mic_check::MicCheckResult> {
    let (tx, mut rx) = tokio::sync::mpsc::channel(8);
    // Owned here: ends when the engine drops its sender (the test is over), awaited below.
    let forward = tokio::spawn(async move {
        while let Some(p) = rx.recv().await {
            if progress.send(p).is_err() {
                break;
            }
        }
    });
    let result = state.engine.check_microphone(tx).await;
    let _ = forward.await;
    Ok(result?)
}

/// How wide the share picker's pictures are (device pixels).
const SHARE_THUMB_WIDTH: usize = 320;

/// Something to share, as the picker shows it.
#[derive(Debug, Clone, Serialize)]
pub struct Shareable {
    /// What to hand to `share` (`screen:ID`, `window:ID`, or `portal`: the desktop's own
    /// picker on Wayland, kind `picker`).
    pub id: String,
    pub kind: device::screen::ShareKind,
    pub title: String,
    pub width: u32,
    pub height: u32,
    /// A small picture of it, as a `data:image/jpeg` URL (`None`: it could not be captured).
    pub thumbnail: Option<String>,
}

/// The screens and windows that can be shared, with a picture of each (for the picker).
#[tauri::command]
pub async fn list_shareable() -> IpcResult<Vec<Shareable>> {
    use base64::Engine as _;
    let list = tokio::task::spawn_blocking(|| device::screen::sources(SHARE_THUMB_WIDTH))
        .await
        .map_err(|e| IpcError::new(ErrorCode::Share, format!("cannot list screens: {e}")))?
        .map_err(|e| {
            IpcError::new(
                ErrorCode::Share,
                format!("Sharing is not possible on this computer: {e}."),
            )
        })?;
    Ok(list
        .into_iter()
        .map(|s| Shareable {
            thumbnail: s
                .thumbnail
                .as_ref()
                .and_then(|t| confab_engine::media_kit::convert::to_jpeg(t, 70).ok())
                .map(|jpeg| {
                    format!(
                        "data:image/jpeg;base64,{}",
                        base64::engine::general_purpose::STANDARD.encode(jpeg)
                    )
                }),
            id: s.id,
            kind: s.kind,
            title: s.title,
            width: s.width,
            height: s.height,
        })
        .collect())
}

/// Shares a screen or window (`source`: an id from `list_shareable`), or stops (`None`).
#[tauri::command]
pub async fn share(state: State<'_, AppState>, source: Option<String>) -> IpcResult<()> {
    let spec = share_arg(source.as_deref())?;
    Ok(state.engine.share(spec).await?)
}

/// A share id from the window, checked (`None`: stop sharing).
pub fn share_arg(source: Option<&str>) -> IpcResult<Option<VideoSourceSpec>> {
    source
        .map(device::share_source)
        .transpose()
        .map_err(|e| IpcError::invalid(e.to_string()))
}

/// The STUN/TURN servers as the Network box shows them: one server a line.
#[tauri::command]
pub async fn get_ice_servers(state: State<'_, AppState>) -> IpcResult<String> {
    let s = lock(&state.settings);
    Ok(s.ice_servers
        .iter()
        .map(IceServer::to_line)
        .collect::<Vec<_>>()
        .join("\n"))
}

/// Parses the Network box (one grammar: `IceServer::parse`), keeps the servers in the settings
/// and hands them to the engine for the calls set up from now on.
#[tauri::command]
pub async fn set_ice_servers(state: State<'_, AppState>, text: String) -> IpcResult<()> {
    if text.len() > 16 * 1024 {
        return Err(IpcError::invalid(
            "that is too much text for a list of servers",
        ));
    }
    let servers = IceServer::parse_lines(&text).map_err(confab_engine::EngineError::from)?;
    let mut s = lock(&state.settings).clone();
    s.ice_servers = servers.clone();
    state
        .store
        .save(&s)
        .map_err(|e| IpcError::new(ErrorCode::Settings, e))?;
    *lock(&state.settings) = s;
    Ok(state.engine.set_ice_servers(servers).await?)
}

#[tauri::command]
pub async fn get_settings(state: State<'_, AppState>) -> IpcResult<Settings> {
    Ok(lock(&state.settings).clone())
}

#[tauri::command]
pub async fn save_settings(state: State<'_, AppState>, settings: Settings) -> IpcResult<()> {
    settings.validate().map_err(IpcError::invalid)?;
    state
        .store
        .save(&settings)
        .map_err(|e| IpcError::new(ErrorCode::Settings, e))?;
    let relay_only = settings.relay_only;
    let processing = settings.audio_processing;
    *lock(&state.settings) = settings;
    // Processing from the microphone's next frame; relay only for the calls set up from now on.
    state.engine.set_audio_processing(processing).await?;
    Ok(state.engine.set_relay_only(relay_only).await?)
}

/// Starts the signaling server inside the app (the same code as `confab-signal`, with a LAN's
/// limits) on this computer's network address, and joins it. An empty room gets a name nobody
/// guesses. The window learns of it through the `hosting` event.
#[tauri::command]
pub async fn host_lan_room(
    app: AppHandle,
    state: State<'_, AppState>,
    room: String,
    name: String,
    password: Option<String>,
) -> IpcResult<Hosting> {
    let room = if room.trim().is_empty() {
        crate::host::random_room()
    } else {
        room
    };
    confab_protocol::validate_room(&room).map_err(|m| IpcError::new(ErrorCode::InvalidRoom, m))?;
    confab_protocol::validate_name(&name).map_err(|m| IpcError::new(ErrorCode::InvalidName, m))?;
    let hosting = state
        .host
        .start(&room)
        .await
        .map_err(|e| IpcError::new(ErrorCode::Host, e.to_string()))?;
    let _ = app.emit("hosting", Some(&hosting));
    if let Err(e) = state
        .engine
        .join(&hosting.local, &room, &name, password.as_deref())
        .await
    {
        // Nothing to host for: stop again.
        stop_host(&app, &state).await;
        return Err(e.into());
    }
    Ok(hosting)
}

/// Stops hosting, if hosting, and tells the window.
pub async fn stop_host(app: &AppHandle, state: &AppState) {
    if state.host.stop().await {
        let _ = app.emit("hosting", None::<&Hosting>);
    }
}

/// Stops hosting: everyone in the hosted rooms is told the server is going away, and we leave.
#[tauri::command]
pub async fn stop_hosting(app: AppHandle, state: State<'_, AppState>) -> IpcResult<()> {
    if state.host.current().is_some() {
        let _ = state.engine.leave().await;
        stop_host(&app, &state).await;
    }
    Ok(())
}

/// What is hosted now (the window asks at start; afterwards the `hosting` event tells).
#[tauri::command]
pub async fn get_hosting(state: State<'_, AppState>) -> IpcResult<Option<Hosting>> {
    Ok(state.host.current())
}

/// How the window can show pictures, answered when it opens its video channel.
#[derive(Debug, Serialize)]
pub struct VideoWays {
    /// The streams' address but a tile's key and load count (`…&tile=` KEY `&n=` N) when
    /// they are in use, else `null` (pictures then come over the channel).
    pub streams: Option<String>,
    /// The window has a native video surface: its tiles in the call can be holes in the page
    /// ([`place_tile`]) with their pictures painted underneath.
    pub native: bool,
}

/// The window's video channel; `streams`: it would rather load pictures from streams (the
/// default). A window whose streams fail opens again with `false`; one that shows more tiles
/// than it can stream takes the rest over the channel, and the tiles in the call go to the
/// native surface where there is one ([`tile_way`]).
#[tauri::command]
pub async fn open_video(
    state: State<'_, AppState>,
    channel: Channel<InvokeResponseBody>,
    streams: Option<bool>,
) -> IpcResult<VideoWays> {
    let base = state.video_base.clone().filter(|_| streams.unwrap_or(true));
    let epoch = state.frames.open(channel, base.is_some());
    // Tiles the surface painted for an earlier opening (a reloaded page) are said anew.
    if let Some(n) = &state.native {
        n.clear();
    }
    Ok(VideoWays {
        streams: base.map(|b| format!("{b}&e={epoch}&tile=")),
        native: state.native.as_ref().is_some_and(|n| n.ready()),
    })
}

/// What each link measures (the stats panel polls it while open).
#[tauri::command]
pub async fn get_stats(state: State<'_, AppState>) -> IpcResult<Vec<confab_engine::PeerStats>> {
    Ok(state.engine.stats().await?)
}

/// What the microphone's processing does (the settings in force, the echo canceller's own
/// figures): the stats panel shows it above the people.
#[tauri::command]
pub async fn get_audio_processing(
    state: State<'_, AppState>,
) -> IpcResult<confab_engine::media_kit::processing::ProcessingStats> {
    Ok(state.engine.audio_processing().await?)
}

/// Says a line in the call's chat; the line as shown (cleaned) comes back.
#[tauri::command]
pub async fn send_chat(
    state: State<'_, AppState>,
    text: String,
) -> IpcResult<confab_engine::call::chat::ChatLine> {
    Ok(state.engine.say(&text).await?)
}

/// The chat of the current call so far (for a window that was reloaded).
#[tauri::command]
pub async fn get_chat(
    state: State<'_, AppState>,
) -> IpcResult<Vec<confab_engine::call::chat::ChatLine>> {
    Ok(state.engine.chat().await?)
}

/// Which addresses a chat link may open: web pages only, in the system browser.
pub fn web_address(url: &str) -> IpcResult<url::Url> {
    if url.len() > 4096 {
        return Err(IpcError::invalid("that link is too long to open"));
    }
    let parsed = url::Url::parse(url)
        .map_err(|e| IpcError::invalid(format!("that is not a web address: {e}")))?;
    match parsed.scheme() {
        "http" | "https" if parsed.host().is_some() => Ok(parsed),
        other => Err(IpcError::invalid(format!(
            "only web links (http, https) are opened, not {other}:"
        ))),
    }
}

/// Opens a link from the chat in the system's browser, never in the app's window.
#[tauri::command]
pub async fn open_url(url: String) -> IpcResult<()> {
    let url = web_address(&url)?;
    open::that_detached(url.as_str())
        .map_err(|e| IpcError::invalid(format!("the browser could not be started: {e}")))
}

/// The UI reports how wide a tile is shown (device pixels), so frames can be sized for it.
#[tauri::command]
pub async fn tile_size(state: State<'_, AppState>, tile: String, width: u32) -> IpcResult<()> {
    if tile.len() > 255 || width > 16_384 {
        return Err(IpcError::invalid("that is not a tile size"));
    }
    state.frames.set_shown_width(&tile, width as usize);
    Ok(())
}

/// Which way this tile's pictures take from now on: `stream` (its stream, or the channel
/// where the window does not stream), `channel` (the channel although it streams: it streams
/// a few tiles at most) or `native` (the native surface paints it where [`place_tile`] says);
/// `count`: the window's one count of its stream loads and these words (see
/// `UiFrames::set_way`).
#[tauri::command]
pub async fn tile_way(
    state: State<'_, AppState>,
    tile: String,
    way: crate::frames::Way,
    count: u64,
) -> IpcResult<()> {
    if tile.len() > 255 {
        return Err(IpcError::invalid("that is not a tile"));
    }
    let native = state.native.as_ref().filter(|n| n.ready());
    if way == crate::frames::Way::Native && native.is_none() {
        return Err(IpcError::invalid("this window has no native video surface"));
    }
    // (A word older than the last one on the tile, taken late, changes nothing here either.)
    if state.frames.set_way(&tile, way, count) {
        if let Some(n) = native {
            if way == crate::frames::Way::Native {
                n.adopt(&tile);
            } else {
                n.remove(&tile);
            }
        }
    }
    Ok(())
}

/// Where the window shows a tile the native surface paints (CSS pixels from the page's top
/// left), or `null`: not shown now (out of view, the window hidden).
#[tauri::command]
pub async fn place_tile(
    state: State<'_, AppState>,
    tile: String,
    place: Option<crate::surface::Place>,
) -> IpcResult<()> {
    if tile.len() > 255 {
        return Err(IpcError::invalid("that is not a tile"));
    }
    if let Some(p) = &place {
        p.check().map_err(IpcError::invalid)?;
    }
    let Some(native) = &state.native else {
        return Err(IpcError::invalid("this window has no native video surface"));
    };
    native.place(&tile, place);
    Ok(())
}

/// The page's background and a tile's (RGB), which the native surface paints around and
/// under the tiles.
#[tauri::command]
pub async fn video_colors(
    state: State<'_, AppState>,
    page: [u8; 3],
    tile: [u8; 3],
) -> IpcResult<()> {
    if let Some(n) = &state.native {
        n.colors(page, tile);
    }
    Ok(())
}

#[tauri::command]
pub async fn frame_ack(
    state: State<'_, AppState>,
    tile: String,
    latency_ms: Option<f64>,
) -> IpcResult<()> {
    if tile.len() > 255 {
        return Err(IpcError::invalid("that is not a tile"));
    }
    state.frames.ack(&tile);
    if let Some(ms) = latency_ms {
        if !(0.0..60_000.0).contains(&ms) {
            return Err(IpcError::invalid("that is not a latency"));
        }
        state.frames.drawn_latency(ms);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_ids_map_to_sources() {
        let settings = |camera: &str, microphone: &str, speaker: &str| Settings {
            camera: camera.into(),
            microphone: microphone.into(),
            speaker: speaker.into(),
            ..Settings::default()
        };
        let mut notices = Vec::new();
        let d = device_specs(&settings("test", "tone:1000", "none"), &mut notices);
        assert_eq!(d.camera, VideoSourceSpec::TestPattern);
        assert_eq!(d.microphone, AudioSourceSpec::Tone(1000.0));
        assert_eq!(d.speaker, None);
        let d = device_specs(&settings("", "", ""), &mut notices);
        assert_eq!(d.camera, VideoSourceSpec::Camera(None));
        assert_eq!(d.microphone, AudioSourceSpec::Mic(None));
        assert_eq!(d.speaker, Some(None));
        let d = device_specs(
            &settings("camera:2", "mic:USB Mic", "speaker:HDMI"),
            &mut notices,
        );
        assert_eq!(
            d.camera,
            VideoSourceSpec::Camera(Some(device::CameraRef::Index(2)))
        );
        assert_eq!(d.microphone, AudioSourceSpec::Mic(Some("USB Mic".into())));
        assert_eq!(d.speaker, Some(Some("HDMI".into())));
        assert!(notices.is_empty(), "{notices:?}");
    }

    #[test]
    fn a_bad_id_in_the_settings_falls_back_to_the_default_with_a_notice() {
        let s = Settings {
            camera: "tone".into(),
            microphone: "tone:NaN".into(),
            speaker: "speaker:".into(),
            ..Settings::default()
        };
        let mut notices = Vec::new();
        let d = device_specs(&s, &mut notices);
        assert_eq!(d.camera, VideoSourceSpec::Camera(None));
        assert_eq!(d.microphone, AudioSourceSpec::Mic(None));
        assert_eq!(d.speaker, Some(None));
        assert_eq!(notices.len(), 3, "{notices:?}");
        assert!(notices[0].contains("`tone` names a microphone, not a camera"));
        assert!(notices[1].contains("the tone frequency must be a number"));
        assert!(notices[2].contains("needs a device name"));
    }

    #[test]
    fn command_line_device_ids_are_checked_for_their_kind() {
        assert_eq!(camera_arg("test").as_deref(), Ok("test"));
        assert_eq!(mic_arg("tone:660").as_deref(), Ok("tone:660"));
        assert_eq!(speaker_arg("none").as_deref(), Ok("none"));
        assert_eq!(mic_arg("My Headset").as_deref(), Ok("My Headset"));
        assert!(camera_arg("tone").is_err());
        assert!(mic_arg("tone:5").is_err());
        assert!(speaker_arg("test").is_err());
    }

    #[test]
    fn share_ids_from_the_window_are_checked_and_refused_in_words() {
        use confab_engine::media_kit::device::ScreenRef;
        assert_eq!(
            share_arg(Some("window:77")),
            Ok(Some(VideoSourceSpec::Screen(ScreenRef::Window(77))))
        );
        assert_eq!(share_arg(None), Ok(None));
        for bad in [
            "camera:0",
            "window:-1",
            "screen:../../etc",
            "\u{202e}screen",
        ] {
            let e = share_arg(Some(bad)).unwrap_err();
            let json = serde_json::to_value(&e).unwrap();
            assert_eq!(json["code"], "invalid-argument", "{bad}");
            let message = json["message"].as_str().unwrap();
            assert!(
                message.contains("not something to share") || message.contains("control"),
                "{bad}: {message}"
            );
        }
    }

    #[test]
    fn chat_links_open_only_web_pages() {
        assert_eq!(
            web_address("https://example.org/a?b=c").unwrap().as_str(),
            "https://example.org/a?b=c"
        );
        assert!(web_address("http://10.0.0.5:8080/").is_ok());
        for bad in [
            "javascript:alert(1)",
            "file:///etc/passwd",
            "confab://join?room=x",
            "data:text/html,hi",
            "https://",
            "not a link",
        ] {
            let e = serde_json::to_value(web_address(bad).unwrap_err()).unwrap();
            assert_eq!(e["code"], "invalid-argument", "{bad}");
            assert!(e["message"].as_str().unwrap().len() > 10, "{bad}: {e}");
        }
        assert!(web_address(&format!("https://example.org/{}", "a".repeat(5000))).is_err());
    }
}
