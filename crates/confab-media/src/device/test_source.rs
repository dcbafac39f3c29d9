//! The built-in test devices: the "Test pattern" camera (numbered, timestamped frames that
//! `pattern::read` reads back) and the "Test tone" microphone, paced in real time like the
//! real devices and fed through the very same pipeline.

use super::worker::{paced, Worker};
use super::FrameBus;
use crate::frame::{now_us, AudioFrame};
use crate::{pattern, tone::Tone, MediaError};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{SyncSender, TrySendError};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Starts the test pattern at `w`x`h` (even) and `fps` (1-120), publishing into `bus`.
pub(super) fn start_pattern(
    w: usize,
    h: usize,
    fps: f32,
    bus: Arc<FrameBus>,
) -> Result<Worker, MediaError> {
    Worker::spawn("test pattern", move |stop| {
        pattern_loop(w, h, fps, &bus, stop)
    })
}

/// Starts the test tone at `hz`, sending 20 ms frames into `tx` (full = dropped).
pub(super) fn start_tone(hz: f64, tx: SyncSender<AudioFrame>) -> Result<Worker, MediaError> {
    Worker::spawn("test tone", move |stop| tone_loop(hz, &tx, stop))
}

fn pattern_loop(w: usize, h: usize, fps: f32, bus: &FrameBus, stop: &AtomicBool) {
    let period = Duration::from_secs_f64(1.0 / fps as f64);
    let start = Instant::now();
    let mut n: u32 = 0;
    while !stop.load(Ordering::Relaxed) {
        let due = start + period.mul_f64(n as f64);
        let now = Instant::now();
        if due > now {
            std::thread::sleep(due - now);
        }
        let ts = now_us();
        bus.publish(pattern::frame(
            w,
            h,
            pattern::Stamp {
                frame: n,
                capture_us: ts as u32,
            },
            ts,
        ));
        n = n.wrapping_add(1);
    }
}

/// Starts the test voice: synthetic speech (the fixtures' first voice, 20 s, looped), sending
/// 20 ms frames into `tx` (full = dropped).
pub(super) fn start_voice(tx: SyncSender<AudioFrame>) -> Result<Worker, MediaError> {
    Worker::spawn("test voice", move |stop| {
        let speech = crate::audio_fixtures::speech(crate::audio_fixtures::VOICE_A, 20.0);
        let frames: Vec<AudioFrame> = speech
            .chunks_exact(crate::frame::FRAME_SAMPLES)
            .map(|c| std::array::from_fn(|i| (c[i] * 32767.0) as i16))
            .collect();
        let mut next = frames.iter().cycle();
        paced(stop, || {
            !matches!(
                tx.try_send(*next.next().expect("cycled")),
                Err(TrySendError::Disconnected(_))
            )
        });
    })
}

fn tone_loop(hz: f64, tx: &SyncSender<AudioFrame>, stop: &AtomicBool) {
    let mut tone = Tone::new(hz, 0.3);
    paced(stop, || {
        !matches!(
            tx.try_send(tone.next_frame()),
            Err(TrySendError::Disconnected(_))
        )
    });
}
