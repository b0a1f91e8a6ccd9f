//! A shard's allocation table: allocations by id, by key digest, by expiry and by age, plus the
//! shard's regions of every resource and the admission policy over them.
//!
//! Design: pure state, no I/O and no clock: every method that needs the time takes `now`
//! (unix seconds), and every method that gives space back takes a `zero` callback the shard
//! uses to zero the extent on disk before it can be handed out again. Each mutation returns
//! the journal records that describe it, so the shard appends exactly what changed.

use std::collections::{BTreeSet, HashMap};

use crate::allocation::{Alias, Allocation, Durability};
use crate::checksum::BlockCrcs;
use crate::digest::{DigestKind, DiskDigests};
use crate::extent::{blocks_for, Extent, ExtentAllocator, BLOCK_BYTES};
use crate::journal::record::Record;
use crate::keys::{ct_eq, index_of, new_key, DepotSecret, KeyDigest, KeyKind};

/// Limits of one resource, as configured.
#[derive(Debug, Clone)]
pub struct ResourcePolicy {
    /// Longest lease granted; duration −1 asks for exactly this.
    pub max_duration_s: i64,
    /// Largest single allocation.
    pub max_alloc_bytes: u64,
    /// Admission: size × duration must not exceed factor × free bytes × max duration.
    pub admission_factor: f64,
    /// Checksum block size for allocations on this resource.
    pub checksum_block_bytes: u64,
}

/// This shard's slice of one resource.
#[derive(Debug, Clone)]
pub struct Region {
    pub policy: ResourcePolicy,
    pub extents: ExtentAllocator,
    /// Bytes reserved (extent bytes) by hard and by soft allocations, for STATUS and admission.
    pub hard_bytes: u64,
    pub soft_bytes: u64,
    /// Live allocations on this region (kept here so STATUS never walks the table).
    pub allocations: u64,
}

impl Region {
    pub fn new(policy: ResourcePolicy, capacity_bytes: u64) -> Region {
        Region {
            policy,
            extents: ExtentAllocator::new(capacity_bytes / BLOCK_BYTES),
            hard_bytes: 0,
            soft_bytes: 0,
            allocations: 0,
        }
    }

    pub fn capacity_bytes(&self) -> u64 {
        self.extents.total_blocks() * BLOCK_BYTES
    }

    pub fn free_bytes(&self) -> u64 {
        self.extents.free_blocks() * BLOCK_BYTES
    }

    fn account(&mut self, d: Durability, bytes: u64, add: bool) {
        let slot = match d {
            Durability::Hard => &mut self.hard_bytes,
            Durability::Soft => &mut self.soft_bytes,
        };
        if add {
            *slot += bytes;
            self.allocations += 1;
        } else {
            *slot -= bytes;
            self.allocations -= 1;
        }
    }
}

/// What ALLOCATE asks for, already validated for syntax.
#[derive(Debug, Clone, Copy)]
pub struct AllocRequest {
    pub resource: u16,
    pub durability: Durability,
    /// Relative seconds; −1 means the resource maximum.
    pub duration_s: i64,
    pub size: u64,
    /// ALLOCATE_CHKSUM: disk digest kind and block size (already validated).
    pub digest: Option<(DigestKind, u64)>,
}

/// Why an allocation or change was refused; each maps to one IBP error code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AllocError {
    /// Size 0 or a duration of 0 / below −1 (IBP_E_INVALID_PARAMETER, −30).
    InvalidParameter,
    /// Longer than the resource allows (IBP_E_LONG_DURATION, −28).
    LongDuration,
    /// Larger than one allocation may be, or over the admission curve (IBP_E_WOULD_EXCEED_POLICY, −45).
    Policy,
    /// Not enough space even after revoking soft allocations (IBP_E_RSRC_UNAVAIL, −23).
    NoSpace,
    /// CHNG below the current size, or to 0 (IBP_E_WOULD_DAMAGE_DATA, −20).
    WouldDamageData,
    /// No such resource (IBP_E_INVALID_RID, −50).
    InvalidRid,
}

/// A granted allocation: its id, its three keys (read, write, manage) and what it cost.
#[derive(Debug)]
pub struct Granted {
    pub id: u64,
    pub keys: [String; 3],
    pub records: Vec<Record>,
    /// Soft allocations revoked to make room (their ids), for the log.
    pub revoked: Vec<u64>,
}

