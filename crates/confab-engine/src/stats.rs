//! What the engine measured about each remote peer's media, in the shape `confab-peer` prints.

use confab_media::pattern::Stamp;
use serde::Serialize;
use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// No new picture for longer than this is a freeze.
pub const FREEZE_MS: f64 = 300.0;

#[derive(Debug, Clone, Default, Serialize)]
pub struct VideoStats {
    pub codec: Option<String>,
    pub width: usize,
    pub height: usize,
    pub frames_decoded: u64,
    /// Frames whose test-pattern blocks read back correctly.
    pub pattern_frames: u64,
    /// Frames whose number is lower than one already seen.
    pub frames_out_of_order: u64,
    /// Frames that repeat the previous frame number (a source that sent the same picture twice).
    pub frames_repeated: u64,
    pub fps: f64,
    pub latency_ms_p50: Option<f64>,
    pub latency_ms_p95: Option<f64>,
    pub keyframe_requests: u64,
    pub decode_errors: u64,
    pub last_pattern_frame: Option<u32>,
    /// Gaps of more than 300 ms between two decoded pictures (after the first one).
    pub freezes: u64,
    /// The length of those gaps, added up.
    pub freeze_ms_total: f64,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct AudioStats {
    pub packets: u64,
    /// Dominant frequency heard over the last half second (Hz).
    pub tone_hz: Option<f64>,
    /// RMS level over the last half second, 0..1 of full scale.
    pub level: f64,
    /// 20 ms frames made up by the decoder (a packet was lost and no FEC could replace it).
    pub concealed: u64,
    /// The same, in milliseconds.
    pub concealed_ms: f64,
    /// Lost packets rebuilt from the next packet's in-band FEC (Opus LBRR) instead.
    pub fec_recovered: u64,
    /// This peer's audio packets missing at their turn to play (lost, or too late), by their
    /// sequence numbers: rebuilt from FEC, concealed, or skipped while the jitter buffer had
    /// run dry. Silence sent as DTX takes no numbers, so it is not lost.
    pub lost: u64,
}

/// How the path to one peer is doing. Measured every second by the link from the peer
/// connection's own counters.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct NetworkStats {
    /// Round-trip time of the selected candidate pair, from its STUN consent checks (webrtc
    /// 0.21 leaves the receiver-report RTT at 0).
    pub rtt_ms: Option<f64>,
    /// Share of this peer's packets that never reached us, from the receiver reports we send
    /// (over the last few seconds), in percent.
    pub loss_pct: Option<f64>,
    /// Share of our packets that never reached this peer, from the receiver reports it sends.
    pub send_loss_pct: Option<f64>,
    /// Everything we send to / receive from this peer (media, RTCP, ICE), kbit/s.
    pub send_kbps: f64,
    pub recv_kbps: f64,
    /// What the congestion controller (GCC) says this link carries, kbit/s: the encoders
    /// follow it.
    pub estimate_kbps: Option<f64>,
    /// How long what waits in the pacer to go to this peer takes to leave, ms: pictures are
    /// skipped while it is long.
    pub send_queue_ms: u32,
    /// Our camera's picture as sent to this peer: 1 as captured, 2 at half its width and
    /// height, 4 at a quarter (the line too narrow for more), 0 none yet.
    pub camera_scale: u32,
    /// Packets we asked this peer to send again (NACK), since the link began.
    pub nacked: u64,
    /// The selected candidate pair's types: `host`, `srflx`, `prflx` or `relay`.
    pub local_candidate: Option<String>,
    pub remote_candidate: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct PeerStats {
    pub id: String,
    pub name: String,
    /// From our join to the first picture decoded from this peer.
    pub setup_ms: Option<f64>,
    /// From the answer (sent or received) to the first picture decoded from this peer.
    pub answer_to_first_frame_ms: Option<f64>,
    /// Where that time went: each set-up phase of this link, after the same answer.
    pub setup_phases: SetupPhases,
    /// The code both people should see (`123 456`); differs when someone is in the middle.
    pub verification_code: Option<String>,
    pub video: VideoStats,
    /// The screen this peer shares, in the same figures as its camera (all zero until it
    /// shares).
    pub share: VideoStats,
    pub audio: AudioStats,
    pub network: NetworkStats,
}

/// One RTP stream's loss counters: `(ssrc, packets, lost)`.
pub type StreamCount = (u32, u64, u64);

/// One reading of a peer connection's cumulative counters.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NetSample {
    pub bytes_sent: u64,
    pub bytes_received: u64,
    /// The peer's streams: packets we received, and those our receiver reports counted lost.
    pub inbound: Vec<StreamCount>,
    /// Our streams as the peer reports them: the highest sequence number it saw (extended),
    /// and the packets it counted lost. Zero before its first report.
    pub outbound: Vec<StreamCount>,
    /// The selected pair's latest RTT; `None` before its first answered check.
    pub rtt: Option<Duration>,
    pub local_candidate: Option<String>,
    pub remote_candidate: Option<String>,
    /// Where the selected pair's packets go from here: the relay server for a relayed local
    /// candidate, else the peer's candidate (`None` for a name or an unannounced candidate).
    /// The link watches the route to it (`route::RouteWatch`).
    pub path_far: Option<std::net::IpAddr>,
}

