//! Hostile review 14 of exit-left (at bb95c6d, re-run at 72dda07, where
//! the parker moved from sync-core to exit-left's `ready.rs`): `Stage::promote_when_readable`
//! (src/gate.rs, `State::hand_off`/`unarm`, `notify_locked`, `close`) and
//! `serve`'s new hand-on rule (`lend_unless_all_wait`: one other ticket out
//! and nothing readable), over real sockets (`UnixDatagram::pair`).
//!
//! Findings (`finding_*`, each failing on the code it was found in; the
//! fixes: 1, the descriptor is taken once, when the stage is made, and no
//! user code runs under the lock; 2 and 4, the docs now say what happens,
//! and the tests assert that):
//!
//! 1. The resource's `AsFd::as_fd` is user code, and it now runs under the
//!    stage's lock, in the middle of state changes (`hand_on`, `forward`,
//!    `finish`, `cancel_wait`, `Ticket::drop`, `lend_unless_all_wait`),
//!    against the crate's rule that the only user code under the lock is a
//!    token's `Eq`. A panicking `as_fd` at a guard's drop loses the hand-off
//!    for good (1a); one in `finish` panics again in `CancelOnUnwind` and
//!    aborts the process (1b).
//! 2. `notify` promises "at most one wake-up"; for a follower promoted
//!    asleep it makes two (the follower's own, and the forwarded promotion's).
//! 3. (Withdrawn: `serve`'s new hand-on rule was undocumented at bb95c6d,
//!    documented by ef1ce2d; now `held_serve_hands_on_with_one_ticket_out_*`.)
//! 4. `Counters::promotions_when_readable` ("those whose follower slept on
//!    until the resource was readable instead of being woken") also counts
//!    promotions ended by a notification (the follower was woken).
//!
//! Held (`held_*`): asleep promotion woken by the datagram (and not
//! before), woken at once when readable; notification forward chain into a
//! second armed follower; `close`; the deadline (`Head`, not a time-out); a
//! task woken at once; the poll/arm race (200 rounds); no stale readiness
//! or eventfd edge reaching the thread's next wait (fired and not fired);
//! descriptor-number reuse after the stage and socket are dropped (also
//! with the old file kept open by a clone); nested waits on one thread
//! (a leaked future's waker drop waiting on another stage); `serve`'s new
//! hand-on rule; request/reply traffic through a socket with `recv` and
//! `serve` under random notifications (exactly once, in order, no
//! time-out, quiet at the end).
//!
//! Every wait is bounded; a follower that waits without a time-out is
//! released by `close` after a bounded wait, so a lost wake-up fails the
//! assertion on what it returned instead of hanging. No timing assertion.
//!
//! Not under Miri: it emulates stream socket pairs and pipes, not datagram
//! pairs; `tests/gate.rs` takes the same paths over a pipe under Miri.
#![cfg(all(target_os = "linux", not(miri)))]

mod common;

use common::datagram::{read_item, recv_exact, stays_unset};
use common::script::Count;
use common::{Got, got, poll_once, until_waiting, watchdog};
use exit_left::{Entry, Stage, Ticket};
use std::ops::ControlFlow;
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::net::UnixDatagram;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::task::Poll;
use std::thread;
use std::time::{Duration, Instant};

type U = Stage<u32, UnixDatagram>;

const FIVE: Option<Duration> = Some(Duration::from_secs(5));

/// A stage over one end of a datagram pair that promotes when readable,
/// and the other end, to make it readable.
fn pair_stage() -> (U, UnixDatagram) {
    let (tx, rx) = UnixDatagram::pair().unwrap();
    (Stage::new(rx).promote_when_readable(), tx)
}

/// Waits (bounded) until `done`; closes the stage if it never comes, so
/// that a follower waiting without a time-out returns (`Closed`) instead of
/// hanging the test. `true` if it came by itself.
fn finished_or_close<T: std::hash::Hash + Eq, R, M>(
    stage: &Stage<T, R, M>,
    done: &AtomicBool,
    secs: u64,
) -> bool {
    let give_up = Instant::now() + Duration::from_secs(secs);
    while !done.load(Ordering::Acquire) {
        if Instant::now() >= give_up {
            stage.close();
            return false;
        }
        thread::sleep(Duration::from_millis(1));
    }
    true
}

/// Main thread heads with ticket 1; a thread enters with ticket 2 and no
/// time-out; the main thread drops its guard with nothing readable: the
/// follower is promoted asleep. Returns once that is so.
fn promote_asleep<'s>(
    stage: &'s U,
    head: &mut Ticket<'s, u32, UnixDatagram>,
    follower_queued: impl FnOnce(),
) {
    let before = stage.counters().promotions_when_readable;
    let Entry::Head(guard) = stage.enter(head, FIVE) else {
        panic!("the first entry heads")
    };
    follower_queued();
    drop(guard);
    assert_eq!(stage.counters().promotions_when_readable, before + 1);
}

