//! Relocatable closures: work a runtime can move between affinities.
//!
//! A Rust closure hides what it captures, so nothing can relocate its
//! captures. These closures name them: the constructors take the captured
//! data `D` (one value; a tuple for several) and a plain function pointer
//! (a closure that captures nothing coerces to one). `D` must be
//! [`ThreadAware`], so relocating the closure relocates everything the call
//! will see.
//!
//! | constructor | function | type | callable as |
//! |---|---|---|---|
//! | [`relocate_once`] | `fn(D) -> R` | [`ClosureOnce`] | [`RelocateFnOnce`] |
//! | [`relocate_mut`] | `fn(&mut D) -> R` | [`ClosureMut`] | [`RelocateFnMut`], [`RelocateFnOnce`] |
//! | [`relocate`] | `fn(&D) -> R` | [`Closure`] | [`RelocateFn`], [`RelocateFnMut`], [`RelocateFnOnce`] |
//!
//! A runtime that keeps work of different types in one queue boxes it:
//! [`BoxedRelocateFnOnce<R>`] holds any `RelocateFnOnce<R> + Send + 'static`,
//! is itself `ThreadAware` and `RelocateFnOnce<R>`, and relocates in place
//! (no new allocation) through the object-safe [`RelocateFnOnceDyn`].
//!
//! ```
//! use std::collections::VecDeque;
//! use thread_aware::{
//!     BoxedRelocateFnOnce, RelocateFnOnce, ThreadAware, create_manual_affinities, relocate_once,
//! };
//!
//! let affinities = create_manual_affinities(&[2]);
//! let mut queue: VecDeque<BoxedRelocateFnOnce<usize>> = VecDeque::new();
//! queue.push_back(BoxedRelocateFnOnce::new(relocate_once(
//!     vec![1, 2, 3],
//!     |v: Vec<i32>| v.len(),
//! )));
//! queue.push_back(BoxedRelocateFnOnce::new(relocate_once(
//!     (String::from("hello"), 2_usize),
//!     |(s, n)| s.len() * n,
//! )));
//!
//! // Moving the work to processor 1: relocate it, then run it there.
//! let results: Vec<usize> = queue
//!     .into_iter()
//!     .map(|work| work.relocated(affinities[0], affinities[1]).call_once())
//!     .collect();
//! assert_eq!(results, [3, 10]);
//! ```

use crate::{MemoryAffinity, ThreadAware};
use core::fmt;

/// Work that can be relocated and then run once: the bound a runtime puts on
/// what it accepts. Relocate with [`ThreadAware::relocated`] when moving it,
/// then [`call_once`](Self::call_once) it.
pub trait RelocateFnOnce<R>: ThreadAware {
    /// Runs the work, consuming it.
    fn call_once(self) -> R;
}

/// Relocatable work that can run many times, mutating its captured data.
pub trait RelocateFnMut<R>: RelocateFnOnce<R> {
    /// Runs the work with mutable access to its data.
    fn call_mut(&mut self) -> R;
}

/// Relocatable work that can run many times through a shared reference.
pub trait RelocateFn<R>: RelocateFnMut<R> {
    /// Runs the work with shared access to its data.
    fn call(&self) -> R;
}

/// Captured data and a function that consumes it: made by [`relocate_once`].
pub struct ClosureOnce<D, R> {
    data: D,
    f: fn(D) -> R,
}

/// Captured data and a function that mutates it: made by [`relocate_mut`].
pub struct ClosureMut<D, R> {
    data: D,
    f: fn(&mut D) -> R,
}

/// Captured data and a function that reads it: made by [`relocate`].
pub struct Closure<D, R> {
    data: D,
    f: fn(&D) -> R,
}

/// A closure over `data` that consumes it when called once: `f(data)`.
/// Relocating it relocates `data`.
///
/// ```
/// use thread_aware::{RelocateFnOnce, ThreadAware, create_manual_affinities, relocate_once};
///
/// let a = create_manual_affinities(&[2]);
/// let work = relocate_once((vec![1, 2], 10), |(v, k)| v.iter().sum::<i32>() * k);
/// assert_eq!(work.relocated(a[0], a[1]).call_once(), 30);
/// ```
pub fn relocate_once<D: ThreadAware, R>(data: D, f: fn(D) -> R) -> ClosureOnce<D, R> {
    ClosureOnce { data, f }
}

/// A closure over `data` that can be called many times with `&mut data`:
/// `f(&mut data)`. Relocating it relocates `data`.
///
/// ```
/// use thread_aware::{RelocateFnMut, relocate_mut};
///
/// let mut counter = relocate_mut(0_u64, |n| {
///     *n += 1;
///     *n
/// });
/// assert_eq!(counter.call_mut(), 1);
/// assert_eq!(counter.call_mut(), 2);
/// ```
pub fn relocate_mut<D: ThreadAware, R>(data: D, f: fn(&mut D) -> R) -> ClosureMut<D, R> {
    ClosureMut { data, f }
}

/// A closure over `data` that can be called many times with `&data`:
/// `f(&data)`. Relocating it relocates `data`.
///
/// ```
/// use thread_aware::{RelocateFn, relocate};
///
/// let greet = relocate(String::from("world"), |name| format!("hello {name}"));
/// assert_eq!(greet.call(), "hello world");
/// assert_eq!(greet.call(), "hello world");
/// ```
pub fn relocate<D: ThreadAware, R>(data: D, f: fn(&D) -> R) -> Closure<D, R> {
    Closure { data, f }
}

