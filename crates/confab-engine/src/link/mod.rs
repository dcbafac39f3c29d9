//! One peer connection with one remote peer, as a task. The rules live in `confab-call`:
//! [`Negotiation`] decides which remote descriptions and candidates to apply (perfect
//! negotiation, limits on what the other side sends), [`LinkHealth`] decides when to restart ICE
//! and when to give up. This task only carries those decisions out on the webrtc-rs connection
//! (built in [`build`]) and registers the tracks with the media hub once connected.

mod build;
mod codecs;
mod estimate;
mod nack;
mod pacer;
mod probe;
mod quality;
mod resend;
mod trendline;

pub use build::new_certificate_pem;
pub use confab_call::health::HealthRules;

use crate::ice::IceServer;
use crate::media::{
    AudioOutput, Layer, LineReading, LinkId, MediaHub, Scale, Stream, VideoOut, LAYERS,
};
use crate::route::RouteWatch;
use crate::stats::{NetMeter, Phase};
use build::{PcEvent, Tracks};
use confab_call::health::{ConnState, HealthAction, LinkFailure, LinkHealth};
use confab_call::layers::{LayerChoice, LayerRules, Reading, Want};
use confab_call::negotiation::{
    CandidateDecision, Decision, Negotiation, NegotiationRules, Refused,
};
use confab_call::verify::{Role as VerifyRole, Verifier, VerifyError};
use confab_call::Millis;
use confab_media::video::VideoCodec;
use confab_protocol::call::{CallSignal, IceCandidate, SdpType, SessionDescription};
use confab_protocol::PeerId;
use rtc::peer_connection::configuration::RTCOfferOptions;
use rtc::rtp_transceiver::rtp_sender::RtpCodecKind;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use webrtc::data_channel::{
    DataChannel, DataChannelEvent, RTCDataChannelInit, RTCDataChannelState,
};
use webrtc::media_stream::track_local::{TrackLocal, TrackLocalEvent};
use webrtc::media_stream::track_remote::TrackRemote;
use webrtc::peer_connection::{
    PeerConnection, RTCIceCandidateInit, RTCPeerConnectionState, RTCSessionDescription,
};
use webrtc::rtp_transceiver::RtpSender;

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
    /// A runtime that wraps every UDP socket (tests and benchmarks on an impaired network);
    /// `None`: webrtc's own tokio runtime.
    pub runtime: Option<Arc<dyn webrtc::runtime::Runtime>>,
    /// This installation's DTLS certificate (PEM with its private key); `None`: a new one per
    /// connection.
    pub certificate: Option<String>,
    /// Send media only through a TURN relay (`RTCIceTransportPolicy::Relay`): the other side
    /// never learns our addresses. Needs a TURN server in `ice_servers`.
    pub relay_only: bool,
    /// When a broken link gets an ICE restart and when it is given up (the protocol's
    /// schedule by default; tests shorten it).
    pub health: HealthRules,
}

impl RtcSettings {
    /// Whether we gather on loopback ourselves (then loopback candidates are legitimate).
    fn on_loopback(&self) -> bool {
        self.udp_addrs.iter().any(|a| {
            a.parse::<std::net::SocketAddr>()
                .is_ok_and(|s| s.ip().is_loopback())
        })
    }
}

/// Why a link ended badly.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error("{what}: {source}")]
    Webrtc {
        what: &'static str,
        #[source]
        source: webrtc::error::Error,
    },
    #[error("{0}")]
    Refused(#[from] Refused),
    #[error("{0}")]
    GaveUp(#[from] LinkFailure),
    #[error("the connection to this person stopped because of an internal error")]
    Crashed,
    #[error("this installation's certificate cannot be used: {0}")]
    Certificate(String),
    #[error("{0}")]
    NoRelay(RelayProblem),
}

impl LinkError {
    /// The code the engine's error event carries.
    pub fn code(&self) -> crate::error::ErrorCode {
        match self {
            LinkError::NoRelay(_) => crate::error::ErrorCode::Relay,
            _ => crate::error::ErrorCode::CallFailed,
        }
    }
}

/// Why "relay only" could not get a relay.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RelayProblem {
    #[error("relay only is on, but no TURN server is set (add one under Network)")]
    NoTurnServer,
    #[error(
        "relay only is on, but no TURN server gave us a relay address: check its username and \
         password, and that it can be reached"
    )]
    NoRelayAddress,
}

