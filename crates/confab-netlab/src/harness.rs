//! Bare webrtc peer connections for proving the lab: built on a given runtime, connected by
//! a non-trickle offer/answer exchanged in memory (or over the probe's stdin/stdout), with
//! an RTP sender and sink that number their packets. Used by this crate's tests and by its
//! `netlab-probe` binary; handy for any test that needs two real peers without the engine.

use bytes::Bytes;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch};
use webrtc::data_channel::DataChannel;
use webrtc::media_stream::track_local::static_rtp::TrackLocalStaticRTP;
use webrtc::media_stream::track_local::TrackLocal;
use webrtc::media_stream::track_remote::{TrackRemote, TrackRemoteEvent};
use webrtc::peer_connection::{
    MediaEngine, PeerConnection, PeerConnectionBuilder, PeerConnectionEventHandler,
    RTCConfigurationBuilder, RTCIceGatheringState, RTCIceServer, RTCIceTransportPolicy,
    RTCPeerConnectionState, RTCSessionDescription, RTCStatsReportEntry, SettingEngineBuilder,
    StatsSelector,
};
use webrtc::runtime::Runtime;

/// Errors of the harness.
#[derive(Debug, thiserror::Error)]
pub enum HarnessError {
    #[error("webrtc: {what}: {message}")]
    Webrtc { what: &'static str, message: String },
    #[error("timed out after {0:?} waiting for {1}")]
    Timeout(Duration, String),
    #[error("the peer connection closed while waiting for {0}")]
    Closed(String),
}

fn rtc_err(what: &'static str) -> impl FnOnce(webrtc::error::Error) -> HarnessError {
    move |e| HarnessError::Webrtc {
        what,
        message: e.to_string(),
    }
}

/// The payload type and clock of the one video codec the harness negotiates (VP8).
pub const VIDEO_PT: u8 = 96;

/// How a harness peer is built.
#[derive(Clone, Debug)]
pub struct PeerOptions {
    /// The runtime (e.g. a [`crate::NetLab`]'s); `None`: webrtc's default.
    pub runtime: Option<Arc<dyn Runtime>>,
    /// Local addresses to gather on; `127.0.0.1:0` by default.
    pub udp_addrs: Vec<String>,
    pub ice_servers: Vec<RTCIceServer>,
    /// Only relay (TURN) candidates.
    pub relay_only: bool,
    /// ICE disconnected/failed timeouts and keepalive interval.
    pub disconnected_timeout: Duration,
    pub failed_timeout: Duration,
    pub keepalive: Duration,
}

impl Default for PeerOptions {
    fn default() -> Self {
        PeerOptions {
            runtime: None,
            udp_addrs: vec!["127.0.0.1:0".into()],
            ice_servers: Vec::new(),
            relay_only: false,
            disconnected_timeout: Duration::from_secs(4),
            failed_timeout: Duration::from_secs(20),
            keepalive: Duration::from_secs(1),
        }
    }
}

struct Handler {
    state: watch::Sender<RTCPeerConnectionState>,
    gathered: watch::Sender<bool>,
    tracks: mpsc::Sender<Arc<dyn TrackRemote>>,
    channels: mpsc::Sender<Arc<dyn DataChannel>>,
}

#[async_trait::async_trait]
impl PeerConnectionEventHandler for Handler {
    async fn on_ice_gathering_state_change(&self, state: RTCIceGatheringState) {
        if state == RTCIceGatheringState::Complete {
            self.gathered.send_replace(true);
        }
    }

    async fn on_connection_state_change(&self, state: RTCPeerConnectionState) {
        self.state.send_replace(state);
    }

    async fn on_track(&self, track: Arc<dyn TrackRemote>) {
        let _ = self.tracks.try_send(track);
    }

