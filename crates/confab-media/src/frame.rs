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

    /// Half the width and height (2x2 box filter): cheap previews.
    pub fn half(&self) -> VideoFrame {
        let (w, h) = ((self.width / 2) & !1, (self.height / 2) & !1);
        let mut out = VideoFrame::black(w.max(2), h.max(2));
        out.timestamp_us = self.timestamp_us;
        let down = |src: &[u8], sw: usize, dst: &mut [u8], dw: usize, dh: usize| {
            for r in 0..dh {
                let (a, b) = (&src[2 * r * sw..][..sw], &src[(2 * r + 1) * sw..][..sw]);
                for c in 0..dw {
                    let sum = a[2 * c] as u16
                        + a[2 * c + 1] as u16
                        + b[2 * c] as u16
                        + b[2 * c + 1] as u16;
                    dst[r * dw + c] = ((sum + 2) / 4) as u8;
                }
            }
        };
        let (sw, cw) = (self.width, self.width / 2);
        let (y, u, v) = (self.y(), self.u(), self.v());
        let (dy, du, dv) = out.planes_mut();
        down(y, sw, dy, w, h);
        down(u, cw, du, w / 2, h / 2);
        down(v, cw, dv, w / 2, h / 2);
        out
    }

    /// This picture at `width` x `height` (each made even; at least 2): every plane resized
    /// with a bilinear filter (fast_image_resize's SIMD paths), for a tile shown at that size.
    pub fn resized(&self, width: usize, height: usize) -> VideoFrame {
        use fast_image_resize::{
            images::Image, images::ImageRef, FilterType, PixelType, ResizeAlg, ResizeOptions,
            Resizer,
        };
        let (w, h) = ((width & !1).max(2), (height & !1).max(2));
        if (w, h) == (self.width, self.height) {
            return self.clone();
        }
        let mut out = VideoFrame::black(w, h);
        out.timestamp_us = self.timestamp_us;
        let options =
            ResizeOptions::new().resize_alg(ResizeAlg::Interpolation(FilterType::Bilinear));
        let mut resizer = Resizer::new();
        let (sw, sh) = (self.width as u32, self.height as u32);
        let (y, u, v) = (self.y(), self.u(), self.v());
        let (dy, du, dv) = out.planes_mut();
        for (src, dst, div) in [(y, dy, 1), (u, du, 2), (v, dv, 2)] {
            let resized = ImageRef::new(sw / div, sh / div, src, PixelType::U8).and_then(|from| {
                let mut to =
                    Image::from_slice_u8(w as u32 / div, h as u32 / div, dst, PixelType::U8)?;
                Ok(resizer.resize(&from, &mut to, &options))
            });
            if !matches!(resized, Ok(Ok(()))) {
                // Sizes come from this frame and are checked above: not reached. A black plane
                // rather than a panic if it ever is.
                tracing::warn!(
                    "cannot resize a {}x{} picture to {w}x{h}",
                    self.width,
                    self.height
                );
            }
        }
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
        let mut f = VideoFrame::black(width, height);
        let (cw, ch) = (width / 2, height / 2);
        let (dy, du, dv) = f.planes_mut();
        for r in 0..height {
            dy[r * width..][..width].copy_from_slice(&y[r * y_stride..][..width]);
        }
        for r in 0..ch {
            du[r * cw..][..cw].copy_from_slice(&u[r * u_stride..][..cw]);
            dv[r * cw..][..cw].copy_from_slice(&v[r * v_stride..][..cw]);
        }
        f
    }
}

/// Microseconds since the UNIX epoch, now.
pub fn now_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}
