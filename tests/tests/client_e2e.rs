//! The client library against the real `ibp-depot` binary on loopback: every call, errors
//! with their IBP codes, status, and the parallel engine with verification.
//!
//! Depots come from the shared harness (`ibp_tests::Depot`): the binary must be built first
//! (`cargo build --workspace --bins`, as `.ci/run` does; `IBP_DEPOT_BIN` overrides it), and
//! each test gets its own dir under /var/tmp (ext4: the depot refuses tmpfs for O_DIRECT).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use ibp_client::parallel::{self, ParallelConfig};
use ibp_client::proto::request::Reliability;
use ibp_client::proto::{CapKind, Capability, ErrorCode};
use ibp_client::{Config, Depot, Error};
use ibp_tests::{Depot as TestDepot, DepotOpts};

/// A depot as the original private helper started it: two shards, 256 MiB of disk.
fn start_depot() -> TestDepot {
    TestDepot::start(DepotOpts::default())
}

/// A library endpoint for the depot's main port.
fn endpoint(proc: &TestDepot) -> Depot {
    Depot::parse(&proc.addr().to_string(), config()).expect("address")
}

fn config() -> Config {
    Config {
        connect_timeout: Duration::from_secs(5),
        io_timeout: Duration::from_secs(10),
        op_timeout: Duration::from_secs(30),
        ..Config::default()
    }
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) ^ (i >> 12) as u8).collect()
}

#[test]
fn calls_round_trip_against_the_depot() {
    let proc = start_depot();
    let depot = endpoint(&proc);
    let caps = depot.allocate(1 << 20, 3600, Reliability::Hard, None).expect("allocate");
    assert_eq!(
        (caps.read.kind, caps.write.kind, caps.manage.kind),
        (CapKind::Read, CapKind::Write, CapKind::Manage)
    );
    // Capabilities name the owning shard; the client follows them.
    let write_depot = Depot::for_capability(&caps.write, config());
    let read_depot = Depot::for_capability(&caps.read, config());
    let w = write_depot.handle(&caps.write);
    assert_eq!(w.store(b"hello ").expect("store"), 6);
    assert_eq!(w.store(b"world").expect("store"), 5);
    assert_eq!(w.write(0, b"J").expect("write"), 1);
    let r = read_depot.handle(&caps.read);
    assert_eq!(r.load(0, 11).expect("load"), b"Jello world");

    let pieces = r.load_many(&[(6, 5), (0, 1), (1, 4)]).expect("pipelined loads");
    assert_eq!(pieces, vec![b"world".to_vec(), b"J".to_vec(), b"ello".to_vec()]);

    let m = read_depot.handle(&caps.manage);
    let p = m.probe().expect("probe");
    assert_eq!((p.size, p.max_size, p.reliability), (11, 1 << 20, 2));
    assert_eq!(read_depot.handle(&caps.read).probe().expect("probe via read cap").size, 11);
    m.change(2 << 20, Some(120), Some(Reliability::Soft)).expect("change");
    let p = m.probe().expect("probe");
    assert_eq!((p.max_size, p.reliability), (2 << 20, 1));
    assert!(p.seconds_left <= 120 && p.seconds_left > 100, "{}", p.seconds_left);
    m.truncate(5).expect("truncate");
    assert_eq!(m.probe().expect("probe").size, 5);

    let err = r.load(0, 100).expect_err("past the end");
    assert_eq!(err.ibp_code(), Some(ErrorCode::WouldExceedLimit), "{err}");
    assert!(!err.to_string().contains(&caps.read.key));

    let mut forged = caps.read.clone();
    forged.key = "A".repeat(forged.key.len());
    assert_eq!(
        read_depot.handle(&forged).load(0, 1).expect_err("forged key").ibp_code(),
        Some(ErrorCode::CapNotFound)
    );

    m.decr(CapKind::Read).expect("decr read (remove)");
    assert_eq!(r.load(0, 1).expect_err("removed").ibp_code(), Some(ErrorCode::CapNotFound));
}

#[test]
fn status_against_the_depot() {
    let proc = start_depot();
    let depot = endpoint(&proc);
    let res = depot.status_res().expect("res");
    assert!(!res.is_empty());
    let inq = depot.status_inq(Some(&res[0])).expect("inq");
    assert!(inq.served_total > 0, "{inq:?}");
    assert!(inq.max_duration_s > 0);
    assert!(!depot.status_version().expect("version").is_empty());
}

