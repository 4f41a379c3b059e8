//! The ready queues: one FIFO of runnable contexts per priority, plus a bitmap of the non-empty
//! priorities, as seL4 and Microkit keep them. Every operation is O(1) whatever the number of
//! contexts: the queues are doubly linked through per-context `next`/`prev` slots, and the
//! highest non-empty priority is found from four 64-bit words.
//!
//! ```text
//!   bitmap  ...0100...0010      (bit p set <=> queue p is non-empty)
//!   queue 200: head -> h -> tail
//!   queue 100: head -> k <-> p -> tail       (k runs; p is next when k's budget is used up)
//! ```
//!
//! The head of the highest non-empty queue is the context that runs. What goes where (head or
//! tail) is the kernel's policy (schedule.rs); this module only keeps the order. Every field is
//! zero when the queues are empty (a link stores its slot plus one), so an empty kernel is all
//! zeros.

use crate::domain::{ContextId, DomainId, MAX_DOMAINS, MAX_VCPUS};

/// Queues: one per `u8` priority (Microkit uses 0..=254).
const PRIORITIES: usize = 256;

/// One slot per possible context: a domain's contexts are numbered `domain * MAX_VCPUS + index`.
const SLOTS: usize = MAX_DOMAINS * MAX_VCPUS;

// A link stores a slot plus one in a `u8`, 0 meaning none.
const _: () = assert!(SLOTS < u8::MAX as usize, "context slots fit a u8 link");

/// A context's slot, if it can have one.
const fn slot(context: ContextId) -> Option<usize> {
    if (context.domain.0 as usize) < MAX_DOMAINS && (context.index as usize) < MAX_VCPUS {
        Some(context.domain.0 as usize * MAX_VCPUS + context.index as usize)
    } else {
        None
    }
}

/// The context of a (non-zero) link.
const fn context_of(link: u8) -> Option<ContextId> {
    match link.checked_sub(1) {
        Some(slot) => Some(ContextId {
            domain: DomainId(slot / MAX_VCPUS as u8),
            index: slot % MAX_VCPUS as u8,
        }),
        None => None,
    }
}

/// Per-priority FIFO queues of runnable contexts.
#[derive(Clone, Debug)]
pub struct ReadyQueues {
    head: [u8; PRIORITIES],
    tail: [u8; PRIORITIES],
    next: [u8; SLOTS],
    prev: [u8; SLOTS],
    /// The priority each queued context was queued at (so removal needs only the context).
    priority: [u8; SLOTS],
    /// Bit per slot: in some queue.
    queued: [u64; SLOTS.div_ceil(64)],
    /// Bit per priority: that queue is non-empty.
    bitmap: [u64; PRIORITIES / 64],
}

impl Default for ReadyQueues {
    fn default() -> Self {
        Self::new()
    }
}

impl ReadyQueues {
    /// Every queue empty.
    pub const fn new() -> Self {
        Self {
            head: [0; PRIORITIES],
            tail: [0; PRIORITIES],
            next: [0; SLOTS],
            prev: [0; SLOTS],
            priority: [0; SLOTS],
            queued: [0; SLOTS.div_ceil(64)],
            bitmap: [0; PRIORITIES / 64],
        }
    }

    /// Whether `context` is in a queue.
    pub const fn contains(&self, context: ContextId) -> bool {
        match slot(context) {
            Some(slot) => self.queued[slot / 64] & (1 << (slot % 64)) != 0,
            None => false,
        }
    }

    /// Appends `context` to the tail of queue `priority`; a context already queued, or one out
    /// of range, is left alone.
    pub fn push_back(&mut self, context: ContextId, priority: u8) {
        let Some(index) = slot(context) else {
            return;
        };
        if self.contains(context) {
            return;
        }
        let (link, queue) = (index as u8 + 1, usize::from(priority));
        let old_tail = self.tail[queue];
        self.prev[index] = old_tail;
        self.next[index] = 0;
        match old_tail {
            0 => self.head[queue] = link,
            tail => self.next[usize::from(tail - 1)] = link,
        }
        self.tail[queue] = link;
        self.mark(index, priority);
    }

