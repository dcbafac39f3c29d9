//! The media hub: captures once, encodes once per codec, and writes the same encoded frames to
//! every peer connection that uses that codec (`send.rs`); receives, assembles, decodes and
//! mixes what the others send (`receive.rs`). Codec work runs on threads of its own (never on
//! the async runtime); writes into the peer connections go through the runtime's handle.
//!
//! Threads (all owned here, stopped and joined by [`MediaHub::shutdown`]): the video encoder,
//! the audio encoder, the audio playout clock, and one decoder per remote video track (owned by
//! its receive task, which joins it).
//!
//! State sits behind four locks ([`lock::Lock`]): the outputs, the per-link books, the
//! captures and the threads. A thread holds at most one of them at a time (checked in debug
//! builds), and none is held across an `.await` or a device call that can block for long.

mod ladder;
mod lock;
mod receive;
pub use receive::SHARE_GONE_AFTER;
mod send;

use crate::stats::{AudioStats, NetworkStats, Phase, SetupPhases, Timeline, VideoBook, VideoStats};
use confab_media::audio::AudioReceiver;
use confab_media::device::echo_path::EchoFeed;
use confab_media::device::{
    AudioCapture, AudioOut, AudioSourceSpec, FrameBus, VideoCapture, VideoFormat, VideoSourceSpec,
};
use confab_media::processing::{ProcessingSettings, ProcessingStats, RenderFeed};
use confab_media::video::VideoCodec;
use confab_media::{AudioFrame, MediaError, VideoFrame};
use confab_protocol::PeerId;
use lock::Lock;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;
use tokio::runtime::Handle;
use webrtc::media_stream::track_local::static_sample::TrackLocalStaticSample;

/// Whose picture a frame is.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum FrameSource {
    Local,
    Remote(PeerId),
    /// The screen we share.
    LocalShare,
    /// The screen a peer shares.
    RemoteShare(PeerId),
}

/// Which of our two video streams: the camera, or the screen being shared. Each has its own
/// track on every link, its own capture and its own encoders.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Stream {
    Camera,
    Share,
}

impl Stream {
    /// What a track's id says it carries: ours name the share track `confab-LINK-share-SSRC`.
    pub fn of_track_id(id: &str) -> Stream {
        if id.split('-').any(|part| part == "share") {
            Stream::Share
        } else {
            Stream::Camera
        }
    }

    /// The word in our track ids.
    pub fn tag(self) -> &'static str {
        match self {
            Stream::Camera => "video",
            Stream::Share => "share",
        }
    }
}

/// A shared screen: detail over motion (a higher resolution, a low frame rate).
pub const SHARE_FORMAT: VideoFormat = VideoFormat {
    width: 1280,
    height: 720,
    fps: 5.0,
};

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

/// A picture size an encoder works at: the frame as captured, or half its width and height
/// (the second layer of a simulcast camera; a camera on a narrow link), or a quarter (a
/// camera on a very narrow link).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scale {
    Full,
    Half,
    Quarter,
}

impl Scale {
    /// Width and height are divided by this.
    pub fn divisor(self) -> usize {
        match self {
            Scale::Full => 1,
            Scale::Half => 2,
            Scale::Quarter => 4,
        }
    }

    pub fn smaller(self) -> Option<Scale> {
        match self {
            Scale::Full => Some(Scale::Half),
            Scale::Half => Some(Scale::Quarter),
            Scale::Quarter => None,
        }
    }

    pub fn larger(self) -> Option<Scale> {
        match self {
            Scale::Full => None,
            Scale::Half => Some(Scale::Full),
            Scale::Quarter => Some(Scale::Half),
        }
    }
}

/// One encoding of a simulcast camera (links to an SFU send two, and the SFU forwards one to
/// each receiver): its picture size and the RTP stream id (`rid`) that names it in the SDP
/// and on every packet. [`LAYERS`] lists them high to low, as the SDP's `a=simulcast` does:
/// Janus reads that order (and numbers its substreams from the lowest, 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layer {
    pub scale: Scale,
    pub rid: &'static str,
}

/// A camera narrower than this sends one encoding even to an SFU: its half would be too small
/// a picture to be worth the encoder (browsers drop such layers too).
pub const SIMULCAST_MIN_WIDTH: usize = 640;

