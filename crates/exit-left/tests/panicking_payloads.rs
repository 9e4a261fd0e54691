//! Wakers whose panic carries a payload that panics again when dropped
//! (`testkit::PanicsOnDrop`): whatever the stage catches, it must drop
//! without letting a second panic out half-way through its work.
//!
//! Both tests failed on c8f63f4 (the close test: the third waiter was never
//! woken, and the bomb's panic came out instead of the first waker's; the
//! hand-off: the payload's panic came out of the guard's drop) and pass
//! since the stage uses `sync_core::unwind`.

mod common;

use common::{poll_once, watchdog};
use exit_left::{Entry, Stage};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::task::Poll;
use testkit::{HostileWaker, Misbehaviour};

/// `close` wakes every waiter and raises the first waker's panic afterwards;
/// a second panicking waker's payload is dropped there. When that drop
/// panicked, the panic left `close` in the middle of its wake-up loop and
/// every waiter after the second was never woken.
#[test]
fn close_wakes_everyone_when_a_later_wakers_payload_panics_on_drop() {
    let _w = watchdog("close_wakes_everyone_when_a_later_wakers_payload_panics_on_drop");
    let stage = Stage::new(());
    let mut h = stage.ticket(0u32).unwrap();
    let mut a = stage.ticket(1).unwrap();
    let mut b = stage.ticket(2).unwrap();
    let mut c = stage.ticket(3).unwrap();
    let head = stage.enter(&mut h, None);
    let first = HostileWaker::new(Misbehaviour::PanicOnWake);
    let bomb = HostileWaker::new(Misbehaviour::PanicOnWakeWithPanickingPayload(2));
    let good = HostileWaker::new(Misbehaviour::None);
    let mut fa = stage.enter_async(&mut a);
    let mut fb = stage.enter_async(&mut b);
    let mut fc = stage.enter_async(&mut c);
    assert!(poll_once(&mut fa, &first.waker()).is_pending());
    assert!(poll_once(&mut fb, &bomb.waker()).is_pending());
    assert!(poll_once(&mut fc, &good.waker()).is_pending());
    let raised = catch_unwind(AssertUnwindSafe(|| stage.close())).unwrap_err();
    assert_eq!(
        (first.wakes(), bomb.wakes(), good.wakes()),
        (1, 1, 1),
        "(first, bomb, good) wakes: a waiter after the bomb was not woken"
    );
    assert_eq!(
        raised.downcast_ref::<&str>(),
        Some(&"HostileWaker: wake panics"),
        "close raises the first waker's panic, once every waiter is woken"
    );
    for fut in [&mut fa, &mut fb, &mut fc] {
        assert!(matches!(
            poll_once(fut, &good.waker()),
            Poll::Ready(Entry::Closed)
        ));
    }
    drop((fa, fb, fc, head));
}

/// A hand-off wakes the next follower on someone else's behalf, so its
/// waker's panic is caught and dropped; a payload two levels deep must not
/// get out of that drop (it would unwind through the guard's drop).
#[test]
fn a_hand_off_to_a_waker_with_a_deep_panicking_payload_stays_quiet() {
    let _w = watchdog("a_hand_off_to_a_waker_with_a_deep_panicking_payload_stays_quiet");
    let stage = Stage::new(());
    let mut h = stage.ticket(0u32).unwrap();
    let mut a = stage.ticket(1).unwrap();
    let head = stage.enter(&mut h, None);
    let bomb = HostileWaker::new(Misbehaviour::PanicOnWakeWithPanickingPayload(3));
    let mut fa = stage.enter_async(&mut a);
    assert!(poll_once(&mut fa, &bomb.waker()).is_pending());
    let dropped = catch_unwind(AssertUnwindSafe(move || drop(head)));
    assert!(dropped.is_ok(), "a hand-off let a payload's panic out");
    assert_eq!(bomb.wakes(), 1);
    bomb.disarm();
    assert!(matches!(
        poll_once(&mut fa, &bomb.waker()),
        Poll::Ready(Entry::Head(_))
    ));
}
