//! The send side: one video thread (captured frame → one encoder per codec in use → every
//! track on that codec) and one audio thread (20 ms frames → Opus → every audio track).

use super::ladder::Ladder;
use super::{FrameSource, Layer, MediaHub, Scale, Stream, SHARE_FORMAT};
use crate::stats::Phase;
use bytes::Bytes;
use confab_media::audio::AudioEncoder;
use confab_media::processing::{ProcessingSettings, Processor};
use confab_media::video::{self, VideoCodec, VideoEncoder};
use confab_media::AudioFrame;
use rtc::media::Sample;
use rtc::rtp::extension::HeaderExtension;
use rtc::shared::marshal::{Marshal, MarshalSize};
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::time::{Duration, Instant};
use webrtc::media_stream::track_local::static_sample::TrackLocalStaticSample;

/// A video track to write, as copied out of the outputs (tracks are `Arc`s: no lock is held
/// while writing).
struct Target {
    link: super::LinkId,
    layer: Option<(Layer, String)>,
    codec: VideoCodec,
    track: Arc<TrackLocalStaticSample>,
    ssrc: u32,
    pt: u8,
    line: Arc<super::LineReading>,
    estimate: f64,
    /// What waits in its link's pacer, ms.
    queue_ms: u32,
    /// The picture size it gets: its simulcast layer's, or what its link carries.
    scale: Scale,
}

/// A simulcast camera's half-size encoding gets this share of what the link carries (a
/// quarter of the pixels), within these bounds; the full-size one the rest. And never more
/// than [`HALF_OF_FULL`] of what the full-size encoder actually puts out: a simple picture
/// needs fewer bits than its target, and a half layer that costs as much as the full one
/// helps no receiver.
const HALF_SHARE: f64 = 0.25;
const HALF_BITRATE: (u32, u32) = (30_000, 400_000);
const HALF_OF_FULL: f64 = 0.35;
/// A link's pacer holding more than this (ms at its rate) skips pictures.
const PUSHBACK_MS: u32 = 300;
/// The least any full-size encoder is asked for.
const FULL_MIN_BITRATE: u32 = 100_000;

/// What an encoder put out over the last second or so, bits/s.
#[derive(Default)]
struct OutputRate {
    since: Option<Instant>,
    bytes: usize,
    bps: Option<f64>,
}

impl OutputRate {
    fn add(&mut self, bytes: usize, now: Instant) {
        let since = *self.since.get_or_insert(now);
        self.bytes += bytes;
        let span = now.saturating_duration_since(since).as_secs_f64();
        if span >= 1.0 {
            self.bps = Some(self.bytes as f64 * 8.0 / span);
            self.bytes = 0;
            self.since = Some(now);
        }
    }
}

/// The RTP stream id and media id header extensions (RFC 8852, RFC 8843): a short string each.
struct SdesItem(String);

impl MarshalSize for SdesItem {
    fn marshal_size(&self) -> usize {
        self.0.len()
    }
}

impl Marshal for SdesItem {
    fn marshal_to(&self, buf: &mut [u8]) -> rtc::shared::error::Result<usize> {
        let n = self.0.len();
        match buf.get_mut(..n) {
            Some(b) => {
                b.copy_from_slice(self.0.as_bytes());
                Ok(n)
            }
            None => Err(rtc::shared::error::Error::ErrBufferTooSmall),
        }
    }
}

fn sdes(uri: &'static str, value: &str) -> HeaderExtension {
    HeaderExtension::Custom {
        uri: uri.into(),
        extension: Box::new(SdesItem(value.to_owned())),
    }
}

