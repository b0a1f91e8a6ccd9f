//! The journal file: O_DIRECT appends with group commit, crash recovery, and compaction.
//!
//! Design: records are encoded into `pending` the moment the table changes (same synchronous
//! step, so memory and journal never disagree in order). One committer task per shard takes
//! everything pending, writes it in one O_DIRECT write (the last partial 4 KiB page is kept in
//! memory and rewritten with the next batch), and makes it as durable as its most demanding
//! record asks ([`SyncLevel`]): a record that claims data already written in place (a hard
//! allocation's new size and CRCs) needs the shard's data stores fdatasync'd first; a record
//! that carries everything it claims (a doublewrite image) needs only the journal write itself
//! to be durable (RWF_DSYNC). Many concurrent commands therefore share one write and at most
//! one sync of each kind (group commit). The committer may take the next batch and start its
//! data sync while the previous batch's journal write is in flight (`Shard::run_committer`);
//! the journal writes themselves go one at a time, in the order the batches were taken.
//!
//! The file is preallocated; replay stops at the first zero frame (every batch write ends
//! with at least a frame header's worth of zeros). When the file passes three quarters full it
//! is compacted: a snapshot of the table (which already includes everything pending) is
//! written, with a new generation and an end marker, to the shard's *other* journal file,
//! synced, and appends continue there. The two files are reused in turn, so a compaction
//! creates, renames and syncs no directory entry (that took several milliseconds on ext4 and
//! stalled the shard's thread) and writes into blocks that are already allocated and written.
//! Replay uses the file of the higher generation whose snapshot is complete; frames of older
//! generations left past the end cannot pass their seeded CRCs ([`super::record`]). On start-up
//! the file not in use is zeroed, so no aborted compaction's frames can ever be read back.

use std::cell::RefCell;
use std::io;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use ibp_io::fs::{DmaFile, OpenMode};
use ibp_io::sync::Notify;
use ibp_io::AlignedBuf;

use super::record::{frame_seed, scan, Record, Scan, FRAME_HEADER_BYTES, JOURNAL_MAGIC};

/// Default preallocated journal size; compaction keeps it bounded.
pub const JOURNAL_MIN_BYTES: u64 = 64 << 20;
const PAGE: u64 = 4096;

/// What recovery found, for the start-up log.
#[derive(Debug, Default, Clone)]
pub struct RecoveryReport {
    pub records: usize,
    pub valid_bytes: u64,
    /// Set when a torn or damaged tail was cut.
    pub torn: Option<&'static str>,
}

/// How durable a batch must be before its waiters wake; a batch takes the highest level any
/// of its records asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum SyncLevel {
    /// Written to the file (survives the process, not a power cut): soft allocations.
    Written,
    /// The journal write itself is durable: records that carry every byte they claim.
    Journal,
    /// The data stores are synced first, then the journal: records that claim bytes already
    /// written in place (hard allocations).
    DataAndJournal,
}

struct State {
    /// Encoded records not yet written.
    pending: Vec<u8>,
    /// The durability the pending records need.
    pending_sync: SyncLevel,
    appended_seq: u64,
    written_seq: u64,
    synced_seq: u64,
    /// Bytes of valid frames in the file.
    file_pos: u64,
    /// The file's last partial page (`file_pos % PAGE` bytes), rewritten with the next batch.
    tail: Vec<u8>,
    /// The file appends go to (0 or 1), and each file's preallocated size.
    current: usize,
    capacities: [u64; 2],
    /// CRC seed of the frames appended now (the generation they will be written under).
    seed: u32,
    /// The highest generation seen or written; the next compaction writes the one after.
    last_generation: u64,
    /// Set by a failed journal write or sync: nothing is acknowledged after it.
    failed: Option<String>,
}

/// Records taken from `pending` for one journal write: the bytes (with the file's last partial
/// page in front), where they go, the sequence number their waiters wait for, and how durable
/// they must be.
pub struct Batch {
    buf: AlignedBuf,
    len: usize,
    seq: u64,
    level: SyncLevel,
    write_at: u64,
}

