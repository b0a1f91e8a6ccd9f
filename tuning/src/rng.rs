//! A tiny xorshift64* generator for random offsets: benchmark offsets need to be spread,
//! not unpredictable, and the seed is printed nowhere because no figure depends on it.

use std::time::{SystemTime, UNIX_EPOCH};

pub struct Rng(u64);

impl Rng {
    /// Seeded from the clock and `salt` (a worker index), never zero.
    pub fn new(salt: u64) -> Rng {
        let t =
            SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(1);
        Rng((t ^ salt.wrapping_mul(0x9e37_79b9_7f4a_7c15)) | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A multiple of `align` in `[0, limit - len]`; 0 when the range is smaller than `len`.
    pub fn aligned_offset(&mut self, limit: u64, len: u64, align: u64) -> u64 {
        let slots = limit.saturating_sub(len) / align.max(1) + 1;
        (self.next_u64() % slots) * align.max(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_stay_in_range_and_aligned() {
        let mut r = Rng::new(7);
        for _ in 0..10_000 {
            let off = r.aligned_offset(1 << 20, 4096, 4096);
            assert!(off.is_multiple_of(4096) && off + 4096 <= 1 << 20);
        }
        assert_eq!(r.aligned_offset(100, 4096, 4096), 0);
    }
}
