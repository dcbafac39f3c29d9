//! `rtc::rtp`, without the rest of `rtc`.
pub use rtp;
