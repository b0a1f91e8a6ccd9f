//! Upload: cut a file into blocks, store `copies` replicas of each block on distinct depots
//! (block `i`, replica `r` goes to depot `(i + r) mod D`, moving on to the next depot that
//! does not hold the block yet when one refuses), over `streams` parallel workers, and
//! record per-block end-to-end digests in every mapping.

use super::common::{now_s, run_parallel, SharedEndpoints, ToolError, ToolErrorKind};
use crate::config::Config;
use crate::depot::Depot;
use crate::exnode::checksum::{BlockChecksums, ChecksumAlgorithm};
use crate::exnode::model::{DepotAddr, ExNode, Mapping};
use crate::proto::request::Reliability;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Mutex;

/// Largest block: one block is held in memory per stream.
pub const MAX_BLOCK_BYTES: u64 = 1 << 30;

/// What to upload and how.
#[derive(Debug, Clone)]
pub struct UploadOptions {
    /// Depots to spread over, in order.
    pub depots: Vec<DepotAddr>,
    /// Replicas of every block, each on a different depot.
    pub copies: usize,
    /// Logical bytes per mapping.
    pub block_bytes: u64,
    /// Parallel workers.
    pub streams: usize,
    /// Lease asked for each allocation, seconds (−1 = the depot's maximum).
    pub duration_s: i64,
    /// Soft or hard allocations.
    pub reliability: Reliability,
    /// End-to-end digest kind.
    pub checksum: ChecksumAlgorithm,
    /// Bytes per digest.
    pub e2e_block_bytes: u64,
    /// Client timeouts and retries.
    pub config: Config,
}

/// What an upload did.
#[derive(Debug)]
pub struct UploadReport {
    /// The exNode (mappings sorted by logical offset).
    pub exnode: ExNode,
    /// Blocks stored with fewer than `copies` replicas: (logical range, replicas placed).
    pub short: Vec<(std::ops::Range<u64>, usize)>,
    /// Store failures that were worked around by another depot: (depot, message).
    pub failovers: Vec<(DepotAddr, String)>,
}

