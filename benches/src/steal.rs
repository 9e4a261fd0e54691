//! Steal time: how long the hypervisor kept a vCPU that had work waiting.
//!
//! On a shared virtual machine a vCPU with work to do can still wait for the
//! host to run it; Linux counts that wait as *steal* in `/proc/stat`. The
//! interleaved suites and `exit_left_udp` record the steal share of every
//! run, show it in their round lines and sum it up under their reports, so
//! that a run slowed by the host can be told from a slow design.
//!
//! Measured on this project's 2-vCPU machine (2026-12-01): quiet rounds
//! 18-34% median steal (up to 60% in one run), loaded rounds 2-3% median
//! (one busy thread per vCPU). A vCPU that never goes idle is rarely held
//! back; the steal of quiet rounds comes with vCPUs that go idle and must
//! be resumed, so it differs from design to design (one that sleeps more
//! pays it more often) and is part of what a quiet row measures. Loaded
//! rounds are the ones whose swings are not the host's.

/// The machine-wide CPU time counters at one instant, in clock ticks
/// (`USER_HZ`, usually 100 per second and CPU).
#[derive(Clone, Copy, Debug)]
pub struct CpuTimes {
    total: u64,
    steal: u64,
}

impl CpuTimes {
    /// Reads the aggregate `cpu` line of `/proc/stat`; `None` where there
    /// is no such file (not Linux) or its format is not the known one.
    pub fn now() -> Option<CpuTimes> {
        let stat = std::fs::read_to_string("/proc/stat").ok()?;
        parse_cpu_line(stat.lines().next()?)
    }

    /// The share of the CPU time that passed since `earlier` that was
    /// stolen, from 0 to 1; `None` if no tick passed.
    pub fn steal_share_since(self, earlier: CpuTimes) -> Option<f64> {
        let total = self.total.checked_sub(earlier.total)?;
        let steal = self.steal.checked_sub(earlier.steal)?;
        (total > 0).then(|| steal as f64 / total as f64)
    }
}

/// Runs `f` and returns what it returned with the steal share while it ran
/// (`None` where it cannot be read, or when the run was shorter than a tick).
pub fn during<T>(f: impl FnOnce() -> T) -> (T, Option<f64>) {
    let before = CpuTimes::now();
    let out = f();
    let share = CpuTimes::now()
        .zip(before)
        .and_then(|(after, before)| after.steal_share_since(before));
    (out, share)
}

/// "median 3% (max 50%)" over `shares` (each from 0 to 1), or "not
/// measured" if there are none (no `/proc/stat`, or every run shorter than
/// a clock tick): the one-line summary under a report.
pub fn summary(shares: impl IntoIterator<Item = f64>) -> String {
    let mut v: Vec<f64> = shares.into_iter().collect();
    if v.is_empty() {
        return "not measured".to_string();
    }
    v.sort_by(f64::total_cmp);
    format!(
        "median {:.0}% (max {:.0}%)",
        v[v.len() / 2] * 100.0,
        v[v.len() - 1] * 100.0
    )
}

/// `cpu  user nice system idle iowait irq softirq steal guest guest_nice`:
/// the total counts the first eight (guest time is already in user time).
fn parse_cpu_line(line: &str) -> Option<CpuTimes> {
    let mut fields = line.split_whitespace();
    if fields.next()? != "cpu" {
        return None;
    }
    let ticks: Vec<u64> = fields
        .take(8)
        .map(|f| f.parse().ok())
        .collect::<Option<_>>()?;
    if ticks.len() < 8 {
        return None;
    }
    Some(CpuTimes {
        total: ticks.iter().sum(),
        steal: ticks[7],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_aggregate_line_and_computes_the_share() {
        let a = parse_cpu_line("cpu  100 0 50 800 10 0 5 35 0 0").unwrap();
        let b = parse_cpu_line("cpu  150 0 60 820 10 0 5 55 0 0").unwrap();
        assert_eq!((a.total, a.steal), (1000, 35));
        assert_eq!(b.steal_share_since(a), Some(0.2));
        assert_eq!(a.steal_share_since(a), None);
    }

    #[test]
    fn summarises_shares() {
        assert_eq!(summary([0.5, 0.02, 0.03]), "median 3% (max 50%)");
        assert_eq!(summary([]), "not measured");
    }

    #[test]
    fn rejects_other_lines() {
        assert!(parse_cpu_line("cpu0 1 2 3 4 5 6 7 8").is_none());
        assert!(parse_cpu_line("cpu  1 2 3").is_none());
        assert!(parse_cpu_line("intr 1 2 3 4 5 6 7 8").is_none());
    }

    #[test]
    fn reads_this_machine_where_there_is_a_proc_stat() {
        if std::path::Path::new("/proc/stat").exists() {
            let t = CpuTimes::now().expect("/proc/stat has a cpu line");
            assert!(t.steal <= t.total);
        }
    }
}
