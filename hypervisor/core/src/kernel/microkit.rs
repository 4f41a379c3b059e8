//! The Microkit state machine: notifications, protected procedure calls, replies, fault
//! routing and stops, on the hypervisor's domains and contexts.
//!
//! ```text
//!            start / event delivered
//!   Ready  <------------------------------  Waiting        (PD_REPLY_RECV)
//!    |  ^ \                                    ^
//!    |  |  \ PD_PPCALL                         | PD_REPLY_RECV
//!    |  |   v                                  |
//!    |  |  Calling{server} --server replies--> Ready
//!    |  |
//!    |  +-- parent replies (retry at the faulting PC) --+
//!    |                                                  |
//!    +-- fault, parent alive --> Faulted ---------------+-- parent does not reply --> Stopped
//!    +-- fault, no parent (not injected) -------------------------------------------> Stopped
//! ```
//!
//! A passive PD (Microkit `passive="true"`) moves through the same states; it only differs in
//! whose time it runs on once `init` is done (docs/ABI.md, "Passive PDs"). A child's fault
//! reaches its parent keyed by the child's Microkit id (a child PD's `id`, or a vCPU's `<vcpu
//! id>`), as Microkit reports it.

use core::fmt::Write;

use frameshift_abi::pd_call::{
    MessageInfo, EVENT_FAULT, EVENT_NOTIFIED, EVENT_PROTECTED, PD_DEBUG_WRITE, PD_IRQ_ACK,
    PD_NOTIFY, PD_PPCALL, PD_REPLY_RECV, PD_STOP, PD_SYSTEM_OFF, REPLY_MESSAGE, REPLY_NONE,
    STOP_EXCEPTION, STOP_PANIC,
};
use frameshift_abi::smccc::{INVALID_PARAMETER, NOT_SUPPORTED, SUCCESS};

use super::channels::ChannelUse;
use super::fault::FaultReport;
use crate::arch::Arch;
use crate::domain::{ContextId, RunState};
use crate::hypervisor::{
    Decision, Halt, HaltReason, Hypervisor, StopReason, DEBUG_WRITE_MAX, MAX_INJECTED_FAULTS,
};

impl<A: Arch> Hypervisor<A> {
    pub(crate) fn hypercall(
        &mut self,
        _arch: &mut A,
        current: ContextId,
        out: &mut dyn Write,
    ) -> Decision {
        let registers = self.domains[current].registers;
        // SMCCC: the function identifier is W0.
        match registers.x[0] as u32 {
            PD_DEBUG_WRITE => self.debug_write(current, out),
            PD_NOTIFY => self.notify(current),
            PD_PPCALL => self.call(current),
            PD_REPLY_RECV => self.reply_recv(current, out),
            PD_SYSTEM_OFF => {
                let status = u8::try_from(registers.x[1]).unwrap_or(u8::MAX);
                Decision::Halt(Halt {
                    status,
                    reason: HaltReason::SystemOff(current.domain),
                })
            }
            PD_IRQ_ACK => self.irq_ack(current),
            PD_STOP => self.stop_self(current, out),
            _ => self.finish(current, NOT_SUPPORTED),
        }
    }

    /// Returns `status` to the caller and lets the scheduler decide (a call may have made a
    /// higher-priority context runnable).
    fn finish(&mut self, current: ContextId, status: i64) -> Decision {
        self.domains[current].registers.set_status(status);
        self.schedule()
    }

    fn debug_write(&mut self, current: ContextId, out: &mut dyn Write) -> Decision {
        let registers = self.domains[current].registers;
        let count = registers.x[1];
        if count > DEBUG_WRITE_MAX {
            return self.finish(current, INVALID_PARAMETER);
        }
        let mut bytes = [0u8; DEBUG_WRITE_MAX as usize];
        for (chunk, register) in bytes.chunks_exact_mut(8).zip(&registers.x[2..8]) {
            chunk.copy_from_slice(&register.to_le_bytes());
        }
        let domain = &mut self.domains[current.domain];
        let _ = domain
            .line
            .push_bytes(&domain.name, &bytes[..count as usize], out);
        self.finish(current, SUCCESS)
    }

    fn irq_ack(&mut self, current: ContextId) -> Decision {
        let channel = self.domains[current].registers.x[1];
        let index = self
            .irqs
            .iter()
            .position(|b| b.domain == current.domain && u64::from(b.channel) == channel);
        match index {
            Some(index) => {
                self.acknowledged |= 1 << index;
                self.finish(current, SUCCESS)
            }
            None => self.finish(current, INVALID_PARAMETER),
        }
    }

    fn notify(&mut self, current: ContextId) -> Decision {
        let channel = self.domains[current].registers.x[1];
        let Some(far) = self
            .channels
            .far_end(current.domain, channel, ChannelUse::Notify)
        else {
            return self.finish(current, INVALID_PARAMETER);
        };
        let target = ContextId::pd(far.domain);
        if self.domains[target].state != RunState::Stopped {
            self.domains[far.domain].events.notifications |= 1 << far.channel;
            // A waiting receiver wakes at the tail of its queue; the notifier keeps its place.
            self.sync(target);
        }
        self.counters.notifications += 1;
        self.finish(current, SUCCESS)
    }

