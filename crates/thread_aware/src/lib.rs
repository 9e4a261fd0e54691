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
//! # What it gives a runtime
//!
//! - [`ThreadAware`], implemented for the standard library's values and
//!   containers (an inert container relocates in O(1): a 64 MiB `Vec<u8>`
//!   is not touched), derivable with `#[derive(ThreadAware)]`.
//! - [`Unaware`]: the explicit "move it as is", for any type.
//! - [`PerCore`], [`PerNuma`], [`PerProcess`]: shared pointers with one
//!   instance per processor, memory region or process; relocating a handle
//!   switches it to the destination's instance (built on first use, once).
//!   A per-core counter is `PerCore<AtomicU64>`, summed with
//!   [`fold`](PerAffinity::fold).
//! - Relocatable closures ([`relocate_once`], [`RelocateFnOnce`],
//!   [`BoxedRelocateFnOnce`] for a queue): every capture is `ThreadAware`.
//! - The machine's [`Topology`] (Linux): the processors this process may run
//!   on, grouped by NUMA node, densely numbered; pinning a thread; the
//!   current thread's affinity from a thread-local.
//!
//! # Guarantees
//!
//! - **Relocation is a performance hint**: nothing becomes unsound or
//!   incorrect if it is never called; values then keep using the source's
//!   state. No `unsafe` code relies on it.
//! - **No impl for `Arc` or `Rc`**: relocating a shared pointer cannot
//!   detach it (every clone still points at the same value). Use
//!   `Unaware<Arc<T>>` to share it as is, or a per-affinity pointer to give
//!   each affinity its own instance.
//! - **Per-affinity pointers**: a relocation hit is one `Acquire` load
//!   (lock-free, no allocation); the first relocation into an empty slot
//!   runs the factory exactly once, even when threads race, with no lock
//!   held, and a panicking factory leaves the slot empty for the next try;
//!   each instance sits on its own cache line. See [`PerAffinity`].
//! - **The derive** relocates every field, infers bounds per relocated
//!   field type, and reports misuse at the offending token (see
//!   `thread_aware_macros`).
//! - `unsafe` code lives only in the per-affinity pointers; every block
//!   carries its invariant, and is checked by loom models and Miri.
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
