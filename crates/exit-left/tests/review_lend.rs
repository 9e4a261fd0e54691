//! Hostile review of `serve`'s lent headship (`HeadGuard::lend`,
//! `Lent::reclaim`, `Lent::drop`) and of `enter_for_mail`: one reproducing
//! test per finding (`#[ignore]`d, with what breaks and a suggested fix),
//! and the attacks that held, kept as regression tests.
//!
//! The change makes a new state possible: the headship `Free` while
//! followers are queued (before it, `Free` implied an empty FIFO). Every
//! test below puts the stage in that state and then does one of the things
//! that used to rely on the old invariant. Every test that can block runs
//! under a watchdog, and waits are bounded.

mod common;

use common::script::{
    Count, Items, Probe, left, once_headed, outsider, quiet, read, read_after, ready, stage,
};
use common::{Got, LONG, Rng, got, iters, poll_once, until_waiting, watchdog};
use exit_left::{Entry, HeadGuard, NotifyOutcome, RecvError, Ticket};
use std::cell::RefCell;
use std::ops::ControlFlow;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::task::{Poll, Wake, Waker};
use std::thread;
use std::time::{Duration, Instant};

// ---------------------------------------------------------------------------
// Finding 1: a wait left queued by a leaked future, re-entered while the
// headship is lent, heads *while still in the FIFO*; its guard's drop then
// promotes the ticket itself (it is first in the FIFO): the headship is
// `Promised` to a ticket nobody waits on, and every other entry (the lender
// included) waits behind it until its time-out.
// ---------------------------------------------------------------------------

/// Finding 1. `begin` takes a `Free` headship without looking at the slot's
/// wait. Before the change that was sound, because a slot still queued by a
/// leaked (`mem::forget`) future could only meet a `Free` headship if the
/// FIFO were empty, which it then was not. A lent headship is `Free` with
/// the FIFO non-empty, so the ticket's next entry (documented as "keeps its
/// FIFO place", `api.rs::an_entry_after_a_leaked_future_takes_its_wait_over`)
/// now heads while its slot is still queued (`waiting()` counts the head).
/// Dropping that guard runs `hand_off`, which promotes the first queued slot:
/// the head's own. Nobody waits on it, so the headship stays `Promised` to
/// nobody: `serve` cannot take it back, waits as a follower, and times out
/// with its own message still unread in the resource; a later `enter` with
/// a zero time-out on a stage that nobody heads reports `TimedOut`.
///
/// Fix: in `Stage::begin`, when taking a `Free` headship for a slot that is
/// still `Wait::Queued` (a leaked future's wait), dequeue it first (`table.
/// dequeue(slot, None)`, its stale waker dropped after the lock, as
/// `enter_for_mail` already does with `wait_with`'s), so that a head is
/// never also a follower; or keep `lend` from making `Free` a state with a
/// queue (e.g. a distinct `Headship::Lent` that `begin` treats as free and
/// `hand_off` never sees).
/// Fixed: `begin` takes such a slot out of the queue before it heads.
#[test]
fn finding_1_a_leaked_wait_re_entered_while_lent_heads_while_queued_and_promotes_itself() {
    let _w = watchdog("finding_1");
    let stage = stage(&[(0, 10), (0, 11)]);
    let mut t0 = stage.ticket(0).unwrap();
    let t1 = RefCell::new(stage.ticket(1).unwrap());
    let mut t2 = stage.ticket(2).unwrap();
    let mut leaked = false;
    let mut queued_while_heading = None;
    let mut seen = Vec::new();
    // Bounded: with the defect the lender waits behind the phantom
    // promotion until this time-out.
    let out = stage.serve(
        &mut t0,
        Some(Duration::from_secs(2)),
        |r| {
            if !leaked {
                // While `serve` heads: ticket 1 queues through a future
                // that is then leaked (its wait stays in the FIFO).
                leaked = true;
                let mut t = t1.borrow_mut();
                let mut fut = stage.enter_async(&mut t);
                assert!(poll_once(&mut fut, Waker::noop()).is_pending());
                std::mem::forget(fut);
            }
            read(r)
        },
        |m| {
            seen.push(m);
            if m == 10 {
                // Lent: ticket 1 enters again (the leaked future's borrow
                // is over) and heads: nobody else does.
                let mut t = t1.borrow_mut();
                let e = stage.enter(&mut t, Some(Duration::ZERO));
                assert!(e.is_head(), "the lent headship is free");
                queued_while_heading = Some(stage.waiting());
                drop(e);
                ControlFlow::Continue(())
            } else {
                ControlFlow::Break(())
            }
        },
    );
    let phantom = (stage.is_headed(), stage.counters().promotions);
    let late = got(stage.enter(&mut t2, Some(Duration::ZERO)));
    assert_eq!(
        (out, seen.as_slice(), left(&stage)),
        (Ok(()), &[10, 11][..], 0),
        "serve could not take its headship back and timed out with its message unread"
    );
    assert_eq!(
        queued_while_heading,
        Some(0),
        "the head is still queued as a follower"
    );
    assert_eq!(
        phantom,
        (false, 0),
        "(headed, promotions) after every guard was dropped: promoted to nobody"
    );
    assert_eq!(late, Got::Head, "nobody heads, yet an entry cannot head");
}

// ---------------------------------------------------------------------------
// Finding 2 (documentation, fixed): the design notes at the top of
// src/stage.rs said "`Free`: nobody heads. Then the FIFO is empty". A lent
// headship is `Free` with followers queued (observable, see
// `a_lent_headship_is_free_with_followers_queued`); code that trusted the
// note is what finding 1 is. The notes now describe the lent state (the
// test that grepped the source for the old sentence went with the fix).
// ---------------------------------------------------------------------------

// ---------------------------------------------------------------------------
// Attacks that held.
// ---------------------------------------------------------------------------

