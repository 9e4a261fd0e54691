//! The shared block and its state word: the whole protocol lives here.
//!
//! # How it works
//!
//! A channel is one heap block, allocated by [`channel`](crate::channel) (or
//! [`Receiver::new`](crate::Receiver::new)) and freed by whichever party
//! leaves last. It holds the value slot, one waker slot per side, a few bits
//! of receiver-private bookkeeping, and one atomic state word:
//!
//! | bit        | set by   | meaning |
//! |------------|----------|---------|
//! | `RX_WAKER` | receiver | the receiver's waker is in `rx_waker`; once this round's sender finished, the slot is that sender's; with `HOLD`, an earlier sender's |
//! | `VALUE`    | sender   | a value was published in `value` |
//! | `TX_DONE`  | sender   | there is no live sender: it sent, was dropped, or none was made yet |
//! | `RX_GONE`  | receiver | the receiver was dropped |
//! | `TX_WAKER` | sender   | the sender's [`closed`](crate::Sender::closed) waker is in `tx_waker` |
//! | `HOLD`     | receiver | if `RX_WAKER` is set, a sender of an *earlier* round holds `rx_waker`; alone, stale (see recycling) |
//!
//! ## One round
//!
//! A round is one sender's life. The sender writes the value into the slot
//! (nobody else touches the slot while `TX_DONE` is clear), then publishes
//! with a single `fetch_add(VALUE | TX_DONE)`. That read-modify-write both
//! publishes and, in the value it returns, tells the sender everything it must
//! still do:
//!
//! - `RX_GONE` set: nobody will read the value; the sender takes it back
//!   (returned in [`SendError`](crate::SendError)) and frees the block if it
//!   is the last owner.
//! - `RX_WAKER` clear: nobody is waiting. **Done in one RMW**; the sender never
//!   touches the block again.
//! - `RX_WAKER` set: the receiver is (or was) waiting and the publishing RMW
//!   has, in the same instant, transferred the waker slot to the sender. The
//!   sender moves the waker out, then releases the slot with a second RMW,
//!   `fetch_sub(RX_WAKER)`, and only then wakes it. **Two RMWs.**
//!
//! Both are arithmetic RMWs, never compare-and-swap loops, so a send
//! is wait-free apart from the waker's own `wake`. (One exception: a sender
//! that ever polled [`closed`](crate::Sender::closed) first wins `tx_waker`
//! back with a compare-exchange, which retries only while the receiver
//! changes the word at the same moment: lock-free, not wait-free.)
//!
//! ## Why the receiver's waker is taken out by the sender under a hold, and
//! ## why the wake comes last
//!
//! The natural order, "publish, then read the waker slot and wake", is a
//! use-after-free in a reusable channel: the instant the value is published,
//! the receiver may take it, recycle the channel and register a *new* waker
//! in the same slot (or drop the receiver and free the block) while the old
//! sender is still reading the slot. Reading the waker *before* publishing
//! does not help either: the receiver may register between that read and the
//! publish, and then nobody wakes it. So the publish itself carries the slot
//! over: while `RX_WAKER` and `TX_DONE` are both set without `HOLD`, the
//! slot belongs to this round's sender, and while `RX_WAKER` and `HOLD` are
//! set, to an earlier round's sender (see recycling); either way the
//! receiver keeps its hands off it. The sender takes the waker **out** of the
//! block into its own stack, releases the slot, and wakes from its own copy.
//! After the release it touches nothing of the block, except to free it when
//! it observes it was the last owner. Waking *after* the release (not before)
//! means the woken task normally finds the slot already free, so it can
//! recycle and register again without ever meeting a held slot.
//!
//! ## The receiver
//!
//! Polling loads the word once. If `TX_DONE` is set, the outcome is known:
//! the value (read without any RMW) or [`RecvError`](crate::RecvError). If the
//! sender is alive and the waker already registered is the caller's (same
//! data pointer and vtable as the *stored clone*, remembered in
//! receiver-private memory because the slot itself may be in the sender's
//! hands), the poll returns `Pending` after that **single load: no RMW, no
//! clone**. The identity is the stored clone's, never the borrowed
//! waker's: a clone may have a new data pointer, and once the borrowed waker
//! is freed its address can come back as another task's waker, whose poll
//! would then wrongly skip registering (a lost wake-up). The stored clone
//! keeps its own address alive, so comparing against it is exactly
//! `Waker::will_wake` on the stored waker. Otherwise the receiver
//! registers: it stores a clone in `rx_waker` (which it owns while `RX_WAKER`
//! is clear) and sets `RX_WAKER` with `fetch_add`. If that RMW reveals that the
//! sender finished in the meantime, the sender never saw the waker: the
//! receiver clears the bit again and returns the outcome. To *replace* a
//! registered waker it must first win the slot back with a compare-exchange
//! that fails if the sender publishes first (then the outcome is ready
//! anyway). Registering costs one RMW; replacing costs two.
//!
//! ## Recycling is wait-free
//!
//! Once `TX_DONE` is set the old sender is finished with the value slot and
//! the state word, except for, at most, the release of a held waker slot.
//! [`Receiver::sender`](crate::Receiver::sender) therefore never waits. If
//! no slot is held (`RX_WAKER` clear), no other party can touch the word any
//! more, and a plain store resets it for the new round (no RMW at all). If a
//! sender holds the slot, its release may land at any moment; the receiver
//! knows every other bit exactly, so it resets them with **one `fetch_add`**
//! (clear `VALUE` and `TX_DONE`, set `HOLD`), which commutes with the
//! release. No compare-exchange, no retry.
//!
//! `HOLD` marks the `RX_WAKER` bit as belonging to an earlier round, so that
//! the new round's sender does not mistake it for a registration, and the
//! receiver does not register over it. The holder always releases with the
//! same `fetch_sub(RX_WAKER)`, whichever round the word is in by then: it
//! never needs to know whether the receiver recycled. After that release
//! `HOLD` is left behind, *stale*: `HOLD` without `RX_WAKER` means nothing,
//! and the receiver clears it for free, in the same add that registers its
//! next waker (`+RX_WAKER - HOLD`; only the receiver sets `RX_WAKER` or
//! touches `HOLD`, so it knows both bits), or in the next recycling store.
//! So the whole encoding is: `RX_WAKER | HOLD` = an earlier sender holds the
//! slot; `RX_WAKER` alone = this round's registration (handed to this
//! round's sender once `TX_DONE` is set). In the rare case that the receiver
//! polls in a new round while an earlier sender still holds the slot (it was
//! preempted between its two RMWs and the receiver was polled for some
//! other reason), it cannot register. If the waker that sender holds is the
//! polling waker itself (the receiver remembers the identity of what it
//! handed over; the holder has not released, so that waker is still alive
//! and its identity unambiguous), the holder's wake, which follows its
//! release, reaches the poller: the poll simply returns `Pending`. Otherwise
//! it yields and asks its executor to poll it again: lock-free, not
//! wait-free, documented on [`Recv`](crate::Recv).
//!
//! ## Foreign code runs last
//!
//! A waker's `clone`, `wake` and `drop` and a payload's `Drop` are foreign
//! code: they may panic (or re-enter). The rule everywhere in this crate:
//! clone before claiming a slot; move wakers and values *out* of the block;
//! publish the state change with the RMW; and only then wake or drop what
//! was moved out. An unwind from foreign code therefore always starts from
//! a consistent, published state: `send` has delivered its value before it
//! drops the `closed()` waker, a registration is published before the
//! replaced waker is dropped, recycling has made the new round before it
//! drops a stale waker, the receiver's drop has released (or freed) the
//! block before it drops an unread value, and freeing the block releases
//! its memory before the wakers left in it are dropped.
//!
//! ## The sender's `closed()` waker
//!
//! The mirror image, on the rare path: the sender stores its waker in
//! `tx_waker` and sets `TX_WAKER`; a receiver that drops while `TX_WAKER` is
//! set and the sender is alive takes the slot over, moves the waker out,
//! releases with `fetch_sub(TX_WAKER)` and wakes it. A sender about to
//! finish first wins its slot back with a compare-exchange (only if it ever
//! called `closed()`), so `TX_WAKER` together with `RX_GONE` always means
//! "the departing receiver holds `tx_waker`".
//!
//! ## Who frees the block
//!
//! Owners are: the receiver (until its drop, plus its hold on `tx_waker`),
//! the current sender (until its last RMW, plus its hold on `rx_waker`) and
//! at most one earlier sender holding `rx_waker` (`RX_WAKER | HOLD`). Every
//! party's last RMW returns the word as it was, from which it sees whether
//! any other owner remains; exactly one party sees none and frees.
//!
//! The rule that makes this sound: **a party touches the block after its
//! last RMW only if that RMW proved it still owns the block.** Two paths
//! broke it once (both found by making the free visible to loom, below):
//!
//! - The departing receiver used to set `RX_GONE` first and then drop an
//!   unread value still in the block, while a finished sender releasing
//!   `rx_waker` could free the block as soon as it saw `RX_GONE`. Now the
//!   receiver empties the block of everything that is its own (the value,
//!   this round's registration) *before* `RX_GONE`, in one compare-exchange
//!   loop that also clears `VALUE` ([`receiver::leave`](crate::receiver)).
//! - A sender whose publish found the receiver gone used to read its value
//!   back after that publish, while the receiver holding `tx_waker`, or an
//!   earlier sender holding `rx_waker`, could free the block on seeing
//!   `TX_DONE`. Now a sender that has already seen `RX_GONE` keeps its value
//!   out of the block, and one whose publish reveals `RX_GONE` is protected
//!   by `VALUE`: since a departing receiver clears `VALUE`, `VALUE | RX_GONE`
//!   means "a sender is taking its value back", and an earlier holder's
//!   release does not free then. The sender reads the value back and, if a
//!   holder is still there, gives the block up with `fetch_sub(VALUE)`;
//!   whichever of the two comes last frees.
//!
//! Under loom, [`Inner::free`] first writes every cell of the block
//! (`retire`), so an access by another party that is not ordered before the
//! free fails the model as a data race: loom cannot see memory being freed
//! by itself.
//!
//! ## Adds where an "or" is meant, and the layout
//!
//! Setting a bit that is known to be clear (the publish, a registration,
//! the receiver's departure) is written as `fetch_add`, clearing one known
//! to be set as `fetch_sub`: the same result, but on x86 a `fetch_or` /
//! `fetch_and` whose previous value is used compiles to a load followed by
//! a compare-exchange loop, while an add is a single `lock xadd` that can
//! neither retry nor fetch the line twice. Each such RMW `debug_assert`s the
//! bit it assumed. Every RMW on the message path (publish, release,
//! registration, recycling) is such an add; the encoding of `HOLD` above
//! exists so that the release can be one too.
//!
//! The fields every message touches on both sides (state word, receiver's
//! waker, value) come first and together. The block is *not* aligned to a
//! cache line: we measured that (64-byte alignment, receiver bookkeeping on
//! its own line) and found no gain in the two-thread ping-pong, while the
//! over-aligned allocation (`posix_memalign` instead of `malloc`) made
//! every fresh channel 3.5x slower (22 ns to 76 ns per cycle).
//!
//! Also measured and not kept: replacing `VALUE`/`TX_DONE` by a counter of
//! finished senders (compared with a receiver-private round start, the
//! bookkeeping moved a cache line away), so that the receiver never writes
//! the shared line between taking a value and registering again, and
//! recycling writes nothing at all. Against this design in the same process
//! (interleaved rounds of the two-thread task-style ping-pong) it was 1-4%
//! faster in some runs and 15% slower in one: no clear gain for a bigger
//! block and a subtler protocol. A round trip moves the same cache lines as
//! any oneshot channel does (value line out and back, the waker's line out
//! and back); what is left to win on that path is small.
//!
//! ## Cost per message, in atomic RMWs
//!
//! | operation | RMWs |
//! |---|---|
//! | `send`, receiver not waiting | 1 (`fetch_add`) |
//! | `send`, receiver waiting | 2 (`fetch_add`, `fetch_sub`) |
//! | poll, value already there | 0 |
//! | poll again with the same waker, no value | 0 (one load) |
//! | poll, first registration | 1 |
//! | poll, waker changed | 2 |
//! | `Receiver::sender` (recycle) | 0 (a store); 1 (`fetch_add`) if a sender still holds the waker slot |
//! | `try_recv`, `is_closed`, `has_value` | 0 |
//! | drop of a sender without sending | same as `send` |
//! | drop of the receiver | 1 compare-exchange, retried only if another party changed the word meanwhile (plus 1 to win its registration back if it was waiting, 1 if the sender waits in `closed()`) |
//! | `send` to a receiver that left | 1 (2 if an earlier sender still holds `rx_waker`) |

