//! Loom models of every race in the protocol (`cargo xtask loom -p multishot`).
//! In a normal build each model runs once, as a plain test.
//!
//! Payloads are `Arc`s (loom's, under loom): a value dropped twice panics on
//! the reference count, and one never dropped is reported as a leaked `Arc`.
//! The shared block carries a loom-tracked canary too, so a leaked block
//! fails the model.

use core::future::Future;
use core::pin::pin;
use core::task::{Context, Poll, Waker};
use multishot::{Receiver, RecvError, RecvTimeoutError, TryRecvError, channel};
use std::time::Duration;
use sync_core::sync::Arc;
use sync_core::{Parker, future::block_on, model, thread};

type Payload = Arc<String>;

fn payload(s: &str) -> Payload {
    Arc::new(s.to_string())
}

/// Polls `fut` with `waker` until ready, parking `parker` (whose waker must
/// be `waker`) in between. Loom reports a deadlock if a wake-up is lost.
fn drive<F: Future>(fut: F, parker: &Parker) -> F::Output {
    let waker = parker.waker();
    let mut fut = pin!(fut);
    let mut cx = Context::from_waker(&waker);
    loop {
        if let Poll::Ready(v) = fut.as_mut().poll(&mut cx) {
            return v;
        }
        parker.park();
    }
}

/// The opening of every "an earlier sender may still hold the waker slot"
/// model: the receiver registers `waker`, a thread sends "one", and the
/// receiver takes the value with `try_recv` instead of waiting for the wake,
/// so the sender may still be between its publish and its release. Returns
/// the receiver and that sender's thread.
fn received_while_sender_may_hold_slot(
    waker: &Waker,
) -> (Receiver<Payload>, thread::JoinHandle<()>) {
    let (s, mut r) = channel::<Payload>();
    let mut cx = Context::from_waker(waker);
    assert!(pin!(r.recv()).poll(&mut cx).is_pending());
    let t1 = thread::spawn(move || s.send(payload("one")).unwrap());
    let one = loop {
        match r.try_recv() {
            Ok(v) => break v,
            Err(TryRecvError::Empty) => thread::yield_now(),
            Err(TryRecvError::Closed) => panic!("closed without value"),
        }
    };
    assert_eq!(*one, "one");
    (r, t1)
}

#[test]
fn send_vs_receiver_drop() {
    let _w = testkit::watchdog("send_vs_receiver_drop");
    model(|| {
        let (s, r) = channel::<Payload>();
        let t = thread::spawn(move || match s.send(payload("v")) {
            Ok(()) => None,
            Err(e) => Some(e.into_inner()),
        });
        drop(r);
        if let Some(back) = t.join().unwrap() {
            assert_eq!(*back, "v");
        }
    });
}

#[test]
fn send_vs_poll_with_waker_change() {
    let _w = testkit::watchdog("send_vs_poll_with_waker_change");
    model(|| {
        let (s, mut r) = channel::<Payload>();
        let (first, second) = (Parker::new(), Parker::new());
        let t = thread::spawn(move || s.send(payload("v")).unwrap());
        let first_waker = first.waker();
        let mut cx = Context::from_waker(&first_waker);
        let polled = pin!(r.recv()).poll(&mut cx);
        let got = match polled {
            Poll::Ready(v) => v,
            // Registered with the first waker; now the task moved: the second
            // waker must be the one that is woken.
            Poll::Pending => drive(r.recv(), &second),
        };
        assert_eq!(*got.unwrap(), "v");
        t.join().unwrap();
    });
}

#[test]
fn same_waker_fast_path_vs_send() {
    let _w = testkit::watchdog("same_waker_fast_path_vs_send");
    model(|| {
        let (s, mut r) = channel::<Payload>();
        let parker = Parker::new();
        let waker = parker.waker();
        let mut cx = Context::from_waker(&waker);
        // Register before the sender exists on another thread...
        assert!(pin!(r.recv()).poll(&mut cx).is_pending());
        let t = thread::spawn(move || s.send(payload("v")).unwrap());
        // ...then re-poll with the same waker while the send races: either
        // the fast path says Pending (and the wake must come) or the value is
        // there.
        let polled = pin!(r.recv()).poll(&mut cx);
        let got = match polled {
            Poll::Ready(v) => v,
            Poll::Pending => drive(r.recv(), &parker),
        };
        assert_eq!(*got.unwrap(), "v");
        t.join().unwrap();
    });
}

/// The receiver gets the value (from a spurious poll, without waiting for
/// the wake) and recycles while the old sender may still be between its two
/// RMWs, then runs a second round while that hold may still be pending.
#[test]
fn recycle_while_old_sender_is_inside_send() {
    let _w = testkit::watchdog("recycle_while_old_sender_is_inside_send");
    model(|| {
        let parker = Parker::new();
        second_round_while_first_sender_may_hold_slot(&parker, &parker);
    });
}

