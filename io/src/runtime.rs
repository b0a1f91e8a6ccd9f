//! The per-thread runtime: ring, op table, timers, run queue and buffer pool, and the loop.
//!
//! The loop polls up to `TASK_BUDGET` ready tasks, then turns the ring: queued SQEs are
//! submitted in one syscall, completions are reaped and their tasks woken, expired timers
//! fire. Only when nothing is runnable does it block in `submit_and_wait(1)` (with the nearest
//! timer as the wait's timeout), with an eventfd read armed so other threads can wake it.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::future::Future;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::pin::pin;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use io_uring::{types, IoUring};

use crate::buf::pool::Pool;
use crate::driver::Driver;
use crate::slab::Slab;
use crate::task::{Remote, Task, TaskWaker, MAIN_TASK};
use crate::time::TimerQueue;

/// Tasks polled between two turns of the ring, so I/O completions are never starved.
const TASK_BUDGET: usize = 128;
/// How long dropping a runtime waits for the kernel to finish cancelled operations.
const SHUTDOWN_WAIT: Duration = Duration::from_secs(5);

/// Sizing of one runtime. All memory is allocated in `Runtime::new`.
#[derive(Clone, Debug)]
pub struct RuntimeConfig {
    /// Submission queue entries (the completion queue gets twice as many).
    pub ring_entries: u32,
    /// Bytes per pool buffer; a multiple of 4096 so buffers serve O_DIRECT.
    pub buffer_size: usize,
    /// Buffers in this thread's pool (at most 65535).
    pub buffer_count: usize,
    /// Register the pool with the ring (READ_FIXED/WRITE_FIXED). `false` forces the
    /// unregistered fallback, which is also taken when memlock is too small.
    pub register_buffers: bool,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        RuntimeConfig {
            ring_entries: 256,
            buffer_size: 256 * 1024,
            buffer_count: 64,
            register_buffers: true,
        }
    }
}

static NEXT_RUNTIME_ID: AtomicUsize = AtomicUsize::new(1);

thread_local! {
    static CURRENT: RefCell<Option<Rc<Inner>>> = const { RefCell::new(None) };
}

/// Runs `f` on the runtime entered on this thread.
///
/// # Panics
/// Outside `Runtime::block_on`.
pub(crate) fn with_current<R>(f: impl FnOnce(&Inner) -> R) -> R {
    try_with_current(f).expect("ibp-io: no runtime on this thread (call inside Runtime::block_on)")
}

/// Runs `f` on the runtime entered on this thread, if any.
pub(crate) fn try_with_current<R>(f: impl FnOnce(&Inner) -> R) -> Option<R> {
    CURRENT.try_with(|current| current.borrow().as_deref().map(f)).ok().flatten()
}

/// Hands queued SQEs to the kernel now (one non-blocking `io_uring_enter`) instead of at the
/// loop's next turn. Socket calls that complete by a plain syscall keep a task running without
/// reaching the turn, and disk or journal writes queued meanwhile by other tasks would wait.
pub(crate) fn flush_submissions() {
    try_with_current(|rt| {
        let Ok(mut driver) = rt.driver.try_borrow_mut() else { return };
        if !driver.ring.submission().is_empty() {
            if let Err(e) = driver.ring.submit() {
                tracing::debug!(error = %e, "ibp-io: submit");
            }
        }
    });
}

/// State shared by the loop, the op futures and the wakers of one runtime.
pub(crate) struct Inner {
    /// Distinguishes runtimes so a waker or op never touches the wrong one.
    pub(crate) id: usize,
    /// The ring and in-flight ops. Declared before `pool` so the ring (and its buffer
    /// registration) is torn down before the pool memory is unmapped.
    pub(crate) driver: RefCell<Driver>,
    pub(crate) tasks: RefCell<Slab<Task>>,
    /// Ids of tasks ready to poll, FIFO.
    pub(crate) run_queue: RefCell<VecDeque<usize>>,
    /// Wake-ups from other threads.
    pub(crate) remote: Arc<Remote>,
    pub(crate) timers: RefCell<TimerQueue>,
    pub(crate) pool: Rc<Pool>,
}

