//! The engine: one actor task that owns the signaling client, the call core, the links and the
//! media hub. The public [`Engine`] handle sends it commands over a bounded channel and gets
//! answers on oneshots; what happens comes out as [`EngineEvent`]s.

use crate::core::{Action, CallCore, CallError, Notice, Participant};
use crate::link::{self, LinkCommand, LinkEvent, LinkParams, RtcSettings};
use crate::media::{LinkId, MediaHub, MediaSettings, Resources, VideoSink};
use crate::signaling::{self, JoinParams, SigEvent};
use crate::stats::PeerStats;
use confab_media::device::{AudioSourceSpec, VideoFormat, VideoSourceSpec};
use confab_media::MediaError;
use confab_protocol::call::CallSignal;
use confab_protocol::{ClientMessage, PeerId};
use serde::Serialize;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Everything the engine is started with.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    pub video: VideoSourceSpec,
    pub audio: AudioSourceSpec,
    /// `None`: no playout (null sink); `Some(None)`: the default speaker; `Some(Some(name))`.
    pub speaker: Option<Option<String>>,
    pub format: VideoFormat,
    pub rtc: RtcSettings,
    /// Accept every ring without asking.
    pub auto_accept: bool,
    pub audio_bitrate: i32,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            video: VideoSourceSpec::Camera(None),
            audio: AudioSourceSpec::Mic(None),
            speaker: Some(None),
            format: VideoFormat {
                width: 640,
                height: 480,
                fps: 30.0,
            },
            rtc: RtcSettings {
                ice_servers: Vec::new(),
                udp_addrs: vec!["0.0.0.0:0".into()],
                mdns: true,
                preferred_codec: confab_media::video::VideoCodec::H264,
                start_bitrate: 1_000_000,
                max_bitrate: 2_500_000,
            },
            auto_accept: false,
            audio_bitrate: 32_000,
        }
    }
}

