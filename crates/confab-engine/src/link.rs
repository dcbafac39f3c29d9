//! One peer connection with one remote peer, as a task: offer/answer with perfect negotiation,
//! trickle ICE with early candidates queued, ICE restart when the connection breaks, tracks
//! registered with the media hub once connected.

use crate::media::{AudioOutput, LinkId, MediaHub, VideoOut};
use confab_media::video::VideoCodec;
use confab_protocol::call::{CallSignal, IceCandidate, SdpType, SessionDescription};
use confab_protocol::PeerId;
use rtc::ice::mdns::MulticastDnsMode;
use rtc::interceptor::{
    Attribute, BandwidthEstimator, EstimatorStats, Gcc, Interceptor, PacerBuilder, Packet,
    PacketReport, Slot, StreamInfo, TaggedPacket,
};
use rtc::media_stream::MediaStreamTrack;
use rtc::peer_connection::configuration::RTCOfferOptions;
use rtc::rtcp::payload_feedbacks::full_intra_request::FullIntraRequest;
use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use rtc::rtp_transceiver::rtp_sender::{
    RTCRtpCodec, RTCRtpCodecParameters, RTCRtpCodingParameters, RTCRtpEncodingParameters,
    RtpCodecKind,
};
use rtc::sansio::Protocol;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use webrtc::media_stream::track_local::static_sample::TrackLocalStaticSample;
use webrtc::media_stream::track_local::{TrackLocal, TrackLocalEvent};
use webrtc::media_stream::track_remote::TrackRemote;
use webrtc::peer_connection::{
    configure_congestion_control, register_default_interceptors, CongestionFeedback, MediaEngine,
    PeerConnection, PeerConnectionBuilder, PeerConnectionEventHandler, RTCConfigurationBuilder,
    RTCIceCandidateInit, RTCIceServer, RTCPeerConnectionIceEvent, RTCPeerConnectionState,
    RTCSdpType, RTCSessionDescription, RTCSignalingState, Registry, SettingEngineBuilder,
};
use webrtc::rtp_transceiver::RtpSender;

/// A STUN or TURN server.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct IceServer {
    pub urls: Vec<String>,
    #[serde(default)]
    pub username: String,
    #[serde(default)]
    pub credential: String,
}

/// How peer connections are built.
#[derive(Debug, Clone)]
pub struct RtcSettings {
    pub ice_servers: Vec<IceServer>,
    /// Local UDP addresses to gather on (`0.0.0.0:0` = every interface).
    pub udp_addrs: Vec<String>,
    /// Multicast DNS for host candidates (off where only loopback exists).
    pub mdns: bool,
    pub preferred_codec: VideoCodec,
    pub start_bitrate: u32,
    pub max_bitrate: u32,
}

pub enum LinkCommand {
    Remote(CallSignal),
    Rebind(PeerId),
    Close,
}

#[derive(Debug)]
pub enum LinkEvent {
    Signal(PeerId, CallSignal),
    Connected(LinkId),
    Failed(LinkId, String),
    Closed(LinkId),
}

pub struct LinkParams {
    pub id: LinkId,
    pub peer: PeerId,
    pub offerer: bool,
    /// The polite peer rolls back its own offer when offers collide.
    pub polite: bool,
    pub rtc: Arc<RtcSettings>,
}

const H264_FMTP: &str = "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f";

fn codec_params(codec: VideoCodec) -> RTCRtpCodecParameters {
    let (mime, pt, fmtp) = match codec {
        VideoCodec::H264 => ("video/H264", 102, H264_FMTP),
        VideoCodec::Vp8 => ("video/VP8", 96, ""),
    };
    RTCRtpCodecParameters {
        rtp_codec: RTCRtpCodec {
            mime_type: mime.into(),
            clock_rate: 90_000,
            channels: 0,
            sdp_fmtp_line: fmtp.into(),
            rtcp_feedback: vec![],
        },
        payload_type: pt,
    }
}

