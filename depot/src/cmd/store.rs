//! STORE (2, append), WRITE (13, at an offset) and their `_CHKSUM` forms (28, 27) from a
//! client: validate → hold the blocks → `1 \n` → payload from the socket (bytes pipelined
//! ahead of the ack are taken from the connection buffer first) → `1 <len> \n`. The path
//! itself is `transfer::write`; VEC_WRITE (`vec_write`) is the same command with a list.
//!
//! Network checksums (`_CHKSUM`, PROTOCOL.md §10, state machine in `netsum`): the payload is
//! interleaved with the hex digest of every `blocksize` payload bytes and of the final partial
//! block. [`ConnSource`] strips and checks them, and verifies every network block before any
//! byte of it can reach disk: when a disk chunk ends inside a network block, the rest of that
//! block is read ahead (at most one buffer, bounded by `net_spec`), checked, and put back in
//! front of the connection buffer. A mismatch answers −63 and closes (the rest of the stream
//! is unread); nothing of the bad block or after it is written, and the allocation is settled
//! (`transfer::write`).
//!
//! Any error after the header closes the connection, since unread payload would otherwise be
//! taken for commands.

use std::io;
use std::time::Duration;

use ibp_client::proto::request::ChksumSpec;
use ibp_client::proto::{reply, ErrorCode, KeyRef};
use ibp_io::FixedBuf;

use super::{net_spec, reply_error, server_sync, Ctx, Next};
use crate::conn::Conn;
use crate::netsum::NetSum;
use crate::transfer::write::{self, Failure, Source, Target};

/// Payload bytes arriving on a connection, with network checksums when the command has them.
pub struct ConnSource<'a> {
    pub conn: &'a mut Conn,
    /// Longest wait for the next bytes.
    pub inactivity: Duration,
    /// Network checksum framing (`_CHKSUM` forms).
    pub frame: Option<NetSum>,
}

/// The error a failed network digest travels as (answered −63).
fn digest_mismatch() -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, "network digest mismatch")
}

impl ConnSource<'_> {
    async fn check_digest(&mut self) -> io::Result<()> {
        let Some(f) = self.frame.as_mut() else { return Ok(()) };
        let hex = self.conn.recv_vec(f.kind().hex_len(), self.inactivity).await?;
        if f.verify(&hex) {
            Ok(())
        } else {
            Err(digest_mismatch())
        }
    }
}

impl Source for ConnSource<'_> {
    fn fills_slices(&self) -> bool {
        self.frame.is_none()
    }

    async fn fill_slice(&mut self, dst: &mut [u8]) -> io::Result<()> {
        debug_assert!(self.frame.is_none(), "checksummed payload is verified before it lands");
        self.conn.recv_exact_slice(dst, self.inactivity).await
    }

    async fn fill(&mut self, mut buf: FixedBuf, at: usize, n: usize) -> io::Result<FixedBuf> {
        let wait = self.inactivity;
        if self.frame.is_none() {
            return self.conn.recv_exact(buf, at, n, wait).await;
        }
        let mut pos = at;
        while pos < at + n {
            let take = self.frame.as_ref().map_or(0, |f| f.next_take(at + n - pos));
            buf = self.conn.recv_exact(buf, pos, take, wait).await?;
            let due =
                self.frame.as_mut().is_some_and(|f| f.absorb(&buf.as_full()[pos..pos + take]));
            if due {
                self.check_digest().await?;
            }
            pos += take;
        }
        let rest = self.frame.as_ref().map_or(0, NetSum::open_block_rest);
        if rest > 0 {
            // rest ≤ the network block ≤ one transfer buffer (net_spec), so this is bounded.
            let ahead = self.conn.recv_vec(rest as usize, wait).await?;
            if !self.frame.as_mut().is_some_and(|f| f.absorb(&ahead)) {
                return Err(io::Error::other("network block did not complete"));
            }
            self.check_digest().await?;
            self.conn.unread(&ahead);
            if let Some(f) = self.frame.as_mut() {
                f.mark_preverified(rest);
            }
        }
        Ok(buf)
    }
}

