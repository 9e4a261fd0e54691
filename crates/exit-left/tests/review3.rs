//! Third hostile review of exit-left: one reproducing test per finding
//! (each failed on the code reviewed, 65eb058, and passes since the fixes:
//! hand-offs, forwarded promotions and routing wake quietly; a head's own
//! message taken out before user code runs is put back if it unwinds; the
//! re-entrancy check is per stage; `HeadGuard::resource` borrows the
//! guard), and short regression tests for attacks that held up.
//!
//! The earlier reviews (`review_findings.rs`, `review_lend.rs`) made every
//! *state* change survive foreign code that panics. What they did not cover
//! is a *value* the crate has already taken out of the stage (a message
//! popped from a mailbox, the message `recv` is returning) and still holds
//! in a local when it runs foreign code (a follower's `Waker::wake`, a
//! token's or a message's `Drop`): the unwind drops that local, and the
//! message is gone (workspace rule: "after any unwind the structure stays
//! consistent and no value is lost"). Findings 1-3 are that, on three
//! paths; finding 4 is the same foreign code run while the thread is
//! already unwinding, which aborts the process.
//!
//! Every test is single-threaded or runs its blocking part under a
//! watchdog; none asserts on time.

mod common;

use common::{LONG, Tok, poll_once, tok, watchdog};
use exit_left::{Entry, NotifyOutcome, Stage};
use std::hash::{Hash, Hasher};
use std::ops::ControlFlow;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Poll, Wake, Waker};
use testkit::{HostileWaker, Misbehaviour};

/// A waker whose `wake` panics whenever it is armed, also while the thread
/// is already unwinding (testkit's `HostileWaker` refrains from that).
struct WakePanics(AtomicBool);

impl Wake for WakePanics {
    fn wake(self: Arc<Self>) {
        if self.0.load(Ordering::SeqCst) {
            panic!("review3: this waker's wake panics");
        }
    }
}

// ---------------------------------------------------------------------------
// Finding 1: the message `recv` returns (and the value `serve`'s `handle`
// breaks with) is dropped if the hand-off that follows wakes a follower
// whose `Waker::wake` panics.
//
// src/mailbox.rs:246 `Entry::Head(head) => return head_loop(&head, ...)`:
// the return value is computed first, then `head` (the guard) is dropped,
// and `HeadGuard::drop` (src/head.rs:527-530) promotes the first queued
// follower and calls its `wake`. If that panics, the unwind drops the
// `Ok(m)` being returned: a message that was read from the resource and
// taken out of the mailbox is neither returned nor left in the mailbox.
// Same in `serve` (src/mailbox.rs:333-334): `return Ok(b)` drops the
// `Lent` after computing `Ok(b)`, and `Lent::drop` (src/head.rs:511-518)
// wakes the promoted follower.
// ---------------------------------------------------------------------------

/// Finding 1, `recv`.
#[test]
fn finding_1_recv_loses_its_message_when_the_hand_off_wake_panics() {
    let stage: Stage<u32, (), u32> = Stage::with_mailbox(());
    let mut h = stage.ticket(0).unwrap();
    let mut f = stage.ticket(1).unwrap();
    let task = HostileWaker::new(Misbehaviour::PanicOnWake);
    let mut follower = stage.enter_async(&mut f);
    let mut first = true;
    let r = catch_unwind(AssertUnwindSafe(|| {
        stage.recv(&mut h, LONG, |_| {
            if first {
                first = false;
                // A task queues as a follower while `recv` heads.
                assert!(poll_once(&mut follower, &task.waker()).is_pending());
            }
            // The head's own message.
            Ok::<_, ()>(Some((0, 42)))
        })
    }));
    task.disarm();
    drop(follower);
    let got = match r {
        Ok(Ok(m)) => Some(m),
        _ => stage.try_recv(&mut h),
    };
    assert_eq!(
        got,
        Some(42),
        "the message recv read for itself was neither returned nor kept"
    );
}