/// The state the change adds, seen through the public API: while `handle`
/// runs, nobody heads and a follower is queued; `serve` returning while
/// lent promotes it (one promotion).
#[test]
fn a_lent_headship_is_free_with_followers_queued() {
    let _w = watchdog("a_lent_headship_is_free_with_followers_queued");
    let stage = stage(&[(0, 10)]);
    let mut t0 = stage.ticket(0).unwrap();
    let outsider = outsider(&stage);
    let mut t1 = stage.ticket(1).unwrap();
    thread::scope(|s| {
        let f = s.spawn(|| {
            once_headed(&stage);
            got(stage.enter(&mut t1, LONG))
        });
        let mut observed = None;
        let out = stage.serve(
            &mut t0,
            LONG,
            |r| {
                until_waiting(&stage, 1);
                read(r)
            },
            |m| {
                observed = Some((stage.is_headed(), stage.waiting()));
                ControlFlow::Break(m)
            },
        );
        assert_eq!(out, Ok(10));
        assert_eq!(observed, Some((false, 1)), "(headed, waiting) while lent");
        assert_eq!(f.join().unwrap(), Got::Head);
    });
    assert_eq!(stage.counters().promotions, 1);
    drop(outsider);
    quiet(&stage);
}

/// A follower queued before the lend times out while the headship is lent
/// (free, nobody to promote it): it leaves the FIFO cleanly, the lender
/// takes the headship back and reads on, nobody was promoted.
#[test]
fn a_follower_timing_out_while_lent_leaves_cleanly_and_the_lender_reads_on() {
    let _w = watchdog("a_follower_timing_out_while_lent_leaves_cleanly_and_the_lender_reads_on");
    let stage = stage(&[(0, 10), (0, 11)]);
    let mut t0 = stage.ticket(0).unwrap();
    let outsider = outsider(&stage);
    let mut t1 = stage.ticket(1).unwrap();
    thread::scope(|s| {
        let f = s.spawn(|| {
            once_headed(&stage);
            got(stage.enter(&mut t1, Some(Duration::from_millis(20))))
        });
        let mut seen = Vec::new();
        let out = stage.serve(
            &mut t0,
            LONG,
            read_after(|| until_waiting(&stage, 1)),
            |m| {
                seen.push(m);
                if m == 10 {
                    // Lent with the follower queued: nothing ends its wait
                    // but its time-out.
                    assert!(!stage.is_headed());
                    until_waiting(&stage, 0);
                    ControlFlow::Continue(())
                } else {
                    ControlFlow::Break(())
                }
            },
        );
        assert_eq!(out, Ok(()));
        assert_eq!(seen, [10, 11]);
        assert_eq!(f.join().unwrap(), Got::TimedOut);
    });
    let c = stage.counters();
    assert_eq!((c.timeouts, c.promotions, c.own_token), (1, 0, 2));
    drop(outsider);
    quiet(&stage);
}

/// While lent: another thread heads at once and hands off (the first
/// queued future is promoted, one wake-up), the promoted one is notified
/// before it runs (the promotion is forwarded to the next, one wake-up),
/// the next one heads and leaves with an empty FIFO, and the lender takes
/// the headship back. Counters match, every waker woken exactly once.
#[test]
fn promotions_made_while_lent_are_forwarded_and_the_lender_takes_the_headship_back() {
    let _w =
        watchdog("promotions_made_while_lent_are_forwarded_and_the_lender_takes_the_headship_back");
    let stage = stage(&[(0, 10), (0, 11)]);
    let mut t0 = stage.ticket(0).unwrap();
    let mut t1 = stage.ticket(1).unwrap();
    let mut t2 = stage.ticket(2).unwrap();
    let mut tx = stage.ticket(3).unwrap();
    let (c1, w1) = Count::new();
    let (c2, w2) = Count::new();
    let futs = RefCell::new(None);
    let mut tickets = Some((&mut t1, &mut t2));
    let mut seen = Vec::new();
    let out = stage.serve(
        &mut t0,
        LONG,
        |r| {
            if let Some((t1, t2)) = tickets.take() {
                let mut f1 = stage.enter_async(t1);
                let mut f2 = stage.enter_async(t2);
                assert!(poll_once(&mut f1, &w1).is_pending());
                assert!(poll_once(&mut f2, &w2).is_pending());
                *futs.borrow_mut() = Some((f1, f2));
            }
            read(r)
        },
        |m| {
            seen.push(m);
            if m != 10 {
                return ControlFlow::Break(());
            }
            let (mut f1, mut f2) = futs.borrow_mut().take().unwrap();
            assert_eq!(stage.waiting(), 2);
            thread::scope(|s| {
                s.spawn(|| {
                    // Heads at once, ahead of the queue; its drop promotes f1.
                    assert!(stage.enter(&mut tx, Some(Duration::ZERO)).is_head());
                });
            });
            assert_eq!((c1.wakes(), c2.wakes()), (1, 0));
            assert_eq!(stage.notify(&1), NotifyOutcome::Woken);
            assert_eq!((c1.wakes(), c2.wakes()), (1, 1), "forwarded to f2");
            assert!(matches!(ready(&mut f1, &w1), Entry::Notified));
            let Entry::Head(g) = ready(&mut f2, &w2) else {
                panic!("the forwarded promotion")
            };
            drop(g);
            assert!(!stage.is_headed(), "nobody left to promote");
            ControlFlow::Continue(())
        },
    );
    assert_eq!(out, Ok(()));
    assert_eq!(seen, [10, 11], "the lender took the headship back");
    assert_eq!((c1.wakes(), c2.wakes()), (1, 1));
    let c = stage.counters();
    assert_eq!(
        (c.promotions, c.forwarded_promotions, c.woken, c.timeouts),
        (2, 1, 1, 0)
    );
    quiet(&stage);
}