/// Why a command failed. `code()` is stable and machine-readable; the message is for people.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EngineError {
    #[error("{0}")]
    Call(#[from] CallError),
    /// The server refused or could not be reached; `code` is the protocol's error code or
    /// `unreachable`.
    #[error("{message}")]
    Server { code: String, message: String },
    #[error("{0}")]
    Device(#[from] MediaError),
    #[error("{0}")]
    BadAddress(String),
    #[error("already in room {0}; leave it first")]
    AlreadyJoined(String),
    #[error("not in a room")]
    NotJoined,
    #[error("the call engine has stopped")]
    Stopped,
}

impl EngineError {
    pub fn code(&self) -> String {
        match self {
            EngineError::Call(e) => match e {
                CallError::NotJoined => "not-joined",
                CallError::NobodyToCall => "nobody-to-call",
                CallError::UnknownPeer => "unknown-peer",
                CallError::NotRinging => "not-ringing",
                CallError::AlreadyInCall => "already-in-call",
            }
            .into(),
            EngineError::Server { code, .. } => code.clone(),
            EngineError::Device(_) => "device".into(),
            EngineError::BadAddress(_) => "bad-address".into(),
            EngineError::AlreadyJoined(_) => "already-joined".into(),
            EngineError::NotJoined => "not-joined".into(),
            EngineError::Stopped => "stopped".into(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ConnectionStatus {
    Offline,
    Connecting,
    Connected,
    Reconnecting,
}

/// Everything the UI shows, sent whole whenever it changes.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Snapshot {
    pub connection: ConnectionStatus,
    pub server: Option<String>,
    pub room: Option<String>,
    pub me: Option<PeerId>,
    pub name: Option<String>,
    pub in_call: bool,
    pub audio: bool,
    pub video: bool,
    pub camera: Option<String>,
    pub microphone: Option<String>,
    pub speaker: Option<String>,
    pub participants: Vec<Participant>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Level {
    pub id: PeerId,
    pub level: f64,
}

#[derive(Debug, Clone, Serialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum EngineEvent {
    State(Snapshot),
    Notice(Notice),
    Error {
        code: String,
        message: String,
    },
    /// Audio levels a few times a second while in a call (speaking indicators).
    Levels {
        local: f64,
        peers: Vec<Level>,
    },
}

#[derive(Debug, Clone, Serialize)]
pub struct Joined {
    pub id: PeerId,
    pub room: String,
    pub participants: Vec<Participant>,
}

type Reply<T> = oneshot::Sender<Result<T, EngineError>>;

enum Cmd {
    Join(JoinParams, Reply<Joined>),
    Leave(Reply<()>),
    Call(Option<PeerId>, Reply<()>),
    Accept(PeerId, Reply<()>),
    Decline(PeerId, Reply<()>),
    HangUp(Reply<()>),
    SetMedia {
        audio: Option<bool>,
        video: Option<bool>,
        reply: Reply<()>,
    },
    Devices {
        camera: Option<VideoSourceSpec>,
        microphone: Option<AudioSourceSpec>,
        speaker: Option<Option<Option<String>>>,
        reply: Reply<()>,
    },
    Preview(bool, Reply<()>),
    IceServers(Vec<crate::link::IceServer>, Reply<()>),
    Stats(oneshot::Sender<Vec<PeerStats>>),
    Resources(oneshot::Sender<EngineResources>),
    Snapshot(oneshot::Sender<Snapshot>),
    Shutdown,
}

/// What the engine holds right now (to check that hang-up releases everything).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EngineResources {
    pub links: usize,
    pub link_tasks: usize,
    pub media: Resources,
}

/// The handle. Cheap to clone; the engine stops when [`Engine::shutdown`] is called or every
/// handle is dropped.
#[derive(Clone)]
pub struct Engine {
    tx: mpsc::Sender<Cmd>,
    task: Arc<tokio::sync::Mutex<Option<JoinHandle<()>>>>,
}

macro_rules! ask {
    ($self:expr, $variant:ident $(, $arg:expr)*) => {{
        let (reply, rx) = oneshot::channel();
        $self.tx.send(Cmd::$variant($($arg,)* reply)).await.map_err(|_| EngineError::Stopped)?;
        rx.await.map_err(|_| EngineError::Stopped)?
    }};
}

impl Engine {
    /// Starts the engine on the current tokio runtime.
    pub fn start(
        config: EngineConfig,
        sink: Arc<dyn VideoSink>,
    ) -> Result<(Engine, mpsc::Receiver<EngineEvent>), EngineError> {
        let rt = tokio::runtime::Handle::current();
        let hub = MediaHub::start(
            rt,
            MediaSettings {
                format: config.format,
                start_bitrate: config.rtc.start_bitrate,
                max_bitrate: config.rtc.max_bitrate,
                audio_bitrate: config.audio_bitrate,
            },
            sink,
        )?;
        let (tx, rx) = mpsc::channel(64);
        let (ev_tx, ev_rx) = mpsc::channel(256);
        let (link_tx, link_rx) = mpsc::channel(1024);
        let session = format!("{:032x}", rand::random::<u128>());
        let actor = Actor {
            core: CallCore::new(session, config.auto_accept),
            config,
            hub,
            events: ev_tx,
            sig: None,
            pending_join: None,
            join_params: None,
            connection: ConnectionStatus::Offline,
            links: HashMap::new(),
            link_peer: HashMap::new(),
            link_tx,
            closing: Vec::new(),
            next_link: 1,
            devices_on: false,
            preview: false,
            camera: None,
            microphone: None,
            speaker: None,
            joined_at: None,
            last_snapshot: None,
            history: Vec::new(),
        };
        let task = tokio::spawn(actor.run(rx, link_rx));
        Ok((
            Engine {
                tx,
                task: Arc::new(tokio::sync::Mutex::new(Some(task))),
            },
            ev_rx,
        ))
    }

    /// Joins a room; resolves with the welcome, or the server's refusal in words.
    pub async fn join(
        &self,
        server: &str,
        room: &str,
        name: &str,
        password: Option<&str>,
    ) -> Result<Joined, EngineError> {
        let url = signaling::normalize_url(server).map_err(EngineError::BadAddress)?;
        confab_protocol::validate_room(room).map_err(|m| EngineError::Server {
            code: "invalid-room".into(),
            message: m,
        })?;
        confab_protocol::validate_name(name).map_err(|m| EngineError::Server {
            code: "invalid-name".into(),
            message: m,
        })?;
        let params = JoinParams {
            url,
            room: room.into(),
            name: name.into(),
            password: password.filter(|p| !p.is_empty()).map(Into::into),
        };
        ask!(self, Join, params)
    }

    pub async fn leave(&self) -> Result<(), EngineError> {
        ask!(self, Leave)
    }

    /// Rings everyone in the room (`None`) or one peer.
    pub async fn call(&self, target: Option<PeerId>) -> Result<(), EngineError> {
        ask!(self, Call, target)
    }

    pub async fn accept(&self, peer: PeerId) -> Result<(), EngineError> {
        ask!(self, Accept, peer)
    }

    pub async fn decline(&self, peer: PeerId) -> Result<(), EngineError> {
        ask!(self, Decline, peer)
    }

    pub async fn hang_up(&self) -> Result<(), EngineError> {
        ask!(self, HangUp)
    }

    pub async fn set_mic_enabled(&self, on: bool) -> Result<(), EngineError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Cmd::SetMedia {
                audio: Some(on),
                video: None,
                reply,
            })
            .await
            .map_err(|_| EngineError::Stopped)?;
        rx.await.map_err(|_| EngineError::Stopped)?
    }

    pub async fn set_camera_enabled(&self, on: bool) -> Result<(), EngineError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Cmd::SetMedia {
                audio: None,
                video: Some(on),
                reply,
            })
            .await
            .map_err(|_| EngineError::Stopped)?;
        rx.await.map_err(|_| EngineError::Stopped)?
    }

    /// Switches devices (each `None` = unchanged), also during a call.
    pub async fn select_devices(
        &self,
        camera: Option<VideoSourceSpec>,
        microphone: Option<AudioSourceSpec>,
        speaker: Option<Option<Option<String>>>,
    ) -> Result<(), EngineError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Cmd::Devices {
                camera,
                microphone,
                speaker,
                reply,
            })
            .await
            .map_err(|_| EngineError::Stopped)?;
        rx.await.map_err(|_| EngineError::Stopped)?
    }

    /// Shows the camera locally without a call.
    pub async fn set_preview(&self, on: bool) -> Result<(), EngineError> {
        ask!(self, Preview, on)
    }

    /// STUN/TURN servers for the calls set up from now on.
    pub async fn set_ice_servers(
        &self,
        servers: Vec<crate::link::IceServer>,
    ) -> Result<(), EngineError> {
        ask!(self, IceServers, servers)
    }

    pub async fn stats(&self) -> Result<Vec<PeerStats>, EngineError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Cmd::Stats(reply))
            .await
            .map_err(|_| EngineError::Stopped)?;
        rx.await.map_err(|_| EngineError::Stopped)
    }

    pub async fn resources(&self) -> Result<EngineResources, EngineError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Cmd::Resources(reply))
            .await
            .map_err(|_| EngineError::Stopped)?;
        rx.await.map_err(|_| EngineError::Stopped)
    }

    pub async fn snapshot(&self) -> Result<Snapshot, EngineError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Cmd::Snapshot(reply))
            .await
            .map_err(|_| EngineError::Stopped)?;
        rx.await.map_err(|_| EngineError::Stopped)
    }

    /// Hangs up, leaves, closes every link and device, and waits for all of it.
    pub async fn shutdown(&self) {
        let _ = self.tx.send(Cmd::Shutdown).await;
        let task = self.task.lock().await.take();
        if let Some(t) = task {
            let _ = t.await;
        }
    }
}

