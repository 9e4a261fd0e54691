//! A value whose destructor panics, and whose panic's payload may panic
//! again when *it* is dropped: the payload that tests whatever catches a
//! panic and then drops what it caught.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// How every deliberate panic message of this type starts.
pub(crate) const DELIBERATE: &str = "PanicsOnDrop:";

/// Dropping it panics. With `depth` 1 the panic's payload is a message;
/// with `depth` n > 1 the payload is another `PanicsOnDrop` of depth n - 1,
/// so code that catches the panic and drops the payload meets a second
/// panic, and so on, n panics in all. Every level counts its drop in one
/// shared counter ([`drops`](Self::drops)).
///
/// It never panics while its thread is already unwinding (that would abort
/// the test binary instead of failing the test); it then counts its drop
/// and goes quietly.
#[derive(Debug)]
pub struct PanicsOnDrop {
    depth: u32,
    drops: Arc<AtomicUsize>,
}

impl PanicsOnDrop {
    /// A value whose drop panics `depth` levels deep (at least 1).
    pub fn new(depth: u32) -> PanicsOnDrop {
        crate::hostile_waker::quiet_deliberate_panics();
        PanicsOnDrop {
            depth: depth.max(1),
            drops: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// How many levels of this chain have been dropped so far (from any
    /// clone of the counter: take it before the value goes).
    pub fn drops(&self) -> Arc<AtomicUsize> {
        Arc::clone(&self.drops)
    }

    /// Panics with this value as the payload (`std::panic::panic_any`).
    pub fn throw(self) -> ! {
        std::panic::panic_any(self)
    }
}

impl Drop for PanicsOnDrop {
    fn drop(&mut self) {
        self.drops.fetch_add(1, Ordering::SeqCst);
        if std::thread::panicking() {
            return;
        }
        if self.depth > 1 {
            std::panic::panic_any(PanicsOnDrop {
                depth: self.depth - 1,
                drops: Arc::clone(&self.drops),
            });
        }
        panic!("{DELIBERATE} the last level of the chain panics on drop");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::panic::{AssertUnwindSafe, catch_unwind};

    #[test]
    fn each_level_panics_with_the_next_as_payload() {
        let bomb = PanicsOnDrop::new(3);
        let drops = bomb.drops();
        let mut caught = catch_unwind(AssertUnwindSafe(move || drop(bomb))).unwrap_err();
        let mut levels = 1;
        loop {
            match caught.downcast::<PanicsOnDrop>() {
                Ok(next) => {
                    caught = catch_unwind(AssertUnwindSafe(move || drop(next))).unwrap_err();
                    levels += 1;
                }
                Err(message) => {
                    assert!(
                        message
                            .downcast_ref::<String>()
                            .unwrap()
                            .starts_with(DELIBERATE)
                    );
                    break;
                }
            }
        }
        assert_eq!((levels, drops.load(Ordering::SeqCst)), (3, 3));
    }
}
