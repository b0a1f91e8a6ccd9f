//! This thread's buffer pool: `count` buffers of `size` bytes carved from one anonymous
//! mapping made at start-up, registered with the ring once.
//!
//! No allocation happens on the data path: a buffer is an index into the mapping. Waiters are
//! served FIFO, and a released buffer is handed straight to the oldest waiter so a burst of
//! new requests cannot overtake it. Registration pins the memory, which counts against
//! RLIMIT_MEMLOCK; when that is too small the pool stays unregistered with one warning.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

use io_uring::IoUring;
use memmap2::{MmapMut, MmapOptions};

use super::{IoBuf, IoBufMut};
use crate::runtime::with_current;

pub(crate) struct Pool {
    /// Keeps the memory mapped; buffers point into it.
    _map: MmapMut,
    /// Start of the mapping (page-aligned, so every buffer is 4096-aligned).
    base: *mut u8,
    size: usize,
    count: usize,
    /// Whether `register_buffers` succeeded (selects *_FIXED opcodes).
    registered: Cell<bool>,
    state: RefCell<PoolState>,
}

struct PoolState {
    /// Indices of free buffers (LIFO: the most recently used one is warm in cache).
    free: Vec<u16>,
    /// Tasks waiting for a buffer, oldest first.
    waiters: VecDeque<Rc<Waiter>>,
}

/// A parked `acquire`: the releasing side stores the granted index here and wakes the task.
struct Waiter {
    granted: Cell<Option<u16>>,
    waker: RefCell<Option<Waker>>,
}

impl Pool {
    pub(crate) fn new(size: usize, count: usize) -> io::Result<Pool> {
        let total = size.checked_mul(count).ok_or_else(|| {
            io::Error::new(io::ErrorKind::InvalidInput, "buffer pool size overflows")
        })?;
        // Anonymous memory is zero-filled (so every byte is initialised) and page-aligned.
        // populate() faults it in now rather than on the data path.
        let mut map = MmapOptions::new().len(total).populate().map_anon().map_err(|e| {
            io::Error::new(e.kind(), format!("cannot map a {total}-byte buffer pool: {e}"))
        })?;
        let base = map.as_mut_ptr();
        let free = (0..count).rev().map(|i| i as u16).collect();
        Ok(Pool {
            _map: map,
            base,
            size,
            count,
            registered: Cell::new(false),
            state: RefCell::new(PoolState { free, waiters: VecDeque::new() }),
        })
    }

    /// Registers the pool with `ring`, or warns once and stays unregistered.
    pub(crate) fn register(&self, ring: &IoUring, wanted: bool) {
        if !wanted {
            tracing::info!("ibp-io: buffer registration disabled by config; using READ/WRITE");
            return;
        }
        let total = (self.size * self.count) as u64;
        if let Some(limit) = crate::probe::memlock_limit() {
            if total > limit && !crate::probe::can_lock_memory() {
                tracing::warn!(
                    pool_bytes = total,
                    memlock_bytes = limit,
                    "ibp-io: buffer pool exceeds RLIMIT_MEMLOCK (ulimit -l); buffers NOT \
                     registered, I/O uses plain READ/WRITE (raise memlock or shrink the pool)"
                );
                return;
            }
        }
        let iovecs: Vec<libc::iovec> = (0..self.count)
            .map(|i| libc::iovec {
                // SAFETY: i < count, so the offset stays inside the mapping.
                iov_base: unsafe { self.base.add(i * self.size) }.cast(),
                iov_len: self.size,
            })
            .collect();
        // SAFETY: the iovecs describe our mapping, which outlives the ring: the runtime drops
        // the ring (and so the registration) before the pool.
        match unsafe { ring.submitter().register_buffers(&iovecs) } {
            Ok(()) => self.registered.set(true),
            Err(e) => tracing::warn!(
                error = %e,
                pool_bytes = total,
                "ibp-io: register_buffers failed (memlock? check ulimit -l / RLIMIT_MEMLOCK); \
                 buffers NOT registered, I/O uses plain READ/WRITE"
            ),
        }
    }

    pub(crate) fn is_registered(&self) -> bool {
        self.registered.get()
    }

