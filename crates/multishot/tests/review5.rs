//! Fifth hostile review: 1e75533 (`PeerCpu`: the blocking receive does not
//! spin when the last sender noted the receiver's own CPU) and 8892cb3
//! (probes spin up to 200 µs, hinted waits count towards them).
//!
//! No defect found in multishot; these are attacks that held. The skipped
//! spin is made deterministic by pinning both sides of a ping-pong to one
//! CPU (then every send notes the receiver's CPU), and the stale-CPU case
//! by re-pinning the threads while they run: whatever `PeerCpu` says, no
//! value is lost or duplicated and no wait hangs, time-outs included.
#![cfg(all(target_os = "linux", not(miri), not(loom)))]

use multishot::{Receiver, RecvTimeoutError, Sender, channel};
use std::thread;
use std::time::Duration;
use testkit::watchdog;

use testkit::affinity;

struct Req {
    i: u32,
    reply: Sender<Rep>,
}

struct Rep {
    i: u32,
    next: Sender<Req>,
}

/// Receives on `r` by `recv_blocking`, or by a loop of tiny time-outs
/// (which time out, then find the value kept), depending on `round`.
fn receive<T>(r: &mut Receiver<T>, round: u32) -> Option<T> {
    if round % 3 == 0 {
        return r.recv_blocking().ok();
    }
    loop {
        match r.recv_timeout(Duration::from_micros(u64::from(round % 7))) {
            Ok(v) => return Some(v),
            Err(RecvTimeoutError::Timeout) => continue,
            Err(RecvTimeoutError::Closed) => return None,
        }
    }
}

/// A ping-pong on recycled channels between two threads; `placement(i)`
/// says on which CPU each side runs for round `i` (re-pinned when it
/// changes), so that rounds run co-located, apart, and with a stale CPU
/// noted by the previous sender.
fn ping_pong(rounds: u32, placement: impl Fn(u32) -> (usize, usize) + Sync) {
    let (first, mut rb) = channel::<Req>();
    let mut ra = Receiver::<Rep>::new();
    thread::scope(|s| {
        let placement = &placement;
        s.spawn(move || {
            let mut cpu = usize::MAX;
            let mut i = 0;
            while let Some(req) = receive(&mut rb, i) {
                assert_eq!(req.i, i, "a request was lost or duplicated");
                let want = placement(i).1;
                if want != cpu {
                    affinity::pin(want);
                    cpu = want;
                }
                let next = rb.sender().expect("the request's sender is gone");
                if req.reply.send(Rep { i, next }).is_err() {
                    break;
                }
                i += 1;
            }
        });
        let mut next = first;
        let mut cpu = usize::MAX;
        for i in 0..rounds {
            let want = placement(i).0;
            if want != cpu {
                affinity::pin(want);
                cpu = want;
            }
            let reply = ra.sender().expect("the reply's sender is gone");
            assert!(next.send(Req { i, reply }).is_ok(), "the peer left");
            let rep = receive(&mut ra, i).expect("the peer dropped a reply");
            assert_eq!(rep.i, i, "a reply was lost or duplicated");
            next = rep.next;
        }
        drop(next); // the peer's receive reports Closed and it ends
    });
}

/// Both sides on one CPU for the whole run: every receive after the first
/// skips its spin (the sender noted this CPU) and parks at once.
#[test]
fn review5_colocated_ping_pong_never_hangs_or_loses_a_value() {
    let _w = watchdog("review5_colocated_ping_pong_never_hangs_or_loses_a_value");
    let cpu = affinity::allowed()[0];
    ping_pong(3_000, |_| (cpu, cpu));
}

/// The sides switch between sharing a CPU and not every few rounds, so
/// that the CPU a receiver reads was often noted before a migration.
#[test]
fn review5_migrating_ping_pong_with_stale_cpus_never_hangs() {
    let _w = watchdog("review5_migrating_ping_pong_with_stale_cpus_never_hangs");
    let cpus = affinity::allowed();
    let (a, b) = (cpus[0], *cpus.get(1).unwrap_or(&cpus[0]));
    ping_pong(3_000, |i| match i / 5 % 4 {
        0 => (a, a),
        1 => (a, b),
        2 => (b, b),
        _ => (b, a),
    });
}
