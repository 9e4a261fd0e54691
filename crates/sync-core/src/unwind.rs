//! Foreign code that panics: the one way the workspace catches, drops and
//! passes on a panic from code it does not own (a [`Waker`]'s `wake`,
//! `clone` or `drop`, a payload's or a token's `Drop`, a task).
//!
//! # The rule
//!
//! 1. **Publish first.** The structure is consistent before foreign code
//!    runs, so any unwind leaves it usable and loses no value.
//! 2. **The caller gets the panic of the code its own call ran**, once the
//!    call's work is done: every waiter woken, every slot released. When
//!    several pieces of foreign code panic in one call, the first panic is
//!    raised and the others are dropped ([`FirstPanic`]).
//! 3. **Caught and dropped when nobody can take it**: the code ran on
//!    someone else's behalf while the caller is getting a value back (a
//!    hand-off to the next waiter, a message routed to its owner), or in a
//!    runtime's own loop (an executor, a worker thread: where a result
//!    exists, such as a `JoinError`, it carries the panic), or while the
//!    thread is already unwinding (a second panic would abort the process).
//!    [`wake_quietly`], [`drop_quietly`]; and [`wake`], [`FirstPanic::resume`]
//!    drop the panic instead of raising it when the thread is unwinding.
//! 4. **A caught payload is foreign code too.** Its `Drop` may panic, and
//!    the payload of that panic may panic again when dropped.
//!    [`drop_payload`] drops such a chain a few levels deep and leaks what
//!    is left; nothing gets out.
//!
//! Every function here is plain `std`: no allocation of its own, no lock,
//! the same in loom builds.

use core::any::Any;
use core::task::Waker;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};

/// What a caught panic carries, as [`std::panic::catch_unwind`] returns it.
pub type Payload = Box<dyn Any + Send + 'static>;

/// How many nested panics [`drop_payload`] follows before it leaks the
/// rest: a payload whose destructor panics with a payload whose destructor
/// panics ... is hostile or broken; a few levels cover every real case.
const NESTED_LIMIT: usize = 4;

/// Drops a caught panic's payload; no panic gets out. If the payload's
/// destructor panics, that panic's payload is dropped the same way, for up
/// to four nested panics; the payload of a fifth is leaked (forgotten),
/// the one thing that cannot be dropped.
pub fn drop_payload(payload: Payload) {
    let mut payload = payload;
    // The payload itself, then one more drop per nested panic.
    for _ in 0..=NESTED_LIMIT {
        match catch_unwind(AssertUnwindSafe(move || drop(payload))) {
            Ok(()) => return,
            Err(nested) => payload = nested,
        }
    }
    core::mem::forget(payload);
}

/// Drops `value`; a panic of its destructor is caught and its payload
/// dropped with [`drop_payload`].
pub fn drop_quietly<T>(value: T) {
    if let Err(payload) = catch_unwind(AssertUnwindSafe(move || drop(value))) {
        drop_payload(payload);
    }
}

/// Wakes `waker` on someone else's behalf (rule 3): a panic of its `wake`
/// is caught and its payload dropped with [`drop_payload`].
pub fn wake_quietly(waker: Waker) {
    if let Err(payload) = catch_unwind(AssertUnwindSafe(move || waker.wake())) {
        drop_payload(payload);
    }
}

/// Wakes `waker` for the caller (rule 2): a panic of its `wake` reaches
/// the caller. While the thread is already unwinding (a structure dropped
/// during a panic wakes a waiter), a second panic would abort the process,
/// so there it is caught and dropped as [`wake_quietly`] does (rule 3).
pub fn wake(waker: Waker) {
    if std::thread::panicking() {
        wake_quietly(waker);
    } else {
        waker.wake();
    }
}

/// [`wake`] for a borrowed waker (`wake_by_ref`).
pub fn wake_by_ref(waker: &Waker) {
    if std::thread::panicking() {
        if let Err(payload) = catch_unwind(AssertUnwindSafe(|| waker.wake_by_ref())) {
            drop_payload(payload);
        }
    } else {
        waker.wake_by_ref();
    }
}

/// Runs several pieces of foreign code to the end, keeps the first panic
/// and drops the others ([`drop_payload`]), then raises the first with
/// [`resume`](Self::resume) (rule 2), unless the thread is already
/// unwinding. Dropped without `resume` (say, while unwinding from something
/// else), it drops what it holds quietly.
#[derive(Default)]
pub struct FirstPanic(Option<Payload>);

impl FirstPanic {
    /// Nothing caught yet.
    pub const fn new() -> FirstPanic {
        FirstPanic(None)
    }

    /// Runs `f`. Its value, or `None` if it panicked: the panic is kept if
    /// it is the first, else its payload is dropped.
    pub fn catch<R>(&mut self, f: impl FnOnce() -> R) -> Option<R> {
        match catch_unwind(AssertUnwindSafe(f)) {
            Ok(r) => Some(r),
            Err(payload) => {
                self.keep(payload);
                None
            }
        }
    }

