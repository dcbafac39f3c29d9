//! Deterministic audio fixtures and measurements for the processing tests and the audio bench:
//! speech-like signals in two voices, pink noise, a room impulse response, an echo path, and
//! the measures (ERLE in 100 ms windows, convergence time, segmental SNR, SNR from speech and
//! pause windows, spectra). Everything is built in code from fixed seeds at 48 kHz, `f32` in
//! [-1, 1]; nothing needs files. The issue's own talkers, espeak-ng's speech in two voices
//! ([`Talkers::espeak`]), need the `espeak-ng` program; the built-in voices
//! ([`Talkers::synthetic`]) need nothing.

use crate::frame::{AudioFrame, FRAME_SAMPLES, SAMPLE_RATE};
use crate::processing::{ProcessingSettings, Processor};
use rustfft::num_complex::Complex;
use rustfft::FftPlanner;
use std::f32::consts::{PI, TAU};

/// Samples per second.
pub const FS: usize = SAMPLE_RATE as usize;
/// Samples in one 100 ms measurement window.
pub const WINDOW: usize = FS / 10;

/// A small fixed-seed PRNG (SplitMix64): the same fixtures on every machine.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32
    }

    /// Uniform in [lo, hi).
    pub fn range(&mut self, lo: f32, hi: f32) -> f32 {
        lo + (hi - lo) * self.unit()
    }

    /// Uniform in [-1, 1).
    pub fn white(&mut self) -> f32 {
        self.unit() * 2.0 - 1.0
    }
}

/// A talker: the pitch range and timbre of the synthetic speech.
#[derive(Debug, Clone, Copy)]
pub struct Voice {
    /// Lowest and highest fundamental (Hz).
    pub f0: (f32, f32),
    /// Formant frequencies scale (1.0 = adult male, ~1.15 = adult female).
    pub formant_scale: f32,
    pub seed: u64,
}

/// A low voice (pitch 100-150 Hz).
pub const VOICE_A: Voice = Voice {
    f0: (100.0, 150.0),
    formant_scale: 1.0,
    seed: 0xA11CE,
};
/// A higher voice (pitch 170-250 Hz).
pub const VOICE_B: Voice = Voice {
    f0: (170.0, 250.0),
    formant_scale: 1.15,
    seed: 0xB0B,
};

/// Vowel formants (F1, F2, F3 in Hz) of an adult male voice.
const VOWELS: [[f32; 3]; 6] = [
    [730.0, 1090.0, 2440.0], // a
    [270.0, 2290.0, 3010.0], // i
    [300.0, 870.0, 2240.0],  // u
    [530.0, 1840.0, 2480.0], // e
    [570.0, 840.0, 2410.0],  // o
    [660.0, 1720.0, 2410.0], // ae
];

/// A two-pole resonator (one formant).
#[derive(Debug, Clone, Copy, Default)]
struct Resonator {
    a1: f32,
    a2: f32,
    g: f32,
    y1: f32,
    y2: f32,
}

impl Resonator {
    fn tune(&mut self, f: f32, bw: f32) {
        let r = (-PI * bw / FS as f32).exp();
        self.a1 = 2.0 * r * (TAU * f / FS as f32).cos();
        self.a2 = -r * r;
        self.g = 1.0 - r;
    }

    fn run(&mut self, x: f32) -> f32 {
        let y = self.g * x + self.a1 * self.y1 + self.a2 * self.y2;
        self.y2 = self.y1;
        self.y1 = y;
        y
    }
}

/// `seconds` of speech-like sound: phrases of syllables (about 4 a second) with pauses between
/// phrases; each syllable a vowel (a band-limited glottal pulse train with a gliding pitch,
/// shaped by three formants), some starting with a fricative burst. Peaks near -6 dBFS.
pub fn speech(voice: Voice, seconds: f32) -> Vec<f32> {
    let n = (seconds * FS as f32) as usize;
    let mut out = vec![0f32; n];
    let mut rng = Rng::new(voice.seed);
    let mut t = (rng.range(0.05, 0.3) * FS as f32) as usize;
    let mut phase = 0f32;
    let mut formants = [Resonator::default(); 3];
    while t < n {
        // A phrase of 4-10 syllables, then a pause of 0.3-0.8 s.
        let syllables = 4 + (rng.next_u64() % 7) as usize;
        let phrase_f0 = rng.range(voice.f0.0, voice.f0.1);
        for k in 0..syllables {
            let len = (rng.range(0.16, 0.30) * FS as f32) as usize;
            let v = VOWELS[(rng.next_u64() % VOWELS.len() as u64) as usize];
            for (r, &f) in formants.iter_mut().zip(&v) {
                r.tune(f * voice.formant_scale, 60.0 + f * 0.06);
            }
            let fricative = rng.unit() < 0.35;
            let fric_len = if fricative { len / 4 } else { 0 };
            // Declining pitch across the phrase, with a rise or fall per syllable.
            let decl = 1.0 - 0.15 * k as f32 / syllables as f32;
            let (f_start, f_end) = (
                phrase_f0 * decl * rng.range(0.92, 1.08),
                phrase_f0 * decl * rng.range(0.92, 1.08),
            );
            let loud = rng.range(0.5, 1.0);
            let mut prev_noise = 0f32;
            for i in 0..len {
                let idx = t + i;
                if idx >= n {
                    break;
                }
                if i < fric_len {
                    // High-passed noise: an "s" or "f".
                    let w = rng.white();
                    let hp = w - prev_noise;
                    prev_noise = w;
                    let env = (PI * i as f32 / fric_len as f32).sin();
                    out[idx] += 0.08 * loud * env * hp;
                    continue;
                }
                let xv = (i - fric_len) as f32 / (len - fric_len) as f32;
                let f0 =
                    (f_start + (f_end - f_start) * xv).clamp(voice.f0.0 * 0.85, voice.f0.1 * 1.05);
                phase = (phase + f0 / FS as f32).fract();
                // Band-limited sawtooth-like source: harmonics below 4 kHz, 1/k roll-off.
                let harmonics = (4000.0 / f0) as usize;
                let mut src = 0f32;
                for h in 1..=harmonics {
                    src += (TAU * phase * h as f32).sin() / h as f32;
                }
                let mut y = 0f32;
                for (j, r) in formants.iter_mut().enumerate() {
                    y += r.run(src) * [1.0, 0.6, 0.3][j];
                }
                // Syllable envelope: raised sine attack and decay.
                let env = (PI * xv).sin().powf(0.6);
                out[idx] += loud * env * y;
            }
            t += len + (rng.range(0.0, 0.06) * FS as f32) as usize;
        }
        t += (rng.range(0.3, 0.8) * FS as f32) as usize;
    }
    normalize_peak(&mut out, 0.5);
    out
}

