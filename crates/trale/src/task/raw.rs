//! One spawned task: its future, its result, and how a wake-up reaches the
//! executor that owns it.
//!
//! A task is one allocation (`Arc<TaskCell<F>>`) seen three ways: as a
//! [`Runnable`] by the executor's queues, as a `Waker` by whatever the future
//! waits on, and as a [`JoinTarget`] by its [`TaskJoiner`](super::TaskJoiner).
//! Tasks use std's `Arc` rather than `sync_core`'s because a `Waker` can only
//! be built from std's; the concurrency in here is the state word
//! (`state.rs`, which the loom model checks) plus `AtomicWaker`.

use super::state::{Start, State};
use super::{JoinError, PanicPayload};
use crate::executor::{self, ExecutorRef};
use std::any::Any;
use std::future::Future;
use std::mem::ManuallyDrop;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::ptr;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use sync_core::AtomicWaker;
use sync_core::atomic::AtomicUsize;
use sync_core::cell::UnsafeCell;

/// What a task's result slot holds once it is complete.
pub(crate) type Outcome<T> = Result<T, JoinError>;

/// `usize::MAX` in [`Header::registry_key`]: not yet in its executor's registry.
pub(crate) const UNREGISTERED: usize = usize::MAX;

/// The part of a task the executor needs without knowing its future's type.
pub(crate) struct Header {
    pub(crate) state: State,
    pub(crate) executor: ExecutorRef,
    /// Spawned from another thread (so its future is `Send` and may be
    /// dropped wherever the executor turns out to be gone).
    pub(crate) remote: bool,
    /// Where the owning executor keeps its strong reference (so it can drop
    /// every live future when it shuts down). Read and written only by the
    /// owning thread; an atomic only so the header stays `Sync` without
    /// `unsafe`.
    pub(crate) registry_key: AtomicUsize,
}

/// The executor's view of a task.
pub(crate) trait Runnable: Send + Sync {
    fn header(&self) -> &Header;
    /// Polls the future once (or drops it if aborted). Owning thread only.
    fn run(self: Arc<Self>);
    /// Drops the future without polling it: the executor is shutting down.
    /// Owning thread only.
    fn cancel_now(&self);
}

/// The joiner's view of a task.
pub(crate) trait JoinTarget<T>: Send + Sync {
    fn header(&self) -> &Header;
    fn poll_outcome(&self, cx: &mut Context<'_>) -> Poll<Outcome<T>>;
    /// The joiner leaves: drop the result if it is already there.
    fn detach(&self);
    fn schedule_abort(self: Arc<Self>);
}

pub(crate) struct TaskCell<F: Future> {
    header: Header,
    /// `Some` until the future completes or is dropped. Touched only by the
    /// owning executor's thread (`run`, `cancel_now`).
    future: UnsafeCell<Option<F>>,
    /// Written once by the owning thread before `COMPLETE` is published; read
    /// after that by the joiner alone (or taken back by the owning thread if
    /// the joiner detached first; `State::complete`/`detach` decide who).
    output: UnsafeCell<Option<Outcome<F::Output>>>,
    join_waker: AtomicWaker,
}

// SAFETY: the future (which may be `!Send`) is only ever touched on the owning
// executor's thread: `run` and `cancel_now` are called only by that executor
// (from its own queues and registry), and the future is dropped there before
// the executor lets go of the task. The output moves to another thread only
// through a `TaskJoiner<T>`, which is `Send` only when `T: Send`. Everything
// else is atomics, `AtomicWaker` and an `Arc<Shared>` (all `Send + Sync`).
unsafe impl<F: Future> Send for TaskCell<F> {}
// SAFETY: as for `Send`: shared access from other threads reaches only the
// state word, the join waker and (for the joiner) the output after
// `COMPLETE`, each of which is synchronised by `State`.
unsafe impl<F: Future> Sync for TaskCell<F> {}

impl<F: Future + 'static> TaskCell<F> {
    pub(crate) fn new(future: F, executor: ExecutorRef, remote: bool) -> Arc<Self> {
        Arc::new(Self {
            header: Header {
                state: State::new_scheduled(),
                executor,
                remote,
                registry_key: AtomicUsize::new(UNREGISTERED),
            },
            future: UnsafeCell::new(Some(future)),
            output: UnsafeCell::new(None),
            join_waker: AtomicWaker::new(),
        })
    }

    /// Publishes the outcome and hands it to the joiner, or drops it if the
    /// joiner is gone. Owning thread only.
    fn finish(&self, outcome: Outcome<F::Output>) {
        // SAFETY: `COMPLETE` is not set yet, so the joiner does not read the
        // slot; only this (owning) thread writes it.
        self.output
            .with_mut(|slot| unsafe { *slot = Some(outcome) });
        // Publish first, then take the joiner's waker: a joiner that
        // registers in between then sees COMPLETE on its re-check, and one
        // that registered before is taken here (taking first would lose a
        // registration made in the gap). The waker is foreign code running
        // on the executor's thread: its wake or drop panicking must not take
        // the executor down.
        let detached = self.header.state.complete();
        let join_waker = self.join_waker.take();
        if detached {
            // The joiner detached first and will never look: the result is ours.
            // SAFETY: `complete` saw `DETACHED`, so the joiner has left and
            // nobody else touches the slot.
            let orphan = self.output.with_mut(|slot| unsafe { (*slot).take() });
            drop_quietly(orphan);
            drop_quietly(join_waker);
        } else if let Some(waker) = join_waker {
            sync_core::unwind::wake_quietly(waker);
        }
        executor::unregister(&self.header);
    }

