//! The shared block behind every handle of one per-affinity pointer: the
//! reference count, the factory, the optional origin instance and the slot
//! table, and the protocol that builds a slot's instance exactly once.
//!
//! # States of a slot
//!
//! A slot is one `AtomicPtr` on its own cache line:
//!
//! - `EMPTY` (null): no instance yet.
//! - `BUSY` (address 1): one thread won the `EMPTY -> BUSY` compare-exchange
//!   and is running the factory, without any lock held.
//! - `WAITING` (address 2): as `BUSY`, and at least one thread went to sleep
//!   on the family's condition variable waiting for the outcome.
//! - anything else: the instance (a `Box` whose address is 128-aligned, so
//!   never 0, 1 or 2), published with `Release`, never changed again.
//!
//! The builder ends `BUSY`/`WAITING` with one `swap`: to the instance on
//! success, back to `EMPTY` when the factory panics (an unwind guard). If
//! the swap returns `WAITING` it takes the family's mutex and notifies every
//! sleeper. A sleeper re-checks the slot *under that mutex* before it
//! sleeps, so the builder's swap is either seen by the check or followed by
//! a notification the sleeper receives: no lost wake-up. The mutex guards
//! nothing but that check; no user code ever runs while it is held.
//!
//! # Frees, and loom
//!
//! Instances, tables and the family are freed only by the last handle's
//! drop (after the `Acquire` fence that pairs with every other handle's
//! `Release` decrement), except that the loser of the table's publication
//! race frees its own, never-published table. Before each free the freeing
//! thread writes through the loom-tracked cell of what it frees (`retire`),
//! so that under `--cfg loom` an access not ordered before the free (a
//! use-after-free) fails the model. In the std build those writes compile to
//! nothing.

use super::Strategy;
use crate::MemoryAffinity;
use core::ptr::{self, NonNull};
use std::sync::PoisonError;
use sync_core::atomic::{AtomicPtr, AtomicUsize, Ordering, fence};
use sync_core::cell::UnsafeCell;
use sync_core::sync::{Condvar, Mutex};
use sync_core::{CachePadded, SpinPolicy};

/// One instance: the user's value on a cache line (or two) of its own, in a
/// loom-tracked cell.
pub(super) type Instance<T> = CachePadded<UnsafeCell<T>>;

/// The boxed factory every constructor reduces to.
pub(super) type Factory<T> = Box<dyn Fn(MemoryAffinity) -> T + Send + Sync>;

fn busy<T>() -> *mut Instance<T> {
    ptr::without_provenance_mut(1)
}

fn waiting<T>() -> *mut Instance<T> {
    ptr::without_provenance_mut(2)
}

/// The instance a slot word holds, if it holds one.
#[inline]
fn ready<T>(word: *mut Instance<T>) -> Option<NonNull<Instance<T>>> {
    if word.addr() > 2 {
        NonNull::new(word)
    } else {
        None
    }
}

/// Borrows the value of an instance.
///
/// # Safety
///
/// `instance` points at a live instance that nobody mutates for `'a`: a
/// published instance, kept alive by a handle of its family (instances are
/// written only when created and freed only when the family is).
#[inline]
pub(super) unsafe fn value<'a, T>(instance: NonNull<Instance<T>>) -> &'a T {
    // SAFETY: the caller guarantees the instance is live for 'a.
    let cell = unsafe { instance.as_ref() };
    // SAFETY: after publication an instance is only ever read, until the
    // family frees it, which the caller rules out for 'a.
    cell.with(|p| unsafe { &*p })
}

/// Frees an instance (drops the user's value).
///
/// # Safety
///
/// `instance` came from `Box::into_raw`/`Box::leak` of an instance, is
/// freed only here and only once, and no other thread can still access it.
unsafe fn free_instance<T>(instance: NonNull<Instance<T>>) {
    // SAFETY: live until the line below, by the caller's guarantee.
    unsafe { instance.as_ref() }.with_mut(|_| ()); // retire: visible to loom
    // SAFETY: allocated as a Box, freed once (caller's guarantee).
    drop(unsafe { Box::from_raw(instance.as_ptr()) });
}

