//! What an encoded frame says about its picture size, read *before* it reaches a decoder.
//!
//! A decoder allocates for the size a stream announces: an H.264 sequence parameter set or a
//! VP8 key frame header. A hostile peer can announce 16k×16k in a few bytes, so the receive
//! path reads the announced size here first and refuses the frame, without decoding it, when the
//! size is larger than Confab shows (`video::MAX_DECODED`).

use crate::video::VideoCodec;
use crate::MediaError;
use h264_reader::nal::sps::{FrameMbsFlags, SeqParameterSet};
use h264_reader::rbsp::{decode_nal, BitReader};

/// The coded picture size (width, height) a frame announces, if it announces one: H.264 frames
/// that carry a sequence parameter set (the largest, when several), VP8 key frames. `Ok(None)`
/// for frames that reuse the size already in force.
///
/// The size is the *coded* one the decoder allocates (whole macroblocks, before cropping).
pub fn announced_size(
    codec: VideoCodec,
    frame: &[u8],
) -> Result<Option<(usize, usize)>, MediaError> {
    match codec {
        VideoCodec::H264 => h264_size(frame),
        VideoCodec::Vp8 => vp8_size(frame),
    }
}

/// NAL units of an Annex-B stream (start codes `00 00 01` or `00 00 00 01`), header byte first.
pub fn nal_units(stream: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut starts = Vec::new();
    let mut i = 0;
    while i + 2 < stream.len() {
        if stream[i] == 0 && stream[i + 1] == 0 && stream[i + 2] == 1 {
            starts.push(i + 3);
            i += 3;
        } else {
            i += 1;
        }
    }
    let ends: Vec<usize> = starts
        .iter()
        .skip(1)
        .map(|&s| {
            // The next unit's start code begins 3 bytes before it, or 4 with a leading zero.
            let mut e = s - 3;
            while e > 0 && stream[e - 1] == 0 {
                e -= 1;
            }
            e
        })
        .chain(std::iter::once(stream.len()))
        .collect();
    starts
        .into_iter()
        .zip(ends)
        .map(move |(s, e)| &stream[s..e.max(s)])
        .filter(|n| !n.is_empty())
}

const NAL_SPS: u8 = 7;

fn h264_size(frame: &[u8]) -> Result<Option<(usize, usize)>, MediaError> {
    let mut largest: Option<(usize, usize)> = None;
    for nal in nal_units(frame) {
        if nal[0] & 0x1f != NAL_SPS {
            continue;
        }
        let refuse =
            |why: String| MediaError::Codec(format!("refused an H.264 parameter set: {why}"));
        let rbsp = decode_nal(nal).map_err(|e| refuse(e.to_string()))?;
        let sps = SeqParameterSet::from_bits(BitReader::new(&rbsp[..]))
            .map_err(|e| refuse(format!("{e:?}")))?;
        let mbs_w = u64::from(sps.pic_width_in_mbs_minus1) + 1;
        let fields = match sps.frame_mbs_flags {
            FrameMbsFlags::Frames => 1,
            FrameMbsFlags::Fields { .. } => 2,
        };
        let mbs_h = (u64::from(sps.pic_height_in_map_units_minus1) + 1) * fields;
        let size = (clamp(mbs_w * 16), clamp(mbs_h * 16));
        largest = Some(match largest {
            Some((w, h)) => (w.max(size.0), h.max(size.1)),
            None => size,
        });
    }
    Ok(largest)
}

fn clamp(v: u64) -> usize {
    usize::try_from(v).unwrap_or(usize::MAX)
}

/// VP8 (RFC 6386 §9.1): a 3-byte frame tag whose bit 0 is 0 on key frames, then on key frames
/// the start code `9d 01 2a` and two little-endian 16-bit fields: 14 bits of size, 2 of scaling.
fn vp8_size(frame: &[u8]) -> Result<Option<(usize, usize)>, MediaError> {
    match frame.first() {
        None => Err(MediaError::Codec("refused an empty VP8 frame".into())),
        Some(tag) if tag & 1 == 1 => Ok(None),
        Some(_) => {
            if frame.len() < 10 || frame[3..6] != [0x9d, 0x01, 0x2a] {
                return Err(MediaError::Codec(
                    "refused a VP8 key frame without a valid header".into(),
                ));
            }
            let w = u16::from_le_bytes([frame[6], frame[7]]) & 0x3fff;
            let h = u16::from_le_bytes([frame[8], frame[9]]) & 0x3fff;
            Ok(Some((w.into(), h.into())))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pattern;
    use crate::video::encoder;

    fn encoded_keyframe(codec: VideoCodec, w: usize, h: usize) -> Vec<u8> {
        let mut enc = encoder(codec, 800_000, 30.0).unwrap();
        let f = pattern::frame(
            w,
            h,
            pattern::Stamp {
                frame: 0,
                capture_us: 0,
            },
            0,
        );
        enc.encode(&f, true)
            .unwrap()
            .expect("a key frame")
            .data
            .to_vec()
    }

    #[test]
    fn real_frames_announce_their_size() {
        // openh264 codes 640x360 as 40x23 macroblocks (368 lines, cropped to 360).
        let h264 = encoded_keyframe(VideoCodec::H264, 640, 360);
        assert_eq!(
            announced_size(VideoCodec::H264, &h264).unwrap(),
            Some((640, 368))
        );
        #[cfg(vp8)]
        {
            let vp8 = encoded_keyframe(VideoCodec::Vp8, 320, 240);
            assert_eq!(
                announced_size(VideoCodec::Vp8, &vp8).unwrap(),
                Some((320, 240))
            );
        }
        assert_eq!(
            announced_size(VideoCodec::Vp8, &[0x01, 0, 0]).unwrap(),
            None
        );
    }

    #[test]
    fn nal_units_split_on_both_start_codes() {
        let s = [
            0, 0, 0, 1, 0x67, 1, 2, 0, 0, 1, 0x68, 3, 0, 0, 0, 1, 0x65, 4, 5,
        ];
        let units: Vec<&[u8]> = nal_units(&s).collect();
        assert_eq!(
            units,
            vec![&[0x67, 1, 2][..], &[0x68, 3][..], &[0x65, 4, 5][..]]
        );
        assert_eq!(nal_units(&[0, 0, 1]).count(), 0);
        assert_eq!(nal_units(&[]).count(), 0);
    }

    #[test]
    fn garbage_parameter_sets_are_refused_not_panicked_on() {
        for sps in [
            &[0, 0, 0, 1, 0x67][..],
            &[0, 0, 1, 0x67, 0xff, 0xff, 0xff, 0xff],
            &[0, 0, 1, 0x67, 66, 0, 30, 0, 0, 0, 0],
        ] {
            assert!(announced_size(VideoCodec::H264, sps).is_err(), "{sps:?}");
        }
        assert!(announced_size(VideoCodec::Vp8, &[0x00, 0, 0, 1, 2, 3]).is_err());
        assert!(announced_size(VideoCodec::Vp8, &[]).is_err());
    }
}
