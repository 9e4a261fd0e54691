//! `trale` against tokio's current-thread runtime, the workloads of
//! `spec/trale.md` ("Benchmarks"), measured in interleaved rounds in one
//! process, quiet and loaded (`benches::interleaved` says why).
//!
//! # One workload, two runtimes
//!
//! Every workload is written once, generic over the small [`Rt`] trait
//! (`block_on`, `spawn`, `yield_now`, `sleep`, UDP and TCP hooks), and run
//! with [`Trale`] (`trale::task::Executor`) and with [`Tokio`]
//! (`tokio::runtime::Builder::new_current_thread().enable_all()`, a fresh
//! runtime per run, like trale's `block_on`, which starts a fresh executor).
//! The only per-runtime code is the trait's implementations, each a one-line
//! call into the runtime; tokio's `JoinHandle` is unwrapped in a small
//! `async` wrapper so that both joiners yield the task's value. Runtime
//! creation and teardown are outside every timed region: clocks are read
//! inside the runtime, on its thread.
//!
//! # Rows
//!
//! - **spawn + join**: inside `block_on`, spawn 100k tasks returning their
//!   index, then await every joiner in order (the sum is checked).
//! - **yield_now, spawned task**: one spawned task awaits `yield_now` 100k
//!   times (the only task: every yield goes through the runtime's queue).
//! - **yield_now, block_on future**: the same 20k times in the `block_on`
//!   future itself (a different path in both runtimes).
//! - **ping-pong**: two spawned tasks hand a token back and forth 10k times
//!   through two one-slot channels written here ([`Slot`]: an `AtomicU64`
//!   and a `sync_core::AtomicWaker`), the same channel for both runtimes;
//!   per round trip (two hand-offs, two wake-ups, two polls).
//! - **cross-thread wake**: a spawned task waits on [`Signal`] (a sequence
//!   number and an `AtomicWaker`); a plain thread waits until the task has
//!   registered its waker, sleeps 100 µs more so that the runtime has gone
//!   to sleep in `epoll_wait`, stamps the time and wakes the waker; the task
//!   reads the clock when it observes the new number. Latency = the task's
//!   reading minus the stamp; p50 and p99 over up to 300 samples per run.
//!   CPU = the runtime thread's per wake (wake-up, poll, going back to
//!   sleep).
//! - **sleep overshoot**: one spawned task sleeps 100 µs (200 times), 1 ms
//!   (150 times) and 10 ms (30 times, so its p99 is the maximum); overshoot
//!   = time from just before creating the sleep to its completion, minus the
//!   requested duration.
//! - **100k concurrent sleeps**: inside `block_on`, spawn 100k tasks that
//!   each sleep 10 ms, then await them all: the time until the last joined,
//!   the part of it beyond the 10 ms, and the CPU per task (spawn, timer
//!   registration, firing, join).
//! - **UDP echo, 64 B**: the server is a task on the runtime, on a thread of
//!   its own (`recv_from`, then `send_to` the sender); the client is a plain
//!   std blocking `UdpSocket` on the bench's thread, the same code for both
//!   runtimes: send 64 bytes, wait for the echo (checked byte for byte),
//!   repeat, for `BENCH_RUN_MS` after 16 untimed round trips.
//! - **TCP echo round trip, 64 B**: the same over one TCP connection (both
//!   ends `TCP_NODELAY`); the server accepts in its `block_on` future and
//!   runs one echo task per connection (`read`, then `write_all` what it
//!   read).
//! - **TCP echo throughput, 1 / 16 / 64 connections**: the same server; the
//!   client is one plain thread driving every connection with `poll(2)`
//!   (non-blocking std `TcpStream`s), each connection keeping one 64-byte
//!   message in flight, for `BENCH_RUN_MS`. Wall per echo is the inverse of
//!   the echo rate. One client thread (rather than one per connection)
//!   keeps the machine at two busy threads, server and client, on a 2-core
//!   machine, so the server's cost is what differs.
//!
//! All sockets bind to `127.0.0.1:0`. Network CPU figures are the server
//! thread's alone (the runtime's cost; the client is identical std code).
//!
//! # Rounds and how to read the tables
//!
//! In every round each row runs trale and tokio once, back to back, the
//! order alternating from round to round and row to row; quiet and loaded
//! rounds alternate (loaded = one busy thread pinned to each core, started by the
//! harness, [`benches::interleaved::Load`]). Each figure is the median over
//! rounds; "trale / tokio" is the median of per-round ratios (with the
//! lowest and highest per-round ratio): below 1.00 trale is faster, cheaper
//! or overshoots less. CPU = the runtime thread's own CPU time
//! (`CLOCK_THREAD_CPUTIME_ID`, [`benches::interleaved::thread_cpu`]).
//! Default 15 quiet + 15 loaded rounds, `BENCH_RUN_MS` = 300 ms for the
//! time-bounded rows (UDP, TCP, wake); `BENCH_ROUNDS` / `BENCH_RUN_MS`
//! override, and `BENCH_ROWS=udp,ping` runs only the rows whose group or
//! name contains one of the words. A full run takes under three minutes.
//!
//! The loaded UDP echo rows have two regimes, for both runtimes: most
//! rounds near 13-18 µs p50, a few near 35-60 µs (measured 2026-12-02, 15
//! loaded rounds: trale 3 slow rounds, tokio 3, not the same rounds). It is
//! where the scheduler puts the server, the client and the two busy threads
//! in that run, not a runtime's code; so read the loaded ratio's median,
//! not its extremes (a single round's ratio ranges 0.2-2.6 there).
//!
//! `--test` is the smoke test: one quiet round with tiny sizes, every
//! result checked; no report. Otherwise writes
//! `target/bench-report.d/trale.md`.

