//! Loom models of the per-affinity slot table (`cargo xtask loom -p
//! thread_aware`). In a normal build each model runs once, as a plain test.
//!
//! Instances hold a loom `Arc`: one never dropped is reported as a leaked
//! `Arc`, and one dropped twice panics on the count. Instances, tables and
//! the family sit in loom-tracked cells that the freeing thread writes
//! before each free, so an access not ordered before a free (a
//! use-after-free, a read of an instance published without `Release`) fails
//! the model.
//!
//! Every racing party runs on a thread of its own and the model's main
//! thread only spawns, joins and checks: with loom 0.7, work the main thread
//! did right after a spawn, on objects the new thread touched only later,
//! was explored in one order only (one iteration, measured), so the racing
//! operations never met.

use std::panic::{AssertUnwindSafe, catch_unwind};
use sync_core::atomic::{AtomicUsize, Ordering};
use sync_core::sync::Arc;
use sync_core::{model, thread};
use thread_aware::{MemoryAffinity, PerCore, ThreadAware, create_manual_affinities};

/// An instance: which affinity it was built for, and a counter of drops
/// shared with the model.
struct Tracked {
    built_for: Option<MemoryAffinity>,
    drops: Arc<AtomicUsize>,
}

impl Drop for Tracked {
    fn drop(&mut self) {
        self.drops.fetch_add(1, Ordering::Relaxed);
    }
}

/// Counters a model checks at its end.
#[derive(Clone)]
struct Counters {
    builds: Arc<AtomicUsize>,
    drops: Arc<AtomicUsize>,
}

impl Counters {
    fn new() -> Self {
        Counters {
            builds: Arc::new(AtomicUsize::new(0)),
            drops: Arc::new(AtomicUsize::new(0)),
        }
    }

    fn builds(&self) -> usize {
        self.builds.load(Ordering::Relaxed)
    }

    fn drops(&self) -> usize {
        self.drops.load(Ordering::Relaxed)
    }

    /// A family placed on `initial`; its factory counts builds.
    fn placed(&self, initial: MemoryAffinity) -> PerCore<Tracked> {
        let c = self.clone();
        PerCore::new_with_affinity(initial, move |affinity| {
            c.builds.fetch_add(1, Ordering::Relaxed);
            Tracked {
                built_for: Some(affinity),
                drops: Arc::clone(&c.drops),
            }
        })
    }

    /// A family with an origin instance (not placed yet).
    fn unplaced(&self) -> PerCore<Tracked> {
        let c = self.clone();
        PerCore::new(move || {
            let n = c.builds.fetch_add(1, Ordering::Relaxed);
            Tracked {
                // The origin (build 0) serves no affinity.
                built_for: if n == 0 {
                    None
                } else {
                    Some(MemoryAffinity::new(0, 1, 0, 1))
                },
                drops: Arc::clone(&c.drops),
            }
        })
    }
}

/// Two threads relocate into the same empty slot at once: the factory runs
/// once, both get that instance, and both read what the factory wrote
/// (set-once publication).
#[test]
fn racing_first_relocation_builds_once() {
    let _w = testkit::watchdog("racing_first_relocation_builds_once");
    model(|| {
        let a = create_manual_affinities(&[2]);
        let counters = Counters::new();
        let h = counters.placed(a[0]);
        let (from, to) = (a[0], a[1]);
        let race = |h: PerCore<Tracked>| {
            thread::spawn(move || {
                let moved = h.relocated(from, to);
                assert_eq!(moved.built_for, Some(to));
                moved
            })
        };
        let (t1, t2) = (race(h.clone()), race(h.clone()));
        let (mine, theirs) = (t1.join().unwrap(), t2.join().unwrap());
        assert!(PerCore::ptr_eq(&mine, &theirs), "one instance per slot");
        assert_eq!(counters.builds(), 2, "initial + slot 1, built once");
        drop((h, mine, theirs));
        assert_eq!(counters.drops(), 2);
    });
}

