//! The LoRS / libexnode XML format (`.xnd`, PROTOCOL.md §14.1), read and written.
//!
//! Reading is in two steps, like framing: first the document is parsed into a small element
//! tree under hard bounds (input size, depth, element count, text and attribute lengths; no
//! DTD, so no entity expansion), then the tree is interpreted as an exNode. Writing produces
//! what LoRS `xndSerialize.c` produces: a root `exnode` declaring the `exnode` prefix, then
//! `exnode:metadata` and `exnode:mapping` children, so LoRS- and LoDN-reading tools load it.
//!
//! # Layout
//! * [`tree`]: the bounded element tree;
//! * [`read`]: tree → [`ExNode`](super::ExNode);
//! * [`write`]: [`ExNode`](super::ExNode) → text.

pub mod read;
pub mod tree;
pub mod write;

pub use read::{from_xml, read_bounded};
pub use write::to_xml;

use std::fmt;

/// The exNode XML namespace (LoRS `xndSerialize.c`).
pub const NAMESPACE: &str = "http://loci.cs.utk.edu/exnode";

/// Bounds on what a reader accepts; every one is checked before the memory it guards is used.
#[derive(Debug, Clone)]
pub struct XmlLimits {
    /// Largest document in bytes.
    pub max_input_bytes: usize,
    /// Deepest element nesting (root = 1). LoRS needs 4 (root, mapping, function, metadata)
    /// plus the depth of nested functions and `meta` values.
    pub max_depth: usize,
    /// Most elements in one document.
    pub max_elements: usize,
    /// Most mappings in one exNode.
    pub max_mappings: usize,
    /// Longest text content of one element (a digest list for a large mapping is the
    /// longest legitimate one).
    pub max_text_bytes: usize,
    /// Longest attribute value (metadata and function names).
    pub max_attr_bytes: usize,
    /// Most attributes on one element.
    pub max_attrs: usize,
}

impl Default for XmlLimits {
    fn default() -> XmlLimits {
        XmlLimits {
            max_input_bytes: 64 << 20,
            max_depth: 32,
            max_elements: 4 << 20,
            max_mappings: 1 << 20,
            max_text_bytes: 16 << 20,
            max_attr_bytes: 1024,
            max_attrs: 16,
        }
    }
}

/// Why an exNode document was refused. Messages name the place (mapping index, metadata
/// name), never a capability.
#[derive(Debug)]
pub enum XmlError {
    /// Could not read the input.
    Io(std::io::Error),
    /// The document is larger than [`XmlLimits::max_input_bytes`].
    TooLarge {
        /// The bound in bytes.
        limit: usize,
    },
    /// Not UTF-8.
    NotUtf8,
    /// A DOCTYPE (and so possibly entity definitions) is present; exNodes never have one.
    DocType,
    /// The XML itself is malformed.
    Syntax {
        /// Byte offset where the parser stopped.
        position: u64,
        /// What the parser said.
        message: String,
    },
    /// A bound from [`XmlLimits`] was exceeded.
    Limit {
        /// Which bound.
        what: &'static str,
        /// Its value.
        limit: usize,
    },
    /// The root element is not `exnode`.
    NotAnExnode,
    /// A metadata element is malformed.
    Metadata {
        /// Where: `exnode`, `mapping 3`, `mapping 3 function checksum`…
        place: String,
        /// What is wrong.
        why: String,
    },
    /// A mapping is malformed.
    Mapping {
        /// 0-based index in document order.
        index: usize,
        /// What is wrong.
        why: String,
    },
}

impl fmt::Display for XmlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            XmlError::Io(e) => write!(f, "cannot read exNode: {e}"),
            XmlError::TooLarge { limit } => write!(f, "exNode is larger than {limit} bytes"),
            XmlError::NotUtf8 => f.write_str("exNode is not UTF-8"),
            XmlError::DocType => {
                f.write_str("exNode has a DOCTYPE; refused (no DTDs or entity definitions)")
            }
            XmlError::Syntax { position, message } => {
                write!(f, "malformed exNode XML at byte {position}: {message}")
            }
            XmlError::Limit { what, limit } => write!(f, "exNode exceeds {what} limit of {limit}"),
            XmlError::NotAnExnode => f.write_str("document root is not an <exnode> element"),
            XmlError::Metadata { place, why } => write!(f, "bad metadata in {place}: {why}"),
            XmlError::Mapping { index, why } => write!(f, "bad mapping {index}: {why}"),
        }
    }
}

impl std::error::Error for XmlError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            XmlError::Io(e) => Some(e),
            _ => None,
        }
    }
}
