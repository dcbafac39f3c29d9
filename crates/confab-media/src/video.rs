//! Video codecs: H.264 Constrained Baseline (openh264) and VP8 (libvpx), behind one trait.

use crate::frame::{now_us, VideoFrame};
use crate::MediaError;

/// A negotiated video codec.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum VideoCodec {
    H264,
    Vp8,
}

impl VideoCodec {
    pub fn mime(self) -> &'static str {
        match self {
            VideoCodec::H264 => "video/H264",
            VideoCodec::Vp8 => "video/VP8",
        }
    }

    pub fn from_mime(mime: &str) -> Option<Self> {
        if mime.eq_ignore_ascii_case("video/H264") {
            Some(VideoCodec::H264)
        } else if mime.eq_ignore_ascii_case("video/VP8") {
            Some(VideoCodec::Vp8)
        } else {
            None
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            VideoCodec::H264 => "h264",
            VideoCodec::Vp8 => "vp8",
        }
    }
}

impl std::str::FromStr for VideoCodec {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "h264" | "h.264" => Ok(VideoCodec::H264),
            "vp8" => Ok(VideoCodec::Vp8),
            other => Err(format!("unknown video codec `{other}` (have h264, vp8)")),
        }
    }
}

/// The video codecs this build encodes and decodes, H.264 first. VP8 needs libvpx (the `vp8`
/// feature, on by default) and is never built for Windows; the engine offers only these.
#[cfg(vp8)]
pub const AVAILABLE: &[VideoCodec] = &[VideoCodec::H264, VideoCodec::Vp8];
/// The video codecs this build encodes and decodes: H.264 only, as VP8 (libvpx) is not built
/// in (no `vp8` feature, or a Windows build); the engine offers only these.
#[cfg(not(vp8))]
pub const AVAILABLE: &[VideoCodec] = &[VideoCodec::H264];

#[cfg(not(vp8))]
fn vp8_not_built() -> MediaError {
    MediaError::Codec("VP8 is not built into this Confab (it needs libvpx); use H.264".into())
}

/// One encoded picture.
#[derive(Debug, Clone)]
pub struct EncodedFrame {
    /// H.264: an Annex-B access unit; VP8: one frame.
    pub data: Vec<u8>,
    pub keyframe: bool,
}

pub trait VideoEncoder: Send {
    /// Encodes a frame; `None` when the rate controller skipped it.
    fn encode(
        &mut self,
        frame: &VideoFrame,
        keyframe: bool,
    ) -> Result<Option<EncodedFrame>, MediaError>;
    /// Sets the target bitrate, bits per second.
    fn set_bitrate(&mut self, bps: u32);
    fn codec(&self) -> VideoCodec;
    /// Makes what the first encode at this size would make, so that it is only an encode.
    /// Where the codec library cannot be readied before its first picture (openh264 sizes
    /// itself at its first encode), this does nothing.
    fn prepare(&mut self, _width: usize, _height: usize) -> Result<(), MediaError> {
        Ok(())
    }
}

/// The largest picture a decoder accepts. A frame announcing a bigger one (in an H.264 sequence
/// parameter set or a VP8 key frame header) is refused before it reaches the decoder, so nothing
/// is allocated for it (`peek`); decoded pictures are checked again.
pub const MAX_DECODED: (usize, usize) = (4096, 2304);

/// Refuses a frame whose announced coded size is outside `MAX_DECODED`, before decoding.
fn check_announced(codec: VideoCodec, data: &[u8]) -> Result<(), MediaError> {
    match crate::peek::announced_size(codec, data)? {
        // Coded sizes are whole macroblocks: allow the rounding up of the largest picture.
        Some((w, h))
            if w > MAX_DECODED.0.next_multiple_of(16) || h > MAX_DECODED.1.next_multiple_of(16) =>
        {
            Err(MediaError::Codec(format!(
                "refused a frame announcing a {w}x{h} picture, larger than Confab shows ({}x{})",
                MAX_DECODED.0, MAX_DECODED.1
            )))
        }
        _ => Ok(()),
    }
}

fn check_size(w: usize, h: usize) -> Result<(), MediaError> {
    if w < 2 || h < 2 || w > MAX_DECODED.0 || h > MAX_DECODED.1 {
        return Err(MediaError::Codec(format!(
            "a {w}x{h} picture is outside what Confab shows (2x2 to {}x{})",
            MAX_DECODED.0, MAX_DECODED.1
        )));
    }
    Ok(())
}

pub trait VideoDecoder: Send {
    /// Decodes one complete frame; `None` if it produced no picture yet.
    fn decode(&mut self, data: &[u8]) -> Result<Option<VideoFrame>, MediaError>;
}

/// What a video stream shows, for the encoder's tuning.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Content {
    /// A camera: motion over detail.
    Motion,
    /// A shared screen: text and fine detail over motion. VP8 runs libvpx's screen-content
    /// mode; H.264 keeps openh264's camera mode, which measured sharper on typed text
    /// (`text_on_a_shared_screen_stays_sharper_with_detail_tuning`: its screen-content mode lost
    /// 2.4 dB at 300 kbit/s and 7 dB at 800).
    Detail,
}

