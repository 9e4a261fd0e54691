//! Review 16: hostile review of the re-entrant-`Eq` check that had moved
//! from a per-stage word to a per-thread `RUNNING_EQ_OF` (a thread-local
//! holding the address of the stage whose `Eq` the thread runs), and of the
//! `WakeToken` that exit-left's epoll parker now shares with
//! `sync_core::Parker`.
//!
//! Two findings, each with a test that failed on the per-thread word (and
//! passed on the per-stage word before it):
//!
//! 1. `finding_1_*`: an `Eq` of stage A's token that looks a token up in
//!    stage B, whose `Eq` calls back into A, deadlocked on A's mutex (the
//!    word named B by then, so `Stage::lock` of A did not see that this
//!    thread holds A's lock).
//! 2. `finding_2_*`: a stage's address is not its identity: a stage whose
//!    resource is another stage shares its address (rustc puts `resource`
//!    first), and an `Eq` of either that used the other was reported as
//!    re-entrant although it locks a different mutex.
//!
//! Fixed by going back to a per-stage word, holding a thread mark that is
//! never reused (a counter, not a thread-local's address: the stale read
//! of an exited thread's reused address was what the per-thread word had
//! been meant to fix).
//!
//! The other tests are attacks that held. Every blocking part runs under a
//! watchdog, or in a thread that the test waits for with a time-out; no
//! test asserts on time.

mod common;

use common::{LONG, iters, watchdog};
use exit_left::{Entry, NotifyOutcome, RecvError, Stage};
use std::any::Any;
use std::hash::{Hash, Hasher};
use std::ops::ControlFlow;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier, mpsc};
use std::thread;
use std::time::{Duration, Instant};

/// What a token's `Eq` runs, besides comparing ids.
type Hook = Arc<dyn Fn() + Send + Sync>;

/// A token whose `Eq` runs its hook (of either side) first. Every token
/// hashes alike, so any lookup in a stage with a ticket runs `Eq`.
struct Tok {
    id: u32,
    hook: Option<Hook>,
}

impl PartialEq for Tok {
    fn eq(&self, other: &Self) -> bool {
        for hook in [&self.hook, &other.hook].into_iter().flatten() {
            hook();
        }
        self.id == other.id
    }
}
impl Eq for Tok {}
impl Hash for Tok {
    fn hash<H: Hasher>(&self, state: &mut H) {
        0u8.hash(state);
    }
}

fn tok(id: u32) -> Tok {
    Tok { id, hook: None }
}

fn hooked(id: u32, hook: impl Fn() + Send + Sync + 'static) -> Tok {
    Tok {
        id,
        hook: Some(Arc::new(hook)),
    }
}

type S = Stage<Tok, (), u32>;

fn leak<X>(x: X) -> &'static X {
    Box::leak(Box::new(x))
}

/// The text of `Stage::lock`'s re-entrancy panic.
const REENTRANT: &str = "called back into the stage while the stage was looking";

fn message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else {
        String::from("<non-string panic>")
    }
}

/// Runs `f` on its own thread and waits at most 10 s: `None` if it neither
/// returned nor panicked by then (it is left blocked; its stages are
/// leaked, so nothing else waits on them), else what it returned, or the
/// message it panicked with.
fn bounded<X: Send + 'static>(f: impl FnOnce() -> X + Send + 'static) -> Option<Result<X, String>> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let r = catch_unwind(AssertUnwindSafe(f)).map_err(|p| message(&*p));
        let _ = tx.send(r);
    });
    rx.recv_timeout(Duration::from_secs(10)).ok()
}

fn assert_reentrant<X: std::fmt::Debug>(what: &str, r: Option<Result<X, String>>) {
    match r {
        None => panic!("{what}: deadlocked (neither returned nor panicked within 10 s)"),
        Some(Ok(x)) => panic!("{what}: returned {x:?} instead of panicking"),
        Some(Err(m)) => assert!(m.contains(REENTRANT), "{what}: wrong panic: {m}"),
    }
}

