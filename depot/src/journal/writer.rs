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
//! The file is preallocated; replay stops at the first zero frame. When the file passes three
//! quarters full it is compacted: a snapshot of the table (which already includes everything
//! pending) is written to a new file, synced, and renamed over the old one.

use std::cell::RefCell;
use std::io;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use ibp_io::fs::{DmaFile, OpenMode};
use ibp_io::sync::Notify;
use ibp_io::AlignedBuf;

use super::record::{scan, Record, JOURNAL_MAGIC};

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
    capacity: u64,
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
    path: PathBuf,
    shard: u16,
    shards: u16,
    file: RefCell<Rc<DmaFile>>,
    st: RefCell<State>,
    /// Wakes the committer when records are appended.
    pub wake: Notify,
    /// Wakes waiters when a batch is written or synced.
    done: Notify,
    /// Smallest preallocated size (config `journal_size`).
    min_bytes: u64,
}

/// Path of shard `shard`'s journal.
pub fn journal_path(meta_dir: &Path, shard: u16) -> PathBuf {
    meta_dir.join(format!("shard-{shard}.journal"))
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
        let path = journal_path(meta_dir, shard);
        let image = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
            Err(e) => {
                return Err(io::Error::new(e.kind(), format!("reading {}: {e}", path.display())))
            }
        };
        let s = scan(&image);
        let mut report = RecoveryReport {
            records: s.records.len(),
            valid_bytes: s.valid_bytes as u64,
            torn: s.torn,
        };
        let mut records = s.records.into_iter();
        match records.next() {
            None => {}
            Some(Record::Header { magic, shard: hs, shards: hn })
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
        let capacity = min_bytes.max((image.len() as u64).div_ceil(PAGE) * PAGE);
        let file = DmaFile::open(&path, OpenMode { create: true, size_bytes: Some(capacity) })?;
        let valid = s.valid_bytes as u64;
        let mut pending = Vec::new();
        if valid == 0 {
            Record::Header { magic: JOURNAL_MAGIC, shard, shards }.encode_framed(&mut pending);
            report.valid_bytes = 0;
        }
        // Whatever lies past the valid frames (a torn record) is zeroed so that a later, shorter
        // batch can never be followed by stale frames.
        let clean_from = valid.div_ceil(PAGE) * PAGE;
        if clean_from < capacity {
            zero_range(&file, clean_from, capacity - clean_from)?;
        }
        let tail_start = (valid / PAGE * PAGE) as usize;
        let tail = image.get(tail_start..valid as usize).map(<[u8]>::to_vec).unwrap_or_default();
        let j = Journal {
            path,
            shard,
            shards,
            file: RefCell::new(Rc::new(file)),
            st: RefCell::new(State {
                pending_sync: SyncLevel::DataAndJournal,
                pending,
                appended_seq: 1,
                written_seq: 0,
                synced_seq: 0,
                file_pos: valid,
                tail,
                capacity,
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
            r.encode_framed(&mut st.pending);
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
        st.file_pos + st.pending.len() as u64 + PAGE > st.capacity / 4 * 3
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
        let len = (total as u64).div_ceil(PAGE) * PAGE;
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
        let file = self.file.borrow().clone();
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
    /// pending record), syncs it and the data stores, and swaps it in.
    pub async fn compact<F, Fut>(&self, snapshot: Vec<Record>, data_sync: F) -> Result<(), String>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<(), String>>,
    {
        let seq = {
            let mut st = self.st.borrow_mut();
            st.pending.clear();
            st.pending_sync = SyncLevel::Written;
            st.appended_seq
        };
        let result = self.write_snapshot(snapshot, data_sync).await;
        self.finish(seq, true, result)
    }

    async fn write_snapshot<F, Fut>(
        &self,
        snapshot: Vec<Record>,
        data_sync: F,
    ) -> Result<(), String>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<(), String>>,
    {
        data_sync().await?;
        let mut bytes = Vec::new();
        Record::Header { magic: JOURNAL_MAGIC, shard: self.shard, shards: self.shards }
            .encode_framed(&mut bytes);
        for r in &snapshot {
            r.encode_framed(&mut bytes);
        }
        let len = (bytes.len() as u64).div_ceil(PAGE) * PAGE;
        let capacity = self.min_bytes.max(len * 4);
        let tmp = self.path.with_extension("journal.new");
        let _ = std::fs::remove_file(&tmp);
        let err =
            |what: &str, e: io::Error| format!("journal compaction: {what} {}: {e}", tmp.display());
        let file = DmaFile::open(&tmp, OpenMode { create: true, size_bytes: Some(capacity) })
            .map_err(|e| err("create", e))?;
        let mut buf = AlignedBuf::new(len as usize);
        buf.set_len(len as usize);
        buf.as_full_mut()[..bytes.len()].copy_from_slice(&bytes);
        let (r, _b) = file.write_at(buf, 0, 0..len as usize).await;
        r.map_err(|e| err("write", e))?;
        file.fdatasync().await.map_err(|e| err("sync", e))?;
        std::fs::rename(&tmp, &self.path).map_err(|e| err("rename", e))?;
        if let Some(dir) = self.path.parent() {
            std::fs::File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(|e| err("sync dir of", e))?;
        }
        let tail_start = (bytes.len() as u64 / PAGE * PAGE) as usize;
        let mut st = self.st.borrow_mut();
        st.file_pos = bytes.len() as u64;
        st.tail = bytes[tail_start..].to_vec();
        st.capacity = capacity;
        drop(st);
        *self.file.borrow_mut() = Rc::new(file);
        tracing::info!(
            shard = self.shard,
            bytes = bytes.len(),
            allocations = snapshot.len(),
            "journal compacted"
        );
        Ok(())
    }

    /// Bytes of valid frames in the current file (for STATUS and tests).
    pub fn file_pos(&self) -> u64 {
        self.st.borrow().file_pos
    }
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
