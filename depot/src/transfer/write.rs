//! The bulk write path: bytes from a [`Source`] into one or more ranges (spans) of an
//! allocation, in order.
//!
//! Flow: [`begin`] / [`begin_spans`] validate every span before any byte moves (offsets ≥ 0
//! else −30; each span inside the max size, and inside the alias window when the key is an
//! alias's, else −19; appends through a windowed alias −19) and hold the checksum blocks the
//! spans touch (exclusive, one range from the first to the last, so writers never deadlock);
//! then the command acknowledges its client; [`WriteTicket::run`] receives the payload span
//! by span, chunk by chunk, straight into pool buffers, writes each chunk with O_DIRECT while
//! the next one is received (two writes in flight), CRCs every block (and computes its disk
//! digest, for ALLOCATE_CHKSUM allocations) while it is in the buffer, and commits the new
//! size, CRCs and digests to the journal (fdatasync first for hard allocations).
//!
//! Blocks that already hold acknowledged bytes are journaled before they are rewritten in
//! place (doublewrite). A chunk wholly below the size (an overwrite, which cannot change the
//! size) is committed by that image itself, which carries its CRCs
//! ([`Record::CommittedImage`]): one journal write, durable for hard allocations, after which
//! the in-place write needs neither a data sync nor a commit record of its own.
//!
//! A chunk is whole checksum blocks. The first and last block of a span may be partial: their
//! other bytes are read from disk first (or are zeros, past the data), so the block is
//! rewritten whole and its CRC covers exactly what is on disk. When a span touches a block an
//! earlier span of the same command touched, the earlier writes are drained first, so the
//! later span's edges are read back with the earlier bytes in them (later spans win).
//!
//! After a failure (source gone or refused, storage error) the allocation is settled before
//! its blocks are released: bytes written past its size are zeroed again (the invariant of
//! checksum.rs), and blocks already rewritten below the size have their CRCs and digests
//! re-read from disk and committed, so no CRC ever disagrees with its block. The size does
//! not change.

use std::cell::Cell;
use std::collections::{BTreeMap, VecDeque};
use std::io;
use std::ops::Range;
use std::rc::Rc;

use ibp_client::proto::request::IoSpan;
use ibp_client::proto::{ErrorCode, KeyRef};
use ibp_io::FixedBuf;

use crate::checksum::{blocks_touched, zero_block_crc};
use crate::cmd::{lookup, span_range, View};
use crate::datapath::{chunk_crcs, chunk_sums, chunks, Chunk, Slice};
use crate::journal::record::Record;
use crate::keys::KeyKind;
use crate::lock::{AllocRt, BlockGuard, WriterGuard};
use crate::shard::{PendingImage, Shard};

/// Disk writes of one transfer in flight at once, while the next chunk is received: enough
/// for the disk to see a queue (each holds one pool buffer).
const WRITES_IN_FLIGHT: usize = 4;

/// Where a transfer's payload comes from.
// The futures are !Send on purpose: everything runs on its shard's own core.
#[allow(async_fn_in_trait)]
pub trait Source {
    /// Fills `buf[at..at + n]` with the next `n` bytes of the payload. On error the buffer may
    /// be lost (a cancelled socket read keeps it until its completion). Once it returns, every
    /// byte it gave is final: a source that checks the bytes (network checksums) checks them
    /// before returning, since the chunk goes to disk next.
    async fn fill(&mut self, buf: FixedBuf, at: usize, n: usize) -> io::Result<FixedBuf>;

    /// Whether [`Source::fill_slice`] may be used: the bytes need no check before they land
    /// (a plain socket; not network-checksummed payload, which must be verified first).
    fn fills_slices(&self) -> bool {
        false
    }

    /// Fills all of `dst` with the next bytes of the payload, straight into memory that is not
    /// a pool buffer (a RAM region). Only called when [`Source::fills_slices`] says so; nothing
    /// may write into `dst` after it returns or its future is dropped.
    async fn fill_slice(&mut self, dst: &mut [u8]) -> io::Result<()> {
        let _ = dst;
        Err(io::Error::other("this source cannot fill slices"))
    }
}

