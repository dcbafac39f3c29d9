//! The "Test tone" microphone's sine, and what a receiver uses to tell what it hears:
//! level and dominant frequency.

use crate::frame::{AudioFrame, FRAME_SAMPLES, SAMPLE_RATE};

/// A sine generator producing 20 ms frames, phase-continuous.
#[derive(Debug, Clone)]
pub struct Tone {
    hz: f64,
    amplitude: f64,
    phase: f64,
}

impl Tone {
    /// `amplitude` in 0..=1 of full scale.
    pub fn new(hz: f64, amplitude: f64) -> Self {
        Tone {
            hz,
            amplitude: amplitude.clamp(0.0, 1.0),
            phase: 0.0,
        }
    }

    pub fn hz(&self) -> f64 {
        self.hz
    }

    pub fn next_frame(&mut self) -> AudioFrame {
        let mut f = [0i16; FRAME_SAMPLES];
        let step = std::f64::consts::TAU * self.hz / SAMPLE_RATE as f64;
        for s in f.iter_mut() {
            *s = (self.phase.sin() * self.amplitude * i16::MAX as f64) as i16;
            self.phase = (self.phase + step) % std::f64::consts::TAU;
        }
        f
    }
}

/// RMS level of samples, 0..=1 of full scale.
pub fn level(samples: &[i16]) -> f64 {
    if samples.is_empty() {
        return 0.0;
    }
    let sum: f64 = samples.iter().map(|&s| (s as f64).powi(2)).sum();
    (sum / samples.len() as f64).sqrt() / i16::MAX as f64
}

/// Goertzel's power of `samples` at each of `hz`, several frequencies a pass: each one's
/// recurrence is a chain of dependent multiply-adds, so interleaving eight of them keeps the
/// CPU busy where one at a time would wait on each step.
fn goertzel_powers(samples: &[i16], hz: &[f64]) -> Vec<f64> {
    const LANES: usize = 8;
    let mut out = Vec::with_capacity(hz.len());
    for group in hz.chunks(LANES) {
        let mut coeff = [0.0f64; LANES];
        for (c, &f) in coeff.iter_mut().zip(group) {
            *c = 2.0 * (std::f64::consts::TAU * f / SAMPLE_RATE as f64).cos();
        }
        let (mut s1, mut s2) = ([0.0f64; LANES], [0.0f64; LANES]);
        for &x in samples {
            let x = f64::from(x);
            for k in 0..LANES {
                let s0 = x + coeff[k] * s1[k] - s2[k];
                s2[k] = s1[k];
                s1[k] = s0;
            }
        }
        for k in 0..group.len() {
            out.push(s1[k] * s1[k] + s2[k] * s2[k] - coeff[k] * s1[k] * s2[k]);
        }
    }
    out
}

/// `lo`, `lo + step`, ... up to `hi` (counted, not summed, so no step is lost to rounding).
fn steps(lo: f64, hi: f64, step: f64) -> Vec<f64> {
    let n = ((hi - lo) / step).round() as usize;
    (0..=n).map(|i| lo + i as f64 * step).collect()
}

/// The frequency of `hz` with the most power in `samples` (the first of equals).
fn loudest_of(samples: &[i16], hz: &[f64]) -> f64 {
    let powers = goertzel_powers(samples, hz);
    let mut top = (hz[0], f64::MIN);
    for (&f, &p) in hz.iter().zip(&powers) {
        if p > top.1 {
            top = (f, p);
        }
    }
    top.0
}

/// The multiple of `step` Hz in `lo..=hi` where a block of exactly `SAMPLE_RATE / step`
/// samples is loudest: these frequencies are the block's DFT bins, so one FFT answers for
/// all of them what one Goertzel filter each would (a hundred times the work).
fn loudest_bin(block: &[i16], lo: f64, hi: f64, step: f64) -> f64 {
    use rustfft::num_complex::Complex;
    debug_assert_eq!(block.len() as f64 * step, f64::from(SAMPLE_RATE));
    let mut buf: Vec<Complex<f64>> = block
        .iter()
        .map(|&x| Complex::new(f64::from(x), 0.0))
        .collect();
    rustfft::FftPlanner::new()
        .plan_fft_forward(buf.len())
        .process(&mut buf);
    let (first, last) = ((lo / step).round() as usize, (hi / step).round() as usize);
    let mut top = (first, f64::MIN);
    for (k, c) in buf.iter().enumerate().take(last + 1).skip(first) {
        if c.norm_sqr() > top.1 {
            top = (k, c.norm_sqr());
        }
    }
    top.0 as f64 * step
}

/// The dominant frequency in 50..4000 Hz, to about 1 Hz, or None for silence.
pub fn dominant_hz(samples: &[i16]) -> Option<f64> {
    if samples.len() < 960 || level(samples) < 0.001 {
        return None;
    }
    // Coarse scan every 10 Hz over the loudest 0.1 s (its resolution is 10 Hz: more samples
    // only cost time, five times over for the half second a listener keeps; the loudest, as
    // the tone may have stopped), then refine around the peak to 1 Hz over all of them.
    let block = SAMPLE_RATE as usize / 10;
    let energy = |b: &[i16]| b.iter().map(|&s| i64::from(s).pow(2)).sum::<i64>();
    let recent = samples
        .rchunks(block)
        .filter(|b| b.len() == block || samples.len() < block)
        .max_by_key(|b| energy(b))
        .unwrap_or(samples);
    let coarse = if recent.len() == block {
        loudest_bin(recent, 50.0, 4000.0, 10.0)
    } else {
        loudest_of(recent, &steps(50.0, 4000.0, 10.0))
    };
    let lo = (coarse - 10.0).max(50.0);
    let fine = loudest_of(samples, &steps(lo, coarse + 10.0, 1.0));
    Some(fine)
}

