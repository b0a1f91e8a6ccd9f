//! The bulk read path: a range of an allocation to a [`Sink`].
//!
//! VEC_READ streams several spans as one transfer ([`open_spans`], [`stream_spans`]): one
//! shared lock from the first to the last block, the chunks of every span in list order.
//!
//! Flow: [`open`] validates the range (inside the alias window too, for an alias's key); if it reaches past the current size it waits (server
//! sync, up to the command's timeout) while a STORE/WRITE on the allocation is in flight and
//! may fill it, else −19. [`stream`] holds the blocks shared, reads the first chunk and
//! verifies every block's CRC (a mismatch refuses with −63 before anything is sent), calls
//! [`Sink::begin`], then passes chunks to the sink while the next one is read from disk. A
//! mismatch found after `begin` ends the transfer with [`ReadFailure::Storage`]: the sink is
//! cut short, it never receives bad bytes.

use std::cell::Cell;
use std::io;
use std::ops::Range;
use std::rc::Rc;
use std::time::Instant;

use ibp_client::proto::request::IoSpan;
use ibp_client::proto::{ErrorCode, KeyRef};
use ibp_io::FixedBuf;

use crate::checksum::blocks_touched;
use crate::cmd::{lookup, span_range, View};
use crate::datapath::{chunk_crcs, chunks, Chunk};
use crate::keys::KeyKind;
use crate::shard::Shard;

/// Where a transfer's bytes go.
// The futures are !Send on purpose: everything runs on its shard's own core.
#[allow(async_fn_in_trait)]
pub trait Sink {
    /// Called once, after the first chunk has been read and verified, before any data.
    async fn begin(&mut self, len: u64) -> io::Result<()>;
    /// Takes `buf[range]`, the next bytes of the transfer.
    async fn chunk(&mut self, buf: FixedBuf, range: Range<usize>) -> io::Result<()>;

    /// Takes `data`, the next bytes of the transfer, from memory that is not a pool buffer (a
    /// RAM region); nothing may refer to it after this returns. By default the bytes go
    /// through pool buffers to [`Sink::chunk`]; a socket sink sends them directly.
    async fn chunk_slice(&mut self, data: &[u8]) -> io::Result<()> {
        let mut at = 0;
        while at < data.len() {
            let mut buf = ibp_io::buf::acquire().await;
            let n = buf.capacity().min(data.len() - at);
            buf.as_full_mut()[..n].copy_from_slice(&data[at..at + n]);
            buf.set_len(n);
            self.chunk(buf, 0..n).await?;
            at += n;
        }
        Ok(())
    }
}

/// Why a read transfer failed.
#[derive(Debug)]
pub enum ReadFailure {
    /// Before `begin`: answer the client with this code.
    Refused(ErrorCode),
    /// The sink failed (peer gone).
    Sink(io::Error),
    /// Storage failed or a checksum mismatched after `begin`: cut the sink short.
    Storage(String),
}

/// Validates a read of `[offset, offset + len)` through read key `key`, waiting for in-flight
/// writers when the range is not all there yet. Returns the view and the range.
pub async fn open(
    shard: &Rc<Shard>,
    key: &KeyRef,
    offset: i64,
    len: i64,
    wait: std::time::Duration,
) -> Result<(View, u64, u64), ErrorCode> {
    let (v, spans) = open_spans(shard, key, &[IoSpan { offset, len }], wait).await?;
    Ok((v, spans[0].start, spans[0].end))
}

/// Validates a read of every span (VEC_READ: 1..=IOVEC_MAX of them) before anything is read:
/// offsets ≥ 0 else −30, inside the max size and the alias window else −19; then waits for
/// in-flight writers while the furthest span is not all there yet (−19 when it will not be).
pub async fn open_spans(
    shard: &Rc<Shard>,
    key: &KeyRef,
    list: &[IoSpan],
    wait: std::time::Duration,
) -> Result<(View, Vec<Range<u64>>), ErrorCode> {
    let v = lookup(shard, KeyKind::Read, key)?;
    let spans = list.iter().map(|s| span_range(&v, s)).collect::<Result<Vec<_>, _>>()?;
    let end = spans.iter().map(|s| s.end).max().unwrap_or(0);
    if end <= v.size {
        return Ok((v, spans));
    }
    match server_sync_wait(shard, key, end, Instant::now() + wait).await {
        Some(v) => Ok((v, spans)),
        None => Err(ErrorCode::WouldExceedLimit),
    }
}

