//! Seventh hostile review of `thread_aware` and `thread_aware_macros`.
//! Earlier reviews (`review_findings.rs`, `review2.rs`) are not repeated.
//!
//! Tests marked `// FINDING n` reproduced a defect (each failed on
//! 0bb11fa) and pass since the fixes: a path that merely ends in the type's
//! name is another type (finding 1); `#[thread_aware(recursive)]` for
//! recursion the derive cannot see (finding 2); pinning to a CPU id beyond
//! any mask is `EINVAL` (finding 3); absurd `create_manual_affinities`
//! counts panic with a message (finding 4). The others are attacks that
//! held, kept as regressions. Findings 3 and 4 run the action in a child
//! process (`testkit::in_child`: the defect was a process abort).
#![cfg(feature = "derive")]
#![deny(warnings)]

mod common;

use common::{Live, message};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::hash::{Hash, Hasher};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier, Mutex, mpsc};
use thread_aware::{
    BoxedRelocateFnOnce, MemoryAffinity, PerCore, PerNuma, RelocateFnOnce, Strategy, ThreadAware,
    Topology, Unaware, create_manual_affinities, relocate_once,
};

// ===================================================================== findings

// ----------------------------------------------------------------- finding 1

mod inner {
    use thread_aware::ThreadAware;

    /// Inert: a byte buffer.
    #[derive(ThreadAware)]
    pub struct Bytes(pub Vec<u8>);
}

/// A newtype over another module's type of the same name.
#[derive(ThreadAware)]
struct Bytes(inner::Bytes);

// FINDING 1: the derive takes any path segment equal to the type's own
// name for recursion (`thread_aware_macros/src/lib.rs`, `Finder::ident`:
// `ident == self.name` is checked for every segment, not just a path that
// names this type). A newtype `struct Bytes(inner::Bytes)` over a
// different, inert type therefore gets `INERT = false`, so a
// `Vec<Bytes>` is rebuilt element by element instead of in O(1).
#[test]
fn derive_newtype_over_a_same_named_inert_type_is_inert() {
    assert!(std::hint::black_box(<inner::Bytes as ThreadAware>::INERT));
    assert!(
        std::hint::black_box(<Bytes as ThreadAware>::INERT),
        "`struct Bytes(inner::Bytes)` relocates a single inert field, yet INERT is false"
    );
}

// FINDING 1 (compile time): the same misdetection on a generic newtype
// (`struct Sender<T>(inner::Sender<T>)`) dropped the inferred bound
// `inner::Sender<T>: ThreadAware`, and the generated impl failed with E0277
// on `T`: the trybuild pass case `tests/ui/pass/review7_same_name_newtype.rs`
// (run by `derive_ui.rs`).

// ----------------------------------------------------------------- finding 2

// FINDING 2: recursion the derive cannot see by name (a type alias, as in
// `type Link = Option<Box<Node>>`, or mutually recursive types) gave an
// `INERT` const that depends on itself: E0391 "cycle detected when
// elaborating drops for ...::INERT", and no attribute avoided it (the
// macro's docs sent mutually recursive types to `bound = "..."`, which does
// not touch `INERT`). Fixed by the `recursive` container attribute: the
// trybuild pass cases `tests/ui/pass/review7_alias_recursion.rs` and
// `review7_mutual_recursion.rs` (run by `derive_ui.rs`).

// ----------------------------------------------------------------- finding 3

// FINDING 3: `Topology::pin_current_thread` documents "Errors: the OS
// error of sched_setaffinity", but for a topology whose CPU id is large
// (from `Topology::from_sysfs`, whose `allowed` ids are not capped as
// `parse_cpu_list`'s are) it allocated a mask of `cpu / 64 + 1` words first
// and the process aborted: "memory allocation of 2305843009213693952 bytes
// failed" (`src/topology.rs`, `sched_setaffinity_self`; 2^40 asks for
// 128 GiB). With 4096 it returns EINVAL as documented.
#[test]
#[cfg_attr(miri, ignore)] // spawns a process
fn pin_to_an_absurd_cpu_id_is_an_error_not_an_abort() {
    testkit::in_child("pin_to_an_absurd_cpu_id_is_an_error_not_an_abort", || {
        let _watchdog = testkit::watchdog("pin_to_an_absurd_cpu_id_is_an_error_not_an_abort");
        // A machine description whose one CPU has an id no kernel has.
        let topology =
            Topology::from_sysfs(std::path::Path::new("/nonexistent-sysfs"), &[usize::MAX])
                .unwrap();
        let err = topology
            .pin_current_thread(topology.affinities()[0])
            .unwrap_err();
        assert_eq!(err.raw_os_error(), Some(22), "EINVAL");
    });
}

