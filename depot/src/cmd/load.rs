//! LOAD (8): the bulk read path, with server sync.
//!
//! Flow: validate → if the range reaches past the current size, wait (up to the command's
//! server-sync timeout) while a STORE/WRITE on the allocation is in flight and may fill it,
//! else −19 → hold the blocks shared → read the first chunk and verify every block's CRC
//! (a mismatch answers −63, never the bytes) → `1 <len> \n` → stream chunks, reading the next
//! from disk while the current one is sent. A mismatch found after the header has gone out
//! closes the connection short: the client sees a truncated transfer, never bad bytes.

use std::cell::Cell;
use std::io;
use std::rc::Rc;
use std::time::Instant;

use ibp_client::proto::{reply, ErrorCode, KeyRef};
use ibp_io::FixedBuf;

use super::{lookup, reply_error, server_sync, Ctx, Next, View};
use crate::checksum::blocks_touched;
use crate::datapath::{chunk_crcs, chunks, Chunk};
use crate::keys::KeyKind;
use crate::shard::Shard;

type ReadResult = Rc<Cell<Option<Result<FixedBuf, String>>>>;

pub async fn run(
    ctx: &mut Ctx<'_>,
    key: &KeyRef,
    offset: i64,
    len: i64,
    timeout_s: i64,
) -> (Next, bool) {
    let shard = ctx.shard.clone();
    let mut v = match lookup(&shard, KeyKind::Read, key) {
        Ok(v) => v,
        Err(code) => return reply_error(ctx.conn, code, Next::Continue).await,
    };
    if len < 0 || offset < 0 {
        return reply_error(ctx.conn, ErrorCode::InvalidParameter, Next::Continue).await;
    }
    let (off, len) = (offset as u64, len as u64);
    let Some(end) = off.checked_add(len).filter(|&e| e <= v.max_size) else {
        return reply_error(ctx.conn, ErrorCode::WouldExceedLimit, Next::Continue).await;
    };
    let wait = server_sync(timeout_s);
    if end > v.size {
        match server_sync_wait(&shard, key, end, Instant::now() + wait).await {
            Some(nv) => v = nv,
            None => {
                return reply_error(ctx.conn, ErrorCode::WouldExceedLimit, Next::Continue).await
            }
        }
    }
    if len == 0 {
        let mut out = Vec::with_capacity(8);
        reply::count(&mut out, 0);
        return super::reply_ok(ctx.conn, out).await;
    }
    let rt = shard.rt(v.id);
    let _guard = rt.lock(blocks_touched(off, end, v.checksum_block), false).await;
    let plan = chunks(off, end, v.checksum_block, shard.cfg.buffer_bytes, v.extent_bytes);
    let mut next = Some(spawn_read(shard.clone(), v, plan[0].clone()));
    for (i, c) in plan.iter().enumerate() {
        let Some((h, cell)) = next.take() else { break };
        h.await;
        let buf = match cell.take() {
            Some(Ok(b)) => b,
            Some(Err(e)) => {
                tracing::error!(shard = shard.idx, cause = %e, "load failed");
                if i == 0 {
                    let code = if e.starts_with("checksum") {
                        ErrorCode::Chksum
                    } else {
                        ErrorCode::FileRead
                    };
                    return reply_error(ctx.conn, code, Next::Continue).await;
                }
                return (Next::Drop, false);
            }
            None => return (Next::Drop, false),
        };
        if let Some(nc) = plan.get(i + 1) {
            next = Some(spawn_read(shard.clone(), v, nc.clone()));
        }
        if i == 0 {
            let mut out = Vec::with_capacity(24);
            reply::count(&mut out, len as i64);
            if ctx.conn.send(out).await.is_err() {
                return (Next::Drop, false);
            }
        }
        if ctx
            .conn
            .send_buf(buf, c.payload.clone(), wait.max(std::time::Duration::from_secs(30)))
            .await
            .is_err()
        {
            return (Next::Drop, false);
        }
    }
    (Next::Continue, true)
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

async fn read_chunk(shard: &Shard, v: &View, c: &Chunk) -> Result<FixedBuf, String> {
    let buf = ibp_io::buf::acquire().await;
    let (r, buf) =
        shard.stores[v.resource as usize].read(buf, v.base + c.alloc_off, c.disk_len).await;
    r.map_err(|e: io::Error| e.to_string())?;
    let got = chunk_crcs(buf.as_slice(), c, v.checksum_block);
    let t = shard.table.borrow();
    let a = t.get(v.id).ok_or("allocation vanished during the load")?;
    for (i, crc) in got.iter().enumerate() {
        let block = c.first_block + i as u64;
        if a.crcs.get(block, v.checksum_block) != *crc {
            // Never name the capability; the allocation id and block locate the damage.
            return Err(format!("checksum mismatch in allocation {} block {block}", v.id));
        }
    }
    Ok(buf)
}
