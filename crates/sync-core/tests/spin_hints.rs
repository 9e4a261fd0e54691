//! `SpinPolicy::spin_with` parks at once when the peer last ran on the
//! waiter's own CPU, and spins when it ran elsewhere. The threads are pinned
//! so that "this CPU" is deterministic.
#![cfg(all(target_os = "linux", not(miri), not(loom)))]

use std::cell::Cell;
use std::thread;
use sync_core::{CpuId, SpinHints, SpinPolicy};
use testkit::affinity::{allowed, pin};

/// The id of `cpu` as `CpuId::current` reports it there.
fn id_of(cpu: usize) -> CpuId {
    thread::scope(|s| {
        s.spawn(|| {
            pin(cpu);
            CpuId::current()
        })
        .join()
        .unwrap()
    })
}

/// Polls of one wait, pinned to `cpu`, on a fresh site, whose condition
/// comes true at the tenth poll.
fn polls_on(cpu: usize, peer_cpu: CpuId) -> (bool, u32) {
    thread::scope(|s| {
        s.spawn(|| {
            pin(cpu);
            let polls = Cell::new(0u32);
            let hints = SpinHints {
                peer_cpu,
                ..SpinHints::default()
            };
            let seen = SpinPolicy::new().spin_with(hints, || {
                polls.set(polls.get() + 1);
                polls.get() == 10
            });
            (seen, polls.get())
        })
        .join()
        .unwrap()
    })
}

#[test]
fn no_spin_on_the_peers_own_cpu() {
    let cpus = allowed();
    let here = cpus[0];
    assert_ne!(id_of(here), CpuId::UNKNOWN, "sched_getcpu works on Linux");
    assert_eq!(
        polls_on(here, id_of(here)),
        (false, 1),
        "spun although the peer last ran on this CPU"
    );
    assert_eq!(
        polls_on(here, CpuId::UNKNOWN),
        (true, 10),
        "an unknown CPU rules nothing out"
    );
    if let Some(&there) = cpus.get(1) {
        assert_eq!(
            polls_on(here, id_of(there)),
            (true, 10),
            "did not spin for a peer on another CPU"
        );
    }
}
