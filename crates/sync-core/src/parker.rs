//! A thread parker whose wake-up never touches the woken side's memory.
//!
//! # How it works
//!
//! A [`Parker`] and its [`Unparker`]s share one reference-counted block
//! holding a [`WakeToken`] (the three-state word: no token, owner parked,
//! token waiting) and a handle to the parked thread. `unpark` leaves the
//! token and, only if the owner was parked, calls `Thread::unpark` (a futex
//! wake on Linux).
//!
//! The point of the design is what `unpark` does *not* touch: every byte it
//! reads or writes lives in that shared block, which the `Unparker` keeps
//! alive by owning a reference. A waiter whose "done" flag lives on its own
//! stack may therefore see the flag, return, and free the frame while the
//! waking thread is still inside `unpark`: the waker's last access is to
//! memory it co-owns, never to the waiter's frame. (Waking a thread through a
//! raw pointer to a flag or condvar on the waiter's stack is exactly the
//! use-after-free this type exists to rule out.)
//!
//! A notification is a token: one `unpark` before `park` makes that `park`
//! return at once; several collapse into one. `park` may also return
//! spuriously, so callers always re-check their condition in a loop.

use crate::WakeToken;
use crate::sync::Arc;
use crate::thread::{self, Thread};
use core::marker::PhantomData;
use core::task::Waker;
use std::time::Instant;

struct Inner {
    token: WakeToken,
    thread: Thread,
}

/// The waiting half: parks the thread that created it.
///
/// `!Send`: it is bound to its creating thread, since the `Unparker` wakes
/// that thread. Use [`with_thread_parker`] to borrow a per-thread one instead
/// of allocating.
pub struct Parker {
    inner: Arc<Inner>,
    waker: Waker,
    _bound_to_thread: PhantomData<*const ()>,
}

/// The waking half: `Send + Sync + Clone`; wakes its [`Parker`].
#[derive(Clone)]
pub struct Unparker {
    inner: Arc<Inner>,
}

impl Parker {
    /// A parker for the current thread. Allocates twice (the shared block
    /// and the `Waker` that wraps an `Unparker`).
    pub fn new() -> Self {
        let inner = Arc::new(Inner {
            token: WakeToken::new(),
            thread: thread::current(),
        });
        let waker = Waker::from(std::sync::Arc::new(Unparker {
            inner: Arc::clone(&inner),
        }));
        Self {
            inner,
            waker,
            _bound_to_thread: PhantomData,
        }
    }

    /// A handle that wakes this parker. Does not allocate (one reference
    /// count increment).
    pub fn unparker(&self) -> Unparker {
        Unparker {
            inner: Arc::clone(&self.inner),
        }
    }

    /// A `Waker` whose `wake` unparks this parker. Does not allocate (one
    /// reference count increment).
    pub fn waker(&self) -> Waker {
        self.waker.clone()
    }

    /// Consumes a pending notification without blocking; `true` if there
    /// was one.
    pub fn try_consume(&self) -> bool {
        self.inner.token.try_consume()
    }

    /// Whether a notification is pending, without consuming it: one load.
    /// Lets a waiter that spins before parking poll with plain loads and
    /// leave the word to the unparker's write until there is something to
    /// consume (then [`try_consume`](Self::try_consume)).
    pub fn is_notified(&self) -> bool {
        self.inner.token.is_notified()
    }

    /// Blocks until notified (or spuriously). Returns at once if a
    /// notification is pending, consuming it.
    pub fn park(&self) {
        if self.try_consume() || !self.inner.token.begin_park() {
            return;
        }
        loop {
            thread::park();
            if self.try_consume() {
                return;
            }
        }
    }

    /// Blocks until notified or until `deadline`; `true` if notified.
    ///
    /// Under loom there is no clock: this checks for a notification, yields
    /// once, checks again and reports a time-out if there still is none, so
    /// a model explores both "woken" and "timed out".
    pub fn park_deadline(&self, deadline: Instant) -> bool {
        if self.try_consume() {
            return true;
        }
        #[cfg(loom)]
        {
            let _ = deadline;
            thread::yield_now();
            self.try_consume()
        }
        #[cfg(not(loom))]
        {
            if !self.inner.token.begin_park() {
                return true;
            }
            loop {
                let now = Instant::now();
                if now >= deadline {
                    // A notification that raced with the time-out counts.
                    return self.inner.token.end_park();
                }
                std::thread::park_timeout(deadline - now);
                if self.try_consume() {
                    return true;
                }
            }
        }
    }
}

