//! Hostile review 4 of ste: foreign code run while already unwinding or
//! after the joiner is gone; sibling paths of earlier fixes.
//!
//! Finding 1 failed on dd9dfa3 (the process aborted) and passes since the
//! fix: a detached worker drops its postlude's payload itself
//! (`drop_payload`). The other tests are attacks that held.

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::Duration;

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

/// Runs `body` on its own thread; fails with "hang" after 20 s.
fn guarded<R: Send + 'static>(name: &str, body: impl FnOnce() -> R + Send + 'static) -> R {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(body());
    });
    match rx.recv_timeout(Duration::from_secs(20)) {
        Ok(r) => r,
        Err(e) => panic!("{name}: hang ({e})"),
    }
}

/// A panic payload whose own `Drop` panics.
struct PanicsOnDrop;

impl Drop for PanicsOnDrop {
    fn drop(&mut self) {
        panic!("review4: payload drop panics");
    }
}

// ---------------------------------------------------------------------------
// Finding 1

/// Set by a thread-local destructor on the worker: runs after the worker's
/// main function returned and std dropped (or would drop) its result.
static WORKER_TLS_GONE: AtomicBool = AtomicBool::new(false);

struct MarkOnDrop;

impl Drop for MarkOnDrop {
    fn drop(&mut self) {
        WORKER_TLS_GONE.store(true, Ordering::SeqCst);
    }
}

thread_local! {
    static MARK: MarkOnDrop = const { MarkOnDrop };
}

/// The scenario of finding 1 (run only in a child process).
#[test]
#[ignore = "child of finding1: run by the finding's test in a child process"]
fn finding1_child() {
    if std::env::var_os("REVIEW4_CHILD").is_none() {
        return;
    }
    let thread = ste::Builder::new()
        .prelude(|| MARK.with(|_| ()))
        .postlude(|| std::panic::panic_any(PanicsOnDrop))
        .build()
        .unwrap();
    // The worker receives its own last handle and drops it: `shut_down`
    // on the worker detaches (drops the `JoinHandle`) and returns.
    let (tx, rx) = mpsc::channel::<ste::Thread>();
    thread.spawn(move || drop(rx.recv().unwrap())).unwrap();
    tx.send(thread).unwrap();
    // The worker drains, runs the postlude (which panics with a payload
    // whose `Drop` panics) and returns `Err(payload)` from its main
    // function. Nobody will ever join it, so std drops that result on the
    // worker, inside `catch_unwind`, and aborts the process when the drop
    // panics: "fatal runtime error: thread result panicked on drop".
    for _ in 0..2000 {
        if WORKER_TLS_GONE.load(Ordering::SeqCst) {
            return; // the worker exited and the process is still alive
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("hang: the detached worker never exited");
}

/// REVIEW4 FINDING 1 (abort): a worker detached by dropping (or joining)
/// its last `Thread` handle from one of its own tasks (thread.rs,
/// `shut_down`: `drop(handle); return Ok(())`) still returns the
/// postlude's panic payload from `worker_main` (`exit`). With the
/// `JoinHandle` gone, std drops that `Result` when the thread ends, and a
/// payload whose `Drop` panics aborts the whole process ("thread result
/// panicked on drop"). Everywhere else ste contains such payloads
/// (`drop_payload`; the crate docs: "a payload whose own `Drop` panics is
/// contained"). Fix: when detached, the worker should `drop_payload` the
/// postlude's payload itself instead of returning it to nobody.
#[test]
#[cfg_attr(miri, ignore = "spawns a child process")]
fn finding1_detached_worker_postlude_payload_panicking_on_drop_aborts() {
    assert!(
        child_exits_cleanly("finding1_child"),
        "the process aborted: the detached worker's result panicked on drop"
    );
}

// ---------------------------------------------------------------------------
// Attacks that held

/// The same payload returned to a joiner: `join` hands it over intact
/// (`Thread::drop` contains it with `drop_payload`), including when the
/// handle is dropped while this thread is already unwinding.
#[test]
fn postlude_payload_panicking_on_drop_reaches_join_and_drop() {
    guarded("postlude_payload", || {
        let thread = ste::Builder::new()
            .postlude(|| std::panic::panic_any(PanicsOnDrop))
            .build()
            .unwrap();
        let err = thread.join().unwrap_err();
        let payload = err.into_panic().unwrap().into_payload();
        assert!(payload.is::<PanicsOnDrop>());
        let again = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| drop(payload)));
        assert!(again.is_err(), "the caller sees the drop's panic");

        // Dropped by an unwind: the joiner drops the payload while
        // panicking; `drop_payload` catches the nested panic (no abort).
        let unwound = std::panic::catch_unwind(|| {
            let _thread = ste::Builder::new()
                .postlude(|| std::panic::panic_any(PanicsOnDrop))
                .build()
                .unwrap();
            panic!("review4: outer panic");
        });
        assert!(unwound.is_err());
    });
}

