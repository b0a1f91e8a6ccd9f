//! One function per subcommand: parse capabilities (or `@FILE`), call the library, print.
//! The subcommands for the rest of the 1.4 command set, and the `--chksum` transfers, live in
//! `ext`.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

use ibp_client::parallel::{self, ParallelConfig, TransferReport};
use ibp_client::proto::request::{AllocType, Reliability};
use ibp_client::proto::{CapKind, Capability};
use ibp_client::units::{format_duration, format_size};
use ibp_client::{AllocCaps, Config, Depot, Error, McopyMethod, McopyPlan, McopyStrategy};
use serde_json::json;

use crate::args::{
    AllocateArgs, ChangeArgs, Cli, Command, CopyArgs, GetArgs, McopyArgs, PutArgs, RefArgs,
    StatusArgs, StrategyArg, TransferArgs,
};
use crate::ext;
use crate::output::{
    client_exit_code, error_json, print_json, progress_bar, rate, spinner, Failure,
};

/// Longest capability file we read (a capability is under 1 KiB).
const MAX_CAP_FILE_BYTES: u64 = 4096;
/// Parallel streams of `put` and `get` when `--streams` is not given.
const DEFAULT_STREAMS: usize = 4;

pub(crate) struct Ctx {
    pub(crate) json: bool,
    /// Progress bars allowed (not --quiet, not --json).
    pub(crate) progress: bool,
    pub(crate) config: Config,
}

/// Runs the parsed command line.
pub fn run(cli: Cli) -> Result<(), Failure> {
    if cli.timeout <= 0 || cli.connect_timeout <= 0 {
        return Err(Failure::BadInput("timeouts must be positive durations".into()));
    }
    let config = Config {
        io_timeout: Duration::from_secs(cli.timeout.unsigned_abs()),
        connect_timeout: Duration::from_secs(cli.connect_timeout.unsigned_abs()),
        ..Config::default()
    };
    let ctx = Ctx { json: cli.json, progress: !cli.quiet && !cli.json, config };
    match cli.command {
        Command::Allocate(args) => allocate(&ctx, args),
        Command::Put(args) => put(&ctx, args),
        Command::Get(args) => get(&ctx, args),
        Command::Probe { cap } => probe(&ctx, &cap),
        Command::Change(args) => change(&ctx, args),
        Command::Truncate { cap, size } => {
            manage_simple(&ctx, &cap, "truncate", |d, c| d.handle(c).truncate(size))
        }
        Command::Incr(args) => refcount(&ctx, args, true),
        Command::Decr(args) => refcount(&ctx, args, false),
        Command::Rm { cap } => {
            manage_simple(&ctx, &cap, "rm", |d, c| d.handle(c).decr(CapKind::Read))
        }
        Command::Status(args) => status(&ctx, args),
        Command::Copy(args) => copy(&ctx, args),
        Command::Mcopy(args) => mcopy(&ctx, args),
        Command::Alias(cmd) => ext::alias(&ctx, cmd),
        Command::Rename { cap, save } => ext::rename(&ctx, &cap, save.as_deref()),
        Command::Split(args) => ext::split(&ctx, args),
        Command::Merge { master, child } => ext::merge(&ctx, &master, &child),
        Command::Chksum(cmd) => ext::chksum(&ctx, cmd),
    }
}

/// Reads a capability from the argument, or from a file when it starts with `@`.
pub(crate) fn capability(arg: &str, kind: Option<CapKind>) -> Result<Capability, Failure> {
    let text = match arg.strip_prefix('@') {
        Some(path) => read_cap_file(Path::new(path))?,
        None => arg.to_owned(),
    };
    let cap = Capability::parse(text.trim()).map_err(Error::from)?;
    match kind {
        Some(kind) if cap.kind != kind => {
            Err(Error::WrongCapKind { expected: kind, actual: cap.kind }.into())
        }
        _ => Ok(cap),
    }
}

fn read_cap_file(path: &Path) -> Result<String, Failure> {
    let local = |e: std::io::Error| Failure::LocalFile(format!("{}: {e}", path.display()));
    let len = std::fs::metadata(path).map_err(local)?.len();
    if len > MAX_CAP_FILE_BYTES {
        return Err(Failure::BadInput(format!("{}: too large for a capability", path.display())));
    }
    std::fs::read_to_string(path).map_err(local)
}

