//! The submission queue and the submit handshake.
//!
//! # How it works
//!
//! Every piece of work is a [`Node`]. For `submit` the node lives in the
//! caller's stack frame, inside a [`StackTask`] that also holds the closure
//! and the slot for its result; for `spawn` (and for `Tagged` values sent
//! home to be dropped) it lives in a `Box` the worker frees ([`BoxTask`]).
//!
//! **The queue** is one atomic word, `head`: a pointer to the most recently
//! pushed node (an intrusive Treiber stack linked through `Node::next`) with
//! three flag bits in its low bits (nodes are 8-aligned):
//!
//! - `SLEEPING`: the worker found nothing to do, spent its spin budget and is
//!   parked (or about to park). Only set while the list is empty.
//! - `SHUTDOWN`: `join`/`drop` asked the worker to stop once the queue is
//!   empty.
//! - `CLOSED`: the worker has stopped taking work; pushes fail.
//!
//! A push is one compare-and-swap that links the node in and clears
//! `SLEEPING`; the pusher unparks the worker only if it was the one to clear
//! it. The push fails, without the node ever being reachable, if `CLOSED` is
//! set. The worker takes the *whole* list with one compare-and-swap, reverses
//! it (so the batch runs in push order: FIFO across submitters) and runs it.
//! The worker sets `CLOSED` only with a compare-and-swap that expects an
//! empty list, so **every node that was pushed is run**: there is no
//! "cancelled while queued" state and no caller ever has to fish its node out
//! of the queue. That is what makes the caller's early exits sound: the only
//! one, "the thread has shut down", happens when the push fails, i.e. before
//! the worker could ever see the node.
//!
//! **The completion handshake** is a per-node state byte: `WAITING`, then
//! either straight to `DONE` or via `PARKING`:
//!
//! - The caller spins (bounded, and only while spinning pays off: the
//!   queue's [`SpinPolicy`] for callers) re-reading the state. If it
//!   runs out of patience it writes an [`Unparker`] for its thread into the
//!   node, then moves `WAITING -> PARKING` (release, so the worker sees the
//!   unparker) and parks until it reads `DONE`. If that CAS fails the task is
//!   already done: it drops its own unparker and returns.
//! - The worker runs the closure, writes the result into the node, then tries
//!   `WAITING -> DONE`. If that succeeds the caller was still spinning and
//!   will see `DONE` by itself: the worker's last access to the caller's
//!   frame was that CAS. If it fails, the state is `PARKING`: the caller is
//!   parked and will not leave before `DONE`, so the worker first *moves the
//!   unparker out of the node* into its own stack, then stores `DONE` (its
//!   last access to the frame) and wakes the caller through the unparker it
//!   now owns. The `Unparker` keeps the parker's shared block alive by
//!   itself, so the caller may free its frame the instant it reads `DONE`.
//!
//! In the common case (both sides still spinning) a round trip is two CASes
//! on `head` and one CAS on the node's state: no system call, no allocation,
//! no reference-count traffic.
//!
//! **The worker's idle wait** mirrors the caller's: spin (bounded, see
//! the queue's idle [`SpinPolicy`]) re-reading `head`, then CAS `empty -> SLEEPING` and park until
//! `head` changes. A push (or a shutdown request) that clears `SLEEPING`
//! unparks it; `Parker` tokens make an unpark that comes before the park
//! count.

use crate::error::{Payload, drop_payload};
use core::ptr;
use std::panic::{AssertUnwindSafe, catch_unwind};
use sync_core::atomic::{AtomicPtr, AtomicU8, Ordering};
use sync_core::cell::UnsafeCell;
use sync_core::{CachePadded, CpuId, Parker, PeerCpu, SpinHints, SpinPolicy, Unparker};

/// The worker parked (or is about to) on an empty queue.
const SLEEPING: usize = 0b001;
/// Stop once the queue is empty.
const SHUTDOWN: usize = 0b010;
/// No more pushes.
const CLOSED: usize = 0b100;
const FLAGS: usize = SLEEPING | SHUTDOWN | CLOSED;

