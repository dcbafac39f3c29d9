//! What the engine measured about each remote peer's media, in the shape `confab-peer` prints.

use confab_media::pattern::Stamp;
use serde::Serialize;
use std::time::Instant;

#[derive(Debug, Clone, Default, Serialize)]
pub struct VideoStats {
    pub codec: Option<String>,
    pub width: usize,
    pub height: usize,
    pub frames_decoded: u64,
    /// Frames whose test-pattern blocks read back correctly.
    pub pattern_frames: u64,
    /// Frames whose number is lower than one already seen.
    pub frames_out_of_order: u64,
    /// Frames that repeat the previous frame number (a source that sent the same picture twice).
    pub frames_repeated: u64,
    pub fps: f64,
    pub latency_ms_p50: Option<f64>,
    pub latency_ms_p95: Option<f64>,
    pub keyframe_requests: u64,
    pub decode_errors: u64,
    pub last_pattern_frame: Option<u32>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct AudioStats {
    pub packets: u64,
    /// Dominant frequency heard over the last half second (Hz).
    pub tone_hz: Option<f64>,
    /// RMS level over the last half second, 0..1 of full scale.
    pub level: f64,
    pub concealed: u64,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct PeerStats {
    pub id: String,
    pub name: String,
    /// From our join to the first picture decoded from this peer.
    pub setup_ms: Option<f64>,
    /// From the answer (sent or received) to the first picture decoded from this peer.
    pub answer_to_first_frame_ms: Option<f64>,
    /// The code both people should see (`123 456`); differs when someone is in the middle.
    pub verification_code: Option<String>,
    pub video: VideoStats,
    pub audio: AudioStats,
}

/// Per-peer accumulator, updated by the receive pipeline.
#[derive(Debug, Clone, Default)]
pub struct VideoBook {
    pub stats: VideoStats,
    pub answered: Option<Instant>,
    pub first_frame: Option<Instant>,
    pub last_frame: Option<Instant>,
    latencies_us: Vec<u32>,
}

impl VideoBook {
    pub fn decoded(&mut self, w: usize, h: usize, stamp: Option<Stamp>, latency_us: Option<u32>) {
        let now = Instant::now();
        self.first_frame.get_or_insert(now);
        self.last_frame = Some(now);
        self.stats.width = w;
        self.stats.height = h;
        self.stats.frames_decoded += 1;
        if let Some(s) = stamp {
            self.stats.pattern_frames += 1;
            match self.stats.last_pattern_frame {
                Some(last) if s.frame < last => self.stats.frames_out_of_order += 1,
                Some(last) if s.frame == last => self.stats.frames_repeated += 1,
                _ => self.stats.last_pattern_frame = Some(s.frame),
            }
        }
        if let Some(l) = latency_us {
            if self.latencies_us.len() >= 100_000 {
                self.latencies_us.drain(..50_000);
            }
            self.latencies_us.push(l);
        }
    }

    pub fn snapshot(&self) -> VideoStats {
        let mut s = self.stats.clone();
        if let (Some(a), Some(b)) = (self.first_frame, self.last_frame) {
            let secs = b.duration_since(a).as_secs_f64();
            if secs > 0.0 && s.frames_decoded > 1 {
                s.fps = (s.frames_decoded - 1) as f64 / secs;
            }
        }
        if !self.latencies_us.is_empty() {
            let mut v = self.latencies_us.clone();
            v.sort_unstable();
            let q = |p: f64| v[((v.len() - 1) as f64 * p).round() as usize] as f64 / 1000.0;
            s.latency_ms_p50 = Some(q(0.5));
            s.latency_ms_p95 = Some(q(0.95));
        }
        s
    }
}
