//! One `Waker` slot shared by a task that registers and a thread that wakes.
//!
//! # How it works
//!
//! The slot is guarded by a two-bit state word instead of a lock:
//!
//! - `REGISTERING`: the (single) registering task owns the slot and is
//!   replacing the waker in it.
//! - `WAKING`: a waker owns the slot and is taking the waker out.
//!
//! `register` claims the slot with a compare-exchange from idle. If a wake
//! arrives while it is storing, the waker only sets `WAKING` and leaves; the
//! registrar sees the bit when it releases the slot, takes the waker back out
//! and wakes it itself. So no wake-up is ever lost, and neither side ever
//! waits for the other: both paths are wait-free apart from the waker's own
//! `wake`. If `register` finds a wake in progress it cannot store its waker,
//! so it wakes the new waker directly (the task will be polled again and find
//! whatever the waking thread published).
//!
//! Wakers are foreign code: `clone`, `wake` and `drop` may panic. Each is
//! either run after the slot is released, or (the clone, which must happen
//! inside) caught and re-raised after the release, so an unwind never
//! leaves the slot claimed.

use crate::atomic::{AtomicUsize, Ordering};
use crate::cell::UnsafeCell;
use crate::hint;
use crate::unwind::FirstPanic;
use core::fmt;
use core::task::Waker;
use std::panic::{AssertUnwindSafe, catch_unwind};

const IDLE: usize = 0;
const REGISTERING: usize = 0b01;
const WAKING: usize = 0b10;

/// A slot for one [`Waker`], registered by one task and woken from any
/// thread.
///
/// Protocol for the consumer: `register`, then check the condition, then
/// return `Pending`. Protocol for the producer: publish, then `wake`. Any
/// wake that follows a publish reaches either the registered waker or the
/// task's next check.
///
/// ```
/// use sync_core::AtomicWaker;
/// use core::task::Waker;
///
/// let slot = AtomicWaker::new();
/// slot.register(Waker::noop());
/// assert!(slot.take().is_some());
/// assert!(slot.take().is_none());
/// ```
pub struct AtomicWaker {
    state: AtomicUsize,
    waker: UnsafeCell<Option<Waker>>,
}

// SAFETY: the slot is only accessed by whoever owns it according to `state`
// (see the module docs), and `Waker` is `Send + Sync`.
unsafe impl Send for AtomicWaker {}
// SAFETY: as above.
unsafe impl Sync for AtomicWaker {}

impl AtomicWaker {
    /// An empty slot.
    #[cfg(not(loom))]
    pub const fn new() -> Self {
        Self {
            state: AtomicUsize::new(IDLE),
            waker: UnsafeCell::new(None),
        }
    }

    /// An empty slot.
    #[cfg(loom)]
    pub fn new() -> Self {
        Self {
            state: AtomicUsize::new(IDLE),
            waker: UnsafeCell::new(None),
        }
    }

