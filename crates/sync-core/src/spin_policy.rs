//! The one wait policy of the workspace: spin only while spinning pays off.
//!
//! # Why
//!
//! A waiter that expects an answer within a microsecond or two (the other
//! side of a ping-pong, a worker running a tiny task) saves a system call
//! and a scheduler wake-up, 10-20 µs on the virtual machines we measure on,
//! by spinning a little before it parks. But on a busy machine the thread
//! it waits for is often *not running*: then every spin is wasted, and
//! worse, it burns the very time slice the other side needs to answer. A
//! fixed spin budget measured on a quiet machine made our round trips 2-3x
//! slower than park-at-once peers when the cores were taken.
//!
//! # How
//!
//! Each wait site (a channel's receiver, a worker's queue) keeps a tiny
//! history of its own recent waits in one word:
//!
//! - **credit** (0 ..= [`CREDIT`](SpinPolicy::CREDIT)): a wait whose
//!   condition came true *during* the spin restores full credit; a wait that
//!   spun its whole budget in vain costs one credit. At zero credit the site
//!   parks **at once**.
//! - **probes**: a site without credit still spins on one wait in
//!   [`PROBE_EVERY`](SpinPolicy::PROBE_EVERY), so that it notices when the
//!   machine has become quiet again. A probe that succeeds restores full
//!   credit.
//!
//! The spin itself polls the condition with a pause instruction in between
//! and is bounded by time, [`SPIN_LIMIT`](SpinPolicy::SPIN_LIMIT) (the clock
//! is read once every 64 polls), never by yields: `yield_now` under load
//! hands the core to a busy thread for a whole time slice.
//!
//! So on a quiet machine a ping-pong keeps spinning (every wait succeeds),
//! and on a loaded one a site stops spinning after `CREDIT` failed spins and
//! from then on wastes at most one bounded spin in `PROBE_EVERY` waits.
//!
//! # The constants, and the measurements behind them
//!
//! - `SPIN_LIMIT` = 4 µs. Measured on this project's 2-core VM (AMD EPYC,
//!   two runs, std only): a `pause` costs about 30 ns; reading the clock
//!   about 27 ns; a ping-pong between two *spinning* threads takes 0.32-0.34
//!   µs per round trip, while the same ping-pong through `park`/`unpark`
//!   takes 14-53 µs. A reply from a thread that is running therefore
//!   arrives well within 1-2 µs (a tiny task included); 4 µs covers that
//!   with a margin, yet is a small fraction of one park round trip, so a
//!   spin in vain costs little. (Spinning as long as a park costs, the
//!   textbook 2-competitive bound, would burn 15-50 µs per miss here.)
//! - `CREDIT` = 2: one unlucky miss (the other side preempted once) does not
//!   switch spinning off; two in a row do.
//! - `PROBE_EVERY` = 16: under load a probe that fails costs at most
//!   `SPIN_LIMIT`, i.e. 0.25 µs per wait on average, against round trips of
//!   tens of microseconds when the machine is loaded.
//!
//! Races between threads sharing one site only blur the history (relaxed
//! loads and stores of one word); they never affect correctness, since the
//! caller re-checks its condition and parks whatever the policy said.
//!
//! Under `--cfg loom` the budget is zero: [`spin_until`](SpinPolicy::spin_until)
//! checks the condition once and returns, so models go straight to the park
//! path and stay small. The history uses std's atomics on purpose: it is a
//! performance hint, not part of any protocol a model should explore.

use core::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// A wait site's spin-or-park policy (see the [module docs](self)).
///
/// ```
/// use sync_core::SpinPolicy;
/// use std::sync::atomic::{AtomicBool, Ordering};
///
/// static SITE: SpinPolicy = SpinPolicy::new();
/// let ready = AtomicBool::new(true);
/// // Spins (at most a few microseconds) only if this site's recent spins
/// // paid off; `false` means "park now" (after re-checking, as always).
/// assert!(SITE.spin_until(|| ready.load(Ordering::Acquire)));
/// ```
#[derive(Debug)]
pub struct SpinPolicy {
    /// `credit | waits_since_credit_ran_out << 8`.
    history: AtomicU32,
}

const CREDIT_MASK: u32 = 0xff;
const COUNT_SHIFT: u32 = 8;

impl SpinPolicy {
    /// Longest a single spin lasts.
    pub const SPIN_LIMIT: Duration = Duration::from_micros(4);
    /// Credit of a site whose last spin succeeded; each spin in vain costs one.
    pub const CREDIT: u32 = 2;
    /// A site without credit still spins on one wait in this many.
    pub const PROBE_EVERY: u32 = 16;
    /// Polls between two readings of the clock.
    const POLLS_PER_CLOCK_READ: u32 = 64;

