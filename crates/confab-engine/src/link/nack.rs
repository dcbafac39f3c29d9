//! Asking for what did not arrive, as libwebrtc's NACK requester does: at once when a gap shows,
//! again one round trip later while the packet has still not come, up to [`MAX_TRIES`] times,
//! and no longer for a packet too old to be played ([`MAX_AGE`]).
//!
//! webrtc 0.21's generator asks on a 100 ms tick, for everything missing each time: a gap
//! waits up to 100 ms before it is asked for, and a retransmission lost too waits for the
//! tick after next. On a lossy path that is most of a picture's stall, and two losses of one
//! packet (one in 400 packets at 5 %) make a freeze of more than 300 ms.
//!
//! On a path that reorders, "at once" would ask for every packet that is merely overtaken,
//! and the sender would send it twice. A gap filled sooner than a retransmission could have
//! come (within half a measured round trip) is reordering: for a while after one, a new gap
//! is first asked for only once that much time has passed (at most [`MAX_REORDER_WAIT`], as
//! libwebrtc's requester waits its reordering allowance or its 20 ms tick).

use crate::media::LineReading;
use rtc::interceptor::{AttributedPacket, Interceptor, Packet, StreamInfo, TaggedPacket};
use rtc::rtcp::transport_feedbacks::transport_layer_nack::{
    nack_pairs_from_sequence_numbers, TransportLayerNack,
};
use rtc::sansio::Protocol;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A packet is asked for at most this many times (libwebrtc: 10).
pub(crate) const MAX_TRIES: u8 = 10;
/// A packet missing longer than this is not asked for any more: the receiver has given up on
/// it by then (the assembler waits at most 600 ms, then asks for a keyframe).
pub(crate) const MAX_AGE: Duration = Duration::from_millis(600);
/// Gaps tracked per stream at most; past it the oldest are forgotten (libwebrtc: 1000).
const MAX_MISSING: usize = 1000;
/// A jump this far ahead is a new start (a restarted sender), not a loss.
const MAX_JUMP: u64 = 3000;
/// The round trip assumed before one is measured.
const DEFAULT_RTT: Duration = Duration::from_millis(100);
/// Asked again no sooner than this, however short the round trip.
const MIN_RETRY: Duration = Duration::from_millis(20);
/// A new gap waits at most this long for an overtaken packet before it is asked for.
pub(crate) const MAX_REORDER_WAIT: Duration = Duration::from_millis(30);
/// Reordering seen this long ago no longer makes new gaps wait.
const REORDER_MEMORY: Duration = Duration::from_secs(10);

/// One missing packet.
#[derive(Debug, Clone, Copy)]
struct Ask {
    since: Instant,
    /// When it is first asked for: at once, or after the path's reordering allowance.
    first: Instant,
    sent: Option<Instant>,
    tries: u8,
}

/// The missing packets of one stream (sans IO: fed arrivals and time).
#[derive(Debug, Default)]
pub(crate) struct Missing {
    /// The highest sequence number seen, extended past 16 bits.
    last: Option<u64>,
    gaps: BTreeMap<u64, Ask>,
    /// The last reordering seen: how late the overtaken packet came, and until when new
    /// gaps wait that long before they are asked for.
    reorder: Option<(Duration, Instant)>,
}

/// When a packet asked for `sent` may be asked for again, on a path of round trip `rtt`.
fn retry_at(sent: Instant, rtt: Duration) -> Instant {
    sent + (rtt + Duration::from_millis(5)).max(MIN_RETRY)
}

