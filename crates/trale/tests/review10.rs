//! Review 10: a hostile review of 369fe0a (every operation waiting on a
//! socket direction keeps its own waker: `Waiters` in `src/reactor.rs`, the
//! `Waiting` guard in `src/net/io.rs`).
//!
//! `finding_*` tests reproduce a defect and fail on 369fe0a (each says why
//! in a `// FINDING:` comment). `held_*` tests are attacks that failed,
//! kept as regression tests (`// HELD:`). Everything that can block runs
//! under a watchdog, and every wait that a lost wake-up would turn into a
//! hang is bounded by a generous `Timer::timeout` (never a timing
//! assertion).
#![cfg(not(miri))]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::future::{Future, poll_fn};
use std::io::{Read, Write};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::{Pin, pin};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, mpsc};
use std::task::{Context, Poll, Waker};
use std::time::Duration;
use testkit::{HostileWaker, Misbehaviour, ReentrantWaker};
use trale::net::{TcpListener, UdpSocket};
use trale::task::{Executor, yield_now};
use trale::timer::Timer;

const V4: &str = "127.0.0.1:0";

/// Long enough never to fire on a working reactor; it turns a hang into a
/// failure with a message instead of the watchdog's abort.
const HANG: Duration = Duration::from_secs(20);

/// Counts this thread's allocations (for the one test that checks what the
/// README says about allocations); otherwise the system allocator.
struct CountingAlloc;

thread_local! {
    static ALLOCATIONS: Cell<usize> = const { Cell::new(0) };
}

fn count_allocation() {
    let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
}

fn allocations() -> usize {
    ALLOCATIONS.with(Cell::get)
}

// SAFETY: every call is forwarded to `System` unchanged; the counter is a
// const-initialised thread-local `Cell` (no allocation, no destructor).
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count_allocation();
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count_allocation();
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count_allocation();
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: CountingAlloc = CountingAlloc;

/// Lets every spawned task run until it waits.
async fn settle() {
    for _ in 0..4 {
        yield_now().await;
    }
}

