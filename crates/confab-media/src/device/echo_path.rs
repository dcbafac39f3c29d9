//! The echo-path test microphone (`echo`, `echo:MS`): a laptop without headphones, simulated.
//! It hears nothing but what this computer's speaker plays, some milliseconds later (0-500,
//! [`super::id::ECHO_MS`]), through a room (RT60 250 ms, the fixtures' [`EchoPath`] room) at -10 dB — so a call
//! test can measure how much of the far end's voice comes back to it.
//!
//! The playout clock hands what it sends to the speaker to an [`EchoFeed`] (lock-free, never
//! blocking); the microphone's thread takes one frame of it every 20 ms and convolves it with
//! the room (FFT overlap-add).

use super::worker::{paced, Worker};
use crate::audio_fixtures::{db_to_gain, room_response, EchoPath};
use crate::frame::{AudioFrame, FRAME_SAMPLES, SAMPLE_RATE};
use crate::MediaError;
use rustfft::num_complex::Complex;
use rustfft::{Fft, FftPlanner};
use std::collections::VecDeque;
use std::sync::atomic::AtomicBool;
use std::sync::mpsc::{SyncSender, TrySendError};
use std::sync::Arc;

/// Frames the feed holds (200 ms).
const FEED_FRAMES: usize = 10;
/// Frames the microphone lets wait (60 ms of scheduling jitter) before it lets the oldest go.
const BACKLOG: usize = 3;

/// The speaker's side: what is played goes in here.
pub struct EchoFeed(rtrb::Producer<AudioFrame>);

impl EchoFeed {
    /// Hands a played frame to the room. Never blocks; a full room drops it. `false` once the
    /// microphone is gone (the feed can be dropped).
    pub fn push(&mut self, played: &AudioFrame) -> bool {
        let _ = self.0.push(*played);
        !self.0.is_abandoned()
    }
}

/// The microphone's side.
pub struct EchoTap(rtrb::Consumer<AudioFrame>);

/// A new room: the feed for the speaker, the tap for the microphone.
pub fn echo_room() -> (EchoFeed, EchoTap) {
    let (tx, rx) = rtrb::RingBuffer::new(FEED_FRAMES);
    (EchoFeed(tx), EchoTap(rx))
}

/// The room between the speaker and the microphone: a delay, the room's response, a gain.
pub struct Room {
    delay: VecDeque<f32>,
    h: Vec<Complex<f32>>,
    fwd: Arc<dyn Fft<f32>>,
    inv: Arc<dyn Fft<f32>>,
    buf: Vec<Complex<f32>>,
    /// What the blocks so far still add to the coming output (overlap-add).
    tail: Vec<f32>,
    gain: f32,
}

impl Room {
    pub fn new(delay_ms: u32) -> Self {
        let path = EchoPath::new(delay_ms as f32);
        let response = room_response(path.rt60, path.drr_db, path.room_seed);
        let n = (FRAME_SAMPLES + response.len()).next_power_of_two();
        let mut planner = FftPlanner::<f32>::new();
        let (fwd, inv) = (planner.plan_fft_forward(n), planner.plan_fft_inverse(n));
        let mut h: Vec<Complex<f32>> = response.iter().map(|&v| Complex::new(v, 0.0)).collect();
        h.resize(n, Complex::default());
        fwd.process(&mut h);
        let samples = (delay_ms as usize * SAMPLE_RATE as usize) / 1000;
        Room {
            delay: std::iter::repeat_n(0.0, samples).collect(),
            h,
            fwd,
            inv,
            buf: vec![Complex::default(); n],
            tail: vec![0.0; n],
            gain: db_to_gain(path.gain_db),
        }
    }

    /// What the microphone hears while the speaker plays `played`.
    pub fn next(&mut self, played: &AudioFrame) -> AudioFrame {
        self.delay
            .extend(played.iter().map(|&s| f32::from(s) / 32768.0));
        let n = self.buf.len();
        for (i, c) in self.buf.iter_mut().enumerate() {
            let x = if i < FRAME_SAMPLES {
                self.delay.pop_front().unwrap_or(0.0)
            } else {
                0.0
            };
            *c = Complex::new(x, 0.0);
        }
        self.fwd.process(&mut self.buf);
        for (b, h) in self.buf.iter_mut().zip(&self.h) {
            *b *= h;
        }
        self.inv.process(&mut self.buf);
        for (t, b) in self.tail.iter_mut().zip(&self.buf) {
            *t += b.re / n as f32;
        }
        let mut out = [0i16; FRAME_SAMPLES];
        for (o, t) in out.iter_mut().zip(&self.tail) {
            *o = (t * self.gain * 32768.0).round().clamp(-32768.0, 32767.0) as i16;
        }
        self.tail.drain(..FRAME_SAMPLES);
        self.tail.resize(n, 0.0);
        out
    }
}

