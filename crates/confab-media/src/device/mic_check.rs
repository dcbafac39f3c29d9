//! The microphone test of the join screen: record [`RECORD`] of what the microphone hears,
//! cleaned as in a call (what the others would hear), with its level reported as it comes;
//! then play the recording back. Blocking, for a device thread; stops early when told to.

use super::{AudioCapture, AudioSourceSpec};
use crate::frame::{AudioFrame, FRAME_SAMPLES, SAMPLE_RATE};
use crate::processing::{ProcessingSettings, Processor};
use crate::{tone, MediaError};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// How long the test records (and then plays back).
pub const RECORD: Duration = Duration::from_secs(3);
const FRAME: Duration = Duration::from_millis(20);
/// Below this level (RMS, of full scale) nothing was heard: about -50 dBFS.
pub const SILENT: f64 = 0.003;

/// Where a test is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MicCheckPhase {
    Recording,
    Playing,
}

/// News of a running test, about ten times a second.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct MicCheckProgress {
    pub phase: MicCheckPhase,
    /// The level of the last 100 ms (RMS, 0..1 of full scale).
    pub level: f64,
    /// Milliseconds left in this phase.
    pub left_ms: u32,
}

/// What a test found.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct MicCheckResult {
    /// The loudest 100 ms of the recording (RMS, 0..1 of full scale).
    pub peak_level: f64,
    /// Whether anything was heard at all (the peak above [`SILENT`]).
    pub heard: bool,
    /// The recording's dominant frequency, when it has one (a whistle; the test tone).
    pub dominant_hz: Option<f64>,
    /// 20 ms frames recorded and played back.
    pub frames: usize,
    /// The test was stopped before it finished (a call began).
    pub stopped: bool,
}

/// Runs a test: opens `mic`, records, cleans each frame with `processing`, reports progress,
/// then hands the recording to `play` one 20 ms frame at a time, in real time. Stops early
/// (with what it has) when `stop` is set.
pub fn run(
    mic: &AudioSourceSpec,
    processing: ProcessingSettings,
    stop: &AtomicBool,
    mut progress: impl FnMut(MicCheckProgress),
    mut play: impl FnMut(&AudioFrame),
) -> Result<MicCheckResult, MediaError> {
    if *mic == AudioSourceSpec::None {
        return Err(MediaError::Device(
            "no microphone is selected: choose one to test".into(),
        ));
    }
    let (capture, rx) = AudioCapture::start(mic)?;
    let mut processor = Processor::new(processing);
    let want = (RECORD.as_millis() / FRAME.as_millis()) as usize;
    let mut recorded: Vec<AudioFrame> = Vec::with_capacity(want);
    let mut window: Vec<i16> = Vec::with_capacity(FRAME_SAMPLES * 5);
    let mut peak = 0.0f64;
    let started = Instant::now();
    let mut stopped = false;
    while recorded.len() < want {
        if stop.load(Ordering::Relaxed) {
            stopped = true;
            break;
        }
        let mut frame = match rx.recv_timeout(Duration::from_secs(2)) {
            Ok(f) => f,
            Err(_) => {
                return Err(MediaError::Device(
                    "the microphone sent nothing for 2 s".into(),
                ))
            }
        };
        processor.capture(&mut frame);
        window.extend_from_slice(&frame);
        recorded.push(frame);
        if window.len() >= FRAME_SAMPLES * 5 {
            let level = tone::level(&window);
            peak = peak.max(level);
            window.clear();
            progress(MicCheckProgress {
                phase: MicCheckPhase::Recording,
                level,
                left_ms: RECORD.saturating_sub(started.elapsed()).as_millis() as u32,
            });
        }
    }
    drop(capture);
    let all: Vec<i16> = recorded.iter().flatten().copied().collect();
    let dominant_hz = (all.len() >= SAMPLE_RATE as usize / 10)
        .then(|| tone::dominant_hz(&all))
        .flatten();
    // Played at the pace a speaker takes it.
    let start = Instant::now();
    for (n, frame) in recorded.iter().enumerate() {
        if stop.load(Ordering::Relaxed) {
            stopped = true;
            break;
        }
        let due = start + FRAME * n as u32;
        let now = Instant::now();
        if due > now {
            std::thread::sleep(due - now);
        }
        play(frame);
        if n % 5 == 4 {
            let from = (n - 4) * FRAME_SAMPLES;
            progress(MicCheckProgress {
                phase: MicCheckPhase::Playing,
                level: tone::level(&all[from..from + FRAME_SAMPLES * 5]),
                left_ms: (FRAME * (recorded.len() - n - 1) as u32).as_millis() as u32,
            });
        }
    }
    Ok(MicCheckResult {
        peak_level: peak,
        heard: peak > SILENT,
        dominant_hz,
        frames: recorded.len(),
        stopped,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tone_is_recorded_reported_and_played_back() {
        let mut news = Vec::new();
        let mut played: Vec<i16> = Vec::new();
        let stop = AtomicBool::new(false);
        let started = Instant::now();
        let result = run(
            &AudioSourceSpec::Tone(660.0),
            ProcessingSettings::OFF,
            &stop,
            |p| news.push(p),
            |f| played.extend_from_slice(f),
        )
        .unwrap();
        // Three seconds each way, in real time.
        assert!(
            started.elapsed() >= Duration::from_millis(5800),
            "{:?}",
            started.elapsed()
        );
        assert_eq!(result.frames, 150);
        assert!(result.heard && !result.stopped);
        // The test tone is a sine at 0.3 of full scale: RMS 0.21.
        assert!((result.peak_level - 0.212).abs() < 0.01, "{result:?}");
        assert!(
            (result.dominant_hz.unwrap() - 660.0).abs() < 3.0,
            "{result:?}"
        );
        // What was played back is what was recorded: the tone, all of it.
        assert_eq!(played.len(), 150 * FRAME_SAMPLES);
        assert!((tone::dominant_hz(&played).unwrap() - 660.0).abs() < 3.0);
        assert!((tone::level(&played) - 0.212).abs() < 0.01);
        // News: recording first, then playing, each about ten times a second, counting down.
        let recording: Vec<_> = news
            .iter()
            .filter(|p| p.phase == MicCheckPhase::Recording)
            .collect();
        let playing: Vec<_> = news
            .iter()
            .filter(|p| p.phase == MicCheckPhase::Playing)
            .collect();
        assert_eq!((recording.len(), playing.len()), (30, 30));
        assert!(news[..30]
            .iter()
            .all(|p| p.phase == MicCheckPhase::Recording));
        assert!(
            news.iter().all(|p| (p.level - 0.212).abs() < 0.02),
            "{news:?}"
        );
        assert!(playing.windows(2).all(|w| w[0].left_ms > w[1].left_ms));
        assert_eq!(playing.last().unwrap().left_ms, 0);
    }

    #[test]
    fn a_stopped_test_ends_early_and_says_so() {
        let stop = AtomicBool::new(true);
        let result = run(
            &AudioSourceSpec::Tone(440.0),
            ProcessingSettings::OFF,
            &stop,
            |_| {},
            |_| {},
        )
        .unwrap();
        assert!(result.stopped);
        assert_eq!(result.frames, 0);
        assert!(!result.heard);
    }

    #[test]
    fn no_microphone_is_an_error_in_words() {
        let err = run(
            &AudioSourceSpec::None,
            ProcessingSettings::OFF,
            &AtomicBool::new(false),
            |_| {},
            |_| {},
        )
        .unwrap_err();
        assert!(err.to_string().contains("no microphone"), "{err}");
    }
}
