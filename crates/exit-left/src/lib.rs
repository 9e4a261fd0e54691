//! Many waiters, one reader: a leader/followers stage with keyed wake-ups.
//!
//! Many threads wait for *their* events from one resource that only one
//! thread at a time may block on: the typical case is one unconnected UDP
//! socket, datagrams from many peers, one thread per peer. Whoever *heads*
//! the [`Stage`] reads the resource and routes what it reads; the others
//! sleep until they are notified by token, promoted to head, or time out.
//! This is the Leader/Followers pattern (POSA2) with keyed wake-ups.
//!
//! # Example: the loop, with the built-in mailbox
//!
//! ```
//! use exit_left::{RecvError, Stage};
//! use std::thread;
//! use std::time::Duration;
//!
//! // The resource: here a queue of (to, message) standing in for a socket.
//! let source = std::sync::Mutex::new(vec![(2u32, "for two"), (1, "for one")]);
//! let stage: Stage<u32, _, &str> = Stage::with_mailbox(source);
//! // Register every ticket before traffic for it can arrive: the head drops
//! // (and counts) what it reads for a token with no ticket.
//! let tickets = [stage.ticket(1).unwrap(), stage.ticket(2).unwrap()];
//! thread::scope(|s| {
//!     for (mut ticket, want) in tickets.into_iter().zip(["for one", "for two"]) {
//!         let stage = &stage;
//!         s.spawn(move || {
//!             // Reads and routes as head when needed; sleeps as a follower.
//!             let got = stage.recv(&mut ticket, Some(Duration::from_secs(10)), |src| {
//!                 Ok::<_, ()>(src.lock().unwrap().pop())
//!             });
//!             assert_eq!(got, Ok(want));
//!         });
//!     }
//! });
//! ```
//!
//! # Example: the raw loop
//!
//! ```
//! use exit_left::{Entry, Stage};
//! use std::time::Duration;
//!
//! let stage = Stage::new(());
//! let mut ticket = stage.ticket("me").unwrap();
//! let _peer = stage.ticket("peer").unwrap();
//! match stage.enter(&mut ticket, Some(Duration::from_millis(50))) {
//!     Entry::Head(head) => {
//!         // Read `head.resource()`, buffer each item for its owner, and
//!         // `head.notify(&owner)`, until this ticket's own item arrives.
//!         head.notify(&"peer");
//!         // Dropping `head` hands the headship to the longest-waiting follower.
//!     }
//!     Entry::Notified => { /* something for me was buffered */ }
//!     Entry::TimedOut => { /* nothing within the time-out */ }
//!     Entry::Closed => { /* the stage was closed */ }
//! }
//! ```
//!
//! # When to use it
//!
//! When one resource carries events for many consumers and cannot be split:
//! one unconnected UDP socket serving many peers, a pipe or device that
//! interleaves replies to many requests. Then the thread that happens to be
//! waiting reads, and nobody is woken for an event that is not theirs.
//!
//! Use something else when you can:
//!
//! - **A socket per peer** (`SO_REUSEPORT` plus `connect`) lets the kernel do
//!   the routing: no head, no hand-off, one wake-up per datagram. It needs a
//!   socket per peer, and a port that others may bind.
//! - **A dedicated reader thread** with a channel per consumer is simpler and,
//!   under saturation, about as fast; it costs a thread, and every item is
//!   two wake-ups (the reader's and the consumer's) when traffic is sparse.
//!   The stage needs no extra thread: the reader is whichever consumer is
//!   waiting anyway.
//!
//! # The loop that pays
//!
//! A head that reads one item and hands the headship straight on pays two
//! wake-ups per item. Keep the headship while what you read belongs to
//! others, deliver it, and hand off only when you have your own item (or at
//! your deadline). [`Stage::recv`] does exactly that. Under saturated
//! traffic, [`Stage::serve`] goes further: the head handles its own
//! messages itself between reads, so the resource is never left unread
//! while a promoted follower wakes up, and it *lends* the headship while it
//! does, and while it wakes an owner it delivered to if another thread
//! may be running (a thread that enters meanwhile takes the reading over
//! at once; see [`Stage::serve`]), so the reading never stays with one
//! thread that the scheduler preempts on a busy machine, nor waits for a
//! wake-up call. When every other thread waits, its head hands the
//! headship on instead, as `recv` does: the longest waiter is the likeliest
//! owner of the next item when peers take turns.
//!
//! On Linux, make the stage with [`Stage::promote_when_readable`] when the
//! resource is a socket (anything whose reads wait for its descriptor to
//! turn readable): a hand-off made while there is nothing to read then
//! does not wake the follower but arms the socket in its parker's epoll
//! set, and the kernel wakes it when the item arrives. A promoted follower
//! sleeps once per item instead of twice (woken, then blocked in the read):
//! with peers taking turns that is one switch per item. (Adaptive: while
//! deliveries end most waits, as under saturation, followers wait on the
//! cheaper thread parker and are woken at once.)
//!
//! # Guarantees
//!
//! - **At most one head.** A [`HeadGuard`] exists for at most one thread at
//!   a time.
//! - **FIFO hand-off, one wake-up.** Dropping the guard (also while
//!   unwinding from a panic) promotes the longest-waiting follower and wakes
//!   exactly that one thread (on a stage that promotes when readable, with
//!   nothing to read, and a follower waiting where the resource can wake
//!   it: none yet; the resource wakes it when it turns readable, and a
//!   notification, `close` or its deadline before that). No follower is skipped twice in a row; none
//!   starves. The one exception is the headship that [`Stage::serve`] lends
//!   while its `handle` runs or its head wakes an owner: a thread that
//!   enters then heads at once, ahead of the queue, so threads that keep
//!   entering through lent headships can keep a follower that waits for
//!   the headship itself behind them (a follower in `serve` or `recv` waits
//!   for its mail, which whoever heads delivers).
//! - **Nothing lost.** A notification for a ticket that is not waiting (also
//!   the head's own) is recorded and returned by its next `enter`. A
//!   notification beats a promotion: the promoted follower returns
//!   `Notified` and the headship goes on to the next one. A notification or
//!   promotion made by the deadline is returned, not reported as a time-out.
//!   A cancelled [`EnterFuture`] gives back what it received.
//! - **`close`** wakes every waiter with `Closed`; later `enter`s return
//!   `Closed` at once; mailboxes keep their messages.
//! - **Panicking wakers and destructors.** A waker the stage wakes on
//!   someone else's behalf (a hand-off, a forwarded promotion, a head's
//!   routing) has its panic caught and dropped there: it could otherwise
//!   unwind through a `recv` returning a message, or abort a thread
//!   already unwinding. `notify`, `deliver` and `close`, called directly,
//!   pass a waker's panic on after their work is done (`close`: the first,
//!   once every waiter is woken), unless they are called while the thread
//!   unwinds (from a guard's `Drop`): there a second panic would abort the
//!   process, so it is dropped. A caught panic's payload is dropped so that
//!   its own drop's panic cannot get out either (the workspace's one rule,
//!   `sync_core::unwind`). A message that `recv`
//!   or `serve` took out of the head's mailbox is put back if a token's or
//!   message's `Drop` panics before it is returned.
//! - **Misuse panics with a message**: a ticket from another stage, `enter`
//!   from the thread that heads. A token that is already registered is a
//!   [`TicketError`].
//!
//! # Costs
//!
//! Every operation takes one short mutex (the only user code run under it
//! is a token's `Eq`, in lookups)
//! and is O(1): tokens are found by hash, followers sit in an intrusive FIFO.
//! Nothing allocates after warm-up except a growing mailbox, the first
//! ticket in each new slot, and `close` (a list of wakers). A follower
//! waits on its thread's cached parker. It parks at once, unless the
//! stage's recent waits say that a short spin before parking pays off
//! ([`sync_core::SpinPolicy`], one history per stage, starting without
//! credit): followers usually wait far longer than a spin could pay for,
//! but with two owners under saturated traffic the next item often comes
//! within microseconds, and a follower still spinning then costs its
//! notifier no system call and itself no context switch (measured on
//! loopback UDP: 11x the throughput of parking at once, quiet; 1.16-1.34x
//! with two busy threads; with owners taking turns, where waits are long,
//! unchanged within the noise). A stage with more tickets than the
//! machine has CPUs, plus one, never spins: there, a spinning follower
//! holds a CPU that the threads it waits for need, while enough spins
//! still end fast to keep the history's credit (measured with 8 owners on
//! 2 CPUs under saturation, against spinning: 1.04x the throughput with
//! two busy threads, 1.00-1.01x quiet; with 32 owners 1.04x and 1.02x). Spins
//! are bounded by time, never yield, and are skipped when less than the
//! longest one is left before the waiter's time-out. The count leaves
//! out idle followers (threads that waited while two rounds of items, two
//! per ticket, went to others: their peers are quiet), and `serve` never
//! hands the headship on to one (see the README, "Costs": two busy owners
//! beside six idle tickets, 3.0x the throughput quiet with these rules).
//! `notify`, `deliver` and a hand-off make at most
//! one wake-up (one futex call; two for a `notify` that ends a promotion
//! sleeping until the resource is readable, see [`Stage::notify`]). The only `unsafe` code is the system calls
//! behind [`Stage::promote_when_readable`] (epoll, eventfd, `poll`), in one
//! module, with the tests that run them under Miri.
//!
//! Async tasks wait through [`Stage::enter_async`], in the same FIFO as
//! blocking threads.
#![deny(missing_docs)]
#![deny(unsafe_op_in_unsafe_fn)]
#![deny(unsafe_code)]

