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
//! The loop ([`block_on`]) polls up to [`BUDGET`] jobs from the run queue
//! (tasks, and the main future's turn when its waker fired), then turns the
//! reactor: without blocking if work is left, otherwise sleeping until a
//! socket, the timerfd or the eventfd fires. So timers and sockets are
//! looked at after at most `BUDGET` polls however busy the queue is, and
//! tasks woken from other threads join the queue every round.

use crate::reactor::Reactor;
use crate::task::{Header, Runnable, TaskCell, UNREGISTERED, drop_quietly};
use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::future::Future;
use std::pin::pin;
use std::sync::{Arc, OnceLock, Weak};
use std::task::{Context, Poll, Wake, Waker};
use sync_core::atomic::{AtomicBool, Ordering};
use sync_core::sync::Mutex;

/// Task polls between two looks at timers and sockets (tokio uses the same).
pub(crate) const BUDGET: usize = 61;

/// Socket operations and elapsed sleeps one poll of a task may complete
/// before it is made to yield (so a flooding connection, an interval that
/// is always behind or a loop of zero sleeps cannot keep one task running
/// forever).
const POLL_BUDGET: u32 = 128;

type Task = Arc<dyn Runnable>;

/// What the run queue holds: tasks, and the `block_on` future's turn. The
/// main future waits in the same queue as the tasks, so wake-ups (timers
/// due in one turn, say) are served in the order they happened.
enum Job {
    Task(Task),
    Main,
}

/// Queues the main future's turn, unless it is already queued.
fn queue_main() {
    if !MAIN_QUEUED.with(|q| q.replace(true)) {
        RUN_QUEUE.with(|q| q.borrow_mut().push_back(Job::Main));
    }
}

/// The part of an executor that other threads, wakers and sockets reach.
///
/// Only the running loop (and the background executor's static) hold it
/// strongly; tasks, wakers, sleeps and sockets hold an [`ExecutorRef`], so
/// the epoll, eventfd and timerfd are closed as soon as the loop ends, not
/// when the last joiner or socket of the executor is dropped.
pub(crate) struct Shared {
    id: usize,
    inject: Mutex<Inject>,
    main_woken: AtomicBool,
    /// Set once the loop has ended for good (mirrors `Inject::closed` for
    /// readers that must not take the lock).
    closed: AtomicBool,
    pub(crate) reactor: Reactor,
}

/// A weak handle on an executor: cheap "is it the one running here?"
/// checks by id, and the shared part while the executor lives.
#[derive(Clone, Debug)]
pub(crate) struct ExecutorRef {
    id: usize,
    shared: Weak<Shared>,
}

impl ExecutorRef {
    /// The executor's id (what [`is_current_id`] compares).
    pub(crate) fn id(&self) -> usize {
        self.id
    }

    /// Whether this executor's loop runs on this thread right now.
    pub(crate) fn is_current(&self) -> bool {
        CURRENT_ID.with(Cell::get) == self.id
    }

    /// The executor's shared part, unless it has ended.
    pub(crate) fn upgrade(&self) -> Option<Arc<Shared>> {
        self.shared.upgrade().filter(|s| !s.is_closed())
    }

    /// The shared part while it exists, also during the executor's shutdown
    /// (to undo registrations while its epoll instance is still open).
    pub(crate) fn upgrade_even_closing(&self) -> Option<Arc<Shared>> {
        self.shared.upgrade()
    }
}

