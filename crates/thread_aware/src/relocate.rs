//! The [`ThreadAware`] trait and [`Unaware`], its explicit opt-out.

use crate::MemoryAffinity;
use core::ops::{Deref, DerefMut};

/// A value that can be moved from one affinity (processor, memory region) to
/// another, detaching from state that belongs to the source on the way.
///
/// A runtime that moves work between affinities calls
/// `value.relocated(source, destination)` and uses the result on the
/// destination. A plain value returns itself; a value holding a per-core
/// pointer switches to the destination's instance; a container relocates
/// each element.
///
/// **Relocation is a performance contract, not a safety one**: code built on
/// it stays correct if `relocated` is never called (values then keep using
/// the source's state, which only costs contention). So `ThreadAware` is a
/// safe trait, and no `unsafe` code may rely on it having been called.
///
/// # Implementing it
///
/// Relocate every field, or derive it (`#[derive(ThreadAware)]`, feature
/// `derive`). A type whose relocation does nothing sets [`INERT`](Self::INERT)
/// so that containers of it relocate in O(1), without touching their
/// elements.
///
/// # No impl for `Arc` and `Rc`
///
/// Relocating a shared pointer cannot detach it: every clone still points at
/// the same value, on the source's memory. Say what you want: `Unaware<Arc<T>>`
/// to share it as is, or a per-affinity pointer ([`crate::PerCore`]) to give
/// each affinity its own instance.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be relocated between affinities: it does not implement `ThreadAware`",
    label = "`{Self}` does not implement `ThreadAware`",
    note = "wrap it in `thread_aware::Unaware(..)` to move it as is, mark the field `#[thread_aware(skip)]`, or hold shared state in a per-affinity pointer (`PerCore`, `PerNuma`, `PerProcess`)"
)]
pub trait ThreadAware: Sized {
    /// `true` when [`relocated`](Self::relocated) returns its argument
    /// unchanged for every value. Containers of inert elements then skip
    /// their elements entirely: relocating a 64 MiB `Vec<u8>` touches none
    /// of its bytes. Leave it `false` unless that holds.
    const INERT: bool = false;

    /// This value, moved from `source` to `destination`.
    #[must_use = "relocation returns the relocated value; the argument is consumed"]
    fn relocated(self, source: MemoryAffinity, destination: MemoryAffinity) -> Self;
}

/// Moves a value as is, whatever its type: the explicit "this needs no
/// relocation" for a field or capture that has no `ThreadAware` impl (or that
/// you want shared, like an `Arc`).
///
/// ```
/// use thread_aware::{ThreadAware, Unaware, create_manual_affinities};
///
/// struct NotThreadAware(u8); // neither Clone nor Debug nor ThreadAware
/// let a = create_manual_affinities(&[2]);
/// let moved = Unaware(NotThreadAware(7)).relocated(a[0], a[1]);
/// assert_eq!(moved.0.0, 7);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Unaware<T>(pub T);

impl<T> Unaware<T> {
    /// The wrapped value.
    pub fn into_inner(self) -> T {
        self.0
    }
}

impl<T> ThreadAware for Unaware<T> {
    const INERT: bool = true;
    fn relocated(self, _source: MemoryAffinity, _destination: MemoryAffinity) -> Self {
        self
    }
}

impl<T> Deref for Unaware<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T> DerefMut for Unaware<T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.0
    }
}

impl<T> From<T> for Unaware<T> {
    fn from(value: T) -> Self {
        Unaware(value)
    }
}
