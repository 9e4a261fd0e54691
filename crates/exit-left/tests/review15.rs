//! Hostile review 15 of exit-left (at 15d2525): a descriptor that fired
//! is left in the thread's epoll set and tidied (`ready::tidy_thread`) at
//! the start of the thread's next wait on a promote-when-readable stage;
//! `ReadyWatch::arm` removes another descriptor left there; one
//! `registered` tracks what is in the set; `State::arm_share` picks the
//! parker (ready parker only while recent waits often ended in promotions
//! with nothing to read).
//!
//! Findings (`finding_*`, each failing on 15d2525; fixed since: 1 and 2,
//! a head woken by the resource tidies its set when it hands the headship
//! on, while the descriptor still names the resource, and a follower woken
//! for anything but the headship removes it at once; 3, the adaptive rule
//! is documented where the promise is made, and the test asserts it):
//!
//! 1. `tidy` removes the descriptor left in the set *by number*. If the
//!    number is closed while the file lives on (the stage's resource was a
//!    `try_clone` of a socket the program keeps), `EPOLL_CTL_DEL` can no
//!    longer reach the entry (`EBADF`, or another file's `ENOENT`): the
//!    thread's set holds the socket for the thread's life, one entry more
//!    per such stage, and every arrival on the socket calls into each of
//!    them (the cost the tidy was written to remove).
//! 2. Nothing tidies a set once its stage is gone, unless the thread waits
//!    again on some promote-when-readable stage: a stage over a shared
//!    socket (`Arc`, `&`) dropped after a fired promotion leaves the live
//!    socket in the thread's set.
//! 3. The documented contract ("a blocking follower that is promoted while
//!    the resource has nothing to read is not woken", in
//!    `promote_when_readable`, the crate's guarantees, `serve`'s hand-on
//!    rule and `gate.rs`) no longer holds after a few dozen waits ended by
//!    notifications: `arming_pays()` is false, followers wait on the futex
//!    parker, and a hand-off with nothing to read wakes them at once.
//!
//! Held (`held_*`): one thread alternating between two stages (the left
//! descriptor is tidied before the next wait; the other socket's traffic
//! does not wake it); a socket closed with its stage leaves no entry;
//! `arm_share` crossing the threshold both ways loses no promotion (and
//! arming resumes); a nested wait (in a leaked future's waker drop) whose
//! fired descriptor is left in the inner parker does not disturb the
//! outer wait; owners alternating between two stages under random
//! notifications receive every item exactly once, in order.
//!
//! Every wait is bounded. Epoll sets are inspected through
//! `/proc/self/fdinfo` (each entry's file inode), so Linux only, and not
//! under Miri (datagram pairs, `/proc`).
#![cfg(all(target_os = "linux", not(miri)))]

mod common;

use common::datagram::{read_item, stays_unset};
use common::{Got, Rng, got, poll_once, until_waiting, watchdog};
use exit_left::{Entry, RecvError, Stage};
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::net::UnixDatagram;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::task::Poll;
use std::thread;
use std::time::{Duration, Instant};

const FIVE: Option<Duration> = Some(Duration::from_secs(5));

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

/// The inode of the file behind `fd` (a socket: `socket:[N]`).
fn ino_of(fd: &impl AsFd) -> u64 {
    let link = std::fs::read_link(format!("/proc/self/fd/{}", fd.as_fd().as_raw_fd())).unwrap();
    let s = link.to_string_lossy().into_owned();
    let digits: String = s.chars().filter(char::is_ascii_digit).collect();
    digits.parse().unwrap()
}

