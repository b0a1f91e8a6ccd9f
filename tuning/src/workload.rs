//! `run`: the `ibp_perf` workload and more, against any IBP depot, with standard commands
//! only: allocate/remove rate, sequential store and load of a large transfer over N streams,
//! random 1 MiB and small writes and reads, and depot-to-depot copy.
//!
//! Each phase is bounded twice: by its op or byte count and by `phase_limit`. Each stream is
//! its own connection to the port the capability names (its shard on our depot) and keeps up
//! to `qd` commands in flight (pipelined, as the LStore client does).
//!
//! The large transfer lives in one allocation, or with `allocs` > 1 is striped over several
//! (as an exNode stripes a file), stream `i` working on stripe `i % allocs`. One allocation
//! lives on one shard (one core) of our depot, so striping is how one transfer uses every
//! core: our depot puts each new allocation on the shard with the most free space, so the
//! stripes spread evenly over its cores. A stream of the sequential phases owns one
//! contiguous slice of its stripe; where every stripe has one stream the store phase appends
//! with STORE, else each stream WRITEs its slice.

use std::collections::{HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use ibp_client::proto::reply;
use ibp_client::proto::request::{cmd, Reliability};
use ibp_client::{AllocCaps, CapKind, Capability};

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
    /// The data allocations are soft (no fdatasync per write) instead of hard.
    pub soft: bool,
    /// Allocations the large transfer is striped over (1..=streams).
    pub allocs: usize,
}

/// One allocation of the large transfer, and how many of its bytes the phases use.
#[derive(Clone, Copy)]
struct Stripe<'a> {
    read: &'a Capability,
    write: &'a Capability,
    len: u64,
}

/// What a stream works on in a phase: its stripe (an index) and its byte range there.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Slice {
    stripe: usize,
    start: u64,
    end: u64,
}

/// The figures of one `run`, in order, and how many distinct places (host and port) the
/// stripes landed on.
pub fn run(p: &Params) -> WireResult<(Vec<Figure>, usize)> {
    let mut figures = Vec::new();
    if !p.bulk_only {
        figures.extend(alloc_remove(p)?);
    }
    let stripe_len = p.size_bytes.div_ceil(p.allocs.max(1) as u64);
    let (all_caps, places) = allocate_stripes(p, stripe_len)?;
    let stripes: Vec<Stripe> = all_caps
        .iter()
        .map(|c| Stripe { read: &c.read, write: &c.write, len: stripe_len })
        .collect();
    let result = bulk_phases(p, stripes, &mut figures);
    let mut cleanup = Ok(());
    for caps in &all_caps {
        let removed = remove(p.depot, caps);
        if cleanup.is_ok() {
            cleanup = removed;
        }
    }
    result?;
    cleanup?;
    Ok((figures, places))
}

/// Removes an allocation (MANAGE DECR of its read count) through the depot that made it.
fn remove(depot: SocketAddr, caps: &AllocCaps) -> WireResult<()> {
    wire::depot(depot).handle(&caps.manage).decr(CapKind::Read)
}

/// `p.allocs` allocations of `len` bytes, each made over a fresh connection to the base port.
/// Our depot places each on the shard with the most free space (`depot/src/placement.rs`), so
/// equal stripes alternate between its cores. Returns the allocations and the number of
/// distinct places (host and port, one per shard on our depot) their capabilities name.
fn allocate_stripes(p: &Params, len: u64) -> WireResult<(Vec<AllocCaps>, usize)> {
    let reliability = if p.soft { Reliability::Soft } else { Reliability::Hard };
    let mut kept: Vec<AllocCaps> = Vec::with_capacity(p.allocs.max(1));
    while kept.len() < p.allocs.max(1) {
        match wire::depot(p.depot).allocate(len, LEASE_S, reliability, Some(&p.rid)) {
            Ok(caps) => kept.push(caps),
            Err(e) => {
                for c in &kept {
                    let _ = remove(p.depot, c);
                }
                return Err(e);
            }
        }
    }
    let places: HashSet<(&str, u16)> =
        kept.iter().map(|c| (c.read.host.as_str(), c.read.port)).collect();
    let places = places.len();
    Ok((kept, places))
}

