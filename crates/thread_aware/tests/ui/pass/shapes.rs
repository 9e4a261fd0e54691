//! Every shape derives, warning-free.
#![deny(warnings)]

use thread_aware::{ThreadAware, create_manual_affinities};

#[derive(ThreadAware)]
struct Named {
    a: u8,
    b: String,
}

#[derive(ThreadAware)]
struct Tuple(u8, Vec<u16>);

#[derive(ThreadAware)]
struct Unit;

#[derive(ThreadAware)]
struct EmptyBraces {}

#[derive(ThreadAware)]
enum Shapes {
    Named { a: u8, b: Option<String> },
    Tuple(u8, u16),
    Unit,
}

#[derive(ThreadAware)]
enum SingleVariant {
    Only(Box<u8>),
}

#[derive(ThreadAware)]
enum UnitsOnly {
    A,
    B,
}

#[derive(ThreadAware)]
enum Never {}

#[derive(ThreadAware, Clone, Copy)]
#[repr(C, packed)]
struct Packed {
    a: u8,
    b: u32,
}

#[derive(ThreadAware)]
#[repr(u8)]
enum Discriminants {
    A = 1,
    B = 7,
}

/// `with` and `skip` inside variants.
#[derive(ThreadAware)]
enum VariantAttrs {
    Named {
        #[thread_aware(with = double)]
        doubled: u8,
        #[thread_aware(skip)]
        kept: std::rc::Rc<u8>,
    },
    Tuple(#[thread_aware(with = double)] u8, #[thread_aware(skip)] std::cell::Cell<u8>),
}

fn double(value: u8, _: thread_aware::MemoryAffinity, _: thread_aware::MemoryAffinity) -> u8 {
    value * 2
}

fn main() {
    let a = create_manual_affinities(&[2]);
    let named = Named { a: 1, b: String::new() }.relocated(a[0], a[1]);
    let tuple = Tuple(1, vec![2]).relocated(a[0], a[1]);
    let Unit = Unit.relocated(a[0], a[1]);
    let EmptyBraces {} = EmptyBraces {}.relocated(a[0], a[1]);
    let shapes = [
        Shapes::Named { a: 1, b: None },
        Shapes::Tuple(1, 2),
        Shapes::Unit,
    ]
    .relocated(a[0], a[1]);
    let SingleVariant::Only(only) = SingleVariant::Only(Box::new(3)).relocated(a[0], a[1]);
    let units = UnitsOnly::B.relocated(a[0], a[1]);
    let never: Option<Never> = None.relocated(a[0], a[1]);
    assert_eq!((named.a, named.b.len(), tuple.0, tuple.1.len(), *only), (1, 0, 1, 1, 3));
    assert!(matches!(shapes[2], Shapes::Unit) && matches!(units, UnitsOnly::B) && never.is_none());
    if let Shapes::Named { a, b } = &shapes[0] {
        assert_eq!((*a, b.is_none()), (1, true));
    }
    if let Shapes::Tuple(x, y) = shapes[1] {
        assert_eq!((x, y), (1, 2));
    }
    assert!(!matches!(UnitsOnly::A, UnitsOnly::B));
    let packed = Packed { a: 1, b: 2 }.relocated(a[0], a[1]);
    let (pa, pb) = (packed.a, packed.b);
    assert_eq!((pa, pb), (1, 2));
    assert_eq!(Discriminants::B.relocated(a[0], a[1]) as u8, 7);
    assert_eq!(Discriminants::A as u8, 1);
    if let VariantAttrs::Named { doubled, kept } =
        (VariantAttrs::Named { doubled: 2, kept: std::rc::Rc::new(3) }).relocated(a[0], a[1])
    {
        assert_eq!((doubled, *kept), (4, 3));
    }
    if let VariantAttrs::Tuple(doubled, kept) =
        VariantAttrs::Tuple(5, std::cell::Cell::new(6)).relocated(a[0], a[1])
    {
        assert_eq!((doubled, kept.get()), (10, 6));
    }
}
