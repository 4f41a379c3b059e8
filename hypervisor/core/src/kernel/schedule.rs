//! Scheduling: Microkit's fixed priorities, with seL4's round robin among equals.
//!
//! Every context that has work sits in the FIFO ready queue of its priority ([`ReadyQueues`]);
//! the head of the highest non-empty queue runs. Each context has a budget (what is left of its
//! time slice), charged only for the time it runs:
//!
//! | event | where the context goes | its budget |
//! | --- | --- | --- |
//! | a higher priority becomes runnable | stays at the head of its queue | kept, not refilled |
//! | its budget reaches zero | tail of its queue | refilled, less its overrun |
//! | it yields (`WFI`/`WFE`) | tail of its queue | refilled, less its overrun |
//! | it blocks (`PD_REPLY_RECV` with nothing pending, a fault to its parent) | out of the queues | kept |
//! | it wakes (an event arrives, its parent restarts it) | tail of its queue | kept |
//! | its protected call returns (or the server stopped) | head of its queue | kept |
//!
//! A context that blocked just as its budget ran out is refilled only when it is queued again,
//! and then at the tail: a refilled budget never goes ahead of a peer.
//!
//! The kernel learns that a budget ran out only at the next exit, so a context can run past it
//! (the timer is late, or some other exit comes first). That overrun is owed: the next budget
//! is a full slice less the overrun. Without it, a context that keeps overrunning while its
//! peer's slices end on time gains a little every round, without bound.
//!
//! So each runnable context gets a full slice per round of its queue whatever the others do:
//! being preempted, or waking a higher priority, never moves anyone ahead of a peer. A call
//! returns to the head because Microkit calls go only to higher priorities: at the caller's
//! priority it is a preemption, and the caller was charged nothing meanwhile.
//!
//! Time is the arch layer's counter (ticks), passed with every exit: the kernel charges the
//! running context for the ticks since it last decided, and
//! [`Hypervisor::slice_end`] says when the running context's budget runs out, which the arch
//! layer programs into the EL2 timer. Host tests pass time explicitly.
//!
//! [`ReadyQueues`]: super::ready_queues::ReadyQueues

use crate::arch::Arch;
use crate::domain::{ContextId, DomainId, RunState};
use crate::hypervisor::{Decision, Halt, HaltReason, Hypervisor};

impl<A: Arch> Hypervisor<A> {
    /// Runs the head of the highest non-empty ready queue.
    pub(crate) fn schedule(&mut self) -> Decision {
        self.expire();
        // Each pass either returns or takes a stale event (or the context) out: bounded.
        loop {
            let Some(chosen) = self.ready.first() else {
                return self.idle();
            };
            if self.domains[chosen].state == RunState::Waiting {
                self.deliver(chosen);
                if self.domains[chosen].state == RunState::Waiting {
                    // A stale pending bit with nothing behind it was consumed: choose again.
                    self.sync(chosen);
                    continue;
                }
            }
            self.current = Some(chosen);
            self.charged = Some(chosen);
            return Decision::Run(chosen);
        }
    }

    /// Nothing can run: wait if some live PD can still be woken by its interrupt, else halt.
    fn idle(&mut self) -> Decision {
        // Nobody's budget pays for the time the CPU waits.
        self.charged = None;
        // A faulted owner cannot run until its parent answers, and at idle no parent can.
        let wakeable = self.irqs.iter().any(|binding| {
            !matches!(
                self.domains[ContextId::pd(binding.domain)].state,
                RunState::Stopped | RunState::Faulted
            )
        });
        if wakeable {
            return Decision::WaitForInterrupt;
        }
        // Nothing runs and nothing can wake anyone: a context still blocked on another (a call,
        // a fault for its parent) waits for ever, and the work it was doing is lost.
        let deadlocked = self
            .domains
            .context_ids()
            .any(|context| self.blocked_on(context).is_some());
        if deadlocked {
            return Decision::Halt(Halt {
                status: 1,
                reason: HaltReason::Deadlock,
            });
        }
        // A run in which a PD had to be stopped did not succeed, even if the rest finished.
        Decision::Halt(Halt {
            status: u8::from(self.counters.stopped > 0),
            reason: HaltReason::Idle,
        })
    }

