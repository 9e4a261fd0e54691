//! Hostile review of the idle followers (commit eb63a49): the table's clock
//! of items, the FIFO's idle prefix (`idle`, `idle_last`) and its two uses,
//! `serve`'s decision to lend instead of handing on to an idle follower and
//! the spin's count in `wait_queued`.
//!
//! The idle count is not public; these tests see it through `serve`'s
//! decision (the promotions counted while `handle` runs: one if the head
//! handed on, none if it lent), and through the panics and overflow checks
//! that an inconsistent prefix would hit (`idle_followers`'s
//! `unreachable!`s, `idle -= 1` and `registered - idle_followers()` in a
//! debug build). The one finding (the idle mark outlives the threshold it
//! was set by) was resolved by documenting the mark as sticky; the attacks
//! that held are kept as regression tests. Every test that can block runs under a watchdog, and
//! waits are bounded.

mod common;

use common::script::{S, once_headed, quiet, read_after, stage};
use common::{Got, LONG, Rng, got, poll_once, until_waiting, watchdog};
use exit_left::{Entry, NotifyOutcome, Stage, Ticket};
use std::ops::ControlFlow;
use std::sync::mpsc;
use std::task::{Poll, Waker};
use std::thread;
use std::time::Duration;

/// Enters until the entry is not `Notified`; returns it and how many
/// `Notified` came before it.
fn enter_until_not_notified(
    stage: &S,
    t: &mut Ticket<'_, u32, common::script::Items, u32>,
) -> (Got, usize) {
    let mut notified = 0;
    loop {
        match got(stage.enter(t, LONG)) {
            Got::Notified => notified += 1,
            g => return (g, notified),
        }
    }
}

/// `serve` (ticket 0) takes its own message (the script's only item) while
/// every other ticket waits in the FIFO: `followers` tickets (1..) queued
/// first, then the "ager" (the next token) queued after `aged` deliveries to
/// its mailbox (drained before it enters; its wait is the one that asks for
/// the idle prefix, flagging the followers that have aged by then). Then
/// each of `leave` is notified out of the FIFO and queues again, young.
/// Returns whether the head handed on (a promotion counted by the time
/// `handle` runs; the promoted follower may have handed on again by then)
/// rather than lent (none: nobody is promoted while the headship is lent).
/// Every thread heads in turn afterwards, and the stage ends quiet.
fn lend_decision(followers: u32, aged: u32, leave: &[u32]) -> bool {
    let stage = stage(&[(0, 10)]);
    let ager = followers + 1;
    let mut t0 = stage.ticket(0).unwrap();
    let mut tickets: Vec<_> = (1..=followers).map(|k| stage.ticket(k).unwrap()).collect();
    let mut ta = stage.ticket(ager).unwrap();
    let (go, gone) = mpsc::channel::<()>();
    let in_handle = thread::scope(|s| {
        let st = &stage;
        let fs: Vec<_> = tickets
            .iter_mut()
            .map(|t| {
                s.spawn(move || {
                    once_headed(st);
                    enter_until_not_notified(st, t)
                })
            })
            .collect();
        let fa = s.spawn(move || {
            gone.recv().unwrap();
            while st.try_recv(&mut ta).is_some() {}
            got(st.enter(&mut ta, LONG))
        });
        let mut in_handle = None;
        let out = stage.serve(
            &mut t0,
            LONG,
            read_after(|| {
                until_waiting(&stage, followers as usize);
                for k in 0..aged {
                    assert_eq!(stage.deliver(&ager, k), Ok(NotifyOutcome::Recorded));
                }
                go.send(()).unwrap();
                until_waiting(&stage, followers as usize + 1);
                for tok in leave {
                    assert_eq!(stage.notify(tok), NotifyOutcome::Woken);
                    // Out of the FIFO at once (`notify` dequeues under its
                    // lock), back (young) when its thread enters again.
                    until_waiting(&stage, followers as usize + 1);
                }
            }),
            |m| {
                in_handle = Some(stage.counters().promotions);
                ControlFlow::Break(m)
            },
        );
        assert_eq!(out, Ok(10));
        for (k, f) in fs.into_iter().enumerate() {
            let (g, notified) = f.join().unwrap();
            assert_eq!(g, Got::Head, "follower {}", k + 1);
            let left = leave.iter().filter(|&&t| t == k as u32 + 1).count();
            assert_eq!(notified, left, "follower {}", k + 1);
        }
        assert_eq!(fa.join().unwrap(), Got::Head);
        in_handle.expect("handle ran") > 0
    });
    assert_eq!(stage.counters().promotions, u64::from(followers) + 1);
    quiet(&stage);
    in_handle
}

