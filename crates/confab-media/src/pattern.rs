//! The "Test pattern" camera's picture, and the reader for its machine-readable blocks.
//!
//! The layout is specified in `docs/test-pattern.md` so that any receiver (the engine, the UI,
//! the browser client) can read it:
//!
//! - bits are 16×16 pixel blocks, row-major from the top-left corner, `width / 16` per row;
//!   a 1 is luma 235 (white), a 0 luma 16 (black); a reader averages the central 8×8 pixels and
//!   compares with 128;
//! - 88 bits, most significant first: magic `0xC5`, frame number (u32), capture time (u32: the
//!   low 32 bits of microseconds since the UNIX epoch), CRC-16/IBM-3740 of the 9 bytes before it.
//!
//! Below the data rows: moving colour bars and a bouncing square, so codecs see motion.

use crate::frame::VideoFrame;

pub const BLOCK: usize = 16;
pub const MAGIC: u8 = 0xC5;
pub const PAYLOAD_BYTES: usize = 11;
pub const BITS: usize = PAYLOAD_BYTES * 8;
/// Smallest frame that can carry the blocks with some picture left.
pub const MIN_WIDTH: usize = 320;
pub const MIN_HEIGHT: usize = 120;

const CRC: crc::Crc<u16> = crc::Crc::<u16>::new(&crc::CRC_16_IBM_3740);

/// What a pattern frame carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    pub frame: u32,
    /// Low 32 bits of the capture time in microseconds since the UNIX epoch.
    pub capture_us: u32,
}

impl Stamp {
    fn to_bytes(self) -> [u8; PAYLOAD_BYTES] {
        let mut b = [0u8; PAYLOAD_BYTES];
        b[0] = MAGIC;
        b[1..5].copy_from_slice(&self.frame.to_be_bytes());
        b[5..9].copy_from_slice(&self.capture_us.to_be_bytes());
        let crc = CRC.checksum(&b[..9]);
        b[9..11].copy_from_slice(&crc.to_be_bytes());
        b
    }

    fn from_bytes(b: &[u8; PAYLOAD_BYTES]) -> Option<Self> {
        if b[0] != MAGIC || CRC.checksum(&b[..9]).to_be_bytes() != b[9..11] {
            return None;
        }
        Some(Stamp {
            frame: u32::from_be_bytes(b[1..5].try_into().ok()?),
            capture_us: u32::from_be_bytes(b[5..9].try_into().ok()?),
        })
    }

    /// Microseconds from capture to `now_us` (full UNIX microseconds), if plausible (< 60 s).
    pub fn age_us(&self, now_us: u64) -> Option<u32> {
        let age = (now_us as u32).wrapping_sub(self.capture_us);
        (age < 60_000_000).then_some(age)
    }
}

fn rows_needed(width: usize) -> usize {
    let cols = width / BLOCK;
    BITS.div_ceil(cols)
}

/// Paints a pattern frame.
pub fn paint(frame: &mut VideoFrame, stamp: Stamp) {
    let (w, h) = (frame.width, frame.height);
    let cols = w / BLOCK;
    let data_rows = (rows_needed(w) * BLOCK).min(h);
    let n = stamp.frame as usize;
    let (y, u, v) = frame.planes_mut();
    // Moving colour bars: eight bars scrolling one pixel a frame per 4 px of width.
    const BARS: [(u8, u8, u8); 8] = [
        (235, 128, 128),
        (210, 16, 146),
        (170, 166, 16),
        (145, 54, 34),
        (106, 202, 222),
        (81, 90, 240),
        (41, 240, 110),
        (16, 128, 128),
    ];
    let shift = n * 4 % w;
    let bar_of = |c: usize| ((c + shift) % w) * 8 / w;
    // Every row of the bars is the same: made once, then copied (a 720p frame a frame time).
    let bar_row: Vec<u8> = (0..w).map(|c| BARS[bar_of(c)].0).collect();
    for row in y[data_rows * w..h * w].chunks_exact_mut(w) {
        row.copy_from_slice(&bar_row);
    }
    let (cw, ch) = (w / 2, h / 2);
    let (u_row, v_row): (Vec<u8>, Vec<u8>) = (0..cw)
        .map(|c| {
            let b = BARS[bar_of(c * 2)];
            (b.1, b.2)
        })
        .unzip();
    for r in 0..ch {
        let (ur, vr) = (&mut u[r * cw..][..cw], &mut v[r * cw..][..cw]);
        if r * 2 < data_rows {
            ur.fill(128);
            vr.fill(128);
        } else {
            ur.copy_from_slice(&u_row);
            vr.copy_from_slice(&v_row);
        }
    }
    // A bouncing grey square below the data rows.
    let side = h.saturating_sub(data_rows).min(w) / 4;
    if side >= 4 {
        let span_x = w - side;
        let span_y = (h - data_rows) - side;
        let bounce = |t: usize, span: usize| {
            if span == 0 {
                return 0;
            }
            let p = t % (2 * span);
            if p < span {
                p
            } else {
                2 * span - p
            }
        };
        let x0 = bounce(n * 3, span_x);
        let y0 = data_rows + bounce(n * 2, span_y);
        for r in y0..y0 + side {
            y[r * w + x0..r * w + x0 + side].fill(128);
        }
    }
    // The data blocks.
    let bytes = stamp.to_bytes();
    for r in 0..data_rows {
        let row = &mut y[r * w..][..w];
        row.fill(16);
    }
    for bit in 0..BITS {
        let on = bytes[bit / 8] & (0x80 >> (bit % 8)) != 0;
        let (bx, by) = (bit % cols, bit / cols);
        if (by + 1) * BLOCK > h {
            break; // too small a frame: it will not read back
        }
        if on {
            for r in by * BLOCK..(by + 1) * BLOCK {
                y[r * w + bx * BLOCK..][..BLOCK].fill(235);
            }
        }
    }
}

