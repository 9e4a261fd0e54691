//! Hostile callers: wakers whose clones have new data pointers, wakers
//! borrowed from an executor's "current task" slot, wakers and payloads
//! whose destructors panic. Whatever they do, no wake-up and no value is
//! lost, and no wait hangs (every test runs under a watchdog).

use core::future::Future;
use core::mem::ManuallyDrop;
use core::pin::pin;
use core::task::{Context, Poll, RawWaker, RawWakerVTable, Waker};
use multishot::{Receiver, channel};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, Mutex};
use testkit::{HostileWaker, Misbehaviour, watchdog};

fn poll_once<F: Future>(fut: F, waker: &Waker) -> Poll<F::Output> {
    let mut cx = Context::from_waker(waker);
    pin!(fut).poll(&mut cx)
}

/// An executor's "current task" slot: the waker handed to `poll` is a
/// borrow of the slot itself (same data pointer for every task), and its
/// `clone` makes a waker for whichever task is current at that moment.
struct CurrentTaskSlot {
    current: Mutex<Option<HostileWaker>>,
}

static SLOT_VTABLE: RawWakerVTable =
    RawWakerVTable::new(slot_clone, slot_wake, slot_wake_by_ref, slot_drop);

unsafe fn slot_clone(data: *const ()) -> RawWaker {
    // SAFETY: `data` is the slot, which outlives every waker borrowed from it.
    let slot = unsafe { &*data.cast::<CurrentTaskSlot>() };
    let task = slot
        .current
        .lock()
        .unwrap()
        .clone()
        .expect("no current task");
    // The clone is a waker of the current task, with its own data pointer.
    let waker = ManuallyDrop::new(task.waker());
    RawWaker::new(waker.data(), waker.vtable())
}
unsafe fn slot_wake(_: *const ()) {
    unreachable!("the slot's waker is only ever borrowed and cloned")
}
unsafe fn slot_wake_by_ref(_: *const ()) {
    unreachable!("the slot's waker is only ever borrowed and cloned")
}
unsafe fn slot_drop(_: *const ()) {}

impl CurrentTaskSlot {
    /// The waker an executor lends to `poll` while `task` is current.
    fn lend(&self, task: &HostileWaker) -> ManuallyDrop<Waker> {
        *self.current.lock().unwrap() = Some(task.clone());
        let raw = RawWaker::new((&raw const *self).cast(), &SLOT_VTABLE);
        // SAFETY: the vtable honours the contract for as long as the slot
        // lives; the waker is never dropped as an owner (ManuallyDrop).
        ManuallyDrop::new(unsafe { Waker::from_raw(raw) })
    }
}

/// The receive future moves from task A to task B (say, after a `select!`
/// in A was cancelled). Both polls see the same borrowed data pointer; the
/// first stored a waker of A. The second poll must register B, or B is
/// never woken.
#[test]
fn a_poll_from_another_task_through_the_same_slot_registers_that_task() {
    let _w = watchdog("a_poll_from_another_task_through_the_same_slot_registers_that_task");
    let slot = Box::new(CurrentTaskSlot {
        current: Mutex::new(None),
    });
    let (a, b) = (
        HostileWaker::new(Misbehaviour::None),
        HostileWaker::new(Misbehaviour::None),
    );
    let (s, mut r) = channel::<u32>();
    assert!(poll_once(r.recv(), &slot.lend(&a)).is_pending());
    assert!(poll_once(r.recv(), &slot.lend(&b)).is_pending());
    s.send(7).unwrap();
    assert_eq!(b.wakes(), 1, "the task that polled last is woken");
    assert_eq!(a.wakes(), 0);
    assert_eq!(r.try_recv(), Ok(7));
    drop(r);
    assert_eq!((a.live(), b.live()), (0, 0), "no waker leaked");
}

