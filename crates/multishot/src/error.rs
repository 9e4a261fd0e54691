//! The error types. All are plain data: `Copy` where they carry no value,
//! `std::error::Error + 'static`, and printable.

use core::fmt;

/// The receive failed because the sender was dropped without sending (or
/// because its value was already received and no new sender was made).
///
/// A unit-like struct, constructible as `RecvError {}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct RecvError {}

impl fmt::Display for RecvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("channel closed: the sender was dropped without sending")
    }
}

impl std::error::Error for RecvError {}

/// [`Receiver::try_recv`](crate::Receiver::try_recv) found no value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TryRecvError {
    /// The sender is alive and has not sent yet.
    Empty,
    /// The sender is gone and there is no value to receive.
    Closed,
}

impl fmt::Display for TryRecvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Empty => f.write_str("no value yet: the sender has not sent"),
            Self::Closed => RecvError {}.fmt(f),
        }
    }
}

impl std::error::Error for TryRecvError {}

/// A blocking receive with a time limit did not get a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RecvTimeoutError {
    /// The deadline passed first. The sender may still send: the value is
    /// then kept for the next receive.
    Timeout,
    /// The sender is gone and there is no value to receive.
    Closed,
}

impl fmt::Display for RecvTimeoutError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Timeout => f.write_str("timed out waiting for the value"),
            Self::Closed => RecvError {}.fmt(f),
        }
    }
}

impl std::error::Error for RecvTimeoutError {}

/// The receiver was dropped; the value that could not be delivered is
/// inside.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct SendError<T>(pub(crate) T);

impl<T> SendError<T> {
    /// The value that was not delivered.
    pub fn into_inner(self) -> T {
        self.0
    }
}

impl<T> fmt::Debug for SendError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SendError").finish_non_exhaustive()
    }
}

impl<T> fmt::Display for SendError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the receiver was dropped; the value is returned in the error")
    }
}

impl<T> std::error::Error for SendError<T> {}
