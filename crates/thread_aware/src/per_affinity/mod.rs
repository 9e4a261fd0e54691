//! Per-affinity shared pointers: [`PerCore`], [`PerNuma`], [`PerProcess`].
//!
//! One generic handle, [`PerAffinity<T, S>`], with a [`Strategy`] that maps
//! an affinity to a slot. All clones of one handle form a *family*: one
//! shared block holding a reference count, the factory, and a table of
//! slots, one per processor (`Core`), per memory region (`Numa`) or one for
//! the process (`Process`), each on its own cache line. A handle points at
//! one instance; relocating it switches it to the destination slot's
//! instance, which the first relocation into that slot builds with the
//! factory.
//!
//! # Exactly once, without a lock around user code
//!
//! A slot word is `EMPTY`, `BUSY` (a thread runs the factory), `WAITING`
//! (the same, with sleepers) or the published instance. The thread whose
//! compare-exchange moves the slot from `EMPTY` to `BUSY` runs the factory,
//! holding no lock; others spin briefly and then sleep on the family's
//! condition variable until the builder settles the slot. A panicking
//! factory's unwind guard sets the slot back to `EMPTY` and wakes the
//! sleepers, one of which then builds it (the panic propagates to the
//! thread that ran the factory). The mutex only brackets the sleepers'
//! "still being built?" check and the builder's notification.

mod family;
mod strategy;

pub use strategy::{Core, Numa, Process, Strategy};

use crate::{MemoryAffinity, ThreadAware};
use core::fmt;
use core::marker::PhantomData;
use core::ops::Deref;
use core::ptr::NonNull;
use family::{Factory, Family, Instance, Table};

/// A shared pointer with one instance of `T` per slot of strategy `S`
/// (per processor, per memory region, or per process), built lazily, at
/// most once per slot, by the first relocation into that slot.
///
/// Use it through the aliases [`PerCore`], [`PerNuma`] and [`PerProcess`].
///
/// ```
/// use std::sync::atomic::{AtomicU64, Ordering};
/// use thread_aware::{PerCore, ThreadAware, create_manual_affinities};
///
/// let cores = create_manual_affinities(&[2]);
/// let counter = PerCore::new(|| AtomicU64::new(0));
///
/// // Work moved to core 1 increments core 1's own counter.
/// let on_core_1 = counter.clone().relocated(cores[0], cores[1]);
/// on_core_1.fetch_add(5, Ordering::Relaxed);
/// let on_core_0 = counter.clone().relocated(cores[1], cores[0]);
/// on_core_0.fetch_add(2, Ordering::Relaxed);
///
/// // The total is one fold over the instances that exist.
/// let total = counter.fold(0, |sum, c| sum + c.load(Ordering::Relaxed));
/// assert_eq!(total, 7);
/// ```
///
/// # Where a new handle points
///
/// [`new`](Self::new) and [`new_with`](Self::new_with) build one instance
/// eagerly, the family's *origin*, which belongs to no slot: a handle that
/// was never relocated (and every clone of it) uses the origin, so code
/// that never relocates still works, on one shared instance. The first
/// relocation of a handle switches it to the destination's slot. The origin
/// lives as long as the family and is visited by [`fold`](Self::fold) and
/// [`for_each`](Self::for_each) (first).
///
/// [`new_with_affinity`](Self::new_with_affinity) instead takes the initial
/// affinity, builds that slot's instance and places the handle there: no
/// origin. So do `new` and `new_with` when the strategy has one fixed slot
/// ([`Strategy::fixed_slot`]): a [`PerProcess`] has exactly one instance.
///
/// The slot table is sized by the first placement (the strategy's count for
/// that affinity); relocating one family between affinities of sets with a
/// different count panics.
///
/// # Guarantees
///
/// - **Relocation hit** (the destination slot is built): one `Acquire`
///   load; lock-free, wait-free, no allocation. The handle's reference
///   count is not touched (relocation moves the handle). A handle that was
///   never placed (nor cloned from a placed one) also loads the family's
///   table pointer once, on its first relocation.
/// - **Relocation miss**: the first relocation into an empty slot runs the
///   factory on the relocating thread, with no lock held, and allocates the
///   instance (plus, on a family's first placement, the slot table).
///   Concurrent relocations into the same slot *block* until it is built:
///   they spin (50 µs at most, 200 µs on an occasional probe) if that paid
///   off lately, then sleep;
///   the factory runs once. If it panics the panic reaches the thread that
///   ran it, the slot goes back to empty, and the next relocation (a
///   waiting one included) runs the factory again.
/// - [`Clone`]: one atomic increment. Drop: one atomic decrement; the last
///   handle's drop frees every instance (each dropped exactly once), the
///   table and the factory, on the thread that drops it.
/// - `Deref`: no atomic operation at all.
/// - `Send` and `Sync` when `T: Send + Sync` (handles on different threads
///   share instances and the last one drops them), like `Arc<T>`.
///
/// # Panics
///
/// Relocation panics if the factory does, if the strategy is inconsistent
/// or the affinity belongs to another set (see above), and if a factory
/// relocates a handle of its own family into the very slot it is building
/// (it would wait for itself), also through other slots it builds on the
/// way and from a thread-local destructor.
///
/// # Deadlock
///
/// A factory that *waits for another thread* which relocates into the slot
/// being built (a helper it joins, say) deadlocks: the helper cannot tell a
/// builder that waits for it from a slow one, and the slot is built at most
/// once, so it can only wait. `std::sync::OnceLock` has the same limitation
/// (an initialiser joining a thread that calls `get_or_init` on the same
/// cell). Relocate into other slots from such helpers, or build the value
/// on the helper and return it from the factory.
pub struct PerAffinity<T, S: Strategy> {
    family: NonNull<Family<T>>,
    /// The family's table, once this handle has seen it: spares the hit
    /// path the load of the family's table pointer.
    table: Option<NonNull<Table<T>>>,
    instance: NonNull<Instance<T>>,
    /// Owns a share of the family (and so of `T`s), for drop check.
    _owns: PhantomData<Family<T>>,
    _strategy: PhantomData<fn() -> S>,
}