/// Clones with new data pointers: after the borrowed waker is freed, its
/// address may be reused by another task's waker. Each poll must register
/// its own task; every replaced clone is dropped.
#[test]
fn clones_with_new_pointers_and_reused_addresses_lose_no_wake() {
    let _w = watchdog("clones_with_new_pointers_and_reused_addresses_lose_no_wake");
    for _ in 0..testkit::iters(200, 20) {
        let (s, mut r) = channel::<u32>();
        let first = HostileWaker::new(Misbehaviour::None);
        let borrowed = first.waker();
        assert!(poll_once(r.recv(), &borrowed).is_pending());
        drop(borrowed); // its address is free for the next allocation
        let second = HostileWaker::new(Misbehaviour::None);
        let reused = second.waker(); // often at the freed address
        assert!(poll_once(r.recv(), &reused).is_pending());
        assert!(poll_once(r.recv(), &reused).is_pending());
        s.send(1).unwrap();
        assert_eq!(second.wakes(), 1, "the last task to poll is woken");
        assert_eq!(first.live(), 0, "the replaced clone was dropped");
        drop(reused);
        assert_eq!(
            second.live(),
            0,
            "the sender's clone was consumed by the wake"
        );
    }
}

/// A `closed()` waker whose drop panics: `send` must publish first. The
/// panic reaches the sender; the value reaches the receiver.
#[test]
fn a_panicking_closed_waker_drop_does_not_lose_the_value() {
    let _w = watchdog("a_panicking_closed_waker_drop_does_not_lose_the_value");
    let task = HostileWaker::new(Misbehaviour::PanicOnDrop);
    let (mut s, mut r) = channel::<String>();
    let w = task.waker();
    assert!(poll_once(s.closed(), &w).is_pending());
    task.disarm();
    drop(w);
    task.arm(); // the clone stored by `closed()` panics when dropped
    let sent = catch_unwind(AssertUnwindSafe(|| s.send("delivered".to_string())));
    assert!(sent.is_err(), "the waker's panic reaches the sender");
    assert_eq!(r.recv_blocking().as_deref(), Ok("delivered"));
    assert_eq!(task.live(), 0);
}

/// The receiver's waker panics when woken: the value is published before
/// the wake, so it is there for the receiver.
#[test]
fn a_panicking_wake_does_not_lose_the_value() {
    let _w = watchdog("a_panicking_wake_does_not_lose_the_value");
    let task = HostileWaker::new(Misbehaviour::PanicOnWake);
    let (s, mut r) = channel::<u32>();
    let w = task.waker();
    assert!(poll_once(r.recv(), &w).is_pending());
    let sent = catch_unwind(AssertUnwindSafe(|| s.send(3)));
    assert!(sent.is_err());
    assert_eq!(task.wakes(), 1);
    assert_eq!(r.try_recv(), Ok(3));
    // The channel recycles normally afterwards.
    r.sender().unwrap().send(4).unwrap();
    assert_eq!(r.recv_blocking(), Ok(4));
}

/// Replacing a registered waker whose drop panics: the new waker is
/// registered before the old one is dropped, so the send still wakes it.
#[test]
fn a_panicking_drop_of_the_replaced_waker_keeps_the_new_registration() {
    let _w = watchdog("a_panicking_drop_of_the_replaced_waker_keeps_the_new_registration");
    let old = HostileWaker::new(Misbehaviour::PanicOnDrop);
    let new = HostileWaker::new(Misbehaviour::None);
    let (s, mut r) = channel::<u32>();
    let w = old.waker();
    assert!(poll_once(r.recv(), &w).is_pending());
    old.disarm();
    drop(w);
    old.arm();
    let polled = catch_unwind(AssertUnwindSafe(|| {
        poll_once(r.recv(), &new.waker()).is_pending()
    }));
    assert!(polled.is_err(), "the old waker's drop panicked");
    s.send(5).unwrap();
    assert_eq!(new.wakes(), 1, "the new waker was registered");
    assert_eq!(r.try_recv(), Ok(5));
    assert_eq!((old.live(), new.live()), (0, 0));
}

