//! Timers: `sleep`, `sleep_until` and `timeout`, driven by the runtime loop.
//!
//! Instead of one IORING_OP_TIMEOUT SQE per timer, the loop keeps an ordered map of deadlines
//! and passes the nearest one as the timeout of its blocking `io_uring_enter`. Every command
//! carries a deadline, and most are cancelled when the command finishes: a map removal is
//! cheaper than an SQE plus a TIMEOUT_REMOVE, and nothing the kernel owns is involved.

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use crate::runtime::{try_with_current, with_current};

/// Pending timers of one runtime, ordered by deadline then registration order.
#[derive(Default)]
pub(crate) struct TimerQueue {
    timers: BTreeMap<(Instant, u64), Waker>,
    /// Tie-breaker so two timers with the same deadline get distinct keys.
    next_seq: u64,
    /// Reused buffer for wakers of expired timers (woken after the map borrow ends).
    expired: Vec<Waker>,
}

impl TimerQueue {
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.timers.keys().next().map(|(deadline, _)| *deadline)
    }

    fn insert(&mut self, deadline: Instant, waker: Waker) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.timers.insert((deadline, seq), waker);
        seq
    }

    pub(crate) fn clear(&mut self) {
        self.timers.clear();
    }

    /// Removes expired timers and returns their wakers; the caller wakes them.
    pub(crate) fn take_expired(&mut self, now: Instant) -> Vec<Waker> {
        let mut expired = std::mem::take(&mut self.expired);
        while let Some(entry) = self.timers.first_entry() {
            if entry.key().0 > now {
                break;
            }
            expired.push(entry.remove());
        }
        expired
    }

    pub(crate) fn give_back(&mut self, mut buffer: Vec<Waker>) {
        buffer.clear();
        self.expired = buffer;
    }
}

/// Future returned by [`sleep`] and [`sleep_until`].
#[must_use = "futures do nothing unless awaited"]
pub struct Sleep {
    deadline: Instant,
    /// Key in the runtime's timer map once registered.
    seq: Option<u64>,
}

/// Completes after `duration`.
pub fn sleep(duration: Duration) -> Sleep {
    sleep_until(Instant::now() + duration)
}

/// Completes at `deadline`.
pub fn sleep_until(deadline: Instant) -> Sleep {
    Sleep { deadline, seq: None }
}

impl Sleep {
    pub fn deadline(&self) -> Instant {
        self.deadline
    }
}

impl Future for Sleep {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if Instant::now() >= self.deadline {
            self.unregister();
            return Poll::Ready(());
        }
        let deadline = self.deadline;
        let seq = self.seq;
        let seq = with_current(|rt| {
            let mut timers = rt.timers.borrow_mut();
            if let Some(seq) = seq {
                if let Some(waker) = timers.timers.get_mut(&(deadline, seq)) {
                    if !waker.will_wake(cx.waker()) {
                        *waker = cx.waker().clone();
                    }
                    return seq;
                }
            }
            timers.insert(deadline, cx.waker().clone())
        });
        self.seq = Some(seq);
        Poll::Pending
    }
}

impl Sleep {
    fn unregister(&mut self) {
        if let Some(seq) = self.seq.take() {
            let deadline = self.deadline;
            let removed =
                try_with_current(|rt| rt.timers.borrow_mut().timers.remove(&(deadline, seq)));
            // Dropped outside the borrow: dropping a waker may run arbitrary code.
            drop(removed);
        }
    }
}

impl Drop for Sleep {
    fn drop(&mut self) {
        self.unregister();
    }
}

/// The deadline of a [`timeout`] passed before its future completed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Elapsed;

impl fmt::Display for Elapsed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("deadline elapsed")
    }
}

impl std::error::Error for Elapsed {}

impl From<Elapsed> for std::io::Error {
    fn from(_: Elapsed) -> Self {
        std::io::Error::new(std::io::ErrorKind::TimedOut, Elapsed)
    }
}

/// Future returned by [`timeout`].
#[must_use = "futures do nothing unless awaited"]
pub struct Timeout<F> {
    /// Structurally pinned: never moved out of the `Timeout`.
    future: F,
    sleep: Sleep,
}

/// Runs `future` for at most `duration`; on expiry the future is dropped (its in-flight ops
/// are cancelled and their buffers kept until the kernel lets go).
pub fn timeout<F: Future>(duration: Duration, future: F) -> Timeout<F> {
    timeout_at(Instant::now() + duration, future)
}

/// Like [`timeout`] with an absolute deadline.
pub fn timeout_at<F: Future>(deadline: Instant, future: F) -> Timeout<F> {
    Timeout { future, sleep: sleep_until(deadline) }
}

impl<F: Future> Future for Timeout<F> {
    type Output = Result<F::Output, Elapsed>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        // SAFETY: `future` is pinned structurally (never moved, no Unpin-dependent Drop);
        // `sleep` is Unpin and may be accessed by plain reference.
        let this = unsafe { self.get_unchecked_mut() };
        // SAFETY: see above; `this.future` stays in place until `Timeout` is dropped.
        let future = unsafe { Pin::new_unchecked(&mut this.future) };
        if let Poll::Ready(out) = future.poll(cx) {
            return Poll::Ready(Ok(out));
        }
        match Pin::new(&mut this.sleep).poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(Elapsed)),
            Poll::Pending => Poll::Pending,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Runtime, RuntimeConfig};

    #[test]
    fn sleep_and_timeout_fire() {
        let rt = Runtime::new(RuntimeConfig::default()).expect("runtime");
        rt.block_on(async {
            let start = Instant::now();
            sleep(Duration::from_millis(20)).await;
            assert!(start.elapsed() >= Duration::from_millis(20));

            let start = Instant::now();
            let never = std::future::pending::<()>();
            assert_eq!(timeout(Duration::from_millis(15), never).await, Err(Elapsed));
            let waited = start.elapsed();
            assert!(waited >= Duration::from_millis(15) && waited < Duration::from_secs(1));

            assert_eq!(timeout(Duration::from_secs(5), async { 7 }).await, Ok(7));
            // A cancelled long timer must not keep the loop from parking on the next one.
            drop(sleep(Duration::from_secs(3600)));
            let start = Instant::now();
            sleep(Duration::from_millis(5)).await;
            assert!(start.elapsed() < Duration::from_secs(1));
        });
    }
}
