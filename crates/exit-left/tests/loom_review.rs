//! loom models from the review of `serve`'s lent headship
//! (tests/review_lend.rs), in the style of tests/loom.rs.
//!
//! ```text
//! RUSTFLAGS="--cfg loom" LOOM_MAX_PREEMPTIONS=3 cargo test --release \
//!     --target-dir target/loom -p exit-left --features sync-core/loom --test loom_review
//! ```
//!
//! Under `--cfg loom` each model explores every interleaving (bounded by
//! `LOOM_MAX_PREEMPTIONS`); in the normal build it runs once. A time-out is
//! "yield once, then give up" under loom. The lender's `serve` waits without
//! a time-out: if it were left queued behind a free headship, or a promotion
//! were lost, loom reports the deadlock.

use exit_left::{Entry, RecvError, Stage};
use std::time::Duration;
use sync_core::atomic::{AtomicUsize, Ordering};
use sync_core::sync::Arc;
use sync_core::thread;

/// The resource: `(to, message)` items, popped from the end. Only heads pop.
type Script = std::sync::Mutex<Vec<(u8, u8)>>;
type S = Stage<u8, Script, u8>;

/// A time-out, which loom turns into "yield once, then give up".
const SOON: Option<Duration> = Some(Duration::from_millis(1));

fn model(f: impl Fn() + Sync + Send + 'static) {
    let _w = testkit::watchdog("exit-left loom_review model");
    sync_core::model(f);
}

/// Token 0's two own messages: 1 is read first.
fn stage() -> Arc<S> {
    Arc::new(Stage::with_mailbox(std::sync::Mutex::new(vec![
        (0, 2),
        (0, 1),
    ])))
}

/// Counts a head in and out, with a yield in between (another head may
/// run there); two at once fail the model.
fn heading(heads: &AtomicUsize) {
    assert_eq!(heads.fetch_add(1, Ordering::SeqCst), 0, "two heads");
    thread::yield_now();
    heads.fetch_sub(1, Ordering::SeqCst);
}

/// `serve` on token 0 until it has handled message 2 (or the stage closes).
fn serve(stage: &S, heads: &AtomicUsize) -> (Result<(), RecvError<()>>, Vec<u8>) {
    let mut t0 = stage.ticket(0).unwrap();
    let mut handled = Vec::new();
    let out = stage.serve(
        &mut t0,
        None,
        |s: &Script| {
            heading(heads);
            Ok::<_, ()>(Some(s.lock().unwrap().pop().expect("read only twice")))
        },
        |m| {
            handled.push(m);
            if m == 2 {
                std::ops::ControlFlow::Break(())
            } else {
                std::ops::ControlFlow::Continue(())
            }
        },
    );
    (out, handled)
}

fn left_behind(stage: &S) {
    assert_eq!(stage.tickets(), 0, "a ticket is still registered");
    assert_eq!(stage.waiting(), 0, "a follower is still queued");
    assert!(!stage.is_headed(), "someone still heads");
}

/// A follower with a time-out enters while `serve` heads, lends or has
/// taken the headship back; a notifier races it (its notification may be
/// recorded, wake it, or beat a promotion made by the lender's end). The
/// follower may head, be notified or time out; never two heads, the lender
/// handles both of its messages, nothing is left behind.
#[test]
fn a_timing_out_follower_and_a_notifier_race_a_lending_serve() {
    model(|| {
        let stage = stage();
        let heads = Arc::new(AtomicUsize::new(0));
        let follower = {
            let (stage, heads) = (Arc::clone(&stage), Arc::clone(&heads));
            thread::spawn(move || {
                let mut t1 = stage.ticket(1).unwrap();
                match stage.enter(&mut t1, SOON) {
                    Entry::Head(g) => {
                        heading(&heads);
                        drop(g);
                    }
                    Entry::Notified | Entry::TimedOut => {}
                    Entry::Closed => panic!("nobody closes"),
                }
            })
        };
        let notifier = {
            let stage = Arc::clone(&stage);
            // Before, while or after the follower waits (or before its
            // ticket exists: `NoSuchToken`).
            thread::spawn(move || {
                let _ = stage.notify(&1);
            })
        };
        let (out, handled) = serve(&stage, &heads);
        assert_eq!(out, Ok(()));
        assert_eq!(handled, [1, 2]);
        follower.join().unwrap();
        notifier.join().unwrap();
        left_behind(&stage);
    });
}

