//! multishot side by side with tokio::sync::oneshot, futures::channel::oneshot
//! and the `oneshot` crate. Groups are `multishot/<workload>`; `ours-*` rows
//! are compared with every peer row by `cargo xtask bench`.
//!
//! Peers cannot recycle, so every peer row creates a fresh channel per
//! message; ours is shown both recycled (its purpose) and fresh.
//!
//! Single-thread workloads only. The two-thread ping-pongs (spec workload 4)
//! are in `multishot_interleaved.rs`: criterion measures one row after the
//! other, and on this kind of virtual machine the cost of a cache-line
//! transfer between the two vCPUs drifts by up to 5x for minutes at a time,
//! so a ratio of two criterion rows measured the host as often as the
//! channel (one run: 4.35x against `oneshot` here, 0.99 interleaved).

use criterion::{Criterion, criterion_group, criterion_main};
use std::future::Future;
use std::hint::black_box;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

/// A waker whose clone costs what a real executor's does (an `Arc`
/// increment), unlike `Waker::noop`, so that cloning on every poll shows.
struct TaskWaker;
impl Wake for TaskWaker {
    fn wake(self: Arc<Self>) {}
}

fn task_waker() -> Waker {
    Waker::from(Arc::new(TaskWaker))
}

fn poll<F: Future>(fut: F, cx: &mut Context<'_>) -> Poll<F::Output> {
    pin!(fut).poll(cx)
}

fn poll_pinned<F: Future + Unpin>(fut: &mut F, cx: &mut Context<'_>) -> Poll<F::Output> {
    std::pin::Pin::new(fut).poll(cx)
}

/// (1) create-or-recycle, send, receive: the value is there at the first poll.
fn cycle(c: &mut Criterion) {
    let mut g = c.benchmark_group("multishot/cycle");
    let waker = task_waker();
    let mut cx = Context::from_waker(&waker);
    g.bench_function("ours-recycled", |b| {
        let (s, mut r) = multishot::channel::<u64>();
        drop(s);
        b.iter(|| {
            let s = r.sender().unwrap();
            s.send(black_box(1)).unwrap();
            assert!(poll(r.recv(), &mut cx).is_ready());
        });
    });
    g.bench_function("ours-fresh", |b| {
        b.iter(|| {
            let (s, mut r) = multishot::channel::<u64>();
            s.send(black_box(1)).unwrap();
            assert!(poll(r.recv(), &mut cx).is_ready());
        });
    });
    g.bench_function("tokio", |b| {
        b.iter(|| {
            let (s, mut r) = tokio::sync::oneshot::channel::<u64>();
            s.send(black_box(1)).unwrap();
            assert!(poll_pinned(&mut r, &mut cx).is_ready());
        });
    });
    g.bench_function("futures", |b| {
        b.iter(|| {
            let (s, mut r) = futures::channel::oneshot::channel::<u64>();
            s.send(black_box(1)).unwrap();
            assert!(poll_pinned(&mut r, &mut cx).is_ready());
        });
    });
    g.bench_function("oneshot", |b| {
        b.iter(|| {
            let (s, mut r) = oneshot::channel::<u64>();
            s.send(black_box(1)).unwrap();
            assert!(poll_pinned(&mut r, &mut cx).is_ready());
        });
    });
    g.finish();
}

/// (2) registration path: poll Pending, send, poll Ready.
/// (3) the same with `REPOLLS` same-waker re-polls before the send.
fn register(c: &mut Criterion) {
    for (name, repolls) in [("multishot/register", 0usize), ("multishot/repoll-x8", 8)] {
        let mut g = c.benchmark_group(name);
        let waker = task_waker();
        let mut cx = Context::from_waker(&waker);
        g.bench_function("ours-recycled", |b| {
            let (s, mut r) = multishot::channel::<u64>();
            drop(s);
            b.iter(|| {
                let s = r.sender().unwrap();
                for _ in 0..=repolls {
                    assert!(poll(r.recv(), &mut cx).is_pending());
                }
                s.send(black_box(1)).unwrap();
                assert!(poll(r.recv(), &mut cx).is_ready());
            });
        });
        g.bench_function("ours-fresh", |b| {
            b.iter(|| {
                let (s, mut r) = multishot::channel::<u64>();
                for _ in 0..=repolls {
                    assert!(poll(r.recv(), &mut cx).is_pending());
                }
                s.send(black_box(1)).unwrap();
                assert!(poll(r.recv(), &mut cx).is_ready());
            });
        });
        g.bench_function("tokio", |b| {
            b.iter(|| {
                let (s, mut r) = tokio::sync::oneshot::channel::<u64>();
                for _ in 0..=repolls {
                    assert!(poll_pinned(&mut r, &mut cx).is_pending());
                }
                s.send(black_box(1)).unwrap();
                assert!(poll_pinned(&mut r, &mut cx).is_ready());
            });
        });
        g.bench_function("futures", |b| {
            b.iter(|| {
                let (s, mut r) = futures::channel::oneshot::channel::<u64>();
                for _ in 0..=repolls {
                    assert!(poll_pinned(&mut r, &mut cx).is_pending());
                }
                s.send(black_box(1)).unwrap();
                assert!(poll_pinned(&mut r, &mut cx).is_ready());
            });
        });
        g.bench_function("oneshot", |b| {
            b.iter(|| {
                let (s, mut r) = oneshot::channel::<u64>();
                for _ in 0..=repolls {
                    assert!(poll_pinned(&mut r, &mut cx).is_pending());
                }
                s.send(black_box(1)).unwrap();
                assert!(poll_pinned(&mut r, &mut cx).is_ready());
            });
        });
        g.finish();
    }
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(40)
}

criterion_group! {
    name = benches;
    config = config();
    targets = cycle, register
}
criterion_main!(benches);
