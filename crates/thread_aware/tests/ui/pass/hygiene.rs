//! Names that could collide with the generated code: fields, a `with`
//! function and a generic parameter named like the function's parameters,
//! a local `ThreadAware` trait and `MemoryAffinity` type, and a `Self`
//! named field type of the same name in another module.
#![deny(warnings)]
#![allow(non_camel_case_types)]

mod shadowing {
    /// A different trait with the same name.
    #[allow(dead_code)]
    pub trait ThreadAware {}
    /// A different type with the same name.
    #[allow(dead_code)]
    pub struct MemoryAffinity;
}

use shadowing::*;

#[derive(::thread_aware::ThreadAware)]
struct Fields<source: Copy> {
    source: source,
    destination: u8,
    self_: u8,
    __thread_aware_source: u8,
    #[thread_aware(with = destination)]
    other: u8,
}

fn destination(
    value: u8,
    _source: ::thread_aware::MemoryAffinity,
    _destination: ::thread_aware::MemoryAffinity,
) -> u8 {
    value + 1
}

#[derive(::thread_aware::ThreadAware)]
enum Variants {
    Source { source: u8, destination: u8 },
    Destination(u8),
}

fn main() {
    use ::thread_aware::ThreadAware as _;
    let a = ::thread_aware::create_manual_affinities(&[2]);
    let f = Fields { source: 1u8, destination: 2, self_: 3, __thread_aware_source: 4, other: 5 }
        .relocated(a[0], a[1]);
    assert_eq!((f.source, f.destination, f.self_, f.__thread_aware_source, f.other), (1, 2, 3, 4, 6));
    if let Variants::Source { source, destination } =
        (Variants::Source { source: 1, destination: 2 }).relocated(a[0], a[1])
    {
        assert_eq!((source, destination), (1, 2));
    }
    assert!(matches!(Variants::Destination(3).relocated(a[0], a[1]), Variants::Destination(3)));
    let _ = MemoryAffinity;
}
