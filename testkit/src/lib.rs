//! Test-only helpers shared by the workspace's crates (a dev-dependency,
//! never a normal one; it is not published).
//!
//! - [`watchdog`]: aborts a test binary that hangs, so a lost wake-up fails
//!   instead of stalling CI.
//! - [`HostileWaker`]: wakers that behave as badly as the `RawWaker`
//!   contract allows: a `clone` that returns a new data pointer every time,
//!   a `clone` that panics, a `drop` or `wake` that panics. Every crate that
//!   stores a waker is tested against them.
//! - [`PanicsOnDrop`]: a value whose `Drop` panics, with a payload that
//!   may panic again when dropped: for code that catches a panic and drops
//!   what it caught.
//! - [`ReentrantWaker`]: wakers that run the test's code inside their own
//!   `clone`, `wake` and `drop` (re-entrancy at the worst moment).
//! - [`affinity`] (Linux): pin a test thread to a CPU.
//! - [`pipe`] (Linux): an anonymous pipe, a descriptor to make readable.
//! - [`in_child`]: run a scenario that may abort the process in a child
//!   process, so that an abort fails one test.
//!
//! Plain `std` only: it works in normal, Miri and loom builds alike (under
//! Miri the watchdog is off, since Miri's clock is virtual and slow).
#![deny(missing_docs)]
#![deny(unsafe_op_in_unsafe_fn)]

#[cfg(target_os = "linux")]
pub mod affinity;
mod child;
mod hostile_waker;
mod panics_on_drop;
#[cfg(target_os = "linux")]
mod pipe;
mod reentrant_waker;
mod watchdog;

pub use child::in_child;
pub use hostile_waker::{HostileWaker, Misbehaviour};
pub use panics_on_drop::PanicsOnDrop;
#[cfg(target_os = "linux")]
pub use pipe::pipe;
pub use reentrant_waker::{Hook, ReentrantWaker};
pub use watchdog::{Watchdog, iters, watchdog};
