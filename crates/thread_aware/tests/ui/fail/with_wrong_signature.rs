use thread_aware::{MemoryAffinity, ThreadAware};

#[derive(ThreadAware)]
struct S {
    #[thread_aware(with = wrong_return)]
    a: u8,
    #[thread_aware(with = missing)]
    b: u8,
}

fn wrong_return(v: u8, _: MemoryAffinity, _: MemoryAffinity) -> u16 {
    v.into()
}

fn main() {}
