//! The head's side: the guard that proves it heads the stage.

use crate::stage::{Headship, Stage, State, wake_quietly};
use crate::{NotifyOutcome, Undelivered};
use core::marker::PhantomData;
use std::hash::Hash;
use sync_core::sync::MutexGuard;

/// Proof that the current thread heads the stage: the one that may read the
/// resource. Dropping it (also while unwinding from a panic) hands the
/// headship to the longest-waiting follower, with exactly one wake-up, or
/// frees it if nobody waits.
///
/// `!Send`, like a `MutexGuard`: the stage remembers which thread heads, so
/// that an `enter` from that thread panics instead of waiting for itself.
///
/// Like a `MutexGuard`, a guard leaked with `mem::forget` keeps the
/// headship for good: followers then wait until their time-outs (or
/// `close`).
#[must_use = "dropping the guard hands the headship on at once"]
pub struct HeadGuard<'s, T: Hash + Eq, R, M = ()> {
    stage: &'s Stage<T, R, M>,
    /// `!Send` and `Sync`, like a `MutexGuard`.
    _not_send: PhantomData<std::sync::MutexGuard<'static, ()>>,
}

impl<'s, T: Hash + Eq, R, M> HeadGuard<'s, T, R, M> {
    pub(crate) fn new(stage: &'s Stage<T, R, M>) -> Self {
        Self {
            stage,
            _not_send: PhantomData,
        }
    }

    /// The resource, to read (or write). Only the head gets it through this
    /// guard, whatever `R` is, and only for as long as it holds the guard
    /// (the reference borrows the guard: a former head cannot keep reading
    /// after it handed the headship on):
    ///
    /// ```compile_fail
    /// use exit_left::{Entry, Stage};
    /// let stage: Stage<u32, std::cell::Cell<u32>> = Stage::new(Default::default());
    /// let mut ticket = stage.ticket(1).unwrap();
    /// let Entry::Head(head) = stage.enter(&mut ticket, None) else { unreachable!() };
    /// let kept = head.resource();
    /// drop(head);
    /// kept.set(1); // error: `head` is dropped while `kept` borrows it
    /// ```
    pub fn resource(&self) -> &R {
        self.stage.resource_unchecked()
    }

    /// The stage this guard heads.
    pub fn stage(&self) -> &'s Stage<T, R, M> {
        self.stage
    }

    /// Notifies `token` (see [`Stage::notify`]). A notification for the
    /// head's own token is recorded ([`NotifyOutcome::OwnToken`]) and its
    /// next `enter` returns `Notified`: never lost, never a corrupted stage.
    ///
    /// Does not block; at most one wake-up; allocates nothing.
    pub fn notify(&self, token: &T) -> NotifyOutcome {
        match self.stage.notify_inner(token, None, true) {
            Ok(outcome) => outcome,
            Err(_) => NotifyOutcome::NoSuchToken,
        }
    }

    /// Puts `message` in `token`'s mailbox and notifies it, in one step.
    /// Gives the message back if no ticket has that token.
    ///
    /// Does not block; at most one wake-up; allocates only when the inbox
    /// grows.
    pub fn deliver(&self, token: &T, message: M) -> Result<NotifyOutcome, Undelivered<M>> {
        match self.stage.notify_inner(token, Some(message), true) {
            Ok(outcome) => Ok(outcome),
            Err(message) => Err(Undelivered(message.expect("the message comes back"))),
        }
    }

    /// Takes the next message from the head's own mailbox, if its ticket
    /// is still registered and has one.
    pub fn try_recv_own(&self) -> Option<M> {
        let mut st = self.stage.lock();
        let Headship::Held { slot: Some(id), .. } = st.headship else {
            return None;
        };
        st.table.slot_mut(id).inbox.pop_front()
    }
}

impl<T: Hash + Eq, R, M> HeadGuard<'_, T, R, M> {
    /// The head's next own message and whether the stage is closed, under
    /// one lock (the check `recv`'s head makes before every read).
    pub(crate) fn own_and_closed(&self) -> (Option<M>, bool) {
        let mut st = self.stage.lock();
        let own = match st.headship {
            Headship::Held { slot: Some(id), .. } => st.table.slot_mut(id).inbox.pop_front(),
            _ => None,
        };
        (own, st.closed)
    }
}

