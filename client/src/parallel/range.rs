//! Splitting a transfer into per-stream ranges and per-request chunks.
//!
//! Ranges are contiguous, one per stream, with boundaries on chunk multiples (relative to the
//! transfer start) so every chunk, and every CRC block inside it, is whole. Streams get equal
//! chunk counts ±1.

use std::ops::Range;

/// Splits `0..len` into at most `streams` contiguous ranges whose boundaries are multiples
/// of `chunk` (the last range ends at `len`). Empty for `len == 0`.
pub fn split_ranges(len: u64, streams: usize, chunk: u64) -> Vec<Range<u64>> {
    let chunk = chunk.max(1);
    let chunks = len.div_ceil(chunk);
    let streams = u64::try_from(streams.max(1)).unwrap_or(u64::MAX).min(chunks);
    if streams == 0 {
        return Vec::new();
    }
    let (base, extra) = (chunks / streams, chunks % streams);
    let mut ranges = Vec::with_capacity(usize::try_from(streams).unwrap_or(0));
    let mut start_chunk = 0u64;
    for i in 0..streams {
        let count = base + u64::from(i < extra);
        let end_chunk = start_chunk + count;
        let start = start_chunk * chunk;
        let end = end_chunk.saturating_mul(chunk).min(len);
        ranges.push(start..end);
        start_chunk = end_chunk;
    }
    ranges
}

/// The chunks of `range`: `(offset, len)` pairs of at most `chunk` bytes.
pub fn chunks(range: Range<u64>, chunk: u64) -> impl Iterator<Item = (u64, u64)> {
    let chunk = chunk.max(1);
    let mut at = range.start;
    std::iter::from_fn(move || {
        if at >= range.end {
            return None;
        }
        let len = chunk.min(range.end - at);
        let item = (at, len);
        at += len;
        Some(item)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn examples() {
        assert_eq!(split_ranges(0, 4, 10), Vec::<Range<u64>>::new());
        assert_eq!(split_ranges(5, 4, 10), vec![0..5]);
        assert_eq!(split_ranges(100, 4, 10), vec![0..30, 30..60, 60..80, 80..100]);
        assert_eq!(split_ranges(95, 2, 10), vec![0..50, 50..95]);
        assert_eq!(split_ranges(30, 8, 10), vec![0..10, 10..20, 20..30]);
        assert_eq!(chunks(30..55, 10).collect::<Vec<_>>(), vec![(30, 10), (40, 10), (50, 5)]);
    }

    proptest! {
        #[test]
        fn ranges_tile_the_transfer(len in 0u64..1 << 40, streams in 1usize..64, chunk in 1u64..1 << 26) {
            let ranges = split_ranges(len, streams, chunk);
            prop_assert!(ranges.len() <= streams);
            let mut at = 0;
            for r in &ranges {
                prop_assert_eq!(r.start, at);
                prop_assert!(r.end > r.start);
                prop_assert_eq!(r.start % chunk, 0);
                at = r.end;
            }
            prop_assert_eq!(at, len);
            if let (Some(min), Some(max)) = (
                ranges.iter().map(|r| r.end.div_ceil(chunk) - r.start / chunk).min(),
                ranges.iter().map(|r| r.end.div_ceil(chunk) - r.start / chunk).max(),
            ) {
                prop_assert!(max - min <= 1, "balanced chunk counts");
            }
        }
    }
}