// ---------------------------------------------------------------------------
// Finding 1: A's `Eq` -> lookup in B -> B's `Eq` -> back into A deadlocks.
// ---------------------------------------------------------------------------

/// Failed on 9cebba8, passes since the fix (finding 1). Shows: a thread holding stage A's lock
/// (running the `Eq` of A's token) that re-enters A through another stage
/// B's lookup deadlocks instead of panicking. `Stage::find`
/// (src/stage.rs:670) replaces `RUNNING_EQ_OF` with B for B's lookup, so
/// `Stage::lock` of A (src/stage.rs:545, `of.get() == me`) compares with B
/// and goes on to `self.state.lock()` on the mutex the thread holds. The
/// per-stage `eq_runner` this replaced still named this thread in A, and
/// panicked.
#[test]
#[cfg_attr(
    miri,
    ignore = "leaks its stages on purpose (a deadlock must not free them)"
)]
fn finding_1_eq_reentering_its_stage_through_another_stage_deadlocks() {
    let _w = watchdog("finding_1_eq_reentering_its_stage_through_another_stage_deadlocks");
    let a: &'static S = leak(Stage::with_mailbox(()));
    let b: &'static S = leak(Stage::with_mailbox(()));
    // Registered for good: a deadlocked lookup never releases the locks.
    std::mem::forget(a.ticket(tok(1)).unwrap());
    std::mem::forget(b.ticket(tok(2)).unwrap());
    // Control: the direct re-entry into A is caught.
    assert_reentrant(
        "A's Eq calling A",
        bounded(move || {
            a.notify(&hooked(1, move || {
                let _ = a.tickets();
            }))
        }),
    );
    // The same re-entry into A, one stage further down.
    let r = bounded(move || {
        a.notify(&hooked(1, move || {
            let _ = b.notify(&hooked(2, move || {
                let _ = a.tickets();
            }));
        }))
    });
    assert_reentrant("A's Eq -> B.notify -> B's Eq -> A.tickets", r);
}

// ---------------------------------------------------------------------------
// Finding 2: two live stages at one address.
// ---------------------------------------------------------------------------

type Inner = Stage<Tok, (), u32>;

/// Failed on 9cebba8, passes since the fix (finding 2). Shows: an `Eq` that uses ANOTHER stage is
/// reported as re-entrant when the two stages share an address. Here the
/// inner stage is the outer stage's resource; rustc lays `Stage` out with
/// `resource` at offset 0 (printed below), so `Stage::address`
/// (src/stage.rs:559-561) is the same for both, and `RUNNING_EQ_OF`, set to
/// that address by either stage's `find` (src/stage.rs:670), makes the
/// other's `lock` (src/stage.rs:545) panic. Nothing deadlocks without the
/// check (two different mutexes): a false "re-entrant `Eq`" panic, which
/// the crate claims not to raise for another stage.
#[test]
#[cfg_attr(
    miri,
    ignore = "leaks its stages on purpose (a deadlock must not free them)"
)]
fn finding_2_a_stage_inside_another_stage_is_taken_for_it() {
    let outer: &'static Stage<Tok, Inner, u32> = leak(Stage::with_mailbox(Stage::with_mailbox(())));
    let inner: &'static Inner = outer.resource();
    eprintln!(
        "outer stage at {:p}, its resource (the inner stage) at {:p}",
        outer, inner
    );
    std::mem::forget(outer.ticket(tok(1)).unwrap());
    std::mem::forget(inner.ticket(tok(2)).unwrap());
    let outer_uses_inner = catch_unwind(AssertUnwindSafe(|| {
        outer.notify(&hooked(1, move || {
            let _ = inner.tickets();
        }))
    }))
    .map_err(|p| message(&*p));
    let inner_uses_outer = catch_unwind(AssertUnwindSafe(|| {
        inner.notify(&hooked(2, move || {
            let _ = outer.tickets();
        }))
    }))
    .map_err(|p| message(&*p));
    assert_eq!(
        (outer_uses_inner, inner_uses_outer),
        (Ok(NotifyOutcome::Recorded), Ok(NotifyOutcome::Recorded)),
        "an Eq that uses another stage (one at the same address) was reported as re-entrant"
    );
}

