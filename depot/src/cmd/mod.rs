//! Command handlers, one file per command, all with the same shape: parse (done by
//! `ibp_client::proto`), validate, apply, reply.
//!
//! # Layout
//! * `allocate` — ALLOCATE (1) and ALLOCATE_CHKSUM (29): disk digest choice.
//! * `alias_allocate` — ALIAS_ALLOCATE (14): windowed capabilities onto an allocation.
//! * `alias_manage` — ALIAS_MANAGE (15): PROBE, INCR, DECR, CHNG of an alias.
//! * `rename` — RENAME (16): new capabilities, old ones retired.
//! * `split_allocate` — SPLIT_ALLOCATE (18/30): carve a child from a master's free space.
//! * `merge_allocate` — MERGE_ALLOCATE (19): give a child's space back.
//! * `get_chksum` — GET_CHKSUM (31): stored disk digests.
//! * `validate_chksum` — VALIDATE_CHKSUM (32): re-read and count bad blocks.
//! * `copy` — SEND (5), PUSH (20), PULL (21), PHOEBUS_SEND (17): depot-to-depot copies.
//! * `store` — STORE (2/28) and WRITE (13/27): the bulk write path, network checksums.
//! * `load` — LOAD (8/24): the bulk read path, with server sync and network checksums.
//! * `vec_write` — VEC_WRITE (33/34): scatter write over `store`'s path.
//! * `vec_read` — VEC_READ (35/36): gather read over `load`'s path.
//! * `mcopy` — MCOPY (6, LoCI form), MCOPY_EXT (60) fan-out/chain/streams, CHAIN_STORE (61).
//! * `manage` — MANAGE (9): PROBE, INCR, DECR, CHNG, TRUNCATE.
//! * `status` — STATUS (4): INQ (v0 and v1), RES, VERSION, CHANGE.

pub mod alias_allocate;
pub mod alias_manage;
pub mod allocate;
pub mod copy;
pub mod get_chksum;
pub mod load;
pub mod manage;
pub mod mcopy;
pub mod merge_allocate;
pub mod rename;
pub mod split_allocate;
pub mod status;
pub mod store;
pub mod validate_chksum;
pub mod vec_read;
pub mod vec_write;

use std::rc::Rc;
use std::time::Duration;

use ibp_client::proto::request::{ChksumSpec, IoSpan};
use ibp_client::proto::{reply, CapKind, Capability, ErrorCode, KeyRef, Request};

use crate::allocation::Durability;
use crate::conn::Conn;
use crate::digest::DigestKind;
use crate::keys::KeyKind;
use crate::shard::Shard;
use crate::transfer::write::Target;

/// What the connection does after a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Read the next command.
    Continue,
    /// Send `-66 <secs>` and close (the stream can no longer be trusted to be in step).
    Close,
    /// Close without a notice (the peer is gone or a transfer was cut short on purpose).
    Drop,
}

/// Everything a handler works with.
pub struct Ctx<'a> {
    pub shard: &'a Rc<Shard>,
    pub conn: &'a mut Conn,
    /// The command's name and start, for its STATUS figures.
    pub name: &'static str,
    pub t0: std::time::Instant,
    /// Set by a handler that left its outcome to the reply lane ([`Conn::defer`]), which
    /// records the command's figures itself once it knows them.
    pub deferred: bool,
}

/// ACCRE turns a server-sync timeout of 0 into 2 s; we also cap absurd values at an hour.
pub fn server_sync(timeout_s: i64) -> Duration {
    Duration::from_secs(if timeout_s <= 0 { 2 } else { timeout_s.min(3600) as u64 })
}

/// Runs one parsed request (already routed to this shard) and says what to do next.
pub async fn dispatch(ctx: &mut Ctx<'_>, req: Request) -> (Next, bool) {
    match req {
        Request::Allocate(r) => allocate::run(ctx, r).await,
        Request::Store(r) => {
            store::run(ctx, &r.key, Target::Append(r.len), r.chksum, r.timeout_s).await
        }
        Request::Write(r) => {
            let span = vec![IoSpan { offset: r.offset, len: r.len }];
            store::run(ctx, &r.key, Target::Spans(span), r.chksum, r.timeout_s).await
        }
        Request::Load(r) => {
            let span = [IoSpan { offset: r.offset, len: r.len }];
            load::run(ctx, &r.key, &span, r.chksum, r.timeout_s).await
        }
        Request::VecWrite(r) => vec_write::run(ctx, r).await,
        Request::VecRead(r) => vec_read::run(ctx, r).await,
        Request::AliasAllocate(r) => alias_allocate::run(ctx, r).await,
        Request::AliasManage(r) => alias_manage::run(ctx, r).await,
        Request::Rename(r) => rename::run(ctx, r).await,
        Request::SplitAllocate(r) => split_allocate::run(ctx, r).await,
        Request::MergeAllocate(r) => merge_allocate::run(ctx, r).await,
        Request::GetChksum(r) => get_chksum::run(ctx, r).await,
        Request::ValidateChksum(r) => validate_chksum::run(ctx, r).await,
        Request::Manage(r) => manage::run(ctx, r).await,
        Request::Status(r) => status::run(ctx, r).await,
        Request::Send(r) | Request::PhoebusSend(r) => copy::send(ctx, r).await,
        Request::Push(r) => copy::push(ctx, r).await,
        Request::Pull(r) => copy::pull(ctx, r).await,
        Request::Mcopy(r) => mcopy::run_loci(ctx, r).await,
    }
}