/// The idle prefix follows every exit from the FIFO: the prefix's only
/// slot, its first, its last, or all of it, leaving through a notification
/// (`dequeue` with the prefix's cursor at or past the slot) and queueing
/// again young, behind the others. `serve` then lends exactly while the
/// FIFO's first slot is one that has aged (two tickets' worth of items per
/// ticket), and hands on otherwise. A stale cursor or count would lend (or
/// panic in `idle_followers`) where it must hand on.
#[test]
fn the_idle_prefix_follows_followers_leaving_and_queueing_again() {
    let _w = watchdog("the_idle_prefix_follows_followers_leaving_and_queueing_again");
    // Three tickets: idle after six items.
    assert!(!lend_decision(1, 6, &[]), "the aged follower is idle");
    // The head's own item counts too: `aged` + 1 items at the decision.
    assert!(!lend_decision(1, 5, &[]), "six items with the own one");
    assert!(lend_decision(1, 4, &[]), "five items are not two rounds");
    assert!(lend_decision(1, 6, &[1]), "the prefix's only slot left");
    // Four tickets: idle after eight items; both followers aged.
    assert!(!lend_decision(2, 8, &[]));
    assert!(
        !lend_decision(2, 8, &[1]),
        "the second is idle, and first now"
    );
    assert!(
        !lend_decision(2, 8, &[2]),
        "the prefix's end left: the first"
    );
    assert!(lend_decision(2, 8, &[1, 2]), "the whole prefix left");
    assert!(lend_decision(2, 8, &[2, 1]), "the whole prefix left");
}

// ---------------------------------------------------------------------------
// Finding 1 (resolved by documenting it): a follower counted idle stays
// idle when tickets are added, so the count depends on when it was last
// asked, not only on the threshold of now. The table's module docs now say
// the mark is sticky (idle until it leaves the FIFO); these two tests pin
// both sides of that.
// ---------------------------------------------------------------------------

/// Ticket 1 waited 6 items, at 3 tickets (threshold 6) when the ager's wait
/// asked, then 4 more tickets queued (7 tickets: threshold 14). The mark
/// set at three tickets stays (documented as sticky): `serve` lends.
#[test]
fn a_follower_counted_idle_stays_idle_when_tickets_are_added() {
    let _w = watchdog("a_follower_counted_idle_stays_idle_when_tickets_are_added");
    assert!(!sticky_idle(true), "lent: the mark is sticky");
}

/// The control for the sticky mark: nobody asks while ticket 1 qualifies at
/// three tickets, so with seven it is not idle and `serve` hands on.
#[test]
fn with_seven_tickets_six_items_do_not_make_a_follower_idle() {
    let _w = watchdog("with_seven_tickets_six_items_do_not_make_a_follower_idle");
    assert!(sticky_idle(false), "handed on");
}

/// `serve` (ticket 0) with follower 1 queued, then six deliveries to
/// ticket 2 (three tickets registered: two rounds). With `ask_early`,
/// ticket 2 queues now (its wait asks for the idle prefix: ticket 1 is
/// flagged), and then four threads register tickets 3..=6 and queue;
/// without it, the four queue first and ticket 2 last. Either way every
/// other ticket waits, ticket 1 first, having waited six items of a
/// threshold of fourteen. Returns whether the head handed on (as
/// `lend_decision`).
fn sticky_idle(ask_early: bool) -> bool {
    let stage = stage(&[(0, 10)]);
    let mut t0 = stage.ticket(0).unwrap();
    let mut t1 = stage.ticket(1).unwrap();
    let mut t2 = stage.ticket(2).unwrap();
    let (go, gone) = mpsc::channel::<()>();
    let in_handle = thread::scope(|s| {
        let st = &stage;
        let f1 = s.spawn(move || {
            once_headed(st);
            got(st.enter(&mut t1, LONG))
        });
        let f2 = s.spawn(move || {
            gone.recv().unwrap();
            while st.try_recv(&mut t2).is_some() {}
            got(st.enter(&mut t2, LONG))
        });
        let mut more = Vec::new();
        let mut in_handle = None;
        let out = stage.serve(
            &mut t0,
            LONG,
            read_after(|| {
                until_waiting(st, 1);
                for k in 0..6 {
                    assert_eq!(st.deliver(&2, k), Ok(NotifyOutcome::Recorded));
                }
                let mut queued = 1;
                if ask_early {
                    go.send(()).unwrap();
                    queued += 1;
                    until_waiting(st, queued);
                }
                for k in 3..=6 {
                    more.push(s.spawn(move || {
                        let mut t = st.ticket(k).unwrap();
                        got(st.enter(&mut t, LONG))
                    }));
                    queued += 1;
                    until_waiting(st, queued);
                }
                if !ask_early {
                    go.send(()).unwrap();
                    queued += 1;
                    until_waiting(st, queued);
                }
                assert_eq!((st.tickets(), st.waiting()), (7, 6));
            }),
            |m| {
                in_handle = Some(st.counters().promotions);
                ControlFlow::Break(m)
            },
        );
        assert_eq!(out, Ok(10));
        assert_eq!(f1.join().unwrap(), Got::Head);
        assert_eq!(f2.join().unwrap(), Got::Head);
        for f in more {
            assert_eq!(f.join().unwrap(), Got::Head);
        }
        in_handle.expect("handle ran") > 0
    });
    assert_eq!(stage.counters().promotions, 6);
    quiet(&stage);
    in_handle
}

