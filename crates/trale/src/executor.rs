//! The run loop: where tasks are queued, polled, and where the thread sleeps.
//!
//! # How a wake-up travels
//!
//! A task's waker calls [`schedule`]. On the executor's own thread (the
//! common case: a timer or socket event dispatched by the reactor, a task
//! waking another) the task goes on the thread-local run queue: no lock, no
//! atomic beyond the task's state word. From any other thread it goes on the
//! executor's `inject` queue under a mutex; if the executor said it was
//! going to sleep (`sleeping`, set under the same mutex), the waker also
//! writes to the executor's eventfd, which ends its `epoll_wait`. Because the
//! "going to sleep" decision and the "push" both happen under that one mutex,
//! a wake-up can never fall between the executor's last look at the queue
//! and its sleep.
//!
//! The loop ([`block_on`]) polls the main future when its waker fired, then
//! up to [`BUDGET`] tasks, then turns the reactor: without blocking if work
//! is left, otherwise sleeping until a socket, the timerfd or the eventfd
//! fires. So timers and sockets are looked at after at most `BUDGET` polls
//! however busy the queue is.

use crate::reactor::Reactor;
use crate::task::{Header, Runnable, TaskCell, UNREGISTERED, drop_quietly};
use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::future::Future;
use std::pin::pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll, Wake, Waker};
use sync_core::atomic::{AtomicBool, Ordering};
use sync_core::sync::Mutex;

/// Task polls between two looks at timers and sockets (tokio uses the same).
pub(crate) const BUDGET: usize = 61;

/// Socket operations one poll of a task may complete before it is made to
/// yield (so a flooding connection cannot keep one task running forever).
const IO_BUDGET: u32 = 128;

type Task = Arc<dyn Runnable>;

/// The part of an executor that other threads, wakers and sockets reach.
pub(crate) struct Shared {
    id: usize,
    inject: Mutex<Inject>,
    main_woken: AtomicBool,
    /// Set once the loop has ended for good (mirrors `Inject::closed` for
    /// readers that must not take the lock).
    closed: AtomicBool,
    pub(crate) reactor: Reactor,
}

#[derive(Default)]
struct Inject {
    queue: VecDeque<Task>,
    /// The executor is about to sleep or sleeping in `epoll_wait`: the next
    /// push must write the eventfd.
    sleeping: bool,
    /// The executor is gone: drop what is pushed.
    closed: bool,
}

fn lock(m: &Mutex<Inject>) -> sync_core::sync::MutexGuard<'_, Inject> {
    // Nothing foreign runs under this lock, so it cannot be poisoned by
    // user code; recover anyway rather than cascade a panic.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Shared {
    fn new() -> Arc<Self> {
        // A plain std counter: ids are not part of any loom model.
        static NEXT_ID: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(1);
        let reactor = Reactor::new().unwrap_or_else(|e| {
            panic!("trale: cannot create the executor's epoll, eventfd and timerfd: {e}")
        });
        Arc::new(Self {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            inject: Mutex::new(Inject::default()),
            main_woken: AtomicBool::new(true),
            closed: AtomicBool::new(false),
            reactor,
        })
    }

    /// Whether the executor has shut down (its sockets can no longer wait).
    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Pushes from another thread; wakes the executor if it sleeps.
    fn push_remote(&self, task: Task) {
        let mut inject = lock(&self.inject);
        if inject.closed {
            drop(inject);
            drop(task);
            return;
        }
        inject.queue.push_back(task);
        let wake = std::mem::take(&mut inject.sleeping);
        drop(inject);
        if wake {
            self.reactor.notify();
        }
    }

    /// Ends the executor's sleep if it is sleeping (called from other threads).
    fn notify_remote(&self) {
        let wake = std::mem::take(&mut lock(&self.inject).sleeping);
        if wake {
            self.reactor.notify();
        }
    }
}

// The executor whose loop runs on this thread, and its thread-local half.
// At most one per thread: `block_on` refuses to nest.
thread_local! {
    static CURRENT: RefCell<Option<Arc<Shared>>> = const { RefCell::new(None) };
    static CURRENT_ID: Cell<usize> = const { Cell::new(0) };
    static RUN_QUEUE: RefCell<VecDeque<Task>> = const { RefCell::new(VecDeque::new()) };
    static REGISTRY: RefCell<Registry> = const { RefCell::new(Registry::new()) };
    static IO_BUDGET_LEFT: Cell<u32> = const { Cell::new(IO_BUDGET) };
}

/// Every live task of this thread's executor (so shutdown can drop them).
struct Registry {
    slots: Vec<Option<Task>>,
    free: Vec<usize>,
    len: usize,
}

