//! Hostile review of 532d5a4 + 55c9187: `serve`'s head lends the headship
//! while it wakes an owner it delivered to (if another ticket is outside
//! the FIFO), `Routed` from `route_as_head`, `head_loop` returning
//! `Reading::{Own, Taken}`.
//!
//! Findings (`// FINDING:`) fail on the code reviewed; the attacks that held
//! (`// HELD:`) are kept as regression tests. Every test that can block
//! runs under a watchdog; waits are bounded only to turn a hang into a
//! failure; nothing asserts on time. No sockets (Miri-friendly).
//!
//! The loom models of this review are in tests/loom_review9.rs.

mod common;

use common::script::{Items, Probe, S, left, once_headed, quiet, read, stage};
use common::{Got, LONG, Tok, armed, got, iters, poll_once, tok, until_waiting, watchdog};
use exit_left::{Entry, NotifyOutcome, RecvError, Stage, Ticket};
use std::ops::ControlFlow;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, Mutex, OnceLock, mpsc};
use std::task::{Poll, Wake, Waker};
use std::thread;
use std::time::{Duration, Instant};
use testkit::{HostileWaker, Misbehaviour, ReentrantWaker};

// ===========================================================================
// FINDING 1: a read token whose `Drop` panics loses the routed owner's
// wake-up (a follower waiting without a time-out hangs forever).
//
// Before the change `route_as_head` woke the owner right after the lock,
// and only then dropped the token it had read (user code). Now it returns
// the waker in `Routed` for `head_loop` to wake (after lending, in
// `serve`), and drops the token first (src/stage.rs:671 `drop(token)`,
// with the waker live in the local `wake` from src/stage.rs:635-637): the
// owner's slot is already `Resolved(Notified)` and out of the FIFO, its
// message in its mailbox, `woken` counted, and the unwind drops the waker
// unwoken. Nothing can wake that owner any more (`notify` coalesces with
// the resolved wait, `close` only wakes queued waiters): a blocking
// follower with no time-out parks for good, a task is never polled again.
// Both `recv` and `serve` (the code is shared). review3's finding 3 made
// the same token `Drop` safe for the head's own message; the wake-up it
// now outlives was not covered.
//
// Fix: keep the waker in a guard that wakes it (quietly) on drop, e.g.
// `Routed { wake: WakeOnDrop(Option<Waker>), .. }` with `head_loop` taking
// it out to wake after `lend`; or drop `unrouted`/`token` only after the
// caller has woken the owner (return them in `Routed` too).
// ===========================================================================

type TS = Stage<Tok, (), u32>;

/// The head (`serve` if `serve`, else `recv`) reads one item for a waiting
/// task, whose token's `Drop` panics; returns the task's wakes.
fn token_drop_panics_while_routing(serve: bool) -> usize {
    let stage: TS = Stage::with_mailbox(());
    let mut h = stage.ticket(tok(0)).unwrap();
    let mut f = stage.ticket(tok(1)).unwrap();
    // A ticket outside the FIFO: `serve` would lend while it wakes.
    let _idle = stage.ticket(tok(2)).unwrap();
    let task = HostileWaker::new(Misbehaviour::None);
    let mut follower = stage.enter_async(&mut f);
    let mut first = true;
    let mut read_one = |_: &()| {
        if !std::mem::take(&mut first) {
            return Ok::<_, ()>(None);
        }
        // A task queues as a follower while the head reads...
        assert!(poll_once(&mut follower, &task.waker()).is_pending());
        // ... and the head reads an item for it.
        Ok(Some((armed(1), 50)))
    };
    let r = catch_unwind(AssertUnwindSafe(|| {
        if serve {
            stage
                .serve(&mut h, LONG, &mut read_one, ControlFlow::Break)
                .map(drop)
        } else {
            stage.recv(&mut h, LONG, &mut read_one).map(drop)
        }
    }));
    assert!(r.is_err(), "the token's drop panic reaches the caller");
    let c = stage.counters();
    assert_eq!(c.woken, 1, "counted as woken");
    let wakes = task.wakes();
    // What the task would find if it were polled: its message is there.
    assert!(matches!(
        poll_once(&mut follower, Waker::noop()),
        Poll::Ready(Entry::Notified)
    ));
    drop(follower);
    assert_eq!(stage.try_recv(&mut f), Some(50));
    quiet(&stage);
    wakes
}

