//! `ibp-client`: the IBP wire protocol codec shared with the depot, a blocking client
//! library with a multi-stream parallel engine, and the `ibp` command line.
//!
//! Blocking std::net, no async runtime: a client call is a few lines and a bulk transfer,
//! and the parallel engine gets its concurrency from one thread and one connection per
//! stream. Every socket has read and write timeouts and every operation a deadline.
//!
//! # Layout
//! * [`proto`]: the sans-IO wire codec (requests, replies, capabilities, error codes);
//!   the depot is written against it.
//! * [`config`]: timeouts, retry budgets, pool size.
//! * [`conn`]: one connection: bounded line framing, raw reads, deadlines.
//! * [`depot`]: a depot endpoint with its connection pool and the `-66` retry loop;
//!   allocate and status.
//! * [`handle`]: calls on one capability (store, write, load, probe, manage).
//! * [`ext`]: the rest of the IBP 1.4 command set on [`Depot`] and [`CapHandle`]:
//!   ALLOCATE_CHKSUM, vector I/O, aliases, RENAME, SPLIT/MERGE, disk digests, and the
//!   network-checksummed STORE/WRITE/LOAD (§10 framing).
//! * [`copy`]: depot-to-depot copies on a capability: SEND, PUSH/PULL, parallel PUSHes, and
//!   MCOPY_EXT (fan-out or chain) with a fallback to sequential SENDs on old depots.
//! * [`parallel`]: one transfer split over N streams with positioned file I/O, CRC32 per
//!   block, progress, per-stream retries, and verification.
//! * [`units`]: sizes (`4GiB`) and durations (`2h`) as people write them.
//! * [`error`]: the library's [`Error`].
//!
//! The protocol reference is `PROTOCOL.md` in the shared docs; section numbers in comments
//! (§7.1, §9…) point there.

pub mod config;
pub mod conn;
pub mod copy;
pub mod depot;
pub mod error;
pub mod exnode;
pub mod ext;
pub mod handle;
pub mod parallel;
pub mod proto;
pub mod units;

pub use config::Config;
pub use copy::{CopyTimeouts, McopyMethod, McopyPlan, McopyReport, McopyStrategy};
pub use depot::{AllocCaps, Depot};
pub use error::{Error, Result};
pub use handle::CapHandle;
pub use proto::{CapKind, Capability};