/// Waits (yielding) until `cond` holds; `what` names the lost wake-up.
async fn until(what: &str, mut cond: impl FnMut() -> bool) {
    Timer::timeout(HANG, async {
        while !cond() {
            yield_now().await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{what}"));
}

fn poll_with<F: Future + ?Sized>(fut: Pin<&mut F>, waker: &Waker) -> Poll<F::Output> {
    fut.poll(&mut Context::from_waker(waker))
}

// ---------------------------------------------------------------------------
// Findings
// ---------------------------------------------------------------------------

/// Two receiver tasks loop on one shared UDP socket; datagrams come one at
/// a time (the next once the last was received).
// FINDING: the task that won the last datagram wins every following one;
// the other receiver is woken for each datagram, finds `EAGAIN`, and never
// receives anything. `Waiters::take_all` (src/reactor.rs) wakes in slot
// order (`first`, then `more`), and the winner re-parks *inside its own
// poll* (its loop calls `recv_from` again before the losers are polled), so
// after every event it takes the empty `first` slot again and is woken
// first next time; the losers re-park behind it (`Waiters::store`). Sharing
// a socket to spread the load does not spread it, and every datagram costs
// the losers a useless poll. Fix: wake in order of waiting, oldest first:
// keys are monotonic and a re-parking operation keeps its key while the
// winner's next operation gets a fresh, larger one, so `take_all` sorted
// by key (or keep the list ordered by key on `store`) makes the operation
// that waited longest run first.
#[test]
fn finding_shared_receivers_one_task_takes_every_datagram() {
    let _dog = testkit::watchdog("finding_shared_receivers_one_task_takes_every_datagram");
    const ROUNDS: usize = 40;
    let got = Executor::block_on(async {
        let server = Arc::new(UdpSocket::bind(V4).unwrap());
        let addr = server.local_addr().unwrap();
        let got: Arc<[AtomicUsize; 2]> = Arc::new([AtomicUsize::new(0), AtomicUsize::new(0)]);
        let total = Arc::new(AtomicUsize::new(0));
        for i in 0..2 {
            let (server, got, total) = (server.clone(), got.clone(), total.clone());
            drop(Executor::spawn(async move {
                let mut buf = [0u8; 8];
                loop {
                    server.recv_from(&mut buf).await.unwrap();
                    got[i].fetch_add(1, Ordering::SeqCst);
                    total.fetch_add(1, Ordering::SeqCst);
                }
            }));
            settle().await;
        }
        let client = std::net::UdpSocket::bind(V4).unwrap();
        for n in 1..=ROUNDS {
            client.send_to(&[n as u8], addr).unwrap();
            until("a datagram on the shared socket was never received", || {
                total.load(Ordering::SeqCst) >= n
            })
            .await;
        }
        [got[0].load(Ordering::SeqCst), got[1].load(Ordering::SeqCst)]
    });
    assert_eq!(got[0] + got[1], ROUNDS);
    assert!(
        got[0] > 0 && got[1] > 0,
        "one of two receivers sharing a socket got all {ROUNDS} datagrams, the other none: {got:?}"
    );
}

/// The same with two accept loops on one listener, connections coming one
/// at a time.
// FINDING: as above (same root cause, `Waiters::take_all` order plus the
// winner re-parking first): the accept loop that accepted the last
// connection accepts every following one; the other never accepts.
#[test]
fn finding_shared_accept_loops_one_task_accepts_every_connection() {
    let _dog = testkit::watchdog("finding_shared_accept_loops_one_task_accepts_every_connection");
    const ROUNDS: usize = 20;
    let got = Executor::block_on(async {
        let listener = Arc::new(TcpListener::bind(V4).unwrap());
        let addr = listener.local_addr().unwrap();
        let got: Arc<[AtomicUsize; 2]> = Arc::new([AtomicUsize::new(0), AtomicUsize::new(0)]);
        let total = Arc::new(AtomicUsize::new(0));
        for i in 0..2 {
            let (listener, got, total) = (listener.clone(), got.clone(), total.clone());
            drop(Executor::spawn(async move {
                loop {
                    let (stream, _) = listener.accept().await.unwrap();
                    drop(stream);
                    got[i].fetch_add(1, Ordering::SeqCst);
                    total.fetch_add(1, Ordering::SeqCst);
                }
            }));
            settle().await;
        }
        let mut clients = Vec::new();
        for n in 1..=ROUNDS {
            clients.push(std::net::TcpStream::connect(addr).unwrap());
            until(
                "a connection to the shared listener was never accepted",
                || total.load(Ordering::SeqCst) >= n,
            )
            .await;
        }
        [got[0].load(Ordering::SeqCst), got[1].load(Ordering::SeqCst)]
    });
    assert_eq!(got[0] + got[1], ROUNDS);
    assert!(
        got[0] > 0 && got[1] > 0,
        "one of two accept loops sharing a listener accepted all {ROUNDS} connections: {got:?}"
    );
}

/// What the README's "Limits" says about the waiters' allocations.
// FINDING (docs): the README said a socket allocates "once, a list for the
// second and later operations waiting in one direction", but that list grew
// by doubling and never shrank. Fixed by saying what the code does: one
// waiting operation per direction is stored inline (no allocation); the
// others go to an ordered map that allocates as it grows. This test holds
// the first half of that (the second needs no test).
#[test]
fn one_waiting_operation_at_a_time_allocates_nothing_for_the_waiters() {
    let _dog =
        testkit::watchdog("one_waiting_operation_at_a_time_allocates_nothing_for_the_waiters");
    Executor::block_on(async {
        let socket = UdpSocket::bind(V4).unwrap();
        // `Waker::noop` clones without allocating, and an `EAGAIN` receive
        // allocates nothing: every allocation counted below is the waiters'.
        let waker = Waker::noop();
        let mut buf = [0u8; 8];
        // The first wait registers the socket (that allocates).
        drop(poll_with(pin!(socket.recv_from(&mut buf)), waker));
        let before = allocations();
        for _ in 0..64 {
            let mut op = pin!(socket.recv_from(&mut buf));
            assert!(poll_with(op.as_mut(), waker).is_pending());
            assert!(poll_with(op.as_mut(), waker).is_pending());
        }
        let extra = allocations() - before;
        assert_eq!(
            extra, 0,
            "one operation waiting at a time allocated {extra} times; the README says never"
        );
    });
}

// FINDING (no test: it is a cost, and this file makes no timing
// assertions): every lookup in `Waiters` was a linear scan, and after an
// event every one of the `k` woken operations re-parks with its old key, so
// one datagram on a socket shared by `k` receivers cost O(k^2) work
// (measured, release build: 20 datagrams, one at a time, to 1,000 / 2,000 /
// 4,000 / 8,000 looping receivers took 12 / 58 / 222 / 754 ms, about 4x per
// doubling); cancelling `k` waiting operations was O(k^2) too. Fixed: the
// waiters beyond the first are an ordered map (O(log k) each).

// ---------------------------------------------------------------------------
// Attacks that held
// ---------------------------------------------------------------------------

/// Sends one byte to `addr` from a throwaway std socket.
fn poke(addr: std::net::SocketAddr) {
    std::net::UdpSocket::bind(V4)
        .unwrap()
        .send_to(b"x", addr)
        .unwrap();
}

// HELD: a waker whose `clone` panics in `park` (the lock is released around
// the clone). The panic reaches the poll; the operation's `async fn` is
// poisoned and, while unwinding, drops its `Waiting` guard, which gives back
// whatever the operation kept (here the good waker of an earlier poll)
// quietly. The other operation waiting in the same direction keeps its
// entry and is woken by the next event; nothing leaks. (The sequence
// re-check cannot be fooled either way: `fire` runs only in `turn`, on the
// executor thread, never inside a poll.)
#[test]
fn held_a_panicking_clone_in_park_leaves_the_waiters_consistent() {
    let _dog = testkit::watchdog("held_a_panicking_clone_in_park_leaves_the_waiters_consistent");
    Executor::block_on(async {
        let socket = UdpSocket::bind(V4).unwrap();
        let addr = socket.local_addr().unwrap();
        let bad = HostileWaker::new(Misbehaviour::PanicOnClone);
        let good = HostileWaker::new(Misbehaviour::None);
        let other = HostileWaker::new(Misbehaviour::None);
        let bad_waker = bad.waker();
        let mut b0 = [0u8; 8];
        let mut other_recv = pin!(socket.recv_from(&mut b0));
        assert!(poll_with(other_recv.as_mut(), &other.waker()).is_pending());
        // First wait with the bad waker: nothing stored.
        {
            let mut buf = [0u8; 8];
            let mut recv = pin!(socket.recv_from(&mut buf));
            let polled = catch_unwind(AssertUnwindSafe(|| {
                poll_with(recv.as_mut(), &bad_waker).is_pending()
            }));
            assert!(polled.is_err(), "the clone's panic reaches the poll");
            assert_eq!(bad.live(), 1, "a panicking clone left something behind");
        }
        // Waiting with a good waker, then re-polled with the bad one.
        {
            let mut buf = [0u8; 8];
            let mut recv = pin!(socket.recv_from(&mut buf));
            assert!(poll_with(recv.as_mut(), &good.waker()).is_pending());
            assert_eq!(good.live(), 1, "the good waker is kept once");
            let polled = catch_unwind(AssertUnwindSafe(|| {
                poll_with(recv.as_mut(), &bad_waker).is_pending()
            }));
            assert!(polled.is_err());
            assert_eq!(good.live(), 0, "the poisoned operation gave its waker back");
        }
        assert_eq!(other.live(), 1, "the other operation lost its entry");
        poke(addr);
        until("the other operation was not woken", || other.wakes() == 1).await;
        assert!(matches!(
            poll_with(other_recv.as_mut(), &other.waker()),
            Poll::Ready(Ok((1, _)))
        ));
        drop(bad_waker);
        assert_eq!((bad.live(), bad.wakes(), good.wakes()), (0, 0, 0));
        assert_eq!(other.live(), 0);
    });
}

// HELD: the waker a re-poll replaces panics when dropped. The panic reaches
// that poll (`park` drops it after the lock and the re-check); the
// poisoned operation's `Waiting` guard then gives the new waker back while
// unwinding (quietly, no abort). Another waiting operation is unaffected.
#[test]
fn held_a_replaced_waker_that_panics_on_drop_leaves_nothing_behind() {
    let _dog = testkit::watchdog("held_a_replaced_waker_that_panics_on_drop_leaves_nothing_behind");
    Executor::block_on(async {
        let socket = UdpSocket::bind(V4).unwrap();
        let addr = socket.local_addr().unwrap();
        let bad = HostileWaker::new(Misbehaviour::PanicOnDrop);
        let good = HostileWaker::new(Misbehaviour::PanicOnDrop);
        let other = HostileWaker::new(Misbehaviour::None);
        let mut b0 = [0u8; 8];
        let mut other_recv = pin!(socket.recv_from(&mut b0));
        assert!(poll_with(other_recv.as_mut(), &other.waker()).is_pending());
        let bad_waker = bad.waker();
        let good_waker = good.waker();
        {
            let mut buf = [0u8; 8];
            let mut recv = pin!(socket.recv_from(&mut buf));
            assert!(poll_with(recv.as_mut(), &bad_waker).is_pending());
            assert_eq!(bad.live(), 2);
            let polled = catch_unwind(AssertUnwindSafe(|| {
                poll_with(recv.as_mut(), &good_waker).is_pending()
            }));
            assert!(
                polled.is_err(),
                "the replaced waker's panic reaches the poll"
            );
            assert_eq!(bad.live(), 1, "the replaced waker was freed");
            assert_eq!(good.live(), 1, "the new waker was given back");
        }
        poke(addr);
        until("the other operation was not woken", || other.wakes() == 1).await;
        assert_eq!((bad.wakes(), good.wakes()), (0, 0));
        bad.disarm();
        good.disarm();
    });
}

// HELD: re-entrancy at the worst moments: the `clone` in `park` (lock
// released) and the `drop` of the replaced waker (after the lock) each
// wait on, and drop, other operations of the same socket direction (which
// park, move entries with `swap_remove`, and unpark). No deadlock, every
// entry stays under its own key, and the event wakes the outer operation.
#[test]
fn held_reentrant_clone_and_drop_park_other_operations() {
    let _dog = testkit::watchdog("held_reentrant_clone_and_drop_park_other_operations");
    Executor::block_on(async {
        let socket = Arc::new(UdpSocket::bind(V4).unwrap());
        let addr = socket.local_addr().unwrap();
        // Two more waiters, so the nested ones go to the `Vec`.
        let others = HostileWaker::new(Misbehaviour::None);
        let others_waker = others.waker();
        let mut b1 = [0u8; 8];
        let mut b2 = [0u8; 8];
        let mut w1 = pin!(socket.recv_from(&mut b1));
        let mut w2 = pin!(socket.recv_from(&mut b2));
        assert!(poll_with(w1.as_mut(), &others_waker).is_pending());
        assert!(poll_with(w2.as_mut(), &others_waker).is_pending());
        let nested = HostileWaker::new(Misbehaviour::None);
        let hook = |socket: Arc<UdpSocket>, nested: HostileWaker| -> testkit::Hook {
            Box::new(move || {
                let waker = nested.waker();
                let mut held = Vec::new();
                for _ in 0..5 {
                    let socket = socket.clone();
                    let mut op = Box::pin(async move {
                        let mut buf = [0u8; 8];
                        socket.recv_from(&mut buf).await.map(|(n, _)| n)
                    });
                    assert!(poll_with(op.as_mut(), &waker).is_pending());
                    held.push(op);
                }
                // Dropped out of order: entries move inside the list.
                held.swap(0, 3);
                drop(held);
            })
        };
        let task = ReentrantWaker::new();
        task.set_on_clone(hook(socket.clone(), nested.clone()));
        let mut buf = [0u8; 8];
        let mut recv = pin!(socket.recv_from(&mut buf));
        let first = task.waker();
        assert!(poll_with(recv.as_mut(), &first).is_pending());
        // A re-poll with another waker: its clone re-enters again (new
        // hook), and the replaced waker's drop re-enters too.
        task.set_on_clone(hook(socket.clone(), nested.clone()));
        task.set_on_drop(hook(socket.clone(), nested.clone()));
        let second = task.waker();
        assert!(poll_with(recv.as_mut(), &second).is_pending());
        drop((first, second));
        assert_eq!(nested.live(), 0, "a nested operation kept its waker");
        assert_eq!(task.live(), 1, "one waker of the outer operation is kept");
        poke(addr);
        until("the outer operation was not woken", || task.wakes() == 1).await;
        until("the other waiters were not woken", || others.wakes() == 2).await;
        let waker = task.waker();
        assert!(matches!(
            poll_with(recv.as_mut(), &waker),
            Poll::Ready(Ok((1, _)))
        ));
        assert!(poll_with(w1.as_mut(), &waker).is_pending());
        assert!(poll_with(w2.as_mut(), &waker).is_pending());
        assert_eq!(nested.wakes(), 0);
    });
}

// HELD: `mem::forget` of a waiting operation leaks its entry only until the
// next event of that direction (which takes and wakes it) or until the
// socket is dropped (which frees the list): not for ever.
#[test]
fn held_a_forgotten_waiting_operation_leaks_its_waker_only_until_an_event() {
    let _dog =
        testkit::watchdog("held_a_forgotten_waiting_operation_leaks_its_waker_only_until_an_event");
    Executor::block_on(async {
        let socket = UdpSocket::bind(V4).unwrap();
        let addr = socket.local_addr().unwrap();
        let task = HostileWaker::new(Misbehaviour::None);
        let waker = task.waker();
        let mut buf = [0u8; 8];
        let mut recv = Box::pin(socket.recv_from(&mut buf));
        assert!(poll_with(recv.as_mut(), &waker).is_pending());
        std::mem::forget(recv);
        assert_eq!(task.live(), 2);
        poke(addr);
        until("the forgotten operation's waker was not woken", || {
            task.wakes() == 1
        })
        .await;
        assert_eq!(task.live(), 1, "the event took the forgotten waker");
        // Another one forgotten (on a fresh socket), no event: freed with
        // the socket.
        let socket = UdpSocket::bind(V4).unwrap();
        let second = HostileWaker::new(Misbehaviour::None);
        let mut other = [0u8; 8];
        let mut recv = Box::pin(socket.recv_from(&mut other));
        assert!(poll_with(recv.as_mut(), &second.waker()).is_pending());
        std::mem::forget(recv);
        assert_eq!(second.live(), 1);
        drop(socket);
        assert_eq!(second.live(), 0, "the socket's drop freed the leaked entry");
    });
}

// HELD: waiting operations are `Send`: thousands of them, polled once on
// the executor, are dropped on another thread while the executor keeps
// receiving a flood on the same socket (events firing, other operations
// parking and completing). No deadlock, no panic, no waker left behind,
// and the socket still works afterwards.
#[test]
fn held_waiting_operations_dropped_on_another_thread_during_events() {
    let _dog = testkit::watchdog("held_waiting_operations_dropped_on_another_thread_during_events");
    const OPS: usize = 3000;
    let hostile = HostileWaker::new(Misbehaviour::None);
    let hostile2 = hostile.clone();
    Executor::block_on(async move {
        let socket = Arc::new(UdpSocket::bind(V4).unwrap());
        let addr = socket.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let flood = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let client = std::net::UdpSocket::bind(V4).unwrap();
                while !stop.load(Ordering::SeqCst) {
                    let _ = client.send_to(b"f", addr);
                    std::thread::yield_now();
                }
            })
        };
        let received = Arc::new(AtomicUsize::new(0));
        let receiver = {
            let (socket, received) = (socket.clone(), received.clone());
            Executor::spawn(async move {
                let mut buf = [0u8; 8];
                loop {
                    socket.recv_from(&mut buf).await.unwrap();
                    received.fetch_add(1, Ordering::SeqCst);
                }
            })
        };
        type Op = Pin<Box<dyn Future<Output = std::io::Result<usize>> + Send>>;
        let (tx, rx) = mpsc::channel::<Op>();
        let dropper = std::thread::spawn(move || {
            for op in rx {
                drop(op);
            }
        });
        let waker = hostile2.waker();
        for i in 0..OPS {
            let socket = socket.clone();
            let mut op: Op = Box::pin(async move {
                let mut buf = [0u8; 8];
                socket.recv_from(&mut buf).await.map(|(n, _)| n)
            });
            // Ready when it found a datagram: fine either way.
            let _ = poll_with(op.as_mut(), &waker);
            tx.send(op).unwrap();
            if i % 16 == 0 {
                yield_now().await; // lets the reactor turn
            }
        }
        drop(tx);
        dropper.join().unwrap();
        drop(waker);
        until("the receiver task stopped receiving", || {
            received.load(Ordering::SeqCst) > 0
        })
        .await;
        stop.store(true, Ordering::SeqCst);
        flood.join().unwrap();
        receiver.abort();
        let _ = receiver.result().await;
        // The socket still wakes a fresh waiter (once the flood's leftovers
        // are drained).
        let fresh = HostileWaker::new(Misbehaviour::None);
        let fresh_waker = fresh.waker();
        let _waiting = loop {
            let socket = socket.clone();
            let mut op: Op = Box::pin(async move {
                let mut buf = [0u8; 8];
                socket.recv_from(&mut buf).await.map(|(n, _)| n)
            });
            if poll_with(op.as_mut(), &fresh_waker).is_pending() {
                break op;
            }
        };
        poke(addr);
        until("a fresh waiter was not woken after the stress", || {
            fresh.wakes() == 1
        })
        .await;
    });
    assert_eq!(hostile.live(), 0, "a waiting operation's waker was leaked");
}

