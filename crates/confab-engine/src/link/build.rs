//! Building one peer connection: codecs, interceptors (congestion control, pacer, keyframe
//! requests to the application), ICE settings, and the local tracks. Nothing here runs a
//! connection; `super::run` does.

use super::{LinkError, RelayProblem, RtcSettings};
use crate::media::{LineReading, LinkId, Scale, Stream, LAYERS};
use confab_media::video::VideoCodec;
use confab_protocol::call::{SdpType, SessionDescription};
use rtc::ice::mdns::MulticastDnsMode;
use rtc::interceptor::NackResponderBuilder;
use rtc::interceptor::{Attribute, Interceptor, Packet, Slot, StreamInfo, TaggedPacket};
use rtc::media_stream::MediaStreamTrack;
use rtc::peer_connection::certificate::RTCCertificate;
use rtc::peer_connection::configuration::interceptor_registry::{
    configure_rtcp_reports, configure_simulcast_extension_headers, configure_twcc_receiver_only,
};
use rtc::rtcp::payload_feedbacks::full_intra_request::FullIntraRequest;
use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use rtc::rtcp::receiver_report::ReceiverReport;
use rtc::rtcp::reception_report::ReceptionReport;
use rtc::rtcp::sender_report::SenderReport;
use rtc::rtp_transceiver::rtp_sender::{RTCPFeedback, TYPE_RTCP_FB_NACK};
use rtc::rtp_transceiver::rtp_sender::{
    RTCRtpCodec, RTCRtpCodecParameters, RTCRtpCodingParameters, RTCRtpEncodingParameters,
    RtpCodecKind,
};
use rtc::sansio::Protocol;
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use webrtc::media_stream::track_local::static_sample::TrackLocalStaticSample;
use webrtc::media_stream::track_local::TrackLocal;
use webrtc::media_stream::track_remote::TrackRemote;
use webrtc::peer_connection::{
    configure_congestion_control, CongestionFeedback, MediaEngine, PeerConnection,
    PeerConnectionBuilder, PeerConnectionEventHandler, RTCConfigurationBuilder,
    RTCIceCandidateInit, RTCIceConnectionState, RTCIceGatheringState, RTCIceServer,
    RTCIceTransportPolicy, RTCPeerConnectionIceEvent, RTCPeerConnectionState, RTCSdpType,
    RTCSessionDescription, RTCSignalingState, Registry, SettingEngineBuilder,
};
use webrtc::rtp_transceiver::RtpSender;

/// ICE's tick: the pace of connectivity checks (see `build`).
const ICE_CHECK_INTERVAL: Duration = Duration::from_millis(10);

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

