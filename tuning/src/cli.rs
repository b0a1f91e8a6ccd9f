//! The command line and the assembly of each subcommand.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::baseline;
use crate::doctor::{self, Verdict};
use crate::figure::Figure;
use crate::report::Report;
use crate::spawn::{self, SpawnSpec, SpawnedDepot};
use crate::sweep::{self, Grid, Target};
use crate::units::parse_size;
use crate::wire;
use crate::workload::{self, Params};

/// Longest phase a command line may ask for: every loop has a time bound, and this bounds it.
const MAX_PHASE_S: u64 = 3600;

/// Throughput benchmarking, same-run baselines, sweeps and doctor for IBP depots.
#[derive(Parser, Debug)]
#[command(name = "ibp-bench", version)]
pub struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
    /// Print JSON instead of a table.
    #[arg(long, global = true)]
    json: bool,
    /// Append the figures as CSV rows (with a machine description) to FILE.
    #[arg(long, global = true, value_name = "FILE")]
    csv: Option<PathBuf>,
    /// No progress line on stderr.
    #[arg(long, short, global = true)]
    quiet: bool,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Check io_uring, memlock, O_DIRECT, free space and cores for a depot on DIR.
    Doctor {
        #[arg(long, value_name = "DIR")]
        dir: PathBuf,
    },
    /// The machine's own limits: loopback TCP, O_DIRECT write/read, 4 KiB random-read IOPS.
    Baseline(BaselineArgs),
    /// The ibp_perf workload (and more) against a depot.
    Run(RunArgs),
    /// Streams × block × queue depth (× shards when spawning); recommends the best setting.
    Sweep(SweepArgs),
}

#[derive(Args, Debug, Clone)]
struct BaselineArgs {
    /// Directory for the O_DIRECT file (use the depot's data filesystem).
    #[arg(long, value_name = "DIR")]
    dir: PathBuf,
    #[command(flatten)]
    shape: Shape,
    /// Disk operations in flight (8–32 is typical for SSDs).
    #[arg(long, default_value_t = 16)]
    qd: usize,
}

/// The size of a transfer and how it is cut.
#[derive(Args, Debug, Clone)]
struct Shape {
    /// TCP streams (connections) in parallel.
    #[arg(long, default_value_t = 1)]
    streams: usize,
    /// Bytes of the large transfer (1GiB, 256M, ...).
    #[arg(long, default_value = "256MiB", value_parser = parse_size)]
    size: u64,
    /// Bytes per command / per disk operation.
    #[arg(long, default_value = "1MiB", value_parser = parse_size)]
    block: u64,
    /// Upper bound on each timed phase, in seconds.
    #[arg(long = "duration-s", default_value_t = 10)]
    duration_s: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Kind {
    Disk,
    Ram,
}

/// Where the depot comes from.
#[derive(Args, Debug, Clone)]
struct DepotArgs {
    /// A running depot (its base port).
    #[arg(
        long,
        value_name = "HOST:PORT",
        required_unless_present = "spawn",
        conflicts_with = "spawn"
    )]
    depot: Option<String>,
    /// Start one of our depots with its data under DIR for this run, and stop it after.
    #[arg(long, value_name = "DIR")]
    spawn: Option<PathBuf>,
    /// With --spawn: also serve a RAM resource of this size as RID 2.
    #[arg(long, value_parser = parse_size, requires = "spawn")]
    ram: Option<u64>,
    /// With --spawn: shards (default: all cores).
    #[arg(long, requires = "spawn")]
    cores: Option<usize>,
    /// With --spawn: the resources' checksum block (default 64KiB; 4KiB suits small random
    /// I/O: a 4 KiB read then moves and verifies 4 KiB, not a whole 64 KiB block).
    #[arg(long, value_parser = parse_size, requires = "spawn", value_name = "SIZE")]
    checksum_block: Option<u64>,
    /// Resource id to allocate on (with --spawn: 1 = disk, 2 = RAM).
    #[arg(long, default_value = "1")]
    rid: String,
}

#[derive(Args, Debug, Clone)]
struct RunArgs {
    #[command(flatten)]
    depot: DepotArgs,
    /// A second depot: adds depot-to-depot copy (SEND).
    #[arg(long, value_name = "HOST:PORT")]
    depot2: Option<String>,
    #[command(flatten)]
    shape: Shape,
    /// Commands in flight per stream in the sequential phases (pipelining).
    #[arg(long, default_value_t = 2)]
    qd: usize,
    /// Make the data allocation soft (a write is acknowledged without fdatasync) instead of
    /// hard; the allocate/remove phase stays hard.
    #[arg(long)]
    soft: bool,
    /// Stripe the large transfer over this many allocations (1..=--streams), stream i on
    /// stripe i % allocs, spread evenly over the depot's shards. One allocation lives on one
    /// core of our depot: use one per core for a multi-core figure.
    #[arg(long, default_value_t = 1)]
    allocs: usize,
    /// Sizes of the small random read/write phases, comma-separated.
    #[arg(long, default_value = "4KiB,64KiB", value_delimiter = ',', value_parser = parse_size)]
    small: Vec<u64>,
    /// Also measure the machine's limits on DIR and report every figure as a ratio.
    #[arg(long, value_name = "DIR")]
    baseline: Option<PathBuf>,
    /// Disk queue depth of the baseline.
    #[arg(long, default_value_t = 16)]
    baseline_qd: usize,
    /// What the RID is, for choosing the limit a ratio compares with (default: disk, or what
    /// --spawn configured).
    #[arg(long, value_enum)]
    kind: Option<Kind>,
}

