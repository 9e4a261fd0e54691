//! Pitfall: a `Tagged` dropped off its thread runs its destructor on the
//! owner (or is leaked if the owner is gone), never on the dropping thread.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::ThreadId;

/// Records the thread its destructor ran on.
struct RecordsDrop {
    dropped_on: Arc<Mutex<Vec<ThreadId>>>,
    /// Heap memory and a `!Send` part: a leak, a double drop or an
    /// off-thread drop would show (Miri, or the assertions).
    _payload: std::rc::Rc<String>,
}

impl Drop for RecordsDrop {
    fn drop(&mut self) {
        self.dropped_on
            .lock()
            .unwrap()
            .push(std::thread::current().id());
    }
}

#[test]
fn dropped_off_thread_runs_destructor_on_owner() {
    let _w = common::watchdog("dropped_off_thread_runs_destructor_on_owner");
    let thread = ste::Thread::new().unwrap();
    let worker = thread.submit(|| std::thread::current().id()).unwrap();
    let log = Arc::new(Mutex::new(Vec::new()));
    let make = || {
        let log = log.clone();
        thread
            .submit(move || {
                ste::Tagged::new(RecordsDrop {
                    dropped_on: log,
                    _payload: std::rc::Rc::new("heap".to_string()),
                })
            })
            .unwrap()
    };

    // Dropped on the submitting thread.
    drop(make());
    // Dropped on yet another thread.
    let other = make();
    std::thread::spawn(move || drop(other)).join().unwrap();
    // Dropped synchronously through `Thread::drop`.
    thread.drop(make()).unwrap();
    // Dropped inside a task: in place.
    let local = make();
    thread.submit(move || drop(local)).unwrap();

    // Send-backs are queued FIFO: a submit after them sees them done.
    thread.submit(|| ()).unwrap();
    assert_eq!(*log.lock().unwrap(), vec![worker; 4]);
    thread.join().unwrap();
}

#[test]
#[cfg_attr(miri, ignore)] // leaks on purpose
fn dropped_after_owner_is_gone_is_leaked_not_dropped_here() {
    let _w = common::watchdog("dropped_after_owner_is_gone_is_leaked_not_dropped_here");
    static DROPPED: AtomicBool = AtomicBool::new(false);
    struct Flag;
    impl Drop for Flag {
        fn drop(&mut self) {
            DROPPED.store(true, Ordering::SeqCst);
        }
    }
    let thread = ste::Thread::new().unwrap();
    let flag = thread
        .submit(|| ste::Tagged::new((Flag, vec![0u8; 16])))
        .unwrap();
    thread.join().unwrap();
    drop(flag);
    assert!(
        !DROPPED.load(Ordering::SeqCst),
        "destructor ran off its thread"
    );
}

#[test]
fn dropped_off_thread_while_worker_shuts_down_never_runs_here() {
    let _w = common::watchdog("dropped_off_thread_while_worker_shuts_down_never_runs_here");
    // Racing the owner's shutdown: either it is delivered (and dropped on
    // the worker) or the owner has closed (and it is leaked). The value
    // owns no heap memory, so a leak is invisible to Miri's leak checker.
    for _ in 0..common::iters(50, 2) {
        let thread = ste::Thread::new().unwrap();
        let worker = thread.submit(|| std::thread::current().id()).unwrap();
        struct Where(&'static Mutex<Option<ThreadId>>);
        impl Drop for Where {
            fn drop(&mut self) {
                *self.0.lock().unwrap() = Some(std::thread::current().id());
            }
        }
        static SLOT: Mutex<Option<ThreadId>> = Mutex::new(None);
        *SLOT.lock().unwrap() = None;
        let value = thread.submit(|| ste::Tagged::new(Where(&SLOT))).unwrap();
        let dropper = std::thread::spawn(move || drop(value));
        thread.join().unwrap();
        dropper.join().unwrap();
        if let Some(on) = *SLOT.lock().unwrap() {
            assert_eq!(on, worker);
        }
    }
}
