//! The receiving half: async and blocking receive, recycling.

use crate::error::{RecvError, RecvTimeoutError, TryRecvError};
use crate::inner::{
    Decoded, HOLD, Inner, RX_GONE, RX_WAKER, RxLocal, TX_DONE, TX_WAKER, VALUE,
    earlier_sender_holds, this_rounds_waker, waker_id,
};
use crate::sender::Sender;
use core::fmt;
use core::future::Future;
use core::marker::PhantomData;
use core::pin::Pin;
use core::ptr::NonNull;
use core::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};
use sync_core::atomic::Ordering;
use sync_core::{SpinHints, hint, with_thread_parker};

/// The receiving half of a channel: receives one value per round and makes
/// the next round's [`Sender`] without allocating.
///
/// One pointer wide. `Send` and `Sync` when `T: Send` (a shared `&Receiver`
/// only reads). Invariant in `T`.
pub struct Receiver<T> {
    inner: NonNull<Inner<T>>,
    _owns: PhantomData<T>,
}

// SAFETY: the receiver moves a `T` out of the block to its own thread, so
// `T: Send` is needed and sufficient.
unsafe impl<T: Send> Send for Receiver<T> {}
// SAFETY: `&Receiver` only loads the state word and reads receiver-private
// flags that are written through `&mut Receiver` alone; it never touches a
// `T`.
unsafe impl<T: Send> Sync for Receiver<T> {}

impl<T> Receiver<T> {
    /// A receiver with no sender yet: make one with
    /// [`sender`](Self::sender). Allocates the shared block (the only
    /// allocation in the channel's life).
    ///
    /// ```
    /// let mut r = multishot::Receiver::<u32>::new();
    /// assert!(r.try_recv().is_err());
    /// let s = r.sender().expect("no sender alive yet");
    /// s.send(7).unwrap();
    /// assert_eq!(r.try_recv(), Ok(7));
    /// ```
    pub fn new() -> Self {
        Self::from_inner(Inner::allocate(TX_DONE))
    }

    pub(crate) fn from_inner(inner: NonNull<Inner<T>>) -> Self {
        Self {
            inner,
            _owns: PhantomData,
        }
    }

    /// The shared block. The lifetime is not tied to `&self` so that the
    /// receiver's `&mut self` helpers can be called while it is in use; it
    /// is never kept past the receiver's `Drop`.
    fn shared<'a>(&self) -> &'a Inner<T> {
        // SAFETY: the receiver co-owns the block until its `Drop`, and no
        // reference obtained here outlives the receiver.
        unsafe { self.inner.as_ref() }
    }

    /// Runs `f` on the receiver-private bookkeeping.
    fn local<R>(&mut self, f: impl FnOnce(&mut RxLocal) -> R) -> R {
        // SAFETY: `rx` is only ever accessed by the receiver, and `&mut self`
        // excludes every other access through this receiver.
        self.shared().rx.with_mut(|p| f(unsafe { &mut *p }))
    }

    fn value_taken(&self) -> bool {
        // SAFETY: `rx` is written only through `&mut Receiver`, which cannot
        // coexist with this `&self`.
        self.shared().rx.with(|p| unsafe { (*p).value_taken })
    }