// ----------------------------------------------------------------- finding 4

// FINDING 4: `create_manual_affinities` sums the counts unchecked
// (`src/affinity.rs`, `let total: usize = counts.iter().sum()`): a debug
// build panics with core's bare "attempt to add with overflow", a release
// build wraps to 0 and panics with the misleading "processor index 0 is not
// below the processor count 0". The function's other misuse panics say
// what is wrong.
#[test]
fn create_manual_affinities_overflow_panics_with_a_message() {
    let err = catch_unwind(|| create_manual_affinities(&[usize::MAX, 1])).unwrap_err();
    let msg = message(&err);
    assert!(
        msg.starts_with("thread_aware") && !msg.contains("processor count 0"),
        "unclear panic: {msg:?}"
    );
}

// FINDING 4: `create_manual_affinities(&[1 << 40])` aborted the process
// ("memory allocation of 35184372088832 bytes failed",
// `Vec::with_capacity(total)` in `src/affinity.rs`) where the same absurd
// count given to a per-affinity pointer panics with a message (review2).
#[test]
#[cfg_attr(miri, ignore)] // spawns a process
fn create_manual_affinities_absurd_count_panics_instead_of_aborting() {
    testkit::in_child(
        "create_manual_affinities_absurd_count_panics_instead_of_aborting",
        || {
            let err = catch_unwind(|| create_manual_affinities(&[1 << 40])).unwrap_err();
            assert!(message(&err).starts_with("thread_aware"));
        },
    );
}

// ================================================================ attacks held

// ------------------------------------------------------- per-affinity pointers

/// Held: a factory that takes a handle of its own family out of a static,
/// clones it, relocates the clone into *another* slot and drops both while
/// its own slot is being built. Every instance is built once and dropped
/// once, and the family survives.
#[test]
fn factory_clones_relocates_and_drops_handles_of_its_own_family() {
    static LIVE: AtomicUsize = AtomicUsize::new(0);
    static STASH: Mutex<Option<PerCore<Live>>> = Mutex::new(None);
    static CALLS: AtomicUsize = AtomicUsize::new(0);
    let _watchdog = testkit::watchdog("factory_clones_relocates_and_drops");
    let cores = create_manual_affinities(&[3]);
    let other = cores[2];
    let h = PerCore::new_with_affinity(cores[0], move |a| {
        CALLS.fetch_add(1, Ordering::SeqCst);
        if a.processor_index() == 1 {
            let stashed = STASH.lock().unwrap().take().expect("stashed handle");
            let clone = stashed.clone();
            let moved = clone.relocated(a, other); // builds slot 2, nested
            assert_eq!(PerCore::strong_count(&moved), 4); // h, stashed, the builder's, moved
            drop(stashed);
            drop(moved);
        }
        Live::new(&LIVE)
    });
    *STASH.lock().unwrap() = Some(h.clone());
    let h1 = h.clone().relocated(cores[0], cores[1]);
    assert_eq!(CALLS.load(Ordering::SeqCst), 3);
    assert_eq!(LIVE.load(Ordering::SeqCst), 3);
    assert_eq!(PerCore::strong_count(&h), 2);
    assert_eq!(h.fold(0, |n, _| n + 1), 3);
    let h2 = h1.clone().relocated(cores[1], cores[2]);
    assert_eq!(
        CALLS.load(Ordering::SeqCst),
        3,
        "slot 2 was built once, nested"
    );
    drop((h, h1, h2));
    assert_eq!(LIVE.load(Ordering::SeqCst), 0);
}

