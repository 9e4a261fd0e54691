//! A scripted stand-in for a socket, for the tests that drive `recv` and
//! `serve` without one (so they run under Miri): the resource is a list of
//! `(to, message)` items, read in list order.

use exit_left::{EnterFuture, Entry, Stage};
use std::hash::Hash;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Poll, Wake, Waker};
use std::time::{Duration, Instant};

/// The items still to be read, the next one last.
pub type Items = Mutex<Vec<(u32, u32)>>;

/// A stage over a script, `u32` tokens and messages.
pub type S = Stage<u32, Items, u32>;

/// The script reading `list` in order.
pub fn items(list: &[(u32, u32)]) -> Items {
    Mutex::new(list.iter().rev().copied().collect())
}

/// A stage with a mailbox over the script `list`.
pub fn stage(list: &[(u32, u32)]) -> S {
    Stage::with_mailbox(items(list))
}

/// Reads the next item; `None` once the script is used up.
pub fn read(r: &Items) -> Result<Option<(u32, u32)>, ()> {
    Ok(r.lock().unwrap().pop())
}

/// How many items are still unread.
pub fn left(stage: &S) -> usize {
    stage.resource().lock().unwrap().len()
}

/// Asserts that nobody heads and nobody waits.
pub fn quiet<T: Hash + Eq, R, M>(stage: &Stage<T, R, M>) {
    assert_eq!(stage.waiting(), 0, "a follower is still queued");
    assert!(!stage.is_headed(), "someone still heads (or was promoted)");
}

/// Waits (bounded, 30 s) until someone heads: a follower spawned before
/// `serve` calls this first, so that it queues instead of heading.
pub fn once_headed<T: Hash + Eq, R, M>(stage: &Stage<T, R, M>) {
    let give_up = Instant::now() + Duration::from_secs(30);
    while !stage.is_headed() {
        assert!(Instant::now() < give_up, "nobody ever headed");
        std::thread::yield_now();
    }
}

/// A task waker that records whether the stage was headed each time it
/// was woken, then runs `then` (on the waking thread, inside the wake-up
/// call): for the rule that `serve` lends the headship while it wakes.
pub struct Probe<F: Fn() + Send + Sync> {
    stage: Arc<S>,
    headed: Mutex<Vec<bool>>,
    then: F,
}

impl<F: Fn() + Send + Sync + 'static> Probe<F> {
    /// The probe and a waker for it.
    pub fn new(stage: &Arc<S>, then: F) -> (Arc<Self>, Waker) {
        let probe = Arc::new(Self {
            stage: Arc::clone(stage),
            headed: Mutex::new(Vec::new()),
            then,
        });
        let waker = Waker::from(Arc::clone(&probe));
        (probe, waker)
    }

    /// Whether the stage was headed, one entry per wake-up so far.
    pub fn headed(&self) -> Vec<bool> {
        self.headed.lock().unwrap().clone()
    }
}

impl<F: Fn() + Send + Sync + 'static> Wake for Probe<F> {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }
    fn wake_by_ref(self: &Arc<Self>) {
        self.headed.lock().unwrap().push(self.stage.is_headed());
        (self.then)();
    }
}

/// A ticket (token 99) whose thread stays outside the stage. While one is
/// registered, `serve`'s head lends the headship while it handles its own
/// message (a thread that may be running could take it); with every other
/// ticket queued it hands the headship on instead. Tests of the lending
/// hold one.
pub fn outsider(stage: &S) -> exit_left::Ticket<'_, u32, Items, u32> {
    stage.ticket(99).unwrap()
}

/// `read`, after running `before` once, just before the first read (while
/// `serve` heads: followers spawned earlier have queued by then).
pub fn read_after(
    mut before: impl FnMut(),
) -> impl FnMut(&Items) -> Result<Option<(u32, u32)>, ()> {
    let mut first = true;
    move |r| {
        if std::mem::take(&mut first) {
            before();
        }
        read(r)
    }
}

/// Polls a future that must be ready.
pub fn ready<'s>(
    fut: &mut EnterFuture<'s, '_, u32, Items, u32>,
    waker: &Waker,
) -> Entry<'s, u32, Items, u32> {
    match super::poll_once(fut, waker) {
        Poll::Ready(e) => e,
        Poll::Pending => panic!("the future is still pending"),
    }
}

/// A task waker that counts its wake-ups.
#[derive(Default)]
pub struct Count(AtomicUsize);

impl Wake for Count {
    fn wake(self: Arc<Self>) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

impl Count {
    /// The counter and a waker for it.
    pub fn new() -> (Arc<Self>, Waker) {
        let c = Arc::new(Self::default());
        let w = Waker::from(Arc::clone(&c));
        (c, w)
    }

    /// Wake-ups so far.
    pub fn wakes(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }
}
