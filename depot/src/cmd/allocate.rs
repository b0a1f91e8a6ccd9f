//! ALLOCATE (1): admission, soft revocation, three fresh capabilities, durable before reply.
//!
//! Validation follows ACCRE's order and codes: reliability not 1|2 → −21; byte arrays only
//! (other known types −22, unknown −30); size 0 → −30; duration 0 → −30, −1 → the resource
//! maximum, beyond it → −28; unknown RID → −50; over the admission curve → −45; no room even
//! after revoking soft allocations → −23.
//!
//! ALLOCATE_CHKSUM (29) chooses disk digests for the allocation (`disk_digest`): the type must
//! be NONE (0), DEFAULT (−1) or one of MD5/SHA1/SHA256/SHA512, else −64. NONE and DEFAULT give
//! a plain allocation (this depot's resources keep CRC32 only, so their default is no digest).
//! With a digest, the block size becomes the allocation's checksum block (CRC32 and digest per
//! block): it must be a multiple of 4 KiB, at most 1 MiB, and divide the transfer buffer so a
//! chunk is whole blocks, else −65.

use ibp_client::proto::request::{AllocType, Allocate};
use ibp_client::proto::ErrorCode;

use ibp_client::proto::request::ChksumSpec;

use super::{reply_error, reply_ok, Ctx, Next};
use crate::allocation::Durability;
use crate::checksum::MAX_CHECKSUM_BLOCK_BYTES;
use crate::digest::DigestKind;
use crate::extent::Extent;
use crate::shard::Shard;
use crate::table::AllocRequest;

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
    let digest = match disk_digest(shard, req.chksum) {
        Ok(d) => d,
        Err(code) => return reply_error(ctx.conn, code, Next::Continue).await,
    };
    let Some(resource) = resource_of(shard, req.rid.as_deref()) else {
        return reply_error(ctx.conn, ErrorCode::InvalidRid, Next::Continue).await;
    };
    if req.size <= 0 {
        return reply_error(ctx.conn, ErrorCode::InvalidParameter, Next::Continue).await;
    }
    let areq = AllocRequest {
        resource,
        durability,
        duration_s: req.duration_s,
        size: req.size as u64,
        digest,
    };
    let now = shard.clock.now_unix_s();
    shard.sync_policies();
    // Only an allocation that may revoke needs to know which allocations transfers are
    // using (a walk over all of them).
    if shard.table.borrow().may_revoke(resource, req.size as u64, durability) {
        shard.pin_busy();
    }
    let granted = {
        let mut t = shard.table.borrow_mut();
        let mut fill = |b: &mut [u8]| shard.fill_random(b);
        let mut zero = |r: u16, e: Extent| shard.zero_extent(r, e);
        t.allocate(areq, &shard.secret, now, &mut fill, &mut zero)
    };
    let g = match granted {
        Ok(g) => g,
        Err(e) => return reply_error(ctx.conn, super::alloc_error_code(e), Next::Continue).await,
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
    match super::caps_line(ctx, resource, &g.keys, &g.id.to_string()) {
        Ok(out) => reply_ok(ctx.conn, out).await,
        Err(code) => reply_error(ctx.conn, code, Next::Continue).await,
    }
}

/// The resource an ALLOCATE names: its RID, or the first resource for none or `0`.
pub fn resource_of(shard: &Shard, rid: Option<&str>) -> Option<u16> {
    match rid {
        None | Some("0") => Some(0),
        Some(rid) => shard.cfg.resources.iter().position(|r| r.rid == rid).map(|i| i as u16),
    }
}

/// Where an ALLOCATE should run when not on this shard (see [`crate::placement`]): `None`
/// for a malformed one, which is refused here.
pub fn placed_elsewhere(shard: &Shard, req: &Allocate) -> Option<u16> {
    let resource = resource_of(shard, req.rid.as_deref())?;
    let size = u64::try_from(req.size).ok()?;
    crate::placement::better_shard(shard, usize::from(resource), size)
}

/// The disk digest an ALLOCATE_CHKSUM / SPLIT_ALLOCATE_CHKSUM asks for (rules in the module
/// doc); `None` for a plain allocation.
pub fn disk_digest(
    shard: &Shard,
    spec: Option<ChksumSpec>,
) -> Result<Option<(DigestKind, u64)>, ErrorCode> {
    let Some(spec) = spec else { return Ok(None) };
    if spec.cstype == -1 {
        return Ok(None);
    }
    let Some(kind) = DigestKind::from_wire(spec.cstype).map_err(|_| ErrorCode::ChksumType)? else {
        return Ok(None);
    };
    let bs = u64::try_from(spec.blocksize).map_err(|_| ErrorCode::ChksumBlocksize)?;
    let block = crate::extent::BLOCK_BYTES;
    if bs == 0
        || !bs.is_multiple_of(block)
        || bs > MAX_CHECKSUM_BLOCK_BYTES
        || !shard.cfg.buffer_bytes.is_multiple_of(bs)
    {
        return Err(ErrorCode::ChksumBlocksize);
    }
    Ok(Some((kind, bs)))
}