/// Node state: the caller is (or may be) spinning.
const WAITING: u8 = 0;
/// The caller put an unparker in the node and parks until `DONE`.
const PARKING: u8 = 1;
/// The worker is finished with the node, which now belongs to the caller.
const DONE: u8 = 2;

/// The intrusive header of every unit of work. `align(8)` frees the three
/// low bits of a node address for the queue's flags.
#[repr(C, align(8))]
pub(crate) struct Node {
    /// The next node: towards older pushes while in the queue, towards
    /// newer ones once the worker has reversed its batch.
    next: UnsafeCell<*mut Node>,
    /// Runs the task this node heads. The pointer passed is the node's own.
    run: unsafe fn(*mut Node),
    /// `WAITING`/`PARKING`/`DONE`; only used by stack tasks.
    state: AtomicU8,
    /// Where the submitter ran when it made the task: the worker does not
    /// spin for the next task on that CPU (`PeerCpu`). Carried in the node
    /// (written before the push publishes it) rather than noted in the
    /// queue, where submitters on different CPUs would keep rewriting one
    /// shared word. Placed in the padding after `state`: the node stays 32
    /// bytes.
    caller_cpu: CpuId,
    /// The parked caller's unparker (stack tasks, `PARKING` only).
    unparker: UnsafeCell<Option<Unparker>>,
}

impl Node {
    fn new(run: unsafe fn(*mut Node)) -> Node {
        Node {
            next: UnsafeCell::new(ptr::null_mut()),
            run,
            state: AtomicU8::new(WAITING),
            caller_cpu: CpuId::current(),
            unparker: UnsafeCell::new(None),
        }
    }
}

// The node shares its line with the task's closure or result; `caller_cpu`
// sits in padding and must not grow it.
#[cfg(all(not(loom), target_pointer_width = "64"))]
const _: () = assert!(core::mem::size_of::<Node>() == 32);

/// What a successful push learned.
pub(crate) struct Pushed {
    /// The worker had not parked: it was running or spinning, so an answer
    /// is likely microseconds away (a hint for the caller's spin).
    worker_was_awake: bool,
}

sync_core::thread_local! {
    /// On a worker: whether the caller of the task it completed last was
    /// still spinning (it will submit again soon: a hint for the worker's
    /// idle spin).
    #[allow(clippy::missing_const_for_thread_local)] // loom's macro takes no `const {}`
    static LAST_CALLER_SPINNING: core::cell::Cell<bool> = core::cell::Cell::new(false);
}

/// The queue of one worker (see the module docs).
pub(crate) struct Queue {
    head: CachePadded<AtomicPtr<Node>>,
    worker: Unparker,
    /// How submitters wait for completion (their shared history).
    callers: SpinPolicy,
    /// How the idle worker waits for work.
    idle: SpinPolicy,
    /// Where the worker last went idle: a submitter does not spin on that
    /// CPU (`PeerCpu`; the worker's side is `Node::caller_cpu`).
    worker_cpu: PeerCpu,
}

fn flags(word: *mut Node) -> usize {
    word.addr() & FLAGS
}

fn list(word: *mut Node) -> *mut Node {
    word.map_addr(|a| a & !FLAGS)
}

fn only_flags(flags: usize) -> *mut Node {
    ptr::without_provenance_mut(flags)
}

impl Queue {
    /// An empty queue whose worker is woken through `worker`.
    pub(crate) fn new(worker: Unparker) -> Queue {
        Queue {
            head: CachePadded::new(AtomicPtr::new(ptr::null_mut())),
            worker,
            callers: SpinPolicy::new(),
            idle: SpinPolicy::new(),
            worker_cpu: PeerCpu::new(),
        }
    }

