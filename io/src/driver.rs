//! The ring driver: one `IoUring`, the table of in-flight operations, and the `Op` future.
//!
//! Each submitted SQE gets a slab key as `user_data`. The `Op<T>` future owns `T`, everything
//! the kernel may touch (buffers, the fd, an address box). When the CQE arrives the slot turns
//! `Done` and the task is woken. If the `Op` is dropped first, `T` moves into the slot
//! (`Abandoned`) and an ASYNC_CANCEL is queued; `T` is dropped only when the CQE arrives, so
//! memory the kernel may still write is never freed (STYLE.md rule 6).

use std::any::Any;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use io_uring::{opcode, squeue, types, IoUring};

use crate::runtime::{try_with_current, with_current};
use crate::slab::Slab;

/// `user_data` of the eventfd read that wakes a parked ring from other threads.
pub(crate) const EVENTFD_TAG: u64 = u64::MAX;
/// `user_data` of ASYNC_CANCEL requests; their own CQEs carry nothing we need.
pub(crate) const CANCEL_TAG: u64 = u64::MAX - 1;

/// What the kernel reported for one operation.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Completion {
    pub(crate) result: i32,
}

impl Completion {
    pub(crate) fn into_io(self) -> io::Result<usize> {
        if self.result < 0 {
            Err(io::Error::from_raw_os_error(-self.result))
        } else {
            Ok(self.result as usize)
        }
    }
}

enum OpState {
    /// Submitted; the waker of the task awaiting it, once polled.
    Waiting(Option<Waker>),
    /// The CQE arrived; the `Op` future has not collected it yet.
    Done(Completion),
    /// The `Op` future was dropped; this keeps its resources alive until the CQE.
    Abandoned(Box<dyn Any>),
}

pub(crate) struct Driver {
    pub(crate) ring: IoUring,
    /// In-flight operations keyed by `user_data`.
    ops: Slab<OpState>,
    /// Target of the eventfd read; boxed so its address is stable while the kernel owns it.
    eventfd_buf: Box<u64>,
    /// The eventfd (owned by `runtime::Remote`) that other threads write to wake us.
    eventfd: i32,
    /// Whether an eventfd read is in flight; its buffer must outlive it.
    pub(crate) eventfd_armed: bool,
    /// Wakers collected while reaping, woken by the caller after releasing the borrow.
    pub(crate) wakes: Vec<Waker>,
    /// Resources of abandoned ops whose CQE arrived, dropped by the caller outside the borrow.
    pub(crate) dropped: Vec<Box<dyn Any>>,
}

impl Driver {
    pub(crate) fn new(ring: IoUring, eventfd: i32, capacity: usize) -> Self {
        Driver {
            ring,
            ops: Slab::with_capacity(capacity),
            eventfd_buf: Box::new(0),
            eventfd,
            eventfd_armed: false,
            wakes: Vec::with_capacity(64),
            dropped: Vec::new(),
        }
    }

    /// Operations the kernel still owns (the eventfd read included).
    pub(crate) fn in_flight(&self) -> usize {
        self.ops.len() + usize::from(self.eventfd_armed)
    }

    /// Queues an SQE, submitting first when the SQ is full.
    fn push_sqe(&mut self, entry: &squeue::Entry) -> io::Result<()> {
        loop {
            // SAFETY: every pointer in our SQEs refers to memory owned by the matching `Op`
            // (or the driver for the eventfd read), which outlives the operation.
            if unsafe { self.ring.submission().push(entry) }.is_ok() {
                return Ok(());
            }
            match self.ring.submit() {
                Ok(_) => {}
                // The CQ overflowed: make room by reaping, then retry.
                Err(e) if e.raw_os_error() == Some(libc::EBUSY) => self.reap(),
                Err(e) if e.raw_os_error() == Some(libc::EINTR) => {}
                Err(e) => return Err(e),
            }
        }
    }

    pub(crate) fn push_op(&mut self, entry: squeue::Entry) -> io::Result<usize> {
        let key = self.ops.insert(OpState::Waiting(None));
        let entry = entry.user_data(key as u64);
        if let Err(e) = self.push_sqe(&entry) {
            self.ops.remove(key);
            return Err(e);
        }
        Ok(key)
    }

    /// Arms the eventfd read if it is not already in flight.
    pub(crate) fn arm_eventfd(&mut self) {
        if self.eventfd_armed {
            return;
        }
        let ptr: *mut u64 = &mut *self.eventfd_buf;
        let entry = opcode::Read::new(types::Fd(self.eventfd), ptr.cast(), 8)
            .build()
            .user_data(EVENTFD_TAG);
        match self.push_sqe(&entry) {
            Ok(()) => self.eventfd_armed = true,
            Err(e) => tracing::error!(error = %e, "ibp-io: cannot arm the wake-up eventfd"),
        }
    }

