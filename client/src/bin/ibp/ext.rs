//! Subcommands for the rest of the 1.4 command set (`alias`, `rename`, `split`, `merge`,
//! `chksum`) and the single-stream `--chksum` paths of `put` and `get`.
//!
//! A checksummed transfer is one stream of consecutive WRITE_CHKSUM / LOAD_CHKSUM commands of
//! `--chunk` bytes each, so memory stays at one chunk and a damaged block is reported at its
//! offset in the whole transfer. The parallel engine has no framing, so `--chksum` with
//! `--streams` above 1 is refused rather than silently run on one stream.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Read, Write};
use std::path::Path;
use std::time::Instant;

use ibp_client::parallel::TransferReport;
use ibp_client::proto::digest::DigestKind;
use ibp_client::proto::request::{ChksumSpec, Reliability};
use ibp_client::proto::{CapKind, Capability};
use ibp_client::units::format_size;
use ibp_client::{Depot, Error};
use serde_json::json;

use crate::args::{AliasCommand, AliasRefArgs, ChksumCommand, GetArgs, PutArgs, SplitArgs};
use crate::commands::{capability, depot_for, done, print_caps, reliability, summary, Ctx};
use crate::output::{exit, print_json, progress_bar, Failure};

/// Largest piece one checksummed command moves (`--chunk` is capped to it): what a
/// `--chksum` transfer holds in memory.
const MAX_CHKSUM_PIECE_BYTES: u64 = 64 << 20;

/// `ibp alias …`.
pub fn alias(ctx: &Ctx, cmd: AliasCommand) -> Result<(), Failure> {
    match cmd {
        AliasCommand::Create { cap, offset, length, duration, save } => {
            let cap = capability(&cap, Some(CapKind::Manage))?;
            let caps =
                depot_for(ctx, &cap).handle(&cap).alias_allocate(offset, length, duration)?;
            let about = json!({ "offset": offset, "length": length, "duration_s": duration });
            print_caps(ctx, &caps, save.as_deref(), about)
        }
        AliasCommand::Probe { cap } => {
            let cap = capability(&cap, Some(CapKind::Manage))?;
            let p = depot_for(ctx, &cap).handle(&cap).alias_probe()?;
            if ctx.json {
                print_json(&json!({
                    "offset": p.offset,
                    "length": p.len,
                    "seconds_left": p.seconds_left,
                    "read_refs": p.read_refs,
                    "write_refs": p.write_refs,
                }));
            } else {
                println!("window:      offset {}, length {}", p.offset, p.len);
                println!("lease left:  {}", ibp_client::units::format_duration(p.seconds_left));
                println!("references:  read {}, write {}", p.read_refs, p.write_refs);
            }
            Ok(())
        }
        AliasCommand::Change { cap, master, offset, length, duration } => {
            let (cap, master) = alias_and_master(&cap, &master)?;
            depot_for(ctx, &cap).handle(&cap).alias_change(offset, length, duration, &master)?;
            done(ctx, "alias change");
            Ok(())
        }
        AliasCommand::Incr(args) => alias_refcount(ctx, args, true),
        AliasCommand::Decr(args) => alias_refcount(ctx, args, false),
    }
}

fn alias_and_master(cap: &str, master: &str) -> Result<(Capability, Capability), Failure> {
    Ok((capability(cap, Some(CapKind::Manage))?, capability(master, Some(CapKind::Manage))?))
}

fn alias_refcount(ctx: &Ctx, args: AliasRefArgs, up: bool) -> Result<(), Failure> {
    let (cap, master) = alias_and_master(&args.cap, &args.master)?;
    let which = if args.write { CapKind::Write } else { CapKind::Read };
    let depot = depot_for(ctx, &cap);
    if up {
        depot.handle(&cap).alias_incr(which, &master)?;
    } else {
        depot.handle(&cap).alias_decr(which, &master)?;
    }
    done(ctx, if up { "alias incr" } else { "alias decr" });
    Ok(())
}

