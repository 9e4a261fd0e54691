//! `submit_async`: a borrowing future polled on the worker, sound even when
//! the returned future is leaked between polls.

mod common;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll, Wake, Waker};

/// Returns `Pending` once (waking at once), then `Ready`.
struct YieldOnce(bool);

impl Future for YieldOnce {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.0 {
            Poll::Ready(())
        } else {
            self.0 = true;
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    }
}

struct CountingWaker(AtomicUsize);

impl Wake for CountingWaker {
    fn wake(self: Arc<Self>) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
    fn wake_by_ref(self: &Arc<Self>) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

#[test]
fn borrowing_future_runs_on_the_worker() {
    let _w = common::watchdog("borrowing_future_runs_on_the_worker");
    let thread = ste::Thread::new().unwrap();
    let mut log = Vec::new();
    let out = sync_core::future::block_on(thread.submit_async(async {
        log.push(ste::Tag::current());
        YieldOnce(false).await;
        log.push(ste::Tag::current());
        String::from("done")
    }))
    .unwrap();
    assert_eq!(out, "done");
    assert_eq!(log, [Some(thread.tag()); 2]);
    thread.join().unwrap();
}

#[test]
fn the_callers_waker_is_used() {
    let _w = common::watchdog("the_callers_waker_is_used");
    let thread = ste::Thread::new().unwrap();
    let waker_state = Arc::new(CountingWaker(AtomicUsize::new(0)));
    let waker = Waker::from(waker_state.clone());
    let mut cx = Context::from_waker(&waker);
    {
        let mut fut = std::pin::pin!(thread.submit_async(async {
            YieldOnce(false).await;
            vec![1u8, 2, 3]
        }));
        assert!(fut.as_mut().poll(&mut cx).is_pending());
        assert_eq!(waker_state.0.load(Ordering::SeqCst), 1);
        match fut.as_mut().poll(&mut cx) {
            Poll::Ready(Ok(v)) => assert_eq!(v, [1, 2, 3]),
            other => panic!("unexpected {other:?}"),
        }
    }
    thread.join().unwrap();
}

#[test]
fn panicking_future_reports_the_panic_and_worker_survives() {
    let _w = common::watchdog("panicking_future_reports_the_panic_and_worker_survives");
    let thread = ste::Thread::new().unwrap();
    let err = sync_core::future::block_on(thread.submit_async(async {
        YieldOnce(false).await;
        panic!("in the future");
    }))
    .unwrap_err();
    assert_eq!(err.into_panic().unwrap().message(), Some("in the future"));
    assert_eq!(thread.submit(|| 3).unwrap(), 3);
    thread.join().unwrap();
}

/// The future is polled once (the inner future is now suspended), then its
/// memory is freed *without* running its destructor, which is what a leak
/// followed by reuse of the memory looks like to the worker. The worker must
/// never touch it again: Miri reports any access to the freed block.
#[test]
fn leaked_between_polls_is_never_touched_again() {
    let _w = common::watchdog("leaked_between_polls_is_never_touched_again");
    let thread = ste::Thread::new().unwrap();
    let waker = Waker::noop();
    let mut cx = Context::from_waker(waker);
    for _ in 0..common::iters(20, 2) {
        let mut counter = 0u32;
        let fut = Box::pin(thread.submit_async(async {
            counter += 1;
            YieldOnce(false).await;
            unreachable!("never polled again");
        }));
        // SAFETY: the box's contents are never moved: they are polled in
        // place through `raw` and then freed in place.
        let raw = Box::into_raw(unsafe { Pin::into_inner_unchecked(fut) });
        // SAFETY: `raw` is the live boxed future; it does not move.
        let polled = unsafe { Pin::new_unchecked(&mut *raw) }.poll(&mut cx);
        assert!(polled.is_pending());
        // "Leak" it: free the memory, no destructor.
        // SAFETY: `raw` came from a `Box` of this type; dropping is skipped
        // on purpose (the Pin drop guarantee is what a leak breaks).
        unsafe { std::alloc::dealloc(raw.cast(), std::alloc::Layout::for_value(&*raw)) };
        assert_eq!(counter, 1);
        // The worker keeps working and never looks back.
        assert_eq!(thread.submit(|| 5).unwrap(), 5);
    }
    thread.join().unwrap();
}

#[test]
#[cfg_attr(miri, ignore)] // leaks on purpose
fn mem_forget_between_polls() {
    let _w = common::watchdog("mem_forget_between_polls");
    let thread = ste::Thread::new().unwrap();
    let mut cx = Context::from_waker(Waker::noop());
    let mut fut = Box::pin(thread.submit_async(async {
        YieldOnce(false).await;
        unreachable!()
    }));
    assert!(fut.as_mut().poll(&mut cx).is_pending());
    std::mem::forget(fut);
    assert_eq!(thread.submit(|| 5).unwrap(), 5);
    thread.join().unwrap();
}

#[test]
fn dropped_while_pending_drops_the_inner_future_once() {
    let _w = common::watchdog("dropped_while_pending_drops_the_inner_future_once");
    static DROPS: AtomicUsize = AtomicUsize::new(0);
    struct Guard;
    impl Drop for Guard {
        fn drop(&mut self) {
            DROPS.fetch_add(1, Ordering::SeqCst);
        }
    }
    let thread = ste::Thread::new().unwrap();
    let mut cx = Context::from_waker(Waker::noop());
    {
        let mut fut = std::pin::pin!(thread.submit_async(async {
            let _g = Guard;
            YieldOnce(false).await;
        }));
        assert!(fut.as_mut().poll(&mut cx).is_pending());
    }
    assert_eq!(DROPS.load(Ordering::SeqCst), 1);
    thread.join().unwrap();
}