impl Batch {
    /// Whether the data stores must be synced before this batch is written.
    pub fn needs_data_sync(&self) -> bool {
        self.level == SyncLevel::DataAndJournal
    }
}

/// One shard's journal.
pub struct Journal {
    paths: [PathBuf; 2],
    shard: u16,
    shards: u16,
    files: [Rc<DmaFile>; 2],
    st: RefCell<State>,
    /// Wakes the committer when records are appended.
    pub wake: Notify,
    /// Wakes waiters when a batch is written or synced.
    done: Notify,
    /// Smallest preallocated size (config `journal_size`).
    min_bytes: u64,
}

/// Paths of shard `shard`'s two journal files, used in turn (see the module docs).
pub fn journal_paths(meta_dir: &Path, shard: u16) -> [PathBuf; 2] {
    [
        meta_dir.join(format!("shard-{shard}.journal")),
        meta_dir.join(format!("shard-{shard}.journal.b")),
    ]
}

/// Whether a scanned file may be replayed: it starts with a header and its snapshot is whole.
fn usable(s: &Scan) -> bool {
    s.complete && matches!(s.records.first(), Some(Record::Header { .. }))
}

impl Journal {
    /// Reads the journal (if any) and feeds every valid record to `apply`; then opens it for
    /// appending. A missing journal starts a new one.
    pub fn recover(
        meta_dir: &Path,
        shard: u16,
        shards: u16,
        min_bytes: u64,
        mut apply: impl FnMut(Record) -> Result<(), String>,
    ) -> io::Result<(Journal, RecoveryReport)> {
        let paths = journal_paths(meta_dir, shard);
        // Earlier versions compacted into `shard-N.journal.new` and renamed it over the
        // journal; one left by a crash was never renamed in, so the journal is whole without it.
        let _ = std::fs::remove_file(paths[0].with_extension("journal.new"));
        let mut scans = Vec::with_capacity(2);
        let mut sizes = [0u64; 2];
        let mut tails: [Vec<u8>; 2] = Default::default();
        for (i, path) in paths.iter().enumerate() {
            let image = match std::fs::read(path) {
                Ok(b) => b,
                Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
                Err(e) => {
                    let msg = format!("reading {}: {e}", path.display());
                    return Err(io::Error::new(e.kind(), msg));
                }
            };
            let s = scan(&image);
            sizes[i] = image.len() as u64;
            let tail_start = s.valid_bytes / PAGE as usize * PAGE as usize;
            tails[i] = image[tail_start..s.valid_bytes].to_vec();
            scans.push(s);
        }
        let current = match (usable(&scans[0]), usable(&scans[1])) {
            (true, true) if scans[1].generation > scans[0].generation => 1,
            (false, true) => 1,
            _ => 0,
        };
        let other = 1 - current;
        let last_generation = scans[0].generation.max(scans[1].generation).max(1);
        let s = scans.swap_remove(current);
        let dropped = scans.pop().expect("invariant: two scans");
        if s.records.is_empty() && !dropped.records.is_empty() {
            // Never start empty while a journal holds records (a compaction cut short with no
            // whole journal beside it cannot happen in normal operation).
            return Err(io::Error::other(format!(
                "{} holds an incomplete journal and {} none: refusing to start empty over it \
                 (move both away to start with an empty depot)",
                paths[other].display(),
                paths[current].display()
            )));
        }
        let path = &paths[current];
        let mut report = RecoveryReport {
            records: s.records.len(),
            valid_bytes: s.valid_bytes as u64,
            torn: s.torn,
        };
        let generation = s.generation;
        let valid = s.valid_bytes as u64;
        let mut records = s.records.into_iter();
        match records.next() {
            None => {}
            Some(Record::Header { magic, shard: hs, shards: hn, .. })
                if magic != JOURNAL_MAGIC || hs != shard || hn != shards =>
            {
                return Err(io::Error::other(format!(
                    "{} was written by shard {hs} of {hn}, but this depot runs {shards} shards: \
                     start it with the same --cores as before (capabilities name their shard)",
                    path.display()
                )));
            }
            Some(Record::Header { .. }) => {}
            Some(_) => {
                return Err(io::Error::other(format!("{}: missing header record", path.display())))
            }
        }
        for rec in records {
            apply(rec).map_err(|e| io::Error::other(format!("{}: replay: {e}", path.display())))?;
        }
        let capacities = sizes.map(|n| min_bytes.max(n.div_ceil(PAGE) * PAGE));
        let created = paths.iter().any(|p| !p.exists());
        let open = |i: usize| {
            DmaFile::open(&paths[i], OpenMode { create: true, size_bytes: Some(capacities[i]) })
        };
        let files = [Rc::new(open(0)?), Rc::new(open(1)?)];
        if created {
            // A journal file must not vanish with its directory entry after a crash.
            std::fs::File::open(meta_dir).and_then(|d| d.sync_all())?;
        }
        let mut pending = Vec::new();
        let mut seed = frame_seed(generation);
        if valid == 0 {
            // A new journal: generation 1, an empty snapshot.
            seed = frame_seed(1);
            Record::Header { magic: JOURNAL_MAGIC, shard, shards, generation: 1 }
                .encode_framed(&mut pending);
            Record::SnapshotEnd { records: 0 }.encode_framed_seeded(&mut pending, seed);
            report.valid_bytes = 0;
        }
        // Whatever lies past the valid frames (a torn record) is zeroed so that a later, shorter
        // batch can never be followed by stale frames; so is the whole file not in use, which
        // may hold the frames of a compaction cut short.
        let clean_from = valid.div_ceil(PAGE) * PAGE;
        if clean_from < capacities[current] {
            zero_range(&files[current], clean_from, capacities[current] - clean_from)?;
        }
        if sizes[other] > 0 {
            zero_range(&files[other], 0, capacities[other])?;
        }
        let j = Journal {
            paths,
            shard,
            shards,
            files,
            st: RefCell::new(State {
                pending_sync: SyncLevel::DataAndJournal,
                pending,
                appended_seq: 1,
                written_seq: 0,
                synced_seq: 0,
                file_pos: valid,
                tail: std::mem::take(&mut tails[current]),
                current,
                capacities,
                seed,
                last_generation,
                failed: None,
            }),
            wake: Notify::new(),
            done: Notify::new(),
            min_bytes,
        };
        Ok((j, report))
    }

