//! A counting global allocator proves the recycled path allocates nothing.

use core::future::Future;
use core::pin::pin;
use core::task::{Context, Poll, Waker};
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

struct Counting;

thread_local! {
    static ALLOCS: Cell<usize> = const { Cell::new(0) };
}

// SAFETY: forwards to `System`, only counting calls on the current thread.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = ALLOCS.try_with(|c| c.set(c.get() + 1));
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocations_during(f: impl FnOnce()) -> usize {
    let before = ALLOCS.with(Cell::get);
    f();
    ALLOCS.with(Cell::get) - before
}

const MESSAGES: u64 = 1_000;

#[test]
fn zero_allocations_per_message_on_the_recycled_path() {
    let _w = testkit::watchdog("zero_allocations_per_message_on_the_recycled_path");
    let (first, mut r) = multishot::channel::<u64>();
    let mut cx = Context::from_waker(Waker::noop());
    let mut s = Some(first);
    let n = allocations_during(|| {
        for i in 0..MESSAGES {
            // registration path: pending, send, ready
            assert!(pin!(r.recv()).poll(&mut cx).is_pending());
            s.take().unwrap().send(i).unwrap();
            assert_eq!(pin!(r.recv()).poll(&mut cx), Poll::Ready(Ok(i)));
            s = Some(r.sender().unwrap());
        }
    });
    assert_eq!(n, 0, "{n} allocations for {MESSAGES} recycled messages");
}

#[test]
fn zero_allocations_per_blocking_receive() {
    let _w = testkit::watchdog("zero_allocations_per_blocking_receive");
    let (first, mut r) = multishot::channel::<u64>();
    first.send(0).unwrap();
    assert_eq!(r.recv_blocking(), Ok(0)); // makes this thread's parker once
    let n = allocations_during(|| {
        for i in 0..MESSAGES {
            let s = r.sender().unwrap();
            s.send(i).unwrap();
            assert_eq!(r.recv_blocking(), Ok(i));
        }
    });
    assert_eq!(n, 0, "{n} allocations for {MESSAGES} blocking receives");
}

#[test]
fn the_only_allocation_is_the_channel_itself() {
    let _w = testkit::watchdog("the_only_allocation_is_the_channel_itself");
    let n = allocations_during(|| {
        let (s, r) = multishot::channel::<u64>();
        drop((s, r));
    });
    assert_eq!(n, 1);
}
