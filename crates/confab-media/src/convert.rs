//! Pixel conversions: camera formats to I420 (the `yuv` crate's SIMD paths; MJPEG through
//! zune-jpeg), and I420 to JPEG for the UI (libjpeg-turbo, fed the YCbCr planes directly).

use crate::frame::VideoFrame;
use crate::MediaError;
use nokhwa::utils::FrameFormat;
use yuv::{
    YuvChromaSubsampling, YuvConversionMode, YuvPackedImage, YuvPlanarImageMut, YuvRange,
    YuvStandardMatrix,
};

fn planar_to_frame(img: YuvPlanarImageMut<'_, u8>, w: usize, h: usize) -> VideoFrame {
    VideoFrame::from_planes(
        w,
        h,
        img.y_plane.borrow(),
        img.y_stride as usize,
        img.u_plane.borrow(),
        img.u_stride as usize,
        img.v_plane.borrow(),
        img.v_stride as usize,
    )
}

fn rgb_to_i420(rgb: &[u8], w: usize, h: usize) -> Result<VideoFrame, MediaError> {
    let mut out = YuvPlanarImageMut::<u8>::alloc(w as u32, h as u32, YuvChromaSubsampling::Yuv420);
    yuv::rgb_to_yuv420(
        &mut out,
        rgb,
        w as u32 * 3,
        YuvRange::Limited,
        YuvStandardMatrix::Bt601,
        YuvConversionMode::Balanced,
    )
    .map_err(|e| MediaError::Device(format!("RGB to I420: {e:?}")))?;
    Ok(planar_to_frame(out, w, h))
}

/// An RGBA picture (`stride` bytes a row, at least `w`×`h` pixels) to an I420 frame of its top
/// left `w & !1` × `h & !1` pixels (what screens and windows are captured as). `None` when the
/// buffer is shorter than it says or the picture is smaller than 2×2.
pub fn rgba_to_i420(rgba: &[u8], stride: usize, w: usize, h: usize) -> Option<VideoFrame> {
    let (w, h) = (w & !1, h & !1);
    if w == 0 || h == 0 || stride < w * 4 || rgba.len() < stride * (h - 1) + w * 4 {
        return None;
    }
    let mut out = YuvPlanarImageMut::<u8>::alloc(w as u32, h as u32, YuvChromaSubsampling::Yuv420);
    yuv::rgba_to_yuv420(
        &mut out,
        rgba,
        u32::try_from(stride).ok()?,
        YuvRange::Limited,
        YuvStandardMatrix::Bt601,
        YuvConversionMode::Balanced,
    )
    .ok()?;
    Some(planar_to_frame(out, w, h))
}

/// An RGBA picture of `w`×`h` (rows of `w * 4` bytes) made `factor` times smaller each way,
/// each output pixel the average of its `factor`×`factor` block. Answers the picture and its
/// size.
pub fn shrink_rgba(rgba: &[u8], w: usize, h: usize, factor: usize) -> (Vec<u8>, usize, usize) {
    let f = factor.max(1);
    let (ow, oh) = (w / f, h / f);
    if f == 1 || ow == 0 || oh == 0 || rgba.len() < w * h * 4 {
        return (rgba.to_vec(), w, h);
    }
    let mut out = vec![0u8; ow * oh * 4];
    let mut sums = vec![0u32; ow * 4];
    for oy in 0..oh {
        sums.fill(0);
        for row in rgba[oy * f * w * 4..].chunks_exact(w * 4).take(f) {
            for (ox, sum) in sums.chunks_exact_mut(4).enumerate() {
                for px in row[ox * f * 4..(ox + 1) * f * 4].chunks_exact(4) {
                    for c in 0..4 {
                        sum[c] += u32::from(px[c]);
                    }
                }
            }
        }
        let n = (f * f) as u32;
        for (o, s) in out[oy * ow * 4..(oy + 1) * ow * 4].iter_mut().zip(&sums) {
            *o = ((s + n / 2) / n) as u8;
        }
    }
    (out, ow, oh)
}