mod future;
mod gate;
mod head;
mod mailbox;
// System calls (epoll, eventfd, poll): the crate's only `unsafe` code.
#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
mod ready;
mod stage;
mod table;

pub use future::EnterFuture;
pub use head::HeadGuard;
pub use stage::{Stage, Ticket};

/// How [`Stage::enter`] (or [`Stage::enter_async`]) ended.
#[derive(Debug)]
pub enum Entry<'s, T: std::hash::Hash + Eq, R, M = ()> {
    /// This ticket heads the stage: read the resource through the guard.
    Head(HeadGuard<'s, T, R, M>),
    /// A notification for this ticket arrived (before or during the wait).
    Notified,
    /// The time-out passed with neither a notification nor a promotion.
    TimedOut,
    /// The stage is closed.
    Closed,
}

impl<T: std::hash::Hash + Eq, R, M> Entry<'_, T, R, M> {
    /// Whether this is [`Entry::Head`].
    pub fn is_head(&self) -> bool {
        matches!(self, Entry::Head(_))
    }
}

/// What a notification did.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum NotifyOutcome {
    /// The token's ticket was waiting and is woken (or was already being
    /// woken: notifications coalesce).
    Woken,
    /// The ticket was not waiting: its next `enter` returns `Notified`.
    Recorded,
    /// No ticket has this token.
    NoSuchToken,
    /// The head's own token ([`HeadGuard::notify`]): recorded, like
    /// `Recorded`.
    OwnToken,
}

