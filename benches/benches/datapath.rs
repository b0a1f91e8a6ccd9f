//! The store and load data path of one connection, on ibp-io and on glommio 0.9, same sizes,
//! same file system: the baseline our io layer must beat by 1.2× (DESIGN.md, "Why not
//! glommio").
//!
//! * store: a peer thread sends `TOTAL` bytes over loopback TCP; the runtime receives each
//!   256 KiB chunk into an aligned buffer and writes it O_DIRECT to a preallocated file.
//! * load: the runtime reads each chunk O_DIRECT from the file and sends it over loopback TCP
//!   to a peer thread that drains it.
//!
//! Two shapes: `q1` is the simplest loop (one chunk in flight), a comparison of the runtimes
//! alone; `q4` keeps `DEPTH` disk operations in flight while the socket moves the next chunk
//! (spawned writes on store, read-ahead on load), the shape the depot uses. ibp-io uses its registered pool (READ_FIXED on the socket,
//! WRITE_FIXED/READ_FIXED on the file); glommio receives with `recv` into a DmaBuffer it
//! allocates per chunk and sends with `send` (its TCP uses io_uring only for readiness).
//! The file lives in `IBP_BENCH_DIR` (default `/var/tmp`, ext4: real O_DIRECT);
//! `IBP_BENCH_PIN` places the threads (see [`pin`]).

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};

/// Bytes moved per iteration.
const TOTAL: u64 = 64 << 20;
/// Bytes per receive/disk operation (the depot's default buffer size).
const CHUNK: usize = 256 * 1024;
/// Disk operations in flight in the `q4` shape.
const DEPTH: usize = 4;

fn bench_file(tag: &str) -> PathBuf {
    let dir =
        std::env::var_os("IBP_BENCH_DIR").map_or_else(|| PathBuf::from("/var/tmp"), PathBuf::from);
    dir.join(format!(".ibp-datapath-{tag}-{}", std::process::id()))
}

/// Preallocates `path` to `TOTAL` bytes (both runtimes then open it without creating), as
/// the depot does: writes into unallocated ext4 space are several times slower.
fn preallocate(path: &Path) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(path)?;
    // SAFETY: fallocate on an fd we own; no pointers are passed.
    if unsafe { libc::fallocate(f.as_raw_fd(), 0, 0, TOTAL as libc::off_t) } != 0 {
        return Err(io::Error::last_os_error());
    }
    f.sync_all()
}

/// Thread placement, for telling the runtimes' own cost from the machine's: unset, the
/// scheduler places the threads; `IBP_BENCH_PIN=split` puts the runtime's thread on CPU 0
/// and the peer on CPU 1; `IBP_BENCH_PIN=same` puts both on CPU 0, so no wake-up crosses
/// CPUs and the figure is the CPU cost of the whole path (docs/benchmarks.md: on a VM whose
/// cross-CPU wake-ups cost tens of microseconds, a few microseconds' difference per chunk
/// decides where the kernel runs the receiver's TCP work, which swings the unpinned loads).
fn pin(cpu: usize) {
    let Some(how) = std::env::var_os("IBP_BENCH_PIN") else { return };
    let cpu = if how == "same" { 0 } else { cpu };
    // SAFETY: a zeroed cpu_set_t is a valid empty set; CPU_SET writes inside it, and
    // sched_setaffinity only reads it.
    let rc = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set)
    };
    assert_eq!(rc, 0, "IBP_BENCH_PIN: cannot pin to CPU {cpu}: {}", io::Error::last_os_error());
}

fn peer_send(addr: SocketAddr) -> thread::JoinHandle<io::Result<()>> {
    thread::spawn(move || {
        pin(1);
        let mut s = TcpStream::connect(addr)?;
        let buf = vec![0x5a_u8; CHUNK];
        let mut sent = 0u64;
        while sent < TOTAL {
            s.write_all(&buf)?;
            sent += CHUNK as u64;
        }
        Ok(())
    })
}

fn peer_recv(addr: SocketAddr) -> thread::JoinHandle<io::Result<()>> {
    thread::spawn(move || {
        pin(1);
        let mut s = TcpStream::connect(addr)?;
        let mut buf = vec![0u8; CHUNK];
        let mut got = 0u64;
        while got < TOTAL {
            match s.read(&mut buf)? {
                0 => return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "short load")),
                n => got += n as u64,
            }
        }
        Ok(())
    })
}

