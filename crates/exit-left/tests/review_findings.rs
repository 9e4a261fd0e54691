//! Hostile review of exit-left: one reproducing test per finding, and the
//! attacks that held up (kept as regression tests).
//!
//! Findings 1-4 each failed on the code they were found in and pass since
//! their fix (commit after ddaf421). Every test that can block
//! runs under a watchdog; a test that shows a hang waits a bounded time and
//! then asserts.

mod common;

use common::{Got, LONG, Rng, Tok, got, poll_once, tok, until_waiting, watchdog};
use exit_left::{Entry, HeadGuard, NotifyOutcome, RecvError, Stage};
use std::collections::VecDeque;
use std::future::Future;
use std::hash::{Hash, Hasher};
use std::ops::ControlFlow;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Poll, Wake, Waker};
use std::thread;
use std::time::{Duration, Instant};
use testkit::{HostileWaker, Misbehaviour, ReentrantWaker};

/// Takes the headship through `enter_async` (so the thread that holds it may
/// still poll other futures of the stage, as a single-threaded executor does).
fn async_head<'s, T: Hash + Eq, R, M>(
    stage: &'s Stage<T, R, M>,
    ticket: &mut exit_left::Ticket<'s, T, R, M>,
) -> HeadGuard<'s, T, R, M> {
    let mut fut = stage.enter_async(ticket);
    match poll_once(&mut fut, Waker::noop()) {
        Poll::Ready(Entry::Head(head)) => head,
        _ => panic!("nobody heads: the first entry must head"),
    }
}

// ---------------------------------------------------------------------------
// Finding 1: `close` wakes its waiters in a loop; the first waker whose
// `wake` panics ends the loop, and every waiter queued after it is marked
// `Closed` but never woken. A blocking follower waiting without a time-out
// sleeps forever.
// ---------------------------------------------------------------------------

#[test]
fn close_wakes_every_waiter_even_when_one_wake_panics() {
    let _w = watchdog("close_wakes_every_waiter_even_when_one_wake_panics");
    let stage = Arc::new(Stage::new(()));
    let mut h = stage.ticket(0u32).unwrap();
    let mut a = stage.ticket(1).unwrap();
    let mut b = stage.ticket(2).unwrap();
    let head = stage.enter(&mut h, None);
    // FIFO: a (its waker panics on wake), b (a good task), c (a thread
    // waiting without a time-out).
    let bad = HostileWaker::new(Misbehaviour::PanicOnWake);
    let good = HostileWaker::new(Misbehaviour::None);
    let mut fa = stage.enter_async(&mut a);
    assert!(poll_once(&mut fa, &bad.waker()).is_pending());
    let mut fb = stage.enter_async(&mut b);
    assert!(poll_once(&mut fb, &good.waker()).is_pending());
    let (tx, rx) = mpsc::channel();
    let c_thread = {
        let stage = Arc::clone(&stage);
        thread::spawn(move || {
            let mut c = stage.ticket(3).unwrap();
            let _ = tx.send(got(stage.enter(&mut c, None)));
        })
    };
    until_waiting(&stage, 3);
    // a's wake panics (a fix may or may not let that panic out of close).
    let _ = catch_unwind(AssertUnwindSafe(|| stage.close()));
    assert_eq!(bad.wakes(), 1);
    // Bounded: the thread waits without a time-out, so if close did not wake
    // it, it never returns (and is left behind, parked).
    let blocking = rx.recv_timeout(Duration::from_secs(10)).ok();
    assert_eq!(
        (good.wakes(), blocking),
        (1, Some(Got::Closed)),
        "(the task, the blocking thread) queued behind the panicking waker were never woken"
    );
    c_thread.join().unwrap();
    assert!(matches!(
        poll_once(&mut fb, &good.waker()),
        Poll::Ready(Entry::Closed)
    ));
    drop((fa, fb, head));
}

// ---------------------------------------------------------------------------
// Finding 2: `EnterFuture::poll` consumes the outcome (clears the pending
// flag or the resolution, sets its phase to `Done`) and only then drops the
// waker clone it made during this poll. If that drop panics, the `Entry`
// (a `Notified`) unwinds away: the notification is lost, and the future is
// `Done`, so dropping it gives nothing back.
// ---------------------------------------------------------------------------