/// Held: while one thread's factory is blocked building a slot, the main
/// thread clones, folds, relocates into other slots and finally drops
/// every other handle, so that the builder's is the last. Nothing is freed
/// early (the builder owns a count), and everything once at the end.
#[test]
fn every_other_handle_dropped_while_a_slot_is_built() {
    static LIVE: AtomicUsize = AtomicUsize::new(0);
    let _watchdog = testkit::watchdog("every_other_handle_dropped_while_a_slot_is_built");
    let cores: [MemoryAffinity; 4] = create_manual_affinities(&[4]).try_into().unwrap();
    let (entered_tx, entered_rx) = mpsc::channel::<()>();
    let (go_tx, go_rx) = mpsc::channel::<()>();
    let entered_tx = Mutex::new(entered_tx);
    let go_rx = Mutex::new(go_rx);
    let h = PerCore::new_with_affinity(cores[0], move |a| {
        if a.processor_index() == 3 {
            entered_tx.lock().unwrap().send(()).unwrap();
            go_rx.lock().unwrap().recv().unwrap();
        }
        Live::new(&LIVE)
    });
    let mine = h.clone();
    let builder = std::thread::spawn(move || {
        let built = mine.relocated(cores[0], cores[3]);
        let n = built.fold(0, |n, _| n + 1);
        (PerCore::strong_count(&built), n)
    });
    entered_rx.recv().unwrap();
    let mut handles = Vec::new();
    for i in 0..200 {
        let c = h.clone().relocated(cores[0], cores[i % 3]);
        assert!(
            c.fold(0, |n, _| n + 1) <= 3,
            "a slot being built is not visited"
        );
        handles.push(c);
    }
    drop(handles);
    drop(h);
    assert_eq!(LIVE.load(Ordering::SeqCst), 3);
    go_tx.send(()).unwrap();
    let (count, visited) = builder.join().unwrap();
    assert_eq!((count, visited), (1, 4));
    assert_eq!(LIVE.load(Ordering::SeqCst), 0);
}

/// A user strategy that panics for processor 1 and otherwise changes its
/// answer on every call (index and count).
enum Fickle {}
static FICKLE_CALLS: AtomicUsize = AtomicUsize::new(0);
impl Strategy for Fickle {
    fn slot(affinity: MemoryAffinity) -> (usize, usize) {
        assert!(
            affinity.processor_index() != 1,
            "strategy refuses processor 1"
        );
        let n = FICKLE_CALLS.fetch_add(1, Ordering::SeqCst);
        (n % 5, 1 + n % 3)
    }
}

/// Held: a safe user strategy that panics or lies only ever causes panics
/// with a message; handles are released on the way out (Miri: no leak, no
/// double free) and the family stays usable.
#[test]
fn a_panicking_and_lying_strategy_is_contained() {
    static LIVE: AtomicUsize = AtomicUsize::new(0);
    let cores = create_manual_affinities(&[3]);
    let h: thread_aware::PerAffinity<Live, Fickle> =
        thread_aware::PerAffinity::new(|| Live::new(&LIVE));
    let mut ok = 0;
    for round in 0..30 {
        let dest = cores[round % 3];
        match catch_unwind(AssertUnwindSafe(|| h.clone().relocated(cores[0], dest))) {
            Ok(moved) => {
                ok += 1;
                assert!(moved.fold(0, |n, _| n + 1) >= 2);
            }
            Err(err) => {
                let msg = message(&err);
                assert!(
                    msg.contains("thread_aware") || msg.contains("strategy refuses"),
                    "{msg:?}"
                );
            }
        }
    }
    let _ = ok; // how many answers happened to be consistent: irrelevant
    assert_eq!(thread_aware::PerAffinity::strong_count(&h), 1);
    drop(h);
    assert_eq!(LIVE.load(Ordering::SeqCst), 0);
}

