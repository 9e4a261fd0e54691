//! The ticket table: one slot per registered token, found by token in O(1),
//! and the FIFO of waiting slots, in O(1) per operation.
//!
//! Plain data, no synchronisation: the stage keeps it behind its mutex.
//!
//! # Why not a `HashMap<T, Slot>`
//!
//! The contract asks only `T: Hash + Eq` of a token, not `Clone`, so the token
//! can be stored once. It lives in its slot; the map goes from the token's
//! 64-bit hash to the first slot with that hash, and slots with the same hash
//! (a collision) are chained. A lookup hashes the token once, outside the
//! lock (the stage keeps the hasher), and compares tokens along a chain
//! that is one slot long unless two tokens' hashes collide.
//!
//! The FIFO is a doubly linked list threaded through the slots, so a waiter
//! that leaves early (timed out, notified, cancelled) unlinks in O(1): the
//! original crate scanned every waiter on every operation.
//!
//! # Idle followers
//!
//! A follower that has waited while two rounds of items went by (two
//! notifications or deliveries per registered ticket, to anyone) is *idle*:
//! its token gets no traffic now (a peer that went quiet). Since the FIFO is
//! in the order of waiting, the idle followers are always a prefix of it;
//! the table keeps the prefix's length and its last slot, advanced when
//! asked ([`idle_followers`](Table::idle_followers)) and shortened when one
//! of them leaves, so the count costs O(1) amortised, not a scan. The mark
//! is sticky: once counted idle, a follower stays idle until it leaves the
//! FIFO, even if tickets registered afterwards raise the threshold (nothing
//! was sent to it meanwhile, which is what the mark is about; re-checking
//! would cost a walk back over the prefix on every registration). The stage
//! uses it to tell the owners that compete for the CPUs from those that
//! sleep until their peer speaks again (see `Stage::wait_queued` and
//! `HeadGuard::lend_unless_all_wait`).

use std::collections::HashMap;
use std::collections::VecDeque;
use std::hash::Hash;
use std::task::Waker;

use crate::gate::Watch;

/// Index of a slot in the table. Stable while its ticket lives.
pub(crate) type SlotId = usize;

/// How a wait ended, decided under the lock by whoever ended it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Resolution {
    /// A notification (or a delivered message) for this slot's token;
    /// `bare` if a notification without a message was among them (a
    /// delivered message stays in the inbox, which says so by itself).
    Notified { bare: bool },
    /// The headship was handed to this slot.
    Head,
    /// The stage was closed.
    Closed,
}

/// Where a slot's owner stands.
#[derive(Debug)]
pub(crate) enum Wait {
    /// Not waiting (also while its owner heads the stage).
    Idle,
    /// In the FIFO, to be woken through `waker`: a task's (`task`, from
    /// `enter_async`) or a parked thread's.
    Queued {
        waker: Waker,
        task: bool,
        /// A blocking waiter's parker that a readable resource can wake
        /// (a stage that promotes when readable; see `gate.rs`).
        watch: Option<Watch>,
        prev: Option<SlotId>,
        next: Option<SlotId>,
        /// The table's item count when it joined the FIFO.
        since: u64,
        /// In the FIFO's idle prefix (see the module docs).
        idle: bool,
    },
    /// Out of the FIFO: the wait ended, its owner has not looked yet. The
    /// waker was taken by whoever resolved it, to be woken after the lock.
    Resolved(Resolution),
}

pub(crate) struct Slot<T, M> {
    /// `None` while the slot is free.
    token: Option<T>,
    hash: u64,
    /// Next slot with the same hash (collision chain), or next free slot.
    chain: Option<SlotId>,
    pub(crate) wait: Wait,
    /// A notification that arrived while the owner was not waiting.
    pub(crate) pending: bool,
    /// Messages delivered to this token (a stage with a mailbox).
    pub(crate) inbox: VecDeque<M>,
    /// Promoted (`Resolved(Head)`) but not woken: the resource is armed in
    /// its parker's watch, and the kernel wakes it when the resource is
    /// readable. Kept for whoever ends the promotion first (a notification,
    /// `close`), who wakes it.
    pub(crate) asleep: Option<Waker>,
    /// The watch the resource is armed in, for the owner to disarm when it
    /// next looks (whatever woke it).
    pub(crate) armed: Option<Watch>,
}