#[derive(Args, Debug, Clone)]
struct SweepArgs {
    #[command(flatten)]
    depot: DepotArgs,
    /// Bytes of the allocation each cell stores and loads.
    #[arg(long, default_value = "256MiB", value_parser = parse_size)]
    size: u64,
    #[arg(long, default_value = "1,2,4,8", value_delimiter = ',')]
    streams_list: Vec<usize>,
    #[arg(long, default_value = "256KiB,1MiB,4MiB", value_delimiter = ',', value_parser = parse_size)]
    block_list: Vec<u64>,
    #[arg(long, default_value = "1,2,4", value_delimiter = ',')]
    qd_list: Vec<usize>,
    /// With --spawn: shard counts to try.
    #[arg(long, value_delimiter = ',', requires = "spawn")]
    cores_list: Vec<usize>,
    /// Total time for the whole sweep, in seconds.
    #[arg(long = "budget-s", default_value_t = 120)]
    budget_s: u64,
}

/// Runs the subcommand; `Err` is printed as the reason and exits 1.
pub fn dispatch(cli: Cli) -> Result<ExitCode, String> {
    crate::progress::set_enabled(!cli.quiet);
    if let Some(csv) = &cli.csv {
        crate::report::check_csv(csv).map_err(|e| e.to_string())?;
    }
    let report = match cli.cmd {
        Cmd::Doctor { dir } => return Ok(run_doctor(&dir, cli.json)),
        Cmd::Baseline(args) => run_baseline(&args)?,
        Cmd::Run(args) => run_run(&args)?,
        Cmd::Sweep(args) => run_sweep(&args)?,
    };
    report.emit(cli.json, cli.csv.as_deref()).map_err(|e| format!("writing the report: {e}"))?;
    Ok(ExitCode::SUCCESS)
}

