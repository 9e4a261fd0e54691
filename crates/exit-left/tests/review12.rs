//! Hostile review 12 of exit-left (at 7c39c7f, the changes since c8b3cb7):
//! `serve` handing the headship on when every other ticket waits
//! (`HeadGuard::lend_unless_all_wait`), `serve_the_rest` (a `serve` past its
//! deadline or closed serves only the mail there), `Resolution::Notified {
//! bare }` (a cancelled wait gives a bare notification back only if one
//! resolved it), and `EnterFuture::poll` checking the ticket before the lock.
//!
//! Findings (`finding_N_*`) failed on the code reviewed and pass since the
//! fixes: a heading `serve` past its deadline no longer takes a lent
//! headship back (1); `serve` never hands on to a queued task, which its
//! own thread may be the one to poll (`Table::queued_tasks`, 2);
//! `RecvError::Closed` says what `serve` leaves in the mailbox (3, docs). The attacks that held (`held_*`) are
//! regression tests. Every test that can block runs under a watchdog with
//! bounded waits; no sockets, no timing assertions (a few tests sleep past a
//! short deadline, which Miri's clock honours).

mod common;

use common::script::{Count, Items, S, quiet, read, read_after, ready, stage};
use common::{Got, LONG, Rng, got, iters, poll_once, watchdog};
use exit_left::{Entry, NotifyOutcome, RecvError, Ticket};
use std::cell::RefCell;
use std::ops::ControlFlow;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::task::Waker;
use std::thread;
use std::time::Duration;
use testkit::{HostileWaker, Misbehaviour};

type T<'s> = Ticket<'s, u32, Items, u32>;

fn message(p: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        String::from("<non-string payload>")
    }
}

// ===========================================================================
// FINDING 1: a `serve` that *heads* when its deadline passes keeps serving
// mail that arrives after the deadline, for as long as it keeps arriving.
//
// Change 2 bounds the follower path only: the deadline is compared at the
// top of `serve`'s outer loop (src/mailbox.rs:182-184), which a head never
// reaches while it lends and takes the headship back. The inner loop
// (src/mailbox.rs:206-237) goes `head_loop` -> `Reading::Own` -> `lend` ->
// `handle` -> `lent.reclaim()` -> `head_loop` again, and `head_loop` returns
// the head's next own message *before* it looks at the deadline
// (src/mailbox.rs:309-318: `if let Some(m) = own { return Ok(Reading::Own
// ..) }` comes first). `reclaim` looks at `close` but not at the deadline
// (src/head.rs:176-196). So a head whose mailbox keeps being refilled (by
// `handle` itself, which the docs allow, or by any thread's `deliver`)
// never returns `TimedOut`: here 99 messages delivered after the deadline
// are served and `serve` returns only because `handle` breaks. The
// docs of `serve_the_rest` (src/mailbox.rs:243-246): "mail that keeps
// arriving, even from `handle` itself, cannot keep `serve` from returning".
// (`close` is bounded on this path: `reclaim` fails on a closed stage.)
//
// Fix: in the inner loop, once the deadline has passed, do not take the
// headship back: drop `lent` (it hands a still-free headship on) and
// `return self.serve_the_rest(ticket, &mut handle)`; e.g. `match
// lent.reclaim() { Some(h) if !deadline.is_some_and(|d| Instant::now() >=
// d) => head = h, Some(h) => { drop(h); return self.serve_the_rest(..) }
// None => break }`, or let `head_loop` check the deadline before it
// returns an own message it found in the mailbox (not one it read).
// ===========================================================================

