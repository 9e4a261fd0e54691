//! A `trale` UDP echo server and client, both tasks, over IPv4 and IPv6.
//!
//! The server task owns an unconnected `UdpSocket` on port 0 and sends every
//! datagram back to its sender (`recv_from`, `send_to`) until it receives
//! `stop`; it returns how many it echoed. The client task binds its own
//! socket, `connect`s it to the server and sends numbered datagrams of
//! varying length (0 to 1 KiB of payload after a 4-byte sequence number),
//! keeping up to 16 in flight (`send`, `recv`). Every echo is checked byte
//! for byte against what was sent under its sequence number, and counted
//! once; an echo that does not come within a second counts as lost (nothing
//! is retried, and nothing can hang).
//!
//! - IPv4 (`127.0.0.1:0`): both tasks go to the background executor with
//!   `Executor::spawn` from plain `main`, which waits with the blocking
//!   `join`.
//! - IPv6 (`[::1]:0`): the same two tasks on an executor running on `main`'s
//!   own thread (`Executor::block_on`), awaiting their joiners. Skipped with
//!   a message if `[::1]` cannot be bound (no IPv6 loopback).
//!
//! `cargo run -p examples --bin trale_udp_echo [DATAGRAMS]` (default 2000
//! per address family).
//!
//! Expected output (addresses and times vary):
//!
//! ```text
//! IPv4: server 127.0.0.1:40163 (background executor)
//! IPv4: sent 2000, echoed 2000, mismatched 0, lost 0; server echoed 2000 (45 ms)
//! IPv6: server [::1]:50372 (block_on on main)
//! IPv6: sent 2000, echoed 2000, mismatched 0, lost 0; server echoed 2000 (41 ms)
//! all echoes matched
//! ```
//!
//! or `IPv6: skipped, cannot bind [::1]:0 (...)` in place of the IPv6 lines.
//! Exits non-zero if an echo was wrong, missing or duplicated.

use std::error::Error;
use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use trale::net::UdpSocket;
use trale::task::Executor;
use trale::timer::Timer;

const DEFAULT_DATAGRAMS: u32 = 2_000;
/// Datagrams the client keeps in flight.
const WINDOW: u32 = 16;
/// How long the client waits for an echo before it calls the rest lost.
const ECHO_TIMEOUT: Duration = Duration::from_secs(1);
/// Tells the server to return.
const STOP: &[u8] = b"stop";

/// Datagram `seq`: its number, then `seq % 1025` bytes of a pattern.
fn datagram(seq: u32) -> Vec<u8> {
    let mut d = seq.to_le_bytes().to_vec();
    d.extend((0..seq % 1025).map(|i| (seq.wrapping_mul(31).wrapping_add(i)) as u8));
    d
}

/// Echoes datagrams to their senders until `stop`; how many it echoed.
async fn server(socket: UdpSocket) -> io::Result<u32> {
    let mut buf = vec![0u8; 2048];
    let mut echoed = 0;
    loop {
        let (n, from) = socket.recv_from(&mut buf).await?;
        if &buf[..n] == STOP {
            return Ok(echoed);
        }
        socket.send_to(&buf[..n], from).await?;
        echoed += 1;
    }
}

/// What the client saw.
#[derive(Debug, Default)]
struct Tally {
    sent: u32,
    echoed: u32,
    mismatched: u32,
}