struct LinkHandle {
    id: LinkId,
    tx: mpsc::Sender<LinkCommand>,
    task: JoinHandle<()>,
}

struct SigHandle {
    out: mpsc::Sender<ClientMessage>,
    events: mpsc::Receiver<SigEvent>,
    cancel: CancellationToken,
    task: JoinHandle<()>,
}

struct Actor {
    config: EngineConfig,
    core: CallCore,
    hub: Arc<MediaHub>,
    events: mpsc::Sender<EngineEvent>,
    sig: Option<SigHandle>,
    pending_join: Option<Reply<Joined>>,
    join_params: Option<JoinParams>,
    connection: ConnectionStatus,
    links: HashMap<PeerId, LinkHandle>,
    link_peer: HashMap<LinkId, PeerId>,
    link_tx: mpsc::Sender<LinkEvent>,
    closing: Vec<JoinHandle<()>>,
    next_link: LinkId,
    devices_on: bool,
    preview: bool,
    camera: Option<String>,
    microphone: Option<String>,
    speaker: Option<String>,
    joined_at: Option<Instant>,
    last_snapshot: Option<Snapshot>,
    /// Stats of links that ended, kept so that a report at the end covers the whole session.
    history: Vec<PeerStats>,
}

impl Actor {
    async fn run(
        mut self,
        mut cmds: mpsc::Receiver<Cmd>,
        mut link_events: mpsc::Receiver<LinkEvent>,
    ) {
        let mut tick = tokio::time::interval(Duration::from_millis(250));
        loop {
            tokio::select! {
                cmd = cmds.recv() => match cmd {
                    Some(Cmd::Shutdown) | None => break,
                    Some(c) => self.command(c).await,
                },
                ev = async { self.sig.as_mut().expect("guarded").events.recv().await }, if self.sig.is_some() => {
                    match ev {
                        Some(ev) => self.signaling_event(ev).await,
                        None => self.signaling_stopped().await,
                    }
                }
                Some(ev) = link_events.recv() => self.link_event(ev).await,
                _ = tick.tick() => {
                    self.core.tick(Instant::now());
                    self.apply().await;
                    self.closing.retain(|t| !t.is_finished());
                    if self.core.in_call() {
                        let peers = self.hub.levels().into_iter().map(|(id, level)| Level { id, level }).collect();
                        self.emit(EngineEvent::Levels { local: self.hub.local_level(), peers }).await;
                    }
                }
            }
        }
        // Shutdown: hang up and leave, close every link, stop devices, await everything.
        self.core.leave(Instant::now());
        self.apply().await;
        self.stop_signaling().await;
        for (_, l) in self.links.drain() {
            let _ = l.tx.send(LinkCommand::Close).await;
            self.closing.push(l.task);
        }
        // All links close at once; together they get a few seconds.
        let closing: Vec<JoinHandle<()>> = self.closing.drain(..).collect();
        let all = futures_util::future::join_all(closing);
        let _ = tokio::time::timeout(Duration::from_secs(4), all).await;
        let hub = self.hub.clone();
        let _ = tokio::task::spawn_blocking(move || hub.shutdown()).await;
    }

