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

use frameshift_abi::pd_call::{CAP_DERIVED, CAP_LENT_AWAY, CAP_ORIGINAL};
use frameshift_abi::smccc::SUCCESS;

use super::channels::ChannelUse;
use super::fault::FaultReport;
use crate::arch::Arch;
use crate::call::{CallError, ChannelId, Event, Message, PdCall, Reply, StopCause};
use crate::domain::{ContextId, RunState};
use crate::engine::CapHeld;
use crate::hypervisor::{Decision, Halt, HaltReason, Hypervisor, StopReason, MAX_INJECTED_FAULTS};

/// `PD_FRAME_CAPS` `x6` when a capability has no peer.
const NO_PEER: u64 = 0xFFFF_FFFF;

impl<A: Arch> Hypervisor<A> {
    /// An `HVC` from the running context: a PD call, or a guest call from a vCPU. The call is
    /// decoded once ([`PdCall::decode`]); a malformed one is refused with its code before any
    /// logic sees it, and changes nothing.
    pub(crate) fn hypercall(
        &mut self,
        arch: &mut A,
        current: ContextId,
        out: &mut dyn Write,
    ) -> Decision {
        if !self.domains[current.domain].is_pd() {
            return self.guest_call(arch, current, out);
        }
        // A PD that makes a call is not stuck in a faulting abort handler: its injected-fault
        // budget starts again (a prober may take many faults, each between two calls).
        self.domains[current].faults = 0;
        let call = match PdCall::decode(&self.domains[current].registers) {
            Ok(call) => call,
            Err(error) => return self.refuse(current, error),
        };
        match call {
            PdCall::DebugWrite(bytes) => {
                let domain = &mut self.domains[current.domain];
                let _ = domain.line.push_bytes(&domain.name, bytes.as_slice(), out);
                self.finish(current, SUCCESS)
            }
            PdCall::Notify { channel } => self.notify(current, channel),
            PdCall::IrqAck { channel } => self.irq_ack(current, channel),
            PdCall::PpCall { channel, message } => self.call(current, channel, message),
            PdCall::ReplyRecv { reply } => self.reply_recv(current, reply, out),
            PdCall::SystemOff { status } => Decision::Halt(Halt {
                status,
                reason: HaltReason::SystemOff(current.domain),
            }),
            PdCall::Stop(cause) => {
                let reason = match cause {
                    StopCause::Panic => StopReason::Panic,
                    StopCause::Exception => StopReason::Exception,
                };
                self.stop_abnormally(current, reason, out);
                self.schedule()
            }
            PdCall::FrameCaps { from } => {
                let result = self.frame_caps(arch, current, from);
                self.answer(current, result)
            }
            PdCall::Audit { dump } => {
                if dump {
                    self.dump_at_halt = true;
                    let _ = self.write_dump(arch, crate::dump::DumpPoint::Call, out);
                }
                let result = match self.run_audit(arch, &mut |_| {}) {
                    Some(summary) => Ok(Reply::success(&[
                        summary.violations as u64,
                        summary.mapped_pages as u64,
                        self.audits,
                    ])),
                    None => Err(CallError::NotSupported),
                };
                self.answer(current, result)
            }
            vmm_call => {
                let result = self.vmm_call(arch, current, vmm_call, out);
                self.answer(current, result)
            }
        }
    }

    /// Returns `status` to the caller and lets the scheduler decide (a call may have made a
    /// higher-priority context runnable).
    pub(crate) fn finish(&mut self, current: ContextId, status: i64) -> Decision {
        self.finish_with(current, Reply::Status(status))
    }

    /// Writes `reply` into the caller's registers and lets the scheduler decide.
    pub(crate) fn finish_with(&mut self, current: ContextId, reply: Reply) -> Decision {
        reply.write(&mut self.domains[current].registers);
        self.schedule()
    }