    /// Appends records; returns the sequence number to wait for. `sync` is how durable the
    /// batch must be before waiters wake (wait with `sync` = true for anything above
    /// [`SyncLevel::Written`]).
    pub fn append(&self, recs: &[Record], sync: SyncLevel) -> u64 {
        let mut st = self.st.borrow_mut();
        for r in recs {
            let seed = st.seed;
            r.encode_framed_seeded(&mut st.pending, seed);
        }
        st.pending_sync = st.pending_sync.max(sync);
        st.appended_seq += 1;
        let seq = st.appended_seq;
        drop(st);
        self.wake.notify_one();
        seq
    }

    /// Waits until batch `seq` is written (and synced, if `sync`). Fails if the journal failed.
    pub async fn wait(&self, seq: u64, sync: bool) -> Result<(), String> {
        loop {
            let wait = self.done.notified();
            {
                let st = self.st.borrow();
                if let Some(f) = &st.failed {
                    return Err(f.clone());
                }
                let reached = if sync { st.synced_seq } else { st.written_seq };
                if reached >= seq {
                    return Ok(());
                }
            }
            wait.await;
        }
    }

    /// Whether there is work for the committer.
    pub fn has_pending(&self) -> bool {
        !self.st.borrow().pending.is_empty()
    }

    /// Whether the committer should compact before its next write.
    pub fn wants_compaction(&self) -> bool {
        let st = self.st.borrow();
        st.file_pos + st.pending.len() as u64 + PAGE > st.capacities[st.current] / 4 * 3
    }

