//! Relocatable closures: relocation reaches the captured data, calling
//! works, and the boxed form can be queued, relocated and called.

use static_assertions::{assert_impl_all, assert_not_impl_any};
use std::collections::VecDeque;
use thread_aware::{
    BoxedRelocateFnOnce, Closure, ClosureMut, ClosureOnce, MemoryAffinity, RelocateFn,
    RelocateFnMut, RelocateFnOnce, ThreadAware, Unaware, create_manual_affinities, relocate,
    relocate_mut, relocate_once,
};

/// Records every relocation it goes through.
#[derive(Clone, Debug, Default, PartialEq)]
struct Tracker {
    moves: Vec<(MemoryAffinity, MemoryAffinity)>,
}

impl ThreadAware for Tracker {
    fn relocated(mut self, source: MemoryAffinity, destination: MemoryAffinity) -> Self {
        self.moves.push((source, destination));
        self
    }
}

assert_impl_all!(ClosureOnce<Vec<u8>, u8>: Send, Sync, Clone, std::fmt::Debug);
assert_impl_all!(ClosureMut<Vec<u8>, u8>: Send, Sync, Clone);
assert_impl_all!(Closure<Vec<u8>, std::rc::Rc<u8>>: Send, Sync, Clone);
assert_not_impl_any!(ClosureOnce<Unaware<std::rc::Rc<u8>>, u8>: Send, Sync);
assert_impl_all!(BoxedRelocateFnOnce<std::rc::Rc<u8>>: Send, std::fmt::Debug);
assert_not_impl_any!(BoxedRelocateFnOnce<u8>: Sync, Clone);
// Each closure kind implements exactly the call traits its function allows.
assert_not_impl_any!(ClosureOnce<u8, u8>: RelocateFnMut<u8>, RelocateFn<u8>);
assert_not_impl_any!(ClosureMut<u8, u8>: RelocateFn<u8>);
assert_impl_all!(Closure<u8, u8>: RelocateFn<u8>, RelocateFnMut<u8>, RelocateFnOnce<u8>);

#[test]
fn relocate_once_relocates_the_captured_data_and_calls() {
    let a = create_manual_affinities(&[2, 1]);
    let work = relocate_once((Tracker::default(), 5_u32), |(t, k)| (t.moves, k * 2));
    let work = work.relocated(a[0], a[2]).relocated(a[2], a[1]);
    assert_eq!(work.data().0.moves, [(a[0], a[2]), (a[2], a[1])]);
    let (moves, k) = work.call_once();
    assert_eq!(moves, [(a[0], a[2]), (a[2], a[1])]);
    assert_eq!(k, 10);
}

#[test]
fn relocate_mut_keeps_state_across_calls_and_relocations() {
    let a = create_manual_affinities(&[2]);
    let mut work = relocate_mut((Tracker::default(), 0_u32), |(t, n)| {
        *n += 1;
        (*n, t.moves.len())
    });
    assert_eq!(work.call_mut(), (1, 0));
    let mut work = work.relocated(a[0], a[1]);
    assert_eq!(work.call_mut(), (2, 1));
    assert_eq!(work.data().0.moves, [(a[0], a[1])]);
    assert_eq!(work.call_once(), (3, 1));
}

#[test]
fn relocate_calls_by_reference_through_every_call_trait() {
    let a = create_manual_affinities(&[2]);
    let work = relocate(Tracker::default(), |t| t.moves.clone());
    assert!(work.call().is_empty());
    let mut work = work.relocated(a[1], a[0]);
    assert_eq!(work.call(), [(a[1], a[0])]);
    assert_eq!(work.call_mut(), [(a[1], a[0])]);
    let copy = work.clone();
    assert_eq!(work.call_once(), [(a[1], a[0])]);
    assert_eq!(copy.into_data().moves, [(a[1], a[0])]);
}

#[test]
fn inert_captures_make_an_inert_closure() {
    const { assert!(<ClosureOnce<(u8, String), ()> as ThreadAware>::INERT) };
    const { assert!(<Closure<Unaware<std::sync::Arc<u8>>, ()> as ThreadAware>::INERT) };
    const { assert!(!<ClosureMut<(u8, Tracker), ()> as ThreadAware>::INERT) };
    const { assert!(!<BoxedRelocateFnOnce<()> as ThreadAware>::INERT) };
}