/// Why a lookup failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lookup {
    /// Unknown key, or the lease has ended (IBP_E_CAP_NOT_FOUND, −4).
    NotFound,
}

/// The table.
#[derive(Debug)]
pub struct Table {
    pub shard: u16,
    pub regions: Vec<Region>,
    allocs: HashMap<u64, Allocation>,
    /// First half of a key digest → allocation id; confirmed by a constant-time compare.
    index: HashMap<[u8; 16], u64>,
    /// (expires_at, id): the expiry wheel, reaped in order.
    expiry: BTreeSet<(i64, u64)>,
    /// (resource, created_seq, id) of soft allocations: revoked oldest first.
    soft: BTreeSet<(u16, u64, u64)>,
    /// Aliases by id (ALIAS_ALLOCATE); they die with their master.
    aliases: HashMap<u64, Alias>,
    /// First half of an alias key digest → alias id.
    alias_index: HashMap<[u8; 16], u64>,
    /// Master id → its aliases, so a master's end finds them without a scan, and the number
    /// per master is bounded (`ext::MAX_ALIASES_PER_ALLOCATION`).
    aliases_of: HashMap<u64, BTreeSet<u64>>,
    next_id: u64,
    next_seq: u64,
    /// Allocations a transfer is using right now; soft revocation skips them. Brought up to
    /// date by the shard before every hard allocation that no free run holds (the only ones
    /// that may revoke).
    pub pinned: std::collections::HashSet<u64>,
}

impl Table {
    pub fn new(shard: u16, regions: Vec<Region>) -> Table {
        Table {
            shard,
            regions,
            allocs: HashMap::new(),
            index: HashMap::new(),
            expiry: BTreeSet::new(),
            soft: BTreeSet::new(),
            aliases: HashMap::new(),
            alias_index: HashMap::new(),
            aliases_of: HashMap::new(),
            next_id: 1,
            next_seq: 1,
            pinned: std::collections::HashSet::new(),
        }
    }

    pub fn len(&self) -> usize {
        self.allocs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.allocs.is_empty()
    }

    pub fn get(&self, id: u64) -> Option<&Allocation> {
        self.allocs.get(&id)
    }