/// A new pattern frame.
pub fn frame(width: usize, height: usize, stamp: Stamp, timestamp_us: u64) -> VideoFrame {
    let mut f = VideoFrame::black(width, height);
    f.timestamp_us = timestamp_us;
    paint(&mut f, stamp);
    f
}

/// Pattern frame number `n` (capture time 0), for tests.
#[cfg(test)]
pub(crate) fn numbered(width: usize, height: usize, n: u32) -> VideoFrame {
    frame(
        width,
        height,
        Stamp {
            frame: n,
            capture_us: 0,
        },
        0,
    )
}

/// Capture widths a picture may have been resized down from (the sizes cameras and Confab's
/// own formats use, each a multiple of [`BLOCK`]).
pub const CAPTURE_WIDTHS: [usize; 8] = [320, 352, 480, 640, 960, 1280, 1920, 3840];

/// Reads the stamp from any 8-bit luma sampler `luma(x, y)`: as painted (16-pixel blocks), or
/// from a picture scaled down by two (8-pixel blocks: a simulcast camera's half-size layer, a
/// half-size preview) or four (4-pixel blocks: a camera sent over a narrow line), or resized
/// to any width from one of [`CAPTURE_WIDTHS`] (a tile's size), as `ui/pattern.js` reads it.
fn read_with(width: usize, height: usize, luma: impl Fn(usize, usize) -> u8) -> Option<Stamp> {
    // As captured, halved and quartered (whole pixels), then resized to any width from a
    // capture width (a picture sized to the tile it is shown in: blocks of 10.4 pixels, say).
    // Last, enlarged from a smaller capture (a tile filling a window).
    let whole = [BLOCK, BLOCK / 2, BLOCK / 4].map(|b| b as f64);
    let block_from = |w0: usize| (BLOCK * width) as f64 / w0 as f64;
    let resized = CAPTURE_WIDTHS
        .into_iter()
        .filter(|&w0| w0 > width)
        .map(block_from);
    let enlarged = CAPTURE_WIDTHS
        .into_iter()
        .filter(|&w0| w0 < width)
        .rev()
        .map(block_from);
    whole
        .into_iter()
        .chain(resized)
        .chain(enlarged)
        .find_map(|block| read_blocks(width, height, block, &luma))
}

fn read_blocks(
    width: usize,
    height: usize,
    block: f64,
    luma: &impl Fn(usize, usize) -> u8,
) -> Option<Stamp> {
    // The picture's width as captured.
    let captured = width as f64 * BLOCK as f64 / block;
    if captured < MIN_WIDTH as f64 - 0.5
        || height as f64 * BLOCK as f64 / block < MIN_HEIGHT as f64 - 0.5
    {
        return None;
    }
    let cols = (width as f64 / block + 1e-6).floor() as usize;
    if cols == 0 || BITS.div_ceil(cols) as f64 * block > height as f64 + 1e-6 {
        return None;
    }
    // The middle half of each block, away from its edges (softened by scaling and coding).
    let span = |i: usize| {
        let start = (i as f64 * block + block / 4.0).round() as usize;
        let end = (i as f64 * block + block * 3.0 / 4.0).round() as usize;
        start..end.max(start + 1)
    };
    let mut bytes = [0u8; PAYLOAD_BYTES];
    for bit in 0..BITS {
        let (rows, cols_) = (span(bit / cols), span(bit % cols));
        let area = (rows.len() * cols_.len()) as u32;
        let mut sum = 0u32;
        for r in rows {
            for c in cols_.clone() {
                sum += luma(c.min(width - 1), r.min(height - 1)) as u32;
            }
        }
        if sum / area > 128 {
            bytes[bit / 8] |= 0x80 >> (bit % 8);
        }
    }
    Stamp::from_bytes(&bytes)
}

/// Reads the stamp of an I420 frame, if it is a readable pattern frame.
pub fn read(frame: &VideoFrame) -> Option<Stamp> {
    let y = frame.y();
    let w = frame.width;
    read_with(frame.width, frame.height, |c, r| y[r * w + c])
}

