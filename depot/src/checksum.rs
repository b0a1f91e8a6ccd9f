//! Checksum-block arithmetic: which blocks a byte range touches and their CRC32s.
//!
//! Design: a CRC32 (crc32fast) covers each checksum block of an allocation, always over the
//! block's full length (`block_bytes`, 64 KiB by default). Bytes the allocation has not written
//! read as zero on disk (space is zeroed when freed, beyond the size after a crash, and on
//! truncate), and bytes past the end of the extent count as zeros, so a block's CRC is a pure
//! function of its contents. That makes concurrent writers to different blocks independent, lets
//! a write that leaves a hole change no other block's CRC, and means a block never written has
//! the CRC of a zero block, which is not stored.

use std::ops::Range;
use std::sync::OnceLock;

/// Default checksum block: 64 KiB, a multiple of the 4 KiB disk block.
pub const DEFAULT_CHECKSUM_BLOCK_BYTES: u64 = 64 * 1024;

/// Largest checksum block a resource may configure (bounds the edge buffers a writer holds).
pub const MAX_CHECKSUM_BLOCK_BYTES: u64 = 1024 * 1024;

static ZEROS: [u8; 64 * 1024] = [0; 64 * 1024];

/// CRC32 of `len` zero bytes appended to a running CRC.
pub fn crc_extend_zeros(crc: u32, mut len: u64) -> u32 {
    let mut h = crc32fast::Hasher::new_with_initial(crc);
    while len > 0 {
        let n = len.min(ZEROS.len() as u64) as usize;
        h.update(&ZEROS[..n]);
        len -= n as u64;
    }
    h.finalize()
}

/// CRC32 of a whole block of zeros of the given size (cached for the default size).
pub fn zero_block_crc(block_bytes: u64) -> u32 {
    static DEFAULT: OnceLock<u32> = OnceLock::new();
    if block_bytes == DEFAULT_CHECKSUM_BLOCK_BYTES {
        *DEFAULT.get_or_init(|| crc_extend_zeros(0, DEFAULT_CHECKSUM_BLOCK_BYTES))
    } else {
        crc_extend_zeros(0, block_bytes)
    }
}

/// CRC32 of one block whose first `data.len()` bytes are `data` and whose remainder (up to
/// `block_bytes`) is zero: the shape of a block cut short by the end of its extent.
pub fn block_crc(data: &[u8], block_bytes: u64) -> u32 {
    debug_assert!(data.len() as u64 <= block_bytes);
    let mut h = crc32fast::Hasher::new();
    h.update(data);
    crc_extend_zeros(h.finalize(), block_bytes - data.len() as u64)
}

/// The checksum blocks that byte range `[off, end)` touches.
pub fn blocks_touched(off: u64, end: u64, block_bytes: u64) -> Range<u64> {
    if end <= off {
        return off / block_bytes..off / block_bytes;
    }
    off / block_bytes..end.div_ceil(block_bytes)
}

/// Per-allocation CRC table. Blocks past the end of `crcs` were never written and hold zeros.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BlockCrcs {
    /// CRC of block i; grows as writes reach further blocks.
    pub crcs: Vec<u32>,
}

impl BlockCrcs {
    /// Expected CRC of `block`.
    pub fn get(&self, block: u64, block_bytes: u64) -> u32 {
        self.crcs.get(block as usize).copied().unwrap_or_else(|| zero_block_crc(block_bytes))
    }

    /// Records the CRCs of blocks `first .. first + crcs.len()`, filling any gap with zero-block
    /// CRCs.
    pub fn set_run(&mut self, first: u64, crcs: &[u32], block_bytes: u64) {
        let end = first as usize + crcs.len();
        if self.crcs.len() < end {
            self.crcs.resize(end, zero_block_crc(block_bytes));
        }
        self.crcs[first as usize..end].copy_from_slice(crcs);
    }

    /// Forgets blocks from `first` on (they are zero again after a truncate).
    pub fn truncate(&mut self, first: u64) {
        self.crcs.truncate(first as usize);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc_continues_and_zero_extends() {
        let data = b"hello world";
        let whole = crc32fast::hash(&[&data[..], &[0u8; 100][..]].concat());
        assert_eq!(crc_extend_zeros(crc32fast::hash(data), 100), whole);
        let mut h = crc32fast::Hasher::new_with_initial(crc32fast::hash(b"hello "));
        h.update(b"world");
        assert_eq!(h.finalize(), crc32fast::hash(data));
        assert_eq!(block_crc(data, 111), whole);
        assert_eq!(zero_block_crc(65536), crc32fast::hash(&[0u8; 65536]));
    }

    #[test]
    fn touched_blocks() {
        assert_eq!(blocks_touched(0, 1, 100), 0..1);
        assert_eq!(blocks_touched(99, 101, 100), 0..2);
        assert_eq!(blocks_touched(100, 200, 100), 1..2);
        assert_eq!(blocks_touched(5, 5, 100), 0..0);
    }

    #[test]
    fn unset_blocks_are_zero_blocks() {
        let mut t = BlockCrcs::default();
        t.set_run(3, &[7, 8], 4096);
        assert_eq!(t.get(0, 4096), zero_block_crc(4096));
        assert_eq!(t.get(4, 4096), 8);
        assert_eq!(t.get(9, 4096), zero_block_crc(4096));
        t.truncate(4);
        assert_eq!(t.get(4, 4096), zero_block_crc(4096));
        assert_eq!(t.get(3, 4096), 7);
    }
}
