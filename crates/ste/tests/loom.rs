//! Loom models of the submit handshake, the queue, and shutdown.
//!
//! `cargo xtask loom -p ste` runs them with `--cfg loom` (every interleaving
//! up to `LOOM_MAX_PREEMPTIONS`); a normal `cargo test` runs each once.
//! Payloads own heap memory so that a double drop or a leak shows.

use sync_core::sync::Arc;
use sync_core::thread;

/// One submitter, one worker: the closure borrows the caller's stack, the
/// result owns heap memory, the caller's frame is gone right after.
#[test]
fn submit_one_submitter() {
    let _w = testkit::watchdog("submit_one_submitter");
    sync_core::model(|| {
        let worker = ste::Thread::new().unwrap();
        let mut local = String::from("a");
        let out = worker
            .submit(|| {
                local.push('b');
                Box::new(vec![1u8, 2])
            })
            .unwrap();
        assert_eq!(local, "ab");
        assert_eq!(*out, vec![1, 2]);
        worker.join().unwrap();
    });
}

/// Two submitters race for the same worker.
#[test]
fn submit_two_submitters() {
    let _w = testkit::watchdog("submit_two_submitters");
    sync_core::model(|| {
        let worker = Arc::new(ste::Thread::new().unwrap());
        let other = {
            let worker = Arc::clone(&worker);
            thread::spawn(move || {
                let s = worker.submit(|| String::from("other")).unwrap();
                assert_eq!(s, "other");
            })
        };
        let v = worker.submit(|| vec![String::from("main")]).unwrap();
        assert_eq!(v, ["main"]);
        other.join().unwrap();
        match Arc::try_unwrap(worker) {
            Ok(worker) => worker.join().unwrap(),
            Err(_) => panic!("worker handle still shared"),
        }
    });
}

/// The queue: two producers push boxed tasks concurrently, one of them
/// follows with a blocking submit (which must see its own earlier task:
/// FIFO); every task runs exactly once, before shutdown completes.
///
/// The log is only ever touched by the worker (and by the main thread after
/// the worker is joined), so it is a std `Mutex`: never contended, and
/// invisible to loom, which keeps the model small.
#[test]
fn queue_two_producers() {
    let _w = testkit::watchdog("queue_two_producers");
    use std::sync::{Arc as StdArc, Mutex as StdMutex};
    sync_core::model(|| {
        let worker = Arc::new(ste::Thread::new().unwrap());
        let log = StdArc::new(StdMutex::new(Vec::<Box<u8>>::new()));
        let other = {
            let (worker, log) = (Arc::clone(&worker), StdArc::clone(&log));
            thread::spawn(move || {
                let l = StdArc::clone(&log);
                worker
                    .spawn(move || l.lock().unwrap().push(Box::new(1)))
                    .unwrap();
                let seen = worker
                    .submit(|| log.lock().unwrap().iter().any(|b| **b == 1))
                    .unwrap();
                assert!(seen, "FIFO: the earlier task ran first");
            })
        };
        let l = StdArc::clone(&log);
        worker
            .spawn(move || l.lock().unwrap().push(Box::new(0)))
            .unwrap();
        other.join().unwrap();
        match Arc::try_unwrap(worker) {
            Ok(worker) => worker.join().unwrap(),
            Err(_) => panic!("worker handle still shared"),
        }
        let mut seen: Vec<u8> = log.lock().unwrap().iter().map(|b| **b).collect();
        seen.sort_unstable();
        assert_eq!(seen, [0, 1]);
    });
}

/// Shutdown racing a push: a `Tagged` dropped on another thread is sent home
/// while the owner shuts down. Either it is delivered (and dropped on the
/// worker, exactly once) or the queue is already closed (and it is leaked,
/// never dropped off its thread). The possibly leaked value holds neither a
/// loom object nor heap memory (loom and Miri would rightly report the
/// documented leak), so it counts drops in a std atomic; the heap-owning
/// payloads are in the other models.
#[test]
fn shutdown_racing_a_push() {
    let _w = testkit::watchdog("shutdown_racing_a_push");
    use std::sync::atomic::{AtomicUsize, Ordering};
    static DROPPED_ON_WORKER: AtomicUsize = AtomicUsize::new(0);
    struct Home(ste::Tag);
    impl Drop for Home {
        fn drop(&mut self) {
            assert!(self.0.is_current(), "dropped off its worker");
            DROPPED_ON_WORKER.fetch_add(1, Ordering::Relaxed);
        }
    }
    sync_core::model(|| {
        let worker = ste::Thread::new().unwrap();
        let before = DROPPED_ON_WORKER.load(Ordering::Relaxed);
        let value = worker
            .submit(|| ste::Tagged::new(Home(ste::Tag::current().unwrap())))
            .unwrap();
        let dropper = thread::spawn(move || drop(value));
        worker.join().unwrap();
        dropper.join().unwrap();
        assert!(DROPPED_ON_WORKER.load(Ordering::Relaxed) - before <= 1);
    });
}

/// Shutdown racing a submit: the last handle is dropped by whichever thread
/// finishes last, possibly right after the other's submit completed.
#[test]
fn shutdown_racing_a_submit() {
    let _w = testkit::watchdog("shutdown_racing_a_submit");
    sync_core::model(|| {
        let worker = Arc::new(ste::Thread::new().unwrap());
        let other = {
            let worker = Arc::clone(&worker);
            thread::spawn(move || {
                let b = worker.submit(|| Box::new(1u32)).unwrap();
                assert_eq!(*b, 1);
                drop(worker); // may be the last handle: shuts down and waits
            })
        };
        let b = worker.submit(|| Box::new(2u32)).unwrap();
        assert_eq!(*b, 2);
        drop(worker);
        other.join().unwrap();
    });
}