/// How many entries of the process's epoll sets watch the file with inode
/// `ino` (armed or not). Reads every `anon_inode:[eventpoll]` descriptor's
/// fdinfo (`tfd: ... ino:<hex>` per entry).
fn sets_holding(ino: u64) -> usize {
    let mut n = 0;
    let Ok(dir) = std::fs::read_dir("/proc/self/fd") else {
        return 0;
    };
    for e in dir.flatten() {
        let Ok(target) = std::fs::read_link(e.path()) else {
            continue;
        };
        if target.to_string_lossy() != "anon_inode:[eventpoll]" {
            continue;
        }
        let name = e.file_name();
        let Ok(info) =
            std::fs::read_to_string(format!("/proc/self/fdinfo/{}", name.to_string_lossy()))
        else {
            continue;
        };
        for line in info.lines().filter(|l| l.starts_with("tfd:")) {
            let Some(hex) = line.split("ino:").nth(1) else {
                continue;
            };
            let hex: String = hex.chars().take_while(char::is_ascii_hexdigit).collect();
            if u64::from_str_radix(&hex, 16) == Ok(ino) {
                n += 1;
            }
        }
    }
    n
}

/// A resource that is (or shares) a datagram socket.
trait Sock: AsFd + Sync {
    fn sock(&self) -> &UnixDatagram;
}

impl Sock for UnixDatagram {
    fn sock(&self) -> &UnixDatagram {
        self
    }
}

impl Sock for Arc<UnixDatagram> {
    fn sock(&self) -> &UnixDatagram {
        self
    }
}

/// Drains whatever is readable now.
fn drain(s: &UnixDatagram) {
    let mut buf = [0u8; 16];
    s.set_nonblocking(true).unwrap();
    while s.recv(&mut buf).is_ok() {}
    s.set_nonblocking(false).unwrap();
}

/// One round on the calling thread: it follows on `stage` (a fresh ticket,
/// 5 s); a helper heads with another ticket, hands on once this thread is
/// queued, with nothing readable (this thread is armed asleep: checked),
/// then runs `wake(done)` (which must make the resource readable, or the
/// round ends at the 5 s deadline). As head, this thread drains the
/// socket. Returns what its `enter` returned.
fn follow_once<R: Sock>(stage: &Stage<u32, R>, wake: &(dyn Fn(&AtomicBool) + Sync)) -> Got {
    let mut head = stage.ticket(1).unwrap();
    let mut me = stage.ticket(2).unwrap();
    let done = AtomicBool::new(false);
    let (headed_tx, headed) = mpsc::channel::<()>();
    thread::scope(|s| {
        let helper = s.spawn(|| {
            let Entry::Head(guard) = stage.enter(&mut head, FIVE) else {
                panic!("the helper heads first")
            };
            headed_tx.send(()).unwrap();
            until_waiting(stage, 1);
            let before = stage.counters().promotions_when_readable;
            drop(guard);
            assert_eq!(
                stage.counters().promotions_when_readable,
                before + 1,
                "the follower was not armed asleep"
            );
            wake(&done);
        });
        headed.recv_timeout(Duration::from_secs(10)).unwrap();
        let e = stage.enter(&mut me, FIVE);
        done.store(true, Ordering::Release);
        let g = got_drained(e);
        helper.join().unwrap();
        g
    })
}

// ---------------------------------------------------------------------------
// Findings
// ---------------------------------------------------------------------------