impl<'s, T: Hash + Eq, R, M> HeadGuard<'s, T, R, M> {
    /// `serve`'s choice once its head holds its own next message: if every
    /// other ticket's thread waits, parked, in the FIFO, hands the headship
    /// on (as dropping the guard does) and returns `None`; otherwise lends
    /// it.
    ///
    /// With everyone else waiting, nobody is running who could take a lent
    /// headship, so the head would read again itself after `handle`. Handing
    /// it on instead wakes the longest-waiting follower while `handle` runs:
    /// the owner whose last item is the oldest, the likeliest to be sent
    /// the next one when peers take turns, reads it without a hand-over.
    /// Not with a task in the FIFO: the serving thread itself may be the
    /// one that polls it, and would then park behind a promotion only it
    /// could take up.
    ///
    /// On a stage that promotes when readable, also when only one other
    /// ticket is outside the FIFO and nothing is there to read: that
    /// thread would take a lent headship only to block in the read and then
    /// wake an owner; the promoted follower sleeps on until its item
    /// arrives instead (see `serve`'s docs).
    ///
    /// Never when the longest-waiting follower is idle (its peer quiet for
    /// two rounds of items, see `table.rs`): it would only wake to read
    /// for the others, one more switch per item. The head lends, takes the
    /// headship back after `handle` and reads on; the others' items reach
    /// them with one wake-up each, as when someone is outside the FIFO.
    /// Measured with two busy owners among eight tickets (loopback UDP):
    /// handing on to the idle followers made the pair 2.9x slower on a
    /// quiet machine.
    pub(crate) fn lend_unless_all_wait(self) -> Option<Lent<'s, T, R, M>> {
        let mut st = self.stage.lock();
        let head_has_ticket = matches!(st.headship, Headship::Held { slot: Some(_), .. });
        let queued = st.table.queued();
        let others_out = st.table.registered() - queued - usize::from(head_has_ticket);
        let hand_on_now = queued > 0
            && st.table.queued_tasks() == 0
            && (others_out == 0 || (others_out == 1 && self.stage.gate().would_sleep()))
            && st.table.idle_followers() == 0;
        if !hand_on_now {
            return Some(self.lend_locked(st));
        }
        // Decided and handed on under one lock: between two locks a task
        // could queue while the threads ahead of it time out, and get the
        // headship this rule never gives a task.
        let stage = self.stage;
        core::mem::forget(self);
        hand_on(stage, st);
        None
    }

    /// Frees the headship without promoting anyone, for `serve` while it
    /// handles its own message or wakes an owner: a thread that enters
    /// meanwhile heads at once. The returned [`Lent`] takes it back or
    /// passes it on.
    pub(crate) fn lend(self) -> Lent<'s, T, R, M> {
        let st = self.stage.lock();
        self.lend_locked(st)
    }

    /// [`lend`](Self::lend) under the caller's lock (`serve` decides and
    /// lends in one lock round trip).
    fn lend_locked(self, mut st: MutexGuard<'_, State<T, M>>) -> Lent<'s, T, R, M> {
        let stage = self.stage;
        let Headship::Held { slot, thread } = st.headship else {
            unreachable!("exit_left: a head guard without the headship")
        };
        st.headship = Headship::Free;
        drop(st);
        core::mem::forget(self);
        Lent {
            stage,
            slot,
            thread,
            _not_send: PhantomData,
        }
    }
}

/// A headship `serve` freed while it handles its own message or wakes an
/// owner. Dropping it (also while unwinding) hands a still-free headship to
/// the longest-waiting follower, as dropping the guard would have.
pub(crate) struct Lent<'s, T: Hash + Eq, R, M> {
    stage: &'s Stage<T, R, M>,
    slot: Option<crate::table::SlotId>,
    thread: sync_core::thread::ThreadId,
    _not_send: PhantomData<std::sync::MutexGuard<'static, ()>>,
}

impl<'s, T: Hash + Eq, R, M> Lent<'s, T, R, M> {
    /// Heads again if nobody took the headship meanwhile (and the stage is
    /// open); `None` if another thread heads now, or the stage closed.
    pub(crate) fn reclaim(self) -> Option<HeadGuard<'s, T, R, M>> {
        self.reclaim_looking(false).map(|(head, _)| head)
    }

    /// [`reclaim`](Self::reclaim), also taking the head's next own message
    /// under the same lock: whoever headed meanwhile may have delivered it,
    /// and the head looks at its mailbox before every read.
    pub(crate) fn reclaim_with_mail(self) -> Option<(HeadGuard<'s, T, R, M>, Option<M>)> {
        self.reclaim_looking(true)
    }

    fn reclaim_looking(self, take_mail: bool) -> Option<(HeadGuard<'s, T, R, M>, Option<M>)> {
        let stage = self.stage;
        let mut st = stage.lock();
        let again = st.headship == Headship::Free && !st.closed;
        let mut own = None;
        if again {
            st.headship = Headship::Held {
                slot: self.slot,
                thread: self.thread,
            };
            if let (true, Some(id)) = (take_mail, self.slot) {
                own = st.table.slot_mut(id).inbox.pop_front();
            }
        }
        drop(st);
        if again {
            core::mem::forget(self);
            Some((HeadGuard::new(stage), own))
        } else {
            None
        }
    }
}

impl<T: Hash + Eq, R, M> Drop for Lent<'_, T, R, M> {
    fn drop(&mut self) {
        let st = self.stage.lock();
        if st.headship == Headship::Free {
            hand_on(self.stage, st);
        }
    }
}

impl<T: Hash + Eq, R, M> Drop for HeadGuard<'_, T, R, M> {
    fn drop(&mut self) {
        let st = self.stage.lock();
        debug_assert!(matches!(st.headship, Headship::Held { .. }));
        hand_on(self.stage, st);
    }
}

impl<T: Hash + Eq, R, M> core::fmt::Debug for HeadGuard<'_, T, R, M> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("HeadGuard").finish_non_exhaustive()
    }
}

/// Hands the headship on under the caller's lock `st` (promoting the
/// longest-waiting follower, or freeing it), then makes the one wake-up
/// after unlocking, quietly (it runs on the follower's behalf).
fn hand_on<T: Hash + Eq, R, M>(stage: &Stage<T, R, M>, mut st: MutexGuard<'_, State<T, M>>) {
    let gate = stage.gate();
    let wake = st.hand_off(gate);
    drop(st);
    if let Some(w) = wake {
        wake_quietly(w);
    }
    // The head's thread: a resource that woke it for this headship leaves
    // its epoll set now, while the descriptor still names the resource (a
    // stage dropped next, over a socket that lives on elsewhere, would
    // leave it there).
    #[cfg(target_os = "linux")]
    if gate.is_set() {
        crate::ready::tidy_thread();
    }
}