/// A queued future cancelled while lent leaves the FIFO; the lender's
/// `serve` ends while lent and promotes the next one (one wake-up, nobody
/// else woken). A promoted future cancelled while lent forwards its
/// promotion to the next waiter: the lender itself, which lost the headship,
/// waits as a follower and is promoted in turn, then reads on.
#[test]
fn cancelled_futures_while_lent_give_back_what_they_hold() {
    let _w = watchdog("cancelled_futures_while_lent_give_back_what_they_hold");
    // Part 1: cancelled while queued; serve ends while lent.
    let stage = stage(&[(0, 10)]);
    let mut t0 = stage.ticket(0).unwrap();
    let mut t1 = stage.ticket(1).unwrap();
    let mut t2 = stage.ticket(2).unwrap();
    let (c1, w1) = Count::new();
    let (c2, w2) = Count::new();
    let mut f1 = stage.enter_async(&mut t1);
    let mut f2 = stage.enter_async(&mut t2);
    let out = stage.serve(
        &mut t0,
        LONG,
        |r| {
            assert!(poll_once(&mut f1, &w1).is_pending());
            assert!(poll_once(&mut f2, &w2).is_pending());
            read(r)
        },
        ControlFlow::Break,
    );
    // `handle` breaks at once: the lent headship went to the first waiter.
    assert_eq!(out, Ok(10));
    assert_eq!((c1.wakes(), c2.wakes()), (1, 0));
    drop(f1); // promoted and cancelled: forwarded to f2
    assert_eq!((c1.wakes(), c2.wakes()), (1, 1));
    assert!(ready(&mut f2, &w2).is_head());
    drop(f2);
    let c = stage.counters();
    assert_eq!((c.promotions, c.forwarded_promotions), (2, 1));
    quiet(&stage);

    // Part 2: a promotion made while lent, cancelled while lent; the lender
    // cannot take the headship back and is promoted as a follower.
    let stage = self::stage(&[(0, 10), (0, 11)]);
    let mut t0 = stage.ticket(0).unwrap();
    let mut t1 = stage.ticket(1).unwrap();
    let mut t2 = stage.ticket(2).unwrap();
    let mut tx = stage.ticket(3).unwrap();
    let (c1, w1) = Count::new();
    let (c2, w2) = Count::new();
    let (send_f2, recv_f2) = mpsc::channel();
    let futs = RefCell::new(Some((
        stage.enter_async(&mut t1),
        stage.enter_async(&mut t2),
    )));
    thread::scope(|s| {
        let (stage_ref, w2_ref) = (&stage, &w2);
        let helper = s.spawn(move || {
            let (stage, w2) = (stage_ref, w2_ref);
            let mut f2: exit_left::EnterFuture<'_, '_, u32, Items, u32> = recv_f2.recv().unwrap();
            // The lender has given its headship up and waits.
            until_waiting(stage, 1);
            let Entry::Head(g) = ready(&mut f2, w2) else {
                panic!("f2 holds the forwarded promotion")
            };
            drop(g); // promotes the lender
        });
        let mut seen = Vec::new();
        let out = stage.serve(
            &mut t0,
            LONG,
            read_after(|| {
                let mut futs = futs.borrow_mut();
                let (f1, f2) = futs.as_mut().unwrap();
                assert!(poll_once(f1, &w1).is_pending());
                assert!(poll_once(f2, &w2).is_pending());
            }),
            |m| {
                seen.push(m);
                if m != 10 {
                    return ControlFlow::Break(());
                }
                let (f1, f2) = futs.borrow_mut().take().unwrap();
                assert!(stage.enter(&mut tx, Some(Duration::ZERO)).is_head());
                assert_eq!(c1.wakes(), 1, "f1 promoted by the guard's drop");
                drop(f1); // cancelled with the promotion
                assert_eq!(c2.wakes(), 1, "forwarded to f2");
                send_f2.send(f2).unwrap();
                ControlFlow::Continue(())
            },
        );
        assert_eq!(out, Ok(()));
        assert_eq!(seen, [10, 11]);
        helper.join().unwrap();
    });
    assert_eq!((c1.wakes(), c2.wakes()), (1, 1));
    let c = stage.counters();
    assert_eq!((c.promotions, c.forwarded_promotions), (3, 1));
    quiet(&stage);
}

/// Tickets dropped while the headship is lent: (a) the ticket of a thread
/// that heads through the lent headship (its token is free again at once,
/// the guard still heads, its drop frees the stage for the lender); (b) a
/// ticket whose leaked future is still queued: it leaves the FIFO, and the
/// lender takes the headship back (nobody promoted).
#[test]
fn tickets_dropped_while_lent_leave_nothing_behind() {
    let _w = watchdog("tickets_dropped_while_lent_leave_nothing_behind");
    let stage = stage(&[(0, 10), (0, 11)]);
    let mut t0 = stage.ticket(0).unwrap();
    let outsider = outsider(&stage);
    let t1 = RefCell::new(Some(stage.ticket(1).unwrap()));
    let mut seen = Vec::new();
    let out = stage.serve(
        &mut t0,
        LONG,
        read_after(|| {
            let mut t1 = t1.borrow_mut();
            let mut fut = stage.enter_async(t1.as_mut().unwrap());
            assert!(poll_once(&mut fut, Waker::noop()).is_pending());
            std::mem::forget(fut);
        }),
        |m| {
            seen.push(m);
            if m == 10 {
                // (b) first: a hand-off would promote the leaked wait (it
                // keeps its FIFO place, as before the change).
                assert_eq!(stage.waiting(), 1, "the leaked wait");
                drop(t1.borrow_mut().take());
                assert_eq!(stage.waiting(), 0);
                // (a)
                let mut tx = stage.ticket(3).unwrap();
                let Entry::Head(g) = stage.enter(&mut tx, Some(Duration::ZERO)) else {
                    panic!("the lent headship is free")
                };
                drop(tx);
                assert_eq!(stage.notify(&3), NotifyOutcome::NoSuchToken);
                let again = stage.ticket(3).unwrap();
                assert!(stage.is_headed());
                drop(g);
                drop(again);
                assert!(!stage.is_headed());
                ControlFlow::Continue(())
            } else {
                ControlFlow::Break(())
            }
        },
    );
    assert_eq!(out, Ok(()));
    assert_eq!(seen, [10, 11]);
    let c = stage.counters();
    assert_eq!((c.promotions, c.forwarded_promotions), (0, 0));
    drop(outsider);
    assert_eq!(stage.tickets(), 1);
    quiet(&stage);
}