/// Waits while a writer may still extend the allocation to `end`. Returns the fresh view when
/// the range is there, `None` when it will not be (no writer left, or the deadline passed).
async fn server_sync_wait(
    shard: &Rc<Shard>,
    key: &KeyRef,
    end: u64,
    deadline: Instant,
) -> Option<View> {
    loop {
        let v = lookup(shard, KeyKind::Read, key).ok()?;
        if v.size >= end {
            return Some(v);
        }
        let rt = shard.rt(v.id);
        let changed = rt.changed.notified();
        if rt.writers.get() == 0 {
            return None;
        }
        ibp_io::time::timeout_at(deadline, changed).await.ok()?;
    }
}

/// Bytes a load keeps in flight from disk ahead of the chunk being sent: a virtual or
/// flash disk needs a queue of several MiB to stream (4 chunks of 256 KiB gave loads of
/// 1.2 GB/s here, 16 gave 1.4–2.4 GB/s against an O_DIRECT limit of 2.6; docs/benchmarks.md).
const READ_AHEAD_BYTES: u64 = 4 << 20;

/// Chunks read ahead of the one being sent (each holds one pool buffer): `READ_AHEAD_BYTES`
/// worth, at least 2, and at most a quarter of the core's pool so a few loads can stream at
/// once.
fn reads_ahead(shard: &Shard) -> usize {
    let chunks = (READ_AHEAD_BYTES / shard.cfg.buffer_bytes.max(1)) as usize;
    chunks.clamp(2, (shard.cfg.buffers_per_core / 4).max(2))
}

type ReadResult = Rc<Cell<Option<Result<FixedBuf, String>>>>;

/// Streams `[off, end)` of allocation `v` to `sink`.
pub async fn stream<S: Sink>(
    shard: &Rc<Shard>,
    v: View,
    off: u64,
    end: u64,
    sink: &mut S,
) -> Result<(), ReadFailure> {
    stream_spans(shard, v, std::slice::from_ref(&(off..end)), sink).await
}

/// Streams the spans of allocation `v` to `sink`, in list order, as one transfer.
pub async fn stream_spans<S: Sink>(
    shard: &Rc<Shard>,
    v: View,
    spans: &[Range<u64>],
    sink: &mut S,
) -> Result<(), ReadFailure> {
    let total: u64 = spans.iter().map(|s| s.end - s.start).sum();
    if total == 0 {
        return sink.begin(0).await.map_err(ReadFailure::Sink);
    }
    let live: Vec<&Range<u64>> = spans.iter().filter(|s| s.end > s.start).collect();
    let lo = live.iter().map(|s| s.start).min().unwrap_or(0);
    let hi = live.iter().map(|s| s.end).max().unwrap_or(0);
    let rt = shard.rt(v.id);
    let _guard = rt.lock(blocks_touched(lo, hi, v.checksum_block), false).await;
    let mut plan = Vec::new();
    for s in live {
        let cb = v.checksum_block;
        plan.extend(chunks(s.start, s.end, cb, shard.cfg.buffer_bytes, v.extent_bytes));
    }
    if shard.stores[v.resource as usize].is_direct() {
        return stream_direct(shard, &v, &plan, total, sink).await;
    }
    // Keep chunks in flight so the disk sees a queue, not one read at a time.
    let depth = reads_ahead(shard);
    let mut ahead: std::collections::VecDeque<_> =
        plan.iter().take(depth).map(|c| spawn_read(shard.clone(), v, c.clone())).collect();
    for (i, c) in plan.iter().enumerate() {
        let Some((h, cell)) = ahead.pop_front() else { break };
        h.await;
        let buf = match cell.take() {
            Some(Ok(b)) => b,
            Some(Err(e)) => return Err(chunk_failed(shard, i, e)),
            None => return Err(ReadFailure::Storage("read task ended without a result".into())),
        };
        if let Some(nc) = plan.get(i + depth) {
            ahead.push_back(spawn_read(shard.clone(), v, nc.clone()));
        }
        if i == 0 {
            sink.begin(total).await.map_err(ReadFailure::Sink)?;
        }
        sink.chunk(buf, c.payload.clone()).await.map_err(ReadFailure::Sink)?;
    }
    Ok(())
}

