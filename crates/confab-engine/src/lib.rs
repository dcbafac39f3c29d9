//! The Confab call engine: joins a room through the signaling server, calls the others, and
//! sends and receives real encoded video and audio over webrtc-rs peer connections. It knows
//! nothing of Tauri; the desktop app and `confab-peer` drive it through [`Engine`].
//!
//! The rules are not here: the call flow, link health and negotiation are pure state machines
//! in `confab-call`. This crate carries their decisions out:
//!
//! - [`engine`]: the public handle; [`api`]: its configuration, snapshot and events;
//!   [`error`]: typed errors and the one list of error codes;
//! - `actor`: the task that owns everything below and applies the call rules' actions;
//! - `devices`: opening and closing devices off the actor;
//! - [`signaling`]: the WebSocket client, reconnecting;
//! - [`route`]: which of our addresses the system sends from, watched to notice a network
//!   change before anything times out;
//! - [`link`]: one peer connection (built in `link::build`, run by `link::run`);
//! - [`media`]: capture → encode → tracks, and tracks → assemble → decode → sink/mixer;
//! - [`ice`]: STUN/TURN servers and their one grammar.

mod actor;
pub mod api;
mod devices;
pub mod engine;
pub mod error;
pub mod ice;
pub mod link;
pub mod media;
pub mod route;
pub mod sfu;
pub mod signaling;
pub mod stats;

pub use api::{
    ConnectionStatus, EngineConfig, EngineEvent, EngineResources, Joined, Level, Snapshot,
};
pub use confab_call as call;
pub use confab_media as media_kit;
pub use engine::Engine;
pub use error::{EngineError, ErrorCode, JoinError};
pub use ice::{IceServer, IceServerError};
pub use link::RtcSettings;
pub use media::{FrameSource, NullSink, Stream, VideoSink, SHARE_FORMAT};
pub use stats::PeerStats;

/// A log filter for binaries: our crates at `warn`, the WebRTC stack (chatty about routine
/// ICE and DTLS events) at `error`. `RUST_LOG` overrides it.
pub const DEFAULT_LOG_FILTER: &str = "warn,rtc=error,rtc_ice=error,rtc_dtls=error,rtc_interceptor=error,rtc_srtp=error,rtc_sctp=error,webrtc=error";
