//! One shard: everything one core owns. Its region of every resource, its allocation table,
//! its journal, the runtime state of its allocations, and the background tasks that commit the
//! journal and reap expired leases.
//!
//! Design: a `Shard` lives in an `Rc` on its core's thread and is shared by that core's
//! connection tasks. Table borrows are never held across an `.await`: a command looks up what
//! it needs, drops the borrow, does its I/O, and borrows again to commit.

use std::cell::RefCell;
use std::collections::HashMap;
use std::io;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ibp_io::seam::{Clock, Entropy};

use crate::allocation::{Allocation, Durability};
use crate::config::{Config, ResourceKind};
use crate::extent::{Extent, BLOCK_BYTES};
use crate::journal::record::Record;
use crate::journal::{Journal, SyncLevel};
use crate::keys::DepotSecret;
use crate::lock::AllocRt;
use crate::stats::{self, ShardStats};
use crate::store::{region_path, Store};
use crate::table::{Region, ResourcePolicy, Table};

/// Expired leases reaped per tick, so one tick never stalls the core.
const REAP_BATCH: usize = 256;
/// How often the reaper looks for expired leases.
const REAP_INTERVAL: Duration = Duration::from_secs(1);

/// What every shard of a depot shares (read-only, or atomics).
#[derive(Clone)]
pub struct Shared {
    pub cfg: Arc<Config>,
    pub secret: DepotSecret,
    /// Every shard's published figures (for STATUS from any core).
    pub all_stats: Arc<Vec<Arc<ShardStats>>>,
    /// Each shard's own port (index = shard).
    pub ports: Arc<Vec<u16>>,
    /// Maximum duration per resource, shared so ST_CHANGE applies depot-wide.
    pub max_durations: Arc<Vec<std::sync::atomic::AtomicI64>>,
}

/// A shard.
pub struct Shard {
    pub idx: u16,
    pub cfg: Arc<Config>,
    pub secret: DepotSecret,
    pub table: RefCell<Table>,
    /// This shard's region of each resource, by resource index.
    pub stores: Vec<Store>,
    pub journal: Journal,
    /// Runtime state of allocations with transfers or waiters (created on demand).
    rts: RefCell<HashMap<u64, Rc<AllocRt>>>,
    pub clock: Rc<dyn Clock>,
    entropy: RefCell<Box<dyn Entropy>>,
    pub stats: Arc<ShardStats>,
    /// Every shard's published figures (for STATUS from any core).
    pub all_stats: Arc<Vec<Arc<ShardStats>>>,
    /// When the depot started (for STATUS VERSION uptime).
    pub started: Instant,
    /// Each shard's own port (index = shard); capabilities name the owner's port.
    pub ports: Arc<Vec<u16>>,
    /// Maximum duration per resource, shared by all shards so ST_CHANGE applies depot-wide.
    pub shared_max_duration: Arc<Vec<std::sync::atomic::AtomicI64>>,
    /// Doublewrite images whose in-place write is still in flight (token → record), so a
    /// compaction in between keeps them.
    inflight_images: RefCell<HashMap<u64, Record>>,
    next_image_token: std::cell::Cell<u64>,
}

/// A doublewrite image in the journal whose in-place write has not ended yet.
#[derive(Debug)]
pub struct PendingImage {
    token: u64,
    seq: u64,
    sync: bool,
}

impl PendingImage {
    /// The journal batch that holds the image.
    pub fn seq(&self) -> u64 {
        self.seq
    }
}

/// Images met during replay that no later record resolved: (allocation, block) → the block's
/// bytes (`None`: a zero image, the block goes back to zeros).
#[derive(Default)]
struct ImageReplay {
    pending: HashMap<(u64, u64), Option<Vec<u8>>>,
}

