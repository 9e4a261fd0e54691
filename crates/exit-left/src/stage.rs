//! The stage: tickets, `enter`, `notify`, `close`.
//!
//! # How it works
//!
//! All of the stage's bookkeeping sits behind one mutex, held only for a few
//! dozen instructions at a time and never while user code runs (a token's
//! `Hash` runs before the lock, its `Eq` only in lookups that change nothing,
//! and every `Waker`, token and message is woken or dropped after the lock is
//! released). The resource itself is outside the mutex: the head uses it
//! while the lock is free.
//!
//! The state is a [`Table`] of registered tokens, a FIFO of waiting slots,
//! and the *headship*, which is in exactly one of three states:
//!
//! - `Free`: nobody heads, and the next `enter` that has no notification
//!   waiting for it takes the headship on the spot. The FIFO is empty, except
//!   while `serve` lends the headship (its head frees it while it handles
//!   its own message, and while it wakes an owner it delivered to; see
//!   `mailbox.rs`): then followers may be queued, and a thread that enters
//!   heads ahead of them (leaving the queue first if a leaked future had
//!   left its slot there).
//! - `Held`: a [`HeadGuard`] exists. `slot` is the ticket it came from (gone
//!   if that ticket was dropped), `thread` the thread that holds it (the guard
//!   is `!Send`), so that an `enter` from that thread panics instead of
//!   waiting for itself.
//! - `Promised(slot)`: the guard was dropped and the headship handed to the
//!   longest-waiting follower, which has been woken but has not yet run.
//!
//! A waiter's wait ends in exactly one place: under the lock, whoever ends it
//! (a notifier, a hand-off, `close`, or the waiter itself on a time-out or
//! cancellation) moves its slot out of the FIFO and records why
//! ([`Resolution`]). Since only one of them can do that, there is no state in
//! which a waiter is both "timed out" and "promoted" and the promotion is
//! dropped, which is how the original lost its head. The waker is taken out
//! with the slot and woken after the lock: one wake-up per resolution.
//!
//! Two rules settle the races the original got wrong:
//!
//! - **Notification beats promotion.** A notification for a follower that was
//!   promoted but has not run yet turns its resolution into `Notified` and
//!   hands the headship on to the next follower (a *forwarded* promotion). A
//!   cancelled future or dropped ticket that holds a promotion forwards it
//!   the same way. The headship is therefore never held by a thread that does
//!   not know it.
//! - **Resolution beats the clock.** A waiter whose deadline passes locks the
//!   stage and looks: if anyone resolved its wait before that, it gets that
//!   resolution (a notification that arrived by the deadline is not a
//!   time-out; a promotion made by the deadline is a `Head`).

use crate::gate::{FdOf, Gate, Watch};
use crate::head::HeadGuard;
use crate::table::{Resolution, SlotId, Table, Wait};
use crate::{Counters, Entry, NotifyOutcome, TicketError};
use std::hash::{BuildHasher, Hash, RandomState};
use std::task::Waker;
use std::time::{Duration, Instant};
use sync_core::sync::{Mutex, MutexGuard};
use sync_core::thread::{self, ThreadId};
use sync_core::unwind::FirstPanic;
use sync_core::{SpinHints, SpinPolicy};

/// The next [`thread_mark`] to hand out. A plain `std` atomic also under
/// loom: it only numbers threads, no model races on it.
static NEXT_MARK: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(1);

sync_core::thread_local! {
    /// This thread's mark, handed out at its first use. It needs no drop,
    /// so it is readable in any destructor.
    #[allow(clippy::missing_const_for_thread_local)] // loom's macro takes no `const {}`
    static THREAD_MARK: usize = NEXT_MARK.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
}

/// The calling thread's mark ([`Stage::eq_runner`]): non-zero, and never
/// the mark of another thread, alive or exited (the count would wrap after
/// 2^64 thread starts, 2^32 on 32-bit targets).
///
/// Not an address: an exited thread's thread-local address comes back for
/// a new thread, and a stale read of a word naming the old one would then
/// name the new one (Miri found exactly that false "re-entrant `Eq`" panic
/// in a stress test). Nor the stage's address in a thread-local: a stage
/// whose resource is a stage shares its address, and one word per thread
/// cannot hold a chain of lookups through several stages (review 16).
fn thread_mark() -> usize {
    THREAD_MARK.try_with(|mark| *mark).unwrap_or(0)
}

// Wakes on behalf of someone other than the waker's owner (a hand-off, a
// forwarded promotion, routing by a head) go through `wake_quietly`: the
// waker's panic (and its payload's) is caught and dropped there, so that it
// cannot unwind through a caller holding a message it is returning, nor
// abort a thread already unwinding (rule 3 of `sync_core::unwind`). The
// wake's state change was made under the lock before.
pub(crate) use sync_core::unwind::wake_quietly;

/// A message taken out of the head's own mailbox and not yet returned to
/// its caller: should user code panic in between, dropping the guard puts
/// the message back at the front of that mailbox instead of losing it in
/// the unwind. The head's ticket is borrowed by the running `recv`/`serve`
/// meanwhile, so its slot stays registered.
pub(crate) struct PutBack<'a, T: Hash + Eq, R, M> {
    stage: &'a Stage<T, R, M>,
    slot: SlotId,
    message: Option<M>,
}

impl<'a, T: Hash + Eq, R, M> PutBack<'a, T, R, M> {
    fn new(stage: &'a Stage<T, R, M>, slot: SlotId, message: M) -> Self {
        Self {
            stage,
            slot,
            message: Some(message),
        }
    }

