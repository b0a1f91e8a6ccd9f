//! What the tools share: the error type with its exit code, the set of depot endpoints an
//! exNode names, TCP-connect latency probes, the download/augment work plan (logical units
//! and the mappings covering each), verified reads, and a bounded worker pool.

use crate::config::Config;
use crate::depot::Depot;
use crate::exnode::model::{DepotAddr, ExNode, Mapping, MappingId};
use crate::proto::Capability;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::{TcpStream, ToSocketAddrs};
use std::ops::Range;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Most worker streams a tool runs; each is a thread with its own connections.
pub const MAX_STREAMS: usize = 64;

/// How a tool failed; maps to the documented exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ToolErrorKind {
    /// Bad arguments or a depot list that cannot satisfy the request (exit 2).
    Usage,
    /// A local file could not be read or written, or the network failed outright (exit 1).
    Io,
    /// The exNode file is malformed (exit 3).
    BadExnode,
    /// The work finished only in part: ranges with no live replica, copies not placed,
    /// leases refused (exit 4).
    Incomplete,
}

impl ToolErrorKind {
    /// The process exit code.
    pub fn exit_code(self) -> i32 {
        match self {
            ToolErrorKind::Io => 1,
            ToolErrorKind::Usage => 2,
            ToolErrorKind::BadExnode => 3,
            ToolErrorKind::Incomplete => 4,
        }
    }
}

/// A tool failure with a message fit for a user (no capabilities).
#[derive(Debug)]
pub struct ToolError {
    /// The class, for the exit code.
    pub kind: ToolErrorKind,
    /// What went wrong and where.
    pub message: String,
}

impl ToolError {
    /// A new error.
    pub fn new(kind: ToolErrorKind, message: impl Into<String>) -> ToolError {
        ToolError { kind, message: message.into() }
    }
}

impl fmt::Display for ToolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ToolError {}

/// Unix seconds now.
pub fn now_s() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// Formats ranges as `0..4096, 8192..12288`, at most 8 of them, for messages.
pub fn fmt_ranges(ranges: &[Range<u64>]) -> String {
    let mut parts: Vec<String> =
        ranges.iter().take(8).map(|r| format!("{}..{}", r.start, r.end)).collect();
    if ranges.len() > 8 {
        parts.push(format!("and {} more", ranges.len() - 8));
    }
    parts.join(", ")
}

/// The depot of a capability, as an address.
pub fn cap_addr(cap: &Capability) -> DepotAddr {
    DepotAddr { host: cap.host.clone(), port: cap.port }
}

/// One [`Depot`] per distinct capability authority, each with its own connection pool.
#[derive(Debug, Default)]
pub struct Endpoints {
    map: BTreeMap<DepotAddr, Depot>,
    config: Config,
}

impl Endpoints {
    /// Endpoints for every capability in `x`.
    pub fn for_exnode(x: &ExNode, config: &Config) -> Endpoints {
        let mut e = Endpoints { map: BTreeMap::new(), config: config.clone() };
        for m in &x.mappings {
            for cap in [&m.read, &m.write, &m.manage].into_iter().flatten() {
                e.add(&cap_addr(cap));
            }
        }
        e
    }

    /// Adds an endpoint (no-op if present).
    pub fn add(&mut self, addr: &DepotAddr) {
        if !self.map.contains_key(addr) {
            let depot = Depot::new(addr.host.clone(), addr.port, self.config.clone());
            self.map.insert(addr.clone(), depot);
        }
    }

    /// The endpoint serving `cap`.
    pub fn get(&self, cap: &Capability) -> Option<&Depot> {
        self.map.get(&cap_addr(cap))
    }

    /// Every address.
    pub fn addrs(&self) -> Vec<DepotAddr> {
        self.map.keys().cloned().collect()
    }
}

/// Endpoints that grow while workers run (new allocations name shard ports not known in
/// advance), so every worker reuses the same pooled connections to a shard.
#[derive(Debug, Default)]
pub struct SharedEndpoints {
    map: Mutex<BTreeMap<DepotAddr, std::sync::Arc<Depot>>>,
    config: Config,
}