use core::mem::MaybeUninit;
use core::ptr::NonNull;
use core::task::{RawWakerVTable, Waker};
use sync_core::atomic::{AtomicUsize, Ordering};
use sync_core::cell::UnsafeCell;
use sync_core::{PeerCpu, SpinPolicy};

pub(crate) const RX_WAKER: usize = 1 << 0;
pub(crate) const VALUE: usize = 1 << 1;
pub(crate) const TX_DONE: usize = 1 << 2;
pub(crate) const RX_GONE: usize = 1 << 3;
pub(crate) const TX_WAKER: usize = 1 << 4;
pub(crate) const HOLD: usize = 1 << 5;

/// The identity of a registered waker: what `Waker::will_wake` compares.
/// (The vtable pointer is never null, which lets `Option<WakerId>` use it as
/// its niche and keeps [`RxLocal`] small.)
pub(crate) type WakerId = (*const (), NonNull<RawWakerVTable>);

/// Wakes the peer's waker on its owner's behalf. Normally a panic of the
/// waker reaches the caller (crate docs); but while this thread is already
/// unwinding (a handle dropped during a panic) a second panic would abort
/// the process, so there it is caught and dropped.
pub(crate) fn wake_peer(waker: Waker) {
    // Rules 2 and 3 of `sync_core::unwind` (the payload, and any payload of
    // its own drop's panic, is dropped there too).
    sync_core::unwind::wake(waker);
}