macro_rules! closure_common {
    ($name:ident) => {
        impl<D, R> $name<D, R> {
            /// The captured data.
            pub fn data(&self) -> &D {
                &self.data
            }

            /// The captured data, leaving the function.
            pub fn into_data(self) -> D {
                self.data
            }
        }

        impl<D: ThreadAware, R> ThreadAware for $name<D, R> {
            const INERT: bool = D::INERT;
            fn relocated(self, source: MemoryAffinity, destination: MemoryAffinity) -> Self {
                Self {
                    data: self.data.relocated(source, destination),
                    f: self.f,
                }
            }
        }

        // By hand: a derive would ask `R: Clone` / `R: Debug`.
        impl<D: Clone, R> Clone for $name<D, R> {
            fn clone(&self) -> Self {
                Self {
                    data: self.data.clone(),
                    f: self.f,
                }
            }
        }

        impl<D: fmt::Debug, R> fmt::Debug for $name<D, R> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_struct(stringify!($name))
                    .field("data", &self.data)
                    .field("returns", &core::any::type_name::<R>())
                    .finish_non_exhaustive()
            }
        }
    };
}

closure_common!(ClosureOnce);
closure_common!(ClosureMut);
closure_common!(Closure);

impl<D: ThreadAware, R> RelocateFnOnce<R> for ClosureOnce<D, R> {
    fn call_once(self) -> R {
        (self.f)(self.data)
    }
}

impl<D: ThreadAware, R> RelocateFnOnce<R> for ClosureMut<D, R> {
    fn call_once(mut self) -> R {
        (self.f)(&mut self.data)
    }
}

impl<D: ThreadAware, R> RelocateFnMut<R> for ClosureMut<D, R> {
    fn call_mut(&mut self) -> R {
        (self.f)(&mut self.data)
    }
}

impl<D: ThreadAware, R> RelocateFnOnce<R> for Closure<D, R> {
    fn call_once(self) -> R {
        (self.f)(&self.data)
    }
}

impl<D: ThreadAware, R> RelocateFnMut<R> for Closure<D, R> {
    fn call_mut(&mut self) -> R {
        (self.f)(&self.data)
    }
}

impl<D: ThreadAware, R> RelocateFn<R> for Closure<D, R> {
    fn call(&self) -> R {
        (self.f)(&self.data)
    }
}

/// The object-safe form of [`RelocateFnOnce`]: what
/// [`BoxedRelocateFnOnce`] stores. Implemented for every
/// `RelocateFnOnce<R> + Send + 'static`; a runtime normally uses
/// `BoxedRelocateFnOnce<R>` rather than this trait.
pub trait RelocateFnOnceDyn<R>: Send {
    /// This work relocated from `source` to `destination`, in the same
    /// allocation.
    fn relocated_box(
        self: Box<Self>,
        source: MemoryAffinity,
        destination: MemoryAffinity,
    ) -> Box<dyn RelocateFnOnceDyn<R>>;

    /// Runs the work, consuming it.
    fn call_box(self: Box<Self>) -> R;
}

impl<R, F> RelocateFnOnceDyn<R> for F
where
    F: RelocateFnOnce<R> + Send + 'static,
{
    fn relocated_box(
        self: Box<Self>,
        source: MemoryAffinity,
        destination: MemoryAffinity,
    ) -> Box<dyn RelocateFnOnceDyn<R>> {
        let mut this = self;
        if !F::INERT {
            // Moves the work out of the box and the relocated work back in:
            // the allocation is reused.
            *this = (*this).relocated(source, destination);
        }
        this
    }

    fn call_box(self: Box<Self>) -> R {
        (*self).call_once()
    }
}

/// Any relocatable one-shot work returning `R`, boxed: one type for a
/// runtime's queue. `Send`, so the queue can cross threads; `'static` is
/// required of the work because it runs after the code that queued it has
/// moved on.
///
/// Relocating it relocates the work inside, in the same allocation.
pub struct BoxedRelocateFnOnce<R> {
    inner: Box<dyn RelocateFnOnceDyn<R>>,
}

impl<R> BoxedRelocateFnOnce<R> {
    /// Boxes `work`.
    pub fn new<F>(work: F) -> Self
    where
        F: RelocateFnOnce<R> + Send + 'static,
    {
        Self {
            inner: Box::new(work),
        }
    }

    /// Wraps already-boxed work.
    pub fn from_box(work: Box<dyn RelocateFnOnceDyn<R>>) -> Self {
        Self { inner: work }
    }

    /// The boxed work.
    pub fn into_box(self) -> Box<dyn RelocateFnOnceDyn<R>> {
        self.inner
    }
}

impl<R> ThreadAware for BoxedRelocateFnOnce<R> {
    fn relocated(self, source: MemoryAffinity, destination: MemoryAffinity) -> Self {
        Self {
            inner: self.inner.relocated_box(source, destination),
        }
    }
}

impl<R> RelocateFnOnce<R> for BoxedRelocateFnOnce<R> {
    fn call_once(self) -> R {
        self.inner.call_box()
    }
}

impl<R> fmt::Debug for BoxedRelocateFnOnce<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BoxedRelocateFnOnce")
            .field("returns", &core::any::type_name::<R>())
            .finish_non_exhaustive()
    }
}
