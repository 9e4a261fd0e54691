//! `Tagged<T>`: a value only its creating worker may touch.

use crate::queue::BoxTask;
use crate::tag::{Tag, wrong_thread};
use crate::thread::{Shared, current_shared};
use core::fmt;
use core::mem::ManuallyDrop;
use core::ops::{Deref, DerefMut};
use sync_core::sync::Arc;

/// A value bound to the worker thread that created it.
///
/// Created on a worker (inside [`Thread::submit`](crate::Thread::submit) and
/// friends) with [`Tagged::new`], it carries that worker's [`Tag`]. Access
/// through `Deref`/`DerefMut` panics on any other thread, with a message
/// naming both tags; [`try_get`](Tagged::try_get) and
/// [`try_get_mut`](Tagged::try_get_mut) return `None` instead.
///
/// `Tagged<T>` is `Send + Sync` for every `T`, because nothing of `T` is
/// reachable off its thread: this is how a `!Send` resource (an `Rc`, a COM
/// pointer, an audio handle) is handed out to other threads and used only
/// through `submit`.
///
/// # Why `T: 'static`
///
/// A `Tagged` dropped off its worker does not drop `T` there and then: it
/// queues `T`'s destructor for the worker and returns at once (blocking
/// would deadlock whenever the worker is waiting on the dropping thread).
/// That destructor runs *later*, after the dropping scope may have ended. A
/// `T` that borrowed from that scope (a guard holding `&mut local`, a
/// `MutexGuard` of a local mutex) would be destroyed after its borrow died:
/// a use-after-free. So `T` owns everything it refers to, and a borrowed
/// `Tagged` does not compile:
///
/// ```compile_fail
/// let thread = ste::Thread::new()?;
/// let mut local = 0;
/// let escaped = thread.submit(|| ste::Tagged::new(&mut local))?;
/// drop(escaped); // would queue a destructor that still points at `local`
/// # Ok::<(), ste::Error>(())
/// ```
///
/// To use borrowed data on the worker, borrow it inside
/// [`submit`](crate::Thread::submit), which blocks until the worker is done.
///
/// # Dropping
///
/// Dropped on its worker, the value is dropped in place. Dropped anywhere
/// else, `T`'s destructor never runs there: the value is sent back to its
/// worker in a boxed task (one allocation) and dropped there, after the
/// tasks already queued. If that worker has shut down, the value is
/// **leaked** instead (its memory is never freed and its destructor never
/// runs). Use [`Thread::drop`](crate::Thread::drop) or drop the value inside
/// a task to drop it synchronously.
///
/// ```
/// use std::rc::Rc;
///
/// let thread = ste::Thread::new()?;
/// let handle = thread.submit(|| ste::Tagged::new(Rc::new(41)))?;
/// assert!(handle.try_get().is_none()); // not on the worker
/// let n = thread.submit(|| **handle + 1)?;
/// assert_eq!(n, 42);
/// thread.drop(handle)?; // the `Rc` is released on the worker
/// thread.join()?;
/// # Ok::<(), ste::Error>(())
/// ```
pub struct Tagged<T: 'static> {
    tag: Tag,
    /// Where to send the value to be dropped.
    owner: Arc<Shared>,
    value: ManuallyDrop<T>,
}

// SAFETY: `T` is only ever accessed (borrowed, mutated, dropped) on the
// thread whose tag the value carries: every access path checks the tag
// first, and an off-thread drop moves the value back to that thread without
// touching it. Moving the bytes of a `T` between threads without using them
// is not an access.
unsafe impl<T: 'static> Send for Tagged<T> {}
// SAFETY: a `&Tagged<T>` on another thread gives no access to `T` (the tag
// check fails there), so all `&T` ever produced live on one thread and `T`
// need not be `Sync`.
unsafe impl<T: 'static> Sync for Tagged<T> {}