/// Why a transfer failed: the peer (socket, or bytes it refused) or our storage.
#[derive(Debug)]
pub enum Failure {
    Peer(io::Error),
    Storage(String),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Peer(e) => write!(f, "{e}"),
            Failure::Storage(s) => f.write_str(s),
        }
    }
}

/// Where the bytes of a write go.
pub enum Target {
    /// STORE: `len` bytes at the current end, after any appends already in flight.
    Append(i64),
    /// WRITE (one span) and VEC_WRITE (1..=IOVEC_MAX spans), in payload order.
    Spans(Vec<IoSpan>),
}

/// A validated write holding its blocks; dropping it without `run` releases everything.
pub struct WriteTicket {
    shard: Rc<Shard>,
    v: View,
    /// The spans, in payload order.
    spans: Vec<Range<u64>>,
    /// Lowest and highest byte any span touches.
    pub off: u64,
    pub end: u64,
    /// The end this write reserved for appends, released on drop.
    append_end: Option<u64>,
    rt: Rc<AllocRt>,
    /// The journal batch holding this write's last `CommittedImage` (0: none).
    committed_seq: Cell<u64>,
    _writer: WriterGuard,
    _blocks: BlockGuard,
}

/// Validates a write of `len` bytes at `offset` (`None` = append at the current size, after
/// any appends already in flight) through write key `key`, and holds its blocks.
pub async fn begin(
    shard: &Rc<Shard>,
    key: &KeyRef,
    offset: Option<i64>,
    len: i64,
) -> Result<WriteTicket, ErrorCode> {
    let v = lookup(shard, KeyKind::Write, key)?;
    begin_view(shard, v, offset, len).await
}

/// As [`begin`], for an allocation already looked up.
pub async fn begin_view(
    shard: &Rc<Shard>,
    v: View,
    offset: Option<i64>,
    len: i64,
) -> Result<WriteTicket, ErrorCode> {
    let target = match offset {
        None => Target::Append(len),
        Some(offset) => Target::Spans(vec![IoSpan { offset, len }]),
    };
    begin_target(shard, v, &target).await
}

/// Validates a write of `target` through write key `key`, and holds its blocks.
pub async fn begin_spans(
    shard: &Rc<Shard>,
    key: &KeyRef,
    target: &Target,
) -> Result<WriteTicket, ErrorCode> {
    let v = lookup(shard, KeyKind::Write, key)?;
    begin_target(shard, v, target).await
}

async fn begin_target(
    shard: &Rc<Shard>,
    mut v: View,
    target: &Target,
) -> Result<WriteTicket, ErrorCode> {
    if shard.stores[v.resource as usize].latched().is_some() {
        return Err(ErrorCode::FileWrite);
    }
    let rt = shard.rt(v.id);
    let append = matches!(target, Target::Append(_));
    if append && rt.span_writers.get() > 0 {
        // A write at offsets still in flight (a pipelined WRITE committing) may raise the
        // size this append starts at.
        rt.no_span_writers().await;
        match shard.table.borrow().get(v.id) {
            Some(a) => v.size = a.size,
            None => return Err(ErrorCode::CapNotFound),
        }
    }
    let spans = plan_spans(&v, &rt, target)?;
    let append_end = append.then(|| spans[0].end);
    let live = spans.iter().filter(|s| s.end > s.start);
    let off = live.clone().map(|s| s.start).min().unwrap_or(spans[0].start);
    let end = live.map(|s| s.end).max().unwrap_or(off);
    let writer = WriterGuard::new(&rt, !append);
    let blocks = rt.lock(blocks_touched(off, end, v.checksum_block), true).await;
    // Another writer may have grown the allocation while we waited for the blocks; the edge
    // blocks must be read back from what is on disk now.
    if let Some(a) = shard.table.borrow().get(v.id) {
        v.size = a.size;
    }
    Ok(WriteTicket {
        shard: shard.clone(),
        v,
        spans,
        off,
        end,
        append_end,
        rt,
        committed_seq: Cell::new(0),
        _writer: writer,
        _blocks: blocks,
    })
}

