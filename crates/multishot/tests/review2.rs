//! Second hostile review (after af18134): native stress of the races the
//! review reasoned through, with every payload counted (created = dropped)
//! and every shared block counted (allocated = freed) by a global allocator
//! that recognises the block by its size. The loom models of the same races
//! are at the end of `loom.rs`.
//!
//! The tests of this file run one at a time (they share the block counter).
//!
//! What they can and cannot show: an earlier sender holds the waker slot
//! only between two RMWs with no foreign code in between (nanoseconds), so
//! native runs rarely hit the narrow windows; reintroducing the bugs of
//! af18134 (or breaking any `Inner::free` condition) in a scratch copy was
//! caught by the loom models, not by these. They do catch a broken common
//! path (a receiver that no longer frees the block fails the ledger), lost
//! wake-ups (the watchdog) and values lost or dropped twice.
//!
//! Not under Miri: the size-keyed ledger also counts Miri's own runtime
//! allocations, and Miri's leak check already covers what it counts.
#![cfg(not(miri))]

use core::future::Future;
use core::pin::pin;
use core::task::{Context, Poll, Waker};
use multishot::{Receiver, Sender, TryRecvError, channel};
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use sync_core::future::block_on;
use testkit::watchdog;

// ---------------------------------------------------------------------------
// Counting

/// The size of a `multishot` block for `Payload`, learned once; 0 = unknown.
static BLOCK_SIZE: AtomicUsize = AtomicUsize::new(0);
/// Blocks allocated and not freed.
static LIVE_BLOCKS: AtomicUsize = AtomicUsize::new(0);
std::thread_local! {
    /// Set while `Ledger::open` makes its first receiver, on that thread
    /// only: the one allocation it makes then is the block. (A process-wide
    /// flag also caught other threads' allocations made at that moment, such
    /// as a watchdog thread starting, and learned a wrong size: a flaky
    /// failure seen on a fresh CI clone.)
    static LEARNING: Cell<bool> = const { Cell::new(false) };
}

struct Counting;

// SAFETY: forwards to `System`, only counting.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if LEARNING.try_with(Cell::get).unwrap_or(false) {
            BLOCK_SIZE.store(layout.size(), Ordering::Relaxed);
        }
        if layout.size() == BLOCK_SIZE.load(Ordering::Relaxed) {
            LIVE_BLOCKS.fetch_add(1, Ordering::SeqCst);
        }
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if layout.size() == BLOCK_SIZE.load(Ordering::Relaxed) {
            LIVE_BLOCKS.fetch_sub(1, Ordering::SeqCst);
        }
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Payloads made and dropped (shared by the serialised tests).
static MADE: AtomicUsize = AtomicUsize::new(0);
static DROPPED: AtomicUsize = AtomicUsize::new(0);

/// A payload big enough that the block's size is unlike any other
/// allocation of these tests, which never box a payload.
struct Payload {
    tag: u64,
    _pad: [u64; 47],
}

impl Payload {
    fn new(tag: u64) -> Self {
        MADE.fetch_add(1, Ordering::SeqCst);
        Payload { tag, _pad: [0; 47] }
    }
}

impl Drop for Payload {
    fn drop(&mut self) {
        DROPPED.fetch_add(1, Ordering::SeqCst);
    }
}

static SERIAL: Mutex<()> = Mutex::new(());

/// Serialises the tests of this file, learns the block size, and checks at
/// the end that every payload was dropped once and every block freed.
struct Ledger {
    _serial: std::sync::MutexGuard<'static, ()>,
}

impl Ledger {
    fn open() -> Self {
        let serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
        if BLOCK_SIZE.load(Ordering::SeqCst) == 0 {
            LEARNING.with(|l| l.set(true));
            let r = Receiver::<Payload>::new();
            LEARNING.with(|l| l.set(false));
            drop(r);
            assert!(BLOCK_SIZE.load(Ordering::SeqCst) > size_of::<Payload>());
            LIVE_BLOCKS.store(0, Ordering::SeqCst);
            // The counter sees a block come and go.
            let (s, r) = channel::<Payload>();
            assert_eq!(LIVE_BLOCKS.load(Ordering::SeqCst), 1);
            drop((s, r));
        }
        assert_eq!(LIVE_BLOCKS.load(Ordering::SeqCst), 0);
        MADE.store(0, Ordering::SeqCst);
        DROPPED.store(0, Ordering::SeqCst);
        Ledger { _serial: serial }
    }