#[test]
fn finding_1_a_heading_serve_serves_mail_delivered_after_its_deadline_without_end() {
    let _w = watchdog("finding_1_a_heading_serve_serves_mail_delivered_after_its_deadline");
    let timeout = Duration::from_millis(5);
    // One ticket: nobody waits, so the head lends the headship for its own
    // message (the path at fault) and takes it back.
    let stage = stage(&[(0, 0)]);
    let mut t0 = stage.ticket(0).unwrap();
    let mut n = 0;
    let r = stage.serve(&mut t0, Some(timeout), read, |m| {
        n += 1;
        if n == 1 {
            // The deadline passes while the first message is handled; the
            // mailbox is empty then.
            thread::sleep(timeout * 4);
        }
        if n >= 100 {
            return ControlFlow::Break(m);
        }
        stage.deliver(&0, m + 1).unwrap();
        ControlFlow::Continue(())
    });
    assert_eq!(
        r,
        Err(RecvError::TimedOut),
        "serve handled {n} messages, all but the first delivered after its deadline"
    );
}

/// The same attack on the follower path and on the hand-on path (another
/// ticket waits): both reach the top of `serve`'s loop and are bounded.
#[test]
fn held_serve_past_its_deadline_as_a_follower_serves_only_what_was_there() {
    let _w = watchdog("held_serve_past_its_deadline_as_a_follower_serves_only_what_was_there");
    let timeout = Duration::from_millis(5);
    let stage = stage(&[]);
    let mut t0 = stage.ticket(0).unwrap();
    // Mail waits: `serve` takes it as a follower would (`Notified` with
    // the message, under one lock), never heading.
    stage.deliver(&0, 0).unwrap();
    let mut n = 0;
    let r = stage.serve(&mut t0, Some(timeout), read, |m| {
        n += 1;
        if n == 1 {
            thread::sleep(timeout * 4);
        }
        if n >= 100 {
            return ControlFlow::Break(m);
        }
        stage.deliver(&0, m + 1).unwrap();
        ControlFlow::Continue(())
    });
    assert_eq!(r, Err(RecvError::TimedOut));
    // The first, then at most the one delivered before the deadline was
    // noticed.
    assert!(n <= 2, "served {n}");
    let left: Vec<u32> = std::iter::from_fn(|| stage.try_recv(&mut t0)).collect();
    assert_eq!(left.len(), 1, "the last delivery stays in the mailbox");
    quiet(&stage);
}

// ===========================================================================
// FINDING 2: the hand-on assumes that a ticket waiting in the FIFO has no
// running thread that could take a lent headship. For an `enter_async`
// future that is false: its task may be polled by the very thread that
// runs `serve` (a local executor driven from `read_one`/`handle`, as the
// crate's own tests do, e.g. review_lend.rs
// `cancelled_futures_while_lent_give_back_what_they_hold`). `serve` then
// promotes that future (src/head.rs:115-128 via src/mailbox.rs:208), handles
// its message, enters again (src/mailbox.rs:210-215 `break`) and parks as a
// follower behind a promotion only its own thread can pick up: it waits
// until its deadline (forever with `None`) with its next own item unread,
// where the lending it did before this change handled the message, took the
// headship back and read on. Nothing in `serve`'s docs warns that a pending
// future of the serving thread now stalls it ("`handle` may use the
// stage"; the exception is justified by "nobody is running who could take a
// lent headship").
//
// Fix: count only blocking waiters in `all_wait` (mark a queued slot as
// async in `Wait::Queued` or keep a count of queued futures in `Table`, and
// hand on only when every other ticket is a queued *thread*); otherwise
// lend as before.
// ===========================================================================

