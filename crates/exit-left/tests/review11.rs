//! Hostile review 11 of exit-left (at c8b3cb7): misuse through
//! `enter_async`, cancellation of a future resolved by a *delivery*, and
//! `serve`'s time-out and `close` under a mailbox that keeps filling; plus a
//! deterministic model-based fuzz of async and zero-time-out entries
//! (notify / deliver / cancel / ticket drop and re-registration / close /
//! spurious polls with new wakers), checked against a reference model after
//! every step: one head, FIFO hand-off, exact `NotifyOutcome`s, nothing
//! lost, `waiting()` and `is_headed()` truthful.
//!
//! Findings (`finding_N_*`) failed on the code reviewed and pass since the
//! fixes: `enter_async` checks the ticket before the lock (1), a cancelled
//! wait gives back a bare notification only if one resolved it
//! (`Resolution::Notified { bare }`, 2), `serve` past its deadline or
//! closed serves only what its mailbox held then (3). The attacks that held
//! (`held_*`) are regression tests. Every test that can
//! block runs under a watchdog, and everything here is single-threaded and
//! deterministic: no sockets, no timing assertions (Miri-friendly).

mod common;

use common::{Got, Rng, got, iters, poll_once, watchdog};
use exit_left::{Entry, HeadGuard, NotifyOutcome, Stage, Ticket};
use std::cell::Cell;
use std::collections::VecDeque;
use std::future::Future;
use std::ops::ControlFlow;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Poll, Wake, Waker};
use std::time::Duration;
use testkit::{HostileWaker, Misbehaviour, ReentrantWaker};

type FS = Stage<u32, (), u32>;
type FT<'s> = Ticket<'s, u32, (), u32>;
type FE<'s> = Entry<'s, u32, (), u32>;
type FG<'s> = HeadGuard<'s, u32, (), u32>;

struct Flag(AtomicBool);
impl Wake for Flag {
    fn wake(self: Arc<Self>) {
        self.0.store(true, Ordering::SeqCst);
    }
    fn wake_by_ref(self: &Arc<Self>) {
        self.0.store(true, Ordering::SeqCst);
    }
}

type TaskFut<'s> = Pin<Box<dyn Future<Output = (Option<FE<'s>>, FT<'s>)> + 's>>;

struct Task<'s> {
    fut: TaskFut<'s>,
    cancel: Rc<Cell<bool>>,
    flag: Arc<Flag>,
    seq: u64,
    /// Resolved by `close` (a later notification is recorded).
    closed: bool,
}

