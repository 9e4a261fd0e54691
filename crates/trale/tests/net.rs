//! Sockets: echo over IPv4 and IPv6, readiness, EAGAIN, hang-up, reset,
//! fd reuse, waker replacement, fairness against a flood, idle CPU.
#![cfg(not(miri))]

use std::future::{Future, poll_fn};
use std::io::{self, Write};
use std::net::{Shutdown, SocketAddr};
use std::os::fd::AsRawFd;
use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;
use testkit::{HostileWaker, Misbehaviour};
use trale::diagnostics;
use trale::net::{TcpListener, TcpStream, UdpSocket};
use trale::task::{Executor, yield_now};
use trale::timer::Timer;

const V4: &str = "127.0.0.1:0";
const V6: &str = "[::1]:0";

fn ipv6_available() -> bool {
    std::net::UdpSocket::bind(V6).is_ok()
}

/// CPU time this thread has used.
fn thread_cpu() -> Duration {
    // SAFETY: `getrusage` writes one `rusage` into a live, zeroed local.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        assert_eq!(libc::getrusage(libc::RUSAGE_THREAD, &mut usage), 0);
        usage
    };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

fn udp_echo(bind: &str) {
    Executor::block_on(async {
        let server = UdpSocket::bind(bind).unwrap();
        let server_addr = server.local_addr().unwrap();
        let echo = Executor::spawn(async move {
            let mut buf = [0u8; 64];
            for _ in 0..100 {
                let (n, from) = server.recv_from(&mut buf).await.unwrap();
                server.send_to(&buf[..n], from).await.unwrap();
            }
        });
        let client = UdpSocket::bind(bind).unwrap();
        client.connect(server_addr).unwrap();
        let mut buf = [0u8; 64];
        for i in 0..100u8 {
            client.send(&[i; 64]).await.unwrap();
            let n = client.recv(&mut buf).await.unwrap();
            assert_eq!(&buf[..n], &[i; 64]);
        }
        echo.await;
    });
}

#[test]
fn udp_echo_over_ipv4() {
    let _dog = testkit::watchdog("udp_echo_over_ipv4");
    udp_echo(V4);
}

#[test]
fn udp_echo_over_ipv6() {
    let _dog = testkit::watchdog("udp_echo_over_ipv6");
    if ipv6_available() {
        udp_echo(V6);
    }
}

fn tcp_echo(bind: &str) {
    Executor::block_on(async {
        let listener = TcpListener::bind(bind).unwrap();
        let addr = listener.local_addr().unwrap();
        let server = Executor::spawn(async move {
            let (stream, _) = listener.accept().await.unwrap();
            stream.set_nodelay(true).unwrap();
            assert!(stream.nodelay().unwrap());
            let mut buf = [0u8; 4096];
            let mut total = 0;
            loop {
                let n = stream.read(&mut buf).await.unwrap();
                if n == 0 {
                    break; // end of stream: a 0, not an error, not a spin
                }
                total += n;
                stream.write_all(&buf[..n]).await.unwrap();
            }
            stream.shutdown(Shutdown::Write).unwrap();
            total
        });
        let client = TcpStream::connect(addr).await.unwrap();
        assert_eq!(client.peer_addr().unwrap(), addr);
        let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        // Writer and reader tasks share the stream (methods take `&self`).
        let client = Arc::new(client);
        let writer = {
            let (client, data) = (client.clone(), data.clone());
            Executor::spawn(async move {
                client.write_all(&data).await.unwrap();
                client.shutdown(Shutdown::Write).unwrap();
            })
        };
        let mut echoed = vec![0u8; data.len()];
        client.read_exact(&mut echoed).await.unwrap();
        assert!(echoed == data, "echo differs");
        assert_eq!(client.read(&mut [0u8; 16]).await.unwrap(), 0);
        writer.await;
        assert_eq!(server.await, data.len());
    });
}

#[test]
fn tcp_echo_over_ipv4() {
    let _dog = testkit::watchdog("tcp_echo_over_ipv4");
    tcp_echo(V4);
}