// ---------------------------------------------------------------------------
// Attacks that held.
// ---------------------------------------------------------------------------

/// While the headship is lent because the first follower is idle, `handle`
/// uses the stage re-entrantly on the serving thread: it registers a new
/// ticket, enters with it (the headship is free: it heads at once) and
/// drops the guard, which promotes the idle follower. `serve` then cannot
/// take the headship back, waits as a follower, and gets its next message
/// from whoever reads: one head at a time, nothing lost, nobody stranded.
#[test]
fn handle_heading_re_entrantly_while_lent_to_spare_an_idle_follower() {
    let _w = watchdog("handle_heading_re_entrantly_while_lent_to_spare_an_idle_follower");
    let stage = stage(&[(0, 10), (0, 11)]);
    let mut t0 = stage.ticket(0).unwrap();
    let mut t1 = stage.ticket(1).unwrap();
    let mut t2 = stage.ticket(2).unwrap();
    let (go, gone) = mpsc::channel::<()>();
    let readers = std::sync::atomic::AtomicUsize::new(0);
    thread::scope(|s| {
        let st = &stage;
        let f1 = s.spawn(move || {
            once_headed(st);
            got(st.enter(&mut t1, LONG))
        });
        let f2 = s.spawn(move || {
            gone.recv().unwrap();
            while st.try_recv(&mut t2).is_some() {}
            got(st.enter(&mut t2, LONG))
        });
        let mut handled = Vec::new();
        let mut first = true;
        let out = stage.serve(
            &mut t0,
            LONG,
            |r| {
                assert_eq!(
                    readers.fetch_add(1, std::sync::atomic::Ordering::SeqCst),
                    0,
                    "two heads"
                );
                if std::mem::take(&mut first) {
                    until_waiting(st, 1);
                    for k in 0..6 {
                        assert_eq!(st.deliver(&2, k), Ok(NotifyOutcome::Recorded));
                    }
                    go.send(()).unwrap();
                    until_waiting(st, 2);
                }
                let item = common::script::read(r);
                readers.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
                item
            },
            |m| {
                handled.push(m);
                if m == 10 {
                    // Lent (ticket 1 is idle): both followers still queued,
                    // nobody promoted.
                    assert_eq!((st.waiting(), st.counters().promotions), (2, 0));
                    assert!(!st.is_headed());
                    let mut t3 = st.ticket(3).unwrap();
                    let Entry::Head(g) = st.enter(&mut t3, Some(Duration::ZERO)) else {
                        panic!("a lent headship is free: the re-entrant entry heads")
                    };
                    drop(g);
                    // Handed on to the idle follower (which may have headed
                    // and handed on again by now).
                    assert!(st.counters().promotions >= 1);
                    drop(t3);
                    ControlFlow::Continue(())
                } else {
                    ControlFlow::Break(m)
                }
            },
        );
        assert_eq!(out, Ok(11));
        assert_eq!(handled, [10, 11]);
        assert_eq!(f1.join().unwrap(), Got::Head);
        assert_eq!(f2.join().unwrap(), Got::Head);
    });
    quiet(&stage);
}

