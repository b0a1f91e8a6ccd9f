//! STORE (2, append) and WRITE (13, at an offset): the bulk write path.
//!
//! Flow: validate the header → hold the checksum blocks the range touches (exclusive) →
//! `1 \n` → receive the payload chunk by chunk straight into pool buffers (bytes the client
//! pipelined ahead are taken from the connection buffer first) → write each chunk with
//! O_DIRECT while the next one is received (two writes in flight) → CRC every block → commit
//! the new size and CRCs to the journal (fdatasync first for hard allocations) → `1 <len> \n`.
//!
//! A chunk is whole checksum blocks. The first and last block of a transfer may be partial:
//! their other bytes are read from disk first (or are zeros, past the size), so the block is
//! rewritten whole and its CRC covers exactly what is on disk. Any error after the header
//! closes the connection, since unread payload would otherwise be taken for commands.

use std::cell::Cell;
use std::collections::VecDeque;
use std::io;
use std::rc::Rc;
use std::time::Duration;

use ibp_client::proto::{reply, ErrorCode, KeyRef};
use ibp_io::FixedBuf;

use super::{lookup, reply_error, server_sync, Ctx, Next, View};
use crate::checksum::blocks_touched;
use crate::datapath::{chunk_crcs, chunks, Chunk, Slice};
use crate::keys::KeyKind;
use crate::lock::WriterGuard;
use crate::shard::Shard;

/// Disk writes of one transfer in flight at once: one draining while the next is received.
const WRITES_IN_FLIGHT: usize = 2;

type Pending = (ibp_io::JoinHandle, Rc<Cell<Option<io::Result<()>>>>);

pub async fn run(
    ctx: &mut Ctx<'_>,
    key: &KeyRef,
    offset: Option<i64>,
    len: i64,
    timeout_s: i64,
) -> (Next, bool) {
    let shard = ctx.shard.clone();
    let v = match lookup(&shard, KeyKind::Write, key) {
        Ok(v) => v,
        Err(code) => return reply_error(ctx.conn, code, Next::Close).await,
    };
    if len < 0 || offset.is_some_and(|o| o < 0) {
        return reply_error(ctx.conn, ErrorCode::InvalidParameter, Next::Close).await;
    }
    if shard.stores[v.resource as usize].latched().is_some() {
        return reply_error(ctx.conn, ErrorCode::FileWrite, Next::Close).await;
    }
    let len = len as u64;
    let rt = shard.rt(v.id);
    let off = match offset {
        Some(o) => o as u64,
        None => rt.append_end.get().unwrap_or(v.size).max(v.size),
    };
    let Some(end) = off.checked_add(len).filter(|&e| e <= v.max_size) else {
        return reply_error(ctx.conn, ErrorCode::WouldExceedLimit, Next::Close).await;
    };
    if offset.is_none() {
        rt.append_end.set(Some(end));
    }
    let writer = WriterGuard::new(&rt);
    let blocks = blocks_touched(off, end, v.checksum_block);
    let guard = rt.lock(blocks, true).await;
    let mut ack = Vec::with_capacity(4);
    reply::ok(&mut ack);
    if ctx.conn.send(ack).await.is_err() {
        return (Next::Drop, false);
    }
    let inactivity = server_sync(timeout_s);
    let result = receive_and_write(ctx, &shard, &v, off, end, inactivity).await;
    let outcome = match result {
        Ok(crcs) => commit(&shard, &v, off, end, &crcs).await,
        Err(e) => Err(e),
    };
    if rt.append_end.get() == Some(end) {
        rt.append_end.set(None);
    }
    drop(guard);
    drop(writer);
    match outcome {
        Ok(()) => {
            let mut out = Vec::with_capacity(24);
            reply::count(&mut out, len as i64);
            match ctx.conn.send(out).await {
                Ok(()) => (Next::Continue, true),
                Err(_) => (Next::Drop, true),
            }
        }
        Err(Failure::Peer(e)) => {
            tracing::debug!(shard = shard.idx, cause = %e, "store cut short by the client");
            scrub_tail(&shard, &v, off, end);
            (Next::Drop, false)
        }
        Err(Failure::Storage(e)) => {
            tracing::error!(shard = shard.idx, cause = %e, "store failed");
            scrub_tail(&shard, &v, off, end);
            reply_error(ctx.conn, ErrorCode::FileWrite, Next::Close).await
        }
    }
}

