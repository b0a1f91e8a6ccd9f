//! [`ExNode`] and [`Mapping`]: the paper's exNode management and segment management calls
//! (`xndCreateExNode`/`xndFreeExNode`, `xndCreateSegment`/`xndAppendSegment`/
//! `xndDeleteSegment`). Creating is [`ExNode::new`]; freeing is dropping it (the allocations
//! themselves are freed on the depots by the `trim --free` tool, not by dropping a value).

use super::checksum::BlockChecksums;
use super::metadata::{self, Function, MetaValue, Metadata};
use crate::proto::Capability;
use serde::{Deserialize, Serialize};
use std::fmt;

/// A depot as the exNode names it: `host:port`. For the `depot` we allocated at this is the
/// address the user gave; otherwise the authority of a capability (a shard's own port on our
/// depot, the depot's port elsewhere).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct DepotAddr {
    /// Host name or address.
    pub host: String,
    /// TCP port.
    pub port: u16,
}

impl DepotAddr {
    /// Parses `host:port` (IPv6 as `[addr]:port`).
    pub fn parse(text: &str) -> Option<DepotAddr> {
        let (host, port) = text.trim().rsplit_once(':')?;
        let host = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
        if !crate::proto::capability::is_valid_host(host) {
            return None;
        }
        let port: u16 = port.parse().ok().filter(|p| *p != 0)?;
        Some(DepotAddr { host: host.to_owned(), port })
    }
}

impl fmt::Display for DepotAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// One logical range mapped onto (part of) one IBP allocation.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct Mapping {
    /// Where the range starts in the logical file (`exnode_offset`).
    pub logical_offset: u64,
    /// How many logical bytes it covers (`logical_length`).
    pub logical_length: u64,
    /// Where those bytes start inside the allocation (`alloc_offset`).
    pub alloc_offset: u64,
    /// Size of the allocation (`alloc_length`); larger than the logical length when e2e
    /// functions add headers, equal for our uploads.
    pub alloc_length: u64,
    /// Block size of the end-to-end functions (`e2e_blocksize`); 0 when there are none.
    pub e2e_blocksize: u64,
    /// Read capability: loads and (LoRS) probes. A secret: redacted in `Debug`.
    #[serde(with = "cap_url")]
    pub read: Option<Capability>,
    /// Write capability: needed to repair a replica in place.
    #[serde(with = "cap_url")]
    pub write: Option<Capability>,
    /// Manage capability: refresh (CHNG) and free (DECR).
    #[serde(with = "cap_url")]
    pub manage: Option<Capability>,
    /// Lease end as Unix seconds, when known (ours: `expires` metadata).
    pub expires_s: Option<u64>,
    /// The depot address the allocation was requested from (`depot` metadata), when known.
    pub depot: Option<DepotAddr>,
    /// Our out-of-band end-to-end digests (`e2e_checksum` metadata).
    pub checksum: Option<BlockChecksums>,
    /// LoRS e2e function chain, kept verbatim (outermost first).
    pub functions: Vec<Function>,
    /// Mapping metadata we do not interpret (DLT `start`/`end`…), kept for round trips.
    pub extra: Vec<Metadata>,
}

impl fmt::Debug for Mapping {
    /// Capabilities appear only in their redacted form.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Mapping")
            .field("logical", &(self.logical_offset..self.logical_end()))
            .field("alloc_offset", &self.alloc_offset)
            .field("alloc_length", &self.alloc_length)
            .field("depot", &self.depot_addr().map(|d| d.to_string()))
            .field("read", &self.read)
            .field("write", &self.write)
            .field("manage", &self.manage)
            .field("expires_s", &self.expires_s)
            .finish_non_exhaustive()
    }
}

impl Mapping {
    /// A mapping of `logical_offset..+length` to the start of a fresh allocation of that size.
    pub fn new(logical_offset: u64, length: u64) -> Mapping {
        Mapping {
            logical_offset,
            logical_length: length,
            alloc_offset: 0,
            alloc_length: length,
            e2e_blocksize: 0,
            read: None,
            write: None,
            manage: None,
            expires_s: None,
            depot: None,
            checksum: None,
            functions: Vec::new(),
            extra: Vec::new(),
        }
    }

    /// One past the last logical byte (saturating: a hostile file cannot overflow it).
    pub fn logical_end(&self) -> u64 {
        self.logical_offset.saturating_add(self.logical_length)
    }

    /// The depot holding the allocation: the recorded one, else the read, manage or write
    /// capability's authority.
    pub fn depot_addr(&self) -> Option<DepotAddr> {
        self.depot.clone().or_else(|| self.cap_depot())
    }

    /// The authority of the first capability present (where requests actually go).
    pub fn cap_depot(&self) -> Option<DepotAddr> {
        [&self.read, &self.manage, &self.write]
            .into_iter()
            .flatten()
            .next()
            .map(|c| DepotAddr { host: c.host.clone(), port: c.port })
    }

    /// True when the mapping sits on `depot`, by recorded address or capability authority.
    pub fn is_on(&self, depot: &DepotAddr) -> bool {
        self.depot.as_ref() == Some(depot) || self.cap_depot().as_ref() == Some(depot)
    }

