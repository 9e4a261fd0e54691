//! Review 6: a thread name with a NUL byte panics in `build` (std's message;
//! no hook runs) without leaking
//! the hooks and without leaving this thread's submit parker (shared by
//! `build` and `submit`) in a state that breaks the next build or submit.

mod common;

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicUsize, Ordering};

/// Counts its drops: tells a hook dropped from one leaked.
struct Counted(&'static AtomicUsize);

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

fn nul_build(drops: &'static AtomicUsize, runs: &'static AtomicUsize) {
    let (pre, post) = (Counted(drops), Counted(drops));
    let payload = catch_unwind(AssertUnwindSafe(|| {
        ste::Builder::new()
            .name("x\0y")
            .prelude(move || {
                let _keep = &pre;
                runs.fetch_add(1, Ordering::SeqCst);
            })
            .postlude(move || {
                let _keep = &post;
                runs.fetch_add(1, Ordering::SeqCst);
            })
            .build()
    }))
    .expect_err("a NUL byte in the name is refused");
    let message = payload
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| payload.downcast_ref::<&str>().copied())
        .unwrap_or_default();
    assert!(
        message.contains("null bytes"),
        "unexpected panic: {message:?}"
    );
}

#[test]
fn nul_name_then_a_normal_build_and_submits_on_the_same_thread() {
    let _w = common::watchdog("nul_name_then_a_normal_build_and_submits_on_the_same_thread");
    static DROPS: AtomicUsize = AtomicUsize::new(0);
    static RUNS: AtomicUsize = AtomicUsize::new(0);
    // Twice, and with a submit in between so the thread's submit parker is
    // already allocated the second time.
    nul_build(&DROPS, &RUNS);
    assert_eq!(DROPS.load(Ordering::SeqCst), 2, "prelude/postlude leaked");
    assert_eq!(RUNS.load(Ordering::SeqCst), 0, "a hook ran");

    let first = ste::Builder::new().name("ok").build().unwrap();
    assert_eq!(first.submit(|| 1 + 1).unwrap(), 2);
    nul_build(&DROPS, &RUNS);
    assert_eq!(DROPS.load(Ordering::SeqCst), 4, "prelude/postlude leaked");
    assert_eq!(RUNS.load(Ordering::SeqCst), 0, "a hook ran");
    // The submit parker still works for submits on the running thread...
    for i in 0..if cfg!(miri) { 20 } else { 1000u32 } {
        assert_eq!(first.submit(move || i * 2).unwrap(), i * 2);
    }
    // ...and for a build (which parks on it until the prelude ran).
    static PRELUDE: AtomicUsize = AtomicUsize::new(0);
    let second = ste::Builder::new()
        .name("ok2")
        .prelude(|| {
            PRELUDE.fetch_add(1, Ordering::SeqCst);
        })
        .build()
        .unwrap();
    assert_eq!(PRELUDE.load(Ordering::SeqCst), 1);
    let name = second
        .submit(|| std::thread::current().name().map(String::from))
        .unwrap();
    assert_eq!(name.as_deref(), Some("ok2"));
    first.join().unwrap();
    second.join().unwrap();
}

/// The same from a submit running on an ste worker (a nested build): the
/// worker survives the caught panic and keeps serving.
#[test]
fn nul_name_build_inside_a_worker() {
    let _w = common::watchdog("nul_name_build_inside_a_worker");
    static DROPS: AtomicUsize = AtomicUsize::new(0);
    static RUNS: AtomicUsize = AtomicUsize::new(0);
    let outer = ste::Thread::new().unwrap();
    outer
        .submit(|| {
            nul_build(&DROPS, &RUNS);
            let inner = ste::Thread::new().unwrap();
            assert_eq!(inner.submit(|| 7).unwrap(), 7);
            inner.join().unwrap();
        })
        .unwrap();
    assert_eq!(DROPS.load(Ordering::SeqCst), 2);
    assert_eq!(RUNS.load(Ordering::SeqCst), 0);
    assert_eq!(outer.submit(|| 3).unwrap(), 3);
    outer.join().unwrap();
}
