//! The seed's scenario, run as the spec writes it: one unconnected UDP
//! socket on the "server" side, one owner thread per peer, each with a
//! ticket for its peer's address. Whoever heads the stage reads datagrams
//! and routes each to its peer's owner; the others sleep until notified,
//! promoted or timed out.
//!
//! The traffic is the same for both tests: `N` peers (client sockets) send
//! `K` datagrams each, `[peer index, sequence number]`, and send the next
//! one only after the owner echoed the previous one (through
//! `Stage::resource`, the send side). So a lost datagram shows up as a
//! peer's read time-out, never as a hang, and nothing is retried. Every
//! owner checks that each datagram it takes is its own and the next in
//! order; at the end each owner has taken exactly `K`, nothing is left in
//! any buffer or in the socket, and `stage.close()` ends the loops.
//!
//! - `the_seed_scenario_with_the_raw_loop`: the spec's "API" block, filled
//!   in: a test-owned per-peer buffer, `enter`, and a head that reads and
//!   routes until its own datagram arrives.
//! - `the_seed_scenario_with_the_mailbox`: the same with
//!   `Stage::with_mailbox` and `Stage::recv`, which hides that loop.

mod common;

use common::watchdog;
use exit_left::{Entry, NotifyOutcome, RecvError, Stage};
use std::collections::{HashMap, VecDeque};
use std::error::Error;
use std::io::{self, ErrorKind};
use std::net::{SocketAddr, UdpSocket};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};
use std::thread;
use std::time::{Duration, Instant};

/// Owner threads, one peer each.
const N: usize = 4;
/// Datagrams per peer.
const K: u32 = 200;
/// The server socket's read time-out: how long a head blocks in one read
/// when nothing arrives.
const SERVER_READ_TIMEOUT: Duration = Duration::from_millis(5);
/// How long a peer waits for the echo of its datagram before it reports
/// the datagram lost.
const PEER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Every loop in this file gives up after this long (the watchdog aborts
/// at 60 s).
const GIVE_UP: Duration = Duration::from_secs(40);

/// The test's own per-peer buffers, for the raw loop.
type Buffers = Mutex<HashMap<SocketAddr, VecDeque<Vec<u8>>>>;

fn datagram(peer: usize, seq: u32) -> [u8; 8] {
    let mut d = [0; 8];
    d[..4].copy_from_slice(&u32::try_from(peer).unwrap().to_le_bytes());
    d[4..].copy_from_slice(&seq.to_le_bytes());
    d
}

fn parse(d: &[u8]) -> Option<(usize, u32)> {
    let peer = u32::from_le_bytes(d.get(..4)?.try_into().ok()?);
    let seq = u32::from_le_bytes(d.get(4..8)?.try_into().ok()?);
    (d.len() == 8).then_some((usize::try_from(peer).ok()?, seq))
}

fn timed_out(e: &io::Error) -> bool {
    matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut)
}

/// One owner's side of the traffic: checks what it takes and echoes it.
struct Owner<'a> {
    me: usize,
    peer: SocketAddr,
    socket: &'a UdpSocket,
    taken: &'a AtomicU32,
}

impl Owner<'_> {
    /// Takes one datagram: it must be this owner's, and the next in order.
    /// Echoing it lets the peer send the next one.
    fn take(&self, d: &[u8]) -> Result<(), Box<dyn Error>> {
        let me = self.me;
        let (from, seq) = parse(d).ok_or_else(|| format!("owner {me}: malformed {d:?}"))?;
        if from != me {
            return Err(format!("owner {me} got peer {from}'s datagram {seq}").into());
        }
        let expected = self.taken.load(Ordering::Relaxed);
        if seq != expected {
            return Err(format!("owner {me}: datagram {seq}, expected {expected}").into());
        }
        self.taken.store(expected + 1, Ordering::Relaxed);
        self.socket.send_to(d, self.peer)?;
        Ok(())
    }
}

/// A peer: sends `K` datagrams, each after the echo of the one before.
fn peer(me: usize, socket: &UdpSocket, server: SocketAddr) -> Result<(), Box<dyn Error>> {
    let mut buf = [0; 64];
    for seq in 0..K {
        let d = datagram(me, seq);
        socket.send_to(&d, server)?;
        let (n, from) = socket
            .recv_from(&mut buf)
            .map_err(|e| format!("peer {me}: no echo of datagram {seq}: {e}"))?;
        if from != server || buf[..n] != d {
            return Err(format!("peer {me}: echo of {seq} is {:?} from {from}", &buf[..n]).into());
        }
    }
    Ok(())
}