use benches::interleaved::{Load, Settings, busy_threads, thread_cpu};
use benches::median;
use std::future::{Future, poll_fn};
use std::io::{self, ErrorKind, Read, Write};
use std::net::{Ipv4Addr, SocketAddr};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::thread;
use std::time::{Duration, Instant};
use sync_core::AtomicWaker;

// ------------------------------------------------------------ the runtimes

/// What a workload needs from a runtime. Every method is a thin call into
/// the runtime; the workloads are generic over this trait.
trait Rt: 'static {
    /// Runs `future` on a fresh runtime on this thread.
    fn block_on<F: Future>(future: F) -> F::Output;
    /// Spawns a task on the current runtime (call inside `block_on`); the
    /// returned future is its value.
    fn spawn<F>(future: F) -> impl Future<Output = F::Output> + Send + 'static
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static;
    fn yield_now() -> impl Future<Output = ()> + Send + 'static;
    fn sleep(duration: Duration) -> impl Future<Output = ()> + Send + 'static;

    type Udp: Send + Sync + 'static;
    /// Wraps a bound, non-blocking std socket (inside the runtime).
    fn udp(socket: std::net::UdpSocket) -> Self::Udp;
    fn recv_from<'a>(
        socket: &'a Self::Udp,
        buf: &'a mut [u8],
    ) -> impl Future<Output = io::Result<(usize, SocketAddr)>> + Send + 'a;
    fn send_to<'a>(
        socket: &'a Self::Udp,
        buf: &'a [u8],
        to: SocketAddr,
    ) -> impl Future<Output = io::Result<usize>> + Send + 'a;

    type Listener: Send + Sync + 'static;
    type Stream: Send + 'static;
    /// Wraps a bound, non-blocking std listener (inside the runtime).
    fn listener(listener: std::net::TcpListener) -> Self::Listener;
    /// Accepts one connection and sets `TCP_NODELAY` on it.
    fn accept(listener: &Self::Listener) -> impl Future<Output = io::Result<Self::Stream>> + Send;
    fn read<'a>(
        stream: &'a mut Self::Stream,
        buf: &'a mut [u8],
    ) -> impl Future<Output = io::Result<usize>> + Send + 'a;
    fn write_all<'a>(
        stream: &'a mut Self::Stream,
        buf: &'a [u8],
    ) -> impl Future<Output = io::Result<()>> + Send + 'a;
}

/// `trale::task::Executor` and its timers and sockets.
struct Trale;

impl Rt for Trale {
    fn block_on<F: Future>(future: F) -> F::Output {
        trale::task::Executor::block_on(future)
    }
    fn spawn<F>(future: F) -> impl Future<Output = F::Output> + Send + 'static
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        trale::task::Executor::spawn(future)
    }
    fn yield_now() -> impl Future<Output = ()> + Send + 'static {
        trale::task::yield_now()
    }
    fn sleep(duration: Duration) -> impl Future<Output = ()> + Send + 'static {
        trale::timer::Timer::sleep(duration)
    }

    type Udp = trale::net::UdpSocket;
    fn udp(socket: std::net::UdpSocket) -> Self::Udp {
        trale::net::UdpSocket::from_std(socket).expect("trale UdpSocket::from_std")
    }
    fn recv_from<'a>(
        socket: &'a Self::Udp,
        buf: &'a mut [u8],
    ) -> impl Future<Output = io::Result<(usize, SocketAddr)>> + Send + 'a {
        socket.recv_from(buf)
    }
    fn send_to<'a>(
        socket: &'a Self::Udp,
        buf: &'a [u8],
        to: SocketAddr,
    ) -> impl Future<Output = io::Result<usize>> + Send + 'a {
        socket.send_to(buf, to)
    }

    type Listener = trale::net::TcpListener;
    type Stream = trale::net::TcpStream;
    fn listener(listener: std::net::TcpListener) -> Self::Listener {
        trale::net::TcpListener::from_std(listener).expect("trale TcpListener::from_std")
    }
    async fn accept(listener: &Self::Listener) -> io::Result<Self::Stream> {
        let (stream, _) = listener.accept().await?;
        stream.set_nodelay(true)?;
        Ok(stream)
    }
    fn read<'a>(
        stream: &'a mut Self::Stream,
        buf: &'a mut [u8],
    ) -> impl Future<Output = io::Result<usize>> + Send + 'a {
        stream.read(buf)
    }
    fn write_all<'a>(
        stream: &'a mut Self::Stream,
        buf: &'a [u8],
    ) -> impl Future<Output = io::Result<()>> + Send + 'a {
        stream.write_all(buf)
    }
}

/// tokio's current-thread runtime with every driver enabled.
struct Tokio;