pub const LAYERS: [Layer; 2] = [
    Layer {
        scale: Scale::Full,
        rid: "f",
    },
    Layer {
        scale: Scale::Half,
        rid: "h",
    },
];

/// A video track of one peer connection, fed by the encoder for its codec.
pub struct VideoOut {
    pub link: LinkId,
    pub stream: Stream,
    /// The simulcast encoding this is, with the track's media id (`mid`): both go on every
    /// packet as header extensions, which is how the SFU tells the encodings apart.
    pub layer: Option<(Layer, String)>,
    pub codec: VideoCodec,
    pub track: Arc<TrackLocalStaticSample>,
    pub ssrc: u32,
    pub pt: u8,
    /// What the link's congestion control and pacer say of its line.
    pub line: Arc<LineReading>,
}

/// What a link's congestion control and pacer say of its line, for the encoders: written by
/// the link's interceptors, read by the send loop.
#[derive(Debug, Default)]
pub struct LineReading {
    /// The bandwidth estimate, bits/s (f64 bits), 0 = none yet.
    estimate_bps: AtomicU64,
    /// How long what waits in the pacer will take to leave at its rate, ms.
    pacer_queue_ms: AtomicU32,
    /// The camera's picture on this link: 1 as captured, 2 half its width and height, 4 a
    /// quarter (0: none sent yet).
    camera_divisor: AtomicU32,
    /// The path's round trip, ms (0: not measured yet).
    rtt_ms: AtomicU32,
    /// The round trip the congestion controller's last feedback showed, ms (0: none yet): a
    /// packet's departure to its acknowledgement's arrival, fresh with every report (the
    /// stats' round trip is a second old, and on a line that has just filled it is the
    /// empty line's).
    feedback_rtt_ms: AtomicU32,
    /// Packets asked for again (NACK) from this link's far end, since it began.
    nacked: AtomicU64,
    /// Whether the estimate is a reading of the line yet: until the far end's first reports
    /// it is only held low as a precaution (see `link::estimate`), and the picture's size does
    /// not follow it.
    heard: AtomicBool,
    /// A probe the congestion controller asks the pacer for: its rate, bits/s (f64 bits), 0 =
    /// none.
    probe_bps: AtomicU64,
    /// Whether the pacer can send probes (the link has RTX streams to send them on).
    can_probe: AtomicBool,
    /// Share of our audio that the far end's receiver reports say was lost, percent (f64
    /// bits; 0 until a report): the Opus encoder's expected loss follows it.
    send_loss_pct: AtomicU64,
}

impl LineReading {
    pub fn estimate_bps(&self) -> f64 {
        f64::from_bits(self.estimate_bps.load(Ordering::Relaxed))
    }
    pub fn set_estimate_bps(&self, bps: f64) {
        self.estimate_bps.store(bps.to_bits(), Ordering::Relaxed);
    }
    pub fn pacer_queue_ms(&self) -> u32 {
        self.pacer_queue_ms.load(Ordering::Relaxed)
    }
    pub fn set_pacer_queue_ms(&self, ms: u32) {
        self.pacer_queue_ms.store(ms, Ordering::Relaxed);
    }
    pub fn nacked(&self) -> u64 {
        self.nacked.load(Ordering::Relaxed)
    }
    pub fn add_nacked(&self, n: u64) {
        self.nacked.fetch_add(n, Ordering::Relaxed);
    }
    pub fn camera_divisor(&self) -> u32 {
        self.camera_divisor.load(Ordering::Relaxed)
    }
    pub fn set_camera_divisor(&self, d: u32) {
        self.camera_divisor.store(d, Ordering::Relaxed);
    }
    pub fn rtt_ms(&self) -> u32 {
        self.rtt_ms.load(Ordering::Relaxed)
    }
    pub fn set_rtt_ms(&self, ms: u32) {
        self.rtt_ms.store(ms, Ordering::Relaxed);
    }
    pub fn feedback_rtt_ms(&self) -> u32 {
        self.feedback_rtt_ms.load(Ordering::Relaxed)
    }
    pub fn set_feedback_rtt_ms(&self, ms: u32) {
        self.feedback_rtt_ms.store(ms, Ordering::Relaxed);
    }
    pub fn heard(&self) -> bool {
        self.heard.load(Ordering::Relaxed)
    }
    pub fn set_heard(&self, heard: bool) {
        self.heard.store(heard, Ordering::Relaxed);
    }
    pub fn send_loss_pct(&self) -> f64 {
        f64::from_bits(self.send_loss_pct.load(Ordering::Relaxed))
    }
    pub fn set_send_loss_pct(&self, pct: f64) {
        self.send_loss_pct.store(pct.to_bits(), Ordering::Relaxed);
    }
    pub fn can_probe(&self) -> bool {
        self.can_probe.load(Ordering::Relaxed)
    }
    pub fn set_can_probe(&self, can: bool) {
        self.can_probe.store(can, Ordering::Relaxed);
    }
    pub fn request_probe(&self, bps: f64) {
        self.probe_bps.store(bps.to_bits(), Ordering::Relaxed);
    }
    /// The probe asked for since the last call, if any.
    pub fn take_probe(&self) -> Option<f64> {
        let bps = f64::from_bits(self.probe_bps.swap(0, Ordering::Relaxed));
        (bps > 0.0).then_some(bps)
    }
}