#[test]
fn refusals_are_typed() {
    let proc = start_depot();
    let depot = endpoint(&proc);
    let err = depot.allocate(0, 60, Reliability::Soft, None).expect_err("size 0");
    assert!(err.ibp_code().is_some(), "{err:?}");
    let err = depot.allocate(1 << 20, 0, Reliability::Soft, None).expect_err("duration 0");
    assert_eq!(err.ibp_code(), Some(ErrorCode::InvalidParameter), "{err:?}");
    let err = depot.allocate(1 << 60, 60, Reliability::Soft, None).expect_err("too big");
    assert!(err.ibp_code().is_some(), "{err:?}");
    assert!(Capability::parse("ibp://h:1/0#k").is_err());
    // A depot that is not there is a clear I/O error, quickly.
    let gone = Depot::parse("127.0.0.1:1", config()).expect("address");
    assert!(matches!(gone.status_res(), Err(Error::Io(_))));
}

#[test]
fn parallel_transfer_with_verify() {
    let proc = start_depot();
    let depot = endpoint(&proc);
    let len = 24 * 1024 * 1024 + 12_345;
    let caps = depot.allocate(len as u64, 3600, Reliability::Hard, None).expect("allocate");
    let data = pattern(len, 7);
    let src_path = proc.dir().join("src");
    std::fs::write(&src_path, &data).expect("source file");
    let src = std::fs::File::open(&src_path).expect("open source");
    let cfg =
        ParallelConfig { streams: 4, chunk_bytes: 1 << 20, depth: 2, ..ParallelConfig::default() };
    let confirmed = AtomicU64::new(0);
    let up_depot = Depot::for_capability(&caps.write, config());
    let up = parallel::upload(&up_depot, &caps.write, &src, 0, 0, len as u64, &cfg, &|n| {
        confirmed.fetch_add(n, Ordering::Relaxed);
    })
    .expect("upload");
    assert_eq!(confirmed.load(Ordering::Relaxed), len as u64);
    assert_eq!(up.streams, 4);

    let dst_path = proc.dir().join("dst");
    let dst = std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .read(true)
        .write(true)
        .open(&dst_path)
        .expect("destination");
    let down_depot = Depot::for_capability(&caps.read, config());
    let down = parallel::download(&down_depot, &caps.read, 0, len as u64, &dst, 0, &cfg, &|_| {})
        .expect("download");
    assert_eq!(down.crcs, up.crcs);
    let mut got = vec![0u8; len];
    dst.read_exact_at(&mut got, 0).expect("read back");
    assert!(got == data, "downloaded bytes differ");

    let report = parallel::verify(&down_depot, &caps.read, 0, len as u64, &up.crcs, &cfg, &|_| {})
        .expect("verify");
    assert!(report.mismatched.is_empty());
    println!(
        "client_e2e parallel: {} bytes up in {:?}, down in {:?}, 4 streams",
        len, up.elapsed, down.elapsed
    );
}

#[test]
fn back_off_from_a_full_depot_is_honoured_and_bounded() {
    let proc = TestDepot::start(DepotOpts {
        cores: 1,
        max_connections_per_core: 1,
        ..DepotOpts::default()
    });
    let addr = proc.addr().to_string();
    // Occupy the only connection slot.
    let mut hog = TcpStream::connect(proc.addr()).expect("connect");
    hog.write_all(b"1 4 3 30\n").expect("send");
    let mut reply = [0u8; 64];
    let n = hog.read(&mut reply).expect("hog is served");
    assert!(reply[..n].starts_with(b"1 "), "{:?}", String::from_utf8_lossy(&reply[..n]));

    let impatient = Config {
        max_backoff_retries: 1,
        max_single_backoff: Duration::from_millis(200),
        ..config()
    };
    match Depot::parse(&addr, impatient).expect("address").status_res() {
        Err(Error::BackoffExhausted { attempts: 2, .. }) => {}
        other => panic!("expected BackoffExhausted, got {other:?}"),
    }

    let release = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(300));
        drop(hog);
    });
    let patient = Config {
        max_backoff_retries: 20,
        max_single_backoff: Duration::from_millis(200),
        ..config()
    };
    let rids = Depot::parse(&addr, patient).expect("address").status_res();
    release.join().expect("release thread");
    assert!(!rids.expect("served once the slot is free").is_empty());
}

/// Bytes the parallel transfers run under a `kill -9` move.
const KILL_LEN: u64 = 192 << 20;
/// The depot is killed once this many bytes were confirmed.
const KILL_AFTER: u64 = 24 << 20;
/// A transfer must have failed this soon after the kill (io timeout 5 s, connect 2 s, three
/// quick reconnects that are refused).
const FAIL_AFTER_KILL: Duration = Duration::from_secs(12);

