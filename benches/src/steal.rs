//! Steal time: how much of the machine the hypervisor gave to someone else.
//!
//! On a shared virtual machine a vCPU that has work can still wait for the
//! host to run it; Linux counts that wait as *steal* in `/proc/stat`. Measured
//! on this project's 2-vCPU machine during a loaded bench: from 0 to 45% of
//! every second, changing from one second to the next. A run that lands in a
//! stretch of high steal is slower for reasons that have nothing to do with
//! the design it measures, so the suites record the steal share of every run
//! next to its figures, to tell a design's cost from the host's.

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