/// `handle` panicking on a message a follower took with its `Notified`
/// (under the same lock as its wake-up): nothing is held then, so the head
/// and the FIFO are untouched, that one message is gone (it was handed
/// over), and the next `serve` continues with the rest, in order.
#[test]
fn a_handle_panicking_as_a_follower_disturbs_nothing_and_loses_only_its_message() {
    let _w =
        watchdog("a_handle_panicking_as_a_follower_disturbs_nothing_and_loses_only_its_message");
    let stage = stage(&[]);
    let mut t0 = stage.ticket(0).unwrap();
    let mut th = stage.ticket(9).unwrap();
    let Entry::Head(g) = stage.enter(&mut th, LONG) else {
        panic!("the first entry heads")
    };
    for m in [1, 2, 3] {
        assert_eq!(g.deliver(&0, m), Ok(NotifyOutcome::Recorded));
    }
    thread::scope(|s| {
        s.spawn(|| {
            let r = catch_unwind(AssertUnwindSafe(|| {
                stage.serve(&mut t0, LONG, read, |m| -> ControlFlow<()> {
                    panic!("handle panics on {m}")
                })
            }));
            assert!(r.is_err());
            let mut seen = Vec::new();
            let out = stage.serve(&mut t0, Some(Duration::ZERO), read, |m| {
                seen.push(m);
                ControlFlow::<()>::Continue(())
            });
            assert_eq!((out, seen), (Err(RecvError::TimedOut), vec![2, 3]));
        });
    });
    assert!(
        stage.is_headed() && stage.waiting() == 0,
        "the head is untouched"
    );
    drop(g);
    let c = stage.counters();
    // The second `serve` found its deadline passed before it waited: it
    // served its mail and returned, no wait timed out.
    assert_eq!((c.promotions, c.timeouts), (0, 0));
    quiet(&stage);
}

/// `close` from `handle` while followers are queued behind the lent
/// headship: each is woken with `Closed`, the lender cannot take the
/// headship back, serves what its mailbox holds (delivered to it while
/// lent) and reports `Closed`; nothing more is read.
#[test]
fn close_while_lent_wakes_the_queued_followers_and_serve_still_serves_its_mail() {
    let _w =
        watchdog("close_while_lent_wakes_the_queued_followers_and_serve_still_serves_its_mail");
    let stage = stage(&[(0, 10), (0, 11)]);
    let mut t0 = stage.ticket(0).unwrap();
    let outsider = outsider(&stage);
    let mut t1 = stage.ticket(1).unwrap();
    let (c2, w2) = Count::new();
    let mut t2 = stage.ticket(2).unwrap();
    let mut f2 = stage.enter_async(&mut t2);
    thread::scope(|s| {
        let f = s.spawn(|| {
            once_headed(&stage);
            got(stage.enter(&mut t1, LONG))
        });
        let mut seen = Vec::new();
        let out = stage.serve(
            &mut t0,
            LONG,
            read_after(|| {
                until_waiting(&stage, 1);
                assert!(poll_once(&mut f2, &w2).is_pending());
            }),
            |m| {
                seen.push(m);
                if m == 10 {
                    assert_eq!(stage.waiting(), 2);
                    assert_eq!(stage.deliver(&0, 100), Ok(NotifyOutcome::Recorded));
                    stage.close();
                    assert_eq!(stage.waiting(), 0);
                }
                ControlFlow::<()>::Continue(())
            },
        );
        assert_eq!(out, Err(RecvError::Closed));
        assert_eq!(seen, [10, 100]);
        assert_eq!(f.join().unwrap(), Got::Closed);
    });
    assert_eq!(c2.wakes(), 1);
    assert!(matches!(ready(&mut f2, &w2), Entry::Closed));
    assert_eq!(left(&stage), 1, "nothing read after close");
    assert_eq!(stage.counters().promotions, 0);
    drop(outsider);
    quiet(&stage);
}

