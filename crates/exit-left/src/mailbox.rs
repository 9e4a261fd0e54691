//! The mailbox: deliver = buffer + notify in one step, and `recv`, the loop
//! that reads and routes as head only as long as it pays.
//!
//! # Why `recv` keeps the headship
//!
//! A head that reads one item and hands the headship on at once makes every
//! item cost two wake-ups: the owner's, and the next head's. Measured with a
//! stand-in on two cores, that loses to a plain `Mutex<HashMap>` +
//! `Condvar::notify_all` design (0.55-0.73x its throughput). `recv` instead
//! keeps reading while what it reads belongs to others, delivering each item
//! to its owner's mailbox (one wake-up, for the owner), and gives the
//! headship up only when it has its own item, or at its deadline, or when
//! the stage closes. Write your own loop the same way if you use `enter`
//! directly.
//!
//! `serve` goes further for saturated traffic: a head handles its own
//! messages itself, between reads, so nobody waits for a promoted follower
//! to wake up before the resource is read again. While it handles one it
//! *lends* the headship: it frees it without waking anyone, so that a
//! thread already running (an owner back from its own message) can take
//! the reading over at once, and takes it back afterwards if nobody did.
//! (Unless every other ticket waits in the FIFO: then nobody could take a
//! lent headship, and the head hands it on to the longest waiter before it
//! handles its message, as `recv` does, if that waiter is not idle; see
//! `serve`.)
//! A head that never lent would read for as long as the traffic lasts: on
//! a busy machine that one CPU-bound thread is what the scheduler preempts,
//! for a whole time slice, with nobody reading meanwhile (measured with 8
//! owners on loopback UDP and two busy threads: p99 round trip 2.9-3.2 ms
//! and 54-57k datagrams/s without lending, 1.8 ms and 78k with it).

use crate::stage::{Stage, Ticket, wake_quietly};
use crate::{Entry, HeadGuard, NotifyOutcome, RecvError, Undelivered};
use core::ops::ControlFlow;
use std::hash::Hash;
use std::time::{Duration, Instant};

impl<T: Hash + Eq, R, M> Stage<T, R, M> {
    /// Puts `message` in `token`'s mailbox and notifies it, in one step,
    /// from any thread. Gives the message back if no ticket has that token.
    ///
    /// Does not block (one short lock); at most one wake-up; allocates only
    /// when the inbox grows.
    pub fn deliver(&self, token: &T, message: M) -> Result<NotifyOutcome, Undelivered<M>> {
        match self.notify_inner(token, Some(message), false) {
            Ok(outcome) => Ok(outcome),
            Err(message) => Err(Undelivered(message.expect("the message comes back"))),
        }
    }

    /// The next message in `ticket`'s mailbox, if any. Does not block.
    ///
    /// # Panics
    ///
    /// If `ticket` belongs to another stage.
    pub fn try_recv(&self, ticket: &mut Ticket<'_, T, R, M>) -> Option<M> {
        self.check_ticket(ticket);
        self.lock().table.slot_mut(ticket.slot).inbox.pop_front()
    }

    /// This ticket's next message, reading and routing as head when needed:
    /// the whole leader/followers loop in one call.
    ///
    /// 1. A message already in the mailbox is returned at once.
    /// 2. Otherwise the ticket enters the stage. As a follower it sleeps until
    ///    a message is delivered to it (or it is promoted, times out, or the
    ///    stage closes).
    /// 3. As head, it calls `read_one(resource)` in a loop. `Ok(Some((to,
    ///    msg)))` is routed: its own message is returned, anyone else's is
    ///    delivered (one wake-up for its owner) and the head reads on. A
    ///    message for a token with no ticket is dropped and counted in
    ///    [`Counters::unrouted`](crate::Counters::unrouted), as a connected
    ///    socket drops a datagram from a stranger: register every ticket
    ///    before traffic for it can arrive. `Ok(None)` means nothing was read
    ///    this time. Before every read the head looks at its own mailbox
    ///    (another thread may have delivered to it), at `close` and at its
    ///    deadline. `Err(e)` ends the call with [`RecvError::Read`].
    ///
    /// `read_one` should return within a bounded time when nothing arrives
    /// (a socket with a read time-out, or a non-blocking one), or the head
    /// cannot notice its deadline or `close`. Leaving the call in any way
    /// (also by a panic in `read_one`) hands the headship on.
    ///
    /// # Panics
    ///
    /// As [`enter`](Stage::enter): a ticket from another stage, or a call
    /// from the thread that heads the stage.
    pub fn recv<E>(
        &self,
        ticket: &mut Ticket<'_, T, R, M>,
        timeout: Option<Duration>,
        mut read_one: impl FnMut(&R) -> Result<Option<(T, M)>, E>,
    ) -> Result<M, RecvError<E>> {
        let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
        loop {
            if let Some(m) = self.try_recv(ticket) {
                return Ok(m);
            }
            let remaining = deadline.map(|d| d.saturating_duration_since(Instant::now()));
            match self.enter(ticket, remaining) {
                Entry::Notified => continue,
                Entry::TimedOut => return self.try_recv(ticket).ok_or(RecvError::TimedOut),
                Entry::Closed => return self.try_recv(ticket).ok_or(RecvError::Closed),
                Entry::Head(head) => {
                    return match head_loop(head, None, deadline, &mut read_one, false)? {
                        // Dropping the guard hands the headship on.
                        Reading::Own(m, _guard) => Ok(m),
                        Reading::Taken(_) => unreachable!("recv's head does not lend"),
                    };
                }
            }
        }
    }
}

