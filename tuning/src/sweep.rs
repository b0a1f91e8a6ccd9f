//! `sweep`: streams × block size × queue depth (× shards when spawning), sequential store and
//! load only, each cell given an equal share of a total time budget; prints every cell and
//! recommends the setting with the best mean of store and load MB/s.

use std::time::{Duration, Instant};

use crate::figure::Figure;
use crate::report::Report;
use crate::spawn::{SpawnSpec, SpawnedDepot};
use crate::workload::{self, Params};

/// The grid and its budget.
#[derive(Clone, Debug)]
pub struct Grid {
    pub streams: Vec<usize>,
    pub blocks: Vec<u64>,
    pub qds: Vec<usize>,
    /// Shard counts to spawn with; empty when the depot is given.
    pub cores: Vec<usize>,
    pub budget: Duration,
}

/// Where the depot comes from.
pub enum Target {
    Given(std::net::SocketAddr),
    Spawn(SpawnSpec),
}

/// Runs every cell within the budget and appends figures and the recommendation to `report`.
pub fn sweep(
    grid: &Grid,
    target: &Target,
    base: &Params,
    report: &mut Report,
) -> Result<(), String> {
    let cores: Vec<Option<usize>> = match target {
        Target::Given(_) => vec![None],
        Target::Spawn(_) if grid.cores.is_empty() => vec![Some(0)],
        Target::Spawn(_) => grid.cores.iter().map(|&c| Some(c)).collect(),
    };
    let cells = cores.len() * grid.streams.len() * grid.blocks.len() * grid.qds.len();
    // Two timed phases per cell, and a little slack for allocation and start-up.
    let phase_limit = (grid.budget / (cells.max(1) as u32 * 3)).max(Duration::from_millis(200));
    let deadline = Instant::now() + grid.budget;
    let mut best: Option<(f64, String)> = None;
    'all: for core_count in cores {
        let (_depot, addr) = match (target, core_count) {
            (Target::Spawn(spec), c) => {
                let spec = SpawnSpec { cores: c.unwrap_or(spec.cores), ..spec.clone() };
                let depot = SpawnedDepot::start(&spec).map_err(|e| e.to_string())?;
                let addr = depot.addr;
                (Some(depot), addr)
            }
            (Target::Given(addr), _) => (None, *addr),
        };
        for &streams in &grid.streams {
            for &block in &grid.blocks {
                for &qd in &grid.qds {
                    if Instant::now() >= deadline {
                        report.notes.push("sweep budget spent before every cell ran".into());
                        break 'all;
                    }
                    let p = Params {
                        depot: addr,
                        streams,
                        block_bytes: block,
                        qd,
                        phase_limit,
                        bulk_only: true,
                        ..base.clone()
                    };
                    let (mut figures, _) = workload::run(&p).map_err(|e| {
                        format!("cell streams={streams} block={block} qd={qd}: {e}")
                    })?;
                    let label = match core_count {
                        Some(c) if c > 0 => format!(" cores={c}"),
                        _ => String::new(),
                    };
                    for f in &mut figures {
                        f.name.push_str(&label);
                    }
                    let score = mean_rate(&figures);
                    let desc = format!(
                        "--streams {streams} --block {} --qd {qd}{label}",
                        crate::units::format_size(block)
                    );
                    if best.as_ref().is_none_or(|(b, _)| score > *b) {
                        best = Some((score, desc));
                    }
                    report.figures.extend(figures);
                }
            }
        }
    }
    if let Some((score, desc)) = best {
        report.notes.push(format!("best: {desc} (mean of store and load {score:.0} MB/s)"));
    }
    Ok(())
}

fn mean_rate(figures: &[Figure]) -> f64 {
    let rates: Vec<f64> = figures.iter().filter_map(|f| f.mb_per_s).collect();
    if rates.is_empty() {
        0.0
    } else {
        rates.iter().sum::<f64>() / rates.len() as f64
    }
}
