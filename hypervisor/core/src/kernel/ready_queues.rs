//! The ready queues: one FIFO of runnable domains per priority, plus a bitmap of the non-empty
//! priorities, as seL4 and Microkit keep them. Every operation is O(1) whatever the number of
//! domains: the queues are doubly linked through per-domain `next`/`prev` slots, and the highest
//! non-empty priority is found from four 64-bit words.
//!
//! ```text
//!   bitmap  ...0100...0010      (bit p set <=> queue p is non-empty)
//!   queue 200: head -> h -> tail
//!   queue 100: head -> k <-> p -> tail       (k runs; p is next when k's budget is used up)
//! ```
//!
//! The head of the highest non-empty queue is the domain that runs. What goes where (head or
//! tail) is the kernel's policy (system.rs, "Scheduling"); this module only keeps the order.

use super::domain::DomainIndex;
use super::system::MAX_DOMAINS;

/// Marks the end of a list and an empty queue.
const NIL: u8 = u8::MAX;

/// Queues: one per `u8` priority (Microkit uses 0..=254).
const PRIORITIES: usize = 256;

/// Per-priority FIFO queues of runnable domains.
#[derive(Clone, Debug)]
pub struct ReadyQueues {
    head: [u8; PRIORITIES],
    tail: [u8; PRIORITIES],
    next: [u8; MAX_DOMAINS],
    prev: [u8; MAX_DOMAINS],
    /// The priority each queued domain was queued at (so removal needs only the index).
    priority: [u8; MAX_DOMAINS],
    /// Bit per domain: in some queue.
    queued: u64,
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
            head: [NIL; PRIORITIES],
            tail: [NIL; PRIORITIES],
            next: [NIL; MAX_DOMAINS],
            prev: [NIL; MAX_DOMAINS],
            priority: [0; MAX_DOMAINS],
            queued: 0,
            bitmap: [0; PRIORITIES / 64],
        }
    }

    /// Whether `domain` is in a queue.
    pub const fn contains(&self, domain: DomainIndex) -> bool {
        domain.get() < MAX_DOMAINS && self.queued & domain.bit() != 0
    }

    /// Appends `domain` to the tail of queue `priority`; a domain already queued, or an index
    /// out of range, is left alone.
    pub fn push_back(&mut self, domain: DomainIndex, priority: u8) {
        if domain.get() >= MAX_DOMAINS || self.contains(domain) {
            return;
        }
        let (index, queue) = (domain.get(), usize::from(priority));
        let old_tail = self.tail[queue];
        self.prev[index] = old_tail;
        self.next[index] = NIL;
        match old_tail {
            NIL => self.head[queue] = domain.0,
            tail => self.next[usize::from(tail)] = domain.0,
        }
        self.tail[queue] = domain.0;
        self.mark(domain, priority);
    }

    /// Puts `domain` at the head of queue `priority`; a domain already queued, or an index out
    /// of range, is left alone.
    pub fn push_front(&mut self, domain: DomainIndex, priority: u8) {
        if domain.get() >= MAX_DOMAINS || self.contains(domain) {
            return;
        }
        let (index, queue) = (domain.get(), usize::from(priority));
        let old_head = self.head[queue];
        self.next[index] = old_head;
        self.prev[index] = NIL;
        match old_head {
            NIL => self.tail[queue] = domain.0,
            head => self.prev[usize::from(head)] = domain.0,
        }
        self.head[queue] = domain.0;
        self.mark(domain, priority);
    }

    /// Takes `domain` out of its queue (nothing happens if it is not queued).
    pub fn remove(&mut self, domain: DomainIndex) {
        if !self.contains(domain) {
            return;
        }
        let index = domain.get();
        let queue = usize::from(self.priority[index]);
        let (prev, next) = (self.prev[index], self.next[index]);
        match prev {
            NIL => self.head[queue] = next,
            prev => self.next[usize::from(prev)] = next,
        }
        match next {
            NIL => self.tail[queue] = prev,
            next => self.prev[usize::from(next)] = prev,
        }
        self.next[index] = NIL;
        self.prev[index] = NIL;
        self.queued &= !domain.bit();
        if self.head[queue] == NIL {
            self.bitmap[queue / 64] &= !(1 << (queue % 64));
        }
    }

    /// Moves a queued `domain` to the tail of its queue (its slice is used up, or it yielded).
    pub fn move_to_back(&mut self, domain: DomainIndex) {
        if self.contains(domain) {
            let priority = self.priority[domain.get()];
            self.remove(domain);
            self.push_back(domain, priority);
        }
    }

    /// The head of the highest non-empty queue: the domain that should run.
    pub fn first(&self) -> Option<DomainIndex> {
        let (word, bits) = self
            .bitmap
            .iter()
            .enumerate()
            .rev()
            .find(|(_, bits)| **bits != 0)?;
        let queue = word * 64 + (63 - bits.leading_zeros() as usize);
        match self.head[queue] {
            NIL => None,
            head => Some(DomainIndex(head)),
        }
    }

    /// The domains queued at `priority`, head first (tests and diagnostics).
    pub fn queue(&self, priority: u8) -> impl Iterator<Item = DomainIndex> + '_ {
        let mut at = self.head[usize::from(priority)];
        // Bounded by the number of domains even if the links were ever wrong.
        (0..MAX_DOMAINS).map_while(move |_| {
            let domain = (at != NIL).then_some(DomainIndex(at))?;
            at = self.next.get(domain.get()).copied().unwrap_or(NIL);
            Some(domain)
        })
    }

    fn mark(&mut self, domain: DomainIndex, priority: u8) {
        let queue = usize::from(priority);
        self.priority[domain.get()] = priority;
        self.queued |= domain.bit();
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

    fn order(queues: &ReadyQueues, priority: u8) -> Vec<u8> {
        queues.queue(priority).map(|d| d.0).collect()
    }

    #[test]
    fn the_head_of_the_highest_queue_runs_and_each_queue_is_fifo() {
        let mut queues = ReadyQueues::new();
        assert_eq!(queues.first(), None);
        queues.push_back(DomainIndex(3), 10);
        queues.push_back(DomainIndex(1), 10);
        queues.push_back(DomainIndex(2), 200);
        queues.push_front(DomainIndex(0), 10);
        assert_eq!(queues.first(), Some(DomainIndex(2)));
        assert_eq!(order(&queues, 10), [0, 3, 1]);
        queues.remove(DomainIndex(2));
        assert_eq!(queues.first(), Some(DomainIndex(0)));
        queues.move_to_back(DomainIndex(0));
        assert_eq!(order(&queues, 10), [3, 1, 0]);
        queues.remove(DomainIndex(1));
        assert_eq!(order(&queues, 10), [3, 0]);
        // Queuing twice changes nothing; removing an absent domain changes nothing.
        queues.push_back(DomainIndex(3), 10);
        queues.remove(DomainIndex(5));
        assert_eq!(order(&queues, 10), [3, 0]);
        queues.push_back(DomainIndex(62), 254);
        queues.push_back(DomainIndex(61), 0);
        assert_eq!(queues.first(), Some(DomainIndex(62)));
        // Out of range: ignored, no panic.
        queues.push_back(DomainIndex(63), 5);
        queues.push_front(DomainIndex(200), 5);
        assert!(!queues.contains(DomainIndex(63)));
        assert_eq!(order(&queues, 5), []);
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
                        queues.push_back(DomainIndex(d), p);
                        if find(&model, d).is_none() {
                            model.iter_mut().find(|(q, _)| *q == p).unwrap().1.push(d);
                        }
                    }
                    Operation::PushFront(d, p) => {
                        queues.push_front(DomainIndex(d), p);
                        if find(&model, d).is_none() {
                            model.iter_mut().find(|(q, _)| *q == p).unwrap().1.insert(0, d);
                        }
                    }
                    Operation::Remove(d) => {
                        queues.remove(DomainIndex(d));
                        if let Some(q) = find(&model, d) {
                            model[q].1.retain(|&x| x != d);
                        }
                    }
                    Operation::MoveToBack(d) => {
                        queues.move_to_back(DomainIndex(d));
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
                prop_assert_eq!(queues.first().map(|d| d.0), expected);
                for d in 0..8u8 {
                    prop_assert_eq!(queues.contains(DomainIndex(d)), find(&model, d).is_some());
                }
            }
        }
    }
}