/// Sends `count` datagrams from `bind` to `server` and checks the echoes,
/// then tells the server to stop.
async fn client(bind: SocketAddr, server: SocketAddr, count: u32) -> io::Result<Tally> {
    let socket = UdpSocket::bind(bind)?;
    socket.connect(server)?;
    let mut tally = Tally::default();
    let mut seen = vec![false; count as usize];
    let mut buf = vec![0u8; 2048];
    'windows: while tally.sent < count {
        let batch = WINDOW.min(count - tally.sent);
        for _ in 0..batch {
            socket.send(&datagram(tally.sent)).await?;
            tally.sent += 1;
        }
        for _ in 0..batch {
            let n = match Timer::timeout(ECHO_TIMEOUT, socket.recv(&mut buf)).await {
                Ok(n) => n?,
                // Lost (loopback does not lose, but never hang): the counts
                // will show it.
                Err(_) => break 'windows,
            };
            let echo = &buf[..n];
            let seq = echo
                .get(..4)
                .map(|b| u32::from_le_bytes(b.try_into().expect("4 bytes")));
            match seq {
                Some(seq) if seq < count && !seen[seq as usize] && echo == datagram(seq) => {
                    seen[seq as usize] = true;
                    tally.echoed += 1;
                }
                _ => tally.mismatched += 1,
            }
        }
    }
    socket.send(STOP).await?;
    Ok(tally)
}

/// Prints one address family's result; an error if anything was off.
fn report(
    family: &str,
    tally: &Tally,
    served: Option<u32>,
    took: Duration,
) -> Result<(), Box<dyn Error>> {
    let lost = tally.sent - tally.echoed.min(tally.sent);
    let served_text = match served {
        Some(n) => format!("server echoed {n}"),
        None => "server did not stop (stop datagram lost?)".to_owned(),
    };
    println!(
        "{family}: sent {}, echoed {}, mismatched {}, lost {lost}; {served_text} ({} ms)",
        tally.sent,
        tally.echoed,
        tally.mismatched,
        took.as_millis()
    );
    if tally.mismatched > 0 || lost > 0 || served != Some(tally.sent) {
        return Err(format!("{family}: echoes did not match: {tally:?}, server {served:?}").into());
    }
    Ok(())
}

/// IPv4, on the background executor.
fn ipv4(count: u32) -> Result<(), Box<dyn Error>> {
    let socket = UdpSocket::bind("127.0.0.1:0")?;
    let addr = socket.local_addr()?;
    println!("IPv4: server {addr} (background executor)");
    let started = Instant::now();
    let server = Executor::spawn(server(socket));
    let bind: SocketAddr = "127.0.0.1:0".parse()?;
    let tally = Executor::spawn(client(bind, addr, count)).join()?;
    // The server ends on `stop`; wait for it a bounded time, from an
    // executor of our own, and abort it if it does not.
    let served = Executor::block_on(async {
        let mut server = server;
        match Timer::timeout(Duration::from_secs(1), &mut server).await {
            Ok(served) => served.map(Some),
            Err(_) => {
                server.abort();
                Ok(None)
            }
        }
    })?;
    report("IPv4", &tally, served, started.elapsed())
}

/// IPv6, on an executor on this thread.
fn ipv6(count: u32) -> Result<(), Box<dyn Error>> {
    let socket = match UdpSocket::bind("[::1]:0") {
        Ok(s) => s,
        Err(e) => {
            println!("IPv6: skipped, cannot bind [::1]:0 ({e})");
            return Ok(());
        }
    };
    let addr = socket.local_addr()?;
    println!("IPv6: server {addr} (block_on on main)");
    let started = Instant::now();
    let bind: SocketAddr = "[::1]:0".parse()?;
    let (tally, served) = Executor::block_on(async move {
        let mut server = Executor::spawn(server(socket));
        let tally = Executor::spawn(client(bind, addr, count)).await?;
        let served = match Timer::timeout(Duration::from_secs(1), &mut server).await {
            Ok(served) => Some(served?),
            Err(_) => {
                server.abort();
                None
            }
        };
        io::Result::Ok((tally, served))
    })?;
    report("IPv6", &tally, served, started.elapsed())
}

fn main() -> Result<(), Box<dyn Error>> {
    let count: u32 = match std::env::args().nth(1) {
        Some(a) => a.parse()?,
        None => DEFAULT_DATAGRAMS,
    };
    ipv4(count)?;
    ipv6(count)?;
    println!("all echoes matched");
    Ok(())
}
