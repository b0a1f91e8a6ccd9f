//! End-to-end test support: start the real `ibp-depot` binary on loopback and talk raw IBP
//! bytes to it.
//!
//! The suites in `tests/tests/` never link the depot: they spawn its binary, so what they prove
//! is what a client on the wire sees, restarts and `kill -9` included. Every wait here has a
//! deadline and every loop a count bound, so a hung depot fails a test instead of hanging CI.
//!
//! # Layout
//! * [`depot`]: [`Depot`] and [`DepotOpts`]: a temp dir per test, a config file, the process,
//!   its port, `kill9`/`stop`/`restart`, and cleanup on drop (kept when the test failed).
//! * [`raw`]: [`Raw`], a byte-level TCP client with bounded reads (`line`, `read_exact`,
//!   `expect_closed`).
//! * [`cap`]: [`Cap`] and [`Caps`]: capability URLs parsed into the two tokens requests carry.
//! * [`proxy`]: [`FlipProxy`], a loopback proxy that damages one byte of a depot's replies.
//! * [`ops`]: one helper per IBP command (`allocate`, `store`, `write`, `load`, `probe`,
//!   `manage`) in a checked form that panics with the reply and a `try_` form that returns it.
//! * [`rng`]: a seeded splitmix64 generator so random suites replay from a printed seed.
//! * [`runner`]: [`Runner`] runs a suite's cases in sequence, records what they covered, and
//!   reports every failure at the end with one summary line.

pub mod cap;
pub mod depot;
pub mod ops;
pub mod proxy;
pub mod raw;
pub mod rng;
pub mod runner;

pub use cap::{Cap, CapKind, Caps};
pub use depot::{Depot, DepotOpts};
pub use ops::*;
pub use proxy::FlipProxy;
pub use raw::{status_of, tokens, Raw, ReadEnd};
pub use rng::Rng;
pub use runner::Runner;

/// CRC-32 of a byte slice: how the suites remember acknowledged data without keeping it.
pub fn crc32(bytes: &[u8]) -> u32 {
    crc32fast::hash(bytes)
}

/// Bytes that differ from position to position and from call to call (seeded), so that a
/// misplaced or stale block never looks right by accident.
pub fn pattern(seed: u64, len: usize) -> Vec<u8> {
    let mut rng = Rng::new(seed);
    let mut out = vec![0u8; len];
    rng.fill(&mut out);
    out
}

/// `text` cut to its first 120 and last 30 characters for a failure message (requests can be
/// 200 KiB long).
pub fn short(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    if chars.len() <= 160 {
        return text.to_string();
    }
    let head: String = chars[..120].iter().collect();
    let tail: String = chars[chars.len() - 30..].iter().collect();
    format!("{head}…[{} chars]…{tail}", chars.len())
}