    /// Receives the value, waiting for it asynchronously.
    ///
    /// The returned [`Recv`] is `Unpin`, fused (polling it after it
    /// completed returns `Err(RecvError)` rather than panicking) and
    /// cancel-safe: dropping it loses nothing, and a value sent later is
    /// received by the next `recv`.
    ///
    /// Lock-free; never allocates except the waker's own `clone` on first
    /// registration. A poll that finds the value costs no atomic RMW; a
    /// re-poll with the same waker costs one load.
    pub fn recv(&mut self) -> Recv<'_, T> {
        Recv { receiver: self }
    }

    /// Takes the value if it is there. Wait-free: one load, no RMW.
    ///
    /// `Err(Empty)` while the sender is alive and has not sent;
    /// `Err(Closed)` once it is gone and there is no value (also after the
    /// value was received).
    pub fn try_recv(&mut self) -> Result<T, TryRecvError> {
        let state = self.shared().state.load(Ordering::Acquire);
        if state & TX_DONE == 0 {
            return Err(TryRecvError::Empty);
        }
        self.outcome(state)
            .map_err(|RecvError {}| TryRecvError::Closed)
    }

    /// Blocks the thread until the value arrives or the sender is gone.
    ///
    /// Spins for a bounded moment first (50 µs at most, 200 µs for the
    /// occasional probe, never when the last sender ran on this thread's
    /// CPU, and only while this receiver's recent spins caught the value
    /// fast:
    /// [`SpinPolicy`](sync_core::SpinPolicy); or about 2 µs if this thread's
    /// last send found its receiver running, the reply of a ping-pong whose
    /// peer is awake; it never yields), then parks on a
    /// cached per-thread parker ([`with_thread_parker`]): no allocation
    /// after the thread's first blocking call at that nesting depth (a call
    /// inside `sync_core::future::block_on` uses a second cached parker).
    /// In the rare case that an earlier round's sender was preempted while
    /// still releasing the waker slot, it parks until that sender's wake if
    /// the waker it holds is this thread's parker (the previous round was a
    /// blocking receive on this thread); otherwise it re-checks within the
    /// same bounded budget and then naps on the parker with a growing
    /// time-out (10 µs up to 1 ms) instead of spinning. Not for use inside an
    /// async task.
    pub fn recv_blocking(&mut self) -> Result<T, RecvError> {
        self.wait(None).map_err(|_| RecvError {})
    }

    /// Blocks for at most `timeout` (a timed park may overrun it by the
    /// OS's timer slack, 50 µs by default on Linux). It spins as
    /// `recv_blocking` does only while the longest spin
    /// ([`SpinPolicy::PROBE_LIMIT`](sync_core::SpinPolicy::PROBE_LIMIT),
    /// 200 µs) fits before the deadline, so a spin overruns it by at most
    /// the polls between two readings of the clock (a few microseconds,
    /// less than the timer slack); a shorter time-out parks at once. A
    /// value that arrives after the time-out is kept: the next receive
    /// returns it. With a zero `timeout` it only looks, as
    /// [`try_recv`](Self::try_recv): no spin, no sleep, no waker registered.
    pub fn recv_timeout(&mut self, timeout: Duration) -> Result<T, RecvTimeoutError> {
        let deadline = Instant::now().checked_add(timeout);
        self.wait(Some(deadline.unwrap_or_else(far_future)))
    }

    /// Blocks until `deadline` at the latest (give or take the timer slack
    /// of a timed park; a spin never overruns it: see
    /// [`recv_timeout`](Self::recv_timeout)). A value that arrives after the
    /// deadline is kept: the next receive returns it. A deadline already
    /// passed only looks, as [`try_recv`](Self::try_recv).
    pub fn recv_deadline(&mut self, deadline: Instant) -> Result<T, RecvTimeoutError> {
        self.wait(Some(deadline))
    }

    fn wait(&mut self, deadline: Option<Instant>) -> Result<T, RecvTimeoutError> {
        // A deadline already passed (`recv_timeout(ZERO)`) makes this a
        // look, not a wait: registering the thread's parker would cost the
        // next send an unpark for nothing, and replace the waker of an async
        // receive left registered.
        let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
        if left == Some(Duration::ZERO) {
            return self.try_recv().map_err(|e| match e {
                TryRecvError::Empty => RecvTimeoutError::Timeout,
                TryRecvError::Closed => RecvTimeoutError::Closed,
            });
        }
        // A reply that is a few microseconds away is caught without
        // registering or parking: spin briefly, if this receiver's recent
        // spins paid off (`SpinPolicy`), or even without credit if this
        // thread's last send found its receiver running (`peer_hint`).
        // `spin_with` skips the spin if the last sender ran on this CPU (it
        // cannot answer while we hold the CPU: `sync_core::PeerCpu`) or if
        // less than the longest spin is left before the deadline (a spin is
        // not cut short, and must not overrun the time-out).
        let shared = self.shared();
        let peer_running = crate::peer_hint::take();
        let sent = || shared.state.load(Ordering::Acquire) & TX_DONE != 0;
        let hints = SpinHints {
            peer_running,
            peer_cpu: shared.tx_cpu.last(),
            time_left: left,
        };
        shared.rx_spin.spin_with(hints, sent);
        let closed =
            |out: Result<T, RecvError>| out.map_err(|RecvError {}| RecvTimeoutError::Closed);
        with_thread_parker(|parker| {
            let waker = parker.waker();
            let mut held = HeldWait::new();
            loop {
                let timed_out = match self.poll_once(&waker) {
                    Polled::Ready(out) => return closed(out),
                    Polled::Registered => match deadline {
                        None => {
                            parker.park();
                            false
                        }
                        Some(deadline) => !parker.park_deadline(deadline),
                    },
                    // Nobody will wake us: look again after a bounded
                    // spin, then after naps that grow (see `HeldWait`).
                    Polled::Held => {
                        held.wait(self.shared(), parker, deadline);
                        deadline.is_some_and(|d| d <= Instant::now())
                    }
                };
                if timed_out {
                    // Timed out; one last look, since the value may have
                    // raced the deadline. A waker left registered is a
                    // harmless spurious unpark of this thread's parker later.
                    return match self.poll_once(&waker) {
                        Polled::Ready(out) => closed(out),
                        Polled::Registered | Polled::Held => Err(RecvTimeoutError::Timeout),
                    };
                }
            }
        })
    }

    /// Makes a sender for the next round, without allocating. Wait-free.
    ///
    /// Returns `Some` whenever the previous sender is gone: after its value
    /// was received, after it was dropped, or if there never was one. Returns
    /// `None` while a sender is alive and has not sent.
    ///
    /// If the previous value was sent but never received, **this drops it**
    /// (the new round starts empty). Use
    /// [`sender_with_unread`](Self::sender_with_unread) to get it back
    /// instead.
    pub fn sender(&mut self) -> Option<Sender<T>> {
        self.sender_with_unread().map(|(sender, unread)| {
            drop(unread);
            sender
        })
    }

    /// Like [`sender`](Self::sender), but returns the previous round's
    /// unreceived value (if any) instead of dropping it.
    pub fn sender_with_unread(&mut self) -> Option<(Sender<T>, Option<T>)> {
        let shared = self.shared();
        let state = shared.state.load(Ordering::Acquire);
        if state & TX_DONE == 0 {
            return None;
        }
        let unread = self.outcome(state).ok();
        let shared = self.shared();
        let stale_waker = if state & RX_WAKER == 0 {
            // Nobody holds rx_waker and the sender is done: no other party
            // can touch the word any more, so a plain store resets it (and
            // drops a stale HOLD).
            shared.state.store(0, Ordering::Release);
            // SAFETY: nobody holds rx_waker and the sender is gone, so the
            // slot is the receiver's; empty it for the new round.
            shared.rx_waker.with_mut(|p| unsafe { (*p).take() })
        } else {
            // A sender (this round's, or an earlier one under HOLD) holds
            // rx_waker and may release it, with `fetch_sub(RX_WAKER)`, at
            // any moment. Every other bit is ours to know: reset them with
            // one add, which commutes with that release, and mark the hold
            // as belonging to an earlier round. If the release lands first,
            // the HOLD we set is stale, which is harmless (see the module
            // docs). One RMW, no retry.
            let delta =
                (if state & HOLD == 0 { HOLD } else { 0 }).wrapping_sub(state & (VALUE | TX_DONE));
            let prev = shared.state.fetch_add(delta, Ordering::AcqRel);
            debug_assert_eq!(
                prev & !RX_WAKER,
                state & !RX_WAKER,
                "the word changed other than by the holder's release"
            );
            None
        };
        self.local(|l| {
            // Whose waker the holder (if any) will wake after its release:
            // this round's registration, or the one an earlier holder has.
            let held = match (state & RX_WAKER != 0, state & HOLD != 0) {
                (false, _) => None,
                (true, false) => l.registered,
                (true, true) => l.held,
            };
            *l = RxLocal {
                held,
                ..RxLocal::default()
            };
        });
        // SAFETY: the state was just reset with TX_DONE clear, and the old
        // sender is gone: the new one is the only sender.
        let sender = unsafe { Sender::from_inner(self.inner) };
        // Foreign code last: if this drop panics, the new round is already
        // consistent, and unwinding drops the new sender (closing the round)
        // and the unread value.
        drop(stale_waker);
        Some((sender, unread))
    }

    /// Whether the sender is gone (it sent, was dropped, or was never made).
    /// A value may still be waiting: see [`has_value`](Self::has_value).
    /// One load.
    pub fn is_closed(&self) -> bool {
        self.shared().state.load(Ordering::Acquire) & TX_DONE != 0
    }

    /// Whether a value is waiting to be received. One load.
    pub fn has_value(&self) -> bool {
        self.shared().state.load(Ordering::Acquire) & VALUE != 0 && !self.value_taken()
    }

    /// The outcome of a finished round (`state` has `TX_DONE`): the value,
    /// moved out once, or `RecvError`.
    fn outcome(&mut self, state: usize) -> Result<T, RecvError> {
        debug_assert!(state & TX_DONE != 0);
        if state & VALUE == 0 || self.local(|l| core::mem::replace(&mut l.value_taken, true)) {
            return Err(RecvError {});
        }
        Ok(self.shared().value.with_mut(|p| {
            // SAFETY: VALUE was published (Acquire) by the sender, which is
            // done with the slot; `value_taken` was false: read exactly once.
            unsafe { (*p).assume_init_read() }
        }))
    }

    /// One poll of the receive: the outcome, or a registration of `waker`,
    /// or the report that an earlier round's sender still holds the waker
    /// slot (so nothing could be registered).
    ///
    /// Foreign code (the waker's `clone` and `drop`) runs only while the
    /// state is consistent: the clone before anything is claimed, a replaced
    /// or unneeded waker's drop after the publishing RMW and before the
    /// value is moved out, so a panicking drop leaves the value in the
    /// channel for the next receive.
    pub(crate) fn poll_once(&mut self, waker: &Waker) -> Polled<T> {
        let shared = self.shared();
        let mut state = shared.state.load(Ordering::Acquire);
        if state & TX_DONE != 0 {
            return Polled::Ready(self.outcome(state));
        }
        if earlier_sender_holds(state) {
            // A sender of an earlier round is still releasing rx_waker (it
            // was preempted between its two RMWs): we cannot register. But
            // if the waker it holds is this one, its wake (which comes right
            // after its release) reaches us: wait for it like a registration.
            // Sound because the hold was seen just now: the holder has not
            // released, so it has not woken and dropped that waker, and two
            // live wakers with the same identity wake the same task.
            // SAFETY: `rx` is receiver-private; we hold `&mut self`.
            let held = shared.rx.with(|p| unsafe { (*p).held });
            if held == Some(waker_id(waker)) {
                return Polled::Registered;
            }
            return Polled::Held;
        }
        let registered = state & RX_WAKER != 0;
        // SAFETY: `rx` is receiver-private; we hold `&mut self`.
        if registered && shared.rx.with(|p| unsafe { (*p).registered }) == Some(waker_id(waker)) {
            // The waker stored in the slot (its identity was taken from the
            // stored clone, which keeps its data pointer alive) is this
            // one: `stored.will_wake(waker)`. Nothing to do. One load.
            return Polled::Registered;
        }
        let new = waker.clone();
        // The identity of the clone we store, not of the borrowed `waker`: a
        // clone may have another data pointer, and once `waker` is freed its
        // address may come back as some other task's waker.
        let new_id = waker_id(&new);
        if registered {
            // Win the slot back to replace the waker; if the sender finishes
            // first, the outcome is ready and the slot is its to release.
            loop {
                match shared.state.compare_exchange_weak(
                    state,
                    state & !RX_WAKER,
                    Ordering::Acquire,
                    Ordering::Acquire,
                ) {
                    Ok(_) => break,
                    Err(actual) if actual & TX_DONE != 0 => {
                        drop(new);
                        return Polled::Ready(self.outcome(actual));
                    }
                    Err(actual) => state = actual,
                }
            }
            state &= !RX_WAKER;
        }
        let old = shared.rx_waker.with_mut(|p| {
            // SAFETY: RX_WAKER is clear and the sender is alive, so nobody
            // else touches rx_waker until we set RX_WAKER below.
            unsafe { (*p).replace(new) }
        });
        // Set RX_WAKER, and clear a stale HOLD (the earlier holder has
        // released) in the same instruction. Only the receiver sets RX_WAKER
        // or touches HOLD, so `state` tells both bits exactly and the add is
        // exact: one `lock xadd` on x86 (see `Inner::finish_sender`).
        let delta = RX_WAKER.wrapping_sub(state & HOLD);
        let prev = shared.state.fetch_add(delta, Ordering::AcqRel);
        debug_assert_eq!(prev & RX_WAKER, 0, "registered twice");
        debug_assert_eq!(prev & HOLD, state & HOLD, "HOLD changed under us");
        if prev & TX_DONE != 0 {
            // The sender finished before our waker was visible, so it did not
            // take the slot: undo (nobody else clears RX_WAKER now) and
            // return the outcome.
            shared.state.fetch_sub(RX_WAKER, Ordering::AcqRel);
            // SAFETY: the sender saw RX_WAKER clear, so it never held the slot.
            let unneeded = shared.rx_waker.with_mut(|p| unsafe { (*p).take() });
            self.local(|l| l.registered = None);
            drop((old, unneeded));
            return Polled::Ready(self.outcome(prev));
        }
        self.local(|l| l.registered = Some(new_id));
        drop(old);
        Polled::Registered
    }
}

