//! Single-thread synchronisation between tasks of one runtime.
//!
//! [`Notify`] serves server-sync waits and group-commit waiters. Like tokio's, a `Notified`
//! future counts as waiting from the moment it is created (so "create, check the condition,
//! await" cannot miss a `notify_waiters`), and `notify_one` with nobody waiting stores one
//! permit for the next waiter.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

#[derive(Default)]
pub struct Notify {
    /// Bumped by `notify_waiters`; a `Notified` created before a bump completes.
    generation: Cell<u64>,
    /// A `notify_one` that found nobody waiting.
    permit: Cell<bool>,
    /// Polled waiters, oldest first.
    waiters: RefCell<VecDeque<Rc<NotifyWaiter>>>,
}

struct NotifyWaiter {
    notified: Cell<bool>,
    waker: RefCell<Option<Waker>>,
}

impl Notify {
    pub fn new() -> Notify {
        Notify::default()
    }

    /// A future that completes on the next `notify_waiters` (even if called before its first
    /// poll) or when it is chosen by `notify_one`.
    pub fn notified(&self) -> Notified<'_> {
        Notified { notify: self, generation: self.generation.get(), waiter: None }
    }

    /// Wakes every current waiter (and every `Notified` created before this call).
    pub fn notify_waiters(&self) {
        self.generation.set(self.generation.get().wrapping_add(1));
        let waiters = std::mem::take(&mut *self.waiters.borrow_mut());
        for waiter in waiters {
            waiter.notified.set(true);
            let waker = waiter.waker.borrow_mut().take();
            if let Some(waker) = waker {
                waker.wake();
            }
        }
    }

    /// Wakes the oldest waiter, or stores a permit for the next one.
    pub fn notify_one(&self) {
        let waiter = self.waiters.borrow_mut().pop_front();
        match waiter {
            Some(waiter) => {
                waiter.notified.set(true);
                let waker = waiter.waker.borrow_mut().take();
                if let Some(waker) = waker {
                    waker.wake();
                }
            }
            None => self.permit.set(true),
        }
    }
}

/// Future returned by [`Notify::notified`].
#[must_use = "futures do nothing unless awaited"]
pub struct Notified<'a> {
    notify: &'a Notify,
    generation: u64,
    waiter: Option<Rc<NotifyWaiter>>,
}

impl Future for Notified<'_> {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let notify = self.notify;
        if let Some(waiter) = &self.waiter {
            if waiter.notified.get() {
                self.waiter = None;
                return Poll::Ready(());
            }
            *waiter.waker.borrow_mut() = Some(cx.waker().clone());
            return Poll::Pending;
        }
        if notify.generation.get() != self.generation || notify.permit.replace(false) {
            return Poll::Ready(());
        }
        let waiter = Rc::new(NotifyWaiter {
            notified: Cell::new(false),
            waker: RefCell::new(Some(cx.waker().clone())),
        });
        notify.waiters.borrow_mut().push_back(waiter.clone());
        self.waiter = Some(waiter);
        Poll::Pending
    }
}

impl Drop for Notified<'_> {
    fn drop(&mut self) {
        let Some(waiter) = self.waiter.take() else { return };
        if waiter.notified.get() {
            // Chosen by notify_one (or notify_waiters) but never collected: a notify_one must
            // not be lost, so pass it on. A surplus permit only causes one spurious wake-up.
            self.notify.notify_one();
        } else {
            self.notify.waiters.borrow_mut().retain(|w| !Rc::ptr_eq(w, &waiter));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{spawn, Runtime, RuntimeConfig};

    #[test]
    fn notify_waiters_and_one() {
        let rt = Runtime::new(RuntimeConfig::default()).expect("runtime");
        rt.block_on(async {
            let notify = Rc::new(Notify::new());
            let done = Rc::new(Cell::new(0));
            let mut handles = Vec::new();
            for _ in 0..3 {
                let (notify, done) = (notify.clone(), done.clone());
                handles.push(spawn(async move {
                    notify.notified().await;
                    done.set(done.get() + 1);
                }));
            }
            crate::time::sleep(std::time::Duration::from_millis(1)).await;
            notify.notify_waiters();
            for h in handles {
                h.await;
            }
            assert_eq!(done.get(), 3);
            // A Notified created before notify_waiters completes even if polled after.
            let early = notify.notified();
            notify.notify_waiters();
            early.await;
            // notify_one with nobody waiting leaves a permit.
            notify.notify_one();
            notify.notified().await;
        });
    }
}
