//! The bulk write path: bytes from a [`Source`] into a range of an allocation.
//!
//! Flow: [`begin`] validates and holds the checksum blocks the range touches (exclusive), then
//! the command acknowledges its client; [`WriteTicket::run`] receives the payload chunk by
//! chunk straight into pool buffers, writes each chunk with O_DIRECT while the next one is
//! received (two writes in flight), CRCs every block, and commits the new size and CRCs to the
//! journal (fdatasync first for hard allocations).
//!
//! A chunk is whole checksum blocks. The first and last block of a transfer may be partial:
//! their other bytes are read from disk first (or are zeros, past the size), so the block is
//! rewritten whole and its CRC covers exactly what is on disk. After a failure, bytes written
//! past the allocation's size are zeroed again (the invariant of checksum.rs).

use std::cell::Cell;
use std::collections::VecDeque;
use std::io;
use std::rc::Rc;

use ibp_client::proto::{ErrorCode, KeyRef};
use ibp_io::FixedBuf;

use crate::checksum::blocks_touched;
use crate::cmd::{lookup, View};
use crate::datapath::{chunk_crcs, chunks, Chunk, Slice};
use crate::keys::KeyKind;
use crate::lock::{AllocRt, BlockGuard, WriterGuard};
use crate::shard::Shard;

/// Disk writes of one transfer in flight at once: one draining while the next is received.
const WRITES_IN_FLIGHT: usize = 2;

/// Where a transfer's payload comes from.
// The futures are !Send on purpose: everything runs on its shard's own core.
#[allow(async_fn_in_trait)]
pub trait Source {
    /// Fills `buf[at..at + n]` with the next `n` bytes of the payload. On error the buffer may
    /// be lost (a cancelled socket read keeps it until its completion).
    async fn fill(&mut self, buf: FixedBuf, at: usize, n: usize) -> io::Result<FixedBuf>;
}

/// Why a transfer failed: the peer (socket) or our storage.
#[derive(Debug)]
pub enum Failure {
    Peer(io::Error),
    Storage(String),
}

/// A validated write holding its blocks; dropping it without `run` releases everything.
pub struct WriteTicket {
    shard: Rc<Shard>,
    v: View,
    pub off: u64,
    pub end: u64,
    rt: Rc<AllocRt>,
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
    if len < 0 || offset.is_some_and(|o| o < 0) {
        return Err(ErrorCode::InvalidParameter);
    }
    if shard.stores[v.resource as usize].latched().is_some() {
        return Err(ErrorCode::FileWrite);
    }
    let rt = shard.rt(v.id);
    let off = match offset {
        Some(o) => o as u64,
        None => rt.append_end.get().unwrap_or(v.size).max(v.size),
    };
    let end = off
        .checked_add(len as u64)
        .filter(|&e| e <= v.max_size)
        .ok_or(ErrorCode::WouldExceedLimit)?;
    if offset.is_none() {
        rt.append_end.set(Some(end));
    }
    let writer = WriterGuard::new(&rt);
    let blocks = rt.lock(blocks_touched(off, end, v.checksum_block), true).await;
    Ok(WriteTicket { shard: shard.clone(), v, off, end, rt, _writer: writer, _blocks: blocks })
}

impl Drop for WriteTicket {
    fn drop(&mut self) {
        if self.rt.append_end.get() == Some(self.end) {
            self.rt.append_end.set(None);
        }
    }
}

impl WriteTicket {
    pub fn len(&self) -> u64 {
        self.end - self.off
    }

    pub fn is_empty(&self) -> bool {
        self.end == self.off
    }

    /// Moves the payload from `src` to disk and commits it. Returns the bytes written.
    pub async fn run<S: Source>(self, src: &mut S) -> Result<u64, Failure> {
        let r = match self.receive_and_write(src).await {
            Ok(crcs) => self.commit(&crcs).await,
            Err(e) => Err(e),
        };
        if r.is_err() {
            self.scrub_tail();
        }
        r.map(|()| self.len())
    }

    async fn receive_and_write<S: Source>(&self, src: &mut S) -> Result<Vec<u32>, Failure> {
        let v = &self.v;
        let plan = chunks(
            self.off,
            self.end,
            v.checksum_block,
            self.shard.cfg.buffer_bytes,
            v.extent_bytes,
        );
        let mut crcs = Vec::with_capacity(plan.iter().map(|c| c.blocks as usize).sum());
        let mut inflight: VecDeque<Pending> = VecDeque::new();
        let mut result = Ok(());
        for c in plan {
            if let Err(e) = self.receive_chunk(src, &c, &mut inflight, &mut crcs).await {
                result = Err(e);
                break;
            }
        }
        // Every write must have landed before the commit, or before a failed transfer is
        // scrubbed (a write still in flight would land after the scrub).
        while !inflight.is_empty() {
            let r = wait_write(&mut inflight).await;
            if result.is_ok() {
                result = r;
            }
        }
        result.map(|()| crcs)
    }

    async fn receive_chunk<S: Source>(
        &self,
        src: &mut S,
        c: &Chunk,
        inflight: &mut VecDeque<Pending>,
        crcs: &mut Vec<u32>,
    ) -> Result<(), Failure> {
        let v = &self.v;
        let mut buf = ibp_io::buf::acquire().await;
        buf.set_len(0);
        buf = prefill_edges(&self.shard, v, c, buf)
            .await
            .map_err(|e| Failure::Storage(e.to_string()))?;
        buf = src.fill(buf, c.payload.start, c.payload.len()).await.map_err(Failure::Peer)?;
        buf.set_len(c.disk_len);
        crcs.extend(chunk_crcs(buf.as_slice(), c, v.checksum_block));
        if inflight.len() >= WRITES_IN_FLIGHT {
            wait_write(inflight).await?;
        }
        inflight.push_back(spawn_write(
            self.shard.clone(),
            v.resource,
            buf,
            v.base + c.alloc_off,
            c.disk_len,
        ));
        Ok(())
    }

    /// Records the new size and CRCs, durably for hard allocations.
    async fn commit(&self, crcs: &[u32]) -> Result<(), Failure> {
        let first = self.off / self.v.checksum_block;
        let rec = self.shard.table.borrow_mut().apply_data(self.v.id, self.end, first, crcs);
        let Some(rec) = rec else {
            return Err(Failure::Storage("allocation vanished during the transfer".into()));
        };
        let r =
            self.shard.commit(self.v.resource, &[rec], self.v.sync).await.map_err(Failure::Storage);
        self.rt.changed.notify_waiters();
        r
    }

    /// After a failed transfer: bytes it wrote past the allocation's size are zeroed again.
    fn scrub_tail(&self) {
        let size = self.shard.table.borrow().get(self.v.id).map_or(self.v.size, |a| a.size);
        let from = self.off.max(size);
        if self.end > from {
            if let Err(e) = self.shard.stores[self.v.resource as usize]
                .zero(self.v.base + from, self.end - from)
            {
                tracing::error!(shard = self.shard.idx, cause = %e, "could not zero an aborted write");
            }
        }
    }
}

type Pending = (ibp_io::JoinHandle, Rc<Cell<Option<io::Result<()>>>>);

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
    if c.payload.end < (last + 1) * cb && !edges.contains(&last) {
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