    /// Whether the records waiting for the next batch claim data written in place, so that
    /// the batch must sync the data stores before its journal write.
    pub fn pending_needs_data_sync(&self) -> bool {
        self.st.borrow().pending_sync == SyncLevel::DataAndJournal
    }

    /// Takes everything pending as the next batch (its place in the file fixed now, so
    /// batches are written in the order they were taken). `None` when nothing is pending.
    /// The batch is made as durable as its records asked: the caller syncs the data stores
    /// first when [`Batch::needs_data_sync`], and [`Journal::write_batch`] writes with
    /// RWF_DSYNC from [`SyncLevel::Journal`] up.
    pub fn take_batch(&self) -> Option<Batch> {
        let mut st = self.st.borrow_mut();
        if st.pending.is_empty() {
            return None;
        }
        let pending = std::mem::take(&mut st.pending);
        let level = std::mem::replace(&mut st.pending_sync, SyncLevel::Written);
        let total = st.tail.len() + pending.len();
        let len = end_with_zeros(total);
        let mut buf = AlignedBuf::new(len as usize);
        buf.set_len(len as usize);
        let full = buf.as_full_mut();
        full[..st.tail.len()].copy_from_slice(&st.tail);
        full[st.tail.len()..total].copy_from_slice(&pending);
        let write_at = st.file_pos / PAGE * PAGE;
        st.file_pos += pending.len() as u64;
        let keep_from = (st.file_pos / PAGE * PAGE - write_at) as usize;
        st.tail = full[keep_from..total].to_vec();
        Some(Batch { buf, len: len as usize, seq: st.appended_seq, level, write_at })
    }

    /// Writes a batch taken by [`Journal::take_batch`] (after its data sync, if it needs
    /// one) and wakes its waiters. The caller writes batches one at a time, in the order
    /// taken: a batch rewrites the previous one's last partial page. After a failure nothing
    /// more is written.
    pub async fn write_batch(&self, batch: Batch) -> Result<(), String> {
        let Batch { buf, len, seq, level, write_at } = batch;
        if let Some(f) = self.st.borrow().failed.clone() {
            return Err(f);
        }
        let need_sync = level >= SyncLevel::Journal;
        let file = self.files[self.st.borrow().current].clone();
        // A batch that must be durable is written with RWF_DSYNC: one operation, where a
        // write and then an fdatasync would be two dependent trips through the ring.
        let result = if need_sync {
            let (r, _buf) = file.write_at_durable(buf, write_at, 0..len).await;
            r.map_err(|e| format!("journal write (durable) failed: {e}"))
        } else {
            let (r, _buf) = file.write_at(buf, write_at, 0..len).await;
            r.map_err(|e| format!("journal write failed: {e}"))
        };
        self.finish(seq, need_sync, result.map(drop))
    }

    /// Ends a batch whose data sync failed: the journal latches and its waiters get `cause`.
    pub fn fail_batch(&self, batch: Batch, cause: String) -> Result<(), String> {
        self.finish(batch.seq, false, Err(cause))
    }

    /// Whether a write or sync failed (nothing is acknowledged any more).
    pub fn has_failed(&self) -> bool {
        self.st.borrow().failed.is_some()
    }

    fn finish(&self, seq: u64, synced: bool, result: Result<(), String>) -> Result<(), String> {
        let mut st = self.st.borrow_mut();
        match &result {
            Ok(()) => {
                st.written_seq = st.written_seq.max(seq);
                if synced {
                    st.synced_seq = st.synced_seq.max(seq);
                }
            }
            Err(e) => {
                tracing::error!(shard = self.shard, cause = %e, "journal failed: no more acknowledgements");
                st.failed.get_or_insert_with(|| e.clone());
            }
        }
        drop(st);
        self.done.notify_waiters();
        result
    }

