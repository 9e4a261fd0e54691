//! `enter_async`: the same wait as `enter`, as a cancel-safe future.

use crate::Entry;
use crate::stage::{Stage, Ticket};
use crate::table::Wait;
use core::future::Future;
use core::pin::Pin;
use core::task::{Context, Poll, Waker};
use std::hash::Hash;
use sync_core::thread;

enum Phase {
    Start,
    Queued,
    Done,
}

/// The future returned by [`Stage::enter_async`].
///
/// Cancel-safe: dropping it before it completes leaves the stage as if the
/// ticket had never waited, except that nothing it received is lost. A
/// notification it received is recorded for the ticket's next entry, and a
/// promotion is handed on to the next follower.
#[must_use = "futures do nothing unless polled"]
pub struct EnterFuture<'s, 't, T: Hash + Eq, R, M = ()> {
    stage: &'s Stage<T, R, M>,
    ticket: &'t mut Ticket<'s, T, R, M>,
    phase: Phase,
}

impl<T: Hash + Eq, R, M> Stage<T, R, M> {
    /// Enters the stage from a task: resolves to the same [`Entry`]s as
    /// [`enter`](Stage::enter) and waits in the same FIFO as blocking
    /// waiters, on the same stage. Needs only the task's `Waker`, no runtime.
    ///
    /// It has no time-out of its own: race it with your runtime's timer.
    /// Dropping it is the cancellation (see [`EnterFuture`]). Each poll takes
    /// the lock once; a poll with a new waker clones it (outside the lock).
    ///
    /// # Panics
    ///
    /// On the first poll, if `ticket` belongs to another stage or heads this
    /// stage.
    pub fn enter_async<'s, 't>(
        &'s self,
        ticket: &'t mut Ticket<'s, T, R, M>,
    ) -> EnterFuture<'s, 't, T, R, M> {
        EnterFuture {
            stage: self,
            ticket,
            phase: Phase::Start,
        }
    }
}

impl<'s, T: Hash + Eq, R, M> Future for EnterFuture<'s, '_, T, R, M> {
    type Output = Entry<'s, T, R, M>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let stage = this.stage;
        let slot = this.ticket.slot;
        let me = thread::current().id();
        // A clone of the task's waker, made outside the lock (a waker's
        // `clone` is foreign code) the first time one is needed.
        let mut fresh: Option<Waker> = None;
        if let Phase::Start = this.phase {
            // Before the lock: a foreign ticket's slot means nothing here.
            stage.check_ticket(this.ticket);
        }
        loop {
            let mut st = stage.lock();
            // A waker clone that will not be stored is foreign code: drop it
            // before taking an outcome, so that a panic in its `drop` loses
            // nothing, then look again.
            let ready = match this.phase {
                Phase::Start => st.ready_now(slot),
                Phase::Queued => matches!(st.table.slot(slot).wait, Wait::Resolved(_)),
                Phase::Done => false,
            };
            if ready && fresh.is_some() {
                drop(st);
                drop(fresh.take());
                continue;
            }
            match this.phase {
                Phase::Start => {
                    let mut stale = None;
                    if let Some(entry) = stage.begin(&mut st, slot, me, &mut stale) {
                        this.phase = Phase::Done;
                        drop(st);
                        drop(stale);
                        return Poll::Ready(entry);
                    }
                    if let Some(waker) = fresh.take() {
                        let stale = st.table.wait_with(slot, waker, true, None);
                        this.phase = Phase::Queued;
                        drop(st);
                        drop(stale);
                        return Poll::Pending;
                    }
                }
                Phase::Queued => match &mut st.table.slot_mut(slot).wait {
                    Wait::Resolved(r) => {
                        let r = *r;
                        this.phase = Phase::Done;
                        let entry = stage.finish(&mut st, slot, r, me);
                        return Poll::Ready(entry);
                    }
                    Wait::Queued { waker, .. } => {
                        // Compared with the clone actually stored, never with
                        // a waker borrowed at an earlier poll.
                        if waker.will_wake(cx.waker()) {
                            drop(st);
                            drop(fresh);
                            return Poll::Pending;
                        }
                        if let Some(new) = fresh.take() {
                            let old = core::mem::replace(waker, new);
                            drop(st);
                            drop(old);
                            return Poll::Pending;
                        }
                    }
                    Wait::Idle => unreachable!("a queued future found idle"),
                },
                Phase::Done => panic!("exit_left: `EnterFuture` polled after it completed"),
            }
            // A waker is needed: clone it without the lock, then look again
            // (the state may have moved on meanwhile).
            drop(st);
            fresh = Some(cx.waker().clone());
        }
    }
}

impl<T: Hash + Eq, R, M> Drop for EnterFuture<'_, '_, T, R, M> {
    fn drop(&mut self) {
        if matches!(self.phase, Phase::Queued) {
            self.stage.cancel_wait(self.ticket.slot);
        }
    }
}

impl<T: Hash + Eq, R, M> core::fmt::Debug for EnterFuture<'_, '_, T, R, M> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("EnterFuture").finish_non_exhaustive()
    }
}