#[test]
fn a_panicking_drop_of_the_polls_waker_clone_loses_no_notification() {
    let _w = watchdog("a_panicking_drop_of_the_polls_waker_clone_loses_no_notification");
    let stage = Arc::new(Stage::new(()));
    let mut h = stage.ticket(0u32).unwrap();
    let mut a = stage.ticket(1).unwrap();
    let head = async_head(&stage, &mut h);

    // The waker's clone notifies `a` (re-entrancy from foreign code) and
    // the clone's drop then panics.
    //
    // First poll (not yet queued): the clone records the notification, the
    // loop takes it as `Notified`, then the clone's drop panics. The
    // notification must reach the poller or stay recorded for the ticket.
    let rw = ReentrantWaker::new();
    let first_ok = notified_despite_a_panicking_drop(&stage, &mut a, &rw, false);

    // A queued future polled again with a new waker: the clone resolves the
    // wait as `Notified`, the poll finishes it, then the clone's drop panics.
    let rw = ReentrantWaker::new();
    let second_ok = notified_despite_a_panicking_drop(&stage, &mut a, &rw, true);
    drop(head);
    assert_eq!(
        (first_ok, second_ok),
        (true, true),
        "(first poll, poll while queued): the notification consumed by the panicking poll is lost"
    );
}

/// Polls a new future of `a` with `rw`'s waker (after one poll with a plain
/// waker if `queued_first`), arming `rw` (clone notifies `a`, drop panics)
/// just before; whether the notification was returned by that poll or is
/// still there for the ticket's next entry.
fn notified_despite_a_panicking_drop<'s>(
    stage: &'s Arc<Stage<u32, ()>>,
    a: &mut exit_left::Ticket<'s, u32, ()>,
    rw: &Arc<ReentrantWaker>,
    queued_first: bool,
) -> bool {
    let (seen, queued) = (std::cell::Cell::new(false), std::cell::Cell::new(false));
    let w = rw.waker();
    let plain = HostileWaker::new(Misbehaviour::None);
    // Some drop of an armed waker panics (where depends on the code).
    let _ = catch_unwind(AssertUnwindSafe(|| {
        let mut fut = stage.enter_async(&mut *a);
        queued.set(!queued_first || poll_once(&mut fut, &plain.waker()).is_pending());
        let s = Arc::clone(stage);
        rw.set_on_clone(Box::new(move || {
            s.notify(&1);
        }));
        rw.set_on_drop(Box::new(|| panic!("deliberate: a waker's drop panics")));
        if let Poll::Ready(Entry::Notified) = poll_once(&mut fut, &w) {
            seen.set(true);
        }
        drop(fut);
        drop(w);
    }));
    assert!(queued.get(), "the first poll queued the future");
    if seen.get() {
        return true;
    }
    let mut fut = stage.enter_async(a);
    let again = matches!(
        poll_once(&mut fut, Waker::noop()),
        Poll::Ready(Entry::Notified)
    );
    drop(fut);
    again
}

// ---------------------------------------------------------------------------
// Finding 3: `Ticket::drop` forwards a promotion its leaked future received
// (the crate supports reusing or dropping a ticket after `mem::forget` of
// its future), but drops the token and the unread messages (user `Drop`s)
// *before* waking the follower it promoted. A panicking token (or message)
// `Drop` unwinds past the wake: the next follower heads but is never woken;
// a blocking one without a time-out waits forever and nobody reads.
// ---------------------------------------------------------------------------

