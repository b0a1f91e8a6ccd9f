//! STORE (2, append) and WRITE (13, at an offset) from a client: validate → hold the blocks →
//! `1 \n` → payload from the socket (bytes pipelined ahead of the ack are taken from the
//! connection buffer first) → `1 <len> \n`. The path itself is `transfer::write`.
//!
//! Any error after the header closes the connection, since unread payload would otherwise be
//! taken for commands.

use std::io;
use std::time::Duration;

use ibp_client::proto::{reply, ErrorCode, KeyRef};
use ibp_io::FixedBuf;

use super::{reply_error, server_sync, Ctx, Next};
use crate::conn::Conn;
use crate::transfer::write::{self, Failure, Source};

/// Payload bytes arriving on a connection.
pub struct ConnSource<'a> {
    pub conn: &'a mut Conn,
    /// Longest wait for the next bytes.
    pub inactivity: Duration,
}

impl Source for ConnSource<'_> {
    async fn fill(&mut self, buf: FixedBuf, at: usize, n: usize) -> io::Result<FixedBuf> {
        self.conn.recv_exact(buf, at, n, self.inactivity).await
    }
}

pub async fn run(
    ctx: &mut Ctx<'_>,
    key: &KeyRef,
    offset: Option<i64>,
    len: i64,
    timeout_s: i64,
) -> (Next, bool) {
    let shard = ctx.shard.clone();
    let ticket = match write::begin(&shard, key, offset, len).await {
        Ok(t) => t,
        Err(code) => return reply_error(ctx.conn, code, Next::Close).await,
    };
    let mut ack = Vec::with_capacity(4);
    reply::ok(&mut ack);
    if ctx.conn.send(ack).await.is_err() {
        return (Next::Drop, false);
    }
    let mut src = ConnSource { conn: ctx.conn, inactivity: server_sync(timeout_s) };
    match ticket.run(&mut src).await {
        Ok(n) => {
            let mut out = Vec::with_capacity(24);
            reply::count(&mut out, n as i64);
            match ctx.conn.send(out).await {
                Ok(()) => (Next::Continue, true),
                Err(_) => (Next::Drop, true),
            }
        }
        Err(Failure::Peer(e)) => {
            tracing::debug!(shard = shard.idx, cause = %e, "store cut short by the client");
            // A client that stalled past the deadline gets ACCRE's close notice; one that is
            // gone does not read it, and the send just fails.
            let next =
                if e.kind() == std::io::ErrorKind::TimedOut { Next::Close } else { Next::Drop };
            (next, false)
        }
        Err(Failure::Storage(e)) => {
            tracing::error!(shard = shard.idx, cause = %e, "store failed");
            reply_error(ctx.conn, ErrorCode::FileWrite, Next::Close).await
        }
    }
}
