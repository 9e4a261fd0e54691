//! Two-thread designs compared in interleaved rounds, on a quiet machine and
//! on a loaded one, with wall time *and* CPU time per round trip.
//!
//! # What the harness does
//!
//! [`compare`] takes a list of [`Design`]s (the first one is ours), warms
//! each up, then runs `rounds` quiet rounds and `rounds` loaded rounds,
//! alternating (quiet, loaded, quiet, loaded, ...). In every round every
//! design runs once, back to back, with the starting design rotated from
//! round to round so that no design always runs first after the busy threads
//! start. Each run lasts [`Settings::run_time`]: the design loops over
//! [`round_trips`], which ends at the deadline the harness set for the run,
//! and reports how many round trips it did. (Sizing runs by a round-trip
//! count does not work here: the same design flips between regimes 1000x
//! apart, 0.5 µs and 1.5 ms per round trip, from one run to the next.) A
//! design starts its threads and waits until they run before its clocks
//! start, so the run is not charged for thread start-up.
//!
//! # Loaded
//!
//! For a loaded round the harness starts one busy thread per core
//! ([`std::thread::available_parallelism`]), each pinned to its own CPU and
//! incrementing a `black_box`ed counter until told to stop, waits until all
//! of them run, runs the round, then stops and joins them. The two threads
//! of the round trip therefore compete with as many always-runnable threads
//! as there are cores: a waiter that spins burns the time slice its peer
//! needs to answer, and a thread that parks waits for the scheduler to pick
//! it again. That is the machine users have (rarely idle), and it is where a
//! spin-then-park policy can win quiet and lose 2-3x (`spec/workspace.md`,
//! "Benchmarks").
//!
//! Why pinned: left to the scheduler, the two busy threads shared one CPU
//! for 0-100% of a 150 ms run (sampled with `sched_getcpu` in
//! `exit_left_udp`'s loaded rounds, December 2026: a median of a few
//! percent, some runs 50-100%), which leaves a core to the measured threads
//! and turns a loaded run into a half-quiet one, differently from run to
//! run. If pinning fails (a CPU set smaller than the parallelism), the
//! thread runs unpinned and the harness says so on stderr.
//!
//! # CPU time
//!
//! Every design measures the CPU time of *both* sides of its round trip,
//! each side its own thread's, with [`thread_cpu`] (the calling thread's
//! user + system time: the per-thread clock behind
//! `getrusage(RUSAGE_THREAD)`, read exactly with
//! `clock_gettime(CLOCK_THREAD_CPUTIME_ID)`), read at the start and the end
//! of that side's loop, and adds them up. Not the process's CPU time
//! (`RUSAGE_SELF`): that would count the busy threads too. So "CPU / round
//! trip" is what one round trip costs the machine: a waiter that spins
//! shows up here even when its wall time looks good, and under load that
//! CPU is taken from the busy threads, i.e. from the user's other work.
//!
//! # Why interleaved
//!
//! On a shared virtual machine the cost of waking a thread or moving a cache
//! line between vCPUs drifts by several x over minutes, and how the
//! scheduler places four runnable threads on two cores changes from run to
//! run. Criterion runs one row after the other, so two rows can land in
//! different regimes and their ratio measures the machine, not the designs.
//! Here every round runs every design within a second or two, so a ratio
//! taken within one round compares like with like. Quiet and loaded rounds
//! alternate (rather than all quiet, then all loaded) for the same reason:
//! both tables then describe the same stretch of time, and a regime change
//! half-way through hits both modes alike instead of one of them.
//!
//! # Steal
//!
//! Each run also records the host's steal share while it ran
//! ([`crate::steal`]), shown in the round lines and summed up under the
//! report: quiet rounds on this machine see a lot (the host is slow to
//! resume an idle vCPU), loaded rounds little.
//!
//! # Reading the table
//!
//! Per mode and design: the median over rounds of wall time per round trip
//! and of CPU time per round trip (both sides), and the median over rounds
//! of the per-round ratio ours / this design, for wall time and for CPU
//! time, plus the lowest and highest per-round wall ratio. Below 1.00 ours
//! is faster (or cheaper) than that design; ours' own row reads 1.00. A
//! median of per-round ratios is not the ratio of the medians: it says how
//! ours compared with the design *in the same round*, which is the figure
//! to trust when the machine drifts. Loaded rows depend on the scheduler's
//! placement, which changes from run to run and hour to hour, so judge them
//! over several runs, not one.