#[test]
fn a_panicking_token_drop_does_not_swallow_a_forwarded_promotion() {
    let _w = watchdog("a_panicking_token_drop_does_not_swallow_a_forwarded_promotion");
    let stage: Stage<Tok, ()> = Stage::new(());
    let mut h = stage.ticket(tok(0)).unwrap();
    let mut x = stage.ticket(Tok { id: 1, armed: true }).unwrap();
    let mut y = stage.ticket(tok(2)).unwrap();
    let head = stage.enter(&mut h, None);
    let task_x = HostileWaker::new(Misbehaviour::None);
    let mut fx = stage.enter_async(&mut x);
    assert!(poll_once(&mut fx, &task_x.waker()).is_pending());
    std::mem::forget(fx);
    let task_y = HostileWaker::new(Misbehaviour::None);
    let mut fy = stage.enter_async(&mut y);
    assert!(poll_once(&mut fy, &task_y.waker()).is_pending());
    drop(head); // x waited first: its leaked future is promoted
    assert_eq!(task_x.wakes(), 1);
    // Dropping x's ticket forwards the promotion to y; x's token panics.
    let _ = catch_unwind(AssertUnwindSafe(move || drop(x)));
    let woken = task_y.wakes();
    // The state says y heads, so a poll (which the missing wake-up would
    // have caused) finds it; the wake-up itself is what was lost.
    assert!(matches!(
        poll_once(&mut fy, &task_y.waker()),
        Poll::Ready(Entry::Head(_))
    ));
    drop(fy);
    assert_eq!(
        woken, 1,
        "y was promoted but never woken: nobody heads in practice"
    );
    drop(h);
}

// ---------------------------------------------------------------------------
// Finding 4: a token's `Eq` runs under the stage's mutex (the crate docs say
// the mutex is "never held while user code runs"). An `Eq` that calls back
// into the stage (here `tickets()`) deadlocks the thread on the stage's own
// mutex, and with it the whole stage: misuse that hangs instead of
// panicking with a message.
// ---------------------------------------------------------------------------

/// A token whose `Eq` looks at the stage (as a logging or metrics `Eq`
/// might).
#[derive(Debug)]
struct Nosy(u32);
static NOSY_STAGE: OnceLock<Stage<Nosy, ()>> = OnceLock::new();
impl PartialEq for Nosy {
    fn eq(&self, other: &Self) -> bool {
        if let Some(stage) = NOSY_STAGE.get() {
            let _ = stage.tickets();
        }
        self.0 == other.0
    }
}
impl Eq for Nosy {}
impl Hash for Nosy {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.0.hash(state);
    }
}

#[test]
fn a_token_eq_that_reenters_the_stage_does_not_hang() {
    let _w = watchdog("a_token_eq_that_reenters_the_stage_does_not_hang");
    let stage = NOSY_STAGE.get_or_init(|| Stage::new(()));
    // Kept registered for good: if the lookup below deadlocks, the lock is
    // never released and dropping the ticket would hang this thread too.
    std::mem::forget(stage.ticket(Nosy(1)).unwrap());
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let r = catch_unwind(|| stage.notify(&Nosy(1)));
        let _ = tx.send(r.is_ok());
    });
    assert!(
        rx.recv_timeout(Duration::from_secs(10)).is_ok(),
        "notify with a re-entrant Eq neither returned nor panicked: it deadlocked on the stage"
    );
}

// ---------------------------------------------------------------------------
// What held up. Each is a regression test for an attack that failed.
// ---------------------------------------------------------------------------

