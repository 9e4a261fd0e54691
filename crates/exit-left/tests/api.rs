//! The API's behaviour, one property per test. Threads are real; every
//! test that can block runs under a watchdog.

mod common;

use common::script::{Items, items, read};
use common::{LONG, iters, poll_once, until_waiting, watchdog};
use exit_left::{Entry, NotifyOutcome, RecvError, Stage, TicketError, Undelivered};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Poll, Waker};
use std::thread;
use std::time::Duration;
use testkit::{HostileWaker, Misbehaviour};

#[test]
fn the_first_entry_heads_and_dropping_the_guard_frees_the_stage() {
    let stage = Stage::new(7u8);
    let mut t = stage.ticket(1).unwrap();
    let Entry::Head(head) = stage.enter(&mut t, None) else {
        panic!("the first entry must head")
    };
    assert_eq!(*head.resource(), 7);
    assert!(stage.is_headed());
    drop(head);
    assert!(!stage.is_headed());
    assert!(stage.enter(&mut t, None).is_head());
}

#[test]
fn a_taken_token_is_a_typed_error_and_free_again_after_the_drop() {
    let stage = Stage::new(());
    let t = stage.ticket("a").unwrap();
    assert_eq!(stage.ticket("a").unwrap_err(), TicketError::Taken);
    assert_eq!(stage.tickets(), 1);
    drop(t);
    assert_eq!(stage.tickets(), 0);
    let _again = stage.ticket("a").unwrap();
}

#[test]
fn a_notification_before_enter_is_returned_at_once_even_when_nobody_heads() {
    let stage = Stage::new(());
    let mut t = stage.ticket(1).unwrap();
    assert_eq!(stage.notify(&1), NotifyOutcome::Recorded);
    assert_eq!(stage.notify(&1), NotifyOutcome::Recorded);
    assert!(matches!(
        stage.enter(&mut t, Some(Duration::ZERO)),
        Entry::Notified
    ));
    // Coalesced: the second notification did not queue a second `Notified`.
    assert!(stage.enter(&mut t, None).is_head());
    assert_eq!(stage.notify(&99), NotifyOutcome::NoSuchToken);
    let c = stage.counters();
    assert_eq!((c.recorded, c.no_such_token), (2, 1));
}

#[test]
fn a_follower_times_out_and_leaves_the_fifo() {
    let _w = watchdog("a_follower_times_out_and_leaves_the_fifo");
    let stage = Stage::new(());
    let mut head_t = stage.ticket(0).unwrap();
    let mut t = stage.ticket(1).unwrap();
    let head = stage.enter(&mut head_t, None);
    thread::scope(|s| {
        s.spawn(|| {
            assert!(matches!(
                stage.enter(&mut t, Some(Duration::from_millis(20))),
                Entry::TimedOut
            ));
        });
    });
    assert_eq!(stage.waiting(), 0);
    assert_eq!(stage.counters().timeouts, 1);
    drop(head);
    assert!(!stage.is_headed(), "nobody waits: the headship is free");
}

#[test]
fn a_follower_is_woken_by_its_token_only() {
    let _w = watchdog("a_follower_is_woken_by_its_token_only");
    let stage = Stage::new(());
    let mut h = stage.ticket(0).unwrap();
    let mut a = stage.ticket(1).unwrap();
    let mut b = stage.ticket(2).unwrap();
    let head = stage.enter(&mut h, None);
    assert!(head.is_head());
    thread::scope(|s| {
        let ja = s.spawn(|| stage.enter(&mut a, LONG).is_head());
        let jb = s.spawn(|| matches!(stage.enter(&mut b, LONG), Entry::Notified));
        until_waiting(&stage, 2);
        assert_eq!(stage.notify(&2), NotifyOutcome::Woken);
        assert!(jb.join().unwrap(), "b was notified");
        assert_eq!(stage.waiting(), 1, "a still waits");
        drop(head);
        assert!(ja.join().unwrap(), "a was promoted");
    });
    assert_eq!(stage.counters().promotions, 1);
}