    /// Charges the context that ran for the ticks up to `now` (`schedule` acts on a budget that
    /// ran out).
    pub(crate) fn charge(&mut self, now: u64) {
        let elapsed = now.saturating_sub(self.slice_start);
        self.slice_start = self.slice_start.max(now);
        if let Some(context) = self.charged.and_then(|c| self.domains.context_mut(c)) {
            // Time beyond the budget is owed, not forgiven: it comes out of the next one.
            context.overrun = context
                .overrun
                .saturating_add(elapsed.saturating_sub(context.budget));
            context.budget = context.budget.saturating_sub(elapsed);
        }
    }

    /// A context whose budget is used up goes to the tail of its queue with a full one: its
    /// peers of equal priority each get their slice before it runs again. One that blocked at
    /// that moment keeps its empty budget until it is queued again (`enqueue`).
    fn expire(&mut self) {
        let Some(charged) = self.charged else {
            return;
        };
        let spent = self
            .domains
            .context(charged)
            .is_some_and(|context| context.budget == 0);
        if spent && self.ready.contains(charged) {
            self.domains[charged].refill(self.time_slice);
            self.ready.move_to_back(charged);
        }
    }

    /// Queues a context that has just become runnable: at the head of its queue if `at_head`
    /// (a caller whose call ended), else at the tail. A context whose budget ran out goes to
    /// the tail with a full one, wherever it would have gone: nothing ever jumps ahead of a peer
    /// with a refilled budget.
    fn enqueue(&mut self, context: ContextId, at_head: bool) {
        let priority = self.domains[context.domain].priority;
        let record = &mut self.domains[context];
        if record.budget == 0 {
            record.refill(self.time_slice);
            self.ready.push_back(context, priority);
        } else if at_head {
            self.ready.push_front(context, priority);
        } else {
            self.ready.push_back(context, priority);
        }
    }

    /// A caller whose protected call ended runs next at its priority, with the budget it had:
    /// calls go only to higher priorities, so at its own priority the call was a preemption.
    pub(crate) fn resume_caller(&mut self, caller: ContextId) {
        if !self.ready.contains(caller) {
            self.enqueue(caller, true);
        }
    }

    /// Makes `context`'s place in the ready queues agree with whether it has work: a context
    /// that just got work joins the tail of its queue; one that has none left leaves it. A
    /// context already queued keeps its place.
    pub(crate) fn sync(&mut self, context: ContextId) {
        if self.has_work(context) {
            if !self.ready.contains(context) {
                self.enqueue(context, false);
            }
        } else {
            self.ready.remove(context);
        }
    }

    /// Whether `context` has something to run: ready, or waiting with an event for its domain.
    pub(crate) fn has_work(&self, context: ContextId) -> bool {
        let Some(record) = self.domains.context(context) else {
            return false;
        };
        match record.state {
            RunState::Ready => true,
            RunState::Waiting => {
                let events = self.domains[context.domain].events;
                events.notifications != 0 || events.child_faults != 0 || events.callers != 0
            }
            RunState::Calling { .. } | RunState::Faulted | RunState::Stopped => false,
        }
    }

    /// A hardware interrupt: a notification on its channel for the PD it belongs to.
    pub(crate) fn interrupt(&mut self, intid: u32) -> Decision {
        if let Some(binding) = self.irqs.iter().find(|b| b.intid == intid).copied() {
            let pd = ContextId::pd(binding.domain);
            if self.domains[pd].state != RunState::Stopped {
                self.domains[binding.domain].events.notifications |= 1 << binding.channel;
                self.counters.interrupts += 1;
                self.sync(pd);
            }
        }
        self.schedule()
    }

    /// The undelivered caller of `server` with the highest priority (lowest id on a tie).
    pub(crate) fn next_caller(&self, server: DomainId) -> Option<DomainId> {
        let mut callers = self.domains.get(server)?.events.callers;
        let mut best: Option<(u8, DomainId)> = None;
        while callers != 0 {
            let caller = DomainId(callers.trailing_zeros() as u8);
            callers &= callers - 1;
            let priority = self.domains.get(caller).map_or(0, |d| d.priority);
            if best.is_none_or(|(best_priority, _)| priority > best_priority) {
                best = Some((priority, caller));
            }
        }
        best.map(|(_, caller)| caller)
    }
}