impl SharedEndpoints {
    /// An empty set using `config` for every depot.
    pub fn new(config: &Config) -> SharedEndpoints {
        SharedEndpoints { map: Mutex::new(BTreeMap::new()), config: config.clone() }
    }

    /// The endpoint serving `cap`, created on first use.
    pub fn for_cap(&self, cap: &Capability) -> std::sync::Arc<Depot> {
        self.for_addr(&cap_addr(cap))
    }

    /// The endpoint at `addr`, created on first use.
    pub fn for_addr(&self, addr: &DepotAddr) -> std::sync::Arc<Depot> {
        let make =
            || std::sync::Arc::new(Depot::new(addr.host.clone(), addr.port, self.config.clone()));
        match self.map.lock() {
            Ok(mut map) => map.entry(addr.clone()).or_insert_with(make).clone(),
            Err(_) => make(),
        }
    }
}

/// TCP connect time to each address, probed in parallel; `None` = unreachable within
/// `timeout`. This is the cheapest liveness and latency signal that needs no capability.
pub fn probe_latency(
    addrs: &[DepotAddr],
    timeout: Duration,
) -> BTreeMap<DepotAddr, Option<Duration>> {
    let out = Mutex::new(BTreeMap::new());
    run_parallel(addrs.len(), addrs.len().min(MAX_STREAMS), |i| {
        let a = &addrs[i];
        let start = Instant::now();
        let ok = (a.host.as_str(), a.port)
            .to_socket_addrs()
            .ok()
            .and_then(|mut it| it.next())
            .and_then(|sa| TcpStream::connect_timeout(&sa, timeout).ok())
            .is_some();
        let took = start.elapsed();
        if let Ok(mut map) = out.lock() {
            map.insert(a.clone(), ok.then_some(took));
        }
    });
    out.into_inner().unwrap_or_default()
}

/// Runs `job(i)` for `i in 0..jobs` on `streams` scoped threads (at least 1, at most
/// [`MAX_STREAMS`]), each pulling the next index.
pub fn run_parallel(jobs: usize, streams: usize, job: impl Fn(usize) + Sync) {
    let next = AtomicUsize::new(0);
    let streams = streams.clamp(1, MAX_STREAMS).min(jobs.max(1));
    std::thread::scope(|s| {
        for _ in 0..streams {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= jobs {
                    break;
                }
                job(i);
            });
        }
    });
}

/// A piece of the logical file and the mappings that cover all of it.
#[derive(Debug, Clone)]
pub struct Unit {
    /// Logical bytes.
    pub range: Range<u64>,
    /// Mappings covering the whole range (usable ones only: with a read capability and no
    /// e2e function we cannot undo).
    pub candidates: Vec<MappingId>,
}

/// True when we can read a mapping's bytes as file bytes.
pub fn is_readable(m: &Mapping) -> bool {
    m.read.is_some() && m.functions.is_empty() && m.logical_length > 0
}

/// Cuts `0..x.size()` at every mapping edge; each piece lists the mappings covering it.
/// Pieces longer than `max_unit` are cut further so work spreads over streams.
pub fn plan_units(x: &ExNode, max_unit: u64) -> Vec<Unit> {
    let size = x.size();
    let mut cuts: BTreeSet<u64> = [0, size].into_iter().collect();
    for m in &x.mappings {
        cuts.insert(m.logical_offset.min(size));
        cuts.insert(m.logical_end().min(size));
    }
    let cuts: Vec<u64> = cuts.into_iter().collect();
    let mut units = Vec::new();
    for w in cuts.windows(2) {
        let range = w[0]..w[1];
        if range.is_empty() {
            continue;
        }
        let candidates: Vec<MappingId> = x
            .iter()
            .filter(|(_, m)| {
                is_readable(m) && m.logical_offset <= range.start && m.logical_end() >= range.end
            })
            .map(|(id, _)| id)
            .collect();
        let step = max_unit.max(1);
        let mut at = range.start;
        while at < range.end {
            let end = range.end.min(at.saturating_add(step));
            units.push(Unit { range: at..end, candidates: candidates.clone() });
            at = end;
        }
    }
    units
}

/// Why one replica could not serve a range.
#[derive(Debug)]
pub enum FetchError {
    /// The depot or connection failed (dead, slow, refused).
    Depot(crate::Error),
    /// The bytes arrived but failed the end-to-end checksum.
    Checksum {
        /// Logical offset of the bad checksum block.
        logical_offset: u64,
    },
}