fn opus_params() -> RTCRtpCodecParameters {
    RTCRtpCodecParameters {
        rtp_codec: RTCRtpCodec {
            mime_type: "audio/opus".into(),
            clock_rate: 48_000,
            channels: 2,
            sdp_fmtp_line: "minptime=10;useinbandfec=1".into(),
            rtcp_feedback: vec![],
        },
        payload_type: 111,
    }
}

/// Publishes the congestion controller's target so the encoder can follow it.
struct Reporting {
    inner: Gcc,
    target: Arc<AtomicU64>,
}

impl Reporting {
    fn publish(&self) {
        self.target
            .store(self.inner.target_bitrate().to_bits(), Ordering::Relaxed);
    }
}

impl BandwidthEstimator for Reporting {
    fn on_reports(&mut self, now: Instant, reports: &[PacketReport]) {
        self.inner.on_reports(now, reports);
        self.publish();
    }
    fn target_bitrate(&self) -> f64 {
        self.inner.target_bitrate()
    }
    fn handle_timeout(&mut self, now: Instant) {
        self.inner.handle_timeout(now);
        self.publish();
    }
    fn poll_timeout(&self) -> Option<Instant> {
        self.inner.poll_timeout()
    }
    fn stats(&self) -> EstimatorStats {
        self.inner.stats()
    }
}

/// Hands inbound keyframe requests (PLI, FIR) to the application; everything else flows on.
#[derive(Default)]
struct KeyframeRequests {
    read: VecDeque<TaggedPacket>,
    write: VecDeque<TaggedPacket>,
}

impl Protocol<TaggedPacket, TaggedPacket, ()> for KeyframeRequests {
    type Rout = TaggedPacket;
    type Wout = TaggedPacket;
    type Eout = ();
    type Error = rtc::shared::error::Error;
    type Time = Instant;

    fn handle_read(&mut self, mut msg: TaggedPacket) -> Result<(), Self::Error> {
        if let Packet::Rtcp(pkts) = &msg.message.packet {
            let requests: Vec<Box<dyn rtc::rtcp::Packet>> = pkts
                .iter()
                .filter(|p| {
                    let a = p.as_any();
                    a.is::<PictureLossIndication>() || a.is::<FullIntraRequest>()
                })
                .cloned()
                .collect();
            if !requests.is_empty() {
                msg.message.packet = Packet::Rtcp(requests);
                msg.message.add(Attribute::DeliverToApplication);
            }
        }
        self.read.push_back(msg);
        Ok(())
    }
    fn poll_read(&mut self) -> Option<TaggedPacket> {
        self.read.pop_front()
    }
    fn handle_write(&mut self, msg: TaggedPacket) -> Result<(), Self::Error> {
        self.write.push_back(msg);
        Ok(())
    }
    fn poll_write(&mut self) -> Option<TaggedPacket> {
        self.write.pop_front()
    }
}

impl Interceptor for KeyframeRequests {
    fn bind_local_stream(&mut self, _: &StreamInfo) {}
    fn unbind_local_stream(&mut self, _: &StreamInfo) {}
    fn bind_remote_stream(&mut self, _: &StreamInfo) {}
    fn unbind_remote_stream(&mut self, _: &StreamInfo) {}
}

enum PcEvent {
    Candidate(RTCIceCandidateInit),
    State(RTCPeerConnectionState),
    Signaling(RTCSignalingState),
    Track(Arc<dyn TrackRemote>),
}

/// Forwards the connection's callbacks to the link task (they run on the connection's own
/// driver, which must never wait on us).
struct Handler {
    tx: mpsc::Sender<PcEvent>,
}

#[async_trait::async_trait]
impl PeerConnectionEventHandler for Handler {
    async fn on_ice_candidate(&self, e: RTCPeerConnectionIceEvent) {
        match e.candidate.to_json() {
            Ok(init) => {
                let _ = self.tx.try_send(PcEvent::Candidate(init));
            }
            Err(err) => tracing::debug!("unusable local candidate: {err}"),
        }
    }
    async fn on_connection_state_change(&self, s: RTCPeerConnectionState) {
        let _ = self.tx.try_send(PcEvent::State(s));
    }
    async fn on_signaling_state_change(&self, s: RTCSignalingState) {
        let _ = self.tx.try_send(PcEvent::Signaling(s));
    }
    async fn on_track(&self, t: Arc<dyn TrackRemote>) {
        let _ = self.tx.try_send(PcEvent::Track(t));
    }
}