/// Pink noise (1/f power), Paul Kellet's filter on fixed-seed white noise, RMS `rms`.
pub fn pink_noise(seconds: f32, rms: f32, seed: u64) -> Vec<f32> {
    let n = (seconds * FS as f32) as usize;
    let mut rng = Rng::new(seed);
    let mut b = [0f32; 7];
    let mut out: Vec<f32> = (0..n)
        .map(|_| {
            let w = rng.white();
            b[0] = 0.99886 * b[0] + w * 0.0555179;
            b[1] = 0.99332 * b[1] + w * 0.0750759;
            b[2] = 0.96900 * b[2] + w * 0.153852;
            b[3] = 0.86650 * b[3] + w * 0.3104856;
            b[4] = 0.55000 * b[4] + w * 0.5329522;
            b[5] = -0.7616 * b[5] - w * 0.0168980;
            let y = b[0] + b[1] + b[2] + b[3] + b[4] + b[5] + b[6] + w * 0.5362;
            b[6] = w * 0.115926;
            y
        })
        .collect();
    let r = rms_of(&out);
    if r > 0.0 {
        scale(&mut out, rms / r);
    }
    out
}

/// A room impulse response: the direct sound, then exponentially decaying noise (reflections,
/// from 3 ms on) reaching -60 dB after `rt60` seconds, scaled so the direct sound's energy is
/// `drr_db` above the reverberation's (the direct-to-reverberant ratio: a laptop's speaker
/// a few centimetres from its microphone is well above 0 dB, a far speaker in a room below);
/// unit energy.
pub fn room_response(rt60: f32, drr_db: f32, seed: u64) -> Vec<f32> {
    let len = (rt60 * 1.2 * FS as f32) as usize;
    let mut rng = Rng::new(seed);
    let mut h = vec![0f32; len];
    let start = (0.003 * FS as f32) as usize;
    let decay = 6.9078 / (rt60 * FS as f32); // ln(1000): -60 dB in amplitude at rt60
    for (i, s) in h.iter_mut().enumerate().skip(start) {
        *s = rng.white() * (-decay * i as f32).exp();
    }
    let tail = energy(&h);
    scale(
        &mut h,
        (db_to_gain(-drr_db).powi(2) as f64 / tail).sqrt() as f32,
    );
    h[0] = 1.0;
    let e = energy(&h).sqrt() as f32;
    scale(&mut h, 1.0 / e);
    h
}

/// Linear convolution (FFT), the output as long as `x`.
pub fn convolve(x: &[f32], h: &[f32]) -> Vec<f32> {
    let n = (x.len() + h.len()).next_power_of_two();
    let mut planner = FftPlanner::<f32>::new();
    let fwd = planner.plan_fft_forward(n);
    let inv = planner.plan_fft_inverse(n);
    let mut a: Vec<Complex<f32>> = x.iter().map(|&v| Complex::new(v, 0.0)).collect();
    a.resize(n, Complex::default());
    let mut b: Vec<Complex<f32>> = h.iter().map(|&v| Complex::new(v, 0.0)).collect();
    b.resize(n, Complex::default());
    fwd.process(&mut a);
    fwd.process(&mut b);
    for (p, q) in a.iter_mut().zip(&b) {
        *p *= q;
    }
    inv.process(&mut a);
    a.iter().take(x.len()).map(|c| c.re / n as f32).collect()
}

/// `x` later by `ms` (silence first), same length.
pub fn delayed(x: &[f32], ms: f32) -> Vec<f32> {
    let d = (ms / 1000.0 * FS as f32) as usize;
    let mut out = vec![0f32; x.len()];
    if d < x.len() {
        out[d..].copy_from_slice(&x[..x.len() - d]);
    }
    out
}

/// The echo path's default direct-to-reverberant ratio (dB).
pub const DRR_DB: f32 = -18.0;

/// The loudspeaker-to-microphone path: a delay, a room, a gain (dB); optionally a soft-clipping
/// (tanh) loudspeaker first.
#[derive(Debug, Clone, Copy)]
pub struct EchoPath {
    pub delay_ms: f32,
    pub rt60: f32,
    /// Direct-to-reverberant ratio of the room (dB).
    pub drr_db: f32,
    pub gain_db: f32,
    pub room_seed: u64,
    pub soft_clip: bool,
}

