//! The client library against an in-memory fake depot (tests/support): calls, pooling,
//! `-66` back-off, timeouts, and the parallel engine's resume-after-cut and verify.

mod support;

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use ibp_client::parallel::{self, ParallelConfig};
use ibp_client::proto::request::Reliability;
use ibp_client::proto::{CapKind, ErrorCode};
use ibp_client::{AllocCaps, Config, Depot, Error, McopyMethod, McopyPlan, McopyStrategy};
use support::FakeDepot;

fn quick_config() -> Config {
    Config {
        connect_timeout: Duration::from_secs(2),
        io_timeout: Duration::from_secs(2),
        op_timeout: Duration::from_secs(5),
        max_single_backoff: Duration::from_millis(50),
        ..Config::default()
    }
}

fn setup(size: u64) -> (FakeDepot, Depot, AllocCaps) {
    let fake = FakeDepot::start();
    let depot = Depot::parse(&fake.host_port(), quick_config()).expect("address");
    let caps = depot.allocate(size, 3600, Reliability::Hard, None).expect("allocate");
    (fake, depot, caps)
}

fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 + i / 251) as u8).collect()
}

fn temp_file(name: &str, data: &[u8]) -> (std::path::PathBuf, File) {
    let dir = std::env::temp_dir().join(format!("ibp-client-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join(name);
    let mut f = File::create(&path).expect("create");
    f.write_all(data).expect("write");
    let f = OpenOptions::new().read(true).write(true).open(&path).expect("reopen");
    (path, f)
}

#[test]
fn allocate_store_load_probe_manage() {
    let (_fake, depot, caps) = setup(1 << 20);
    assert_eq!(caps.read.kind, CapKind::Read);
    let w = depot.handle(&caps.write);
    assert_eq!(w.store(b"hello ").expect("store"), 6);
    assert_eq!(w.store(b"world").expect("store"), 5);
    assert_eq!(w.write(0, b"J").expect("write"), 1);
    let r = depot.handle(&caps.read);
    assert_eq!(r.load(0, 11).expect("load"), b"Jello world");
    let m = depot.handle(&caps.manage);
    let p = m.probe().expect("probe");
    assert_eq!((p.size, p.max_size, p.read_refs), (11, 1 << 20, 1));
    m.change(2 << 20, Some(60), Some(Reliability::Soft)).expect("change");
    let p = m.probe().expect("probe");
    assert_eq!((p.max_size, p.seconds_left, p.reliability), (2 << 20, 60, 1));
    m.truncate(5).expect("truncate");
    assert_eq!(m.probe().expect("probe").size, 5);
    // Errors are typed and name the code, never the capability.
    let err = r.load(0, 100).expect_err("past the end");
    assert_eq!(err.ibp_code(), Some(ErrorCode::WouldExceedLimit));
    assert!(err.to_string().contains("IBP_E_WOULD_EXCEED_LIMIT"), "{err}");
    assert!(!err.to_string().contains(&caps.read.key));
    // Wrong kinds are refused before anything is sent.
    assert!(matches!(r.store(b"x"), Err(Error::WrongCapKind { .. })));
    m.incr(CapKind::Read).expect("incr");
    m.decr(CapKind::Read).expect("decr");
    m.decr(CapKind::Read).expect("decr to zero deletes");
    assert_eq!(r.load(0, 1).expect_err("deleted").ibp_code(), Some(ErrorCode::CapNotFound));
}

#[test]
fn pipelined_loads_come_back_in_order() {
    let (fake, depot, caps) = setup(1 << 20);
    let data = pattern(100_000);
    depot.handle(&caps.write).store(&data).expect("store");
    let ranges: Vec<(u64, u64)> = (0..40).map(|i| ((i * 2311) % 90_000, 1000 + i)).collect();
    let before = fake.connections.load(Ordering::SeqCst);
    let got = depot.handle(&caps.read).load_many(&ranges).expect("pipelined loads");
    assert!(fake.connections.load(Ordering::SeqCst) - before <= 1, "one connection");
    for ((off, len), bytes) in ranges.iter().zip(&got) {
        assert_eq!(bytes[..], data[*off as usize..(*off + *len) as usize]);
    }
}

#[test]
fn status_calls() {
    let (_fake, depot, _caps) = setup(10);
    let inq = depot.status_inq(None).expect("inq");
    assert_eq!((inq.rid.as_str(), inq.max_duration_s), ("0", 86400));
    assert_eq!(depot.status_res().expect("res"), vec!["0", "1"]);
    assert!(depot.status_version().expect("version").contains("fake depot"));
}

#[test]
fn pool_reuses_connections_and_survives_idle_close() {
    let (fake, depot, caps) = setup(1 << 16);
    let r = depot.handle(&caps.read);
    depot.handle(&caps.write).store(&pattern(1000)).expect("store");
    let before = fake.connections.load(Ordering::SeqCst);
    for _ in 0..20 {
        r.load(0, 1000).expect("load");
    }
    let reused = fake.connections.load(Ordering::SeqCst) - before;
    assert!(reused <= 1, "pooled: {reused} new connections for 20 loads");
    fake.faults.one_command_per_connection.store(true, Ordering::SeqCst);
    for _ in 0..5 {
        assert_eq!(r.load(0, 1000).expect("load after idle close"), pattern(1000));
    }
}

#[test]
fn backoff_is_honoured_then_bounded() {
    let (fake, depot, caps) = setup(1 << 16);
    drop(depot); // empty pool: the next call needs a new connection
    let depot = Depot::parse(&fake.host_port(), quick_config()).expect("address");
    fake.faults.backoff_connections.store(2, Ordering::SeqCst);
    let before = fake.connections.load(Ordering::SeqCst);
    depot.handle(&caps.manage).probe().expect("succeeds after two back-offs");
    assert_eq!(fake.connections.load(Ordering::SeqCst) - before, 3);
    let strict =
        Depot::parse(&fake.host_port(), Config { max_backoff_retries: 2, ..quick_config() })
            .expect("address");
    fake.faults.backoff_connections.store(10, Ordering::SeqCst);
    match strict.handle(&caps.manage).probe() {
        Err(Error::BackoffExhausted { attempts: 3, .. }) => {}
        other => panic!("expected BackoffExhausted, got {other:?}"),
    }
}

#[test]
fn silent_depot_times_out() {
    let (fake, _depot, caps) = setup(16);
    let depot = Depot::parse(
        &fake.host_port(),
        Config { io_timeout: Duration::from_millis(300), ..quick_config() },
    )
    .expect("address");
    fake.faults.silent.store(true, Ordering::SeqCst);
    let started = Instant::now();
    let err = depot.handle(&caps.manage).probe().expect_err("must time out");
    assert!(matches!(err, Error::Timeout { .. }), "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(3));
}

#[test]
fn streaming_variants() {
    let (_fake, depot, caps) = setup(8 << 20);
    let data = pattern(3 << 20 | 123);
    let n = depot
        .handle(&caps.write)
        .store_from(&mut &data[..], data.len() as u64)
        .expect("store_from");
    assert_eq!(n, data.len() as u64);
    let mut sink = Vec::new();
    depot.handle(&caps.read).load_to(0, data.len() as u64, &mut sink).expect("load_to");
    assert_eq!(sink, data);
}

fn small_chunks(streams: usize) -> ParallelConfig {
    ParallelConfig {
        streams,
        chunk_bytes: 64 * 1024,
        block_bytes: 16 * 1024,
        depth: 3,
        max_retries: 3,
        retry_pause: Duration::from_millis(10),
    }
}

#[test]
fn parallel_upload_download_verify() {
    let len = 3 * 1024 * 1024 + 4321;
    let (fake, depot, caps) = setup(len as u64);
    let data = pattern(len);
    let (_src_path, src) = temp_file("src", &data);
    let confirmed = AtomicU64::new(0);
    let progress = |n: u64| {
        confirmed.fetch_add(n, Ordering::Relaxed);
    };
    let cfg = small_chunks(4);
    let up = parallel::upload(&depot, &caps.write, &src, 0, 0, len as u64, &cfg, &progress)
        .expect("upload");
    assert_eq!(up.bytes, len as u64);
    assert_eq!(up.streams, 4);
    assert_eq!(confirmed.load(Ordering::Relaxed), len as u64);
    assert_eq!(fake.data(&caps.write), data);
    assert_eq!(up.crcs.len(), len.div_ceil(16 * 1024));

    let (_dst_path, dst) = temp_file("dst", &[]);
    let down = parallel::download(&depot, &caps.read, 0, len as u64, &dst, 0, &cfg, &|_| {})
        .expect("download");
    assert_eq!(down.crcs, up.crcs);
    let mut got = vec![0u8; len];
    std::os::unix::fs::FileExt::read_exact_at(&dst, &mut got, 0).expect("read back");
    assert_eq!(got, data);

    let ok = parallel::verify(&depot, &caps.read, 0, len as u64, &up.crcs, &cfg, &|_| {})
        .expect("verify");
    assert!(ok.mismatched.is_empty());
    fake.corrupt(&caps.read, 100_000);
    let bad = parallel::verify_file(&depot, &caps.read, 0, &src, 0, len as u64, &cfg, &|_| {})
        .expect("verify runs");
    assert_eq!(bad.mismatched, vec![100_000 / (16 * 1024)]);
    assert!(matches!(bad.into_result(0), Err(Error::VerifyMismatch { blocks: 1, .. })));
}

#[test]
fn parallel_streams_resume_after_cuts() {
    let len = 2 * 1024 * 1024;
    let (fake, depot, caps) = setup(len as u64);
    let data = pattern(len);
    let (_p, src) = temp_file("cut-src", &data);
    fake.faults.cut_min_len.store(64 * 1024, Ordering::SeqCst);
    fake.faults.cut_writes.store(3, Ordering::SeqCst);
    let confirmed = AtomicU64::new(0);
    let up =
        parallel::upload(&depot, &caps.write, &src, 0, 0, len as u64, &small_chunks(3), &|n| {
            confirmed.fetch_add(n, Ordering::Relaxed);
        })
        .expect("upload survives cut connections");
    assert!(up.retries >= 3, "retries {}", up.retries);
    assert_eq!(confirmed.load(Ordering::Relaxed), len as u64, "progress counts each byte once");
    assert_eq!(fake.data(&caps.write), data);

    fake.faults.cut_loads.store(3, Ordering::SeqCst);
    let (_q, dst) = temp_file("cut-dst", &[]);
    let down =
        parallel::download(&depot, &caps.read, 0, len as u64, &dst, 0, &small_chunks(3), &|_| {})
            .expect("download survives cut connections");
    assert!(down.retries >= 3);
    assert_eq!(down.crcs, up.crcs);
}

#[test]
fn parallel_gives_up_with_a_typed_error() {
    let len = 1024 * 1024;
    let (fake, depot, caps) = setup(len as u64);
    let (_p, src) = temp_file("fail-src", &pattern(len));
    fake.faults.cut_min_len.store(1, Ordering::SeqCst);
    fake.faults.cut_writes.store(1000, Ordering::SeqCst);
    let cfg = ParallelConfig { max_retries: 2, ..small_chunks(2) };
    let started = Instant::now();
    match parallel::upload(&depot, &caps.write, &src, 0, 0, len as u64, &cfg, &|_| {}) {
        Err(Error::StreamFailed { retries: 2, .. }) => {}
        other => panic!("expected StreamFailed, got {other:?}"),
    }
    assert!(started.elapsed() < Duration::from_secs(10));
    // A refusal (not transient) fails at once, without retries. A fresh handle: the pool of
    // the first one may still hold connections the fake cut while the streams gave up.
    fake.faults.cut_writes.store(0, Ordering::SeqCst);
    let depot = Depot::parse(&fake.host_port(), quick_config()).expect("address");
    match parallel::upload(&depot, &caps.write, &src, 0, 1, len as u64, &cfg, &|_| {}) {
        Err(e) => assert_eq!(e.ibp_code(), Some(ErrorCode::WouldExceedLimit), "{e:?}"),
        Ok(r) => panic!("writing past max size succeeded: {r:?}"),
    }
}

#[test]
fn mcopy_falls_back_to_sends_on_an_old_depot() {
    let (fake, depot, src) = setup(1 << 16);
    let data = pattern(5000);
    depot.handle(&src.write).store(&data).expect("store");
    let a = depot.allocate(1 << 16, 3600, Reliability::Hard, None).expect("allocate");
    let small = depot.allocate(100, 3600, Reliability::Hard, None).expect("allocate");
    let b = depot.allocate(1 << 16, 3600, Reliability::Hard, None).expect("allocate");
    let targets = [a.write.clone(), small.write.clone(), b.write.clone()];
    let plan = McopyPlan { strategy: McopyStrategy::Chain, streams: 1 };
    let report = depot.handle(&src.read).mcopy(&targets, 0, 5000, plan).expect("mcopy");
    assert_eq!(report.method, McopyMethod::SequentialSends, "the fake answers 60 with -43");
    assert_eq!(report.results[0].as_ref().ok(), Some(&5000));
    let err = report.results[1].as_ref().expect_err("too small");
    assert_eq!(err.ibp_code(), Some(ErrorCode::WouldExceedLimit));
    assert_eq!(report.results[2].as_ref().ok(), Some(&5000));
    assert_eq!(fake.data(&a.write), data);
    assert_eq!(fake.data(&b.write), data);
    // A plain SEND, with a bad source key: its own code.
    assert_eq!(depot.handle(&src.read).send(&a.write, 1000, 10).expect("send"), 10);
    assert_eq!(fake.data(&a.write)[5000..], data[1000..1010]);
    let mut bad = src.read.clone();
    bad.key = "nope".into();
    let err = depot.handle(&bad).send(&a.write, 0, 1).expect_err("bad source");
    assert_eq!(err.ibp_code(), Some(ErrorCode::CapNotFound));
    assert!(!err.to_string().contains(&a.write.key));
}
