//! Hostile review 3 of ste: the one-cell, cache-line-aligned `StackTask`
//! (commit 9092236: `Slot::{Func, Output, Empty}` in one `UnsafeCell`,
//! `#[repr(C, align(64))]`).
//!
//! Every test here is an attack on that change that held: closures and
//! results of every size and alignment (ZST, > 64 bytes, `align(128)`,
//! `align(4096)`), results shaped like the panic payload the slot also
//! holds, panics in the closure, in its captures' `Drop`, in the result's
//! `Drop` and in the payload's `Drop`, re-entrant submits, submits from
//! other workers and from thread-local destructors, many submitters at once,
//! a shutdown racing in-flight work, `submit_async` and `Thread::drop`.
//! Under Miri they also check that the worker never touches the caller's
//! frame after `DONE` (each `submit`'s task dies with `run_on`'s frame, so a
//! late access would be a use-after-free) and never reads a moved-from or
//! uninitialised slot.
//!
//! Not reachable from safe code, so not tested: the "push failed, take the
//! closure back" arm of `run_on` (a `&Thread` cannot outlive the handle
//! whose `join`/`drop` is the only thing that closes the queue).

use std::any::Any;
use std::future::Future;
use std::mem::MaybeUninit;
use std::panic::{AssertUnwindSafe, catch_unwind, panic_any, resume_unwind};
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::task::{Context, Poll};
use std::thread::ThreadId;
use std::time::Duration;

/// Runs `body` on its own thread and fails the test (instead of hanging
/// it) if no answer comes within 20 s. Under Miri (virtual clock, slow by
/// design) the body runs inline.
fn guarded<R: Send + 'static>(name: &'static str, body: impl FnOnce() -> R + Send + 'static) -> R {
    if cfg!(miri) {
        return body();
    }
    let (tx, rx) = mpsc::channel();
    let handle = std::thread::Builder::new()
        .name(name.into())
        .spawn(move || {
            let out = catch_unwind(AssertUnwindSafe(body));
            let _ = tx.send(());
            out
        })
        .unwrap();
    match rx.recv_timeout(Duration::from_secs(20)) {
        Ok(()) => match handle.join().unwrap() {
            Ok(out) => out,
            Err(payload) => resume_unwind(payload),
        },
        Err(_) => panic!("{name}: no answer within 20 s (hang)"),
    }
}

fn iters(native: usize, miri: usize) -> usize {
    if cfg!(miri) { miri } else { native }
}

/// Long enough that the caller's spin gives up and it parks (the park path
/// of the handshake: the worker takes the unparker out, then `DONE`).
fn make_the_caller_park() {
    std::thread::sleep(Duration::from_millis(if cfg!(miri) { 1 } else { 3 }));
}

/// Where and how often values were dropped: `(id, thread)` per drop.
#[derive(Clone, Default)]
struct DropLog(Arc<Mutex<Vec<(u32, ThreadId)>>>);

impl DropLog {
    fn tracked(&self, id: u32) -> Tracked {
        Tracked {
            id,
            log: self.clone(),
        }
    }
    fn drops_of(&self, id: u32) -> Vec<ThreadId> {
        let log = self.0.lock().unwrap();
        log.iter()
            .filter(|(i, _)| *i == id)
            .map(|(_, t)| *t)
            .collect()
    }
}

struct Tracked {
    id: u32,
    log: DropLog,
}

