//! The shape of a bulk transfer: how a byte range of an allocation is cut into buffer-sized
//! chunks of whole checksum blocks, and the CRC work on each chunk.
//!
//! Design: a chunk always starts on a checksum-block boundary and spans whole blocks, so the
//! disk I/O is block aligned (hence 4 KiB aligned, as O_DIRECT needs) and every block's CRC is
//! computed or verified from one buffer. Only the transfer's first and last block may be
//! partial; the writer pre-fills those from disk (see `cmd::store`).

use std::ops::Range;

use ibp_io::{FixedBuf, IoBuf, IoBufMut};

use crate::checksum::block_crc;
use crate::digest::DigestKind;

/// One chunk of a transfer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chunk {
    /// First checksum block of the chunk.
    pub first_block: u64,
    /// Blocks in the chunk.
    pub blocks: u64,
    /// Offset of the chunk in the allocation (= first_block × block size).
    pub alloc_off: u64,
    /// Bytes of the chunk that lie inside the extent (what goes to or comes from disk).
    pub disk_len: usize,
    /// The transfer's bytes inside the chunk buffer.
    pub payload: Range<usize>,
}

/// Cuts `[off, end)` into chunks of at most `buf_bytes` (a multiple of `cb`).
pub fn chunks(off: u64, end: u64, cb: u64, buf_bytes: u64, extent_bytes: u64) -> Vec<Chunk> {
    debug_assert!(buf_bytes.is_multiple_of(cb) && buf_bytes >= cb);
    let mut out = Vec::new();
    if end <= off {
        return out;
    }
    let per = buf_bytes / cb;
    let mut block = off / cb;
    let last = end.div_ceil(cb);
    while block < last {
        let blocks = per.min(last - block);
        let f0 = block * cb;
        let f1 = f0 + blocks * cb;
        let disk_end = f1.min(extent_bytes);
        out.push(Chunk {
            first_block: block,
            blocks,
            alloc_off: f0,
            disk_len: (disk_end - f0) as usize,
            payload: (off.max(f0) - f0) as usize..(end.min(f1) - f0) as usize,
        });
        block += blocks;
    }
    out
}

/// CRCs of the chunk's blocks as they are in `buf` (bytes past the extent count as zeros).
pub fn chunk_crcs(buf: &[u8], c: &Chunk, cb: u64) -> Vec<u32> {
    (0..c.blocks as usize)
        .map(|i| {
            let start = i * cb as usize;
            let end = (start + cb as usize).min(c.disk_len);
            block_crc(buf.get(start..end.max(start)).unwrap_or(&[]), cb)
        })
        .collect()
}

/// Disk digests of the chunk's blocks as they are in `buf`, concatenated (bytes past the
/// extent count as zeros, as for CRCs).
pub fn chunk_sums(buf: &[u8], c: &Chunk, cb: u64, kind: DigestKind) -> Vec<u8> {
    let mut out = Vec::with_capacity(c.blocks as usize * kind.digest_bytes());
    for i in 0..c.blocks as usize {
        let start = i * cb as usize;
        let end = (start + cb as usize).min(c.disk_len);
        let data = buf.get(start..end.max(start)).unwrap_or(&[]);
        out.extend_from_slice(kind.block(data, cb).as_bytes());
    }
    out
}

/// A view of `buf[at..at + len]` for a disk read into the middle of a pool buffer (edge blocks).
pub struct Slice {
    pub buf: FixedBuf,
    pub at: usize,
    pub len: usize,
    init: usize,
}

impl Slice {
    pub fn new(buf: FixedBuf, at: usize, len: usize) -> Slice {
        debug_assert!(at + len <= buf.capacity());
        Slice { buf, at, len, init: 0 }
    }
}

// SAFETY: the view's memory is inside the FixedBuf, which does not move while owned by the
// operation; bytes_total is `len` and the pointer starts at `at`.
unsafe impl IoBuf for Slice {
    fn stable_ptr(&self) -> *const u8 {
        // SAFETY: at + len ≤ capacity (checked in new).
        unsafe { self.buf.as_ptr().add(self.at) }
    }
    fn bytes_init(&self) -> usize {
        self.init
    }
    fn bytes_total(&self) -> usize {
        self.len
    }
    fn fixed_index(&self) -> Option<u16> {
        self.buf.index()
    }
}

// SAFETY: as above.
unsafe impl IoBufMut for Slice {
    fn stable_mut_ptr(&mut self) -> *mut u8 {
        // SAFETY: at + len ≤ capacity.
        unsafe { self.buf.as_mut_ptr().add(self.at) }
    }
    unsafe fn set_init(&mut self, n: usize) {
        self.init = n;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_cover_the_range_in_whole_blocks() {
        let c = chunks(100, 300_000, 65536, 131072, 1 << 20);
        assert_eq!(c.len(), 3);
        assert_eq!(c[0].first_block, 0);
        assert_eq!(c[0].payload, 100..131072);
        assert_eq!(c[1].alloc_off, 131072);
        assert_eq!(c[1].payload, 0..131072);
        assert_eq!(c[2].blocks, 1);
        assert_eq!(c[2].payload, 0..300_000 - 262144);
        let total: usize = c.iter().map(|c| c.payload.len()).sum();
        assert_eq!(total, 300_000 - 100);
    }

    #[test]
    fn last_chunk_stops_at_the_extent() {
        let c = chunks(0, 5000, 65536, 262144, 8192);
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].disk_len, 8192);
        assert_eq!(c[0].payload, 0..5000);
        assert!(chunks(7, 7, 4096, 4096, 4096).is_empty());
    }
}
