//! Per-allocation runtime state: checksum-block range locks, the writers in flight, and the
//! wake-up that server sync waits on.
//!
//! Design: a writer holds its checksum blocks exclusively from the first byte it reads or
//! writes until its metadata is committed, so a block's CRC always matches its bytes once the
//! lock is released; readers hold theirs shared so they never verify a half-written block.
//! The lock set is a short list (a handful of transfers per allocation at most), so a linear
//! conflict check beats any tree.

use std::cell::{Cell, RefCell};
use std::ops::Range;
use std::rc::Rc;

use ibp_io::sync::Notify;

/// Runtime-only state of one allocation (never journaled).
#[derive(Default)]
pub struct AllocRt {
    /// Held block ranges: (blocks, exclusive).
    held: RefCell<Vec<(Range<u64>, bool)>>,
    /// Woken whenever a lock is released or the size grows.
    pub changed: Notify,
    /// STORE/WRITE transfers in progress; server sync waits only while there are some.
    pub writers: Cell<u32>,
    /// End of the appends reserved by STOREs in flight, so concurrent STOREs append in order.
    pub append_end: Cell<Option<u64>>,
    /// WRITE/VEC_WRITE transfers in progress (not yet committed): an append waits for them,
    /// since the size it appends at is the one they leave.
    pub span_writers: Cell<u32>,
}

/// Releases its blocks when dropped.
pub struct BlockGuard {
    rt: Rc<AllocRt>,
    range: Range<u64>,
    exclusive: bool,
}

impl AllocRt {
    fn conflicts(&self, range: &Range<u64>, exclusive: bool) -> bool {
        self.held
            .borrow()
            .iter()
            .any(|(r, ex)| (exclusive || *ex) && r.start < range.end && range.start < r.end)
    }

    /// Whether anything holds any block (the allocation must not be freed meanwhile).
    pub fn busy(&self) -> bool {
        !self.held.borrow().is_empty() || self.writers.get() > 0
    }

    /// Waits until `blocks` can be held (exclusively for writers) and holds them.
    pub async fn lock(self: &Rc<Self>, blocks: Range<u64>, exclusive: bool) -> BlockGuard {
        loop {
            let wait = self.changed.notified();
            if !self.conflicts(&blocks, exclusive) {
                break;
            }
            wait.await;
        }
        self.held.borrow_mut().push((blocks.clone(), exclusive));
        BlockGuard { rt: self.clone(), range: blocks, exclusive }
    }
}

impl Drop for BlockGuard {
    fn drop(&mut self) {
        let mut held = self.rt.held.borrow_mut();
        if let Some(i) = held.iter().position(|(r, ex)| *r == self.range && *ex == self.exclusive) {
            held.swap_remove(i);
        }
        drop(held);
        self.rt.changed.notify_waiters();
    }
}

/// Counts a writer in flight for as long as it lives (and, for a write at offsets, a span
/// writer: see [`AllocRt::span_writers`]).
pub struct WriterGuard(Rc<AllocRt>, bool);

impl WriterGuard {
    pub fn new(rt: &Rc<AllocRt>, at_offsets: bool) -> WriterGuard {
        rt.writers.set(rt.writers.get() + 1);
        if at_offsets {
            rt.span_writers.set(rt.span_writers.get() + 1);
        }
        WriterGuard(rt.clone(), at_offsets)
    }
}

impl AllocRt {
    /// Waits until no write at offsets is in progress (an append then sees the size they
    /// leave).
    pub async fn no_span_writers(&self) {
        while self.span_writers.get() > 0 {
            let wait = self.changed.notified();
            if self.span_writers.get() == 0 {
                break;
            }
            wait.await;
        }
    }
}

impl Drop for WriterGuard {
    fn drop(&mut self) {
        self.0.writers.set(self.0.writers.get() - 1);
        if self.1 {
            self.0.span_writers.set(self.0.span_writers.get() - 1);
        }
        self.0.changed.notify_waiters();
    }
}