/// Why a transfer failed: the client (socket) or our storage.
enum Failure {
    Peer(io::Error),
    Storage(String),
}

/// Receives the payload into whole-block chunks and writes them, two in flight. Returns the
/// CRC of every block of the transfer, in order.
async fn receive_and_write(
    ctx: &mut Ctx<'_>,
    shard: &Rc<Shard>,
    v: &View,
    off: u64,
    end: u64,
    inactivity: Duration,
) -> Result<Vec<u32>, Failure> {
    let cb = v.checksum_block;
    let buf_bytes = shard.cfg.buffer_bytes;
    let plan = chunks(off, end, cb, buf_bytes, v.extent_bytes);
    let mut crcs = Vec::with_capacity(plan.iter().map(|c| c.blocks as usize).sum());
    let mut inflight: VecDeque<Pending> = VecDeque::new();
    let mut result = Ok(());
    for c in plan {
        if let Err(e) = receive_chunk(ctx, shard, v, &c, inactivity, &mut inflight, &mut crcs).await
        {
            result = Err(e);
            break;
        }
    }
    // Every write must have landed before we commit, or before a failed transfer is scrubbed
    // (a write still in flight would land after the scrub).
    while !inflight.is_empty() {
        let r = wait_write(&mut inflight).await;
        if result.is_ok() {
            result = r;
        }
    }
    result.map(|()| crcs)
}

async fn receive_chunk(
    ctx: &mut Ctx<'_>,
    shard: &Rc<Shard>,
    v: &View,
    c: &Chunk,
    inactivity: Duration,
    inflight: &mut VecDeque<Pending>,
    crcs: &mut Vec<u32>,
) -> Result<(), Failure> {
    let mut buf = ibp_io::buf::acquire().await;
    buf.set_len(0);
    buf = prefill_edges(shard, v, c, buf).await.map_err(|e| Failure::Storage(e.to_string()))?;
    buf = ctx
        .conn
        .recv_exact(buf, c.payload.start, c.payload.len(), inactivity)
        .await
        .map_err(Failure::Peer)?;
    buf.set_len(c.disk_len);
    crcs.extend(chunk_crcs(buf.as_slice(), c, v.checksum_block));
    if inflight.len() >= WRITES_IN_FLIGHT {
        wait_write(inflight).await?;
    }
    inflight.push_back(spawn_write(
        shard.clone(),
        v.resource,
        buf,
        v.base + c.alloc_off,
        c.disk_len,
    ));
    Ok(())
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
/// from disk where the allocation has data, zeros elsewhere.
async fn prefill_edges(
    shard: &Shard,
    v: &View,
    c: &Chunk,
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
        if block_off < v.size && disk_end > start {
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

/// Records the new size and CRCs, durably for hard allocations.
async fn commit(shard: &Shard, v: &View, off: u64, end: u64, crcs: &[u32]) -> Result<(), Failure> {
    let first = off / v.checksum_block;
    let rec = shard.table.borrow_mut().apply_data(v.id, end, first, crcs);
    let Some(rec) = rec else {
        return Err(Failure::Storage("allocation vanished during the transfer".into()));
    };
    shard.commit(&[rec], v.sync).await.map_err(Failure::Storage)
}

/// After a failed transfer: bytes it wrote past the allocation's size are zeroed again, so the
/// "zeros past the size" invariant holds (checksum.rs).
fn scrub_tail(shard: &Shard, v: &View, off: u64, end: u64) {
    let size = shard.table.borrow().get(v.id).map_or(v.size, |a| a.size);
    let from = off.max(size);
    if end > from {
        if let Err(e) = shard.stores[v.resource as usize].zero(v.base + from, end - from) {
            tracing::error!(shard = shard.idx, cause = %e, "could not zero an aborted write");
        }
    }
}