    /// Refuses a call: `x0` = its code, and nothing else changes.
    pub(crate) fn refuse(&mut self, current: ContextId, error: CallError) -> Decision {
        self.answer(current, Err(error))
    }

    /// Writes a call's result, or its refusal's code ([`CallError::code`]: the one place
    /// refusals become codes), and lets the scheduler decide.
    pub(crate) fn answer(
        &mut self,
        current: ContextId,
        result: Result<Reply, CallError>,
    ) -> Decision {
        let reply = result.unwrap_or_else(|error| Reply::Status(error.code()));
        self.finish_with(current, reply)
    }

    /// `PD_FRAME_CAPS`: the caller's capability run at or after `from`.
    fn frame_caps(
        &self,
        arch: &A,
        current: ContextId,
        from: crate::addr::Ipa,
    ) -> Result<Reply, CallError> {
        let run = self
            .engine
            .frame_caps(arch, &self.domains, current.domain, from)?
            .ok_or(CallError::NotRequired)?;
        let held = match run.held {
            CapHeld::Original => CAP_ORIGINAL,
            CapHeld::Derived => CAP_DERIVED,
            CapHeld::LentAway => CAP_LENT_AWAY,
        };
        Ok(Reply::success(&[
            run.ipa.get(),
            run.pa.get(),
            run.pages,
            held,
            u64::from(run.rights.bits()),
            run.peer.map_or(NO_PEER, |peer| u64::from(peer.0)),
        ]))
    }

    fn irq_ack(&mut self, current: ContextId, channel: ChannelId) -> Decision {
        let index = self
            .irqs
            .iter()
            .position(|b| b.domain == current.domain && b.channel == channel.get());
        match index {
            Some(index) => {
                self.acknowledged |= 1 << index;
                self.finish(current, SUCCESS)
            }
            None => self.refuse(current, CallError::Invalid("no interrupt on that channel")),
        }
    }

