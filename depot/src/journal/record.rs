//! Journal records and their CRC framing.
//!
//! Design: a frame is `[len: u32 LE][crc32(payload): u32 LE][payload]`. Replay walks frames
//! until it meets a zero length (the preallocated, never-written tail), a length over the bound,
//! or a CRC mismatch (a torn write from a crash): everything from there on is cut. Payloads are
//! plain little-endian fields behind a one-byte tag, decoded with bounds checked on every read,
//! so a damaged journal gives an error, never a panic or a huge allocation.
//!
//! Generations: a shard's two journal files are reused in turn (each compaction writes the
//! snapshot into the other one), so a file holds, past its own frames, frames of an older
//! generation. The first frame (the header) names the file's generation and is checksummed
//! plainly; every later frame's CRC is seeded with the generation ([`frame_seed`]), so an older
//! generation's frame can never pass for a current one, even where a crash left one exactly at
//! a frame boundary. A generation's snapshot ends with [`Record::SnapshotEnd`]; a file whose
//! snapshot lacks it (a compaction cut short) is not used. Generation 0 is the format of
//! earlier versions (one file, plain CRCs, no end marker), still read.

use crate::allocation::{Alias, Allocation, Durability};
use crate::checksum::BlockCrcs;
use crate::digest::{DigestKind, DiskDigests};
use crate::extent::Extent;
use crate::keys::KeyDigest;

/// Largest record payload accepted on replay (a `Put` of a 16 M-block allocation fits).
pub const MAX_RECORD_BYTES: usize = 64 * 1024 * 1024;
/// Frame header: length and CRC.
pub const FRAME_HEADER_BYTES: usize = 8;
/// Identifies our journal files (first record of every file).
pub const JOURNAL_MAGIC: u64 = 0x4942_505f_4a52_4e31; // "IBP_JRN1"

/// One change to a shard's allocation table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    /// First record of a journal file: which shard layout wrote it, and the file's
    /// generation (0: a file of an earlier version, before generations).
    Header { magic: u64, shard: u16, shards: u16, generation: u64 },
    /// A whole allocation (creation, and every allocation in a compacted snapshot).
    Put(Box<Allocation>),
    /// Data arrived: the new size and the CRCs of the blocks written.
    Data { id: u64, size: u64, first_block: u64, crcs: Vec<u32> },
    /// Attributes changed (CHNG, TRUNCATE, INCR/DECR). `crc_len` cuts the CRC table (truncate).
    Meta {
        id: u64,
        max_size: u64,
        extent_len: u64,
        size: u64,
        expires_at: i64,
        durability: Durability,
        read_refs: u32,
        write_refs: u32,
        crc_len: u64,
    },
    /// The allocation is gone (deleted, expired or revoked); its aliases go with it.
    Delete { id: u64 },
    /// Disk digests of blocks `first_block ..` (concatenated), beside a `Data` record.
    Digests { id: u64, first_block: u64, sums: Vec<u8> },
    /// An alias, whole (creation and every change).
    AliasPut(Box<Alias>),
    /// The alias is gone.
    AliasDelete { id: u64 },
    /// RENAME: the allocation's keys were replaced (digests of the new ones).
    Rekey { id: u64, digests: [KeyDigest; 3] },
    /// Doublewrite: the full new contents of blocks about to be rewritten in place while they
    /// hold acknowledged bytes. Written (and synced for hard allocations) before the in-place
    /// write, so a write torn by a crash is completed from here on replay instead of leaving a
    /// block whose CRC matches neither its old nor its new contents.
    Image { id: u64, first_block: u64, data: Vec<u8> },
    /// Doublewrite for blocks that hold zeros (their CRC is the zero block's: holes below the
    /// size, never written): `blocks` blocks from `first_block` are about to be rewritten in
    /// place. Their old contents are known without copying them, so a write torn by a crash
    /// is undone on replay by zeroing them again. Saves writing the data twice when several
    /// streams fill one allocation's slices (the size jumps ahead of the holes).
    ZeroImage { id: u64, first_block: u64, blocks: u64 },
    /// An overwrite committed in one record: the new contents of blocks that lie wholly below
    /// the size (as `Image`) together with their CRCs (as `Data`; `size` is unchanged). It is
    /// made durable *before* the in-place write, which then needs no sync of its own: replay
    /// applies the CRCs and rewrites the bytes in place unless a later record settles the
    /// blocks. One journal write per small overwrite instead of image, data sync and commit.
    CommittedImage { id: u64, size: u64, first_block: u64, crcs: Vec<u32>, data: Vec<u8> },
    /// Closes a compaction's snapshot: the `records` frames since the header are the whole
    /// table. Replay uses a file of generation > 0 only once it has read this marker.
    SnapshotEnd { records: u64 },
}