    async fn emit(&self, ev: EngineEvent) -> bool {
        // Events are for a UI: never stall the engine on a slow one.
        if self.events.try_send(ev).is_err() {
            tracing::debug!("event dropped: the receiver is not keeping up");
            return false;
        }
        true
    }

    fn snapshot(&self) -> Snapshot {
        let (audio, video) = self.core.media();
        Snapshot {
            connection: self.connection,
            server: self.join_params.as_ref().map(|p| p.url.clone()),
            room: self.join_params.as_ref().map(|p| p.room.clone()),
            me: self.core.me().cloned(),
            name: self.join_params.as_ref().map(|p| p.name.clone()),
            in_call: self.core.in_call(),
            audio,
            video,
            camera: self.camera.clone(),
            microphone: self.microphone.clone(),
            speaker: self.speaker.clone(),
            participants: self.core.participants(),
        }
    }

    async fn publish_snapshot(&mut self) {
        let s = self.snapshot();
        // Only a snapshot that went out counts as sent: a dropped one is tried again.
        if self.last_snapshot.as_ref() != Some(&s) && self.emit(EngineEvent::State(s.clone())).await
        {
            self.last_snapshot = Some(s);
        }
    }

    /// Carries out what the call core decided.
    async fn apply(&mut self) {
        let actions = self.core.drain();
        for a in actions {
            match a {
                Action::Send(to, sig) => self.send_signal(to, &sig),
                Action::OpenLink { peer, offerer } => self.open_link(peer, offerer),
                Action::CloseLink(peer) => {
                    if let Some(l) = self.links.remove(&peer) {
                        self.remember(&peer, l.id);
                        self.link_peer.remove(&l.id);
                        let _ = l.tx.try_send(LinkCommand::Close);
                        self.closing.push(l.task);
                    }
                }
                Action::RebindLink { from, to } => {
                    if self.links.contains_key(&to) {
                        // Never overwrite a live link: the old one is let go instead.
                        if let Some(l) = self.links.remove(&from) {
                            self.link_peer.remove(&l.id);
                            let _ = l.tx.try_send(LinkCommand::Close);
                            self.closing.push(l.task);
                        }
                    } else if let Some(l) = self.links.remove(&from) {
                        let _ = l.tx.try_send(LinkCommand::Rebind(to.clone()));
                        self.link_peer.insert(l.id, to.clone());
                        self.links.insert(to, l);
                    }
                }
                Action::Notice(n) => {
                    self.emit(EngineEvent::Notice(n)).await;
                }
                Action::Changed => {}
            }
        }
        self.sync_devices().await;
        self.publish_snapshot().await;
    }