#[test]
fn close_wakes_every_waiter_and_later_entries_return_closed() {
    let _w = watchdog("close_wakes_every_waiter_and_later_entries_return_closed");
    let stage = Stage::new(());
    let mut h = stage.ticket(0).unwrap();
    let Entry::Head(head) = stage.enter(&mut h, None) else {
        panic!()
    };
    let mut tickets: Vec<_> = (1..=3).map(|i| stage.ticket(i).unwrap()).collect();
    thread::scope(|s| {
        let joins: Vec<_> = tickets
            .iter_mut()
            .map(|t| {
                let stage = &stage;
                s.spawn(move || matches!(stage.enter(t, None), Entry::Closed))
            })
            .collect();
        until_waiting(&stage, 3);
        stage.close();
        for j in joins {
            assert!(j.join().unwrap());
        }
    });
    // The head keeps its guard until it drops it; nobody is promoted after.
    assert_eq!(*head.resource(), ());
    drop(head);
    assert!(!stage.is_headed());
    assert!(matches!(stage.enter(&mut h, None), Entry::Closed));
    stage.close();
}

#[test]
fn the_resource_is_shared_with_non_heads_when_it_is_sync() {
    let stage = Stage::new(AtomicUsize::new(0));
    let mut t = stage.ticket(0).unwrap();
    let head = stage.enter(&mut t, None);
    stage.resource().fetch_add(1, Ordering::Relaxed);
    let Entry::Head(head) = head else { panic!() };
    assert_eq!(head.resource().load(Ordering::Relaxed), 1);
}

#[test]
fn deliver_buffers_and_notifies_in_one_step_and_gives_back_the_undeliverable() {
    let stage: Stage<u32, (), String> = Stage::with_mailbox(());
    let mut t = stage.ticket(1).unwrap();
    assert_eq!(stage.deliver(&1, "a".into()), Ok(NotifyOutcome::Recorded));
    assert_eq!(
        stage.deliver(&2, "lost?".into()),
        Err(Undelivered("lost?".to_string()))
    );
    assert!(matches!(stage.enter(&mut t, None), Entry::Notified));
    assert_eq!(stage.try_recv(&mut t).as_deref(), Some("a"));
    assert_eq!(stage.try_recv(&mut t), None);
}

#[test]
fn recv_reads_as_head_routes_to_others_and_returns_its_own() {
    let _w = watchdog("recv_reads_as_head_routes_to_others_and_returns_its_own");
    // The "resource": items in arrival order; `None` when drained.
    let items = std::sync::Mutex::new(vec![(1u32, 10u32), (2, 20), (2, 21), (3, 30)]);
    items.lock().unwrap().reverse();
    let stage: Stage<u32, _, u32> = Stage::with_mailbox(items);
    let mut t1 = stage.ticket(1).unwrap();
    let mut t2 = stage.ticket(2).unwrap();
    let mut t3 = stage.ticket(3).unwrap();
    let read = |r: &std::sync::Mutex<Vec<(u32, u32)>>| Ok::<_, ()>(r.lock().unwrap().pop());
    // Ticket 3 heads: routes 10, 20 and 21 to the others and returns 30.
    assert_eq!(stage.recv(&mut t3, LONG, read), Ok(30));
    assert_eq!(stage.recv(&mut t1, LONG, read), Ok(10));
    assert_eq!(stage.recv(&mut t2, LONG, read), Ok(20));
    assert_eq!(stage.recv(&mut t2, LONG, read), Ok(21));
    assert_eq!(
        stage.recv(&mut t2, Some(Duration::from_millis(5)), read),
        Err(RecvError::TimedOut)
    );
    assert!(!stage.is_headed());
    stage.close();
    assert_eq!(stage.recv(&mut t2, None, read), Err(RecvError::Closed));
}

#[test]
fn recv_drops_and_counts_items_for_strangers_and_reports_read_errors() {
    let items = std::sync::Mutex::new(vec![(1u32, 1u32), (9, 9)]);
    let stage: Stage<u32, _, u32> = Stage::with_mailbox(items);
    let mut t1 = stage.ticket(1).unwrap();
    assert_eq!(
        stage.recv(&mut t1, LONG, |r| Ok::<_, ()>(r.lock().unwrap().pop())),
        Ok(1)
    );
    assert_eq!(stage.counters().unrouted, 1);
    assert_eq!(
        stage.recv(&mut t1, LONG, |_| Err::<Option<(u32, u32)>, _>("broken")),
        Err(RecvError::Read("broken"))
    );
    assert!(!stage.is_headed(), "an error hands the headship on");
}