/// Finding 1. A stage over a duplicate of a socket (`try_clone`; the
/// program keeps the original, to send, or for the next stage). This
/// thread's promotion on it fires: `disarm` leaves the entry
/// `(file, number)` in the thread's epoll set, `registered = number`.
/// The stage is dropped: the number is closed, the file lives on (the
/// original), so the kernel keeps the entry (epoll removes an entry only
/// when its *file* is released). The thread's next wait tidies:
/// `EPOLL_CTL_DEL(number)` fails (`EBADF`, or `ENOENT` once the number is
/// another file's: here `/dev/null`), `registered` is reset anyway, and
/// the entry stays for the thread's life. Three such stages: three entries
/// for one socket in one set, each called into on every arrival (the
/// commit measured 32 sets holding the socket at 10% of the saturated
/// throughput), and no later wait can remove them.
///
/// Fix: remove the entry while the number still names the file: at
/// `Stage`'s drop (the resource is still open there), for the watches its
/// promotions left it in (keep them in `State`, dropped as their threads
/// tidy; `compare_exchange(fd, -1)` on `registered` so that a set re-armed
/// meanwhile is not touched), or `EPOLL_CTL_DEL` in `disarm` also when it
/// fired if the stage is being torn down; at least document that a
/// promote-when-readable stage's resource must not be a duplicate of a
/// descriptor that outlives it.
#[test]
fn finding_1_a_stage_over_a_duplicate_leaves_the_socket_in_the_thread_set_for_good() {
    let _w =
        watchdog("finding_1_a_stage_over_a_duplicate_leaves_the_socket_in_the_thread_set_for_good");
    let (rx, tx) = UnixDatagram::pair().unwrap();
    let ino = ino_of(&rx);
    let mut spacers = Vec::new();
    for round in 0..3 {
        let stage: Stage<u32, UnixDatagram> =
            Stage::new(rx.try_clone().unwrap()).promote_when_readable();
        let g = follow_once(&stage, &|_| {
            tx.send(b"x").unwrap();
        });
        assert_eq!(g, Got::Head, "round {round}");
        drop(stage);
        // The clone's number goes to another file; the next clone gets
        // a new number.
        spacers.push(std::fs::File::open("/dev/null").unwrap());
    }
    // One more wait on a promote-when-readable stage: this thread tidies
    // its sets first.
    let (rx2, tx2) = UnixDatagram::pair().unwrap();
    let other: Stage<u32, UnixDatagram> = Stage::new(rx2).promote_when_readable();
    assert_eq!(
        follow_once(&other, &|_| {
            tx2.send(b"y").unwrap();
        }),
        Got::Head
    );
    let left = sets_holding(ino);
    assert_eq!(
        left, 0,
        "after its stages were dropped and this thread waited again, {left} entries of \
         this thread's epoll sets still watch the socket"
    );
    drop(spacers);
}

/// Finding 2. A stage over a shared socket (`Arc<UnixDatagram>`; `&sock`
/// is the same): this thread's promotion fires, the entry is left in its
/// set for the next wait's tidy. The stage is dropped; the socket lives on
/// (the program reads it some other way, or makes a plain stage over it).
/// Unless this thread waits again on some promote-when-readable stage,
/// nothing ever removes the entry: every arrival on the socket calls into
/// this thread's idle set for the thread's life.
///
/// Fix: as for finding 1 (the stage's drop removes its descriptor from the
/// sets its fired promotions left it in), or tidy at the end of the head's
/// use (`HeadGuard`'s drop) rather than at the next wait.
#[test]
fn finding_2_a_dropped_stage_leaves_its_live_socket_in_the_thread_set() {
    let _w = watchdog("finding_2_a_dropped_stage_leaves_its_live_socket_in_the_thread_set");
    let (rx, tx) = UnixDatagram::pair().unwrap();
    let rx = Arc::new(rx);
    let ino = ino_of(&*rx);
    let stage: Stage<u32, Arc<UnixDatagram>> = Stage::new(Arc::clone(&rx)).promote_when_readable();
    assert_eq!(
        follow_once(&stage, &|_| {
            tx.send(b"x").unwrap();
        }),
        Got::Head
    );
    drop(stage);
    // The socket is still in use; the stage is gone.
    tx.send(b"z").unwrap();
    drain(&rx);
    let left = sets_holding(ino);
    assert_eq!(
        left, 0,
        "the stage is gone, and {left} entries of this thread's epoll sets still watch its socket"
    );
}

