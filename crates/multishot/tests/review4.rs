//! Fourth hostile review of multishot (and of the parts of sync-core it
//! uses: `Parker`, `with_thread_parker`, `SpinPolicy`).
//!
//! Tests named `review4_finding_*` showed defects of the reviewed code
//! (7b43a2d's multishot): they failed on it and pass since the fixes (a
//! peer's waker woken from a handle dropped while unwinding has its panic
//! caught; a zero time-out or a passed deadline only looks, as `try_recv`).
//! The others are attacks that held, kept as short regression tests.
//!
//! Findings 1 and 2 abort the process, so the scenario runs in a child
//! process (`testkit::in_child`: this test binary, re-run with the
//! test's exact name) and the test asserts that the child exited cleanly.

use core::future::Future;
use core::pin::pin;
use core::task::{Context, Poll, Waker};
use multishot::{Receiver, RecvError, RecvTimeoutError, TryRecvError, channel};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::task::Wake;
use std::thread;
use std::time::Duration;
use testkit::{HostileWaker, Misbehaviour, in_child, iters, watchdog};

fn poll_once<F: Future>(fut: F, waker: &Waker) -> Poll<F::Output> {
    let mut cx = Context::from_waker(waker);
    pin!(fut).poll(&mut cx)
}

/// A waker whose `wake` always panics, also while the thread is already
/// unwinding (the `RawWaker` contract does not forbid it; testkit's
/// `HostileWaker` deliberately refrains from it).
struct PanicOnWake;
impl Wake for PanicOnWake {
    fn wake(self: Arc<Self>) {
        panic!("review4: hostile wake");
    }
}

/// A receiver waits with `waker`; its `Sender` is dropped while the
/// worker's thread unwinds from its own panic, which must come out (no
/// abort), and the receiver then sees the channel closed.
fn sender_dropped_while_unwinding(waker: Waker) {
    let (s, mut r) = channel::<u32>();
    assert!(poll_once(r.recv(), &waker).is_pending());
    let worker = catch_unwind(AssertUnwindSafe(move || {
        let _reply = s;
        panic!("review4: the worker failed");
    }));
    assert!(worker.is_err(), "the worker's own panic is caught");
    assert_eq!(r.try_recv(), Err(TryRecvError::Closed));
}

/// REVIEW4 FINDING 1. A `Sender` dropped while its thread unwinds (a worker
/// that panicked while holding the reply sender: the ordinary way a round
/// ends without a value) wakes the receiver's waker from inside
/// `Drop for Sender` (`Inner::finish_sender`, `w.wake()`). If that waker's
/// `wake` panics, the panic starts inside a destructor during unwinding and
/// the whole process aborts, instead of the worker's thread ending with its
/// own panic. The wake is made on the receiver's behalf; exit-left catches
/// such wakes (`wake_quietly`, for exactly this reason), and multishot's
/// guarantee says a panicking `wake` "only makes that panic reach the
/// caller".
#[test]
#[cfg_attr(miri, ignore = "spawns a child process")]
fn review4_finding_1_sender_dropped_while_unwinding_with_panicking_receiver_wake() {
    in_child(
        "review4_finding_1_sender_dropped_while_unwinding_with_panicking_receiver_wake",
        || sender_dropped_while_unwinding(Waker::from(Arc::new(PanicOnWake))),
    );
}

/// REVIEW4 FINDING 2. The mirror image: a `Receiver` dropped while its
/// thread unwinds wakes the sender's `closed()` waker from inside
/// `Drop for Receiver` (`w.wake()` on the departing receiver's path). A
/// panicking `wake` there aborts the process.
#[test]
#[cfg_attr(miri, ignore = "spawns a child process")]
fn review4_finding_2_receiver_dropped_while_unwinding_with_panicking_closed_wake() {
    in_child(
        "review4_finding_2_receiver_dropped_while_unwinding_with_panicking_closed_wake",
        || {
            let (mut s, r) = channel::<u32>();
            let w = Waker::from(Arc::new(PanicOnWake));
            assert!(poll_once(s.closed(), &w).is_pending());
            let consumer = catch_unwind(AssertUnwindSafe(move || {
                let _r = r;
                panic!("review4: the consumer failed");
            }));
            assert!(consumer.is_err(), "the consumer's own panic is caught");
            assert!(s.is_closed());
            assert_eq!(s.send(7).unwrap_err().into_inner(), 7);
        },
    );
}

