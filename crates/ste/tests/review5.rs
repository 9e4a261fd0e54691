//! Fifth hostile review: 1e75533 (`PeerCpu`: a submitter does not spin when
//! the worker went idle on its CPU; the idle worker does not spin when the
//! last submitter pushed from its CPU) and 8892cb3 (probes up to 200 µs).
//!
//! No defect found in ste; these are attacks that held. Pinning the worker
//! (from its prelude) and the callers makes the skipped spins
//! deterministic; re-pinning while running makes the noted CPUs stale.
//! Every task runs exactly once, nothing hangs, shutdown drains.
#![cfg(all(target_os = "linux", not(miri), not(loom)))]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use testkit::watchdog;

use testkit::affinity;

/// A worker pinned to `cpu` from its own prelude.
fn worker_on(cpu: usize) -> ste::Thread {
    ste::Builder::new()
        .prelude(move || affinity::pin(cpu))
        .build()
        .unwrap()
}

/// Worker and caller on one CPU: the caller's spin and the idle worker's
/// spin are both skipped on every round after the first; submits, spawns
/// and the final join all complete.
#[test]
fn review5_colocated_submit_spawn_and_join_never_hang() {
    let _w = watchdog("review5_colocated_submit_spawn_and_join_never_hang");
    let cpu = affinity::allowed()[0];
    let worker = worker_on(cpu);
    let spawned = Arc::new(AtomicUsize::new(0));
    thread::scope(|s| {
        s.spawn(|| {
            affinity::pin(cpu);
            let mut n = 0u32;
            for i in 0..3_000u32 {
                worker.submit(|| n += 1).unwrap();
                assert_eq!(n, i + 1);
                if i % 10 == 0 {
                    let spawned = Arc::clone(&spawned);
                    worker
                        .spawn(move || {
                            spawned.fetch_add(1, Ordering::Relaxed);
                        })
                        .unwrap();
                }
            }
        });
    });
    worker.join().unwrap();
    assert_eq!(spawned.load(Ordering::Relaxed), 300);
}

/// Two callers, one on the worker's CPU and one elsewhere, migrating every
/// few submits (so `caller_cpu`, shared by all submitters, and
/// `worker_cpu` are often stale or someone else's); every task runs once.
#[test]
fn review5_migrating_callers_with_stale_cpus_never_hang() {
    let _w = watchdog("review5_migrating_callers_with_stale_cpus_never_hang");
    let cpus = affinity::allowed();
    let (a, b) = (cpus[0], *cpus.get(1).unwrap_or(&cpus[0]));
    let worker = worker_on(a);
    let ran = AtomicUsize::new(0);
    thread::scope(|s| {
        for caller in 0..2 {
            let (worker, ran) = (&worker, &ran);
            s.spawn(move || {
                for i in 0..2_000usize {
                    if i % 7 == 0 {
                        affinity::pin(if (i / 7 + caller) % 2 == 0 { a } else { b });
                    }
                    worker
                        .submit(|| {
                            ran.fetch_add(1, Ordering::Relaxed);
                        })
                        .unwrap();
                }
            });
        }
    });
    drop(worker); // drains and stops, as join
    assert_eq!(ran.load(Ordering::Relaxed), 4_000);
}
