//! The JSON form of an exNode, for scripts (`ibp-xnd … --json`). It is the serde image of
//! [`ExNode`]: capabilities as URL strings, metadata as `{name, type, value}`. The same size
//! bound as the XML reader applies before parsing.

use super::model::ExNode;
use super::xml::XmlLimits;
use std::fmt;

/// Why a JSON exNode was refused.
#[derive(Debug)]
pub enum JsonError {
    /// Larger than the input bound.
    TooLarge {
        /// The bound in bytes.
        limit: usize,
    },
    /// Not valid JSON for an exNode (serde's message; it never quotes capability values).
    Invalid(String),
}

impl fmt::Display for JsonError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JsonError::TooLarge { limit } => write!(f, "exNode JSON is larger than {limit} bytes"),
            JsonError::Invalid(why) => write!(f, "invalid exNode JSON: {why}"),
        }
    }
}

impl std::error::Error for JsonError {}

/// Serializes to the JSON form.
pub fn to_json<W: std::io::Write>(x: &ExNode, out: W) -> std::io::Result<()> {
    serde_json_write(x, out)
}

fn serde_json_write<W: std::io::Write>(x: &ExNode, out: W) -> std::io::Result<()> {
    serde_json::to_writer_pretty(out, x).map_err(std::io::Error::other)
}

/// Parses the JSON form, refusing input over `limits.max_input_bytes`.
pub fn from_json(text: &str, limits: &XmlLimits) -> Result<ExNode, JsonError> {
    if text.len() > limits.max_input_bytes {
        return Err(JsonError::TooLarge { limit: limits.max_input_bytes });
    }
    let x: ExNode = serde_json::from_str(text).map_err(|e| JsonError::Invalid(redact_serde(&e)))?;
    if x.mappings.len() > limits.max_mappings {
        return Err(JsonError::Invalid(format!("more than {} mappings", limits.max_mappings)));
    }
    Ok(x)
}

/// serde_json's messages can quote an offending string value (possibly a capability), so
/// keep only the category and position.
fn redact_serde(e: &serde_json::Error) -> String {
    format!("{:?} error at line {} column {}", e.classify(), e.line(), e.column())
}
