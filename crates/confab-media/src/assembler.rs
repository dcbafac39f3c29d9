//! RTP → whole encoded frames, released on the marker bit (not one frame late, as a sample
//! builder that waits for the next frame's first packet would be).
//!
//! Packets are reordered inside a small window. A gap that NACK does not fill within
//! `loss_wait` is given up: the assembler skips to the next frame start and says so, and the
//! caller asks for a keyframe and drops pictures until one arrives.

use crate::video::VideoCodec;
use bytes::Bytes;
use rtc::rtp::codec::h264::H264Packet;
use rtc::rtp::codec::vp8::Vp8Packet;
use rtc::rtp::packetizer::Depacketizer;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// How long a gap may wait for NACK to fill it, for a path with round trip `rtt_ms`: the
/// engine asks at once and again each round trip, so this leaves room for two tries with
/// 100 ms of slack each (the request or the retransmission can be lost too, and a busy sender
/// answers late). Never less than the 150 ms a clean path needs, never more than 600 ms of
/// held pictures.
pub fn loss_wait_for(rtt_ms: Option<f64>) -> Duration {
    const NACK_TICK_MS: f64 = 100.0;
    let ms = match rtt_ms {
        Some(rtt) if rtt.is_finite() && rtt > 0.0 => 2.0 * (rtt + NACK_TICK_MS) + 20.0,
        _ => 150.0,
    };
    Duration::from_millis(ms.clamp(150.0, 600.0) as u64)
}

/// The parts of an RTP packet the assembler needs.
#[derive(Debug, Clone)]
pub struct RtpIn {
    pub seq: u16,
    pub timestamp: u32,
    pub marker: bool,
    pub payload: Bytes,
}

/// A complete encoded frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AssembledFrame {
    pub data: Vec<u8>,
    pub rtp_timestamp: u32,
    pub keyframe: bool,
    /// Frames were lost before this one.
    pub after_loss: bool,
}

enum Depack {
    H264(H264Packet),
    Vp8(Vp8Packet),
}

impl Depack {
    fn new(codec: VideoCodec) -> Self {
        match codec {
            VideoCodec::H264 => Depack::H264(H264Packet::default()),
            VideoCodec::Vp8 => Depack::Vp8(Vp8Packet::default()),
        }
    }

    fn depacketize(&mut self, b: &Bytes) -> Option<Bytes> {
        match self {
            Depack::H264(d) => {
                // rtc's STAP-A loop reads a NAL unit's two length bytes without checking that
                // both are there: one stray byte after the last unit panics it.
                if !stap_a_well_formed(b) {
                    return None;
                }
                d.depacketize(b).ok()
            }
            Depack::Vp8(d) => d.depacketize(b).ok(),
        }
    }

    fn is_head(&self, b: &Bytes) -> bool {
        match self {
            Depack::H264(d) => d.is_partition_head(b),
            Depack::Vp8(d) => d.is_partition_head(b),
        }
    }
}

/// An H.264 RTP payload that is not a STAP-A (RFC 6184 §5.7.1), or one whose units each have
/// both length bytes and as many bytes as their length says, exactly to the end.
fn stap_a_well_formed(payload: &[u8]) -> bool {
    const STAP_A: u8 = 24;
    if payload.first().is_none_or(|b| b & 0x1f != STAP_A) {
        return true;
    }
    let mut rest = &payload[1..];
    while !rest.is_empty() {
        let [hi, lo, units @ ..] = rest else {
            return false;
        };
        let len = usize::from(u16::from_be_bytes([*hi, *lo]));
        if units.len() < len {
            return false;
        }
        rest = &units[len..];
    }
    true
}

/// Whether an Annex-B H.264 frame has a NAL unit of a type `want` accepts.
fn has_nal(frame: &[u8], want: impl Fn(u8) -> bool) -> bool {
    let mut i = 0;
    while i + 3 < frame.len() {
        if frame[i] == 0 && frame[i + 1] == 0 && frame[i + 2] == 1 {
            if want(frame[i + 3] & 0x1f) {
                return true;
            }
            i += 3;
        } else {
            i += 1;
        }
    }
    false
}