impl Missing {
    /// `seq` arrived at `now`: a gap before it is missing from now on; if it was missing, it
    /// is not any more. `rtt`: the round trip, once measured (before, no reordering is
    /// learnt: a retransmission could not be told from an overtaken packet).
    pub(crate) fn arrived(&mut self, seq: u16, now: Instant, rtt: Option<Duration>) {
        let Some(last) = self.last else {
            // Far from zero, so that an earlier packet still has a place.
            self.last = Some((1 << 16) | u64::from(seq));
            return;
        };
        // The extension of `seq` nearest to the last one.
        let base = (last & !0xffff) | u64::from(seq);
        let ext = [base.wrapping_sub(1 << 16), base, base + (1 << 16)]
            .into_iter()
            .min_by_key(|e| e.abs_diff(last))
            .unwrap_or(base);
        if ext > last {
            if ext - last > MAX_JUMP {
                self.gaps.clear();
            } else {
                let first = now + self.first_wait(now);
                for s in last + 1..ext {
                    self.gaps.insert(
                        s,
                        Ask {
                            since: now,
                            first,
                            sent: None,
                            tries: 0,
                        },
                    );
                }
                while self.gaps.len() > MAX_MISSING {
                    self.gaps.pop_first();
                }
            }
            self.last = Some(ext);
        } else if let Some(a) = self.gaps.remove(&ext) {
            let late = now.saturating_duration_since(a.since);
            if rtt.is_some_and(|rtt| late < rtt / 2) {
                // Overtaken, not retransmitted.
                let wait = match self.reorder {
                    Some((w, until)) if now < until => w.max(late),
                    _ => late,
                };
                self.reorder = Some((wait.min(MAX_REORDER_WAIT), now + REORDER_MEMORY));
            }
        }
    }

    /// `seq` came as a retransmission (on the stream's RTX stream): no longer missing. Says
    /// nothing of the stream's order (it is not its newest packet, nor an overtaken one).
    pub(crate) fn recovered(&mut self, seq: u16) {
        let Some(last) = self.last else {
            return;
        };
        let base = (last & !0xffff) | u64::from(seq);
        let ext = if base > last {
            base.wrapping_sub(1 << 16)
        } else {
            base
        };
        self.gaps.remove(&ext);
    }

    /// How long a new gap waits before it is first asked for, at `now`.
    fn first_wait(&self, now: Instant) -> Duration {
        match self.reorder {
            Some((wait, until)) if now < until => wait,
            _ => Duration::ZERO,
        }
    }

    /// The packets to ask for at `now` (marked asked): the newly missing, and those asked
    /// for a round trip ago that have not come. Forgets those asked for too often or too old.
    pub(crate) fn due(&mut self, now: Instant, rtt: Duration) -> Vec<u16> {
        self.gaps
            .retain(|_, a| a.tries < MAX_TRIES && now.saturating_duration_since(a.since) < MAX_AGE);
        let mut out = Vec::new();
        for (&seq, a) in self.gaps.iter_mut() {
            let due = match a.sent {
                None => now >= a.first,
                Some(sent) => now >= retry_at(sent, rtt),
            };
            if due {
                a.sent = Some(now);
                a.tries += 1;
                out.push(seq as u16);
            }
        }
        out
    }

    /// When something is next due (`None`: nothing is missing).
    pub(crate) fn next_due(&self, rtt: Duration) -> Option<Instant> {
        self.gaps
            .values()
            .map(|a| match a.sent {
                None => a.first,
                Some(sent) => retry_at(sent, rtt).min(a.since + MAX_AGE),
            })
            .min()
    }
}

/// The interceptor: [`Missing`] for every remote stream that takes NACK, its requests sent as
/// RTCP NACK, the round trip read from the link's [`LineReading`].
pub(super) struct NackRequester {
    sender_ssrc: u32,
    streams: HashMap<u32, Missing>,
    /// Each remote RTX stream's media stream: a packet on it fills its media stream's gap
    /// (RFC 4588: its payload starts with the original's sequence number). Its own numbers
    /// are never asked for.
    rtx: HashMap<u32, u32>,
    line: Arc<LineReading>,
    read: VecDeque<TaggedPacket>,
    write: VecDeque<TaggedPacket>,
}

impl NackRequester {
    pub(super) fn new(line: Arc<LineReading>) -> Self {
        NackRequester {
            sender_ssrc: rand::random(),
            streams: HashMap::new(),
            rtx: HashMap::new(),
            line,
            read: VecDeque::new(),
            write: VecDeque::new(),
        }
    }

