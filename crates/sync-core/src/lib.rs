//! The one place where the workspace chooses between `std` and [loom].
//!
//! Every product crate of the workspace imports its atomics, cells, `Arc`,
//! `Mutex`, `Condvar`, thread spawning and parking from here. A normal build
//! gets the standard library's types at zero cost. A build with
//! `RUSTFLAGS="--cfg loom"` and the `loom` feature gets loom's instrumented
//! types instead, so that every crate's internals become a loom model without
//! a single `cfg` of their own.
//!
//! Besides the facade it holds the few primitives that more than one crate
//! needs, each in its own module:
//!
//! - [`CachePadded`]: keeps a hot atomic on its own cache line.
//! - [`SpinPolicy`]: the one wait policy every waiting path uses: spin
//!   (50 µs at most, 200 µs for an occasional probe) only while this wait
//!   site's recent spins paid off, otherwise park at once.
//! - [`PeerCpu`]: where a wait's peer last ran, so that a waiter does not
//!   spin on the CPU its peer needs.
//! - [`Backoff`]: a bounded spin, then yield, then "go park" budget, for
//!   retry loops that have nothing to park on.
//! - [`Parker`] / [`Unparker`]: a thread parker whose wake-up only touches
//!   memory the waker co-owns, so a waiter may return and free its stack frame
//!   the instant it observes its flag. Its three-state word is a
//!   [`WakeToken`], shared with exit-left's epoll parker.
//! - [`AtomicWaker`]: a slot holding one [`Waker`](core::task::Waker) that a
//!   task registers and another thread wakes.
//! - [`unwind`]: the rule for panics of foreign code (wakers, destructors),
//!   and the helpers that catch, drop and pass them on by it.
//!
//! # Example
//!
//! ```
//! use sync_core::{Parker, atomic::{AtomicBool, Ordering}, sync::Arc, thread};
//!
//! let parker = Parker::new();
//! let unparker = parker.unparker();
//! let done = Arc::new(AtomicBool::new(false));
//! let done2 = Arc::clone(&done);
//! let t = thread::spawn(move || {
//!     done2.store(true, Ordering::Release);
//!     unparker.unpark();
//! });
//! while !done.load(Ordering::Acquire) {
//!     parker.park();
//! }
//! t.join().unwrap();
//! ```
//!
//! # Guarantees
//!
//! - No allocation anywhere except `Parker::new` (two: the shared block and
//!   the `Waker` around an `Unparker`) and, through it, the first wait at
//!   each nesting depth on a thread in [`with_thread_parker`].
//! - [`Unparker::unpark`] and [`AtomicWaker::wake`] are lock-free; they make
//!   at most one system call (a futex wake through `Thread::unpark`).
//! - Nothing here panics except on misuse documented on the item.
//!
//! # Rules for code built on these primitives
//!
//! Each of these was broken once in this workspace, by a real bug that a
//! hostile review found:
//!
//! - **Deferred work needs `'static`.** Anything that runs after the
//!   caller's scope may have ended (a destructor sent to another thread, a
//!   spawned job) must own what it carries, or it is a use-after-free in
//!   safe code.
//! - **Compare wakers against the stored one.** "Is this waker already
//!   registered?" compares the poll's waker with the clone actually stored
//!   (`stored.will_wake(new)`), never with a waker borrowed at an earlier
//!   poll: a clone may have a different data pointer, and a freed borrowed
//!   waker's address can come back as another task's waker.
//!   [`AtomicWaker::register`] does this.
//! - **Publish before touching foreign code.** A `Waker`'s clone, wake and
//!   drop and a payload's `Drop` may panic or re-enter. Move such objects
//!   out, publish the state change, then call or drop them.
//! - **Panics in wakers and payload destructors lose nothing.** After any
//!   unwind the structure is consistent, no value is lost and no waiter
//!   hangs. [`AtomicWaker`] releases its slot before a waker's panic
//!   propagates. Who gets such a panic, and how a caught one is dropped,
//!   is one rule for the whole workspace: [`unwind`].
//! - **Loom sees only what it tracks.** A caller's stack frame being freed
//!   is invisible to loom unless the model makes that memory loom-tracked
//!   (for example, a write to every cell of the frame once the caller has
//!   observed completion). Mutation-check every model: a model that no
//!   reintroduced bug fails proves nothing.
//!
//! # Model checking
//!
//! ```text
//! RUSTFLAGS="--cfg loom" cargo test --release --features sync-core/loom --target-dir target/loom
//! ```
//!
//! `cargo xtask loom` runs exactly that for every crate. Building with
//! `--cfg loom` but without the `loom` feature stops with a compile error
//! saying so, rather than silently testing the std build.
//!
//! [loom]: https://docs.rs/loom
#![deny(missing_docs)]
#![deny(unsafe_op_in_unsafe_fn)]

