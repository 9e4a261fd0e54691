//! The one wait policy of the workspace: spin only while spinning pays off.

use crate::CpuId;
use core::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// A wait site's spin-or-park policy: spin only while spinning pays off.
///
/// # Why
///
/// A waiter that expects an answer within a microsecond or two (the other
/// side of a ping-pong, a worker running a tiny task) saves a system call
/// and a scheduler wake-up, 10-20 µs on the virtual machines we measure on,
/// by spinning a little before it parks. But on a busy machine the thread
/// it waits for is often *not running*: then every spin is wasted, and
/// worse, it burns the very time slice the other side needs to answer. A
/// fixed spin budget measured on a quiet machine made our round trips 2-3x
/// slower than park-at-once peers when the cores were taken.
///
/// # How
///
/// Each wait site (a channel's receiver, a worker's queue) keeps a tiny
/// history of its own recent waits in one word:
///
/// - **credit** (0 ..= [`CREDIT`](SpinPolicy::CREDIT)): a wait whose
///   condition came true *fast* during the spin (within
///   [`FAST`](SpinPolicy::FAST): the peer was running) restores full
///   credit; any other spin costs one. At zero credit the site parks **at
///   once**.
/// - **probes**: a site without credit still spins on one wait in
///   2^2 ... 2^10 ([`PROBE_GAPS`](SpinPolicy::PROBE_GAPS)), for up to
///   [`PROBE_LIMIT`](SpinPolicy::PROBE_LIMIT): the gap doubles after every
///   probe that was not a fast hit and resets on a fast hit. A probe that
///   comes true *late* (the peer had to be woken first) earns one more
///   spin, to see whether the peer now stays awake. Every wait counts
///   towards the next probe, hinted ones too (below).
/// - **peer hints**: a caller that knows its peer was running a moment ago
///   (ste's caller pushed to a worker that had not parked; ste's worker
///   completed a task whose caller was still spinning) spins regardless of
///   credit, and a fast answer restores full credit
///   ([`spin_until_unless_parked`](SpinPolicy::spin_until_unless_parked));
///   a site *with* credit spins on a hint as usual, and there a hinted spin
///   that is not fast costs all credit at once, like a missed probe (the
///   peer was said to be running, so a slow answer is a strong sign).
///   Without this, two parked sides of a ping-pong stay parked: each side's
///   probe finds the other asleep, so it only ever sees late answers. A
///   site without credit spins on a hint only for the first, clock-free
///   batch of polls (about 2 µs): under load, a peer that has not parked is
///   often preempted rather than running. With the whole `SPIN_LIMIT` on a
///   hint, ste's two sides kept each other spinning on every wait (loaded
///   rounds at 40 µs of CPU per round trip). With `FAST` (4 µs after the
///   batch), ste's loaded `submit` used 0.73-1.18x crossbeam's CPU per
///   round trip over 14 runs of one day (5 above 1.0), and multishot's
///   blocking ping-pong had loaded rounds at 7-8 µs of CPU per round trip
///   where oneshot, parking at once, needed 3; with the batch only, ste
///   0.63-1.01x in 15 runs (one above 1.0) and multishot 0.08-0.66x
///   oneshot in 17. A hinted wait whose probe is due spins as a probe:
///   when both sides of a parked ping-pong keep finding each other "not
///   parked yet" (each side's batch ends a moment before the answer, and
///   its peer is still on its way to parking), every wait is hinted, and
///   if hinted waits did not count towards probes the pair would never
///   probe and stay parked for good.
///
/// A site does not know where its peer runs. Callers that do (the peer
/// noted its CPU in a [`PeerCpu`](crate::PeerCpu)) pass it to
/// [`spin_with`](SpinPolicy::spin_with), which skips the spin, probes and
/// hints included, when the peer last ran on the waiter's own CPU: it
/// cannot answer while the waiter holds that CPU. `spin_with` also skips it
/// when less than the longest spin is left before the waiter's deadline.
///
/// The spin itself polls the condition with a pause instruction in between
/// and is bounded by time, [`SPIN_LIMIT`](SpinPolicy::SPIN_LIMIT) (the clock
/// is read once every 64 polls), never by yields: `yield_now` under load
/// hands the core to a busy thread for a whole time slice. The first 64
/// polls go without the clock: an answer among them is fast by definition,
/// so the common case, a ping-pong whose peer is running, reads no clock
/// at all. A clock read after the answer sits on the critical path of the
/// round trip: two of them (one per side) made ste's `submit` round trip
/// 240-250 ns instead of 185-195 ns here. (A wait preempted within its
/// first 64 polls also counts as fast; at a few microseconds out of a
/// millisecond time slice that is too rare to mislead the history.
/// On a virtual machine the host may also deschedule a vCPU spinning on
/// `pause` (pause-loop exiting), with the same effect. Either way the wait
/// ends, and a site whose peer is really not running soon sees waits that
/// outlast the first batch and stops spinning.)
///
/// So on a quiet machine a ping-pong keeps spinning (every answer is fast),
/// and on a loaded one a site stops spinning after two spins that were not
/// fast, and from then on spends at most two spins (a probe and the spin
/// after a late one) per probe, one probe in 1024 waits once the load
/// persists.
///
/// # The constants, and the measurements behind them
///
/// Measured on this project's 2-core VM (AMD EPYC), std only: a `pause`
/// costs about 25-30 ns and reading the clock about 25 ns. A ping-pong
/// between two *spinning* threads takes 0.06-0.33 µs per round trip; the
/// same ping-pong through `park`/`unpark` takes 14-53 µs when the vCPUs are
/// idle (a halted vCPU is slow to wake) and 4-7 µs when they are kept busy.
///
/// - `FAST` = 4 µs: a running peer answers within about a microsecond
///   (round trip plus a small task); anything slower means the peer was not
///   running and had to be woken or scheduled.
/// - `SPIN_LIMIT` = 50 µs: the bound of a spin on credit, and of the one
///   spin after a late probe; a running peer answers within `FAST`, so
///   only a peer that had to be woken is caught past that.
/// - `PROBE_LIMIT` = 200 µs: a probe must outlast a whole round trip
///   through two parked threads on idle vCPUs (the probing side wakes its
///   peer, the peer answers), or a quiet ping-pong that once parked never
///   sees a late answer and never finds its way back to spinning. That
///   round trip was 14-53 µs when this policy was written and 90-100 µs a
///   week later on the same VM (std mpsc's quiet round trip in the bench);
///   with probes bounded by `SPIN_LIMIT`, 22-25 of 60 fresh quiet multishot
///   ping-pongs (300 ms each) stayed parked for much of their run (mean
///   round trip over 3 µs, the worst at 100-110 µs: parked throughout), and
///   none of 120 with 200 µs (all at 0.5-1.2 µs). Under sustained load a
///   probe costs at most 200 + 50 µs per 1024 waits.
/// - `CREDIT` = 2: one unlucky wait (the peer preempted once) does not
///   switch spinning off; two in a row do.
/// - `PROBE_GAPS` = 2^2 ... 2^10 waits: recovery within a few waits when
///   the machine gets quiet again after a short busy spell; under sustained
///   load, at most one probe and one spin (200 + 50 µs) per 1024 waits
///   (about 0.25 µs per wait on average). Under load a probe usually runs
///   to its limit: with 50 µs probes and the longest gap at 2^8, a loaded
///   blocking ping-pong (parked on both sides, 3-4 µs of CPU per round
///   trip) spent about 6% of its time in probes, counted in the bench,
///   against under 1% at 2^12; 2^10 kept that near 1.5% (about 6% with
///   200 µs probes, less where [`PeerCpu`](crate::PeerCpu) skips the probes
///   of two sides that share a CPU) and keeps recovery after a long busy
///   spell within 1024 waits (a tenth of a second at 100 µs per parked
///   wait).
///
/// Measured effect (interleaved rounds, `cargo xtask bench -p ste` and
/// `-p multishot`, median of per-round ratios): quiet, ste's `submit` round
/// trip is 0.01x std mpsc and multishot's blocking ping-pong 0.01x tokio and
/// oneshot (we spin, they park); loaded, both stay at or below the peers in
/// wall time and CPU per round trip. The closing notes of the issue that
/// introduced this policy have the figures of each run.
///
/// Races between threads sharing one site only blur the history (relaxed
/// loads and stores of one word); they never affect correctness, since the
/// caller re-checks its condition and parks whatever the policy said.
///
/// Under `--cfg loom` the budget is zero: the spin functions check the
/// condition once and return, so models go straight to the park path and
/// stay small. The history uses std's atomics on purpose: it is a
/// performance hint, not part of any protocol a model should explore.
///
/// # Example
///
/// ```
/// use sync_core::SpinPolicy;
/// use std::sync::atomic::{AtomicBool, Ordering};
///
/// static SITE: SpinPolicy = SpinPolicy::new();
/// let ready = AtomicBool::new(true);
/// // Spins (bounded) only if this site's recent spins paid off; `false`
/// // means "park now" (after re-checking, as always).
/// assert!(SITE.spin_until(|| ready.load(Ordering::Acquire)));
/// ```
#[derive(Debug)]
pub struct SpinPolicy {
    /// `credit | probe_shift << 8 | waits_without_credit << 16`.
    history: AtomicU32,
}