/// Uploads `path`; `progress` is called with bytes stored (all replicas counted).
pub fn upload(
    path: &Path,
    opts: &UploadOptions,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<UploadReport, ToolError> {
    validate(opts)?;
    let file = File::open(path).map_err(|e| {
        ToolError::new(ToolErrorKind::Io, format!("cannot open {}: {e}", path.display()))
    })?;
    let size = file
        .metadata()
        .map_err(|e| {
            ToolError::new(ToolErrorKind::Io, format!("cannot stat {}: {e}", path.display()))
        })?
        .len();
    let name = path.file_name().map_or_else(|| "file".into(), |n| n.to_string_lossy().into_owned());
    let depots: Vec<Depot> = opts
        .depots
        .iter()
        .map(|d| Depot::new(d.host.clone(), d.port, opts.config.clone()))
        .collect();
    let targets = Targets { depots, shards: SharedEndpoints::new(&opts.config) };
    let blocks = usize::try_from(size.div_ceil(opts.block_bytes))
        .map_err(|_| ToolError::new(ToolErrorKind::Usage, "file has too many blocks"))?;
    let results: Mutex<Vec<Option<BlockResult>>> = Mutex::new((0..blocks).map(|_| None).collect());
    let fatal: Mutex<Option<ToolError>> = Mutex::new(None);
    run_parallel(blocks, opts.streams, |i| {
        let offset = i as u64 * opts.block_bytes;
        let len = opts.block_bytes.min(size - offset);
        match store_block(&file, i, offset, len, opts, &targets, progress) {
            Ok(r) => {
                if let Ok(mut all) = results.lock() {
                    all[i] = Some(r);
                }
            }
            Err(e) => {
                if let Ok(mut f) = fatal.lock() {
                    f.get_or_insert(e);
                }
            }
        }
    });
    if let Some(e) = fatal.into_inner().ok().flatten() {
        return Err(e);
    }
    let mut x = ExNode::for_file(&name, size);
    x.set_meta(crate::exnode::Metadata::integer("duration", opts.duration_s));
    let (mut short, mut failovers) = (Vec::new(), Vec::new());
    for (i, r) in results.into_inner().unwrap_or_default().into_iter().enumerate() {
        let offset = i as u64 * opts.block_bytes;
        let len = opts.block_bytes.min(size - offset);
        let r = r.unwrap_or_default();
        if r.mappings.len() < opts.copies {
            short.push((offset..offset + len, r.mappings.len()));
        }
        failovers.extend(r.failovers);
        for m in r.mappings {
            x.append(m);
        }
    }
    Ok(UploadReport { exnode: x, short, failovers })
}

fn validate(opts: &UploadOptions) -> Result<(), ToolError> {
    let usage = |m: String| Err(ToolError::new(ToolErrorKind::Usage, m));
    if opts.depots.is_empty() {
        return usage("no depots given".into());
    }
    if opts.copies == 0 || opts.copies > opts.depots.len() {
        return usage(format!(
            "{} copies need at least as many distinct depots; {} given",
            opts.copies,
            opts.depots.len()
        ));
    }
    if opts.block_bytes == 0 || opts.block_bytes > MAX_BLOCK_BYTES {
        return usage(format!("block size must be 1 B..{MAX_BLOCK_BYTES} B"));
    }
    if opts.e2e_block_bytes == 0 {
        return usage("checksum block size must be positive".into());
    }
    Ok(())
}

/// Where blocks go: the listed depots (allocate) and the shards their capabilities name
/// (store), each with its own connection pool shared by all workers.
struct Targets {
    depots: Vec<Depot>,
    shards: SharedEndpoints,
}

#[derive(Default)]
struct BlockResult {
    mappings: Vec<Mapping>,
    failovers: Vec<(DepotAddr, String)>,
}

fn store_block(
    file: &File,
    index: usize,
    offset: u64,
    len: u64,
    opts: &UploadOptions,
    targets: &Targets,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<BlockResult, ToolError> {
    let mut data = vec![0u8; usize::try_from(len).unwrap_or(0)];
    file.read_exact_at(&mut data, offset).map_err(|e| {
        ToolError::new(ToolErrorKind::Io, format!("cannot read the file at {offset}: {e}"))
    })?;
    let sums = BlockChecksums::compute(opts.checksum, opts.e2e_block_bytes, &data);
    let mut out = BlockResult::default();
    let d = targets.depots.len();
    // Try depots in rotation from this block's first one; each holds at most one replica.
    for step in 0..d {
        if out.mappings.len() == opts.copies {
            break;
        }
        let which = (index + step) % d;
        match store_on(&targets.depots[which], &targets.shards, &data, opts) {
            Ok(caps) => {
                let mut m = Mapping::new(offset, len);
                m.read = Some(caps.read);
                m.write = Some(caps.write);
                m.manage = Some(caps.manage);
                m.e2e_blocksize = opts.e2e_block_bytes;
                m.checksum = Some(sums.clone());
                m.depot = Some(opts.depots[which].clone());
                if opts.duration_s > 0 {
                    m.expires_s = Some(now_s().saturating_add(opts.duration_s.unsigned_abs()));
                }
                out.mappings.push(m);
                progress(len);
            }
            Err(e) => out.failovers.push((opts.depots[which].clone(), e.to_string())),
        }
    }
    Ok(out)
}

fn store_on(
    depot: &Depot,
    shards: &SharedEndpoints,
    data: &[u8],
    opts: &UploadOptions,
) -> crate::Result<crate::AllocCaps> {
    let len = data.len() as u64;
    let caps = depot.allocate(len.max(1), opts.duration_s, opts.reliability, None)?;
    if !data.is_empty() {
        // Straight to the shard that owns the allocation (its port is in the capability).
        shards.for_cap(&caps.write).handle(&caps.write).store(data)?;
    }
    Ok(caps)
}
