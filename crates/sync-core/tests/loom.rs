//! Loom models of sync-core's primitives. Run with `cargo xtask loom -p sync-core`.
//! In a normal build each model runs once, as a plain test.

use core::future::Future;
use core::pin::Pin;
use core::task::{Context, Poll};
use sync_core::atomic::{AtomicBool, AtomicUsize, Ordering};
use sync_core::sync::Arc;
use sync_core::{AtomicWaker, Backoff, Parker, WakeToken, future::block_on, model, thread};

/// A notification sent before, during or after `park` is never lost, and
/// the waking thread touches only the shared block (the flag's `Arc` is
/// co-owned here only because loom needs a tracked object to race on).
#[test]
fn parker_never_loses_a_notification() {
    let _w = testkit::watchdog("parker_never_loses_a_notification");
    model(|| {
        let parker = Parker::new();
        let unparker = parker.unparker();
        let flag = Arc::new(AtomicBool::new(false));
        let flag2 = Arc::clone(&flag);
        let t = thread::spawn(move || {
            flag2.store(true, Ordering::Release);
            unparker.unpark();
        });
        while !flag.load(Ordering::Acquire) {
            parker.park();
        }
        t.join().unwrap();
    });
}

/// Two wakers race; the parker waits for both flags.
#[test]
fn parker_with_two_wakers() {
    let _w = testkit::watchdog("parker_with_two_wakers");
    model(|| {
        let parker = Parker::new();
        let count = Arc::new(AtomicUsize::new(0));
        let handles: Vec<_> = (0..2)
            .map(|_| {
                let u = parker.unparker();
                let c = Arc::clone(&count);
                thread::spawn(move || {
                    c.fetch_add(1, Ordering::Release);
                    u.unpark();
                })
            })
            .collect();
        while count.load(Ordering::Acquire) < 2 {
            parker.park();
        }
        for h in handles {
            h.join().unwrap();
        }
    });
}

/// A deadline park either sees the notification or times out; in the
/// second case the notification stays pending for the next park.
#[test]
fn parker_deadline_races_unpark() {
    let _w = testkit::watchdog("parker_deadline_races_unpark");
    model(|| {
        let parker = Parker::new();
        let u = parker.unparker();
        let t = thread::spawn(move || u.unpark());
        let deadline = std::time::Instant::now();
        if !parker.park_deadline(deadline) {
            parker.park(); // the token must still arrive
        }
        t.join().unwrap();
        assert!(!parker.try_consume(), "one unpark, one token");
    });
}

/// The token word alone, as a parker with a time-out uses it: the owner
/// announces its sleep, "times out" (no back-end here: the time-out is the
/// model's choice of interleaving) and leaves the park while a waker
/// notifies. The notification is seen exactly once: by `begin_park`,
/// `end_park` or a later `try_consume`. (Under loom `Parker::park_deadline`
/// does not reach `end_park`: this model is what covers it; the parker
/// models above cover `notify`'s answer, which a lost back-end wake-up
/// would turn into a deadlock.)
#[test]
fn wake_token_is_seen_once_whatever_the_interleaving() {
    let _w = testkit::watchdog("wake_token_is_seen_once_whatever_the_interleaving");
    model(|| {
        let token = Arc::new(WakeToken::new());
        let token2 = Arc::clone(&token);
        let waker = thread::spawn(move || {
            let _ = token2.notify();
        });
        let mut seen = 0;
        if !token.begin_park() || token.end_park() {
            seen += 1;
        }
        waker.join().unwrap();
        if token.try_consume() {
            seen += 1;
        }
        assert_eq!(seen, 1, "one notification, seen once");
        assert!(!token.is_notified());
    });
}

/// Spin-then-park: whatever the backoff does, the waiter ends up either
/// seeing the flag or parked with a wake-up on its way.
#[test]
fn backoff_then_park() {
    let _w = testkit::watchdog("backoff_then_park");
    model(|| {
        let parker = Parker::new();
        let u = parker.unparker();
        let flag = Arc::new(AtomicBool::new(false));
        let flag2 = Arc::clone(&flag);
        let t = thread::spawn(move || {
            flag2.store(true, Ordering::Release);
            u.unpark();
        });
        let mut backoff = Backoff::new();
        while !flag.load(Ordering::Acquire) {
            if !backoff.snooze() {
                parker.park();
            }
        }
        t.join().unwrap();
    });
}

/// A future that registers on an `AtomicWaker` and waits for a flag.
struct WaitFlag {
    slot: Arc<AtomicWaker>,
    flag: Arc<AtomicBool>,
}

impl Future for WaitFlag {
    type Output = ();
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        self.slot.register(cx.waker());
        if self.flag.load(Ordering::Acquire) {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }
}

/// Register racing wake: the task is always woken (loom reports a deadlock
/// if `block_on` parks forever).
#[test]
fn atomic_waker_register_vs_wake() {
    let _w = testkit::watchdog("atomic_waker_register_vs_wake");
    model(|| {
        let slot = Arc::new(AtomicWaker::new());
        let flag = Arc::new(AtomicBool::new(false));
        let (s2, f2) = (Arc::clone(&slot), Arc::clone(&flag));
        let t = thread::spawn(move || {
            f2.store(true, Ordering::Release);
            s2.wake();
        });
        block_on(WaitFlag { slot, flag });
        t.join().unwrap();
    });
}

/// Two wakers and a registrar.
#[test]
fn atomic_waker_two_wakers() {
    let _w = testkit::watchdog("atomic_waker_two_wakers");
    model(|| {
        let slot = Arc::new(AtomicWaker::new());
        let flag = Arc::new(AtomicBool::new(false));
        let (s2, f2) = (Arc::clone(&slot), Arc::clone(&flag));
        let s3 = Arc::clone(&slot);
        let t1 = thread::spawn(move || {
            f2.store(true, Ordering::Release);
            s2.wake();
        });
        let t2 = thread::spawn(move || s3.wake()); // a spurious waker
        block_on(WaitFlag { slot, flag });
        t1.join().unwrap();
        t2.join().unwrap();
    });
}

/// A registration whose `Waker::clone` panics, racing a wake: the wake
/// still reaches the waker registered before (the waking thread takes it,
/// or the unwinding registrar delivers it after releasing the slot), and
/// afterwards the slot stores and hands out wakers again. (If the register
/// finds the wake in progress it never clones: it wakes its own waker.)
#[test]
fn atomic_waker_panicking_clone_vs_wake() {
    let _w = testkit::watchdog("atomic_waker_panicking_clone_vs_wake");
    use std::panic::{AssertUnwindSafe, catch_unwind};
    use testkit::{HostileWaker, Misbehaviour};
    model(|| {
        let slot = Arc::new(AtomicWaker::new());
        let first = HostileWaker::new(Misbehaviour::None);
        slot.register(&first.waker());
        let s2 = Arc::clone(&slot);
        let t = thread::spawn(move || s2.wake());
        let hostile = HostileWaker::new(Misbehaviour::PanicOnClone);
        let w = hostile.waker();
        let unwound = catch_unwind(AssertUnwindSafe(|| slot.register(&w)));
        assert!(
            unwound.is_err() || hostile.wakes() == 1,
            "either the clone's panic reached the caller, or register saw the wake and woke instead"
        );
        t.join().unwrap();
        assert_eq!(first.wakes(), 1, "the wake reached the registered waker");
        hostile.disarm();
        slot.register(&w);
        assert!(slot.take().is_some(), "the slot stores wakers again");
    });
}
