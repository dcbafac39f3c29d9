//! The pacer, with a burst that follows the line. On a line as wide as the call starts at (or
//! wider), a keyframe goes out at once: the first picture does not wait on the pacer (a 720p
//! keyframe is ~0.5 Mbit). Once the congestion controller has found the line narrower than
//! that, a burst is a tenth of a second at the pacer's rate: a keyframe released at once onto a
//! 300 kbit/s line overflows its queue, the tail is dropped, the receiver asks again and the
//! call sits in a storm of keyframes; paced, it arrives late but whole.
//!
//! It also says how long what it holds will take to leave ([`LineReading::pacer_queue_ms`]):
//! the encoders skip pictures while that is long, so a line narrower than the pictures never
//! builds seconds of delay (libwebrtc's encoder pushback does the same).
//!
//! Audio is not held (as in libwebrtc): its packets are small and steady, and behind a
//! keyframe in the pacer's queue on a narrow line they would wait a quarter of a second and
//! reach the jitter buffer late (concealed, or a longer delay for the whole call). Its bits
//! are still taken from the pacer's budget, so audio and video together keep to its rate.
//!
//! Resends pass [`super::resend::ResendGate`] first: not one the far end asked for again
//! within 0.75 of a round trip, and no more than a share of the line.
//!
//! It sends the congestion controller's probes ([`super::probe`]): a burst of its latest
//! pictures' packets again, on their RTX stream (RFC 4588), at the probe's rate on top of
//! what it paces; the far end throws them away as duplicates and reports their arrival. It
//! numbers every packet of the RTX streams itself as it leaves (the NACK responder's resends
//! too), so that a probe and a resend never share a number and none is skipped.

use crate::media::LineReading;
use rtc::interceptor::Packet;
use rtc::interceptor::{Attribute, Interceptor, PacerBuilder, PacerInterceptor, TaggedPacket};
use rtc::interceptor::{StreamInfo, PACER_MIN_BURST_BITS};
use rtc::sansio::Protocol;
use rtc::shared::marshal::MarshalSize;
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The pacer sends at this times the estimate: the encoders aim under the estimate, and the
/// margin lets keyframes and retransmissions through sooner (libwebrtc uses 2.5; on a line
/// with a small queue that overflows it with every keyframe).
const PACING_FACTOR: f64 = 1.5;
/// A retransmission that would wait longer than this in the pacer is not sent.
const STALE_RETRANSMISSION_MS: u32 = 250;
/// What a wide line may take at once.
const WIDE_BURST_BITS: f64 = 4_000_000.0;
/// A narrow line's burst, in seconds of its rate.
const NARROW_BURST_SECS: f64 = 0.1;
/// The latest video packets kept for probes, at the most.
const PROBE_HISTORY: usize = 64;

/// The burst for a line estimated at `estimate` bits/s, when calls start at `start`.
pub(super) fn burst_bits(estimate: f64, start: f64) -> f64 {
    if estimate >= start {
        WIDE_BURST_BITS
    } else {
        (estimate * PACING_FACTOR * NARROW_BURST_SECS).max(PACER_MIN_BURST_BITS)
    }
}

/// webrtc 0.21's pacer, its burst set from each estimate that passes by.
pub(super) struct LinePacer {
    inner: PacerInterceptor,
    start: f64,
    /// RTP bits handed in and not yet out (the pacer holds only RTP: RTCP passes at once).
    held_bits: f64,
    reading: Arc<LineReading>,
    /// The local audio streams' SSRCs: their packets go out at once, ahead of the queue.
    audio: std::collections::HashSet<u32>,
    /// Audio packets handed in and not yet taken.
    unpaced: std::collections::VecDeque<TaggedPacket>,
    /// The local streams' RTX SSRCs: a resend on one names its packet in its payload.
    rtx: std::collections::HashSet<u32>,
    resends: super::resend::ResendGate,
    offered: Offered,
    /// Each local video stream's RTX stream and payload type.
    rtx_of: HashMap<u32, (u32, u8)>,
    /// The next sequence number on each RTX stream.
    rtx_seq: HashMap<u32, u16>,
    /// The latest video packets sent (for probes).
    history: VecDeque<Sent>,
    /// A probe's packets, each with when it is due.
    probe: VecDeque<(Instant, TaggedPacket)>,
    /// The latest time the pacer was told.
    now: Option<Instant>,
}

/// What is handed to the pacer, by kind, logged at trace level every half second (how the
/// resend storm at a narrow line's start was found).
#[derive(Default)]
struct Offered {
    since: Option<Instant>,
    bits: [f64; 3],
}