#[test]
fn async_and_blocking_waiters_share_one_fifo() {
    let _w = watchdog("async_and_blocking_waiters_share_one_fifo");
    let stage = Stage::new(());
    let mut h = stage.ticket(0).unwrap();
    let mut a = stage.ticket(1).unwrap();
    let mut b = stage.ticket(2).unwrap();
    let head = stage.enter(&mut h, None);
    let task = HostileWaker::new(Misbehaviour::None);
    let mut fut = stage.enter_async(&mut a);
    assert!(poll_once(&mut fut, &task.waker()).is_pending());
    thread::scope(|s| {
        let jb = s.spawn(|| stage.enter(&mut b, LONG).is_head());
        until_waiting(&stage, 2);
        drop(head); // the task waited first: it is promoted
        assert_eq!(task.wakes(), 1);
        let Poll::Ready(Entry::Head(g)) = poll_once(&mut fut, &task.waker()) else {
            panic!("the task was promoted")
        };
        drop(g); // then the thread
        assert!(jb.join().unwrap());
    });
}

#[test]
fn an_async_poll_compares_with_the_stored_waker_and_wakes_the_last_poller() {
    let stage = Stage::new(());
    let mut h = stage.ticket(0).unwrap();
    let mut a = stage.ticket(1).unwrap();
    let head = stage.enter(&mut h, None);
    // A well-behaved waker: its clones share the pointer, so a second poll
    // with it finds the stored clone equal and does not clone again.
    let counting = Arc::new(Counting::default());
    let w = Waker::from(Arc::clone(&counting));
    let mut fut = stage.enter_async(&mut a);
    assert!(poll_once(&mut fut, &w).is_pending());
    assert!(poll_once(&mut fut, &w).is_pending());
    assert_eq!(
        Arc::strong_count(&counting),
        3,
        "w, the test's Arc, one stored clone"
    );
    // Every clone of a hostile waker is a new pointer: each poll replaces
    // the stored waker, and the one replaced is dropped.
    let task = HostileWaker::new(Misbehaviour::None);
    assert!(poll_once(&mut fut, &task.waker()).is_pending());
    assert_eq!(
        Arc::strong_count(&counting),
        2,
        "the old stored waker was dropped"
    );
    let other = HostileWaker::new(Misbehaviour::None);
    assert!(poll_once(&mut fut, &other.waker()).is_pending());
    assert_eq!(task.live(), 0);
    drop(head);
    assert_eq!(
        (
            counting.wakes.load(Ordering::Relaxed),
            task.wakes(),
            other.wakes()
        ),
        (0, 0, 1)
    );
    assert!(matches!(
        poll_once(&mut fut, &other.waker()),
        Poll::Ready(Entry::Head(_))
    ));
}

#[derive(Default)]
struct Counting {
    wakes: AtomicUsize,
}
impl std::task::Wake for Counting {
    fn wake(self: Arc<Self>) {
        self.wakes.fetch_add(1, Ordering::Relaxed);
    }
}

#[test]
fn a_panicking_waker_clone_leaves_the_stage_usable() {
    let stage = Stage::new(());
    let mut h = stage.ticket(0).unwrap();
    let mut a = stage.ticket(1).unwrap();
    let head = stage.enter(&mut h, None);
    let bad = HostileWaker::new(Misbehaviour::PanicOnClone);
    let mut fut = stage.enter_async(&mut a);
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        poll_once(&mut fut, &bad.waker())
    }));
    assert!(r.is_err());
    assert_eq!(stage.waiting(), 0, "nothing was queued");
    let good = HostileWaker::new(Misbehaviour::None);
    assert!(poll_once(&mut fut, &good.waker()).is_pending());
    drop(head);
    assert!(matches!(
        poll_once(&mut fut, &good.waker()),
        Poll::Ready(Entry::Head(_))
    ));
}

