//! A waker that runs the test's code inside its own `clone`, `wake` and
//! `drop`: re-entrancy at the worst moment.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{RawWaker, RawWakerVTable, Waker};

/// Code a [`ReentrantWaker`] runs from inside one of its vtable functions.
pub type Hook = Box<dyn Fn() + Send + Sync>;

/// A task whose wakers run a hook (once each) in `clone`, `wake` or `drop`,
/// for example to drop the channel the waker is being registered in.
/// Counts wakes and live wakers.
pub struct ReentrantWaker {
    on_clone: Mutex<Option<Hook>>,
    on_wake: Mutex<Option<Hook>>,
    on_drop: Mutex<Option<Hook>>,
    panic_after_clone_hook: bool,
    wakes: AtomicUsize,
    live: AtomicUsize,
}

impl ReentrantWaker {
    /// A task with no hooks yet.
    pub fn new() -> Arc<Self> {
        Self::build(false)
    }

    /// A task whose `clone`, once it has run its hook, panics.
    pub fn panicking_after_clone_hook() -> Arc<Self> {
        Self::build(true)
    }

    fn build(panic_after_clone_hook: bool) -> Arc<Self> {
        Arc::new(ReentrantWaker {
            on_clone: Mutex::new(None),
            on_wake: Mutex::new(None),
            on_drop: Mutex::new(None),
            panic_after_clone_hook,
            wakes: AtomicUsize::new(0),
            live: AtomicUsize::new(0),
        })
    }

    /// Runs `hook` in the next `clone` of one of this task's wakers.
    pub fn set_on_clone(&self, hook: Hook) {
        *self.on_clone.lock().unwrap() = Some(hook);
    }

    /// Runs `hook` in the next `wake` or `wake_by_ref`.
    pub fn set_on_wake(&self, hook: Hook) {
        *self.on_wake.lock().unwrap() = Some(hook);
    }

    /// Runs `hook` in the next drop of a waker that was not woken.
    pub fn set_on_drop(&self, hook: Hook) {
        *self.on_drop.lock().unwrap() = Some(hook);
    }

    /// A waker of this task.
    pub fn waker(self: &Arc<Self>) -> Waker {
        self.live.fetch_add(1, Ordering::SeqCst);
        let raw = RawWaker::new(Arc::into_raw(Arc::clone(self)).cast(), &VTABLE);
        // SAFETY: the vtable below honours the `RawWaker` contract: every
        // data pointer is an `Arc::into_raw` that owns one count.
        unsafe { Waker::from_raw(raw) }
    }

    /// How many times a waker of this task was woken.
    pub fn wakes(&self) -> usize {
        self.wakes.load(Ordering::SeqCst)
    }

    /// How many wakers of this task exist right now.
    pub fn live(&self) -> usize {
        self.live.load(Ordering::SeqCst)
    }

    /// Runs a hook once (it is taken out first, so it may re-enter freely);
    /// whether there was one.
    fn fire(slot: &Mutex<Option<Hook>>) -> bool {
        let hook = slot.lock().unwrap().take();
        let fired = hook.is_some();
        if let Some(hook) = hook {
            hook();
        }
        fired
    }
}

static VTABLE: RawWakerVTable = RawWakerVTable::new(clone, wake, wake_by_ref, drop_waker);

/// # Safety
///
/// `data` is the pointer of a live waker made by [`ReentrantWaker::waker`].
unsafe fn borrow(data: *const ()) -> Arc<ReentrantWaker> {
    // SAFETY: per the contract; the count added here is owned by the
    // returned `Arc`.
    unsafe { Arc::increment_strong_count(data.cast::<ReentrantWaker>()) };
    // SAFETY: as above.
    unsafe { Arc::from_raw(data.cast::<ReentrantWaker>()) }
}

unsafe fn clone(data: *const ()) -> RawWaker {
    // SAFETY: the vtable is only called on live wakers.
    let me = unsafe { borrow(data) };
    if ReentrantWaker::fire(&me.on_clone) && me.panic_after_clone_hook {
        panic!("ReentrantWaker: clone panics after its hook");
    }
    me.live.fetch_add(1, Ordering::SeqCst);
    RawWaker::new(Arc::into_raw(me).cast(), &VTABLE)
}

unsafe fn wake(data: *const ()) {
    // SAFETY: `wake` consumes the waker's count.
    let me = unsafe { Arc::from_raw(data.cast::<ReentrantWaker>()) };
    me.live.fetch_sub(1, Ordering::SeqCst);
    me.wakes.fetch_add(1, Ordering::SeqCst);
    ReentrantWaker::fire(&me.on_wake);
}

unsafe fn wake_by_ref(data: *const ()) {
    // SAFETY: the vtable is only called on live wakers.
    let me = unsafe { borrow(data) };
    me.wakes.fetch_add(1, Ordering::SeqCst);
    ReentrantWaker::fire(&me.on_wake);
}

unsafe fn drop_waker(data: *const ()) {
    // SAFETY: `drop` consumes the waker's count.
    let me = unsafe { Arc::from_raw(data.cast::<ReentrantWaker>()) };
    me.live.fetch_sub(1, Ordering::SeqCst);
    ReentrantWaker::fire(&me.on_drop);
}
