//! The hypervisor object: all of the hypervisor's state, and the only thing the arch layer
//! enters and leaves.
//!
//! ```text
//!   arch layer (EL2 vectors)                    Hypervisor<A>
//!   ------------------------                    -------------
//!   boot ─────── BootInfo, heap ───────────────> boot(): domains, engine (every mapping,
//!                                                the windows too), audit
//!   first entry ───────────────────────────────> start(now) ──> Decision
//!   trap from EL1: decode ESR/HPFAR ── Exit ───> handle(arch, exit, now, console) ──> Decision
//!   apply the Decision: switch context (A::Context, VTTBR), arm the timer, ERET / WFI / halt
//! ```
//!
//! It holds the [`Domains`] (each with its address space, contexts and Microkit state), the
//! conversion [`Engine`] (frame table, table pool, hypervisor memory), the scheduler's ready
//! queues, the channels, the interrupts, the counters and the audit's scratch. The Microkit
//! logic that runs on it lives in [`crate::kernel`].

mod boot;
#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    reason = "a test fails loudly on an unexpected error"
)]
mod boot_tests;

pub use boot::{
    heap_bytes, BootError, BootReport, BootTables, BuildError, Heap, SIDE_TABLE_RECORDS,
};

use core::fmt::{self, Write};

use crate::arch::Arch;
use crate::domain::{Context, ContextId, Domain, DomainId, Domains, Registers, RunState};
use crate::engine::Engine;
use crate::frame_table::StaticStorage;
use crate::kernel::channels::ChannelTable;
use crate::kernel::fault::{FaultReport, InstructionLength};
use crate::kernel::ready_queues::ReadyQueues;

/// Highest Microkit priority.
pub use frameshift_abi::boot_info::MAX_PRIORITY;

/// Most hardware interrupts routed to PDs (defined in the ABI crate, which the build tool shares).
pub use frameshift_abi::boot_info::MAX_IRQS;

/// Most bytes one `PD_DEBUG_WRITE` carries (`x2`-`x7`).
pub const DEBUG_WRITE_MAX: u64 = 48;

/// How many faults a PD without a parent may have injected back into itself before the kernel
/// stops it: bounds a PD whose own abort handler keeps faulting.
pub const MAX_INJECTED_FAULTS: u32 = 64;

/// The time slice until the arch layer sets its own ([`Hypervisor::set_time_slice`]): 5 ms of
/// QEMU `virt`'s 62.5 MHz counter.
pub const DEFAULT_TIME_SLICE: u64 = 312_500;

/// One hardware interrupt routed to a PD (Microkit `<irq>`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IrqBinding {
    /// The PD that receives it.
    pub domain: DomainId,
    /// GIC INTID.
    pub intid: u32,
    /// The channel id the PD sees it on.
    pub channel: u8,
    /// Level (false) or edge (true) triggered.
    pub edge: bool,
}

/// What made the CPU leave the running context, decoded by the arch layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    /// `HVC #0`: a PD call (function id in `x0`). The saved PC is already past the HVC.
    Hypercall,
    /// A trapped `SMC` (`HCR_EL2.TSC`): refused; the saved PC still points at the SMC, whose
    /// length (from `ESR_EL2.IL`) is given.
    SecureMonitorCall(InstructionLength),
    /// A trapped `WFI`/`WFE`: the context yields the rest of its time slice. The saved PC still
    /// points at the instruction, whose length (from `ESR_EL2.IL`: a T32 `WFI` at EL0 is 16
    /// bits) is given.
    WaitForInterrupt(InstructionLength),
    /// The EL2 timer expired: the running context's budget is (normally) used up.
    TimerTick,
    /// The context faulted.
    Fault(FaultReport),
    /// A hardware interrupt arrived; the arch layer has masked it until the owner acknowledges.
    Interrupt(u32),
    /// The running vCPU's virtual timer fired (PPI 27). The arch layer keeps it masked for that
    /// vCPU until its VMM acknowledges it (`PD_VCPU_ACK_VPPI`,
    /// [`Arch::ack_virtual_ppi`](crate::Arch::ack_virtual_ppi)); the core reports it to the
    /// VMM as `FAULT_VM_VPPI`. Only ever reported for a vCPU.
    VirtualTimer,
}

