//! The media hub: captures once, encodes once per codec, and writes the same encoded frames to
//! every peer connection that uses that codec; receives, assembles, decodes and mixes what the
//! others send. Codec work runs on threads of its own (never on the async runtime); writes into
//! the peer connections go through the runtime's handle.
//!
//! Threads (all owned here, stopped and joined by [`MediaHub::shutdown`]): the video encoder,
//! the audio encoder, the audio playout clock, and one decoder per remote video track (owned by
//! its receive task).

use crate::stats::{AudioStats, VideoBook, VideoStats};
use bytes::Bytes;
use confab_media::assembler::{FrameAssembler, RtpIn};
use confab_media::audio::{mix_into, AudioEncoder, AudioReceiver};
use confab_media::device::{
    AudioCapture, AudioOut, AudioSourceSpec, FrameBus, VideoCapture, VideoFormat, VideoSourceSpec,
};
use confab_media::video::{self, VideoCodec, VideoEncoder};
use confab_media::{now_us, pattern, AudioFrame, MediaError, VideoFrame, FRAME_SAMPLES};
use confab_protocol::PeerId;
use rtc::media::Sample;
use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, SyncSender};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use tokio::runtime::Handle;
use webrtc::media_stream::track_local::static_sample::TrackLocalStaticSample;
use webrtc::media_stream::track_remote::{TrackRemote, TrackRemoteEvent};

/// Whose picture a frame is.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum FrameSource {
    Local,
    Remote(PeerId),
}

/// Where decoded and captured pictures go (the desktop UI; nowhere for the headless peer).
pub trait VideoSink: Send + Sync + 'static {
    fn frame(&self, source: &FrameSource, frame: &Arc<VideoFrame>);
    /// A source stopped sending pictures (camera off, peer gone).
    fn ended(&self, _source: &FrameSource) {}
}

pub struct NullSink;
impl VideoSink for NullSink {
    fn frame(&self, _: &FrameSource, _: &Arc<VideoFrame>) {}
}

/// One peer connection, for the hub's books (the peer's id may change when it reconnects).
pub type LinkId = u64;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A video track of one peer connection, fed by the encoder for its codec.
pub struct VideoOut {
    pub link: LinkId,
    pub codec: VideoCodec,
    pub track: Arc<TrackLocalStaticSample>,
    pub ssrc: u32,
    pub pt: u8,
    /// The bandwidth estimate for this link, bits/s (f64 bits), 0 = none yet.
    pub estimate: Arc<AtomicU64>,
}

