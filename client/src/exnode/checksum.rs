//! End-to-end checksums: one digest per `block_size` bytes of a mapping's logical data.
//!
//! The depot already checks its own disk blocks (CRC32 per checksum block); these digests are
//! computed by the uploader over what it meant to store and checked by the downloader over
//! what it got, so they also catch a wrong or tampered allocation, a bug on the path, or a
//! replica written by someone else through the write capability. They are kept out of band
//! (in the exNode, not in the stored bytes), so an allocation holds exactly the file's bytes.

use md5::{Digest, Md5};
use serde::{Deserialize, Serialize};
use std::fmt;

/// The most digests one mapping may carry (a 1 TiB mapping at 1 MiB blocks); bounds what a
/// hostile exNode can make us allocate.
pub const MAX_DIGESTS: usize = 1 << 20;

/// Which digest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChecksumAlgorithm {
    /// CRC32 (IEEE), 8 hex chars: fast, catches corruption, not tampering.
    Crc32,
    /// MD5, 32 hex chars: what LoRS `-k` records.
    Md5,
}

impl ChecksumAlgorithm {
    /// The name written in the exNode.
    pub fn word(self) -> &'static str {
        match self {
            ChecksumAlgorithm::Crc32 => "crc32",
            ChecksumAlgorithm::Md5 => "md5",
        }
    }

    /// Parses the exNode name, ignoring ASCII case.
    pub fn from_word(word: &str) -> Option<ChecksumAlgorithm> {
        if word.eq_ignore_ascii_case("crc32") {
            Some(ChecksumAlgorithm::Crc32)
        } else if word.eq_ignore_ascii_case("md5") {
            Some(ChecksumAlgorithm::Md5)
        } else {
            None
        }
    }

    /// Hex digest of one block.
    pub fn digest_hex(self, block: &[u8]) -> String {
        match self {
            ChecksumAlgorithm::Crc32 => format!("{:08x}", crc32fast::hash(block)),
            ChecksumAlgorithm::Md5 => {
                Md5::digest(block).iter().map(|b| format!("{b:02x}")).collect::<String>()
            }
        }
    }

    /// Length of one hex digest.
    pub fn hex_len(self) -> usize {
        match self {
            ChecksumAlgorithm::Crc32 => 8,
            ChecksumAlgorithm::Md5 => 32,
        }
    }
}

/// The digests of one mapping's data, block by block.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockChecksums {
    /// Digest kind.
    pub algorithm: ChecksumAlgorithm,
    /// Bytes per digest; the last block may be shorter.
    pub block_size: u64,
    /// Lower-case hex, one per block, in order.
    pub digests: Vec<String>,
}

/// Why data did not match its checksums.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChecksumError {
    /// The data has a different length than the digests cover.
    Length {
        /// Blocks the digests describe.
        expected_blocks: usize,
        /// Blocks the data has.
        got_blocks: usize,
    },
    /// Block `index` (0-based, within the mapping) has the wrong digest.
    Mismatch {
        /// First bad block.
        index: usize,
    },
}

impl fmt::Display for ChecksumError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ChecksumError::Length { expected_blocks, got_blocks } => {
                write!(f, "checksums cover {expected_blocks} blocks, data has {got_blocks}")
            }
            ChecksumError::Mismatch { index } => write!(f, "checksum mismatch in block {index}"),
        }
    }
}

impl std::error::Error for ChecksumError {}

impl BlockChecksums {
    /// Digests `data` in `block_size` pieces. `block_size` 0 is treated as one block.
    pub fn compute(algorithm: ChecksumAlgorithm, block_size: u64, data: &[u8]) -> BlockChecksums {
        let size = chunk_size(block_size, data.len());
        let digests = data.chunks(size).map(|c| algorithm.digest_hex(c)).collect();
        BlockChecksums { algorithm, block_size, digests }
    }

    /// Checks `data` against the digests; names the first bad block.
    pub fn verify(&self, data: &[u8]) -> Result<(), ChecksumError> {
        let size = chunk_size(self.block_size, data.len());
        let got_blocks = data.len().div_ceil(size);
        if got_blocks != self.digests.len() {
            return Err(ChecksumError::Length { expected_blocks: self.digests.len(), got_blocks });
        }
        for (index, (chunk, want)) in data.chunks(size).zip(&self.digests).enumerate() {
            if !self.algorithm.digest_hex(chunk).eq_ignore_ascii_case(want) {
                return Err(ChecksumError::Mismatch { index });
            }
        }
        Ok(())
    }

    /// True when every digest has the algorithm's length and is hex.
    pub fn is_well_formed(&self) -> bool {
        self.digests.len() <= MAX_DIGESTS
            && self.digests.iter().all(|d| {
                d.len() == self.algorithm.hex_len() && d.bytes().all(|b| b.is_ascii_hexdigit())
            })
    }
}

fn chunk_size(block_size: u64, len: usize) -> usize {
    let size = usize::try_from(block_size).unwrap_or(usize::MAX);
    if size == 0 {
        len.max(1)
    } else {
        size
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compute_and_verify_both_algorithms() {
        let data: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
        for alg in [ChecksumAlgorithm::Crc32, ChecksumAlgorithm::Md5] {
            let sums = BlockChecksums::compute(alg, 4096, &data);
            assert_eq!(sums.digests.len(), 3);
            assert!(sums.is_well_formed());
            assert_eq!(sums.verify(&data), Ok(()));
            let mut bad = data.clone();
            bad[5000] ^= 1;
            assert_eq!(sums.verify(&bad), Err(ChecksumError::Mismatch { index: 1 }));
            assert!(matches!(sums.verify(&data[..4096]), Err(ChecksumError::Length { .. })));
        }
    }

    #[test]
    fn md5_known_vector() {
        assert_eq!(ChecksumAlgorithm::Md5.digest_hex(b"abc"), "900150983cd24fb0d6963f7d28e17f72");
        assert_eq!(ChecksumAlgorithm::Crc32.digest_hex(b"123456789"), "cbf43926");
    }
}
