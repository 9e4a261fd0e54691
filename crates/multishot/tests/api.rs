//! Behaviour of the public API, one property per test.

use core::future::Future;
use core::pin::{Pin, pin};
use core::task::{Context, Poll, Waker};
use multishot::{Receiver, RecvError, RecvTimeoutError, Sender, TryRecvError, channel};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::Wake;
use std::time::{Duration, Instant};
use sync_core::future::block_on;

fn poll_once<F: Future>(fut: F, waker: &Waker) -> Poll<F::Output> {
    let mut cx = Context::from_waker(waker);
    pin!(fut).poll(&mut cx)
}

struct CountingWaker(AtomicUsize);
impl Wake for CountingWaker {
    fn wake(self: Arc<Self>) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

fn counting_waker() -> (Arc<CountingWaker>, Waker) {
    let c = Arc::new(CountingWaker(AtomicUsize::new(0)));
    (Arc::clone(&c), Waker::from(c))
}

#[test]
fn send_to_dropped_receiver_returns_the_value() {
    let _w = testkit::watchdog("send_to_dropped_receiver_returns_the_value");
    let (s, r) = channel::<Vec<u8>>();
    assert!(!s.is_closed());
    drop(r);
    assert!(s.is_closed());
    let err = s.send(vec![1, 2, 3]).unwrap_err();
    assert_eq!(err.into_inner(), vec![1, 2, 3]);
}

#[test]
fn try_recv_empty_value_then_closed() {
    let _w = testkit::watchdog("try_recv_empty_value_then_closed");
    let (s, mut r) = channel::<u32>();
    assert_eq!(r.try_recv(), Err(TryRecvError::Empty));
    assert!(!r.is_closed() && !r.has_value());
    s.send(9).unwrap();
    assert!(r.is_closed() && r.has_value());
    assert_eq!(r.try_recv(), Ok(9));
    assert!(!r.has_value());
    assert_eq!(r.try_recv(), Err(TryRecvError::Closed));
}

#[test]
fn recv_is_fused_and_reports_closed_after_the_value() {
    let _w = testkit::watchdog("recv_is_fused_and_reports_closed_after_the_value");
    let (s, mut r) = channel::<u32>();
    s.send(1).unwrap();
    let mut fut = r.recv();
    let mut cx = Context::from_waker(Waker::noop());
    assert_eq!(Pin::new(&mut fut).poll(&mut cx), Poll::Ready(Ok(1)));
    assert_eq!(
        Pin::new(&mut fut).poll(&mut cx),
        Poll::Ready(Err(RecvError {}))
    );
}

#[test]
fn dropped_recv_future_loses_nothing() {
    let _w = testkit::watchdog("dropped_recv_future_loses_nothing");
    let (s, mut r) = channel::<String>();
    assert!(poll_once(r.recv(), Waker::noop()).is_pending());
    s.send("later".into()).unwrap();
    assert_eq!(block_on(r.recv()).unwrap(), "later");
}

#[test]
fn wake_goes_to_the_latest_waker_only() {
    let _w = testkit::watchdog("wake_goes_to_the_latest_waker_only");
    let (s, mut r) = channel::<u8>();
    let (a, wa) = counting_waker();
    let (b, wb) = counting_waker();
    assert!(poll_once(r.recv(), &wa).is_pending());
    assert!(poll_once(r.recv(), &wb).is_pending());
    s.send(3).unwrap();
    assert_eq!(a.0.load(Ordering::SeqCst), 0);
    assert_eq!(b.0.load(Ordering::SeqCst), 1);
    assert_eq!(Arc::strong_count(&a), 2, "the replaced waker was dropped");
    assert_eq!(r.try_recv(), Ok(3));
}

#[test]
fn same_waker_repoll_does_not_clone() {
    let _w = testkit::watchdog("same_waker_repoll_does_not_clone");
    let (s, mut r) = channel::<u8>();
    let (c, w) = counting_waker();
    assert!(poll_once(r.recv(), &w).is_pending());
    let registered = Arc::strong_count(&c);
    for _ in 0..10 {
        assert!(poll_once(r.recv(), &w).is_pending());
    }
    assert_eq!(
        Arc::strong_count(&c),
        registered,
        "re-polls cloned the waker"
    );
    s.send(1).unwrap();
    assert_eq!(c.0.load(Ordering::SeqCst), 1);
}

#[test]
fn sender_is_none_while_a_sender_is_alive() {
    let _w = testkit::watchdog("sender_is_none_while_a_sender_is_alive");
    let (s, mut r) = channel::<u8>();
    assert!(r.sender().is_none());
    drop(s);
    let s = r.sender().expect("previous sender is gone");
    assert!(r.sender().is_none());
    s.send(1).unwrap();
    assert_eq!(r.try_recv(), Ok(1));
    assert!(r.sender().is_some());
}

#[test]
fn sender_with_unread_returns_the_unread_value() {
    let _w = testkit::watchdog("sender_with_unread_returns_the_unread_value");
    let (s, mut r) = channel::<String>();
    s.send("unread".into()).unwrap();
    let (s2, unread) = r.sender_with_unread().unwrap();
    assert_eq!(unread.as_deref(), Some("unread"));
    assert!(!r.has_value(), "the new round starts empty");
    s2.send("fresh".into()).unwrap();
    assert_eq!(r.try_recv().unwrap(), "fresh");
}

#[test]
fn receiver_new_has_no_sender() {
    let _w = testkit::watchdog("receiver_new_has_no_sender");
    let mut r = Receiver::<u8>::default();
    assert!(r.is_closed());
    assert_eq!(block_on(r.recv()), Err(RecvError {}));
    let s = r.sender().unwrap();
    s.send(4).unwrap();
    assert_eq!(block_on(r.recv()), Ok(4));
}

#[test]
fn closed_future_resolves_when_the_receiver_drops() {
    let _w = testkit::watchdog("closed_future_resolves_when_the_receiver_drops");
    let (mut s, r) = channel::<u8>();
    let (c, w) = counting_waker();
    assert!(poll_once(s.closed(), &w).is_pending());
    assert!(poll_once(s.closed(), &w).is_pending());
    drop(r);
    assert_eq!(
        c.0.load(Ordering::SeqCst),
        1,
        "dropping the receiver woke closed()"
    );
    assert!(poll_once(s.closed(), &w).is_ready());
    assert!(s.send(1).is_err());
}

#[test]
fn closed_waker_is_released_when_the_sender_sends() {
    let _w = testkit::watchdog("closed_waker_is_released_when_the_sender_sends");
    let (mut s, mut r) = channel::<u8>();
    let (c, w) = counting_waker();
    assert!(poll_once(s.closed(), &w).is_pending());
    s.send(1).unwrap();
    assert_eq!(Arc::strong_count(&c), 2, "send dropped the closed() waker");
    assert_eq!(r.try_recv(), Ok(1));
}

#[test]
#[cfg_attr(miri, ignore)] // real sleeps are pointless under Miri
fn recv_timeout_keeps_a_late_value() {
    let (s, mut r) = channel::<String>();
    assert_eq!(
        r.recv_timeout(Duration::from_millis(10)),
        Err(RecvTimeoutError::Timeout)
    );
    let t = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(20));
        s.send("late".into()).unwrap();
    });
    t.join().unwrap();
    assert_eq!(r.recv_deadline(Instant::now()).unwrap(), "late");
}