// ---------------------------------------------------------------------------
// Attacks that held.
// ---------------------------------------------------------------------------

/// Attacked: every path that looks a token up (ticket, notify, deliver,
/// HeadGuard::notify and ::deliver, recv's and serve's routing as head)
/// with an `Eq` that re-enters the same stage. Each panics with the
/// message (no deadlock), and the stage stays usable, with no later call
/// misreported on that thread. (enter, enter_async, try_recv run no `Eq`.)
#[test]
#[cfg_attr(
    miri,
    ignore = "leaks its stages on purpose (a deadlock must not free them)"
)]
fn a_reentrant_eq_panics_on_every_lookup_path_and_the_stage_stays_usable() {
    let _w = watchdog("a_reentrant_eq_panics_on_every_lookup_path_and_the_stage_stays_usable");
    let s: &'static S = leak(Stage::with_mailbox(()));
    std::mem::forget(s.ticket(tok(1)).unwrap());
    let nosy = move |id| {
        hooked(id, move || {
            let _ = s.is_headed();
        })
    };
    assert_reentrant("ticket", bounded(move || s.ticket(nosy(7)).is_ok()));
    assert_reentrant("notify", bounded(move || s.notify(&nosy(1))));
    assert_reentrant("deliver", bounded(move || s.deliver(&nosy(1), 3).is_ok()));
    assert_reentrant(
        "HeadGuard::notify",
        bounded(move || {
            let mut h = s.ticket(tok(0)).unwrap();
            let Entry::Head(g) = s.enter(&mut h, LONG) else {
                panic!("not head")
            };
            g.notify(&nosy(1))
        }),
    );
    assert_reentrant(
        "HeadGuard::deliver",
        bounded(move || {
            let mut h = s.ticket(tok(0)).unwrap();
            let Entry::Head(g) = s.enter(&mut h, LONG) else {
                panic!("not head")
            };
            g.deliver(&nosy(1), 4).is_ok()
        }),
    );
    assert_reentrant(
        "recv's routing",
        bounded(move || {
            let mut h = s.ticket(tok(0)).unwrap();
            s.recv(&mut h, LONG, |_| Ok::<_, ()>(Some((nosy(1), 5))))
                .is_ok()
        }),
    );
    assert_reentrant(
        "serve's routing",
        bounded(move || {
            let mut h = s.ticket(tok(0)).unwrap();
            s.serve(
                &mut h,
                LONG,
                |_| Ok::<_, ()>(Some((nosy(1), 6))),
                ControlFlow::Break,
            )
            .is_ok()
        }),
    );
    // Usable, on a thread that saw the panics and on a fresh one.
    let check = move || {
        assert!(!s.is_headed(), "every head unwound and handed on");
        assert_eq!(s.tickets(), 1);
        assert_eq!(s.notify(&tok(1)), NotifyOutcome::Recorded);
        assert_eq!(s.deliver(&tok(1), 9), Ok(NotifyOutcome::Recorded));
        let mut h = s.ticket(tok(0)).unwrap();
        assert!(s.enter(&mut h, LONG).is_head());
        assert_eq!(
            s.recv(&mut h, Some(Duration::ZERO), |_| Ok::<_, ()>(None)),
            Err(RecvError::TimedOut)
        );
    };
    check();
    assert!(matches!(bounded(check), Some(Ok(()))));
}

