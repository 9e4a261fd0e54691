//! Behaviour of the per-affinity pointers (`PerCore`, `PerNuma`,
//! `PerProcess`) on one thread. Runs under Miri too
//! (`cargo xtask miri -p thread_aware`).

use static_assertions::{assert_impl_all, assert_not_impl_any};
use std::cell::Cell;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use thread_aware::{
    MemoryAffinity, PerAffinity, PerCore, PerNuma, PerProcess, Strategy, ThreadAware,
    create_manual_affinities,
};

assert_impl_all!(PerCore<u32>: Send, Sync, Clone, ThreadAware, core::fmt::Debug);
assert_impl_all!(PerNuma<AtomicU64>: Send, Sync, Clone);
assert_impl_all!(PerProcess<Mutex<Vec<u8>>>: Send, Sync, Clone);
// Shared across threads and dropped by whichever handle is last: needs
// `T: Send + Sync`, exactly like `Arc<T>`.
assert_not_impl_any!(PerCore<Cell<u32>>: Send, Sync);
assert_not_impl_any!(PerCore<Rc<u32>>: Send, Sync);
assert_not_impl_any!(PerCore<std::sync::MutexGuard<'static, u32>>: Send, Sync);

/// Counts how many instances were built and dropped.
#[derive(Default)]
struct Counts {
    built: AtomicUsize,
    dropped: AtomicUsize,
}

impl Counts {
    fn built(&self) -> usize {
        self.built.load(Ordering::SeqCst)
    }
    fn dropped(&self) -> usize {
        self.dropped.load(Ordering::SeqCst)
    }
}

/// An instance that reports its drop.
struct Tracker {
    id: usize,
    counts: Arc<Counts>,
    panic_on_drop: bool,
}

impl Tracker {
    fn new(counts: &Arc<Counts>) -> Self {
        let id = counts.built.fetch_add(1, Ordering::SeqCst);
        Tracker {
            id,
            counts: Arc::clone(counts),
            panic_on_drop: false,
        }
    }
}

impl Drop for Tracker {
    fn drop(&mut self) {
        self.counts.dropped.fetch_add(1, Ordering::SeqCst);
        if self.panic_on_drop {
            panic!("tracker {} panics on drop", self.id);
        }
    }
}

/// A panic's message, whatever its payload type.
fn message(err: &Box<dyn std::any::Any + Send>) -> String {
    err.downcast_ref::<String>()
        .cloned()
        .or_else(|| err.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_default()
}

fn tracked_core(counts: &Arc<Counts>) -> PerCore<Tracker> {
    let counts = Arc::clone(counts);
    PerCore::new(move || Tracker::new(&counts))
}

#[test]
fn new_uses_the_origin_until_relocated() {
    let a = create_manual_affinities(&[3]);
    let counts = Arc::new(Counts::default());
    let origin = tracked_core(&counts);
    assert_eq!(counts.built(), 1, "the origin is built eagerly");
    assert_eq!(origin.id, 0);
    let clone = origin.clone();
    assert!(PerCore::ptr_eq(&origin, &clone));

    let on1 = origin.clone().relocated(a[0], a[1]);
    assert_eq!(on1.id, 1);
    assert!(!PerCore::ptr_eq(&on1, &origin));
    let again = clone.clone().relocated(a[2], a[1]);
    assert!(PerCore::ptr_eq(&on1, &again), "one instance per slot");
    assert_eq!(counts.built(), 2, "a hit does not build");

    let on0 = on1.clone().relocated(a[1], a[0]);
    assert_eq!(on0.id, 2);
    let back = on0.clone().relocated(a[0], a[1]);
    assert!(PerCore::ptr_eq(&back, &on1));
    // Relocating to where it already is keeps the instance.
    let same = back.clone().relocated(a[1], a[1]);
    assert!(PerCore::ptr_eq(&same, &on1));
    assert_eq!(counts.built(), 3);
    assert_eq!(counts.dropped(), 0);
    drop((origin, clone, on1, again, on0, back, same));
    assert_eq!(counts.dropped(), 3, "each instance dropped once");
}

#[test]
fn the_counter_example_is_one_fold() {
    let a = create_manual_affinities(&[4]);
    let counter = PerCore::new(|| AtomicU64::new(0));
    counter.fetch_add(1, Ordering::Relaxed); // the origin
    for (i, &aff) in a.iter().enumerate() {
        let h = counter.clone().relocated(a[0], aff);
        h.fetch_add(10 * (i as u64 + 1), Ordering::Relaxed);
    }
    let total = counter.fold(0, |sum, c| sum + c.load(Ordering::Relaxed));
    assert_eq!(total, 1 + 10 + 20 + 30 + 40);
    let mut seen = Vec::new();
    counter.for_each(|c| seen.push(c.load(Ordering::Relaxed)));
    assert_eq!(seen, [1, 10, 20, 30, 40], "origin first, then slot order");
}

#[test]
fn fold_visits_only_instances_that_exist() {
    let a = create_manual_affinities(&[4]);
    let h = PerCore::new_with_affinity(a[2], |aff| aff.processor_index());
    assert_eq!(*h, 2);
    assert_eq!(
        h.fold(Vec::new(), |mut v, &x| {
            v.push(x);
            v
        }),
        [2]
    );
    let h3 = h.clone().relocated(a[2], a[3]);
    let mut seen = Vec::new();
    h3.for_each(|&x| seen.push(x));
    assert_eq!(seen, [2, 3], "slot order, no origin");
}

#[test]
fn new_with_affinity_passes_the_destination_to_the_factory() {
    let a = create_manual_affinities(&[2, 2]);
    let calls = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&calls);
    let h: PerCore<usize> = PerCore::new_with_affinity(a[1], move |aff: MemoryAffinity| {
        log.lock().unwrap().push(aff);
        aff.processor_index() * 100 + aff.memory_region_index()
    });
    assert_eq!(*h, 100);
    let h3 = h.clone().relocated(a[1], a[3]);
    assert_eq!(*h3, 301);
    let h1 = h3.clone().relocated(a[3], a[1]);
    assert!(PerCore::ptr_eq(&h1, &h), "placed in the initial slot");
    assert_eq!(*calls.lock().unwrap(), [a[1], a[3]]);
}

#[test]
fn new_with_clones_the_data_per_instance() {
    #[derive(Debug)]
    struct Data(Arc<AtomicUsize>);
    impl Clone for Data {
        fn clone(&self) -> Self {
            self.0.fetch_add(1, Ordering::SeqCst);
            Data(Arc::clone(&self.0))
        }
    }
    let clones = Arc::new(AtomicUsize::new(0));
    let a = create_manual_affinities(&[3]);
    let h = PerCore::new_with(Data(Arc::clone(&clones)), |d: Data| {
        d.0.load(Ordering::SeqCst)
    });
    assert_eq!(clones.load(Ordering::SeqCst), 1);
    assert_eq!(*h, 1, "the origin got the first clone");
    let h1 = h.clone().relocated(a[0], a[1]);
    let h2 = h.clone().relocated(a[0], a[2]);
    assert_eq!((*h1, *h2), (2, 3));
    assert_eq!(clones.load(Ordering::SeqCst), 3);
    drop((h, h1, h2));
    // Only the family's own copy of the data is left; it went with it.
    assert_eq!(Arc::strong_count(&clones), 1);
}

#[test]
fn per_numa_shares_an_instance_within_a_region() {
    let a = create_manual_affinities(&[2, 3]);
    let h = PerNuma::new_with_affinity(a[0], |aff| aff.memory_region_index());
    let on: Vec<_> = a.iter().map(|&x| h.clone().relocated(a[0], x)).collect();
    assert!(PerNuma::ptr_eq(&on[0], &on[1]));
    assert!(PerNuma::ptr_eq(&on[2], &on[4]));
    assert!(!PerNuma::ptr_eq(&on[1], &on[2]));
    assert_eq!(*on[3], 1);
    assert_eq!(h.fold(0, |n, _| n + 1), 2);
}

#[test]
fn per_process_has_exactly_one_instance() {
    let a = create_manual_affinities(&[2, 2]);
    let counts = Arc::new(Counts::default());
    let c = Arc::clone(&counts);
    let h = PerProcess::new(move || Tracker::new(&c));
    let moved: Vec<_> = a.iter().map(|&x| h.clone().relocated(a[0], x)).collect();
    assert!(moved.iter().all(|m| PerProcess::ptr_eq(m, &h)));
    assert_eq!(counts.built(), 1, "no origin besides the one slot");
    assert_eq!(h.fold(0, |n, _| n + 1), 1);
    drop((h, moved));
    assert_eq!(counts.dropped(), 1);
}

#[test]
fn strong_count_counts_every_handle_of_the_family() {
    let a = create_manual_affinities(&[2]);
    let h = PerCore::new(|| 5u8);
    assert_eq!(PerCore::strong_count(&h), 1);
    let c = h.clone();
    let r = h.clone().relocated(a[0], a[1]);
    assert_eq!(PerCore::strong_count(&h), 3);
    assert_eq!(PerCore::strong_count(&r), 3);
    drop(c);
    assert_eq!(PerCore::strong_count(&r), 2);
    let r2 = r.relocated(a[1], a[0]);
    assert_eq!(PerCore::strong_count(&h), 2, "relocation moves the handle");
    drop(r2);
    assert_eq!(PerCore::strong_count(&h), 1);
}

#[test]
fn the_family_drops_every_instance_once_after_the_last_handle() {
    let a = create_manual_affinities(&[4]);
    let counts = Arc::new(Counts::default());
    let h = tracked_core(&counts);
    let handles: Vec<_> = a
        .iter()
        .flat_map(|&x| [h.clone().relocated(a[0], x), h.clone().relocated(a[3], x)])
        .collect();
    assert_eq!(counts.built(), 5);
    drop(h);
    let mut handles = handles;
    while handles.len() > 1 {
        handles.pop();
        assert_eq!(
            counts.dropped(),
            0,
            "instances outlive all but the last handle"
        );
    }
    drop(handles);
    assert_eq!(counts.dropped(), 5);
}

#[test]
fn a_panicking_instance_drop_still_drops_the_others() {
    let a = create_manual_affinities(&[3]);
    let counts = Arc::new(Counts::default());
    let c = Arc::clone(&counts);
    let h = PerCore::new(move || {
        let mut t = Tracker::new(&c);
        t.panic_on_drop = t.id == 2;
        t
    });
    let hs: Vec<_> = a.iter().map(|&x| h.clone().relocated(a[0], x)).collect();
    assert_eq!(counts.built(), 4);
    drop(hs);
    let unwound = catch_unwind(AssertUnwindSafe(move || drop(h)));
    assert!(unwound.is_err(), "the instance's panic propagates");
    assert_eq!(counts.dropped(), 4, "every instance dropped once anyway");
}

#[test]
fn a_panicking_factory_leaves_the_slot_empty_and_the_next_relocation_retries() {
    let a = create_manual_affinities(&[2]);
    let calls = Arc::new(AtomicUsize::new(0));
    let c = Arc::clone(&calls);
    let h = PerCore::new(move || {
        let n = c.fetch_add(1, Ordering::SeqCst);
        if n == 1 || n == 2 {
            panic!("factory call {n} fails");
        }
        n
    });
    assert_eq!(*h, 0);
    let (a0, a1) = (a[0], a[1]);
    for expected in [1, 2] {
        let h2 = h.clone();
        let err = catch_unwind(AssertUnwindSafe(move || h2.relocated(a0, a1)))
            .expect_err("the factory's panic reaches the relocating caller");
        assert_eq!(message(&err), format!("factory call {expected} fails"));
        assert_eq!(PerCore::strong_count(&h), 1, "the moved handle was dropped");
    }
    let h1 = h.clone().relocated(a[0], a[1]);
    assert_eq!(*h1, 3);
    assert_eq!(h.fold(0, |n, _| n + 1), 2, "no trace of the failed builds");
    let again = h.clone().relocated(a[0], a[1]);
    assert!(PerCore::ptr_eq(&h1, &again));
    assert_eq!(calls.load(Ordering::SeqCst), 4);
}

#[test]
fn a_factory_that_relocates_into_its_own_slot_panics_instead_of_hanging() {
    let _w = testkit::watchdog("a_factory_that_relocates_into_its_own_slot_panics");
    let a = create_manual_affinities(&[2]);
    let (a0, a1) = (a[0], a[1]);
    let own: Arc<Mutex<Option<PerCore<usize>>>> = Arc::new(Mutex::new(None));
    let in_factory = Arc::clone(&own);
    let h = PerCore::new_with_affinity(a[0], move |aff: MemoryAffinity| {
        let me = in_factory.lock().unwrap().clone();
        if let Some(me) = me {
            // Another slot is fine...
            let other = me.clone().relocated(aff, a0);
            assert_eq!(*other, 0);
            // ...its own is not.
            let _ = me.relocated(aff, aff);
        }
        aff.processor_index()
    });
    *own.lock().unwrap() = Some(h.clone());
    let h2 = h.clone();
    let err = catch_unwind(AssertUnwindSafe(move || h2.relocated(a0, a1))).unwrap_err();
    let msg = message(&err);
    assert!(msg.contains("wait for itself"), "{msg}");
    // The slot went back to empty: a factory that behaves now succeeds.
    own.lock().unwrap().take(); // also breaks the family -> factory -> handle cycle
    let h1 = h.clone().relocated(a[0], a[1]);
    assert_eq!(*h1, 1);
}

#[test]
fn relocating_between_sets_of_different_sizes_panics() {
    let two = create_manual_affinities(&[2]);
    let three = create_manual_affinities(&[3]);
    let h = PerCore::new(|| 0u8).relocated(two[0], two[1]);
    let err = catch_unwind(AssertUnwindSafe(|| h.clone().relocated(two[1], three[2]))).unwrap_err();
    let msg = message(&err);
    assert!(
        msg.contains("3 slots") && msg.contains("placed with 2"),
        "{msg}"
    );
    // The family is still fine.
    assert_eq!(*h.clone().relocated(two[1], two[0]), 0);
}

#[test]
fn an_inconsistent_user_strategy_panics_with_a_message() {
    enum Broken {}
    impl Strategy for Broken {
        fn slot(affinity: MemoryAffinity) -> (usize, usize) {
            (affinity.processor_index() + 1, affinity.processor_count())
        }
    }
    let a = create_manual_affinities(&[2]);
    let h: PerAffinity<u8, Broken> = PerAffinity::new(|| 1);
    let _ = h.clone().relocated(a[1], a[0]); // index 1 of 2: fine
    let err = catch_unwind(AssertUnwindSafe(|| h.clone().relocated(a[0], a[1]))).unwrap_err();
    let msg = message(&err);
    assert!(msg.contains("slot 2 of 2"), "{msg}");
    let err =
        catch_unwind(|| PerAffinity::<u8, Broken>::new_with_affinity(a[1], |_| 0)).unwrap_err();
    assert!(message(&err).contains("below the count"));
}

#[test]
fn a_panicking_constructor_leaks_nothing() {
    let counts = Arc::new(Counts::default());
    let c = Arc::clone(&counts);
    let err = catch_unwind(move || {
        PerCore::new(move || -> Tracker {
            let _t = Tracker::new(&c);
            panic!("no origin today");
        })
    });
    assert!(err.is_err());
    assert_eq!(counts.dropped(), 1);
    assert_eq!(Arc::strong_count(&counts), 1, "the factory was dropped");
}

#[test]
fn handles_in_containers_relocate_with_them() {
    let a = create_manual_affinities(&[2]);
    let h = PerCore::new(|| 7u32);
    let v = vec![h.clone(), h.clone(), h.clone()].relocated(a[0], a[1]);
    assert!(
        v.iter()
            .all(|x| PerCore::ptr_eq(x, &v[0]) && !PerCore::ptr_eq(x, &h))
    );
    let pair = (h.clone(), Some(h.clone())).relocated(a[0], a[1]);
    assert!(PerCore::ptr_eq(&pair.0, &v[0]));
}

#[test]
fn default_and_debug() {
    let h: PerCore<u32> = PerCore::default();
    assert_eq!(*h, 0);
    assert_eq!(format!("{h:?}"), "PerAffinity(0)");
}