    /// Links `node` in. `Err(())` if the queue is closed, in which case the
    /// worker never saw (and never will see) the node.
    ///
    /// # Safety
    ///
    /// `node` must point to a live `Node` that is in no queue, and it must
    /// stay valid (not moved, not freed) until the worker has called its
    /// `run` function and that function has released it: for a stack task,
    /// until its state reads `DONE`; a boxed task is freed by `run` itself.
    unsafe fn push(&self, node: *mut Node) -> Result<Pushed, ()> {
        let mut current = self.head.load(Ordering::Relaxed);
        loop {
            if flags(current) & CLOSED != 0 {
                return Err(());
            }
            // SAFETY: the node is not published yet (the CAS below publishes
            // it), so this thread is its only user; valid per the contract.
            unsafe { (*node).next.with_mut(|next| *next = list(current)) };
            let new = node.map_addr(|a| a | (flags(current) & SHUTDOWN));
            // Release: the worker's acquiring take must see the node's
            // contents (closure, `next`).
            match self.head.compare_exchange_weak(
                current,
                new,
                Ordering::Release,
                Ordering::Relaxed,
            ) {
                Ok(_) => {
                    let asleep = flags(current) & SLEEPING != 0;
                    if asleep {
                        self.worker.unpark();
                    }
                    return Ok(Pushed {
                        worker_was_awake: !asleep,
                    });
                }
                Err(actual) => current = actual,
            }
        }
    }

    /// Asks the worker to stop once the queue is empty. Idempotent.
    pub(crate) fn request_shutdown(&self) {
        let mut current = self.head.load(Ordering::Relaxed);
        loop {
            if flags(current) & (SHUTDOWN | CLOSED) != 0 {
                return;
            }
            let new = current.map_addr(|a| (a & !SLEEPING) | SHUTDOWN);
            match self.head.compare_exchange_weak(
                current,
                new,
                Ordering::Release,
                Ordering::Relaxed,
            ) {
                Ok(_) => {
                    if flags(current) & SLEEPING != 0 {
                        self.worker.unpark();
                    }
                    return;
                }
                Err(actual) => current = actual,
            }
        }
    }

    /// Closes a queue nobody else has seen yet (the prelude panicked).
    pub(crate) fn close_unpublished(&self) {
        self.head
            .store(only_flags(SHUTDOWN | CLOSED), Ordering::Release);
    }

    /// The worker's loop: runs every pushed node, parks when idle, returns
    /// once a shutdown was requested and the queue is drained and closed.
    ///
    /// Must be called from the worker thread, which `parker` belongs to and
    /// which `self.worker` unparks; only one thread may ever call it.
    pub(crate) fn serve(&self, parker: &Parker) {
        // Where the submitter of the last task run was (`Node::caller_cpu`).
        let mut last_caller = CpuId::UNKNOWN;
        loop {
            let current = self.head.load(Ordering::Acquire);
            if !list(current).is_null() {
                // Take the whole batch, keeping SHUTDOWN (SLEEPING is never
                // set while the list is non-empty). Acquire pairs with the
                // pushers' release: their nodes are fully written.
                let rest = only_flags(flags(current) & SHUTDOWN);
                if self
                    .head
                    .compare_exchange(current, rest, Ordering::Acquire, Ordering::Relaxed)
                    .is_ok()
                {
                    // SAFETY: the CAS made this thread the only owner of the
                    // batch; every node in it is valid until run (push's
                    // contract).
                    last_caller = unsafe { run_batch(list(current)) };
                }
                continue;
            }
            if flags(current) & SHUTDOWN != 0 {
                // Close only an empty queue: every node pushed before this
                // CAS has been run, none can be pushed after it.
                let closed = current.map_addr(|a| a | CLOSED);
                if self
                    .head
                    .compare_exchange(current, closed, Ordering::AcqRel, Ordering::Relaxed)
                    .is_ok()
                {
                    return;
                }
                continue;
            }
            // Idle: spin (if spinning pays off here) until something arrives.
            let caller_spinning = LAST_CALLER_SPINNING
                .try_with(|c| c.replace(false))
                .unwrap_or(false);
            self.worker_cpu.note();
            let hints = SpinHints {
                peer_running: caller_spinning,
                peer_cpu: last_caller,
                time_left: None,
            };
            if self
                .idle
                .spin_with(hints, || self.head.load(Ordering::Relaxed) != current)
            {
                continue;
            }
            // Nothing to do and patience spent: announce that we sleep. Only
            // this thread sets SLEEPING, so `current` is the empty word.
            if self
                .head
                .compare_exchange(
                    current,
                    only_flags(SLEEPING),
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                )
                .is_err()
            {
                continue; // something arrived meanwhile
            }
            // Whoever clears SLEEPING unparks us (after their CAS), and a
            // token left by an unpark that beats `park` makes it return.
            while self.head.load(Ordering::Acquire) == only_flags(SLEEPING) {
                parker.park();
            }
        }
    }
}