/// Attacked: nested lookups across stages. A's `Eq` uses B, whose `Eq`
/// uses C, whose `Eq` uses D (all allowed); B's `Eq` calling B, C's
/// calling C still panic; and once the nested lookups return (or unwind,
/// caught inside A's `Eq`), A's `Eq` calling A panics again: the guard
/// restored A. Afterwards nothing on the thread is misreported.
#[test]
#[cfg_attr(
    miri,
    ignore = "leaks its stages on purpose (a deadlock must not free them)"
)]
fn nested_lookups_through_a_chain_of_stages_restore_the_previous_stage() {
    let _w = watchdog("nested_lookups_through_a_chain_of_stages_restore_the_previous_stage");
    let [a, b, c, d]: [&'static S; 4] = std::array::from_fn(|_| leak(Stage::with_mailbox(())));
    for (s, id) in [(a, 1), (b, 2), (c, 3), (d, 4)] {
        std::mem::forget(s.ticket(tok(id)).unwrap());
    }
    let seen = Arc::new(AtomicUsize::new(0));
    let seen2 = Arc::clone(&seen);
    let r = bounded(move || {
        let chain = a.notify(&hooked(1, move || {
            let got = b.notify(&hooked(2, move || {
                let got = c.notify(&hooked(3, move || {
                    assert_eq!(d.tickets(), 1);
                }));
                assert_eq!(got, NotifyOutcome::Recorded);
            }));
            assert_eq!(got, NotifyOutcome::Recorded);
        }));
        assert_eq!(chain, NotifyOutcome::Recorded);
        // Inside A's Eq: B's Eq re-entering B panics (caught here), C's
        // re-entering C too, then A is still named and A.tickets panics.
        a.notify(&hooked(1, move || {
            let inner = catch_unwind(AssertUnwindSafe(|| {
                b.notify(&hooked(2, move || {
                    let _ = b.tickets();
                }))
            }));
            if inner.is_err_and(|p| message(&*p).contains(REENTRANT)) {
                seen2.fetch_add(1, Ordering::SeqCst);
            }
            let deeper = catch_unwind(AssertUnwindSafe(|| {
                b.notify(&hooked(2, move || {
                    let _ = c.notify(&hooked(3, move || {
                        let _ = c.waiting();
                    }));
                }))
            }));
            if deeper.is_err_and(|p| message(&*p).contains(REENTRANT)) {
                seen2.fetch_add(1, Ordering::SeqCst);
            }
            let _ = a.tickets();
        }))
    });
    match r {
        Some(Err(m)) => assert!(m.contains(REENTRANT), "wrong panic: {m}"),
        other => panic!("A's Eq calling A after nested lookups: {other:?}"),
    }
    assert_eq!(seen.load(Ordering::SeqCst), 2, "B in B, C in C caught");
    // The thread that panicked is gone; this one never ran an Eq: all fine.
    for s in [a, b, c, d] {
        assert_eq!(s.tickets(), 1);
    }
    assert_eq!(a.notify(&tok(1)), NotifyOutcome::Recorded);
}

/// Attacked: an `Eq` that panics (for its own reason, or from a nested
/// lookup), then the same thread uses the stage; and stages created and
/// dropped on the stack in a loop, so that each new stage sits where the
/// last one (whose `Eq` panicked mid-lookup) was. No later call is
/// misreported as re-entrant.
#[test]
fn after_a_panicking_eq_stages_at_the_same_address_are_not_misreported() {
    let mut addresses = Vec::new();
    let rounds = iters(50, 12) as u32;
    for round in 0..rounds {
        let s: S = Stage::with_mailbox(());
        addresses.push(core::ptr::from_ref(&s).addr());
        let mut t = s.ticket(tok(1)).unwrap();
        let boom = catch_unwind(AssertUnwindSafe(|| {
            s.notify(&hooked(1, move || {
                panic!("deliberate: Eq panics in round {round}")
            }))
        }));
        assert!(boom.is_err());
        // Uses of the stage by the thread whose Eq just panicked.
        assert_eq!(s.notify(&tok(1)), NotifyOutcome::Recorded);
        assert_eq!(s.deliver(&tok(1), round), Ok(NotifyOutcome::Recorded));
        assert!(matches!(s.enter(&mut t, LONG), Entry::Notified));
        assert_eq!(s.try_recv(&mut t), Some(round));
        assert!(s.ticket(tok(2)).is_ok());
        // An Eq that itself makes (and drops) stages on the stack, where
        // an earlier one may have been, and looks tokens up in them.
        let nested = s.notify(&hooked(1, || {
            for _ in 0..3 {
                let inner: S = Stage::with_mailbox(());
                let _t = inner.ticket(tok(5)).unwrap();
                assert_eq!(inner.notify(&tok(5)), NotifyOutcome::Recorded);
            }
        }));
        assert_eq!(nested, NotifyOutcome::Recorded);
        drop(t);
    }
    addresses.sort_unstable();
    addresses.dedup();
    eprintln!(
        "{} distinct stage addresses over {rounds} rounds",
        addresses.len()
    );
}

/// Attacked: lookups from a thread-local destructor during thread exit
/// (`RUNNING_EQ_OF` is itself a thread-local): a re-entrant `Eq` there
/// still panics with the message (no deadlock) and an `Eq` using another
/// stage is still allowed.
#[test]
#[cfg_attr(
    miri,
    ignore = "leaks its stages on purpose (a deadlock must not free them)"
)]
fn lookups_from_a_thread_local_destructor() {
    let _w = watchdog("lookups_from_a_thread_local_destructor");
    struct AtExit {
        a: &'static S,
        b: &'static S,
        tx: mpsc::Sender<(Result<NotifyOutcome, String>, Result<NotifyOutcome, String>)>,
    }
    impl Drop for AtExit {
        fn drop(&mut self) {
            let (a, b) = (self.a, self.b);
            let reentrant = catch_unwind(AssertUnwindSafe(|| {
                a.notify(&hooked(1, move || {
                    let _ = a.tickets();
                }))
            }))
            .map_err(|p| message(&*p));
            let other = catch_unwind(AssertUnwindSafe(|| {
                a.notify(&hooked(1, move || {
                    let _ = b.notify(&tok(2));
                }))
            }))
            .map_err(|p| message(&*p));
            let _ = self.tx.send((reentrant, other));
        }
    }
    thread_local! {
        static AT_EXIT: std::cell::RefCell<Option<AtExit>> = const { std::cell::RefCell::new(None) };
    }
    let a: &'static S = leak(Stage::with_mailbox(()));
    let b: &'static S = leak(Stage::with_mailbox(()));
    std::mem::forget(a.ticket(tok(1)).unwrap());
    std::mem::forget(b.ticket(tok(2)).unwrap());
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        AT_EXIT.with(|slot| *slot.borrow_mut() = Some(AtExit { a, b, tx }));
    });
    let (reentrant, other) = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("the destructor's lookups deadlocked");
    match reentrant {
        Err(m) => assert!(m.contains(REENTRANT), "wrong panic: {m}"),
        Ok(o) => panic!("a re-entrant Eq in a TLS destructor returned {o:?}"),
    }
    assert_eq!(other, Ok(NotifyOutcome::Recorded));
}

