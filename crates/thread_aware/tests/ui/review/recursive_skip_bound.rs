#![deny(warnings)]
use std::marker::PhantomData;
use std::rc::Rc;
use thread_aware::ThreadAware;

#[derive(ThreadAware)]
struct RecursiveSkip<T, U> {
    value: T,
    next: Option<Box<RecursiveSkip<T, U>>>,
    #[thread_aware(skip)]
    extra: Option<U>,
}

#[derive(ThreadAware)]
struct RecursivePhantom<T, U> {
    value: T,
    next: Option<Box<RecursivePhantom<T, U>>>,
    marker: PhantomData<U>,
}

fn is_thread_aware<X: ThreadAware>() {}

fn main() {
    // `Rc<u8>` is not `ThreadAware`, and `U` is never relocated.
    is_thread_aware::<RecursiveSkip<u32, Rc<u8>>>();
    is_thread_aware::<RecursivePhantom<u32, Rc<u8>>>();
    let _ = RecursiveSkip::<u32, Rc<u8>> {
        value: 1,
        next: None,
        extra: None,
    };
    let _ = RecursivePhantom::<u32, Rc<u8>> {
        value: 1,
        next: None,
        marker: PhantomData,
    };
}