/// Reverses a batch taken from the queue (newest first) and runs it oldest
/// first. Returns the CPU the newest task's submitter ran on.
///
/// # Safety
///
/// The caller owns the batch (took it off the queue); every node in it is
/// valid until its `run` has been called.
unsafe fn run_batch(newest: *mut Node) -> CpuId {
    // SAFETY: the batch is non-empty (`serve` takes only a non-empty list)
    // and its newest node is valid until run (contract); `caller_cpu` was
    // written before the push published the node.
    let newest_caller = unsafe { (*newest).caller_cpu };
    let mut reversed: *mut Node = ptr::null_mut();
    let mut node = newest;
    while !node.is_null() {
        // SAFETY: `node` is in our batch and not run yet, so it is valid and
        // nobody else touches its `next` (the pusher wrote it before
        // publishing and never again).
        let next = unsafe { (*node).next.with(|next| *next) };
        // SAFETY: as above.
        unsafe { (*node).next.with_mut(|next| *next = reversed) };
        reversed = node;
        node = next;
    }
    let mut node = reversed;
    while !node.is_null() {
        // SAFETY: `node` is valid until its `run` is called; read `next` and
        // `run` first, because the node may be gone once `run` returns.
        let (next, run) = unsafe { ((*node).next.with(|next| *next), (*node).run) };
        // SAFETY: `run` is the function the node was built with, made for
        // exactly this node's type; each node is run once.
        unsafe { run(node) };
        node = next;
    }
    newest_caller
}

// ---------------------------------------------------------------------------
// Stack tasks: `submit`.

/// A blocking task in the caller's stack frame. `node` comes first
/// (`repr(C)`) so a pointer to the node is a pointer to the task.
///
/// Aligned to a cache line, so that a small task (the node and a closure or
/// result of up to 24 bytes) is one line that nothing else shares: the
/// worker fetches it once, and the caller's own stack writes while it waits
/// (its callees' frames lie right below) never pull it back mid-task.
/// Measured on `submit(move || x + 1)`: 112-126 ns per round trip aligned,
/// 120-183 ns unaligned, depending on where the frame happened to fall.
#[repr(C, align(64))]
pub(crate) struct StackTask<F, T> {
    node: Node,
    /// The closure until the worker takes it, then its outcome (written
    /// before `DONE`). One cell for both keeps the task small.
    slot: UnsafeCell<Slot<F, T>>,
}

/// What a stack task's one cell holds, in order.
enum Slot<F, T> {
    Func(F),
    Output(Result<T, Payload>),
    Empty,
}

impl<F, T> Slot<F, T> {
    fn take_func(&mut self) -> Option<F> {
        match core::mem::replace(self, Slot::Empty) {
            Slot::Func(f) => Some(f),
            other => {
                *self = other;
                None
            }
        }
    }

    fn take_output(&mut self) -> Option<Result<T, Payload>> {
        match core::mem::replace(self, Slot::Empty) {
            Slot::Output(out) => Some(out),
            other => {
                *self = other;
                None
            }
        }
    }
}