impl Rt for Tokio {
    fn block_on<F: Future>(future: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("building a tokio current-thread runtime")
            .block_on(future)
    }
    fn spawn<F>(future: F) -> impl Future<Output = F::Output> + Send + 'static
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let handle = tokio::spawn(future);
        async move { handle.await.expect("a tokio task failed") }
    }
    fn yield_now() -> impl Future<Output = ()> + Send + 'static {
        tokio::task::yield_now()
    }
    fn sleep(duration: Duration) -> impl Future<Output = ()> + Send + 'static {
        tokio::time::sleep(duration)
    }

    type Udp = tokio::net::UdpSocket;
    fn udp(socket: std::net::UdpSocket) -> Self::Udp {
        tokio::net::UdpSocket::from_std(socket).expect("tokio UdpSocket::from_std")
    }
    fn recv_from<'a>(
        socket: &'a Self::Udp,
        buf: &'a mut [u8],
    ) -> impl Future<Output = io::Result<(usize, SocketAddr)>> + Send + 'a {
        socket.recv_from(buf)
    }
    fn send_to<'a>(
        socket: &'a Self::Udp,
        buf: &'a [u8],
        to: SocketAddr,
    ) -> impl Future<Output = io::Result<usize>> + Send + 'a {
        socket.send_to(buf, to)
    }

    type Listener = tokio::net::TcpListener;
    type Stream = tokio::net::TcpStream;
    fn listener(listener: std::net::TcpListener) -> Self::Listener {
        tokio::net::TcpListener::from_std(listener).expect("tokio TcpListener::from_std")
    }
    async fn accept(listener: &Self::Listener) -> io::Result<Self::Stream> {
        let (stream, _) = listener.accept().await?;
        stream.set_nodelay(true)?;
        Ok(stream)
    }
    fn read<'a>(
        stream: &'a mut Self::Stream,
        buf: &'a mut [u8],
    ) -> impl Future<Output = io::Result<usize>> + Send + 'a {
        tokio::io::AsyncReadExt::read(stream, buf)
    }
    fn write_all<'a>(
        stream: &'a mut Self::Stream,
        buf: &'a [u8],
    ) -> impl Future<Output = io::Result<()>> + Send + 'a {
        tokio::io::AsyncWriteExt::write_all(stream, buf)
    }
}

// ------------------------------------------------- runtime-agnostic pieces

/// A one-slot channel between two tasks: a value (0 = empty) and the
/// receiver's waker. Publish, then wake; register, then re-check.
#[derive(Default)]
struct Slot {
    value: AtomicU64,
    waker: AtomicWaker,
}

impl Slot {
    fn send(&self, value: u64) {
        assert_ne!(value, 0);
        let previous = self.value.swap(value, Ordering::AcqRel);
        assert_eq!(previous, 0, "one-slot channel: sent into a full slot");
        self.waker.wake();
    }

    fn take(&self) -> Option<u64> {
        match self.value.load(Ordering::Acquire) {
            0 => None,
            _ => Some(self.value.swap(0, Ordering::AcqRel)),
        }
    }

    async fn recv(&self) -> u64 {
        poll_fn(|cx| {
            if let Some(v) = self.take() {
                return Poll::Ready(v);
            }
            self.waker.register(cx.waker());
            match self.take() {
                Some(v) => Poll::Ready(v),
                None => Poll::Pending,
            }
        })
        .await
    }
}

/// What a plain thread uses to wake a task in the cross-thread row.
struct Signal {
    base: Instant,
    /// The latest sample the waking thread released.
    seq: AtomicU64,
    /// The sample the task has registered its waker for.
    waiting: AtomicU64,
    /// When the waking thread called `wake` (ns since `base`).
    stamp: AtomicU64,
    /// Set with the last sample.
    last: AtomicBool,
    waker: AtomicWaker,
}

impl Signal {
    fn now_ns(&self) -> u64 {
        self.base.elapsed().as_nanos() as u64
    }

    /// Waits (as a task) until sample `i` is released.
    async fn wait_for(&self, i: u64) {
        poll_fn(|cx| {
            if self.seq.load(Ordering::Acquire) >= i {
                return Poll::Ready(());
            }
            self.waker.register(cx.waker());
            self.waiting.store(i, Ordering::Release);
            if self.seq.load(Ordering::Acquire) >= i {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        })
        .await
    }
}

// -------------------------------------------------------------- workloads

/// A duration over a count, in nanoseconds.
fn ns_per(d: Duration, n: u64) -> f64 {
    d.as_nanos() as f64 / n.max(1) as f64
}

/// Percentile `p` of `sorted` (nanoseconds), in microseconds.
fn pct_us(sorted: &[u64], p: f64) -> f64 {
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i] as f64 / 1000.0
}

const SPAWN_METRICS: &[&str] = &["wall ns / task", "CPU ns / task"];

fn spawn_join<R: Rt>(n: u64) -> Vec<f64> {
    R::block_on(async move {
        let cpu = thread_cpu();
        let start = Instant::now();
        let joiners: Vec<_> = (0..n).map(|i| R::spawn(async move { i })).collect();
        let mut sum = 0;
        for j in joiners {
            sum += j.await;
        }
        let (wall, cpu) = (start.elapsed(), thread_cpu() - cpu);
        assert_eq!(sum, n * (n - 1) / 2);
        vec![ns_per(wall, n), ns_per(cpu, n)]
    })
}

const YIELD_METRICS: &[&str] = &["wall ns / yield", "CPU ns / yield"];