pub(crate) fn waker_id(w: &Waker) -> WakerId {
    (w.data(), NonNull::from(w.vtable()))
}

/// Whether `state` holds this round's registration of the receiver's waker
/// (handed to this round's sender once it finished), as opposed to an
/// earlier sender's hold ([`earlier_sender_holds`]).
pub(crate) fn this_rounds_waker(state: usize) -> bool {
    state & (RX_WAKER | HOLD) == RX_WAKER
}

/// Whether `state` says that a sender of an earlier round still holds
/// `rx_waker` (so the current round may not use the slot).
pub(crate) fn earlier_sender_holds(state: usize) -> bool {
    state & (RX_WAKER | HOLD) == RX_WAKER | HOLD
}

/// Bookkeeping only the receiver reads or writes.
#[derive(Default)]
pub(crate) struct RxLocal {
    /// The value of this round was already moved out.
    pub(crate) value_taken: bool,
    /// Identity of the waker in `rx_waker` while `RX_WAKER` is set.
    pub(crate) registered: Option<WakerId>,
    /// Identity of the waker an earlier round's sender still holds, while
    /// `earlier_sender_holds`: that sender wakes it right after its release.
    pub(crate) held: Option<WakerId>,
}

/// The shared block: the fields both sides touch for every message first
/// (state word, receiver's waker, value), then the receiver's private
/// bookkeeping, then the rarely used `closed()` waker. Deliberately *not*
/// over-aligned: see "the layout" in the module docs.
#[repr(C)]
pub(crate) struct Inner<T> {
    pub(crate) state: AtomicUsize,
    pub(crate) rx_waker: UnsafeCell<Option<Waker>>,
    pub(crate) value: UnsafeCell<MaybeUninit<T>>,
    pub(crate) rx: UnsafeCell<RxLocal>,
    /// How the blocking receive waits; kept across rounds (its history is
    /// the point), touched only by the receiver.
    pub(crate) rx_spin: SpinPolicy,
    /// Where the last sender ran when it sent: the blocking receive does
    /// not spin on its own CPU (`PeerCpu`).
    pub(crate) tx_cpu: PeerCpu,
    pub(crate) tx_waker: UnsafeCell<Option<Waker>>,
    /// Under loom a leaked block leaks this tracked `Arc`, which loom reports.
    #[cfg(loom)]
    _leak_canary: sync_core::sync::Arc<()>,
}

