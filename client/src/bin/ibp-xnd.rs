//! `ibp-xnd`: the exNode tools (LoRS `lors_upload`, `lors_download`, `lors_augment`,
//! `lors_trim`, `lors_refresh`, `lors_ls`/`lors_stat`) over our client library.
//!
//! Exit codes: 0 success; 1 I/O or network failure; 2 usage (bad arguments, not enough
//! depots); 3 the exNode file is malformed; 4 incomplete (ranges with no live replica,
//! copies not placed, leases refused). Capabilities never appear in messages; they are
//! printed only inside the exNode file and the `--json` exNode dump the user asked for.

use clap::{Args, Parser, Subcommand};
use ibp_client::config::Config;
use ibp_client::exnode::json::{from_json, to_json};
use ibp_client::exnode::tools::augment::{augment, AugmentOptions};
use ibp_client::exnode::tools::common::{fmt_ranges, now_s, parse_depot_list};
use ibp_client::exnode::tools::download::{download, DownloadOptions};
use ibp_client::exnode::tools::maintain::{probe_all, refresh, trim, Health, TrimSelect};
use ibp_client::exnode::tools::upload::{upload, UploadOptions};
use ibp_client::exnode::tools::{ToolError, ToolErrorKind};
use ibp_client::exnode::{
    from_xml, to_xml, ChecksumAlgorithm, DepotAddr, ExNode, Query, XmlLimits,
};
use ibp_client::proto::request::Reliability;
use ibp_client::units::{format_size, parse_duration, parse_size};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::json;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

#[derive(Parser)]
#[command(
    name = "ibp-xnd",
    version,
    about = "exNode tools: upload, download, augment, trim, refresh, ls, stat"
)]
struct Cli {
    /// Machine-readable output on stdout.
    #[arg(long, global = true)]
    json: bool,
    /// Socket read/write timeout in seconds: a replica silent for longer counts as slow.
    #[arg(long, global = true, default_value_t = 30)]
    io_timeout: u64,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Args, Clone)]
struct DepotArgs {
    /// Depots, `host:port,host:port`.
    #[arg(long)]
    depots: Option<String>,
    /// File with one `host:port [label]` per line, `#` comments.
    #[arg(long)]
    depot_file: Option<PathBuf>,
}

#[derive(Subcommand)]
enum Cmd {
    /// Stripe FILE over depots with replicas and end-to-end checksums; write its exNode.
    Upload(UploadArgs),
    /// Fetch the file an exNode describes, verified, from the fastest live replicas.
    Download(DownloadArgs),
    /// Add replicas until every range has COPIES live ones (load+store fallback path).
    Augment(AugmentArgs),
    /// Drop mappings on a depot (--depot) or that fail their probe (--dead).
    Trim(TrimArgs),
    /// Set every lease to DURATION from now (MANAGE CHNG); report the refused ones.
    Refresh(RefreshArgs),
    /// List mappings, replica counts and coverage gaps (no network).
    Ls(LsArgs),
    /// Like ls, plus a probe of every mapping through its read capability.
    Stat(StatArgs),
    /// Print the exNode as JSON, or convert JSON back to XML with --to-xml.
    Convert(ConvertArgs),
}

#[derive(Args)]
struct UploadArgs {
    /// The file to upload.
    file: PathBuf,
    #[command(flatten)]
    depots: DepotArgs,
    /// Replicas of every block, on distinct depots.
    #[arg(long, default_value_t = 1)]
    copies: usize,
    /// Bytes per block (mapping).
    #[arg(long, default_value = "4MiB")]
    block: String,
    /// Parallel streams.
    /// Parallel streams (each its own connections).
    #[arg(long, default_value_t = 4)]
    streams: usize,
    /// Lease of every allocation (`1d`, `2h`, …).
    #[arg(long, default_value = "1d")]
    duration: String,
    /// End-to-end digest: crc32 or md5.
    #[arg(long, default_value = "crc32")]
    checksum: String,
    /// Bytes per end-to-end digest.
    #[arg(long, default_value = "1MiB")]
    e2e_block: String,
    /// Soft (revocable) allocations instead of hard.
    #[arg(long)]
    soft: bool,
    /// Where to write the exNode (default FILE.xnd).
    #[arg(long, short)]
    output: Option<PathBuf>,
}

