//! The send side: one video thread (captured frame → one encoder per codec in use → every
//! track on that codec) and one audio thread (20 ms frames → Opus → every audio track).

use super::{FrameSource, MediaHub, Stream, SHARE_FORMAT};
use crate::stats::Phase;
use bytes::Bytes;
use confab_media::audio::AudioEncoder;
use confab_media::processing::{ProcessingSettings, Processor};
use confab_media::video::{self, VideoCodec, VideoEncoder};
use confab_media::AudioFrame;
use rtc::media::Sample;
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
    codec: VideoCodec,
    track: Arc<TrackLocalStaticSample>,
    ssrc: u32,
    pt: u8,
    estimate: f64,
}

impl MediaHub {
    /// The encoder's target for a codec: the lowest estimate of the links on it, less room for
    /// audio, capped by the configured maximum. While a screen is shared the share takes 60 %
    /// of what the link carries (detail needs the bits) and the camera 30 %.
    fn video_target(&self, targets: &[Target], codec: VideoCodec, stream: Stream) -> u32 {
        let estimate = targets
            .iter()
            .filter(|t| t.codec == codec && t.estimate > 0.0)
            .map(|t| t.estimate)
            .fold(f64::INFINITY, f64::min);
        let part = match (stream, self.sharing()) {
            (Stream::Camera, false) => 0.9,
            (Stream::Camera, true) => 0.3,
            (Stream::Share, _) => 0.6,
        };
        if estimate.is_finite() {
            ((estimate * part) as u32)
                .saturating_sub(48_000)
                .min(self.settings.max_bitrate)
        } else {
            match stream {
                Stream::Camera => self.settings.start_bitrate,
                Stream::Share => self.settings.start_bitrate.max(800_000),
            }
        }
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
        let mut encoders: HashMap<VideoCodec, (Box<dyn VideoEncoder>, u64)> = HashMap::new();
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
            let (targets, wanted, warm): (Vec<Target>, Vec<VideoCodec>, Vec<VideoCodec>) = {
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
                        codec: v.codec,
                        track: v.track.clone(),
                        ssrc: v.ssrc,
                        pt: v.pt,
                        estimate: f64::from_bits(v.estimate.load(Ordering::Relaxed)),
                    })
                    .collect();
                let k = if t.is_empty() {
                    Vec::new()
                } else {
                    let (mine, others): (Vec<_>, Vec<_>) =
                        o.keyframe.drain(..).partition(|(s, _)| *s == stream);
                    o.keyframe = others;
                    mine.into_iter().map(|(_, c)| c).collect()
                };
                (t, k, warm)
            };
            for codec in &warm {
                if let std::collections::hash_map::Entry::Vacant(v) = encoders.entry(*codec) {
                    // Made now: its first picture is then only an encode. (Not run once: at
                    // 720p a keyframe costs as much as making the encoder, and that encode
                    // would delay the real first picture.)
                    let started = Instant::now();
                    match video::encoder(*codec, self.settings.start_bitrate, fps) {
                        Ok(enc) => {
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
            for codec in [VideoCodec::H264, VideoCodec::Vp8] {
                if !targets.iter().any(|t| t.codec == codec) {
                    if !warm.contains(&codec) {
                        encoders.remove(&codec);
                    }
                    continue;
                }
                let target = self.video_target(&targets, codec, stream);
                let entry = match encoders.entry(codec) {
                    std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
                    std::collections::hash_map::Entry::Vacant(v) => {
                        match video::encoder(codec, self.settings.start_bitrate, fps) {
                            Ok(enc) => v.insert((enc, 0)),
                            Err(e) => {
                                tracing::error!("cannot start the {} encoder: {e}", codec.name());
                                continue;
                            }
                        }
                    }
                };
                let (enc, last_ts) = entry;
                enc.set_bitrate(target.max(100_000));
                let encoded = match enc.encode(&frame, wanted.contains(&codec)) {
                    Ok(Some(e)) => e,
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
                if stream == Stream::Camera {
                    self.mark_first(&mut encoded_for, &targets, codec, Phase::FirstEncoded);
                }
                let sample = Sample {
                    data: Bytes::from(encoded.data),
                    duration,
                    ..Sample::new(Instant::now())
                };
                for t in targets.iter().filter(|t| t.codec == codec) {
                    let write = t.track.sample_writer(t.ssrc, t.pt).write_sample(&sample);
                    if let Err(e) = self.rt.block_on(write) {
                        tracing::debug!("video write failed: {e}");
                    }
                }
                if stream == Stream::Camera {
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
