//! Every provided impl forwards relocation to every element (a tracker type
//! proves it), containers of inert elements relocate in O(1) without touching
//! an element (a tripwire type proves it, and a 64 MiB `Vec<u8>` keeps its
//! buffer), and there is deliberately no impl for `Arc` or `Rc`.

use static_assertions::{assert_impl_all, assert_not_impl_any};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::hash::{BuildHasherDefault, DefaultHasher, Hash, Hasher};
use std::sync::Arc;
use thread_aware::{MemoryAffinity, ThreadAware, Unaware, create_manual_affinities};

assert_not_impl_any!(Arc<u8>: ThreadAware);
assert_not_impl_any!(std::rc::Rc<u8>: ThreadAware);
assert_not_impl_any!(Vec<Arc<u8>>: ThreadAware);
assert_impl_all!(Unaware<Arc<u8>>: ThreadAware);
assert_impl_all!(Unaware<std::rc::Rc<u8>>: ThreadAware);

/// An element that records every relocation it goes through. Equality,
/// hashing and order look at `id` only, so it can be a map key or set
/// member whose identity survives relocation.
#[derive(Clone, Debug)]
struct Tracker {
    id: u32,
    moves: Vec<(MemoryAffinity, MemoryAffinity)>,
}

fn t(id: u32) -> Tracker {
    Tracker { id, moves: vec![] }
}

impl ThreadAware for Tracker {
    fn relocated(mut self, source: MemoryAffinity, destination: MemoryAffinity) -> Self {
        self.moves.push((source, destination));
        self
    }
}

impl PartialEq for Tracker {
    fn eq(&self, other: &Self) -> bool {
        self.id == other.id
    }
}
impl Eq for Tracker {}
impl Hash for Tracker {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.id.hash(state);
    }
}
impl PartialOrd for Tracker {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Tracker {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.id.cmp(&other.id)
    }
}

/// Claims to be inert and panics if relocated anyway: a container that
/// skips inert elements never calls it. (Its `INERT` is a deliberate lie,
/// only to prove that nothing is touched.)
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct Tripwire(u32);

impl ThreadAware for Tripwire {
    const INERT: bool = true;
    fn relocated(self, _: MemoryAffinity, _: MemoryAffinity) -> Self {
        panic!("an inert element was relocated one by one");
    }
}

struct Moves {
    a: MemoryAffinity,
    b: MemoryAffinity,
}

impl Moves {
    fn new() -> Self {
        let x = create_manual_affinities(&[2, 2]);
        Self { a: x[1], b: x[2] }
    }

    /// Exactly one relocation, (a, b).
    fn check(&self, tracker: &Tracker) {
        assert_eq!(
            tracker.moves,
            [(self.a, self.b)],
            "tracker {} was not relocated exactly once from a to b",
            tracker.id
        );
    }

    fn go<T: ThreadAware>(&self, v: T) -> T {
        v.relocated(self.a, self.b)
    }
}

#[test]
fn option_result_box() {
    let m = Moves::new();
    m.check(&m.go(Some(t(1))).unwrap());
    assert!(m.go(None::<Tracker>).is_none());
    m.check(&m.go(Ok::<Tracker, Tracker>(t(1))).unwrap());
    m.check(&m.go(Err::<Tracker, Tracker>(t(1))).unwrap_err());
    let b: Box<Tracker> = m.go(Box::new(t(1)));
    m.check(&b);
    m.check(&m.go(Some(Box::new(Some(t(1))))).unwrap().unwrap());
}

#[test]
fn box_relocates_in_place() {
    let m = Moves::new();
    let b = Box::new(t(1));
    let before: *const Tracker = &*b;
    let b = m.go(b);
    assert_eq!(&*b as *const Tracker, before);
    m.check(&b);
}

#[test]
fn arrays() {
    let m = Moves::new();
    let a = m.go([t(0), t(1), t(2), t(3)]);
    a.iter().for_each(|x| m.check(x));
    assert_eq!(a.iter().map(|x| x.id).collect::<Vec<_>>(), [0, 1, 2, 3]);
    let empty: [Tracker; 0] = m.go([]);
    assert!(empty.is_empty());
}

#[test]
fn vec_and_vecdeque() {
    let m = Moves::new();
    let v = m.go((0..100).map(t).collect::<Vec<_>>());
    assert_eq!(v.len(), 100);
    v.iter().for_each(|x| m.check(x));
    assert!(v.iter().map(|x| x.id).eq(0..100), "order kept");

    // A deque whose contents wrap around the end of its buffer.
    let mut d: VecDeque<Tracker> = VecDeque::with_capacity(8);
    for i in 0..6 {
        d.push_back(t(i));
    }
    for _ in 0..4 {
        d.pop_front();
    }
    for i in 6..10 {
        d.push_back(t(i));
    }
    let d = m.go(d);
    d.iter().for_each(|x| m.check(x));
    assert!(d.iter().map(|x| x.id).eq(4..10), "order kept");
}

