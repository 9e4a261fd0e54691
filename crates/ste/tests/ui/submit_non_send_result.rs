use std::rc::Rc;

fn main() {
    let thread = ste::Thread::new().unwrap();
    let rc: Rc<u32> = thread.submit(|| Rc::new(5)).unwrap();
    assert_eq!(*rc, 5);
}