pub(crate) fn depot_for(ctx: &Ctx, cap: &Capability) -> Depot {
    Depot::for_capability(cap, ctx.config.clone())
}

pub(crate) fn reliability(soft: bool, hard: bool) -> Option<Reliability> {
    match (soft, hard) {
        (true, _) => Some(Reliability::Soft),
        (_, true) => Some(Reliability::Hard),
        _ => None,
    }
}

fn allocate(ctx: &Ctx, args: AllocateArgs) -> Result<(), Failure> {
    let depot = Depot::parse(&args.depot, ctx.config.clone())?;
    let rel = reliability(args.soft, args.hard).unwrap_or(Reliability::Hard);
    let caps =
        depot.allocate_with(args.size, args.duration, rel, args.rid.as_deref(), args.chksum)?;
    let mut about = json!({ "size": args.size, "duration_s": args.duration });
    if args.save.is_none() {
        about["reliability"] = json!(if rel == Reliability::Hard { "hard" } else { "soft" });
    }
    print_caps(ctx, &caps, args.save.as_deref(), about)
}

/// Prints three new capabilities (or saves them to PREFIX.read/.write/.manage, mode 0600),
/// with the fields of `about` added to the JSON object.
pub(crate) fn print_caps(
    ctx: &Ctx,
    caps: &AllocCaps,
    save: Option<&Path>,
    mut about: serde_json::Value,
) -> Result<(), Failure> {
    let named = [("read", &caps.read), ("write", &caps.write), ("manage", &caps.manage)];
    if let Some(prefix) = save {
        let mut paths = Vec::new();
        for (name, cap) in named {
            let path = prefix.with_extension(name);
            save_secret(&path, &cap.to_url())?;
            paths.push(path.display().to_string());
        }
        if ctx.json {
            about["saved"] = json!(paths);
            print_json(&about);
        } else {
            println!("capabilities saved to {}", paths.join(", "));
        }
        return Ok(());
    }
    if ctx.json {
        for (name, cap) in named {
            about[name] = json!(cap.to_url());
        }
        print_json(&about);
    } else {
        for (name, cap) in named {
            println!("{:<7}{}", format!("{name}:"), cap.to_url());
        }
    }
    Ok(())
}

fn save_secret(path: &Path, text: &str) -> Result<(), Failure> {
    let local = |e: std::io::Error| Failure::LocalFile(format!("{}: {e}", path.display()));
    let mut file =
        OpenOptions::new().write(true).create_new(true).mode(0o600).open(path).map_err(local)?;
    file.write_all(format!("{text}\n").as_bytes()).map_err(local)
}

fn parallel_config(args: &TransferArgs) -> ParallelConfig {
    ParallelConfig {
        streams: args.streams.unwrap_or(DEFAULT_STREAMS),
        chunk_bytes: args.chunk,
        depth: args.depth,
        max_retries: args.retries,
        ..ParallelConfig::default()
    }
}

fn put(ctx: &Ctx, args: PutArgs) -> Result<(), Failure> {
    let cap = capability(&args.cap, Some(CapKind::Write))?;
    let read_cap = match (&args.read_cap, args.transfer.verify) {
        (Some(r), _) => Some(capability(r, Some(CapKind::Read))?),
        (None, true) => {
            return Err(Failure::BadInput("--verify needs --read-cap to read the data back".into()))
        }
        (None, false) => None,
    };
    let local = |e: std::io::Error| Failure::LocalFile(format!("{}: {e}", args.file.display()));
    let file = File::open(&args.file).map_err(local)?;
    let len = file.metadata().map_err(local)?.len();
    let depot = depot_for(ctx, &cap);
    if let Some(spec) = args.transfer.chksum {
        let report = ext::put_chksum(ctx, &depot, &cap, &args, &file, len, spec)?;
        summary(ctx, "wrote", &report, false, false);
        return Ok(());
    }
    let cfg = parallel_config(&args.transfer);
    let bar = progress_bar(len, ctx.progress);
    let report = parallel::upload(&depot, &cap, &file, 0, args.offset, len, &cfg, &|n| {
        if let Some(bar) = &bar {
            bar.inc(n);
        }
    });
    if let Some(bar) = &bar {
        bar.finish_and_clear();
    }
    let report = report?;
    let verified = match &read_cap {
        Some(read_cap) => {
            let read_depot = depot_for(ctx, read_cap);
            parallel::verify(&read_depot, read_cap, args.offset, len, &report.crcs, &cfg, &|_| {})?
                .into_result(args.offset)?;
            true
        }
        None => false,
    };
    summary(ctx, "wrote", &report, verified, false);
    Ok(())
}

