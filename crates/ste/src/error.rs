//! Errors: a task that panicked, a thread that has shut down, a spawn that
//! failed.

use core::any::Any;
use core::fmt;

/// The payload of a panic, as `std::panic::catch_unwind` returns it.
pub(crate) type Payload = Box<dyn Any + Send + 'static>;

/// Why a call into the background thread failed.
///
/// Implements [`std::error::Error`], is `Send + Sync + 'static`, and so
/// converts into `Box<dyn std::error::Error + Send + Sync>` with `?`.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// The task panicked on the background thread (or the prelude panicked,
    /// for [`Builder::build`](crate::Builder::build); or the postlude, for
    /// [`Thread::join`](crate::Thread::join)). The thread itself keeps
    /// running: a panicking task never kills it. The original payload is in
    /// the [`Panic`]; [`Panic::resume`] re-raises it on the calling thread.
    Panicked(Panic),
    /// The background thread has shut down (or is shutting down) and takes no
    /// more work. The task was not run.
    ShutDown,
    /// The operating system refused to start the background thread.
    Spawn(std::io::Error),
}

impl Error {
    /// Whether this is [`Error::Panicked`].
    pub fn is_panic(&self) -> bool {
        matches!(self, Error::Panicked(_))
    }

    /// Whether this is [`Error::ShutDown`].
    pub fn is_shut_down(&self) -> bool {
        matches!(self, Error::ShutDown)
    }

    /// The panic, if this is [`Error::Panicked`]; otherwise the error itself.
    pub fn into_panic(self) -> Result<Panic, Error> {
        match self {
            Error::Panicked(panic) => Ok(panic),
            other => Err(other),
        }
    }

    pub(crate) fn panicked(payload: Payload) -> Error {
        Error::Panicked(Panic { payload })
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Panicked(panic) => match panic.message() {
                Some(msg) => write!(f, "task panicked on the ste thread: {msg}"),
                None => f.write_str("task panicked on the ste thread"),
            },
            Error::ShutDown => f.write_str("the ste thread has shut down"),
            Error::Spawn(e) => write!(f, "failed to spawn the ste thread: {e}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Spawn(e) => Some(e),
            _ => None,
        }
    }
}

/// A panic caught on the background thread, carrying the original payload.
pub struct Panic {
    payload: Payload,
}

// SAFETY: `Sync` lets `&Panic` cross threads. The only things done through a
// shared reference are `message` and the `Debug`/`Display` impls built on it,
// which call `downcast_ref::<&'static str>` and `downcast_ref::<String>`:
// `Any::type_id` is the blanket impl and never reads the payload, and the
// references handed out are to `&'static str` / `String`, both `Sync`. The
// payload itself (which is only `Send`) is reached only by value
// (`into_payload`, `resume`), i.e. by one owner.
unsafe impl Sync for Panic {}

impl Panic {
    /// The panic message, when the payload is a string (as it is for
    /// `panic!("...")` with or without formatting arguments).
    pub fn message(&self) -> Option<&str> {
        if let Some(s) = self.payload.downcast_ref::<&'static str>() {
            Some(s)
        } else {
            self.payload.downcast_ref::<String>().map(String::as_str)
        }
    }

    /// The original payload, as `std::panic::catch_unwind` would return it.
    pub fn into_payload(self) -> Box<dyn Any + Send + 'static> {
        self.payload
    }

    /// Re-raises the panic on the calling thread with its original payload
    /// (`std::panic::resume_unwind`).
    pub fn resume(self) -> ! {
        std::panic::resume_unwind(self.payload)
    }
}

impl fmt::Debug for Panic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Panic")
            .field("message", &self.message())
            .finish_non_exhaustive()
    }
}

// A payload is dropped by the workspace's one rule for foreign panics: its
// own drop's panic, and that panic's payload, are dropped the same way, a
// few levels deep (`sync_core::unwind`).
pub(crate) use sync_core::unwind::drop_payload;
