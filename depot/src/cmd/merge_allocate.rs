//! MERGE_ALLOCATE (19): give a child's space back to its master.
//!
//! `V 19 Kmaster TKm Kchild TKc T` (both manage keys) → `1 \n`. Rules:
//! * both keys must be manage keys of live allocations on this shard (the master's key routes
//!   the command; a child elsewhere is not found): else −4;
//! * the child must have exactly its creation reference counts, read=1 and write=0 (nobody
//!   else holds it), else −20;
//! * the child's space must continue the master's: same resource and the child's extent
//!   starts where the master's ends — true of a child just split off, and of children merged
//!   back in the reverse order of their splits — else −30; merging an allocation into itself
//!   is −30;
//! * the child is deleted (with its aliases) and its space zeroed; the master's max size grows
//!   by the child's whole blocks (what SPLIT took, so split then merge restores a block-aligned
//!   master exactly); the master's size and bytes are unchanged. Both allocations are
//!   held exclusively meanwhile (lower id first, so two merges cannot deadlock).

use ibp_client::proto::request::MergeAllocate;
use ibp_client::proto::{reply, ErrorCode};

use super::{lookup, reply_error, reply_ok, Ctx, Next};
use crate::extent::Extent;
use crate::keys::KeyKind;
use crate::table::MergeError;

pub async fn run(ctx: &mut Ctx<'_>, req: MergeAllocate) -> (Next, bool) {
    let shard = ctx.shard.clone();
    let (m, c) = match (
        lookup(&shard, KeyKind::Manage, &req.master_key),
        lookup(&shard, KeyKind::Manage, &req.child_key),
    ) {
        (Ok(m), Ok(c)) => (m, c),
        (Err(code), _) | (_, Err(code)) => {
            return reply_error(ctx.conn, code, Next::Continue).await
        }
    };
    if m.id == c.id {
        return reply_error(ctx.conn, ErrorCode::InvalidParameter, Next::Continue).await;
    }
    let (lo, hi) = if m.id < c.id { (m.id, c.id) } else { (c.id, m.id) };
    let (rt_lo, rt_hi) = (shard.rt(lo), shard.rt(hi));
    let _g1 = rt_lo.lock(0..u64::MAX, true).await;
    let _g2 = rt_hi.lock(0..u64::MAX, true).await;
    let merged = {
        let mut t = shard.table.borrow_mut();
        let mut zero = |r: u16, e: Extent| shard.zero_extent(r, e);
        t.merge(m.id, c.id, &mut zero)
    };
    let recs = match merged {
        Ok(r) => r,
        Err(e) => {
            let code = match e {
                MergeError::ChildReferenced => ErrorCode::WouldDamageData,
                MergeError::NotMergeable => ErrorCode::InvalidParameter,
                MergeError::Policy => ErrorCode::WouldExceedPolicy,
            };
            return reply_error(ctx.conn, code, Next::Continue).await;
        }
    };
    if shard.commit(m.resource, &recs, m.sync || c.sync).await.is_err() {
        return reply_error(ctx.conn, ErrorCode::FileWrite, Next::Close).await;
    }
    let mut out = Vec::with_capacity(4);
    reply::ok(&mut out);
    reply_ok(ctx.conn, out).await
}