    async fn on_data_channel(&self, dc: Arc<dyn DataChannel>) {
        let _ = self.channels.try_send(dc);
    }
}

/// One end of a call.
pub struct TestPeer {
    pub pc: Arc<dyn PeerConnection>,
    state: watch::Receiver<RTCPeerConnectionState>,
    gathered: watch::Receiver<bool>,
    /// Remote tracks as they arrive.
    pub tracks: mpsc::Receiver<Arc<dyn TrackRemote>>,
    /// Data channels the other side opened.
    pub channels: mpsc::Receiver<Arc<dyn DataChannel>>,
    runtime: Option<Arc<dyn Runtime>>,
}

/// The selected candidate pair, from the stats.
#[derive(Debug, Clone, PartialEq)]
pub struct SelectedPair {
    /// `host`, `srflx`, `prflx` or `relay`.
    pub local_type: String,
    pub local_address: String,
    /// webrtc 0.21's stats often lack the remote candidate (it lists only local ones).
    pub remote_type: Option<String>,
    pub remote_address: Option<String>,
    /// The last STUN round trip on the pair (None until one was measured).
    pub rtt: Option<Duration>,
    pub responses_received: u64,
}

impl TestPeer {
    pub async fn new(opts: PeerOptions) -> Result<Self, HarnessError> {
        let (state_tx, state) = watch::channel(RTCPeerConnectionState::New);
        let (gathered_tx, gathered) = watch::channel(false);
        let (tracks_tx, tracks) = mpsc::channel(8);
        let (channels_tx, channels) = mpsc::channel(8);
        let handler = Arc::new(Handler {
            state: state_tx,
            gathered: gathered_tx,
            tracks: tracks_tx,
            channels: channels_tx,
        });
        let mut me = MediaEngine::default();
        me.register_codec(
            rtc::rtp_transceiver::rtp_sender::RTCRtpCodecParameters {
                rtp_codec: vp8(),
                payload_type: VIDEO_PT,
            },
            rtc::rtp_transceiver::rtp_sender::RtpCodecKind::Video,
        )
        .map_err(rtc_err("register VP8"))?;
        let mut se = SettingEngineBuilder::new()
            .with_multicast_dns_mode(rtc::ice::mdns::MulticastDnsMode::Disabled)
            .with_host_acceptance_min_wait(Some(Duration::ZERO))
            .with_ice_timeouts(
                Some(opts.disconnected_timeout),
                Some(opts.failed_timeout),
                Some(opts.keepalive),
            );
        if opts.relay_only {
            // With nothing but relay pairs there is no better pair to wait for (the default
            // holds a relay pair back for 2 s).
            se = se.with_relay_acceptance_min_wait(Some(Duration::ZERO));
        }
        let se = se.build();
        let mut config = RTCConfigurationBuilder::new().with_ice_servers(opts.ice_servers);
        if opts.relay_only {
            config = config.with_ice_transport_policy(RTCIceTransportPolicy::Relay);
        }
        let mut builder = PeerConnectionBuilder::new()
            .with_configuration(config.build())
            .with_media_engine(me)
            .with_setting_engine(se)
            .with_handler(handler as Arc<dyn PeerConnectionEventHandler>)
            .with_udp_addrs(opts.udp_addrs);
        if let Some(rt) = &opts.runtime {
            builder = builder.with_runtime(rt.clone());
        }
        let pc = builder.build().await.map_err(rtc_err("build"))?;
        Ok(TestPeer {
            pc: Arc::new(pc),
            state,
            gathered,
            tracks,
            channels,
            runtime: opts.runtime,
        })
    }

    /// The connection state now.
    pub fn state(&self) -> RTCPeerConnectionState {
        *self.state.borrow()
    }

    /// Waits until the connection state is `want`.
    pub async fn wait_state(
        &mut self,
        want: RTCPeerConnectionState,
        timeout: Duration,
    ) -> Result<(), HarnessError> {
        let what = format!("connection state {want}");
        let res = tokio::time::timeout(timeout, self.state.wait_for(|s| *s == want))
            .await
            .map(|r| r.map(|_| ()));
        match res {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(HarnessError::Closed(what)),
            Err(_) => Err(HarnessError::Timeout(
                timeout,
                format!("{what} (it is {})", self.state()),
            )),
        }
    }