#[derive(Args)]
struct DownloadArgs {
    /// The exNode (LoRS .xnd XML, or its JSON form).
    xnd: PathBuf,
    /// Where to write the file.
    file: PathBuf,
    /// Parallel streams (each its own connections).
    #[arg(long, default_value_t = 4)]
    streams: usize,
    /// Keep the verified blocks of an existing partial FILE.
    #[arg(long)]
    resume: bool,
    /// Depots to read from first, in order (`host:port,...`).
    #[arg(long)]
    prefer: Option<String>,
    /// Largest piece fetched at once.
    #[arg(long, default_value = "4MiB")]
    unit: String,
}

#[derive(Args)]
struct AugmentArgs {
    /// The exNode (LoRS .xnd XML, or its JSON form).
    xnd: PathBuf,
    #[command(flatten)]
    depots: DepotArgs,
    /// Live replicas wanted per range.
    #[arg(long)]
    copies: usize,
    /// Parallel streams (each its own connections).
    #[arg(long, default_value_t = 4)]
    streams: usize,
    #[arg(long, default_value = "1d")]
    duration: String,
    /// Write here instead of updating XND in place.
    /// Write the exNode here instead of updating XND in place.
    #[arg(long, short)]
    output: Option<PathBuf>,
}

#[derive(Args)]
struct TrimArgs {
    /// The exNode (LoRS .xnd XML, or its JSON form).
    xnd: PathBuf,
    /// Drop the mappings on this depot (host:port).
    #[arg(long, conflicts_with = "dead", required_unless_present = "dead")]
    depot: Option<String>,
    /// Drop the mappings whose probe fails.
    #[arg(long)]
    dead: bool,
    /// Also free the allocations (MANAGE DECR of the read count).
    #[arg(long)]
    free: bool,
    /// Parallel streams (each its own connections).
    #[arg(long, default_value_t = 4)]
    streams: usize,
    /// Write the exNode here instead of updating XND in place.
    #[arg(long, short)]
    output: Option<PathBuf>,
}

#[derive(Args)]
struct RefreshArgs {
    /// The exNode (LoRS .xnd XML, or its JSON form).
    xnd: PathBuf,
    /// New lease from now (`30d`, `12h`, ...).
    #[arg(long)]
    duration: String,
    /// Parallel streams (each its own connections).
    #[arg(long, default_value_t = 4)]
    streams: usize,
    /// Write the exNode here instead of updating XND in place.
    #[arg(long, short)]
    output: Option<PathBuf>,
}

#[derive(Args)]
struct LsArgs {
    /// The exNode (LoRS .xnd XML, or its JSON form).
    xnd: PathBuf,
}

#[derive(Args)]
struct StatArgs {
    /// The exNode (LoRS .xnd XML, or its JSON form).
    xnd: PathBuf,
    /// Parallel streams (each its own connections).
    #[arg(long, default_value_t = 8)]
    streams: usize,
}

#[derive(Args)]
struct ConvertArgs {
    /// The exNode (LoRS .xnd XML, or its JSON form).
    xnd: PathBuf,
    /// Read a JSON exNode and print it as XML.
    #[arg(long)]
    to_xml: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let config =
        Config { io_timeout: Duration::from_secs(cli.io_timeout.max(1)), ..Config::default() };
    match run(&cli, &config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            if cli.json {
                println!(
                    "{}",
                    json!({"ok": false, "error": e.message, "exit": e.kind.exit_code()})
                );
            }
            eprintln!("ibp-xnd: {e}");
            ExitCode::from(u8::try_from(e.kind.exit_code()).unwrap_or(1))
        }
    }
}

