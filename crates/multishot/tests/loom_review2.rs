//! Second hostile review (after af18134: the departing receiver empties the
//! block before `RX_GONE`; `VALUE | RX_GONE` means "a sender reads its value
//! back"). Loom models of the interleavings the review checked that the
//! models in `loom.rs` did not cover, run by `cargo xtask loom -p multishot`.
//! In a normal build each model runs once, as a plain test.
//!
//! Payloads are loom `Arc`s (double drop panics, a leak is reported), and
//! the block carries a loom-tracked canary (a leaked block fails), and
//! `Inner::free` writes every cell first (an access not ordered before the
//! free fails as a causality violation).

use core::future::Future;
use core::pin::pin;
use core::task::{Context, Poll, Waker};
use multishot::{Receiver, TryRecvError, channel};
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

/// As in `loom.rs`: the receiver registers `waker`, a thread sends "one",
/// and the receiver takes it with `try_recv`, so that sender may still be
/// between its publish and its release of the waker slot.
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
    model(|| {
        let (mut r, t1) = received_while_sender_may_hold_slot(Waker::noop());
        let mut s2 = r.sender().unwrap();
        let t2 = thread::spawn(move || {
            let mut cx = Context::from_waker(Waker::noop());
            let _ = pin!(s2.closed()).poll(&mut cx);
            if let Err(back) = s2.send(payload("two")) {
                assert_eq!(*back.into_inner(), "two");
            }
        });
        drop(r);
        t1.join().unwrap();
        t2.join().unwrap();
    });
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