/// Wakers re-entering the stage from `wake` (close, notify, deliver, a
/// blocking `enter` of another ticket) and from `drop` (of a replaced
/// waker): nothing deadlocks, nothing is lost.
#[test]
fn reentrant_wakers_may_call_back_into_the_stage() {
    let _w = watchdog("reentrant_wakers_may_call_back_into_the_stage");
    let stage: Arc<Stage<u32, (), u32>> = Arc::new(Stage::with_mailbox(()));
    let mut h = stage.ticket(0).unwrap();
    let mut a = stage.ticket(1).unwrap();
    let mut b = stage.ticket(2).unwrap();
    let head = async_head(&stage, &mut h);

    // a's wake (from the hand-off) delivers to b and enters with a third
    // ticket, blocking, from inside the waker.
    let rw = ReentrantWaker::new();
    let (s, entered) = (Arc::clone(&stage), Arc::new(Mutex::new(None)));
    let entered2 = Arc::clone(&entered);
    rw.set_on_wake(Box::new(move || {
        assert_eq!(s.deliver(&2, 7), Ok(NotifyOutcome::Recorded));
        let mut c = s.ticket(3).unwrap();
        *entered2.lock().unwrap() = Some(got(s.enter(&mut c, Some(Duration::ZERO))));
    }));
    // The replaced waker's drop calls into the stage while a's future is
    // being polled.
    let first = ReentrantWaker::new();
    let fw = first.waker();
    let mut fa = stage.enter_async(&mut a);
    assert!(poll_once(&mut fa, &fw).is_pending());
    let (s, dropped) = (Arc::clone(&stage), Arc::new(AtomicBool::new(false)));
    let dropped2 = Arc::clone(&dropped);
    first.set_on_drop(Box::new(move || {
        assert_eq!(s.notify(&99), NotifyOutcome::NoSuchToken);
        assert_eq!(s.waiting(), 1);
        dropped2.store(true, Ordering::SeqCst);
    }));
    assert!(poll_once(&mut fa, &rw.waker()).is_pending());
    assert!(
        dropped.load(Ordering::SeqCst),
        "the replaced waker was dropped"
    );
    drop(fw);
    assert_eq!(first.live(), 0);
    drop(head); // promotes a: its wake re-enters
    assert_eq!(rw.wakes(), 1);
    // The blocking entry from inside the wake found a promoted (not yet
    // running) head and timed out at once; it did not deadlock.
    assert_eq!(*entered.lock().unwrap(), Some(Got::TimedOut));
    let Poll::Ready(Entry::Head(g)) = poll_once(&mut fa, &rw.waker()) else {
        panic!("a was promoted")
    };
    drop(g);
    drop(fa);
    assert_eq!(stage.try_recv(&mut b), Some(7));

    // A waker whose wake closes the stage, woken by a notification.
    let rw = ReentrantWaker::new();
    let s = Arc::clone(&stage);
    rw.set_on_wake(Box::new(move || s.close()));
    let head = async_head(&stage, &mut h);
    let mut fb = stage.enter_async(&mut b);
    assert!(poll_once(&mut fb, &rw.waker()).is_pending());
    let mut fa = stage.enter_async(&mut a);
    let other = HostileWaker::new(Misbehaviour::None);
    assert!(poll_once(&mut fa, &other.waker()).is_pending());
    assert_eq!(stage.notify(&2), NotifyOutcome::Woken);
    assert_eq!(other.wakes(), 1, "close from inside b's wake woke a");
    assert!(matches!(
        poll_once(&mut fb, Waker::noop()),
        Poll::Ready(Entry::Notified)
    ));
    assert!(matches!(
        poll_once(&mut fa, Waker::noop()),
        Poll::Ready(Entry::Closed)
    ));
    drop((fa, fb));
    drop(head);
    assert!(!stage.is_headed());
    assert!(matches!(stage.enter(&mut a, None), Entry::Closed));
}

/// A waker whose drop panics when the poll replaces it: the future stays
/// queued (with the new waker) and gets its promotion.
#[test]
fn a_replaced_waker_whose_drop_panics_leaves_the_future_queued() {
    let stage = Stage::new(());
    let mut h = stage.ticket(0u32).unwrap();
    let mut a = stage.ticket(1).unwrap();
    let head = stage.enter(&mut h, None);
    let bad = HostileWaker::new(Misbehaviour::PanicOnDrop);
    let good = HostileWaker::new(Misbehaviour::None);
    let mut fa = stage.enter_async(&mut a);
    let w = bad.waker();
    assert!(poll_once(&mut fa, &w).is_pending());
    let r = catch_unwind(AssertUnwindSafe(|| poll_once(&mut fa, &good.waker())));
    assert!(r.is_err(), "the replaced waker's drop panicked");
    bad.disarm();
    drop(w);
    assert_eq!(stage.waiting(), 1);
    drop(head);
    assert_eq!(good.wakes(), 1, "the new waker is the stored one");
    assert!(matches!(
        poll_once(&mut fa, &good.waker()),
        Poll::Ready(Entry::Head(_))
    ));
}

