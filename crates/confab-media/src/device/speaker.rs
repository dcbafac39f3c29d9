//! Speakers, through cpal: a small ring buffer the device's clock pulls from, and
//! [`AudioOut`], where mixed audio goes (a speaker, or nowhere).

use super::list::find_cpal;
use super::worker::Worker;
use super::SpeakerSpec;
use crate::frame::{AudioFrame, FRAME_SAMPLES, SAMPLE_RATE};
use crate::MediaError;
use cpal::traits::{DeviceTrait, StreamTrait};
use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How long a speaker may take to open.
const OPEN_TIMEOUT: Duration = Duration::from_secs(5);

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

    pub fn play(&self, frame: &AudioFrame) {
        if let Some(s) = &self.inner {
            s.push(frame);
        }
    }

    pub fn is_null(&self) -> bool {
        self.inner.is_none()
    }
}

/// A speaker fed through a small ring buffer; the device clock pulls.
struct Speaker {
    ring: Arc<Mutex<VecDeque<f32>>>,
    rate_ratio: f64,
    _worker: Worker,
}

impl Speaker {
    fn open(which: Option<String>) -> Result<(Self, String), MediaError> {
        let ring = Arc::new(Mutex::new(VecDeque::<f32>::with_capacity(48_000)));
        let r = ring.clone();
        let (worker, (name, rate)) = Worker::start(
            "speaker",
            OPEN_TIMEOUT,
            move || open_stream(which.as_deref(), r),
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
                ring,
                rate_ratio: rate as f64 / SAMPLE_RATE as f64,
                _worker: worker,
            },
            name,
        ))
    }

    fn push(&self, frame: &AudioFrame) {
        let mut q = self.ring.lock().unwrap_or_else(|p| p.into_inner());
        // Resample to the device rate (nearest sample; the device is usually 48 kHz).
        let n = (FRAME_SAMPLES as f64 * self.rate_ratio) as usize;
        for i in 0..n {
            let src = ((i as f64 / self.rate_ratio) as usize).min(FRAME_SAMPLES - 1);
            q.push_back(frame[src] as f32 / i16::MAX as f32);
        }
        // Never more than 200 ms behind.
        let max = (SAMPLE_RATE as f64 * self.rate_ratio * 0.2) as usize;
        while q.len() > max {
            q.pop_front();
        }
    }
}

/// Opens the output stream pulling from `ring`; answers it with the speaker's name and rate.
fn open_stream(
    which: Option<&str>,
    ring: Arc<Mutex<VecDeque<f32>>>,
) -> Result<(cpal::Stream, (String, u32)), MediaError> {
    let dev = find_cpal(false, which)?;
    let name = dev.name().unwrap_or_else(|_| "speaker".into());
    let cfg = dev
        .default_output_config()
        .map_err(|e| MediaError::Device(format!("the speaker cannot be used: {e}")))?;
    let channels = cfg.channels() as usize;
    let rate = cfg.sample_rate().0;
    let config: cpal::StreamConfig = cfg.clone().into();
    let stream = dev
        .build_output_stream(
            &config,
            move |out: &mut [f32], _: &cpal::OutputCallbackInfo| {
                let mut q = ring.lock().unwrap_or_else(|p| p.into_inner());
                for frame in out.chunks_mut(channels) {
                    let v = q.pop_front().unwrap_or(0.0);
                    frame.fill(v);
                }
            },
            |e| tracing::warn!("speaker: {e}"),
            None,
        )
        .map_err(|e| MediaError::Device(format!("the speaker cannot be opened: {e}")))?;
    stream
        .play()
        .map_err(|e| MediaError::Device(format!("the speaker cannot start: {e}")))?;
    Ok((stream, (name, rate)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_null_sink_takes_frames_and_plays_nowhere() {
        let out = AudioOut::open(&SpeakerSpec::None).unwrap();
        assert!(out.is_null());
        assert_eq!(out.description, "No speaker");
        out.play(&[0; FRAME_SAMPLES]);
    }

    #[test]
    fn a_missing_speaker_is_a_worded_error() {
        let err = AudioOut::open(&SpeakerSpec::Speaker(Some("no such speaker".into())))
            .err()
            .expect("no such speaker here");
        assert!(err.to_string().contains("speaker"), "{err}");
    }
}
