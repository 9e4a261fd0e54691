//! loom models of every property in spec/exit-left.md.
//!
//! ```text
//! cargo xtask loom -p exit-left
//! ```
//!
//! Under `--cfg loom` each model explores every interleaving (bounded by
//! `LOOM_MAX_PREEMPTIONS`); in the normal build it runs once, as a plain
//! test. Loom has no clock, so a time-out is modelled as explicit
//! cancellation: a wait with a time-out parks, yields once and then gives
//! up (`sync_core::Parker::park_deadline` under loom), so every model with
//! one explores both "resolved before the time-out" and "timed out first".
//! A blocking wait without a time-out that nobody ends is a deadlock, which
//! loom reports: that is how a lost promotion or notification fails a model.
//!
//! Every model ends by checking that nothing is left behind: no ticket, no
//! waiter, no head.

use exit_left::{Entry, NotifyOutcome, Stage};
use std::time::Duration;
use sync_core::atomic::{AtomicBool, AtomicUsize, Ordering};
use sync_core::sync::Arc;
use sync_core::thread;

type S = Stage<u8, ()>;

fn stage() -> Arc<S> {
    Arc::new(Stage::new(()))
}

/// Spawns a model thread that borrows the shared stage.
fn spawn<R: Send + 'static>(
    stage: &Arc<S>,
    f: impl FnOnce(&S) -> R + Send + 'static,
) -> thread::JoinHandle<R> {
    let stage = Arc::clone(stage);
    thread::spawn(move || f(&stage))
}

/// Token 0's ticket, heading the fresh stage.
fn headed(
    stage: &S,
) -> (
    exit_left::Ticket<'_, u8, ()>,
    exit_left::HeadGuard<'_, u8, ()>,
) {
    let mut h = stage.ticket(0).unwrap();
    let Entry::Head(head) = stage.enter(&mut h, None) else {
        panic!("the first entry of a fresh stage heads")
    };
    (h, head)
}

fn left_behind(stage: &S) {
    assert_eq!(stage.tickets(), 0, "a ticket is still registered");
    assert_eq!(stage.waiting(), 0, "a follower is still queued");
    assert!(!stage.is_headed(), "someone still heads");
}

/// A time-out, which loom turns into "yield once, then give up".
const SOON: Option<Duration> = Some(Duration::from_millis(1));

fn model(f: impl Fn() + Sync + Send + 'static) {
    let _w = testkit::watchdog("exit-left loom model");
    sync_core::model(f);
}

#[test]
fn at_most_one_head_and_every_hand_off_arrives() {
    model(|| {
        let stage = stage();
        let heads = Arc::new(AtomicUsize::new(0));
        let enter = |stage: &S, heads: &AtomicUsize, token: u8| {
            let mut t = stage.ticket(token).unwrap();
            let Entry::Head(g) = stage.enter(&mut t, None) else {
                panic!("without notifications every waiter ends up heading")
            };
            assert_eq!(heads.fetch_add(1, Ordering::SeqCst), 0, "two heads");
            heads.fetch_sub(1, Ordering::SeqCst);
            drop(g);
        };
        let (ha, hb) = (Arc::clone(&heads), Arc::clone(&heads));
        let a = spawn(&stage, move |stage| enter(stage, &ha, 1));
        let b = spawn(&stage, move |stage| enter(stage, &hb, 2));
        enter(&stage, &heads, 3);
        a.join().unwrap();
        b.join().unwrap();
        left_behind(&stage);
    });
}

#[test]
fn a_promoted_follower_that_times_out_does_not_lose_the_headship() {
    model(|| {
        let stage = stage();
        let (mut h, head) = headed(&stage);
        let f = spawn(&stage, move |stage| {
            let mut t = stage.ticket(1).unwrap();
            match stage.enter(&mut t, SOON) {
                Entry::Head(g) => drop(g),
                Entry::TimedOut => {}
                other => panic!("unexpected {other:?}"),
            }
        });
        // A follower without a time-out: if the headship were dropped with
        // the one that timed out, this one would never be promoted.
        let patient = spawn(&stage, move |stage| {
            let mut t = stage.ticket(2).unwrap();
            assert!(stage.enter(&mut t, None).is_head());
        });
        drop(head);
        f.join().unwrap();
        patient.join().unwrap();
        // Not kept by anyone who left: the next entry heads at once.
        assert!(stage.enter(&mut h, SOON).is_head());
        drop(h);
        left_behind(&stage);
    });
}

