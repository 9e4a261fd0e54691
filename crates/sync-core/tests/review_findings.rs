//! Hostile review of sync-core (after issue 9's fixes): re-entrant wakers
//! on `AtomicWaker`, nested and unwinding thread parkers. All of these are
//! attacks that held; they add coverage the unit tests lack.
#![cfg(not(loom))]

use std::panic::{AssertUnwindSafe, catch_unwind};

use std::sync::Arc;

use sync_core::{AtomicWaker, with_thread_parker};
use testkit::{HostileWaker, Misbehaviour, ReentrantWaker, watchdog};

/// A clone that wakes the slot it is being registered in (a wake that
/// lands while `register` holds REGISTERING, from the same thread): the
/// wake is delivered to the waker just stored, and the slot ends idle.
#[test]
fn clone_that_wakes_the_slot_being_registered() {
    let _w = watchdog("clone_that_wakes_the_slot_being_registered");
    let slot = Arc::new(AtomicWaker::new());
    let task = ReentrantWaker::new();
    let s2 = Arc::clone(&slot);
    task.set_on_clone(Box::new(move || s2.wake()));
    let w = task.waker();
    slot.register(&w);
    assert_eq!(task.wakes(), 1, "the wake was delivered");
    assert!(slot.take().is_none(), "the woken waker left the slot");
    assert_eq!(task.live(), 1, "only ours is left");
    // Still fully usable.
    slot.register(&w);
    slot.wake();
    assert_eq!(task.wakes(), 2);
}

/// A clone that wakes the slot and then panics: the previously registered
/// waker receives that wake, the panic reaches the caller, the slot is
/// idle and usable afterwards.
#[test]
fn clone_that_wakes_then_panics_delivers_the_wake_to_the_previous_waker() {
    let _w = watchdog("clone_that_wakes_then_panics_delivers_the_wake_to_the_previous_waker");
    let slot = Arc::new(AtomicWaker::new());
    let previous = HostileWaker::new(Misbehaviour::None);
    slot.register(&previous.waker());
    let task = ReentrantWaker::panicking_after_clone_hook();
    let s2 = Arc::clone(&slot);
    task.set_on_clone(Box::new(move || s2.wake()));
    let w = task.waker();
    assert!(catch_unwind(AssertUnwindSafe(|| slot.register(&w))).is_err());
    assert_eq!(previous.wakes(), 1, "the wake reached the registered waker");
    assert_eq!(previous.live(), 0);
    slot.register(&w);
    slot.wake();
    assert_eq!(task.wakes(), 1);
}

/// A clone that itself registers another waker in the same slot (the
/// forbidden concurrent `register`, from one thread): no hang, nobody
/// loses a wake (the inner one is woken at once, the outer one stored).
#[test]
fn clone_that_registers_in_the_same_slot() {
    let _w = watchdog("clone_that_registers_in_the_same_slot");
    let slot = Arc::new(AtomicWaker::new());
    let inner = HostileWaker::new(Misbehaviour::None);
    let outer = ReentrantWaker::new();
    let (s2, inner2) = (Arc::clone(&slot), inner.clone());
    outer.set_on_clone(Box::new(move || s2.register(&inner2.waker())));
    slot.register(&outer.waker());
    assert_eq!(inner.wakes(), 1, "the nested register woke its waker");
    slot.wake();
    assert_eq!(outer.wakes(), 1, "the outer one was stored");
    assert_eq!((inner.live(), outer.live()), (0, 0));
}

