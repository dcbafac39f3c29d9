//! RTP sequence numbers (16 bits, wrapping) extended to 64 bits in arrival order.

/// Extends 16-bit sequence numbers: each is placed nearest to the highest one seen.
#[derive(Debug, Clone, Default)]
pub struct SeqExtender {
    highest: Option<u64>,
}

impl SeqExtender {
    /// The extended number of `seq`, without recording it.
    pub fn extend(&self, seq: u16) -> u64 {
        match self.highest {
            // Start well above zero so that a few late packets can still be placed before it.
            None => (1u64 << 20) + seq as u64,
            Some(h) => {
                let base = h & !0xffff;
                let candidates = [
                    base.wrapping_sub(1 << 16) + seq as u64,
                    base + seq as u64,
                    base + (1 << 16) + seq as u64,
                ];
                *candidates
                    .iter()
                    .min_by_key(|&&c| c.abs_diff(h))
                    .expect("three candidates")
            }
        }
    }

    /// Extends `seq` and records it.
    pub fn push(&mut self, seq: u16) -> u64 {
        let ext = self.extend(seq);
        self.highest = Some(self.highest.map_or(ext, |h| h.max(ext)));
        ext
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wraps_and_places_late_packets() {
        let mut s = SeqExtender::default();
        let a = s.push(65534);
        assert_eq!(s.push(65535), a + 1);
        assert_eq!(s.push(0), a + 2);
        assert_eq!(s.push(1), a + 3);
        assert_eq!(s.push(65533), a - 1, "late, from before the wrap");
        assert_eq!(s.extend(2), a + 4);
    }
}