impl ImageReplay {
    /// Tracks which images a later record settles: a Data record for a block means the write
    /// committed (or a later one did); a Delete, a Put or a truncating Meta drops them.
    fn observe(&mut self, rec: &Record, table: &Table) {
        match rec {
            Record::Image { id, first_block, data }
            | Record::CommittedImage { id, first_block, data, .. } => {
                let Some(a) = table.get(*id) else { return };
                let cb = a
                    .block_bytes(table.regions[a.resource as usize].policy.checksum_block_bytes)
                    as usize;
                for (i, block) in data.chunks(cb).enumerate() {
                    self.pending.insert((*id, first_block + i as u64), Some(block.to_vec()));
                }
            }
            Record::ZeroImage { id, first_block, blocks } => {
                let Some(a) = table.get(*id) else { return };
                let cb =
                    a.block_bytes(table.regions[a.resource as usize].policy.checksum_block_bytes);
                // Bounded by the allocation's extent, whatever the record says.
                let end = first_block.saturating_add(*blocks).min(a.extent_bytes().div_ceil(cb));
                for b in *first_block..end {
                    self.pending.insert((*id, b), None);
                }
            }
            Record::Data { id, first_block, crcs, .. } => {
                for b in *first_block..first_block + crcs.len() as u64 {
                    self.pending.remove(&(*id, b));
                }
            }
            Record::Meta { id, crc_len, .. } => {
                self.pending.retain(|(i, b), _| i != id || b < crc_len)
            }
            Record::Delete { id } => self.pending.retain(|(i, _), _| i != id),
            Record::Put(a) => self.pending.retain(|(i, _), _| *i != a.id),
            // Digests travel beside a Data record; aliases and rekeys change no bytes.
            Record::Header { .. }
            | Record::SnapshotEnd { .. }
            | Record::Digests { .. }
            | Record::AliasPut(_)
            | Record::AliasDelete { .. }
            | Record::Rekey { .. } => {}
        }
    }
}

/// What opening a shard found, for the start-up log.
#[derive(Debug)]
pub struct OpenReport {
    pub allocations: usize,
    pub reaped: usize,
    pub dropped_ram: usize,
    pub journal: crate::journal::RecoveryReport,
    pub took: Duration,
}

impl Shard {
    /// Opens (or creates) the shard's stores and journal and replays it.
    pub fn open(
        idx: u16,
        shared: &Shared,
        clock: Rc<dyn Clock>,
        entropy: Box<dyn Entropy>,
    ) -> io::Result<(Shard, OpenReport)> {
        let cfg = shared.cfg.clone();
        let t0 = Instant::now();
        let mut regions = Vec::new();
        let mut stores = Vec::new();
        for (i, r) in cfg.resources.iter().enumerate() {
            let bytes = cfg.region_bytes(i);
            let policy = ResourcePolicy {
                max_duration_s: r.max_duration_s as i64,
                max_alloc_bytes: r.max_alloc_bytes.unwrap_or(bytes).min(bytes),
                admission_factor: r.admission_factor,
                checksum_block_bytes: r.checksum_block_bytes,
            };
            regions.push(Region::new(policy, bytes));
            stores.push(match &r.kind {
                ResourceKind::Disk(dir) => {
                    Store::open_disk(&region_path(dir, idx as usize), bytes)?
                }
                ResourceKind::Device(dev) => Store::open_device(dev, idx as u64 * bytes, bytes)?,
                ResourceKind::Ram => Store::open_ram(bytes)?,
            });
        }
        let mut table = Table::new(idx, regions);
        let mut images = ImageReplay::default();
        let (journal, jreport) =
            Journal::recover(&cfg.meta_dir, idx, cfg.cores as u16, cfg.journal_bytes, |rec| {
                images.observe(&rec, &table);
                table.replay(rec).map_err(str::to_string)
            })?;
        let stats = shared.all_stats[idx as usize].clone();
        let shard = Shard {
            idx,
            cfg,
            secret: shared.secret.clone(),
            table: RefCell::new(table),
            stores,
            journal,
            rts: RefCell::new(HashMap::new()),
            clock,
            entropy: RefCell::new(entropy),
            stats,
            all_stats: shared.all_stats.clone(),
            started: Instant::now(),
            ports: shared.ports.clone(),
            shared_max_duration: shared.max_durations.clone(),
            inflight_images: RefCell::new(HashMap::new()),
            next_image_token: std::cell::Cell::new(0),
        };
        let repaired = shard.apply_images(images)?;
        if repaired > 0 {
            tracing::warn!(
                shard = idx,
                blocks = repaired,
                "completed writes torn by a crash from their journal images"
            );
        }
        let (reaped, dropped_ram) = shard.recover_space()?;
        shard.publish();
        let report = OpenReport {
            allocations: shard.table.borrow().len(),
            reaped,
            dropped_ram,
            journal: jreport,
            took: t0.elapsed(),
        };
        Ok((shard, report))
    }

