//! The per-shard metadata journal: CRC-framed records, group commit, compaction.
//!
//! # Layout
//! * `record` — the record types and their framing (pure, replayable).

pub mod record;
