use thread_aware::ThreadAware;

// `bound = ""` drops the inferred `T: ThreadAware`, so the body cannot
// relocate the field: the error points at the field's type.
#[derive(ThreadAware)]
#[thread_aware(bound = "")]
struct S<T> {
    value: T,
}

fn main() {}