async fn yield_loop<R: Rt>(n: u64) -> Vec<f64> {
    let cpu = thread_cpu();
    let start = Instant::now();
    for _ in 0..n {
        R::yield_now().await;
    }
    let (wall, cpu) = (start.elapsed(), thread_cpu() - cpu);
    vec![ns_per(wall, n), ns_per(cpu, n)]
}

fn yields_in_task<R: Rt>(n: u64) -> Vec<f64> {
    R::block_on(async move { R::spawn(yield_loop::<R>(n)).await })
}

fn yields_in_block_on<R: Rt>(n: u64) -> Vec<f64> {
    R::block_on(yield_loop::<R>(n))
}

const PING_PONG_METRICS: &[&str] = &["wall ns / round trip", "CPU ns / round trip"];

fn ping_pong<R: Rt>(n: u64) -> Vec<f64> {
    const STOP: u64 = u64::MAX;
    R::block_on(async move {
        let there = Arc::new(Slot::default());
        let back = Arc::new(Slot::default());
        let cpu = thread_cpu();
        let start = Instant::now();
        let ping = R::spawn({
            let (there, back) = (there.clone(), back.clone());
            async move {
                for i in 1..=n {
                    there.send(i);
                    assert_eq!(back.recv().await, i);
                }
                there.send(STOP);
            }
        });
        let pong = R::spawn(async move {
            let mut echoed = 0;
            loop {
                let v = there.recv().await;
                if v == STOP {
                    return echoed;
                }
                back.send(v);
                echoed += 1;
            }
        });
        ping.await;
        assert_eq!(pong.await, n);
        let (wall, cpu) = (start.elapsed(), thread_cpu() - cpu);
        vec![ns_per(wall, n), ns_per(cpu, n)]
    })
}

const WAKE_METRICS: &[&str] = &["p50 µs", "p99 µs", "runtime CPU µs / wake"];

/// How long the waking thread waits, after the task registered, before it
/// wakes it: the runtime must be asleep in `epoll_wait` by then.
const WAKE_PAUSE: Duration = Duration::from_micros(100);

fn cross_thread_wake<R: Rt>(max: u64, run_time: Duration) -> Vec<f64> {
    let signal = Arc::new(Signal {
        base: Instant::now(),
        seq: AtomicU64::new(0),
        waiting: AtomicU64::new(0),
        stamp: AtomicU64::new(0),
        last: AtomicBool::new(false),
        waker: AtomicWaker::new(),
    });
    let waking = {
        let signal = signal.clone();
        thread::Builder::new()
            .name("waker".into())
            .spawn(move || {
                let mut deadline = None;
                for i in 1..=max {
                    let registered = Instant::now();
                    while signal.waiting.load(Ordering::Acquire) < i {
                        assert!(
                            registered.elapsed() < Duration::from_secs(5),
                            "the task did not wait for sample {i} within 5 s"
                        );
                        thread::sleep(Duration::from_micros(20));
                    }
                    let deadline = *deadline.get_or_insert_with(|| Instant::now() + run_time);
                    thread::sleep(WAKE_PAUSE);
                    if i == max || Instant::now() >= deadline {
                        signal.last.store(true, Ordering::Relaxed);
                    }
                    signal.stamp.store(signal.now_ns(), Ordering::Relaxed);
                    signal.seq.store(i, Ordering::Release);
                    signal.waker.wake();
                    if signal.last.load(Ordering::Relaxed) {
                        return;
                    }
                }
            })
            .expect("spawning the waking thread")
    };
    let (mut latencies, cpu) = R::block_on(async move {
        R::spawn(async move {
            let cpu = thread_cpu();
            let mut latencies = Vec::new();
            for i in 1.. {
                signal.wait_for(i).await;
                latencies.push(signal.now_ns() - signal.stamp.load(Ordering::Relaxed));
                if signal.last.load(Ordering::Relaxed) {
                    break;
                }
            }
            (latencies, thread_cpu() - cpu)
        })
        .await
    });
    waking.join().expect("the waking thread panicked");
    latencies.sort_unstable();
    let n = latencies.len() as u64;
    vec![
        pct_us(&latencies, 0.50),
        pct_us(&latencies, 0.99),
        ns_per(cpu, n) / 1000.0,
    ]
}

const OVERSHOOT_METRICS: &[&str] = &["overshoot p50 µs", "overshoot p99 µs", "CPU µs / sleep"];

fn sleep_overshoot<R: Rt>(duration: Duration, n: u64) -> Vec<f64> {
    R::block_on(async move {
        R::spawn(async move {
            let cpu = thread_cpu();
            let mut over = Vec::with_capacity(n as usize);
            for _ in 0..n {
                let start = Instant::now();
                R::sleep(duration).await;
                let slept = start.elapsed();
                assert!(
                    slept >= duration,
                    "a {duration:?} sleep ended after {slept:?}"
                );
                over.push((slept - duration).as_nanos() as u64);
            }
            let cpu = thread_cpu() - cpu;
            over.sort_unstable();
            vec![
                pct_us(&over, 0.50),
                pct_us(&over, 0.99),
                ns_per(cpu, n) / 1000.0,
            ]
        })
        .await
    })
}

const MANY_SLEEPS_METRICS: &[&str] = &["all joined, ms", "beyond the sleep, ms", "CPU ns / task"];

