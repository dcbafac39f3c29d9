//! Microphones, through cpal: the device's own rate and channels become 48 kHz mono 20 ms
//! frames, sent into a bounded channel from the device's callback.

use super::list::find_cpal;
use super::worker::Worker;
use crate::frame::{AudioFrame, FRAME_SAMPLES, SAMPLE_RATE};
use crate::MediaError;
use cpal::traits::{DeviceTrait, StreamTrait};
use std::sync::atomic::Ordering;
use std::sync::mpsc::SyncSender;
use std::time::Duration;

/// How long a microphone may take to open.
const OPEN_TIMEOUT: Duration = Duration::from_secs(5);

/// Opens a microphone (`None`: the default one) on a thread of its own, sending its frames
/// into `tx` (full = dropped). Answers what is capturing, in words.
pub(super) fn start(
    which: Option<String>,
    tx: SyncSender<AudioFrame>,
) -> Result<(Worker, String), MediaError> {
    Worker::start(
        "microphone",
        OPEN_TIMEOUT,
        move || open(which.as_deref(), tx),
        |stream, stop| {
            // The stream runs on cpal's own thread; this one only keeps it alive.
            while !stop.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(50));
            }
            drop(stream);
        },
    )
}

/// Converts interleaved f32 at any rate to 48 kHz mono 20 ms frames (linear interpolation;
/// fine for speech from the usual 44.1/48 kHz devices).
struct Framer {
    ratio: f64,
    pos: f64,
    prev: f32,
    out: Vec<i16>,
}

impl Framer {
    fn new(device_rate: u32) -> Self {
        Framer {
            ratio: device_rate as f64 / SAMPLE_RATE as f64,
            pos: 0.0,
            prev: 0.0,
            out: Vec::with_capacity(FRAME_SAMPLES),
        }
    }

    fn push(&mut self, mono: impl Iterator<Item = f32>, mut emit: impl FnMut(AudioFrame)) {
        for s in mono {
            while self.pos <= 1.0 {
                let v = self.prev + (s - self.prev) * self.pos as f32;
                self.out.push((v.clamp(-1.0, 1.0) * i16::MAX as f32) as i16);
                if self.out.len() == FRAME_SAMPLES {
                    let mut f = [0i16; FRAME_SAMPLES];
                    f.copy_from_slice(&self.out);
                    self.out.clear();
                    emit(f);
                }
                self.pos += self.ratio;
            }
            self.pos -= 1.0;
            self.prev = s;
        }
    }
}

fn open(
    which: Option<&str>,
    tx: SyncSender<AudioFrame>,
) -> Result<(cpal::Stream, String), MediaError> {
    let dev = find_cpal(true, which)?;
    let name = dev.name().unwrap_or_else(|_| "microphone".into());
    let cfg = dev
        .default_input_config()
        .map_err(|e| MediaError::Device(format!("the microphone cannot be used: {e}")))?;
    let channels = cfg.channels() as usize;
    let rate = cfg.sample_rate().0;
    let mut framer = Framer::new(rate);
    let config: cpal::StreamConfig = cfg.clone().into();
    let err = |e: cpal::StreamError| tracing::warn!("microphone: {e}");
    let stream = match cfg.sample_format() {
        cpal::SampleFormat::F32 => dev.build_input_stream(
            &config,
            move |data: &[f32], _: &cpal::InputCallbackInfo| {
                let mono = data
                    .chunks(channels)
                    .map(|c| c.iter().sum::<f32>() / channels as f32);
                framer.push(mono, |f| {
                    let _ = tx.try_send(f);
                });
            },
            err,
            None,
        ),
        cpal::SampleFormat::I16 => dev.build_input_stream(
            &config,
            move |data: &[i16], _: &cpal::InputCallbackInfo| {
                let mono = data.chunks(channels).map(|c| {
                    c.iter().map(|&s| s as f32 / i16::MAX as f32).sum::<f32>() / channels as f32
                });
                framer.push(mono, |f| {
                    let _ = tx.try_send(f);
                });
            },
            err,
            None,
        ),
        other => {
            return Err(MediaError::Device(format!(
                "unsupported microphone sample format {other:?}"
            )))
        }
    }
    .map_err(|e| MediaError::Device(format!("the microphone cannot be opened: {e}")))?;
    stream
        .play()
        .map_err(|e| MediaError::Device(format!("the microphone cannot start: {e}")))?;
    Ok((stream, format!("{name} ({rate} Hz)")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_framer_turns_44_1_khz_into_48_khz_20_ms_frames() {
        let mut framer = Framer::new(44_100);
        let mut frames = Vec::new();
        // One second of a 1 kHz sine at 44.1 kHz: 50 frames at 48 kHz.
        let sine =
            (0..44_100).map(|i| (i as f32 * 1000.0 * std::f32::consts::TAU / 44_100.0).sin() * 0.5);
        framer.push(sine, |f| frames.push(f));
        assert!((49..=50).contains(&frames.len()), "{}", frames.len());
        let mut l = crate::tone::Listener::default();
        for f in &frames {
            l.push(f);
        }
        assert!((l.dominant_hz().unwrap() - 1000.0).abs() < 2.0);
    }
}