impl MediaHub {
    /// What one track asks of its encoder, bits/s (`None`: its link has no estimate yet): the
    /// link's estimate less room for audio. While a screen is shared the share takes 60 % of
    /// what the link carries (detail needs the bits) and the camera 30 %. A simulcast camera's
    /// two encodings split the camera's part ([`HALF_SHARE`]).
    fn wanted_bits(&self, t: &Target, stream: Stream) -> Option<u32> {
        if t.estimate <= 0.0 {
            return None;
        }
        let part = match (stream, self.sharing()) {
            (Stream::Camera, false) => 0.9,
            (Stream::Camera, true) => 0.3,
            (Stream::Share, _) => 0.6,
        };
        let usable = ((t.estimate * part) as u32).saturating_sub(48_000);
        let half = ((usable as f64 * HALF_SHARE) as u32).clamp(HALF_BITRATE.0, HALF_BITRATE.1);
        Some(match &t.layer {
            None => usable,
            Some((l, _)) if l.scale == Scale::Full => usable.saturating_sub(half),
            Some(_) => half,
        })
    }

    /// The encoder's target for the tracks it feeds: the least any of them asks, capped by the
    /// configured maximum.
    fn video_target(&self, targets: &[&Target], stream: Stream, scale: Scale) -> u32 {
        let least = targets
            .iter()
            .filter_map(|t| self.wanted_bits(t, stream))
            .min();
        let target = match (least, scale) {
            (Some(bits), _) => bits,
            (None, Scale::Full) => match stream {
                Stream::Camera => self.settings.start_bitrate,
                Stream::Share => self.settings.start_bitrate.max(800_000),
            },
            (None, _) => HALF_BITRATE.0,
        };
        target.min(self.settings.max_bitrate)
    }

    /// Notes `phase` on the set-up timeline of every link on `codec` not in `done` yet.
    fn mark_first(
        &self,
        done: &mut Vec<super::LinkId>,
        targets: &[Target],
        codec: VideoCodec,
        phase: Phase,
    ) {
        for t in targets.iter().filter(|t| t.codec == codec) {
            if !done.contains(&t.link) {
                done.push(t.link);
                self.mark(t.link, phase);
            }
        }
    }