fn usage(msg: impl Into<String>) -> ToolError {
    ToolError::new(ToolErrorKind::Usage, msg)
}

fn depots_of(a: &DepotArgs) -> Result<Vec<DepotAddr>, ToolError> {
    let mut text = a.depots.clone().unwrap_or_default();
    if let Some(path) = &a.depot_file {
        let body = std::fs::read_to_string(path).map_err(|e| {
            ToolError::new(ToolErrorKind::Io, format!("cannot read {}: {e}", path.display()))
        })?;
        text.push('\n');
        text.push_str(&body);
    }
    let list = parse_depot_list(&text)?;
    if list.is_empty() {
        return Err(usage("no depots: give --depots host:port,... or --depot-file FILE"));
    }
    Ok(list)
}

fn size_arg(text: &str, what: &str) -> Result<u64, ToolError> {
    parse_size(text).map_err(|e| usage(format!("{what}: {}", e.0)))
}

fn duration_arg(text: &str) -> Result<i64, ToolError> {
    parse_duration(text).map_err(|e| usage(format!("duration: {}", e.0)))
}

fn load_exnode(path: &Path) -> Result<ExNode, ToolError> {
    let limits = XmlLimits::default();
    let file = std::fs::File::open(path).map_err(|e| {
        ToolError::new(ToolErrorKind::Io, format!("cannot open {}: {e}", path.display()))
    })?;
    let bad =
        |m: String| ToolError::new(ToolErrorKind::BadExnode, format!("{}: {m}", path.display()));
    let text = ibp_client::exnode::xml::read_bounded(file, limits.max_input_bytes)
        .map_err(|e| bad(e.to_string()))?;
    if text.trim_start().starts_with('{') {
        from_json(&text, &limits).map_err(|e| bad(e.to_string()))
    } else {
        from_xml(&text, &limits).map_err(|e| bad(e.to_string()))
    }
}

/// Writes atomically (temporary file, then rename) so a crash never leaves half an exNode.
fn save_exnode(x: &ExNode, path: &Path) -> Result<(), ToolError> {
    let io = |e: std::io::Error| {
        ToolError::new(ToolErrorKind::Io, format!("cannot write {}: {e}", path.display()))
    };
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    std::fs::write(&tmp, to_xml(x)).map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)
}

fn bar(total: u64, json: bool) -> ProgressBar {
    if json || !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let pb = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
    if let Ok(style) =
        ProgressStyle::with_template("{bar:40} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}")
    {
        pb.set_style(style);
    }
    pb
}

fn rate(bytes: u64, secs: f64) -> String {
    format!("{}/s", format_size((bytes as f64 / secs.max(1e-9)) as u64))
}

fn run(cli: &Cli, config: &Config) -> Result<(), ToolError> {
    match &cli.cmd {
        Cmd::Upload(a) => cmd_upload(a, cli.json, config),
        Cmd::Download(a) => cmd_download(a, cli.json, config),
        Cmd::Augment(a) => cmd_augment(a, cli.json, config),
        Cmd::Trim(a) => cmd_trim(a, cli.json, config),
        Cmd::Refresh(a) => cmd_refresh(a, cli.json, config),
        Cmd::Ls(a) => cmd_ls(a, cli.json, config),
        Cmd::Stat(a) => cmd_stat(a, cli.json, config),
        Cmd::Convert(a) => cmd_convert(a, cli.json, config),
    }
}