/// The CRC seed of the frames after the header of a file of `generation`.
pub fn frame_seed(generation: u64) -> u32 {
    // Wraps after 2^32 compactions; consecutive generations always differ.
    generation as u32
}

const TAG_HEADER: u8 = 1;
const TAG_PUT: u8 = 2;
const TAG_DATA: u8 = 3;
const TAG_META: u8 = 4;
const TAG_DELETE: u8 = 5;
const TAG_DIGESTS: u8 = 6;
const TAG_ALIAS_PUT: u8 = 7;
const TAG_ALIAS_DELETE: u8 = 8;
const TAG_REKEY: u8 = 9;
const TAG_IMAGE: u8 = 10;
const TAG_ZERO_IMAGE: u8 = 11;
const TAG_COMMITTED_IMAGE: u8 = 12;
const TAG_HEADER_GENERATION: u8 = 13;
const TAG_SNAPSHOT_END: u8 = 14;

/// Why a payload did not decode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError(pub &'static str);

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "journal record: {}", self.0)
    }
}

impl std::error::Error for DecodeError {}

impl Record {
    /// Appends this record, framed with a plain CRC (headers, and files of generation 0), to
    /// `out`.
    pub fn encode_framed(&self, out: &mut Vec<u8>) {
        self.encode_framed_seeded(out, 0);
    }

    /// Appends this record, framed with a CRC seeded with `seed` ([`frame_seed`]), to `out`.
    pub fn encode_framed_seeded(&self, out: &mut Vec<u8>, seed: u32) {
        let start = out.len();
        out.extend_from_slice(&[0u8; FRAME_HEADER_BYTES]);
        self.encode_payload(out);
        let payload_len = out.len() - start - FRAME_HEADER_BYTES;
        let crc = seeded_crc(&out[start + FRAME_HEADER_BYTES..], seed);
        let len = u32::try_from(payload_len).expect("invariant: records are far below 4 GiB");
        out[start..start + 4].copy_from_slice(&len.to_le_bytes());
        out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
    }

