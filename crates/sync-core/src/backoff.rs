//! A bounded spin-then-yield policy that tells its caller when to park.

use crate::hint;

/// Exponential backoff for a waiter that will park once it runs out of
/// patience.
///
/// Each [`snooze`](Backoff::snooze) first spins (`2^step` pause
/// instructions, for `step` up to [`SPIN_STEPS`](Backoff::SPIN_STEPS)), then
/// yields the thread to the scheduler (up to
/// [`YIELD_STEPS`](Backoff::YIELD_STEPS) times), then returns `false`: the
/// budget is spent and the caller should park. The whole budget is a few
/// microseconds of spinning plus a handful of yields, so a waiter never burns
/// a core for long on a busy two-core machine, yet a reply that arrives within
/// a round trip or two is caught without a system call.
///
/// Under `--cfg loom` the budget is zero: `snooze` returns `false` at once,
/// so models go straight to the park path and stay small (spinning only
/// re-checks a condition, so nothing is lost).
///
/// ```
/// use sync_core::Backoff;
///
/// let mut backoff = Backoff::new();
/// let mut rounds = 0;
/// while backoff.snooze() {
///     rounds += 1; // re-check the condition here
/// }
/// assert!(backoff.is_completed());
/// # #[cfg(not(loom))]
/// assert_eq!(rounds, Backoff::SPIN_STEPS + Backoff::YIELD_STEPS);
/// ```
#[derive(Debug, Default, Clone)]
pub struct Backoff {
    step: u32,
}

impl Backoff {
    /// Number of spinning steps; the last one issues `2^(SPIN_STEPS - 1)`
    /// pause instructions.
    pub const SPIN_STEPS: u32 = 7;
    /// Number of `yield_now` steps after the spinning ones.
    pub const YIELD_STEPS: u32 = 4;

    /// A fresh budget.
    pub const fn new() -> Self {
        Self { step: 0 }
    }

    /// Restores the full budget.
    pub fn reset(&mut self) {
        self.step = 0;
    }

    /// Spins for a bit and returns `true` if the caller should re-check its
    /// condition, or returns `false` (without waiting) once the budget is
    /// spent: time to park. Never blocks indefinitely.
    pub fn snooze(&mut self) -> bool {
        if cfg!(loom) || self.is_completed() {
            return false;
        }
        if self.step < Self::SPIN_STEPS {
            for _ in 0..(1u32 << self.step) {
                hint::spin_loop();
            }
        } else {
            crate::thread::yield_now();
        }
        self.step += 1;
        true
    }

    /// Like [`snooze`](Self::snooze) but never yields: spins and returns
    /// `true` during the spinning steps only, then `false`. For waiters on a
    /// reply that is usually microseconds away, where giving the time slice
    /// away would cost more than parking.
    pub fn spin(&mut self) -> bool {
        if cfg!(loom) || self.step >= Self::SPIN_STEPS {
            return false;
        }
        for _ in 0..(1u32 << self.step) {
            hint::spin_loop();
        }
        self.step += 1;
        true
    }

    /// Whether the budget is spent (or is zero, under loom).
    pub fn is_completed(&self) -> bool {
        cfg!(loom) || self.step >= Self::SPIN_STEPS + Self::YIELD_STEPS
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::Backoff;

    #[test]
    fn budget_is_bounded_and_resettable() {
        let mut b = Backoff::new();
        let mut n = 0;
        while b.snooze() {
            n += 1;
            assert!(n <= 100, "backoff never ran out");
        }
        assert_eq!(n, Backoff::SPIN_STEPS + Backoff::YIELD_STEPS);
        assert!(b.is_completed());
        assert!(!b.snooze(), "a spent budget stays spent");
        b.reset();
        assert!(!b.is_completed());
        assert!(b.snooze());
    }

    #[test]
    fn spin_never_yields_and_stops_after_the_spin_steps() {
        let mut b = Backoff::new();
        let mut n = 0;
        while b.spin() {
            n += 1;
        }
        assert_eq!(n, Backoff::SPIN_STEPS);
        assert!(!b.is_completed(), "the yield steps are left for snooze");
        assert!(b.snooze(), "snooze goes on with the yield steps");
    }
}