/// One instance per processor (slot = [`MemoryAffinity::processor_index`]).
/// See [`PerAffinity`].
pub type PerCore<T> = PerAffinity<T, Core>;

/// One instance per memory region (NUMA node; slot =
/// [`MemoryAffinity::memory_region_index`]). See [`PerAffinity`].
pub type PerNuma<T> = PerAffinity<T, Numa>;

/// One instance for the whole process: relocation never switches instance
/// (but the handle stays `ThreadAware`, so a type can hold it next to
/// per-core state). See [`PerAffinity`].
pub type PerProcess<T> = PerAffinity<T, Process>;

// SAFETY: a handle gives shared access (`&T`) to instances that handles on
// other threads may access at the same time (needs `T: Sync`), and the last
// handle, on any thread, drops every instance (needs `T: Send`). The factory
// is `Send + Sync` by construction; everything else in the family is atomic
// or behind the mutex.
unsafe impl<T: Send + Sync, S: Strategy> Send for PerAffinity<T, S> {}
// SAFETY: as for `Send`: `&PerAffinity` gives `&T` and can be cloned into a
// handle that drops instances elsewhere.
unsafe impl<T: Send + Sync, S: Strategy> Sync for PerAffinity<T, S> {}

impl<T, S: Strategy> PerAffinity<T, S> {
    /// A family whose instances `factory` builds, one per slot, plus the
    /// origin instance it builds now (see [where a new handle
    /// points](Self#where-a-new-handle-points)), which this handle uses.
    ///
    /// Allocates the family and the origin (and boxes the factory unless it
    /// is zero-sized). Calls `factory` once, on this thread; a panic there
    /// propagates and nothing is leaked.
    pub fn new(factory: impl Fn() -> T + Send + Sync + 'static) -> Self {
        let value = factory();
        Self::from_origin(Box::new(move |_| factory()), value)
    }

    /// A family whose instances are `factory(data.clone())`: each instance
    /// (the origin, built now, included) gets its own clone of `data`.
    /// Otherwise as [`new`](Self::new).
    pub fn new_with<D>(data: D, factory: fn(D) -> T) -> Self
    where
        D: Clone + Send + Sync + 'static,
        T: 'static,
    {
        let value = factory(data.clone());
        Self::from_origin(Box::new(move |_| factory(data.clone())), value)
    }

    /// A family whose instances `factory` builds from the affinity they
    /// serve (the destination of the relocation that builds them), with the
    /// first one built now for `initial` and this handle placed in
    /// `initial`'s slot. There is no origin instance.
    ///
    /// Allocates the family, the slot table and the instance.
    ///
    /// # Panics
    ///
    /// If `factory` panics, or if the strategy maps `initial` to an index
    /// that is not below its count.
    pub fn new_with_affinity(
        initial: MemoryAffinity,
        factory: impl Fn(MemoryAffinity) -> T + Send + Sync + 'static,
    ) -> Self {
        let (index, count) = S::slot(initial);
        assert!(
            index < count,
            "thread_aware: the per-affinity strategy mapped {initial} to slot {index} of {count}: the index must be below the count"
        );
        let value = factory(initial);
        let (family, table, instance) = Family::placed(Box::new(factory), index, count, value);
        Self::from_parts(family, Some(table), instance)
    }