fn cmd_upload(a: &UploadArgs, json: bool, config: &Config) -> Result<(), ToolError> {
    let UploadArgs {
        file,
        depots,
        copies,
        block,
        streams,
        duration,
        checksum,
        e2e_block,
        soft,
        output,
    } = a;
    let opts = UploadOptions {
        depots: depots_of(depots)?,
        copies: *copies,
        block_bytes: size_arg(block, "block")?,
        streams: *streams,
        duration_s: duration_arg(duration)?,
        reliability: if *soft { Reliability::Soft } else { Reliability::Hard },
        checksum: ChecksumAlgorithm::from_word(checksum)
            .ok_or_else(|| usage("checksum must be crc32 or md5"))?,
        e2e_block_bytes: size_arg(e2e_block, "e2e block")?,
        config: config.clone(),
    };
    let size = std::fs::metadata(file).map(|m| m.len()).unwrap_or(0);
    let pb = bar(size.saturating_mul(*copies as u64), json);
    let start = Instant::now();
    let report = upload(file, &opts, &|n| pb.inc(n))?;
    pb.finish_and_clear();
    let secs = start.elapsed().as_secs_f64();
    let out = output.clone().unwrap_or_else(|| {
        let mut p = file.as_os_str().to_owned();
        p.push(".xnd");
        PathBuf::from(p)
    });
    save_exnode(&report.exnode, &out)?;
    for (depot, why) in &report.failovers {
        eprintln!("ibp-xnd: store on {depot} failed, used another depot: {why}");
    }
    if json {
        println!(
            "{}",
            json!({"ok": report.short.is_empty(), "exnode": out, "bytes": size,
                    "mappings": report.exnode.mappings.len(), "seconds": secs,
                    "short": report.short.iter().map(|(r, n)| json!({"start": r.start, "end": r.end, "copies": n})).collect::<Vec<_>>()})
        );
    } else {
        println!(
            "uploaded {} in {} mappings ({} copies) in {secs:.2} s ({}); exNode {}",
            format_size(size),
            report.exnode.mappings.len(),
            copies,
            rate(size, secs),
            out.display()
        );
    }
    if !report.short.is_empty() {
        let ranges: Vec<_> = report.short.iter().map(|(r, _)| r.clone()).collect();
        return Err(ToolError::new(
            ToolErrorKind::Incomplete,
            format!("fewer than {copies} copies placed for logical bytes {}", fmt_ranges(&ranges)),
        ));
    }
    Ok(())
}

fn cmd_download(a: &DownloadArgs, json: bool, config: &Config) -> Result<(), ToolError> {
    let DownloadArgs { xnd, file, streams, resume, prefer, unit } = a;
    let x = load_exnode(xnd)?;
    let opts = DownloadOptions {
        streams: *streams,
        unit_bytes: size_arg(unit, "unit")?,
        resume: *resume,
        prefer: match prefer {
            Some(list) => parse_depot_list(list)?,
            None => Vec::new(),
        },
        config: config.clone(),
    };
    let pb = bar(x.size(), json);
    let start = Instant::now();
    let result = download(&x, file, &opts, &|n| pb.inc(n));
    pb.finish_and_clear();
    let report = result?;
    let secs = start.elapsed().as_secs_f64();
    for f in &report.failovers {
        let what = if f.bad_checksum { "served bad data" } else { "failed" };
        eprintln!(
            "ibp-xnd: replica on {} {what} for logical bytes {}..{}, used another replica: {}",
            f.depot, f.range.start, f.range.end, f.why
        );
    }
    if json {
        println!(
            "{}",
            json!({"ok": true, "bytes": x.size(), "fetched": report.fetched_bytes,
                    "kept": report.kept_bytes, "seconds": secs,
                    "dead_depots": report.dead_depots.iter().map(|d| d.to_string()).collect::<Vec<_>>(),
                    "failovers": report.failovers.iter().map(|f| json!({"start": f.range.start, "end": f.range.end,
                        "depot": f.depot.to_string(), "bad_checksum": f.bad_checksum, "why": f.why})).collect::<Vec<_>>()})
        );
    } else {
        println!(
            "downloaded {} to {} in {secs:.2} s ({}); {} kept, {} fail-overs",
            format_size(x.size()),
            file.display(),
            rate(report.fetched_bytes, secs),
            format_size(report.kept_bytes),
            report.failovers.len()
        );
    }
    Ok(())
}

