//! The seed's example, verbatim: two tasks on the background executor sleep
//! two seconds each, concurrently.
#![cfg(not(miri))]

use std::time::Duration;
use trale::{task::Executor, timer::Timer};

#[test]
fn seed_example_two_sleeps_finish_together() {
    let _dog = testkit::watchdog("seed_example_two_sleeps_finish_together");
    let start = std::time::Instant::now();

    let task1 = Executor::spawn(async {
        Timer::sleep(Duration::from_secs(2)).await;
        println!("Hello task 1!");
        1
    });

    let task2 = Executor::spawn(async {
        Timer::sleep(Duration::from_secs(2)).await;
        println!("Hello task 2!");
        2
    });

    assert_eq!(task1.join(), 1);
    assert_eq!(task2.join(), 2);

    // Behaviour, not speed: run one after the other they would take 4 s.
    let took = start.elapsed();
    assert!(took >= Duration::from_secs(2), "woke early: {took:?}");
    assert!(
        took < Duration::from_millis(3900),
        "the sleeps did not overlap: {took:?}"
    );
}
