// Review7 finding 1: a newtype over a *different* type that happens to have
// the same name (another module's `Sender<T>`) was taken for a recursive
// type: no `inner::Sender<T>: ThreadAware` bound was inferred and the
// generated impl did not compile (E0277 on `T`).
#![deny(warnings)]
use thread_aware::ThreadAware;

mod inner {
    use thread_aware::ThreadAware;

    #[derive(ThreadAware)]
    pub struct Sender<T>(pub Vec<T>);
}

#[derive(ThreadAware)]
struct Sender<T>(inner::Sender<T>);

fn is_thread_aware<X: ThreadAware>() {}

fn main() {
    is_thread_aware::<Sender<u32>>();
    let _ = Sender(inner::Sender(vec![1_u32]));
}
