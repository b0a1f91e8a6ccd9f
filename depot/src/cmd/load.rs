//! LOAD (8) and LOAD_CHKSUM (24) to a client: validate (with server sync) → `1 <len> \n` once
//! the first chunk is verified → the bytes. The path itself is `transfer::read`; VEC_READ
//! (`vec_read`) is the same command with a list. A checksum mismatch before the header
//! answers −63; after it, the connection is closed short.
//!
//! With network checksums (`_CHKSUM`, PROTOCOL.md §10) [`ConnSink`] sends the hex digest of
//! every network block and of the final partial block right after it, computed from the
//! buffer as it is sent (never a second pass).

use std::io;
use std::ops::Range;
use std::time::Duration;

use ibp_client::proto::request::{ChksumSpec, IoSpan};
use ibp_client::proto::{reply, KeyRef};
use ibp_io::FixedBuf;

use super::{net_spec, reply_error, server_sync, Ctx, Next};
use crate::conn::Conn;
use crate::netsum::NetSum;
use crate::transfer::read::{self, ReadFailure, Sink};

/// A client connection receiving a LOAD.
pub struct ConnSink<'a> {
    pub conn: &'a Conn,
    /// Longest wait for one chunk to drain.
    pub limit: Duration,
    /// Network checksum framing (`_CHKSUM` forms): kind and block size until `begin`.
    pub net: Option<(crate::digest::DigestKind, u64)>,
    frame: Option<NetSum>,
}

impl<'a> ConnSink<'a> {
    pub fn new(conn: &'a Conn, limit: Duration) -> ConnSink<'a> {
        ConnSink { conn, limit, net: None, frame: None }
    }
}

impl Sink for ConnSink<'_> {
    async fn begin(&mut self, len: u64) -> io::Result<()> {
        self.frame = self.net.map(|(kind, block)| NetSum::new(kind, block, len));
        let mut out = Vec::with_capacity(24);
        reply::count(&mut out, len as i64);
        self.conn.send(out).await
    }

    async fn chunk(&mut self, mut buf: FixedBuf, range: Range<usize>) -> io::Result<()> {
        let Some(f) = self.frame.as_mut() else {
            return self.conn.send_buf(buf, range, self.limit).await.map(drop);
        };
        let (mut seg, mut pos) = (range.start, range.start);
        while pos < range.end {
            let n = f.next_take(range.end - pos);
            let due = f.absorb(&buf.as_full()[pos..pos + n]);
            pos += n;
            if due {
                buf = self.conn.send_buf(buf, seg..pos, self.limit).await?;
                self.conn.send(f.finish().to_hex()).await?;
                seg = pos;
            }
        }
        if seg < range.end {
            self.conn.send_buf(buf, seg..range.end, self.limit).await?;
        }
        Ok(())
    }

    async fn chunk_slice(&mut self, data: &[u8]) -> io::Result<()> {
        let Some(f) = self.frame.as_mut() else {
            return self.conn.send_slice(data, self.limit).await;
        };
        let (mut seg, mut pos) = (0, 0);
        while pos < data.len() {
            let n = f.next_take(data.len() - pos);
            let due = f.absorb(&data[pos..pos + n]);
            pos += n;
            if due {
                self.conn.send_slice(&data[seg..pos], self.limit).await?;
                self.conn.send(f.finish().to_hex()).await?;
                seg = pos;
            }
        }
        if seg < data.len() {
            self.conn.send_slice(&data[seg..], self.limit).await?;
        }
        Ok(())
    }
}

pub async fn run(
    ctx: &mut Ctx<'_>,
    key: &KeyRef,
    list: &[IoSpan],
    chksum: Option<ChksumSpec>,
    timeout_s: i64,
) -> (Next, bool) {
    let shard = ctx.shard.clone();
    let net = match net_spec(&shard, chksum) {
        Ok(n) => n,
        Err(code) => return reply_error(ctx.conn, code, Next::Continue).await,
    };
    let wait = server_sync(timeout_s);
    let (v, spans) = match read::open_spans(&shard, key, list, wait).await {
        Ok(x) => x,
        Err(code) => return reply_error(ctx.conn, code, Next::Continue).await,
    };
    let mut sink = ConnSink::new(ctx.conn, wait.max(Duration::from_secs(30)));
    sink.net = net;
    match read::stream_spans(&shard, v, &spans, &mut sink).await {
        Ok(()) => (Next::Continue, true),
        Err(ReadFailure::Refused(code)) => reply_error(ctx.conn, code, Next::Continue).await,
        Err(ReadFailure::Sink(_)) | Err(ReadFailure::Storage(_)) => (Next::Drop, false),
    }
}