/// `close` races a lending `serve` and a follower that waits without a
/// time-out: the follower heads (and hands on) or is closed, the lender
/// ends with both messages or with `Closed` after a prefix of them, and
/// nobody is left queued behind a free headship.
#[test]
fn close_races_a_lending_serve_and_a_waiting_follower() {
    model(|| {
        let stage = stage();
        let heads = Arc::new(AtomicUsize::new(0));
        let follower = {
            let (stage, heads) = (Arc::clone(&stage), Arc::clone(&heads));
            thread::spawn(move || {
                let mut t1 = stage.ticket(1).unwrap();
                match stage.enter(&mut t1, None) {
                    Entry::Head(g) => {
                        heading(&heads);
                        drop(g);
                    }
                    Entry::Closed => {}
                    other => panic!("unexpected {other:?}"),
                }
            })
        };
        let closer = {
            let stage = Arc::clone(&stage);
            thread::spawn(move || stage.close())
        };
        let (out, handled) = serve(&stage, &heads);
        match out {
            Ok(()) => assert_eq!(handled, [1, 2]),
            Err(RecvError::Closed) => assert!(handled.is_empty() || handled == [1]),
            Err(e) => panic!("unexpected {e:?}"),
        }
        follower.join().unwrap();
        closer.join().unwrap();
        left_behind(&stage);
    });
}

/// `serve` lends the headship while its head wakes an owner it delivered
/// to. Here the owner, woken with its message, enters again at once: it
/// may head during that wake-up (the lender's reclaim then fails and it
/// waits as a follower for its own message), queue behind the lender and
/// time out, or head after `serve` ended. Never two heads; the lender
/// handles its message; the owner gets its own; nothing is left behind.
#[test]
fn an_owner_entering_while_serve_wakes_it_may_take_the_headship() {
    model(|| {
        // Read first: (1, 9), the owner's; then (0, 2), the lender's.
        let stage: Arc<S> = Arc::new(Stage::with_mailbox(std::sync::Mutex::new(vec![
            (0, 2),
            (1, 9),
        ])));
        let heads = Arc::new(AtomicUsize::new(0));
        let owner = {
            let (stage, heads) = (Arc::clone(&stage), Arc::clone(&heads));
            thread::spawn(move || {
                let mut t1 = stage.ticket(1).unwrap();
                // Queue behind the lender, which reads only once this
                // ticket waits: the delivery of 9 wakes it.
                while !stage.is_headed() {
                    thread::yield_now();
                }
                match stage.enter(&mut t1, None) {
                    Entry::Notified => {}
                    other => panic!("the owner expected its message, got {other:?}"),
                }
                assert_eq!(stage.try_recv(&mut t1), Some(9));
                match stage.enter(&mut t1, SOON) {
                    Entry::Head(g) => {
                        heading(&heads);
                        drop(g);
                    }
                    Entry::TimedOut => {}
                    other => panic!("unexpected {other:?}"),
                }
            })
        };
        let mut t0 = stage.ticket(0).unwrap();
        // A ticket outside the FIFO (a thread that might be running): with
        // none, the head would not lend while it wakes the owner.
        let idle = stage.ticket(2).unwrap();
        let mut first = true;
        let mut handled = Vec::new();
        let out = stage.serve(
            &mut t0,
            None,
            |s: &Script| {
                if std::mem::take(&mut first) {
                    while stage.waiting() < 1 {
                        thread::yield_now();
                    }
                }
                heading(&heads);
                Ok::<_, ()>(Some(s.lock().unwrap().pop().expect("read only twice")))
            },
            |m| {
                handled.push(m);
                std::ops::ControlFlow::Break(())
            },
        );
        assert_eq!(out, Ok(()));
        assert_eq!(handled, [2]);
        drop((t0, idle));
        owner.join().unwrap();
        left_behind(&stage);
    });
}
