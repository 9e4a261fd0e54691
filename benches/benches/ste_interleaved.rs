//! `ste`'s round trip to its dedicated thread against its peers, measured in
//! interleaved rounds, quiet and loaded, wall time and CPU time of both
//! threads (`benches::interleaved`, whose documentation says how and why).
//!
//! Rows (the bodies are shared with the criterion suite, `ste.rs`):
//! - ours: `Thread::submit` of a closure borrowing `x`, answering `x + 1`;
//! - ours, `x` moved in: the same with a `move` closure, so that the worker
//!   gets `x` with the task the way the peers get it with the message (a
//!   borrowed `x` is one more cache line the worker must fetch from the
//!   caller's core: a dependent miss the peers do not make);
//! - mpsc: a boxed job over a std channel to a dedicated thread, the answer
//!   back over a second one;
//! - crossbeam: `x` over a `bounded(1)` channel, `x + 1` back over another.
//!
//! "Both sides" are the submitting thread and the worker. The worker's CPU
//! time: for ours, read by closures submitted just before and just after the
//! timed loop; for mpsc and crossbeam, by the worker itself at the start and
//! the end of its loop (returned when it exits). Every run starts a fresh
//! worker, so the worker's idle waiting between round trips is counted, and
//! so is one untimed round trip that makes sure the worker runs before the
//! clock starts.
//!
//! Writes `target/bench-report.d/ste-interleaved.md`. `BENCH_ROUNDS` and
//! `BENCH_RUN_MS` shrink a run while developing; `--test` runs every row
//! once, briefly.

#[path = "shared/ste_round_trip.rs"]
mod calls;
use benches::interleaved::{
    Design, Measurement, Settings, compare, placement, round_trips, thread_cpu,
};
use calls::{Crossbeam, Mpsc, ours_call, ours_call_moved};
use std::time::{Duration, Instant};

/// Times calls of `call` on this thread (at most `iters`, until the
/// harness's deadline), after one untimed call (the worker is then
/// running): (calls, wall, this thread's CPU).
fn timed(iters: u64, mut call: impl FnMut(u64) -> u64) -> (u64, Duration, Duration) {
    let mut x = call(0);
    assert_eq!(x, 1);
    let mut trips = round_trips(iters);
    let cpu = thread_cpu();
    let start = Instant::now();
    for _ in &mut trips {
        let y = call(x);
        assert_eq!(y, x + 1);
        placement::sampled(x);
        x = y;
    }
    (trips.done(), start.elapsed(), thread_cpu() - cpu)
}

fn ours(iters: u64) -> Measurement {
    ours_with(iters, ours_call)
}

fn ours_moved(iters: u64) -> Measurement {
    ours_with(iters, ours_call_moved)
}

/// Runs `call` on a fresh worker, counting the worker's CPU time too.
fn ours_with(iters: u64, call: impl Fn(&ste::Thread, u64) -> u64) -> Measurement {
    let thread = ste::Thread::new().unwrap();
    let worker_cpu = thread.submit(thread_cpu).unwrap();
    let (trips, wall, cpu) = timed(iters, |x| call(&thread, x));
    let worker_cpu = thread.submit(thread_cpu).unwrap() - worker_cpu;
    thread.join().unwrap();
    Measurement {
        trips,
        wall,
        cpu: cpu + worker_cpu,
    }
}

fn mpsc(iters: u64) -> Measurement {
    let m = Mpsc::new();
    let (trips, wall, cpu) = timed(iters, |x| m.call(x));
    Measurement {
        trips,
        wall,
        cpu: cpu + m.finish(),
    }
}

fn crossbeam(iters: u64) -> Measurement {
    let cb = Crossbeam::new();
    let (trips, wall, cpu) = timed(iters, |x| cb.call(x));
    Measurement {
        trips,
        wall,
        cpu: cpu + cb.finish(),
    }
}

fn main() {
    // 4 rows x (25 quiet + 25 loaded rounds + 2 warm-up runs) x 0.5 s:
    // under two minutes. 25 rounds, not 15: in a loaded round the CPU per
    // round trip of every design depends on whether the scheduler put its
    // two threads on one core (3-4 µs) or on two (1-2 µs), so one design's
    // per-round ratios are bimodal, and a median of 15 moved by 20% from
    // run to run.
    let settings = Settings::from_env(25, 500);
    let designs = [
        Design::new("ours (submit)", ours),
        Design::new("ours (submit, x moved in)", ours_moved).also_ours(),
        Design::new("mpsc", mpsc),
        Design::new("crossbeam bounded(1)", crossbeam),
    ];
    let mut md = String::from("## ste: round trip to the dedicated thread, interleaved rounds\n\n");
    md += &compare(
        "`submit` round trip vs request/response to a dedicated thread",
        &designs,
        &settings,
    );
    if !settings.smoke {
        std::fs::write(benches::report_fragment_path("ste-interleaved"), md).unwrap();
    }
}