impl NetSample {
    fn inbound_streams(&self) -> &[StreamCount] {
        &self.inbound
    }
    fn outbound_streams(&self) -> &[StreamCount] {
        &self.outbound
    }
}

/// Turns a reading every second into rates and loss over a sliding window. Pure: time is an
/// argument.
#[derive(Debug, Default)]
pub struct NetMeter {
    window: VecDeque<(Instant, NetSample)>,
}

/// How far back loss and rates look.
const NET_WINDOW: Duration = Duration::from_secs(5);

fn pct(lost: u64, expected: u64) -> Option<f64> {
    (expected > 0).then(|| lost.min(expected) as f64 * 100.0 / expected as f64)
}

/// Lost and expected packets over the window, per stream from its oldest reading there that
/// has figures (a stream that has just appeared, or whose counters went back, is left out).
fn loss_over(
    window: &VecDeque<(Instant, NetSample)>,
    streams: fn(&NetSample) -> &[StreamCount],
    now: &[StreamCount],
    expected: impl Fn(u64, u64, u64, u64) -> u64,
) -> (u64, u64) {
    let (mut lost, mut exp) = (0, 0);
    for &(ssrc, packets, l) in now {
        let oldest = window.iter().find_map(|(_, s)| {
            streams(s)
                .iter()
                .find(|(id, p, _)| *id == ssrc && *p > 0)
                .copied()
        });
        let Some((_, p0, l0)) = oldest else {
            continue;
        };
        if packets < p0 || l < l0 {
            continue;
        }
        lost += l - l0;
        exp += expected(p0, l0, packets, l);
    }
    (lost, exp)
}

impl NetMeter {
    pub fn push(&mut self, now: Instant, sample: NetSample) -> NetworkStats {
        // Byte counters going backwards (a new transport) start the window again.
        if let Some((_, last)) = self.window.back() {
            if sample.bytes_sent < last.bytes_sent || sample.bytes_received < last.bytes_received {
                self.window.clear();
            }
        }
        while self
            .window
            .front()
            .is_some_and(|(t, _)| now.saturating_duration_since(*t) > NET_WINDOW)
        {
            self.window.pop_front();
        }
        let mut out = NetworkStats {
            rtt_ms: sample
                .rtt
                .filter(|r| !r.is_zero())
                .map(|r| r.as_secs_f64() * 1000.0),
            local_candidate: sample.local_candidate.clone(),
            remote_candidate: sample.remote_candidate.clone(),
            ..Default::default()
        };
        if let Some((t0, first)) = self.window.front() {
            let secs = now.saturating_duration_since(*t0).as_secs_f64();
            if secs > 0.0 {
                let kbps = |a: u64, b: u64| b.saturating_sub(a) as f64 * 8.0 / 1000.0 / secs;
                out.send_kbps = kbps(first.bytes_sent, sample.bytes_sent);
                out.recv_kbps = kbps(first.bytes_received, sample.bytes_received);
            }
            // In: received + lost is what was expected.
            let (lost, exp) = loss_over(
                &self.window,
                NetSample::inbound_streams,
                &sample.inbound,
                |p0, l0, p, l| (p - p0) + (l - l0),
            );
            out.loss_pct = pct(lost, exp);
            // Out: the highest sequence number counts what was expected.
            let (lost, exp) = loss_over(
                &self.window,
                NetSample::outbound_streams,
                &sample.outbound,
                |h0, _, h, _| h - h0,
            );
            out.send_loss_pct = pct(lost, exp);
        }
        self.window.push_back((now, sample));
        out
    }

