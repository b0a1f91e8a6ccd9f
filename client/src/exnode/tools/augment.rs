//! Augment: bring every range of the file up to `copies` live replicas by adding new ones on
//! depots that do not hold that range yet.
//!
//! **Data path.** As LoRS does, each new replica is made by depot-to-depot IBP_copy (SEND):
//! the new allocation is made on the target depot and the source depot sends the bytes to it
//! directly, so the data never passes through the caller. The source depot verifies its own
//! CRC32 per block before sending (a corrupt block fails the SEND, never travels), and a
//! failed SEND is retried from the next live replica; the new mapping carries the source's
//! end-to-end digests, since the bytes are the same.

use super::common::{
    cap_addr, now_s, plan_units, probe_latency, run_parallel, Endpoints, SharedEndpoints,
    ToolError, ToolErrorKind,
};
use crate::config::Config;
use crate::exnode::model::{DepotAddr, ExNode, Mapping};
use crate::proto::request::Reliability;
use crate::proto::CapKind;
use std::collections::BTreeSet;
use std::ops::Range;
use std::sync::Mutex;
use std::time::Duration;

/// How to augment.
#[derive(Debug, Clone)]
pub struct AugmentOptions {
    /// Depots new replicas may go to.
    pub depots: Vec<DepotAddr>,
    /// Live replicas wanted per range.
    pub copies: usize,
    /// Parallel workers.
    pub streams: usize,
    /// Lease of new allocations (seconds, −1 = depot maximum).
    pub duration_s: i64,
    /// Client timeouts.
    pub config: Config,
}

/// What augment did.
#[derive(Debug, Default)]
pub struct AugmentReport {
    /// New mappings added.
    pub added: usize,
    /// Ranges still short of `copies` live replicas: (range, live replicas now).
    pub short: Vec<(Range<u64>, usize)>,
}

/// Adds replicas to `x` in place.
pub fn augment(
    x: &mut ExNode,
    opts: &AugmentOptions,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<AugmentReport, ToolError> {
    if opts.depots.is_empty() || opts.copies == 0 {
        return Err(ToolError::new(
            ToolErrorKind::Usage,
            "augment needs --depots and --copies >= 1",
        ));
    }
    let endpoints = Endpoints::for_exnode(x, &opts.config);
    let mut probe: Vec<DepotAddr> = endpoints.addrs();
    probe.extend(opts.depots.iter().cloned());
    let latency = probe_latency(&probe, opts.config.connect_timeout.min(Duration::from_secs(3)));
    let alive = |a: &DepotAddr| latency.get(a).copied().flatten().is_some();
    // Mapping-aligned units: a new replica copies one whole existing mapping's range.
    let units = plan_units(x, u64::MAX);
    let shards = SharedEndpoints::new(&opts.config);
    let added: Mutex<Vec<Mapping>> = Mutex::new(Vec::new());
    let short: Mutex<Vec<(Range<u64>, usize)>> = Mutex::new(Vec::new());
    let snapshot: &ExNode = x;
    run_parallel(units.len(), opts.streams, |i| {
        let unit = &units[i];
        let live: Vec<&Mapping> = unit
            .candidates
            .iter()
            .filter_map(|&id| snapshot.get(id))
            .filter(|m| m.lease_live(now_s()) && answers_probe(m, &endpoints, &alive))
            .collect();
        let holding: BTreeSet<DepotAddr> = unit
            .candidates
            .iter()
            .filter_map(|&id| snapshot.get(id))
            .flat_map(|m| [m.depot.clone(), m.cap_depot()])
            .flatten()
            .collect();
        let mut have = live.len();
        let mut new = Vec::new();
        if have < opts.copies && !live.is_empty() {
            // Rotate the start by unit so new replicas spread over the targets.
            let n = opts.depots.len();
            let rotated = (0..n).map(|k| &opts.depots[(i + k) % n]);
            for target in rotated.filter(|d| !holding.contains(d) && alive(d)) {
                if have >= opts.copies {
                    break;
                }
                let made = live.iter().find_map(|source| {
                    add_replica(&unit.range, source, target, &endpoints, &shards, opts).ok()
                });
                if let Some(m) = made {
                    progress(m.logical_length);
                    new.push(m);
                    have += 1;
                }
            }
        }
        if have < opts.copies {
            if let Ok(mut s) = short.lock() {
                s.push((unit.range.clone(), have));
            }
        }
        if let Ok(mut a) = added.lock() {
            a.extend(new);
        }
    });
    let added = added.into_inner().unwrap_or_default();
    let report =
        AugmentReport { added: added.len(), short: short.into_inner().unwrap_or_default() };
    for m in added {
        x.append(m);
    }
    x.mappings.sort_by_key(|m| m.logical_offset);
    Ok(report)
}

/// Live means the depot answers MANAGE PROBE through the read capability (as LoRS `-B`
/// counts live replicas); a connect alone is not enough (a dying depot may still accept).
fn answers_probe(m: &Mapping, endpoints: &Endpoints, alive: &dyn Fn(&DepotAddr) -> bool) -> bool {
    let Some(cap) = m.read.as_ref() else { return false };
    if !alive(&cap_addr(cap)) {
        return false;
    }
    endpoints.get(cap).is_some_and(|d| d.handle(cap).probe().is_ok())
}

/// Makes a new allocation on `target` and has `source`'s depot SEND the bytes of `range`
/// into it. A failed copy frees the new allocation again.
fn add_replica(
    range: &Range<u64>,
    source: &Mapping,
    target: &DepotAddr,
    endpoints: &Endpoints,
    shards: &SharedEndpoints,
    opts: &AugmentOptions,
) -> crate::Result<Mapping> {
    let len = range.end - range.start;
    let no_source =
        || crate::Error::Protocol("the source mapping has no reachable read capability".into());
    let read = source.read.as_ref().ok_or_else(no_source)?;
    let src_depot = endpoints.get(read).ok_or_else(no_source)?;
    let src_off = source.alloc_offset + (range.start - source.logical_offset);
    let caps =
        shards.for_addr(target).allocate(len.max(1), opts.duration_s, Reliability::Hard, None)?;
    let sent = src_depot.handle(read).send(&caps.write, src_off, len);
    if !matches!(sent, Ok(n) if n == len) {
        // Best effort: the allocation would otherwise hold a partial copy until its lease ends.
        let _ = shards.for_cap(&caps.manage).handle(&caps.manage).decr(CapKind::Read);
        return Err(sent
            .err()
            .unwrap_or(crate::Error::Protocol("short depot-to-depot copy".into())));
    }
    let mut m = Mapping::new(range.start, len);
    m.e2e_blocksize = source.e2e_blocksize;
    m.checksum = (range.start == source.logical_offset && len == source.logical_length)
        .then(|| source.checksum.clone())
        .flatten();
    m.read = Some(caps.read);
    m.write = Some(caps.write);
    m.manage = Some(caps.manage);
    m.depot = Some(target.clone());
    if opts.duration_s > 0 {
        m.expires_s = Some(now_s().saturating_add(opts.duration_s.unsigned_abs()));
    }
    Ok(m)
}
