//! A parker that a file descriptor turning readable can also wake (Linux).
//!
//! # Why
//!
//! A thread that will read a socket once it is woken pays two sleeps when
//! it is woken *before* the data arrives: one until the wake-up, one in the
//! read. If whoever wakes it can instead say "wake it when this descriptor is
//! readable", the thread sleeps once and the kernel wakes it with the data
//! there. [`ReadyWatch::arm`] says exactly that, from any thread, without
//! waking the parked one.
//!
//! # How it works
//!
//! Each [`ReadyParker`] owns an epoll instance and an eventfd registered in
//! it. Its [`Waker`] writes the eventfd (one system call, whether or not the
//! thread sleeps); [`ReadyParker::park`] sleeps in `epoll_wait` and drains
//! the eventfd when it fired. [`ReadyWatch::arm`] adds a descriptor to the
//! parker's epoll set, one-shot: the first time it is readable the parker
//! wakes, and the descriptor is disarmed by the kernel until it is armed
//! again. [`ReadyWatch::disarm`] removes it. The epoll instance and the
//! eventfd live in a block shared by the parker, its wakers and its watches,
//! so a watch armed from another thread never reaches a closed (and possibly
//! reused) descriptor number.
//!
//! Like `sync_core::Parker`, a wake-up is a token that may outlive the
//! wait it was meant for: `park` may return spuriously, and callers re-check
//! their condition in a loop.
//!
//! Under loom there is no such parker (a model's threads cannot block in the
//! kernel): [`ReadyParker::new`] fails, and callers fall back to
//! `sync_core::Parker`.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::task::Waker;
use std::time::Instant;
use sync_core::WakeToken;

/// What `epoll_event.u64` says about the eventfd (any descriptor armed
/// through a watch reports `WATCHED`).
const EVENTFD: u64 = 0;
const WATCHED: u64 = 1;

/// How a watch arms a descriptor: one-shot (the kernel disarms it when it
/// reports it). Miri's epoll has no `EPOLLONESHOT`: there the descriptor
/// stays armed, edge-triggered, until `disarm` removes it, which then
/// always does.
#[cfg(not(miri))]
const WATCH_EVENTS: u32 = (libc::EPOLLIN | libc::EPOLLET | libc::EPOLLONESHOT) as u32;
#[cfg(miri)]
const WATCH_EVENTS: u32 = (libc::EPOLLIN | libc::EPOLLET) as u32;

struct Shared {
    epoll: OwnedFd,
    event: OwnedFd,
    /// The token, and whether the owner sleeps (or is about to: a wake-up
    /// then writes the eventfd).
    token: WakeToken,
    /// The descriptor a watch added to the set and nobody removed yet (-1:
    /// none): armed, or fired and left for `tidy`.
    registered: AtomicI32,
    /// Whether the armed descriptor fired since it was armed: the kernel
    /// disarmed it then (one-shot), and `disarm` has nothing to do.
    fired: AtomicBool,
}

/// The sleeping half: an epoll set holding an eventfd, plus whatever
/// descriptors its [`ReadyWatch`]es arm.
///
/// Not `Send`-restricted like `Parker`: any thread may park on it, but one
/// at a time is what it is for (two sleepers would share wake-ups).
pub(crate) struct ReadyParker {
    shared: Arc<Shared>,
    waker: Waker,
}

/// Arms descriptors in a [`ReadyParker`]'s set: `Send + Sync + Clone`.
///
/// Descriptors are passed as numbers, taken once by the caller (the stage,
/// from its resource when it is made): no user code (an `AsFd` impl) runs
/// where a watch is used, under the stage's lock.
#[derive(Clone)]
pub(crate) struct ReadyWatch {
    shared: Arc<Shared>,
}