fn new_instance<T>(value: T) -> NonNull<Instance<T>> {
    NonNull::from(Box::leak(Box::new(CachePadded::new(UnsafeCell::new(
        value,
    )))))
}

/// One slot: the word described in the module docs, and who builds it.
pub(super) struct Slot<T> {
    state: AtomicPtr<Instance<T>>,
    /// The [`this_thread`] mark of the thread running the factory, 0 when
    /// none: a thread about to wait for the slot that finds its own mark
    /// here is waiting for itself (a factory relocated into its own slot,
    /// directly or through other slots it built) and panics instead. Only
    /// the builder writes it, setting it after its `EMPTY -> BUSY` and
    /// clearing it before it settles, and a thread compares it only with
    /// its own mark: a thread always sees its own latest write, and no
    /// other thread's mark equals its own, so relaxed std atomics suffice
    /// (not part of the protocol loom explores).
    builder: std::sync::atomic::AtomicUsize,
}

impl<T> Slot<T> {
    /// The slot's instance, if built: the hit path, one `Acquire` load.
    #[inline]
    pub(super) fn get(&self) -> Option<NonNull<Instance<T>>> {
        ready(self.state.load(Ordering::Acquire))
    }
}

/// The slots of one family, created by the first placement and published
/// once. Owns the instances in its slots.
pub(super) struct Table<T> {
    slots: Box<[CachePadded<Slot<T>>]>,
    canary: UnsafeCell<()>,
}

impl<T> Table<T> {
    /// # Panics
    ///
    /// If a table of `count` slots cannot be allocated (an affinity made
    /// with an absurd processor count): a panic with a message, not the
    /// allocation failure's abort.
    fn new(count: usize) -> Self {
        let mut slots = Vec::new();
        if slots.try_reserve_exact(count).is_err() {
            panic!(
                "thread_aware: cannot allocate a per-affinity slot table of {count} slots \
                 (the affinity's set has {count} processors or regions)"
            );
        }
        slots.extend((0..count).map(|_| {
            CachePadded::new(Slot {
                state: AtomicPtr::new(ptr::null_mut()),
                builder: std::sync::atomic::AtomicUsize::new(0),
            })
        }));
        Self {
            slots: slots.into_boxed_slice(),
            canary: UnsafeCell::new(()),
        }
    }

    /// The slot `S` assigns to `affinity`.
    ///
    /// # Panics
    ///
    /// If the strategy's index is not below its count, or if the count
    /// differs from the one the family was placed with (affinities from two
    /// different sets).
    #[inline]
    pub(super) fn slot<S: Strategy>(&self, affinity: MemoryAffinity) -> &Slot<T> {
        self.canary.with(|_| ()); // a read of the table, for loom
        let (index, count) = S::slot(affinity);
        if count != self.slots.len() || index >= count {
            mismatch(affinity, index, count, self.slots.len());
        }
        &self.slots[index]
    }

    fn instances(&self) -> impl Iterator<Item = NonNull<Instance<T>>> + '_ {
        self.canary.with(|_| ());
        self.slots.iter().filter_map(|slot| slot.get())
    }
}

#[cold]
#[inline(never)]
#[track_caller]
fn mismatch(affinity: MemoryAffinity, index: usize, count: usize, len: usize) -> ! {
    if index >= count {
        panic!(
            "thread_aware: the per-affinity strategy mapped {affinity} to slot {index} of {count}: the index must be below the count"
        );
    }
    panic!(
        "thread_aware: {affinity} belongs to a set with {count} slots, but this per-affinity pointer was placed with {len}: \
         relocate one family only between affinities of one set"
    );
}

impl<T> Drop for Table<T> {
    fn drop(&mut self) {
        self.canary.with_mut(|_| ()); // retire
        let mut instances = self.slots.iter().filter_map(|slot| {
            let word = slot.state.load(Ordering::Relaxed);
            debug_assert!(word != busy() && word != waiting(), "freed while building");
            ready(word)
        });
        // A table is dropped by the last handle (after its Acquire fence:
        // every other access happened before) or by the loser of the
        // publication race (never published, so empty).
        // SAFETY: each instance in a slot is owned by this table alone, which its last owner frees here, once.
        unsafe { free_all(&mut instances) };
    }
}