fn many_sleeps<R: Rt>(n: u64, duration: Duration) -> Vec<f64> {
    R::block_on(async move {
        let cpu = thread_cpu();
        let start = Instant::now();
        let joiners: Vec<_> = (0..n)
            .map(|_| R::spawn(async move { R::sleep(duration).await }))
            .collect();
        for j in joiners {
            j.await;
        }
        let (wall, cpu) = (start.elapsed(), thread_cpu() - cpu);
        assert!(wall >= duration);
        vec![
            wall.as_secs_f64() * 1e3,
            (wall - duration).as_secs_f64() * 1e3,
            ns_per(cpu, n),
        ]
    })
}

/// Bytes per echoed message.
const MSG: usize = 64;
/// Untimed round trips before a network run's clock starts.
const WARM_UP: u64 = 16;
/// The longest the client waits for one echo.
const ECHO_TIMEOUT: Duration = Duration::from_secs(5);

const ECHO_METRICS: &[&str] = &["p50 µs", "p99 µs", "server CPU µs / round trip"];

/// A message: `seq` in the first 8 bytes, a pattern after.
fn message(seq: u64) -> [u8; MSG] {
    let mut m = [0u8; MSG];
    m[..8].copy_from_slice(&seq.to_le_bytes());
    for (i, b) in m[8..].iter_mut().enumerate() {
        *b = i as u8 ^ 0x5a;
    }
    m
}

/// Times up to `max` round trips of `one` (after `WARM_UP` untimed ones),
/// until `run_time`; the sorted round trips in ns.
fn client_loop(max: u64, run_time: Duration, mut one: impl FnMut(u64)) -> Vec<u64> {
    for seq in 0..WARM_UP {
        one(seq);
    }
    let deadline = Instant::now() + run_time;
    let mut rtts = Vec::new();
    for seq in WARM_UP..WARM_UP + max {
        let start = Instant::now();
        one(seq);
        let end = Instant::now();
        rtts.push((end - start).as_nanos() as u64);
        if end >= deadline {
            break;
        }
    }
    rtts.sort_unstable();
    rtts
}

fn udp_echo<R: Rt>(max: u64, run_time: Duration) -> Vec<f64> {
    let socket = std::net::UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).expect("binding UDP");
    socket.set_nonblocking(true).unwrap();
    let addr = socket.local_addr().unwrap();
    let server = thread::Builder::new()
        .name("udp-server".into())
        .spawn(move || {
            R::block_on(async move {
                R::spawn(async move {
                    let socket = R::udp(socket);
                    let cpu = thread_cpu();
                    let mut buf = [0u8; 1500];
                    let mut echoed = 0u64;
                    loop {
                        let (n, from) = R::recv_from(&socket, &mut buf).await.expect("recv_from");
                        if n == 0 {
                            break;
                        }
                        let sent = R::send_to(&socket, &buf[..n], from).await.expect("send_to");
                        assert_eq!(sent, n);
                        echoed += 1;
                    }
                    (echoed, thread_cpu() - cpu)
                })
                .await
            })
        })
        .expect("spawning the server thread");
    let client = std::net::UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).expect("binding UDP");
    client.connect(addr).unwrap();
    client.set_read_timeout(Some(ECHO_TIMEOUT)).unwrap();
    let rtts = client_loop(max, run_time, |seq| {
        let out = message(seq);
        client.send(&out).expect("client send");
        let mut back = [0u8; 1500];
        let n = client
            .recv(&mut back)
            .unwrap_or_else(|e| panic!("no echo of datagram {seq} within {ECHO_TIMEOUT:?}: {e}"));
        assert_eq!(&back[..n], &out[..], "a wrong echo");
    });
    client.send(&[]).expect("sending the stop datagram");
    let (echoed, cpu) = server.join().expect("the server thread panicked");
    let trips = rtts.len() as u64;
    assert_eq!(
        echoed,
        trips + WARM_UP,
        "the server echoed {echoed} datagrams"
    );
    vec![
        pct_us(&rtts, 0.50),
        pct_us(&rtts, 0.99),
        ns_per(cpu, echoed) / 1000.0,
    ]
}

/// One connection's echo loop; the bytes echoed.
async fn echo<R: Rt>(mut stream: R::Stream) -> u64 {
    let mut buf = [0u8; 4096];
    let mut echoed = 0;
    loop {
        let n = R::read(&mut stream, &mut buf).await.expect("server read");
        if n == 0 {
            return echoed;
        }
        R::write_all(&mut stream, &buf[..n])
            .await
            .expect("server write");
        echoed += n as u64;
    }
}

/// A TCP echo server on its own thread: accepts `connections` in the
/// `block_on` future, one echo task each, and returns when all of them saw
/// the end of their stream: the bytes echoed and the thread's CPU time.
fn tcp_server<R: Rt>(connections: usize) -> (SocketAddr, thread::JoinHandle<(u64, Duration)>) {
    let listener = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("binding TCP");
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap();
    let server = thread::Builder::new()
        .name("tcp-server".into())
        .spawn(move || {
            R::block_on(async move {
                let cpu = thread_cpu();
                let listener = R::listener(listener);
                let mut echoers = Vec::with_capacity(connections);
                for _ in 0..connections {
                    let stream = R::accept(&listener).await.expect("accept");
                    echoers.push(R::spawn(echo::<R>(stream)));
                }
                let mut echoed = 0;
                for e in echoers {
                    echoed += e.await;
                }
                (echoed, thread_cpu() - cpu)
            })
        })
        .expect("spawning the server thread");
    (addr, server)
}