/// A camera buffer to an I420 frame of `w`×`h` (even).
pub fn to_i420(
    format: FrameFormat,
    data: &[u8],
    w: usize,
    h: usize,
) -> Result<VideoFrame, MediaError> {
    match format {
        FrameFormat::YUYV => {
            if data.len() < w * h * 2 {
                return Err(MediaError::Device("short YUYV frame".into()));
            }
            let mut out =
                YuvPlanarImageMut::<u8>::alloc(w as u32, h as u32, YuvChromaSubsampling::Yuv420);
            let packed = YuvPackedImage {
                yuy: data,
                yuy_stride: w as u32 * 2,
                width: w as u32,
                height: h as u32,
            };
            yuv::yuyv422_to_yuv420(&mut out, &packed)
                .map_err(|e| MediaError::Device(format!("YUYV: {e:?}")))?;
            Ok(planar_to_frame(out, w, h))
        }
        FrameFormat::NV12 => {
            let luma = w * h;
            if data.len() < luma + luma / 2 {
                return Err(MediaError::Device("short NV12 frame".into()));
            }
            let mut f = VideoFrame::black(w, h);
            let (y, u, v) = f.planes_mut();
            y.copy_from_slice(&data[..luma]);
            for (i, uv) in data[luma..luma + luma / 2].chunks_exact(2).enumerate() {
                u[i] = uv[0];
                v[i] = uv[1];
            }
            Ok(f)
        }
        FrameFormat::MJPEG => {
            let mut dec = zune_jpeg::JpegDecoder::new(data);
            let rgb = dec
                .decode()
                .map_err(|e| MediaError::Device(format!("MJPEG: {e:?}")))?;
            let (jw, jh) = dec
                .dimensions()
                .ok_or_else(|| MediaError::Device("MJPEG without size".into()))?;
            if rgb.len() < jw * jh * 3 {
                return Err(MediaError::Device("MJPEG decoded short".into()));
            }
            rgb_to_i420(&rgb, jw & !1, jh & !1)
        }
        other => Err(MediaError::Device(format!(
            "unsupported camera format {other:?}"
        ))),
    }
}

/// Limited range (16-235 luma, 16-240 chroma), as codecs hand it out, to JPEG's full range.
fn full_range_tables() -> &'static ([u8; 256], [u8; 256]) {
    static T: std::sync::OnceLock<([u8; 256], [u8; 256])> = std::sync::OnceLock::new();
    T.get_or_init(|| {
        let (mut y, mut c) = ([0u8; 256], [0u8; 256]);
        for v in 0..256i32 {
            y[v as usize] = (((v - 16) * 255 + 109) / 219).clamp(0, 255) as u8;
            c[v as usize] = ((((v - 128) * 255 + 112) / 224) + 128).clamp(0, 255) as u8;
        }
        (y, c)
    })
}

thread_local! {
    /// One compressor and one full-range copy of the planes per thread, reused frame to frame.
    static TURBO: std::cell::RefCell<Option<(turbojpeg::Compressor, Vec<u8>)>> =
        const { std::cell::RefCell::new(None) };
}

/// JPEG of a frame (4:2:0), for the UI: libjpeg-turbo compresses the I420 planes as they are
/// (no color conversion, no chroma resampling), after a table lookup into JPEG's full range.
pub fn to_jpeg(frame: &VideoFrame, quality: u8) -> Result<Vec<u8>, MediaError> {
    let err = |e: turbojpeg::Error| MediaError::Codec(format!("JPEG: {e}"));
    TURBO.with(|cell| {
        let mut cell = cell.borrow_mut();
        if cell.is_none() {
            *cell = Some((turbojpeg::Compressor::new().map_err(err)?, Vec::new()));
        }
        let (compressor, planes) = cell.as_mut().expect("just set");
        let (ty, tc) = full_range_tables();
        let luma = frame.width * frame.height;
        planes.clear();
        planes.extend(frame.data[..luma].iter().map(|&v| ty[v as usize]));
        planes.extend(frame.data[luma..].iter().map(|&v| tc[v as usize]));
        compressor
            .set_quality(i32::from(quality.clamp(1, 100)))
            .map_err(err)?;
        let image = turbojpeg::YuvImage {
            pixels: &planes[..],
            width: frame.width,
            align: 1,
            height: frame.height,
            subsamp: turbojpeg::Subsamp::Sub2x2,
        };
        compressor.compress_yuv_to_vec(image).map_err(err)
    })
}