    fn call(&mut self, current: ContextId) -> Decision {
        let channel = self.domains[current].registers.x[1];
        let Some(far) = self
            .channels
            .far_end(current.domain, channel, ChannelUse::Call)
        else {
            return self.finish(current, INVALID_PARAMETER);
        };
        let server = ContextId::pd(far.domain);
        // Microkit: a PPC goes only to a strictly higher priority, so calls never form a cycle
        // (a parent calling a child that faults still blocks both: `idle` reports it).
        if self.domains[far.domain].priority <= self.domains[current.domain].priority
            || self.domains[server].state == RunState::Stopped
        {
            return self.finish(current, INVALID_PARAMETER);
        }
        self.domains[current].state = RunState::Calling {
            server: far.domain,
            server_channel: far.channel,
            delivered: false,
        };
        self.domains[far.domain].events.callers |= current.domain.bit();
        self.sync(current);
        self.sync(server);
        self.counters.calls += 1;
        self.schedule()
    }

    /// Ends the current handler: sends its reply (`x1` = `REPLY_MESSAGE`) or none
    /// (`REPLY_NONE`) to the caller it served or the child whose fault it handled, then waits.
    fn reply_recv(&mut self, current: ContextId, out: &mut dyn Write) -> Decision {
        let reply = self.domains[current].registers;
        let replied = match reply.x[1] {
            REPLY_NONE => false,
            REPLY_MESSAGE => true,
            // Refused before anything moves: the handler is still running and still owes.
            _ => return self.finish(current, INVALID_PARAMETER),
        };
        let child = self.domains[current.domain].events.handling_fault.take();
        self.domains[current].state = RunState::Waiting;
        // With another event already pending it stays runnable, and keeps its place.
        self.sync(current);
        if let Some(caller) = self.domains[current.domain].events.serving.take() {
            let caller = ContextId::pd(caller);
            let calling = &mut self.domains[caller];
            if matches!(calling.state, RunState::Calling { server, .. } if server == current.domain)
            {
                if replied {
                    calling.registers.x[2..=10].copy_from_slice(&reply.x[2..=10]);
                    calling.registers.set_status(SUCCESS);
                } else {
                    // No reply: the caller learns it at once instead of waiting forever.
                    calling.registers.set_status(INVALID_PARAMETER);
                }
                calling.state = RunState::Ready;
                self.resume_caller(caller);
            }
        }
        let child = child
            .and_then(|child_id| self.domains.child_context(current.domain, child_id))
            .filter(|&child| self.domains[child].state == RunState::Faulted);
        if let Some(child) = child {
            if replied {
                // seL4's fault reply: the child retries the faulting instruction with every
                // register as it was. A parent that fixed nothing sees the same fault again.
                self.domains[child].state = RunState::Ready;
                self.sync(child);
            } else {
                let _ = writeln!(
                    out,
                    "FS|hypervisor|stopped pd={} reason={}",
                    self.domains[child.domain].name,
                    StopReason::Parent.word()
                );
                self.stop(child);
            }
        }
        self.schedule()
    }

    pub(crate) fn fault(
        &mut self,
        current: ContextId,
        report: FaultReport,
        out: &mut dyn Write,
    ) -> Decision {
        self.counters.faults += 1;
        let context = &mut self.domains[current];
        context.faults = context.faults.saturating_add(1);
        let child_id = context.child_id;
        let parent = self.domains[current.domain]
            .parent
            .filter(|&p| self.domains[ContextId::pd(p)].state != RunState::Stopped);
        let name = self.domains[current.domain].name.clone();
        if let (Some(parent), Some(child_id)) = (parent, child_id) {
            let _ = writeln!(
                out,
                "FS|hypervisor|fault pd={} {} to={}",
                name, report, self.domains[parent].name
            );
            // Blocked, not stopped: the parent's reply decides. Its callers and notifications
            // wait, so a restarted server can still finish the call it was serving.
            let context = &mut self.domains[current];
            context.last_fault = Some(report);
            context.state = RunState::Faulted;
            self.domains[parent].events.child_faults |= 1 << child_id;
            self.sync(current);
            self.sync(ContextId::pd(parent));
            return self.schedule();
        }
        let _ = writeln!(out, "FS|hypervisor|fault pd={name} {report}");
        if report.injectable && self.domains[current].faults <= MAX_INJECTED_FAULTS {
            return Decision::InjectAbort(current);
        }
        self.stop_abnormally(current, StopReason::Fault, out);
        self.schedule()
    }