fn connect(addr: SocketAddr) -> std::net::TcpStream {
    let stream = std::net::TcpStream::connect(addr).expect("connecting");
    stream.set_nodelay(true).unwrap();
    stream.set_read_timeout(Some(ECHO_TIMEOUT)).unwrap();
    stream
}

fn tcp_round_trip<R: Rt>(max: u64, run_time: Duration) -> Vec<f64> {
    let (addr, server) = tcp_server::<R>(1);
    let mut stream = connect(addr);
    let rtts = client_loop(max, run_time, |seq| {
        let out = message(seq);
        stream.write_all(&out).expect("client write");
        let mut back = [0u8; MSG];
        stream
            .read_exact(&mut back)
            .unwrap_or_else(|e| panic!("no echo of message {seq} within {ECHO_TIMEOUT:?}: {e}"));
        assert_eq!(back, out, "a wrong echo");
    });
    drop(stream);
    let (echoed, cpu) = server.join().expect("the server thread panicked");
    let trips = rtts.len() as u64 + WARM_UP;
    assert_eq!(
        echoed,
        trips * MSG as u64,
        "the server echoed {echoed} bytes"
    );
    vec![
        pct_us(&rtts, 0.50),
        pct_us(&rtts, 0.99),
        ns_per(cpu, trips) / 1000.0,
    ]
}

const THROUGHPUT_METRICS: &[&str] = &["wall ns / echo", "server CPU ns / echo"];

fn tcp_throughput<R: Rt>(connections: usize, max: u64, run_time: Duration) -> Vec<f64> {
    let (addr, server) = tcp_server::<R>(connections);
    let mut streams: Vec<_> = (0..connections).map(|_| connect(addr)).collect();
    // Untimed: one round trip per connection (every echo task runs).
    for s in &mut streams {
        s.write_all(&message(0)).unwrap();
        s.read_exact(&mut [0u8; MSG]).expect("warm-up echo");
        s.set_nonblocking(true).unwrap();
    }
    let mut fds: Vec<libc::pollfd> = streams
        .iter()
        .map(|s| libc::pollfd {
            fd: s.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    let mut got = vec![0usize; connections];
    let mut buf = [0u8; 4096];
    let out = message(1);
    let send = |s: &mut std::net::TcpStream| {
        // One message in flight per connection: it always fits.
        assert_eq!(s.write(&out).expect("client write"), MSG);
    };
    let start = Instant::now();
    let deadline = start + run_time;
    for s in &mut streams {
        send(s);
    }
    let (mut in_flight, mut echoes, mut sending) = (connections, 0u64, true);
    while in_flight > 0 {
        // SAFETY: `fds` is a valid array of `fds.len()` pollfds.
        let rc = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, 5000) };
        if rc < 0 {
            let e = io::Error::last_os_error();
            assert_eq!(e.kind(), ErrorKind::Interrupted, "poll: {e}");
            continue;
        }
        assert!(rc > 0, "no echo on any connection within 5 s");
        if sending && (echoes >= max || Instant::now() >= deadline) {
            sending = false;
        }
        for (k, fd) in fds.iter().enumerate() {
            if fd.revents == 0 {
                continue;
            }
            loop {
                match streams[k].read(&mut buf) {
                    Ok(0) => panic!("the server closed connection {k}"),
                    Ok(n) => got[k] += n,
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(e) => panic!("client read: {e}"),
                }
            }
            while got[k] >= MSG {
                got[k] -= MSG;
                echoes += 1;
                if sending {
                    send(&mut streams[k]);
                } else {
                    in_flight -= 1;
                }
            }
        }
    }
    let wall = start.elapsed();
    drop(streams);
    let (echoed, cpu) = server.join().expect("the server thread panicked");
    let total = echoes + connections as u64;
    assert_eq!(
        echoed,
        total * MSG as u64,
        "the server echoed {echoed} bytes"
    );
    vec![ns_per(wall, echoes), ns_per(cpu, total)]
}

// ------------------------------------------------------------ the rounds

#[derive(Clone, Copy)]
enum Side {
    Trale,
    Tokio,
}

const SIDES: [Side; 2] = [Side::Trale, Side::Tokio];
const SIDE_NAMES: [&str; 2] = ["trale", "tokio"];

/// Ends the process, with a message, when one run of one row takes longer
/// than [`RUN_LIMIT`]: a lost wake-up in either runtime would otherwise hang
/// the bench (and `cargo xtask verify`, which runs its smoke test) forever.
struct Watchdog {
    armed: Arc<Mutex<Option<(Instant, String)>>>,
}

/// The longest one run may take (the longest takes under a second).
const RUN_LIMIT: Duration = Duration::from_secs(60);

impl Watchdog {
    fn start() -> Watchdog {
        let armed: Arc<Mutex<Option<(Instant, String)>>> = Arc::default();
        let watched = armed.clone();
        thread::Builder::new()
            .name("watchdog".into())
            .spawn(move || {
                loop {
                    thread::sleep(Duration::from_millis(250));
                    if let Some((deadline, what)) = &*watched.lock().unwrap()
                        && Instant::now() >= *deadline
                    {
                        eprintln!(
                            "trale bench: {what} did not finish within {RUN_LIMIT:?} \
                             (a lost wake-up?); giving up"
                        );
                        std::process::exit(1);
                    }
                }
            })
            .expect("spawning the watchdog thread");
        Watchdog { armed }
    }

