//! One dedicated background thread, driven with a borrowing, blocking,
//! allocation-free [`submit`](Thread::submit), plus [`Tagged`] values that
//! only that thread may touch.
//!
//! Made for resources that must be used from a single thread (an audio
//! device, a GUI or COM object, anything `!Send`) yet be driven with low
//! latency from many callers, without `'static` closures or channels: the
//! closure you submit borrows straight from your stack.
//!
//! ```
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let thread = ste::Thread::new()?;
//!
//! let mut n = 10;
//! thread.submit(|| n += 10)?; // runs on the background thread
//! assert_eq!(20, n);
//!
//! thread.join()?;
//! # Ok(()) }
//! ```
//!
//! A value wrapped in [`Tagged`] on the background thread may be handed to
//! anyone, but only the thread that created it can touch it:
//!
//! ```should_panic
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! struct Foo;
//!
//! impl Foo {
//!     fn say_hello(&self) {
//!         println!("Hello World!");
//!     }
//! }
//!
//! let thread = ste::Thread::new()?;
//! let foo = thread.submit(|| ste::Tagged::new(Foo))?;
//! foo.say_hello(); // <- Panics!
//! thread.join()?;
//! # Ok(()) }
//! ```
//!
//! Using it inside of the thread that created it is fine:
//!
//! ```
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # struct Foo;
//! # impl Foo { fn say_hello(&self) { println!("Hello World!"); } }
//! let thread = ste::Thread::new()?;
//! let foo = thread.submit(|| ste::Tagged::new(Foo))?;
//!
//! thread.submit(|| {
//!     foo.say_hello(); // <- OK!
//! })?;
//!
//! thread.join()?;
//! # Ok(()) }
//! ```
//!
//! # Guarantees
//!
//! - **What blocks.** [`Thread::submit`], [`Thread::drop`] and every poll of
//!   [`Thread::submit_async`]'s future block the caller until the worker has
//!   run the task. [`Thread::spawn`] and dropping a [`Tagged`] off-thread
//!   never block. [`Builder::build`] waits for the prelude; [`Thread::join`]
//!   and dropping a [`Thread`] wait for the queued tasks and the postlude
//!   (except on the worker itself, where they only ask it to stop).
//! - **The spin budget.** A waiting caller, and the idle worker, follow
//!   [`sync_core::SpinPolicy`]: they poll their condition (for 50 µs at
//!   most, 200 µs for an occasional probe) only while that wait site's recent spins paid off (the reply
//!   came fast) or the other side was just seen running (a caller whose
//!   worker had not parked, a worker whose caller was still spinning);
//!   otherwise, and whenever the other side last ran on the waiter's own
//!   CPU ([`sync_core::PeerCpu`]), they park at once. So on a
//!   quiet machine a round trip stays in user space, and on a loaded one
//!   the waiter stops burning the time slice the other side needs. No wait
//!   ever yields or spins without bound. Under loom the budget is zero
//!   (straight to park). [`Thread::join`] and `Builder::build` park at
//!   once.
//! - **What allocates.** `submit`, `drop` and `submit_async` allocate
//!   nothing per call (the task lives in the caller's frame; the caller's
//!   thread parker is cached per thread and allocated on its first use).
//!   `spawn` allocates one box per task; a `Tagged` dropped off-thread
//!   allocates one box to travel home. Starting a thread allocates a few
//!   small blocks.
//! - **What panics.** A panicking task never kills the worker: the panic is
//!   caught on the worker and returned as [`Error::Panicked`] with its
//!   original payload ([`Panic::resume`] re-raises it). A payload whose own
//!   `Drop` panics is contained (the worker leaks the second payload rather
//!   than loop). `Tagged`'s `Deref`/`DerefMut` and [`Tag::ensure_current`]
//!   panic off their thread, naming both tags; [`Tagged::new`] panics off a
//!   worker.
//! - **Order and re-entrancy.** Tasks run one at a time, in submission order
//!   across all submitters (FIFO). A `submit`/`drop`/`submit_async` issued
//!   from a task already running on the same worker runs inline.
//! - **Soundness of borrowing.** Once the worker publishes a task's
//!   completion it never touches the caller's frame again: it wakes the
//!   caller through an `Unparker` it took ownership of beforehand. A task
//!   that was queued is always run (the queue only closes when empty), so the
//!   caller's only early exit, "shut down", happens before the worker could
//!   see the task.
//! - **Deferred work is `'static`.** Whatever runs on the worker after the
//!   caller's scope may have ended (a [`Thread::spawn`] closure, the
//!   destructor of a [`Tagged`] dropped off its worker) must own what it
//!   refers to: `spawn` takes `F: 'static`, and `Tagged<T>` needs
//!   `T: 'static`. Otherwise dropping a `Tagged` that borrowed a local (or
//!   held a guard of a local mutex) would queue a destructor that runs
//!   after the borrow died. Only the blocking calls (`submit`, `drop`,
//!   `submit_async`'s polls) may borrow, because they return only after the
//!   worker is done with the borrow.
//! - **Tags** are process-unique 64-bit ids from a global counter (the
//!   process aborts if it is ever exhausted), never addresses: a value tagged
//!   by a joined worker never passes the check on a later one.
//!
//! # Deadlocks this crate cannot prevent
//!
//! A task on worker A that blocks on worker B while B's task blocks on A
//! deadlocks, as with any pair of mutexes. So does a task that waits for a
//! submitter that waits for the task's worker.
#![deny(missing_docs)]
#![deny(unsafe_op_in_unsafe_fn)]

mod error;
mod queue;
mod submit_async;
mod tag;
mod tagged;
mod thread;

pub use error::{Error, Panic};
pub use submit_async::SubmitAsync;
pub use tag::Tag;
pub use tagged::Tagged;
pub use thread::{Builder, Thread};

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    static_assertions::assert_impl_all!(Thread: Send, Sync);
    static_assertions::assert_impl_all!(Builder: Send);
    static_assertions::assert_impl_all!(Error: Send, Sync, std::error::Error);
    static_assertions::assert_impl_all!(Panic: Send, Sync);
    static_assertions::assert_impl_all!(Tag: Send, Sync, Copy, Eq, core::hash::Hash, core::fmt::Debug);
    static_assertions::assert_impl_all!(Tagged<std::rc::Rc<u8>>: Send, Sync);
    static_assertions::assert_impl_all!(Tagged<core::cell::Cell<u8>>: Send, Sync);
    static_assertions::assert_impl_all!(SubmitAsync<'static, core::future::Ready<u8>>: Send);

    #[test]
    fn tags_are_fresh_and_nonzero() {
        let a = Tag::fresh();
        let b = Tag::fresh();
        assert_ne!(a, b);
        assert!(a.id() > 0 && b.id() > a.id());
        assert_eq!(format!("{a:?}"), format!("Tag({})", a.id()));
    }

    #[test]
    fn error_display() {
        let e = Error::panicked(Box::new("boom"));
        assert_eq!(e.to_string(), "task panicked on the ste thread: boom");
        assert!(e.is_panic());
        assert_eq!(Error::ShutDown.to_string(), "the ste thread has shut down");
    }
}
