//! (4) request/response between two threads. Each message carries the
//! sender for the next message in the other direction, so the channel under
//! test is the only synchronisation. Both sides wait as `wait` says. Does at
//! most `iters` round trips, until the harness's deadline
//! (`benches::interleaved::round_trips`); returns how many, their wall time
//! and the CPU time both threads used (each side's own thread CPU over its
//! loop).
//!
//! Measured by the interleaved comparison (`multishot_interleaved.rs`);
//! why not by criterion is said in `multishot.rs`.

use benches::interleaved::{Measurement, RoundTrips, round_trips, thread_cpu};
use benches::spin_block_on;
use std::future::Future;
use std::sync::{Arc, Barrier};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How both sides of a ping-pong wait for their next message.
#[derive(Clone, Copy)]
pub enum Wait {
    /// Executor-style tasks, woken through their wakers, in the busy-waiting
    /// [`benches::spin_block_on`] (the same executor for every channel):
    /// isolates each channel's own register / send / wake / re-poll path.
    SpinTask,
    /// Executor-style tasks in a parking executor, the way users run them:
    /// [`sync_core::future::block_on`], the same one for every channel, so
    /// the rows differ only in the channel.
    ParkTask,
    /// Executor-style tasks, each side in its own tokio current-thread
    /// runtime (`Runtime::block_on`): what a tokio user sees.
    TokioRuntime,
    /// Plain threads blocking in the channel's own blocking receive.
    Blocking,
}

impl Wait {
    fn blocking(self) -> bool {
        matches!(self, Wait::Blocking)
    }
}

/// One side's executor, built on that side's thread (before its CPU clock
/// starts).
struct Executor {
    wait: Wait,
    runtime: Option<tokio::runtime::Runtime>,
}

impl Executor {
    fn new(wait: Wait) -> Executor {
        let runtime = matches!(wait, Wait::TokioRuntime).then(|| {
            tokio::runtime::Builder::new_current_thread()
                .build()
                .unwrap()
        });
        Executor { wait, runtime }
    }

    /// Drives `future` to completion as this side's [`Wait`] says.
    fn run<F: Future>(&self, future: F) -> F::Output {
        match self.wait {
            Wait::SpinTask => spin_block_on(future),
            Wait::ParkTask => sync_core::future::block_on(future),
            Wait::TokioRuntime => self.runtime.as_ref().unwrap().block_on(future),
            Wait::Blocking => unreachable!("blocking sides use the channel's own receive"),
        }
    }
}

/// The answering side's thread: returns the CPU time its loop used.
struct Server {
    thread: JoinHandle<Duration>,
    /// Passed by both sides once the server's clock runs.
    ready: Arc<Barrier>,
}

/// Spawns the answering side: `serve` runs its loop.
fn server(wait: Wait, serve: impl FnOnce(&Executor) + Send + 'static) -> Server {
    let ready = Arc::new(Barrier::new(2));
    let thread = {
        let ready = Arc::clone(&ready);
        std::thread::spawn(move || {
            let exec = Executor::new(wait);
            let cpu = thread_cpu();
            ready.wait();
            serve(&exec);
            thread_cpu() - cpu
        })
    };
    Server { thread, ready }
}

/// Runs the initiating side's loop on this thread once the server runs (one
/// round trip per item of `trips`, at most `iters`), then lets the server
/// go (by dropping what the loop returns: the last request sender) and adds
/// up both sides' CPU time.
fn client<R>(
    wait: Wait,
    iters: u64,
    server: Server,
    body: impl FnOnce(&Executor, &mut RoundTrips) -> R,
) -> Measurement {
    let exec = Executor::new(wait);
    let mut trips = round_trips(iters);
    server.ready.wait();
    let cpu = thread_cpu();
    let start = Instant::now();
    let rest = body(&exec, &mut trips);
    let wall = start.elapsed();
    let cpu = thread_cpu() - cpu;
    drop(rest);
    let server_cpu = server.thread.join().unwrap();
    Measurement {
        trips: trips.done(),
        wall,
        cpu: cpu + server_cpu,
    }
}

pub struct OursReq(u64, multishot::Sender<OursRep>);
pub struct OursRep(u64, multishot::Sender<OursReq>);

