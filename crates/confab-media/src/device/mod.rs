//! Devices: cameras (nokhwa), microphones and speakers (cpal), and the built-in test devices
//! ("Test pattern" camera, "Test tone" microphone) that go through the very same pipeline.
//!
//! - [`id`]: the device-id grammar (`test`, `tone:660`, `camera:0`, `mic:NAME`, …), one parser
//!   for settings, IPC and command lines;
//! - [`list`](mod@list): what this computer has;
//! - [`bus`]: the frame bus, the newest frame for any number of consumers;
//! - `test_source`, `camera`, `microphone`, `speaker`: the sources and the sink;
//! - [`echo_path`]: the echo-path test microphone (a laptop without headphones, simulated);
//! - [`mic_check`]: the join screen's microphone test (record, then play back);
//! - [`screen`]: screens and windows to share (xcap);
//! - `pattern_window` (Linux): a window painted with the test pattern, for sharing tests;
//! - `worker`: the one start-up sequence every device thread goes through.
//!
//! Every source runs on a thread of its own (cameras and cpal streams are not `Send` on every
//! platform) and is stopped and joined when its handle drops. [`VideoCapture`] and
//! [`AudioCapture`] start whichever source a spec names.

pub mod bus;
mod camera;
pub mod echo_path;
pub mod id;
pub mod list;
pub mod mic_check;
mod microphone;
#[cfg(target_os = "linux")]
pub mod pattern_window;
#[cfg(target_os = "linux")]
pub mod portal;
pub mod screen;
mod speaker;
mod test_source;
mod worker;
#[cfg(target_os = "linux")]
mod x11_window;

pub use bus::FrameBus;
pub use id::{
    share_source, AudioSourceSpec, CameraRef, DeviceId, DeviceIdError, DeviceKind, ScreenRef,
    SpeakerSpec, VideoSourceSpec, DEFAULT_TONE_HZ, MAX_ID_LEN, TEST_PATTERN, TEST_TONE, TONE_HZ,
};
pub use list::{list, quiet_alsa, Device, DeviceList};
pub use speaker::AudioOut;

use crate::frame::AudioFrame;
use crate::{pattern, MediaError};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::Arc;
use worker::Worker;

#[derive(Debug, Clone, Copy)]
pub struct VideoFormat {
    pub width: usize,
    pub height: usize,
    pub fps: f32,
}

/// A picture size as people write it on a command line: `WIDTHxHEIGHT` (`1280x720`), within
/// 16x16..3840x2160.
pub fn parse_size(s: &str) -> Result<(usize, usize), String> {
    let (w, h) = s
        .split_once(['x', 'X'])
        .ok_or("expected WIDTHxHEIGHT, e.g. 1280x720")?;
    let w: usize = w.parse().map_err(|_| format!("bad width `{w}`"))?;
    let h: usize = h.parse().map_err(|_| format!("bad height `{h}`"))?;
    if !(16..=3840).contains(&w) || !(16..=2160).contains(&h) {
        return Err(format!("{w}x{h} is outside 16x16..3840x2160"));
    }
    Ok((w, h))
}

/// A running video source. Stops (and joins its thread) when dropped.
pub struct VideoCapture {
    _worker: Worker,
    /// What is capturing, in words (e.g. "Test pattern 640x480 @ 30 fps").
    pub description: String,
    pub format: VideoFormat,
    ended: Arc<AtomicBool>,
}

impl VideoCapture {
    /// Starts a source publishing into `bus` (`None` for [`VideoSourceSpec::None`]). Fails
    /// with a worded error when the camera is missing or busy. A screen or window is captured
    /// at `want`'s frame rate and its own size (see [`screen`]).
    pub fn start(
        spec: &VideoSourceSpec,
        want: VideoFormat,
        bus: Arc<FrameBus>,
    ) -> Result<Option<Self>, MediaError> {
        VideoCapture::start_cancellable(spec, want, bus, Arc::default())
    }