impl<T: Hash + Eq, R, M> Stage<T, R, M> {
    /// Serves `ticket`: hands each of its messages to `handle`, in order,
    /// until `handle` returns `Break` (then `Ok` with its value), the
    /// time-out passes, the stage closes or a read fails. The loop for
    /// saturated traffic.
    ///
    /// Like [`recv`](Self::recv), except that a head handles its own
    /// messages itself, between reads, instead of handing the headship on
    /// to a follower that must first be woken (the one hand-off per own
    /// message that `recv` pays, during which nobody reads): the reading
    /// thread only ever wakes owners for their own messages. Followers are
    /// woken for their messages and handle them on their own threads.
    ///
    /// While the head's `handle` runs, the headship is **lent**: free, with
    /// nobody woken. A thread that enters meanwhile (another `serve` back
    /// from its own message, say) heads at once, ahead of the followers
    /// queued for a hand-off; when `handle` returns the head takes the
    /// headship back if it is still free, or else waits as a follower. If
    /// `serve` returns (or `handle` panics) while the headship is lent and
    /// still free, it goes to the longest-waiting follower, with one
    /// wake-up, as a dropped guard's would. So on a busy machine the
    /// reading moves to threads that are running, instead of staying with
    /// one thread that the scheduler preempts (see the module docs).
    ///
    /// The one exception: if every other ticket's thread waits in the FIFO
    /// when the head takes its own message, nobody is running who could
    /// take a lent headship, so the head hands it on to the longest-waiting
    /// follower (one wake-up, as `recv` does) before it handles the
    /// message, and enters again afterwards. Never while a task
    /// (`enter_async`) is queued: the serving thread may be the one that
    /// polls it. Nor when that follower is *idle*: it has waited while two
    /// rounds of items went by (two per registered ticket, to anyone), so
    /// its peer has gone quiet and it would only wake to read for the
    /// others; the head lends instead, and reads on after `handle`
    /// (measured with two busy owners beside six idle tickets, loopback
    /// UDP, same process: 2.9x the throughput on a quiet machine against
    /// handing on to the idle follower, 0.98x with two busy threads; see
    /// the README, "Costs"). Hand-offs themselves stay in FIFO order. That follower wakes while `handle` runs;
    /// its own last message is the oldest, so when peers take turns it is
    /// the next message's owner and reads it with no hand-over at all
    /// (measured against lending here, same process, two runs, one
    /// datagram at a time: 1.4-1.8x the throughput and 1.3-1.7 context
    /// switches per datagram instead of 1.9-2.1 on a quiet machine,
    /// 0.86-1.22x with two busy threads; saturated, where the others are
    /// rarely all waiting, 0.94-1.01x quiet and 0.95-1.00x loaded). With
    /// peers in random order it costs switches (0.2-0.36 more per item,
    /// quiet) for 1.07-1.19x the throughput; see the README.
    ///
    /// On a stage made with [`promote_when_readable`](Stage::promote_when_readable)
    /// the head also hands on when exactly one other ticket is outside the
    /// FIFO and the resource has nothing to read (one `poll` to look): that
    /// one thread (typically the previous head, back from its own message)
    /// would otherwise take the lent headship only to block in the read and
    /// wake for someone else's item, two switches for one item; the
    /// promoted follower is not woken until the item arrives, one switch.
    ///
    /// The head also lends the headship while it wakes an owner it
    /// delivered to (a futex call of a few microseconds for a blocked
    /// thread), if some other ticket is outside the FIFO (its thread may
    /// enter meanwhile): an owner back from its own message takes the
    /// reading over instead of waiting for that call to end, and the former
    /// head, if it finds the headship taken, serves any own message it
    /// holds and waits as a follower (measured: up to 1.3x the saturated
    /// throughput with 32 owners, see `head_loop`). Nobody
    /// reads while `handle` runs unless another thread enters: keep it
    /// short. `handle` may use the stage (it does not head while it runs).
    /// A follower takes its message under the same lock as the wake-up that
    /// brings it (one lock round trip per message, not three).
    /// `read_one` has the same contract as in `recv` and runs while
    /// heading; the head looks at its own mailbox, `close` and the deadline
    /// before every read.
    ///
    /// # Panics
    ///
    /// As [`enter`](Stage::enter). A panic in `read_one` unwinds through
    /// the guard, which hands the headship on; a panic in `handle` hands a
    /// lent headship on if it is still free.
    pub fn serve<B, E>(
        &self,
        ticket: &mut Ticket<'_, T, R, M>,
        timeout: Option<Duration>,
        mut read_one: impl FnMut(&R) -> Result<Option<(T, M)>, E>,
        mut handle: impl FnMut(M) -> ControlFlow<B>,
    ) -> Result<B, RecvError<E>> {
        let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
        loop {
            let remaining = deadline.map(|d| d.saturating_duration_since(Instant::now()));
            if remaining == Some(Duration::ZERO) {
                return self.serve_the_rest(ticket, &mut handle);
            }
            // A message already in the mailbox comes back at once, with the
            // `Notified` it causes, under one lock.
            let head = match self.enter_for_mail(ticket, remaining, true) {
                (Entry::Notified, Some(m)) => {
                    if let ControlFlow::Break(b) = handle(m) {
                        return Ok(b);
                    }
                    continue;
                }
                (entry, mail) => {
                    debug_assert!(mail.is_none());
                    entry
                }
            };
            let head = match head {
                Entry::Notified => continue,
                Entry::TimedOut | Entry::Closed => return self.serve_the_rest(ticket, &mut handle),
                Entry::Head(head) => head,
            };
            let mut head = head;
            // The head's own next message, when reclaiming the headship
            // already looked at its mailbox (`None`: `head_loop` looks).
            let mut mail = None;
            loop {
                let (m, lent) = match head_loop(head, mail.take(), deadline, &mut read_one, true)? {
                    Reading::Own(m, head) => match head.lend_unless_all_wait() {
                        Some(lent) => (m, lent),
                        None => {
                            // Handed on: serve the message, then enter again.
                            if let ControlFlow::Break(b) = handle(m) {
                                return Ok(b);
                            }
                            break;
                        }
                    },
                    Reading::Taken(own) => {
                        // Another thread heads now (or the stage closed):
                        // serve the own message found meanwhile, if any,
                        // then enter again.
                        if let Some(m) = own {
                            if let ControlFlow::Break(b) = handle(m) {
                                return Ok(b);
                            }
                        }
                        break;
                    }
                };
                if let ControlFlow::Break(b) = handle(m) {
                    return Ok(b);
                }
                if deadline.is_some_and(|d| Instant::now() >= d) {
                    // Not back to reading (nor to mail that keeps coming):
                    // the lent headship goes on, what is there is served.
                    drop(lent);
                    return self.serve_the_rest(ticket, &mut handle);
                }
                // Taking the headship back also takes the head's next own
                // message (whoever headed meanwhile may have delivered it),
                // under the same lock: one lock round trip, not two.
                match lent.reclaim_with_mail() {
                    Some((h, own)) => {
                        head = h;
                        mail = Some(own);
                    }
                    None => break,
                }
            }
        }
    }
}

