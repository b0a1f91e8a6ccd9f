//! `run`: the `ibp_perf` workload and more, against any IBP depot, with standard commands
//! only: allocate/remove rate, sequential store and load of one large allocation over N
//! streams, random 1 MiB and small writes and reads, and depot-to-depot copy.
//!
//! Each phase is bounded twice: by its op or byte count and by `phase_limit`. Each stream is
//! its own connection to the port the capability names (its shard on our depot) and keeps up
//! to `qd` commands in flight (pipelined, as the LStore client does). A stream of the
//! sequential phases owns one contiguous slice of the allocation; with one stream the store
//! phase appends with STORE, with more each stream WRITEs its slice.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use ibp_client::proto::reply;
use ibp_client::proto::request::{cmd, Reliability};
use ibp_client::{CapKind, Capability};

use crate::figure::{Figure, Recorder, Setting};
use crate::progress::{run_workers, Unit};
use crate::rng::Rng;
use crate::wire::{self, WireError, WireResult};

/// Lease of every allocation the benchmark makes; they are removed at the end anyway.
const LEASE_S: i64 = 3600;
/// Size of each allocation of the allocate/remove phase (LStore's `ibp_perf` default).
const SMALL_ALLOC_BYTES: u64 = 4096;
/// Most allocate+remove pairs in one run.
const MAX_ALLOC_PAIRS: u64 = 200_000;
/// Most operations of one random phase.
const MAX_RANDOM_OPS: u64 = 2_000_000;
/// Block size of the "random 1 MiB" phases.
const RANDOM_LARGE_BYTES: u64 = 1 << 20;

/// What `run` measures.
#[derive(Clone, Debug)]
pub struct Params {
    pub depot: SocketAddr,
    pub depot2: Option<SocketAddr>,
    pub rid: String,
    pub streams: usize,
    pub size_bytes: u64,
    pub block_bytes: u64,
    /// Commands in flight per stream.
    pub qd: usize,
    pub phase_limit: Duration,
    /// Sizes of the small random read/write phases.
    pub small_sizes: Vec<u64>,
    /// Skip allocate/remove and the small phases (sweeps measure only the bulk path).
    pub bulk_only: bool,
    /// The data allocation is soft (no fdatasync per write) instead of hard.
    pub soft: bool,
}

/// The figures of one `run`, in order.
pub fn run(p: &Params) -> WireResult<Vec<Figure>> {
    let mut figures = Vec::new();
    if !p.bulk_only {
        figures.extend(alloc_remove(p)?);
    }
    let depot = wire::depot(p.depot);
    let reliability = if p.soft { Reliability::Soft } else { Reliability::Hard };
    let caps = depot.allocate(p.size_bytes, LEASE_S, reliability, Some(&p.rid))?;
    let result = bulk_phases(p, &caps.read, &caps.write, &mut figures);
    let cleanup = depot.handle(&caps.manage).decr(CapKind::Read);
    result?;
    cleanup?;
    Ok(figures)
}

fn bulk_phases(
    p: &Params,
    read: &Capability,
    write: &Capability,
    figures: &mut Vec<Figure>,
) -> WireResult<()> {
    let seq = Setting { streams: p.streams, block_bytes: p.block_bytes, qd: p.qd };
    let store_cmd = if p.streams == 1 { cmd::STORE } else { cmd::WRITE };
    let (store, written) = sequential(p, write, store_cmd, "store seq", seq, p.size_bytes)?;
    figures.push(store);
    if written == 0 {
        return Err(WireError::Protocol(
            "the store phase wrote nothing before its deadline".into(),
        ));
    }
    // Loads stay inside what the store phase wrote before its deadline.
    let (load, _) = sequential(p, read, cmd::LOAD, "load seq", seq, written)?;
    figures.push(load);
    if p.bulk_only {
        return Ok(());
    }
    let p = &Params { size_bytes: written, ..p.clone() };
    let large = RANDOM_LARGE_BYTES.min(p.size_bytes);
    figures.push(random(p, write, cmd::WRITE, large, "write rand 1MiB")?);
    figures.push(random(p, read, cmd::LOAD, large, "load rand 1MiB")?);
    for &small in &p.small_sizes {
        let small = small.min(p.size_bytes);
        figures.push(random(
            p,
            write,
            cmd::WRITE,
            small,
            &format!("write rand {}", crate::units::format_size(small)),
        )?);
        figures.push(random(
            p,
            read,
            cmd::LOAD,
            small,
            &format!("load rand {}", crate::units::format_size(small)),
        )?);
    }
    if let Some(depot2) = p.depot2 {
        figures.push(copy(p, read, depot2)?);
    }
    Ok(())
}