impl Offered {
    const RESENDS: usize = 0;
    const VIDEO: usize = 1;
    const AUDIO: usize = 2;

    fn note(&mut self, kind: usize, bits: f64, now: Instant, queue_ms: u32) {
        self.bits[kind] += bits;
        let span = now
            .saturating_duration_since(*self.since.get_or_insert(now))
            .as_secs_f64();
        if span >= 0.5 {
            let kbps = |k: usize| self.bits[k] / span / 1000.0;
            tracing::trace!(
                resends_kbps = kbps(Self::RESENDS),
                video_kbps = kbps(Self::VIDEO),
                audio_kbps = kbps(Self::AUDIO),
                queue_ms,
                "offered to the pacer"
            );
            *self = Offered {
                since: Some(now),
                bits: [0.0; 3],
            };
        }
    }
}

/// What a probe needs of a video packet that left: no header extensions (kept per packet on
/// the send path, so only a few words and a reference to its payload).
struct Sent {
    ssrc: u32,
    seq: u16,
    timestamp: u32,
    marker: bool,
    payload: bytes::Bytes,
}

/// The SSRC of an RTP packet.
fn rtp_ssrc(msg: &TaggedPacket) -> Option<u32> {
    match &msg.message.packet {
        Packet::Rtp(p) => Some(p.header.ssrc),
        _ => None,
    }
}

fn rtp_bits(msg: &TaggedPacket) -> f64 {
    match &msg.message.packet {
        Packet::Rtp(p) => (p.marshal_size() * 8) as f64,
        _ => 0.0,
    }
}

impl LinePacer {
    /// A pacer for a link whose congestion controller starts at `start` bits/s.
    pub(super) fn new(start: f64, reading: Arc<LineReading>) -> Self {
        LinePacer {
            inner: PacerBuilder::new()
                .with_target_bitrate(start * PACING_FACTOR)
                .with_burst_bits(WIDE_BURST_BITS)
                .build(),
            start,
            held_bits: 0.0,
            reading,
            audio: Default::default(),
            unpaced: Default::default(),
            rtx: Default::default(),
            resends: Default::default(),
            offered: Default::default(),
            rtx_of: Default::default(),
            rtx_seq: Default::default(),
            history: Default::default(),
            probe: Default::default(),
            now: None,
        }
    }

    /// The next sequence number on RTX stream `ssrc`.
    fn next_rtx_seq(&mut self, ssrc: u32) -> u16 {
        let seq = self.rtx_seq.entry(ssrc).or_insert_with(rand::random);
        let now = *seq;
        *seq = seq.wrapping_add(1);
        now
    }

    /// Starts a probe at `rate` bits/s if one was asked for: the latest pictures' packets
    /// again (newest first, as many as the probe's length takes at its rate), on their RTX
    /// streams, evenly spaced from `now`.
    fn start_probe(&mut self, now: Instant) {
        let Some(rate) = self.reading.take_probe() else {
            return;
        };
        if !self.probe.is_empty() {
            return;
        }
        let mut at = now;
        let until = now + super::probe::Prober::LENGTH;
        // The history over again as often as the rate takes (a probe over ~6 Mbit/s needs
        // more than it holds).
        let most = super::probe::Prober::MAX_PACKETS;
        for original in self.history.iter().rev().cycle().take(most) {
            if at > until {
                break;
            }
            let Some(&(rtx, pt)) = self.rtx_of.get(&original.ssrc) else {
                continue;
            };
            let mut payload = Vec::with_capacity(2 + original.payload.len());
            payload.extend_from_slice(&original.seq.to_be_bytes());
            payload.extend_from_slice(&original.payload);
            let packet = rtc::rtp::packet::Packet {
                header: rtc::rtp::header::Header {
                    version: 2,
                    ssrc: rtx,
                    payload_type: pt,
                    // Numbered as it leaves (`poll_write`).
                    sequence_number: 0,
                    timestamp: original.timestamp,
                    marker: original.marker,
                    ..Default::default()
                },
                payload: payload.into(),
            };
            let bits = (packet.marshal_size() * 8) as f64;
            self.probe.push_back((
                at,
                TaggedPacket {
                    now: at,
                    transport: Default::default(),
                    message: rtc::interceptor::AttributedPacket::new(Packet::Rtp(packet)),
                },
            ));
            at += Duration::from_secs_f64(bits / rate);
        }
        tracing::trace!(
            kbps = rate / 1000.0,
            packets = self.probe.len(),
            "probe sent"
        );
    }