/// An idle follower is spared the hand-off, not its item: after `handle`
/// the head takes the lent headship back, reads the idle follower's item
/// and delivers it (one wake-up), then its own.
#[test]
fn an_idle_followers_item_still_reaches_it_after_the_head_lent() {
    let _w = watchdog("an_idle_followers_item_still_reaches_it_after_the_head_lent");
    let stage = stage(&[(0, 10), (1, 20), (0, 11)]);
    let mut t0 = stage.ticket(0).unwrap();
    let mut t1 = stage.ticket(1).unwrap();
    let mut t2 = stage.ticket(2).unwrap();
    let (go, gone) = mpsc::channel::<()>();
    thread::scope(|s| {
        let st = &stage;
        let f1 = s.spawn(move || {
            once_headed(st);
            st.recv(&mut t1, LONG, common::script::read)
        });
        let f2 = s.spawn(move || {
            gone.recv().unwrap();
            while st.try_recv(&mut t2).is_some() {}
            got(st.enter(&mut t2, LONG))
        });
        let mut in_handle = Vec::new();
        let out = stage.serve(
            &mut t0,
            LONG,
            read_after(|| {
                until_waiting(st, 1);
                for k in 0..6 {
                    assert_eq!(st.deliver(&2, k), Ok(NotifyOutcome::Recorded));
                }
                go.send(()).unwrap();
                until_waiting(st, 2);
            }),
            |m| {
                in_handle.push((m, st.counters().promotions));
                if m == 11 {
                    ControlFlow::Break(m)
                } else {
                    ControlFlow::Continue(())
                }
            },
        );
        assert_eq!(out, Ok(11));
        // Lent for the first; for the second it depends on whether the
        // idle follower's thread has dropped its ticket by then.
        assert_eq!(in_handle[0], (10, 0), "lent");
        assert_eq!(in_handle.len(), 2);
        assert_eq!(f1.join().unwrap(), Ok(20));
        assert_eq!(f2.join().unwrap(), Got::Head);
    });
    assert_eq!(
        stage.counters().woken,
        1,
        "the idle follower's item: one wake-up"
    );
    quiet(&stage);
}

/// The spin's count, `registered - idle_followers()`, with most of the
/// stage idle and the stage letting followers spin regardless of CPUs:
/// no underflow, and the idle followers still get their notifications.
#[test]
fn the_spins_count_with_every_other_follower_idle() {
    let _w = watchdog("the_spins_count_with_every_other_follower_idle");
    let stage: S = Stage::with_mailbox(common::script::items(&[])).spin_regardless_of_cpus();
    let n = 6u32;
    let mut head_t = stage.ticket(100).unwrap();
    let mut tickets: Vec<_> = (0..n).map(|k| stage.ticket(k).unwrap()).collect();
    let Entry::Head(head) = stage.enter(&mut head_t, None) else {
        panic!("nobody heads")
    };
    let (ready, readies) = mpsc::channel::<()>();
    thread::scope(|s| {
        let st = &stage;
        let fs: Vec<_> = tickets
            .iter_mut()
            .map(|t| {
                let ready = ready.clone();
                s.spawn(move || {
                    let mut seen = Vec::new();
                    for _ in 0..3 {
                        ready.send(()).unwrap();
                        match st.enter(t, LONG) {
                            Entry::Notified => seen.push(st.try_recv(t)),
                            other => panic!("expected Notified, got {:?}", got(other)),
                        }
                    }
                    seen
                })
            })
            .collect();
        // Each round: everyone queued, then many items to the first ticket
        // only (which re-enters each time, young), aging the others, then
        // one delivery to each.
        for round in 0..3 {
            for _ in 0..n {
                readies.recv().unwrap();
            }
            until_waiting(st, n as usize);
            for k in 0..n {
                assert_eq!(st.deliver(&k, round * 10 + k), Ok(NotifyOutcome::Woken));
            }
            // 2 * 7 items per round: anyone queued before is idle by the
            // next round's asks.
            for _ in 0..(2 * (n + 1)) {
                assert_eq!(head.notify(&100), NotifyOutcome::OwnToken);
            }
        }
        for (k, f) in fs.into_iter().enumerate() {
            let k = k as u32;
            assert_eq!(f.join().unwrap(), [Some(k), Some(10 + k), Some(20 + k)]);
        }
    });
    drop(head);
    quiet(&stage);
}

/// A noop waker (from `Waker::noop`, cloned: the stage stores its clone).
fn noop() -> &'static Waker {
    Waker::noop()
}

/// Random sequences of everything that moves a slot in or out of the FIFO
/// without `serve`: futures queued and leaked (`mem::forget`, the wait keeps
/// its place and a later entry takes it over through `wait_with`), futures
/// cancelled, tickets dropped while a leaked wait is queued (and their slots
/// reused), notifications and deliveries (the clock; a queued slot leaves),
/// promotions to leaked waits and their forwarding, entries that head and
/// hand on, zero time-out entries (each asks `idle_followers` with the FIFO
/// in whatever state, then leaves it by time-out), and `close`. A prefix
/// out of step with the FIFO would hit `idle_followers`'s `unreachable!`s
/// or an overflow check (`idle -= 1`, `registered - idle_followers()`).
#[test]
fn random_fifo_traffic_keeps_the_idle_prefix_consistent() {
    let _w = watchdog("random_fifo_traffic_keeps_the_idle_prefix_consistent");
    // Under Miri a few short sequences (the interpreter is ~1000x slower);
    // natively 100 of 3000 steps.
    let (seeds, steps) = if cfg!(miri) { (3, 150) } else { (100, 3000) };
    for seed in 1..=seeds {
        fuzz(seed, steps);
    }
}

