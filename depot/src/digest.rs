//! Per-allocation disk digests chosen at ALLOCATE_CHKSUM (PROTOCOL.md §5, §9).
//!
//! Design: the hash types ([`DigestKind`], [`Hasher`], [`Sum`]) live in the shared codec
//! (`ibp_client::proto::digest`) so the client's network framing and the depot hash alike;
//! this module adds the depot-only table of one digest per checksum block. A disk digest, like
//! the CRC32 of checksum.rs, covers its block's full length with the bytes past the end of the
//! data counted as zeros ([`DigestKind::block`]), so a block never written has the digest of a
//! zero block.

pub use ibp_client::proto::digest::{DigestKind, Hasher, Sum, UnknownDigest, MAX_DIGEST_BYTES};

/// Per-allocation digest table: one binary digest per checksum block, concatenated. Blocks
/// past the end were never written and hold zeros.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiskDigests {
    pub kind: DigestKind,
    /// The allocation's checksum block (its CRC32 block too), chosen at ALLOCATE_CHKSUM.
    pub block_bytes: u64,
    /// Digests of blocks 0.. in order, `kind.digest_bytes()` bytes each.
    pub sums: Vec<u8>,
}

impl DiskDigests {
    pub fn new(kind: DigestKind, block_bytes: u64) -> DiskDigests {
        DiskDigests { kind, block_bytes, sums: Vec::new() }
    }

    /// Blocks with a stored digest.
    pub fn blocks(&self) -> u64 {
        (self.sums.len() / self.kind.digest_bytes()) as u64
    }

    /// Stored digest of `block` (zero-block digest when never written).
    pub fn get(&self, block: u64) -> Vec<u8> {
        let d = self.kind.digest_bytes();
        let at = block as usize * d;
        match self.sums.get(at..at + d) {
            Some(s) => s.to_vec(),
            None => self.kind.block(&[], self.block_bytes).as_bytes().to_vec(),
        }
    }

    /// Records digests of blocks `first ..` (concatenated in `sums`), filling a gap with
    /// zero-block digests.
    pub fn set_run(&mut self, first: u64, sums: &[u8]) {
        let d = self.kind.digest_bytes();
        let start = first as usize * d;
        if self.sums.len() < start {
            let zero = self.kind.block(&[], self.block_bytes);
            while self.sums.len() < start {
                self.sums.extend_from_slice(zero.as_bytes());
            }
        }
        let end = start + sums.len();
        if self.sums.len() < end {
            self.sums.resize(end, 0);
        }
        self.sums[start..end].copy_from_slice(sums);
    }

    /// Forgets blocks from `first` on (after a truncate).
    pub fn truncate(&mut self, first: u64) {
        self.sums.truncate(first as usize * self.kind.digest_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_fills_gaps_and_truncates() {
        let k = DigestKind::Sha1;
        let mut t = DiskDigests::new(k, 4096);
        t.set_run(2, &[7u8; 20]);
        assert_eq!(t.blocks(), 3);
        assert_eq!(t.get(0), k.block(&[], 4096).as_bytes());
        assert_eq!(t.get(2), vec![7u8; 20]);
        t.truncate(1);
        assert_eq!(t.blocks(), 1);
    }
}