    fn take_free(self: &Rc<Self>) -> Option<FixedBuf> {
        let mut state = self.state.borrow_mut();
        // FIFO: a free buffer goes to a newcomer only if nobody is queued before it.
        if !state.waiters.is_empty() {
            return None;
        }
        let index = state.free.pop()?;
        Some(FixedBuf { pool: self.clone(), index, len: 0 })
    }

    fn release(&self, index: u16) {
        let waiter = {
            let mut state = self.state.borrow_mut();
            match state.waiters.pop_front() {
                Some(waiter) => waiter,
                None => {
                    state.free.push(index);
                    return;
                }
            }
        };
        waiter.granted.set(Some(index));
        let waker = waiter.waker.borrow_mut().take();
        if let Some(waker) = waker {
            waker.wake();
        }
    }
}

/// One pool buffer: `capacity()` bytes, 4096-aligned, of which the first `len()` are data.
/// Returns to its pool on drop. `!Send`: it belongs to its thread's pool.
pub struct FixedBuf {
    pool: Rc<Pool>,
    index: u16,
    /// Bytes of data (all `capacity` bytes are initialised memory; `len` marks what is valid).
    len: usize,
}

impl FixedBuf {
    pub fn capacity(&self) -> usize {
        self.pool.size
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Sets the data length. Every byte is initialised at allocation, so any `n` up to
    /// `capacity()` is sound.
    ///
    /// # Panics
    /// If `n > capacity()`.
    pub fn set_len(&mut self, n: usize) {
        assert!(n <= self.capacity(), "FixedBuf::set_len({n}) beyond capacity {}", self.capacity());
        self.len = n;
    }

    pub fn clear(&mut self) {
        self.len = 0;
    }

    pub fn as_slice(&self) -> &[u8] {
        &self.as_full()[..self.len]
    }

    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        let len = self.len;
        &mut self.as_full_mut()[..len]
    }

    /// All `capacity()` bytes, regardless of `len()`.
    pub fn as_full(&self) -> &[u8] {
        // SAFETY: the slot [index*size, (index+1)*size) is inside the live mapping, initialised,
        // and owned exclusively by this FixedBuf (the pool hands each index out once).
        unsafe { std::slice::from_raw_parts(self.as_ptr(), self.pool.size) }
    }

    /// All `capacity()` bytes, regardless of `len()` (to fill before `set_len`).
    pub fn as_full_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in `as_full`, and `&mut self` makes the access exclusive.
        unsafe { std::slice::from_raw_parts_mut(self.as_mut_ptr(), self.pool.size) }
    }

    /// Registered buffer index, or `None` when the pool is not registered.
    pub fn index(&self) -> Option<u16> {
        self.pool.registered.get().then_some(self.index)
    }

    pub fn as_ptr(&self) -> *const u8 {
        self.as_mut_ptr_inner()
    }

    pub fn as_mut_ptr(&mut self) -> *mut u8 {
        self.as_mut_ptr_inner()
    }

    fn as_mut_ptr_inner(&self) -> *mut u8 {
        // SAFETY: index < count, so the offset stays inside the mapping.
        unsafe { self.pool.base.add(usize::from(self.index) * self.pool.size) }
    }
}

impl std::ops::Deref for FixedBuf {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        self.as_slice()
    }
}

impl std::ops::DerefMut for FixedBuf {
    fn deref_mut(&mut self) -> &mut [u8] {
        self.as_mut_slice()
    }
}

impl std::fmt::Debug for FixedBuf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FixedBuf")
            .field("index", &self.index)
            .field("len", &self.len)
            .field("capacity", &self.capacity())
            .finish()
    }
}

impl Drop for FixedBuf {
    fn drop(&mut self) {
        self.pool.release(self.index);
    }
}

// SAFETY: the slot's memory lives in the mapping held by `pool` (an Rc we own), so it stays put
// while the FixedBuf is alive wherever the FixedBuf moves; `index` is its registration slot.
unsafe impl IoBuf for FixedBuf {
    fn stable_ptr(&self) -> *const u8 {
        self.as_ptr()
    }
    fn bytes_init(&self) -> usize {
        self.len
    }
    fn bytes_total(&self) -> usize {
        self.pool.size
    }
    fn fixed_index(&self) -> Option<u16> {
        self.index()
    }
}