/// Finding 1, `serve`: the value `handle` breaks with.
#[test]
fn finding_1_serve_loses_the_break_value_when_the_hand_off_wake_panics() {
    let stage: Stage<u32, (), u32> = Stage::with_mailbox(());
    let mut h = stage.ticket(0).unwrap();
    let mut f = stage.ticket(1).unwrap();
    let task = HostileWaker::new(Misbehaviour::PanicOnWake);
    let mut follower = stage.enter_async(&mut f);
    let mut first = true;
    let r = catch_unwind(AssertUnwindSafe(|| {
        stage.serve(
            &mut h,
            LONG,
            |_| {
                if first {
                    first = false;
                    assert!(poll_once(&mut follower, &task.waker()).is_pending());
                }
                Ok::<_, ()>(Some((0, 42)))
            },
            ControlFlow::Break,
        )
    }));
    task.disarm();
    drop(follower);
    assert!(
        matches!(r, Ok(Ok(42))),
        "the message handed to `handle` and returned with `Break` was dropped"
    );
}

// ---------------------------------------------------------------------------
// Finding 2: `route_as_head` (src/stage.rs:564-589) pops the head's next
// own message (src/stage.rs:578-581) under the lock and keeps it in a local
// while it then runs foreign code: the routed follower's `wake`
// (src/stage.rs:584-586) and the `Drop` of a message for a stranger
// (src/stage.rs:587). If either panics, the popped message is dropped by
// the unwind: lost mail. (The head's mailbox gets a message while it reads
// whenever another thread delivers to it: `recv`'s docs say the head looks
// at it before every read for exactly that reason.)
// ---------------------------------------------------------------------------

/// Finding 2, through the routed follower's `wake`.
#[test]
fn finding_2_routing_loses_the_heads_own_message_when_the_routed_wake_panics() {
    let stage: Stage<u32, (), u32> = Stage::with_mailbox(());
    let mut h = stage.ticket(0).unwrap();
    let mut f = stage.ticket(1).unwrap();
    let task = HostileWaker::new(Misbehaviour::PanicOnWake);
    let mut follower = stage.enter_async(&mut f);
    let mut first = true;
    let r = catch_unwind(AssertUnwindSafe(|| {
        stage.recv(&mut h, LONG, |_| {
            if !first {
                return Ok::<_, ()>(None);
            }
            first = false;
            assert!(poll_once(&mut follower, &task.waker()).is_pending());
            // Another party delivers to the head while it reads...
            assert_eq!(stage.deliver(&0, 7), Ok(NotifyOutcome::Recorded));
            // ... and the head reads an item for the waiting task.
            Ok(Some((1, 50)))
        })
    }));
    task.disarm();
    // The task got its item (it was delivered before the wake).
    assert!(matches!(
        poll_once(&mut follower, Waker::noop()),
        Poll::Ready(Entry::Notified)
    ));
    drop(follower);
    assert_eq!(stage.try_recv(&mut f), Some(50));
    let got = match r {
        Ok(Ok(m)) => Some(m),
        _ => stage.try_recv(&mut h),
    };
    assert_eq!(
        got,
        Some(7),
        "the head's own message was popped and dropped"
    );
}

/// A message whose `Drop` panics while armed (not while already unwinding).
#[derive(Debug, PartialEq)]
struct Bomb(u32, bool);

impl Drop for Bomb {
    fn drop(&mut self) {
        if self.1 && !std::thread::panicking() {
            panic!("review3: this message's drop panics");
        }
    }
}

/// Finding 2, through the `Drop` of an item for a token with no ticket.
#[test]
fn finding_2_routing_loses_the_heads_own_message_when_an_unrouted_drop_panics() {
    let stage: Stage<u32, (), Bomb> = Stage::with_mailbox(());
    let mut h = stage.ticket(0).unwrap();
    let mut first = true;
    let r = catch_unwind(AssertUnwindSafe(|| {
        stage.recv(&mut h, LONG, |_| {
            if !first {
                return Ok::<_, ()>(None);
            }
            first = false;
            assert!(stage.deliver(&0, Bomb(7, false)).is_ok());
            // An item for a stranger: dropped (and counted) by the head.
            Ok(Some((99, Bomb(0, true))))
        })
    }));
    assert_eq!(stage.counters().unrouted, 1);
    let got = match r {
        Ok(Ok(m)) => Some(m),
        _ => stage.try_recv(&mut h),
    };
    assert_eq!(
        got,
        Some(Bomb(7, false)),
        "the head's own message was popped and dropped"
    );
}

