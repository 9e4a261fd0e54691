//! Values that know where they live.
//!
//! A thread-per-core or NUMA-aware runtime moves work between *affinities*
//! (a processor, in a memory region). It accepts only work that is
//! [`ThreadAware`] and calls [`relocated(source, destination)`] on it when
//! it moves it; each value then detaches from state that belongs to the
//! source, for example by switching to the destination's own instance of a
//! per-core counter ([`PerCore`]), so that work on different cores never
//! contends on one cache line.
//!
//! Relocation is a **performance contract**: code stays correct if it is
//! never called (values then keep using the source's state).
//!
//! [`relocated(source, destination)`]: ThreadAware::relocated
//!
//! # Example
//!
//! ```
//! use thread_aware::{MemoryAffinity, ThreadAware, Unaware, create_manual_affinities};
//!
//! // Define a type that implements ThreadAware
//! #[derive(Debug, Clone)]
//! struct MyData {
//!     value: i32,
//! }
//!
//! impl ThreadAware for MyData {
//!     fn relocated(mut self, source: MemoryAffinity, destination: MemoryAffinity) -> Self {
//!         self.value = self.value.relocated(source, destination);
//!         self
//!     }
//! }
//!
//! fn do_transfer() {
//!     // Create two affinities
//!     let affinities = create_manual_affinities(&[2]);
//!
//!     // Create an instance of MyData
//!     let data = MyData { value: 42 };
//!
//!     // Transfer data from one affinity to another
//!     let transferred_data = data.relocated(affinities[0], affinities[1]);
//!
//!     // Use Inert to create a type that does not transfer data
//!     struct MyInertData(i32);
//!
//!     let inert_data = Unaware(MyInertData(100));
//!     let transferred_inert_data = inert_data.relocated(affinities[0], affinities[1]);
//! }
//! # do_transfer();
//! ```
//!
//! # Deriving it
//!
//! ```
//! use thread_aware::{ThreadAware, create_manual_affinities};
//!
//! #[derive(Debug, Clone, ThreadAware)]
//! struct Point {
//!     x: i32,
//!     y: i32,
//! }
//!
//! fn derived_example() {
//!     let affinities = create_manual_affinities(&[2]);
//!     let p = Point { x: 5, y: 9 };
//!     // Transfer the value between two affinities. In this simple case the
//!     // data just gets copied, but for complex types the generated impl
//!     // calls `transfer` on each field.
//!     let _p2 = p.relocated(affinities[0], affinities[1]);
//! }
//! # derived_example();
//! ```
//!
//! # Feature flags
//!
//! - `derive` (default): re-exports `#[derive(ThreadAware)]` from
//!   `thread_aware_macros`. `default-features = false` leaves the proc-macro
//!   out.
#![deny(missing_docs)]
#![deny(unsafe_op_in_unsafe_fn)]

mod affinity;
mod closures;
mod impls;
mod per_affinity;
mod relocate;
pub mod topology;

pub use affinity::{MemoryAffinity, create_manual_affinities};
pub use closures::{
    BoxedRelocateFnOnce, Closure, ClosureMut, ClosureOnce, RelocateFn, RelocateFnMut,
    RelocateFnOnce, RelocateFnOnceDyn, relocate, relocate_mut, relocate_once,
};
pub use per_affinity::{Core, Numa, PerAffinity, PerCore, PerNuma, PerProcess, Process, Strategy};
pub use relocate::{ThreadAware, Unaware};
pub use topology::{Topology, current_affinity, set_current_affinity};

#[cfg(feature = "derive")]
pub use thread_aware_macros::ThreadAware;