/// Why the kernel stopped a PD, as `stopped pd=<name> reason=<word>` says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopReason {
    /// `PD_STOP` with `STOP_PANIC`.
    Panic,
    /// `PD_STOP` with `STOP_EXCEPTION`.
    Exception,
    /// A fault with no parent to take it, which could not be given back to the PD.
    Fault,
    /// Its parent's `fault` handler ended without a reply.
    Parent,
}

impl StopReason {
    /// The word on the console.
    pub const fn word(self) -> &'static str {
        match self {
            Self::Panic => "panic",
            Self::Exception => "exception",
            Self::Fault => "fault",
            Self::Parent => "parent",
        }
    }
}

/// Why the system stops.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HaltReason {
    /// No domain can run and nothing can wake one.
    Idle,
    /// A PD called `PD_SYSTEM_OFF`.
    SystemOff(DomainId),
    /// Nothing can run, and some context is blocked for ever: in a call whose server can never
    /// reply, or faulted with a parent that can never answer. A run that stops like this did
    /// not finish its work.
    Deadlock,
}

/// The final status of the run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Halt {
    /// The exit status (0 = success), at most 255.
    pub status: u8,
    /// Why.
    pub reason: HaltReason,
}

/// What the arch layer does next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Load this context's registers and enter it.
    Run(ContextId),
    /// The running context (this one) gets its fault back as a synchronous external abort at
    /// EL1, then resumes at its exception vector.
    InjectAbort(ContextId),
    /// Nothing can run now, but a PD's interrupt can still wake one: wait for it.
    WaitForInterrupt,
    /// Print the final status line and power off.
    Halt(Halt),
}

/// Event counters printed on the final status line.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// Faults taken by any domain.
    pub faults: u64,
    /// `PD_NOTIFY` calls accepted.
    pub notifications: u64,
    /// `PD_PPCALL` calls accepted.
    pub calls: u64,
    /// Times the timer switched to another context.
    pub preemptions: u64,
    /// Hardware interrupts delivered to PDs.
    pub interrupts: u64,
    /// PDs stopped because they could not go on: `PD_STOP`, or a fault with no parent to take
    /// it that could not be given back. A child its parent left stopped is not counted: the
    /// parent handled that fault.
    pub stopped: u64,
}

/// The whole hypervisor. `A` is the machine it runs on (the AArch64 EL2 layer, or the host fake).
///
/// Far too big for the EL2 stack: the kernel keeps it in a static, [`Hypervisor::EMPTY`] until
/// [`Hypervisor::boot`] fills it in place. Every field of `EMPTY` is zero (or not yet
/// initialised), so that static costs the image nothing (`.bss`).
#[derive(Debug)]
pub struct Hypervisor<A: Arch> {
    pub(crate) domains: Domains<A::Context>,
    pub(crate) engine: Engine<StaticStorage>,
    pub(crate) channels: ChannelTable,
    pub(crate) irqs: heapless::Vec<IrqBinding, MAX_IRQS>,
    /// Interrupts acknowledged by their PD since the arch layer last asked (bit = index in
    /// `irqs`).
    pub(crate) acknowledged: u64,
    pub(crate) current: Option<ContextId>,
    pub(crate) counters: Counters,
    /// Runnable contexts by priority (kernel/schedule.rs).
    pub(crate) ready: ReadyQueues,
    /// A full budget, in counter ticks.
    pub(crate) time_slice: u64,
    /// The counter value at the last exit (or start): time since then is charged to `charged`.
    pub(crate) slice_start: u64,
    /// The context on the CPU since `slice_start`, whose budget pays for it; `None` while idle.
    pub(crate) charged: Option<ContextId>,
    /// One byte per tracked frame for the audit, carved from the heap at boot.
    pub(crate) audit_scratch: Option<&'static mut [u8]>,
    /// Audits run since boot (the boot audit included).
    pub(crate) audits: u64,
}

