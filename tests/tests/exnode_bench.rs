//! Throughput of the exNode tools against raw loopback TCP, in one run (ignored by default:
//! it moves several GiB). Run it with a release build:
//!
//! ```sh
//! cargo build --release --workspace --bins
//! cargo test --release -p ibp-tests --test exnode_bench -- --ignored --nocapture
//! ```
//!
//! `XND_BENCH_MIB` sets the file size (default 1024). Four depots (one core each) on
//! 127.0.0.1 with their data under /var/tmp; upload and download through the same library
//! calls `ibp-xnd` makes, for 1 and 3 copies at 1 and 8 streams; the baseline is a plain
//! std-socket sender and receiver moving the same bytes over 1 and 8 connections.

use ibp_client::exnode::tools::download::{download, DownloadOptions};
use ibp_client::exnode::tools::upload::{upload, UploadOptions};
use ibp_client::exnode::{ChecksumAlgorithm, DepotAddr};
use ibp_client::parallel::{self, ParallelConfig};
use ibp_client::proto::request::Reliability;
use ibp_client::Config;
use ibp_tests::{pattern, Depot, DepotOpts};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::time::Instant;

const MIB: u64 = 1024 * 1024;

fn mib_per_s(bytes: u64, secs: f64) -> f64 {
    bytes as f64 / MIB as f64 / secs.max(1e-9)
}

/// Moves `bytes` over `streams` loopback connections; returns seconds.
fn raw_tcp(bytes: u64, streams: usize) -> f64 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let per = bytes / streams as u64;
    let start = Instant::now();
    std::thread::scope(|s| {
        s.spawn(|| {
            let mut readers = Vec::new();
            for _ in 0..streams {
                let (mut c, _) = listener.accept().expect("accept");
                readers.push(std::thread::spawn(move || {
                    let mut buf = vec![0u8; 1 << 20];
                    let mut got = 0u64;
                    while got < per {
                        let n = c.read(&mut buf).expect("read");
                        assert!(n > 0, "sender closed early");
                        got += n as u64;
                    }
                }));
            }
            for r in readers {
                r.join().expect("reader");
            }
        });
        for _ in 0..streams {
            s.spawn(move || {
                let mut c = TcpStream::connect(addr).expect("connect");
                let buf = vec![7u8; 1 << 20];
                let mut sent = 0u64;
                while sent < per {
                    let n = (per - sent).min(buf.len() as u64) as usize;
                    c.write_all(&buf[..n]).expect("write");
                    sent += n as u64;
                }
            });
        }
    });
    start.elapsed().as_secs_f64()
}

