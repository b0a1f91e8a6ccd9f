//! `DmaFile`: O_DIRECT files driven by the ring.
//!
//! Direct I/O bypasses the page cache, so every address, offset and length must be a multiple
//! of 4096; we check that before submitting (a debug assertion, and `EINVAL` in release) so a
//! misaligned request fails with a message instead of an opaque kernel error. Files are
//! preallocated with `fallocate`: writes into unallocated ext4 space were 5–8× slower.
//!
//! `read_at` and `write_at` complete fully: they loop over short transfers. A read stops
//! early only at end of file (result shorter than `len`).

use std::fs::OpenOptions;
use std::io;
use std::ops::Range;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use io_uring::{opcode, types};

use crate::buf::{IoBuf, IoBufMut, ALIGN};
use crate::driver::Op;
use crate::fd::SharedFd;

/// How to open a [`DmaFile`].
#[derive(Clone, Copy, Debug, Default)]
pub struct OpenMode {
    /// Create the file if it does not exist.
    pub create: bool,
    /// Preallocate this many bytes (`fallocate(0, 0, size)`), extending the file.
    pub size_bytes: Option<u64>,
}

/// A file opened with O_DIRECT; its operations run on the current thread's ring.
#[derive(Debug)]
pub struct DmaFile {
    fd: SharedFd,
    /// For error messages.
    path: PathBuf,
}

impl DmaFile {
    /// Opens `path` read-write with O_DIRECT | O_CLOEXEC, preallocating when asked.
    pub fn open(path: impl AsRef<Path>, mode: OpenMode) -> io::Result<DmaFile> {
        let path = path.as_ref();
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(mode.create)
            .custom_flags(libc::O_DIRECT | libc::O_CLOEXEC)
            .open(path)
            .map_err(|e| match e.raw_os_error() {
                Some(libc::EINVAL) => io::Error::new(
                    e.kind(),
                    format!(
                        "the filesystem holding {} refuses O_DIRECT ({e}); use ext4/xfs, not tmpfs",
                        path.display()
                    ),
                ),
                _ => io::Error::new(e.kind(), format!("cannot open {}: {e}", path.display())),
            })?;
        let fd = OwnedFd::from(file);
        if let Some(size) = mode.size_bytes {
            preallocate(fd.as_raw_fd(), size, path)?;
        }
        Ok(DmaFile { fd: SharedFd::new(fd), path: path.to_path_buf() })
    }

