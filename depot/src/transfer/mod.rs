//! The two bulk data paths, independent of where the bytes come from or go to.
//!
//! # Layout
//! * `write` — bytes from a [`write::Source`] (a client socket, another depot, a local
//!   allocation) into an allocation: block locks, edge blocks, O_DIRECT writes two in flight,
//!   CRCs, journal commit.
//! * `read` — bytes of an allocation to a [`read::Sink`] (a client socket, another depot, many
//!   depots at once): server sync, shared block locks, verified reads with read-ahead.
//!
//! STORE/WRITE/PULL and LOAD/SEND/PUSH/MCOPY are thin commands over these.

pub mod read;
pub mod write;
