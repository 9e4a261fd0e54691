//! (4) request/response between two threads. Each message carries the
//! sender for the next message in the other direction, so the channel under
//! test is the only synchronisation. Both sides wait as `wait` says. Returns
//! the time for `iters` round trips.
//!
//! Measured by the interleaved comparison (`multishot_interleaved.rs`);
//! why not by criterion is said in `multishot.rs`.

use benches::spin_block_on;
use std::time::{Duration, Instant};

pub struct OursReq(u64, multishot::Sender<OursRep>);
pub struct OursRep(u64, multishot::Sender<OursReq>);

pub fn ours(iters: u64, wait: Wait) -> Duration {
    let (req_s, mut req_r) = multishot::channel::<OursReq>();
    let (rep_s, mut rep_r) = multishot::channel::<OursRep>();
    let server = std::thread::spawn(move || {
        loop {
            let got = match wait {
                Wait::Task => spin_block_on(req_r.recv()),
                Wait::Blocking => req_r.recv_blocking(),
            };
            let Ok(OursReq(n, reply)) = got else { break };
            let next = req_r.sender().unwrap();
            if reply.send(OursRep(n + 1, next)).is_err() {
                break;
            }
        }
    });
    let (mut req, mut rep) = (req_s, rep_s);
    let start = Instant::now();
    for n in 0..iters {
        assert!(req.send(OursReq(n, rep)).is_ok());
        let got = match wait {
            Wait::Task => spin_block_on(rep_r.recv()),
            Wait::Blocking => rep_r.recv_blocking(),
        };
        let Ok(OursRep(m, next)) = got else {
            panic!("server gone")
        };
        assert_eq!(m, n + 1);
        req = next;
        rep = rep_r.sender().unwrap();
    }
    let took = start.elapsed();
    drop(req);
    server.join().unwrap();
    took
}

pub struct TokioReq(u64, tokio::sync::oneshot::Sender<TokioRep>);
pub struct TokioRep(u64, tokio::sync::oneshot::Sender<TokioReq>);

pub fn tokio(iters: u64, wait: Wait) -> Duration {
    let (req_s, req_r) = tokio::sync::oneshot::channel::<TokioReq>();
    let server = std::thread::spawn(move || {
        let mut req_r = req_r;
        loop {
            let got = match wait {
                Wait::Task => spin_block_on(req_r),
                Wait::Blocking => req_r.blocking_recv(),
            };
            let Ok(TokioReq(n, reply)) = got else { break };
            let (next_s, next_r) = tokio::sync::oneshot::channel();
            req_r = next_r;
            if reply.send(TokioRep(n + 1, next_s)).is_err() {
                break;
            }
        }
    });
    let mut req = req_s;
    let start = Instant::now();
    for n in 0..iters {
        let (rep_s, rep_r) = tokio::sync::oneshot::channel();
        assert!(req.send(TokioReq(n, rep_s)).is_ok());
        let got = match wait {
            Wait::Task => spin_block_on(rep_r),
            Wait::Blocking => rep_r.blocking_recv(),
        };
        let Ok(TokioRep(m, next)) = got else {
            panic!("server gone")
        };
        assert_eq!(m, n + 1);
        req = next;
    }
    let took = start.elapsed();
    drop(req);
    server.join().unwrap();
    took
}

pub struct OneshotReq(u64, oneshot::Sender<OneshotRep>);
pub struct OneshotRep(u64, oneshot::Sender<OneshotReq>);

pub fn oneshot(iters: u64, wait: Wait) -> Duration {
    let (req_s, req_r) = oneshot::channel::<OneshotReq>();
    let server = std::thread::spawn(move || {
        let mut req_r = req_r;
        loop {
            let got = match wait {
                Wait::Task => spin_block_on(req_r).map_err(|_| ()),
                Wait::Blocking => req_r.recv().map_err(|_| ()),
            };
            let Ok(OneshotReq(n, reply)) = got else { break };
            let (next_s, next_r) = oneshot::channel();
            req_r = next_r;
            if reply.send(OneshotRep(n + 1, next_s)).is_err() {
                break;
            }
        }
    });
    let mut req = req_s;
    let start = Instant::now();
    for n in 0..iters {
        let (rep_s, rep_r) = oneshot::channel();
        assert!(req.send(OneshotReq(n, rep_s)).is_ok());
        let got = match wait {
            Wait::Task => spin_block_on(rep_r).map_err(|_| ()),
            Wait::Blocking => rep_r.recv().map_err(|_| ()),
        };
        let Ok(OneshotRep(m, next)) = got else {
            panic!("server gone")
        };
        assert_eq!(m, n + 1);
        req = next;
    }
    let took = start.elapsed();
    drop(req);
    server.join().unwrap();
    took
}

pub struct FuturesReq(u64, futures::channel::oneshot::Sender<FuturesRep>);
pub struct FuturesRep(u64, futures::channel::oneshot::Sender<FuturesReq>);

/// futures' oneshot has no blocking receive, so it appears only in the
/// task-style group.
pub fn futures(iters: u64) -> Duration {
    let (req_s, req_r) = futures::channel::oneshot::channel::<FuturesReq>();
    let server = std::thread::spawn(move || {
        let mut req_r = req_r;
        while let Ok(FuturesReq(n, reply)) = spin_block_on(req_r) {
            let (next_s, next_r) = futures::channel::oneshot::channel();
            req_r = next_r;
            if reply.send(FuturesRep(n + 1, next_s)).is_err() {
                break;
            }
        }
    });
    let mut req = req_s;
    let start = Instant::now();
    for n in 0..iters {
        let (rep_s, rep_r) = futures::channel::oneshot::channel();
        assert!(req.send(FuturesReq(n, rep_s)).is_ok());
        let Ok(FuturesRep(m, next)) = spin_block_on(rep_r) else {
            panic!("server gone")
        };
        assert_eq!(m, n + 1);
        req = next;
    }
    let took = start.elapsed();
    drop(req);
    server.join().unwrap();
    took
}

/// How both sides of a ping-pong wait for their next message.
#[derive(Clone, Copy)]
pub enum Wait {
    /// Executor-style tasks, woken through their wakers
    /// ([`benches::spin_block_on`], the same executor for every channel).
    Task,
    /// Plain threads blocking in the channel's own blocking receive.
    Blocking,
}
