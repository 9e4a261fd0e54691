//! The reactor: one epoll instance per executor, watching the executor's
//! eventfd, its timerfd and every socket used on it.
//!
//! # Sockets
//!
//! A socket is registered once, edge-triggered, for both directions, the
//! first time it is used, and deregistered (before it is closed) when it is
//! dropped. The epoll token is a slot index plus a generation, never the raw
//! fd: when a socket is dropped and the kernel hands its fd number to a new
//! one, an event still in flight for the old registration finds a
//! generation that no longer matches and is ignored.
//!
//! Each registration is a [`ScheduledIo`]: per direction, a readiness
//! sequence number and the operations waiting, each with the latest waker
//! it was polled with. An operation notes the sequence, tries the syscall,
//! and only on `EAGAIN` stores its waker and re-checks the sequence: an
//! event that arrived between the syscall and the store bumped it, so the
//! operation retries instead of sleeping through it. An event bumps the
//! sequence first and takes the wakers second. (Events are handled in
//! `turn` and operations polled on the executor's one thread, so today the
//! re-check finds no change; it keeps the protocol right without relying
//! on that.)
//!
//! Why every waiting operation and not one waker per direction: two tasks
//! reading one shared socket would otherwise hang. The second one's waker
//! would replace the first's, and with edge-triggered events nothing would
//! ever wake the first again, however many datagrams arrive after the second
//! is done. So an event wakes every operation waiting in its direction; those
//! that find nothing left (`EAGAIN`) wait again. A re-poll of the *same*
//! operation with a new waker still replaces its old one (the old one is not
//! woken): one waker per operation, the latest.
//! `EPOLLERR`/`EPOLLHUP` wake both directions; the next syscall reports the
//! error or the end of stream, so nothing spins.

use crate::sys::{Epoll, Event, EventFd, TimerFd};
use crate::timer::TimerHeap;
use std::collections::BTreeMap;
use std::io;
use std::os::fd::RawFd;
use std::sync::Arc;
use std::task::Waker;
use std::time::{Duration, Instant};
use sync_core::atomic::{AtomicUsize, Ordering};
use sync_core::sync::{Mutex, MutexGuard};

const TOKEN_EVENTFD: u64 = u64::MAX;
const TOKEN_TIMERFD: u64 = u64::MAX - 1;
const EVENTS_PER_WAIT: usize = 256;

/// A read or write readiness.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Direction {
    Read,
    Write,
}

/// Identifies one waiting operation among the waiters of a direction.
/// Keys only grow, so a smaller key has waited longer.
pub(crate) type WaiterKey = u64;

/// The operations waiting for one direction, each with its latest waker.
///
/// The first waiter is stored inline, so a socket with at most one
/// operation waiting per direction (one reader, one writer) allocates
/// nothing here. The others go to a map ordered by key, so finding,
/// replacing and removing one costs O(log k), and an event wakes them
/// oldest first: tasks looping on a shared socket take turns, instead of
/// the one that re-parks first (inside its own poll, before the others are
/// polled) winning every time.
#[derive(Debug, Default)]
struct Waiters {
    next_key: WaiterKey,
    first: Option<(WaiterKey, Waker)>,
    more: BTreeMap<WaiterKey, Waker>,
}

impl Waiters {
    /// The waker kept for the operation `key`.
    fn get(&self, key: WaiterKey) -> Option<&Waker> {
        match &self.first {
            Some((k, waker)) if *k == key => Some(waker),
            _ => self.more.get(&key),
        }
    }

    /// Stores `waker` for the operation `key` (a new key if it has none; the
    /// same key again after an event took its entry, so it keeps its age);
    /// returns the waker it replaces.
    fn store(&mut self, key: &mut Option<WaiterKey>, waker: Waker) -> Option<Waker> {
        if let Some(k) = *key {
            if let Some((kk, old)) = &mut self.first {
                if *kk == k {
                    return Some(std::mem::replace(old, waker));
                }
            }
            if let Some(old) = self.more.get_mut(&k) {
                return Some(std::mem::replace(old, waker));
            }
        }
        let k = *key.get_or_insert_with(|| {
            self.next_key += 1;
            self.next_key
        });
        if self.first.is_none() && self.more.is_empty() {
            self.first = Some((k, waker));
        } else {
            self.more.insert(k, waker);
        }
        None
    }

    /// The waker of the operation `key`, if it is still waiting.
    fn remove(&mut self, key: WaiterKey) -> Option<Waker> {
        if self.first.as_ref().is_some_and(|(k, _)| *k == key) {
            return self.first.take().map(|(_, waker)| waker);
        }
        self.more.remove(&key)
    }