/// Turns a `-1` return into the thread's `errno`.
fn check(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

impl Shared {
    fn ctl(&self, op: libc::c_int, fd: libc::c_int, events: u32, data: u64) -> io::Result<()> {
        let mut ev = libc::epoll_event { events, u64: data };
        // `fd` is only a number to the kernel: a closed one is an error
        // (`EBADF`), never a memory access; `self.epoll` is open while `self` is.
        // SAFETY: `ev` is initialised and outlives the call (it is copied).
        check(unsafe { libc::epoll_ctl(self.epoll.as_raw_fd(), op, fd, &mut ev) })?;
        Ok(())
    }

    /// Leaves the token; writes the eventfd only if the owner sleeps (or is
    /// about to), so a wake-up for a thread that is awake costs no system
    /// call.
    fn signal(&self) {
        if !self.token.notify() {
            return;
        }
        let one: u64 = 1;
        // The eventfd is never read (watched edge-triggered, every write is
        // a new event): its counter cannot overflow in practice (2^64 - 2),
        // and a failed write is harmless, the token being in `token`.
        // SAFETY: reads 8 bytes from a live `u64`.
        unsafe { libc::write(self.event.as_raw_fd(), (&raw const one).cast(), 8) };
    }

    /// Takes the token, if there is one.
    fn consume(&self) -> bool {
        self.token.try_consume()
    }
}

impl std::task::Wake for Shared {
    fn wake(self: Arc<Self>) {
        self.signal();
    }
    fn wake_by_ref(self: &Arc<Self>) {
        self.signal();
    }
}

impl ReadyParker {
    /// A parker with its own epoll set and eventfd (two descriptors, two
    /// allocations). Fails if the process is out of descriptors, and always
    /// under loom.
    pub(crate) fn new() -> io::Result<Self> {
        if cfg!(loom) {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "no kernel waits in a loom model",
            ));
        }
        // SAFETY: no pointers; a non-negative return is a new descriptor
        // that nothing else owns, adopted at once.
        let epoll = check(unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) })?;
        // SAFETY: as above.
        let epoll = unsafe { OwnedFd::from_raw_fd(epoll) };
        // SAFETY: no pointers; as above.
        let event = check(unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) })?;
        // SAFETY: as above.
        let event = unsafe { OwnedFd::from_raw_fd(event) };
        let shared = Arc::new(Shared {
            epoll,
            event,
            token: WakeToken::new(),
            registered: AtomicI32::new(-1),
            fired: AtomicBool::new(false),
        });
        shared.ctl(
            libc::EPOLL_CTL_ADD,
            shared.event.as_raw_fd(),
            (libc::EPOLLIN | libc::EPOLLET) as u32,
            EVENTFD,
        )?;
        let waker = Waker::from(Arc::clone(&shared));
        Ok(Self { shared, waker })
    }

    /// A `Waker` that wakes this parker: one `write` to the eventfd per
    /// wake. Does not allocate.
    pub(crate) fn waker(&self) -> Waker {
        self.waker.clone()
    }

    /// Whether `park` would return at once, or its wait has been decided:
    /// a wake-up token is pending, or a watch armed a descriptor in this
    /// parker's set (a promotion that waits until the resource is readable;
    /// `park` then returns when it is). Two loads, no system call: what a
    /// waiter spinning before it parks polls. Meant for a wait that began
    /// with nothing armed (see [`tidy_thread`]).
    pub(crate) fn is_notified_or_armed(&self) -> bool {
        self.shared.token.is_notified() || self.shared.registered.load(Ordering::Relaxed) >= 0
    }

    /// A handle that arms descriptors in this parker's set. Does not
    /// allocate.
    pub(crate) fn watch(&self) -> ReadyWatch {
        ReadyWatch {
            shared: Arc::clone(&self.shared),
        }
    }

    /// Sleeps until woken, until an armed descriptor is readable, or until
    /// `deadline` (`None`: no limit). `true` unless it returned because the
    /// deadline passed with nothing else reported. May return early
    /// (spuriously): re-check the condition.
    ///
    /// The time-out has millisecond resolution, rounded up: it never
    /// returns `false` before `deadline`.
    pub(crate) fn park(&self, deadline: Option<Instant>) -> bool {
        let shared = &*self.shared;
        if shared.consume() {
            return true;
        }
        if !shared.token.begin_park() {
            return true;
        }
        let mut events = [libc::epoll_event { events: 0, u64: 0 }; 2];
        let woken = loop {
            let ms = match deadline {
                None => -1,
                Some(d) => {
                    let left = d.saturating_duration_since(Instant::now());
                    left.as_nanos()
                        .div_ceil(1_000_000)
                        .min(libc::c_int::MAX as u128) as libc::c_int
                }
            };
            // SAFETY: the kernel writes at most `events.len()` entries into
            // the live local array.
            let n = unsafe {
                libc::epoll_wait(
                    shared.epoll.as_raw_fd(),
                    events.as_mut_ptr(),
                    events.len() as libc::c_int,
                    ms,
                )
            };
            let n = match check(n) {
                Ok(n) => n as usize,
                // A signal: go round (with what is left of the time).
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                // Nothing else can fail with these arguments; report a
                // wake-up, which the caller re-checks, rather than sleep on.
                Err(_) => break true,
            };
            if events[..n].iter().any(|e| e.u64 == WATCHED) {
                shared.fired.store(true, Ordering::Relaxed);
                break true;
            }
            if shared.token.is_notified() {
                break true;
            }
            // Nothing, or the edge of a write whose token an earlier park
            // already took: sleep on, unless the time is up.
            if n == 0 && deadline.is_none_or(|d| Instant::now() >= d) {
                break false;
            }
        };
        // A token that raced with the time-out still counts.
        shared.token.end_park() || woken
    }
}

