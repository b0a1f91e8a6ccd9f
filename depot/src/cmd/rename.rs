//! RENAME (16): new capabilities for the same allocation; the old ones stop working.
//!
//! `V 16 K(manage) TK T` → `1 <read> <write> <manage> \n` with typekey 3862277 (ACCRE). The
//! three old keys answer −4 from the moment the new ones are committed. Data, size, lease,
//! reference counts and aliases are untouched (aliases have keys of their own).

use ibp_client::proto::request::Rename;
use ibp_client::proto::ErrorCode;

use super::{caps_line, lookup, reply_error, reply_ok, Ctx, Next, ALIAS_TYPEKEY};
use crate::keys::KeyKind;

pub async fn run(ctx: &mut Ctx<'_>, req: Rename) -> (Next, bool) {
    let shard = ctx.shard.clone();
    let v = match lookup(&shard, KeyKind::Manage, &req.key) {
        Ok(v) => v,
        Err(code) => return reply_error(ctx.conn, code, Next::Continue).await,
    };
    let made = {
        let mut t = shard.table.borrow_mut();
        let mut fill = |b: &mut [u8]| shard.fill_random(b);
        t.rekey(v.id, &shard.secret, &mut fill)
    };
    let Some((keys, rec)) = made else {
        return reply_error(ctx.conn, ErrorCode::CapNotFound, Next::Continue).await;
    };
    if shard.commit(v.resource, &[rec], v.sync).await.is_err() {
        return reply_error(ctx.conn, ErrorCode::FileWrite, Next::Close).await;
    }
    match caps_line(ctx, v.resource, &keys, ALIAS_TYPEKEY) {
        Ok(out) => reply_ok(ctx.conn, out).await,
        Err(code) => reply_error(ctx.conn, code, Next::Continue).await,
    }
}
