//! `#[derive(ThreadAware)]` at run time: every shape relocates every field
//! with the right (source, destination), skipped fields move as is, `with`
//! functions are called, `INERT` is computed from the relocated fields, and
//! the generated bindings never collide with field names.
#![cfg(feature = "derive")]

use std::marker::PhantomData;
use std::rc::Rc;
use thread_aware::{MemoryAffinity, ThreadAware, Unaware, create_manual_affinities};

/// Records every relocation it goes through.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
struct Tracker {
    id: u32,
    moves: Vec<(MemoryAffinity, MemoryAffinity)>,
}

impl Tracker {
    fn new(id: u32) -> Self {
        Tracker {
            id,
            moves: Vec::new(),
        }
    }

    /// Asserts that it was relocated exactly once, from `a` to `b`.
    #[track_caller]
    fn assert_moved(&self, id: u32, a: MemoryAffinity, b: MemoryAffinity) {
        assert_eq!(self.id, id, "a tracker was swapped with another one");
        assert_eq!(self.moves, vec![(a, b)], "tracker {id}");
    }
}

impl ThreadAware for Tracker {
    fn relocated(mut self, source: MemoryAffinity, destination: MemoryAffinity) -> Self {
        self.moves.push((source, destination));
        self
    }
}

/// Neither `ThreadAware` nor `Clone` nor `Debug`.
struct Opaque(u32);

fn affinities() -> (MemoryAffinity, MemoryAffinity) {
    let all = create_manual_affinities(&[1, 2]);
    // Different processors in different regions: a swapped argument shows.
    (all[2], all[0])
}

#[derive(ThreadAware)]
struct Named {
    a: Tracker,
    b: Tracker,
    n: u64,
}

#[derive(ThreadAware)]
struct Tuple(Tracker, u8, Tracker);

#[derive(ThreadAware, Debug, PartialEq)]
struct Unit;

#[derive(ThreadAware, Debug, PartialEq)]
struct EmptyNamed {}

#[derive(ThreadAware, Debug, PartialEq)]
struct EmptyTuple();

#[derive(ThreadAware)]
enum Shapes {
    Named { a: Tracker, b: Tracker },
    Tuple(Tracker, Tracker),
    Unit,
    EmptyNamed {},
    EmptyTuple(),
}

#[derive(ThreadAware)]
enum Empty {}

#[test]
fn named_struct_relocates_every_field() {
    let (a, b) = affinities();
    let moved = Named {
        a: Tracker::new(1),
        b: Tracker::new(2),
        n: 7,
    }
    .relocated(a, b);
    moved.a.assert_moved(1, a, b);
    moved.b.assert_moved(2, a, b);
    assert_eq!(moved.n, 7);
}

#[test]
fn tuple_struct_relocates_every_field() {
    let (a, b) = affinities();
    let moved = Tuple(Tracker::new(1), 9, Tracker::new(2)).relocated(a, b);
    moved.0.assert_moved(1, a, b);
    assert_eq!(moved.1, 9);
    moved.2.assert_moved(2, a, b);
}

#[test]
fn unit_and_empty_structs_relocate() {
    let (a, b) = affinities();
    assert_eq!(Unit.relocated(a, b), Unit);
    assert_eq!(EmptyNamed {}.relocated(a, b), EmptyNamed {});
    assert_eq!(EmptyTuple().relocated(a, b), EmptyTuple());
}

#[test]
fn every_variant_shape_relocates_every_field() {
    let (a, b) = affinities();
    match (Shapes::Named {
        a: Tracker::new(1),
        b: Tracker::new(2),
    })
    .relocated(a, b)
    {
        Shapes::Named { a: x, b: y } => {
            x.assert_moved(1, a, b);
            y.assert_moved(2, a, b);
        }
        _ => panic!("variant changed"),
    }
    match Shapes::Tuple(Tracker::new(3), Tracker::new(4)).relocated(a, b) {
        Shapes::Tuple(x, y) => {
            x.assert_moved(3, a, b);
            y.assert_moved(4, a, b);
        }
        _ => panic!("variant changed"),
    }
    assert!(matches!(Shapes::Unit.relocated(a, b), Shapes::Unit));
    assert!(matches!(
        Shapes::EmptyNamed {}.relocated(a, b),
        Shapes::EmptyNamed {}
    ));
    assert!(matches!(
        Shapes::EmptyTuple().relocated(a, b),
        Shapes::EmptyTuple()
    ));
}