impl<T: Hash + Eq, R, M> Stage<T, R, M> {
    /// `serve`'s end at its deadline or on `close`: what the mailbox holds
    /// by then is still served, and only that (mail that keeps arriving,
    /// even from `handle` itself, cannot keep `serve` from returning; it
    /// stays in the mailbox).
    fn serve_the_rest<B, E>(
        &self,
        ticket: &mut Ticket<'_, T, R, M>,
        handle: &mut impl FnMut(M) -> ControlFlow<B>,
    ) -> Result<B, RecvError<E>> {
        self.check_ticket(ticket);
        let there = self.lock().table.slot(ticket.slot).inbox.len();
        for _ in 0..there {
            let Some(m) = self.try_recv(ticket) else {
                break;
            };
            if let ControlFlow::Break(b) = handle(m) {
                return Ok(b);
            }
        }
        Err(if self.is_closed() {
            RecvError::Closed
        } else {
            RecvError::TimedOut
        })
    }
}

/// Where a head's reading stopped (see [`head_loop`]).
enum Reading<'s, T: Hash + Eq, R, M> {
    /// The head's own next message; the guard still heads.
    Own(M, HeadGuard<'s, T, R, M>),
    /// While the head lent the headship to wake an owner, another thread
    /// took it (or the stage closed); the head's own message taken out
    /// meanwhile, if any.
    Taken(Option<M>),
}