#[test]
fn recv_timeout_zero_and_closed() {
    let _w = testkit::watchdog("recv_timeout_zero_and_closed");
    let (s, mut r) = channel::<u8>();
    assert_eq!(
        r.recv_timeout(Duration::ZERO),
        Err(RecvTimeoutError::Timeout)
    );
    drop(s);
    assert_eq!(
        r.recv_timeout(Duration::from_secs(60)),
        Err(RecvTimeoutError::Closed)
    );
    assert_eq!(r.recv_blocking(), Err(RecvError {}));
    assert_eq!(r.recv_timeout(Duration::MAX), Err(RecvTimeoutError::Closed));
}

/// Request/response where each side recycles its own sender and hands it
/// to the other side inside the message: no allocation after set-up.
#[test]
fn blocking_ping_pong_across_threads() {
    let _w = testkit::watchdog("blocking_ping_pong_across_threads");
    struct Request(usize, Sender<Reply>);
    struct Reply(usize, Sender<Request>);
    let rounds = if cfg!(miri) { 20 } else { 5_000 };
    let (req_s, mut req_r) = channel::<Request>();
    let (reply_s, mut reply_r) = channel::<Reply>();
    let server = std::thread::spawn(move || {
        let mut served = 0;
        while let Ok(Request(n, reply)) = req_r.recv_blocking() {
            let next = req_r.sender().expect("the request was received");
            assert!(reply.send(Reply(n * 2, next)).is_ok());
            served += 1;
        }
        served
    });
    let (mut req, mut reply) = (req_s, reply_s);
    for n in 0..rounds {
        assert!(req.send(Request(n, reply)).is_ok());
        let Ok(Reply(doubled, next_req)) = reply_r.recv_blocking() else {
            panic!("server hung up");
        };
        assert_eq!(doubled, n * 2);
        req = next_req;
        reply = reply_r.sender().expect("the reply was received");
    }
    drop(req); // the server's recv_blocking returns Err and it stops
    drop(reply);
    assert_eq!(server.join().unwrap(), rounds);
}