impl EchoPath {
    pub fn new(delay_ms: f32) -> Self {
        EchoPath {
            delay_ms,
            rt60: 0.25,
            drr_db: DRR_DB,
            gain_db: -10.0,
            room_seed: 7,
            soft_clip: false,
        }
    }

    /// What the microphone picks up of `far` played through the speaker.
    pub fn apply(&self, far: &[f32]) -> Vec<f32> {
        let played: Vec<f32> = if self.soft_clip {
            // A small loudspeaker driven hard: unity gain for small signals, saturating.
            far.iter().map(|&x| (2.5 * x).tanh() / 2.5).collect()
        } else {
            far.to_vec()
        };
        let room = room_response(self.rt60, self.drr_db, self.room_seed);
        let mut echo = convolve(&delayed(&played, self.delay_ms), &room);
        scale(&mut echo, db_to_gain(self.gain_db));
        echo
    }
}

pub fn db_to_gain(db: f32) -> f32 {
    10f32.powf(db / 20.0)
}

pub fn scale(x: &mut [f32], g: f32) {
    for v in x {
        *v *= g;
    }
}

pub fn normalize_peak(x: &mut [f32], peak: f32) {
    let m = x.iter().fold(0f32, |m, v| m.max(v.abs()));
    if m > 0.0 {
        scale(x, peak / m);
    }
}

pub fn rms_of(x: &[f32]) -> f32 {
    if x.is_empty() {
        return 0.0;
    }
    (x.iter().map(|v| (*v as f64).powi(2)).sum::<f64>() / x.len() as f64).sqrt() as f32
}

pub fn energy(x: &[f32]) -> f64 {
    x.iter().map(|v| (*v as f64).powi(2)).sum()
}

/// Element-wise sum (the length of the shorter).
pub fn mix(a: &[f32], b: &[f32]) -> Vec<f32> {
    a.iter().zip(b).map(|(x, y)| x + y).collect()
}

pub fn to_frame(x: &[f32]) -> AudioFrame {
    let mut f = [0i16; FRAME_SAMPLES];
    for (d, &s) in f.iter_mut().zip(x) {
        *d = (s * 32768.0).round().clamp(-32768.0, 32767.0) as i16;
    }
    f
}

/// Runs `far` (to render) and `mic` (to capture) through `p` frame by frame (20 ms, render
/// first, as a playout clock and a microphone alternate); answers the processed capture.
pub fn run(p: &mut Processor, far: &[f32], mic: &[f32]) -> Vec<f32> {
    run_with(p, far, mic, |_, _| {})
}

/// Like [`run`], calling `each(frame_index, p)` before each frame (to change something
/// mid-run).
pub fn run_with(
    p: &mut Processor,
    far: &[f32],
    mic: &[f32],
    mut each: impl FnMut(usize, &mut Processor),
) -> Vec<f32> {
    let frames = mic.len() / FRAME_SAMPLES;
    let mut out = Vec::with_capacity(frames * FRAME_SAMPLES);
    for i in 0..frames {
        each(i, p);
        let r = i * FRAME_SAMPLES..(i + 1) * FRAME_SAMPLES;
        if far.len() >= r.end {
            p.render(&to_frame(&far[r.clone()]));
        }
        let mut f = to_frame(&mic[r]);
        p.capture(&mut f);
        out.extend(f.iter().map(|&s| s as f32 / 32768.0));
    }
    out
}

/// ERLE per 100 ms window where the echo is active: `(window start in s, dB)`. A window counts
/// when the echo's energy in it is within 25 dB of the loud windows' (90th percentile);
/// residual energy is floored at one LSB of 16-bit audio per sample, so a silent output reads
/// as a large finite figure, not infinity.
pub fn erle_windows(echo: &[f32], residual: &[f32]) -> Vec<(f32, f32)> {
    let n = echo.len().min(residual.len()) / WINDOW;
    let e: Vec<f64> = (0..n)
        .map(|w| energy(&echo[w * WINDOW..(w + 1) * WINDOW]))
        .collect();
    let mut sorted = e.clone();
    sorted.sort_by(f64::total_cmp);
    let loud = sorted.get(sorted.len() * 9 / 10).copied().unwrap_or(0.0);
    let floor = WINDOW as f64 * (1.0 / 32768.0f64).powi(2);
    (0..n)
        .filter(|&w| e[w] > loud * 10f64.powf(-2.5) && e[w] > 0.0)
        .map(|w| {
            let r = energy(&residual[w * WINDOW..(w + 1) * WINDOW]).max(floor);
            (
                (w * WINDOW) as f32 / FS as f32,
                (10.0 * (e[w] / r).log10()) as f32,
            )
        })
        .collect()
}

pub use crate::quantile;

/// Seconds from `from` until the ERLE holds at `db` or more: the start of the first window at
/// or after `from` which, with the next four active windows (half a second of far-end speech),
/// all reach `db`; measured to the end of that first window. `None`: never.
pub fn convergence_time(windows: &[(f32, f32)], from: f32, db: f32) -> Option<f32> {
    let w: Vec<&(f32, f32)> = windows.iter().filter(|(t, _)| *t >= from).collect();
    (0..w.len().saturating_sub(4))
        .find(|&i| w[i..i + 5].iter().all(|(_, e)| *e >= db))
        .map(|i| w[i].0 + WINDOW as f32 / FS as f32 - from)
}