    fn close(self) {
        let (made, dropped) = (MADE.load(Ordering::SeqCst), DROPPED.load(Ordering::SeqCst));
        assert_eq!(made, dropped, "payloads made vs dropped");
        assert_eq!(LIVE_BLOCKS.load(Ordering::SeqCst), 0, "blocks leaked");
    }
}

fn iterations(n: usize) -> usize {
    if cfg!(miri) { n / 500 + 2 } else { n }
}

fn poll_once<F: Future>(fut: F, waker: &Waker) -> Poll<F::Output> {
    let mut cx = Context::from_waker(waker);
    pin!(fut).poll(&mut cx)
}

/// Every thread of a scenario spins on this before its racing step, so the
/// steps start within a few hundred nanoseconds of each other.
fn start_line() -> (&'static AtomicUsize, usize) {
    static GO: AtomicUsize = AtomicUsize::new(0);
    (&GO, GO.load(Ordering::SeqCst))
}

fn wait_for(go: &AtomicUsize, round: usize) {
    while go.load(Ordering::Acquire) == round {
        core::hint::spin_loop();
    }
}

/// Round one's sender may still hold the waker slot (the receiver took the
/// value with `try_recv` after registering), and returns its thread.
fn received_while_sender_may_hold_slot(tag: u64) -> (Receiver<Payload>, thread::JoinHandle<()>) {
    let (s, mut r) = channel::<Payload>();
    assert!(poll_once(r.recv(), Waker::noop()).is_pending());
    let t = thread::spawn(move || s.send(Payload::new(tag)).map_err(drop).unwrap());
    let v = loop {
        match r.try_recv() {
            Ok(v) => break v,
            Err(TryRecvError::Empty) => thread::yield_now(),
            Err(TryRecvError::Closed) => panic!("closed without a value"),
        }
    };
    assert_eq!(v.tag, tag);
    (r, t)
}

/// The new round's sender: optionally polls `closed()` first (so that its
/// send reclaims or finds taken `tx_waker`), then sends; a value that comes
/// back is checked and dropped.
fn racing_send(mut s: Sender<Payload>, tag: u64, poll_closed: bool) {
    if poll_closed {
        let _ = poll_once(s.closed(), Waker::noop());
    }
    match s.send(Payload::new(tag)) {
        Ok(()) => {}
        Err(back) => assert_eq!(back.into_inner().tag, tag),
    }
}

// ---------------------------------------------------------------------------
// Stress

/// An earlier sender may hold the waker slot while the new round's sender
/// (with or without a `closed()` waker) sends and the receiver leaves in
/// one of several ways: at once, after a blocking receive, after a
/// `sender_with_unread`, or with a registration of its own. Exercises every
/// `Inner::free` site: the holder's release, the send's read-back and
/// `fetch_sub(VALUE)`, the receiver's departure and its release of
/// `tx_waker`.
#[test]
fn holder_send_and_receiver_departure_race() {
    let _w = watchdog("holder_send_and_receiver_departure_race");
    let ledger = Ledger::open();
    for i in 0..iterations(4_000) {
        let (go, round) = start_line();
        let i = i as u64;
        let (mut r, t1) = received_while_sender_may_hold_slot(i);
        let s2 = r.sender().expect("recycling after a received value");
        let t2 = thread::spawn(move || {
            wait_for(go, round);
            racing_send(s2, i + 1, i % 2 == 0);
        });
        go.fetch_add(1, Ordering::Release);
        match i % 4 {
            0 => drop(r),
            1 => {
                if let Ok(v) = r.recv_blocking() {
                    assert_eq!(v.tag, i + 1);
                }
                drop(r);
            }
            2 => {
                while !r.is_closed() {
                    thread::yield_now();
                }
                let (s3, unread) = r.sender_with_unread().expect("round over");
                if let Some(v) = unread {
                    assert_eq!(v.tag, i + 1);
                }
                // Leave with the third round's sender alive and then gone.
                drop(r);
                drop(s3);
            }
            _ => {
                // Register (or find the value), then leave.
                let _ = poll_once(r.recv(), Waker::noop());
                drop(r);
            }
        }
        t1.join().unwrap();
        t2.join().unwrap();
    }
    ledger.close();
}