/// A payload whose destructor panics with a payload whose destructor
/// panics, whether or not the thread is already unwinding.
struct Chain(u32);
impl Drop for Chain {
    fn drop(&mut self) {
        if self.0 > 1 {
            std::panic::panic_any(Chain(self.0 - 1));
        }
        panic!("review4: the payload's payload panics on drop");
    }
}

/// Like `PanicOnWake`, with a [`Chain`] as the payload.
struct PanicOnWakeWithChain;
impl Wake for PanicOnWakeWithChain {
    fn wake(self: Arc<Self>) {
        std::panic::panic_any(Chain(2));
    }
}

/// Finding 1 again, with a waker whose panic's payload panics when dropped,
/// and so does that panic's payload. The fix of finding 1 caught the wake
/// and dropped the payload under one more `catch_unwind`, but dropped the
/// second payload without one: its panic left `Drop for Sender` while the
/// thread was unwinding, and the process aborted. (Found with
/// `sync_core::unwind`, which every crate now uses for this.)
#[test]
#[cfg_attr(miri, ignore = "spawns a child process")]
fn a_sender_dropped_while_unwinding_survives_a_wake_whose_payload_panics_twice() {
    in_child(
        "a_sender_dropped_while_unwinding_survives_a_wake_whose_payload_panics_twice",
        || sender_dropped_while_unwinding(Waker::from(Arc::new(PanicOnWakeWithChain))),
    );
}

/// REVIEW4 FINDING 3 (doc mismatch). `recv_timeout` documents "With a zero
/// `timeout` it only looks: no spin, no sleep", but `wait` registers the
/// thread parker's waker (a clone and an RMW; on the thread's first
/// blocking call, the parker's two allocations) before it finds the
/// deadline past, and leaves it registered: the next send pays the second
/// RMW and unparks this thread's cached parker for nothing, and a waker an
/// async task left registered (a cancelled `Recv`, which the crate's own
/// tests describe as "a task that will be polled again") is replaced and
/// dropped, so that task is no longer woken by the send. `try_recv` is the
/// real look; the zero time-out is not one.
#[test]
fn review4_finding_3_zero_timeout_only_looks() {
    let _w = watchdog("review4_finding_3_zero_timeout_only_looks");
    let (s, mut r) = channel::<u32>();
    let task = HostileWaker::new(Misbehaviour::None);
    // A task polls, is cancelled, and will be polled again later.
    assert!(poll_once(r.recv(), &task.waker()).is_pending());
    assert!(format!("{r:?}").contains("waker_registered: true"));
    // Only a look.
    assert_eq!(
        r.recv_timeout(Duration::ZERO),
        Err(RecvTimeoutError::Timeout)
    );
    s.send(1).unwrap();
    assert_eq!(
        task.wakes(),
        1,
        "the send woke the task's waker (a look must not replace it)"
    );
    assert_eq!(r.try_recv(), Ok(1));
}

/// The same, without any earlier registration: after the look, nothing is
/// registered.
#[test]
fn review4_finding_3_zero_timeout_leaves_no_registration() {
    let _w = watchdog("review4_finding_3_zero_timeout_leaves_no_registration");
    let (_s, mut r) = channel::<u32>();
    assert_eq!(
        r.recv_timeout(Duration::ZERO),
        Err(RecvTimeoutError::Timeout)
    );
    let dbg = format!("{r:?}");
    assert!(
        dbg.contains("waker_registered: false"),
        "a zero time-out registered a waker: {dbg}"
    );
}

// ---------------------------------------------------------------------
// Attacks that held.
// ---------------------------------------------------------------------

static ZST_DROPS: AtomicUsize = AtomicUsize::new(0);
/// A zero-sized payload whose drops are counted.
struct Zst;
impl Drop for Zst {
    fn drop(&mut self) {
        ZST_DROPS.fetch_add(1, Ordering::SeqCst);
    }
}