    fn from_origin(factory: Factory<T>, value: T) -> Self {
        if let Some((index, count)) = S::fixed_slot() {
            assert!(
                index < count,
                "thread_aware: the per-affinity strategy's fixed slot {index} is not below its count {count}"
            );
            let (family, table, instance) = Family::placed(factory, index, count, value);
            return Self::from_parts(family, Some(table), instance);
        }
        let (family, origin) = Family::with_origin(factory, value);
        Self::from_parts(family, None, origin)
    }

    fn from_parts(
        family: NonNull<Family<T>>,
        table: Option<NonNull<Table<T>>>,
        instance: NonNull<Instance<T>>,
    ) -> Self {
        Self {
            family,
            table,
            instance,
            _owns: PhantomData,
            _strategy: PhantomData,
        }
    }

    #[inline]
    fn family(&self) -> &Family<T> {
        // SAFETY: this handle holds one of the family's counts, so the
        // family is live for as long as `self` is borrowed.
        unsafe { self.family.as_ref() }
    }

    /// Folds `f` over every instance of the family that exists right now:
    /// the origin first (if the family has one), then each built slot in
    /// slot order. A per-core counter's total is
    /// `counter.fold(0, |sum, c| sum + c.load(Relaxed))`.
    ///
    /// Lock-free, no allocation; never builds an instance and never waits
    /// for one being built (it is skipped). Instances built concurrently
    /// may or may not be visited.
    pub fn fold<A>(&self, init: A, mut f: impl FnMut(A, &T) -> A) -> A {
        self.family().instances().fold(init, |acc, instance| {
            // SAFETY: a published instance of the family that `self` keeps
            // alive; instances are only read after publication.
            f(acc, unsafe { family::value(instance) })
        })
    }

    /// Calls `f` on every instance of the family that exists right now, in
    /// the order of [`fold`](Self::fold). Lock-free, no allocation.
    pub fn for_each(&self, mut f: impl FnMut(&T)) {
        self.fold((), |(), value| f(value));
    }

    /// The number of handles of this family (all slots together). A
    /// snapshot: other threads may clone or drop handles at any time.
    pub fn strong_count(this: &Self) -> usize {
        this.family().handles()
    }

    /// Whether both handles point at the same instance (the same family
    /// and the same slot, or both at the family's origin).
    ///
    /// For a zero-sized `T` the instances of one family have no addresses
    /// of their own (like every zero-sized value in a `Box`), so handles of
    /// one family compare equal whatever their slots; handles of two
    /// families never do.
    pub fn ptr_eq(this: &Self, other: &Self) -> bool {
        this.family == other.family && this.instance == other.instance
    }
}

impl<T, S: Strategy> Deref for PerAffinity<T, S> {
    type Target = T;

    /// The instance this handle points at. No atomic operation.
    #[inline]
    fn deref(&self) -> &T {
        // SAFETY: `self.instance` is a published instance of the family
        // this handle keeps alive; instances are read-only until the family
        // is freed.
        unsafe { family::value(self.instance) }
    }
}

impl<T, S: Strategy> Clone for PerAffinity<T, S> {
    /// Another handle to the same instance: one atomic increment, no
    /// allocation.
    #[inline]
    fn clone(&self) -> Self {
        self.family().acquire();
        Self::from_parts(self.family, self.table, self.instance)
    }
}

impl<T, S: Strategy> Drop for PerAffinity<T, S> {
    /// One atomic decrement; the family's last handle frees every instance,
    /// the slot table and the factory.
    #[inline]
    fn drop(&mut self) {
        // SAFETY: this handle owns one count and is never used again.
        unsafe { Family::release(self.family) };
    }
}

impl<T, S: Strategy> ThreadAware for PerAffinity<T, S> {
    /// Switches the handle to the instance of `destination`'s slot,
    /// building it (once, whatever the number of concurrent relocations)
    /// if it does not exist yet. See the type's
    /// [guarantees](Self#guarantees) for the cost.
    #[inline]
    fn relocated(mut self, _source: MemoryAffinity, destination: MemoryAffinity) -> Self {
        let table = match self.table {
            Some(table) => table,
            None => {
                let table = self.family().table_or_init(S::slot(destination).1);
                self.table = Some(table);
                table
            }
        };
        // SAFETY: a published table lives as long as the family, which
        // `self` keeps alive.
        let slot = unsafe { table.as_ref() }.slot::<S>(destination);
        self.instance = match slot.get() {
            Some(instance) => instance,
            None => self.family().get_or_build(slot, destination),
        };
        self
    }
}

impl<T: Default + 'static, S: Strategy> Default for PerAffinity<T, S> {
    /// A family whose instances are `T::default()`, as
    /// [`new(T::default)`](Self::new).
    fn default() -> Self {
        Self::new(T::default)
    }
}

impl<T: fmt::Debug, S: Strategy> fmt::Debug for PerAffinity<T, S> {
    /// The instance this handle points at.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("PerAffinity").field(&**self).finish()
    }
}
