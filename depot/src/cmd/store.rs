//! STORE (2, append), WRITE (13, at an offset) and their `_CHKSUM` forms (28, 27): the bulk
//! write path, which VEC_WRITE (33/34, `vec_write`) shares with a list of spans.
//!
//! Flow: validate the header and every span (offsets ≥ 0 else −30; each span inside the max
//! size, and inside the alias window when the key is an alias's, else −19; appends through a
//! windowed alias −19) before any byte moves → hold the checksum blocks the spans touch
//! (exclusive) → `1 \n` → receive the payload span by span, chunk by chunk, straight into
//! pool buffers (bytes the client pipelined ahead are taken from the connection buffer first)
//! → write each chunk with O_DIRECT while the next one is received (two writes in flight) →
//! CRC (and disk digest, for ALLOCATE_CHKSUM allocations) every block while it is in the
//! buffer → commit the new size, CRCs and digests to the journal (fdatasync first for hard
//! allocations) → `1 <total> \n`.
//!
//! A chunk is whole checksum blocks. The first and last block of a span may be partial: their
//! other bytes are read from disk first (or are zeros, past the data), so the block is
//! rewritten whole and its CRC covers exactly what is on disk. When a span touches a block an
//! earlier span of the same command touched, the earlier writes are drained first, so the
//! later span's edges are read back with the earlier bytes in them (later spans win).
//!
//! Network checksums (`_CHKSUM`, PROTOCOL.md §10, state in `netsum`): every network block is
//! verified before any byte of it is written: when a chunk ends inside a network block, the
//! rest of that block is read ahead and verified before the chunk goes to disk. A digest
//! mismatch answers −63 and closes (the rest of the stream is unread); nothing of the bad
//! block or after it reaches disk.
//!
//! Any failure after the header (client gone, digest mismatch, storage error) settles the
//! allocation before the blocks are released: bytes past the old size are zeroed again, and
//! the blocks already rewritten below the old size (verified data, when checksummed) have
//! their CRCs and digests re-read from disk and committed, so the allocation stays readable
//! and every CRC matches its block. The size does not change.

use std::cell::Cell;
use std::collections::{BTreeMap, VecDeque};
use std::io;
use std::ops::Range;
use std::rc::Rc;
use std::time::Duration;

use ibp_client::proto::request::{ChksumSpec, IoSpan};
use ibp_client::proto::{reply, ErrorCode, KeyRef};
use ibp_io::FixedBuf;

use super::{in_window, lookup, net_spec, reply_error, server_sync, Ctx, Next, View};
use crate::checksum::blocks_touched;
use crate::datapath::{chunk_crcs, chunk_sums, chunks, Chunk, Slice};
use crate::keys::KeyKind;
use crate::lock::{AllocRt, WriterGuard};
use crate::netsum::NetSum;
use crate::shard::Shard;

/// Disk writes of one transfer in flight at once: one draining while the next is received.
const WRITES_IN_FLIGHT: usize = 2;

type Pending = (ibp_io::JoinHandle, Rc<Cell<Option<io::Result<()>>>>);

/// Where the bytes of a write go.
pub enum Target {
    /// STORE: `len` bytes at the current end.
    Append(i64),
    /// WRITE (one span) and VEC_WRITE (1..=IOVEC_MAX spans), in payload order.
    Spans(Vec<IoSpan>),
}

