use thread_aware::{MemoryAffinity, ThreadAware};

#[derive(ThreadAware)]
struct S {
    #[thread_aware(skip, with = f)]
    a: u8,
    #[thread_aware(with = f)]
    #[thread_aware(skip)]
    b: u8,
}

fn f(v: u8, _: MemoryAffinity, _: MemoryAffinity) -> u8 {
    v
}

fn main() {}