impl ReadyWatch {
    /// Wakes the parker once, the next time `fd` is readable (at once if it
    /// is already). The parker does not wake for the arming itself. Arming
    /// an armed descriptor re-arms it. `false` if `fd` cannot be watched
    /// (a regular file, say): then nothing was armed.
    ///
    /// One system call; does not block.
    pub(crate) fn arm(&self, fd: RawFd) -> bool {
        let shared = &self.shared;
        shared.fired.store(false, Ordering::Relaxed);
        // Another descriptor left in the set (its thread has not tidied):
        // it must not linger, it is tracked by nothing after this.
        let left = shared.registered.load(Ordering::Relaxed);
        if left >= 0 && left != fd {
            let _ = shared.ctl(libc::EPOLL_CTL_DEL, left, 0, 0);
        }
        let added = match shared.ctl(libc::EPOLL_CTL_ADD, fd, WATCH_EVENTS, WATCHED) {
            Ok(()) => true,
            // Left in the set by a wait that has not tidied yet.
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) => shared
                .ctl(libc::EPOLL_CTL_MOD, fd, WATCH_EVENTS, WATCHED)
                .is_ok(),
            Err(_) => false,
        };
        if added {
            shared.registered.store(fd, Ordering::Relaxed);
        }
        added
    }

    /// Stops watching `fd`: one system call. With `keep_fired`, if it fired
    /// since it was armed (the kernel has disarmed it already), it stays in
    /// the set until [`tidy_thread`], so that a thread woken to read `fd`
    /// does not pay that call on its way to the read. A
    /// readiness reported before and not yet consumed may still make one
    /// `park` return early.
    ///
    /// Does not block. For the parker's own thread (it reads what `park`
    /// recorded); arming and disarming one watch must not race.
    pub(crate) fn disarm(&self, fd: RawFd, keep_fired: bool) {
        let shared = &self.shared;
        if shared.fired.swap(false, Ordering::Relaxed) && keep_fired && !cfg!(miri) {
            return;
        }
        // ENOENT (not in the set) is the only expected failure, and harmless.
        let _ = shared.ctl(libc::EPOLL_CTL_DEL, fd, 0, 0);
        let _ = shared
            .registered
            .compare_exchange(fd, -1, Ordering::Relaxed, Ordering::Relaxed);
    }
}

/// Whether `fd` has something to read right now (`poll` with a zero
/// time-out: one system call, never blocks). `false` if it cannot tell.
#[cfg(not(miri))]
pub(crate) fn is_readable(fd: RawFd) -> bool {
    let mut p = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one live, initialised `pollfd`; a closed `fd` is reported in
    // `revents`, not a memory access.
    let n = unsafe { libc::poll(&mut p, 1, 0) };
    n > 0 && p.revents & libc::POLLIN != 0
}

