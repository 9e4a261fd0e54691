//! Followers that spin before parking (when the stage's recent spins paid
//! off) must lose no wake-up: a notification that lands during the spin is
//! left for the park that follows, which returns at once. The stage is made
//! with `spin_regardless_of_cpus`, so that its followers spin also where
//! the machine has fewer CPUs than the stage has tickets, minus one (under
//! Miri, which reports one CPU).

mod common;

use common::{Got, got};
use exit_left::{Entry, NotifyOutcome, Stage};
use std::sync::mpsc;
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::Duration;

/// Rounds of the ping-pong (fewer under Miri, which is slow).
const ROUNDS: u32 = if cfg!(miri) { 40 } else { 20_000 };

/// Two followers ping-pong by notification while a third thread heads, so
/// every wait is a follower's, and every wait ends within a few
/// microseconds: the spins pay off and the stage's followers spin. Waits
/// have no time-out: a notification a spin swallowed would leave its
/// follower parked for good, which the bounded wait below reports.
#[test]
fn a_ping_pong_of_followers_loses_no_notification() {
    let stage = Arc::new(Stage::<u8, ()>::new(()).spin_regardless_of_cpus());
    let mut head_ticket = stage.ticket(0).unwrap();
    let Entry::Head(head) = stage.enter(&mut head_ticket, None) else {
        panic!("nobody heads a new stage");
    };
    let (done_tx, done) = mpsc::channel();
    let both = Arc::new(Barrier::new(2));
    for (me, peer) in [(1u8, 2u8), (2, 1)] {
        let (stage, done_tx, both) = (Arc::clone(&stage), done_tx.clone(), Arc::clone(&both));
        thread::spawn(move || {
            let mut ticket = stage.ticket(me).unwrap();
            // Both tickets exist before the first notification (one for a
            // token without a ticket is dropped: `NoSuchToken`).
            both.wait();
            let mut received = 0;
            for round in 0..ROUNDS {
                // Player 1 serves first; each answers what it received.
                if me == 1 || round > 0 {
                    assert_ne!(stage.notify(&peer), NotifyOutcome::NoSuchToken);
                }
                if me == 1 && round == ROUNDS - 1 {
                    break;
                }
                assert_eq!(
                    got(stage.enter(&mut ticket, None)),
                    Got::Notified,
                    "follower {me}"
                );
                received += 1;
            }
            done_tx.send((me, received)).unwrap();
        });
    }
    let limit = Duration::from_secs(if cfg!(miri) { 600 } else { 60 });
    let mut got = [0; 3];
    for _ in 0..2 {
        let (me, received) = done
            .recv_timeout(limit)
            .expect("a follower waits for a notification that was made: a wake-up was lost");
        got[usize::from(me)] = received;
    }
    assert_eq!(got[1], ROUNDS - 1, "player 1's notifications received");
    assert_eq!(got[2], ROUNDS, "player 2's notifications received");
    drop(head);
}