/// `submit_async` futures polled with a different waker on every poll,
/// leaked with `mem::forget` between polls and dropped mid-flight; every
/// round trip is a blocking poll, so the worker never touches a leaked or
/// dropped future again, and the worker keeps serving.
#[test]
fn submit_async_changing_wakers_leaked_and_dropped_mid_flight() {
    use std::future::{Future, poll_fn};
    use std::pin::pin;
    use std::task::{Context, Poll, Waker};
    guarded("submit_async_changing_wakers", || {
        let thread = ste::Thread::new().unwrap();
        let polls = AtomicUsize::new(0);
        {
            let fut = thread.submit_async(poll_fn(|cx| {
                cx.waker().wake_by_ref();
                if polls.fetch_add(1, Ordering::SeqCst) < 3 {
                    Poll::Pending
                } else {
                    Poll::Ready(ste::Tag::current())
                }
            }));
            let mut fut = pin!(fut);
            let mut out = None;
            for _ in 0..10 {
                let waker = Waker::from(Arc::new(Noop));
                if let Poll::Ready(v) = fut.as_mut().poll(&mut Context::from_waker(&waker)) {
                    out = Some(v.unwrap());
                    break;
                }
            }
            assert_eq!(out, Some(Some(thread.tag())));
        }
        // Leaked after one pending poll (not under Miri: its leak checker
        // would report the deliberate leak).
        if !cfg!(miri) {
            let mut boxed = Box::pin(thread.submit_async(std::future::pending::<()>()));
            assert!(
                boxed
                    .as_mut()
                    .poll(&mut Context::from_waker(Waker::noop()))
                    .is_pending()
            );
            std::mem::forget(boxed);
        }
        // Dropped after one pending poll (the inner future dropped here).
        let dropped = Arc::new(AtomicBool::new(false));
        struct Flag(Arc<AtomicBool>);
        impl Drop for Flag {
            fn drop(&mut self) {
                self.0.store(true, Ordering::SeqCst);
            }
        }
        let flag = Flag(Arc::clone(&dropped));
        let mut f = Box::pin(thread.submit_async(async move {
            let _flag = flag;
            std::future::pending::<()>().await
        }));
        assert!(
            f.as_mut()
                .poll(&mut Context::from_waker(Waker::noop()))
                .is_pending()
        );
        drop(f);
        assert!(dropped.load(Ordering::SeqCst));
        assert_eq!(thread.submit(|| 7).unwrap(), 7);
        thread.join().unwrap();
    });
}

struct Noop;
impl std::task::Wake for Noop {
    fn wake(self: Arc<Self>) {}
}

/// A `Thread` handle dropped while its owner is unwinding, with tasks
/// queued by other submitters and `Tagged` values dropped off-thread
/// meanwhile: the queued work runs, nothing aborts or hangs.
#[test]
fn thread_dropped_during_unwind_with_queued_work() {
    guarded("thread_dropped_during_unwind", || {
        let ran = Arc::new(AtomicUsize::new(0));
        let r = Arc::clone(&ran);
        let unwound = std::panic::catch_unwind(move || {
            let thread = ste::Thread::new().unwrap();
            let tagged = thread.submit(|| ste::Tagged::new(5u8)).unwrap();
            for _ in 0..10 {
                let r = Arc::clone(&r);
                thread
                    .spawn(move || {
                        r.fetch_add(1, Ordering::SeqCst);
                    })
                    .unwrap();
            }
            drop(tagged);
            panic!("review4: owner unwinds with the handle alive");
        });
        assert!(unwound.is_err());
        assert_eq!(ran.load(Ordering::SeqCst), 10);
    });
}