/// Held: a `PerNuma` placed with one machine shape rejects an affinity of
/// another shape (region count differs) with a message. A `PerCore` cannot
/// tell two shapes of equal processor count apart; that is consistent with
/// the docs (only the count is checked) and is harmless (still in range).
#[test]
fn affinities_of_another_shape() {
    let flat = create_manual_affinities(&[4]);
    let two = create_manual_affinities(&[2, 2]);
    let numa = PerNuma::new_with_affinity(flat[0], |a| a.memory_region_index());
    let err =
        catch_unwind(AssertUnwindSafe(|| numa.clone().relocated(flat[0], two[3]))).unwrap_err();
    assert!(
        message(&err).contains("relocate one family only"),
        "{}",
        message(&err)
    );
    assert_eq!(*numa.clone().relocated(flat[0], flat[3]), 0);
    let core = PerCore::new_with_affinity(flat[0], |a| a.processor_index());
    assert_eq!(*core.clone().relocated(flat[0], two[3]), 3);
    assert_eq!(PerNuma::strong_count(&numa), 1);
}

// ------------------------------------------------------------------- impls

static DROPS: AtomicUsize = AtomicUsize::new(0);
static EXPLODE: AtomicBool = AtomicBool::new(false);

/// Relocation panics for the id 13 while `EXPLODE` is set; drops counted.
#[derive(Debug)]
struct Bomb(u32);
impl Drop for Bomb {
    fn drop(&mut self) {
        DROPS.fetch_add(1, Ordering::SeqCst);
    }
}
impl PartialEq for Bomb {
    fn eq(&self, other: &Self) -> bool {
        self.0 == other.0
    }
}
impl Eq for Bomb {}
impl Hash for Bomb {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.0.hash(state);
    }
}
impl PartialOrd for Bomb {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Bomb {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.cmp(&other.0)
    }
}
impl ThreadAware for Bomb {
    fn relocated(self, _: MemoryAffinity, _: MemoryAffinity) -> Self {
        assert!(!(EXPLODE.load(Ordering::SeqCst) && self.0 == 13), "boom");
        self
    }
}

fn bombs(n: u32) -> impl Iterator<Item = Bomb> {
    (0..n).map(|i| if i == 5 { Bomb(13) } else { Bomb(100 + i) })
}

/// Held: every listed container whose elements' relocation panics half-way
/// drops every element exactly once (review2 did `Box`, `Vec` and boxed
/// work; these are the rest).
#[test]
fn containers_drop_every_element_once_when_one_relocation_panics() {
    let _guard = BOMB_LOCK
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let a = create_manual_affinities(&[2]);
    fn check<T: ThreadAware>(what: &str, value: T, elements: usize, a: &[MemoryAffinity]) {
        DROPS.store(0, Ordering::SeqCst);
        EXPLODE.store(true, Ordering::SeqCst);
        let r = catch_unwind(AssertUnwindSafe(|| value.relocated(a[0], a[1])));
        EXPLODE.store(false, Ordering::SeqCst);
        assert!(r.is_err(), "{what}: the bomb went off");
        assert_eq!(DROPS.load(Ordering::SeqCst), elements, "{what}: drops");
    }
    check("VecDeque", bombs(9).collect::<VecDeque<_>>(), 9, &a);
    check("HashSet", bombs(9).collect::<HashSet<_>>(), 9, &a);
    check("BTreeSet", bombs(9).collect::<BTreeSet<_>>(), 9, &a);
    check(
        "HashMap keys",
        bombs(9).map(|b| (b, 0_u8)).collect::<HashMap<_, _>>(),
        9,
        &a,
    );
    check(
        "HashMap values",
        bombs(9).enumerate().collect::<HashMap<_, _>>(),
        9,
        &a,
    );
    check(
        "BTreeMap values",
        bombs(9)
            .enumerate()
            .map(|(i, b)| (i, (Bomb(1000 + i as u32), b)))
            .collect::<BTreeMap<_, _>>(),
        18,
        &a,
    );
    check("array", [Bomb(1), Bomb(2), Bomb(13), Bomb(4)], 4, &a);
    check(
        "tuple",
        (Bomb(1), Bomb(2), Bomb(13), Bomb(4), Bomb(5)),
        5,
        &a,
    );
    check("Option<Vec>", Some(bombs(9).collect::<Vec<_>>()), 9, &a);
    check("Result", Err::<u8, _>(vec![Bomb(13), Bomb(1)]), 2, &a);
}
static BOMB_LOCK: Mutex<()> = Mutex::new(());

