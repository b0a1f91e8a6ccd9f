//! VEC_WRITE (33) and VEC_WRITE_CHKSUM (34): scatter write. The payload is the spans' bytes
//! in list order (PROTOCOL.md §9), each span written at its own offset.
//!
//! Rules: 1..=4096 spans (bounded by the codec before the list is built); every span is
//! validated before the `1 \n` ack and before any byte moves (negative offset or length −30,
//! past the max size or outside an alias window −19); zero-length spans are allowed and move
//! nothing; overlapping spans are allowed and the later one wins, as if the spans were
//! written one after another. Network checksums frame the whole payload as one stream. The
//! replies are STORE's: `1 \n`, then `1 <total> \n`. The path is `store`'s.

use ibp_client::proto::request::VecIo;

use super::{store, Ctx, Next};
use crate::transfer::write::Target;

pub async fn run(ctx: &mut Ctx<'_>, req: VecIo) -> (Next, bool) {
    store::run(ctx, &req.key, Target::Spans(req.iovec), req.chksum, req.timeout_s).await
}