    /// Keeps `payload` (caught elsewhere) if it is the first, else drops it.
    pub fn keep(&mut self, payload: Payload) {
        match self.0 {
            None => self.0 = Some(payload),
            Some(_) => drop_payload(payload),
        }
    }

    /// Whether a panic was caught.
    pub fn caught(&self) -> bool {
        self.0.is_some()
    }

    /// Raises the first panic caught, if any; returns if there was none.
    /// While the thread is already unwinding (this runs in a destructor
    /// called by an unwind), raising it would abort the process: it is
    /// dropped instead, and this returns.
    pub fn resume(mut self) {
        if let Some(payload) = self.0.take() {
            if std::thread::panicking() {
                drop_payload(payload);
            } else {
                resume_unwind(payload);
            }
        }
    }
}

impl Drop for FirstPanic {
    fn drop(&mut self) {
        if let Some(payload) = self.0.take() {
            drop_payload(payload);
        }
    }
}

impl core::fmt::Debug for FirstPanic {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("FirstPanic")
            .field("caught", &self.caught())
            .finish()
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Dropping it panics with a payload one level shallower (a message at
    /// the last level); every level counts its drop.
    struct Chain(u32, Arc<AtomicUsize>);

    impl Drop for Chain {
        fn drop(&mut self) {
            self.1.fetch_add(1, Ordering::SeqCst);
            if self.0 > 1 {
                std::panic::panic_any(Chain(self.0 - 1, Arc::clone(&self.1)));
            }
            panic!("the last level panics");
        }
    }

    fn chain(depth: u32) -> (Payload, Arc<AtomicUsize>) {
        let drops = Arc::new(AtomicUsize::new(0));
        (Box::new(Chain(depth, Arc::clone(&drops))), drops)
    }

    #[test]
    fn drop_payload_drops_every_level_of_a_chain_up_to_the_limit() {
        // A chain of depth d panics d times, the last time with a message:
        // every level and that message are dropped (Miri checks the latter:
        // a leaked message box fails the run).
        for depth in 1..=NESTED_LIMIT as u32 {
            let (payload, drops) = chain(depth);
            drop_payload(payload);
            assert_eq!(
                drops.load(Ordering::SeqCst),
                depth as usize,
                "depth {depth}"
            );
        }
    }

    #[test]
    #[cfg_attr(miri, ignore = "leaks the rest of the chain by design")]
    fn drop_payload_leaks_only_what_is_past_the_limit() {
        for depth in NESTED_LIMIT as u32 + 2..=NESTED_LIMIT as u32 + 3 {
            let (payload, drops) = chain(depth);
            drop_payload(payload);
            // The payload and `NESTED_LIMIT` nested ones are dropped once
            // each; the rest of the chain is forgotten, not dropped (nor
            // dropped twice).
            assert_eq!(
                drops.load(Ordering::SeqCst),
                NESTED_LIMIT + 1,
                "depth {depth}"
            );
        }
    }

    #[test]
    fn drop_quietly_catches_a_panicking_destructor() {
        let drops = Arc::new(AtomicUsize::new(0));
        drop_quietly(Chain(3, Arc::clone(&drops)));
        assert_eq!(drops.load(Ordering::SeqCst), 3);
        drop_quietly(String::from("a destructor that does not panic"));
    }

    #[test]
    fn wake_quietly_catches_the_wake_and_its_payload() {
        struct Bad(Arc<AtomicUsize>);
        impl std::task::Wake for Bad {
            fn wake(self: Arc<Self>) {
                std::panic::panic_any(Chain(2, Arc::clone(&self.0)));
            }
        }
        let drops = Arc::new(AtomicUsize::new(0));
        wake_quietly(Waker::from(Arc::new(Bad(Arc::clone(&drops)))));
        assert_eq!(drops.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn first_panic_raises_the_first_and_drops_the_others() {
        let (later, drops) = chain(2);
        let mut panics = FirstPanic::new();
        assert_eq!(panics.catch(|| 7), Some(7));
        assert!(!panics.caught());
        assert_eq!(panics.catch(|| -> u8 { panic!("first") }), None);
        panics.keep(later);
        assert_eq!(
            drops.load(Ordering::SeqCst),
            2,
            "the later payload was dropped"
        );
        let raised = catch_unwind(AssertUnwindSafe(move || panics.resume())).unwrap_err();
        assert_eq!(raised.downcast_ref::<&str>(), Some(&"first"));
        FirstPanic::new().resume();
    }

    #[test]
    fn an_unresumed_first_panic_is_dropped_quietly() {
        let (payload, drops) = chain(2);
        let mut panics = FirstPanic::new();
        panics.keep(payload);
        drop(panics);
        assert_eq!(drops.load(Ordering::SeqCst), 2);
    }
}
