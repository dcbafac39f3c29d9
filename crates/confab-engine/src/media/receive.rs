//! The receive side: remote audio into a jitter buffer per link, mixed by the 20 ms playout
//! clock; remote video assembled on the marker bit, decoded on a thread per track, handed to
//! the sink, with keyframe requests when something is lost.

use super::{LinkId, MediaHub, Stream};
use crate::stats::Phase;
use confab_media::assembler::{loss_wait_for, AssembledFrame, FrameAssembler, RtpIn};
use confab_media::audio::{mix_into, AudioReceiver};
use confab_media::device::echo_path::EchoFeed;
use confab_media::device::AudioOut;
use confab_media::processing::RenderFeed;
use confab_media::video::{self, VideoCodec};
use confab_media::{now_us, pattern, AudioFrame, FRAME_SAMPLES};
use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use rtc::rtcp::receiver_report::ReceiverReport;
use rtc::rtcp::reception_report::ReceptionReport;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::Arc;
use std::time::{Duration, Instant};
use webrtc::media_stream::track_remote::{TrackRemote, TrackRemoteEvent};

/// Counts a live video receiver while it exists (also if its task is aborted).
struct Live<'a>(&'a AtomicU64);

impl<'a> Live<'a> {
    fn new(n: &'a AtomicU64) -> Self {
        n.fetch_add(1, Ordering::Relaxed);
        Live(n)
    }
}

impl Drop for Live<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A shared screen sends at least 5 pictures a second, also of a still screen: this long
/// without one, its sender stopped sharing.
pub const SHARE_GONE_AFTER: Duration = Duration::from_secs(3);

impl MediaHub {
    pub(super) fn playout_loop(
        self: Arc<Self>,
        new_speaker: Receiver<AudioOut>,
        new_feed: Receiver<RenderFeed>,
        new_echo: Receiver<EchoFeed>,
    ) {
        let mut out = AudioOut::null();
        // Where what goes to the speaker is handed to the echo canceller (lock-free).
        let mut feed: Option<RenderFeed> = None;
        // The echo-path test microphone's room, when that is the microphone.
        let mut echo: Option<EchoFeed> = None;
        let period = Duration::from_millis(20);
        let mut next = Instant::now();
        while !self.stop.load(Ordering::Relaxed) {
            while let Ok(s) = new_speaker.try_recv() {
                out = s;
                self.speaker_latency_ms
                    .store(out.latency_ms(), Ordering::Relaxed);
            }
            while let Ok(f) = new_feed.try_recv() {
                feed = Some(f);
            }
            while let Ok(e) = new_echo.try_recv() {
                echo = Some(e);
            }
            next += period;
            let now = Instant::now();
            if next > now {
                std::thread::sleep(next - now);
            } else if now - next > Duration::from_millis(200) {
                next = now; // we fell far behind (suspended machine): don't race to catch up
            }
            let mut mix: AudioFrame = [0; FRAME_SAMPLES];
            for book in self.links.lock().values_mut() {
                if let Some(r) = book.audio.as_mut() {
                    mix_into(&mut mix, &r.next_frame());
                }
            }
            out.play(&mix);
            if let Some(f) = feed.as_mut() {
                f.push(&mix);
            }
            if echo.as_mut().is_some_and(|e| !e.push(&mix)) {
                echo = None;
            }
        }
    }