impl Inner {
    /// Submits queued SQEs, parks if nothing is runnable, reaps completions, fires timers.
    fn turn(&self) {
        self.remote.drain(&mut self.run_queue.borrow_mut());
        if self.run_queue.borrow().is_empty() {
            let deadline = self.timers.borrow().next_deadline();
            self.park(deadline);
        } else {
            let mut driver = self.driver.borrow_mut();
            if !driver.ring.submission().is_empty() {
                if let Err(e) = driver.ring.submit() {
                    tracing::debug!(error = %e, "ibp-io: submit");
                }
            }
        }
        self.reap();
        self.fire_timers();
        self.remote.drain(&mut self.run_queue.borrow_mut());
    }

    /// Blocks until a completion arrives, another thread wakes us, or `deadline` passes.
    fn park(&self, deadline: Option<Instant>) {
        let mut driver = self.driver.borrow_mut();
        driver.arm_eventfd();
        let result = match deadline {
            None => driver.ring.submit_and_wait(1),
            Some(deadline) => {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    driver.ring.submit()
                } else {
                    let ts = types::Timespec::from(left);
                    let args = types::SubmitArgs::new().timespec(&ts);
                    driver.ring.submitter().submit_with_args(1, &args)
                }
            }
        };
        if let Err(e) = result {
            match e.raw_os_error() {
                Some(libc::ETIME) | Some(libc::EINTR) | Some(libc::EBUSY) => {}
                _ => tracing::error!(error = %e, "ibp-io: io_uring_enter failed while parked"),
            }
        }
    }

    /// Reaps CQEs, then wakes tasks and frees abandoned resources outside the driver borrow.
    pub(crate) fn reap(&self) {
        let (mut wakes, dropped) = {
            let mut driver = self.driver.borrow_mut();
            driver.reap();
            (std::mem::take(&mut driver.wakes), std::mem::take(&mut driver.dropped))
        };
        drop(dropped);
        for waker in wakes.drain(..) {
            waker.wake();
        }
        // Hand the (empty) vector back so its capacity is reused: no allocation per turn.
        let mut driver = self.driver.borrow_mut();
        if driver.wakes.is_empty() {
            driver.wakes = wakes;
        }
    }

    fn fire_timers(&self) {
        let mut expired = {
            let mut timers = self.timers.borrow_mut();
            if timers.next_deadline().is_none_or(|d| d > Instant::now()) {
                return;
            }
            timers.take_expired(Instant::now())
        };
        for waker in expired.drain(..) {
            waker.wake();
        }
        self.timers.borrow_mut().give_back(expired);
    }

    fn poll_task(&self, id: usize) {
        let taken = {
            let mut tasks = self.tasks.borrow_mut();
            let Some(task) = tasks.get_mut(id) else { return };
            let Some(future) = task.future.take() else { return };
            (future, task.waker.clone(), task.waker_state.clone())
        };
        let (mut future, waker, waker_state) = taken;
        waker_state.scheduled.store(false, Ordering::Release);
        let mut cx = Context::from_waker(&waker);
        match future.as_mut().poll(&mut cx) {
            Poll::Pending => {
                if let Some(task) = self.tasks.borrow_mut().get_mut(id) {
                    task.future = Some(future);
                }
            }
            Poll::Ready(()) => {
                drop(future);
                let task = self.tasks.borrow_mut().remove(id);
                if let Some(task) = task {
                    task.join.complete();
                }
            }
        }
    }
}

/// One thread's I/O runtime. Create it on the thread that runs it (it is `!Send`).
pub struct Runtime {
    inner: Rc<Inner>,
}