/// What a link's verification came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verification {
    /// The code both people should see (`123 456`), or why there is none.
    pub code: Result<String, VerifyError>,
    /// The other side's full certificate fingerprint (`sha-256 ab:cd:…`).
    pub fingerprint: Option<String>,
}

pub enum LinkCommand {
    Remote(CallSignal),
    Rebind(PeerId),
    /// Our signaling connection dropped: no ICE restart until it is back.
    SignalingDown,
    /// Our signaling connection is back after a drop.
    SignalingBack,
    /// Our side of this link's path is gone (it reported [`LinkEvent::PathMoved`]).
    PathGone,
    /// A chat wire message for the other side (`confab_call::chat::Wire`, as JSON).
    Chat(String),
    Close,
}

/// The chat data channel: negotiated out of band with this stream id on both sides (the web
/// client does the same), so neither side waits for the other to announce it.
pub const CHAT_CHANNEL_ID: u16 = 0;

#[derive(Debug)]
pub enum LinkEvent {
    /// A message for the far end, from link `LinkId`.
    Signal(LinkId, PeerId, CallSignal),
    Connected(LinkId),
    Verified(LinkId, Verification),
    /// The chat channel opened: the engine may hand over the chat so far.
    ChatOpen(LinkId),
    /// A chat wire message from the other side (at most `chat::MAX_WIRE_BYTES` are read).
    Chat(LinkId, Vec<u8>),
    Failed(LinkId, LinkError),
    /// The connection broke (an ICE restart follows if it stays broken).
    PathLost(LinkId),
    /// The system would now send this link's packets from another address (or could not send
    /// them): our network changed under it. The engine answers with `PathGone` (after
    /// `SignalingDown` when the signaling connection's way moved too).
    PathMoved(LinkId),
    Closed(LinkId),
    /// A link from an SFU wants the other layer of the sender's camera.
    Layer(LinkId, Want),
}

/// What a link is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// With one other person, directly (the mesh): both ways, chat, verification.
    Mesh,
    /// Our media to an SFU: sends only; we offer.
    Publish,
    /// One person's media from an SFU: receives only; the SFU offers.
    Subscribe,
}

pub struct LinkParams {
    pub id: LinkId,
    pub role: Role,
    pub peer: PeerId,
    pub offerer: bool,
    /// The polite peer rolls back its own offer when offers collide.
    pub polite: bool,
    /// A value both ends know for this link (the verification code covers it).
    pub binding: String,
    pub rtc: Arc<RtcSettings>,
}

struct Link {
    params: LinkParams,
    peer: PeerId,
    pc: Box<dyn PeerConnection>,
    hub: Arc<MediaHub>,
    events: mpsc::Sender<LinkEvent>,
    tracks: Option<Tracks>,
    line: Arc<LineReading>,
    /// The peer's reception reports about our streams (its side of the loss).
    reports: build::PeerReports,
    /// Rates and loss of the path, from the connection's counters.
    meter: NetMeter,
    /// On a link from an SFU: which layer of the sender's camera to ask for.
    layers: Option<LayerChoice>,
    negotiation: Negotiation,
    health: LinkHealth,
    verifier: Verifier,
    verified: bool,
    epoch: Instant,
    tasks: JoinSet<()>,
    chat: Option<Arc<dyn DataChannel>>,
    /// Chat said before the channel opened (at most a few; sent once it is open).
    chat_waiting: Vec<String>,
    /// Relay candidates gathered over the link's life.
    relay_candidates: usize,
    /// The way to the selected pair's far end, watched while the link is connected.
    route: Option<RouteWatch>,
}

