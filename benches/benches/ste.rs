//! `ste`: a round trip to one dedicated thread, ours vs its peers.
//!
//! Groups (`cargo xtask bench` pairs every `ours` row with each peer row of
//! the same group and parameter):
//!
//! - `ste/round-trip`: run a trivial closure on the dedicated thread and get
//!   its result back. `ours` is `Thread::submit`; `mpsc` sends a boxed job
//!   over a std channel and gets the answer on a second one; `crossbeam`
//!   ping-pongs a value over two `bounded(1)` channels; `tokio-spawn_blocking`
//!   `block_on`s a `spawn_blocking` on a current-thread runtime;
//!   `thread-scope` spawns a scoped thread per call.
//! - `ste/submit-concurrent/N`: N threads doing round trips at once (time per
//!   round trip as each submitter sees it).
//!
//! The single-submitter round trip against mpsc and crossbeam is also
//! measured in interleaved rounds, quiet and loaded, with CPU time per round
//! trip (`ste_interleaved.rs`): criterion's figures here compare rows run
//! one after the other on a drifting machine, so prefer those ratios.
//!
//! Then a custom loop times every round trip individually and writes
//! median / p99 / p99.9 (and allocations per call) to the report fragment
//! `ste-latency`. With `--test`, everything runs briefly and asserts.

use criterion::{BenchmarkId, Criterion};
use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

// ---------------------------------------------------------------------------
// Allocation counting (enabled only while measuring allocations per call, so
// the timed runs pay one relaxed load per allocation at most).

struct Counting;

static COUNTING: AtomicBool = AtomicBool::new(false);
static ALLOCS: AtomicU64 = AtomicU64::new(0);

// SAFETY: forwards every call to `System` unchanged; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if COUNTING.load(Ordering::Relaxed) {
            ALLOCS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if COUNTING.load(Ordering::Relaxed) {
            ALLOCS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: same contract as ours.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

// ---------------------------------------------------------------------------
// The implementations: each is a dedicated thread answering `x + 1`. The
// single-submitter ones (ours, mpsc, crossbeam) are shared with the
// interleaved quiet / loaded comparison, `ste_interleaved.rs`.

#[path = "shared/ste_round_trip.rs"]
#[allow(dead_code)] // `finish` (the worker's CPU time) is for ste_interleaved
mod calls;
use calls::{Crossbeam, Mpsc, ours_call};

fn tokio_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
}

fn tokio_call(rt: &tokio::runtime::Runtime, x: u64) -> u64 {
    rt.block_on(async move { tokio::task::spawn_blocking(move || black_box(x) + 1).await })
        .unwrap()
}

fn scope_call(x: u64) -> u64 {
    std::thread::scope(|s| s.spawn(|| black_box(x) + 1).join().unwrap())
}

// ---------------------------------------------------------------------------
// Criterion groups.

fn round_trip(c: &mut Criterion) {
    let mut g = c.benchmark_group("ste/round-trip");
    {
        let thread = ste::Thread::new().unwrap();
        let mut x = 0;
        g.bench_function("ours", |b| {
            b.iter(|| {
                let y = ours_call(&thread, x);
                assert_eq!(y, x + 1);
                x = y;
            })
        });
        thread.join().unwrap();
    }
    {
        let mpsc = Mpsc::new();
        let mut x = 0;
        g.bench_function("mpsc", |b| {
            b.iter(|| {
                let y = mpsc.call(x);
                assert_eq!(y, x + 1);
                x = y;
            })
        });
    }
    {
        let cb = Crossbeam::new();
        let mut x = 0;
        g.bench_function("crossbeam", |b| {
            b.iter(|| {
                let y = cb.call(x);
                assert_eq!(y, x + 1);
                x = y;
            })
        });
    }
    {
        let rt = tokio_runtime();
        let mut x = 0;
        g.bench_function("tokio-spawn_blocking", |b| {
            b.iter(|| {
                let y = tokio_call(&rt, x);
                assert_eq!(y, x + 1);
                x = y;
            })
        });
    }
    {
        let mut x = 0;
        g.bench_function("thread-scope", |b| {
            b.iter(|| {
                let y = scope_call(x);
                assert_eq!(y, x + 1);
                x = y;
            })
        });
    }
    g.finish();
}

