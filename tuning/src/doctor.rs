//! `doctor`: can this machine run a depot on DIR, and what to do when it cannot.
//!
//! Each check says ok, warn (the depot runs, slower or smaller) or fail (the depot would
//! refuse to start), with the fix. The exit status is non-zero when any check fails.

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::units::format_size;

/// The registered pool a depot core wants by default (256 KiB × 64 buffers, README).
const DEFAULT_POOL_BYTES: u64 = 256 * 1024 * 64;
/// Below this free space a depot cannot hold a useful resource.
const MIN_FREE_BYTES: u64 = 64 << 20;
/// Below this, warn: the default capacity (half the free space) is small.
const LOW_FREE_BYTES: u64 = 1 << 30;

#[derive(Clone, Copy, Debug, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Ok,
    Warn,
    Fail,
}

#[derive(Clone, Debug, Serialize)]
pub struct Check {
    pub name: &'static str,
    pub verdict: Verdict,
    pub detail: String,
    /// What to do; empty when nothing needs doing.
    pub fix: String,
}

fn check(name: &'static str, verdict: Verdict, detail: String, fix: &str) -> Check {
    Check {
        name,
        verdict,
        detail,
        fix: if verdict == Verdict::Ok { String::new() } else { fix.to_owned() },
    }
}

/// Runs every check for a depot whose data lives in `dir`.
pub fn diagnose(dir: &Path) -> Vec<Check> {
    let existing = nearest_existing(dir);
    vec![io_uring(), memlock(), o_direct(&existing), free_space(&existing), cores()]
}

/// `dir` or its nearest existing ancestor (the depot creates its data dir).
fn nearest_existing(dir: &Path) -> PathBuf {
    let mut p = dir.to_path_buf();
    while !p.exists() {
        match p.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => p = parent.to_path_buf(),
            _ => return PathBuf::from("."),
        }
    }
    p
}

fn io_uring() -> Check {
    let disabled = std::fs::read_to_string("/proc/sys/kernel/io_uring_disabled")
        .map(|s| s.trim().to_owned())
        .unwrap_or_default();
    match ibp_io::probe::probe_io_uring() {
        Ok(r) => {
            let ops = [("READ_FIXED", r.read_fixed), ("WRITE_FIXED", r.write_fixed), ("FSYNC", r.fsync), ("SEND_ZC", r.send_zc), ("RECV_MULTISHOT", r.recv_multishot)];
            let listed: Vec<String> = ops.iter().map(|(n, ok)| format!("{n}{}", if *ok { "" } else { " (missing)" })).collect();
            let needed = r.read_fixed && r.write_fixed && r.fsync;
            let verdict = if needed { Verdict::Ok } else { Verdict::Fail };
            check("io_uring", verdict, listed.join(", "), "the depot needs READ_FIXED, WRITE_FIXED and FSYNC: use Linux ≥ 5.6 (6.x recommended)")
        }
        Err(e) => check(
            "io_uring",
            Verdict::Fail,
            format!("{e}; kernel.io_uring_disabled = {}", if disabled.is_empty() { "?" } else { &disabled }),
            "set `sysctl kernel.io_uring_disabled=0`; in a container allow io_uring_setup/io_uring_enter/io_uring_register in seccomp (docker: --security-opt seccomp=unconfined)",
        ),
    }
}

fn memlock() -> Check {
    let capable = ibp_io::probe::can_lock_memory();
    match ibp_io::probe::memlock_limit() {
        _ if capable => check("memlock", Verdict::Ok, "CAP_IPC_LOCK: registered buffers are not limited".into(), ""),
        None => check("memlock", Verdict::Ok, "RLIMIT_MEMLOCK unlimited".into(), ""),
        Some(limit) if limit >= DEFAULT_POOL_BYTES => check("memlock", Verdict::Ok, format!("RLIMIT_MEMLOCK {}", format_size(limit)), ""),
        Some(limit) => check(
            "memlock",
            Verdict::Warn,
            format!("RLIMIT_MEMLOCK {} < {} per core for the default registered pool: the depot falls back to unregistered buffers (one more copy-free path lost, a few % slower)", format_size(limit), format_size(DEFAULT_POOL_BYTES)),
            "raise it: `ulimit -l unlimited` (or LimitMEMLOCK=infinity in the systemd unit, memlock in /etc/security/limits.conf), or lower buffers_per_core so buffer_size × buffers_per_core fits",
        ),
    }
}

fn o_direct(dir: &Path) -> Check {
    match ibp_io::probe::probe_o_direct(dir) {
        Ok(()) => check("O_DIRECT", Verdict::Ok, format!("{} takes O_DIRECT", dir.display()), ""),
        Err(e) => check("O_DIRECT", Verdict::Fail, e, "put the data directory on ext4 or xfs (not tmpfs, overlayfs or NFS), or use a RAM resource"),
    }
}

fn free_space(dir: &Path) -> Check {
    match ibp_io::probe::free_space(dir) {
        Ok(free) if free < MIN_FREE_BYTES => check(
            "free space",
            Verdict::Fail,
            format!("{} free at {}", format_size(free), dir.display()),
            "free space or choose another directory: a depot needs at least 64 MiB",
        ),
        Ok(free) if free < LOW_FREE_BYTES => check(
            "free space",
            Verdict::Warn,
            format!("{} free at {}", format_size(free), dir.display()),
            "the default capacity is half the free space; set `capacity` explicitly or free space",
        ),
        Ok(free) => check(
            "free space",
            Verdict::Ok,
            format!("{} free at {}", format_size(free), dir.display()),
            "",
        ),
        Err(e) => check(
            "free space",
            Verdict::Fail,
            format!("statvfs {}: {e}", dir.display()),
            "check the path exists and is readable",
        ),
    }
}

fn cores() -> Check {
    let n = ibp_io::cores::available_cores();
    let verdict = if n >= 2 { Verdict::Ok } else { Verdict::Warn };
    check(
        "cores",
        verdict,
        format!("{n} usable cores (one shard each by default)"),
        "with one core the client and every shard share it: throughput figures will be low",
    )
}

/// Prints the checks as a table.
pub fn print_table(checks: &[Check]) {
    for c in checks {
        let tag = match c.verdict {
            Verdict::Ok => "ok  ",
            Verdict::Warn => "warn",
            Verdict::Fail => "FAIL",
        };
        println!("{tag} {:<11} {}", c.name, c.detail);
        if !c.fix.is_empty() {
            println!("     {:<11} fix: {}", "", c.fix);
        }
    }
}
