//! STATUS (4): ST_INQ (v1 with a RID and the v0 one-line form), ST_RES, ST_VERSION, ST_CHANGE.
//!
//! Figures cover the whole depot: every shard publishes its usage (stats.rs), so a STATUS on
//! any core sums all of them. INQ accepts any password unless the operator configured one
//! (existing clients send `ibp`); ST_CHANGE is refused (−25) unless a password is configured.
//! Capacity is fixed by the data files made at start-up, so ST_CHANGE may change only the
//! maximum duration; asking for other sizes answers −30.

use std::fmt::Write as _;
use std::sync::atomic::Ordering;

use ibp_client::proto::reply::{self, InqBody, V0Inq};
use ibp_client::proto::request::{parse_status_change_values, Status, StatusOp};
use ibp_client::proto::ErrorCode;

use super::{reply_error, reply_ok, Ctx, Next};
use crate::config::ResourceKind;
use crate::shard::Shard;
use crate::stats::{self, merge, JOURNAL_COMPACTION};

/// Depot software version reported in ST_VERSION.
const VERSION_TEXT: &str = concat!("ibp-depot ", env!("CARGO_PKG_VERSION"));

pub async fn run(ctx: &mut Ctx<'_>, req: Status) -> (Next, bool) {
    let shard = ctx.shard.clone();
    match req.op {
        StatusOp::Inq { rid, password } => {
            if let Some(pw) = &shard.cfg.status_password {
                if &password.0 != pw {
                    return reply_error(ctx.conn, ErrorCode::WrongPasswd, Next::Continue).await;
                }
            }
            let Some(r) = resource_index(&shard, rid.as_deref()) else {
                return reply_error(ctx.conn, ErrorCode::InvalidRid, Next::Continue).await;
            };
            let u = usage(&shard, r);
            let mut out = Vec::with_capacity(256);
            if rid.is_none() {
                let mb = |b: u64| (b >> 20) as i64;
                let v0 = V0Inq {
                    hard_mb: mb(u.capacity),
                    hard_used_mb: mb(u.hard),
                    soft_mb: mb(u.capacity),
                    soft_used_mb: mb(u.soft),
                    max_duration_s: shard.max_duration(r),
                };
                reply::v0_inq(&mut out, &v0);
            } else {
                reply::status_inq(&mut out, &inq_body(&shard, r, &u));
            }
            reply_ok(ctx.conn, out).await
        }
        StatusOp::Res => {
            let rids: Vec<&str> = shard.cfg.resources.iter().map(|r| r.rid.as_str()).collect();
            let mut out = Vec::with_capacity(64);
            reply::status_res(&mut out, &rids);
            reply_ok(ctx.conn, out).await
        }
        StatusOp::Version => {
            let mut out = Vec::with_capacity(1024);
            reply::status_version(&mut out, &version_text(&shard));
            reply_ok(ctx.conn, out).await
        }
        StatusOp::Stats { .. } => {
            reply_error(ctx.conn, ErrorCode::InvalidCmd, Next::Continue).await
        }
        StatusOp::Change { rid, password } => {
            change(ctx, &shard, rid.as_deref(), &password.0).await
        }
    }
}

async fn change(
    ctx: &mut Ctx<'_>,
    shard: &Shard,
    rid: Option<&str>,
    password: &str,
) -> (Next, bool) {
    let Some(pw) = &shard.cfg.status_password else {
        return reply_error(ctx.conn, ErrorCode::InvalidCmd, Next::Close).await;
    };
    if password != pw {
        return reply_error(ctx.conn, ErrorCode::WrongPasswd, Next::Close).await;
    }
    let Some(r) = resource_index(shard, rid) else {
        return reply_error(ctx.conn, ErrorCode::InvalidRid, Next::Close).await;
    };
    let mut ack = Vec::with_capacity(4);
    reply::ok(&mut ack);
    if ctx.conn.send(ack).await.is_err() {
        return (Next::Drop, false);
    }
    let line = match ctx.conn.read_second_line(std::time::Duration::from_secs(10)).await {
        Ok(l) => l,
        Err(_) => return (Next::Drop, false),
    };
    let Ok((hard_mb, soft_mb, duration_s)) = parse_status_change_values(&line) else {
        return reply_error(ctx.conn, ErrorCode::BadFormat, Next::Close).await;
    };
    let cap_mb = (usage(shard, r).capacity >> 20) as i64;
    if hard_mb != cap_mb || soft_mb != cap_mb || duration_s <= 0 {
        return reply_error(ctx.conn, ErrorCode::InvalidParameter, Next::Continue).await;
    }
    shard.shared_max_duration[r].store(duration_s, Ordering::Relaxed);
    tracing::info!(rid = %shard.cfg.resources[r].rid, duration_s, "maximum duration changed by ST_CHANGE");
    let mut out = Vec::with_capacity(4);
    reply::ok(&mut out);
    reply_ok(ctx.conn, out).await
}

