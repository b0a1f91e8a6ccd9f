//! Helpers for sending one buffer to many peers at once: a shared read-only view of a pool
//! buffer, and a `join_all` for this core's `!Send` futures.
//!
//! Design: MCOPY fan-out reads each chunk from disk once and sends it to every target in
//! parallel; the chunk's pool buffer is shared by reference count and returns to the pool when
//! the last send completes. The kernel only reads it, so sharing is sound.

use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};

use ibp_io::{FixedBuf, IoBuf};

/// A pool buffer shared by several concurrent sends.
#[derive(Clone)]
pub struct SharedBuf(pub Rc<FixedBuf>);

// SAFETY: the FixedBuf's memory stays put while any clone is alive (the Rc keeps it out of
// the pool), and sends only read it; nobody can get `&mut` to it through an Rc it shares.
unsafe impl IoBuf for SharedBuf {
    fn stable_ptr(&self) -> *const u8 {
        self.0.as_ptr()
    }
    fn bytes_init(&self) -> usize {
        self.0.len()
    }
    fn bytes_total(&self) -> usize {
        self.0.capacity()
    }
    fn fixed_index(&self) -> Option<u16> {
        self.0.index()
    }
}

/// Runs every future to completion, concurrently on this task; outputs in input order.
pub async fn join_all<'a, T>(futs: Vec<Pin<Box<dyn Future<Output = T> + 'a>>>) -> Vec<T> {
    JoinAll { futs: futs.into_iter().map(Some).collect(), out: Vec::new() }.await
}

struct JoinAll<'a, T> {
    futs: Vec<Option<Pin<Box<dyn Future<Output = T> + 'a>>>>,
    out: Vec<Option<T>>,
}

// Every field is Unpin (boxed futures, plain values kept by value, never pinned).
impl<T> Unpin for JoinAll<'_, T> {}

impl<T> Future for JoinAll<'_, T> {
    type Output = Vec<T>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Vec<T>> {
        let this = self.get_mut();
        if this.out.is_empty() {
            this.out = (0..this.futs.len()).map(|_| None).collect();
        }
        let mut pending = false;
        for (i, slot) in this.futs.iter_mut().enumerate() {
            if let Some(f) = slot {
                match f.as_mut().poll(cx) {
                    Poll::Ready(v) => {
                        this.out[i] = Some(v);
                        *slot = None;
                    }
                    Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            return Poll::Pending;
        }
        Poll::Ready(this.out.iter_mut().filter_map(Option::take).collect())
    }
}
