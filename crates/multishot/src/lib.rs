//! A reusable, allocation-free oneshot channel.
//!
//! A [`Receiver`] that lives long (a task waiting for many replies, one at a
//! time) makes each round's [`Sender`] itself, with [`Receiver::sender`]:
//! no allocation and no spinning. The shared block is allocated once, when
//! the channel is made; after that, a round trip of "recycle, send, receive"
//! touches no allocator and costs one or two atomic read-modify-writes.
//!
//! ```
//! # sync_core::future::block_on(
//! async { let (s, mut r) = multishot::channel();
//! // Send a value to the channel from another thread.
//! std::thread::spawn(move || { s.send("42"); });
//! // Receive the value.
//! assert_eq!(r.recv().await, Ok("42"));
//! // Recycle the sender: guaranteed `Some` once the value was received.
//! let s = r.sender().unwrap();
//! // Drop the sender on another thread without sending a message.
//! std::thread::spawn(move || drop(s));
//! // Receive an error.
//! assert_eq!(r.recv().await, Err(multishot::RecvError {}));
//! }
//! # );
//! ```
//!
//! Plain threads can block instead of awaiting:
//!
//! ```
//! use std::time::Duration;
//! use multishot::RecvTimeoutError;
//!
//! let (s, mut r) = multishot::channel();
//! assert_eq!(r.recv_timeout(Duration::from_millis(1)), Err(RecvTimeoutError::Timeout));
//! let t = std::thread::spawn(move || s.send(5).unwrap());
//! assert_eq!(r.recv_blocking(), Ok(5)); // a value sent after a time-out is kept
//! t.join().unwrap();
//! ```
//!
//! # Guarantees
//!
//! - **Allocation**: one, in [`channel`] / [`Receiver::new`]. Sending,
//!   receiving and recycling never allocate (cloning the task's `Waker` on
//!   registration aside; the blocking receive uses a cached per-thread
//!   parker, made on the thread's first blocking receive at each nesting
//!   depth: a `recv_blocking` inside a `block_on` uses a second one).
//! - **Progress**: [`Sender::send`], [`Receiver::try_recv`] and
//!   [`Receiver::sender`] are wait-free. Polling [`Recv`] is lock-free (see
//!   its docs for the one retry case), and so is a send from a sender that
//!   polled [`Sender::closed`] (see [`Sender::send`]).
//! - **Cost**: a send is one atomic RMW when the receiver is not waiting and
//!   two when it is; polling when the value is there costs no RMW, and
//!   re-polling with the same waker costs a single load. The state machine and
//!   its costs are described in the source, `src/inner.rs`.
//! - **Blocking**: only `recv_blocking`, `recv_timeout` and `recv_deadline`
//!   block (they park the thread).
//! - **Panics**: nothing panics by itself. Values are never lost silently: a
//!   send to a dropped receiver returns the value, a late value after a
//!   time-out is kept, and [`Receiver::sender_with_unread`] returns an unread
//!   value that [`Receiver::sender`] would drop.
//! - **Hostile wakers and payloads**: a `Waker` whose `clone`, `wake` or
//!   `drop`, or a payload whose `Drop`, panics only makes that panic reach
//!   the caller; except that a peer's waker woken by a handle dropped while
//!   its thread already unwinds has its panic caught and dropped (a second
//!   panic there would abort the process). Every foreign object is moved out of the shared block, the
//!   state change is published, and only then is it woken or dropped, so an
//!   unwind never leaves the channel inconsistent: a value already sent is
//!   still delivered, a receiver is never left waiting for a wake-up that
//!   was lost, and the block is still freed. A waker whose clones have new
//!   data pointers is handled too: "is this waker already registered?" is
//!   asked of the stored clone (`stored.will_wake(waker)`), never of the
//!   waker borrowed at an earlier poll, whose address may since belong to
//!   another task.
//! - **Types**: `Sender<T>` and `Receiver<T>` are one pointer wide,
//!   `Send + Sync` when `T: Send`, and invariant in `T`.
//!
//! # Feature flags
//!
//! None. The crate needs `std` (for the blocking receive and because
//! `sync-core`, its model-checking facade, is `std`); a `no_std + alloc`
//! build is not offered yet.
//!
//! # Verification
//!
//! Every race in the protocol has a loom model (`tests/loom.rs`, run by
//! `cargo xtask loom -p multishot`), and the tests run under Miri with
//! several seeds and both borrow models (`cargo xtask miri -p multishot`).
#![deny(missing_docs)]
#![deny(unsafe_op_in_unsafe_fn)]

mod error;
mod inner;
mod peer_hint;
mod receiver;
mod sender;

pub use error::{RecvError, RecvTimeoutError, SendError, TryRecvError};
pub use receiver::{Receiver, Recv};
pub use sender::{Closed, Sender};

/// Makes a channel: a sender for the first round and the long-lived
/// receiver. Allocates the shared block once.
pub fn channel<T>() -> (Sender<T>, Receiver<T>) {
    let inner = inner::Inner::allocate(0);
    // SAFETY: a fresh block with TX_DONE clear has exactly this one sender.
    let sender = unsafe { Sender::from_inner(inner) };
    (sender, Receiver::from_inner(inner))
}

#[cfg(test)]
mod tests {
    use super::*;
    use static_assertions::{assert_eq_size, assert_impl_all, assert_not_impl_any};

    assert_impl_all!(Sender<String>: Send, Sync);
    assert_impl_all!(Receiver<String>: Send, Sync);
    assert_not_impl_any!(Sender<std::rc::Rc<u8>>: Send, Sync);
    assert_not_impl_any!(Receiver<std::rc::Rc<u8>>: Send, Sync);
    assert_impl_all!(Recv<'static, String>: Send, Unpin);
    assert_eq_size!(Sender<[u64; 16]>, usize);
    assert_eq_size!(Receiver<[u64; 16]>, usize);
    assert_eq_size!(Option<Receiver<u8>>, usize);
    assert_impl_all!(RecvError: std::error::Error, Copy, Send, Sync);
    assert_impl_all!(SendError<String>: std::error::Error, Send, Sync);
    assert_impl_all!(TryRecvError: std::error::Error, Copy);
    assert_impl_all!(RecvTimeoutError: std::error::Error, Copy);
}
