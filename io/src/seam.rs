//! Seams for time and randomness, so the depot's expiry and capability logic can be driven
//! deterministically by tests (STYLE.md 11) and never reads the wall clock or the RNG directly.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// A source of wall-clock (lease expiry) and monotonic (deadlines) time.
pub trait Clock: 'static {
    fn now_unix_s(&self) -> i64;
    fn now(&self) -> Instant;
}

/// The real clocks.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_unix_s(&self) -> i64 {
        match SystemTime::now().duration_since(UNIX_EPOCH) {
            Ok(d) => d.as_secs() as i64,
            Err(e) => -(e.duration().as_secs() as i64),
        }
    }

    fn now(&self) -> Instant {
        Instant::now()
    }
}

/// A clock tests move by hand. Clones share the same time. `now()` is the creation instant
/// plus the seconds advanced, so monotonic deadlines move with it.
#[derive(Clone, Debug)]
pub struct ManualClock {
    unix_s: Arc<AtomicI64>,
    /// Seconds advanced since creation (drives `now()`).
    advanced_s: Arc<AtomicI64>,
    base: Instant,
}

impl ManualClock {
    pub fn new(unix_s: i64) -> ManualClock {
        ManualClock {
            unix_s: Arc::new(AtomicI64::new(unix_s)),
            advanced_s: Arc::new(AtomicI64::new(0)),
            base: Instant::now(),
        }
    }

    /// Moves both clocks forward by `secs`.
    pub fn advance(&self, secs: i64) {
        self.unix_s.fetch_add(secs, Ordering::SeqCst);
        self.advanced_s.fetch_add(secs, Ordering::SeqCst);
    }

    /// Sets the wall clock (the monotonic clock follows forward jumps only).
    pub fn set(&self, unix_s: i64) {
        let old = self.unix_s.swap(unix_s, Ordering::SeqCst);
        if unix_s > old {
            self.advanced_s.fetch_add(unix_s - old, Ordering::SeqCst);
        }
    }
}

impl Default for ManualClock {
    fn default() -> Self {
        ManualClock::new(1_700_000_000)
    }
}

impl Clock for ManualClock {
    fn now_unix_s(&self) -> i64 {
        self.unix_s.load(Ordering::SeqCst)
    }

    fn now(&self) -> Instant {
        let secs = self.advanced_s.load(Ordering::SeqCst).max(0) as u64;
        self.base + std::time::Duration::from_secs(secs)
    }
}

/// A source of random bytes.
pub trait Entropy {
    fn fill(&self, out: &mut [u8]);
}

/// The OS CSPRNG (getrandom). Use for capabilities and keys.
#[derive(Clone, Copy, Debug, Default)]
pub struct OsEntropy;

impl Entropy for OsEntropy {
    fn fill(&self, out: &mut [u8]) {
        if let Err(e) = getrandom::fill(out) {
            // Issuing guessable capabilities would be worse than stopping.
            panic!("the OS random number generator failed ({e}); refusing to continue");
        }
    }
}

/// Deterministic bytes (splitmix64) for tests. NOT for keys in production.
#[derive(Debug)]
pub struct SeededEntropy {
    state: AtomicU64,
}

impl SeededEntropy {
    pub fn new(seed: u64) -> SeededEntropy {
        SeededEntropy { state: AtomicU64::new(seed) }
    }
}

impl Entropy for SeededEntropy {
    fn fill(&self, out: &mut [u8]) {
        for chunk in out.chunks_mut(8) {
            let mut z = self
                .state
                .fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed)
                .wrapping_add(0x9E37_79B9_7F4A_7C15);
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^= z >> 31;
            chunk.copy_from_slice(&z.to_le_bytes()[..chunk.len()]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_moves() {
        let clock = ManualClock::new(100);
        let t0 = clock.now();
        clock.advance(5);
        assert_eq!(clock.now_unix_s(), 105);
        assert_eq!(clock.now() - t0, std::time::Duration::from_secs(5));
        clock.clone().set(200);
        assert_eq!(clock.now_unix_s(), 200);
        assert!(SystemClock.now_unix_s() > 1_600_000_000);
    }

    #[test]
    fn entropy_sources() {
        let (mut a, mut b) = ([0u8; 13], [0u8; 13]);
        SeededEntropy::new(7).fill(&mut a);
        SeededEntropy::new(7).fill(&mut b);
        assert_eq!(a, b);
        OsEntropy.fill(&mut a);
        assert_ne!(a, [0u8; 13]);
    }
}
