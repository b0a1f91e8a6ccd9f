//! The exNode: a logical file as a set of mappings onto IBP allocations on many depots
//! ("an inode turned inside out", the IBP paper §5; PROTOCOL.md §14–15).
//!
//! IBP itself is best effort: allocations expire, depots die, bytes rot. The exNode is where
//! reliability is built above it: a logical byte range is mapped to one or more allocations
//! (replicas on distinct depots), each mapping carrying its three capabilities, its lease end
//! and an end-to-end checksum per block, so a reader can pick any live, verified replica.
//!
//! The data structure and its serializations have no sockets and no clock (the caller passes
//! `now` to liveness queries), so they are testable and fuzzable in isolation. The network
//! tools (upload, download, augment, trim, refresh, probe) are in [`tools`], over the client
//! library; `ibp-xnd` is their command line.
//!
//! # Layout
//! * [`model`]: [`ExNode`] and [`Mapping`], the library calls of the paper's Table 2
//!   (create/free, create/append/delete mappings);
//! * [`metadata`]: typed LoRS metadata and the nested `function` tree (e2e transforms);
//! * [`checksum`]: per-block end-to-end checksums (CRC32 or MD5) and their verification;
//! * [`query`]: queries by logical range, depot and liveness, coverage gaps, replica counts;
//! * [`tools`]: the network tools over the client library;
//! * [`xml`]: the LoRS `.xnd` format, read with hard bounds and written so LoRS tools load it;
//! * `json` (feature `cli`, which brings serde_json): the serde form for scripts (`--json`).

pub mod checksum;
#[cfg(feature = "cli")]
pub mod json;
pub mod metadata;
pub mod model;
pub mod query;
pub mod tools;
pub mod xml;

pub use checksum::{BlockChecksums, ChecksumAlgorithm, ChecksumError};
pub use metadata::{Function, MetaValue, Metadata};
pub use model::{DepotAddr, ExNode, Mapping, MappingId};
pub use query::{Query, ReplicaSpan};
pub use xml::{from_xml, to_xml, XmlError, XmlLimits};
