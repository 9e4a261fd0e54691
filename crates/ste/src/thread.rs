//! The `Thread` handle, its `Builder`, and the worker's main function.

use crate::error::{Error, Payload, drop_payload};
use crate::queue::{BoxTask, Queue, StackTask};
use crate::tag::Tag;
use core::cell::RefCell;
use core::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use sync_core::atomic::{AtomicBool, Ordering};
use sync_core::cell::UnsafeCell;
use sync_core::sync::Arc;
use sync_core::thread::JoinHandle;
use sync_core::{Parker, Unparker};

/// What the worker and everyone who may send it work share.
pub(crate) struct Shared {
    pub(crate) queue: Queue,
    pub(crate) tag: Tag,
    /// Set by the worker itself when a task shut it down by dropping (or
    /// joining) the last handle on the worker: nobody will join it, so a
    /// postlude's panic payload must be disposed of here (std would drop
    /// it at thread exit, and abort if that drop panics). Written and read
    /// only on the worker: a plain std atomic, outside loom's view.
    detached: std::sync::atomic::AtomicBool,
}

sync_core::thread_local! {
    /// On a worker: its shared state (for `Tagged::new`, which must know
    /// where to send the value back to).
    #[allow(clippy::missing_const_for_thread_local)] // loom's macro takes no `const {}`
    static CURRENT_SHARED: RefCell<Option<Arc<Shared>>> = RefCell::new(None);
}

sync_core::thread_local! {
    /// The parker a blocked submitter waits on. Deliberately not
    /// `sync_core::with_thread_parker`'s: that one is lent to the outermost
    /// wait on the thread (often `sync_core::future::block_on`), so a submit
    /// nested in a `block_on` poll (as `SubmitAsync` does) would get a fresh,
    /// allocated parker each time. Nothing else parks on this one, and one
    /// thread never has two submits waiting at once.
    static SUBMIT_PARKER: Parker = Parker::new();
}

/// Runs `f` with this thread's submit parker (allocated on the thread's
/// first submit), or with a fresh one if the thread-local is already gone
/// (a submit from a thread-local destructor).
fn with_submit_parker<R>(f: impl FnOnce(&Parker) -> R) -> R {
    let mut f = Some(f);
    let mut call = |parker: &Parker| f.take().map(|f| f(parker));
    match SUBMIT_PARKER.try_with(|parker| call(parker)) {
        Ok(Some(result)) => result,
        _ => call(&Parker::new()).unwrap_or_else(|| unreachable!("called twice")),
    }
}

/// The shared state of the worker the calling thread is, if any.
pub(crate) fn current_shared() -> Option<Arc<Shared>> {
    CURRENT_SHARED
        .try_with(|s| s.borrow().clone())
        .ok()
        .flatten()
}

type Hook = Box<dyn FnOnce() + Send + 'static>;

/// Configures and starts a [`Thread`].
///
/// ```
/// use std::sync::atomic::{AtomicBool, Ordering};
/// use std::sync::Arc;
///
/// let ready = Arc::new(AtomicBool::new(false));
/// let r = Arc::clone(&ready);
/// let thread = ste::Builder::new()
///     .name("audio")
///     .stack_size(256 * 1024)
///     .prelude(move || r.store(true, Ordering::Relaxed)) // e.g. COM init
///     .postlude(|| println!("bye"))
///     .build()?;
/// assert!(ready.load(Ordering::Relaxed)); // `build` waits for the prelude
/// let name = thread.submit(|| std::thread::current().name().map(String::from))?;
/// assert_eq!(name.as_deref(), Some("audio"));
/// thread.join()?;
/// # Ok::<(), ste::Error>(())
/// ```
#[derive(Default)]
pub struct Builder {
    name: Option<String>,
    stack_size: Option<usize>,
    prelude: Option<Hook>,
    postlude: Option<Hook>,
}

impl fmt::Debug for Builder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Builder")
            .field("name", &self.name)
            .field("stack_size", &self.stack_size)
            .field("prelude", &self.prelude.is_some())
            .field("postlude", &self.postlude.is_some())
            .finish()
    }
}

impl Builder {
    /// A builder with no name, the platform's default stack size, and no
    /// prelude or postlude.
    pub fn new() -> Builder {
        Builder::default()
    }

