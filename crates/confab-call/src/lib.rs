//! Confab's call rules, as pure state machines fed events and time (milliseconds on any
//! monotonic clock the caller keeps). Nothing here owns a task, a socket or a peer connection:
//! the engine (`confab-engine`) and the web client (`crates/confab-signal/web/callcore.js`, a
//! line-by-line port) carry out the actions. Both run the same scenario tables
//! (`scenarios/*.json`), so the two cannot drift apart unnoticed.
//!
//! - [`core`]: the call flow of `docs/protocol.md` (rings, accepts, glare, mesh fill-in,
//!   rejoins, ring timeouts, calling as soon as someone is there);
//! - [`health`]: one link's setup deadline and ICE-restart schedule;
//! - [`layers`]: which simulcast layer a receiver asks an SFU for;
//! - [`mesh_return`]: when a call through an SFU goes back to direct links;
//! - [`negotiation`]: perfect negotiation (offer collisions, rollback), the remote-candidate
//!   queue and its limits, and the checks on remote SDP;
//! - [`sdp`]: what the engine reads out of SDP itself;
//! - [`verify`]: the verification code people compare (commit and reveal over the fingerprints);
//! - [`chat`]: chat lines in a call: limits, rate, cleaning, the history a newcomer is shown.

pub mod chat;
pub mod core;
pub mod health;
pub mod layers;
pub mod mesh_return;
pub mod negotiation;
pub mod sdp;
pub mod verify;

pub use crate::core::{Action, CallCore, CallError, Notice, Participant, Phase};

/// Milliseconds on the caller's monotonic clock.
pub type Millis = u64;
