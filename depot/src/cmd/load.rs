//! LOAD (8) to a client: validate (with server sync) → `1 <len> \n` once the first chunk is
//! verified → the bytes. The path itself is `transfer::read`. A checksum mismatch before the
//! header answers −63; after it, the connection is closed short.

use std::io;
use std::ops::Range;
use std::time::Duration;

use ibp_client::proto::{reply, KeyRef};
use ibp_io::FixedBuf;

use super::{reply_error, server_sync, Ctx, Next};
use crate::conn::Conn;
use crate::transfer::read::{self, ReadFailure, Sink};

/// A client connection receiving a LOAD.
pub struct ConnSink<'a> {
    pub conn: &'a Conn,
    /// Longest wait for one chunk to drain.
    pub limit: Duration,
}

impl Sink for ConnSink<'_> {
    async fn begin(&mut self, len: u64) -> io::Result<()> {
        let mut out = Vec::with_capacity(24);
        reply::count(&mut out, len as i64);
        self.conn.send(out).await
    }

    async fn chunk(&mut self, buf: FixedBuf, range: Range<usize>) -> io::Result<()> {
        self.conn.send_buf(buf, range, self.limit).await.map(drop)
    }
}

pub async fn run(
    ctx: &mut Ctx<'_>,
    key: &KeyRef,
    offset: i64,
    len: i64,
    timeout_s: i64,
) -> (Next, bool) {
    let shard = ctx.shard.clone();
    let wait = server_sync(timeout_s);
    let (v, off, end) = match read::open(&shard, key, offset, len, wait).await {
        Ok(x) => x,
        Err(code) => return reply_error(ctx.conn, code, Next::Continue).await,
    };
    let mut sink = ConnSink { conn: ctx.conn, limit: wait.max(Duration::from_secs(30)) };
    match read::stream(&shard, v, off, end, &mut sink).await {
        Ok(()) => (Next::Continue, true),
        Err(ReadFailure::Refused(code)) => reply_error(ctx.conn, code, Next::Continue).await,
        Err(ReadFailure::Sink(_)) | Err(ReadFailure::Storage(_)) => (Next::Drop, false),
    }
}