    /// Names the OS thread. A name with a NUL byte makes
    /// [`build`](Builder::build) panic, as `std::thread::Builder::spawn` does.
    pub fn name(mut self, name: impl Into<String>) -> Builder {
        self.name = Some(name.into());
        self
    }

    /// Sets the OS thread's stack size in bytes.
    pub fn stack_size(mut self, size: usize) -> Builder {
        self.stack_size = Some(size);
        self
    }

    /// Runs `prelude` on the worker before any task (for example COM
    /// initialisation or raising the thread's priority). The worker's
    /// [`Tag`] is already current while it runs. [`build`](Builder::build)
    /// waits for it; if it panics, `build` returns [`Error::Panicked`] with
    /// its payload and the thread exits (the postlude does not run).
    pub fn prelude<F>(mut self, prelude: F) -> Builder
    where
        F: FnOnce() + Send + 'static,
    {
        self.prelude = Some(Box::new(prelude));
        self
    }

    /// Runs `postlude` on the worker at shutdown, after the last task. If it
    /// panics, [`Thread::join`] returns [`Error::Panicked`] with its payload;
    /// if nobody can join (a task shut its own worker down by dropping the
    /// last handle), the worker drops the payload itself, containing a
    /// panicking `Drop`.
    pub fn postlude<F>(mut self, postlude: F) -> Builder
    where
        F: FnOnce() + Send + 'static,
    {
        self.postlude = Some(Box::new(postlude));
        self
    }

    /// Starts the worker, waits for its prelude, and returns the handle.
    ///
    /// # Errors
    ///
    /// [`Error::Spawn`] if the OS refuses to start the thread;
    /// [`Error::Panicked`] if the prelude panicked.
    ///
    /// # Panics
    ///
    /// If the [`name`](Builder::name) contains a NUL byte (std's check,
    /// before any thread starts; the prelude does not run).
    pub fn build(self) -> Result<Thread, Error> {
        let Builder {
            name,
            stack_size,
            prelude,
            postlude,
        } = self;
        let mut builder = sync_core::thread::Builder::new();
        if let Some(name) = name {
            builder = builder.name(name);
        }
        if let Some(size) = stack_size {
            builder = builder.stack_size(size);
        }
        let (handle, started) = with_submit_parker(|parker| {
            let handoff = Arc::new(Handoff {
                ready: AtomicBool::new(false),
                started: UnsafeCell::new(None),
                builder: parker.unparker(),
            });
            let worker_handoff = Arc::clone(&handoff);
            let handle = builder
                .spawn(move || worker_main(prelude, postlude, worker_handoff))
                .map_err(Error::Spawn)?;
            while !handoff.ready.load(Ordering::Acquire) {
                parker.park();
            }
            // SAFETY: `ready` (acquire) says the worker wrote the slot and
            // will not touch it again.
            let started = handoff.started.with_mut(|s| unsafe { (*s).take() });
            Ok::<_, Error>((handle, started))
        })?;
        let started = started.unwrap_or_else(|| unreachable!("the worker reported nothing"));
        match started {
            Ok(shared) => Ok(Thread {
                shared,
                handle: Some(handle),
            }),
            Err(payload) => {
                // The worker is on its way out and never published its
                // queue; wait for it so no thread outlives the error.
                let _ = handle.join();
                Err(Error::panicked(payload))
            }
        }
    }
}

/// How the worker tells `build` that it is ready (or that its prelude
/// panicked): it fills `started`, sets `ready`, and wakes the builder
/// through an unparker it co-owns.
struct Handoff {
    ready: AtomicBool,
    started: UnsafeCell<Option<Result<Arc<Shared>, Payload>>>,
    builder: Unparker,
}

// SAFETY: `started` is written once, by the worker, before it sets `ready`
// (release), and read only by the builder after it saw `ready` (acquire);
// the payload it carries is `Send`. Everything else is `Sync`.
unsafe impl Sync for Handoff {}
// SAFETY: as above; all fields are `Send` (the payload is `Send`).
unsafe impl Send for Handoff {}

/// What the worker thread returns: the postlude's panic, if any.
type Exit = Result<(), Payload>;