impl<F, T> StackTask<F, T>
where
    F: FnOnce() -> T + Send,
    T: Send,
{
    pub(crate) fn new(func: F) -> Self {
        StackTask {
            node: Node::new(Self::run),
            slot: UnsafeCell::new(Slot::Func(func)),
        }
    }

    /// Pushes the task, waits for the worker to finish it, and returns its
    /// result; or gives the closure back if the queue is closed.
    ///
    /// Blocks. Allocates nothing. Spins as the queue's [`SpinPolicy`] for
    /// callers allows (50 µs at most, 200 µs on a probe, only while spinning
    /// pays off and never when the worker went idle on this CPU), then parks
    /// on `parker` (the calling thread's).
    pub(crate) fn run_on(self, queue: &Queue, parker: &Parker) -> Result<Result<T, Payload>, F> {
        // Derived from the whole task (not just its `node` field) so that the
        // worker may reach `slot` through it.
        let node = (&raw const self).cast::<Node>().cast_mut();
        // From here until `DONE` the worker may use this frame, so nothing
        // below may unwind out of it. Nothing can (atomics, `SpinPolicy`,
        // `park`, an `Arc` clone), but keep a guard that turns a bug into an
        // abort instead of a use-after-free.
        let guard = AbortOnUnwind;
        // `self` lives in this frame until this function returns, and it
        // returns only after the push failed (the worker never saw the node)
        // or after `wait` observed `DONE`. It is not moved meanwhile.
        // SAFETY: the node outlives every access the worker makes (above).
        let pushed = unsafe { queue.push(node) };
        if let Ok(pushed) = &pushed {
            let hints = SpinHints {
                peer_running: pushed.worker_was_awake,
                peer_cpu: queue.worker_cpu.last(),
                time_left: None,
            };
            self.wait(&queue.callers, hints, parker);
        }
        core::mem::forget(guard);
        match pushed {
            Ok(_) => {
                self.retire_frame();
                Ok(self
                    .slot
                    // SAFETY: `DONE` was observed with acquire: the worker is
                    // gone from this frame and its writes are visible.
                    .with_mut(|slot| unsafe { (*slot).take_output() })
                    .unwrap_or_else(|| unreachable!("ste: a task completed without a result")))
            }
            Err(()) => Err(self
                .slot
                // SAFETY: the push failed, the worker never saw the node;
                // this thread is the only user of the task.
                .with_mut(|slot| unsafe { (*slot).take_func() })
                .unwrap_or_else(|| unreachable!("ste: an unpushed task lost its closure"))),
        }
    }

    /// Tells the model checker that this frame is about to be freed: a
    /// write access, from the caller's thread, to every cell the worker
    /// ever touches. Loom fails the model if any access of the worker is
    /// not ordered before the `DONE` this thread observed; that is exactly
    /// the use-after-free of a worker that touches the node after
    /// publishing completion (say, taking the unparker after storing
    /// `DONE`). Loom cannot see a stack frame die by itself. In the std
    /// build the closures do nothing and this compiles to nothing.
    fn retire_frame(&self) {
        self.node.next.with_mut(|_| ());
        self.node.unparker.with_mut(|_| ());
        self.slot.with_mut(|_| ());
    }

    /// The caller's half of the completion handshake (module docs).
    /// Spins as `policy` and `hints` allow (not on the worker's last CPU).
    fn wait(&self, policy: &SpinPolicy, hints: SpinHints, parker: &Parker) {
        let state = &self.node.state;
        if policy.spin_with(hints, || state.load(Ordering::Acquire) == DONE) {
            return;
        }
        let (unparker, slot) = (parker.unparker(), &self.node.unparker);
        // SAFETY: while the state is WAITING the worker does not touch
        // `unparker` (it reads it only after seeing PARKING, which only this
        // thread sets, below).
        slot.with_mut(|u| unsafe { *u = Some(unparker) });
        // Release publishes the unparker; acquire (on failure) sees the
        // result.
        match state.compare_exchange(WAITING, PARKING, Ordering::Release, Ordering::Acquire) {
            Ok(_) => {
                while state.load(Ordering::Acquire) != DONE {
                    parker.park();
                }
            }
            Err(_) => {
                // DONE came first: the worker completed through the fast
                // path and never looked at `unparker`.
                // SAFETY: the worker is finished with the node.
                self.node.unparker.with_mut(|u| unsafe { *u = None });
            }
        }
    }

    /// The worker's side: run the closure, store the result, complete.
    ///
    /// # Safety
    ///
    /// `node` is the node of a live `StackTask<F, T>` that was pushed and
    /// not yet run.
    unsafe fn run(node: *mut Node) {
        let task = node.cast::<Self>().cast_const();
        let result = catch_unwind(AssertUnwindSafe(|| {
            // SAFETY: the caller wrote `slot` before publishing the node and
            // does not touch it until DONE; this thread is the only user.
            let func = unsafe { (*task).slot.with_mut(|slot| (*slot).take_func()) };
            func.expect("ste: a task was run twice")()
        }));
        // SAFETY: as above: the caller reads the slot only after DONE.
        unsafe { (*task).slot.with_mut(|slot| *slot = Slot::Output(result)) };
        // SAFETY: the node is valid and ours until `complete` publishes DONE.
        unsafe { complete(node) };
        // `task`/`node` must not be used from here on.
    }
}