/// A waker whose clone panics: nothing was claimed, the channel works on.
#[test]
fn a_panicking_clone_leaves_the_channel_usable() {
    let _w = watchdog("a_panicking_clone_leaves_the_channel_usable");
    let task = HostileWaker::new(Misbehaviour::PanicOnClone);
    let (s, mut r) = channel::<u32>();
    let w = task.waker();
    assert!(catch_unwind(AssertUnwindSafe(|| poll_once(r.recv(), &w))).is_err());
    let (mut s2, _r2) = channel::<u32>();
    assert!(catch_unwind(AssertUnwindSafe(|| poll_once(s2.closed(), &w))).is_err());
    s.send(6).unwrap();
    assert_eq!(r.recv_blocking(), Ok(6));
    drop(w);
    assert_eq!(task.live(), 0);
}

/// Counts the drops of a payload whose `Drop` panics.
struct PanicsOnDrop(Arc<Mutex<u32>>);

impl Drop for PanicsOnDrop {
    fn drop(&mut self) {
        *self.0.lock().unwrap() += 1;
        panic!("payload drop panics");
    }
}

/// An unreceived payload whose `Drop` panics, dropped with the receiver:
/// the panic reaches the caller, the payload was dropped exactly once, and
/// the block is freed (Miri's leak check would report it otherwise).
#[test]
fn a_panicking_payload_dropped_with_the_receiver_frees_the_block() {
    let _w = watchdog("a_panicking_payload_dropped_with_the_receiver_frees_the_block");
    let drops = Arc::new(Mutex::new(0));
    let (s, r) = channel::<PanicsOnDrop>();
    s.send(PanicsOnDrop(Arc::clone(&drops))).ok().unwrap();
    assert!(catch_unwind(AssertUnwindSafe(|| drop(r))).is_err());
    assert_eq!(*drops.lock().unwrap(), 1);
    assert_eq!(Arc::strong_count(&drops), 1, "the payload is gone");
}

/// The same payload dropped by recycling (`sender()` drops an unread
/// value): the new round is consistent, the payload dropped once.
#[test]
fn a_panicking_payload_dropped_by_recycling_leaves_a_consistent_round() {
    let _w = watchdog("a_panicking_payload_dropped_by_recycling_leaves_a_consistent_round");
    let drops = Arc::new(Mutex::new(0));
    let mut r = Receiver::<PanicsOnDrop>::new();
    r.sender()
        .unwrap()
        .send(PanicsOnDrop(Arc::clone(&drops)))
        .ok()
        .unwrap();
    assert!(catch_unwind(AssertUnwindSafe(|| r.sender().map(drop))).is_err());
    assert_eq!(*drops.lock().unwrap(), 1);
    // The new round's sender was dropped while unwinding: the round is
    // closed, and the next one works.
    assert!(r.is_closed());
    r.sender()
        .unwrap()
        .send(PanicsOnDrop(Arc::clone(&drops)))
        .ok()
        .unwrap();
    let got = r.try_recv().ok().unwrap();
    assert!(catch_unwind(AssertUnwindSafe(|| drop(got))).is_err());
    assert_eq!(*drops.lock().unwrap(), 2);
}

/// A receiver that leaves while its waker (whose drop panics) is
/// registered takes the waker back and drops it itself: the panic unwinds
/// out of the receiver's drop, and a later send still gets its value back.
#[test]
fn a_panicking_registered_waker_is_dropped_by_the_receiver_not_by_send() {
    let _w = watchdog("a_panicking_registered_waker_is_dropped_by_the_receiver_not_by_send");
    let task = HostileWaker::new(Misbehaviour::PanicOnDrop);
    let (s, mut r) = channel::<Box<u32>>();
    let w = task.waker();
    assert!(poll_once(r.recv(), &w).is_pending());
    task.disarm();
    drop(w);
    task.arm();
    assert!(catch_unwind(AssertUnwindSafe(|| drop(r))).is_err());
    assert_eq!(task.live(), 0);
    assert_eq!(*s.send(Box::new(1)).unwrap_err().into_inner(), 1);
}