const CREDIT_BITS: u32 = 0xff;
const SHIFT_AT: u32 = 8;
const SHIFT_BITS: u32 = 0xff << SHIFT_AT;
const WAITS_AT: u32 = 16;

/// How a spin ended.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Outcome {
    /// The condition came true within [`SpinPolicy::FAST`].
    Fast,
    /// It came true, but later: the peer had to be woken or scheduled.
    Late,
    /// The whole budget went by.
    Miss,
}

impl SpinPolicy {
    /// Longest a spin on credit lasts (a probe: [`PROBE_LIMIT`](Self::PROBE_LIMIT)).
    pub const SPIN_LIMIT: Duration = Duration::from_micros(50);
    /// Longest a probe lasts: longer than a round trip through two parked
    /// threads on idle cores, so that a probe on a quiet machine sees its
    /// parked peer woken and answer (a *late* hit) and the site finds its way
    /// back to spinning.
    pub const PROBE_LIMIT: Duration = Duration::from_micros(200);
    /// A spin that ends within this is a *fast* hit: the peer was running.
    pub const FAST: Duration = Duration::from_micros(4);
    /// Credit after a fast hit; a miss or a late hit costs one.
    pub const CREDIT: u32 = 2;
    /// Shortest and longest gap (as powers of two, in waits) between two
    /// probes of a site without credit. A probe that is not a fast hit
    /// doubles the gap; a fast hit resets it.
    pub const PROBE_GAPS: (u32, u32) = (2, 10);
    /// Polls between two readings of the clock.
    const POLLS_PER_CLOCK_READ: u32 = 64;

