//! `Stage::promote_when_readable`: a hand-off made while the resource has
//! nothing to read arms the resource in the follower's parker instead of
//! waking it; everything that ends such a promotion early still wakes it.
//!
//! The resource is the read end of a pipe (Miri emulates pipes); writing
//! a byte into the other end makes it readable.
#![cfg(target_os = "linux")]

mod common;

use common::{Got, LONG, got, poll_once, until_waiting, watchdog};
use exit_left::{Entry, Stage};
use std::fs::File;
use std::io::{Read, Write};
use std::sync::mpsc;
use std::task::Poll;
use std::thread;
use std::time::Duration;
use testkit::{HostileWaker, Misbehaviour};

type Gated = Stage<u32, File>;

/// A stage around one end of a fresh pair, promoting when readable, and
/// the other end (writing into it makes the resource readable).
fn gated() -> (Gated, File) {
    let (resource, feed) = testkit::pipe();
    (Stage::new(resource).promote_when_readable(), feed)
}

/// Long enough that a wrongly woken thread shows itself; it does not
/// measure anything.
fn settle() {
    thread::sleep(Duration::from_millis(if cfg!(miri) { 5 } else { 50 }));
}

/// How long a test waits for an outcome before calling it lost.
const PATIENCE: Duration = Duration::from_secs(20);

#[test]
fn a_hand_off_with_nothing_to_read_wakes_the_follower_only_when_the_resource_is_readable() {
    let _w = watchdog("gate_hand_off_sleeps_until_readable");
    let (stage, mut feed) = gated();
    let mut a = stage.ticket(1).unwrap();
    let mut b = stage.ticket(2).unwrap();
    let head = stage.enter(&mut a, None);
    assert!(head.is_head());
    thread::scope(|s| {
        let (tx, rx) = mpsc::channel();
        let stage = &stage;
        s.spawn(move || tx.send(got(stage.enter(&mut b, LONG))).unwrap());
        until_waiting(stage, 1);
        drop(head);
        let c = stage.counters();
        assert_eq!((c.promotions, c.promotions_when_readable), (1, 1));
        assert!(stage.is_headed(), "promised to the follower");
        settle();
        assert!(
            rx.try_recv().is_err(),
            "the follower was woken with nothing to read"
        );
        feed.write_all(b"x").unwrap();
        assert_eq!(rx.recv_timeout(PATIENCE), Ok(Got::Head));
    });
    assert!(!stage.is_headed());
}

#[test]
fn a_hand_off_with_something_to_read_wakes_the_follower_at_once() {
    let _w = watchdog("gate_hand_off_readable_wakes");
    let (stage, mut feed) = gated();
    let mut a = stage.ticket(1).unwrap();
    let mut b = stage.ticket(2).unwrap();
    let head = stage.enter(&mut a, None);
    thread::scope(|s| {
        let stage = &stage;
        let follower = s.spawn(move || got(stage.enter(&mut b, LONG)));
        until_waiting(stage, 1);
        feed.write_all(b"x").unwrap();
        drop(head);
        assert_eq!(follower.join().unwrap(), Got::Head);
    });
    let c = stage.counters();
    assert_eq!((c.promotions, c.promotions_when_readable), (1, 0));
}

#[test]
fn a_notification_wakes_a_follower_whose_promotion_waits_and_the_next_one_is_armed() {
    let _w = watchdog("gate_notification_beats_armed_promotion");
    let (stage, mut feed) = gated();
    let mut a = stage.ticket(1).unwrap();
    let mut b = stage.ticket(2).unwrap();
    let mut c = stage.ticket(3).unwrap();
    let head = stage.enter(&mut a, None);
    thread::scope(|s| {
        let stage = &stage;
        let (tx_b, rx_b) = mpsc::channel();
        let (tx_c, rx_c) = mpsc::channel();
        s.spawn(move || tx_b.send(got(stage.enter(&mut b, None))).unwrap());
        until_waiting(stage, 1);
        s.spawn(move || tx_c.send(got(stage.enter(&mut c, None))).unwrap());
        until_waiting(stage, 2);
        drop(head); // armed in 2's parker
        assert_eq!(stage.counters().promotions_when_readable, 1);
        stage.notify(&2);
        // 2 is woken for its notification; the headship goes on to 3,
        // armed in its turn, nothing being readable.
        assert_eq!(rx_b.recv_timeout(PATIENCE), Ok(Got::Notified));
        let k = stage.counters();
        assert_eq!((k.forwarded_promotions, k.promotions_when_readable), (1, 2));
        settle();
        assert!(rx_c.try_recv().is_err(), "3 was woken with nothing to read");
        feed.write_all(b"x").unwrap();
        assert_eq!(rx_c.recv_timeout(PATIENCE), Ok(Got::Head));
    });
}