/// Lies on purpose: inert, but relocation panics. A container of it that
/// touches an element has broken the O(1) inert path.
struct Untouchable(u8);
impl ThreadAware for Untouchable {
    const INERT: bool = true;
    fn relocated(self, _: MemoryAffinity, _: MemoryAffinity) -> Self {
        panic!("an inert container touched its element")
    }
}
impl PartialEq for Untouchable {
    fn eq(&self, o: &Self) -> bool {
        self.0 == o.0
    }
}
impl Eq for Untouchable {}
impl Hash for Untouchable {
    fn hash<H: Hasher>(&self, s: &mut H) {
        self.0.hash(s);
    }
}
impl PartialOrd for Untouchable {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Untouchable {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        self.0.cmp(&o.0)
    }
}

#[derive(ThreadAware)]
struct HoldsUntouchable {
    v: Vec<Untouchable>,
    n: u64,
}

/// Held: every listed container of an inert element (and inert closures,
/// derived structs of inert containers, boxed inert work) returns itself
/// without relocating an element; the heap buffers are reused (not copied).
#[test]
fn inert_containers_never_touch_an_element() {
    let a = create_manual_affinities(&[2]);
    let (s, d) = (a[0], a[1]);
    let v: Vec<Untouchable> = (0..64).map(Untouchable).collect();
    let p = v.as_ptr();
    let v = v.relocated(s, d);
    assert_eq!(v.as_ptr(), p);
    let q: VecDeque<Untouchable> = (0..64).map(Untouchable).collect();
    let _ = q.relocated(s, d);
    let b = Box::new(Untouchable(1));
    let bp: *const Untouchable = &raw const *b;
    assert_eq!(&raw const *b.relocated(s, d), bp);
    let _ = [Untouchable(1), Untouchable(2)].relocated(s, d);
    let _ = (0..9)
        .map(|i| (Untouchable(i), Untouchable(i)))
        .collect::<HashMap<_, _>>()
        .relocated(s, d);
    let _ = (0..9)
        .map(Untouchable)
        .collect::<HashSet<_>>()
        .relocated(s, d);
    let _ = (0..9)
        .map(|i| (Untouchable(i), Untouchable(i)))
        .collect::<BTreeMap<_, _>>()
        .relocated(s, d);
    let _ = (0..9)
        .map(Untouchable)
        .collect::<BTreeSet<_>>()
        .relocated(s, d);
    let _ = Some(vec![Untouchable(1)]).relocated(s, d);
    let _ = Ok::<_, Vec<Untouchable>>(vec![Untouchable(1)]).relocated(s, d);
    let _ = (vec![Untouchable(1)], Box::new(Untouchable(2)), 7_u8).relocated(s, d);
    assert!(std::hint::black_box(
        <HoldsUntouchable as ThreadAware>::INERT
    ));
    let h = HoldsUntouchable {
        v: (0..64).map(Untouchable).collect(),
        n: 1,
    };
    let hp = h.v.as_ptr();
    let h = h.relocated(s, d);
    assert_eq!((h.v.as_ptr(), h.n), (hp, 1));
    let work = relocate_once(vec![Untouchable(4)], |v| v[0].0);
    assert_eq!(
        BoxedRelocateFnOnce::new(work).relocated(s, d).call_once(),
        4
    );
    let _ = Unaware(Untouchable(0)).relocated(s, d);
}

// ---------------------------------------------------------------- closures

