//! Pitfalls: a task's panic payload reaches the caller intact, a panicking
//! task does not kill the worker, and a payload whose `Drop` panics does not
//! hang anyone.

mod common;

use std::panic::{AssertUnwindSafe, catch_unwind, panic_any};
use std::sync::atomic::{AtomicUsize, Ordering};

#[derive(Debug, PartialEq)]
struct Custom {
    code: u32,
    note: String,
}

#[test]
fn task_panic_payload_is_preserved_and_resumable() {
    let _w = common::watchdog("task_panic_payload_is_preserved_and_resumable");
    let thread = ste::Thread::new().unwrap();
    let err = thread
        .submit(|| {
            panic_any(Custom {
                code: 7,
                note: "original".into(),
            })
        })
        .unwrap_err();
    assert!(err.is_panic() && !err.is_shut_down());
    let payload = err.into_panic().unwrap().into_payload();
    let custom = payload
        .downcast::<Custom>()
        .expect("payload type preserved");
    assert_eq!(
        *custom,
        Custom {
            code: 7,
            note: "original".into()
        }
    );

    // Resuming re-raises the very same payload on the caller.
    let answer = std::hint::black_box(42);
    let err = thread.submit(|| panic!("formatted {answer}")).unwrap_err();
    assert_eq!(
        err.to_string(),
        "task panicked on the ste thread: formatted 42"
    );
    let resumed =
        catch_unwind(AssertUnwindSafe(|| err.into_panic().unwrap().resume())).unwrap_err();
    assert_eq!(
        resumed.downcast_ref::<String>().map(String::as_str),
        Some("formatted 42")
    );

    // The worker survived both.
    assert_eq!(thread.submit(|| 1 + 1).unwrap(), 2);
    thread.join().unwrap();
}

#[test]
fn errors_box_into_send_sync_error() {
    let _w = common::watchdog("errors_box_into_send_sync_error");
    fn run() -> Result<(), Box<dyn std::error::Error + Send + Sync + 'static>> {
        let thread = ste::Thread::new()?;
        thread.submit(|| panic!("boxed"))?;
        Ok(())
    }
    let err = run().unwrap_err();
    assert_eq!(err.to_string(), "task panicked on the ste thread: boxed");
}

/// Panics (with a `&str`) when dropped.
struct Bomb(&'static AtomicUsize);

impl Drop for Bomb {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
        panic!("the payload's own Drop panicked");
    }
}

#[test]
fn payload_whose_drop_panics_in_a_spawned_task_does_not_hang_anyone() {
    let _w = common::watchdog("payload_whose_drop_panics_in_a_spawned_task_does_not_hang_anyone");
    static DROPS: AtomicUsize = AtomicUsize::new(0);
    let thread = ste::Thread::new().unwrap();
    // Nobody waits for a spawned task: the worker drops the payload itself.
    for _ in 0..3 {
        thread.spawn(|| panic_any(Bomb(&DROPS))).unwrap();
    }
    assert_eq!(thread.submit(|| "still alive").unwrap(), "still alive");
    assert_eq!(DROPS.load(Ordering::SeqCst), 3);
    thread.join().unwrap();
}

#[test]
fn payload_whose_drop_panics_returned_to_the_caller() {
    let _w = common::watchdog("payload_whose_drop_panics_returned_to_the_caller");
    static DROPS: AtomicUsize = AtomicUsize::new(0);
    let thread = ste::Thread::new().unwrap();
    let err = thread.submit(|| panic_any(Bomb(&DROPS))).unwrap_err();
    // Dropping the error panics on *this* thread (it owns the payload)...
    assert!(catch_unwind(AssertUnwindSafe(|| drop(err))).is_err());
    assert_eq!(DROPS.load(Ordering::SeqCst), 1);
    // ...and the worker is unaffected.
    assert_eq!(thread.submit(|| 5).unwrap(), 5);
    thread.join().unwrap();
}

#[test]
fn destructor_panicking_in_thread_drop_is_reported() {
    let _w = common::watchdog("destructor_panicking_in_thread_drop_is_reported");
    static DROPS: AtomicUsize = AtomicUsize::new(0);
    let thread = ste::Thread::new().unwrap();
    let err = thread.drop(Bomb(&DROPS)).unwrap_err();
    assert_eq!(
        err.into_panic().unwrap().message(),
        Some("the payload's own Drop panicked")
    );
    assert_eq!(DROPS.load(Ordering::SeqCst), 1);
    assert_eq!(thread.submit(|| 5).unwrap(), 5);
    thread.join().unwrap();
}

#[test]
fn prelude_panic_fails_build_with_its_payload() {
    let _w = common::watchdog("prelude_panic_fails_build_with_its_payload");
    let err = ste::Builder::new()
        .prelude(|| {
            panic_any(Custom {
                code: 1,
                note: "prelude".into(),
            })
        })
        .postlude(|| unreachable!("no postlude after a failed prelude"))
        .build()
        .unwrap_err();
    let custom = err
        .into_panic()
        .unwrap()
        .into_payload()
        .downcast::<Custom>()
        .unwrap();
    assert_eq!(custom.note, "prelude");
}

#[test]
fn postlude_panic_is_reported_by_join() {
    let _w = common::watchdog("postlude_panic_is_reported_by_join");
    let thread = ste::Builder::new()
        .postlude(|| panic!("postlude"))
        .build()
        .unwrap();
    thread.submit(|| ()).unwrap();
    let err = thread.join().unwrap_err();
    assert_eq!(err.into_panic().unwrap().message(), Some("postlude"));

    // Without `join`, `drop` swallows it (and a panicking payload drop).
    static DROPS: AtomicUsize = AtomicUsize::new(0);
    let thread = ste::Builder::new()
        .postlude(|| panic_any(Bomb(&DROPS)))
        .build()
        .unwrap();
    drop(thread);
    assert_eq!(DROPS.load(Ordering::SeqCst), 1);
}