pub(crate) struct Table<T, M> {
    slots: Vec<Slot<T, M>>,
    by_hash: HashMap<u64, SlotId>,
    free: Option<SlotId>,
    first: Option<SlotId>,
    last: Option<SlotId>,
    registered: usize,
    queued: usize,
    queued_tasks: usize,
    /// Notifications and deliveries so far, to any slot (the clock that
    /// ages followers).
    items: u64,
    /// Length and last slot of the FIFO's idle prefix, as far as it was
    /// last advanced.
    idle: usize,
    idle_last: Option<SlotId>,
}

impl<T: Hash + Eq, M> Table<T, M> {
    pub(crate) fn new() -> Self {
        Self {
            slots: Vec::new(),
            by_hash: HashMap::new(),
            free: None,
            first: None,
            last: None,
            registered: 0,
            queued: 0,
            queued_tasks: 0,
            items: 0,
            idle: 0,
            idle_last: None,
        }
    }

    /// The slot registered for `token`. Runs `T::eq` (user code) but changes
    /// nothing, so a panicking `eq` leaves the table as it was.
    pub(crate) fn find(&self, token: &T, hash: u64) -> Option<SlotId> {
        let mut at = self.by_hash.get(&hash).copied();
        while let Some(id) = at {
            let slot = &self.slots[id];
            if slot.token.as_ref() == Some(token) {
                return Some(id);
            }
            at = slot.chain;
        }
        None
    }

    /// Registers `token`, which must not be registered (checked by the
    /// caller with [`find`](Self::find)). Reuses a free slot if there is one.
    pub(crate) fn insert(&mut self, token: T, hash: u64) -> SlotId {
        let chain = self.by_hash.get(&hash).copied();
        let slot = Slot {
            token: Some(token),
            hash,
            chain,
            wait: Wait::Idle,
            pending: false,
            inbox: VecDeque::new(),
            asleep: None,
            armed: None,
        };
        let id = match self.free {
            Some(id) => {
                self.free = self.slots[id].chain;
                self.slots[id] = slot;
                id
            }
            None => {
                self.slots.push(slot);
                self.slots.len() - 1
            }
        };
        self.by_hash.insert(hash, id);
        self.registered += 1;
        id
    }

    /// Unregisters a slot that is not queued. Returns its token and unread
    /// messages, for the caller to drop after the lock (user `Drop`s).
    pub(crate) fn remove(&mut self, id: SlotId) -> (T, VecDeque<M>) {
        debug_assert!(!matches!(self.slots[id].wait, Wait::Queued { .. }));
        let hash = self.slots[id].hash;
        let after = self.slots[id].chain;
        // Unlink from the collision chain.
        if self.by_hash.get(&hash) == Some(&id) {
            match after {
                Some(next) => {
                    self.by_hash.insert(hash, next);
                }
                None => {
                    self.by_hash.remove(&hash);
                }
            }
        } else {
            let mut at = self.by_hash.get(&hash).copied();
            while let Some(prev) = at {
                if self.slots[prev].chain == Some(id) {
                    self.slots[prev].chain = after;
                    break;
                }
                at = self.slots[prev].chain;
            }
        }
        let slot = &mut self.slots[id];
        let token = slot.token.take().expect("removing a free slot");
        let inbox = std::mem::take(&mut slot.inbox);
        debug_assert!(slot.asleep.is_none() && slot.armed.is_none());
        slot.wait = Wait::Idle;
        slot.pending = false;
        slot.chain = self.free;
        self.free = Some(id);
        self.registered -= 1;
        (token, inbox)
    }

    pub(crate) fn slot(&self, id: SlotId) -> &Slot<T, M> {
        &self.slots[id]
    }