pub struct AudioOutput {
    pub link: LinkId,
    pub track: Arc<TrackLocalStaticSample>,
    pub ssrc: u32,
    pub pt: u8,
    /// What the link says of its line (the loss its far end reports).
    pub line: Arc<LineReading>,
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
    /// Echo cancellation, noise suppression, gain on the microphone's signal.
    pub processing: ProcessingSettings,
}

/// Where encoded media goes, and which encoders owe a keyframe.
#[derive(Default)]
struct Outputs {
    video: Vec<VideoOut>,
    audio: Vec<AudioOutput>,
    keyframe: Vec<(Stream, VideoCodec, Option<Scale>)>,
    /// Links being set up and the codec they will send the camera in: its encoder is made
    /// before they connect, so the first picture does not wait for it.
    warm: Vec<(LinkId, VideoCodec)>,
}

/// Everything the hub keeps about one link.
struct LinkBook {
    peer: PeerId,
    video: VideoBook,
    /// The screen this peer shares (empty until it shares).
    share: VideoBook,
    audio: Option<AudioReceiver>,
    /// The link's latest reading of its path.
    network: NetworkStats,
    /// When each step of its set-up happened.
    timeline: Timeline,
    /// The link runs to an SFU rather than to the person (keyframe requests go compound).
    through_sfu: bool,
}

impl LinkBook {
    fn book(&mut self, stream: Stream) -> &mut VideoBook {
        match stream {
            Stream::Camera => &mut self.video,
            Stream::Share => &mut self.share,
        }
    }
}

#[derive(Default)]
struct Captures {
    video: Option<VideoCapture>,
    share: Option<VideoCapture>,
    audio: Option<AudioCapture>,
}

pub struct MediaHub {
    rt: Handle,
    settings: MediaSettings,
    pub bus: Arc<FrameBus>,
    /// The shared screen's frames (a capture of its own, fed to the share encoders).
    share_bus: Arc<FrameBus>,
    outputs: Lock<Outputs>,
    links: Lock<HashMap<LinkId, LinkBook>>,
    captures: Lock<Captures>,
    threads: Lock<Vec<JoinHandle<()>>>,
    send_video: AtomicBool,
    send_audio: AtomicBool,
    live_video_receivers: AtomicU64,
    sink: Arc<dyn VideoSink>,
    new_audio_rx: SyncSender<Receiver<AudioFrame>>,
    new_speaker: SyncSender<AudioOut>,
    /// The capture thread's processor hands the playout clock a fresh echo-reference feed.
    new_render_feed: SyncSender<RenderFeed>,
    /// The echo-path test microphone's room, fed what goes to the speaker.
    new_echo_feed: SyncSender<EchoFeed>,
    /// Settings for the capture thread's processor, taken before its next frame.
    new_processing: SyncSender<ProcessingSettings>,
    processing_stats: Lock<ProcessingStats>,
    /// A screen is shared (read by the camera's send thread on every frame: no lock).
    sharing: AtomicBool,
    /// The open speaker's buffering (ms), the playout side of the echo path's delay.
    speaker_latency_ms: AtomicU32,
    speaker_open: AtomicBool,
    local_level: AtomicU64,
    stop: Arc<AtomicBool>,
}

