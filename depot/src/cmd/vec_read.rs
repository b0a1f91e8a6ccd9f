//! VEC_READ (35) and VEC_READ_CHKSUM (36): gather read. The reply is `1 <total> \n` and the
//! spans' bytes in list order (PROTOCOL.md §9: the list (100,10),(0,10) comes back as the
//! bytes at 100 first).
//!
//! Rules: 1..=4096 spans (bounded by the codec); every span is validated before anything is
//! sent (negative −30; past the max size or outside an alias window −19; past the size −19
//! after the same server-sync wait LOAD does); spans may overlap or repeat. The chunked,
//! CRC-verified read path is `load`'s.

use ibp_client::proto::request::VecIo;

use super::{load, Ctx, Next};

pub async fn run(ctx: &mut Ctx<'_>, req: VecIo) -> (Next, bool) {
    load::run(ctx, &req.key, &req.iovec, req.chksum, req.timeout_s).await
}
