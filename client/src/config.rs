//! Client configuration: every wait has a limit, every retry a budget.

use std::time::Duration;

/// How a [`crate::Depot`] connects, waits and retries.
#[derive(Debug, Clone)]
pub struct Config {
    /// Limit on establishing a TCP connection.
    pub connect_timeout: Duration,
    /// Socket read/write timeout: the longest the depot may stay silent mid-operation.
    pub io_timeout: Duration,
    /// Base deadline for one whole operation (command, data, reply). Bulk transfers get
    /// `len / min_rate_bytes_per_s` on top.
    pub op_timeout: Duration,
    /// The slowest transfer rate we tolerate before calling a transfer stalled; scales the
    /// deadline (ours and the server-side `T`) of bulk operations.
    pub min_rate_bytes_per_s: u64,
    /// Server-side deadline `T` sent with small commands (seconds).
    pub server_timeout_s: i64,
    /// Attempts after a `-66` back-off notice before giving up.
    pub max_backoff_retries: u32,
    /// Total time we are willing to spend waiting on back-off notices.
    pub max_backoff_total: Duration,
    /// Longest single back-off we honour, whatever the depot asks.
    pub max_single_backoff: Duration,
    /// Idle connections kept per depot for reuse.
    pub pool_max_idle: usize,
    /// Status password (ACCRE's README, LoCI and libdlt assume `ibp`).
    pub status_password: String,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            connect_timeout: Duration::from_secs(10),
            io_timeout: Duration::from_secs(30),
            op_timeout: Duration::from_secs(60),
            min_rate_bytes_per_s: 1024 * 1024,
            server_timeout_s: 30,
            max_backoff_retries: 5,
            max_backoff_total: Duration::from_secs(60),
            max_single_backoff: Duration::from_secs(30),
            pool_max_idle: 8,
            status_password: "ibp".to_owned(),
        }
    }
}

impl Config {
    /// The operation deadline for moving `bytes`.
    pub fn op_budget(&self, bytes: u64) -> Duration {
        let rate = self.min_rate_bytes_per_s.max(1);
        self.op_timeout + Duration::from_secs(bytes / rate)
    }

    /// The server-side `T` for moving `bytes`.
    pub fn server_timeout_for(&self, bytes: u64) -> i64 {
        let rate = self.min_rate_bytes_per_s.max(1);
        let extra = i64::try_from(bytes / rate).unwrap_or(i64::MAX);
        self.server_timeout_s.saturating_add(extra)
    }
}
