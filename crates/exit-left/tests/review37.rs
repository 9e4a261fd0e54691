//! Hostile review of commit 6c99b84: `serve` decides and lends its headship
//! under one lock (`lend_locked`), and after `handle` takes it back together
//! with the head's next own message (`Lent::reclaim_with_mail`), starting
//! `head_loop` with that mail and `closed = false` instead of looking again.
//!
//! No finding. The attacks that held are kept as regression tests. Every
//! test that can block runs under a watchdog, and waits are bounded.

mod common;

use common::script::{Items, left, once_headed, outsider, quiet, read, stage};
use common::{Got, LONG, got, until_waiting, watchdog};
use exit_left::{Entry, NotifyOutcome, RecvError};
use std::cell::Cell;
use std::ops::ControlFlow;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::thread;
use std::time::{Duration, Instant};

/// While lent, another thread heads, delivers the lender's next message
/// and leaves (the headship free again); an outside thread delivers one
/// more. The lender takes the headship back with the first of them and
/// serves both, in order, before it reads again.
#[test]
fn mail_delivered_while_lent_is_served_in_order_before_the_next_read() {
    let _w = watchdog("mail_delivered_while_lent_is_served_in_order_before_the_next_read");
    let stage = stage(&[(0, 10), (1, 20), (0, 11)]);
    let mut t0 = stage.ticket(0).unwrap();
    let mut t1 = stage.ticket(1).unwrap();
    let mut t3 = stage.ticket(3).unwrap();
    let mut t3 = Some(&mut t3);
    let reads = Cell::new(0);
    let mut seen = Vec::new();
    let out = stage.serve(
        &mut t0,
        LONG,
        |r| {
            reads.set(reads.get() + 1);
            read(r)
        },
        |m| {
            seen.push((m, reads.get(), stage.is_headed()));
            if m == 10 {
                let (stage, t3) = (&stage, t3.take().unwrap());
                thread::scope(|s| {
                    s.spawn(move || {
                        let Entry::Head(g) = stage.enter(t3, Some(Duration::ZERO)) else {
                            panic!("the lent headship is free")
                        };
                        assert_eq!(g.deliver(&0, 100), Ok(NotifyOutcome::Recorded));
                        drop(g);
                        assert_eq!(stage.deliver(&0, 101), Ok(NotifyOutcome::Recorded));
                    });
                });
            }
            if m == 11 {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        },
    );
    assert_eq!(out, Ok(()));
    assert_eq!(
        seen,
        [
            (10, 1, false),
            (100, 1, false),
            (101, 1, false),
            (11, 3, false)
        ],
        "(message, reads so far, headed) in handle"
    );
    assert_eq!(stage.try_recv(&mut t1), Some(20));
    assert_eq!(stage.counters().promotions, 0);
    quiet(&stage);
}

/// `close` during the first read after a reclaim (the head assumed the
/// stage open, as it was when it took the headship back): noticed under
/// the lock that follows that read, before any other read. Mail for the
/// head that the same read brings (or that was delivered during it) is
/// still served; nothing more is read.
#[test]
fn close_during_the_read_after_a_reclaim_stops_before_the_next_read() {
    let _w = watchdog("close_during_the_read_after_a_reclaim_stops_before_the_next_read");
    for (item, mail) in [(false, false), (true, false), (false, true), (true, true)] {
        let stage = stage(&[(0, 10), (1, 20), (1, 21)]);
        let mut t0 = stage.ticket(0).unwrap();
        let _t1 = stage.ticket(1).unwrap();
        let mut reads = 0;
        let mut seen = Vec::new();
        let out = stage.serve(
            &mut t0,
            LONG,
            |r: &Items| {
                reads += 1;
                if reads == 2 {
                    if mail {
                        stage.deliver(&0, 100).unwrap();
                    }
                    stage.close();
                    if !item {
                        return Ok(None);
                    }
                }
                read(r)
            },
            |m| {
                seen.push(m);
                ControlFlow::<()>::Continue(())
            },
        );
        let case = format!("item read: {item}, own mail: {mail}");
        assert_eq!(out, Err(RecvError::Closed), "{case}");
        assert_eq!(reads, 2, "{case}");
        let want: &[u32] = if mail { &[10, 100] } else { &[10] };
        assert_eq!(seen, want, "{case}");
        assert_eq!(left(&stage), if item { 1 } else { 2 }, "{case}");
        quiet(&stage);
    }
}

/// Where `serve` panics after taking the headship back with its mail.
#[derive(Clone, Copy, Debug)]
enum PanicIn {
    /// `handle` of the reclaimed message (the headship lent again).
    Handle,
    /// The first read after the reclaimed message was served.
    Read,
}

/// A panic after a reclaim with mail hands the headship to the follower
/// queued since before the lend (one promotion, no double head, nobody
/// left heading), and the later mail stays in the mailbox.
#[test]
fn a_panic_after_a_reclaim_with_mail_hands_the_headship_on_and_keeps_later_mail() {
    let _w =
        watchdog("a_panic_after_a_reclaim_with_mail_hands_the_headship_on_and_keeps_later_mail");
    for panic_in in [PanicIn::Handle, PanicIn::Read] {
        let stage = stage(&[(0, 10), (1, 20)]);
        let mut t0 = stage.ticket(0).unwrap();
        let outsider = outsider(&stage);
        let mut t1 = stage.ticket(1).unwrap();
        let mut seen = Vec::new();
        thread::scope(|s| {
            let f = s.spawn(|| {
                once_headed(&stage);
                stage.recv(&mut t1, LONG, read)
            });
            let mut reads = 0;
            let serve = || {
                stage.serve(
                    &mut t0,
                    LONG,
                    |r| {
                        reads += 1;
                        match reads {
                            1 => {
                                until_waiting(&stage, 1);
                                read(r)
                            }
                            _ => panic!("deliberate: read_one panics"),
                        }
                    },
                    |m| {
                        seen.push(m);
                        assert!(!stage.is_headed() && stage.waiting() == 1, "lent");
                        match (m, panic_in) {
                            (10, PanicIn::Handle) => {
                                stage.deliver(&0, 100).unwrap();
                                stage.deliver(&0, 101).unwrap();
                            }
                            (10, PanicIn::Read) => {
                                stage.deliver(&0, 100).unwrap();
                            }
                            (100, PanicIn::Handle) => panic!("deliberate: handle panics"),
                            _ => {}
                        }
                        ControlFlow::<()>::Continue(())
                    },
                )
            };
            assert!(catch_unwind(AssertUnwindSafe(serve)).is_err());
            assert_eq!(f.join().unwrap(), Ok(20), "promoted, it read its item");
        });
        assert_eq!(seen, [10, 100], "{panic_in:?}");
        let later = match panic_in {
            PanicIn::Handle => Some(101),
            PanicIn::Read => None,
        };
        assert_eq!(stage.try_recv(&mut t0), later, "{panic_in:?}");
        assert_eq!(stage.counters().promotions, 1, "{panic_in:?}");
        drop(outsider);
        quiet(&stage);
    }
}

/// The deadline passes while `handle` serves a message taken with the
/// headship back: `serve` does not read again, serves what its mailbox
/// holds, hands the lent headship to the queued follower and reports
/// `TimedOut`.
#[test]
fn a_deadline_passing_while_handling_reclaimed_mail_serves_the_rest_without_reading() {
    let _w = watchdog(
        "a_deadline_passing_while_handling_reclaimed_mail_serves_the_rest_without_reading",
    );
    let stage = stage(&[(0, 10), (0, 11)]);
    let mut t0 = stage.ticket(0).unwrap();
    let outsider = outsider(&stage);
    let mut t1 = stage.ticket(1).unwrap();
    let timeout = Duration::from_secs(1);
    let first_read = Cell::new(None);
    let mut seen = Vec::new();
    thread::scope(|s| {
        let f = s.spawn(|| {
            once_headed(&stage);
            got(stage.enter(&mut t1, LONG))
        });
        let out = stage.serve(
            &mut t0,
            Some(timeout),
            |r| {
                if first_read.get().is_none() {
                    until_waiting(&stage, 1);
                    // `serve`'s deadline is at most this plus `timeout`.
                    first_read.set(Some(Instant::now()));
                }
                read(r)
            },
            |m| {
                seen.push(m);
                if m == 10 {
                    stage.deliver(&0, 100).unwrap();
                    stage.deliver(&0, 101).unwrap();
                }
                if m == 100 {
                    assert!(!stage.is_headed() && stage.waiting() == 1, "lent");
                    let past = first_read.get().unwrap() + timeout;
                    while Instant::now() <= past {
                        thread::sleep(Duration::from_millis(5));
                    }
                }
                ControlFlow::<()>::Continue(())
            },
        );
        assert_eq!(out, Err(RecvError::TimedOut));
        assert_eq!(f.join().unwrap(), Got::Head);
    });
    assert_eq!(seen, [10, 100, 101]);
    assert_eq!(left(&stage), 1, "not read after the deadline");
    assert_eq!(stage.counters().promotions, 1);
    drop(outsider);
    quiet(&stage);
}