fn cmd_augment(a: &AugmentArgs, json: bool, config: &Config) -> Result<(), ToolError> {
    let AugmentArgs { xnd, depots, copies, streams, duration, output } = a;
    let mut x = load_exnode(xnd)?;
    let opts = AugmentOptions {
        depots: depots_of(depots)?,
        copies: *copies,
        streams: *streams,
        duration_s: duration_arg(duration)?,
        config: config.clone(),
    };
    let pb = bar(x.size(), json);
    let report = augment(&mut x, &opts, &|n| pb.inc(n))?;
    pb.finish_and_clear();
    save_exnode(&x, output.as_deref().unwrap_or(xnd))?;
    if json {
        println!(
            "{}",
            json!({"ok": report.short.is_empty(), "added": report.added,
                    "short": report.short.iter().map(|(r, n)| json!({"start": r.start, "end": r.end, "copies": n})).collect::<Vec<_>>()})
        );
    } else {
        println!("added {} replicas", report.added);
    }
    if !report.short.is_empty() {
        let ranges: Vec<_> = report.short.iter().map(|(r, _)| r.clone()).collect();
        return Err(ToolError::new(
            ToolErrorKind::Incomplete,
            format!(
                "still fewer than {copies} live copies of logical bytes {}",
                fmt_ranges(&ranges)
            ),
        ));
    }
    Ok(())
}

fn cmd_trim(a: &TrimArgs, json: bool, config: &Config) -> Result<(), ToolError> {
    let TrimArgs { xnd, depot, dead, free, streams, output } = a;
    let mut x = load_exnode(xnd)?;
    let select = match (depot, dead) {
        (Some(d), _) => TrimSelect::Depot(
            DepotAddr::parse(d).ok_or_else(|| usage("--depot must be host:port"))?,
        ),
        (None, _) => TrimSelect::Dead,
    };
    let report = trim(&mut x, &select, *free, *streams, config);
    save_exnode(&x, output.as_deref().unwrap_or(xnd))?;
    for (d, why) in &report.free_failed {
        eprintln!("ibp-xnd: could not free an allocation on {d}: {why}");
    }
    if json {
        println!(
            "{}",
            json!({"ok": true, "removed": report.removed, "freed": report.freed,
                    "free_failed": report.free_failed.len(), "mappings_left": x.mappings.len()})
        );
    } else {
        println!(
            "removed {} mappings ({} freed); {} left",
            report.removed,
            report.freed,
            x.mappings.len()
        );
    }
    Ok(())
}

fn cmd_refresh(a: &RefreshArgs, json: bool, config: &Config) -> Result<(), ToolError> {
    let RefreshArgs { xnd, duration, streams, output } = a;
    let mut x = load_exnode(xnd)?;
    let report = refresh(&mut x, duration_arg(duration)?, *streams, config)?;
    save_exnode(&x, output.as_deref().unwrap_or(xnd))?;
    for (i, d, why) in &report.refused {
        eprintln!("ibp-xnd: mapping {i} on {d}: lease not extended: {why}");
    }
    if json {
        println!(
            "{}",
            json!({"ok": report.refused.is_empty(), "extended": report.extended,
                    "refused": report.refused.iter().map(|(i, d, w)| json!({"mapping": i, "depot": d, "why": w})).collect::<Vec<_>>()})
        );
    } else {
        println!("extended {} leases, {} refused", report.extended, report.refused.len());
    }
    if !report.refused.is_empty() {
        return Err(ToolError::new(
            ToolErrorKind::Incomplete,
            format!("{} leases were not extended", report.refused.len()),
        ));
    }
    Ok(())
}

fn cmd_ls(a: &LsArgs, json: bool, _config: &Config) -> Result<(), ToolError> {
    let LsArgs { xnd } = a;
    let x = load_exnode(xnd)?;
    list(&x, None, json);
    Ok(())
}