/// What [`Receiver::poll_once`] found.
pub(crate) enum Polled<T> {
    /// The round's outcome.
    Ready(Result<T, RecvError>),
    /// The waker is registered: the sender will wake it.
    Registered,
    /// An earlier round's sender still holds the waker slot; nobody will
    /// wake this poll, so the caller must look again by itself.
    Held,
}

/// How a blocking receive waits while an earlier round's sender holds the
/// waker slot. That sender is past its publishing RMW and only has its
/// release left, so the wait normally ends within the holder's next time
/// slice; but its release wakes nobody in the new round. So: re-check while
/// the receiver's [`SpinPolicy`](sync_core::SpinPolicy) allows a spin, then
/// nap on the thread's parker for 10 µs, doubling up to 1 ms. Bounded CPU
/// whatever the scheduler does; never parks without a time-out on this path.
struct HeldWait {
    nap: Duration,
}

impl HeldWait {
    const FIRST_NAP: Duration = Duration::from_micros(10);
    const LONGEST_NAP: Duration = Duration::from_millis(1);

    fn new() -> Self {
        HeldWait {
            nap: Self::FIRST_NAP,
        }
    }

    /// Waits a little for the hold on `shared` to end, never past
    /// `deadline`.
    fn wait<T>(
        &mut self,
        shared: &Inner<T>,
        parker: &sync_core::Parker,
        deadline: Option<Instant>,
    ) {
        #[cfg(all(test, not(loom)))]
        tests::HELD_WAITS.with(|n| n.set(n.get() + 1));
        let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
        if left == Some(Duration::ZERO) {
            return; // `recv_timeout(ZERO)` only looks, also here
        }
        let held = || earlier_sender_holds(shared.state.load(Ordering::Acquire));
        // As in `wait`: a spin must fit before the deadline.
        let hints = SpinHints {
            time_left: left,
            ..SpinHints::default()
        };
        if shared.rx_spin.spin_with(hints, || !held()) {
            return;
        }
        let until = Instant::now() + self.nap;
        self.nap = (self.nap * 2).min(Self::LONGEST_NAP);
        // A notification only means "look again", like a nap's end.
        let _notified = parker.park_deadline(deadline.map_or(until, |d| d.min(until)));
    }
}

