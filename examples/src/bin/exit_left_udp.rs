//! Many threads behind one unconnected UDP socket (the `exit-left` seed's
//! scenario): one server socket on `127.0.0.1:0`, one owner thread per peer,
//! and every datagram delivered to the thread that owns its sender.
//!
//! Only one thread at a time may block reading the socket. The owners share
//! an `exit_left::Stage` with a mailbox per peer address: `Stage::recv`
//! returns a thread's next datagram, and when nobody is reading, the caller
//! becomes the head, reads, and delivers whatever belongs to others into
//! their mailboxes (waking just that owner) until its own datagram arrives.
//! Nobody is woken for a datagram that is not theirs, and there is no
//! reader thread.
//!
//! Each peer (a client socket of its own) sends numbered datagrams and sends
//! the next one only after its owner echoed the previous one (the owners
//! send through `Stage::resource`, which any thread may use while another
//! reads). Nothing is retried: a lost datagram shows up as a peer's time-out
//! error, never as a hang. At the end the program prints, per thread, how
//! many datagrams it took (and how many it read as head for everyone), and
//! the stage's counters; it exits non-zero if any datagram went to the wrong
//! owner, came out of order, or was lost.
//!
//! `cargo run -p examples --bin exit_left_udp [THREADS] [DATAGRAMS_PER_PEER]`
//! (defaults: 8 threads, 1000 datagrams per peer).

use exit_left::{RecvError, Stage};
use std::error::Error;
use std::io::{self, ErrorKind};
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

const DEFAULT_THREADS: usize = 8;
const DEFAULT_DATAGRAMS: u32 = 1_000;
/// How long the head blocks in one read when nothing arrives, so that it
/// notices its deadline and `close`.
const SERVER_READ_TIMEOUT: Duration = Duration::from_millis(5);
/// How long a `recv` waits before its owner looks around again.
const RECV_TIMEOUT: Duration = Duration::from_millis(100);
/// How long a peer waits for an echo before it calls its datagram lost.
const ECHO_TIMEOUT: Duration = Duration::from_secs(5);

/// The server's stage: tokens are peer addresses, mailboxes hold datagrams.
type Server = Stage<SocketAddr, UdpSocket, Vec<u8>>;

/// What one owner thread saw.
#[derive(Default)]
struct Tally {
    /// Its own datagrams, in order.
    taken: AtomicU32,
    /// Datagrams from another peer.
    misrouted: AtomicU32,
    /// Its own datagrams with an unexpected sequence number.
    out_of_order: AtomicU32,
    /// Datagrams it read from the socket as head, for anyone.
    read_as_head: AtomicU64,
}

/// A datagram: the peer's index and a sequence number.
fn datagram(peer: u32, seq: u32) -> [u8; 8] {
    let mut d = [0; 8];
    d[..4].copy_from_slice(&peer.to_le_bytes());
    d[4..].copy_from_slice(&seq.to_le_bytes());
    d
}

fn parse(d: &[u8]) -> Option<(u32, u32)> {
    let d: &[u8; 8] = d.try_into().ok()?;
    let peer = u32::from_le_bytes(d[..4].try_into().ok()?);
    let seq = u32::from_le_bytes(d[4..].try_into().ok()?);
    Some((peer, seq))
}

fn timed_out(e: &io::Error) -> bool {
    matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut)
}