fn join(h: thread::JoinHandle<io::Result<()>>) {
    match h.join() {
        Ok(Ok(())) => {}
        Ok(Err(e)) => panic!("peer thread: {e}"),
        Err(_) => panic!("peer thread panicked"),
    }
}

mod ibpio {
    use super::*;
    use ibp_io::fs::{DmaFile, OpenMode};
    use ibp_io::net::TcpListener;
    use ibp_io::{Runtime, RuntimeConfig};

    /// Room for the `q4` shape's buffers too.
    pub(super) fn runtime() -> Runtime {
        let cfg = RuntimeConfig {
            ring_entries: 64,
            buffer_size: CHUNK,
            buffer_count: 2 * DEPTH + 2,
            register_buffers: true,
        };
        Runtime::new(cfg).expect("io_uring runtime")
    }

    pub fn store(iters: u64, path: &Path) -> Duration {
        runtime().block_on(async {
            let listener =
                TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)), false).expect("bind");
            let addr = listener.local_addr().expect("addr");
            let file = DmaFile::open(path, OpenMode::default()).expect("open");
            let mut buf = ibp_io::buf::acquire().await;
            let mut took = Duration::ZERO;
            for _ in 0..iters {
                let peer = peer_send(addr);
                let start = Instant::now();
                let (stream, _) = listener.accept().await.expect("accept");
                let mut off = 0u64;
                while off < TOTAL {
                    buf.clear();
                    while buf.len() < CHUNK {
                        let (n, b) = stream.read(buf).await;
                        buf = b;
                        if n.expect("recv") == 0 {
                            break;
                        }
                    }
                    let len = buf.len();
                    let (res, b) = file.write_at(buf, off, 0..len).await;
                    buf = b;
                    res.expect("write");
                    off += len as u64;
                }
                took += start.elapsed();
                join(peer);
            }
            took
        })
    }

    pub fn load(iters: u64, path: &Path) -> Duration {
        runtime().block_on(async {
            let listener =
                TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)), false).expect("bind");
            let addr = listener.local_addr().expect("addr");
            let file = DmaFile::open(path, OpenMode::default()).expect("open");
            let mut buf = ibp_io::buf::acquire().await;
            let mut took = Duration::ZERO;
            for _ in 0..iters {
                let peer = peer_recv(addr);
                let start = Instant::now();
                let (stream, _) = listener.accept().await.expect("accept");
                let mut off = 0u64;
                while off < TOTAL {
                    let (res, b) = file.read_at(buf, off, CHUNK).await;
                    buf = b;
                    let n = res.expect("read");
                    let (res, b) = stream.write_all(buf, 0..n).await;
                    buf = b;
                    res.expect("send");
                    off += n as u64;
                }
                took += start.elapsed();
                join(peer);
            }
            took
        })
    }
}

mod ibpio_q {
    use super::*;
    use std::cell::Cell;
    use std::collections::VecDeque;
    use std::rc::Rc;

    use super::ibpio::runtime;
    use ibp_io::fs::{DmaFile, OpenMode};
    use ibp_io::net::TcpListener;
    use ibp_io::FixedBuf;