/// Two unplaced handles are placed at once, in different slots: the slot
/// table is created by both and published once (the loser frees its own);
/// both see a table with their instance in it.
#[test]
fn racing_first_placement_publishes_one_table() {
    let _w = testkit::watchdog("racing_first_placement_publishes_one_table");
    model(|| {
        let a = create_manual_affinities(&[2]);
        let counters = Counters::new();
        let h = counters.unplaced();
        let place = |h: PerCore<Tracked>, from, to| {
            thread::spawn(move || {
                let moved = h.relocated(from, to);
                assert!(moved.built_for.is_some());
                let seen = moved.fold(0, |n, _| n + 1);
                assert!((2..=3).contains(&seen), "origin + its slot at least");
                moved
            })
        };
        let (t1, t2) = (place(h.clone(), a[0], a[1]), place(h.clone(), a[1], a[0]));
        let (mine, theirs) = (t1.join().unwrap(), t2.join().unwrap());
        assert!(!PerCore::ptr_eq(&mine, &theirs));
        assert_eq!(
            h.fold(0, |n, _| n + 1),
            3,
            "origin + two slots in one table"
        );
        assert_eq!(counters.builds(), 3);
        drop((h, mine, theirs));
        assert_eq!(counters.drops(), 3);
    });
}

/// A thread builds a slot while another folds over the family: the fold
/// sees the instance or not, and reads it only after its publication.
#[test]
fn fold_races_with_a_build() {
    let _w = testkit::watchdog("fold_races_with_a_build");
    model(|| {
        let a = create_manual_affinities(&[2]);
        let counters = Counters::new();
        let h = counters.placed(a[0]);
        let (theirs, from, to) = (h.clone(), a[0], a[1]);
        let t = thread::spawn(move || drop(theirs.relocated(from, to)));
        let folding = h.clone();
        let f = thread::spawn(move || {
            folding.fold(Vec::new(), |mut v, x| {
                v.push(x.built_for);
                v
            })
        });
        let seen = f.join().unwrap();
        assert!(
            seen == [Some(from)] || seen == [Some(from), Some(to)],
            "{seen:?}"
        );
        t.join().unwrap();
        drop(h);
        assert_eq!(counters.drops(), 2);
    });
}

/// The factory panics on its first slot build while another thread may be
/// waiting for it: the slot goes back to empty, the waiter is woken, and
/// exactly one more build succeeds; the panic reaches only its own thread.
#[test]
fn panicking_factory_then_success() {
    let _w = testkit::watchdog("panicking_factory_then_success");
    model(|| {
        let a = create_manual_affinities(&[2]);
        let builds = Arc::new(AtomicUsize::new(0));
        let b = Arc::clone(&builds);
        let h = PerCore::new_with_affinity(a[0], move |affinity| {
            if b.fetch_add(1, Ordering::Relaxed) == 1 {
                panic!("the first slot build fails");
            }
            affinity.processor_index()
        });
        let (from, to) = (a[0], a[1]);
        let relocate = |h: PerCore<usize>| {
            thread::spawn(move || {
                let mut panics = 0;
                for _ in 0..2 {
                    let h = h.clone();
                    match catch_unwind(AssertUnwindSafe(move || h.relocated(from, to))) {
                        Ok(h) => return (h, panics),
                        Err(_) => panics += 1,
                    }
                }
                panic!("relocation failed twice");
            })
        };
        let (t1, t2) = (relocate(h.clone()), relocate(h.clone()));
        let (mine, my_panics) = t1.join().unwrap();
        let (theirs, their_panics) = t2.join().unwrap();
        assert_eq!(my_panics + their_panics, 1);
        assert!(PerCore::ptr_eq(&mine, &theirs));
        assert_eq!(*mine, 1);
        assert_eq!(builds.load(Ordering::Relaxed), 3);
    });
}

/// Handles of one family in two slots are cloned, relocated and dropped on
/// two threads, in either order: whichever drop is last frees every
/// instance exactly once, after every other access (family drop).
#[test]
fn clone_drop_across_slots_then_family_drop() {
    let _w = testkit::watchdog("clone_drop_across_slots_then_family_drop");
    model(|| {
        let a = create_manual_affinities(&[2]);
        let counters = Counters::new();
        let h = counters.placed(a[0]);
        let (theirs, from, to) = (h.clone(), a[0], a[1]);
        let t = thread::spawn(move || {
            let moved = theirs.relocated(from, to);
            let back = moved.clone().relocated(to, from);
            assert_eq!(back.built_for, Some(from));
            assert_eq!(moved.built_for, Some(to));
        });
        let u = thread::spawn(move || {
            let extra = h.clone();
            assert_eq!(h.built_for, Some(from));
            drop(h);
            assert_eq!(extra.built_for, Some(from));
        });
        t.join().unwrap();
        u.join().unwrap();
        assert_eq!(counters.drops(), counters.builds());
    });
}