    fn encode_payload(&self, out: &mut Vec<u8>) {
        match self {
            Record::Header { magic, shard, shards, generation } => {
                // Generation 0 keeps the earlier versions' encoding byte for byte.
                out.push(if *generation == 0 { TAG_HEADER } else { TAG_HEADER_GENERATION });
                put_u64(out, *magic);
                put_u16(out, *shard);
                put_u16(out, *shards);
                if *generation != 0 {
                    put_u64(out, *generation);
                }
            }
            Record::SnapshotEnd { records } => {
                out.push(TAG_SNAPSHOT_END);
                put_u64(out, *records);
            }
            Record::Put(a) => {
                out.push(TAG_PUT);
                put_u64(out, a.id);
                put_u16(out, a.resource);
                put_u64(out, a.extent.start);
                put_u64(out, a.extent.len);
                put_u64(out, a.max_size);
                put_u64(out, a.size);
                out.push(a.durability as u8);
                put_u64(out, a.expires_at as u64);
                put_u64(out, a.created_seq);
                put_u32(out, a.read_refs);
                put_u32(out, a.write_refs);
                for d in &a.digests {
                    out.extend_from_slice(d);
                }
                put_crcs(out, &a.crcs.crcs);
                // Optional tail (absent in journals written before disk digests existed).
                if let Some(d) = &a.disk_digests {
                    out.push(d.kind.code() as u8);
                    put_u64(out, d.block_bytes);
                    put_bytes(out, &d.sums);
                }
            }
            Record::Data { id, size, first_block, crcs } => {
                out.push(TAG_DATA);
                put_u64(out, *id);
                put_u64(out, *size);
                put_u64(out, *first_block);
                put_crcs(out, crcs);
            }
            Record::Meta {
                id,
                max_size,
                extent_len,
                size,
                expires_at,
                durability,
                read_refs,
                write_refs,
                crc_len,
            } => {
                out.push(TAG_META);
                put_u64(out, *id);
                put_u64(out, *max_size);
                put_u64(out, *extent_len);
                put_u64(out, *size);
                put_u64(out, *expires_at as u64);
                out.push(*durability as u8);
                put_u32(out, *read_refs);
                put_u32(out, *write_refs);
                put_u64(out, *crc_len);
            }
            Record::Delete { id } => {
                out.push(TAG_DELETE);
                put_u64(out, *id);
            }
            Record::Digests { id, first_block, sums } => {
                out.push(TAG_DIGESTS);
                put_u64(out, *id);
                put_u64(out, *first_block);
                put_bytes(out, sums);
            }
            Record::AliasPut(a) => {
                out.push(TAG_ALIAS_PUT);
                put_u64(out, a.id);
                put_u64(out, a.master);
                let (off, len) = a.window.unwrap_or((0, 0));
                out.push(u8::from(a.window.is_some()));
                put_u64(out, off);
                put_u64(out, len);
                out.push(u8::from(a.expires_at.is_some()));
                put_u64(out, a.expires_at.unwrap_or(0) as u64);
                put_u32(out, a.read_refs);
                put_u32(out, a.write_refs);
                for d in &a.digests {
                    out.extend_from_slice(d);
                }
            }
            Record::AliasDelete { id } => {
                out.push(TAG_ALIAS_DELETE);
                put_u64(out, *id);
            }
            Record::Rekey { id, digests } => {
                out.push(TAG_REKEY);
                put_u64(out, *id);
                for d in digests {
                    out.extend_from_slice(d);
                }
            }
            Record::Image { id, first_block, data } => {
                out.push(TAG_IMAGE);
                put_u64(out, *id);
                put_u64(out, *first_block);
                put_u64(out, data.len() as u64);
                out.extend_from_slice(data);
            }
            Record::ZeroImage { id, first_block, blocks } => {
                out.push(TAG_ZERO_IMAGE);
                put_u64(out, *id);
                put_u64(out, *first_block);
                put_u64(out, *blocks);
            }
            Record::CommittedImage { id, size, first_block, crcs, data } => {
                out.push(TAG_COMMITTED_IMAGE);
                put_u64(out, *id);
                put_u64(out, *size);
                put_u64(out, *first_block);
                put_crcs(out, crcs);
                put_u64(out, data.len() as u64);
                out.extend_from_slice(data);
            }
        }
    }