/// Turns the target into byte ranges of the allocation, validating each. An append reserves
/// its range so concurrent STOREs append in order.
fn plan_spans(v: &View, rt: &AllocRt, target: &Target) -> Result<Vec<Range<u64>>, ErrorCode> {
    match target {
        Target::Append(len) => {
            if *len < 0 {
                return Err(ErrorCode::InvalidParameter);
            }
            if v.window.is_some() {
                return Err(ErrorCode::WouldExceedLimit);
            }
            let off = rt.append_end.get().unwrap_or(v.size).max(v.size);
            let end = off
                .checked_add(*len as u64)
                .filter(|&e| e <= v.max_size)
                .ok_or(ErrorCode::WouldExceedLimit)?;
            rt.append_end.set(Some(end));
            Ok(std::iter::once(off..end).collect())
        }
        Target::Spans(list) => {
            let out = list.iter().map(|s| span_range(v, s)).collect::<Result<Vec<_>, _>>()?;
            if out.is_empty() {
                return Err(ErrorCode::InvalidParameter);
            }
            Ok(out)
        }
    }
}

impl Drop for WriteTicket {
    fn drop(&mut self) {
        if self.append_end.is_some() && self.rt.append_end.get() == self.append_end {
            self.rt.append_end.set(None);
        }
    }
}

/// Per finished span: its first block, the CRCs and the disk digests of its blocks, and whether
/// every chunk of it was committed already (by a [`Record::CommittedImage`]).
type SpanDone = (u64, Vec<u32>, Vec<u8>, bool);

/// A received chunk: its blocks' CRCs and digests, and whether it is committed already.
type ChunkDone = (Vec<u32>, Vec<u8>, bool);