/// Segmental SNR (dB) of `test` against `reference` in 20 ms segments where the reference is
/// active (within 40 dB of its loudest segments), each segment clamped to [-10, 35] dB as usual.
pub fn segmental_snr(reference: &[f32], test: &[f32]) -> f32 {
    let seg = FS / 50;
    let n = reference.len().min(test.len()) / seg;
    let e: Vec<f64> = (0..n)
        .map(|i| energy(&reference[i * seg..(i + 1) * seg]))
        .collect();
    let mut sorted = e.clone();
    sorted.sort_by(f64::total_cmp);
    let loud = sorted.get(sorted.len() * 95 / 100).copied().unwrap_or(0.0);
    let snrs: Vec<f32> = (0..n)
        .filter(|&i| e[i] > loud * 1e-4 && e[i] > 0.0)
        .map(|i| {
            let r = &reference[i * seg..(i + 1) * seg];
            let t = &test[i * seg..(i + 1) * seg];
            let err: f64 = r
                .iter()
                .zip(t)
                .map(|(a, b)| ((a - b) as f64).powi(2))
                .sum::<f64>()
                .max(1e-12);
            ((10.0 * (e[i] / err).log10()) as f32).clamp(-10.0, 35.0)
        })
        .collect();
    snrs.iter().sum::<f32>() / snrs.len().max(1) as f32
}

/// Which 100 ms windows of `clean` speech are speech (within 30 dB of its loud windows) and
/// which are pauses (more than 50 dB below, or silent).
pub fn speech_and_pause_windows(clean: &[f32]) -> (Vec<usize>, Vec<usize>) {
    let n = clean.len() / WINDOW;
    let e: Vec<f64> = (0..n)
        .map(|w| energy(&clean[w * WINDOW..(w + 1) * WINDOW]))
        .collect();
    let mut sorted = e.clone();
    sorted.sort_by(f64::total_cmp);
    let loud = sorted.get(sorted.len() * 9 / 10).copied().unwrap_or(0.0);
    let speech = (0..n).filter(|&w| e[w] > loud * 1e-3).collect();
    let pause = (0..n).filter(|&w| e[w] <= loud * 1e-5).collect();
    (speech, pause)
}

/// Mean power of `x` over the given 100 ms windows.
pub fn window_power(x: &[f32], windows: &[usize]) -> f64 {
    let total: f64 = windows
        .iter()
        .filter(|&&w| (w + 1) * WINDOW <= x.len())
        .map(|&w| energy(&x[w * WINDOW..(w + 1) * WINDOW]))
        .sum();
    total / (windows.len().max(1) * WINDOW) as f64
}

/// SNR (dB) of a noisy or processed signal from its speech and pause windows (as marked on the
/// clean speech): (speech-window power − noise power) / noise power, the noise power being the
/// pause windows'. Answers also the speech power (dB) without the noise.
pub fn snr_from_windows(x: &[f32], speech: &[usize], pause: &[usize]) -> (f32, f32) {
    let noise = window_power(x, pause).max(1e-14);
    let s = (window_power(x, speech) - noise).max(1e-14);
    (
        (10.0 * (s / noise).log10()) as f32,
        (10.0 * s.log10()) as f32,
    )
}

/// Magnitude spectrum (dB re a full-scale sine) of a Blackman-Harris-windowed chunk of `x`:
/// `(frequency Hz, dBFS)` per bin up to Nyquist.
pub fn spectrum_dbfs(x: &[f32], rate: u32) -> Vec<(f32, f32)> {
    let n = x.len();
    let w: Vec<f32> = (0..n)
        .map(|i| {
            let a = TAU * i as f32 / (n - 1) as f32;
            0.35875 - 0.48829 * a.cos() + 0.14128 * (2.0 * a).cos() - 0.01168 * (3.0 * a).cos()
        })
        .collect();
    let wsum: f32 = w.iter().sum();
    let mut buf: Vec<Complex<f32>> = x
        .iter()
        .zip(&w)
        .map(|(&v, &g)| Complex::new(v * g, 0.0))
        .collect();
    FftPlanner::<f32>::new()
        .plan_fft_forward(n)
        .process(&mut buf);
    (0..n / 2)
        .map(|k| {
            let mag = buf[k].norm() * 2.0 / wsum;
            (
                k as f32 * rate as f32 / n as f32,
                20.0 * mag.max(1e-12).log10(),
            )
        })
        .collect()
}

/// A sine of `hz` at `rate`, amplitude `amp`.
pub fn sine(hz: f32, rate: u32, samples: usize, amp: f32) -> Vec<f32> {
    (0..samples)
        .map(|i| {
            // Phase in f64: f32 would add phase noise far above -80 dB over a second.
            let cycles = (hz as f64 * i as f64 / rate as f64).fract();
            amp * (std::f64::consts::TAU * cycles).sin() as f32
        })
        .collect()
}

/// Mono 16-bit PCM from a WAV file's bytes: `(rate, samples in [-1, 1])`; `None` for anything
/// else.
pub fn wav_mono_i16(bytes: &[u8]) -> Option<(u32, Vec<f32>)> {
    if bytes.get(0..4)? != b"RIFF" || bytes.get(8..12)? != b"WAVE" {
        return None;
    }
    let (mut pos, mut rate, mut data) = (12, None, None);
    while pos + 8 <= bytes.len() {
        let id = &bytes[pos..pos + 4];
        let len = u32::from_le_bytes(bytes[pos + 4..pos + 8].try_into().ok()?) as usize;
        let body = &bytes[pos + 8..(pos + 8 + len).min(bytes.len())];
        match id {
            b"fmt " => {
                let format = u16::from_le_bytes(body.get(0..2)?.try_into().ok()?);
                let channels = u16::from_le_bytes(body.get(2..4)?.try_into().ok()?);
                let bits = u16::from_le_bytes(body.get(14..16)?.try_into().ok()?);
                if format != 1 || channels != 1 || bits != 16 {
                    return None;
                }
                rate = Some(u32::from_le_bytes(body.get(4..8)?.try_into().ok()?));
            }
            // espeak-ng writing to a pipe leaves the data length at its maximum.
            b"data" => data = Some(&bytes[pos + 8..]),
            _ => {}
        }
        if id == b"data" {
            break;
        }
        pos += 8 + len + (len & 1);
    }
    let samples = data?
        .chunks_exact(2)
        .map(|b| i16::from_le_bytes([b[0], b[1]]) as f32 / 32768.0)
        .collect();
    Some((rate?, samples))
}

