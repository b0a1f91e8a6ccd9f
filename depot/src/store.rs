//! Where a shard's region of a resource keeps its bytes: an O_DIRECT file on disk, or anonymous
//! memory; plus a fault-injecting wrapper for the storage-fault suite.
//!
//! Design: an enum rather than a trait object, because the methods are `async` (owned buffers
//! through the ring) and there are only three kinds. Every store *latches* after a failed write
//! or sync (STYLE.md 8): from then on writes are refused with the cause, reads go on, and a
//! sync is never retried, because after a failed fsync the kernel may have dropped the dirty
//! pages and a later success would lie.

use std::cell::{Cell, RefCell};
use std::io;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use ibp_io::fs::{DmaFile, OpenMode};
use ibp_io::{IoBuf, IoBufMut};

/// One shard's region of one resource.
pub struct Store {
    backend: Backend,
    /// Set by the first failed write or sync; the message says what failed.
    latch: RefCell<Option<String>>,
    /// Writes since the last sync, so group commit syncs only stores that need it.
    dirty: Cell<bool>,
    /// Region size in bytes.
    len: u64,
}

enum Backend {
    /// An O_DIRECT file or block device; the region starts `base` bytes into it.
    Disk(Rc<DmaFile>, u64),
    Ram(RamRegion),
    Faulty(Box<Store>, Rc<FaultPlan>),
}

/// A RAM region: anonymous memory mapped for the life of the store.
///
/// It is reached only through slices of the ranges being accessed, never one `&mut` over the
/// whole map: a RAM transfer holds a slice of its own blocks across awaits (socket bytes go
/// straight into the region, see [`Store::ram_slice`]) while other tasks of the core use
/// other ranges. Disjointness comes from the allocation table (extents never overlap) and the
/// block locks (one writer, or readers, per block).
struct RamRegion {
    /// Owns the mapping (unmapped on drop); never dereferenced.
    _map: memmap2::MmapMut,
    ptr: *mut u8,
}

impl RamRegion {
    /// # Safety
    /// `r` must lie inside the region and no `&mut` to an overlapping range may be live.
    unsafe fn slice(&self, r: std::ops::Range<usize>) -> &[u8] {
        // SAFETY: per the contract, the range is inside the mapping.
        unsafe { std::slice::from_raw_parts(self.ptr.add(r.start), r.len()) }
    }

    /// # Safety
    /// `r` must lie inside the region and no other reference to an overlapping range may be
    /// live while the slice is.
    #[allow(clippy::mut_from_ref)]
    unsafe fn slice_mut(&self, r: std::ops::Range<usize>) -> &mut [u8] {
        // SAFETY: per the contract, the range is inside the mapping and unaliased.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.add(r.start), r.len()) }
    }
}

/// Faults to inject, for tests: each counter fails the n-th call from now (0 = never).
#[derive(Debug, Default)]
pub struct FaultPlan {
    pub fail_write_after: Cell<u64>,
    pub fail_sync_after: Cell<u64>,
    pub fail_read_after: Cell<u64>,
}

impl FaultPlan {
    fn trip(counter: &Cell<u64>) -> bool {
        match counter.get() {
            0 => false,
            1 => {
                counter.set(0);
                true
            }
            n => {
                counter.set(n - 1);
                false
            }
        }
    }
}

fn injected(what: &str) -> io::Error {
    io::Error::other(format!("injected {what} fault"))
}

impl Store {
    /// Opens (creating and preallocating when needed) the region file `path` of `len` bytes.
    pub fn open_disk(path: &Path, len: u64) -> io::Result<Store> {
        let file = DmaFile::open(path, OpenMode { create: true, size_bytes: Some(len) })?;
        Ok(Store::with(Backend::Disk(Rc::new(file), 0), len))
    }