/// `ibp rename`.
pub fn rename(ctx: &Ctx, cap: &str, save: Option<&Path>) -> Result<(), Failure> {
    let cap = capability(cap, Some(CapKind::Manage))?;
    let caps = depot_for(ctx, &cap).handle(&cap).rename()?;
    print_caps(ctx, &caps, save, json!({ "renamed": true }))
}

/// `ibp split`.
pub fn split(ctx: &Ctx, args: SplitArgs) -> Result<(), Failure> {
    let cap = capability(&args.cap, Some(CapKind::Manage))?;
    let rel = reliability(args.soft, args.hard).unwrap_or(Reliability::Hard);
    let caps =
        depot_for(ctx, &cap).handle(&cap).split(args.size, args.duration, rel, args.chksum)?;
    let about = json!({ "size": args.size, "duration_s": args.duration });
    print_caps(ctx, &caps, args.save.as_deref(), about)
}

/// `ibp merge`.
pub fn merge(ctx: &Ctx, master: &str, child: &str) -> Result<(), Failure> {
    let master = capability(master, Some(CapKind::Manage))?;
    let child = capability(child, Some(CapKind::Manage))?;
    depot_for(ctx, &master).handle(&master).merge(&child)?;
    done(ctx, "merge");
    Ok(())
}

fn digest_name(cstype: i32) -> &'static str {
    match DigestKind::from_wire(cstype) {
        Ok(Some(DigestKind::Md5)) => "md5",
        Ok(Some(DigestKind::Sha1)) => "sha1",
        Ok(Some(DigestKind::Sha256)) => "sha256",
        Ok(Some(DigestKind::Sha512)) => "sha512",
        Ok(None) => "none",
        Err(_) => "unknown",
    }
}

/// `ibp chksum get|validate`.
pub fn chksum(ctx: &Ctx, cmd: ChksumCommand) -> Result<(), Failure> {
    match cmd {
        ChksumCommand::Get { cap, info_only } => {
            let cap = capability(&cap, Some(CapKind::Manage))?;
            let (info, body) = depot_for(ctx, &cap).handle(&cap).get_chksum(info_only)?;
            let width = usize::try_from(info.digest_bytes).unwrap_or(0).max(1);
            let digests: Vec<String> = body
                .as_deref()
                .unwrap_or_default()
                .chunks(width)
                .map(|d| d.iter().map(|b| format!("{b:02x}")).collect())
                .collect();
            let name = digest_name(info.cstype);
            if ctx.json {
                let mut out = json!({
                    "type": name,
                    "cstype": info.cstype,
                    "digest_bytes": info.digest_bytes,
                    "blocksize": info.blocksize,
                    "nblocks": info.nblocks,
                    "nbytes": info.nbytes,
                });
                if !info_only {
                    out["digests"] = json!(digests);
                }
                print_json(&out);
            } else {
                let block = format_size(u64::try_from(info.blocksize).unwrap_or(0));
                println!("type:        {name} ({})", info.cstype);
                println!("block size:  {block} ({} bytes)", info.blocksize);
                println!("blocks:      {}", info.nblocks);
                for (i, d) in digests.iter().enumerate() {
                    println!("block {i}: {d}");
                }
            }
            Ok(())
        }
        ChksumCommand::Validate { cap, correct } => {
            let cap = capability(&cap, Some(CapKind::Manage))?;
            let bad = depot_for(ctx, &cap).handle(&cap).validate_chksum(correct)?;
            if ctx.json {
                print_json(&json!({ "bad_blocks": bad, "corrected": correct && bad > 0 }));
            } else if correct && bad > 0 {
                println!("validate: {bad} bad block(s), digests rewritten");
            } else {
                println!("validate: {bad} bad block(s)");
            }
            if bad > 0 && !correct {
                return Err(Failure::Reported(exit::VERIFY));
            }
            Ok(())
        }
    }
}

