//! Hostile review of multishot's per-thread peer hint (`peer_hint`: a send
//! records whether its receiver was running; the thread's next blocking
//! receive spins on that) and of `SpinPolicy::spin_until_unless_parked`.
//!
//! The review found one defect, the blocking receive wired to a hinted
//! spin with the `FAST` limit instead of the first batch only (fixed since:
//! there is one hinted spin now, the brief one; spin lengths cannot be
//! asserted without a clock, so no test here). These tests pin the hint's contract through the public
//! API: the hint only ever changes how long a blocking receive spins, so
//! whatever the hostile case (sends from a waker's `wake` / `drop`, from a
//! payload's `Drop`, from a thread-local destructor, a thread sending to its
//! own receiver, zero and tiny time-outs, receives nested in `block_on`,
//! panicking wakers) no value is lost, none is duplicated and no wait hangs.

use core::future::Future;
use core::pin::pin;
use core::task::{Context, Poll, Waker};
use multishot::{Receiver, RecvError, RecvTimeoutError, Sender};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use testkit::{HostileWaker, Misbehaviour, ReentrantWaker, watchdog};

fn poll_once<F: Future>(fut: F, waker: &Waker) -> Poll<F::Output> {
    let mut cx = Context::from_waker(waker);
    pin!(fut).poll(&mut cx)
}

/// Leaves this thread's hint at "my last send found its receiver running":
/// a send to a receiver of our own that is not waiting. Returns that
/// receiver, value included (so the value is checked, not lost).
fn set_hint_by_sending_to_self(value: u32) -> Receiver<u32> {
    let mut own = Receiver::new();
    own.sender().unwrap().send(value).unwrap();
    own
}

/// A sender, the value to send on it (`None`: drop it), busy polls first.
type Job = (Sender<u32>, Option<u32>, u32);

/// A thread that sends, on every `Sender` it is handed, the value handed
/// with it (or drops the sender for `None`), after `spin` busy polls (so
/// that some values land while the receiver spins, some while it is parked).
fn remote_sender() -> (mpsc::Sender<Job>, std::thread::JoinHandle<()>) {
    let (to_sender, jobs) = mpsc::channel::<Job>();
    let t = std::thread::spawn(move || {
        for (s, value, spin) in jobs {
            for _ in 0..spin {
                core::hint::spin_loop();
            }
            match value {
                Some(v) => s.send(v).unwrap(),
                None => drop(s),
            }
        }
    });
    (to_sender, t)
}

// ---------------------------------------------------------------------------
// CONTRACT (attacks that held)

/// A thread that sends to its own (running) receiver leaves a "running"
/// hint that is wrong for its next receive, which waits on a channel nobody
/// sends to yet, or whose sender is dropped: the receive times out, or
/// reports `Closed`, or gets the value a remote thread sends late; the own
/// value stays where it was. Over many rounds, each shape of wait follows a
/// wrong hint.
#[test]
fn a_wrong_hint_from_a_send_to_self_never_loses_a_value_or_hangs() {
    let _w = watchdog("a_wrong_hint_from_a_send_to_self_never_loses_a_value_or_hangs");
    let rounds = testkit::iters(3_000, 30) as u32;
    let (to_sender, t) = remote_sender();
    let mut r = Receiver::<u32>::new();
    for i in 0..rounds {
        let mut own = set_hint_by_sending_to_self(i);
        match i % 4 {
            0 => {
                // A live sender that has not sent yet: a wrong hint, then
                // a time-out.
                let s = r.sender().unwrap();
                assert_eq!(
                    r.recv_timeout(Duration::from_micros(30)),
                    Err(RecvTimeoutError::Timeout),
                    "round {i}"
                );
                // The value that comes after the time-out is kept.
                to_sender.send((s, Some(i), 0)).unwrap();
                assert_eq!(r.recv_blocking(), Ok(i), "round {i}");
            }
            1 => {
                to_sender
                    .send((r.sender().unwrap(), None, i % 300))
                    .unwrap();
                assert_eq!(r.recv_blocking(), Err(RecvError {}), "round {i}");
            }
            2 => {
                to_sender
                    .send((r.sender().unwrap(), Some(i), i % 500))
                    .unwrap();
                assert_eq!(r.recv_blocking(), Ok(i), "round {i}");
            }
            _ => {
                to_sender
                    .send((r.sender().unwrap(), Some(i), i % 700))
                    .unwrap();
                let deadline = std::time::Instant::now() + Duration::from_secs(30);
                assert_eq!(r.recv_deadline(deadline), Ok(i), "round {i}");
            }
        }
        // The self-sent value, under the hint it set, is intact.
        assert_eq!(own.recv_blocking(), Ok(i), "own value, round {i}");
        assert_eq!(own.try_recv(), Err(multishot::TryRecvError::Closed));
    }
    drop(to_sender);
    t.join().unwrap();
}