/// Whether a depacketized frame is a keyframe.
pub fn is_keyframe(codec: VideoCodec, frame: &[u8]) -> bool {
    match codec {
        // An IDR slice (5) or a sequence parameter set (7) in the Annex-B stream.
        VideoCodec::H264 => has_nal(frame, |t| t == 5 || t == 7),
        // VP8 frame tag: bit 0 of the first byte is 0 for a key frame.
        VideoCodec::Vp8 => frame.first().is_some_and(|b| b & 1 == 0),
    }
}

/// Whether a keyframe can start a decoder that has seen nothing yet: for H.264 it must carry
/// its sequence parameter set (7). A receiver that joins a stream mid-keyframe (an SFU starts
/// forwarding wherever the sender is) gets the IDR slices without the parameter sets that
/// came in the frame's first packet.
pub fn starts_decoding(codec: VideoCodec, frame: &[u8]) -> bool {
    match codec {
        VideoCodec::H264 => has_nal(frame, |t| t == 7),
        VideoCodec::Vp8 => is_keyframe(codec, frame),
    }
}

struct Held {
    pkt: RtpIn,
    arrived: Instant,
}

pub struct FrameAssembler {
    codec: VideoCodec,
    depack: Depack,
    packets: BTreeMap<u64, Held>,
    /// Extended sequence number of the first packet of the next frame to release.
    next: Option<u64>,
    seq: crate::seq::SeqExtender,
    loss_wait: Duration,
    max_packets: usize,
    lost_since_release: bool,
    pub frames_lost: u64,
}

impl FrameAssembler {
    pub fn new(codec: VideoCodec) -> Self {
        FrameAssembler {
            codec,
            depack: Depack::new(codec),
            packets: BTreeMap::new(),
            next: None,
            seq: Default::default(),
            loss_wait: Duration::from_millis(150),
            max_packets: 2000,
            lost_since_release: false,
            frames_lost: 0,
        }
    }

    pub fn with_loss_wait(mut self, d: Duration) -> Self {
        self.loss_wait = d;
        self
    }

    /// Changes how long a gap may wait for its retransmission (see [`loss_wait_for`]).
    pub fn set_loss_wait(&mut self, d: Duration) {
        self.loss_wait = d;
    }

    /// Takes a packet; returns the frames it completes, in order.
    pub fn push(&mut self, pkt: RtpIn, now: Instant) -> Vec<AssembledFrame> {
        let ext = self.seq.push(pkt.seq);
        if self.next.is_some_and(|n| ext < n) {
            return self.poll(now); // late or duplicate
        }
        if self.next.is_none() {
            // Start at the first frame start we see.
            if !self.depack.is_head(&pkt.payload) {
                return Vec::new();
            }
            self.next = Some(ext);
        }
        self.packets.insert(ext, Held { pkt, arrived: now });
        while self.packets.len() > self.max_packets {
            self.packets.pop_first();
        }
        self.poll(now)
    }

    /// Releases what is complete, and gives up on gaps older than the loss wait.
    pub fn poll(&mut self, now: Instant) -> Vec<AssembledFrame> {
        let mut out = Vec::new();
        loop {
            if let Some(f) = self.take_complete() {
                out.push(f);
                continue;
            }
            if self.skip_stale_gap(now) {
                continue;
            }
            break;
        }
        out
    }

