//! loom models from the hostile review of `serve` lending the headship
//! while its head wakes an owner (tests/review9.rs): `close` racing the
//! wake-up lend, and two lending `serve`s sharing the reading. Both held.
//!
//! ```text
//! RUSTFLAGS="--cfg loom" LOOM_MAX_PREEMPTIONS=3 cargo test --release \
//!     --target-dir target/loom -p exit-left --features sync-core/loom --test loom_review9
//! ```
//!
//! Under `--cfg loom` each model explores every interleaving (bounded by
//! `LOOM_MAX_PREEMPTIONS`); in the normal build it runs once.

use exit_left::{Entry, RecvError, Stage};
use std::ops::ControlFlow;
use sync_core::sync::Arc;
use sync_core::thread;

type Script = std::sync::Mutex<Vec<(u8, u8)>>;
type S = Stage<u8, Script, u8>;

// HELD: `serve` wakes a blocked owner with the headship lent (ticket 2
// is idle) while another thread closes the stage. Never two heads, no
// deadlock; the lender handles its message or reports `Closed` with it
// unread or in its mailbox; the owner gets its message or `Closed`.
#[test]
fn close_races_the_wake_up_lend() {
    let _w = testkit::watchdog("review9 close_races_the_wake_up_lend");
    sync_core::model(|| {
        let stage: Arc<S> = Arc::new(Stage::with_mailbox(std::sync::Mutex::new(vec![
            (0, 2),
            (1, 9),
        ])));
        let owner = {
            let stage = Arc::clone(&stage);
            thread::spawn(move || {
                let mut t1 = stage.ticket(1).unwrap();
                while !stage.is_headed() && !stage.is_closed() {
                    thread::yield_now();
                }
                let e = stage.enter(&mut t1, None);
                let mail = stage.try_recv(&mut t1);
                match e {
                    Entry::Notified => assert_eq!(mail, Some(9)),
                    Entry::Closed => assert!(mail.is_none() || mail == Some(9)),
                    Entry::Head(_) => {} // nobody read for it: closed first
                    Entry::TimedOut => panic!("no time-out was set"),
                }
            })
        };
        let closer = {
            let stage = Arc::clone(&stage);
            thread::spawn(move || stage.close())
        };
        let mut t0 = stage.ticket(0).unwrap();
        let idle = stage.ticket(2).unwrap();
        let mut first = true;
        let mut handled = Vec::new();
        let out = stage.serve(
            &mut t0,
            None,
            |s: &Script| {
                if std::mem::take(&mut first) {
                    while stage.waiting() < 1 && !stage.is_closed() {
                        thread::yield_now();
                    }
                }
                Ok::<_, ()>(s.lock().unwrap().pop())
            },
            |m| {
                handled.push(m);
                ControlFlow::Break(())
            },
        );
        closer.join().unwrap();
        owner.join().unwrap();
        match out {
            Ok(()) => assert_eq!(handled, [2]),
            Err(RecvError::Closed) => {
                assert!(handled.is_empty());
                let unread = stage.resource().lock().unwrap().contains(&(0, 2));
                assert!(unread || stage.try_recv(&mut t0) == Some(2));
            }
            Err(e) => panic!("unexpected {e:?}"),
        }
        drop((t0, idle));
        assert_eq!(stage.waiting(), 0);
    });
}

/// Counts a head in and out, with a yield in between (another head may
/// run there); two at once fail the model.
fn heading(heads: &sync_core::atomic::AtomicUsize) {
    use sync_core::atomic::Ordering::SeqCst;
    assert_eq!(heads.fetch_add(1, SeqCst), 0, "two heads");
    thread::yield_now();
    heads.fetch_sub(1, SeqCst);
}

/// Counts threads whose tickets are registered (a condition variable,
/// not a spin: loom may stop preempting a spinning thread).
#[derive(Default)]
struct Gate(sync_core::sync::Mutex<u8>, sync_core::sync::Condvar);

impl Gate {
    fn registered(&self) {
        *self.0.lock().unwrap() += 1;
        self.1.notify_all();
    }
    fn wait_for(&self, n: u8) {
        let mut g = self.0.lock().unwrap();
        while *g < n {
            g = self.1.wait(g).unwrap();
        }
    }
}

/// `serve` until `want` is handled, reading with a head count.
fn serve_until(
    stage: &S,
    t: &mut exit_left::Ticket<'_, u8, Script, u8>,
    heads: &sync_core::atomic::AtomicUsize,
    gate: &Gate,
    want: &[u8],
) -> Vec<u8> {
    let mut handled = Vec::new();
    let mut first = true;
    let out = stage.serve(
        t,
        None,
        |s: &Script| {
            // Every ticket registered before the first read.
            if std::mem::take(&mut first) {
                gate.wait_for(2);
            }
            heading(heads);
            Ok::<_, ()>(s.lock().unwrap().pop())
        },
        |m| {
            handled.push(m);
            if handled.len() == want.len() {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        },
    );
    assert_eq!(out, Ok(()));
    handled
}

// HELD: two `serve`s whose items alternate, an idle ticket (so every
// wake-up is made with the headship lent): the woken one may take the
// reading over during the wake-up, or the lender takes it back. Never
// two heads, no deadlock (no time-outs), each gets its messages once,
// in order; nobody left heading or queued.
#[test]
fn two_lending_serves_share_the_reading() {
    let _w = testkit::watchdog("review9 two_lending_serves_share_the_reading");
    sync_core::model(|| {
        // Read in this order: (1, 11), (0, 20), (1, 12), (0, 21).
        let stage: Arc<S> = Arc::new(Stage::with_mailbox(std::sync::Mutex::new(vec![
            (0, 21),
            (1, 12),
            (0, 20),
            (1, 11),
        ])));
        let heads = Arc::new(sync_core::atomic::AtomicUsize::new(0));
        let gate = Arc::new(Gate::default());
        let other = {
            let (stage, heads, gate) = (Arc::clone(&stage), Arc::clone(&heads), Arc::clone(&gate));
            thread::spawn(move || {
                let mut t1 = stage.ticket(1).unwrap();
                gate.registered();
                let got = serve_until(&stage, &mut t1, &heads, &gate, &[11, 12]);
                assert_eq!(got, [11, 12]);
            })
        };
        let mut t0 = stage.ticket(0).unwrap();
        let idle = stage.ticket(2).unwrap();
        gate.registered();
        let got = serve_until(&stage, &mut t0, &heads, &gate, &[20, 21]);
        assert_eq!(got, [20, 21]);
        other.join().unwrap();
        drop((t0, idle));
        assert_eq!(stage.waiting(), 0);
        assert!(!stage.is_headed());
        assert!(stage.resource().lock().unwrap().is_empty());
        assert_eq!(stage.counters().unrouted, 0);
    });
}
