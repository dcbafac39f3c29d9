//! Opus 48 kHz mono in 20 ms frames; the receive side's jitter buffer with packet-loss
//! concealment, and the mixer.

use crate::frame::{AudioFrame, FRAME_SAMPLES, SAMPLE_RATE};
use crate::tone::Listener;
use crate::MediaError;
use std::collections::BTreeMap;

fn opus_err(e: opus::Error) -> MediaError {
    MediaError::Codec(format!("Opus: {e}"))
}

pub struct AudioEncoder {
    enc: opus::Encoder,
    buf: Vec<u8>,
    /// The packet loss Opus is told to expect, percent.
    expected_loss: i32,
}

/// The loss Opus is told to expect when the worst receiver reports `reported_pct`: as
/// reported, rounded, at least 5 % (so that speech carries FEC from the first packet, before
/// any report) and at most 20 % (libwebrtc's cap). The more it expects, the better it codes
/// the FEC copy and the less each frame leans on the one before (it recovers sooner after a
/// loss), at the cost of the main stream's bits.
pub fn expected_loss_pct(reported_pct: f64) -> i32 {
    if reported_pct.is_nan() {
        return MIN_EXPECTED_LOSS;
    }
    (reported_pct.round() as i32).clamp(MIN_EXPECTED_LOSS, 20)
}

const MIN_EXPECTED_LOSS: i32 = 5;

impl AudioEncoder {
    pub fn new(bitrate_bps: i32) -> Result<Self, MediaError> {
        let mut enc =
            opus::Encoder::new(SAMPLE_RATE, opus::Channels::Mono, opus::Application::Voip)
                .map_err(opus_err)?;
        enc.set_bitrate(opus::Bitrate::Bits(bitrate_bps))
            .map_err(opus_err)?;
        // A call carries speech: the hint keeps Opus in its SILK and hybrid modes, the only
        // ones with in-band FEC (left to guess, it codes a steady tone, or music, as CELT).
        enc.set_signal(opus::Signal::Voice).map_err(opus_err)?;
        enc.set_inband_fec(true).map_err(opus_err)?;
        enc.set_packet_loss_perc(MIN_EXPECTED_LOSS)
            .map_err(opus_err)?;
        // Discontinuous transmission: on silence the encoder makes packets that need not be
        // sent (see `is_dtx`), and a comfort-noise update now and then.
        enc.set_dtx(true).map_err(opus_err)?;
        Ok(AudioEncoder {
            enc,
            buf: vec![0; 1500],
            expected_loss: MIN_EXPECTED_LOSS,
        })
    }

    /// Tells Opus the loss its receivers report (percent; see [`expected_loss_pct`]).
    pub fn set_reported_loss(&mut self, reported_pct: f64) -> Result<(), MediaError> {
        let pct = expected_loss_pct(reported_pct);
        if pct != self.expected_loss {
            self.enc.set_packet_loss_perc(pct).map_err(opus_err)?;
            self.expected_loss = pct;
        }
        Ok(())
    }

    /// The packet loss Opus expects now, percent.
    pub fn expected_loss(&self) -> i32 {
        self.expected_loss
    }

    /// One Opus packet for one 20 ms frame.
    pub fn encode(&mut self, frame: &AudioFrame) -> Result<Vec<u8>, MediaError> {
        let n = self.enc.encode(frame, &mut self.buf).map_err(opus_err)?;
        Ok(self.buf[..n].to_vec())
    }
}

/// An Opus packet the encoder made during silence with DTX on (one or two bytes): it need not
/// be sent; the receiver plays silence or comfort noise in its place.
pub fn is_dtx(packet: &[u8]) -> bool {
    packet.len() <= 2
}

/// What the jitter buffer gives the playout clock every 20 ms.
#[derive(Debug, PartialEq, Eq)]
pub enum Playout {
    /// The next packet, in order.
    Packet(Vec<u8>),
    /// The next packet is missing but later ones are here: conceal.
    Lost,
    /// Nothing to play (not started, or ran dry: buffering again).
    Silent,
}