use crate::median;
use std::cell::Cell;
use std::hint::black_box;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// What one run of a design measured.
#[derive(Clone, Copy, Debug)]
pub struct Measurement {
    /// How many round trips the run did.
    pub trips: u64,
    /// Wall time for those round trips, as the initiating side saw it.
    pub wall: Duration,
    /// CPU time both sides of the round trip used (each side's own thread,
    /// from [`thread_cpu`]), added up.
    pub cpu: Duration,
}

impl Measurement {
    fn wall_ns(&self) -> f64 {
        self.wall.as_nanos() as f64 / self.trips as f64
    }
    fn cpu_ns(&self) -> f64 {
        self.cpu.as_nanos() as f64 / self.trips as f64
    }
}

/// Where the two sides of a round trip ran: a design whose answering side
/// calls [`answered`](placement::answered) and whose initiating side calls
/// [`sampled`](placement::sampled) with the same sequence numbers gets, per
/// run, the share of sampled round trips (one in [`EVERY`](placement::EVERY))
/// in which both sides were on one CPU, as the answering side saw its CPU
/// just before it answered and the initiating side just after the answer.
///
/// Why: on a loaded 2-core machine the scheduler sometimes puts both threads
/// of a ping-pong on one core for a whole run. There every hand-over is a
/// context switch, whatever the design, and CPU per round trip is 3-4 µs
/// instead of 1-2; which design the scheduler does that to in a round is
/// luck, and it decides that round's CPU ratio. The column makes it visible.
pub mod placement {
    use std::sync::atomic::{AtomicI32, AtomicU64, Ordering::Relaxed};

    /// One round trip in this many is sampled (sequence numbers that are
    /// multiples of it; a power of two).
    pub const EVERY: u64 = 256;
    static ANSWERER_CPU: AtomicI32 = AtomicI32::new(-1);
    static SAMPLES: AtomicU64 = AtomicU64::new(0);
    static SAME: AtomicU64 = AtomicU64::new(0);

    fn cpu() -> i32 {
        // SAFETY: no arguments, no memory; -1 on failure.
        unsafe { libc::sched_getcpu() }
    }

    /// The answering side, as it answers round trip `seq`.
    #[inline]
    pub fn answered(seq: u64) {
        if seq & (EVERY - 1) == 0 {
            ANSWERER_CPU.store(cpu(), Relaxed);
        }
    }

    /// The initiating side, once the answer to round trip `seq` arrived.
    #[inline]
    pub fn sampled(seq: u64) {
        if seq & (EVERY - 1) == 0 {
            let theirs = ANSWERER_CPU.swap(-1, Relaxed);
            let ours = cpu();
            if theirs >= 0 && ours >= 0 {
                SAMPLES.fetch_add(1, Relaxed);
                SAME.fetch_add(u64::from(theirs == ours), Relaxed);
            }
        }
    }

    pub(crate) fn reset() {
        ANSWERER_CPU.store(-1, Relaxed);
        SAMPLES.store(0, Relaxed);
        SAME.store(0, Relaxed);
    }

    pub(crate) fn same_cpu_share() -> Option<f64> {
        let samples = SAMPLES.load(Relaxed);
        (samples > 0).then(|| SAME.load(Relaxed) as f64 / samples as f64)
    }
}

/// One row of a comparison: a name and a function that does at most the
/// given number of round trips, looping over [`round_trips`] so that it
/// stops at the harness's deadline, and measures them.
pub struct Design {
    name: &'static str,
    run: Box<dyn Fn(u64) -> Measurement>,
    /// A second variant of ours: the report adds its ratios to every row.
    also_ours: bool,
}