pub fn ours(iters: u64, wait: Wait) -> Measurement {
    let (req_s, mut req_r) = multishot::channel::<OursReq>();
    let (rep_s, mut rep_r) = multishot::channel::<OursRep>();
    let server = server(wait, move |exec| {
        loop {
            let got = if wait.blocking() {
                req_r.recv_blocking()
            } else {
                exec.run(req_r.recv())
            };
            let Ok(OursReq(n, reply)) = got else { break };
            let next = req_r.sender().unwrap();
            if reply.send(OursRep(n + 1, next)).is_err() {
                break;
            }
        }
    });
    client(wait, iters, server, |exec, trips| {
        let (mut req, mut rep) = (req_s, rep_s);
        for n in trips {
            assert!(req.send(OursReq(n, rep)).is_ok());
            let got = if wait.blocking() {
                rep_r.recv_blocking()
            } else {
                exec.run(rep_r.recv())
            };
            let Ok(OursRep(m, next)) = got else {
                panic!("server gone")
            };
            assert_eq!(m, n + 1);
            req = next;
            rep = rep_r.sender().unwrap();
        }
        req
    })
}

pub struct TokioReq(u64, tokio::sync::oneshot::Sender<TokioRep>);
pub struct TokioRep(u64, tokio::sync::oneshot::Sender<TokioReq>);

pub fn tokio(iters: u64, wait: Wait) -> Measurement {
    let (req_s, req_r) = tokio::sync::oneshot::channel::<TokioReq>();
    let server = server(wait, move |exec| {
        let mut req_r = req_r;
        loop {
            let got = if wait.blocking() {
                req_r.blocking_recv()
            } else {
                exec.run(req_r)
            };
            let Ok(TokioReq(n, reply)) = got else { break };
            let (next_s, next_r) = tokio::sync::oneshot::channel();
            req_r = next_r;
            if reply.send(TokioRep(n + 1, next_s)).is_err() {
                break;
            }
        }
    });
    client(wait, iters, server, |exec, trips| {
        let mut req = req_s;
        for n in trips {
            let (rep_s, rep_r) = tokio::sync::oneshot::channel();
            assert!(req.send(TokioReq(n, rep_s)).is_ok());
            let got = if wait.blocking() {
                rep_r.blocking_recv()
            } else {
                exec.run(rep_r)
            };
            let Ok(TokioRep(m, next)) = got else {
                panic!("server gone")
            };
            assert_eq!(m, n + 1);
            req = next;
        }
        req
    })
}

pub struct OneshotReq(u64, oneshot::Sender<OneshotRep>);
pub struct OneshotRep(u64, oneshot::Sender<OneshotReq>);

pub fn oneshot(iters: u64, wait: Wait) -> Measurement {
    let (req_s, req_r) = oneshot::channel::<OneshotReq>();
    let server = server(wait, move |exec| {
        let mut req_r = req_r;
        loop {
            let got = if wait.blocking() {
                req_r.recv().map_err(|_| ())
            } else {
                exec.run(req_r).map_err(|_| ())
            };
            let Ok(OneshotReq(n, reply)) = got else { break };
            let (next_s, next_r) = oneshot::channel();
            req_r = next_r;
            if reply.send(OneshotRep(n + 1, next_s)).is_err() {
                break;
            }
        }
    });
    client(wait, iters, server, |exec, trips| {
        let mut req = req_s;
        for n in trips {
            let (rep_s, rep_r) = oneshot::channel();
            assert!(req.send(OneshotReq(n, rep_s)).is_ok());
            let got = if wait.blocking() {
                rep_r.recv().map_err(|_| ())
            } else {
                exec.run(rep_r).map_err(|_| ())
            };
            let Ok(OneshotRep(m, next)) = got else {
                panic!("server gone")
            };
            assert_eq!(m, n + 1);
            req = next;
        }
        req
    })
}

pub struct FuturesReq(u64, futures::channel::oneshot::Sender<FuturesRep>);
pub struct FuturesRep(u64, futures::channel::oneshot::Sender<FuturesReq>);

/// futures' oneshot has no blocking receive, so it appears only in the
/// task-style groups.
pub fn futures(iters: u64, wait: Wait) -> Measurement {
    assert!(!wait.blocking(), "futures' oneshot has no blocking receive");
    let (req_s, req_r) = futures::channel::oneshot::channel::<FuturesReq>();
    let server = server(wait, move |exec| {
        let mut req_r = req_r;
        while let Ok(FuturesReq(n, reply)) = exec.run(req_r) {
            let (next_s, next_r) = futures::channel::oneshot::channel();
            req_r = next_r;
            if reply.send(FuturesRep(n + 1, next_s)).is_err() {
                break;
            }
        }
    });
    client(wait, iters, server, |exec, trips| {
        let mut req = req_s;
        for n in trips {
            let (rep_s, rep_r) = futures::channel::oneshot::channel();
            assert!(req.send(FuturesReq(n, rep_s)).is_ok());
            let Ok(FuturesRep(m, next)) = exec.run(rep_r) else {
                panic!("server gone")
            };
            assert_eq!(m, n + 1);
            req = next;
        }
        req
    })
}
