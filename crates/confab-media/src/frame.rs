//! Raw media: I420 video frames and 20 ms mono audio frames at 48 kHz.

/// Audio sample rate everywhere inside Confab.
pub const SAMPLE_RATE: u32 = 48_000;
/// Samples in one 20 ms audio frame (mono).
pub const FRAME_SAMPLES: usize = 960;
/// One 20 ms frame of mono audio.
pub type AudioFrame = [i16; FRAME_SAMPLES];

/// One picture in I420 (planar Y, then U and V at half resolution), tightly packed.
#[derive(Clone, PartialEq, Eq)]
pub struct VideoFrame {
    pub width: usize,
    pub height: usize,
    /// `width * height` luma bytes, then `(width/2) * (height/2)` U, then as many V.
    pub data: Vec<u8>,
    /// Microseconds since the UNIX epoch when the frame was captured (sender side) or
    /// decoded (receiver side).
    pub timestamp_us: u64,
}

impl std::fmt::Debug for VideoFrame {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "VideoFrame({}x{} @{})",
            self.width, self.height, self.timestamp_us
        )
    }
}

impl VideoFrame {
    /// A black frame. Width and height must be even.
    pub fn black(width: usize, height: usize) -> Self {
        let luma = width * height;
        let mut data = vec![16u8; luma + luma / 2];
        data[luma..].fill(128);
        VideoFrame {
            width,
            height,
            data,
            timestamp_us: 0,
        }
    }

    pub fn y(&self) -> &[u8] {
        &self.data[..self.width * self.height]
    }

    pub fn u(&self) -> &[u8] {
        let l = self.width * self.height;
        &self.data[l..l + l / 4]
    }

    pub fn v(&self) -> &[u8] {
        let l = self.width * self.height;
        &self.data[l + l / 4..]
    }

    /// Planes as mutable slices (y, u, v).
    pub fn planes_mut(&mut self) -> (&mut [u8], &mut [u8], &mut [u8]) {
        let l = self.width * self.height;
        let (y, uv) = self.data.split_at_mut(l);
        let (u, v) = uv.split_at_mut(l / 4);
        (y, u, v)
    }

    /// Half the width and height (2x2 box filter): cheap previews, the small simulcast layer.
    pub fn half(&self) -> VideoFrame {
        let (w, h) = ((self.width / 2) & !1, (self.height / 2) & !1);
        let mut out = VideoFrame::black(w.max(2), h.max(2));
        out.timestamp_us = self.timestamp_us;
        let (sw, cw) = (self.width, self.width / 2);
        let (y, u, v) = (self.y(), self.u(), self.v());
        let (dy, du, dv) = out.planes_mut();
        let mut sums = Vec::new();
        halve(y, sw, dy, w, h, &mut sums);
        halve(u, cw, du, w / 2, h / 2, &mut sums);
        halve(v, cw, dv, w / 2, h / 2, &mut sums);
        out
    }

    /// This picture at `width` x `height` (each made even; at least 2), every plane resized
    /// bilinearly (centers aligned), for a tile shown at that size. Callers halve first
    /// ([`half`](Self::half)) while the picture is over twice the size wanted: two taps alias
    /// below that.
    pub fn resized(&self, width: usize, height: usize) -> VideoFrame {
        let (w, h) = ((width & !1).max(2), (height & !1).max(2));
        if (w, h) == (self.width, self.height) {
            return self.clone();
        }
        let mut out = VideoFrame::black(w, h);
        out.timestamp_us = self.timestamp_us;
        let (sw, sh) = (self.width, self.height);
        if sw < 2 || sh < 2 {
            return out; // no picture to sample (every frame in Confab is at least 2x2)
        }
        let (y, u, v) = (self.y(), self.u(), self.v());
        let (dy, du, dv) = out.planes_mut();
        let mut row = Vec::new();
        bilinear(y, (sw, sh), dy, (w, h), &mut row);
        bilinear(u, (sw / 2, sh / 2), du, (w / 2, h / 2), &mut row);
        bilinear(v, (sw / 2, sh / 2), dv, (w / 2, h / 2), &mut row);
        out
    }

