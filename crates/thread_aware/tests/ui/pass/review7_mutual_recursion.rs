// Review7 finding 2: mutually recursive types (an AST) could not derive
// `ThreadAware`: each `INERT` depended on the other's (E0391), and the
// crate docs pointed at `bound = "..."`, which does not touch `INERT`.
// `recursive` on every type of the cycle.
#![deny(warnings)]
use thread_aware::{ThreadAware, create_manual_affinities};

#[derive(ThreadAware)]
#[thread_aware(recursive)]
enum Expr {
    Lit(u32),
    Block(Box<Block>),
}

#[derive(ThreadAware)]
#[thread_aware(recursive)]
struct Block {
    stmts: Vec<Expr>,
}

fn main() {
    let a = create_manual_affinities(&[2]);
    let b = Block {
        stmts: vec![Expr::Lit(1), Expr::Block(Box::new(Block { stmts: vec![] }))],
    };
    let b = b.relocated(a[0], a[1]);
    assert_eq!(b.stmts.len(), 2);
}