    /// Numbers a packet of an RTX stream as it leaves: probes and resends share the stream,
    /// and the far end reads its losses from gaps in the numbers (a resend refused here took
    /// none).
    fn number_rtx(&mut self, msg: &mut TaggedPacket) {
        if let Packet::Rtp(p) = &mut msg.message.packet {
            if self.rtx.contains(&p.header.ssrc) {
                p.header.sequence_number = self.next_rtx_seq(p.header.ssrc);
            }
        }
    }

    fn tell(&mut self, now: Instant) {
        self.now = Some(self.now.map_or(now, |n| n.max(now)));
        self.start_probe(now);
    }

    /// The packet a resend carries: its stream and sequence number (RFC 4588: an RTX packet
    /// carries the original's sequence number first in its payload).
    fn resent_key(&self, msg: &TaggedPacket) -> Option<super::resend::PacketKey> {
        let Packet::Rtp(p) = &msg.message.packet else {
            return None;
        };
        let ssrc = p.header.ssrc;
        if self.rtx.contains(&ssrc) {
            let osn = p.payload.get(..2)?;
            Some((ssrc, u16::from_be_bytes([osn[0], osn[1]])))
        } else {
            Some((ssrc, p.header.sequence_number))
        }
    }

    /// Hands `msg` (`bits` of RTP) to webrtc's pacer: whether it holds it (a full queue
    /// refuses it). Only what it holds counts toward [`Self::queue_ms`].
    fn hold(&mut self, msg: TaggedPacket, bits: f64) -> Result<bool, rtc::shared::error::Error> {
        let queued = self.inner.queued();
        self.inner.handle_write(msg)?;
        let held = self.inner.queued() > queued;
        if held {
            self.held_bits += bits;
            self.publish();
        }
        Ok(held)
    }

    /// How long what is held takes to leave at the pacer's rate.
    fn queue_ms(&self) -> u32 {
        let rate = self.inner.pacer().target_bitrate().max(1.0);
        (self.held_bits.max(0.0) / rate * 1000.0).min(u32::MAX as f64) as u32
    }

    fn publish(&self) {
        self.reading.set_pacer_queue_ms(self.queue_ms());
    }

    #[cfg(test)]
    fn burst(&self) -> f64 {
        self.inner.pacer().burst_bits()
    }
}

impl Protocol<TaggedPacket, TaggedPacket, ()> for LinePacer {
    type Rout = TaggedPacket;
    type Wout = TaggedPacket;
    type Eout = ();
    type Error = rtc::shared::error::Error;
    type Time = Instant;

