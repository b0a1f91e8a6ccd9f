//! `ibp-bench`: throughput benchmarking, same-run baselines, sweeps and a doctor for IBP
//! depots (DESIGN.md, "tuning/").
//!
//! ```text
//! ibp-bench doctor   --dir DIR
//! ibp-bench baseline --dir DIR [--streams N] [--size S] [--block B] [--qd Q]
//! ibp-bench run      (--depot HOST:PORT | --spawn DIR [--ram SIZE]) [--baseline DIR] ...
//! ibp-bench sweep    (--depot HOST:PORT | --spawn DIR [--cores-list 1,2]) [--budget-s T] ...
//! ```
//!
//! Figures are MB/s (10^6 bytes) and ops/s with p50/p99/p999 latency; with a baseline, each
//! depot figure is also a ratio to the machine's own limit measured in the same run. Human
//! tables by default, `--json` for machines, `--csv FILE` appends rows with a machine
//! description; a progress line goes to stderr.
//!
//! # Layout
//! * `cli`: the command line and how each subcommand is assembled from the modules below.
//! * `baseline`: loopback TCP, O_DIRECT sequential write/read and 4 KiB random-read IOPS.
//! * `workload`: the `run` phases against a depot.
//! * `wire`: the minimal private connection helper over `ibp_client::proto`.
//! * `spawn`: starting and stopping a depot of ours for a run.
//! * `sweep`: the parameter grid.
//! * `doctor`: machine checks with fixes.
//! * `figure`, `report`, `progress`, `units`, `rng`: measurement and output plumbing.

mod baseline;
mod cli;
mod doctor;
mod figure;
mod progress;
mod report;
mod rng;
mod spawn;
mod sweep;
mod units;
mod wire;
mod workload;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let args = cli::Cli::parse();
    match cli::dispatch(args) {
        Ok(code) => code,
        Err(e) => {
            progress::clear();
            eprintln!("ibp-bench: {e}");
            ExitCode::FAILURE
        }
    }
}
