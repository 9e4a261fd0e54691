//! Promotion when readable: the follower that is handed the headship sleeps
//! on until the resource has something to read.
//!
//! # Why
//!
//! A follower woken for a promotion runs, reads, and (if nothing has
//! arrived yet) sleeps again in the read: two sleeps for one item. When
//! peers take turns that is the common case: the head takes its own item,
//! hands on, and the next item is still a round trip away. On a stage made
//! with [`Stage::promote_when_readable`], a blocking follower waits in a
//! parker whose epoll set the hand-off can add the resource to: the
//! hand-off *arms* the resource there instead of waking the follower, and
//! the kernel wakes it when the item arrives. One sleep per item.
//!
//! Everything that ends a promotion early still wakes it: a notification
//! (it wins, and the headship goes on), `close`, and its own deadline (its
//! parker's time-out). Whatever woke it, the follower disarms the resource
//! when it looks. A follower without such a parker (a task, or a thread
//! that could not get one) is woken at once, as on any stage.
//!
//! That parker costs every wait about a microsecond more than a futex
//! (an epoll wait, an eventfd write), and pays only for the waits that end
//! in a promotion with nothing to read. So threads take it only while such
//! promotions are a good share of the recent ends of waits
//! (`State::arm_share`); under saturation, where deliveries end the waits,
//! they wait on the plain thread parker and a promotion wakes them at once.
//!
//! Linux only (epoll); elsewhere, and under loom, nothing is ever armed.

use crate::Stage;
use std::hash::Hash;

/// A follower's parker, armable from other threads.
#[cfg(target_os = "linux")]
pub(crate) type Watch = crate::ready::ReadyWatch;

/// No watches here: every promotion wakes its follower.
#[cfg(not(target_os = "linux"))]
#[derive(Clone, Debug)]
pub(crate) enum Watch {}

/// The resource's descriptor, on a stage that promotes when readable.
#[cfg(target_os = "linux")]
#[derive(Clone, Copy)]
pub(crate) struct Gate(Option<std::os::fd::RawFd>);

#[cfg(not(target_os = "linux"))]
#[derive(Clone, Copy)]
pub(crate) struct Gate(Option<core::convert::Infallible>);

/// The resource's descriptor number, taken once when the stage is made
/// promoting when readable (so that no user code, `AsFd::as_fd`, runs
/// under the stage's lock, where the hand-offs use it).
#[cfg(target_os = "linux")]
pub(crate) type FdOf = Option<std::os::fd::RawFd>;

#[cfg(not(target_os = "linux"))]
pub(crate) type FdOf = Option<core::convert::Infallible>;

impl Gate {
    /// Arms the resource in `watch`: the kernel wakes its follower when
    /// the resource is readable (at once if it is). `false` on a stage
    /// that does not promote when readable, or if the descriptor cannot be
    /// watched.
    pub(crate) fn arm(self, watch: &Watch) -> bool {
        #[cfg(target_os = "linux")]
        return self.0.is_some_and(|fd| watch.arm(fd));
        #[cfg(not(target_os = "linux"))]
        match *watch {}
    }

    /// Whether this is a stage that promotes when readable.
    pub(crate) fn is_set(self) -> bool {
        self.0.is_some()
    }

    /// Whether this is a stage that promotes when readable and its
    /// resource has nothing to read right now: a follower handed the
    /// headship would sleep on, not be woken.
    pub(crate) fn would_sleep(self) -> bool {
        #[cfg(target_os = "linux")]
        return self.0.is_some_and(|fd| !crate::ready::is_readable(fd));
        #[cfg(not(target_os = "linux"))]
        false
    }

    /// Undoes [`arm`](Self::arm); `keep_fired`: see `ReadyWatch::disarm`.
    pub(crate) fn disarm(self, watch: &Watch, keep_fired: bool) {
        #[cfg(target_os = "linux")]
        if let Some(fd) = self.0 {
            watch.disarm(fd, keep_fired);
        }
        #[cfg(not(target_os = "linux"))]
        match *watch {}
    }
}

impl<T: Hash + Eq, R, M> Stage<T, R, M> {
    pub(crate) fn gate(&self) -> Gate {
        Gate(self.fd_of)
    }
}

#[cfg(target_os = "linux")]
impl<T: Hash + Eq, R: std::os::fd::AsFd, M> Stage<T, R, M> {
    /// Makes a hand-off wait for the resource: a blocking follower that is
    /// promoted while the resource has nothing to read is not woken; the
    /// kernel wakes it when the resource turns readable, so a follower
    /// sleeps once per item instead of twice (woken, then blocked in the
    /// read). Linux only; measured in the crate's README.
    ///
    /// Adaptive: a follower waits where the resource can wake it only while
    /// recent waits on the stage often ended in such a promotion (owners
    /// taking turns); while most end in deliveries (saturated traffic,
    /// where the resource is rarely empty at a hand-off), followers wait on
    /// the cheaper thread parker and a promotion wakes them at once, as on
    /// any stage. [`Counters::promotions_when_readable`](crate::Counters)
    /// counts the promotions made by arming.
    ///
    /// Use it when the head's reads block on the resource's descriptor
    /// turning readable (a socket's `recv_from`, say): a promoted follower
    /// then has nothing to do before that anyway. Not for a resource that
    /// buffers in user space (a `BufReader`): data waiting in its buffer
    /// does not make the descriptor readable, and a promoted follower
    /// would sleep until more arrives or its deadline. The descriptor is
    /// taken once, here: `R::as_fd` must keep returning the same one. A follower promoted this
    /// way still returns at once for a notification (which wins, the
    /// headship going on), for `close` and at its deadline. Tasks
    /// (`enter_async`) are woken at once, as on any stage.
    ///
    /// Each thread that waits on such a stage keeps an epoll instance and
    /// an eventfd (two descriptors, created on its first wait, kept for
    /// the thread's life); a thread that cannot get them is woken as on any
    /// stage. A hand-off costs one more system call (the arming) and a
    /// woken follower one (the disarming).
    pub fn promote_when_readable(mut self) -> Self {
        use std::os::fd::AsRawFd;
        self.fd_of = Some(self.resource_unchecked().as_fd().as_raw_fd());
        self
    }
}
