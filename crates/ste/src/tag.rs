//! Process-unique worker identities.

use core::cell::Cell;
use core::fmt;
use core::num::NonZeroU64;
// The tag counter is a process-global `static`, which loom cannot model (its
// atomics are not `const`-constructible), and it needs no ordering at all: it
// only has to hand out each value once, which a read-modify-write on a single
// location guarantees in any memory model. So it is std's atomic on purpose.
use core::sync::atomic::{AtomicU64, Ordering};

/// The next id to hand out. Ids start at 1 (so `Option<Tag>` is one word) and
/// are never reused.
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

sync_core::thread_local! {
    /// The tag of the worker running on this thread, if any. A `Cell` of a
    /// `Copy` type has no destructor, so it stays readable while other
    /// thread-locals (which may hold `Tagged` values) are being destroyed.
    #[allow(clippy::missing_const_for_thread_local)] // loom's macro takes no `const {}`
    static CURRENT: Cell<Option<Tag>> = Cell::new(None);
}

/// The identity of one worker thread, unique for the whole life of the
/// process.
///
/// A tag is a 64-bit id drawn from a global counter when the worker starts
/// (before its prelude runs) and is never handed out again: a value tagged by
/// a worker that has since been joined can never pass the check on a later
/// worker, whatever addresses or OS thread ids get reused. If the counter
/// were ever exhausted (2^64 - 1 workers), the process aborts rather than
/// reuse an id.
///
/// Its `Debug` output shows the id, e.g. `Tag(7)`.
///
/// ```
/// let thread = ste::Thread::new()?;
/// assert_eq!(ste::Tag::current(), None); // not on a worker here
/// let tag = thread.submit(|| ste::Tag::current())?;
/// assert_eq!(tag, Some(thread.tag()));
/// assert!(!thread.tag().is_current());
/// thread.submit(|| thread.tag().ensure_current())?;
/// thread.join()?;
/// # Ok::<(), ste::Error>(())
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Tag(NonZeroU64);

impl Tag {
    /// Draws a fresh, never used id. Aborts the process if none is left.
    pub(crate) fn fresh() -> Tag {
        let mut current = NEXT_ID.load(Ordering::Relaxed);
        loop {
            // `current == 0` means the counter wrapped past `u64::MAX`,
            // which the check below makes impossible; treat it as exhausted.
            let Some(id) = NonZeroU64::new(current) else {
                exhausted()
            };
            let Some(next) = current.checked_add(1) else {
                exhausted()
            };
            match NEXT_ID.compare_exchange_weak(current, next, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => return Tag(id),
                Err(actual) => current = actual,
            }
        }
    }

    /// The tag of the worker the calling thread is, or `None` when called
    /// from any other thread.
    pub fn current() -> Option<Tag> {
        CURRENT.try_with(Cell::get).ok().flatten()
    }

    /// Whether the calling thread is the worker this tag belongs to.
    pub fn is_current(self) -> bool {
        Tag::current() == Some(self)
    }

    /// Panics, with a message naming both tags, unless the calling thread is
    /// the worker this tag belongs to.
    #[track_caller]
    pub fn ensure_current(self) {
        if !self.is_current() {
            wrong_thread(self, "Tag::ensure_current")
        }
    }

    /// The numeric id (unique in the process, never 0).
    pub fn id(self) -> u64 {
        self.0.get()
    }

    /// Marks the calling thread as the worker owning `tag`.
    pub(crate) fn set_current(tag: Tag) {
        CURRENT.with(|c| c.set(Some(tag)));
    }
}

impl fmt::Debug for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Tag").field(&self.0.get()).finish()
    }
}

#[cold]
fn exhausted() -> ! {
    eprintln!("ste: the 64-bit worker tag counter is exhausted; aborting rather than reuse a tag");
    std::process::abort()
}

/// Panics with a message naming the expected tag and the current one.
#[cold]
#[track_caller]
pub(crate) fn wrong_thread(expected: Tag, what: &str) -> ! {
    match Tag::current() {
        Some(current) => panic!(
            "{what}: wrong thread: the value belongs to the ste worker {expected:?}, \
             but this is the ste worker {current:?}"
        ),
        None => panic!(
            "{what}: wrong thread: the value belongs to the ste worker {expected:?}, \
             but this thread is not an ste worker"
        ),
    }
}