fn worker_main(prelude: Option<Hook>, postlude: Option<Hook>, handoff: Arc<Handoff>) -> Exit {
    let parker = Parker::new();
    let tag = Tag::fresh();
    let shared = Arc::new(Shared {
        queue: Queue::new(parker.unparker()),
        tag,
        detached: std::sync::atomic::AtomicBool::new(false),
    });
    Tag::set_current(tag);
    CURRENT_SHARED.with(|s| *s.borrow_mut() = Some(Arc::clone(&shared)));

    let started = match prelude.map(|p| catch_unwind(AssertUnwindSafe(p))) {
        Some(Err(payload)) => {
            shared.queue.close_unpublished();
            Err(payload)
        }
        _ => Ok(Arc::clone(&shared)),
    };
    let serve = started.is_ok();
    // SAFETY: the builder reads the slot only after `ready`, set below.
    handoff.started.with_mut(|s| unsafe { *s = Some(started) });
    handoff.ready.store(true, Ordering::Release);
    handoff.builder.unpark();
    drop(handoff);

    let mut exit = Ok(());
    if serve {
        shared.queue.serve(&parker);
        if let Some(postlude) = postlude {
            exit = catch_unwind(AssertUnwindSafe(postlude));
        }
    }
    if shared.detached.load(std::sync::atomic::Ordering::Relaxed) {
        // Nobody joins a detached worker: contain the payload here, as
        // everywhere else (its `Drop` may panic).
        if let Err(payload) = core::mem::replace(&mut exit, Ok(())) {
            drop_payload(payload);
        }
    }
    // The tag stays current (a `Tagged` in a thread-local destroyed after
    // this still drops in place); only the strong reference goes.
    CURRENT_SHARED.with(|s| s.borrow_mut().take());
    exit
}

/// A handle to one dedicated background thread (the "worker").
///
/// Tasks given to [`submit`](Thread::submit) run on the worker, one at a
/// time, in the order they were submitted (FIFO across all submitters). The
/// handle is `Send + Sync`: share it among many submitters with an `Arc` or a
/// scoped borrow.
///
/// Dropping the handle shuts the worker down: it finishes every task already
/// submitted, runs the postlude, and exits; `drop` waits for that (except
/// when it runs on the worker itself: then it only asks, and returns). Use
/// [`join`](Thread::join) to see a panic from the postlude.
pub struct Thread {
    shared: Arc<Shared>,
    /// `None` once shut down (by `join` or `drop`).
    handle: Option<JoinHandle<Exit>>,
}

impl fmt::Debug for Thread {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Thread")
            .field("tag", &self.shared.tag)
            .finish_non_exhaustive()
    }
}

impl Thread {
    /// Starts a worker with the default [`Builder`].
    ///
    /// # Errors
    ///
    /// [`Error::Spawn`] if the OS refuses to start the thread.
    pub fn new() -> Result<Thread, Error> {
        Builder::new().build()
    }

    /// The worker's tag: what [`Tagged`](crate::Tagged) values created on it
    /// carry.
    pub fn tag(&self) -> Tag {
        self.shared.tag
    }