    /// A site with full credit: its first waits spin.
    pub const fn new() -> Self {
        SpinPolicy {
            history: AtomicU32::new(Self::CREDIT | Self::PROBE_GAPS.0 << SHIFT_AT),
        }
    }

    /// A site that starts *without* credit: it parks at once and only its
    /// probes spin, until one of them is a fast hit. For wait sites whose
    /// waits are usually long (exit-left's followers wait for their next
    /// message), where the first waits of a new site spinning on the
    /// credit of [`new`](Self::new) would cost more than they could save.
    pub const fn parking() -> Self {
        SpinPolicy {
            history: AtomicU32::new(Self::PROBE_GAPS.0 << SHIFT_AT),
        }
    }

    /// Spins until `ready()` returns `true`, if this site's recent history
    /// says spinning pays off, for at most [`SPIN_LIMIT`](Self::SPIN_LIMIT)
    /// ([`PROBE_LIMIT`](Self::PROBE_LIMIT) when the wait is a probe).
    /// Returns whether `ready()` was seen `true`; on `false` the caller
    /// parks (after whatever re-check its protocol needs).
    ///
    /// Never blocks, never yields, never allocates. Checks `ready()` at
    /// least once, even without credit (and under loom, where it checks
    /// only once).
    #[inline]
    pub fn spin_until(&self, mut ready: impl FnMut() -> bool) -> bool {
        ready() || self.spin_after_a_miss(false, &mut ready)
    }