#[test]
fn tcp_echo_over_ipv6() {
    let _dog = testkit::watchdog("tcp_echo_over_ipv6");
    if ipv6_available() {
        tcp_echo(V6);
    }
}

#[test]
fn connect_to_a_closed_port_reports_the_error() {
    let _dog = testkit::watchdog("connect_to_a_closed_port_reports_the_error");
    let addr = std::net::TcpListener::bind(V4)
        .unwrap()
        .local_addr()
        .unwrap();
    // The listener is dropped: nothing listens there now.
    Executor::block_on(async {
        let err = TcpStream::connect(addr).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::ConnectionRefused);
    });
}

#[test]
fn read_exact_reports_an_early_end_of_stream() {
    let _dog = testkit::watchdog("read_exact_reports_an_early_end_of_stream");
    let listener = std::net::TcpListener::bind(V4).unwrap();
    let addr = listener.local_addr().unwrap();
    let peer = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        s.write_all(b"abc").unwrap();
    });
    Executor::block_on(async {
        let stream = TcpStream::connect(addr).await.unwrap();
        let mut buf = [0u8; 8];
        let err = stream.read_exact(&mut buf).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
    });
    peer.join().unwrap();
}

/// An operation that would block parks the task instead of spinning: its
/// future is polled once before the data arrives and once after.
#[test]
fn eagain_parks_until_readable() {
    let _dog = testkit::watchdog("eagain_parks_until_readable");
    Executor::block_on(async {
        let socket = UdpSocket::bind(V4).unwrap();
        let addr = socket.local_addr().unwrap();
        let polls = Arc::new(AtomicUsize::new(0));
        let p = polls.clone();
        let reader = Executor::spawn(async move {
            let mut recv = pin!(async {
                let mut buf = [0u8; 8];
                socket.recv_from(&mut buf).await.unwrap().0
            });
            poll_fn(|cx| {
                p.fetch_add(1, Ordering::SeqCst);
                recv.as_mut().poll(cx)
            })
            .await
        });
        for _ in 0..50 {
            yield_now().await;
        }
        Timer::sleep(Duration::from_millis(20)).await;
        assert_eq!(
            polls.load(Ordering::SeqCst),
            1,
            "polled while nothing was readable"
        );
        std::net::UdpSocket::bind(V4)
            .unwrap()
            .send_to(b"hi", addr)
            .unwrap();
        assert_eq!(reader.await, 2);
        assert_eq!(polls.load(Ordering::SeqCst), 2);
    });
}

/// Two wakers polled in turn on one pending read: only the latest is woken.
#[test]
fn only_the_latest_waker_per_direction_is_kept() {
    let _dog = testkit::watchdog("only_the_latest_waker_per_direction_is_kept");
    Executor::block_on(async {
        let socket = UdpSocket::bind(V4).unwrap();
        let addr = socket.local_addr().unwrap();
        let mut buf = [0u8; 8];
        let mut recv = pin!(socket.recv_from(&mut buf));
        let first = HostileWaker::new(Misbehaviour::None);
        let second = HostileWaker::new(Misbehaviour::None);
        for w in [&first, &second] {
            let waker = w.waker();
            assert!(
                recv.as_mut()
                    .poll(&mut Context::from_waker(&waker))
                    .is_pending()
            );
        }
        std::net::UdpSocket::bind(V4)
            .unwrap()
            .send_to(b"x", addr)
            .unwrap();
        while second.wakes() == 0 {
            Timer::sleep(Duration::from_millis(1)).await;
        }
        assert_eq!(first.wakes(), 0, "a replaced waker was woken");
        let waker = second.waker();
        match recv.as_mut().poll(&mut Context::from_waker(&waker)) {
            Poll::Ready(Ok((1, _))) => {}
            other => panic!("expected the datagram, got {other:?}"),
        }
    });
}