/// Merges per-stream recorders, failing on the first stream error.
fn merge(results: Vec<WireResult<Recorder>>) -> WireResult<Recorder> {
    let mut all = Recorder::new();
    for r in results {
        all.merge(&r?);
    }
    Ok(all)
}

/// Hard allocations of 4 KiB, each removed (MANAGE DECR of the read count) at once.
fn alloc_remove(p: &Params) -> WireResult<Vec<Figure>> {
    let deadline = Instant::now() + p.phase_limit;
    let per_stream = MAX_ALLOC_PAIRS / p.streams as u64;
    let (results, elapsed) = run_workers("allocate+remove", Unit::Ops, p.streams, |_, counter| {
        let depot = wire::depot(p.depot);
        let (mut alloc, mut remove, mut pair) = (Recorder::new(), Recorder::new(), Recorder::new());
        for _ in 0..per_stream {
            if Instant::now() >= deadline {
                break;
            }
            let t = Instant::now();
            let caps =
                depot.allocate(SMALL_ALLOC_BYTES, LEASE_S, Reliability::Hard, Some(&p.rid))?;
            let t_alloc = t.elapsed();
            let t2 = Instant::now();
            depot.handle(&caps.manage).decr(CapKind::Read)?;
            alloc.record(t_alloc, 0);
            remove.record(t2.elapsed(), 0);
            pair.record(t.elapsed(), 0);
            counter.fetch_add(1, Ordering::Relaxed);
        }
        Ok::<_, WireError>([alloc, remove, pair])
    });
    let mut merged = [Recorder::new(), Recorder::new(), Recorder::new()];
    for r in results {
        for (m, x) in merged.iter_mut().zip(r?.iter()) {
            m.merge(x);
        }
    }
    let setting = Setting { streams: p.streams, block_bytes: SMALL_ALLOC_BYTES, qd: 1 };
    Ok(vec![
        merged[0].figure("allocate (hard)", setting, elapsed),
        merged[1].figure("remove (decr)", setting, elapsed),
        merged[2].figure("allocate+remove pairs", setting, elapsed),
    ])
}

/// Each stream moves its slice of the first `size` bytes in `block`-sized commands. Returns
/// the figure and the prefix of the allocation that every stream covered (all of `size`
/// unless the deadline cut a stream short).
fn sequential(
    p: &Params,
    cap: &Capability,
    command: i32,
    name: &str,
    setting: Setting,
    size: u64,
) -> WireResult<(Figure, u64)> {
    let deadline = Instant::now() + p.phase_limit;
    let slice = (size / p.streams as u64).max(1);
    let (results, elapsed) = run_workers(name, Unit::Bytes, p.streams, |i, counter| {
        let start = i as u64 * slice;
        let end = if i + 1 == p.streams { size } else { (start + slice).min(size) };
        let ops = (start..end)
            .step_by(p.block_bytes as usize)
            .map(|off| (off, p.block_bytes.min(end - off)));
        let rec = stream_ops(cap, command, ops, p.qd, deadline, counter, p.block_bytes)?;
        Ok::<_, WireError>((rec, start, end))
    });
    let mut all = Recorder::new();
    let mut covered = size;
    for r in results {
        let (rec, start, end) = r?;
        if start + rec.bytes < end {
            // With STORE (one stream) the allocation is exactly this long; with WRITE slices
            // the first short slice bounds the prefix without holes.
            covered = covered.min(start + rec.bytes);
        }
        all.merge(&rec);
    }
    Ok((all.figure(name, setting, elapsed), covered))
}

/// Random `len`-aligned ranges of `len` bytes over the whole allocation.
fn random(p: &Params, cap: &Capability, command: i32, len: u64, name: &str) -> WireResult<Figure> {
    let deadline = Instant::now() + p.phase_limit;
    let per_stream = MAX_RANDOM_OPS / p.streams as u64;
    let size = p.size_bytes;
    let (results, elapsed) = run_workers(name, Unit::Bytes, p.streams, |i, counter| {
        let mut rng = Rng::new(i as u64);
        let ops = (0..per_stream).map(move |_| (rng.aligned_offset(size, len, len), len));
        stream_ops(cap, command, ops, 1, deadline, counter, len)
    });
    let setting = Setting { streams: p.streams, block_bytes: len, qd: 1 };
    Ok(merge(results)?.figure(name, setting, elapsed))
}