#[test]
fn a_follower_notified_while_promoted_passes_the_headship_on() {
    model(|| {
        let stage = stage();
        let (h, head) = headed(&stage);
        let notified = spawn(&stage, move |stage| {
            let mut t1 = stage.ticket(1).unwrap();
            loop {
                match stage.enter(&mut t1, None) {
                    Entry::Notified => return,
                    // Promoted before the notification: hand on, let the
                    // notifier run, go again.
                    Entry::Head(g) => {
                        drop(g);
                        thread::yield_now();
                    }
                    other => panic!("unexpected {other:?}"),
                }
            }
        });
        let other = spawn(&stage, move |stage| {
            let mut t2 = stage.ticket(2).unwrap();
            // Either promoted (forwarded or not) or it gives up.
            if let Entry::Head(g) = stage.enter(&mut t2, SOON) {
                drop(g);
            }
        });
        drop(head);
        // Retried until the ticket exists.
        while stage.notify(&1) == NotifyOutcome::NoSuchToken {
            thread::yield_now();
        }
        notified.join().unwrap();
        other.join().unwrap();
        drop(h);
        left_behind(&stage);
    });
}

#[test]
fn a_notification_is_never_lost() {
    model(|| {
        let stage = stage();
        let (h, head) = headed(&stage);
        // The head is held throughout: only the notification can end the
        // wait (or the waiter has not entered yet and finds it recorded).
        let waiter = spawn(&stage, move |stage| {
            let mut t = stage.ticket(1).unwrap();
            assert!(matches!(stage.enter(&mut t, None), Entry::Notified));
        });
        let notifier = spawn(&stage, move |stage| {
            let mut outcome = stage.notify(&1);
            while outcome == NotifyOutcome::NoSuchToken {
                thread::yield_now();
                outcome = stage.notify(&1);
            }
            assert!(matches!(
                outcome,
                NotifyOutcome::Woken | NotifyOutcome::Recorded
            ));
        });
        notifier.join().unwrap();
        waiter.join().unwrap();
        drop(head);
        drop(h);
        left_behind(&stage);
    });
}

#[test]
fn no_aba_when_a_token_is_registered_again() {
    model(|| {
        let stage = stage();
        let (h, head) = headed(&stage);
        let again = Arc::new(AtomicBool::new(false));
        let again2 = Arc::clone(&again);
        let owner = spawn(&stage, move |stage| {
            let mut t = stage.ticket(7).unwrap();
            assert!(matches!(stage.enter(&mut t, None), Entry::Notified));
            drop(t);
            let mut t = stage.ticket(7).unwrap();
            again2.store(true, Ordering::SeqCst);
            assert!(matches!(stage.enter(&mut t, None), Entry::Notified));
        });
        // First notification: retried until the first ticket exists.
        while stage.notify(&7) == NotifyOutcome::NoSuchToken {
            thread::yield_now();
        }
        while !again.load(Ordering::SeqCst) {
            thread::yield_now();
        }
        // Second one: for the new registration, in the reused slot.
        assert_ne!(stage.notify(&7), NotifyOutcome::NoSuchToken);
        owner.join().unwrap();
        drop(head);
        drop(h);
        left_behind(&stage);
    });
}

#[test]
fn a_head_notifying_itself_is_recorded_while_a_follower_races_in() {
    model(|| {
        let stage = stage();
        let (mut h, head) = headed(&stage);
        let f = spawn(&stage, move |stage| {
            let mut t = stage.ticket(1).unwrap();
            if let Entry::Head(g) = stage.enter(&mut t, None) {
                drop(g);
            }
        });
        assert_eq!(head.notify(&0), NotifyOutcome::OwnToken);
        drop(head);
        f.join().unwrap();
        assert!(matches!(stage.enter(&mut h, SOON), Entry::Notified));
        drop(h);
        left_behind(&stage);
    });
}