/// Held: captured data whose drop panics, in a closure whose function also
/// panics, and in boxed work dropped uncalled or relocated: each value is
/// dropped exactly once and the box is freed (Miri checks leaks).
#[test]
fn closures_with_panicking_captures_drop_once() {
    static DROPPED: AtomicUsize = AtomicUsize::new(0);
    struct Loud(u8);
    impl Drop for Loud {
        fn drop(&mut self) {
            DROPPED.fetch_add(1, Ordering::SeqCst);
            if !std::thread::panicking() {
                panic!("loud drop {}", self.0);
            }
        }
    }
    impl ThreadAware for Loud {
        fn relocated(self, _: MemoryAffinity, _: MemoryAffinity) -> Self {
            self
        }
    }
    let a = create_manual_affinities(&[2]);
    // The function panics with the data alive: one drop, during unwind.
    let work = relocate_once((Loud(1), 5_u8), |(loud, n)| {
        assert!(n != 5, "work failed");
        drop(loud);
    });
    let err =
        catch_unwind(AssertUnwindSafe(|| work.relocated(a[0], a[1]).call_once())).unwrap_err();
    assert_eq!(message(&err), "work failed");
    assert_eq!(DROPPED.swap(0, Ordering::SeqCst), 1);
    // Boxed, relocated, dropped uncalled: the drop's panic surfaces once.
    let boxed = BoxedRelocateFnOnce::new(relocate_once(Loud(2), |_l| ()));
    let boxed = boxed.relocated(a[0], a[1]);
    let err = catch_unwind(AssertUnwindSafe(move || drop(boxed))).unwrap_err();
    assert_eq!(message(&err), "loud drop 2");
    assert_eq!(DROPPED.swap(0, Ordering::SeqCst), 1);
    // Called: the function drops it, panicking; nothing else drops it.
    let boxed = BoxedRelocateFnOnce::new(relocate_once(Loud(3), drop::<Loud>));
    let err = catch_unwind(AssertUnwindSafe(move || boxed.call_once())).unwrap_err();
    assert_eq!(message(&err), "loud drop 3");
    assert_eq!(DROPPED.swap(0, Ordering::SeqCst), 1);
}

// ------------------------------------------------------------------- derive

fn keep<T>(v: T, _: MemoryAffinity, _: MemoryAffinity) -> T {
    v
}

/// Held: fields named exactly like the derive's own bindings, and a `with`
/// function named like them, relocate correctly.
#[allow(non_snake_case, clippy::struct_field_names)]
#[derive(ThreadAware, Debug, PartialEq)]
struct Clash {
    __thread_aware_source: u8,
    __thread_aware_destination: u8,
    __thread_aware_field_0: u8,
    #[thread_aware(with = __thread_aware_field_1)]
    __thread_aware_field_1: u8,
    source: u8,
    destination: u8,
    self_: u8,
    Self_: u8,
}

#[allow(non_snake_case)]
fn __thread_aware_field_1(v: u8, s: MemoryAffinity, d: MemoryAffinity) -> u8 {
    v + u8::try_from(s.processor_index() * 10 + d.processor_index()).unwrap()
}

#[derive(ThreadAware, Debug, PartialEq)]
enum ClashEnum<Src, const N: usize> {
    A(Src, [u8; N]),
    B {
        #[thread_aware(with = keep)]
        source: Src,
        destination: Box<ClashEnum<Src, N>>,
    },
    C,
}

#[test]
fn derive_hygiene_against_the_generated_names() {
    let a = create_manual_affinities(&[2, 1]);
    let c = Clash {
        __thread_aware_source: 1,
        __thread_aware_destination: 2,
        __thread_aware_field_0: 3,
        __thread_aware_field_1: 4,
        source: 5,
        destination: 6,
        self_: 7,
        Self_: 8,
    };
    let r = c.relocated(a[1], a[2]);
    assert_eq!(
        (r.__thread_aware_field_1, r.source, r.Self_),
        (4 + 12, 5, 8)
    );
    let e = ClashEnum::<u32, 2>::B {
        source: 9,
        destination: Box::new(ClashEnum::A(1, [2, 3])),
    };
    let e = e.relocated(a[0], a[2]);
    assert_eq!(
        e,
        ClashEnum::B {
            source: 9,
            destination: Box::new(ClashEnum::A(1, [2, 3]))
        }
    );
    assert_eq!(ClashEnum::<u8, 0>::C.relocated(a[0], a[1]), ClashEnum::C);
}

// ----------------------------------------------------------------- topology