/// Tokens whose `Hash` or `Eq` panic: the stage stays consistent and usable.
#[test]
fn panicking_hash_and_eq_leave_the_stage_usable() {
    #[derive(Debug)]
    struct Touchy(u32);
    static ARMED: AtomicBool = AtomicBool::new(false);
    impl PartialEq for Touchy {
        fn eq(&self, other: &Self) -> bool {
            if ARMED.load(Ordering::SeqCst) && (self.0 == 66 || other.0 == 66) {
                panic!("deliberate: Eq panics");
            }
            self.0 == other.0
        }
    }
    impl Eq for Touchy {}
    impl Hash for Touchy {
        fn hash<H: Hasher>(&self, state: &mut H) {
            if self.0 == 13 {
                panic!("deliberate: Hash panics");
            }
            // Every token collides: lookups walk a chain and run `Eq`.
            0u8.hash(state);
        }
    }
    let stage: Stage<Touchy, (), u8> = Stage::with_mailbox(());
    let mut a = stage.ticket(Touchy(1)).unwrap();
    let mut b = stage.ticket(Touchy(2)).unwrap();
    assert!(catch_unwind(AssertUnwindSafe(|| stage.ticket(Touchy(13)))).is_err());
    assert!(catch_unwind(AssertUnwindSafe(|| stage.notify(&Touchy(13)))).is_err());
    ARMED.store(true, Ordering::SeqCst);
    assert!(catch_unwind(AssertUnwindSafe(|| stage.deliver(&Touchy(66), 5))).is_err());
    assert!(catch_unwind(AssertUnwindSafe(|| stage.ticket(Touchy(66)))).is_err());
    ARMED.store(false, Ordering::SeqCst);
    assert_eq!(stage.tickets(), 2);
    assert_eq!(stage.deliver(&Touchy(2), 9), Ok(NotifyOutcome::Recorded));
    let head = stage.enter(&mut a, None);
    assert!(head.is_head());
    drop(head);
    assert!(matches!(stage.enter(&mut b, None), Entry::Notified));
    assert_eq!(stage.try_recv(&mut b), Some(9));
}

/// Extreme time-outs: zero returns at once, `Duration::MAX` waits without a
/// limit (and is woken), `recv` with either behaves.
#[test]
fn zero_and_maximal_time_outs() {
    let _w = watchdog("zero_and_maximal_time_outs");
    let stage: Stage<u32, (), u32> = Stage::with_mailbox(());
    let mut h = stage.ticket(0).unwrap();
    let mut a = stage.ticket(1).unwrap();
    let head = stage.enter(&mut h, Some(Duration::MAX));
    assert!(head.is_head());
    let zero_done = std::sync::Barrier::new(2);
    thread::scope(|s| {
        s.spawn(|| {
            assert!(matches!(
                stage.enter(&mut a, Some(Duration::ZERO)),
                Entry::TimedOut
            ));
            zero_done.wait();
            assert!(stage.enter(&mut a, Some(Duration::MAX)).is_head());
        });
        zero_done.wait();
        until_waiting(&stage, 1);
        drop(head);
    });
    assert_eq!(
        stage.recv(&mut a, Some(Duration::ZERO), |_| Ok::<_, ()>(None)),
        Err(RecvError::TimedOut)
    );
    let mut n = 0;
    let r = stage.recv(&mut a, Some(Duration::MAX), |_| {
        n += 1;
        Ok::<_, ()>(if n < 3 { None } else { Some((1, 42)) })
    });
    assert_eq!(r, Ok(42));
    assert!(!stage.is_headed());
}

/// `recv`'s `read_one` re-entering: a nested `recv` panics with the
/// documented message (it does not hang), and the headship is handed on.
#[test]
fn recv_reentered_from_read_one_panics_and_hands_off() {
    let _w = watchdog("recv_reentered_from_read_one_panics_and_hands_off");
    let stage: Stage<u32, (), u32> = Stage::with_mailbox(());
    let mut a = stage.ticket(1).unwrap();
    let mut b = stage.ticket(2).unwrap();
    let r = catch_unwind(AssertUnwindSafe(|| {
        stage.recv(&mut a, LONG, |_| {
            let _ = stage.recv(&mut b, LONG, |_| Ok::<_, ()>(None));
            Ok::<_, ()>(None)
        })
    }));
    let msg = r.unwrap_err();
    let msg = msg
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| msg.downcast_ref::<&str>().copied())
        .unwrap_or("");
    assert!(msg.contains("thread that heads"), "message: {msg}");
    assert!(!stage.is_headed());
    assert!(stage.enter(&mut b, None).is_head());
}

