use thread_aware::{ThreadAware, create_manual_affinities};

// The inferred bounds are `Vec<T>: ThreadAware` and `U: ThreadAware`: an
// instantiation that breaks one is reported at that field.
#[derive(ThreadAware)]
struct Wrapper<T, U> {
    inner: Vec<T>,
    other: U,
}

struct NotThreadAware;

fn needs_thread_aware<V: ThreadAware>(_: V) {}

fn main() {
    let a = create_manual_affinities(&[2]);
    let _ = Wrapper { inner: vec![NotThreadAware], other: 1u8 }.relocated(a[0], a[1]);
    needs_thread_aware(Wrapper { inner: vec![1u8], other: NotThreadAware });
}