/// The scene of the notification and close tests: followers A (once the
/// main thread heads) and B queue behind the main thread's headship; it
/// hands on with nothing to read, so A is promoted asleep and B waits
/// behind it. Each sets its flag when its `enter` returns; returns their
/// threads.
fn a_asleep_b_queued<'scope, 's: 'scope>(
    s: &'scope thread::Scope<'scope, '_>,
    stage: &'s U,
    head: &mut Ticket<'s, u32, UnixDatagram>,
    (a, a_done): (
        &'scope mut Ticket<'s, u32, UnixDatagram>,
        &'scope AtomicBool,
    ),
    (b, b_done): (
        &'scope mut Ticket<'s, u32, UnixDatagram>,
        &'scope AtomicBool,
    ),
) -> (
    thread::ScopedJoinHandle<'scope, Got>,
    thread::ScopedJoinHandle<'scope, Got>,
) {
    let ta = s.spawn(move || {
        // After the main thread heads (else this entry could take the free
        // headship first).
        common::script::once_headed(stage);
        let g = got(stage.enter(a, None));
        a_done.store(true, Ordering::Release);
        g
    });
    let mut tb = None;
    promote_asleep(stage, head, || {
        until_waiting(stage, 1);
        tb = Some(s.spawn(move || {
            let g = got(stage.enter(b, None));
            b_done.store(true, Ordering::Release);
            g
        }));
        until_waiting(stage, 2);
    });
    (ta, tb.expect("B was spawned"))
}

// ---------------------------------------------------------------------------
// Findings
// ---------------------------------------------------------------------------

/// The resource whose `as_fd` panics when told to (an `expect` on a
/// missing socket, say): user code, like a waker or a token's `Drop`.
struct Flaky {
    sock: UnixDatagram,
    /// Panic in every `as_fd` while set.
    panic: AtomicBool,
}

impl AsFd for Flaky {
    fn as_fd(&self) -> BorrowedFd<'_> {
        assert!(
            !self.panic.load(Ordering::SeqCst),
            "deliberate: as_fd panics"
        );
        self.sock.as_fd()
    }
}

/// Finding 1a. `HeadGuard::drop` -> `hand_on(stage, st)` evaluates
/// `stage.gate()` (the resource's `AsFd::as_fd`, user code) with the lock
/// held and the headship still `Held`. If it panics, the guard's drop
/// unwinds before `hand_off`: the headship stays `Held` by a guard that no
/// longer exists, the follower is never promoted (it times out) and nobody
/// can ever head again (this thread's `enter` would even panic as "the
/// thread that heads"). A panicking waker or token `Drop` loses nothing
/// in this crate; a panicking `as_fd` loses the headship. The same call
/// sits in `forward` (after the slot was already changed: a panic there
/// leaves `Promised` pointing at a slot that is not promoted), `finish`
/// (after `wait = Idle`: the promotion is lost), `cancel_wait`,
/// `Ticket::drop` and `lend_unless_all_wait`.
///
/// Fix: call `as_fd` outside the lock, before any state change, and treat
/// its panic like a waker's (catch it, fall back to waking the follower),
/// or take the descriptor number once in `promote_when_readable` and arm
/// through a raw-fd entry point of sync-core; at least document that
/// `as_fd` runs under the lock and must not panic or use the stage.
#[test]
fn finding_1a_panicking_as_fd_at_the_hand_off_loses_the_headship() {
    let _w = watchdog("finding_1a_panicking_as_fd_at_the_hand_off_loses_the_headship");
    let (_tx, rx) = UnixDatagram::pair().unwrap();
    let stage = Stage::<u32, Flaky>::new(Flaky {
        sock: rx,
        panic: AtomicBool::new(false),
    })
    .promote_when_readable();
    let mut head = stage.ticket(1).unwrap();
    let mut follower = stage.ticket(2).unwrap();
    let Entry::Head(guard) = stage.enter(&mut head, FIVE) else {
        panic!("the first entry heads")
    };
    let got_follower = thread::scope(|s| {
        let f = s.spawn(|| got(stage.enter(&mut follower, Some(Duration::from_secs(2)))));
        until_waiting(&stage, 1);
        stage.resource().panic.store(true, Ordering::SeqCst);
        let dropped = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| drop(guard)));
        stage.resource().panic.store(false, Ordering::SeqCst);
        // Fixed: the descriptor was taken when the stage was made; no
        // `as_fd` runs at a hand-off (it panicked in the guard's drop here).
        assert!(dropped.is_ok(), "as_fd ran inside the guard's drop");
        f.join().unwrap()
    });
    // The hand-off must not depend on `as_fd` (it would have woken the
    // follower, as on any stage): the follower heads.
    assert_eq!(
        got_follower,
        Got::Head,
        "a panicking as_fd lost the hand-off: the follower timed out and the stage is headed \
         for good (is_headed = {})",
        stage.is_headed()
    );
}

/// Finding 1b. The follower is promoted asleep (`as_fd` fine), then
/// `as_fd` starts failing and data arrives: the follower wakes, and
/// `finish` sets `wait = Idle` and calls `unarm(slot, self.gate())`, which
/// panics; `enter` unwinds, `CancelOnUnwind::drop` -> `cancel_wait` ->
/// `unarm(slot, self.gate())` panics again while unwinding: the process
/// aborts. (With an `as_fd` that panics only once, the promotion is lost
/// instead: `Promised` points at an idle slot for good.) Run in a child
/// process; the child must exit normally (the follower's thread may
/// report the panic, but the process must survive).
#[test]
fn finding_1b_panicking_as_fd_in_finish_aborts_the_process() {
    testkit::in_child(
        "finding_1b_panicking_as_fd_in_finish_aborts_the_process",
        || {
            let (tx, rx) = UnixDatagram::pair().unwrap();
            let stage = Stage::<u32, Flaky>::new(Flaky {
                sock: rx,
                panic: AtomicBool::new(false),
            })
            .promote_when_readable();
            let mut head = stage.ticket(1).unwrap();
            let mut follower = stage.ticket(2).unwrap();
            let Entry::Head(guard) = stage.enter(&mut head, FIVE) else {
                panic!("the first entry heads")
            };
            thread::scope(|s| {
                let f = s.spawn(|| got(stage.enter(&mut follower, FIVE)));
                until_waiting(&stage, 1);
                drop(guard);
                assert_eq!(stage.counters().promotions_when_readable, 1);
                stage.resource().panic.store(true, Ordering::SeqCst);
                tx.send(b"x").unwrap();
                // A panic in the follower is acceptable; an abort is not.
                let _ = f.join();
            });
            stage.resource().panic.store(false, Ordering::SeqCst);
        },
    );
}