/// Real synthetic speech from `espeak-ng` (voice such as `en-us` or `en-us+f3`), at 48 kHz,
/// peaks at -6 dBFS; `None` when espeak-ng is not installed (apt `espeak-ng`; `cargo xtask
/// test` and `bench audio` install it).
pub fn espeak(voice: &str, words_per_minute: u32, text: &str) -> Option<Vec<f32>> {
    let out = std::process::Command::new("espeak-ng")
        .args([
            "-v",
            voice,
            "-s",
            &words_per_minute.to_string(),
            "--stdout",
            text,
        ])
        .stderr(std::process::Stdio::null())
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let (rate, x) = wav_mono_i16(&out.stdout)?;
    let mut y = Vec::with_capacity(x.len() * FS / rate as usize + FS);
    if rate == SAMPLE_RATE {
        y = x;
    } else {
        let mut r = crate::resample::Resampler::new(rate, SAMPLE_RATE).ok()?;
        let skip = r.delay();
        r.push(
            x.iter()
                .copied()
                .chain(std::iter::repeat_n(0.0, rate as usize / 10)),
            |c| y.extend_from_slice(c),
        );
        y.drain(..skip.min(y.len()));
    }
    normalize_peak(&mut y, 0.5);
    Some(y)
}

/// Two talkers' speech, the material of the measurements: the far end's (whose echo is to be
/// cancelled) and the near end's (who is to be heard).
#[derive(Debug, Clone)]
pub struct Talkers {
    /// `"espeak-ng"` or `"synthetic"`.
    pub name: &'static str,
    far: Vec<f32>,
    near: Vec<f32>,
}

impl Talkers {
    /// The built-in speech-like voices ([`speech`], fixed seeds): always there.
    pub fn synthetic() -> Self {
        Talkers {
            name: "synthetic",
            far: speech(VOICE_A, 16.0),
            near: speech(VOICE_B, 16.0),
        }
    }

    /// espeak-ng's speech in two voices (a male one reading [`FAR_TEXT`], a female one
    /// [`NEAR_TEXT`]), the fixtures issue 11 asks for; `None` without espeak-ng.
    pub fn espeak() -> Option<Self> {
        Some(Talkers {
            name: "espeak-ng",
            far: espeak("en-us", 150, FAR_TEXT)?,
            near: espeak("en-us+f3", 160, NEAR_TEXT)?,
        })
    }

    /// The far end's speech, `seconds` long (repeated when it is shorter).
    pub fn far(&self, seconds: f32) -> Vec<f32> {
        looped(&self.far, (seconds * FS as f32) as usize)
    }

    /// The near end's speech, `seconds` long (repeated when it is shorter).
    pub fn near(&self, seconds: f32) -> Vec<f32> {
        looped(&self.near, (seconds * FS as f32) as usize)
    }

    /// `seconds` in all: the near end silent for the first `silent` seconds, then talking from
    /// the start of its speech.
    pub fn near_after(&self, silent: f32, seconds: f32) -> Vec<f32> {
        let n = (seconds * FS as f32) as usize;
        let lead = ((silent * FS as f32) as usize).min(n);
        let mut x = vec![0f32; lead];
        x.extend(looped(&self.near, n - lead));
        x
    }
}

/// `x` repeated (or cut) to `n` samples; silence when `x` is empty.
fn looped(x: &[f32], n: usize) -> Vec<f32> {
    if x.is_empty() {
        return vec![0.0; n];
    }
    x.iter().copied().cycle().take(n).collect()
}

/// A mono 16-bit WAV file's bytes.
pub fn wav_bytes(rate: u32, x: &[f32]) -> Vec<u8> {
    let data = (x.len() * 2) as u32;
    let mut w = Vec::with_capacity(44 + x.len() * 2);
    w.extend_from_slice(b"RIFF");
    w.extend_from_slice(&(36 + data).to_le_bytes());
    w.extend_from_slice(b"WAVEfmt ");
    w.extend_from_slice(&16u32.to_le_bytes());
    w.extend_from_slice(&1u16.to_le_bytes());
    w.extend_from_slice(&1u16.to_le_bytes());
    w.extend_from_slice(&rate.to_le_bytes());
    w.extend_from_slice(&(rate * 2).to_le_bytes());
    w.extend_from_slice(&2u16.to_le_bytes());
    w.extend_from_slice(&16u16.to_le_bytes());
    w.extend_from_slice(b"data");
    w.extend_from_slice(&data.to_le_bytes());
    for &s in x {
        let v = (s * 32768.0).round().clamp(-32768.0, 32767.0) as i16;
        w.extend_from_slice(&v.to_le_bytes());
    }
    w
}