impl Runtime {
    /// Sets up the ring, the eventfd and the buffer pool (registered when memlock allows).
    ///
    /// Fails with a message naming the likely cause when io_uring is unavailable.
    pub fn new(cfg: RuntimeConfig) -> io::Result<Runtime> {
        validate(&cfg)?;
        let ring = build_ring(cfg.ring_entries)?;
        // SAFETY: eventfd has no memory arguments; the result is checked before use.
        let raw = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `raw` is a fresh fd that nothing else owns.
        let eventfd = unsafe { OwnedFd::from_raw_fd(raw) };
        let pool = Pool::new(cfg.buffer_size, cfg.buffer_count)?;
        pool.register(&ring, cfg.register_buffers);
        let driver = Driver::new(ring, eventfd.as_raw_fd(), cfg.ring_entries as usize * 2);
        let inner = Inner {
            id: NEXT_RUNTIME_ID.fetch_add(1, Ordering::Relaxed),
            driver: RefCell::new(driver),
            tasks: RefCell::new(Slab::with_capacity(256)),
            run_queue: RefCell::new(VecDeque::with_capacity(256)),
            remote: Arc::new(Remote::new(eventfd)),
            timers: RefCell::new(TimerQueue::default()),
            pool: Rc::new(pool),
        };
        Ok(Runtime { inner: Rc::new(inner) })
    }

    /// Whether this runtime's pool is registered with the ring.
    pub fn buffers_registered(&self) -> bool {
        self.inner.pool.is_registered()
    }

    /// Runs `future` and every spawned task until `future` completes.
    ///
    /// # Panics
    /// When called inside another `block_on` on the same thread, and when a task panics (the
    /// panic propagates).
    pub fn block_on<F: Future>(&self, future: F) -> F::Output {
        let _enter = Enter::new(self.inner.clone());
        let inner = &*self.inner;
        let main_state = Arc::new(TaskWaker {
            task: MAIN_TASK,
            rt_id: inner.id,
            scheduled: AtomicBool::new(true),
            remote: inner.remote.clone(),
        });
        let main_waker = Waker::from(main_state.clone());
        let mut cx = Context::from_waker(&main_waker);
        let mut future = pin!(future);
        inner.run_queue.borrow_mut().push_back(MAIN_TASK);
        loop {
            for _ in 0..TASK_BUDGET {
                let next = inner.run_queue.borrow_mut().pop_front();
                let Some(id) = next else { break };
                if id != MAIN_TASK {
                    inner.poll_task(id);
                    continue;
                }
                main_state.scheduled.store(false, Ordering::Release);
                if let Poll::Ready(out) = future.as_mut().poll(&mut cx) {
                    return out;
                }
            }
            inner.turn();
        }
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        let Some(_enter) = Enter::try_new(self.inner.clone()) else {
            tracing::error!("ibp-io: runtime dropped inside block_on; leaking it");
            std::mem::forget(self.inner.clone());
            return;
        };
        let inner = &*self.inner;
        // Dropping the tasks abandons their ops (queuing cancels); then wait for the kernel.
        let tasks = inner.tasks.borrow_mut().drain();
        drop(tasks);
        inner.timers.borrow_mut().clear();
        inner.driver.borrow_mut().cancel_all();
        let give_up = Instant::now() + SHUTDOWN_WAIT;
        while inner.driver.borrow().in_flight() > 0 && Instant::now() < give_up {
            inner.park(Some(Instant::now() + Duration::from_millis(50)));
            inner.reap();
        }
        if inner.driver.borrow().in_flight() > 0 {
            // The kernel may still write into our buffers: never unmap them.
            tracing::error!("ibp-io: operations still in flight at shutdown; leaking the ring");
            std::mem::forget(self.inner.clone());
        }
        inner.run_queue.borrow_mut().clear();
    }
}

/// Makes a runtime current on this thread for its lifetime.
struct Enter {
    previous: Option<Rc<Inner>>,
}

impl Enter {
    fn new(inner: Rc<Inner>) -> Enter {
        let already = CURRENT.with(|c| c.borrow().is_some());
        assert!(!already, "ibp-io: block_on called inside a running runtime on this thread");
        Enter::try_new(inner).expect("invariant: no runtime entered, so CURRENT is free")
    }

    fn try_new(inner: Rc<Inner>) -> Option<Enter> {
        CURRENT
            .try_with(|c| c.try_borrow_mut().ok().map(|mut c| c.replace(inner)))
            .ok()
            .flatten()
            .map(|previous| Enter { previous })
    }
}