/// The codec's retransmission stream (RFC 4588, `video/rtx` with `apt=` its payload type):
/// resends go on it under numbers of their own, and so do the congestion controller's probes
/// (`link::probe`), which repeat packets the far end already has — on the codec's own stream
/// those would carry numbers already seen, and SRTP's replay protection drops them unread.
fn rtx_params(codec: VideoCodec) -> RTCRtpCodecParameters {
    let (apt, pt) = match codec {
        VideoCodec::H264 => (102, 103),
        VideoCodec::Vp8 => (96, 97),
    };
    RTCRtpCodecParameters {
        rtp_codec: RTCRtpCodec {
            mime_type: "video/rtx".into(),
            clock_rate: 90_000,
            channels: 0,
            sdp_fmtp_line: format!("apt={apt}"),
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

/// What the peer's reception reports (in its RRs and SRs) last said about each of our streams:
/// ssrc → (extended highest sequence number, cumulative packets lost). webrtc 0.21 never feeds
/// these into its remote-inbound stats, so the link reads them here.
pub(super) type PeerReports = Arc<Mutex<HashMap<u32, (u64, u64)>>>;

/// Hands inbound keyframe requests (PLI, FIR) to the application and notes the peer's reception
/// reports; everything else flows on.
struct KeyframeRequests {
    read: VecDeque<TaggedPacket>,
    write: VecDeque<TaggedPacket>,
    reports: PeerReports,
}

impl KeyframeRequests {
    fn note(&self, blocks: &[ReceptionReport]) {
        if blocks.is_empty() {
            return;
        }
        let mut m = self.reports.lock().unwrap_or_else(|p| p.into_inner());
        for b in blocks {
            // One entry per stream we send: a crafted report naming thousands of ssrcs
            // cannot grow this beyond a handful.
            if m.len() < MAX_REPORTED_STREAMS || m.contains_key(&b.ssrc) {
                m.insert(b.ssrc, (b.last_sequence_number as u64, b.total_lost as u64));
            }
        }
    }
}

/// The simulcast layer a batch of keyframe requests (PLI, FIR) is about, when every request
/// in it names the same one of `layers` (ssrc → size); `None`: every size owes a keyframe.
pub(super) fn requested_layer(
    pkts: &[Box<dyn rtc::rtcp::Packet>],
    layers: &[(u32, Scale)],
) -> Option<Scale> {
    let mut named = pkts.iter().flat_map(|p| {
        let a = p.as_any();
        let ssrcs: Vec<u32> = if let Some(pli) = a.downcast_ref::<PictureLossIndication>() {
            vec![pli.media_ssrc]
        } else if let Some(fir) = a.downcast_ref::<FullIntraRequest>() {
            fir.fir.iter().map(|e| e.ssrc).collect()
        } else {
            Vec::new()
        };
        ssrcs.into_iter().map(|s| {
            layers
                .iter()
                .find(|(ssrc, _)| *ssrc == s)
                .map(|(_, sc)| *sc)
        })
    });
    let first = named.next()??;
    named.all(|s| s == Some(first)).then_some(first)
}

/// We send two or three streams; room for retransmission streams and a codec change.
const MAX_REPORTED_STREAMS: usize = 16;

impl Protocol<TaggedPacket, TaggedPacket, ()> for KeyframeRequests {
    type Rout = TaggedPacket;
    type Wout = TaggedPacket;
    type Eout = ();
    type Error = rtc::shared::error::Error;
    type Time = Instant;

    fn handle_read(&mut self, mut msg: TaggedPacket) -> Result<(), Self::Error> {
        if let Packet::Rtcp(pkts) = &msg.message.packet {
            for p in pkts {
                let a = p.as_any();
                if let Some(rr) = a.downcast_ref::<ReceiverReport>() {
                    self.note(&rr.reports);
                } else if let Some(sr) = a.downcast_ref::<SenderReport>() {
                    self.note(&sr.reports);
                }
            }
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

pub(super) enum PcEvent {
    Candidate(RTCIceCandidateInit),
    State(RTCPeerConnectionState),
    /// ICE found a working pair (for the set-up timeline).
    IceConnected,
    Signaling(RTCSignalingState),
    /// Every local candidate has been gathered.
    Gathered,
    Track(Arc<dyn TrackRemote>),
}

/// Forwards the connection's callbacks to the link task (they run on the connection's own
/// driver, which must never wait on us).
pub(super) struct Handler {
    pub(super) tx: mpsc::Sender<PcEvent>,
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
    async fn on_ice_connection_state_change(&self, s: RTCIceConnectionState) {
        if s == RTCIceConnectionState::Connected {
            let _ = self.tx.try_send(PcEvent::IceConnected);
        }
    }
    async fn on_signaling_state_change(&self, s: RTCSignalingState) {
        let _ = self.tx.try_send(PcEvent::Signaling(s));
    }
    async fn on_ice_gathering_state_change(&self, s: RTCIceGatheringState) {
        if s == RTCIceGatheringState::Complete {
            let _ = self.tx.try_send(PcEvent::Gathered);
        }
    }
    async fn on_track(&self, t: Arc<dyn TrackRemote>) {
        let _ = self.tx.try_send(PcEvent::Track(t));
    }
}

/// `simulcast`: the camera goes out in two encodings (links to an SFU), named by the media id
/// and RTP stream id header extensions.
pub(super) async fn build(
    rtc_settings: &RtcSettings,
    handler: Arc<Handler>,
    line: Arc<LineReading>,
    reports: PeerReports,
    simulcast: bool,
) -> Result<Box<dyn PeerConnection>, LinkError> {
    let e = |what: &'static str, source: webrtc::error::Error| LinkError::Webrtc { what, source };
    if rtc_settings.relay_only && !rtc_settings.ice_servers.iter().any(|s| s.is_turn()) {
        return Err(LinkError::NoRelay(RelayProblem::NoTurnServer));
    }
    let mut me = MediaEngine::default();
    let preferred = rtc_settings.preferred_codec;
    let available = confab_media::video::AVAILABLE;
    if !available.contains(&preferred) {
        tracing::warn!(
            "{} is not built into this Confab: offering {:?}",
            preferred.name(),
            available
        );
    }
    for c in super::codecs::registered(preferred, available) {
        me.register_codec(codec_params(c), RtpCodecKind::Video)
            .map_err(|x| e("codec", x))?;
        // Not on a simulcast link (to an SFU): its encodings are named by rid, with no SSRCs
        // in the description, and an RTX packet (made without header extensions) would name
        // neither its layer nor its repaired stream — Janus drops such a packet unread. Its
        // resends go on the layer's own stream, and it is not probed.
        if !simulcast {
            me.register_codec(rtx_params(c), RtpCodecKind::Video)
                .map_err(|x| e("codec", x))?;
        }
    }
    me.register_codec(opus_params(), RtpCodecKind::Audio)
        .map_err(|x| e("codec", x))?;
    if simulcast {
        configure_simulcast_extension_headers(&mut me).map_err(|x| e("simulcast", x))?;
    }
    let start = rtc_settings.start_bitrate as f64 + 64_000.0;
    let estimator = super::estimate::LineEstimate::new(
        start,
        150_000.0,
        rtc_settings.max_bitrate as f64 + 64_000.0,
        line.clone(),
    );
    let registry = configure_congestion_control(
        Registry::new(),
        estimator,
        CongestionFeedback::Twcc,
        &mut me,
    )
    .map_err(|x| e("congestion control", x))?;
    // webrtc's defaults (`register_default_interceptors`), but our own NACK requester (asks at
    // once and again after a round trip, where webrtc's asks on a 100 ms tick).
    for parameter in ["", "pli"] {
        let typ = TYPE_RTCP_FB_NACK.to_owned();
        let parameter = parameter.to_owned();
        me.register_feedback(RTCPFeedback { typ, parameter }, RtpCodecKind::Video);
    }
    configure_simulcast_extension_headers(&mut me).map_err(|x| e("interceptors", x))?;
    let registry =
        configure_twcc_receiver_only(registry, &mut me).map_err(|x| e("interceptors", x))?;
    let registry = configure_rtcp_reports(registry)
        .with(Slot::NackResponder, NackResponderBuilder::new().build())
        .with(
            Slot::NackGenerator,
            super::nack::NackRequester::new(line.clone()),
        )
        .with(Slot::Pacer, super::pacer::LinePacer::new(start, line))
        .with(
            Slot::from(14_000),
            KeyframeRequests {
                read: VecDeque::new(),
                write: VecDeque::new(),
                reports,
            },
        );
    // How long after ICE starts (or restarts) a pair through each kind of candidate may be
    // chosen: a direct pair, checked first and answered within a round trip, should win over a
    // relayed one. webrtc's defaults (0.5 s server-reflexive, 1 s peer-reflexive, 2 s relay)
    // made every call through TURN, and every ICE restart onto a new network, wait 2 s with a
    // working pair in hand; half a second still lets direct pairs answer first on any path
    // with a round trip under ~400 ms. With relay only there is nothing to wait for.
    let relay_wait = if rtc_settings.relay_only {
        Duration::ZERO
    } else {
        Duration::from_millis(500)
    };
    let mut se = SettingEngineBuilder::new()
        .with_host_acceptance_min_wait(Some(Duration::ZERO))
        .with_srflx_acceptance_min_wait(Some(Duration::from_millis(250)))
        .with_prflx_acceptance_min_wait(Some(Duration::from_millis(250)))
        .with_relay_acceptance_min_wait(Some(relay_wait))
        // The check interval is also how long the connection waits after ICE connects before
        // DTLS starts, and after the first remote candidate before the first check (webrtc 0.21
        // acts on both at its next ICE tick): at 50 ms that was ~100 ms of answer -> first
        // picture (`bench call`'s set-up phases). At 10 ms the DTLS handshake used to fail in
        // most runs of the 5 %-loss lab test; that was rtc-dtls losing its retransmit timer
        // (patches/rtc-dtls), not the tick.
        .with_ice_connection_attempts(
            Some(ICE_CHECK_INTERVAL),
            Some((1250 / ICE_CHECK_INTERVAL.as_millis()) as u16),
        )
        .with_ice_timeouts(
            Some(Duration::from_secs(4)),
            Some(Duration::from_secs(20)),
            Some(Duration::from_secs(2)),
        );
    // An ICE restart after a network change binds fresh sockets instead of reusing dead ones.
    se = se.with_discard_local_candidates_during_ice_restart(true);
    if !rtc_settings.mdns {
        se = se.with_multicast_dns_mode(MulticastDnsMode::Disabled);
    }
    let mut config = RTCConfigurationBuilder::new();
    if rtc_settings.relay_only {
        // Only relay candidates are gathered and paired: media goes through TURN or not at all.
        config = config.with_ice_transport_policy(RTCIceTransportPolicy::Relay);
    }
    if let Some(pem) = &rtc_settings.certificate {
        // One certificate per installation: the verification code then means something.
        let provider =
            rtc::crypto::default_provider().map_err(|e| LinkError::Certificate(e.to_string()))?;
        let cert = RTCCertificate::from_pem(pem, provider.crypto())
            .map_err(|e| LinkError::Certificate(e.to_string()))?;
        config = config.with_certificates(vec![cert]);
    }
    let config = config
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
    let mut builder = PeerConnectionBuilder::new();
    if let Some(rt) = &rtc_settings.runtime {
        // A runtime that wraps every UDP socket (the network lab's impairments).
        builder = builder.with_runtime(rt.clone());
    }
    let pc = builder
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

pub(super) struct Tracks {
    pub(super) codec: VideoCodec,
    pub(super) audio: Arc<TrackLocalStaticSample>,
    pub(super) audio_sender: Arc<dyn RtpSender>,
    pub(super) audio_ssrc: u32,
    pub(super) video: Arc<TrackLocalStaticSample>,
    pub(super) video_sender: Arc<dyn RtpSender>,
    /// One SSRC, or one per simulcast layer (`media::LAYERS`, in that order).
    pub(super) video_ssrcs: Vec<u32>,
    /// The shared screen's track: there from the start (silent until something is shared),
    /// so sharing never renegotiates a running call.
    pub(super) share: Arc<TrackLocalStaticSample>,
    pub(super) share_sender: Arc<dyn RtpSender>,
    pub(super) share_ssrc: u32,
}

/// `simulcast`: the camera's track has one encoding per `media::LAYERS`, each with its rid.
pub(super) async fn add_tracks(
    pc: &dyn PeerConnection,
    link: LinkId,
    codec: VideoCodec,
    simulcast: bool,
) -> Result<Tracks, LinkError> {
    let make = |kind: RtpCodecKind, codec: RTCRtpCodec, ssrcs: &[(u32, &str)], name: &str| {
        let encodings = ssrcs
            .iter()
            .map(|&(ssrc, rid)| RTCRtpEncodingParameters {
                rtp_coding_parameters: RTCRtpCodingParameters {
                    ssrc: Some(ssrc),
                    rid: rid.to_owned(),
                    ..Default::default()
                },
                codec: codec.clone(),
                ..Default::default()
            })
            .collect();
        TrackLocalStaticSample::new(
            Instant::now(),
            MediaStreamTrack::new(
                format!("confab-{link}"),
                format!("confab-{link}-{name}-{}", ssrcs[0].0),
                format!("confab {name}"),
                kind,
                encodings,
            ),
        )
        .map(Arc::new)
        .map_err(|source| LinkError::Webrtc {
            what: "cannot create a track",
            source,
        })
    };
    let audio_ssrc: u32 = rand::random();
    let video_ssrcs: Vec<(u32, &str)> = if simulcast {
        LAYERS.iter().map(|l| (rand::random(), l.rid)).collect()
    } else {
        vec![(rand::random(), "")]
    };
    let share_ssrc: u32 = rand::random();
    let audio = make(
        RtpCodecKind::Audio,
        opus_params().rtp_codec,
        &[(audio_ssrc, "")],
        "audio",
    )?;
    let video = make(
        RtpCodecKind::Video,
        codec_params(codec).rtp_codec,
        &video_ssrcs,
        Stream::Camera.tag(),
    )?;
    let share = make(
        RtpCodecKind::Video,
        codec_params(codec).rtp_codec,
        &[(share_ssrc, "")],
        Stream::Share.tag(),
    )?;
    let audio_sender = pc
        .add_track(audio.clone() as Arc<dyn TrackLocal>)
        .await
        .map_err(|source| LinkError::Webrtc {
            what: "cannot add the audio track",
            source,
        })?;
    let video_sender = pc
        .add_track(video.clone() as Arc<dyn TrackLocal>)
        .await
        .map_err(|source| LinkError::Webrtc {
            what: "cannot add the video track",
            source,
        })?;
    let share_sender = pc
        .add_track(share.clone() as Arc<dyn TrackLocal>)
        .await
        .map_err(|source| LinkError::Webrtc {
            what: "cannot add the screen-share track",
            source,
        })?;
    Ok(Tracks {
        codec,
        audio,
        audio_sender,
        audio_ssrc,
        video,
        video_sender,
        video_ssrcs: video_ssrcs.into_iter().map(|(s, _)| s).collect(),
        share,
        share_sender,
        share_ssrc,
    })
}

pub(super) async fn negotiated_pt(sender: &Arc<dyn RtpSender>, mime: &str) -> Option<u8> {
    let p = sender.get_parameters().await.ok()?;
    p.rtp_parameters
        .codecs
        .iter()
        .find(|c| c.rtp_codec.mime_type.eq_ignore_ascii_case(mime))
        .or(p.rtp_parameters.codecs.first())
        .map(|c| c.payload_type)
}

pub(super) fn to_wire(desc: &RTCSessionDescription) -> Option<SessionDescription> {
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

/// A new certificate for this installation, as PEM (private key included: keep it private).
pub fn new_certificate_pem() -> Result<String, LinkError> {
    use rtc::crypto::SignatureScheme;
    use rtc::peer_connection::certificate::CertificateParams;
    let e = |x: &dyn std::fmt::Display| LinkError::Certificate(x.to_string());
    let provider = rtc::crypto::default_provider().map_err(|x| e(&x))?;
    let params = CertificateParams::new(vec!["confab".to_owned()]).map_err(|x| e(&x))?;
    let cert =
        RTCCertificate::generate(provider.crypto(), SignatureScheme::EcdsaP256Sha256, params)
            .map_err(|x| e(&x))?;
    cert.serialize_pem().map_err(|x| e(&x))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rtc::rtcp::payload_feedbacks::full_intra_request::FirEntry;

    fn pli(ssrc: u32) -> Box<dyn rtc::rtcp::Packet> {
        Box::new(PictureLossIndication {
            sender_ssrc: 1,
            media_ssrc: ssrc,
        })
    }

    #[test]
    fn a_keyframe_request_keys_only_the_layer_it_names() {
        let layers = [(10, Scale::Full), (20, Scale::Half)];
        assert_eq!(requested_layer(&[pli(20)], &layers), Some(Scale::Half));
        assert_eq!(
            requested_layer(&[pli(10), pli(10)], &layers),
            Some(Scale::Full)
        );
        let fir: Box<dyn rtc::rtcp::Packet> = Box::new(FullIntraRequest {
            sender_ssrc: 1,
            media_ssrc: 0,
            fir: vec![FirEntry {
                ssrc: 20,
                sequence_number: 1,
            }],
        });
        assert_eq!(requested_layer(&[fir], &layers), Some(Scale::Half));
        // Both layers, a stream we do not know, nothing named, or no layers: every size.
        assert_eq!(requested_layer(&[pli(10), pli(20)], &layers), None);
        assert_eq!(requested_layer(&[pli(99)], &layers), None);
        assert_eq!(requested_layer(&[], &layers), None);
        assert_eq!(requested_layer(&[pli(10)], &[]), None);
    }
}