    /// A site with full credit: its first waits spin.
    pub const fn new() -> Self {
        SpinPolicy {
            history: AtomicU32::new(Self::CREDIT),
        }
    }

    /// Spins until `ready()` returns `true`, if this site's recent history
    /// says spinning pays off, for at most [`SPIN_LIMIT`](Self::SPIN_LIMIT).
    /// Returns whether `ready()` was seen `true`; on `false` the caller
    /// parks (after whatever re-check its protocol needs).
    ///
    /// Never blocks, never yields, never allocates. Checks `ready()` at
    /// least once, even at zero credit (or under loom, where it checks only
    /// once).
    #[inline]
    pub fn spin_until(&self, mut ready: impl FnMut() -> bool) -> bool {
        if ready() {
            return true;
        }
        if cfg!(loom) || !self.should_spin() {
            return false;
        }
        let hit = Self::spin(&mut ready);
        self.record(hit);
        hit
    }

    /// Whether this wait should spin, counting it towards the next probe.
    fn should_spin(&self) -> bool {
        let history = self.history.load(Ordering::Relaxed);
        if history & CREDIT_MASK > 0 {
            return true;
        }
        let waits = (history >> COUNT_SHIFT).wrapping_add(1);
        self.history
            .store(waits.wrapping_shl(COUNT_SHIFT), Ordering::Relaxed);
        waits % Self::PROBE_EVERY == 0
    }

    fn record(&self, hit: bool) {
        let history = self.history.load(Ordering::Relaxed);
        let credit = history & CREDIT_MASK;
        let new = if hit {
            Self::CREDIT
        } else {
            credit.saturating_sub(1)
        };
        if new != credit || hit && history >> COUNT_SHIFT != 0 {
            self.history.store(new, Ordering::Relaxed);
        }
    }

    /// The bounded spin: polls with a pause in between, reads the clock
    /// once per [`POLLS_PER_CLOCK_READ`](Self::POLLS_PER_CLOCK_READ) polls.
    #[cold]
    fn spin(ready: &mut impl FnMut() -> bool) -> bool {
        let start = Instant::now();
        loop {
            for _ in 0..Self::POLLS_PER_CLOCK_READ {
                core::hint::spin_loop();
                if ready() {
                    return true;
                }
            }
            if start.elapsed() >= Self::SPIN_LIMIT {
                return false;
            }
        }
    }

    /// Whether the site would spin on its next wait, without counting it.
    pub fn has_credit(&self) -> bool {
        self.history.load(Ordering::Relaxed) & CREDIT_MASK > 0
    }
}

impl Default for SpinPolicy {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::SpinPolicy;
    use core::cell::Cell;

    #[test]
    fn a_site_whose_spins_fail_parks_at_once_but_probes() {
        let site = SpinPolicy::new();
        let polls = Cell::new(0u32);
        let never = || {
            polls.set(polls.get() + 1);
            false
        };
        for _ in 0..SpinPolicy::CREDIT {
            assert!(site.has_credit());
            assert!(!site.spin_until(never));
        }
        assert!(!site.has_credit(), "credit spent after CREDIT failed spins");
        let mut spun = 0;
        for _ in 0..SpinPolicy::PROBE_EVERY * 4 {
            polls.set(0);
            assert!(!site.spin_until(never));
            if polls.get() > 1 {
                spun += 1;
            }
        }
        assert_eq!(spun, 4, "one probe per PROBE_EVERY waits, else one check");
    }

    #[test]
    fn a_successful_spin_restores_credit() {
        let site = SpinPolicy::new();
        for _ in 0..SpinPolicy::CREDIT {
            assert!(!site.spin_until(|| false));
        }
        assert!(!site.has_credit());
        // Wait for the probe, which succeeds after a few polls.
        let mut n = 0;
        let mut probes = 0;
        while !site.has_credit() {
            let polls = Cell::new(0u32);
            site.spin_until(|| {
                polls.set(polls.get() + 1);
                polls.get() > 3
            });
            probes += 1;
            n += 1;
            assert!(n <= SpinPolicy::PROBE_EVERY, "the probe came");
        }
        assert_eq!(probes, SpinPolicy::PROBE_EVERY);
        assert!(site.spin_until(|| true));
    }

    #[test]
    fn an_immediately_true_condition_does_not_spin_or_count() {
        let site = SpinPolicy::new();
        for _ in 0..100 {
            assert!(site.spin_until(|| true));
        }
        assert!(site.has_credit());
    }
}
