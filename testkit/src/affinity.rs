//! Pinning test threads to CPUs (Linux), to make "both sides on one CPU"
//! and "on different CPUs" deterministic in tests of CPU-aware waiting.

/// `cpu_set_t`: 1024 bits on Linux.
const SET_WORDS: usize = 1024 / 64;

unsafe extern "C" {
    fn sched_getaffinity(pid: i32, size: usize, mask: *mut u64) -> i32;
    fn sched_setaffinity(pid: i32, size: usize, mask: *const u64) -> i32;
}

/// The CPUs the calling thread may run on.
pub fn allowed() -> Vec<usize> {
    let mut set = [0u64; SET_WORDS];
    // SAFETY: `set` is writable and as large as the size passed.
    let rc = unsafe { sched_getaffinity(0, size_of_val(&set), set.as_mut_ptr()) };
    assert_eq!(rc, 0, "sched_getaffinity failed");
    (0..SET_WORDS * 64)
        .filter(|&c| set[c / 64] >> (c % 64) & 1 != 0)
        .collect()
}

/// Pins the calling thread to `cpu` (one of [`allowed`]).
pub fn pin(cpu: usize) {
    let mut set = [0u64; SET_WORDS];
    set[cpu / 64] |= 1 << (cpu % 64);
    // SAFETY: `set` is readable and as large as the size passed.
    let rc = unsafe { sched_setaffinity(0, size_of_val(&set), set.as_ptr()) };
    assert_eq!(rc, 0, "sched_setaffinity({cpu}) failed");
}