/// RGBA of a frame.
pub fn to_rgba(frame: &VideoFrame) -> Vec<u8> {
    four_bytes_a_pixel(frame, yuv::yuv420_to_rgba)
}

/// BGRx of a frame (the fourth byte 255), what cairo's RGB24 surfaces hold on a little-endian
/// machine, painted without another conversion; into a buffer used before (sized to the frame;
/// a buffer of the right size is written over, not cleared first).
pub fn to_bgrx_into(frame: &VideoFrame, out: &mut Vec<u8>) {
    into_four_bytes_a_pixel(frame, yuv::yuv420_to_bgra, out)
}

type YuvToPacked = fn(
    &yuv::YuvPlanarImage<u8>,
    &mut [u8],
    u32,
    YuvRange,
    YuvStandardMatrix,
) -> Result<(), yuv::YuvError>;

fn four_bytes_a_pixel(frame: &VideoFrame, convert: YuvToPacked) -> Vec<u8> {
    let mut out = Vec::new();
    into_four_bytes_a_pixel(frame, convert, &mut out);
    out
}

fn into_four_bytes_a_pixel(frame: &VideoFrame, convert: YuvToPacked, out: &mut Vec<u8>) {
    let (w, h) = (frame.width as u32, frame.height as u32);
    let img = yuv::YuvPlanarImage {
        y_plane: frame.y(),
        y_stride: w,
        u_plane: frame.u(),
        u_stride: w / 2,
        v_plane: frame.v(),
        v_stride: w / 2,
        width: w,
        height: h,
    };
    let n = (w * h * 4) as usize;
    if out.len() != n {
        out.clear();
        out.resize(n, 0);
    }
    if convert(
        &img,
        out,
        w * 4,
        YuvRange::Limited,
        YuvStandardMatrix::Bt601,
    )
    .is_err()
    {
        out.fill(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pattern;

    #[test]
    fn jpeg_keeps_the_pattern_readable() {
        let stamp = pattern::Stamp {
            frame: 4242,
            capture_us: 77,
        };
        let f = pattern::frame(640, 480, stamp, 0);
        let jpg = to_jpeg(&f, 75).unwrap();
        assert!(jpg.starts_with(&[0xff, 0xd8]) && jpg.len() < 640 * 480 / 2);
        // Decode it back (as a browser would) and read the blocks from RGB.
        let mut dec = zune_jpeg::JpegDecoder::new(&jpg[..]);
        let rgb = dec.decode().unwrap();
        let rgba: Vec<u8> = rgb
            .chunks(3)
            .flat_map(|p| [p[0], p[1], p[2], 255])
            .collect();
        assert_eq!(pattern::read_rgba(&rgba, 640, 480), Some(stamp));
    }

    #[test]
    fn bgrx_is_rgba_in_cairos_order() {
        let stamp = pattern::Stamp {
            frame: 77,
            capture_us: 1234,
        };
        let f = pattern::frame(640, 360, stamp, 0);
        let rgba = to_rgba(&f);
        let mut bgrx = vec![1u8; 3];
        to_bgrx_into(&f, &mut bgrx);
        assert_eq!(bgrx.len(), 640 * 360 * 4);
        for (c, b) in rgba.chunks_exact(4).zip(bgrx.chunks_exact(4)) {
            assert_eq!([c[2], c[1], c[0]], b[..3]);
        }
        assert_eq!(pattern::read_bgrx(&bgrx, 640, 360), Some(stamp));
        assert_eq!(pattern::read_rgba(&rgba, 640, 360), Some(stamp));
    }

    #[test]
    fn jpeg_stretches_the_codecs_range_to_full() {
        // Video black (16) and white (235) are black and white in the window, not grey.
        for (luma, rgb) in [(16u8, 0u8), (235, 255), (126, 128)] {
            let mut f = VideoFrame::black(64, 32);
            let (y, u, v) = f.planes_mut();
            y.fill(luma);
            u.fill(128);
            v.fill(128);
            let jpg = to_jpeg(&f, 90).unwrap();
            let decoded = zune_jpeg::JpegDecoder::new(&jpg[..]).decode().unwrap();
            assert_eq!(decoded.len(), 64 * 32 * 3);
            assert!(
                decoded.iter().all(|&c| c.abs_diff(rgb) <= 2),
                "luma {luma}: {:?}",
                &decoded[..3]
            );
        }
        // Odd-sized frames cannot reach it (planes are cut to even), and one thread encodes
        // frame after frame of changing sizes with the same compressor.
        for (w, h) in [(1280, 720), (2, 2), (640, 360)] {
            let jpg = to_jpeg(&VideoFrame::black(w, h), 70).unwrap();
            let mut dec = zune_jpeg::JpegDecoder::new(&jpg[..]);
            dec.decode_headers().unwrap();
            assert_eq!(dec.dimensions(), Some((w, h)));
        }
    }

    #[test]
    fn resized_keeps_the_picture() {
        let stamp = pattern::Stamp {
            frame: 77,
            capture_us: 123_456,
        };
        let f = pattern::frame(1280, 720, stamp, 5);
        for (w, h) in [(800, 450), (1000, 562), (640, 360)] {
            let r = f.resized(w, h);
            assert_eq!((r.width, r.height, r.timestamp_us), (w, h, 5));
            assert_eq!(
                pattern::read_rgba(&to_rgba(&r), w, h),
                Some(stamp),
                "{w}x{h}"
            );
        }
        // Odd sizes are made even; the same size is a copy.
        let r = f.resized(801, 451);
        assert_eq!((r.width, r.height), (800, 450));
        assert!(f.resized(1280, 720) == f);
    }

    #[test]
    fn half_size_keeps_the_picture() {
        let f = pattern::frame(
            1280,
            720,
            pattern::Stamp {
                frame: 3,
                capture_us: 9,
            },
            5,
        );
        let h = f.half();
        assert_eq!((h.width, h.height, h.timestamp_us), (640, 360, 5));
        // Flat regions stay flat: the top-left block is a 1 or 0 of the pattern, 16 px wide.
        assert_eq!(h.y()[0], f.y()[0]);
        assert!(to_jpeg(&h, 70).unwrap().len() < to_jpeg(&f, 70).unwrap().len());
    }

    #[test]
    fn rgba_keeps_the_pattern_readable() {
        let stamp = pattern::Stamp {
            frame: 9,
            capture_us: 1,
        };
        let f = pattern::frame(320, 240, stamp, 0);
        assert_eq!(pattern::read_rgba(&to_rgba(&f), 320, 240), Some(stamp));
    }

    #[test]
    fn camera_formats_convert() {
        let (w, h) = (64, 32);
        // YUYV of a flat mid-grey.
        let yuyv: Vec<u8> = std::iter::repeat_n([120u8, 128, 120, 128], w * h / 2)
            .flatten()
            .collect();
        let f = to_i420(FrameFormat::YUYV, &yuyv, w, h).unwrap();
        assert!(f.y().iter().all(|&v| v == 120) && f.u().iter().all(|&v| v == 128));
        let mut nv12 = vec![90u8; w * h];
        nv12.extend(std::iter::repeat_n([100u8, 150], w * h / 4).flatten());
        let f = to_i420(FrameFormat::NV12, &nv12, w, h).unwrap();
        assert!(f.u().iter().all(|&v| v == 100) && f.v().iter().all(|&v| v == 150));
        assert!(to_i420(FrameFormat::YUYV, &yuyv[..10], w, h).is_err());
        assert!(to_i420(FrameFormat::MJPEG, b"not a jpeg", w, h).is_err());
    }
}