    /// Stores `waker` (cloning it only if it would not wake the same task as
    /// the one already stored). Wait-free; does not allocate unless the
    /// waker's `clone` does.
    ///
    /// Must not be called concurrently with itself (one registering task per
    /// slot); if it is, the later call wakes its waker instead of storing it.
    ///
    /// # Panics
    ///
    /// Only if the waker does: a panic from `waker.clone()`, from dropping
    /// the replaced waker or from a `wake` delivered here propagates, but
    /// only after the slot is released and consistent, and after every one
    /// of them has run (the first panic is raised, any other dropped): a
    /// waker is never dropped during another one's unwind, where its own
    /// panic would abort. A failed clone leaves the previously stored waker
    /// registered.
    pub fn register(&self, waker: &Waker) {
        match self
            .state
            .compare_exchange(IDLE, REGISTERING, Ordering::Acquire, Ordering::Acquire)
        {
            Ok(_) => {
                // `Waker::clone` is foreign code and may panic. It runs while
                // we hold REGISTERING, so its unwind is caught here and
                // re-raised only after the slot is released below: a
                // panicking clone must not leave the slot claimed forever.
                // SAFETY: REGISTERING gives us the slot: `take` only touches it
                // after moving the state from IDLE, which it cannot while we
                // hold REGISTERING.
                let swapped = self.waker.with_mut(|slot| unsafe {
                    match &*slot {
                        // Compared against the waker actually stored.
                        Some(current) if current.will_wake(waker) => Ok(None),
                        _ => catch_unwind(AssertUnwindSafe(|| waker.clone()))
                            .map(|new| (*slot).replace(new)),
                    }
                });
                let woken = match self.state.compare_exchange(
                    REGISTERING,
                    IDLE,
                    Ordering::AcqRel,
                    Ordering::Acquire,
                ) {
                    Ok(_) => None,
                    Err(_) => {
                        // A wake arrived while we were storing: it set WAKING
                        // and left the slot to us. Take the waker back out and
                        // deliver the wake ourselves, once the slot is free.
                        // SAFETY: we still hold REGISTERING; the waking side
                        // does not touch the slot in that case.
                        let stored = self.waker.with_mut(|slot| unsafe { (*slot).take() });
                        self.state.swap(IDLE, Ordering::AcqRel);
                        stored
                    }
                };
                // The slot is consistent and released: only now run foreign
                // code (the wake, the replaced waker's drop, a clone's panic).
                // Each runs on its own, and the first panic is raised once
                // all have: a replaced waker still held while a wake's panic
                // unwinds would be dropped during the unwind, and its own
                // panic there would abort the process.
                let mut panics = FirstPanic::new();
                if let Some(w) = woken {
                    panics.catch(|| w.wake());
                }
                match swapped {
                    Ok(old) => {
                        panics.catch(move || drop(old));
                    }
                    Err(clone_panic) => panics.keep(clone_panic),
                }
                panics.resume();
            }
            Err(_) => {
                // A wake is in progress (or a forbidden concurrent register):
                // make sure the task is polled again. The pause lets the
                // waking thread finish first (under loom it is a yield, which
                // keeps this executor-level retry loop a finite model).
                hint::spin_loop();
                crate::unwind::wake_by_ref(waker);
            }
        }
    }

    /// Takes the registered waker out, if any, and wakes it. Wait-free
    /// apart from the waker's `wake`.
    pub fn wake(&self) {
        if let Some(w) = self.take() {
            // The slot is empty already; the waker's panic reaches the
            // caller unless it is unwinding (`crate::unwind::wake`).
            crate::unwind::wake(w);
        }
    }

    /// Takes the registered waker out without waking it. Returns `None` if
    /// the slot is empty or busy (a busy registrar will wake it for us).
    pub fn take(&self) -> Option<Waker> {
        match self.state.fetch_or(WAKING, Ordering::AcqRel) {
            IDLE => {
                // SAFETY: moving the state from IDLE to WAKING gives us the
                // slot; `register` cannot claim it until we clear WAKING.
                let w = self.waker.with_mut(|slot| unsafe { (*slot).take() });
                self.state.fetch_and(!WAKING, Ordering::Release);
                w
            }
            _ => None,
        }
    }
}

impl Default for AtomicWaker {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for AtomicWaker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.state.load(Ordering::Relaxed);
        f.debug_struct("AtomicWaker")
            .field("registering", &(state & REGISTERING != 0))
            .field("waking", &(state & WAKING != 0))
            .finish()
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::AtomicWaker;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::task::{Wake, Waker};

    struct Counter(AtomicUsize);
    impl Wake for Counter {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    static_assertions::assert_impl_all!(AtomicWaker: Send, Sync);

    #[test]
    fn wake_reaches_the_registered_waker_once() {
        let _w = testkit::watchdog("wake_reaches_the_registered_waker_once");
        let c = Arc::new(Counter(AtomicUsize::new(0)));
        let w = Waker::from(Arc::clone(&c));
        let slot = AtomicWaker::new();
        slot.wake(); // nothing registered: no-op
        slot.register(&w);
        slot.register(&w); // same task: no clone, still one waker
        slot.wake();
        slot.wake();
        assert_eq!(c.0.load(Ordering::SeqCst), 1);
        assert!(format!("{slot:?}").contains("waking: false"));
    }