    /// Like [`spin_until`](Self::spin_until), but spins regardless of the
    /// history when `peer_running` says the party that will make `ready()`
    /// true was seen running just now (it had not parked), which is exactly
    /// when spinning pays off. A fast hit restores credit. This is what lets two
    /// parked sides of a ping-pong find their way back to spinning on a
    /// quiet machine: one side's probe keeps it running, the other sees it
    /// running and spins too.
    ///
    /// A site without credit spins on a hint only for the first, clock-free
    /// batch of polls (about 2 µs) instead of
    /// [`SPIN_LIMIT`](Self::SPIN_LIMIT): a peer that has not parked may
    /// still be preempted, and under load two sides that never park would
    /// otherwise keep each other spinning on every wait. A peer that is
    /// really on a core answers within the batch. The wait counts towards
    /// the site's next probe, and spins as the probe when that is due.
    #[inline]
    pub fn spin_until_unless_parked(
        &self,
        peer_running: bool,
        mut ready: impl FnMut() -> bool,
    ) -> bool {
        ready() || self.spin_after_a_miss(peer_running, &mut ready)
    }

    /// The whole rule for a wait site: checks `ready()` once, then skips the
    /// spin where none can pay off whatever the history says (the peer last
    /// ran on this CPU; less than the longest spin is left before the
    /// waiter's deadline), and otherwise spins as
    /// [`spin_until_unless_parked`](Self::spin_until_unless_parked) with
    /// [`SpinHints::peer_running`]. Returns whether `ready()` was seen
    /// `true`; on `false` the caller parks.
    ///
    /// A skipped spin leaves the history alone: it says nothing about
    /// whether spinning pays off when a spin is possible. Never blocks,
    /// never yields, never allocates; reads the CPU number (`sched_getcpu`,
    /// a few nanoseconds) only if `ready()` was `false` and a
    /// [`SpinHints::peer_cpu`] is known.
    #[inline]
    pub fn spin_with(&self, hints: SpinHints, mut ready: impl FnMut() -> bool) -> bool {
        if ready() {
            return true;
        }
        if hints.time_left.is_some_and(|left| left < Self::PROBE_LIMIT)
            || hints.peer_cpu.is_current()
        {
            return false;
        }
        self.spin_after_a_miss(hints.peer_running, &mut ready)
    }

    /// The spin, once `ready()` has been seen `false`: whether the history
    /// (or a hint) says to spin, how long, and how to record the outcome.
    fn spin_after_a_miss(&self, peer_running: bool, ready: &mut impl FnMut() -> bool) -> bool {
        if cfg!(loom) {
            return false;
        }
        // A site without credit has lately seen its "running" peer answer
        // late or not at all: on a loaded machine a peer that has not
        // parked is often preempted, not running. Then the hint buys only
        // the first batch of polls, so a wrong hint costs about 2 µs, not
        // `SPIN_LIMIT`, of the time slice; unless the site's next probe is
        // due: hinted waits count towards probes like any other, or a
        // ping-pong whose every wait is hinted would never probe (type docs).
        // A batch-only spin is not a probe: a miss changes nothing. A hinted
        // spin on credit is recorded like a probe: the peer was said to be
        // running, so an answer that is not fast costs all credit at once.
        let (limit, as_probe) = match (self.should_spin(), peer_running) {
            (Some(true), _) => (Self::PROBE_LIMIT, true),
            (Some(false), hinted) => (Self::SPIN_LIMIT, hinted),
            (None, true) => (Duration::ZERO, false),
            (None, false) => return false,
        };
        let outcome = Self::spin(ready, limit);
        self.record(as_probe, outcome);
        outcome != Outcome::Miss
    }

    /// `Some(is_probe)` if this wait should spin; counts waits towards the
    /// next probe of a site without credit.
    fn should_spin(&self) -> Option<bool> {
        let history = self.history.load(Ordering::Relaxed);
        if history & CREDIT_BITS > 0 {
            return Some(false);
        }
        let shift = (history & SHIFT_BITS) >> SHIFT_AT;
        let waits = (history >> WAITS_AT) + 1;
        if waits >= 1 << shift {
            self.history.store(shift << SHIFT_AT, Ordering::Relaxed);
            return Some(true);
        }
        self.history
            .store(waits << WAITS_AT | shift << SHIFT_AT, Ordering::Relaxed);
        None
    }