#[test]
fn close_wakes_every_waiter() {
    model(|| {
        let stage = stage();
        let (h, head) = headed(&stage);
        let waiters: Vec<_> = (1..=2u8)
            .map(|i| {
                spawn(&stage, move |stage: &S| {
                    let mut t = stage.ticket(i).unwrap();
                    assert!(matches!(stage.enter(&mut t, None), Entry::Closed));
                })
            })
            .collect();
        stage.close();
        for w in waiters {
            w.join().unwrap();
        }
        drop(head);
        drop(h);
        left_behind(&stage);
    });
}

#[test]
fn a_cancelled_future_passes_its_promotion_on() {
    use std::future::Future;
    use std::task::{Context, Poll, Waker};
    model(|| {
        let stage = stage();
        let (h, head) = headed(&stage);
        let task = spawn(&stage, move |stage| {
            let mut t = stage.ticket(1).unwrap();
            let mut fut = stage.enter_async(&mut t);
            let mut cx = Context::from_waker(Waker::noop());
            match std::pin::Pin::new(&mut fut).poll(&mut cx) {
                // Queued; cancelled now, maybe after a promotion.
                Poll::Pending => drop(fut),
                // The head had already left: it heads, and hands on.
                Poll::Ready(e) => assert!(e.is_head()),
            }
        });
        let follower = spawn(&stage, move |stage| {
            let mut t = stage.ticket(2).unwrap();
            // Without a time-out: a promotion kept by the cancelled future
            // would leave this thread parked forever.
            assert!(stage.enter(&mut t, None).is_head());
        });
        drop(head);
        task.join().unwrap();
        follower.join().unwrap();
        drop(h);
        left_behind(&stage);
    });
}

