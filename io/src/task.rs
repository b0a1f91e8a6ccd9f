//! Tasks: local `!Send` futures, their std `Waker`s and join handles.
//!
//! A task's waker is an `Arc<TaskWaker>` (a real `std::task::Waker`). Woken on its own thread
//! inside the runtime it pushes the task id on the local run queue (no lock); woken from any
//! other thread it goes through `Remote`: a mutex-guarded id list plus an eventfd write, which
//! completes the eventfd read armed on the ring and so wakes a parked `submit_and_wait`.

use std::cell::Cell;
use std::collections::VecDeque;
use std::future::Future;
use std::os::fd::{AsRawFd, OwnedFd};
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};

use crate::runtime::{try_with_current, with_current};

/// Task id of the future passed to `block_on`.
pub(crate) const MAIN_TASK: usize = usize::MAX;

pub(crate) type LocalFuture = Pin<Box<dyn Future<Output = ()>>>;

pub(crate) struct Task {
    /// `None` while the task is being polled (so it may spawn without a borrow conflict).
    pub(crate) future: Option<LocalFuture>,
    pub(crate) waker_state: Arc<TaskWaker>,
    pub(crate) waker: Waker,
    pub(crate) join: Rc<JoinState>,
}

/// Cross-thread wake-up path of one runtime.
pub(crate) struct Remote {
    /// Task ids woken from other threads.
    queue: Mutex<Vec<usize>>,
    /// Set when the eventfd was written and the queue not yet drained: one write per batch.
    notified: AtomicBool,
    pub(crate) eventfd: OwnedFd,
}

impl Remote {
    pub(crate) fn new(eventfd: OwnedFd) -> Self {
        Remote { queue: Mutex::new(Vec::new()), notified: AtomicBool::new(false), eventfd }
    }

    fn push(&self, task: usize) {
        self.queue.lock().unwrap_or_else(|e| e.into_inner()).push(task);
        if !self.notified.swap(true, Ordering::SeqCst) {
            let one: u64 = 1;
            // SAFETY: writes 8 bytes from a live u64 to an eventfd we own (kept open by the Arc).
            let n =
                unsafe { libc::write(self.eventfd.as_raw_fd(), (&one as *const u64).cast(), 8) };
            // EAGAIN means the counter is saturated, so the reader wakes anyway.
            if n < 0 {
                tracing::trace!(
                    "ibp-io: eventfd write failed: {}",
                    std::io::Error::last_os_error()
                );
            }
        }
    }

    /// Moves remotely woken task ids onto the local run queue.
    pub(crate) fn drain(&self, into: &mut VecDeque<usize>) {
        if !self.notified.load(Ordering::SeqCst) {
            return;
        }
        self.notified.store(false, Ordering::SeqCst);
        let mut queue = self.queue.lock().unwrap_or_else(|e| e.into_inner());
        into.extend(queue.drain(..));
    }
}

pub(crate) struct TaskWaker {
    pub(crate) task: usize,
    pub(crate) rt_id: usize,
    /// Already on a run queue: further wakes are no-ops until the task is polled.
    pub(crate) scheduled: AtomicBool,
    pub(crate) remote: Arc<Remote>,
}

impl Wake for TaskWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        if self.scheduled.swap(true, Ordering::AcqRel) {
            return;
        }
        let local = try_with_current(|rt| {
            if rt.id == self.rt_id {
                rt.run_queue.borrow_mut().push_back(self.task);
                true
            } else {
                false
            }
        });
        if local != Some(true) {
            self.remote.push(self.task);
        }
    }
}

/// Completion flag shared between a task and its `JoinHandle`.
#[derive(Default)]
pub(crate) struct JoinState {
    done: Cell<bool>,
    waker: Cell<Option<Waker>>,
}

impl JoinState {
    pub(crate) fn complete(&self) {
        self.done.set(true);
        if let Some(waker) = self.waker.take() {
            waker.wake();
        }
    }
}

/// Handle to a spawned task. Awaiting it waits for the task to finish; dropping it detaches
/// the task, which keeps running.
///
/// A task that panics unwinds through `Runtime::block_on` (the panic propagates and takes the
/// loop down loudly, with the standard panic message); there is no per-task catch.
pub struct JoinHandle {
    state: Rc<JoinState>,
}

impl JoinHandle {
    /// Whether the task has run to completion.
    pub fn is_finished(&self) -> bool {
        self.state.done.get()
    }
}

impl Future for JoinHandle {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.state.done.get() {
            return Poll::Ready(());
        }
        self.state.waker.set(Some(cx.waker().clone()));
        Poll::Pending
    }
}

/// Spawns a `!Send` task on the current thread's runtime.
///
/// # Panics
/// If called outside `Runtime::block_on`.
pub fn spawn(future: impl Future<Output = ()> + 'static) -> JoinHandle {
    let future: LocalFuture = Box::pin(future);
    with_current(|rt| {
        let join = Rc::new(JoinState::default());
        let mut tasks = rt.tasks.borrow_mut();
        let key = tasks.next_key();
        let waker_state = Arc::new(TaskWaker {
            task: key,
            rt_id: rt.id,
            scheduled: AtomicBool::new(true),
            remote: rt.remote.clone(),
        });
        let waker = Waker::from(waker_state.clone());
        let inserted =
            tasks.insert(Task { future: Some(future), waker_state, waker, join: join.clone() });
        debug_assert_eq!(inserted, key);
        drop(tasks);
        rt.run_queue.borrow_mut().push_back(key);
        JoinHandle { state: join }
    })
}