// SAFETY: as for `IoBuf`; all bytes are initialised so any length is sound.
unsafe impl IoBufMut for FixedBuf {
    fn stable_mut_ptr(&mut self) -> *mut u8 {
        self.as_mut_ptr()
    }
    unsafe fn set_init(&mut self, n: usize) {
        self.set_len(n);
    }
}

/// A free buffer now, or `None` if all are in use (or others are already waiting).
///
/// # Panics
/// Outside `Runtime::block_on`.
pub fn try_acquire() -> Option<FixedBuf> {
    with_current(|rt| rt.pool.take_free())
}

/// Waits (FIFO) until a pool buffer is free.
pub fn acquire() -> Acquire {
    Acquire { waiter: None }
}

/// Whether this thread's pool is registered with its ring.
pub fn registered() -> bool {
    with_current(|rt| rt.pool.is_registered())
}

/// Future returned by [`acquire`].
#[must_use = "futures do nothing unless awaited"]
pub struct Acquire {
    /// Our place in the queue once we had to wait.
    waiter: Option<(Rc<Pool>, Rc<Waiter>)>,
}

impl Future for Acquire {
    type Output = FixedBuf;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<FixedBuf> {
        if let Some((pool, waiter)) = &self.waiter {
            if let Some(index) = waiter.granted.take() {
                let buf = FixedBuf { pool: pool.clone(), index, len: 0 };
                self.waiter = None;
                return Poll::Ready(buf);
            }
            *waiter.waker.borrow_mut() = Some(cx.waker().clone());
            return Poll::Pending;
        }
        let pool = with_current(|rt| rt.pool.clone());
        if let Some(buf) = pool.take_free() {
            return Poll::Ready(buf);
        }
        let waiter = Rc::new(Waiter {
            granted: Cell::new(None),
            waker: RefCell::new(Some(cx.waker().clone())),
        });
        pool.state.borrow_mut().waiters.push_back(waiter.clone());
        self.waiter = Some((pool, waiter));
        Poll::Pending
    }
}

impl Drop for Acquire {
    fn drop(&mut self) {
        let Some((pool, waiter)) = self.waiter.take() else { return };
        match waiter.granted.take() {
            // Granted but never collected: pass it on.
            Some(index) => pool.release(index),
            None => pool.state.borrow_mut().waiters.retain(|w| !Rc::ptr_eq(w, &waiter)),
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::{Runtime, RuntimeConfig};

    fn small_rt() -> Runtime {
        let cfg = RuntimeConfig { buffer_size: 4096, buffer_count: 2, ..Default::default() };
        Runtime::new(cfg).expect("runtime")
    }

    #[test]
    fn acquire_is_fifo_and_release_hands_over() {
        let rt = small_rt();
        rt.block_on(async {
            let a = super::try_acquire().expect("first");
            let b = super::try_acquire().expect("second");
            assert!(super::try_acquire().is_none());
            assert_eq!(a.as_ptr() as usize % 4096, 0);
            let order = std::rc::Rc::new(std::cell::RefCell::new(Vec::new()));
            let mut handles = Vec::new();
            for i in 0..3 {
                let order = order.clone();
                handles.push(crate::spawn(async move {
                    let buf = super::acquire().await;
                    order.borrow_mut().push(i);
                    drop(buf);
                }));
            }
            crate::time::sleep(std::time::Duration::from_millis(1)).await;
            drop(a);
            drop(b);
            for h in handles {
                h.await;
            }
            assert_eq!(*order.borrow(), vec![0, 1, 2]);
            assert!(super::try_acquire().is_some());
        });
    }

    #[test]
    fn set_len_and_views() {
        let rt = small_rt();
        rt.block_on(async {
            let mut buf = super::acquire().await;
            assert_eq!(buf.capacity(), 4096);
            assert!(buf.is_empty());
            buf.as_full_mut()[..3].copy_from_slice(b"abc");
            buf.set_len(3);
            assert_eq!(&buf[..], b"abc");
            assert!(buf.index().is_some());
        });
    }
}
