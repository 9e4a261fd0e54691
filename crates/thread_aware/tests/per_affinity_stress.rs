//! Per-affinity pointers under real threads: racing first relocations,
//! opposite-direction storms, a panicking factory under a race, clone/drop
//! storms. Every test has a watchdog and bounded loops; under Miri the
//! iteration counts shrink (`testkit::iters`).

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::Duration;
use thread_aware::{MemoryAffinity, PerCore, PerNuma, ThreadAware, create_manual_affinities};

const THREADS: usize = 4;

/// An instance that counts its drops.
struct Tracked {
    affinity: MemoryAffinity,
    dropped: Arc<AtomicUsize>,
}

impl Drop for Tracked {
    fn drop(&mut self) {
        self.dropped.fetch_add(1, Ordering::SeqCst);
    }
}

/// `THREADS` threads released by one barrier all relocate a handle of a
/// fresh family into the same empty slot: the factory runs once and all of
/// them get that one instance.
fn race_first_relocation(slow_factory: bool) {
    let a = create_manual_affinities(&[2]);
    let built = Arc::new(AtomicUsize::new(0));
    let dropped = Arc::new(AtomicUsize::new(0));
    let (b, d) = (Arc::clone(&built), Arc::clone(&dropped));
    let origin = PerCore::new_with_affinity(a[0], move |affinity| {
        b.fetch_add(1, Ordering::SeqCst);
        if slow_factory && affinity.processor_index() == 1 {
            // Long enough that the others stop spinning and sleep.
            thread::sleep(Duration::from_millis(if cfg!(miri) { 1 } else { 2 }));
        }
        Tracked {
            affinity,
            dropped: Arc::clone(&d),
        }
    });
    let barrier = Arc::new(Barrier::new(THREADS));
    let threads: Vec<_> = (0..THREADS)
        .map(|_| {
            let (h, barrier) = (origin.clone(), Arc::clone(&barrier));
            let (from, to) = (a[0], a[1]);
            thread::spawn(move || {
                barrier.wait();
                let h = h.relocated(from, to);
                assert_eq!(h.affinity, to);
                h
            })
        })
        .collect();
    let got: Vec<_> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    assert!(
        got.iter().all(|h| PerCore::ptr_eq(h, &got[0])),
        "one instance"
    );
    assert_eq!(built.load(Ordering::SeqCst), 2, "initial + slot 1, once");
    drop((origin, got));
    assert_eq!(dropped.load(Ordering::SeqCst), 2);
}

#[test]
fn racing_first_relocation_builds_once() {
    let _w = testkit::watchdog("racing_first_relocation_builds_once");
    for _ in 0..testkit::iters(300, 4) {
        race_first_relocation(false);
    }
}

#[test]
fn racing_first_relocation_with_a_slow_factory_sleeps_and_wakes() {
    let _w = testkit::watchdog("racing_first_relocation_with_a_slow_factory_sleeps_and_wakes");
    for _ in 0..testkit::iters(30, 2) {
        race_first_relocation(true);
    }
}

/// The factory panics on its first call, while other threads wait for it:
/// the panic reaches only the thread that ran it, and one of the others
/// (or that one, retrying) builds the instance everyone then shares.
#[test]
fn panicking_factory_under_a_race_then_success() {
    let _w = testkit::watchdog("panicking_factory_under_a_race_then_success");
    let a = create_manual_affinities(&[2]);
    for _ in 0..testkit::iters(100, 3) {
        let calls = Arc::new(AtomicUsize::new(0));
        let c = Arc::clone(&calls);
        let origin = PerCore::new(move || {
            let n = c.fetch_add(1, Ordering::SeqCst);
            if n == 1 {
                thread::yield_now(); // let the others find the slot busy
                panic!("first build fails");
            }
            n
        });
        let barrier = Arc::new(Barrier::new(THREADS));
        let threads: Vec<_> = (0..THREADS)
            .map(|_| {
                let (h, barrier) = (origin.clone(), Arc::clone(&barrier));
                let (from, to) = (a[0], a[1]);
                thread::spawn(move || {
                    barrier.wait();
                    let mut panics = 0;
                    for _ in 0..3 {
                        let h = h.clone();
                        match catch_unwind(AssertUnwindSafe(move || h.relocated(from, to))) {
                            Ok(h) => return (h, panics),
                            Err(_) => panics += 1,
                        }
                    }
                    panic!("relocation kept failing");
                })
            })
            .collect();
        let got: Vec<_> = threads.into_iter().map(|t| t.join().unwrap()).collect();
        assert_eq!(
            got.iter().map(|(_, p)| p).sum::<usize>(),
            1,
            "one panic, one thread"
        );
        assert!(got.iter().all(|(h, _)| PerCore::ptr_eq(h, &got[0].0)));
        assert_eq!(*got[0].0, 2);
        assert_eq!(
            calls.load(Ordering::SeqCst),
            3,
            "origin, the failure, the success"
        );
    }
}