    /// Stops a context for good. A caller blocked on its domain gets `INVALID_PARAMETER` back,
    /// so no PD waits forever for a dead server; a faulted child waiting for its answer stops
    /// too, since nobody is left to restart it.
    fn stop(&mut self, context: ContextId) {
        let record = &mut self.domains[context];
        let was = record.state;
        let child_id = record.child_id;
        record.state = RunState::Stopped;
        let domain = &mut self.domains[context.domain];
        domain.events = Default::default();
        let parent = domain.parent;
        self.ready.remove(context);
        // Take back what it was owed or owing elsewhere, so no stale bit makes a PD runnable.
        if let RunState::Calling { server, .. } = was {
            self.domains[server].events.callers &= !context.domain.bit();
            self.sync(ContextId::pd(server));
        }
        if let (Some(parent), Some(child_id)) = (parent, child_id) {
            self.domains[parent].events.child_faults &= !(1 << child_id);
            self.sync(ContextId::pd(parent));
        }
        let callers: heapless::Vec<ContextId, 256> = self.domains.context_ids().collect();
        for caller in callers {
            let record = &mut self.domains[caller];
            if matches!(record.state, RunState::Calling { server, .. } if server == context.domain)
            {
                record.registers.set_status(INVALID_PARAMETER);
                record.state = RunState::Ready;
                self.resume_caller(caller);
            }
        }
        // Children come after their parent (boot_info.rs), so one forward pass also reaches
        // grandchildren whose parent this loop has just stopped.
        let children: heapless::Vec<ContextId, 256> = self
            .domains
            .context_ids()
            .filter(|child| child.domain > context.domain)
            .collect();
        for child in children {
            let orphaned = self.domains[child].state == RunState::Faulted
                && self.domains[child.domain]
                    .parent
                    .is_some_and(|p| self.domains[ContextId::pd(p)].state == RunState::Stopped);
            if orphaned {
                self.stop(child);
            }
        }
    }

    /// `PD_STOP`: the runtime gave up (panic, unexpected exception). Only this PD stops.
    fn stop_self(&mut self, current: ContextId, out: &mut dyn Write) -> Decision {
        let reason = match self.domains[current].registers.x[1] {
            STOP_PANIC => StopReason::Panic,
            STOP_EXCEPTION => StopReason::Exception,
            _ => return self.finish(current, INVALID_PARAMETER),
        };
        self.stop_abnormally(current, reason, out);
        self.schedule()
    }

    /// Stops a PD that cannot go on, says why on the console, and counts it for the halt line.
    fn stop_abnormally(&mut self, context: ContextId, reason: StopReason, out: &mut dyn Write) {
        let domain = &mut self.domains[context.domain];
        // Its last words first: a partial line would otherwise be lost or come after the stop.
        let _ = domain.line.flush_partial(&domain.name, out);
        let _ = writeln!(
            out,
            "FS|hypervisor|stopped pd={} reason={}",
            domain.name,
            reason.word()
        );
        self.counters.stopped += 1;
        self.stop(context);
    }

    /// Gives a waiting context its next event (calls first, then child faults, then
    /// notifications) in the `PD_REPLY_RECV` result registers.
    pub(crate) fn deliver(&mut self, context: ContextId) {
        let server = context.domain;
        if let Some(caller) = self.next_caller(server) {
            self.domains[server].events.callers &= !caller.bit();
            let caller = ContextId::pd(caller);
            let (message, server_channel) = match self.domains[caller].state {
                RunState::Calling { server_channel, .. } => {
                    let mut message = [0u64; 9];
                    message.copy_from_slice(&self.domains[caller].registers.x[2..=10]);
                    (message, server_channel)
                }
                // A stale bit (never set without the caller's state): consumed above.
                _ => return,
            };
            if let RunState::Calling { delivered, .. } = &mut self.domains[caller].state {
                *delivered = true;
            }
            let record = &mut self.domains[context];
            record.registers.set_status(SUCCESS);
            record.registers.x[1] = EVENT_PROTECTED;
            record.registers.x[2..=10].copy_from_slice(&message);
            record.registers.x[11] = u64::from(server_channel);
            record.state = RunState::Ready;
            self.domains[server].events.serving = Some(caller.domain);
            return;
        }
        let child_faults = self.domains[server].events.child_faults;
        if child_faults != 0 {
            let child_id = child_faults.trailing_zeros() as u8;
            self.domains[server].events.child_faults &= !(1 << child_id);
            let report = self
                .domains
                .child_context(server, child_id)
                .and_then(|child| self.domains[child].last_fault);
            if let Some(report) = report {
                let (details, count) = report.message();
                let record = &mut self.domains[context];
                record.registers.set_status(SUCCESS);
                record.registers.x[1] = EVENT_FAULT;
                record.registers.x[2] = MessageInfo::new(report.kind.label(), count).0;
                record.registers.x[3..6].copy_from_slice(&details);
                record.registers.x[11] = u64::from(child_id);
                record.state = RunState::Ready;
                self.domains[server].events.handling_fault = Some(child_id);
                return;
            }
        }
        let events = &mut self.domains[server].events;
        if events.notifications != 0 {
            let notifications = core::mem::take(&mut events.notifications);
            let record = &mut self.domains[context];
            record.registers.set_status(SUCCESS);
            record.registers.x[1] = EVENT_NOTIFIED;
            record.registers.x[2] = notifications;
            record.state = RunState::Ready;
        }
    }
}