    /// One video stream's thread: its frames (camera or shared screen) → one encoder per codec
    /// in use → that stream's track on every link.
    pub(super) fn video_send_loop(self: Arc<Self>, stream: Stream) {
        // One encoder per codec and picture size in use.
        let mut encoders: HashMap<(VideoCodec, Scale), (Box<dyn VideoEncoder>, u64)> =
            HashMap::new();
        let mut full_output: HashMap<VideoCodec, OutputRate> = HashMap::new();
        // The picture size each link without simulcast layers gets (a camera only: a shared
        // screen keeps its size, its detail, and lowers its rate instead).
        let mut ladders: HashMap<super::LinkId, Ladder> = HashMap::new();
        // Keyframes owed, by encoder: kept until that encoder has made one (it may skip a
        // picture while its links' pacers are full).
        let mut owed: Vec<(VideoCodec, Scale)> = Vec::new();
        let mut seen = 0u64;
        // Links whose first picture was encoded / sent (their set-up timeline has it).
        let (mut encoded_for, mut sent_for) = (Vec::new(), Vec::new());
        let (bus, fps, local) = match stream {
            Stream::Camera => (&self.bus, self.settings.format.fps, FrameSource::Local),
            Stream::Share => (&self.share_bus, SHARE_FORMAT.fps, FrameSource::LocalShare),
        };
        while !self.stop.load(Ordering::Relaxed) {
            let Some(frame) = bus.next(&mut seen, Duration::from_millis(200)) else {
                continue;
            };
            self.sink.frame(&local, &frame);
            if stream == Stream::Camera && !self.send_video.load(Ordering::Relaxed) {
                continue;
            }
            // Keyframes owed: by codec, and by picture size (`None`: every size).
            type Owed = Vec<(VideoCodec, Option<Scale>)>;
            let (mut targets, wanted, warm): (Vec<Target>, Owed, Vec<VideoCodec>) = {
                let mut o = self.outputs.lock();
                let warm = match stream {
                    Stream::Camera => o.warm.iter().map(|(_, c)| *c).collect(),
                    Stream::Share => Vec::new(),
                };
                let t: Vec<Target> = o
                    .video
                    .iter()
                    .filter(|v| v.stream == stream)
                    .map(|v| Target {
                        link: v.link,
                        layer: v.layer.clone(),
                        codec: v.codec,
                        track: v.track.clone(),
                        ssrc: v.ssrc,
                        pt: v.pt,
                        line: v.line.clone(),
                        estimate: v.line.estimate_bps(),
                        queue_ms: v.line.pacer_queue_ms(),
                        scale: v.layer.as_ref().map_or(Scale::Full, |(l, _)| l.scale),
                    })
                    .collect();
                let k = if t.is_empty() {
                    Vec::new()
                } else {
                    let (mine, others): (Vec<_>, Vec<_>) =
                        o.keyframe.drain(..).partition(|(s, _, _)| *s == stream);
                    o.keyframe = others;
                    mine.into_iter().map(|(_, c, scale)| (c, scale)).collect()
                };
                (t, k, warm)
            };
            for codec in &warm {
                if let std::collections::hash_map::Entry::Vacant(v) =
                    encoders.entry((*codec, Scale::Full))
                {
                    // Made now, at this picture's size: its first picture is then only an
                    // encode. (Not run once: at 720p a keyframe costs as much as making the
                    // encoder, and that encode would delay the real first picture.)
                    let started = Instant::now();
                    match video::encoder(*codec, self.settings.start_bitrate, fps) {
                        Ok(mut enc) => {
                            // Kept unready if it cannot be readied: its first encode then
                            // tries again, and says why where it fails.
                            if let Err(e) = enc.prepare(frame.width, frame.height) {
                                tracing::debug!("the {} encoder is not ready: {e}", codec.name());
                            }
                            let ms = started.elapsed().as_secs_f64() * 1000.0;
                            tracing::debug!(codec = codec.name(), ms, "set-up: encoder warmed up");
                            v.insert((enc, 0));
                        }
                        Err(e) => tracing::error!("cannot start the {} encoder: {e}", codec.name()),
                    }
                }
            }
            if targets.is_empty() {
                continue;
            }
            encoded_for.retain(|l| targets.iter().any(|t| t.link == *l));
            sent_for.retain(|l| targets.iter().any(|t| t.link == *l));
            ladders.retain(|l, _| targets.iter().any(|t| t.link == *l));
            if stream == Stream::Camera {
                let now = Instant::now();
                for t in targets.iter_mut().filter(|t| t.layer.is_none()) {
                    let Some(bits) = self.wanted_bits(t, stream) else {
                        continue;
                    };
                    let ladder = ladders.entry(t.link).or_default();
                    let was = ladder.scale();
                    t.scale = ladder.choose(bits, frame.width, frame.height, t.line.heard(), now);
                    if t.scale != was {
                        tracing::debug!(link = t.link, scale = ?t.scale, bits, "camera picture size");
                        // The encoder it moves to may be running for others: this link's
                        // receiver needs a keyframe at the new size.
                        if !owed.contains(&(t.codec, t.scale)) {
                            owed.push((t.codec, t.scale));
                        }
                    }
                }
            }
            for (codec, size) in wanted {
                for scale in
                    size.map_or(vec![Scale::Full, Scale::Half, Scale::Quarter], |s| vec![s])
                {
                    if !owed.contains(&(codec, scale)) {
                        owed.push((codec, scale));
                    }
                }
            }
            // Made once a frame, when a link wants a smaller picture.
            let (mut half, mut quarter) = (None, None);
            for (codec, scale) in [VideoCodec::H264, VideoCodec::Vp8]
                .into_iter()
                .flat_map(|c| [(c, Scale::Full), (c, Scale::Half), (c, Scale::Quarter)])
            {
                let fed: Vec<&Target> = targets
                    .iter()
                    .filter(|t| t.codec == codec && t.scale == scale)
                    .collect();
                if fed.is_empty() {
                    if !(scale == Scale::Full && warm.contains(&codec)) {
                        encoders.remove(&(codec, scale));
                        owed.retain(|o| *o != (codec, scale));
                        if scale == Scale::Full {
                            full_output.remove(&codec);
                        }
                    }
                    continue;
                }
                // A link whose pacer still holds more than the line can send soon gets no new
                // picture: the line is narrower than the pictures, and queueing more would
                // only add delay.
                if fed.iter().any(|t| t.queue_ms > PUSHBACK_MS) {
                    continue;
                }
                let mut target = self.video_target(&fed, stream, scale);
                let floor = match scale {
                    Scale::Full => FULL_MIN_BITRATE,
                    Scale::Half | Scale::Quarter => HALF_BITRATE.0,
                };
                if let (Scale::Half, true, Some(full)) = (
                    scale,
                    fed.iter().any(|t| t.layer.is_some()),
                    full_output.get(&codec).and_then(|r| r.bps),
                ) {
                    target = target.min((full * HALF_OF_FULL) as u32);
                }
                let halved = || Arc::new(frame.half());
                let picture = match scale {
                    Scale::Full => &frame,
                    Scale::Half => &*half.get_or_insert_with(halved),
                    Scale::Quarter => &*quarter
                        .get_or_insert_with(|| Arc::new(half.get_or_insert_with(halved).half())),
                };
                let entry = match encoders.entry((codec, scale)) {
                    std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
                    std::collections::hash_map::Entry::Vacant(v) => {
                        let content = match stream {
                            Stream::Camera => video::Content::Motion,
                            Stream::Share => video::Content::Detail,
                        };
                        match video::encoder_for(codec, self.settings.start_bitrate, fps, content) {
                            Ok(enc) => v.insert((enc, 0)),
                            Err(e) => {
                                tracing::error!("cannot start the {} encoder: {e}", codec.name());
                                continue;
                            }
                        }
                    }
                };
                let (enc, last_ts) = entry;
                enc.set_bitrate(target.max(floor));
                let key = owed.contains(&(codec, scale));
                let encoded = match enc.encode(picture, key) {
                    Ok(Some(e)) => {
                        if e.keyframe {
                            tracing::trace!(
                                ?scale,
                                bytes = e.data.len(),
                                target,
                                "keyframe encoded"
                            );
                        }
                        if key {
                            owed.retain(|o| *o != (codec, scale));
                        }
                        if scale == Scale::Full {
                            full_output
                                .entry(codec)
                                .or_default()
                                .add(e.data.len(), Instant::now());
                        }
                        e
                    }
                    Ok(None) => continue,
                    Err(e) => {
                        tracing::warn!("encoding failed: {e}");
                        continue;
                    }
                };
                let duration = if *last_ts == 0 || frame.timestamp_us <= *last_ts {
                    Duration::from_secs_f64(1.0 / fps.max(1.0) as f64)
                } else {
                    Duration::from_micros((frame.timestamp_us - *last_ts).min(1_000_000))
                };
                *last_ts = frame.timestamp_us;
                if stream == Stream::Camera && scale == Scale::Full {
                    self.mark_first(&mut encoded_for, &targets, codec, Phase::FirstEncoded);
                }
                let sample = Sample {
                    data: Bytes::from(encoded.data),
                    duration,
                    ..Sample::new(Instant::now())
                };
                for t in fed {
                    if stream == Stream::Camera {
                        t.line.set_camera_divisor(scale.divisor() as u32);
                    }
                    let mut writer = t.track.sample_writer(t.ssrc, t.pt);
                    if let Some((layer, mid)) = &t.layer {
                        writer = writer
                            .with_extension(sdes(rtc::sdp::extmap::SDES_MID_URI, mid))
                            .with_extension(sdes(
                                rtc::sdp::extmap::SDES_RTP_STREAM_ID_URI,
                                layer.rid,
                            ));
                    }
                    if let Err(e) = self.rt.block_on(writer.write_sample(&sample)) {
                        tracing::debug!("video write failed: {e}");
                    }
                }
                if stream == Stream::Camera && scale == Scale::Full {
                    self.mark_first(&mut sent_for, &targets, codec, Phase::FirstSent);
                }
            }
        }
    }