impl<T: 'static> Tagged<T> {
    /// Tags `value` with the current worker's tag.
    ///
    /// # Panics
    ///
    /// If the calling thread is not an `ste` worker.
    #[track_caller]
    pub fn new(value: T) -> Tagged<T> {
        let Some(owner) = current_shared() else {
            panic!(
                "ste::Tagged::new called outside of an ste worker thread; \
                 create tagged values inside `Thread::submit` (or `spawn`)"
            )
        };
        Tagged {
            tag: owner.tag,
            owner,
            value: ManuallyDrop::new(value),
        }
    }

    /// The tag of the worker this value belongs to.
    pub fn tag(&self) -> Tag {
        self.tag
    }

    /// Whether the calling thread is the one this value belongs to.
    pub fn is_current(&self) -> bool {
        self.tag.is_current()
    }

    /// The value, if the calling thread is its worker.
    pub fn try_get(&self) -> Option<&T> {
        self.is_current().then(|| &*self.value)
    }

    /// The value, mutably, if the calling thread is its worker.
    pub fn try_get_mut(&mut self) -> Option<&mut T> {
        if self.is_current() {
            Some(&mut *self.value)
        } else {
            None
        }
    }

    /// Unwraps the value.
    ///
    /// # Panics
    ///
    /// Off the value's worker (the value is then sent back to be dropped,
    /// as any `Tagged` dropped off-thread).
    #[track_caller]
    pub fn into_inner(self) -> T {
        match self.try_into_inner() {
            Ok(value) => value,
            Err(this) => wrong_thread(this.tag, "Tagged::into_inner"),
        }
    }

    /// Unwraps the value, or gives it back if the calling thread is not its
    /// worker.
    pub fn try_into_inner(self) -> Result<T, Tagged<T>> {
        if !self.is_current() {
            return Err(self);
        }
        let mut this = ManuallyDrop::new(self);
        // SAFETY: `this` is never dropped, so `value` is taken exactly once
        // and `owner` is moved out exactly once.
        let (value, owner) = unsafe {
            (
                ManuallyDrop::take(&mut this.value),
                core::ptr::read(&this.owner),
            )
        };
        drop(owner);
        Ok(value)
    }
}

impl<T: 'static> Deref for Tagged<T> {
    type Target = T;

    #[track_caller]
    fn deref(&self) -> &T {
        match self.try_get() {
            Some(value) => value,
            None => wrong_thread(self.tag, "ste::Tagged"),
        }
    }
}

impl<T: 'static> DerefMut for Tagged<T> {
    #[track_caller]
    fn deref_mut(&mut self) -> &mut T {
        let tag = self.tag;
        match self.try_get_mut() {
            Some(value) => value,
            None => wrong_thread(tag, "ste::Tagged"),
        }
    }
}

impl<T: fmt::Debug + 'static> fmt::Debug for Tagged<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Tagged");
        d.field("tag", &self.tag);
        match self.try_get() {
            Some(value) => d.field("value", value).finish(),
            None => d.finish_non_exhaustive(),
        }
    }
}

/// A value on its way home, moved but never touched off its thread.
struct SendHome<T>(T);

// SAFETY: the wrapped value is only moved across threads, never accessed:
// `go` (its only use) runs on the owning worker, the tasks that carry it
// are leaked (never dropped) when they cannot be delivered.
unsafe impl<T> Send for SendHome<T> {}

impl<T> SendHome<T> {
    fn go(self) {
        drop(self.0);
    }
}

impl<T: 'static> Drop for Tagged<T> {
    fn drop(&mut self) {
        if self.is_current() {
            // SAFETY: dropped once, here; `self.value` is not used again.
            unsafe { ManuallyDrop::drop(&mut self.value) };
            return;
        }
        // SAFETY: taken once, here; `self.value` is not used again.
        let home = SendHome(unsafe { ManuallyDrop::take(&mut self.value) });
        if let Err(undeliverable) = BoxTask::push(&self.owner.queue, move || home.go()) {
            // The owner is gone: the destructor may not run on this thread.
            core::mem::forget(undeliverable);
        }
    }
}