/// Two threads move handles of one family back and forth in opposite
/// directions, building slots as they go and counting on whichever instance
/// they hold; the fold sees every increment.
#[test]
fn opposite_direction_storms() {
    let _w = testkit::watchdog("opposite_direction_storms");
    let a = create_manual_affinities(&[2, 2]);
    let rounds = testkit::iters(2_000, 20);
    for _ in 0..testkit::iters(20, 2) {
        let counter = PerCore::new(|| AtomicU64::new(0));
        let regions = PerNuma::new(|| AtomicU64::new(0));
        let threads: Vec<_> = (0..2)
            .map(|side| {
                let (mut c, mut r, a) = (counter.clone(), regions.clone(), a.clone());
                thread::spawn(move || {
                    let mut here = if side == 0 { 0 } else { 3 };
                    for i in 0..rounds {
                        let there = if side == 0 {
                            (here + 1) % 4
                        } else {
                            (here + 3) % 4
                        };
                        c = c.relocated(a[here], a[there]);
                        r = r.relocated(a[here], a[there]);
                        c.fetch_add(1, Ordering::Relaxed);
                        r.fetch_add(1, Ordering::Relaxed);
                        if i % 7 == 0 {
                            drop(c.clone().relocated(a[there], a[here]));
                        }
                        here = there;
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let total = |h: u64, c: &AtomicU64| h + c.load(Ordering::Relaxed);
        assert_eq!(counter.fold(0, total), 2 * rounds as u64);
        assert_eq!(regions.fold(0, total), 2 * rounds as u64);
        assert_eq!(counter.fold(0, |n, _| n + 1), 5, "origin + 4 cores");
        assert_eq!(regions.fold(0, |n, _| n + 1), 3, "origin + 2 regions");
        assert_eq!(PerCore::strong_count(&counter), 1);
    }
}

/// Threads clone, relocate and drop handles of one family as fast as they
/// can while others fold over it; the last handle, wherever it is, frees
/// every instance exactly once.
#[test]
fn clone_drop_storms_free_every_instance_once() {
    let _w = testkit::watchdog("clone_drop_storms_free_every_instance_once");
    let a = create_manual_affinities(&[4]);
    let rounds = testkit::iters(3_000, 30);
    for _ in 0..testkit::iters(10, 2) {
        let dropped = Arc::new(AtomicUsize::new(0));
        let d = Arc::clone(&dropped);
        let origin = PerCore::new_with_affinity(a[0], move |affinity| Tracked {
            affinity,
            dropped: Arc::clone(&d),
        });
        let barrier = Arc::new(Barrier::new(THREADS));
        let threads: Vec<_> = (0..THREADS)
            .map(|t| {
                let (h, a, barrier) = (origin.clone(), a.clone(), Arc::clone(&barrier));
                thread::spawn(move || {
                    barrier.wait();
                    let mut keep = Vec::new();
                    for i in 0..rounds {
                        let to = a[(i + t) % a.len()];
                        let moved = h.clone().relocated(a[0], to);
                        assert_eq!(moved.affinity, to);
                        if i % 3 == 0 {
                            keep.push(moved);
                        }
                        if keep.len() > 8 {
                            keep.swap_remove(i % 8);
                        }
                        if i % 64 == 0 {
                            assert!(h.fold(0, |n, _| n + 1) <= a.len());
                        }
                    }
                    keep
                })
            })
            .collect();
        drop(origin);
        let kept: Vec<_> = threads.into_iter().map(|t| t.join().unwrap()).collect();
        assert_eq!(dropped.load(Ordering::SeqCst), 0, "handles are still alive");
        let any = kept.iter().flatten().next().unwrap().clone();
        assert_eq!(any.fold(0, |n, _| n + 1), 4);
        drop(kept);
        assert_eq!(PerCore::strong_count(&any), 1);
        // The last handle is dropped on another thread.
        thread::spawn(move || drop(any)).join().unwrap();
        assert_eq!(dropped.load(Ordering::SeqCst), 4);
    }
}
