//! Shared helpers for the bench suites in `benches/`.

use std::path::PathBuf;

pub mod interleaved;
pub mod pool;
pub mod steal;

/// Where suites put Markdown fragments that `cargo xtask bench` appends to
/// `target/bench-report.md` (for figures criterion cannot produce: tail
/// percentiles, allocation counts, the [`interleaved`] quiet / loaded
/// comparisons).
pub fn report_fragment_path(name: &str) -> PathBuf {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let dir = root.join("target/bench-report.d");
    let _ = std::fs::create_dir_all(&dir);
    dir.join(format!("{name}.md"))
}

/// The environment variable `name` as a number, `None` if it is not set.
///
/// # Panics
///
/// If it is set to something that is not a non-negative integer: a knob
/// such as `BENCH_ROUNDS=1O` must not silently run the default instead.
pub fn env_u64(name: &str) -> Option<u64> {
    let value = std::env::var(name).ok()?;
    match value.trim().parse() {
        Ok(n) => Some(n),
        Err(e) => panic!("{name}={value:?}: not a non-negative integer ({e})"),
    }
}

/// The next number of a SplitMix64 sequence whose state is `state`: the
/// seeded, reproducible randomness of the suites (shuffled rounds, bootstrap
/// resamples). Not for anything that needs unpredictability.
pub fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The median (upper median for an even count) of `v`; NaN for none. The
/// one median of the suites: reports give medians of rounds and of
/// per-round ratios.
pub fn median(v: impl IntoIterator<Item = f64>) -> f64 {
    let mut v: Vec<f64> = v.into_iter().collect();
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

/// Whether the bench binary was started as a smoke test
/// (`cargo bench -- --test`): run each workload once, assert, measure nothing.
pub fn smoke_test_mode() -> bool {
    std::env::args().any(|a| a == "--test")
}

/// A one-task, busy-waiting executor for the task-style ping-pong rows:
/// polls `future`, and while it is pending waits for its waker without ever
/// sleeping: it re-checks the waker's notification token in a spin loop
/// (`SPIN_CHECKS` checks, tens of microseconds) and from then on yields the
/// thread between checks. It re-polls the future only after its waker was
/// called.
///
/// Why not park (`sync_core::future::block_on`): on this kind of virtual
/// machine a futex wake-up of a parked thread costs 10-20 µs and swings by
/// ±50% from run to run, the same for every channel, and once one side of a
/// ping-pong parks the other side's bounded spin runs out too, so a row
/// built on parking measures the hypervisor's wake-up latency, not the
/// channel. The spin is long because a short one (a `Backoff` budget of a
/// microsecond or so) sits right at the edge of one round trip: whole runs
/// then land either in the spinning or in the yielding regime, a 5x jump
/// that has nothing to do with the channel. Every peer runs under this same
/// executor, so the row measures each channel's register / send / wake /
/// re-poll path.
pub fn spin_block_on<F: std::future::Future>(future: F) -> F::Output {
    use std::task::{Context, Poll};
    let mut future = std::pin::pin!(future);
    sync_core::with_thread_parker(|parker| {
        let waker = parker.waker();
        let mut cx = Context::from_waker(&waker);
        loop {
            if let Poll::Ready(out) = future.as_mut().poll(&mut cx) {
                return out;
            }
            let mut checks = 0u32;
            while !(parker.is_notified() && parker.try_consume()) {
                if checks < SPIN_CHECKS {
                    checks += 1;
                    std::hint::spin_loop();
                } else {
                    std::thread::yield_now();
                }
            }
        }
    })
}

/// How many times [`spin_block_on`] re-checks for a wake-up before it starts
/// yielding the thread between checks.
const SPIN_CHECKS: u32 = 1 << 14;