impl<T> Inner<T> {
    /// Allocates a block with the given initial state.
    pub(crate) fn allocate(state: usize) -> NonNull<Self> {
        let boxed = Box::new(Inner {
            state: AtomicUsize::new(state),
            value: UnsafeCell::new(MaybeUninit::uninit()),
            rx_waker: UnsafeCell::new(None),
            tx_waker: UnsafeCell::new(None),
            rx: UnsafeCell::new(RxLocal::default()),
            rx_spin: SpinPolicy::new(),
            tx_cpu: PeerCpu::new(),
            #[cfg(loom)]
            _leak_canary: sync_core::sync::Arc::new(()),
        });
        NonNull::from(Box::leak(boxed))
    }

    /// Frees the block. Does not drop a value in the slot (its owner does).
    ///
    /// Wakers still in the block are dropped *after* the memory is freed,
    /// so a waker whose `drop` panics cannot leak the block.
    ///
    /// # Safety
    ///
    /// `ptr` came from [`allocate`](Self::allocate) and the caller is the
    /// last owner: no other party will access the block again.
    pub(crate) unsafe fn free(ptr: NonNull<Self>) {
        // SAFETY: allocated by `Box::leak` in `allocate`; the caller is the
        // last owner, so this is the only reference.
        let block = unsafe { Box::from_raw(ptr.as_ptr()) };
        block.retire();
        drop(Self::into_wakers(block));
    }