    /// Opens `len` bytes of block device `path`, starting `base` bytes in (O_DIRECT).
    pub fn open_device(path: &Path, base: u64, len: u64) -> io::Result<Store> {
        let file = DmaFile::open(path, OpenMode { create: false, size_bytes: None })?;
        Ok(Store::with(Backend::Disk(Rc::new(file), base), len))
    }

    /// A RAM region of `len` bytes (zeroed anonymous memory).
    pub fn open_ram(len: u64) -> io::Result<Store> {
        let len_usize =
            usize::try_from(len).map_err(|_| io::Error::other("RAM region too large"))?;
        // Pre-faulted (MAP_POPULATE): first-touch page faults would otherwise run on the
        // shard's core during the first STORE into each page and cap RAM stores well below
        // memory speed. The region's capacity is therefore committed memory from start-up.
        let mut map = memmap2::MmapOptions::new().len(len_usize).populate().map_anon()?;
        let ptr = map.as_mut_ptr();
        Ok(Store::with(Backend::Ram(RamRegion { _map: map, ptr }), len))
    }

    /// Wraps `inner` so that `plan` can make its calls fail.
    pub fn faulty(inner: Store, plan: Rc<FaultPlan>) -> Store {
        let len = inner.len;
        Store::with(Backend::Faulty(Box::new(inner), plan), len)
    }

    fn with(backend: Backend, len: u64) -> Store {
        Store { backend, latch: RefCell::new(None), dirty: Cell::new(false), len }
    }

    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Why writes are refused, if they are.
    pub fn latched(&self) -> Option<String> {
        self.latch.borrow().clone()
    }

    fn set_latch(&self, why: String) {
        let mut l = self.latch.borrow_mut();
        if l.is_none() {
            tracing::error!(cause = %why, "storage failure: this store refuses writes from now on");
            *l = Some(why);
        }
    }

    pub fn is_dirty(&self) -> bool {
        self.dirty.get()
    }

    /// Whether this is a RAM store whose bytes transfers may move directly (see
    /// [`Store::ram_slice`]). Fault-injecting wrappers answer no.
    pub fn is_direct(&self) -> bool {
        matches!(self.backend, Backend::Ram(_))
    }

    /// For a RAM store: the region's bytes `[off, off + len)`, so a transfer can receive from
    /// or send to the socket without a bounce buffer. `None` on other stores or out of range.
    ///
    /// # Safety
    /// The caller must hold the block lock of the allocation range (exclusive to write into
    /// the slice, shared to read it), and the range must belong to that allocation, so no
    /// other reference to these bytes exists while the slice lives.
    #[allow(clippy::mut_from_ref)]
    pub unsafe fn ram_slice(&self, off: u64, len: usize) -> Option<&mut [u8]> {
        match &self.backend {
            // SAFETY: the range is checked against the region; exclusivity is the caller's.
            Backend::Ram(region) => {
                ram_range(off, len, self.len).ok().map(|r| unsafe { region.slice_mut(r) })
            }
            _ => None,
        }
    }

