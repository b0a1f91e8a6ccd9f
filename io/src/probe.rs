//! Start-up checks: is io_uring usable, which opcodes exist, does a directory take O_DIRECT,
//! how much memory may be locked, how much space is free.
//!
//! The depot runs these before serving so it can fail fast and name the cause (STYLE.md 9);
//! `ibp-bench doctor` prints them. They are synchronous and need no runtime.

use std::ffi::CString;
use std::fs::OpenOptions;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;

use io_uring::{opcode, Probe};

/// Opcode support of this kernel's io_uring.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProbeReport {
    pub read_fixed: bool,
    pub write_fixed: bool,
    pub send_zc: bool,
    pub fsync: bool,
    pub recv_multishot: bool,
}

/// Sets up a tiny ring and reports opcode support; `Err` names the likely cause.
pub fn probe_io_uring() -> Result<ProbeReport, String> {
    let ring = crate::runtime::build_ring(4).map_err(|e| e.to_string())?;
    let mut probe = Probe::new();
    ring.submitter()
        .register_probe(&mut probe)
        .map_err(|e| format!("io_uring opcode probe failed: {e} (kernel older than 5.6?)"))?;
    Ok(ProbeReport {
        read_fixed: probe.is_supported(opcode::ReadFixed::CODE),
        write_fixed: probe.is_supported(opcode::WriteFixed::CODE),
        send_zc: probe.is_supported(opcode::SendZc::CODE),
        fsync: probe.is_supported(opcode::Fsync::CODE),
        recv_multishot: probe.is_supported(opcode::RecvMulti::CODE),
    })
}

/// Creates a temporary file in `dir` with O_DIRECT, writes and reads back 4 KiB, removes it.
pub fn probe_o_direct(dir: &Path) -> Result<(), String> {
    let path = dir.join(format!(".ibp-odirect-probe-{}", std::process::id()));
    let refuse = |e: io::Error| {
        format!(
            "the filesystem at {} refuses O_DIRECT ({e}); use a directory on ext4/xfs \
             (tmpfs and some overlay filesystems do not support direct I/O)",
            dir.display()
        )
    };
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .custom_flags(libc::O_DIRECT)
        .open(&path)
        .map_err(|e| match e.raw_os_error() {
            Some(libc::EINVAL) => refuse(e),
            _ => format!("cannot create a probe file in {}: {e}", dir.display()),
        })?;
    let result = (|| {
        let mut buf = crate::buf::AlignedBuf::new(4096);
        buf.as_full_mut().fill(0xA5);
        file.write_all_at(&buf, 0).map_err(refuse)?;
        buf.as_full_mut().fill(0);
        file.read_exact_at(buf.as_full_mut(), 0).map_err(refuse)?;
        if buf.iter().all(|&b| b == 0xA5) {
            Ok(())
        } else {
            Err(format!("O_DIRECT read-back mismatch in {}", dir.display()))
        }
    })();
    drop(file);
    let _ = std::fs::remove_file(&path);
    result
}

/// RLIMIT_MEMLOCK soft limit in bytes; `None` when unlimited or unreadable.
pub fn memlock_limit() -> Option<u64> {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit writes into the struct we pass.
    let rc = unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut limit) };
    if rc != 0 || limit.rlim_cur == libc::RLIM_INFINITY {
        return None;
    }
    Some(limit.rlim_cur)
}

/// Whether this process may lock memory beyond RLIMIT_MEMLOCK (CAP_IPC_LOCK in the
/// effective set, which root normally has).
pub fn can_lock_memory() -> bool {
    const CAP_IPC_LOCK: u32 = 14;
    let Ok(status) = std::fs::read_to_string("/proc/self/status") else {
        // SAFETY: geteuid has no arguments and cannot fail.
        return unsafe { libc::geteuid() } == 0;
    };
    status
        .lines()
        .find_map(|line| line.strip_prefix("CapEff:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .is_some_and(|caps| caps & (1 << CAP_IPC_LOCK) != 0)
}

/// Bytes available to an unprivileged user in the filesystem holding `dir`.
pub fn free_space(dir: &Path) -> io::Result<u64> {
    let c_path = CString::new(dir.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains a NUL byte"))?;
    // SAFETY: statvfs is plain old data; all-zero is a valid value.
    let mut stat: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c_path` is NUL-terminated and `stat` is a valid out-pointer.
    if unsafe { libc::statvfs(c_path.as_ptr(), &mut stat) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(stat.f_bavail as u64 * stat.f_frsize as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_uring_has_the_opcodes_we_use() {
        let report = probe_io_uring().expect("io_uring available");
        assert!(report.read_fixed && report.write_fixed && report.fsync);
    }

    #[test]
    fn o_direct_probe_on_var_tmp_and_free_space() {
        let dir = crate::test_util::TempDir::new("probe");
        probe_o_direct(dir.path()).expect("ext4 takes O_DIRECT");
        assert!(free_space(dir.path()).expect("statvfs") > 0);
        let _ = memlock_limit();
    }

    #[test]
    fn o_direct_probe_names_tmpfs() {
        let shm = Path::new("/dev/shm");
        if shm.is_dir() {
            if let Err(msg) = probe_o_direct(shm) {
                assert!(msg.contains("/dev/shm"), "{msg}");
            }
        }
    }
}