/// Finding 2. `Stage::notify`'s docs: "at most one wake-up" (and the crate
/// docs: "`notify`, `deliver` and a hand-off make at most one wake-up").
/// Follower A is promoted asleep; task B waits behind it. `notify(A)`:
/// `notify_locked` takes A's kept waker (`asleep`, A must be woken: it is
/// asleep) *and* forwards the promotion, and `hand_off` wakes B (a task is
/// never armed). Two wake-ups for one notification. (Before this change A
/// was already awake, so only the forward woke someone.)
///
/// Fix: document it ("two wake-ups when the notified follower was promoted
/// asleep"), or count it in the guarantee.
#[test]
fn finding_2_notify_of_a_follower_promoted_asleep_makes_two_wake_ups() {
    let _w = watchdog("finding_2_notify_of_a_follower_promoted_asleep_makes_two_wake_ups");
    let (stage, _tx) = pair_stage();
    let mut head = stage.ticket(1).unwrap();
    let mut a = stage.ticket(2).unwrap();
    let mut b = stage.ticket(3).unwrap();
    let a_done = AtomicBool::new(false);
    let (b_count, b_waker) = Count::new();
    let (a_got, b_pending) = thread::scope(|s| {
        let t = s.spawn(|| {
            // After the main thread heads (else this entry could take the free
            // headship first).
            common::script::once_headed(&stage);
            // No time-out: if it returns, someone woke it.
            let g = got(stage.enter(&mut a, None));
            a_done.store(true, Ordering::Release);
            g
        });
        let mut fut_b = None;
        promote_asleep(&stage, &mut head, || {
            until_waiting(&stage, 1);
            let mut fut = Box::pin(stage.enter_async(&mut b));
            assert!(poll_once(&mut fut, &b_waker).is_pending());
            fut_b = Some(fut);
        });
        assert!(stays_unset(&a_done), "A slept on, promoted");
        assert_eq!(b_count.wakes(), 0);
        assert_eq!(stage.notify(&2), exit_left::NotifyOutcome::Woken);
        let a_woken = finished_or_close(&stage, &a_done, 10);
        let a_got = t.join().unwrap();
        assert!(a_woken, "A never woke");
        let mut fut = fut_b.unwrap();
        let b_pending = poll_once(&mut fut, &b_waker).is_pending();
        (a_got, b_pending)
    });
    assert_eq!(a_got, Got::Notified);
    assert!(!b_pending, "B was promoted");
    // Documented since (`Stage::notify`): two wake-ups when the notification
    // ends a promotion that sleeps and the headship goes on to a follower
    // that must be woken (here a task).
    let wake_ups = 1 + b_count.wakes();
    assert_eq!(wake_ups, 2, "A's own and the forwarded promotion's");
}

/// (Was a finding at bb95c6d: `serve`'s docs did not say it; documented
/// since ef1ce2d.) With one other ticket out (this test's thread, ticket
/// 2), a follower (ticket 3) queued and nothing readable, `serve`'s head
/// hands on (`lend_unless_all_wait`: `others_out == 1 && would_sleep()`)
/// instead of lending: ticket 2, entering while `handle` runs, waits behind
/// the follower, which sleeps promoted (here: ticket 2 times out, nothing
/// arrives), and the follower is released by `close` (`Closed`), not lost.
#[test]
fn held_serve_hands_on_with_one_ticket_out_and_nothing_readable() {
    let _w = watchdog("held_serve_hands_on_with_one_ticket_out_and_nothing_readable");
    let (tx, rx) = UnixDatagram::pair().unwrap();
    rx.set_read_timeout(Some(Duration::from_millis(20)))
        .unwrap();
    let stage: Stage<u32, UnixDatagram, u8> = Stage::with_mailbox(rx).promote_when_readable();
    let mut server = stage.ticket(1).unwrap();
    let mut out = stage.ticket(2).unwrap();
    let mut follower = stage.ticket(3).unwrap();
    let follower_done = AtomicBool::new(false);
    let (in_handle_tx, in_handle) = mpsc::channel::<()>();
    let (release_tx, release) = mpsc::channel::<()>();
    let stage_r = &stage;
    let got_out = thread::scope(|s| {
        let server_thread = s.spawn(move || {
            stage_r.serve(
                &mut server,
                FIVE,
                |r: &UnixDatagram| {
                    Ok::<_, std::io::ErrorKind>(
                        recv_exact::<2>(r)?.map(|buf| (u32::from(buf[0]), buf[1])),
                    )
                },
                |_m| {
                    in_handle_tx.send(()).unwrap();
                    let _ = release.recv_timeout(Duration::from_secs(10));
                    ControlFlow::Break(())
                },
            )
        });
        common::script::once_headed(&stage);
        let f = s.spawn(|| {
            let g = got(stage.enter(&mut follower, Some(Duration::from_secs(10))));
            follower_done.store(true, Ordering::Release);
            g
        });
        until_waiting(&stage, 1);
        // The server's own message: it takes it with the follower queued
        // and ticket 2 out, nothing left to read.
        tx.send(&[1, 8]).unwrap();
        in_handle.recv_timeout(Duration::from_secs(10)).unwrap();
        // `handle` runs; the headship was handed on, not lent: this entry
        // waits behind the promoted follower.
        let got_out = got(stage.enter(&mut out, Some(Duration::from_millis(300))));
        assert!(
            !follower_done.load(Ordering::Acquire),
            "the follower slept on"
        );
        release_tx.send(()).unwrap();
        assert_eq!(server_thread.join().unwrap(), Ok(()));
        // The follower still sleeps, promoted: `close` releases it.
        assert!(!finished_or_close(&stage, &follower_done, 1));
        assert_eq!(f.join().unwrap(), Got::Closed);
        got_out
    });
    assert_eq!(got_out, Got::TimedOut);
    let c = stage.counters();
    assert_eq!((c.promotions, c.promotions_when_readable), (1, 1), "{c:?}");
}