/// Runs `transfer` (given the progress callback) while a second thread `kill -9`s the depot
/// once `KILL_AFTER` bytes were confirmed; returns the transfer's result and how long after
/// the kill it came back. Panics if the transfer finished before the kill.
fn kill_under<T: std::fmt::Debug>(
    proc: &mut TestDepot,
    transfer: impl FnOnce(&(dyn Fn(u64) + Sync)) -> Result<T, Error>,
) -> (Error, Duration) {
    let moved = AtomicU64::new(0);
    let finished = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|scope| {
        let killer = scope.spawn(|| {
            let started = std::time::Instant::now();
            // Bounded: the transfer either moves the bytes, finishes, or we give up.
            while moved.load(Ordering::Relaxed) < KILL_AFTER {
                if finished.load(Ordering::Relaxed) || started.elapsed() > Duration::from_secs(60) {
                    return None;
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            proc.kill9();
            Some(std::time::Instant::now())
        });
        let result = transfer(&|n| {
            moved.fetch_add(n, Ordering::Relaxed);
        });
        finished.store(true, Ordering::Relaxed);
        let killed = killer.join().expect("killer thread");
        let killed = killed.unwrap_or_else(|| panic!("transfer ended before the kill: {result:?}"));
        (result.expect_err("a transfer through a killed depot fails"), killed.elapsed())
    })
}

/// The library's parallel engine, upload and download over 8 streams, with the depot
/// `kill -9`ed mid-way: `StreamFailed` naming the stream, with a connection error (or a
/// timeout) as its cause, well within the configured deadlines, and no key in the message.
#[test]
fn depot_killed_mid_parallel_transfer() {
    let opts = DepotOpts { cores: 1, capacity: "512MiB".into(), ..DepotOpts::default() };
    let cfg =
        ParallelConfig { streams: 8, chunk_bytes: 1 << 20, depth: 2, ..ParallelConfig::default() };
    let lib = Config {
        connect_timeout: Duration::from_secs(2),
        io_timeout: Duration::from_secs(5),
        ..config()
    };
    let check = |err: &Error, after: Duration, keys: &[&str]| {
        match err {
            Error::StreamFailed { source, retries: 3, .. }
                if matches!(**source, Error::Io(_) | Error::Timeout { .. }) => {}
            other => panic!("expected StreamFailed from a broken connection, got {other:?}"),
        }
        assert!(after < FAIL_AFTER_KILL, "failed only {after:?} after the kill");
        let msg = err.to_string();
        assert!(msg.contains("failed at offset"), "{msg}");
        assert!(keys.iter().all(|k| !msg.contains(k)), "a key leaked: {msg}");
    };

    let mut proc = TestDepot::start(opts.clone());
    let src_path = proc.dir().join("src");
    let src = std::fs::File::create(&src_path).expect("source file");
    src.set_len(KILL_LEN).expect("a sparse source");
    let src = std::fs::File::open(&src_path).expect("open the source");
    let caps = endpoint(&proc).allocate(KILL_LEN, 600, Reliability::Hard, None).expect("allocate");
    let up_depot = Depot::for_capability(&caps.write, lib.clone());
    let (err, up_after) = kill_under(&mut proc, |progress| {
        parallel::upload(&up_depot, &caps.write, &src, 0, 0, KILL_LEN, &cfg, progress)
    });
    check(&err, up_after, &[&caps.write.key]);
    drop(proc);

    let mut proc = TestDepot::start(opts);
    let caps = endpoint(&proc).allocate(KILL_LEN, 600, Reliability::Hard, None).expect("allocate");
    let up_depot = Depot::for_capability(&caps.write, lib.clone());
    parallel::upload(&up_depot, &caps.write, &src, 0, 0, KILL_LEN, &cfg, &|_| {}).expect("upload");
    let dst = std::fs::File::create(proc.dir().join("dst")).expect("destination");
    let down_depot = Depot::for_capability(&caps.read, lib);
    let (err, down_after) = kill_under(&mut proc, |progress| {
        parallel::download(&down_depot, &caps.read, 0, KILL_LEN, &dst, 0, &cfg, progress)
    });
    check(&err, down_after, &[&caps.read.key]);
    println!("client_e2e kill -9: upload failed {up_after:?} after it, download {down_after:?}");
}