pub(crate) fn summary(
    ctx: &Ctx,
    verb: &str,
    report: &TransferReport,
    verified: bool,
    to_stderr: bool,
) {
    if ctx.json {
        print_json(&json!({
            "bytes": report.bytes,
            "seconds": report.elapsed.as_secs_f64(),
            "streams": report.streams,
            "retries": report.retries,
            "verified": verified,
        }));
        return;
    }
    let line = format!(
        "{verb} {} ({} bytes) in {:.2} s, {}, {} stream(s), {} retr{}{}",
        format_size(report.bytes),
        report.bytes,
        report.elapsed.as_secs_f64(),
        rate(report.bytes, report.elapsed),
        report.streams,
        report.retries,
        if report.retries == 1 { "y" } else { "ies" },
        if verified { ", verified" } else { "" },
    );
    if to_stderr {
        eprintln!("{line}");
    } else {
        println!("{line}");
    }
}

fn get(ctx: &Ctx, args: GetArgs) -> Result<(), Failure> {
    let cap = capability(&args.cap, Some(CapKind::Read))?;
    let depot = depot_for(ctx, &cap);
    let to_stdout = args.file == "-";
    if to_stdout && ctx.json {
        return Err(Failure::BadInput(
            "--json cannot share stdout with the data of `get -`".into(),
        ));
    }
    let len = match args.length {
        Some(len) => len,
        None => {
            let size = u64::try_from(depot.handle(&cap).probe()?.size).unwrap_or(0);
            size.checked_sub(args.offset).ok_or_else(|| {
                Failure::BadInput(format!("offset {} is past the end ({size} bytes)", args.offset))
            })?
        }
    };
    if let Some(spec) = args.transfer.chksum {
        return ext::get_chksum(ctx, &depot, &cap, &args, len, spec);
    }
    if to_stdout {
        let started = std::time::Instant::now();
        let stdout = std::io::stdout();
        let mut sink = BufWriter::new(stdout.lock());
        depot.handle(&cap).load_to(args.offset, len, &mut sink)?;
        sink.flush().map_err(|e| Failure::LocalFile(format!("stdout: {e}")))?;
        if ctx.progress {
            let report = TransferReport {
                bytes: len,
                streams: 1,
                retries: 0,
                elapsed: started.elapsed(),
                block_bytes: 0,
                crcs: Vec::new(),
            };
            summary(ctx, "read", &report, false, true);
        }
        return Ok(());
    }
    let local = |e: std::io::Error| Failure::LocalFile(format!("{}: {e}", args.file));
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&args.file)
        .map_err(local)?;
    file.set_len(len).map_err(local)?;
    let cfg = parallel_config(&args.transfer);
    let bar = progress_bar(len, ctx.progress);
    let report = parallel::download(&depot, &cap, args.offset, len, &file, 0, &cfg, &|n| {
        if let Some(bar) = &bar {
            bar.inc(n);
        }
    });
    if let Some(bar) = &bar {
        bar.finish_and_clear();
    }
    let report = match report {
        Ok(report) => report,
        Err(e) => {
            // The file was sized up front, so a broken download would leave a file of the
            // full length with zero-filled holes: easy to mistake for the data. Remove it.
            if file.metadata().is_ok_and(|m| m.is_file()) {
                let _ = std::fs::remove_file(&args.file);
            }
            return Err(e.into());
        }
    };
    if args.transfer.verify {
        parallel::verify_file(&depot, &cap, args.offset, &file, 0, len, &cfg, &|_| {})?
            .into_result(args.offset)?;
    }
    summary(ctx, "read", &report, args.transfer.verify, false);
    Ok(())
}