/// Finding 4. `promotions_when_readable` is documented as "those whose
/// follower slept on until the resource was readable instead of being
/// woken", but `hand_off` counts it when it arms, and nothing takes it
/// back when a notification (or `close`, or the deadline) ends that
/// promotion and wakes the follower. Here a follower promoted asleep is
/// notified: woken, it never slept until readable, yet it is counted.
///
/// Fix: reword the doc ("hand-offs that armed the resource instead of
/// waking the follower"), or count when the follower finds itself woken
/// by the resource (its `finish` with the watch fired).
#[test]
fn finding_4_promotions_when_readable_counts_a_follower_woken_by_a_notification() {
    let _w =
        watchdog("finding_4_promotions_when_readable_counts_a_follower_woken_by_a_notification");
    let (stage, _tx) = pair_stage();
    let mut head = stage.ticket(1).unwrap();
    let mut a = stage.ticket(2).unwrap();
    let done = AtomicBool::new(false);
    let a_got = thread::scope(|s| {
        let t = s.spawn(|| {
            // After the main thread heads (else this entry could take the free
            // headship first).
            common::script::once_headed(&stage);
            let g = got(stage.enter(&mut a, None));
            done.store(true, Ordering::Release);
            g
        });
        promote_asleep(&stage, &mut head, || until_waiting(&stage, 1));
        assert_eq!(stage.notify(&2), exit_left::NotifyOutcome::Woken);
        assert!(finished_or_close(&stage, &done, 10));
        t.join().unwrap()
    });
    assert_eq!(a_got, Got::Notified);
    let c = stage.counters();
    assert_eq!(c.promotions, 1);
    assert_eq!(c.forwarded_promotions, 1);
    // Documented since: the counter counts hand-offs that armed the
    // resource instead of waking; this one did (the notification then
    // woke the follower, and forwarded to nobody).
    assert_eq!(c.promotions_when_readable, 1);
}

// ---------------------------------------------------------------------------
// Held
// ---------------------------------------------------------------------------

/// The basic promise: promoted with nothing to read, the follower sleeps;
/// a datagram wakes it, as head (no time-out: only the resource can have
/// woken it). The next promotion, with a datagram already there, wakes at
/// once (not armed).
#[test]
fn held_promoted_follower_sleeps_until_readable_then_heads() {
    let _w = watchdog("held_promoted_follower_sleeps_until_readable_then_heads");
    let (stage, tx) = pair_stage();
    let mut head = stage.ticket(1).unwrap();
    let mut a = stage.ticket(2).unwrap();
    let done = AtomicBool::new(false);
    let a_got = thread::scope(|s| {
        let t = s.spawn(|| {
            // After the main thread heads (else this entry could take the free
            // headship first).
            common::script::once_headed(&stage);
            let e = stage.enter(&mut a, None);
            let mut buf = [0u8; 4];
            let g = match &e {
                Entry::Head(h) => {
                    assert_eq!(h.resource().recv(&mut buf).unwrap(), 1);
                    Got::Head
                }
                other => got_ref(other),
            };
            drop(e);
            done.store(true, Ordering::Release);
            g
        });
        promote_asleep(&stage, &mut head, || until_waiting(&stage, 1));
        assert!(stays_unset(&done), "woken with nothing to read");
        assert!(stage.is_headed());
        tx.send(b"x").unwrap();
        assert!(
            finished_or_close(&stage, &done, 10),
            "never woken by the datagram"
        );
        t.join().unwrap()
    });
    assert_eq!(a_got, Got::Head);
    // Readable at the hand-off: woken, not armed.
    let done = AtomicBool::new(false);
    thread::scope(|s| {
        let t = s.spawn(|| {
            // After the main thread heads (else this entry could take the free
            // headship first).
            common::script::once_headed(&stage);
            let g = got(stage.enter(&mut a, None));
            done.store(true, Ordering::Release);
            g
        });
        let Entry::Head(guard) = stage.enter(&mut head, FIVE) else {
            panic!("free headship")
        };
        until_waiting(&stage, 1);
        tx.send(b"y").unwrap();
        drop(guard);
        assert!(finished_or_close(&stage, &done, 10));
        assert_eq!(t.join().unwrap(), Got::Head);
    });
    let c = stage.counters();
    assert_eq!((c.promotions, c.promotions_when_readable), (2, 1));
    assert!(!stage.is_headed());
}