// HELD: many tasks share a socket and each keeps cancelling its receive
// (`Timer::timeout` around `recv_from`, short enough to fire often):
// every datagram is still received (no lost wake-up) while receives are
// being cancelled all the time.
#[test]
fn held_cancelling_receivers_lose_no_datagram() {
    let _dog = testkit::watchdog("held_cancelling_receivers_lose_no_datagram");
    const TASKS: usize = 12;
    const ROUNDS: usize = 150;
    Executor::block_on(async {
        let server = Arc::new(UdpSocket::bind(V4).unwrap());
        let addr = server.local_addr().unwrap();
        let total = Arc::new(AtomicUsize::new(0));
        let timeouts = Arc::new(AtomicUsize::new(0));
        for t in 0..TASKS {
            let (server, total, timeouts) = (server.clone(), total.clone(), timeouts.clone());
            drop(Executor::spawn(async move {
                let mut buf = [0u8; 8];
                let limit = Duration::from_micros(200 + 150 * t as u64);
                loop {
                    match Timer::timeout(limit, server.recv_from(&mut buf)).await {
                        Ok(r) => {
                            r.unwrap();
                            total.fetch_add(1, Ordering::SeqCst);
                        }
                        Err(_) => {
                            timeouts.fetch_add(1, Ordering::SeqCst);
                        }
                    }
                }
            }));
        }
        settle().await;
        let client = std::net::UdpSocket::bind(V4).unwrap();
        for n in 1..=ROUNDS {
            client.send_to(&[n as u8], addr).unwrap();
            until("a datagram was lost among cancelling receivers", || {
                total.load(Ordering::SeqCst) >= n
            })
            .await;
            if n % 10 == 0 {
                Timer::sleep(Duration::from_millis(1)).await; // let timeouts fire
            }
        }
        assert_eq!(total.load(Ordering::SeqCst), ROUNDS);
        assert!(
            timeouts.load(Ordering::SeqCst) > 0,
            "no receive was cancelled"
        );
    });
}