#[test]
fn hash_map_keys_and_values_hash_set() {
    let m = Moves::new();
    let map: HashMap<Tracker, Tracker> = (0..50).map(|i| (t(i), t(100 + i))).collect();
    let map = m.go(map);
    assert_eq!(map.len(), 50);
    for (k, v) in &map {
        m.check(k);
        m.check(v);
        assert_eq!(v.id, 100 + k.id);
    }
    assert_eq!(map[&t(7)].id, 107, "lookups work after relocation");

    let set: HashSet<Tracker> = (0..50).map(t).collect();
    let set = m.go(set);
    assert_eq!(set.len(), 50);
    set.iter().for_each(|x| m.check(x));
    assert!(set.contains(&t(49)));

    // Any `BuildHasher + Clone`, kept across relocation.
    type Fixed = BuildHasherDefault<DefaultHasher>;
    let mut map: HashMap<Tracker, u8, Fixed> = HashMap::default();
    map.insert(t(1), 1);
    let map = m.go(map);
    m.check(map.keys().next().unwrap());
    let mut set: HashSet<Tracker, Fixed> = HashSet::default();
    set.insert(t(1));
    m.check(m.go(set).iter().next().unwrap());
}

#[test]
fn btree_map_and_set() {
    let m = Moves::new();
    let map: BTreeMap<Tracker, Tracker> = (0..50).map(|i| (t(i), t(100 + i))).collect();
    let map = m.go(map);
    assert!(map.keys().map(|k| k.id).eq(0..50));
    for (k, v) in &map {
        m.check(k);
        m.check(v);
    }
    let set: BTreeSet<Tracker> = (0..50).map(t).collect();
    let set = m.go(set);
    assert!(set.iter().map(|k| k.id).eq(0..50));
    set.iter().for_each(|x| m.check(x));
}

#[test]
fn nested_containers_reach_the_innermost_element() {
    let m = Moves::new();
    let v: Vec<Option<(u8, Box<[Tracker; 2]>)>> = vec![Some((1, Box::new([t(0), t(1)]))), None];
    let v = m.go(v);
    let (_, inner) = v[0].as_ref().unwrap();
    inner.iter().for_each(|x| m.check(x));
    let map: BTreeMap<u8, Vec<HashSet<Tracker>>> =
        [(1, vec![[t(0), t(1)].into_iter().collect()])].into();
    m.go(map)[&1][0].iter().for_each(|x| m.check(x));
}

macro_rules! tuple_arity {
    ($name:ident: $($i:tt)+) => {
        #[test]
        fn $name() {
            let m = Moves::new();
            let tuple = ($(t($i),)+);
            let tuple = m.go(tuple);
            $( m.check(&tuple.$i); assert_eq!(tuple.$i.id, $i); )+
            // All-inert of the same arity is inert; one tracker makes it not.
            assert!(!<($(tuple_arity!(@ty $i Tracker),)+) as ThreadAware>::INERT);
            assert!(<($(tuple_arity!(@ty $i u8),)+) as ThreadAware>::INERT);
        }
    };
    (@ty $i:tt $t:ty) => { $t };
}

tuple_arity!(tuple_1: 0);
tuple_arity!(tuple_2: 0 1);
tuple_arity!(tuple_3: 0 1 2);
tuple_arity!(tuple_4: 0 1 2 3);
tuple_arity!(tuple_5: 0 1 2 3 4);
tuple_arity!(tuple_6: 0 1 2 3 4 5);
tuple_arity!(tuple_7: 0 1 2 3 4 5 6);
tuple_arity!(tuple_8: 0 1 2 3 4 5 6 7);
tuple_arity!(tuple_9: 0 1 2 3 4 5 6 7 8);
tuple_arity!(tuple_10: 0 1 2 3 4 5 6 7 8 9);
tuple_arity!(tuple_11: 0 1 2 3 4 5 6 7 8 9 10);
tuple_arity!(tuple_12: 0 1 2 3 4 5 6 7 8 9 10 11);

#[test]
fn a_tuple_mixing_inert_and_tracked_elements() {
    let m = Moves::new();
    let (x, y, z) = m.go((7_u8, t(1), String::from("s")));
    assert_eq!((x, z.as_str()), (7, "s"));
    m.check(&y);
    const { assert!(!<(u8, Tracker) as ThreadAware>::INERT) };
    const { assert!(<(u8, String, (), Unaware<Tracker>) as ThreadAware>::INERT) };
}