/// Zero and tiny time-outs right after a "running" hint: a zero time-out
/// only looks, a tiny one may spin past its deadline but returns; however
/// the value races them, it is returned exactly once, by one of the polls
/// or by the blocking receive that follows.
#[test]
fn zero_and_tiny_timeouts_after_a_hint_return_each_value_once() {
    let _w = watchdog("zero_and_tiny_timeouts_after_a_hint_return_each_value_once");
    let rounds = testkit::iters(3_000, 30) as u32;
    let (to_sender, t) = remote_sender();
    let mut r = Receiver::<u32>::new();
    let timeouts = [
        Duration::ZERO,
        Duration::from_nanos(1),
        Duration::from_nanos(500),
        Duration::from_micros(1),
        Duration::from_micros(3),
    ];
    for i in 0..rounds {
        let mut own = set_hint_by_sending_to_self(i);
        to_sender
            .send((r.sender().unwrap(), Some(i), i % 400))
            .unwrap();
        let mut got = None;
        for timeout in timeouts {
            match r.recv_timeout(timeout) {
                Ok(v) => {
                    got = Some(v);
                    break;
                }
                Err(RecvTimeoutError::Timeout) => {
                    // A poll that timed out leaves the hint untouched or
                    // takes it; either way, re-arm it for the next one.
                    let mut again = set_hint_by_sending_to_self(i);
                    assert_eq!(again.try_recv(), Ok(i));
                }
                Err(RecvTimeoutError::Closed) => panic!("round {i}: closed with a value sent"),
            }
        }
        let got = match got {
            Some(v) => v,
            None => r.recv_blocking().expect("the value arrives"),
        };
        assert_eq!(got, i, "round {i}");
        assert_eq!(own.try_recv(), Ok(i), "own value, round {i}");
    }
    drop(to_sender);
    t.join().unwrap();
}