pub struct AudioOutput {
    pub link: LinkId,
    pub track: Arc<TrackLocalStaticSample>,
    pub ssrc: u32,
    pub pt: u8,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resources {
    pub video_outputs: usize,
    pub audio_outputs: usize,
    pub audio_receivers: usize,
    pub video_receivers: usize,
    pub capturing_video: bool,
    pub capturing_audio: bool,
    pub speaker_open: bool,
}

pub struct MediaSettings {
    pub format: VideoFormat,
    pub start_bitrate: u32,
    pub max_bitrate: u32,
    pub audio_bitrate: i32,
}

pub struct MediaHub {
    rt: Handle,
    settings: MediaSettings,
    pub bus: Arc<FrameBus>,
    video_outs: Mutex<Vec<VideoOut>>,
    audio_outs: Mutex<Vec<AudioOutput>>,
    keyframe: Mutex<Vec<VideoCodec>>,
    send_video: AtomicBool,
    send_audio: AtomicBool,
    receivers: Mutex<HashMap<LinkId, AudioReceiver>>,
    books: Mutex<HashMap<LinkId, VideoBook>>,
    peer_of: Mutex<HashMap<LinkId, PeerId>>,
    live_video_receivers: AtomicU64,
    sink: Arc<dyn VideoSink>,
    video_capture: Mutex<Option<VideoCapture>>,
    audio_capture: Mutex<Option<AudioCapture>>,
    new_audio_rx: Mutex<SyncSender<Receiver<AudioFrame>>>,
    new_speaker: Mutex<SyncSender<AudioOut>>,
    speaker_open: AtomicBool,
    local_level: AtomicU64,
    stop: Arc<AtomicBool>,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

impl MediaHub {
    pub fn start(
        rt: Handle,
        settings: MediaSettings,
        sink: Arc<dyn VideoSink>,
    ) -> Result<Arc<Self>, MediaError> {
        let (audio_rx_tx, audio_rx_rx) = sync_channel(2);
        let (speaker_tx, speaker_rx) = sync_channel(2);
        let hub = Arc::new(MediaHub {
            rt,
            settings,
            bus: FrameBus::new(),
            video_outs: Mutex::new(Vec::new()),
            audio_outs: Mutex::new(Vec::new()),
            keyframe: Mutex::new(Vec::new()),
            send_video: AtomicBool::new(true),
            send_audio: AtomicBool::new(true),
            receivers: Mutex::new(HashMap::new()),
            books: Mutex::new(HashMap::new()),
            peer_of: Mutex::new(HashMap::new()),
            live_video_receivers: AtomicU64::new(0),
            sink,
            video_capture: Mutex::new(None),
            audio_capture: Mutex::new(None),
            new_audio_rx: Mutex::new(audio_rx_tx),
            new_speaker: Mutex::new(speaker_tx),
            speaker_open: AtomicBool::new(false),
            local_level: AtomicU64::new(0),
            stop: Arc::new(AtomicBool::new(false)),
            threads: Mutex::new(Vec::new()),
        });
        let spawn = |name: &str, f: Box<dyn FnOnce() + Send>| {
            std::thread::Builder::new()
                .name(name.into())
                .spawn(f)
                .map_err(|e| MediaError::Device(format!("cannot start the {name} thread: {e}")))
        };
        let h = hub.clone();
        let t1 = spawn("video-send", Box::new(move || h.video_send_loop()))?;
        let h = hub.clone();
        let t2 = spawn(
            "audio-send",
            Box::new(move || h.audio_send_loop(audio_rx_rx)),
        )?;
        let h = hub.clone();
        let t3 = spawn(
            "audio-playout",
            Box::new(move || h.playout_loop(speaker_rx)),
        )?;
        lock(&hub.threads).extend([t1, t2, t3]);
        Ok(hub)
    }

    /// Stops captures and threads; joins them.
    pub fn shutdown(&self) {
        self.stop.store(true, Ordering::Relaxed);
        self.bus.close();
        lock(&self.video_capture).take();
        lock(&self.audio_capture).take();
        let threads: Vec<JoinHandle<()>> = lock(&self.threads).drain(..).collect();
        for t in threads {
            let _ = t.join();
        }
    }

    // ----- devices ---------------------------------------------------------------------------

    /// Starts (or switches, or stops with `None`) the camera. The encoders keep running.
    pub fn set_video_source(&self, spec: &VideoSourceSpec) -> Result<Option<String>, MediaError> {
        let mut slot = lock(&self.video_capture);
        slot.take(); // release the old device before opening the new one (it may be the same)
        let cap = VideoCapture::start(spec, self.settings.format, self.bus.clone())?;
        let description = cap.as_ref().map(|c| c.description.clone());
        if cap.is_none() {
            self.sink.ended(&FrameSource::Local);
        }
        *slot = cap;
        Ok(description)
    }

    pub fn set_audio_source(&self, spec: &AudioSourceSpec) -> Result<Option<String>, MediaError> {
        let mut slot = lock(&self.audio_capture);
        slot.take();
        let (cap, rx) = AudioCapture::start(spec)?;
        let description = cap.as_ref().map(|c| c.description.clone());
        let _ = lock(&self.new_audio_rx).try_send(rx);
        *slot = cap;
        Ok(description)
    }

