use thread_aware::ThreadAware;

#[derive(ThreadAware)]
#[thread_aware(inert)]
struct Container {
    a: u8,
}

#[derive(ThreadAware)]
struct Field {
    #[thread_aware(skipp)]
    a: u8,
    #[thread_aware(relocate = my_fn)]
    b: u8,
}

fn main() {}