/// `serve` as head: its own messages (also one its `handle` delivers to
/// itself, re-entrantly) are handled in order, others' are delivered; a
/// `handle` may enter the stage (the headship is lent while it runs), a
/// `read_one` that enters from the head's thread panics with the message
/// and the headship is handed on.
#[test]
fn serve_with_a_reentrant_handle() {
    let _w = watchdog("serve_with_a_reentrant_handle");
    let source = Mutex::new(VecDeque::from([(1u32, 10u32), (2, 20), (1, 11)]));
    let stage: Stage<u32, Mutex<VecDeque<(u32, u32)>>, u32> = Stage::with_mailbox(source);
    let mut a = stage.ticket(1).unwrap();
    let mut b = stage.ticket(2).unwrap();
    let read = |src: &Mutex<VecDeque<(u32, u32)>>| Ok::<_, ()>(src.lock().unwrap().pop_front());
    let mut seen = Vec::new();
    let r = stage.serve(&mut a, LONG, read, |m| {
        seen.push(m);
        if m == 10 {
            assert_eq!(stage.deliver(&1, 12), Ok(NotifyOutcome::Recorded));
        }
        if seen.len() == 3 {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    });
    assert_eq!(r, Ok(()));
    assert_eq!(seen, [10, 12, 11]);
    assert_eq!(stage.try_recv(&mut b), Some(20));
    assert!(!stage.is_headed());
    stage.resource().lock().unwrap().push_back((1, 13));
    // `handle` runs while the headship is lent (free): entering from it is
    // an ordinary entry, which heads here.
    let r = stage.serve(&mut a, LONG, read, |_| {
        assert!(stage.enter(&mut b, None).is_head(), "the lent headship");
        ControlFlow::Break(())
    });
    assert_eq!(r, Ok(()));
    assert!(!stage.is_headed());
    // `read_one` runs while heading: entering from it panics.
    let r = catch_unwind(AssertUnwindSafe(|| {
        stage.serve(
            &mut a,
            LONG,
            |_| -> Result<Option<(u32, u32)>, ()> {
                let _ = stage.enter(&mut b, None);
                unreachable!("enter returned on the heading thread")
            },
            |_| ControlFlow::Break(()),
        )
    }));
    assert!(r.is_err(), "entering from the serving head's thread panics");
    assert!(!stage.is_headed(), "the headship was handed on");
    assert!(stage.enter(&mut b, None).is_head());
}

/// A thread parker waker for the mini executor below.
struct Unpark(thread::Thread);
impl Wake for Unpark {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }
}

/// Polls `fut` until it is ready or `limit` passes (then `None`: the caller
/// drops it, which is the cancellation). With `fresh`, every poll uses a new
/// waker (a new pointer), so the stored one is replaced each time.
fn block_on_for<F: Future + Unpin>(fut: &mut F, limit: Duration, fresh: bool) -> Option<F::Output> {
    let deadline = Instant::now() + limit;
    let mut waker = Waker::from(Arc::new(Unpark(thread::current())));
    loop {
        if fresh {
            waker = Waker::from(Arc::new(Unpark(thread::current())));
        }
        if let Poll::Ready(v) = poll_once(fut, &waker) {
            return Some(v);
        }
        let now = Instant::now();
        if now >= deadline {
            return None;
        }
        thread::park_timeout(deadline - now);
    }
}

/// Spins on every core until dropped: a loaded machine, so that threads are
/// preempted at random points.
struct Busy(Arc<AtomicBool>, Vec<thread::JoinHandle<()>>);
fn busy() -> Busy {
    let stop = Arc::new(AtomicBool::new(false));
    let n = thread::available_parallelism().map_or(2, |n| n.get());
    let joins = (0..n)
        .map(|_| {
            let stop = Arc::clone(&stop);
            thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    std::hint::spin_loop();
                }
            })
        })
        .collect();
    Busy(stop, joins)
}
impl Drop for Busy {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
        for j in self.1.drain(..) {
            let _ = j.join();
        }
    }
}

