//! SEND (5, IBP_copy), PUSH (20) and PULL (21): depot-to-depot copies, so data never detours
//! through the client. The depot acts as a client of the other depot on its own io_uring.
//!
//! * SEND appends `[src_offset, +len)` of the local allocation (read key) at the target
//!   (full write capability): `1 2 <key> <typekey> <len> <dest_T>` there, `1 \n`, the bytes,
//!   its `1 <len>`; then `1 <len> \n` to our client.
//! * PUSH is SEND with an explicit remote offset (−1 = append); PULL loads from a remote read
//!   capability into the local allocation (write key) at a local offset (−1 = append).
//! * A target on this depot *and this shard* is copied locally, disk to disk; a target on
//!   another shard of this depot goes over loopback to that shard's port (bulk data never
//!   crosses cores).
//! * Timeouts: the command's own T bounds the source side; `dest_T` is the server sync put
//!   into the nested command; `dest_client_T` bounds each wait on the other depot (0 → −30,
//!   as ACCRE). A stalled or dead target ends the copy with an error within those bounds.
//! * Errors: the target's own IBP code when it refuses (e.g. −4 for a bad target capability,
//!   −19 when it is full), −62 when it cannot be reached.
//! * The `_CHKSUM` variants (22 PUSH, 23 PULL, 25 SEND, 26 PHOEBUS_SEND) are served as the
//!   plain ones, as ACCRE's depot does (its nested command is plain too); a malformed
//!   checksum spec answers −43.
//! * PHOEBUS (ctype 2 / command 17): there is no Phoebus overlay here; a gateway list of
//!   `auto` or empty is served as a plain TCP copy, an explicit gateway list answers −43.

use std::net::IpAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use ibp_client::proto::request::{DepotCopy, Transfer};
use ibp_client::proto::{reply, Capability, ErrorCode, KeyRef};
use ibp_io::FixedBuf;

use super::{lookup, reply_error, server_sync, Ctx, Next, View};
use crate::checksum::blocks_touched;
use crate::conn::Conn;
use crate::datapath::chunks;
use crate::keys::{self, KeyKind};
use crate::remote::{self, RemoteSink, RemoteSource};
use crate::shard::Shard;
use crate::transfer::read::{self, ReadFailure};
use crate::transfer::write::{self, Failure, Source};

/// Timeouts of a copy command.
#[derive(Debug, Clone, Copy)]
struct Times {
    /// Our own server sync (source side).
    own: Duration,
    /// Server sync for the nested command at the other depot.
    dest_s: i64,
    /// Longest wait on the other depot per step.
    dest_wait: Duration,
}

fn times(t: i64, dest_t: i64, dest_client_t: i64) -> Result<Times, ErrorCode> {
    if dest_t <= 0 || dest_client_t <= 0 {
        return Err(ErrorCode::InvalidParameter);
    }
    Ok(Times { own: server_sync(t), dest_s: dest_t, dest_wait: server_sync(dest_client_t) })
}

/// The `_CHKSUM` copy variants (22, 23, 25, 26) name a network checksum for the depot-to-depot
/// leg. ACCRE's own depot sends the nested command plain for them (PROTOCOL.md §9, the caveat
/// on `handle_transfer`), and so do we: both ends still verify CRC32 per block on disk, so a
/// corrupted source block is never sent and a target never keeps bytes it did not receive.
/// The checksum spec must still be well formed (known type, sane block size).
fn valid_chksum(spec: &Option<ibp_client::proto::request::ChksumSpec>) -> bool {
    match spec {
        None => true,
        Some(s) => {
            ibp_client::proto::request::ChksumType::from_i32(s.cstype).is_some()
                && (s.cstype == 0 || (s.blocksize > 0 && s.blocksize <= 1 << 31))
        }
    }
}

/// A Phoebus path token is acceptable only when it asks for no particular gateway.
fn plain_path(path: &Option<String>) -> bool {
    match path.as_deref() {
        None => true,
        Some(p) => p.is_empty() || p.eq_ignore_ascii_case("auto"),
    }
}