#[test]
#[ignore = "moves several GiB; run by hand with --release (see the module doc)"]
fn exnode_throughput_vs_raw_tcp() {
    let mib: u64 = std::env::var("XND_BENCH_MIB").ok().and_then(|v| v.parse().ok()).unwrap_or(1024);
    let size = mib * MIB;
    let dir = PathBuf::from(format!("/var/tmp/ibp-tests/xnd-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("bench dir");
    let src = dir.join("src.bin");
    {
        let mut f = std::fs::File::create(&src).expect("create source");
        for i in 0..size.div_ceil(64 * MIB) {
            let len = (size - i * 64 * MIB).min(64 * MIB) as usize;
            f.write_all(&pattern(i, len)).expect("write source");
        }
    }
    let opts = DepotOpts {
        cores: 1,
        capacity: "6GiB".into(),
        rust_log: "warn".into(),
        ..DepotOpts::default()
    };
    let depots: Vec<Depot> = (0..4).map(|_| Depot::start(opts.clone())).collect();
    let addrs: Vec<DepotAddr> =
        depots.iter().map(|d| DepotAddr { host: "127.0.0.1".into(), port: d.port() }).collect();
    let config = Config::default();
    let mut rows = Vec::new();
    // The local disk's own limit for the downloaded file: buffered write + fsync.
    let disk = {
        let p = dir.join("disk.bin");
        let start = Instant::now();
        let mut f = std::fs::File::create(&p).expect("create");
        let chunk = vec![5u8; (16 * MIB) as usize];
        for _ in 0..size / (16 * MIB) {
            f.write_all(&chunk).expect("write");
        }
        f.sync_all().expect("fsync");
        let t = start.elapsed().as_secs_f64();
        let _ = std::fs::remove_file(&p);
        t
    };
    for streams in [1usize, 8] {
        let t = raw_tcp(size, streams);
        rows.push(format!(
            "| raw loopback TCP | - | {streams} | {:.2} | {:.0} | 1.00 |",
            t,
            mib_per_s(size, t)
        ));
    }
    let base_rate: Vec<f64> = [0, 1]
        .iter()
        .map(|&i| rows[i].split('|').nth(5).and_then(|v| v.trim().parse().ok()).unwrap_or(1.0))
        .collect();
    // The client library alone: one allocation of the whole file on one depot, moved with the
    // parallel engine (no exNode), so the exNode layer's own cost can be told apart.
    {
        let d = ibp_client::Depot::new("127.0.0.1", depots[0].port(), config.clone());
        let caps = d.allocate(size, 3600, Reliability::Hard, None).expect("allocate whole file");
        let owner = ibp_client::Depot::for_capability(&caps.write, config.clone());
        let file = std::fs::File::open(&src).expect("open source");
        for streams in [1usize, 8] {
            let pc = ParallelConfig { streams, ..ParallelConfig::default() };
            let start = Instant::now();
            parallel::upload(&owner, &caps.write, &file, 0, 0, size, &pc, &|_| {})
                .expect("library upload");
            let t = start.elapsed().as_secs_f64();
            let b = base_rate[usize::from(streams != 1)];
            rows.push(format!(
                "| library write, 1 allocation, 1 depot | 1 | {streams} | {t:.2} | {:.0} | {:.2} |",
                mib_per_s(size, t),
                mib_per_s(size, t) / b
            ));
            let out = PathBuf::from(format!("/dev/shm/xnd-bench-lib-{}.bin", std::process::id()));
            let f = std::fs::OpenOptions::new()
                .create(true)
                .truncate(true)
                .read(true)
                .write(true)
                .open(&out)
                .expect("out");
            let start = Instant::now();
            parallel::download(&owner, &caps.read, 0, size, &f, 0, &pc, &|_| {})
                .expect("library download");
            let t = start.elapsed().as_secs_f64();
            rows.push(format!(
                "| library load to tmpfs, 1 allocation | 1 | {streams} | {t:.2} | {:.0} | {:.2} |",
                mib_per_s(size, t),
                mib_per_s(size, t) / b
            ));
            let _ = std::fs::remove_file(&out);
        }
        let _ = owner.handle(&caps.manage).decr(ibp_client::proto::CapKind::Read);
    }
    for copies in [1usize, 3] {
        for streams in [1usize, 8] {
            let up = UploadOptions {
                depots: addrs.clone(),
                copies,
                block_bytes: 16 * MIB,
                streams,
                duration_s: 3600,
                reliability: Reliability::Hard,
                checksum: ChecksumAlgorithm::Crc32,
                e2e_block_bytes: MIB,
                config: config.clone(),
            };
            let start = Instant::now();
            let report = upload(&src, &up, &|_| {}).expect("upload");
            let t = start.elapsed().as_secs_f64();
            assert!(report.short.is_empty());
            let moved = size * copies as u64;
            let b = base_rate[usize::from(streams != 1)];
            rows.push(format!(
                "| upload | {copies} | {streams} | {t:.2} | {:.0} (file), {:.0} (wire) | {:.2} |",
                mib_per_s(size, t),
                mib_per_s(moved, t),
                mib_per_s(moved, t) / b
            ));
            // To ext4 (fsync'd at the end: bounded by this disk) and to tmpfs (the network
            // and depot side alone).
            for (place, out) in [
                ("disk", dir.join("out.bin")),
                ("tmpfs", PathBuf::from(format!("/dev/shm/xnd-bench-{}.bin", std::process::id()))),
            ] {
                let down = DownloadOptions {
                    streams,
                    unit_bytes: 16 * MIB,
                    resume: false,
                    prefer: vec![],
                    config: config.clone(),
                };
                let start = Instant::now();
                download(&report.exnode, &out, &down, &|_| {}).expect("download");
                let t = start.elapsed().as_secs_f64();
                rows.push(format!(
                    "| download to {place} | {copies} | {streams} | {t:.2} | {:.0} | {:.2} |",
                    mib_per_s(size, t),
                    mib_per_s(size, t) / b
                ));
                let _ = std::fs::remove_file(&out);
            }
            // Free what this round stored so the depots never fill.
            let mut x = report.exnode;
            for m in std::mem::take(&mut x.mappings) {
                if let Some(cap) = m.manage.as_ref() {
                    let d = ibp_client::Depot::for_capability(cap, config.clone());
                    let _ = d.handle(cap).decr(ibp_client::proto::CapKind::Read);
                }
            }
        }
    }
    println!(
        "\n| operation | copies | streams | seconds | MiB/s | ratio to raw TCP, same streams |"
    );
    println!("|---|---|---|---|---|---|");
    for r in &rows {
        println!("{r}");
    }
    println!(
        "| local disk write + fsync (same file size) | - | 1 | {disk:.2} | {:.0} | - |",
        mib_per_s(size, disk)
    );
    println!("\nfile {mib} MiB, 4 depots x 1 core, 16 MiB blocks, CRC32 per 1 MiB");
    let _ = std::fs::remove_dir_all(&dir);
}