/// The bytes per command of a `--chksum` transfer, refusing more than one stream.
fn chksum_piece(streams: Option<usize>, chunk: u64, len: u64) -> Result<usize, Failure> {
    if streams.is_some_and(|n| n > 1) {
        return Err(Failure::BadInput(
            "--chksum runs one stream (the parallel engine has no checksum framing); \
             drop --streams or use --streams 1"
                .into(),
        ));
    }
    let piece = chunk.clamp(1, MAX_CHKSUM_PIECE_BYTES).min(len.max(1));
    // Bounded by MAX_CHKSUM_PIECE_BYTES just above.
    Ok(piece as usize)
}

/// `ibp put --chksum`: consecutive WRITE_CHKSUMs from `file`.
pub fn put_chksum(
    ctx: &Ctx,
    depot: &Depot,
    cap: &Capability,
    args: &PutArgs,
    mut file: &File,
    len: u64,
    spec: ChksumSpec,
) -> Result<TransferReport, Failure> {
    let mut piece = vec![0; chksum_piece(args.transfer.streams, args.transfer.chunk, len)?];
    let local = |e: std::io::Error| Failure::LocalFile(format!("{}: {e}", args.file.display()));
    let started = Instant::now();
    let bar = progress_bar(len, ctx.progress);
    let mut done = 0u64;
    while done < len {
        let want = piece.len().min(usize::try_from(len - done).unwrap_or(usize::MAX));
        file.read_exact(&mut piece[..want]).map_err(local)?;
        let at = args
            .offset
            .checked_add(done)
            .ok_or_else(|| Failure::BadInput("offset and file length overflow".into()))?;
        depot.handle(cap).write_chksum(at, &piece[..want], spec)?;
        done += want as u64;
        if let Some(bar) = &bar {
            bar.inc(want as u64);
        }
    }
    if let Some(bar) = &bar {
        bar.finish_and_clear();
    }
    Ok(report(len, started))
}

fn report(bytes: u64, started: Instant) -> TransferReport {
    TransferReport {
        bytes,
        streams: 1,
        retries: 0,
        elapsed: started.elapsed(),
        block_bytes: 0,
        crcs: Vec::new(),
    }
}

/// `ibp get --chksum`: consecutive LOAD_CHKSUMs to the file or stdout. A file left by a
/// failed transfer is removed.
pub fn get_chksum(
    ctx: &Ctx,
    depot: &Depot,
    cap: &Capability,
    args: &GetArgs,
    len: u64,
    spec: ChksumSpec,
) -> Result<(), Failure> {
    let piece = chksum_piece(args.transfer.streams, args.transfer.chunk, len)? as u64;
    let to_stdout = args.file == "-";
    let local = |e: std::io::Error| Failure::LocalFile(format!("{}: {e}", args.file));
    let mut sink: Box<dyn Write> = if to_stdout {
        Box::new(BufWriter::new(std::io::stdout().lock()))
    } else {
        let file = OpenOptions::new().write(true).create(true).truncate(true).open(&args.file);
        Box::new(BufWriter::new(file.map_err(local)?))
    };
    let started = Instant::now();
    let bar = progress_bar(len, ctx.progress && !to_stdout);
    let mut moved = 0u64;
    let result = loop {
        if moved == len {
            break sink.flush().map_err(local);
        }
        let want = piece.min(len - moved);
        let at = args.offset.saturating_add(moved);
        match depot.handle(cap).load_chksum(at, want, spec) {
            Ok(data) => {
                if let Err(e) = sink.write_all(&data) {
                    break Err(local(e));
                }
            }
            Err(Error::DigestMismatch { offset }) => {
                break Err(Error::DigestMismatch { offset: moved + offset }.into())
            }
            Err(e) => break Err(e.into()),
        }
        moved += want;
        if let Some(bar) = &bar {
            bar.inc(want);
        }
    };
    if let Some(bar) = &bar {
        bar.finish_and_clear();
    }
    drop(sink);
    if let Err(e) = result {
        if !to_stdout && std::fs::metadata(&args.file).is_ok_and(|m| m.is_file()) {
            let _ = std::fs::remove_file(&args.file);
        }
        return Err(e);
    }
    // With the data on stdout, the summary goes to stderr and only for a person watching.
    if !to_stdout || ctx.progress {
        summary(ctx, "read", &report(len, started), false, to_stdout);
    }
    Ok(())
}