    /// The message, for the caller: nothing is put back.
    fn disarm(mut self) -> M {
        self.message
            .take()
            .unwrap_or_else(|| unreachable!("a PutBack is disarmed once"))
    }
}

impl<T: Hash + Eq, R, M> Drop for PutBack<'_, T, R, M> {
    fn drop(&mut self) {
        if let Some(m) = self.message.take() {
            self.stage
                .lock()
                .table
                .slot_mut(self.slot)
                .inbox
                .push_front(m);
        }
    }
}

/// Gives a blocking wait up if `enter` unwinds while queued.
struct CancelOnUnwind<'a, T: Hash + Eq, R, M> {
    stage: &'a Stage<T, R, M>,
    slot: SlotId,
}

impl<T: Hash + Eq, R, M> Drop for CancelOnUnwind<'_, T, R, M> {
    fn drop(&mut self) {
        self.stage.cancel_wait(self.slot);
    }
}

/// Who heads the stage.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Headship {
    Free,
    Held {
        slot: Option<SlotId>,
        thread: ThreadId,
    },
    Promised(SlotId),
}

pub(crate) struct State<T, M> {
    pub(crate) table: Table<T, M>,
    pub(crate) headship: Headship,
    pub(crate) closed: bool,
    pub(crate) counters: Counters,
    /// On a stage that promotes when readable: of the recent ends of
    /// threads' waits (a promotion, a notification), the share, out of
    /// [`SHARE_ONE`], of promotions made with nothing to read, which
    /// arming pays for. Followers wait where the resource can wake them
    /// only while that share is above [`ARM_WORTH`]: an epoll wait and an
    /// eventfd write cost more than a futex's (about 1 µs per wake-up
    /// here), which every wait pays, while arming saves a whole switch but
    /// only for those promotions. Saturated traffic ends waits with
    /// deliveries (the share falls), owners taking turns end them with
    /// promotions to an owner whose item is still on its way (it rises).
    pub(crate) arm_share: u16,
}

/// [`State::arm_share`]'s one (every recent wait ended in such a
/// promotion), and the share from which waiting where the resource can
/// wake pays (measured: below it, saturated traffic lost 5-13% to the
/// dearer wake-ups).
const SHARE_ONE: u16 = 1024;
const ARM_WORTH: u16 = SHARE_ONE / 8;

impl<T, M> State<T, M> {
    /// Moves `arm_share` a sixteenth of the way towards this wait's end:
    /// a promotion with nothing to read (`true`) or anything else.
    fn note_wait_end(&mut self, armable: bool) {
        let (share, target) = (
            i32::from(self.arm_share),
            if armable { i32::from(SHARE_ONE) } else { 0 },
        );
        self.arm_share = (share + (target - share) / 16) as u16;
    }

    /// Whether a thread about to wait should use a parker that the
    /// resource can wake (on a stage that promotes when readable).
    pub(crate) fn arming_pays(&self) -> bool {
        self.arm_share > ARM_WORTH
    }
}

impl<T: Hash + Eq, M> State<T, M> {
    /// Whether `Stage::begin` (or a resolved wait) would end an
    /// entry at once, without consuming anything. Keep it in step with
    /// `begin`.
    pub(crate) fn ready_now(&self, slot: SlotId) -> bool {
        let s = self.table.slot(slot);
        matches!(s.wait, Wait::Resolved(_))
            || self.closed
            || s.pending
            || !s.inbox.is_empty()
            || self.headship == Headship::Free
    }

    /// Ends the current headship and promotes the longest-waiting follower.
    /// Returns the waker to wake after the lock: exactly one per hand-off.
    /// On a stage that promotes when readable (`gate`), a follower whose
    /// parker can watch the resource is not woken: the resource is armed in
    /// its watch, and the kernel wakes it (see `gate.rs`).
    pub(crate) fn hand_off(&mut self, gate: Gate) -> Option<Waker> {
        if self.closed {
            self.headship = Headship::Free;
            return None;
        }
        match self.table.first_queued() {
            Some(next) => {
                self.headship = Headship::Promised(next);
                self.counters.promotions += 1;
                let (waker, watch) = self.table.dequeue_watched(next, Some(Resolution::Head));
                // One `poll`, on a stage that promotes when readable only.
                let asleep = gate.would_sleep();
                if gate.is_set() {
                    self.note_wait_end(asleep);
                }
                match watch {
                    Some(watch) if asleep && gate.arm(&watch) => {
                        self.counters.promotions_when_readable += 1;
                        let s = self.table.slot_mut(next);
                        s.asleep = Some(waker);
                        s.armed = Some(watch);
                        None
                    }
                    _ => Some(waker),
                }
            }
            None => {
                self.headship = Headship::Free;
                None
            }
        }
    }

    /// Takes back a promotion that `slot` will not use (notified first,
    /// cancelled, or its ticket dropped) and hands it on.
    pub(crate) fn forward(&mut self, slot: SlotId, gate: Gate) -> Option<Waker> {
        debug_assert_eq!(self.headship, Headship::Promised(slot));
        self.counters.forwarded_promotions += 1;
        self.hand_off(gate)
    }

    /// Forgets that `slot`'s promotion waits for the resource: drops the
    /// kept waker (its own parker's, no foreign code) and disarms the
    /// resource. For the slot's owner, or whoever ends its wait for it.
    ///
    /// `heads`: the owner heads now. Then a resource that fired (and so is
    /// disarmed already) is left in its set, to be removed off the way to
    /// the read: when it hands the headship on, or at its next wait
    /// (`ready::tidy_thread`). Otherwise it goes at once.
    pub(crate) fn unarm(&mut self, slot: SlotId, gate: Gate, heads: bool) {
        let s = self.table.slot_mut(slot);
        s.asleep = None;
        if let Some(watch) = s.armed.take() {
            gate.disarm(&watch, heads);
        }
    }
}

