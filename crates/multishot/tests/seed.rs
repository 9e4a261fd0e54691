//! The seed's example, verbatim, driven to completion.
#![allow(unused_must_use)] // the seed ignores `send`'s result; kept as written

use std::thread;

#[test]
#[rustfmt::skip]
fn seed_example_runs_unchanged() {
    let _w = testkit::watchdog("seed_example_runs_unchanged");
    let fut = async { let (s, mut r) = multishot::channel();
// Send a value to the channel from another thread.
thread::spawn(move || {
s.send("42");
});
// Receive the value.
let res = r.recv().await;
assert_eq!(res, Ok("42"));
// Recycle the sender. This is guaranteed to succeed if the previous
// message has been read.
let s = r.sender().unwrap();
// Drop the sender on another thread without sending a message.
thread::spawn(move || {
drop(s);
});
// Receive an error.
let res = r.recv().await;
assert_eq!(res, Err(multishot::RecvError {}));
};
    sync_core::future::block_on(fut);
}

/// The spec's condensed form of the same example.
#[test]
#[rustfmt::skip]
fn spec_example_runs() {
    let _w = testkit::watchdog("spec_example_runs");
    sync_core::future::block_on(async {
        let (s, mut r) = multishot::channel();
        std::thread::spawn(move || { s.send("42"); });
        assert_eq!(r.recv().await, Ok("42"));
        let s = r.sender().unwrap();          // guaranteed Some once the value was received
        std::thread::spawn(move || drop(s));
        assert_eq!(r.recv().await, Err(multishot::RecvError {}));
    });
}