    /// Opens a speaker (`Some(None)` = the default one), or the null sink (`None`).
    pub fn set_speaker(&self, which: Option<Option<String>>) -> Result<String, MediaError> {
        let out = match which {
            None => AudioOut::null(),
            Some(name) => AudioOut::speaker(name)?,
        };
        let d = out.description.clone();
        self.speaker_open.store(!out.is_null(), Ordering::Relaxed);
        let _ = lock(&self.new_speaker).try_send(out);
        Ok(d)
    }

    pub fn stop_devices(&self) {
        lock(&self.video_capture).take();
        lock(&self.audio_capture).take();
        let _ = lock(&self.new_speaker).try_send(AudioOut::null());
        self.speaker_open.store(false, Ordering::Relaxed);
        self.sink.ended(&FrameSource::Local);
    }

    pub fn set_sending(&self, audio: bool, video: bool) {
        self.send_audio.store(audio, Ordering::Relaxed);
        let was = self.send_video.swap(video, Ordering::Relaxed);
        if video && !was {
            self.request_all_keyframes();
        }
    }

    pub fn resources(&self) -> Resources {
        Resources {
            video_outputs: lock(&self.video_outs).len(),
            audio_outputs: lock(&self.audio_outs).len(),
            audio_receivers: lock(&self.receivers).len(),
            video_receivers: self.live_video_receivers.load(Ordering::Relaxed) as usize,
            capturing_video: lock(&self.video_capture).is_some(),
            capturing_audio: lock(&self.audio_capture).is_some(),
            speaker_open: self.speaker_open.load(Ordering::Relaxed),
        }
    }

    /// RMS level of what the local microphone sends, 0..1.
    pub fn local_level(&self) -> f64 {
        f64::from_bits(self.local_level.load(Ordering::Relaxed))
    }

    // ----- peers -----------------------------------------------------------------------------

    /// A link to `peer` exists (its receive side may start before its send side).
    pub fn add_link(&self, link: LinkId, peer: PeerId) {
        lock(&self.peer_of).insert(link, peer);
    }

    pub fn add_video_out(&self, out: VideoOut) {
        tracing::debug!(link = out.link, "sending video");
        let codec = out.codec;
        let mut outs = lock(&self.video_outs);
        outs.retain(|o| o.link != out.link);
        outs.push(out);
        drop(outs);
        self.request_keyframe(codec);
        // Send the first picture now rather than at the next capture.
        self.bus.nudge();
    }

    pub fn add_audio_out(&self, out: AudioOutput) {
        let mut outs = lock(&self.audio_outs);
        outs.retain(|o| o.link != out.link);
        outs.push(out);
    }

    /// Forgets everything about a link (it closed).
    pub fn remove_link(&self, link: LinkId) {
        lock(&self.video_outs).retain(|o| o.link != link);
        lock(&self.audio_outs).retain(|o| o.link != link);
        lock(&self.receivers).remove(&link);
        lock(&self.books).remove(&link);
        if let Some(peer) = lock(&self.peer_of).remove(&link) {
            self.sink.ended(&FrameSource::Remote(peer));
        }
    }

    /// The link's peer now has another id.
    pub fn rebind(&self, link: LinkId, to: PeerId) {
        if let Some(old) = lock(&self.peer_of).insert(link, to) {
            self.sink.ended(&FrameSource::Remote(old));
        }
    }

    fn peer(&self, link: LinkId) -> Option<PeerId> {
        lock(&self.peer_of).get(&link).cloned()
    }

    pub fn request_keyframe(&self, codec: VideoCodec) {
        let mut k = lock(&self.keyframe);
        if !k.contains(&codec) {
            k.push(codec);
        }
    }

    fn request_all_keyframes(&self) {
        self.request_keyframe(VideoCodec::H264);
        self.request_keyframe(VideoCodec::Vp8);
    }

    pub fn stats(&self, link: LinkId) -> (VideoStats, AudioStats) {
        let video = lock(&self.books)
            .get(&link)
            .map(|b| b.snapshot())
            .unwrap_or_default();
        let audio = lock(&self.receivers)
            .get(&link)
            .map(|r| AudioStats {
                packets: r.packets,
                tone_hz: r.listener.dominant_hz(),
                level: r.listener.level(),
                concealed: r.concealed(),
            })
            .unwrap_or_default();
        (video, audio)
    }

