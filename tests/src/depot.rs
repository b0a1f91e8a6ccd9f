//! A real depot process per test: its own temp dir under /var/tmp (ext4, so O_DIRECT is real),
//! a config file written from [`DepotOpts`], stderr captured to a file, and the port read from
//! the first stdout line.
//!
//! The dir is removed on drop unless the test is failing (then its path is printed so the
//! journals, data files and log can be inspected). Drop kills the one process this harness
//! spawned, by its pid; the child also gets `PR_SET_DEATHSIG` so a test binary that dies
//! abruptly does not leave depots behind.

use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long a depot may take to print `listening on`.
pub const START_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a start retries while a port is still held by the previous process.
pub const BIND_RETRY_FOR: Duration = Duration::from_secs(10);
/// How long `stop` waits after SIGTERM before SIGKILL.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// Root of every test dir (ext4 here; tmpfs would fake O_DIRECT).
const TEST_ROOT: &str = "/var/tmp/ibp-tests";

/// Distinguishes dirs of depots started by one test process.
static DIR_SEQ: AtomicU64 = AtomicU64::new(0);

/// What the config file and command line say.
#[derive(Debug, Clone)]
pub struct DepotOpts {
    /// `--cores`: one shard (and one extra port) per core.
    pub cores: usize,
    /// Fixed listen port; `None` lets the depot pick (port 0).
    pub port: Option<u16>,
    /// `[depot] idle_timeout`.
    pub idle_timeout: String,
    pub max_connections_per_core: usize,
    /// `[depot] status_password`; `None` leaves it unset.
    pub status_password: Option<String>,
    /// Disk resource "1".
    pub capacity: String,
    pub max_duration: String,
    /// `max_alloc` of resource "1", when set.
    pub max_alloc: Option<String>,
    pub checksum_block: String,
    /// `admission_factor` of resource "1", when set (the depot's default is 1.0).
    pub admission_factor: Option<f64>,
    /// Adds resource "2", a 64 MiB RAM resource with the same max duration.
    pub ram_resource: bool,
    /// `RUST_LOG` for the depot (stderr goes to `depot.stderr.log` in the test dir).
    pub rust_log: String,
    /// `[depot] journal_size`, when set (small ones make compactions frequent).
    pub journal_size: Option<String>,
}

impl Default for DepotOpts {
    fn default() -> DepotOpts {
        DepotOpts {
            cores: 2,
            port: None,
            idle_timeout: "3s".into(),
            max_connections_per_core: 64,
            status_password: None,
            capacity: "256MiB".into(),
            max_duration: "1h".into(),
            max_alloc: None,
            checksum_block: "64KiB".into(),
            admission_factor: None,
            ram_resource: false,
            rust_log: "info".into(),
            journal_size: None,
        }
    }
}

impl DepotOpts {
    /// The TOML config for these options, with the disk resource at `data`.
    pub fn config_toml(&self, data: &Path) -> String {
        let mut t = String::from("[depot]\n");
        t += &format!("idle_timeout = {:?}\n", self.idle_timeout);
        t += &format!("max_connections_per_core = {}\n", self.max_connections_per_core);
        if let Some(pw) = &self.status_password {
            t += &format!("status_password = {pw:?}\n");
        }
        if let Some(j) = &self.journal_size {
            t += &format!("journal_size = {j:?}\n");
        }
        t += "\n[[resource]]\nrid = \"1\"\n";
        t += &format!("path = {:?}\n", data.display().to_string());
        t += &format!("capacity = {:?}\n", self.capacity);
        t += &format!("max_duration = {:?}\n", self.max_duration);
        if let Some(m) = &self.max_alloc {
            t += &format!("max_alloc = {m:?}\n");
        }
        t += &format!("checksum_block = {:?}\n", self.checksum_block);
        if let Some(f) = self.admission_factor {
            t += &format!("admission_factor = {f:?}\n");
        }
        if self.ram_resource {
            t += "\n[[resource]]\nrid = \"2\"\nkind = \"ram\"\ncapacity = \"64MiB\"\n";
            t += &format!("max_duration = {:?}\n", self.max_duration);
        }
        t
    }
}

/// A running (or killed, awaiting restart) depot.
#[derive(Debug)]
pub struct Depot {
    pub opts: DepotOpts,
    /// The per-test dir: config, logs, and `data/`.
    dir: PathBuf,
    child: Option<Child>,
    /// Copies stdout after the first line into `depot.stdout.log`, so the pipe never fills.
    stdout_pump: Option<JoinHandle<()>>,
    port: u16,
    /// How long the last start took to print `listening on` (recovery time after a crash),
    /// bind retries included.
    pub last_start: Duration,
    /// Starts retried because a port was still in use, over this depot's life.
    pub bind_retries: u32,
}