    /// Takes every waker, the longest waiting first.
    fn take_all(&mut self, wakers: &mut Vec<Waker>) {
        if self.more.is_empty() {
            wakers.extend(self.first.take().map(|(_, w)| w));
            return;
        }
        if let Some((k, w)) = self.first.take() {
            self.more.insert(k, w);
        }
        wakers.extend(std::mem::take(&mut self.more).into_values());
    }
}

/// Readiness of one registered socket (see the module docs).
#[derive(Debug, Default)]
pub(crate) struct ScheduledIo {
    read_seq: AtomicUsize,
    write_seq: AtomicUsize,
    read_waiters: Mutex<Waiters>,
    write_waiters: Mutex<Waiters>,
}

impl ScheduledIo {
    fn parts(&self, dir: Direction) -> (&AtomicUsize, &Mutex<Waiters>) {
        match dir {
            Direction::Read => (&self.read_seq, &self.read_waiters),
            Direction::Write => (&self.write_seq, &self.write_waiters),
        }
    }

    /// The readiness sequence, noted before trying a syscall.
    pub(crate) fn seq(&self, dir: Direction) -> usize {
        self.parts(dir).0.load(Ordering::Acquire)
    }

    /// After `EAGAIN`: keeps `waker` as the operation `key`'s one waker
    /// (giving the operation a key on its first wait) and returns `true` if
    /// the task may sleep, `false` if readiness arrived since `seq` and the
    /// syscall must be retried.
    ///
    /// The waker it replaces is dropped here, after the lock: a panic of its
    /// destructor reaches the poll that replaced it (whose operation's
    /// `Waiting` guard then gives the new waker back as the future unwinds).
    pub(crate) fn park(
        &self,
        dir: Direction,
        seq: usize,
        key: &mut Option<WaiterKey>,
        waker: &Waker,
    ) -> bool {
        let (counter, waiters) = self.parts(dir);
        let mut waiters = lock(waiters);
        let same = key
            .and_then(|k| waiters.get(k))
            .is_some_and(|w| w.will_wake(waker));
        let replaced = if same {
            None
        } else {
            // Cloned without the lock: a waker's clone is foreign code (it
            // may re-enter this socket, or panic).
            drop(waiters);
            let clone = waker.clone();
            waiters = lock(self.parts(dir).1);
            waiters.store(key, clone)
        };
        let may_sleep = counter.load(Ordering::Acquire) == seq;
        drop(waiters);
        drop(replaced);
        may_sleep
    }

    /// The operation `key` is done or dropped: forgets its waker, if an
    /// event has not taken it already. Called from destructors, so the
    /// waker's own destructor may not panic out of it.
    pub(crate) fn unpark(&self, dir: Direction, key: WaiterKey) {
        let removed = lock(self.parts(dir).1).remove(key);
        sync_core::unwind::drop_quietly(removed);
    }

    fn fire(&self, dir: Direction, wakers: &mut Vec<Waker>) {
        let (counter, waiters) = self.parts(dir);
        counter.fetch_add(1, Ordering::AcqRel);
        lock(waiters).take_all(wakers);
    }
}

struct IoSlot {
    generation: u32,
    io: Option<Arc<ScheduledIo>>,
}

#[derive(Default)]
struct IoSlab {
    slots: Vec<IoSlot>,
    free: Vec<u32>,
}

/// Buffers reused by every turn (only the owning thread turns).
#[derive(Default)]
struct Scratch {
    raw: Vec<libc::epoll_event>,
    events: Vec<Event>,
    wakers: Vec<Waker>,
}

/// One executor's epoll, eventfd, timerfd, registrations and timers.
pub(crate) struct Reactor {
    epoll: Epoll,
    eventfd: EventFd,
    timerfd: TimerFd,
    io: Mutex<IoSlab>,
    pub(crate) timers: Mutex<TimerHeap>,
    scratch: Mutex<Scratch>,
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // No foreign code runs under the reactor's locks; recover from poison
    // anyway rather than cascade a panic.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Reactor {
    pub(crate) fn new() -> io::Result<Self> {
        let epoll = Epoll::new()?;
        let eventfd = EventFd::new()?;
        let timerfd = TimerFd::new()?;
        epoll.add_reader(eventfd.raw(), TOKEN_EVENTFD)?;
        if let Some(fd) = timerfd.raw() {
            epoll.add_reader(fd, TOKEN_TIMERFD)?;
        }
        Ok(Self {
            epoll,
            eventfd,
            timerfd,
            io: Mutex::new(IoSlab::default()),
            timers: Mutex::new(TimerHeap::default()),
            scratch: Mutex::new(Scratch {
                raw: Vec::with_capacity(EVENTS_PER_WAIT),
                ..Scratch::default()
            }),
        })
    }