    /// Share of one of our streams (`ssrc`) that the far end's reports say was lost over the
    /// window, percent (`None` before two reports of it).
    pub fn send_loss_of(&self, ssrc: u32) -> Option<f64> {
        let (_, newest) = self.window.back()?;
        let now: Vec<StreamCount> = newest
            .outbound
            .iter()
            .filter(|s| s.0 == ssrc)
            .copied()
            .collect();
        let (lost, exp) = loss_over(
            &self.window,
            NetSample::outbound_streams,
            &now,
            |h0, _, h, _| h - h0,
        );
        pct(lost, exp)
    }
}

/// One step of a link's set-up, in the order a call goes through them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// ICE found a working candidate pair.
    IceConnected,
    /// The peer connection is connected: DTLS done, SRTP keys in place, media may flow.
    Connected,
    /// Our encoder produced the first picture for this link (a keyframe).
    FirstEncoded,
    /// That picture was handed to this link's track (packetized, paced, sent).
    FirstSent,
    /// The first video packet from the peer arrived.
    FirstReceived,
    /// The first whole picture from the peer was assembled from its packets.
    FirstAssembled,
    /// The first picture from the peer was decoded.
    FirstDecoded,
}

impl Phase {
    pub const ALL: [Phase; 7] = [
        Phase::IceConnected,
        Phase::Connected,
        Phase::FirstEncoded,
        Phase::FirstSent,
        Phase::FirstReceived,
        Phase::FirstAssembled,
        Phase::FirstDecoded,
    ];
}

/// When each [`Phase`] of a link happened (the first time only).
#[derive(Debug, Clone, Default)]
pub struct Timeline {
    marks: [Option<Instant>; Phase::ALL.len()],
}

impl Timeline {
    /// Notes `phase` at `now` unless it was noted before; true when this was the first time.
    pub fn mark(&mut self, phase: Phase, now: Instant) -> bool {
        let slot = &mut self.marks[phase as usize];
        let first = slot.is_none();
        slot.get_or_insert(now);
        first
    }

    pub fn has(&self, phase: Phase) -> bool {
        self.marks[phase as usize].is_some()
    }

    /// Milliseconds from `answered` to each phase; a phase before the answer counts 0 (ICE may
    /// connect before the answerer hears its answer arrived), one not reached is `None`.
    pub fn phases(&self, answered: Option<Instant>) -> SetupPhases {
        let ms = |p: Phase| {
            let (a, t) = (answered?, self.marks[p as usize]?);
            Some(t.saturating_duration_since(a).as_secs_f64() * 1000.0)
        };
        SetupPhases {
            ice_connected_ms: ms(Phase::IceConnected),
            connected_ms: ms(Phase::Connected),
            first_encoded_ms: ms(Phase::FirstEncoded),
            first_sent_ms: ms(Phase::FirstSent),
            first_received_ms: ms(Phase::FirstReceived),
            first_assembled_ms: ms(Phase::FirstAssembled),
            first_decoded_ms: ms(Phase::FirstDecoded),
        }
    }
}

/// A link's set-up phases in milliseconds after its offer/answer exchange completed (see
/// [`Phase`]): the sending half (`first_encoded_ms`, `first_sent_ms`) is about our pictures to
/// the peer, the receiving half about the peer's pictures to us.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct SetupPhases {
    pub ice_connected_ms: Option<f64>,
    pub connected_ms: Option<f64>,
    pub first_encoded_ms: Option<f64>,
    pub first_sent_ms: Option<f64>,
    pub first_received_ms: Option<f64>,
    pub first_assembled_ms: Option<f64>,
    pub first_decoded_ms: Option<f64>,
}

