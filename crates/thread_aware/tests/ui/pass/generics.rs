//! Lifetimes, const parameters, defaults, where clauses, `?Sized`, skip,
//! with, `PhantomData`, `Self` in a field, and `bound`: all derive
//! warning-free and keep the type's own where clause.
#![deny(warnings)]

use std::fmt::Debug;
use std::marker::PhantomData;
use thread_aware::{MemoryAffinity, ThreadAware, Unaware, create_manual_affinities};

#[derive(ThreadAware)]
struct Everything<'a, 'b: 'a, T, U: ?Sized, const N: usize, V = String>
where
    T: Debug + 'a,
    V: Default,
{
    array: [T; N],
    default: V,
    #[thread_aware(skip)]
    borrowed: &'a T,
    #[thread_aware(skip)]
    unsized_ref: &'b U,
    marker: PhantomData<(&'a U, fn() -> V)>,
    #[thread_aware(with = relocate_rc)]
    rc: std::rc::Rc<T>,
}

fn relocate_rc<T>(
    value: std::rc::Rc<T>,
    _source: MemoryAffinity,
    _destination: MemoryAffinity,
) -> std::rc::Rc<T> {
    value
}

#[derive(ThreadAware)]
enum Either<L, R> {
    Left(L),
    Right { value: R },
}

/// Recursion through the type's own name and through `Self`.
#[derive(ThreadAware)]
struct Node<T> {
    value: T,
    next: Option<Box<Node<T>>>,
    children: Vec<Self>,
}

/// `bound = ""`: no inferred bound; the skipped field's type is not
/// `ThreadAware` anyway.
#[derive(ThreadAware)]
#[thread_aware(bound = "")]
struct NoBound<T> {
    #[thread_aware(skip)]
    value: std::cell::Cell<T>,
    count: u8,
}

/// An associated type in a field type.
#[derive(ThreadAware)]
struct Assoc<I: Iterator> {
    item: Option<I::Item>,
    #[thread_aware(skip)]
    iter: I,
}

/// A lifetime-only field type: bounded as `&'a str: ThreadAware`, so the
/// impl exists for `'a = 'static`.
#[derive(ThreadAware)]
struct Borrowed<'a> {
    text: &'a str,
}

/// A const parameter with a default, in a field type.
#[derive(ThreadAware)]
struct Buffer<const N: usize = 4> {
    bytes: [u8; N],
}

/// A field type that is a macro.
macro_rules! vec_of {
    ($t:ty) => { Vec<$t> };
}

#[derive(ThreadAware)]
struct ByMacro<T> {
    items: vec_of!(T),
}

fn main() {
    let a = create_manual_affinities(&[2]);
    let (s, d) = (a[0], a[1]);
    let x = 5u8;
    let text: &str = "unsized";
    let every: Everything<'_, '_, u8, str, 2> = Everything {
        array: [1, 2],
        default: String::from("d"),
        borrowed: &x,
        unsized_ref: text,
        marker: PhantomData,
        rc: std::rc::Rc::new(3),
    }
    .relocated(s, d);
    assert_eq!((every.array, every.default.as_str(), *every.borrowed), ([1, 2], "d", 5));
    assert_eq!((every.unsized_ref, *every.rc), ("unsized", 3));
    assert!(every.marker == PhantomData);

    let either: Either<u8, Unaware<std::rc::Rc<u8>>> = Either::Left(1);
    assert!(matches!(either.relocated(s, d), Either::Left(1)));
    if let Either::Right { value } = (Either::<u8, String>::Right { value: "r".into() }).relocated(s, d) {
        assert_eq!(value, "r");
    }

    let node = Node {
        value: 1u32,
        next: Some(Box::new(Node { value: 2, next: None, children: Vec::new() })),
        children: Vec::new(),
    }
    .relocated(s, d);
    assert_eq!((node.value, node.next.map(|n| n.value), node.children.len()), (1, Some(2), 0));

    let no_bound = NoBound { value: std::cell::Cell::new(std::rc::Rc::new(1)), count: 2 }.relocated(s, d);
    assert_eq!((*no_bound.value.take(), no_bound.count), (1, 2));

    let assoc = Assoc { item: Some(1u8), iter: std::iter::empty::<u8>() }.relocated(s, d);
    assert_eq!(assoc.item, Some(1));
    assert!(assoc.iter.size_hint() == (0, Some(0)));

    let borrowed = Borrowed { text: "static" }.relocated(s, d);
    assert_eq!(borrowed.text, "static");
    let buffer: Buffer = Buffer { bytes: [1; 4] }.relocated(s, d);
    assert_eq!(buffer.bytes, [1; 4]);

    let by_macro = ByMacro { items: vec![1u8] }.relocated(s, d);
    assert_eq!(by_macro.items, [1]);
}