fn probe(ctx: &Ctx, cap_arg: &str) -> Result<(), Failure> {
    let cap = capability(cap_arg, None)?;
    let p = depot_for(ctx, &cap).handle(&cap).probe()?;
    let rel = match Reliability::from_i32(p.reliability) {
        Some(Reliability::Hard) => "hard",
        Some(Reliability::Soft) => "soft",
        None => "unknown",
    };
    let atype = match AllocType::from_i32(p.atype) {
        Some(AllocType::ByteArray) => "byte array",
        Some(AllocType::Buffer) => "buffer",
        Some(AllocType::Fifo) => "fifo",
        Some(AllocType::Cirq) => "circular queue",
        None => "unknown",
    };
    if ctx.json {
        print_json(&json!({
            "size": p.size,
            "max_size": p.max_size,
            "seconds_left": p.seconds_left,
            "reliability": rel,
            "type": atype,
            "read_refs": p.read_refs,
            "write_refs": p.write_refs,
        }));
    } else {
        let size = |n: i64| format!("{} ({n} bytes)", format_size(u64::try_from(n).unwrap_or(0)));
        println!("size:        {}", size(p.size));
        println!("max size:    {}", size(p.max_size));
        println!("lease left:  {}", format_duration(p.seconds_left));
        println!("reliability: {rel}");
        println!("type:        {atype}");
        println!("references:  read {}, write {}", p.read_refs, p.write_refs);
    }
    Ok(())
}

fn change(ctx: &Ctx, args: ChangeArgs) -> Result<(), Failure> {
    let cap = capability(&args.cap, Some(CapKind::Manage))?;
    if args.duration.is_some_and(|d| d < 0) {
        return Err(Failure::BadInput("--duration must be a number of seconds from now".into()));
    }
    let depot = depot_for(ctx, &cap);
    let handle = depot.handle(&cap);
    let max_size = match args.size {
        Some(size) => size,
        None => u64::try_from(handle.probe()?.max_size).unwrap_or(0),
    };
    handle.change(max_size, args.duration, reliability(args.soft, args.hard))?;
    done(ctx, "change");
    Ok(())
}

fn refcount(ctx: &Ctx, args: RefArgs, up: bool) -> Result<(), Failure> {
    let which = if args.write { CapKind::Write } else { CapKind::Read };
    let name = if up { "incr" } else { "decr" };
    manage_simple(ctx, &args.cap, name, |d, c| {
        if up {
            d.handle(c).incr(which)
        } else {
            d.handle(c).decr(which)
        }
    })
}

fn manage_simple(
    ctx: &Ctx,
    cap_arg: &str,
    name: &str,
    call: impl FnOnce(&Depot, &Capability) -> Result<(), Error>,
) -> Result<(), Failure> {
    let cap = capability(cap_arg, Some(CapKind::Manage))?;
    call(&depot_for(ctx, &cap), &cap)?;
    done(ctx, name);
    Ok(())
}

pub(crate) fn done(ctx: &Ctx, name: &str) {
    if ctx.json {
        print_json(&json!({ "ok": true, "command": name }));
    } else {
        println!("{name}: ok");
    }
}

fn status(ctx: &Ctx, args: StatusArgs) -> Result<(), Failure> {
    let mut config = ctx.config.clone();
    if let Some(password) = args.password {
        config.status_password = password;
    }
    let depot = Depot::parse(&args.depot, config)?;
    let rids = match args.rid {
        Some(rid) => vec![rid],
        None => depot.status_res()?,
    };
    let mut resources = Vec::with_capacity(rids.len());
    for rid in &rids {
        resources.push(depot.status_inq(Some(rid))?);
    }
    let version = depot.status_version().unwrap_or_default();
    if ctx.json {
        let list: Vec<_> = resources
            .iter()
            .map(|r| {
                json!({
                    "rid": r.rid,
                    "version": r.version,
                    "configured_total": r.configured_total,
                    "served_total": r.served_total,
                    "used_total": r.used_total,
                    "used_hard": r.used_hard,
                    "served_hard": r.served_hard,
                    "allocatable_total": r.allocatable_total,
                    "allocatable_hard": r.allocatable_hard,
                    "max_duration_s": r.max_duration_s,
                })
            })
            .collect();
        print_json(&json!({ "depot": args.depot, "resources": list, "version": version }));
        return Ok(());
    }
    let size = |n: i64| format_size(u64::try_from(n).unwrap_or(0));
    println!("depot {}", args.depot);
    println!(
        "{:<8} {:>12} {:>12} {:>12} {:>12} {:>14}",
        "RID", "SERVED", "USED", "FREE", "HARD FREE", "MAX LEASE"
    );
    for r in &resources {
        println!(
            "{:<8} {:>12} {:>12} {:>12} {:>12} {:>14}",
            r.rid,
            size(r.served_total),
            size(r.used_total),
            size(r.allocatable_total),
            size(r.allocatable_hard),
            format_duration(r.max_duration_s),
        );
    }
    if !version.trim().is_empty() {
        println!();
        print!("{version}");
    }
    Ok(())
}