/// The receiver is waiting (registered) and the sender waits in
/// `closed()`; the sender sends (or is dropped) while the receiver leaves:
/// the departure wins its registration back, then takes `tx_waker`.
#[test]
fn waiting_receiver_and_closed_sender_race_the_departure() {
    let _w = watchdog("waiting_receiver_and_closed_sender_race_the_departure");
    let ledger = Ledger::open();
    for i in 0..iterations(4_000) {
        let (go, round) = start_line();
        let i = i as u64;
        let (mut s, mut r) = channel::<Payload>();
        assert!(poll_once(r.recv(), Waker::noop()).is_pending());
        let with_closed = i % 2 == 0;
        if with_closed {
            assert!(poll_once(s.closed(), Waker::noop()).is_pending());
        }
        let t = thread::spawn(move || {
            wait_for(go, round);
            if i % 3 == 0 {
                drop(s);
            } else {
                racing_send(s, i, false);
            }
        });
        go.fetch_add(1, Ordering::Release);
        drop(r);
        t.join().unwrap();
    }
    ledger.close();
}

/// `closed()` is awaited (parked in `block_on`) while an earlier sender
/// may hold the receiver's slot and the receiver drops: the departure must
/// wake it (a lost wake-up hangs and the watchdog fires), and the send
/// afterwards gets its value back.
#[test]
fn closed_is_woken_by_the_departure_while_an_earlier_sender_holds_the_slot() {
    let _w = watchdog("closed_is_woken_by_the_departure_while_an_earlier_sender_holds_the_slot");
    let ledger = Ledger::open();
    for i in 0..iterations(2_000) {
        let i = i as u64;
        let (mut r, t1) = received_while_sender_may_hold_slot(i);
        let mut s2 = r.sender().unwrap();
        let t2 = thread::spawn(move || {
            block_on(s2.closed());
            let back = s2.send(Payload::new(i + 1)).unwrap_err();
            assert_eq!(back.into_inner().tag, i + 1);
        });
        if i % 2 == 0 {
            thread::yield_now();
        }
        drop(r);
        t1.join().unwrap();
        t2.join().unwrap();
    }
    ledger.close();
}

/// A long recycled ping-pong between two threads where the receiver uses
/// every receive (async registration then `try_recv`, blocking, time-out of
/// zero, `sender_with_unread`), so that rounds often start while the
/// previous sender still holds the slot; the receiver leaves mid-round at
/// the end. No value lost or duplicated, no hang, the block freed once.
#[test]
fn recycled_ping_pong_with_every_receive() {
    let _w = watchdog("recycled_ping_pong_with_every_receive");
    let ledger = Ledger::open();
    let (to_sender, senders) = std::sync::mpsc::channel::<Sender<Payload>>();
    let sender_thread = thread::spawn(move || {
        let mut tag = 0;
        for s in senders {
            tag += 1;
            racing_send(s, tag, tag % 5 == 0);
        }
    });
    let (first, mut r) = channel::<Payload>();
    to_sender.send(first).unwrap();
    let mut expect = 1;
    let rounds = iterations(20_000) as u64;
    while expect <= rounds {
        let got = match expect % 4 {
            0 => match poll_once(r.recv(), Waker::noop()) {
                Poll::Ready(v) => Some(v.expect("a value")),
                Poll::Pending => loop {
                    match r.try_recv() {
                        Ok(v) => break Some(v),
                        Err(TryRecvError::Empty) => thread::yield_now(),
                        Err(TryRecvError::Closed) => panic!("closed"),
                    }
                },
            },
            1 => Some(r.recv_blocking().expect("a value")),
            2 => loop {
                match r.recv_timeout(std::time::Duration::ZERO) {
                    Ok(v) => break Some(v),
                    Err(multishot::RecvTimeoutError::Timeout) => thread::yield_now(),
                    Err(multishot::RecvTimeoutError::Closed) => panic!("closed"),
                }
            },
            _ => {
                while !r.is_closed() {
                    thread::yield_now();
                }
                None
            }
        };
        let (next, unread) = r.sender_with_unread().expect("the round is over");
        let v = got.or(unread).expect("the value, by one way or the other");
        assert_eq!(v.tag, expect);
        expect += 1;
        to_sender.send(next).unwrap();
    }
    // The last round's send races the departure.
    drop(r);
    drop(to_sender);
    sender_thread.join().unwrap();
    ledger.close();
}
