//! Loom models of the task state machine (`src/task/state.rs`, included
//! verbatim): wake / poll / complete / abort / detach races.
//!
//! Each model plays the executor with a real queue: a waker that gets `true`
//! from `wake`/`abort` pushes the task, and the executor polls what it pops.
//! The "future" is a loom-tracked cell, so two overlapping polls, or a poll
//! racing the result's hand-over, fail the model.
//!
//! Run with `cargo xtask loom -p trale`.
#![cfg(loom)]
#![allow(dead_code)]

#[path = "../src/task/state.rs"]
mod state;

use state::{Start, State};
use sync_core::atomic::{AtomicUsize, Ordering};
use sync_core::cell::UnsafeCell;
use sync_core::sync::{Arc, Mutex};
use sync_core::thread;

/// One task as the executor sees it: its state word, a run queue holding
/// it at most once, the number of wake-ups published so far, and the "future"
/// (the number of wake-ups its latest poll saw).
struct Task {
    state: State,
    queue: Mutex<usize>,
    published: AtomicUsize,
    future: UnsafeCell<usize>,
    output: UnsafeCell<Option<u32>>,
    output_drops: AtomicUsize,
}

impl Task {
    fn new() -> Arc<Self> {
        Arc::new(Self {
            state: State::new_scheduled(),
            queue: Mutex::new(1),
            published: AtomicUsize::new(0),
            future: UnsafeCell::new(0),
            output: UnsafeCell::new(None),
            output_drops: AtomicUsize::new(0),
        })
    }

    fn enqueue(&self) {
        let mut q = self.queue.lock().unwrap();
        *q += 1;
        assert_eq!(*q, 1, "task queued twice: it would be polled twice");
    }

    /// A waker: publishes an event, then wakes.
    fn wake(&self) {
        self.published.fetch_add(1, Ordering::SeqCst);
        if self.state.wake() {
            self.enqueue();
        }
    }

    fn abort(&self) {
        if self.state.abort() {
            self.enqueue();
        }
    }

    /// The executor: pops the task if queued and runs it once. `finish_after`
    /// = complete when the poll has seen that many wake-ups.
    fn run_once(&self, finish_after: usize) -> bool {
        {
            let mut q = self.queue.lock().unwrap();
            if *q == 0 {
                return false;
            }
            *q -= 1;
        }
        match self.state.start_poll() {
            Start::Skip => {}
            Start::Cancel => self.finish(None),
            Start::Poll => {
                let seen = self.published.load(Ordering::SeqCst);
                // SAFETY: the executor side owns the future; loom checks that claim.
                self.future.with_mut(|f| unsafe { *f = seen });
                if seen >= finish_after {
                    self.finish(Some(7));
                } else if self.state.end_poll_pending() {
                    self.enqueue();
                }
            }
        }
        true
    }

