//! LOAD (8) and LOAD_CHKSUM (24): the bulk read path, with server sync, which VEC_READ
//! (35/36, `vec_read`) shares with a list of spans.
//!
//! Flow: validate every span before any byte moves (offsets ≥ 0 else −30; inside the max
//! size and the alias window, else −19) → if a span reaches past the current size, wait (up
//! to the command's server-sync timeout) while a STORE/WRITE on the allocation is in flight
//! and may fill it, else −19 → hold the blocks shared → read the first chunk and verify every
//! block's CRC (a mismatch answers −63, never the bytes) → `1 <total> \n` → stream the chunks
//! of every span in list order, reading the next from disk while the current one is sent. A
//! mismatch found after the header has gone out closes the connection short: the client sees
//! a truncated transfer, never bad bytes.
//!
//! With network checksums (`_CHKSUM`, PROTOCOL.md §10) the hex digest of every network block
//! and of the final partial block follows it on the wire, computed from the buffer as it is
//! sent (never a second pass).

use std::cell::Cell;
use std::io;
use std::ops::Range;
use std::rc::Rc;
use std::time::{Duration, Instant};

use ibp_client::proto::request::{ChksumSpec, IoSpan};
use ibp_client::proto::{reply, ErrorCode, KeyRef};
use ibp_io::FixedBuf;

use super::store::hull;
use super::{in_window, lookup, net_spec, reply_error, server_sync, Ctx, Next, View};
use crate::datapath::{chunk_crcs, chunks, Chunk};
use crate::keys::KeyKind;
use crate::netsum::NetSum;
use crate::shard::Shard;

type ReadResult = Rc<Cell<Option<Result<FixedBuf, String>>>>;

pub async fn run(
    ctx: &mut Ctx<'_>,
    key: &KeyRef,
    list: &[IoSpan],
    chksum: Option<ChksumSpec>,
    timeout_s: i64,
) -> (Next, bool) {
    let shard = ctx.shard.clone();
    let mut v = match lookup(&shard, KeyKind::Read, key) {
        Ok(v) => v,
        Err(code) => return reply_error(ctx.conn, code, Next::Continue).await,
    };
    let net = match net_spec(&shard, chksum) {
        Ok(n) => n,
        Err(code) => return reply_error(ctx.conn, code, Next::Continue).await,
    };
    let spans = match plan_spans(&v, list) {
        Ok(s) => s,
        Err(code) => return reply_error(ctx.conn, code, Next::Continue).await,
    };
    let total: u64 = spans.iter().map(|s| s.end - s.start).sum();
    let end = spans.iter().map(|s| s.end).max().unwrap_or(0);
    let wait = server_sync(timeout_s);
    if end > v.size {
        match server_sync_wait(&shard, key, end, Instant::now() + wait).await {
            Some(nv) => v = nv,
            None => {
                return reply_error(ctx.conn, ErrorCode::WouldExceedLimit, Next::Continue).await
            }
        }
    }
    if total == 0 {
        let mut out = Vec::with_capacity(8);
        reply::count(&mut out, 0);
        return super::reply_ok(ctx.conn, out).await;
    }
    let rt = shard.rt(v.id);
    let _guard = rt.lock(hull(&spans, v.checksum_block), false).await;
    let mut plan = Vec::new();
    for s in spans.iter().filter(|s| s.end > s.start) {
        plan.extend(chunks(s.start, s.end, v.checksum_block, shard.cfg.buffer_bytes, v.extent_bytes));
    }
    let mut frame = net.map(|(kind, block)| NetSum::new(kind, block, total));
    let limit = wait.max(Duration::from_secs(30));
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
            reply::count(&mut out, total as i64);
            if ctx.conn.send(out).await.is_err() {
                return (Next::Drop, false);
            }
        }
        if send_payload(ctx, buf, c.payload.clone(), frame.as_mut(), limit).await.is_err() {
            return (Next::Drop, false);
        }
    }
    (Next::Continue, true)
}

/// Validates every span before anything is read.
fn plan_spans(v: &View, list: &[IoSpan]) -> Result<Vec<Range<u64>>, ErrorCode> {
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

/// Sends `range` of a chunk buffer, with the hex digest after each network block when framed.
async fn send_payload(
    ctx: &mut Ctx<'_>,
    mut buf: FixedBuf,
    range: Range<usize>,
    frame: Option<&mut NetSum>,
    limit: Duration,
) -> io::Result<()> {
    let Some(f) = frame else {
        return ctx.conn.send_buf(buf, range, limit).await.map(|_| ());
    };
    let mut seg = range.start;
    let mut pos = range.start;
    while pos < range.end {
        let n = f.next_take(range.end - pos);
        let due = f.absorb(&buf.as_full()[pos..pos + n]);
        pos += n;
        if due {
            buf = ctx.conn.send_buf(buf, seg..pos, limit).await?;
            ctx.conn.send(f.finish().to_hex()).await?;
            seg = pos;
        }
    }
    if seg < range.end {
        ctx.conn.send_buf(buf, seg..range.end, limit).await?;
    }
    Ok(())
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

/// Reads one chunk and checks every block against its recorded CRC.
pub async fn read_chunk(shard: &Shard, v: &View, c: &Chunk) -> Result<FixedBuf, String> {
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
