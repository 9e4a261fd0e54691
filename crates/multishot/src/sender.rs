//! The sending half.

use crate::error::SendError;
use crate::inner::{Decoded, Inner, RX_GONE, TX_WAKER};
use core::fmt;
use core::future::Future;
use core::marker::PhantomData;
use core::pin::Pin;
use core::ptr::NonNull;
use core::task::{Context, Poll};
use sync_core::atomic::Ordering;

/// The sending half of a channel: sends one value, or is dropped.
///
/// Made by [`channel`](crate::channel) or recycled by
/// [`Receiver::sender`](crate::Receiver::sender). One pointer wide. `Send`
/// and `Sync` when `T: Send` (a shared `&Sender` only reads the state word).
/// Invariant in `T`.
pub struct Sender<T> {
    inner: NonNull<Inner<T>>,
    _owns: PhantomData<T>,
}

// SAFETY: a sender moves a `T` to the receiver's thread, so `T: Send` is
// needed and sufficient; all shared state is synchronised by the state word.
unsafe impl<T: Send> Send for Sender<T> {}
// SAFETY: `&Sender` only loads the state word (`is_closed`, `Debug`); it
// never touches a `T`.
unsafe impl<T: Send> Sync for Sender<T> {}

impl<T> Sender<T> {
    /// # Safety
    ///
    /// `inner` is a live block whose state has `TX_DONE` clear, and no other
    /// sender of it exists.
    pub(crate) unsafe fn from_inner(inner: NonNull<Inner<T>>) -> Self {
        Self {
            inner,
            _owns: PhantomData,
        }
    }

    fn shared(&self) -> &Inner<T> {
        // SAFETY: a live sender co-owns the block: it is freed only after
        // this sender's last RMW (in `send` or `Drop`), which consumes it.
        unsafe { self.inner.as_ref() }
    }

    /// Sends `value`, consuming the sender.
    ///
    /// Never blocks, never allocates, wait-free (apart from the receiver's
    /// waker's `wake`): one atomic RMW if the receiver is not waiting, two if
    /// it is. If the receiver was dropped, the value comes back in the error.
    ///
    /// If this sender ever polled [`closed`](Self::closed), the send first
    /// takes its `closed()` waker back with a compare-exchange that retries
    /// only while the receiver changes the state word at the same moment:
    /// then it is lock-free rather than wait-free.
    ///
    /// ```
    /// let (s, r) = multishot::channel::<String>();
    /// drop(r);
    /// let err = s.send("not lost".to_string()).unwrap_err();
    /// assert_eq!(err.into_inner(), "not lost");
    /// ```
    pub fn send(self, value: T) -> Result<(), SendError<T>> {
        let inner = self.inner;
        core::mem::forget(self); // `finish_sender` below replaces `Drop`
        // SAFETY: we are the live sender, and we do not touch the block
        // afterwards (`self` was forgotten).
        match unsafe { Inner::finish_sender(inner, Some(value)) } {
            None => Ok(()),
            Some(value) => Err(SendError(value)),
        }
    }

    /// Whether the receiver was dropped (so a send would fail). One load.
    pub fn is_closed(&self) -> bool {
        self.shared().state.load(Ordering::Acquire) & RX_GONE != 0
    }

    /// A future that completes when the receiver is dropped, for senders
    /// that want to stop work nobody will read.
    ///
    /// Does not allocate (clones the task's waker). Each poll that is not
    /// ready costs one or two RMWs.
    pub fn closed(&mut self) -> Closed<'_, T> {
        Closed { sender: self }
    }

    fn poll_closed(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let shared = self.shared();
        let mut state = shared.state.load(Ordering::Acquire);
        if state & RX_GONE != 0 {
            return Poll::Ready(());
        }
        // Foreign code (the clone) before anything is claimed: if it panics,
        // the previous registration stays in place.
        let new = cx.waker().clone();
        // Win tx_waker back if our previous waker is in it.
        while state & TX_WAKER != 0 {
            if state & RX_GONE != 0 {
                drop(new);
                return Poll::Ready(());
            }
            match shared.state.compare_exchange_weak(
                state,
                state & !TX_WAKER,
                Ordering::Acquire,
                Ordering::Acquire,
            ) {
                Ok(_) => break,
                Err(actual) => state = actual,
            }
        }
        if state & RX_GONE != 0 {
            drop(new);
            return Poll::Ready(());
        }
        // The replaced waker is dropped after the publishing RMW.
        let old = shared.tx_waker.with_mut(|slot| {
            // SAFETY: TX_WAKER is clear, so the receiver does not touch
            // tx_waker (it takes it only if TX_WAKER was set when it left).
            unsafe { (*slot).replace(new) }
        });
        // TX_WAKER is clear and only we set it: an add is the same as an or.
        let prev = shared.state.fetch_add(TX_WAKER, Ordering::AcqRel);
        debug_assert_eq!(prev & TX_WAKER, 0, "closed() waker registered twice");
        if prev & RX_GONE != 0 {
            // The receiver left before our waker was visible, so it does not
            // hold the slot: undo and report.
            // SAFETY: as above; the receiver saw TX_WAKER clear when it left.
            let unneeded = shared.tx_waker.with_mut(|slot| unsafe { (*slot).take() });
            shared.state.fetch_sub(TX_WAKER, Ordering::AcqRel);
            drop((old, unneeded));
            return Poll::Ready(());
        }
        drop(old);
        Poll::Pending
    }
}

impl<T> Drop for Sender<T> {
    /// Closes the round without a value: the receiver gets
    /// [`RecvError`](crate::RecvError). Same cost as `send`.
    fn drop(&mut self) {
        // SAFETY: we are the live sender, and the block is not touched
        // again by this (dropped) sender.
        let none = unsafe { Inner::finish_sender(self.inner, None) };
        debug_assert!(none.is_none());
    }
}

impl<T> fmt::Debug for Sender<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.shared().state.load(Ordering::Acquire);
        f.debug_struct("Sender")
            .field("receiver_closed", &(state & RX_GONE != 0))
            .field("state", &Decoded(state))
            .finish()
    }
}

/// Future returned by [`Sender::closed`]: completes when the receiver is
/// dropped. Cancel-safe and fused.
#[must_use = "futures do nothing unless polled"]
pub struct Closed<'a, T> {
    sender: &'a mut Sender<T>,
}

impl<T> Future for Closed<'_, T> {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        self.sender.poll_closed(cx)
    }
}

impl<T> fmt::Debug for Closed<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Closed")
            .field("sender", &self.sender)
            .finish()
    }
}