    fn notify(&mut self, current: ContextId, channel: ChannelId) -> Decision {
        let Some(far) =
            self.channels
                .far_end(current.domain, u64::from(channel.get()), ChannelUse::Notify)
        else {
            return self.refuse(
                current,
                CallError::Invalid("no notify right on that channel"),
            );
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

    fn call(&mut self, current: ContextId, channel: ChannelId, message: Message) -> Decision {
        let Some(far) =
            self.channels
                .far_end(current.domain, u64::from(channel.get()), ChannelUse::Call)
        else {
            return self.refuse(current, CallError::Invalid("no call right on that channel"));
        };
        let server = ContextId::pd(far.domain);
        // Microkit: a PPC goes only to a strictly higher priority, so calls never form a cycle
        // (a parent calling a child that faults still blocks both: `idle` reports it).
        if self.domains[far.domain].priority <= self.domains[current.domain].priority
            || self.domains[server].state == RunState::Stopped
        {
            return self.refuse(current, CallError::Invalid("server not above, or stopped"));
        }
        self.domains[current].state = RunState::Calling {
            server: far.domain,
            server_channel: far.channel,
            delivered: false,
            message,
        };
        self.domains[far.domain].events.callers |= current.domain.bit();
        self.sync(current);
        self.sync(server);
        self.counters.calls += 1;
        self.schedule()
    }

    /// Ends the current handler: sends its reply (`REPLY_MESSAGE`) or none (`REPLY_NONE`) to
    /// the caller it served or the child whose fault it handled, then waits. A reply a vCPU's
    /// fault does not accept (docs/ABI.md, "VM faults") is refused before anything moves.
    fn reply_recv(
        &mut self,
        current: ContextId,
        reply: Option<Message>,
        out: &mut dyn Write,
    ) -> Decision {
        let child = self.domains[current.domain]
            .events
            .handling_fault
            .and_then(|child_id| self.domains.child_context(current.domain, child_id))
            .filter(|&child| self.domains[child].state == RunState::Faulted);
        if let (Some(child), Some(message)) = (child, reply) {
            if let Err(error) = self.check_vm_reply(child, &message) {
                // The handler is still running and still owes its answer.
                return self.refuse(current, error);
            }
        }
        self.domains[current.domain].events.handling_fault = None;
        self.domains[current].state = RunState::Waiting;
        // With another event already pending it stays runnable, and keeps its place.
        self.sync(current);
        if let Some(caller) = self.domains[current.domain].events.serving.take() {
            let caller = ContextId::pd(caller);
            let calling = &mut self.domains[caller];
            if matches!(calling.state, RunState::Calling { server, .. } if server == current.domain)
            {
                match reply {
                    Some(message) => Reply::Message(message).write(&mut calling.registers),
                    // No reply: the caller learns it at once instead of waiting forever.
                    None => Reply::Status(CallError::Invalid("no reply").code())
                        .write(&mut calling.registers),
                }
                calling.state = RunState::Ready;
                self.resume_caller(caller);
            }
        }
        if let Some(child) = child {
            match reply {
                Some(message) if self.domains[child].vm_fault.is_some() => {
                    self.apply_vm_reply(child, &message);
                }
                Some(_) => {
                    // seL4's fault reply: the child retries the faulting instruction with every
                    // register as it was. A parent that fixed nothing sees the same fault again.
                    self.domains[child].state = RunState::Ready;
                    self.sync(child);
                }
                None => {
                    let _ = writeln!(
                        out,
                        "FS|hypervisor|stopped pd={} reason={}",
                        self.domains[child.domain].name,
                        StopReason::Parent.word()
                    );
                    self.stop(child);
                }
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
    pub(crate) fn stop(&mut self, context: ContextId) {
        let record = &mut self.domains[context];
        let was = record.state;
        let child_id = record.child_id;
        record.state = RunState::Stopped;
        // A vCPU's fault that nobody will answer now.
        record.vm_fault = None;
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
                Reply::Status(CallError::Invalid("server stopped").code())
                    .write(&mut record.registers);
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
            let RunState::Calling {
                server_channel,
                message,
                delivered,
                ..
            } = &mut self.domains[caller].state
            else {
                // A stale bit (never set without the caller's state): consumed above.
                return;
            };
            *delivered = true;
            let event = Event::Protected {
                message: *message,
                channel: *server_channel,
            };
            let record = &mut self.domains[context];
            event.write(&mut record.registers);
            record.state = RunState::Ready;
            self.domains[server].events.serving = Some(caller.domain);
            return;
        }
        let child_faults = self.domains[server].events.child_faults;
        if child_faults != 0 {
            let child_id = child_faults.trailing_zeros() as u8;
            self.domains[server].events.child_faults &= !(1 << child_id);
            let event = self
                .domains
                .child_context(server, child_id)
                .and_then(|child| {
                    let record = &mut self.domains[child];
                    match (record.vm_fault, record.last_fault) {
                        (Some(fault), _) => {
                            // A power fault is only news: the vCPU is off, no reply applies.
                            if record.state != RunState::Faulted {
                                record.vm_fault = None;
                            }
                            Some(fault.event(child_id))
                        }
                        (None, Some(report)) => {
                            let (details, count) = report.message();
                            Some(Event::fault(
                                report.kind.label(),
                                &details[..count],
                                child_id,
                            ))
                        }
                        (None, None) => None,
                    }
                });
            if let Some(event) = event {
                let record = &mut self.domains[context];
                event.write(&mut record.registers);
                record.state = RunState::Ready;
                self.domains[server].events.handling_fault = Some(child_id);
                return;
            }
        }
        let events = &mut self.domains[server].events;
        if events.notifications != 0 {
            let notifications = core::mem::take(&mut events.notifications);
            let record = &mut self.domains[context];
            Event::Notified(notifications).write(&mut record.registers);
            record.state = RunState::Ready;
        }
    }
}
