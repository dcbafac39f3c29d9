//! Speakers, through cpal: a lock-free ring ([`rtrb`]) the device's clock pulls from, and
//! [`AudioOut`], where mixed audio goes (a speaker, or nowhere). The device callback never
//! locks or allocates; when the ring runs dry it plays silence and counts an underrun.

use super::list::find_cpal;
use super::worker::Worker;
use super::SpeakerSpec;
use crate::frame::{AudioFrame, SAMPLE_RATE};
use crate::resample::Resampler;
use crate::MediaError;
use cpal::traits::{DeviceTrait, StreamTrait};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// How long a speaker may take to open.
const OPEN_TIMEOUT: Duration = Duration::from_secs(5);
/// The most audio the ring holds (ms): playout never gets further ahead of the device.
const RING_MS: usize = 200;

/// Where mixed audio goes: a speaker, or nowhere (a machine without a sound card).
pub struct AudioOut {
    inner: Option<Speaker>,
    pub description: String,
}

impl AudioOut {
    /// A null sink: frames are dropped.
    pub fn null() -> Self {
        AudioOut {
            inner: None,
            description: "No speaker".into(),
        }
    }

    /// The named speaker (or the default one).
    pub fn speaker(which: Option<String>) -> Result<Self, MediaError> {
        let (inner, description) = Speaker::open(which)?;
        Ok(AudioOut {
            inner: Some(inner),
            description,
        })
    }

    /// What `spec` asks for: a speaker, or the null sink.
    pub fn open(spec: &SpeakerSpec) -> Result<Self, MediaError> {
        match spec {
            SpeakerSpec::Speaker(which) => AudioOut::speaker(which.clone()),
            SpeakerSpec::None => Ok(AudioOut::null()),
        }
    }

    /// Queues a frame for the speaker (resampled to its rate when it is not 48 kHz). Never
    /// blocks: when the ring is full (more than 200 ms ahead) the rest of the frame is dropped
    /// and counted.
    pub fn play(&mut self, frame: &AudioFrame) {
        if let Some(s) = &mut self.inner {
            s.feed.push(frame);
        }
    }

    pub fn is_null(&self) -> bool {
        self.inner.is_none()
    }

    /// Times the device asked for audio and the ring ran dry (silence was played), since the
    /// first audio arrived.
    pub fn underruns(&self) -> u64 {
        self.inner
            .as_ref()
            .map_or(0, |s| s.counters.underruns.load(Ordering::Relaxed))
    }

    /// Samples (at the device rate) dropped because the ring was full.
    pub fn overflow_samples(&self) -> u64 {
        self.inner
            .as_ref()
            .map_or(0, |s| s.counters.dropped.load(Ordering::Relaxed))
    }

    /// How long (ms) until a frame played now is heard: what waits in the ring, plus the
    /// device's own output latency as cpal last reported it, plus the resampler's delay. The
    /// render-to-speaker part of the echo path delay; 0 for the null sink.
    pub fn latency_ms(&self) -> u32 {
        self.inner.as_ref().map_or(0, |s| s.latency_ms())
    }
}

// The engine hands a newly opened speaker to its playout thread.
const _: fn() = || {
    fn send<T: Send>() {}
    send::<AudioOut>();
};

/// Shared between the playout side and the device callback; atomics only.
#[derive(Debug, Default)]
struct Counters {
    underruns: AtomicU64,
    dropped: AtomicU64,
    /// The device's output latency (µs) from the callback's timestamps.
    device_latency_us: AtomicU64,
}

/// The playout side of the ring: resamples to the device rate and fills it.
struct Feed {
    tx: rtrb::Producer<f32>,
    resampler: Option<Resampler>,
    counters: Arc<Counters>,
}

impl Feed {
    fn push(&mut self, frame: &AudioFrame) {
        let samples = frame.iter().map(|&s| s as f32 / 32768.0);
        let (tx, counters) = (&mut self.tx, &self.counters);
        let mut put = |chunk: &mut dyn Iterator<Item = f32>| {
            let mut dropped = 0u64;
            for v in chunk {
                if tx.push(v).is_err() {
                    dropped += 1;
                }
            }
            if dropped > 0 {
                counters.dropped.fetch_add(dropped, Ordering::Relaxed);
            }
        };
        match &mut self.resampler {
            None => put(&mut samples.into_iter()),
            Some(r) => r.push(samples, |c| put(&mut c.iter().copied())),
        }
    }