    pub(crate) fn slot_mut(&mut self, id: SlotId) -> &mut Slot<T, M> {
        &mut self.slots[id]
    }

    /// Appends an idle slot to the FIFO, to be woken through `waker`.
    pub(crate) fn enqueue(&mut self, id: SlotId, waker: Waker, task: bool, watch: Option<Watch>) {
        debug_assert!(matches!(self.slots[id].wait, Wait::Idle));
        self.slots[id].wait = Wait::Queued {
            waker,
            task,
            watch,
            prev: self.last,
            next: None,
            since: self.items,
            idle: false,
        };
        self.queued_tasks += usize::from(task);
        match self.last {
            Some(last) => self.set_next(last, Some(id)),
            None => self.first = Some(id),
        }
        self.last = Some(id);
        self.queued += 1;
    }

    /// Makes an idle slot wait through `waker` (appended to the FIFO). A slot
    /// that already waits (its earlier future was leaked with `mem::forget`)
    /// keeps its place and gets the new waker; the old one is returned, to be
    /// dropped after the lock.
    pub(crate) fn wait_with(
        &mut self,
        id: SlotId,
        new: Waker,
        task: bool,
        watch: Option<Watch>,
    ) -> Option<Waker> {
        match &mut self.slots[id].wait {
            Wait::Queued {
                waker,
                task: was,
                watch: old,
                ..
            } => {
                *old = watch;
                let was = std::mem::replace(was, task);
                self.queued_tasks = self.queued_tasks - usize::from(was) + usize::from(task);
                Some(std::mem::replace(waker, new))
            }
            _ => {
                self.enqueue(id, new, task, watch);
                None
            }
        }
    }

    /// Takes a queued slot out of the FIFO and marks it resolved (or idle,
    /// with `None`). Returns its waker, to be woken or dropped after the lock.
    pub(crate) fn dequeue(&mut self, id: SlotId, to: Option<Resolution>) -> Waker {
        self.dequeue_watched(id, to).0
    }

    /// [`dequeue`](Self::dequeue), also returning the waiter's watch, if it
    /// has one (for a promotion that waits for the resource).
    pub(crate) fn dequeue_watched(
        &mut self,
        id: SlotId,
        to: Option<Resolution>,
    ) -> (Waker, Option<Watch>) {
        let new = match to {
            Some(r) => Wait::Resolved(r),
            None => Wait::Idle,
        };
        let Wait::Queued {
            waker,
            task,
            watch,
            prev,
            next,
            idle,
            ..
        } = std::mem::replace(&mut self.slots[id].wait, new)
        else {
            unreachable!("dequeue of a slot that is not queued");
        };
        self.queued_tasks -= usize::from(task);
        if idle {
            // Its predecessor, if any, is idle too: the prefix stays one.
            self.idle -= 1;
            if self.idle_last == Some(id) {
                self.idle_last = prev;
            }
        }
        match prev {
            Some(p) => self.set_next(p, next),
            None => self.first = next,
        }
        match next {
            Some(n) => self.set_prev(n, prev),
            None => self.last = prev,
        }
        self.queued -= 1;
        (waker, watch)
    }

    /// The longest-waiting slot.
    pub(crate) fn first_queued(&self) -> Option<SlotId> {
        self.first
    }

    /// Registered tokens.
    pub(crate) fn registered(&self) -> usize {
        self.registered
    }

    /// Slots in the FIFO.
    pub(crate) fn queued(&self) -> usize {
        self.queued
    }

    /// Slots in the FIFO that a task waits on (through `enter_async`).
    pub(crate) fn queued_tasks(&self) -> usize {
        self.queued_tasks
    }

    /// Counts a notification or delivery (to any slot): the clock by which
    /// followers become idle.
    pub(crate) fn note_item(&mut self) {
        self.items += 1;
    }