pub async fn run(
    ctx: &mut Ctx<'_>,
    key: &KeyRef,
    target: Target,
    chksum: Option<ChksumSpec>,
    timeout_s: i64,
) -> (Next, bool) {
    let shard = ctx.shard.clone();
    let mut v = match lookup(&shard, KeyKind::Write, key) {
        Ok(v) => v,
        Err(code) => return reply_error(ctx.conn, code, Next::Close).await,
    };
    let net = match net_spec(&shard, chksum) {
        Ok(n) => n,
        Err(code) => return reply_error(ctx.conn, code, Next::Close).await,
    };
    if shard.stores[v.resource as usize].latched().is_some() {
        return reply_error(ctx.conn, ErrorCode::FileWrite, Next::Close).await;
    }
    let rt = shard.rt(v.id);
    let spans = match plan_spans(&v, &rt, &target) {
        Ok(s) => s,
        Err(code) => return reply_error(ctx.conn, code, Next::Close).await,
    };
    let total: u64 = spans.iter().map(|s| s.end - s.start).sum();
    let append_end = matches!(target, Target::Append(_)).then(|| spans[0].end);
    let writer = WriterGuard::new(&rt);
    let guard = rt.lock(hull(&spans, v.checksum_block), true).await;
    // Another writer may have grown the allocation while we waited for the blocks.
    if let Some(a) = shard.table.borrow().get(v.id) {
        v.size = a.size;
    }
    let mut ack = Vec::with_capacity(4);
    reply::ok(&mut ack);
    if ctx.conn.send(ack).await.is_err() {
        release_append(&rt, append_end);
        return (Next::Drop, false);
    }
    let mut job = Job {
        frame: net.map(|(kind, block)| NetSum::new(kind, block, total)),
        inactivity: server_sync(timeout_s),
        written: Vec::new(),
        done: Vec::new(),
    };
    let result = receive_and_write(ctx, &shard, &v, &spans, &mut job).await;
    let outcome = match result {
        Ok(()) => commit(&shard, &v, &spans, &job).await,
        Err(e) => Err(e),
    };
    if outcome.is_err() {
        settle(&shard, &v, &job.written).await;
    }
    release_append(&rt, append_end);
    drop(guard);
    drop(writer);
    match outcome {
        Ok(()) => {
            let mut out = Vec::with_capacity(24);
            reply::count(&mut out, total as i64);
            match ctx.conn.send(out).await {
                Ok(()) => (Next::Continue, true),
                Err(_) => (Next::Drop, true),
            }
        }
        Err(Failure::Peer(e)) => {
            tracing::debug!(shard = shard.idx, cause = %e, "store cut short by the client");
            (Next::Drop, false)
        }
        Err(Failure::Digest) => {
            tracing::info!(shard = shard.idx, id = v.id, "network digest mismatch on a write");
            reply_error(ctx.conn, ErrorCode::Chksum, Next::Close).await
        }
        Err(Failure::Storage(e)) => {
            tracing::error!(shard = shard.idx, cause = %e, "store failed");
            reply_error(ctx.conn, ErrorCode::FileWrite, Next::Close).await
        }
    }
}

/// Validates the target and turns it into byte ranges of the allocation, before any byte
/// moves. An append reserves its range so concurrent STOREs append in order.
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
            Ok(vec![off..end])
        }
        Target::Spans(list) => {
            let mut out = Vec::with_capacity(list.len());
            for s in list {
                if s.offset < 0 || s.len < 0 {
                    return Err(ErrorCode::InvalidParameter);
                }
                let off = s.offset as u64;
                let end = off
                    .checked_add(s.len as u64)
                    .filter(|&e| e <= v.max_size && in_window(v, off, e))
                    .ok_or(ErrorCode::WouldExceedLimit)?;
                out.push(off..end);
            }
            Ok(out)
        }
    }
}

fn release_append(rt: &AllocRt, end: Option<u64>) {
    if end.is_some() && rt.append_end.get() == end {
        rt.append_end.set(None);
    }
}

/// The blocks from the first to the last byte any span touches (one lock, so writers that
/// take several ranges can never deadlock each other).
pub fn hull(spans: &[Range<u64>], cb: u64) -> Range<u64> {
    let mut it = spans.iter().filter(|s| s.end > s.start);
    let Some(first) = it.next() else { return 0..0 };
    let (lo, hi) = it.fold((first.start, first.end), |(lo, hi), s| (lo.min(s.start), hi.max(s.end)));
    blocks_touched(lo, hi, cb)
}

/// Why a transfer failed: the client (socket), a network digest, or our storage.
enum Failure {
    Peer(io::Error),
    Digest,
    Storage(String),
}

/// What one write command carries between its steps.
struct Job {
    /// Network checksum framing, for the `_CHKSUM` forms.
    frame: Option<NetSum>,
    /// How long one socket read may wait.
    inactivity: Duration,
    /// Block ranges handed to the disk (what a failure must settle).
    written: Vec<Range<u64>>,
    /// Per finished span: its first block, CRCs and disk digests.
    done: Vec<(u64, Vec<u32>, Vec<u8>)>,
}