impl Design {
    /// A row named `name`; `run(trips)` does the round trips
    /// [`round_trips(trips)`](round_trips) yields and returns how many, the
    /// wall time and both sides' CPU time.
    pub fn new(name: &'static str, run: impl Fn(u64) -> Measurement + 'static) -> Design {
        Design {
            name,
            run: Box::new(run),
            also_ours: false,
        }
    }

    /// Marks a design after the first as another variant of ours (the same
    /// call with other data, say): the report gives the median per-round
    /// ratios of this one to every design too, in a table of their own.
    pub fn also_ours(mut self) -> Design {
        self.also_ours = true;
        self
    }
}

/// The CPU time (user + system) the calling thread has used so far:
/// `clock_gettime(CLOCK_THREAD_CPUTIME_ID)`. Linux only.
///
/// The same per-thread figure `getrusage(RUSAGE_THREAD)` reports, but exact
/// to the call: getrusage returns the thread's runtime as of the last
/// scheduler tick or context switch, so for a thread that spins it lags by
/// up to a tick (measured here: 0.05 ms reported for 2 ms of spinning, 8.4
/// ms for 10 ms), which would flatter exactly the waiters that spin.
pub fn thread_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; the call only writes it.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_THREAD_CPUTIME_ID) failed");
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// How long and how often [`compare`] measures.
#[derive(Clone, Copy, Debug)]
pub struct Settings {
    /// Rounds per mode (so `2 * rounds` rounds in all).
    pub rounds: usize,
    /// How long one run of one design lasts.
    pub run_time: Duration,
    /// The most round trips one run does (a bound that the deadline makes
    /// moot outside smoke tests).
    pub max_trips: u64,
    /// Smoke test: no warm-up, one round per mode, runs of at most
    /// `max_trips` round trips.
    pub smoke: bool,
}

impl Settings {
    /// `rounds` rounds per mode of `run_ms` milliseconds per run, unless the
    /// environment says otherwise (`BENCH_ROUNDS`, `BENCH_RUN_MS`, for short
    /// runs while developing); with `--test` ([`crate::smoke_test_mode`]),
    /// one round per mode of runs of at most 100 round trips or 50 ms.
    pub fn from_env(rounds: usize, run_ms: u64) -> Settings {
        if crate::smoke_test_mode() {
            return Settings {
                rounds: 1,
                run_time: Duration::from_millis(50),
                max_trips: 100,
                smoke: true,
            };
        }
        Settings {
            rounds: crate::env_u64("BENCH_ROUNDS").map_or(rounds, |r| r.max(1) as usize),
            run_time: Duration::from_millis(crate::env_u64("BENCH_RUN_MS").unwrap_or(run_ms)),
            max_trips: 100_000_000,
            smoke: false,
        }
    }

    /// One run of `design`, ending at `max_trips` round trips or at
    /// `run_time`, whichever comes first.
    /// One run of `design`, and the share of its round trips sampled by
    /// [`placement`] whose two sides ran on one CPU (`None`: not sampled).
    fn run(&self, design: &Design) -> (Measurement, Option<f64>) {
        placement::reset();
        DEADLINE.set(Some(Instant::now() + self.run_time));
        let got = (design.run)(self.max_trips);
        DEADLINE.set(None);
        assert!(got.trips > 0, "{}: no round trip measured", design.name);
        (got, placement::same_cpu_share())
    }
}

thread_local! {
    /// When the current run ends (set by [`Settings::run`] on the thread
    /// that runs the design, read by [`round_trips`]).
    static DEADLINE: Cell<Option<Instant>> = const { Cell::new(None) };
}

/// The round trips of one run: yields `0, 1, 2, ...` up to `max` (the
/// design's argument), and ends early once the deadline of the harness's
/// current run has passed (checked every [`CHECK_EVERY`] round trips, after
/// the first). [`RoundTrips::done`] is the count to report. Create it on the
/// thread that the harness called the design on.
pub fn round_trips(max: u64) -> RoundTrips {
    RoundTrips {
        next: 0,
        max,
        deadline: DEADLINE.get(),
    }
}