fn cmd_stat(a: &StatArgs, json: bool, config: &Config) -> Result<(), ToolError> {
    let StatArgs { xnd, streams } = a;
    let x = load_exnode(xnd)?;
    let health = probe_all(&x, *streams, config);
    list(&x, Some(&health), json);
    Ok(())
}

fn cmd_convert(a: &ConvertArgs, _json: bool, _config: &Config) -> Result<(), ToolError> {
    let ConvertArgs { xnd, to_xml: xml } = a;
    let x = load_exnode(xnd)?;
    if *xml {
        print!("{}", to_xml(&x));
    } else {
        to_json(&x, std::io::stdout().lock())
            .map_err(|e| ToolError::new(ToolErrorKind::Io, format!("cannot write JSON: {e}")))?;
        println!();
    }
    Ok(())
}

/// ls / stat output. Health (stat) adds per-mapping probe results and live replica counts.
fn list(x: &ExNode, health: Option<&[Health]>, as_json: bool) {
    let now = now_s();
    let dead: std::collections::BTreeSet<usize> = health
        .map(|h| {
            h.iter()
                .enumerate()
                .filter(|(_, h)| matches!(h, Health::Dead(_)))
                .map(|(i, _)| i)
                .collect()
        })
        .unwrap_or_default();
    let mut live_x = x.clone();
    let mut i = 0;
    live_x.mappings.retain(|_| {
        i += 1;
        !dead.contains(&(i - 1))
    });
    let q = Query::all().live(now, Default::default());
    let spans = live_x.replica_spans(&q);
    let gaps = live_x.coverage_gaps(&q);
    if as_json {
        let maps: Vec<_> = x.iter().map(|(i, m)| {
            let mut v = json!({"index": i, "offset": m.logical_offset, "length": m.logical_length,
                "depot": m.depot_addr().map(|d| d.to_string()), "expires": m.expires_s,
                "checksum": m.checksum.as_ref().map(|c| c.algorithm.word())});
            if let Some(h) = health {
                v["health"] = match &h[i] {
                    Health::Live(p) => json!({"live": true, "size": p.size, "seconds_left": p.seconds_left}),
                    Health::Dead(why) => json!({"live": false, "why": why}),
                };
            }
            v
        }).collect();
        println!(
            "{}",
            json!({"filename": x.filename(), "size": x.size(), "mappings": maps,
            "replicas": spans.iter().map(|s| json!({"start": s.range.start, "end": s.range.end, "copies": s.count})).collect::<Vec<_>>(),
            "gaps": gaps.iter().map(|g| json!({"start": g.start, "end": g.end})).collect::<Vec<_>>()})
        );
        return;
    }
    println!(
        "{}  {} bytes  {} mappings",
        x.filename().unwrap_or("(unnamed)"),
        x.size(),
        x.mappings.len()
    );
    for (i, m) in x.iter() {
        let lease = m.expires_s.map_or_else(
            || "lease ?".into(),
            |e| {
                if e > now {
                    format!("lease {}s left", e - now)
                } else {
                    "EXPIRED".into()
                }
            },
        );
        let h = match health.map(|h| &h[i]) {
            None => String::new(),
            Some(Health::Live(p)) => format!("  live size={} left={}s", p.size, p.seconds_left),
            Some(Health::Dead(why)) => format!("  DEAD ({why})"),
        };
        println!(
            "  [{i:>4}] {:>12}..{:<12} {:>22}  {lease}{h}",
            m.logical_offset,
            m.logical_end(),
            m.depot_addr().map_or_else(|| "?".into(), |d| d.to_string())
        );
    }
    for s in &spans {
        println!("  replicas {:>12}..{:<12} {}", s.range.start, s.range.end, s.count);
    }
    if gaps.is_empty() {
        println!("  no coverage gaps");
    } else {
        println!("  GAPS (no live replica): {}", fmt_ranges(&gaps));
    }
}
