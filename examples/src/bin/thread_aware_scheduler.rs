//! A small thread-per-core scheduler built on `thread_aware`.
//!
//! One worker per processor this process may run on, each pinned to its
//! processor (`Topology::pin_current_thread`). The scheduler accepts only
//! relocatable work (`BoxedRelocateFnOnce`: every capture is `ThreadAware`),
//! and whenever it moves work from the submitting affinity to a worker's, it
//! calls `relocated(source, destination)` on it. Each job increments a
//! `PerCore<AtomicU64>` counter; relocation switched the job's handle to the
//! destination processor's own instance, so workers never contend on one
//! cache line. At the end the per-core instances are summed with `fold`.
//!
//! Run with `cargo run -p examples --bin thread_aware_scheduler [JOBS]`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::thread;
use thread_aware::{
    BoxedRelocateFnOnce, MemoryAffinity, PerCore, RelocateFnOnce, ThreadAware, Topology,
    relocate_once,
};

/// Work the scheduler runs: relocatable, boxed, returns nothing.
type Job = BoxedRelocateFnOnce<()>;

struct Scheduler {
    home: MemoryAffinity,
    queues: Vec<(MemoryAffinity, mpsc::Sender<Job>)>,
    workers: Vec<thread::JoinHandle<u64>>,
}

impl Scheduler {
    /// One pinned worker per processor of `topology`; work is submitted from
    /// `home` (the affinity its captures were made on).
    fn start(topology: &Topology) -> std::io::Result<Scheduler> {
        let mut queues = Vec::new();
        let mut workers = Vec::new();
        for &affinity in topology.affinities() {
            let (tx, rx) = mpsc::channel::<Job>();
            let topo = topology.clone();
            workers.push(thread::spawn(move || {
                topo.pin_current_thread(affinity)
                    .expect("pinning a worker to its processor");
                let mut ran = 0;
                for job in rx {
                    job.call_once();
                    ran += 1;
                }
                ran
            }));
            queues.push((affinity, tx));
        }
        Ok(Scheduler {
            home: topology.affinities()[0],
            queues,
            workers,
        })
    }

    /// Moves `job` to worker `n % workers`: relocates it from the home
    /// affinity to the worker's, then queues it.
    fn spawn(&self, n: usize, job: Job) {
        let (destination, queue) = &self.queues[n % self.queues.len()];
        let job = job.relocated(self.home, *destination);
        queue.send(job).expect("worker alive");
    }

    /// Closes the queues and returns how many jobs each worker ran.
    fn join(self) -> Vec<u64> {
        drop(self.queues);
        self.workers
            .into_iter()
            .map(|w| w.join().expect("a worker panicked"))
            .collect()
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let jobs: usize = std::env::args()
        .nth(1)
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(100_000);
    let topology = Topology::current()?;
    println!(
        "{} processors in {} memory regions: {:?}",
        topology.processor_count(),
        topology.memory_region_count(),
        topology
            .affinities()
            .iter()
            .map(|&a| topology.cpu_id(a))
            .collect::<Vec<_>>()
    );
    let home = topology.affinities()[0];
    // The counter's handle starts on the home affinity; relocation moves each
    // job's clone to its worker's own instance.
    let counter = PerCore::new_with_affinity(home, |_| AtomicU64::new(0));

    let scheduler = Scheduler::start(&topology)?;
    for n in 0..jobs {
        let work = relocate_once(counter.clone(), |c: PerCore<AtomicU64>| {
            c.fetch_add(1, Ordering::Relaxed);
        });
        scheduler.spawn(n, BoxedRelocateFnOnce::new(work));
    }
    let ran = scheduler.join();

    let mut per_instance = Vec::new();
    counter.for_each(|c| per_instance.push(c.load(Ordering::Relaxed)));
    let total = counter.fold(0, |sum, c| sum + c.load(Ordering::Relaxed));
    println!("jobs run per worker: {ran:?}");
    println!("per-core counter instances: {per_instance:?}; fold = {total}");
    if total != jobs as u64 || ran.iter().sum::<u64>() != jobs as u64 {
        return Err(format!("expected {jobs} increments, counted {total}").into());
    }
    println!("every job ran once and counted on its own processor's instance");
    Ok(())
}