    fn send_signal(&self, to: PeerId, sig: &CallSignal) {
        if let Some(s) = &self.sig {
            let msg = ClientMessage::Signal {
                to,
                data: sig.to_data(),
            };
            if s.out.try_send(msg).is_err() {
                tracing::warn!("signaling queue full: a call message was dropped");
            }
        }
    }

    fn open_link(&mut self, peer: PeerId, offerer: bool) {
        if self.links.contains_key(&peer) {
            return;
        }
        let id = self.next_link;
        self.next_link += 1;
        let polite = self.core.me().is_some_and(|me| *me > peer);
        let (tx, rx) = mpsc::channel(256);
        let params = LinkParams {
            id,
            peer: peer.clone(),
            offerer,
            polite,
            rtc: Arc::new(self.config.rtc.clone()),
        };
        let task = tokio::spawn(link::run(
            params,
            rx,
            self.link_tx.clone(),
            self.hub.clone(),
        ));
        self.link_peer.insert(id, peer.clone());
        self.links.insert(peer, LinkHandle { id, tx, task });
    }

    /// Devices run while in a call (or previewing) and are released otherwise.
    async fn sync_devices(&mut self) {
        let want = self.core.in_call() || self.preview;
        let (audio, video) = self.core.media();
        self.hub.set_sending(audio, video);
        if want == self.devices_on {
            return;
        }
        self.devices_on = want;
        if want {
            self.start_devices().await;
        } else {
            let hub = self.hub.clone();
            let _ = tokio::task::spawn_blocking(move || hub.stop_devices()).await;
            self.camera = None;
            self.microphone = None;
            self.speaker = None;
        }
    }

    async fn start_devices(&mut self) {
        let hub = self.hub.clone();
        let (v, a, s) = (
            self.config.video.clone(),
            self.config.audio.clone(),
            self.config.speaker.clone(),
        );
        let in_call = self.core.in_call();
        let result = tokio::task::spawn_blocking(move || {
            let video = hub.set_video_source(&v);
            let audio = if in_call {
                hub.set_audio_source(&a).map(Some)
            } else {
                Ok(None)
            };
            let speaker = if in_call {
                hub.set_speaker(s).map(Some)
            } else {
                Ok(None)
            };
            (video, audio, speaker)
        })
        .await;
        let Ok((video, audio, speaker)) = result else {
            return;
        };
        match video {
            Ok(d) => self.camera = d,
            Err(e) => {
                self.camera = None;
                self.emit(EngineEvent::Error {
                    code: "camera".into(),
                    message: format!("{e}; the call goes on without video"),
                })
                .await;
            }
        }
        match audio {
            Ok(d) => self.microphone = d.flatten(),
            Err(e) => {
                self.microphone = None;
                self.emit(EngineEvent::Error {
                    code: "microphone".into(),
                    message: format!("{e}; others will not hear you"),
                })
                .await;
            }
        }
        match speaker {
            Ok(d) => self.speaker = d,
            Err(e) => {
                // No sound card: play nowhere, the call goes on.
                let hub = self.hub.clone();
                let _ = tokio::task::spawn_blocking(move || hub.set_speaker(None)).await;
                self.speaker = None;
                self.emit(EngineEvent::Error {
                    code: "speaker".into(),
                    message: format!("{e}; you will not hear the others"),
                })
                .await;
            }
        }
    }