fn webrtc(what: &'static str) -> impl FnOnce(webrtc::error::Error) -> LinkError {
    move |source| LinkError::Webrtc { what, source }
}

impl Link {
    fn now(&self) -> Millis {
        self.epoch.elapsed().as_millis() as Millis
    }

    async fn send(&self, sig: CallSignal) {
        if self.params.role != Role::Mesh && matches!(sig, CallSignal::Verify { .. }) {
            // The code proves two people's own connection: there is none through an SFU.
            return;
        }
        let _ = self
            .events
            .send(LinkEvent::Signal(self.params.id, self.peer.clone(), sig))
            .await;
    }

    async fn ensure_tracks(&mut self, codec: VideoCodec) -> Result<(), LinkError> {
        if self.tracks.is_none() {
            let simulcast = self.params.role == Role::Publish && self.hub.camera_fits_simulcast();
            let t = build::add_tracks(self.pc.as_ref(), self.params.id, codec, simulcast).await?;
            self.hub.warm_up(self.params.id, codec);
            // Keyframe requests for our video arrive on the local tracks; for a simulcast
            // camera, only the layer they name owes one.
            let layers: Vec<(u32, Scale)> = if t.video_ssrcs.len() > 1 {
                t.video_ssrcs
                    .iter()
                    .zip(LAYERS)
                    .map(|(ssrc, l)| (*ssrc, l.scale))
                    .collect()
            } else {
                Vec::new()
            };
            for (track, stream, layers) in [
                (t.video.clone(), Stream::Camera, layers),
                (t.share.clone(), Stream::Share, Vec::new()),
            ] {
                let hub = self.hub.clone();
                self.tasks.spawn(async move {
                    while let Some(ev) = track.poll().await {
                        if let TrackLocalEvent::OnRtcpPacket(pkts) = ev {
                            let scale = build::requested_layer(&pkts, &layers);
                            hub.request_keyframe(stream, codec, scale);
                        }
                    }
                });
            }
            self.tracks = Some(t);
        }
        Ok(())
    }

    /// Sends our local description, with the verification's commitment before it (offerer)
    /// or its reveal after it (answerer) when one is due.
    async fn send_local_description(&mut self, fallback: RTCSessionDescription) {
        let desc = self.pc.local_description().await.unwrap_or(fallback);
        let verify = self.verifier.local_description(&desc.sdp);
        let commit_first = matches!(
            &verify,
            Some(CallSignal::Verify {
                commit: Some(_),
                ..
            })
        );
        if commit_first {
            if let Some(v) = verify.clone() {
                self.send(v).await;
            }
        }
        if let Some(d) = build::to_wire(&desc) {
            self.send(CallSignal::Description { description: d }).await;
        }
        if !commit_first {
            if let Some(v) = verify {
                self.send(v).await;
            }
        }
        self.report_verification().await;
    }

    async fn on_verify(&mut self, commit: Option<String>, reveal: Option<String>) {
        if let Some(v) = self.verifier.signal(commit, reveal) {
            self.send(v).await;
        }
        self.report_verification().await;
    }

    /// Tells the engine the code once it is known (or that it cannot be).
    async fn report_verification(&mut self) {
        if self.verified || self.params.role != Role::Mesh {
            return;
        }
        if let Some(code) = self.verifier.result().cloned() {
            self.verified = true;
            let fingerprint = self
                .pc
                .remote_description()
                .await
                .and_then(|d| confab_call::verify::fingerprint(&d.sdp));
            let _ = self
                .events
                .send(LinkEvent::Verified(
                    self.params.id,
                    Verification { code, fingerprint },
                ))
                .await;
        }
    }

    async fn offer(&mut self, ice_restart: bool) -> Result<(), LinkError> {
        self.negotiation.offer_started();
        let result = async {
            let opts = ice_restart.then_some(RTCOfferOptions { ice_restart: true });
            let offer = self
                .pc
                .create_offer(opts)
                .await
                .map_err(webrtc("cannot create an offer"))?;
            self.pc
                .set_local_description(offer.clone())
                .await
                .map_err(webrtc("cannot use our offer"))?;
            self.negotiation.offer_set();
            self.send_local_description(offer).await;
            Ok(())
        }
        .await;
        self.negotiation.offer_finished();
        result
    }