    /// [`VideoCapture::start`], given up as [`MediaError::Cancelled`] once `cancel` is set
    /// while it waits for the person (the desktop's share picker: the call ended, or sharing
    /// was stopped, before they chose).
    pub fn start_cancellable(
        spec: &VideoSourceSpec,
        want: VideoFormat,
        bus: Arc<FrameBus>,
        cancel: Arc<AtomicBool>,
    ) -> Result<Option<Self>, MediaError> {
        let ended = Arc::new(AtomicBool::new(false));
        let (worker, description, format) = match spec {
            VideoSourceSpec::None => return Ok(None),
            VideoSourceSpec::Screen(which) => {
                let (worker, (description, format)) =
                    screen::start(*which, want, bus, ended.clone(), cancel)?;
                (worker, description, format)
            }
            VideoSourceSpec::TestPattern => {
                let (w, h) = (want.width & !1, want.height & !1);
                if w < pattern::MIN_WIDTH || h < pattern::MIN_HEIGHT || w > 3840 || h > 2160 {
                    return Err(MediaError::Device(format!(
                        "the test pattern needs a size between {}x{} and 3840x2160, not {}x{}",
                        pattern::MIN_WIDTH,
                        pattern::MIN_HEIGHT,
                        want.width,
                        want.height
                    )));
                }
                let fps = want.fps.clamp(1.0, 120.0);
                let worker = test_source::start_pattern(w, h, fps, bus)?;
                let format = VideoFormat {
                    width: w,
                    height: h,
                    fps,
                };
                (worker, format!("Test pattern {w}x{h} @ {fps} fps"), format)
            }
            VideoSourceSpec::Camera(which) => {
                let (worker, (description, format)) = camera::start(which.clone(), want, bus)?;
                (worker, description, format)
            }
        };
        Ok(Some(VideoCapture {
            _worker: worker,
            description,
            format,
            ended,
        }))
    }

    /// Whether the source stopped by itself (a shared window was closed).
    pub fn ended(&self) -> bool {
        self.ended.load(Ordering::Relaxed)
    }
}

/// A running audio source sending 20 ms frames into a bounded channel (full = dropped).
/// Stops (and joins its thread) when dropped.
pub struct AudioCapture {
    _worker: Worker,
    pub description: String,
}

impl AudioCapture {
    /// Starts a source (`None` for [`AudioSourceSpec::None`]). The receiver gets 48 kHz mono
    /// 20 ms frames.
    pub fn start(
        spec: &AudioSourceSpec,
    ) -> Result<(Option<Self>, Receiver<AudioFrame>), MediaError> {
        let (tx, rx) = sync_channel(25);
        let (worker, description) = match spec {
            AudioSourceSpec::None => return Ok((None, rx)),
            AudioSourceSpec::Tone(hz) => (
                test_source::start_tone(*hz, tx)?,
                format!("Test tone {hz} Hz"),
            ),
            AudioSourceSpec::Voice => (test_source::start_voice(tx)?, "Test voice".into()),
            AudioSourceSpec::Echo(_) => return Err(MediaError::Device(
                "the echo test microphone hears this computer's speaker: it runs only in a call"
                    .into(),
            )),
            AudioSourceSpec::Mic(which) => microphone::start(which.clone(), tx)?,
        };
        Ok((
            Some(AudioCapture {
                _worker: worker,
                description,
            }),
            rx,
        ))
    }
}

impl AudioCapture {
    /// Starts the echo-path test microphone ([`echo_path`]), hearing what `tap`'s feed is
    /// given (the speaker's output) `delay_ms` later.
    pub fn start_echo(
        delay_ms: u32,
        tap: echo_path::EchoTap,
    ) -> Result<(Self, Receiver<AudioFrame>), MediaError> {
        let (tx, rx) = sync_channel(25);
        let worker = echo_path::start(delay_ms, tap, tx)?;
        Ok((
            AudioCapture {
                _worker: worker,
                description: format!("Echo of the speaker, {delay_ms} ms"),
            },
            rx,
        ))
    }
}