    /// Runs `row` on `side` under the watchdog.
    fn run(&self, row: &Row, side: usize) -> Vec<f64> {
        let what = format!("\"{}\" on {}", row.name, SIDE_NAMES[side]);
        *self.armed.lock().unwrap() = Some((Instant::now() + RUN_LIMIT, what));
        let got = (row.run)(SIDES[side]);
        *self.armed.lock().unwrap() = None;
        assert_eq!(got.len(), row.metrics.len());
        got
    }
}

/// One row: a workload, its metrics, and how to run it on either runtime.
struct Row {
    group: &'static str,
    name: String,
    metrics: &'static [&'static str],
    run: Box<dyn Fn(Side) -> Vec<f64>>,
}

/// A row running `$f::<Trale>(args)` or `$f::<Tokio>(args)`.
macro_rules! row {
    ($group:expr, $name:expr, $metrics:expr, $f:ident($($arg:expr),*)) => {
        Row {
            group: $group,
            name: $name.into(),
            metrics: $metrics,
            run: Box::new(move |side| match side {
                Side::Trale => $f::<Trale>($($arg),*),
                Side::Tokio => $f::<Tokio>($($arg),*),
            }),
        }
    };
}

/// The sizes of a full run, or of a smoke test.
struct Sizes {
    tasks: u64,
    yields: u64,
    block_on_yields: u64,
    ping_pongs: u64,
    wakes: u64,
    /// (duration, samples) per overshoot row.
    sleeps: [(Duration, u64); 3],
    many_sleeps: u64,
    many_sleep: Duration,
    /// Most round trips / echoes of a time-bounded network run.
    echoes: u64,
    run_time: Duration,
}

impl Sizes {
    fn new(settings: &Settings) -> Sizes {
        let ms = Duration::from_millis;
        let us = Duration::from_micros;
        if settings.smoke {
            return Sizes {
                tasks: 1_000,
                yields: 1_000,
                block_on_yields: 1_000,
                ping_pongs: 100,
                wakes: 10,
                sleeps: [(us(100), 5), (ms(1), 5), (ms(10), 2)],
                many_sleeps: 1_000,
                many_sleep: ms(1),
                echoes: 50,
                run_time: settings.run_time,
            };
        }
        Sizes {
            tasks: 100_000,
            yields: 100_000,
            block_on_yields: 20_000,
            ping_pongs: 10_000,
            wakes: 300,
            sleeps: [(us(100), 200), (ms(1), 150), (ms(10), 30)],
            many_sleeps: 100_000,
            many_sleep: ms(10),
            echoes: 1_000_000,
            run_time: settings.run_time,
        }
    }
}

fn rows(s: &Sizes) -> Vec<Row> {
    let (run, echoes) = (s.run_time, s.echoes);
    let (tasks, yields, block_on_yields) = (s.tasks, s.yields, s.block_on_yields);
    let (ping_pongs, wakes) = (s.ping_pongs, s.wakes);
    let (many, many_d) = (s.many_sleeps, s.many_sleep);
    let k = |n: u64| {
        if n >= 1000 {
            format!("{}k", n / 1000)
        } else {
            n.to_string()
        }
    };
    let mut rows = vec![
        row!(
            "Tasks",
            format!("spawn + join {} empty tasks", k(tasks)),
            SPAWN_METRICS,
            spawn_join(tasks)
        ),
        row!(
            "Tasks",
            format!("yield_now x {}, spawned task", k(yields)),
            YIELD_METRICS,
            yields_in_task(yields)
        ),
        row!(
            "Tasks",
            format!("yield_now x {}, block_on future", k(block_on_yields)),
            YIELD_METRICS,
            yields_in_block_on(block_on_yields)
        ),
        row!(
            "Tasks",
            format!("two-task ping-pong x {}", k(ping_pongs)),
            PING_PONG_METRICS,
            ping_pong(ping_pongs)
        ),
        row!(
            "Cross-thread wake to poll",
            "plain thread wakes a parked task",
            WAKE_METRICS,
            cross_thread_wake(wakes, run)
        ),
    ];
    for (d, n) in s.sleeps {
        rows.push(row!(
            "Timers",
            format!("sleep {d:?} x {n}"),
            OVERSHOOT_METRICS,
            sleep_overshoot(d, n)
        ));
    }
    rows.push(row!(
        "Timers",
        format!("{} concurrent sleeps of {many_d:?}", k(many)),
        MANY_SLEEPS_METRICS,
        many_sleeps(many, many_d)
    ));
    rows.push(row!(
        "UDP",
        "echo round trip, 64 B",
        ECHO_METRICS,
        udp_echo(echoes, run)
    ));
    rows.push(row!(
        "TCP",
        "echo round trip, 64 B, 1 connection",
        ECHO_METRICS,
        tcp_round_trip(echoes, run)
    ));
    for c in [1usize, 16, 64] {
        rows.push(row!(
            "TCP",
            format!(
                "echo throughput, 64 B, {c} connection{}",
                if c == 1 { "" } else { "s" }
            ),
            THROUGHPUT_METRICS,
            tcp_throughput(c, echoes, run)
        ));
    }
    rows
}