// HELD: a TCP stream shared by two reader tasks and a writer task whose
// `write_all` has to wait (the peer reads only after it wrote): both
// directions' waiters are kept apart, every byte arrives once, the writer
// finishes.
#[test]
fn held_tcp_stream_with_two_readers_and_a_waiting_writer() {
    let _dog = testkit::watchdog("held_tcp_stream_with_two_readers_and_a_waiting_writer");
    const IN: usize = 256 * 1024;
    const OUT: usize = 4 * 1024 * 1024;
    let listener = TcpListener::bind(V4).unwrap();
    let addr = listener.local_addr().unwrap();
    let peer = std::thread::spawn(move || {
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        let chunk = vec![7u8; 4096];
        for _ in 0..IN / chunk.len() {
            s.write_all(&chunk).unwrap();
        }
        let mut back = vec![0u8; OUT];
        s.read_exact(&mut back).unwrap();
        assert!(back.iter().all(|&b| b == 9));
    });
    Executor::block_on(async {
        let (stream, _) = listener.accept().await.unwrap();
        let stream = Arc::new(stream);
        let read = Arc::new(AtomicUsize::new(0));
        let mut readers = Vec::new();
        for _ in 0..2 {
            let (stream, read) = (stream.clone(), read.clone());
            readers.push(Executor::spawn(async move {
                let mut buf = [0u8; 1000];
                while read.load(Ordering::SeqCst) < IN {
                    let n = stream.read(&mut buf).await.unwrap();
                    assert!(n > 0, "early end of stream");
                    assert!(buf[..n].iter().all(|&b| b == 7));
                    read.fetch_add(n, Ordering::SeqCst);
                }
            }));
            settle().await;
        }
        let writer = {
            let stream = stream.clone();
            Executor::spawn(async move { stream.write_all(&vec![9u8; OUT]).await.unwrap() })
        };
        Timer::timeout(HANG, writer)
            .await
            .expect("the writer sharing the stream with two readers was never woken");
        until("the readers sharing the stream stopped being woken", || {
            read.load(Ordering::SeqCst) == IN
        })
        .await;
        // One reader saw the end and returned; the other waits on: abort it.
        for r in readers {
            r.abort();
        }
    });
    peer.join().unwrap();
}

