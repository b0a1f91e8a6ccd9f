//! Bounded multi-producer, single-consumer channel between cores.
//!
//! Senders may live on any thread; the receiver is awaited on one runtime. The queue is a
//! `Mutex<VecDeque>` (cores exchange control messages, not bulk data). A waiting receiver
//! parks its task's std `Waker`; a sender on another thread wakes it through that runtime's
//! eventfd, whose read is armed on the ring, so a blocked `submit_and_wait` returns.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

struct Shared<T> {
    state: Mutex<State<T>>,
    /// Bound on queued messages: a slow core cannot make others buffer without limit.
    capacity: usize,
    /// Live senders; the receiver sees `None` once this reaches zero and the queue is empty.
    senders: AtomicUsize,
}

struct State<T> {
    queue: VecDeque<T>,
    receiver_waker: Option<Waker>,
    receiver_alive: bool,
}

impl<T> Shared<T> {
    fn lock(&self) -> MutexGuard<'_, State<T>> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Creates a channel holding at most `capacity` (≥ 1) queued messages.
pub fn channel<T: Send>(capacity: usize) -> (Sender<T>, Receiver<T>) {
    let capacity = capacity.max(1);
    let shared = Arc::new(Shared {
        state: Mutex::new(State {
            queue: VecDeque::with_capacity(capacity.min(1024)),
            receiver_waker: None,
            receiver_alive: true,
        }),
        capacity,
        senders: AtomicUsize::new(1),
    });
    (Sender { shared: shared.clone() }, Receiver { shared })
}

pub struct Sender<T> {
    shared: Arc<Shared<T>>,
}

impl<T: Send> Sender<T> {
    /// Queues `value`, or gives it back when the channel is full or the receiver is gone.
    pub fn try_send(&self, value: T) -> Result<(), T> {
        let waker = {
            let mut state = self.shared.lock();
            if !state.receiver_alive || state.queue.len() >= self.shared.capacity {
                return Err(value);
            }
            state.queue.push_back(value);
            state.receiver_waker.take()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
        Ok(())
    }

    /// Whether the receiver has been dropped.
    pub fn is_closed(&self) -> bool {
        !self.shared.lock().receiver_alive
    }
}

impl<T> Clone for Sender<T> {
    fn clone(&self) -> Self {
        self.shared.senders.fetch_add(1, Ordering::Relaxed);
        Sender { shared: self.shared.clone() }
    }
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        if self.shared.senders.fetch_sub(1, Ordering::AcqRel) == 1 {
            let waker = self.shared.lock().receiver_waker.take();
            if let Some(waker) = waker {
                waker.wake();
            }
        }
    }
}

pub struct Receiver<T> {
    shared: Arc<Shared<T>>,
}

impl<T> Receiver<T> {
    /// The next message; `None` once every sender is dropped and the queue is empty.
    pub fn recv(&mut self) -> Recv<'_, T> {
        Recv { receiver: self }
    }

    /// The next message if one is queued.
    pub fn try_recv(&mut self) -> Option<T> {
        self.shared.lock().queue.pop_front()
    }
}

impl<T> Drop for Receiver<T> {
    fn drop(&mut self) {
        let mut state = self.shared.lock();
        state.receiver_alive = false;
        state.receiver_waker = None;
    }
}

/// Future returned by [`Receiver::recv`].
#[must_use = "futures do nothing unless awaited"]
pub struct Recv<'a, T> {
    receiver: &'a mut Receiver<T>,
}

impl<T> Future for Recv<'_, T> {
    type Output = Option<T>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<T>> {
        let shared = &self.receiver.shared;
        let mut state = shared.lock();
        if let Some(value) = state.queue.pop_front() {
            return Poll::Ready(Some(value));
        }
        // Checked under the lock: a last sender dropping after this sees our waker.
        if shared.senders.load(Ordering::Acquire) == 0 {
            return Poll::Ready(None);
        }
        if !state.receiver_waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
            state.receiver_waker = Some(cx.waker().clone());
        }
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Runtime, RuntimeConfig};
    use std::time::{Duration, Instant};

    #[test]
    fn bounded_and_closes() {
        let rt = Runtime::new(RuntimeConfig::default()).expect("runtime");
        rt.block_on(async {
            let (tx, mut rx) = channel::<u32>(2);
            assert!(tx.try_send(1).is_ok());
            assert!(tx.try_send(2).is_ok());
            assert_eq!(tx.try_send(3), Err(3));
            let tx2 = tx.clone();
            drop(tx);
            assert_eq!(rx.recv().await, Some(1));
            assert_eq!(rx.try_recv(), Some(2));
            drop(tx2);
            assert_eq!(rx.recv().await, None);
        });
    }

    #[test]
    fn wakes_a_parked_runtime_from_another_thread() {
        let rt = Runtime::new(RuntimeConfig::default()).expect("runtime");
        let (tx, mut rx) = channel::<Instant>(16);
        let sender = std::thread::spawn(move || {
            for _ in 0..20 {
                std::thread::sleep(Duration::from_millis(5));
                while tx.try_send(Instant::now()).is_err() {
                    std::thread::yield_now();
                }
            }
        });
        let received = rt.block_on(async move {
            let mut n = 0;
            // No timers are pending, so the loop parks in submit_and_wait with no timeout:
            // only the eventfd can wake it.
            while let Some(sent) = rx.recv().await {
                assert!(sent.elapsed() < Duration::from_secs(1), "wake-up took too long");
                n += 1;
            }
            n
        });
        sender.join().expect("sender thread");
        assert_eq!(received, 20);
    }
}