// ---------------------------------------------------------------------------
// Finding 3: `head_loop` (src/mailbox.rs:371) routes the item it read with
// `route_as_head(&to, message)`, which returns the head's own message
// (possibly the item itself) already popped from the mailbox; the token
// `to` is dropped only at the end of that match arm, i.e. while the popped
// message sits in an unnamed temporary. A token whose `Drop` panics
// (review_findings' finding 3 was the same foreign code in `Ticket::drop`)
// loses the message: read from the resource, routed to the head, popped,
// dropped.
// ---------------------------------------------------------------------------

#[test]
fn finding_3_a_panicking_drop_of_the_read_token_loses_the_heads_message() {
    let stage: Stage<Tok, (), u32> = Stage::with_mailbox(());
    let mut h = stage.ticket(tok(0)).unwrap();
    let r = catch_unwind(AssertUnwindSafe(|| {
        stage.recv(&mut h, LONG, |_| {
            Ok::<_, ()>(Some((Tok { id: 0, armed: true }, 42)))
        })
    }));
    assert_eq!(
        stage.counters().own_token,
        1,
        "the item was routed to the head"
    );
    let got = match r {
        Ok(Ok(m)) => Some(m),
        _ => stage.try_recv(&mut h),
    };
    assert_eq!(
        got,
        Some(42),
        "routed to the head, popped, and dropped by the unwind"
    );
}

// ---------------------------------------------------------------------------
// Finding 4: the guard's `Drop` runs foreign code (`Waker::wake` of the
// promoted follower, src/head.rs:529-531) also when it runs because the
// thread is unwinding: the docs promise exactly that hand-off "also while
// unwinding from a panic" (a panicking `read_one` in `recv`/`serve`). A
// `wake` that panics then is a panic during unwinding: the process aborts
// (not a failed call, not a caught panic). The same holds for `Lent::drop`
// (src/head.rs:517-519, `handle` panicking while lent), `cancel_wait`'s
// forwarded wake (src/stage.rs:477-479, an `EnterFuture` or a blocking
// `enter` unwinding while promoted) and `Ticket::drop` (src/stage.rs:660-662).
// `close` already catches a panicking `wake` (src/stage.rs:333-338); the
// hand-off paths do not. Shown in a child process, since an abort takes the
// test binary down (so under Miri, which cannot spawn it, the parents check
// nothing and pass).
// ---------------------------------------------------------------------------

const CHILD: &str = "REVIEW3_CHILD";

