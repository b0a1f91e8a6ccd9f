//! Which shard a new allocation goes to.
//!
//! An allocation lives on one shard (one core, its slice of the resource) for its whole life,
//! and ALLOCATE runs on whichever core holds the connection: the one SO_REUSEPORT picked for
//! the base port, or the shard whose own port the client dialled. Left at that, a client
//! that allocates over one pooled connection fills one shard while the others stay empty:
//! its striped file is then served by one core, and once that shard is full it is refused
//! while the depot still has room.
//!
//! So an ALLOCATE is moved (its connection handed off) to the shard with the most free bytes
//! on the resource when that shard has at least `max(size, BALANCE_FLOOR)` more free than
//! this one: equal-sized allocations (the stripes of a file) alternate between shards and
//! stay within one allocation of balanced, an allocation that does not fit here goes where it
//! fits, and small allocations made concurrently on one shard (whose free space dips
//! by a few blocks while they commit) do not bounce connections between cores. Ties stay
//! here. A chain of moves is short: each one goes to a shard with strictly more free space.

use crate::shard::Shard;
use crate::stats;

/// Differences in free space below this never move an allocation.
pub const BALANCE_FLOOR: u64 = 1 << 20;

/// The shard (other than `shard`) an allocation of `size` bytes on `resource` should be made
/// on, from the free space every shard publishes.
pub fn better_shard(shard: &Shard, resource: usize, size: u64) -> Option<u16> {
    let free: Vec<u64> =
        shard.all_stats.iter().map(|s| stats::get(&s.usage[resource].free)).collect();
    choose(usize::from(shard.idx), &free, size).map(|i| i as u16)
}

/// The rule of [`better_shard`] on the free bytes of each shard: `Some(i)` when shard `i`
/// has the most free space and at least `max(size, BALANCE_FLOOR)` more than shard `here`,
/// or when `size` fits there and not here.
pub fn choose(here: usize, free: &[u64], size: u64) -> Option<usize> {
    let own = *free.get(here)?;
    let (best, most) = free
        .iter()
        .copied()
        .enumerate()
        // Most free first; among equals, this shard, then the lowest index.
        .max_by_key(|&(i, f)| (f, i == here, std::cmp::Reverse(i)))?;
    let fits_only_there = own < size && most >= size;
    (best != here && (most - own >= size.max(BALANCE_FLOOR) || fits_only_there)).then_some(best)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    #[test]
    fn equal_free_space_stays_here() {
        assert_eq!(choose(1, &[100 * MIB, 100 * MIB, 100 * MIB], 4 * MIB), None);
    }

    #[test]
    fn a_shard_one_allocation_ahead_sends_the_next_one_elsewhere() {
        // Shard 0 holds one more 4 MiB stripe than shard 1: the next stripe goes to 1.
        assert_eq!(choose(0, &[96 * MIB, 100 * MIB], 4 * MIB), Some(1));
        // Less than one allocation apart: stay.
        assert_eq!(choose(0, &[97 * MIB, 100 * MIB], 4 * MIB), None);
        // The emptiest wins among several.
        assert_eq!(choose(0, &[90 * MIB, 95 * MIB, 99 * MIB], 4 * MIB), Some(2));
    }

    #[test]
    fn small_allocations_move_only_past_the_floor() {
        assert_eq!(choose(0, &[100 * MIB - 64 * 1024, 100 * MIB], 4096), None);
        assert_eq!(choose(0, &[99 * MIB, 100 * MIB], 4096), Some(1));
    }

    #[test]
    fn an_allocation_that_does_not_fit_here_goes_where_it_fits() {
        assert_eq!(choose(0, &[MIB, 600 * MIB], 512 * MIB), Some(1));
        // Closer than one allocation apart, but it fits only there.
        assert_eq!(choose(0, &[500 * MIB, 600 * MIB], 512 * MIB), Some(1));
        // Nowhere better: stay and let ALLOCATE refuse it here.
        assert_eq!(choose(0, &[MIB, MIB], 512 * MIB), None);
    }

    #[test]
    fn a_bad_index_or_no_shards_chooses_nothing() {
        assert_eq!(choose(3, &[MIB], MIB), None);
        assert_eq!(choose(0, &[], MIB), None);
    }
}