    /// Tells the model checker that the block is about to be freed: a write
    /// access, from the freeing thread, to every cell in it. Loom does not
    /// see memory being freed; with this, an access by another party that
    /// is not ordered before the free (a use-after-free) fails the model.
    /// In the std build the closures do nothing and this compiles to
    /// nothing.
    fn retire(&self) {
        self.rx_waker.with_mut(|_| ());
        self.value.with_mut(|_| ());
        self.rx.with_mut(|_| ());
        self.tx_waker.with_mut(|_| ());
    }

    /// Frees the block's memory and returns the wakers that were in it.
    #[allow(clippy::boxed_local)] // the box is the point: its memory is freed here
    fn into_wakers(block: Box<Self>) -> (Option<Waker>, Option<Waker>) {
        let Inner {
            rx_waker, tx_waker, ..
        } = *block;
        (rx_waker.into_inner(), tx_waker.into_inner())
    }

    /// The sender's last act, shared by `send` and the sender's `Drop`:
    /// write `value` (if any) and publish `TX_DONE` (plus `VALUE`), wake the
    /// receiver if it handed over its waker, free the block if last.
    ///
    /// Returns the value if the receiver is gone.
    ///
    /// # Safety
    ///
    /// Called once per sender, by the live sender of the current round. The
    /// sender must not touch the block afterwards.
    pub(crate) unsafe fn finish_sender(ptr: NonNull<Self>, value: Option<T>) -> Option<T> {
        // SAFETY: a live sender co-owns the block; it stays allocated at
        // least until our final RMW below.
        let this = unsafe { ptr.as_ref() };
        // Foreign code (this waker's drop) runs only after the publish below:
        // a panic in it must not strand an unpublished value.
        let (closed_waker, seen) = this.reclaim_tx_waker();
        // A receiver already seen gone gets no value: keep it out of the
        // block, so that nothing has to be read back after the publish.
        let (flags, kept) = match value {
            Some(value) if seen & RX_GONE == 0 => {
                this.value.with_mut(|slot| {
                    // SAFETY: while the sender is live (TX_DONE clear) nobody
                    // else accesses the value slot: the receiver reads it
                    // only after it observes VALUE, set by the RMW below.
                    unsafe { (*slot).write(value) }
                });
                (VALUE | TX_DONE, None)
            }
            kept => (TX_DONE, kept),
        };
        if flags & VALUE != 0 {
            // Before the publish: afterwards the block may be the receiver's
            // to recycle or free.
            this.tx_cpu.note();
        }
        // An add, not an or: both bits are clear while a sender is live, so
        // the two agree, and `fetch_add` is one `lock xadd` on x86 where a
        // `fetch_or` whose result is used becomes a compare-exchange loop.
        let prev = this.state.fetch_add(flags, Ordering::AcqRel);
        debug_assert_eq!(prev & flags, 0, "publish bits set before the publish");

        if prev & RX_GONE != 0 {
            // The receiver left (without holding tx_waker: if it held it, we
            // saw RX_GONE above and published no value; and TX_WAKER is ours
            // otherwise, cleared by the reclaim). A departing receiver clears
            // VALUE, so VALUE with RX_GONE now means "a value is in the
            // block and its sender will take it back": an earlier sender
            // holding rx_waker does not free the block then.
            let value = if flags & VALUE == 0 {
                kept
            } else {
                // SAFETY: we wrote the slot; the receiver left before our
                // publish, so it never reads it; VALUE keeps the block alive.
                let back = this.value.with_mut(|p| unsafe { (*p).assume_init_read() });
                if earlier_sender_holds(prev) {
                    // Give the block up: the value is out. Whoever of us
                    // and the holder comes last frees it.
                    let prev = this.state.fetch_sub(VALUE, Ordering::AcqRel);
                    if !earlier_sender_holds(prev) {
                        // SAFETY: the holder released before our RMW (it saw
                        // VALUE and left the block to us); nobody else owns it.
                        unsafe { Self::free(ptr) };
                    }
                    drop(closed_waker);
                    return Some(back);
                }
                Some(back)
            };
            // Other owners: an earlier sender holding rx_waker, or the
            // departing receiver holding tx_waker (TX_WAKER with RX_GONE).
            // (RX_WAKER without HOLD cannot be set here: a departing
            // receiver takes its own registration back before it sets
            // RX_GONE, see `receiver::leave`.)
            if !earlier_sender_holds(prev) && prev & TX_WAKER == 0 {
                // SAFETY: the receiver is gone and nobody holds a slot.
                unsafe { Self::free(ptr) };
            }
            // If this drop panics the value is dropped with the unwind:
            // once, never leaked.
            drop(closed_waker);
            return value;
        }
        debug_assert!(kept.is_none(), "a value kept back from a live receiver");
        // A value went to a receiver with no waker registered: it is
        // running, so this thread's next blocking receive (its reply, in a
        // ping-pong) may spin. (A sender dropped without a value informs
        // nothing.)
        if flags & VALUE != 0 {
            crate::peer_hint::note_send(!this_rounds_waker(prev));
        }
        if this_rounds_waker(prev) {
            // Our publish took over rx_waker: move the waker out, release.
            // SAFETY: RX_WAKER without HOLD, together with our TX_DONE, gives
            // the slot to us until the release below; the receiver does not
            // touch it then.
            let waker = this.rx_waker.with_mut(|p| unsafe { (*p).take() });
            Self::release_rx_waker(ptr);
            if let Some(w) = waker {
                wake_peer(w);
            }
        }
        drop(closed_waker);
        None
    }

