//! Wakers that use every freedom the `RawWaker` contract leaves them.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::task::{RawWaker, RawWakerVTable, Waker};

/// What a [`HostileWaker`]'s wakers do wrong, besides the one thing they
/// always do: every `clone` boxes a **new data pointer**, so no two wakers
/// of the same task ever compare equal by pointer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Misbehaviour {
    /// Nothing else.
    None,
    /// `clone` panics (while armed).
    PanicOnClone,
    /// Dropping a waker without waking it panics (while armed).
    PanicOnDrop,
    /// `wake` and `wake_by_ref` count the wake, then panic (while armed).
    PanicOnWake,
    /// `wake` and `wake_by_ref` count the wake, then panic with a
    /// [`PanicsOnDrop`](crate::PanicsOnDrop) of this depth as the payload
    /// (while armed): whoever catches the panic and drops the payload gets
    /// another panic, `depth` levels deep.
    PanicOnWakeWithPanickingPayload(u32),
}

struct Shared {
    misbehaviour: Misbehaviour,
    armed: AtomicBool,
    wakes: AtomicUsize,
    live: AtomicUsize,
    clones: AtomicUsize,
}

/// One task's identity, from which hostile wakers are made.
///
/// Counts wakes, live wakers and clones, so a test can assert that a wake
/// arrived and that no waker leaked. Misbehaviour that panics does so only
/// while [armed](Self::disarm), and never while the thread is already
/// unwinding (which would abort the test binary instead of failing it).
#[derive(Clone)]
pub struct HostileWaker {
    shared: Arc<Shared>,
}

impl HostileWaker {
    /// A task whose wakers misbehave as `misbehaviour` says (armed).
    pub fn new(misbehaviour: Misbehaviour) -> Self {
        quiet_deliberate_panics();
        HostileWaker {
            shared: Arc::new(Shared {
                misbehaviour,
                armed: AtomicBool::new(true),
                wakes: AtomicUsize::new(0),
                live: AtomicUsize::new(0),
                clones: AtomicUsize::new(0),
            }),
        }
    }

    /// A fresh waker for this task (a new box, hence a new data pointer).
    pub fn waker(&self) -> Waker {
        // SAFETY: `new_raw` returns a pointer and vtable that honour the
        // `RawWaker` contract (see the vtable functions).
        unsafe { Waker::from_raw(new_raw(Arc::clone(&self.shared))) }
    }

    /// Stops the panicking misbehaviour (the new-pointer clones go on).
    pub fn disarm(&self) {
        self.shared.armed.store(false, Ordering::SeqCst);
    }

    /// Re-enables the panicking misbehaviour.
    pub fn arm(&self) {
        self.shared.armed.store(true, Ordering::SeqCst);
    }

    /// How many times a waker of this task was woken.
    pub fn wakes(&self) -> usize {
        self.shared.wakes.load(Ordering::SeqCst)
    }

    /// How many wakers of this task exist right now.
    pub fn live(&self) -> usize {
        self.shared.live.load(Ordering::SeqCst)
    }

    /// How many times a waker of this task was cloned (successfully).
    pub fn clones(&self) -> usize {
        self.shared.clones.load(Ordering::SeqCst)
    }
}

/// Installs (once per process) a panic hook that stays silent for the
/// deliberate panics of hostile wakers and forwards every other panic to
/// the hook that was there before. Called by every constructor: a model
/// checker that explores thousands of interleavings would otherwise spend
/// its time printing the same backtrace.
pub(crate) fn quiet_deliberate_panics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let payload = info.payload();
            let deliberate = payload
                .downcast_ref::<&str>()
                .is_some_and(|m| m.starts_with(DELIBERATE))
                || payload.is::<crate::PanicsOnDrop>()
                || payload
                    .downcast_ref::<String>()
                    .is_some_and(|m| m.starts_with(crate::panics_on_drop::DELIBERATE));
            if !deliberate {
                previous(info);
            }
        }));
    });
}

/// How every deliberate panic message starts.
const DELIBERATE: &str = "HostileWaker:";

impl Shared {
    fn misbehaves(&self, how: Misbehaviour) -> bool {
        self.misbehaviour == how && self.armed.load(Ordering::SeqCst) && !std::thread::panicking()
    }

