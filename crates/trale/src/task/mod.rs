//! Tasks: [`Executor`] spawns and runs them, [`TaskJoiner`] waits for one.
//!
//! # Where a task runs
//!
//! - Inside [`Executor::block_on`] (on the thread that called it, which is
//!   the executor's thread until `block_on` returns), `spawn` and
//!   `spawn_local` put the task on that executor.
//! - Anywhere else (a plain thread, as in the crate's first example),
//!   `spawn` puts the task on the process-wide background executor: one
//!   thread, `trale-global`, started on first use and never stopped.
//!
//! An executor that `block_on` started ends when `block_on` returns: every
//! task still on it is dropped there and then, on that thread (its joiner
//! reports [`JoinError::Cancelled`]). [`Executor::block_on_all`] runs until
//! every task has finished instead.

mod raw;
pub(crate) mod state;

use crate::executor;
use raw::JoinTarget;
use std::any::Any;
use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::panic::resume_unwind;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

pub(crate) use raw::{Header, Runnable, TaskCell, UNREGISTERED, drop_quietly};

/// The executor: spawns tasks and drives futures to completion.
///
/// There is nothing to construct: every function is associated, and which
/// executor a call reaches depends on the calling thread (module docs).
#[derive(Debug)]
pub struct Executor {
    _private: (),
}

impl Executor {
    /// Starts `future` as a task and returns its joiner.
    ///
    /// Inside `block_on` (or inside a task) the task joins the current
    /// executor; on any other thread it goes to the background executor.
    /// Does not block; allocates the task (one allocation). The task is
    /// dropped on the thread of the executor that runs it.
    pub fn spawn<F>(future: F) -> TaskJoiner<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        TaskJoiner::new(executor::spawn(future))
    }

    /// Starts a `!Send` future as a task on the current executor: it is
    /// polled and dropped on this thread only.
    ///
    /// # Panics
    ///
    /// Outside an executor (no `block_on` on this thread's stack), with a
    /// message: a `!Send` task needs a thread that runs it.
    pub fn spawn_local<F>(future: F) -> TaskJoiner<F::Output>
    where
        F: Future + 'static,
        F::Output: 'static,
    {
        TaskJoiner::new(executor::spawn_local(future))
    }

    /// Runs an executor on this thread until `future` completes, and returns
    /// its output. `future` need be neither `Send` nor `'static`.
    ///
    /// Tasks spawned meanwhile run on this executor too; those still running
    /// when `future` completes are dropped before `block_on` returns (their
    /// joiners report [`JoinError::Cancelled`]). Blocks; sleeps in
    /// `epoll_wait` when nothing is ready.
    ///
    /// # Panics
    ///
    /// If called from inside another `block_on` or a task (the outer
    /// executor would stop while this one runs; `.await` the future or
    /// spawn it instead), or if the kernel refuses the executor's three file
    /// descriptors. A panic of `future` itself propagates, after the
    /// executor's tasks are dropped.
    pub fn block_on<F: Future>(future: F) -> F::Output {
        executor::block_on(future, false)
    }

    /// Like [`block_on`](Self::block_on), but after `future` completes it
    /// goes on running until every task on this executor has finished.
    pub fn block_on_all<F: Future>(future: F) -> F::Output {
        executor::block_on(future, true)
    }
}

/// Yields once: the task goes to the back of the run queue, so every other
/// ready task (and, at the latest after 61 polls, the timers and sockets)
/// runs before it continues.
pub fn yield_now() -> YieldNow {
    YieldNow { yielded: false }
}

/// Future of [`yield_now`].
#[must_use = "futures do nothing unless awaited"]
#[derive(Debug)]
pub struct YieldNow {
    yielded: bool,
}