    fn handle_read(&mut self, msg: TaggedPacket) -> Result<(), Self::Error> {
        self.tell(msg.now);
        // The estimate rides inbound feedback (see webrtc's pacer, which takes its rate here).
        let estimate = match msg.message.get(&Attribute::TargetBitrateChanged {
            bits_per_second: 0.0,
        }) {
            Some(Attribute::TargetBitrateChanged { bits_per_second }) => Some(*bits_per_second),
            _ => None,
        };
        self.inner.handle_read(msg)?;
        if let Some(bps) = estimate {
            let burst = burst_bits(bps, self.start);
            let pacer = self.inner.pacer_mut();
            pacer.set_target_bitrate(bps * PACING_FACTOR);
            if pacer.burst_bits() != burst {
                *pacer = pacer.clone().with_burst_bits(burst);
            }
            self.publish();
        }
        Ok(())
    }
    fn poll_read(&mut self) -> Option<TaggedPacket> {
        self.inner.poll_read()
    }
    fn handle_write(&mut self, msg: TaggedPacket) -> Result<(), Self::Error> {
        self.tell(msg.now);
        if tracing::enabled!(tracing::Level::TRACE) {
            let kind = if msg.message.has(&Attribute::Retransmission) {
                Offered::RESENDS
            } else if rtp_ssrc(&msg).is_some_and(|ssrc| self.audio.contains(&ssrc)) {
                Offered::AUDIO
            } else {
                Offered::VIDEO
            };
            let queue_ms = self.queue_ms();
            self.offered.note(kind, rtp_bits(&msg), msg.now, queue_ms);
        }
        if msg.message.has(&Attribute::Retransmission) {
            if self.queue_ms() > STALE_RETRANSMISSION_MS {
                // It would arrive too late to be played: after a blackout the peer asks again
                // for every packet it missed, and sending them all would hold the line for a
                // minute. Its receiver asks for a keyframe instead.
                return Ok(());
            }
            // The longer of the stats' round trip (a second old) and the last feedback's:
            // a resend is on its way that long.
            let rtt = match self.reading.rtt_ms().max(self.reading.feedback_rtt_ms()) {
                0 => None,
                ms => Some(std::time::Duration::from_millis(ms.into())),
            };
            let estimate = self.inner.pacer().target_bitrate() / PACING_FACTOR;
            let (key, bits) = (self.resent_key(&msg), rtp_bits(&msg));
            if let Some(key) = key {
                if !self.resends.allow(key, bits, msg.now, rtt, estimate) {
                    return Ok(());
                }
            }
            if let (false, Some(key)) = (self.hold(msg, bits)?, key) {
                // The pacer's queue was full: it did not go, and may be asked for again.
                self.resends.refused(key, bits);
            }
            return Ok(());
        }
        if rtp_ssrc(&msg).is_some_and(|ssrc| self.audio.contains(&ssrc)) {
            // Bounded like the pacer's own queue: taken at once by the writer in practice.
            if self.unpaced.len() < 256 {
                // Its bits come out of the video's budget (as in libwebrtc's media budget):
                // on top of it, audio and video together overfill a narrow line. The debt is
                // floored at one burst, so audio on a line narrower than itself cannot hold the
                // video back for long after it stops (muted).
                let pacer = self.inner.pacer_mut();
                pacer.refill(msg.now);
                let debt_room = (pacer.budget_bits() + pacer.burst_bits()).max(0.0);
                pacer.consume(rtp_bits(&msg).min(debt_room));
                self.unpaced.push_back(msg);
            }
            return Ok(());
        }
        let bits = rtp_bits(&msg);
        self.hold(msg, bits)?;
        Ok(())
    }
    fn poll_write(&mut self) -> Option<TaggedPacket> {
        if let Some(audio) = self.unpaced.pop_front() {
            return Some(audio);
        }
        if let (Some((due, _)), Some(now)) = (self.probe.front(), self.now) {
            if *due <= now {
                return self.probe.pop_front().map(|(_, mut p)| {
                    p.now = now;
                    self.number_rtx(&mut p);
                    p
                });
            }
        }
        let mut out = self.inner.poll_write()?;
        self.number_rtx(&mut out);
        if let Packet::Rtp(p) = &out.message.packet {
            // A probe repeats only what has left.
            if self.rtx_of.contains_key(&p.header.ssrc) {
                if self.history.len() >= PROBE_HISTORY {
                    self.history.pop_front();
                }
                self.history.push_back(Sent {
                    ssrc: p.header.ssrc,
                    seq: p.header.sequence_number,
                    timestamp: p.header.timestamp,
                    marker: p.header.marker,
                    payload: p.payload.clone(),
                });
            }
        }
        let bits = rtp_bits(&out);
        if bits > 0.0 {
            self.held_bits = (self.held_bits - bits).max(0.0);
            self.publish();
        }
        Some(out)
    }
    fn handle_timeout(&mut self, now: Instant) -> Result<(), Self::Error> {
        self.tell(now);
        self.inner.handle_timeout(now)
    }
    fn poll_timeout(&mut self) -> Option<Instant> {
        // Audio waiting to be taken is due when it came; a probe's next packet when it is due.
        [
            self.unpaced.front().map(|m| m.now),
            self.probe.front().map(|(due, _)| *due),
            self.inner.poll_timeout(),
        ]
        .into_iter()
        .flatten()
        .min()
    }
}

