//! Command handlers, one file per command, all with the same shape: parse (done by
//! `ibp_client::proto`), validate, apply, reply.
//!
//! # Layout
//! * `allocate` — ALLOCATE (1).
//! * `copy` — SEND (5), PUSH (20), PULL (21): depot-to-depot copies.
//! * `store` — STORE (2) and WRITE (13): the bulk write path.
//! * `load` — LOAD (8): the bulk read path, with server sync.
//! * `mcopy` — MCOPY (6, LoCI form), MCOPY_EXT (60) fan-out/chain/streams, CHAIN_STORE (61).
//! * `manage` — MANAGE (9): PROBE, INCR, DECR, CHNG, TRUNCATE.
//! * `status` — STATUS (4): INQ (v0 and v1), RES, VERSION, CHANGE.

pub mod allocate;
pub mod copy;
pub mod load;
pub mod manage;
pub mod mcopy;
pub mod status;
pub mod store;

use std::rc::Rc;
use std::time::Duration;

use ibp_client::proto::{ErrorCode, KeyRef, Request};

use crate::allocation::Durability;
use crate::conn::Conn;
use crate::keys::KeyKind;
use crate::shard::Shard;

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
}

/// ACCRE turns a server-sync timeout of 0 into 2 s; we also cap absurd values at an hour.
pub fn server_sync(timeout_s: i64) -> Duration {
    Duration::from_secs(if timeout_s <= 0 { 2 } else { timeout_s.min(3600) as u64 })
}

/// Runs one parsed request (already routed to this shard) and says what to do next.
pub async fn dispatch(ctx: &mut Ctx<'_>, req: Request) -> (Next, bool) {
    match req {
        Request::Allocate(r) => allocate::run(ctx, r).await,
        Request::Store(r) => store::run(ctx, &r.key, None, r.len, r.timeout_s).await,
        Request::Write(r) => store::run(ctx, &r.key, Some(r.offset), r.len, r.timeout_s).await,
        Request::Load(r) => load::run(ctx, &r.key, r.offset, r.len, r.timeout_s).await,
        Request::Manage(r) => manage::run(ctx, r).await,
        Request::Status(r) => status::run(ctx, r).await,
        Request::Send(r) | Request::PhoebusSend(r) => copy::send(ctx, r).await,
        Request::Push(r) => copy::push(ctx, r).await,
        Request::Pull(r) => copy::pull(ctx, r).await,
        Request::Mcopy(r) => mcopy::run_loci(ctx, r).await,
        // Parsed but not served yet by this depot: answered as an unknown function, which
        // every client treats as "not supported here".
        _ => reply_error(ctx.conn, ErrorCode::UnknownFunction, Next::Continue).await,
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
    pub checksum_block: u64,
    pub sync: bool,
}

/// Finds the live allocation `key` grants `kind` on, or answers why not.
pub fn lookup(shard: &Shard, kind: KeyKind, key: &KeyRef) -> Result<View, ErrorCode> {
    let now = shard.clock.now_unix_s();
    let t = shard.table.borrow();
    let a = t.find(&shard.secret, kind, &key.key, now).map_err(|_| ErrorCode::CapNotFound)?;
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
        checksum_block: t.regions[a.resource as usize].policy.checksum_block_bytes,
        sync: shard.needs_sync(a),
    })
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