/// Runs `(offset, len)` operations on one connection with up to `qd` in flight, stopping at
/// the end of `ops` or at `deadline`.
fn stream_ops(
    cap: &Capability,
    command: i32,
    ops: impl Iterator<Item = (u64, u64)>,
    qd: usize,
    deadline: Instant,
    counter: &AtomicU64,
    max_len: u64,
) -> WireResult<Recorder> {
    // The deadline of the whole stream: the phase, plus the library's per-operation budget
    // for what is in flight when the phase ends.
    let budget = deadline.saturating_duration_since(Instant::now())
        + wire::config().op_budget(max_len * qd as u64);
    let (depot, mut conn) = wire::stream_conn(cap, budget)?;
    let handle = depot.handle(cap);
    let mut buf = vec![0x3c_u8; max_len as usize];
    let mut rec = Recorder::new();
    let mut in_flight: VecDeque<(Instant, u64)> = VecDeque::with_capacity(qd.max(1));
    let mut ops = ops.peekable();
    loop {
        while in_flight.len() < qd.max(1) && Instant::now() < deadline {
            let Some((off, len)) = ops.next() else { break };
            let t = Instant::now();
            // Pipelined like LStore: header and payload go out before any reply is read.
            match command {
                cmd::STORE => {
                    conn.send(&handle.store_request(len)?)?;
                    conn.send(&buf[..len as usize])?;
                }
                cmd::WRITE => {
                    conn.send(&handle.range_request(false, off, len)?)?;
                    conn.send(&buf[..len as usize])?;
                }
                _ => conn.send(&handle.range_request(true, off, len)?)?,
            }
            in_flight.push_back((t, len));
        }
        let Some((t, len)) = in_flight.pop_front() else { return Ok(rec) };
        if command == cmd::LOAD {
            let n = conn.read_reply(reply::parse_count)?;
            if n != len as i64 {
                return Err(WireError::Protocol(format!("LOAD of {len} bytes returned {n}")));
            }
            conn.read_exact(&mut buf[..len as usize])?;
        } else {
            conn.read_reply(reply::parse_ok)?;
            let n = conn.read_reply(reply::parse_count)?;
            if n != len as i64 {
                return Err(WireError::Protocol(format!("{n} of {len} bytes acknowledged")));
            }
        }
        rec.record(t.elapsed(), len);
        counter.fetch_add(len, Ordering::Relaxed);
    }
}

/// SEND from the large allocation into a fresh allocation on `depot2`, one stream per slice.
fn copy(p: &Params, read: &Capability, depot2: SocketAddr) -> WireResult<Figure> {
    let depot2 = wire::depot(depot2);
    let caps2 = depot2.allocate(p.size_bytes, LEASE_S, Reliability::Hard, Some(&p.rid))?;
    let target = &caps2.write;
    let deadline = Instant::now() + p.phase_limit;
    let slice = (p.size_bytes / p.streams as u64).max(1);
    let (results, elapsed) = run_workers("copy", Unit::Bytes, p.streams, |i, counter| {
        let budget = p.phase_limit + wire::config().op_budget(p.block_bytes);
        let (_depot, mut conn) = wire::stream_conn(read, budget)?;
        let mut rec = Recorder::new();
        let start = i as u64 * slice;
        let end = if i + 1 == p.streams { p.size_bytes } else { start + slice };
        let mut off = start;
        while off < end && Instant::now() < deadline {
            let len = p.block_bytes.min(end - off);
            let t = Instant::now();
            wire::copy(&mut conn, read, target, off, len)?;
            rec.record(t.elapsed(), len);
            counter.fetch_add(len, Ordering::Relaxed);
            off += len;
        }
        Ok(rec)
    });
    let cleanup = depot2.handle(&caps2.manage).decr(CapKind::Read);
    let fig = merge(results)?.figure(
        "copy depot→depot",
        Setting { streams: p.streams, block_bytes: p.block_bytes, qd: 1 },
        elapsed,
    );
    cleanup?;
    Ok(fig)
}
