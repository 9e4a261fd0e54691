//! multishot side by side with tokio::sync::oneshot, futures::channel::oneshot
//! and the `oneshot` crate. Groups are `multishot/<workload>`; `ours-*` rows
//! are compared with every peer row by `cargo xtask bench`.
//!
//! Peers cannot recycle, so every peer row creates a fresh channel per
//! message; ours is shown both recycled (its purpose) and fresh.

use criterion::{Criterion, criterion_group, criterion_main};
use std::future::Future;
use std::hint::black_box;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};

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

/// How both sides of a ping-pong wait for their next message.
#[derive(Clone, Copy)]
enum Wait {
    /// Executor-style tasks, woken through their wakers
    /// ([`benches::spin_block_on`], the same executor for every channel).
    Task,
    /// Plain threads blocking in the channel's own blocking receive.
    Blocking,
}

/// (4) request/response between two threads. Each message carries the
/// sender for the next message in the other direction, so the channel under
/// test is the only synchronisation. Both sides wait as `wait` says. Returns
/// the time for `iters` round trips.
mod pingpong {
    use super::*;
    use benches::spin_block_on;

    pub struct OursReq(u64, multishot::Sender<OursRep>);
    pub struct OursRep(u64, multishot::Sender<OursReq>);

    pub fn ours(iters: u64, wait: super::Wait) -> Duration {
        let (req_s, mut req_r) = multishot::channel::<OursReq>();
        let (rep_s, mut rep_r) = multishot::channel::<OursRep>();
        let server = std::thread::spawn(move || {
            loop {
                let got = match wait {
                    super::Wait::Task => spin_block_on(req_r.recv()),
                    super::Wait::Blocking => req_r.recv_blocking(),
                };
                let Ok(OursReq(n, reply)) = got else { break };
                let next = req_r.sender().unwrap();
                if reply.send(OursRep(n + 1, next)).is_err() {
                    break;
                }
            }
        });
        let (mut req, mut rep) = (req_s, rep_s);
        let start = Instant::now();
        for n in 0..iters {
            assert!(req.send(OursReq(n, rep)).is_ok());
            let got = match wait {
                super::Wait::Task => spin_block_on(rep_r.recv()),
                super::Wait::Blocking => rep_r.recv_blocking(),
            };
            let Ok(OursRep(m, next)) = got else {
                panic!("server gone")
            };
            assert_eq!(m, n + 1);
            req = next;
            rep = rep_r.sender().unwrap();
        }
        let took = start.elapsed();
        drop(req);
        server.join().unwrap();
        took
    }

    pub struct TokioReq(u64, tokio::sync::oneshot::Sender<TokioRep>);
    pub struct TokioRep(u64, tokio::sync::oneshot::Sender<TokioReq>);

    pub fn tokio(iters: u64, wait: super::Wait) -> Duration {
        let (req_s, req_r) = tokio::sync::oneshot::channel::<TokioReq>();
        let server = std::thread::spawn(move || {
            let mut req_r = req_r;
            loop {
                let got = match wait {
                    super::Wait::Task => spin_block_on(req_r),
                    super::Wait::Blocking => req_r.blocking_recv(),
                };
                let Ok(TokioReq(n, reply)) = got else { break };
                let (next_s, next_r) = tokio::sync::oneshot::channel();
                req_r = next_r;
                if reply.send(TokioRep(n + 1, next_s)).is_err() {
                    break;
                }
            }
        });
        let mut req = req_s;
        let start = Instant::now();
        for n in 0..iters {
            let (rep_s, rep_r) = tokio::sync::oneshot::channel();
            assert!(req.send(TokioReq(n, rep_s)).is_ok());
            let got = match wait {
                super::Wait::Task => spin_block_on(rep_r),
                super::Wait::Blocking => rep_r.blocking_recv(),
            };
            let Ok(TokioRep(m, next)) = got else {
                panic!("server gone")
            };
            assert_eq!(m, n + 1);
            req = next;
        }
        let took = start.elapsed();
        drop(req);
        server.join().unwrap();
        took
    }