    /// Decodes one payload (without its frame).
    pub fn decode_payload(p: &[u8]) -> Result<Record, DecodeError> {
        let mut r = Reader { buf: p };
        let rec = match r.u8()? {
            TAG_HEADER => {
                Record::Header { magic: r.u64()?, shard: r.u16()?, shards: r.u16()?, generation: 0 }
            }
            TAG_HEADER_GENERATION => {
                let (magic, shard, shards) = (r.u64()?, r.u16()?, r.u16()?);
                match r.u64()? {
                    0 => return Err(DecodeError("generation 0 in a generation header")),
                    generation => Record::Header { magic, shard, shards, generation },
                }
            }
            TAG_SNAPSHOT_END => Record::SnapshotEnd { records: r.u64()? },
            TAG_PUT => {
                let id = r.u64()?;
                let resource = r.u16()?;
                let extent = Extent { start: r.u64()?, len: r.u64()? };
                let max_size = r.u64()?;
                let size = r.u64()?;
                let durability = r.durability()?;
                let expires_at = r.u64()? as i64;
                let created_seq = r.u64()?;
                let read_refs = r.u32()?;
                let write_refs = r.u32()?;
                let keys = r.key_digests()?;
                let crcs = BlockCrcs { crcs: r.crcs()? };
                let digests = if r.buf.is_empty() {
                    None
                } else {
                    let kind = DigestKind::from_wire(i32::from(r.u8()?))
                        .ok()
                        .flatten()
                        .ok_or(DecodeError("bad digest kind"))?;
                    let block_bytes = r.u64()?;
                    let sums = r.blob()?;
                    Some(DiskDigests { kind, block_bytes, sums })
                };
                Record::Put(Box::new(Allocation {
                    id,
                    resource,
                    extent,
                    max_size,
                    size,
                    durability,
                    expires_at,
                    created_seq,
                    read_refs,
                    write_refs,
                    digests: keys,
                    crcs,
                    disk_digests: digests,
                }))
            }
            TAG_DATA => Record::Data {
                id: r.u64()?,
                size: r.u64()?,
                first_block: r.u64()?,
                crcs: r.crcs()?,
            },
            TAG_META => Record::Meta {
                id: r.u64()?,
                max_size: r.u64()?,
                extent_len: r.u64()?,
                size: r.u64()?,
                expires_at: r.u64()? as i64,
                durability: r.durability()?,
                read_refs: r.u32()?,
                write_refs: r.u32()?,
                crc_len: r.u64()?,
            },
            TAG_DELETE => Record::Delete { id: r.u64()? },
            TAG_DIGESTS => Record::Digests { id: r.u64()?, first_block: r.u64()?, sums: r.blob()? },
            TAG_ALIAS_PUT => {
                let id = r.u64()?;
                let master = r.u64()?;
                let has_window = r.u8()? != 0;
                let window = (r.u64()?, r.u64()?);
                let has_expiry = r.u8()? != 0;
                let expires_at = r.u64()? as i64;
                Record::AliasPut(Box::new(Alias {
                    id,
                    master,
                    window: has_window.then_some(window),
                    expires_at: has_expiry.then_some(expires_at),
                    read_refs: r.u32()?,
                    write_refs: r.u32()?,
                    digests: r.key_digests()?,
                }))
            }
            TAG_ALIAS_DELETE => Record::AliasDelete { id: r.u64()? },
            TAG_REKEY => Record::Rekey { id: r.u64()?, digests: r.key_digests()? },
            TAG_IMAGE => {
                let id = r.u64()?;
                let first_block = r.u64()?;
                let n = r.u64()?;
                // Bounded by the bytes present, so a damaged length cannot allocate.
                if n > r.buf.len() as u64 {
                    return Err(DecodeError("image length past the end of the record"));
                }
                Record::Image { id, first_block, data: r.bytes(n as usize)?.to_vec() }
            }
            TAG_ZERO_IMAGE => {
                Record::ZeroImage { id: r.u64()?, first_block: r.u64()?, blocks: r.u64()? }
            }
            TAG_COMMITTED_IMAGE => {
                let (id, size, first_block, crcs) = (r.u64()?, r.u64()?, r.u64()?, r.crcs()?);
                let n = r.u64()?;
                if n > r.buf.len() as u64 {
                    return Err(DecodeError("image length past the end of the record"));
                }
                Record::CommittedImage {
                    id,
                    size,
                    first_block,
                    crcs,
                    data: r.bytes(n as usize)?.to_vec(),
                }
            }
            _ => return Err(DecodeError("unknown record tag")),
        };
        if !r.buf.is_empty() {
            return Err(DecodeError("trailing bytes in record"));
        }
        Ok(rec)
    }
}

/// Outcome of scanning a journal image.
#[derive(Debug)]
pub struct Scan {
    /// The header and the records after it (a snapshot's end marker is not among them).
    pub records: Vec<Record>,
    /// Bytes of valid frames; appends continue here.
    pub valid_bytes: usize,
    /// Why the scan stopped before the end of the image, if it met damage (not clean zeros).
    pub torn: Option<&'static str>,
    /// The file's generation (its header's; 0 for files of earlier versions and empty ones).
    pub generation: u64,
    /// Whether the file may be replayed: its snapshot's end marker was read (always true in
    /// generation 0, which has none).
    pub complete: bool,
}

fn seeded_crc(payload: &[u8], seed: u32) -> u32 {
    let mut h = crc32fast::Hasher::new_with_initial(seed);
    h.update(payload);
    h.finalize()
}

