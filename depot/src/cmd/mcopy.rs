//! MCOPY: one source, many targets.
//!
//! * MCOPY_EXT (60, our extension; wire form in `ibp_client::proto::request::ext`):
//!   - *fan-out*: the source reads each chunk from disk once and sends it to every target at
//!     the same time (one shared buffer, parallel sends);
//!   - *streams* N > 1 (fan-out only): the range is split into N parts, each fanned out on its
//!     own connections, written at the target's current size + the part's offset (the size is
//!     probed through the write capability, which our depots accept);
//!   - *chain*: source → target 1 → target 2 → …: the source sends a CHAIN_STORE to target 1,
//!     which stores and forwards each chunk as it arrives, so the source sends each byte once.
//! * CHAIN_STORE (61): one hop of a chain (below).
//! * LoCI MCOPY (6): `V 6 <buflen>` → `1 \n` → the LoCI second line (`+s key +t targets …`)
//!   → served as a fan-out.
//!
//! Every form answers `1 n (status nbytes)×n`: one status and byte count per target, so one
//! failed target never hides the others' results. A dead or stalled target is dropped after
//! `dest_client_T` and the others go on; the source keeps serving everyone else meanwhile.

use std::io;
use std::rc::Rc;
use std::time::{Duration, Instant};

use ibp_client::proto::request::ext::{
    encode_results, parse_results, ChainStore, ExtRequest, McopyExt, Strategy,
};
use ibp_client::proto::request::{parse_mcopy_line, Mcopy};
use ibp_client::proto::{reply, Capability, ErrorCode, KeyRef, MAX_LINE_BYTES};
use ibp_io::FixedBuf;

use super::{reply_error, server_sync, Ctx, Next, View};
use crate::conn::Conn;
use crate::fanout::{join_all, SharedBuf};
use crate::remote::{self, read_reply, RemoteSink};
use crate::shard::Shard;
use crate::transfer::read::{self, ReadFailure, Sink};
use crate::transfer::write::{self, Failure, Source};

type Results = Vec<Result<u64, ErrorCode>>;

fn encode(results: &Results) -> Vec<u8> {
    let pairs: Vec<(i32, i64)> = results
        .iter()
        .map(|r| match r {
            Ok(n) => (1, *n as i64),
            Err(c) => (c.code(), 0),
        })
        .collect();
    let mut out = Vec::with_capacity(16 + 24 * pairs.len());
    encode_results(&mut out, &pairs);
    out
}

pub async fn run_ext(ctx: &mut Ctx<'_>, r: ExtRequest) -> (Next, bool) {
    match r {
        ExtRequest::McopyExt(m) => mcopy_ext(ctx, m).await,
        ExtRequest::ChainStore(c) => chain_store(ctx, c).await,
    }
}

async fn mcopy_ext(ctx: &mut Ctx<'_>, m: McopyExt) -> (Next, bool) {
    if m.dest_timeout_s <= 0 || m.dest_client_timeout_s <= 0 {
        return reply_error(ctx.conn, ErrorCode::InvalidParameter, Next::Continue).await;
    }
    let shard = ctx.shard.clone();
    let (v, off, end) =
        match read::open(&shard, &m.key, m.offset, m.len, server_sync(m.timeout_s)).await {
            Ok(x) => x,
            Err(code) => return reply_error(ctx.conn, code, Next::Continue).await,
        };
    let wait = server_sync(m.dest_client_timeout_s);
    let results = match m.strategy {
        Strategy::Fanout if m.streams > 1 => {
            fanout_streams(
                &shard,
                v,
                off,
                end,
                &m.targets,
                m.streams as u64,
                m.dest_timeout_s,
                wait,
            )
            .await
        }
        Strategy::Fanout => {
            fanout(&shard, v, off, end, &m.targets, None, m.dest_timeout_s, wait).await
        }
        Strategy::Chain => {
            chain(&shard, v, off, end, &m.targets, m.typekey.clone(), m.dest_timeout_s, wait).await
        }
    };
    let ok = results.iter().all(Result::is_ok);
    match ctx.conn.send(encode(&results)).await {
        Ok(()) => (Next::Continue, ok),
        Err(_) => (Next::Drop, ok),
    }
}

