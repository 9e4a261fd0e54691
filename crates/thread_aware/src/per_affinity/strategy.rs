//! How a per-affinity pointer maps an affinity to one of its slots.

use crate::MemoryAffinity;

/// Maps an affinity to the slot of a [`PerAffinity`](super::PerAffinity)
/// pointer that serves it: which slot, and how many slots the family has.
///
/// The three provided strategies are [`Core`] (one slot per processor),
/// [`Numa`] (one per memory region) and [`Process`] (one slot). You may
/// write your own; it is a safe trait: the pointer checks what it returns
/// (the index must be below the count, and the count must be the same for
/// every affinity one family sees) and panics with a message otherwise, it
/// never relies on it for memory safety.
pub trait Strategy {
    /// `(index, count)`: the slot serving `affinity`, and the number of
    /// slots a family of pointers needs for the set `affinity` belongs to.
    /// `index < count` must hold, and `count` must not depend on which
    /// affinity of one set is asked about.
    fn slot(affinity: MemoryAffinity) -> (usize, usize);

    /// `Some((index, count))` if [`slot`](Self::slot) returns that for
    /// every affinity. Then [`PerAffinity::new`](super::PerAffinity::new)
    /// places its first instance in that slot instead of building an
    /// origin instance, so a [`PerProcess`](super::PerProcess) has exactly
    /// one instance. `None` by default.
    fn fixed_slot() -> Option<(usize, usize)> {
        None
    }
}

/// One instance per processor: [`PerCore`](super::PerCore).
///
/// A type-level marker (it has no values).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Core {}

/// One instance per memory region (NUMA node): [`PerNuma`](super::PerNuma).
///
/// A type-level marker (it has no values).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Numa {}

/// One instance for the whole process: [`PerProcess`](super::PerProcess).
///
/// A type-level marker (it has no values).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Process {}

impl Strategy for Core {
    #[inline]
    fn slot(affinity: MemoryAffinity) -> (usize, usize) {
        (affinity.processor_index(), affinity.processor_count())
    }
}

impl Strategy for Numa {
    #[inline]
    fn slot(affinity: MemoryAffinity) -> (usize, usize) {
        (
            affinity.memory_region_index(),
            affinity.memory_region_count(),
        )
    }
}

impl Strategy for Process {
    #[inline]
    fn slot(_affinity: MemoryAffinity) -> (usize, usize) {
        (0, 1)
    }

    #[inline]
    fn fixed_slot() -> Option<(usize, usize)> {
        Some((0, 1))
    }
}