/// Mail and notifications for the lender while its headship is lent:
/// recorded (the lender neither heads nor waits), never lost, served in
/// order. (a) The lender takes the headship back: its head loop returns the
/// mail before it reads again, and the bare notification is still pending
/// for its next entry. (b) Another thread heads meanwhile and delivers the
/// lender's message: the lender takes it as a follower (with the
/// `Notified` that brings it), queues, and is promoted when that head
/// leaves.
#[test]
fn the_lenders_own_mail_while_lent_is_served_in_order() {
    let _w = watchdog("the_lenders_own_mail_while_lent_is_served_in_order");
    // (a)
    let stage = stage(&[(0, 10), (0, 11)]);
    let mut t0 = stage.ticket(0).unwrap();
    let mut seen = Vec::new();
    let out = stage.serve(&mut t0, LONG, read, |m| {
        seen.push(m);
        if m == 10 {
            thread::scope(|s| {
                s.spawn(|| {
                    assert_eq!(stage.deliver(&0, 100), Ok(NotifyOutcome::Recorded));
                    assert_eq!(stage.notify(&0), NotifyOutcome::Recorded);
                    assert_eq!(stage.deliver(&0, 101), Ok(NotifyOutcome::Recorded));
                });
            });
        }
        if m == 11 {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    });
    assert_eq!(out, Ok(()));
    assert_eq!(seen, [10, 100, 101, 11]);
    assert!(matches!(stage.enter(&mut t0, LONG), Entry::Notified));
    assert_eq!(stage.counters().recorded, 3);
    quiet(&stage);

    // (b)
    let stage = self::stage(&[(0, 10), (0, 11)]);
    let mut t0 = stage.ticket(0).unwrap();
    let mut tx = stage.ticket(3).unwrap();
    let (headed, is_headed) = mpsc::channel();
    let mut seen = Vec::new();
    let mut tx = Some(&mut tx);
    thread::scope(|s| {
        let out = stage.serve(&mut t0, LONG, read, |m| {
            seen.push(m);
            if m == 10 {
                let (stage, tx, headed) = (&stage, tx.take().unwrap(), headed.clone());
                s.spawn(move || {
                    let Entry::Head(g) = stage.enter(tx, LONG) else {
                        panic!("the lent headship is free")
                    };
                    assert_eq!(g.deliver(&0, 100), Ok(NotifyOutcome::Recorded));
                    headed.send(()).unwrap();
                    // The lender took 100 and waits as a follower now.
                    until_waiting(stage, 1);
                    drop(g);
                });
                is_headed.recv().unwrap();
            }
            if m == 11 {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        });
        assert_eq!(out, Ok(()));
    });
    assert_eq!(seen, [10, 100, 11]);
    assert_eq!(stage.counters().promotions, 1);
    quiet(&stage);
}

/// A `handle` that keeps a `HeadGuard` it obtained (through the lent
/// headship) and asks for more: `serve` cannot take the headship back, and
/// its next entry, on the thread that heads, panics with the misuse message
/// instead of waiting for itself. The kept guard still heads (no second
/// head), and dropping it frees the stage. A `handle` that keeps one and
/// breaks: `serve` returns, the guard is not disturbed.
#[test]
fn a_handle_that_keeps_a_head_guard_gets_the_misuse_panic_and_the_stage_stays_sound() {
    let _w = watchdog(
        "a_handle_that_keeps_a_head_guard_gets_the_misuse_panic_and_the_stage_stays_sound",
    );
    let stage = stage(&[(0, 10), (0, 11), (0, 12)]);
    let mut t0 = stage.ticket(0).unwrap();
    let mut t2 = stage.ticket(2).unwrap();
    let mut kept: Option<HeadGuard<'_, u32, Items, u32>> = None;
    let r = catch_unwind(AssertUnwindSafe(|| {
        stage.serve(&mut t0, LONG, read, |_| {
            if let Entry::Head(g) = stage.enter(&mut t2, Some(Duration::ZERO)) {
                kept = Some(g);
            }
            ControlFlow::<()>::Continue(())
        })
    }));
    let payload = r.expect_err("serve must panic, not wait for itself");
    let msg = payload
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| payload.downcast_ref::<&str>().copied())
        .unwrap_or("");
    assert!(msg.contains("thread that heads"), "message: {msg}");
    assert!(kept.is_some() && stage.is_headed());
    drop(kept.take());
    quiet(&stage);
    assert_eq!(
        stage.serve(&mut t0, LONG, read, ControlFlow::Break),
        Ok(11),
        "10 handled before the panic, 11 still in the resource"
    );
    let out = stage.serve(&mut t0, LONG, read, |m| {
        if let Entry::Head(g) = stage.enter(&mut t2, Some(Duration::ZERO)) {
            kept = Some(g);
        }
        ControlFlow::Break(m)
    });
    assert_eq!(out, Ok(12));
    assert!(stage.is_headed(), "the kept guard still heads");
    assert_eq!(stage.counters().promotions, 0);
    drop(kept);
    quiet(&stage);
}

/// `handle` runs a nested `serve` with another ticket on the same thread:
/// it heads through the outer lent headship, delivers the outer's message,
/// lends in turn, and ends while lent, which promotes the follower queued
/// since before the outer lend. The outer cannot take the headship back
/// and takes its message as a follower; the promoted follower reads its own.
#[test]
fn a_nested_serve_in_handle_shares_the_reading_and_hands_on_when_it_ends() {
    let _w = watchdog("a_nested_serve_in_handle_shares_the_reading_and_hands_on_when_it_ends");
    let stage = stage(&[(0, 10), (2, 20), (0, 11), (2, 21), (3, 30)]);
    let mut t0 = stage.ticket(0).unwrap();
    let mut t2 = stage.ticket(2).unwrap();
    let mut t3 = stage.ticket(3).unwrap();
    let mut outer = Vec::new();
    let mut inner = Vec::new();
    thread::scope(|s| {
        let f = s.spawn(|| {
            once_headed(&stage);
            stage.recv(&mut t3, LONG, read)
        });
        let out = stage.serve(
            &mut t0,
            LONG,
            read_after(|| until_waiting(&stage, 1)),
            |m| {
                outer.push(m);
                if m == 10 {
                    let r = stage.serve(&mut t2, LONG, read, |m| {
                        inner.push(m);
                        if m == 21 {
                            ControlFlow::Break(())
                        } else {
                            ControlFlow::Continue(())
                        }
                    });
                    assert_eq!(r, Ok(()));
                    assert_eq!(stage.counters().promotions, 1, "the follower was promoted");
                    ControlFlow::Continue(())
                } else {
                    ControlFlow::Break(())
                }
            },
        );
        assert_eq!(out, Ok(()));
        assert_eq!(f.join().unwrap(), Ok(30));
    });
    assert_eq!((outer, inner), (vec![10, 11], vec![20, 21]));
    assert_eq!(stage.counters().promotions, 1);
    quiet(&stage);
}

/// After a reclaim, `read_one` fails (or panics): the guard taken back
/// hands the headship to the follower that queued before the lend.
#[test]
fn a_failing_or_panicking_read_after_a_reclaim_hands_the_headship_on() {
    let _w = watchdog("a_failing_or_panicking_read_after_a_reclaim_hands_the_headship_on");
    for panics in [false, true] {
        let stage = stage(&[(0, 10)]);
        let mut t0 = stage.ticket(0).unwrap();
        let outsider = outsider(&stage);
        let mut t1 = stage.ticket(1).unwrap();
        thread::scope(|s| {
            let f = s.spawn(|| {
                once_headed(&stage);
                got(stage.enter(&mut t1, LONG))
            });
            let mut reads = 0;
            let serve = || {
                stage.serve(
                    &mut t0,
                    LONG,
                    |r| {
                        reads += 1;
                        match reads {
                            1 => {
                                until_waiting(&stage, 1);
                                read(r)
                            }
                            _ if panics => panic!("read_one panics"),
                            _ => Err(()),
                        }
                    },
                    |m| {
                        assert_eq!(m, 10);
                        assert!(!stage.is_headed() && stage.waiting() == 1);
                        ControlFlow::<()>::Continue(())
                    },
                )
            };
            match catch_unwind(AssertUnwindSafe(serve)) {
                Ok(out) => assert!(!panics && out == Err(RecvError::Read(()))),
                Err(_) => assert!(panics),
            }
            assert_eq!(f.join().unwrap(), Got::Head, "promoted when serve left");
        });
        assert_eq!(stage.counters().promotions, 1);
        drop(outsider);
        quiet(&stage);
    }
}

/// The deadline. (a) A passed deadline still serves what the mailbox
/// holds (here while another thread heads), then reports `TimedOut`; (b) a
/// deadline that passes while lent: the lender takes the headship back,
/// serves the mail delivered meanwhile, and times out before it reads
/// again; (c) on a closed stage the mailbox is served, then `Closed`.
#[test]
fn serves_deadline_serves_the_mail_that_is_there_and_reports_the_right_end() {
    let _w = watchdog("serves_deadline_serves_the_mail_that_is_there_and_reports_the_right_end");
    // (a)
    let stage = stage(&[]);
    let mut t0 = stage.ticket(0).unwrap();
    let mut th = stage.ticket(9).unwrap();
    let (go, wait) = mpsc::channel::<()>();
    let (headed, is_headed) = mpsc::channel();
    thread::scope(|s| {
        let (stage_ref, th) = (&stage, &mut th);
        s.spawn(move || {
            let g = stage_ref.enter(th, LONG);
            assert!(g.is_head());
            headed.send(()).unwrap();
            wait.recv().unwrap();
            drop(g);
        });
        is_headed.recv().unwrap();
        for m in [1, 2, 3] {
            stage.deliver(&0, m).unwrap();
        }
        let mut seen = Vec::new();
        let out = stage.serve(&mut t0, Some(Duration::ZERO), read, |m| {
            seen.push(m);
            ControlFlow::<()>::Continue(())
        });
        assert_eq!((out, seen), (Err(RecvError::TimedOut), vec![1, 2, 3]));
        go.send(()).unwrap();
    });
    // The deadline had passed before `serve` would wait: no wait timed out.
    assert_eq!(stage.counters().timeouts, 0);
    quiet(&stage);

    // (b)
    let stage = self::stage(&[(0, 10), (0, 11)]);
    let mut t0 = stage.ticket(0).unwrap();
    let timeout = Duration::from_millis(500);
    let start = Instant::now();
    let mut seen = Vec::new();
    let out = stage.serve(&mut t0, Some(timeout), read, |m| {
        seen.push(m);
        if m == 10 {
            stage.deliver(&0, 100).unwrap();
            while start.elapsed() <= timeout {
                thread::sleep(Duration::from_millis(5));
            }
        }
        ControlFlow::<()>::Continue(())
    });
    assert_eq!((out, seen), (Err(RecvError::TimedOut), vec![10, 100]));
    assert_eq!(left(&stage), 1, "not read after the deadline");
    quiet(&stage);

    // (c)
    let stage = self::stage(&[(0, 10)]);
    let mut t0 = stage.ticket(0).unwrap();
    stage.deliver(&0, 1).unwrap();
    stage.deliver(&0, 2).unwrap();
    stage.close();
    for timeout in [Some(Duration::ZERO), LONG] {
        let mut seen = Vec::new();
        let out = stage.serve(&mut t0, timeout, read, |m| {
            seen.push(m);
            ControlFlow::<()>::Continue(())
        });
        let want: &[u32] = if timeout == LONG { &[] } else { &[1, 2] };
        assert_eq!((out, seen.as_slice()), (Err(RecvError::Closed), want));
    }
    assert_eq!(left(&stage), 1);
    quiet(&stage);
}

/// An `enter_async` first polled while lent heads at once; its guard's drop
/// promotes the follower that queued before the lend, which reads the
/// lender's message for it; the lender takes it as a follower.
#[test]
fn an_async_entry_while_lent_heads_and_its_drop_promotes_the_queued_follower() {
    let _w = watchdog("an_async_entry_while_lent_heads_and_its_drop_promotes_the_queued_follower");
    let stage = stage(&[(0, 10), (0, 11), (5, 50)]);
    let mut t0 = stage.ticket(0).unwrap();
    let mut t2 = stage.ticket(2).unwrap();
    let mut t5 = stage.ticket(5).unwrap();
    thread::scope(|s| {
        let f = s.spawn(|| {
            once_headed(&stage);
            stage.recv(&mut t5, LONG, read)
        });
        let mut seen = Vec::new();
        let out = stage.serve(
            &mut t0,
            LONG,
            read_after(|| until_waiting(&stage, 1)),
            |m| {
                seen.push(m);
                if m == 10 {
                    let mut fut = stage.enter_async(&mut t2);
                    let Poll::Ready(Entry::Head(g)) = poll_once(&mut fut, Waker::noop()) else {
                        panic!("the lent headship is free")
                    };
                    drop(g);
                    ControlFlow::Continue(())
                } else {
                    ControlFlow::Break(())
                }
            },
        );
        assert_eq!(out, Ok(()));
        assert_eq!(seen, [10, 11]);
        assert_eq!(f.join().unwrap(), Ok(50));
    });
    let c = stage.counters();
    assert_eq!((c.promotions, c.unrouted), (1, 0));
    quiet(&stage);
}

/// Two `serve`s, a `recv` loop and a hand-written `enter` loop on one
/// stage, with bare notifications from `handle`: every message reaches its
/// owner exactly once, in order, nobody reads while another does, nothing is
/// left queued or heading, and no message goes unrouted.
#[test]
fn serve_recv_and_raw_enter_share_one_stage_every_message_once_in_order() {
    let _w = watchdog("serve_recv_and_raw_enter_share_one_stage_every_message_once_in_order");
    let rounds = iters(20, 2);
    for round in 0..rounds {
        let per = iters(40, 3) as u32;
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ (round as u64 + 1));
        let mut next = [0u32; 4];
        let mut list = Vec::new();
        while next.iter().any(|&n| n < per) {
            let to = rng.below(4) as usize;
            if next[to] < per {
                list.push((to as u32, next[to]));
                next[to] += 1;
            }
        }
        let stage = stage(&list);
        let reading = AtomicUsize::new(0);
        let read_one = |r: &Items| {
            assert_eq!(reading.fetch_add(1, Ordering::SeqCst), 0, "two readers");
            let item = r.lock().unwrap().pop();
            reading.fetch_sub(1, Ordering::SeqCst);
            Ok::<_, ()>(item)
        };
        let tickets: Vec<Ticket<'_, u32, Items, u32>> =
            (0..4).map(|i| stage.ticket(i).unwrap()).collect();
        let got: Vec<Vec<u32>> = thread::scope(|s| {
            let joins: Vec<_> = tickets
                .into_iter()
                .enumerate()
                .map(|(i, mut t)| {
                    let (stage, read_one) = (&stage, &read_one);
                    s.spawn(move || {
                        let mut got = Vec::new();
                        match i {
                            0 | 1 => {
                                let out = stage.serve(&mut t, LONG, read_one, |m| {
                                    got.push(m);
                                    if m % 3 == 0 {
                                        stage.notify(&2);
                                    }
                                    if got.len() == per as usize {
                                        ControlFlow::Break(())
                                    } else {
                                        ControlFlow::Continue(())
                                    }
                                });
                                assert_eq!(out, Ok(()));
                            }
                            2 => {
                                while got.len() < per as usize {
                                    got.push(stage.recv(&mut t, LONG, read_one).unwrap());
                                }
                            }
                            _ => loop {
                                while let Some(m) = stage.try_recv(&mut t) {
                                    got.push(m);
                                }
                                if got.len() == per as usize {
                                    break;
                                }
                                match stage.enter(&mut t, LONG) {
                                    Entry::Head(g) => {
                                        if let Some((to, m)) = read_one(g.resource()).unwrap() {
                                            g.deliver(&to, m).unwrap();
                                        }
                                    }
                                    Entry::Notified => {}
                                    other => panic!("unexpected {other:?}"),
                                }
                            },
                        }
                        got
                    })
                })
                .collect();
            joins.into_iter().map(|j| j.join().unwrap()).collect()
        });
        let want: Vec<u32> = (0..per).collect();
        for (owner, got) in got.iter().enumerate() {
            assert_eq!(
                got, &want,
                "owner {owner}: each of its messages once, in order"
            );
        }
        assert_eq!(left(&stage), 0);
        assert_eq!(stage.counters().unrouted, 0);
        quiet(&stage);
    }
}

