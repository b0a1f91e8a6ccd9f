//! SPLIT_ALLOCATE (18) and SPLIT_ALLOCATE_CHKSUM (30): carve a new allocation out of a
//! master's unused space.
//!
//! `V 18 [cs bs] K(master manage) TK reliability type duration size T` → three capabilities
//! of the child (typekey = the child's id, as ALLOCATE). Rules:
//! * reliability 1|2 else −21; byte arrays only (other known types −22, unknown −30); size ≤ 0
//!   −30; duration as ALLOCATE (−1 = the resource maximum, 0 −30, too long −28); the `_CHKSUM`
//!   form chooses the child's disk digests as ALLOCATE_CHKSUM does (−64/−65);
//! * the child's bytes come from the end of the master's extent and must be free space of
//!   the master past its size. Extents are whole 4 KiB blocks (O_DIRECT), so the child takes
//!   ⌈size / 4 KiB⌉ blocks and the master's max size shrinks by the child's size, rounded up
//!   to those blocks when the master's max size was block aligned (1 MiB split by 500 000
//!   leaves 544 768); it must stay ≥ the master's size and ≥ 1, else −19;
//! * the child is an ordinary allocation on the same shard and resource (refs 1/0, its own
//!   lease and reliability); its space past its size is zeros, because it was the master's
//!   space past the master's size;
//! * the master is held exclusively while it shrinks, so no write in flight can reach the
//!   space handed to the child.

use ibp_client::proto::request::{AllocType, SplitAllocate};
use ibp_client::proto::ErrorCode;

use super::allocate::disk_digest;
use super::{caps_line, lookup, reply_error, reply_ok, Ctx, Next};
use crate::allocation::Durability;
use crate::keys::KeyKind;
use crate::table::{AllocError, AllocRequest};

pub async fn run(ctx: &mut Ctx<'_>, req: SplitAllocate) -> (Next, bool) {
    let shard = ctx.shard.clone();
    let v = match lookup(&shard, KeyKind::Manage, &req.key) {
        Ok(v) => v,
        Err(code) => return reply_error(ctx.conn, code, Next::Continue).await,
    };
    let Some(durability) = Durability::from_wire(i64::from(req.reliability)) else {
        return reply_error(ctx.conn, ErrorCode::BadFormat, Next::Continue).await;
    };
    match AllocType::from_i32(req.atype) {
        Some(AllocType::ByteArray) => {}
        Some(_) => return reply_error(ctx.conn, ErrorCode::TypeNotSupported, Next::Continue).await,
        None => return reply_error(ctx.conn, ErrorCode::InvalidParameter, Next::Continue).await,
    }
    let digest = match disk_digest(&shard, req.chksum) {
        Ok(d) => d,
        Err(code) => return reply_error(ctx.conn, code, Next::Continue).await,
    };
    if req.size <= 0 {
        return reply_error(ctx.conn, ErrorCode::InvalidParameter, Next::Continue).await;
    }
    let areq = AllocRequest {
        resource: v.resource,
        durability,
        duration_s: req.duration_s,
        size: req.size as u64,
        digest,
    };
    let rt = shard.rt(v.id);
    let _all = rt.lock(0..u64::MAX, true).await;
    shard.sync_policies();
    let now = shard.clock.now_unix_s();
    let granted = {
        let mut t = shard.table.borrow_mut();
        let mut fill = |b: &mut [u8]| shard.fill_random(b);
        t.split(v.id, areq, &shard.secret, now, &mut fill)
    };
    let g = match granted {
        Ok(g) => g,
        Err(e) => {
            // A split that does not fit the master is "would exceed the limit" (of the master).
            let code = match e {
                AllocError::NoSpace => ErrorCode::WouldExceedLimit,
                other => super::alloc_error_code(other),
            };
            return reply_error(ctx.conn, code, Next::Continue).await;
        }
    };
    let sync = v.sync || (durability == Durability::Hard && shard.is_disk(v.resource));
    if shard.commit(v.resource, &g.records, sync).await.is_err() {
        return reply_error(ctx.conn, ErrorCode::FileWrite, Next::Close).await;
    }
    match caps_line(ctx, v.resource, &g.keys, &g.id.to_string()) {
        Ok(out) => reply_ok(ctx.conn, out).await,
        Err(code) => reply_error(ctx.conn, code, Next::Continue).await,
    }
}