/// Path of the depot binary: `IBP_DEPOT_BIN`, else `<target>/<profile>/ibp-depot` next to the
/// `deps/` dir the test binary runs from.
pub fn depot_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("IBP_DEPOT_BIN") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().expect("current_exe is readable");
    let profile_dir = exe
        .parent()
        .and_then(|deps| if deps.ends_with("deps") { deps.parent() } else { Some(deps) })
        .expect("the test binary sits in <target>/<profile>/deps");
    let bin = profile_dir.join("ibp-depot");
    if !bin.is_file() {
        panic!(
            "{} not found: run `cargo build --bins` first (or set IBP_DEPOT_BIN)",
            bin.display()
        );
    }
    bin
}

fn test_name() -> String {
    let name = std::thread::current().name().unwrap_or("main").to_string();
    name.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }).take(60).collect()
}

impl Depot {
    /// Makes a fresh dir and starts a depot in it; panics (with the log) if it does not come up.
    pub fn start(opts: DepotOpts) -> Depot {
        let seq = DIR_SEQ.fetch_add(1, Ordering::Relaxed);
        let dir =
            PathBuf::from(TEST_ROOT).join(format!("{}-{}-{seq}", test_name(), std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(dir.join("data")).expect("create the test dir under /var/tmp");
        fs::write(dir.join("depot.toml"), opts.config_toml(&dir.join("data")))
            .expect("write depot.toml");
        let mut depot = Depot {
            port: opts.port.unwrap_or(0),
            opts,
            dir,
            child: None,
            stdout_pump: None,
            last_start: Duration::ZERO,
            bind_retries: 0,
        };
        depot.spawn();
        depot
    }

    /// The main listening port.
    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// Port of shard `i` (base + 1 + i).
    pub fn shard_addr(&self, i: usize) -> SocketAddr {
        let p = self.port + 1 + u16::try_from(i).expect("shard index fits u16");
        SocketAddr::from(([127, 0, 0, 1], p))
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The disk resource's dir (`shard-N.data` live here).
    pub fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    pub fn stderr_path(&self) -> PathBuf {
        self.dir.join("depot.stderr.log")
    }

    /// Everything the depot wrote to stderr so far (all starts).
    pub fn stderr_log(&self) -> String {
        fs::read(self.stderr_path())
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Resident set size of the depot in KiB (from /proc), if it is running.
    pub fn rss_kib(&self) -> Option<u64> {
        let status = fs::read_to_string(format!("/proc/{}/status", self.pid()?)).ok()?;
        let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
        line.split_whitespace().nth(1)?.parse().ok()
    }

    /// True while the process has not exited.
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// SIGKILL and reap. A no-op if it is not running.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        self.join_pump();
    }

    /// SIGTERM, wait up to 10 s, then SIGKILL. Returns true if it exited on SIGTERM.
    pub fn stop(&mut self) -> bool {
        let Some(mut c) = self.child.take() else { return true };
        let pid = libc::pid_t::try_from(c.id()).expect("pid fits pid_t");
        // SAFETY: kill(2) on the pid of a child we spawned and have not reaped yet.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let deadline = Instant::now() + STOP_TIMEOUT;
        let mut clean = false;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = c.try_wait() {
                clean = true;
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        if !clean {
            let _ = c.kill();
            let _ = c.wait();
        }
        self.join_pump();
        clean
    }

    /// Kills the process if it runs, then starts it again: same dir, config and port.
    pub fn restart(&mut self) {
        self.kill9();
        assert_ne!(self.port, 0, "restart needs the port of a first start");
        self.spawn();
    }

    fn join_pump(&mut self) {
        if let Some(h) = self.stdout_pump.take() {
            let _ = h.join();
        }
    }

    /// Starts the process and waits for its port. A start that fails only because a port is
    /// still in use (a killed io_uring process releases its sockets asynchronously) is retried
    /// every 100 ms for up to `BIND_RETRY_FOR`; each retry is counted in `bind_retries`.
    fn spawn(&mut self) {
        let started = Instant::now();
        loop {
            match self.try_spawn() {
                Ok(()) => break,
                Err(log) if log.contains("Address already in use") && started.elapsed() < BIND_RETRY_FOR => {
                    self.bind_retries += 1;
                    std::thread::sleep(Duration::from_millis(100));
                }
                Err(log) => panic!(
                    "depot in {} did not start (no `listening on` line within {START_TIMEOUT:?}); stderr:\n{}\n{}",
                    self.dir.display(),
                    tail(&log, 40),
                    sockets_near(self.port, self.opts.cores)
                ),
            }
        }
        self.last_start = started.elapsed();
    }

    /// One start; on failure, the stderr it wrote.
    fn try_spawn(&mut self) -> Result<(), String> {
        let log_len = fs::metadata(self.stderr_path()).map(|m| m.len()).unwrap_or(0);
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.stderr_path())
            .expect("open the stderr log");
        let mut cmd = Command::new(depot_bin());
        cmd.arg("--data")
            .arg(self.data_dir())
            .arg("--listen")
            .arg(format!("127.0.0.1:{}", self.port))
            .arg("--cores")
            .arg(self.opts.cores.to_string())
            .arg("--config")
            .arg(self.dir.join("depot.toml"))
            .env("RUST_LOG", &self.opts.rust_log)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log));
        // SAFETY: prctl is async-signal-safe; it only asks the kernel to SIGKILL the child
        // when the spawning thread exits, so a crashed test cannot leak depots.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let mut child =
            cmd.spawn().unwrap_or_else(|e| panic!("spawn {}: {e}", depot_bin().display()));
        let stdout = child.stdout.take().expect("stdout is piped");
        let (tx, rx) = mpsc::channel::<String>();
        let stdout_log = self.dir.join("depot.stdout.log");
        self.stdout_pump = Some(std::thread::spawn(move || pump_stdout(stdout, tx, &stdout_log)));
        // Disconnected (stdout closed: the process exited) or timed out.
        let first = rx.recv_timeout(START_TIMEOUT);
        self.child = Some(child);
        let Ok(line) = first else {
            self.kill9();
            let all = self.stderr_log();
            let new = all.get(usize::try_from(log_len).unwrap_or(0)..).unwrap_or(&all);
            return Err(new.to_string());
        };
        let port = line
            .trim()
            .strip_prefix("listening on ")
            .and_then(|a| a.parse::<SocketAddr>().ok())
            .map(|a| a.port());
        match port {
            Some(p) if self.port == 0 || self.port == p => self.port = p,
            _ => {
                self.kill9();
                panic!("first stdout line {line:?}: want `listening on 127.0.0.1:{}`", self.port);
            }
        }
        Ok(())
    }
}

/// Sends the first stdout line, then copies the rest into a file until EOF.
fn pump_stdout(stdout: std::process::ChildStdout, tx: mpsc::Sender<String>, log: &Path) {
    let mut reader = BufReader::new(stdout);
    let mut first = String::new();
    if reader.read_line(&mut first).unwrap_or(0) == 0 {
        return;
    }
    let _ = tx.send(first);
    let Ok(mut out) = OpenOptions::new().create(true).append(true).open(log) else { return };
    let mut line = String::new();
    // Bounded by the process: read_line returns 0 at EOF, which kill/exit guarantees.
    while reader.read_line(&mut line).unwrap_or(0) > 0 {
        let _ = out.write_all(line.as_bytes());
        line.clear();
    }
}

/// `ss` lines naming the base port or a shard port, to explain a failed bind.
fn sockets_near(port: u16, cores: usize) -> String {
    if port == 0 {
        return String::new();
    }
    let ports: Vec<String> = (1..=cores).map(|i| format!(":{}", usize::from(port) + i)).collect();
    let out = Command::new("ss").arg("-tanpe").output().map(|o| o.stdout).unwrap_or_default();
    let text = String::from_utf8_lossy(&out);
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| l.split_whitespace().any(|f| ports.iter().any(|p| f.ends_with(p.as_str()))))
        .take(20)
        .collect();
    format!(
        "sockets on shard ports {}..={}:\n{}",
        usize::from(port) + 1,
        usize::from(port) + cores,
        lines.join("\n")
    )
}

