//! Every value sent is dropped exactly once, whichever way its round ends.

use core::future::Future;
use core::pin::pin;
use core::task::{Context, Waker};
use multishot::channel;
use std::sync::atomic::{AtomicUsize, Ordering};

static CREATED: AtomicUsize = AtomicUsize::new(0);
static DROPPED: AtomicUsize = AtomicUsize::new(0);

/// Owns heap memory and counts its drops; dropping one twice would also be
/// caught by Miri as a double free of the box.
struct Counted(#[allow(dead_code)] Box<u64>);

impl Counted {
    fn new(n: u64) -> Self {
        CREATED.fetch_add(1, Ordering::SeqCst);
        Counted(Box::new(n))
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        DROPPED.fetch_add(1, Ordering::SeqCst);
    }
}

#[test]
fn every_value_is_dropped_exactly_once() {
    let _w = testkit::watchdog("every_value_is_dropped_exactly_once");
    let rounds = if cfg!(miri) { 3 } else { 200 };
    for i in 0..rounds {
        // 1. received
        let (s, mut r) = channel();
        s.send(Counted::new(i)).unwrap();
        drop(r.try_recv().unwrap());
        // 2. never received: the receiver drops it
        let s = r.sender().unwrap();
        s.send(Counted::new(i)).unwrap();
        drop(r);
        // 3. receiver gone first: returned to the sender
        let (s, r) = channel();
        drop(r);
        drop(s.send(Counted::new(i)).unwrap_err().into_inner());
        // 4. unread value replaced by recycling: `sender` drops it
        let (s, mut r) = channel();
        s.send(Counted::new(i)).unwrap();
        let s = r.sender().unwrap();
        // 5. ... and `sender_with_unread` hands it back
        s.send(Counted::new(i)).unwrap();
        let (s, unread) = r.sender_with_unread().unwrap();
        drop(unread.expect("unread value"));
        // 6. registered waker, then sent, then both dropped
        let mut cx = Context::from_waker(Waker::noop());
        assert!(pin!(r.recv()).poll(&mut cx).is_pending());
        s.send(Counted::new(i)).unwrap();
        drop(r);
        // 7. across threads, racing the receiver's drop
        let (s, r) = channel();
        let t = std::thread::spawn(move || {
            let _ = s.send(Counted::new(i));
        });
        drop(r);
        t.join().unwrap();
    }
    assert_eq!(
        CREATED.load(Ordering::SeqCst),
        DROPPED.load(Ordering::SeqCst)
    );
    assert_eq!(CREATED.load(Ordering::SeqCst), rounds as usize * 7);
}