    async fn local_after_gathering(&mut self) -> Result<RTCSessionDescription, HarnessError> {
        let t = Duration::from_secs(10);
        match tokio::time::timeout(t, self.gathered.wait_for(|g| *g)).await {
            Ok(Ok(_)) => {}
            Ok(Err(_)) => return Err(HarnessError::Closed("ICE gathering".into())),
            Err(_) => return Err(HarnessError::Timeout(t, "ICE gathering".into())),
        }
        self.pc
            .local_description()
            .await
            .ok_or_else(|| HarnessError::Closed("a local description".into()))
    }

    /// Creates the offer; returns it once gathering is complete (every candidate inside).
    pub async fn offer(&mut self) -> Result<RTCSessionDescription, HarnessError> {
        let offer = self
            .pc
            .create_offer(None)
            .await
            .map_err(rtc_err("create offer"))?;
        self.pc
            .set_local_description(offer)
            .await
            .map_err(rtc_err("set local offer"))?;
        self.local_after_gathering().await
    }

    /// Takes an offer and returns the complete answer.
    pub async fn answer(
        &mut self,
        offer: RTCSessionDescription,
    ) -> Result<RTCSessionDescription, HarnessError> {
        self.pc
            .set_remote_description(offer)
            .await
            .map_err(rtc_err("set remote offer"))?;
        let answer = self
            .pc
            .create_answer(None)
            .await
            .map_err(rtc_err("create answer"))?;
        self.pc
            .set_local_description(answer)
            .await
            .map_err(rtc_err("set local answer"))?;
        self.local_after_gathering().await
    }

    /// Takes the answer to our offer.
    pub async fn accept(&mut self, answer: RTCSessionDescription) -> Result<(), HarnessError> {
        self.pc
            .set_remote_description(answer)
            .await
            .map_err(rtc_err("set remote answer"))
    }

    /// Adds a VP8 track whose RTP packets the caller writes ([`RtpSender`]).
    pub async fn add_rtp_sender(&self, ssrc: u32) -> Result<RtpSender, HarnessError> {
        use rtc::media_stream::MediaStreamTrack;
        use rtc::rtp_transceiver::rtp_sender::{
            RTCRtpCodingParameters, RTCRtpEncodingParameters, RtpCodecKind,
        };
        let track = Arc::new(TrackLocalStaticRTP::new(MediaStreamTrack::new(
            "netlab".into(),
            format!("netlab-video-{ssrc}"),
            "netlab video".into(),
            RtpCodecKind::Video,
            vec![RTCRtpEncodingParameters {
                rtp_coding_parameters: RTCRtpCodingParameters {
                    ssrc: Some(ssrc),
                    ..Default::default()
                },
                codec: vp8(),
                ..Default::default()
            }],
        )));
        self.pc
            .add_track(track.clone() as Arc<dyn TrackLocal>)
            .await
            .map_err(rtc_err("add track"))?;
        Ok(RtpSender {
            track,
            ssrc,
            seq: 0,
        })
    }

    /// The selected candidate pair, if there is one.
    pub async fn selected_pair(&self) -> Option<SelectedPair> {
        let report = self.pc.get_stats(Instant::now(), StatsSelector::None).await;
        let id = report.transport()?.selected_candidate_pair_id.clone();
        let pair = match report.get(&id)? {
            RTCStatsReportEntry::IceCandidatePair(p) => p,
            _ => return None,
        };
        // The pair names its candidates `candidate:…`; their entries are keyed
        // `RTCLocalIceCandidate_candidate:…` / `RTCRemoteIceCandidate_candidate:…`.
        let cand = |id: &str, local: bool| {
            report.iter().find_map(|e| {
                let c = match e {
                    RTCStatsReportEntry::LocalCandidate(c) if local => c,
                    RTCStatsReportEntry::RemoteCandidate(c) if !local => c,
                    _ => return None,
                };
                (c.stats.id == id || c.stats.id.ends_with(&format!("_{id}"))).then(|| {
                    (
                        c.candidate_type.to_string(),
                        format!("{}:{}", c.address.clone().unwrap_or_default(), c.port),
                    )
                })
            })
        };
        let (local_type, local_address) = cand(&pair.local_candidate_id, true)?;
        let (remote_type, remote_address) = cand(&pair.remote_candidate_id, false).unzip();
        Some(SelectedPair {
            local_type,
            remote_type,
            local_address,
            remote_address,
            rtt: (pair.responses_received > 0 && pair.current_round_trip_time > 0.0)
                .then(|| Duration::from_secs_f64(pair.current_round_trip_time)),
            responses_received: pair.responses_received,
        })
    }