impl MediaHub {
    pub fn start(
        rt: Handle,
        settings: MediaSettings,
        sink: Arc<dyn VideoSink>,
    ) -> Result<Arc<Self>, MediaError> {
        let (audio_rx_tx, audio_rx_rx) = sync_channel(2);
        let (speaker_tx, speaker_rx) = sync_channel(2);
        let (feed_tx, feed_rx) = sync_channel(2);
        let (echo_tx, echo_rx) = sync_channel(2);
        let (processing_tx, processing_rx) = sync_channel(4);
        let hub = Arc::new(MediaHub {
            rt,
            settings,
            bus: FrameBus::new(),
            share_bus: FrameBus::new(),
            outputs: Lock::new("outputs", Outputs::default()),
            links: Lock::new("links", HashMap::new()),
            captures: Lock::new("captures", Captures::default()),
            threads: Lock::new("threads", Vec::new()),
            send_video: AtomicBool::new(true),
            send_audio: AtomicBool::new(true),
            live_video_receivers: AtomicU64::new(0),
            sink,
            new_audio_rx: audio_rx_tx,
            new_speaker: speaker_tx,
            new_render_feed: feed_tx,
            new_echo_feed: echo_tx,
            new_processing: processing_tx,
            processing_stats: Lock::new("processing stats", ProcessingStats::default()),
            speaker_latency_ms: AtomicU32::new(0),
            sharing: AtomicBool::new(false),
            speaker_open: AtomicBool::new(false),
            local_level: AtomicU64::new(0),
            stop: Arc::new(AtomicBool::new(false)),
        });
        let spawn = |name: &str, f: Box<dyn FnOnce() + Send>| {
            std::thread::Builder::new()
                .name(name.into())
                .spawn(f)
                .map_err(|e| MediaError::Device(format!("cannot start the {name} thread: {e}")))
        };
        let h = hub.clone();
        let t1 = spawn(
            "video-send",
            Box::new(move || h.video_send_loop(Stream::Camera)),
        )?;
        let h = hub.clone();
        let t0 = spawn(
            "share-send",
            Box::new(move || h.video_send_loop(Stream::Share)),
        )?;
        let h = hub.clone();
        let t2 = spawn(
            "audio-send",
            Box::new(move || h.audio_send_loop(audio_rx_rx, processing_rx)),
        )?;
        let h = hub.clone();
        let t3 = spawn(
            "audio-playout",
            Box::new(move || h.playout_loop(speaker_rx, feed_rx, echo_rx)),
        )?;
        hub.threads.lock().extend([t0, t1, t2, t3]);
        Ok(hub)
    }

    /// Stops captures and threads; joins them.
    pub fn shutdown(&self) {
        self.stop.store(true, Ordering::Relaxed);
        self.bus.close();
        self.share_bus.close();
        let captures = std::mem::take(&mut *self.captures.lock());
        drop(captures);
        let threads: Vec<JoinHandle<()>> = self.threads.lock().drain(..).collect();
        for t in threads {
            let _ = t.join();
        }
    }

    // ----- audio processing ------------------------------------------------------------------

    /// Switches echo cancellation, noise suppression and gain (from the microphone's next frame).
    pub fn set_processing(&self, settings: ProcessingSettings) {
        let _ = self.new_processing.try_send(settings);
    }

    /// What the processor did so far, as of its last second.
    pub fn processing_stats(&self) -> ProcessingStats {
        self.processing_stats.lock().clone()
    }

    // ----- devices ---------------------------------------------------------------------------

