//! The machine's own limits, measured the way the depot moves data, so depot figures can be
//! read as ratios (DESIGN.md, "Performance we hold ourselves to").
//!
//! * `tcp loopback`: N connected socket pairs on 127.0.0.1, a sender and a receiver thread per
//!   pair, moving `size` bytes in `block`-sized writes and reads: what N streams can carry
//!   when nobody touches the bytes.
//! * `odirect write` / `odirect read`: one preallocated file in DIR, `size` bytes written then
//!   read sequentially in `block`-sized O_DIRECT operations, `qd` in flight, on an ibp-io ring
//!   with registered buffers (WRITE_FIXED/READ_FIXED), write timed up to its fdatasync.
//! * `odirect 4KiB randread`: 4 KiB reads at random aligned offsets of that file, 32 in
//!   flight: the IOPS ceiling for small loads.
//!
//! Every loop stops at its byte or op count or at its deadline, whichever comes first.

use std::cell::{Cell, RefCell};
use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use ibp_io::fs::{DmaFile, OpenMode};
use ibp_io::{Runtime, RuntimeConfig};

use crate::figure::{Figure, Recorder, Setting};
use crate::progress::{self, run_workers, Unit};
use crate::rng::Rng;

/// O_DIRECT alignment.
const ALIGN: u64 = 4096;
/// Queue depth of the random-read IOPS figure.
pub const RANDREAD_QD: usize = 32;
/// Most random reads one IOPS run issues.
const RANDREAD_MAX_OPS: u64 = 1_000_000;
/// Most buffers one runtime may register (queue depth bound).
pub const MAX_QD: usize = 256;

/// What `baseline` measures.
#[derive(Clone, Debug)]
pub struct Params {
    pub dir: PathBuf,
    pub streams: usize,
    pub size_bytes: u64,
    pub block_bytes: u64,
    pub qd: usize,
    /// Upper bound on each phase.
    pub phase_limit: Duration,
}

/// All baseline figures: TCP with `streams`, then the three disk figures.
pub fn measure(p: &Params) -> io::Result<Vec<Figure>> {
    let mut figures = vec![tcp_loopback(p.streams, p.size_bytes, p.block_bytes, p.phase_limit)?];
    figures.extend(disk(&p.dir, p.size_bytes, p.block_bytes, p.qd, p.phase_limit)?);
    Ok(figures)
}

/// Raw loopback TCP with `streams` socket pairs moving `size` bytes in total.
pub fn tcp_loopback(streams: usize, size: u64, block: u64, limit: Duration) -> io::Result<Figure> {
    let streams = streams.max(1);
    let listener = TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))?;
    let addr = listener.local_addr()?;
    let mut pairs = Vec::with_capacity(streams);
    for _ in 0..streams {
        let tx = TcpStream::connect(addr)?;
        let (rx, _) = listener.accept()?;
        pairs.push((tx, rx));
    }
    let per_stream = size.div_ceil(streams as u64);
    let block = block.max(1) as usize;
    let deadline = Instant::now() + limit;
    // Senders take slots 0..streams, receivers streams..2*streams.
    let (txs, rxs): (Vec<_>, Vec<_>) = pairs.into_iter().unzip();
    let slots: Vec<Mutex<Option<TcpStream>>> =
        txs.into_iter().chain(rxs).map(|s| Mutex::new(Some(s))).collect();
    let (results, elapsed) = run_workers("tcp loopback", Unit::Bytes, streams * 2, |i, counter| {
        let sock = slots[i].lock().unwrap_or_else(|p| p.into_inner()).take();
        match sock {
            Some(tx) if i < streams => send_stream(tx, per_stream, block, deadline, counter),
            Some(rx) => recv_stream(rx, block),
            None => Ok(0),
        }
    });
    let mut received = 0;
    for (i, r) in results.into_iter().enumerate() {
        let n = r?;
        if i >= streams {
            received += n;
        }
    }
    let mut rec = Recorder::new();
    rec.add_bytes(received);
    let setting = Setting { streams, block_bytes: block as u64, qd: 1, allocs: 0 };
    Ok(rec.figure("tcp loopback", setting, elapsed))
}

fn send_stream(
    mut tx: TcpStream,
    total: u64,
    block: usize,
    deadline: Instant,
    counter: &AtomicU64,
) -> io::Result<u64> {
    let buf = vec![0x5a_u8; block];
    let mut sent = 0u64;
    while sent < total && Instant::now() < deadline {
        let n = (total - sent).min(block as u64) as usize;
        tx.write_all(&buf[..n])?;
        sent += n as u64;
        counter.fetch_add(n as u64, Ordering::Relaxed);
    }
    tx.shutdown(std::net::Shutdown::Write)?;
    Ok(sent)
}

