// A `Tagged` holding a borrow of the caller's stack: dropped off the worker,
// its destructor would run after the borrow ended (a use-after-free), so it
// must not compile.
struct Guard<'a>(&'a mut u32);

impl Drop for Guard<'_> {
    fn drop(&mut self) {
        *self.0 += 1;
    }
}

fn main() {
    let thread = ste::Thread::new().unwrap();
    let mut local = 0u32;
    let tagged = thread.submit(|| ste::Tagged::new(Guard(&mut local))).unwrap();
    drop(tagged);
}
