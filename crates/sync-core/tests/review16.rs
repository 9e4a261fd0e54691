//! Review 16: hostile review of `WakeToken` (c35874d), the three-state word
//! that `Parker` and exit-left's epoll parker now share. Every attack here
//! held: a table of every transition, and bounded stresses in which
//! notifications race very short deadlines (`end_park`) and must neither
//! be lost nor be seen twice. (exit-left's `tests/review16.rs` stresses the
//! epoll parker's use of the token through a stage.)

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};
use sync_core::{Parker, WakeToken};
use testkit::watchdog;

/// Rounds of a stress: fewer under Miri, which runs them ~1000x slower.
fn rounds(native: u64) -> u64 {
    if cfg!(miri) { native / 200 } else { native }
}

/// Spin-delay spans: under Miri every spin is interpreted, so the spread of
/// delays shrinks with the round count (the interleavings still vary).
fn span(native: u64) -> u64 {
    if cfg!(miri) { native / 100 } else { native }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Empty,
    Parked,
    Notified,
}

/// A token in `state`, reached through the public API only.
fn token_in(state: State) -> WakeToken {
    let t = WakeToken::new();
    match state {
        State::Empty => {}
        State::Parked => assert!(t.begin_park()),
        State::Notified => assert!(!t.notify()),
    }
    t
}

/// The token's state, read through the API (which changes it: the token
/// is used up).
fn state_of(t: WakeToken) -> State {
    if t.is_notified() {
        State::Notified
    } else if t.notify() {
        State::Parked
    } else {
        State::Empty
    }
}

/// Attacked: every transition the contract allows, one at a time: what
/// each operation returns from each state, and the state it leaves.
/// `notify` asks for a wake-up only from PARKED (so at most once per park:
/// a second notification during the same park collapses into the token);
/// `begin_park`, `end_park` and `try_consume` take a token exactly when
/// one waits; `end_park` from PARKED with no token reports a time-out.
#[test]
fn every_transition_of_the_token_word() {
    use State::*;
    type Op = fn(&WakeToken) -> bool;
    let ops: [(&str, Op); 4] = [
        ("notify", |t| t.notify()),
        ("try_consume", WakeToken::try_consume),
        ("begin_park", |t| t.begin_park()),
        ("end_park", WakeToken::end_park),
    ];
    // (from, op, returns, leaves); begin_park from PARKED (a second
    // announcement without ending the first) is outside the contract.
    let table: &[(State, &str, bool, State)] = &[
        (Empty, "notify", false, Notified),
        (Empty, "try_consume", false, Empty),
        (Empty, "begin_park", true, Parked),
        (Empty, "end_park", false, Empty),
        (Parked, "notify", true, Notified),
        (Parked, "try_consume", false, Parked),
        (Parked, "end_park", false, Empty),
        (Notified, "notify", false, Notified),
        (Notified, "try_consume", true, Empty),
        (Notified, "begin_park", false, Empty),
        (Notified, "end_park", true, Empty),
    ];
    for &(from, name, returns, leaves) in table {
        let op = ops.iter().find(|(n, _)| *n == name).unwrap().1;
        let t = token_in(from);
        assert_eq!(t.is_notified(), from == Notified, "is_notified in {from:?}");
        assert_eq!(op(&t), returns, "{name} from {from:?}");
        assert_eq!(state_of(t), leaves, "{name} from {from:?}");
    }
    // A whole park: one wake-up asked for, the rest collapse, one token.
    let t = WakeToken::new();
    assert!(t.begin_park());
    assert!(t.notify());
    assert!(!t.notify() && !t.notify());
    assert!(t.try_consume());
    assert!(!t.try_consume() && !t.end_park());
    assert!(!t.notify(), "the park ended: nobody to wake");
    assert!(!t.begin_park(), "the token stops the next sleep");
    assert!(t.begin_park(), "and is gone");
    assert!(!t.end_park());
    assert_eq!(
        format!("{:?}", WakeToken::default()),
        "WakeToken { notified: false }"
    );
}

/// Attacked: the token word alone, on real threads: an owner that
/// announces a park and ends it at once (a zero time-out) while a waker
/// notifies. The notification is seen exactly once per round: by
/// `begin_park`, `end_park` or the `try_consume` after the waker is done.
#[test]
fn a_notification_racing_begin_and_end_park_is_seen_once() {
    let _w = watchdog("a_notification_racing_begin_and_end_park_is_seen_once");
    let token = WakeToken::new();
    let go = Barrier::new(2);
    let done = Barrier::new(2);
    let mut bad = None;
    thread::scope(|s| {
        s.spawn(|| {
            for i in 0..rounds(20_000) as u32 {
                go.wait();
                for _ in 0..i % 64 {
                    std::hint::spin_loop();
                }
                let _ = token.notify();
                done.wait();
            }
        });
        for i in 0..rounds(20_000) as u32 {
            go.wait();
            let mut seen = 0;
            for k in 0..i % 3 {
                if !token.begin_park() {
                    seen += 1;
                    continue;
                }
                // "Asleep" for a while, then the time-out.
                for _ in 0..(i * 13 + k) % 128 {
                    std::hint::spin_loop();
                }
                if token.end_park() {
                    seen += 1;
                }
            }
            done.wait();
            if token.try_consume() {
                seen += 1;
            }
            // Recorded, not asserted: the waker must get through every
            // round's barriers.
            if (seen != 1 || token.is_notified()) && bad.is_none() {
                bad = Some((i, seen));
            }
        }
    });
    assert_eq!(
        bad, None,
        "(round, times seen): one notification, seen once"
    );
}