/// Blocking and async waiters mixed (async ones cancelled at random, with a
/// new waker on every poll or the same one), random time-outs including
/// zero and none, spurious notifications, deliveries from outside and from
/// heads, on a loaded machine: every message arrives exactly once, never two
/// heads, and the stage ends empty.
#[test]
#[cfg_attr(miri, ignore)]
fn mixed_async_and_blocking_under_load_lose_nothing() {
    let _w = watchdog("mixed_async_and_blocking_under_load_lose_nothing");
    let _busy = busy();
    const WORKERS: usize = 6;
    let per_worker = common::iters(300, 3) as u64;
    // The resource: items (to, seq) the head reads and routes.
    let source: Mutex<VecDeque<(usize, u64)>> = Mutex::new(VecDeque::new());
    let stage: Stage<usize, Mutex<VecDeque<(usize, u64)>>, u64> = Stage::with_mailbox(source);
    let heads = AtomicUsize::new(0);
    let give_up = Instant::now() + Duration::from_secs(40);
    let tickets: Vec<_> = (0..WORKERS).map(|me| stage.ticket(me).unwrap()).collect();
    let received: Vec<Vec<u64>> = thread::scope(|s| {
        // Senders: half the items go through the resource, half are
        // delivered directly; plus spurious notifications.
        for n in 0..2u64 {
            let stage = &stage;
            s.spawn(move || {
                let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ (n + 1));
                for seq in 0..per_worker {
                    for to in 0..WORKERS {
                        if (seq + to as u64) % 2 != n {
                            continue;
                        }
                        if rng.below(2) == 0 {
                            stage.resource().lock().unwrap().push_back((to, seq));
                        } else {
                            assert!(stage.deliver(&to, seq).is_ok());
                        }
                        if rng.below(5) == 0 {
                            stage.notify(&(rng.below(WORKERS as u64) as usize));
                        }
                    }
                    if rng.below(16) == 0 {
                        thread::sleep(Duration::from_micros(rng.below(300)));
                    }
                }
            });
        }
        let joins: Vec<_> = tickets
            .into_iter()
            .enumerate()
            .map(|(me, mut ticket)| {
                let (stage, heads) = (&stage, &heads);
                s.spawn(move || {
                    let mut rng = Rng(0xD1B5_4A32_D192_ED03 ^ (me as u64 + 1) << 17);
                    let mut got = Vec::new();
                    while (got.len() as u64) < per_worker {
                        assert!(Instant::now() < give_up, "worker {me} starved: {got:?}");
                        while let Some(m) = stage.try_recv(&mut ticket) {
                            got.push(m);
                        }
                        if got.len() as u64 == per_worker {
                            break;
                        }
                        let timeout = match rng.below(6) {
                            0 => Some(Duration::ZERO),
                            1 => None,
                            _ => Some(Duration::from_micros(rng.below(3000))),
                        };
                        if rng.below(2) == 0 {
                            match stage.enter(&mut ticket, timeout) {
                                Entry::Head(head) => as_head(head, heads, &mut rng),
                                Entry::Notified | Entry::TimedOut => {}
                                Entry::Closed => unreachable!("nobody closes"),
                            }
                        } else {
                            let limit = timeout.unwrap_or(Duration::from_millis(50));
                            let fresh = rng.below(2) == 0;
                            let mut fut = stage.enter_async(&mut ticket);
                            match block_on_for(&mut fut, limit, fresh) {
                                Some(Entry::Head(head)) => as_head(head, heads, &mut rng),
                                Some(Entry::Notified) | None => {}
                                Some(e) => panic!("unexpected {:?}", got_kind(&e)),
                            }
                        }
                    }
                    // The ticket lives until every worker is done.
                    (me, got, ticket)
                })
            })
            .collect();
        let mut by_worker = vec![Vec::new(); WORKERS];
        let mut left = Vec::new();
        for j in joins {
            let (me, got, ticket) = j.join().unwrap();
            by_worker[me] = got;
            left.push(ticket);
        }
        assert_eq!(stage.resource().lock().unwrap().len(), 0);
        drop(left);
        by_worker
    });
    for (me, got) in received.iter().enumerate() {
        let mut got = got.clone();
        got.sort_unstable();
        let want: Vec<u64> = (0..per_worker).collect();
        assert_eq!(got, want, "worker {me}: lost or duplicated messages");
    }
    assert_eq!(stage.tickets(), 0);
    assert_eq!(stage.waiting(), 0);
    assert!(!stage.is_headed());
    let c = stage.counters();
    eprintln!("{c:?}");
    assert_eq!((c.unrouted, c.no_such_token), (0, 0));
}

