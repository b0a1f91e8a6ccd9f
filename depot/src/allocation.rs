//! One byte-array allocation: what it is, where its bytes live, and what it has promised.
//!
//! Design: everything here is persistent state, written to the shard journal whole (`Put`) or in
//! parts (`Data`, `Meta`). Runtime-only state (locks, waiters) lives beside it in the shard, so
//! this type stays plain data that round-trips through the journal byte for byte.

use crate::checksum::BlockCrcs;
use crate::digest::DiskDigests;
use crate::extent::{Extent, BLOCK_BYTES};
use crate::keys::KeyDigest;

/// IBP reliability: soft allocations may be revoked when a hard one needs their space.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Durability {
    Soft = 1,
    Hard = 2,
}

impl Durability {
    pub fn from_wire(v: i64) -> Option<Durability> {
        match v {
            1 => Some(Durability::Soft),
            2 => Some(Durability::Hard),
            _ => None,
        }
    }
}

/// A live allocation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Allocation {
    /// Shard-local identifier, never reused within a shard's journal lifetime.
    pub id: u64,
    /// Index of the resource (in the depot's resource list) holding the bytes.
    pub resource: u16,
    /// Where the bytes live inside this shard's region of that resource.
    pub extent: Extent,
    /// Largest size the allocation may reach (IBP max_size); the extent holds at least this.
    pub max_size: u64,
    /// Current size: STORE appends here, LOAD may read below it.
    pub size: u64,
    pub durability: Durability,
    /// Unix time (seconds) when the lease ends; capabilities answer "not found" from then on.
    pub expires_at: i64,
    /// Creation order within the shard, so soft allocations are revoked oldest first.
    pub created_seq: u64,
    /// IBP reference counts (ACCRE semantics: created 1/0; deleted when both reach 0).
    pub read_refs: u32,
    pub write_refs: u32,
    /// Digests of the read, write and manage keys (the keys themselves are never stored).
    pub digests: [KeyDigest; 3],
    /// CRC32 per checksum block, verified on every load.
    pub crcs: BlockCrcs,
    /// Disk digests chosen at ALLOCATE_CHKSUM (their block size is then also the CRC block);
    /// `None` for plain allocations, which use the resource's checksum block.
    pub disk_digests: Option<DiskDigests>,
}

impl Allocation {
    /// Byte offset of the allocation inside the shard's region file.
    pub fn base_offset(&self) -> u64 {
        self.extent.start * BLOCK_BYTES
    }

    /// Bytes the extent can hold (a whole number of 4 KiB blocks, ≥ max_size).
    pub fn extent_bytes(&self) -> u64 {
        self.extent.len * BLOCK_BYTES
    }

    /// Seconds of lease left at `now` (0 once expired).
    pub fn seconds_left(&self, now: i64) -> i64 {
        (self.expires_at - now).max(0)
    }

    pub fn is_expired(&self, now: i64) -> bool {
        now >= self.expires_at
    }

    /// This allocation's checksum block: its own when it carries digests, else the resource's.
    pub fn block_bytes(&self, resource_default: u64) -> u64 {
        self.disk_digests.as_ref().map_or(resource_default, |d| d.block_bytes)
    }
}

/// An alias (ALIAS_ALLOCATE): capabilities of its own onto a window of a master allocation.
/// It has no bytes of its own; it dies with its master, on its own lease, or when both of
/// its reference counts reach 0.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Alias {
    /// Shard-local identifier, from the same sequence as allocation ids.
    pub id: u64,
    /// The allocation the alias opens onto.
    pub master: u64,
    /// `(offset, len)` in master offsets; `None` is the whole allocation (offset=len=0 on the
    /// wire), which follows the master's size and alone may append.
    pub window: Option<(u64, u64)>,
    /// Unix time the alias lease ends; `None` inherits the master's lease.
    pub expires_at: Option<i64>,
    /// Reference counts, as for allocations (created 1/0).
    pub read_refs: u32,
    pub write_refs: u32,
    /// Digests of the alias's read, write and manage keys.
    pub digests: [KeyDigest; 3],
}

impl Alias {
    /// When the alias lease ends, given its master's.
    pub fn expires(&self, master_expires_at: i64) -> i64 {
        self.expires_at.map_or(master_expires_at, |e| e.min(master_expires_at))
    }
}