    /// Reads `len` bytes at `off` into the start of `buf` (O_DIRECT alignment applies on disk).
    pub async fn read<B: IoBufMut>(&self, buf: B, off: u64, len: usize) -> (io::Result<()>, B) {
        match &self.backend {
            Backend::Disk(f, base) => {
                let (r, b) = f.read_at(buf, base + off, len).await;
                let r = r.and_then(|n| {
                    if n == len {
                        Ok(())
                    } else {
                        Err(io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            "short read inside region",
                        ))
                    }
                });
                (r, b)
            }
            Backend::Ram(region) => {
                let mut buf = buf;
                if len > buf.bytes_total() {
                    return (Err(io::Error::other("read longer than the buffer")), buf);
                }
                let r = ram_range(off, len, self.len).map(|range| {
                    // SAFETY: the range is inside the region (checked) and len ≤ bytes_total.
                    unsafe { ram_copy_into(&mut buf, region.slice(range)) };
                });
                (r, buf)
            }
            Backend::Faulty(inner, plan) => {
                if FaultPlan::trip(&plan.fail_read_after) {
                    return (Err(injected("read")), buf);
                }
                Box::pin(inner.read(buf, off, len)).await
            }
        }
    }

    /// Writes `buf[range]` at `off`. Refused once the store has latched; a failure latches it.
    pub async fn write<B: IoBuf>(
        &self,
        buf: B,
        off: u64,
        range: std::ops::Range<usize>,
    ) -> (io::Result<()>, B) {
        if let Some(why) = self.latched() {
            return (
                Err(io::Error::other(format!(
                    "store refuses writes after an earlier failure: {why}"
                ))),
                buf,
            );
        }
        let (r, b) = match &self.backend {
            Backend::Disk(f, base) => {
                let (r, b) = f.write_at(buf, base + off, range).await;
                (r.map(|_| ()), b)
            }
            Backend::Ram(region) => {
                let r = ram_range(off, range.len(), self.len).and_then(|dst| {
                    if range.end > buf.bytes_init() {
                        return Err(io::Error::other("write range past the buffer"));
                    }
                    // SAFETY: range lies inside the initialised bytes of buf.
                    let src = unsafe {
                        std::slice::from_raw_parts(buf.stable_ptr().add(range.start), range.len())
                    };
                    // SAFETY: dst is inside the region (checked).
                    unsafe { region.slice_mut(dst) }.copy_from_slice(src);
                    Ok(())
                });
                (r, buf)
            }
            Backend::Faulty(inner, plan) => {
                if FaultPlan::trip(&plan.fail_write_after) {
                    (Err(injected("write")), buf)
                } else {
                    Box::pin(inner.write(buf, off, range)).await
                }
            }
        };
        match &r {
            Ok(()) => self.dirty.set(true),
            Err(e) => self.set_latch(format!("write failed: {e}")),
        }
        (r, b)
    }

    /// Makes written data durable (fdatasync). A failure latches the store; never retried.
    pub async fn sync(&self) -> io::Result<()> {
        if let Some(why) = self.latched() {
            return Err(io::Error::other(format!("store latched: {why}")));
        }
        self.dirty.set(false);
        let r = match &self.backend {
            Backend::Disk(f, _) => f.fdatasync().await,
            Backend::Ram(_) => Ok(()),
            Backend::Faulty(inner, plan) => {
                if FaultPlan::trip(&plan.fail_sync_after) {
                    Err(injected("sync"))
                } else {
                    Box::pin(inner.sync()).await
                }
            }
        };
        if let Err(e) = &r {
            self.set_latch(format!("sync failed: {e}"));
        }
        r
    }

    /// Writes `data` at `off` synchronously (journal replay at start-up, before the ring serves
    /// anything). `off` and `data.len()` must be 4 KiB aligned.
    pub fn write_blocking(&self, off: u64, data: &[u8]) -> io::Result<()> {
        match &self.backend {
            Backend::Disk(f, base) => {
                let mut buf = ibp_io::AlignedBuf::new(data.len());
                buf.set_len(data.len());
                buf.as_full_mut()[..data.len()].copy_from_slice(data);
                let mut done = 0usize;
                while done < data.len() {
                    // SAFETY: the buffer holds data.len() initialised, 4 KiB-aligned bytes.
                    let n = unsafe {
                        libc::pwrite(
                            f.as_raw_fd(),
                            buf.as_ptr().add(done).cast(),
                            data.len() - done,
                            (base + off + done as u64) as libc::off_t,
                        )
                    };
                    if n <= 0 {
                        let e = io::Error::last_os_error();
                        self.set_latch(format!("replay write failed: {e}"));
                        return Err(e);
                    }
                    done += n as usize;
                }
                Ok(())
            }
            Backend::Ram(region) => {
                let r = ram_range(off, data.len(), self.len)?;
                // SAFETY: r is inside the region (checked).
                unsafe { region.slice_mut(r) }.copy_from_slice(data);
                Ok(())
            }
            Backend::Faulty(inner, _) => inner.write_blocking(off, data),
        }
    }

    /// Reads `len` bytes at `off` synchronously (journal replay at start-up, before the ring
    /// serves anything). `off` and `len` must be 4 KiB aligned.
    pub fn read_blocking(&self, off: u64, len: usize) -> io::Result<Vec<u8>> {
        match &self.backend {
            Backend::Disk(f, base) => {
                let mut buf = ibp_io::AlignedBuf::new(len);
                buf.set_len(len);
                let mut done = 0usize;
                while done < len {
                    let dst = &mut buf.as_full_mut()[done..len];
                    // SAFETY: dst is valid for dst.len() bytes; the buffer is 4 KiB aligned.
                    let n = unsafe {
                        libc::pread(
                            f.as_raw_fd(),
                            dst.as_mut_ptr().cast(),
                            dst.len(),
                            (base + off + done as u64) as libc::off_t,
                        )
                    };
                    if n < 0 {
                        return Err(io::Error::last_os_error());
                    }
                    if n == 0 {
                        return Err(io::Error::other("replay read past the end of the store"));
                    }
                    done += n as usize;
                }
                Ok(buf.as_full_mut()[..len].to_vec())
            }
            Backend::Ram(region) => {
                let r = ram_range(off, len, self.len)?;
                // SAFETY: r is inside the region (checked); nothing else runs during replay.
                Ok(unsafe { region.slice_mut(r) }.to_vec())
            }
            Backend::Faulty(inner, _) => inner.read_blocking(off, len),
        }
    }

    /// Zeroes `[off, off + len)` so freed space and the space past an allocation's size read as
    /// zeros (see checksum.rs). Synchronous: on disk it is a metadata operation
    /// (FALLOC_FL_ZERO_RANGE), in RAM a memset.
    pub fn zero(&self, off: u64, len: u64) -> io::Result<()> {
        if len == 0 {
            return Ok(());
        }
        match &self.backend {
            Backend::Disk(f, base) => {
                let (Ok(o), Ok(l)) =
                    (libc::off_t::try_from(base + off), libc::off_t::try_from(len))
                else {
                    return Err(io::Error::other("zero range out of bounds"));
                };
                let mode = libc::FALLOC_FL_ZERO_RANGE | libc::FALLOC_FL_KEEP_SIZE;
                // SAFETY: plain syscall on an fd we own.
                let rc = unsafe { libc::fallocate(f.as_raw_fd(), mode, o, l) };
                if rc != 0 {
                    return Err(io::Error::last_os_error());
                }
                Ok(())
            }
            Backend::Ram(region) => {
                let r = ram_range(off, len as usize, self.len)?;
                // SAFETY: r is inside the region (checked).
                unsafe { region.slice_mut(r) }.fill(0);
                Ok(())
            }
            Backend::Faulty(inner, _) => inner.zero(off, len),
        }
    }
}

fn ram_range(off: u64, len: usize, region: u64) -> io::Result<std::ops::Range<usize>> {
    let end = off.checked_add(len as u64).filter(|&e| e <= region);
    match end {
        Some(e) => Ok(off as usize..e as usize),
        None => Err(io::Error::other("access past the end of the RAM region")),
    }
}

/// Copies `src` to the start of `buf` and marks it initialised.
///
/// # Safety
/// `src.len()` must not exceed `buf.bytes_total()`.
unsafe fn ram_copy_into<B: IoBufMut>(buf: &mut B, src: &[u8]) {
    debug_assert!(src.len() <= buf.bytes_total());
    // SAFETY: the destination holds bytes_total ≥ src.len() bytes and does not overlap src.
    unsafe {
        std::ptr::copy_nonoverlapping(src.as_ptr(), buf.stable_mut_ptr(), src.len());
        buf.set_init(src.len());
    }
}

/// Path of shard `shard`'s region file in a disk resource directory.
pub fn region_path(dir: &Path, shard: usize) -> PathBuf {
    dir.join(format!("shard-{shard}.data"))
}