/// Frees every instance `instances` yields, even if dropping one panics
/// (then the rest are freed during the unwind; a second panic aborts, as for
/// a `Vec`'s elements).
///
/// # Safety
///
/// As [`free_instance`] for every item.
unsafe fn free_all<T>(instances: &mut dyn Iterator<Item = NonNull<Instance<T>>>) {
    struct Rest<'a, T>(&'a mut dyn Iterator<Item = NonNull<Instance<T>>>);
    impl<T> Drop for Rest<'_, T> {
        fn drop(&mut self) {
            // SAFETY: forwarded from `free_all`'s caller.
            unsafe { free_all(self.0) };
        }
    }
    while let Some(instance) = instances.next() {
        let rest = Rest(instances);
        // SAFETY: forwarded from the caller.
        unsafe { free_instance(instance) };
        core::mem::forget(rest);
    }
}

/// The block all handles of one per-affinity pointer share.
pub(super) struct Family<T> {
    /// Number of live handles.
    refs: AtomicUsize,
    /// The slot table: null until the first placement, then set once.
    table: AtomicPtr<Table<T>>,
    /// The instance unplaced handles use (`new`, `new_with`); owned.
    origin: Option<NonNull<Instance<T>>>,
    factory: Factory<T>,
    /// Only for sleeping until a slot being built is settled.
    lock: Mutex<()>,
    settled: Condvar,
    spin: SpinPolicy,
    canary: UnsafeCell<()>,
}

sync_core::thread_local! {
    /// A byte per thread whose address names the thread while it lives
    /// ([`Slot::builder`]). It needs no drop, so it stays readable while the
    /// thread's other thread-locals are destroyed: the list of slots being
    /// built that this replaces lived in a thread-local that needed drop,
    /// read as empty from a later destructor, and a factory relocating into
    /// its own slot from there slept forever.
    #[allow(clippy::missing_const_for_thread_local)] // loom's macro takes no `const {}`
    static THREAD_MARK: u8 = 0;
}

/// The calling thread's mark: non-zero, unique among live threads.
fn this_thread() -> usize {
    THREAD_MARK.with(|mark| ptr::from_ref(mark).addr())
}

/// Unwind guard of a build: on a panicking factory, returns the slot to
/// `EMPTY` and wakes the sleepers so that one of them retries.
struct Building<'a, T> {
    family: &'a Family<T>,
    slot: &'a Slot<T>,
}

impl<'a, T> Building<'a, T> {
    fn start(family: &'a Family<T>, slot: &'a Slot<T>) -> Self {
        slot.builder
            .store(this_thread(), std::sync::atomic::Ordering::Relaxed);
        Self { family, slot }
    }

    /// Leaves `BUSY`/`WAITING` for `to`, waking sleepers if there are any.
    fn settle(&self, to: *mut Instance<T>) {
        self.slot
            .builder
            .store(0, std::sync::atomic::Ordering::Relaxed);
        let before = self.slot.state.swap(to, Ordering::Release);
        debug_assert!(before == busy() || before == waiting());
        if before == waiting() {
            self.family.wake_all();
        }
    }

    fn publish(self, instance: NonNull<Instance<T>>) {
        self.settle(instance.as_ptr());
        core::mem::forget(self);
    }
}

impl<T> Drop for Building<'_, T> {
    fn drop(&mut self) {
        // Only on unwind (`publish` forgets the guard): the factory panicked.
        self.settle(ptr::null_mut());
    }
}

impl<T> Family<T> {
    /// A family with one handle. `origin` is the instance unplaced handles
    /// use; `placed` puts the first instance in a slot instead (the table is
    /// created with `count` slots, the instance goes to `index`).
    fn new(factory: Factory<T>, origin: Option<T>, placed: Option<(usize, usize, T)>) -> Self {
        let table = match placed {
            None => ptr::null_mut(),
            Some((index, count, value)) => {
                let table = Table::new(count);
                table.slots[index]
                    .state
                    .store(new_instance(value).as_ptr(), Ordering::Relaxed);
                Box::into_raw(Box::new(table))
            }
        };
        Self {
            refs: AtomicUsize::new(1),
            table: AtomicPtr::new(table),
            origin: origin.map(new_instance),
            factory,
            lock: Mutex::new(()),
            settled: Condvar::new(),
            spin: SpinPolicy::new(),
            canary: UnsafeCell::new(()),
        }
    }