/// Runs the (ignored) test `name` of this binary in a child process and
/// reports whether it exited normally.
#[cfg(not(miri))]
fn child_succeeds(name: &str) -> bool {
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            name,
            "--ignored",
            "--test-threads=1",
            "--nocapture",
        ])
        .env(CHILD, "1")
        .output()
        .expect("the test binary runs");
    if !out.status.success() {
        eprintln!(
            "child `{name}` ended with {:?}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    out.status.success()
}

/// The child of finding 4: does nothing unless run by the parent.
#[test]
#[ignore = "child process of review3 finding 4 (does nothing unless REVIEW3_CHILD is set)"]
fn finding_4_child() {
    if std::env::var_os(CHILD).is_none() {
        return;
    }
    let stage: Stage<u32, (), u32> = Stage::with_mailbox(());
    let mut h = stage.ticket(0).unwrap();
    let mut f = stage.ticket(1).unwrap();
    let waker = Arc::new(WakePanics(AtomicBool::new(true)));
    let task = Waker::from(Arc::clone(&waker));
    let mut follower = stage.enter_async(&mut f);
    let r = catch_unwind(AssertUnwindSafe(|| {
        stage.recv(&mut h, LONG, |_| -> Result<Option<(u32, u32)>, ()> {
            assert!(poll_once(&mut follower, &task).is_pending());
            panic!("review3: read_one panics");
        })
    }));
    // Reached only if the process survived the hand-off while unwinding.
    assert!(r.is_err());
    waker.0.store(false, Ordering::SeqCst);
    drop(follower);
    println!("review3 child survived");
}

/// The child of finding 4's `serve` sibling: `handle` panics while the
/// headship is lent; `Lent::drop` promotes a follower whose `wake` panics.
#[test]
#[ignore = "child process of review3 finding 4 (does nothing unless REVIEW3_CHILD is set)"]
fn finding_4_child_serve() {
    if std::env::var_os(CHILD).is_none() {
        return;
    }
    let stage: Stage<u32, (), u32> = Stage::with_mailbox(());
    let mut h = stage.ticket(0).unwrap();
    let mut f = stage.ticket(1).unwrap();
    let waker = Arc::new(WakePanics(AtomicBool::new(true)));
    let task = Waker::from(Arc::clone(&waker));
    let mut follower = stage.enter_async(&mut f);
    let r = catch_unwind(AssertUnwindSafe(|| {
        stage.serve(
            &mut h,
            LONG,
            |_| {
                // Queues while `serve` heads; it is still queued once the
                // headship is lent (free, nobody woken).
                assert!(poll_once(&mut follower, &task).is_pending());
                Ok::<_, ()>(Some((0, 42)))
            },
            |_| -> ControlFlow<()> { panic!("review3: handle panics") },
        )
    }));
    assert!(r.is_err());
    waker.0.store(false, Ordering::SeqCst);
    drop(follower);
    println!("review3 child survived");
}

#[test]
fn finding_4_serve_a_lent_hand_off_while_unwinding_aborts_on_a_panicking_wake() {
    #[cfg(not(miri))]
    assert!(
        child_succeeds("finding_4_child_serve"),
        "the process aborted: Lent::drop ran a panicking wake while unwinding"
    );
}

#[test]
fn finding_4_a_hand_off_while_unwinding_aborts_on_a_panicking_wake() {
    #[cfg(not(miri))]
    assert!(
        child_succeeds("finding_4_child"),
        "the process aborted: HeadGuard::drop ran a panicking wake while unwinding"
    );
}

// ---------------------------------------------------------------------------
// Finding 5: a token's `Eq` that uses a *different* stage panics with "a
// token's `Eq` called back into the stage while the stage was looking the
// token up". The re-entrancy flag (src/stage.rs:59-63, checked in
// `Stage::lock`, src/stage.rs:382-388) is one thread-local for all stages,
// so any stage's lock panics while any stage runs an `Eq`, although only
// the stage whose lock is held could deadlock. A legitimate `Eq` (here: one
// that asks another stage how many tickets it has) makes `notify` panic,
// with a message that names the wrong cause.
// ---------------------------------------------------------------------------

static OTHER: OnceLock<Stage<u32, ()>> = OnceLock::new();

/// A token whose `Eq` looks at another stage (`OTHER`).
#[derive(Debug)]
struct Peeks(u32);

impl PartialEq for Peeks {
    fn eq(&self, other: &Self) -> bool {
        let _ = OTHER.get().map(Stage::tickets);
        self.0 == other.0
    }
}
impl Eq for Peeks {}
impl Hash for Peeks {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.0.hash(state);
    }
}

#[test]
fn finding_5_an_eq_that_uses_another_stage_is_not_re_entrancy() {
    OTHER.get_or_init(|| Stage::new(()));
    let stage: Stage<Peeks, ()> = Stage::new(());
    let _t = stage.ticket(Peeks(1)).unwrap();
    let r = catch_unwind(AssertUnwindSafe(|| stage.notify(&Peeks(1))));
    assert_eq!(
        r.ok(),
        Some(NotifyOutcome::Recorded),
        "notify panicked although `Eq` never touched this stage"
    );
}

// ---------------------------------------------------------------------------
// Finding 6 (documentation / API): `HeadGuard::resource` returns `&'s R`
// (src/head.rs:396), borrowed from the *stage*, not from the guard. The
// reference outlives the guard, so a former head keeps reading the
// resource after it has handed the headship on, while the new head reads
// too. The docs say "Only the head gets it through this guard, whatever `R`
// is" and "At most one head"; for `R: !Sync` (no `Stage::resource`) the
// guard is the only way to the resource, and it does not confine it. A
// `MutexGuard`-like signature (`fn resource(&self) -> &R`) would.
// ---------------------------------------------------------------------------

