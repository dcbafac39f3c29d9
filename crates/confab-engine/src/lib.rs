//! The Confab call engine: joins a room through the signaling server, calls the others, and
//! sends and receives real encoded video and audio over webrtc-rs peer connections. It knows
//! nothing of Tauri; the desktop app and `confab-peer` drive it through [`Engine`].
//!
//! - [`core`]: the call logic, a pure state machine (rings, accepts, glare, mesh, timeouts);
//! - [`signaling`]: the WebSocket client, reconnecting;
//! - [`link`]: one peer connection (negotiation, ICE, restarts);
//! - [`media`]: capture → encode → tracks, and tracks → assemble → decode → sink/mixer;
//! - [`engine`]: the actor that ties them together, and its handle.

pub mod core;
pub mod engine;
pub mod link;
pub mod media;
pub mod signaling;
pub mod stats;

pub use confab_media as media_kit;
pub use engine::{
    ConnectionStatus, Engine, EngineConfig, EngineError, EngineEvent, EngineResources, Joined,
    Snapshot,
};
pub use link::{IceServer, RtcSettings};
pub use media::{FrameSource, NullSink, VideoSink};
pub use stats::PeerStats;

/// A log filter for binaries: our crates at `warn`, the WebRTC stack (chatty about routine
/// ICE and DTLS events) at `error`. `RUST_LOG` overrides it.
pub const DEFAULT_LOG_FILTER: &str = "warn,rtc=error,rtc_ice=error,rtc_dtls=error,rtc_interceptor=error,rtc_srtp=error,rtc_sctp=error,webrtc=error";