    /// The video codec to send when answering: ours if offered, else the offer's first we know.
    fn answer_codec(&self, sdp: &str) -> VideoCodec {
        codecs::answering(
            self.params.rtc.preferred_codec,
            &confab_call::sdp::video_codecs(sdp),
            confab_media::video::AVAILABLE,
        )
    }

    async fn on_description(&mut self, d: SessionDescription) -> Result<(), LinkError> {
        let now = self.now();
        let rollback = match self.negotiation.on_remote_description(&d, now)? {
            Decision::Ignore(why) => {
                tracing::debug!(peer = %self.peer, "ignoring {why}");
                return Ok(());
            }
            Decision::Apply { rollback } => rollback,
        };
        if rollback {
            let rb = RTCSessionDescription::rollback(None).map_err(webrtc("cannot roll back"))?;
            self.pc
                .set_local_description(rb)
                .await
                .map_err(webrtc("cannot roll back our offer"))?;
            self.negotiation.rolled_back();
        }
        // A browser names its tracks its own way: the screen is told by its place (the second
        // video section), and marked the way our own share track's id is.
        let sdp = match (self.params.role, confab_call::sdp::mesh_share_mid(&d.sdp)) {
            (Role::Mesh, Some(mid)) => confab_call::sdp::mark_shares(&d.sdp, &[mid]),
            _ => d.sdp.clone(),
        };
        let desc = match d.kind {
            SdpType::Offer => RTCSessionDescription::offer(sdp),
            SdpType::Answer => RTCSessionDescription::answer(sdp),
        }
        .map_err(webrtc("the session description is not valid SDP"))?;
        self.pc
            .set_remote_description(desc)
            .await
            .map_err(webrtc("cannot use the session description"))?;
        let waiting = self.negotiation.remote_applied(d.kind);
        if let Some(v) = self.verifier.remote_description(&d.sdp) {
            self.send(v).await;
        }
        if d.kind == SdpType::Offer {
            if self.tracks.is_none() && self.params.role != Role::Subscribe {
                let codec = self.answer_codec(&d.sdp);
                self.ensure_tracks(codec).await?;
            }
            let answer = self
                .pc
                .create_answer(None)
                .await
                .map_err(webrtc("cannot answer"))?;
            self.pc
                .set_local_description(answer.clone())
                .await
                .map_err(webrtc("cannot use our answer"))?;
            self.negotiation.answer_set();
            self.send_local_description(answer).await;
        }
        self.hub.mark_answer(self.params.id);
        for c in waiting {
            self.add_candidate(c).await;
        }
        Ok(())
    }

    async fn add_candidate(&self, c: IceCandidate) {
        let init = RTCIceCandidateInit {
            candidate: c.candidate,
            sdp_mid: c.sdp_mid,
            sdp_mline_index: c.sdp_m_line_index,
            username_fragment: c.username_fragment,
            ..Default::default()
        };
        if let Err(e) = self.pc.add_ice_candidate(init).await {
            tracing::debug!(peer = %self.peer, "a candidate was refused: {e}");
        }
    }

    async fn on_candidate(&mut self, c: IceCandidate) {
        match self.negotiation.on_remote_candidate(c) {
            CandidateDecision::Add(c) => self.add_candidate(c).await,
            CandidateDecision::Queued => {}
            CandidateDecision::Dropped(why) => {
                tracing::debug!(peer = %self.peer, "dropping a remote candidate: {why}")
            }
        }
    }

    /// The media id of the transceiver `sender` belongs to.
    async fn mid_of(&self, sender: &Arc<dyn RtpSender>) -> Option<String> {
        for t in self.pc.get_transceivers().await {
            if let Ok(Some(s)) = t.sender().await {
                if s.id() == sender.id() {
                    return t.mid().await.ok().flatten();
                }
            }
        }
        None
    }