    /// The runtime this peer was built with.
    pub fn runtime(&self) -> Option<&Arc<dyn Runtime>> {
        self.runtime.as_ref()
    }

    pub async fn close(&self) {
        let _ = self.pc.close().await;
    }
}

fn vp8() -> rtc::rtp_transceiver::rtp_sender::RTCRtpCodec {
    rtc::rtp_transceiver::rtp_sender::RTCRtpCodec {
        mime_type: "video/VP8".into(),
        clock_rate: 90_000,
        channels: 0,
        sdp_fmtp_line: String::new(),
        rtcp_feedback: vec![],
    }
}

/// Offer from `a`, answer from `b`, then both connected within `timeout`.
pub async fn connect(
    a: &mut TestPeer,
    b: &mut TestPeer,
    timeout: Duration,
) -> Result<(), HarnessError> {
    let offer = a.offer().await?;
    let answer = b.answer(offer).await?;
    a.accept(answer).await?;
    a.wait_state(RTCPeerConnectionState::Connected, timeout)
        .await?;
    b.wait_state(RTCPeerConnectionState::Connected, timeout)
        .await
}

/// Writes numbered RTP packets (no retransmission, no FEC: a lost one stays lost).
pub struct RtpSender {
    track: Arc<TrackLocalStaticRTP>,
    ssrc: u32,
    seq: u16,
}

impl RtpSender {
    /// Sends one packet with `payload_len` bytes of payload; returns its sequence number.
    pub async fn send(&mut self, payload_len: usize) -> Result<u16, HarnessError> {
        let seq = self.seq;
        self.seq = self.seq.wrapping_add(1);
        let packet = rtc::rtp::packet::Packet {
            header: rtc::rtp::header::Header {
                version: 2,
                payload_type: VIDEO_PT,
                sequence_number: seq,
                timestamp: u32::from(seq).wrapping_mul(3000),
                ssrc: self.ssrc,
                ..Default::default()
            },
            payload: Bytes::from(vec![0x5a; payload_len]),
        };
        self.track
            .write_rtp(packet)
            .await
            .map_err(rtc_err("write RTP"))?;
        Ok(seq)
    }

    /// The sequence number the next packet gets.
    pub fn next_seq(&self) -> u16 {
        self.seq
    }
}

/// One received RTP packet.
#[derive(Debug, Clone, Copy)]
pub struct Arrival {
    pub seq: u16,
    pub payload_len: usize,
    pub at: Instant,
}

/// Everything a remote track received, recorded by [`record_track`].
#[derive(Debug, Default, Clone)]
pub struct Received(pub Arc<Mutex<Vec<Arrival>>>);

impl Received {
    pub fn snapshot(&self) -> Vec<Arrival> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn len(&self) -> usize {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Waits until `pred` holds for what was received, checking every 20 ms.
    pub async fn wait_for(
        &self,
        what: &str,
        timeout: Duration,
        pred: impl Fn(&[Arrival]) -> bool,
    ) -> Result<(), HarnessError> {
        let deadline = Instant::now() + timeout;
        loop {
            if pred(&self.snapshot()) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(HarnessError::Timeout(timeout, what.to_string()));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Reads `track` until it ends, recording each RTP packet. The caller owns (and awaits or
/// aborts) the returned task.
pub fn record_track(track: Arc<dyn TrackRemote>) -> (Received, tokio::task::JoinHandle<()>) {
    let received = Received::default();
    let sink = received.clone();
    let task = tokio::spawn(async move {
        while let Some(ev) = track.poll().await {
            match ev {
                TrackRemoteEvent::OnRtpPacket(p) => {
                    sink.0
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .push(Arrival {
                            seq: p.header.sequence_number,
                            payload_len: p.payload.len(),
                            at: Instant::now(),
                        });
                }
                TrackRemoteEvent::OnEnded => break,
                _ => {}
            }
        }
    });
    (received, task)
}