/// Attacked: many short-lived threads (whose thread-locals come and go,
/// and whose addresses new threads reuse) looking tokens up concurrently
/// with long-lived ones, with `Eq`s that use another stage (so the word is
/// set and restored all the time): no false "re-entrant" panic, no
/// deadlock, over many rounds.
#[test]
fn short_lived_threads_never_see_a_false_reentrancy() {
    let _w = watchdog("short_lived_threads_never_see_a_false_reentrancy");
    // Shared, not leaked: this one also runs under Miri, where a weak
    // memory read of a stale mark once made a false "re-entrant" panic.
    let a: Arc<S> = Arc::new(Stage::with_mailbox(()));
    let b: Arc<S> = Arc::new(Stage::with_mailbox(()));
    let _ta = a.ticket(tok(1)).unwrap();
    let _tb = b.ticket(tok(2)).unwrap();
    let stop = AtomicBool::new(false);
    let panics = AtomicUsize::new(0);
    let lookups = |n: usize| {
        for i in 0..n {
            let r = catch_unwind(AssertUnwindSafe(|| {
                let id = 1 + (i as u32 & 1) * 10; // found, or not
                let b2 = Arc::clone(&b);
                let _ = a.notify(&hooked(id, move || {
                    let _ = b2.notify(&tok(2));
                    let _ = b2.tickets();
                }));
                let _ = b.deliver(&tok(2), 1);
                let _ = a.ticket(tok(100 + i as u32 % 3));
            }));
            if r.is_err() {
                panics.fetch_add(1, Ordering::SeqCst);
            }
        }
    };
    thread::scope(|scope| {
        scope.spawn(|| {
            while !stop.load(Ordering::SeqCst) {
                lookups(10);
            }
        });
        for _ in 0..if cfg!(miri) { 2 } else { 60 } {
            let batch: Vec<_> = (0..4)
                .map(|_| scope.spawn(|| lookups(iters(20, 8))))
                .collect();
            for t in batch {
                t.join().unwrap();
            }
        }
        stop.store(true, Ordering::SeqCst);
    });
    assert_eq!(panics.load(Ordering::SeqCst), 0, "false re-entrancy panics");
}

