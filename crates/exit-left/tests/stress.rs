//! Stress: real threads, random time-outs, random notifications and
//! deliveries from heads and from outside. At the end every delivered
//! message was received exactly once, by its owner, and the stage never had
//! two heads at once.

mod common;

use common::{Rng, iters, watchdog};
use exit_left::{Entry, NotifyOutcome, Stage};
use std::sync::Barrier;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::thread;
use std::time::Duration;

#[derive(Clone, Copy)]
struct Msg {
    id: u64,
    to: usize,
}

fn run(workers: usize, rounds: usize, notifiers: usize, sends: usize) {
    let stage: Stage<usize, (), Msg> = Stage::with_mailbox(());
    let next_id = AtomicU64::new(0);
    let heads = AtomicUsize::new(0);
    let max_heads = AtomicUsize::new(0);
    let done = Barrier::new(workers + notifiers);
    let deliver = |rng: &mut Rng, via: &dyn Fn(usize, Msg) -> bool| {
        let to = rng.below(workers as u64) as usize;
        let id = next_id.fetch_add(1, Ordering::Relaxed);
        assert!(
            via(to, Msg { id, to }),
            "every worker's ticket lives until the end"
        );
    };
    // Every ticket exists before the first delivery.
    let tickets: Vec<_> = (0..workers).map(|me| stage.ticket(me).unwrap()).collect();
    let received: Vec<Vec<Msg>> = thread::scope(|s| {
        for n in 0..notifiers {
            let (stage, done, deliver) = (&stage, &done, &deliver);
            s.spawn(move || {
                let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ (n as u64 + 1) << 32);
                for _ in 0..sends {
                    deliver(&mut rng, &|to, m| stage.deliver(&to, m).is_ok());
                    if rng.below(4) == 0 {
                        // A bare notification: a spurious wake-up for its owner.
                        let to = rng.below(workers as u64) as usize;
                        assert_ne!(stage.notify(&to), NotifyOutcome::NoSuchToken);
                    }
                    if rng.below(8) == 0 {
                        thread::sleep(Duration::from_micros(rng.below(200)));
                    }
                }
                done.wait();
            });
        }
        let joins: Vec<_> = tickets
            .into_iter()
            .enumerate()
            .map(|(me, mut ticket)| {
                let (stage, done, deliver, heads, max_heads) =
                    (&stage, &done, &deliver, &heads, &max_heads);
                s.spawn(move || {
                    let mut rng = Rng(0xD1B5_4A32_D192_ED03 ^ (me as u64 + 1));
                    let mut got = Vec::new();
                    for _ in 0..rounds {
                        let timeout = match rng.below(4) {
                            0 => Some(Duration::ZERO),
                            _ => Some(Duration::from_micros(rng.below(2000))),
                        };
                        match stage.enter(&mut ticket, timeout) {
                            Entry::Head(head) => {
                                let now = heads.fetch_add(1, Ordering::SeqCst) + 1;
                                max_heads.fetch_max(now, Ordering::SeqCst);
                                for _ in 0..rng.below(4) {
                                    deliver(&mut rng, &|to, m| head.deliver(&to, m).is_ok());
                                }
                                if rng.below(4) == 0 {
                                    thread::sleep(Duration::from_micros(rng.below(300)));
                                }
                                heads.fetch_sub(1, Ordering::SeqCst);
                                drop(head);
                            }
                            Entry::Notified | Entry::TimedOut => {}
                            Entry::Closed => unreachable!("nobody closes"),
                        }
                        while let Some(m) = stage.try_recv(&mut ticket) {
                            got.push(m);
                        }
                    }
                    // After every notifier and every worker stopped
                    // delivering, collect what is left.
                    done.wait();
                    while let Some(m) = stage.try_recv(&mut ticket) {
                        got.push(m);
                    }
                    (me, got)
                })
            })
            .collect();
        let mut by_worker = vec![Vec::new(); workers];
        for j in joins {
            let (me, got) = j.join().unwrap();
            by_worker[me] = got;
        }
        by_worker
    });
    assert_eq!(max_heads.load(Ordering::SeqCst), 1, "two heads at once");
    let sent = next_id.load(Ordering::Relaxed) as usize;
    let mut seen = vec![false; sent];
    for (me, got) in received.iter().enumerate() {
        for m in got {
            assert_eq!(m.to, me, "message {} went to the wrong owner", m.id);
            assert!(!seen[m.id as usize], "message {} received twice", m.id);
            seen[m.id as usize] = true;
        }
    }
    let lost: Vec<usize> = (0..sent).filter(|&i| !seen[i]).collect();
    assert!(
        lost.is_empty(),
        "lost {} of {sent}: {:?}",
        lost.len(),
        &lost[..lost.len().min(10)]
    );
    assert_eq!(stage.tickets(), 0);
    assert_eq!(stage.waiting(), 0);
    assert!(!stage.is_headed());
    let c = stage.counters();
    eprintln!("sent {sent}; {c:?}");
}

#[test]
fn every_message_is_received_exactly_once_and_never_two_heads() {
    let _w = watchdog("every_message_is_received_exactly_once_and_never_two_heads");
    run(6, iters(3000, 20), 2, iters(5000, 30));
}

#[test]
fn many_waiters_few_cores() {
    let _w = watchdog("many_waiters_few_cores");
    run(24, iters(400, 4), 1, iters(3000, 20));
}