fn fuzz(seed: u64, steps: usize) {
    let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    let stage: S = stage(&[]);
    const TOKENS: u32 = 8;
    thread::scope(|s| {
        let st = &stage;
        let mut tickets: Vec<Option<Ticket<'_, u32, _, u32>>> = (0..TOKENS).map(|_| None).collect();
        // A thread that heads until told to let go, so that entries queue.
        let mut holder: Option<(mpsc::Sender<()>, thread::ScopedJoinHandle<'_, ()>)> = None;
        let mut next_holder = 1000u32;
        let noise = [st.ticket(100).unwrap(), st.ticket(101).unwrap()];
        for _ in 0..steps {
            let k = rng.below(u64::from(TOKENS)) as usize;
            match rng.below(15) {
                0 | 1 => {
                    if tickets[k].is_none() {
                        tickets[k] = Some(st.ticket(k as u32).unwrap());
                    }
                }
                2 => drop(tickets[k].take()),
                3 | 4 => {
                    // Queue (or finish) through a future, then leak it.
                    if let Some(t) = tickets[k].as_mut() {
                        let mut fut = st.enter_async(t);
                        match poll_once(&mut fut, noop()) {
                            Poll::Pending => std::mem::forget(fut),
                            Poll::Ready(e) => {
                                got(e);
                            }
                        }
                    }
                }
                5 => {
                    // Queue through a future, then cancel it.
                    if let Some(t) = tickets[k].as_mut() {
                        let mut fut = st.enter_async(t);
                        if let Poll::Ready(e) = poll_once(&mut fut, noop()) {
                            got(e);
                        }
                    }
                }
                6 | 7 => {
                    if let Some(t) = tickets[k].as_mut() {
                        got(st.enter(t, Some(Duration::ZERO)));
                    }
                }
                8 => {
                    let _ = st.notify(&(k as u32));
                }
                // The clock: a burst of items for tickets that never wait,
                // so that leaked waits age into the idle prefix.
                12..=14 => {
                    for _ in 0..=rng.below(16) {
                        let noise = 100 + rng.below(2) as u32;
                        assert_eq!(st.notify(&noise), NotifyOutcome::Recorded);
                    }
                }
                9 => {
                    let _ = st.deliver(&(k as u32), rng.below(100) as u32);
                }
                10 => {
                    if let Some(t) = tickets[k].as_mut() {
                        while st.try_recv(t).is_some() {}
                    }
                }
                11 => match holder.take() {
                    Some((stop, h)) => {
                        stop.send(()).unwrap();
                        h.join().unwrap();
                    }
                    None => {
                        let (stop, stopped) = mpsc::channel::<()>();
                        let (took, taken) = mpsc::channel::<bool>();
                        let token = next_holder;
                        next_holder += 1;
                        let h = s.spawn(move || {
                            let mut t = st.ticket(token).unwrap();
                            match st.enter(&mut t, Some(Duration::ZERO)) {
                                Entry::Head(g) => {
                                    took.send(true).unwrap();
                                    stopped.recv().unwrap();
                                    drop(g);
                                }
                                other => {
                                    got(other);
                                    took.send(false).unwrap();
                                }
                            }
                        });
                        if taken.recv().unwrap() {
                            holder = Some((stop, h));
                        } else {
                            h.join().unwrap();
                        }
                    }
                },
                _ => unreachable!(),
            }
            assert!(st.waiting() <= st.tickets(), "seed {seed}");
        }
        if let Some((stop, h)) = holder.take() {
            stop.send(()).unwrap();
            h.join().unwrap();
        }
        st.close();
        assert_eq!(st.waiting(), 0, "seed {seed}");
        for t in tickets.iter_mut().flatten() {
            // A leaked wait notified before `close` reports that first.
            let mut entry = got(st.enter(t, Some(Duration::ZERO)));
            if entry == Got::Notified {
                entry = got(st.enter(t, Some(Duration::ZERO)));
            }
            assert_eq!(entry, Got::Closed, "seed {seed}");
        }
        drop(tickets);
        drop(noise);
        assert_eq!(st.tickets(), 0, "seed {seed}");
    });
    assert!(!stage.is_headed(), "seed {seed}");
}