#[test]
fn a_panicking_waker_wake_still_hands_off_and_notifies() {
    let stage = Stage::new(());
    let mut h = stage.ticket(0).unwrap();
    let mut a = stage.ticket(1).unwrap();
    let mut b = stage.ticket(2).unwrap();
    let head = stage.enter(&mut h, None);
    let bad = HostileWaker::new(Misbehaviour::PanicOnWake);
    let mut fa = stage.enter_async(&mut a);
    assert!(poll_once(&mut fa, &bad.waker()).is_pending());
    let ok = HostileWaker::new(Misbehaviour::None);
    let mut fb = stage.enter_async(&mut b);
    assert!(poll_once(&mut fb, &ok.waker()).is_pending());
    // The hand-off catches the waker's panic (it may run while unwinding,
    // or while a caller returns a message): `drop(head)` returns normally.
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| drop(head)));
    assert!(r.is_ok(), "a hand-off does not pass a waker's panic on");
    let Poll::Ready(Entry::Head(g)) = poll_once(&mut fa, &ok.waker()) else {
        panic!("the hand-off to the task with the panicking waker happened")
    };
    assert!(poll_once(&mut fb, &ok.waker()).is_pending());
    drop(g);
    assert!(matches!(
        poll_once(&mut fb, &ok.waker()),
        Poll::Ready(Entry::Head(_))
    ));
}

#[test]
fn dropping_a_queued_future_leaves_nothing_behind() {
    let stage = Stage::new(());
    let mut h = stage.ticket(0).unwrap();
    let mut a = stage.ticket(1).unwrap();
    let head = stage.enter(&mut h, None);
    let task = HostileWaker::new(Misbehaviour::None);
    {
        let mut fut = stage.enter_async(&mut a);
        assert!(poll_once(&mut fut, &task.waker()).is_pending());
        assert_eq!(stage.waiting(), 1);
    }
    assert_eq!(stage.waiting(), 0);
    assert_eq!(task.live(), 0, "the stored waker was dropped");
    drop(head);
    assert!(!stage.is_headed());
}

#[test]
fn counters_count_each_kind_of_event() {
    let _w = watchdog("counters_count_each_kind_of_event");
    let stage = Stage::new(());
    let mut h = stage.ticket(0).unwrap();
    let mut a = stage.ticket(1).unwrap();
    let head = stage.enter(&mut h, None);
    let Entry::Head(head) = head else { panic!() };
    assert_eq!(head.notify(&0), NotifyOutcome::OwnToken);
    assert_eq!(head.notify(&1), NotifyOutcome::Recorded);
    assert_eq!(head.notify(&5), NotifyOutcome::NoSuchToken);
    let c = stage.counters();
    assert_eq!((c.own_token, c.recorded, c.no_such_token), (1, 1, 1));
    drop(head);
    assert!(matches!(stage.enter(&mut a, None), Entry::Notified));
}

/// Found in review: `recv`'s head checked `close` and its own mailbox only
/// when a read came back empty, so steady traffic for others kept it
/// reading past `close` (until its deadline, or for ever without one).
#[test]
fn recv_as_head_notices_close_and_its_own_mail_under_steady_traffic_for_others() {
    let _w =
        watchdog("recv_as_head_notices_close_and_its_own_mail_under_steady_traffic_for_others");
    let stage: Stage<u32, (), u32> = Stage::with_mailbox(());
    let mut t1 = stage.ticket(1).unwrap();
    let _t2 = stage.ticket(2).unwrap();
    // Always something for token 2, never for the head (token 1).
    let busy = |_: &()| {
        thread::yield_now();
        Ok::<_, ()>(Some((2, 0)))
    };
    thread::scope(|s| {
        let h = s.spawn(|| stage.recv(&mut t1, None, busy));
        while !stage.is_headed() {
            thread::yield_now();
        }
        assert_eq!(stage.deliver(&1, 42), Ok(NotifyOutcome::Recorded));
        assert_eq!(h.join().unwrap(), Ok(42), "the head saw its own mail");
    });
    thread::scope(|s| {
        let h = s.spawn(|| stage.recv(&mut t1, None, busy));
        while !stage.is_headed() {
            thread::yield_now();
        }
        stage.close();
        assert_eq!(
            h.join().unwrap(),
            Err(RecvError::Closed),
            "the head saw close"
        );
    });
}