impl Drop for Enter {
    fn drop(&mut self) {
        let previous = self.previous.take();
        let _ = CURRENT.try_with(|c| *c.borrow_mut() = previous);
    }
}

fn validate(cfg: &RuntimeConfig) -> io::Result<()> {
    let invalid = |msg: String| Err(io::Error::new(io::ErrorKind::InvalidInput, msg));
    if cfg.buffer_size == 0 || !cfg.buffer_size.is_multiple_of(4096) {
        return invalid(format!(
            "buffer_size {} is not a positive multiple of 4096",
            cfg.buffer_size
        ));
    }
    if cfg.buffer_count == 0 || cfg.buffer_count > usize::from(u16::MAX) {
        return invalid(format!("buffer_count {} is not in 1..=65535", cfg.buffer_count));
    }
    if cfg.ring_entries == 0 || cfg.ring_entries > 32768 {
        return invalid(format!("ring_entries {} is not in 1..=32768", cfg.ring_entries));
    }
    Ok(())
}

/// Builds the ring, naming the likely cause when the kernel refuses io_uring.
pub(crate) fn build_ring(entries: u32) -> io::Result<IoUring> {
    // SINGLE_ISSUER is a free speed-up (the runtime is !Send); older kernels reject it.
    let ring = IoUring::builder().setup_single_issuer().build(entries).or_else(|e| {
        if e.raw_os_error() == Some(libc::EINVAL) {
            IoUring::new(entries)
        } else {
            Err(e)
        }
    });
    ring.map_err(|e| match e.raw_os_error() {
        Some(libc::EPERM) | Some(libc::ENOSYS) => io::Error::new(
            e.kind(),
            format!(
                "io_uring unavailable ({e}): check seccomp (containers) and sysctl \
                 kernel.io_uring_disabled"
            ),
        ),
        Some(libc::ENOMEM) => io::Error::new(
            e.kind(),
            format!("io_uring setup out of memory ({e}): check RLIMIT_MEMLOCK (ulimit -l)"),
        ),
        _ => io::Error::new(e.kind(), format!("io_uring setup failed: {e}")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    #[test]
    fn spawned_tasks_run_and_join() {
        let rt = Runtime::new(RuntimeConfig::default()).expect("runtime");
        let sum = rt.block_on(async {
            let sum = Rc::new(Cell::new(0));
            let handles: Vec<_> = (1..=10)
                .map(|i| {
                    let sum = sum.clone();
                    crate::spawn(async move {
                        crate::time::sleep(Duration::from_millis(1)).await;
                        sum.set(sum.get() + i);
                    })
                })
                .collect();
            // A detached task keeps running after its handle is dropped.
            let detached = sum.clone();
            drop(crate::spawn(async move { detached.set(detached.get() + 100) }));
            for h in handles {
                h.await;
            }
            crate::time::sleep(Duration::from_millis(1)).await;
            sum.get()
        });
        assert_eq!(sum, 155);
    }

    #[test]
    fn dropping_a_runtime_with_ops_in_flight_cancels_them() {
        let rt = Runtime::new(RuntimeConfig::default()).expect("runtime");
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let client =
            std::net::TcpStream::connect(listener.local_addr().expect("addr")).expect("connect");
        rt.block_on(async {
            let stream = crate::net::TcpStream::from_std(client);
            crate::spawn(async move {
                // Never completes: nobody writes on the other side.
                let _ = stream.read(crate::buf::acquire().await).await;
            });
            crate::time::sleep(Duration::from_millis(5)).await;
        });
        let start = Instant::now();
        drop(rt);
        assert!(start.elapsed() < Duration::from_secs(1), "shutdown must not hang");
    }

    #[test]
    fn bad_config_is_refused_with_a_reason() {
        let cfg = RuntimeConfig { buffer_size: 1000, ..Default::default() };
        let err = Runtime::new(cfg).err().expect("refused");
        assert!(err.to_string().contains("4096"));
    }
}
