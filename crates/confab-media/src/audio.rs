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
        enc.set_inband_fec(true).map_err(opus_err)?;
        enc.set_packet_loss_perc(5).map_err(opus_err)?;
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
}

impl AudioReceiver {
    pub fn new() -> Result<Self, MediaError> {
        Ok(AudioReceiver {
            buffer: JitterBuffer::new(2, 15),
            dec: opus::Decoder::new(SAMPLE_RATE, opus::Channels::Mono).map_err(opus_err)?,
            listener: Listener::default(),
            packets: 0,
            last_level: 0.0,
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
            Playout::Lost => self.dec.decode(&[], &mut out, false),
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

    pub fn concealed(&self) -> u64 {
        self.buffer.concealed
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
        assert!(rx.concealed() >= 8, "{}", rx.concealed());
    }
}