// HELD: two accept loops on one listener, one of them cancelling its
// `accept` all the time (short timeout): every connection is accepted.
#[test]
fn held_accept_loops_with_a_cancelling_one_accept_everything() {
    let _dog = testkit::watchdog("held_accept_loops_with_a_cancelling_one_accept_everything");
    const ROUNDS: usize = 40;
    Executor::block_on(async {
        let listener = Arc::new(TcpListener::bind(V4).unwrap());
        let addr = listener.local_addr().unwrap();
        let total = Arc::new(AtomicUsize::new(0));
        for cancelling in [true, false] {
            let (listener, total) = (listener.clone(), total.clone());
            drop(Executor::spawn(async move {
                loop {
                    let accepted = if cancelling {
                        Timer::timeout(Duration::from_micros(300), listener.accept()).await
                    } else {
                        Ok(listener.accept().await)
                    };
                    if let Ok(r) = accepted {
                        drop(r.unwrap());
                        total.fetch_add(1, Ordering::SeqCst);
                    }
                }
            }));
            settle().await;
        }
        let mut clients = Vec::new();
        for n in 1..=ROUNDS {
            clients.push(std::net::TcpStream::connect(addr).unwrap());
            until("a connection was never accepted", || {
                total.load(Ordering::SeqCst) >= n
            })
            .await;
        }
    });
}