/// Finding 3. `promote_when_readable`'s docs: "a blocking follower that
/// is promoted while the resource has nothing to read is not woken; the
/// kernel wakes it when the resource turns readable" (also the crate's
/// guarantees, "wakes exactly that one thread (on a stage that promotes
/// when readable, with nothing to read: none yet ...)", `gate.rs`, and the
/// reason given for `serve`'s hand-on rule with one ticket out). Since
/// `arm_share`, each notification that wakes a queued thread moves the
/// share a sixteenth towards 0; after ~33 of them `arming_pays()` is false,
/// followers queue on the futex parker (no watch), and a hand-off with
/// nothing to read wakes the follower at once (`promotions_when_readable`
/// does not move). A request/reply program whose head delivers others'
/// replies (each delivery wakes an owner) is exactly that.
///
/// Fix: document the adaptive rule where the guarantee is stated (the
/// follower *may* sleep until readable while recent waits mostly ended in
/// such promotions; otherwise it is woken), including in `serve`'s rule
/// and `Counters::promotions_when_readable`; or keep the old guarantee and
/// let only the choice of the cheaper parker depend on the share when no
/// hand-off needs a watch.
#[test]
fn finding_3_after_notifications_a_promotion_with_nothing_to_read_wakes_the_follower() {
    let _w = watchdog(
        "finding_3_after_notifications_a_promotion_with_nothing_to_read_wakes_the_follower",
    );
    let (tx, rx) = UnixDatagram::pair().unwrap();
    let stage: Stage<u32, UnixDatagram> = Stage::new(rx).promote_when_readable();
    let mut head = stage.ticket(1).unwrap();
    let mut me = stage.ticket(2).unwrap();
    let Entry::Head(guard) = stage.enter(&mut head, FIVE) else {
        panic!()
    };
    let woken = AtomicBool::new(false);
    let (promoted, before, after, quiet) = thread::scope(|s| {
        let follower = s.spawn(|| {
            // Forty waits ended by notifications.
            for _ in 0..40 {
                assert_eq!(got(stage.enter(&mut me, FIVE)), Got::Notified);
            }
            // The wait that the hand-off ends.
            let e = stage.enter(&mut me, FIVE);
            woken.store(true, Ordering::Release);
            got_drained(e)
        });
        for _ in 0..40 {
            until_waiting(&stage, 1);
            assert_eq!(stage.notify(&2), exit_left::NotifyOutcome::Woken);
        }
        until_waiting(&stage, 1);
        let before = stage.counters().promotions_when_readable;
        drop(guard);
        let after = stage.counters().promotions_when_readable;
        let quiet = stays_unset(&woken);
        tx.send(b"x").unwrap();
        (follower.join().unwrap(), before, after, quiet)
    });
    assert_eq!(promoted, Got::Head);
    // Documented since (`promote_when_readable`, "Adaptive"): after waits
    // that mostly ended in deliveries, the follower waits on the thread
    // parker, and the hand-off wakes it at once, unarmed.
    // (Whether it ran before the check is the scheduler's business: only
    // the arming is asserted.)
    assert_eq!(
        after, before,
        "after forty deliveries the follower waits on the thread parker, unarmed \
         (it stayed asleep: {quiet})"
    );
}

/// What an entry was, draining the socket as head.
fn got_drained<R: Sock>(e: Entry<'_, u32, R>) -> Got {
    match &e {
        Entry::Head(h) => {
            drain(h.resource().sock());
            Got::Head
        }
        Entry::Notified => Got::Notified,
        Entry::TimedOut => Got::TimedOut,
        Entry::Closed => Got::Closed,
    }
}

// ---------------------------------------------------------------------------
// Held
// ---------------------------------------------------------------------------

/// One thread alternating between two promote-when-readable stages over
/// different sockets: each round it is promoted asleep on one stage, and
/// its last promotion (on the other) fired and was left in its set. By the
/// time it is queued, the left descriptor is gone from every set (tidied),
/// traffic on the other socket does not wake it, its own socket's does.
#[test]
fn held_one_thread_alternating_between_two_stages() {
    let _w = watchdog("held_one_thread_alternating_between_two_stages");
    let (ra, ta) = UnixDatagram::pair().unwrap();
    let (rb, tb) = UnixDatagram::pair().unwrap();
    let inos = [ino_of(&ra), ino_of(&rb)];
    let stages: [Stage<u32, UnixDatagram>; 2] = [
        Stage::new(ra).promote_when_readable(),
        Stage::new(rb).promote_when_readable(),
    ];
    let feeds = [&ta, &tb];
    for round in 0..10usize {
        let (this, that) = (round % 2, 1 - round % 2);
        let g = follow_once(&stages[this], &|done| {
            if round > 0 {
                // This thread's set held the other socket (fired): the
                // wait's start tidied it.
                assert_eq!(sets_holding(inos[that]), 0, "round {round}: not tidied");
                feeds[that].send(b"other").unwrap();
                assert!(
                    stays_unset(done),
                    "round {round}: woken by the other socket"
                );
            }
            feeds[this].send(b"mine").unwrap();
        });
        assert_eq!(g, Got::Head, "round {round}");
        drain(stages[that].resource());
    }
}