    /// Gives `rx_waker` back after a sender (of this round, or of an earlier
    /// one if the receiver recycled in the meantime) moved the waker out;
    /// frees the block if last.
    fn release_rx_waker(ptr: NonNull<Self>) {
        // The holder is the only party that clears RX_WAKER while it is
        // held, so this is always the same subtraction, whatever round the
        // word is in by now: one `lock xadd`, no retry.
        // SAFETY: we hold the slot, hence co-own the block until this RMW.
        let prev = unsafe { ptr.as_ref() }
            .state
            .fetch_sub(RX_WAKER, Ordering::AcqRel);
        debug_assert_ne!(prev & RX_WAKER, 0, "rx_waker released twice");
        let receiver_gone = prev & RX_GONE != 0;
        let sender_done = prev & TX_DONE != 0;
        let receiver_holds_tx = prev & TX_WAKER != 0;
        // VALUE with RX_GONE: the current sender is taking its value back
        // and frees the block itself (see `finish_sender`).
        let sender_reads_back = prev & VALUE != 0;
        if receiver_gone && sender_done && !receiver_holds_tx && !sender_reads_back {
            // SAFETY: every other owner is gone: the receiver left without
            // holding tx_waker, and the current round's sender is done with
            // the block.
            unsafe { Self::free(ptr) };
        }
    }