    async fn on_connected(&mut self) {
        let now = self.now();
        if !self.health.on_state(ConnState::Connected, now) {
            return;
        }
        if let Some(t) = &self.tracks {
            let apt = build::negotiated_pt(&t.audio_sender, "audio/opus").await;
            // A simulcast camera's packets carry its media id and the layer's rid.
            let layers: Vec<Option<(Layer, String)>> = if t.video_ssrcs.len() > 1 {
                let mid = self.mid_of(&t.video_sender).await.unwrap_or_default();
                LAYERS.iter().map(|l| Some((*l, mid.clone()))).collect()
            } else {
                vec![None]
            };
            let camera = t
                .video_ssrcs
                .iter()
                .zip(layers)
                .map(|(ssrc, layer)| (Stream::Camera, layer, &t.video_sender, &t.video, *ssrc));
            let share = (Stream::Share, None, &t.share_sender, &t.share, t.share_ssrc);
            for (stream, layer, sender, track, ssrc) in camera.chain([share]) {
                if let Some(pt) = build::negotiated_pt(sender, t.codec.mime()).await {
                    self.hub.add_video_out(VideoOut {
                        link: self.params.id,
                        stream,
                        layer,
                        codec: t.codec,
                        track: track.clone(),
                        ssrc,
                        pt,
                        line: self.line.clone(),
                    });
                }
            }
            if let Some(pt) = apt {
                self.hub.add_audio_out(AudioOutput {
                    link: self.params.id,
                    track: t.audio.clone(),
                    ssrc: t.audio_ssrc,
                    pt,
                    line: self.line.clone(),
                });
            }
        }
        let _ = self.events.send(LinkEvent::Connected(self.params.id)).await;
    }

    /// Sends the chat said so far, once the channel is open (called again every second).
    async fn flush_chat(&mut self) {
        let Some(dc) = &self.chat else {
            self.chat_waiting.clear();
            return;
        };
        if self.chat_waiting.is_empty()
            || !matches!(dc.ready_state().await, Ok(RTCDataChannelState::Open))
        {
            return;
        }
        for wire in std::mem::take(&mut self.chat_waiting) {
            // Never waits: with no send-buffer limit set, a send only queues.
            if let Err(e) = dc.send_text(&wire).await {
                tracing::debug!(peer = %self.peer, "a chat message was not sent: {e}");
            }
        }
    }

    /// Opens the chat channel and forwards what arrives on it to the engine.
    async fn open_chat(&mut self) {
        let init = RTCDataChannelInit {
            negotiated: Some(CHAT_CHANNEL_ID),
            ..Default::default()
        };
        let dc = match self.pc.create_data_channel("chat", Some(init)).await {
            Ok(dc) => dc,
            Err(e) => {
                tracing::warn!(peer = %self.peer, "no chat on this link: {e}");
                return;
            }
        };
        self.chat = Some(dc.clone());
        let (events, id) = (self.events.clone(), self.params.id);
        self.tasks.spawn(async move {
            while let Some(ev) = dc.poll().await {
                let ev = match ev {
                    DataChannelEvent::OnOpen => LinkEvent::ChatOpen(id),
                    DataChannelEvent::OnMessage(m)
                        if m.data.len() <= confab_call::chat::MAX_WIRE_BYTES =>
                    {
                        LinkEvent::Chat(id, m.data.to_vec())
                    }
                    DataChannelEvent::OnMessage(m) => {
                        tracing::debug!(
                            link = id,
                            "a {}-byte chat message was dropped",
                            m.data.len()
                        );
                        continue;
                    }
                    DataChannelEvent::OnClose => break,
                    _ => continue,
                };
                // Err(true): the engine is gone.
                let sent = if matches!(ev, LinkEvent::ChatOpen(_)) {
                    events.send(ev).await.map_err(|_| true)
                } else {
                    // A flood from the other side never queues up in front of the engine's
                    // other link events: what does not fit is dropped (the chat's own rate
                    // limit would refuse it anyway).
                    events
                        .try_send(ev)
                        .map_err(|e| matches!(e, mpsc::error::TrySendError::Closed(_)))
                };
                match sent {
                    Ok(()) => {}
                    Err(true) => break,
                    Err(false) => {
                        tracing::debug!(link = id, "a chat message was dropped: engine busy")
                    }
                }
            }
        });
    }

