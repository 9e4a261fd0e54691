//! Fifth hostile review: 8892cb3 (`SpinPolicy`: hinted waits count towards
//! probes, probes spin up to `PROBE_LIMIT`) and 1e75533 (`PeerCpu`).
//!
//! `PeerCpu`'s own unit tests pass when the CPU number is never available
//! (`current_cpu()` always `None`): checked by building them with the Linux
//! branch of `current_cpu` disabled, all three pass. So a change that
//! silently switches `PeerCpu` off on Linux (a narrowed `cfg`, say) would
//! go unnoticed. These tests pin the threads involved to chosen CPUs, so
//! that the answer is deterministic, and fail if `PeerCpu` is inert on
//! Linux or compares the wrong thing.
#![cfg(all(target_os = "linux", not(miri), not(loom)))]

use std::thread;
use sync_core::PeerCpu;

use testkit::affinity::{allowed as allowed_cpus, pin as pin_this_thread};

/// Runs `f` on a fresh thread pinned to `cpu` (the test's own thread is
/// left alone).
fn on_cpu<R: Send>(cpu: usize, f: impl FnOnce() -> R + Send) -> R {
    thread::scope(|s| {
        s.spawn(|| {
            pin_this_thread(cpu);
            f()
        })
        .join()
        .unwrap()
    })
}

/// Fails if `PeerCpu` is inert on Linux (what the unit test
/// `a_cpu_noted_by_this_thread_is_this_cpu` does not catch).
#[test]
fn review5_peer_cpu_is_live_on_linux() {
    let cpu = allowed_cpus()[0];
    let peer = PeerCpu::new();
    on_cpu(cpu, || {
        peer.note();
        assert!(
            peer.is_this_cpu(),
            "a CPU noted by a thread pinned to it is not that CPU: PeerCpu is inert"
        );
    });
}

/// The point of the type: another thread on the noting thread's CPU sees
/// "this CPU"; one on another CPU does not; a later note from elsewhere
/// replaces the earlier one.
#[test]
fn review5_peer_cpu_across_pinned_threads() {
    let cpus = allowed_cpus();
    let peer = PeerCpu::new();
    on_cpu(cpus[0], || peer.note());
    assert!(on_cpu(cpus[0], || peer.is_this_cpu()));
    if let Some(&other) = cpus.get(1) {
        assert!(!on_cpu(other, || peer.is_this_cpu()));
        on_cpu(other, || peer.note());
        assert!(on_cpu(other, || peer.is_this_cpu()));
        assert!(!on_cpu(cpus[0], || peer.is_this_cpu()));
    }
}

/// `CpuId`, the value form (ste carries it in each task): current on the
/// CPU it was taken on, not on another.
#[test]
fn review5_cpu_id_is_current_only_where_taken() {
    let cpus = allowed_cpus();
    let taken = on_cpu(cpus[0], sync_core::CpuId::current);
    assert_ne!(taken, sync_core::CpuId::UNKNOWN, "CpuId is inert on Linux");
    assert!(on_cpu(cpus[0], || taken.is_current()));
    if let Some(&other) = cpus.get(1) {
        assert!(!on_cpu(other, || taken.is_current()));
    }
}