/// Runs `per_thread` round trips on each of `n` threads at once; returns the
/// wall time.
fn concurrently<C: Sync>(
    n: usize,
    per_thread: u64,
    ctx: &C,
    call: impl Fn(&C, u64) -> u64 + Sync,
) -> Duration {
    let start = std::sync::Barrier::new(n + 1);
    std::thread::scope(|s| {
        for _ in 0..n {
            s.spawn(|| {
                start.wait();
                let mut x = 0;
                for _ in 0..per_thread {
                    let y = call(ctx, x);
                    assert_eq!(y, x + 1);
                    x = y;
                }
            });
        }
        start.wait();
        let began = Instant::now();
        // Scope end joins the submitters.
        began
    })
    .elapsed()
}

/// A request/response service shared by several submitters: each request
/// carries where to send its answer.
struct SharedMpsc {
    jobs: Option<mpsc::Sender<Box<dyn FnOnce() + Send>>>,
    worker: Option<std::thread::JoinHandle<()>>,
}

impl SharedMpsc {
    fn new() -> Self {
        let (jobs, rx) = mpsc::channel::<Box<dyn FnOnce() + Send>>();
        let worker = std::thread::spawn(move || {
            for job in rx {
                job();
            }
        });
        SharedMpsc {
            jobs: Some(jobs),
            worker: Some(worker),
        }
    }
}

impl Drop for SharedMpsc {
    fn drop(&mut self) {
        drop(self.jobs.take());
        self.worker.take().unwrap().join().unwrap();
    }
}

struct SharedCrossbeam {
    pings: Option<crossbeam_channel::Sender<(u64, crossbeam_channel::Sender<u64>)>>,
    worker: Option<std::thread::JoinHandle<()>>,
}

impl SharedCrossbeam {
    fn new(capacity: usize) -> Self {
        let (pings, rx) =
            crossbeam_channel::bounded::<(u64, crossbeam_channel::Sender<u64>)>(capacity);
        let worker = std::thread::spawn(move || {
            for (x, reply) in rx {
                let _ = reply.send(black_box(x) + 1);
            }
        });
        SharedCrossbeam {
            pings: Some(pings),
            worker: Some(worker),
        }
    }
}

impl Drop for SharedCrossbeam {
    fn drop(&mut self) {
        drop(self.pings.take());
        self.worker.take().unwrap().join().unwrap();
    }
}

thread_local! {
    static MPSC_REPLY: (mpsc::Sender<u64>, mpsc::Receiver<u64>) = mpsc::channel();
    static CB_REPLY: (crossbeam_channel::Sender<u64>, crossbeam_channel::Receiver<u64>) = crossbeam_channel::bounded(1);
}

fn shared_mpsc_call(s: &SharedMpsc, x: u64) -> u64 {
    MPSC_REPLY.with(|(tx, rx)| {
        let tx = tx.clone();
        s.jobs
            .as_ref()
            .unwrap()
            .send(Box::new(move || tx.send(black_box(x) + 1).unwrap()))
            .unwrap();
        rx.recv().unwrap()
    })
}

fn shared_crossbeam_call(s: &SharedCrossbeam, x: u64) -> u64 {
    CB_REPLY.with(|(tx, rx)| {
        s.pings.as_ref().unwrap().send((x, tx.clone())).unwrap();
        rx.recv().unwrap()
    })
}

fn submit_concurrent(c: &mut Criterion) {
    let mut g = c.benchmark_group("ste/submit-concurrent");
    for n in [1usize, 2, 4] {
        let thread = ste::Thread::new().unwrap();
        g.bench_with_input(BenchmarkId::new("ours", n), &n, |b, &n| {
            b.iter_custom(|iters| concurrently(n, iters, &thread, ours_call))
        });
        thread.join().unwrap();
        let mpsc = SharedMpsc::new();
        g.bench_with_input(BenchmarkId::new("mpsc", n), &n, |b, &n| {
            b.iter_custom(|iters| concurrently(n, iters, &mpsc, shared_mpsc_call))
        });
        drop(mpsc);
        let cb = SharedCrossbeam::new(n);
        g.bench_with_input(BenchmarkId::new("crossbeam", n), &n, |b, &n| {
            b.iter_custom(|iters| concurrently(n, iters, &cb, shared_crossbeam_call))
        });
        drop(cb);
    }
    g.finish();
}

// ---------------------------------------------------------------------------
// Tail latency: every round trip timed on its own.

