//! VALIDATE_CHKSUM (32): re-reads an allocation made with ALLOCATE_CHKSUM and counts the
//! blocks whose bytes no longer match their stored digest or CRC.
//!
//! `V 32 K(manage) TK correct_errors T` → `1 <nbad> \n`. Every block below the size is read
//! (shared lock, chunk by chunk) and hashed once. `correct_errors` is accepted but never
//! rewrites a digest: the stored digest is the only witness of what the client wrote, and
//! re-deriving it from damaged bytes would bless them. An allocation without digests answers
//! −63; a read error −15.

use ibp_client::proto::request::ChksumQuery;
use ibp_client::proto::{reply, ErrorCode};

use super::{lookup, reply_error, reply_ok, Ctx, Next};
use crate::datapath::{chunk_crcs, chunk_sums, chunks};
use crate::keys::KeyKind;

pub async fn run(ctx: &mut Ctx<'_>, req: ChksumQuery) -> (Next, bool) {
    let shard = ctx.shard.clone();
    let v = match lookup(&shard, KeyKind::Manage, &req.key) {
        Ok(v) => v,
        Err(code) => return reply_error(ctx.conn, code, Next::Continue).await,
    };
    let Some(kind) = v.digest else {
        return reply_error(ctx.conn, ErrorCode::Chksum, Next::Continue).await;
    };
    let cb = v.checksum_block;
    let rt = shard.rt(v.id);
    let _guard = rt.lock(0..u64::MAX, false).await;
    let size = shard.table.borrow().get(v.id).map_or(v.size, |a| a.size);
    let end = size.div_ceil(cb).saturating_mul(cb).min(v.extent_bytes);
    let mut bad = 0i64;
    for c in chunks(0, end, cb, shard.cfg.buffer_bytes, v.extent_bytes) {
        let buf = ibp_io::buf::acquire().await;
        let (r, buf) =
            shard.stores[v.resource as usize].read(buf, v.base + c.alloc_off, c.disk_len).await;
        if r.is_err() {
            return reply_error(ctx.conn, ErrorCode::FileRead, Next::Continue).await;
        }
        let crcs = chunk_crcs(buf.as_slice(), &c, cb);
        let sums = chunk_sums(buf.as_slice(), &c, cb, kind);
        let t = shard.table.borrow();
        let Some(a) = t.get(v.id) else { break };
        let Some(d) = a.disk_digests.as_ref() else { break };
        for i in 0..c.blocks as usize {
            let block = c.first_block + i as u64;
            let sum = &sums[i * kind.digest_bytes()..(i + 1) * kind.digest_bytes()];
            if a.crcs.get(block, cb) != crcs[i] || d.get(block) != sum {
                bad += 1;
            }
        }
    }
    let mut out = Vec::with_capacity(16);
    reply::count(&mut out, bad);
    reply_ok(ctx.conn, out).await
}