/// Walks the frames of a journal image, stopping at the first zero length or damaged frame.
/// The header's frame has a plain CRC; the frames after it are checked with the seed of the
/// header's generation.
pub fn scan(image: &[u8]) -> Scan {
    let mut records = Vec::new();
    let mut pos = 0usize;
    let (mut generation, mut seed, mut complete) = (0, 0, true);
    let torn = loop {
        if image.len() - pos < FRAME_HEADER_BYTES {
            break None;
        }
        let len = u32::from_le_bytes(image[pos..pos + 4].try_into().expect("4 bytes")) as usize;
        let crc = u32::from_le_bytes(image[pos + 4..pos + 8].try_into().expect("4 bytes"));
        if len == 0 && crc == 0 {
            break None;
        }
        if len > MAX_RECORD_BYTES || image.len() - pos - FRAME_HEADER_BYTES < len {
            break Some("record length past the end of the journal");
        }
        let payload = &image[pos + FRAME_HEADER_BYTES..pos + FRAME_HEADER_BYTES + len];
        if seeded_crc(payload, if pos == 0 { 0 } else { seed }) != crc {
            break Some("record CRC mismatch");
        }
        let rec = match Record::decode_payload(payload) {
            Ok(r) => r,
            Err(e) => break Some(e.0),
        };
        if let (0, Record::Header { generation: g, .. }) = (pos, &rec) {
            if *g != 0 {
                (generation, seed, complete) = (*g, frame_seed(*g), false);
            }
        }
        match rec {
            // Counted from the header, which is not part of the snapshot.
            Record::SnapshotEnd { records: n } if !complete && n + 1 == records.len() as u64 => {
                complete = true;
            }
            Record::SnapshotEnd { .. } => break Some("misplaced snapshot end"),
            rec => records.push(rec),
        }
        pos += FRAME_HEADER_BYTES + len;
    };
    Scan { records, valid_bytes: pos, torn, generation, complete }
}

fn put_u16(out: &mut Vec<u8>, v: u16) {
    out.extend_from_slice(&v.to_le_bytes());
}
fn put_u32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_le_bytes());
}
fn put_u64(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(&v.to_le_bytes());
}
fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    put_u64(out, b.len() as u64);
    out.extend_from_slice(b);
}
fn put_crcs(out: &mut Vec<u8>, crcs: &[u32]) {
    put_u64(out, crcs.len() as u64);
    for c in crcs {
        put_u32(out, *c);
    }
}

