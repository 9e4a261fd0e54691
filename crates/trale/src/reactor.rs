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
//! sequence number and the one waker waiting. An operation notes the
//! sequence, tries the syscall, and only on `EAGAIN` stores its waker and
//! re-checks the sequence: an event that arrived between the syscall and
//! the store bumped it, so the operation retries instead of sleeping through
//! it. An event bumps the sequence first and takes the waker second.
//! `EPOLLERR`/`EPOLLHUP` wake both directions; the next syscall reports the
//! error or the end of stream, so nothing spins.

use crate::sys::{Epoll, Event, EventFd, TimerFd};
use crate::timer::TimerHeap;
use std::io;
use std::os::fd::RawFd;
use std::sync::Arc;
use std::task::Waker;
use std::time::{Duration, Instant};
use sync_core::AtomicWaker;
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

/// Readiness of one registered socket (see the module docs).
#[derive(Debug, Default)]
pub(crate) struct ScheduledIo {
    read_seq: AtomicUsize,
    write_seq: AtomicUsize,
    read_waker: AtomicWaker,
    write_waker: AtomicWaker,
}

impl ScheduledIo {
    fn parts(&self, dir: Direction) -> (&AtomicUsize, &AtomicWaker) {
        match dir {
            Direction::Read => (&self.read_seq, &self.read_waker),
            Direction::Write => (&self.write_seq, &self.write_waker),
        }
    }

    /// The readiness sequence, noted before trying a syscall.
    pub(crate) fn seq(&self, dir: Direction) -> usize {
        self.parts(dir).0.load(Ordering::Acquire)
    }

    /// After `EAGAIN`: keeps `waker` (the latest one only) and returns
    /// `true` if the task may sleep, `false` if readiness arrived since
    /// `seq` and the syscall must be retried.
    pub(crate) fn park(&self, dir: Direction, seq: usize, waker: &Waker) -> bool {
        let (counter, slot) = self.parts(dir);
        slot.register(waker);
        counter.load(Ordering::Acquire) == seq
    }

    fn fire(&self, dir: Direction, wakers: &mut Vec<Waker>) {
        let (counter, slot) = self.parts(dir);
        counter.fetch_add(1, Ordering::AcqRel);
        wakers.extend(slot.take());
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
                parked.extend(io.read_waker.take());
                parked.extend(io.write_waker.take());
            }
        }
        lock(&self.timers).clear(&mut parked);
        parked
    }
}