    /// Samples waiting in the ring.
    fn queued(&self) -> usize {
        self.tx.buffer().capacity() - self.tx.slots()
    }
}

/// The device side of the ring: pops into the callback's buffer. No lock, no allocation.
struct Pull {
    rx: rtrb::Consumer<f32>,
    counters: Arc<Counters>,
    started: bool,
}

impl Pull {
    fn fill(&mut self, out: &mut [f32], channels: usize) {
        let mut short = false;
        for frame in out.chunks_mut(channels.max(1)) {
            let v = match self.rx.pop() {
                Ok(v) => {
                    self.started = true;
                    v
                }
                Err(_) => {
                    short = true;
                    0.0
                }
            };
            frame.fill(v);
        }
        if short && self.started {
            self.counters.underruns.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// A ring for a device at `rate`: its playout side and its device side.
fn ring(rate: u32) -> Result<(Feed, Pull), MediaError> {
    let capacity = (rate as usize * RING_MS / 1000).max(1);
    let (tx, rx) = rtrb::RingBuffer::new(capacity);
    let counters = Arc::new(Counters::default());
    let resampler = if rate == SAMPLE_RATE {
        None
    } else {
        Some(
            Resampler::new(SAMPLE_RATE, rate)
                .map_err(|e| MediaError::Device(format!("the speaker cannot be used: {e}")))?,
        )
    };
    Ok((
        Feed {
            tx,
            resampler,
            counters: counters.clone(),
        },
        Pull {
            rx,
            counters,
            started: false,
        },
    ))
}

/// A speaker fed through the ring; the device clock pulls.
struct Speaker {
    feed: Feed,
    counters: Arc<Counters>,
    rate: u32,
    _worker: Worker,
}

impl Speaker {
    fn open(which: Option<String>) -> Result<(Self, String), MediaError> {
        let (worker, (name, rate, feed)) = Worker::start(
            "speaker",
            OPEN_TIMEOUT,
            move || open_stream(which.as_deref()),
            |stream, stop| {
                // The stream runs on cpal's own thread; this one only keeps it alive.
                while !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(50));
                }
                drop(stream);
            },
        )?;
        Ok((
            Speaker {
                counters: feed.counters.clone(),
                feed,
                rate,
                _worker: worker,
            },
            name,
        ))
    }

    fn latency_ms(&self) -> u32 {
        let ring_us = self.feed.queued() as u64 * 1_000_000 / self.rate.max(1) as u64;
        let resampler_us = self.feed.resampler.as_ref().map_or(0, |r| {
            r.delay() as u64 * 1_000_000 / r.to_rate().max(1) as u64
        });
        let device_us = self.counters.device_latency_us.load(Ordering::Relaxed);
        ((ring_us + resampler_us + device_us) / 1000) as u32
    }
}

/// Opens the output stream and its ring; answers the stream with the speaker's name, rate and
/// the ring's playout side.
fn open_stream(which: Option<&str>) -> Result<(cpal::Stream, (String, u32, Feed)), MediaError> {
    let dev = find_cpal(false, which)?;
    let name = dev.name().unwrap_or_else(|_| "speaker".into());
    let cfg = dev
        .default_output_config()
        .map_err(|e| MediaError::Device(format!("the speaker cannot be used: {e}")))?;
    let offered = dev.supported_output_configs().into_iter().flatten();
    let cfg = super::at_48_khz(cfg, offered);
    let channels = cfg.channels() as usize;
    let rate = cfg.sample_rate().0;
    let (feed, mut pull) = ring(rate)?;
    let config: cpal::StreamConfig = cfg.clone().into();
    let stream = dev
        .build_output_stream(
            &config,
            move |out: &mut [f32], info: &cpal::OutputCallbackInfo| {
                let ts = info.timestamp();
                if let Some(d) = ts.playback.duration_since(&ts.callback) {
                    pull.counters
                        .device_latency_us
                        .store(d.as_micros() as u64, Ordering::Relaxed);
                }
                pull.fill(out, channels);
            },
            |e| tracing::warn!("speaker: {e}"),
            None,
        )
        .map_err(|e| MediaError::Device(format!("the speaker cannot be opened: {e}")))?;
    stream
        .play()
        .map_err(|e| MediaError::Device(format!("the speaker cannot start: {e}")))?;
    Ok((stream, (name, rate, feed)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::FRAME_SAMPLES;

    #[test]
    fn the_null_sink_takes_frames_and_plays_nowhere() {
        let mut out = AudioOut::open(&SpeakerSpec::None).unwrap();
        assert!(out.is_null());
        assert_eq!(out.description, "No speaker");
        out.play(&[0; FRAME_SAMPLES]);
        assert_eq!(
            (out.underruns(), out.overflow_samples(), out.latency_ms()),
            (0, 0, 0)
        );
    }

    #[test]
    fn at_48_khz_the_ring_carries_frames_sample_for_sample() {
        let (mut feed, mut pull) = ring(48_000).unwrap();
        assert!(feed.resampler.is_none());
        let mut f = [0i16; FRAME_SAMPLES];
        f[0] = 16384;
        f[1] = -8192;
        feed.push(&f);
        assert_eq!(feed.queued(), FRAME_SAMPLES);
        // Stereo device: each sample on both channels.
        let mut out = [1.0f32; 8];
        pull.fill(&mut out, 2);
        assert_eq!(out[..4], [0.5, 0.5, -0.25, -0.25]);
        assert_eq!(feed.counters.underruns.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn a_dry_ring_plays_silence_and_counts_an_underrun_once_audio_has_come() {
        let (mut feed, mut pull) = ring(48_000).unwrap();
        let mut out = [1.0f32; 256];
        // Before any audio: silence, but no underrun (nothing was playing yet).
        pull.fill(&mut out, 1);
        assert!(out.iter().all(|&v| v == 0.0));
        assert_eq!(feed.counters.underruns.load(Ordering::Relaxed), 0);
        feed.push(&[100; FRAME_SAMPLES]);
        let mut big = [1.0f32; FRAME_SAMPLES + 10];
        pull.fill(&mut big, 1);
        assert_eq!(big[FRAME_SAMPLES - 1], 100.0 / 32768.0);
        assert_eq!(big[FRAME_SAMPLES], 0.0);
        assert_eq!(feed.counters.underruns.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn a_full_ring_drops_and_counts_instead_of_growing() {
        let (mut feed, _pull) = ring(48_000).unwrap();
        // 300 ms of frames into a 200 ms ring.
        for _ in 0..15 {
            feed.push(&[1; FRAME_SAMPLES]);
        }
        assert_eq!(feed.queued(), 9_600);
        assert_eq!(
            feed.counters.dropped.load(Ordering::Relaxed),
            15 * FRAME_SAMPLES as u64 - 9_600
        );
    }

    #[test]
    fn a_44_1_khz_speaker_gets_441_samples_per_10_ms() {
        let (mut feed, mut pull) = ring(44_100).unwrap();
        for _ in 0..10 {
            feed.push(&[1000; FRAME_SAMPLES]);
        }
        // 200 ms in, less the resampler's chunk still buffered.
        let q = feed.queued();
        assert!((8_379..=8_820).contains(&q), "{q}");
        let mut out = vec![0f32; q];
        pull.fill(&mut out, 1);
        // A steady level comes out steady (after the filter's start).
        let tail = &out[q - 441..];
        assert!(
            tail.iter().all(|&v| (v - 1000.0 / 32768.0).abs() < 1e-3),
            "{:?}",
            &tail[..4]
        );
    }

    #[test]
    fn a_missing_speaker_is_a_worded_error() {
        let err = AudioOut::open(&SpeakerSpec::Speaker(Some("no such speaker".into())))
            .err()
            .expect("no such speaker here");
        assert!(err.to_string().contains("speaker"), "{err}");
    }
}