    /// Starts (or switches, or stops with `None`) the camera. The encoders keep running.
    pub fn set_video_source(&self, spec: &VideoSourceSpec) -> Result<Option<String>, MediaError> {
        // Release the old device before opening the new one (it may be the same); the lock is
        // not held while a device opens.
        let old = self.captures.lock().video.take();
        drop(old);
        let cap = VideoCapture::start(spec, self.settings.format, self.bus.clone())?;
        let description = cap.as_ref().map(|c| c.description.clone());
        if cap.is_none() {
            self.sink.ended(&FrameSource::Local);
        }
        let replaced = std::mem::replace(&mut self.captures.lock().video, cap);
        drop(replaced);
        Ok(description)
    }

    /// Starts (or switches, or stops with `None`) sharing a screen: its own capture, sent on
    /// every link's share track next to the camera. `cancel` gives up a start still waiting
    /// for the person (the desktop's picker).
    pub fn set_share_source(
        &self,
        spec: Option<&VideoSourceSpec>,
        cancel: Arc<AtomicBool>,
    ) -> Result<Option<String>, MediaError> {
        let old = self.captures.lock().share.take();
        drop(old);
        let cap = match spec {
            Some(spec) => {
                match VideoCapture::start_cancellable(
                    spec,
                    SHARE_FORMAT,
                    self.share_bus.clone(),
                    cancel,
                ) {
                    Ok(cap) => cap,
                    Err(e) => {
                        // The old share is gone too: nothing is shared now.
                        self.sharing.store(false, Ordering::Relaxed);
                        self.sink.ended(&FrameSource::LocalShare);
                        return Err(e);
                    }
                }
            }
            None => None,
        };
        let description = cap.as_ref().map(|c| c.description.clone());
        if cap.is_none() {
            self.sink.ended(&FrameSource::LocalShare);
        } else {
            self.request_keyframes(Stream::Share);
        }
        self.sharing.store(cap.is_some(), Ordering::Relaxed);
        let replaced = std::mem::replace(&mut self.captures.lock().share, cap);
        drop(replaced);
        Ok(description)
    }

    /// Whether the share's capture stopped by itself (a shared window was closed).
    pub fn share_ended(&self) -> bool {
        self.captures
            .lock()
            .share
            .as_ref()
            .is_some_and(VideoCapture::ended)
    }

    /// Whether a screen is being shared.
    pub fn sharing(&self) -> bool {
        self.sharing.load(Ordering::Relaxed)
    }

    pub fn set_audio_source(&self, spec: &AudioSourceSpec) -> Result<Option<String>, MediaError> {
        let old = self.captures.lock().audio.take();
        drop(old);
        let (cap, rx) = match spec {
            // The echo-path test microphone hears what the playout clock sends the speaker.
            AudioSourceSpec::Echo(ms) => {
                let (feed, tap) = confab_media::device::echo_path::echo_room();
                let _ = self.new_echo_feed.try_send(feed);
                let (cap, rx) = AudioCapture::start_echo(*ms, tap)?;
                (Some(cap), rx)
            }
            _ => AudioCapture::start(spec)?,
        };
        let description = cap.as_ref().map(|c| c.description.clone());
        let _ = self.new_audio_rx.try_send(rx);
        let replaced = std::mem::replace(&mut self.captures.lock().audio, cap);
        drop(replaced);
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
        let _ = self.new_speaker.try_send(out);
        Ok(d)
    }

    pub fn stop_devices(&self) {
        let captures = std::mem::take(&mut *self.captures.lock());
        drop(captures);
        self.sharing.store(false, Ordering::Relaxed);
        let _ = self.new_speaker.try_send(AudioOut::null());
        self.speaker_open.store(false, Ordering::Relaxed);
        self.sink.ended(&FrameSource::Local);
        self.sink.ended(&FrameSource::LocalShare);
    }

    pub fn set_sending(&self, audio: bool, video: bool) {
        self.send_audio.store(audio, Ordering::Relaxed);
        let was = self.send_video.swap(video, Ordering::Relaxed);
        if video && !was {
            self.request_keyframes(Stream::Camera);
        }
    }

    pub fn resources(&self) -> Resources {
        let (video_outputs, audio_outputs) = {
            let o = self.outputs.lock();
            (o.video.len(), o.audio.len())
        };
        let audio_receivers = self
            .links
            .lock()
            .values()
            .filter(|l| l.audio.is_some())
            .count();
        let (capturing_video, capturing_audio) = {
            let c = self.captures.lock();
            (c.video.is_some(), c.audio.is_some())
        };
        Resources {
            video_outputs,
            audio_outputs,
            audio_receivers,
            video_receivers: self.live_video_receivers.load(Ordering::Relaxed) as usize,
            capturing_video,
            capturing_audio,
            speaker_open: self.speaker_open.load(Ordering::Relaxed),
        }
    }

