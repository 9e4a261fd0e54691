//! Timers: `sleep`, `sleep_until`, `timeout`, `interval`, on one timerfd per
//! executor.
//!
//! # How it works
//!
//! Each executor keeps its pending deadlines in a binary heap (earliest
//! first, ties in registration order) and arms its one `CLOCK_MONOTONIC`
//! timerfd, with an absolute time, to the earliest. A [`Sleep`] registers on
//! its first `Pending` poll (one small allocation, no file descriptor); when
//! the timerfd fires, the reactor pops every due entry, marks it fired and
//! wakes its task, in deadline order, then re-arms for the next one. A
//! dropped `Sleep` marks its entry cancelled; cancelled entries are skipped
//! when popped and swept out once they outnumber the live ones.
//!
//! Nanosecond deadlines: no wheel rounds a 100 µs sleep up to a millisecond.

use crate::executor::{self, ExecutorRef};
use crate::reactor::lock;
use crate::sys::TimerFd;
use std::cmp::Ordering as CmpOrdering;
use std::collections::BinaryHeap;
use std::fmt;
use std::future::{Future, IntoFuture, poll_fn};
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};
use sync_core::AtomicWaker;
use sync_core::atomic::{AtomicBool, Ordering};

/// One registered deadline.
#[derive(Debug, Default)]
struct Entry {
    fired: AtomicBool,
    cancelled: AtomicBool,
    waker: AtomicWaker,
}

struct Queued {
    deadline: Instant,
    seq: u64,
    entry: Arc<Entry>,
}

impl PartialEq for Queued {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == CmpOrdering::Equal
    }
}
impl Eq for Queued {}
impl PartialOrd for Queued {
    fn partial_cmp(&self, other: &Self) -> Option<CmpOrdering> {
        Some(self.cmp(other))
    }
}
impl Ord for Queued {
    /// Reversed: `BinaryHeap` is a max-heap and we want the earliest first.
    fn cmp(&self, other: &Self) -> CmpOrdering {
        (other.deadline, other.seq).cmp(&(self.deadline, self.seq))
    }
}

/// An executor's pending deadlines (see the module docs).
#[derive(Default)]
pub(crate) struct TimerHeap {
    heap: BinaryHeap<Queued>,
    next_seq: u64,
    /// What the timerfd is armed to, if anything.
    armed: Option<Instant>,
    cancelled: usize,
}

impl TimerHeap {
    fn insert(&mut self, deadline: Instant, entry: Arc<Entry>, timerfd: &crate::reactor::Reactor) {
        self.heap.push(Queued {
            deadline,
            seq: self.next_seq,
            entry,
        });
        self.next_seq += 1;
        if self.armed.is_none_or(|armed| deadline < armed) {
            timerfd.arm_timer(deadline);
            self.armed = Some(deadline);
        }
    }

    /// Whether an entry that has not fired yet is due no later than
    /// `deadline`: a sleep for `deadline` that finished at once would then
    /// finish before it, out of deadline order. (A cancelled entry may
    /// answer `true`; that only costs the sleep a reactor turn.)
    fn holds_one_due_by(&self, deadline: Instant) -> bool {
        self.heap
            .peek()
            .is_some_and(|first| first.deadline <= deadline)
    }

    /// A sleep is dropped (or moved) before its entry fired.
    fn cancel(&mut self, entry: &Entry) {
        if entry.fired.load(Ordering::Relaxed) || entry.cancelled.load(Ordering::Relaxed) {
            return; // already popped, or already counted
        }
        entry.cancelled.store(true, Ordering::Relaxed);
        self.cancelled += 1;
        if self.cancelled > 64 && self.cancelled > self.heap.len() / 2 {
            self.heap
                .retain(|q| !q.entry.cancelled.load(Ordering::Relaxed));
            self.cancelled = 0;
        }
    }

    /// Pops every entry due at `now`, collecting wakers in deadline order,
    /// and re-arms the timerfd for the next one.
    pub(crate) fn fire_expired(
        &mut self,
        now: Instant,
        timerfd: &TimerFd,
        wakers: &mut Vec<Waker>,
    ) {
        while let Some(first) = self.heap.peek() {
            if first.deadline > now {
                break;
            }
            let Some(due) = self.heap.pop() else { break };
            if due.entry.cancelled.load(Ordering::Relaxed) {
                self.cancelled = self.cancelled.saturating_sub(1);
                continue;
            }
            due.entry.fired.store(true, Ordering::Release);
            wakers.extend(due.entry.waker.take());
        }
        let next = self.heap.peek().map(|q| q.deadline);
        if next != self.armed {
            match next {
                Some(deadline) => timerfd.arm(deadline),
                None => timerfd.disarm(),
            }
            self.armed = next;
        }
    }

    /// The executor is ending: drops every entry, handing back the wakers.
    pub(crate) fn clear(&mut self, wakers: &mut Vec<Waker>) {
        for q in self.heap.drain() {
            wakers.extend(q.entry.waker.take());
        }
        self.cancelled = 0;
    }

    /// Deadlines registered, not yet fired and not cancelled.
    pub(crate) fn len(&self) -> usize {
        self.heap.len().saturating_sub(self.cancelled)
    }
}

/// The timer functions. Nothing to construct; every function is associated.
#[derive(Debug)]
pub struct Timer {
    _private: (),
}

impl Timer {
    /// A future that completes `duration` from now. No file descriptor, one
    /// small allocation on its first `Pending` poll.
    ///
    /// # Panics
    ///
    /// When polled (and not yet due) outside a trale executor.
    pub fn sleep(duration: Duration) -> Sleep {
        Self::sleep_until(far_add(Instant::now(), duration))
    }

