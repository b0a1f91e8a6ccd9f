//! The client library against the real `ibp-depot` binary on loopback: every call, errors
//! with their IBP codes, status, and the parallel engine with verification.
//!
//! The depot binary must be built first (`cargo build --workspace --bins`, as `.ci/run`
//! does); set `IBP_DEPOT_BIN` to use another one. Data lives under /var/tmp (ext4: the depot
//! refuses tmpfs for O_DIRECT).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use ibp_client::parallel::{self, ParallelConfig};
use ibp_client::proto::request::Reliability;
use ibp_client::proto::{CapKind, Capability, ErrorCode};
use ibp_client::{Config, Depot, Error};

/// Disk capacity of each test depot.
const TEST_CAPACITY: &str = "256MiB";

/// A depot process on a free loopback port, killed and cleaned up on drop.
struct DepotProcess {
    child: Child,
    addr: String,
    dir: PathBuf,
}

fn depot_binary() -> PathBuf {
    if let Some(bin) = std::env::var_os("IBP_DEPOT_BIN") {
        return PathBuf::from(bin);
    }
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/client_e2e-… → target/<profile>/ibp-depot
    let bin = exe.parent().and_then(|deps| deps.parent()).map(|p| p.join("ibp-depot"));
    match bin {
        Some(bin) if bin.exists() => bin,
        _ => panic!("ibp-depot binary not found: run `cargo build --workspace --bins` first"),
    }
}

impl DepotProcess {
    fn start(name: &str) -> DepotProcess {
        DepotProcess::start_with(name, 2, None)
    }

    /// A depot with `cores` shards and, optionally, a TOML config file.
    fn start_with(name: &str, cores: u32, config_toml: Option<&str>) -> DepotProcess {
        let dir =
            PathBuf::from("/var/tmp").join(format!("ibp-client-e2e-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("data dir");
        let mut command = Command::new(depot_binary());
        command.args(["--listen", "127.0.0.1:0", "--cores", &cores.to_string(), "--data"]);
        command.arg(dir.join("disk"));
        // Small capacity: the depot preallocates its region, and test machines are shared.
        let toml = format!(
            "{}\n[[resource]]\nkind = \"disk\"\npath = \"{}\"\ncapacity = \"{TEST_CAPACITY}\"\n",
            config_toml.unwrap_or(""),
            dir.join("disk").display()
        );
        let path = dir.join("depot.toml");
        std::fs::write(&path, toml).expect("config file");
        command.arg("--config").arg(path);
        let log = std::fs::File::create(dir.join("depot.log")).expect("log file");
        let mut child =
            command.stdout(Stdio::piped()).stderr(log).spawn().expect("start ibp-depot");
        let stdout = child.stdout.take().expect("stdout");
        // From here on, Drop kills the process and removes the directory even on panic.
        let mut proc = DepotProcess { child, addr: String::new(), dir };
        let mut first = String::new();
        BufReader::new(stdout).read_line(&mut first).expect("depot prints its address");
        match first.trim().strip_prefix("listening on ") {
            Some(addr) => proc.addr = addr.to_owned(),
            None => {
                let log = std::fs::read_to_string(proc.dir.join("depot.log")).unwrap_or_default();
                panic!("depot did not start: {first:?}\n{log}");
            }
        }
        proc
    }

    fn depot(&self) -> Depot {
        Depot::parse(&self.addr, config()).expect("address")
    }
}

impl Drop for DepotProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
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
    let proc = DepotProcess::start("calls");
    let depot = proc.depot();
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
    let proc = DepotProcess::start("status");
    let depot = proc.depot();
    let res = depot.status_res().expect("res");
    assert!(!res.is_empty());
    let inq = depot.status_inq(Some(&res[0])).expect("inq");
    assert!(inq.served_total > 0, "{inq:?}");
    assert!(inq.max_duration_s > 0);
    assert!(!depot.status_version().expect("version").is_empty());
}

#[test]
fn refusals_are_typed() {
    let proc = DepotProcess::start("refusals");
    let depot = proc.depot();
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
    let proc = DepotProcess::start("parallel");
    let depot = proc.depot();
    let len = 24 * 1024 * 1024 + 12_345;
    let caps = depot.allocate(len as u64, 3600, Reliability::Hard, None).expect("allocate");
    let data = pattern(len, 7);
    let src_path = proc.dir.join("src");
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

    let dst_path = proc.dir.join("dst");
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
    let proc =
        DepotProcess::start_with("backoff", 1, Some("[depot]\nmax_connections_per_core = 1\n"));
    // Occupy the only connection slot.
    let mut hog = TcpStream::connect(&proc.addr).expect("connect");
    hog.write_all(b"1 4 3 30\n").expect("send");
    let mut reply = [0u8; 64];
    let n = hog.read(&mut reply).expect("hog is served");
    assert!(reply[..n].starts_with(b"1 "), "{:?}", String::from_utf8_lossy(&reply[..n]));

    let impatient = Config {
        max_backoff_retries: 1,
        max_single_backoff: Duration::from_millis(200),
        ..config()
    };
    match Depot::parse(&proc.addr, impatient).expect("address").status_res() {
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
    let rids = Depot::parse(&proc.addr, patient).expect("address").status_res();
    release.join().expect("release thread");
    assert!(!rids.expect("served once the slot is free").is_empty());
}
