//! ALIAS_ALLOCATE (14): capabilities of their own onto a window of an allocation.
//!
//! `V 14 K(manage) TK offset len duration T` → `1 <read> <write> <manage> \n`, typekey
//! 3862277 (ACCRE). Rules:
//! * the key must be the allocation's manage key (not an alias's): else −4;
//! * `offset = len = 0` is the whole allocation (the window then follows the size and max
//!   size, and the alias may append); otherwise `len > 0`, `offset ≥ 0` (else −30) and the
//!   window must lie inside the max size (else −19). Window offsets are allocation offsets:
//!   an alias reads and writes `[offset, offset+len)` at the same offsets as the master;
//! * `duration = 0` (or −1) inherits the master's lease (the alias then lives as long as the
//!   master); `> 0` is relative seconds, at most the master's remaining lease (else −28);
//!   anything else −30;
//! * the alias starts with reference counts read=1, write=0 and dies with its master;
//! * an allocation has at most 256 live aliases (aliases whose own lease ended are purged
//!   when the limit is reached); beyond that −45.

use ibp_client::proto::request::AliasAllocate;
use ibp_client::proto::ErrorCode;

use super::{caps_line, lookup, reply_error, reply_ok, Ctx, Next, View, ALIAS_TYPEKEY};
use crate::keys::KeyKind;
use crate::shard::Shard;
use crate::table::AliasError;

pub async fn run(ctx: &mut Ctx<'_>, req: AliasAllocate) -> (Next, bool) {
    let shard = ctx.shard.clone();
    let v = match lookup(&shard, KeyKind::Manage, &req.key) {
        Ok(v) => v,
        Err(code) => return reply_error(ctx.conn, code, Next::Continue).await,
    };
    let window = match window_of(&v, req.offset, req.len) {
        Ok(w) => w,
        Err(code) => return reply_error(ctx.conn, code, Next::Continue).await,
    };
    let expires_at = match alias_expiry(&shard, v.id, req.duration_s) {
        Ok(e) => e,
        Err(code) => return reply_error(ctx.conn, code, Next::Continue).await,
    };
    let made = {
        let mut t = shard.table.borrow_mut();
        let mut fill = |b: &mut [u8]| shard.fill_random(b);
        let now = shard.clock.now_unix_s();
        t.add_alias(v.id, window, expires_at, now, &shard.secret, &mut fill)
    };
    let (keys, recs) = match made {
        Ok((_, keys, recs)) => (keys, recs),
        Err(AliasError::NoMaster) => {
            return reply_error(ctx.conn, ErrorCode::CapNotFound, Next::Continue).await
        }
        Err(AliasError::TooMany) => {
            return reply_error(ctx.conn, ErrorCode::WouldExceedPolicy, Next::Continue).await
        }
    };
    if shard.commit(v.resource, &recs, v.sync).await.is_err() {
        return reply_error(ctx.conn, ErrorCode::FileWrite, Next::Close).await;
    }
    match caps_line(ctx, v.resource, &keys, ALIAS_TYPEKEY) {
        Ok(out) => reply_ok(ctx.conn, out).await,
        Err(code) => reply_error(ctx.conn, code, Next::Continue).await,
    }
}

/// The window an `(offset, len)` pair asks for (`None` = the whole allocation).
pub fn window_of(v: &View, offset: i64, len: i64) -> Result<Option<(u64, u64)>, ErrorCode> {
    if offset == 0 && len == 0 {
        return Ok(None);
    }
    if offset < 0 || len <= 0 {
        return Err(ErrorCode::InvalidParameter);
    }
    let (off, len) = (offset as u64, len as u64);
    match off.checked_add(len) {
        Some(end) if end <= v.max_size => Ok(Some((off, len))),
        _ => Err(ErrorCode::WouldExceedLimit),
    }
}

/// The alias lease a duration asks for (`None` = the master's).
pub fn alias_expiry(shard: &Shard, master: u64, duration_s: i64) -> Result<Option<i64>, ErrorCode> {
    match duration_s {
        0 | -1 => Ok(None),
        d if d < 0 => Err(ErrorCode::InvalidParameter),
        d => {
            let now = shard.clock.now_unix_s();
            let t = shard.table.borrow();
            let left = t.get(master).map_or(0, |a| a.seconds_left(now));
            if d > left {
                return Err(ErrorCode::LongDuration);
            }
            Ok(Some(now.saturating_add(d)))
        }
    }
}