/// Publishes `DONE` for a stack task and wakes its caller if it parked.
///
/// # Safety
///
/// `node` is a live stack-task node that this (worker) thread owns. After
/// this returns, the node may already be freed.
unsafe fn complete(node: *mut Node) {
    // SAFETY: the node is alive until DONE is stored below, which is the
    // last access through `node` on either path.
    let fast = unsafe {
        (*node)
            .state
            .compare_exchange(WAITING, DONE, Ordering::Release, Ordering::Acquire)
    };
    if fast.is_ok() {
        // The caller was spinning; it sees DONE by itself, and will likely
        // submit again right away (a hint for our idle spin).
        let _ = LAST_CALLER_SPINNING.try_with(|c| c.set(true));
        return;
    }
    // PARKING (acquired): the caller's unparker is in the node, and the
    // caller will not leave before DONE. Move the unparker out first.
    // SAFETY: the caller does not touch `unparker` after setting PARKING.
    let unparker = unsafe { (*node).unparker.with_mut(|u| (*u).take()) };
    // SAFETY: still before DONE; this is the last access to the node.
    unsafe { (*node).state.store(DONE, Ordering::Release) };
    // Touches only the parker block the unparker co-owns, never the frame.
    if let Some(unparker) = unparker {
        unparker.unpark();
    }
}

/// Aborts the process if dropped, i.e. if a panic unwinds through a region
/// where the worker may still be using the unwinding frame.
struct AbortOnUnwind;

impl Drop for AbortOnUnwind {
    fn drop(&mut self) {
        eprintln!(
            "ste: a panic unwound while the worker could still use the caller's frame; aborting"
        );
        std::process::abort();
    }
}

// ---------------------------------------------------------------------------
// Boxed tasks: `spawn` and values sent home to be dropped.

/// A fire-and-forget task; the worker frees it after running it.
#[repr(C)]
pub(crate) struct BoxTask<F> {
    node: Node,
    func: F,
}

impl<F: FnOnce() + Send + 'static> BoxTask<F> {
    /// Allocates the task and pushes it. On a closed queue, gives the
    /// closure back (the caller decides whether to drop or leak it).
    ///
    /// `'static` is what makes this sound: the task runs on the worker at
    /// some later time, after the pusher has returned and after every
    /// borrow it had may have ended. Nothing the worker runs later may
    /// borrow from the pusher's scope.
    pub(crate) fn push(queue: &Queue, func: F) -> Result<(), F> {
        let task = Box::into_raw(Box::new(BoxTask {
            node: Node::new(Self::run),
            func,
        }));
        // SAFETY: a fresh allocation, freed only by `run` (or below if the
        // push fails and the worker never saw it). `F: Send`, so running and
        // dropping it on the worker is fine.
        match unsafe { queue.push(task.cast::<Node>()) } {
            Ok(_) => Ok(()),
            Err(()) => {
                // SAFETY: from `Box::into_raw` above; never published.
                let task = unsafe { Box::from_raw(task) };
                Err(task.func)
            }
        }
    }

    /// # Safety
    ///
    /// `node` is the node of a `BoxTask<F>` from `push`, run once.
    unsafe fn run(node: *mut Node) {
        // SAFETY: allocated by `Box::into_raw` in `push` with this type; the
        // worker owns it now.
        let task = unsafe { Box::from_raw(node.cast::<Self>()) };
        let BoxTask { node: _, func } = *task;
        if let Err(payload) = catch_unwind(AssertUnwindSafe(func)) {
            // Nobody waits for a spawned task: drop the payload here, and
            // make sure a payload that panics on drop cannot kill the worker.
            drop_payload(payload);
        }
    }
}
