use std::sync::Arc;
use thread_aware::ThreadAware;

struct NotThreadAware;

#[derive(ThreadAware)]
struct Named {
    fine: u8,
    shared: Arc<u8>,
}

#[derive(ThreadAware)]
struct Tuple(u8, NotThreadAware);

#[derive(ThreadAware)]
enum Enum {
    A { fine: u8 },
    B(std::rc::Rc<u8>),
}

fn main() {}