/// The stage's own socket closed with it (no other descriptor of the
/// file): the kernel removes the entry the fired promotion left, and the
/// thread's next wait (whose tidy now deletes a closed number, maybe
/// another file's) works.
#[test]
fn held_a_socket_closed_with_its_stage_leaves_no_entry() {
    let _w = watchdog("held_a_socket_closed_with_its_stage_leaves_no_entry");
    let (rx, tx) = UnixDatagram::pair().unwrap();
    let ino = ino_of(&rx);
    let stage: Stage<u32, UnixDatagram> = Stage::new(rx).promote_when_readable();
    assert_eq!(
        follow_once(&stage, &|_| {
            tx.send(b"x").unwrap();
        }),
        Got::Head
    );
    drop(stage);
    assert_eq!(sets_holding(ino), 0);
    let (rx2, tx2) = UnixDatagram::pair().unwrap();
    let other: Stage<u32, UnixDatagram> = Stage::new(rx2).promote_when_readable();
    assert_eq!(
        follow_once(&other, &|done| {
            assert!(stays_unset(done), "woken with nothing to read");
            tx2.send(b"y").unwrap();
        }),
        Got::Head
    );
}

/// `arm_share` crossing the threshold both ways, on one follower thread:
/// forty notifications (futex parker from then on), then promotions with
/// nothing to read, each followed by a datagram. No promotion is lost
/// (every wait returns `Head`, none at its deadline: the datagram comes
/// first), and arming resumes within a few promotions (the follower then
/// waits on the ready parker and is armed).
#[test]
fn held_arm_share_crossing_the_threshold_loses_no_promotion() {
    let _w = watchdog("held_arm_share_crossing_the_threshold_loses_no_promotion");
    let (tx, rx) = UnixDatagram::pair().unwrap();
    let stage: Stage<u32, UnixDatagram> = Stage::new(rx).promote_when_readable();
    let mut head = stage.ticket(1).unwrap();
    let mut me = stage.ticket(2).unwrap();
    let (go_tx, go) = mpsc::channel::<()>();
    let (res_tx, res) = mpsc::channel::<(Got, Duration)>();
    let stage = &stage;
    let Entry::Head(first) = stage.enter(&mut head, FIVE) else {
        panic!("the main thread heads first")
    };
    let mut first = Some(first);
    thread::scope(|s| {
        s.spawn(move || {
            for _ in 0..40 {
                assert_eq!(got(stage.enter(&mut me, FIVE)), Got::Notified);
            }
            while go.recv_timeout(Duration::from_secs(10)).is_ok() {
                let t = Instant::now();
                let e = stage.enter(&mut me, FIVE);
                // As head, read the datagram (woken early, it blocks here).
                if let Entry::Head(h) = &e {
                    let sock = h.resource();
                    sock.set_read_timeout(Some(Duration::from_secs(4))).unwrap();
                    let mut buf = [0u8; 4];
                    assert!(sock.recv(&mut buf).is_ok(), "the datagram never came");
                }
                let g = got(e);
                res_tx.send((g, t.elapsed())).unwrap();
            }
        });
        for _ in 0..40 {
            until_waiting(stage, 1);
            stage.notify(&2);
        }
        let mut armed = Vec::new();
        for round in 0..8 {
            let guard = match first.take() {
                Some(g) => g,
                None => match stage.enter(&mut head, FIVE) {
                    Entry::Head(g) => g,
                    _ => panic!("round {round}: the main thread heads"),
                },
            };
            go_tx.send(()).unwrap();
            until_waiting(stage, 1);
            let before = stage.counters().promotions_when_readable;
            drop(guard);
            armed.push(stage.counters().promotions_when_readable > before);
            thread::sleep(Duration::from_millis(5));
            tx.send(b"x").unwrap();
            let (g, took) = res.recv_timeout(Duration::from_secs(10)).unwrap();
            assert_eq!(g, Got::Head, "round {round}");
            assert!(
                took < Duration::from_secs(4),
                "round {round}: ended at its deadline"
            );
        }
        drop(go_tx);
        assert!(
            armed.iter().rev().take(3).all(|&a| a),
            "arming never resumed: {armed:?}"
        );
    });
}

