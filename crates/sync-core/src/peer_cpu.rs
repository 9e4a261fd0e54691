//! Where a wait's peer last ran: spinning cannot pay off on the peer's own CPU.

use core::sync::atomic::{AtomicU32, Ordering};

/// The CPU on which the party that answers a wait site last ran, as that
/// party noted it: a hint that lets a waiter skip spinning when its peer
/// shares its CPU.
///
/// # Why
///
/// A spin pays off only while the peer runs on *another* CPU. When the
/// scheduler has put both sides of a ping-pong on one CPU (it does, for
/// whole runs, on a busy machine and now and then on a quiet one), the peer
/// cannot answer while the waiter holds that CPU: every spin, a probe of
/// [`SpinPolicy`](crate::SpinPolicy) included, runs to its limit and only
/// delays the answer. Measured on this project's 2-core VM before this type
/// existed: ste's loaded `submit` rounds in which the two sides shared one
/// CPU cost 5.1-6.0 µs of CPU per round trip, of which about 2 µs went to
/// such spins (about 200 probes of 200 µs and 60-70 thousand first-batch
/// spins on a hint per 300 ms run).
///
/// # How
///
/// The answering side calls [`note`](Self::note) when it answers (a
/// sender when it sends, a worker when it goes idle); the waiting side
/// passes [`last`](Self::last) to
/// [`SpinPolicy::spin_with`](crate::SpinPolicy::spin_with), which parks at
/// once if it is the waiter's own CPU. Reading the CPU number
/// (`sched_getcpu`, a vDSO call on x86-64) costs about 3 ns here; `note`
/// writes only when the number changed, so in a steady state the word stays
/// in every core's cache. A value that many threads would note in turn
/// (ste's submitters) travels better as a [`CpuId`] inside what they send.
///
/// A stale or wrong answer only costs or saves a spin: the waiter re-checks
/// its condition and parks whatever this says. Where the CPU number is not
/// available (not Linux, Miri, loom), nothing is noted (`last` is unknown,
/// `is_this_cpu` always `false`) and the [`SpinPolicy`](crate::SpinPolicy)
/// alone decides.
#[derive(Debug)]
pub struct PeerCpu {
    cpu: AtomicU32,
}

const UNKNOWN: u32 = u32::MAX;

/// A CPU number taken by [`CpuId::current`], or unknown: the plain value
/// behind [`PeerCpu`], for a side that carries it along with its request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CpuId(u32);

impl CpuId {
    /// No CPU: [`is_current`](Self::is_current) is always `false`.
    pub const UNKNOWN: CpuId = CpuId(UNKNOWN);

    /// The CPU the calling thread runs on now, or [`UNKNOWN`](Self::UNKNOWN)
    /// where the platform does not say (not Linux, Miri, loom).
    #[inline]
    pub fn current() -> CpuId {
        CpuId(current_cpu().unwrap_or(UNKNOWN))
    }

    /// Whether this is a known CPU and the calling thread runs on it now.
    #[inline]
    pub fn is_current(self) -> bool {
        self != Self::UNKNOWN && current_cpu() == Some(self.0)
    }
}

impl PeerCpu {
    /// No CPU noted yet.
    pub const fn new() -> Self {
        PeerCpu {
            cpu: AtomicU32::new(UNKNOWN),
        }
    }

    /// Notes the calling thread's current CPU. Never blocks, never
    /// allocates; writes only when the CPU changed.
    #[inline]
    pub fn note(&self) {
        // The load comes first, also where the CPU number is unknown, so
        // that Miri sees every access the caller's placement of `note`
        // implies (it must run while the peer's memory is alive).
        let noted = self.cpu.load(Ordering::Relaxed);
        let Some(cpu) = current_cpu() else { return };
        if noted != cpu {
            self.cpu.store(cpu, Ordering::Relaxed);
        }
    }

    /// The last noted CPU ([`CpuId::UNKNOWN`] if none): for
    /// [`SpinHints::peer_cpu`](crate::SpinHints::peer_cpu).
    #[inline]
    pub fn last(&self) -> CpuId {
        CpuId(self.cpu.load(Ordering::Relaxed))
    }

    /// Whether the last noted CPU is the one the calling thread runs on
    /// now (then spinning cannot pay off). `false` if nothing was noted or
    /// the CPU number is not available.
    #[inline]
    pub fn is_this_cpu(&self) -> bool {
        self.last().is_current()
    }
}

impl Default for PeerCpu {
    fn default() -> Self {
        Self::new()
    }
}

/// The CPU the calling thread runs on, if the platform says.
#[inline]
fn current_cpu() -> Option<u32> {
    #[cfg(all(target_os = "linux", not(miri), not(loom)))]
    {
        // SAFETY: `sched_getcpu` takes no arguments and touches no memory of
        // ours; it returns -1 on failure.
        let cpu = unsafe { libc::sched_getcpu() };
        u32::try_from(cpu).ok().filter(|&cpu| cpu != UNKNOWN)
    }
    #[cfg(not(all(target_os = "linux", not(miri), not(loom))))]
    {
        None
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::{CpuId, PeerCpu};

    #[test]
    fn an_unknown_cpu_is_never_current() {
        assert!(!CpuId::UNKNOWN.is_current());
    }

    #[test]
    fn nothing_noted_is_never_this_cpu() {
        assert!(!PeerCpu::new().is_this_cpu());
    }

    /// A CPU noted by this thread is this thread's CPU, unless the thread
    /// migrated in between; tried a few times so that one migration cannot
    /// decide it. Without the CPU number (Miri, other systems) nothing is
    /// ever this CPU.
    #[test]
    fn a_cpu_noted_by_this_thread_is_this_cpu() {
        let here = PeerCpu::new();
        let seen = (0..100).any(|_| {
            here.note();
            here.is_this_cpu()
        });
        assert_eq!(seen, super::current_cpu().is_some());
    }

    #[test]
    fn a_cpu_noted_elsewhere_is_not_this_cpu_when_it_differs() {
        let there = PeerCpu::new();
        let Some(cpu) = super::current_cpu() else {
            return;
        };
        there.cpu.store(
            cpu.wrapping_add(1) % u32::MAX,
            core::sync::atomic::Ordering::Relaxed,
        );
        // Unless this thread migrated to exactly that CPU meanwhile.
        let differs = (0..100).any(|_| !there.is_this_cpu());
        assert!(differs);
    }
}
