//! The `ibp` command line against the real `ibp-depot` on loopback: round trips of awkward
//! sizes (1 byte to 1 GiB over 8 streams), `get -` to stdout, `--offset`/`--length`, the
//! documented exit codes and messages for bad capabilities, refused allocations and expired
//! leases, and a depot killed (`kill -9`) in the middle of a `put` and of a `get`.
//!
//! Depots come from the shared harness (`ibp_tests::Depot`); the `ibp` binary is looked up
//! next to the depot binary (`IBP_CLI_BIN` overrides it), so build the binaries first
//! (`cargo build --workspace --bins`). Every `ibp` run has a wall-clock limit: one that
//! overruns is killed (it is our own child) and the test fails, so nothing here can hang.
//!
//! Large files are written from a seeded PRNG in 1 MiB chunks and compared by a streaming
//! CRC-32, never held in memory; they live in the depot's test dir and are removed as soon as
//! the test is done with them, whether it passed or not.

use std::fs::{self, File};
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use ibp_client::proto::{Capability, ErrorCode};
use ibp_client::{Config, Depot};
use ibp_tests::depot::depot_bin;
use ibp_tests::{Depot as TestDepot, DepotOpts, Rng};

/// Longest an ordinary `ibp` run may take before the test kills it and fails.
const CLI_LIMIT: Duration = Duration::from_secs(60);
/// Chunk used to write and hash large files.
const IO_CHUNK: usize = 1 << 20;

// ---------------------------------------------------------------------------------------
// Running `ibp` with a bounded wait.

/// Path of the `ibp` binary: `IBP_CLI_BIN`, else beside the depot binary.
fn ibp_bin() -> PathBuf {
    if let Some(bin) = std::env::var_os("IBP_CLI_BIN") {
        return PathBuf::from(bin);
    }
    let bin = depot_bin().with_file_name("ibp");
    assert!(
        bin.is_file(),
        "{} not found: run `cargo build --workspace --bins` first (or set IBP_CLI_BIN)",
        bin.display()
    );
    bin
}

/// An `ibp` process whose stdout and stderr are drained by two threads (so a full pipe can
/// never block it).
struct Running {
    child: Child,
    started: Instant,
    stdout: Option<JoinHandle<Vec<u8>>>,
    stderr: Option<JoinHandle<Vec<u8>>>,
}

fn drain(mut from: impl Read + Send + 'static) -> JoinHandle<Vec<u8>> {
    thread::spawn(move || {
        let mut all = Vec::new();
        // Ends at EOF, which the process's exit (or our kill) guarantees.
        let _ = from.read_to_end(&mut all);
        all
    })
}

impl Running {
    fn spawn(args: &[&str]) -> Running {
        let mut child = Command::new(ibp_bin())
            .args(args)
            .env_remove("IBP_STATUS_PASSWORD")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run ibp");
        let stdout = child.stdout.take().map(drain);
        let stderr = child.stderr.take().map(drain);
        Running { child, started: Instant::now(), stdout, stderr }
    }