fn run_doctor(dir: &std::path::Path, json: bool) -> ExitCode {
    let checks = doctor::diagnose(dir);
    if json {
        println!("{}", serde_json::to_string_pretty(&checks).unwrap_or_default());
    } else {
        doctor::print_table(&checks);
    }
    if checks.iter().any(|c| c.verdict == Verdict::Fail) {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

fn phase_limit(duration_s: u64) -> Duration {
    Duration::from_secs(duration_s.clamp(1, MAX_PHASE_S))
}

fn check_shape(s: &Shape) -> Result<(), String> {
    if s.streams == 0 || s.streams > 256 {
        return Err("--streams must be 1..=256".into());
    }
    if s.block == 0 || s.block > 64 << 20 {
        return Err("--block must be 1B..=64MiB".into());
    }
    if s.size == 0 {
        return Err("--size must be > 0".into());
    }
    Ok(())
}

fn run_baseline(a: &BaselineArgs) -> Result<Report, String> {
    check_shape(&a.shape)?;
    let mut report = Report::new("baseline");
    let p = baseline::Params {
        dir: a.dir.clone(),
        streams: a.shape.streams,
        size_bytes: a.shape.size,
        block_bytes: a.shape.block,
        qd: a.qd,
        phase_limit: phase_limit(a.shape.duration_s),
    };
    report.figures = baseline::measure(&p).map_err(|e| format!("baseline: {e}"))?;
    Ok(report)
}

/// The spawn spec for `--spawn DIR`, sized so one shard's region holds an allocation of
/// `size` bytes.
fn spawn_spec(d: &DepotArgs, dir: &std::path::Path, size: u64) -> SpawnSpec {
    let cores = d.cores.unwrap_or(0);
    let shards = if cores == 0 { ibp_io::cores::available_cores() } else { cores } as u64;
    let per_shard = (size + (64 << 20)).next_multiple_of(1 << 20);
    SpawnSpec {
        dir: dir.to_path_buf(),
        cores,
        disk_capacity_bytes: (per_shard * shards).max(1 << 30),
        ram_capacity_bytes: d.ram,
        checksum_block_bytes: d.checksum_block,
    }
}

fn run_run(a: &RunArgs) -> Result<Report, String> {
    check_shape(&a.shape)?;
    if a.allocs == 0 || a.allocs > a.shape.streams {
        return Err(format!(
            "--allocs must be 1..=--streams ({}): each stripe needs a stream",
            a.shape.streams
        ));
    }
    let mut report = Report::new("run");
    let limit = phase_limit(a.shape.duration_s);
    let kind = a.kind.unwrap_or(if a.depot.spawn.is_some() && a.depot.rid == spawn::RAM_RID {
        Kind::Ram
    } else {
        Kind::Disk
    });
    let mut limits: Vec<Figure> = Vec::new();
    if let Some(dir) = &a.baseline {
        let tcp = baseline::tcp_loopback(a.shape.streams, a.shape.size, a.shape.block, limit)
            .map_err(|e| format!("baseline tcp: {e}"))?;
        let disk = baseline::disk(dir, a.shape.size, a.shape.block, a.baseline_qd, limit)
            .map_err(|e| format!("baseline disk: {e}"))?;
        limits.push(tcp);
        limits.extend(disk);
    }
    let spawned = match &a.depot.spawn {
        Some(dir) => Some(
            SpawnedDepot::start(&spawn_spec(&a.depot, dir, a.shape.size))
                .map_err(|e| format!("--spawn: {e}"))?,
        ),
        None => None,
    };
    let depot = match (&spawned, &a.depot.depot) {
        (Some(d), _) => {
            report.notes.push(format!("spawned ibp-depot (pid {}) on {}", d.pid(), d.addr));
            d.addr
        }
        (None, Some(addr)) => wire::resolve(addr).map_err(|e| format!("--depot {addr}: {e}"))?,
        (None, None) => return Err("give --depot HOST:PORT or --spawn DIR".into()),
    };
    let depot2 = match &a.depot2 {
        Some(addr) => Some(wire::resolve(addr).map_err(|e| format!("--depot2 {addr}: {e}"))?),
        None => None,
    };
    let p = Params {
        depot,
        depot2,
        rid: a.depot.rid.clone(),
        streams: a.shape.streams,
        size_bytes: a.shape.size,
        block_bytes: a.shape.block,
        qd: a.qd.clamp(1, 64),
        phase_limit: limit,
        small_sizes: a.small.clone(),
        bulk_only: false,
        soft: a.soft,
        allocs: a.allocs,
    };
    if a.soft {
        report.notes.push("the data allocation is soft: writes are not fdatasync'd".into());
    }
    let (mut figures, places) =
        workload::run(&p).map_err(|e| format!("run against {depot}: {e}"))?;
    if a.allocs > 1 {
        report.notes.push(format!(
            "the large transfer is striped over {} allocations of {}, on {places} distinct \
             depot ports (shards)",
            a.allocs,
            crate::units::format_size(a.shape.size.div_ceil(a.allocs as u64))
        ));
    }
    drop(spawned);
    if !limits.is_empty() {
        compare(&mut figures, &limits, kind);
        report.notes.push(format!(
            "ratios compare RID {} as a {} resource",
            a.depot.rid,
            if kind == Kind::Ram { "RAM" } else { "disk" }
        ));
    }
    report.figures = limits;
    report.figures.extend(figures);
    Ok(report)
}

/// Sets each depot figure's ratio to the limit it is held to.
fn compare(figures: &mut [Figure], limits: &[Figure], kind: Kind) {
    let find = |name: &str| limits.iter().find(|f| f.name == name);
    for f in figures.iter_mut() {
        let base = match (f.name.as_str(), kind) {
            ("store seq", Kind::Disk) => find("odirect write"),
            ("load seq", Kind::Disk) => find("odirect read"),
            ("store seq" | "load seq", Kind::Ram) => find("tcp loopback"),
            ("load rand 4KiB", Kind::Disk) => find("odirect 4KiB randread"),
            _ => None,
        };
        if let Some(base) = base {
            f.compare_with(base);
        }
    }
}

fn run_sweep(a: &SweepArgs) -> Result<Report, String> {
    let mut report = Report::new("sweep");
    let target = match (&a.depot.spawn, &a.depot.depot) {
        (Some(dir), _) => Target::Spawn(spawn_spec(&a.depot, dir, a.size)),
        (None, Some(addr)) => {
            Target::Given(wire::resolve(addr).map_err(|e| format!("--depot {addr}: {e}"))?)
        }
        (None, None) => return Err("give --depot HOST:PORT or --spawn DIR".into()),
    };
    let grid = Grid {
        streams: a.streams_list.iter().copied().filter(|&s| (1..=256).contains(&s)).collect(),
        blocks: a.block_list.iter().copied().filter(|&b| b > 0 && b <= 64 << 20).collect(),
        qds: a.qd_list.iter().copied().filter(|&q| (1..=64).contains(&q)).collect(),
        cores: a.cores_list.clone(),
        budget: Duration::from_secs(a.budget_s.clamp(1, 4 * MAX_PHASE_S)),
    };
    let base = Params {
        depot: std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
        depot2: None,
        rid: a.depot.rid.clone(),
        streams: 1,
        size_bytes: a.size,
        block_bytes: 1 << 20,
        qd: 1,
        phase_limit: Duration::from_secs(1),
        small_sizes: Vec::new(),
        bulk_only: true,
        soft: false,
        allocs: 1,
    };
    sweep::sweep(&grid, &target, &base, &mut report)?;
    Ok(report)
}