    fn record(&self, probe: bool, outcome: Outcome) {
        let history = self.history.load(Ordering::Relaxed);
        let credit = history & CREDIT_BITS;
        let shift = (history & SHIFT_BITS) >> SHIFT_AT;
        let (min_shift, max_shift) = Self::PROBE_GAPS;
        let (credit, shift) = match (outcome, probe) {
            (Outcome::Fast, _) => (Self::CREDIT, min_shift),
            // A probe that caught the peer late (it had to be woken) earns
            // one more spin, to see whether the peer now stays awake.
            (Outcome::Late, true) => (1, (shift + 1).min(max_shift)),
            (Outcome::Miss, true) => (0, (shift + 1).min(max_shift)),
            (_, false) => (credit.saturating_sub(1), shift),
        };
        let new = credit | shift << SHIFT_AT;
        // A site that keeps hitting fast does not write: the store would
        // pull the line into this core on every wait (and sites share lines
        // with what their peers touch). Nor does a spin that changes
        // nothing: the store would also reset the count of waits towards
        // the next probe, and a site whose every wait spins its first batch
        // on a hint (and misses) would never probe.
        if new != history & (CREDIT_BITS | SHIFT_BITS) {
            self.history.store(new, Ordering::Relaxed);
        }
    }

    /// The bounded spin: polls with a pause in between, reads the clock
    /// once per [`POLLS_PER_CLOCK_READ`](Self::POLLS_PER_CLOCK_READ) polls,
    /// first after that many polls.
    #[cold]
    fn spin(ready: &mut impl FnMut() -> bool, limit: Duration) -> Outcome {
        // The first batch goes without the clock (type docs): an answer
        // within it is fast by any measure (64 pauses, about 2 µs here). The
        // limits count from the end of that batch.
        for _ in 0..Self::POLLS_PER_CLOCK_READ {
            core::hint::spin_loop();
            if ready() {
                return Outcome::Fast;
            }
        }
        // A zero limit: the first batch only (a hint without credit).
        if limit.is_zero() {
            return Outcome::Miss;
        }
        let start = Instant::now();
        loop {
            for _ in 0..Self::POLLS_PER_CLOCK_READ {
                core::hint::spin_loop();
                if ready() {
                    return if start.elapsed() <= Self::FAST {
                        Outcome::Fast
                    } else {
                        Outcome::Late
                    };
                }
            }
            if start.elapsed() >= limit {
                return Outcome::Miss;
            }
        }
    }

    /// Whether the site would spin on its next wait (not counting probes).
    pub fn has_credit(&self) -> bool {
        self.history.load(Ordering::Relaxed) & CREDIT_BITS > 0
    }
}

impl Default for SpinPolicy {
    fn default() -> Self {
        Self::new()
    }
}

/// What a waiter knows about its wait that can rule a spin in or out:
/// the argument of [`SpinPolicy::spin_with`]. The default knows nothing
/// (no hint, no CPU, no deadline): the history alone decides.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SpinHints {
    /// The party that will make the condition true was seen running just
    /// now (see [`SpinPolicy::spin_until_unless_parked`]).
    pub peer_running: bool,
    /// Where that party last ran ([`PeerCpu::last`](crate::PeerCpu::last),
    /// or a [`CpuId`] it sent along): no spin on the waiter's own CPU, where
    /// the peer cannot answer while the waiter holds it.
    pub peer_cpu: CpuId,
    /// Time left before the waiter's deadline, if it has one: no spin
    /// unless the longest one ([`SpinPolicy::PROBE_LIMIT`]) fits, since a
    /// spin is not cut short. (A spin can outlast its limit by the polls
    /// between two readings of the clock, a few microseconds: within the
    /// slack of the timed park that follows.)
    pub time_left: Option<Duration>,
}