// ---------------------------------------------------------------------------
// `serve` lends the headship while its head wakes an owner it delivered to.
// ---------------------------------------------------------------------------

/// A waker that, when woken, lets another thread enter the stage and waits
/// (bounded) until it reports whether it headed: it runs on the serving
/// thread, inside the head's wake-up call.
struct LetInAndWait {
    go: Mutex<mpsc::Sender<()>>,
    headed: Mutex<mpsc::Receiver<bool>>,
    took_over: AtomicUsize,
}

impl Wake for LetInAndWait {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }
    fn wake_by_ref(self: &Arc<Self>) {
        let _ = self.go.lock().unwrap().send(());
        let headed = self
            .headed
            .lock()
            .unwrap()
            .recv_timeout(Duration::from_secs(10));
        if headed == Ok(true) {
            self.took_over.fetch_add(1, Ordering::SeqCst);
        }
    }
}

/// While `serve`'s head wakes an owner (here an async follower, whose
/// waker lets a third thread in), the headship is lent: the third thread
/// heads at once, reads the next item (`serve`'s own) and delivers it;
/// `serve` goes on as a follower and gets it. Before `serve` lent while
/// waking, the third thread waited behind the head until `serve` returned.
#[test]
fn a_thread_entering_while_serve_wakes_an_owner_heads_and_serve_follows() {
    let _w = watchdog("a_thread_entering_while_serve_wakes_an_owner_heads_and_serve_follows");
    assert_eq!(lend_while_waking_to_a_third_thread(false), [2]);
}