impl<A: Arch> Hypervisor<A> {
    /// The hypervisor before boot: no domains, no memory; every field zero.
    pub const EMPTY: Self = Self {
        domains: Domains::new(),
        engine: Engine::new(StaticStorage::EMPTY),
        channels: ChannelTable::empty(),
        irqs: heapless::Vec::new(),
        acknowledged: 0,
        current: None,
        counters: Counters {
            faults: 0,
            notifications: 0,
            calls: 0,
            preemptions: 0,
            interrupts: 0,
            stopped: 0,
        },
        ready: ReadyQueues::new(),
        time_slice: 0,
        slice_start: 0,
        charged: None,
        audit_scratch: None,
        audits: 0,
    };

    /// The domains.
    pub fn domains(&self) -> &Domains<A::Context> {
        &self.domains
    }

    /// A domain (`None` for an id out of range).
    pub fn domain(&self, id: DomainId) -> Option<&Domain<A::Context>> {
        self.domains.get(id)
    }

    /// A context (`None` for an id out of range).
    pub fn context(&self, id: ContextId) -> Option<&Context<A::Context>> {
        self.domains.context(id)
    }

    /// A context, for the arch layer to save and load its state.
    pub fn context_mut(&mut self, id: ContextId) -> Option<&mut Context<A::Context>> {
        self.domains.context_mut(id)
    }

    /// The saved registers of a context (the arch layer copies the trap frame in and out).
    pub fn registers_mut(&mut self, id: ContextId) -> Option<&mut Registers> {
        self.domains
            .context_mut(id)
            .map(|context| &mut context.registers)
    }

    /// The `VTTBR_EL2` value of a context's address space.
    pub fn vttbr(&self, id: ContextId) -> Option<u64> {
        Some(self.domains.vspace(id.domain)?.table.vttbr())
    }

    /// The conversion engine.
    pub fn engine(&self) -> &Engine<StaticStorage> {
        &self.engine
    }

    /// The hardware interrupts routed to PDs (the arch layer configures and enables them).
    pub fn irqs(&self) -> &[IrqBinding] {
        &self.irqs
    }

    /// The next interrupt its PD has acknowledged since the last call; the arch layer unmasks it.
    pub fn take_acknowledged_irq(&mut self) -> Option<u32> {
        if self.acknowledged == 0 {
            return None;
        }
        let index = self.acknowledged.trailing_zeros() as usize;
        self.acknowledged &= !(1 << index);
        self.irqs.get(index).map(|binding| binding.intid)
    }

    /// The context that is on the CPU (or was, until the last exit).
    pub fn current(&self) -> Option<ContextId> {
        self.current
    }

    /// The counters so far.
    pub fn counters(&self) -> Counters {
        self.counters
    }

    /// Audits run since boot (the boot audit included).
    pub fn audits(&self) -> u64 {
        self.audits
    }

    /// Sets the length of a full time slice in counter ticks (at least 1) and gives every
    /// context a full budget. The arch layer calls it once, before [`Hypervisor::start`].
    pub fn set_time_slice(&mut self, ticks: u64) {
        self.time_slice = ticks.max(1);
        for (_, domain) in self.domains.iter_mut() {
            for context in domain.contexts.iter_mut() {
                context.budget = self.time_slice;
                context.overrun = 0;
            }
        }
    }

    /// A full time slice, in counter ticks.
    pub fn time_slice(&self) -> u64 {
        self.time_slice
    }

    /// The counter value at which the running context's budget runs out: the arch layer arms
    /// the EL2 timer for it after every decision that runs a context. `None` while nothing runs.
    pub fn slice_end(&self) -> Option<u64> {
        let context = self.domains.context(self.charged?)?;
        Some(self.slice_start.saturating_add(context.budget))
    }