    /// Puts `context` at the head of queue `priority`; a context already queued, or one out of
    /// range, is left alone.
    pub fn push_front(&mut self, context: ContextId, priority: u8) {
        let Some(index) = slot(context) else {
            return;
        };
        if self.contains(context) {
            return;
        }
        let (link, queue) = (index as u8 + 1, usize::from(priority));
        let old_head = self.head[queue];
        self.next[index] = old_head;
        self.prev[index] = 0;
        match old_head {
            0 => self.tail[queue] = link,
            head => self.prev[usize::from(head - 1)] = link,
        }
        self.head[queue] = link;
        self.mark(index, priority);
    }

    /// Takes `context` out of its queue (nothing happens if it is not queued).
    pub fn remove(&mut self, context: ContextId) {
        let Some(index) = slot(context) else {
            return;
        };
        if !self.contains(context) {
            return;
        }
        let queue = usize::from(self.priority[index]);
        let (prev, next) = (self.prev[index], self.next[index]);
        match prev {
            0 => self.head[queue] = next,
            prev => self.next[usize::from(prev - 1)] = next,
        }
        match next {
            0 => self.tail[queue] = prev,
            next => self.prev[usize::from(next - 1)] = prev,
        }
        self.next[index] = 0;
        self.prev[index] = 0;
        self.queued[index / 64] &= !(1 << (index % 64));
        if self.head[queue] == 0 {
            self.bitmap[queue / 64] &= !(1 << (queue % 64));
        }
    }

    /// Moves a queued `context` to the tail of its queue (its slice is used up, or it yielded).
    pub fn move_to_back(&mut self, context: ContextId) {
        if let Some(index) = slot(context).filter(|_| self.contains(context)) {
            let priority = self.priority[index];
            self.remove(context);
            self.push_back(context, priority);
        }
    }

    /// The head of the highest non-empty queue: the context that should run.
    pub fn first(&self) -> Option<ContextId> {
        let (word, bits) = self
            .bitmap
            .iter()
            .enumerate()
            .rev()
            .find(|(_, bits)| **bits != 0)?;
        let queue = word * 64 + (63 - bits.leading_zeros() as usize);
        context_of(self.head[queue])
    }

    /// The contexts queued at `priority`, head first (tests and diagnostics).
    pub fn queue(&self, priority: u8) -> impl Iterator<Item = ContextId> + '_ {
        let mut at = self.head[usize::from(priority)];
        // Bounded by the number of slots even if the links were ever wrong.
        (0..SLOTS).map_while(move |_| {
            let context = context_of(at)?;
            at = self.next.get(usize::from(at - 1)).copied().unwrap_or(0);
            Some(context)
        })
    }

    fn mark(&mut self, index: usize, priority: u8) {
        let queue = usize::from(priority);
        self.priority[index] = priority;
        self.queued[index / 64] |= 1 << (index % 64);
        self.bitmap[queue / 64] |= 1 << (queue % 64);
    }
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    reason = "a test fails loudly on an unexpected error"
)]
mod tests {
    extern crate std;
    use std::vec::Vec;

    use proptest::prelude::*;

    use super::*;

    const fn pd(domain: u8) -> ContextId {
        ContextId::pd(DomainId(domain))
    }

    fn order(queues: &ReadyQueues, priority: u8) -> Vec<u8> {
        queues.queue(priority).map(|d| d.domain.0).collect()
    }