// HELD: the per-poll budget with many readers: one task waits on 140
// receives of one shared socket at once (more than the 128 operations one
// poll may complete), another task on 10 more; 150 datagrams arrive in one
// burst. The budget makes the first task yield part-way, and every receive
// still completes: the ones cut off by the budget are not parked but
// rescheduled, and the event's wake reached all of them.
#[test]
fn held_budget_with_many_waiting_readers_loses_nothing() {
    let _dog = testkit::watchdog("held_budget_with_many_waiting_readers_loses_nothing");
    const MANY: usize = 140;
    const FEW: usize = 10;
    Executor::block_on(async {
        let server = Arc::new(UdpSocket::bind(V4).unwrap());
        let addr = server.local_addr().unwrap();
        let many_polls = Arc::new(AtomicUsize::new(0));
        let readers = |count: usize, polls: Option<Arc<AtomicUsize>>| {
            let server = server.clone();
            Executor::spawn(async move {
                let mut bufs = vec![[0u8; 8]; count];
                let mut ops: Vec<_> = bufs
                    .iter_mut()
                    .map(|buf| Some(Box::pin(server.recv_from(buf))))
                    .collect();
                let mut left = count;
                poll_fn(|cx| {
                    if let Some(p) = &polls {
                        p.fetch_add(1, Ordering::SeqCst);
                    }
                    for slot in &mut ops {
                        if let Some(op) = slot {
                            if let Poll::Ready(r) = op.as_mut().poll(cx) {
                                r.unwrap();
                                *slot = None;
                                left -= 1;
                            }
                        }
                    }
                    if left == 0 {
                        Poll::Ready(())
                    } else {
                        Poll::Pending
                    }
                })
                .await;
            })
        };
        let many = readers(MANY, Some(many_polls.clone()));
        let few = readers(FEW, None);
        settle().await;
        let polls_before = many_polls.load(Ordering::SeqCst);
        let client = std::net::UdpSocket::bind(V4).unwrap();
        for i in 0..MANY + FEW {
            client.send_to(&[i as u8], addr).unwrap();
        }
        Timer::timeout(HANG, async {
            many.await;
            few.await;
        })
        .await
        .expect("a receive among many sharing a socket was never woken");
        assert!(
            many_polls.load(Ordering::SeqCst) - polls_before >= 2,
            "the budget did not cut the 140 completions into two polls"
        );
    });
}
