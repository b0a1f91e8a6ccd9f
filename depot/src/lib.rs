//! The IBP depot: a thread-per-core server of time-limited byte-array allocations.
//!
//! # Layout
//! * `extent` — 4 KiB-block extent allocator for one shard's region of a resource.
//! * `checksum` — checksum-block arithmetic and CRC tables.
//! * `keys` — capability keys, shard routing and keyed digests.
//! * `allocation` — the persistent state of one allocation.
//! * `table` — a shard's allocation table, admission policy and lifecycle.
//! * `journal` — the per-shard metadata journal.

pub mod allocation;
pub mod checksum;
pub mod extent;
pub mod journal;
pub mod keys;
pub mod table;