/// Held: pinning to a CPU the machine does not have (a made-up topology
/// with CPU 4096) is the documented `Err`, and the thread's recorded
/// affinity is left as it was.
#[test]
#[cfg_attr(miri, ignore)] // system calls
fn pin_to_a_cpu_the_machine_lacks_is_an_error() {
    let made_up =
        Topology::from_sysfs(std::path::Path::new("/nonexistent-sysfs"), &[4096]).unwrap();
    std::thread::spawn(move || {
        let err = made_up
            .pin_current_thread(made_up.affinities()[0])
            .unwrap_err();
        assert_eq!(err.raw_os_error(), Some(22), "EINVAL");
        assert_eq!(thread_aware::current_affinity(), None);
    })
    .join()
    .unwrap();
}

/// Held: with the thread restricted to one CPU (as `taskset -c N` does),
/// the topology is one processor; pinning through a full-machine topology
/// read before to a CPU outside the restricted mask widens it (the kernel
/// allows that within the cpuset), which is what the docs describe.
#[test]
#[cfg_attr(miri, ignore)] // system calls
fn restricted_mask_then_pin_outside_it() {
    let full = Topology::current().unwrap();
    let cpus = testkit::affinity::allowed();
    if cpus.len() < 2 {
        return;
    }
    let (one, other) = (cpus[1], cpus[0]);
    std::thread::spawn(move || {
        testkit::affinity::pin(one);
        let restricted = Topology::current().unwrap();
        assert_eq!(restricted.processor_count(), 1);
        assert_eq!(restricted.cpu_id(restricted.affinities()[0]), one);
        let target = full.affinity_of_cpu(other).unwrap();
        full.pin_current_thread(target).unwrap();
        assert_eq!(thread_aware::current_affinity(), Some(target));
        assert_eq!(testkit::affinity::allowed(), [other]);
        // An affinity of the restricted topology is not one of `full`'s
        // unless equal: a one-processor affinity is rejected with a message.
        let err = catch_unwind(AssertUnwindSafe(|| {
            full.pin_current_thread(restricted.affinities()[0])
        }))
        .unwrap_err();
        assert!(message(&err).contains("does not belong to this topology"));
    })
    .join()
    .unwrap();
}

/// Held: many threads race the first relocation of many fresh families,
/// some factories panicking on their first call: each slot ends up built
/// once, the panics reach only the builders, no instance is lost.
#[test]
fn racing_builds_with_first_calls_panicking() {
    static LIVE: AtomicUsize = AtomicUsize::new(0);
    let _watchdog = testkit::watchdog("racing_builds_with_first_calls_panicking");
    let cores: [MemoryAffinity; 2] = create_manual_affinities(&[2]).try_into().unwrap();
    for round in 0..testkit::iters(50, 3) {
        let calls = Arc::new(AtomicUsize::new(0));
        let c = Arc::clone(&calls);
        let h = PerCore::new_with_affinity(cores[0], move |_| {
            let n = c.fetch_add(1, Ordering::SeqCst);
            assert!(n != 1 || round % 2 == 0, "first build fails");
            Live::new(&LIVE)
        });
        let barrier = Arc::new(Barrier::new(3));
        let threads: Vec<_> = (0..3)
            .map(|_| {
                let h = h.clone();
                let b = Arc::clone(&barrier);
                std::thread::spawn(move || {
                    b.wait();
                    catch_unwind(AssertUnwindSafe(|| {
                        let m = h.relocated(cores[0], cores[1]);
                        std::ptr::from_ref::<Live>(&m) as usize
                    }))
                    .ok()
                })
            })
            .collect();
        let got: Vec<Option<usize>> = threads.into_iter().map(|t| t.join().unwrap()).collect();
        let ok: Vec<usize> = got.iter().flatten().copied().collect();
        assert!(ok.windows(2).all(|w| w[0] == w[1]), "one instance");
        assert_eq!(got.len() - ok.len(), if round % 2 == 0 { 0 } else { 1 });
        assert_eq!(h.fold(0, |n, _| n + 1), 2);
        drop(h);
        assert_eq!(LIVE.load(Ordering::SeqCst), 0);
    }
}