/// Wake and drop hooks that re-enter the slot: a woken waker that
/// registers again, a replaced waker whose drop wakes the slot. Both run
/// after the slot was released, so they behave as separate calls.
#[test]
fn wake_and_drop_that_re_enter_the_slot() {
    let _w = watchdog("wake_and_drop_that_re_enter_the_slot");
    let slot = Arc::new(AtomicWaker::new());
    let next = HostileWaker::new(Misbehaviour::None);
    let task = ReentrantWaker::new();
    let (s2, next2) = (Arc::clone(&slot), next.clone());
    task.set_on_wake(Box::new(move || s2.register(&next2.waker())));
    let w = task.waker();
    slot.register(&w);
    drop(w);
    slot.wake();
    assert_eq!(task.wakes(), 1);
    assert_eq!(next.live(), 1, "the re-entrant register stored its clone");

    // Replace `next` by a waker whose stored clone's drop wakes the slot.
    let dropper = ReentrantWaker::new();
    let s3 = Arc::clone(&slot);
    let wd = dropper.waker();
    slot.register(&wd); // replaces `next`
    assert_eq!(next.live(), 0);
    drop(wd);
    dropper.set_on_drop(Box::new(move || s3.wake()));
    let last = HostileWaker::new(Misbehaviour::None);
    slot.register(&last.waker()); // drops dropper's clone, which wakes
    assert_eq!(last.wakes(), 1, "the drop's wake reached the new waker");
    assert!(slot.take().is_none());
}

/// Concurrent wakes against registrations whose clones have new pointers
/// and sometimes panic: every wake after a successful registration reaches
/// a waker, the slot is never stuck, nothing leaks.
#[test]
fn concurrent_wakes_vs_hostile_registrations() {
    let _w = watchdog("concurrent_wakes_vs_hostile_registrations");
    let slot = Arc::new(AtomicWaker::new());
    let good = HostileWaker::new(Misbehaviour::None);
    let bad = HostileWaker::new(Misbehaviour::PanicOnClone);
    let bad_waker = bad.waker();
    for i in 0..testkit::iters(3_000, 30) {
        let before = good.wakes();
        let s2 = Arc::clone(&slot);
        let t = std::thread::spawn(move || s2.wake());
        if i % 3 == 0 {
            let _ = catch_unwind(AssertUnwindSafe(|| slot.register(&bad_waker)));
        }
        slot.register(&good.waker());
        t.join().unwrap();
        if good.wakes() == before {
            slot.wake();
        }
        assert_eq!(good.wakes(), before + 1, "round {i}");
    }
    assert_eq!(good.live(), 0);
}

/// Nested thread parkers survive panics at several depths: a nested wait
/// never gets the parker of a wait that is still active, before or after
/// unwinding, and the outer waiter's token survives.
#[test]
fn nested_parkers_stay_distinct_across_unwinds() {
    let _w = watchdog("nested_parkers_stay_distinct_across_unwinds");
    for _ in 0..3 {
        let _ = catch_unwind(|| {
            with_thread_parker(|_| with_thread_parker(|_| with_thread_parker(|_| panic!("deep"))))
        });
        with_thread_parker(|p0| {
            p0.unparker().unpark();
            with_thread_parker(|p1| {
                assert!(!core::ptr::eq(p0, p1));
                let _ = catch_unwind(AssertUnwindSafe(|| {
                    with_thread_parker(|p2| {
                        assert!(!core::ptr::eq(p2, p1) && !core::ptr::eq(p2, p0));
                        panic!("middle")
                    })
                }));
                with_thread_parker(|p2| {
                    assert!(!core::ptr::eq(p2, p1) && !core::ptr::eq(p2, p0));
                });
            });
            assert!(p0.try_consume(), "outer token survived");
        });
    }
}

/// `block_on` nested in a future polled by `block_on`, where the inner
/// future wakes the *outer* waker and completes only later: the outer
/// wait is woken again afterwards and nothing hangs.
#[test]
fn nested_block_on_waking_the_outer_waker() {
    let _w = watchdog("nested_block_on_waking_the_outer_waker");
    use std::future::Future;
    use std::pin::Pin;
    use std::task::{Context, Poll};
    struct Outer(u32);
    impl Future for Outer {
        type Output = u32;
        fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<u32> {
            if self.0 == 3 {
                return Poll::Ready(3);
            }
            let outer = cx.waker().clone();
            // A nested block_on that wakes the outer waker from inside.
            sync_core::future::block_on(core::future::poll_fn(|_| {
                outer.wake_by_ref();
                Poll::Ready(())
            }));
            self.0 += 1;
            Poll::Pending
        }
    }
    assert_eq!(sync_core::future::block_on(Outer(0)), 3);
}