struct Stats {
    name: &'static str,
    samples: usize,
    median: Duration,
    p99: Duration,
    p999: Duration,
    max: Duration,
    allocs_per_call: f64,
}

fn measure(name: &'static str, samples: usize, mut call: impl FnMut(u64) -> u64) -> Stats {
    // Warm up (thread parkers, channel blocks, runtime threads).
    let mut x = 0;
    for _ in 0..samples.min(2_000) {
        let y = call(x);
        assert_eq!(y, x + 1, "{name}: wrong answer");
        x = y;
    }
    // Allocations per call, counted over a short run.
    let probe = 1_000.min(samples) as u64;
    ALLOCS.store(0, Ordering::SeqCst);
    COUNTING.store(true, Ordering::SeqCst);
    for _ in 0..probe {
        x = call(x);
    }
    COUNTING.store(false, Ordering::SeqCst);
    let allocs_per_call = ALLOCS.load(Ordering::SeqCst) as f64 / probe as f64;

    let mut times = Vec::with_capacity(samples);
    for _ in 0..samples {
        let t = Instant::now();
        let y = call(x);
        let dt = t.elapsed();
        assert_eq!(y, x + 1, "{name}: wrong answer");
        x = y;
        times.push(dt);
    }
    times.sort_unstable();
    let at = |q: f64| times[((times.len() as f64 * q) as usize).min(times.len() - 1)];
    Stats {
        name,
        samples,
        median: at(0.5),
        p99: at(0.99),
        p999: at(0.999),
        max: *times.last().unwrap(),
        allocs_per_call,
    }
}

fn fmt(d: Duration) -> String {
    let ns = d.as_nanos();
    if ns >= 10_000 {
        format!("{:.1} µs", ns as f64 / 1000.0)
    } else {
        format!("{ns} ns")
    }
}

fn latency_report(smoke: bool) {
    let n = if smoke { 500 } else { 200_000 };
    let slow = if smoke { 200 } else { 50_000 };
    let mut rows = Vec::new();
    {
        let thread = ste::Thread::new().unwrap();
        rows.push(measure("ours", n, |x| ours_call(&thread, x)));
        thread.join().unwrap();
    }
    {
        let m = Mpsc::new();
        rows.push(measure("mpsc", n, |x| m.call(x)));
    }
    {
        let cb = Crossbeam::new();
        rows.push(measure("crossbeam", n, |x| cb.call(x)));
    }
    {
        let rt = tokio_runtime();
        rows.push(measure("tokio-spawn_blocking", slow, |x| {
            tokio_call(&rt, x)
        }));
    }
    rows.push(measure("thread-scope", slow, scope_call));

    let ours = &rows[0];
    assert_eq!(
        ours.allocs_per_call, 0.0,
        "ours must not allocate per submit"
    );

    let mut md = String::new();
    md.push_str("## ste: round-trip latency, each round trip timed on its own\n\n");
    md.push_str(
        "A trivial closure run on a dedicated thread and its result brought back, timed one by \
         one with `Instant::now()` (so each figure includes ~20-40 ns of clock overhead). \
         Ratios are ours / peer.\n\n",
    );
    md.push_str("| impl | samples | median | p99 | p99.9 | max | allocs/call | median ours/peer | p99.9 ours/peer |\n");
    md.push_str("|---|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    for r in &rows {
        let ratio = |a: Duration, b: Duration| format!("{:.2}", a.as_secs_f64() / b.as_secs_f64());
        let (rm, rt) = if r.name == "ours" {
            ("-".to_string(), "-".to_string())
        } else {
            (ratio(ours.median, r.median), ratio(ours.p999, r.p999))
        };
        md.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {:.2} | {} | {} |\n",
            r.name,
            r.samples,
            fmt(r.median),
            fmt(r.p99),
            fmt(r.p999),
            fmt(r.max),
            r.allocs_per_call,
            rm,
            rt
        ));
    }
    println!("\n{md}");
    if !smoke {
        let path = benches::report_fragment_path("ste-latency");
        std::fs::write(&path, &md).unwrap();
        println!("wrote {}", path.display());
    }
}

fn main() {
    let smoke = benches::smoke_test_mode();
    let mut c = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .configure_from_args();
    round_trip(&mut c);
    submit_concurrent(&mut c);
    c.final_summary();
    latency_report(smoke);
}