#[test]
fn finding_2_serve_hands_on_to_a_future_its_own_thread_polls_and_stalls_to_its_deadline() {
    let _w = watchdog("finding_2_serve_hands_on_to_a_future_its_own_thread_polls");
    let stage = stage(&[(0, 10), (0, 11)]);
    let mut t0 = stage.ticket(0).unwrap();
    let mut t1 = stage.ticket(1).unwrap();
    let (c1, w1) = Count::new();
    let f1 = RefCell::new(stage.enter_async(&mut t1));
    let mut seen = Vec::new();
    let out = stage.serve(
        &mut t0,
        Some(Duration::from_millis(50)),
        read_after(|| assert!(poll_once(&mut *f1.borrow_mut(), &w1).is_pending())),
        |m| {
            seen.push(m);
            if m == 11 {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        },
    );
    // Whatever happened, the future is this thread's to finish.
    let promoted = c1.wakes();
    drop(f1);
    assert_eq!(
        (out, seen),
        (Ok(()), vec![10, 11]),
        "serve stalled behind a promotion of a future its own thread polls \
         (the future was woken {promoted} times)"
    );
}

// ===========================================================================
// FINDING 3 (documentation): `RecvError::Closed` says "The stage is closed
// and this ticket's mailbox is empty" (src/lib.rs:267). Since change
// 2, `serve` on a closed stage serves only what its mailbox held when it
// looked (`serve_the_rest`, src/mailbox.rs:247-267, returns `Closed`
// whatever arrived since), so `Err(Closed)` comes back with mail in the
// mailbox: a caller that trusts the docs and drops its ticket on `Closed`
// drops those messages. (Before the change the drain ran until the
// mailbox was empty, which made the doc true but let `serve` run forever.)
//
// Fix: the docs: "`Closed`: the stage is closed; for `recv`, the mailbox
// is empty; `serve` leaves mail that arrived after it saw `close` in the
// mailbox (`try_recv`)" (then this test becomes a `held_` test of the
// documented behaviour, with the assertion inverted).
// ===========================================================================

#[test]
fn finding_3_serve_returns_closed_with_the_mail_that_came_after_close_still_there() {
    let _w = watchdog("finding_3_serve_returns_closed_with_mail_left");
    let stage = stage(&[]);
    let mut t0 = stage.ticket(0).unwrap();
    stage.deliver(&0, 1).unwrap();
    stage.close();
    let r = stage.serve(&mut t0, None, read, |m| {
        // Another delivery while `serve` drains (any thread may deliver).
        stage.deliver(&0, m + 1).unwrap();
        ControlFlow::<()>::Continue(())
    });
    assert_eq!(r, Err(RecvError::Closed));
    assert_eq!(
        stage.try_recv(&mut t0),
        Some(2),
        "RecvError::Closed from serve: what came after close stays in the mailbox"
    );
}

// ===========================================================================
// HELD: async followers. Since finding 2's fix `serve` never hands its
// headship on to a queued task (it lends instead), so the review's
// single-threaded hand-on tests that promoted a future through `serve`
// (a promoted future cancelled in `handle`, its waker hostile, an entry
// from `handle` beside it) are gone; a future promoted by a dropped guard
// is covered by api.rs and review_findings.rs. The `bare` flag's test
// below promotes the future with a guard drop instead, and the two that
// still pass through `serve` check that a queued task changes nothing.
// ===========================================================================

/// The `bare` flag across a promotion turned into a notification: after a
/// dropped guard promoted a future, deliveries to / notifications of its
/// token,
/// which wins over the promotion (forwarded: nobody else waits, the stage is
/// free). Cancelled, the future gives back a bare notification only if one
/// was among them; completed, it returns one `Notified`. Either way, once
/// the owner has its mail, exactly the notifications owed come back.
#[test]
fn held_the_bare_flag_across_a_promotion_then_a_notification_then_cancel_or_poll() {
    let _w = watchdog("held_the_bare_flag_across_a_promotion_then_a_notification");
    #[derive(Clone, Copy, Debug)]
    enum Op {
        Deliver,
        Notify,
    }
    use Op::{Deliver, Notify};
    let cases: [&[Op]; 6] = [
        &[Deliver],
        &[Notify],
        &[Deliver, Notify],
        &[Notify, Deliver],
        &[Deliver, Deliver],
        &[Notify, Notify],
    ];
    for ops in cases {
        for cancel in [true, false] {
            let stage = stage(&[]);
            let mut t0 = stage.ticket(0).unwrap();
            let mut t1 = stage.ticket(1).unwrap();
            let (c1, w1) = Count::new();
            let mut delivered = Vec::new();
            {
                let Entry::Head(g) = stage.enter(&mut t0, LONG) else {
                    panic!("the first entry heads")
                };
                let mut f = stage.enter_async(&mut t1);
                assert!(poll_once(&mut f, &w1).is_pending());
                drop(g);
                assert_eq!(c1.wakes(), 1, "promoted");
                for (i, op) in ops.iter().enumerate() {
                    let o = match op {
                        Deliver => {
                            delivered.push(i as u32);
                            stage.deliver(&1, i as u32).unwrap()
                        }
                        Notify => stage.notify(&1),
                    };
                    assert_eq!(o, NotifyOutcome::Woken, "{ops:?}");
                }
                assert!(!stage.is_headed(), "the promotion was forwarded");
                if !cancel {
                    assert!(matches!(ready(&mut f, &w1), Entry::Notified));
                }
                drop(f);
            }
            assert_eq!(c1.wakes(), 1, "one wake-up for the promotion only");
            let mail: Vec<u32> = std::iter::from_fn(|| stage.try_recv(&mut t1)).collect();
            assert_eq!(mail, delivered, "{ops:?}");
            let bare = ops.iter().any(|o| matches!(o, Notify));
            let want = if bare && cancel {
                vec![Got::Notified, Got::Head]
            } else {
                vec![Got::Head]
            };
            let mut gotten = Vec::new();
            loop {
                let g = got(stage.enter(&mut t1, Some(Duration::ZERO)));
                gotten.push(g);
                if g != Got::Notified {
                    break;
                }
            }
            assert_eq!(gotten, want, "{ops:?}, cancel: {cancel}");
            let c = stage.counters();
            assert_eq!(
                (c.promotions, c.forwarded_promotions, c.woken),
                (1, 1, ops.len() as u64),
                "{ops:?}"
            );
            quiet(&stage);
        }
    }
}

/// A task queued while `serve` handles its own message (so the headship is
/// lent, not handed on): `handle` panics, the lent headship goes to the
/// task, nothing is left behind; `serve`'s ticket is usable again.
#[test]
fn held_handle_panicking_with_a_task_queued_leaves_the_headship_with_it() {
    let _w = watchdog("held_handle_panicking_with_a_task_queued");
    let stage = stage(&[(0, 10)]);
    let mut t0 = stage.ticket(0).unwrap();
    let mut t1 = stage.ticket(1).unwrap();
    let (c1, w1) = Count::new();
    let mut f1 = stage.enter_async(&mut t1);
    let r = catch_unwind(AssertUnwindSafe(|| {
        stage.serve(
            &mut t0,
            LONG,
            read_after(|| assert!(poll_once(&mut f1, &w1).is_pending())),
            |_| -> ControlFlow<()> { panic!("deliberate: handle panics") },
        )
    }));
    assert!(message(&*r.expect_err("handle panicked")).contains("deliberate"));
    assert_eq!(c1.wakes(), 1);
    assert!(ready(&mut f1, &w1).is_head());
    drop(f1);
    assert_eq!(stage.counters().promotions, 1);
    quiet(&stage);
    assert_eq!(
        stage.serve(&mut t0, Some(Duration::ZERO), read, ControlFlow::Break),
        Err(RecvError::TimedOut)
    );
}

/// A task queued while `serve` handles its own message (lent): `handle`
/// closes the stage, the task gets `Closed`, `serve` serves its mail and
/// returns `Closed`.
#[test]
fn held_close_in_handle_with_a_task_queued_closes_it() {
    let _w = watchdog("held_close_in_handle_with_a_task_queued");
    let stage = stage(&[(0, 10), (0, 11)]);
    let mut t0 = stage.ticket(0).unwrap();
    let mut t1 = stage.ticket(1).unwrap();
    let (c1, w1) = Count::new();
    let mut f1 = stage.enter_async(&mut t1);
    let mut seen = Vec::new();
    let out = stage.serve(
        &mut t0,
        LONG,
        read_after(|| assert!(poll_once(&mut f1, &w1).is_pending())),
        |m| {
            seen.push(m);
            if m == 10 {
                stage.deliver(&0, 20).unwrap();
                stage.close();
            }
            ControlFlow::<()>::Continue(())
        },
    );
    assert_eq!(out, Err(RecvError::Closed));
    assert_eq!(seen, [10, 20]);
    assert_eq!(c1.wakes(), 1, "the promotion's wake-up only");
    assert!(matches!(ready(&mut f1, &w1), Entry::Closed));
    drop(f1);
    assert_eq!(common::script::left(&stage), 1, "nothing read after close");
    quiet(&stage);
}

// ===========================================================================
// HELD: `serve_the_rest` (change 2).
// ===========================================================================

/// Past the deadline (zero) or closed: `handle` breaking half-way leaves the
/// rest in the mailbox, in order, for the next `serve`; a panicking
/// `handle` loses only the message it held.
#[test]
fn held_serve_the_rest_with_handle_that_breaks_or_panics_keeps_the_rest_in_order() {
    let _w = watchdog("held_serve_the_rest_with_handle_that_breaks_or_panics");
    for closed in [false, true] {
        let (timeout, end) = if closed {
            (None, RecvError::Closed)
        } else {
            (Some(Duration::ZERO), RecvError::TimedOut)
        };
        let stage = stage(&[(0, 99)]);
        let mut t0 = stage.ticket(0).unwrap();
        for m in 0..6 {
            stage.deliver(&0, m).unwrap();
        }
        if closed {
            stage.close();
        }
        let r = stage.serve(&mut t0, timeout, read, |m| {
            if m == 1 {
                ControlFlow::Break(m)
            } else {
                ControlFlow::Continue(())
            }
        });
        assert_eq!(r, Ok(1));
        let r = catch_unwind(AssertUnwindSafe(|| {
            stage.serve(&mut t0, timeout, read, |m| {
                assert_ne!(m, 3, "deliberate: handle panics on 3");
                ControlFlow::<()>::Continue(())
            })
        }));
        assert!(r.is_err());
        let mut seen = Vec::new();
        let r = stage.serve(&mut t0, timeout, read, |m| {
            seen.push(m);
            ControlFlow::<()>::Continue(())
        });
        assert_eq!((r, seen), (Err(end), vec![4, 5]));
        assert_eq!(common::script::left(&stage), 1, "nothing read");
        let c = stage.counters();
        assert_eq!((c.timeouts, c.promotions), (0, 0));
        quiet(&stage);
    }
}

/// A zero time-out never reads and never heads, and a bare notification
/// recorded for the ticket survives it (`serve` does not report bare
/// notifications; the next `enter` does).
#[test]
fn held_a_zero_deadline_serve_keeps_a_bare_notification_and_reads_nothing() {
    let _w = watchdog("held_a_zero_deadline_serve_keeps_a_bare_notification");
    let stage = stage(&[(0, 10)]);
    let mut t0 = stage.ticket(0).unwrap();
    assert_eq!(stage.notify(&0), NotifyOutcome::Recorded);
    stage.deliver(&0, 1).unwrap();
    let mut seen = Vec::new();
    let r = stage.serve(&mut t0, Some(Duration::ZERO), read, |m| {
        seen.push(m);
        ControlFlow::<()>::Continue(())
    });
    assert_eq!((r, seen), (Err(RecvError::TimedOut), vec![1]));
    assert_eq!(common::script::left(&stage), 1);
    assert_eq!(
        got(stage.enter(&mut t0, Some(Duration::ZERO))),
        Got::Notified
    );
    assert_eq!(got(stage.enter(&mut t0, Some(Duration::ZERO))), Got::Head);
    quiet(&stage);
}

// ===========================================================================
// HELD: change 4, the ticket checked before anything else in `poll`.
// ===========================================================================

/// A foreign ticket on the first poll panics with the misuse message before
/// the task's waker is cloned (a clone that panics is never reached), and
/// leaves both stages sound.
#[test]
fn held_enter_async_with_a_foreign_ticket_panics_before_cloning_the_waker() {
    let _w = watchdog("held_enter_async_with_a_foreign_ticket_panics_before_cloning");
    let one = stage(&[]);
    let other = stage(&[]);
    let _pad: Vec<T<'_>> = (10..14).map(|i| other.ticket(i).unwrap()).collect();
    let mut t = other.ticket(1).unwrap();
    let task = HostileWaker::new(Misbehaviour::PanicOnClone);
    let w = task.waker();
    let r = catch_unwind(AssertUnwindSafe(|| {
        let mut f = one.enter_async(&mut t);
        let _ = poll_once(&mut f, &w);
    }));
    let msg = message(&*r.expect_err("a foreign ticket must panic"));
    assert!(msg.contains("a ticket from another stage"), "{msg:?}");
    assert_eq!(task.clones(), 0);
    quiet(&one);
    quiet(&other);
    let mut f = other.enter_async(&mut t);
    assert!(ready(&mut f, Waker::noop()).is_head());
    drop(f);
    task.disarm();
    drop(w);
    assert_eq!(task.live(), 0);
}

// ===========================================================================
// HELD: the hand-on with real threads (properties that hold in every
// interleaving only).
// ===========================================================================

/// `serve` until `want` messages are handled; the ticket's messages in the
/// order handled.
fn serve_count(stage: &S, t: &mut T<'_>, want: usize) -> Vec<u32> {
    let mut seen = Vec::new();
    if want == 0 {
        return seen;
    }
    let out = stage.serve(t, LONG, read, |m| {
        seen.push(m);
        if seen.len() == want {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    });
    assert_eq!(out, Ok(()), "after {seen:?}");
    seen
}

/// Two or three `serve`s (no outsider: whenever the others all wait, the
/// head hands on) over random scripts: each gets every one of its messages
/// once, in script order; at the end nobody heads or waits, nothing was
/// unrouted and the script is read to the end.
#[test]
fn held_serves_taking_turns_with_hand_ons_get_every_message_once_in_order() {
    let _w = watchdog("held_serves_taking_turns_with_hand_ons");
    let mut rng = Rng(0x5EED_1212_u64);
    for round in 0..iters(40, 2) {
        let n = 2 + rng.below(2) as u32;
        let len = 4 + rng.below(16) as u32;
        let script: Vec<(u32, u32)> = (0..len)
            .map(|i| (rng.below(u64::from(n)) as u32, i))
            .collect();
        let stage = stage(&script);
        let tickets: Vec<T<'_>> = (0..n).map(|i| stage.ticket(i).unwrap()).collect();
        // The last item's owner reads to the end; the others stop after
        // their last message (read by then).
        thread::scope(|s| {
            let mut joins = Vec::new();
            for (i, mut t) in tickets.into_iter().enumerate() {
                let want: Vec<u32> = script
                    .iter()
                    .filter(|(to, _)| *to == i as u32)
                    .map(|&(_, m)| m)
                    .collect();
                let stage = &stage;
                joins.push(s.spawn(move || {
                    let seen = serve_count(stage, &mut t, want.len());
                    assert_eq!(seen, want, "round {round}, ticket {i}");
                    // Keep the ticket until every thread is done: a late
                    // item for it must not go unrouted.
                    t
                }));
            }
            let tickets: Vec<T<'_>> = joins.into_iter().map(|j| j.join().unwrap()).collect();
            drop(tickets);
        });
        assert_eq!(common::script::left(&stage), 0, "round {round}");
        assert_eq!(stage.counters().unrouted, 0);
        quiet(&stage);
    }
}

/// A `serve` whose every item is its own, beside followers that enter with
/// random short time-outs (so they time out, re-enter, get promoted by a
/// hand-on and drop the headship, in every order, also between the hand-on's
/// look and its hand-off): `serve` gets all its messages, in order; nobody
/// is left heading or queued; every promotion is accounted for.
#[test]
fn held_hand_ons_racing_followers_that_time_out_lose_nothing() {
    let _w = watchdog("held_hand_ons_racing_followers_that_time_out");
    let mut rng = Rng(0xF011_0E55);
    for round in 0..iters(20, 2) {
        let len = iters(30, 4) as u32;
        let script: Vec<(u32, u32)> = (0..len).map(|i| (0, i)).collect();
        let stage = stage(&script);
        let mut t0 = stage.ticket(0).unwrap();
        let done = AtomicBool::new(false);
        let heads = AtomicUsize::new(0);
        thread::scope(|s| {
            for f in 1..3u32 {
                let mut t = stage.ticket(f).unwrap();
                let seed = rng.next() | 1;
                let (stage, done, heads) = (&stage, &done, &heads);
                s.spawn(move || {
                    let mut rng = Rng(seed);
                    while !done.load(Ordering::SeqCst) {
                        let us = rng.below(200);
                        match stage.enter(&mut t, Some(Duration::from_micros(us))) {
                            Entry::Head(g) => {
                                assert_eq!(heads.fetch_add(1, Ordering::SeqCst), 0, "two heads");
                                thread::yield_now();
                                heads.fetch_sub(1, Ordering::SeqCst);
                                drop(g);
                            }
                            Entry::TimedOut => {}
                            e => panic!("round {round}: {:?}", got(e)),
                        }
                    }
                });
            }
            let mut seen = Vec::new();
            let out = stage.serve(
                &mut t0,
                LONG,
                |r| {
                    assert_eq!(heads.fetch_add(1, Ordering::SeqCst), 0, "two heads");
                    let item = read(r);
                    heads.fetch_sub(1, Ordering::SeqCst);
                    item
                },
                |m| {
                    seen.push(m);
                    if seen.len() == len as usize {
                        ControlFlow::Break(())
                    } else {
                        ControlFlow::Continue(())
                    }
                },
            );
            done.store(true, Ordering::SeqCst);
            assert_eq!(out, Ok(()), "round {round}");
            assert_eq!(seen, (0..len).collect::<Vec<_>>(), "round {round}");
        });
        let c = stage.counters();
        // Every promotion reached a follower that headed or `serve` itself
        // (nobody forwards: no notifications, no cancellations, and a
        // promotion made by the deadline is a head, not a time-out).
        assert_eq!(c.forwarded_promotions, 0, "round {round}: {c:?}");
        quiet(&stage);
    }
}

/// `close` from another thread at a random moment, while `serve` hands on
/// to a blocking follower or lends: `serve` returns `Closed` having handled
/// a prefix of its messages in order, the rest is in its mailbox or unread;
/// the follower ends with `Closed`; nobody is left heading or queued.
#[test]
fn held_close_racing_hand_ons_loses_nothing_and_wakes_everyone() {
    let _w = watchdog("held_close_racing_hand_ons");
    let mut rng = Rng(0xC105_E000);
    for round in 0..iters(30, 2) {
        let len = 10u32;
        let script: Vec<(u32, u32)> = (0..len).map(|i| (0, i)).collect();
        let stage = stage(&script);
        let mut t0 = stage.ticket(0).unwrap();
        let mut t1 = stage.ticket(1).unwrap();
        let spins = rng.below(400);
        thread::scope(|s| {
            let stage = &stage;
            s.spawn(move || {
                loop {
                    match stage.enter(&mut t1, LONG) {
                        Entry::Head(g) => drop(g),
                        Entry::Closed => break,
                        e => panic!("round {round}: {:?}", got(e)),
                    }
                }
            });
            s.spawn(move || {
                for _ in 0..spins {
                    thread::yield_now();
                }
                stage.close();
            });
            let mut seen = Vec::new();
            let out = stage.serve(&mut t0, LONG, read, |m| {
                seen.push(m);
                ControlFlow::<()>::Continue(())
            });
            assert_eq!(out, Err(RecvError::Closed), "round {round}");
            let mut all = seen.clone();
            all.extend(std::iter::from_fn(|| stage.try_recv(&mut t0)));
            let unread = common::script::left(stage) as u32;
            all.extend(len - unread..len);
            assert_eq!(
                all,
                (0..len).collect::<Vec<_>>(),
                "round {round}, seen {seen:?}"
            );
        });
        quiet(&stage);
    }
}
