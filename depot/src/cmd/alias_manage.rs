//! ALIAS_MANAGE (15): PROBE, INCR, DECR and CHNG of an alias, through the alias's manage key.
//!
//! * PROBE `V 15 K TK 40 T` → `1 <read refs> <write refs> <offset> <len> <seconds left> \n`
//!   (offset and len are 0 0 for a whole-allocation alias).
//! * INCR/DECR `V 15 K TK 41|42 captype Kmaster TKm T`: captype 1 (read) or 2 (write), else
//!   −30; the master's manage key must be the manage key of the alias's master, else −4 (the
//!   wire form carries it, and ACCRE requires it). An alias whose counts both reach 0 is
//!   deleted (the master is untouched); a count below 0 is −30.
//! * CHNG `V 15 K TK 43 offset len duration Kmaster TKm T`: a new window and lease with the
//!   rules of ALIAS_ALLOCATE (alias_allocate.rs), checked against the master's max size now.
//!
//! A key that is not an alias's manage key answers −4.

use ibp_client::proto::reply::{self, AliasProbeReply};
use ibp_client::proto::request::{AliasManage, AliasManageOp};
use ibp_client::proto::{ErrorCode, KeyRef};

use super::alias_allocate::{alias_expiry, window_of};
use super::{lookup, reply_error, reply_ok, Ctx, Next, View};
use crate::allocation::Alias;
use crate::keys::KeyKind;
use crate::shard::Shard;

pub async fn run(ctx: &mut Ctx<'_>, req: AliasManage) -> (Next, bool) {
    let shard = ctx.shard.clone();
    let now = shard.clock.now_unix_s();
    let found = {
        let t = shard.table.borrow();
        t.find_alias(&shard.secret, KeyKind::Manage, &req.key.key, now)
            .map(|(al, m)| (al.clone(), m.expires_at))
    };
    let Ok((al, master_expires)) = found else {
        return reply_error(ctx.conn, ErrorCode::CapNotFound, Next::Continue).await;
    };
    let result = match req.op {
        AliasManageOp::Probe => {
            let (offset, len) = al.window.unwrap_or((0, 0));
            let p = AliasProbeReply {
                read_refs: i64::from(al.read_refs),
                write_refs: i64::from(al.write_refs),
                offset: offset as i64,
                len: len as i64,
                seconds_left: (al.expires(master_expires) - now).max(0),
            };
            let mut out = Vec::with_capacity(64);
            reply::alias_probe(&mut out, &p);
            return reply_ok(ctx.conn, out).await;
        }
        AliasManageOp::Incr { captype, master_key, .. } => {
            refs(&shard, al, &master_key, captype, true).await
        }
        AliasManageOp::Decr { captype, master_key, .. } => {
            refs(&shard, al, &master_key, captype, false).await
        }
        AliasManageOp::Change { offset, len, duration_s, master_key, .. } => {
            change(&shard, al, &master_key, offset, len, duration_s).await
        }
    };
    match result {
        Ok(()) => {
            let mut out = Vec::with_capacity(4);
            reply::ok(&mut out);
            reply_ok(ctx.conn, out).await
        }
        Err(code) => reply_error(ctx.conn, code, Next::Continue).await,
    }
}

/// Checks that `master_key` is the manage key of the alias's master; returns the master.
fn authorise(shard: &Shard, al: &Alias, master_key: &KeyRef) -> Result<View, ErrorCode> {
    let m = lookup(shard, KeyKind::Manage, master_key)?;
    if m.id != al.master {
        return Err(ErrorCode::CapNotFound);
    }
    Ok(m)
}

async fn refs(
    shard: &Shard,
    mut al: Alias,
    master_key: &KeyRef,
    captype: i32,
    up: bool,
) -> Result<(), ErrorCode> {
    let m = authorise(shard, &al, master_key)?;
    let count = match captype {
        1 => &mut al.read_refs,
        2 => &mut al.write_refs,
        _ => return Err(ErrorCode::InvalidParameter),
    };
    *count = if up { count.checked_add(1) } else { count.checked_sub(1) }
        .ok_or(ErrorCode::InvalidParameter)?;
    let rec = if al.read_refs == 0 && al.write_refs == 0 {
        shard.table.borrow_mut().remove_alias(al.id)
    } else {
        shard.table.borrow_mut().update_alias(al)
    };
    shard.commit(m.resource, &[rec], m.sync).await.map_err(|_| ErrorCode::FileWrite)
}

async fn change(
    shard: &Shard,
    mut al: Alias,
    master_key: &KeyRef,
    offset: i64,
    len: i64,
    duration_s: i64,
) -> Result<(), ErrorCode> {
    let m = authorise(shard, &al, master_key)?;
    al.window = window_of(&m, offset, len)?;
    al.expires_at = alias_expiry(shard, m.id, duration_s)?;
    let rec = shard.table.borrow_mut().update_alias(al);
    shard.commit(m.resource, &[rec], m.sync).await.map_err(|_| ErrorCode::FileWrite)
}
