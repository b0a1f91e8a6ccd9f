//! `ibp-client`: the IBP wire protocol codec shared with the depot, a blocking client
//! library with a multi-stream parallel engine, and the `ibp` command line.
//!
//! # Layout
//! * [`proto`]: the sans-IO wire codec (requests, replies, capabilities, error codes);
//!   the depot is written against it.
//!
//! The protocol reference is `PROTOCOL.md` in the shared docs; section numbers in comments
//! (§7.1, §9…) point there.

pub mod exnode;
pub mod proto;