/// Many waiters, one reader: a resource that one thread at a time heads,
/// and keyed wake-ups for the others.
///
/// `T` is the token a waiter waits for (a peer's address, say), `R` the
/// resource (a socket), `M` the message type of the built-in mailbox (`()`
/// for a stage without one; see [`Stage::with_mailbox`]).
///
/// `Send + Sync` when `T: Send`, `M: Send` and `R: Send + Sync`.
pub struct Stage<T, R, M = ()> {
    resource: R,
    /// The resource's descriptor, on a stage that promotes when readable
    /// ([`Stage::promote_when_readable`]).
    pub(crate) fd_of: FdOf,
    hasher: RandomState,
    state: Mutex<State<T, M>>,
    /// The mark ([`thread_mark`]) of the thread running a token's `Eq`
    /// under this stage's lock, 0 when none: that thread calling back into
    /// *this* stage (also through other stages' lookups) would deadlock on
    /// the lock, and panics instead (`lock`). Only the lock holder writes
    /// it. A thread reading it without the lock may see another thread's
    /// stale mark, never equal to its own; its own last write it always
    /// sees (coherence): relaxed suffices.
    eq_runner: std::sync::atomic::AtomicUsize,
    /// Whether followers' spins before parking have lately paid off (one
    /// history for the stage: see `wait_queued`).
    follower_spin: SpinPolicy,
    /// Followers spin only while the stage has at most this many tickets
    /// (see `spin_cap`).
    spin_tickets: usize,
}

/// A token's registration with a [`Stage`]: the persistent identity with
/// which a thread (or task) enters the stage and is notified.
///
/// Created by [`Stage::ticket`], kept across loops (registering once costs one
/// lookup and, the first time a slot is needed, one allocation), and
/// unregistered when dropped. Unread mailbox messages and a pending
/// notification are dropped with it.
pub struct Ticket<'s, T: Hash + Eq, R, M = ()> {
    pub(crate) stage: &'s Stage<T, R, M>,
    pub(crate) slot: SlotId,
}

impl<T: Hash + Eq, R> Stage<T, R> {
    /// A stage around `resource`, with no mailbox. Allocates nothing until
    /// the first ticket (except that the first stage made in a process
    /// asks once how many CPUs the process may use:
    /// `std::thread::available_parallelism`, which reads cgroup files).
    pub fn new(resource: R) -> Self {
        Self::with_mailbox(resource)
    }
}

impl<T: Hash + Eq, R, M> Stage<T, R, M> {
    /// A stage whose tickets each have a mailbox of `M`s: the head
    /// [`deliver`](HeadGuard::deliver)s what it reads (buffer and notify in
    /// one step), and [`recv`](Stage::recv) hides the whole loop.
    pub fn with_mailbox(resource: R) -> Self {
        Self {
            resource,
            fd_of: None,
            follower_spin: SpinPolicy::parking(),
            spin_tickets: spin_cap(cpus()),
            hasher: RandomState::new(),
            state: Mutex::new(State {
                table: Table::new(),
                headship: Headship::Free,
                closed: false,
                counters: Counters::default(),
                arm_share: SHARE_ONE,
            }),
            eq_runner: std::sync::atomic::AtomicUsize::new(0),
        }
    }

    /// For tests of the follower spin: lets followers spin (while the
    /// stage's history says it pays) however many tickets the stage has.
    /// By default they never spin once the stage has more tickets than
    /// the machine has CPUs, plus one (more owners than CPUs to run them:
    /// a spinning follower holds a CPU that the threads it waits for
    /// need), so on a small test machine the spin would go untested.
    #[doc(hidden)]
    pub fn spin_regardless_of_cpus(mut self) -> Self {
        self.spin_tickets = usize::MAX;
        self
    }