pub async fn run(
    ctx: &mut Ctx<'_>,
    key: &KeyRef,
    target: Target,
    chksum: Option<ChksumSpec>,
    timeout_s: i64,
) -> (Next, bool) {
    let shard = ctx.shard.clone();
    let net = match net_spec(&shard, chksum) {
        Ok(n) => n,
        Err(code) => return reply_error(ctx.conn, code, Next::Close).await,
    };
    let ticket = match write::begin_spans(&shard, key, &target).await {
        Ok(t) => t,
        Err(code) => return reply_error(ctx.conn, code, Next::Close).await,
    };
    let mut ack = Vec::with_capacity(4);
    reply::ok(&mut ack);
    // A client that sent the whole payload behind the header (LStore does) is not waiting for
    // the `1 \n`: it goes out with the final reply, one send and one wake-up instead of two.
    // Otherwise it goes out now, in order after the replies of earlier writes still
    // committing but without waiting for them: the payload is received meanwhile.
    let ack_with_reply = net.is_none() && ctx.conn.buffered_len() as u64 >= ticket.len();
    if !ack_with_reply && ctx.conn.send_ordered(std::mem::take(&mut ack)).await.is_err() {
        return (Next::Drop, false);
    }
    let frame = net.map(|(kind, block)| NetSum::new(kind, block, ticket.len()));
    let mut src = ConnSource { conn: ctx.conn, inactivity: server_sync(timeout_s), frame };
    let landing = ticket.receive(&mut src).await;
    if landing.peer_failure().is_none() {
        // Every payload byte is in: the last disk writes and the commit finish in the reply
        // lane while the connection reads the next command (a pipelined STORE's payload).
        let (name, t0) = (ctx.name, ctx.t0);
        ctx.deferred = true;
        ctx.conn.defer(move |turn| async move {
            let mut out = ack;
            let done = landing.finish_after(turn.after_previous(), || turn.ordered()).await;
            shard.stats.record(name, done.is_ok(), t0.elapsed());
            match done {
                Ok(n) => {
                    reply::count(&mut out, n as i64);
                    (out, Next::Continue)
                }
                Err(e) => {
                    let idx = shard.idx;
                    tracing::error!(shard = idx, cause = %e, "store failed");
                    reply::error(&mut out, ErrorCode::FileWrite);
                    (out, Next::Close)
                }
            }
        });
        return (Next::Continue, true);
    }
    // The peer cut the payload short: the write is settled, and the connection ends.
    if !ack.is_empty() && ctx.conn.send(ack).await.is_err() {
        let _ = landing.finish().await;
        return (Next::Drop, false);
    }
    match landing.finish().await {
        Ok(n) => {
            let mut out = Vec::with_capacity(24);
            reply::count(&mut out, n as i64);
            match ctx.conn.send(out).await {
                Ok(()) => (Next::Continue, true),
                Err(_) => (Next::Drop, true),
            }
        }
        Err(Failure::Peer(e)) if e.kind() == io::ErrorKind::InvalidData => {
            tracing::info!(shard = shard.idx, "network digest mismatch on a write");
            reply_error(ctx.conn, ErrorCode::Chksum, Next::Close).await
        }
        Err(Failure::Peer(e)) => {
            tracing::debug!(shard = shard.idx, cause = %e, "store cut short by the client");
            // A client that stalled past the deadline gets ACCRE's close notice; one that is
            // gone does not read it, and the send just fails.
            let next = if e.kind() == io::ErrorKind::TimedOut { Next::Close } else { Next::Drop };
            (next, false)
        }
        Err(Failure::Storage(e)) => {
            tracing::error!(shard = shard.idx, cause = %e, "store failed");
            reply_error(ctx.conn, ErrorCode::FileWrite, Next::Close).await
        }
    }
}