impl Interceptor for LinePacer {
    fn bind_local_stream(&mut self, info: &StreamInfo) {
        if info.mime_type.to_ascii_lowercase().starts_with("audio/") {
            self.audio.insert(info.ssrc);
        }
        self.rtx.extend(info.ssrc_rtx);
        if let (Some(rtx), Some(pt), false) = (
            info.ssrc_rtx,
            info.payload_type_rtx,
            self.audio.contains(&info.ssrc),
        ) {
            self.rtx_of.insert(info.ssrc, (rtx, pt));
        }
        self.reading.set_can_probe(!self.rtx_of.is_empty());
        self.inner.bind_local_stream(info)
    }
    fn unbind_local_stream(&mut self, info: &StreamInfo) {
        self.audio.remove(&info.ssrc);
        if let Some(rtx) = info.ssrc_rtx {
            self.rtx.remove(&rtx);
        }
        self.rtx_of.remove(&info.ssrc);
        self.reading.set_can_probe(!self.rtx_of.is_empty());
        self.history.retain(|p| p.ssrc != info.ssrc);
        // A probe still queued for it would leave on a stream that is gone.
        if let Some(rtx) = info.ssrc_rtx {
            self.probe.retain(|(_, m)| rtp_ssrc(m) != Some(rtx));
        }
        self.inner.unbind_local_stream(info)
    }
    fn bind_remote_stream(&mut self, info: &StreamInfo) {
        self.inner.bind_remote_stream(info)
    }
    fn unbind_remote_stream(&mut self, info: &StreamInfo) {
        self.inner.unbind_remote_stream(info)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rtc::interceptor::{AttributedPacket, Packet};
    use rtc::rtp::header::Header;
    use std::time::Duration;

    const START: f64 = 1_064_000.0;

    fn estimate(bps: f64, now: Instant) -> TaggedPacket {
        let mut message = AttributedPacket::new(Packet::Rtcp(vec![Box::new(
            rtc::rtcp::receiver_report::ReceiverReport::default(),
        )]));
        message.add(Attribute::TargetBitrateChanged {
            bits_per_second: bps,
        });
        TaggedPacket {
            now,
            transport: Default::default(),
            message,
        }
    }

    fn rtp(seq: u16, now: Instant) -> TaggedPacket {
        let packet = rtc::rtp::packet::Packet {
            header: Header {
                sequence_number: seq,
                ssrc: 1,
                ..Default::default()
            },
            payload: vec![0u8; 1188].into(),
        };
        TaggedPacket {
            now,
            transport: Default::default(),
            message: AttributedPacket::new(Packet::Rtp(packet)),
        }
    }

    /// A resend on the RTX stream 9 of stream 1's packet `osn` (RFC 4588), its own `seq`.
    fn rtx(seq: u16, osn: u16, now: Instant) -> TaggedPacket {
        let mut payload = osn.to_be_bytes().to_vec();
        payload.extend([0u8; 1000]);
        let packet = rtc::rtp::packet::Packet {
            header: Header {
                sequence_number: seq,
                ssrc: 9,
                ..Default::default()
            },
            payload: payload.into(),
        };
        TaggedPacket {
            now,
            transport: Default::default(),
            message: AttributedPacket::new(Packet::Rtp(packet)).with(Attribute::Retransmission),
        }
    }

    #[test]
    fn a_packet_asked_for_twice_within_a_round_trip_is_resent_once_on_its_rtx_stream() {
        let t0 = Instant::now();
        let reading = Arc::new(LineReading::default());
        reading.set_rtt_ms(200);
        let mut p = LinePacer::new(START, reading);
        p.bind_local_stream(&StreamInfo {
            ssrc: 1,
            ssrc_rtx: Some(9),
            mime_type: "video/VP8".into(),
            ..Default::default()
        });
        let sent = |p: &mut LinePacer, m: TaggedPacket, now: Instant| {
            p.handle_write(m).unwrap();
            p.handle_timeout(now).unwrap();
            std::iter::from_fn(|| p.poll_write()).count()
        };
        assert_eq!(sent(&mut p, rtx(100, 7, t0), t0), 1);
        // Each resend has a sequence number of its own; the packet it carries is the same.
        let soon = t0 + Duration::from_millis(60);
        assert_eq!(sent(&mut p, rtx(101, 7, soon), soon), 0, "on its way");
        assert_eq!(sent(&mut p, rtx(102, 8, soon), soon), 1, "another packet");
        let later = t0 + Duration::from_millis(160);
        assert_eq!(sent(&mut p, rtx(103, 7, later), later), 1, "lost again");
    }

    /// A probe asked for: the latest video packets again on their RTX stream, each carrying
    /// the packet it repeats, evenly spread at the probe's rate over its length; the RTX
    /// stream's numbers run on through the probe and the resends alike.
    #[test]
    fn a_probe_sends_the_latest_packets_again_on_rtx_at_its_rate() {
        let (p, out, t) = probe_at(960_000.0);
        // 960 kbit/s for 100 ms: ~10 packets of ~1200 bytes, the newest first.
        assert!((9..=12).contains(&out.len()), "{}", out.len());
        let osn = repeated(&out);
        assert_eq!(&osn[..3], &[9, 8, 7], "{osn:?}");
        for (_, r) in &out {
            assert_eq!(
                (r.header.ssrc, r.header.payload_type, r.header.version),
                (9, 97, 2)
            );
            assert_eq!(r.payload.len(), 1190);
        }
        let span = out.last().unwrap().0 - out[0].0;
        assert!(
            (Duration::from_millis(85)..=Duration::from_millis(115)).contains(&span),
            "{span:?}"
        );
        let seqs: Vec<u16> = out.iter().map(|(_, r)| r.header.sequence_number).collect();
        for w in seqs.windows(2) {
            assert_eq!(w[1], w[0].wrapping_add(1), "{seqs:?}");
        }
        resend_after(p, &seqs, t);
    }

    /// A probe over what ten packets carry in 100 ms sends them over again, each in turn:
    /// at 20 Mbit/s, ~200 packets (past the history's 64).
    #[test]
    fn a_fast_probe_repeats_the_history() {
        let (_, out, _) = probe_at(20_000_000.0);
        assert!((190..=215).contains(&out.len()), "{}", out.len());
        let osn = repeated(&out);
        assert_eq!(&osn[..12], &[9, 8, 7, 6, 5, 4, 3, 2, 1, 0, 9, 8], "{osn:?}");
        let span = out.last().unwrap().0 - out[0].0;
        assert!(
            (Duration::from_millis(90)..=Duration::from_millis(110)).contains(&span),
            "{span:?}"
        );
    }

    /// The sequence numbers RTX packets carry of the packets they repeat.
    fn repeated(out: &[(Instant, rtc::rtp::packet::Packet)]) -> Vec<u16> {
        out.iter()
            .map(|(_, r)| u16::from_be_bytes([r.payload[0], r.payload[1]]))
            .collect()
    }

    /// Ten video packets sent, then a probe at `rate`: the pacer, what it sent (when, what),
    /// and the time it was left at.
    fn probe_at(rate: f64) -> (LinePacer, Vec<(Instant, rtc::rtp::packet::Packet)>, Instant) {
        let t0 = Instant::now();
        let reading = Arc::new(LineReading::default());
        let mut p = LinePacer::new(START, reading.clone());
        p.bind_local_stream(&StreamInfo {
            ssrc: 1,
            ssrc_rtx: Some(9),
            payload_type_rtx: Some(97),
            mime_type: "video/VP8".into(),
            ..Default::default()
        });
        for seq in 0..10 {
            p.handle_write(rtp(seq, t0)).unwrap();
        }
        p.handle_timeout(t0).unwrap();
        assert_eq!(std::iter::from_fn(|| p.poll_write()).count(), 10);
        reading.request_probe(rate);
        let mut out = Vec::new();
        let mut t = t0;
        p.handle_read(estimate(START, t)).unwrap();
        while t < t0 + Duration::from_millis(300) {
            while let Some(m) = p.poll_write() {
                if let Packet::Rtp(r) = m.message.packet {
                    out.push((t, r));
                }
            }
            t += Duration::from_millis(1);
            p.handle_timeout(t).unwrap();
        }
        (p, out, t)
    }

    /// A resend after a probe goes on from the probe's numbers, whatever number it came with.
    fn resend_after(mut p: LinePacer, seqs: &[u16], t: Instant) {
        p.handle_write(rtx(0, 3, t)).unwrap();
        p.handle_timeout(t).unwrap();
        let Some(Packet::Rtp(r)) = p.poll_write().map(|m| m.message.packet) else {
            panic!("the resend")
        };
        assert_eq!(
            r.header.sequence_number,
            seqs.last().unwrap().wrapping_add(1)
        );
    }

    /// `patches/rtc-interceptor`: the TWCC sender numbers a packet of a stream's RTX stream
    /// (probes and resends) as it does the stream's own, so the far end reports on it.
    #[test]
    fn packets_on_the_rtx_stream_are_numbered_for_congestion_reports() {
        let mut twcc = rtc::interceptor::TwccSenderBuilder::new().build();
        twcc.bind_local_stream(&StreamInfo {
            ssrc: 1,
            ssrc_rtx: Some(9),
            rtp_header_extensions: vec![rtc::interceptor::RTPHeaderExtension {
                uri: "http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01"
                    .into(),
                id: 5,
            }],
            ..Default::default()
        });
        let t0 = Instant::now();
        let mut numbers = Vec::new();
        for m in [rtp(1, t0), rtx(0, 1, t0), rtp(2, t0)] {
            twcc.handle_write(m).unwrap();
            let Some(Packet::Rtp(p)) = twcc.poll_write().map(|m| m.message.packet) else {
                panic!("passed on")
            };
            let ext = p.header.get_extension(5).expect("numbered");
            numbers.push(u16::from_be_bytes([ext[0], ext[1]]));
        }
        assert_eq!(numbers[1], numbers[0].wrapping_add(1), "{numbers:?}");
        assert_eq!(numbers[2], numbers[1].wrapping_add(1), "{numbers:?}");
    }

    /// Sends a 60-packet keyframe (~0.57 Mbit) at `t0`; when its last packet leaves.
    fn keyframe_leaves(p: &mut LinePacer, t0: Instant) -> Duration {
        for seq in 0..60 {
            p.handle_write(rtp(seq, t0)).unwrap();
        }
        let (mut out, mut now) = (0, t0);
        while out < 60 {
            p.handle_timeout(now).unwrap();
            while p.poll_write().is_some() {
                out += 1;
            }
            now = p
                .poll_timeout()
                .unwrap_or(now)
                .max(now + Duration::from_millis(1));
            assert!(now - t0 < Duration::from_secs(10), "{out} of 60 left");
        }
        now - Duration::from_millis(1) - t0
    }

    #[test]
    fn a_keyframe_leaves_at_once_on_a_wide_line() {
        let t0 = Instant::now();
        let mut p = LinePacer::new(START, Arc::default());
        p.handle_read(estimate(2_000_000.0, t0)).unwrap();
        assert_eq!(p.burst(), WIDE_BURST_BITS);
        // A call under way: its budget has had time to fill.
        p.handle_write(rtp(100, t0)).unwrap();
        let t1 = t0 + Duration::from_secs(2);
        assert!(keyframe_leaves(&mut p, t1) < Duration::from_millis(5));
    }

    #[test]
    fn a_keyframe_is_spread_over_a_narrow_line() {
        let t0 = Instant::now();
        let mut p = LinePacer::new(START, Arc::default());
        p.handle_read(estimate(250_000.0, t0)).unwrap();
        while p.poll_read().is_some() {}
        assert_eq!(p.burst(), 37_500.0, "0.1 s at 1.5 x 250 kbit/s");
        // However long the line was idle, 0.58 Mbit at 375 kbit/s less one burst: ~1.4 s.
        p.handle_write(rtp(100, t0)).unwrap();
        assert_eq!(
            p.reading.pacer_queue_ms(),
            25,
            "one packet of 1200 bytes at 375 kbit/s"
        );
        p.handle_timeout(t0).unwrap();
        while p.poll_write().is_some() {}
        assert_eq!(p.reading.pacer_queue_ms(), 0);
        let took = keyframe_leaves(&mut p, t0 + Duration::from_secs(2));
        assert!(
            (1300..1600).contains(&(took.as_millis() as u64)),
            "{took:?}"
        );
        assert_eq!(p.reading.pacer_queue_ms(), 0, "all gone");
        // The line widens again: wide bursts.
        p.handle_read(estimate(START, t0 + Duration::from_secs(9)))
            .unwrap();
        assert_eq!(p.burst(), WIDE_BURST_BITS);
    }

    #[test]
    fn a_retransmission_behind_a_long_queue_is_not_sent() {
        let t0 = Instant::now();
        let mut p = LinePacer::new(START, Arc::default());
        p.handle_read(estimate(250_000.0, t0)).unwrap();
        let resend = |seq| {
            let mut m = rtp(seq, t0);
            m.message.add(Attribute::Retransmission);
            m
        };
        p.handle_write(resend(1)).unwrap();
        assert_eq!(p.reading.pacer_queue_ms(), 25, "a short queue takes it");
        for seq in 2..12 {
            p.handle_write(rtp(seq, t0)).unwrap();
        }
        let held = p.reading.pacer_queue_ms();
        assert!(held > STALE_RETRANSMISSION_MS, "{held}");
        p.handle_write(resend(12)).unwrap();
        assert_eq!(p.reading.pacer_queue_ms(), held, "refused");
        p.handle_write(rtp(13, t0)).unwrap();
        assert!(p.reading.pacer_queue_ms() > held, "new media still queues");
    }

    #[test]
    fn audio_goes_ahead_of_a_long_queue() {
        let t0 = Instant::now();
        let mut p = with_audio(7);
        p.handle_read(estimate(250_000.0, t0)).unwrap();
        while p.poll_read().is_some() {}
        // A keyframe's worth of video waits; then a 20 ms audio packet arrives.
        for seq in 0..20 {
            p.handle_write(rtp(seq, t0)).unwrap();
        }
        let held = p.reading.pacer_queue_ms();
        assert!(held > 300, "{held}");
        let mut audio = rtp(500, t0 + Duration::from_millis(5));
        if let Packet::Rtp(r) = &mut audio.message.packet {
            r.header.ssrc = 7;
        }
        p.handle_write(audio).unwrap();
        assert_eq!(
            p.reading.pacer_queue_ms(),
            held,
            "not queued behind the video"
        );
        assert_eq!(
            p.poll_timeout(),
            Some(t0 + Duration::from_millis(5)),
            "the audio is due when it came"
        );
        let first = p.poll_write().expect("the audio, at once");
        assert!(matches!(&first.message.packet, Packet::Rtp(r) if r.header.ssrc == 7));
        // Unbound, an SSRC is paced like the rest.
        p.unbind_local_stream(&StreamInfo {
            ssrc: 7,
            mime_type: "audio/opus".into(),
            ..Default::default()
        });
        let mut late = rtp(501, t0);
        if let Packet::Rtp(r) = &mut late.message.packet {
            r.header.ssrc = 7;
        }
        p.handle_write(late).unwrap();
        assert!(p.reading.pacer_queue_ms() > held);
    }

    /// A pacer whose local stream `ssrc` is Opus audio.
    fn with_audio(ssrc: u32) -> LinePacer {
        let mut p = LinePacer::new(START, Arc::default());
        p.bind_local_stream(&StreamInfo {
            ssrc,
            mime_type: "audio/opus".into(),
            ..Default::default()
        });
        p
    }

    /// An Opus-sized packet (200 bytes) of the audio stream `ssrc`.
    fn audio(ssrc: u32, seq: u16, now: Instant) -> TaggedPacket {
        let mut m = rtp(seq, now);
        if let Packet::Rtp(r) = &mut m.message.packet {
            r.header.ssrc = ssrc;
            r.payload = vec![0u8; 188].into();
        }
        m
    }

    #[test]
    fn audio_and_video_together_keep_to_the_pacers_rate() {
        let t0 = Instant::now();
        let mut p = with_audio(7);
        p.handle_read(estimate(250_000.0, t0)).unwrap();
        while p.poll_read().is_some() {}
        // Two seconds of 80 kbit/s audio beside far more video than the line takes.
        for seq in 0..400 {
            p.handle_write(rtp(seq, t0)).unwrap();
        }
        let (mut video_bits, mut audio_bits) = (0.0, 0.0);
        let mut now = t0;
        let end = t0 + Duration::from_secs(2);
        let mut next_audio = t0;
        let mut seq = 0;
        while now < end {
            if now >= next_audio {
                p.handle_write(audio(7, seq, now)).unwrap();
                seq += 1;
                next_audio += Duration::from_millis(20);
            }
            p.handle_timeout(now).unwrap();
            while let Some(out) = p.poll_write() {
                match &out.message.packet {
                    Packet::Rtp(r) if r.header.ssrc == 7 => audio_bits += rtp_bits(&out),
                    _ => video_bits += rtp_bits(&out),
                }
            }
            now += Duration::from_millis(1);
        }
        assert_eq!(audio_bits, 100.0 * 200.0 * 8.0, "every audio packet left");
        // 1.5 x 250 kbit/s for 2 s plus one burst (37.5 kbit) and one packet of slack.
        let allowed = 375_000.0 * 2.0 + 37_500.0 + 9_600.0;
        assert!(
            audio_bits + video_bits <= allowed,
            "{audio_bits} + {video_bits} > {allowed}"
        );
        assert!(
            video_bits >= allowed - audio_bits - 2.0 * 9_600.0 - 37_500.0,
            "the video gets the rest: {video_bits}"
        );
    }

    #[test]
    fn audio_on_a_line_narrower_than_itself_leaves_the_video_a_bounded_debt() {
        let t0 = Instant::now();
        let mut p = with_audio(7);
        // 1.5 x 20 kbit/s = 30 kbit/s: a second of 80 kbit/s audio outruns it.
        p.handle_read(estimate(20_000.0, t0)).unwrap();
        for seq in 0..50 {
            p.handle_write(audio(7, seq, t0 + Duration::from_millis(20 * seq as u64)))
                .unwrap();
        }
        while p.poll_write().is_some() {}
        // Muted: a video packet waits at most one burst's debt plus itself.
        let t1 = t0 + Duration::from_secs(1);
        p.handle_write(rtp(1, t1)).unwrap();
        let due = p.poll_timeout().expect("a deadline");
        let burst = PACER_MIN_BURST_BITS;
        let most = Duration::from_secs_f64((burst + rtp_bits(&rtp(1, t1))) / 30_000.0);
        assert!(due - t1 <= most, "{:?} > {most:?}", due - t1);
    }

    #[test]
    fn the_burst_never_falls_below_one_packet() {
        assert_eq!(burst_bits(10_000.0, START), PACER_MIN_BURST_BITS);
        assert_eq!(burst_bits(START, START), WIDE_BURST_BITS);
    }
}