/// `--length`, or what is left of the source after `offset` (probed through its read cap).
fn copy_length(
    ctx: &Ctx,
    src: &Capability,
    offset: u64,
    length: Option<u64>,
) -> Result<u64, Failure> {
    if let Some(len) = length {
        return Ok(len);
    }
    let size = u64::try_from(depot_for(ctx, src).handle(src).probe()?.size).unwrap_or(0);
    size.checked_sub(offset)
        .ok_or_else(|| Failure::BadInput(format!("offset {offset} is past the end ({size} bytes)")))
}

fn copy(ctx: &Ctx, args: CopyArgs) -> Result<(), Failure> {
    let src = capability(&args.src, Some(CapKind::Read))?;
    let dst = capability(&args.dst, Some(CapKind::Write))?;
    let len = copy_length(ctx, &src, args.offset, args.length)?;
    let depot = depot_for(ctx, &src);
    let bar = spinner(format!("copying {} depot to depot", format_size(len)), ctx.progress);
    let started = Instant::now();
    let copied = depot.handle(&src).copy_streams(&dst, args.offset, len, args.streams);
    if let Some(bar) = &bar {
        bar.finish_and_clear();
    }
    let bytes = copied?;
    let elapsed = started.elapsed();
    let method = if args.streams == 1 { "send" } else { "push" };
    if ctx.json {
        print_json(&json!({
            "bytes": bytes,
            "seconds": elapsed.as_secs_f64(),
            "streams": args.streams,
            "method": method,
        }));
    } else {
        println!(
            "copied {} ({bytes} bytes) in {:.2} s, {}, {} stream(s)",
            format_size(bytes),
            elapsed.as_secs_f64(),
            rate(bytes, elapsed),
            args.streams,
        );
    }
    Ok(())
}

fn mcopy(ctx: &Ctx, args: McopyArgs) -> Result<(), Failure> {
    let src = capability(&args.src, Some(CapKind::Read))?;
    let targets = args
        .to
        .iter()
        .map(|t| capability(t, Some(CapKind::Write)))
        .collect::<Result<Vec<_>, _>>()?;
    let len = copy_length(ctx, &src, args.offset, args.length)?;
    let strategy = match args.strategy {
        StrategyArg::Fanout => McopyStrategy::Fanout,
        StrategyArg::Chain => McopyStrategy::Chain,
    };
    let plan = McopyPlan { strategy, streams: args.streams };
    let depot = depot_for(ctx, &src);
    let bar = spinner(
        format!("copying {} to {} targets ({})", format_size(len), targets.len(), strategy.word()),
        ctx.progress,
    );
    let started = Instant::now();
    let report = depot.handle(&src).mcopy(&targets, args.offset, len, plan);
    if let Some(bar) = &bar {
        bar.finish_and_clear();
    }
    let report = report?;
    let elapsed = started.elapsed();
    let method = match report.method {
        McopyMethod::Ext(_) => "mcopy_ext",
        McopyMethod::SequentialSends => "sequential_sends",
    };
    let failed = report.results.iter().filter(|r| r.is_err()).count();
    if ctx.json {
        let list: Vec<_> = report
            .results
            .iter()
            .enumerate()
            .map(|(i, r)| match r {
                Ok(n) => json!({ "target": i + 1, "ok": true, "bytes": n }),
                Err(e) => json!({ "target": i + 1, "ok": false, "error": error_json(e) }),
            })
            .collect();
        print_json(&json!({
            "bytes": len,
            "seconds": elapsed.as_secs_f64(),
            "strategy": strategy.word(),
            "streams": args.streams,
            "method": method,
            "failed": failed,
            "targets": list,
        }));
    } else {
        for (i, r) in report.results.iter().enumerate() {
            match r {
                Ok(n) => println!("target {}: copied {} ({n} bytes)", i + 1, format_size(*n)),
                Err(e) => eprintln!("ibp: error: target {}: {e}", i + 1),
            }
        }
        println!(
            "{} of {} targets in {:.2} s ({}, {method}), {} per target",
            targets.len() - failed,
            targets.len(),
            elapsed.as_secs_f64(),
            strategy.word(),
            rate(len, elapsed),
        );
    }
    match report.results.iter().find_map(|r| r.as_ref().err()) {
        Some(e) => Err(Failure::Reported(client_exit_code(e))),
        None => Ok(()),
    }
}