impl Drop for Tracked {
    fn drop(&mut self) {
        self.log
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push((self.id, std::thread::current().id()));
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[repr(C, align(128))]
struct A128([u8; 200]);

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[repr(C, align(4096))]
struct A4096 {
    tag: u64,
    bytes: [u8; 40],
}

fn a128(seed: u8) -> A128 {
    let mut b = [0u8; 200];
    for (i, x) in b.iter_mut().enumerate() {
        *x = seed.wrapping_add(i as u8);
    }
    A128(b)
}

fn a4096(seed: u64) -> A4096 {
    A4096 {
        tag: seed,
        bytes: [seed as u8; 40],
    }
}

fn addr_of<T>(x: &T) -> usize {
    core::ptr::from_ref(x).addr()
}

fn message(err: ste::Error) -> String {
    err.into_panic()
        .expect("a panic")
        .message()
        .expect("a string payload")
        .to_owned()
}

// ---------------------------------------------------------------------------
// Sizes and alignments

/// ZST closures (fn items, empty closures) and ZST results, with and
/// without a destructor: the slot holds nothing but its discriminant.
#[test]
fn zero_sized_closures_and_results() {
    guarded("zero_sized_closures_and_results", || {
        fn unit() {}
        #[derive(Debug, PartialEq)]
        struct Zst;
        static ZST_DROPS: AtomicUsize = AtomicUsize::new(0);
        struct ZstDrop;
        impl Drop for ZstDrop {
            fn drop(&mut self) {
                ZST_DROPS.fetch_add(1, Ordering::SeqCst);
            }
        }
        let thread = ste::Thread::new().unwrap();
        thread.submit(unit).unwrap();
        thread.submit(|| ()).unwrap();
        assert_eq!(thread.submit(|| [0u64; 0]).unwrap(), [0u64; 0]);
        assert_eq!(thread.submit(|| Zst).unwrap(), Zst);
        // A ZST capture with a destructor: dropped once, on the worker.
        let capture = ZstDrop;
        thread
            .submit(move || {
                let _keep = &capture;
            })
            .unwrap();
        assert_eq!(ZST_DROPS.load(Ordering::SeqCst), 1);
        // A ZST result with a destructor: dropped once, by us.
        let out = thread.submit(|| ZstDrop).unwrap();
        assert_eq!(ZST_DROPS.load(Ordering::SeqCst), 1);
        drop(out);
        assert_eq!(ZST_DROPS.load(Ordering::SeqCst), 2);
        // A ZST closure that panics.
        fn boom() {
            panic!("zst boom")
        }
        assert_eq!(message(thread.submit(boom).unwrap_err()), "zst boom");
        thread.join().unwrap();
    });
}

/// Captures and results much larger than a cache line, through both
/// completion paths (caller spinning, caller parked).
#[test]
fn large_closures_and_results_round_trip() {
    guarded("large_closures_and_results_round_trip", || {
        let thread = ste::Thread::new().unwrap();
        for round in 0..iters(50, 2) {
            let park = round % 2 == 1;
            let input: [u64; 64] = core::array::from_fn(|i| (i as u64) * 3 + round as u64);
            let out: [u64; 128] = thread
                .submit(move || {
                    if park {
                        make_the_caller_park();
                    }
                    core::array::from_fn(|i| input[i % 64] + i as u64)
                })
                .unwrap();
            for (i, x) in out.iter().enumerate() {
                assert_eq!(*x, (i % 64) as u64 * 3 + round as u64 + i as u64);
            }
        }
        thread.join().unwrap();
    });
}

/// `align(128)` and `align(4096)` captures and results: the task's
/// alignment follows the closure's (above 64), the closure the worker runs
/// sees its captures properly aligned, and the caller gets the results
/// intact and aligned.
#[test]
fn overaligned_closures_and_results() {
    guarded("overaligned_closures_and_results", || {
        let thread = ste::Thread::new().unwrap();
        for round in 0..iters(20, 2) {
            let park = round % 2 == 1;
            let c128 = a128(round as u8);
            let c4096 = a4096(round as u64);
            let (r128, r4096, ok) = thread
                .submit(move || {
                    if park {
                        make_the_caller_park();
                    }
                    let ok = addr_of(&c128) % 128 == 0
                        && addr_of(&c4096) % 4096 == 0
                        && c128 == a128(round as u8)
                        && c4096 == a4096(round as u64);
                    (a128(c128.0[7]), a4096(c4096.tag + 1), ok)
                })
                .unwrap();
            assert!(ok, "the worker saw its captures misaligned or corrupted");
            assert_eq!(addr_of(&r128) % 128, 0);
            assert_eq!(addr_of(&r4096) % 4096, 0);
            assert_eq!(r128, a128((round as u8).wrapping_add(7)));
            assert_eq!(r4096, a4096(round as u64 + 1));
            // Captured by reference instead: the worker reads the caller's
            // over-aligned locals in place.
            let local = a4096(99);
            let seen = thread.submit(|| (addr_of(&local), local.tag)).unwrap();
            assert_eq!(seen, (addr_of(&local), 99));
        }
        thread.join().unwrap();
    });
}

/// Results shaped exactly like the payload the same cell holds on a panic
/// (`Box<dyn Any + Send>`, `Result<_, Box<dyn Any + Send>>`, options of
/// it): niche-filled layouts of `Slot<F, T>` must keep "the task returned
/// an `Err(payload)`" apart from "the task panicked".
#[test]
fn results_shaped_like_the_panic_payload() {
    guarded("results_shaped_like_the_panic_payload", || {
        type Payload = Box<dyn Any + Send>;
        let thread = ste::Thread::new().unwrap();
        let r: Payload = thread.submit(|| Box::new(7u32) as Payload).unwrap();
        assert_eq!(*r.downcast::<u32>().unwrap(), 7);
        let r: Result<(), Payload> = thread.submit(|| Err(Box::new("e") as Payload)).unwrap();
        assert_eq!(*r.unwrap_err().downcast::<&str>().unwrap(), "e");
        let r: Result<Payload, Payload> = thread.submit(|| Ok(Box::new(1u8) as Payload)).unwrap();
        assert_eq!(*r.unwrap().downcast::<u8>().unwrap(), 1);
        let r: Option<Payload> = thread.submit(|| None).unwrap();
        assert!(r.is_none());
        let r: Result<core::convert::Infallible, Payload> =
            thread.submit(|| Err(Box::new(5i64) as Payload)).unwrap();
        let Err(p) = r;
        assert_eq!(*p.downcast::<i64>().unwrap(), 5);
        // A closure that is itself payload-shaped (its only capture is a
        // payload box) and returns one.
        let captured: Payload = Box::new(String::from("captured"));
        let r = thread.submit(move || captured).unwrap();
        assert_eq!(*r.downcast::<String>().unwrap(), "captured");
        // And a real panic right after: still reported as one.
        let err = thread.submit(|| -> Payload { panic!("real") }).unwrap_err();
        assert_eq!(message(err), "real");
        // References into the caller's stack (non-null niche) as closure
        // and result, and fn pointers as both.
        let x = 5u8;
        let r: &u8 = thread.submit(|| &x).unwrap();
        assert!(core::ptr::eq(r, &x));
        fn seven() -> u8 {
            7
        }
        fn make() -> fn() -> u8 {
            seven
        }
        let f: fn() -> fn() -> u8 = make;
        assert_eq!(thread.submit(f).unwrap()(), 7);
        thread.join().unwrap();
    });
}

/// Results with padding and uninitialised bytes are moved, not read byte
/// by byte (Miri flags any typed read of an uninitialised byte).
#[test]
fn results_with_padding_and_uninit_bytes() {
    guarded("results_with_padding_and_uninit_bytes", || {
        let thread = ste::Thread::new().unwrap();
        let r = thread.submit(|| (1u8, 2u64, 3u16)).unwrap();
        assert_eq!(r, (1, 2, 3));
        let r = thread
            .submit(MaybeUninit::<[u64; 16]>::uninit)
            .map(|_| ())
            .is_ok();
        assert!(r);
        let mut half = MaybeUninit::<[u8; 100]>::uninit();
        let captured_uninit = MaybeUninit::<A128>::uninit();
        let r = thread
            .submit(move || {
                let _keep = &captured_uninit;
                // Only the first byte is ever written.
                // SAFETY: writing a byte into a `MaybeUninit` array.
                unsafe { half.as_mut_ptr().cast::<u8>().write(42) };
                half
            })
            .unwrap();
        // SAFETY: the first byte was written on the worker.
        assert_eq!(unsafe { r.as_ptr().cast::<u8>().read() }, 42);
        thread.join().unwrap();
    });
}

// ---------------------------------------------------------------------------
// Drops and panics

/// Captures are dropped exactly once, on the worker; results exactly once,
/// where the caller drops them; nothing is dropped twice or leaked, on the
/// spinning and on the parking path.
#[test]
fn captures_and_results_are_dropped_exactly_once_where_they_belong() {
    guarded(
        "captures_and_results_are_dropped_exactly_once_where_they_belong",
        || {
            let log = DropLog::default();
            let thread = ste::Thread::new().unwrap();
            let worker = thread.submit(|| std::thread::current().id()).unwrap();
            let me = std::thread::current().id();
            for round in 0..iters(10, 2) {
                let park = round % 2 == 1;
                let id = round as u32 * 10;
                let capture = (log.tracked(id), a128(1), log.tracked(id + 1));
                let result = thread
                    .submit(move || {
                        if park {
                            make_the_caller_park();
                        }
                        let _keep = &capture;
                        (a4096(3), log_result(&capture.0.log, id + 2))
                    })
                    .unwrap();
                assert_eq!(log.drops_of(id), [worker]);
                assert_eq!(log.drops_of(id + 1), [worker]);
                assert!(log.drops_of(id + 2).is_empty(), "result dropped early");
                drop(result);
                assert_eq!(log.drops_of(id + 2), [me]);
            }
            thread.join().unwrap();
        },
    );
}

fn log_result(log: &DropLog, id: u32) -> Tracked {
    log.tracked(id)
}

/// A closure that panics: its captures are dropped once (on the worker,
/// while unwinding), the original payload (a large, over-aligned custom
/// type) comes back intact, and the worker serves on.
#[test]
fn panicking_closure_returns_its_payload_and_drops_captures_once() {
    guarded(
        "panicking_closure_returns_its_payload_and_drops_captures_once",
        || {
            #[derive(Debug, PartialEq)]
            struct BigPayload(A128, u64);
            let log = DropLog::default();
            let thread = ste::Thread::new().unwrap();
            let worker = thread.submit(|| std::thread::current().id()).unwrap();
            for round in 0..iters(6, 2) {
                let park = round % 2 == 1;
                let id = round as u32;
                let capture = (log.tracked(id), a4096(9));
                let err = thread
                    .submit(move || -> A4096 {
                        let _keep = &capture;
                        if park {
                            make_the_caller_park();
                        }
                        panic_any(BigPayload(a128(5), u64::from(id)))
                    })
                    .unwrap_err();
                let payload = err.into_panic().unwrap().into_payload();
                assert_eq!(
                    *payload.downcast::<BigPayload>().unwrap(),
                    BigPayload(a128(5), u64::from(id))
                );
                assert_eq!(log.drops_of(id), [worker]);
            }
            assert_eq!(thread.submit(|| 3).unwrap(), 3);
            thread.join().unwrap();
        },
    );
}

/// A capture whose `Drop` panics after the body returned: reported as the
/// task's panic, with that `Drop`'s message; every capture is dropped once,
/// on the worker; the result the body produced is dropped exactly as often
/// as by a plain call of the same closure (rustc currently leaks a return
/// value when the callee's captured state panics in `Drop`; ste must not
/// add a drop, nor read it back out of the slot); the worker serves on.
/// (A capture whose `Drop` panics while the body's own panic unwinds aborts
/// the process: Rust's rule, not ste's, so no test does that.)
#[test]
fn capture_whose_drop_panics_after_the_body_returned() {
    guarded("capture_whose_drop_panics_after_the_body_returned", || {
        struct PanicsOnDrop(Tracked);
        impl Drop for PanicsOnDrop {
            fn drop(&mut self) {
                panic!("capture drop {}", self.0.id);
            }
        }
        // The result owns no heap memory (rustc may leak it, see above).
        static RESULT_DROPS: AtomicUsize = AtomicUsize::new(0);
        struct Result_(A4096);
        impl Drop for Result_ {
            fn drop(&mut self) {
                assert_eq!(self.0, a4096(1), "dropped a corrupted result");
                RESULT_DROPS.fetch_add(1, Ordering::SeqCst);
            }
        }
        let log = DropLog::default();
        let make = |id: u32, park: bool| {
            let captures = (
                log.tracked(id),
                PanicsOnDrop(log.tracked(id + 1)),
                a128(0),
                log.tracked(id + 2),
            );
            move || {
                let _keep = &captures;
                if park {
                    make_the_caller_park();
                }
                Result_(a4096(1))
            }
        };
        // The reference: a plain call on this thread.
        let me = std::thread::current().id();
        let plain = catch_unwind(AssertUnwindSafe(make(0, false))).map(drop);
        let plain_message = *plain.unwrap_err().downcast::<String>().unwrap();
        assert_eq!(plain_message, "capture drop 1");
        let plain_result_drops = RESULT_DROPS.swap(0, Ordering::SeqCst);
        assert!(plain_result_drops <= 1);
        for capture in [0, 1, 2] {
            assert_eq!(log.drops_of(capture), [me]);
        }

        let thread = ste::Thread::new().unwrap();
        let worker = thread.submit(|| std::thread::current().id()).unwrap();
        for round in 0..iters(6, 2) {
            let id = 100 + round as u32 * 10;
            let err = thread
                .submit(make(id, round % 2 == 1))
                .map(drop)
                .unwrap_err();
            assert_eq!(message(err), format!("capture drop {}", id + 1));
            for capture in [id, id + 1, id + 2] {
                assert_eq!(log.drops_of(capture), [worker], "capture {capture}");
            }
            assert_eq!(
                RESULT_DROPS.swap(0, Ordering::SeqCst),
                plain_result_drops,
                "the result was dropped other than by a plain call"
            );
        }
        assert_eq!(thread.submit(|| 4).unwrap(), 4);
        thread.join().unwrap();
    });
}

/// A result whose `Drop` panics reaches the caller intact (the worker
/// never drops it); its panic happens where the caller drops it.
#[test]
fn result_whose_drop_panics_reaches_the_caller_intact() {
    guarded("result_whose_drop_panics_reaches_the_caller_intact", || {
        struct Explosive(A128, #[allow(dead_code)] Tracked); // held for its Drop
        impl Drop for Explosive {
            fn drop(&mut self) {
                panic!("result drop");
            }
        }
        let log = DropLog::default();
        let thread = ste::Thread::new().unwrap();
        let me = std::thread::current().id();
        for round in 0..iters(4, 2) {
            let park = round % 2 == 1;
            let id = round as u32;
            let l = log.clone();
            let out = thread
                .submit(move || {
                    if park {
                        make_the_caller_park();
                    }
                    Explosive(a128(id as u8), l.tracked(id))
                })
                .unwrap();
            assert_eq!(out.0, a128(id as u8));
            assert!(log.drops_of(id).is_empty());
            let caught = catch_unwind(AssertUnwindSafe(move || drop(out))).unwrap_err();
            assert_eq!(*caught.downcast::<&str>().unwrap(), "result drop");
            assert_eq!(log.drops_of(id), [me]);
        }
        assert_eq!(thread.submit(|| 5).unwrap(), 5);
        thread.join().unwrap();
    });
}

/// A panic payload whose `Drop` panics: handed to the caller (the worker
/// never drops it); the caller's drop of the error is where it panics.
#[test]
fn payload_whose_drop_panics_is_handed_over_undropped() {
    guarded("payload_whose_drop_panics_is_handed_over_undropped", || {
        struct BadPayload(A4096, #[allow(dead_code)] Tracked); // held for its Drop
        impl Drop for BadPayload {
            fn drop(&mut self) {
                panic!("payload drop");
            }
        }
        let log = DropLog::default();
        let thread = ste::Thread::new().unwrap();
        let me = std::thread::current().id();
        for round in 0..iters(4, 2) {
            let park = round % 2 == 1;
            let id = round as u32;
            let l = log.clone();
            let err = thread
                .submit(move || {
                    if park {
                        make_the_caller_park();
                    }
                    panic_any(BadPayload(a4096(u64::from(id)), l.tracked(id)))
                })
                .unwrap_err();
            assert!(
                log.drops_of(id).is_empty(),
                "the worker dropped the payload"
            );
            let payload = err.into_panic().unwrap().into_payload();
            assert_eq!(
                payload.downcast_ref::<BadPayload>().unwrap().0,
                a4096(u64::from(id))
            );
            let caught = catch_unwind(AssertUnwindSafe(move || drop(payload))).unwrap_err();
            assert_eq!(*caught.downcast::<&str>().unwrap(), "payload drop");
            assert_eq!(log.drops_of(id), [me]);
        }
        assert_eq!(thread.submit(|| 6).unwrap(), 6);
        thread.join().unwrap();
    });
}

/// `Thread::drop` of over-aligned values (also ones whose `Drop` panics):
/// dropped exactly once, on the worker.
#[test]
fn thread_drop_of_overaligned_and_panicking_values() {
    guarded("thread_drop_of_overaligned_and_panicking_values", || {
        #[allow(dead_code)] // held for their Drop
        struct Heavy(A4096, Tracked);
        #[allow(dead_code)] // held for their Drop
        struct Bad(A128, Tracked);
        impl Drop for Bad {
            fn drop(&mut self) {
                panic!("bad drop");
            }
        }
        let log = DropLog::default();
        let thread = ste::Thread::new().unwrap();
        let worker = thread.submit(|| std::thread::current().id()).unwrap();
        thread.drop(Heavy(a4096(1), log.tracked(1))).unwrap();
        assert_eq!(log.drops_of(1), [worker]);
        let err = thread.drop(Bad(a128(1), log.tracked(2))).unwrap_err();
        assert_eq!(message(err), "bad drop");
        assert_eq!(log.drops_of(2), [worker]);
        thread.drop(()).unwrap();
        thread.join().unwrap();
    });
}

// ---------------------------------------------------------------------------
// Re-entrancy and nesting

/// Submits nested on the worker run inline (several levels deep, with
/// over-aligned captures and results, a nested panic, a nested
/// `Thread::drop`, and a capture whose `Drop` itself submits on the
/// worker).
#[test]
fn reentrant_submits_nest_inline() {
    guarded("reentrant_submits_nest_inline", || {
        struct SubmitsOnDrop<'a>(&'a ste::Thread, &'a AtomicUsize);
        impl Drop for SubmitsOnDrop<'_> {
            fn drop(&mut self) {
                let n = self.1;
                self.0.submit(|| n.fetch_add(1, Ordering::SeqCst)).unwrap();
            }
        }
        let log = DropLog::default();
        let thread = ste::Thread::new().unwrap();
        let worker = thread.submit(|| std::thread::current().id()).unwrap();
        let on_drop = AtomicUsize::new(0);
        let t = &thread;
        let l = &log;
        let n = &on_drop;
        let sod = SubmitsOnDrop(t, n);
        let out = thread
            .submit(move || {
                let _keep = &sod;
                let c = a128(3);
                let inner = t
                    .submit(move || {
                        let d = a4096(4);
                        t.submit(move || (c, d.tag + 1)).unwrap()
                    })
                    .unwrap();
                let nested = message(t.submit(|| panic!("nested")).unwrap_err());
                t.drop(l.tracked(7)).unwrap();
                t.drop(SubmitsOnDrop(t, n)).unwrap();
                (inner, nested)
            })
            .unwrap();
        assert_eq!(out, ((a128(3), 5), "nested".to_string()));
        assert_eq!(log.drops_of(7), [worker]);
        assert_eq!(on_drop.load(Ordering::SeqCst), 2);
        thread.join().unwrap();
    });
}

/// Worker A's task submits to worker B (A's task frame holds the stack
/// task; A's thread parks on its own submit parker while B works).
#[test]
fn submit_from_a_task_of_another_worker() {
    guarded("submit_from_a_task_of_another_worker", || {
        let a = ste::Thread::new().unwrap();
        let b = ste::Thread::new().unwrap();
        let b_id = b.submit(|| std::thread::current().id()).unwrap();
        for round in 0..iters(10, 2) {
            let park = round % 2 == 0;
            let (on, out) = a
                .submit(|| {
                    let c = a4096(round as u64);
                    b.submit(move || {
                        if park {
                            make_the_caller_park();
                        }
                        (std::thread::current().id(), a128(c.tag as u8))
                    })
                    .unwrap()
                })
                .unwrap();
            assert_eq!(on, b_id);
            assert_eq!(out, a128(round as u8));
        }
        drop(b);
        a.join().unwrap();
    });
}

// ---------------------------------------------------------------------------
// Frame lifetime and concurrency

/// One submit in its own frame, which dies right after (Miri: any late
/// access by the worker is a use-after-free). The closure writes through a
/// `&mut` into the caller's frame, and the caller overwrites that frame
/// right after `submit` returns (Miri: a data race if the worker still
/// touched it).
#[inline(never)]
fn one_round_trip(thread: &ste::Thread, round: usize, park: bool) -> A4096 {
    let mut target = a4096(0);
    let big = a128(round as u8);
    let r = thread
        .submit(|| {
            if park {
                make_the_caller_park();
            }
            target.tag = u64::from(big.0[0]) + 1;
            target.bytes = [big.0[1]; 40];
            a4096(target.tag * 2)
        })
        .unwrap();
    assert_eq!(target.tag, round as u64 % 256 + 1);
    target = a4096(u64::MAX);
    assert_eq!(target.tag, u64::MAX);
    r
}

#[test]
fn caller_frame_dies_right_after_done() {
    guarded("caller_frame_dies_right_after_done", || {
        let thread = ste::Thread::new().unwrap();
        for round in 0..iters(200, 4) {
            let park = round % 4 == 3;
            let r = one_round_trip(&thread, round, park);
            assert_eq!(r.tag, (round as u64 % 256 + 1) * 2);
            // Reuse the same stack region with different contents at once.
            let _ = std::hint::black_box([round as u8; 8192]);
        }
        thread.join().unwrap();
    });
}

/// Many submitters at once, mixing shapes (small, over-aligned, panicking,
/// parking) and spawns: every result is right, every spawn of a submitter
/// ran before its next submit (FIFO across kinds), nothing is lost.
#[test]
#[cfg_attr(
    miri,
    ignore = "many threads and iterations; the Miri variant is below"
)]
fn many_submitters_with_mixed_shapes() {
    guarded("many_submitters_with_mixed_shapes", || {
        many_submitters(6, 600);
    });
}

#[test]
fn few_submitters_with_mixed_shapes() {
    guarded("few_submitters_with_mixed_shapes", || {
        many_submitters(2, iters(50, 4));
    });
}

fn many_submitters(threads: usize, rounds: usize) {
    let thread = ste::Thread::new().unwrap();
    let spawned: Vec<AtomicUsize> = (0..threads).map(|_| AtomicUsize::new(0)).collect();
    let spawned = Arc::new(spawned);
    std::thread::scope(|s| {
        for who in 0..threads {
            let thread = &thread;
            let spawned = Arc::clone(&spawned);
            s.spawn(move || {
                let mut my_spawns = 0;
                for round in 0..rounds {
                    if round % 3 == 0 {
                        let sp = Arc::clone(&spawned);
                        thread
                            .spawn(move || {
                                sp[who].fetch_add(1, Ordering::SeqCst);
                            })
                            .unwrap();
                        my_spawns += 1;
                    }
                    let seen = &spawned[who];
                    match round % 5 {
                        0 => {
                            let c = a4096(round as u64);
                            let (r, n) = thread
                                .submit(move || (a128(c.tag as u8), seen.load(Ordering::SeqCst)))
                                .unwrap();
                            assert_eq!(r, a128(round as u8));
                            assert_eq!(n, my_spawns, "a spawn overtaken by a submit");
                        }
                        1 => {
                            let err = thread
                                .submit(|| -> A128 { panic!("r{round}") })
                                .unwrap_err();
                            assert_eq!(message(err), format!("r{round}"));
                        }
                        2 if round % 25 == 2 => {
                            let n = thread
                                .submit(|| {
                                    make_the_caller_park();
                                    seen.load(Ordering::SeqCst)
                                })
                                .unwrap();
                            assert_eq!(n, my_spawns);
                        }
                        _ => {
                            let x = round * 7 + who;
                            assert_eq!(thread.submit(move || x + 1).unwrap(), x + 1);
                        }
                    }
                }
            });
        }
    });
    thread.join().unwrap();
    let expected = rounds.div_ceil(3);
    for n in spawned.iter() {
        assert_eq!(n.load(Ordering::SeqCst), expected);
    }
}

/// The last `Arc<Thread>` is dropped (joining the worker) by whichever
/// submitter finishes last, right after its own spawns and `Tagged` drops
/// (sent home): every node pushed before the shutdown runs, each `Tagged`
/// is dropped on the worker, nothing is leaked.
#[test]
fn shutdown_racing_in_flight_spawns_and_tagged_drops() {
    guarded("shutdown_racing_in_flight_spawns_and_tagged_drops", || {
        let threads = iters(4, 2);
        let per = iters(50, 3);
        for _ in 0..iters(10, 1) {
            let log = DropLog::default();
            let ran = Arc::new(AtomicUsize::new(0));
            let thread = Arc::new(ste::Thread::new().unwrap());
            let worker = thread.submit(|| std::thread::current().id()).unwrap();
            let mut tagged: Vec<Vec<ste::Tagged<Tracked>>> = Vec::new();
            for t in 0..threads {
                let l = log.clone();
                tagged.push(
                    thread
                        .submit(move || {
                            (0..per)
                                .map(|i| ste::Tagged::new(l.tracked((t * per + i) as u32)))
                                .collect()
                        })
                        .unwrap(),
                );
            }
            let handles: Vec<_> = tagged
                .into_iter()
                .map(|mine| {
                    let thread = Arc::clone(&thread);
                    let ran = Arc::clone(&ran);
                    std::thread::spawn(move || {
                        for value in mine {
                            let ran = Arc::clone(&ran);
                            thread
                                .spawn(move || {
                                    ran.fetch_add(1, Ordering::SeqCst);
                                })
                                .unwrap();
                            drop(value); // off-thread: sent home
                        }
                        let x = thread.submit(|| a4096(5)).unwrap();
                        assert_eq!(x.tag, 5);
                        drop(thread); // maybe the last one: joins
                    })
                })
                .collect();
            drop(thread);
            for h in handles {
                h.join().unwrap();
            }
            assert_eq!(ran.load(Ordering::SeqCst), threads * per);
            for id in 0..(threads * per) as u32 {
                assert_eq!(log.drops_of(id), [worker], "tagged {id}");
            }
        }
    });
}

/// `submit` from thread-local destructors, before and after the thread's
/// submit parker is destroyed, with a task long enough that the caller
/// parks (on a fresh parker when the cached one is gone) and an
/// over-aligned result.
#[test]
fn submit_from_thread_local_destructors_parks_and_returns() {
    guarded(
        "submit_from_thread_local_destructors_parks_and_returns",
        || {
            struct AtExit(Arc<ste::Thread>, mpsc::Sender<(A4096, A128)>);
            impl Drop for AtExit {
                fn drop(&mut self) {
                    let c = a128(11);
                    let r = self
                        .0
                        .submit(move || {
                            make_the_caller_park();
                            (a4096(12), c)
                        })
                        .unwrap();
                    self.1.send(r).unwrap();
                }
            }
            std::thread_local! {
                static AT_EXIT: std::cell::RefCell<Option<AtExit>> =
                    const { std::cell::RefCell::new(None) };
            }
            let thread = Arc::new(ste::Thread::new().unwrap());
            let (tx, rx) = mpsc::channel();
            for order in 0..3 {
                let t = Arc::clone(&thread);
                let tx = tx.clone();
                std::thread::spawn(move || {
                    match order {
                        // Our destructor registered first, the parker's after.
                        0 => {
                            AT_EXIT.with(|a| *a.borrow_mut() = Some(AtExit(Arc::clone(&t), tx)));
                            t.submit(|| ()).unwrap();
                        }
                        // The parker's first, ours after.
                        1 => {
                            t.submit(|| ()).unwrap();
                            AT_EXIT.with(|a| *a.borrow_mut() = Some(AtExit(Arc::clone(&t), tx)));
                        }
                        // The parker first used from the destructor.
                        _ => AT_EXIT.with(|a| *a.borrow_mut() = Some(AtExit(Arc::clone(&t), tx))),
                    }
                    drop(t);
                })
                .join()
                .unwrap();
                assert_eq!(rx.recv().unwrap(), (a4096(12), a128(11)), "order {order}");
            }
            drop(tx);
        },
    );
}

// ---------------------------------------------------------------------------
// submit_async

/// An over-aligned future with an over-aligned output, pending twice
/// (each poll a round trip, one of them parking): polled on the worker,
/// its state intact and aligned in place across polls, dropped once on
/// the polling thread.
#[test]
fn submit_async_with_overaligned_future_and_output() {
    guarded("submit_async_with_overaligned_future_and_output", || {
        #[repr(C, align(4096))]
        struct Slow {
            polls: u8,
            state: A128,
            worker: ThreadId,
            addr: usize,
            _probe: Tracked,
        }
        impl Future for Slow {
            type Output = (A128, bool);
            fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<(A128, bool)> {
                // SAFETY: nothing is moved out of the pinned future.
                let this = unsafe { self.get_unchecked_mut() };
                let here = addr_of(this);
                let fine = std::thread::current().id() == this.worker
                    && here % 4096 == 0
                    && (this.addr == 0 || this.addr == here);
                assert!(fine, "polled off the worker, misaligned, or moved");
                this.addr = here;
                if this.polls == 1 {
                    make_the_caller_park();
                }
                if this.polls < 2 {
                    this.polls += 1;
                    this.state.0[0] = this.state.0[0].wrapping_add(1);
                    cx.waker().wake_by_ref();
                    return Poll::Pending;
                }
                Poll::Ready((this.state, true))
            }
        }
        let log = DropLog::default();
        let thread = ste::Thread::new().unwrap();
        let worker = thread.submit(|| std::thread::current().id()).unwrap();
        let me = std::thread::current().id();
        let fut = Slow {
            polls: 0,
            state: a128(0),
            worker,
            addr: 0,
            _probe: log.tracked(1),
        };
        let (out, ok) = sync_core::future::block_on(thread.submit_async(fut)).unwrap();
        assert!(ok);
        let mut expected = a128(0);
        expected.0[0] = 2;
        assert_eq!(out, expected);
        assert_eq!(log.drops_of(1), [me]);
        thread.join().unwrap();
    });
}

/// A future that panics on its second poll: the error comes back, the
/// future is dropped exactly once (on the polling thread), the worker
/// serves on.
#[test]
fn submit_async_future_that_panics_midway() {
    guarded("submit_async_future_that_panics_midway", || {
        #[allow(dead_code)] // held for their Drop
        struct Midway(u8, A4096, Tracked);
        impl Future for Midway {
            type Output = u8;
            fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<u8> {
                // SAFETY: nothing is moved out of the pinned future.
                let this = unsafe { self.get_unchecked_mut() };
                this.0 += 1;
                if this.0 == 2 {
                    panic!("midway");
                }
                cx.waker().wake_by_ref();
                Poll::Pending
            }
        }
        let log = DropLog::default();
        let thread = ste::Thread::new().unwrap();
        let me = std::thread::current().id();
        let err =
            sync_core::future::block_on(thread.submit_async(Midway(0, a4096(1), log.tracked(1))))
                .unwrap_err();
        assert_eq!(message(err), "midway");
        assert_eq!(log.drops_of(1), [me]);
        assert_eq!(thread.submit(|| 8).unwrap(), 8);
        thread.join().unwrap();
    });
}