/// Miri has no `poll`: the same question asked of a throw-away epoll set
/// (an added descriptor that is readable is reported at once).
#[cfg(miri)]
pub(crate) fn is_readable(fd: RawFd) -> bool {
    let Ok(probe) = ReadyParker::new() else {
        return false;
    };
    let (events, raw) = ((libc::EPOLLIN | libc::EPOLLET) as u32, fd);
    if probe
        .shared
        .ctl(libc::EPOLL_CTL_ADD, raw, events, WATCHED)
        .is_err()
    {
        return false;
    }
    let mut ev = [libc::epoll_event { events: 0, u64: 0 }; 2];
    // SAFETY: the kernel writes at most two entries into the live array.
    let n = unsafe { libc::epoll_wait(probe.shared.epoll.as_raw_fd(), ev.as_mut_ptr(), 2, 0) };
    let _ = probe.shared.ctl(libc::EPOLL_CTL_DEL, raw, 0, 0);
    n > 0 && ev[..n as usize].iter().any(|e| e.u64 == WATCHED)
}

impl Shared {
    /// Removes a descriptor that fired from the set, if one is left there
    /// (one system call then, nothing otherwise).
    fn tidy(&self) {
        let fd = self.registered.swap(-1, Ordering::Relaxed);
        if fd >= 0 {
            let _ = self.ctl(libc::EPOLL_CTL_DEL, fd, 0, 0);
        }
    }
}

/// Tidies this thread's idle ready parkers (see [`ReadyWatch::disarm`]):
/// for a thread about to wait on a stage that promotes when readable,
/// whichever parker it waits on, while nobody can arm them. Every epoll set
/// that holds a socket, even disarmed, is called back on each of its
/// arrivals (measured: the sets of 32 threads left holding the stage's
/// socket cost 10% of the saturated throughput). Nothing to do, and no
/// system call, unless the thread's last promotion fired.
pub(crate) fn tidy_thread() {
    let _ = IDLE.try_with(|idle| {
        for parker in idle.borrow().iter() {
            parker.shared.tidy();
        }
    });
}

impl core::fmt::Debug for ReadyParker {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("ReadyParker").finish_non_exhaustive()
    }
}

impl core::fmt::Debug for ReadyWatch {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("ReadyWatch").finish_non_exhaustive()
    }
}

std::thread_local! {
    /// Ready parkers not lent out right now; one per nesting depth.
    static IDLE: core::cell::RefCell<Vec<ReadyParker>> =
        const { core::cell::RefCell::new(Vec::new()) };
}