/// Keeps the last second of what one peer sent, for level and pitch.
#[derive(Debug, Clone, Default)]
pub struct Listener {
    window: std::collections::VecDeque<i16>,
}

impl Listener {
    const WINDOW: usize = SAMPLE_RATE as usize / 2;

    pub fn push(&mut self, frame: &[i16]) {
        self.window.extend(frame.iter().copied());
        while self.window.len() > Self::WINDOW {
            self.window.pop_front();
        }
    }

    pub fn level(&self) -> f64 {
        let v: Vec<i16> = self.window.iter().copied().collect();
        level(&v)
    }

    pub fn dominant_hz(&self) -> Option<f64> {
        let v: Vec<i16> = self.window.iter().copied().collect();
        dominant_hz(&v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tone_is_heard_at_its_frequency() {
        for hz in [220.0, 440.0, 1000.0, 2500.0] {
            let mut t = Tone::new(hz, 0.3);
            let mut l = Listener::default();
            for _ in 0..25 {
                l.push(&t.next_frame());
            }
            let heard = l.dominant_hz().unwrap();
            assert!((heard - hz).abs() <= 2.0, "{hz} heard as {heard}");
            assert!((l.level() - 0.3 / 2f64.sqrt()).abs() < 0.01);
        }
    }

    #[test]
    fn a_tone_between_the_coarse_steps_is_heard_through_noise() {
        let mut x = 0x9e37_79b9_u32;
        for hz in [443.0, 1237.0, 3333.0] {
            let mut t = Tone::new(hz, 0.2);
            let mut l = Listener::default();
            for _ in 0..25 {
                let mut f = t.next_frame();
                for s in f.iter_mut() {
                    // White noise, uniform in ±0.2 of full scale (rms 0.115): SNR ~1 dB.
                    x ^= x << 13;
                    x ^= x >> 17;
                    x ^= x << 5;
                    let n = (x as f64 / u32::MAX as f64 - 0.5) * 0.4 * i16::MAX as f64;
                    *s = (f64::from(*s) + n) as i16;
                }
                l.push(&f);
            }
            let heard = l.dominant_hz().unwrap();
            assert!((heard - hz).abs() <= 2.0, "{hz} heard as {heard}");
        }
    }

    #[test]
    fn a_tone_that_stopped_is_still_heard() {
        // 0.2 s of tone, then 0.3 s of silence (a mute, a short whistle in a mic check).
        let mut t = Tone::new(700.0, 0.3);
        let mut l = Listener::default();
        for i in 0..25 {
            let f = if i < 10 { t.next_frame() } else { [0; 960] };
            l.push(&f);
        }
        let heard = l.dominant_hz().unwrap();
        assert!((heard - 700.0).abs() <= 2.0, "heard as {heard}");
    }

    #[test]
    fn the_fft_finds_the_bin_the_goertzel_scan_finds() {
        // Two tones and noise in one 0.1 s block: the FFT's bins are the scan's frequencies.
        let mut x = 0x2545_f491_u32;
        let (mut a, mut b) = (Tone::new(612.0, 0.2), Tone::new(2005.0, 0.15));
        let mut block = Vec::new();
        for _ in 0..5 {
            for (s, t) in a.next_frame().iter().zip(b.next_frame()) {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                let n = (x as f64 / u32::MAX as f64 - 0.5) * 0.3 * i16::MAX as f64;
                block.push((f64::from(*s) + f64::from(t) + n).clamp(-32768.0, 32767.0) as i16);
            }
        }
        let hz = steps(50.0, 4000.0, 10.0);
        assert_eq!((hz.len(), hz[395]), (396, 4000.0));
        let powers = goertzel_powers(&block, &hz);
        let fft = loudest_bin(&block, 50.0, 4000.0, 10.0);
        assert_eq!(fft, loudest_of(&block, &hz));
        // and each lane of the interleaved filter is the plain recurrence
        for (i, &f) in hz.iter().enumerate().step_by(37) {
            let w = std::f64::consts::TAU * f / SAMPLE_RATE as f64;
            let c = 2.0 * w.cos();
            let (mut s1, mut s2) = (0.0f64, 0.0f64);
            for &v in &block {
                let s0 = f64::from(v) + c * s1 - s2;
                s2 = s1;
                s1 = s0;
            }
            let plain = s1 * s1 + s2 * s2 - c * s1 * s2;
            assert!(
                (powers[i] - plain).abs() <= 1e-9 * plain.abs().max(1.0),
                "{f} Hz"
            );
        }
        assert_eq!(fft, 610.0);
    }

    #[test]
    fn a_short_tone_is_heard_through_the_filters() {
        // Under 0.1 s there is no whole FFT block: the coarse scan runs filters instead.
        for (frames, hz) in [(1, 1237.0), (2, 443.0), (4, 3333.0)] {
            let mut t = Tone::new(hz, 0.3);
            let samples: Vec<i16> = (0..frames).flat_map(|_| t.next_frame()).collect();
            let heard = dominant_hz(&samples).unwrap();
            assert!(
                (heard - hz).abs() <= 2.0,
                "{hz} in {frames} frames heard as {heard}"
            );
        }
    }

    #[test]
    fn silence_has_no_pitch() {
        let mut l = Listener::default();
        l.push(&[0i16; 960 * 10]);
        assert_eq!(l.dominant_hz(), None);
        assert_eq!(l.level(), 0.0);
    }
}