impl WriteTicket {
    /// Payload bytes of the whole write.
    pub fn len(&self) -> u64 {
        self.spans.iter().map(|s| s.end - s.start).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Moves the payload from `src` to disk and commits it. Returns the bytes written.
    pub async fn run<S: Source>(self, src: &mut S) -> Result<u64, Failure> {
        self.receive(src).await.finish().await
    }

    /// Receives the whole payload from `src`; its last disk writes may still be in flight.
    /// [`Landing::finish`] completes them and commits, and may run while the connection goes
    /// on to the next command (pipelined STOREs overlap one's commit with the next's payload).
    pub async fn receive<S: Source>(self, src: &mut S) -> Landing {
        let mut written = Vec::new();
        let mut inflight = VecDeque::new();
        let received = self.receive_spans(src, &mut written, &mut inflight).await;
        Landing { ticket: self, inflight, written, received }
    }

    async fn receive_spans<S: Source>(
        &self,
        src: &mut S,
        written: &mut Vec<Range<u64>>,
        inflight: &mut VecDeque<Pending>,
    ) -> Result<Vec<SpanDone>, Failure> {
        let v = &self.v;
        let cb = v.checksum_block;
        let mut done = Vec::with_capacity(self.spans.len());
        let mut touched = Touched::default();
        let mut data_end = v.size;
        for span in &self.spans {
            if span.end <= span.start {
                done.push((span.start / cb, Vec::new(), Vec::new(), false));
                continue;
            }
            if touched.meets_then_add(blocks_touched(span.start, span.end, cb)) {
                while !inflight.is_empty() {
                    wait_write(inflight).await?;
                }
            }
            let plan =
                chunks(span.start, span.end, cb, self.shard.cfg.buffer_bytes, v.extent_bytes);
            let mut crcs = Vec::with_capacity(plan.iter().map(|c| c.blocks as usize).sum());
            let mut sums = Vec::new();
            let mut committed = true;
            for c in plan {
                let (c_crcs, c_sums, c_committed) =
                    self.receive_chunk(src, &c, data_end, inflight, written).await?;
                crcs.extend(c_crcs);
                sums.extend(c_sums);
                committed &= c_committed;
            }
            done.push((span.start / cb, crcs, sums, committed));
            data_end = data_end.max(span.end);
        }
        Ok(done)
    }

    async fn receive_chunk<S: Source>(
        &self,
        src: &mut S,
        c: &Chunk,
        data_end: u64,
        inflight: &mut VecDeque<Pending>,
        written: &mut Vec<Range<u64>>,
    ) -> Result<ChunkDone, Failure> {
        let v = &self.v;
        let cb = v.checksum_block;
        let store = &self.shard.stores[v.resource as usize];
        if store.is_direct() && src.fills_slices() && c.payload.end <= c.disk_len {
            // RAM: the payload goes straight from the socket into the region, whose edge bytes
            // are already what the block must keep (data below, zeros past the size).
            written.push(c.first_block..c.first_block + c.blocks);
            // SAFETY: this write holds the chunk's blocks exclusively (begin_target) and they
            // belong to the allocation's extent; the slice is dropped before the guard.
            let Some(region) = (unsafe { store.ram_slice(v.base + c.alloc_off, c.disk_len) })
            else {
                return Err(Failure::Storage("RAM range outside the region".into()));
            };
            src.fill_slice(&mut region[c.payload.clone()]).await.map_err(Failure::Peer)?;
            let crcs = chunk_crcs(region, c, cb);
            let sums = v.digest.map_or_else(Vec::new, |k| chunk_sums(region, c, cb, k));
            return Ok((crcs, sums, false));
        }
        let mut buf = ibp_io::buf::acquire().await;
        buf.set_len(0);
        buf = prefill_edges(&self.shard, v, c, data_end, buf)
            .await
            .map_err(|e| Failure::Storage(e.to_string()))?;
        buf = src.fill(buf, c.payload.start, c.payload.len()).await.map_err(Failure::Peer)?;
        buf.set_len(c.disk_len);
        let crcs = chunk_crcs(buf.as_slice(), c, cb);
        let sums = v.digest.map_or_else(Vec::new, |k| chunk_sums(buf.as_slice(), c, cb, k));
        // Blocks that hold acknowledged bytes are rewritten in place: journal their new
        // contents first (doublewrite), so a crash mid-write is completed on replay instead
        // of leaving a torn block that matches neither CRC.
        // Blocks whose CRC is the zero block's (holes below the size: several streams filling
        // one allocation make the size jump ahead of them) need only their range journaled.
        // A chunk wholly below the size (an overwrite: the size cannot change) is committed
        // by its image alone, which carries its CRCs: one durable journal write, after which
        // the in-place write needs no sync and no commit record of its own.
        let (acked_blocks, holes, below_size) = {
            let t = self.shard.table.borrow();
            let a = t.get(v.id);
            let size_now = a.map_or(v.size, |a| a.size);
            let acked = size_now.saturating_sub(c.alloc_off).div_ceil(cb).min(c.blocks);
            let zero = zero_block_crc(cb);
            let holes =
                a.is_some_and(|a| (0..acked).all(|i| a.crcs.get(c.first_block + i, cb) == zero));
            (acked, holes, c.alloc_off + c.payload.end as u64 <= size_now)
        };
        // Only for one-span writes: with several spans, a later span may rewrite blocks of an
        // earlier one, whose CRCs are applied at the final commit and would then overwrite the
        // later span's early-committed ones.
        let commit_now = self.spans.len() == 1
            && acked_blocks == c.blocks
            && below_size
            && !holes
            && v.digest.is_none()
            && self.shard.is_disk(v.resource);
        // The image is appended now and the in-place write waits for it in its own task, so
        // the next chunk is received while the journal write is under way.
        let image = if commit_now {
            // Counted as written first: if the record fails, settle() re-reads these blocks
            // and puts back the CRCs of what is on disk.
            written.push(c.first_block..c.first_block + c.blocks);
            let Some(Record::Data { size, .. }) =
                self.shard.table.borrow_mut().apply_data(v.id, 0, c.first_block, &crcs)
            else {
                return Err(Failure::Storage("allocation vanished during the transfer".into()));
            };
            let rec = Record::CommittedImage {
                id: v.id,
                size,
                first_block: c.first_block,
                crcs: crcs.clone(),
                data: buf.as_slice()[..c.disk_len].to_vec(),
            };
            let image = self.shard.journal_image(v.resource, rec, v.sync);
            if let Some(p) = &image {
                self.committed_seq.set(self.committed_seq.get().max(p.seq()));
            }
            image
        } else if acked_blocks > 0 {
            let (id, first_block) = (v.id, c.first_block);
            let rec = if holes {
                Record::ZeroImage { id, first_block, blocks: acked_blocks }
            } else {
                let len = ((acked_blocks * cb) as usize).min(c.disk_len);
                Record::Image { id, first_block, data: buf.as_slice()[..len].to_vec() }
            };
            self.shard.journal_image(v.resource, rec, v.sync)
        } else {
            None
        };
        if inflight.len() >= WRITES_IN_FLIGHT {
            wait_write(inflight).await?;
        }
        if !commit_now {
            written.push(c.first_block..c.first_block + c.blocks);
        }
        let at = v.base + c.alloc_off;
        inflight.push_back(spawn_write(self.shard.clone(), v.resource, buf, at, c.disk_len, image));
        Ok((crcs, sums, commit_now))
    }

    /// Records the new size, CRCs and digests of every span, durably for hard allocations;
    /// `appended` runs once the records hold their place in the journal.
    async fn commit(&self, done: &[SpanDone], appended: impl FnOnce()) -> Result<(), Failure> {
        let mut recs = Vec::with_capacity(done.len() * 2);
        {
            let mut t = self.shard.table.borrow_mut();
            for (span, (first, crcs, sums, committed)) in self.spans.iter().zip(done) {
                if *committed {
                    continue; // its CommittedImage records already hold it
                }
                let Some(rec) = t.apply_data(self.v.id, span.end, *first, crcs) else {
                    return Err(Failure::Storage("allocation vanished during the transfer".into()));
                };
                recs.push(rec);
                if !sums.is_empty() {
                    recs.extend(t.apply_digests(self.v.id, *first, sums));
                }
            }
        }
        let seq = self.shard.commit_append(self.v.resource, &recs, self.v.sync);
        appended();
        let r = self.shard.commit_wait(seq, self.v.sync).await.map_err(Failure::Storage);
        self.rt.changed.notify_waiters();
        r
    }

    /// After a failed transfer: bytes written past the allocation's size are zeroed again,
    /// then every block rewritten below the size has its CRC (and digest) recomputed from disk
    /// and committed.
    async fn settle(&self, written: &[Range<u64>]) {
        if written.is_empty() {
            return;
        }
        let (shard, v) = (&self.shard, &self.v);
        let cb = v.checksum_block;
        let size = shard.table.borrow().get(v.id).map_or(v.size, |a| a.size);
        let top_block = written.iter().map(|r| r.end).max().unwrap_or(0);
        let top = top_block.saturating_mul(cb).min(v.extent_bytes);
        let store = &shard.stores[v.resource as usize];
        if top > size {
            if let Err(e) = store.zero(v.base + size, top - size) {
                tracing::error!(shard = shard.idx, cause = %e, "could not zero an aborted write");
            }
        }
        let below = size.div_ceil(cb);
        let mut recs = Vec::new();
        for r in written {
            let (b0, b1) = (r.start, r.end.min(below));
            if b1 <= b0 {
                continue;
            }
            let end = (b1 * cb).min(v.extent_bytes);
            for c in chunks(b0 * cb, end, cb, shard.cfg.buffer_bytes, v.extent_bytes) {
                let buf = ibp_io::buf::acquire().await;
                let (res, buf) = store.read(buf, v.base + c.alloc_off, c.disk_len).await;
                if let Err(e) = res {
                    tracing::error!(shard = shard.idx, cause = %e, "could not re-read an aborted write");
                    continue;
                }
                let mut t = shard.table.borrow_mut();
                recs.extend(t.apply_data(
                    v.id,
                    0,
                    c.first_block,
                    &chunk_crcs(buf.as_slice(), &c, cb),
                ));
                if let Some(k) = v.digest {
                    let sums = chunk_sums(buf.as_slice(), &c, cb, k);
                    recs.extend(t.apply_digests(v.id, c.first_block, &sums));
                }
            }
        }
        if let Err(e) = shard.commit(v.resource, &recs, v.sync).await {
            tracing::error!(shard = shard.idx, cause = %e, "could not record an aborted write");
        }
    }
}

/// A write whose payload is all received: its last disk writes may still be in flight, and
/// it holds its blocks until [`Landing::finish`] has committed (or settled) it.
pub struct Landing {
    ticket: WriteTicket,
    inflight: VecDeque<Pending>,
    written: Vec<Range<u64>>,
    received: Result<Vec<SpanDone>, Failure>,
}

impl Landing {
    /// The error that cut the payload short, when it was the peer's (the connection is no
    /// longer in step and must close once the write is settled).
    pub fn peer_failure(&self) -> Option<&io::Error> {
        match &self.received {
            Err(Failure::Peer(e)) => Some(e),
            _ => None,
        }
    }