/// Nested waits on one thread: the outer wait on stage A runs a leaked
/// future's waker drop (`drop(stale)` in `wait_queued`), which follows on
/// stage B, is promoted asleep there and woken by B's datagram (the fired
/// descriptor is left in the inner parker). Back in the outer wait, the
/// thread is promoted asleep on A: more traffic on B does not wake it, A's
/// does.
#[test]
fn held_nested_wait_with_a_fired_descriptor_left_in_the_inner_parker() {
    type U = Stage<u32, UnixDatagram>;
    let _w = watchdog("held_nested_wait_with_a_fired_descriptor_left_in_the_inner_parker");
    let (ar, a_tx) = UnixDatagram::pair().unwrap();
    let (br, b_tx) = UnixDatagram::pair().unwrap();
    let a_stage: &'static U = Box::leak(Box::new(Stage::new(ar).promote_when_readable()));
    let b_stage: &'static U = Box::leak(Box::new(Stage::new(br).promote_when_readable()));
    let mut ah = a_stage.ticket(1).unwrap();
    let mut bh = b_stage.ticket(1).unwrap();
    let inner_got = Arc::new(Mutex::new(None::<Got>));
    let outer_done = AtomicBool::new(false);
    let (inner_queued_tx, inner_queued) = mpsc::channel::<()>();
    thread::scope(|s| {
        let Entry::Head(ag) = a_stage.enter(&mut ah, FIVE) else {
            panic!()
        };
        let Entry::Head(bg) = b_stage.enter(&mut bh, FIVE) else {
            panic!()
        };
        let inner_got2 = Arc::clone(&inner_got);
        let outer_done = &outer_done;
        let t = s.spawn(move || {
            let mut at = a_stage.ticket(2).unwrap();
            let inner = move || {
                let mut bt = b_stage.ticket(2).unwrap();
                inner_queued_tx.send(()).unwrap();
                let g = got_drained(b_stage.enter(&mut bt, FIVE));
                *inner_got2.lock().unwrap() = Some(g);
            };
            let waker = common::on_drop_waker(inner);
            let mut fut = Box::pin(a_stage.enter_async(&mut at));
            assert!(matches!(poll_once(&mut fut, &waker), Poll::Pending));
            drop(waker);
            core::mem::forget(fut);
            let g = got_drained(a_stage.enter(&mut at, FIVE));
            outer_done.store(true, Ordering::Release);
            g
        });
        inner_queued.recv_timeout(Duration::from_secs(10)).unwrap();
        until_waiting(b_stage, 1);
        drop(bg);
        assert_eq!(b_stage.counters().promotions_when_readable, 1);
        b_tx.send(b"b").unwrap();
        let give_up = Instant::now() + Duration::from_secs(10);
        while inner_got.lock().unwrap().is_none() {
            assert!(Instant::now() < give_up, "inner wait never woke");
            thread::sleep(Duration::from_millis(1));
        }
        // The outer wait is queued on A (it kept the leaked future's
        // place): promote it asleep.
        drop(ag);
        assert_eq!(a_stage.counters().promotions_when_readable, 1);
        b_tx.send(b"b again").unwrap();
        assert!(
            stays_unset(outer_done),
            "the outer wait woke for B's traffic"
        );
        a_tx.send(b"a").unwrap();
        assert_eq!(t.join().unwrap(), Got::Head);
    });
    assert_eq!(*inner_got.lock().unwrap(), Some(Got::Head));
}

