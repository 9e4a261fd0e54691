// A `submit` closure borrowing the caller's stack cannot smuggle the borrow
// out through the result.
fn main() {
    let thread = ste::Thread::new().unwrap();
    let r: &'static mut u32 = {
        let mut local = 1u32;
        thread.submit(|| &mut local).unwrap()
    };
    *r += 1;
}
