//! What the engine is started with and what it tells: configuration, the snapshot the UI
//! renders, events, and resource counts.

use crate::error::ErrorCode;
use crate::link::RtcSettings;
use confab_call::{Notice, Participant};
use confab_media::device::{AudioSourceSpec, VideoFormat, VideoSourceSpec};
use confab_protocol::PeerId;
use serde::Serialize;

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
    /// Echo cancellation, noise suppression and gain on the microphone (all on by default).
    pub processing: confab_media::processing::ProcessingSettings,
    /// Not a single frame from the signaling server for this long (it pings every 20 s): the
    /// connection is dead and is made again.
    pub signaling_silence: std::time::Duration,
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
                runtime: None,
                certificate: None,
                relay_only: false,
                health: Default::default(),
            },
            auto_accept: false,
            audio_bitrate: 32_000,
            processing: Default::default(),
            signaling_silence: crate::signaling::SILENCE_LIMIT,
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
    /// Everyone who asks to join our call is let in without asking.
    pub admit_all: bool,
    /// What we share (a screen, or the test screen), if anything.
    pub sharing: Option<String>,
    pub audio: bool,
    pub video: bool,
    pub camera: Option<String>,
    pub microphone: Option<String>,
    pub speaker: Option<String>,
    pub participants: Vec<Participant>,
    /// The verification code of each link, once known.
    pub verification: Vec<PeerVerification>,
    /// The call goes through the room's media server (SFU): there are no verification codes
    /// and no chat then.
    pub through_sfu: bool,
}

/// What people compare to know they talk to each other and nobody sits in the middle.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PeerVerification {
    pub id: PeerId,
    /// `123 456`: both people see the same one unless someone is in the middle.
    pub code: Option<String>,
    /// Why there is no code (the other side did not follow the protocol).
    pub problem: Option<String>,
    /// The other side's certificate fingerprint, which stays the same for one installation.
    pub fingerprint: Option<String>,
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
        code: ErrorCode,
        message: String,
    },
    /// A chat line from someone in the call (our own are in the reply to `say`).
    Chat(confab_call::chat::ChatLine),
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

/// What the engine holds right now (to check that hang-up releases everything).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EngineResources {
    pub links: usize,
    /// Subscriptions of our media we hold open at the SFU for the people our call let in,
    /// not counting those paused while their person is away.
    pub sfu_subscriptions: usize,
    pub link_tasks: usize,
    pub media: crate::media::Resources,
}