    async fn command(&mut self, cmd: Cmd) {
        let now = Instant::now();
        match cmd {
            Cmd::Join(params, reply) => {
                if let Some(p) = &self.join_params {
                    let _ = reply.send(Err(EngineError::AlreadyJoined(p.room.clone())));
                    return;
                }
                let (out_tx, out_rx) = mpsc::channel(512);
                let (ev_tx, ev_rx) = mpsc::channel(512);
                let cancel = CancellationToken::new();
                let task = tokio::spawn(signaling::run(
                    params.clone(),
                    out_rx,
                    ev_tx,
                    cancel.clone(),
                ));
                self.sig = Some(SigHandle {
                    out: out_tx,
                    events: ev_rx,
                    cancel,
                    task,
                });
                self.join_params = Some(params);
                self.pending_join = Some(reply);
                self.connection = ConnectionStatus::Connecting;
                self.joined_at = Some(now);
                self.publish_snapshot().await;
            }
            Cmd::Leave(reply) => {
                if self.join_params.is_none() {
                    let _ = reply.send(Err(EngineError::NotJoined));
                    return;
                }
                self.core.leave(now);
                self.apply().await;
                self.stop_signaling().await;
                let _ = reply.send(Ok(()));
            }
            Cmd::Call(target, reply) => {
                let r = self
                    .core
                    .call(target.as_ref(), now)
                    .map_err(EngineError::from);
                self.apply().await;
                let _ = reply.send(r);
            }
            Cmd::Accept(peer, reply) => {
                let r = self.core.accept(&peer, now).map_err(EngineError::from);
                self.apply().await;
                let _ = reply.send(r);
            }
            Cmd::Decline(peer, reply) => {
                let r = self.core.decline(&peer, now).map_err(EngineError::from);
                self.apply().await;
                let _ = reply.send(r);
            }
            Cmd::HangUp(reply) => {
                self.core.hang_up(now);
                self.apply().await;
                let _ = reply.send(Ok(()));
            }
            Cmd::SetMedia {
                audio,
                video,
                reply,
            } => {
                let (a, v) = self.core.media();
                self.core.set_media(audio.unwrap_or(a), video.unwrap_or(v));
                self.apply().await;
                let _ = reply.send(Ok(()));
            }
            Cmd::Devices {
                camera,
                microphone,
                speaker,
                reply,
            } => {
                let r = self.switch_devices(camera, microphone, speaker).await;
                self.publish_snapshot().await;
                let _ = reply.send(r);
            }
            Cmd::IceServers(servers, reply) => {
                self.config.rtc.ice_servers = servers;
                let _ = reply.send(Ok(()));
            }
            Cmd::Preview(on, reply) => {
                self.preview = on;
                self.sync_devices().await;
                self.publish_snapshot().await;
                let _ = reply.send(Ok(()));
            }
            Cmd::Stats(reply) => {
                let _ = reply.send(self.stats());
            }
            Cmd::Resources(reply) => {
                self.closing.retain(|t| !t.is_finished());
                let _ = reply.send(EngineResources {
                    links: self.links.len(),
                    link_tasks: self.links.len() + self.closing.len(),
                    media: self.hub.resources(),
                });
            }
            Cmd::Snapshot(reply) => {
                let _ = reply.send(self.snapshot());
            }
            Cmd::Shutdown => {}
        }
    }

