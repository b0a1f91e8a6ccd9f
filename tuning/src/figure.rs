//! One measured figure (a rate, with latency percentiles where each operation was timed) and
//! the per-thread recorder that produces it.
//!
//! Latencies go into an hdrhistogram in nanoseconds (3 significant digits, up to
//! [`MAX_LATENCY_NS`]) so p999 of a sub-millisecond operation is as exact as p50 of a
//! one-second one. Rates use decimal megabytes (MB = 10^6 bytes), as `dd` and fio print them.

use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

/// Longest latency a histogram holds; slower operations are clamped to it (and a stall that
/// long is visible in p999 anyway).
pub const MAX_LATENCY_NS: u64 = 120_000_000_000;

/// Counts and latencies of one kind of operation, kept by one thread and merged afterwards.
#[derive(Clone)]
pub struct Recorder {
    /// Latency of each operation in nanoseconds.
    hist: Histogram<u64>,
    /// Operations completed.
    pub ops: u64,
    /// Payload bytes moved (0 for metadata operations).
    pub bytes: u64,
}

impl Default for Recorder {
    fn default() -> Self {
        Recorder::new()
    }
}

impl Recorder {
    pub fn new() -> Recorder {
        let hist = Histogram::new_with_bounds(1, MAX_LATENCY_NS, 3)
            .expect("1..MAX_LATENCY_NS with 3 digits is a valid histogram");
        Recorder { hist, ops: 0, bytes: 0 }
    }

    /// Records one operation of `bytes` payload that took `took`.
    pub fn record(&mut self, took: Duration, bytes: u64) {
        let ns = (took.as_nanos() as u64).clamp(1, MAX_LATENCY_NS);
        self.hist.saturating_record(ns);
        self.ops += 1;
        self.bytes += bytes;
    }

    /// Counts bytes without a latency sample (streaming baselines time only the whole run).
    pub fn add_bytes(&mut self, bytes: u64) {
        self.bytes += bytes;
    }

    pub fn merge(&mut self, other: &Recorder) {
        // Both histograms share bounds, so `add` cannot fail; saturate rather than panic.
        let _ = self.hist.add(&other.hist);
        self.ops += other.ops;
        self.bytes += other.bytes;
    }

    /// The figure for this recorder over `elapsed` of wall time.
    pub fn figure(&self, name: &str, setting: Setting, elapsed: Duration) -> Figure {
        let secs = elapsed.as_secs_f64().max(1e-9);
        let timed = !self.hist.is_empty();
        let pct = |q: f64| timed.then(|| self.hist.value_at_quantile(q) as f64 / 1000.0);
        Figure {
            name: name.to_owned(),
            setting,
            ops: self.ops,
            bytes: self.bytes,
            elapsed_s: secs,
            mb_per_s: (self.bytes > 0).then(|| self.bytes as f64 / secs / 1e6),
            ops_per_s: (self.ops > 0).then(|| self.ops as f64 / secs),
            p50_us: pct(0.50),
            p99_us: pct(0.99),
            p999_us: pct(0.999),
            limit: None,
            ratio: None,
        }
    }
}

/// The knobs a figure was measured with.
#[derive(Clone, Copy, Debug, Default, Serialize, PartialEq, Eq)]
pub struct Setting {
    /// TCP streams (or parallel workers) used.
    pub streams: usize,
    /// Bytes per operation.
    pub block_bytes: u64,
    /// Operations in flight per stream (pipelining or disk queue depth).
    pub qd: usize,
    /// Allocations the operations were spread over (0 for the machine's own limits).
    pub allocs: usize,
}

/// One line of a report.
#[derive(Clone, Debug, Serialize)]
pub struct Figure {
    /// What was measured, e.g. `store seq` or `tcp loopback`.
    pub name: String,
    #[serde(flatten)]
    pub setting: Setting,
    pub ops: u64,
    pub bytes: u64,
    pub elapsed_s: f64,
    /// Payload rate in MB/s (10^6 bytes); absent for metadata-only figures.
    pub mb_per_s: Option<f64>,
    /// Operations per second; absent for streaming baselines that time only the whole run.
    pub ops_per_s: Option<f64>,
    pub p50_us: Option<f64>,
    pub p99_us: Option<f64>,
    pub p999_us: Option<f64>,
    /// Name of the same-run baseline figure this one is compared with.
    pub limit: Option<String>,
    /// This figure's MB/s (or ops/s) divided by the limit's.
    pub ratio: Option<f64>,
}

impl Figure {
    /// The rate a ratio compares: MB/s when bytes moved, else ops/s.
    pub fn rate(&self) -> Option<f64> {
        self.mb_per_s.or(self.ops_per_s)
    }

    /// Sets `limit` and `ratio` against `base` when both have a rate.
    pub fn compare_with(&mut self, base: &Figure) {
        if let (Some(ours), Some(theirs)) = (self.rate(), base.rate()) {
            if theirs > 0.0 {
                self.limit = Some(if base.name.starts_with("tcp") {
                    format!("{} ×{}", base.name, base.setting.streams)
                } else {
                    base.name.clone()
                });
                self.ratio = Some(ours / theirs);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn figure_rates_and_percentiles() {
        let mut r = Recorder::new();
        for i in 1..=1000u64 {
            r.record(Duration::from_micros(i), 4096);
        }
        let f = r.figure("x", Setting::default(), Duration::from_secs(1));
        assert_eq!(f.ops, 1000);
        assert!((f.mb_per_s.expect("bytes moved") - 4.096).abs() < 1e-9);
        let p50 = f.p50_us.expect("timed");
        assert!((495.0..=505.0).contains(&p50), "{p50}");
        assert!(f.p999_us.expect("timed") >= f.p99_us.expect("timed"));
    }
}