/// `x` at 48 kHz resampled to `rate` (band-limited, the filter's delay taken off).
pub fn resampled(x: &[f32], rate: u32) -> Vec<f32> {
    let Ok(mut r) = crate::resample::Resampler::new(SAMPLE_RATE, rate) else {
        return Vec::new();
    };
    let skip = r.delay();
    let mut y = Vec::with_capacity(x.len() * rate as usize / FS + rate as usize);
    r.push(
        x.iter().copied().chain(std::iter::repeat_n(0.0, FS / 10)),
        |c| y.extend_from_slice(c),
    );
    y.drain(..skip.min(y.len()));
    y.truncate(x.len() * rate as usize / FS);
    y
}

/// Texts for the two espeak-ng talkers.
pub const FAR_TEXT: &str = "The quick brown fox jumps over the lazy dog. Every call app people compare us with cancels echo, suppresses noise and levels the voice. Most people call from a laptop with its own speakers and microphone, and without echo cancellation every other person hears themselves a moment later.";
pub const NEAR_TEXT: &str = "Hello, can you hear me? I think the connection is fine now. Let us talk about the plan for next week, and then about the budget, because the numbers from last quarter look quite different from what we expected.";

// ---------------------------------------------------------------------------------------------
// The measurements the tests assert and the audio benchmark prints.

/// What one echo run measured.
#[derive(Debug)]
pub struct EchoFigures {
    pub median: f32,
    pub p10: f32,
    /// From the start of far-end speech to ERLE >= 15 dB held (s).
    pub convergence: Option<f32>,
    /// From the echo path change to ERLE >= 15 dB held again (s).
    pub reconvergence: Option<f32>,
}

/// Far-end speech (voice A) for `seconds` through `path` (changed to `change.1` at
/// `change.0` s), near end silent. ERLE median and p10 over the windows after 3 s (and, with a
/// change, leaving out the 2 s after it).
pub fn echo_run(
    settings: ProcessingSettings,
    path: EchoPath,
    change: Option<(f32, EchoPath)>,
    seconds: f32,
) -> EchoFigures {
    echo_run_on(&speech(VOICE_A, seconds), settings, path, change)
}

/// [`echo_run`] with the given far-end speech.
pub fn echo_run_on(
    far: &[f32],
    settings: ProcessingSettings,
    path: EchoPath,
    change: Option<(f32, EchoPath)>,
) -> EchoFigures {
    let echo = match change {
        None => path.apply(far),
        Some((at, other)) => {
            let cut = (at * FS as f32) as usize;
            let (a, b) = (path.apply(far), other.apply(far));
            a[..cut].iter().chain(&b[cut..]).copied().collect()
        }
    };
    let w = erle_of(far, &echo, settings, path.delay_ms as u32);
    let skip = |t: f32| change.is_some_and(|(at, _)| t >= at && t < at + 2.0);
    let steady: Vec<f32> = w
        .iter()
        .filter(|(t, _)| *t >= 3.0 && !skip(*t))
        .map(|(_, e)| *e)
        .collect();
    let start = w.first().map(|(t, _)| *t).unwrap_or(0.0);
    EchoFigures {
        median: quantile(&steady, 0.5),
        p10: quantile(&steady, 0.1),
        convergence: convergence_time(&w, start, 15.0),
        reconvergence: change.and_then(|(at, _)| convergence_time(&w, at, 15.0)),
    }
}

/// ERLE windows (start s, dB) of far-end speech through `path`, near end silent.
pub fn echo_windows(far: &[f32], settings: ProcessingSettings, path: EchoPath) -> Vec<(f32, f32)> {
    erle_of(far, &path.apply(far), settings, path.delay_ms as u32)
}

/// ERLE windows of `echo` (what the microphone hears of `far`) through the processing.
fn erle_of(
    far: &[f32],
    echo: &[f32],
    settings: ProcessingSettings,
    delay_ms: u32,
) -> Vec<(f32, f32)> {
    let mut p = Processor::new(settings);
    let _ = p.set_delay_ms(delay_ms);
    erle_windows(echo, &run(&mut p, far, echo))
}

/// The echo path changing mid-file: 16 s of `far` through a 60 ms path that becomes, 8 s in,
/// a 120 ms one in another room, at -6 dB instead of -10.
pub fn path_change_run(far: &[f32], settings: ProcessingSettings) -> EchoFigures {
    let mut other = EchoPath::new(120.0);
    other.room_seed = 99;
    other.gain_db = -6.0;
    echo_run_on(far, settings, EchoPath::new(60.0), Some((8.0, other)))
}

/// What the double-talk measurement found: the near end's segmental SNR (dB) in the output.
#[derive(Debug, Clone, Copy)]
pub struct DoubleTalk {
    /// Against the same processing of the near end with a silent far end: what the processing
    /// does to speech by itself (high-pass, noise suppression, gain) is not counted, everything
    /// the far end's presence causes (echo left, near end suppressed) is. The figure the issue
    /// asks about.
    pub vs_solo: f32,
    /// Against the same processing of the near end alone while the far end is rendered (no echo
    /// in the microphone): only what the echo itself causes.
    pub vs_alone: f32,
    /// The unprocessed microphone (near end plus echo) against the near end.
    pub unprocessed: f32,
}

/// Far end (voice A) talks all along; the near end (voice B) starts at 3 s, once the echo
/// canceller has converged, and they talk over each other from then on; measured from 3 s.
pub fn double_talk(settings: ProcessingSettings) -> DoubleTalk {
    let t = Talkers::synthetic();
    double_talk_of(settings, &t.far(12.0), &t.near_after(3.0, 12.0))
}