/// Sends made from foreign code that the channel runs around its own send
/// (a receiver's waker's `wake`, a `closed()` waker's `drop`, which run
/// after the publish and after the hint was recorded) and from a payload's
/// `Drop`: each overwrites the hint of the thread it runs on; every value of
/// the outer and inner sends arrives, and the blocking receives that follow
/// on that thread return them.
#[test]
fn sends_from_wake_drop_and_payload_destructors_keep_every_value() {
    let _w = watchdog("sends_from_wake_drop_and_payload_destructors_keep_every_value");
    let rounds = testkit::iters(500, 10) as u32;

    struct SendsOnDrop(Option<Sender<u32>>, u32);
    impl Drop for SendsOnDrop {
        fn drop(&mut self) {
            if let Some(s) = self.0.take() {
                s.send(self.1).unwrap();
            }
        }
    }

    for i in 0..rounds {
        // 1. A receiver's waker whose `wake` sends on another channel.
        let mut outer = Receiver::<u32>::new();
        let mut inner = Receiver::<u32>::new();
        let inner_tx = Arc::new(Mutex::new(inner.sender()));
        let task = ReentrantWaker::new();
        {
            let inner_tx = Arc::clone(&inner_tx);
            task.set_on_wake(Box::new(move || {
                if let Some(s) = inner_tx.lock().unwrap().take() {
                    // The inner receiver is not waiting: "running".
                    s.send(10_000 + i).unwrap();
                }
            }));
        }
        let outer_tx = outer.sender().unwrap();
        assert!(poll_once(outer.recv(), &task.waker()).is_pending());
        outer_tx.send(i).unwrap(); // outer hint: parked; then `wake` sends
        assert_eq!(task.wakes(), 1);
        assert_eq!(inner.recv_blocking(), Ok(10_000 + i));
        assert_eq!(outer.recv_blocking(), Ok(i));

        // 2. A `closed()` waker whose `drop` (after the publish) sends.
        let mut dropper_rx = Receiver::<u32>::new();
        let dropper_tx = Arc::new(Mutex::new(dropper_rx.sender()));
        let closer = ReentrantWaker::new();
        {
            let dropper_tx = Arc::clone(&dropper_tx);
            closer.set_on_drop(Box::new(move || {
                if let Some(s) = dropper_tx.lock().unwrap().take() {
                    s.send(20_000 + i).unwrap();
                }
            }));
        }
        let mut s = outer.sender().unwrap();
        assert!(poll_once(s.closed(), &closer.waker()).is_pending());
        s.send(i + 1).unwrap();
        assert_eq!(closer.live(), 0, "the closed() waker was dropped");
        assert_eq!(dropper_rx.recv_blocking(), Ok(20_000 + i));
        assert_eq!(outer.recv_blocking(), Ok(i + 1));

        // 3. A payload whose `Drop` sends: dropped unread by `sender()`.
        let mut payloads = Receiver::<SendsOnDrop>::new();
        let mut from_drop = Receiver::<u32>::new();
        payloads
            .sender()
            .unwrap()
            .send(SendsOnDrop(from_drop.sender(), 30_000 + i))
            .ok()
            .unwrap();
        let next = payloads.sender().unwrap(); // drops the unread payload
        assert_eq!(from_drop.recv_blocking(), Ok(30_000 + i));
        drop(next);
        assert!(matches!(payloads.recv_blocking(), Err(RecvError {})));
    }
}

/// A waker whose `wake` panics (after the publish and after the hint was
/// recorded): the panic reaches the sender, the value is in the channel,
/// and the same thread's next blocking receives, with a remote sender and
/// nested in `block_on`, work as before.
#[test]
fn a_panicking_wake_after_the_hint_loses_nothing() {
    let _w = watchdog("a_panicking_wake_after_the_hint_loses_nothing");
    let rounds = testkit::iters(300, 10) as u32;
    let (to_sender, t) = remote_sender();
    let mut other = Receiver::<u32>::new();
    for i in 0..rounds {
        let bomb = HostileWaker::new(Misbehaviour::PanicOnWake);
        let mut r = Receiver::<u32>::new();
        let s = r.sender().unwrap();
        assert!(poll_once(r.recv(), &bomb.waker()).is_pending());
        let unwound = catch_unwind(AssertUnwindSafe(|| s.send(i)));
        assert!(unwound.is_err(), "the wake's panic reaches the sender");
        assert_eq!(bomb.wakes(), 1);
        assert_eq!(r.recv_blocking(), Ok(i), "the value was published first");
        assert_eq!(bomb.live(), 0);

        // Then a blocking receive on this thread, plain or nested.
        let _hint = set_hint_by_sending_to_self(i);
        to_sender
            .send((other.sender().unwrap(), Some(i), i % 300))
            .unwrap();
        let got = if i % 2 == 0 {
            other.recv_blocking()
        } else {
            sync_core::future::block_on(async { other.recv_blocking() })
        };
        assert_eq!(got, Ok(i), "round {i}");
    }
    drop(to_sender);
    t.join().unwrap();
}