    fn on_track(&mut self, track: Arc<dyn TrackRemote>) {
        if self.params.role == Role::Publish {
            return;
        }
        let (hub, link) = (self.hub.clone(), self.params.id);
        self.tasks.spawn(async move {
            match track.kind().await {
                RtpCodecKind::Audio => hub.receive_audio(link, track).await,
                RtpCodecKind::Video => hub.receive_video(link, track).await,
                _ => {}
            }
        });
    }

    /// Every second: a reading of the path for the stats, and what the link's health says to
    /// do.
    async fn check(&mut self) -> Result<(), LinkError> {
        let sample = quality::sample(self.pc.as_ref(), &self.reports).await;
        self.watch_route(sample.path_far).await;
        let mut network = self.meter.push(Instant::now(), sample);
        let estimate = self.line.estimate_bps();
        network.estimate_kbps = (estimate > 0.0).then_some(estimate / 1000.0);
        network.send_queue_ms = self.line.pacer_queue_ms();
        // The NACK requester asks again after a round trip.
        self.line.set_rtt_ms(
            network
                .rtt_ms
                .map_or(0, |ms| ms.round().clamp(1.0, 10_000.0) as u32),
        );
        network.camera_scale = self.line.camera_divisor();
        network.nacked = self.line.nacked();
        // Opus is told the loss of our audio (as libwebrtc tells it): a queue that drops a
        // keyframe's burst takes video, not the sound between.
        let audio_loss = self
            .tracks
            .as_ref()
            .and_then(|t| self.meter.send_loss_of(t.audio_ssrc));
        self.line.set_send_loss_pct(audio_loss.unwrap_or(0.0));
        let now = self.now();
        if let Some(layers) = &mut self.layers {
            let (keyframe_requests, receiving) = self.hub.camera_reception(self.params.id);
            let reading = Reading {
                loss_pct: network.loss_pct,
                keyframe_requests,
                receiving,
            };
            if let Some(want) = layers.tick(now, reading) {
                tracing::info!(peer = %self.peer, ?want, ?reading, "asking the SFU for another layer");
                let _ = self
                    .events
                    .send(LinkEvent::Layer(self.params.id, want))
                    .await;
            }
        }
        self.hub.set_network(self.params.id, network);
        match self.health.tick(now) {
            HealthAction::Nothing => Ok(()),
            HealthAction::RestartIce => {
                tracing::info!(peer = %self.peer, "connection broken; restarting ICE");
                self.offer(true).await
            }
            HealthAction::Fail(f) => Err(f.into()),
        }
    }

    /// While connected: has the way to the far end moved since the pair was selected? A link
    /// from an SFU does not watch (the SFU makes its offers; it restarts on its own schedule).
    async fn watch_route(&mut self, far: Option<std::net::IpAddr>) {
        if self.params.role == Role::Subscribe
            || !self.health.ever_connected()
            || self.health.broken()
        {
            return;
        }
        match (&self.route, far) {
            (Some(r), Some(f)) if r.far() == f => {
                if r.moved() {
                    tracing::info!(peer = %self.peer, far = %f, "our route to the path moved");
                    self.route = None;
                    let _ = self.events.send(LinkEvent::PathMoved(self.params.id)).await;
                }
            }
            (_, far) => self.route = far.and_then(RouteWatch::new),
        }
    }