    /// The contexts queued at `priority`, head first: the order they will run in.
    pub fn ready_queue(&self, priority: u8) -> impl Iterator<Item = ContextId> + '_ {
        self.ready.queue(priority)
    }

    /// Chooses the first context to run; `now` is the counter value.
    pub fn start(&mut self, now: u64) -> Decision {
        self.slice_start = now;
        self.schedule()
    }

    /// Handles an exit of the current context, whose registers the arch layer has saved into
    /// [`Hypervisor::registers_mut`], at counter value `now`. Console output (PD lines, fault
    /// lines) goes to `out`.
    pub fn handle(&mut self, arch: &mut A, exit: Exit, now: u64, out: &mut dyn Write) -> Decision {
        self.charge(now);
        let Some(current) = self.current else {
            if let Exit::Interrupt(intid) = exit {
                return self.interrupt(intid);
            }
            return self.schedule();
        };
        match exit {
            Exit::Hypercall => self.hypercall(arch, current, out),
            Exit::SecureMonitorCall(length) => {
                let registers = &mut self.domains[current].registers;
                registers.set_status(frameshift_abi::smccc::NOT_SUPPORTED);
                registers.pc = registers.pc.wrapping_add(length.bytes());
                self.schedule()
            }
            Exit::WaitForInterrupt(length) => {
                let context = &mut self.domains[current];
                context.registers.pc = context.registers.pc.wrapping_add(length.bytes());
                // A yield: the rest of the slice goes to the peers, and the context waits its
                // turn at the tail with a full one.
                context.refill(self.time_slice);
                self.ready.move_to_back(current);
                self.schedule()
            }
            Exit::TimerTick => {
                // `schedule` moves a context whose budget ran out to the tail; a tick that came
                // early changes nothing and the context runs on with what it has left.
                let decision = self.schedule();
                if decision != Decision::Run(current) && matches!(decision, Decision::Run(_)) {
                    self.counters.preemptions += 1;
                }
                decision
            }
            Exit::Fault(report) => self.fault(current, report, out),
            Exit::Interrupt(intid) => self.interrupt(intid),
            // Served with the VM calls (the protected-VM issue); until then a vCPU never runs.
            Exit::VirtualTimer => self.schedule(),
        }
    }

    /// Writes out every domain's partial console line (before the final status line).
    pub fn flush_console(&mut self, out: &mut dyn Write) {
        for (_, domain) in self.domains.iter_mut() {
            let _ = domain.line.flush_partial(&domain.name, out);
        }
    }

    /// Writes the final status line. For a deadlock, one line per blocked context comes first,
    /// naming whom it waits for: `blocked pd=<name> waits-for=<name> in=<call|fault>`.
    pub fn write_halt_line(&self, halt: &Halt, out: &mut dyn Write) -> fmt::Result {
        if halt.reason == HaltReason::Deadlock {
            self.write_blocked_lines(out)?;
        }
        write!(out, "FS|hypervisor|halt status={} reason=", halt.status)?;
        match halt.reason {
            HaltReason::Idle => out.write_str("idle")?,
            HaltReason::SystemOff(by) => {
                let name = self.domain(by).map_or("?", |d| d.name.as_str());
                write!(out, "system-off by={name}")?;
            }
            HaltReason::Deadlock => out.write_str("deadlock")?,
        }
        let counters = self.counters;
        write!(
            out,
            " faults={} notifications={} calls={} preemptions={} stopped={}",
            counters.faults,
            counters.notifications,
            counters.calls,
            counters.preemptions,
            counters.stopped
        )?;
        if !self.irqs.is_empty() {
            write!(out, " interrupts={}", counters.interrupts)?;
        }
        writeln!(out)
    }

    /// The domain `context` waits for, and in what, if it is blocked on another domain.
    pub(crate) fn blocked_on(&self, context: ContextId) -> Option<(DomainId, &'static str)> {
        let record = self.domains.context(context)?;
        match record.state {
            RunState::Calling { server, .. } => Some((server, "call")),
            RunState::Faulted => self.domains[context.domain]
                .parent
                .map(|parent| (parent, "fault")),
            _ => None,
        }
    }

    fn write_blocked_lines(&self, out: &mut dyn Write) -> fmt::Result {
        for context in self.domains.context_ids() {
            if let Some((on, what)) = self.blocked_on(context) {
                let name = |d: DomainId| self.domain(d).map_or("?", |d| d.name.as_str());
                writeln!(
                    out,
                    "FS|hypervisor|blocked pd={} waits-for={} in={what}",
                    name(context.domain),
                    name(on)
                )?;
            }
        }
        Ok(())
    }
}
