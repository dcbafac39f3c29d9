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
}

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
        enc.set_packet_loss_perc(5).map_err(opus_err)?;
        // Discontinuous transmission: on silence the encoder makes packets that need not be
        // sent (see `is_dtx`), and a comfort-noise update now and then.
        enc.set_dtx(true).map_err(opus_err)?;
        Ok(AudioEncoder {
            enc,
            buf: vec![0; 1500],
        })
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
    /// Packets to hold before starting.
    target: usize,
    /// Packets held at most; beyond, the oldest are dropped.
    max: usize,
    pub late: u64,
    pub concealed: u64,
}

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
        }
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
        if !self.playing {
            if self.packets.len() < self.target {
                return Playout::Silent;
            }
            self.playing = true;
            self.next = self.packets.keys().next().copied();
        }
        let Some(next) = self.next else {
            return Playout::Silent;
        };
        if let Some(p) = self.packets.remove(&next) {
            self.next = Some(next + 1);
            return Playout::Packet(p);
        }
        if self.packets.is_empty() {
            // Ran dry: wait for the buffer to fill again (the gap will be concealed by silence).
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
            buffer: JitterBuffer::new(2, 15),
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
    fn has_fec_refuses_what_is_not_silk() {
        assert!(!has_fec(&[]));
        assert!(!has_fec(&[0xfc, 0xff, 0xfe]), "CELT-only");
        assert!(!has_fec(&[0x08]), "a TOC alone");
    }
}