    #[test]
    fn registering_a_new_waker_replaces_the_old_one() {
        let _w = testkit::watchdog("registering_a_new_waker_replaces_the_old_one");
        let a = Arc::new(Counter(AtomicUsize::new(0)));
        let b = Arc::new(Counter(AtomicUsize::new(0)));
        let slot = AtomicWaker::new();
        slot.register(&Waker::from(Arc::clone(&a)));
        slot.register(&Waker::from(Arc::clone(&b)));
        slot.wake();
        assert_eq!(a.0.load(Ordering::SeqCst), 0);
        assert_eq!(b.0.load(Ordering::SeqCst), 1);
        assert_eq!(Arc::strong_count(&a), 1, "replaced waker was dropped");
    }

    /// A `Waker::clone` that panics must not leave the slot claimed: the
    /// panic reaches the caller, the previous waker stays registered, and
    /// later registrations and wakes work.
    #[test]
    fn a_panicking_clone_does_not_brick_the_slot() {
        let _w = testkit::watchdog("a_panicking_clone_does_not_brick_the_slot");
        use testkit::{HostileWaker, Misbehaviour};
        let first = HostileWaker::new(Misbehaviour::None);
        let hostile = HostileWaker::new(Misbehaviour::PanicOnClone);
        let slot = AtomicWaker::new();
        slot.register(&first.waker());
        let w = hostile.waker();
        let unwound = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| slot.register(&w)));
        assert!(unwound.is_err(), "the clone's panic reaches the caller");
        assert_eq!(hostile.wakes(), 0, "register did not fall back to waking");
        slot.wake();
        assert_eq!(first.wakes(), 1, "the earlier waker stayed registered");
        hostile.disarm();
        slot.register(&w);
        assert_eq!(
            hostile.wakes(),
            0,
            "the slot stores again instead of waking"
        );
        slot.wake();
        assert_eq!(hostile.wakes(), 1, "and a wake reaches the stored waker");
        assert_eq!(hostile.live(), 1, "only the caller's waker is left");
    }

    /// The slot compares against the waker it stores: a waker whose clones
    /// all have new data pointers is replaced each time (never "assumed
    /// same"), and every replaced clone is dropped.
    #[test]
    fn clones_with_new_pointers_are_replaced_not_leaked() {
        let _w = testkit::watchdog("clones_with_new_pointers_are_replaced_not_leaked");
        use testkit::{HostileWaker, Misbehaviour};
        let task = HostileWaker::new(Misbehaviour::None);
        let slot = AtomicWaker::new();
        let w = task.waker();
        for _ in 0..3 {
            slot.register(&w);
        }
        assert_eq!(task.live(), 2, "the caller's waker and one stored clone");
        slot.wake();
        assert_eq!((task.wakes(), task.live()), (1, 1));
    }

    /// A replaced waker whose drop panics: the panic reaches the caller
    /// after the new waker is stored and the slot released.
    #[test]
    fn a_panicking_drop_of_the_replaced_waker_leaves_the_new_one() {
        let _w = testkit::watchdog("a_panicking_drop_of_the_replaced_waker_leaves_the_new_one");
        use testkit::{HostileWaker, Misbehaviour};
        let old = HostileWaker::new(Misbehaviour::PanicOnDrop);
        let new = HostileWaker::new(Misbehaviour::None);
        let slot = AtomicWaker::new();
        let w = old.waker();
        slot.register(&w);
        old.disarm();
        drop(w); // only the stored clone is left, and it panics when dropped
        old.arm();
        let unwound =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| slot.register(&new.waker())));
        assert!(unwound.is_err());
        assert_eq!(old.live(), 0);
        slot.wake();
        assert_eq!(new.wakes(), 1, "the new waker was stored before the drop");
    }

    #[test]
    fn concurrent_wakes_are_not_lost() {
        let _w = testkit::watchdog("concurrent_wakes_are_not_lost");
        let c = Arc::new(Counter(AtomicUsize::new(0)));
        let w = Waker::from(Arc::clone(&c));
        let slot = Arc::new(AtomicWaker::new());
        for _ in 0..if cfg!(miri) { 10 } else { 500 } {
            let before = c.0.load(Ordering::SeqCst);
            let s2 = Arc::clone(&slot);
            let t = std::thread::spawn(move || s2.wake());
            slot.register(&w);
            t.join().unwrap();
            // Either the wake took our waker, or it found the slot empty /
            // busy and the waker is still there for a later wake.
            if c.0.load(Ordering::SeqCst) == before {
                slot.wake();
            }
            assert_eq!(c.0.load(Ordering::SeqCst), before + 1);
        }
    }
}