type Source = Mutex<VecDeque<(usize, u64)>>;

/// The head's turn in the mixed stress test: read and route a few items.
fn as_head(head: HeadGuard<'_, usize, Source, u64>, heads: &AtomicUsize, rng: &mut Rng) {
    assert_eq!(heads.fetch_add(1, Ordering::SeqCst), 0, "two heads");
    for _ in 0..1 + rng.below(6) {
        let item = head.resource().lock().unwrap().pop_front();
        match item {
            Some((to, seq)) => {
                head.deliver(&to, seq).expect("every ticket lives");
            }
            None => thread::yield_now(),
        }
    }
    heads.fetch_sub(1, Ordering::SeqCst);
    drop(head);
}

fn got_kind<T: Hash + Eq, R, M>(e: &Entry<'_, T, R, M>) -> &'static str {
    match e {
        Entry::Head(_) => "Head",
        Entry::Notified => "Notified",
        Entry::TimedOut => "TimedOut",
        Entry::Closed => "Closed",
    }
}

/// `close` racing with blocking and async entries (and their
/// cancellations) and with heads, under load: every waiter ends with
/// `Closed` and nobody hangs.
#[test]
#[cfg_attr(miri, ignore)]
fn close_racing_with_everything_wakes_everyone() {
    let _w = watchdog("close_racing_with_everything_wakes_everyone");
    let _busy = busy();
    for round in 0..common::iters(20, 2) as u64 {
        let stage: Stage<usize, ()> = Stage::new(());
        let heads = AtomicUsize::new(0);
        thread::scope(|s| {
            for me in 0..5usize {
                let (stage, heads) = (&stage, &heads);
                s.spawn(move || {
                    let mut rng = Rng(round * 31 + me as u64 + 1);
                    let mut ticket = stage.ticket(me).unwrap();
                    loop {
                        let entry = if rng.below(2) == 0 {
                            let t = match rng.below(3) {
                                0 => None,
                                _ => Some(Duration::from_micros(rng.below(500))),
                            };
                            got_entry(stage.enter(&mut ticket, t), heads, &mut rng)
                        } else {
                            let mut fut = stage.enter_async(&mut ticket);
                            let limit = Duration::from_micros(rng.below(800));
                            match block_on_for(&mut fut, limit, rng.below(2) == 0) {
                                Some(e) => got_entry(e, heads, &mut rng),
                                None => Got::TimedOut,
                            }
                        };
                        if entry == Got::Closed {
                            break;
                        }
                        if rng.below(3) == 0 {
                            stage.notify(&(rng.below(5) as usize));
                        }
                    }
                    assert!(matches!(stage.enter(&mut ticket, None), Entry::Closed));
                });
            }
            let mut rng = Rng(round + 99);
            thread::sleep(Duration::from_micros(rng.below(3000)));
            stage.close();
        });
        assert_eq!(stage.waiting(), 0);
        assert!(!stage.is_headed());
        assert_eq!(stage.tickets(), 0);
    }
}

fn got_entry<T: Hash + Eq, R, M>(e: Entry<'_, T, R, M>, heads: &AtomicUsize, rng: &mut Rng) -> Got {
    match e {
        Entry::Head(head) => {
            assert_eq!(heads.fetch_add(1, Ordering::SeqCst), 0, "two heads");
            if rng.below(4) == 0 {
                thread::yield_now();
            }
            heads.fetch_sub(1, Ordering::SeqCst);
            drop(head);
            Got::Head
        }
        other => got(other),
    }
}
