use std::rc::Rc;

fn main() {
    let thread = ste::Thread::new().unwrap();
    let shared = Rc::new(5);
    let n = thread.submit(move || *shared + 1).unwrap();
    assert_eq!(n, 6);
}
