//! Review 8 (hostile review of c8f63f4..HEAD, the derive's `names_itself`
//! and `#[thread_aware(recursive)]`).
//!
//! This file did not compile on 7cceecb; each type below compiled (and was
//! relocatable, `INERT == false`) at c8f63f4, or is the textbook use of the
//! new `recursive` attribute. Both findings are fixed: a path from `self`,
//! `crate` or `super` that ends in the type's name counts as the type itself
//! again (a path into a child module still does not: review7's finding 1),
//! and under `recursive` the inferred bounds are the type parameters alone.
//!
//! REVIEW8 FINDING 3 (regression). `names_itself` now counts only `Self`,
//! `Name` and `self::Name` as the type itself. A self-reference spelled with
//! a module prefix (`crate::Node`, `super::m::Node`), which the old "any
//! segment equals the name" rule caught, now reaches the generated `INERT`
//! as `<Option<Box<crate::Node>> as ThreadAware>::INERT`, which depends on
//! itself: E0391 "cycle detected when elaborating drops for `<impl ...>::INERT`".
//!
//! REVIEW8 FINDING 4. `recursive` only sets `INERT = false`; the inferred
//! bounds are unchanged. For a *generic* type whose recursion the derive
//! cannot see (the classic `type Link<T> = Option<Box<Node<T>>>`, or
//! `crate::List<T>`), the impl gets `where Link<T>: ThreadAware`, which
//! needs the impl itself: `Node<u32>` does not implement `ThreadAware`
//! (E0275 "overflow evaluating the requirement `Box<Node<u32>>:
//! ThreadAware`", E0599 on `.relocated`). The attribute documented for
//! exactly this case does not make it compile without `bound = "..."` too.

use thread_aware::{ThreadAware, create_manual_affinities};

/// Finding 3: `crate::` prefix (compiled at c8f63f4).
#[derive(ThreadAware)]
struct CrateNode {
    v: u32,
    next: Option<Box<crate::CrateNode>>,
}

mod m {
    use thread_aware::ThreadAware;

    /// Finding 3: `super::m::` prefix (compiled at c8f63f4).
    #[derive(ThreadAware)]
    pub struct SuperNode {
        pub v: u32,
        pub next: Option<Box<super::m::SuperNode>>,
    }
}

type Link<T> = Option<Box<AliasNode<T>>>;

/// Finding 4: the documented use of `recursive`, made generic.
#[derive(ThreadAware)]
#[thread_aware(recursive)]
struct AliasNode<T> {
    v: T,
    next: Link<T>,
}

#[test]
fn review8_module_prefixed_self_reference_still_derives() {
    let a = create_manual_affinities(&[2]);
    let n = CrateNode {
        v: 1,
        next: Some(Box::new(CrateNode { v: 2, next: None })),
    }
    .relocated(a[0], a[1]);
    assert_eq!(n.v + n.next.map_or(0, |x| x.v), 3);
    const { assert!(!<CrateNode as ThreadAware>::INERT) };
    let s = m::SuperNode { v: 1, next: None }.relocated(a[0], a[1]);
    assert_eq!(s.v, 1);
    const { assert!(!<m::SuperNode as ThreadAware>::INERT) };
}

#[test]
fn review8_recursive_generic_alias_list_derives() {
    let a = create_manual_affinities(&[2]);
    let n = AliasNode {
        v: 1_u32,
        next: Some(Box::new(AliasNode { v: 2, next: None })),
    }
    .relocated(a[0], a[1]);
    assert_eq!(n.v + n.next.map_or(0, |x| x.v), 3);
    const { assert!(!<AliasNode<u32> as ThreadAware>::INERT) };
}