/// LoCI's two-line MCOPY, served as a fan-out.
pub async fn run_loci(ctx: &mut Ctx<'_>, m: Mcopy) -> (Next, bool) {
    if m.buflen <= 0 || m.buflen as usize > MAX_LINE_BYTES {
        return reply_error(ctx.conn, ErrorCode::BadFormat, Next::Close).await;
    }
    let mut ack = Vec::with_capacity(4);
    reply::ok(&mut ack);
    if ctx.conn.send(ack).await.is_err() {
        return (Next::Drop, false);
    }
    let Ok(line) = ctx.conn.read_second_line(Duration::from_secs(30)).await else {
        return (Next::Drop, false);
    };
    let l = match parse_mcopy_line(&line) {
        Ok(l) => l,
        Err(e) => return reply_error(ctx.conn, e.code, Next::Close).await,
    };
    let shard = ctx.shard.clone();
    let (v, off, end) =
        match read::open(&shard, &l.key, l.offset, l.size, server_sync(l.src_sync_s)).await {
            Ok(x) => x,
            Err(code) => return reply_error(ctx.conn, code, Next::Continue).await,
        };
    let dest_t = l.target_syncs_s.first().copied().unwrap_or(30).max(1);
    let wait = server_sync(l.target_timeouts_s.first().copied().unwrap_or(30));
    let results = fanout(&shard, v, off, end, &l.targets, None, dest_t, wait).await;
    let ok = results.iter().all(Result::is_ok);
    match ctx.conn.send(encode(&results)).await {
        Ok(()) => (Next::Continue, ok),
        Err(_) => (Next::Drop, ok),
    }
}

/// One target of a fan-out.
struct Target {
    sink: Option<RemoteSink>,
    result: Result<u64, ErrorCode>,
}

/// Sends each chunk to every live target at once.
struct FanSink {
    targets: Vec<Target>,
    wait: Duration,
}

impl Sink for FanSink {
    async fn begin(&mut self, len: u64) -> io::Result<()> {
        let futs = self
            .targets
            .iter_mut()
            .filter_map(|t| t.sink.as_mut())
            .map(|s| {
                Box::pin(async move { s.begin(len).await.is_ok() })
                    as std::pin::Pin<Box<dyn std::future::Future<Output = bool>>>
            })
            .collect();
        let oks = join_all(futs).await;
        let mut it = oks.into_iter();
        for t in self.targets.iter_mut().filter(|t| t.sink.is_some()) {
            if it.next() != Some(true) {
                t.result =
                    Err(t.sink.take().and_then(|s| s.refused).unwrap_or(ErrorCode::Connection));
            }
        }
        self.any_live()
    }

    async fn chunk(&mut self, buf: FixedBuf, range: std::ops::Range<usize>) -> io::Result<()> {
        let shared = SharedBuf(Rc::new(buf));
        let wait = self.wait;
        let futs = self
            .targets
            .iter_mut()
            .filter_map(|t| t.sink.as_mut())
            .map(|s| {
                let b = shared.clone();
                let r = range.clone();
                Box::pin(async move { s.conn.send_buf(b, r, wait).await.is_ok() })
                    as std::pin::Pin<Box<dyn std::future::Future<Output = bool>>>
            })
            .collect();
        drop(shared);
        let oks = join_all(futs).await;
        let mut it = oks.into_iter();
        for t in self.targets.iter_mut().filter(|t| t.sink.is_some()) {
            if it.next() != Some(true) {
                t.sink = None;
                t.result = Err(ErrorCode::Connection);
            }
        }
        self.any_live()
    }
}

impl FanSink {
    fn any_live(&self) -> io::Result<()> {
        if self.targets.iter().any(|t| t.sink.is_some()) {
            Ok(())
        } else {
            Err(io::Error::other("every target failed"))
        }
    }
}