#[test]
fn async_round_trips_across_threads() {
    let _w = testkit::watchdog("async_round_trips_across_threads");
    let rounds = if cfg!(miri) { 10 } else { 2_000 };
    let (s, mut r) = channel::<Box<usize>>();
    let (tx, rx) = std::sync::mpsc::channel::<multishot::Sender<Box<usize>>>();
    let t = std::thread::spawn(move || {
        for (n, s) in rx.iter().enumerate() {
            s.send(Box::new(n)).unwrap();
        }
    });
    tx.send(s).unwrap();
    for n in 0..rounds {
        assert_eq!(*block_on(r.recv()).unwrap(), n);
        tx.send(r.sender().unwrap()).unwrap();
    }
    drop(tx);
    t.join().unwrap();
    // The last recycled sender reached the server, which sent on it.
    assert_eq!(*r.try_recv().unwrap(), rounds);
}

#[test]
fn debug_shows_decoded_state() {
    let _w = testkit::watchdog("debug_shows_decoded_state");
    let (s, mut r) = channel::<u8>();
    assert!(poll_once(r.recv(), Waker::noop()).is_pending());
    let rd = format!("{r:?}");
    assert!(rd.contains("waker_registered: true"), "{rd}");
    assert!(rd.contains("sender alive"), "{rd}");
    let sd = format!("{s:?}");
    assert!(sd.contains("receiver_closed: false"), "{sd}");
    s.send(1).unwrap();
    let rd = format!("{r:?}");
    assert!(
        rd.contains("has_value: true") && rd.contains("closed: true"),
        "{rd}"
    );
    assert!(!rd.contains("0x"), "Debug must not print pointers: {rd}");
}

#[test]
fn errors_display_and_compare() {
    let _w = testkit::watchdog("errors_display_and_compare");
    assert_eq!(RecvError {}, RecvError {});
    assert!(RecvError {}.to_string().contains("closed"));
    assert!(TryRecvError::Empty.to_string().contains("no value"));
    assert!(RecvTimeoutError::Timeout.to_string().contains("timed out"));
    let (s, r) = channel::<u8>();
    drop(r);
    let e = s.send(1).unwrap_err();
    assert!(format!("{e:?}").contains("SendError"));
    let boxed: Box<dyn std::error::Error + Send + Sync + 'static> = Box::new(e);
    assert!(boxed.to_string().contains("receiver was dropped"));
}