enum Slot<'s> {
    Idle(FT<'s>),
    Waiting(Task<'s>),
    Gone,
}

/// A task entering with ticket `t`; completes with `None` once cancelled,
/// giving the ticket back either way.
fn task<'s>(stage: &'s FS, t: FT<'s>, seq: u64) -> Task<'s> {
    let cancel = Rc::new(Cell::new(false));
    let c = Rc::clone(&cancel);
    let fut = async move {
        let mut t = t;
        let out = {
            let mut f = stage.enter_async(&mut t);
            std::future::poll_fn(|cx| {
                if c.get() {
                    Poll::Ready(None)
                } else {
                    Pin::new(&mut f).poll(cx).map(Some)
                }
            })
            .await
        };
        (out, t)
    };
    Task {
        fut: Box::pin(fut),
        cancel,
        flag: Arc::new(Flag(AtomicBool::new(false))),
        seq,
        closed: false,
    }
}

struct Model<'s> {
    stage: &'s FS,
    slots: Vec<Slot<'s>>,
    owed: Vec<bool>,
    mail: Vec<VecDeque<u32>>,
    head: Option<(Option<usize>, FG<'s>)>,
    closed: bool,
    seq: u64,
    next_msg: u32,
    log: Vec<String>,
}

impl<'s> Model<'s> {
    fn fail(&self, what: &str) -> ! {
        let tail: Vec<&String> = self.log.iter().rev().take(25).collect();
        panic!("{what}\nlast ops (newest first): {tail:#?}");
    }

    fn completed(&mut self, i: usize, out: Option<FE<'s>>, t: FT<'s>) {
        match out {
            None => {}
            Some(Entry::Notified) => {
                if !self.owed[i] && self.mail[i].is_empty() {
                    self.fail(&format!("ticket {i}: Notified with nothing owed"));
                }
                self.owed[i] = false;
            }
            Some(Entry::Head(g)) => {
                if self.owed[i] || !self.mail[i].is_empty() {
                    self.fail(&format!("ticket {i}: Head while a notification is owed"));
                }
                if self.closed {
                    self.fail(&format!("ticket {i}: Head on a closed stage"));
                }
                if self.head.is_some() {
                    self.fail(&format!("ticket {i}: two heads"));
                }
                self.head = Some((Some(i), g));
            }
            Some(Entry::Closed) if !self.closed => {
                self.fail(&format!("ticket {i}: Closed on an open stage"));
            }
            Some(Entry::Closed) => {}
            Some(Entry::TimedOut) => self.fail("an async entry timed out"),
        }
        self.slots[i] = Slot::Idle(t);
    }

    fn poll(&mut self, i: usize, fresh_waker: bool) {
        let Slot::Waiting(task) = &mut self.slots[i] else {
            return;
        };
        if fresh_waker {
            task.flag = Arc::new(Flag(AtomicBool::new(false)));
        }
        task.flag.0.store(false, Ordering::SeqCst);
        let waker = Waker::from(Arc::clone(&task.flag));
        let mine = task.seq;
        let cancelled = task.cancel.get();
        if let Poll::Ready((out, t)) = poll_once(&mut task.fut, &waker) {
            if matches!(out, Some(Entry::Head(_))) && !cancelled {
                // FIFO: every task that queued before this one must have
                // been resolved (woken) already.
                for (j, s) in self.slots.iter().enumerate() {
                    if let Slot::Waiting(o) = s {
                        if j != i && o.seq < mine && !o.flag.0.load(Ordering::SeqCst) {
                            let msg = format!("ticket {i} heads before the older follower {j}");
                            self.fail(&msg);
                        }
                    }
                }
            }
            self.completed(i, out, t);
        }
    }

    fn settle(&mut self) {
        loop {
            let mut any = false;
            for i in 0..self.slots.len() {
                if let Slot::Waiting(t) = &self.slots[i] {
                    if t.flag.0.load(Ordering::SeqCst) {
                        any = true;
                        self.poll(i, false);
                    }
                }
            }
            if !any {
                break;
            }
        }
        let waiting = self
            .slots
            .iter()
            .filter(|s| matches!(s, Slot::Waiting(_)))
            .count();
        if self.stage.waiting() != waiting {
            self.fail(&format!(
                "stage.waiting() = {} but {waiting} tasks wait",
                self.stage.waiting()
            ));
        }
        if self.head.is_none() {
            if waiting > 0 {
                self.fail("nobody heads, yet followers wait (lost promotion)");
            }
            if self.stage.is_headed() {
                self.fail("is_headed() with no head");
            }
        } else if !self.stage.is_headed() {
            self.fail("a head exists but is_headed() is false");
        }
        for i in 0..self.slots.len() {
            if matches!(self.slots[i], Slot::Waiting(_))
                && (self.owed[i] || !self.mail[i].is_empty())
            {
                self.fail(&format!("ticket {i} waits with a notification owed"));
            }
        }
    }

    fn drain(&mut self, i: usize) {
        let Slot::Idle(t) = &mut self.slots[i] else {
            return;
        };
        while let Some(m) = self.stage.try_recv(t) {
            let want = self.mail[i].pop_front();
            if want != Some(m) {
                let msg = format!("ticket {i}: got message {m}, wanted {want:?}");
                self.fail(&msg);
            }
        }
        if !self.mail[i].is_empty() {
            self.fail(&format!("ticket {i}: messages missing"));
        }
    }

    fn expect_outcome(&self, j: usize, via_head: bool) -> NotifyOutcome {
        match &self.slots[j] {
            Slot::Gone => NotifyOutcome::NoSuchToken,
            _ if matches!(self.head, Some((Some(h), _)) if h == j) => {
                if via_head {
                    NotifyOutcome::OwnToken
                } else {
                    NotifyOutcome::Recorded
                }
            }
            Slot::Waiting(t) if t.closed => NotifyOutcome::Recorded,
            Slot::Waiting(_) => NotifyOutcome::Woken,
            Slot::Idle(_) => NotifyOutcome::Recorded,
        }
    }

    fn step(&mut self, rng: &mut Rng) {
        let n = self.slots.len();
        let op = rng.below(13);
        let want_waiting = matches!(op, 3 | 4) || (matches!(op, 6..=8) && rng.below(2) == 0);
        let want_idle = matches!(op, 0..=2);
        let eligible: Vec<usize> = (0..n)
            .filter(|&j| {
                (!want_waiting || matches!(self.slots[j], Slot::Waiting(_)))
                    && (!want_idle || matches!(self.slots[j], Slot::Idle(_)))
            })
            .collect();
        let i = if eligible.is_empty() {
            rng.below(n as u64) as usize
        } else {
            eligible[rng.below(eligible.len() as u64) as usize]
        };
        match op {
            0..=2 => {
                // Start waiting.
                if matches!(self.head, Some((Some(h), _)) if h == i) {
                    return;
                }
                if let Slot::Idle(_) = self.slots[i] {
                    let Slot::Idle(t) = std::mem::replace(&mut self.slots[i], Slot::Gone) else {
                        unreachable!()
                    };
                    self.seq += 1;
                    self.log.push(format!("start {i}"));
                    self.slots[i] = Slot::Waiting(task(self.stage, t, self.seq));
                    self.poll(i, false);
                }
            }
            3 => {
                self.log.push(format!("spurious poll {i}"));
                let fresh = rng.below(2) == 0;
                self.poll(i, fresh);
            }
            4 => {
                if let Slot::Waiting(t) = &self.slots[i] {
                    t.cancel.set(true);
                    self.log.push(format!("cancel {i}"));
                    self.poll(i, false);
                }
            }
            5 => {
                if self.head.is_some() && rng.below(2) == 0 {
                    self.log.push("drop head".into());
                    self.head = None;
                }
            }
            6..=8 => {
                let via_head = self.head.is_some() && rng.below(2) == 0;
                let want = self.expect_outcome(i, via_head);
                let deliver = rng.below(2) == 0;
                let tok = i as u32;
                self.log.push(format!(
                    "{} {i} via {}",
                    if deliver { "deliver" } else { "notify" },
                    if via_head { "head" } else { "stage" }
                ));
                let got = if deliver {
                    self.next_msg += 1;
                    let m = self.next_msg;
                    let r = match &self.head {
                        Some((_, g)) if via_head => g.deliver(&tok, m),
                        _ => self.stage.deliver(&tok, m),
                    };
                    match r {
                        Ok(o) => {
                            self.mail[i].push_back(m);
                            o
                        }
                        Err(_) => NotifyOutcome::NoSuchToken,
                    }
                } else {
                    let o = match &self.head {
                        Some((_, g)) if via_head => g.notify(&tok),
                        _ => self.stage.notify(&tok),
                    };
                    if o != NotifyOutcome::NoSuchToken {
                        self.owed[i] = true;
                    }
                    o
                };
                if got != want {
                    self.fail(&format!("notify/deliver {i}: {got:?}, expected {want:?}"));
                }
            }
            9 => {
                self.log.push(format!("try_recv {i}"));
                self.drain(i);
            }
            10 => {
                if rng.below(3) != 0 {
                    return;
                }
                if let Slot::Idle(_) = self.slots[i] {
                    self.log.push(format!("drop ticket {i}"));
                    self.slots[i] = Slot::Gone;
                    if let Some((h, _)) = &mut self.head {
                        if *h == Some(i) {
                            *h = None;
                        }
                    }
                    self.owed[i] = false;
                    self.mail[i].clear();
                } else if let Slot::Gone = self.slots[i] {
                    self.log.push(format!("register {i}"));
                    let t = self.stage.ticket(i as u32).expect("free token");
                    self.slots[i] = Slot::Idle(t);
                }
            }
            11 => {
                // A blocking entry that cannot wait long.
                self.settle();
                if self.head.is_some() {
                    return;
                }
                let Slot::Idle(t) = &mut self.slots[i] else {
                    return;
                };
                self.log.push(format!("blocking enter {i}"));
                let e = self.stage.enter(t, Some(Duration::ZERO));
                match e {
                    Entry::Notified => {
                        if !self.owed[i] && self.mail[i].is_empty() {
                            self.fail("blocking Notified with nothing owed");
                        }
                        self.owed[i] = false;
                    }
                    Entry::Head(g) => {
                        if self.owed[i] || !self.mail[i].is_empty() || self.closed {
                            self.fail("blocking Head while owed or closed");
                        }
                        self.head = Some((Some(i), g));
                    }
                    Entry::Closed => {
                        if !self.closed {
                            self.fail("blocking Closed on an open stage");
                        }
                    }
                    Entry::TimedOut => {
                        if self.owed[i] || !self.mail[i].is_empty() || self.closed {
                            self.fail("blocking TimedOut while owed or closed");
                        }
                        // Settled and nobody heads: the headship was free.
                        self.fail("blocking TimedOut while nobody heads");
                    }
                }
            }
            _ => {
                if rng.below(150) == 0 {
                    self.log.push("close".into());
                    self.closed = true;
                    for (j, s) in self.slots.iter_mut().enumerate() {
                        if let Slot::Waiting(t) = s {
                            // Resolved by a notification (or a promotion
                            // turned into one) before: that stays.
                            t.closed = !self.owed[j] && self.mail[j].is_empty();
                        }
                    }
                    self.stage.close();
                }
            }
        }
    }
}

#[test]
fn held_model_fuzz_of_async_and_zero_timeout_entries() {
    let _w = watchdog("held_model_fuzz_of_async_and_zero_timeout_entries");
    for seed in 0..iters(1500, 3) as u64 {
        let stage: FS = Stage::with_mailbox(());
        let n = 6;
        let mut m = Model {
            stage: &stage,
            slots: (0..n)
                .map(|i| Slot::Idle(stage.ticket(i).unwrap()))
                .collect(),
            owed: vec![false; n as usize],
            mail: vec![VecDeque::new(); n as usize],
            head: None,
            closed: false,
            seq: 0,
            next_msg: 0,
            log: Vec::new(),
        };
        let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
        for _ in 0..iters(400, 120) {
            m.step(&mut rng);
            if rng.below(4) == 0 {
                m.settle();
            }
        }
        // Wind down.
        m.head = None;
        for i in 0..n as usize {
            if let Slot::Waiting(t) = &m.slots[i] {
                t.cancel.set(true);
                m.poll(i, false);
            }
        }
        m.settle();
        drop(m);
        assert_eq!(stage.tickets(), 0);
        assert!(!stage.is_headed());
    }
}

/// The panic message of a caught panic.
fn message(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<String>()
        .cloned()
        .or_else(|| p.downcast_ref::<&str>().map(|s| (*s).to_string()))
        .unwrap_or_default()
}

// ===========================================================================
// FINDING 1: `enter_async` with a ticket from another stage panics with
// "index out of bounds" instead of the documented misuse message.
//
// src/future.rs:72-74 computes `st.ready_now(slot)` (src/stage.rs:159-160,
// `self.table.slot(slot)`, i.e. `&self.slots[id]` at src/table.rs:169-170) with
// the foreign ticket's slot index *before* `stage.check_ticket(this.ticket)`
// runs (src/future.rs:84). When the other stage has more slots than this
// one, the index is out of range and the poll panics with "index out of
// bounds: the len is 0 but the index is 4" (under the stage's lock, which it
// poisons). The contract: "Programmer errors (a ticket from another stage,
// ...) panic with a message that says what was wrong"; `enter_async`'s docs
// promise that panic on the first poll. (With an index in range the check
// is reached and the right message comes out: held below.)
//
// Fix: call `stage.check_ticket(this.ticket)` first thing in `poll` (before
// the loop takes the lock), or in `enter_async` itself.
// ===========================================================================

#[test]
fn finding_1_enter_async_with_a_foreign_ticket_panics_out_of_bounds_not_with_the_message() {
    let _w = watchdog(
        "finding_1_enter_async_with_a_foreign_ticket_panics_out_of_bounds_not_with_the_message",
    );
    let one: FS = Stage::with_mailbox(());
    let other: FS = Stage::with_mailbox(());
    // The other stage has more slots than this one (which has none).
    let _pad: Vec<FT<'_>> = (10..14).map(|i| other.ticket(i).unwrap()).collect();
    let mut t = other.ticket(1).unwrap();
    let r = catch_unwind(AssertUnwindSafe(|| {
        let mut f = one.enter_async(&mut t);
        let _ = poll_once(&mut f, Waker::noop());
    }));
    let msg = message(&*r.expect_err("a foreign ticket must panic"));
    assert!(
        msg.contains("a ticket from another stage"),
        "the misuse panic names the misuse; got: {msg:?}"
    );
    // And the stage is not hurt.
    let mut mine = one.ticket(1).unwrap();
    assert_eq!(got(one.enter(&mut mine, None)), Got::Head);
}

#[test]
fn held_enter_async_with_a_foreign_ticket_in_range_panics_with_the_message() {
    let _w = watchdog("held_enter_async_with_a_foreign_ticket_in_range_panics_with_the_message");
    let one: FS = Stage::with_mailbox(());
    let other: FS = Stage::with_mailbox(());
    // Same slot index on both stages, and this stage's slot 0 has a
    // pending notification (its `ready_now` is true).
    let mut local = one.ticket(7).unwrap();
    assert_eq!(one.notify(&7), NotifyOutcome::Recorded);
    let mut t = other.ticket(1).unwrap();
    let r = catch_unwind(AssertUnwindSafe(|| {
        let mut f = one.enter_async(&mut t);
        let _ = poll_once(&mut f, Waker::noop());
    }));
    let msg = message(&*r.expect_err("a foreign ticket must panic"));
    assert!(msg.contains("a ticket from another stage"), "{msg:?}");
    // The local ticket's notification was not consumed by the foreign one.
    assert_eq!(got(one.enter(&mut local, None)), Got::Notified);
    assert_eq!(got(one.enter(&mut local, None)), Got::Head);
}

// ===========================================================================
// FINDING 2: a cancelled `EnterFuture` that was resolved by a *delivery*
// turns it into a plain notification as well: one delivery, two `Notified`.
//
// `deliver` to a queued future resolves it `Notified` with the message in
// the mailbox and does not set `pending` (src/stage.rs:693-694, 710-712;
// `pending |= !is_mail` is only for a ticket that is not waiting,
// src/stage.rs:707). If the future is then dropped, `cancel_wait`
// (src/stage.rs:525-529) sets `pending = true` unconditionally, although
// what it received (the message) is still in the mailbox and will make the
// next entry `Notified` by itself. After the owner takes the message
// (`try_recv`, which is what every mailbox loop does first), its next
// `enter` returns `Notified` for nothing: a duplicated notification. The
// same future *not* cancelled returns one `Notified` (`finish` leaves
// `pending` alone), and a blocking waiter never gets the extra one. A raw
// loop that treats `Notified` as "something was buffered for me" finds
// nothing, and the counters (`woken` 1) disagree with the two wake-ups the
// owner sees.
//
// Fix: in `cancel_wait`, `s.pending |= s.inbox.is_empty()` (a non-empty
// inbox already makes the next entry `Notified`; only a plain notification
// needs the flag), or carry "plain notification" in
// `Resolution::Notified` and set `pending` only for it.
// ===========================================================================

#[test]
fn finding_2_a_cancelled_future_resolved_by_a_delivery_duplicates_the_notification() {
    let _w =
        watchdog("finding_2_a_cancelled_future_resolved_by_a_delivery_duplicates_the_notification");
    let stage: FS = Stage::with_mailbox(());
    let mut h = stage.ticket(0).unwrap();
    let mut a = stage.ticket(1).unwrap();
    let Entry::Head(head) = stage.enter(&mut h, None) else {
        panic!("the first entry heads")
    };
    {
        let mut f = stage.enter_async(&mut a);
        assert!(poll_once(&mut f, Waker::noop()).is_pending());
        assert_eq!(stage.deliver(&1, 7), Ok(NotifyOutcome::Woken));
        // Cancelled (dropped) before it is polled again.
    }
    // The owner takes its message, as every mailbox loop does first...
    assert_eq!(stage.try_recv(&mut a), Some(7));
    drop(head);
    // ... and nothing else was notified or delivered to it since.
    assert_eq!(
        got(stage.enter(&mut a, Some(Duration::ZERO))),
        Got::Head,
        "one delivery, taken: the next entry must not be Notified again"
    );
}

#[test]
fn held_a_cancelled_future_resolved_by_a_plain_notification_gives_it_back_once() {
    let _w =
        watchdog("held_a_cancelled_future_resolved_by_a_plain_notification_gives_it_back_once");
    let stage: FS = Stage::with_mailbox(());
    let mut h = stage.ticket(0).unwrap();
    let mut a = stage.ticket(1).unwrap();
    let Entry::Head(head) = stage.enter(&mut h, None) else {
        panic!("the first entry heads")
    };
    {
        let mut f = stage.enter_async(&mut a);
        assert!(poll_once(&mut f, Waker::noop()).is_pending());
        assert_eq!(stage.notify(&1), NotifyOutcome::Woken);
        assert_eq!(stage.notify(&1), NotifyOutcome::Woken, "coalesced");
    }
    drop(head);
    assert_eq!(
        got(stage.enter(&mut a, Some(Duration::ZERO))),
        Got::Notified
    );
    assert_eq!(got(stage.enter(&mut a, Some(Duration::ZERO))), Got::Head);
    let c = stage.counters();
    assert_eq!((c.woken, c.promotions, c.forwarded_promotions), (2, 0, 0));
}

// ===========================================================================
// FINDING 3: `serve`'s time-out (and `close`) is never looked at while its
// mailbox is not empty: a steady stream of deliveries keeps `serve` running
// past its deadline (after `close`) for as long as the stream lasts.
//
// src/mailbox.rs:168-175: every iteration calls `enter_for_mail` with the
// remaining time (zero once the deadline has passed), and `begin` returns
// `Notified` for a non-empty inbox before any time-out can happen
// (src/stage.rs:496-499); the `(Entry::Notified, Some(m))` arm handles the
// message and `continue`s without ever comparing the deadline. The
// `TimedOut | Closed` drain (src/mailbox.rs:183-189) is unbounded as well:
// after `close`, every message delivered meanwhile is served, and the
// next, and so on (`deliver` works on a closed stage by design). The docs
// say `serve` runs "until `handle` returns `Break`, the time-out passes, the
// stage closes or a read fails", and "What arrived by then is still
// served": here messages delivered *after* the deadline (after `close`),
// one per `handle`, are served without end. A `serve(.., Some(50 ms), ..)`
// used to come back for periodic work never comes back under load from
// `Stage::deliver` (any thread may deliver). Shown deterministically:
// `handle` itself delivers the next message (the docs allow `handle` to use
// the stage) and breaks after 100 to end the test.
//
// Fix: at the top of `serve`'s loop, once the deadline has passed (or the
// stage is closed), take the number of messages in the mailbox under one
// lock and serve at most that many, then return `TimedOut` (`Closed`);
// bound the existing drain the same way.
// ===========================================================================

/// `serve` whose `handle` delivers the next message to its own ticket each
/// time (after `close` once, if `close_first`); breaks after 100. Returns
/// what `serve` returned and how many messages `handle` got.
fn serve_under_a_steady_stream(
    timeout: Option<Duration>,
    close_first: bool,
) -> (Result<u32, exit_left::RecvError<()>>, u32) {
    let stage: FS = Stage::with_mailbox(());
    let mut a = stage.ticket(1).unwrap();
    stage.deliver(&1, 0).unwrap();
    let mut n = 0;
    let r = stage.serve(
        &mut a,
        timeout,
        |_| Ok::<_, ()>(None),
        |m| {
            n += 1;
            if n >= 100 {
                return ControlFlow::Break(m);
            }
            if close_first && n == 1 {
                stage.close();
            }
            stage.deliver(&1, m + 1).unwrap();
            ControlFlow::Continue(())
        },
    );
    (r, n)
}

#[test]
fn finding_3_serve_ignores_its_time_out_while_mail_keeps_arriving() {
    let _w = watchdog("finding_3_serve_ignores_its_time_out_while_mail_keeps_arriving");
    // A zero time-out: the deadline has passed before the second message
    // is delivered.
    let (r, n) = serve_under_a_steady_stream(Some(Duration::ZERO), false);
    assert_eq!(
        r,
        Err(exit_left::RecvError::TimedOut),
        "serve handled {n} messages, all but the first delivered after its deadline"
    );
}

#[test]
fn finding_3_serve_ignores_close_while_mail_keeps_arriving() {
    let _w = watchdog("finding_3_serve_ignores_close_while_mail_keeps_arriving");
    let (r, n) = serve_under_a_steady_stream(None, true);
    assert_eq!(
        r,
        Err(exit_left::RecvError::Closed),
        "serve handled {n} messages, all but the first two delivered after close"
    );
}

#[test]
fn held_serve_serves_what_is_there_at_its_deadline_and_then_times_out() {
    let _w = watchdog("held_serve_serves_what_is_there_at_its_deadline_and_then_times_out");
    let stage: FS = Stage::with_mailbox(());
    let mut a = stage.ticket(1).unwrap();
    for m in 0..3 {
        stage.deliver(&1, m).unwrap();
    }
    let mut seen = Vec::new();
    let r = stage.serve(
        &mut a,
        Some(Duration::ZERO),
        |_| Ok::<_, ()>(None),
        |m| {
            seen.push(m);
            ControlFlow::<()>::Continue(())
        },
    );
    assert_eq!(r, Err(exit_left::RecvError::TimedOut));
    assert_eq!(seen, [0, 1, 2]);
    assert!(!stage.is_headed());
}

// ===========================================================================
// HELD: wakers that misbehave inside `poll`.
// ===========================================================================

/// A waker whose every clone has a new data pointer (so `will_wake` is
/// never true): every poll of a queued future replaces the stored waker.
/// The wake-up reaches the last one stored, and no waker is leaked.
#[test]
fn held_new_pointer_clones_requeue_the_latest_waker_and_leak_nothing() {
    let _w = watchdog("held_new_pointer_clones_requeue_the_latest_waker_and_leak_nothing");
    let stage: FS = Stage::with_mailbox(());
    let mut h = stage.ticket(0).unwrap();
    let mut a = stage.ticket(1).unwrap();
    let Entry::Head(head) = stage.enter(&mut h, None) else {
        panic!("the first entry heads")
    };
    let old = HostileWaker::new(Misbehaviour::None);
    let new = HostileWaker::new(Misbehaviour::None);
    let mut f = stage.enter_async(&mut a);
    for _ in 0..iters(50, 5) {
        let w = old.waker();
        assert!(poll_once(&mut f, &w).is_pending());
    }
    let w = new.waker();
    assert!(poll_once(&mut f, &w).is_pending());
    assert_eq!(old.live(), 0, "replaced wakers are dropped");
    assert_eq!(new.live(), 2, "the test's waker and the stored clone");
    drop(head);
    assert_eq!(
        (old.wakes(), new.wakes()),
        (0, 1),
        "the last poller is woken"
    );
    assert!(matches!(poll_once(&mut f, &w), Poll::Ready(Entry::Head(_))));
    drop(f);
    drop(w);
    assert_eq!(new.live(), 0);
    assert_eq!(stage.waiting(), 0);
    assert!(!stage.is_headed());
}

/// A waker whose `clone` (run by the first poll, outside the lock)
/// notifies the very ticket being entered, and then panics: the poll
/// unwinds with the future never queued, and the notification is there for
/// the next poll.
#[test]
fn held_a_clone_that_notifies_its_own_ticket_then_panics_loses_nothing() {
    let _w = watchdog("held_a_clone_that_notifies_its_own_ticket_then_panics_loses_nothing");
    let stage = Arc::new(Stage::<u32, (), u32>::with_mailbox(()));
    let mut h = stage.ticket(0).unwrap();
    let mut a = stage.ticket(1).unwrap();
    let Entry::Head(head) = stage.enter(&mut h, None) else {
        panic!("the first entry heads")
    };
    let task = ReentrantWaker::panicking_after_clone_hook();
    let s2 = Arc::clone(&stage);
    task.set_on_clone(Box::new(move || {
        assert_eq!(s2.notify(&1), NotifyOutcome::Recorded);
    }));
    let mut f = stage.enter_async(&mut a);
    let w = task.waker();
    let r = catch_unwind(AssertUnwindSafe(|| poll_once(&mut f, &w).is_pending()));
    assert!(r.is_err(), "the clone panicked");
    assert_eq!(stage.waiting(), 0, "never queued");
    assert!(matches!(
        poll_once(&mut f, &w),
        Poll::Ready(Entry::Notified)
    ));
    drop(f);
    drop(head);
    assert_eq!(got(stage.enter(&mut a, None)), Got::Head);
    drop(w);
    assert_eq!(task.live(), 0);
}

/// A waker whose `clone` closes the stage while a queued future re-polls
/// with it: the future resolves `Closed` at that same poll.
#[test]
fn held_a_clone_that_closes_the_stage_resolves_the_poll_closed() {
    let _w = watchdog("held_a_clone_that_closes_the_stage_resolves_the_poll_closed");
    let stage = Arc::new(Stage::<u32, (), u32>::with_mailbox(()));
    let mut h = stage.ticket(0).unwrap();
    let mut a = stage.ticket(1).unwrap();
    let Entry::Head(head) = stage.enter(&mut h, None) else {
        panic!("the first entry heads")
    };
    let mut f = stage.enter_async(&mut a);
    assert!(poll_once(&mut f, Waker::noop()).is_pending());
    let task = ReentrantWaker::new();
    let s2 = Arc::clone(&stage);
    task.set_on_clone(Box::new(move || s2.close()));
    let w = task.waker();
    assert!(matches!(poll_once(&mut f, &w), Poll::Ready(Entry::Closed)));
    drop(f);
    drop(head);
    assert_eq!(stage.waiting(), 0);
    assert!(!stage.is_headed());
    drop(w);
    assert_eq!(task.live(), 0);
}