    /// Drops the future on this (owning) thread, catching a panicking
    /// destructor. Returns its payload, if any.
    fn drop_future(&self) -> Option<Box<dyn Any + Send>> {
        self.future.with_mut(|slot| {
            // SAFETY: the future is only touched by the owning thread, which
            // is this one, and not re-entrantly (nothing a destructor can
            // reach leads back to this cell).
            if unsafe { (*slot).is_none() } {
                return None;
            }
            // Dropped where it was pinned, never moved out first: `Pin`
            // promises a pinned value is dropped in place.
            // SAFETY: as above; the slot holds a live `Some(future)`.
            let panicked = catch_unwind(AssertUnwindSafe(|| unsafe { ptr::drop_in_place(slot) }));
            // SAFETY: the old value is dropped (also if its destructor
            // panicked: the unwind finished dropping it), so it is
            // overwritten without a second drop.
            unsafe { ptr::write(slot, None) };
            panicked.err()
        })
    }
}

impl<F: Future + 'static> Runnable for TaskCell<F> {
    fn header(&self) -> &Header {
        &self.header
    }

    fn run(self: Arc<Self>) {
        match self.header.state.start_poll() {
            Start::Skip => {}
            Start::Cancel => self.cancel_now(),
            Start::Poll => {
                let waker = waker_ref(&self);
                let mut cx = Context::from_waker(&waker);
                executor::reset_budget();
                let polled = self.future.with_mut(|slot| {
                    // SAFETY: owning thread only (see the `future` field), and
                    // no other reference to the slot exists during the poll.
                    let slot = unsafe { &mut *slot };
                    catch_unwind(AssertUnwindSafe(|| match slot {
                        // SAFETY: the future never moves: it stays in place in
                        // the `Arc` allocation until it is dropped there.
                        Some(fut) => unsafe { Pin::new_unchecked(fut) }.poll(&mut cx),
                        None => unreachable!("a completed task was polled"),
                    }))
                });
                match polled {
                    Ok(Poll::Pending) => {
                        if self.header.state.end_poll_pending() {
                            executor::schedule(self.clone());
                        }
                    }
                    Ok(Poll::Ready(value)) => {
                        let outcome = match self.drop_future() {
                            None => Ok(value),
                            Some(payload) => {
                                drop_quietly(value);
                                Err(JoinError::Panicked(PanicPayload::new(payload)))
                            }
                        };
                        self.finish(outcome);
                    }
                    Err(payload) => {
                        // The first panic is the one reported; a second one
                        // from the destructor is dropped quietly.
                        drop_quietly(self.drop_future());
                        self.finish(Err(JoinError::Panicked(PanicPayload::new(payload))));
                    }
                }
            }
        }
    }

    fn cancel_now(&self) {
        let outcome = match self.drop_future() {
            None => Err(JoinError::Cancelled),
            Some(payload) => Err(JoinError::Panicked(PanicPayload::new(payload))),
        };
        self.finish(outcome);
    }
}

impl<F: Future + 'static> JoinTarget<F::Output> for TaskCell<F> {
    fn header(&self) -> &Header {
        &self.header
    }

    fn poll_outcome(&self, cx: &mut Context<'_>) -> Poll<Outcome<F::Output>> {
        if !self.header.state.is_complete() {
            self.join_waker.register(cx.waker());
            if !self.header.state.is_complete() {
                return Poll::Pending;
            }
            // COMPLETE came between the two checks, maybe after `finish`
            // took the slot: then the waker just registered would stay in
            // the cell and be dropped wherever the last `Arc` goes, on the
            // executor's thread outside its `catch_unwind`. Take it back: it
            // is this joiner's own, dropped on this thread.
            drop(self.join_waker.take());
        }
        // SAFETY: `COMPLETE` is published (acquire) and the joiner has not
        // detached (it is calling us), so the slot is the joiner's alone.
        let outcome = self.output.with_mut(|slot| unsafe { (*slot).take() });
        Poll::Ready(outcome.expect("TaskJoiner polled again after it returned the result"))
    }

    fn detach(&self) {
        // The joiner leaves: its waker is not needed any more.
        drop_quietly(self.join_waker.take());
        if self.header.state.detach() {
            // SAFETY: complete before we detached: the owning thread will not
            // touch the slot again, and the joiner is us.
            let outcome = self.output.with_mut(|slot| unsafe { (*slot).take() });
            drop_quietly(outcome);
        }
    }

    fn schedule_abort(self: Arc<Self>) {
        if self.header.state.abort() {
            executor::schedule(self);
        }
    }
}

impl<F: Future + 'static> Wake for TaskCell<F> {
    fn wake(self: Arc<Self>) {
        if self.header.state.wake() {
            executor::schedule(self);
        }
    }

    fn wake_by_ref(self: &Arc<Self>) {
        if self.header.state.wake() {
            executor::schedule(self.clone());
        }
    }
}

/// A `Waker` for the duration of one poll, without touching the reference
/// count (the caller's `Arc` keeps the task alive for longer than the poll).
fn waker_ref<F: Future + 'static>(task: &Arc<TaskCell<F>>) -> ManuallyDrop<Waker> {
    // `Arc::from_raw` of `Arc::as_ptr` makes a second owner of a reference
    // count we do not hold; wrapping the resulting `Waker` in `ManuallyDrop`
    // means that count is never released, so the net effect is a borrow.
    // SAFETY: the pointer comes from a live `Arc` of this type, and the
    // borrowed count is never dropped; the waker lives for one poll, inside
    // `task`'s lifetime, and its clones take counts of their own.
    let borrowed = unsafe { Arc::from_raw(Arc::as_ptr(task)) };
    ManuallyDrop::new(Waker::from(borrowed))
}

// Destructors and payloads of user code are dropped by the workspace's one
// rule for foreign panics (`sync_core::unwind`): a panic is caught, and its
// payload dropped a few levels deep.
pub(crate) use sync_core::unwind::drop_quietly;