    /// Followers that have waited while two rounds of items went by (see
    /// the module docs): the first this many slots of the FIFO. Advances
    /// the idle prefix over the followers that have aged since it was last
    /// asked; amortised O(1).
    pub(crate) fn idle_followers(&mut self) -> usize {
        let rounds = 2 * self.registered as u64;
        loop {
            let next = match self.idle_last {
                Some(last) => match self.slots[last].wait {
                    Wait::Queued { next, .. } => next,
                    _ => unreachable!("the idle prefix ends at a slot that is not queued"),
                },
                None => self.first,
            };
            let Some(next) = next else { break };
            let Wait::Queued { since, idle, .. } = &mut self.slots[next].wait else {
                unreachable!("a FIFO link to a slot that is not queued");
            };
            if self.items - *since < rounds {
                break;
            }
            *idle = true;
            self.idle += 1;
            self.idle_last = Some(next);
        }
        self.idle
    }

    fn set_next(&mut self, id: SlotId, to: Option<SlotId>) {
        match &mut self.slots[id].wait {
            Wait::Queued { next, .. } => *next = to,
            _ => unreachable!("FIFO link to a slot that is not queued"),
        }
    }

    fn set_prev(&mut self, id: SlotId, to: Option<SlotId>) {
        match &mut self.slots[id].wait {
            Wait::Queued { prev, .. } => *prev = to,
            _ => unreachable!("FIFO link to a slot that is not queued"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::hash::{BuildHasher, RandomState};

    struct Hashed<T, M>(Table<T, M>, RandomState);
    impl<T: Hash + Eq, M> Hashed<T, M> {
        fn hash(&self, token: &T) -> u64 {
            self.1.hash_one(token)
        }
    }
    impl<T, M> std::ops::Deref for Hashed<T, M> {
        type Target = Table<T, M>;
        fn deref(&self) -> &Table<T, M> {
            &self.0
        }
    }
    impl<T, M> std::ops::DerefMut for Hashed<T, M> {
        fn deref_mut(&mut self) -> &mut Table<T, M> {
            &mut self.0
        }
    }
    fn table<T: Hash + Eq, M>() -> Hashed<T, M> {
        Hashed(Table::new(), RandomState::new())
    }

    /// A token whose hash is always the same: every token collides.
    #[derive(PartialEq, Eq, Debug)]
    struct Colliding(u32);
    impl Hash for Colliding {
        fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
            0u8.hash(state);
        }
    }

    fn noop() -> Waker {
        Waker::noop().clone()
    }

    #[test]
    fn colliding_tokens_are_found_and_removed_from_any_place_in_the_chain() {
        let mut t: Hashed<Colliding, ()> = table();
        let ids: Vec<SlotId> = (0..4)
            .map(|i| {
                let h = t.hash(&Colliding(i));
                t.insert(Colliding(i), h)
            })
            .collect();
        for i in 0..4u32 {
            let h = t.hash(&Colliding(i));
            assert_eq!(t.find(&Colliding(i), h), Some(ids[i as usize]));
        }
        // Middle, head and tail of the chain.
        for victim in [1u32, 3, 0] {
            let (tok, _) = t.remove(ids[victim as usize]);
            assert_eq!(tok, Colliding(victim));
            let h = t.hash(&Colliding(victim));
            assert_eq!(t.find(&Colliding(victim), h), None);
        }
        let h = t.hash(&Colliding(2));
        assert_eq!(t.find(&Colliding(2), h), Some(ids[2]));
        assert_eq!(t.registered(), 1);
        // Freed slots are reused.
        let h = t.hash(&Colliding(9));
        let again = t.insert(Colliding(9), h);
        assert!(ids.contains(&again));
        assert_eq!(t.find(&Colliding(9), h), Some(again));
    }

    #[test]
    fn the_fifo_keeps_order_and_unlinks_from_the_middle() {
        let mut t: Hashed<u32, ()> = table();
        let ids: Vec<SlotId> = (0..4)
            .map(|i| {
                let h = t.hash(&i);
                t.insert(i, h)
            })
            .collect();
        for &id in &ids {
            t.enqueue(id, noop(), false, None);
        }
        assert_eq!(t.queued(), 4);
        drop(t.dequeue(ids[1], None));
        drop(t.dequeue(ids[3], Some(Resolution::Notified { bare: true })));
        assert_eq!(t.first_queued(), Some(ids[0]));
        drop(t.dequeue(ids[0], Some(Resolution::Head)));
        assert_eq!(t.first_queued(), Some(ids[2]));
        drop(t.dequeue(ids[2], None));
        assert_eq!(t.first_queued(), None);
        assert_eq!(t.queued(), 0);
        assert!(matches!(
            t.slot(ids[3]).wait,
            Wait::Resolved(Resolution::Notified { .. })
        ));
        // Re-enqueue after leaving: goes to the back.
        t.slot_mut(ids[3]).wait = Wait::Idle;
        t.enqueue(ids[1], noop(), false, None);
        t.enqueue(ids[3], noop(), true, None);
        assert_eq!(t.first_queued(), Some(ids[1]));
        assert_eq!((t.queued(), t.queued_tasks()), (2, 1));
        // A new waker for a queued slot may change its kind.
        drop(t.wait_with(ids[1], noop(), true, None));
        assert_eq!(t.queued_tasks(), 2);
        drop(t.wait_with(ids[3], noop(), false, None));
        assert_eq!(t.queued_tasks(), 1);
        drop(t.dequeue(ids[1], None));
        drop(t.dequeue(ids[3], None));
        assert_eq!((t.queued(), t.queued_tasks()), (0, 0));
    }

    #[test]
    fn idle_followers_are_the_fifos_prefix_that_waited_two_rounds_of_items() {
        let mut t: Hashed<u32, ()> = table();
        let ids: Vec<SlotId> = (0..3)
            .map(|i| {
                let h = t.hash(&i);
                t.insert(i, h)
            })
            .collect();
        let items = |t: &mut Hashed<u32, ()>, n: usize| (0..n).for_each(|_| t.note_item());
        // Three tickets: a round is three items, idle after two.
        t.enqueue(ids[0], noop(), false, None);
        items(&mut t, 3);
        t.enqueue(ids[1], noop(), false, None);
        items(&mut t, 2);
        t.enqueue(ids[2], noop(), false, None);
        assert_eq!(t.idle_followers(), 0, "five items passed the first");
        items(&mut t, 1);
        assert_eq!(t.idle_followers(), 1, "six");
        items(&mut t, 3);
        assert_eq!(
            t.idle_followers(),
            2,
            "nine items passed the first, six the second"
        );
        // Leaving from inside the prefix, and from its end.
        drop(t.dequeue(ids[0], None));
        assert_eq!(t.idle_followers(), 1);
        drop(t.dequeue(ids[1], None));
        assert_eq!(t.idle_followers(), 0);
        // Back in the FIFO, a follower starts young, behind the others.
        t.enqueue(ids[1], noop(), false, None);
        t.enqueue(ids[0], noop(), false, None);
        items(&mut t, 2);
        assert_eq!(t.idle_followers(), 1, "the third has waited six items");
        items(&mut t, 4);
        assert_eq!(t.idle_followers(), 3);
        // The prefix's end leaves, and the prefix grows again past it.
        drop(t.dequeue(ids[0], None));
        t.enqueue(ids[0], noop(), false, None);
        assert_eq!(t.idle_followers(), 2);
        // A fourth ticket: two rounds are eight items now.
        let h = t.hash(&3);
        let fourth = t.insert(3, h);
        items(&mut t, 7);
        assert_eq!(t.idle_followers(), 2, "seven items passed the youngest");
        t.enqueue(fourth, noop(), false, None);
        items(&mut t, 1);
        assert_eq!(t.idle_followers(), 3);
        for id in [ids[2], ids[1], fourth, ids[0]] {
            drop(t.dequeue(id, None));
        }
        assert_eq!((t.queued(), t.idle_followers()), (0, 0));
    }
}
