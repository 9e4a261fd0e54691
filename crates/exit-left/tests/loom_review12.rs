//! loom models from hostile review 12 (tests/review12.rs): `serve`'s
//! hand-on (`HeadGuard::lend_unless_all_wait`: look, then hand the
//! headship on under a second lock) racing `close`, and racing a
//! notification of the follower it promotes. Both held.
//!
//! ```text
//! RUSTFLAGS="--cfg loom" LOOM_MAX_PREEMPTIONS=3 cargo test --release \
//!     --target-dir target/review-loom -p exit-left --features sync-core/loom --test loom_review12
//! ```
//!
//! Under `--cfg loom` each model explores every interleaving (bounded by
//! `LOOM_MAX_PREEMPTIONS`); in the normal build it runs once.

use exit_left::{Entry, RecvError, Stage};
use std::ops::ControlFlow;
use sync_core::atomic::{AtomicUsize, Ordering::SeqCst};
use sync_core::sync::Arc;
use sync_core::thread;

type Script = std::sync::Mutex<Vec<(u8, u8)>>;
type S = Stage<u8, Script, u8>;

/// Counts a head in and out, with a yield in between (another head may
/// run there); two at once fail the model.
fn heading(heads: &AtomicUsize) {
    assert_eq!(heads.fetch_add(1, SeqCst), 0, "two heads");
    thread::yield_now();
    heads.fetch_sub(1, SeqCst);
}

/// Set once the follower's ticket is registered (a condition variable,
/// not a spin: loom may stop preempting a spinning thread).
#[derive(Default)]
struct Gate(sync_core::sync::Mutex<bool>, sync_core::sync::Condvar);

impl Gate {
    fn open(&self) {
        *self.0.lock().unwrap() = true;
        self.1.notify_all();
    }
    fn wait(&self) {
        let mut g = self.0.lock().unwrap();
        while !*g {
            g = self.1.wait(g).unwrap();
        }
    }
}

/// `serve` with ticket 0 over a one-item script (its own), `then` in
/// `handle`, breaking at once.
fn serve_one(stage: &S, heads: &AtomicUsize, then: impl Fn()) -> Result<u8, RecvError<()>> {
    let mut t0 = stage.ticket(0).unwrap();
    stage.serve(
        &mut t0,
        None,
        |s: &Script| {
            heading(heads);
            Ok::<_, ()>(s.lock().unwrap().pop())
        },
        |m| {
            then();
            ControlFlow::Break(m)
        },
    )
}

// HELD: the follower that `serve` may hand on to, and `close` from a third
// thread, in every order (also between the hand-on's look and its
// hand-off): never two heads, no lost wake-up (no time-outs anywhere), the
// follower (which, after a head, waits for `close`) ends with `Closed`, `serve` with its item or `Closed` with the
// item unread; nobody left heading or queued.
#[test]
fn hand_on_races_close() {
    let _w = testkit::watchdog("review12 hand_on_races_close");
    sync_core::model(|| {
        let stage: Arc<S> = Arc::new(Stage::with_mailbox(std::sync::Mutex::new(vec![(0, 10)])));
        let heads = Arc::new(AtomicUsize::new(0));
        let closed = Arc::new(Gate::default());
        let follower = {
            let (stage, heads, closed) =
                (Arc::clone(&stage), Arc::clone(&heads), Arc::clone(&closed));
            thread::spawn(move || {
                let mut t1 = stage.ticket(1).unwrap();
                for _ in 0..2 {
                    match stage.enter(&mut t1, None) {
                        Entry::Head(g) => {
                            heading(&heads);
                            drop(g);
                            // Heading again and again on a free stage is
                            // not the race under test: wait for `close`.
                            closed.wait();
                        }
                        Entry::Closed => return,
                        Entry::Notified => panic!("nobody notifies"),
                        Entry::TimedOut => panic!("no time-out was set"),
                    }
                }
                panic!("headed after close");
            })
        };
        let closer = {
            let (stage, closed) = (Arc::clone(&stage), Arc::clone(&closed));
            thread::spawn(move || {
                stage.close();
                closed.open();
            })
        };
        match serve_one(&stage, &heads, || {}) {
            Ok(m) => assert_eq!(m, 10),
            Err(RecvError::Closed) => assert_eq!(stage.resource().lock().unwrap().len(), 1),
            Err(e) => panic!("unexpected {e:?}"),
        }
        closer.join().unwrap();
        follower.join().unwrap();
        assert_eq!(stage.waiting(), 0);
        assert!(!stage.is_headed());
    });
}

// HELD: `serve`'s `handle` notifies the follower it may just have promoted
// (the notification beats a promotion not yet taken up; it is recorded if
// the follower already heads). Never two heads, no deadlock; the follower
// gets its `Notified` exactly once (it waits for it after a head); nothing is left
// heading or queued, and every promotion is taken up or forwarded.
#[test]
fn hand_on_races_a_notification_of_the_promoted() {
    let _w = testkit::watchdog("review12 hand_on_races_a_notification_of_the_promoted");
    sync_core::model(|| {
        let stage: Arc<S> = Arc::new(Stage::with_mailbox(std::sync::Mutex::new(vec![(0, 10)])));
        let heads = Arc::new(AtomicUsize::new(0));
        let gate = Arc::new(Gate::default());
        let sent = Arc::new(Gate::default());
        let follower = {
            let (stage, heads, gate, sent) = (
                Arc::clone(&stage),
                Arc::clone(&heads),
                Arc::clone(&gate),
                Arc::clone(&sent),
            );
            thread::spawn(move || {
                let mut t1 = stage.ticket(1).unwrap();
                gate.open();
                for _ in 0..2 {
                    match stage.enter(&mut t1, None) {
                        Entry::Head(g) => {
                            heading(&heads);
                            drop(g);
                            // Not heading again and again on a free stage:
                            // wait until the notification is made.
                            sent.wait();
                        }
                        Entry::Notified => {
                            // Exactly once: nothing else is owed.
                            assert!(stage.enter(&mut t1, None).is_head());
                            return;
                        }
                        Entry::Closed => panic!("nobody closes"),
                        Entry::TimedOut => panic!("no time-out was set"),
                    }
                }
                panic!("never notified");
            })
        };
        gate.wait();
        let s2 = Arc::clone(&stage);
        let out = serve_one(&stage, &heads, move || {
            assert_ne!(s2.notify(&1), exit_left::NotifyOutcome::NoSuchToken);
            sent.open();
        });
        assert_eq!(out, Ok(10));
        follower.join().unwrap();
        assert_eq!(stage.waiting(), 0);
        assert!(!stage.is_headed());
        let c = stage.counters();
        assert!(c.forwarded_promotions <= c.promotions);
    });
}