#[test]
fn an_empty_enum_derives() {
    fn relocate_all(values: Vec<Empty>, a: MemoryAffinity, b: MemoryAffinity) -> Vec<Empty> {
        values.relocated(a, b)
    }
    let (a, b) = affinities();
    assert!(relocate_all(Vec::new(), a, b).is_empty());
    const { assert!(<Empty as ThreadAware>::INERT) };
}

// --- generics, skip, with ------------------------------------------------

/// A `with` function: relocates an `Opaque` by tagging it with the
/// destination's processor.
fn tag_opaque(value: Opaque, source: MemoryAffinity, destination: MemoryAffinity) -> Opaque {
    Opaque(
        value.0 * 1000
            + source.processor_index() as u32 * 10
            + destination.processor_index() as u32,
    )
}

mod relocators {
    use super::{MemoryAffinity, Tracker};

    /// A generic `with` function, called through a path with a turbofish.
    pub fn twice<T: Into<u32>>(
        value: (T, Tracker),
        source: MemoryAffinity,
        destination: MemoryAffinity,
    ) -> (T, Tracker) {
        let mut tracker = value.1;
        tracker.moves.push((source, destination));
        tracker.moves.push((source, destination));
        (value.0, tracker)
    }
}

trait Describe {
    fn describe(&self) -> String;
}

impl Describe for Tracker {
    fn describe(&self) -> String {
        format!("tracker {}", self.id)
    }
}

#[derive(ThreadAware)]
struct Generic<'a, T, U: Clone, const N: usize, V = u16>
where
    T: Describe,
{
    items: Vec<T>,
    array: [T; N],
    maybe: Option<U>,
    default: V,
    #[thread_aware(skip)]
    skipped: &'a Opaque,
    #[thread_aware(skip)]
    skipped_rc: Rc<Opaque>,
    #[thread_aware(with = tag_opaque)]
    opaque: Opaque,
    #[thread_aware(with = relocators::twice::<u8>)]
    pair: (u8, Tracker),
    marker: PhantomData<fn() -> V>,
}