    /// Preallocates the file to at least `size` bytes (`fallocate`, growing it if shorter;
    /// never shrinks it). A blocking syscall: for growth off the hot path.
    pub fn preallocate(&self, size: u64) -> io::Result<()> {
        preallocate(self.fd.raw(), size, &self.path)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Current file size in bytes (fstat).
    pub fn size(&self) -> io::Result<u64> {
        // SAFETY: fstat only writes into `stat`, a plain-old-data out parameter.
        let mut stat: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: the fd is open for the lifetime of `self`; `stat` is a valid out-pointer.
        if unsafe { libc::fstat(self.fd.raw(), &mut stat) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(stat.st_size as u64)
    }

    /// Reads `len` bytes at `offset` into the start of `buf` and sets its length to the bytes
    /// read (less than `len` only at end of file). Uses READ_FIXED on registered buffers.
    pub async fn read_at<B: IoBufMut>(
        &self,
        mut buf: B,
        offset: u64,
        len: usize,
    ) -> (io::Result<usize>, B) {
        if len > buf.bytes_total() {
            return (
                Err(invalid(format!(
                    "read of {len} bytes into a {}-byte buffer",
                    buf.bytes_total()
                ))),
                buf,
            );
        }
        if let Err(e) = require_aligned(buf.stable_ptr() as usize, offset, len) {
            return (Err(e), buf);
        }
        let mut done = 0usize;
        while done < len {
            // SAFETY: done < len ≤ bytes_total, so the pointer stays inside the buffer.
            let ptr = unsafe { buf.stable_mut_ptr().add(done) };
            let chunk = (len - done).min(MAX_OP_BYTES) as u32;
            let at = offset + done as u64;
            let entry = match buf.fixed_index() {
                Some(index) => opcode::ReadFixed::new(types::Fd(self.fd.raw()), ptr, chunk, index)
                    .offset(at)
                    .build(),
                None => opcode::Read::new(types::Fd(self.fd.raw()), ptr, chunk).offset(at).build(),
            };
            let (completion, (returned, _fd)) = Op::submit(entry, (buf, self.fd.clone())).await;
            buf = returned;
            match completion.into_io() {
                Ok(0) => break,
                Ok(n) => {
                    done += n;
                    // A short, unaligned count means end of file; the next O_DIRECT read at an
                    // unaligned offset would only fail.
                    if !n.is_multiple_of(ALIGN) {
                        break;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return (Err(self.annotate(e, "read", at)), buf),
            }
        }
        // SAFETY: the kernel wrote `done` bytes at the start of the buffer.
        unsafe { buf.set_init(done) };
        (Ok(done), buf)
    }

    /// Writes all of `buf[range]` at `offset`. Uses WRITE_FIXED on registered buffers.
    pub async fn write_at<B: IoBuf>(
        &self,
        buf: B,
        offset: u64,
        range: Range<usize>,
    ) -> (io::Result<usize>, B) {
        self.write_with(buf, offset, range, 0).await
    }

    /// Like [`write_at`](Self::write_at), but durable on completion (`RWF_DSYNC`): the bytes
    /// and whatever metadata reads them back are on stable storage, as after `fdatasync`, in
    /// one operation instead of two dependent ones.
    pub async fn write_at_durable<B: IoBuf>(
        &self,
        buf: B,
        offset: u64,
        range: Range<usize>,
    ) -> (io::Result<usize>, B) {
        self.write_with(buf, offset, range, libc::RWF_DSYNC).await
    }

    async fn write_with<B: IoBuf>(
        &self,
        buf: B,
        offset: u64,
        range: Range<usize>,
        rw_flags: libc::c_int,
    ) -> (io::Result<usize>, B) {
        if range.start > range.end || range.end > buf.bytes_init() {
            let msg =
                format!("write range {range:?} outside the {} initialised bytes", buf.bytes_init());
            return (Err(invalid(msg)), buf);
        }
        let len = range.end - range.start;
        // SAFETY: range.start ≤ bytes_init ≤ bytes_total.
        let start_ptr = unsafe { buf.stable_ptr().add(range.start) };
        if let Err(e) = require_aligned(start_ptr as usize, offset, len) {
            return (Err(e), buf);
        }
        let mut buf = buf;
        let mut done = 0usize;
        while done < len {
            // SAFETY: done < len, inside the checked range.
            let ptr = unsafe { start_ptr.add(done) };
            let chunk = (len - done).min(MAX_OP_BYTES) as u32;
            let at = offset + done as u64;
            let entry = match buf.fixed_index() {
                Some(index) => opcode::WriteFixed::new(types::Fd(self.fd.raw()), ptr, chunk, index)
                    .offset(at)
                    .rw_flags(rw_flags)
                    .build(),
                None => opcode::Write::new(types::Fd(self.fd.raw()), ptr, chunk)
                    .offset(at)
                    .rw_flags(rw_flags)
                    .build(),
            };
            let (completion, (returned, _fd)) = Op::submit(entry, (buf, self.fd.clone())).await;
            buf = returned;
            match completion.into_io() {
                Ok(0) => {
                    let e = io::Error::new(io::ErrorKind::WriteZero, "write returned 0");
                    return (Err(self.annotate(e, "write", at)), buf);
                }
                Ok(n) => done += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return (Err(self.annotate(e, "write", at)), buf),
            }
        }
        (Ok(done), buf)
    }

    /// `fdatasync` through the ring (IORING_OP_FSYNC with DATASYNC). Never retry a failed
    /// sync: the kernel may have dropped the dirty state (latch the store instead).
    pub async fn fdatasync(&self) -> io::Result<()> {
        let entry =
            opcode::Fsync::new(types::Fd(self.fd.raw())).flags(types::FsyncFlags::DATASYNC).build();
        let (completion, _fd) = Op::submit(entry, self.fd.clone()).await;
        completion.into_io().map(|_| ()).map_err(|e| self.annotate(e, "fdatasync", 0))
    }

    fn annotate(&self, e: io::Error, what: &str, offset: u64) -> io::Error {
        io::Error::new(
            e.kind(),
            format!("{what} of {} at offset {offset}: {e}", self.path.display()),
        )
    }
}

impl AsRawFd for DmaFile {
    /// The raw fd, for synchronous start-up work (e.g. a metadata read) by the storage layer.
    /// It stays owned by the `DmaFile`.
    fn as_raw_fd(&self) -> RawFd {
        self.fd.raw()
    }
}

/// Largest single transfer we hand the kernel (lengths are u32 in an SQE; keep it aligned).
const MAX_OP_BYTES: usize = 1 << 30;

fn invalid(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, msg)
}

/// Alignment check with a debug assertion: a misaligned request is a caller bug.
fn require_aligned(addr: usize, offset: u64, len: usize) -> io::Result<()> {
    let checked = check_aligned(addr, offset, len);
    debug_assert!(checked.is_ok(), "{checked:?}");
    checked
}

fn check_aligned(addr: usize, offset: u64, len: usize) -> io::Result<()> {
    let ok = addr.is_multiple_of(ALIGN)
        && offset.is_multiple_of(ALIGN as u64)
        && len.is_multiple_of(ALIGN);
    if ok {
        Ok(())
    } else {
        Err(invalid(format!(
            "O_DIRECT needs 4096-byte alignment: address {addr:#x}, offset {offset}, length {len}"
        )))
    }
}

fn preallocate(fd: RawFd, size: u64, path: &Path) -> io::Result<()> {
    // SAFETY: fallocate takes no pointers; the fd is open.
    let rc = unsafe { libc::fallocate(fd, 0, 0, size as libc::off_t) };
    if rc == 0 {
        return Ok(());
    }
    let e = io::Error::last_os_error();
    Err(match e.raw_os_error() {
        Some(libc::ENOSPC) => io::Error::new(
            e.kind(),
            format!("not enough space to preallocate {size} bytes for {}", path.display()),
        ),
        _ => {
            io::Error::new(e.kind(), format!("fallocate {size} bytes for {}: {e}", path.display()))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::buf::{acquire, AlignedBuf};
    use crate::test_util::TempDir;
    use crate::{Runtime, RuntimeConfig};

    fn write_read_back(register: bool) {
        let cfg = RuntimeConfig { register_buffers: register, ..Default::default() };
        let rt = Runtime::new(cfg).expect("runtime");
        assert_eq!(rt.buffers_registered(), register);
        let dir = TempDir::new("fs");
        let total: usize = 8 << 20;
        rt.block_on(async {
            let mode = OpenMode { create: true, size_bytes: Some(total as u64) };
            let file = DmaFile::open(dir.path().join("data"), mode).expect("open");
            assert_eq!(file.size().expect("size"), total as u64);
            // Several writes in flight at once, each from its own pool buffer.
            let file = std::rc::Rc::new(file);
            let mut handles = Vec::new();
            for chunk in 0..total / (256 << 10) {
                let file = file.clone();
                handles.push(crate::spawn(async move {
                    let mut buf = acquire().await;
                    assert_eq!(buf.index().is_some(), register);
                    let cap = buf.capacity();
                    buf.as_full_mut().fill(chunk as u8);
                    buf.set_len(cap);
                    let offset = (chunk * cap) as u64;
                    let (res, _buf) = file.write_at(buf, offset, 0..cap).await;
                    assert_eq!(res.expect("write"), cap);
                }));
            }
            for h in handles {
                h.await;
            }
            file.fdatasync().await.expect("fdatasync");
            for chunk in 0..total / (256 << 10) {
                let buf = acquire().await;
                let cap = buf.capacity();
                let (res, buf) = file.read_at(buf, (chunk * cap) as u64, cap).await;
                assert_eq!(res.expect("read"), cap);
                assert!(buf.iter().all(|&b| b == chunk as u8), "chunk {chunk} differs");
            }
            // Reading past the end returns 0 bytes.
            let (res, buf) = file.read_at(acquire().await, total as u64, 4096).await;
            assert_eq!(res.expect("read at eof"), 0);
            assert_eq!(buf.len(), 0);
        });
    }

    #[test]
    fn o_direct_round_trip_registered() {
        write_read_back(true);
    }

    #[test]
    fn o_direct_round_trip_unregistered() {
        write_read_back(false);
    }

    #[test]
    fn aligned_buf_and_errors() {
        let rt = Runtime::new(RuntimeConfig::default()).expect("runtime");
        let dir = TempDir::new("fs-aligned");
        rt.block_on(async {
            let path = dir.path().join("a");
            let file =
                DmaFile::open(&path, OpenMode { create: true, size_bytes: None }).expect("open");
            let mut buf = AlignedBuf::new(8192);
            buf.as_full_mut()[..5].copy_from_slice(b"hello");
            let (res, _) = file.write_at(buf, 4096, 0..8192).await;
            assert_eq!(res.expect("write"), 8192);
            let (res, buf) = file.read_at(AlignedBuf::new(8192), 4096, 8192).await;
            assert_eq!(res.expect("read"), 8192);
            assert_eq!(&buf[..5], b"hello");
            // Misaligned requests are refused before reaching the kernel.
            let err = check_aligned(4096, 512, 4096).expect_err("misaligned offset");
            assert!(err.to_string().contains("4096-byte alignment"));
            let missing = DmaFile::open(dir.path().join("nope"), OpenMode::default());
            assert!(missing.expect_err("no create").to_string().contains("nope"));
            let huge = OpenMode { create: true, size_bytes: Some(1 << 60) };
            let err = DmaFile::open(dir.path().join("huge"), huge).expect_err("too big");
            assert!(err.to_string().contains("huge"), "{err}");
        });
    }

    /// Throughput check, not run by default: `cargo test --release -p ibp-io -- --ignored`.
    #[test]
    #[ignore]
    fn o_direct_throughput() {
        let rt = Runtime::new(RuntimeConfig::default()).expect("runtime");
        let dir = TempDir::new("fs-speed");
        let total: usize = 1 << 30;
        let secs = rt.block_on(async {
            let mode = OpenMode { create: true, size_bytes: Some(total as u64) };
            let file = std::rc::Rc::new(DmaFile::open(dir.path().join("d"), mode).expect("open"));
            let start = std::time::Instant::now();
            let depth = 16;
            let handles: Vec<_> = (0..depth)
                .map(|lane| {
                    let file = file.clone();
                    crate::spawn(async move {
                        let mut buf = acquire().await;
                        let cap = buf.capacity();
                        buf.set_len(cap);
                        let mut offset = lane * cap;
                        while offset < total {
                            let (res, back) = file.write_at(buf, offset as u64, 0..cap).await;
                            res.expect("write");
                            buf = back;
                            offset += depth * cap;
                        }
                    })
                })
                .collect();
            for h in handles {
                h.await;
            }
            file.fdatasync().await.expect("sync");
            start.elapsed().as_secs_f64()
        });
        println!("ibp-io O_DIRECT write, qd16 x 256 KiB: {:.2} GB/s", total as f64 / secs / 1e9);
    }
}