/// A thread-local's destructor (thread teardown: other thread-locals may be
/// gone, the hint's `try_with` must not panic) sends to its own receiver,
/// sends to another thread, and waits in a blocking receive for a reply:
/// all of it works, and the destructor's results reach the main thread.
#[test]
fn sends_and_blocking_receives_in_a_thread_local_destructor() {
    let _w = watchdog("sends_and_blocking_receives_in_a_thread_local_destructor");

    struct AtExit {
        out: Option<Sender<u32>>,
        to_helper: mpsc::Sender<Sender<u32>>,
    }
    impl Drop for AtExit {
        fn drop(&mut self) {
            // Leaves a "running" hint during teardown.
            let mut own = Receiver::<u32>::new();
            own.sender().unwrap().send(1).unwrap();
            // Waits for a reply from another thread, after the hint.
            let mut reply = Receiver::<u32>::new();
            let result = match self.to_helper.send(reply.sender().unwrap()) {
                Ok(()) => reply.recv_blocking().unwrap_or(0),
                Err(_) => 0,
            };
            let own_value = own.recv_blocking().unwrap_or(0);
            if let Some(out) = self.out.take() {
                // The main thread's receiver is waiting (parked or spinning).
                let _ = out.send(result + 100 * own_value);
            }
        }
    }
    std::thread_local! {
        static AT_EXIT: core::cell::RefCell<Option<AtExit>> =
            const { core::cell::RefCell::new(None) };
    }

    let rounds = testkit::iters(20, 2) as u32;
    for i in 0..rounds {
        let (to_helper, helper_jobs) = mpsc::channel::<Sender<u32>>();
        let helper = std::thread::spawn(move || {
            for s in helper_jobs {
                s.send(7).unwrap();
            }
        });
        let mut from_exit = Receiver::<u32>::new();
        let out = from_exit.sender().unwrap();
        let worker = std::thread::spawn(move || {
            AT_EXIT.with(|slot| {
                *slot.borrow_mut() = Some(AtExit {
                    out: Some(out),
                    to_helper,
                });
            });
            // The hint is set by the thread's ordinary life, too.
            let _ = set_hint_by_sending_to_self(i);
        });
        assert_eq!(from_exit.recv_blocking(), Ok(107), "round {i}");
        worker.join().unwrap();
        helper.join().unwrap();
    }
}

/// A blocking ping-pong, the case the hint is for, between two threads that
/// both send and then receive (so both receives take hints), mixing plain
/// receives, receives nested in `block_on`, async receives in `block_on`
/// (which leave the hint for the next blocking one), zero-time-out polls
/// and rounds whose sender is dropped: every round's value, in order.
#[test]
fn ping_pong_with_hints_on_both_sides_keeps_every_value_in_order() {
    let _w = watchdog("ping_pong_with_hints_on_both_sides_keeps_every_value_in_order");
    let rounds = testkit::iters(20_000, 50) as u32;
    let dropped = |i: u32| i % 97 == 13;
    let (ping_tx, ping_rx) = mpsc::channel::<Sender<u32>>();
    let (pong_tx, pong_rx) = mpsc::channel::<Sender<u32>>();
    let t = std::thread::spawn(move || {
        let mut ping = Receiver::<u32>::new();
        for i in 0..rounds {
            ping_tx.send(ping.sender().unwrap()).unwrap();
            let got = match i % 5 {
                0 | 4 => ping.recv_blocking(),
                1 => sync_core::future::block_on(async { ping.recv_blocking() }),
                2 => sync_core::future::block_on(ping.recv()),
                _ => loop {
                    let timeout = if i % 2 == 0 {
                        Duration::ZERO
                    } else {
                        Duration::from_micros(2)
                    };
                    match ping.recv_timeout(timeout) {
                        Ok(v) => break Ok(v),
                        Err(RecvTimeoutError::Closed) => break Err(RecvError {}),
                        Err(RecvTimeoutError::Timeout) => {}
                    }
                },
            };
            if dropped(i) {
                assert_eq!(got, Err(RecvError {}), "ping round {i}: a dropped sender");
            } else {
                assert_eq!(got, Ok(i), "ping round {i}");
            }
            // The reply (this thread's send: its next receive takes a hint).
            pong_rx.recv().unwrap().send(i).unwrap();
        }
    });
    let mut pong = Receiver::<u32>::new();
    for i in 0..rounds {
        let s = ping_rx.recv().unwrap();
        pong_tx.send(pong.sender().unwrap()).unwrap();
        if dropped(i) {
            drop(s);
        } else {
            s.send(i).unwrap(); // this thread's next receive takes a hint
        }
        let got = if i % 3 == 0 {
            sync_core::future::block_on(async { pong.recv_blocking() })
        } else {
            pong.recv_blocking()
        };
        assert_eq!(got, Ok(i), "pong round {i}");
    }
    t.join().unwrap();
}