/// Owner thread `me`: takes its peer's datagrams until the stage closes.
fn owner(stage: &Server, me: u32, peer: SocketAddr, tally: &Tally) -> Result<(), String> {
    let mut ticket = stage.ticket(peer).map_err(|e| format!("owner {me}: {e}"))?;
    let mut buf = [0; 64];
    loop {
        let got = stage.recv(&mut ticket, Some(RECV_TIMEOUT), |socket| {
            // Called only while this thread heads the stage.
            match socket.recv_from(&mut buf) {
                Ok((n, from)) => {
                    tally.read_as_head.fetch_add(1, Ordering::Relaxed);
                    Ok(Some((from, buf[..n].to_vec())))
                }
                Err(e) if timed_out(&e) => Ok(None),
                Err(e) => Err(e),
            }
        });
        let d = match got {
            Ok(d) => d,
            Err(RecvError::TimedOut) => continue,
            Err(RecvError::Closed) => return Ok(()),
            Err(RecvError::Read(e)) => return Err(format!("owner {me}: reading: {e}")),
        };
        let expected = tally.taken.load(Ordering::Relaxed);
        match parse(&d) {
            Some((from, seq)) if from == me && seq == expected => {
                tally.taken.store(expected + 1, Ordering::Relaxed);
                // The echo lets the peer send its next datagram.
                stage
                    .resource()
                    .send_to(&d, peer)
                    .map_err(|e| format!("owner {me}: echo: {e}"))?;
            }
            Some((from, _)) if from == me => {
                tally.out_of_order.fetch_add(1, Ordering::Relaxed);
            }
            _ => {
                tally.misrouted.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// Peer `me`: sends `count` datagrams, each after the echo of the one
/// before.
fn peer(me: u32, socket: &UdpSocket, server: SocketAddr, count: u32) -> Result<(), String> {
    let mut buf = [0; 64];
    for seq in 0..count {
        let d = datagram(me, seq);
        socket
            .send_to(&d, server)
            .map_err(|e| format!("peer {me}: send {seq}: {e}"))?;
        let (n, from) = socket.recv_from(&mut buf).map_err(|e| {
            format!("peer {me}: datagram {seq} lost (no echo within {ECHO_TIMEOUT:?}): {e}")
        })?;
        if from != server || buf[..n] != d {
            return Err(format!("peer {me}: wrong echo for {seq}: {:?}", &buf[..n]));
        }
    }
    Ok(())
}

/// Closes the stage when dropped, also when a thread panicked: the owners
/// leave their loops only through `close`.
struct CloseOnDrop<'a>(&'a Server);

impl Drop for CloseOnDrop<'_> {
    fn drop(&mut self) {
        self.0.close();
    }
}

fn main() -> Result<(), Box<dyn Error>> {
    let mut args = std::env::args().skip(1);
    let threads: u32 = match args.next() {
        Some(a) => a.parse()?,
        None => DEFAULT_THREADS as u32,
    };
    let per_peer: u32 = match args.next() {
        Some(a) => a.parse()?,
        None => DEFAULT_DATAGRAMS,
    };
    if threads == 0 {
        return Err("THREADS must be at least 1".into());
    }

    let socket = UdpSocket::bind("127.0.0.1:0")?;
    socket.set_read_timeout(Some(SERVER_READ_TIMEOUT))?;
    let server = socket.local_addr()?;
    let stage: Server = Stage::with_mailbox(socket);
    // On Linux, a hand-off made while nothing is there to read does not wake
    // the next head: the kernel does, when a datagram arrives.
    #[cfg(target_os = "linux")]
    let stage = stage.promote_when_readable();

    let peers = (0..threads)
        .map(|_| {
            let s = UdpSocket::bind("127.0.0.1:0")?;
            s.set_read_timeout(Some(ECHO_TIMEOUT))?;
            Ok(s)
        })
        .collect::<io::Result<Vec<_>>>()?;
    let addrs = peers
        .iter()
        .map(UdpSocket::local_addr)
        .collect::<io::Result<Vec<_>>>()?;
    let tallies: Vec<Tally> = (0..threads).map(|_| Tally::default()).collect();
    println!("{threads} threads behind {server}, one peer each, {per_peer} datagrams per peer");

    let started = Instant::now();
    let errors: Vec<String> = thread::scope(|s| {
        let closer = CloseOnDrop(&stage);
        let owners: Vec<_> = (0..threads)
            .zip(&addrs)
            .zip(&tallies)
            .map(|((me, &addr), tally)| {
                let stage = &stage;
                s.spawn(move || owner(stage, me, addr, tally))
            })
            .collect();
        // Register every ticket before the first datagram, so that none is
        // read for a peer nobody waits for yet (it would be dropped).
        let give_up = Instant::now() + Duration::from_secs(10);
        while stage.tickets() < addrs.len()
            && !owners.iter().any(|o| o.is_finished())
            && Instant::now() < give_up
        {
            thread::yield_now();
        }
        let peers: Vec<_> = (0..threads)
            .zip(peers)
            .map(|(me, socket)| s.spawn(move || peer(me, &socket, server, per_peer)))
            .collect();
        let mut errors: Vec<String> = peers
            .into_iter()
            .filter_map(|p| p.join().expect("a peer panicked").err())
            .collect();
        drop(closer);
        errors.extend(
            owners
                .into_iter()
                .filter_map(|o| o.join().expect("an owner panicked").err()),
        );
        errors
    });
    let elapsed = started.elapsed();

    let (mut total, mut misrouted_total, mut missing) = (0, 0, 0);
    for (me, (tally, addr)) in tallies.iter().zip(&addrs).enumerate() {
        let taken = tally.taken.load(Ordering::Relaxed);
        let misrouted = tally.misrouted.load(Ordering::Relaxed);
        let out_of_order = tally.out_of_order.load(Ordering::Relaxed);
        println!(
            "thread {me:>3}  peer {addr:<15}  took {taken:>6}/{per_peer}  read {:>6} as head  \
             misrouted {misrouted}  out of order {out_of_order}",
            tally.read_as_head.load(Ordering::Relaxed),
        );
        total += u64::from(taken);
        misrouted_total += u64::from(misrouted + out_of_order);
        missing += u64::from(per_peer - taken);
    }
    let c = stage.counters();
    println!(
        "stage: promotions {} (forwarded {}, slept until readable {}), notifications woken {} / recorded {} / own token {} / \
         no such token {}, time-outs {}, unrouted {}",
        c.promotions,
        c.forwarded_promotions,
        c.promotions_when_readable,
        c.woken,
        c.recorded,
        c.own_token,
        c.no_such_token,
        c.timeouts,
        c.unrouted,
    );
    println!(
        "{total} datagrams delivered in {:.3} s ({:.0} round trips/s)",
        elapsed.as_secs_f64(),
        total as f64 / elapsed.as_secs_f64(),
    );

    for e in &errors {
        eprintln!("error: {e}");
    }
    if !errors.is_empty() || misrouted_total != 0 || missing != 0 || c.unrouted != 0 {
        return Err(format!(
            "{} errors; {misrouted_total} datagrams to the wrong owner or out of order, \
             {missing} missing, {} unrouted",
            errors.len(),
            c.unrouted
        )
        .into());
    }
    println!("every datagram went to its owner, exactly once, in order");
    Ok(())
}
