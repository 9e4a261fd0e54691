//! Shutdown: `drop` waits, `join` reports, dropping on the worker itself
//! does not deadlock.

mod common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, mpsc};

#[test]
fn drop_without_join_runs_queued_work_and_postlude_then_waits() {
    let _w = common::watchdog("drop_without_join_runs_queued_work_and_postlude_then_waits");
    let done = Arc::new(AtomicUsize::new(0));
    let post = Arc::new(AtomicBool::new(false));
    let p = post.clone();
    let thread = ste::Builder::new()
        .name("ste-shutdown-test")
        .postlude(move || p.store(true, Ordering::SeqCst))
        .build()
        .unwrap();
    let n = common::iters(100, 5);
    for _ in 0..n {
        let done = done.clone();
        thread
            .spawn(move || {
                done.fetch_add(1, Ordering::SeqCst);
            })
            .unwrap();
    }
    drop(thread);
    assert_eq!(
        done.load(Ordering::SeqCst),
        n,
        "queued tasks run before shutdown"
    );
    assert!(post.load(Ordering::SeqCst), "drop waited for the postlude");
}

/// The last handle is dropped (or joined) by a task on its own worker: it
/// asks the worker to stop after that task, detaches, and returns.
fn shut_down_from_inside(join: bool) {
    let (post_tx, post_rx) = mpsc::channel();
    let thread = ste::Builder::new()
        .postlude(move || post_tx.send(std::thread::current().id()).unwrap())
        .build()
        .unwrap();
    let worker = thread.submit(|| std::thread::current().id()).unwrap();
    let (handle_tx, handle_rx) = mpsc::channel::<ste::Thread>();
    let (res_tx, res_rx) = mpsc::channel();
    thread
        .spawn(move || {
            let me = handle_rx.recv().unwrap();
            assert!(me.tag().is_current());
            if join {
                res_tx.send(me.join().is_ok()).unwrap();
            } else {
                drop(me);
                res_tx.send(true).unwrap();
            }
        })
        .unwrap();
    handle_tx.send(thread).unwrap();
    let timeout = std::time::Duration::from_secs(30);
    assert!(res_rx.recv_timeout(timeout).expect("the task finished"));
    assert_eq!(
        post_rx.recv_timeout(timeout).expect("the worker shut down"),
        worker
    );
}

#[test]
#[cfg_attr(miri, ignore)] // the worker is detached: it may outlive the test
fn drop_from_inside_its_own_worker_does_not_deadlock() {
    let _w = common::watchdog("drop_from_inside_its_own_worker_does_not_deadlock");
    shut_down_from_inside(false);
}

#[test]
#[cfg_attr(miri, ignore)] // the worker is detached: it may outlive the test
fn join_from_inside_its_own_worker_returns() {
    let _w = common::watchdog("join_from_inside_its_own_worker_returns");
    shut_down_from_inside(true);
}

#[test]
fn many_threads_start_and_stop() {
    let _w = common::watchdog("many_threads_start_and_stop");
    for i in 0..common::iters(100, 3) {
        let thread = ste::Thread::new().unwrap();
        if i % 2 == 0 {
            assert_eq!(thread.submit(|| i).unwrap(), i);
        }
        if i % 3 == 0 {
            thread.join().unwrap();
        }
    }
}
