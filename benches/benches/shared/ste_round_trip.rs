//! The single-submitter round trips of the ste suite: run `x + 1` on a
//! dedicated thread and bring the answer back. Shared by the criterion
//! suite (`ste.rs`) and the interleaved quiet / loaded comparison
//! (`ste_interleaved.rs`). The answering side reports its CPU for one
//! round trip in 256 (`benches::interleaved::placement`, a branch per round
//! trip, the same in every design).

use benches::interleaved::{placement, thread_cpu};
use std::hint::black_box;
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

/// A job for the mpsc worker.
pub type Job = Box<dyn FnOnce() -> u64 + Send>;

/// Ours: `Thread::submit` of a closure that borrows `x`.
pub fn ours_call(thread: &ste::Thread, x: u64) -> u64 {
    thread
        .submit(|| {
            placement::answered(x);
            black_box(x) + 1
        })
        .unwrap()
}

/// Ours with `x` moved into the closure: the data travels with the task,
/// as it does with the message of every peer.
pub fn ours_call_moved(thread: &ste::Thread, x: u64) -> u64 {
    thread
        .submit(move || {
            placement::answered(x);
            black_box(x) + 1
        })
        .unwrap()
}

/// std mpsc: boxed job in, answer out.
pub struct Mpsc {
    jobs: Option<mpsc::Sender<Job>>,
    answers: mpsc::Receiver<u64>,
    /// Returns the CPU time of its loop.
    worker: Option<JoinHandle<Duration>>,
}

impl Mpsc {
    pub fn new() -> Self {
        let (jobs, job_rx) = mpsc::channel::<Job>();
        let (answer_tx, answers) = mpsc::channel();
        let worker = std::thread::spawn(move || {
            let cpu = thread_cpu();
            for job in job_rx {
                if answer_tx.send(job()).is_err() {
                    break;
                }
            }
            thread_cpu() - cpu
        });
        Mpsc {
            jobs: Some(jobs),
            answers,
            worker: Some(worker),
        }
    }

    pub fn call(&self, x: u64) -> u64 {
        self.jobs
            .as_ref()
            .unwrap()
            .send(Box::new(move || {
                placement::answered(x);
                black_box(x) + 1
            }))
            .unwrap();
        self.answers.recv().unwrap()
    }

    /// Stops the worker; returns the CPU time its loop used.
    pub fn finish(mut self) -> Duration {
        drop(self.jobs.take());
        self.worker.take().unwrap().join().unwrap()
    }
}

impl Drop for Mpsc {
    fn drop(&mut self) {
        drop(self.jobs.take());
        if let Some(worker) = self.worker.take() {
            worker.join().unwrap();
        }
    }
}

/// crossbeam-channel: `bounded(1)` ping-pong of a value.
pub struct Crossbeam {
    pings: Option<crossbeam_channel::Sender<u64>>,
    pongs: crossbeam_channel::Receiver<u64>,
    /// Returns the CPU time of its loop.
    worker: Option<JoinHandle<Duration>>,
}

impl Crossbeam {
    pub fn new() -> Self {
        let (pings, ping_rx) = crossbeam_channel::bounded::<u64>(1);
        let (pong_tx, pongs) = crossbeam_channel::bounded(1);
        let worker = std::thread::spawn(move || {
            let cpu = thread_cpu();
            for x in ping_rx {
                placement::answered(x);
                if pong_tx.send(black_box(x) + 1).is_err() {
                    break;
                }
            }
            thread_cpu() - cpu
        });
        Crossbeam {
            pings: Some(pings),
            pongs,
            worker: Some(worker),
        }
    }

    pub fn call(&self, x: u64) -> u64 {
        self.pings.as_ref().unwrap().send(x).unwrap();
        self.pongs.recv().unwrap()
    }

    /// Stops the worker; returns the CPU time its loop used.
    pub fn finish(mut self) -> Duration {
        drop(self.pings.take());
        self.worker.take().unwrap().join().unwrap()
    }
}

impl Drop for Crossbeam {
    fn drop(&mut self) {
        drop(self.pings.take());
        if let Some(worker) = self.worker.take() {
            worker.join().unwrap();
        }
    }
}