/// The same, with a message delivered to `serve`'s own mailbox while its
/// head reads: routing takes it out, and `serve`, no longer heading once
/// the wake-up returns, still handles it, first.
#[test]
fn an_own_message_taken_out_while_the_headship_was_taken_is_still_served() {
    let _w = watchdog("an_own_message_taken_out_while_the_headship_was_taken_is_still_served");
    assert_eq!(lend_while_waking_to_a_third_thread(true), [5, 2]);
}

/// The scenario of the two tests above; returns what `serve` handled.
fn lend_while_waking_to_a_third_thread(deliver_own_meanwhile: bool) -> Vec<u32> {
    let stage = stage(&[(1, 9), (0, 2)]);
    let mut t0 = stage.ticket(0).unwrap();
    let mut t1 = stage.ticket(1).unwrap();
    let mut t2 = stage.ticket(2).unwrap();
    let (go_tx, go_rx) = mpsc::channel();
    let (headed_tx, headed_rx) = mpsc::channel();
    let waker_state = Arc::new(LetInAndWait {
        go: Mutex::new(go_tx),
        headed: Mutex::new(headed_rx),
        took_over: AtomicUsize::new(0),
    });
    let waker = Waker::from(Arc::clone(&waker_state));
    let mut handled = Vec::new();
    thread::scope(|s| {
        let stage = &stage;
        let t2 = &mut t2;
        let third = s.spawn(move || {
            go_rx.recv().unwrap();
            match stage.enter(t2, LONG) {
                Entry::Head(head) => {
                    headed_tx.send(true).unwrap();
                    // Holds the headship until `serve`, back from the
                    // wake-up, has found it taken and waits as a follower.
                    until_waiting(stage, 1);
                    let item = head.resource().lock().unwrap().pop();
                    if let Some((to, m)) = item {
                        assert!(head.deliver(&to, m).is_ok());
                    }
                    Got::Head
                }
                other => {
                    headed_tx.send(false).unwrap();
                    got(other)
                }
            }
        });
        let mut f1 = stage.enter_async(&mut t1);
        let out = stage.serve(
            &mut t0,
            LONG,
            read_after(|| {
                assert!(poll_once(&mut f1, &waker).is_pending());
                if deliver_own_meanwhile {
                    assert_eq!(stage.deliver(&0, 5).unwrap(), NotifyOutcome::Recorded);
                }
            }),
            |m| {
                handled.push(m);
                if m == 2 {
                    ControlFlow::Break(())
                } else {
                    ControlFlow::Continue(())
                }
            },
        );
        assert_eq!(out, Ok(()));
        assert_eq!(
            waker_state.took_over.load(Ordering::SeqCst),
            1,
            "the third thread did not head while serve woke the owner"
        );
        assert_eq!(third.join().unwrap(), Got::Head);
        assert!(matches!(ready(&mut f1, &waker), Entry::Notified));
    });
    assert_eq!(stage.try_recv(&mut t1), Some(9));
    assert_eq!(left(&stage), 0);
    quiet(&stage);
    handled
}

