//! The parallel engine: one load, write or checksum pass over a large range, split over N
//! streams, each with its own connection and a contiguous range of its own.
//!
//! * Memory is bounded: each stream holds one chunk buffer (`chunk_bytes`), never the file.
//! * Files are read and written with positioned I/O (`FileExt::read_at/write_at`), so streams
//!   share one `File` without seeking.
//! * Each stream pipelines up to `depth` requests on its connection (LStore style).
//! * Progress counts bytes the depot confirmed (`1 <n>` after a write; the data itself for a
//!   load), reported as deltas to a callback.
//! * A failed stream reconnects and resumes at its first unconfirmed chunk, up to
//!   `max_retries` times; then the whole transfer stops with [`Error::StreamFailed`].
//! * CRC32 per `block_bytes` block is computed as bytes stream through; [`verify`] loads the
//!   range again and compares with what was written.
//!
//! Nothing can hang: every socket has read/write timeouts and every attempt a deadline
//! scaled by the bytes it moves (see [`crate::Config`]).
//!
//! # Layout
//! * `range`: splitting into per-stream ranges and chunks;
//! * `crc`: per-block CRC32 helpers;
//! * `stream`: one stream's pipelined loop and its retries.

pub mod crc;
pub mod range;
mod stream;

use std::fs::File;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant};

use crate::depot::Depot;
use crate::error::{Error, Result};
use crate::proto::capability::{CapKind, Capability};

pub use crc::{compare_crcs, file_crcs};
pub use range::split_ranges;

/// Most streams one transfer may use.
pub const MAX_STREAMS: usize = 64;
/// Largest chunk (one request, one buffer per stream).
pub const MAX_CHUNK_BYTES: u64 = 64 * 1024 * 1024;
/// Most requests in flight per stream.
pub const MAX_DEPTH: usize = 8;

/// Callback receiving newly confirmed byte counts (deltas), from any stream's thread.
pub type Progress<'a> = &'a (dyn Fn(u64) + Sync);

/// Tuning of one parallel transfer.
#[derive(Debug, Clone)]
pub struct ParallelConfig {
    /// Streams (connections, threads), 1..=[`MAX_STREAMS`].
    pub streams: usize,
    /// Bytes per request; rounded up to a multiple of `block_bytes`, at most
    /// [`MAX_CHUNK_BYTES`].
    pub chunk_bytes: u64,
    /// CRC block size (64 KiB: the depot's checksum block).
    pub block_bytes: u64,
    /// Requests in flight per stream, 1..=[`MAX_DEPTH`].
    pub depth: usize,
    /// Reconnects per stream before the transfer fails.
    pub max_retries: u32,
    /// Pause before the n-th retry: `retry_pause × n` (a `-66` notice's own wait wins).
    pub retry_pause: Duration,
}

impl Default for ParallelConfig {
    fn default() -> Self {
        ParallelConfig {
            streams: 4,
            chunk_bytes: 4 * 1024 * 1024,
            block_bytes: 64 * 1024,
            depth: 2,
            max_retries: 3,
            retry_pause: Duration::from_millis(100),
        }
    }
}

impl ParallelConfig {
    /// Checks bounds and rounds the chunk to whole blocks.
    pub fn normalized(&self) -> Result<ParallelConfig> {
        let bad = |what: &str| Err(Error::InvalidArgument(what.to_owned()));
        if !(1..=MAX_STREAMS).contains(&self.streams) {
            return bad("streams must be between 1 and 64");
        }
        if !(1..=MAX_DEPTH).contains(&self.depth) {
            return bad("pipeline depth must be between 1 and 8");
        }
        if self.block_bytes == 0 || self.block_bytes > MAX_CHUNK_BYTES {
            return bad("CRC block size must be between 1 byte and 64 MiB");
        }
        let chunk = self.chunk_bytes.max(1).div_ceil(self.block_bytes) * self.block_bytes;
        if chunk > MAX_CHUNK_BYTES {
            return bad("chunk size must be at most 64 MiB");
        }
        Ok(ParallelConfig { chunk_bytes: chunk, ..self.clone() })
    }
}