/// Counters since the stage was created ([`Stage::counters`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Counters {
    /// Hand-offs of the headship to a waiting follower.
    pub promotions: u64,
    /// Of `promotions`, those made by arming the resource in the follower's
    /// parker instead of waking it, nothing being there to read
    /// ([`Stage::promote_when_readable`]; only for a follower waiting where
    /// the resource can wake it, which that method's docs say when). The follower then sleeps until
    /// the resource turns readable, unless a notification, `close` or its
    /// deadline wakes it first (a notification also forwards the
    /// promotion, counted again).
    pub promotions_when_readable: u64,
    /// Promotions taken back from a follower that would not use it
    /// (notified first, cancelled, ticket dropped) and handed on.
    pub forwarded_promotions: u64,
    /// Notifications (and deliveries) that woke a waiter.
    pub woken: u64,
    /// Notifications recorded for a ticket that was not waiting.
    pub recorded: u64,
    /// Notifications and deliveries for the head's own token (recorded).
    /// [`Stage::recv`]'s head delivers the item it reads for itself this
    /// way, so with `recv` this counts items a head read for itself.
    pub own_token: u64,
    /// Notifications and deliveries for a token with no ticket.
    pub no_such_token: u64,
    /// Waits that ended by time-out.
    pub timeouts: u64,
    /// Items that [`Stage::recv`]'s head read for a token with no ticket,
    /// and dropped.
    pub unrouted: u64,
}

