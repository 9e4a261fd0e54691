use thread_aware::ThreadAware;

#[derive(ThreadAware)]
#[thread_aware]
struct Bare(u8);

#[derive(ThreadAware)]
struct Forms {
    #[thread_aware = "skip"]
    a: u8,
    #[thread_aware()]
    b: u8,
    #[thread_aware(skip;)]
    c: u8,
}

#[derive(ThreadAware)]
enum Variant {
    #[thread_aware(skip)]
    A(u8),
}

fn main() {}