impl Default for SpinHints {
    fn default() -> Self {
        SpinHints {
            peer_running: false,
            peer_cpu: CpuId::UNKNOWN,
            time_left: None,
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::{SpinHints, SpinPolicy};
    use core::cell::Cell;
    use std::time::Duration;

    /// Counts how many of `waits` waits on a never-true condition spun.
    fn spins_among(site: &SpinPolicy, waits: u32) -> u32 {
        let mut spun = 0;
        for _ in 0..waits {
            let polls = Cell::new(0u32);
            assert!(!site.spin_until(|| {
                polls.set(polls.get() + 1);
                false
            }));
            spun += u32::from(polls.get() > 1);
        }
        spun
    }

    #[test]
    fn a_site_whose_spins_fail_parks_at_once_and_probes_ever_more_rarely() {
        let site = SpinPolicy::new();
        assert_eq!(spins_among(&site, SpinPolicy::CREDIT), SpinPolicy::CREDIT);
        assert!(!site.has_credit(), "credit spent after CREDIT failed spins");
        let (min, max) = SpinPolicy::PROBE_GAPS;
        // Gaps of 2^min, 2^(min+1), ... waits between failed probes.
        let first_probes: u32 = (min..max).map(|s| 1 << s).sum();
        assert_eq!(spins_among(&site, first_probes), max - min);
        // From then on, one probe in 2^max waits.
        assert_eq!(spins_among(&site, 4 << max), 4);
    }

    #[test]
    fn a_parking_site_spins_only_on_probes_until_one_is_a_fast_hit() {
        let site = SpinPolicy::parking();
        assert!(!site.has_credit(), "a parking site starts without credit");
        let (min, _) = SpinPolicy::PROBE_GAPS;
        // Its first spin is the first probe, after 2^min waits.
        assert_eq!(spins_among(&site, (1 << min) - 1), 0);
        assert_eq!(spins_among(&site, 1), 1);
        // A probe whose condition comes true at once is a fast hit: credit.
        let mut waits = 0;
        while !site.has_credit() {
            waits += 1;
            assert!(waits <= 1 << (min + 1), "no probe within twice the gap");
            let polls = Cell::new(0u32);
            site.spin_until(|| {
                polls.set(polls.get() + 1);
                polls.get() > 1
            });
        }
        assert_eq!(spins_among(&site, SpinPolicy::CREDIT), SpinPolicy::CREDIT);
    }

    /// The bookkeeping, driven directly (a spin's outcome depends on the
    /// clock, which a test must not rely on).
    #[test]
    fn a_fast_hit_restores_credit_and_a_late_probe_earns_one_spin() {
        use super::Outcome::{Fast, Late, Miss};
        let site = SpinPolicy::new();
        site.record(false, Miss);
        site.record(false, Late);
        assert!(!site.has_credit(), "a late answer costs credit like a miss");
        let next_probe = |site: &SpinPolicy| {
            let mut waits = 1;
            while site.should_spin() != Some(true) {
                waits += 1;
            }
            waits
        };
        let (min, _) = SpinPolicy::PROBE_GAPS;
        assert_eq!(next_probe(&site), 1 << min);
        site.record(true, Late);
        assert!(site.has_credit(), "a late probe earns one more spin");
        assert_eq!(site.should_spin(), Some(false), "a spin on credit");
        site.record(false, Late);
        assert!(!site.has_credit());
        assert_eq!(next_probe(&site), 2 << min, "the gap doubled");
        site.record(true, Fast);
        assert!(site.has_credit());
        site.record(false, Miss);
        assert!(site.has_credit(), "full credit survives one miss");
        site.record(false, Miss);
        assert_eq!(next_probe(&site), 1 << min, "a fast hit reset the gap");
    }

    #[test]
    fn a_running_peer_makes_a_site_without_credit_spin() {
        let site = SpinPolicy::new();
        assert_eq!(spins_among(&site, SpinPolicy::CREDIT), SpinPolicy::CREDIT);
        assert!(!site.has_credit());
        let polls = Cell::new(0u32);
        assert!(site.spin_until_unless_parked(true, || {
            polls.set(polls.get() + 1);
            polls.get() > 2
        }));
        assert!(polls.get() > 2, "spun although the site had no credit");
        assert!(site.has_credit(), "a fast answer restores credit");
        // A parked peer: the history decides, as in `spin_until`.
        let checks = Cell::new(0u32);
        site.spin_until_unless_parked(false, || {
            checks.set(checks.get() + 1);
            true
        });
        assert_eq!(checks.get(), 1);
    }

    /// A hint without credit buys the first batch of polls only: a
    /// condition that comes true at its 1000th poll (a peer that answers a
    /// few microseconds late) is waited out by a site with credit and
    /// given up on, after exactly one check and one batch, by one without.
    /// The site with credit is tried up to five times, so that one
    /// preemption of this test's thread past `SPIN_LIMIT` cannot decide it.
    #[test]
    #[cfg_attr(miri, ignore = "Miri's clock may pass SPIN_LIMIT within 1000 polls")]
    fn a_hint_without_credit_spins_for_one_batch_only() {
        use super::Outcome;
        let polls_until_late_answer = |site: &SpinPolicy| {
            let polls = Cell::new(0u32);
            let answered = site.spin_until_unless_parked(true, || {
                polls.set(polls.get() + 1);
                polls.get() >= 1000
            });
            (answered, polls.get())
        };
        assert!(
            (0..5).any(|_| polls_until_late_answer(&SpinPolicy::new()) == (true, 1000)),
            "a site with credit gave up on a running peer before SPIN_LIMIT"
        );
        let site = SpinPolicy::new();
        site.record(true, Outcome::Miss);
        assert!(!site.has_credit());
        assert_eq!(
            polls_until_late_answer(&site),
            (false, 1 + SpinPolicy::POLLS_PER_CLOCK_READ),
            "a site without credit spun past the first batch on a hint"
        );
    }

    /// Hinted waits count towards the next probe like any other, and spin
    /// as the probe when it is due. (Each hinted batch miss used to rewrite
    /// the history and so reset that count: a ping-pong whose every wait
    /// was hinted never probed and, once parked on a quiet machine, stayed
    /// parked for the whole run.)
    #[test]
    #[cfg_attr(
        miri,
        ignore = "2,000 waits of interpreted spinning (15 s a seed); no unsafe code or sharing here"
    )]
    fn hinted_waits_without_credit_still_probe() {
        let site = SpinPolicy::new();
        assert_eq!(spins_among(&site, SpinPolicy::CREDIT), SpinPolicy::CREDIT);
        assert!(!site.has_credit());
        let (min, max) = SpinPolicy::PROBE_GAPS;
        let first_probes: u32 = (min..max).map(|s| 1 << s).sum();
        let mut probes = 0;
        for _ in 0..first_probes {
            let polls = Cell::new(0u32);
            assert!(!site.spin_until_unless_parked(true, || {
                polls.set(polls.get() + 1);
                false
            }));
            // A batch-only spin checks once, then polls one batch; a probe
            // polls on until PROBE_LIMIT.
            probes += u32::from(polls.get() > 1 + SpinPolicy::POLLS_PER_CLOCK_READ);
        }
        assert_eq!(probes, max - min, "hinted waits never reached a probe");
        assert!(!site.has_credit(), "missed probes earn no credit");
    }