    /// Completes in-place writes that a crash may have torn: every image no later record
    /// settled is written back (unless the block holds it already) and its blocks take the
    /// image's CRCs (the write's new contents, which it was allowed to have). Returns the
    /// blocks repaired.
    fn apply_images(&self, images: ImageReplay) -> io::Result<usize> {
        let mut pending: Vec<_> = images.pending.into_iter().collect();
        pending.sort_unstable_by_key(|(k, _)| *k);
        let mut recs = Vec::new();
        let mut repaired = 0;
        let mut t = self.table.borrow_mut();
        for ((id, block), image) in pending {
            let Some(a) = t.get(id) else { continue };
            let cb = a.block_bytes(t.regions[a.resource as usize].policy.checksum_block_bytes);
            let at = block * cb;
            let mut bytes = image
                .unwrap_or_else(|| vec![0; cb.min(a.extent_bytes().saturating_sub(at)) as usize]);
            if at + bytes.len() as u64 > a.extent_bytes() {
                continue;
            }
            // Bytes past the size belong to the unacknowledged part of the write that crashed;
            // they are zeroed below (recover_space), so the block's CRC must cover zeros there.
            if a.size < at + bytes.len() as u64 {
                let keep = a.size.saturating_sub(at) as usize;
                bytes[keep..].fill(0);
            }
            let crc = crate::checksum::block_crc(&bytes, cb);
            let store = &self.stores[a.resource as usize];
            // Most images of committed overwrites (Record::CommittedImage) landed before the
            // stop: a block that already holds the image, under the image's CRC, needs nothing.
            if a.crcs.get(block, cb) == crc
                && store.read_blocking(a.base_offset() + at, bytes.len())? == bytes
            {
                continue;
            }
            store.write_blocking(a.base_offset() + at, &bytes)?;
            repaired += 1;
            let size = a.size;
            let kind = a.disk_digests.as_ref().map(|d| d.kind);
            recs.extend(t.apply_data(id, size, block, &[crc]));
            if let Some(k) = kind {
                let sum = k.block(&bytes, cb);
                recs.extend(t.apply_digests(id, block, sum.as_bytes()));
            }
        }
        drop(t);
        if !recs.is_empty() {
            self.journal.append(&recs, SyncLevel::DataAndJournal);
        }
        Ok(repaired)
    }

    /// Appends a doublewrite image ([`Record::Image`], [`Record::ZeroImage`] or
    /// [`Record::CommittedImage`]) of blocks about to be rewritten in place, without waiting:
    /// the in-place write may start once [`Shard::image_durable`] returns, and reports to
    /// [`Shard::image_done`] when it ends. `None` for RAM resources (nothing is journaled).
    ///
    /// A `CommittedImage` also commits the blocks' new CRCs (the caller applied them to the
    /// table already: the blocks lie wholly below the size, which does not change); once it is
    /// durable the write is committed whatever becomes of the in-place write, since replay
    /// completes it.
    pub fn journal_image(&self, resource: u16, rec: Record, sync: bool) -> Option<PendingImage> {
        if !self.cfg.resources[resource as usize].kind.is_persistent() {
            return None;
        }
        let token = self.next_image_token.get();
        self.next_image_token.set(token + 1);
        // An image carries every byte it stands for: only the journal write must be durable,
        // not the data stores.
        let level = if sync { SyncLevel::Journal } else { SyncLevel::Written };
        let seq = self.journal.append(std::slice::from_ref(&rec), level);
        self.inflight_images.borrow_mut().insert(token, rec);
        Some(PendingImage { token, seq, sync })
    }

    /// Waits until journal batch `seq` is written (and durable when `sync`).
    pub async fn journal_wait(&self, seq: u64, sync: bool) -> Result<(), String> {
        self.journal.wait(seq, sync).await
    }

    /// Waits until image `p` is written (durably when its allocation is hard).
    pub async fn image_durable(&self, p: &PendingImage) -> Result<(), String> {
        self.journal.wait(p.seq, p.sync).await
    }

    /// The in-place write image `p` protected has completed (or been abandoned): a compaction
    /// from now on need not keep it.
    pub fn image_done(&self, p: Option<PendingImage>) {
        if let Some(p) = p {
            self.inflight_images.borrow_mut().remove(&p.token);
        }
    }

    /// After replay: drop RAM allocations (their bytes died with the process), reap expired
    /// leases, and zero all free space and everything past each allocation's size, restoring
    /// the invariant checksum.rs relies on even after a crash tore a write.
    fn recover_space(&self) -> io::Result<(usize, usize)> {
        let now = self.clock.now_unix_s();
        let mut t = self.table.borrow_mut();
        let volatile: Vec<u64> = t
            .iter()
            .filter(|a| matches!(self.cfg.resources[a.resource as usize].kind, ResourceKind::Ram))
            .map(|a| a.id)
            .collect();
        let mut recs = Vec::new();
        let mut nothing = |_: u16, _: Extent| {};
        for id in &volatile {
            recs.push(t.remove(*id, &mut nothing));
        }
        let expired = t.expired(now, usize::MAX);
        for id in &expired {
            recs.push(t.remove(*id, &mut nothing));
        }
        for (i, region) in t.regions.iter().enumerate() {
            if matches!(self.cfg.resources[i].kind, ResourceKind::Ram) {
                continue;
            }
            for run in region.extents.free_runs() {
                self.stores[i].zero(run.start * BLOCK_BYTES, run.len * BLOCK_BYTES)?;
            }
        }
        for a in t.iter() {
            if self.cfg.resources[a.resource as usize].kind.is_persistent() {
                self.stores[a.resource as usize]
                    .zero(a.base_offset() + a.size, a.extent_bytes() - a.size)?;
            }
        }
        drop(t);
        if !recs.is_empty() {
            self.journal.append(&recs, SyncLevel::Written);
        }
        Ok((expired.len(), volatile.len()))
    }