    /// Rewrites the journal as `snapshot` (the whole table, which already reflects every
    /// pending record) in the other file under the next generation, syncs the data stores
    /// and then it, and continues appending there.
    pub async fn compact<F, Fut>(&self, snapshot: Vec<Record>, data_sync: F) -> Result<(), String>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<(), String>>,
    {
        let (seq, generation) = {
            let mut st = self.st.borrow_mut();
            st.pending.clear();
            st.pending_sync = SyncLevel::Written;
            // Records appended from now on go after this snapshot, in its generation.
            st.last_generation += 1;
            st.seed = frame_seed(st.last_generation);
            (st.appended_seq, st.last_generation)
        };
        let result = self.write_snapshot(snapshot, data_sync, generation).await;
        self.finish(seq, true, result)
    }

    async fn write_snapshot<F, Fut>(
        &self,
        snapshot: Vec<Record>,
        data_sync: F,
        generation: u64,
    ) -> Result<(), String>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<(), String>>,
    {
        let start = std::time::Instant::now();
        data_sync().await?;
        let seed = frame_seed(generation);
        let mut bytes = Vec::new();
        Record::Header { magic: JOURNAL_MAGIC, shard: self.shard, shards: self.shards, generation }
            .encode_framed(&mut bytes);
        for r in &snapshot {
            r.encode_framed_seeded(&mut bytes, seed);
        }
        Record::SnapshotEnd { records: snapshot.len() as u64 }
            .encode_framed_seeded(&mut bytes, seed);
        let len = end_with_zeros(bytes.len());
        let capacity = self.min_bytes.max(len * 4);
        let target = 1 - self.st.borrow().current;
        let file = &self.files[target];
        let path = &self.paths[target];
        let err = |what: &str, e: io::Error| {
            format!("journal compaction: {what} {}: {e}", path.display())
        };
        if capacity > self.st.borrow().capacities[target] {
            file.preallocate(capacity).map_err(|e| err("grow", e))?;
            self.st.borrow_mut().capacities[target] = capacity;
        }
        let mut buf = AlignedBuf::new(len as usize);
        buf.set_len(len as usize);
        buf.as_full_mut()[..bytes.len()].copy_from_slice(&bytes);
        let (r, _b) = file.write_at(buf, 0, 0..len as usize).await;
        r.map_err(|e| err("write", e))?;
        file.fdatasync().await.map_err(|e| err("sync", e))?;
        let tail_start = (bytes.len() as u64 / PAGE * PAGE) as usize;
        let mut st = self.st.borrow_mut();
        st.current = target;
        st.file_pos = bytes.len() as u64;
        st.tail = bytes[tail_start..].to_vec();
        drop(st);
        // Debug, not info: under a stream of overwrites (each journals its blocks' new
        // contents) a shard compacts many times a second.
        tracing::debug!(
            shard = self.shard,
            generation,
            bytes = bytes.len(),
            allocations = snapshot.len(),
            took_us = start.elapsed().as_micros() as u64,
            "journal compacted"
        );
        Ok(())
    }

    /// Bytes of valid frames in the current file (for STATUS and tests).
    pub fn file_pos(&self) -> u64 {
        self.st.borrow().file_pos
    }
}

/// Bytes to write for `used` bytes of frames: whole pages, with at least a frame header's
/// worth of zeros after the last frame, so replay always ends at a zero frame and never reads
/// on into what an older generation left in the following page.
fn end_with_zeros(used: usize) -> u64 {
    (used as u64 + FRAME_HEADER_BYTES as u64).div_ceil(PAGE) * PAGE
}

fn zero_range(file: &DmaFile, off: u64, len: u64) -> io::Result<()> {
    let mode = libc::FALLOC_FL_ZERO_RANGE | libc::FALLOC_FL_KEEP_SIZE;
    // SAFETY: plain syscall on an fd we own; offsets fit off_t (checked by the caller's sizes).
    let rc =
        unsafe { libc::fallocate(file.as_raw_fd(), mode, off as libc::off_t, len as libc::off_t) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