    /// For `PanicOnWakeWithPanickingPayload`: panics with the payload.
    fn panic_with_payload(&self) {
        let Misbehaviour::PanicOnWakeWithPanickingPayload(depth) = self.misbehaviour else {
            return;
        };
        if self.misbehaves(self.misbehaviour) {
            crate::PanicsOnDrop::new(depth).throw();
        }
    }
}

static VTABLE: RawWakerVTable = RawWakerVTable::new(clone, wake, wake_by_ref, drop_waker);

fn new_raw(shared: Arc<Shared>) -> RawWaker {
    shared.live.fetch_add(1, Ordering::SeqCst);
    RawWaker::new(Box::into_raw(Box::new(shared)).cast_const().cast(), &VTABLE)
}

/// # Safety
///
/// `data` came from `new_raw` and was not freed yet.
unsafe fn shared<'a>(data: *const ()) -> &'a Arc<Shared> {
    // SAFETY: per the contract, a live box made by `new_raw`.
    unsafe { &*data.cast::<Arc<Shared>>() }
}

/// # Safety
///
/// `data` came from `new_raw` and is not used again.
unsafe fn free(data: *const ()) {
    // SAFETY: per the contract, a box made by `new_raw`, freed once.
    let shared = unsafe { Box::from_raw(data.cast::<Arc<Shared>>().cast_mut()) };
    shared.live.fetch_sub(1, Ordering::SeqCst);
}

unsafe fn clone(data: *const ()) -> RawWaker {
    // SAFETY: the vtable is only called on live wakers.
    let shared = unsafe { shared(data) };
    if shared.misbehaves(Misbehaviour::PanicOnClone) {
        panic!("HostileWaker: clone panics");
    }
    shared.clones.fetch_add(1, Ordering::SeqCst);
    new_raw(Arc::clone(shared))
}

unsafe fn wake(data: *const ()) {
    // SAFETY: the vtable is only called on live wakers.
    let shared = Arc::clone(unsafe { shared(data) });
    // SAFETY: `wake` consumes the waker.
    unsafe { free(data) };
    shared.wakes.fetch_add(1, Ordering::SeqCst);
    if shared.misbehaves(Misbehaviour::PanicOnWake) {
        panic!("HostileWaker: wake panics");
    }
    shared.panic_with_payload();
}

unsafe fn wake_by_ref(data: *const ()) {
    // SAFETY: the vtable is only called on live wakers.
    let shared = unsafe { shared(data) };
    shared.wakes.fetch_add(1, Ordering::SeqCst);
    if shared.misbehaves(Misbehaviour::PanicOnWake) {
        panic!("HostileWaker: wake_by_ref panics");
    }
    shared.panic_with_payload();
}

unsafe fn drop_waker(data: *const ()) {
    // SAFETY: the vtable is only called on live wakers.
    let shared = Arc::clone(unsafe { shared(data) });
    // SAFETY: `drop` consumes the waker.
    unsafe { free(data) };
    if shared.misbehaves(Misbehaviour::PanicOnDrop) {
        panic!("HostileWaker: drop panics");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clones_get_new_pointers_and_are_counted() {
        let task = HostileWaker::new(Misbehaviour::None);
        let a = task.waker();
        let b = a.clone();
        assert!(!a.will_wake(&b), "a clone has a new data pointer");
        assert_eq!((task.live(), task.clones()), (2, 1));
        b.wake();
        a.wake_by_ref();
        assert_eq!(task.wakes(), 2);
        drop(a);
        assert_eq!(task.live(), 0);
    }

    #[test]
    fn armed_misbehaviour_panics_and_disarming_stops_it() {
        let task = HostileWaker::new(Misbehaviour::PanicOnClone);
        let w = task.waker();
        assert!(std::panic::catch_unwind(|| w.clone()).is_err());
        task.disarm();
        drop(w.clone());
        let task = HostileWaker::new(Misbehaviour::PanicOnDrop);
        assert!(std::panic::catch_unwind(|| drop(task.waker())).is_err());
        assert_eq!(task.live(), 0, "the panicking drop still freed the waker");
        let task = HostileWaker::new(Misbehaviour::PanicOnWake);
        assert!(std::panic::catch_unwind(|| task.waker().wake()).is_err());
        assert_eq!((task.wakes(), task.live()), (1, 0));
    }
}