/// Owners alternating between two promote-when-readable stages (each
/// thread's waits move between the two sockets, so its sets hold one
/// socket fired while it waits on the other), with `recv` and short
/// time-outs (deadlines reached while armed), a sender pacing items so
/// hand-offs find the sockets empty, and a noise thread notifying random
/// owners on both stages (promotions forwarded, `arm_share` pushed down).
/// Every item arrives exactly once, in order, per stage and owner.
#[test]
fn held_owners_alternating_between_two_stages_receive_everything_once() {
    type M = Stage<u32, UnixDatagram, u32>;
    let _w = watchdog("held_owners_alternating_between_two_stages_receive_everything_once");
    const OWNERS: u32 = 3;
    const ITEMS: u32 = 150;
    let mut feeds = Vec::new();
    let mut stages: Vec<M> = Vec::new();
    for _ in 0..2 {
        let (tx, rx) = UnixDatagram::pair().unwrap();
        rx.set_read_timeout(Some(Duration::from_millis(20)))
            .unwrap();
        feeds.push(tx);
        stages.push(Stage::with_mailbox(rx).promote_when_readable());
    }
    let stages = &stages;
    let all_done = AtomicUsize::new(0);
    let results: Vec<[Vec<u32>; 2]> = thread::scope(|s| {
        let mut owners = Vec::new();
        for id in 0..OWNERS {
            let mut tickets = [stages[0].ticket(id).unwrap(), stages[1].ticket(id).unwrap()];
            let all_done = &all_done;
            owners.push(s.spawn(move || {
                let mut got: [Vec<u32>; 2] = [Vec::new(), Vec::new()];
                let give_up = Instant::now() + Duration::from_secs(40);
                let mut which = (id % 2) as usize;
                while got.iter().any(|g| g.len() < ITEMS as usize) {
                    assert!(
                        Instant::now() < give_up,
                        "owner {id} never got everything: {}/{}",
                        got[0].len(),
                        got[1].len()
                    );
                    match stages[which].recv(
                        &mut tickets[which],
                        Some(Duration::from_millis(30)),
                        read_item,
                    ) {
                        Ok(seq) => got[which].push(seq),
                        Err(RecvError::TimedOut) => {}
                        Err(e) => panic!("owner {id}: {e:?}"),
                    }
                    which = 1 - which;
                }
                all_done.fetch_add(1, Ordering::AcqRel);
                got
            }));
        }
        let feeds = &feeds;
        s.spawn(move || {
            let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
            for seq in 0..ITEMS {
                for id in 0..OWNERS {
                    for (k, feed) in feeds.iter().enumerate() {
                        let mut b = [0u8; 8];
                        b[..4].copy_from_slice(&id.to_le_bytes());
                        b[4..].copy_from_slice(&seq.to_le_bytes());
                        feed.send(&b).unwrap();
                        if rng.below(3) == 0 {
                            thread::sleep(Duration::from_micros(200 + 300 * k as u64));
                        }
                    }
                }
            }
        });
        s.spawn(|| {
            let mut rng = Rng(0xD1B5_4A32_D192_ED03);
            while all_done.load(Ordering::Acquire) < OWNERS as usize {
                let k = rng.below(2) as usize;
                stages[k].notify(&(rng.below(u64::from(OWNERS)) as u32));
                thread::sleep(Duration::from_micros(300));
            }
        });
        owners.into_iter().map(|t| t.join().unwrap()).collect()
    });
    let want: Vec<u32> = (0..ITEMS).collect();
    for (id, got) in results.iter().enumerate() {
        assert_eq!(got[0], want, "owner {id}, stage 0");
        assert_eq!(got[1], want, "owner {id}, stage 1");
    }
    for st in stages {
        assert_eq!(st.counters().unrouted, 0);
        assert_eq!(st.waiting(), 0);
        assert!(!st.is_headed());
    }
}