/// Starts the echo-path microphone: every 20 ms one frame of what the speaker played (silence
/// when it played nothing) through the room, into `tx` (full = dropped).
pub(super) fn start(
    delay_ms: u32,
    tap: EchoTap,
    tx: SyncSender<AudioFrame>,
) -> Result<Worker, MediaError> {
    let mut room = Room::new(delay_ms);
    let mut tap = tap.0;
    Worker::spawn("echo microphone", move |stop: &AtomicBool| {
        paced(stop, || {
            // One frame a tick; a backlog beyond scheduling jitter is let go.
            while tap.slots() > BACKLOG && tap.pop().is_ok() {}
            let played = tap.pop().unwrap_or([0; FRAME_SAMPLES]);
            !matches!(
                tx.try_send(room.next(&played)),
                Err(TrySendError::Disconnected(_))
            )
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audio_fixtures::{rms_of, speech, VOICE_A};
    use crate::tone::{dominant_hz, level, Tone};
    use std::time::Duration;

    #[test]
    fn the_room_delays_and_turns_down_what_the_speaker_plays() {
        let mut room = Room::new(100);
        let mut tone = Tone::new(1000.0, 0.5);
        let heard: Vec<i16> = (0..100)
            .flat_map(|_| room.next(&tone.next_frame()))
            .collect();
        // Nothing for the first 100 ms (5 frames), then the tone.
        assert!(
            level(&heard[..4 * FRAME_SAMPLES]) < 1e-4,
            "{}",
            level(&heard[..4 * FRAME_SAMPLES])
        );
        let steady = &heard[50 * FRAME_SAMPLES..];
        assert!((dominant_hz(steady).unwrap() - 1000.0).abs() < 3.0);
        // -10 dB through a unit-energy room: about 0.35 × 0.316 of full scale (RMS), give or
        // take the room's colouring at 1 kHz.
        let db = 20.0 * (level(steady) / 0.3536).log10();
        assert!((-16.0..-5.0).contains(&db), "{db} dB");
    }

    #[test]
    fn speech_through_the_room_matches_the_fixtures_echo_path() {
        let voice = speech(VOICE_A, 3.0);
        let offline = EchoPath::new(60.0).apply(&voice);
        let mut room = Room::new(60);
        let mut streamed = Vec::new();
        for chunk in voice.chunks_exact(FRAME_SAMPLES) {
            let frame: AudioFrame = std::array::from_fn(|i| (chunk[i] * 32767.0) as i16);
            streamed.extend(room.next(&frame).iter().map(|&s| f32::from(s) / 32768.0));
        }
        let diff: Vec<f32> = streamed.iter().zip(&offline).map(|(a, b)| a - b).collect();
        let snr = 20.0 * (rms_of(&offline[..streamed.len()]) / rms_of(&diff)).log10();
        assert!(
            snr > 40.0,
            "the streamed room is the offline one: {snr} dB apart"
        );
    }

    #[test]
    fn the_microphone_takes_what_the_feed_gives_and_lets_a_backlog_go() {
        let (mut feed, tap) = echo_room();
        let (tx, rx) = std::sync::mpsc::sync_channel(64);
        // Ten frames at once: more than the microphone lets wait. All in before it starts
        // (pushed while it runs, its first tick could take one of the first before the rest
        // are there: a loaded machine heard four frames, not three).
        let mut tone = Tone::new(500.0, 0.5);
        for _ in 0..10 {
            assert!(feed.push(&tone.next_frame()));
        }
        let worker = start(0, tap, tx).unwrap();
        std::thread::sleep(Duration::from_millis(700));
        let heard: Vec<i16> = rx.try_iter().flatten().collect();
        assert!((dominant_hz(&heard).unwrap() - 500.0).abs() < 5.0);
        // As much as the newest three frames through the room make, not ten.
        let energy = |x: &[i16]| x.iter().map(|&s| f64::from(s).powi(2)).sum::<f64>();
        let offline = |frames: usize| {
            let mut room = Room::new(0);
            let mut tone = Tone::new(500.0, 0.5);
            let out: Vec<i16> = (0..40)
                .flat_map(|i| {
                    let f = if i < frames {
                        tone.next_frame()
                    } else {
                        [0; FRAME_SAMPLES]
                    };
                    room.next(&f)
                })
                .collect();
            energy(&out)
        };
        let (got, three, ten) = (energy(&heard), offline(BACKLOG), offline(10));
        assert!(
            (got - three).abs() < 0.2 * three && got < 0.5 * ten,
            "heard {got:.3e}, three frames make {three:.3e}, ten {ten:.3e}"
        );
        drop(worker);
        drop(rx);
        // The microphone is gone: the feed says so.
        assert!(!feed.push(&[0; FRAME_SAMPLES]));
    }
}