    /// Moves CQEs into op slots; wakers go to `self.wakes`, abandoned data to `self.dropped`.
    pub(crate) fn reap(&mut self) {
        let Driver { ring, ops, eventfd_armed, wakes, dropped, .. } = self;
        for cqe in ring.completion() {
            match cqe.user_data() {
                EVENTFD_TAG => *eventfd_armed = false,
                CANCEL_TAG => {}
                key => {
                    let key = key as usize;
                    let completion = Completion { result: cqe.result() };
                    let Some(slot) = ops.get_mut(key) else {
                        tracing::error!(key, "ibp-io: completion for an unknown operation");
                        continue;
                    };
                    match std::mem::replace(slot, OpState::Done(completion)) {
                        OpState::Waiting(waker) => wakes.extend(waker),
                        OpState::Abandoned(data) => {
                            ops.remove(key);
                            dropped.push(data);
                        }
                        OpState::Done(_) => {
                            tracing::error!(key, "ibp-io: second completion for an operation");
                        }
                    }
                }
            }
        }
    }

    fn poll_op(&mut self, key: usize, waker: &Waker) -> Poll<Completion> {
        let slot = self.ops.get_mut(key).expect("invariant: a live Op owns its slot");
        match slot {
            OpState::Waiting(stored) => {
                if !stored.as_ref().is_some_and(|w| w.will_wake(waker)) {
                    *stored = Some(waker.clone());
                }
                Poll::Pending
            }
            OpState::Done(completion) => {
                let completion = *completion;
                self.ops.remove(key);
                Poll::Ready(completion)
            }
            OpState::Abandoned(_) => unreachable!("invariant: only a dropped Op abandons"),
        }
    }

    /// Called when an `Op` is dropped before completing. Returns the data if it can be freed now.
    fn abandon(&mut self, key: usize, data: Box<dyn Any>) -> Option<Box<dyn Any>> {
        let slot = self.ops.get_mut(key).expect("invariant: a live Op owns its slot");
        if let OpState::Done(_) = slot {
            self.ops.remove(key);
            return Some(data);
        }
        *slot = OpState::Abandoned(data);
        // Ask the kernel to finish early (a recv on an idle socket would otherwise pin its
        // buffer until the peer speaks). Failure to queue it only delays the release.
        let cancel = opcode::AsyncCancel::new(key as u64).build().user_data(CANCEL_TAG);
        if let Err(e) = self.push_sqe(&cancel) {
            tracing::debug!(error = %e, "ibp-io: could not queue ASYNC_CANCEL");
        }
        None
    }

    /// Asks the kernel to cancel everything in flight (runtime shutdown).
    pub(crate) fn cancel_all(&mut self) {
        let cancel =
            opcode::AsyncCancel2::new(types::CancelBuilder::any()).build().user_data(CANCEL_TAG);
        if let Err(e) = self.push_sqe(&cancel) {
            tracing::debug!(error = %e, "ibp-io: could not queue cancel-all");
        }
    }
}

/// A submitted operation; resolves to the kernel's result and gives back the owned data.
pub(crate) struct Op<T: 'static> {
    /// Slab key, `None` once completed (or if the submission itself failed).
    key: Option<usize>,
    /// Runtime that owns the slot; an `Op` must be polled and dropped on that runtime.
    rt_id: usize,
    /// Resources the kernel may touch until the CQE arrives.
    data: Option<T>,
    /// Set when the SQE could not be queued at all.
    submit_error: Option<i32>,
}

// `Op` never hands out pinned references to its fields.
impl<T> Unpin for Op<T> {}

impl<T: 'static> Op<T> {
    /// Queues `entry` (whose pointers must refer into `data`) on the current runtime.
    pub(crate) fn submit(entry: squeue::Entry, data: T) -> Op<T> {
        with_current(|rt| match rt.driver.borrow_mut().push_op(entry) {
            Ok(key) => Op { key: Some(key), rt_id: rt.id, data: Some(data), submit_error: None },
            Err(e) => Op {
                key: None,
                rt_id: rt.id,
                data: Some(data),
                submit_error: Some(e.raw_os_error().unwrap_or(libc::EIO)),
            },
        })
    }
}

impl<T: 'static> Future for Op<T> {
    type Output = (Completion, T);

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let completion = match this.key {
            None => {
                let errno = this.submit_error.take().expect("invariant: Op polled after Ready");
                Completion { result: -errno }
            }
            Some(key) => {
                let polled = with_current(|rt| {
                    debug_assert_eq!(rt.id, this.rt_id, "Op polled on a foreign runtime");
                    rt.driver.borrow_mut().poll_op(key, cx.waker())
                });
                match polled {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(c) => c,
                }
            }
        };
        this.key = None;
        let data = this.data.take().expect("invariant: Op data present until Ready");
        Poll::Ready((completion, data))
    }
}

impl<T: 'static> Drop for Op<T> {
    fn drop(&mut self) {
        let Some(key) = self.key else { return };
        let Some(data) = self.data.take() else { return };
        let mut pending: Option<Box<dyn Any>> = Some(Box::new(data));
        let rt_id = self.rt_id;
        let free_now = try_with_current(|rt| {
            if rt.id != rt_id {
                return None;
            }
            let data = pending.take()?;
            rt.driver.borrow_mut().abandon(key, data)
        })
        .flatten();
        // Dropped here, outside the driver borrow: the data may hold fds or pool buffers.
        drop(free_now);
        if let Some(data) = pending {
            tracing::error!("ibp-io: operation dropped off its runtime; leaking its buffers");
            std::mem::forget(data);
        }
    }
}