/// Runs `f` with one of this thread's cached [`ReadyParker`]s (created on
/// first use at each nesting depth, as
/// `sync_core::with_thread_parker` does), or with `None`
/// if none can be created (out of descriptors, or under loom).
pub(crate) fn with_thread_ready_parker<R>(f: impl FnOnce(Option<&ReadyParker>) -> R) -> R {
    /// Gives the parker back to the cache, also when `f` unwinds.
    struct Lend(Option<ReadyParker>);
    impl Drop for Lend {
        fn drop(&mut self) {
            if let Some(parker) = self.0.take() {
                let _ = IDLE.try_with(|idle| idle.borrow_mut().push(parker));
            }
        }
    }
    let cached = IDLE.try_with(|idle| idle.borrow_mut().pop()).ok().flatten();
    let lend = Lend(cached.or_else(|| ReadyParker::new().ok()));
    f(lend.0.as_ref())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::fd::AsRawFd;
    use std::time::Duration;
    use testkit::pipe;

    fn soon() -> Option<Instant> {
        Some(Instant::now() + Duration::from_millis(20))
    }

    #[test]
    fn a_wake_before_park_makes_it_return_at_once_and_is_consumed() {
        let p = ReadyParker::new().unwrap();
        p.waker().wake();
        p.waker().wake_by_ref();
        assert!(p.park(None));
        // Both wakes were one token: the next park times out.
        assert!(!p.park(soon()));
    }

    #[test]
    fn a_wake_from_another_thread_ends_the_sleep() {
        let p = ReadyParker::new().unwrap();
        let w = p.waker();
        let t = std::thread::spawn(move || w.wake());
        assert!(p.park(None));
        t.join().unwrap();
    }

    #[test]
    fn an_armed_descriptor_wakes_the_parker_once_when_readable() {
        let p = ReadyParker::new().unwrap();
        let (rx, mut tx) = pipe();
        let watch = p.watch();
        assert!(!is_readable(rx.as_raw_fd()));
        assert!(watch.arm(rx.as_raw_fd()));
        // Arming wakes nobody while nothing is readable.
        assert!(!p.park(soon()));
        tx.write_all(b"x").unwrap();
        assert!(p.park(None));
        // One-shot: still readable, but it does not wake again unarmed.
        assert!(!p.park(soon()));
        assert!(is_readable(rx.as_raw_fd()));
        // Re-arming a readable descriptor wakes at once.
        assert!(watch.arm(rx.as_raw_fd()));
        assert!(p.park(None));
        watch.disarm(rx.as_raw_fd(), true);
        watch.disarm(rx.as_raw_fd(), true);
        assert!(watch.arm(rx.as_raw_fd()));
        watch.disarm(rx.as_raw_fd(), true);
        assert!(!p.park(soon()));
    }

    /// Whether `fd` is in the parker's epoll set (armed or not): adding it
    /// again fails with `EEXIST` then (and the probe is undone otherwise).
    fn in_set(p: &ReadyParker, fd: RawFd) -> bool {
        match p.shared.ctl(libc::EPOLL_CTL_ADD, fd, WATCH_EVENTS, WATCHED) {
            Ok(()) => {
                let _ = p.shared.ctl(libc::EPOLL_CTL_DEL, fd, 0, 0);
                false
            }
            Err(e) => e.raw_os_error() == Some(libc::EEXIST),
        }
    }

    #[test]
    fn a_descriptor_that_fired_stays_in_the_set_until_the_thread_tidies() {
        let (rx, mut tx) = pipe();
        let fd = rx.as_raw_fd();
        with_thread_ready_parker(|p| {
            let p = p.expect("descriptors are available");
            assert!(p.watch().arm(fd));
            tx.write_all(b"x").unwrap();
            assert!(p.park(None));
            p.watch().disarm(fd, true);
            // Left for later: the woken thread pays nothing on its way
            // (Miri, without one-shot, removes it at once).
            assert_eq!(in_set(p, fd), !cfg!(miri));
            // Not kept when asked not to (a follower woken for anything
            // but the headship): removed at once.
            let other = ReadyParker::new().unwrap();
            let (rx3, mut tx3) = pipe();
            assert!(other.watch().arm(rx3.as_raw_fd()));
            tx3.write_all(b"z").unwrap();
            assert!(other.park(None));
            other.watch().disarm(rx3.as_raw_fd(), false);
            assert!(!in_set(&other, rx3.as_raw_fd()));
            // Not armed any more: still readable, it wakes nobody.
            assert!(!p.park(soon()));
        });
        // Back in the thread's cache, with `fd` still open: the next wait
        // tidies it.
        tidy_thread();
        with_thread_ready_parker(|p| {
            let p = p.unwrap();
            assert!(!in_set(p, fd));
            assert_eq!(p.shared.registered.load(Ordering::Relaxed), -1);
        });
        // Not fired: removed at once. And arming another descriptor removes
        // one left in the set.
        let p = ReadyParker::new().unwrap();
        let (rx2, mut tx2) = pipe();
        let fd2 = rx2.as_raw_fd();
        assert!(p.watch().arm(fd2));
        p.watch().disarm(fd2, true);
        assert!(!in_set(&p, fd2));
        assert!(p.watch().arm(fd));
        assert!(p.park(None), "fd is readable");
        p.watch().disarm(fd, true);
        assert!(p.watch().arm(fd2));
        assert!(!in_set(&p, fd));
        tx2.write_all(b"y").unwrap();
        assert!(p.park(None));
        drop(rx);
    }

    #[test]
    fn a_watch_armed_from_another_thread_outlives_the_parker() {
        let (rx, mut tx) = pipe();
        let watch = ReadyParker::new().unwrap().watch();
        // The parker is gone; its epoll set lives on in the watch.
        std::thread::scope(|s| {
            s.spawn(|| assert!(watch.arm(rx.as_raw_fd())));
        });
        tx.write_all(b"x").unwrap();
        watch.disarm(rx.as_raw_fd(), true);
    }

    #[test]
    fn the_thread_cache_lends_one_parker_per_nesting_depth() {
        with_thread_ready_parker(|outer| {
            let outer = outer.expect("descriptors are available");
            outer.waker().wake();
            with_thread_ready_parker(|inner| {
                // The inner wait has its own parker: the outer token stays.
                assert!(!inner.unwrap().park(soon()));
            });
            assert!(outer.park(None));
        });
    }
}