/// Per-peer accumulator, updated by the receive pipeline.
#[derive(Debug, Clone, Default)]
pub struct VideoBook {
    pub stats: VideoStats,
    pub answered: Option<Instant>,
    pub first_frame: Option<Instant>,
    pub last_frame: Option<Instant>,
    latencies_us: Vec<u32>,
}

impl VideoBook {
    pub fn decoded(&mut self, w: usize, h: usize, stamp: Option<Stamp>, latency_us: Option<u32>) {
        let now = Instant::now();
        self.first_frame.get_or_insert(now);
        if let Some(last) = self.last_frame {
            let gap = now.saturating_duration_since(last).as_secs_f64() * 1000.0;
            if gap > FREEZE_MS {
                tracing::debug!(
                    gap_ms = gap as u64,
                    "a freeze: no new picture for that long"
                );
                self.stats.freezes += 1;
                self.stats.freeze_ms_total += gap;
            }
        }
        self.last_frame = Some(now);
        self.stats.width = w;
        self.stats.height = h;
        self.stats.frames_decoded += 1;
        if let Some(s) = stamp {
            self.stats.pattern_frames += 1;
            match self.stats.last_pattern_frame {
                Some(last) if s.frame < last => self.stats.frames_out_of_order += 1,
                Some(last) if s.frame == last => self.stats.frames_repeated += 1,
                _ => self.stats.last_pattern_frame = Some(s.frame),
            }
        }
        if let Some(l) = latency_us {
            if self.latencies_us.len() >= 100_000 {
                self.latencies_us.drain(..50_000);
            }
            self.latencies_us.push(l);
        }
    }