#[test]
fn close_wakes_a_follower_whose_promotion_waits_for_the_resource() {
    let _w = watchdog("gate_close_wakes_armed");
    let (stage, _feed) = gated();
    let mut a = stage.ticket(1).unwrap();
    let mut b = stage.ticket(2).unwrap();
    let head = stage.enter(&mut a, None);
    thread::scope(|s| {
        let stage = &stage;
        let (tx, rx) = mpsc::channel();
        s.spawn(move || tx.send(got(stage.enter(&mut b, None))).unwrap());
        until_waiting(stage, 1);
        drop(head);
        assert_eq!(stage.counters().promotions_when_readable, 1);
        stage.close();
        assert_eq!(rx.recv_timeout(PATIENCE), Ok(Got::Closed));
    });
    assert!(!stage.is_headed());
}

#[test]
fn a_follower_whose_promotion_waits_heads_at_its_deadline() {
    let _w = watchdog("gate_deadline_heads");
    let (stage, _feed) = gated();
    let mut a = stage.ticket(1).unwrap();
    let mut b = stage.ticket(2).unwrap();
    let head = stage.enter(&mut a, None);
    thread::scope(|s| {
        let stage = &stage;
        let follower = s.spawn(move || got(stage.enter(&mut b, Some(Duration::from_millis(200)))));
        until_waiting(stage, 1);
        drop(head);
        // Resolution beats the clock: promoted by the deadline, it heads.
        assert_eq!(follower.join().unwrap(), Got::Head);
    });
    assert_eq!(stage.counters().timeouts, 0);
}

#[test]
fn a_task_is_woken_at_once_on_a_stage_that_promotes_when_readable() {
    let _w = watchdog("gate_task_woken_at_once");
    let (stage, _feed) = gated();
    let mut a = stage.ticket(1).unwrap();
    let mut b = stage.ticket(2).unwrap();
    let head = stage.enter(&mut a, None);
    let waker = HostileWaker::new(Misbehaviour::None);
    let mut fut = stage.enter_async(&mut b);
    assert!(poll_once(&mut fut, &waker.waker()).is_pending());
    drop(head);
    assert_eq!(waker.wakes(), 1, "a task has no parker to arm");
    assert_eq!(stage.counters().promotions_when_readable, 0);
    match poll_once(&mut fut, &waker.waker()) {
        Poll::Ready(Entry::Head(_)) => {}
        other => panic!("the task must head, got {:?}", other.map(got)),
    }
}

#[test]
fn a_promotion_that_waited_is_handed_on_by_its_follower_and_every_item_reaches_its_owner() {
    // Three owners take turns through `recv`: each reads its own item as
    // head (the others' items are not sent yet) and hands on, with nothing
    // to read, to the next, which the resource wakes when its item comes.
    let _w = watchdog("gate_recv_in_turns");
    let (resource, feed) = testkit::pipe();
    let stage: Stage<u32, File, u8> = Stage::with_mailbox(resource).promote_when_readable();
    const ROUNDS: u8 = if cfg!(miri) { 3 } else { 30 };
    let mut tickets: Vec<_> = (0..3).map(|k| stage.ticket(k).unwrap()).collect();
    thread::scope(|s| {
        let (done_tx, done_rx) = mpsc::channel::<u32>();
        for (k, mut ticket) in tickets.drain(..).enumerate() {
            let (stage, done_tx) = (&stage, done_tx.clone());
            s.spawn(move || {
                for round in 0..ROUNDS {
                    // One byte per item: the owner's number and the round.
                    let got = stage.recv(&mut ticket, LONG, |mut r: &File| {
                        let mut byte = [0u8];
                        r.read_exact(&mut byte)?;
                        Ok::<_, std::io::Error>(Some((u32::from(byte[0] >> 6), byte[0] & 63)))
                    });
                    assert_eq!(got.unwrap(), round, "owner {k}");
                    done_tx.send(k as u32).unwrap();
                }
            });
        }
        let mut feed = &feed;
        for round in 0..ROUNDS {
            for k in 0..3u8 {
                feed.write_all(&[k << 6 | round]).unwrap();
                assert_eq!(done_rx.recv_timeout(PATIENCE), Ok(u32::from(k)));
            }
        }
    });
    let c = stage.counters();
    assert_eq!(c.unrouted, 0);
    assert!(c.promotions >= c.promotions_when_readable);
}
