//! Buffers the kernel reads from and writes into.
//!
//! * [`FixedBuf`]: one slot of this thread's pool, allocated once at runtime start-up,
//!   4096-aligned, registered with the ring when memlock allows (READ_FIXED/WRITE_FIXED).
//! * [`AlignedBuf`]: a standalone 4096-aligned heap buffer for rare paths (start-up, tests).
//! * `Vec<u8>`: for small socket messages (reply lines).
//!
//! I/O methods take buffers by value and hand them back with the result (ownership passing),
//! because the kernel owns the memory while an operation is in flight. The [`IoBuf`] /
//! [`IoBufMut`] traits describe what an operation needs from a buffer.

mod aligned;
pub(crate) mod pool;

pub use aligned::AlignedBuf;
pub use pool::{acquire, registered, try_acquire, Acquire, FixedBuf};

/// Page-size alignment O_DIRECT needs for addresses, offsets and lengths.
pub const ALIGN: usize = 4096;

/// A buffer whose memory stays at a fixed address while it is owned by an operation.
///
/// # Safety
/// `stable_ptr` must point to `bytes_total()` bytes that stay valid and do not move while
/// the value is alive, even if the value itself is moved; and `bytes_init() <= bytes_total()`.
/// `fixed_index`, when `Some`, must name the ring registration that covers that memory.
pub unsafe trait IoBuf: 'static {
    fn stable_ptr(&self) -> *const u8;
    /// Initialised bytes (what a write sends).
    fn bytes_init(&self) -> usize;
    /// Capacity (what a read may fill).
    fn bytes_total(&self) -> usize;
    /// Index of the registered buffer that contains this memory, if any.
    fn fixed_index(&self) -> Option<u16> {
        None
    }
}

/// A buffer the kernel may write into.
///
/// # Safety
/// As [`IoBuf`]; `stable_mut_ptr` points to the same memory as `stable_ptr`.
pub unsafe trait IoBufMut: IoBuf {
    fn stable_mut_ptr(&mut self) -> *mut u8;
    /// Sets the initialised length to exactly `n`.
    ///
    /// # Safety
    /// The first `n` bytes (n ≤ `bytes_total()`) must have been written.
    unsafe fn set_init(&mut self, n: usize);
}

// SAFETY: a Vec's heap buffer does not move when the Vec is moved, and the operation owns the
// Vec so nobody can reallocate it meanwhile.
unsafe impl IoBuf for Vec<u8> {
    fn stable_ptr(&self) -> *const u8 {
        self.as_ptr()
    }
    fn bytes_init(&self) -> usize {
        self.len()
    }
    fn bytes_total(&self) -> usize {
        self.capacity()
    }
}

// SAFETY: as for `IoBuf`; `set_init` is only called for bytes the kernel wrote.
unsafe impl IoBufMut for Vec<u8> {
    fn stable_mut_ptr(&mut self) -> *mut u8 {
        self.as_mut_ptr()
    }
    unsafe fn set_init(&mut self, n: usize) {
        // SAFETY: the caller guarantees the first `n` bytes (≤ capacity) are written.
        unsafe { self.set_len(n) };
    }
}