/// Orders packets by sequence number and releases one per 20 ms after an initial delay.
#[derive(Debug)]
pub struct JitterBuffer {
    packets: BTreeMap<u64, Vec<u8>>,
    /// Extended sequence number of the next packet to play.
    next: Option<u64>,
    seq: crate::seq::SeqExtender,
    playing: bool,
    /// Packets to hold before starting (one more for a while after a loss: `LOSSY_TURNS`).
    target: usize,
    /// Packets held at most; beyond, the oldest are dropped.
    max: usize,
    pub late: u64,
    /// Packets missing at their turn to play, with later ones here (`Playout::Lost`).
    pub concealed: u64,
    /// Packets missing at their turn while the buffer had run dry, and passed over when it
    /// started again (they did not come, or came too late).
    pub skipped: u64,
    /// Whether a packet carries what rebuilds the one before it (Opus FEC): a packet lost
    /// while the buffer had run dry is then played from it when playout starts again,
    /// rather than skipped.
    rebuilds: fn(&[u8]) -> bool,
    /// Turns since a packet was last missing at its turn (`LOSSY_TURNS` or more: none lately).
    since_loss: u32,
}

/// For this many turns (10 s) after a packet was missing at its turn, playout starts again
/// (after running dry: a silence, or a loss with nothing behind it) one packet deeper: a lost
/// packet's successor is then usually here in time to rebuild it from its FEC, for 20 ms more
/// delay while the line loses.
const LOSSY_TURNS: u32 = 500;

impl JitterBuffer {
    pub fn new(target: usize, max: usize) -> Self {
        JitterBuffer {
            packets: BTreeMap::new(),
            next: None,
            seq: Default::default(),
            playing: false,
            target: target.max(1),
            max: max.max(target + 1),
            late: 0,
            concealed: 0,
            skipped: 0,
            rebuilds: |_| false,
            since_loss: LOSSY_TURNS,
        }
    }

    /// The same, playing a packet lost while the buffer was dry from its successor when that
    /// one `rebuilds` it.
    pub fn rebuilding_with(self, rebuilds: fn(&[u8]) -> bool) -> Self {
        JitterBuffer { rebuilds, ..self }
    }

    pub fn push(&mut self, seq: u16, payload: Vec<u8>) {
        let ext = self.seq.push(seq);
        if self.next.is_some_and(|n| ext < n) {
            self.late += 1;
            return;
        }
        self.packets.insert(ext, payload);
        while self.packets.len() > self.max {
            self.packets.pop_first();
            let first = self.packets.keys().next().copied();
            self.next = first;
        }
    }

    pub fn pop(&mut self) -> Playout {
        let (concealed, skipped) = (self.concealed, self.skipped);
        let out = self.turn();
        if (self.concealed, self.skipped) == (concealed, skipped) {
            self.since_loss = self.since_loss.saturating_add(1);
        } else {
            self.since_loss = 0;
        }
        out
    }

    fn turn(&mut self) -> Playout {
        if !self.playing {
            let deeper = usize::from(self.since_loss < LOSSY_TURNS);
            if self.packets.len() < self.target + deeper {
                return Playout::Silent;
            }
            self.playing = true;
            let first = self.packets.first_key_value().map(|(&k, p)| (k, p));
            self.next = match (self.next, first) {
                // The buffer ran dry waiting for `n`, which never came, and the packet after it
                // can rebuild it: play from `n` (it comes back as `Lost`). (After a silence
                // sent as DTX the next packet never rebuilds anything: Opus codes FEC only for
                // a frame with voice activity, and a frame it lets DTX skip has none; so a
                // packet lost at a silence's edge is not rebuilt from one that does not follow
                // it in time.)
                (Some(n), Some((k, p))) if k == n + 1 && (self.rebuilds)(p) => Some(n),
                (next, first) => {
                    let first = first.map(|(k, _)| k);
                    if let (Some(n), Some(k)) = (next, first) {
                        self.skipped += k.saturating_sub(n);
                    }
                    first
                }
            };
        }
        let Some(next) = self.next else {
            return Playout::Silent;
        };
        if let Some(p) = self.packets.remove(&next) {
            self.next = Some(next + 1);
            return Playout::Packet(p);
        }
        if self.packets.is_empty() {
            // Ran dry: wait for the buffer to fill again (silence meanwhile; the packet waited
            // for is rebuilt or skipped when playout starts again).
            self.playing = false;
            return Playout::Silent;
        }
        self.next = Some(next + 1);
        self.concealed += 1;
        Playout::Lost
    }

