//! The word behind a one-sleeper parker: a wake-up token, and whether the
//! owner sleeps.
//!
//! # How it works
//!
//! Three states: `EMPTY` (no token, owner awake), `PARKED` (the owner
//! sleeps, or is about to) and `NOTIFIED` (a token waits). A waker swaps in
//! `NOTIFIED` and learns from the old value whether the owner must be woken
//! through whatever it sleeps on (a futex for [`Parker`](crate::Parker), an
//! eventfd in an epoll set elsewhere): a wake-up for an owner that is awake
//! costs one atomic swap and no system call. The owner announces its sleep
//! (`EMPTY` to `PARKED`, which fails if a token arrived first) and, once
//! awake, takes the token or leaves `PARKED`.
//!
//! The word only orders the token: the sleep itself is the back-end's,
//! which must not lose a wake-up that its owner has not slept into yet
//! (a futex word, a counting eventfd, `Thread::park`'s own token do not).
//!
//! Lock-free; no system calls; one byte.

use crate::atomic::{AtomicU8, Ordering};

const EMPTY: u8 = 0;
const PARKED: u8 = 1;
const NOTIFIED: u8 = 2;

/// A wake-up token and whether its owner sleeps: the shared part of every
/// one-sleeper parker in the workspace.
///
/// One owner sleeps on it at a time; any number of threads may
/// [`notify`](Self::notify). Several notifications collapse into one token.
pub struct WakeToken {
    state: AtomicU8,
}

impl WakeToken {
    /// No token; the owner awake.
    pub fn new() -> Self {
        Self {
            state: AtomicU8::new(EMPTY),
        }
    }

    /// Leaves a token (release). `true` if the owner sleeps or is about
    /// to: the caller must then wake it through the back-end. Lock-free.
    #[must_use = "a `true` means the owner sleeps and must be woken"]
    pub fn notify(&self) -> bool {
        self.state.swap(NOTIFIED, Ordering::Release) == PARKED
    }

    /// Takes a waiting token (acquire); `true` if there was one.
    pub fn try_consume(&self) -> bool {
        self.state
            .compare_exchange(NOTIFIED, EMPTY, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
    }

    /// Whether a token waits, without taking it: one relaxed load (take it
    /// with [`try_consume`](Self::try_consume) or
    /// [`end_park`](Self::end_park) before relying on what it announces).
    pub fn is_notified(&self) -> bool {
        self.state.load(Ordering::Relaxed) == NOTIFIED
    }

    /// The owner, about to sleep: `EMPTY` to `PARKED`. `false` if a token
    /// arrived meanwhile: it is taken (acquire) and the owner must not
    /// sleep. After a `true`, the owner sleeps (as often as it likes, taking
    /// the token with `try_consume` after each wake-up) and ends with a
    /// successful `try_consume` or with [`end_park`](Self::end_park).
    #[must_use = "a `false` means a token arrived: do not sleep"]
    pub fn begin_park(&self) -> bool {
        match self
            .state
            .compare_exchange(EMPTY, PARKED, Ordering::Relaxed, Ordering::Relaxed)
        {
            Ok(_) => true,
            Err(_) => {
                // Only a waker changes the word behind the owner's back, and
                // only to NOTIFIED.
                self.state.swap(EMPTY, Ordering::Acquire);
                false
            }
        }
    }

    /// The owner, awake without a token (its time ran out, say): leaves
    /// `PARKED`. `true` if a token arrived in the meantime: it is taken
    /// (acquire), and counts.
    pub fn end_park(&self) -> bool {
        self.state.swap(EMPTY, Ordering::Acquire) == NOTIFIED
    }
}

impl Default for WakeToken {
    fn default() -> Self {
        Self::new()
    }
}

impl core::fmt::Debug for WakeToken {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("WakeToken")
            .field("notified", &self.is_notified())
            .finish()
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::WakeToken;

    #[test]
    fn a_token_left_before_the_park_is_taken_instead_of_sleeping() {
        let token = WakeToken::new();
        assert!(!token.notify(), "nobody sleeps: no wake-up needed");
        assert!(token.is_notified());
        assert!(!token.begin_park(), "the token stops the sleep");
        assert!(!token.is_notified(), "and is taken");
        assert!(!token.try_consume());
    }

    #[test]
    fn a_notification_of_a_parked_owner_asks_for_a_wake_up_once() {
        let token = WakeToken::new();
        assert!(token.begin_park());
        assert!(token.notify(), "the owner sleeps");
        assert!(
            !token.notify(),
            "the second one only collapses into the token"
        );
        assert!(token.try_consume());
        assert!(!token.try_consume());
    }

    #[test]
    fn ending_a_park_keeps_a_token_that_raced_with_it() {
        let token = WakeToken::new();
        assert!(token.begin_park());
        assert!(!token.end_park(), "no token: a time-out");
        assert!(token.begin_park());
        assert!(token.notify());
        assert!(token.end_park(), "the token counts");
        assert!(!token.is_notified());
        assert!(token.begin_park(), "and the word is EMPTY again");
    }
}