/// [`double_talk`] on given far-end and near-end signals (the near end silent for 3 s).
pub fn double_talk_of(settings: ProcessingSettings, far: &[f32], near: &[f32]) -> DoubleTalk {
    let echo = EchoPath::new(60.0).apply(far);
    let mic = mix(near, &echo);
    let processed = |far: &[f32], mic: &[f32]| {
        let mut p = Processor::new(settings);
        let _ = p.set_delay_ms(60);
        run(&mut p, far, mic)
    };
    let out = processed(far, &mic);
    let alone = processed(far, near);
    // A silent far end, not none: rendering puts the echo canceller in the capture path, which
    // delays the output by 4 ms more, and segmental SNR needs the same alignment.
    let solo = processed(&vec![0.0; far.len()], near);
    let from = 3 * FS;
    DoubleTalk {
        vs_solo: segmental_snr(&solo[from..], &out[from..]),
        vs_alone: segmental_snr(&alone[from..], &out[from..]),
        unprocessed: segmental_snr(&near[from..], &mic[from..]),
    }
}

/// What the noise measurement found.
#[derive(Debug, Clone, Copy)]
pub struct NoiseFigures {
    /// SNR (dB) of the noisy input and of the output, from speech and pause windows.
    pub snr_in: f32,
    pub snr_out: f32,
    /// Speech power (dBFS, noise taken out) in and out.
    pub speech_in: f32,
    pub speech_out: f32,
}

/// Near-end speech (voice B) with pink noise 10 dB below it (active speech power), no far end,
/// through `settings`; measured from 2 s on (the noise estimator and gain control settle).
pub fn noise_run(settings: ProcessingSettings) -> NoiseFigures {
    noise_run_on(&speech(VOICE_B, 10.0), settings)
}

/// [`noise_run`] on the given clean speech.
pub fn noise_run_on(clean: &[f32], settings: ProcessingSettings) -> NoiseFigures {
    let secs = clean.len() as f32 / FS as f32;
    let (speech_w, pause_w) = speech_and_pause_windows(clean);
    let speech_rms = window_power(clean, &speech_w).sqrt() as f32;
    let noise = pink_noise(secs, speech_rms * db_to_gain(-10.0), 3);
    let noisy = mix(clean, &noise);
    let mut p = Processor::new(settings);
    let out = run(&mut p, &[], &noisy);
    let keep = |w: &Vec<usize>| w.iter().copied().filter(|&i| i >= 20).collect::<Vec<_>>();
    let (sw, pw) = (keep(&speech_w), keep(&pause_w));
    let (snr_in, speech_in) = snr_from_windows(&noisy, &sw, &pw);
    let (snr_out, speech_out) = snr_from_windows(&out, &sw, &pw);
    NoiseFigures {
        snr_in,
        snr_out,
        speech_in,
        speech_out,
    }
}

/// Microseconds of processing per 10 ms of audio (render and capture, everything on), over
/// `seconds` of the talkers' double talk with echo, on the calling thread (wall time of the
/// calls only).
pub fn cpu_us_per_10ms(talkers: &Talkers, seconds: f32) -> f64 {
    let far = talkers.far(seconds);
    let near = talkers.near(seconds);
    let mic = mix(&near, &EchoPath::new(60.0).apply(&far));
    let mut p = Processor::new(ProcessingSettings::default());
    let _ = p.set_delay_ms(60);
    let frames = mic.len() / FRAME_SAMPLES;
    let (fars, mut mics): (Vec<AudioFrame>, Vec<AudioFrame>) = (0..frames)
        .map(|i| {
            let r = i * FRAME_SAMPLES..(i + 1) * FRAME_SAMPLES;
            (to_frame(&far[r.clone()]), to_frame(&mic[r]))
        })
        .unzip();
    let start = std::time::Instant::now();
    for (f, m) in fars.iter().zip(mics.iter_mut()) {
        p.render(f);
        p.capture(m);
    }
    start.elapsed().as_secs_f64() * 1e6 / (2 * frames.max(1)) as f64
}

/// Every figure of the audio benchmark (`cargo xtask bench audio`), on the fixtures above.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct AudioFigures {
    /// Whose speech the figures are measured on ([`Talkers::name`]).
    pub talkers: String,
    /// ERLE (dB) with far-end speech only, 60 ms and 200 ms echo paths pooled, after 3 s.
    pub erle_median_db: f64,
    pub erle_p10_db: f64,
    /// Seconds until the ERLE holds at 15 dB (worst of 60 and 200 ms).
    pub convergence_s: Option<f64>,
    /// Seconds until it holds again after the echo path changes.
    pub reconvergence_s: Option<f64>,
    /// ERLE median and p10 (dB) through a soft-clipping loudspeaker.
    pub soft_clip_erle_median_db: f64,
    pub soft_clip_erle_p10_db: f64,
    /// Near-end segmental SNR (dB) in double talk, everything on, against the same processing
    /// of the near end with no far end ([`DoubleTalk::vs_solo`]).
    pub double_talk_db: f64,
    /// The same with echo cancellation alone.
    pub double_talk_echo_only_db: f64,
    /// Everything on, against the near end processed while the far end is rendered
    /// ([`DoubleTalk::vs_alone`]).
    pub double_talk_vs_alone_db: f64,
    /// The microphone unprocessed (echo left in).
    pub double_talk_unprocessed_db: f64,
    /// SNR gain (dB) on speech in pink noise at 10 dB SNR.
    pub noise_gain_db: f64,
    /// Speech level change (dB) through the noise suppression.
    pub noise_speech_change_db: f64,
    /// Processing time per 10 ms frame (render + capture), microseconds.
    pub cpu_us_per_frame: f64,
    /// With espeak-ng's speech measured above: the same figures on the built-in synthetic
    /// voices, beside them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub synthetic: Option<Box<AudioFigures>>,
}