fn far_future() -> Instant {
    // About 30 years: "never" for a time-out that overflowed `Instant`.
    Instant::now() + Duration::from_secs(60 * 60 * 24 * 365 * 30)
}

impl<T> Default for Receiver<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> Drop for Receiver<T> {
    /// Leaves the channel. A value sent but not received is dropped here,
    /// last, after the block was released: a payload whose `Drop` panics
    /// cannot leak the block or strand the sender.
    fn drop(&mut self) {
        let value_taken = self.value_taken();
        let inner = self.inner;
        let shared = self.shared();
        let Departure {
            prev,
            own_waker,
            unread,
        } = leave(inner, value_taken);
        // From here on `shared` is used only inside the branches whose
        // state says the block is still ours.
        let sender_alive = prev & TX_DONE == 0;
        let mut closed_waker = None;
        if sender_alive && prev & TX_WAKER != 0 {
            // The sender waits in `closed()`: we now hold tx_waker. Move the
            // waker out and release the slot; wake it below.
            // SAFETY: TX_WAKER was set while the sender was alive when we set
            // RX_GONE, so the sender will not touch tx_waker again.
            closed_waker = shared.tx_waker.with_mut(|p| unsafe { (*p).take() });
            // TX_WAKER is set (we hold the slot): a subtraction clears it.
            let prev = shared.state.fetch_sub(TX_WAKER, Ordering::AcqRel);
            debug_assert_ne!(prev & TX_WAKER, 0, "tx_waker released twice");
            if prev & TX_DONE != 0 && !earlier_sender_holds(prev) {
                // SAFETY: the sender finished while we held the slot (it saw
                // our hold and left the block to us) and no earlier sender
                // holds rx_waker: we are the last owner.
                unsafe { Inner::free(inner) };
            }
        } else if !sender_alive && prev & RX_WAKER == 0 {
            // With the sender done, RX_WAKER means a sender (this round's
            // or, under HOLD, an earlier one) holds rx_waker: it frees on
            // release. A HOLD without RX_WAKER is stale.
            // SAFETY: no sender is alive and none holds a slot: last owner.
            unsafe { Inner::free(inner) };
        }
        // Foreign code, now that the block needs nothing more from us.
        if let Some(w) = closed_waker {
            crate::inner::wake_peer(w);
        }
        drop((own_waker, unread));
    }
}