/// The first round is received while its sender may still hold the waker
/// slot with `holding`'s waker; the receiver recycles and receives the
/// second round driven by `receiving` (the same task, or another one).
fn second_round_while_first_sender_may_hold_slot(holding: &Parker, receiving: &Parker) {
    let (mut r, t1) = received_while_sender_may_hold_slot(&holding.waker());
    let s2 = r
        .sender()
        .expect("recycling after a received value always succeeds");
    let t2 = thread::spawn(move || s2.send(payload("two")).unwrap());
    let two = drive(r.recv(), receiving);
    assert_eq!(*two.unwrap(), "two");
    t1.join().unwrap();
    t2.join().unwrap();
}

/// The first round's sender may still hold the waker slot across two
/// recycles: the second round ends without a value (its sender is dropped),
/// the receiver recycles again, and the third round must still be received
/// and woken, with the slot released exactly once and the block freed once.
#[test]
fn two_recycles_while_first_sender_holds_slot() {
    let _w = testkit::watchdog("two_recycles_while_first_sender_holds_slot");
    model(|| {
        let parker = Parker::new();
        let (mut r, t1) = received_while_sender_may_hold_slot(&parker.waker());
        drop(r.sender().expect("first recycle"));
        assert_eq!(r.try_recv().err(), Some(TryRecvError::Closed));
        let s3 = r.sender().expect("second recycle");
        let t3 = thread::spawn(move || s3.send(payload("three")).unwrap());
        let three = drive(r.recv(), &parker);
        assert_eq!(*three.unwrap(), "three");
        t1.join().unwrap();
        t3.join().unwrap();
    });
}

#[test]
fn several_recycles_in_a_row() {
    let _w = testkit::watchdog("several_recycles_in_a_row");
    model(|| {
        let (s, mut r) = channel::<Payload>();
        let t = thread::spawn(move || s.send(payload("0")).unwrap());
        assert_eq!(*r.recv_blocking().unwrap(), "0");
        t.join().unwrap();
        for round in 1..3 {
            let s = r.sender().unwrap();
            let t = thread::spawn(move || {
                if round == 2 {
                    drop(s); // the last round ends without a value
                } else {
                    s.send(payload("1")).unwrap();
                }
            });
            let got = r.recv_blocking();
            if round == 2 {
                assert_eq!(got.err(), Some(RecvError {}));
            } else {
                assert_eq!(*got.unwrap(), "1");
            }
            t.join().unwrap();
        }
    });
}

#[test]
fn future_dropped_mid_wait() {
    let _w = testkit::watchdog("future_dropped_mid_wait");
    model(|| {
        let (s, mut r) = channel::<Payload>();
        let parker = Parker::new();
        let t = thread::spawn(move || s.send(payload("kept")).unwrap());
        {
            let waker = parker.waker();
            let mut cx = Context::from_waker(&waker);
            let mut fut = pin!(r.recv());
            if let Poll::Ready(v) = fut.as_mut().poll(&mut cx) {
                assert_eq!(*v.unwrap(), "kept");
                t.join().unwrap();
                return;
            }
            // dropped here, registered and pending: cancel must lose nothing
        }
        let got = block_on(r.recv());
        assert_eq!(*got.unwrap(), "kept");
        t.join().unwrap();
    });
}

#[test]
fn sender_dropped_without_sending() {
    let _w = testkit::watchdog("sender_dropped_without_sending");
    model(|| {
        let (s, mut r) = channel::<Payload>();
        let t = thread::spawn(move || drop(s));
        assert_eq!(block_on(r.recv()).err(), Some(RecvError {}));
        t.join().unwrap();
        // The next round works as usual.
        let s = r.sender().unwrap();
        s.send(payload("after")).unwrap();
        assert_eq!(*r.try_recv().unwrap(), "after");
    });
}

#[test]
fn closed_vs_receiver_drop() {
    let _w = testkit::watchdog("closed_vs_receiver_drop");
    model(|| {
        let (mut s, r) = channel::<Payload>();
        let t = thread::spawn(move || drop(r));
        block_on(s.closed());
        assert!(s.is_closed());
        let back = s.send(payload("nobody")).unwrap_err().into_inner();
        assert_eq!(*back, "nobody");
        t.join().unwrap();
    });
}

/// `closed()` registered, then the sender sends instead while the receiver
/// drops: the tx waker slot is reclaimed or handed over, never both.
#[test]
fn closed_registered_then_send_vs_receiver_drop() {
    let _w = testkit::watchdog("closed_registered_then_send_vs_receiver_drop");
    model(|| {
        let (mut s, r) = channel::<Payload>();
        let waker = Waker::noop();
        let mut cx = Context::from_waker(waker);
        let _ = pin!(s.closed()).poll(&mut cx);
        let t = thread::spawn(move || drop(r));
        let _ = s.send(payload("v"));
        t.join().unwrap();
    });
}