    pub fn get_mut(&mut self, id: u64) -> Option<&mut Allocation> {
        self.allocs.get_mut(&id)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Allocation> {
        self.allocs.values()
    }

    /// Finds the live allocation that `key` grants `kind` on.
    pub fn find(
        &self,
        secret: &DepotSecret,
        kind: KeyKind,
        key: &str,
        now: i64,
    ) -> Result<&Allocation, Lookup> {
        let digest = secret.digest(kind, key);
        let id = self.index.get(&index_of(&digest)).ok_or(Lookup::NotFound)?;
        let a = self.allocs.get(id).ok_or(Lookup::NotFound)?;
        if !ct_eq(&a.digests[kind as usize], &digest) || a.is_expired(now) {
            return Err(Lookup::NotFound);
        }
        Ok(a)
    }

    /// Like `find`, but accepts any of the three keys (PROBE through any capability, as LoRS
    /// tools need). Returns which kind matched.
    pub fn find_any(
        &self,
        secret: &DepotSecret,
        key: &str,
        now: i64,
    ) -> Result<(&Allocation, KeyKind), Lookup> {
        for kind in [KeyKind::Manage, KeyKind::Read, KeyKind::Write] {
            if let Ok(a) = self.find(secret, kind, key, now) {
                return Ok((a, kind));
            }
        }
        Err(Lookup::NotFound)
    }

    /// Resolves −1 to the maximum and checks a requested lease length.
    pub fn resolve_duration(&self, resource: u16, duration_s: i64) -> Result<i64, AllocError> {
        let region = self.regions.get(resource as usize).ok_or(AllocError::InvalidRid)?;
        match duration_s {
            -1 => Ok(region.policy.max_duration_s),
            d if d <= 0 => Err(AllocError::InvalidParameter),
            d if d > region.policy.max_duration_s => Err(AllocError::LongDuration),
            d => Ok(d),
        }
    }

    /// ALLOCATE: admission, soft revocation for hard requests, extent, keys.
    pub fn allocate(
        &mut self,
        req: AllocRequest,
        secret: &DepotSecret,
        now: i64,
        fill: &mut dyn FnMut(&mut [u8]),
        zero: &mut dyn FnMut(u16, Extent),
    ) -> Result<Granted, AllocError> {
        if req.size == 0 {
            return Err(AllocError::InvalidParameter);
        }
        let duration = self.resolve_duration(req.resource, req.duration_s)?;
        let region = &self.regions[req.resource as usize];
        if req.size > region.policy.max_alloc_bytes || req.size > region.capacity_bytes() {
            return Err(AllocError::Policy);
        }
        // Admission curve: size × duration ≤ factor × available × max_duration. Soft space
        // counts as available to a hard request because it can be revoked.
        let available = region.free_bytes()
            + if req.durability == Durability::Hard { region.soft_bytes } else { 0 };
        if available < req.size {
            return Err(AllocError::NoSpace);
        }
        let demand = req.size as f64 * duration as f64;
        let limit =
            region.policy.admission_factor * available as f64 * region.policy.max_duration_s as f64;
        if demand > limit {
            return Err(AllocError::Policy);
        }
        let nblocks = blocks_for(req.size);
        let mut revoked = Vec::new();
        let mut records = Vec::new();
        let extent = loop {
            if let Some(e) = self.regions[req.resource as usize].extents.allocate(nblocks) {
                break e;
            }
            if req.durability == Durability::Soft {
                return Err(AllocError::NoSpace);
            }
            // Oldest soft allocation of this resource that no transfer is using (its extent
            // must not be zeroed and handed out under a transfer in flight).
            let victim = self
                .soft
                .range((req.resource, 0, 0)..(req.resource + 1, 0, 0))
                .map(|&(_, _, id)| id)
                .find(|id| !self.pinned.contains(id));
            let Some(victim) = victim else {
                return Err(AllocError::NoSpace);
            };
            records.push(self.remove(victim, zero));
            revoked.push(victim);
        };
        let (id, keys) = self.mint(
            req,
            req.resource,
            extent,
            now.saturating_add(duration),
            secret,
            fill,
            &mut records,
        );
        Ok(Granted { id, keys, records, revoked })
    }

    /// Creates a fresh, empty allocation in `extent` with three new keys, inserts it and
    /// records its `Put`. Shared by ALLOCATE and SPLIT_ALLOCATE.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn mint(
        &mut self,
        req: AllocRequest,
        resource: u16,
        extent: Extent,
        expires_at: i64,
        secret: &DepotSecret,
        fill: &mut dyn FnMut(&mut [u8]),
        records: &mut Vec<Record>,
    ) -> (u64, [String; 3]) {
        let keys =
            [new_key(self.shard, fill), new_key(self.shard, fill), new_key(self.shard, fill)];
        let digests: [KeyDigest; 3] = [
            secret.digest(KeyKind::Read, &keys[0]),
            secret.digest(KeyKind::Write, &keys[1]),
            secret.digest(KeyKind::Manage, &keys[2]),
        ];
        let id = self.next_id;
        let a = Allocation {
            id,
            resource,
            extent,
            max_size: req.size,
            size: 0,
            durability: req.durability,
            expires_at,
            created_seq: self.next_seq,
            read_refs: 1,
            write_refs: 0,
            digests,
            crcs: BlockCrcs::default(),
            disk_digests: req.digest.map(|(k, bytes)| DiskDigests::new(k, bytes)),
        };
        records.push(Record::Put(Box::new(a.clone())));
        self.insert(a);
        (id, keys)
    }

    /// Adds an allocation (creation, or replay of a `Put`). Replaces one with the same id.
    pub fn insert(&mut self, a: Allocation) {
        if self.allocs.contains_key(&a.id) {
            self.unlink(a.id);
        }
        self.next_id = self.next_id.max(a.id + 1);
        self.next_seq = self.next_seq.max(a.created_seq + 1);
        for d in &a.digests {
            self.index.insert(index_of(d), a.id);
        }
        self.expiry.insert((a.expires_at, a.id));
        if a.durability == Durability::Soft {
            self.soft.insert((a.resource, a.created_seq, a.id));
        }
        if let Some(r) = self.regions.get_mut(a.resource as usize) {
            r.account(a.durability, a.extent_bytes(), true);
        }
        self.allocs.insert(a.id, a);
    }