/// The device configuration to open: the default one when it runs at 48 kHz (Confab's rate);
/// otherwise the same channels and sample format at 48 kHz when the device offers that (then
/// no resampling is needed), else the same format at 48 kHz with other channels, else the
/// default (and the audio is resampled).
fn at_48_khz(
    default: cpal::SupportedStreamConfig,
    offered: impl IntoIterator<Item = cpal::SupportedStreamConfigRange>,
) -> cpal::SupportedStreamConfig {
    let rate = cpal::SampleRate(crate::frame::SAMPLE_RATE);
    if default.sample_rate() == rate {
        return default;
    }
    let ranges: Vec<_> = offered
        .into_iter()
        .filter(|r| r.sample_format() == default.sample_format())
        .filter(|r| r.min_sample_rate() <= rate && rate <= r.max_sample_rate())
        .collect();
    let same_channels = ranges
        .iter()
        .find(|r| r.channels() == default.channels())
        .or(ranges.first());
    same_channels
        .and_then(|r| r.try_with_sample_rate(rate))
        .unwrap_or(default)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    #[test]
    fn test_pattern_source_publishes_numbered_frames() {
        let bus = FrameBus::new();
        let cap = VideoCapture::start(
            &VideoSourceSpec::TestPattern,
            VideoFormat {
                width: 320,
                height: 240,
                fps: 50.0,
            },
            bus.clone(),
        )
        .unwrap()
        .unwrap();
        assert_eq!(cap.description, "Test pattern 320x240 @ 50 fps");
        let mut seen = 0;
        let mut numbers = Vec::new();
        for _ in 0..5 {
            let f = bus
                .next(&mut seen, Duration::from_secs(2))
                .expect("a frame");
            assert_eq!((f.width, f.height), (320, 240));
            numbers.push(pattern::read(&f).unwrap().frame);
        }
        assert!(numbers.windows(2).all(|w| w[1] > w[0]), "{numbers:?}");
        drop(cap);
        // Stopped and joined: once what was published before the drop is taken, nothing new
        // comes.
        let _ = bus.next(&mut seen, Duration::ZERO);
        assert!(bus.next(&mut seen, Duration::from_millis(100)).is_none());
    }

    #[test]
    fn test_pattern_rejects_silly_sizes() {
        let bus = FrameBus::new();
        let e = VideoCapture::start(
            &VideoSourceSpec::TestPattern,
            VideoFormat {
                width: 10,
                height: 10,
                fps: 30.0,
            },
            bus,
        )
        .err()
        .unwrap();
        assert!(e.to_string().contains("size"), "{e}");
    }

    #[test]
    fn no_source_is_no_capture() {
        let bus = FrameBus::new();
        let want = VideoFormat {
            width: 640,
            height: 480,
            fps: 30.0,
        };
        assert!(VideoCapture::start(&VideoSourceSpec::None, want, bus)
            .unwrap()
            .is_none());
        let (cap, rx) = AudioCapture::start(&AudioSourceSpec::None).unwrap();
        assert!(cap.is_none());
        assert!(rx.recv_timeout(Duration::from_millis(50)).is_err());
    }

    #[test]
    fn test_tone_source_sends_the_tone_in_real_time() {
        let (cap, rx) = AudioCapture::start(&AudioSourceSpec::Tone(660.0)).unwrap();
        assert_eq!(cap.as_ref().unwrap().description, "Test tone 660 Hz");
        let started = Instant::now();
        let mut l = crate::tone::Listener::default();
        for _ in 0..25 {
            l.push(&rx.recv_timeout(Duration::from_secs(1)).unwrap());
        }
        assert!(
            started.elapsed() >= Duration::from_millis(400),
            "paced at 20 ms"
        );
        assert!((l.dominant_hz().unwrap() - 660.0).abs() < 2.0);
        drop(cap);
    }

    #[test]
    fn a_missing_camera_is_a_worded_error() {
        for which in [
            CameraRef::Name("does-not-exist".into()),
            CameraRef::Index(4_000_000),
        ] {
            let bus = FrameBus::new();
            let err = VideoCapture::start(
                &VideoSourceSpec::Camera(Some(which)),
                VideoFormat {
                    width: 640,
                    height: 480,
                    fps: 30.0,
                },
                bus,
            )
            .err()
            .expect("no such camera here");
            assert!(err.to_string().contains("camera"), "{err}");
        }
    }

    #[test]
    fn a_missing_microphone_is_a_worded_error() {
        let err = AudioCapture::start(&AudioSourceSpec::Mic(Some("no such microphone".into())))
            .err()
            .expect("no such microphone here");
        assert!(err.to_string().contains("microphone"), "{err}");
    }

    #[test]
    fn devices_open_at_48_khz_when_they_offer_it() {
        use cpal::SupportedStreamConfigRange as Range;
        use cpal::{SampleFormat, SampleRate, SupportedBufferSize, SupportedStreamConfig};
        let any = SupportedBufferSize::Unknown;
        let default = SupportedStreamConfig::new(2, SampleRate(44_100), any, SampleFormat::F32);
        let range = |ch, lo, hi, f| Range::new(ch, SampleRate(lo), SampleRate(hi), any, f);
        // Offered with the same channels and format: taken.
        let c = at_48_khz(
            default.clone(),
            [
                range(1, 8_000, 96_000, SampleFormat::F32),
                range(2, 8_000, 96_000, SampleFormat::I16),
                range(2, 44_100, 48_000, SampleFormat::F32),
            ],
        );
        assert_eq!(
            (c.channels(), c.sample_rate().0, c.sample_format()),
            (2, 48_000, SampleFormat::F32)
        );
        // Only with other channels: taken (the callback downmixes).
        let c = at_48_khz(
            default.clone(),
            [range(1, 8_000, 96_000, SampleFormat::F32)],
        );
        assert_eq!((c.channels(), c.sample_rate().0), (1, 48_000));
        // Not offered (or only in another format): the default, resampled.
        let c = at_48_khz(
            default.clone(),
            [
                range(2, 44_100, 44_100, SampleFormat::F32),
                range(2, 48_000, 48_000, SampleFormat::I16),
            ],
        );
        assert_eq!(c, default);
        // Already 48 kHz: the default as it is.
        let d48 = SupportedStreamConfig::new(1, SampleRate(48_000), any, SampleFormat::I16);
        assert_eq!(at_48_khz(d48.clone(), []), d48);
    }
}
