//! `SubmitAsync`: a borrowing future polled on the worker, one round trip
//! per poll.

use crate::error::{Error, drop_payload};
use crate::thread::Thread;
use core::fmt;
use core::future::Future;
use core::mem::ManuallyDrop;
use core::pin::Pin;
use core::task::{Context, Poll};

/// The future returned by [`Thread::submit_async`].
///
/// Each `poll` is one blocking round trip to the worker, which polls the
/// inner future once with the caller's waker and hands the result back. The
/// worker never keeps a pointer to the inner future between polls, so
/// leaking this future (`mem::forget`) is harmless. The inner future is
/// dropped on whichever thread drops this one (after it completed, too: the
/// output is handed over first, so a panic in the inner future's drop
/// unwinds out of this future's drop and loses nothing).
#[must_use = "futures do nothing unless polled"]
pub struct SubmitAsync<'a, F> {
    thread: &'a Thread,
    /// Structurally pinned; dropped in place exactly once, guarded by `done`.
    future: ManuallyDrop<F>,
    /// Set *before* `future` is dropped, so a panicking drop is not retried.
    done: bool,
    /// The future returned `Ready`: never poll it again. It is dropped only
    /// when this `SubmitAsync` is, so that a panic in its drop cannot take
    /// the output down with it.
    completed: bool,
}

impl<'a, F> SubmitAsync<'a, F> {
    pub(crate) fn new(thread: &'a Thread, future: F) -> Self {
        SubmitAsync {
            thread,
            future: ManuallyDrop::new(future),
            done: false,
            completed: false,
        }
    }

    /// Drops the inner future in place, once.
    fn finish(&mut self) {
        if !self.done {
            self.done = true;
            // SAFETY: `done` guards this: the future is dropped once, in
            // place (never moved, as pinning requires), and never used again.
            unsafe { ManuallyDrop::drop(&mut self.future) };
        }
    }
}

impl<F> Future for SubmitAsync<'_, F>
where
    F: Future + Send,
    F::Output: Send,
{
    type Output = Result<F::Output, Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        // SAFETY: nothing below moves `future` out of the pinned struct: it is
        // only polled through a `Pin` and dropped in place.
        let this = unsafe { self.get_unchecked_mut() };
        assert!(
            !this.done && !this.completed,
            "`SubmitAsync` polled after completion"
        );
        // SAFETY: `this.future` is inside the pinned `SubmitAsync` and stays
        // there until dropped in place (structural pinning).
        let future = unsafe { Pin::new_unchecked(&mut *this.future) };
        let waker = cx.waker();
        let polled = this.thread.submit(move || {
            let mut cx = Context::from_waker(waker);
            future.poll(&mut cx)
        });
        match polled {
            Ok(Poll::Pending) => Poll::Pending,
            Ok(Poll::Ready(output)) => {
                // Hand the output over first; the finished future is dropped
                // with `self` (foreign code runs after the result is safe).
                this.completed = true;
                Poll::Ready(Ok(output))
            }
            Err(error) => {
                // A panicking future is not polled again; drop it now (and
                // make sure its drop cannot panic over the error).
                if let Err(payload) =
                    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| this.finish()))
                {
                    drop_payload(payload);
                }
                Poll::Ready(Err(error))
            }
        }
    }
}

impl<F> Drop for SubmitAsync<'_, F> {
    fn drop(&mut self) {
        self.finish();
    }
}

impl<F> fmt::Debug for SubmitAsync<'_, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SubmitAsync")
            .field("thread", self.thread)
            .field("done", &self.done)
            .finish_non_exhaustive()
    }
}
