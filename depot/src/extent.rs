//! Extent allocator: hands out contiguous runs of 4 KiB blocks inside one shard's region of a
//! resource.
//!
//! Design: a first-fit free list kept in a `BTreeMap<start, len>`. Allocations are few and large
//! compared with blocks (an allocation is one extent), so a linear first-fit scan is cheap, and
//! the ordered map makes coalescing neighbours on free an O(log n) lookup. Everything is counted
//! in blocks; bytes appear only at the edges (`blocks_for`).

use std::collections::BTreeMap;

/// The unit of disk space: O_DIRECT needs 4 KiB alignment, so every extent starts and ends on one.
pub const BLOCK_BYTES: u64 = 4096;

/// Number of blocks needed to hold `bytes` (at least one, so every allocation has an address).
pub fn blocks_for(bytes: u64) -> u64 {
    bytes.div_ceil(BLOCK_BYTES).max(1)
}

/// A contiguous run of blocks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Extent {
    /// First block, counted from the start of the shard's region.
    pub start: u64,
    /// Length in blocks.
    pub len: u64,
}

impl Extent {
    pub fn end(&self) -> u64 {
        self.start + self.len
    }
}

/// First-fit allocator over `[0, total_blocks)`.
#[derive(Debug, Clone)]
pub struct ExtentAllocator {
    /// Free runs keyed by start block; never adjacent (always coalesced).
    free: BTreeMap<u64, u64>,
    /// Size of the region, for accounting and sanity checks.
    total_blocks: u64,
    /// Sum of the free runs, kept so admission decisions are O(1).
    free_blocks: u64,
}

impl ExtentAllocator {
    /// An allocator with the whole region free.
    pub fn new(total_blocks: u64) -> Self {
        let mut free = BTreeMap::new();
        if total_blocks > 0 {
            free.insert(0, total_blocks);
        }
        Self { free, total_blocks, free_blocks: total_blocks }
    }

    pub fn total_blocks(&self) -> u64 {
        self.total_blocks
    }

    pub fn free_blocks(&self) -> u64 {
        self.free_blocks
    }

    /// Largest contiguous free run, used to tell "full" from "fragmented" in error messages.
    pub fn largest_free(&self) -> u64 {
        self.free.values().copied().max().unwrap_or(0)
    }

    /// The free runs, in address order (recovery zeroes them).
    pub fn free_runs(&self) -> impl Iterator<Item = Extent> + '_ {
        self.free.iter().map(|(&start, &len)| Extent { start, len })
    }

    /// First fit: the lowest-addressed run that holds `len` blocks.
    pub fn allocate(&mut self, len: u64) -> Option<Extent> {
        if len == 0 {
            return None;
        }
        let (&start, &run) = self.free.iter().find(|(_, &run)| run >= len)?;
        self.free.remove(&start);
        if run > len {
            self.free.insert(start + len, run - len);
        }
        self.free_blocks -= len;
        Some(Extent { start, len })
    }

    /// Claims exactly `extent` (used when replaying the journal). Fails if any block of it is
    /// not free, which means the journal and the allocator disagree.
    pub fn claim(&mut self, extent: Extent) -> bool {
        if extent.len == 0 || extent.end() > self.total_blocks {
            return false;
        }
        let Some((&start, &run)) = self.free.range(..=extent.start).next_back() else {
            return false;
        };
        if start + run < extent.end() {
            return false;
        }
        self.free.remove(&start);
        if extent.start > start {
            self.free.insert(start, extent.start - start);
        }
        if start + run > extent.end() {
            self.free.insert(extent.end(), start + run - extent.end());
        }
        self.free_blocks -= extent.len;
        true
    }

    /// Grows `extent` in place by `extra` blocks if the run right after it is free.
    pub fn grow_in_place(&mut self, extent: Extent, extra: u64) -> bool {
        let Some(&run) = self.free.get(&extent.end()) else {
            return extra == 0;
        };
        if run < extra {
            return false;
        }
        self.free.remove(&extent.end());
        if run > extra {
            self.free.insert(extent.end() + extra, run - extra);
        }
        self.free_blocks -= extra;
        true
    }

    /// Returns `extent` to the free list, merging it with free neighbours.
    pub fn free(&mut self, extent: Extent) {
        debug_assert!(extent.end() <= self.total_blocks, "freeing outside the region");
        let mut start = extent.start;
        let mut len = extent.len;
        if let Some((&prev, &prev_len)) = self.free.range(..start).next_back() {
            debug_assert!(prev + prev_len <= start, "double free (overlaps a free run)");
            if prev + prev_len == start {
                self.free.remove(&prev);
                start = prev;
                len += prev_len;
            }
        }
        if let Some(&next_len) = self.free.get(&(extent.end())) {
            self.free.remove(&extent.end());
            len += next_len;
        }
        self.free.insert(start, len);
        self.free_blocks += extent.len;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn first_fit_and_coalesce() {
        let mut a = ExtentAllocator::new(100);
        let x = a.allocate(10).expect("fits");
        let y = a.allocate(20).expect("fits");
        let z = a.allocate(70).expect("fits");
        assert_eq!((x.start, y.start, z.start), (0, 10, 30));
        assert!(a.allocate(1).is_none());
        a.free(y);
        assert_eq!(a.largest_free(), 20);
        a.free(x);
        assert_eq!(a.largest_free(), 30);
        a.free(z);
        assert_eq!(a.largest_free(), 100);
        assert_eq!(a.free_blocks(), 100);
    }

    #[test]
    fn claim_and_grow() {
        let mut a = ExtentAllocator::new(100);
        assert!(a.claim(Extent { start: 40, len: 10 }));
        assert!(!a.claim(Extent { start: 45, len: 10 }));
        assert!(a.grow_in_place(Extent { start: 40, len: 10 }, 5));
        assert_eq!(a.free_blocks(), 85);
        assert!(a.claim(Extent { start: 55, len: 45 }));
        assert!(!a.grow_in_place(Extent { start: 55, len: 45 }, 1));
        assert_eq!(a.free_blocks(), 40);
    }

    proptest! {
        /// Against a model (a bitmap): no two live extents overlap, accounting always matches.
        #[test]
        fn matches_bitmap_model(ops in proptest::collection::vec((0u8..3, 1u64..40), 1..200)) {
            let total = 256u64;
            let mut a = ExtentAllocator::new(total);
            let mut used = vec![false; total as usize];
            let mut live: Vec<Extent> = Vec::new();
            for (op, n) in ops {
                if op < 2 {
                    if let Some(e) = a.allocate(n) {
                        for b in e.start..e.end() {
                            prop_assert!(!used[b as usize]);
                            used[b as usize] = true;
                        }
                        live.push(e);
                    }
                } else if !live.is_empty() {
                    let e = live.swap_remove((n as usize) % live.len());
                    for b in e.start..e.end() { used[b as usize] = false; }
                    a.free(e);
                }
                let model_free = used.iter().filter(|u| !**u).count() as u64;
                prop_assert_eq!(a.free_blocks(), model_free);
            }
        }
    }
}