    /// One command; `Ok(false)` ends the link.
    async fn command(&mut self, cmd: Option<LinkCommand>) -> Result<bool, LinkError> {
        match cmd {
            Some(LinkCommand::Remote(CallSignal::Description { description })) => {
                if let Err(e) = self.on_description(description).await {
                    tracing::warn!(peer = %self.peer, "{e}");
                    // A connection that never worked cannot recover from a bad description; a
                    // working one keeps going (its media is unaffected).
                    if !self.health.ever_connected() {
                        return Err(e);
                    }
                }
            }
            Some(LinkCommand::Remote(CallSignal::Candidate { candidate })) => {
                self.on_candidate(candidate).await
            }
            Some(LinkCommand::Remote(CallSignal::Verify { commit, reveal })) => {
                self.on_verify(commit, reveal).await
            }
            Some(LinkCommand::Remote(_)) => {}
            Some(LinkCommand::Chat(wire)) => {
                if self.chat_waiting.len() < 16 {
                    self.chat_waiting.push(wire);
                }
                self.flush_chat().await;
            }
            Some(LinkCommand::Rebind(p)) => {
                self.hub.rebind(self.params.id, p.clone());
                self.peer = p;
                let now = self.now();
                if self.health.peer_back(now) == HealthAction::RestartIce {
                    tracing::info!(peer = %self.peer, "back under a new id during a break; restarting ICE");
                    self.offer(true).await?;
                }
            }
            Some(LinkCommand::SignalingDown) => self.health.signaling_down(),
            Some(LinkCommand::PathGone) => {
                let now = self.now();
                if self.health.path_gone(now) == HealthAction::RestartIce {
                    tracing::info!(peer = %self.peer, "our path is gone; restarting ICE");
                    self.offer(true).await?;
                }
            }
            Some(LinkCommand::SignalingBack) => {
                let now = self.now();
                if self.health.signaling_back(now) == HealthAction::RestartIce {
                    tracing::info!(peer = %self.peer, "signaling back during a break; restarting ICE");
                    self.offer(true).await?;
                }
            }
            Some(LinkCommand::Close) | None => return Ok(false),
        }
        Ok(true)
    }

    /// One event of the peer connection; `Ok(false)` ends the link.
    async fn pc_event(&mut self, ev: Option<PcEvent>) -> Result<bool, LinkError> {
        match ev {
            Some(PcEvent::Candidate(c)) => {
                if c.candidate.contains(" typ relay") {
                    self.relay_candidates += 1;
                }
                let candidate = IceCandidate {
                    candidate: c.candidate,
                    sdp_mid: c.sdp_mid,
                    sdp_m_line_index: c.sdp_mline_index,
                    username_fragment: c.username_fragment,
                };
                self.send(CallSignal::Candidate { candidate }).await;
            }
            Some(PcEvent::State(s)) => {
                tracing::debug!(peer = %self.peer, "connection {s}");
                let now = self.now();
                match s {
                    RTCPeerConnectionState::Connected => {
                        self.hub.mark(self.params.id, Phase::Connected);
                        self.on_connected().await
                    }
                    RTCPeerConnectionState::Disconnected | RTCPeerConnectionState::Failed => {
                        self.health.on_state(ConnState::Broken, now);
                        if self.health.ever_connected() {
                            // Our network may have changed: have the signaling connection,
                            // which the ICE restart will need, checked meanwhile.
                            let _ = self.events.send(LinkEvent::PathLost(self.params.id)).await;
                        }
                    }
                    RTCPeerConnectionState::Closed => return Ok(false),
                    _ => {}
                }
            }
            Some(PcEvent::IceConnected) => self.hub.mark(self.params.id, Phase::IceConnected),
            // The negotiation keeps the signaling state exact; the event may arrive late.
            Some(PcEvent::Signaling(s)) => tracing::trace!(peer = %self.peer, "signaling {s}"),
            // With relay only, no relay address means no call: say so now rather than after
            // the 30 s setup deadline.
            Some(PcEvent::Gathered) => {
                if self.params.rtc.relay_only && self.relay_candidates == 0 {
                    return Err(LinkError::NoRelay(RelayProblem::NoRelayAddress));
                }
            }
            Some(PcEvent::Track(t)) => self.on_track(t),
            None => return Ok(false),
        }
        Ok(true)
    }
}