    /// Bytes the process has read and written so far (`rchar + wchar` of /proc/PID/io: file
    /// and socket I/O alike); 0 once it is gone.
    fn io_bytes(&self) -> u64 {
        let Ok(text) = fs::read_to_string(format!("/proc/{}/io", self.child.id())) else {
            return 0;
        };
        text.lines()
            .filter(|l| l.starts_with("rchar:") || l.starts_with("wchar:"))
            .filter_map(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
            .sum()
    }

    fn has_exited(&mut self) -> bool {
        !matches!(self.child.try_wait(), Ok(None))
    }

    /// Waits for the exit at most until `limit` after the start; past it, kills the process
    /// and fails the test.
    fn finish(mut self, limit: Duration, what: &str) -> Output {
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("wait for ibp") {
                break status;
            }
            if self.started.elapsed() > limit {
                let _ = self.child.kill();
                let _ = self.child.wait();
                let stderr = self.stderr.take().map(|h| h.join().unwrap_or_default());
                panic!(
                    "`ibp {what}` still running after {limit:?}: killed it; stderr: {}",
                    text(&stderr.unwrap_or_default())
                );
            }
            thread::sleep(Duration::from_millis(5));
        };
        let join = |h: Option<JoinHandle<Vec<u8>>>| h.map(|h| h.join().unwrap_or_default());
        Output {
            status,
            stdout: join(self.stdout.take()).unwrap_or_default(),
            stderr: join(self.stderr.take()).unwrap_or_default(),
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        // A test that panicked while the process ran: kill our own child by its handle.
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn ibp(args: &[&str]) -> Output {
    Running::spawn(args).finish(CLI_LIMIT, args.first().copied().unwrap_or(""))
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn ok(out: &Output) -> String {
    assert!(out.status.success(), "ibp failed: {}\n{}", text(&out.stderr), text(&out.stdout));
    text(&out.stdout)
}

/// Asserts a failure with `code`, a message on stderr containing every one of `needles`,
/// and none of `secrets` anywhere in the output; returns stderr.
fn fails(out: &Output, code: i32, needles: &[&str], secrets: &[&str]) -> String {
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(code), "stderr: {stderr}\nstdout: {stdout}");
    assert!(stderr.starts_with("ibp: error: "), "{stderr}");
    for needle in needles {
        assert!(stderr.contains(needle), "message lacks {needle:?}: {stderr}");
    }
    for secret in secrets.iter().filter(|s| !s.is_empty()) {
        assert!(
            !stderr.contains(secret) && !stdout.contains(secret),
            "a capability key leaked into the output: {stderr}"
        );
    }
    stderr
}

fn at(path: &Path) -> String {
    format!("@{}", path.display())
}

fn utf8(path: &Path) -> &str {
    path.to_str().expect("test paths are UTF-8")
}

// ---------------------------------------------------------------------------------------
// Capabilities and files.

/// The three capability files of one `allocate --save`, and their keys.
struct Saved {
    read: PathBuf,
    write: PathBuf,
    manage: PathBuf,
}

impl Saved {
    fn cap(path: &Path) -> Capability {
        let url = fs::read_to_string(path).expect("read a capability file");
        Capability::parse(url.trim()).expect("allocate saved a valid capability")
    }

    fn keys(&self) -> [String; 3] {
        [&self.read, &self.write, &self.manage].map(|p| Saved::cap(p).key)
    }
}

/// `ibp allocate ADDR --size SIZE --duration DURATION --save DIR/NAME`.
fn allocate(depot: &TestDepot, name: &str, size: &str, duration: &str) -> Saved {
    let prefix = depot.dir().join(name);
    ok(&ibp(&[
        "allocate",
        &depot.addr().to_string(),
        "--size",
        size,
        "--duration",
        duration,
        "--save",
        utf8(&prefix),
    ]));
    Saved {
        read: prefix.with_extension("read"),
        write: prefix.with_extension("write"),
        manage: prefix.with_extension("manage"),
    }
}

/// Files removed on drop, passed or failed: a kept 1 GiB file would fill the test disk.
struct Scratch(Vec<PathBuf>);

impl Drop for Scratch {
    fn drop(&mut self) {
        for path in &self.0 {
            let _ = fs::remove_file(path);
        }
    }
}

/// Writes `len` bytes of the seeded splitmix64 stream to `path` in 1 MiB chunks and returns
/// their CRC-32.
fn write_random_file(path: &Path, len: u64, seed: u64) -> u32 {
    let mut rng = Rng::new(seed);
    let mut out = BufWriter::new(File::create(path).expect("create a source file"));
    let mut hasher = crc32fast::Hasher::new();
    let mut chunk = vec![0u8; IO_CHUNK];
    let mut left = len;
    while left > 0 {
        let n = usize::try_from(left.min(IO_CHUNK as u64)).expect("chunk fits usize");
        rng.fill(&mut chunk[..n]);
        hasher.update(&chunk[..n]);
        out.write_all(&chunk[..n]).expect("write the source file");
        left -= n as u64;
    }
    out.into_inner().expect("flush the source file").sync_all().ok();
    hasher.finalize()
}

/// Length and CRC-32 of a file, read in 1 MiB chunks.
fn file_crc(path: &Path) -> (u64, u32) {
    let mut file = File::open(path).unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    let mut hasher = crc32fast::Hasher::new();
    let mut chunk = vec![0u8; IO_CHUNK];
    let mut len = 0u64;
    loop {
        let n = file.read(&mut chunk).expect("read a downloaded file");
        if n == 0 {
            break (len, hasher.finalize());
        }
        hasher.update(&chunk[..n]);
        len += n as u64;
    }
}

/// The first `len` bytes of the stream [`write_random_file`] writes for `seed`.
fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut out = vec![0u8; len];
    let mut rng = Rng::new(seed);
    for chunk in out.chunks_mut(IO_CHUNK) {
        rng.fill(chunk);
    }
    out
}

fn library_config() -> Config {
    Config {
        connect_timeout: Duration::from_secs(2),
        io_timeout: Duration::from_secs(5),
        op_timeout: Duration::from_secs(10),
        ..Config::default()
    }
}

// ---------------------------------------------------------------------------------------
// The original round trip and exit-code checks.

#[test]
fn round_trip_with_capability_files() {
    // `change --duration 2h` below needs a longer maximum lease than the harness's 1 h.
    let depot = TestDepot::start(DepotOpts { max_duration: "1d".into(), ..DepotOpts::default() });
    let addr = depot.addr().to_string();
    let prefix = depot.dir().join("cap");
    ok(&ibp(&[
        "allocate",
        &addr,
        "--size",
        "32MiB",
        "--duration",
        "1h",
        "--save",
        prefix.to_str().expect("utf8"),
    ]));
    let (read, write, manage) = (
        prefix.with_extension("read"),
        prefix.with_extension("write"),
        prefix.with_extension("manage"),
    );
    let secret = std::fs::read_to_string(&read).expect("read cap file");
    let src = depot.dir().join("src");
    let data: Vec<u8> = (0..9_000_123u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(&src, &data).expect("source");
    let put = ok(&ibp(&[
        "put",
        src.to_str().expect("utf8"),
        &at(&write),
        "--streams",
        "3",
        "--chunk",
        "1MiB",
        "--verify",
        "--read-cap",
        &at(&read),
    ]));
    assert!(put.contains("verified"), "{put}");
    let dst = depot.dir().join("dst");
    ok(&ibp(&["get", &at(&read), dst.to_str().expect("utf8"), "--verify"]));
    assert!(std::fs::read(&dst).expect("downloaded") == data);
    let piece = ibp(&["get", &at(&read), "-", "--offset", "1000", "--length", "100", "--quiet"]);
    assert_eq!(piece.stdout, data[1000..1100]);

    let probe = ok(&ibp(&["--json", "probe", &at(&manage)]));
    assert!(probe.contains("\"size\":9000123"), "{probe}");
    ok(&ibp(&["change", &at(&manage), "--duration", "2h", "--soft"]));
    assert!(ok(&ibp(&["--json", "probe", &at(&read)])).contains("\"reliability\":\"soft\""));
    ok(&ibp(&["truncate", &at(&manage), "1MiB"]));
    ok(&ibp(&["incr", &at(&manage)]));
    ok(&ibp(&["decr", &at(&manage)]));
    let status = ok(&ibp(&["status", &addr]));
    assert!(status.contains("RID"), "{status}");
    ok(&ibp(&["rm", &at(&manage)]));

    let gone = ibp(&["probe", &at(&read)]);
    assert_eq!(gone.status.code(), Some(4), "removed allocation is a refusal");
    let stderr = text(&gone.stderr);
    assert!(stderr.contains("IBP_E_CAP_NOT_FOUND"), "{stderr}");
    let key = secret.trim().rsplit('#').next().and_then(|k| k.split('/').next()).expect("key");
    assert!(!stderr.contains(key), "capability key leaked into an error");
}

#[test]
fn exit_codes_and_json_errors() {
    let depot = TestDepot::start(DepotOpts::default());
    let addr = depot.addr().to_string();
    assert_eq!(ibp(&["probe", "ibp://h:1/0#bad key/1/READ"]).status.code(), Some(3));
    assert_eq!(ibp(&["probe", "not-a-cap"]).status.code(), Some(3));
    let caps = ok(&ibp(&["--json", "allocate", &addr, "--size", "1MiB", "--duration", "10m"]));
    let write =
        caps.split("\"write\":\"").nth(1).and_then(|s| s.split('"').next()).expect("write cap");
    let wrong_kind = ibp(&["truncate", write, "5"]);
    assert_eq!(wrong_kind.status.code(), Some(3));
    assert!(text(&wrong_kind.stderr).contains("needs a MANAGE capability"));
    assert_eq!(
        ibp(&["allocate", &addr, "--size", "1GiB", "--duration", "1000d"]).status.code(),
        Some(4)
    );
    let refused = ibp(&["--json", "allocate", &addr, "--size", "0", "--duration", "1h"]);
    assert_eq!(refused.status.code(), Some(4));
    assert!(text(&refused.stdout).contains("\"ibp_code\":"), "{}", text(&refused.stdout));
    assert_eq!(ibp(&["--connect-timeout", "2s", "status", "127.0.0.1:1"]).status.code(), Some(5));
    assert_eq!(
        ibp(&["allocate", &addr, "--size", "lots", "--duration", "1h"]).status.code(),
        Some(2)
    );
    assert_eq!(ibp(&["put", "/nonexistent/file", write]).status.code(), Some(9));
}

// ---------------------------------------------------------------------------------------
// Round trips.

/// Allocates exactly `len` bytes, `put`s a PRNG file of that length with `put_args`, `get`s
/// it back with `get_args`, and compares length and CRC-32. Returns (put, get) wall times.
fn round_trip(
    depot: &TestDepot,
    len: u64,
    seed: u64,
    put_args: &[&str],
    get_args: &[&str],
) -> (Duration, Duration) {
    let name = format!("rt{len}");
    let src = depot.dir().join(format!("{name}.src"));
    let dst = depot.dir().join(format!("{name}.dst"));
    let _scratch = Scratch(vec![src.clone(), dst.clone()]);
    let want = write_random_file(&src, len, seed);
    let caps = allocate(depot, &name, &len.to_string(), "10m");

    let started = Instant::now();
    let mut args = vec!["put", utf8(&src)];
    let write = at(&caps.write);
    args.push(&write);
    args.extend_from_slice(put_args);
    let put = ok(&ibp(&args));
    let put_time = started.elapsed();
    assert!(put.contains(&format!("({len} bytes)")), "{put}");

    let started = Instant::now();
    let read = at(&caps.read);
    let mut args = vec!["get", &read, utf8(&dst)];
    args.extend_from_slice(get_args);
    ok(&ibp(&args));
    let get_time = started.elapsed();
    assert_eq!(file_crc(&dst), (len, want), "{len}-byte file came back different");
    (put_time, get_time)
}

/// 1 byte, one byte either side of a 4 KiB page, and 1 MiB + 1 (17 chunks of 64 KiB over 4
/// streams, the last one a single byte) come back byte-identical, each with `--verify`.
#[test]
fn round_trips_of_awkward_sizes() {
    let depot = TestDepot::start(DepotOpts::default());
    let tuning = ["--streams", "4", "--chunk", "64KiB", "--verify"];
    for (i, len) in [1u64, 4095, 4097, (1 << 20) + 1].into_iter().enumerate() {
        let mut put_args = tuning.to_vec();
        let read = depot.dir().join(format!("rt{len}.read"));
        let read = at(&read);
        put_args.extend_from_slice(&["--read-cap", &read]);
        round_trip(&depot, len, 0x5eed_0000 + i as u64, &put_args, &tuning);
    }
}

/// `get -` streams exactly the bytes to stdout; `--offset`/`--length` pick a range (to a
/// file and to stdout), an offset alone reads to the end, and `put --offset` places a second
/// file after the first.
#[test]
fn get_to_stdout_and_ranges() {
    let depot = TestDepot::start(DepotOpts::default());
    let caps = allocate(&depot, "ranges", "8KiB", "10m");
    let (a, b) = (depot.dir().join("a"), depot.dir().join("b"));
    let _scratch = Scratch(vec![a.clone(), b.clone()]);
    write_random_file(&a, 4095, 11);
    write_random_file(&b, 4097, 12);
    let mut data = random_bytes(4095, 11);
    data.extend_from_slice(&random_bytes(4097, 12));
    let (read, write) = (at(&caps.read), at(&caps.write));
    ok(&ibp(&["put", utf8(&a), &write]));
    ok(&ibp(&["put", utf8(&b), &write, "--offset", "4095"]));

    let whole = ibp(&["get", &read, "-"]);
    ok(&whole);
    assert!(
        whole.stdout == data,
        "get - returned {} bytes, not the 8192 stored",
        whole.stdout.len()
    );
    let quiet = ibp(&["--quiet", "get", &read, "-", "--offset", "4000", "--length", "97"]);
    ok(&quiet);
    assert_eq!(quiet.stdout, data[4000..4097]);
    let tail = ibp(&["get", &read, "-", "--offset", "8000"]);
    ok(&tail);
    assert_eq!(tail.stdout, data[8000..]);

    let piece = depot.dir().join("piece");
    ok(&ibp(&["get", &read, utf8(&piece), "--offset", "4090", "--length", "10", "--verify"]));
    assert_eq!(fs::read(&piece).expect("piece"), data[4090..4100]);
    let empty = ibp(&["get", &read, "-", "--offset", "8192"]);
    ok(&empty);
    assert!(empty.stdout.is_empty());

    let keys = caps.keys();
    let secrets: Vec<&str> = keys.iter().map(String::as_str).collect();
    let past = ibp(&["get", &read, utf8(&piece), "--offset", "9000"]);
    fails(&past, 3, &["offset 9000 is past the end (8192 bytes)"], &secrets);
    let beyond = ibp(&["get", &read, "-", "--offset", "8000", "--length", "1000"]);
    fails(&beyond, 4, &["IBP_E_WOULD_EXCEED_LIMIT", "goes past the allocation"], &secrets);
    assert!(beyond.stdout.len() < 1000, "a refused range still streamed {}", beyond.stdout.len());
    let to_file = ibp(&["get", &read, utf8(&piece), "--offset", "8000", "--length", "1000"]);
    fails(&to_file, 4, &["IBP_E_WOULD_EXCEED_LIMIT"], &secrets);
    assert!(!piece.exists(), "a failed get left {} behind", piece.display());
}

/// 1 GiB over 8 streams each way, compared by a streaming CRC-32 (the suite's long pole).
#[test]
fn round_trip_1gib_with_8_streams() {
    let depot = TestDepot::start(DepotOpts {
        cores: 1,
        capacity: "1536MiB".into(),
        ..DepotOpts::default()
    });
    let streams = ["--streams", "8"];
    let (put, get) = round_trip(&depot, 1 << 30, 0x1_0000_0000, &streams, &streams);
    println!("client_cli 1 GiB, 8 streams: put {put:?}, get {get:?}");
}

// ---------------------------------------------------------------------------------------
// The depot killed mid-transfer.

/// Size of the transfers a depot is killed under.
const KILL_LEN: u64 = 256 << 20;
/// The depot is killed once `ibp` has moved this many bytes (file plus socket I/O).
const KILL_AFTER_IO: u64 = 24 << 20;
/// Once the depot is gone, `ibp` must have exited within this (its `--timeout` is 5 s and
/// `--connect-timeout` 2 s; a refused reconnect fails at once).
const EXIT_AFTER_KILL: Duration = Duration::from_secs(12);

/// Kills `depot` once `run` has done `KILL_AFTER_IO` bytes of I/O, then waits (bounded) for
/// `ibp` to fail; returns its output and how long after the kill it exited.
fn kill_depot_under(depot: &mut TestDepot, mut run: Running, what: &str) -> (Output, Duration) {
    let wait_for_io = Instant::now();
    while run.io_bytes() < KILL_AFTER_IO {
        assert!(!run.has_exited(), "`ibp {what}` exited before the depot was killed");
        assert!(wait_for_io.elapsed() < CLI_LIMIT, "`ibp {what}` made no progress");
        thread::sleep(Duration::from_millis(1));
    }
    depot.kill9();
    let killed = Instant::now();
    let out = run.finish(CLI_LIMIT, what);
    let after = killed.elapsed();
    assert!(after < EXIT_AFTER_KILL, "`ibp {what}` took {after:?} to fail after the kill");
    (out, after)
}

/// `kill -9` of the depot in the middle of an 8-stream `put` and of a `get`: `ibp` fails
/// with exit code 5 (the connection broke; 6 if a socket had gone silent instead) and a
/// message naming the failed stream and the cause, well within its deadlines.
#[test]
fn depot_killed_mid_put_and_mid_get() {
    let opts = DepotOpts { cores: 1, capacity: "512MiB".into(), ..DepotOpts::default() };
    let mut first = TestDepot::start(opts.clone());
    let src = first.dir().join("big.src");
    let dst = first.dir().join("big.dst");
    let _scratch = Scratch(vec![src.clone(), dst.clone()]);
    write_random_file(&src, KILL_LEN, 0xdead);
    let deadlines = ["--timeout", "5s", "--connect-timeout", "2s"];
    let needles = ["failed at offset", "after 3 retries"];

    let caps = allocate(&first, "put", &KILL_LEN.to_string(), "10m");
    let keys = caps.keys();
    let secrets: Vec<&str> = keys.iter().map(String::as_str).collect();
    let write = at(&caps.write);
    let mut args = deadlines.to_vec();
    args.extend_from_slice(&["put", utf8(&src), &write, "--streams", "8", "--chunk", "1MiB"]);
    let (out, put_after) = kill_depot_under(&mut first, Running::spawn(&args), "put");
    let code = out.status.code();
    assert!(matches!(code, Some(5 | 6)), "put: exit {code:?}: {}", text(&out.stderr));
    let msg = fails(&out, code.unwrap_or(0), &needles, &secrets);
    assert!(msg.contains("connection error") || msg.contains("timed out"), "{msg}");

    // A fresh depot (the source file stays in the first one's dir) with the whole file in
    // it, killed under a `get`.
    let mut depot = TestDepot::start(opts);
    let caps = allocate(&depot, "get", &KILL_LEN.to_string(), "10m");
    let keys = caps.keys();
    let secrets: Vec<&str> = keys.iter().map(String::as_str).collect();
    ok(&ibp(&["put", utf8(&src), &at(&caps.write), "--streams", "4"]));
    let read = at(&caps.read);
    let mut args = deadlines.to_vec();
    args.extend_from_slice(&["get", &read, utf8(&dst), "--streams", "2", "--chunk", "1MiB"]);
    let (out, get_after) = kill_depot_under(&mut depot, Running::spawn(&args), "get");
    assert!(!dst.exists(), "a get broken by the kill left a full-length file with holes");
    let code = out.status.code();
    assert!(matches!(code, Some(5 | 6)), "get: exit {code:?}: {}", text(&out.stderr));
    let msg = fails(&out, code.unwrap_or(0), &needles, &secrets);
    assert!(msg.contains("connection error") || msg.contains("timed out"), "{msg}");
    println!("client_cli kill -9: put failed {put_after:?} after it, get {get_after:?}");
}

// ---------------------------------------------------------------------------------------
// Clear messages and exit codes.

/// Malformed capability URLs exit 3 naming the problem, on the command line and in a file;
/// a well-formed capability with an unknown key exits 4 with `IBP_E_CAP_NOT_FOUND` (text and
/// JSON). No message repeats the key.
#[test]
fn bad_capabilities_are_named_without_the_key() {
    let depot = TestDepot::start(DepotOpts::default());
    let port = depot.addr().port();
    let key = "Zm9yZ2VkLWtleS10aGF0LWlzLXNlY3JldA";
    let malformed = [
        format!("ibp://127.0.0.1:{port}/1#{key}/0"),
        format!("http://127.0.0.1:{port}/1#{key}/0/READ"),
        format!("ibp://127.0.0.1:notaport/1#{key}/0/READ"),
        format!("ibp://127.0.0.1:{port}/1#{key} and more/0/READ"),
        format!("ibp://127.0.0.1:{port}/1#{key}/0/SIDEWAYS"),
    ];
    let out_file = depot.dir().join("out");
    let cap_file = depot.dir().join("bad.cap");
    for url in &malformed {
        for args in [
            vec!["probe", url.as_str()],
            vec!["get", url.as_str(), utf8(&out_file)],
            vec!["put", "/dev/null", url.as_str()],
        ] {
            fails(&ibp(&args), 3, &["bad capability"], &[key]);
        }
        fs::write(&cap_file, url).expect("write a capability file");
        fails(&ibp(&["probe", &at(&cap_file)]), 3, &["bad capability"], &[key]);
    }

    let caps = allocate(&depot, "real", "1MiB", "10m");
    let mut forged = Saved::cap(&caps.read);
    forged.key = key.to_string();
    let forged_read = forged.to_url();
    let needles = ["IBP_E_CAP_NOT_FOUND", "the capability is wrong"];
    fails(&ibp(&["probe", &forged_read]), 4, &needles, &[key]);
    fails(&ibp(&["get", &forged_read, utf8(&out_file)]), 4, &needles, &[key]);
    fails(&ibp(&["get", &forged_read, "-", "--length", "1"]), 4, &needles, &[key]);
    let mut forged = Saved::cap(&caps.write);
    forged.key = key.to_string();
    let src = depot.dir().join("one");
    fs::write(&src, b"x").expect("source");
    fails(&ibp(&["put", utf8(&src), &forged.to_url()]), 4, &needles, &[key]);

    let json = ibp(&["--json", "probe", &forged_read]);
    assert_eq!(json.status.code(), Some(4));
    let stdout = text(&json.stdout);
    for field in ["\"ibp_code\":-4", "\"ibp_name\":\"IBP_E_CAP_NOT_FOUND\"", "\"exit_code\":4"] {
        assert!(stdout.contains(field), "{stdout}");
    }
    assert!(!stdout.contains(key), "{stdout}");
}

/// An allocation larger than the depot can hold and a lease longer than its maximum (1 h
/// here) exit 4 naming the IBP code, with a hint.
#[test]
fn refused_allocations_name_the_reason() {
    let depot = TestDepot::start(DepotOpts::default());
    let addr = depot.addr().to_string();
    let too_big = ibp(&["allocate", &addr, "--size", "1TiB", "--duration", "1m"]);
    let msg = fails(&too_big, 4, &["depot refused: IBP_E_", "ibp: hint: "], &[]);
    assert!(
        ["IBP_E_WOULD_EXCEED_POLICY", "IBP_E_RSRC_UNAVAIL", "IBP_E_ALLOC_FAILED"]
            .iter()
            .any(|name| msg.contains(name)),
        "{msg}"
    );
    let too_long = ibp(&["allocate", &addr, "--size", "1MiB", "--duration", "2h"]);
    fails(&too_long, 4, &["IBP_E_LONG_DURATION", "shorter --duration"], &[]);
    let json = ibp(&["--json", "allocate", &addr, "--size", "1MiB", "--duration", "2h"]);
    assert_eq!(json.status.code(), Some(4));
    assert!(text(&json.stdout).contains("\"ibp_name\":\"IBP_E_LONG_DURATION\""));
}

/// A 2-second lease, once the depot reports it gone, makes `get`, `probe` and `put` exit 4
/// with `IBP_E_CAP_NOT_FOUND` and the hint that it may have expired, keys unnamed.
#[test]
fn expired_lease_is_a_clear_refusal() {
    let depot = TestDepot::start(DepotOpts::default());
    let allocated = Instant::now();
    let caps = allocate(&depot, "lease", "64KiB", "2s");
    let keys = caps.keys();
    let secrets: Vec<&str> = keys.iter().map(String::as_str).collect();
    let src = depot.dir().join("small");
    fs::write(&src, b"short-lived").expect("source");
    ok(&ibp(&["put", utf8(&src), &at(&caps.write)]));

    // Poll (bounded) through the library until the depot no longer knows the allocation.
    let read_cap = Saved::cap(&caps.read);
    let lib = Depot::for_capability(&read_cap, library_config());
    let mut polls = 0;
    loop {
        match lib.handle(&read_cap).probe() {
            Ok(_) => {}
            Err(e) if e.ibp_code() == Some(ErrorCode::CapNotFound) => break,
            Err(e) => panic!("probe of a 2 s lease: {e}"),
        }
        polls += 1;
        assert!(polls < 100, "a 2 s lease still there after {:?}", allocated.elapsed());
        thread::sleep(Duration::from_millis(100));
    }
    // The depot keeps leases in whole seconds (unix time), so a 2 s lease lasts over 1 s.
    assert!(allocated.elapsed() > Duration::from_secs(1), "expired early");

    let needles = ["IBP_E_CAP_NOT_FOUND", "has expired"];
    let dst = depot.dir().join("dst");
    fails(&ibp(&["get", &at(&caps.read), utf8(&dst)]), 4, &needles, &secrets);
    fails(&ibp(&["get", &at(&caps.read), "-", "--length", "4"]), 4, &needles, &secrets);
    fails(&ibp(&["probe", &at(&caps.read)]), 4, &needles, &secrets);
    fails(&ibp(&["probe", &at(&caps.manage)]), 4, &needles, &secrets);
    fails(&ibp(&["put", utf8(&src), &at(&caps.write)]), 4, &needles, &secrets);
}