    fn finish(&self, value: Option<u32>) {
        self.output.with_mut(|o| unsafe { *o = value });
        if self.state.complete() {
            self.output.with_mut(|o| unsafe { (*o).take() });
            self.output_drops.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn detach(&self) {
        if self.state.detach() {
            self.output.with_mut(|o| unsafe { (*o).take() });
            self.output_drops.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn drain(&self, finish_after: usize) {
        while self.run_once(finish_after) {}
    }

    fn last_poll_saw(&self) -> usize {
        self.future.with(|f| unsafe { *f })
    }
}

/// Two wakers race a poll: the task is never queued twice, and the last
/// poll sees every wake-up (none is lost while the task is running).
#[test]
fn wakes_during_poll_are_not_lost_or_doubled() {
    sync_core::model(|| {
        let task = Task::new();
        let wakers: Vec<_> = (0..2)
            .map(|_| {
                let task = task.clone();
                thread::spawn(move || task.wake())
            })
            .collect();
        let runner = {
            let task = task.clone();
            thread::spawn(move || {
                task.run_once(usize::MAX);
            })
        };
        for w in wakers {
            w.join().unwrap();
        }
        runner.join().unwrap();
        task.drain(usize::MAX);
        assert_eq!(task.last_poll_saw(), 2, "a wake-up was lost");
        assert!(!task.state.is_complete());
    });
}

/// Woken twice before it runs: queued once, polled once.
#[test]
fn double_wake_before_poll_polls_once() {
    sync_core::model(|| {
        let task = Task::new();
        task.run_once(usize::MAX); // now idle
        let other = {
            let task = task.clone();
            thread::spawn(move || task.wake())
        };
        task.wake();
        other.join().unwrap();
        let mut polls = 0;
        while task.run_once(usize::MAX) {
            polls += 1;
        }
        assert_eq!(polls, 1);
        assert_eq!(task.last_poll_saw(), 2);
    });
}

/// Abort races a poll that completes, and a wake: exactly one outcome, the
/// future is not touched after completion, late wakes queue nothing.
#[test]
fn abort_races_completion() {
    sync_core::model(|| {
        let task = Task::new();
        let aborter = {
            let task = task.clone();
            thread::spawn(move || task.abort())
        };
        let waker = {
            let task = task.clone();
            thread::spawn(move || task.wake())
        };
        task.run_once(1);
        aborter.join().unwrap();
        waker.join().unwrap();
        task.drain(1);
        assert!(task.state.is_complete(), "neither completed nor cancelled");
        assert_eq!(*task.queue.lock().unwrap(), 0);
        // Wakes after completion are no-ops.
        assert!(!task.state.wake());
        assert!(!task.state.abort());
        let outcome = task.output.with_mut(|o| unsafe { (*o).take() });
        assert!(outcome == Some(7) || outcome.is_none());
    });
}

/// The joiner leaves while the task completes: the result is dropped exactly
/// once, by whichever side came second, and never while the other writes it.
#[test]
fn detach_races_completion() {
    sync_core::model(|| {
        let task = Task::new();
        let joiner = {
            let task = task.clone();
            thread::spawn(move || task.detach())
        };
        task.run_once(0);
        joiner.join().unwrap();
        assert!(task.state.is_complete());
        assert_eq!(task.output_drops.load(Ordering::SeqCst), 1);
    });
}

/// A wake from another thread while the task is being aborted on the
/// executor: cancelled exactly once, not polled after.
#[test]
fn wake_races_cancel() {
    sync_core::model(|| {
        let task = Task::new();
        task.run_once(usize::MAX); // idle
        let waker = {
            let task = task.clone();
            thread::spawn(move || task.wake())
        };
        task.abort();
        let polls_before = task.last_poll_saw();
        task.drain(usize::MAX);
        waker.join().unwrap();
        task.drain(usize::MAX);
        assert!(task.state.is_complete());
        assert_eq!(task.output_drops.load(Ordering::SeqCst), 0);
        // Cancelled: the result is `None`, and no poll happened after abort
        // was queued (a poll would have overwritten the count).
        assert!(task.last_poll_saw() <= polls_before.max(1));
        assert_eq!(task.output.with_mut(|o| unsafe { (*o).take() }), None);
    });
}

/// A waker that records that it was woken.
struct Flag(sync_core::atomic::AtomicBool);

impl std::task::Wake for Flag {
    fn wake(self: std::sync::Arc<Self>) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// The joiner's handshake with completion (`raw.rs`: `poll_outcome` and
/// `finish`): the joiner registers its waker, then checks `COMPLETE`; the
/// executor publishes the result, sets `COMPLETE`, then takes and wakes the
/// waker. Either the joiner sees the result, or it is woken: never neither;
/// and no waker of the joiner stays in the task afterwards.
#[test]
fn joiner_registration_races_completion() {
    sync_core::model(|| {
        let task = Task::new();
        let join_waker = Arc::new(sync_core::AtomicWaker::new());
        let runner = {
            let (task, join_waker) = (task.clone(), join_waker.clone());
            thread::spawn(move || {
                task.run_once(0); // completes: output written, COMPLETE set
                join_waker.wake();
            })
        };
        let flag = std::sync::Arc::new(Flag(sync_core::atomic::AtomicBool::new(false)));
        let waker = std::task::Waker::from(flag.clone());
        let saw_result = if task.state.is_complete() {
            true
        } else {
            join_waker.register(&waker);
            let done = task.state.is_complete();
            if done {
                // As `poll_outcome`: the executor may have taken the slot
                // before this registration; take the waker back.
                drop(join_waker.take());
            }
            done
        };
        if saw_result {
            // Read at once, before joining the runner: loom checks this read
            // is ordered after the write by `COMPLETE` alone.
            let value = task.output.with_mut(|o| unsafe { (*o).take() });
            assert_eq!(value, Some(7));
        }
        runner.join().unwrap();
        assert!(
            saw_result || flag.0.load(Ordering::SeqCst),
            "the joiner missed the result and was not woken"
        );
        // Nothing is left for the executor to drop outside its
        // `catch_unwind` (review 3, finding 3).
        assert!(
            join_waker.take().is_none(),
            "a joiner's waker was left in the task after the handshake"
        );
    });
}