pub async fn send(ctx: &mut Ctx<'_>, r: DepotCopy) -> (Next, bool) {
    if !valid_chksum(&r.chksum) || !plain_path(&r.path) {
        return reply_error(ctx.conn, ErrorCode::UnknownFunction, Next::Continue).await;
    }
    let t = match times(r.timeout_s, r.dest_timeout_s, r.dest_client_timeout_s) {
        Ok(t) => t,
        Err(c) => return reply_error(ctx.conn, c, Next::Continue).await,
    };
    let res = push_to(ctx, &r.key, &r.target, r.src_offset, None, r.len, t).await;
    finish(ctx.conn, res).await
}

pub async fn push(ctx: &mut Ctx<'_>, r: Transfer) -> (Next, bool) {
    if !valid_chksum(&r.chksum) || !(r.ctype == 1 || (r.ctype == 2 && plain_path(&r.path))) {
        return reply_error(ctx.conn, ErrorCode::UnknownFunction, Next::Continue).await;
    }
    let t = match times(r.timeout_s, r.dest_timeout_s, r.dest_client_timeout_s) {
        Ok(t) => t,
        Err(c) => return reply_error(ctx.conn, c, Next::Continue).await,
    };
    let remote_off = match r.remote_offset {
        -1 => None,
        o if o >= 0 => Some(o as u64),
        _ => return reply_error(ctx.conn, ErrorCode::InvalidParameter, Next::Continue).await,
    };
    let res = push_to(ctx, &r.key, &r.remote, r.local_offset, remote_off, r.len, t).await;
    finish(ctx.conn, res).await
}

pub async fn pull(ctx: &mut Ctx<'_>, r: Transfer) -> (Next, bool) {
    if !valid_chksum(&r.chksum) || !(r.ctype == 1 || (r.ctype == 2 && plain_path(&r.path))) {
        return reply_error(ctx.conn, ErrorCode::UnknownFunction, Next::Continue).await;
    }
    let t = match times(r.timeout_s, r.dest_timeout_s, r.dest_client_timeout_s) {
        Ok(t) => t,
        Err(c) => return reply_error(ctx.conn, c, Next::Continue).await,
    };
    let local_off = match r.local_offset {
        -1 => None,
        o => Some(o),
    };
    if r.remote_offset < 0 || r.len < 0 {
        return reply_error(ctx.conn, ErrorCode::InvalidParameter, Next::Continue).await;
    }
    let res =
        pull_from(ctx.shard, &r.key, &r.remote, local_off, r.remote_offset as u64, r.len, t).await;
    finish(ctx.conn, res).await
}

async fn finish(conn: &Conn, res: Result<u64, ErrorCode>) -> (Next, bool) {
    match res {
        Ok(n) => {
            let mut out = Vec::with_capacity(24);
            reply::count(&mut out, n as i64);
            super::reply_ok(conn, out).await
        }
        Err(code) => reply_error(conn, code, Next::Continue).await,
    }
}

/// Copies `[src_off, +len)` of the local allocation (read key `key`) to `target`, appended
/// (`target_off` None) or at `target_off`. Returns the bytes the target confirmed.
async fn push_to(
    ctx: &mut Ctx<'_>,
    key: &KeyRef,
    target: &Capability,
    src_off: i64,
    target_off: Option<u64>,
    len: i64,
    t: Times,
) -> Result<u64, ErrorCode> {
    let shard = ctx.shard.clone();
    let (v, off, end) = read::open(&shard, key, src_off, len, t.own).await?;
    if local_shard(&shard, ctx.conn.local.ip(), target) == Some(shard.idx) {
        return local_copy(&shard, v, off, end, target, target_off).await;
    }
    let deadline = Instant::now() + t.dest_wait;
    let conn = remote::connect(target, deadline).await?;
    let header = remote::write_request(target, target_off, end - off, t.dest_s);
    let mut sink = RemoteSink { conn, header, wait: t.dest_wait, refused: None, acked: false };
    match read::stream(&shard, v, off, end, &mut sink).await {
        Ok(()) => sink.finish().await,
        Err(ReadFailure::Refused(code)) => Err(code),
        Err(ReadFailure::Sink(_)) => Err(sink.refused.unwrap_or(ErrorCode::Connection)),
        Err(ReadFailure::Storage(e)) => {
            tracing::error!(shard = shard.idx, cause = %e, "copy source failed");
            Err(ErrorCode::FileRead)
        }
    }
}