    /// Receives a chunk while up to `DEPTH` earlier chunks are being written.
    pub fn store(iters: u64, path: &Path) -> Duration {
        runtime().block_on(async {
            let listener =
                TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)), false).expect("bind");
            let addr = listener.local_addr().expect("addr");
            let file = Rc::new(DmaFile::open(path, OpenMode::default()).expect("open"));
            let mut took = Duration::ZERO;
            for _ in 0..iters {
                let peer = peer_send(addr);
                let start = Instant::now();
                let (stream, _) = listener.accept().await.expect("accept");
                let mut inflight = VecDeque::new();
                let mut off = 0u64;
                while off < TOTAL {
                    let mut buf = ibp_io::buf::acquire().await;
                    buf.clear();
                    while buf.len() < CHUNK {
                        let (n, b) = stream.read(buf).await;
                        buf = b;
                        if n.expect("recv") == 0 {
                            break;
                        }
                    }
                    let len = buf.len();
                    if inflight.len() >= DEPTH {
                        let h: ibp_io::JoinHandle = inflight.pop_front().expect("a write");
                        h.await;
                    }
                    let f = file.clone();
                    inflight.push_back(ibp_io::spawn(async move {
                        let (res, _buf) = f.write_at(buf, off, 0..len).await;
                        res.expect("write");
                    }));
                    off += len as u64;
                }
                for h in inflight {
                    h.await;
                }
                took += start.elapsed();
                join(peer);
            }
            took
        })
    }

    /// Sends a chunk while the next `DEPTH` are being read.
    pub fn load(iters: u64, path: &Path) -> Duration {
        runtime().block_on(async {
            let listener =
                TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)), false).expect("bind");
            let addr = listener.local_addr().expect("addr");
            let file = Rc::new(DmaFile::open(path, OpenMode::default()).expect("open"));
            let read = |off: u64| {
                let (f, cell) = (file.clone(), Rc::new(Cell::new(None::<FixedBuf>)));
                let out = cell.clone();
                let h = ibp_io::spawn(async move {
                    let buf = ibp_io::buf::acquire().await;
                    let (res, b) = f.read_at(buf, off, CHUNK).await;
                    res.expect("read");
                    out.set(Some(b));
                });
                (h, cell)
            };
            let mut took = Duration::ZERO;
            for _ in 0..iters {
                let peer = peer_recv(addr);
                let start = Instant::now();
                let (stream, _) = listener.accept().await.expect("accept");
                let chunks = TOTAL / CHUNK as u64;
                let mut ahead: VecDeque<_> =
                    (0..chunks.min(DEPTH as u64)).map(|i| read(i * CHUNK as u64)).collect();
                for i in 0..chunks {
                    let (h, cell) = ahead.pop_front().expect("a read");
                    h.await;
                    let buf = cell.take().expect("read result");
                    let next = i + DEPTH as u64;
                    if next < chunks {
                        ahead.push_back(read(next * CHUNK as u64));
                    }
                    let n = buf.len();
                    let (res, _b) = stream.write_all(buf, 0..n).await;
                    res.expect("send");
                }
                took += start.elapsed();
                join(peer);
            }
            took
        })
    }
}

mod glom_q {
    use super::*;
    use std::collections::VecDeque;
    use std::rc::Rc;

    use futures_lite::{AsyncReadExt, AsyncWriteExt};
    use glommio::io::{DmaFile, OpenOptions};
    use glommio::net::TcpListener;
    use glommio::LocalExecutorBuilder;

    fn run<T: 'static>(f: impl std::future::Future<Output = T> + 'static) -> T {
        LocalExecutorBuilder::default().make().expect("glommio executor").run(f)
    }

    async fn open(path: &Path) -> Rc<DmaFile> {
        Rc::new(
            OpenOptions::new()
                .read(true)
                .write(true)
                .dma_open(path)
                .await
                .expect("glommio dma_open"),
        )
    }

    pub fn store(iters: u64, path: PathBuf) -> Duration {
        run(async move {
            let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
            let addr = listener.local_addr().expect("addr");
            let file = open(&path).await;
            let mut took = Duration::ZERO;
            for _ in 0..iters {
                let peer = peer_send(addr);
                let start = Instant::now();
                let mut stream = listener.accept().await.expect("accept");
                let mut inflight = VecDeque::new();
                let mut off = 0u64;
                while off < TOTAL {
                    let mut buf = file.alloc_dma_buffer(CHUNK);
                    let mut filled = 0;
                    while filled < CHUNK {
                        let n = stream.read(&mut buf.as_bytes_mut()[filled..]).await.expect("recv");
                        if n == 0 {
                            break;
                        }
                        filled += n;
                    }
                    if inflight.len() >= DEPTH {
                        let t: glommio::Task<()> = inflight.pop_front().expect("a write");
                        t.await;
                    }
                    let f = file.clone();
                    inflight.push_back(glommio::spawn_local(async move {
                        f.write_at(buf, off).await.expect("write");
                    }));
                    off += filled as u64;
                }
                for t in inflight {
                    t.await;
                }
                took += start.elapsed();
                join(peer);
            }
            took
        })
    }

    pub fn load(iters: u64, path: PathBuf) -> Duration {
        run(async move {
            let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
            let addr = listener.local_addr().expect("addr");
            let file = open(&path).await;
            let read = |off: u64| {
                let f = file.clone();
                glommio::spawn_local(async move { f.read_at_aligned(off, CHUNK).await })
            };
            let mut took = Duration::ZERO;
            for _ in 0..iters {
                let peer = peer_recv(addr);
                let start = Instant::now();
                let mut stream = listener.accept().await.expect("accept");
                let chunks = TOTAL / CHUNK as u64;
                let mut ahead: VecDeque<_> =
                    (0..chunks.min(DEPTH as u64)).map(|i| read(i * CHUNK as u64)).collect();
                for i in 0..chunks {
                    let chunk = ahead.pop_front().expect("a read").await.expect("read");
                    let next = i + DEPTH as u64;
                    if next < chunks {
                        ahead.push_back(read(next * CHUNK as u64));
                    }
                    stream.write_all(&chunk).await.expect("send");
                }
                took += start.elapsed();
                join(peer);
            }
            took
        })
    }
}

