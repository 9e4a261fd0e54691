//! `thread_aware`: two pinned threads incrementing a counter, in interleaved
//! rounds (quiet and loaded), through a `PerCore<AtomicU64>` and three
//! references.
//!
//! Every design runs two threads, pinned to processors 0 and 1 (the first
//! two the process may run on), each incrementing "its" counter with
//! `fetch_add(1, Relaxed)` in a loop until the run's deadline. The figure is
//! wall time per increment over both threads (lower is better), and the CPU
//! time of both threads per increment.
//!
//! - **ours-percore**: one `PerCore<AtomicU64>`; each thread relocates its
//!   clone of the handle to its own processor's affinity once, then
//!   increments through the handle (`Deref`): its own instance, on its own
//!   cache line.
//! - **shared-arc**: one `Arc<AtomicU64>` both threads increment: the cache
//!   line bounces between the cores on every increment.
//! - **unpadded**: two `AtomicU64`s side by side (one cache line): no
//!   logical sharing, but false sharing.
//! - **padded-raw**: two `CachePadded<AtomicU64>`: the hardware limit.
//!
//! Goal (spec/thread_aware.md): ours at least 2.5x the shared atomic's
//! throughput (ours / shared-arc time at most 0.40) and within 1.2x of the
//! raw padded atomics (ours / padded-raw time at most 1.20). The harness
//! reports "per round trip": read it as "per increment" here.

use benches::interleaved::{Design, Measurement, Settings, compare, round_trips, thread_cpu};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};
use sync_core::CachePadded;
use thread_aware::{PerCore, ThreadAware, create_manual_affinities};

/// The first two processors this process may run on.
fn two_cpus() -> Option<[usize; 2]> {
    // SAFETY: `set` is a plain bitmask the call fills in; its size is passed.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: pid 0 is the calling thread; `set` is valid for writes.
    let rc = unsafe { libc::sched_getaffinity(0, std::mem::size_of_val(&set), &mut set) };
    assert_eq!(rc, 0, "sched_getaffinity failed");
    // SAFETY: reading bits of an initialised set.
    let cpus: Vec<usize> = (0..libc::CPU_SETSIZE as usize)
        .filter(|&c| unsafe { libc::CPU_ISSET(c, &set) })
        .take(2)
        .collect();
    (cpus.len() == 2).then(|| [cpus[0], cpus[1]])
}

fn pin(cpu: usize) {
    // SAFETY: as in `two_cpus`.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `cpu` is below CPU_SETSIZE (it came from sched_getaffinity).
    unsafe { libc::CPU_SET(cpu, &mut set) };
    // SAFETY: pid 0 is the calling thread; `set` is initialised.
    let rc = unsafe { libc::sched_setaffinity(0, std::mem::size_of_val(&set), &set) };
    assert_eq!(rc, 0, "sched_setaffinity({cpu}) failed");
}

/// Runs `work(side, stop)` on two threads pinned to `cpus`, for the run's
/// deadline (timed on the calling thread), and returns the total count and
/// both threads' CPU time.
fn two_pinned(
    cpus: [usize; 2],
    max: u64,
    work: impl Fn(usize, &AtomicBool) -> u64 + Send + Sync + 'static,
) -> Measurement {
    let work = Arc::new(work);
    let stop = Arc::new(AtomicBool::new(false));
    let ready = Arc::new(Barrier::new(3));
    let threads: Vec<_> = (0..2)
        .map(|side| {
            let (work, stop, ready) = (Arc::clone(&work), Arc::clone(&stop), Arc::clone(&ready));
            std::thread::spawn(move || {
                pin(cpus[side]);
                ready.wait();
                let cpu = thread_cpu();
                let n = work(side, &stop);
                (n, thread_cpu() - cpu)
            })
        })
        .collect();
    ready.wait();
    let start = Instant::now();
    // The harness's deadline lives on this thread: tick until it passes.
    for _ in round_trips(max.min(1_000_000)) {
        std::thread::sleep(Duration::from_micros(200));
    }
    stop.store(true, Ordering::Relaxed);
    let mut trips = 0;
    let mut cpu = Duration::ZERO;
    for t in threads {
        let (n, c) = t.join().unwrap();
        trips += n;
        cpu += c;
    }
    Measurement {
        trips,
        wall: start.elapsed() * 2, // two threads: wall time per increment per thread
        cpu,
    }
}

/// Increments `counter` until told to stop, checking the flag every 256.
fn hammer(counter: &AtomicU64, stop: &AtomicBool) -> u64 {
    let mut n = 0;
    while !stop.load(Ordering::Relaxed) {
        for _ in 0..256 {
            counter.fetch_add(1, Ordering::Relaxed);
        }
        n += 256;
    }
    n
}

fn main() {
    let settings = Settings::from_env(10, 100);
    let Some(cpus) = two_cpus() else {
        eprintln!("thread_aware_interleaved: needs two processors; skipped");
        return;
    };
    let affinities = create_manual_affinities(&[2]);

    let per_core = PerCore::new(|| AtomicU64::new(0));
    let ours = Design::new("ours-percore", move |max| {
        let handles: Vec<_> = (0..2)
            .map(|side| per_core.clone().relocated(affinities[0], affinities[side]))
            .collect();
        let handles = Arc::new(handles);
        two_pinned(cpus, max, move |side, stop| hammer(&handles[side], stop))
    });
    let shared = Design::new("shared-arc", move |max| {
        let counter = Arc::new(AtomicU64::new(0));
        two_pinned(cpus, max, move |_, stop| hammer(&counter, stop))
    });
    let unpadded = Design::new("unpadded", move |max| {
        let counters = Arc::new([AtomicU64::new(0), AtomicU64::new(0)]);
        two_pinned(cpus, max, move |side, stop| hammer(&counters[side], stop))
    });
    let padded = Design::new("padded-raw", move |max| {
        let counters = Arc::new([
            CachePadded::new(AtomicU64::new(0)),
            CachePadded::new(AtomicU64::new(0)),
        ]);
        two_pinned(cpus, max, move |side, stop| hammer(&counters[side], stop))
    });

    let md = compare(
        "thread_aware: two pinned threads incrementing a counter (ns per increment per thread)",
        &[ours, shared, unpadded, padded],
        &settings,
    );
    println!("{md}");
    if !settings.smoke {
        std::fs::write(
            benches::report_fragment_path("thread_aware_interleaved"),
            md,
        )
        .expect("writing the report fragment");
    } else {
        eprintln!("thread_aware_interleaved: smoke test passed");
    }
}