/// A pending read is dropped with its socket; the fd number is reused by a
/// new socket that becomes readable: the old waker hears nothing.
#[test]
fn dropped_read_and_reused_fd_give_no_stale_wakeup() {
    let _dog = testkit::watchdog("dropped_read_and_reused_fd_give_no_stale_wakeup");
    Executor::block_on(async {
        let old_waker = HostileWaker::new(Misbehaviour::None);
        let old_fd = {
            let socket = UdpSocket::bind(V4).unwrap();
            let mut buf = [0u8; 8];
            let mut recv = pin!(socket.recv_from(&mut buf));
            let waker = old_waker.waker();
            assert!(
                recv.as_mut()
                    .poll(&mut Context::from_waker(&waker))
                    .is_pending()
            );
            assert_eq!(diagnostics::registered_sockets(), Some(1));
            socket.as_raw_fd()
        };
        assert_eq!(
            diagnostics::registered_sockets(),
            Some(0),
            "dropped socket still registered"
        );
        // Other tests open fds concurrently: take sockets until the number
        // comes back (the kernel hands out the lowest free one).
        let mut spare = Vec::new();
        let socket = loop {
            let s = UdpSocket::bind(V4).unwrap();
            if s.as_raw_fd() == old_fd {
                break s;
            }
            assert!(spare.len() < 256, "fd {old_fd} never came back");
            spare.push(s);
        };
        let addr = socket.local_addr().unwrap();
        std::net::UdpSocket::bind(V4)
            .unwrap()
            .send_to(b"new", addr)
            .unwrap();
        let mut buf = [0u8; 8];
        let (n, _) = socket.recv_from(&mut buf).await.unwrap();
        assert_eq!(&buf[..n], b"new");
        for _ in 0..5 {
            Timer::sleep(Duration::from_millis(1)).await;
        }
        assert_eq!(
            old_waker.wakes(),
            0,
            "a stale registration woke a dropped read"
        );
    });
}

fn reset_by_peer(stream: std::net::TcpStream) {
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: `linger` is a live, initialised value of the size passed.
    let r = unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&raw const linger).cast(),
            size_of::<libc::linger>() as libc::socklen_t,
        )
    };
    assert_eq!(r, 0);
    drop(stream); // close with linger 0: RST
}

/// A reset wakes a reader and a blocked writer; both report an error, once.
#[test]
fn reset_wakes_both_directions_with_an_error() {
    let _dog = testkit::watchdog("reset_wakes_both_directions_with_an_error");
    let listener = std::net::TcpListener::bind(V4).unwrap();
    let addr = listener.local_addr().unwrap();
    let (go, ready) = std::sync::mpsc::channel::<()>();
    let peer = std::thread::spawn(move || {
        let (s, _) = listener.accept().unwrap();
        ready.recv().unwrap(); // until the writer has filled the buffers
        reset_by_peer(s);
    });
    Executor::block_on(async {
        let stream = Arc::new(TcpStream::connect(addr).await.unwrap());
        let reader = {
            let stream = stream.clone();
            Executor::spawn(async move { stream.read(&mut [0u8; 16]).await })
        };
        let writer = {
            let stream = stream.clone();
            Executor::spawn(async move {
                let chunk = vec![7u8; 65536];
                loop {
                    if let Err(e) = stream.write(&chunk).await {
                        return e;
                    }
                }
            })
        };
        // Let the writer fill both socket buffers and park.
        Timer::sleep(Duration::from_millis(50)).await;
        assert!(!writer.is_finished() && !reader.is_finished());
        go.send(()).unwrap();
        let read = reader.await;
        assert!(
            read.is_err() || read.as_ref().is_ok_and(|n| *n == 0),
            "{read:?}"
        );
        let err = writer.await;
        assert!(
            matches!(
                err.kind(),
                io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe
            ),
            "{err:?}"
        );
    });
    peer.join().unwrap();
}