    /// Registers `token`. Fails with [`TicketError::Taken`] if a live ticket
    /// already has it.
    ///
    /// Does not block (one short lock); allocates only when every slot so
    /// far is in use.
    pub fn ticket(&self, token: T) -> Result<Ticket<'_, T, R, M>, TicketError> {
        let hash = self.hasher.hash_one(&token);
        let mut st = self.lock();
        if self.find(&st, &token, hash).is_some() {
            drop(st);
            drop(token);
            return Err(TicketError::Taken);
        }
        let slot = st.table.insert(token, hash);
        Ok(Ticket { stage: self, slot })
    }

    /// Waits on the stage until one of: this ticket is notified
    /// ([`Entry::Notified`]), it heads the stage ([`Entry::Head`]), `timeout`
    /// passes ([`Entry::TimedOut`]) or the stage is closed
    /// ([`Entry::Closed`]). `None` waits without a time limit.
    ///
    /// Returns at once with `Closed` on a closed stage, with `Notified` if a
    /// notification arrived while the ticket was not waiting, and with
    /// `Head` if nobody heads. Otherwise the thread waits, and is woken
    /// exactly once, by whoever ends its wait. It parks at once unless
    /// followers' short spins before parking have lately paid off on this
    /// stage, and never spins on a stage with more tickets than the
    /// machine has CPUs, plus one, not counting idle followers (see the
    /// crate docs, "Costs").
    ///
    /// Does not allocate (the thread's cached parker wakes it).
    ///
    /// # Panics
    ///
    /// If `ticket` belongs to another stage, or if this thread heads the
    /// stage (it would wait for itself).
    pub fn enter(
        &self,
        ticket: &mut Ticket<'_, T, R, M>,
        timeout: Option<Duration>,
    ) -> Entry<'_, T, R, M> {
        self.enter_for_mail(ticket, timeout, false).0
    }

    /// `enter`; with `take_mail`, an entry that ends `Notified` also takes
    /// the ticket's next message under the same lock (one lock round trip
    /// per message for `serve`'s followers instead of three).
    pub(crate) fn enter_for_mail(
        &self,
        ticket: &mut Ticket<'_, T, R, M>,
        timeout: Option<Duration>,
        take_mail: bool,
    ) -> (Entry<'_, T, R, M>, Option<M>) {
        self.check_ticket(ticket);
        let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
        let me = thread::current().id();
        let slot = ticket.slot;
        let mut st = self.lock();
        if let Headship::Held { thread, .. } = st.headship {
            if thread == me {
                drop(st);
                panic!(
                    "exit_left: `enter` called on the thread that heads this stage; it would wait \
                     for itself. Drop the `HeadGuard` first."
                );
            }
        }
        let mut stale = None;
        if let Some(entry) = self.begin(&mut st, slot, me, &mut stale) {
            let done = Self::with_mail(&mut st, slot, entry, take_mail);
            drop(st);
            drop(stale);
            return done;
        }
        #[cfg(target_os = "linux")]
        if self.fd_of.is_some() {
            // Nobody can arm this thread's idle parkers now (it is not queued).
            crate::ready::tidy_thread();
            if st.arming_pays() {
                return crate::ready::with_thread_ready_parker(|ready| match ready {
                    Some(parker) => self.wait_queued(st, slot, deadline, take_mail, me, parker),
                    None => sync_core::with_thread_parker(|parker| {
                        self.wait_queued(st, slot, deadline, take_mail, me, parker)
                    }),
                });
            }
        }
        sync_core::with_thread_parker(|parker| {
            self.wait_queued(st, slot, deadline, take_mail, me, parker)
        })
    }

    /// `enter`'s wait, once nothing ended it at once: queues `slot` and
    /// sleeps on `parker` until its wait is resolved or `deadline` passes.
    fn wait_queued(
        &self,
        mut st: MutexGuard<'_, State<T, M>>,
        slot: SlotId,
        deadline: Option<Instant>,
        take_mail: bool,
        me: ThreadId,
        parker: &impl Sleep,
    ) -> (Entry<'_, T, R, M>, Option<M>) {
        let stale = st
            .table
            .wait_with(slot, parker.waker(), false, parker.watch());
        let may_spin = st.table.registered() - st.table.idle_followers() <= self.spin_tickets;
        drop(st);
        // From here until an outcome is taken, an unwind (a panicking
        // drop of a leaked future's waker) gives the wait up cleanly.
        let waiting = CancelOnUnwind { stage: self, slot };
        drop(stale);
        // A spin, when this stage's recent waits say one pays off: with two
        // owners under saturated traffic, say, the next item often comes
        // within microseconds, and a follower still spinning then costs its
        // notifier no system call and itself no switch (measured: 11x the
        // throughput there on a quiet machine). Followers usually wait far
        // longer; the policy then has them park at once, bar rare probes.
        // Never on a stage with more tickets than CPUs, plus one: more
        // owners than CPUs to run them (`spin_cap`). Idle followers (their
        // tokens got nothing for two rounds of items, see `table.rs`) sleep
        // until their peers speak again and do not count: two busy owners
        // beside six idle tickets spin as two alone do.
        if may_spin {
            let hints = SpinHints {
                time_left: deadline.map(|d| d.saturating_duration_since(Instant::now())),
                ..SpinHints::default()
            };
            parker.spin(&self.follower_spin, hints);
        }
        let entry = loop {
            let woken = parker.sleep(deadline);
            let mut st = self.lock();
            match st.table.slot(slot).wait {
                Wait::Resolved(r) => {
                    let entry = self.finish(&mut st, slot, r, me);
                    break Self::with_mail(&mut st, slot, entry, take_mail);
                }
                Wait::Queued { .. } if !woken => {
                    let waker = st.table.dequeue(slot, None);
                    st.counters.timeouts += 1;
                    drop(st);
                    core::mem::forget(waiting);
                    // Our own parker's waker: dropping it runs no
                    // foreign code.
                    drop(waker);
                    return (Entry::TimedOut, None);
                }
                // A stale unpark of this thread's parker: wait on.
                Wait::Queued { .. } => {}
                Wait::Idle => unreachable!("a queued waiter found idle"),
            }
        };
        core::mem::forget(waiting);
        entry
    }

    /// Notifies `token`'s ticket from any thread: wakes it if it waits,
    /// otherwise records the notification for its next `enter`.
    /// Notifications coalesce like `unpark`s: several before the owner
    /// looks are one `Notified`.
    ///
    /// Does not block (one short lock); allocates nothing; at most one
    /// wake-up, or two when it ends a promotion that sleeps until the
    /// resource is readable ([`promote_when_readable`](Stage::promote_when_readable))
    /// and the headship goes on to a follower that must be woken (a task,
    /// or the resource is readable by then).
    pub fn notify(&self, token: &T) -> NotifyOutcome {
        self.notify_inner(token, None, false)
            .unwrap_or(NotifyOutcome::NoSuchToken)
    }

    /// Closes the stage: every waiter returns [`Entry::Closed`], and so does
    /// every later `enter`. A [`HeadGuard`] that exists keeps its access to
    /// the resource until it is dropped; nobody is promoted after it.
    /// Mailboxes keep their messages ([`try_recv`](Stage::try_recv)).
    ///
    /// Idempotent. Wakes every waiter once; allocates a list of their wakers.
    pub fn close(&self) {
        let mut st = self.lock();
        st.closed = true;
        let mut wakers: Vec<Waker> = Vec::with_capacity(st.table.queued());
        while let Some(id) = st.table.first_queued() {
            wakers.push(st.table.dequeue(id, Some(Resolution::Closed)));
        }
        if let Headship::Promised(id) = st.headship {
            let s = st.table.slot_mut(id);
            s.wait = Wait::Resolved(Resolution::Closed);
            // Promoted but asleep until the resource is readable: wake it.
            wakers.extend(s.asleep.take());
            st.headship = Headship::Free;
        }
        drop(st);
        // Every waiter is woken even if a waker panics; the first panic is
        // raised again once all of them have been, the others' payloads are
        // dropped quietly (a payload's own drop may panic too).
        let mut panics = FirstPanic::new();
        for w in wakers {
            panics.catch(|| w.wake());
        }
        panics.resume();
    }

    /// Whether [`close`](Self::close) was called.
    pub fn is_closed(&self) -> bool {
        self.lock().closed
    }

    /// The resource, for whatever may be done with it while someone else
    /// heads (with a socket: sending). Reading it is the head's job: see
    /// [`HeadGuard::resource`].
    pub fn resource(&self) -> &R
    where
        R: Sync,
    {
        &self.resource
    }

    /// A snapshot of the stage's counters.
    pub fn counters(&self) -> Counters {
        self.lock().counters
    }

    /// How many tickets are registered.
    pub fn tickets(&self) -> usize {
        self.lock().table.registered()
    }

    /// How many tickets wait as followers right now.
    pub fn waiting(&self) -> usize {
        self.lock().table.queued()
    }

    /// Whether someone heads the stage (or has been promoted and not yet
    /// run).
    pub fn is_headed(&self) -> bool {
        self.lock().headship != Headship::Free
    }

    // ---- shared by enter, enter_async, HeadGuard and the mailbox ----

    pub(crate) fn lock(&self) -> MutexGuard<'_, State<T, M>> {
        // The thread-local is read only while some thread runs an `Eq`
        // here (rarely): not on every lock.
        let runner = self.eq_runner.load(std::sync::atomic::Ordering::Relaxed);
        if runner != 0 && runner == thread_mark() {
            panic!(
                "exit_left: a token's `Eq` called back into the stage while the stage was looking \
                 the token up; `Eq` runs under the stage's lock and must not use the stage"
            );
        }
        // Nothing that can panic runs while the state is half-updated (user
        // code under the lock is limited to `Eq` in lookups that change
        // nothing), so a poisoned lock still guards a consistent state.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn resource_unchecked(&self) -> &R {
        &self.resource
    }

    pub(crate) fn check_ticket(&self, ticket: &Ticket<'_, T, R, M>) {
        assert!(
            std::ptr::eq(ticket.stage, self),
            "exit_left: a ticket from another stage was passed to this stage"
        );
    }

    /// The outcomes of an `enter` that need no waiting, in order: closed,
    /// a recorded notification (or mail), a free headship. A slot that a
    /// leaked future left queued leaves the queue when it takes a free
    /// headship (free with a queue: `serve` lends it): `stale` gets that
    /// future's waker, for the caller to drop after the lock.
    pub(crate) fn begin(
        &self,
        st: &mut State<T, M>,
        slot: SlotId,
        me: ThreadId,
        stale: &mut Option<Waker>,
    ) -> Option<Entry<'_, T, R, M>> {
        if let Headship::Held { slot: Some(h), .. } = st.headship {
            assert!(
                h != slot,
                "exit_left: `enter` with the ticket that heads this stage; drop the `HeadGuard` first"
            );
        }
        // A wait that a leaked (`mem::forget`) future left resolved: this
        // entry takes its outcome over.
        if let Wait::Resolved(r) = st.table.slot(slot).wait {
            return Some(self.finish(st, slot, r, me));
        }
        if st.closed {
            return Some(Entry::Closed);
        }
        let s = st.table.slot_mut(slot);
        if s.pending || !s.inbox.is_empty() {
            s.pending = false;
            return Some(Entry::Notified);
        }
        if st.headship == Headship::Free {
            // A head is never also a follower (its guard's hand-off would
            // promote itself).
            if matches!(st.table.slot(slot).wait, Wait::Queued { .. }) {
                *stale = Some(st.table.dequeue(slot, None));
            }
            st.headship = Headship::Held {
                slot: Some(slot),
                thread: me,
            };
            return Some(Entry::Head(HeadGuard::new(self)));
        }
        None
    }

    /// Ends `slot`'s wait without taking its outcome, because its waiter
    /// gave up (a dropped future, an unwinding `enter`): a notification it
    /// received is recorded again, a promotion is handed on.
    pub(crate) fn cancel_wait(&self, slot: SlotId) {
        let mut st = self.lock();
        let mut stale = None;
        let mut wake = None;
        match st.table.slot(slot).wait {
            Wait::Queued { .. } => stale = Some(st.table.dequeue(slot, None)),
            Wait::Resolved(Resolution::Notified { bare }) => {
                let s = st.table.slot_mut(slot);
                s.wait = Wait::Idle;
                // Delivered mail stays in the inbox and makes the next entry
                // `Notified` by itself; only a bare notification needs the
                // flag (setting it for mail would notify twice for one
                // delivery).
                s.pending |= bare;
            }
            Wait::Resolved(Resolution::Head) => {
                st.table.slot_mut(slot).wait = Wait::Idle;
                wake = st.forward(slot, self.gate());
            }
            Wait::Resolved(Resolution::Closed) | Wait::Idle => {
                st.table.slot_mut(slot).wait = Wait::Idle;
            }
        }
        st.unarm(slot, self.gate(), false);
        drop(st);
        // The promotion first: it must arrive even if the stale waker's
        // drop panics.
        if let Some(w) = wake {
            wake_quietly(w);
        }
        drop(stale);
    }

    /// Looks `token` up. Its `Eq` runs under the lock: one that calls back
    /// into the stage panics with a message (see `lock`) instead of
    /// deadlocking on the stage's own mutex.
    fn find(&self, st: &State<T, M>, token: &T, hash: u64) -> Option<SlotId> {
        /// Clears the mark, also when `Eq` panics.
        struct Reset<'a>(&'a std::sync::atomic::AtomicUsize);
        impl Drop for Reset<'_> {
            fn drop(&mut self) {
                self.0.store(0, std::sync::atomic::Ordering::Relaxed);
            }
        }
        self.eq_runner
            .store(thread_mark(), std::sync::atomic::Ordering::Relaxed);
        let _reset = Reset(&self.eq_runner);
        st.table.find(token, hash)
    }

    /// Turns a resolution, read under the lock, into the `Entry` returned.
    /// For `enter_for_mail`: a `Notified` entry with the slot's next
    /// message, if asked for and there is one.
    fn with_mail<'s>(
        st: &mut State<T, M>,
        slot: SlotId,
        entry: Entry<'s, T, R, M>,
        take_mail: bool,
    ) -> (Entry<'s, T, R, M>, Option<M>) {
        let mail = match entry {
            Entry::Notified if take_mail => st.table.slot_mut(slot).inbox.pop_front(),
            _ => None,
        };
        (entry, mail)
    }

    pub(crate) fn finish(
        &self,
        st: &mut State<T, M>,
        slot: SlotId,
        r: Resolution,
        me: ThreadId,
    ) -> Entry<'_, T, R, M> {
        st.table.slot_mut(slot).wait = Wait::Idle;
        st.unarm(slot, self.gate(), r == Resolution::Head);
        match r {
            Resolution::Notified { .. } => Entry::Notified,
            Resolution::Closed => Entry::Closed,
            Resolution::Head => {
                debug_assert_eq!(st.headship, Headship::Promised(slot));
                st.headship = Headship::Held {
                    slot: Some(slot),
                    thread: me,
                };
                Entry::Head(HeadGuard::new(self))
            }
        }
    }

    /// `notify` and `deliver`. With `mail`, the message goes into the
    /// token's inbox first; it comes back in `Err` if there is no such
    /// token. `from_head` reports the head's own token as such.
    pub(crate) fn notify_inner(
        &self,
        token: &T,
        mail: Option<M>,
        from_head: bool,
    ) -> Result<NotifyOutcome, Option<M>> {
        let hash = self.hasher.hash_one(token);
        let mut st = self.lock();
        let Some(id) = self.find(&st, token, hash) else {
            st.counters.no_such_token += 1;
            drop(st);
            return Err(mail);
        };
        let (outcome, wake, asleep) = self.notify_locked(&mut st, id, mail, from_head);
        drop(st);
        if let Some(w) = asleep {
            // The notified follower's own parker: no foreign code.
            w.wake();
        }
        if let Some(w) = wake {
            // The notification is recorded; the waker's panic reaches the
            // caller, unless the caller is unwinding (rule 2 and 3 of
            // `sync_core::unwind`).
            sync_core::unwind::wake(w);
        }
        Ok(outcome)
    }

    /// `recv`'s and `serve`'s head routing one item it read, under one
    /// lock: delivers it (or counts it as unrouted), and returns what the
    /// head needs next ([`Routed`]). Takes the token, so that its drop (user
    /// code) runs here, while the own message is still guarded.
    pub(crate) fn route_as_head(&self, token: T, message: M) -> Routed<M> {
        let hash = self.hasher.hash_one(&token);
        let mut st = self.lock();
        let (wake, unrouted) = match self.find(&st, &token, hash) {
            Some(id) => {
                let (_, wake, asleep) = self.notify_locked(&mut st, id, Some(message), true);
                // Nobody is promoted (and so asleep) while a head routes.
                debug_assert!(asleep.is_none());
                (wake.or(asleep), None)
            }
            None => {
                st.counters.no_such_token += 1;
                st.counters.unrouted += 1;
                (None, Some(message))
            }
        };
        let (own, head_has_ticket) = match st.headship {
            Headship::Held { slot: Some(id), .. } => (
                st.table
                    .slot_mut(id)
                    .inbox
                    .pop_front()
                    .map(|m| PutBack::new(self, id, m)),
                true,
            ),
            _ => (None, false),
        };
        // Tickets neither queued, nor the head's, nor the one being woken:
        // their threads may be running (or idle outside the stage).
        let others_out = st
            .table
            .registered()
            .saturating_sub(st.table.queued())
            .saturating_sub(usize::from(head_has_ticket))
            .saturating_sub(usize::from(wake.is_some()));
        let closed = st.closed;
        drop(st);
        // User code after the lock. The own message is out of its mailbox
        // meanwhile, and the owner is out of the FIFO with its wake-up
        // still to come: should a `Drop` below panic, `PutBack` returns the
        // message to the front of the mailbox and `OwedWake` makes the
        // wake-up, instead of losing either in the unwind.
        let owed = OwedWake(wake);
        drop(unrouted);
        drop(token);
        Routed {
            own: own.map(PutBack::disarm),
            closed,
            wake: owed.take(),
            others_out: others_out > 0,
        }
    }

    /// A notification (with `mail`: a delivery) for the registered slot
    /// `id`, under the lock. Returns what it did and the wakers to wake
    /// after the lock: the one it owes (the woken follower's, or a
    /// forwarded promotion's), and that of a follower whose promotion slept
    /// until the resource is readable (`gate.rs`) and that it ends.
    fn notify_locked(
        &self,
        st: &mut State<T, M>,
        id: SlotId,
        mail: Option<M>,
        from_head: bool,
    ) -> (NotifyOutcome, Option<Waker>, Option<Waker>) {
        let is_mail = mail.is_some();
        st.table.note_item();
        if let Some(m) = mail {
            st.table.slot_mut(id).inbox.push_back(m);
        }
        let mut wake = None;
        let mut asleep = None;
        let outcome = if matches!(st.headship, Headship::Held { slot: Some(h), .. } if h == id) {
            st.table.slot_mut(id).pending |= !is_mail;
            if from_head {
                NotifyOutcome::OwnToken
            } else {
                NotifyOutcome::Recorded
            }
        } else {
            match st.table.slot(id).wait {
                Wait::Idle | Wait::Resolved(Resolution::Closed) => {
                    st.table.slot_mut(id).pending |= !is_mail;
                    NotifyOutcome::Recorded
                }
                Wait::Queued { task, .. } => {
                    let resolution = Resolution::Notified { bare: !is_mail };
                    wake = Some(st.table.dequeue(id, Some(resolution)));
                    if !task && self.fd_of.is_some() {
                        st.note_wait_end(false);
                    }
                    NotifyOutcome::Woken
                }
                // Already being woken for a notification: coalesced.
                Wait::Resolved(Resolution::Notified { bare }) => {
                    let resolution = Resolution::Notified {
                        bare: bare || !is_mail,
                    };
                    st.table.slot_mut(id).wait = Wait::Resolved(resolution);
                    NotifyOutcome::Woken
                }
                // Promoted but not yet running: the notification wins and
                // the headship goes on to the next follower. The thread was
                // already woken for the promotion, unless it sleeps until
                // the resource is readable: then it is woken now.
                Wait::Resolved(Resolution::Head) => {
                    let resolution = Resolution::Notified { bare: !is_mail };
                    let s = st.table.slot_mut(id);
                    s.wait = Wait::Resolved(resolution);
                    asleep = s.asleep.take();
                    wake = st.forward(id, self.gate());
                    NotifyOutcome::Woken
                }
            }
        };
        st.counters.count(outcome);
        (outcome, wake, asleep)
    }
}

