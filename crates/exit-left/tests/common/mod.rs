//! Helpers shared by exit-left's test files.
#![allow(dead_code, unused_imports)]

use core::future::Future;
use core::pin::Pin;
use core::task::{Context, Poll, Waker};
use exit_left::Stage;
use std::time::{Duration, Instant};

pub use testkit::{iters, watchdog};

#[cfg(target_os = "linux")]
pub mod datagram;
pub mod script;

/// Polls a future once with `waker`.
pub fn poll_once<F: Future + Unpin>(fut: &mut F, waker: &Waker) -> Poll<F::Output> {
    Pin::new(fut).poll(&mut Context::from_waker(waker))
}

/// Waits (bounded, 30 s) until `n` followers wait on `stage`.
pub fn until_waiting<T: std::hash::Hash + Eq, R, M>(stage: &Stage<T, R, M>, n: usize) {
    let give_up = Instant::now() + Duration::from_secs(30);
    while stage.waiting() != n {
        assert!(Instant::now() < give_up, "followers never reached {n}");
        std::thread::yield_now();
    }
}

/// A long time-out that still ends a test that would hang.
pub const LONG: Option<Duration> = Some(Duration::from_secs(20));

/// What an `Entry` was, without the guard (which is `!Send`): the guard
/// is dropped here, handing the headship on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Got {
    Head,
    Notified,
    TimedOut,
    Closed,
}

pub fn got<T: std::hash::Hash + Eq, R, M>(entry: exit_left::Entry<'_, T, R, M>) -> Got {
    match entry {
        exit_left::Entry::Head(_) => Got::Head,
        exit_left::Entry::Notified => Got::Notified,
        exit_left::Entry::TimedOut => Got::TimedOut,
        exit_left::Entry::Closed => Got::Closed,
    }
}

/// xorshift64*: enough randomness for timing and routing choices in the
/// stress and review tests, with no dependency. Seeded by the caller, so
/// a failing run can be replayed.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform enough in `0..n` for tests (`n` > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// A token whose `Drop` panics while armed (never while its thread already
/// unwinds); `Hash`/`Eq` look at `id` only. For the stage's rule that user
/// code (a token's drop) runs after its lock and loses nothing.
#[derive(Debug)]
pub struct Tok {
    pub id: u32,
    pub armed: bool,
}

/// A token whose drop does not panic.
pub fn tok(id: u32) -> Tok {
    Tok { id, armed: false }
}

/// A token whose drop panics.
pub fn armed(id: u32) -> Tok {
    Tok { id, armed: true }
}

impl PartialEq for Tok {
    fn eq(&self, other: &Self) -> bool {
        self.id == other.id
    }
}

impl Eq for Tok {}

impl std::hash::Hash for Tok {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.id.hash(state);
    }
}

impl Drop for Tok {
    fn drop(&mut self) {
        if self.armed && !std::thread::panicking() {
            panic!("deliberate: this token's drop panics");
        }
    }
}

/// A waker that does nothing when woken and runs `on_drop` when its last
/// clone is dropped (to make a stage drop a waker at a chosen moment and
/// see what that drop may do).
pub fn on_drop_waker(on_drop: impl Fn() + Send + Sync + 'static) -> Waker {
    struct OnDrop<F: Fn() + Send + Sync>(F);
    impl<F: Fn() + Send + Sync> std::task::Wake for OnDrop<F> {
        fn wake(self: std::sync::Arc<Self>) {}
    }
    impl<F: Fn() + Send + Sync> Drop for OnDrop<F> {
        fn drop(&mut self) {
            (self.0)();
        }
    }
    Waker::from(std::sync::Arc::new(OnDrop(on_drop)))
}
