use thread_aware::ThreadAware;

#[derive(ThreadAware)]
#[thread_aware(recursive = true)]
struct WithValue(u8);

#[derive(ThreadAware)]
#[thread_aware(recursive, recursive)]
struct Twice(u8);

fn main() {}