    /// Counts the polls of one `spin_with` wait whose condition comes true
    /// at poll `true_at` (never if 0).
    fn polls_with(site: &SpinPolicy, hints: SpinHints, true_at: u32) -> (bool, u32) {
        let polls = Cell::new(0u32);
        let seen = site.spin_with(hints, || {
            polls.set(polls.get() + 1);
            polls.get() == true_at
        });
        (seen, polls.get())
    }

    /// Less than the longest spin before the deadline: one look, no spin,
    /// and the history is left as it was. With room for it, or with no
    /// deadline, the site spins as `spin_until` would.
    #[test]
    fn spin_with_does_not_spin_past_a_deadline() {
        let site = SpinPolicy::new();
        let short = SpinHints {
            time_left: Some(SpinPolicy::PROBE_LIMIT - Duration::from_nanos(1)),
            ..SpinHints::default()
        };
        for _ in 0..2 * SpinPolicy::CREDIT {
            assert_eq!(polls_with(&site, short, 0), (false, 1));
        }
        assert!(site.has_credit(), "a skipped spin cost credit");
        let room = SpinHints {
            time_left: Some(SpinPolicy::PROBE_LIMIT),
            ..SpinHints::default()
        };
        assert_eq!(polls_with(&site, room, 10), (true, 10));
        assert_eq!(polls_with(&site, SpinHints::default(), 10), (true, 10));
        assert_eq!(
            polls_with(&site, short, 1),
            (true, 1),
            "a ready condition is seen"
        );
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
