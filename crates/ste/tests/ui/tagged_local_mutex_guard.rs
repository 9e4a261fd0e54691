// A `MutexGuard` of a local mutex inside a `Tagged`: the deferred unlock
// could run after the mutex is gone, so it must not compile.
fn main() {
    let thread = ste::Thread::new().unwrap();
    let mutex = std::sync::Mutex::new(0u32);
    let guard = thread
        .submit(|| ste::Tagged::new(mutex.lock().unwrap()))
        .unwrap();
    drop(guard);
}
