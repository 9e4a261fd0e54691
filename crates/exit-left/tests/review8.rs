//! Review 8 (hostile review of c8f63f4..HEAD, `sync_core::unwind`).
//!
//! Rule 3 of `sync_core::unwind` says a foreign panic is caught and dropped
//! "while the thread is already unwinding (a second panic would abort the
//! process)". `Stage::close` now runs its wakes through `FirstPanic` and then
//! calls `FirstPanic::resume` unconditionally; `notify` wakes directly. Both
//! are plain `&self` methods, routinely called from a guard's `Drop` (a
//! shutdown guard that closes the stage, a "done" guard that notifies a
//! peer). If such a guard runs while its thread unwinds and a waiter's waker
//! panics, the panic is re-raised inside a destructor during unwinding and
//! the process aborts.
//!
//! Both failed on 7cceecb (SIGABRT) and pass since `close` and `notify`
//! follow `sync_core::unwind` (`FirstPanic::resume` and `unwind::wake` drop
//! the panic while unwinding). The re-entrant `close` test held.

use exit_left::Stage;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll, Wake, Waker};
use testkit::in_child;

fn poll_once<F: Future + Unpin>(fut: &mut F, waker: &Waker) -> Poll<F::Output> {
    Pin::new(fut).poll(&mut Context::from_waker(waker))
}

/// A waker whose `wake` panics (also when the thread is already unwinding:
/// the waker does not know, and `catch_unwind` around it makes that legal).
struct PanicOnWake(AtomicUsize);

impl Wake for PanicOnWake {
    fn wake(self: Arc<Self>) {
        self.0.fetch_add(1, Ordering::SeqCst);
        panic!("review8: wake panics");
    }
}

/// Calls `f` when dropped: a guard a user would write.
struct OnDrop<F: FnMut()>(F);

impl<F: FnMut()> Drop for OnDrop<F> {
    fn drop(&mut self) {
        (self.0)();
    }
}

/// One waiter whose waker panics; `on_exit(&stage)` runs in a guard
/// dropped while the thread unwinds from the user's own panic. That panic
/// must come out unchanged (not an abort), and the waiter must be woken.
fn guard_wakes_while_unwinding(on_exit: impl Fn(&Stage<u32, ()>)) {
    let stage = Stage::new(());
    let mut h = stage.ticket(0u32).unwrap();
    let mut a = stage.ticket(1).unwrap();
    let head = stage.enter(&mut h, None);
    let waker = Arc::new(PanicOnWake(AtomicUsize::new(0)));
    let mut fa = stage.enter_async(&mut a);
    assert!(poll_once(&mut fa, &Waker::from(Arc::clone(&waker))).is_pending());
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let _on_exit = OnDrop(|| on_exit(&stage));
        panic!("review8: the user's own panic");
    }));
    let payload = outcome.unwrap_err();
    assert_eq!(
        payload.downcast_ref::<&str>(),
        Some(&"review8: the user's own panic")
    );
    assert_eq!(waker.0.load(Ordering::SeqCst), 1, "the waiter was woken");
    drop((fa, head));
}

/// REVIEW8 FINDING 1a. `close` from a guard dropped while unwinding: the
/// waiter's waker panics, `close` catches it (`FirstPanic::catch`) and then
/// raised it again (`FirstPanic::resume`) inside the guard's `Drop`, during
/// unwinding: the process aborted. Rule 3 says such a panic is dropped.
#[test]
#[cfg_attr(miri, ignore = "spawns a child process")]
fn review8_close_from_a_drop_while_unwinding_with_a_panicking_waker() {
    in_child(
        "review8_close_from_a_drop_while_unwinding_with_a_panicking_waker",
        || {
            let _w = testkit::watchdog("review8_close_from_a_drop_while_unwinding");
            guard_wakes_while_unwinding(|stage| stage.close());
        },
    );
}

/// REVIEW8 FINDING 1b. The same with `notify` from a guard while unwinding:
/// `notify_inner` called `w.wake()` directly.
#[test]
#[cfg_attr(miri, ignore = "spawns a child process")]
fn review8_notify_from_a_drop_while_unwinding_with_a_panicking_waker() {
    in_child(
        "review8_notify_from_a_drop_while_unwinding_with_a_panicking_waker",
        || {
            let _w = testkit::watchdog("review8_notify_from_a_drop_while_unwinding");
            guard_wakes_while_unwinding(|stage| {
                stage.notify(&1);
            });
        },
    );
}

/// Held (control): re-entrancy from a wake. A waker whose `wake` closes the
/// stage again and notifies the other waiter, while `close` is still
/// walking its list: no deadlock, every waiter woken once.
#[test]
fn review8_close_reentered_from_a_wake() {
    let _w = testkit::watchdog("review8_close_reentered_from_a_wake");
    let stage = Arc::new(Stage::new(()));
    let mut h = stage.ticket(0u32).unwrap();
    let mut a = stage.ticket(1).unwrap();
    let mut b = stage.ticket(2).unwrap();
    let head = stage.enter(&mut h, None);
    let re = testkit::ReentrantWaker::new();
    let s2 = Arc::clone(&stage);
    re.set_on_wake(Box::new(move || {
        s2.close();
        assert!(s2.is_closed());
        s2.notify(&2);
    }));
    let good = testkit::HostileWaker::new(testkit::Misbehaviour::None);
    let mut fa = stage.enter_async(&mut a);
    let mut fb = stage.enter_async(&mut b);
    assert!(poll_once(&mut fa, &re.waker()).is_pending());
    assert!(poll_once(&mut fb, &good.waker()).is_pending());
    stage.close();
    assert_eq!((re.wakes(), good.wakes()), (1, 1));
    drop((fa, fb, head));
}