async fn build(
    rtc_settings: &RtcSettings,
    handler: Arc<Handler>,
    estimate: Arc<AtomicU64>,
) -> Result<Box<dyn PeerConnection>, String> {
    let e = |what: &str, err: webrtc::error::Error| format!("{what}: {err}");
    let mut me = MediaEngine::default();
    let order = match rtc_settings.preferred_codec {
        VideoCodec::H264 => [VideoCodec::H264, VideoCodec::Vp8],
        VideoCodec::Vp8 => [VideoCodec::Vp8, VideoCodec::H264],
    };
    for c in order {
        me.register_codec(codec_params(c), RtpCodecKind::Video)
            .map_err(|x| e("codec", x))?;
    }
    me.register_codec(opus_params(), RtpCodecKind::Audio)
        .map_err(|x| e("codec", x))?;
    let start = rtc_settings.start_bitrate as f64 + 64_000.0;
    let gcc = Gcc::new(start, 150_000.0, rtc_settings.max_bitrate as f64 + 64_000.0);
    estimate.store(start.to_bits(), Ordering::Relaxed);
    let registry = configure_congestion_control(
        Registry::new(),
        Reporting {
            inner: gcc,
            target: estimate,
        },
        CongestionFeedback::Twcc,
        &mut me,
    )
    .map_err(|x| e("congestion control", x))?;
    let registry =
        register_default_interceptors(registry, &mut me).map_err(|x| e("interceptors", x))?;
    // A pacer that lets a keyframe through at once (a 720p keyframe is ~0.5 Mbit).
    let registry = registry
        .with(
            Slot::Pacer,
            PacerBuilder::new().with_burst_bits(4_000_000.0).build(),
        )
        .with(Slot::from(14_000), KeyframeRequests::default());
    let mut se = SettingEngineBuilder::new()
        .with_host_acceptance_min_wait(Some(Duration::ZERO))
        .with_ice_connection_attempts(Some(Duration::from_millis(50)), Some(25))
        .with_ice_timeouts(
            Some(Duration::from_secs(4)),
            Some(Duration::from_secs(20)),
            Some(Duration::from_secs(2)),
        );
    if !rtc_settings.mdns {
        se = se.with_multicast_dns_mode(MulticastDnsMode::Disabled);
    }
    let config = RTCConfigurationBuilder::new()
        .with_ice_servers(
            rtc_settings
                .ice_servers
                .iter()
                .map(|s| RTCIceServer {
                    urls: s.urls.clone(),
                    username: s.username.clone(),
                    credential: s.credential.clone(),
                })
                .collect(),
        )
        .build();
    let pc = PeerConnectionBuilder::new()
        .with_configuration(config)
        .with_media_engine(me)
        .with_interceptor_registry(registry)
        .with_setting_engine(se.build())
        .with_handler(handler as Arc<dyn PeerConnectionEventHandler>)
        .with_udp_addrs(rtc_settings.udp_addrs.clone())
        .build()
        .await
        .map_err(|x| e("cannot create the peer connection", x))?;
    Ok(Box::new(pc))
}

/// The video codecs an SDP offers for its video section, in its order.
pub fn offered_video_codecs(sdp: &str) -> Vec<VideoCodec> {
    let mut in_video = false;
    let mut out = Vec::new();
    for line in sdp.lines() {
        if let Some(m) = line.strip_prefix("m=") {
            in_video = m.starts_with("video");
        } else if in_video {
            if let Some(rest) = line.strip_prefix("a=rtpmap:") {
                let name = rest
                    .split_whitespace()
                    .nth(1)
                    .unwrap_or("")
                    .split('/')
                    .next()
                    .unwrap_or("");
                let codec = match name.to_ascii_uppercase().as_str() {
                    "H264" => Some(VideoCodec::H264),
                    "VP8" => Some(VideoCodec::Vp8),
                    _ => None,
                };
                if let Some(c) = codec {
                    if !out.contains(&c) {
                        out.push(c);
                    }
                }
            }
        }
    }
    out
}

