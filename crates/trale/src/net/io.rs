//! A non-blocking std socket plus its registration with one executor.

use crate::executor::{self, ExecutorRef};
use crate::reactor::{Direction, ScheduledIo, WaiterKey};
use std::future::poll_fn;
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};

/// A socket's one registration: made on first use, undone on drop (before
/// the socket is closed, because `Io` declares it first).
struct Registration {
    executor: ExecutorRef,
    fd: RawFd,
    token: u64,
    io: Arc<ScheduledIo>,
}

impl Drop for Registration {
    fn drop(&mut self) {
        // An executor that has ended closed its epoll instance, and with it
        // this registration.
        if let Some(shared) = self.executor.upgrade_even_closing() {
            shared.reactor.deregister(self.fd, self.token);
        }
    }
}

/// A socket the reactor can wait on. Field order matters: `registration`
/// is dropped (deregistered) before `socket` is closed.
pub(crate) struct Io<S: AsRawFd> {
    registration: OnceLock<Registration>,
    socket: S,
}

impl<S: AsRawFd> Io<S> {
    /// Wraps a socket that is already in non-blocking mode.
    pub(crate) fn new(socket: S) -> Self {
        Self {
            registration: OnceLock::new(),
            socket,
        }
    }

    pub(crate) fn get(&self) -> &S {
        &self.socket
    }

    /// Deregisters and returns the socket.
    pub(crate) fn into_inner(self) -> S {
        let Io {
            registration,
            socket,
        } = self;
        drop(registration);
        socket
    }

    fn registration(&self) -> io::Result<&ScheduledIo> {
        if let Some(reg) = self.registration.get() {
            if reg.executor.is_current() {
                return Ok(&reg.io);
            }
            if reg.executor.upgrade().is_none() {
                panic!(
                    "a trale socket was used after the executor it was registered with shut down \
                     (its block_on returned); a socket stays with the executor that first used it"
                );
            }
            panic!(
                "a trale socket was used on a different executor than the one it first waited on \
                 (or outside any executor); a socket stays registered with the executor that \
                 first used it, for its whole life"
            );
        }
        let shared = executor::current().unwrap_or_else(|| executor::not_on_an_executor());
        let fd = self.socket.as_raw_fd();
        let (token, io) = shared.reactor.register(fd)?;
        let reg = Registration {
            executor: shared.downgrade(),
            fd,
            token,
            io,
        };
        // Two executors may race to register a socket shared between them:
        // the loser's registration is undone, and the check above runs again
        // (and panics, since the socket is now the winner's).
        if let Err(lost) = self.registration.set(reg) {
            drop(lost);
            return self.registration();
        }
        Ok(&self.registration.get().expect("just set").io)
    }

    /// Runs `op` until it does not say `WouldBlock`; on `WouldBlock`, waits
    /// for the socket to become ready in `dir` (see `reactor.rs`). Every
    /// socket operation is one call of this: its future is the waiting
    /// operation that keeps one waker among the direction's waiters, and
    /// gives its place up when it ends or is dropped.
    pub(crate) async fn op<R>(
        &self,
        dir: Direction,
        mut op: impl FnMut(&S) -> io::Result<R>,
    ) -> io::Result<R> {
        let mut waiting = Waiting {
            io: self,
            dir,
            key: None,
        };
        poll_fn(|cx| self.poll_op(cx, dir, &mut waiting.key, &mut op)).await
    }

    /// One poll of [`Io::op`].
    ///
    /// The socket is registered by its first operation that has to wait,
    /// not by one that completes at once: a socket that never waited is tied
    /// to no executor. Only a completed operation is charged to the poll's
    /// I/O budget, so a future can try (and park on) any number of idle
    /// sockets in one poll.
    fn poll_op<R>(
        &self,
        cx: &mut Context<'_>,
        dir: Direction,
        key: &mut Option<WaiterKey>,
        op: &mut impl FnMut(&S) -> io::Result<R>,
    ) -> Poll<io::Result<R>> {
        let mut io = None;
        if self.registration.get().is_some() {
            match self.registration() {
                Ok(registered) => io = Some(registered),
                Err(e) => return Poll::Ready(Err(e)),
            }
        } else if !executor::on_executor_thread() {
            // Outside any executor nothing could wake a waiter, nor reset
            // the budget: refuse at once, as the registration would.
            executor::not_on_an_executor();
        }
        if !executor::poll_budget_left(cx) {
            return Poll::Pending;
        }
        loop {
            let seq = io.map(|io: &ScheduledIo| io.seq(dir));
            match op(&self.socket) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => match (io, seq) {
                    (Some(io), Some(seq)) => {
                        if io.park(dir, seq, key, cx.waker()) {
                            return Poll::Pending;
                        }
                    }
                    // The first wait: register, then try again (readiness
                    // that came after the failed try is seen by the retry;
                    // later readiness by the registration).
                    _ => match self.registration() {
                        Ok(registered) => io = Some(registered),
                        Err(e) => return Poll::Ready(Err(e)),
                    },
                },
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                result => {
                    executor::charge_poll_budget();
                    return Poll::Ready(result);
                }
            }
        }
    }
}

/// An operation's place among its direction's waiters, given up when the
/// operation's future ends or is dropped (a `select` that took another
/// branch, an aborted task), so no waker of a finished operation stays.
struct Waiting<'a, S: AsRawFd> {
    io: &'a Io<S>,
    dir: Direction,
    key: Option<WaiterKey>,
}

impl<S: AsRawFd> Drop for Waiting<'_, S> {
    fn drop(&mut self) {
        if let (Some(key), Some(reg)) = (self.key, self.io.registration.get()) {
            reg.io.unpark(self.dir, key);
        }
    }
}