#[derive(Default)]
struct Inject {
    queue: VecDeque<Task>,
    /// The executor is about to sleep or sleeping in `epoll_wait`: the next
    /// push must write the eventfd.
    sleeping: bool,
    /// The executor is gone: what is pushed now is rejected.
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
            main_woken: AtomicBool::new(false),
            closed: AtomicBool::new(false),
            reactor,
        })
    }

    pub(crate) fn downgrade(self: &Arc<Self>) -> ExecutorRef {
        ExecutorRef {
            id: self.id,
            shared: Arc::downgrade(self),
        }
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
            reject(task);
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

/// A task whose executor has ended. Tasks of that executor were completed
/// (cancelled) when it shut down, so this is a late wake and nothing
/// happens; but a task spawned from another thread that never reached the
/// loop must not leave its joiner waiting: it is cancelled here. Its future
/// is `Send` (remote spawns require it), so dropping it here is fine.
fn reject(task: Task) {
    if task.header().remote && !task.header().state.is_complete() {
        task.cancel_now();
    }
    drop_quietly(task);
}

// The executor whose loop runs on this thread, and its thread-local half.
// At most one per thread: `block_on` refuses to nest.
thread_local! {
    static CURRENT: RefCell<Option<Arc<Shared>>> = const { RefCell::new(None) };
    static CURRENT_ID: Cell<usize> = const { Cell::new(0) };
    /// `Job::Main` is in the run queue (it is queued at most once).
    static MAIN_QUEUED: Cell<bool> = const { Cell::new(false) };
    static RUN_QUEUE: RefCell<VecDeque<Job>> = const { RefCell::new(VecDeque::new()) };
    static REGISTRY: RefCell<Registry> = const { RefCell::new(Registry::new()) };
    static POLL_BUDGET_LEFT: Cell<u32> = const { Cell::new(POLL_BUDGET) };
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

    /// Empties the registry in one pass (shutdown).
    fn take_all(&mut self) -> Vec<Task> {
        let tasks: Vec<Task> = std::mem::take(&mut self.slots)
            .into_iter()
            .flatten()
            .collect();
        self.free.clear();
        self.len = 0;
        for task in &tasks {
            // A stale key must not remove a task registered later.
            task.header()
                .registry_key
                .store(UNREGISTERED, Ordering::Relaxed);
        }
        tasks
    }
}

/// Whether the loop of some executor runs on this thread.
pub(crate) fn on_executor_thread() -> bool {
    CURRENT_ID.with(Cell::get) != 0
}

/// The panic of a socket used outside any executor.
#[cold]
#[track_caller]
pub(crate) fn not_on_an_executor() -> ! {
    panic!(
        "a trale socket was awaited outside a trale executor: use it inside \
         Executor::block_on or a task spawned with Executor::spawn"
    )
}

/// Whether this thread runs the loop of the executor with this id.
pub(crate) fn is_current_id(id: usize) -> bool {
    CURRENT_ID.with(Cell::get) == id
}

/// The executor running on this thread. `None` also once this thread's
/// thread-locals are being destroyed (a user's thread-local destructor that
/// spawns gets the background executor, as any thread without one does).
pub(crate) fn current() -> Option<Arc<Shared>> {
    CURRENT.try_with(|c| c.borrow().clone()).ok().flatten()
}

/// Queues a woken task on its executor.
pub(crate) fn schedule(task: Task) {
    let executor = &task.header().executor;
    if executor.is_current() {
        RUN_QUEUE.with(|q| q.borrow_mut().push_back(Job::Task(task)));
    } else {
        match executor.shared.upgrade() {
            Some(shared) => shared.push_remote(task),
            None => reject(task),
        }
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

/// A socket operation (or an elapsed sleep) may complete; if this poll
/// used its budget, the task is woken to run again later and `false` says
/// "return `Pending`". Takes nothing: only a completed operation is charged
/// ([`charge_poll_budget`]), so a future waiting on many idle sockets can
/// try (and park on) them all.
pub(crate) fn poll_budget_left(cx: &Context<'_>) -> bool {
    let left = POLL_BUDGET_LEFT.with(Cell::get) > 0;
    if !left {
        cx.waker().wake_by_ref();
    }
    left
}

/// Charges one completed socket operation or elapsed sleep to this poll's
/// budget.
pub(crate) fn charge_poll_budget() {
    POLL_BUDGET_LEFT.with(|left| left.set(left.get().saturating_sub(1)));
}

pub(crate) fn reset_budget() {
    POLL_BUDGET_LEFT.with(|left| left.set(POLL_BUDGET));
}

pub(crate) fn spawn<F>(future: F) -> Arc<TaskCell<F>>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    match current() {
        Some(shared) => spawn_here(future, &shared),
        None => {
            let global = global();
            let task = TaskCell::new(future, global.downgrade(), true);
            global.push_remote(task.clone());
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
    spawn_here(future, &shared)
}

fn spawn_here<F: Future + 'static>(future: F, shared: &Arc<Shared>) -> Arc<TaskCell<F>> {
    let task = TaskCell::new(future, shared.downgrade(), false);
    REGISTRY.with(|r| r.borrow_mut().insert(task.clone()));
    RUN_QUEUE.with(|q| q.borrow_mut().push_back(Job::Task(task.clone())));
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
    executor: ExecutorRef,
}

impl Wake for MainWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        if self.executor.is_current() {
            queue_main();
        } else if let Some(shared) = self.executor.upgrade() {
            shared.main_woken.store(true, Ordering::Release);
            shared.notify_remote();
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
        queue_main();
        Self { shared }
    }
}

/// Clears this thread's executor however the shutdown ends.
struct Leave;

impl Drop for Leave {
    fn drop(&mut self) {
        let queued = RUN_QUEUE.with(|q| std::mem::take(&mut *q.borrow_mut()));
        drop_all_quietly(queued);
        let tasks = REGISTRY.with(|r| r.borrow_mut().take_all());
        drop_all_quietly(tasks);
        CURRENT.with(|c| c.borrow_mut().take());
        CURRENT_ID.with(|id| id.set(0));
        MAIN_QUEUED.with(|q| q.set(false));
    }
}

impl Drop for Enter {
    fn drop(&mut self) {
        let _leave = Leave;
        let stranded = {
            let mut inject = lock(&self.shared.inject);
            inject.closed = true;
            self.shared.closed.store(true, Ordering::Release);
            std::mem::take(&mut inject.queue)
        };
        for task in stranded {
            reject(task);
        }
        // Dropping a future may wake or spawn others, and so may dropping the
        // wakers parked in timers and sockets: go until nothing is left.
        loop {
            let queued = RUN_QUEUE.with(|q| std::mem::take(&mut *q.borrow_mut()));
            drop_all_quietly(queued);
            let tasks = REGISTRY.with(|r| r.borrow_mut().take_all());
            if !tasks.is_empty() {
                for task in tasks {
                    task.cancel_now();
                    drop_quietly(task);
                }
                continue;
            }
            // Parked wakers may belong to tasks of other executors (a sleep
            // or socket future moved there): wake them, so they find this
            // executor gone instead of waiting for it for ever.
            let parked = self.shared.reactor.shutdown();
            if parked.is_empty() {
                break;
            }
            wake_all_quietly(parked);
        }
    }
}

/// Drops every element on its own, swallowing destructor panics (one
/// panicking element must not abort the process by panicking during the
/// unwind of another).
pub(crate) fn drop_all_quietly<T>(items: impl IntoIterator<Item = T>) {
    for item in items {
        drop_quietly(item);
    }
}

/// Wakes every waker; a panicking one (foreign code on the executor's
/// thread) neither stops the others nor the loop.
pub(crate) fn wake_all_quietly(wakers: Vec<Waker>) {
    for waker in wakers {
        sync_core::unwind::wake_quietly(waker);
    }
}

fn run<F: Future>(shared: Arc<Shared>, future: F, wait_for_all: bool) -> F::Output {
    let _enter = Enter::new(shared.clone());
    let main_waker = Waker::from(Arc::new(MainWaker {
        executor: shared.downgrade(),
    }));
    let mut cx = Context::from_waker(&main_waker);
    let mut future = pin!(future);
    let mut output = None;
    loop {
        // Up to `BUDGET` polls (tasks and the main future, in the order they
        // were woken), then a look at timers and sockets.
        take_injected(&shared);
        let mut polled = 0;
        let mut idle = false;
        while polled < BUDGET {
            let Some(job) = RUN_QUEUE.with(|q| q.borrow_mut().pop_front()) else {
                if take_injected(&shared) {
                    continue;
                }
                idle = true;
                break;
            };
            polled += 1;
            match job {
                Job::Task(task) => {
                    if task.header().registry_key.load(Ordering::Relaxed) == UNREGISTERED
                        && !task.header().state.is_complete()
                    {
                        // Spawned from another thread: adopt it on first sight.
                        REGISTRY.with(|r| r.borrow_mut().insert(task.clone()));
                    }
                    task.run();
                }
                Job::Main => {
                    MAIN_QUEUED.with(|q| q.set(false));
                    if output.is_none() {
                        reset_budget();
                        if let Poll::Ready(value) = future.as_mut().poll(&mut cx) {
                            if !wait_for_all {
                                return value;
                            }
                            output = Some(value);
                        }
                    }
                }
            }
        }
        if !idle {
            shared.reactor.turn(false);
            continue;
        }
        if output.is_some() && REGISTRY.with(|r| r.borrow().len) == 0 {
            return output.take().expect("checked above");
        }
        let may_sleep = {
            let mut inject = lock(&shared.inject);
            // Re-checked under the lock a remote waker takes to see it.
            let sleep = inject.queue.is_empty() && !shared.main_woken.load(Ordering::Acquire);
            inject.sleeping = sleep;
            sleep
        };
        shared.reactor.turn(may_sleep);
        if may_sleep {
            lock(&shared.inject).sleeping = false;
        }
    }
}

/// Moves what other threads queued (tasks, and the main future's wake-up)
/// to the back of the run queue. Returns whether anything was moved.
fn take_injected(shared: &Shared) -> bool {
    let main = shared.main_woken.load(Ordering::Relaxed)
        && shared.main_woken.swap(false, Ordering::AcqRel);
    let batch = {
        let mut inject = lock(&shared.inject);
        if inject.queue.is_empty() {
            VecDeque::new()
        } else {
            std::mem::take(&mut inject.queue)
        }
    };
    let moved = !batch.is_empty() || main;
    if !batch.is_empty() {
        RUN_QUEUE.with(|q| q.borrow_mut().extend(batch.into_iter().map(Job::Task)));
    }
    if main {
        queue_main();
    }
    moved
}
