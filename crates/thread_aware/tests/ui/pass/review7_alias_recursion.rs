// Review7 finding 2: recursion the derive cannot see by name (through a
// type alias, the classic `type Link = Option<Box<Node>>`) made the
// generated `INERT` const depend on itself (E0391, a const-eval cycle), and
// no attribute avoided it. `recursive` says so: `INERT` is then `false`.
#![deny(warnings)]
use thread_aware::{ThreadAware, create_manual_affinities};

type Link = Option<Box<Node>>;

#[derive(ThreadAware)]
#[thread_aware(recursive)]
struct Node {
    elem: i32,
    next: Link,
}

fn main() {
    let a = create_manual_affinities(&[2]);
    let list = Node {
        elem: 1,
        next: Some(Box::new(Node { elem: 2, next: None })),
    };
    const { assert!(!<Node as ThreadAware>::INERT) };
    let list = list.relocated(a[0], a[1]);
    assert_eq!(list.elem + list.next.map_or(0, |n| n.elem), 3);
}
