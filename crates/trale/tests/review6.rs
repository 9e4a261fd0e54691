//! Review 6: `JoinError::Panicked(PanicPayload)` (a mutex-wrapped payload)
//! behaves as the bare `Box<dyn Any + Send>` did: the original payload is
//! re-raised unchanged (same type, same value, same allocation), `Display`
//! of a payload that is not a string, and payloads whose destructor panics.

use std::panic::{AssertUnwindSafe, catch_unwind, panic_any, resume_unwind};
use std::sync::atomic::{AtomicUsize, Ordering};
use trale::task::{Executor, JoinError, PanicPayload};

/// A payload that remembers where its heap part lives, to tell the original
/// from a copy.
struct Tracked {
    code: u32,
    heap: Box<u64>,
}

fn addr(b: &u64) -> usize {
    std::ptr::from_ref(b) as usize
}

/// Panics with a `Tracked` whose heap address goes to `at`.
fn panic_tracked(code: u32, at: &AtomicUsize) -> ! {
    let heap = Box::new(u64::from(code) * 3);
    at.store(addr(&heap), Ordering::SeqCst);
    panic_any(Tracked { code, heap })
}

fn check_tracked(payload: Box<dyn std::any::Any + Send>, code: u32, at: &AtomicUsize) {
    let t = payload
        .downcast::<Tracked>()
        .unwrap_or_else(|_| panic!("payload type changed"));
    assert_eq!(t.code, code);
    assert_eq!(*t.heap, u64::from(code) * 3);
    assert_eq!(
        addr(&t.heap),
        at.load(Ordering::SeqCst),
        "not the original payload"
    );
}

/// Blocking `join()` (off the executor thread) re-raises the original payload.
#[test]
fn join_reraises_the_very_same_payload() {
    if cfg!(miri) {
        return; // starts the background executor thread
    }
    let _dog = testkit::watchdog("join_reraises_the_very_same_payload");
    static AT: AtomicUsize = AtomicUsize::new(0);
    let task = Executor::spawn(async {
        if true {
            panic_tracked(11, &AT);
        }
        0u8
    });
    let payload = catch_unwind(AssertUnwindSafe(|| task.join())).unwrap_err();
    check_tracked(payload, 11, &AT);
}

/// `.await` on the joiner re-raises the original payload too, and `try_join`
/// / `into_panic` hand it back unchanged.
#[test]
fn await_and_into_panic_keep_the_very_same_payload() {
    let _dog = testkit::watchdog("await_and_into_panic_keep_the_very_same_payload");
    static AT1: AtomicUsize = AtomicUsize::new(0);
    static AT2: AtomicUsize = AtomicUsize::new(0);
    Executor::block_on(async {
        let task = Executor::spawn(async {
            if true {
                panic_tracked(21, &AT1);
            }
            0u8
        });
        // The awaiting task re-raises; its own JoinError carries that payload.
        // (The joiner is a future itself; spawning it re-raises in that task.)
        let outer = Executor::spawn(task);
        let err = outer.result().await.unwrap_err();
        check_tracked(err.into_panic().unwrap(), 21, &AT1);

        let task = Executor::spawn(async {
            if true {
                panic_tracked(22, &AT2);
            }
            0u8
        });
        let err = task.result().await.unwrap_err();
        let JoinError::Panicked(p) = err else {
            panic!("not a panic")
        };
        assert_eq!(p.message(), None);
        check_tracked(p.into_inner(), 22, &AT2);
    });
}