    /// The last 20 ms level of each remote peer, for speaking indicators.
    pub fn levels(&self) -> Vec<(PeerId, f64)> {
        let receivers = lock(&self.receivers);
        let peers = lock(&self.peer_of);
        receivers
            .iter()
            .filter_map(|(l, r)| peers.get(l).map(|p| (p.clone(), r.frame_level())))
            .collect()
    }

    /// The offer/answer exchange of a link completed now.
    pub fn mark_answer(&self, link: LinkId) {
        tracing::debug!(link, "offer/answer done");
        let mut books = lock(&self.books);
        let b = books.entry(link).or_default();
        b.answered.get_or_insert_with(Instant::now);
    }

    /// Milliseconds from the answer to the first decoded picture.
    pub fn answer_to_first_frame_ms(&self, link: LinkId) -> Option<f64> {
        let books = lock(&self.books);
        let b = books.get(&link)?;
        Some(
            b.first_frame?
                .saturating_duration_since(b.answered?)
                .as_secs_f64()
                * 1000.0,
        )
    }

    /// When the first remote picture of a link was decoded.
    pub fn first_frame(&self, link: LinkId) -> Option<Instant> {
        lock(&self.books).get(&link).and_then(|b| b.first_frame)
    }

    // ----- send side -------------------------------------------------------------------------