#[test]
fn inert_flags() {
    fn inert<T: ThreadAware>() -> bool {
        T::INERT
    }
    assert!(inert::<u8>() && inert::<String>() && inert::<()>() && inert::<&'static str>());
    assert!(inert::<Vec<u8>>());
    assert!(inert::<Vec<Vec<String>>>());
    assert!(inert::<Option<Box<[u64; 4]>>>());
    assert!(inert::<Result<u8, String>>());
    assert!(inert::<HashMap<String, Vec<u8>>>());
    assert!(inert::<BTreeMap<u8, (u8, u16)>>());
    assert!(inert::<VecDeque<u8>>() && inert::<HashSet<u8>>() && inert::<BTreeSet<u8>>());
    assert!(inert::<Unaware<Tracker>>() && inert::<Unaware<Arc<Tracker>>>());
    assert!(inert::<Vec<Unaware<Arc<std::sync::Mutex<u8>>>>>());
    assert!(inert::<std::marker::PhantomData<Tracker>>());

    assert!(!inert::<Tracker>());
    assert!(!inert::<Vec<Tracker>>());
    assert!(!inert::<Option<Tracker>>());
    assert!(!inert::<Result<u8, Tracker>>() && !inert::<Result<Tracker, u8>>());
    assert!(!inert::<Box<Tracker>>() && !inert::<[Tracker; 3]>());
    assert!(!inert::<HashMap<u8, Tracker>>() && !inert::<HashMap<Tracker, u8>>());
    assert!(!inert::<BTreeMap<u8, Tracker>>() && !inert::<BTreeMap<Tracker, u8>>());
    assert!(!inert::<VecDeque<Tracker>>() && !inert::<HashSet<Tracker>>());
    assert!(!inert::<BTreeSet<Tracker>>());
    assert!(!inert::<Vec<Vec<Option<Tracker>>>>());
}

/// Containers of inert elements never look at an element.
#[test]
fn inert_containers_touch_no_element() {
    let m = Moves::new();
    let w = |n: u32| (0..n).map(Tripwire);
    let _ = m.go(w(10).collect::<Vec<_>>());
    let _ = m.go(w(10).collect::<VecDeque<_>>());
    let _ = m.go(w(10).map(|x| (x.clone(), x)).collect::<HashMap<_, _>>());
    let _ = m.go(w(10).collect::<HashSet<_>>());
    let _ = m.go(w(10).map(|x| (x.clone(), x)).collect::<BTreeMap<_, _>>());
    let _ = m.go(w(10).collect::<BTreeSet<_>>());
    let _ = m.go([Tripwire(0), Tripwire(1)]);
    let _ = m.go(Box::new(Tripwire(0)));
    let _ = m.go(vec![vec![Tripwire(0)]]);
    let _ = m.go(Unaware(Tripwire(0)));
}

#[test]
#[should_panic(expected = "an inert element was relocated one by one")]
fn the_tripwire_works() {
    let m = Moves::new();
    let _ = m.go(Tripwire(0));
}

/// 64 MiB (64 KiB under Miri) relocates without a copy: same buffer, same
/// length, same capacity, same bytes.
#[test]
fn a_big_inert_vec_keeps_its_buffer() {
    const SIZE: usize = if cfg!(miri) { 64 << 10 } else { 64 << 20 };
    let m = Moves::new();
    let mut v = vec![0_u8; SIZE];
    v[0] = 1;
    v[SIZE - 1] = 2;
    let (ptr, len, cap) = (v.as_ptr(), v.len(), v.capacity());
    let v = m.go(v);
    assert_eq!((v.as_ptr(), v.len(), v.capacity()), (ptr, len, cap));
    assert_eq!((v[0], v[SIZE - 1]), (1, 2));

    // Same for the other buffer-backed containers and inert wrappers.
    let b: Box<[u64; 1024]> = Box::new([7; 1024]);
    let p: *const [u64; 1024] = &*b;
    assert_eq!(&*m.go(b) as *const [u64; 1024], p);
    let d: VecDeque<u8> = VecDeque::from(vec![1_u8; 4096]);
    let p = d.as_slices().0.as_ptr();
    assert_eq!(m.go(d).as_slices().0.as_ptr(), p);
    let shared = Unaware(Arc::new(vec![0_u8; 16]));
    let p = Arc::as_ptr(&shared.0);
    let moved = m.go(shared);
    assert_eq!(
        Arc::as_ptr(&moved.0),
        p,
        "Unaware<Arc> moves as is: still shared"
    );
}

#[test]
fn primitives_and_std_values_relocate_to_themselves() {
    let m = Moves::new();
    assert_eq!(m.go(u128::MAX), u128::MAX);
    assert_eq!(m.go(-5_i128), -5);
    assert_eq!(m.go(std::num::NonZeroU32::new(3).unwrap()).get(), 3);
    assert_eq!(m.go(String::from("x")), "x");
    assert_eq!(m.go("static"), "static");
    assert_eq!(
        m.go(std::time::Duration::from_millis(5)),
        std::time::Duration::from_millis(5)
    );
    let addr: std::net::SocketAddr = "127.0.0.1:80".parse().unwrap();
    assert_eq!(m.go(addr), addr);
    assert_eq!(
        m.go(std::path::PathBuf::from("/a")),
        std::path::PathBuf::from("/a")
    );
}