/// What the receiver takes with it when it leaves.
struct Departure<T> {
    /// The state word just before `RX_GONE` was set (with `RX_WAKER` and
    /// `VALUE` as the receiver left them: its own registration taken back,
    /// the value taken out).
    prev: usize,
    /// This round's registered waker, taken back from `rx_waker`.
    own_waker: Option<Waker>,
    /// A value that was sent but never received.
    unread: Option<T>,
}

/// The receiver's departure: sets `RX_GONE`, after emptying the block of
/// everything that is the receiver's, because from that RMW on another
/// party may free the block (a finished sender still releasing `rx_waker`
/// frees it on its release). So, before `RX_GONE` and in the same
/// compare-exchange loop:
///
/// - this round's registration, if the sender has not finished, is won back
///   (its waker is dropped by the receiver: a panicking drop unwinds out of
///   the receiver's drop, never out of a later `send`, which would then lose
///   its value);
/// - a value that was sent but not received is moved out, and `VALUE` is
///   cleared with `RX_GONE` (so `VALUE` with `RX_GONE` only ever means "a
///   sender published after the receiver left and takes its value back").
///
/// The loop retries only when the sender or an earlier holder changed the
/// word in between (each does so at most twice a round): lock-free, with a
/// bounded number of retries.
///
/// Takes a pointer, not a reference: a reference argument would have to
/// stay valid for the whole call, and the block may be freed before this
/// returns.
fn leave<T>(inner: NonNull<Inner<T>>, value_taken: bool) -> Departure<T> {
    // SAFETY: the receiver co-owns the block until its RMW below sets
    // RX_GONE; this reference is not used after that RMW.
    let shared = unsafe { inner.as_ref() };
    let mut state = shared.state.load(Ordering::Acquire);
    let mut own_waker = None;
    let mut unread = None;
    loop {
        if this_rounds_waker(state) && state & TX_DONE == 0 {
            match shared.state.compare_exchange_weak(
                state,
                state & !RX_WAKER,
                Ordering::Acquire,
                Ordering::Acquire,
            ) {
                Ok(_) => {
                    // SAFETY: we cleared RX_WAKER while the sender was alive,
                    // so the sender never takes this slot: it is ours again.
                    own_waker = shared.rx_waker.with_mut(|p| unsafe { (*p).take() });
                    state &= !RX_WAKER;
                }
                Err(actual) => state = actual,
            }
            continue;
        }
        if state & (VALUE | TX_DONE) == VALUE | TX_DONE && !value_taken && unread.is_none() {
            unread = Some(shared.value.with_mut(|p| {
                // SAFETY: VALUE was published (acquired above) by the sender,
                // which is done with the slot; RX_GONE is not set yet, so
                // nobody frees the block; read once (`unread` was empty).
                unsafe { (*p).assume_init_read() }
            }));
        }
        // RX_GONE is set once, here, so the add is exact; VALUE (if set)
        // is cleared: the value, if any, is out of the block by now.
        match shared.state.compare_exchange_weak(
            state,
            (state + RX_GONE) & !VALUE,
            Ordering::AcqRel,
            Ordering::Acquire,
        ) {
            Ok(_) => {
                return Departure {
                    prev: state & !VALUE,
                    own_waker,
                    unread,
                };
            }
            Err(actual) => state = actual,
        }
    }
}

