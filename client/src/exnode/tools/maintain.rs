//! Trim, refresh and probe: the per-mapping maintenance calls.
//!
//! * probe: MANAGE PROBE **through the read capability**, as LoRS `lors_stat` does (our depot
//!   and LoCI accept it; ACCRE wants the manage key, so the manage cap is tried second);
//! * trim: drop mappings on a depot or that fail their probe, optionally freeing them
//!   (MANAGE DECR of the read count through the manage capability);
//! * refresh: MANAGE CHNG on the manage capability with the new lease, keeping the size.

use super::common::{now_s, run_parallel, Endpoints, ToolError, ToolErrorKind};
use crate::config::Config;
use crate::exnode::model::{DepotAddr, ExNode, Mapping};
use crate::proto::reply::ProbeReply;
use crate::proto::CapKind;
use std::sync::Mutex;

/// One mapping's health.
#[derive(Debug, Clone)]
pub enum Health {
    /// The depot answered the probe.
    Live(ProbeReply),
    /// It did not (message names the cause, never the capability).
    Dead(String),
}

/// Probes every mapping in parallel; results in mapping order.
pub fn probe_all(x: &ExNode, streams: usize, config: &Config) -> Vec<Health> {
    let endpoints = Endpoints::for_exnode(x, config);
    let out: Mutex<Vec<Option<Health>>> = Mutex::new(vec![None; x.mappings.len()]);
    run_parallel(x.mappings.len(), streams, |i| {
        let h = probe_one(&x.mappings[i], &endpoints);
        if let Ok(mut o) = out.lock() {
            o[i] = Some(h);
        }
    });
    out.into_inner()
        .unwrap_or_default()
        .into_iter()
        .map(|h| h.unwrap_or_else(|| Health::Dead("not probed".into())))
        .collect()
}

fn probe_one(m: &Mapping, endpoints: &Endpoints) -> Health {
    let mut last = "no read or manage capability".to_owned();
    for cap in [&m.read, &m.manage].into_iter().flatten() {
        let Some(depot) = endpoints.get(cap) else { continue };
        match depot.handle(cap).probe() {
            Ok(p) => return Health::Live(p),
            Err(e) => last = e.to_string(),
        }
    }
    Health::Dead(last)
}

/// Which mappings to drop.
#[derive(Debug, Clone)]
pub enum TrimSelect {
    /// Those on this depot (recorded address or capability authority).
    Depot(DepotAddr),
    /// Those whose probe fails.
    Dead,
}

/// What trim did.
#[derive(Debug, Default)]
pub struct TrimReport {
    /// Mappings removed from the exNode.
    pub removed: usize,
    /// Of those, allocations freed on their depot.
    pub freed: usize,
    /// Frees that failed: (depot, why). The mapping is removed anyway.
    pub free_failed: Vec<(String, String)>,
}

/// Drops the selected mappings from `x`; with `free`, DECRs each one's read count first.
pub fn trim(
    x: &mut ExNode,
    select: &TrimSelect,
    free: bool,
    streams: usize,
    config: &Config,
) -> TrimReport {
    let drop: Vec<bool> = match select {
        TrimSelect::Depot(d) => x.mappings.iter().map(|m| m.is_on(d)).collect(),
        TrimSelect::Dead => {
            probe_all(x, streams, config).iter().map(|h| matches!(h, Health::Dead(_))).collect()
        }
    };
    let mut report = TrimReport::default();
    if free {
        let endpoints = Endpoints::for_exnode(x, config);
        let results: Mutex<Vec<(String, Option<String>)>> = Mutex::new(Vec::new());
        let chosen: Vec<&Mapping> =
            x.mappings.iter().zip(&drop).filter(|(_, d)| **d).map(|(m, _)| m).collect();
        run_parallel(chosen.len(), streams, |i| {
            let m = chosen[i];
            let where_ = m.depot_addr().map_or_else(|| "?".into(), |d| d.to_string());
            let r = match m.manage.as_ref().and_then(|c| endpoints.get(c).map(|d| (c, d))) {
                Some((cap, depot)) => {
                    depot.handle(cap).decr(CapKind::Read).err().map(|e| e.to_string())
                }
                None => Some("no manage capability".into()),
            };
            if let Ok(mut v) = results.lock() {
                v.push((where_, r));
            }
        });
        for (depot, r) in results.into_inner().unwrap_or_default() {
            match r {
                None => report.freed += 1,
                Some(why) => report.free_failed.push((depot, why)),
            }
        }
    }
    let mut flags = drop.into_iter();
    let gone = x.delete_where(|_| flags.next().unwrap_or(false));
    report.removed = gone.len();
    report
}

/// What refresh did.
#[derive(Debug, Default)]
pub struct RefreshReport {
    /// Leases extended.
    pub extended: usize,
    /// Refused or unreachable: (mapping index, depot, why).
    pub refused: Vec<(usize, String, String)>,
}

/// Sets every mapping's lease to `duration_s` from now (MANAGE CHNG), keeping its size;
/// updates `expires_s` of those the depot accepted.
pub fn refresh(
    x: &mut ExNode,
    duration_s: i64,
    streams: usize,
    config: &Config,
) -> Result<RefreshReport, ToolError> {
    if duration_s <= 0 {
        return Err(ToolError::new(ToolErrorKind::Usage, "refresh needs a positive --duration"));
    }
    let endpoints = Endpoints::for_exnode(x, config);
    let results: Mutex<Vec<Option<Result<(), String>>>> = Mutex::new(vec![None; x.mappings.len()]);
    let now = now_s();
    run_parallel(x.mappings.len(), streams, |i| {
        let m = &x.mappings[i];
        let r = match m.manage.as_ref().and_then(|c| endpoints.get(c).map(|d| (c, d))) {
            None => Err("no manage capability".to_owned()),
            Some((cap, depot)) => {
                let h = depot.handle(cap);
                h.probe()
                    .and_then(|p| {
                        h.change(u64::try_from(p.max_size).unwrap_or(0), Some(duration_s), None)
                    })
                    .map_err(|e| e.to_string())
            }
        };
        if let Ok(mut v) = results.lock() {
            v[i] = Some(r);
        }
    });
    let mut report = RefreshReport::default();
    for (i, r) in results.into_inner().unwrap_or_default().into_iter().enumerate() {
        match r {
            Some(Ok(())) => {
                report.extended += 1;
                x.mappings[i].expires_s = Some(now.saturating_add(duration_s.unsigned_abs()));
            }
            Some(Err(why)) => {
                let depot =
                    x.mappings[i].depot_addr().map_or_else(|| "?".into(), |d| d.to_string());
                report.refused.push((i, depot, why));
            }
            None => report.refused.push((i, "?".into(), "not attempted".into())),
        }
    }
    Ok(report)
}
