//! "The thread I just sent to was running": a per-thread hint that lets a
//! blocking receive spin when its answer is likely a moment away.
//!
//! # Why
//!
//! A receiver's [`SpinPolicy`](sync_core::SpinPolicy) learns only from its
//! own waits. In a ping-pong whose two sides have both stopped spinning
//! (after a busy spell, or a slow start), every answer comes late, because
//! the other side is parked and must be woken first; so each side's probe
//! sees a late answer and the pair stays parked, at a park/unpark per
//! message (80-100 µs a round trip on a quiet machine whose idle vCPUs are
//! slow to wake, against 1-2 µs spinning). A sender knows more: if the
//! receiver it sends to had not registered a waker, that thread is running
//! (spinning in its own receive, or busy elsewhere), and the reply this
//! thread waits for next is likely to come from it soon. So a send records
//! that on its thread, and the thread's next blocking receive spins on it
//! ([`SpinPolicy::spin_until_unless_parked`](sync_core::SpinPolicy::spin_until_unless_parked)):
//! one side's probe keeps it running, the other side's send sees that, and
//! both are back to spinning within a round trip.
//!
//! A wrong hint (the next receive waits for someone else, or the receiver
//! seen running is preempted before it answers) costs one short spin: a
//! site without credit spins on a hint only for its first batch of polls
//! (about 2 µs), unless its next probe is due, and a fast answer restores
//! the site's credit. A blocking receive that spins reads the hint and
//! clears it; the other receives (`try_recv`, `recv().await`, a time-out already
//! past) leave it for the next one, and a send to a receiver that is gone,
//! or a sender dropped unsent, records nothing: a stale hint costs the same
//! bounded spin as a wrong one.
//! Under loom the hint is never set: the model's spins are empty anyway.

use core::cell::Cell;

std::thread_local! {
    static PEER_RUNNING: Cell<bool> = const { Cell::new(false) };
}

/// Records what this thread's send of a value just saw: whether the
/// receiver was running (had not registered a waker).
#[inline]
pub(crate) fn note_send(receiver_running: bool) {
    if !cfg!(loom) {
        // During thread teardown (a send from a thread-local's destructor)
        // there is no hint to keep: ignore the access error.
        let _ = PEER_RUNNING.try_with(|hint| hint.set(receiver_running));
    }
}

/// Takes this thread's hint: whether its last send found its receiver
/// running. Clears it, so that one send informs one receive.
#[inline]
pub(crate) fn take() -> bool {
    !cfg!(loom)
        && PEER_RUNNING
            .try_with(|hint| hint.replace(false))
            .unwrap_or(false)
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::{note_send, take};

    #[test]
    fn a_hint_informs_one_receive_only() {
        assert!(!take(), "no send, no hint");
        note_send(true);
        assert!(take());
        assert!(!take(), "reading clears the hint");
        note_send(true);
        note_send(false);
        assert!(!take(), "the last send decides");
    }

    /// What a send records: "running" for a receiver that had not
    /// registered a waker, "parked" for one that had.
    #[test]
    fn a_send_records_whether_its_receiver_was_waiting() {
        use core::future::Future;
        use core::pin::pin;
        use core::task::{Context, Waker};
        let (s, mut r) = crate::channel::<u8>();
        take();
        s.send(1).unwrap();
        assert!(take(), "a receiver that was not waiting counts as running");
        assert_eq!(r.try_recv(), Ok(1));
        let s = r.sender().unwrap();
        {
            let mut cx = Context::from_waker(Waker::noop());
            assert!(pin!(r.recv()).poll(&mut cx).is_pending());
            // The dropped future leaves its waker registered, as a task that
            // will be polled again does.
        }
        note_send(true);
        s.send(2).unwrap();
        assert!(!take(), "a receiver with a registered waker is not running");
        assert_eq!(r.try_recv(), Ok(2));
        drop(r.sender().unwrap());
        assert!(!take(), "a sender dropped unsent informs nothing");
    }

    #[test]
    fn the_hint_is_per_thread() {
        note_send(true);
        std::thread::spawn(|| assert!(!take())).join().unwrap();
        assert!(take());
    }
}