/// A wake-up owed to a thread already taken out of the FIFO: made
/// (quietly) if the guard is dropped without being taken, so that a panic
/// of user code between the lock and the caller's wake-up (a token's or an
/// unrouted item's `Drop`) cannot lose it.
struct OwedWake(Option<Waker>);

impl OwedWake {
    fn take(mut self) -> Option<Waker> {
        self.0.take()
    }
}

impl Drop for OwedWake {
    fn drop(&mut self) {
        if let Some(w) = self.0.take() {
            wake_quietly(w);
        }
    }
}

/// What a head's routing of one item leaves it with
/// ([`Stage::route_as_head`]).
pub(crate) struct Routed<M> {
    /// The head's own next message (the item itself, if it was the head's).
    pub(crate) own: Option<M>,
    /// Whether the stage is closed.
    pub(crate) closed: bool,
    /// The owner's wake-up, if it needs one, for the caller to make (after
    /// lending the headship, in `serve`).
    pub(crate) wake: Option<Waker>,
    /// Whether some other ticket is outside the FIFO (not the head's, not
    /// the one being woken): a thread that may enter while the head wakes
    /// the owner. With none, lending the headship for the wake-up could
    /// only hand the reading to the owner being woken, which costs a switch
    /// and buys nothing.
    pub(crate) others_out: bool,
}