impl<T> fmt::Debug for Receiver<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.shared().state.load(Ordering::Acquire);
        f.debug_struct("Receiver")
            .field("closed", &(state & TX_DONE != 0))
            .field("has_value", &(state & VALUE != 0 && !self.value_taken()))
            .field("waker_registered", &this_rounds_waker(state))
            .field("state", &Decoded(state))
            .finish()
    }
}

/// Future returned by [`Receiver::recv`].
///
/// `Unpin`, fused, cancel-safe. Lock-free: in one rare case (an earlier
/// round's sender was preempted between its two atomic operations while the
/// receiver is polled in a later round) it cannot register its waker. If
/// the waker that sender holds is the polling waker itself (the usual case:
/// the same task receives round after round), that sender's wake reaches it
/// and the poll just returns `Pending`; otherwise it wakes itself so the
/// executor polls it again.
#[must_use = "futures do nothing unless polled"]
pub struct Recv<'a, T> {
    receiver: &'a mut Receiver<T>,
}

impl<T> Future for Recv<'_, T> {
    type Output = Result<T, RecvError>;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.receiver.poll_once(cx.waker()) {
            Polled::Ready(out) => Poll::Ready(out),
            Polled::Registered => Poll::Pending,
            Polled::Held => {
                // Ask to be polled again after letting the holder run.
                hint::spin_loop();
                cx.waker().wake_by_ref();
                Poll::Pending
            }
        }
    }
}

