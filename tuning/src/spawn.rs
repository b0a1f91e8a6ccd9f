//! `--spawn DIR`: start one of our depots for the duration of a run, and stop it after.
//!
//! The depot binary is `IBP_DEPOT_BIN`, else `ibp-depot` next to the running `ibp-bench`
//! (both come out of the same `cargo build`). It gets a config file of ours: a disk resource
//! (RID 1) in `DIR/ibp-bench-<pid>/disk`, and with `--ram` a RAM resource (RID 2), port 0 on
//! 127.0.0.1. We read its first stdout line (`listening on ADDR:PORT`), send its logs to a
//! file beside the data, and on drop stop it by its pid (SIGTERM, then SIGKILL after a grace
//! period) and remove the directory.

use std::fs;
use std::io::{self, BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// How long a depot may take to print `listening on` (recovery of an empty journal is fast;
/// fallocate of a large region is the slow part).
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// Grace between SIGTERM and SIGKILL when stopping.
const STOP_GRACE: Duration = Duration::from_secs(3);
/// RID of the disk resource of a spawned depot.
pub const DISK_RID: &str = "1";
/// RID of the RAM resource of a spawned depot (with `--ram`).
pub const RAM_RID: &str = "2";

/// What to start.
#[derive(Clone, Debug)]
pub struct SpawnSpec {
    pub dir: PathBuf,
    /// Shards; 0 = all cores.
    pub cores: usize,
    pub disk_capacity_bytes: u64,
    pub ram_capacity_bytes: Option<u64>,
    /// `checksum_block` of every resource (`None`: the depot's default).
    pub checksum_block_bytes: Option<u64>,
}

/// A running depot of ours; stopped and cleaned up on drop.
pub struct SpawnedDepot {
    child: Child,
    pub addr: SocketAddr,
    /// Everything this depot wrote, removed on drop.
    root: PathBuf,
}

/// Finds the `ibp-depot` binary.
pub fn depot_binary() -> io::Result<PathBuf> {
    if let Some(bin) = std::env::var_os("IBP_DEPOT_BIN") {
        return Ok(PathBuf::from(bin));
    }
    let exe = std::env::current_exe()?;
    let dir = exe.parent().ok_or_else(|| io::Error::other("ibp-bench has no parent directory"))?;
    // Test binaries live in target/<profile>/deps; the depot is one level up.
    for candidate in [dir.join("ibp-depot"), dir.join("../ibp-depot")] {
        if candidate.is_file() {
            return Ok(candidate);
        }
    }
    Err(io::Error::new(
        io::ErrorKind::NotFound,
        format!(
            "no ibp-depot next to {} (build it with `cargo build --bins`, or set IBP_DEPOT_BIN)",
            exe.display()
        ),
    ))
}

impl SpawnedDepot {
    pub fn start(spec: &SpawnSpec) -> io::Result<SpawnedDepot> {
        let root = spec.dir.join(format!("ibp-bench-{}-{}", std::process::id(), unique()));
        fs::create_dir_all(root.join("disk"))?;
        fs::create_dir_all(root.join("meta"))?;
        let config = root.join("depot.toml");
        fs::write(&config, config_text(spec, &root))?;
        let log = fs::File::create(root.join("depot.log"))?;
        let mut child = Command::new(depot_binary()?)
            .arg("--config")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .spawn()?;
        let stdout = child.stdout.take().ok_or_else(|| io::Error::other("no depot stdout"))?;
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(stdout);
            let mut line = String::new();
            let _ = tx.send(reader.read_line(&mut line).map(|_| line));
            // Keep the pipe drained for the depot's lifetime so it never blocks on stdout.
            let _ = io::copy(&mut reader, &mut io::sink());
        });
        let mut depot = SpawnedDepot { child, addr: SocketAddr::from(([127, 0, 0, 1], 0)), root };
        let line = match rx.recv_timeout(START_TIMEOUT) {
            Ok(Ok(line)) => line,
            Ok(Err(e)) => return Err(e),
            Err(_) => return Err(depot.failure("did not print `listening on` in time")),
        };
        depot.addr = line
            .trim()
            .strip_prefix("listening on ")
            .and_then(|a| a.parse().ok())
            .ok_or_else(|| depot.failure(&format!("unexpected first line {line:?}")))?;
        Ok(depot)
    }

    /// An error carrying the tail of the depot's log.
    fn failure(&self, what: &str) -> io::Error {
        let log = fs::read_to_string(self.root.join("depot.log")).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(10).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        io::Error::other(format!("spawned ibp-depot {what}; its log ends:\n{}", tail.join("\n")))
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for SpawnedDepot {
    fn drop(&mut self) {
        let pid = self.child.id() as libc::pid_t;
        // SAFETY: kill(2) with a pid we spawned and have not reaped yet (so it is not reused).
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let deadline = Instant::now() + STOP_GRACE;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        let _ = fs::remove_dir_all(&self.root);
    }
}

/// A process-unique counter so two depots of one run get two directories.
fn unique() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

fn config_text(spec: &SpawnSpec, root: &Path) -> String {
    let mut text = format!(
        "[depot]\nlisten = \"127.0.0.1:0\"\ncores = {}\nmeta_dir = \"{}\"\n\n\
         [[resource]]\nrid = \"{DISK_RID}\"\nkind = \"disk\"\npath = \"{}\"\ncapacity = \"{}B\"\n",
        spec.cores,
        root.join("meta").display(),
        root.join("disk").display(),
        spec.disk_capacity_bytes,
    );
    let block = spec.checksum_block_bytes.map(|b| format!("checksum_block = \"{b}B\"\n"));
    text.push_str(block.as_deref().unwrap_or(""));
    if let Some(ram) = spec.ram_capacity_bytes {
        text.push_str(&format!(
            "\n[[resource]]\nrid = \"{RAM_RID}\"\nkind = \"ram\"\ncapacity = \"{ram}B\"\n"
        ));
        text.push_str(block.as_deref().unwrap_or(""));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksum_block_goes_to_every_resource() {
        let mut spec = SpawnSpec {
            dir: PathBuf::from("/x"),
            cores: 2,
            disk_capacity_bytes: 1 << 30,
            ram_capacity_bytes: Some(1 << 28),
            checksum_block_bytes: Some(4096),
        };
        let text = config_text(&spec, Path::new("/x/r"));
        assert_eq!(text.matches("checksum_block = \"4096B\"").count(), 2, "{text}");
        spec.checksum_block_bytes = None;
        assert!(!config_text(&spec, Path::new("/x/r")).contains("checksum_block"));
    }
}