/// Merged block ranges already written by earlier spans of this command.
#[derive(Default)]
struct Touched(BTreeMap<u64, u64>);

impl Touched {
    /// Whether `r` meets a range already present; then adds it.
    fn meets_then_add(&mut self, r: Range<u64>) -> bool {
        let meets = self.0.range(..r.end).next_back().is_some_and(|(_, &end)| end > r.start);
        let (mut lo, mut hi) = (r.start, r.end);
        let overlapping: Vec<(u64, u64)> = self
            .0
            .range(..r.end)
            .rev()
            .take_while(|(_, &end)| end > r.start)
            .map(|(&s, &e)| (s, e))
            .collect();
        for (s, e) in overlapping {
            self.0.remove(&s);
            lo = lo.min(s);
            hi = hi.max(e);
        }
        self.0.insert(lo, hi);
        meets
    }
}

/// Receives the payload of every span into whole-block chunks and writes them, two in
/// flight, collecting the CRCs (and digests) of every span's blocks in `job.done`.
async fn receive_and_write(
    ctx: &mut Ctx<'_>,
    shard: &Rc<Shard>,
    v: &View,
    spans: &[Range<u64>],
    job: &mut Job,
) -> Result<(), Failure> {
    let cb = v.checksum_block;
    let mut inflight: VecDeque<Pending> = VecDeque::new();
    let mut touched = Touched::default();
    let mut data_end = v.size;
    let mut result = Ok(());
    'spans: for span in spans {
        if span.end <= span.start {
            job.done.push((span.start / cb, Vec::new(), Vec::new()));
            continue;
        }
        if touched.meets_then_add(blocks_touched(span.start, span.end, cb)) {
            while !inflight.is_empty() {
                if let Err(e) = wait_write(&mut inflight).await {
                    result = Err(e);
                    break 'spans;
                }
            }
        }
        let plan = chunks(span.start, span.end, cb, shard.cfg.buffer_bytes, v.extent_bytes);
        let mut crcs = Vec::with_capacity(plan.iter().map(|c| c.blocks as usize).sum());
        let mut sums = Vec::new();
        for c in plan {
            let r = receive_chunk(ctx, shard, v, &c, data_end, &mut inflight, job).await;
            match r {
                Ok((c_crcs, c_sums)) => {
                    crcs.extend(c_crcs);
                    sums.extend(c_sums);
                }
                Err(e) => {
                    result = Err(e);
                    break 'spans;
                }
            }
        }
        job.done.push((span.start / cb, crcs, sums));
        data_end = data_end.max(span.end);
    }
    // Every write must have landed before we commit, or before a failed transfer is settled
    // (a write still in flight would land after the scrub).
    while !inflight.is_empty() {
        let r = wait_write(&mut inflight).await;
        if result.is_ok() {
            result = r;
        }
    }
    result
}

/// Receives one chunk (verifying its network blocks), computes its CRCs and digests, and
/// starts its disk write.
async fn receive_chunk(
    ctx: &mut Ctx<'_>,
    shard: &Rc<Shard>,
    v: &View,
    c: &Chunk,
    data_end: u64,
    inflight: &mut VecDeque<Pending>,
    job: &mut Job,
) -> Result<(Vec<u32>, Vec<u8>), Failure> {
    let mut buf = ibp_io::buf::acquire().await;
    buf.set_len(0);
    buf = prefill_edges(shard, v, c, data_end, buf)
        .await
        .map_err(|e| Failure::Storage(e.to_string()))?;
    buf = recv_payload(ctx, buf, c.payload.clone(), job).await?;
    buf.set_len(c.disk_len);
    let crcs = chunk_crcs(buf.as_slice(), c, v.checksum_block);
    let sums = v.digest.map_or_else(Vec::new, |k| chunk_sums(buf.as_slice(), c, v.checksum_block, k));
    if inflight.len() >= WRITES_IN_FLIGHT {
        wait_write(inflight).await?;
    }
    job.written.push(c.first_block..c.first_block + c.blocks);
    inflight.push_back(spawn_write(
        shard.clone(),
        v.resource,
        buf,
        v.base + c.alloc_off,
        c.disk_len,
    ));
    Ok((crcs, sums))
}

