//! A worker thread answers requests; each request carries a recycled
//! `multishot::Sender` for its reply, so after set-up no message allocates.
//!
//! `cargo run -p examples --bin multishot_replies`

use multishot::{Receiver, Sender};
use sync_core::future::block_on;

struct Request {
    n: u64,
    reply: Sender<u64>,
}

fn main() {
    let (requests, inbox) = std::sync::mpsc::sync_channel::<Request>(1);
    let worker = std::thread::spawn(move || {
        for Request { n, reply } in inbox {
            // A client that gave up is not an error: its value comes back.
            let _ = reply.send(n * n);
        }
    });

    let mut replies = Receiver::new();
    let mut total = 0;
    for n in 1..=10 {
        let reply = replies.sender().expect("the previous reply was received");
        requests.send(Request { n, reply }).expect("worker alive");
        total += block_on(replies.recv()).expect("worker replied");
    }
    drop(requests);
    worker.join().unwrap();
    assert_eq!(total, 385);
    println!("sum of squares 1..=10 = {total}, one channel allocation for ten replies");
}