    /// Copies planes with strides into a packed frame. An odd width or height is cropped by
    /// one pixel (every frame inside Confab has even sides).
    #[allow(clippy::too_many_arguments)]
    pub fn from_planes(
        width: usize,
        height: usize,
        y: &[u8],
        y_stride: usize,
        u: &[u8],
        u_stride: usize,
        v: &[u8],
        v_stride: usize,
    ) -> Self {
        let (width, height) = (width & !1, height & !1);
        let (cw, ch) = (width / 2, height / 2);
        // Rows appended, not copied over a cleared frame: a decoded 720p picture is not
        // written twice.
        let mut data = Vec::with_capacity(width * height + 2 * cw * ch);
        for r in 0..height {
            data.extend_from_slice(&y[r * y_stride..][..width]);
        }
        for (plane, stride) in [(u, u_stride), (v, v_stride)] {
            for r in 0..ch {
                data.extend_from_slice(&plane[r * stride..][..cw]);
            }
        }
        VideoFrame {
            width,
            height,
            data,
            timestamp_us: 0,
        }
    }
}

/// One plane halved: each output sample the rounded mean of a 2x2 block. Rows are summed into
/// `sums` first, which the compiler vectorizes (a 720p frame halves in a fifth of a millisecond).
fn halve(src: &[u8], sw: usize, dst: &mut [u8], dw: usize, dh: usize, sums: &mut Vec<u16>) {
    if dw == 0 {
        return; // a picture under 4 samples wide halves to nothing: the black frame stays
    }
    sums.clear();
    sums.resize(2 * dw, 0);
    for (r, out) in dst.chunks_exact_mut(dw).take(dh).enumerate() {
        let (a, b) = (
            &src[2 * r * sw..][..2 * dw],
            &src[(2 * r + 1) * sw..][..2 * dw],
        );
        for ((s, &a), &b) in sums.iter_mut().zip(a).zip(b) {
            *s = u16::from(a) + u16::from(b);
        }
        for (d, pair) in out.iter_mut().zip(sums.chunks_exact(2)) {
            *d = ((pair[0] + pair[1] + 2) >> 2) as u8;
        }
    }
}

/// Where each of `to` samples falls among `from` (at least 1): the first of the two samples it
/// lies between, and the second's weight in 256ths. Centers are aligned; past the last sample
/// the weight goes to a copy of it.
fn taps(from: usize, to: usize) -> Vec<(usize, u16)> {
    (0..to)
        .map(|i| {
            let to = to as u64;
            let at = ((2 * i as u64 + 1) * from as u64 * 128 + to / 2) / to;
            let at = at.saturating_sub(128);
            match (at >> 8) as usize {
                first if first + 1 < from => (first, (at & 255) as u16),
                _ => (from - 1, 0),
            }
        })
        .collect()
}

/// One plane of `from` (width, height; both at least 1) resized to `to` bilinearly: rows are
/// blended first (vectorized, at the source's width, into `row`), then each output sample
/// takes two neighbours of that row. About 1.7 times as fast as fast_image_resize's
/// convolution, whose SIMD pays off only for wide filters.
fn bilinear(
    src: &[u8],
    from: (usize, usize),
    dst: &mut [u8],
    to: (usize, usize),
    row: &mut Vec<u8>,
) {
    let ((sw, sh), (dw, dh)) = (from, to);
    let across = taps(sw, dw);
    row.clear();
    row.resize(sw + 1, 0);
    for ((y0, f), out) in taps(sh, dh).into_iter().zip(dst.chunks_exact_mut(dw)) {
        let y1 = (y0 + 1).min(sh - 1);
        let (a, b) = (&src[y0 * sw..][..sw], &src[y1 * sw..][..sw]);
        for ((r, &a), &b) in row.iter_mut().zip(a).zip(b) {
            *r = ((u16::from(a) * (256 - f) + u16::from(b) * f + 128) >> 8) as u8;
        }
        row[sw] = row[sw - 1];
        for (o, &(x0, f)) in out.iter_mut().zip(&across) {
            let [a, b]: [u8; 2] = row[x0..x0 + 2].try_into().unwrap_or_default();
            *o = ((u16::from(a) * (256 - f) + u16::from(b) * f + 128) >> 8) as u8;
        }
    }
}