impl Default for Parker {
    fn default() -> Self {
        Self::new()
    }
}

impl Unparker {
    /// Wakes the parker (or makes its next `park` return at once).
    ///
    /// Lock-free; at most one system call. Touches only the block it
    /// co-owns, never the waiter's memory.
    pub fn unpark(&self) {
        if self.inner.token.notify() {
            self.inner.thread.unpark();
        }
    }
}

impl std::task::Wake for Unparker {
    fn wake(self: std::sync::Arc<Self>) {
        self.unpark();
    }
    fn wake_by_ref(self: &std::sync::Arc<Self>) {
        self.unpark();
    }
}

impl core::fmt::Debug for Parker {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Parker")
            .field("notified", &self.inner.token.is_notified())
            .finish()
    }
}

impl core::fmt::Debug for Unparker {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Unparker").finish_non_exhaustive()
    }
}

crate::thread_local! {
    /// Parkers not lent out right now; one per nesting depth reached so far.
    #[allow(clippy::missing_const_for_thread_local)] // loom's macro takes no `const {}`
    static IDLE_PARKERS: core::cell::RefCell<Vec<Parker>> =
        core::cell::RefCell::new(Vec::new());
}

/// Runs `f` with one of this thread's cached [`Parker`]s, creating it on
/// first use.
///
/// Lets blocking calls wait without allocating. A cached parker is lent to
/// one wait at a time: a *nested* wait on the same thread (a blocking call
/// made from inside a future polled by a `block_on`, say) gets a second
/// parker for its duration. Sharing one would lose wake-ups: the nested wait
/// could consume a token meant for the outer waiter, which then parks with
/// nothing left to wake it.
///
/// Allocates only the first time a thread waits at a given nesting depth
/// (a parker is two small allocations); after that, waits at that depth on
/// that thread allocate nothing. A parker may come back holding a stale
/// token from an earlier wait's late wake-up: that is one spurious return
/// from `park`, which every caller's re-check loop absorbs. During thread
/// teardown (the thread-local already gone) each call makes a fresh parker.
pub fn with_thread_parker<R>(f: impl FnOnce(&Parker) -> R) -> R {
    /// Gives the parker back to the cache, also when `f` unwinds.
    struct Lend(Option<Parker>);
    impl Drop for Lend {
        fn drop(&mut self) {
            if let Some(parker) = self.0.take() {
                // During teardown there is no cache left: just drop it.
                let _ = IDLE_PARKERS.try_with(|idle| idle.borrow_mut().push(parker));
            }
        }
    }
    let cached = IDLE_PARKERS
        .try_with(|idle| idle.borrow_mut().pop())
        .ok()
        .flatten();
    let lend = Lend(Some(cached.unwrap_or_default()));
    f(lend
        .0
        .as_ref()
        .unwrap_or_else(|| unreachable!("lent parker taken early")))
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::sync::atomic::Ordering;
    use std::time::Duration;

    static_assertions::assert_impl_all!(Unparker: Send, Sync, Clone);
    static_assertions::assert_not_impl_any!(Parker: Send, Sync);

    #[test]
    fn notification_before_park_is_a_token() {
        let _w = testkit::watchdog("notification_before_park_is_a_token");
        let p = Parker::new();
        p.unparker().unpark();
        p.unparker().unpark();
        p.park(); // consumes the single token
        assert!(!p.try_consume(), "two unparks collapse into one token");
    }

    #[test]
    fn park_deadline_times_out_without_a_notification() {
        let _w = testkit::watchdog("park_deadline_times_out_without_a_notification");
        let p = Parker::new();
        assert!(!p.park_deadline(Instant::now() + Duration::from_millis(5)));
        p.unparker().unpark();
        assert!(p.park_deadline(Instant::now() + Duration::from_secs(60)));
    }

    #[test]
    fn is_notified_peeks_without_consuming() {
        let _w = testkit::watchdog("is_notified_peeks_without_consuming");
        let p = Parker::new();
        assert!(!p.is_notified());
        p.unparker().unpark();
        assert!(p.is_notified());
        assert!(p.is_notified(), "peeking does not consume");
        assert!(p.try_consume());
        assert!(!p.is_notified());
    }

    #[test]
    fn waker_unparks() {
        let _w = testkit::watchdog("waker_unparks");
        let p = Parker::new();
        p.waker().wake();
        assert!(p.try_consume());
        p.waker().wake_by_ref();
        assert!(p.try_consume());
    }

    /// The waiter's flag lives in a `Box` the waiter frees the moment it sees
    /// the flag; the waking thread keeps calling `unpark` after setting it.
    /// Under Miri any access to the freed box would be reported.
    #[test]
    fn waiter_may_free_its_frame_as_soon_as_it_sees_the_flag() {
        let _w = testkit::watchdog("waiter_may_free_its_frame_as_soon_as_it_sees_the_flag");
        use std::sync::atomic::{AtomicBool, AtomicPtr};
        for _ in 0..if cfg!(miri) { 5 } else { 200 } {
            let p = Parker::new();
            let u = p.unparker();
            let frame = Box::into_raw(Box::new(AtomicBool::new(false)));
            let shared = std::sync::Arc::new(AtomicPtr::new(frame));
            let shared2 = std::sync::Arc::clone(&shared);
            let t = std::thread::spawn(move || {
                let flag = shared2.load(Ordering::Acquire);
                // SAFETY: the waiter frees the box only after it observes
                // `true`, which is stored by this very line; this is the last
                // access to the box from this thread.
                unsafe { (*flag).store(true, Ordering::Release) };
                u.unpark(); // must touch only the parker's shared block
            });
            loop {
                // SAFETY: only this thread frees `frame`, below, after which
                // the loop ends.
                if unsafe { (*frame).load(Ordering::Acquire) } {
                    // SAFETY: created by Box::into_raw above; the other thread
                    // does not touch it after storing `true`.
                    drop(unsafe { Box::from_raw(frame) });
                    break;
                }
                p.park();
            }
            t.join().unwrap();
        }
    }

    /// The nested parker is cached too: a `recv_blocking` inside a
    /// `block_on` does not allocate on every call.
    #[test]
    fn nested_parkers_are_reused() {
        let _w = testkit::watchdog("nested_parkers_are_reused");
        let first = with_thread_parker(|_| with_thread_parker(|p| Arc::as_ptr(&p.inner)));
        let again = with_thread_parker(|_| with_thread_parker(|p| Arc::as_ptr(&p.inner)));
        assert_eq!(first, again);
    }

    #[test]
    fn thread_parker_is_reused() {
        let _w = testkit::watchdog("thread_parker_is_reused");
        let a = with_thread_parker(|p| Arc::as_ptr(&p.inner));
        let b = with_thread_parker(|p| Arc::as_ptr(&p.inner));
        assert_eq!(a, b);
    }

    /// A nested wait must not consume the outer waiter's token.
    #[test]
    fn nested_wait_does_not_steal_the_outer_token() {
        let _w = testkit::watchdog("nested_wait_does_not_steal_the_outer_token");
        with_thread_parker(|outer| {
            outer.unparker().unpark(); // a wake for the outer waiter
            with_thread_parker(|inner| {
                assert!(
                    !core::ptr::eq(inner, outer),
                    "nested wait got its own parker"
                );
                inner.unparker().unpark();
                inner.park();
            });
            assert!(
                outer.try_consume(),
                "the outer token survived the nested wait"
            );
        });
        // After an unwinding nested user, the cached parker is free again.
        let _ = std::panic::catch_unwind(|| with_thread_parker(|_| panic!("boom")));
        let a = with_thread_parker(|p| Arc::as_ptr(&p.inner));
        let b = with_thread_parker(|p| Arc::as_ptr(&p.inner));
        assert_eq!(a, b);
    }
}