    async fn switch_devices(
        &mut self,
        camera: Option<VideoSourceSpec>,
        microphone: Option<AudioSourceSpec>,
        speaker: Option<Option<Option<String>>>,
    ) -> Result<(), EngineError> {
        let running = self.devices_on;
        let in_call = self.core.in_call();
        let mut first_error = None;
        if let Some(c) = camera {
            self.config.video = c.clone();
            if running {
                let hub = self.hub.clone();
                match tokio::task::spawn_blocking(move || hub.set_video_source(&c)).await {
                    Ok(Ok(d)) => self.camera = d,
                    Ok(Err(e)) => {
                        self.camera = None;
                        first_error.get_or_insert(EngineError::Device(e));
                    }
                    Err(_) => {}
                }
            }
        }
        if let Some(m) = microphone {
            self.config.audio = m.clone();
            if running && in_call {
                let hub = self.hub.clone();
                match tokio::task::spawn_blocking(move || hub.set_audio_source(&m)).await {
                    Ok(Ok(d)) => self.microphone = d,
                    Ok(Err(e)) => {
                        self.microphone = None;
                        first_error.get_or_insert(EngineError::Device(e));
                    }
                    Err(_) => {}
                }
            }
        }
        if let Some(s) = speaker {
            self.config.speaker = s.clone();
            if running && in_call {
                let hub = self.hub.clone();
                match tokio::task::spawn_blocking(move || hub.set_speaker(s)).await {
                    Ok(Ok(d)) => self.speaker = Some(d),
                    Ok(Err(e)) => {
                        first_error.get_or_insert(EngineError::Device(e));
                    }
                    Err(_) => {}
                }
            }
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    fn link_stats(&self, peer: &PeerId, link: LinkId) -> PeerStats {
        let (video, audio) = self.hub.stats(link);
        let setup_ms = match (self.joined_at, self.hub.first_frame(link)) {
            (Some(j), Some(f)) => Some(f.saturating_duration_since(j).as_secs_f64() * 1000.0),
            _ => None,
        };
        PeerStats {
            id: peer.to_string(),
            name: self.core.name_of(peer).unwrap_or("").to_owned(),
            video,
            audio,
            setup_ms,
            answer_to_first_frame_ms: self.hub.answer_to_first_frame_ms(link),
        }
    }

    /// Keeps what a link measured before it goes.
    fn remember(&mut self, peer: &PeerId, link: LinkId) {
        let s = self.link_stats(peer, link);
        if s.video.frames_decoded > 0 || s.audio.packets > 0 {
            self.history.retain(|h| h.id != s.id);
            self.history.push(s);
        }
    }

    /// Every peer heard from in this session: live links first, then ended ones.
    fn stats(&self) -> Vec<PeerStats> {
        let mut out: Vec<PeerStats> = self
            .links
            .iter()
            .map(|(peer, l)| self.link_stats(peer, l.id))
            .collect();
        out.sort_by(|a, b| a.id.cmp(&b.id));
        for h in &self.history {
            if !out.iter().any(|o| o.id == h.id) {
                out.push(h.clone());
            }
        }
        out
    }

    async fn signaling_event(&mut self, ev: SigEvent) {
        let now = Instant::now();
        match ev {
            SigEvent::Welcome { id, room, peers } => {
                self.connection = ConnectionStatus::Connected;
                self.core.welcome(id.clone(), peers, now);
                self.apply().await;
                if let Some(reply) = self.pending_join.take() {
                    let _ = reply.send(Ok(Joined {
                        id,
                        room,
                        participants: self.core.participants(),
                    }));
                }
            }
            SigEvent::PeerJoined { id, name } => {
                self.core.peer_joined(id, name, now);
                self.apply().await;
            }
            SigEvent::PeerLeft { id } => {
                self.core.peer_left(&id, now);
                self.apply().await;
            }
            SigEvent::Signal { from, data } => match CallSignal::from_data(&data) {
                Ok(sig @ (CallSignal::Description { .. } | CallSignal::Candidate { .. })) => {
                    if let Some(l) = self.links.get(&from) {
                        if l.tx.try_send(LinkCommand::Remote(sig)).is_err() {
                            tracing::warn!("link queue full: a call message was dropped");
                        }
                    } else {
                        tracing::debug!(
                            "{from} sent a session message but there is no call with them"
                        );
                    }
                }
                Ok(sig) => {
                    self.core.signal(&from, sig, now);
                    self.apply().await;
                }
                Err(e) => tracing::debug!("ignoring a call message from {from}: {e}"),
            },
            SigEvent::Error { code, message } => {
                self.emit(EngineEvent::Error {
                    code: code.as_str().into(),
                    message,
                })
                .await;
            }
            SigEvent::Reconnecting { reason, attempt } => {
                self.connection = ConnectionStatus::Reconnecting;
                self.core.disconnected();
                self.apply().await;
                if attempt == 1 {
                    self.emit(EngineEvent::Error {
                        code: "reconnecting".into(),
                        message: format!(
                            "lost the connection to the server ({reason}); reconnecting"
                        ),
                    })
                    .await;
                }
            }
            SigEvent::Fatal { code, message } => {
                let first = self.pending_join.is_some();
                if let Some(reply) = self.pending_join.take() {
                    let _ = reply.send(Err(EngineError::Server {
                        code: code.clone(),
                        message: message.clone(),
                    }));
                } else {
                    self.emit(EngineEvent::Error { code, message }).await;
                }
                // Stop everything tied to the room.
                self.core.leave(now);
                self.apply().await;
                self.stop_signaling().await;
                if first {
                    self.publish_snapshot().await;
                }
            }
        }
    }

    async fn signaling_stopped(&mut self) {
        if let Some(s) = self.sig.take() {
            let _ = s.task.await;
        }
        self.connection = ConnectionStatus::Offline;
        self.join_params = None;
        self.publish_snapshot().await;
    }

    async fn stop_signaling(&mut self) {
        if let Some(s) = self.sig.take() {
            // Let queued hang-ups go out before the leave.
            let deadline = Instant::now() + Duration::from_millis(500);
            while s.out.capacity() < s.out.max_capacity() && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            s.cancel.cancel();
            let _ = tokio::time::timeout(Duration::from_secs(3), s.task).await;
        }
        self.connection = ConnectionStatus::Offline;
        self.join_params = None;
        self.joined_at = None;
        if let Some(reply) = self.pending_join.take() {
            let _ = reply.send(Err(EngineError::Server {
                code: "cancelled".into(),
                message: "the join was cancelled".into(),
            }));
        }
        self.publish_snapshot().await;
    }

    async fn link_event(&mut self, ev: LinkEvent) {
        let now = Instant::now();
        match ev {
            LinkEvent::Signal(to, sig) => self.send_signal(to, &sig),
            LinkEvent::Connected(id) => {
                if let Some(peer) = self.link_peer.get(&id).cloned() {
                    self.core.link_connected(&peer, now);
                    self.apply().await;
                }
            }
            LinkEvent::Failed(id, message) => {
                if let Some(peer) = self.link_peer.get(&id).cloned() {
                    let name = self.core.name_of(&peer).unwrap_or("someone").to_owned();
                    self.emit(EngineEvent::Error {
                        code: "call-failed".into(),
                        message: format!("call with {name}: {message}"),
                    })
                    .await;
                    self.core.link_failed(&peer, now);
                    self.apply().await;
                }
            }
            LinkEvent::Closed(id) => {
                // A link that ended on its own (not through CloseLink).
                let ended_alone = self.link_peer.remove(&id);
                if let Some(peer) = ended_alone {
                    if let Some(l) = self.links.remove(&peer) {
                        self.remember(&peer, l.id);
                        self.closing.push(l.task);
                    }
                    self.core.link_failed(&peer, now);
                    self.apply().await;
                }
                self.hub.remove_link(id);
            }
        }
    }
}
