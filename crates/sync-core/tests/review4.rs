//! Hostile review 4 of sync-core: foreign code run while already unwinding.
//!
//! Finding 1 failed on dd9dfa3 (the process aborted) and passes since the
//! fix: `register` runs the wake and the replaced waker's drop each under
//! `catch_unwind` and raises the first panic after both. The other tests
//! are attacks that held.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::task::{RawWaker, RawWakerVTable, Waker};
use sync_core::AtomicWaker;

/// A hand-rolled waker whose clone, wake and drop misbehave on request.
struct Spec {
    /// Runs inside `clone` (for example: a wake of the slot being
    /// registered in).
    on_clone: Option<fn()>,
    panic_on_wake: bool,
    panic_on_drop: AtomicBool,
    wakes: AtomicUsize,
}

fn waker(spec: &Arc<Spec>) -> Waker {
    let raw = RawWaker::new(Arc::into_raw(Arc::clone(spec)).cast(), &VTABLE);
    // SAFETY: the vtable below upholds the `RawWaker` contract.
    unsafe { Waker::from_raw(raw) }
}

static VTABLE: RawWakerVTable = RawWakerVTable::new(clone, wake, wake_by_ref, drop_waker);

unsafe fn clone(data: *const ()) -> RawWaker {
    // SAFETY: `data` came from `Arc::into_raw` and is still owned.
    let spec = unsafe { &*data.cast::<Spec>() };
    if let Some(hook) = spec.on_clone {
        hook();
    }
    // SAFETY: as above; one more strong count for the new waker.
    unsafe { Arc::increment_strong_count(data.cast::<Spec>()) };
    RawWaker::new(data, &VTABLE)
}

unsafe fn wake(data: *const ()) {
    // SAFETY: by-value wake owns the count.
    let spec = unsafe { Arc::from_raw(data.cast::<Spec>()) };
    spec.wakes.fetch_add(1, Ordering::SeqCst);
    if spec.panic_on_wake {
        panic!("review4: wake panics");
    }
}

unsafe fn wake_by_ref(data: *const ()) {
    // SAFETY: borrowed.
    let spec = unsafe { &*data.cast::<Spec>() };
    spec.wakes.fetch_add(1, Ordering::SeqCst);
    if spec.panic_on_wake {
        panic!("review4: wake_by_ref panics");
    }
}

unsafe fn drop_waker(data: *const ()) {
    // SAFETY: owns one count.
    let spec = unsafe { Arc::from_raw(data.cast::<Spec>()) };
    if spec.panic_on_drop.load(Ordering::SeqCst) {
        panic!("review4: waker drop panics");
    }
}

fn spec(on_clone: Option<fn()>, panic_on_wake: bool) -> Arc<Spec> {
    Arc::new(Spec {
        on_clone,
        panic_on_wake,
        panic_on_drop: AtomicBool::new(false),
        wakes: AtomicUsize::new(0),
    })
}

/// Re-runs this test binary for one `#[ignore]`d child test; returns whether
/// the child exited cleanly (an abort is a signal, i.e. not success).
fn child_exits_cleanly(child: &str) -> bool {
    let status = Command::new(std::env::current_exe().unwrap())
        .args(["--include-ignored", "--exact", child, "--nocapture"])
        .env("REVIEW4_CHILD", "1")
        .status()
        .expect("re-run the test binary");
    eprintln!("child {child}: {status}");
    status.success()
}

// ---------------------------------------------------------------------------
// Finding 1

static SLOT_F1: AtomicWaker = AtomicWaker::new();

fn wake_slot_f1() {
    SLOT_F1.wake();
}

/// The scenario of finding 1 (run only in a child process).
#[test]
#[ignore = "child of finding1: run by the finding's test in a child process"]
fn finding1_child() {
    if std::env::var_os("REVIEW4_CHILD").is_none() {
        return;
    }
    // `old` is registered; its stored clone panics when dropped.
    let old = spec(None, false);
    SLOT_F1.register(&waker(&old));
    old.panic_on_drop.store(true, Ordering::SeqCst);
    // `new`'s clone wakes the slot (a wake landing while `register` holds
    // REGISTERING, exactly what another thread's `wake` does at that
    // instant), and its wake panics.
    let new = spec(Some(wake_slot_f1), true);
    let new_waker = waker(&new);
    let unwound = catch_unwind(AssertUnwindSafe(|| SLOT_F1.register(&new_waker)));
    // Never reached on the current code: `register` delivers the wake
    // (panics), and the replaced `old` waker, still held in a local
    // (`swapped`), is dropped by that unwind, panics again, and the
    // process aborts ("panic in a destructor during cleanup").
    assert!(unwound.is_err(), "a waker's panic reaches the caller");
    assert_eq!(new.wakes.load(Ordering::SeqCst), 1);
}