    /// Takes an allocation out of every index and the accounting, returning it.
    fn unlink(&mut self, id: u64) -> Option<Allocation> {
        let a = self.allocs.remove(&id)?;
        for d in &a.digests {
            if self.index.get(&index_of(d)) == Some(&id) {
                self.index.remove(&index_of(d));
            }
        }
        self.expiry.remove(&(a.expires_at, id));
        self.soft.remove(&(a.resource, a.created_seq, id));
        if let Some(r) = self.regions.get_mut(a.resource as usize) {
            r.account(a.durability, a.extent_bytes(), false);
        }
        Some(a)
    }

    /// Deletes an allocation and its aliases: zeroes its extent (through `zero`) and frees
    /// the space.
    pub fn remove(&mut self, id: u64, zero: &mut dyn FnMut(u16, Extent)) -> Record {
        if let Some(a) = self.unlink(id) {
            zero(a.resource, a.extent);
            self.regions[a.resource as usize].extents.free(a.extent);
        }
        self.drop_aliases_of(id);
        Record::Delete { id }
    }

    /// Ids of allocations whose lease has ended at `now`, oldest first, at most `limit`.
    pub fn expired(&self, now: i64, limit: usize) -> Vec<u64> {
        self.expiry.range(..(now, u64::MAX)).take(limit).map(|&(_, id)| id).collect()
    }

    /// Applies new attributes (CHNG, INCR/DECR, TRUNCATE bookkeeping) and returns the record.
    /// Growth of `max_size` grows the extent in place or fails with `NoSpace`.
    pub fn set_meta(&mut self, id: u64, m: MetaChange) -> Result<Record, AllocError> {
        let a = self.allocs.get(&id).ok_or(AllocError::InvalidParameter)?.clone();
        let want_blocks = blocks_for(m.max_size);
        let region = &mut self.regions[a.resource as usize];
        let mut extent = a.extent;
        if want_blocks > extent.len {
            if m.max_size > region.policy.max_alloc_bytes {
                return Err(AllocError::Policy);
            }
            if !region.extents.grow_in_place(extent, want_blocks - extent.len) {
                return Err(AllocError::NoSpace);
            }
            extent.len = want_blocks;
        } else if want_blocks < extent.len {
            // The tail lies past the size, so it is already zero on disk (see checksum.rs).
            region
                .extents
                .free(Extent { start: extent.start + want_blocks, len: extent.len - want_blocks });
            extent.len = want_blocks;
        }
        self.unlink(id);
        let mut b = a;
        b.extent = extent;
        b.max_size = m.max_size;
        b.size = m.size;
        b.expires_at = m.expires_at;
        b.durability = m.durability;
        b.read_refs = m.read_refs;
        b.write_refs = m.write_refs;
        b.crcs.truncate(m.crc_len);
        if let Some(d) = &mut b.disk_digests {
            d.truncate(m.crc_len);
        }
        let rec = Record::Meta {
            id,
            max_size: b.max_size,
            extent_len: b.extent.len,
            size: b.size,
            expires_at: b.expires_at,
            durability: b.durability,
            read_refs: b.read_refs,
            write_refs: b.write_refs,
            crc_len: m.crc_len,
        };
        self.insert(b);
        Ok(rec)
    }

    /// Whether [`Table::allocate`] of `size` bytes on `resource` could revoke soft allocations
    /// (and so needs [`Table::pinned`] current): only a hard request that no free run holds.
    pub fn may_revoke(&self, resource: u16, size: u64, durability: Durability) -> bool {
        durability == Durability::Hard
            && self
                .regions
                .get(usize::from(resource))
                .is_some_and(|r| r.extents.largest_free() < blocks_for(size))
    }

    /// Records that data reached disk: the new size and the CRCs of the blocks written.
    pub fn apply_data(
        &mut self,
        id: u64,
        new_size: u64,
        first_block: u64,
        crcs: &[u32],
    ) -> Option<Record> {
        let a = self.allocs.get_mut(&id)?;
        let cb = a.block_bytes(self.regions[a.resource as usize].policy.checksum_block_bytes);
        a.size = a.size.max(new_size);
        a.crcs.set_run(first_block, crcs, cb);
        Some(Record::Data { id, size: a.size, first_block, crcs: crcs.to_vec() })
    }

