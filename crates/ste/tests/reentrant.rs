//! Pitfall: a submit from inside a task on the same worker runs inline
//! instead of deadlocking.

mod common;

#[test]
fn nested_submit_runs_inline() {
    let _w = common::watchdog("nested_submit_runs_inline");
    let thread = ste::Thread::new().unwrap();
    let worker = thread.submit(|| std::thread::current().id()).unwrap();
    let mut n = 0;
    let (outer, inner) = thread
        .submit(|| {
            let inner = thread
                .submit(|| {
                    n += 1;
                    thread.submit(|| std::thread::current().id()).unwrap()
                })
                .unwrap();
            (std::thread::current().id(), inner)
        })
        .unwrap();
    assert_eq!(n, 1);
    assert_eq!(outer, worker);
    assert_eq!(inner, worker);
    thread.join().unwrap();
}

#[test]
fn nested_drop_and_submit_async_run_inline() {
    let _w = common::watchdog("nested_drop_and_submit_async_run_inline");
    let thread = ste::Thread::new().unwrap();
    let out = thread
        .submit(|| {
            thread.drop(String::from("dropped inline")).unwrap();
            sync_core::future::block_on(thread.submit_async(async { 7 })).unwrap()
        })
        .unwrap();
    assert_eq!(out, 7);
    thread.join().unwrap();
}

#[test]
fn nested_panic_is_reported_to_the_inner_call() {
    let _w = common::watchdog("nested_panic_is_reported_to_the_inner_call");
    let thread = ste::Thread::new().unwrap();
    let inner = thread
        .submit(|| {
            let err = thread.submit(|| panic!("inner")).unwrap_err();
            err.into_panic().unwrap().message().map(String::from)
        })
        .unwrap();
    assert_eq!(inner.as_deref(), Some("inner"));
    thread.join().unwrap();
}

/// A task spawned from a task runs after it (spawn never blocks).
#[test]
fn nested_spawn_runs_later() {
    let _w = common::watchdog("nested_spawn_runs_later");
    let thread = ste::Thread::new().unwrap();
    let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let l = log.clone();
    thread
        .submit(|| {
            let l2 = l.clone();
            thread
                .spawn(move || l2.lock().unwrap().push("spawned"))
                .unwrap();
            l.lock().unwrap().push("outer");
        })
        .unwrap();
    thread.submit(|| ()).unwrap();
    assert_eq!(*log.lock().unwrap(), ["outer", "spawned"]);
    thread.join().unwrap();
}
