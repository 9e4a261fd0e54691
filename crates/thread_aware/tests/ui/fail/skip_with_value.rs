use thread_aware::ThreadAware;

#[derive(ThreadAware)]
struct S {
    #[thread_aware(skip = true)]
    a: u8,
    #[thread_aware(skip(always))]
    b: u8,
}

fn main() {}