#[test]
fn debug_shows_the_data() {
    let work = relocate_once(7_u8, |x| x);
    let text = format!("{work:?}");
    assert!(
        text.contains("ClosureOnce") && text.contains("data: 7"),
        "{text}"
    );
}

/// What a runtime does: queue boxed work of different shapes, relocate each
/// piece when moving it to another processor, run it there.
#[test]
fn boxed_work_is_queued_relocated_and_called() {
    let a = create_manual_affinities(&[2, 2]);
    let mut queue: VecDeque<BoxedRelocateFnOnce<Vec<(MemoryAffinity, MemoryAffinity)>>> =
        VecDeque::new();
    queue.push_back(BoxedRelocateFnOnce::new(relocate_once(
        Tracker::default(),
        |t| t.moves,
    )));
    queue.push_back(BoxedRelocateFnOnce::new(relocate(
        (Tracker::default(), Tracker::default()),
        |(x, y)| {
            assert_eq!(x, y);
            x.moves.clone()
        },
    )));
    queue.push_back(BoxedRelocateFnOnce::new(relocate_mut(
        vec![Tracker::default(); 3],
        |v| {
            let first = v[0].moves.clone();
            assert!(v.iter().all(|t| t.moves == first));
            first
        },
    )));
    // Inert work is queued and run like any other.
    queue.push_back(BoxedRelocateFnOnce::new(relocate_once(
        Unaware(std::sync::Arc::new(1_u8)),
        |_| Vec::new(),
    )));
    // A box in a box is still just work.
    queue.push_back(BoxedRelocateFnOnce::new(BoxedRelocateFnOnce::new(
        relocate_once(Tracker::default(), |t| t.moves),
    )));

    // The queue moves through two processors, then is drained on a third.
    let queue: VecDeque<_> = queue
        .into_iter()
        .map(|w| w.relocated(a[0], a[3]))
        .map(|w| w.relocated(a[3], a[1]))
        .collect();
    let results: Vec<_> = queue.into_iter().map(RelocateFnOnce::call_once).collect();
    let both = vec![(a[0], a[3]), (a[3], a[1])];
    assert_eq!(
        results,
        [both.clone(), both.clone(), both.clone(), vec![], both]
    );
}

#[test]
fn boxed_relocation_reuses_the_allocation() {
    let a = create_manual_affinities(&[2]);
    let boxed = BoxedRelocateFnOnce::new(relocate_once([Tracker::default()], |[t]| t.moves));
    let inner = boxed.into_box();
    let before = &*inner as *const _ as *const ();
    let boxed = BoxedRelocateFnOnce::from_box(inner).relocated(a[0], a[1]);
    let inner = boxed.into_box();
    let after = &*inner as *const _ as *const ();
    assert_eq!(before, after, "relocated in place");
    assert_eq!(inner.call_box(), [(a[0], a[1])]);
}

#[test]
fn boxed_work_crosses_threads() {
    let _watchdog = testkit::watchdog("boxed_work_crosses_threads");
    let a = create_manual_affinities(&[2]);
    let (tx, rx) = std::sync::mpsc::channel::<BoxedRelocateFnOnce<usize>>();
    let worker = std::thread::spawn(move || {
        let mut sum = 0;
        for work in rx {
            sum += work.relocated(a[0], a[1]).call_once();
        }
        sum
    });
    for n in 0..4_usize {
        tx.send(BoxedRelocateFnOnce::new(relocate_once(
            (n, Tracker::default()),
            |(n, t)| n * 10 + t.moves.len(),
        )))
        .unwrap();
    }
    drop(tx);
    assert_eq!(worker.join().unwrap(), 60 + 4);
}

#[test]
fn dropping_uncalled_work_drops_its_data() {
    let data = std::sync::Arc::new(());
    let work = BoxedRelocateFnOnce::new(relocate_once(Unaware(data.clone()), |_| ()));
    assert_eq!(std::sync::Arc::strong_count(&data), 2);
    drop(work);
    assert_eq!(std::sync::Arc::strong_count(&data), 1);
}