/// Reports `Closed` even if the link task panics or is aborted, so the engine never waits for
/// a link that is gone.
struct ClosedGuard {
    id: LinkId,
    events: mpsc::Sender<LinkEvent>,
    armed: bool,
}

impl Drop for ClosedGuard {
    fn drop(&mut self) {
        if self.armed {
            // Unwinding from a panic, or aborted by the engine at shutdown.
            if std::thread::panicking() {
                tracing::error!(link = self.id, "a link task panicked");
                let _ = self
                    .events
                    .try_send(LinkEvent::Failed(self.id, LinkError::Crashed));
            }
            let _ = self.events.try_send(LinkEvent::Closed(self.id));
        }
    }
}

/// Runs one link until closed. Reports what happens through `events`; always ends with
/// `Closed` (also after a panic, through a drop guard).
pub async fn run(
    params: LinkParams,
    mut commands: mpsc::Receiver<LinkCommand>,
    events: mpsc::Sender<LinkEvent>,
    hub: Arc<MediaHub>,
) {
    let id = params.id;
    let mut guard = ClosedGuard {
        id,
        events: events.clone(),
        armed: true,
    };
    let (pc_tx, mut pc_rx) = mpsc::channel(1024);
    let line = Arc::new(LineReading::default());
    let reports = build::PeerReports::default();
    let pc = match build::build(
        &params.rtc,
        Arc::new(build::Handler { tx: pc_tx }),
        line.clone(),
        reports.clone(),
        params.role == Role::Publish && hub.camera_fits_simulcast(),
    )
    .await
    {
        Ok(pc) => pc,
        Err(e) => {
            guard.armed = false;
            let _ = events.send(LinkEvent::Failed(id, e)).await;
            let _ = events.send(LinkEvent::Closed(id)).await;
            return;
        }
    };
    hub.add_link(id, params.peer.clone(), params.role != Role::Mesh);
    let rules = NegotiationRules {
        allow_loopback: params.rtc.on_loopback(),
        allow_mdns: params.rtc.mdns,
        ..Default::default()
    };
    let layers =
        (params.role == Role::Subscribe).then(|| LayerChoice::new(LayerRules::default(), 0));
    let mut link = Link {
        peer: params.peer.clone(),
        negotiation: Negotiation::new(rules, params.polite, 0),
        health: LinkHealth::new(params.rtc.health, params.offerer, 0),
        verifier: Verifier::new(
            if params.offerer {
                VerifyRole::Offerer
            } else {
                VerifyRole::Answerer
            },
            format!("{:032x}", rand::random::<u128>()),
            params.binding.clone(),
        ),
        verified: false,
        epoch: Instant::now(),
        params,
        pc,
        hub: hub.clone(),
        events: events.clone(),
        tracks: None,
        line,
        reports,
        meter: NetMeter::default(),
        layers,
        tasks: JoinSet::new(),
        chat: None,
        chat_waiting: Vec::new(),
        relay_candidates: 0,
        route: None,
    };
    // Before the first offer, so that it carries the data channel's m=application section.
    if link.params.role == Role::Mesh {
        link.open_chat().await;
    }
    let mut failure: Option<LinkError> = None;
    if link.params.offerer {
        let codec = codecs::sending(
            link.params.rtc.preferred_codec,
            confab_media::video::AVAILABLE,
        );
        let r = match link.ensure_tracks(codec).await {
            Ok(()) => link.offer(false).await,
            Err(e) => Err(e),
        };
        if let Err(e) = r {
            failure = Some(e);
        }
    }
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    while failure.is_none() {
        let step = tokio::select! {
            cmd = commands.recv() => link.command(cmd).await,
            ev = pc_rx.recv() => link.pc_event(ev).await,
            _ = tick.tick() => {
                link.flush_chat().await;
                link.check().await.map(|()| true)
            }
        };
        match step {
            Ok(true) => {}
            Ok(false) => break,
            Err(e) => failure = Some(e),
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
    guard.armed = false;
    let _ = events.send(LinkEvent::Closed(id)).await;
}
