//! Download: the logical file is cut into units (at mapping edges, then at most
//! `unit_bytes` each); every unit is fetched by one of `streams` workers from the fastest
//! live replica first (TCP-connect latency measured once up front), failing over to the next
//! replica when a depot is dead, too slow (the client's I/O timeout) or serves bytes that fail
//! the end-to-end checksum. Every unit with digests is verified before it is written.
//! With `resume`, units already present and verified in the output file are kept.

use super::common::{
    cap_addr, fetch_verified, fmt_ranges, plan_units, probe_latency, run_parallel, Endpoints,
    FetchError, ToolError, ToolErrorKind, Unit,
};
use crate::config::Config;
use crate::exnode::model::{DepotAddr, ExNode, Mapping};
use std::collections::{BTreeMap, BTreeSet};
use std::fs::{File, OpenOptions};
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

/// How to download.
#[derive(Debug, Clone)]
pub struct DownloadOptions {
    /// Parallel workers.
    pub streams: usize,
    /// Largest unit of work (bounded memory per stream).
    pub unit_bytes: u64,
    /// Keep verified units of an existing output file.
    pub resume: bool,
    /// Depots to read from first, in this order (a nearby depot, a fast link); the others
    /// follow by measured latency.
    pub prefer: Vec<DepotAddr>,
    /// Client timeouts; `io_timeout` decides when a replica counts as too slow.
    pub config: Config,
}

/// One replica that did not serve a unit, and why.
#[derive(Debug, Clone)]
pub struct Failover {
    /// Logical range that was asked for.
    pub range: Range<u64>,
    /// Depot that failed.
    pub depot: DepotAddr,
    /// Why (dead, timeout, checksum mismatch).
    pub why: String,
    /// True when the failure was a bad checksum.
    pub bad_checksum: bool,
}

/// What a download did.
#[derive(Debug, Default)]
pub struct DownloadReport {
    /// Bytes fetched from depots.
    pub fetched_bytes: u64,
    /// Bytes kept from the existing file (`resume`).
    pub kept_bytes: u64,
    /// Replicas that failed and were replaced by another.
    pub failovers: Vec<Failover>,
    /// Depots found unreachable by the up-front probe.
    pub dead_depots: Vec<DepotAddr>,
}

/// Downloads `x` into `out`; `progress` gets bytes written or kept.
pub fn download(
    x: &ExNode,
    out: &Path,
    opts: &DownloadOptions,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<DownloadReport, ToolError> {
    let size = x.size();
    let file = open_output(out, size, opts.resume)?;
    let endpoints = Endpoints::for_exnode(x, &opts.config);
    let latency =
        probe_latency(&endpoints.addrs(), opts.config.connect_timeout.min(Duration::from_secs(3)));
    let dead: Vec<DepotAddr> =
        latency.iter().filter(|(_, l)| l.is_none()).map(|(a, _)| a.clone()).collect();
    let units = plan_units(x, opts.unit_bytes.max(1));
    let suspects = Suspects::default();
    let state = Mutex::new(DownloadReport { dead_depots: dead, ..DownloadReport::default() });
    let missing: Mutex<Vec<Range<u64>>> = Mutex::new(Vec::new());
    let fatal: Mutex<Option<ToolError>> = Mutex::new(None);
    run_parallel(units.len(), opts.streams, |i| {
        let unit = &units[i];
        if opts.resume && local_is_good(x, unit, &file) {
            if let Ok(mut s) = state.lock() {
                s.kept_bytes += unit.range.end - unit.range.start;
            }
            progress(unit.range.end - unit.range.start);
            return;
        }
        let (data, fails) = fetch_unit(x, unit, &endpoints, &latency, &suspects, &opts.prefer);
        if let Ok(mut s) = state.lock() {
            s.failovers.extend(fails);
        }
        let Some(data) = data else {
            if let Ok(mut m) = missing.lock() {
                m.push(unit.range.clone());
            }
            return;
        };
        if let Err(e) = file.write_all_at(&data, unit.range.start) {
            if let Ok(mut f) = fatal.lock() {
                f.get_or_insert(ToolError::new(
                    ToolErrorKind::Io,
                    format!("cannot write {}: {e}", out.display()),
                ));
            }
            return;
        }
        if let Ok(mut s) = state.lock() {
            s.fetched_bytes += data.len() as u64;
        }
        progress(data.len() as u64);
    });
    if let Some(e) = fatal.into_inner().ok().flatten() {
        return Err(e);
    }
    let mut missing = missing.into_inner().unwrap_or_default();
    let report = state.into_inner().unwrap_or_default();
    if !missing.is_empty() {
        missing.sort_by_key(|r| r.start);
        let merged = merge(missing);
        return Err(ToolError::new(
            ToolErrorKind::Incomplete,
            format!(
                "no live, verified replica for logical bytes {} ({} bytes); the rest of {} is written",
                fmt_ranges(&merged),
                merged.iter().map(|r| r.end - r.start).sum::<u64>(),
                out.display()
            ),
        ));
    }
    file.sync_all().map_err(|e| {
        ToolError::new(ToolErrorKind::Io, format!("cannot sync {}: {e}", out.display()))
    })?;
    Ok(report)
}

fn open_output(out: &Path, size: u64, resume: bool) -> Result<File, ToolError> {
    let io = |e: std::io::Error| {
        ToolError::new(ToolErrorKind::Io, format!("cannot open {}: {e}", out.display()))
    };
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(!resume)
        .open(out)
        .map_err(io)?;
    file.set_len(size).map_err(io)?;
    Ok(file)
}

/// What the workers learn about depots while they run: a depot that failed a load (dead,
/// timed out, refused) is tried last from then on, so one stalled depot costs at most one
/// timeout per stream instead of one per unit. Bad checksums do not count: they condemn a
/// replica, not its depot.
#[derive(Debug, Default)]
struct Suspects(Mutex<BTreeSet<DepotAddr>>);

impl Suspects {
    fn add(&self, addr: DepotAddr) {
        if let Ok(mut s) = self.0.lock() {
            s.insert(addr);
        }
    }

    fn contains(&self, addr: &DepotAddr) -> bool {
        self.0.lock().map(|s| s.contains(addr)).unwrap_or(false)
    }
}

/// Candidates ordered: depots that answered the probe and have not failed (preferred ones
/// first, then by connect latency); then those that failed a load; then unreachable ones (a
/// probe can be wrong; they are still tried when nothing else works).
fn ordered<'a>(
    x: &'a ExNode,
    unit: &Unit,
    latency: &BTreeMap<DepotAddr, Option<Duration>>,
    suspects: &Suspects,
    prefer: &[DepotAddr],
) -> Vec<&'a Mapping> {
    let mut c: Vec<&Mapping> = unit.candidates.iter().filter_map(|&id| x.get(id)).collect();
    c.sort_by_cached_key(|m| {
        let rank = prefer.iter().position(|p| m.is_on(p)).unwrap_or(usize::MAX);
        let Some(addr) = m.read.as_ref().map(cap_addr) else {
            return (3, rank, Duration::ZERO);
        };
        match latency.get(&addr).copied().flatten() {
            Some(d) if !suspects.contains(&addr) => (0, rank, d),
            Some(d) => (1, rank, d),
            None => (2, rank, Duration::ZERO),
        }
    });
    c
}

