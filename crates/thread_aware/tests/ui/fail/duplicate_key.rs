use thread_aware::ThreadAware;

#[derive(ThreadAware)]
struct Skip {
    #[thread_aware(skip, skip)]
    a: u8,
    #[thread_aware(skip)]
    #[thread_aware(skip)]
    b: u8,
}

#[derive(ThreadAware)]
struct With {
    #[thread_aware(with = f, with = f)]
    a: u8,
}

#[derive(ThreadAware)]
#[thread_aware(bound = "")]
#[thread_aware(bound = "", crate = thread_aware, crate = thread_aware)]
struct Container {
    a: u8,
}

fn f(v: u8, _: thread_aware::MemoryAffinity, _: thread_aware::MemoryAffinity) -> u8 {
    v
}

fn main() {}
