//! A wrapper that gives a value a cache line (or two) of its own.

use core::fmt;
use core::ops::{Deref, DerefMut};

/// Pads and aligns `T` so that it never shares a cache line with a
/// neighbour.
///
/// Two atomics written by different cores that sit on one line make every
/// write invalidate the other core's copy ("false sharing"). x86-64 and
/// aarch64 prefetch lines in pairs, so the alignment there is 128 bytes;
/// elsewhere it is 64.
///
/// Costs memory, nothing else: `Deref` is free.
///
/// ```
/// use sync_core::{CachePadded, atomic::{AtomicUsize, Ordering}};
///
/// let counters = [CachePadded::new(AtomicUsize::new(0)), CachePadded::new(AtomicUsize::new(0))];
/// counters[1].fetch_add(1, Ordering::Relaxed);
/// assert!(core::mem::align_of_val(&counters[0]) >= 64);
/// ```
#[cfg_attr(any(target_arch = "x86_64", target_arch = "aarch64"), repr(align(128)))]
#[cfg_attr(
    not(any(target_arch = "x86_64", target_arch = "aarch64")),
    repr(align(64))
)]
#[derive(Default, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CachePadded<T> {
    value: T,
}

impl<T> CachePadded<T> {
    /// Wraps `value`.
    pub const fn new(value: T) -> Self {
        Self { value }
    }

    /// Unwraps the value.
    pub fn into_inner(self) -> T {
        self.value
    }
}

impl<T> Deref for CachePadded<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.value
    }
}

impl<T> DerefMut for CachePadded<T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.value
    }
}

impl<T> From<T> for CachePadded<T> {
    fn from(value: T) -> Self {
        Self::new(value)
    }
}

impl<T: fmt::Debug> fmt::Debug for CachePadded<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CachePadded")
            .field("value", &self.value)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::CachePadded;

    #[test]
    fn neighbours_do_not_share_a_line() {
        let pair = [CachePadded::new(0u8), CachePadded::new(1u8)];
        let a = &*pair[0] as *const u8 as usize;
        let b = &*pair[1] as *const u8 as usize;
        assert!(b - a >= 64, "padded neighbours are {} bytes apart", b - a);
        assert_eq!(a % core::mem::align_of::<CachePadded<u8>>(), 0);
    }

    #[test]
    fn deref_into_inner_and_debug() {
        let mut p = CachePadded::from(vec![1, 2]);
        p.push(3);
        assert_eq!(p.len(), 3);
        assert_eq!(format!("{p:?}"), "CachePadded { value: [1, 2, 3] }");
        assert_eq!(p.into_inner(), vec![1, 2, 3]);
    }
}