struct Tracks {
    codec: VideoCodec,
    audio: Arc<TrackLocalStaticSample>,
    audio_sender: Arc<dyn RtpSender>,
    audio_ssrc: u32,
    video: Arc<TrackLocalStaticSample>,
    video_sender: Arc<dyn RtpSender>,
    video_ssrc: u32,
}

async fn add_tracks(
    pc: &dyn PeerConnection,
    link: LinkId,
    codec: VideoCodec,
) -> Result<Tracks, String> {
    let make = |kind: RtpCodecKind, codec: RTCRtpCodec, ssrc: u32| {
        let name = if kind == RtpCodecKind::Audio {
            "audio"
        } else {
            "video"
        };
        TrackLocalStaticSample::new(
            Instant::now(),
            MediaStreamTrack::new(
                format!("confab-{link}"),
                format!("confab-{link}-{name}-{ssrc}"),
                format!("confab {name}"),
                kind,
                vec![RTCRtpEncodingParameters {
                    rtp_coding_parameters: RTCRtpCodingParameters {
                        ssrc: Some(ssrc),
                        ..Default::default()
                    },
                    codec,
                    ..Default::default()
                }],
            ),
        )
        .map(Arc::new)
        .map_err(|e| format!("cannot create a {name} track: {e}"))
    };
    let audio_ssrc: u32 = rand::random();
    let video_ssrc: u32 = rand::random();
    let audio = make(RtpCodecKind::Audio, opus_params().rtp_codec, audio_ssrc)?;
    let video = make(
        RtpCodecKind::Video,
        codec_params(codec).rtp_codec,
        video_ssrc,
    )?;
    let audio_sender = pc
        .add_track(audio.clone() as Arc<dyn TrackLocal>)
        .await
        .map_err(|e| format!("cannot add the audio track: {e}"))?;
    let video_sender = pc
        .add_track(video.clone() as Arc<dyn TrackLocal>)
        .await
        .map_err(|e| format!("cannot add the video track: {e}"))?;
    Ok(Tracks {
        codec,
        audio,
        audio_sender,
        audio_ssrc,
        video,
        video_sender,
        video_ssrc,
    })
}

async fn negotiated_pt(sender: &Arc<dyn RtpSender>, mime: &str) -> Option<u8> {
    let p = sender.get_parameters().await.ok()?;
    p.rtp_parameters
        .codecs
        .iter()
        .find(|c| c.rtp_codec.mime_type.eq_ignore_ascii_case(mime))
        .or(p.rtp_parameters.codecs.first())
        .map(|c| c.payload_type)
}

fn to_wire(desc: &RTCSessionDescription) -> Option<SessionDescription> {
    let kind = match desc.sdp_type {
        RTCSdpType::Offer => SdpType::Offer,
        RTCSdpType::Answer => SdpType::Answer,
        _ => return None,
    };
    Some(SessionDescription {
        kind,
        sdp: desc.sdp.clone(),
    })
}

struct Link {
    params: LinkParams,
    peer: PeerId,
    pc: Box<dyn PeerConnection>,
    hub: Arc<MediaHub>,
    events: mpsc::Sender<LinkEvent>,
    tracks: Option<Tracks>,
    estimate: Arc<AtomicU64>,
    remote_set: bool,
    pending: Vec<RTCIceCandidateInit>,
    making_offer: bool,
    signaling: RTCSignalingState,
    connected: bool,
    ever_connected: bool,
    trouble_since: Option<Instant>,
    restarts: u32,
    last_restart: Option<Instant>,
    tasks: JoinSet<()>,
}

impl Link {
    async fn send(&self, sig: CallSignal) {
        let _ = self
            .events
            .send(LinkEvent::Signal(self.peer.clone(), sig))
            .await;
    }