    /// Reads one remote audio track until it ends.
    pub async fn receive_audio(self: Arc<Self>, link: LinkId, track: Arc<dyn TrackRemote>) {
        let receiver = match AudioReceiver::new() {
            Ok(r) => r,
            Err(e) => {
                tracing::error!("cannot decode audio: {e}");
                return;
            }
        };
        if let Some(b) = self.links.lock().get_mut(&link) {
            b.audio = Some(receiver);
        }
        while let Some(ev) = track.poll().await {
            match ev {
                TrackRemoteEvent::OnRtpPacket(pkt) => {
                    if pkt.payload.is_empty() {
                        continue;
                    }
                    let payload = pkt.payload.to_vec();
                    if let Some(r) = self
                        .links
                        .lock()
                        .get_mut(&link)
                        .and_then(|b| b.audio.as_mut())
                    {
                        r.push(pkt.header.sequence_number, payload);
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
        // Our share track's id says "share" (see `link::build`); everything else is a camera.
        let stream = Stream::of_track_id(&track.track_id().await);
        if let Some(b) = self.links.lock().get_mut(&link) {
            b.book(stream).stats.codec = Some(codec.name().into());
        }
        let _live = Live::new(&self.live_video_receivers);
        // Room for the burst of frames a recovered gap releases at once (at 100 ms RTT a NACKed
        // packet holds back three or four frames at 30 fps, and two gaps can overlap): a frame
        // that does not fit is lost, and the decoder then waits for a keyframe.
        let (tx, rx) = sync_channel::<AssembledFrame>(16);
        let need_key = Arc::new(AtomicBool::new(true));
        let hub = self.clone();
        let nk = need_key.clone();
        let decoder = std::thread::Builder::new()
            .name("video-decode".into())
            .spawn(move || hub.decode_loop(link, stream, codec, rx, nk));
        let mut asm = FrameAssembler::new(codec);
        // The first packet / whole picture of the camera, for the set-up timeline.
        let (mut received, mut assembled) = (stream != Stream::Camera, stream != Stream::Camera);
        let mut tick = tokio::time::interval(Duration::from_millis(50));
        let mut last_pli: Option<Instant> = None;
        // The last frame could not be handed to the decoder.
        let mut dropped = false;
        // A shared screen is on show from its first picture until its pictures stop.
        let mut share_shown: Option<Instant> = None;
        loop {
            let frames = tokio::select! {
                ev = track.poll() => match ev {
                    Some(TrackRemoteEvent::OnRtpPacket(pkt)) => {
                        if !received {
                            received = true;
                            self.mark(link, Phase::FirstReceived);
                        }
                        asm.push(
                        RtpIn { seq: pkt.header.sequence_number, timestamp: pkt.header.timestamp, marker: pkt.header.marker, payload: pkt.payload },
                        Instant::now(),
                    )
                    }
                    Some(TrackRemoteEvent::OnEnded) | None => break,
                    Some(_) => continue,
                },
                _ = tick.tick() => {
                    // Gaps wait for their retransmission as long as this path needs.
                    let rtt = self.links.lock().get(&link).and_then(|b| b.network.rtt_ms);
                    asm.set_loss_wait(loss_wait_for(rtt));
                    asm.poll(Instant::now())
                }
            };
            if !assembled && !frames.is_empty() {
                assembled = true;
                self.mark(link, Phase::FirstAssembled);
            }
            if stream == Stream::Share {
                if !frames.is_empty() {
                    share_shown = Some(Instant::now());
                } else if share_shown.is_some_and(|t| t.elapsed() > SHARE_GONE_AFTER) {
                    // The sender stopped sharing (its track stays, silent): take the screen
                    // down rather than leave its last picture frozen. The next picture puts
                    // it back.
                    share_shown = None;
                    if let Some(peer) = self.peer(link) {
                        self.sink.ended(&super::FrameSource::RemoteShare(peer));
                    }
                }
            }
            for mut f in frames {
                // A frame dropped before the decoder is a lost reference as much as one lost
                // on the way: the decoder waits for a keyframe rather than decode the next
                // ones from a picture it never had.
                f.after_loss |= dropped;
                dropped = tx.try_send(f).is_err();
                if dropped {
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
                let packets: Vec<Box<dyn rtc::rtcp::Packet>> = if self.through_sfu(link) {
                    // Janus finds which stream an RTCP packet from a receive-only connection is
                    // about by its receiver report, and drops a lone PLI: then the sender never
                    // hears that a keyframe is needed. Compound (a report naming the stream,
                    // then the PLI), as browsers send. Only there: to a person, the report's
                    // empty figures would stand in for the real ones their congestion control
                    // and loss figures read.
                    let rr = ReceiverReport {
                        ssrc: 1,
                        reports: vec![ReceptionReport {
                            ssrc,
                            ..Default::default()
                        }],
                        ..Default::default()
                    };
                    vec![Box::new(rr), Box::new(pli)]
                } else {
                    vec![Box::new(pli)]
                };
                if track.write_rtcp(packets).await.is_ok() {
                    tracing::debug!(link, ?stream, "asked for a keyframe");
                    last_pli = Some(Instant::now());
                    if let Some(b) = self.links.lock().get_mut(&link) {
                        b.book(stream).stats.keyframe_requests += 1;
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
        stream: Stream,
        codec: VideoCodec,
        rx: Receiver<AssembledFrame>,
        need_key: Arc<AtomicBool>,
    ) {
        let created = Instant::now();
        let mut dec = match video::decoder(codec) {
            Ok(d) => d,
            Err(e) => {
                tracing::error!("cannot start the {} decoder: {e}", codec.name());
                return;
            }
        };
        tracing::debug!(
            link,
            ms = created.elapsed().as_secs_f64() * 1000.0,
            "set-up: decoder ready"
        );
        let mut waiting_for_key = true;
        // Nothing decoded yet: the first keyframe must be one a fresh decoder can start from.
        let mut fresh = true;
        while let Ok(f) = rx.recv() {
            if f.after_loss && !f.keyframe {
                waiting_for_key = true;
            }
            if waiting_for_key && !f.keyframe
                || fresh && !confab_media::assembler::starts_decoding(codec, &f.data)
            {
                need_key.store(true, Ordering::Relaxed);
                continue;
            }
            fresh = false;
            if f.keyframe {
                waiting_for_key = false;
                need_key.store(false, Ordering::Relaxed);
            }
            let decoding = Instant::now();
            let decoded = dec.decode(&f.data);
            if f.keyframe && tracing::enabled!(tracing::Level::TRACE) {
                let ms = decoding.elapsed().as_secs_f64() * 1000.0;
                tracing::trace!(link, ms, bytes = f.data.len(), "keyframe decoded");
            }
            match decoded {
                Ok(Some(pic)) => {
                    let stamp = pattern::read(&pic);
                    let latency = stamp.and_then(|s| s.age_us(now_us()));
                    if let Some(b) = self.links.lock().get_mut(&link) {
                        let book = b.book(stream);
                        let first = book.first_frame.is_none();
                        book.decoded(pic.width, pic.height, stamp, latency);
                        // The timeline's figure is the same instant as answer_to_first_frame.
                        match book.first_frame {
                            Some(at) if first && stream == Stream::Camera => {
                                b.timeline.mark(Phase::FirstDecoded, at);
                                let ms = decoding.elapsed().as_secs_f64() * 1000.0;
                                tracing::debug!(link, ms, "set-up: first picture decoded");
                            }
                            _ => {}
                        }
                    }
                    if let Some(peer) = self.peer(link) {
                        let source = match stream {
                            Stream::Camera => super::FrameSource::Remote(peer),
                            Stream::Share => super::FrameSource::RemoteShare(peer),
                        };
                        self.sink.frame(&source, &Arc::new(pic));
                    }
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::debug!("decode error: {e}");
                    if let Some(b) = self.links.lock().get_mut(&link) {
                        b.book(stream).stats.decode_errors += 1;
                    }
                    waiting_for_key = true;
                    need_key.store(true, Ordering::Relaxed);
                }
            }
        }
    }
}