    /// The packet that plays next, if it is here (after a `Lost`, the one after the gap: its
    /// in-band FEC may rebuild the lost one).
    pub fn peek_next(&self) -> Option<&[u8]> {
        self.packets.get(&self.next?).map(Vec::as_slice)
    }

    pub fn len(&self) -> usize {
        self.packets.len()
    }

    pub fn is_empty(&self) -> bool {
        self.packets.is_empty()
    }
}

/// One remote peer's audio: jitter buffer, decoder with concealment, and what was heard.
pub struct AudioReceiver {
    buffer: JitterBuffer,
    dec: opus::Decoder,
    pub listener: Listener,
    pub packets: u64,
    last_level: f64,
    fec_recovered: u64,
}

/// Whether an Opus packet carries in-band FEC (LBRR) for the packet before it: the SILK
/// layer's LBRR flag of its first frame, for each channel (as `WebRtcOpus_PacketHasFec`
/// reads it). CELT-only packets never do.
pub fn has_fec(packet: &[u8]) -> bool {
    let Some(&toc) = packet.first() else {
        return false;
    };
    if toc & 0x80 != 0 {
        return false; // CELT only
    }
    let Ok(ms) = opus::packet::get_samples_per_frame(packet, SAMPLE_RATE).map(|n| n / 48) else {
        return false;
    };
    let silk_frames = match ms.max(10) {
        10 | 20 => 1,
        40 => 2,
        60 => 3,
        _ => return false,
    };
    let channels = match opus::packet::get_nb_channels(packet) {
        Ok(opus::Channels::Stereo) => 2,
        Ok(_) => 1,
        Err(_) => return false,
    };
    let Ok(parsed) = opus::packet::parse(packet) else {
        return false;
    };
    let Some(first) = parsed.frames.first().filter(|f| f.len() > 1) else {
        return false;
    };
    (0..channels).any(|n| first[0] & (0x80u8 >> ((n + 1) * (silk_frames + 1) - 1)) != 0)
}

impl AudioReceiver {
    pub fn new() -> Result<Self, MediaError> {
        Ok(AudioReceiver {
            buffer: JitterBuffer::new(2, 15).rebuilding_with(has_fec),
            dec: opus::Decoder::new(SAMPLE_RATE, opus::Channels::Mono).map_err(opus_err)?,
            listener: Listener::default(),
            packets: 0,
            last_level: 0.0,
            fec_recovered: 0,
        })
    }

    pub fn push(&mut self, seq: u16, payload: Vec<u8>) {
        self.packets += 1;
        self.buffer.push(seq, payload);
    }

    /// The next 20 ms for playout (silence when there is nothing).
    pub fn next_frame(&mut self) -> AudioFrame {
        let mut out = [0i16; FRAME_SAMPLES];
        let result = match self.buffer.pop() {
            Playout::Packet(p) => self.dec.decode(&p, &mut out, false),
            // A packet is missing: the next one's in-band FEC rebuilds it when it has some;
            // otherwise the decoder conceals.
            Playout::Lost => match self.buffer.peek_next().filter(|p| has_fec(p)) {
                Some(next) => {
                    self.fec_recovered += 1;
                    self.dec.decode(next, &mut out, true)
                }
                None => self.dec.decode(&[], &mut out, false),
            },
            Playout::Silent => Ok(FRAME_SAMPLES),
        };
        if let Err(e) = result {
            tracing::debug!("opus decode: {e}");
            out = [0; FRAME_SAMPLES];
        }
        self.listener.push(&out);
        self.last_level = crate::tone::level(&out);
        out
    }

    /// RMS level of the last frame played, 0..=1.
    pub fn frame_level(&self) -> f64 {
        self.last_level
    }

    /// 20 ms frames the decoder had to make up (lost, and not rebuilt from FEC).
    pub fn concealed(&self) -> u64 {
        self.buffer.concealed - self.fec_recovered
    }

    /// Lost packets rebuilt from the next packet's in-band FEC.
    pub fn fec_recovered(&self) -> u64 {
        self.fec_recovered
    }