    /// True while the lease has not ended at `now_s` (unknown lease ends count as live).
    pub fn lease_live(&self, now_s: u64) -> bool {
        self.expires_s.is_none_or(|end| end > now_s)
    }
}

/// Index of a mapping inside its exNode; stable until a mapping before it is deleted.
pub type MappingId = usize;

/// A logical file: exNode-level metadata plus its mappings (replicas are just more mappings
/// over the same range).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ExNode {
    /// Exnode-level metadata in file order (`filename`, `lorsversion`, LoDN `Type`…).
    pub metadata: Vec<Metadata>,
    /// Mappings in file order.
    pub mappings: Vec<Mapping>,
}

impl ExNode {
    /// `xndCreateExNode`: an empty exNode.
    pub fn new() -> ExNode {
        ExNode::default()
    }

    /// An empty exNode for `filename` of `size` bytes, stamped as LoRS would stamp it.
    pub fn for_file(filename: &str, size: u64) -> ExNode {
        let mut x = ExNode::new();
        x.set_meta(Metadata::string("filename", filename));
        x.set_meta(Metadata::double("lorsversion", 0.82));
        x.set_size(size);
        x
    }

    /// `xndAppendSegment`: adds a mapping and returns its id.
    pub fn append(&mut self, mapping: Mapping) -> MappingId {
        self.mappings.push(mapping);
        self.mappings.len() - 1
    }

    /// `xndDeleteSegment`: removes a mapping; later ids shift down by one.
    pub fn delete(&mut self, id: MappingId) -> Option<Mapping> {
        (id < self.mappings.len()).then(|| self.mappings.remove(id))
    }

    /// Removes every mapping for which `drop` says true; returns them.
    pub fn delete_where(&mut self, mut drop: impl FnMut(&Mapping) -> bool) -> Vec<Mapping> {
        let (gone, kept) = std::mem::take(&mut self.mappings).into_iter().partition(|m| drop(m));
        self.mappings = kept;
        gone
    }

    /// The mapping with this id.
    pub fn get(&self, id: MappingId) -> Option<&Mapping> {
        self.mappings.get(id)
    }

    /// Enumerates mappings with their ids (`xndEnumNext`).
    pub fn iter(&self) -> impl Iterator<Item = (MappingId, &Mapping)> {
        self.mappings.iter().enumerate()
    }

    /// Sets (replacing by name) an exNode-level metadata entry.
    pub fn set_meta(&mut self, entry: Metadata) {
        match self.metadata.iter_mut().find(|m| m.name == entry.name) {
            Some(slot) => *slot = entry,
            None => self.metadata.push(entry),
        }
    }

    /// The first exNode-level entry called `name`.
    pub fn meta(&self, name: &str) -> Option<&MetaValue> {
        metadata::find(&self.metadata, name)
    }

    /// The `filename` metadata.
    pub fn filename(&self) -> Option<&str> {
        match self.meta("filename") {
            Some(MetaValue::String(s)) => Some(s),
            _ => None,
        }
    }

    /// Records the logical size (`size` metadata, as uef has it), so a lost last block shows
    /// as a gap instead of a shorter file.
    pub fn set_size(&mut self, size: u64) {
        self.set_meta(Metadata::integer("size", i64::try_from(size).unwrap_or(i64::MAX)));
    }

    /// The logical size: the `size` metadata if present, else the end of the last mapping.
    pub fn size(&self) -> u64 {
        match self.meta("size") {
            Some(MetaValue::Integer(n)) if *n >= 0 => (*n as u64).max(self.mapped_end()),
            _ => self.mapped_end(),
        }
    }

    /// One past the last byte any mapping covers.
    pub fn mapped_end(&self) -> u64 {
        self.mappings.iter().map(Mapping::logical_end).max().unwrap_or(0)
    }
}

/// Serde for optional capabilities as URL strings (the JSON form mirrors the XML).
mod cap_url {
    use crate::proto::Capability;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(cap: &Option<Capability>, s: S) -> Result<S::Ok, S::Error> {
        match cap {
            Some(c) => s.serialize_some(&c.to_url()),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Capability>, D::Error> {
        let text: Option<String> = Option::deserialize(d)?;
        text.map(|t| Capability::parse(&t).map_err(serde::de::Error::custom)).transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn append_delete_enumerate() {
        let mut x = ExNode::for_file("f", 300);
        let a = x.append(Mapping::new(0, 100));
        let b = x.append(Mapping::new(100, 200));
        assert_eq!((a, b), (0, 1));
        assert_eq!(x.iter().count(), 2);
        assert_eq!(x.delete(0).map(|m| m.logical_offset), Some(0));
        assert_eq!(x.get(0).map(|m| m.logical_offset), Some(100));
        assert!(x.delete(5).is_none());
        assert_eq!(x.size(), 300);
        assert_eq!(x.filename(), Some("f"));
    }

    #[test]
    fn depot_addr_parse() {
        assert_eq!(
            DepotAddr::parse("127.0.0.1:6714"),
            Some(DepotAddr { host: "127.0.0.1".into(), port: 6714 })
        );
        assert_eq!(DepotAddr::parse("[::1]:1").map(|d| d.to_string()), Some("[::1]:1".into()));
        assert_eq!(DepotAddr::parse("nohost"), None);
        assert_eq!(DepotAddr::parse("h:0"), None);
    }
}