fn recv_stream(mut rx: TcpStream, block: usize) -> io::Result<u64> {
    let mut buf = vec![0u8; block];
    let mut got = 0u64;
    loop {
        match rx.read(&mut buf) {
            Ok(0) => return Ok(got),
            Ok(n) => got += n as u64,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// Removes the baseline file however the measurement ends.
struct TempFile(PathBuf);

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// O_DIRECT sequential write and read of `size` bytes, then 4 KiB random-read IOPS.
pub fn disk(
    dir: &Path,
    size: u64,
    block: u64,
    qd: usize,
    limit: Duration,
) -> io::Result<Vec<Figure>> {
    let block = block.max(ALIGN).next_multiple_of(ALIGN);
    let size = size.max(block).next_multiple_of(block);
    let qd = qd.clamp(1, MAX_QD);
    std::fs::create_dir_all(dir)?;
    let path = dir.join(format!(".ibp-bench-baseline-{}", std::process::id()));
    let _cleanup = TempFile(path.clone());
    let cfg = RuntimeConfig {
        ring_entries: (qd.max(RANDREAD_QD) * 2).next_power_of_two() as u32,
        buffer_size: block as usize,
        buffer_count: qd.max(RANDREAD_QD),
        register_buffers: true,
    };
    let rt = Runtime::new(cfg)?;
    rt.block_on(async {
        let file =
            Rc::new(DmaFile::open(&path, OpenMode { create: true, size_bytes: Some(size) })?);
        let setting = Setting { streams: 1, block_bytes: block, qd, allocs: 0 };
        let write = sequential(&file, Phase::Write, size, block, qd, limit).await?;
        let write = write.0.figure("odirect write", setting, write.1);
        let read = sequential(&file, Phase::Read, size, block, qd, limit).await?;
        let read = read.0.figure("odirect read", setting, read.1);
        let (rec, took) = random_reads(&file, size, limit).await?;
        let rand = rec.figure(
            "odirect 4KiB randread",
            Setting { streams: 1, block_bytes: ALIGN, qd: RANDREAD_QD, allocs: 0 },
            took,
        );
        Ok(vec![write, read, rand])
    })
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Phase {
    Write,
    Read,
}

/// `qd` tasks take the next block offset in turn until `size` is covered or time is up.
async fn sequential(
    file: &Rc<DmaFile>,
    phase: Phase,
    size: u64,
    block: u64,
    qd: usize,
    limit: Duration,
) -> io::Result<(Recorder, Duration)> {
    let next = Rc::new(Cell::new(0u64));
    let rec = Rc::new(RefCell::new(Recorder::new()));
    let error: Rc<RefCell<Option<io::Error>>> = Rc::default();
    let start = Instant::now();
    let deadline = start + limit;
    let label = if phase == Phase::Write { "odirect write" } else { "odirect read" };
    let mut joins = Vec::with_capacity(qd);
    for _ in 0..qd {
        let (file, next, rec, error) = (file.clone(), next.clone(), rec.clone(), error.clone());
        joins.push(ibp_io::spawn(async move {
            let mut buf = ibp_io::buf::acquire().await;
            buf.as_full_mut().fill(0xa5);
            buf.set_len(block as usize);
            loop {
                let off = next.get();
                if off >= size || Instant::now() >= deadline || error.borrow().is_some() {
                    return;
                }
                next.set(off + block);
                let t = Instant::now();
                let (res, b) = match phase {
                    Phase::Write => file.write_at(buf, off, 0..block as usize).await,
                    Phase::Read => file.read_at(buf, off, block as usize).await,
                };
                buf = b;
                match res {
                    Ok(_) => {
                        let mut r = rec.borrow_mut();
                        r.record(t.elapsed(), block);
                        if r.ops % 64 == 0 {
                            progress::draw(label, Unit::Bytes, r.bytes, start.elapsed());
                        }
                    }
                    Err(e) => *error.borrow_mut() = Some(e),
                }
            }
        }));
    }
    for j in joins {
        j.await;
    }
    if phase == Phase::Write {
        file.fdatasync().await?;
    }
    let took = start.elapsed();
    progress::clear();
    if let Some(e) = error.take() {
        return Err(e);
    }
    let rec = rec.borrow().clone();
    Ok((rec, took))
}

/// 4 KiB reads at random aligned offsets, [`RANDREAD_QD`] in flight.
async fn random_reads(
    file: &Rc<DmaFile>,
    size: u64,
    limit: Duration,
) -> io::Result<(Recorder, Duration)> {
    let issued = Rc::new(Cell::new(0u64));
    let rec = Rc::new(RefCell::new(Recorder::new()));
    let error: Rc<RefCell<Option<io::Error>>> = Rc::default();
    let start = Instant::now();
    let deadline = start + limit;
    let mut joins = Vec::with_capacity(RANDREAD_QD);
    for i in 0..RANDREAD_QD {
        let (file, issued, rec, error) = (file.clone(), issued.clone(), rec.clone(), error.clone());
        joins.push(ibp_io::spawn(async move {
            let mut rng = Rng::new(i as u64);
            let mut buf = ibp_io::buf::acquire().await;
            while issued.get() < RANDREAD_MAX_OPS
                && Instant::now() < deadline
                && error.borrow().is_none()
            {
                issued.set(issued.get() + 1);
                let off = rng.aligned_offset(size, ALIGN, ALIGN);
                let t = Instant::now();
                let (res, b) = file.read_at(buf, off, ALIGN as usize).await;
                buf = b;
                match res {
                    Ok(_) => {
                        let mut r = rec.borrow_mut();
                        r.record(t.elapsed(), ALIGN);
                        if r.ops % 1024 == 0 {
                            progress::draw(
                                "odirect 4KiB randread",
                                Unit::Ops,
                                r.ops,
                                start.elapsed(),
                            );
                        }
                    }
                    Err(e) => *error.borrow_mut() = Some(e),
                }
            }
        }));
    }
    for j in joins {
        j.await;
    }
    let took = start.elapsed();
    progress::clear();
    if let Some(e) = error.take() {
        return Err(e);
    }
    let rec = rec.borrow().clone();
    Ok((rec, took))
}
