//! Confab's media pieces, independent of WebRTC signaling: devices and the built-in test
//! devices, the test pattern, video and audio codecs, RTP frame assembly, the audio jitter
//! buffer and mixer, and conversions for the UI.

pub mod assembler;
pub mod audio;
#[doc(hidden)]
pub mod audio_fixtures;
pub mod convert;
pub mod device;
pub mod frame;
pub mod pattern;
pub mod peek;
pub mod processing;
pub mod resample;
pub mod seq;
pub mod tone;
pub mod video;

pub use frame::{now_us, AudioFrame, VideoFrame, FRAME_SAMPLES, SAMPLE_RATE};

/// The `q` quantile (0..1) of `v` (nearest rank); NaN when empty.
pub fn quantile(v: &[f32], q: f32) -> f32 {
    if v.is_empty() {
        return f32::NAN;
    }
    let mut s = v.to_vec();
    s.sort_by(f32::total_cmp);
    let i = ((s.len() - 1) as f32 * q).round() as usize;
    s[i]
}

/// What can go wrong with media.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MediaError {
    /// A device is missing, busy or unusable; the message says which and why.
    #[error("{0}")]
    Device(String),
    /// An encoder or decoder failed.
    #[error("{0}")]
    Codec(String),
    /// The person said no in a dialog of the system's (the desktop's share picker).
    #[error("{0}")]
    Cancelled(String),
}
