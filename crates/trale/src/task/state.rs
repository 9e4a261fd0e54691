//! The task state machine: one atomic word, shared by the executor that
//! polls a task, every waker of it, and its joiner.
//!
//! # How it works
//!
//! Five bits:
//!
//! - `SCHEDULED`: the task is (or is about to be) in a run queue. Only the
//!   waker that sets it enqueues, so a task woken twice before it runs is
//!   queued, and polled, once.
//! - `RUNNING`: the executor is inside `poll`. A wake that arrives now only
//!   sets `SCHEDULED`; the executor sees it when the poll returns `Pending`
//!   and queues the task again itself, so the future is never polled by two
//!   threads and a wake during a poll is never lost.
//! - `COMPLETE`: the future is gone and the result is published. Wakes are
//!   no-ops from here on.
//! - `CANCELLED`: `abort` asked for the future to be dropped. It is set with
//!   `SCHEDULED`, so the executor, on the owning thread, drops the future the
//!   next time it would poll it.
//! - `DETACHED`: the joiner is gone. Whoever of the completing executor and
//!   the departing joiner sets its bit second owns the result and drops it,
//!   so a result is dropped exactly once, on a thread allowed to drop it.
//!
//! This file uses only `sync_core` and `core`, so the loom model
//! (`tests/loom.rs`) includes it verbatim and checks these transitions.

use sync_core::atomic::{AtomicUsize, Ordering};

const SCHEDULED: usize = 1 << 0;
const RUNNING: usize = 1 << 1;
const COMPLETE: usize = 1 << 2;
const CANCELLED: usize = 1 << 3;
const DETACHED: usize = 1 << 4;

/// What the executor does with a task it took from a run queue.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Start {
    /// Poll the future.
    Poll,
    /// `abort` was called: drop the future instead.
    Cancel,
    /// Already complete (cancelled by a shutdown while queued): nothing to do.
    Skip,
}

/// The state word of one task.
#[derive(Debug)]
pub(crate) struct State(AtomicUsize);

impl State {
    /// A new task: scheduled, because spawning queues it.
    pub(crate) fn new_scheduled() -> Self {
        Self(AtomicUsize::new(SCHEDULED))
    }

    /// Sets `extra | SCHEDULED` unless complete; returns whether the caller
    /// must put the task in the run queue.
    fn schedule_with(&self, extra: usize) -> bool {
        // Always a read-modify-write, even when `SCHEDULED` is already set:
        // a waker that only *read* "scheduled" would not be ordered before
        // the executor's `start_poll`, which could then miss what the waker
        // published before waking (loom finds that lost wake-up).
        let prev = self
            .0
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |cur| {
                (cur & COMPLETE == 0).then_some(cur | SCHEDULED | extra)
            });
        match prev {
            // Enqueue only if nobody else has: not already scheduled, and
            // not running (the runner re-queues when its poll returns).
            Ok(cur) => cur & (SCHEDULED | RUNNING) == 0,
            Err(_) => false,
        }
    }

    /// A wake-up. Returns whether the caller must enqueue the task.
    pub(crate) fn wake(&self) -> bool {
        self.schedule_with(0)
    }

    /// An abort request. Returns whether the caller must enqueue the task.
    pub(crate) fn abort(&self) -> bool {
        self.schedule_with(CANCELLED)
    }

    /// The executor took the task from its run queue.
    pub(crate) fn start_poll(&self) -> Start {
        let mut cur = self.0.load(Ordering::Acquire);
        loop {
            if cur & COMPLETE != 0 {
                return Start::Skip;
            }
            debug_assert!(cur & SCHEDULED != 0 && cur & RUNNING == 0, "state {cur:#b}");
            let next = (cur & !SCHEDULED) | RUNNING;
            match self
                .0
                .compare_exchange_weak(cur, next, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) if cur & CANCELLED != 0 => return Start::Cancel,
                Ok(_) => return Start::Poll,
                Err(actual) => cur = actual,
            }
        }
    }

    /// The poll returned `Pending`. Returns whether the task was woken during
    /// the poll and must go back in the run queue (it stays `SCHEDULED`).
    pub(crate) fn end_poll_pending(&self) -> bool {
        let prev = self.0.fetch_and(!RUNNING, Ordering::AcqRel);
        prev & SCHEDULED != 0
    }

    /// The future finished (or was dropped) and its result is published.
    /// Returns `true` if the joiner is already gone: the caller must take the
    /// result back and drop it.
    pub(crate) fn complete(&self) -> bool {
        let prev = self
            .0
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |cur| {
                Some((cur | COMPLETE) & !(RUNNING | SCHEDULED))
            })
            .unwrap_or_else(|cur| cur);
        prev & DETACHED != 0
    }

    /// The joiner is dropped. Returns `true` if the task is already complete:
    /// the joiner must drop the result itself.
    pub(crate) fn detach(&self) -> bool {
        self.0.fetch_or(DETACHED, Ordering::AcqRel) & COMPLETE != 0
    }

    /// Whether the result is published (acquire: it may be read now).
    pub(crate) fn is_complete(&self) -> bool {
        self.0.load(Ordering::Acquire) & COMPLETE != 0
    }
}