/// Bounds-checked little-endian reader.
struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    fn bytes(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if self.buf.len() < n {
            return Err(DecodeError("record truncated"));
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(head)
    }
    fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.bytes(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, DecodeError> {
        Ok(u16::from_le_bytes(self.bytes(2)?.try_into().expect("2 bytes")))
    }
    fn u32(&mut self) -> Result<u32, DecodeError> {
        Ok(u32::from_le_bytes(self.bytes(4)?.try_into().expect("4 bytes")))
    }
    fn u64(&mut self) -> Result<u64, DecodeError> {
        Ok(u64::from_le_bytes(self.bytes(8)?.try_into().expect("8 bytes")))
    }
    fn durability(&mut self) -> Result<Durability, DecodeError> {
        Durability::from_wire(i64::from(self.u8()?)).ok_or(DecodeError("bad durability"))
    }
    fn blob(&mut self) -> Result<Vec<u8>, DecodeError> {
        let n = self.u64()?;
        // Bound the length by the bytes actually present before allocating.
        if n > self.buf.len() as u64 {
            return Err(DecodeError("byte string past the end of the record"));
        }
        Ok(self.bytes(n as usize)?.to_vec())
    }
    fn key_digests(&mut self) -> Result<[KeyDigest; 3], DecodeError> {
        let mut digests = [[0u8; 32]; 3];
        for d in &mut digests {
            d.copy_from_slice(self.bytes(32)?);
        }
        Ok(digests)
    }
    fn crcs(&mut self) -> Result<Vec<u32>, DecodeError> {
        let n = self.u64()?;
        // Bound the count by the bytes actually present before allocating.
        if n > (self.buf.len() / 4) as u64 {
            return Err(DecodeError("CRC count past the end of the record"));
        }
        (0..n).map(|_| self.u32()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample_alloc(id: u64, crcs: Vec<u32>) -> Allocation {
        Allocation {
            id,
            resource: 1,
            extent: Extent { start: 10, len: 3 },
            max_size: 12000,
            size: 5000,
            durability: Durability::Hard,
            expires_at: 1_900_000_000,
            created_seq: 77,
            read_refs: 1,
            write_refs: 0,
            digests: [[1; 32], [2; 32], [3; 32]],
            crcs: BlockCrcs { crcs },
            disk_digests: None,
        }
    }

    fn sample_alias(id: u64, window: Option<(u64, u64)>, expires_at: Option<i64>) -> Alias {
        Alias {
            id,
            master: id / 2,
            window,
            expires_at,
            read_refs: 1,
            write_refs: 0,
            digests: [[4; 32], [5; 32], [6; 32]],
        }
    }

    fn records() -> impl Strategy<Value = Record> {
        prop_oneof![
            (any::<u64>(), any::<u16>(), any::<u16>()).prop_map(|(magic, shard, shards)| {
                Record::Header { magic, shard, shards, generation: 0 }
            }),
            (any::<u64>(), proptest::collection::vec(any::<u32>(), 0..50))
                .prop_map(|(id, c)| Record::Put(Box::new(sample_alloc(id, c)))),
            (
                any::<u64>(),
                any::<u64>(),
                any::<u64>(),
                proptest::collection::vec(any::<u32>(), 0..50)
            )
                .prop_map(|(id, size, first_block, crcs)| Record::Data {
                    id,
                    size,
                    first_block,
                    crcs
                }),
            (any::<u64>(), any::<u64>(), any::<i64>(), any::<u32>()).prop_map(|(id, s, e, r)| {
                Record::Meta {
                    id,
                    max_size: s,
                    extent_len: s / 7,
                    size: s / 2,
                    expires_at: e,
                    durability: Durability::Soft,
                    read_refs: r,
                    write_refs: r / 3,
                    crc_len: s % 100,
                }
            }),
            any::<u64>().prop_map(|id| Record::Delete { id }),
            (any::<u64>(), proptest::collection::vec(any::<u8>(), 0..64), 0usize..4).prop_map(
                |(id, sums, k)| {
                    let kinds =
                        [DigestKind::Md5, DigestKind::Sha1, DigestKind::Sha256, DigestKind::Sha512];
                    let mut a = sample_alloc(id, vec![1, 2]);
                    a.disk_digests =
                        Some(DiskDigests { kind: kinds[k], block_bytes: 8192, sums: sums.clone() });
                    Record::Put(Box::new(a))
                }
            ),
            (any::<u64>(), any::<u64>(), proptest::collection::vec(any::<u8>(), 0..64))
                .prop_map(|(id, first_block, sums)| Record::Digests { id, first_block, sums }),
            (
                any::<u64>(),
                proptest::option::of((any::<u64>(), any::<u64>())),
                proptest::option::of(any::<i64>())
            )
                .prop_map(|(id, w, e)| Record::AliasPut(Box::new(sample_alias(id, w, e)))),
            any::<u64>().prop_map(|id| Record::AliasDelete { id }),
            (any::<u64>(), any::<u8>())
                .prop_map(|(id, b)| Record::Rekey { id, digests: [[b; 32], [1; 32], [b ^ 1; 32]] }),
            (any::<u64>(), any::<u64>(), proptest::collection::vec(any::<u8>(), 0..300))
                .prop_map(|(id, first_block, data)| Record::Image { id, first_block, data }),
            (any::<u64>(), any::<u64>(), any::<u64>()).prop_map(|(id, first_block, blocks)| {
                Record::ZeroImage { id, first_block, blocks }
            }),
            (
                any::<u64>(),
                any::<u64>(),
                proptest::collection::vec(any::<u32>(), 0..8),
                proptest::collection::vec(any::<u8>(), 0..300)
            )
                .prop_map(|(id, size, crcs, data)| Record::CommittedImage {
                    id,
                    size,
                    first_block: size / 3,
                    crcs,
                    data
                }),
        ]
    }

    proptest! {
        #[test]
        fn frames_round_trip(recs in proptest::collection::vec(records(), 0..20)) {
            let mut img = Vec::new();
            for r in &recs { r.encode_framed(&mut img); }
            let valid = img.len();
            img.extend_from_slice(&[0u8; 4096]);
            let s = scan(&img);
            prop_assert_eq!(s.records, recs);
            prop_assert_eq!(s.valid_bytes, valid);
            prop_assert!(s.torn.is_none());
        }

        /// Any cut or flipped byte in the last frame drops exactly that frame, never earlier ones.
        #[test]
        fn torn_tail_is_cut(cut in 1usize..200, flip in any::<bool>()) {
            let mut img = Vec::new();
            Record::Delete { id: 1 }.encode_framed(&mut img);
            let first = img.len();
            Record::Put(Box::new(sample_alloc(2, vec![9; 40]))).encode_framed(&mut img);
            let cut = cut.min(img.len() - first - 1);
            if flip { img[first + cut] ^= 0x5a; } else { img.truncate(first + cut); }
            let s = scan(&img);
            prop_assert_eq!(s.records, vec![Record::Delete { id: 1 }]);
            prop_assert_eq!(s.valid_bytes, first);
        }
    }

    fn header(generation: u64) -> Record {
        Record::Header { magic: JOURNAL_MAGIC, shard: 1, shards: 2, generation }
    }

    #[test]
    fn generation_zero_header_keeps_the_earlier_encoding() {
        let mut img = Vec::new();
        header(0).encode_framed(&mut img);
        let mut payload = vec![TAG_HEADER];
        payload.extend_from_slice(&JOURNAL_MAGIC.to_le_bytes());
        payload.extend_from_slice(&[1, 0, 2, 0]);
        assert_eq!(&img[FRAME_HEADER_BYTES..], &payload[..]);
        assert_eq!(&img[4..8], &crc32fast::hash(&payload).to_le_bytes());
        let s = scan(&img);
        assert_eq!((s.generation, s.complete, s.records), (0, true, vec![header(0)]));
    }

    /// A reused file: this generation's snapshot and appends, then (where a crash left no zeros
    /// between them) frames an older generation wrote. Those are never replayed.
    #[test]
    fn frames_of_another_generation_end_the_scan() {
        let mut img = Vec::new();
        header(7).encode_framed(&mut img);
        Record::Delete { id: 1 }.encode_framed_seeded(&mut img, frame_seed(7));
        Record::SnapshotEnd { records: 1 }.encode_framed_seeded(&mut img, frame_seed(7));
        Record::Delete { id: 2 }.encode_framed_seeded(&mut img, frame_seed(7));
        let valid = img.len();
        for stale in [5, 6, 8, 0] {
            let mut reused = img.clone();
            Record::Delete { id: 3 }.encode_framed_seeded(&mut reused, frame_seed(stale));
            let s = scan(&reused);
            let want = vec![header(7), Record::Delete { id: 1 }, Record::Delete { id: 2 }];
            assert_eq!(s.records, want, "generation {stale}");
            assert_eq!((s.valid_bytes, s.generation, s.complete), (valid, 7, true));
            assert_eq!(s.torn, Some("record CRC mismatch"));
        }
        // The same frame in this generation is read.
        Record::Delete { id: 3 }.encode_framed_seeded(&mut img, frame_seed(7));
        assert_eq!(scan(&img).records.len(), 4);
    }

    #[test]
    fn a_snapshot_without_its_end_marker_is_incomplete() {
        let mut img = Vec::new();
        header(3).encode_framed(&mut img);
        Record::Delete { id: 1 }.encode_framed_seeded(&mut img, frame_seed(3));
        let s = scan(&img);
        assert!(!s.complete && s.torn.is_none());
        // A marker that counts other records than the snapshot has is damage, not an end.
        let mut wrong = img.clone();
        Record::SnapshotEnd { records: 2 }.encode_framed_seeded(&mut wrong, frame_seed(3));
        let s = scan(&wrong);
        assert_eq!(
            (s.complete, s.torn, s.valid_bytes),
            (false, Some("misplaced snapshot end"), img.len())
        );
        Record::SnapshotEnd { records: 1 }.encode_framed_seeded(&mut img, frame_seed(3));
        assert!(scan(&img).complete);
    }

    #[test]
    fn hostile_lengths_do_not_allocate() {
        let mut p = vec![TAG_DATA];
        p.extend_from_slice(&[0u8; 24]);
        p.extend_from_slice(&u64::MAX.to_le_bytes());
        assert!(Record::decode_payload(&p).is_err());
        let mut img = vec![0xff, 0xff, 0xff, 0xff, 1, 2, 3, 4];
        img.extend_from_slice(&[7u8; 100]);
        assert!(scan(&img).torn.is_some());
    }
}