/// An encoder for camera pictures.
pub fn encoder(
    codec: VideoCodec,
    bitrate_bps: u32,
    fps: f32,
) -> Result<Box<dyn VideoEncoder>, MediaError> {
    encoder_for(codec, bitrate_bps, fps, Content::Motion)
}

/// An encoder tuned for what the stream shows.
pub fn encoder_for(
    codec: VideoCodec,
    bitrate_bps: u32,
    fps: f32,
    content: Content,
) -> Result<Box<dyn VideoEncoder>, MediaError> {
    Ok(match codec {
        // One tuning for both (see `Content::Detail`).
        VideoCodec::H264 => {
            let _ = content;
            Box::new(H264Encoder::new(bitrate_bps, fps)?)
        }
        #[cfg(vp8)]
        VideoCodec::Vp8 => Box::new(Vp8Encoder::new(bitrate_bps, fps).tuned(content)),
        #[cfg(not(vp8))]
        VideoCodec::Vp8 => return Err(vp8_not_built()),
    })
}

pub fn decoder(codec: VideoCodec) -> Result<Box<dyn VideoDecoder>, MediaError> {
    Ok(match codec {
        VideoCodec::H264 => Box::new(H264Decoder::new()?),
        #[cfg(vp8)]
        VideoCodec::Vp8 => Box::new(Vp8Decoder::new()?),
        #[cfg(not(vp8))]
        VideoCodec::Vp8 => return Err(vp8_not_built()),
    })
}

// ---------------------------------------------------------------------------------------------
// H.264 (openh264)

use openh264::encoder::{
    BitRate, Complexity, Encoder as OhEncoder, EncoderConfig, FrameRate, FrameType,
    IntraFramePeriod, Profile, RateControlMode, SpsPpsStrategy, UsageType,
};
use openh264::formats::{YUVSlices, YUVSource};
use openh264::OpenH264API;

pub struct H264Encoder {
    enc: Option<OhEncoder>,
    bitrate: u32,
    applied: u32,
    fps: f32,
    size: (usize, usize),
}

fn h264_err(e: openh264::Error) -> MediaError {
    MediaError::Codec(format!("H.264: {e}"))
}

impl H264Encoder {
    pub fn new(bitrate_bps: u32, fps: f32) -> Result<Self, MediaError> {
        Ok(H264Encoder {
            enc: None,
            bitrate: bitrate_bps,
            applied: bitrate_bps,
            fps,
            size: (0, 0),
        })
    }

    fn make(&self) -> Result<OhEncoder, MediaError> {
        let cfg = EncoderConfig::new()
            .bitrate(BitRate::from_bps(self.bitrate))
            .max_frame_rate(FrameRate::from_hz(self.fps))
            .rate_control_mode(RateControlMode::Bitrate)
            // Also for screens: see `Content::Detail`.
            .usage_type(UsageType::CameraVideoRealTime)
            .profile(Profile::Baseline)
            .complexity(Complexity::Low)
            // Frame skipping is what lets openh264's rate control hold a bitrate.
            .skip_frames(true)
            .intra_frame_period(IntraFramePeriod::from_num_frames(
                (self.fps as u32).max(1) * 10,
            ))
            .sps_pps_strategy(SpsPpsStrategy::ConstantId)
            .num_threads(1);
        OhEncoder::with_api_config(OpenH264API::from_source(), cfg).map_err(h264_err)
    }

    /// Applies a new target through openh264's option API (no safe setter exists). The
    /// maximum is raised first when going up, so the encoder's bitrate check passes.
    fn apply_bitrate(&mut self) {
        use openh264_sys2::{
            SBitrateInfo, ENCODER_OPTION_BITRATE, ENCODER_OPTION_MAX_BITRATE, SPATIAL_LAYER_0,
            SPATIAL_LAYER_ALL,
        };
        let Some(enc) = self.enc.as_mut() else { return };
        let bps = self.bitrate as i32;
        let mut max = SBitrateInfo {
            iLayer: SPATIAL_LAYER_0,
            iBitrate: bps.saturating_mul(3) / 2,
        };
        let mut target = SBitrateInfo {
            iLayer: SPATIAL_LAYER_ALL,
            iBitrate: bps,
        };
        // SAFETY: the encoder is initialized (it has encoded a frame); the structs outlive the calls.
        unsafe {
            let api = enc.raw_api();
            if self.bitrate > self.applied {
                api.set_option(
                    ENCODER_OPTION_MAX_BITRATE,
                    (&mut max as *mut SBitrateInfo).cast(),
                );
                api.set_option(
                    ENCODER_OPTION_BITRATE,
                    (&mut target as *mut SBitrateInfo).cast(),
                );
            } else {
                api.set_option(
                    ENCODER_OPTION_BITRATE,
                    (&mut target as *mut SBitrateInfo).cast(),
                );
                api.set_option(
                    ENCODER_OPTION_MAX_BITRATE,
                    (&mut max as *mut SBitrateInfo).cast(),
                );
            }
        }
        self.applied = self.bitrate;
    }
}