fn fetch_unit(
    x: &ExNode,
    unit: &Unit,
    endpoints: &Endpoints,
    latency: &BTreeMap<DepotAddr, Option<Duration>>,
    suspects: &Suspects,
    prefer: &[DepotAddr],
) -> (Option<Vec<u8>>, Vec<Failover>) {
    let mut fails = Vec::new();
    for m in ordered(x, unit, latency, suspects, prefer) {
        let Some(cap) = m.read.as_ref() else { continue };
        let Some(depot) = endpoints.get(cap) else { continue };
        match fetch_verified(m, &unit.range, depot) {
            Ok(data) => return (Some(data), fails),
            Err(e) => {
                let bad_checksum = matches!(e, FetchError::Checksum { .. });
                if !bad_checksum {
                    suspects.add(cap_addr(cap));
                }
                fails.push(Failover {
                    range: unit.range.clone(),
                    depot: m.depot_addr().unwrap_or_else(|| cap_addr(cap)),
                    why: e.to_string(),
                    bad_checksum,
                });
            }
        }
    }
    (None, fails)
}

/// True when the output file already holds this unit and a mapping's digests vouch for it.
fn local_is_good(x: &ExNode, unit: &Unit, file: &File) -> bool {
    let Some(m) = unit.candidates.iter().filter_map(|&id| x.get(id)).find(|m| m.checksum.is_some())
    else {
        return false;
    };
    let Some(sums) = m.checksum.as_ref().filter(|s| s.block_size > 0) else { return false };
    let bs = sums.block_size;
    let rel = (unit.range.start - m.logical_offset)..(unit.range.end - m.logical_offset);
    // Only whole checksum blocks can be vouched for.
    if rel.start % bs != 0 || (rel.end % bs != 0 && rel.end != m.logical_length) {
        return false;
    }
    let mut buf = vec![0u8; usize::try_from(rel.end - rel.start).unwrap_or(0)];
    if file.read_exact_at(&mut buf, unit.range.start).is_err() {
        return false;
    }
    let (first, last) = ((rel.start / bs) as usize, rel.end.div_ceil(bs) as usize);
    let Some(want) = sums.digests.get(first..last) else { return false };
    let part = crate::exnode::BlockChecksums {
        algorithm: sums.algorithm,
        block_size: bs,
        digests: want.to_vec(),
    };
    part.verify(&buf).is_ok()
}

fn merge(sorted: Vec<Range<u64>>) -> Vec<Range<u64>> {
    let mut out: Vec<Range<u64>> = Vec::new();
    for r in sorted {
        match out.last_mut() {
            Some(last) if last.end >= r.start => last.end = last.end.max(r.end),
            _ => out.push(r),
        }
    }
    out
}
