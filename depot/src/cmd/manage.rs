//! MANAGE (9): PROBE, INCR, DECR, CHNG, TRUNCATE.
//!
//! PROBE answers through any of the three capabilities (LoRS probes with the read cap); the
//! others need the manage key, as in ACCRE. Reference counts follow ACCRE: an allocation is
//! created with read=1, write=0 and deleted when both reach 0 (LStore's "remove" is a DECR of
//! the read count). CHNG cannot shrink below the current size (−20); TRUNCATE sets the maximum
//! size and cuts the size to it, zeroing the bytes cut off.

use ibp_client::proto::reply::{self, ProbeReply};
use ibp_client::proto::request::{Manage, ManageOp};
use ibp_client::proto::{ErrorCode, KeyRef};

use super::{lookup, reply_error, reply_ok, Ctx, Next, View};
use crate::allocation::Durability;
use crate::keys::KeyKind;
use crate::shard::Shard;
use crate::table::MetaChange;

pub async fn run(ctx: &mut Ctx<'_>, req: Manage) -> (Next, bool) {
    let shard = ctx.shard.clone();
    let result = match req.op {
        ManageOp::Probe { .. } => return probe(ctx, &shard, &req.key).await,
        ManageOp::Incr { captype } => refs(&shard, &req.key, captype, 1).await,
        ManageOp::Decr { captype } => refs(&shard, &req.key, captype, -1).await,
        ManageOp::Change { max_size, duration_s, reliability, .. } => {
            change(&shard, &req.key, max_size, duration_s, reliability).await
        }
        ManageOp::Truncate { max_size } => truncate(&shard, &req.key, max_size).await,
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

async fn probe(ctx: &mut Ctx<'_>, shard: &Shard, key: &KeyRef) -> (Next, bool) {
    let now = shard.clock.now_unix_s();
    let found = {
        let t = shard.table.borrow();
        t.find_any(&shard.secret, &key.key, now).map(|(a, _)| ProbeReply {
            read_refs: i64::from(a.read_refs),
            write_refs: i64::from(a.write_refs),
            size: a.size as i64,
            max_size: a.max_size as i64,
            seconds_left: a.seconds_left(now),
            reliability: a.durability as i32,
            atype: 1,
        })
    };
    let Ok(p) = found else {
        return reply_error(ctx.conn, ErrorCode::CapNotFound, Next::Continue).await;
    };
    let mut out = Vec::with_capacity(64);
    reply::probe(&mut out, &p);
    reply_ok(ctx.conn, out).await
}

fn meta_of(shard: &Shard, id: u64) -> Result<MetaChange, ErrorCode> {
    shard.table.borrow().get(id).map(MetaChange::of).ok_or(ErrorCode::CapNotFound)
}

use super::alloc_error_code as code_of;

async fn apply(shard: &Shard, v: &View, m: MetaChange, sync: bool) -> Result<(), ErrorCode> {
    let rec = shard.table.borrow_mut().set_meta(v.id, m).map_err(code_of)?;
    shard.commit(v.resource, &[rec], sync).await.map_err(|_| ErrorCode::FileWrite)
}

async fn refs(shard: &Shard, key: &KeyRef, captype: i32, delta: i32) -> Result<(), ErrorCode> {
    let v = lookup(shard, KeyKind::Manage, key)?;
    let mut m = meta_of(shard, v.id)?;
    let count = match captype {
        1 => &mut m.read_refs,
        2 => &mut m.write_refs,
        _ => return Err(ErrorCode::InvalidParameter),
    };
    *count = if delta > 0 {
        count.checked_add(1).ok_or(ErrorCode::InvalidParameter)?
    } else {
        count.checked_sub(1).ok_or(ErrorCode::InvalidParameter)?
    };
    if m.read_refs == 0 && m.write_refs == 0 {
        return shard.delete(v.id).await.map(|_| ()).map_err(|_| ErrorCode::FileWrite);
    }
    apply(shard, &v, m, v.sync).await
}

async fn change(
    shard: &Shard,
    key: &KeyRef,
    max_size: i64,
    duration_s: i64,
    reliability: i32,
) -> Result<(), ErrorCode> {
    let v = lookup(shard, KeyKind::Manage, key)?;
    let mut m = meta_of(shard, v.id)?;
    if max_size <= 0 || (max_size as u64) < m.size {
        return Err(ErrorCode::WouldDamageData);
    }
    m.max_size = max_size as u64;
    if duration_s >= 0 {
        shard.sync_policies();
        let d = shard.table.borrow().resolve_duration(v.resource, duration_s).map_err(code_of)?;
        m.expires_at = shard.clock.now_unix_s().saturating_add(d);
    }
    match reliability {
        -1 => {}
        r => m.durability = Durability::from_wire(i64::from(r)).ok_or(ErrorCode::BadFormat)?,
    }
    let sync = v.sync || m.durability == Durability::Hard;
    apply(shard, &v, m, sync).await
}

async fn truncate(shard: &Shard, key: &KeyRef, max_size: i64) -> Result<(), ErrorCode> {
    let v = lookup(shard, KeyKind::Manage, key)?;
    if max_size < 0 {
        return Err(ErrorCode::InvalidParameter);
    }
    let new_max = max_size as u64;
    let rt = shard.rt(v.id);
    let _all = rt.lock(0..u64::MAX, true).await;
    let mut m = meta_of(shard, v.id)?;
    let mut recs = Vec::with_capacity(2);
    let cb = v.checksum_block;
    if new_max < m.size {
        // Zero what is cut off, so the bytes past the new size read as zeros again, then
        // recompute the CRC of the block the new size ends in.
        let store = &shard.stores[v.resource as usize];
        store.zero(v.base + new_max, m.size - new_max).map_err(|_| ErrorCode::FileWrite)?;
        m.size = new_max;
        m.crc_len = new_max.div_ceil(cb);
        if !new_max.is_multiple_of(cb) {
            let block = new_max / cb;
            let at = block * cb;
            let len = (cb.min(v.extent_bytes - at)) as usize;
            let buf = ibp_io::buf::acquire().await;
            let (r, buf) = store.read(buf, v.base + at, len).await;
            r.map_err(|_| ErrorCode::FileRead)?;
            let crc = crate::checksum::block_crc(buf.as_slice(), cb);
            m.crc_len = block;
            recs.push(shard.table.borrow_mut().set_meta(v.id, m).map_err(code_of)?);
            recs.extend(shard.table.borrow_mut().apply_data(v.id, new_max, block, &[crc]));
            if let Some(kind) = v.digest {
                let sum = kind.block(buf.as_slice(), cb);
                recs.extend(shard.table.borrow_mut().apply_digests(v.id, block, sum.as_bytes()));
            }
        }
    }
    if recs.is_empty() {
        m.max_size = new_max;
        recs.push(shard.table.borrow_mut().set_meta(v.id, m).map_err(code_of)?);
    } else {
        let mut m2 = meta_of(shard, v.id)?;
        m2.max_size = new_max;
        recs.push(shard.table.borrow_mut().set_meta(v.id, m2).map_err(code_of)?);
    }
    shard.commit(v.resource, &recs, v.sync).await.map_err(|_| ErrorCode::FileWrite)
}