/// A peer that closed (EOF read and left unread since) and a peer that reset
/// do not make the executor spin while it waits for something else.
#[test]
fn hang_up_and_reset_do_not_spin() {
    let _dog = testkit::watchdog("hang_up_and_reset_do_not_spin");
    let listener = std::net::TcpListener::bind(V4).unwrap();
    let addr = listener.local_addr().unwrap();
    let (go, connected) = std::sync::mpsc::channel::<()>();
    let peer = std::thread::spawn(move || {
        let (a, _) = listener.accept().unwrap();
        let (b, _) = listener.accept().unwrap();
        connected.recv().unwrap();
        drop(a); // orderly close: EOF
        reset_by_peer(b); // RST
    });
    Executor::block_on(async {
        let closed = TcpStream::connect(addr).await.unwrap();
        let reset = TcpStream::connect(addr).await.unwrap();
        go.send(()).unwrap();
        peer.join().unwrap();
        assert_eq!(closed.read(&mut [0u8; 8]).await.unwrap(), 0);
        assert!(reset.read(&mut [0u8; 8]).await.is_err());
        // Both stay registered and open, nobody reads them again.
        let before = thread_cpu();
        Timer::sleep(Duration::from_millis(300)).await;
        let used = thread_cpu() - before;
        assert!(
            used < Duration::from_millis(60),
            "the executor spun: {used:?} CPU in 300 ms"
        );
        drop((closed, reset));
    });
}

/// A connection that always has data does not starve a timer or another
/// socket: the reader is made to yield.
#[test]
fn a_flooding_connection_does_not_starve_timers_or_other_sockets() {
    let _dog = testkit::watchdog("a_flooding_connection_does_not_starve_timers_or_other_sockets");
    let listener = std::net::TcpListener::bind(V4).unwrap();
    let addr = listener.local_addr().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let stop2 = stop.clone();
    let flooder = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        let chunk = vec![1u8; 1 << 16];
        while !stop2.load(Ordering::SeqCst) {
            if s.write_all(&chunk).is_err() {
                break;
            }
        }
    });
    Executor::block_on(async {
        let stream = TcpStream::connect(addr).await.unwrap();
        let reading = Arc::new(AtomicBool::new(true));
        let r = reading.clone();
        let reader = Executor::spawn(async move {
            let mut bytes = 0usize;
            let mut buf = [0u8; 16];
            while r.load(Ordering::SeqCst) {
                bytes += stream.read(&mut buf).await.unwrap();
            }
            bytes
        });
        // Wait for the flood to be flowing.
        Timer::sleep(Duration::from_millis(20)).await;
        let other = UdpSocket::bind(V4).unwrap();
        let other_addr = other.local_addr().unwrap();
        std::net::UdpSocket::bind(V4)
            .unwrap()
            .send_to(b"x", other_addr)
            .unwrap();
        let mut buf = [0u8; 4];
        other.recv_from(&mut buf).await.unwrap();
        Timer::sleep(Duration::from_millis(5)).await;
        reading.store(false, Ordering::SeqCst);
        stop.store(true, Ordering::SeqCst);
        assert!(reader.await > 0);
    });
    flooder.join().unwrap();
}

/// 1,000 sleeping tasks and 1,000 idle sockets: the executor thread uses
/// (almost) no CPU while they wait.
#[test]
fn idle_tasks_and_sockets_use_almost_no_cpu() {
    let _dog = testkit::watchdog("idle_tasks_and_sockets_use_almost_no_cpu");
    Executor::block_on(async {
        let mut joiners = Vec::new();
        for i in 0..1000u64 {
            joiners.push(Executor::spawn(async move {
                Timer::sleep(Duration::from_secs(600 + i)).await;
            }));
            let socket = UdpSocket::bind(V4).unwrap();
            joiners.push(Executor::spawn(async move {
                let _ = socket.recv_from(&mut [0u8; 8]).await;
            }));
        }
        // Every task has run once (and parked) after a few rounds.
        for _ in 0..200 {
            if diagnostics::registered_sockets() == Some(1000) {
                break;
            }
            yield_now().await;
        }
        assert_eq!(diagnostics::registered_sockets(), Some(1000));
        assert_eq!(diagnostics::pending_timers(), Some(1000));
        let before = thread_cpu();
        Timer::sleep(Duration::from_millis(500)).await;
        let used = thread_cpu() - before;
        assert!(
            used < Duration::from_millis(50),
            "{used:?} CPU in 500 ms of idling"
        );
        for j in &joiners {
            j.abort();
        }
        for j in joiners {
            assert!(j.result().await.unwrap_err().is_cancelled());
        }
        // Abort deregistered every socket and cancelled every timer.
        assert_eq!(diagnostics::registered_sockets(), Some(0));
        assert_eq!(diagnostics::pending_timers(), Some(0));
    });
}