/// Fans `[off, end)` out to `targets`, appended (`at` None) or written at per-target offsets.
#[allow(clippy::too_many_arguments)]
async fn fanout(
    shard: &Rc<Shard>,
    v: View,
    off: u64,
    end: u64,
    targets: &[Capability],
    at: Option<&[u64]>,
    dest_t: i64,
    wait: Duration,
) -> Results {
    let deadline = Instant::now() + wait;
    let conns = join_all(
        targets
            .iter()
            .map(|c| {
                Box::pin(remote::connect(c, deadline))
                    as std::pin::Pin<Box<dyn std::future::Future<Output = _>>>
            })
            .collect(),
    )
    .await;
    let mut sink = FanSink { targets: Vec::with_capacity(targets.len()), wait };
    for (i, (cap, conn)) in targets.iter().zip(conns).enumerate() {
        sink.targets.push(match conn {
            Ok(conn) => Target {
                sink: Some(RemoteSink {
                    conn,
                    header: remote::write_request(cap, at.map(|a| a[i]), end - off, dest_t),
                    wait,
                    refused: None,
                    acked: false,
                }),
                result: Ok(0),
            },
            Err(code) => Target { sink: None, result: Err(code) },
        });
    }
    if sink.targets.iter().all(|t| t.sink.is_none()) {
        return sink.targets.into_iter().map(|t| t.result).collect();
    }
    let streamed = read::stream(shard, v, off, end, &mut sink).await;
    let source_error = match streamed {
        Ok(()) | Err(ReadFailure::Sink(_)) => None,
        Err(ReadFailure::Refused(c)) => Some(c),
        Err(ReadFailure::Storage(_)) => Some(ErrorCode::FileRead),
    };
    let finals = join_all(
        sink.targets
            .iter_mut()
            .map(|t| {
                Box::pin(async move {
                    match (t.sink.as_mut(), source_error) {
                        (Some(s), None) => s.finish().await,
                        (Some(_), Some(c)) => Err(c),
                        (None, _) => t.result,
                    }
                }) as std::pin::Pin<Box<dyn std::future::Future<Output = _>>>
            })
            .collect(),
    )
    .await;
    finals
}

/// Fan-out over `streams` parallel parts, each written at the target's size + part offset.
#[allow(clippy::too_many_arguments)]
async fn fanout_streams(
    shard: &Rc<Shard>,
    v: View,
    off: u64,
    end: u64,
    targets: &[Capability],
    streams: u64,
    dest_t: i64,
    wait: Duration,
) -> Results {
    let bases: Vec<Result<u64, ErrorCode>> = join_all(
        targets
            .iter()
            .map(|c| {
                Box::pin(remote::probe_size(c, dest_t, wait))
                    as std::pin::Pin<Box<dyn std::future::Future<Output = _>>>
            })
            .collect(),
    )
    .await;
    let len = end - off;
    // Parts are whole checksum blocks of the source so no two parts share a block lock edge.
    let cb = v.checksum_block;
    let part = len.div_ceil(streams).div_ceil(cb).max(1) * cb;
    let live: Vec<usize> = (0..targets.len()).filter(|&i| bases[i].is_ok()).collect();
    let live_caps: Vec<Capability> = live.iter().map(|&i| targets[i].clone()).collect();
    let mut futs = Vec::new();
    let mut p = off;
    while p < end {
        let q = (p + part).min(end);
        let ats: Vec<u64> =
            live.iter().map(|&i| bases[i].as_ref().map_or(0, |b| b + (p - off))).collect();
        let caps = live_caps.clone();
        futs.push(Box::pin(
            async move { fanout(shard, v, p, q, &caps, Some(&ats), dest_t, wait).await },
        ) as std::pin::Pin<Box<dyn std::future::Future<Output = Results>>>);
        p = q;
    }
    let parts = join_all(futs).await;
    let mut results: Results = bases.iter().map(|b| b.map(|_| 0)).collect();
    for part_results in parts {
        for (j, r) in part_results.into_iter().enumerate() {
            let i = live[j];
            results[i] = match (&results[i], r) {
                (Ok(a), Ok(b)) => Ok(a + b),
                (Err(e), _) => Err(*e),
                (_, Err(e)) => Err(e),
            };
        }
    }
    results
}