/// `serve`'s head lends the headship while it wakes an owner only if some
/// other ticket is outside the FIFO (a thread that might enter meanwhile):
/// with just the head's ticket and the owner's, lending could only move the
/// reading to the owner being woken, a switch for nothing.
#[test]
fn serve_lends_while_waking_only_if_another_ticket_is_out() {
    let _w = watchdog("serve_lends_while_waking_only_if_another_ticket_is_out");
    for other_out in [false, true] {
        let stage = Arc::new(stage(&[(1, 9), (0, 2)]));
        let (probe, waker) = Probe::new(&stage, || {});
        let mut t0 = stage.ticket(0).unwrap();
        let mut t1 = stage.ticket(1).unwrap();
        let t2 = other_out.then(|| stage.ticket(2).unwrap());
        let mut f1 = stage.enter_async(&mut t1);
        let out = stage.serve(
            &mut t0,
            LONG,
            read_after(|| assert!(poll_once(&mut f1, &waker).is_pending())),
            ControlFlow::Break,
        );
        assert_eq!(out, Ok(2));
        assert_eq!(
            probe.headed(),
            [!other_out],
            "headed while waking the owner, with another ticket out: {other_out}"
        );
        assert!(matches!(ready(&mut f1, &waker), Entry::Notified));
        drop((f1, t0, t2));
        assert_eq!(stage.try_recv(&mut t1), Some(9));
    }
}

/// `serve`'s head that reads its own message hands the headship on to the
/// longest-waiting follower if every other ticket waits in the FIFO
/// (nobody running could take a lent headship, and the longest waiter is
/// the likeliest next reader of its own item), and lends it while another
/// ticket is outside the FIFO (a thread that may enter meanwhile).
#[test]
fn serve_hands_the_headship_on_for_its_own_message_only_if_every_other_ticket_waits() {
    let _w = watchdog(
        "serve_hands_the_headship_on_for_its_own_message_only_if_every_other_ticket_waits",
    );
    for with_outsider in [false, true] {
        let stage = stage(&[(0, 10)]);
        let mut t0 = stage.ticket(0).unwrap();
        let mut t1 = stage.ticket(1).unwrap();
        let outsider = with_outsider.then(|| outsider(&stage));
        thread::scope(|s| {
            let f = s.spawn(|| {
                once_headed(&stage);
                got(stage.enter(&mut t1, LONG))
            });
            let mut in_handle = None;
            let out = stage.serve(
                &mut t0,
                LONG,
                read_after(|| until_waiting(&stage, 1)),
                |m| {
                    let c = stage.counters();
                    in_handle = Some((stage.waiting(), c.promotions));
                    ControlFlow::Break(m)
                },
            );
            assert_eq!(out, Ok(10));
            let want = if with_outsider {
                (1, 0) // lent: the follower still queued
            } else {
                // Handed on: the follower promoted (it may have headed and
                // left already, so whether the stage is headed is a race).
                (0, 1)
            };
            assert_eq!(
                in_handle,
                Some(want),
                "(waiting, promotions) in handle, outsider: {with_outsider}"
            );
            assert_eq!(f.join().unwrap(), Got::Head);
        });
        drop(outsider);
        assert_eq!(stage.counters().promotions, 1);
        quiet(&stage);
    }
}

/// An idle follower (it waited while two rounds of items went by, two per
/// registered ticket: its peer has gone quiet) is not handed the headship
/// when `serve`'s head takes its own message with everyone else waiting:
/// it would only wake to read for the others. The head lends instead. One
/// item fewer, and the same follower is still active and is handed on to.
#[test]
fn serve_does_not_hand_the_headship_on_to_an_idle_follower() {
    let _w = watchdog("serve_does_not_hand_the_headship_on_to_an_idle_follower");
    // Three tickets: a follower is idle after 6 items. The head's own item
    // is the last of them, so `aged` deliveries before it.
    for (aged, idle) in [(5, true), (4, false)] {
        let stage = stage(&[(0, 10)]);
        let mut t0 = stage.ticket(0).unwrap();
        let mut t1 = stage.ticket(1).unwrap();
        let mut t2 = stage.ticket(2).unwrap();
        let (go, gone) = mpsc::channel::<()>();
        thread::scope(|s| {
            let f1 = s.spawn(|| {
                once_headed(&stage);
                got(stage.enter(&mut t1, LONG))
            });
            let (second, t2) = (&stage, &mut t2);
            let f2 = s.spawn(move || {
                gone.recv().unwrap();
                while second.try_recv(t2).is_some() {}
                got(second.enter(t2, LONG))
            });
            let mut in_handle = None;
            let out = stage.serve(
                &mut t0,
                LONG,
                read_after(|| {
                    until_waiting(&stage, 1);
                    for k in 0..aged {
                        assert_eq!(stage.deliver(&2, k), Ok(NotifyOutcome::Recorded));
                    }
                    go.send(()).unwrap();
                    until_waiting(&stage, 2);
                }),
                |m| {
                    in_handle = Some((stage.waiting(), stage.counters().promotions));
                    ControlFlow::Break(m)
                },
            );
            assert_eq!(out, Ok(10));
            let (waiting, promotions) = in_handle.expect("handle ran");
            if idle {
                // Lent: nobody woken, both still queued.
                assert_eq!((waiting, promotions), (2, 0), "aged {aged}");
            } else {
                // Handed on to the first follower, which may already have
                // headed and handed on to the second by now.
                assert!(promotions >= 1 && waiting < 2, "aged {aged}: {in_handle:?}");
            }
            // Whichever way, both followers head in turn afterwards.
            assert_eq!(
                (f1.join().unwrap(), f2.join().unwrap()),
                (Got::Head, Got::Head)
            );
        });
        assert_eq!(stage.counters().promotions, 2);
        quiet(&stage);
    }
}