impl Future for YieldNow {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.yielded {
            return Poll::Ready(());
        }
        self.yielded = true;
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

/// Why a task produced no value.
///
/// `Send + Sync + 'static` and an [`Error`](std::error::Error), as tokio's
/// `JoinError` is, so it goes into `Box<dyn Error + Send + Sync>` or
/// `anyhow::Error` with `?`.
pub enum JoinError {
    /// [`TaskJoiner::abort`] dropped it, or its executor shut down first.
    Cancelled,
    /// It panicked (in `poll` or in its destructor); here is the payload.
    Panicked(PanicPayload),
}

/// A panicked task's payload, as `catch_unwind` returned it.
///
/// A bare `Box<dyn Any + Send>` is not `Sync`, which would keep
/// [`JoinError`] out of `Box<dyn Error + Send + Sync>`; this wrapper is
/// `Sync` because it keeps the payload behind a mutex, which only
/// [`message`](Self::message) (and `Display`) ever lock, briefly.
pub struct PanicPayload(Mutex<Box<dyn Any + Send + 'static>>);

impl PanicPayload {
    pub(crate) fn new(payload: Box<dyn Any + Send + 'static>) -> Self {
        PanicPayload(Mutex::new(payload))
    }

    /// The payload, to re-raise with `std::panic::resume_unwind` or to
    /// downcast.
    pub fn into_inner(self) -> Box<dyn Any + Send + 'static> {
        self.0.into_inner().unwrap_or_else(PoisonError::into_inner)
    }

    /// The panic's message, if the payload is a `&str` or a `String` (what
    /// `panic!` produces).
    pub fn message(&self) -> Option<String> {
        let payload = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        panic_message(payload.as_ref()).map(String::from)
    }
}

/// Wraps a payload, as `catch_unwind` returns it (for a `JoinError` built by
/// hand, in a test double say).
impl From<Box<dyn Any + Send + 'static>> for PanicPayload {
    fn from(payload: Box<dyn Any + Send + 'static>) -> Self {
        PanicPayload::new(payload)
    }
}

impl fmt::Debug for PanicPayload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PanicPayload(..)")
    }
}

impl JoinError {
    /// Whether the task was cancelled.
    pub fn is_cancelled(&self) -> bool {
        matches!(self, JoinError::Cancelled)
    }

    /// Whether the task panicked.
    pub fn is_panic(&self) -> bool {
        matches!(self, JoinError::Panicked(_))
    }

    /// The panic payload, if the task panicked.
    pub fn into_panic(self) -> Option<Box<dyn Any + Send + 'static>> {
        match self {
            JoinError::Panicked(payload) => Some(payload.into_inner()),
            JoinError::Cancelled => None,
        }
    }
}

impl fmt::Debug for JoinError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JoinError::Cancelled => f.write_str("JoinError::Cancelled"),
            JoinError::Panicked(_) => f.write_str("JoinError::Panicked(..)"),
        }
    }
}

impl fmt::Display for JoinError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JoinError::Cancelled => f.write_str("task was cancelled"),
            JoinError::Panicked(p) => match p.message() {
                Some(msg) => write!(f, "task panicked: {msg}"),
                None => f.write_str("task panicked"),
            },
        }
    }
}

impl std::error::Error for JoinError {}

fn panic_message(payload: &(dyn Any + Send)) -> Option<&str> {
    payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
}

/// The handle to a spawned task: wait for its value (blocking with
/// [`join`](Self::join), or `.await`), abort it, or drop it to detach.
///
/// `Send` when `T` is. Dropping it lets the task run on; its value is then
/// dropped when it completes.
#[must_use = "dropping a TaskJoiner detaches the task; call .join() or .await it to get its value"]
pub struct TaskJoiner<T> {
    task: Option<Arc<dyn JoinTarget<T>>>,
    /// `T` is produced on the executor's thread and moved to the joiner's.
    _output: PhantomData<fn() -> T>,
}

/// The name tokio users look for.
pub type JoinHandle<T> = TaskJoiner<T>;

// SAFETY: the joiner reaches the task only through `JoinTarget`, whose state
// and waker are thread-safe; the one thing that crosses threads with the
// joiner is the output `T`, which is why this needs `T: Send`.
unsafe impl<T: Send> Send for TaskJoiner<T> {}
// SAFETY: `&TaskJoiner` offers `is_finished` and `abort`, which touch only the
// task's atomic state and the executor's queues; never `T`.
unsafe impl<T> Sync for TaskJoiner<T> {}