/// Microseconds since the UNIX epoch, now.
pub fn now_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A frame of pseudo-random samples (every plane): detail that a wrong tap would show.
    fn noise(width: usize, height: usize) -> VideoFrame {
        let mut f = VideoFrame::black(width, height);
        let mut x = 0x2545_f491_u32;
        for b in &mut f.data {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            *b = (x >> 24) as u8;
        }
        f
    }

    /// What a bilinear sample of `plane` at output (i, j) is, in floating point: the output
    /// sample's center mapped into the source, clamped to the outermost samples.
    fn reference(
        plane: &[u8],
        from: (usize, usize),
        to: (usize, usize),
        i: usize,
        j: usize,
    ) -> f64 {
        let at = |k: usize, n: usize, m: usize| {
            ((k as f64 + 0.5) * n as f64 / m as f64 - 0.5).clamp(0.0, (n - 1) as f64)
        };
        let (x, y) = (at(i, from.0, to.0), at(j, from.1, to.1));
        let (x0, y0) = (x.floor() as usize, y.floor() as usize);
        let (x1, y1) = ((x0 + 1).min(from.0 - 1), (y0 + 1).min(from.1 - 1));
        let p = |x: usize, y: usize| f64::from(plane[y * from.0 + x]);
        let (fx, fy) = (x - x0 as f64, y - y0 as f64);
        let top = p(x0, y0) * (1.0 - fx) + p(x1, y0) * fx;
        let bottom = p(x0, y1) * (1.0 - fx) + p(x1, y1) * fx;
        top * (1.0 - fy) + bottom * fy
    }

    #[test]
    fn resizing_samples_between_the_right_neighbours() {
        let f = noise(64, 36);
        for (w, h) in [
            (50, 28),
            (40, 22),
            (34, 20),
            (100, 60),
            (128, 72),
            (64, 20),
            (20, 36),
        ] {
            let r = f.resized(w, h);
            assert_eq!((r.width, r.height), (w, h));
            let planes = [
                (f.y(), r.y(), (64, 36), (w, h)),
                (f.u(), r.u(), (32, 18), (w / 2, h / 2)),
                (f.v(), r.v(), (32, 18), (w / 2, h / 2)),
            ];
            for (src, out, from, to) in planes {
                for j in 0..to.1 {
                    for i in 0..to.0 {
                        let want = reference(src, from, to, i, j);
                        let got = f64::from(out[j * to.0 + i]);
                        // 8-bit weights and two roundings: within 2 of the exact value.
                        assert!(
                            (got - want).abs() <= 2.0,
                            "{w}x{h} at ({i},{j}): {got} vs {want:.2}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn halving_takes_the_mean_of_each_block() {
        let f = noise(20, 12);
        let h = f.half();
        assert_eq!((h.width, h.height), (10, 6));
        let mean = |p: &[u8], w: usize, x: usize, y: usize| {
            let s: u16 = [(0, 0), (1, 0), (0, 1), (1, 1)]
                .iter()
                .map(|(dx, dy)| u16::from(p[(2 * y + dy) * w + 2 * x + dx]))
                .sum();
            ((s + 2) / 4) as u8
        };
        for y in 0..6 {
            for x in 0..10 {
                assert_eq!(h.y()[y * 10 + x], mean(f.y(), 20, x, y));
            }
        }
        for y in 0..3 {
            for x in 0..5 {
                assert_eq!(h.u()[y * 5 + x], mean(f.u(), 10, x, y));
                assert_eq!(h.v()[y * 5 + x], mean(f.v(), 10, x, y));
            }
        }
    }

    #[test]
    fn tiny_pictures_resize_and_halve_without_a_panic() {
        for (w, h) in [(2, 2), (4, 2), (2, 6), (6, 6)] {
            let f = noise(w, h);
            let half = f.half();
            assert!(half.width >= 2 && half.height >= 2, "{w}x{h}");
            assert_eq!(half.data.len(), half.width * half.height * 3 / 2);
            for (tw, th) in [(2, 2), (1000, 2), (2, 1000), (3, 3), (640, 360)] {
                let r = f.resized(tw, th);
                assert_eq!(
                    r.data.len(),
                    r.width * r.height * 3 / 2,
                    "{w}x{h} to {tw}x{th}"
                );
            }
        }
        // A flat picture stays flat at any size.
        let mut flat = VideoFrame::black(2, 2);
        flat.data.fill(77);
        assert!(flat.resized(30, 14).data.iter().all(|&b| b == 77));
    }
}