    /// Waits for the disk writes, then commits the new size, CRCs and digests (durably for
    /// hard allocations); after a failure, settles the allocation instead. Returns the bytes
    /// written.
    pub async fn finish(self) -> Result<u64, Failure> {
        self.finish_after(async {}, || {}).await
    }

    /// As [`Landing::finish`], in step with an earlier write of the same connection whose
    /// commit may still be under way: `gate` resolves once that write's records are in the
    /// journal, and `appended` is called once this write's are (or it gave up). The two then
    /// share the journal's group commit.
    pub async fn finish_after(
        mut self,
        gate: impl std::future::Future<Output = ()>,
        appended: impl FnOnce(),
    ) -> Result<u64, Failure> {
        gate.await;
        let mut appended = Some(appended);
        let mut appended = move || {
            if let Some(f) = appended.take() {
                f();
            }
        };
        let all_committed = matches!(&self.received, Ok(done) if !done.is_empty()
            && done.iter().all(|d| d.3));
        if all_committed && self.ticket.committed_seq.get() > 0 {
            // Every chunk was committed by its image: the write is acknowledged once those
            // are in the journal (durably for hard allocations), whatever becomes of the
            // in-place writes, which replay completes. They finish in the background, still
            // holding the blocks, so no reader sees the old bytes.
            appended();
            let (t, seq) = (&self.ticket, self.ticket.committed_seq.get());
            if t.shard.journal_wait(seq, t.v.sync).await.is_ok() {
                let len = t.len();
                ibp_io::spawn(self.land_in_background());
                return Ok(len);
            }
            // The journal failed: the in-place writes never start; settle below.
        }
        // Every write must have landed before the commit, or before a failed transfer is
        // settled (a write still in flight would land after the scrub).
        let mut landed = Ok(());
        while !self.inflight.is_empty() {
            let r = wait_write(&mut self.inflight).await;
            if landed.is_ok() {
                landed = r;
            }
        }
        let t = &self.ticket;
        let r = match (self.received, landed) {
            (Ok(done), Ok(())) => t.commit(&done, appended).await,
            (Err(e), _) | (Ok(_), Err(e)) => {
                appended();
                Err(e)
            }
        };
        if r.is_err() {
            t.settle(&self.written).await;
        }
        r.map(|()| t.len())
    }