    /// Ends a sleeping `turn` from another thread.
    pub(crate) fn notify(&self) {
        self.eventfd.notify();
    }

    /// Registers `fd` (edge-triggered, both directions). Returns its token.
    pub(crate) fn register(&self, fd: RawFd) -> io::Result<(u64, Arc<ScheduledIo>)> {
        let io = Arc::new(ScheduledIo::default());
        let mut slab = lock(&self.io);
        let index = match slab.free.pop() {
            Some(index) => index,
            None => {
                let index = u32::try_from(slab.slots.len()).map_err(|_| {
                    io::Error::other("trale: more than 2^32 sockets on one executor")
                })?;
                slab.slots.push(IoSlot {
                    generation: 0,
                    io: None,
                });
                index
            }
        };
        let slot = &mut slab.slots[index as usize];
        slot.io = Some(io.clone());
        let token = (u64::from(slot.generation) << 32) | u64::from(index);
        if let Err(e) = self.epoll.add_edge(fd, token) {
            slot.io = None;
            slot.generation = slot.generation.wrapping_add(1);
            slab.free.push(index);
            return Err(e);
        }
        Ok((token, io))
    }

    /// Deregisters `fd`; must be called before `fd` is closed.
    pub(crate) fn deregister(&self, fd: RawFd, token: u64) {
        // Failure means the fd is already gone from the set; nothing to undo.
        let _ = self.epoll.delete(fd);
        let mut slab = lock(&self.io);
        let index = token as u32;
        if let Some(slot) = slab.slots.get_mut(index as usize) {
            if u64::from(slot.generation) == token >> 32 && slot.io.take().is_some() {
                slot.generation = slot.generation.wrapping_add(1);
                slab.free.push(index);
            }
        }
    }

    /// How many sockets are registered (diagnostics and tests).
    pub(crate) fn registered(&self) -> usize {
        lock(&self.io)
            .slots
            .iter()
            .filter(|s| s.io.is_some())
            .count()
    }

    /// Arms the timerfd for `deadline` (called with the timer heap locked).
    pub(crate) fn arm_timer(&self, deadline: Instant) {
        self.timerfd.arm(deadline);
    }

    /// Waits for events (if `may_block`: until one arrives or the earliest
    /// timer is due; otherwise only collects what is ready), then wakes the
    /// tasks they concern, timers last, in deadline order.
    pub(crate) fn turn(&self, may_block: bool) {
        let mut scratch = lock(&self.scratch);
        let Scratch {
            raw,
            events,
            wakers,
        } = &mut *scratch;
        let timeout = if may_block {
            self.timerfd.emulated_timeout()
        } else {
            Some(Duration::ZERO)
        };
        events.clear();
        if let Err(e) = self.epoll.wait(raw, timeout, events) {
            panic!("trale: epoll_wait failed: {e}");
        }
        let mut slab = None;
        for event in events.iter() {
            match event.token {
                // Edge-triggered: every write is a new event, so the counter
                // need not be reset (`notify` resets it if it ever fills up).
                // Miri's epoll is only sure to report a change of readiness.
                TOKEN_EVENTFD if cfg!(miri) => self.eventfd.drain(),
                TOKEN_EVENTFD => {}
                TOKEN_TIMERFD => self.timerfd.drain(),
                token => {
                    let slab = slab.get_or_insert_with(|| lock(&self.io));
                    let Some(slot) = slab.slots.get((token as u32) as usize) else {
                        continue;
                    };
                    let Some(io) = slot
                        .io
                        .as_ref()
                        .filter(|_| u64::from(slot.generation) == token >> 32)
                    else {
                        continue; // a stale event for a socket since dropped
                    };
                    if event.readable || event.failed {
                        io.fire(Direction::Read, wakers);
                    }
                    if event.writable || event.failed {
                        io.fire(Direction::Write, wakers);
                    }
                }
            }
        }
        drop(slab);
        lock(&self.timers).fire_expired(Instant::now(), &self.timerfd, wakers);
        let ready = std::mem::take(wakers);
        drop(scratch);
        // A panicking waker is foreign code: it must not stop the loop.
        crate::executor::wake_all_quietly(ready);
    }