impl fmt::Display for FetchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FetchError::Depot(e) => write!(f, "{e}"),
            FetchError::Checksum { logical_offset } => {
                write!(
                    f,
                    "end-to-end checksum mismatch in the block at logical offset {logical_offset}"
                )
            }
        }
    }
}

/// Loads logical `range` from mapping `m` and checks it against the mapping's digests,
/// reading whole checksum blocks around the range when it does not align with them.
pub fn fetch_verified(
    m: &Mapping,
    range: &Range<u64>,
    depot: &Depot,
) -> Result<Vec<u8>, FetchError> {
    let cap = m
        .read
        .as_ref()
        .ok_or(FetchError::Depot(crate::Error::InvalidArgument("no read capability".into())))?;
    let rel = (range.start - m.logical_offset)..(range.end - m.logical_offset);
    let Some(sums) = m.checksum.as_ref().filter(|s| s.block_size > 0) else {
        return depot
            .handle(cap)
            .load(m.alloc_offset + rel.start, rel.end - rel.start)
            .map_err(FetchError::Depot);
    };
    let bs = sums.block_size;
    let first = rel.start / bs;
    let a = first * bs;
    let b = rel.end.div_ceil(bs).saturating_mul(bs).min(m.logical_length);
    let data = depot.handle(cap).load(m.alloc_offset + a, b - a).map_err(FetchError::Depot)?;
    let last = usize::try_from(b.div_ceil(bs)).unwrap_or(usize::MAX);
    let first_i = usize::try_from(first).unwrap_or(usize::MAX);
    let Some(want) = sums.digests.get(first_i..last) else {
        return Err(FetchError::Checksum { logical_offset: m.logical_offset + a });
    };
    let part = crate::exnode::BlockChecksums {
        algorithm: sums.algorithm,
        block_size: bs,
        digests: want.to_vec(),
    };
    if let Err(e) = part.verify(&data) {
        let bad = match e {
            crate::exnode::ChecksumError::Mismatch { index } => a + index as u64 * bs,
            crate::exnode::ChecksumError::Length { .. } => a,
        };
        return Err(FetchError::Checksum { logical_offset: m.logical_offset + bad });
    }
    let from = usize::try_from(rel.start - a).unwrap_or(0);
    let to = from + usize::try_from(rel.end - rel.start).unwrap_or(0);
    Ok(data[from..to].to_vec())
}

/// Parses a depot list: `host:port,host:port` or, from a file, one `host:port [label]` per
/// line with `#` comments.
pub fn parse_depot_list(text: &str) -> Result<Vec<DepotAddr>, ToolError> {
    let mut out = Vec::new();
    for raw in text.split(['\n', ',']) {
        let line = raw.split('#').next().unwrap_or("").trim();
        let Some(word) = line.split_whitespace().next() else { continue };
        let addr = DepotAddr::parse(word).ok_or_else(|| {
            ToolError::new(ToolErrorKind::Usage, format!("not a host:port depot: {word:?}"))
        })?;
        if !out.contains(&addr) {
            out.push(addr);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn depot_lists() {
        let l = parse_depot_list("# depots\n127.0.0.1:1 fast\n\n127.0.0.1:2,127.0.0.1:1\n")
            .expect("parses");
        assert_eq!(l.len(), 2);
        assert!(parse_depot_list("nope").is_err());
    }

    #[test]
    fn units_cut_at_edges() {
        let mut x = ExNode::for_file("f", 300);
        let mut a = Mapping::new(0, 200);
        a.read = Capability::parse("ibp://h:1/1#k/1/READ").ok();
        let mut b = Mapping::new(100, 200);
        b.read = a.read.clone();
        x.append(a);
        x.append(b);
        let u = plan_units(&x, 1000);
        let got: Vec<_> = u.iter().map(|u| (u.range.clone(), u.candidates.clone())).collect();
        assert_eq!(got, vec![(0..100, vec![0]), (100..200, vec![0, 1]), (200..300, vec![1])]);
        assert_eq!(plan_units(&x, 40).len(), 9);
    }
}