    /// Current maximum duration of resource `r` (ST_CHANGE may have moved it).
    pub fn max_duration(&self, r: usize) -> i64 {
        self.shared_max_duration[r].load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Copies depot-wide policy changes into this shard's table before a decision uses them.
    pub fn sync_policies(&self) {
        let mut t = self.table.borrow_mut();
        for (i, region) in t.regions.iter_mut().enumerate() {
            region.policy.max_duration_s = self.max_duration(i);
        }
    }

    /// Fills `out` from the entropy seam (the OS CSPRNG in production).
    pub fn fill_random(&self, out: &mut [u8]) {
        self.entropy.borrow().fill(out);
    }

    /// Runtime state of allocation `id`.
    pub fn rt(&self, id: u64) -> Rc<AllocRt> {
        self.rts.borrow_mut().entry(id).or_default().clone()
    }

    /// Marks the allocations that transfers are using, so soft revocation passes them by.
    pub fn pin_busy(&self) {
        let busy =
            self.rts.borrow().iter().filter(|(_, rt)| rt.busy()).map(|(id, _)| *id).collect();
        self.table.borrow_mut().pinned = busy;
    }

    /// Forgets idle runtime state of allocations that are gone.
    fn prune_rts(&self) {
        let t = self.table.borrow();
        self.rts.borrow_mut().retain(|id, rt| t.get(*id).is_some() || rt.busy());
    }

    /// Zeroes an extent before it returns to the free list. A failure latches the store (the
    /// space would otherwise leak old bytes into a new allocation's holes).
    pub fn zero_extent(&self, resource: u16, e: Extent) {
        let store = &self.stores[resource as usize];
        if let Err(err) = store.zero(e.start * BLOCK_BYTES, e.len * BLOCK_BYTES) {
            tracing::error!(shard = self.idx, cause = %err, "zeroing freed space failed");
        }
    }

    /// Appends records about allocations on `resource` and waits until they are written (and
    /// synced when `hard`). Allocations on RAM resources are volatile by definition (they die
    /// with the process), so their records are not journaled at all.
    pub async fn commit(&self, resource: u16, recs: &[Record], hard: bool) -> Result<(), String> {
        let seq = self.commit_append(resource, recs, hard);
        self.commit_wait(seq, hard).await
    }

    /// The first half of [`Shard::commit`]: appends the records (their order in the journal
    /// is fixed from here on) and returns what to wait for.
    pub fn commit_append(&self, resource: u16, recs: &[Record], hard: bool) -> Option<u64> {
        if recs.is_empty() {
            return None;
        }
        if !self.cfg.resources[resource as usize].kind.is_persistent() {
            self.publish();
            return None;
        }
        let level = if hard { SyncLevel::DataAndJournal } else { SyncLevel::Written };
        let seq = self.journal.append(recs, level);
        self.publish();
        Some(seq)
    }

    /// The second half of [`Shard::commit`]: waits until appended records are written (and
    /// synced when `hard`).
    pub async fn commit_wait(&self, seq: Option<u64>, hard: bool) -> Result<(), String> {
        match seq {
            Some(seq) => self.journal.wait(seq, hard).await,
            None => Ok(()),
        }
    }

    /// Whether acknowledgements for this allocation must wait for fdatasync.
    pub fn needs_sync(&self, a: &Allocation) -> bool {
        a.durability == Durability::Hard
            && self.cfg.resources[a.resource as usize].kind.is_persistent()
    }

    /// Whether resource `r` is on disk (hard allocations there need fdatasync).
    pub fn is_disk(&self, r: u16) -> bool {
        self.cfg.resources[r as usize].kind.is_persistent()
    }

    /// The resource of allocation `id` (for journaling records about it, or its aliases).
    pub fn resource_of(&self, id: u64) -> u16 {
        self.table.borrow().get(id).map_or(0, |a| a.resource)
    }

    /// Deletes allocation `id` once no transfer holds it; returns false if it was already gone.
    pub async fn delete(&self, id: u64) -> Result<bool, String> {
        let rt = self.rt(id);
        let _all = rt.lock(0..u64::MAX, true).await;
        let (resource, rec) = {
            let mut t = self.table.borrow_mut();
            let Some(resource) = t.get(id).map(|a| a.resource) else {
                return Ok(false);
            };
            let mut zero = |r: u16, e: Extent| self.zero_extent(r, e);
            (resource, t.remove(id, &mut zero))
        };
        self.commit(resource, &[rec], false).await?;
        Ok(true)
    }

    /// Publishes usage figures for STATUS on any core.
    pub fn publish(&self) {
        let t = self.table.borrow();
        for (i, r) in t.regions.iter().enumerate() {
            let u = &self.stats.usage[i];
            stats::set(&u.capacity, r.capacity_bytes());
            stats::set(&u.free, r.free_bytes());
            stats::set(&u.hard, r.hard_bytes);
            stats::set(&u.soft, r.soft_bytes);
            stats::set(&u.allocations, r.allocations);
        }
    }

    /// Syncs every store written since its last sync.
    async fn sync_data(&self) -> Result<(), String> {
        for s in &self.stores {
            if s.is_dirty() {
                s.sync().await.map_err(|e| format!("data sync failed: {e}"))?;
            }
        }
        Ok(())
    }

    /// The group-commit loop: one write (and at most one sync) per batch of appended records.
    ///
    /// A batch that must sync the data stores first (hard records) is taken while the previous
    /// batch's journal write is still in flight, and its fdatasync runs alongside that write:
    /// the two flushes of consecutive batches overlap instead of adding up. Order still holds:
    /// a batch's records reach the journal only after its own data sync, and after the previous
    /// batch's write (one write in flight at a time). Any other batch is taken only once the
    /// write in flight is done, so it gathers everything appended meanwhile (group commit).
    pub async fn run_committer(self: Rc<Self>) {
        let mut writing: Option<ibp_io::JoinHandle> = None;
        loop {
            if self.journal.has_failed() {
                // The journal latched; waiters get the error. Nothing more can be acknowledged.
                return;
            }
            if !self.journal.has_pending() {
                if let Some(w) = writing.take() {
                    w.await;
                    continue;
                }
                self.journal.wake.notified().await;
                continue;
            }
            if self.journal.wants_compaction() {
                if let Some(w) = writing.take() {
                    w.await;
                }
                let mut snap = self.table.borrow().snapshot();
                snap.extend(self.inflight_images.borrow().values().cloned());
                let t0 = std::time::Instant::now();
                let done = self.journal.compact(snap, || self.sync_data()).await;
                self.stats.record(stats::JOURNAL_COMPACTION, done.is_ok(), t0.elapsed());
                continue;
            }
            if !self.journal.pending_needs_data_sync() {
                if let Some(w) = writing.take() {
                    w.await;
                    continue; // more may have been appended meanwhile
                }
            }
            let Some(batch) = self.journal.take_batch() else { continue };
            if batch.needs_data_sync() {
                if let Err(e) = self.sync_data().await {
                    if let Some(w) = writing.take() {
                        w.await;
                    }
                    let _ = self.journal.fail_batch(batch, e);
                    return;
                }
            }
            // One journal write at a time, in the order the batches were taken.
            if let Some(w) = writing.take() {
                w.await;
            }
            let me = self.clone();
            writing = Some(ibp_io::spawn(async move {
                let _ = me.journal.write_batch(batch).await;
            }));
        }
    }

    /// Reaps expired leases once a second.
    pub async fn run_reaper(self: Rc<Self>) {
        loop {
            ibp_io::time::sleep(REAP_INTERVAL).await;
            self.reap_once().await;
        }
    }

    /// Deletes up to a batch of allocations whose lease has ended by the clock seam's `now`.
    /// Returns how many were deleted.
    pub async fn reap_once(&self) -> usize {
        let now = self.clock.now_unix_s();
        let ids = self.table.borrow().expired(now, REAP_BATCH);
        let mut reaped = 0;
        for id in ids {
            if self.rts.borrow().get(&id).is_some_and(|rt| rt.busy()) {
                continue; // a transfer that began before expiry finishes first
            }
            match self.delete(id).await {
                Ok(true) => {
                    reaped += 1;
                    tracing::debug!(shard = self.idx, id, "lease expired");
                }
                Ok(false) => {}
                Err(e) => tracing::error!(shard = self.idx, cause = %e, "reaping failed"),
            }
        }
        self.prune_rts();
        reaped
    }
}

#[cfg(test)]
mod tests;