    async fn ensure_tracks(&mut self, codec: VideoCodec) -> Result<(), String> {
        if self.tracks.is_none() {
            let t = add_tracks(self.pc.as_ref(), self.params.id, codec).await?;
            // Keyframe requests for our video arrive on the local track.
            let (video, hub) = (t.video.clone(), self.hub.clone());
            self.tasks.spawn(async move {
                while let Some(ev) = video.poll().await {
                    if let TrackLocalEvent::OnRtcpPacket(_) = ev {
                        hub.request_keyframe(codec);
                    }
                }
            });
            self.tracks = Some(t);
        }
        Ok(())
    }

    async fn offer(&mut self, ice_restart: bool) -> Result<(), String> {
        self.making_offer = true;
        let result = async {
            let opts = ice_restart.then_some(RTCOfferOptions { ice_restart: true });
            let offer = self
                .pc
                .create_offer(opts)
                .await
                .map_err(|e| format!("cannot create an offer: {e}"))?;
            self.pc
                .set_local_description(offer.clone())
                .await
                .map_err(|e| format!("cannot use our offer: {e}"))?;
            self.signaling = RTCSignalingState::HaveLocalOffer;
            let desc = self.pc.local_description().await.unwrap_or(offer);
            if let Some(d) = to_wire(&desc) {
                self.send(CallSignal::Description { description: d }).await;
            }
            Ok(())
        }
        .await;
        self.making_offer = false;
        result
    }

    async fn on_description(&mut self, d: SessionDescription) -> Result<(), String> {
        match d.kind {
            SdpType::Offer => {
                let collision = self.making_offer || self.signaling != RTCSignalingState::Stable;
                if collision {
                    if !self.params.polite {
                        tracing::debug!("ignoring a colliding offer (impolite side)");
                        return Ok(());
                    }
                    let rollback =
                        RTCSessionDescription::rollback(None).map_err(|e| e.to_string())?;
                    self.pc
                        .set_local_description(rollback)
                        .await
                        .map_err(|e| format!("cannot roll back our offer: {e}"))?;
                    self.signaling = RTCSignalingState::Stable;
                }
                let offer = RTCSessionDescription::offer(d.sdp.clone())
                    .map_err(|e| format!("the offer is not valid SDP: {e}"))?;
                self.pc
                    .set_remote_description(offer)
                    .await
                    .map_err(|e| format!("cannot use the offer: {e}"))?;
                self.signaling = RTCSignalingState::HaveRemoteOffer;
                self.remote_set = true;
                if self.tracks.is_none() {
                    let offered = offered_video_codecs(&d.sdp);
                    let preferred = self.params.rtc.preferred_codec;
                    let codec = if offered.contains(&preferred) {
                        preferred
                    } else {
                        offered.first().copied().unwrap_or(preferred)
                    };
                    self.ensure_tracks(codec).await?;
                }
                let answer = self
                    .pc
                    .create_answer(None)
                    .await
                    .map_err(|e| format!("cannot answer: {e}"))?;
                self.pc
                    .set_local_description(answer.clone())
                    .await
                    .map_err(|e| format!("cannot use our answer: {e}"))?;
                self.signaling = RTCSignalingState::Stable;
                let desc = self.pc.local_description().await.unwrap_or(answer);
                if let Some(d) = to_wire(&desc) {
                    self.send(CallSignal::Description { description: d }).await;
                }
                self.hub.mark_answer(self.params.id);
            }
            SdpType::Answer => {
                if self.signaling != RTCSignalingState::HaveLocalOffer {
                    tracing::debug!("ignoring an answer we did not ask for");
                    return Ok(());
                }
                let answer = RTCSessionDescription::answer(d.sdp)
                    .map_err(|e| format!("the answer is not valid SDP: {e}"))?;
                self.pc
                    .set_remote_description(answer)
                    .await
                    .map_err(|e| format!("cannot use the answer: {e}"))?;
                self.signaling = RTCSignalingState::Stable;
                self.remote_set = true;
                self.hub.mark_answer(self.params.id);
            }
        }
        for c in std::mem::take(&mut self.pending) {
            if let Err(e) = self.pc.add_ice_candidate(c).await {
                tracing::debug!("a queued candidate was refused: {e}");
            }
        }
        Ok(())
    }