/// A figure with three significant-ish digits.
fn fmt(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

const MODES: [&str; 2] = ["quiet", "loaded"];

/// `results[mode][row][side][round][metric]`.
type Results = Vec<Vec<[Vec<Vec<f64>>; 2]>>;

fn main() {
    // 15 quiet + 15 loaded rounds, about 10 s per pair, plus a warm-up
    // pair: under three minutes.
    let settings = Settings::from_env(15, 300);
    let sizes = Sizes::new(&settings);
    // `BENCH_ROWS=udp,ping`: only the rows whose name or group contains
    // one of the words (case-insensitive), while developing.
    let only = std::env::var("BENCH_ROWS").ok().map(|v| v.to_lowercase());
    let rows: Vec<Row> = rows(&sizes)
        .into_iter()
        .filter(|row| {
            let name = format!("{} {}", row.group, row.name).to_lowercase();
            only.as_ref()
                .is_none_or(|only| only.split(',').any(|word| name.contains(word.trim())))
        })
        .collect();
    let modes = if settings.smoke { 1 } else { 2 };

    let watchdog = Watchdog::start();

    if !settings.smoke {
        for mode in 0..modes {
            let _load = (mode == 1).then(Load::start);
            for row in &rows {
                for side in 0..2 {
                    watchdog.run(row, side);
                }
            }
        }
    }

    let mut results: Results = (0..modes)
        .map(|_| rows.iter().map(|_| [Vec::new(), Vec::new()]).collect())
        .collect();
    let started = Instant::now();
    for round in 0..settings.rounds {
        for (mode, per_mode) in results.iter_mut().enumerate() {
            let _load = (mode == 1).then(Load::start);
            for (r, row) in rows.iter().enumerate() {
                for k in 0..2 {
                    let i = (round + r + k) % 2;
                    per_mode[r][i].push(watchdog.run(row, i));
                }
            }
        }
        let mut line = format!(
            "trale: round {}/{} ({:.0?}), first figure of each row (trale / tokio):",
            round + 1,
            settings.rounds,
            started.elapsed()
        );
        for (mode, per_mode) in results.iter().enumerate() {
            for (r, row) in rows.iter().enumerate() {
                let [t, k] = &per_mode[r];
                line += &format!(
                    "\n  {:6} {} ({}): {} / {}",
                    MODES[mode],
                    row.name,
                    row.metrics[0],
                    fmt(t.last().unwrap()[0]),
                    fmt(k.last().unwrap()[0])
                );
            }
        }
        eprintln!("{line}");
    }

    if settings.smoke {
        eprintln!(
            "trale: smoke test passed ({} rows, both runtimes)",
            rows.len()
        );
        return;
    }
    let md = report(&settings, &rows, &results);
    println!("{md}");
    std::fs::write(benches::report_fragment_path("trale"), md).unwrap();
}

fn report(settings: &Settings, rows: &[Row], results: &Results) -> String {
    let mut md = String::from("## trale vs tokio current_thread, interleaved rounds\n\n");
    md += &format!(
        "{r} quiet and {r} loaded rounds, alternating; in every round each row runs trale and \
         tokio (`new_current_thread().enable_all()`) once, the same workload code, order \
         alternating; loaded = {busy} busy threads (one per core, pinned) started by the harness. \
         Figures are medians over rounds; **trale / tokio** is the median of per-round ratios \
         (lowest - highest in brackets): below 1.00 trale is faster, cheaper or overshoots less. \
         CPU = the runtime thread's own CPU time (`CLOCK_THREAD_CPUTIME_ID`). Network clients \
         are plain std threads, identical for both (UDP and TCP round trip: one blocking \
         socket; TCP throughput: one thread driving every connection with `poll(2)`, one \
         message in flight per connection); time-bounded runs last {ms} ms. The module \
         documentation of `benches/benches/trale.rs` describes every row.\n\n",
        r = settings.rounds,
        busy = busy_threads(),
        ms = settings.run_time.as_millis(),
    );
    let mut groups: Vec<&str> = Vec::new();
    for row in rows {
        if !groups.contains(&row.group) {
            groups.push(row.group);
        }
    }
    for group in groups {
        md += &format!(
            "### {group}\n\n| workload | metric | quiet trale | quiet tokio | quiet trale / tokio \
             | loaded trale | loaded tokio | loaded trale / tokio |\n\
             |---|---|---:|---:|---:|---:|---:|---:|\n"
        );
        for (r, row) in rows
            .iter()
            .enumerate()
            .filter(|(_, row)| row.group == group)
        {
            for (m, metric) in row.metrics.iter().enumerate() {
                md += &format!("| {} | {metric} |", row.name);
                for per_mode in results {
                    let [t, k] = &per_mode[r];
                    let ratios: Vec<f64> = t
                        .iter()
                        .zip(k)
                        .map(|(t, k)| t[m] / k[m].max(1e-9))
                        .collect();
                    let lo = ratios.iter().copied().fold(f64::INFINITY, f64::min);
                    let hi = ratios.iter().copied().fold(0.0, f64::max);
                    md += &format!(
                        " {} | {} | {:.2} ({lo:.2} - {hi:.2}) |",
                        fmt(median(t.iter().map(|v| v[m]))),
                        fmt(median(k.iter().map(|v| v[m]))),
                        median(ratios.iter().copied()),
                    );
                }
                md.push('\n');
            }
        }
        md.push('\n');
    }
    md
}
