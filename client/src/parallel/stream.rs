//! One stream of a parallel transfer: its own connection, its own range, up to `depth`
//! requests in flight, and reconnect-and-resume on transient failures.

use std::collections::VecDeque;
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::sync::atomic::Ordering;
use std::thread;

use super::crc::block_crcs;
use super::{Direction, Job};
use crate::conn::Conn;
use crate::error::{Error, Result};
use crate::handle::{finish_write, read_load_header};

/// Runs the stream to completion; returns the retries it used. A stream that stops because
/// another one failed returns `Ok` (the first failure is what the caller reports).
pub(super) fn run_stream(
    job: &Job<'_>,
    index: usize,
    range: Range<u64>,
    crcs: &mut [u32],
) -> Result<u32> {
    let chunk = usize::try_from(job.config.chunk_bytes.min(range.end - range.start))
        .map_err(|_| Error::InvalidArgument("chunk too large for memory".into()))?;
    let mut buf = vec![0u8; chunk];
    let mut done = range.start;
    let mut retries = 0u32;
    loop {
        if job.abort.load(Ordering::SeqCst) {
            return Ok(retries);
        }
        let result = attempt(job, &mut done, range.clone(), crcs, &mut buf);
        match result {
            Ok(()) => return Ok(retries),
            Err(_) if job.abort.load(Ordering::SeqCst) => return Ok(retries),
            Err(e) if e.is_transient() && retries < job.config.max_retries => {
                retries += 1;
                let pause = match e {
                    Error::Backoff { secs } => job.depot.backoff_wait(secs),
                    _ => job.config.retry_pause * retries,
                };
                thread::sleep(pause);
            }
            Err(e) => {
                return Err(Error::StreamFailed {
                    stream: index,
                    offset: job.cap_offset + done,
                    retries,
                    source: Box::new(e),
                })
            }
        }
    }
}

/// Offsets below are relative to the transfer start; `done` advances only past confirmed
/// chunks, so a retry resumes exactly there.
fn attempt(
    job: &Job<'_>,
    done: &mut u64,
    range: Range<u64>,
    crcs: &mut [u32],
    buf: &mut [u8],
) -> Result<()> {
    let mut conn = job.depot.connect()?;
    conn.arm(job.depot.config().op_budget(range.end - *done));
    let result = match job.direction {
        Direction::Upload => upload(job, &mut conn, done, &range, crcs, buf),
        Direction::Download | Direction::Checksum => {
            download(job, &mut conn, done, &range, crcs, buf)
        }
    };
    if result.is_err() {
        conn.shutdown();
    }
    result
}

fn crc_slot<'c>(
    job: &Job<'_>,
    range: &Range<u64>,
    crcs: &'c mut [u32],
    rel: u64,
    len: u64,
) -> &'c mut [u32] {
    let block = job.config.block_bytes;
    let first = usize::try_from((rel - range.start) / block).unwrap_or(usize::MAX);
    let count = usize::try_from(len.div_ceil(block)).unwrap_or(0);
    let end = first.saturating_add(count).min(crcs.len());
    &mut crcs[first.min(end)..end]
}

fn cancelled() -> Error {
    Error::protocol("transfer cancelled after another stream failed")
}

fn upload(
    job: &Job<'_>,
    conn: &mut Conn,
    done: &mut u64,
    range: &Range<u64>,
    crcs: &mut [u32],
    buf: &mut [u8],
) -> Result<()> {
    let file = job.file.ok_or_else(|| Error::InvalidArgument("upload needs a file".into()))?;
    let handle = job.depot.handle(job.cap);
    let block = usize::try_from(job.config.block_bytes).unwrap_or(usize::MAX);
    let mut next = *done;
    let mut in_flight: VecDeque<(u64, u64)> = VecDeque::with_capacity(job.config.depth);
    while next < range.end || !in_flight.is_empty() {
        if job.abort.load(Ordering::SeqCst) {
            return Err(cancelled());
        }
        while in_flight.len() < job.config.depth && next < range.end {
            let len = (range.end - next).min(buf.len() as u64);
            let data = &mut buf[..len as usize];
            file.read_exact_at(data, job.file_offset + next).map_err(Error::LocalIo)?;
            block_crcs(data, block, crc_slot(job, range, crcs, next, len));
            let header = handle.range_request(false, job.cap_offset + next, len)?;
            if let Err(e) = conn.send(&header).and_then(|()| conn.send(data)) {
                return Err(conn.explain_send_failure(e));
            }
            in_flight.push_back((next, len));
            next += len;
        }
        if let Some((at, len)) = in_flight.pop_front() {
            finish_write(conn, len)?;
            *done = at + len;
            (job.progress)(len);
        }
    }
    Ok(())
}

fn download(
    job: &Job<'_>,
    conn: &mut Conn,
    done: &mut u64,
    range: &Range<u64>,
    crcs: &mut [u32],
    buf: &mut [u8],
) -> Result<()> {
    let handle = job.depot.handle(job.cap);
    let block = usize::try_from(job.config.block_bytes).unwrap_or(usize::MAX);
    let mut next = *done;
    let mut in_flight: VecDeque<(u64, u64)> = VecDeque::with_capacity(job.config.depth);
    while next < range.end || !in_flight.is_empty() {
        if job.abort.load(Ordering::SeqCst) {
            return Err(cancelled());
        }
        while in_flight.len() < job.config.depth && next < range.end {
            let len = (range.end - next).min(buf.len() as u64);
            conn.send(&handle.range_request(true, job.cap_offset + next, len)?)?;
            in_flight.push_back((next, len));
            next += len;
        }
        if let Some((at, len)) = in_flight.pop_front() {
            read_load_header(conn, len)?;
            let data = &mut buf[..len as usize];
            conn.read_exact(data)?;
            block_crcs(data, block, crc_slot(job, range, crcs, at, len));
            if let (Direction::Download, Some(file)) = (job.direction, job.file) {
                file.write_all_at(data, job.file_offset + at).map_err(Error::LocalIo)?;
            }
            *done = at + len;
            (job.progress)(len);
        }
    }
    Ok(())
}