/// Typekey of capabilities issued by ALIAS_ALLOCATE and RENAME (ACCRE `handle_commands.c`).
pub const ALIAS_TYPEKEY: &str = "3862277";

/// `1 <read> <write> <manage> \n` for three fresh keys on `resource`, naming the host the
/// client reached (or the configured public host) and this shard's own port.
pub fn caps_line(
    ctx: &Ctx<'_>,
    resource: u16,
    keys: &[String; 3],
    typekey: &str,
) -> Result<Vec<u8>, ErrorCode> {
    let shard = ctx.shard;
    let host = match &shard.cfg.public_host {
        Some(h) => h.clone(),
        None => ctx.conn.local.ip().to_string(),
    };
    let port = shard.ports[shard.idx as usize];
    let rid = &shard.cfg.resources[resource as usize].rid;
    let kinds = [CapKind::Read, CapKind::Write, CapKind::Manage];
    let mut caps = Vec::with_capacity(3);
    for (key, kind) in keys.iter().zip(kinds) {
        let cap = Capability::new(host.clone(), port, rid.clone(), key.clone(), typekey, kind)
            .map_err(|_| ErrorCode::Internal)?;
        caps.push(cap);
    }
    let caps: [Capability; 3] = caps.try_into().map_err(|_| ErrorCode::Internal)?;
    let mut out = Vec::with_capacity(400);
    reply::caps(&mut out, &caps);
    Ok(out)
}

/// The IBP code for a refused allocation or change (split answers NoSpace with −19 itself).
pub fn alloc_error_code(e: crate::table::AllocError) -> ErrorCode {
    use crate::table::AllocError;
    match e {
        AllocError::InvalidParameter => ErrorCode::InvalidParameter,
        AllocError::LongDuration => ErrorCode::LongDuration,
        AllocError::Policy => ErrorCode::WouldExceedPolicy,
        AllocError::NoSpace => ErrorCode::RsrcUnavail,
        AllocError::WouldDamageData => ErrorCode::WouldDamageData,
        AllocError::InvalidRid => ErrorCode::InvalidRid,
    }
}

/// Sends an error and returns `(next, false)`; a failed send drops the connection.
pub async fn reply_error(conn: &Conn, code: ErrorCode, next: Next) -> (Next, bool) {
    match conn.send_error(code).await {
        Ok(()) => (next, false),
        Err(_) => (Next::Drop, false),
    }
}

/// Sends a success reply and returns `(Continue, true)`.
pub async fn reply_ok(conn: &Conn, bytes: Vec<u8>) -> (Next, bool) {
    match conn.send(bytes).await {
        Ok(()) => (Next::Continue, true),
        Err(_) => (Next::Drop, true),
    }
}

/// What a handler needs to know about an allocation, copied out of the table so no borrow is
/// held across I/O.
#[derive(Debug, Clone, Copy)]
pub struct View {
    pub id: u64,
    pub resource: u16,
    pub base: u64,
    pub extent_bytes: u64,
    pub size: u64,
    pub max_size: u64,
    pub durability: Durability,
    /// The allocation's checksum block (its own with disk digests, else the resource's).
    pub checksum_block: u64,
    pub sync: bool,
    /// Disk digest kind chosen at ALLOCATE_CHKSUM, computed while writing.
    pub digest: Option<DigestKind>,
    /// Set when the key was an alias's with a window: `(offset, len)` in allocation offsets
    /// that every access must stay inside, and no appends.
    pub window: Option<(u64, u64)>,
}