impl<T: Hash + Eq, R, M> Drop for Ticket<'_, T, R, M> {
    fn drop(&mut self) {
        let mut st = self.stage.lock();
        let mut wake = None;
        let mut stale = None;
        match st.table.slot(self.slot).wait {
            // Only reachable if a waiting future was leaked (`mem::forget`),
            // which ends its borrow of the ticket.
            Wait::Queued { .. } => stale = Some(st.table.dequeue(self.slot, None)),
            Wait::Resolved(Resolution::Head) => wake = st.forward(self.slot, self.stage.gate()),
            Wait::Idle | Wait::Resolved(_) => {}
        }
        st.unarm(self.slot, self.stage.gate(), false);
        if let Headship::Held { slot, .. } = &mut st.headship {
            if *slot == Some(self.slot) {
                *slot = None;
            }
        }
        let (token, inbox) = st.table.remove(self.slot);
        drop(st);
        // User code after the lock, the forwarded promotion's wake first:
        // it must arrive even if a `Drop` below panics.
        if let Some(w) = wake {
            wake_quietly(w);
        }
        drop(stale);
        drop(token);
        drop(inbox);
    }
}

impl<T: Hash + Eq, R, M> core::fmt::Debug for Ticket<'_, T, R, M> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Ticket")
            .field("slot", &self.slot)
            .finish_non_exhaustive()
    }
}