/// Abort drops the task's future on its thread: its socket is deregistered
/// and closed, its timer cancelled.
#[test]
fn abort_deregisters_sockets_and_cancels_timers() {
    let _dog = testkit::watchdog("abort_deregisters_sockets_and_cancels_timers");
    Executor::block_on(async {
        let socket = UdpSocket::bind(V4).unwrap();
        let fd = socket.as_raw_fd();
        let task = Executor::spawn(async move {
            let mut buf = [0u8; 8];
            let read = socket.recv_from(&mut buf);
            let _ = Timer::timeout(Duration::from_secs(600), read).await;
        });
        yield_now().await;
        assert_eq!(diagnostics::registered_sockets(), Some(1));
        assert_eq!(diagnostics::pending_timers(), Some(1));
        task.abort();
        assert!(task.result().await.unwrap_err().is_cancelled());
        assert_eq!(diagnostics::registered_sockets(), Some(0));
        assert_eq!(diagnostics::pending_timers(), Some(0));
        // (That its fd is closed too is checked in `tests/fds.rs`, where no
        // other test opens fds meanwhile.)
        let _ = fd;
    });
}

/// A socket is used by a task on the background executor after it was
/// created on this thread (it is `Send`), with a reader and a writer task
/// sharing it (it is `Sync`).
#[test]
fn sockets_move_to_tasks_and_are_shared() {
    let _dog = testkit::watchdog("sockets_move_to_tasks_and_are_shared");
    let socket = Arc::new(UdpSocket::bind(V4).unwrap());
    let addr: SocketAddr = socket.local_addr().unwrap();
    let reader = {
        let socket = socket.clone();
        Executor::spawn(async move {
            let mut buf = [0u8; 8];
            socket.recv_from(&mut buf).await.unwrap().0
        })
    };
    let writer = Executor::spawn(async move { socket.send_to(b"12345", addr).await.unwrap() });
    assert_eq!(writer.join(), 5);
    assert_eq!(reader.join(), 5);
}

#[test]
fn a_socket_used_after_its_executor_ended_panics_with_a_message() {
    let _dog = testkit::watchdog("a_socket_used_after_its_executor_ended_panics");
    let socket = UdpSocket::bind(V4).unwrap();
    Executor::block_on(async {
        let mut buf = [0u8; 8];
        let _ = Timer::timeout(Duration::from_millis(1), socket.recv_from(&mut buf)).await;
    });
    let err = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        Executor::block_on(async {
            let mut buf = [0u8; 8];
            let _ = socket.recv_from(&mut buf).await;
        })
    }))
    .unwrap_err();
    let msg = err
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .unwrap_or_default();
    assert!(msg.contains("shut down"), "{msg}");
    // `into_std` gives it back, usable again.
    let std_socket = socket.into_std().unwrap();
    std_socket
        .set_read_timeout(Some(Duration::from_millis(1)))
        .unwrap();
    let again = UdpSocket::from_std(std_socket).unwrap();
    Executor::block_on(async {
        let addr = again.local_addr().unwrap();
        again.send_to(b"ok", addr).await.unwrap();
        let mut buf = [0u8; 4];
        assert_eq!(again.recv_from(&mut buf).await.unwrap().0, 2);
    });
}

#[test]
fn tcp_listener_sets_so_reuseaddr() {
    let listener = TcpListener::bind(V4).unwrap();
    let mut on: libc::c_int = 0;
    let mut len = size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `on` and `len` are live locals of the sizes passed.
    let r = unsafe {
        libc::getsockopt(
            listener.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_REUSEADDR,
            (&raw mut on).cast(),
            &mut len,
        )
    };
    assert_eq!(r, 0);
    assert_eq!(on, 1);
}