    /// A new family whose handle uses an origin instance (`value`), placed
    /// in no slot. Returns the family and that instance.
    pub(super) fn with_origin(
        factory: Factory<T>,
        value: T,
    ) -> (NonNull<Self>, NonNull<Instance<T>>) {
        let family = NonNull::from(Box::leak(Box::new(Self::new(factory, Some(value), None))));
        // SAFETY: just created; we hold its only handle.
        let origin = unsafe { family.as_ref() }.origin;
        (family, origin.unwrap_or_else(|| unreachable!()))
    }

    /// A new family whose first instance (`value`) sits in slot `index` of
    /// `count`. Returns the family, its table and that instance.
    pub(super) fn placed(
        factory: Factory<T>,
        index: usize,
        count: usize,
        value: T,
    ) -> (NonNull<Self>, NonNull<Table<T>>, NonNull<Instance<T>>) {
        let family = NonNull::from(Box::leak(Box::new(Self::new(
            factory,
            None,
            Some((index, count, value)),
        ))));
        // SAFETY: just created; we hold its only handle.
        let this = unsafe { family.as_ref() };
        let table =
            NonNull::new(this.table.load(Ordering::Relaxed)).unwrap_or_else(|| unreachable!());
        // SAFETY: the table was created above and lives as long as the family.
        let instance = unsafe { table.as_ref() }.slots[index]
            .get()
            .unwrap_or_else(|| unreachable!());
        (family, table, instance)
    }

    /// Adds a handle. Lock-free: one `Relaxed` increment.
    #[inline]
    pub(super) fn acquire(&self) {
        self.canary.with(|_| ());
        let before = self.refs.fetch_add(1, Ordering::Relaxed);
        if before > isize::MAX as usize {
            // Billions of leaked handles: as `Arc`, refuse to wrap around.
            std::process::abort();
        }
    }

    /// Removes a handle; frees the family with everything in it if it was
    /// the last.
    ///
    /// # Safety
    ///
    /// `family` is live and the caller gives up one handle's count, not
    /// touching the family afterwards.
    #[inline]
    pub(super) unsafe fn release(family: NonNull<Self>) {
        // SAFETY: the caller's handle keeps the family alive until the
        // decrement below.
        let this = unsafe { family.as_ref() };
        this.canary.with(|_| ());
        if this.refs.fetch_sub(1, Ordering::Release) != 1 {
            return;
        }
        // Pairs with every other handle's Release decrement: their accesses
        // happen before the free.
        fence(Ordering::Acquire);
        // SAFETY: the count reached zero, so this was the last handle and no
        // other thread can reach the family; it was allocated as a Box.
        drop(unsafe { Box::from_raw(family.as_ptr()) });
    }

    /// The number of live handles (a snapshot).
    pub(super) fn handles(&self) -> usize {
        self.refs.load(Ordering::Acquire)
    }

    /// The published table, creating and publishing one with `count` slots
    /// if there is none yet. Lock-free: a losing creator frees its own.
    pub(super) fn table_or_init(&self, count: usize) -> NonNull<Table<T>> {
        if let Some(table) = NonNull::new(self.table.load(Ordering::Acquire)) {
            return table;
        }
        if count == 0 {
            panic!("thread_aware: the per-affinity strategy returned a slot count of 0");
        }
        let mine = NonNull::from(Box::leak(Box::new(Table::new(count))));
        match self.table.compare_exchange(
            ptr::null_mut(),
            mine.as_ptr(),
            Ordering::AcqRel,
            Ordering::Acquire,
        ) {
            Ok(_) => mine,
            Err(theirs) => {
                // SAFETY: `mine` was never published: no other thread saw it.
                drop(unsafe { Box::from_raw(mine.as_ptr()) });
                // Non-null: only a successful compare-exchange writes it.
                NonNull::new(theirs).unwrap_or_else(|| unreachable!())
            }
        }
    }