    /// Packets missing at their turn to play (lost, or too late), by their sequence numbers:
    /// rebuilt from FEC, concealed, or skipped (missing while the buffer had run dry, with
    /// nothing to rebuild them from). A silence sent as DTX takes no numbers, so it is not
    /// lost; nor is what was lost before the first packet or after the last.
    pub fn lost(&self) -> u64 {
        self.buffer.concealed + self.buffer.skipped
    }
}

/// Adds `frame` into `mix`, saturating.
pub fn mix_into(mix: &mut AudioFrame, frame: &AudioFrame) {
    for (m, &s) in mix.iter_mut().zip(frame.iter()) {
        *m = m.saturating_add(s);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tone::Tone;

    #[test]
    fn jitter_buffer_reorders_and_conceals() {
        let mut jb = JitterBuffer::new(2, 10);
        assert_eq!(jb.pop(), Playout::Silent);
        jb.push(11, vec![11]);
        assert_eq!(jb.pop(), Playout::Silent, "waits for two packets");
        jb.push(10, vec![10]);
        jb.push(13, vec![13]);
        assert_eq!(jb.pop(), Playout::Packet(vec![10]));
        assert_eq!(jb.pop(), Playout::Packet(vec![11]));
        assert_eq!(jb.pop(), Playout::Lost, "12 is missing, 13 is here");
        jb.push(12, vec![12]);
        assert_eq!(jb.late, 1, "12 came too late");
        assert_eq!(jb.pop(), Playout::Packet(vec![13]));
        assert_eq!(jb.pop(), Playout::Silent, "dry");
    }

    #[test]
    fn a_packet_lost_while_dry_is_rebuilt_when_the_next_can() {
        let rebuilds = |p: &[u8]| p.first() == Some(&1);
        let mut jb = JitterBuffer::new(2, 10).rebuilding_with(rebuilds);
        jb.push(10, vec![0]);
        jb.push(11, vec![0]);
        assert_eq!(jb.pop(), Playout::Packet(vec![0]));
        assert_eq!(jb.pop(), Playout::Packet(vec![0]));
        // 12 is lost, and nothing after it has come yet: dry.
        assert_eq!(jb.pop(), Playout::Silent);
        jb.push(13, vec![1]);
        jb.push(14, vec![0]);
        assert_eq!(jb.pop(), Playout::Lost, "12, from 13's FEC");
        assert_eq!(jb.pop(), Playout::Packet(vec![1]));
        assert_eq!(jb.pop(), Playout::Packet(vec![0]));
        // 15 is lost while dry again, and 16 cannot rebuild it: skipped, as is a gap of two.
        // (After a loss playout starts again one packet deeper: three.)
        assert_eq!(jb.pop(), Playout::Silent);
        jb.push(16, vec![0]);
        jb.push(17, vec![1]);
        jb.push(18, vec![0]);
        assert_eq!(jb.pop(), Playout::Packet(vec![0]), "16");
        assert_eq!(jb.pop(), Playout::Packet(vec![1]), "17");
        assert_eq!(jb.pop(), Playout::Packet(vec![0]), "18");
        assert_eq!(jb.pop(), Playout::Silent);
        jb.push(21, vec![1]);
        jb.push(22, vec![0]);
        jb.push(23, vec![0]);
        assert_eq!(jb.pop(), Playout::Packet(vec![1]), "21; 19 and 20 skipped");
        assert_eq!((jb.concealed, jb.skipped), (1, 3), "12; 15, 19 and 20");
    }

    #[test]
    fn after_a_loss_playout_starts_again_one_packet_deeper_for_a_while() {
        let mut jb = JitterBuffer::new(2, 10);
        jb.push(0, vec![0]);
        jb.push(1, vec![1]);
        assert_eq!(jb.pop(), Playout::Packet(vec![0]));
        assert_eq!(jb.pop(), Playout::Packet(vec![1]));
        // 2 is lost while dry; no loss before it, so two packets start playout again.
        assert_eq!(jb.pop(), Playout::Silent);
        jb.push(3, vec![3]);
        jb.push(4, vec![4]);
        assert_eq!(jb.pop(), Playout::Packet(vec![3]), "2 skipped");
        assert_eq!(jb.pop(), Playout::Packet(vec![4]));
        // A silence (DTX: no numbers missing), then two packets: not enough so soon after a
        // loss.
        assert_eq!(jb.pop(), Playout::Silent);
        jb.push(5, vec![5]);
        jb.push(6, vec![6]);
        assert_eq!(jb.pop(), Playout::Silent, "waits for a third");
        jb.push(7, vec![7]);
        for n in 5..=7u8 {
            assert_eq!(jb.pop(), Playout::Packet(vec![n]));
        }
        // Ten seconds without a loss: two are enough again.
        for _ in 0..LOSSY_TURNS {
            assert_eq!(jb.pop(), Playout::Silent);
        }
        jb.push(8, vec![8]);
        jb.push(9, vec![9]);
        assert_eq!(jb.pop(), Playout::Packet(vec![8]));
        assert_eq!((jb.concealed, jb.skipped), (0, 1));
    }

    #[test]
    fn jitter_buffer_wraps_sequence_numbers() {
        let mut jb = JitterBuffer::new(1, 10);
        for s in [65534u16, 65535, 0, 1] {
            jb.push(s, vec![s as u8]);
        }
        let got: Vec<Playout> = (0..4).map(|_| jb.pop()).collect();
        assert_eq!(
            got,
            vec![
                Playout::Packet(vec![254]),
                Playout::Packet(vec![255]),
                Playout::Packet(vec![0]),
                Playout::Packet(vec![1])
            ]
        );
    }

    #[test]
    fn jitter_buffer_drops_oldest_when_full() {
        let mut jb = JitterBuffer::new(2, 4);
        for s in 0..10u16 {
            jb.push(s, vec![s as u8]);
        }
        assert_eq!(jb.len(), 4);
        assert_eq!(jb.pop(), Playout::Packet(vec![6]));
    }

    #[test]
    fn opus_carries_the_tone_through_loss() {
        let mut enc = AudioEncoder::new(32_000).unwrap();
        let mut rx = AudioReceiver::new().unwrap();
        let mut tone = Tone::new(880.0, 0.25);
        for seq in 0..100u16 {
            let p = enc.encode(&tone.next_frame()).unwrap();
            if seq % 10 != 5 {
                rx.push(seq, p); // 10% loss
            }
            rx.next_frame();
        }
        let hz = rx.listener.dominant_hz().unwrap();
        assert!((hz - 880.0).abs() < 5.0, "heard {hz}");
        assert!(rx.listener.level() > 0.1);
        assert!(
            rx.concealed() + rx.fec_recovered() >= 8,
            "{} concealed, {} from FEC",
            rx.concealed(),
            rx.fec_recovered()
        );
    }

    #[test]
    fn fec_rebuilds_a_lost_packet_before_concealment() {
        // Speech-like sound (a tone in syllables, 4 a second) at the engine's bitrate, then
        // isolated losses. Opus adds FEC (LBRR) only to frames its voice detector calls
        // active, so not every loss can come back: each one whose next packet carries FEC
        // must, and only the others are concealed.
        let mut enc = AudioEncoder::new(32_000).unwrap();
        let mut rx = AudioReceiver::new().unwrap();
        let mut tone = Tone::new(440.0, 0.25);
        let packets: Vec<Vec<u8>> = (0..200usize)
            .map(|n| {
                let mut f = tone.next_frame();
                for (i, x) in f.iter_mut().enumerate() {
                    let t = (n * FRAME_SAMPLES + i) as f64 / SAMPLE_RATE as f64;
                    *x = (*x as f64 * (std::f64::consts::TAU * 2.0 * t).sin().abs()) as i16;
                }
                enc.encode(&f).unwrap()
            })
            .collect();
        let is_lost = |n: usize| n >= 20 && n % 10 == 5;
        let lost = (0..200).filter(|&n| is_lost(n)).count() as u64;
        let rebuildable = (0..199)
            .filter(|&n| is_lost(n) && has_fec(&packets[n + 1]))
            .count() as u64;
        for (n, p) in packets.into_iter().enumerate() {
            if !is_lost(n) {
                rx.push(n as u16, p);
            }
            // Keep one packet ahead of playout, as the jitter buffer does in a call.
            if n >= 2 {
                rx.next_frame();
            }
        }
        assert!(
            rebuildable * 2 >= lost,
            "speech carries FEC: {rebuildable} of {lost} losses have it next"
        );
        assert_eq!(rx.fec_recovered(), rebuildable);
        assert_eq!(rx.concealed(), lost - rebuildable);
        let hz = rx.listener.dominant_hz().unwrap();
        assert!((hz - 440.0).abs() < 5.0, "heard {hz}");
    }

    /// Issue 10's audio figure: the test voice (synthetic speech with pauses) at 10 % random
    /// loss, each 20 ms frame real audio or rebuilt from FEC at least 95 % of the time. The
    /// pauses go as DTX (not sent, no sequence number), as in a call.
    #[test]
    fn speech_at_10_pct_loss_is_95_pct_real_or_fec() {
        use crate::audio_fixtures::{speech, Rng, VOICE_A};
        let voice = speech(VOICE_A, 20.0);
        let mut enc = AudioEncoder::new(32_000).unwrap();
        let mut rx = AudioReceiver::new().unwrap();
        let mut rng = Rng::new(0x10);
        let (mut seq, mut sent, mut dropped) = (0u16, 0u64, 0u64);
        for chunk in voice.chunks_exact(FRAME_SAMPLES) {
            let frame: AudioFrame = std::array::from_fn(|i| (chunk[i] * 32767.0) as i16);
            let p = enc.encode(&frame).unwrap();
            if !is_dtx(&p) {
                sent += 1;
                if rng.unit() >= 0.10 {
                    rx.push(seq, p);
                } else {
                    dropped += 1;
                }
                seq = seq.wrapping_add(1);
            }
            rx.next_frame();
        }
        // Losses past the last packet received are not known to the receiver.
        assert!(
            rx.lost() <= dropped && rx.lost() + 3 >= dropped,
            "{} {dropped}",
            rx.lost()
        );
        assert!(
            (0.07..0.13).contains(&(dropped as f64 / sent as f64)),
            "{dropped} of {sent}"
        );
        let not_rebuilt = rx.lost() - rx.fec_recovered();
        println!(
            "{sent} packets sent of {} frames, {dropped} lost: {} rebuilt from FEC, {} concealed, {not_rebuilt} not rebuilt",
            voice.len() / FRAME_SAMPLES,
            rx.fec_recovered(),
            rx.concealed()
        );
        assert!(
            not_rebuilt * 100 <= 5 * sent,
            "{not_rebuilt} of {sent} frames neither real nor FEC"
        );
    }

    #[test]
    fn silence_is_not_sent_with_dtx() {
        let mut enc = AudioEncoder::new(32_000).unwrap();
        let silence = [0i16; FRAME_SAMPLES];
        let packets: Vec<Vec<u8>> = (0..100).map(|_| enc.encode(&silence).unwrap()).collect();
        let skipped = packets.iter().filter(|p| is_dtx(p)).count();
        assert!(
            skipped >= 80,
            "{skipped} of 100 silent frames need not be sent"
        );
        // Sound right after: real packets again.
        let mut tone = Tone::new(440.0, 0.25);
        let loud: Vec<Vec<u8>> = (0..10)
            .map(|_| enc.encode(&tone.next_frame()).unwrap())
            .collect();
        assert!(
            loud[2..].iter().all(|p| !is_dtx(p)),
            "{:?}",
            loud.iter().map(Vec::len).collect::<Vec<_>>()
        );
    }

    #[test]
    fn opus_expects_the_reported_loss_within_bounds() {
        for (reported, expected) in [
            (0.0, 5),
            (f64::NAN, 5),
            (-3.0, 5),
            (4.4, 5),
            (7.6, 8),
            (12.0, 12),
            (35.0, 20),
            (f64::INFINITY, 20),
        ] {
            assert_eq!(expected_loss_pct(reported), expected, "{reported}");
        }
        let mut enc = AudioEncoder::new(32_000).unwrap();
        assert_eq!(enc.expected_loss(), 5);
        enc.set_reported_loss(11.2).unwrap();
        assert_eq!(enc.expected_loss(), 11);
        assert_eq!(enc.enc.get_packet_loss_perc().unwrap(), 11);
    }

    #[test]
    fn has_fec_refuses_what_is_not_silk() {
        assert!(!has_fec(&[]));
        assert!(!has_fec(&[0xfc, 0xff, 0xfe]), "CELT-only");
        assert!(!has_fec(&[0x08]), "a TOC alone");
    }
}