/// Closes the stage when dropped, so that owners end their loops even when
/// the test fails (or panics) halfway.
struct CloseOnDrop<'a, M>(&'a Stage<SocketAddr, UdpSocket, M>);

impl<M> Drop for CloseOnDrop<'_, M> {
    fn drop(&mut self) {
        self.0.close();
    }
}

/// Runs the traffic: `N` owner threads running `owner(index, peer address,
/// taken)`, `N` peers, then `close`. Fails with every error any thread
/// reported.
fn scenario<M: Send>(
    stage: &Stage<SocketAddr, UdpSocket, M>,
    owner: impl Fn(usize, SocketAddr, &AtomicU32) -> Result<(), Box<dyn Error>> + Sync,
) -> Result<(), Box<dyn Error>> {
    let server = stage.resource().local_addr()?;
    let peers = (0..N)
        .map(|_| {
            let s = UdpSocket::bind("127.0.0.1:0")?;
            s.set_read_timeout(Some(PEER_READ_TIMEOUT))?;
            Ok(s)
        })
        .collect::<io::Result<Vec<_>>>()?;
    let addrs = peers
        .iter()
        .map(UdpSocket::local_addr)
        .collect::<io::Result<Vec<_>>>()?;
    let taken: Vec<AtomicU32> = (0..N).map(|_| AtomicU32::new(0)).collect();

    let errors = thread::scope(|s| {
        let closer = CloseOnDrop(stage);
        let owners: Vec<_> = addrs
            .iter()
            .enumerate()
            .map(|(me, &addr)| {
                let (owner, taken) = (&owner, &taken[me]);
                s.spawn(move || owner(me, addr, taken).map_err(|e| e.to_string()))
            })
            .collect();
        // Every ticket is registered before the first datagram arrives, so
        // none is read for a token without a ticket.
        let give_up = Instant::now() + GIVE_UP;
        while stage.tickets() < N
            && !owners.iter().any(|o| o.is_finished())
            && Instant::now() < give_up
        {
            thread::yield_now();
        }
        let peers: Vec<_> = peers
            .into_iter()
            .enumerate()
            .map(|(me, socket)| {
                s.spawn(move || peer(me, &socket, server).map_err(|e| e.to_string()))
            })
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
    if !errors.is_empty() {
        return Err(errors.join("; ").into());
    }
    for (me, taken) in taken.iter().enumerate() {
        assert_eq!(taken.load(Ordering::Relaxed), K, "owner {me}'s count");
    }
    // Nothing left unread.
    let mut buf = [0; 64];
    match stage.resource().recv_from(&mut buf) {
        Err(e) if timed_out(&e) => {}
        other => panic!("the socket still had something: {other:?}"),
    }
    Ok(())
}

fn server_socket() -> io::Result<UdpSocket> {
    let socket = UdpSocket::bind("127.0.0.1:0")?;
    socket.set_read_timeout(Some(SERVER_READ_TIMEOUT))?;
    Ok(socket)
}

/// The spec's API block, filled in: one owner's loop.
fn raw_owner(
    stage: &Stage<SocketAddr, UdpSocket>,
    buffers: &Buffers,
    me: usize,
    peer_addr: SocketAddr,
    taken: &AtomicU32,
) -> Result<(), Box<dyn Error>> {
    let owner = Owner {
        me,
        peer: peer_addr,
        socket: stage.resource(),
        taken,
    };
    let give_up = Instant::now() + GIVE_UP;
    let mut buf = [0; 64];
    let mut ticket = stage.ticket(peer_addr)?;
    loop {
        if Instant::now() > give_up {
            return Err(format!("owner {me}: still looping after {GIVE_UP:?}").into());
        }
        // Look in this peer's buffer first.
        let mine = buffers
            .lock()
            .unwrap()
            .get_mut(&peer_addr)
            .and_then(VecDeque::pop_front);
        if let Some(d) = mine {
            owner.take(&d)?;
            continue;
        }
        match stage.enter(&mut ticket, Some(Duration::from_millis(50))) {
            Entry::Head(head) => {
                // Read and route until this peer's own datagram arrives (or
                // nothing arrives for a read time-out: then hand on too, so
                // that an owner whose peer is done does not hold the
                // headship, and so that it sees `close`).
                while Instant::now() < give_up {
                    let (n, from) = match head.resource().recv_from(&mut buf) {
                        Ok(got) => got,
                        Err(e) if timed_out(&e) => break,
                        Err(e) => return Err(e.into()),
                    };
                    buffers
                        .lock()
                        .unwrap()
                        .entry(from)
                        .or_default()
                        .push_back(buf[..n].to_vec());
                    if from == peer_addr {
                        break;
                    }
                    match head.notify(&from) {
                        NotifyOutcome::Woken | NotifyOutcome::Recorded => {}
                        other => {
                            return Err(format!("owner {me}: notify {from}: {other:?}").into());
                        }
                    }
                }
                // Dropping `head` hands the headship on.
                drop(head);
            }
            Entry::Notified => {} // Something for me was buffered.
            Entry::TimedOut => {} // Nothing within the time-out: look again.
            Entry::Closed => break,
        }
    }
    let left = buffers
        .lock()
        .unwrap()
        .get(&peer_addr)
        .map_or(0, VecDeque::len);
    if left != 0 {
        return Err(format!("owner {me}: {left} datagrams left in the buffer after close").into());
    }
    Ok(())
}

#[test]
#[cfg_attr(miri, ignore)]
fn the_seed_scenario_with_the_raw_loop() -> Result<(), Box<dyn Error>> {
    let _w = watchdog("the_seed_scenario_with_the_raw_loop");
    let socket = server_socket()?;
    let stage = Stage::new(socket);
    let buffers = Buffers::default();
    scenario(&stage, |me, peer_addr, taken| {
        raw_owner(&stage, &buffers, me, peer_addr, taken)
    })?;

    let buffers = buffers.into_inner().unwrap();
    assert!(
        buffers.values().all(VecDeque::is_empty),
        "datagrams left behind: {buffers:?}"
    );
    assert_eq!(buffers.len(), N, "datagrams from strangers: {buffers:?}");
    let c = stage.counters();
    assert_eq!((c.no_such_token, c.own_token), (0, 0), "{c:?}");
    assert_eq!(stage.tickets(), 0);
    assert!(stage.is_closed() && !stage.is_headed());
    Ok(())
}

/// The same owner with the mailbox: `recv` reads and routes as head.
fn mailbox_owner(
    stage: &Stage<SocketAddr, UdpSocket, Vec<u8>>,
    me: usize,
    peer_addr: SocketAddr,
    taken: &AtomicU32,
) -> Result<(), Box<dyn Error>> {
    let owner = Owner {
        me,
        peer: peer_addr,
        socket: stage.resource(),
        taken,
    };
    let give_up = Instant::now() + GIVE_UP;
    let mut buf = [0; 64];
    let mut ticket = stage.ticket(peer_addr)?;
    loop {
        if Instant::now() > give_up {
            return Err(format!("owner {me}: still looping after {GIVE_UP:?}").into());
        }
        let got = stage.recv(
            &mut ticket,
            Some(Duration::from_millis(50)),
            |socket| match socket.recv_from(&mut buf) {
                Ok((n, from)) => Ok(Some((from, buf[..n].to_vec()))),
                Err(e) if timed_out(&e) => Ok(None),
                Err(e) => Err(e),
            },
        );
        match got {
            Ok(d) => owner.take(&d)?,
            Err(RecvError::TimedOut) => {}
            Err(RecvError::Closed) => break,
            Err(RecvError::Read(e)) => return Err(e.into()),
        }
    }
    if let Some(d) = stage.try_recv(&mut ticket) {
        return Err(format!("owner {me}: {d:?} left in the mailbox after close").into());
    }
    Ok(())
}

#[test]
#[cfg_attr(miri, ignore)]
fn the_seed_scenario_with_the_mailbox() -> Result<(), Box<dyn Error>> {
    let _w = watchdog("the_seed_scenario_with_the_mailbox");
    let socket = server_socket()?;
    let stage = Stage::with_mailbox(socket);
    scenario(&stage, |me, peer_addr, taken| {
        mailbox_owner(&stage, me, peer_addr, taken)
    })?;

    let c = stage.counters();
    assert_eq!((c.no_such_token, c.unrouted), (0, 0), "{c:?}");
    assert_eq!(stage.tickets(), 0);
    assert!(stage.is_closed() && !stage.is_headed());
    Ok(())
}
