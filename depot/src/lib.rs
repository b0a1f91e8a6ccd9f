//! The IBP depot: a thread-per-core server of time-limited byte-array allocations.
//!
//! # Layout
//! * `config` — the TOML file, flags and defaults (units parsed by `ibp_client::units`).
//! * `server` — start-up checks, socket binding, one serving loop per core, hand-off of
//!   connections to the core that owns their allocation.
//! * `conn` — one connection: line framing, payload reads, replies, close notices.
//! * `cmd` — one module per command (parse → validate → apply → reply).
//! * `remote` — the depot as a client of another depot (copies).
//! * `shard` — what one core owns: table, stores, journal, background tasks.
//! * `table` — the allocation table, admission policy, soft revocation, expiry order.
//! * `allocation` — the persistent state of one allocation.
//! * `journal` — CRC-framed metadata records, group commit, recovery, compaction.
//! * `store` — O_DIRECT file, RAM and fault-injecting storage for a shard's region.
//! * `transfer` — the bulk write and read paths, independent of source and sink.
//! * `datapath` — how a transfer is cut into whole-checksum-block chunks.
//! * `checksum` — CRC32 per checksum block.
//! * `digest` — MD5/SHA digests for network checksum framing and per-allocation disk digests.
//! * `fanout` — one buffer to many peers: shared buffers and `join_all`.
//! * `extent` — 4 KiB-block extent allocator.
//! * `netsum` — network checksum framing of the `_CHKSUM` data commands (state machine).
//! * `keys` — capability keys, shard routing, keyed digests.
//! * `lock` — per-allocation block locks and server-sync wake-ups.
//! * `stats` — counters and latency histograms for STATUS.

pub mod allocation;
pub mod checksum;
pub mod cmd;
pub mod config;
pub mod conn;
pub mod datapath;
pub mod digest;
pub mod extent;
pub mod fanout;
pub mod journal;
pub mod keys;
pub mod lock;
pub mod netsum;
pub mod placement;
pub mod remote;
pub mod server;
pub mod shard;
pub mod stats;
pub mod store;
pub mod table;
pub mod transfer;