/// What a finished transfer did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransferReport {
    /// Bytes moved (all confirmed).
    pub bytes: u64,
    /// Streams used.
    pub streams: usize,
    /// Reconnects over all streams.
    pub retries: u32,
    /// Wall time.
    pub elapsed: Duration,
    /// CRC block size.
    pub block_bytes: u64,
    /// CRC32 of each block, in order.
    pub crcs: Vec<u32>,
}

/// What a verification found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyReport {
    /// The pass that re-read the depot.
    pub transfer: TransferReport,
    /// Indices of blocks that differ.
    pub mismatched: Vec<usize>,
}

impl VerifyReport {
    /// `Ok` when every block matched, else [`Error::VerifyMismatch`].
    pub fn into_result(self, cap_offset: u64) -> Result<TransferReport> {
        match self.mismatched.first() {
            None => Ok(self.transfer),
            Some(&first) => Err(Error::VerifyMismatch {
                blocks: self.mismatched.len(),
                first_offset: cap_offset + first as u64 * self.transfer.block_bytes,
            }),
        }
    }
}

/// Which way the bytes go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Direction {
    /// File → depot (WRITE at offsets).
    Upload,
    /// Depot → file (LOAD).
    Download,
    /// Depot → CRCs only (LOAD, nothing kept).
    Checksum,
}

/// One transfer's fixed parameters, shared by its streams.
struct Job<'a> {
    depot: &'a Depot,
    cap: &'a Capability,
    direction: Direction,
    /// Where in the allocation the transfer starts.
    cap_offset: u64,
    /// The local file, for uploads and downloads.
    file: Option<&'a File>,
    /// Where in the file the transfer starts.
    file_offset: u64,
    len: u64,
    config: ParallelConfig,
    progress: Progress<'a>,
    /// Set by the first stream that gives up; the others stop at their next chunk.
    abort: AtomicBool,
}

/// WRITEs `len` bytes of `file` (from `file_offset`) into the allocation at `cap_offset`.
#[allow(clippy::too_many_arguments)]
pub fn upload(
    depot: &Depot,
    write_cap: &Capability,
    file: &File,
    file_offset: u64,
    cap_offset: u64,
    len: u64,
    config: &ParallelConfig,
    progress: Progress<'_>,
) -> Result<TransferReport> {
    need(write_cap, CapKind::Write)?;
    run(Job {
        depot,
        cap: write_cap,
        direction: Direction::Upload,
        cap_offset,
        file: Some(file),
        file_offset,
        len,
        config: config.normalized()?,
        progress,
        abort: AtomicBool::new(false),
    })
}

/// LOADs `len` bytes at `cap_offset` into `file` at `file_offset` (the file must be open
/// for writing; it is not truncated).
#[allow(clippy::too_many_arguments)]
pub fn download(
    depot: &Depot,
    read_cap: &Capability,
    cap_offset: u64,
    len: u64,
    file: &File,
    file_offset: u64,
    config: &ParallelConfig,
    progress: Progress<'_>,
) -> Result<TransferReport> {
    need(read_cap, CapKind::Read)?;
    run(Job {
        depot,
        cap: read_cap,
        direction: Direction::Download,
        cap_offset,
        file: Some(file),
        file_offset,
        len,
        config: config.normalized()?,
        progress,
        abort: AtomicBool::new(false),
    })
}

/// LOADs the range and returns its block CRCs without keeping the bytes.
pub fn checksum(
    depot: &Depot,
    read_cap: &Capability,
    cap_offset: u64,
    len: u64,
    config: &ParallelConfig,
    progress: Progress<'_>,
) -> Result<TransferReport> {
    need(read_cap, CapKind::Read)?;
    run(Job {
        depot,
        cap: read_cap,
        direction: Direction::Checksum,
        cap_offset,
        file: None,
        file_offset: 0,
        len,
        config: config.normalized()?,
        progress,
        abort: AtomicBool::new(false),
    })
}