/// RID `None` (v0) and `"0"` mean the first resource; `*` (LoCI "all") too.
fn resource_index(shard: &Shard, rid: Option<&str>) -> Option<usize> {
    match rid {
        None | Some("0") | Some("*") => Some(0),
        Some(r) => shard.cfg.resources.iter().position(|c| c.rid == r),
    }
}

/// Whole-depot usage of resource `r`, in bytes.
pub struct Usage {
    pub capacity: u64,
    pub free: u64,
    pub hard: u64,
    pub soft: u64,
    pub allocations: u64,
}

pub fn usage(shard: &Shard, r: usize) -> Usage {
    let mut u = Usage { capacity: 0, free: 0, hard: 0, soft: 0, allocations: 0 };
    for s in shard.all_stats.iter() {
        let x = &s.usage[r];
        u.capacity += stats::get(&x.capacity);
        u.free += stats::get(&x.free);
        u.hard += stats::get(&x.hard);
        u.soft += stats::get(&x.soft);
        u.allocations += stats::get(&x.allocations);
    }
    u
}

fn inq_body(shard: &Shard, r: usize, u: &Usage) -> InqBody {
    let rt = match shard.cfg.resources[r].kind {
        ResourceKind::Disk(_) | ResourceKind::Device(_) => 1,
        ResourceKind::Ram => 2,
    };
    let as_i = |b: u64| b as i64;
    InqBody {
        version: "1.4:1.0".into(),
        data_movers: "1".into(),
        rid: shard.cfg.resources[r].rid.clone(),
        resource_type: rt,
        configured_total: as_i(u.capacity),
        served_total: as_i(u.capacity),
        used_total: as_i(u.hard + u.soft),
        used_hard: as_i(u.hard),
        served_hard: as_i(u.capacity),
        configured_hard: as_i(u.capacity),
        allocatable_total: as_i(u.free),
        allocatable_hard: as_i(u.free + u.soft),
        max_duration_s: shard.max_duration(r),
    }
}

pub(crate) fn version_text(shard: &Shard) -> String {
    let mut t = String::new();
    let _ = writeln!(t, "{VERSION_TEXT}  protocol 1.4");
    let _ = writeln!(t, "shards: {}  ports: {:?}", shard.cfg.cores, shard.ports);
    let _ = writeln!(t, "uptime_s: {}", shard.started.elapsed().as_secs());
    let conns: u64 = shard.all_stats.iter().map(|s| stats::get(&s.connections)).sum();
    let _ = writeln!(t, "connections: {conns}");
    for (i, r) in shard.cfg.resources.iter().enumerate() {
        let u = usage(shard, i);
        let _ = writeln!(
            t,
            "resource {} {}: capacity {} free {} hard {} soft {} allocations {} max_duration_s {}",
            r.rid,
            match r.kind {
                ResourceKind::Disk(_) => "disk",
                ResourceKind::Device(_) => "device",
                ResourceKind::Ram => "ram",
            },
            u.capacity,
            u.free,
            u.hard,
            u.soft,
            u.allocations,
            shard.max_duration(i)
        );
    }
    for (name, m) in merge(&shard.all_stats) {
        let kind = if name == JOURNAL_COMPACTION { "" } else { "command " };
        let _ = writeln!(
            t,
            "{kind}{name}: count {} errors {} p50_us {} p99_us {}",
            m.count, m.errors, m.p50_us, m.p99_us
        );
    }
    t
}