// FINDING: `recv`'s head: a panicking `Drop` of the token it read loses the
// routed owner's wake-up (src/stage.rs:671 drops the token while the
// waker returned in `Routed` is not woken yet).
#[test]
fn finding_1_recv_a_read_tokens_panicking_drop_loses_the_owners_wake_up() {
    let _w = watchdog("finding_1_recv_a_read_tokens_panicking_drop_loses_the_owners_wake_up");
    assert_eq!(
        token_drop_panics_while_routing(false),
        1,
        "the owner was delivered to (Resolved(Notified), counted woken) but never woken"
    );
}

// FINDING: the same through `serve`'s head.
#[test]
fn finding_1_serve_a_read_tokens_panicking_drop_loses_the_owners_wake_up() {
    let _w = watchdog("finding_1_serve_a_read_tokens_panicking_drop_loses_the_owners_wake_up");
    assert_eq!(
        token_drop_panics_while_routing(true),
        1,
        "the owner was delivered to (Resolved(Notified), counted woken) but never woken"
    );
}

// FINDING: the consequence for a blocking follower with no time-out (the
// README's "thread per peer" loop): it parks forever with its message in
// its mailbox. Bounded here (10 s) to fail instead of hanging; on failure
// the follower thread is left parked (it cannot be woken).
#[test]
fn finding_1_a_follower_without_time_out_hangs_when_the_read_tokens_drop_panics() {
    let _w =
        watchdog("finding_1_a_follower_without_time_out_hangs_when_the_read_tokens_drop_panics");
    let stage: Arc<TS> = Arc::new(Stage::with_mailbox(()));
    let mut h = stage.ticket(tok(0)).unwrap();
    let (registered_tx, registered_rx) = mpsc::channel();
    let (done_tx, done_rx) = mpsc::channel();
    {
        let stage = Arc::clone(&stage);
        thread::spawn(move || {
            let mut t1 = stage.ticket(tok(1)).unwrap();
            registered_tx.send(()).unwrap();
            once_headed(&stage);
            let got = stage.recv(&mut t1, None, |_| Ok::<_, ()>(None));
            let _ = done_tx.send(got);
        });
    }
    registered_rx.recv().unwrap();
    let mut first = true;
    let r = catch_unwind(AssertUnwindSafe(|| {
        stage.recv(&mut h, LONG, |_| {
            if std::mem::take(&mut first) {
                until_waiting(&stage, 1);
                Ok::<_, ()>(Some((armed(1), 50)))
            } else {
                Ok(None)
            }
        })
    }));
    assert!(r.is_err());
    assert_eq!(
        done_rx.recv_timeout(Duration::from_secs(10)),
        Ok(Ok(50)),
        "the follower (recv without time-out) was never woken for its message"
    );
}

// ===========================================================================
// FINDING 2 (minor: latency, nothing lost): after a wake-up lend that it
// takes back, `serve`'s head reads the resource again without looking at
// its own mailbox, although another thread may have headed during the lend
// and routed the head's own item there.
//
// src/mailbox.rs:289-290: `Some(again) => head = again` and the loop goes
// on with the `own` that `route_as_head` popped *before* the lend, straight
// to `read_one`. The handle-lend path re-looks (`head_loop` starts with
// `own_and_closed`), and the docs promise "the head looks at its own
// mailbox, `close` and the deadline before every read" (`serve`, `recv`
// step 3). With a socket, the head then blocks in `recv_from` (up to its
// read time-out, or until unrelated traffic arrives) while its own
// datagram, already read by the other head, waits in its mailbox; if that
// read fails, `serve` returns `Err(Read)` with the message still queued.
//
// Fix: have `Lent::reclaim` also pop the head's next own message (and
// read `closed`) under the lock it takes anyway, and continue `head_loop`
// with that (no extra lock).
// ===========================================================================

