//! The network tools over an exNode, as LoRS has them (PROTOCOL.md §15): upload (stripe and
//! replicate), download (parallel, fastest live replica, fail-over, verified), augment (add
//! replicas), trim (drop mappings, optionally free), refresh (extend leases), and the probes
//! behind ls/stat. `ibp-xnd` is a thin command line over these.
//!
//! Every message names depots (`host:port`) and logical ranges, never a capability.
//!
//! # Layout
//! * [`common`]: errors, depot endpoints, latency probes, the work plan, verified reads;
//! * [`upload`], [`download`], [`augment`], [`maintain`] (trim, refresh, probe).

pub mod augment;
pub mod common;
pub mod download;
pub mod maintain;
pub mod upload;

pub use common::{ToolError, ToolErrorKind};