/// How often [`RoundTrips`] reads the clock: rarely enough to add under a
/// nanosecond per round trip, often enough to stop within a few
/// milliseconds of the deadline even at 1.5 ms per round trip.
pub const CHECK_EVERY: u64 = 16;

/// See [`round_trips`].
pub struct RoundTrips {
    next: u64,
    max: u64,
    deadline: Option<Instant>,
}

impl RoundTrips {
    /// How many round trips were yielded.
    pub fn done(&self) -> u64 {
        self.next
    }
}

impl Iterator for RoundTrips {
    type Item = u64;
    fn next(&mut self) -> Option<u64> {
        if self.next == self.max {
            return None;
        }
        if self.next > 0
            && self.next.is_multiple_of(CHECK_EVERY)
            && self.deadline.is_some_and(|d| Instant::now() >= d)
        {
            return None;
        }
        self.next += 1;
        Some(self.next - 1)
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Quiet,
    Loaded,
}

const MODES: [Mode; 2] = [Mode::Quiet, Mode::Loaded];

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Quiet => "quiet",
            Mode::Loaded => "loaded",
        }
    }
    /// Starts the busy threads if this mode wants them; they stop when the
    /// returned value is dropped.
    fn enter(self) -> Option<Load> {
        (self == Mode::Loaded).then(Load::start)
    }
}

/// One busy thread per core, spinning until dropped: the load of a loaded
/// round (see "Loaded" above). Public for suites that run their own rounds
/// (`exit_left_udp`).
pub struct Load {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl Load {
    /// Starts [`busy_threads`] busy threads and returns once all of them run.
    pub fn start() -> Load {
        let n = busy_threads();
        let stop = Arc::new(AtomicBool::new(false));
        let running = Arc::new(Barrier::new(n + 1));
        let cpus = allowed_cpus();
        let threads = (0..n)
            .map(|k| {
                let (stop, running) = (Arc::clone(&stop), Arc::clone(&running));
                let cpu = cpus.get(k).copied();
                std::thread::spawn(move || {
                    if let Err(e) = pin_to(cpu) {
                        eprintln!("benches: busy thread {k} runs unpinned: {e}");
                    }
                    running.wait();
                    let mut counter = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        counter = black_box(counter.wrapping_add(1));
                    }
                })
            })
            .collect();
        running.wait();
        Load { stop, threads }
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            t.join().unwrap();
        }
    }
}

/// The CPUs this thread may run on (`sched_getaffinity`), lowest first;
/// empty if the kernel does not say.
fn allowed_cpus() -> Vec<usize> {
    // SAFETY: an all-zero `cpu_set_t` is a valid (empty) set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: the kernel writes at most `size_of::<cpu_set_t>()` bytes into
    // the live local set.
    let rc = unsafe { libc::sched_getaffinity(0, std::mem::size_of_val(&set), &mut set) };
    if rc != 0 {
        return Vec::new();
    }
    (0..libc::CPU_SETSIZE as usize)
        // SAFETY: `c` is below `CPU_SETSIZE`, the set's size in bits.
        .filter(|&c| unsafe { libc::CPU_ISSET(c, &set) })
        .collect()
}

