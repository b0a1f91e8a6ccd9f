//! CRC32 (crc32fast) per fixed-size block, computed on the bytes as they stream through.
//! Blocks are numbered from the start of the transfer; chunks are whole blocks, so each
//! chunk fills its own slice of the table.

use std::fs::File;
use std::os::unix::fs::FileExt;

use crate::error::{Error, Result};

/// Writes the CRC of each `block`-sized piece of `data` into `out` (one entry per block,
/// the last one possibly short).
pub fn block_crcs(data: &[u8], block: usize, out: &mut [u32]) {
    for (slot, piece) in out.iter_mut().zip(data.chunks(block.max(1))) {
        *slot = crc32fast::hash(piece);
    }
}

/// Number of blocks covering `len` bytes.
pub fn block_count(len: u64, block: u64) -> usize {
    usize::try_from(len.div_ceil(block.max(1))).unwrap_or(usize::MAX)
}

/// Indices of blocks whose CRCs differ (a missing entry counts as different).
pub fn compare_crcs(expected: &[u32], actual: &[u32]) -> Vec<usize> {
    let n = expected.len().max(actual.len());
    (0..n).filter(|&i| expected.get(i) != actual.get(i)).collect()
}

/// Block CRCs of `len` bytes of `file` from `offset`, reading one block at a time.
pub fn file_crcs(file: &File, offset: u64, len: u64, block: u64) -> Result<Vec<u32>> {
    let block_len = usize::try_from(block.max(1)).unwrap_or(usize::MAX);
    let mut buf = vec![0; block_len];
    let mut crcs = Vec::with_capacity(block_count(len, block));
    let mut done = 0u64;
    while done < len {
        let n = usize::try_from(block.min(len - done)).unwrap_or(block_len);
        file.read_exact_at(&mut buf[..n], offset + done).map_err(Error::LocalIo)?;
        crcs.push(crc32fast::hash(&buf[..n]));
        done += n as u64;
    }
    Ok(crcs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_and_compare() {
        let data: Vec<u8> = (0..=255u8).cycle().take(1000).collect();
        let mut crcs = vec![0; block_count(1000, 300)];
        assert_eq!(crcs.len(), 4);
        block_crcs(&data, 300, &mut crcs);
        assert_eq!(crcs[3], crc32fast::hash(&data[900..]));
        let mut other = crcs.clone();
        other[1] ^= 1;
        assert_eq!(compare_crcs(&crcs, &other), vec![1]);
        assert_eq!(compare_crcs(&crcs, &crcs[..3]), vec![3]);
    }
}
