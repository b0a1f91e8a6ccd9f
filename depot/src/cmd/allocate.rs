//! ALLOCATE (1): admission, soft revocation, three fresh capabilities, durable before reply.
//!
//! Validation follows ACCRE's order and codes: reliability not 1|2 → −21; byte arrays only
//! (other known types −22, unknown −30); size 0 → −30; duration 0 → −30, −1 → the resource
//! maximum, beyond it → −28; unknown RID → −50; over the admission curve → −45; no room even
//! after revoking soft allocations → −23.

use ibp_client::proto::request::{AllocType, Allocate};
use ibp_client::proto::{reply, CapKind, Capability, ErrorCode};

use super::{reply_error, reply_ok, Ctx, Next};
use crate::allocation::Durability;
use crate::extent::Extent;
use crate::table::{AllocError, AllocRequest};

pub async fn run(ctx: &mut Ctx<'_>, req: Allocate) -> (Next, bool) {
    let shard = ctx.shard;
    let Some(durability) = Durability::from_wire(i64::from(req.reliability)) else {
        return reply_error(ctx.conn, ErrorCode::BadFormat, Next::Continue).await;
    };
    match AllocType::from_i32(req.atype) {
        Some(AllocType::ByteArray) => {}
        Some(_) => return reply_error(ctx.conn, ErrorCode::TypeNotSupported, Next::Continue).await,
        None => return reply_error(ctx.conn, ErrorCode::InvalidParameter, Next::Continue).await,
    }
    if req.chksum.is_some() {
        // ALLOCATE_CHKSUM: per-allocation disk digests are not offered yet; every allocation
        // already carries CRC32 per checksum block.
        return reply_error(ctx.conn, ErrorCode::UnknownFunction, Next::Continue).await;
    }
    let resource = match &req.rid {
        None => 0,
        Some(rid) if rid == "0" => 0,
        Some(rid) => match shard.cfg.resources.iter().position(|r| &r.rid == rid) {
            Some(i) => i as u16,
            None => return reply_error(ctx.conn, ErrorCode::InvalidRid, Next::Continue).await,
        },
    };
    if req.size <= 0 {
        return reply_error(ctx.conn, ErrorCode::InvalidParameter, Next::Continue).await;
    }
    let areq =
        AllocRequest { resource, durability, duration_s: req.duration_s, size: req.size as u64 };
    let now = shard.clock.now_unix_s();
    shard.sync_policies();
    shard.pin_busy();
    let granted = {
        let mut t = shard.table.borrow_mut();
        let mut fill = |b: &mut [u8]| shard.fill_random(b);
        let mut zero = |r: u16, e: Extent| shard.zero_extent(r, e);
        t.allocate(areq, &shard.secret, now, &mut fill, &mut zero)
    };
    let g = match granted {
        Ok(g) => g,
        Err(e) => {
            let code = match e {
                AllocError::InvalidParameter => ErrorCode::InvalidParameter,
                AllocError::LongDuration => ErrorCode::LongDuration,
                AllocError::Policy => ErrorCode::WouldExceedPolicy,
                AllocError::NoSpace => ErrorCode::RsrcUnavail,
                AllocError::WouldDamageData => ErrorCode::WouldDamageData,
                AllocError::InvalidRid => ErrorCode::InvalidRid,
            };
            return reply_error(ctx.conn, code, Next::Continue).await;
        }
    };
    if !g.revoked.is_empty() {
        tracing::info!(
            shard = shard.idx,
            revoked = g.revoked.len(),
            "soft allocations revoked for a hard one"
        );
    }
    let sync = durability == Durability::Hard
        && shard.cfg.resources[resource as usize].kind.is_persistent();
    if let Err(e) = shard.commit(resource, &g.records, sync).await {
        tracing::error!(shard = shard.idx, cause = %e, "allocation not made durable");
        return reply_error(ctx.conn, ErrorCode::FileWrite, Next::Close).await;
    }
    let host = match &shard.cfg.public_host {
        Some(h) => h.clone(),
        None => ctx.conn.local.ip().to_string(),
    };
    let port = shard.ports[shard.idx as usize];
    let rid = &shard.cfg.resources[resource as usize].rid;
    let typekey = g.id.to_string();
    let kinds = [CapKind::Read, CapKind::Write, CapKind::Manage];
    let mut caps = Vec::with_capacity(3);
    for (key, kind) in g.keys.iter().zip(kinds) {
        match Capability::new(host.clone(), port, rid.clone(), key.clone(), typekey.clone(), kind) {
            Ok(c) => caps.push(c),
            Err(_) => return reply_error(ctx.conn, ErrorCode::Internal, Next::Continue).await,
        }
    }
    let caps: [Capability; 3] = match caps.try_into() {
        Ok(c) => c,
        Err(_) => return reply_error(ctx.conn, ErrorCode::Internal, Next::Continue).await,
    };
    let mut out = Vec::with_capacity(400);
    reply::caps(&mut out, &caps);
    reply_ok(ctx.conn, out).await
}