    async fn on_candidate(&mut self, c: IceCandidate) {
        let init = RTCIceCandidateInit {
            candidate: c.candidate,
            sdp_mid: c.sdp_mid,
            sdp_mline_index: c.sdp_m_line_index,
            username_fragment: c.username_fragment,
            ..Default::default()
        };
        if self.remote_set {
            if let Err(e) = self.pc.add_ice_candidate(init).await {
                tracing::debug!("a candidate was refused: {e}");
            }
        } else if self.pending.len() < 100 {
            self.pending.push(init);
        }
    }

    async fn on_connected(&mut self) {
        self.connected = true;
        self.trouble_since = None;
        self.restarts = 0;
        if self.ever_connected {
            return;
        }
        self.ever_connected = true;
        if let Some(t) = &self.tracks {
            let vpt = negotiated_pt(&t.video_sender, t.codec.mime()).await;
            let apt = negotiated_pt(&t.audio_sender, "audio/opus").await;
            if let Some(pt) = vpt {
                self.hub.add_video_out(VideoOut {
                    link: self.params.id,
                    codec: t.codec,
                    track: t.video.clone(),
                    ssrc: t.video_ssrc,
                    pt,
                    estimate: self.estimate.clone(),
                });
            }
            if let Some(pt) = apt {
                self.hub.add_audio_out(AudioOutput {
                    link: self.params.id,
                    track: t.audio.clone(),
                    ssrc: t.audio_ssrc,
                    pt,
                });
            }
        }
        let _ = self.events.send(LinkEvent::Connected(self.params.id)).await;
    }

    fn on_track(&mut self, track: Arc<dyn TrackRemote>) {
        let (hub, link) = (self.hub.clone(), self.params.id);
        self.tasks.spawn(async move {
            match track.kind().await {
                RtpCodecKind::Audio => hub.receive_audio(link, track).await,
                RtpCodecKind::Video => hub.receive_video(link, track).await,
                _ => {}
            }
        });
    }

    /// Every second: restart ICE while the connection is broken (the offerer does), give up
    /// after a while.
    async fn check(&mut self) -> Result<(), String> {
        let Some(since) = self.trouble_since else {
            return Ok(());
        };
        let broken_for = since.elapsed();
        if broken_for > Duration::from_secs(30) {
            return Err("the connection to this person broke and could not be restored".into());
        }
        let due = self
            .last_restart
            .is_none_or(|t| t.elapsed() > Duration::from_secs(5));
        if self.params.offerer
            && self.ever_connected
            && broken_for > Duration::from_secs(2)
            && due
            && self.restarts < 5
        {
            tracing::info!(peer = %self.peer, "connection broken; restarting ICE");
            self.restarts += 1;
            self.last_restart = Some(Instant::now());
            self.offer(true).await?;
        }
        Ok(())
    }
}

