//! Tree → [`ExNode`]: the second step of reading. Known mapping metadata becomes typed
//! fields; anything else is kept verbatim (`extra`, `functions`) so a read-modify-write keeps
//! what other tools wrote. Numbers are accepted whether typed `integer` or `string`, since
//! writers differ.

use super::tree::{self, Element};
use super::{XmlError, XmlLimits};
use crate::exnode::checksum::{BlockChecksums, ChecksumAlgorithm, MAX_DIGESTS};
use crate::exnode::metadata::{self, Function, MetaValue, Metadata};
use crate::exnode::model::{DepotAddr, ExNode, Mapping};
use crate::proto::Capability;
use std::io::Read;

/// Reads at most `limit` bytes of UTF-8 from `input`; more is an error, not a truncation.
pub fn read_bounded(input: impl Read, limit: usize) -> Result<String, XmlError> {
    let mut bytes = Vec::new();
    let cap = u64::try_from(limit).unwrap_or(u64::MAX).saturating_add(1);
    input.take(cap).read_to_end(&mut bytes).map_err(XmlError::Io)?;
    if bytes.len() > limit {
        return Err(XmlError::TooLarge { limit });
    }
    String::from_utf8(bytes).map_err(|_| XmlError::NotUtf8)
}

/// Parses an exNode document.
pub fn from_xml(text: &str, limits: &XmlLimits) -> Result<ExNode, XmlError> {
    let root = tree::parse(text, limits)?;
    if root.name != "exnode" {
        return Err(XmlError::NotAnExnode);
    }
    let mut x = ExNode::new();
    for child in &root.children {
        match child.name.as_str() {
            "metadata" => x.metadata.push(metadata(child, "exnode")?),
            "mapping" => {
                if x.mappings.len() >= limits.max_mappings {
                    return Err(XmlError::Limit {
                        what: "mapping count",
                        limit: limits.max_mappings,
                    });
                }
                let index = x.mappings.len();
                x.mappings.push(mapping(child, index)?);
            }
            // Unknown elements are another tool's business; LoRS ignores them too.
            _ => {}
        }
    }
    Ok(x)
}

/// A `metadata` or `argument` element.
fn metadata(el: &Element, place: &str) -> Result<Metadata, XmlError> {
    let bad = |why: String| XmlError::Metadata { place: place.to_owned(), why };
    let name = el.attr("name").ok_or_else(|| bad("metadata without a name".into()))?;
    let ty = el.attr("type").unwrap_or("string");
    let value = match ty {
        "string" => MetaValue::String(el.text.clone()),
        "integer" => MetaValue::Integer(
            el.text.trim().parse().map_err(|_| bad(format!("{name}: not an integer")))?,
        ),
        "double" => MetaValue::Double(
            el.text.trim().parse().map_err(|_| bad(format!("{name}: not a number")))?,
        ),
        "meta" => {
            let inner = format!("{place} {name}");
            let children = el
                .children
                .iter()
                .filter(|c| c.name == "metadata")
                .map(|c| metadata(c, &inner))
                .collect::<Result<Vec<_>, _>>()?;
            MetaValue::Meta(children)
        }
        _ => return Err(bad(format!("{name}: unknown type (string, integer, double, meta)"))),
    };
    Ok(Metadata { name: name.to_owned(), value })
}

fn function(el: &Element, place: &str) -> Result<Function, XmlError> {
    let name = el.attr("name").ok_or_else(|| XmlError::Metadata {
        place: place.to_owned(),
        why: "function without a name".into(),
    })?;
    let inner_place = format!("{place} function {name}");
    let mut f = Function::named(name);
    for child in &el.children {
        match child.name.as_str() {
            "metadata" => f.metadata.push(metadata(child, &inner_place)?),
            "argument" => f.arguments.push(metadata(child, &inner_place)?),
            "function" => f.inner.push(function(child, &inner_place)?),
            _ => {}
        }
    }
    Ok(f)
}