    fn rtt(&self) -> Duration {
        self.measured_rtt().unwrap_or(DEFAULT_RTT)
    }

    fn measured_rtt(&self) -> Option<Duration> {
        match self.line.rtt_ms() {
            0 => None,
            ms => Some(Duration::from_millis(u64::from(ms))),
        }
    }

    fn ask(&mut self, now: Instant) {
        let rtt = self.rtt();
        for (&ssrc, missing) in &mut self.streams {
            let seqs = missing.due(now, rtt);
            if seqs.is_empty() {
                continue;
            }
            self.line.add_nacked(seqs.len() as u64);
            let nack = TransportLayerNack {
                sender_ssrc: self.sender_ssrc,
                media_ssrc: ssrc,
                nacks: nack_pairs_from_sequence_numbers(&seqs),
            };
            self.write.push_back(TaggedPacket {
                now,
                transport: Default::default(),
                message: AttributedPacket::new(Packet::Rtcp(vec![Box::new(nack)])),
            });
        }
    }
}

impl Protocol<TaggedPacket, TaggedPacket, ()> for NackRequester {
    type Rout = TaggedPacket;
    type Wout = TaggedPacket;
    type Eout = ();
    type Error = rtc::shared::error::Error;
    type Time = Instant;

    fn handle_read(&mut self, msg: TaggedPacket) -> Result<(), Self::Error> {
        if let Packet::Rtp(p) = &msg.message.packet {
            if let Some(media) = self.rtx.get(&p.header.ssrc) {
                if let (Some(missing), Some(osn)) =
                    (self.streams.get_mut(media), p.payload.get(..2))
                {
                    missing.recovered(u16::from_be_bytes([osn[0], osn[1]]));
                }
                self.read.push_back(msg);
                return Ok(());
            }
            let rtt = self.measured_rtt();
            if let Some(missing) = self.streams.get_mut(&p.header.ssrc) {
                missing.arrived(p.header.sequence_number, msg.now, rtt);
                // A new gap is asked for at once (unless the path reorders).
                let now = msg.now;
                self.read.push_back(msg);
                self.ask(now);
                return Ok(());
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
    fn handle_timeout(&mut self, now: Instant) -> Result<(), Self::Error> {
        self.ask(now);
        Ok(())
    }
    fn poll_timeout(&mut self) -> Option<Instant> {
        let rtt = self.rtt();
        self.streams.values().filter_map(|m| m.next_due(rtt)).min()
    }
}

impl Interceptor for NackRequester {
    fn bind_remote_stream(&mut self, info: &StreamInfo) {
        if let Some(rtx) = info.ssrc_rtx {
            self.rtx.insert(rtx, info.ssrc);
            self.streams.remove(&rtx);
        }
        if self.rtx.contains_key(&info.ssrc) {
            // An RTX stream, bound in its own right too: not asked for.
            return;
        }
        let nack = info
            .rtcp_feedback
            .iter()
            .any(|fb| fb.typ == "nack" && fb.parameter.is_empty());
        if nack {
            self.streams.insert(info.ssrc, Missing::default());
        }
    }
    fn unbind_remote_stream(&mut self, info: &StreamInfo) {
        self.streams.remove(&info.ssrc);
        if let Some(rtx) = info.ssrc_rtx {
            self.rtx.remove(&rtx);
        }
    }
    fn bind_local_stream(&mut self, _info: &StreamInfo) {}
    fn unbind_local_stream(&mut self, _info: &StreamInfo) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    const RTT: Duration = Duration::from_millis(100);

    fn ms(t0: Instant, n: u64) -> Instant {
        t0 + Duration::from_millis(n)
    }

    #[test]
    fn a_gap_is_asked_for_at_once_then_once_a_round_trip_until_it_comes() {
        let t0 = Instant::now();
        let mut m = Missing::default();
        m.arrived(10, t0, Some(RTT));
        m.arrived(13, ms(t0, 1), Some(RTT));
        assert_eq!(m.due(ms(t0, 1), RTT), [11, 12], "at once");
        assert_eq!(
            m.due(ms(t0, 50), RTT),
            [] as [u16; 0],
            "not before a round trip"
        );
        assert_eq!(m.next_due(RTT), Some(ms(t0, 106)));
        m.arrived(11, ms(t0, 101), Some(RTT));
        assert_eq!(
            m.due(ms(t0, 106), RTT),
            [12],
            "again, only what has not come"
        );
        m.arrived(12, ms(t0, 200), Some(RTT));
        assert_eq!(m.next_due(RTT), None);
        // Retransmissions, a round trip late: not taken for reordering.
        m.arrived(15, ms(t0, 210), Some(RTT));
        assert_eq!(m.due(ms(t0, 210), RTT), [14], "still at once");
    }

    #[test]
    fn an_overtaken_packet_makes_new_gaps_wait_for_a_while() {
        let t0 = Instant::now();
        let mut m = Missing::default();
        m.arrived(10, t0, Some(RTT));
        m.arrived(12, ms(t0, 1), Some(RTT));
        assert_eq!(
            m.due(ms(t0, 1), RTT),
            [11],
            "no reordering seen yet: at once"
        );
        // 11 comes 12 ms late, far sooner than a retransmission could: it was overtaken.
        m.arrived(11, ms(t0, 13), Some(RTT));
        m.arrived(14, ms(t0, 20), Some(RTT));
        assert_eq!(
            m.due(ms(t0, 20), RTT),
            [] as [u16; 0],
            "13 may only be overtaken"
        );
        assert_eq!(m.next_due(RTT), Some(ms(t0, 32)));
        assert_eq!(m.due(ms(t0, 32), RTT), [13], "then asked for");
        // However late an overtaken packet comes, a gap waits at most MAX_REORDER_WAIT.
        m.arrived(13, ms(t0, 55), Some(RTT));
        m.arrived(16, ms(t0, 60), Some(RTT));
        assert_eq!(m.next_due(RTT), Some(ms(t0, 60) + MAX_REORDER_WAIT));
        m.arrived(15, ms(t0, 61), Some(RTT));
        // Before a round trip is measured nothing is learnt, and reordering is forgotten.
        let later = ms(t0, 1000) + REORDER_MEMORY;
        m.arrived(18, later, Some(RTT));
        assert_eq!(m.due(later, RTT), [17], "forgotten: at once again");
        let mut fresh = Missing::default();
        fresh.arrived(1, t0, None);
        fresh.arrived(3, t0, None);
        fresh.arrived(2, ms(t0, 1), None);
        fresh.arrived(5, ms(t0, 2), None);
        assert_eq!(
            fresh.due(ms(t0, 2), RTT),
            [4],
            "no round trip yet: nothing learnt"
        );
    }

    #[test]
    fn asking_stops_after_ten_tries_or_when_too_old_to_play() {
        let t0 = Instant::now();
        let mut m = Missing::default();
        m.arrived(1, t0, None);
        m.arrived(3, t0, None);
        let rtt = Duration::from_millis(15);
        let mut asked = 0;
        let mut now = t0;
        while let Some(at) = m.next_due(rtt) {
            now = at.max(now);
            asked += m.due(now, rtt).len();
            assert!(asked <= MAX_TRIES as usize);
            now += Duration::from_millis(1);
        }
        assert_eq!(
            asked, MAX_TRIES as usize,
            "a 20 ms retry reaches ten tries first"
        );
        m.arrived(6, now, None);
        assert_eq!(m.due(now, RTT).len(), 2);
        assert!(m.due(now + MAX_AGE, RTT).is_empty(), "too old: forgotten");
        assert_eq!(m.next_due(RTT), None);
    }

    #[test]
    fn sequence_numbers_wrap_and_late_or_far_packets_are_not_losses() {
        let t0 = Instant::now();
        let mut m = Missing::default();
        m.arrived(65534, t0, None);
        m.arrived(1, t0, None);
        assert_eq!(m.due(t0, RTT), [65535, 0], "across the wrap");
        m.arrived(0, t0, None);
        m.arrived(65535, t0, None);
        assert_eq!(m.next_due(RTT), None, "late, not lost");
        // A sender that starts again far away is not 20 000 losses.
        m.arrived(20_000, t0, None);
        assert_eq!(m.next_due(RTT), None);
        // A long gap keeps only the newest MAX_MISSING.
        m.arrived(22_000, t0, None);
        let asked = m.due(t0, RTT);
        assert_eq!(asked.len(), MAX_MISSING);
        assert_eq!(asked.last(), Some(&21_999));
    }

    /// An RTP packet on `ssrc` numbered `seq`, its payload `payload`.
    fn packet(ssrc: u32, seq: u16, payload: Vec<u8>, now: Instant) -> TaggedPacket {
        TaggedPacket {
            now,
            transport: Default::default(),
            message: AttributedPacket::new(Packet::Rtp(rtc::rtp::packet::Packet {
                header: rtc::rtp::header::Header {
                    ssrc,
                    sequence_number: seq,
                    ..Default::default()
                },
                payload: payload.into(),
            })),
        }
    }

    /// The streams and sequence numbers asked for in what `n` writes.
    fn asked(n: &mut NackRequester) -> Vec<(u32, u16)> {
        let mut out = Vec::new();
        while let Some(m) = n.poll_write() {
            if let Packet::Rtcp(rtcp) = m.message.packet {
                for p in rtcp {
                    if let Some(nack) = p.as_any().downcast_ref::<TransportLayerNack>() {
                        for pair in &nack.nacks {
                            out.extend(
                                pair.packet_list().into_iter().map(|s| (nack.media_ssrc, s)),
                            );
                        }
                    }
                }
            }
        }
        out
    }

    /// A packet resent on the stream's RTX stream (bound as its own stream too, as webrtc
    /// does) fills its gap: not asked for again. The RTX stream's own numbers are never asked
    /// for, whatever their gaps (a probe repeats packets already here).
    #[test]
    fn a_resend_on_the_rtx_stream_fills_its_gap_and_rtx_gaps_are_not_asked_for() {
        let t0 = Instant::now();
        let line = Arc::new(LineReading::default());
        line.set_rtt_ms(100);
        let mut n = NackRequester::new(line.clone());
        let nack = vec![rtc::interceptor::RTCPFeedback {
            typ: "nack".into(),
            parameter: String::new(),
        }];
        n.bind_remote_stream(&StreamInfo {
            ssrc: 1,
            ssrc_rtx: Some(9),
            rtcp_feedback: nack.clone(),
            ..Default::default()
        });
        n.bind_remote_stream(&StreamInfo {
            ssrc: 9,
            rtcp_feedback: nack,
            ..Default::default()
        });
        n.handle_read(packet(1, 10, vec![0; 100], t0)).unwrap();
        n.handle_read(packet(1, 13, vec![0; 100], ms(t0, 1)))
            .unwrap();
        assert_eq!(asked(&mut n), [(1, 11), (1, 12)]);
        // 11 comes back on the RTX stream (its number first in the payload).
        let mut resent = 11u16.to_be_bytes().to_vec();
        resent.extend([0u8; 100]);
        n.handle_read(packet(9, 500, resent, ms(t0, 60))).unwrap();
        // Gaps in the RTX stream's own numbers, a probe's repeat of 13.
        let mut probe = 13u16.to_be_bytes().to_vec();
        probe.extend([0u8; 100]);
        n.handle_read(packet(9, 520, probe, ms(t0, 70))).unwrap();
        assert_eq!(asked(&mut n), [], "nothing of the RTX stream's own");
        n.handle_timeout(ms(t0, 110)).unwrap();
        assert_eq!(asked(&mut n), [(1, 12)], "11 came");
        assert_eq!(line.nacked(), 3);
    }
}