// Fixed: `resource(&self) -> &R` borrows the guard. The reproducer (a
// reference kept after `drop(guard)`) no longer compiles; it is the
// `compile_fail` example in `HeadGuard::resource`'s docs.

// ---------------------------------------------------------------------------
// Attacks that held up (kept as short regression tests).
// ---------------------------------------------------------------------------

/// A follower promoted and then notified before it runs, while nobody else
/// waits: the forwarded promotion frees the stage (nobody is left heading),
/// the notification is returned, and the next entry heads at once.
#[test]
fn a_forwarded_promotion_with_nobody_left_frees_the_stage() {
    let stage = Stage::new(());
    let mut h = stage.ticket(0u32).unwrap();
    let mut a = stage.ticket(1).unwrap();
    let head = stage.enter(&mut h, None);
    let mut fa = stage.enter_async(&mut a);
    assert!(poll_once(&mut fa, Waker::noop()).is_pending());
    drop(head); // a is promoted ...
    assert!(stage.is_headed());
    assert_eq!(stage.notify(&1), NotifyOutcome::Woken); // ... and notified first.
    assert!(!stage.is_headed(), "nobody to forward to: free");
    assert!(matches!(
        poll_once(&mut fa, Waker::noop()),
        Poll::Ready(Entry::Notified)
    ));
    drop(fa);
    assert!(
        stage
            .enter(&mut h, Some(std::time::Duration::ZERO))
            .is_head()
    );
}

/// A future polled with a different waker on every poll while queued, then
/// promoted and polled after `Ready`: the last waker is the one woken, the
/// late poll panics with the documented message, and the stage is sound.
#[test]
fn a_future_polled_after_ready_panics_and_leaves_the_stage_sound() {
    let stage = Stage::new(());
    let mut h = stage.ticket(0u32).unwrap();
    let mut a = stage.ticket(1).unwrap();
    let head = stage.enter(&mut h, None);
    let tasks: Vec<HostileWaker> = (0..3)
        .map(|_| HostileWaker::new(Misbehaviour::None))
        .collect();
    let mut fa = stage.enter_async(&mut a);
    for t in &tasks {
        assert!(poll_once(&mut fa, &t.waker()).is_pending());
    }
    drop(head);
    assert_eq!(
        tasks.iter().map(HostileWaker::wakes).collect::<Vec<_>>(),
        [0, 0, 1]
    );
    let Poll::Ready(Entry::Head(g)) = poll_once(&mut fa, Waker::noop()) else {
        panic!("promoted")
    };
    let late = catch_unwind(AssertUnwindSafe(|| poll_once(&mut fa, Waker::noop())));
    assert!(late.is_err(), "polled after Ready");
    drop(g);
    drop(fa);
    assert!(!stage.is_headed());
    assert!(
        stage
            .enter(&mut h, Some(std::time::Duration::ZERO))
            .is_head()
    );
}

/// `close` between a promotion and the promoted waiter's run: it gets
/// `Closed`, never `Head`; the stage is free and every later entry is
/// `Closed`.
#[test]
fn close_after_a_promotion_returns_closed_not_head() {
    let _w = watchdog("close_after_a_promotion_returns_closed_not_head");
    let stage = Stage::new(());
    let mut h = stage.ticket(0u32).unwrap();
    let mut a = stage.ticket(1).unwrap();
    let head = stage.enter(&mut h, None);
    let mut fa = stage.enter_async(&mut a);
    assert!(poll_once(&mut fa, Waker::noop()).is_pending());
    drop(head);
    stage.close();
    assert!(matches!(
        poll_once(&mut fa, Waker::noop()),
        Poll::Ready(Entry::Closed)
    ));
    drop(fa);
    assert!(!stage.is_headed());
    assert!(matches!(stage.enter(&mut h, None), Entry::Closed));
}