fn mapping(el: &Element, index: usize) -> Result<Mapping, XmlError> {
    let bad = |why: String| XmlError::Mapping { index, why };
    let place = format!("mapping {index}");
    let mut m = Mapping::new(0, 0);
    let (mut have_offset, mut have_length, mut have_alloc_length) = (false, false, false);
    for child in &el.children {
        match child.name.as_str() {
            "metadata" => {
                let md = metadata(child, &place)?;
                match md.name.as_str() {
                    "exnode_offset" => {
                        (m.logical_offset, have_offset) = (number(&md, index)?, true)
                    }
                    "logical_length" => {
                        (m.logical_length, have_length) = (number(&md, index)?, true)
                    }
                    "alloc_offset" => m.alloc_offset = number(&md, index)?,
                    "alloc_length" => {
                        (m.alloc_length, have_alloc_length) = (number(&md, index)?, true)
                    }
                    "e2e_blocksize" => m.e2e_blocksize = number(&md, index)?,
                    "expires" => m.expires_s = Some(number(&md, index)?),
                    "depot" => m.depot = Some(depot(&md, index)?),
                    "e2e_checksum" => m.checksum = Some(checksum(&md, index)?),
                    _ => m.extra.push(md),
                }
            }
            "function" => m.functions.push(function(child, &place)?),
            "read" => m.read = cap(child, index, "read")?,
            "write" => m.write = cap(child, index, "write")?,
            "manage" => m.manage = cap(child, index, "manage")?,
            _ => {}
        }
    }
    if !have_offset || !have_length {
        return Err(bad("exnode_offset and logical_length are required".into()));
    }
    if !have_alloc_length {
        m.alloc_length = m.alloc_offset.saturating_add(m.logical_length);
    }
    if m.logical_offset.checked_add(m.logical_length).is_none() {
        return Err(bad("exnode_offset + logical_length overflows".into()));
    }
    Ok(m)
}

fn number(md: &Metadata, index: usize) -> Result<u64, XmlError> {
    let n = match &md.value {
        MetaValue::Integer(n) => u64::try_from(*n).ok(),
        MetaValue::String(s) => s.trim().parse().ok(),
        MetaValue::Double(d) if d.fract() == 0.0 && *d >= 0.0 && *d < 1.8e19 => Some(*d as u64),
        _ => None,
    };
    n.ok_or_else(|| XmlError::Mapping {
        index,
        why: format!("{} is not a non-negative integer", md.name),
    })
}

fn depot(md: &Metadata, index: usize) -> Result<DepotAddr, XmlError> {
    match &md.value {
        MetaValue::String(s) => DepotAddr::parse(s),
        _ => None,
    }
    .ok_or_else(|| XmlError::Mapping { index, why: "depot is not host:port".into() })
}

fn checksum(md: &Metadata, index: usize) -> Result<BlockChecksums, XmlError> {
    let bad = |why: &str| XmlError::Mapping { index, why: format!("e2e_checksum: {why}") };
    let MetaValue::Meta(list) = &md.value else {
        return Err(bad("not a meta entry"));
    };
    let algorithm = match metadata::find(list, "algorithm") {
        Some(MetaValue::String(s)) => ChecksumAlgorithm::from_word(s.trim()),
        _ => None,
    }
    .ok_or_else(|| bad("algorithm is not crc32 or md5"))?;
    let block_size = match metadata::find(list, "blocksize") {
        Some(MetaValue::Integer(n)) if *n > 0 => *n as u64,
        _ => return Err(bad("blocksize is not a positive integer")),
    };
    let digests: Vec<String> = match metadata::find(list, "digests") {
        Some(MetaValue::String(s)) => {
            let words = s.split_ascii_whitespace();
            if words.clone().count() > MAX_DIGESTS {
                return Err(bad("too many digests"));
            }
            words.map(str::to_ascii_lowercase).collect()
        }
        _ => return Err(bad("digests missing")),
    };
    let sums = BlockChecksums { algorithm, block_size, digests };
    if !sums.is_well_formed() {
        return Err(bad("digests are not hex of the algorithm's length"));
    }
    Ok(sums)
}

fn cap(el: &Element, index: usize, which: &str) -> Result<Option<Capability>, XmlError> {
    let text = el.text.trim();
    if text.is_empty() {
        return Ok(None);
    }
    // The parse error names the field that is wrong, never the text (a secret).
    Capability::parse(text)
        .map(Some)
        .map_err(|e| XmlError::Mapping { index, why: format!("{which} capability: {e}") })
}