/// Chain: CHAIN_STORE to the first target, which forwards down the chain.
#[allow(clippy::too_many_arguments)]
async fn chain(
    shard: &Rc<Shard>,
    v: View,
    off: u64,
    end: u64,
    targets: &[Capability],
    _typekey: String,
    dest_t: i64,
    wait: Duration,
) -> Results {
    let n = targets.len();
    // The first hop that accepts carries the rest of the chain; hops before it that refuse
    // get their own error and the chain goes on past them.
    let (skipped, conn) = first_accepting_hop(targets, end - off, dest_t, wait).await;
    let mut results: Results = skipped.iter().map(|c| Err(*c)).collect();
    let Some(conn) = conn else {
        return results;
    };
    let rest = n - results.len();
    let fail = |c: ErrorCode, mut results: Results| {
        results.extend((0..rest).map(|_| Err(c)));
        results
    };
    let mut sink = RemoteSink { conn, header: Vec::new(), wait, refused: None, acked: true };
    match read::stream(shard, v, off, end, &mut sink).await {
        Ok(()) => {}
        Err(ReadFailure::Refused(c)) => return fail(c, results),
        Err(ReadFailure::Sink(_)) => {
            return fail(sink.refused.unwrap_or(ErrorCode::Connection), results)
        }
        Err(ReadFailure::Storage(_)) => return fail(ErrorCode::FileRead, results),
    }
    // Each hop waits for the rest of the chain before answering, so allow for the chain.
    let line = match read_reply(&mut sink.conn, wait * rest as u32).await {
        Ok(l) => l,
        Err(c) => return fail(c, results),
    };
    match parse_results(&line) {
        Ok(pairs) if pairs.len() == rest => {
            results.extend(pairs.into_iter().map(|(st, nb)| {
                if st == 1 {
                    Ok(nb.max(0) as u64)
                } else {
                    Err(ErrorCode::from_code(st).unwrap_or(ErrorCode::Generic))
                }
            }));
            results
        }
        Ok(_) | Err(_) => fail(ErrorCode::Connection, results),
    }
}

/// Tries `targets` in order until one accepts a CHAIN_STORE carrying the targets after it.
/// Returns the errors of those that refused (in order) and the accepted connection, if any.
async fn first_accepting_hop(
    targets: &[Capability],
    len: u64,
    dest_t: i64,
    wait: Duration,
) -> (Vec<ErrorCode>, Option<Conn>) {
    let mut refused = Vec::new();
    for (i, t) in targets.iter().enumerate() {
        match start_hop(t, &targets[i + 1..], len, dest_t, wait).await {
            Ok(conn) => return (refused, Some(conn)),
            Err(code) => refused.push(code),
        }
    }
    (refused, None)
}

fn chain_header(
    to: &Capability,
    rest: &[Capability],
    len: u64,
    dest_t: i64,
    wait: Duration,
) -> Vec<u8> {
    let req = ExtRequest::ChainStore(ChainStore {
        version: 1,
        key: to.key_ref(),
        typekey: to.typekey.clone(),
        len: len as i64,
        timeout_s: dest_t,
        dest_timeout_s: dest_t,
        dest_client_timeout_s: wait.as_secs().max(1) as i64,
        next: rest.to_vec(),
    });
    let mut out = Vec::with_capacity(256);
    req.encode(&mut out);
    out
}