#[cfg(all(loom, not(feature = "loom")))]
compile_error!(
    "built with `--cfg loom` but without sync-core's `loom` feature: \
     add `--features sync-core/loom` (or run `cargo xtask loom`)"
);

mod atomic_waker;
mod backoff;
mod cache_padded;
pub mod cell;
mod parker;
mod peer_cpu;
mod spin_policy;
pub mod unwind;
mod wake_token;

pub use atomic_waker::AtomicWaker;
pub use backoff::Backoff;
pub use cache_padded::CachePadded;
pub use parker::{Parker, Unparker, with_thread_parker};
pub use peer_cpu::{CpuId, PeerCpu};
pub use spin_policy::{SpinHints, SpinPolicy};
pub use wake_token::WakeToken;

/// Atomic types and orderings: `std::sync::atomic` or loom's.
pub mod atomic {
    #[cfg(loom)]
    pub use loom::sync::atomic::{
        AtomicBool, AtomicPtr, AtomicU8, AtomicU32, AtomicU64, AtomicUsize, fence,
    };
    pub use std::sync::atomic::Ordering;
    #[cfg(not(loom))]
    pub use std::sync::atomic::{
        AtomicBool, AtomicPtr, AtomicU8, AtomicU32, AtomicU64, AtomicUsize, fence,
    };
}

/// `Arc`, `Mutex`, `Condvar`: `std::sync`'s or loom's.
pub mod sync {
    #[cfg(loom)]
    pub use loom::sync::{Arc, Condvar, Mutex, MutexGuard};
    #[cfg(not(loom))]
    pub use std::sync::{Arc, Condvar, Mutex, MutexGuard};
}

/// Thread spawning, parking and yielding: `std::thread`'s or loom's.
pub mod thread {
    #[cfg(loom)]
    pub use loom::thread::{
        Builder, JoinHandle, Thread, ThreadId, current, park, spawn, yield_now,
    };
    #[cfg(not(loom))]
    pub use std::thread::{
        Builder, JoinHandle, Thread, ThreadId, current, panicking, park, spawn, yield_now,
    };
    /// Whether the current thread is unwinding. Loom threads never report
    /// a panic in progress to the model, so this is std's answer in both builds.
    #[cfg(loom)]
    pub fn panicking() -> bool {
        std::thread::panicking()
    }
}

/// Spin-loop hint: a pause instruction in std, a yield point under loom (so
/// that a model containing a spin loop still terminates).
pub mod hint {
    #[cfg(loom)]
    pub use loom::hint::spin_loop;
    #[cfg(not(loom))]
    pub use std::hint::spin_loop;
}

/// `thread_local!`: std's, or loom's (one instance per model thread).
#[cfg(loom)]
pub use loom::thread_local;
#[cfg(not(loom))]
pub use std::thread_local;

/// Runs a test body as a loom model (every interleaving, bounded by
/// `LOOM_MAX_PREEMPTIONS`) under `--cfg loom`, or once, directly, otherwise.
///
/// This is what lets a crate's loom test read exactly like its std test.
pub fn model<F>(f: F)
where
    F: Fn() + Sync + Send + 'static,
{
    #[cfg(loom)]
    loom::model(f);
    #[cfg(not(loom))]
    f();
}

/// Driving a future to completion on the current thread.
pub mod future {
    #[cfg(loom)]
    pub use loom::future::block_on;

    #[cfg(not(loom))]
    std::thread_local! {
        /// How `block_on` waits on this thread: one wait site per thread.
        static WAITS: crate::SpinPolicy = const { crate::SpinPolicy::new() };
    }

    /// Polls `future` on the current thread until it completes, waiting
    /// between polls as [`SpinPolicy`](crate::SpinPolicy) says: spinning on
    /// the waker's notification only while this thread's recent waits were
    /// answered fast, otherwise parking at once.
    ///
    /// Blocks. Allocates nothing after the thread's first use of the
    /// thread-local parker. Re-entrant: a nested `block_on` on the same
    /// thread works, because every wait re-checks its own future.
    #[cfg(not(loom))]
    pub fn block_on<F: core::future::Future>(future: F) -> F::Output {
        use core::task::{Context, Poll};
        let mut future = core::pin::pin!(future);
        crate::with_thread_parker(|parker| {
            let waker = parker.waker();
            let mut cx = Context::from_waker(&waker);
            loop {
                if let Poll::Ready(out) = future.as_mut().poll(&mut cx) {
                    return out;
                }
                let woken = WAITS
                    .try_with(|site| site.spin_until(|| parker.is_notified()))
                    .unwrap_or(false);
                // Consumes the notification the spin saw, or parks for one.
                if !(woken && parker.try_consume()) {
                    parker.park();
                }
            }
        })
    }
}
