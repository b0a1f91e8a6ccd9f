//! Table operations of the extended commands: aliases (ALIAS_ALLOCATE/ALIAS_MANAGE), new keys
//! (RENAME), carving and returning space (SPLIT/MERGE_ALLOCATE) and disk digests.
//!
//! Same rules as the rest of the table: pure state, `now` passed in, every mutation returns
//! the journal records that replay it.

use super::*;

/// Most live aliases one allocation may have: each costs table memory and a journal record,
/// and a manage key must not be able to grow the table without bound.
pub const MAX_ALIASES_PER_ALLOCATION: usize = 256;

/// Why an ALIAS_ALLOCATE was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AliasError {
    /// No such master.
    NoMaster,
    /// The master already has `MAX_ALIASES_PER_ALLOCATION` live aliases: −45.
    TooMany,
}

/// Why a MERGE_ALLOCATE was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MergeError {
    /// The child is still referenced beyond its creation counts (read=1, write=0): −20.
    ChildReferenced,
    /// Not the same resource, the same allocation, or not adjacent (the child's extent must
    /// start where the master's ends): −30.
    NotMergeable,
    /// The merged size would exceed the resource's largest allocation: −45.
    Policy,
}

impl Table {
    /// Finds the live alias that `key` grants `kind` on, with its master.
    pub fn find_alias(
        &self,
        secret: &DepotSecret,
        kind: KeyKind,
        key: &str,
        now: i64,
    ) -> Result<(&Alias, &Allocation), Lookup> {
        let digest = secret.digest(kind, key);
        let id = self.alias_index.get(&index_of(&digest)).ok_or(Lookup::NotFound)?;
        let al = self.aliases.get(id).ok_or(Lookup::NotFound)?;
        let m = self.allocs.get(&al.master).ok_or(Lookup::NotFound)?;
        if !ct_eq(&al.digests[kind as usize], &digest) || now >= al.expires(m.expires_at) {
            return Err(Lookup::NotFound);
        }
        Ok((al, m))
    }

    pub fn alias(&self, id: u64) -> Option<&Alias> {
        self.aliases.get(&id)
    }

    /// Creates an alias of `master`; returns its id, its three keys and the records (the
    /// alias, after the deletion of any of the master's aliases whose lease ended at `now`,
    /// which are purged once the master reaches its alias limit).
    pub fn add_alias(
        &mut self,
        master: u64,
        window: Option<(u64, u64)>,
        expires_at: Option<i64>,
        now: i64,
        secret: &DepotSecret,
        fill: &mut dyn FnMut(&mut [u8]),
    ) -> Result<(u64, [String; 3], Vec<Record>), AliasError> {
        let master_expires = self.allocs.get(&master).ok_or(AliasError::NoMaster)?.expires_at;
        let mut records = Vec::new();
        let ids: Vec<u64> =
            self.aliases_of.get(&master).map(|s| s.iter().copied().collect()).unwrap_or_default();
        if ids.len() >= MAX_ALIASES_PER_ALLOCATION {
            for id in ids {
                if self.aliases.get(&id).is_some_and(|a| now >= a.expires(master_expires)) {
                    records.push(self.remove_alias(id));
                }
            }
            if self.aliases_of.get(&master).map_or(0, |s| s.len()) >= MAX_ALIASES_PER_ALLOCATION {
                return Err(AliasError::TooMany);
            }
        }
        let keys =
            [new_key(self.shard, fill), new_key(self.shard, fill), new_key(self.shard, fill)];
        let digests = [
            secret.digest(KeyKind::Read, &keys[0]),
            secret.digest(KeyKind::Write, &keys[1]),
            secret.digest(KeyKind::Manage, &keys[2]),
        ];
        let id = self.next_id;
        let al = Alias { id, master, window, expires_at, read_refs: 1, write_refs: 0, digests };
        records.push(Record::AliasPut(Box::new(al.clone())));
        self.insert_alias(al);
        Ok((id, keys, records))
    }

    /// Replaces an alias's attributes (CHNG, INCR/DECR); returns the record.
    pub fn update_alias(&mut self, al: Alias) -> Record {
        let rec = Record::AliasPut(Box::new(al.clone()));
        self.insert_alias(al);
        rec
    }

    /// Adds or replaces an alias (creation, change, replay).
    pub(super) fn insert_alias(&mut self, al: Alias) {
        self.remove_alias(al.id);
        self.next_id = self.next_id.max(al.id + 1);
        for d in &al.digests {
            self.alias_index.insert(index_of(d), al.id);
        }
        self.aliases_of.entry(al.master).or_default().insert(al.id);
        self.aliases.insert(al.id, al);
    }

    /// Forgets an alias; returns the record.
    pub fn remove_alias(&mut self, id: u64) -> Record {
        if let Some(al) = self.aliases.remove(&id) {
            for d in &al.digests {
                if self.alias_index.get(&index_of(d)) == Some(&id) {
                    self.alias_index.remove(&index_of(d));
                }
            }
            if let Some(set) = self.aliases_of.get_mut(&al.master) {
                set.remove(&id);
                if set.is_empty() {
                    self.aliases_of.remove(&al.master);
                }
            }
        }
        Record::AliasDelete { id }
    }

    /// Drops every alias of `master` (it is gone). Replay of the master's `Delete` does the
    /// same, so no records are needed.
    pub(super) fn drop_aliases_of(&mut self, master: u64) {
        let Some(ids) = self.aliases_of.remove(&master) else { return };
        for id in ids {
            self.remove_alias(id);
        }
    }

