//! Review 8 (hostile review of c8f63f4..HEAD, `sync_core::unwind`).
//!
//! Rule 3 of `sync_core::unwind`: a foreign panic is caught and dropped
//! "while the thread is already unwinding (a second panic would abort the
//! process)". `FirstPanic::resume` does not look: it re-raises whatever it
//! caught, also from a destructor running during an unwind, and so does
//! every caller built on it (`AtomicWaker::register`, exit-left's
//! `Stage::close`).
//!
//! The two `review8_*_while_unwinding` tests that abort failed on 7cceecb
//! and pass since `FirstPanic::resume` and `unwind::wake` drop the panic
//! when the thread is already unwinding. The chain test held.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{RawWaker, RawWakerVTable, Waker};
use sync_core::AtomicWaker;
use sync_core::unwind::FirstPanic;
use testkit::in_child;

/// Calls `f` when dropped: a guard a user would write.
struct OnDrop<F: FnMut()>(F);

impl<F: FnMut()> Drop for OnDrop<F> {
    fn drop(&mut self) {
        (self.0)();
    }
}

static CLONES: AtomicUsize = AtomicUsize::new(0);

/// A waker whose `clone` panics (every time: it does not know whether its
/// thread unwinds, and it runs inside `catch_unwind`, where that is legal).
fn clone_panics() -> Waker {
    unsafe fn clone(_: *const ()) -> RawWaker {
        CLONES.fetch_add(1, Ordering::SeqCst);
        panic!("review8: clone panics");
    }
    unsafe fn noop(_: *const ()) {}
    static VTABLE: RawWakerVTable = RawWakerVTable::new(clone, noop, noop, noop);
    // SAFETY: the vtable's functions ignore the data pointer.
    unsafe { Waker::from_raw(RawWaker::new(core::ptr::null(), &VTABLE)) }
}

/// REVIEW8 FINDING 2a. `FirstPanic` itself: code that runs foreign calls
/// through it from a destructor (its documented use: "run several foreign
/// calls, keep the first panic") and then calls `resume` aborts the process
/// if the destructor runs during an unwind. Rule 3 says the panic is dropped
/// then; `resume` could check `std::thread::panicking()`.
#[test]
#[cfg_attr(miri, ignore = "spawns a child process")]
fn review8_first_panic_resume_in_a_drop_while_unwinding() {
    in_child(
        "review8_first_panic_resume_in_a_drop_while_unwinding",
        || {
            let outcome = std::panic::catch_unwind(|| {
                let _g = OnDrop(|| {
                    let mut panics = FirstPanic::new();
                    panics.catch(|| panic!("review8: foreign code panics"));
                    panics.resume();
                });
                panic!("review8: the user's own panic");
            });
            assert!(outcome.is_err());
        },
    );
}

/// REVIEW8 FINDING 2b. `AtomicWaker::register` from a destructor while
/// unwinding (a future's `Drop` that re-registers, a guard that parks a
/// waker), with a waker whose `clone` panics: `register` catches the clone's
/// panic, releases the slot, then `FirstPanic::resume` re-raises it inside
/// the destructor during unwinding: abort.
#[test]
#[cfg_attr(miri, ignore = "spawns a child process")]
fn review8_register_in_a_drop_while_unwinding_with_a_panicking_clone() {
    in_child(
        "review8_register_in_a_drop_while_unwinding_with_a_panicking_clone",
        || {
            let slot = AtomicWaker::new();
            let waker = clone_panics();
            let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                let _g = OnDrop(|| slot.register(&waker));
                panic!("review8: the user's own panic");
            }));
            assert!(outcome.is_err());
            assert_eq!(CLONES.load(Ordering::SeqCst), 1);
        },
    );
}

/// Held (control): `drop_payload` while the thread unwinds, with a payload
/// chain whose every level panics even then (a custom type, not
/// `testkit::PanicsOnDrop`, which goes quiet while unwinding): each nested
/// panic is caught by its own `catch_unwind`, nothing aborts.
#[test]
#[cfg_attr(miri, ignore = "spawns a child process")]
fn review8_drop_payload_while_unwinding_with_an_always_panicking_chain() {
    struct Always(u32, &'static AtomicUsize);
    impl Drop for Always {
        fn drop(&mut self) {
            self.1.fetch_add(1, Ordering::SeqCst);
            if self.0 > 1 {
                std::panic::panic_any(Always(self.0 - 1, self.1));
            }
            panic!("review8: last level");
        }
    }
    static DROPS: AtomicUsize = AtomicUsize::new(0);
    in_child(
        "review8_drop_payload_while_unwinding_with_an_always_panicking_chain",
        || {
            let outcome = std::panic::catch_unwind(|| {
                let _g = OnDrop(|| {
                    sync_core::unwind::drop_payload(Box::new(Always(3, &DROPS)));
                    sync_core::unwind::drop_quietly(Always(3, &DROPS));
                    let mut p = FirstPanic::new();
                    p.keep(Box::new(Always(2, &DROPS)));
                    p.keep(Box::new(Always(2, &DROPS)));
                    drop(p);
                });
                panic!("review8: the user's own panic");
            });
            assert!(outcome.is_err());
            assert_eq!(DROPS.load(Ordering::SeqCst), 3 + 3 + 2 + 2);
        },
    );
}
