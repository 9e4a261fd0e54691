//! Several operations waiting on one socket direction at once: tasks that
//! share a socket (two receivers, two accept loops) all get woken, and an
//! operation that is dropped while it waits leaves no waker behind.
//!
//! Until the reactor kept every waiting operation, a direction kept one
//! waker, the latest: the first of two receivers was never woken again once
//! the second had replaced its waker, however many datagrams came after.
#![cfg(not(miri))]

use std::collections::BTreeSet;
use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use testkit::{HostileWaker, Misbehaviour};
use trale::net::{TcpListener, UdpSocket};
use trale::task::{Executor, yield_now};
use trale::timer::Timer;

const V4: &str = "127.0.0.1:0";

/// Long enough never to fire on a working reactor; it turns a hang into a
/// failure with a message instead of the watchdog's abort.
const HANG: Duration = Duration::from_secs(20);

/// Lets every spawned task run until it waits.
async fn settle() {
    for _ in 0..4 {
        yield_now().await;
    }
}

/// `readers` tasks each receive one datagram on one shared socket, all of
/// them waiting before the first datagram is sent; every datagram reaches
/// exactly one of them.
fn shared_receivers(readers: u8) {
    let _dog = testkit::watchdog("shared_receivers");
    Executor::block_on(async {
        let server = Arc::new(UdpSocket::bind(V4).unwrap());
        let addr = server.local_addr().unwrap();
        let mut joins = Vec::new();
        for _ in 0..readers {
            let server = server.clone();
            joins.push(Executor::spawn(async move {
                let mut buf = [0u8; 8];
                let (n, _) = server.recv_from(&mut buf).await.unwrap();
                assert_eq!(n, 1);
                buf[0]
            }));
            settle().await;
        }
        let client = std::net::UdpSocket::bind(V4).unwrap();
        for i in 0..readers {
            client.send_to(&[i], addr).unwrap();
        }
        let got = Timer::timeout(HANG, async {
            let mut got = BTreeSet::new();
            for join in joins {
                got.insert(join.await);
            }
            got
        })
        .await
        .expect("a task receiving on a shared socket was never woken (lost waker)");
        assert_eq!(got, (0..readers).collect::<BTreeSet<u8>>());
    });
}

#[test]
fn two_tasks_receiving_on_one_socket_both_get_their_datagram() {
    shared_receivers(2);
}

#[test]
fn five_tasks_receiving_on_one_socket_each_get_one_datagram() {
    shared_receivers(5);
}

/// Two accept loops on one listener (a common way to share the accepting):
/// both connections are accepted.
#[test]
fn two_tasks_accepting_on_one_listener_both_accept() {
    let _dog = testkit::watchdog("two_tasks_accepting_on_one_listener_both_accept");
    Executor::block_on(async {
        let listener = Arc::new(TcpListener::bind(V4).unwrap());
        let addr = listener.local_addr().unwrap();
        let mut joins = Vec::new();
        for _ in 0..2 {
            let listener = listener.clone();
            joins.push(Executor::spawn(async move {
                let (_stream, peer) = listener.accept().await.unwrap();
                peer
            }));
            settle().await;
        }
        let first = std::net::TcpStream::connect(addr).unwrap();
        let second = std::net::TcpStream::connect(addr).unwrap();
        let peers = Timer::timeout(HANG, async {
            let mut peers = BTreeSet::new();
            for join in joins {
                peers.insert(join.await);
            }
            peers
        })
        .await
        .expect("an accept loop sharing the listener was never woken (lost waker)");
        let expected: BTreeSet<_> = [first.local_addr().unwrap(), second.local_addr().unwrap()]
            .into_iter()
            .collect();
        assert_eq!(peers, expected);
    });
}

/// A receive that waited and is then dropped (the other branch of a
/// `select`, a timeout) gives its waker back at once, not at the next event.
#[test]
fn a_dropped_waiting_receive_keeps_no_waker() {
    let _dog = testkit::watchdog("a_dropped_waiting_receive_keeps_no_waker");
    Executor::block_on(async {
        let socket = UdpSocket::bind(V4).unwrap();
        let task = HostileWaker::new(Misbehaviour::None);
        let waker = task.waker();
        {
            let mut buf = [0u8; 8];
            let mut recv = pin!(socket.recv_from(&mut buf));
            for _ in 0..3 {
                assert!(
                    recv.as_mut()
                        .poll(&mut Context::from_waker(&waker))
                        .is_pending()
                );
            }
            assert_eq!(task.live(), 2, "the waiting receive keeps one clone");
        }
        assert_eq!(task.live(), 1, "a dropped receive kept its waker");
        assert_eq!(task.wakes(), 0);
    });
}

/// Two waiting receives, the first dropped: the second is still woken, and
/// the dropped one's waker is not.
#[test]
fn dropping_one_of_two_waiting_receives_leaves_the_other_waiting() {
    let _dog = testkit::watchdog("dropping_one_of_two_waiting_receives_leaves_the_other_waiting");
    Executor::block_on(async {
        let socket = UdpSocket::bind(V4).unwrap();
        let addr = socket.local_addr().unwrap();
        let dropped = HostileWaker::new(Misbehaviour::None);
        let kept = HostileWaker::new(Misbehaviour::None);
        let mut buf = [0u8; 8];
        let mut kept_recv = pin!(socket.recv_from(&mut buf));
        {
            let mut other = [0u8; 8];
            let mut dropped_recv = pin!(socket.recv_from(&mut other));
            let waker = dropped.waker();
            assert!(
                dropped_recv
                    .as_mut()
                    .poll(&mut Context::from_waker(&waker))
                    .is_pending()
            );
            let waker = kept.waker();
            assert!(
                kept_recv
                    .as_mut()
                    .poll(&mut Context::from_waker(&waker))
                    .is_pending()
            );
        }
        assert_eq!(dropped.live(), 0, "the dropped receive kept its waker");
        std::net::UdpSocket::bind(V4)
            .unwrap()
            .send_to(b"x", addr)
            .unwrap();
        Timer::timeout(HANG, async {
            while kept.wakes() == 0 {
                Timer::sleep(Duration::from_millis(1)).await;
            }
        })
        .await
        .expect("the remaining receive was never woken");
        assert_eq!(dropped.wakes(), 0);
        let waker = kept.waker();
        match kept_recv.as_mut().poll(&mut Context::from_waker(&waker)) {
            Poll::Ready(Ok((1, _))) => {}
            other => panic!("expected the datagram, got {other:?}"),
        }
    });
}

/// A waiting receive whose stored waker panics when it is dropped: dropping
/// the receive does not panic (nor abort while unwinding) and frees it.
#[test]
fn a_dropped_receive_whose_waker_panics_on_drop_is_quiet() {
    let _dog = testkit::watchdog("a_dropped_receive_whose_waker_panics_on_drop_is_quiet");
    Executor::block_on(async {
        let socket = UdpSocket::bind(V4).unwrap();
        let task = HostileWaker::new(Misbehaviour::PanicOnDrop);
        let waker = task.waker();
        {
            let mut buf = [0u8; 8];
            let mut recv = pin!(socket.recv_from(&mut buf));
            assert!(
                recv.as_mut()
                    .poll(&mut Context::from_waker(&waker))
                    .is_pending()
            );
        }
        assert_eq!(task.live(), 1, "the stored clone was not freed");
        task.disarm();
    });
}