// FINDING: after taking a wake-up lend back, the head reads before it
// looks at its mailbox (src/mailbox.rs:289-290).
#[test]
fn finding_2_after_taking_a_wake_up_lend_back_the_head_reads_before_looking_at_its_mailbox() {
    let _w = watchdog(
        "finding_2_after_taking_a_wake_up_lend_back_the_head_reads_before_looking_at_its_mailbox",
    );
    static ST: OnceLock<S> = OnceLock::new();
    let stage: Static = ST.get_or_init(|| stage(&[(1, 9), (0, 2)]));
    let tx = Arc::new(Mutex::new(Some(stage.ticket(3).unwrap())));
    let delivered = Arc::new(std::sync::atomic::AtomicBool::new(false));
    // In the owner's wake-up (lent): another ticket heads, routes an item
    // of the lender's to its mailbox, and hands the headship back (free).
    let task = reentrant({
        let (tx, delivered) = (Arc::clone(&tx), Arc::clone(&delivered));
        move || {
            let mut tx = tx.lock().unwrap();
            if let Entry::Head(g) = stage.enter(tx.as_mut().unwrap(), Some(Duration::ZERO)) {
                assert_eq!(g.deliver(&0, 100), Ok(NotifyOutcome::Recorded));
                delivered.store(true, std::sync::atomic::Ordering::SeqCst);
            }
        }
    });
    let waker = task.waker();
    let mut t0 = stage.ticket(0).unwrap();
    let mut t1 = stage.ticket(1).unwrap();
    let t2 = stage.ticket(2).unwrap();
    let mut f1 = stage.enter_async(&mut t1);
    let handled = std::cell::RefCell::new(Vec::new());
    let read_with_own_mail_waiting = std::cell::Cell::new(false);
    let mut first = true;
    let out = stage.serve(
        &mut t0,
        LONG,
        |r| {
            if std::mem::take(&mut first) {
                assert!(poll_once(&mut f1, &waker).is_pending());
            } else if delivered.load(std::sync::atomic::Ordering::SeqCst)
                && !handled.borrow().contains(&100)
            {
                read_with_own_mail_waiting.set(true);
            }
            read(r)
        },
        |m| {
            handled.borrow_mut().push(m);
            if m == 2 {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        },
    );
    assert!(delivered.load(std::sync::atomic::Ordering::SeqCst), "lent");
    assert_eq!(out, Ok(()));
    assert_eq!(*handled.borrow(), [100, 2]);
    drop(f1);
    drop((t0, t2, tx.lock().unwrap().take()));
    assert_eq!(stage.try_recv(&mut t1), Some(9));
    assert!(
        !read_with_own_mail_waiting.get(),
        "the head read the resource while its own message (routed to it during the lend) waited"
    );
}

// ===========================================================================
// Attacks that held.
// ===========================================================================

/// Items: `(1, 9)` for a task queued on ticket 1 (polled with `waker`
/// while `serve` heads), then `(0, 2)`. Ticket 2 is idle (so `serve` lends
/// while it wakes the task). If `own_first`, 5 is delivered to ticket 0
/// just before the first read (routing takes it out with the task's item).
/// Returns `serve`'s result, what it handled and the task's entry.
fn serve_waking_a_task(
    stage: &S,
    waker: &Waker,
    own_first: bool,
    timeout: Option<Duration>,
    mut also: impl FnMut(),
) -> (Result<(), RecvError<()>>, Vec<u32>, Got) {
    let mut t0 = stage.ticket(0).unwrap();
    let mut t1 = stage.ticket(1).unwrap();
    let t2 = stage.ticket(2).unwrap();
    let mut f1 = stage.enter_async(&mut t1);
    let mut first = true;
    let mut handled = Vec::new();
    let out = stage.serve(
        &mut t0,
        timeout,
        |r| {
            if std::mem::take(&mut first) {
                assert!(poll_once(&mut f1, waker).is_pending());
                if own_first {
                    assert_eq!(stage.deliver(&0, 5), Ok(NotifyOutcome::Recorded));
                }
                also();
            }
            read(r)
        },
        |m| {
            handled.push(m);
            if m == 2 {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        },
    );
    let entry = match poll_once(&mut f1, Waker::noop()) {
        Poll::Ready(e) => got(e),
        Poll::Pending => panic!("the task is still queued"),
    };
    drop(f1);
    assert_eq!(stage.try_recv(&mut t1), Some(9), "the task's message");
    drop((t0, t2));
    (out, handled, entry)
}

// HELD: a waker that panics (also with a payload that panics when dropped)
// while the headship is lent for its wake-up: caught, the head takes the
// headship back and reads on; nothing lost; counters right.
#[test]
fn held_a_panicking_wake_while_lent_is_caught_and_serve_reads_on() {
    let _w = watchdog("held_a_panicking_wake_while_lent_is_caught_and_serve_reads_on");
    for how in [
        Misbehaviour::PanicOnWake,
        Misbehaviour::PanicOnWakeWithPanickingPayload(3),
    ] {
        for own_first in [false, true] {
            let stage = stage(&[(1, 9), (0, 2)]);
            let task = HostileWaker::new(how);
            let (out, handled, entry) =
                serve_waking_a_task(&stage, &task.waker(), own_first, LONG, || {});
            assert_eq!(out, Ok(()));
            let want: &[u32] = if own_first { &[5, 2] } else { &[2] };
            assert_eq!(handled, want);
            assert_eq!((entry, task.wakes()), (Got::Notified, 1));
            let c = stage.counters();
            assert_eq!(
                (c.woken, c.own_token, c.recorded, c.promotions),
                (1, 1, u64::from(own_first), 0)
            );
            assert_eq!(left(&stage), 0);
            quiet(&stage);
        }
    }
}

// HELD: `close` from inside the wake-up (on the serving thread) while the
// headship is lent: the head cannot take it back, serves the own message
// that routing had taken out, and reports `Closed`; nothing more is read.
#[test]
fn held_close_from_the_wake_while_lent_keeps_the_own_message() {
    let _w = watchdog("held_close_from_the_wake_while_lent_keeps_the_own_message");
    for own_first in [false, true] {
        let stage = Arc::new(stage(&[(1, 9), (0, 2)]));
        let (probe, waker) = Probe::new(&stage, {
            let stage = Arc::clone(&stage);
            move || stage.close()
        });
        let (out, handled, entry) = serve_waking_a_task(&stage, &waker, own_first, LONG, || {});
        assert_eq!(probe.headed(), [false], "lent while waking");
        assert_eq!(out, Err(RecvError::Closed));
        let want: &[u32] = if own_first { &[5] } else { &[] };
        assert_eq!(handled, want, "the own message taken out before the lend");
        assert_eq!(entry, Got::Notified);
        assert_eq!(left(&stage), 1, "(0, 2) is not read after close");
        quiet(&stage);
    }
}

// HELD: bare notifications from inside the wake-up while lent (to the
// lender's token and to the owner being woken): recorded / coalesced, the
// head takes the headship back, the counters say so.
#[test]
fn held_notifications_from_the_wake_while_lent() {
    let _w = watchdog("held_notifications_from_the_wake_while_lent");
    let stage = Arc::new(stage(&[(1, 9), (0, 2)]));
    let (probe, waker) = Probe::new(&stage, {
        let stage = Arc::clone(&stage);
        move || {
            assert_eq!(stage.notify(&0), NotifyOutcome::Recorded);
            assert_eq!(stage.notify(&1), NotifyOutcome::Woken);
        }
    });
    let (out, handled, entry) = serve_waking_a_task(&stage, &waker, false, LONG, || {});
    assert_eq!(probe.headed(), [false], "lent while waking");
    assert_eq!((out, handled, entry), (Ok(()), vec![2], Got::Notified));
    let c = stage.counters();
    assert_eq!((c.woken, c.recorded, c.own_token), (2, 1, 1));
    quiet(&stage);
}

// HELD: the lender's deadline passes during the wake-up: it takes the
// headship back, still serves the own message it holds, then times out
// without reading on; nothing is left headed.
#[test]
fn held_the_deadline_passing_during_the_wake_while_lent() {
    let _w = watchdog("held_the_deadline_passing_during_the_wake_while_lent");
    let timeout = Duration::from_millis(30);
    let read_at = Arc::new(Mutex::new(None::<Instant>));
    let stage = Arc::new(stage(&[(1, 9), (0, 2)]));
    let (probe, waker) = Probe::new(&stage, {
        let read_at = Arc::clone(&read_at);
        move || {
            // `serve` started before the first read: its deadline is
            // before `read_at + timeout`. Not a timing assertion: it
            // only makes sure the deadline has passed.
            let until = read_at.lock().unwrap().unwrap() + timeout * 2;
            while Instant::now() < until {
                thread::sleep(timeout);
            }
        }
    });
    let (out, handled, entry) = serve_waking_a_task(&stage, &waker, true, Some(timeout), || {
        *read_at.lock().unwrap() = Some(Instant::now());
    });
    assert_eq!(probe.headed(), [false], "lent while waking");
    assert_eq!(
        (out, handled, entry),
        (Err(RecvError::TimedOut), vec![5], Got::Notified)
    );
    assert_eq!(left(&stage), 1);
    quiet(&stage);
}

/// A stage that outlives the test (a static), so that a waker (`'static`)
/// can hold tickets of it.
type Static = &'static S;

/// Runs `hook` in the task's wake-up (on the serving thread, while lent).
fn reentrant(hook: impl Fn() + Send + Sync + 'static) -> Arc<ReentrantWaker> {
    let task = ReentrantWaker::new();
    task.set_on_wake(Box::new(hook));
    task
}

// HELD: from inside the wake-up, on the serving thread, while lent: `enter`
// with another ticket heads at once (the headship is lent), delivers to the
// lender and drops its guard (nobody queued: the headship is free again);
// the lender takes it back and serves that message first. Then a nested
// `serve` from the same place reads the next items itself.
#[test]
fn held_enter_and_serve_from_the_wake_while_lent() {
    let _w = watchdog("held_enter_and_serve_from_the_wake_while_lent");
    static ST: OnceLock<S> = OnceLock::new();
    let stage: Static = ST.get_or_init(|| stage(&[(1, 9), (0, 2)]));
    let tx = Arc::new(Mutex::new(Some(stage.ticket(3).unwrap())));
    let headed = Arc::new(Mutex::new(None));
    let task = reentrant({
        let (tx, headed) = (Arc::clone(&tx), Arc::clone(&headed));
        move || {
            let mut tx = tx.lock().unwrap();
            let e = stage.enter(tx.as_mut().unwrap(), Some(Duration::ZERO));
            *headed.lock().unwrap() = Some(e.is_head());
            if let Entry::Head(g) = e {
                assert_eq!(g.deliver(&0, 100), Ok(NotifyOutcome::Recorded));
            }
        }
    });
    let (out, handled, entry) = serve_waking_a_task(stage, &task.waker(), false, LONG, || {});
    assert_eq!(*headed.lock().unwrap(), Some(true), "lent while waking");
    assert_eq!((out, handled, entry), (Ok(()), vec![100, 2], Got::Notified));
    assert_eq!(task.wakes(), 1);
    assert_eq!(stage.counters().promotions, 0);
    drop(tx.lock().unwrap().take());
    quiet(stage);

    // A nested `serve` in the wake-up reads (0, 2) for the lender and its
    // own (3, 30); the lender takes the headship back and finds 2.
    static ST2: OnceLock<S> = OnceLock::new();
    let stage: Static = ST2.get_or_init(|| crate::stage(&[(1, 9), (0, 2), (3, 30)]));
    let tx = Arc::new(Mutex::new(Some(stage.ticket(3).unwrap())));
    let nested = Arc::new(Mutex::new(None));
    let task = reentrant({
        let (tx, nested) = (Arc::clone(&tx), Arc::clone(&nested));
        move || {
            let mut tx = tx.lock().unwrap();
            let out = stage.serve(tx.as_mut().unwrap(), LONG, read, ControlFlow::Break);
            *nested.lock().unwrap() = Some(out);
        }
    });
    let (out, handled, entry) = serve_waking_a_task(stage, &task.waker(), false, LONG, || {});
    assert_eq!(*nested.lock().unwrap(), Some(Ok(30)));
    assert_eq!((out, handled, entry), (Ok(()), vec![2], Got::Notified));
    drop(tx.lock().unwrap().take());
    assert_eq!(left(stage), 0);
    quiet(stage);
}

// HELD: the woken owner's ticket dropped inside its own wake-up while lent
// (its future was leaked, which ends the borrow): it leaves with its
// message; the lender takes the headship back and reads on.
#[test]
fn held_the_woken_owners_ticket_dropped_in_its_wake_while_lent() {
    let _w = watchdog("held_the_woken_owners_ticket_dropped_in_its_wake_while_lent");
    static ST: OnceLock<S> = OnceLock::new();
    let stage: Static = ST.get_or_init(|| stage(&[(1, 9), (0, 2)]));
    let mut t0 = stage.ticket(0).unwrap();
    let t1: Arc<Mutex<Option<Ticket<'static, u32, Items, u32>>>> =
        Arc::new(Mutex::new(Some(stage.ticket(1).unwrap())));
    let t2 = stage.ticket(2).unwrap();
    let headed = Arc::new(Mutex::new(None));
    let task = reentrant({
        let (t1, headed) = (Arc::clone(&t1), Arc::clone(&headed));
        move || {
            *headed.lock().unwrap() = Some(stage.is_headed());
            drop(t1.lock().unwrap().take());
        }
    });
    let waker = task.waker();
    let mut first = true;
    let out = stage.serve(
        &mut t0,
        LONG,
        |r| {
            if std::mem::take(&mut first) {
                let mut t1 = t1.lock().unwrap();
                let mut fut = stage.enter_async(t1.as_mut().unwrap());
                assert!(poll_once(&mut fut, &waker).is_pending());
                std::mem::forget(fut);
            }
            read(r)
        },
        ControlFlow::Break,
    );
    assert_eq!(*headed.lock().unwrap(), Some(false), "lent while waking");
    assert_eq!(out, Ok(2));
    assert_eq!(task.wakes(), 1);
    assert!(t1.lock().unwrap().is_none());
    assert_eq!(stage.notify(&1), NotifyOutcome::NoSuchToken);
    assert_eq!(stage.tickets(), 2);
    let c = stage.counters();
    assert_eq!((c.woken, c.own_token, c.promotions), (1, 1, 0));
    drop((t0, t2));
    quiet(stage);
}

// HELD: a thread that enters during the wake-up (another thread, let in by
// the waker) heads and drops its guard, which promotes a `recv` follower
// queued before the lend; that follower reads the lender's message and
// its own; the lender, finding the headship taken, follows and gets its
// message. One promotion per hand-off; nothing lost or left queued.
#[test]
fn held_a_promotion_made_during_the_wake_lend_reaches_the_queued_follower() {
    let _w = watchdog("held_a_promotion_made_during_the_wake_lend_reaches_the_queued_follower");
    let stage = stage(&[(1, 9), (0, 2), (5, 50)]);
    let mut t0 = stage.ticket(0).unwrap();
    let mut t1 = stage.ticket(1).unwrap();
    let t2 = stage.ticket(2).unwrap();
    let mut t3 = stage.ticket(3).unwrap();
    let mut t5 = stage.ticket(5).unwrap();
    let (go_tx, go_rx) = mpsc::channel::<()>();
    let (done_tx, done_rx) = mpsc::channel::<Got>();
    struct LetIn {
        go: Mutex<mpsc::Sender<()>>,
        done: Mutex<mpsc::Receiver<Got>>,
        saw: Mutex<Option<Got>>,
    }
    impl Wake for LetIn {
        fn wake(self: Arc<Self>) {
            let _ = self.go.lock().unwrap().send(());
            let saw = self
                .done
                .lock()
                .unwrap()
                .recv_timeout(Duration::from_secs(20))
                .ok();
            *self.saw.lock().unwrap() = saw;
        }
    }
    let let_in = Arc::new(LetIn {
        go: Mutex::new(go_tx),
        done: Mutex::new(done_rx),
        saw: Mutex::new(None),
    });
    let waker = Waker::from(Arc::clone(&let_in));
    thread::scope(|s| {
        let stage = &stage;
        let follower = s.spawn(move || {
            once_headed(stage);
            stage.recv(&mut t5, LONG, read)
        });
        let third = s.spawn(move || {
            go_rx.recv().unwrap();
            let e = got(stage.enter(&mut t3, Some(Duration::ZERO)));
            done_tx.send(e).unwrap();
        });
        let mut f1 = stage.enter_async(&mut t1);
        let mut first = true;
        let mut handled = Vec::new();
        let out = stage.serve(
            &mut t0,
            LONG,
            |r| {
                if std::mem::take(&mut first) {
                    until_waiting(stage, 1);
                    assert!(poll_once(&mut f1, &waker).is_pending());
                }
                read(r)
            },
            |m| {
                handled.push(m);
                ControlFlow::Break(())
            },
        );
        assert_eq!(*let_in.saw.lock().unwrap(), Some(Got::Head), "lent");
        assert_eq!((out, handled), (Ok(()), vec![2]));
        assert_eq!(follower.join().unwrap(), Ok(50));
        third.join().unwrap();
        assert!(matches!(
            poll_once(&mut f1, Waker::noop()),
            Poll::Ready(Entry::Notified)
        ));
    });
    assert_eq!(stage.try_recv(&mut t1), Some(9));
    assert_eq!(left(&stage), 0);
    assert_eq!(stage.counters().unrouted, 0);
    drop(t2);
    quiet(&stage);
}

// HELD: several `serve`s sharing one stage with an idle ticket (so every
// wake-up is made with the headship lent, and owners back from their
// messages take the reading over): every message reaches its owner once,
// in order; never two readers; every routed item counted exactly once
// (`woken + recorded + own_token` = items); nothing left queued or heading.
#[test]
fn held_counters_and_order_with_lending_serves() {
    let _w = watchdog("held_counters_and_order_with_lending_serves");
    for round in 0..iters(10, 1) {
        let owners = 3u32;
        let per = iters(60, 4) as u32;
        let mut list = Vec::new();
        let mut next = vec![0u32; owners as usize];
        let mut x = 0x2545_F491_u64 ^ (round as u64 * 7919 + 1);
        while next.iter().any(|&n| n < per) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let to = (x % u64::from(owners)) as usize;
            if next[to] < per {
                list.push((to as u32, next[to]));
                next[to] += 1;
            }
        }
        let stage = stage(&list);
        let _idle = stage.ticket(99).unwrap();
        let reading = std::sync::atomic::AtomicUsize::new(0);
        let read_one = |r: &Items| {
            use std::sync::atomic::Ordering::SeqCst;
            assert_eq!(reading.fetch_add(1, SeqCst), 0, "two readers");
            let item = r.lock().unwrap().pop();
            reading.fetch_sub(1, SeqCst);
            Ok::<_, ()>(item)
        };
        let tickets: Vec<_> = (0..owners).map(|i| stage.ticket(i).unwrap()).collect();
        let got: Vec<Vec<u32>> = thread::scope(|s| {
            let joins: Vec<_> = tickets
                .into_iter()
                .map(|mut t| {
                    let (stage, read_one) = (&stage, &read_one);
                    s.spawn(move || {
                        let mut got = Vec::new();
                        let out = stage.serve(&mut t, LONG, read_one, |m| {
                            got.push(m);
                            if got.len() == per as usize {
                                ControlFlow::Break(())
                            } else {
                                ControlFlow::Continue(())
                            }
                        });
                        assert_eq!(out, Ok(()));
                        got
                    })
                })
                .collect();
            joins.into_iter().map(|j| j.join().unwrap()).collect()
        });
        let want: Vec<u32> = (0..per).collect();
        for (owner, got) in got.iter().enumerate() {
            assert_eq!(got, &want, "owner {owner}");
        }
        let c = stage.counters();
        assert_eq!(
            c.woken + c.recorded + c.own_token,
            list.len() as u64,
            "every routed item counted once: {c:?}"
        );
        assert_eq!((c.no_such_token, c.unrouted, c.timeouts), (0, 0, 0));
        assert_eq!(left(&stage), 0);
        quiet(&stage);
    }
}

// HELD: `recv` does not lend while it wakes (its contract): with another
// ticket out, the stage is still headed inside the owner's wake-up.
#[test]
fn held_recv_keeps_the_headship_while_it_wakes() {
    let _w = watchdog("held_recv_keeps_the_headship_while_it_wakes");
    let stage = Arc::new(stage(&[(1, 9), (0, 2)]));
    let (probe, waker) = Probe::new(&stage, || {});
    let mut t0 = stage.ticket(0).unwrap();
    let mut t1 = stage.ticket(1).unwrap();
    let _t2 = stage.ticket(2).unwrap();
    let mut f1 = stage.enter_async(&mut t1);
    let mut first = true;
    let out = stage.recv(&mut t0, LONG, |r| {
        if std::mem::take(&mut first) {
            assert!(poll_once(&mut f1, &waker).is_pending());
        }
        read(r)
    });
    assert_eq!(out, Ok(2));
    assert_eq!(probe.headed(), [true]);
    drop(f1);
    assert_eq!(stage.try_recv(&mut t1), Some(9));
}