/// `Display` of payloads that are neither `&str` nor `String`, and of a
/// `&'static str` one; `message` from several threads at once (`Sync`).
#[test]
fn display_of_other_payloads() {
    let _dog = testkit::watchdog("display_of_other_payloads");
    Executor::block_on(async {
        let t = Executor::spawn(async {
            if true {
                panic_any(42u32);
            }
        });
        let err = t.result().await.unwrap_err();
        assert_eq!(err.to_string(), "task panicked");
        assert_eq!(format!("{err:?}"), "JoinError::Panicked(..)");
        // A `Box<&str>` inside a `Box<dyn Any>`: the message is not found
        // through a second box (as before).
        let t = Executor::spawn(async {
            if true {
                panic_any(Box::new("nested"));
            }
        });
        assert_eq!(t.result().await.unwrap_err().to_string(), "task panicked");
        let t = Executor::spawn(async {
            if true {
                panic!("static str");
            }
        });
        let err = t.result().await.unwrap_err();
        std::thread::scope(|s| {
            let hs: Vec<_> = (0..2).map(|_| s.spawn(|| err.to_string())).collect();
            for h in hs {
                assert_eq!(h.join().unwrap(), "task panicked: static str");
            }
        });
        let payload = err.into_panic().unwrap();
        assert_eq!(payload.downcast_ref::<&str>(), Some(&"static str"));
    });
}

static BOMB_DROPS: AtomicUsize = AtomicUsize::new(0);

/// A payload whose destructor panics.
struct Bomb;

impl Drop for Bomb {
    fn drop(&mut self) {
        BOMB_DROPS.fetch_add(1, Ordering::SeqCst);
        panic!("bomb payload dropped");
    }
}

/// Dropping a `JoinError` (or a `PanicPayload`) whose payload's destructor
/// panics unwinds out of the drop as dropping the bare box did (no abort,
/// no poisoned state that matters); a detached task with such a payload
/// does not take the executor down.
#[test]
fn payloads_whose_destructor_panics() {
    let _dog = testkit::watchdog("payloads_whose_destructor_panics");
    Executor::block_on(async {
        let before = BOMB_DROPS.load(Ordering::SeqCst);
        let t = Executor::spawn(async {
            if true {
                panic_any(Bomb);
            }
        });
        let err = t.result().await.unwrap_err();
        assert_eq!(err.to_string(), "task panicked");
        let dropped = catch_unwind(AssertUnwindSafe(move || drop(err))).unwrap_err();
        assert_eq!(
            dropped.downcast_ref::<&str>(),
            Some(&"bomb payload dropped")
        );
        assert_eq!(BOMB_DROPS.load(Ordering::SeqCst), before + 1);

        let t = Executor::spawn(async {
            if true {
                panic_any(Bomb);
            }
        });
        let JoinError::Panicked(p) = t.result().await.unwrap_err() else {
            panic!("not a panic")
        };
        let p: PanicPayload = p;
        assert!(catch_unwind(AssertUnwindSafe(move || drop(p))).is_err());
        assert_eq!(BOMB_DROPS.load(Ordering::SeqCst), before + 2);

        // Detached: the executor drops the outcome quietly.
        let detached = Executor::spawn(async {
            if true {
                panic_any(Bomb);
            }
        });
        drop(detached);
        for _ in 0..10 {
            trale::task::yield_now().await;
        }
        assert_eq!(Executor::spawn(async { 5 }).await, 5);
    });
}

/// Re-raising through `resume_unwind` of `into_inner` from a `JoinError`
/// that went through `Box<dyn Error + Send + Sync>`.
#[test]
fn payload_survives_an_error_box() {
    let _dog = testkit::watchdog("payload_survives_an_error_box");
    static AT: AtomicUsize = AtomicUsize::new(0);
    Executor::block_on(async {
        let t = Executor::spawn(async {
            if true {
                panic_tracked(31, &AT);
            }
        });
        let boxed: Box<dyn std::error::Error + Send + Sync> =
            Box::new(t.result().await.unwrap_err());
        let err = boxed.downcast::<JoinError>().unwrap();
        let payload = err.into_panic().unwrap();
        let again = catch_unwind(AssertUnwindSafe(move || resume_unwind(payload))).unwrap_err();
        check_tracked(again, 31, &AT);
    });
}