/// Measures everything on espeak-ng's speech when it is installed (the built-in voices'
/// figures beside them), else on the built-in voices: about 15 s of processing for each.
pub fn measure_all() -> AudioFigures {
    let synthetic = measure(&Talkers::synthetic());
    match Talkers::espeak() {
        Some(t) => AudioFigures {
            synthetic: Some(Box::new(synthetic)),
            ..measure(&t)
        },
        None => synthetic,
    }
}

/// Every figure on one pair of talkers (the far end's speech for the echo, the near end's for
/// double talk and noise).
pub fn measure(talkers: &Talkers) -> AudioFigures {
    let all = ProcessingSettings::default();
    let secs = 12.0;
    let far = talkers.far(secs);
    let mut pooled = Vec::new();
    let mut conv: Option<f32> = Some(0.0);
    for delay in [60.0, 200.0] {
        let f = echo_windows(&far, all, EchoPath::new(delay));
        pooled.extend(f.iter().filter(|(t, _)| *t >= 3.0).map(|(_, e)| *e));
        let c = convergence_time(&f, f.first().map_or(0.0, |w| w.0), 15.0);
        conv = match (conv, c) {
            (Some(a), Some(b)) => Some(a.max(b)),
            _ => None,
        };
    }
    let change = path_change_run(&talkers.far(16.0), all);
    let mut clip = EchoPath::new(60.0);
    clip.soft_clip = true;
    let clip = echo_run_on(&far, all, clip, None);
    let near = talkers.near_after(3.0, secs);
    let dt = double_talk_of(all, &far, &near);
    let dt_aec = double_talk_of(
        ProcessingSettings {
            echo_cancellation: true,
            ..ProcessingSettings::OFF
        },
        &far,
        &near,
    );
    let noise = noise_run_on(&talkers.near(10.0), all);
    AudioFigures {
        talkers: talkers.name.to_string(),
        erle_median_db: quantile(&pooled, 0.5) as f64,
        erle_p10_db: quantile(&pooled, 0.1) as f64,
        convergence_s: conv.map(f64::from),
        reconvergence_s: change.reconvergence.map(f64::from),
        soft_clip_erle_median_db: clip.median as f64,
        soft_clip_erle_p10_db: clip.p10 as f64,
        double_talk_db: dt.vs_solo as f64,
        double_talk_echo_only_db: dt_aec.vs_solo as f64,
        double_talk_vs_alone_db: dt.vs_alone as f64,
        double_talk_unprocessed_db: dt.unprocessed as f64,
        noise_gain_db: (noise.snr_out - noise.snr_in) as f64,
        noise_speech_change_db: (noise.speech_out - noise.speech_in) as f64,
        cpu_us_per_frame: cpu_us_per_10ms(talkers, 20.0),
        synthetic: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_written_wav_reads_back() {
        let x = [0.5f32, -0.25, 0.0];
        assert_eq!(
            wav_mono_i16(&wav_bytes(16_000, &x)),
            Some((16_000, x.to_vec()))
        );
    }

    #[test]
    fn a_mono_16_bit_wav_is_read_and_anything_else_refused() {
        let mut w = b"RIFF\0\0\0\0WAVEfmt \x10\0\0\0\x01\0\x01\0\x22\x56\0\0\x44\xac\0\0\x02\0\x10\0data\x04\0\0\0".to_vec();
        w.extend_from_slice(&16384i16.to_le_bytes());
        w.extend_from_slice(&(-32768i16).to_le_bytes());
        assert_eq!(wav_mono_i16(&w), Some((22_050, vec![0.5, -1.0])));
        let mut stereo = w.clone();
        stereo[22] = 2;
        assert_eq!(wav_mono_i16(&stereo), None);
        assert_eq!(wav_mono_i16(b"RIFF"), None);
    }

    #[test]
    fn the_fixtures_are_the_same_every_time_and_shaped_as_asked() {
        assert_eq!(speech(VOICE_A, 2.0), speech(VOICE_A, 2.0));
        assert_ne!(speech(VOICE_A, 2.0), speech(VOICE_B, 2.0));
        let h = room_response(0.25, -18.0, 7);
        assert!((energy(&h) - 1.0).abs() < 1e-4);
        // Direct sound vs the rest: the asked ratio.
        let drr =
            10.0 * (h[0] as f64 * h[0] as f64 / (energy(&h) - h[0] as f64 * h[0] as f64)).log10();
        assert!((drr + 18.0).abs() < 0.1, "{drr}");
        let n = pink_noise(2.0, 0.1, 1);
        assert!((rms_of(&n) - 0.1).abs() < 1e-3);
        // Pink: about 3 dB less power per octave.
        let spec = spectrum_dbfs(&n[..65_536], SAMPLE_RATE);
        let band = |lo: f32, hi: f32| {
            let v: Vec<f32> = spec
                .iter()
                .filter(|(f, _)| *f >= lo && *f < hi)
                .map(|(_, d)| 10f32.powf(d / 10.0))
                .collect();
            10.0 * (v.iter().sum::<f32>() / v.len() as f32).log10()
        };
        let slope = band(1000.0, 2000.0) - band(2000.0, 4000.0);
        assert!((slope - 3.0).abs() < 1.0, "{slope}");
    }
}