/// Reads the stamp from RGBA pixels (a canvas, a screenshot).
pub fn read_rgba(rgba: &[u8], width: usize, height: usize) -> Option<Stamp> {
    read_packed(rgba, width, height, [0, 1, 2])
}

/// Reads the stamp from BGRx pixels (what a native surface paints); only the top rows are
/// looked at.
pub fn read_bgrx(bgrx: &[u8], width: usize, height: usize) -> Option<Stamp> {
    read_packed(bgrx, width, height, [2, 1, 0])
}

/// Four bytes a pixel; `[r, g, b]`: where each color is in a pixel's bytes.
fn read_packed(px: &[u8], width: usize, height: usize, [r, g, b]: [usize; 3]) -> Option<Stamp> {
    if px.len() < width * height * 4 {
        return None;
    }
    read_with(width, height, |c, row| {
        let p = &px[(row * width + c) * 4..];
        ((p[r] as u32 * 299 + p[g] as u32 * 587 + p[b] as u32 * 114) / 1000) as u8
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_at_common_sizes() {
        for (w, h) in [
            (320, 120),
            (320, 240),
            (352, 288),
            (640, 480),
            (1280, 720),
            (1920, 1080),
        ] {
            for n in [0u32, 1, 29, 12345, u32::MAX] {
                let stamp = Stamp {
                    frame: n,
                    capture_us: n.wrapping_mul(33_333),
                };
                let f = frame(w, h, stamp, 0);
                assert_eq!(read(&f), Some(stamp), "{w}x{h} #{n}");
                assert_eq!(
                    read_rgba(&crate::convert::to_rgba(&f), w, h),
                    Some(stamp),
                    "rgba {w}x{h} #{n}"
                );
            }
        }
    }

    #[test]
    fn a_picture_scaled_down_by_two_or_four_reads_back() {
        for (w, h) in [(640, 480), (1280, 720), (320, 240)] {
            let stamp = Stamp {
                frame: 777,
                capture_us: 123_456,
            };
            let half = frame(w, h, stamp, 0).half();
            assert_eq!(read(&half), Some(stamp), "{w}x{h} halved");
            if w >= 640 {
                let quarter = half.half();
                assert_eq!(read(&quarter), Some(stamp), "{w}x{h} quartered");
            }
            let (hw, hh) = (half.width, half.height);
            assert_eq!(
                read_rgba(&crate::convert::to_rgba(&half), hw, hh),
                Some(stamp),
                "rgba {w}x{h} halved"
            );
        }
    }

    #[test]
    fn a_picture_enlarged_to_fill_a_window_reads_back() {
        let stamp = Stamp {
            frame: 4321,
            capture_us: 99,
        };
        for (w, h, to_w, to_h) in [
            (640, 480, 986, 740),
            (640, 480, 1280, 960),
            (1280, 720, 1920, 1080),
        ] {
            let big = frame(w, h, stamp, 0).resized(to_w, to_h);
            assert_eq!(read(&big), Some(stamp), "{w}x{h} enlarged to {to_w}x{to_h}");
        }
    }

    #[test]
    fn other_pictures_do_not_read_as_patterns() {
        assert_eq!(read(&VideoFrame::black(640, 480)), None);
        let mut f = frame(
            640,
            480,
            Stamp {
                frame: 7,
                capture_us: 1,
            },
            0,
        );
        // Flip one block: the CRC catches it.
        let y = &mut f.planes_mut().0;
        for r in 16..32 {
            for c in 16..32 {
                y[r * 640 + c] = 255 - y[r * 640 + c];
            }
        }
        assert_eq!(read(&f), None);
        assert_eq!(read(&VideoFrame::black(100, 80)), None);
        // Too small to carry the blocks: painting does not panic, reading says no.
        let tiny = frame(
            160,
            96,
            Stamp {
                frame: 1,
                capture_us: 1,
            },
            0,
        );
        assert_eq!(read(&tiny), None);
    }

    #[test]
    fn survives_mild_noise() {
        let stamp = Stamp {
            frame: 99,
            capture_us: 424242,
        };
        let mut f = frame(640, 480, stamp, 0);
        for (i, px) in f.planes_mut().0.iter_mut().enumerate() {
            *px = px.saturating_add((i % 7) as u8 * 6).saturating_sub(18);
        }
        assert_eq!(read(&f), Some(stamp));
    }

    #[test]
    fn the_picture_moves() {
        let a = frame(
            320,
            240,
            Stamp {
                frame: 1,
                capture_us: 0,
            },
            0,
        );
        let b = frame(
            320,
            240,
            Stamp {
                frame: 2,
                capture_us: 0,
            },
            0,
        );
        let rows = rows_needed(320) * BLOCK * 320;
        assert_ne!(a.y()[rows..], b.y()[rows..]);
    }

    #[test]
    fn age_wraps() {
        let s = Stamp {
            frame: 0,
            capture_us: u32::MAX - 10,
        };
        assert_eq!(s.age_us((1u64 << 32) + 5), Some(16));
        assert_eq!(s.age_us(u32::MAX as u64 - 100), None);
    }
}
