//! A tiny async executor on Linux epoll: tasks, timers on one timerfd, UDP
//! and TCP, small enough to read in an afternoon.
//!
//! ```
//! use std::time::Duration;
//! use trale::{task::Executor, timer::Timer};
//!
//! let task1 = Executor::spawn(async {
//!     Timer::sleep(Duration::from_secs(2)).await;
//!     println!("Hello task 1!");
//!     1
//! });
//!
//! let task2 = Executor::spawn(async {
//!     Timer::sleep(Duration::from_secs(2)).await;
//!     println!("Hello task 2!");
//!     2
//! });
//!
//! assert_eq!(task1.join(), 1);
//! assert_eq!(task2.join(), 2);
//! ```
//!
//! Both tasks sleep at the same time, so this takes two seconds, not four.
//!
//! # Architecture in a page
//!
//! One file per concept:
//!
//! - **`task`** ([`task::Executor`], [`task::TaskJoiner`]): a task is one
//!   allocation holding its future, a five-bit state word (`task/state.rs`:
//!   scheduled, running, complete, cancelled, detached) and its result.
//! - **`executor`**: the loop. It polls up to 61 queued jobs (tasks, and the
//!   `block_on` future when its waker fired: it waits in the same queue, so
//!   wake-ups are served in the order they happened), then turns the
//!   reactor, blocking in `epoll_wait` only when nothing is runnable.
//! - **`reactor`**: one epoll instance per executor, watching its eventfd
//!   (wake-ups from other threads), its timerfd and its sockets
//!   (edge-triggered, keyed by slot index and generation, never by fd).
//! - **`timer`**: a heap of deadlines per executor; the timerfd is armed,
//!   with an absolute `CLOCK_MONOTONIC` time, to the earliest.
//! - **`net`**: std sockets in non-blocking mode; an operation that gets
//!   `EAGAIN` parks its waker with the reactor.
//! - **`sys`**: every raw system call, wrapped once.
//!
//! How a wake-up travels from the kernel to a poll: a datagram arrives →
//! the socket's fd becomes readable → `epoll_wait` (in the executor's
//! reactor turn) returns its token → the reactor checks the token's
//! generation, bumps the slot's read sequence and takes the parked waker →
//! `wake` sets the task's `SCHEDULED` bit and pushes it on the thread-local
//! run queue → the loop pops it and polls it → the `recv_from` future
//! retries `recvfrom(2)`, which now succeeds. From another thread, the push
//! goes to a mutex-guarded queue instead, and the eventfd is written if the
//! executor sleeps.
//!
//! # Where tasks run
//!
//! [`task::Executor::block_on`] runs an executor on the calling thread until
//! its future completes; tasks spawned inside it run there too, and those
//! still running when it returns are dropped. [`task::Executor::spawn`]
//! called outside any executor (as in the example) uses a process-wide
//! background executor thread, started on first use.
//!
//! # Guarantees
//!
//! - A task is polled by one thread at a time, never after it completed,
//!   and once per batch of wake-ups (woken twice before it runs: polled
//!   once). Wakes after completion, after abort or after the executor is
//!   gone do nothing. A wake from another thread is never lost, even while
//!   the executor is going to sleep.
//! - A panic in a task (in `poll` or in its destructor) is caught; the
//!   executor and other tasks go on; `join()`/`.await` re-raise the original
//!   payload, [`task::TaskJoiner::try_join`] returns it.
//! - `abort` drops the future on its executor's thread, which deregisters
//!   its sockets and cancels its timers.
//! - Three file descriptors per executor (epoll, eventfd, timerfd), however
//!   many timers, closed when its loop ends (tasks, wakers, sleeps and
//!   sockets hold the executor weakly); one per socket.
//! - Timers fire in deadline order, the `block_on` future included (a sleep
//!   polled after its deadline queues behind an earlier one not yet fired);
//!   `Duration::MAX` means "never"; `Timer::timeout` counts from the call.
//! - Futures are dropped in place, on their executor's thread, never moved
//!   out of their pinned slot first.
//! - Fairness: timers and sockets are checked at least every 61 task polls,
//!   and a task is made to yield after 128 completed socket operations or
//!   elapsed sleeps in one poll.
//! - Misuse panics with a message instead of hanging: a nested `block_on`, a
//!   blocking `join` on the thread that runs the joined task, a socket or
//!   timer polled outside an executor, a socket used on a second executor.
//!
//! # Limits
//!
//! Linux only. One thread per executor (no work stealing). Allocates: one
//! allocation per task, per registered sleep and per socket registration.
//! Under Miri (no timerfd there), timers fall back to `epoll_wait`'s
//! millisecond timeout.
#![deny(missing_docs)]
#![deny(unsafe_op_in_unsafe_fn)]
#![cfg(target_os = "linux")]

mod executor;
pub mod net;
mod reactor;
mod sys;
pub mod task;
pub mod timer;

/// Counters of the executor running on this thread, for tests and
/// debugging; `None` outside an executor.
#[doc(hidden)]
pub mod diagnostics {
    /// Sockets registered with the current executor's epoll instance.
    pub fn registered_sockets() -> Option<usize> {
        crate::executor::current().map(|s| s.reactor.registered())
    }

    /// Deadlines pending in the current executor's timer heap (neither
    /// fired nor cancelled).
    pub fn pending_timers() -> Option<usize> {
        crate::executor::current().map(|s| crate::reactor::lock(&s.reactor.timers).len())
    }
}