    pub fn snapshot(&self) -> VideoStats {
        let mut s = self.stats.clone();
        if let (Some(a), Some(b)) = (self.first_frame, self.last_frame) {
            let secs = b.duration_since(a).as_secs_f64();
            if secs > 0.0 && s.frames_decoded > 1 {
                s.fps = (s.frames_decoded - 1) as f64 / secs;
            }
        }
        if !self.latencies_us.is_empty() {
            let mut v = self.latencies_us.clone();
            v.sort_unstable();
            let q = |p: f64| v[((v.len() - 1) as f64 * p).round() as usize] as f64 / 1000.0;
            s.latency_ms_p50 = Some(q(0.5));
            s.latency_ms_p95 = Some(q(0.95));
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(secs: u64) -> NetSample {
        NetSample {
            // 125 kB/s out, 250 kB/s in: 1000 and 2000 kbit/s.
            bytes_sent: secs * 125_000,
            bytes_received: secs * 250_000,
            // 100 packets a second in, 10 of them lost; 50 out, 5 lost.
            inbound: vec![(7, 5 + secs * 90, secs * 10)],
            outbound: vec![(9, 40_000 + secs * 50, secs * 5)],
            rtt: Some(Duration::from_millis(100)),
            local_candidate: Some("host".into()),
            remote_candidate: Some("relay".into()),
            path_far: None,
        }
    }

    #[test]
    fn timeline_keeps_the_first_mark_and_counts_from_the_answer() {
        let t0 = Instant::now();
        let at = |ms| t0 + Duration::from_millis(ms);
        let mut t = Timeline::default();
        // ICE may connect before the answer is noted on this side: that counts as 0.
        assert!(t.mark(Phase::IceConnected, t0));
        assert!(t.mark(Phase::Connected, at(12)));
        assert!(
            !t.mark(Phase::Connected, at(400)),
            "only the first time counts"
        );
        assert!(t.mark(Phase::FirstDecoded, at(55)));
        assert!(t.has(Phase::Connected) && !t.has(Phase::FirstSent));
        let p = t.phases(Some(at(2)));
        assert_eq!(p.ice_connected_ms, Some(0.0));
        assert_eq!(p.connected_ms, Some(10.0));
        assert_eq!(p.first_decoded_ms, Some(53.0));
        assert_eq!(p.first_sent_ms, None);
        assert_eq!(
            t.phases(None),
            SetupPhases::default(),
            "no answer, no figures"
        );
    }

    #[test]
    fn net_meter_gives_rates_and_loss_over_its_window() {
        let t0 = Instant::now();
        let mut m = NetMeter::default();
        let first = m.push(t0, sample(0));
        assert_eq!(first.loss_pct, None, "one reading says nothing about loss");
        assert_eq!(first.rtt_ms, Some(100.0));
        let mut last = first;
        for s in 1..=10 {
            last = m.push(t0 + Duration::from_secs(s), sample(s));
        }
        assert!((last.send_kbps - 1000.0).abs() < 1e-6, "{last:?}");
        assert!((last.recv_kbps - 2000.0).abs() < 1e-6, "{last:?}");
        assert!((last.loss_pct.unwrap() - 10.0).abs() < 1e-9, "{last:?}");
        assert!(
            (last.send_loss_pct.unwrap() - 10.0).abs() < 1e-9,
            "{last:?}"
        );
        assert_eq!(last.local_candidate.as_deref(), Some("host"));
        assert_eq!(last.remote_candidate.as_deref(), Some("relay"));
        assert!(
            m.window.len() <= 6,
            "the window is bounded: {}",
            m.window.len()
        );
    }

    #[test]
    fn net_meter_gives_one_streams_send_loss() {
        let t0 = Instant::now();
        let mut m = NetMeter::default();
        assert_eq!(m.send_loss_of(9), None, "nothing read yet");
        let two = |secs: u64| {
            let mut s = sample(secs);
            // Audio: 50 packets a second, 1 lost.
            s.outbound.push((11, 7 + secs * 50, secs));
            s
        };
        m.push(t0, two(0));
        assert_eq!(
            m.send_loss_of(11),
            None,
            "one reading says nothing about loss"
        );
        let all = m.push(t0 + Duration::from_secs(4), two(4));
        assert!((m.send_loss_of(11).unwrap() - 2.0).abs() < 1e-9);
        assert!((m.send_loss_of(9).unwrap() - 10.0).abs() < 1e-9);
        assert!((all.send_loss_pct.unwrap() - 6.0).abs() < 1e-9, "{all:?}");
        assert_eq!(m.send_loss_of(12), None, "no such stream");
    }

    #[test]
    fn net_meter_restarts_when_counters_go_back() {
        let t0 = Instant::now();
        let mut m = NetMeter::default();
        m.push(t0, sample(5));
        let s = m.push(t0 + Duration::from_secs(1), sample(1));
        assert_eq!((s.loss_pct, s.send_kbps), (None, 0.0), "{s:?}");
        let s = m.push(t0 + Duration::from_secs(2), sample(2));
        assert!((s.loss_pct.unwrap() - 10.0).abs() < 1e-9);
    }

    #[test]
    fn a_first_receiver_report_is_not_counted_as_traffic() {
        // Before its first report the peer's figures for our stream are zero; the report
        // then jumps to a random starting sequence number, which is not 40,000 packets sent.
        let t0 = Instant::now();
        let mut m = NetMeter::default();
        let mut before = sample(1);
        before.outbound = vec![(9, 0, 0)];
        m.push(t0, before);
        let s = m.push(t0 + Duration::from_secs(1), sample(2));
        assert_eq!(s.send_loss_pct, None, "{s:?}");
        let s = m.push(t0 + Duration::from_secs(2), sample(3));
        assert!((s.send_loss_pct.unwrap() - 10.0).abs() < 1e-9, "{s:?}");
    }

    #[test]
    fn a_gap_over_300_ms_is_a_freeze() {
        let mut b = VideoBook::default();
        b.decoded(320, 240, None, None);
        b.last_frame = b.last_frame.map(|t| t - Duration::from_millis(700));
        b.decoded(320, 240, None, None);
        b.decoded(320, 240, None, None);
        let s = b.snapshot();
        assert_eq!(s.freezes, 1);
        assert!(
            s.freeze_ms_total >= 700.0 && s.freeze_ms_total < 1000.0,
            "{s:?}"
        );
    }
}