/// RAM: every chunk is verified in the region and handed to the sink from there (no bounce
/// buffer). The caller holds the blocks shared, so no writer changes them meanwhile.
async fn stream_direct<S: Sink>(
    shard: &Shard,
    v: &View,
    plan: &[Chunk],
    total: u64,
    sink: &mut S,
) -> Result<(), ReadFailure> {
    let store = &shard.stores[v.resource as usize];
    for (i, c) in plan.iter().enumerate() {
        // SAFETY: the caller holds these blocks shared (no writer) and they belong to the
        // allocation's extent; the slice is only read, and dropped before the guard.
        let region = unsafe { store.ram_slice(v.base + c.alloc_off, c.disk_len) };
        let checked = match region {
            Some(r) if c.payload.end <= r.len() => verify_blocks(shard, v, c, r).map(|()| &*r),
            _ => Err("RAM range outside the region".to_string()),
        };
        let region = checked.map_err(|e| chunk_failed(shard, i, e))?;
        if i == 0 {
            sink.begin(total).await.map_err(ReadFailure::Sink)?;
        }
        sink.chunk_slice(&region[c.payload.clone()]).await.map_err(ReadFailure::Sink)?;
    }
    Ok(())
}

/// Chunk `i` could not be read or failed its check: before the reply header (`i == 0`) the
/// client is answered −63 (checksum) or −15 (read error); after it the transfer is cut short.
fn chunk_failed(shard: &Shard, i: usize, e: String) -> ReadFailure {
    tracing::error!(shard = shard.idx, cause = %e, "load failed");
    if i > 0 {
        return ReadFailure::Storage(e);
    }
    let code = if e.starts_with("checksum") { ErrorCode::Chksum } else { ErrorCode::FileRead };
    ReadFailure::Refused(code)
}

/// Checks every block of chunk `c`, as it is in `data`, against the allocation's CRCs.
fn verify_blocks(shard: &Shard, v: &View, c: &Chunk, data: &[u8]) -> Result<(), String> {
    let got = chunk_crcs(data, c, v.checksum_block);
    let t = shard.table.borrow();
    let a = t.get(v.id).ok_or("allocation vanished during the load")?;
    for (i, crc) in got.iter().enumerate() {
        let block = c.first_block + i as u64;
        if a.crcs.get(block, v.checksum_block) != *crc {
            // Never name the capability; the allocation number and block locate the damage.
            return Err(format!("checksum mismatch in allocation {} block {block}", v.id));
        }
    }
    Ok(())
}

/// Reads and verifies one chunk in its own task, so the next chunk's disk read overlaps the
/// current chunk's send.
fn spawn_read(shard: Rc<Shard>, v: View, c: Chunk) -> (ibp_io::JoinHandle, ReadResult) {
    let cell: ReadResult = Rc::new(Cell::new(None));
    let out = cell.clone();
    let h = ibp_io::spawn(async move {
        out.set(Some(read_chunk(&shard, &v, &c).await));
    });
    (h, cell)
}

/// Reads one chunk and verifies every block's CRC.
pub async fn read_chunk(shard: &Shard, v: &View, c: &Chunk) -> Result<FixedBuf, String> {
    let buf = ibp_io::buf::acquire().await;
    let (r, buf) =
        shard.stores[v.resource as usize].read(buf, v.base + c.alloc_off, c.disk_len).await;
    r.map_err(|e: io::Error| e.to_string())?;
    verify_blocks(shard, v, c, buf.as_slice())?;
    Ok(buf)
}
