//! The per-shard metadata journal: CRC-framed records, group commit, compaction.
//!
//! # Layout
//! * `record` — the record types and their framing (pure, replayable).
//! * `writer` — the journal file: O_DIRECT appends, group commit, recovery, compaction.

pub mod record;
pub mod writer;

pub use writer::{journal_paths, Batch, Journal, RecoveryReport, SyncLevel};