    /// A future that completes at `deadline`.
    pub fn sleep_until(deadline: Instant) -> Sleep {
        Sleep {
            deadline,
            registered: None,
        }
    }

    /// Runs `future` for at most `duration`: `Ok(output)` if it finished in
    /// time, `Err(Elapsed)` (and `future` is dropped) otherwise. The time
    /// counts from this call, not from the first poll. `Duration::MAX`
    /// means "no limit".
    pub fn timeout<F: IntoFuture>(
        duration: Duration,
        future: F,
    ) -> impl Future<Output = Result<F::Output, Elapsed>> {
        let mut sleep = Self::sleep(duration);
        let future = future.into_future();
        async move {
            let mut future = pin!(future);
            poll_fn(|cx| {
                if let Poll::Ready(output) = future.as_mut().poll(cx) {
                    return Poll::Ready(Ok(output));
                }
                Pin::new(&mut sleep).poll(cx).map(|()| Err(Elapsed(())))
            })
            .await
        }
    }

    /// Ticks every `period`: the first tick completes at once, the n-th at
    /// `start + n * period`. Deadlines are computed from the start, never
    /// from when a tick was observed, so the interval does not drift; a
    /// consumer that falls behind gets the missed ticks back to back.
    ///
    /// # Panics
    ///
    /// If `period` is zero.
    pub fn interval(period: Duration) -> Interval {
        assert!(
            !period.is_zero(),
            "Timer::interval: the period must be greater than zero"
        );
        Interval {
            next: Instant::now(),
            period,
        }
    }
}

/// Future of [`Timer::sleep`] and [`Timer::sleep_until`]. `Send`, `Unpin`.
#[must_use = "futures do nothing unless awaited"]
pub struct Sleep {
    deadline: Instant,
    registered: Option<(ExecutorRef, Arc<Entry>)>,
}

impl Sleep {
    /// When this sleep completes.
    pub fn deadline(&self) -> Instant {
        self.deadline
    }
}

impl fmt::Debug for Sleep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sleep")
            .field("deadline", &self.deadline)
            .field("registered", &self.registered.is_some())
            .finish()
    }
}

impl Sleep {
    /// Undoes the registration (on whichever thread drops or moves the
    /// sleep): the entry is marked cancelled under the heap's lock, so the
    /// heap's count of cancelled entries stays exact.
    fn deregister(&mut self) {
        let Some((executor, entry)) = self.registered.take() else {
            return;
        };
        let parked = entry.waker.take();
        if let Some(shared) = executor.upgrade_even_closing() {
            lock(&shared.reactor.timers).cancel(&entry);
        }
        crate::task::drop_quietly(parked);
    }
}

impl Future for Sleep {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if let Some((executor, entry)) = &self.registered {
            if entry.fired.load(Ordering::Acquire) {
                return Poll::Ready(());
            }
            if executor.is_current() {
                entry.waker.register(cx.waker());
                return if entry.fired.load(Ordering::Acquire) {
                    Poll::Ready(())
                } else {
                    Poll::Pending
                };
            }
            // Polled on another executor than the one it waits on (it was
            // moved, or its executor ended): start over on this one.
            self.deregister();
        }
        let elapsed = Instant::now() >= self.deadline;
        let Some(shared) = executor::current() else {
            if elapsed {
                return Poll::Ready(());
            }
            panic!(
                "a trale Timer was polled outside a trale executor: await it inside \
                 Executor::block_on or a task spawned with Executor::spawn"
            )
        };
        let mut timers = lock(&shared.reactor.timers);
        // An elapsed deadline finishes at once, unless a timer due no later
        // is still waiting for the reactor to fire it: then this one queues
        // behind it, so timers finish in deadline order. A finish at once
        // counts against the poll's budget, like a socket operation, so a
        // task whose interval is always behind (or that loops on zero
        // sleeps) still lets the others run.
        if elapsed && !timers.holds_one_due_by(self.deadline) {
            drop(timers);
            if !executor::poll_budget_left(cx) {
                return Poll::Pending;
            }
            executor::charge_poll_budget();
            return Poll::Ready(());
        }
        let entry = Arc::new(Entry::default());
        entry.waker.register(cx.waker());
        timers.insert(self.deadline, entry.clone(), &shared.reactor);
        drop(timers);
        self.registered = Some((shared.downgrade(), entry));
        Poll::Pending
    }
}

impl Drop for Sleep {
    fn drop(&mut self) {
        self.deregister();
    }
}

/// The error of [`Timer::timeout`]: the time ran out first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Elapsed(());

impl fmt::Display for Elapsed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("deadline has elapsed")
    }
}

impl std::error::Error for Elapsed {}

/// Periodic ticks without drift (see [`Timer::interval`]).
#[derive(Debug)]
pub struct Interval {
    next: Instant,
    period: Duration,
}

impl Interval {
    /// Waits for the next tick and returns its scheduled time.
    pub async fn tick(&mut self) -> Instant {
        Timer::sleep_until(self.next).await;
        let at = self.next;
        self.next = far_add(self.next, self.period);
        at
    }

    /// The period between ticks.
    pub fn period(&self) -> Duration {
        self.period
    }
}

/// `at + duration`, or a deadline centuries away if that overflows
/// (`Duration::MAX` is how callers say "never").
fn far_add(at: Instant, duration: Duration) -> Instant {
    const CENTURY: Duration = Duration::from_secs(100 * 365 * 24 * 3600);
    at.checked_add(duration)
        .or_else(|| at.checked_add(CENTURY))
        .unwrap_or(at)
}
