//! The captured audio's processing: echo cancellation (AEC3), noise suppression, automatic gain
//! (AGC2) and a high-pass filter, through `sonora` (a pure-Rust port of WebRTC's audio
//! processing module), on Confab's 20 ms 48 kHz mono frames.
//!
//! Two calls feed it: [`Processor::render`] with what goes to the speaker (the echo reference,
//! after volume), and [`Processor::capture`] with what the microphone heard, which it cleans in
//! place. The playout thread can hand render frames over without a lock through a
//! [`RenderFeed`]; `capture` takes them in first.
//!
//! Measured (see `audio_fixtures` and the README): echo is cancelled well (ERLE median above
//! 40 dB), noise suppressed by 12 dB; but while the far end talks the echo canceller also
//! attenuates the near end, and gain control follows the near end less closely (double talk is
//! the weak point). The output lags the input by about 5 ms, 9 ms once render frames come in.
//!
//! sonora is young. Every call into it is guarded: a panic inside it is counted and logged,
//! the processor is rebuilt with the same settings, and the frame passes through unprocessed,
//! so the call goes on.

use crate::frame::{AudioFrame, FRAME_SAMPLES, SAMPLE_RATE};
use serde::{Deserialize, Serialize};
use sonora::config::{
    AdaptiveDigital, EchoCanceller, GainController2, HighPassFilter, NoiseSuppression,
};
use sonora::{AudioProcessing, Config, StreamConfig};
use std::panic::{catch_unwind, AssertUnwindSafe};

/// Samples in one 10 ms sub-frame, the unit sonora processes.
const SUB: usize = SAMPLE_RATE as usize / 100;
/// Render frames a [`RenderFeed`] holds before it drops new ones (400 ms).
const FEED_FRAMES: usize = 20;
/// The longest echo path delay sonora takes (ms).
pub const MAX_DELAY_MS: u32 = 500;

/// Which processing runs on the captured signal. People with headsets or studio microphones
/// switch them off; all are on by default. The high-pass filter runs whenever any is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ProcessingSettings {
    pub echo_cancellation: bool,
    pub noise_suppression: bool,
    pub auto_gain: bool,
}

impl Default for ProcessingSettings {
    fn default() -> Self {
        ProcessingSettings {
            echo_cancellation: true,
            noise_suppression: true,
            auto_gain: true,
        }
    }
}

impl ProcessingSettings {
    /// All off: frames pass through untouched.
    pub const OFF: ProcessingSettings = ProcessingSettings {
        echo_cancellation: false,
        noise_suppression: false,
        auto_gain: false,
    };

    /// Whether anything runs at all.
    pub fn any(&self) -> bool {
        self.echo_cancellation || self.noise_suppression || self.auto_gain
    }

    fn sonora_config(&self) -> Config {
        Config {
            high_pass_filter: self.any().then(HighPassFilter::default),
            echo_canceller: self.echo_cancellation.then(EchoCanceller::default),
            // The noise suppressor estimates the noise on the echo canceller's output, not on
            // the microphone's signal: there the far end's echo counts as noise, and in double
            // talk the suppressor then takes away near-end speech with it (measured: the near
            // end's segmental SNR, echo cancellation and noise suppression on, 7.7 dB -> 9.2 dB;
            // everything on 5.8 -> 6.4 dB, and 9.6 -> 10.7 dB with espeak-ng speech). sonora
            // exports no linear echo-canceller output, so this is the echo canceller's final
            // output (WebRTC, without a linear output, would analyse the microphone's signal).
            // The price: residual echo is no longer taken for noise (ERLE with a 200 ms path
            // 40.7 / 30.1 dB median / p10, was 46.2 / 34.5).
            noise_suppression: self.noise_suppression.then(|| NoiseSuppression {
                analyze_linear_aec_output_when_available: true,
                ..NoiseSuppression::default()
            }),
            gain_controller2: self.auto_gain.then(|| GainController2 {
                adaptive_digital: Some(AdaptiveDigital::default()),
                ..GainController2::default()
            }),
            ..Config::default()
        }
    }
}

/// What can go wrong when steering the processor.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProcessingError {
    /// The echo path delay is beyond what the echo canceller takes; it uses the largest it can.
    #[error("an echo path delay of {ms} ms is too long; {MAX_DELAY_MS} ms is used")]
    DelayTooLong { ms: u32 },
}

/// How the processing is doing, since the processor was made.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ProcessingStats {
    /// The settings in force.
    pub settings: Option<ProcessingSettings>,
    /// Echo return loss enhancement (dB) as the echo canceller estimates it; `None` when echo
    /// cancellation is off or has not reported yet.
    pub erle_db: Option<f64>,
    /// Echo return loss (dB): how much quieter the echo is than the far end.
    pub erl_db: Option<f64>,
    /// The echo canceller's own estimate of the echo path delay (ms).
    pub estimated_delay_ms: Option<i32>,
    /// Fraction of time the linear echo filter diverged (last second).
    pub divergent_filter_fraction: Option<f64>,
    /// The delay last given with [`Processor::set_delay_ms`].
    pub delay_ms: u32,
    /// 20 ms capture frames processed.
    pub capture_frames: u64,
    /// 20 ms render frames taken in.
    pub render_frames: u64,
    /// Render frames a full [`RenderFeed`] dropped.
    pub render_dropped: u64,
    /// Panics inside sonora (each one rebuilt the processor).
    pub panics: u64,
    /// Times the processor was rebuilt after a panic.
    pub resets: u64,
    /// 10 ms halves of capture frames that passed through unprocessed (a panic, or sonora
    /// refusing one), and render halves sonora refused.
    pub passed_through: u64,
}

