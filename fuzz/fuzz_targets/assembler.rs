//! RTP from a hostile peer into the frame assembler and the H.264 / VP8 depacketizers
//! (confab-media's `assembler.rs`). The input is a script of packets:
//!
//! byte 0: bit 0 picks VP8 (else H.264), bits 1–3 the loss wait (0–7 × 20 ms); then records of
//! `[flags][seq step (i8)][timestamp step][payload length][payload]`, flags bit 0 = marker,
//! bits 1–3 = milliseconds × 10 that pass before the packet arrives, bit 4 = poll after it.
//!
//! Nothing may panic; frames are never empty, and the frames out are never much larger than
//! the payloads in (the depacketizers add start codes, they must not amplify).
#![no_main]

// confab-media's own source files, compiled here with only the depacketizers they use (see
// Cargo.toml): linking all of confab-media would bring the codecs' C libraries and the whole
// WebRTC stack into a sanitizer build for nothing.
#[allow(dead_code)]
#[path = "../../crates/confab-media/src/assembler.rs"]
mod assembler;
#[allow(dead_code)]
#[path = "../../crates/confab-media/src/seq.rs"]
mod seq;
/// The one item of confab-media's `video` module that the assembler uses.
mod video {
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum VideoCodec {
        H264,
        Vp8,
    }
}

use assembler::{is_keyframe, AssembledFrame, FrameAssembler, RtpIn};
use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use std::time::{Duration, Instant};
use video::VideoCodec;

fuzz_target!(|data: &[u8]| {
    let Some((&head, mut rest)) = data.split_first() else {
        return;
    };
    let codec = if head & 1 != 0 {
        VideoCodec::Vp8
    } else {
        VideoCodec::H264
    };
    let mut a = FrameAssembler::new(codec)
        .with_loss_wait(Duration::from_millis(20 * u64::from((head >> 1) & 7)));
    let t0 = Instant::now();
    let mut now = t0;
    let mut seq: u16 = 1000;
    let mut ts: u32 = 90_000;
    let (mut bytes_in, mut packets) = (0usize, 0usize);
    let mut bytes_out = 0usize;
    let mut check = |frames: Vec<AssembledFrame>| {
        for f in frames {
            assert!(!f.data.is_empty());
            assert_eq!(f.keyframe, is_keyframe(codec, &f.data));
            bytes_out += f.data.len();
        }
    };
    while let [flags, step, ts_step, len, tail @ ..] = rest {
        let len = (*len as usize).min(tail.len());
        let (payload, next) = tail.split_at(len);
        rest = next;
        seq = seq.wrapping_add(*step as i8 as i16 as u16);
        ts = ts.wrapping_add(u32::from(*ts_step));
        now += Duration::from_millis(10 * u64::from((flags >> 1) & 7));
        bytes_in += payload.len();
        packets += 1;
        let pkt = RtpIn {
            seq,
            timestamp: ts,
            marker: flags & 1 != 0,
            payload: Bytes::copy_from_slice(payload),
        };
        check(a.push(pkt, now));
        if flags & 16 != 0 {
            check(a.poll(now));
        }
    }
    check(a.poll(now + Duration::from_secs(1)));
    assert!(
        bytes_out <= 4 * bytes_in + 8 * packets,
        "{bytes_out} bytes out of {bytes_in} in {packets} packets"
    );
});