/// Runs one link until closed. Reports what happens through `events`.
pub async fn run(
    params: LinkParams,
    mut commands: mpsc::Receiver<LinkCommand>,
    events: mpsc::Sender<LinkEvent>,
    hub: Arc<MediaHub>,
) {
    let id = params.id;
    let (pc_tx, mut pc_rx) = mpsc::channel(1024);
    let estimate = Arc::new(AtomicU64::new(0));
    let pc = match build(
        &params.rtc,
        Arc::new(Handler { tx: pc_tx }),
        estimate.clone(),
    )
    .await
    {
        Ok(pc) => pc,
        Err(e) => {
            let _ = events.send(LinkEvent::Failed(id, e)).await;
            let _ = events.send(LinkEvent::Closed(id)).await;
            return;
        }
    };
    hub.add_link(id, params.peer.clone());
    let mut link = Link {
        peer: params.peer.clone(),
        params,
        pc,
        hub: hub.clone(),
        events: events.clone(),
        tracks: None,
        estimate,
        remote_set: false,
        pending: Vec::new(),
        making_offer: false,
        signaling: RTCSignalingState::Stable,
        connected: false,
        ever_connected: false,
        trouble_since: None,
        restarts: 0,
        last_restart: None,
        tasks: JoinSet::new(),
    };
    let mut failure: Option<String> = None;
    if link.params.offerer {
        let codec = link.params.rtc.preferred_codec;
        let r = match link.ensure_tracks(codec).await {
            Ok(()) => link.offer(false).await,
            Err(e) => Err(e),
        };
        if let Err(e) = r {
            failure = Some(e);
        }
    }
    // Setting up must not take forever either.
    let setup_deadline = Instant::now() + Duration::from_secs(30);
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    while failure.is_none() {
        tokio::select! {
            cmd = commands.recv() => match cmd {
                Some(LinkCommand::Remote(CallSignal::Description { description })) => {
                    if let Err(e) = link.on_description(description).await {
                        tracing::warn!(peer = %link.peer, "{e}");
                        if !link.ever_connected {
                            failure = Some(e);
                        }
                    }
                }
                Some(LinkCommand::Remote(CallSignal::Candidate { candidate })) => link.on_candidate(candidate).await,
                Some(LinkCommand::Remote(_)) => {}
                Some(LinkCommand::Rebind(p)) => {
                    hub.rebind(id, p.clone());
                    link.peer = p;
                }
                Some(LinkCommand::Close) | None => break,
            },
            ev = pc_rx.recv() => match ev {
                Some(PcEvent::Candidate(c)) => {
                    let candidate = IceCandidate {
                        candidate: c.candidate,
                        sdp_mid: c.sdp_mid,
                        sdp_m_line_index: c.sdp_mline_index,
                        username_fragment: c.username_fragment,
                    };
                    link.send(CallSignal::Candidate { candidate }).await;
                }
                Some(PcEvent::State(s)) => {
                    tracing::debug!(peer = %link.peer, "connection {s}");
                    match s {
                        RTCPeerConnectionState::Connected => link.on_connected().await,
                        RTCPeerConnectionState::Disconnected | RTCPeerConnectionState::Failed => {
                            link.connected = false;
                            link.trouble_since.get_or_insert_with(Instant::now);
                        }
                        RTCPeerConnectionState::Closed => break,
                        _ => {}
                    }
                }
                // Our own calls keep `signaling` exact; the event may arrive late.
                Some(PcEvent::Signaling(s)) => tracing::trace!(peer = %link.peer, "signaling {s}"),
                Some(PcEvent::Track(t)) => link.on_track(t),
                None => break,
            },
            _ = tick.tick() => {
                if !link.ever_connected && Instant::now() > setup_deadline {
                    failure = Some("the call could not be connected within 30 s (a firewall may block it; a TURN server helps)".into());
                } else if let Err(e) = link.check().await {
                    failure = Some(e);
                }
            }
        }
    }
    if let Some(e) = failure {
        let _ = events.send(LinkEvent::Failed(id, e)).await;
    }
    // The engine removes the link from the hub once it has kept its stats (on Closed).
    let _ = link.pc.close().await;
    // The receive tasks end once the connection is closed (their polls return None).
    let mut tasks = std::mem::take(&mut link.tasks);
    if tokio::time::timeout(Duration::from_secs(3), async {
        while tasks.join_next().await.is_some() {}
    })
    .await
    .is_err()
    {
        tasks.shutdown().await;
    }
    let _ = events.send(LinkEvent::Closed(id)).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codecs_offered_in_the_video_section() {
        let sdp = "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=rtpmap:111 opus/48000/2\r\n\
                   m=video 9 UDP/TLS/RTP/SAVPF 96 102 103\r\na=rtpmap:96 VP8/90000\r\na=rtpmap:102 H264/90000\r\na=rtpmap:103 rtx/90000\r\n";
        assert_eq!(
            offered_video_codecs(sdp),
            vec![VideoCodec::Vp8, VideoCodec::H264]
        );
        assert_eq!(
            offered_video_codecs("m=video 9 X 100\r\na=rtpmap:100 AV1/90000\r\n"),
            vec![]
        );
    }
}