impl<T: Hash + Eq, R, M> core::fmt::Debug for Stage<T, R, M> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let st = self.lock();
        f.debug_struct("Stage")
            .field("tickets", &st.table.registered())
            .field("waiting", &st.table.queued())
            .field("headship", &st.headship)
            .field("closed", &st.closed)
            .finish_non_exhaustive()
    }
}

/// What `enter` sleeps on: a thread parker, or (on a stage that promotes
/// when readable) one the resource can wake (`gate.rs`).
trait Sleep {
    fn waker(&self) -> Waker;
    fn watch(&self) -> Option<Watch>;
    /// Spins, as `policy` says, until a wake-up is pending (then `sleep`
    /// returns at once, consuming it).
    fn spin(&self, policy: &SpinPolicy, hints: SpinHints);
    /// `false` only if `deadline` passed.
    fn sleep(&self, deadline: Option<Instant>) -> bool;
}

impl Sleep for sync_core::Parker {
    fn waker(&self) -> Waker {
        sync_core::Parker::waker(self)
    }
    fn watch(&self) -> Option<Watch> {
        None
    }
    fn spin(&self, policy: &SpinPolicy, hints: SpinHints) {
        policy.spin_with(hints, || self.is_notified());
    }
    fn sleep(&self, deadline: Option<Instant>) -> bool {
        match deadline {
            None => {
                self.park();
                true
            }
            Some(d) => self.park_deadline(d),
        }
    }
}