    /// Before its last RMW, a sender that registered a `closed()` waker wins
    /// `tx_waker` back (unless the departing receiver already took it) and
    /// moves the waker out, so that `TX_WAKER` with `RX_GONE` keeps meaning
    /// "the receiver holds tx_waker". The caller drops the waker after its
    /// publishing RMW. Also returns the last state word seen (its `RX_GONE`
    /// is final once set). One load when `closed()` was never used.
    #[must_use = "drop the waker after publishing, not before"]
    fn reclaim_tx_waker(&self) -> (Option<Waker>, usize) {
        let mut state = self.state.load(Ordering::Acquire);
        while state & TX_WAKER != 0 && state & RX_GONE == 0 {
            match self.state.compare_exchange_weak(
                state,
                state & !TX_WAKER,
                Ordering::Acquire,
                Ordering::Acquire,
            ) {
                Ok(_) => {
                    // SAFETY: with TX_WAKER cleared and RX_GONE clear, the
                    // receiver will not take tx_waker; it is the sender's.
                    let waker = self.tx_waker.with_mut(|p| unsafe { (*p).take() });
                    return (waker, state & !TX_WAKER);
                }
                Err(actual) => state = actual,
            }
        }
        (None, state)
    }
}

/// Decodes a state word for `Debug` output.
pub(crate) struct Decoded(pub(crate) usize);

impl core::fmt::Debug for Decoded {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let s = self.0;
        let mut list = f.debug_set();
        list.entry(&format_args!(
            "{}",
            if s & TX_DONE == 0 {
                "sender alive"
            } else {
                "sender gone"
            }
        ));
        list.entry(&format_args!(
            "{}",
            if s & RX_GONE == 0 {
                "receiver alive"
            } else {
                "receiver gone"
            }
        ));
        if s & VALUE != 0 {
            list.entry(&format_args!("value published"));
        }
        if this_rounds_waker(s) {
            list.entry(&format_args!("receiver waker registered"));
        }
        if s & TX_WAKER != 0 {
            list.entry(&format_args!("sender waker registered"));
        }
        if earlier_sender_holds(s) {
            list.entry(&format_args!("earlier sender holds waker slot"));
        }
        list.finish()
    }
}

#[cfg(all(test, not(loom)))]
mod layout {
    use super::*;
    use core::mem::{align_of, offset_of};

    /// What the layout comment on [`Inner`] promises: the shared hot
    /// fields first and adjacent, and no over-alignment (which would turn
    /// every fresh channel's allocation into a slow aligned one).
    #[test]
    fn hot_fields_first_and_no_over_alignment() {
        type Small = Inner<(u64, usize)>;
        assert!(align_of::<Small>() <= 16);
        assert_eq!(offset_of!(Small, state), 0);
        assert_eq!(offset_of!(Small, rx_waker), 8);
        assert_eq!(offset_of!(Small, value), 24);
        assert!(offset_of!(Small, rx) >= 40);
    }
}