mod glom {
    use super::*;
    use futures_lite::{AsyncReadExt, AsyncWriteExt};
    use glommio::io::{DmaFile, OpenOptions};
    use glommio::net::TcpListener;
    use glommio::LocalExecutorBuilder;

    fn run<T: 'static>(f: impl std::future::Future<Output = T> + 'static) -> T {
        LocalExecutorBuilder::default().make().expect("glommio executor").run(f)
    }

    async fn open(path: &Path) -> DmaFile {
        OpenOptions::new().read(true).write(true).dma_open(path).await.expect("glommio dma_open")
    }

    pub fn store(iters: u64, path: PathBuf) -> Duration {
        run(async move {
            let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
            let addr = listener.local_addr().expect("addr");
            let file = open(&path).await;
            let mut took = Duration::ZERO;
            for _ in 0..iters {
                let peer = peer_send(addr);
                let start = Instant::now();
                let mut stream = listener.accept().await.expect("accept");
                let mut off = 0u64;
                while off < TOTAL {
                    let mut buf = file.alloc_dma_buffer(CHUNK);
                    let mut filled = 0;
                    while filled < CHUNK {
                        let n = stream.read(&mut buf.as_bytes_mut()[filled..]).await.expect("recv");
                        if n == 0 {
                            break;
                        }
                        filled += n;
                    }
                    file.write_at(buf, off).await.expect("write");
                    off += filled as u64;
                }
                took += start.elapsed();
                join(peer);
            }
            let _ = file.close().await;
            took
        })
    }

    pub fn load(iters: u64, path: PathBuf) -> Duration {
        run(async move {
            let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
            let addr = listener.local_addr().expect("addr");
            let file = open(&path).await;
            let mut took = Duration::ZERO;
            for _ in 0..iters {
                let peer = peer_recv(addr);
                let start = Instant::now();
                let mut stream = listener.accept().await.expect("accept");
                let mut off = 0u64;
                while off < TOTAL {
                    let chunk = file.read_at_aligned(off, CHUNK).await.expect("read");
                    stream.write_all(&chunk).await.expect("send");
                    off += chunk.len() as u64;
                }
                took += start.elapsed();
                join(peer);
            }
            let _ = file.close().await;
            took
        })
    }
}

fn datapath(c: &mut Criterion) {
    let path = bench_file("file");
    preallocate(&path).expect("preallocate the benchmark file");
    // The runtimes run on this thread.
    pin(0);
    let mut g = c.benchmark_group("datapath_64MiB");
    g.sample_size(10).measurement_time(Duration::from_secs(8)).throughput(Throughput::Bytes(TOTAL));
    g.bench_function("store_q1/ibp-io", |b| b.iter_custom(|n| ibpio::store(n, &path)));
    g.bench_function("store_q1/glommio", |b| b.iter_custom(|n| glom::store(n, path.clone())));
    g.bench_function("load_q1/ibp-io", |b| b.iter_custom(|n| ibpio::load(n, &path)));
    g.bench_function("load_q1/glommio", |b| b.iter_custom(|n| glom::load(n, path.clone())));
    g.bench_function("store_q4/ibp-io", |b| b.iter_custom(|n| ibpio_q::store(n, &path)));
    g.bench_function("store_q4/glommio", |b| b.iter_custom(|n| glom_q::store(n, path.clone())));
    g.bench_function("load_q4/ibp-io", |b| b.iter_custom(|n| ibpio_q::load(n, &path)));
    g.bench_function("load_q4/glommio", |b| b.iter_custom(|n| glom_q::load(n, path.clone())));
    g.finish();
    let _ = std::fs::remove_file(&path);
}

criterion_group!(benches, datapath);
criterion_main!(benches);