    fn take_complete(&mut self) -> Option<AssembledFrame> {
        let start = self.next?;
        // Contiguous run from `start` through a marker.
        let mut end = None;
        let mut s = start;
        let ts = self.packets.get(&start)?.pkt.timestamp;
        while let Some(h) = self.packets.get(&s) {
            if h.pkt.timestamp != ts {
                // Next frame started without a marker: treat the run so far as the frame.
                end = Some(s - 1);
                break;
            }
            if h.pkt.marker {
                end = Some(s);
                break;
            }
            s += 1;
        }
        let end = end?;
        let mut data = Vec::new();
        self.depack = Depack::new(self.codec);
        let mut ok = true;
        for seq in start..=end {
            let h = self.packets.remove(&seq).expect("checked contiguous");
            match self.depack.depacketize(&h.pkt.payload) {
                Some(b) => data.extend_from_slice(&b),
                None => ok = false,
            }
        }
        self.next = Some(end + 1);
        let after_loss = std::mem::take(&mut self.lost_since_release);
        if !ok || data.is_empty() {
            self.frames_lost += 1;
            self.lost_since_release = true;
            return self.take_complete();
        }
        Some(AssembledFrame {
            keyframe: is_keyframe(self.codec, &data),
            data,
            rtp_timestamp: ts,
            after_loss,
        })
    }