    /// RMS level of what the local microphone sends, 0..1.
    pub fn local_level(&self) -> f64 {
        f64::from_bits(self.local_level.load(Ordering::Relaxed))
    }

    // ----- peers -----------------------------------------------------------------------------

    /// A link to `peer` exists (its receive side may start before its send side).
    pub fn add_link(&self, link: LinkId, peer: PeerId, through_sfu: bool) {
        self.links.lock().insert(
            link,
            LinkBook {
                peer,
                video: VideoBook::default(),
                share: VideoBook::default(),
                audio: None,
                network: NetworkStats::default(),
                timeline: Timeline::default(),
                through_sfu,
            },
        );
    }

    fn through_sfu(&self, link: LinkId) -> bool {
        self.links.lock().get(&link).is_some_and(|b| b.through_sfu)
    }

    /// A link being set up will send the camera in `codec`: have its encoder ready.
    pub fn warm_up(&self, link: LinkId, codec: VideoCodec) {
        {
            let mut o = self.outputs.lock();
            if o.warm.len() < 64 && !o.warm.contains(&(link, codec)) {
                o.warm.push((link, codec));
            }
        }
        self.bus.nudge();
    }

    pub fn add_video_out(&self, out: VideoOut) {
        tracing::debug!(link = out.link, stream = ?out.stream, "sending video");
        let (codec, stream) = (out.codec, out.stream);
        {
            let mut o = self.outputs.lock();
            o.warm.retain(|(l, _)| *l != out.link);
            let layer = out.layer.as_ref().map(|(l, _)| l.rid);
            o.video.retain(|v| {
                !(v.link == out.link
                    && v.stream == out.stream
                    && v.layer.as_ref().map(|(l, _)| l.rid) == layer)
            });
            o.video.push(out);
        }
        self.request_keyframe(stream, codec, None);
        // Send the first picture now rather than at the next capture.
        self.bus_of(stream).nudge();
    }

    pub fn add_audio_out(&self, out: AudioOutput) {
        let mut o = self.outputs.lock();
        o.audio.retain(|a| a.link != out.link);
        o.audio.push(out);
    }

    /// Forgets everything about a link (it closed).
    pub fn remove_link(&self, link: LinkId) {
        {
            let mut o = self.outputs.lock();
            o.video.retain(|v| v.link != link);
            o.audio.retain(|a| a.link != link);
            o.warm.retain(|(l, _)| *l != link);
        }
        let gone = self.links.lock().remove(&link);
        if let Some(book) = gone {
            self.sink
                .ended(&FrameSource::RemoteShare(book.peer.clone()));
            self.sink.ended(&FrameSource::Remote(book.peer));
        }
    }

    /// The link's peer now has another id.
    pub fn rebind(&self, link: LinkId, to: PeerId) {
        let old = self
            .links
            .lock()
            .get_mut(&link)
            .map(|b| std::mem::replace(&mut b.peer, to));
        if let Some(old) = old {
            self.sink.ended(&FrameSource::RemoteShare(old.clone()));
            self.sink.ended(&FrameSource::Remote(old));
        }
    }

    fn peer(&self, link: LinkId) -> Option<PeerId> {
        self.links.lock().get(&link).map(|b| b.peer.clone())
    }

    /// The next picture of `stream` in `codec` is a keyframe: at one size of a simulcast
    /// camera (the layer a receiver asked about), or (`None`) at every size.
    pub fn request_keyframe(&self, stream: Stream, codec: VideoCodec, scale: Option<Scale>) {
        let mut o = self.outputs.lock();
        if !o.keyframe.contains(&(stream, codec, scale)) {
            o.keyframe.push((stream, codec, scale));
        }
    }

    fn request_keyframes(&self, stream: Stream) {
        self.request_keyframe(stream, VideoCodec::H264, None);
        self.request_keyframe(stream, VideoCodec::Vp8, None);
    }