impl<T> TaskJoiner<T> {
    fn new(task: Arc<dyn JoinTarget<T>>) -> Self {
        Self {
            task: Some(task),
            _output: PhantomData,
        }
    }

    fn target(&self) -> &Arc<dyn JoinTarget<T>> {
        self.task
            .as_ref()
            .expect("TaskJoiner polled or joined after it returned the task's result")
    }

    /// Blocks this thread until the task finishes and returns its value.
    ///
    /// # Panics
    ///
    /// Re-raises the task's own panic (with its original payload); panics if
    /// the task was aborted; and panics at once, with a message, if called on
    /// the thread that runs the task's executor (inside a task or
    /// `block_on`), where waiting would block the very thread that must run
    /// the task: `.await` the joiner there instead.
    pub fn join(self) -> T {
        unwrap_outcome(self.try_join())
    }

    /// Blocks until the task finishes; its value, or why there is none.
    /// Does not panic for the task's panic or abort, but does for a call on
    /// the task's own executor thread (see [`join`](Self::join)).
    pub fn try_join(self) -> Result<T, JoinError> {
        if executor::is_current_id(self.target().header().executor.id()) {
            panic!(
                "TaskJoiner::join() called on the thread that runs the joined task's executor \
                 (inside a task or block_on): it would wait forever for itself. \
                 Use `.await` on the joiner instead."
            );
        }
        sync_core::future::block_on(self.result())
    }

    /// A future of the task's value or the reason there is none (the
    /// non-panicking form of awaiting the joiner).
    pub fn result(self) -> JoinResult<T> {
        JoinResult { joiner: self }
    }

    /// Asks for the task to be dropped. Returns at once; the future is
    /// dropped on its executor's thread the next time that executor runs it,
    /// which deregisters its sockets and timers; the joiner then reports
    /// [`JoinError::Cancelled`]. No effect on a finished task. Lock-free
    /// apart from waking a sleeping executor from another thread.
    pub fn abort(&self) {
        // A joiner that returned the result (awaited by `&mut`) has a
        // finished task: nothing to abort.
        if let Some(task) = &self.task {
            task.clone().schedule_abort();
        }
    }

    /// Whether the task has finished (its value, or its abort or panic, is
    /// ready to be joined without waiting), also once this joiner has
    /// returned it. Lock-free.
    pub fn is_finished(&self) -> bool {
        self.task
            .as_ref()
            .is_none_or(|task| task.header().state.is_complete())
    }

    fn poll_outcome(&mut self, cx: &mut Context<'_>) -> Poll<Result<T, JoinError>> {
        let outcome = std::task::ready!(self.target().poll_outcome(cx));
        // The result is taken: nothing is left to drop on detach.
        self.task = None;
        Poll::Ready(outcome)
    }
}

fn unwrap_outcome<T>(outcome: Result<T, JoinError>) -> T {
    match outcome {
        Ok(value) => value,
        Err(JoinError::Panicked(payload)) => resume_unwind(payload.into_inner()),
        Err(JoinError::Cancelled) => panic!(
            "joined a task that was aborted (or whose executor shut down first); \
             use TaskJoiner::try_join or .result().await to handle that case"
        ),
    }
}

impl<T> Future for TaskJoiner<T> {
    type Output = T;

    /// Ready with the task's value; re-raises its panic.
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<T> {
        self.get_mut().poll_outcome(cx).map(unwrap_outcome)
    }
}

impl<T> Drop for TaskJoiner<T> {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.detach();
        }
    }
}

impl<T> fmt::Debug for TaskJoiner<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TaskJoiner")
            .field(
                "finished",
                &self.task.as_ref().map(|t| t.header().state.is_complete()),
            )
            .finish()
    }
}

/// Future of [`TaskJoiner::result`].
#[must_use = "futures do nothing unless awaited"]
#[derive(Debug)]
pub struct JoinResult<T> {
    joiner: TaskJoiner<T>,
}

impl<T> Future for JoinResult<T> {
    type Output = Result<T, JoinError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.get_mut().joiner.poll_outcome(cx)
    }
}
