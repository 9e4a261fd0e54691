//! Allocations per message (counted, not timed) for multishot and its peers,
//! appended to `target/bench-report.md` by `cargo xtask bench`.

use std::alloc::{GlobalAlloc, Layout, System};
use std::future::Future;
use std::pin::pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll, Waker};

struct Counting;
static ALLOCS: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards to `System`, counting calls.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
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

fn per_message(messages: usize, f: impl FnOnce(usize)) -> f64 {
    let before = ALLOCS.load(Ordering::Relaxed);
    f(messages);
    (ALLOCS.load(Ordering::Relaxed) - before) as f64 / messages as f64
}

fn poll<F: Future>(fut: F, cx: &mut Context<'_>) -> Poll<F::Output> {
    pin!(fut).poll(cx)
}

fn main() {
    let messages = if benches::smoke_test_mode() {
        100
    } else {
        100_000
    };
    let mut cx = Context::from_waker(Waker::noop());
    let (first, mut r) = multishot::channel::<u64>();
    drop(first);
    let rows = [
        (
            "ours-recycled",
            per_message(messages, |n| {
                for i in 0..n as u64 {
                    let s = r.sender().unwrap();
                    assert!(poll(r.recv(), &mut cx).is_pending());
                    s.send(i).unwrap();
                    assert_eq!(poll(r.recv(), &mut cx), Poll::Ready(Ok(i)));
                }
            }),
        ),
        (
            "ours-fresh",
            per_message(messages, |n| {
                for i in 0..n as u64 {
                    let (s, mut r) = multishot::channel::<u64>();
                    s.send(i).unwrap();
                    assert_eq!(r.try_recv(), Ok(i));
                }
            }),
        ),
        (
            "tokio",
            per_message(messages, |n| {
                for i in 0..n as u64 {
                    let (s, mut r) = tokio::sync::oneshot::channel::<u64>();
                    s.send(i).unwrap();
                    assert_eq!(r.try_recv(), Ok(i));
                }
            }),
        ),
        (
            "futures",
            per_message(messages, |n| {
                for i in 0..n as u64 {
                    let (s, mut r) = futures::channel::oneshot::channel::<u64>();
                    s.send(i).unwrap();
                    assert_eq!(r.try_recv(), Ok(Some(i)));
                }
            }),
        ),
        (
            "oneshot",
            per_message(messages, |n| {
                for i in 0..n as u64 {
                    let (s, r) = oneshot::channel::<u64>();
                    s.send(i).unwrap();
                    assert_eq!(r.try_recv().ok(), Some(i));
                }
            }),
        ),
    ];
    assert_eq!(rows[0].1, 0.0, "the recycled path must not allocate");
    let mut md = String::from(
        "## multishot: allocations per message\n\n\
         Counted with a global allocator over one create-or-recycle, send, receive cycle.\n\n\
         | implementation | allocations / message |\n|---|---:|\n",
    );
    for (name, allocs) in rows {
        md.push_str(&format!("| {name} | {allocs:.2} |\n"));
    }
    println!("{md}");
    if !benches::smoke_test_mode() {
        std::fs::write(benches::report_fragment_path("multishot-allocs"), md).unwrap();
    }
}