    #[test]
    fn the_head_of_the_highest_queue_runs_and_each_queue_is_fifo() {
        let mut queues = ReadyQueues::new();
        assert_eq!(queues.first(), None);
        queues.push_back(pd(3), 10);
        queues.push_back(pd(1), 10);
        queues.push_back(pd(2), 200);
        queues.push_front(pd(0), 10);
        assert_eq!(queues.first(), Some(pd(2)));
        assert_eq!(order(&queues, 10), [0, 3, 1]);
        queues.remove(pd(2));
        assert_eq!(queues.first(), Some(pd(0)));
        queues.move_to_back(pd(0));
        assert_eq!(order(&queues, 10), [3, 1, 0]);
        queues.remove(pd(1));
        assert_eq!(order(&queues, 10), [3, 0]);
        // Queuing twice changes nothing; removing an absent domain changes nothing.
        queues.push_back(pd(3), 10);
        queues.remove(pd(5));
        assert_eq!(order(&queues, 10), [3, 0]);
        queues.push_back(pd(62), 254);
        queues.push_back(pd(61), 0);
        assert_eq!(queues.first(), Some(pd(62)));
        // Out of range: ignored, no panic.
        queues.push_back(pd(63), 5);
        queues.push_front(pd(200), 5);
        let fifth_vcpu = ContextId {
            domain: DomainId(0),
            index: MAX_VCPUS as u8,
        };
        queues.push_back(fifth_vcpu, 5);
        assert!(!queues.contains(pd(63)));
        assert!(!queues.contains(fifth_vcpu));
        assert_eq!(order(&queues, 5), []);
        // A VM's vCPUs are queued one by one, each in its own slot.
        let vcpu = |index| ContextId {
            domain: DomainId(62),
            index,
        };
        queues.push_back(vcpu(3), 7);
        queues.push_back(vcpu(1), 7);
        assert_eq!(queues.queue(7).collect::<Vec<_>>(), [vcpu(3), vcpu(1)]);
    }

    /// One operation on the queues, replayed on a simple model (one `Vec` per priority).
    #[derive(Clone, Debug)]
    enum Operation {
        PushBack(u8, u8),
        PushFront(u8, u8),
        Remove(u8),
        MoveToBack(u8),
    }

    fn operation() -> impl Strategy<Value = Operation> {
        let domain = 0u8..8;
        let priority = prop_oneof![Just(0u8), Just(63), Just(64), Just(200), Just(254)];
        prop_oneof![
            (domain.clone(), priority.clone()).prop_map(|(d, p)| Operation::PushBack(d, p)),
            (domain.clone(), priority).prop_map(|(d, p)| Operation::PushFront(d, p)),
            domain.clone().prop_map(Operation::Remove),
            domain.prop_map(Operation::MoveToBack),
        ]
    }

    proptest! {
        #[test]
        fn the_queues_agree_with_a_list_per_priority(
            operations in proptest::collection::vec(operation(), 0..200)
        ) {
            let mut queues = ReadyQueues::new();
            let mut model: Vec<(u8, Vec<u8>)> =
                [0u8, 63, 64, 200, 254].iter().map(|&p| (p, Vec::new())).collect();
            let find = |model: &Vec<(u8, Vec<u8>)>, d: u8| {
                model.iter().position(|(_, list)| list.contains(&d))
            };
            for operation in operations {
                match operation {
                    Operation::PushBack(d, p) => {
                        queues.push_back(pd(d), p);
                        if find(&model, d).is_none() {
                            model.iter_mut().find(|(q, _)| *q == p).unwrap().1.push(d);
                        }
                    }
                    Operation::PushFront(d, p) => {
                        queues.push_front(pd(d), p);
                        if find(&model, d).is_none() {
                            model.iter_mut().find(|(q, _)| *q == p).unwrap().1.insert(0, d);
                        }
                    }
                    Operation::Remove(d) => {
                        queues.remove(pd(d));
                        if let Some(q) = find(&model, d) {
                            model[q].1.retain(|&x| x != d);
                        }
                    }
                    Operation::MoveToBack(d) => {
                        queues.move_to_back(pd(d));
                        if let Some(q) = find(&model, d) {
                            model[q].1.retain(|&x| x != d);
                            model[q].1.push(d);
                        }
                    }
                }
                for (priority, list) in &model {
                    prop_assert_eq!(&order(&queues, *priority), list);
                }
                let expected = model.iter().rev().find_map(|(_, list)| list.first().copied());
                prop_assert_eq!(queues.first().map(|d| d.domain.0), expected);
                for d in 0..8u8 {
                    prop_assert_eq!(queues.contains(pd(d)), find(&model, d).is_some());
                }
            }
        }
    }
}