    /// Replays one journal record. Returns an error string when the record contradicts the
    /// table (which means the journal is damaged in a way its CRCs did not catch).
    pub fn replay(&mut self, rec: Record) -> Result<(), &'static str> {
        match rec {
            // Images are applied by the shard after replay (they need disk I/O); a snapshot's
            // end marker is framing, never handed to replay.
            Record::Header { .. }
            | Record::SnapshotEnd { .. }
            | Record::Image { .. }
            | Record::ZeroImage { .. } => Ok(()),
            Record::Put(a) => {
                if let Some(old) = self.unlink(a.id) {
                    self.regions[old.resource as usize].extents.free(old.extent);
                }
                let region = self
                    .regions
                    .get_mut(a.resource as usize)
                    .ok_or("record names an unknown resource")?;
                if !region.extents.claim(a.extent) {
                    return Err("record claims space that is not free");
                }
                self.insert(*a);
                Ok(())
            }
            Record::Data { id, size, first_block, crcs }
            | Record::CommittedImage { id, size, first_block, crcs, .. } => self
                .apply_data(id, size, first_block, &crcs)
                .map(|_| ())
                .ok_or("data for unknown allocation"),
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
                let m = MetaChange {
                    max_size,
                    size,
                    expires_at,
                    durability,
                    read_refs,
                    write_refs,
                    crc_len,
                };
                let rec = self.set_meta(id, m).map_err(|_| "meta change does not apply")?;
                match rec {
                    Record::Meta { extent_len: got, .. } if got == extent_len => Ok(()),
                    _ => Err("meta change gives a different extent"),
                }
            }
            Record::Delete { id } => {
                if let Some(a) = self.unlink(id) {
                    self.regions[a.resource as usize].extents.free(a.extent);
                }
                self.drop_aliases_of(id);
                Ok(())
            }
            Record::Digests { id, first_block, sums } => self
                .apply_digests(id, first_block, &sums)
                .map(|_| ())
                .ok_or("digests for unknown allocation"),
            Record::AliasPut(a) => {
                if !self.allocs.contains_key(&a.master) {
                    return Err("alias of an unknown allocation");
                }
                self.insert_alias(*a);
                Ok(())
            }
            Record::AliasDelete { id } => {
                self.remove_alias(id);
                Ok(())
            }
            Record::Rekey { id, digests } => {
                self.set_keys(id, digests).map(|_| ()).ok_or("rekey of unknown allocation")
            }
        }
    }

    /// Records that rebuild this table from nothing (the body of a compacted journal).
    pub fn snapshot(&self) -> Vec<Record> {
        let mut ids: Vec<u64> = self.allocs.keys().copied().collect();
        ids.sort_unstable();
        let mut out: Vec<Record> =
            ids.into_iter().map(|id| Record::Put(Box::new(self.allocs[&id].clone()))).collect();
        let mut alias_ids: Vec<u64> = self.aliases.keys().copied().collect();
        alias_ids.sort_unstable();
        out.extend(
            alias_ids.into_iter().map(|id| Record::AliasPut(Box::new(self.aliases[&id].clone()))),
        );
        out
    }
}

/// New attribute values for `Table::set_meta` (every field is the value after the change).
#[derive(Debug, Clone, Copy)]
pub struct MetaChange {
    pub max_size: u64,
    pub size: u64,
    pub expires_at: i64,
    pub durability: Durability,
    pub read_refs: u32,
    pub write_refs: u32,
    pub crc_len: u64,
}

impl MetaChange {
    pub fn of(a: &Allocation) -> MetaChange {
        MetaChange {
            max_size: a.max_size,
            size: a.size,
            expires_at: a.expires_at,
            durability: a.durability,
            read_refs: a.read_refs,
            write_refs: a.write_refs,
            crc_len: a.crcs.crcs.len() as u64,
        }
    }
}

mod ext;

pub use ext::{AliasError, MergeError, MAX_ALIASES_PER_ALLOCATION};

#[cfg(test)]
mod tests;
