//! GET_CHKSUM (31): the disk digests of an allocation made with ALLOCATE_CHKSUM.
//!
//! `V 31 K(manage) TK info_only T` → `1 <cstype> <digest bytes> <blocksize> <nblocks>
//! <nbytes>\n`, then, unless info_only is 1, `nbytes` of binary digests, block 0 first
//! (PROTOCOL.md §9; observed `1 4 16 65536 1 16`). The blocks are those that hold data:
//! nblocks = ⌈size / blocksize⌉. A digest covers its whole block, the bytes past the size
//! counted as zeros (digest.rs). An allocation without digests answers −63.

use ibp_client::proto::reply::{self, ChksumInfo};
use ibp_client::proto::request::ChksumQuery;
use ibp_client::proto::ErrorCode;

use super::{lookup, reply_error, reply_ok, Ctx, Next};
use crate::keys::KeyKind;

pub async fn run(ctx: &mut Ctx<'_>, req: ChksumQuery) -> (Next, bool) {
    let shard = ctx.shard.clone();
    let v = match lookup(&shard, KeyKind::Manage, &req.key) {
        Ok(v) => v,
        Err(code) => return reply_error(ctx.conn, code, Next::Continue).await,
    };
    let out = {
        let t = shard.table.borrow();
        t.get(v.id).and_then(|a| a.disk_digests.as_ref()).map(|d| {
            let nblocks = v.size.div_ceil(d.block_bytes);
            let dlen = d.kind.digest_bytes();
            let info = ChksumInfo {
                cstype: d.kind.code(),
                digest_bytes: dlen as i64,
                blocksize: d.block_bytes as i64,
                nblocks: nblocks as i64,
                nbytes: (nblocks as usize * dlen) as i64,
            };
            let body = if req.flag == 1 { 0 } else { nblocks as usize * dlen };
            let mut out = Vec::with_capacity(64 + body);
            reply::chksum_info(&mut out, &info);
            if req.flag != 1 {
                for b in 0..nblocks {
                    out.extend_from_slice(&d.get(b));
                }
            }
            out
        })
    };
    let Some(out) = out else {
        return reply_error(ctx.conn, ErrorCode::Chksum, Next::Continue).await;
    };
    reply_ok(ctx.conn, out).await
}