/// Attacked: `Parker::park_deadline` with very short deadlines (so the
/// time-out and `end_park` race the token) against `Unparker::unpark`, one
/// notification per round: it is never lost (the owner sees it within
/// 10 s of parking on), and never seen twice. Bounded: a lost round stops
/// both threads.
#[test]
fn park_deadline_never_loses_a_racing_unpark() {
    let _w = watchdog("park_deadline_never_loses_a_racing_unpark");
    let parker = Parker::new();
    let unparker = parker.unparker();
    let go = Barrier::new(2);
    let stop = AtomicBool::new(false);
    let mut lost = None;
    thread::scope(|s| {
        s.spawn(|| {
            for i in 0..rounds(5_000) {
                go.wait();
                if stop.load(Ordering::SeqCst) {
                    return;
                }
                for _ in 0..(i * 7919) % span(5_000) {
                    std::hint::spin_loop();
                }
                unparker.unpark();
            }
        });
        for i in 0..rounds(5_000) {
            go.wait();
            let give_up = Instant::now() + Duration::from_secs(10);
            let mut tries = 0u64;
            let mut got = false;
            while !got && Instant::now() < give_up {
                // Mostly deadlines already passed (begin_park, then at
                // once end_park: the token races the time-out), sometimes
                // a short real sleep.
                let nanos = if (i + tries) % 8 == 7 { 2_000 } else { 0 };
                got = parker.park_deadline(Instant::now() + Duration::from_nanos(nanos));
                tries += 1;
            }
            // Seen twice: a second token although one unpark was made.
            if !got || parker.try_consume() || parker.is_notified() {
                lost = Some((i, got));
                stop.store(true, Ordering::SeqCst);
                if i + 1 < 5_000 {
                    go.wait(); // lets the unparker see `stop`
                }
                break;
            }
        }
    });
    assert_eq!(
        lost, None,
        "(round, seen): a notification lost, or seen twice"
    );
}

/// Attacked: several wakers (unparkers and the parker's `Waker`) per round
/// racing short deadlines: at least one token reaches the owner, several
/// collapse, and none is left over once all wakers are done and the owner
/// has taken what was there.
#[test]
fn several_wakers_racing_short_deadlines_collapse_and_are_not_lost() {
    let _w = watchdog("several_wakers_racing_short_deadlines_collapse_and_are_not_lost");
    const WAKERS: usize = 3;
    let rounds_here = rounds(2_000);
    let parker = Parker::new();
    let go = Arc::new(Barrier::new(WAKERS + 1));
    let done = Arc::new(Barrier::new(WAKERS + 1));
    let stop = Arc::new(AtomicBool::new(false));
    let mut failure = None;
    let handles: Vec<_> = (0..WAKERS)
        .map(|k| {
            let (go, done, stop) = (Arc::clone(&go), Arc::clone(&done), Arc::clone(&stop));
            let unparker = parker.unparker();
            let waker = parker.waker();
            thread::spawn(move || {
                for i in 0..rounds_here {
                    go.wait();
                    if stop.load(Ordering::SeqCst) {
                        return;
                    }
                    for _ in 0..(i * 31 + k as u64 * 977) % span(3_000) {
                        std::hint::spin_loop();
                    }
                    if k == 0 {
                        waker.wake_by_ref();
                    } else {
                        unparker.unpark();
                    }
                    done.wait();
                }
            })
        })
        .collect();
    for i in 0..rounds_here {
        go.wait();
        let give_up = Instant::now() + Duration::from_secs(10);
        let mut seen = 0;
        while seen == 0 && Instant::now() < give_up {
            if parker.park_deadline(Instant::now() + Duration::from_nanos(i % 5 * 300)) {
                seen += 1;
            }
        }
        done.wait();
        // Every waker is done: a token that arrived after the owner's
        // take is still there; nothing is there twice.
        if parker.try_consume() {
            seen += 1;
        }
        if seen == 0 || parker.try_consume() {
            failure = Some(i);
            stop.store(true, Ordering::SeqCst);
            if i + 1 < rounds_here {
                go.wait(); // lets the wakers see `stop`
            }
            break;
        }
    }
    for h in handles {
        h.join().unwrap();
    }
    assert_eq!(failure, None, "a notification lost, or two tokens at once");
}