impl Registry {
    const fn new() -> Self {
        Self {
            slots: Vec::new(),
            free: Vec::new(),
            len: 0,
        }
    }

    fn insert(&mut self, task: Task) {
        let key = match self.free.pop() {
            Some(key) => key,
            None => {
                self.slots.push(None);
                self.slots.len() - 1
            }
        };
        task.header().registry_key.store(key, Ordering::Relaxed);
        self.slots[key] = Some(task);
        self.len += 1;
    }

    fn remove(&mut self, key: usize) -> Option<Task> {
        let task = self.slots.get_mut(key)?.take()?;
        task.header()
            .registry_key
            .store(UNREGISTERED, Ordering::Relaxed);
        self.free.push(key);
        self.len -= 1;
        Some(task)
    }

    fn pop_any(&mut self) -> Option<Task> {
        let key = self.slots.iter().rposition(Option::is_some)?;
        self.remove(key)
    }
}

/// Whether this thread runs `shared`'s loop right now.
pub(crate) fn is_current(shared: &Shared) -> bool {
    CURRENT_ID.with(Cell::get) == shared.id
}

/// The executor running on this thread.
pub(crate) fn current() -> Option<Arc<Shared>> {
    CURRENT.with(|c| c.borrow().clone())
}

/// Queues a woken task on its executor.
pub(crate) fn schedule(task: Task) {
    if is_current(&task.header().shared) {
        RUN_QUEUE.with(|q| q.borrow_mut().push_back(task));
    } else {
        let shared = task.header().shared.clone();
        shared.push_remote(task);
    }
}

/// Forgets a finished task (owning thread only).
pub(crate) fn unregister(header: &Header) {
    let key = header.registry_key.load(Ordering::Relaxed);
    if key != UNREGISTERED {
        let task = REGISTRY.with(|r| r.borrow_mut().remove(key));
        drop(task);
    }
}

/// A socket operation may proceed; if this poll used its budget, the task
/// is woken to run again later and `false` says "return `Pending`".
pub(crate) fn take_io_budget(cx: &Context<'_>) -> bool {
    IO_BUDGET_LEFT.with(|left| match left.get() {
        0 => {
            cx.waker().wake_by_ref();
            false
        }
        n => {
            left.set(n - 1);
            true
        }
    })
}

pub(crate) fn reset_budget() {
    IO_BUDGET_LEFT.with(|left| left.set(IO_BUDGET));
}

pub(crate) fn spawn<F>(future: F) -> Arc<TaskCell<F>>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    match current() {
        Some(shared) => spawn_here(future, shared),
        None => {
            let task = TaskCell::new(future, global().clone());
            global().push_remote(task.clone());
            task
        }
    }
}

pub(crate) fn spawn_local<F: Future + 'static>(future: F) -> Arc<TaskCell<F>> {
    let shared = current().unwrap_or_else(|| {
        panic!(
            "Executor::spawn_local called outside an executor: a !Send task must be run by the \
             thread that spawns it. Call it inside Executor::block_on (or use Executor::spawn \
             for a Send future)."
        )
    });
    spawn_here(future, shared)
}

fn spawn_here<F: Future + 'static>(future: F, shared: Arc<Shared>) -> Arc<TaskCell<F>> {
    let task = TaskCell::new(future, shared);
    REGISTRY.with(|r| r.borrow_mut().insert(task.clone()));
    RUN_QUEUE.with(|q| q.borrow_mut().push_back(task.clone()));
    task
}

/// The process-wide executor for `spawn` outside any executor.
fn global() -> &'static Arc<Shared> {
    static GLOBAL: OnceLock<Arc<Shared>> = OnceLock::new();
    GLOBAL.get_or_init(|| {
        let shared = Shared::new();
        let for_thread = shared.clone();
        std::thread::Builder::new()
            .name("trale-global".into())
            .spawn(move || run(for_thread, std::future::pending::<()>(), false))
            .unwrap_or_else(|e| panic!("trale: cannot start the background executor thread: {e}"));
        shared
    })
}

/// Wakes the main future of a `block_on`.
struct MainWaker {
    shared: Arc<Shared>,
}

impl Wake for MainWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.shared.main_woken.store(true, Ordering::Release);
        if !is_current(&self.shared) {
            self.shared.notify_remote();
        }
    }
}

pub(crate) fn block_on<F: Future>(future: F, wait_for_all: bool) -> F::Output {
    if CURRENT_ID.with(Cell::get) != 0 {
        panic!(
            "Executor::block_on called inside a running trale executor (in a task or in another \
             block_on): the outer executor would stall until it returns. `.await` the future \
             instead, or Executor::spawn it and await the joiner."
        );
    }
    run(Shared::new(), future, wait_for_all)
}