fn got_ref<T: std::hash::Hash + Eq, R, M>(e: &Entry<'_, T, R, M>) -> Got {
    match e {
        Entry::Head(_) => Got::Head,
        Entry::Notified => Got::Notified,
        Entry::TimedOut => Got::TimedOut,
        Entry::Closed => Got::Closed,
    }
}

/// A notification ends an asleep promotion (Notified) and forwards it to
/// the next blocking follower, which is armed in turn (nothing readable)
/// and woken by the datagram as head: a forward chain of two asleep
/// promotions, nobody lost.
#[test]
fn held_notification_wakes_the_asleep_follower_and_forwards_to_an_armed_one() {
    let _w = watchdog("held_notification_wakes_the_asleep_follower_and_forwards_to_an_armed_one");
    let (stage, tx) = pair_stage();
    let mut head = stage.ticket(1).unwrap();
    let mut a = stage.ticket(2).unwrap();
    let mut b = stage.ticket(3).unwrap();
    let (a_done, b_done) = (AtomicBool::new(false), AtomicBool::new(false));
    let (ga, gb) = thread::scope(|s| {
        let (ta, tb) =
            a_asleep_b_queued(s, &stage, &mut head, (&mut a, &a_done), (&mut b, &b_done));
        assert!(stays_unset(&a_done));
        stage.notify(&2);
        assert!(
            finished_or_close(&stage, &a_done, 10),
            "A not woken by its notification"
        );
        assert_eq!(stage.counters().promotions_when_readable, 2, "B armed too");
        assert!(stays_unset(&b_done), "B woken with nothing to read");
        tx.send(b"x").unwrap();
        assert!(
            finished_or_close(&stage, &b_done, 10),
            "B never woken by the datagram"
        );
        (ta.join().unwrap(), tb.join().unwrap())
    });
    assert_eq!((ga, gb), (Got::Notified, Got::Head));
    let c = stage.counters();
    assert_eq!((c.promotions, c.forwarded_promotions), (2, 1));
    assert!(!stage.is_headed());
    assert_eq!(stage.waiting(), 0);
}

