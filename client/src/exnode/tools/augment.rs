//! Augment: bring every range of the file up to `copies` live replicas by adding new ones on
//! depots that do not hold that range yet.
//!
//! **Fallback data path.** LoRS augments by depot-to-depot IBP_copy (SEND). The client
//! library on main has no copy call yet, so this moves each block *through the caller*:
//! load from the fastest live, verified replica, then allocate and store on the new depot.
//! The bytes are checked against the end-to-end digests on the way, so a corrupt source is
//! never replicated. When the library gains `copy`, `add_replica` switches to SEND and the
//! caller stops carrying data (tracked in client/README-exnode.md).

use super::common::{
    cap_addr, fetch_verified, now_s, plan_units, probe_latency, run_parallel, Endpoints,
    SharedEndpoints, ToolError, ToolErrorKind,
};
use crate::config::Config;
use crate::exnode::model::{DepotAddr, ExNode, Mapping};
use crate::proto::request::Reliability;
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
            let data = live.iter().find_map(|m| {
                let depot = endpoints.get(m.read.as_ref()?)?;
                fetch_verified(m, &unit.range, depot).ok().map(|d| (d, *m))
            });
            if let Some((data, source)) = data {
                // Rotate the start by unit so new replicas spread over the targets.
                let n = opts.depots.len();
                let rotated = (0..n).map(|k| &opts.depots[(i + k) % n]);
                for target in rotated.filter(|d| !holding.contains(d) && alive(d)) {
                    if have >= opts.copies {
                        break;
                    }
                    if let Ok(m) = add_replica(&data, &unit.range, source, target, &shards, opts) {
                        progress(data.len() as u64);
                        new.push(m);
                        have += 1;
                    }
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

/// Stores `data` (logical `range`, verified against `source`'s digests) as a new
/// allocation on `target`. Fallback path: through the caller (see the module note).
fn add_replica(
    data: &[u8],
    range: &Range<u64>,
    source: &Mapping,
    target: &DepotAddr,
    shards: &SharedEndpoints,
    opts: &AugmentOptions,
) -> crate::Result<Mapping> {
    let len = data.len() as u64;
    let caps =
        shards.for_addr(target).allocate(len.max(1), opts.duration_s, Reliability::Hard, None)?;
    shards.for_cap(&caps.write).handle(&caps.write).store(data)?;
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