/// An over-aligned payload; the slot must honour the alignment.
#[repr(align(256))]
struct Big(u64, #[allow(dead_code)] Arc<()>);

/// ZST and over-aligned payloads through every way a value leaves the
/// channel (received, unread at recycling, returned by `sender_with_unread`,
/// unread at the receiver's drop, returned to a sender): each is dropped
/// exactly once, and the over-aligned value is read intact.
#[test]
fn zst_and_over_aligned_payloads_leave_every_way_exactly_once() {
    let _w = watchdog("zst_and_over_aligned_payloads_leave_every_way_exactly_once");
    ZST_DROPS.store(0, Ordering::SeqCst);
    let (s, mut r) = channel::<Zst>();
    s.send(Zst).unwrap();
    drop(r.try_recv().unwrap()); // 1
    r.sender().unwrap().send(Zst).unwrap();
    let s = r.sender().unwrap(); // 2: unread dropped
    s.send(Zst).unwrap();
    let (s, unread) = r.sender_with_unread().unwrap();
    drop(unread); // 3
    s.send(Zst).unwrap();
    drop(r); // 4
    let (s, r) = channel::<Zst>();
    drop(r);
    drop(s.send(Zst).unwrap_err()); // 5
    assert_eq!(ZST_DROPS.load(Ordering::SeqCst), 5);

    let token = Arc::new(());
    let (s, mut r) = channel::<Big>();
    s.send(Big(0xdead_beef, Arc::clone(&token))).unwrap();
    let v = r.try_recv().unwrap();
    assert_eq!(v.0, 0xdead_beef);
    assert_eq!(core::ptr::from_ref(&v).addr() % 256, 0);
    drop(v);
    r.sender()
        .unwrap()
        .send(Big(1, Arc::clone(&token)))
        .unwrap();
    let s = r.sender().unwrap();
    s.send(Big(2, Arc::clone(&token))).unwrap();
    drop(r);
    assert_eq!(Arc::strong_count(&token), 1, "every Big dropped");
}

/// A `Recv` future leaked with `mem::forget` after it registered: the
/// channel neither recycles under the live sender nor loses the wake, and
/// it is reusable afterwards with a fresh future and a new waker.
///
/// (`Recv` has no `Drop`: forgetting it is dropping it, which is exactly
/// why leaking it must be harmless; the `forget` is kept to say so.)
#[test]
#[allow(clippy::forget_non_drop)]
fn forgotten_recv_future_then_reuse() {
    let _w = watchdog("forgotten_recv_future_then_reuse");
    let (s, mut r) = channel::<String>();
    let task = HostileWaker::new(Misbehaviour::None);
    let mut fut = r.recv();
    assert!(poll_once(&mut fut, &task.waker()).is_pending());
    core::mem::forget(fut);
    assert!(r.sender().is_none(), "the sender is alive");
    s.send("a".into()).unwrap();
    assert_eq!(task.wakes(), 1);
    assert_eq!(task.live(), 0, "the woken clone was consumed");
    let s = r.sender().unwrap(); // drops nothing: the value was unread
    let other = HostileWaker::new(Misbehaviour::None);
    let mut fut = r.recv();
    assert!(poll_once(&mut fut, &other.waker()).is_pending());
    core::mem::forget(fut);
    s.send("b".into()).unwrap();
    assert_eq!(other.wakes(), 1);
    assert_eq!(r.try_recv().as_deref(), Ok("b"));
    drop(r);
    assert_eq!(task.live() + other.live(), 0);
}

/// Polls with a new waker (new data pointer) every time, across recycled
/// rounds: each poll replaces the registration, the replaced clones are
/// dropped, the send wakes the latest one only.
#[test]
fn a_new_waker_every_poll_wakes_only_the_latest() {
    let _w = watchdog("a_new_waker_every_poll_wakes_only_the_latest");
    let mut r = Receiver::<u32>::new();
    for round in 0..iters(20, 3) as u32 {
        let s = r.sender().unwrap();
        let tasks: Vec<_> = (0..4)
            .map(|_| HostileWaker::new(Misbehaviour::None))
            .collect();
        for t in &tasks {
            assert!(poll_once(r.recv(), &t.waker()).is_pending());
        }
        s.send(round).unwrap();
        let wakes: Vec<_> = tasks.iter().map(HostileWaker::wakes).collect();
        assert_eq!(wakes, [0, 0, 0, 1]);
        assert_eq!(tasks.iter().map(HostileWaker::live).sum::<usize>(), 0);
        assert_eq!(poll_once(r.recv(), Waker::noop()), Poll::Ready(Ok(round)));
    }
}

/// A receiver parked in each blocking receive while the sender is dropped
/// on another thread, and after a recycle: each wait ends with `Closed`.
#[test]
fn blocking_receives_parked_while_the_sender_is_dropped() {
    let _w = watchdog("blocking_receives_parked_while_the_sender_is_dropped");
    let mut r = Receiver::<u32>::new();
    for kind in 0..3 {
        let s = r.sender().unwrap();
        let t = thread::spawn(move || {
            thread::sleep(Duration::from_millis(if cfg!(miri) { 1 } else { 20 }));
            drop(s);
        });
        match kind {
            0 => assert_eq!(r.recv_blocking(), Err(RecvError {})),
            1 => assert_eq!(
                r.recv_timeout(Duration::from_secs(30)),
                Err(RecvTimeoutError::Closed)
            ),
            _ => assert_eq!(
                r.recv_deadline(std::time::Instant::now() + Duration::from_secs(30)),
                Err(RecvTimeoutError::Closed)
            ),
        }
        t.join().unwrap();
    }
}

static RACE_LIVE: AtomicUsize = AtomicUsize::new(0);
/// A payload that counts how many are alive.
struct Counted(u32);
impl Counted {
    fn new(v: u32) -> Self {
        RACE_LIVE.fetch_add(1, Ordering::SeqCst);
        Counted(v)
    }
}
impl Drop for Counted {
    fn drop(&mut self) {
        RACE_LIVE.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Time-outs that expire as the value arrives, over recycled rounds: the
/// other thread sends each round's value after a varying busy delay while
/// the receiver waits with tiny time-outs (zero, 1 µs, 20 µs) and then
/// collects the value with whatever receive comes next. Every value is
/// received exactly once, in order; none is reported as a time-out and then
/// lost, none is dropped by the channel.
#[test]
fn timeouts_expiring_as_the_value_arrives_lose_nothing() {
    let _w = watchdog("timeouts_expiring_as_the_value_arrives_lose_nothing");
    let rounds = iters(3000, 20) as u32;
    let (to_sender, senders) = mpsc::channel::<multishot::Sender<Counted>>();
    let t = thread::spawn(move || {
        for (i, s) in senders.iter().enumerate() {
            for _ in 0..(i % 7) * 50 {
                core::hint::spin_loop();
            }
            s.send(Counted::new(i as u32)).unwrap();
        }
    });
    let mut r = Receiver::<Counted>::new();
    for round in 0..rounds {
        to_sender.send(r.sender().unwrap()).unwrap();
        let timeout = match round % 3 {
            0 => Duration::ZERO,
            1 => Duration::from_micros(1),
            _ => Duration::from_micros(20),
        };
        let v = match r.recv_timeout(timeout) {
            Ok(v) => v,
            Err(RecvTimeoutError::Timeout) => match round % 2 {
                0 => r.recv_blocking().unwrap(),
                _ => r.recv_timeout(Duration::from_secs(30)).unwrap(),
            },
            Err(RecvTimeoutError::Closed) => panic!("round {round}: closed"),
        };
        assert_eq!(v.0, round);
        assert!(!r.has_value());
        assert!(matches!(r.try_recv(), Err(TryRecvError::Closed)));
    }
    drop(to_sender);
    t.join().unwrap();
    drop(r);
    assert_eq!(RACE_LIVE.load(Ordering::SeqCst), 0);
}

/// A waker whose `wake` recycles the channel and blocks on the next round
/// (a re-entrant blocking receive inside `send`, on the sending thread's
/// nested parker) while a third thread answers: the outer send returns,
/// both values arrive, nothing hangs.
#[test]
fn wake_that_blocks_on_the_next_round_inside_send() {
    let _w = watchdog("wake_that_blocks_on_the_next_round_inside_send");
    let (s, r) = channel::<u32>();
    let r = Arc::new(std::sync::Mutex::new(r));
    let (got_tx, got_rx) = mpsc::channel();
    let (next_tx, next_rx) = mpsc::channel::<multishot::Sender<u32>>();
    let answerer = thread::spawn(move || {
        for s in next_rx.iter() {
            s.send(2).unwrap();
        }
    });
    let hook = testkit::ReentrantWaker::new();
    {
        let r = Arc::clone(&r);
        let got_tx = got_tx.clone();
        hook.set_on_wake(Box::new(move || {
            let mut r = r.lock().unwrap();
            got_tx.send(r.try_recv().unwrap()).unwrap();
            next_tx.send(r.sender().unwrap()).unwrap();
            got_tx
                .send(r.recv_timeout(Duration::from_secs(30)).unwrap())
                .unwrap();
        }));
    }
    assert!(poll_once(r.lock().unwrap().recv(), &hook.waker()).is_pending());
    s.send(1).unwrap();
    assert_eq!(got_rx.try_iter().collect::<Vec<_>>(), [1, 2]);
    drop(r);
    answerer.join().unwrap();
}