    pub struct OneshotReq(u64, oneshot::Sender<OneshotRep>);
    pub struct OneshotRep(u64, oneshot::Sender<OneshotReq>);

    pub fn oneshot(iters: u64, wait: super::Wait) -> Duration {
        let (req_s, req_r) = oneshot::channel::<OneshotReq>();
        let server = std::thread::spawn(move || {
            let mut req_r = req_r;
            loop {
                let got = match wait {
                    super::Wait::Task => spin_block_on(req_r).map_err(|_| ()),
                    super::Wait::Blocking => req_r.recv().map_err(|_| ()),
                };
                let Ok(OneshotReq(n, reply)) = got else { break };
                let (next_s, next_r) = oneshot::channel();
                req_r = next_r;
                if reply.send(OneshotRep(n + 1, next_s)).is_err() {
                    break;
                }
            }
        });
        let mut req = req_s;
        let start = Instant::now();
        for n in 0..iters {
            let (rep_s, rep_r) = oneshot::channel();
            assert!(req.send(OneshotReq(n, rep_s)).is_ok());
            let got = match wait {
                super::Wait::Task => spin_block_on(rep_r).map_err(|_| ()),
                super::Wait::Blocking => rep_r.recv().map_err(|_| ()),
            };
            let Ok(OneshotRep(m, next)) = got else {
                panic!("server gone")
            };
            assert_eq!(m, n + 1);
            req = next;
        }
        let took = start.elapsed();
        drop(req);
        server.join().unwrap();
        took
    }

    pub struct FuturesReq(u64, futures::channel::oneshot::Sender<FuturesRep>);
    pub struct FuturesRep(u64, futures::channel::oneshot::Sender<FuturesReq>);

    /// futures' oneshot has no blocking receive, so it appears only in the
    /// task-style group.
    pub fn futures(iters: u64) -> Duration {
        let (req_s, req_r) = futures::channel::oneshot::channel::<FuturesReq>();
        let server = std::thread::spawn(move || {
            let mut req_r = req_r;
            while let Ok(FuturesReq(n, reply)) = spin_block_on(req_r) {
                let (next_s, next_r) = futures::channel::oneshot::channel();
                req_r = next_r;
                if reply.send(FuturesRep(n + 1, next_s)).is_err() {
                    break;
                }
            }
        });
        let mut req = req_s;
        let start = Instant::now();
        for n in 0..iters {
            let (rep_s, rep_r) = futures::channel::oneshot::channel();
            assert!(req.send(FuturesReq(n, rep_s)).is_ok());
            let Ok(FuturesRep(m, next)) = spin_block_on(rep_r) else {
                panic!("server gone")
            };
            assert_eq!(m, n + 1);
            req = next;
        }
        let took = start.elapsed();
        drop(req);
        server.join().unwrap();
        took
    }
}

fn ping_pong(c: &mut Criterion) {
    let mut g = c.benchmark_group("multishot/pingpong-task");
    g.bench_function("ours-recycled", |b| {
        b.iter_custom(|n| pingpong::ours(n, Wait::Task))
    });
    g.bench_function("tokio", |b| {
        b.iter_custom(|n| pingpong::tokio(n, Wait::Task))
    });
    g.bench_function("futures", |b| b.iter_custom(pingpong::futures));
    g.bench_function("oneshot", |b| {
        b.iter_custom(|n| pingpong::oneshot(n, Wait::Task))
    });
    g.finish();

    let mut g = c.benchmark_group("multishot/pingpong-blocking");
    g.bench_function("ours-recycled", |b| {
        b.iter_custom(|n| pingpong::ours(n, Wait::Blocking))
    });
    g.bench_function("tokio", |b| {
        b.iter_custom(|n| pingpong::tokio(n, Wait::Blocking))
    });
    g.bench_function("oneshot", |b| {
        b.iter_custom(|n| pingpong::oneshot(n, Wait::Blocking))
    });
    g.finish();
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
    targets = cycle, register, ping_pong
}
criterion_main!(benches);
