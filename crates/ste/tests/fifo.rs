//! Pitfall: tasks run in submission order, across submitters.

mod common;

use std::sync::{Arc, Mutex, mpsc};

/// While the worker is held by a gate task, several threads take turns to
/// queue work (each waits for the previous one's `spawn` to return, so the
/// submission order is known). The whole lot is then taken as one batch,
/// which must run in exactly that order.
#[test]
fn one_batch_from_many_submitters_runs_in_submission_order() {
    let _w = common::watchdog("one_batch_from_many_submitters_runs_in_submission_order");
    let thread = Arc::new(ste::Thread::new().unwrap());
    let log = Arc::new(Mutex::new(Vec::new()));
    let (open_gate, gate) = mpsc::channel::<()>();
    thread
        .spawn(move || {
            gate.recv().unwrap();
        })
        .unwrap();

    let submitters = 4;
    let per_submitter = common::iters(25, 3);
    let turn = Arc::new((Mutex::new(0usize), std::sync::Condvar::new()));
    let handles: Vec<_> = (0..submitters)
        .map(|me| {
            let (thread, log, turn) = (thread.clone(), log.clone(), turn.clone());
            std::thread::spawn(move || {
                for round in 0..per_submitter {
                    let my_turn = round * submitters + me;
                    let (lock, cond) = &*turn;
                    let mut current = lock.lock().unwrap();
                    while *current != my_turn {
                        current = cond.wait(current).unwrap();
                    }
                    let log = log.clone();
                    thread
                        .spawn(move || log.lock().unwrap().push(my_turn))
                        .unwrap();
                    *current += 1;
                    cond.notify_all();
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    open_gate.send(()).unwrap();
    // A blocking submit queued last runs last.
    let seen = thread.submit(|| log.lock().unwrap().clone()).unwrap();
    let expected: Vec<usize> = (0..submitters * per_submitter).collect();
    assert_eq!(seen, expected);
}

/// Blocking submits from several threads at once: every submitter's own
/// tasks run in its order, and none is lost or run twice.
#[test]
fn concurrent_blocking_submits_keep_each_submitters_order() {
    let _w = common::watchdog("concurrent_blocking_submits_keep_each_submitters_order");
    let thread = ste::Thread::new().unwrap();
    let submitters = 3;
    let per_submitter = common::iters(2000, 20);
    // Only the worker touches this log: a `Tagged` `Vec` would do too, but
    // the point here is that the worker runs one task at a time, so a plain
    // `&mut` through a `Mutex` never contends.
    let log = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for me in 0..submitters {
            let (thread, log) = (&thread, &log);
            s.spawn(move || {
                for i in 0..per_submitter {
                    let got = thread
                        .submit(|| {
                            log.lock().unwrap().push((me, i));
                            // A heap-owning result: a double drop or a leak
                            // would show under Miri.
                            vec![me; 2]
                        })
                        .unwrap();
                    assert_eq!(got, vec![me; 2]);
                }
            });
        }
    });
    let log = log.into_inner().unwrap();
    assert_eq!(log.len(), submitters * per_submitter);
    for me in 0..submitters {
        let mine: Vec<usize> = log
            .iter()
            .filter(|(who, _)| *who == me)
            .map(|(_, i)| *i)
            .collect();
        assert_eq!(
            mine,
            (0..per_submitter).collect::<Vec<_>>(),
            "submitter {me}"
        );
    }
    thread.join().unwrap();
}

/// `spawn` then `submit` from one thread: the spawned tasks run first.
#[test]
fn spawn_then_submit_runs_in_order() {
    let _w = common::watchdog("spawn_then_submit_runs_in_order");
    let thread = ste::Thread::new().unwrap();
    let log = Arc::new(Mutex::new(Vec::new()));
    let n = common::iters(100, 5);
    for i in 0..n {
        let log = log.clone();
        thread.spawn(move || log.lock().unwrap().push(i)).unwrap();
    }
    let seen = thread.submit(|| log.lock().unwrap().clone()).unwrap();
    assert_eq!(seen, (0..n).collect::<Vec<_>>());
    thread.join().unwrap();
}