/// The last `n` lines of `text`.
pub fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

impl Drop for Depot {
    fn drop(&mut self) {
        self.kill9();
        if std::thread::panicking() {
            eprintln!(
                "test failed: keeping depot dir {} (stderr in depot.stderr.log)",
                self.dir.display()
            );
            eprintln!("--- depot stderr (tail) ---\n{}", tail(&self.stderr_log(), 30));
        } else {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

/// Flips every bit of the byte at `offset` in `path` (the depot must be stopped), syncs, and
/// returns the byte that was there.
pub fn flip_byte(path: &Path, offset: u64) -> u8 {
    use std::os::unix::fs::FileExt;
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    let mut b = [0u8; 1];
    f.read_exact_at(&mut b, offset)
        .unwrap_or_else(|e| panic!("read {}@{offset}: {e}", path.display()));
    f.write_all_at(&[!b[0]], offset).expect("write the flipped byte");
    f.sync_all().expect("fsync the data file");
    b[0]
}

/// Reads `len` bytes at `offset` of `path` through the page cache.
pub fn read_at(path: &Path, offset: u64, len: usize) -> Vec<u8> {
    use std::os::unix::fs::FileExt;
    let f = File::open(path).unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    let mut b = vec![0u8; len];
    f.read_exact_at(&mut b, offset)
        .unwrap_or_else(|e| panic!("read {}@{offset}: {e}", path.display()));
    b
}