    pub(super) fn audio_send_loop(
        self: Arc<Self>,
        new_rx: Receiver<Receiver<AudioFrame>>,
        new_processing: Receiver<ProcessingSettings>,
    ) {
        let mut enc = match AudioEncoder::new(self.settings.audio_bitrate) {
            Ok(e) => e,
            Err(e) => {
                tracing::error!("cannot start the Opus encoder: {e}");
                return;
            }
        };
        // Echo cancellation, noise suppression and gain, on this thread; the playout clock
        // feeds it what goes to the speaker through a lock-free ring.
        let mut processor = Processor::new(self.settings.processing);
        let _ = self.new_render_feed.try_send(processor.render_feed());
        let mut published = Instant::now();
        let mut source: Option<Receiver<AudioFrame>> = None;
        while !self.stop.load(Ordering::Relaxed) {
            while let Ok(rx) = new_rx.try_recv() {
                source = Some(rx);
                // What queued while there was no microphone is stale as an echo reference.
                let _ = self.new_render_feed.try_send(processor.render_feed());
            }
            while let Ok(p) = new_processing.try_recv() {
                processor.set_settings(p);
            }
            if published.elapsed() >= Duration::from_secs(1) {
                published = Instant::now();
                // The echo path's delay as far as we know it: the speaker's buffering plus one
                // 20 ms frame on each side (a hint; the echo canceller also finds it itself).
                let speaker = self.speaker_latency_ms.load(Ordering::Relaxed);
                if let Err(e) = processor.set_delay_ms(speaker + 40) {
                    tracing::debug!("{e}");
                }
                *self.processing_stats.lock() = processor.stats();
                // One encoder feeds every link: it expects the loss of the worst.
                let worst = self
                    .outputs
                    .lock()
                    .audio
                    .iter()
                    .map(|o| o.line.send_loss_pct())
                    .fold(0.0, f64::max);
                if let Err(e) = enc.set_reported_loss(worst) {
                    tracing::debug!("{e}");
                }
            }
            let Some(rx) = &source else {
                std::thread::sleep(Duration::from_millis(20));
                continue;
            };
            let mut frame = match rx.recv_timeout(Duration::from_millis(100)) {
                Ok(f) => f,
                Err(RecvTimeoutError::Timeout) => continue,
                Err(RecvTimeoutError::Disconnected) => {
                    source = None;
                    self.local_level.store(0f64.to_bits(), Ordering::Relaxed);
                    continue;
                }
            };
            // Processed even while muted, so the echo canceller stays converged; the level
            // (the speaking ring) is that of the cleaned signal, so noise does not light it.
            processor.capture(&mut frame);
            let sending = self.send_audio.load(Ordering::Relaxed);
            let level = if sending {
                confab_media::tone::level(&frame)
            } else {
                0.0
            };
            self.local_level.store(level.to_bits(), Ordering::Relaxed);
            if !sending {
                continue;
            }
            let outs: Vec<(Arc<TrackLocalStaticSample>, u32, u8)> = self
                .outputs
                .lock()
                .audio
                .iter()
                .map(|o| (o.track.clone(), o.ssrc, o.pt))
                .collect();
            if outs.is_empty() {
                continue;
            }
            let packet = match enc.encode(&frame) {
                Ok(p) => p,
                Err(e) => {
                    tracing::warn!("{e}");
                    continue;
                }
            };
            // A DTX frame (silence) is not sent: an empty sample moves the RTP timestamp on by
            // 20 ms without a packet or a sequence number.
            let data = if confab_media::audio::is_dtx(&packet) {
                Bytes::new()
            } else {
                Bytes::from(packet)
            };
            let sample = Sample {
                data,
                duration: Duration::from_millis(20),
                ..Sample::new(Instant::now())
            };
            for (track, ssrc, pt) in outs {
                if let Err(e) = self
                    .rt
                    .block_on(track.sample_writer(ssrc, pt).write_sample(&sample))
                {
                    tracing::debug!("audio write failed: {e}");
                }
            }
        }
    }
}