/// One hop of a chain: store the payload and forward it, chunk by chunk, to the next hop.
async fn chain_store(ctx: &mut Ctx<'_>, c: ChainStore) -> (Next, bool) {
    let shard = ctx.shard.clone();
    let ticket = match write::begin(&shard, &c.key, None, c.len).await {
        Ok(t) => t,
        Err(code) => return reply_error(ctx.conn, code, Next::Close).await,
    };
    let mut ack = Vec::with_capacity(4);
    reply::ok(&mut ack);
    if ctx.conn.send(ack).await.is_err() {
        return (Next::Drop, false);
    }
    let wait = server_sync(c.dest_client_timeout_s);
    let n_next = c.next.len();
    let (skipped, down) = first_accepting_hop(&c.next, c.len as u64, c.dest_timeout_s, wait).await;
    let mut tee = TeeSource { up: ctx.conn, inactivity: server_sync(c.timeout_s), down, wait };
    let local = ticket.run(&mut tee).await;
    let down = tee.down.take();
    let mut results: Vec<(i32, i64)> = Vec::with_capacity(n_next + 1);
    match local {
        Ok(n) => results.push((1, n as i64)),
        Err(Failure::Peer(_)) => return (Next::Drop, false),
        Err(Failure::Storage(e)) => {
            tracing::error!(shard = shard.idx, cause = %e, "chain hop failed to store");
            results.push((ErrorCode::FileWrite.code(), 0));
        }
    }
    results.extend(skipped.iter().map(|e| (e.code(), 0)));
    let rest = n_next - skipped.len();
    // The downstream hop answers for itself and everything after it; if it failed (or
    // dropped out mid-transfer) each of those gets a connection error.
    let pairs = match down {
        Some(mut conn) => read_reply(&mut conn, wait * rest.max(1) as u32)
            .await
            .ok()
            .and_then(|l| parse_results(&l).ok()),
        None => None,
    };
    match pairs {
        Some(pairs) if pairs.len() == rest => results.extend(pairs),
        _ => results.extend((0..rest).map(|_| (ErrorCode::Connection.code(), 0))),
    }
    let mut out = Vec::with_capacity(32 * (n_next + 1));
    encode_results(&mut out, &results);
    let ok = results.iter().all(|r| r.0 == 1);
    match ctx.conn.send(out).await {
        Ok(()) => (Next::Continue, ok),
        Err(_) => (Next::Drop, ok),
    }
}

async fn start_hop(
    to: &Capability,
    rest: &[Capability],
    len: u64,
    dest_t: i64,
    wait: Duration,
) -> Result<Conn, ErrorCode> {
    let mut conn = remote::connect(to, Instant::now() + wait).await?;
    conn.send(chain_header(to, rest, len, dest_t, wait))
        .await
        .map_err(|_| ErrorCode::Connection)?;
    let line = read_reply(&mut conn, wait).await?;
    reply::parse_ok(&line).map_err(remote::code_of)?;
    Ok(conn)
}

/// Receives from upstream and forwards a copy downstream before the bytes go to disk.
struct TeeSource<'a> {
    up: &'a mut Conn,
    inactivity: Duration,
    /// The next hop, until it fails (then the chain continues without it).
    down: Option<Conn>,
    wait: Duration,
}

impl Source for TeeSource<'_> {
    async fn fill(&mut self, buf: FixedBuf, at: usize, n: usize) -> io::Result<FixedBuf> {
        let buf = self.up.recv_exact(buf, at, n, self.inactivity).await?;
        if let Some(down) = &self.down {
            // Forward a copy: the original must stay ours for the disk write even if the
            // next hop stalls and its send is abandoned.
            let mut fwd = ibp_io::buf::acquire().await;
            fwd.as_full_mut()[..n].copy_from_slice(&buf.as_full()[at..at + n]);
            fwd.set_len(n);
            if down.send_buf(fwd, 0..n, self.wait).await.is_err() {
                self.down = None;
            }
        }
        Ok(buf)
    }
}

/// Routes an extension request by its key.
pub fn key_of(r: &ExtRequest) -> &KeyRef {
    match r {
        ExtRequest::McopyExt(m) => &m.key,
        ExtRequest::ChainStore(c) => &c.key,
    }
}