    /// The executor is ending: takes every waker still parked here.
    pub(crate) fn shutdown(&self) -> Vec<Waker> {
        let mut parked = Vec::new();
        for slot in &lock(&self.io).slots {
            if let Some(io) = &slot.io {
                lock(&io.read_waiters).take_all(&mut parked);
                lock(&io.write_waiters).take_all(&mut parked);
            }
        }
        lock(&self.timers).clear(&mut parked);
        parked
    }
}

#[cfg(test)]
mod tests {
    use super::{WaiterKey, Waiters};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::task::{Wake, Waker};

    /// A waker that counts its wakes.
    struct Counter(AtomicUsize);

    impl Wake for Counter {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn counters(n: usize) -> Vec<Arc<Counter>> {
        (0..n)
            .map(|_| Arc::new(Counter(AtomicUsize::new(0))))
            .collect()
    }

    fn wakes(all: &[Arc<Counter>]) -> Vec<usize> {
        all.iter().map(|c| c.0.load(Ordering::Relaxed)).collect()
    }

    fn fire(waiters: &mut Waiters) {
        let mut wakers = Vec::new();
        waiters.take_all(&mut wakers);
        wakers.into_iter().for_each(Waker::wake);
    }

    #[test]
    fn every_waiting_operation_is_woken_once_with_its_latest_waker() {
        let c = counters(5);
        let mut waiters = Waiters::default();
        let mut keys: Vec<Option<WaiterKey>> = vec![None; 4];
        for (key, counter) in keys.iter_mut().zip(&c) {
            assert!(waiters.store(key, Waker::from(counter.clone())).is_none());
        }
        // Operation 2 is polled again with another waker: it replaces its own.
        let replaced = waiters.store(&mut keys[2], Waker::from(c[4].clone()));
        assert!(replaced.is_some(), "a re-poll must replace, not add");
        drop(replaced);
        fire(&mut waiters);
        assert_eq!(wakes(&c), [1, 1, 0, 1, 1]);
        fire(&mut waiters);
        assert_eq!(wakes(&c), [1, 1, 0, 1, 1], "an event takes the wakers");
        // After an event the same operation waits again under its key.
        assert!(
            waiters
                .store(&mut keys[0], Waker::from(c[0].clone()))
                .is_none()
        );
        fire(&mut waiters);
        assert_eq!(wakes(&c), [2, 1, 0, 1, 1]);
    }

    #[test]
    fn a_removed_operation_is_not_woken_and_the_others_are() {
        for gone in 0..4 {
            let c = counters(4);
            let mut waiters = Waiters::default();
            let mut keys: Vec<Option<WaiterKey>> = vec![None; 4];
            for (key, counter) in keys.iter_mut().zip(&c) {
                waiters.store(key, Waker::from(counter.clone()));
            }
            let removed = waiters.remove(keys[gone].unwrap());
            assert!(removed.is_some());
            assert!(
                waiters.remove(keys[gone].unwrap()).is_none(),
                "removed twice"
            );
            drop(removed);
            fire(&mut waiters);
            let mut expected = [1; 4];
            expected[gone] = 0;
            assert_eq!(wakes(&c), expected, "removed operation {gone}");
            assert!(waiters.remove(keys[(gone + 1) % 4].unwrap()).is_none());
        }
    }

    #[test]
    fn an_event_wakes_the_longest_waiting_operation_first() {
        let c = counters(2);
        let (a, b) = (Waker::from(c[0].clone()), Waker::from(c[1].clone()));
        let mut waiters = Waiters::default();
        let (mut ka, mut kb) = (None, None);
        // Which waker comes first, told by waking it alone (not `will_wake`,
        // which compares vtable addresses that Miri does not keep unique).
        let first_woken = |waiters: &mut Waiters| {
            let mut woken = Vec::new();
            waiters.take_all(&mut woken);
            assert_eq!(woken.len(), 2);
            let before = wakes(&c);
            woken.remove(0).wake();
            let after = wakes(&c);
            (after[0] - before[0], after[1] - before[1])
        };
        waiters.store(&mut ka, a.clone());
        waiters.store(&mut kb, b.clone());
        assert_eq!(first_woken(&mut waiters), (1, 0));
        // B re-parks first (inside its own poll) and takes the inline slot;
        // A, which waited longer, is still woken first.
        waiters.store(&mut kb, b.clone());
        waiters.store(&mut ka, a.clone());
        assert_eq!(
            first_woken(&mut waiters),
            (1, 0),
            "the newer operation was woken first"
        );
    }
}