/// Hands render (far-end) frames from the playout thread to the [`Processor`] without a lock;
/// [`Processor::capture`] takes them in before each capture frame. It holds 400 ms; a full feed
/// drops new frames (counted in [`ProcessingStats::render_dropped`]), so keep calling `capture`
/// (with silence if need be) while the microphone is off, or make a new feed when it comes
/// back.
pub struct RenderFeed {
    tx: rtrb::Producer<AudioFrame>,
    dropped: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl RenderFeed {
    /// Queues what was sent to the speaker. Never blocks, never allocates.
    pub fn push(&mut self, far_end: &AudioFrame) {
        if self.tx.push(*far_end).is_err() {
            self.dropped
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    }
}

/// Echo cancellation, noise suppression, gain and high-pass on 20 ms 48 kHz mono frames.
pub struct Processor {
    settings: ProcessingSettings,
    /// `None` when off, or when building one panicked (retried after a second of frames).
    apm: Option<AudioProcessing>,
    delay_ms: u32,
    stats: ProcessingStats,
    feed: Option<rtrb::Consumer<AudioFrame>>,
    feed_dropped: std::sync::Arc<std::sync::atomic::AtomicU64>,
    /// Capture frames to wait before trying again to build a sonora instance that panicked
    /// while being built.
    retry_in: u32,
    fail_next: bool,
}

// The engine moves it to the capture thread.
const _: fn() = || {
    fn send<T: Send>() {}
    send::<Processor>();
    send::<RenderFeed>();
};

impl std::fmt::Debug for Processor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Processor")
            .field("settings", &self.settings)
            .field("delay_ms", &self.delay_ms)
            .finish_non_exhaustive()
    }
}

impl Default for Processor {
    fn default() -> Self {
        Processor::new(ProcessingSettings::default())
    }
}

impl Processor {
    pub fn new(settings: ProcessingSettings) -> Self {
        let mut p = Processor {
            settings,
            apm: None,
            delay_ms: 0,
            stats: ProcessingStats::default(),
            feed: None,
            feed_dropped: Default::default(),
            retry_in: 0,
            fail_next: false,
        };
        p.rebuild();
        p
    }

    pub fn settings(&self) -> ProcessingSettings {
        self.settings
    }

    /// Switches processing on or off. A change starts the processing afresh (the echo
    /// canceller converges again, within a couple of seconds of far-end speech).
    pub fn set_settings(&mut self, settings: ProcessingSettings) {
        if settings != self.settings {
            self.settings = settings;
            self.rebuild();
        }
    }

    /// The delay (ms) between a frame given to [`Processor::render`] and its echo reaching
    /// [`Processor::capture`] (output buffering plus input buffering): a hint, the echo
    /// canceller also finds the delay itself. Beyond 500 ms it is capped (and answered as an
    /// error).
    pub fn set_delay_ms(&mut self, ms: u32) -> Result<(), ProcessingError> {
        self.delay_ms = ms.min(MAX_DELAY_MS);
        let d = self.delay_ms as i32;
        self.guarded("set_stream_delay_ms", |apm| {
            let _ = apm.set_stream_delay_ms(d);
        });
        if ms > MAX_DELAY_MS {
            return Err(ProcessingError::DelayTooLong { ms });
        }
        Ok(())
    }

    /// A lock-free way for another thread (the playout clock) to give the render frames; a new
    /// feed replaces the previous one.
    pub fn render_feed(&mut self) -> RenderFeed {
        let (tx, rx) = rtrb::RingBuffer::new(FEED_FRAMES);
        self.feed = Some(rx);
        RenderFeed {
            tx,
            dropped: self.feed_dropped.clone(),
        }
    }

    /// Takes in what was sent to the speaker: the echo reference. Not changed.
    pub fn render(&mut self, far_end: &AudioFrame) {
        self.stats.render_frames += 1;
        if !self.settings.echo_cancellation {
            return;
        }
        let (mut inp, mut out) = ([0f32; SUB], [0f32; SUB]);
        for half in far_end.chunks_exact(SUB) {
            for (d, &s) in inp.iter_mut().zip(half) {
                *d = s as f32 / 32768.0;
            }
            match self.guarded_with("process_render_f32", |apm| {
                apm.process_render_f32(&[&inp], &mut [&mut out])
            }) {
                Some(Ok(())) => {}
                Some(Err(e)) => {
                    self.stats.passed_through += 1;
                    tracing::warn!("audio processing refused a render frame: {e}");
                }
                None => {}
            }
        }
    }