#[test]
fn generics_skip_and_with() {
    let (a, b) = affinities();
    let borrowed = Opaque(5);
    let rc = Rc::new(Opaque(6));
    let value: Generic<'_, Tracker, Tracker, 2> = Generic {
        items: vec![Tracker::new(1), Tracker::new(2)],
        array: [Tracker::new(3), Tracker::new(4)],
        maybe: Some(Tracker::new(5)),
        default: 3u16,
        skipped: &borrowed,
        skipped_rc: Rc::clone(&rc),
        opaque: Opaque(4),
        pair: (9, Tracker::new(6)),
        marker: PhantomData,
    };
    let moved = value.relocated(a, b);
    moved.items[0].assert_moved(1, a, b);
    moved.items[1].assert_moved(2, a, b);
    assert_eq!(moved.items[1].describe(), "tracker 2");
    moved.array[0].assert_moved(3, a, b);
    moved.array[1].assert_moved(4, a, b);
    moved.maybe.as_ref().unwrap().assert_moved(5, a, b);
    assert_eq!(moved.default, 3);
    assert!(std::ptr::eq(moved.skipped, &borrowed));
    assert!(Rc::ptr_eq(&moved.skipped_rc, &rc));
    assert_eq!(
        moved.opaque.0, 4020,
        "the with function got (source, destination)"
    );
    assert_eq!(moved.pair.0, 9);
    assert_eq!(moved.pair.1.moves, vec![(a, b), (a, b)]);
    const { assert!(!<Generic<'static, Tracker, u8, 1> as ThreadAware>::INERT) };
}

/// `T` is used only in a skipped field, `U` only in `PhantomData`, `W`
/// only in a `with` field: none of them needs `ThreadAware`.
#[derive(ThreadAware)]
struct NoBounds<T, U, W> {
    #[thread_aware(skip)]
    skipped: T,
    marker: PhantomData<U>,
    #[thread_aware(with = keep)]
    with: W,
}

fn keep<W>(value: W, _: MemoryAffinity, _: MemoryAffinity) -> W {
    value
}

#[test]
fn params_in_skipped_phantom_and_with_fields_get_no_bound() {
    let (a, b) = affinities();
    let moved = NoBounds::<Opaque, Opaque, Opaque> {
        skipped: Opaque(1),
        marker: PhantomData,
        with: Opaque(2),
    }
    .relocated(a, b);
    assert_eq!((moved.skipped.0, moved.with.0), (1, 2));
}

// --- INERT ----------------------------------------------------------------

#[derive(ThreadAware)]
struct AllInert {
    a: u8,
    b: String,
    c: Unaware<Opaque>,
    d: PhantomData<Opaque>,
}

#[derive(ThreadAware)]
struct OneNotInert {
    a: u8,
    b: Tracker,
}

#[derive(ThreadAware)]
struct SkipDoesNotCount {
    a: u8,
    #[thread_aware(skip)]
    b: Tracker,
}

#[derive(ThreadAware)]
struct WithMakesItNotInert {
    a: u8,
    #[thread_aware(with = keep)]
    b: u8,
}

#[derive(ThreadAware)]
struct GenericInert<T>(T, u8);

#[derive(ThreadAware, Clone)]
enum EnumInert {
    A(u8),
    B { s: String },
    C,
}

#[derive(ThreadAware)]
enum EnumNotInert {
    A(u8),
    B(Vec<Tracker>),
}

#[test]
fn inert_is_the_conjunction_over_relocated_fields() {
    const { assert!(<AllInert as ThreadAware>::INERT) };
    const { assert!(!<OneNotInert as ThreadAware>::INERT) };
    const { assert!(<SkipDoesNotCount as ThreadAware>::INERT) };
    const { assert!(!<WithMakesItNotInert as ThreadAware>::INERT) };
    const { assert!(<GenericInert<u32> as ThreadAware>::INERT) };
    const { assert!(!<GenericInert<Tracker> as ThreadAware>::INERT) };
    const { assert!(<EnumInert as ThreadAware>::INERT) };
    const { assert!(!<EnumNotInert as ThreadAware>::INERT) };
    const { assert!(<Unit as ThreadAware>::INERT) };
    const { assert!(<EmptyNamed as ThreadAware>::INERT) };
    const { assert!(<Shapes as ThreadAware>::INERT == <Tracker as ThreadAware>::INERT) };
    // A skipped non-inert field is moved as is: inert, and untouched.
    let (a, b) = affinities();
    let moved = SkipDoesNotCount {
        a: 1,
        b: Tracker::new(1),
    }
    .relocated(a, b);
    assert!(moved.b.moves.is_empty());
    // An inert container of derived inert values relocates in O(1).
    let many = vec![EnumInert::C; 0];
    assert!(many.relocated(a, b).is_empty());
}

// --- hygiene ---------------------------------------------------------------

/// Fields named like the generated function's parameters and bindings.
#[derive(ThreadAware)]
struct Hygiene {
    source: Tracker,
    destination: Tracker,
    self_: Tracker,
    __thread_aware_source: Tracker,
    __thread_aware_field_0: Tracker,
    #[thread_aware(with = source)]
    r#type: Tracker,
}

/// A `with` function named `source`.
fn source(mut value: Tracker, s: MemoryAffinity, d: MemoryAffinity) -> Tracker {
    value.id += 100;
    value.moves.push((s, d));
    value
}

#[derive(ThreadAware)]
enum HygieneEnum {
    V {
        source: Tracker,
        destination: Tracker,
    },
    W(Tracker),
}

#[test]
fn fields_named_source_and_destination_work() {
    let (a, b) = affinities();
    let moved = Hygiene {
        source: Tracker::new(1),
        destination: Tracker::new(2),
        self_: Tracker::new(3),
        __thread_aware_source: Tracker::new(4),
        __thread_aware_field_0: Tracker::new(5),
        r#type: Tracker::new(6),
    }
    .relocated(a, b);
    moved.source.assert_moved(1, a, b);
    moved.destination.assert_moved(2, a, b);
    moved.self_.assert_moved(3, a, b);
    moved.__thread_aware_source.assert_moved(4, a, b);
    moved.__thread_aware_field_0.assert_moved(5, a, b);
    moved.r#type.assert_moved(106, a, b);

    match (HygieneEnum::V {
        source: Tracker::new(1),
        destination: Tracker::new(2),
    })
    .relocated(a, b)
    {
        HygieneEnum::V {
            source,
            destination,
        } => {
            source.assert_moved(1, a, b);
            destination.assert_moved(2, a, b);
        }
        HygieneEnum::W(_) => panic!("variant changed"),
    }
    match HygieneEnum::W(Tracker::new(3)).relocated(a, b) {
        HygieneEnum::W(t) => t.assert_moved(3, a, b),
        HygieneEnum::V { .. } => panic!("variant changed"),
    }
}

// --- recursion, bound, crate -----------------------------------------------

#[derive(ThreadAware)]
enum List<T> {
    Nil,
    Cons(T, Box<List<T>>),
}

#[derive(ThreadAware)]
struct Tree {
    value: Tracker,
    children: Vec<Self>,
}

#[test]
fn recursive_types_derive_and_relocate() {
    let (a, b) = affinities();
    let list = List::Cons(
        Tracker::new(1),
        Box::new(List::Cons(Tracker::new(2), Box::new(List::Nil))),
    );
    let List::Cons(first, rest) = list.relocated(a, b) else {
        panic!("variant changed")
    };
    first.assert_moved(1, a, b);
    let List::Cons(second, rest) = *rest else {
        panic!("variant changed")
    };
    second.assert_moved(2, a, b);
    assert!(matches!(*rest, List::Nil));
    // A recursive field is conservatively not inert.
    const { assert!(!<List<u8> as ThreadAware>::INERT) };

    let tree = Tree {
        value: Tracker::new(1),
        children: vec![Tree {
            value: Tracker::new(2),
            children: Vec::new(),
        }],
    };
    let moved = tree.relocated(a, b);
    moved.value.assert_moved(1, a, b);
    moved.children[0].value.assert_moved(2, a, b);
}

/// `bound` gives the `T: Clone` that the `with` function needs (nothing
/// is inferred for a `with` field).
#[derive(ThreadAware)]
#[thread_aware(bound = "T: Clone")]
struct Bounded<T> {
    #[thread_aware(with = clone_rc)]
    shared: Rc<T>,
    tracker: Tracker,
}

fn clone_rc<T: Clone>(value: Rc<T>, _: MemoryAffinity, _: MemoryAffinity) -> Rc<T> {
    Rc::new(T::clone(&value))
}

#[test]
fn bound_replaces_the_inferred_bounds() {
    let (a, b) = affinities();
    let shared = Rc::new(5u8);
    let moved = Bounded {
        shared: Rc::clone(&shared),
        tracker: Tracker::new(1),
    }
    .relocated(a, b);
    assert!(!Rc::ptr_eq(&moved.shared, &shared));
    assert_eq!(*moved.shared, 5);
    moved.tracker.assert_moved(1, a, b);
}

mod renamed {
    pub use thread_aware as ta;
}

#[derive(ThreadAware)]
#[thread_aware(crate = renamed::ta)]
struct ThroughReexport {
    tracker: Tracker,
}

#[test]
fn crate_path_is_used() {
    let (a, b) = affinities();
    ThroughReexport {
        tracker: Tracker::new(1),
    }
    .relocated(a, b)
    .tracker
    .assert_moved(1, a, b);
}