impl<T> fmt::Debug for Recv<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Recv")
            .field("receiver", &self.receiver)
            .finish()
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::channel;

    std::thread_local! {
        /// How many times a blocking receive on this thread waited on a
        /// held slot.
        pub(super) static HELD_WAITS: core::cell::Cell<usize> = const { core::cell::Cell::new(0) };
    }

    /// The block, movable to the thread that plays the preempted sender.
    struct Block(NonNull<Inner<u32>>);
    // SAFETY: the test keeps the block alive (the receiver outlives the
    // thread) and only touches the state word from the other thread.
    unsafe impl Send for Block {}

    /// An earlier round's sender stays preempted between its publish and
    /// its release while the receiver blocks in the next round: the receive
    /// waits it out with a bounded number of looks (a spin budget, then
    /// naps), instead of re-polling in a loop for as long as the hold lasts.
    #[test]
    fn a_held_slot_is_waited_out_with_a_bounded_number_of_looks() {
        let _w = testkit::watchdog("a_held_slot_is_waited_out_with_a_bounded_number_of_looks");
        let (s, mut r) = channel::<u32>();
        let noop = Waker::noop();
        assert!(matches!(r.poll_once(noop), Polled::Registered));
        // Play the sender up to its publish: write, publish, take the waker,
        // and stop there (preempted before the release).
        let shared = r.shared();
        let block = Block(r.inner);
        core::mem::forget(s);
        // SAFETY: we play the live sender: the slot is ours until the publish.
        shared.value.with_mut(|p| unsafe { (*p).write(1) });
        shared.state.fetch_add(VALUE | TX_DONE, Ordering::AcqRel);
        // SAFETY: the publish handed the registered slot to "the sender".
        drop(shared.rx_waker.with_mut(|p| unsafe { (*p).take() }));
        assert_eq!(r.try_recv(), Ok(1));
        let s2 = r.sender().expect("recycling never waits");
        let hold = Duration::from_millis(if cfg!(miri) { 5 } else { 100 });
        let sender = std::thread::spawn(move || {
            let block = block;
            std::thread::sleep(hold);
            // SAFETY: the receiver is alive until this thread is joined.
            let state = &unsafe { block.0.as_ref() }.state;
            state.fetch_sub(RX_WAKER, Ordering::AcqRel); // the late release
            s2.send(2).unwrap();
        });
        HELD_WAITS.with(|n| n.set(0));
        assert_eq!(r.recv_blocking(), Ok(2));
        let looks = HELD_WAITS.with(|n| n.get());
        sender.join().unwrap();
        // Spin budget (11) + naps of 10 µs doubling to 1 ms: about 110 for
        // a 100 ms hold. A loop that re-polls would count millions.
        // (Miri's virtual clock may let the 5 ms hold end before the
        // receive looks at all.)
        assert!(
            looks > 0 || cfg!(miri),
            "the receive did meet the held slot"
        );
        assert!(looks < 1_000, "{looks} looks while the slot was held");
    }

    /// The same hold, but the waker the earlier sender holds is this
    /// thread's own parker waker (the previous round was a blocking receive
    /// on this thread too): its wake after the release reaches us, so the
    /// receive parks like a registered one and never naps or spins on the
    /// hold. The holder's wake is what ends the wait.
    #[test]
    fn a_hold_on_our_own_waker_is_waited_out_by_parking() {
        let _w = testkit::watchdog("a_hold_on_our_own_waker_is_waited_out_by_parking");
        let (s, mut r) = channel::<u32>();
        let registered =
            with_thread_parker(|p| matches!(r.poll_once(&p.waker()), Polled::Registered));
        assert!(registered);
        let shared = r.shared();
        let block = Block(r.inner);
        core::mem::forget(s);
        // SAFETY: we play the live sender: the slot is ours until the publish.
        shared.value.with_mut(|p| unsafe { (*p).write(1) });
        shared.state.fetch_add(VALUE | TX_DONE, Ordering::AcqRel);
        // SAFETY: the publish handed the registered slot to "the sender".
        let held = shared
            .rx_waker
            .with_mut(|p| unsafe { (*p).take() })
            .unwrap();
        assert_eq!(r.try_recv(), Ok(1));
        let s2 = r.sender().expect("recycling never waits");
        let hold = Duration::from_millis(if cfg!(miri) { 5 } else { 50 });
        let sender = std::thread::spawn(move || {
            let block = block;
            std::thread::sleep(hold);
            // SAFETY: the receiver is alive until this thread is joined.
            let state = &unsafe { block.0.as_ref() }.state;
            state.fetch_sub(RX_WAKER, Ordering::AcqRel); // the late release
            held.wake(); // ... and the wake that follows it
            std::thread::sleep(hold);
            s2.send(2).unwrap();
        });
        HELD_WAITS.with(|n| n.set(0));
        assert_eq!(r.recv_blocking(), Ok(2));
        sender.join().unwrap();
        assert_eq!(
            HELD_WAITS.with(|n| n.get()),
            0,
            "no nap, no spin on our own hold"
        );
    }
}