    /// The slot's instance, building it with the factory if the slot is
    /// empty, or waiting for the thread that is building it.
    ///
    /// # Panics
    ///
    /// If the factory panics (in this thread; the slot goes back to empty),
    /// or if this thread is already building this very slot (a factory
    /// that relocates into its own slot).
    #[cold]
    #[inline(never)]
    pub(super) fn get_or_build(
        &self,
        slot: &Slot<T>,
        destination: MemoryAffinity,
    ) -> NonNull<Instance<T>> {
        self.canary.with(|_| ());
        loop {
            let seen = slot.state.load(Ordering::Acquire);
            if let Some(instance) = ready(seen) {
                return instance;
            }
            if seen.is_null() {
                if slot
                    .state
                    .compare_exchange(
                        ptr::null_mut(),
                        busy(),
                        Ordering::Acquire,
                        Ordering::Relaxed,
                    )
                    .is_ok()
                {
                    return self.build(slot, destination);
                }
                continue;
            }
            self.wait(slot);
        }
    }

    /// Runs the factory for a slot this thread moved to `BUSY`, with no lock
    /// held, and publishes the instance.
    fn build(&self, slot: &Slot<T>, destination: MemoryAffinity) -> NonNull<Instance<T>> {
        let building = Building::start(self, slot);
        let value = (self.factory)(destination);
        let instance = new_instance(value);
        building.publish(instance);
        instance
    }

    /// Waits until the slot leaves `BUSY`/`WAITING` (or returns early: the
    /// caller re-examines the slot anyway). Spins briefly if spinning has
    /// paid off lately, then sleeps on the family's condition variable.
    fn wait(&self, slot: &Slot<T>) {
        if slot.builder.load(std::sync::atomic::Ordering::Relaxed) == this_thread() {
            panic!(
                "thread_aware: a per-affinity pointer's factory relocated a handle of its own family into the slot \
                 it is building; it would wait for itself forever"
            );
        }
        let settled = || {
            let word = slot.state.load(Ordering::Relaxed);
            word != busy() && word != waiting()
        };
        if self.spin.spin_until(settled) {
            return;
        }
        let word = slot.state.load(Ordering::Relaxed);
        if word == busy() {
            // Tell the builder someone sleeps. If the slot moved meanwhile,
            // re-examine it instead.
            if slot
                .state
                .compare_exchange(busy(), waiting(), Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
            {
                return;
            }
        } else if word != waiting() {
            return;
        }
        let mut guard = self.lock.lock().unwrap_or_else(PoisonError::into_inner);
        // Checked under the lock: a builder's settling swap either is seen
        // here or is followed by its `wake_all`, which needs this lock.
        while slot.state.load(Ordering::Relaxed) == waiting() {
            guard = self
                .settled
                .wait(guard)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }

    fn wake_all(&self) {
        let _guard = self.lock.lock().unwrap_or_else(PoisonError::into_inner);
        self.settled.notify_all();
    }

    /// Every instance that exists: the origin (if any), then the slots'
    /// built instances in slot order.
    pub(super) fn instances(&self) -> impl Iterator<Item = NonNull<Instance<T>>> + '_ {
        let table = NonNull::new(self.table.load(Ordering::Acquire));
        self.origin.into_iter().chain(
            table
                .into_iter()
                // SAFETY: a published table lives as long as the family,
                // which `&self` keeps alive.
                .flat_map(|t| unsafe { t.as_ref() }.instances()),
        )
    }
}

impl<T> Drop for Family<T> {
    fn drop(&mut self) {
        self.canary.with_mut(|_| ()); // retire
        // Owned locals: freed even if dropping an instance panics.
        let table = NonNull::new(self.table.load(Ordering::Relaxed));
        // SAFETY: the published table, owned by the family; dropping the
        // family is its one free.
        let _table = table.map(|t| unsafe { Box::from_raw(t.as_ptr()) });
        if let Some(origin) = self.origin.take() {
            // SAFETY: the origin is owned by the family alone and freed only
            // here; the last handle is gone, so nobody else accesses it.
            unsafe { free_instance(origin) };
        }
        // `_table` drops here (its instances), then the factory.
    }
}