impl VideoEncoder for H264Encoder {
    fn encode(
        &mut self,
        frame: &VideoFrame,
        keyframe: bool,
    ) -> Result<Option<EncodedFrame>, MediaError> {
        if self.enc.is_none() || self.size != (frame.width, frame.height) {
            self.enc = Some(self.make()?);
            self.size = (frame.width, frame.height);
            self.applied = self.bitrate;
        }
        let first = self.enc.is_some() && self.applied != self.bitrate;
        if first {
            self.apply_bitrate();
        }
        let enc = self.enc.as_mut().expect("made above");
        if keyframe {
            enc.force_intra_frame();
        }
        let (w, h) = (frame.width, frame.height);
        let yuv = YUVSlices::new((frame.y(), frame.u(), frame.v()), (w, h), (w, w / 2, w / 2));
        let bs = enc.encode(&yuv).map_err(h264_err)?;
        let ft = bs.frame_type();
        if matches!(ft, FrameType::Skip | FrameType::Invalid) {
            return Ok(None);
        }
        let data = bs.to_vec();
        if data.is_empty() {
            return Ok(None);
        }
        Ok(Some(EncodedFrame {
            data,
            keyframe: matches!(ft, FrameType::IDR | FrameType::I),
        }))
    }

    fn set_bitrate(&mut self, bps: u32) {
        self.bitrate = bps.max(50_000);
    }

    fn codec(&self) -> VideoCodec {
        VideoCodec::H264
    }
}

pub struct H264Decoder {
    dec: openh264::decoder::Decoder,
}

impl H264Decoder {
    pub fn new() -> Result<Self, MediaError> {
        Ok(H264Decoder {
            dec: openh264::decoder::Decoder::new().map_err(h264_err)?,
        })
    }
}