    /// Runs `f` on the worker and returns its result, blocking until it is
    /// done. `f` may borrow from the caller's stack: no `'static` bound.
    ///
    /// Called from a task already running on this worker, `f` runs inline
    /// (re-entrancy cannot deadlock).
    ///
    /// Allocates nothing. Waits by spinning (50 µs at most; 200 µs for an
    /// occasional probe),
    /// and only while spinning pays off ([`SpinPolicy`]), then parking.
    ///
    /// # Errors
    ///
    /// [`Error::Panicked`] with the original payload if `f` panicked (the
    /// worker keeps running); [`Error::ShutDown`] if the worker no longer
    /// takes work, in which case `f` was not run (and is dropped here).
    ///
    /// [`SpinPolicy`]: sync_core::SpinPolicy
    pub fn submit<F, T>(&self, f: F) -> Result<T, Error>
    where
        F: FnOnce() -> T + Send,
        T: Send,
    {
        match self.submit_or_return(f) {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(payload)) => Err(Error::panicked(payload)),
            Err(f) => {
                drop(f);
                Err(Error::ShutDown)
            }
        }
    }

    /// `submit`, but hands `f` back if the worker has shut down.
    fn submit_or_return<F, T>(&self, f: F) -> Result<Result<T, Payload>, F>
    where
        F: FnOnce() -> T + Send,
        T: Send,
    {
        if self.shared.tag.is_current() {
            return Ok(catch_unwind(AssertUnwindSafe(f)));
        }
        let task = StackTask::new(f);
        with_submit_parker(|parker| task.run_on(&self.shared.queue, parker))
    }

    /// Returns a future that polls `future` on the worker.
    ///
    /// `future` may borrow from the caller. Each poll of the returned future
    /// is one blocking round trip (as [`submit`](Thread::submit)) that polls
    /// `future` once on the worker, with the caller's waker; between polls
    /// the worker holds nothing of it. So the returned future may be leaked
    /// (`mem::forget`) at any point without the worker ever touching it
    /// again. `future` is dropped on the polling thread.
    ///
    /// ```
    /// let thread = ste::Thread::new()?;
    /// let mut n = 1;
    /// let out = sync_core::future::block_on(thread.submit_async(async {
    ///     n += 1;
    ///     ste::Tag::current()
    /// }))?;
    /// assert_eq!(n, 2);
    /// assert_eq!(out, Some(thread.tag()));
    /// # Ok::<(), ste::Error>(())
    /// ```
    pub fn submit_async<F>(&self, future: F) -> crate::SubmitAsync<'_, F>
    where
        F: core::future::Future + Send,
        F::Output: Send,
    {
        crate::SubmitAsync::new(self, future)
    }

    /// Runs `f` on the worker without waiting for it (fire and forget).
    ///
    /// Allocates one box for the task. A panic in `f` is caught on the
    /// worker (the panic hook still prints it) and its payload dropped there.
    ///
    /// # Errors
    ///
    /// [`Error::ShutDown`] if the worker no longer takes work (`f` is
    /// dropped here, unrun).
    pub fn spawn<F>(&self, f: F) -> Result<(), Error>
    where
        F: FnOnce() + Send + 'static,
    {
        BoxTask::push(&self.shared.queue, f).map_err(|f| {
            drop(f);
            Error::ShutDown
        })
    }

    /// Drops `value` on the worker, for values whose destructor must run
    /// there. Blocks until it is dropped; allocates nothing.
    ///
    /// # Errors
    ///
    /// [`Error::Panicked`] if the destructor panicked; [`Error::ShutDown`]
    /// if the worker no longer takes work, in which case `value` is *leaked*
    /// (never dropped), since its destructor must not run anywhere else.
    ///
    /// Through a smart pointer that itself implements `Drop` (an
    /// `Arc<Thread>`), method syntax finds `Drop::drop` first: call it as
    /// `ste::Thread::drop(&thread, value)`.
    pub fn drop<T>(&self, value: T) -> Result<(), Error>
    where
        T: Send,
    {
        match self.submit_or_return(move || drop(value)) {
            Ok(Ok(())) => Ok(()),
            Ok(Err(payload)) => Err(Error::panicked(payload)),
            Err(unrun) => {
                core::mem::forget(unrun);
                Err(Error::ShutDown)
            }
        }
    }

    /// Shuts the worker down and waits for it: tasks already submitted run,
    /// then the postlude, then the thread exits.
    ///
    /// Called on the worker itself (from a task), it only asks the worker to
    /// stop after the current task and returns `Ok(())` without waiting.
    ///
    /// # Errors
    ///
    /// [`Error::Panicked`] with the postlude's payload if it panicked.
    pub fn join(mut self) -> Result<(), Error> {
        self.shut_down()
    }

    fn shut_down(&mut self) -> Result<(), Error> {
        let Some(handle) = self.handle.take() else {
            return Ok(());
        };
        self.shared.queue.request_shutdown();
        if self.shared.tag.is_current() {
            // Waiting for ourselves would deadlock: detach; the worker stops
            // once the current task returns and the queue is drained.
            self.shared
                .detached
                .store(true, std::sync::atomic::Ordering::Relaxed);
            drop(handle);
            return Ok(());
        }
        match handle.join() {
            Ok(Ok(())) => Ok(()),
            // The postlude panicked. (The worker catches every other panic,
            // so the outer `Err` cannot happen; surface it anyway.)
            Ok(Err(payload)) | Err(payload) => Err(Error::panicked(payload)),
        }
    }
}

impl Drop for Thread {
    fn drop(&mut self) {
        if let Err(Error::Panicked(panic)) = self.shut_down() {
            drop_payload(panic.into_payload());
        }
    }
}