/// Makes `shared` this thread's executor; on drop (also while unwinding),
/// shuts it down: every task left is dropped here.
struct Enter {
    shared: Arc<Shared>,
}

impl Enter {
    fn new(shared: Arc<Shared>) -> Self {
        CURRENT_ID.with(|id| id.set(shared.id));
        CURRENT.with(|c| *c.borrow_mut() = Some(shared.clone()));
        Self { shared }
    }
}

impl Drop for Enter {
    fn drop(&mut self) {
        let stranded = {
            let mut inject = lock(&self.shared.inject);
            inject.closed = true;
            self.shared.closed.store(true, Ordering::Release);
            std::mem::take(&mut inject.queue)
        };
        drop_quietly(stranded);
        // Dropping a future may wake or spawn others: go until none is left.
        loop {
            let queued = RUN_QUEUE.with(|q| std::mem::take(&mut *q.borrow_mut()));
            drop_quietly(queued);
            match REGISTRY.with(|r| r.borrow_mut().pop_any()) {
                Some(task) => task.cancel_now(),
                None => break,
            }
        }
        // Wakers parked in timers and sockets may hold tasks, which hold
        // `shared`: release them so nothing keeps the executor's fds alive.
        let parked = self.shared.reactor.shutdown();
        drop_quietly(parked);
        CURRENT.with(|c| c.borrow_mut().take());
        CURRENT_ID.with(|id| id.set(0));
        let queued = RUN_QUEUE.with(|q| std::mem::take(&mut *q.borrow_mut()));
        drop_quietly(queued);
    }
}

fn run<F: Future>(shared: Arc<Shared>, future: F, wait_for_all: bool) -> F::Output {
    let _enter = Enter::new(shared.clone());
    let main_waker = Waker::from(Arc::new(MainWaker {
        shared: shared.clone(),
    }));
    let mut cx = Context::from_waker(&main_waker);
    let mut future = pin!(future);
    let mut output = None;
    // Polls (main future and tasks) since the reactor last looked.
    let mut since_turn = 0;
    loop {
        if output.is_none() && shared.main_woken.swap(false, Ordering::AcqRel) {
            reset_budget();
            since_turn += 1;
            if let Poll::Ready(value) = future.as_mut().poll(&mut cx) {
                if !wait_for_all {
                    return value;
                }
                output = Some(value);
            }
        }
        let (more, polled) = run_tasks(&shared, BUDGET.saturating_sub(since_turn).max(1));
        since_turn += polled;
        if !more && output.is_some() && REGISTRY.with(|r| r.borrow().len) == 0 {
            return output.take().expect("checked above");
        }
        let main_ready = output.is_none() && shared.main_woken.load(Ordering::Acquire);
        if more || main_ready {
            // Work is waiting: look at timers and sockets only once per
            // `BUDGET` polls (a syscall per poll would double a yield's cost).
            if since_turn >= BUDGET {
                shared.reactor.turn(false);
                since_turn = 0;
            }
        } else {
            let may_sleep = {
                let mut inject = lock(&shared.inject);
                // Re-checked under the lock a remote waker takes to see it.
                let sleep = inject.queue.is_empty()
                    && (output.is_some() || !shared.main_woken.load(Ordering::Acquire));
                inject.sleeping = sleep;
                sleep
            };
            shared.reactor.turn(may_sleep);
            since_turn = 0;
            if may_sleep {
                lock(&shared.inject).sleeping = false;
            }
        }
    }
}

/// Polls up to `limit` tasks. Returns whether runnable tasks are left, and
/// how many were polled.
fn run_tasks(shared: &Shared, limit: usize) -> (bool, usize) {
    let mut polled = 0;
    while polled < limit {
        let next = RUN_QUEUE.with(|q| q.borrow_mut().pop_front());
        let task = match next {
            Some(task) => task,
            None => {
                let mut inject = lock(&shared.inject);
                if inject.queue.is_empty() {
                    return (false, polled);
                }
                let batch = std::mem::take(&mut inject.queue);
                drop(inject);
                RUN_QUEUE.with(|q| q.borrow_mut().extend(batch));
                continue;
            }
        };
        if task.header().registry_key.load(Ordering::Relaxed) == UNREGISTERED
            && !task.header().state.is_complete()
        {
            // Spawned from another thread: adopt it on first sight.
            REGISTRY.with(|r| r.borrow_mut().insert(task.clone()));
        }
        task.run();
        polled += 1;
    }
    let more = RUN_QUEUE.with(|q| !q.borrow().is_empty()) || !lock(&shared.inject).queue.is_empty();
    (more, polled)
}