#[cfg(target_os = "linux")]
impl Sleep for crate::ready::ReadyParker {
    fn waker(&self) -> Waker {
        crate::ready::ReadyParker::waker(self)
    }
    fn watch(&self) -> Option<Watch> {
        Some(crate::ready::ReadyParker::watch(self))
    }
    /// A promotion that waits until the resource is readable arms the
    /// resource in this parker's set: the spin ends there too (the park
    /// then returns when the resource is readable), not only on a token.
    ///
    /// Such a spin is scored as a hit, although the follower then sleeps
    /// in `epoll_wait` anyway. Measured, not an oversight: scored as a miss
    /// (a scratch `SpinCheck::GiveUp` in sync-core), ours-blocking's quiet
    /// all-at-once N = 2 throughput fell about 7% (ours / broadcast 1.27
    /// against 1.37, three sets of 30 interleaved rounds, December 2026):
    /// the credit those hits keep is what lets the follower's next wait,
    /// for its own mail, spin instead of park. Leaving the history alone
    /// instead measured the same as scoring a hit quiet and no better loaded.
    fn spin(&self, policy: &SpinPolicy, hints: SpinHints) {
        policy.spin_with(hints, || self.is_notified_or_armed());
    }
    fn sleep(&self, deadline: Option<Instant>) -> bool {
        self.park(deadline)
    }
}

/// How many tickets a stage may have for its followers' spins to pay off,
/// on a machine with `cpus` CPUs: as many as let every owner but one (the
/// head, typically blocked in its read) have a CPU of its own.
/// With more owners than that, the item a follower waits for comes only
/// after other owners and their peers' senders have had a CPU, and a
/// spinning follower holds one of the CPUs they need. The spin's own
/// history (`SpinPolicy`) cannot see this: enough spins still end fast to
/// keep its credit. Measured on loopback UDP, 2 vCPUs, saturated (same
/// process, 15-30 rounds against spinning as before): 8 owners 1.04x the
/// throughput with two busy threads (five runs, 1.03-1.05x), quiet
/// 1.00-1.01x; 32 owners 1.04x and 1.02x; with 2 owners the spin stays,
/// where it is 11x (quiet) and 1.34x (loaded) the throughput of parking at
/// once. The caller does not count idle followers (`table.rs`).
fn spin_cap(cpus: usize) -> usize {
    cpus.saturating_add(1)
}

/// The CPUs this process may run on, read once (`available_parallelism`
/// makes system calls and reads cgroup files); 1 if unknown.
fn cpus() -> usize {
    static CPUS: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *CPUS.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state() -> State<u32, ()> {
        State {
            table: Table::new(),
            headship: Headship::Free,
            closed: false,
            counters: Counters::default(),
            arm_share: SHARE_ONE,
        }
    }

    #[test]
    fn followers_spin_only_while_every_owner_but_the_head_has_a_cpu() {
        // Two CPUs: two owners ping-ponging (the case the spin is for), or
        // a head and two followers, spin; 4, 8 or 32 owners do not.
        assert_eq!(spin_cap(2), 3);
        // Eight owners on a machine with eight CPUs spin as before.
        assert_eq!(spin_cap(8), 9);
        assert_eq!(spin_cap(usize::MAX), usize::MAX, "no overflow");
        assert!(cpus() >= 1);
        let stage = Stage::<u8, ()>::new(());
        assert_eq!(stage.spin_tickets, spin_cap(cpus()));
        assert_eq!(stage.spin_regardless_of_cpus().spin_tickets, usize::MAX);
    }

    #[test]
    fn arming_pays_while_waits_end_in_promotions_with_nothing_to_read() {
        let mut st = state();
        assert!(st.arming_pays(), "a new stage starts out arming");
        // Saturated traffic: deliveries end the waits.
        for _ in 0..64 {
            st.note_wait_end(false);
        }
        assert!(!st.arming_pays());
        // One such promotion in twenty waits does not make it pay...
        for _ in 0..10 {
            for _ in 0..19 {
                st.note_wait_end(false);
            }
            st.note_wait_end(true);
            assert!(!st.arming_pays());
        }
        // ...owners taking turns (every wait a promotion) do, within three.
        for _ in 0..3 {
            st.note_wait_end(true);
        }
        assert!(st.arming_pays());
        for _ in 0..1000 {
            st.note_wait_end(true);
        }
        assert!(st.arm_share <= SHARE_ONE);
    }
}