impl VideoDecoder for H264Decoder {
    fn decode(&mut self, data: &[u8]) -> Result<Option<VideoFrame>, MediaError> {
        check_announced(VideoCodec::H264, data)?;
        match self.dec.decode(data).map_err(h264_err)? {
            None => Ok(None),
            Some(yuv) => {
                let (w, h) = yuv.dimensions();
                check_size(w, h)?;
                let (ys, us, vs) = yuv.strides();
                let mut f = VideoFrame::from_planes(w, h, yuv.y(), ys, yuv.u(), us, yuv.v(), vs);
                f.timestamp_us = now_us();
                Ok(Some(f))
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// VP8 (libvpx through env-libvpx-sys, which binds Debian's libvpx 1.12 without bindgen)

#[cfg(vp8)]
use std::mem::MaybeUninit;
#[cfg(vp8)]
use std::os::raw::{c_int, c_long, c_ulong};
#[cfg(vp8)]
use vpx_sys::*;

#[cfg(vp8)]
struct VpxCtx(Box<vpx_codec_ctx_t>);
// SAFETY: the context is used by one thread at a time (the owner is `&mut`).
#[cfg(vp8)]
unsafe impl Send for VpxCtx {}
#[cfg(vp8)]
impl Drop for VpxCtx {
    fn drop(&mut self) {
        // SAFETY: initialized by vpx_codec_*_init_ver before a VpxCtx is built.
        unsafe {
            vpx_codec_destroy(&mut *self.0);
        }
    }
}

#[cfg(vp8)]
fn vpx_err(what: &str, e: vpx_codec_err_t) -> MediaError {
    // SAFETY: vpx_codec_err_to_string returns a static C string.
    let text = unsafe { std::ffi::CStr::from_ptr(vpx_codec_err_to_string(e)) };
    MediaError::Codec(format!("VP8 {what}: {}", text.to_string_lossy()))
}

#[cfg(vp8)]
pub struct Vp8Encoder {
    ctx: Option<(VpxCtx, vpx_codec_enc_cfg_t)>,
    size: (usize, usize),
    bitrate: u32,
    fps: f32,
    pts: i64,
    content: Content,
}

// SAFETY: vpx_codec_enc_cfg_t is plain data (its pointers are unused by us).
#[cfg(vp8)]
unsafe impl Send for Vp8Encoder {}

#[cfg(vp8)]
impl Vp8Encoder {
    pub fn new(bitrate_bps: u32, fps: f32) -> Self {
        Vp8Encoder {
            ctx: None,
            size: (0, 0),
            bitrate: bitrate_bps,
            fps,
            pts: 0,
            content: Content::Motion,
        }
    }

    pub fn tuned(mut self, content: Content) -> Self {
        self.content = content;
        self
    }

    fn make(&self, w: usize, h: usize) -> Result<(VpxCtx, vpx_codec_enc_cfg_t), MediaError> {
        // SAFETY: zeroed structs are valid inputs to the config/init calls, which fill them.
        unsafe {
            let mut cfg: vpx_codec_enc_cfg_t = MaybeUninit::zeroed().assume_init();
            let e = vpx_codec_enc_config_default(vpx_codec_vp8_cx(), &mut cfg, 0);
            if e != VPX_CODEC_OK {
                return Err(vpx_err("config", e));
            }
            cfg.g_w = w as u32;
            cfg.g_h = h as u32;
            cfg.g_timebase = vpx_rational { num: 1, den: 1000 };
            cfg.rc_target_bitrate = self.bitrate / 1000;
            cfg.g_lag_in_frames = 0;
            cfg.g_error_resilient = VPX_ERROR_RESILIENT_DEFAULT;
            cfg.g_pass = vpx_enc_pass::VPX_RC_ONE_PASS;
            cfg.rc_end_usage = vpx_rc_mode::VPX_CBR;
            cfg.rc_dropframe_thresh = 0;
            cfg.rc_resize_allowed = 0;
            cfg.rc_min_quantizer = 2;
            cfg.rc_max_quantizer = 56;
            cfg.rc_undershoot_pct = 100;
            cfg.rc_overshoot_pct = 15;
            cfg.rc_buf_initial_sz = 500;
            cfg.rc_buf_optimal_sz = 600;
            cfg.rc_buf_sz = 1000;
            cfg.kf_mode = vpx_kf_mode::VPX_KF_AUTO;
            cfg.kf_max_dist = (self.fps as u32).max(1) * 10;
            cfg.g_threads = 1;
            let mut ctx: Box<vpx_codec_ctx_t> = Box::new(MaybeUninit::zeroed().assume_init());
            let e = vpx_codec_enc_init_ver(
                &mut *ctx,
                vpx_codec_vp8_cx(),
                &cfg,
                0,
                VPX_ENCODER_ABI_VERSION as c_int,
            );
            if e != VPX_CODEC_OK {
                return Err(vpx_err("encoder init", e));
            }
            let ctx = VpxCtx(ctx);
            let c = |id: vp8e_enc_control_id, v: c_int| {
                vpx_codec_control_(ctx.0.as_ref() as *const _ as *mut _, id as c_int, v);
            };
            c(vp8e_enc_control_id::VP8E_SET_CPUUSED, -6);
            c(vp8e_enc_control_id::VP8E_SET_STATIC_THRESHOLD, 1);
            c(vp8e_enc_control_id::VP8E_SET_NOISE_SENSITIVITY, 0);
            c(
                vp8e_enc_control_id::VP8E_SET_TOKEN_PARTITIONS,
                vp8e_token_partitions::VP8_ONE_TOKENPARTITION as c_int,
            );
            c(vp8e_enc_control_id::VP8E_SET_MAX_INTRA_BITRATE_PCT, 300);
            if self.content == Content::Detail {
                c(vp8e_enc_control_id::VP8E_SET_SCREEN_CONTENT_MODE, 1);
            }
            Ok((ctx, cfg))
        }
    }
}

#[cfg(vp8)]
impl VideoEncoder for Vp8Encoder {
    fn encode(
        &mut self,
        frame: &VideoFrame,
        keyframe: bool,
    ) -> Result<Option<EncodedFrame>, MediaError> {
        let (w, h) = (frame.width, frame.height);
        self.prepare(w, h)?;
        let (ctx, cfg) = self.ctx.as_mut().expect("made by prepare");
        if cfg.rc_target_bitrate != self.bitrate / 1000 {
            cfg.rc_target_bitrate = self.bitrate / 1000;
            // SAFETY: live reconfiguration of an initialized encoder with an unchanged size.
            let e = unsafe { vpx_codec_enc_config_set(&mut *ctx.0, cfg) };
            if e != VPX_CODEC_OK {
                tracing::warn!("{}", vpx_err("bitrate", e));
            }
        }
        let duration = (1000.0 / self.fps.max(1.0)) as u64;
        let mut out: Option<EncodedFrame> = None;
        // SAFETY: the image wraps the frame's buffer, which outlives the encode call; packets are
        // copied out before the next libvpx call.
        unsafe {
            let mut img: vpx_image_t = MaybeUninit::zeroed().assume_init();
            if vpx_img_wrap(
                &mut img,
                vpx_img_fmt::VPX_IMG_FMT_I420,
                w as u32,
                h as u32,
                1,
                frame.data.as_ptr() as *mut u8,
            )
            .is_null()
            {
                return Err(MediaError::Codec("VP8: cannot wrap the frame".into()));
            }
            let flags = if keyframe {
                VPX_EFLAG_FORCE_KF as vpx_enc_frame_flags_t
            } else {
                0
            };
            let e = vpx_codec_encode(
                &mut *ctx.0,
                &img,
                self.pts,
                duration as c_ulong,
                flags,
                VPX_DL_REALTIME as c_ulong,
            );
            self.pts += duration as i64;
            if e != VPX_CODEC_OK {
                return Err(vpx_err("encode", e));
            }
            let mut iter: vpx_codec_iter_t = std::ptr::null();
            loop {
                let pkt = vpx_codec_get_cx_data(&mut *ctx.0, &mut iter);
                if pkt.is_null() {
                    break;
                }
                if (*pkt).kind == vpx_codec_cx_pkt_kind::VPX_CODEC_CX_FRAME_PKT {
                    let f = &(*pkt).data.frame;
                    let bytes = std::slice::from_raw_parts(f.buf as *const u8, f.sz as usize);
                    let key = f.flags & VPX_FRAME_IS_KEY != 0;
                    match &mut out {
                        Some(o) => o.data.extend_from_slice(bytes),
                        None => {
                            out = Some(EncodedFrame {
                                data: bytes.to_vec(),
                                keyframe: key,
                            })
                        }
                    }
                }
            }
        }
        Ok(out)
    }

    fn set_bitrate(&mut self, bps: u32) {
        self.bitrate = bps.max(50_000);
    }

    fn codec(&self) -> VideoCodec {
        VideoCodec::Vp8
    }

    /// Makes libvpx's context (3-11 ms at 720p, a good part of a first keyframe's time).
    fn prepare(&mut self, width: usize, height: usize) -> Result<(), MediaError> {
        if self.ctx.is_none() || self.size != (width, height) {
            self.ctx = Some(self.make(width, height)?);
            self.size = (width, height);
        }
        Ok(())
    }
}

#[cfg(vp8)]
pub struct Vp8Decoder {
    ctx: VpxCtx,
}

#[cfg(vp8)]
impl Vp8Decoder {
    pub fn new() -> Result<Self, MediaError> {
        // SAFETY: a zeroed context is the documented input of vpx_codec_dec_init_ver.
        unsafe {
            let mut ctx: Box<vpx_codec_ctx_t> = Box::new(MaybeUninit::zeroed().assume_init());
            let cfg = vpx_codec_dec_cfg_t {
                threads: 1,
                w: 0,
                h: 0,
            };
            let e = vpx_codec_dec_init_ver(
                &mut *ctx,
                vpx_codec_vp8_dx(),
                &cfg,
                0,
                VPX_DECODER_ABI_VERSION as c_int,
            );
            if e != VPX_CODEC_OK {
                return Err(vpx_err("decoder init", e));
            }
            Ok(Vp8Decoder { ctx: VpxCtx(ctx) })
        }
    }
}

#[cfg(vp8)]
impl VideoDecoder for Vp8Decoder {
    fn decode(&mut self, data: &[u8]) -> Result<Option<VideoFrame>, MediaError> {
        check_announced(VideoCodec::Vp8, data)?;
        // SAFETY: the decoder reads `data` during the call; the image is copied out before the
        // next call.
        unsafe {
            let e = vpx_codec_decode(
                &mut *self.ctx.0,
                data.as_ptr(),
                data.len() as u32,
                std::ptr::null_mut(),
                0 as c_long,
            );
            if e != VPX_CODEC_OK {
                return Err(vpx_err("decode", e));
            }
            let mut iter: vpx_codec_iter_t = std::ptr::null();
            let mut last = None;
            loop {
                let img = vpx_codec_get_frame(&mut *self.ctx.0, &mut iter);
                if img.is_null() {
                    break;
                }
                let img = &*img;
                let (w, h) = (img.d_w as usize, img.d_h as usize);
                check_size(w, h)?;
                let (cw, ch) = (w.div_ceil(2), h.div_ceil(2));
                let s = |i: usize| img.stride[i] as usize;
                let y = std::slice::from_raw_parts(img.planes[0], s(0) * (h - 1) + w);
                let u = std::slice::from_raw_parts(img.planes[1], s(1) * (ch - 1) + cw);
                let v = std::slice::from_raw_parts(img.planes[2], s(2) * (ch - 1) + cw);
                let mut f = VideoFrame::from_planes(w, h, y, s(0), u, s(1), v, s(2));
                f.timestamp_us = now_us();
                last = Some(f);
            }
            Ok(last)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pattern;

    /// A screen of text being typed: black glyph-like strokes (random 6x10 bitmaps in 10x16
    /// cells) on white, `typed` characters so far.
    fn text_screen(w: usize, h: usize, typed: usize) -> VideoFrame {
        let mut f = VideoFrame::black(w, h);
        let (y, u, v) = f.planes_mut();
        y.fill(235);
        u.fill(128);
        v.fill(128);
        let cols = w / 10;
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut rand = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for c in 0..typed.min(cols * (h / 16)) {
            let (cx, cy) = ((c % cols) * 10 + 2, (c / cols) * 16 + 3);
            let bits = rand();
            for gy in 0..10 {
                for gx in 0..6 {
                    if bits >> ((gy * 6 + gx) % 64) & 1 == 1 && (gy + gx) % 3 != 0 {
                        y[(cy + gy) * w + cx + gx] = 16;
                    }
                }
            }
        }
        f
    }

    fn psnr(a: &VideoFrame, b: &VideoFrame) -> f64 {
        let mse = a
            .y()
            .iter()
            .zip(b.y())
            .map(|(&p, &q)| (f64::from(p) - f64::from(q)).powi(2))
            .sum::<f64>()
            / a.y().len() as f64;
        10.0 * (255.0f64.powi(2) / mse.max(1e-9)).log10()
    }

    /// Typing on a 1280x720 screen at 5 fps within `bps`: the luma PSNR of the last second's
    /// pictures.
    fn typing_psnr_at(codec: VideoCodec, content: Content, bps: u32) -> f64 {
        let (w, h) = (1280, 720);
        let mut enc = encoder_for(codec, bps, 5.0, content).unwrap();
        let mut dec = decoder(codec).unwrap();
        let mut scores = Vec::new();
        let mut last = None;
        for n in 0..40usize {
            let f = text_screen(w, h, 2000 + n * 40);
            if let Some(e) = enc.encode(&f, n == 0).unwrap() {
                if let Some(out) = dec.decode(&e.data).unwrap() {
                    last = Some(out);
                }
            }
            if n >= 35 {
                scores.push(psnr(&f, last.as_ref().expect("a picture")));
            }
        }
        scores.iter().sum::<f64>() / scores.len() as f64
    }

    #[test]
    fn text_on_a_shared_screen_stays_sharper_with_detail_tuning() {
        // Typing on a 1280x720 screen at 5 fps: luma PSNR of the last second, camera tuning
        // against screen tuning. VP8's screen-content mode wins where a share usually sits;
        // H.264 keeps one tuning (its screen-content mode measured worse: see Content::Detail).
        for codec in AVAILABLE {
            for bps in [150_000, 300_000, 800_000] {
                let motion = typing_psnr_at(*codec, Content::Motion, bps);
                let detail = typing_psnr_at(*codec, Content::Detail, bps);
                eprintln!(
                    "{codec:?} at {} kbit/s: {motion:.1} dB camera tuning, {detail:.1} dB screen tuning",
                    bps / 1000
                );
                assert!(
                    detail >= motion - 0.5,
                    "{codec:?} at {bps}: {detail} vs {motion}"
                );
                if *codec == VideoCodec::Vp8 && bps == 300_000 {
                    assert!(
                        detail >= motion + 1.5,
                        "VP8's screen mode: {detail} vs {motion}"
                    );
                }
            }
        }
    }

    fn round_trip(codec: VideoCodec, w: usize, h: usize) {
        let mut enc = encoder(codec, 1_500_000, 30.0).unwrap();
        let mut dec = decoder(codec).unwrap();
        let mut read = Vec::new();
        for n in 0..20u32 {
            let f = pattern::frame(
                w,
                h,
                pattern::Stamp {
                    frame: n,
                    capture_us: n * 10,
                },
                0,
            );
            let Some(e) = enc.encode(&f, n == 0).unwrap() else {
                continue;
            };
            assert_eq!(e.keyframe, n == 0, "frame {n} keyframe flag");
            if let Some(out) = dec.decode(&e.data).unwrap() {
                assert_eq!((out.width, out.height), (w, h));
                read.push(pattern::read(&out).map(|s| s.frame));
            }
        }
        let got: Vec<u32> = read.iter().flatten().copied().collect();
        assert!(got.len() >= 18, "{codec:?}: decoded and read {got:?}");
        assert!(got.windows(2).all(|p| p[1] == p[0] + 1), "{got:?}");
    }

    #[test]
    fn h264_round_trip_carries_the_pattern() {
        round_trip(VideoCodec::H264, 640, 480);
        round_trip(VideoCodec::H264, 320, 240);
    }

    #[test]
    #[cfg(vp8)]
    fn vp8_round_trip_carries_the_pattern() {
        round_trip(VideoCodec::Vp8, 640, 480);
    }

    /// What a receiver of a simulcast camera gets from an SFU that switches layers: one
    /// stream, changing picture size at a keyframe. Every picture decodes, in its new size.
    #[test]
    fn one_decoder_follows_a_stream_that_changes_size_at_keyframes() {
        for &codec in AVAILABLE {
            let mut full = encoder(codec, 500_000, 10.0).unwrap();
            let mut half = encoder(codec, 150_000, 10.0).unwrap();
            let mut dec = decoder(codec).unwrap();
            let mut sizes = Vec::new();
            for n in 0..40u32 {
                let f = pattern::numbered(640, 480, n);
                let h = f.half();
                // Both encoders run all along, as a simulcast sender's do; the stream switches
                // to the other one at its keyframe, every ten frames.
                let use_half = (n / 10) % 2 == 1;
                let switch = n % 10 == 0;
                let ef = full.encode(&f, switch && !use_half).unwrap();
                let eh = half.encode(&h, switch && use_half).unwrap();
                let Some(e) = (if use_half { eh } else { ef }) else {
                    continue;
                };
                let out = dec
                    .decode(&e.data)
                    .unwrap_or_else(|err| panic!("{codec:?} frame {n}: {err}"));
                if let Some(out) = out {
                    let stamp = pattern::read(&out).map(|s| s.frame);
                    assert_eq!(stamp, Some(n), "{codec:?} frame {n}");
                    sizes.push(out.width);
                }
            }
            assert!(sizes.len() >= 38, "{codec:?}: {sizes:?}");
            assert!(sizes.contains(&320) && sizes.contains(&640), "{sizes:?}");
        }
    }

    #[test]
    fn forced_keyframe_and_bitrate_change() {
        for &codec in AVAILABLE {
            let mut enc = encoder(codec, 500_000, 30.0).unwrap();
            let f = |n| {
                pattern::frame(
                    320,
                    240,
                    pattern::Stamp {
                        frame: n,
                        capture_us: 0,
                    },
                    0,
                )
            };
            assert!(enc.encode(&f(0), true).unwrap().unwrap().keyframe);
            assert!(!enc.encode(&f(1), false).unwrap().unwrap().keyframe);
            enc.set_bitrate(2_000_000);
            assert!(!enc.encode(&f(2), false).unwrap().unwrap().keyframe);
            enc.set_bitrate(200_000);
            let k = enc.encode(&f(3), true).unwrap().unwrap();
            assert!(k.keyframe, "{codec:?}");
        }
    }

    /// An encoder readied ahead (at the picture's size, or at another one) encodes the first
    /// picture as one that was not, also when its bitrate changed in between (the send loop
    /// readies it at the start bitrate, then sets the link's): a keyframe that decodes to the
    /// same numbered pattern; the same bytes, but for VP8 lowered in between (within 10 %).
    #[test]
    fn a_prepared_encoder_encodes_its_first_picture_as_an_unprepared_one() {
        for &codec in AVAILABLE {
            let f = pattern::numbered(640, 480, 7);
            let first = |prepared: Option<(usize, usize)>, bps: u32| {
                let mut enc = encoder(codec, 800_000, 30.0).unwrap();
                if let Some((w, h)) = prepared {
                    enc.prepare(w, h).unwrap();
                }
                enc.set_bitrate(bps);
                let e = enc.encode(&f, true).unwrap().expect("a first picture");
                assert!(e.keyframe, "{codec:?} {prepared:?}");
                let out = decoder(codec).unwrap().decode(&e.data).unwrap().unwrap();
                assert_eq!(pattern::read(&out).map(|s| s.frame), Some(7), "{codec:?}");
                (out.width, e.data)
            };
            for bps in [800_000, 1_200_000, 300_000] {
                let plain = first(None, bps);
                assert_eq!(plain.0, 640);
                for at in [(640, 480), (320, 240)] {
                    let prepared = first(Some(at), bps);
                    if bps >= 800_000 {
                        assert_eq!(prepared, plain, "{codec:?} at {bps}: prepared at {at:?}");
                    } else {
                        // libvpx lowers a made context's rate-control buffer to a lower
                        // bitrate's, not to where a context made at it starts: the same
                        // picture, a few per cent more bits (as after any cut in a call).
                        let (a, b) = (prepared.1.len() as f64, plain.1.len() as f64);
                        assert!((a / b - 1.0).abs() < 0.1, "{codec:?} at {bps}: {a} / {b}");
                    }
                }
            }
        }
    }

    /// VP8's `prepare` makes libvpx's context at the size asked, once (the test above would
    /// pass with a `prepare` that did nothing).
    #[test]
    #[cfg(vp8)]
    fn vp8_prepare_makes_its_context_ahead_at_that_size() {
        let mut enc = Vp8Encoder::new(800_000, 30.0);
        assert!(enc.ctx.is_none(), "made only when asked");
        enc.prepare(640, 480).unwrap();
        assert!(enc.ctx.is_some());
        assert_eq!(enc.size, (640, 480));
        let made = enc.ctx.as_ref().map(|(c, _)| &*c.0 as *const _);
        enc.prepare(640, 480).unwrap();
        assert_eq!(
            enc.ctx.as_ref().map(|(c, _)| &*c.0 as *const _),
            made,
            "kept"
        );
        enc.prepare(320, 240).unwrap();
        assert_eq!(enc.size, (320, 240), "made again at another size");
    }

    #[test]
    fn odd_sizes_are_cropped_to_even() {
        for &codec in AVAILABLE {
            // Encode an odd-sized picture the way another implementation might send one.
            let (w, h) = (322usize, 241usize);
            let mut enc = encoder(codec, 800_000, 30.0).unwrap();
            let mut dec = decoder(codec).unwrap();
            let src = pattern::frame(
                (w + 1) & !1,
                (h + 1) & !1,
                pattern::Stamp {
                    frame: 1,
                    capture_us: 0,
                },
                0,
            );
            let e = enc.encode(&src, true).unwrap().unwrap();
            let out = dec.decode(&e.data).unwrap().unwrap();
            assert!(
                out.width.is_multiple_of(2) && out.height.is_multiple_of(2),
                "{codec:?}: {out:?}"
            );
            // And the UI conversions accept what comes out.
            crate::convert::to_jpeg(&out, 70).unwrap();
        }
        // Odd planes straight from a decoder's buffers.
        let y = vec![100u8; 321 * 241];
        let c = vec![128u8; 161 * 121];
        let f = VideoFrame::from_planes(321, 241, &y, 321, &c, 161, &c, 161);
        assert_eq!((f.width, f.height), (320, 240));
        crate::convert::to_jpeg(&f, 70).unwrap();
        assert_eq!(crate::convert::to_rgba(&f).len(), 320 * 240 * 4);
    }

    /// A baseline-profile sequence parameter set announcing `mbs_w` x `mbs_h` macroblocks.
    fn crafted_sps(mbs_w: u32, mbs_h: u32) -> Vec<u8> {
        use h264_reader::rbsp::{BitWrite, BitWriter};
        let mut w = BitWriter::new(Vec::new());
        w.write::<8, u8>(66).unwrap(); // profile_idc: baseline
        w.write::<8, u8>(0xc0).unwrap(); // constraint flags
        w.write::<8, u8>(62).unwrap(); // level_idc: 6.2, the largest pictures H.264 has
        w.write_ue(0).unwrap(); // seq_parameter_set_id
        w.write_ue(0).unwrap(); // log2_max_frame_num_minus4
        w.write_ue(2).unwrap(); // pic_order_cnt_type
        w.write_ue(1).unwrap(); // max_num_ref_frames
        w.write_bit(false).unwrap(); // gaps_in_frame_num_value_allowed_flag
        w.write_ue(mbs_w - 1).unwrap();
        w.write_ue(mbs_h - 1).unwrap();
        w.write_bit(true).unwrap(); // frame_mbs_only_flag
        w.write_bit(true).unwrap(); // direct_8x8_inference_flag
        w.write_bit(false).unwrap(); // frame_cropping_flag
        w.write_bit(false).unwrap(); // vui_parameters_present_flag
        w.write_rbsp_trailing_bits().unwrap();
        // Emulation prevention: after two zero bytes, a byte of 3 or less gets a 3 in front.
        let mut nal = vec![0, 0, 0, 1, 0x67];
        let mut zeros = 0;
        for b in w.into_writer() {
            if zeros >= 2 && b <= 3 {
                nal.push(3);
                zeros = 0;
            }
            zeros = if b == 0 { zeros + 1 } else { 0 };
            nal.push(b);
        }
        nal
    }

    fn keyframe_320x240(codec: VideoCodec) -> Vec<u8> {
        let mut enc = encoder(codec, 800_000, 30.0).unwrap();
        let f = pattern::frame(
            320,
            240,
            pattern::Stamp {
                frame: 7,
                capture_us: 0,
            },
            0,
        );
        enc.encode(&f, true).unwrap().unwrap().data.to_vec()
    }

    fn still_decodes(dec: &mut Box<dyn VideoDecoder>, frame: &[u8]) {
        let out = dec.decode(frame).unwrap().expect("a picture");
        assert_eq!(pattern::read(&out).map(|s| s.frame), Some(7));
    }

    #[test]
    fn oversize_h264_parameter_set_is_refused_before_decoding() {
        let real = keyframe_320x240(VideoCodec::H264);
        // The real frame's own parameter set says 20x15 macroblocks; a crafted one 8192x4352
        // pixels (the most any H.264 level allows) in front of the same picture data.
        let crafted = crafted_sps(512, 272);
        assert_eq!(
            crate::peek::announced_size(VideoCodec::H264, &crafted).unwrap(),
            Some((8192, 4352))
        );
        // Beyond every level: refused by the parameter set reader itself, worded.
        let e = crate::peek::announced_size(VideoCodec::H264, &crafted_sps(1024, 1024));
        assert!(e.unwrap_err().to_string().contains("refused"));
        let attack: Vec<u8> = crate::peek::nal_units(&real)
            .flat_map(|n| {
                let n = if n[0] & 0x1f == 7 { &crafted[4..] } else { n };
                [&[0u8, 0, 0, 1][..], n].concat()
            })
            .collect();
        let mut dec = decoder(VideoCodec::H264).unwrap();
        let e = dec.decode(&attack).unwrap_err().to_string();
        assert!(e.contains("8192x4352"), "{e}");
        // A parameter set within bounds passes the check (the real one does, too).
        assert!(check_announced(VideoCodec::H264, &crafted_sps(256, 144)).is_ok());
        // Nothing of the refused frame reached the decoder: the real stream decodes.
        still_decodes(&mut dec, &real);
    }

    #[test]
    #[cfg(vp8)]
    fn oversize_vp8_key_frame_is_refused_before_decoding() {
        let real = keyframe_320x240(VideoCodec::Vp8);
        let mut attack = real.clone();
        // 16383x16383 (14-bit fields, no scaling) in the key frame header.
        attack[6..10].copy_from_slice(&[0xff, 0x3f, 0xff, 0x3f]);
        let mut dec = decoder(VideoCodec::Vp8).unwrap();
        let e = dec.decode(&attack).unwrap_err().to_string();
        assert!(e.contains("16383x16383"), "{e}");
        still_decodes(&mut dec, &real);
    }

    #[test]
    fn garbage_is_an_error_not_a_crash() {
        for &codec in AVAILABLE {
            let mut dec = decoder(codec).unwrap();
            for junk in [&[][..], &[0, 0, 0, 1, 0xff, 0xff][..], &[0x9d; 100][..]] {
                let _ = dec.decode(junk); // any Result; what matters is no panic/abort
            }
            // And it still decodes a real stream afterwards.
            let mut enc = encoder(codec, 800_000, 30.0).unwrap();
            let f = pattern::frame(
                320,
                240,
                pattern::Stamp {
                    frame: 5,
                    capture_us: 0,
                },
                0,
            );
            let e = enc.encode(&f, true).unwrap().unwrap();
            let out = dec.decode(&e.data).unwrap().expect("a picture");
            assert_eq!(pattern::read(&out).map(|s| s.frame), Some(5), "{codec:?}");
        }
    }
}