/// `serve` lends the headship while it handles its own message: a thread
/// that enters meanwhile heads at once, the lender takes the headship back
/// only if it is still free, and a lender that returns while lending passes
/// it to the waiting follower. Never two heads, and no follower is left
/// queued behind a free headship (that would be a deadlock here: the
/// follower waits without a time-out).
#[test]
fn serve_lends_the_headship_and_passes_it_on() {
    model(|| {
        let stage: Arc<Stage<u8, (), u8>> = Arc::new(Stage::with_mailbox(()));
        let heads = Arc::new(AtomicUsize::new(0));
        let hb = Arc::clone(&heads);
        let b = {
            let stage = Arc::clone(&stage);
            thread::spawn(move || {
                let mut t = stage.ticket(1).unwrap();
                let Entry::Head(g) = stage.enter(&mut t, None) else {
                    panic!("without notifications the waiter ends up heading")
                };
                assert_eq!(hb.fetch_add(1, Ordering::SeqCst), 0, "two heads");
                hb.fetch_sub(1, Ordering::SeqCst);
                drop(g);
            })
        };
        let mut t0 = stage.ticket(0).unwrap();
        // Two own messages: the first is handled while lent and the headship
        // taken back (or found taken), the second ends `serve` while lent.
        let mut script = vec![(0u8, 2u8), (0, 1)];
        let mut handled = Vec::new();
        let out = stage.serve(
            &mut t0,
            None,
            |_: &()| {
                assert_eq!(heads.fetch_add(1, Ordering::SeqCst), 0, "two heads");
                heads.fetch_sub(1, Ordering::SeqCst);
                Ok::<_, ()>(Some(script.pop().expect("read only twice")))
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
        assert_eq!(out, Ok(()));
        assert_eq!(handled, [1, 2]);
        b.join().unwrap();
        drop(t0);
        assert_eq!(stage.tickets(), 0);
        assert_eq!(stage.waiting(), 0);
        assert!(!stage.is_headed());
    });
}

/// `serve`'s head takes its own message while the only other ticket's
/// follower waits: it hands the headship on, or, if that follower has
/// waited while two rounds of items went by (idle: here four messages that
/// the head delivers to its own mailbox from its first read), lends it,
/// takes it back after `handle` and passes it on when `serve` returns.
/// Whether the follower queued before those deliveries, after them or not
/// at all by then is up to the interleaving, so every path is explored,
/// with the FIFO's idle prefix kept across every exit from the queue:
/// never two heads, and the follower always ends up heading (a stranded
/// follower would be a deadlock here).
#[test]
fn serve_lends_instead_of_handing_on_to_an_idle_follower() {
    model(|| {
        let stage: Arc<Stage<u8, (), u8>> = Arc::new(Stage::with_mailbox(()));
        let heads = Arc::new(AtomicUsize::new(0));
        let mut t0 = stage.ticket(0).unwrap();
        let hb = Arc::clone(&heads);
        let b = {
            let stage = Arc::clone(&stage);
            thread::spawn(move || {
                let mut t1 = stage.ticket(1).unwrap();
                let Entry::Head(g) = stage.enter(&mut t1, None) else {
                    panic!("without notifications the waiter ends up heading")
                };
                assert_eq!(hb.fetch_add(1, Ordering::SeqCst), 0, "two heads");
                hb.fetch_sub(1, Ordering::SeqCst);
                drop(g);
            })
        };
        let mut reads = 0;
        let mut handled = Vec::new();
        let out = stage.serve(
            &mut t0,
            None,
            |_: &()| {
                assert_eq!(heads.fetch_add(1, Ordering::SeqCst), 0, "two heads");
                heads.fetch_sub(1, Ordering::SeqCst);
                reads += 1;
                match reads {
                    1 => {
                        for m in 10..14 {
                            assert!(stage.deliver(&0, m).is_ok());
                        }
                        Ok::<_, ()>(None)
                    }
                    2 => Ok(Some((0u8, 1u8))),
                    _ => panic!("read only twice"),
                }
            },
            |m| {
                handled.push(m);
                if m == 1 {
                    std::ops::ControlFlow::Break(())
                } else {
                    std::ops::ControlFlow::Continue(())
                }
            },
        );
        assert_eq!(out, Ok(()));
        assert_eq!(handled, [10, 11, 12, 13, 1]);
        b.join().unwrap();
        drop(t0);
        assert_eq!(stage.tickets(), 0);
        assert_eq!(stage.waiting(), 0);
        assert!(!stage.is_headed());
    });
}

/// Two `serve`s on one stage, each waiting for its own message in a shared
/// script: whoever heads reads, delivers the other's message (a follower
/// takes it with the `Notified` it wakes up with, under the same lock) and
/// lends the headship while it handles its own. Both get their message
/// exactly once, never two heads, nothing left behind.
#[test]
fn two_serves_share_the_reading_and_each_gets_its_message() {
    type Script = std::sync::Mutex<Vec<(u8, u8)>>;
    model(|| {
        // Popped from the end: token 1's message, once there, is read
        // first. Only heads pop; the std mutex orders the one push.
        let script: Script = std::sync::Mutex::new(vec![(0, 10)]);
        let stage: Arc<Stage<u8, Script, u8>> = Arc::new(Stage::with_mailbox(script));
        let heads = Arc::new(AtomicUsize::new(0));
        let serve = |stage: &Stage<u8, Script, u8>, heads: &AtomicUsize, token: u8| {
            let mut t = stage.ticket(token).unwrap();
            if token == 1 {
                // Only now that its ticket exists (a message for a token
                // without one would be dropped as unrouted).
                stage.resource().lock().unwrap().push((1, 11));
            }
            let mut got = Vec::new();
            let out = stage.serve(
                &mut t,
                None,
                |s: &Script| {
                    assert_eq!(heads.fetch_add(1, Ordering::SeqCst), 0, "two heads");
                    let item = s.lock().unwrap().pop().expect("read past the script");
                    heads.fetch_sub(1, Ordering::SeqCst);
                    Ok::<_, ()>(Some(item))
                },
                |m| {
                    got.push(m);
                    std::ops::ControlFlow::Break(())
                },
            );
            assert_eq!(out, Ok(()));
            assert_eq!(got, [10 + token]);
        };
        let b = {
            let (stage, heads) = (Arc::clone(&stage), Arc::clone(&heads));
            thread::spawn(move || serve(&stage, &heads, 1))
        };
        serve(&stage, &heads, 0);
        b.join().unwrap();
        assert_eq!(stage.tickets(), 0);
        assert_eq!(stage.waiting(), 0);
        assert!(!stage.is_headed());
    });
}