    /// RENAME: three fresh keys for allocation `id`; the old ones stop working.
    pub fn rekey(
        &mut self,
        id: u64,
        secret: &DepotSecret,
        fill: &mut dyn FnMut(&mut [u8]),
    ) -> Option<([String; 3], Record)> {
        let keys =
            [new_key(self.shard, fill), new_key(self.shard, fill), new_key(self.shard, fill)];
        let digests = [
            secret.digest(KeyKind::Read, &keys[0]),
            secret.digest(KeyKind::Write, &keys[1]),
            secret.digest(KeyKind::Manage, &keys[2]),
        ];
        let rec = self.set_keys(id, digests)?;
        Some((keys, rec))
    }

    /// Replaces the key digests of allocation `id` in the allocation and the index.
    pub(super) fn set_keys(&mut self, id: u64, digests: [KeyDigest; 3]) -> Option<Record> {
        let a = self.allocs.get_mut(&id)?;
        let old = std::mem::replace(&mut a.digests, digests);
        for d in &old {
            if self.index.get(&index_of(d)) == Some(&id) {
                self.index.remove(&index_of(d));
            }
        }
        for d in &digests {
            self.index.insert(index_of(d), id);
        }
        Some(Record::Rekey { id, digests })
    }

    /// Records disk digests of blocks `first ..` of allocation `id`.
    pub fn apply_digests(&mut self, id: u64, first: u64, sums: &[u8]) -> Option<Record> {
        let a = self.allocs.get_mut(&id)?;
        a.disk_digests.as_mut()?.set_run(first, sums);
        Some(Record::Digests { id, first_block: first, sums: sums.to_vec() })
    }

    /// SPLIT_ALLOCATE: carves a child of `req.size` bytes from the end of `master`'s extent.
    /// The child's space must be free space of the master past its size: the child takes
    /// whole 4 KiB blocks from the end of the master's extent, and the master keeps
    /// `min(max_size − size, what its remaining blocks hold)`, which must still be at least 1
    /// and at least its size, else `NoSpace`. Those bytes are zeros
    /// on disk already (past the master's size), so the child starts clean.
    pub fn split(
        &mut self,
        master: u64,
        req: AllocRequest,
        secret: &DepotSecret,
        now: i64,
        fill: &mut dyn FnMut(&mut [u8]),
    ) -> Result<Granted, AllocError> {
        if req.size == 0 {
            return Err(AllocError::InvalidParameter);
        }
        let m = self.allocs.get(&master).ok_or(AllocError::InvalidParameter)?.clone();
        let duration = self.resolve_duration(m.resource, req.duration_s)?;
        let child_blocks = blocks_for(req.size);
        if child_blocks >= m.extent.len || req.size >= m.max_size {
            return Err(AllocError::NoSpace);
        }
        let keep_blocks = m.extent.len - child_blocks;
        let new_max = (m.max_size - req.size).min(keep_blocks * BLOCK_BYTES);
        if new_max < m.size || new_max == 0 {
            return Err(AllocError::NoSpace);
        }
        let mut change = MetaChange::of(&m);
        change.max_size = new_max;
        let mut records = vec![self.set_meta(master, change)?];
        let extent = Extent { start: m.extent.start + keep_blocks, len: child_blocks };
        if !self.regions[m.resource as usize].extents.claim(extent) {
            // set_meta just freed these blocks; anything else is a table bug.
            return Err(AllocError::NoSpace);
        }
        let (id, keys) = self.mint(
            req,
            m.resource,
            extent,
            now.saturating_add(duration),
            secret,
            fill,
            &mut records,
        );
        Ok(Granted { id, keys, records, revoked: Vec::new() })
    }

    /// MERGE_ALLOCATE: gives `child`'s space back to `master`. The child (and its aliases) is
    /// deleted and its extent zeroed through `zero`; the master's max size grows by the
    /// child's extent (its whole 4 KiB blocks, what the split took), its size and data
    /// unchanged.
    pub fn merge(
        &mut self,
        master: u64,
        child: u64,
        zero: &mut dyn FnMut(u16, Extent),
    ) -> Result<Vec<Record>, MergeError> {
        let m = self.allocs.get(&master).ok_or(MergeError::NotMergeable)?;
        let c = self.allocs.get(&child).ok_or(MergeError::NotMergeable)?;
        if master == child || m.resource != c.resource || m.extent.end() != c.extent.start {
            return Err(MergeError::NotMergeable);
        }
        if c.read_refs != 1 || c.write_refs != 0 {
            return Err(MergeError::ChildReferenced);
        }
        // The master takes back the child's whole blocks, as a split took them.
        let new_max = m.max_size.checked_add(c.extent_bytes()).ok_or(MergeError::Policy)?;
        if new_max > self.regions[m.resource as usize].policy.max_alloc_bytes {
            return Err(MergeError::Policy);
        }
        let mut change = MetaChange::of(m);
        change.max_size = new_max;
        let mut records = vec![self.remove(child, zero)];
        // The child's blocks were just freed right after the master's, so growing in place
        // cannot fail; if it did the table would be inconsistent, so say so loudly.
        records.push(self.set_meta(master, change).map_err(|_| MergeError::NotMergeable)?);
        Ok(records)
    }
}