    fn bus_of(&self, stream: Stream) -> &Arc<FrameBus> {
        match stream {
            Stream::Camera => &self.bus,
            Stream::Share => &self.share_bus,
        }
    }

    /// Whether the camera is big enough to send in two sizes ([`SIMULCAST_MIN_WIDTH`]).
    pub fn camera_fits_simulcast(&self) -> bool {
        self.settings.format.width >= SIMULCAST_MIN_WIDTH
    }

    /// Keyframes asked of the link's camera so far, and whether a picture of it has been
    /// decoded (cheap: [`stats`](Self::stats) also analyses the sound).
    pub fn camera_reception(&self, link: LinkId) -> (u64, bool) {
        self.links.lock().get(&link).map_or((0, false), |b| {
            (
                b.video.stats.keyframe_requests,
                b.video.first_frame.is_some(),
            )
        })
    }

    pub fn stats(&self, link: LinkId) -> (VideoStats, VideoStats, AudioStats, NetworkStats) {
        // Copy out under the lock, compute outside it (the playout clock needs this lock).
        let copied = self.links.lock().get(&link).map(|b| {
            let audio = b.audio.as_ref().map(|r| {
                (
                    r.packets,
                    r.concealed(),
                    r.fec_recovered(),
                    r.lost(),
                    r.listener.clone(),
                )
            });
            (b.video.clone(), b.share.clone(), audio, b.network.clone())
        });
        let Some((video, share, audio, network)) = copied else {
            return Default::default();
        };
        let audio = audio
            .map(
                |(packets, concealed, fec_recovered, lost, listener)| AudioStats {
                    packets,
                    tone_hz: listener.dominant_hz(),
                    level: listener.level(),
                    concealed,
                    concealed_ms: concealed as f64 * confab_media::FRAME_SAMPLES as f64 * 1000.0
                        / f64::from(confab_media::SAMPLE_RATE),
                    fec_recovered,
                    lost,
                },
            )
            .unwrap_or_default();
        (video.snapshot(), share.snapshot(), audio, network)
    }

    /// The link's latest reading of its path (from its task, once a second).
    pub fn set_network(&self, link: LinkId, network: NetworkStats) {
        if let Some(b) = self.links.lock().get_mut(&link) {
            b.network = network;
        }
    }

    /// The last 20 ms level of each remote peer, for speaking indicators.
    pub fn levels(&self) -> Vec<(PeerId, f64)> {
        self.links
            .lock()
            .values()
            .filter_map(|b| b.audio.as_ref().map(|r| (b.peer.clone(), r.frame_level())))
            .collect()
    }

    /// The offer/answer exchange of a link completed now.
    pub fn mark_answer(&self, link: LinkId) {
        tracing::debug!(link, "offer/answer done");
        if let Some(b) = self.links.lock().get_mut(&link) {
            b.video.answered.get_or_insert_with(Instant::now);
        }
    }

    /// A step of the link's set-up happened now (only the first time counts).
    pub fn mark(&self, link: LinkId, phase: Phase) {
        if let Some(b) = self.links.lock().get_mut(&link) {
            if b.timeline.mark(phase, Instant::now()) {
                tracing::debug!(link, ?phase, "set-up");
            }
        }
    }

    /// The link's set-up phases, in milliseconds after its answer.
    pub fn setup_phases(&self, link: LinkId) -> SetupPhases {
        self.links
            .lock()
            .get(&link)
            .map(|b| b.timeline.phases(b.video.answered))
            .unwrap_or_default()
    }

    /// Milliseconds from the answer to the first decoded picture.
    pub fn answer_to_first_frame_ms(&self, link: LinkId) -> Option<f64> {
        let links = self.links.lock();
        let b = &links.get(&link)?.video;
        Some(
            b.first_frame?
                .saturating_duration_since(b.answered?)
                .as_secs_f64()
                * 1000.0,
        )
    }

    /// When the first remote picture of a link was decoded.
    pub fn first_frame(&self, link: LinkId) -> Option<Instant> {
        self.links
            .lock()
            .get(&link)
            .and_then(|b| b.video.first_frame)
    }
}