/// REVIEW4 FINDING 1 (abort): `AtomicWaker::register`
/// (atomic_waker.rs, the end of the `Ok(_)` arm) runs the delivered
/// wake (`w.wake()`) while the replaced waker is still held in a local
/// (`swapped`). If the wake panics, the replaced waker is dropped *during
/// that unwind*; a replaced waker whose `Drop` panics then aborts the
/// process. The docs promise each foreign panic "propagates, but only
/// after the slot is released and consistent"; the workspace rule says
/// foreign code is only called after everything else is settled. Fix:
/// drop (or catch) the replaced waker before running the wake, or catch
/// the wake's panic, drop `swapped`, then resume it.
#[test]
#[cfg_attr(miri, ignore = "spawns a child process")]
fn finding1_register_drops_replaced_waker_while_wake_panic_unwinds() {
    assert!(
        child_exits_cleanly("finding1_child"),
        "the process aborted: a second panic while unwinding"
    );
}

// ---------------------------------------------------------------------------
// Attacks that held

/// A single panicking wake delivered by `register` (the race above, only
/// one foreign panic): the panic reaches the caller, the replaced waker is
/// dropped once, the slot is idle and usable.
#[test]
fn register_delivering_a_panicking_wake_leaves_the_slot_usable() {
    static SLOT: AtomicWaker = AtomicWaker::new();
    fn wake_slot() {
        SLOT.wake();
    }
    let old = spec(None, false);
    SLOT.register(&waker(&old));
    let new = spec(Some(wake_slot), true);
    let w = waker(&new);
    let unwound = catch_unwind(AssertUnwindSafe(|| SLOT.register(&w)));
    assert!(unwound.is_err());
    assert_eq!(
        new.wakes.load(Ordering::SeqCst),
        1,
        "the wake was delivered"
    );
    assert_eq!(Arc::strong_count(&old), 1, "the replaced waker was dropped");
    assert!(format!("{SLOT:?}").contains("registering: false"));
    let fine = spec(None, false);
    SLOT.register(&waker(&fine));
    SLOT.wake();
    assert_eq!(fine.wakes.load(Ordering::SeqCst), 1);
    drop(w);
    assert_eq!(Arc::strong_count(&new), 1, "no clone of `new` leaked");
}

/// `block_on`'s waker cloned to another thread and woken after `block_on`
/// returned (a stale token on the cached parker): later `block_on`s on
/// this thread still wait for their own wake-ups and return right values.
#[test]
fn block_on_waker_woken_after_return() {
    use std::future::poll_fn;
    use std::task::Poll;
    let mut stash = None;
    sync_core::future::block_on(poll_fn(|cx| {
        stash = Some(cx.waker().clone());
        Poll::Ready(())
    }));
    let stale = stash.take().unwrap();
    std::thread::spawn(move || stale.wake()).join().unwrap();
    for round in 0..3 {
        let flag = Arc::new(AtomicBool::new(false));
        let mut started = false;
        let got = sync_core::future::block_on(poll_fn(|cx| {
            if flag.load(Ordering::Acquire) {
                return Poll::Ready(round);
            }
            if !started {
                started = true;
                let (f, w) = (Arc::clone(&flag), cx.waker().clone());
                std::thread::spawn(move || {
                    f.store(true, Ordering::Release);
                    w.wake();
                });
            }
            Poll::Pending
        }));
        assert_eq!(got, round);
    }
}

/// `park_deadline` with a deadline in the past: no token, `false` at once;
/// with a token, `true` and the token is consumed.
#[test]
fn park_deadline_in_the_past() {
    let p = sync_core::Parker::new();
    let past = std::time::Instant::now();
    assert!(!p.park_deadline(past));
    p.unparker().unpark();
    assert!(p.park_deadline(past));
    assert!(!p.try_consume());
    // An unparker that outlives its parker is harmless.
    let u = p.unparker();
    drop(p);
    u.unpark();
}