#[test]
fn blocking_receive_with_timeout_vs_send() {
    let _w = testkit::watchdog("blocking_receive_with_timeout_vs_send");
    model(|| {
        let (s, mut r) = channel::<Payload>();
        let t = thread::spawn(move || s.send(payload("late")).unwrap());
        let got = match r.recv_timeout(Duration::ZERO) {
            Ok(v) => v,
            // A value that arrives after the time-out is kept.
            Err(RecvTimeoutError::Timeout) => r.recv_blocking().unwrap(),
            Err(RecvTimeoutError::Closed) => panic!("closed without value"),
        };
        assert_eq!(*got, "late");
        t.join().unwrap();
    });
}

/// The receiver is dropped while an earlier round's sender may still hold
/// the waker slot, and the current round's sender races both.
#[test]
fn receiver_drop_while_old_sender_holds_slot() {
    let _w = testkit::watchdog("receiver_drop_while_old_sender_holds_slot");
    model(|| send_vs_receiver_drop_while_old_sender_holds_slot(false));
}

/// Opening shared by the "receiver drop while an earlier sender holds the
/// slot" models: the second round's sender (after polling `closed()` once,
/// if asked) sends while the receiver drops.
fn send_vs_receiver_drop_while_old_sender_holds_slot(poll_closed_first: bool) {
    let (mut r, t1) = received_while_sender_may_hold_slot(Waker::noop());
    let mut s2 = r.sender().unwrap();
    let t2 = thread::spawn(move || {
        if poll_closed_first {
            let mut cx = Context::from_waker(Waker::noop());
            let _ = pin!(s2.closed()).poll(&mut cx);
        }
        // Either delivered (and dropped with the receiver) or given back.
        if let Err(back) = s2.send(payload("two")) {
            assert_eq!(*back.into_inner(), "two");
        }
    });
    drop(r);
    t1.join().unwrap();
    t2.join().unwrap();
}

/// The receiver registered its waker, then is dropped while the sender
/// publishes and takes the waker out: exactly one of them frees the block,
/// and the value is dropped exactly once (by the receiver or returned to the
/// sender).
#[test]
fn receiver_drop_while_sender_takes_waker() {
    let _w = testkit::watchdog("receiver_drop_while_sender_takes_waker");
    model(|| {
        let (s, mut r) = channel::<Payload>();
        let waker = Waker::noop();
        let mut cx = Context::from_waker(waker);
        assert!(pin!(r.recv()).poll(&mut cx).is_pending());
        let t = thread::spawn(move || {
            let _ = s.send(payload("v"));
        });
        drop(r);
        t.join().unwrap();
    });
}

/// The departing receiver takes the new round's `closed()` waker while an
/// earlier sender may still hold the receiver's waker slot and the new
/// sender races both: the free decision is three-way (the earlier sender's
/// release, the new sender's finish, the receiver's release of `tx_waker`),
/// and exactly one of them must free the block.
#[test]
fn receiver_drop_with_closed_waiter_while_old_sender_holds_slot() {
    let _w = testkit::watchdog("receiver_drop_with_closed_waiter_while_old_sender_holds_slot");
    model(|| {
        let (mut r, t1) = received_while_sender_may_hold_slot(Waker::noop());
        let mut cx = Context::from_waker(Waker::noop());
        let mut s2 = r.sender().unwrap();
        // Registers the new sender's `closed()` waker (TX_WAKER).
        assert!(pin!(s2.closed()).poll(&mut cx).is_pending());
        let t2 = thread::spawn(move || {
            let _ = s2.send(payload("two"));
        });
        drop(r);
        t1.join().unwrap();
        t2.join().unwrap();
    });
}

/// A poll from a *different* task (another parker's waker) while an
/// earlier sender holds the slot with the first task's waker: the holder's
/// wake goes to the first task, so this poll must not wait for it (it asks
/// to be polled again instead); the new round's value still arrives.
#[test]
fn another_tasks_poll_during_a_hold_is_not_lost() {
    let _w = testkit::watchdog("another_tasks_poll_during_a_hold_is_not_lost");
    model(|| {
        second_round_while_first_sender_may_hold_slot(&Parker::new(), &Parker::new());
    });
}

// ---------------------------------------------------------------------------
// Added by the second hostile review (after the departing receiver was made
// to empty the block before `RX_GONE`, and `VALUE | RX_GONE` came to mean "a
// sender reads its value back"): interleavings the models above missed.

