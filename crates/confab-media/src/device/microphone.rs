//! Microphones, through cpal: the device's own rate and channels become 48 kHz mono 20 ms
//! frames (band-limited resampling when the device is not at 48 kHz), sent into a bounded
//! channel from the device's callback.

use super::list::find_cpal;
use super::worker::Worker;
use crate::frame::{AudioFrame, FRAME_SAMPLES, SAMPLE_RATE};
use crate::resample::Resampler;
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

/// Turns the device's mono samples into 48 kHz 20 ms frames, resampling (band-limited) only
/// when the device runs at another rate.
struct Framer {
    resampler: Option<Resampler>,
    out: Vec<i16>,
}

impl Framer {
    fn new(device_rate: u32) -> Result<Self, MediaError> {
        let resampler =
            if device_rate == SAMPLE_RATE {
                None
            } else {
                Some(Resampler::new(device_rate, SAMPLE_RATE).map_err(|e| {
                    MediaError::Device(format!("the microphone cannot be used: {e}"))
                })?)
            };
        Ok(Framer {
            resampler,
            out: Vec::with_capacity(FRAME_SAMPLES),
        })
    }

    fn push(&mut self, mono: impl Iterator<Item = f32>, mut emit: impl FnMut(AudioFrame)) {
        let out = &mut self.out;
        let mut put = |s: f32| {
            out.push((s.clamp(-1.0, 1.0) * i16::MAX as f32) as i16);
            if out.len() == FRAME_SAMPLES {
                let mut f = [0i16; FRAME_SAMPLES];
                f.copy_from_slice(out);
                out.clear();
                emit(f);
            }
        };
        match &mut self.resampler {
            None => mono.for_each(put),
            Some(r) => r.push(mono, |chunk| chunk.iter().for_each(|&s| put(s))),
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
    let offered = dev.supported_input_configs().into_iter().flatten();
    let cfg = super::at_48_khz(cfg, offered);
    let channels = cfg.channels() as usize;
    let rate = cfg.sample_rate().0;
    let mut framer = Framer::new(rate)?;
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
        let mut framer = Framer::new(44_100).unwrap();
        let mut frames = Vec::new();
        // One second of a 1 kHz sine at 44.1 kHz: 50 frames at 48 kHz (less the delay).
        let sine =
            (0..44_100).map(|i| (i as f32 * 1000.0 * std::f32::consts::TAU / 44_100.0).sin() * 0.5);
        framer.push(sine, |f| frames.push(f));
        assert!((48..=50).contains(&frames.len()), "{}", frames.len());
        let mut l = crate::tone::Listener::default();
        for f in &frames[1..] {
            l.push(f);
        }
        assert!((l.dominant_hz().unwrap() - 1000.0).abs() < 2.0);
    }

    #[test]
    fn the_framer_passes_48_khz_through_sample_for_sample() {
        let mut framer = Framer::new(48_000).unwrap();
        assert!(framer.resampler.is_none());
        let mut frames = Vec::new();
        framer.push(
            (0..2 * FRAME_SAMPLES).map(|i| i as f32 / 4096.0 - 0.2),
            |f| frames.push(f),
        );
        assert_eq!(frames.len(), 2);
        assert_eq!(
            frames[0][1],
            ((1.0 / 4096.0 - 0.2) * i16::MAX as f32) as i16
        );
    }

    /// Through the whole microphone path (resampling and 16-bit frames): a 1 kHz tone from a
    /// 44.1 kHz device has nothing else above -80 dBFS.
    #[test]
    fn a_44_1_khz_microphone_tone_arrives_without_images() {
        use crate::audio_fixtures::{sine, spectrum_dbfs};
        let mut framer = Framer::new(44_100).unwrap();
        let mut y = Vec::new();
        let x = sine(1000.0, 44_100, 2 * 44_100, 0.5);
        for piece in x.chunks(441) {
            framer.push(piece.iter().copied(), |f| {
                y.extend(f.iter().map(|&s| s as f32 / 32768.0))
            });
        }
        let spec = spectrum_dbfs(&y[24_000..24_000 + 32_768], 48_000);
        let spur = spec
            .iter()
            .filter(|(f, _)| (f - 1000.0).abs() > 50.0)
            .fold(f32::MIN, |m, (_, d)| m.max(*d));
        println!("44.1 kHz microphone, 1 kHz tone: largest other component {spur:.1} dBFS");
        assert!(spur < -80.0, "{spur}");
    }
}