/// A future leaked with `mem::forget` ends its borrow of the ticket while
/// its wait is still queued (or already resolved). The ticket's next entry
/// takes that wait over: it keeps its FIFO place, or gets the outcome the
/// leaked future never saw; the FIFO is never corrupted.
#[test]
fn an_entry_after_a_leaked_future_takes_its_wait_over() {
    let _w = watchdog("an_entry_after_a_leaked_future_takes_its_wait_over");
    let stage = Stage::new(());
    let mut h = stage.ticket(0).unwrap();
    let mut a = stage.ticket(1).unwrap();
    let mut b = stage.ticket(2).unwrap();
    let head = stage.enter(&mut h, None);
    let task = HostileWaker::new(Misbehaviour::None);
    // Queued, then leaked; b queues behind it.
    let mut fut = stage.enter_async(&mut a);
    assert!(poll_once(&mut fut, &task.waker()).is_pending());
    std::mem::forget(fut);
    let mut fb = stage.enter_async(&mut b);
    assert!(poll_once(&mut fb, &task.waker()).is_pending());
    assert_eq!(stage.waiting(), 2);
    // Re-entering with a keeps a's place (first) rather than queueing twice.
    thread::scope(|s| {
        let ja = s.spawn(|| stage.enter(&mut a, LONG).is_head());
        thread::sleep(Duration::from_millis(20));
        assert_eq!(stage.waiting(), 2, "a is queued once");
        drop(head);
        assert!(ja.join().unwrap(), "a kept its place and was promoted");
    });
    assert!(matches!(
        poll_once(&mut fb, &task.waker()),
        Poll::Ready(Entry::Head(_))
    ));
    drop(fb);
    // Resolved while leaked: a notification the leaked future never saw.
    let head = stage.enter(&mut h, None);
    let mut fut = stage.enter_async(&mut a);
    assert!(poll_once(&mut fut, &task.waker()).is_pending());
    std::mem::forget(fut);
    assert_eq!(stage.notify(&1), NotifyOutcome::Woken);
    thread::scope(|s| {
        s.spawn(|| assert!(matches!(stage.enter(&mut a, LONG), Entry::Notified)));
    });
    assert_eq!(stage.waiting(), 0);
    drop(head);
    drop((a, b));
    assert_eq!(stage.tickets(), 1);
}

#[test]
fn serve_handles_its_own_messages_between_reads_and_lends_the_headship_meanwhile() {
    let stage: Stage<u32, Items, u32> = Stage::with_mailbox(items(&[
        (1, 10),
        (2, 20),
        (1, 11),
        (2, 21),
        (1, 12),
        (1, 13),
    ]));
    let mut t1 = stage.ticket(1).unwrap();
    let mut t2 = stage.ticket(2).unwrap();
    let mut mine = Vec::new();
    let out = stage.serve(&mut t1, LONG, read, |m| {
        assert!(!stage.is_headed(), "the headship is lent while handling");
        mine.push(m);
        if mine.len() == 3 {
            std::ops::ControlFlow::Break("enough")
        } else {
            std::ops::ControlFlow::Continue(())
        }
    });
    assert_eq!(out, Ok("enough"));
    assert_eq!(mine, [10, 11, 12]);
    assert!(!stage.is_headed(), "handed on when serve returned");
    assert_eq!(
        (stage.try_recv(&mut t2), stage.try_recv(&mut t2)),
        (Some(20), Some(21))
    );
    assert_eq!(stage.counters().promotions, 0);
    // The rest is still in the resource.
    let out = stage.serve(&mut t1, LONG, read, std::ops::ControlFlow::Break);
    assert_eq!(out, Ok(13));
    // A time-out that has passed ends a serve before it reads.
    let out = stage.serve(&mut t1, Some(Duration::ZERO), read, |m| {
        panic!("nothing to handle, got {m}")
    });
    assert_eq!(out, Err::<(), _>(RecvError::TimedOut));
}

/// `serve`'s head frees the headship while it handles its own message; a
/// thread that enters meanwhile heads at once, and `serve` reads on after
/// the headship came back free.
#[test]
fn a_thread_entering_while_serve_lends_heads_at_once() {
    let _w = watchdog("a_thread_entering_while_serve_lends_heads_at_once");
    let stage: Stage<u32, Items, u32> = Stage::with_mailbox(items(&[(1, 10), (1, 11)]));
    let mut t1 = stage.ticket(1).unwrap();
    let mut mine = Vec::new();
    let out = stage.serve(&mut t1, LONG, read, |m| {
        mine.push(m);
        if m == 10 {
            thread::scope(|s| {
                s.spawn(|| {
                    let mut t2 = stage.ticket(2).unwrap();
                    assert!(stage.enter(&mut t2, LONG).is_head(), "heads at once");
                });
            });
            std::ops::ControlFlow::Continue(())
        } else {
            std::ops::ControlFlow::Break(())
        }
    });
    assert_eq!(out, Ok(()));
    assert_eq!(mine, [10, 11]);
    assert_eq!(stage.counters().promotions, 0, "nobody was woken to head");
}