/// The receiver is waiting (this round's registration) *and* the sender
/// waits in `closed()`; then the sender sends while the receiver drops. The
/// departing receiver's loop must win its registration back (first CAS) and
/// then take `tx_waker` (second RMW), while the send reclaims `tx_waker` or
/// finds it taken and, if the receiver left between its look and its
/// publish, reads its value back. One free, value dropped once.
#[test]
fn receiver_waiting_and_sender_in_closed_then_send_vs_receiver_drop() {
    let _w = testkit::watchdog("receiver_waiting_and_sender_in_closed_then_send_vs_receiver_drop");
    model(|| {
        let (mut s, mut r) = channel::<Payload>();
        let mut cx = Context::from_waker(Waker::noop());
        assert!(pin!(r.recv()).poll(&mut cx).is_pending());
        assert!(pin!(s.closed()).poll(&mut cx).is_pending());
        let t = thread::spawn(move || {
            if let Err(back) = s.send(payload("v")) {
                assert_eq!(*back.into_inner(), "v");
            }
        });
        drop(r);
        t.join().unwrap();
    });
}

/// The receiver is waiting; the sender is dropped without a value while
/// the receiver drops: the sender may take the waker over (and then frees on
/// its release) or the receiver wins it back first.
#[test]
fn receiver_waiting_vs_sender_dropped_vs_receiver_drop() {
    let _w = testkit::watchdog("receiver_waiting_vs_sender_dropped_vs_receiver_drop");
    model(|| {
        let (s, mut r) = channel::<Payload>();
        let mut cx = Context::from_waker(Waker::noop());
        assert!(pin!(r.recv()).poll(&mut cx).is_pending());
        let t = thread::spawn(move || drop(s));
        drop(r);
        t.join().unwrap();
    });
}

/// An earlier sender may hold the waker slot; the new round's value is
/// delivered (the send happens before the drop), and the departing
/// receiver moves the unread value out before `RX_GONE` while the holder's
/// release races it (the first use-after-free fixed by af18134).
#[test]
fn unread_value_dropped_by_receiver_while_old_sender_holds_slot() {
    let _w = testkit::watchdog("unread_value_dropped_by_receiver_while_old_sender_holds_slot");
    model(|| {
        let (mut r, t1) = received_while_sender_may_hold_slot(Waker::noop());
        let s2 = r.sender().unwrap();
        s2.send(payload("two")).unwrap();
        let t2 = thread::spawn(move || drop(r));
        t1.join().unwrap();
        t2.join().unwrap();
    });
}

/// An earlier sender may hold the waker slot; the new sender polls
/// `closed()` (registering `TX_WAKER`, or finding the receiver gone, or
/// undoing its registration) and then sends, while the receiver drops: four
/// parties' last RMWs (holder's release, receiver's departure and release
/// of `tx_waker`, the send and its read-back) decide one free.
#[test]
fn closed_then_send_vs_receiver_drop_while_old_sender_holds_slot() {
    let _w = testkit::watchdog("closed_then_send_vs_receiver_drop_while_old_sender_holds_slot");
    model(|| send_vs_receiver_drop_while_old_sender_holds_slot(true));
}

/// Recycling with `sender_with_unread` while an earlier sender may hold the
/// slot and the current round has an unread value: the recycle's add (clear
/// `VALUE | TX_DONE`, keep `HOLD`) commutes with the release; the value
/// comes back once and the next round is received and woken.
#[test]
fn sender_with_unread_while_old_sender_holds_slot() {
    let _w = testkit::watchdog("sender_with_unread_while_old_sender_holds_slot");
    model(|| {
        let parker = Parker::new();
        let (mut r, t1) = received_while_sender_may_hold_slot(&parker.waker());
        r.sender().unwrap().send(payload("two")).unwrap();
        let (s3, unread) = r.sender_with_unread().expect("the round is over");
        assert_eq!(*unread.expect("two was never received"), "two");
        assert!(!r.has_value());
        let t3 = thread::spawn(move || s3.send(payload("three")).unwrap());
        let three = drive(r.recv(), &parker);
        assert_eq!(*three.unwrap(), "three");
        t1.join().unwrap();
        t3.join().unwrap();
    });
}

/// `closed()` completes when the receiver drops while an earlier sender may
/// still hold the receiver's slot; the send afterwards gets its value back
/// (kept out of the block: the send saw `RX_GONE` first).
#[test]
fn closed_wakes_while_old_sender_holds_slot() {
    let _w = testkit::watchdog("closed_wakes_while_old_sender_holds_slot");
    model(|| {
        let (mut r, t1) = received_while_sender_may_hold_slot(Waker::noop());
        let mut s2 = r.sender().unwrap();
        let t2 = thread::spawn(move || drop(r));
        block_on(s2.closed());
        let back = s2.send(payload("two")).unwrap_err().into_inner();
        assert_eq!(*back, "two");
        t1.join().unwrap();
        t2.join().unwrap();
    });
}