/// Finds the live allocation `key` grants `kind` on, or answers why not. Read and write keys
/// of aliases are accepted too (the view then carries the alias window); manage keys of
/// aliases are only for ALIAS_MANAGE.
pub fn lookup(shard: &Shard, kind: KeyKind, key: &KeyRef) -> Result<View, ErrorCode> {
    let now = shard.clock.now_unix_s();
    let t = shard.table.borrow();
    let (a, window) = match t.find(&shard.secret, kind, &key.key, now) {
        Ok(a) => (a, None),
        Err(_) if kind != KeyKind::Manage => {
            let (al, a) = t
                .find_alias(&shard.secret, kind, &key.key, now)
                .map_err(|_| ErrorCode::CapNotFound)?;
            (a, al.window)
        }
        Err(_) => return Err(ErrorCode::CapNotFound),
    };
    if let Some(rid) = &key.rid {
        let own = &shard.cfg.resources[a.resource as usize].rid;
        // LoCI sends keys without a RID and ACCRE clients send the one in the capability;
        // a different RID means the capability was altered.
        if rid != own && rid != "0" {
            return Err(ErrorCode::CapNotFound);
        }
    }
    Ok(View {
        id: a.id,
        resource: a.resource,
        base: a.base_offset(),
        extent_bytes: a.extent_bytes(),
        size: a.size,
        max_size: a.max_size,
        durability: a.durability,
        checksum_block: a.block_bytes(t.regions[a.resource as usize].policy.checksum_block_bytes),
        sync: shard.needs_sync(a),
        digest: a.disk_digests.as_ref().map(|d| d.kind),
        window,
    })
}

/// Whether `[off, end)` lies inside the view's window (always, without one).
pub fn in_window(v: &View, off: u64, end: u64) -> bool {
    v.window.is_none_or(|(w_off, w_len)| off >= w_off && end <= w_off.saturating_add(w_len))
}

/// The allocation bytes a data command's span names: offset and length ≥ 0 (else −30), and
/// inside the max size and the alias window (else −19).
pub fn span_range(v: &View, s: &IoSpan) -> Result<std::ops::Range<u64>, ErrorCode> {
    if s.offset < 0 || s.len < 0 {
        return Err(ErrorCode::InvalidParameter);
    }
    let off = s.offset as u64;
    let end = off
        .checked_add(s.len as u64)
        .filter(|&e| e <= v.max_size && in_window(v, off, e))
        .ok_or(ErrorCode::WouldExceedLimit)?;
    Ok(off..end)
}

/// Validates the `cstype blocksize` of a `_CHKSUM` data command: the digest kind and network
/// block size, `None` for plain framing (no spec, or type NONE). Unknown types answer −64; a
/// block size outside 1..=one transfer buffer answers −65 (the writer verifies a whole network
/// block before any of it reaches disk, so a block must fit in the bytes it holds back).
pub fn net_spec(
    shard: &Shard,
    chksum: Option<ChksumSpec>,
) -> Result<Option<(DigestKind, u64)>, ErrorCode> {
    let Some(spec) = chksum else { return Ok(None) };
    let kind = DigestKind::from_wire(spec.cstype).map_err(|_| ErrorCode::ChksumType)?;
    let Some(kind) = kind else { return Ok(None) };
    if spec.blocksize <= 0 || spec.blocksize as u64 > shard.cfg.buffer_bytes {
        return Err(ErrorCode::ChksumBlocksize);
    }
    Ok(Some((kind, spec.blocksize as u64)))
}

/// Which shard a request's key routes to, if it carries one.
pub fn key_of(req: &Request) -> Option<&KeyRef> {
    match req {
        Request::Store(r) => Some(&r.key),
        Request::Write(r) | Request::Load(r) => Some(&r.key),
        Request::Manage(r) => Some(&r.key),
        Request::Send(r) | Request::PhoebusSend(r) => Some(&r.key),
        Request::Push(r) | Request::Pull(r) => Some(&r.key),
        Request::AliasAllocate(r) => Some(&r.key),
        Request::AliasManage(r) => Some(&r.key),
        Request::Rename(r) => Some(&r.key),
        Request::SplitAllocate(r) => Some(&r.key),
        Request::MergeAllocate(r) => Some(&r.master_key),
        Request::GetChksum(r) | Request::ValidateChksum(r) => Some(&r.key),
        Request::VecWrite(r) | Request::VecRead(r) => Some(&r.key),
        Request::Allocate(_) | Request::Status(_) | Request::Mcopy(_) => None,
    }
}

/// Whether an error on this request leaves unread payload on the wire (so the connection must
/// close rather than read the payload as a command).
pub fn carries_payload(req: &Request) -> bool {
    matches!(req, Request::Store(_) | Request::Write(_) | Request::VecWrite(_))
}