    /// After an acknowledgement by `CommittedImage`s alone: waits for the in-place writes,
    /// then releases the blocks. A failed in-place write latched its store; the journal still
    /// holds the acknowledged bytes, so nothing is settled from disk (that would replace them
    /// with what the failed write left).
    async fn land_in_background(mut self) {
        while !self.inflight.is_empty() {
            if let Err(e) = wait_write(&mut self.inflight).await {
                tracing::error!(
                    shard = self.ticket.shard.idx,
                    cause = %e,
                    "in-place write of a committed overwrite failed; its journal image completes it at the next start"
                );
            }
        }
        self.ticket.rt.changed.notify_waiters();
    }
}

/// Merged block ranges already written by earlier spans of one command.
#[derive(Default)]
struct Touched(BTreeMap<u64, u64>);

impl Touched {
    /// Whether `r` meets a range already present; then adds it.
    fn meets_then_add(&mut self, r: Range<u64>) -> bool {
        let overlapping: Vec<(u64, u64)> = self
            .0
            .range(..r.end)
            .rev()
            .take_while(|(_, &end)| end > r.start)
            .map(|(&s, &e)| (s, e))
            .collect();
        let meets = !overlapping.is_empty();
        let (mut lo, mut hi) = (r.start, r.end);
        for (s, e) in overlapping {
            self.0.remove(&s);
            lo = lo.min(s);
            hi = hi.max(e);
        }
        self.0.insert(lo, hi);
        meets
    }
}

type Pending = (ibp_io::JoinHandle, Rc<Cell<Option<io::Result<()>>>>);

fn spawn_write(
    shard: Rc<Shard>,
    resource: u16,
    buf: FixedBuf,
    at: u64,
    len: usize,
    image: Option<PendingImage>,
) -> Pending {
    let cell = Rc::new(Cell::new(None));
    let out = cell.clone();
    let h = ibp_io::spawn(async move {
        // Blocks holding acknowledged bytes are rewritten only once their image is in the
        // journal (durably, for hard allocations).
        if let Some(p) = &image {
            if let Err(e) = shard.image_durable(p).await {
                shard.image_done(image);
                out.set(Some(Err(io::Error::other(e))));
                return;
            }
        }
        let (r, _buf) = shard.stores[resource as usize].write(buf, at, 0..len).await;
        // The blocks are on disk (or the store latched): a compaction from now on need not
        // keep their image; the journal copy stays until then.
        shard.image_done(image);
        out.set(Some(r));
    });
    (h, cell)
}

async fn wait_write(inflight: &mut VecDeque<Pending>) -> Result<(), Failure> {
    let Some((h, cell)) = inflight.pop_front() else { return Ok(()) };
    h.await;
    match cell.take() {
        Some(Ok(())) => Ok(()),
        Some(Err(e)) => Err(Failure::Storage(e.to_string())),
        None => Err(Failure::Storage("write task ended without a result".into())),
    }
}

/// Fills the parts of the chunk's first and last block that the transfer does not cover:
/// from disk where the allocation has data (below `data_end`), zeros elsewhere.
async fn prefill_edges(
    shard: &Shard,
    v: &View,
    c: &Chunk,
    data_end: u64,
    mut buf: FixedBuf,
) -> io::Result<FixedBuf> {
    let cb = v.checksum_block as usize;
    let mut edges = Vec::with_capacity(2);
    if !c.payload.start.is_multiple_of(cb) {
        edges.push(c.payload.start / cb);
    }
    let last = c.blocks as usize - 1;
    if c.payload.end < (last + 1) * cb && !edges.contains(&last) {
        edges.push(last);
    }
    for i in edges {
        let start = i * cb;
        let disk_end = ((i + 1) * cb).min(c.disk_len);
        let block_off = c.alloc_off + start as u64;
        buf.as_full_mut()[start..(i + 1) * cb].fill(0);
        if block_off < data_end && disk_end > start {
            let slice = Slice::new(buf, start, disk_end - start);
            let (r, s) = shard.stores[v.resource as usize]
                .read(slice, v.base + block_off, disk_end - start)
                .await;
            buf = s.buf;
            r?;
        }
    }
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::Touched;

    #[test]
    fn touched_ranges_merge_and_report_overlap() {
        let mut t = Touched::default();
        assert!(!t.meets_then_add(5..7));
        assert!(!t.meets_then_add(0..2));
        assert!(!t.meets_then_add(7..9), "adjacent ranges share no block");
        assert!(t.meets_then_add(6..8));
        assert!(t.meets_then_add(1..2));
        assert!(!t.meets_then_add(2..5));
        assert!(t.meets_then_add(0..100));
        assert_eq!(t.0.len(), 1);
    }
}
