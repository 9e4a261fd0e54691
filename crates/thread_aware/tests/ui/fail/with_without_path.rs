use thread_aware::ThreadAware;

#[derive(ThreadAware)]
struct S {
    #[thread_aware(with)]
    a: u8,
    #[thread_aware(with = "f")]
    b: u8,
    #[thread_aware(with = |v, _, _| v)]
    c: u8,
}

fn main() {}