impl Counters {
    pub(crate) fn count(&mut self, outcome: NotifyOutcome) {
        match outcome {
            NotifyOutcome::Woken => self.woken += 1,
            NotifyOutcome::Recorded => self.recorded += 1,
            NotifyOutcome::OwnToken => self.own_token += 1,
            NotifyOutcome::NoSuchToken => self.no_such_token += 1,
        }
    }
}

/// [`Stage::ticket`] failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum TicketError {
    /// A live ticket already has this token.
    Taken,
}

impl core::fmt::Display for TicketError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            TicketError::Taken => f.write_str("a live ticket already has this token"),
        }
    }
}

impl std::error::Error for TicketError {}

/// A message [`deliver`](Stage::deliver)ed to a token with no ticket, given
/// back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Undelivered<M>(pub M);

impl<M> core::fmt::Display for Undelivered<M> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("no ticket has this token")
    }
}

impl<M: core::fmt::Debug> std::error::Error for Undelivered<M> {}

/// Why [`Stage::recv`] returned no message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecvError<E> {
    /// The time-out passed.
    TimedOut,
    /// The stage is closed. From `recv`: this ticket's mailbox was empty.
    /// From `serve`: it served what its mailbox held when it saw `close`;
    /// mail delivered after that stays there, for `try_recv`.
    Closed,
    /// `read_one` failed (as head).
    Read(E),
}

impl<E: core::fmt::Display> core::fmt::Display for RecvError<E> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            RecvError::TimedOut => f.write_str("timed out"),
            RecvError::Closed => f.write_str("the stage is closed"),
            RecvError::Read(e) => write!(f, "reading the resource failed: {e}"),
        }
    }
}

impl<E: core::fmt::Debug + core::fmt::Display> std::error::Error for RecvError<E> {}

#[cfg(test)]
mod assertions {
    use super::*;
    use static_assertions::{assert_impl_all, assert_not_impl_any};
    use std::net::{SocketAddr, UdpSocket};

    assert_impl_all!(Stage<SocketAddr, UdpSocket>: Send, Sync);
    assert_impl_all!(Stage<u32, (), Vec<u8>>: Send, Sync);
    assert_not_impl_any!(Stage<u32, std::cell::Cell<u8>>: Sync);
    assert_not_impl_any!(Stage<std::rc::Rc<u8>, ()>: Send, Sync);
    assert_impl_all!(Ticket<'static, SocketAddr, UdpSocket>: Send, Sync);
    assert_not_impl_any!(HeadGuard<'static, SocketAddr, UdpSocket>: Send);
    assert_impl_all!(HeadGuard<'static, SocketAddr, UdpSocket>: Sync);
    assert_impl_all!(EnterFuture<'static, 'static, SocketAddr, UdpSocket>: Send, Unpin);
    assert_impl_all!(TicketError: std::error::Error, Send, Sync);
}
