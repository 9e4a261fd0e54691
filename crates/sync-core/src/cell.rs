//! An `UnsafeCell` with loom's closure-shaped API in both builds.
//!
//! Loom can only check an access it can bracket, so it hands out the pointer
//! through a closure. Giving the std build the same shape means the code that
//! touches a cell is written once and is the code loom checks.

/// A cell whose accesses loom can track (see the [module docs](self)).
#[derive(Debug)]
pub struct UnsafeCell<T: ?Sized>(Inner<T>);

#[cfg(loom)]
type Inner<T> = loom::cell::UnsafeCell<T>;
#[cfg(not(loom))]
type Inner<T> = core::cell::UnsafeCell<T>;

impl<T> UnsafeCell<T> {
    /// Wraps `value`.
    #[cfg(not(loom))]
    pub const fn new(value: T) -> Self {
        Self(core::cell::UnsafeCell::new(value))
    }

    /// Wraps `value`.
    #[cfg(loom)]
    pub fn new(value: T) -> Self {
        Self(loom::cell::UnsafeCell::new(value))
    }

    /// Unwraps the value.
    pub fn into_inner(self) -> T {
        self.0.into_inner()
    }
}

impl<T: ?Sized> UnsafeCell<T> {
    /// Calls `f` with a shared pointer to the contents. Under loom, the
    /// model fails if a `with_mut` access overlaps this one.
    #[inline(always)]
    pub fn with<R>(&self, f: impl FnOnce(*const T) -> R) -> R {
        #[cfg(loom)]
        return self.0.with(f);
        #[cfg(not(loom))]
        return f(self.0.get());
    }

    /// Calls `f` with a mutable pointer to the contents. Under loom, the
    /// model fails if any other access overlaps this one.
    #[inline(always)]
    pub fn with_mut<R>(&self, f: impl FnOnce(*mut T) -> R) -> R {
        #[cfg(loom)]
        return self.0.with_mut(f);
        #[cfg(not(loom))]
        return f(self.0.get());
    }
}

#[cfg(test)]
mod tests {
    use super::UnsafeCell;

    #[test]
    fn with_and_with_mut_see_the_same_value() {
        let cell = UnsafeCell::new(1u32);
        // SAFETY: the cell is local to this test; no other access overlaps.
        cell.with_mut(|p| unsafe { *p += 41 });
        // SAFETY: as above; the write finished before this read.
        assert_eq!(cell.with(|p| unsafe { *p }), 42);
        assert_eq!(cell.into_inner(), 42);
    }
}