    /// If the next packet is missing and what waits behind it is older than the loss wait,
    /// jump to the next frame start after the gap.
    fn skip_stale_gap(&mut self, now: Instant) -> bool {
        let Some(next) = self.next else { return false };
        if self.packets.contains_key(&next) {
            // A frame is in progress with a hole inside it.
            let mut s = next;
            while self.packets.contains_key(&s) {
                s += 1;
            }
            let Some((_, after)) = self.packets.range(s..).next() else {
                return false;
            };
            if now.duration_since(after.arrived) < self.loss_wait {
                return false;
            }
        } else {
            let Some((_, first)) = self.packets.iter().next() else {
                return false;
            };
            if now.duration_since(first.arrived) < self.loss_wait {
                return false;
            }
        }
        // Give up: find the first packet after `next` that starts a frame.
        let start = self
            .packets
            .range(next + 1..)
            .find(|(&seq, h)| {
                let prev_marker = self.packets.get(&(seq - 1)).map(|p| p.pkt.marker);
                prev_marker == Some(true)
                    || (prev_marker.is_none() && self.depack.is_head(&h.pkt.payload))
            })
            .map(|(&seq, _)| seq);
        self.frames_lost += 1;
        self.lost_since_release = true;
        match start {
            Some(s) => {
                self.packets = self.packets.split_off(&s);
                self.next = Some(s);
                true
            }
            None => {
                self.packets.clear();
                self.next = None; // wait for the next frame start
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pattern;
    use crate::video::{decoder, encoder, AVAILABLE};

    /// Real encoded frames, packetized as the WebRTC stack does.
    fn recorded(codec: VideoCodec, frames: u32) -> Vec<(RtpIn, u32)> {
        use rtc::rtp::codec::{h264::H264Payloader, vp8::Vp8Payloader};
        use rtc::rtp::packetizer::Payloader;
        let mut enc = encoder(codec, 1_000_000, 30.0).unwrap();
        let mut out = Vec::new();
        let mut seq = 65_500u16; // wraps during the recording
        for n in 0..frames {
            let f = pattern::numbered(640, 480, n);
            let e = enc.encode(&f, n == 0).unwrap().unwrap();
            let payloads = match codec {
                VideoCodec::H264 => H264Payloader::default()
                    .payload(1200, &Bytes::from(e.data))
                    .unwrap(),
                VideoCodec::Vp8 => Vp8Payloader::default()
                    .payload(1200, &Bytes::from(e.data))
                    .unwrap(),
            };
            let count = payloads.len();
            for (i, p) in payloads.into_iter().enumerate() {
                out.push((
                    RtpIn {
                        seq,
                        timestamp: n * 3000,
                        marker: i + 1 == count,
                        payload: p,
                    },
                    n,
                ));
                seq = seq.wrapping_add(1);
            }
        }
        out
    }

    fn decode_all(codec: VideoCodec, frames: &[AssembledFrame]) -> Vec<u32> {
        let mut dec = decoder(codec).unwrap();
        frames
            .iter()
            .filter_map(|f| dec.decode(&f.data).ok().flatten())
            .filter_map(|p| pattern::read(&p).map(|s| s.frame))
            .collect()
    }

    #[test]
    fn in_order_frames_come_out_on_the_marker() {
        for &codec in AVAILABLE {
            let rec = recorded(codec, 10);
            let mut a = FrameAssembler::new(codec);
            let now = Instant::now();
            let mut frames = Vec::new();
            for (pkt, n) in rec {
                let marker = pkt.marker;
                let got = a.push(pkt, now);
                // Released exactly when the frame's last packet arrives.
                assert_eq!(got.len(), marker as usize, "{codec:?} frame {n}");
                frames.extend(got);
            }
            assert!(frames[0].keyframe && !frames[1].keyframe);
            assert_eq!(
                decode_all(codec, &frames),
                (0..10).collect::<Vec<_>>(),
                "{codec:?}"
            );
        }
    }

    #[test]
    fn reordered_packets_are_put_back_in_order() {
        for &codec in AVAILABLE {
            let mut rec = recorded(codec, 12);
            // Swap neighbours everywhere: heavy reordering inside a small window.
            for i in (0..rec.len() - 1).step_by(2) {
                rec.swap(i, i + 1);
            }
            // The stream must start with a frame start for the assembler to lock on.
            rec.swap(0, 1);
            let mut a = FrameAssembler::new(codec);
            let now = Instant::now();
            let frames: Vec<_> = rec.into_iter().flat_map(|(p, _)| a.push(p, now)).collect();
            assert_eq!(
                decode_all(codec, &frames),
                (0..12).collect::<Vec<_>>(),
                "{codec:?}"
            );
            assert!(frames.iter().all(|f| !f.after_loss));
        }
    }

    #[test]
    fn a_lost_packet_is_given_up_after_the_wait_and_flagged() {
        for &codec in AVAILABLE {
            let rec = recorded(codec, 8);
            // Drop one packet of frame 3.
            let victim = rec.iter().position(|(_, n)| *n == 3).unwrap();
            let mut a = FrameAssembler::new(codec).with_loss_wait(Duration::from_millis(100));
            let t0 = Instant::now();
            let mut frames = Vec::new();
            for (i, (p, _)) in rec.into_iter().enumerate() {
                if i != victim {
                    frames.extend(a.push(p, t0));
                }
            }
            assert_eq!(frames.len(), 3, "{codec:?}: held behind the gap");
            frames.extend(a.poll(t0 + Duration::from_millis(50)));
            assert_eq!(
                frames.len(),
                3,
                "{codec:?}: still waiting for a retransmission"
            );
            frames.extend(a.poll(t0 + Duration::from_millis(150)));
            assert!(
                frames.len() >= 7,
                "{codec:?}: frames after the gap released: {}",
                frames.len()
            );
            let first_after = frames.iter().find(|f| f.after_loss).expect("flagged");
            assert!(!first_after.keyframe);
            assert!(a.frames_lost >= 1);
        }
    }

    #[test]
    fn a_late_retransmission_completes_the_frame() {
        let codec = VideoCodec::H264;
        let rec = recorded(codec, 4);
        let victim = rec.iter().position(|(_, n)| *n == 1).unwrap();
        let mut a = FrameAssembler::new(codec);
        let t0 = Instant::now();
        let mut frames = Vec::new();
        let mut held = None;
        for (i, (p, _)) in rec.into_iter().enumerate() {
            if i == victim {
                held = Some(p);
            } else {
                frames.extend(a.push(p, t0));
            }
        }
        frames.extend(a.push(held.unwrap(), t0 + Duration::from_millis(40)));
        assert_eq!(decode_all(codec, &frames), vec![0, 1, 2, 3]);
    }

    #[test]
    fn stap_a_with_a_dangling_length_byte() {
        // A STAP-A whose last unit is followed by one byte: half a length field. rtc's H.264
        // depacketizer indexes past the end on it (a remote crash of the receive task).
        let now = Instant::now();
        let mut a = FrameAssembler::new(VideoCodec::H264);
        let hostile = RtpIn {
            seq: 1,
            timestamp: 0,
            marker: true,
            payload: Bytes::from_static(&[0x78, 0x00, 0x01, 0x65, 0x00]),
        };
        assert!(a.push(hostile, now).is_empty());
        assert_eq!(a.frames_lost, 1);
        // The same aggregate, well formed, is taken: SPS and IDR as one frame.
        let good = RtpIn {
            seq: 2,
            timestamp: 3000,
            marker: true,
            payload: Bytes::from_static(&[0x78, 0x00, 0x02, 0x67, 0x42, 0x00, 0x01, 0x65]),
        };
        let frames = a.push(good, now);
        assert_eq!(frames.len(), 1);
        assert_eq!(frames[0].data, [0, 0, 0, 1, 0x67, 0x42, 0, 0, 0, 1, 0x65]);
        assert!(frames[0].keyframe);
        assert!(frames[0].after_loss);
        // The rule itself: units must fill the aggregate exactly.
        assert!(stap_a_well_formed(&[0x78]));
        assert!(stap_a_well_formed(&[0x78, 0x00, 0x00]));
        assert!(!stap_a_well_formed(&[0x78, 0x00, 0x00, 0x00]));
        assert!(!stap_a_well_formed(&[0x78, 0x00, 0x03, 0x65]));
        assert!(stap_a_well_formed(&[0x65, 0x00])); // not an aggregate: not its business
    }

    #[test]
    fn garbage_payloads_never_panic() {
        let mut a = FrameAssembler::new(VideoCodec::H264);
        let now = Instant::now();
        for i in 0..200u16 {
            let payload = Bytes::from(vec![(i % 256) as u8; (i % 7) as usize]);
            let _ = a.push(
                RtpIn {
                    seq: i.wrapping_mul(7919),
                    timestamp: i as u32,
                    marker: i % 3 == 0,
                    payload,
                },
                now,
            );
        }
        // Still usable for a real stream (VP8 where it is built).
        let codec = *AVAILABLE.last().expect("H.264 is always built");
        let mut b = FrameAssembler::new(codec);
        let frames: Vec<_> = recorded(codec, 3)
            .into_iter()
            .flat_map(|(p, _)| b.push(p, now))
            .collect();
        assert_eq!(frames.len(), 3);
    }

    #[test]
    fn the_loss_wait_follows_the_round_trip_within_bounds() {
        assert_eq!(loss_wait_for(None), Duration::from_millis(150));
        assert_eq!(loss_wait_for(Some(f64::NAN)), Duration::from_millis(150));
        assert_eq!(loss_wait_for(Some(2.0)), Duration::from_millis(224));
        assert_eq!(loss_wait_for(Some(100.0)), Duration::from_millis(420));
        assert_eq!(loss_wait_for(Some(5000.0)), Duration::from_millis(600));
    }

    #[test]
    fn an_idr_without_its_parameter_sets_cannot_start_a_decoder() {
        let sps_pps_idr = [
            0, 0, 0, 1, 0x67, 0x42, 0, 0, 0, 1, 0x68, 0xce, 0, 0, 0, 1, 0x65, 0x88,
        ];
        let idr_only = [0, 0, 0, 1, 0x65, 0x88, 0x84];
        let delta = [0, 0, 0, 1, 0x41, 0x9a];
        let h = VideoCodec::H264;
        assert!(is_keyframe(h, &sps_pps_idr) && starts_decoding(h, &sps_pps_idr));
        assert!(is_keyframe(h, &idr_only) && !starts_decoding(h, &idr_only));
        assert!(!is_keyframe(h, &delta) && !starts_decoding(h, &delta));
        // A VP8 keyframe is whole in itself.
        assert!(starts_decoding(VideoCodec::Vp8, &[0x10, 0x02, 0x00]));
        assert!(!starts_decoding(VideoCodec::Vp8, &[0x11, 0x02, 0x00]));
    }
}