    fn video_send_loop(self: Arc<Self>) {
        let mut encoders: HashMap<VideoCodec, (Box<dyn VideoEncoder>, u64)> = HashMap::new();
        let mut seen = 0u64;
        let fps = self.settings.format.fps;
        while !self.stop.load(Ordering::Relaxed) {
            let Some(frame) = self.bus.next(&mut seen, Duration::from_millis(200)) else {
                continue;
            };
            self.sink.frame(&FrameSource::Local, &frame);
            if !self.send_video.load(Ordering::Relaxed) {
                continue;
            }
            // Snapshot the outputs (tracks are Arcs) so that no lock is held while writing.
            let outs: Vec<(VideoCodec, Arc<TrackLocalStaticSample>, u32, u8, f64)> =
                lock(&self.video_outs)
                    .iter()
                    .map(|o| {
                        (
                            o.codec,
                            o.track.clone(),
                            o.ssrc,
                            o.pt,
                            f64::from_bits(o.estimate.load(Ordering::Relaxed)),
                        )
                    })
                    .collect();
            if outs.is_empty() {
                continue;
            }
            let wanted: Vec<VideoCodec> = lock(&self.keyframe).drain(..).collect();
            let mut codecs: Vec<VideoCodec> = outs.iter().map(|o| o.0).collect();
            codecs.dedup();
            for codec in [VideoCodec::H264, VideoCodec::Vp8] {
                if !codecs.contains(&codec) {
                    encoders.remove(&codec);
                    continue;
                }
                // Target: the lowest estimate of the links on this codec, less room for audio.
                let estimate = outs
                    .iter()
                    .filter(|o| o.0 == codec && o.4 > 0.0)
                    .map(|o| o.4)
                    .fold(f64::INFINITY, f64::min);
                let target = if estimate.is_finite() {
                    ((estimate * 0.9) as u32)
                        .saturating_sub(48_000)
                        .min(self.settings.max_bitrate)
                } else {
                    self.settings.start_bitrate
                };
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
                let force = wanted.contains(&codec);
                let encoded = match enc.encode(&frame, force) {
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
                let data = Bytes::from(encoded.data);
                let sample = Sample {
                    data,
                    duration,
                    ..Sample::new(Instant::now())
                };
                for (c, track, ssrc, pt, _) in outs.iter().filter(|o| o.0 == codec) {
                    let _ = c;
                    let write = track.sample_writer(*ssrc, *pt).write_sample(&sample);
                    if let Err(e) = self.rt.block_on(write) {
                        tracing::debug!("video write failed: {e}");
                    }
                }
            }
        }
    }

    fn audio_send_loop(self: Arc<Self>, new_rx: Receiver<Receiver<AudioFrame>>) {
        let mut enc = match AudioEncoder::new(self.settings.audio_bitrate) {
            Ok(e) => e,
            Err(e) => {
                tracing::error!("cannot start the Opus encoder: {e}");
                return;
            }
        };
        let mut source: Option<Receiver<AudioFrame>> = None;
        while !self.stop.load(Ordering::Relaxed) {
            while let Ok(rx) = new_rx.try_recv() {
                source = Some(rx);
            }
            let Some(rx) = &source else {
                std::thread::sleep(Duration::from_millis(20));
                continue;
            };
            let frame = match rx.recv_timeout(Duration::from_millis(100)) {
                Ok(f) => f,
                Err(RecvTimeoutError::Timeout) => continue,
                Err(RecvTimeoutError::Disconnected) => {
                    source = None;
                    self.local_level.store(0f64.to_bits(), Ordering::Relaxed);
                    continue;
                }
            };
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
            let outs: Vec<(Arc<TrackLocalStaticSample>, u32, u8)> = lock(&self.audio_outs)
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
            let sample = Sample {
                data: Bytes::from(packet),
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

    fn playout_loop(self: Arc<Self>, new_speaker: Receiver<AudioOut>) {
        let mut out = AudioOut::null();
        let period = Duration::from_millis(20);
        let mut next = Instant::now();
        while !self.stop.load(Ordering::Relaxed) {
            while let Ok(s) = new_speaker.try_recv() {
                out = s;
            }
            next += period;
            let now = Instant::now();
            if next > now {
                std::thread::sleep(next - now);
            } else if now - next > Duration::from_millis(200) {
                next = now; // we fell far behind (suspended machine): don't race to catch up
            }
            let mut mix: AudioFrame = [0; FRAME_SAMPLES];
            {
                let mut receivers = lock(&self.receivers);
                for r in receivers.values_mut() {
                    let f = r.next_frame();
                    mix_into(&mut mix, &f);
                }
            }
            out.play(&mix);
        }
    }

    // ----- receive side ----------------------------------------------------------------------

    /// Reads one remote audio track until it ends.
    pub async fn receive_audio(self: Arc<Self>, link: LinkId, track: Arc<dyn TrackRemote>) {
        match AudioReceiver::new() {
            Ok(r) => {
                lock(&self.receivers).insert(link, r);
            }
            Err(e) => {
                tracing::error!("cannot decode audio: {e}");
                return;
            }
        }
        while let Some(ev) = track.poll().await {
            match ev {
                TrackRemoteEvent::OnRtpPacket(pkt) => {
                    if pkt.payload.is_empty() {
                        continue;
                    }
                    if let Some(r) = lock(&self.receivers).get_mut(&link) {
                        r.push(pkt.header.sequence_number, pkt.payload.to_vec());
                    }
                }
                TrackRemoteEvent::OnEnded => break,
                _ => {}
            }
        }
    }

    /// Reads one remote video track until it ends: assembles frames on the marker bit, decodes
    /// them on a thread of its own, asks for keyframes when something is lost.
    pub async fn receive_video(self: Arc<Self>, link: LinkId, track: Arc<dyn TrackRemote>) {
        let ssrc = track.ssrcs().await.first().copied().unwrap_or(0);
        let mime = track
            .codec(ssrc)
            .await
            .map(|c| c.mime_type)
            .unwrap_or_default();
        let Some(codec) = VideoCodec::from_mime(&mime) else {
            tracing::warn!("the other side sends video in {mime}, which Confab cannot decode");
            return;
        };
        lock(&self.books).entry(link).or_default().stats.codec = Some(codec.name().into());
        // Counted while this task lives, even if it is aborted.
        struct Live<'a>(&'a AtomicU64);
        impl Drop for Live<'_> {
            fn drop(&mut self) {
                self.0.fetch_sub(1, Ordering::Relaxed);
            }
        }
        self.live_video_receivers.fetch_add(1, Ordering::Relaxed);
        let _live = Live(&self.live_video_receivers);
        let (tx, rx) = sync_channel::<confab_media::assembler::AssembledFrame>(8);
        let need_key = Arc::new(AtomicBool::new(true));
        let hub = self.clone();
        let nk = need_key.clone();
        let decoder = std::thread::Builder::new()
            .name("video-decode".into())
            .spawn(move || hub.decode_loop(link, codec, rx, nk));
        let mut asm = FrameAssembler::new(codec);
        let mut tick = tokio::time::interval(Duration::from_millis(50));
        let mut last_pli: Option<Instant> = None;
        loop {
            let frames = tokio::select! {
                ev = track.poll() => match ev {
                    Some(TrackRemoteEvent::OnRtpPacket(pkt)) => asm.push(
                        RtpIn { seq: pkt.header.sequence_number, timestamp: pkt.header.timestamp, marker: pkt.header.marker, payload: pkt.payload },
                        Instant::now(),
                    ),
                    Some(TrackRemoteEvent::OnEnded) | None => break,
                    Some(_) => continue,
                },
                _ = tick.tick() => asm.poll(Instant::now()),
            };
            for f in frames {
                if tx.try_send(f).is_err() {
                    // The decoder is behind: drop, and start again from a keyframe.
                    need_key.store(true, Ordering::Relaxed);
                }
            }
            let due = last_pli.is_none_or(|t| t.elapsed() > Duration::from_millis(300));
            if due && need_key.load(Ordering::Relaxed) {
                let pli = PictureLossIndication {
                    sender_ssrc: 0,
                    media_ssrc: ssrc,
                };
                if track.write_rtcp(vec![Box::new(pli)]).await.is_ok() {
                    last_pli = Some(Instant::now());
                    if let Some(b) = lock(&self.books).get_mut(&link) {
                        b.stats.keyframe_requests += 1;
                    }
                }
            }
        }
        drop(tx);
        if let Ok(t) = decoder {
            let _ = tokio::task::spawn_blocking(move || t.join()).await;
        }
    }

    fn decode_loop(
        &self,
        link: LinkId,
        codec: VideoCodec,
        rx: Receiver<confab_media::assembler::AssembledFrame>,
        need_key: Arc<AtomicBool>,
    ) {
        let mut dec = match video::decoder(codec) {
            Ok(d) => d,
            Err(e) => {
                tracing::error!("cannot start the {} decoder: {e}", codec.name());
                return;
            }
        };
        let mut waiting_for_key = true;
        while let Ok(f) = rx.recv() {
            if f.after_loss && !f.keyframe {
                waiting_for_key = true;
            }
            if waiting_for_key && !f.keyframe {
                need_key.store(true, Ordering::Relaxed);
                continue;
            }
            if f.keyframe {
                waiting_for_key = false;
                need_key.store(false, Ordering::Relaxed);
            }
            match dec.decode(&f.data) {
                Ok(Some(pic)) => {
                    let stamp = pattern::read(&pic);
                    let latency = stamp.and_then(|s| s.age_us(now_us()));
                    if let Some(b) = lock(&self.books).get_mut(&link) {
                        if b.first_frame.is_none() {
                            tracing::debug!(link, "first picture decoded");
                        }
                        b.decoded(pic.width, pic.height, stamp, latency);
                    }
                    if let Some(peer) = self.peer(link) {
                        self.sink.frame(&FrameSource::Remote(peer), &Arc::new(pic));
                    }
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::debug!("decode error: {e}");
                    if let Some(b) = lock(&self.books).get_mut(&link) {
                        b.stats.decode_errors += 1;
                    }
                    waiting_for_key = true;
                    need_key.store(true, Ordering::Relaxed);
                }
            }
        }
    }
}