/// `close` wakes a follower promoted asleep (and the one queued behind it).
#[test]
fn held_close_wakes_the_asleep_follower() {
    let _w = watchdog("held_close_wakes_the_asleep_follower");
    let (stage, _tx) = pair_stage();
    let mut head = stage.ticket(1).unwrap();
    let mut a = stage.ticket(2).unwrap();
    let mut b = stage.ticket(3).unwrap();
    let (a_done, b_done) = (AtomicBool::new(false), AtomicBool::new(false));
    thread::scope(|s| {
        let (ta, tb) =
            a_asleep_b_queued(s, &stage, &mut head, (&mut a, &a_done), (&mut b, &b_done));
        assert!(stays_unset(&a_done));
        stage.close();
        // Bounded: if `close` lost A, nothing else will release it.
        let give_up = Instant::now() + Duration::from_secs(10);
        while !(a_done.load(Ordering::Acquire) && b_done.load(Ordering::Acquire)) {
            assert!(Instant::now() < give_up, "close did not wake everyone");
            thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(ta.join().unwrap(), Got::Closed);
        assert_eq!(tb.join().unwrap(), Got::Closed);
    });
    assert!(!stage.is_headed());
}

/// The follower's own deadline ends an asleep promotion: it returns at its
/// deadline, as head (a promotion made by the deadline is a `Head`), and
/// hands on normally afterwards.
#[test]
fn held_deadline_ends_the_asleep_promotion_as_head() {
    let _w = watchdog("held_deadline_ends_the_asleep_promotion_as_head");
    let (stage, _tx) = pair_stage();
    let mut head = stage.ticket(1).unwrap();
    let mut a = stage.ticket(2).unwrap();
    let ga = thread::scope(|s| {
        let ta = s.spawn(|| {
            common::script::once_headed(&stage);
            got(stage.enter(&mut a, Some(Duration::from_millis(300))))
        });
        promote_asleep(&stage, &mut head, || until_waiting(&stage, 1));
        ta.join().unwrap()
    });
    assert_eq!(ga, Got::Head);
    assert_eq!(stage.counters().timeouts, 0);
    assert!(!stage.is_headed());
    // And the stage works on: head again, promote again.
    assert_eq!(got(stage.enter(&mut head, FIVE)), Got::Head);
}

/// A task in the FIFO is woken at once by a hand-off, readable or not
/// (tasks are never armed), and a blocking follower behind it is not
/// skipped.
#[test]
fn held_a_task_is_woken_at_once_by_the_hand_off() {
    let _w = watchdog("held_a_task_is_woken_at_once_by_the_hand_off");
    let (stage, _tx) = pair_stage();
    let mut head = stage.ticket(1).unwrap();
    let mut t = stage.ticket(2).unwrap();
    let (count, waker) = Count::new();
    let Entry::Head(guard) = stage.enter(&mut head, FIVE) else {
        panic!()
    };
    let mut fut = Box::pin(stage.enter_async(&mut t));
    assert!(poll_once(&mut fut, &waker).is_pending());
    drop(guard);
    assert_eq!(count.wakes(), 1);
    match poll_once(&mut fut, &waker) {
        Poll::Ready(Entry::Head(_)) => {}
        other => panic!("expected Head, got {:?}", other.map(|e| got(e))),
    }
    drop(fut);
    assert_eq!(stage.counters().promotions_when_readable, 0);
    assert!(!stage.is_headed());
}

/// The poll/arm race, many times: the hand-off polls (nothing), a sender
/// thread sends at about the same moment, the follower (no time-out) must
/// always head; and a datagram sent right before the hand-off is never
/// slept through.
#[test]
fn held_data_racing_the_hand_off_always_wakes_the_follower() {
    let _w = watchdog("held_data_racing_the_hand_off_always_wakes_the_follower");
    let (stage, tx) = pair_stage();
    let mut head = stage.ticket(1).unwrap();
    let mut a = stage.ticket(2).unwrap();
    let rounds = common::iters(200, 5);
    for round in 0..rounds {
        let done = AtomicBool::new(false);
        let go = AtomicBool::new(false);
        let g = thread::scope(|s| {
            let t = s.spawn(|| {
                // After the main thread heads (else this entry could take the free
                // headship first).
                common::script::once_headed(&stage);
                let e = stage.enter(&mut a, None);
                let g = got_ref(&e);
                if let Entry::Head(h) = &e {
                    let mut buf = [0u8; 4];
                    h.resource().recv(&mut buf).unwrap();
                }
                drop(e);
                done.store(true, Ordering::Release);
                g
            });
            let Entry::Head(guard) = stage.enter(&mut head, FIVE) else {
                panic!("round {round}: free headship")
            };
            let sender = s.spawn(|| {
                while !go.load(Ordering::Acquire) {
                    std::hint::spin_loop();
                }
                for _ in 0..(round % 7) {
                    std::hint::spin_loop();
                }
                tx.send(b"x").unwrap();
            });
            until_waiting(&stage, 1);
            go.store(true, Ordering::Release);
            drop(guard);
            sender.join().unwrap();
            assert!(
                finished_or_close(&stage, &done, 10),
                "round {round}: the follower slept through the datagram"
            );
            t.join().unwrap()
        });
        assert_eq!(g, Got::Head, "round {round}");
    }
    let c = stage.counters();
    assert_eq!(c.promotions, rounds as u64);
    assert!(!stage.is_headed());
}

/// Nothing stale survives a wait: after a follower was promoted asleep and
/// woken by a notification (armed, not fired: disarmed) or by the resource
/// (fired: left in the set, disabled), the socket turning (or staying)
/// readable does not end the same thread's next wait, on another stage
/// that promotes when readable (same cached parker): it times out, as it
/// should.
#[test]
fn held_no_stale_readiness_reaches_a_later_wait() {
    let _w = watchdog("held_no_stale_readiness_reaches_a_later_wait");
    let (stage, tx) = pair_stage();
    let (other, _otx) = pair_stage();
    let mut oh = other.ticket(1).unwrap();
    let mut oa = other.ticket(2).unwrap();
    let mut head = stage.ticket(1).unwrap();
    let mut a = stage.ticket(2).unwrap();
    let Entry::Head(other_guard) = other.enter(&mut oh, FIVE) else {
        panic!()
    };
    for fired in [false, true] {
        let done = AtomicBool::new(false);
        let go = AtomicBool::new(false);
        let (res, later) = thread::scope(|s| {
            let t = s.spawn(|| {
                // After the main thread heads (else this entry could take the free
                // headship first).
                common::script::once_headed(&stage);
                let g = got(stage.enter(&mut a, None));
                done.store(true, Ordering::Release);
                while !go.load(Ordering::Acquire) {
                    thread::yield_now();
                }
                // This thread's next wait: only its time-out ends it.
                (
                    g,
                    got(other.enter(&mut oa, Some(Duration::from_millis(200)))),
                )
            });
            promote_asleep(&stage, &mut head, || until_waiting(&stage, 1));
            if fired {
                tx.send(b"x").unwrap();
            } else {
                stage.notify(&2);
            }
            assert!(finished_or_close(&stage, &done, 10));
            if !fired {
                tx.send(b"x").unwrap();
            }
            go.store(true, Ordering::Release);
            t.join().unwrap()
        });
        assert_eq!(
            res,
            if fired { Got::Head } else { Got::Notified },
            "fired = {fired}"
        );
        assert_eq!(later, Got::TimedOut, "fired = {fired}");
        // Drain for the next round.
        let mut buf = [0u8; 4];
        stage.resource().set_nonblocking(true).unwrap();
        while stage.resource().recv(&mut buf).is_ok() {}
        stage.resource().set_nonblocking(false).unwrap();
    }
    drop(other_guard);
}

/// One round for `held_descriptor_number_reuse_*`: this (the calling)
/// thread follows on a fresh stage over `rx` with no time-out; a helper
/// heads, hands on with nothing readable (this thread is armed asleep) and
/// runs `wake`. Returns what this thread's `enter` returned (the helper
/// closes the stage if it never returns).
fn follow_once(rx: UnixDatagram, wake: &(dyn Fn(&AtomicBool) + Sync)) -> Got {
    let stage: U = Stage::new(rx).promote_when_readable();
    let mut head = stage.ticket(1).unwrap();
    let mut me = stage.ticket(2).unwrap();
    let done = AtomicBool::new(false);
    let (headed_tx, headed) = mpsc::channel::<()>();
    thread::scope(|s| {
        s.spawn(|| {
            let Entry::Head(guard) = stage.enter(&mut head, FIVE) else {
                panic!()
            };
            headed_tx.send(()).unwrap();
            until_waiting(&stage, 1);
            drop(guard);
            assert_eq!(stage.counters().promotions_when_readable, 1);
            wake(&done);
            finished_or_close(&stage, &done, 10);
        });
        headed.recv_timeout(Duration::from_secs(10)).unwrap();
        let e = stage.enter(&mut me, None);
        let g = got_ref(&e);
        if let Entry::Head(h) = &e {
            let mut buf = [0u8; 4];
            h.resource().set_nonblocking(true).unwrap();
            let _ = h.resource().recv(&mut buf);
        }
        drop(e);
        done.store(true, Ordering::Release);
        g
    })
}

/// A datagram pair whose first end has descriptor number `number` (free
/// now), if the process hands it out within a few tries (other tests open
/// descriptors concurrently).
fn pair_numbered(number: i32) -> Option<(UnixDatagram, UnixDatagram)> {
    use std::os::fd::AsRawFd;
    let mut spare = Vec::new();
    for _ in 0..64 {
        let (a, b) = UnixDatagram::pair().unwrap();
        if a.as_raw_fd() == number {
            return Some((a, b));
        }
        spare.push((a, b));
    }
    None
}

/// Descriptor-number reuse on one thread: a stage whose socket fired in
/// this thread's parker (left in its set, disabled, number remembered) is
/// dropped with its socket; a new socket gets the same number; a new stage
/// promotes this thread asleep on it: the new socket's datagram wakes it
/// (the remembered number's `EPOLL_CTL_MOD` fails with `ENOENT`, and it is
/// added). With the old file kept open by a clone (its stale entry stays
/// in the set, disabled), traffic on the old file does not wake the new
/// wait early, and the new file's does.
#[test]
fn held_descriptor_number_reuse_after_the_stage_and_socket_are_dropped() {
    use std::os::fd::AsRawFd;
    let _w = watchdog("held_descriptor_number_reuse_after_the_stage_and_socket_are_dropped");
    for keep_old_file in [false, true] {
        let (rx1, tx1) = UnixDatagram::pair().unwrap();
        let number = rx1.as_raw_fd();
        let old_clone = keep_old_file.then(|| rx1.try_clone().unwrap());
        assert_eq!(
            follow_once(rx1, &|_| {
                tx1.send(b"1").unwrap();
            }),
            Got::Head
        );
        // The stage and its socket are gone; the number is free.
        let Some((rx2, tx2)) = pair_numbered(number) else {
            eprintln!("descriptor {number} was not handed out again; nothing to check");
            continue;
        };
        let g = follow_once(rx2, &|done| {
            if old_clone.is_some() {
                tx1.send(b"old").unwrap();
                assert!(stays_unset(done), "woken by the old file's traffic");
            }
            tx2.send(b"2").unwrap();
        });
        assert_eq!(g, Got::Head, "keep_old_file = {keep_old_file}");
        drop(old_clone);
    }
}

/// Nested waits on one thread: a blocking follower on stage A whose wait
/// runs a leaked future's waker drop (`drop(stale)`), which waits as a
/// follower on stage B (promote when readable too): the two waits use two
/// parkers; B's asleep promotion is woken by B's datagram, A's by A's.
#[test]
fn held_nested_waits_use_separate_parkers() {
    let _w = watchdog("held_nested_waits_use_separate_parkers");
    let (a_stage, a_tx) = pair_stage();
    let (b_stage, b_tx) = pair_stage();
    // 'static: the waker's drop (which waits on B) must be 'static.
    let a_stage: &'static U = Box::leak(Box::new(a_stage));
    let b_stage: &'static U = Box::leak(Box::new(b_stage));
    let mut ah = a_stage.ticket(1).unwrap();
    let mut bh = b_stage.ticket(1).unwrap();
    let inner_got = Arc::new(Mutex::new(None::<Got>));
    let (inner_queued_tx, inner_queued) = mpsc::channel::<()>();
    thread::scope(|s| {
        let Entry::Head(ag) = a_stage.enter(&mut ah, FIVE) else {
            panic!()
        };
        let Entry::Head(bg) = b_stage.enter(&mut bh, FIVE) else {
            panic!()
        };
        let inner_got2 = Arc::clone(&inner_got);
        let t = s.spawn(move || {
            let mut at = a_stage.ticket(2).unwrap();
            // A leaked future on `at`, queued with a waker whose drop
            // waits on stage B.
            let inner = move || {
                let mut bt = b_stage.ticket(2).unwrap();
                inner_queued_tx.send(()).unwrap();
                let g = got(b_stage.enter(&mut bt, Some(Duration::from_secs(10))));
                *inner_got2.lock().unwrap() = Some(g);
            };
            let waker = common::on_drop_waker(inner);
            let mut fut = stage_future(a_stage, &mut at);
            assert!(poll_once(&mut fut, &waker).is_pending());
            drop(waker);
            core::mem::forget(fut);
            got(a_stage.enter(&mut at, Some(Duration::from_secs(10))))
        });
        // The inner wait (on B) runs inside the outer one (on A).
        inner_queued.recv_timeout(Duration::from_secs(10)).unwrap();
        until_waiting(b_stage, 1);
        // Promote both asleep: A's follower (outer) and B's (inner).
        drop(ag);
        drop(bg);
        assert_eq!(a_stage.counters().promotions, 1);
        assert_eq!(b_stage.counters().promotions_when_readable, 1);
        b_tx.send(b"b").unwrap();
        // The inner wait returns (Head), then the outer one parks.
        let give_up = Instant::now() + Duration::from_secs(10);
        while inner_got.lock().unwrap().is_none() {
            assert!(Instant::now() < give_up, "inner wait never woke");
            thread::sleep(Duration::from_millis(1));
        }
        a_tx.send(b"a").unwrap();
        let g = t.join().unwrap();
        assert_eq!(g, Got::Head);
    });
    assert_eq!(*inner_got.lock().unwrap(), Some(Got::Head));
}

fn stage_future<'s, 't>(
    stage: &'s U,
    t: &'t mut Ticket<'s, u32, UnixDatagram>,
) -> std::pin::Pin<Box<exit_left::EnterFuture<'s, 't, u32, UnixDatagram>>> {
    Box::pin(stage.enter_async(t))
}

/// Request/reply traffic through a real socket, owners on `recv` or on
/// `serve` (which now hands on with one ticket out and nothing readable):
/// a peer thread answers requests in batches, in shuffled order, with
/// pauses (so hand-offs find the socket empty, promote asleep, and are
/// woken by the kernel; or find it readable and wake). Every reply arrives
/// exactly once and in order per owner, nobody times out, the stage ends
/// quiet.
#[test]
fn held_request_reply_traffic_through_a_socket_recv_and_serve() {
    let _w = watchdog("held_request_reply_traffic_through_a_socket_recv_and_serve");
    for use_serve in [false, true] {
        let (tx, rx) = UnixDatagram::pair().unwrap();
        rx.set_read_timeout(Some(Duration::from_millis(20)))
            .unwrap();
        let stage: Stage<u32, UnixDatagram, u32> = Stage::with_mailbox(rx).promote_when_readable();
        let owners = 3u32;
        let per = common::iters(300, 5) as u32;
        let (req_tx, req_rx) = mpsc::channel::<(u32, u32)>();
        let tickets: Vec<_> = (0..owners).map(|i| (i, stage.ticket(i).unwrap())).collect();
        let finished = AtomicUsize::new(0);
        thread::scope(|s| {
            // Bare notifications at random: they beat promotions (forwarded,
            // also from followers promoted asleep) and wake followers early.
            s.spawn(|| {
                let mut rng = common::Rng(0x2545_f491_4f6c_dd1d);
                while finished.load(Ordering::Acquire) < owners as usize {
                    stage.notify(&(rng.below(u64::from(owners)) as u32));
                    thread::sleep(Duration::from_micros(50 + rng.below(300)));
                }
            });
            s.spawn(move || {
                let mut rng = common::Rng(0x9e37_79b9_7f4a_7c15);
                let mut batch = Vec::new();
                loop {
                    match req_rx.recv_timeout(Duration::from_millis(2)) {
                        Ok(r) => batch.push(r),
                        Err(mpsc::RecvTimeoutError::Timeout) => {}
                        Err(mpsc::RecvTimeoutError::Disconnected) => break,
                    }
                    while let Ok(r) = req_rx.try_recv() {
                        batch.push(r);
                    }
                    if batch.is_empty() {
                        continue;
                    }
                    if rng.below(3) == 0 {
                        thread::sleep(Duration::from_micros(rng.below(500)));
                    }
                    while !batch.is_empty() {
                        let (to, seq) = batch.swap_remove(rng.below(batch.len() as u64) as usize);
                        let mut buf = [0u8; 8];
                        buf[..4].copy_from_slice(&to.to_le_bytes());
                        buf[4..].copy_from_slice(&seq.to_le_bytes());
                        tx.send(&buf).unwrap();
                    }
                }
            });
            for (id, mut t) in tickets {
                let req_tx = req_tx.clone();
                let stage = &stage;
                let finished = &finished;
                s.spawn(move || {
                    if use_serve {
                        let mut next = 0u32;
                        req_tx.send((id, 0)).unwrap();
                        let r =
                            stage.serve(&mut t, Some(Duration::from_secs(20)), read_item, |m| {
                                assert_eq!(m, next, "owner {id}: out of order");
                                next += 1;
                                if next == per {
                                    return ControlFlow::Break(());
                                }
                                req_tx.send((id, next)).unwrap();
                                ControlFlow::Continue(())
                            });
                        assert_eq!(r, Ok(()), "owner {id} stopped at {next}");
                    } else {
                        for k in 0..per {
                            req_tx.send((id, k)).unwrap();
                            let m = stage.recv(&mut t, Some(Duration::from_secs(20)), read_item);
                            assert_eq!(m, Ok(k), "owner {id}");
                        }
                    }
                    drop(t);
                    finished.fetch_add(1, Ordering::AcqRel);
                });
            }
            drop(req_tx);
        });
        let c = stage.counters();
        assert_eq!(c.timeouts, 0, "{c:?}");
        assert_eq!(c.unrouted, 0, "{c:?}");
        assert_eq!(stage.waiting(), 0);
        assert!(!stage.is_headed());
        eprintln!("serve = {use_serve}: {c:?}");
    }
}