/// Pins the calling thread to `cpu` (`None`: no CPU left for it).
fn pin_to(cpu: Option<usize>) -> std::io::Result<()> {
    let Some(cpu) = cpu else {
        return Err(std::io::Error::other("more busy threads than allowed CPUs"));
    };
    // SAFETY: as in `allowed_cpus`.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `cpu` came from `allowed_cpus`, so it is below `CPU_SETSIZE`.
    unsafe { libc::CPU_SET(cpu, &mut set) };
    // SAFETY: reads `size_of::<cpu_set_t>()` bytes of the live local set.
    let rc = unsafe { libc::sched_setaffinity(0, std::mem::size_of_val(&set), &set) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// How many busy threads a loaded round starts: one per core.
pub fn busy_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// The table rows comparing design `ours` with every design, per mode:
/// with each design's own medians (`absolute`) or only the ratios.
fn ratio_rows(
    results: &[Vec<Vec<Measurement>>; 2],
    designs: &[Design],
    ours: usize,
    absolute: bool,
) -> String {
    let mut md = String::new();
    for (m, mode) in MODES.into_iter().enumerate() {
        let ours = &results[m][ours];
        for (i, d) in designs.iter().enumerate() {
            let this = &results[m][i];
            let wall: Vec<f64> = this.iter().map(Measurement::wall_ns).collect();
            let cpu: Vec<f64> = this.iter().map(Measurement::cpu_ns).collect();
            let wall_ratio: Vec<f64> = ours
                .iter()
                .zip(this)
                .map(|(o, t)| o.wall_ns() / t.wall_ns())
                .collect();
            let cpu_ratio: Vec<f64> = ours
                .iter()
                .zip(this)
                .map(|(o, t)| o.cpu_ns() / t.cpu_ns().max(1.0))
                .collect();
            let lo = wall_ratio.iter().copied().fold(f64::INFINITY, f64::min);
            let hi = wall_ratio.iter().copied().fold(0.0, f64::max);
            let (name, wall_ratio, cpu_ratio) = (
                mode.name(),
                median(wall_ratio.iter().copied()),
                median(cpu_ratio.iter().copied()),
            );
            md += &if absolute {
                format!(
                    "| {name} | {} | {:.0} | {wall_ratio:.2} | ({lo:.2} - {hi:.2}) | {:.0} | {cpu_ratio:.2} |\n",
                    d.name,
                    median(wall.iter().copied()),
                    median(cpu.iter().copied()),
                )
            } else {
                format!(
                    "| {name} | {} | {wall_ratio:.2} | ({lo:.2} - {hi:.2}) | {cpu_ratio:.2} |\n",
                    d.name
                )
            };
        }
    }
    md
}

/// Runs `designs` (the first is ours) in interleaved quiet and loaded rounds
/// as the module documentation says, prints progress to stderr, and returns
/// a Markdown section headed `### {title}`.
pub fn compare(title: &str, designs: &[Design], settings: &Settings) -> String {
    assert!(!designs.is_empty());
    let n = designs.len();
    if !settings.smoke {
        // Warm-up: threads, allocator caches, the regime of this mode.
        for mode in MODES {
            let _load = mode.enter();
            for d in designs {
                settings.run(d);
            }
        }
    }
    // results[mode][design][round]
    let mut results: [Vec<Vec<Measurement>>; 2] = [vec![Vec::new(); n], vec![Vec::new(); n]];
    // same_cpu[mode][design][round], where sampled (`placement`).
    let mut same_cpu: [Vec<Vec<Option<f64>>>; 2] = [vec![Vec::new(); n], vec![Vec::new(); n]];
    // The host's steal share per run, where readable (`crate::steal`).
    let mut steal: [Vec<Vec<Option<f64>>>; 2] = [vec![Vec::new(); n], vec![Vec::new(); n]];
    let started = Instant::now();
    for round in 0..settings.rounds {
        for (m, mode) in MODES.into_iter().enumerate() {
            let _load = mode.enter();
            for k in 0..n {
                let i = (round + k) % n;
                let ((got, same), stolen) = crate::steal::during(|| settings.run(&designs[i]));
                steal[m][i].push(stolen);
                results[m][i].push(got);
                same_cpu[m][i].push(same);
            }
        }
        // Progress, and each round's figures (the regimes a median hides).
        let mut line = format!(
            "{title}: round {}/{} ({:.0?}), wall / CPU ns per round trip:",
            round + 1,
            settings.rounds,
            started.elapsed()
        );
        for (m, mode) in MODES.into_iter().enumerate() {
            line += &format!("\n  {:6}", mode.name());
            for (i, d) in designs.iter().enumerate() {
                let got = results[m][i].last().unwrap();
                line += &format!(" {}: {:.0} / {:.0}", d.name, got.wall_ns(), got.cpu_ns());
                if let Some(Some(same)) = same_cpu[m][i].last() {
                    line += &format!(" ({:.0}% on one CPU)", same * 100.0);
                }
                if let Some(Some(stolen)) = steal[m][i].last() {
                    line += &format!(" ({:.0}% st)", stolen * 100.0);
                }
                line.push(';');
            }
        }
        eprintln!("{line}");
    }

    let mut md = format!(
        "### {title}\n\n{} quiet and {} loaded rounds, alternating; every design once per round \
         (order rotated), {} ms per run. Loaded: {} busy threads (one per core, each pinned to its own \
         CPU) started by the harness. CPU = both sides' own thread CPU time (`CLOCK_THREAD_CPUTIME_ID`). \
         Ratios: median of per-round ours / this (below 1.00: ours is faster / cheaper).\n\n\
         | mode | design | wall ns / round trip | ours / this, wall | (min - max over rounds) \
         | CPU ns / round trip | ours / this, CPU |\n\
         |---|---|---:|---:|---:|---:|---:|\n",
        settings.rounds,
        settings.rounds,
        settings.run_time.as_millis(),
        busy_threads(),
    );
    md += &ratio_rows(&results, designs, 0, true);
    for (j, d) in designs
        .iter()
        .enumerate()
        .skip(1)
        .filter(|(_, d)| d.also_ours)
    {
        md += &format!(
            "\nThe same ratios for **{}** (median of per-round {} / this):\n\n\
             | mode | design | ratio, wall | (min - max over rounds) | ratio, CPU |\n\
             |---|---|---:|---:|---:|\n",
            d.name, d.name
        );
        md += &ratio_rows(&results, designs, j, false);
    }
    md += &placement_rows(&results, &same_cpu, designs);
    md += "\nHost steal share during the runs (`/proc/stat`, `benches::steal`):";
    for (m, mode) in MODES.into_iter().enumerate() {
        let shares = steal[m].iter().flatten().flatten().copied();
        md += &format!(" {} {};", mode.name(), crate::steal::summary(shares));
    }
    md.push_str("\n\n");
    println!("{md}");
    md
}

/// The placement table of `compare`, if any design was sampled: with the
/// median CPU ratio ours / this over the rounds in which both ran with the
/// same placement (both mostly on one CPU, or both mostly not), the
/// like-with-like comparison that the all-rounds median mixes with luck.
fn placement_rows(
    results: &[Vec<Vec<Measurement>>; 2],
    same_cpu: &[Vec<Vec<Option<f64>>>; 2],
    designs: &[Design],
) -> String {
    if same_cpu.iter().flatten().flatten().all(Option::is_none) {
        return String::new();
    }
    let mut md = String::from(
        "\nPlacement: share of the sampled round trips (one in 256) whose two sides ran on one \
         CPU, and in how many rounds most of them did (`benches::interleaved::placement`). On \
         one CPU every hand-over is a context switch, whatever the design, and a round costs \
         3-4 µs of CPU per round trip instead of 1-2.\n\n\
         | mode | design | on one CPU, median | rounds mostly on one CPU | ours / this, CPU, in \
         rounds with the same placement (how many) |\n|---|---|---:|---:|---:|\n",
    );
    let mostly = |s: &Option<f64>| s.map(|s| s > 0.5);
    for (m, mode) in MODES.into_iter().enumerate() {
        for (i, d) in designs.iter().enumerate() {
            let shares: Vec<f64> = same_cpu[m][i].iter().flatten().copied().collect();
            if shares.is_empty() {
                continue;
            }
            let on_one = shares.iter().filter(|&&s| s > 0.5).count();
            let alike: Vec<f64> = (0..results[m][i].len())
                .filter(|&r| {
                    let (ours, this) = (mostly(&same_cpu[m][0][r]), mostly(&same_cpu[m][i][r]));
                    ours.is_some() && ours == this
                })
                .map(|r| results[m][0][r].cpu_ns() / results[m][i][r].cpu_ns().max(1.0))
                .collect();
            let alike = match alike.len() {
                0 => "- (0)".to_string(),
                k => format!("{:.2} ({k})", median(alike.iter().copied())),
            };
            md += &format!(
                "| {} | {} | {:.0}% | {on_one} of {} | {alike} |\n",
                mode.name(),
                d.name,
                median(shares.iter().copied()) * 100.0,
                shares.len()
            );
        }
    }
    md
}