    /// Cleans a captured frame in place (echo, noise, level). Any render frames queued through a
    /// [`RenderFeed`] are taken in first. On trouble inside sonora the frame passes unchanged.
    pub fn capture(&mut self, near: &mut AudioFrame) {
        while let Some(f) = self.feed.as_mut().and_then(|rx| rx.pop().ok()) {
            self.render(&f);
        }
        if !self.settings.any() {
            return;
        }
        self.stats.capture_frames += 1;
        if self.apm.is_none() {
            if self.retry_in == 0 {
                self.rebuild();
            } else {
                self.retry_in -= 1;
            }
        }
        let delay = self.delay_ms as i32;
        let (mut inp, mut out) = ([0f32; SUB], [0f32; SUB]);
        for half in near.chunks_exact_mut(SUB) {
            for (d, &s) in inp.iter_mut().zip(half.iter()) {
                *d = s as f32 / 32768.0;
            }
            let done = self.guarded_with("process_capture_f32", |apm| {
                // WebRTC wants the delay given before every capture frame.
                let _ = apm.set_stream_delay_ms(delay);
                apm.process_capture_f32(&[&inp], &mut [&mut out])
            });
            match done {
                Some(Ok(())) => {
                    for (d, &s) in half.iter_mut().zip(out.iter()) {
                        *d = (s * 32768.0).round().clamp(-32768.0, 32767.0) as i16;
                    }
                }
                Some(Err(e)) => {
                    self.stats.passed_through += 1;
                    tracing::warn!("audio processing refused a capture frame: {e}");
                }
                // A panic: the sub-frame stays as captured.
                None => self.stats.passed_through += 1,
            }
        }
    }

    /// Where the processing stands (the echo canceller's own estimates included).
    pub fn stats(&self) -> ProcessingStats {
        let mut s = self.stats.clone();
        s.settings = Some(self.settings);
        s.delay_ms = self.delay_ms;
        s.render_dropped = self.feed_dropped.load(std::sync::atomic::Ordering::Relaxed);
        if let Some(apm) = &self.apm {
            let st = apm.statistics();
            s.erle_db = st.echo_return_loss_enhancement;
            s.erl_db = st.echo_return_loss;
            s.estimated_delay_ms = st.delay_ms;
            s.divergent_filter_fraction = st.divergent_filter_fraction;
        }
        s
    }

    /// Makes the next call into sonora panic, to test the recovery.
    #[doc(hidden)]
    pub fn inject_panic(&mut self) {
        self.fail_next = true;
    }

    /// A fresh sonora instance for the current settings (none when all is off). Guarded
    /// itself: if building panics, the processor stays off until the next capture frame.
    fn rebuild(&mut self) {
        self.apm = None;
        if !self.settings.any() {
            return;
        }
        let config = self.settings.sonora_config();
        let delay = self.delay_ms as i32;
        let stream = StreamConfig::new(SAMPLE_RATE, 1);
        match catch_unwind(|| {
            let mut apm = AudioProcessing::builder()
                .config(config)
                .capture_config(stream)
                .render_config(stream)
                .build();
            let _ = apm.set_stream_delay_ms(delay);
            apm
        }) {
            Ok(apm) => self.apm = Some(apm),
            Err(_) => {
                self.stats.panics += 1;
                // Try again in a second; until then frames pass through.
                self.retry_in = 50;
                tracing::error!(
                    "audio processing could not be built (a panic inside sonora); frames pass through unprocessed"
                );
            }
        }
    }

    fn guarded(&mut self, what: &str, f: impl FnOnce(&mut AudioProcessing)) {
        self.guarded_with(what, f);
    }

    /// Runs `f` on the sonora instance, catching a panic: then counts it, logs it, rebuilds
    /// and answers `None`.
    fn guarded_with<R>(
        &mut self,
        what: &str,
        f: impl FnOnce(&mut AudioProcessing) -> R,
    ) -> Option<R> {
        let apm = self.apm.as_mut()?;
        let fail = std::mem::take(&mut self.fail_next);
        // The instance is thrown away if `f` panics, so no broken state is seen again.
        match catch_unwind(AssertUnwindSafe(|| {
            if fail {
                panic!("injected failure");
            }
            f(apm)
        })) {
            Ok(r) => Some(r),
            Err(p) => {
                let msg = p
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| p.downcast_ref::<String>().cloned())
                    .unwrap_or_default();
                self.stats.panics += 1;
                self.stats.resets += 1;
                // A panic that repeats on every frame is logged less and less often.
                if self.stats.resets <= 3 || self.stats.resets.is_power_of_two() {
                    tracing::error!(
                        "audio processing panicked in {what} ({msg}; {} so far); rebuilt, this frame passes unprocessed",
                        self.stats.resets
                    );
                }
                self.rebuild();
                None
            }
        }
    }
}

// A frame is exactly two of sonora's 10 ms sub-frames.
const _: () = assert!(2 * SUB == FRAME_SAMPLES);

#[cfg(test)]
#[path = "processing_tests.rs"]
mod tests;