/// A `serve` that ends (or whose `handle` panics) while its headship is
/// lent hands it to the follower that queued meanwhile: the follower, which
/// waits longer than the test would, must be promoted, not left behind a
/// free headship.
fn serve_ending_while_lent_promotes_the_waiting_follower(panic: bool) {
    let stage: Stage<u32, Items, u32> = Stage::with_mailbox(items(&[(1, 10)]));
    let mut t1 = stage.ticket(1).unwrap();
    thread::scope(|s| {
        let follower = s.spawn(|| {
            let mut t2 = stage.ticket(2).unwrap();
            while !stage.is_headed() {
                thread::yield_now();
            }
            stage.enter(&mut t2, LONG).is_head()
        });
        let serve = || {
            stage.serve(
                &mut t1,
                LONG,
                |r: &Items| {
                    until_waiting(&stage, 1);
                    read(r)
                },
                |m| {
                    assert!(!panic, "handle panics with {m}");
                    std::ops::ControlFlow::Break(m)
                },
            )
        };
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(serve)) {
            Ok(out) => assert!(!panic && out == Ok(10)),
            Err(payload) => {
                assert!(panic);
                drop(payload);
            }
        }
        assert!(follower.join().unwrap(), "the follower was promoted");
    });
    assert_eq!(stage.counters().promotions, 1);
}

#[test]
fn serve_returning_while_lent_promotes_the_waiting_follower() {
    let _w = watchdog("serve_returning_while_lent_promotes_the_waiting_follower");
    serve_ending_while_lent_promotes_the_waiting_follower(false);
}

#[test]
fn a_panicking_handle_while_lent_promotes_the_waiting_follower() {
    let _w = watchdog("a_panicking_handle_while_lent_promotes_the_waiting_follower");
    serve_ending_while_lent_promotes_the_waiting_follower(true);
}

#[test]
fn close_while_serve_lends_ends_it() {
    let _w = watchdog("close_while_serve_lends_ends_it");
    let stage: Stage<u32, Items, u32> = Stage::with_mailbox(items(&[(1, 10), (1, 11)]));
    let mut t1 = stage.ticket(1).unwrap();
    let out = stage.serve(&mut t1, LONG, read, |m| {
        assert_eq!(m, 10, "nothing is read after close");
        stage.close();
        std::ops::ControlFlow::<()>::Continue(())
    });
    assert_eq!(out, Err(RecvError::Closed));
    assert!(!stage.is_headed());
}

#[test]
fn serve_as_a_follower_gets_its_messages_and_close_ends_every_serve() {
    let _w = watchdog("serve_as_a_follower_gets_its_messages_and_close_ends_every_serve");
    let total = iters(300, 60) as u32;
    let list: Vec<(u32, u32)> = (0..total).map(|i| (i % 3, i)).collect();
    let stage: Stage<u32, Items, u32> = Stage::with_mailbox(items(&list));
    let tickets: Vec<_> = (0..3).map(|i| stage.ticket(i).unwrap()).collect();
    let got: Vec<Vec<u32>> = thread::scope(|s| {
        let joins: Vec<_> = tickets
            .into_iter()
            .map(|mut t| {
                let stage = &stage;
                s.spawn(move || {
                    let mut got = Vec::new();
                    let r = stage.serve(&mut t, LONG, read, |m| {
                        got.push(m);
                        std::ops::ControlFlow::<()>::Continue(())
                    });
                    assert_eq!(r, Err(RecvError::Closed));
                    got
                })
            })
            .collect();
        while !stage.resource().lock().unwrap().is_empty() {
            thread::yield_now();
        }
        // Everything read was routed; let the owners catch up, then close.
        let give_up = std::time::Instant::now() + Duration::from_secs(30);
        while stage.waiting() < 2 && std::time::Instant::now() < give_up {
            thread::yield_now();
        }
        stage.close();
        joins.into_iter().map(|j| j.join().unwrap()).collect()
    });
    for (owner, got) in got.iter().enumerate() {
        let want: Vec<u32> = (0..total).filter(|i| i % 3 == owner as u32).collect();
        assert_eq!(got, &want, "owner {owner} got all its own, in order");
    }
}