/// Stream `i` of `streams` works on stripe `i % lens.len()`, on the `i / lens.len()`-th of
/// the equal contiguous slices its stripe (of `lens[stripe]` bytes) is cut into.
fn slices(lens: &[u64], streams: usize) -> Vec<Slice> {
    let k = lens.len();
    (0..streams)
        .map(|i| {
            let (stripe, nth) = (i % k, (i / k) as u64);
            let len = lens[stripe];
            let sharing = (streams - stripe).div_ceil(k) as u64;
            let slice = (len / sharing).max(1);
            let start = (nth * slice).min(len);
            let end = if nth + 1 == sharing { len } else { (start + slice).min(len) };
            Slice { stripe, start, end }
        })
        .collect()
}

fn bulk_phases(p: &Params, mut stripes: Vec<Stripe>, figures: &mut Vec<Figure>) -> WireResult<()> {
    let seq =
        Setting { streams: p.streams, block_bytes: p.block_bytes, qd: p.qd, allocs: stripes.len() };
    let store_cmd = if p.streams == stripes.len() { cmd::STORE } else { cmd::WRITE };
    let (store, written) = sequential(p, &stripes, store_cmd, "store seq", seq)?;
    figures.push(store);
    if written.contains(&0) {
        return Err(WireError::Protocol(
            "the store phase left a stripe empty before its deadline".into(),
        ));
    }
    // Later phases stay inside what the store phase wrote before its deadline.
    for (s, w) in stripes.iter_mut().zip(written) {
        s.len = w;
    }
    let (load, _) = sequential(p, &stripes, cmd::LOAD, "load seq", seq)?;
    figures.push(load);
    if p.bulk_only {
        return Ok(());
    }
    let shortest = stripes.iter().map(|s| s.len).min().unwrap_or(0);
    let large = RANDOM_LARGE_BYTES.min(shortest);
    figures.push(random(p, &stripes, cmd::WRITE, large, "write rand 1MiB")?);
    figures.push(random(p, &stripes, cmd::LOAD, large, "load rand 1MiB")?);
    for &small in &p.small_sizes {
        let small = small.min(shortest);
        let size = crate::units::format_size(small);
        figures.push(random(p, &stripes, cmd::WRITE, small, &format!("write rand {size}"))?);
        figures.push(random(p, &stripes, cmd::LOAD, small, &format!("load rand {size}"))?);
    }
    if let Some(depot2) = p.depot2 {
        figures.push(copy(p, &stripes, depot2)?);
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
    let setting = Setting { streams: p.streams, block_bytes: SMALL_ALLOC_BYTES, qd: 1, allocs: 0 };
    Ok(vec![
        merged[0].figure("allocate (hard)", setting, elapsed),
        merged[1].figure("remove (decr)", setting, elapsed),
        merged[2].figure("allocate+remove pairs", setting, elapsed),
    ])
}

/// Each stream moves its slice of its stripe in `block`-sized commands. Returns the figure
/// and, per stripe, the prefix that every stream on it covered (all of it unless the deadline
/// cut a stream short).
fn sequential(
    p: &Params,
    stripes: &[Stripe],
    command: i32,
    name: &str,
    setting: Setting,
) -> WireResult<(Figure, Vec<u64>)> {
    let deadline = Instant::now() + p.phase_limit;
    let lens: Vec<u64> = stripes.iter().map(|s| s.len).collect();
    let work = slices(&lens, p.streams);
    let (results, elapsed) = run_workers(name, Unit::Bytes, p.streams, |i, counter| {
        let Slice { stripe, start, end } = work[i];
        let stripe = stripes[stripe];
        let cap = if command == cmd::LOAD { stripe.read } else { stripe.write };
        let ops = (start..end)
            .step_by(p.block_bytes as usize)
            .map(|off| (off, p.block_bytes.min(end - off)));
        stream_ops(cap, command, ops, p.qd, deadline, counter, p.block_bytes)
    });
    let mut all = Recorder::new();
    let mut covered = lens;
    for (r, Slice { stripe, start, end }) in results.into_iter().zip(work) {
        let rec = r?;
        if start + rec.bytes < end {
            // With STORE the stripe is exactly this long; with WRITE slices the first short
            // slice bounds the prefix without holes.
            let c = &mut covered[stripe];
            *c = (*c).min(start + rec.bytes);
        }
        all.merge(&rec);
    }
    Ok((all.figure(name, setting, elapsed), covered))
}

/// Random `len`-aligned ranges of `len` bytes, each stream over the whole of its stripe.
fn random(
    p: &Params,
    stripes: &[Stripe],
    command: i32,
    len: u64,
    name: &str,
) -> WireResult<Figure> {
    let deadline = Instant::now() + p.phase_limit;
    let per_stream = MAX_RANDOM_OPS / p.streams as u64;
    let (results, elapsed) = run_workers(name, Unit::Bytes, p.streams, |i, counter| {
        let stripe = stripes[i % stripes.len()];
        let cap = if command == cmd::LOAD { stripe.read } else { stripe.write };
        let mut rng = Rng::new(i as u64);
        let ops = (0..per_stream).map(move |_| (rng.aligned_offset(stripe.len, len, len), len));
        stream_ops(cap, command, ops, 1, deadline, counter, len)
    });
    let setting = Setting { streams: p.streams, block_bytes: len, qd: 1, allocs: stripes.len() };
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

/// SEND from the stripes into one fresh allocation on `depot2`, each stream its slice.
fn copy(p: &Params, stripes: &[Stripe], depot2: SocketAddr) -> WireResult<Figure> {
    let total: u64 = stripes.iter().map(|s| s.len).sum();
    let depot2 = wire::depot(depot2);
    let caps2 = depot2.allocate(total, LEASE_S, Reliability::Hard, Some(&p.rid))?;
    let target = &caps2.write;
    let deadline = Instant::now() + p.phase_limit;
    let lens: Vec<u64> = stripes.iter().map(|s| s.len).collect();
    let work = slices(&lens, p.streams);
    let (results, elapsed) = run_workers("copy", Unit::Bytes, p.streams, |i, counter| {
        let Slice { stripe, start, end } = work[i];
        let stripe = stripes[stripe];
        let budget = p.phase_limit + wire::config().op_budget(p.block_bytes);
        let (_depot, mut conn) = wire::stream_conn(stripe.read, budget)?;
        let mut rec = Recorder::new();
        let mut off = start;
        while off < end && Instant::now() < deadline {
            let len = p.block_bytes.min(end - off);
            let t = Instant::now();
            wire::copy(&mut conn, stripe.read, target, off, len)?;
            rec.record(t.elapsed(), len);
            counter.fetch_add(len, Ordering::Relaxed);
            off += len;
        }
        Ok(rec)
    });
    let cleanup = depot2.handle(&caps2.manage).decr(CapKind::Read);
    let setting =
        Setting { streams: p.streams, block_bytes: p.block_bytes, qd: 1, allocs: stripes.len() };
    let fig = merge(results)?.figure("copy depot→depot", setting, elapsed);
    cleanup?;
    Ok(fig)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slices_cover_every_stripe_once_and_give_each_stream_one_range() {
        for (lens, streams) in [(vec![100], 1), (vec![100], 3), (vec![10, 10], 5), (vec![7; 4], 4)]
        {
            let work = slices(&lens, streams);
            assert_eq!(work.len(), streams);
            for (k, &len) in lens.iter().enumerate() {
                let mut mine: Vec<&Slice> = work.iter().filter(|s| s.stripe == k).collect();
                mine.sort_by_key(|s| s.start);
                // Contiguous, in order, from 0 to the stripe's end, none empty.
                let mut at = 0;
                for s in &mine {
                    assert_eq!(s.start, at, "{lens:?} x {streams}: {work:?}");
                    assert!(s.end > s.start, "{work:?}");
                    at = s.end;
                }
                assert_eq!(at, len, "{lens:?} x {streams}: {work:?}");
            }
            for (i, s) in work.iter().enumerate() {
                assert_eq!(s.stripe, i % lens.len());
            }
        }
    }
}