/// Attacked: the `WakeToken` in exit-left's epoll parker. A follower on a
/// stage that promotes when readable waits with very short time-outs
/// (so `end_park` races the notification) while another thread notifies
/// it once per round: every notification is seen, exactly once. A new
/// stage every 16 rounds keeps followers on the epoll parker (the stage
/// stops arming after ~30 waits ended by notifications). (A token lost by
/// the parker would not show here: the waiter's resolution, recorded under
/// the stage's lock, still makes the entry `Notified`. This attacks the
/// parker's eventfd and stale-token handling end to end;
/// `sync-core/tests/review16.rs` attacks the token itself.)
#[cfg(all(target_os = "linux", not(miri)))] // Miri has no datagram socket pairs
#[test]
fn notifications_racing_short_time_outs_on_the_epoll_parker_are_never_lost() {
    use std::os::unix::net::UnixDatagram;
    let _w = watchdog("notifications_racing_short_time_outs_on_the_epoll_parker_are_never_lost");
    let mut rng = common::Rng(0x9E37_79B9_7F4A_7C15);
    for _batch in 0..20 {
        let (sock, _peer) = UnixDatagram::pair().unwrap();
        let stage: Stage<u32, UnixDatagram> = Stage::new(sock).promote_when_readable();
        let mut h = stage.ticket(0).unwrap();
        let mut f = stage.ticket(1).unwrap();
        let head = stage.enter(&mut h, LONG);
        assert!(head.is_head());
        let go = Barrier::new(2);
        let seeds: Vec<u64> = (0..16).map(|_| rng.next()).collect();
        thread::scope(|scope| {
            // The follower (the head, this thread, may not enter).
            scope.spawn(|| {
                for &seed in &seeds {
                    go.wait();
                    let give_up = Instant::now() + Duration::from_secs(10);
                    let mut timeouts = 0u64;
                    loop {
                        let t = Duration::from_micros((seed >> 20) % 300 + timeouts % 3);
                        match stage.enter(&mut f, Some(t)) {
                            Entry::Notified => break,
                            Entry::TimedOut => timeouts += 1,
                            other => panic!("unexpected entry: {:?}", common::got(other)),
                        }
                        assert!(Instant::now() < give_up, "a notification was lost");
                    }
                    assert!(
                        matches!(stage.enter(&mut f, Some(Duration::ZERO)), Entry::TimedOut),
                        "one notification was seen twice"
                    );
                }
            });
            for &seed in &seeds {
                go.wait();
                for _ in 0..seed % 20_000 {
                    std::hint::spin_loop();
                }
                let o = stage.notify(&1);
                assert!(matches!(o, NotifyOutcome::Woken | NotifyOutcome::Recorded));
            }
        });
        drop(head);
    }
}
