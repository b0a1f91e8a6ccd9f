//! The IBP wire codec, sans-IO: bytes in, typed values out, and back (PROTOCOL.md §1–13).
//!
//! Nothing here touches a socket or a clock, so the depot and the client share it and it can
//! be fuzzed and property-tested in isolation. Every length and count from the wire is
//! bounded by a named constant before anything is allocated.
//!
//! # Layout
//! * [`error`]: the IBP error codes of §7.1;
//! * [`capability`]: capability URLs and `RID#key` tokens, with redacting `Debug`;
//! * [`frame`]: finding one bounded line in a buffer and splitting it into tokens;
//! * [`request`]: every command line, parsed and encoded;
//! * [`reply`]: depot-side reply encoders and client-side reply parsers;
//! * [`digest`]: the four per-block digests of the `_CHKSUM` commands (shared with the depot);
//! * [`netframe`]: the §10 network checksum framing, an encoder and an incremental decoder;
//! * [`fuzz`]: invariant-checking entry points shared by the fuzz targets and the corpus test.

pub mod capability;
pub mod digest;
pub mod error;
pub mod frame;
pub mod fuzz;
pub mod netframe;
pub mod reply;
pub mod request;

pub use capability::{CapKind, CapParseError, Capability, KeyRef};
pub use error::{ErrorCode, IBP_OK};
pub use frame::{find_line, LineTooLong, MAX_LINE_BYTES};
pub use reply::ReplyError;
pub use request::{parse_request, ParseError, Request};