/// Receives `range` of the chunk buffer from the client. With network checksums, each network
/// block's digest is read and checked as it completes, and a block still open at the end of
/// the chunk is read ahead and checked before the chunk may be written.
async fn recv_payload(
    ctx: &mut Ctx<'_>,
    mut buf: FixedBuf,
    range: Range<usize>,
    job: &mut Job,
) -> Result<FixedBuf, Failure> {
    let wait = job.inactivity;
    let Some(f) = job.frame.as_mut() else {
        return ctx.conn.recv_exact(buf, range.start, range.len(), wait).await.map_err(Failure::Peer);
    };
    let mut pos = range.start;
    while pos < range.end {
        let n = f.next_take(range.end - pos);
        buf = ctx.conn.recv_exact(buf, pos, n, wait).await.map_err(Failure::Peer)?;
        if f.absorb(&buf.as_full()[pos..pos + n]) {
            check_digest(ctx, f, wait).await?;
        }
        pos += n;
    }
    let rest = f.open_block_rest();
    if rest > 0 {
        // `rest` ≤ the network block ≤ one buffer (net_spec), so this is bounded.
        let ahead = ctx.conn.recv_vec(rest as usize, wait).await.map_err(Failure::Peer)?;
        if !f.absorb(&ahead) {
            return Err(Failure::Storage("network block did not complete".into()));
        }
        check_digest(ctx, f, wait).await?;
        ctx.conn.unread(&ahead);
        f.mark_preverified(rest);
    }
    Ok(buf)
}

async fn check_digest(ctx: &mut Ctx<'_>, f: &mut NetSum, wait: Duration) -> Result<(), Failure> {
    let hex = ctx.conn.recv_vec(f.kind().hex_len(), wait).await.map_err(Failure::Peer)?;
    if f.verify(&hex) {
        Ok(())
    } else {
        Err(Failure::Digest)
    }
}

fn spawn_write(shard: Rc<Shard>, resource: u16, buf: FixedBuf, at: u64, len: usize) -> Pending {
    let cell = Rc::new(Cell::new(None));
    let out = cell.clone();
    let h = ibp_io::spawn(async move {
        let (r, _buf) = shard.stores[resource as usize].write(buf, at, 0..len).await;
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
    if c.payload.end < (last + 1) * cb
        && (last + 1) * cb > c.payload.start
        && !edges.contains(&last)
    {
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

/// Records the new size, CRCs and digests of every span, durably for hard allocations.
async fn commit(shard: &Shard, v: &View, spans: &[Range<u64>], job: &Job) -> Result<(), Failure> {
    let mut recs = Vec::with_capacity(job.done.len() * 2);
    {
        let mut t = shard.table.borrow_mut();
        for (span, (first, crcs, sums)) in spans.iter().zip(&job.done) {
            let Some(rec) = t.apply_data(v.id, span.end, *first, crcs) else {
                return Err(Failure::Storage("allocation vanished during the transfer".into()));
            };
            recs.push(rec);
            if !sums.is_empty() {
                recs.extend(t.apply_digests(v.id, *first, sums));
            }
        }
    }
    shard.commit(&recs, v.sync).await.map_err(Failure::Storage)
}

/// After a failed transfer: bytes written past the allocation's size are zeroed again (the
/// invariant of checksum.rs), then every block the transfer rewrote below the size has its
/// CRC (and digest) recomputed from disk and committed, so no CRC disagrees with its block.
async fn settle(shard: &Shard, v: &View, written: &[Range<u64>]) {
    if written.is_empty() {
        return;
    }
    let cb = v.checksum_block;
    let size = shard.table.borrow().get(v.id).map_or(v.size, |a| a.size);
    let top = written.iter().map(|r| r.end).max().unwrap_or(0).saturating_mul(cb).min(v.extent_bytes);
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
            let crcs = chunk_crcs(buf.as_slice(), &c, cb);
            let mut t = shard.table.borrow_mut();
            recs.extend(t.apply_data(v.id, 0, c.first_block, &crcs));
            if let Some(k) = v.digest {
                let sums = chunk_sums(buf.as_slice(), &c, cb, k);
                recs.extend(t.apply_digests(v.id, c.first_block, &sums));
            }
        }
    }
    if let Err(e) = shard.commit(&recs, v.sync).await {
        tracing::error!(shard = shard.idx, cause = %e, "could not record an aborted write");
    }
}
