//! Band-limited sample-rate conversion of a mono stream (rubato's FFT resampler), for devices
//! whose rate is not Confab's 48 kHz: samples in, in any amounts; resampled samples out, in
//! fixed chunks (10 ms of the input). It does not allocate once made, so a device callback may
//! use it.

use rubato::audioadapter_buffers::direct::InterleavedSlice;
use rubato::{Fft, FixedSync, Resampler as _};

/// A resampler that cannot be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot resample {from} Hz to {to} Hz: {why}")]
pub struct ResampleError {
    pub from: u32,
    pub to: u32,
    pub why: String,
}

/// Converts a mono stream from one rate to another.
pub struct Resampler {
    fft: Fft<f32>,
    from: u32,
    to: u32,
    pending: Vec<f32>,
    out: Vec<f32>,
}

impl std::fmt::Debug for Resampler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Resampler({} Hz -> {} Hz)", self.from, self.to)
    }
}

impl Resampler {
    pub fn new(from: u32, to: u32) -> Result<Self, ResampleError> {
        let err = |why: String| ResampleError { from, to, why };
        if from == 0 || to == 0 {
            return Err(err("a rate of 0 Hz".into()));
        }
        // Chunks of about 10 ms: short enough for a call, long enough for a sharp filter.
        let chunk = (from as usize / 100).max(1);
        let fft = Fft::<f32>::new(from as usize, to as usize, chunk, 1, FixedSync::Both)
            .map_err(|e| err(e.to_string()))?;
        let (n_in, n_out) = (fft.input_frames_next(), fft.output_frames_next());
        Ok(Resampler {
            fft,
            from,
            to,
            pending: Vec::with_capacity(n_in),
            out: vec![0.0; n_out],
        })
    }

    /// The input rate (Hz).
    pub fn from_rate(&self) -> u32 {
        self.from
    }

    /// The output rate (Hz).
    pub fn to_rate(&self) -> u32 {
        self.to
    }

    /// How late the output is (in output samples): the filter's delay plus one chunk.
    pub fn delay(&self) -> usize {
        self.fft.output_delay() + self.fft.output_frames_next()
    }

    /// Takes `input`; hands each resampled chunk to `emit` as soon as it is ready.
    pub fn push(&mut self, input: impl IntoIterator<Item = f32>, mut emit: impl FnMut(&[f32])) {
        let need = self.fft.input_frames_next();
        for s in input {
            self.pending.push(s);
            if self.pending.len() >= need {
                let n_out = self.fft.output_frames_next().min(self.out.len());
                let done = match (
                    InterleavedSlice::new(&self.pending[..], 1, need),
                    InterleavedSlice::new_mut(&mut self.out[..], 1, n_out),
                ) {
                    (Ok(inp), Ok(mut out)) => self.fft.process_into_buffer(&inp, &mut out, None),
                    _ => Ok((0, 0)),
                };
                self.pending.clear();
                match done {
                    Ok((_, written)) => emit(&self.out[..written]),
                    // Cannot happen with buffers sized from the resampler itself; the chunk is
                    // dropped rather than the device callback stopped.
                    Err(e) => tracing::warn!("resampling failed: {e}"),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audio_fixtures::{sine, spectrum_dbfs};

    /// Resamples a 1 kHz tone (-6 dBFS) in uneven pieces; answers the largest component more
    /// than 50 Hz away from 1 kHz in a steady-state chunk (dBFS) and the tone's level.
    fn spur_dbfs(from: u32, to: u32) -> (f32, f32) {
        let x = sine(1000.0, from, from as usize * 2, 0.5);
        let mut r = Resampler::new(from, to).unwrap();
        let mut y = Vec::new();
        let mut rest = &x[..];
        let mut step = 1;
        while !rest.is_empty() {
            let n = (step * 37 % 1000 + 1).min(rest.len());
            r.push(rest[..n].iter().copied(), |c| y.extend_from_slice(c));
            rest = &rest[n..];
            step += 1;
        }
        // About 2 s in, 2 s out (less the delay).
        assert!(y.len() as f32 > to as f32 * 1.95, "{}", y.len());
        let chunk = &y[to as usize / 2..to as usize / 2 + 32_768];
        let spec = spectrum_dbfs(chunk, to);
        let tone = spec
            .iter()
            .filter(|(f, _)| (f - 1000.0).abs() < 20.0)
            .fold(f32::MIN, |m, (_, d)| m.max(*d));
        let spur = spec
            .iter()
            .filter(|(f, _)| (f - 1000.0).abs() > 50.0)
            .fold(f32::MIN, |m, (_, d)| m.max(*d));
        (spur, tone)
    }

    #[test]
    fn a_1_khz_tone_from_44_1_to_48_khz_has_no_images_above_minus_80_dbfs() {
        let (spur, tone) = spur_dbfs(44_100, 48_000);
        println!("44.1 -> 48 kHz: tone {tone:.1} dBFS, largest other component {spur:.1} dBFS");
        assert!((tone + 6.0).abs() < 0.5, "{tone}");
        assert!(spur < -80.0, "{spur}");
    }

    #[test]
    fn a_1_khz_tone_from_48_to_44_1_khz_has_no_aliases_above_minus_80_dbfs() {
        let (spur, tone) = spur_dbfs(48_000, 44_100);
        println!("48 -> 44.1 kHz: tone {tone:.1} dBFS, largest other component {spur:.1} dBFS");
        assert!((tone + 6.0).abs() < 0.5, "{tone}");
        assert!(spur < -80.0, "{spur}");
    }

    #[test]
    fn a_zero_rate_is_an_error_in_words() {
        let e = Resampler::new(0, 48_000).unwrap_err();
        assert!(e.to_string().contains("0 Hz"), "{e}");
    }
}
