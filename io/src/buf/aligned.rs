//! A standalone, zeroed, 4096-aligned heap buffer for paths outside the pool (start-up reads,
//! probes, tests). Not for the data path: each one is a heap allocation.

use std::alloc::{alloc_zeroed, dealloc, Layout};

use super::{IoBuf, IoBufMut, ALIGN};

pub struct AlignedBuf {
    ptr: *mut u8,
    /// Usable bytes.
    capacity: usize,
    /// Bytes of data (all `capacity` bytes are initialised, zero at first).
    len: usize,
    /// Layout used to allocate (at least one page, so a zero-length buffer still has memory).
    layout: Layout,
}

// SAFETY: AlignedBuf owns its allocation exclusively, like a Vec<u8>.
unsafe impl Send for AlignedBuf {}
// SAFETY: shared access only reads.
unsafe impl Sync for AlignedBuf {}

impl AlignedBuf {
    /// A zeroed buffer of `len` bytes (capacity and length both `len`).
    ///
    /// # Panics
    /// On allocation failure (like `Vec`).
    pub fn new(len: usize) -> AlignedBuf {
        let layout = Layout::from_size_align(len.max(ALIGN), ALIGN)
            .expect("invariant: 4096 is a power of two and len fits isize");
        // SAFETY: the layout has a non-zero size.
        let ptr = unsafe { alloc_zeroed(layout) };
        if ptr.is_null() {
            std::alloc::handle_alloc_error(layout);
        }
        AlignedBuf { ptr, capacity: len, len, layout }
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// # Panics
    /// If `n > capacity()`.
    pub fn set_len(&mut self, n: usize) {
        assert!(n <= self.capacity, "AlignedBuf::set_len({n}) beyond capacity {}", self.capacity);
        self.len = n;
    }

    pub fn as_full_mut(&mut self) -> &mut [u8] {
        // SAFETY: `ptr` holds `capacity` initialised bytes owned by us; `&mut self` is exclusive.
        unsafe { std::slice::from_raw_parts_mut(self.ptr, self.capacity) }
    }

    pub fn as_ptr(&self) -> *const u8 {
        self.ptr
    }

    pub fn as_mut_ptr(&mut self) -> *mut u8 {
        self.ptr
    }
}

impl std::ops::Deref for AlignedBuf {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        // SAFETY: `len <= capacity` initialised bytes owned by us.
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }
}

impl std::ops::DerefMut for AlignedBuf {
    fn deref_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in Deref; `&mut self` is exclusive.
        unsafe { std::slice::from_raw_parts_mut(self.ptr, self.len) }
    }
}

impl std::fmt::Debug for AlignedBuf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AlignedBuf")
            .field("len", &self.len)
            .field("capacity", &self.capacity)
            .finish()
    }
}

impl Drop for AlignedBuf {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with exactly this layout.
        unsafe { dealloc(self.ptr, self.layout) };
    }
}

// SAFETY: the heap allocation does not move when the AlignedBuf moves.
unsafe impl IoBuf for AlignedBuf {
    fn stable_ptr(&self) -> *const u8 {
        self.ptr
    }
    fn bytes_init(&self) -> usize {
        self.len
    }
    fn bytes_total(&self) -> usize {
        self.capacity
    }
}

// SAFETY: as for `IoBuf`; every byte is initialised so any length is sound.
unsafe impl IoBufMut for AlignedBuf {
    fn stable_mut_ptr(&mut self) -> *mut u8 {
        self.ptr
    }
    unsafe fn set_init(&mut self, n: usize) {
        self.set_len(n);
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn aligned_and_zeroed() {
        let mut buf = super::AlignedBuf::new(8192);
        assert_eq!(buf.as_ptr() as usize % 4096, 0);
        assert!(buf.iter().all(|&b| b == 0));
        buf.set_len(10);
        assert_eq!(buf.len(), 10);
        assert_eq!(super::AlignedBuf::new(0).len(), 0);
    }
}