/// The head's part of `recv` and `serve`: reads and routes until the head's
/// own next message. An error drops the guard, which hands the headship on
/// (also while unwinding).
///
/// With `lend_while_waking` (`serve`), the head lends the headship while it
/// wakes an owner it delivered to, if some other ticket is outside the
/// FIFO (a thread that may be running): the wake-up call (a `futex` system
/// call for a blocked thread, a few microseconds, more when it must rouse
/// an idle CPU) is then off the reading's path, since a thread that enters
/// meanwhile (an owner back from its own message, typically) takes the
/// reading over at once. When every other thread waits in the FIFO, only
/// the owner being woken could take the reading over, which moves it for
/// nothing: measured, lending then cost 0.3-0.4 more switches per item one
/// item at a time. Measured (loopback UDP, same process, 15 rounds, against
/// `serve` without lending during wake-ups): saturated throughput 1.09x
/// quiet and 1.28x loaded with 32 owners, 1.04x and 1.08x with 8; one item
/// at a time unchanged (1.00-1.06x, the same switches). `recv` keeps the
/// headship while it wakes, as its contract says.
fn head_loop<'s, T: Hash + Eq, R, M, E>(
    mut head: HeadGuard<'s, T, R, M>,
    reclaimed_mail: Option<Option<M>>,
    deadline: Option<Instant>,
    read_one: &mut impl FnMut(&R) -> Result<Option<(T, M)>, E>,
    lend_while_waking: bool,
) -> Result<Reading<'s, T, R, M>, RecvError<E>> {
    // Before every read, the head looks at its own mailbox (another thread
    // may have delivered to it) and at `close`: however busy the resource
    // is with others' traffic, both are noticed between two reads. Routing
    // an item returns both under the lock it takes anyway.
    // `reclaimed_mail`: the caller just took the headship back, looking at
    // the mailbox under that lock; the stage was open then.
    let (mut own, mut closed) = match reclaimed_mail {
        Some(own) => (own, false),
        None => head.own_and_closed(),
    };
    loop {
        if let Some(m) = own {
            return Ok(Reading::Own(m, head));
        }
        if closed {
            return Err(RecvError::Closed);
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            return Err(RecvError::TimedOut);
        }
        let routed = match read_one(head.resource()) {
            Err(e) => return Err(RecvError::Read(e)),
            Ok(None) => None,
            Ok(Some((to, message))) => Some(head.stage().route_as_head(to, message)),
        };
        let Some(routed) = routed else {
            (own, closed) = head.own_and_closed();
            continue;
        };
        (own, closed) = (routed.own, routed.closed);
        let Some(wake) = routed.wake else { continue };
        if !(lend_while_waking && routed.others_out) {
            wake_quietly(wake);
            continue;
        }
        let lent = head.lend();
        wake_quietly(wake);
        // Taking it back, the head also looks at its mailbox (whoever
        // headed meanwhile may have delivered to it), unless the routing
        // already gave it its next own message.
        let reclaimed = match own {
            Some(_) => lent.reclaim().map(|again| (again, None)),
            None => lent.reclaim_with_mail(),
        };
        match reclaimed {
            Some((again, mail)) => {
                head = again;
                own = own.or(mail);
            }
            None => return Ok(Reading::Taken(own)),
        }
    }
}