/// Loads `[remote_off, +len)` through `source` into the local allocation (write key `key`).
async fn pull_from(
    shard: &Rc<Shard>,
    key: &KeyRef,
    source: &Capability,
    local_off: Option<i64>,
    remote_off: u64,
    len: i64,
    t: Times,
) -> Result<u64, ErrorCode> {
    let ticket = write::begin(shard, key, local_off, len).await?;
    let deadline = Instant::now() + t.dest_wait;
    let mut conn = remote::connect(source, deadline).await?;
    remote::start_load(&mut conn, source, remote_off, len as u64, t.dest_s, t.dest_wait).await?;
    let mut src = RemoteSource { conn, wait: t.dest_wait };
    match ticket.run(&mut src).await {
        Ok(n) => Ok(n),
        Err(Failure::Peer(_)) => Err(ErrorCode::Connection),
        Err(Failure::Storage(e)) => {
            tracing::error!(shard = shard.idx, cause = %e, "pull failed");
            Err(ErrorCode::FileWrite)
        }
    }
}

/// The shard of this depot that `cap` names, if it names this depot at all.
pub fn local_shard(shard: &Shard, conn_ip: IpAddr, cap: &Capability) -> Option<u16> {
    let host_ok = shard.cfg.public_host.as_deref() == Some(cap.host.as_str())
        || cap.host.parse::<IpAddr>().is_ok_and(|ip| {
            ip == conn_ip
                || ip == shard.cfg.listen.ip()
                || (shard.cfg.listen.ip().is_unspecified() && ip.is_loopback())
        });
    let base = shard.ports.first().map(|p| p - 1);
    let port_ok = Some(cap.port) == base || shard.ports.contains(&cap.port);
    if host_ok && port_ok {
        keys::shard_of(&cap.key)
    } else {
        None
    }
}

/// Disk-to-disk copy between two allocations of this shard.
async fn local_copy(
    shard: &Rc<Shard>,
    src: View,
    off: u64,
    end: u64,
    target: &Capability,
    target_off: Option<u64>,
) -> Result<u64, ErrorCode> {
    let tv = lookup(shard, KeyKind::Write, &target.key_ref())?;
    if tv.id == src.id {
        // Holding the source blocks shared while writing the same allocation could wait on
        // itself; copying an allocation onto itself is refused.
        return Err(ErrorCode::InvalidParameter);
    }
    let rt = shard.rt(src.id);
    let _src_blocks = rt.lock(blocks_touched(off, end, src.checksum_block), false).await;
    let ticket =
        write::begin_view(shard, tv, target_off.map(|o| o as i64), (end - off) as i64).await?;
    let mut source = LocalSource { shard: shard.clone(), v: src, pos: off, end, cur: None };
    ticket.run(&mut source).await.map_err(|e| match e {
        Failure::Peer(_) => ErrorCode::FileRead,
        Failure::Storage(_) => ErrorCode::FileWrite,
    })
}

/// Reads a local allocation chunk by chunk (verified) and hands out its bytes in order.
struct LocalSource {
    shard: Rc<Shard>,
    v: View,
    pos: u64,
    end: u64,
    /// The current source chunk: buffer, allocation offset of its first byte, bytes valid.
    cur: Option<(FixedBuf, u64, u64)>,
}

impl Source for LocalSource {
    async fn fill(&mut self, mut buf: FixedBuf, at: usize, n: usize) -> std::io::Result<FixedBuf> {
        let mut done = 0usize;
        while done < n {
            let covered = matches!(&self.cur, Some((_, start, valid)) if self.pos >= *start && self.pos < start + valid);
            if !covered {
                let plan = chunks(
                    self.pos,
                    self.end,
                    self.v.checksum_block,
                    self.shard.cfg.buffer_bytes,
                    self.v.extent_bytes,
                );
                let c =
                    plan.first().ok_or_else(|| std::io::Error::other("copy source exhausted"))?;
                let b = read::read_chunk(&self.shard, &self.v, c)
                    .await
                    .map_err(std::io::Error::other)?;
                self.cur = Some((b, c.alloc_off, c.disk_len as u64));
            }
            let Some((src, start, valid)) = &self.cur else { continue };
            let from = (self.pos - start) as usize;
            let take = (n - done).min((*valid as usize) - from).min((self.end - self.pos) as usize);
            buf.as_full_mut()[at + done..at + done + take]
                .copy_from_slice(&src.as_full()[from..from + take]);
            done += take;
            self.pos += take as u64;
        }
        Ok(buf)
    }
}