/// Re-reads the range and compares its block CRCs with `expected` (for example the `crcs`
/// of the [`upload`] that wrote it, with the same `block_bytes`).
pub fn verify(
    depot: &Depot,
    read_cap: &Capability,
    cap_offset: u64,
    len: u64,
    expected: &[u32],
    config: &ParallelConfig,
    progress: Progress<'_>,
) -> Result<VerifyReport> {
    let transfer = checksum(depot, read_cap, cap_offset, len, config, progress)?;
    let mismatched = compare_crcs(expected, &transfer.crcs);
    Ok(VerifyReport { transfer, mismatched })
}

/// Like [`verify`], with the expected CRCs computed from the local file.
#[allow(clippy::too_many_arguments)]
pub fn verify_file(
    depot: &Depot,
    read_cap: &Capability,
    cap_offset: u64,
    file: &File,
    file_offset: u64,
    len: u64,
    config: &ParallelConfig,
    progress: Progress<'_>,
) -> Result<VerifyReport> {
    let normalized = config.normalized()?;
    let expected = file_crcs(file, file_offset, len, normalized.block_bytes)?;
    verify(depot, read_cap, cap_offset, len, &expected, &normalized, progress)
}

fn need(cap: &Capability, kind: CapKind) -> Result<()> {
    if cap.kind == kind {
        Ok(())
    } else {
        Err(Error::WrongCapKind { expected: kind, actual: cap.kind })
    }
}

fn run(job: Job<'_>) -> Result<TransferReport> {
    let started = Instant::now();
    let block = job.config.block_bytes;
    job.cap_offset
        .checked_add(job.len)
        .and_then(|_| job.file_offset.checked_add(job.len))
        .filter(|end| i64::try_from(*end).is_ok())
        .ok_or_else(|| Error::InvalidArgument("offset + length overflows".into()))?;
    let ranges = split_ranges(job.len, job.config.streams, job.config.chunk_bytes);
    let mut crcs = vec![0u32; crc::block_count(job.len, block)];
    let failure: Mutex<Option<Error>> = Mutex::new(None);
    let retries = AtomicU32::new(0);
    thread::scope(|scope| {
        let mut rest: &mut [u32] = &mut crcs;
        for (index, range) in ranges.iter().cloned().enumerate() {
            let blocks = crc::block_count(range.end - range.start, block);
            let (mine, tail) = std::mem::take(&mut rest).split_at_mut(blocks);
            rest = tail;
            let (job, failure, retries) = (&job, &failure, &retries);
            scope.spawn(move || match stream::run_stream(job, index, range, mine) {
                Ok(n) => {
                    retries.fetch_add(n, Ordering::Relaxed);
                }
                Err(e) => {
                    if !job.abort.swap(true, Ordering::SeqCst) {
                        if let Ok(mut slot) = failure.lock() {
                            *slot = Some(e);
                        }
                    }
                }
            });
        }
    });
    if let Some(e) = failure.into_inner().ok().flatten() {
        return Err(e);
    }
    Ok(TransferReport {
        bytes: job.len,
        streams: ranges.len(),
        retries: retries.into_inner(),
        elapsed: started.elapsed(),
        block_bytes: block,
        crcs,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_bounds_and_rounding() {
        let c = ParallelConfig { chunk_bytes: 100_000, ..ParallelConfig::default() };
        assert_eq!(c.normalized().map(|c| c.chunk_bytes).ok(), Some(131_072));
        for bad in [
            ParallelConfig { streams: 0, ..ParallelConfig::default() },
            ParallelConfig { streams: 65, ..ParallelConfig::default() },
            ParallelConfig { depth: 0, ..ParallelConfig::default() },
            ParallelConfig { block_bytes: 0, ..ParallelConfig::default() },
            ParallelConfig { chunk_bytes: MAX_CHUNK_BYTES + 1, ..ParallelConfig::default() },
        ] {
            assert!(bad.normalized().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn verify_report_names_first_block() {
        let transfer = TransferReport {
            bytes: 10,
            streams: 1,
            retries: 0,
            elapsed: Duration::ZERO,
            block_bytes: 4,
            crcs: vec![],
        };
        let report = VerifyReport { transfer, mismatched: vec![2, 5] };
        match report.into_result(100) {
            Err(Error::VerifyMismatch { blocks: 2, first_offset: 108 }) => {}
            other => panic!("{other:?}"),
        }
    }
}
