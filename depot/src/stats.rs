//! Counters and latency histograms for STATUS VERSION, and the usage figures each shard
//! publishes so any core can answer STATUS for the whole depot.
//!
//! Design: each shard owns one `ShardStats`; only that shard writes it. Usage figures are
//! atomics (read by other cores for STATUS); per-command latency goes into an hdrhistogram
//! behind a mutex that only STATUS readers ever contend for.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use hdrhistogram::Histogram;

/// Published usage of one shard's region of one resource, in bytes.
#[derive(Debug, Default)]
pub struct RegionUsage {
    pub capacity: AtomicU64,
    pub free: AtomicU64,
    pub hard: AtomicU64,
    pub soft: AtomicU64,
    pub allocations: AtomicU64,
}

/// One command's figures.
pub struct CommandStats {
    pub count: u64,
    pub errors: u64,
    /// Latency in microseconds, 1 µs to 1 hour, 2 significant digits.
    pub latency_us: Histogram<u64>,
}

impl CommandStats {
    fn new() -> CommandStats {
        CommandStats {
            count: 0,
            errors: 0,
            latency_us: Histogram::new_with_bounds(1, 3_600_000_000, 2)
                .expect("valid histogram bounds"),
        }
    }
}

/// Everything a shard publishes.
/// Name under which journal compactions are counted beside the commands (count, errors and
/// latency, shown by STATUS on a line of their own).
pub const JOURNAL_COMPACTION: &str = "journal compaction";

pub struct ShardStats {
    /// Indexed by resource.
    pub usage: Vec<RegionUsage>,
    pub connections: AtomicU64,
    pub commands: Mutex<BTreeMap<&'static str, CommandStats>>,
}

impl ShardStats {
    pub fn new(resources: usize) -> ShardStats {
        ShardStats {
            usage: (0..resources).map(|_| RegionUsage::default()).collect(),
            connections: AtomicU64::new(0),
            commands: Mutex::new(BTreeMap::new()),
        }
    }

    /// Records one command's outcome and latency.
    pub fn record(&self, command: &'static str, ok: bool, elapsed: Duration) {
        let Ok(mut map) = self.commands.lock() else { return };
        let s = map.entry(command).or_insert_with(CommandStats::new);
        s.count += 1;
        if !ok {
            s.errors += 1;
        }
        let us = (elapsed.as_micros() as u64).clamp(1, 3_600_000_000);
        let _ = s.latency_us.record(us);
    }
}

/// Sums of all shards' figures for one command.
pub struct Merged {
    pub count: u64,
    pub errors: u64,
    pub p50_us: u64,
    pub p99_us: u64,
}

/// Merges every shard's per-command figures.
pub fn merge(shards: &[std::sync::Arc<ShardStats>]) -> BTreeMap<&'static str, Merged> {
    let mut acc: BTreeMap<&'static str, CommandStats> = BTreeMap::new();
    for s in shards {
        let Ok(map) = s.commands.lock() else { continue };
        for (name, c) in map.iter() {
            let a = acc.entry(name).or_insert_with(CommandStats::new);
            a.count += c.count;
            a.errors += c.errors;
            let _ = a.latency_us.add(&c.latency_us);
        }
    }
    acc.into_iter()
        .map(|(k, c)| {
            let m = Merged {
                count: c.count,
                errors: c.errors,
                p50_us: c.latency_us.value_at_quantile(0.5),
                p99_us: c.latency_us.value_at_quantile(0.99),
            };
            (k, m)
        })
        .collect()
}

/// Loads an atomic (Relaxed: figures for humans, no ordering needed).
pub fn get(a: &AtomicU64) -> u64 {
    a.load(Ordering::Relaxed)
}

/// Stores an atomic.
pub fn set(a: &AtomicU64, v: u64) {
    a.store(v, Ordering::Relaxed)
}
