//! The Microkit kernel state machine: domains, priorities, notifications, protected procedure
//! calls, fault routing and the console, driven by the exits the arch layer reports.
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
//! whose time it runs on once `init` is done (docs/ABI.md, "Passive PDs").
//!
//! # Scheduling
//!
//! Microkit's fixed priorities, with seL4's round robin among equals. Every domain that has work
//! sits in the FIFO ready queue of its priority ([`ReadyQueues`]); the head of the highest
//! non-empty queue runs. Each domain has a budget (what is left of its time slice), charged only
//! for the time it runs:
//!
//! | event | where the domain goes | its budget |
//! | --- | --- | --- |
//! | a higher priority becomes runnable | stays at the head of its queue | kept, not refilled |
//! | its budget reaches zero | tail of its queue | refilled |
//! | it yields (`WFI`/`WFE`) | tail of its queue | refilled |
//! | it blocks (`PD_REPLY_RECV` with nothing pending, a fault to its parent) | out of the queues | kept |
//! | it wakes (an event arrives, its parent restarts it) | tail of its queue | kept |
//! | its protected call returns (or the server stopped) | head of its queue | kept |
//!
//! A domain that blocked just as its budget ran out is refilled only when it is queued again,
//! and then at the tail: a refilled budget never goes ahead of a peer.
//!
//! So each runnable domain gets a full slice per round of its queue whatever the others do:
//! being preempted, or waking a higher priority, never moves anyone ahead of a peer. A call
//! returns to the head because Microkit calls go only to higher priorities: at the caller's
//! priority it is a preemption, and the caller was charged nothing meanwhile.
//!
//! Time is the arch layer's counter (ticks), passed with every exit: the kernel charges the
//! running domain for the ticks since it last decided, and [`Kernel::slice_end`] says when the
//! running domain's budget runs out, which the arch layer programs into the EL2 timer. Host
//! tests pass time explicitly.
//!
//! Nothing here touches hardware: the arch layer saves registers into [`Domain::registers`],
//! calls [`Kernel::handle`], and loads the registers of the domain the returned [`Decision`]
//! names.

use core::fmt::{self, Write};

use frameshift_abi::boot_info::{
    ChannelDesc, DomainDesc, IrqDesc, DOMAIN_FLAG_PASSIVE, DOMAIN_KIND_PD, DOMAIN_KIND_VM,
    IRQ_TRIGGER_EDGE, IRQ_TRIGGER_LEVEL, NONE,
};
use frameshift_abi::domain_name::DomainNameError;
use frameshift_abi::pd_call::{
    MessageInfo, EVENT_FAULT, EVENT_NOTIFIED, EVENT_PROTECTED, PD_DEBUG_WRITE, PD_IRQ_ACK,
    PD_NOTIFY, PD_PPCALL, PD_REPLY_RECV, PD_STOP, PD_SYSTEM_OFF, REPLY_MESSAGE, REPLY_NONE,
    STOP_EXCEPTION, STOP_PANIC,
};
use frameshift_abi::smccc::{INVALID_PARAMETER, NOT_SUPPORTED, SUCCESS};

use super::channels::{ChannelError, ChannelTable, ChannelUse};
use super::console::{ConsoleName, LineBuffer};
use super::domain::{Domain, DomainIndex, DomainKind, RunState};
use super::fault::{FaultReport, InstructionLength};
use super::ready_queues::ReadyQueues;
use super::registers::Registers;

/// Most domains a system may have (Microkit's limit is 63; one bit each in a `u64`).
pub const MAX_DOMAINS: usize = 63;

/// Highest Microkit priority.
pub const MAX_PRIORITY: u8 = 254;

/// Most bytes one `PD_DEBUG_WRITE` carries (`x2`-`x7`).
pub const DEBUG_WRITE_MAX: u64 = 48;

/// How many faults a PD without a parent may have injected back into itself before the kernel
/// stops it: bounds a PD whose own abort handler keeps faulting.
pub const MAX_INJECTED_FAULTS: u32 = 64;

/// Most hardware interrupts routed to PDs (defined in the ABI crate, which the build tool shares).
pub use frameshift_abi::boot_info::MAX_IRQS;

/// The time slice until the arch layer sets its own ([`Kernel::set_time_slice`]): 5 ms of QEMU
/// `virt`'s 62.5 MHz counter.
pub const DEFAULT_TIME_SLICE: u64 = 312_500;

/// One hardware interrupt routed to a PD (Microkit `<irq>`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IrqBinding {
    /// The PD that receives it.
    pub domain: DomainIndex,
    /// GIC INTID.
    pub intid: u32,
    /// The channel id the PD sees it on.
    pub channel: u8,
    /// Level (false) or edge (true) triggered.
    pub edge: bool,
}

/// Why the kernel refused to build the system from the boot information.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BuildError {
    /// No domains, or more than [`MAX_DOMAINS`].
    DomainCount(usize),
    /// Domain `index` has an unknown kind.
    DomainKind(usize),
    /// Domain `index` has a priority above [`MAX_PRIORITY`].
    Priority(usize),
    /// Domain `index` names a parent that does not exist, is itself, comes later, or is a VM.
    Parent(usize),
    /// The channel table is inconsistent.
    Channel(ChannelError),
    /// Interrupt record `index` names a bad domain, channel id, trigger or INTID, or repeats one.
    Irq(usize),
    /// More interrupt records than [`MAX_IRQS`].
    TooManyIrqs {
        /// How many records the boot information has.
        count: usize,
    },
    /// Domain `index` has a name that breaks the domain-name rule (`domain_name::check`).
    Name {
        /// The domain.
        index: usize,
        /// What is wrong with its name.
        error: DomainNameError,
    },
    /// Domain `index` has the same name as the earlier domain `other`.
    DuplicateName {
        /// The domain.
        index: usize,
        /// The earlier domain with that name.
        other: usize,
    },
}

impl fmt::Display for BuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::DomainCount(count) => write!(f, "{count} domains (need 1..={MAX_DOMAINS})"),
            Self::DomainKind(index) => write!(f, "domain {index}: unknown kind"),
            Self::Priority(index) => write!(f, "domain {index}: priority above {MAX_PRIORITY}"),
            Self::Parent(index) => write!(f, "domain {index}: invalid parent"),
            Self::Channel(ChannelError::TooMany) => f.write_str("too many channels"),
            Self::Channel(ChannelError::BadDomain { index }) => {
                write!(f, "channel {index}: unknown domain")
            }
            Self::Channel(ChannelError::BadId { index }) => {
                write!(f, "channel {index}: id above 61")
            }
            Self::Channel(ChannelError::DuplicateId { index }) => {
                write!(f, "channel {index}: id already used at one end")
            }
            Self::Irq(index) => write!(f, "irq {index}: invalid or duplicate"),
            Self::TooManyIrqs { count } => write!(f, "{count} irqs (at most {MAX_IRQS})"),
            Self::Name { index, error } => write!(f, "domain {index}: {error}"),
            Self::DuplicateName { index, other } => {
                write!(f, "domain {index}: name already used by domain {other}")
            }
        }
    }
}

/// What made the CPU leave the running domain.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    /// `HVC #0`: a PD call (function id in `x0`). The saved PC is already past the HVC.
    Hypercall,
    /// A trapped `SMC` (`HCR_EL2.TSC`): refused; the saved PC still points at the SMC, whose
    /// length (from `ESR_EL2.IL`) is given.
    SecureMonitorCall(InstructionLength),
    /// A trapped `WFI`/`WFE`: the domain yields the rest of its time slice. The saved PC still
    /// points at the instruction, whose length (from `ESR_EL2.IL`: a T32 `WFI` at EL0 is 16
    /// bits) is given.
    WaitForInterrupt(InstructionLength),
    /// The EL2 timer expired: the running domain's budget is (normally) used up.
    TimerTick,
    /// The domain faulted.
    Fault(FaultReport),
    /// A hardware interrupt arrived; the arch layer has masked it until the owner acknowledges.
    Interrupt(u32),
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
    SystemOff(DomainIndex),
    /// Nothing can run, and some domain is blocked for ever: in a call whose server can never
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
    /// Load this domain's registers and enter it.
    Run(DomainIndex),
    /// The running domain (this one) gets its fault back as a synchronous external abort at EL1,
    /// then resumes at its exception vector.
    InjectAbort(DomainIndex),
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
    /// Times the timer switched to another domain.
    pub preemptions: u64,
    /// Hardware interrupts delivered to PDs.
    pub interrupts: u64,
    /// PDs stopped because they could not go on: `PD_STOP`, or a fault with no parent to take
    /// it that could not be given back. A child its parent left stopped is not counted: the
    /// parent handled that fault.
    pub stopped: u64,
}

/// The kernel's view of the whole system.
#[derive(Debug)]
pub struct Kernel {
    domains: heapless::Vec<Domain, MAX_DOMAINS>,
    channels: ChannelTable,
    irqs: heapless::Vec<IrqBinding, MAX_IRQS>,
    /// Interrupts acknowledged by their PD since the arch layer last asked (bit = index in
    /// `irqs`).
    acknowledged: u64,
    current: Option<DomainIndex>,
    counters: Counters,
    /// Runnable domains by priority ("Scheduling" above).
    ready: ReadyQueues,
    /// A full budget, in counter ticks.
    time_slice: u64,
    /// The counter value at the last exit (or start): time since then is charged to `charged`.
    slice_start: u64,
    /// The domain on the CPU since `slice_start`, whose budget pays for it; `None` while idle.
    charged: Option<DomainIndex>,
}

impl Kernel {
    /// A kernel with no domains, usable as a `static` initialiser; fill it with [`Kernel::init`].
    pub const fn empty() -> Self {
        Self {
            domains: heapless::Vec::new(),
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
            time_slice: DEFAULT_TIME_SLICE,
            slice_start: 0,
            charged: None,
        }
    }

    /// Builds the system from the (already parsed) boot-information tables, by value (host
    /// tests). The EL2 kernel uses [`Kernel::init`] on its static instead: a `Kernel` is tens
    /// of KiB, too big to move around on the hypervisor stack.
    pub fn new(
        domains: &[DomainDesc],
        channels: &[ChannelDesc],
        irqs: &[IrqDesc],
    ) -> Result<Self, BuildError> {
        let mut kernel = Self::empty();
        kernel.init(domains, channels, irqs)?;
        Ok(kernel)
    }

    /// Replaces this kernel's state, in place, with the system the boot-information tables
    /// describe. Every index is checked; nothing is trusted. On an error the kernel is left
    /// empty.
    pub fn init(
        &mut self,
        domains: &[DomainDesc],
        channels: &[ChannelDesc],
        irqs: &[IrqDesc],
    ) -> Result<(), BuildError> {
        let result = self.fill(domains, channels, irqs);
        if result.is_err() {
            self.clear();
        }
        result
    }

    fn clear(&mut self) {
        self.domains.clear();
        self.channels = ChannelTable::empty();
        self.irqs.clear();
        self.acknowledged = 0;
        self.current = None;
        self.counters = Counters::default();
        self.ready = ReadyQueues::new();
        self.slice_start = 0;
        self.charged = None;
    }

    fn fill(
        &mut self,
        domains: &[DomainDesc],
        channels: &[ChannelDesc],
        irqs: &[IrqDesc],
    ) -> Result<(), BuildError> {
        self.clear();
        if domains.is_empty() || domains.len() > MAX_DOMAINS {
            return Err(BuildError::DomainCount(domains.len()));
        }
        for (index, desc) in domains.iter().enumerate() {
            let kind = match desc.kind {
                DOMAIN_KIND_PD => DomainKind::ProtectionDomain,
                DOMAIN_KIND_VM => DomainKind::VirtualMachine,
                _ => return Err(BuildError::DomainKind(index)),
            };
            if desc.priority > MAX_PRIORITY {
                return Err(BuildError::Priority(index));
            }
            let parent = if desc.parent == NONE {
                None
            } else {
                let parent = usize::try_from(desc.parent).map_err(|_| BuildError::Parent(index))?;
                // Parents come first (boot_info.rs), so this also rules out cycles.
                if parent >= index || domains[parent].kind != DOMAIN_KIND_PD {
                    return Err(BuildError::Parent(index));
                }
                Some(DomainIndex(parent as u8))
            };
            let (state, registers) = match kind {
                DomainKind::ProtectionDomain => (
                    RunState::Ready,
                    Registers::initial(desc.entry, desc.stack_top),
                ),
                // VMs are started by their VMM in a later issue; until then they never run.
                DomainKind::VirtualMachine => (RunState::Stopped, Registers::default()),
            };
            // Every console line of this domain starts with its name: it must print as itself
            // and differ from every other (the boot-info reader checked this too).
            let name = ConsoleName::from_padded(&desc.name)
                .map_err(|error| BuildError::Name { index, error })?;
            if let Some(other) = self.domains.iter().position(|d| d.name == name) {
                return Err(BuildError::DuplicateName { index, other });
            }
            let domain = Domain {
                name,
                kind,
                priority: desc.priority,
                passive: kind == DomainKind::ProtectionDomain
                    && desc.flags & DOMAIN_FLAG_PASSIVE != 0,
                parent,
                child_id: u64::from(desc.child_id),
                state,
                registers,
                pending_notifications: 0,
                pending_faults: 0,
                pending_callers: 0,
                budget: self.time_slice,
                serving: None,
                handling_fault: None,
                last_fault: None,
                faults: 0,
                line: LineBuffer::new(),
            };
            // Cannot fail: the count was checked above.
            let _ = self.domains.push(domain);
            // Every PD starts runnable (its `init`), queued in table order.
            self.sync(DomainIndex(index as u8));
        }
        self.channels = ChannelTable::new(channels, domains.len()).map_err(BuildError::Channel)?;
        if irqs.len() > MAX_IRQS {
            return Err(BuildError::TooManyIrqs { count: irqs.len() });
        }
        for (index, irq) in irqs.iter().enumerate() {
            let domain = usize::try_from(irq.domain)
                .ok()
                .filter(|&d| d < domains.len() && domains[d].kind == DOMAIN_KIND_PD)
                .ok_or(BuildError::Irq(index))?;
            let domain = DomainIndex(domain as u8);
            let channel = u8::try_from(irq.channel_id)
                .ok()
                .filter(|&c| u32::from(c) <= super::channels::MAX_CHANNEL_ID)
                .ok_or(BuildError::Irq(index))?;
            let edge = match irq.trigger {
                IRQ_TRIGGER_LEVEL => false,
                IRQ_TRIGGER_EDGE => true,
                _ => return Err(BuildError::Irq(index)),
            };
            let clash = self
                .irqs
                .iter()
                .any(|b| b.intid == irq.irq || (b.domain == domain && b.channel == channel));
            // Only shared peripheral interrupts can be given to a PD; SGIs and PPIs belong to
            // the hypervisor (the EL2 timer among them).
            if !(32..1020).contains(&irq.irq) || clash || self.channels.uses(domain, channel) {
                return Err(BuildError::Irq(index));
            }
            let binding = IrqBinding {
                domain,
                intid: irq.irq,
                channel,
                edge,
            };
            self.irqs
                .push(binding)
                .map_err(|_| BuildError::Irq(index))?;
        }
        Ok(())
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

    /// Number of domains.
    pub fn domain_count(&self) -> usize {
        self.domains.len()
    }

    /// A domain's record (`None` for an index out of range).
    pub fn domain(&self, index: DomainIndex) -> Option<&Domain> {
        self.domains.get(index.get())
    }

    /// The domain that is on the CPU (or was, until the last exit).
    pub fn current(&self) -> Option<DomainIndex> {
        self.current
    }

    /// The counters so far.
    pub fn counters(&self) -> Counters {
        self.counters
    }

    /// The saved registers of `index` (the arch layer copies the trap frame in and out).
    pub fn registers_mut(&mut self, index: DomainIndex) -> Option<&mut Registers> {
        self.domains.get_mut(index.get()).map(|d| &mut d.registers)
    }

    /// Sets the length of a full time slice in counter ticks (at least 1) and gives every
    /// domain a full budget. The arch layer calls it once, before [`Kernel::start`].
    pub fn set_time_slice(&mut self, ticks: u64) {
        self.time_slice = ticks.max(1);
        for domain in self.domains.iter_mut() {
            domain.budget = self.time_slice;
        }
    }

    /// A full time slice, in counter ticks.
    pub fn time_slice(&self) -> u64 {
        self.time_slice
    }

    /// The counter value at which the running domain's budget runs out: the arch layer arms the
    /// EL2 timer for it after every decision that runs a domain. `None` while nothing runs.
    pub fn slice_end(&self) -> Option<u64> {
        let domain = self.domains.get(self.charged?.get())?;
        Some(self.slice_start.saturating_add(domain.budget))
    }

    /// The domains queued at `priority`, head first: the order they will run in.
    pub fn ready_queue(&self, priority: u8) -> impl Iterator<Item = DomainIndex> + '_ {
        self.ready.queue(priority)
    }

    /// Chooses the first domain to run; `now` is the counter value.
    pub fn start(&mut self, now: u64) -> Decision {
        self.slice_start = now;
        self.schedule()
    }

    /// Handles an exit of the current domain, whose registers the arch layer has saved into
    /// [`Kernel::registers_mut`], at counter value `now`. Console output (PD lines, fault lines)
    /// goes to `out`.
    pub fn handle(&mut self, exit: Exit, now: u64, out: &mut dyn Write) -> Decision {
        self.charge(now);
        let Some(current) = self.current else {
            if let Exit::Interrupt(intid) = exit {
                return self.interrupt(intid);
            }
            return self.schedule();
        };
        match exit {
            Exit::Hypercall => self.hypercall(current, out),
            Exit::SecureMonitorCall(length) => {
                let registers = &mut self.domains[current.get()].registers;
                registers.set_status(NOT_SUPPORTED);
                registers.pc = registers.pc.wrapping_add(length.bytes());
                self.schedule()
            }
            Exit::WaitForInterrupt(length) => {
                let domain = &mut self.domains[current.get()];
                domain.registers.pc = domain.registers.pc.wrapping_add(length.bytes());
                // A yield: the rest of the slice goes to the peers, and the domain waits its turn
                // at the tail with a full one.
                domain.budget = self.time_slice;
                self.ready.move_to_back(current);
                self.schedule()
            }
            Exit::TimerTick => {
                // `schedule` moves a domain whose budget ran out to the tail; a tick that came
                // early changes nothing and the domain runs on with what it has left.
                let decision = self.schedule();
                if decision != Decision::Run(current) && matches!(decision, Decision::Run(_)) {
                    self.counters.preemptions += 1;
                }
                decision
            }
            Exit::Fault(report) => self.fault(current, report, out),
            Exit::Interrupt(intid) => self.interrupt(intid),
        }
    }

    /// Charges the domain that ran for the ticks up to `now` (`schedule` acts on a
    /// budget that ran out).
    fn charge(&mut self, now: u64) {
        let elapsed = now.saturating_sub(self.slice_start);
        self.slice_start = self.slice_start.max(now);
        if let Some(domain) = self.charged.and_then(|c| self.domains.get_mut(c.get())) {
            domain.budget = domain.budget.saturating_sub(elapsed);
        }
    }

    /// A domain whose budget is used up goes to the tail of its queue with a full one: its peers
    /// of equal priority each get their slice before it runs again. One that blocked at that
    /// moment keeps its empty budget until it is queued again (`enqueue`).
    fn expire(&mut self) {
        let Some(charged) = self.charged else {
            return;
        };
        let spent = self
            .domains
            .get(charged.get())
            .is_some_and(|d| d.budget == 0);
        if spent && self.ready.contains(charged) {
            self.domains[charged.get()].budget = self.time_slice;
            self.ready.move_to_back(charged);
        }
    }

    /// Queues a domain that has just become runnable: at the head of its queue if `at_head`
    /// (a caller whose call ended), else at the tail. A domain whose budget ran out goes to the
    /// tail with a full one, wherever it would have gone: nothing ever jumps ahead of a peer
    /// with a refilled budget.
    fn enqueue(&mut self, index: DomainIndex, at_head: bool) {
        let domain = &mut self.domains[index.get()];
        let priority = domain.priority;
        if domain.budget == 0 {
            domain.budget = self.time_slice;
            self.ready.push_back(index, priority);
        } else if at_head {
            self.ready.push_front(index, priority);
        } else {
            self.ready.push_back(index, priority);
        }
    }

    /// A hardware interrupt: a notification on its channel for the PD it belongs to.
    fn interrupt(&mut self, intid: u32) -> Decision {
        if let Some(binding) = self.irqs.iter().find(|b| b.intid == intid).copied() {
            let domain = &mut self.domains[binding.domain.get()];
            if domain.state != RunState::Stopped {
                domain.pending_notifications |= 1 << binding.channel;
                self.counters.interrupts += 1;
                self.sync(binding.domain);
            }
        }
        self.schedule()
    }

    /// Writes out every domain's partial console line (before the final status line).
    pub fn flush_console(&mut self, out: &mut dyn Write) {
        for domain in self.domains.iter_mut() {
            let _ = domain.line.flush_partial(&domain.name, out);
        }
    }

    /// Writes the final status line. For a deadlock, one line per blocked domain comes first,
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

    /// The domain `index` waits for, and in what, if it is blocked on another domain.
    fn blocked_on(&self, index: DomainIndex) -> Option<(DomainIndex, &'static str)> {
        let domain = self.domains.get(index.get())?;
        match domain.state {
            RunState::Calling { server, .. } => Some((server, "call")),
            RunState::Faulted => domain.parent.map(|parent| (parent, "fault")),
            _ => None,
        }
    }

    fn write_blocked_lines(&self, out: &mut dyn Write) -> fmt::Result {
        for index in 0..self.domains.len() {
            let index = DomainIndex(index as u8);
            if let Some((on, what)) = self.blocked_on(index) {
                let name = |d: DomainIndex| self.domain(d).map_or("?", |d| d.name.as_str());
                writeln!(
                    out,
                    "FS|hypervisor|blocked pd={} waits-for={} in={what}",
                    name(index),
                    name(on)
                )?;
            }
        }
        Ok(())
    }

    fn hypercall(&mut self, current: DomainIndex, out: &mut dyn Write) -> Decision {
        let registers = self.domains[current.get()].registers;
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
                    reason: HaltReason::SystemOff(current),
                })
            }
            PD_IRQ_ACK => self.irq_ack(current),
            PD_STOP => self.stop_self(current, out),
            _ => self.finish(current, NOT_SUPPORTED),
        }
    }

    /// Returns `status` to the caller and lets the scheduler decide (a call may have made a
    /// higher-priority domain runnable).
    fn finish(&mut self, current: DomainIndex, status: i64) -> Decision {
        self.domains[current.get()].registers.set_status(status);
        self.schedule()
    }

    fn debug_write(&mut self, current: DomainIndex, out: &mut dyn Write) -> Decision {
        let domain = &mut self.domains[current.get()];
        let count = domain.registers.x[1];
        if count > DEBUG_WRITE_MAX {
            return self.finish(current, INVALID_PARAMETER);
        }
        let mut bytes = [0u8; DEBUG_WRITE_MAX as usize];
        for (chunk, register) in bytes.chunks_exact_mut(8).zip(&domain.registers.x[2..8]) {
            chunk.copy_from_slice(&register.to_le_bytes());
        }
        let _ = domain
            .line
            .push_bytes(&domain.name, &bytes[..count as usize], out);
        self.finish(current, SUCCESS)
    }

    /// `PD_STOP`: the runtime gave up (panic, unexpected exception). Only this PD stops.
    fn stop_self(&mut self, current: DomainIndex, out: &mut dyn Write) -> Decision {
        let reason = match self.domains[current.get()].registers.x[1] {
            STOP_PANIC => StopReason::Panic,
            STOP_EXCEPTION => StopReason::Exception,
            _ => return self.finish(current, INVALID_PARAMETER),
        };
        self.stop_abnormally(current, reason, out);
        self.schedule()
    }

    /// Stops a PD that cannot go on, says why on the console, and counts it for the halt line.
    fn stop_abnormally(&mut self, index: DomainIndex, reason: StopReason, out: &mut dyn Write) {
        let domain = &mut self.domains[index.get()];
        // Its last words first: a partial line would otherwise be lost or come after the stop.
        let _ = domain.line.flush_partial(&domain.name, out);
        let _ = writeln!(
            out,
            "FS|hypervisor|stopped pd={} reason={}",
            domain.name,
            reason.word()
        );
        self.counters.stopped += 1;
        self.stop(index);
    }

    fn irq_ack(&mut self, current: DomainIndex) -> Decision {
        let channel = self.domains[current.get()].registers.x[1];
        let index = self
            .irqs
            .iter()
            .position(|b| b.domain == current && u64::from(b.channel) == channel);
        match index {
            Some(index) => {
                self.acknowledged |= 1 << index;
                self.finish(current, SUCCESS)
            }
            None => self.finish(current, INVALID_PARAMETER),
        }
    }

    fn notify(&mut self, current: DomainIndex) -> Decision {
        let channel = self.domains[current.get()].registers.x[1];
        let Some(far) = self.channels.far_end(current, channel, ChannelUse::Notify) else {
            return self.finish(current, INVALID_PARAMETER);
        };
        let target = &mut self.domains[far.domain.get()];
        if target.state != RunState::Stopped {
            target.pending_notifications |= 1 << far.channel;
            // A waiting receiver wakes at the tail of its queue; the notifier keeps its place.
            self.sync(far.domain);
        }
        self.counters.notifications += 1;
        self.finish(current, SUCCESS)
    }

    fn call(&mut self, current: DomainIndex) -> Decision {
        let channel = self.domains[current.get()].registers.x[1];
        let Some(far) = self.channels.far_end(current, channel, ChannelUse::Call) else {
            return self.finish(current, INVALID_PARAMETER);
        };
        let server = &self.domains[far.domain.get()];
        // Microkit: a PPC goes only to a strictly higher priority, so calls never form a cycle
        // (a parent calling a child that faults still blocks both: `idle` reports it).
        if server.priority <= self.domains[current.get()].priority
            || server.state == RunState::Stopped
        {
            return self.finish(current, INVALID_PARAMETER);
        }
        self.domains[current.get()].state = RunState::Calling {
            server: far.domain,
            server_channel: far.channel,
            delivered: false,
        };
        self.domains[far.domain.get()].pending_callers |= current.bit();
        self.sync(current);
        self.sync(far.domain);
        self.counters.calls += 1;
        self.schedule()
    }

    /// Ends the current handler: sends its reply (`x1` = `REPLY_MESSAGE`) or none
    /// (`REPLY_NONE`) to the caller it served or the child whose fault it handled, then waits.
    fn reply_recv(&mut self, current: DomainIndex, out: &mut dyn Write) -> Decision {
        let domain = &mut self.domains[current.get()];
        let reply = domain.registers;
        let replied = match reply.x[1] {
            REPLY_NONE => false,
            REPLY_MESSAGE => true,
            // Refused before anything moves: the handler is still running and still owes.
            _ => return self.finish(current, INVALID_PARAMETER),
        };
        let child = domain.handling_fault.take();
        domain.state = RunState::Waiting;
        // With another event already pending it stays runnable, and keeps its place.
        self.sync(current);
        if let Some(caller) = self.domains[current.get()].serving.take() {
            let caller_domain = &mut self.domains[caller.get()];
            if matches!(caller_domain.state, RunState::Calling { server, .. } if server == current)
            {
                if replied {
                    caller_domain.registers.x[2..=10].copy_from_slice(&reply.x[2..=10]);
                    caller_domain.registers.set_status(SUCCESS);
                } else {
                    // No reply: the caller learns it at once instead of waiting forever.
                    caller_domain.registers.set_status(INVALID_PARAMETER);
                }
                caller_domain.state = RunState::Ready;
                self.resume_caller(caller);
            }
        }
        if let Some(child) = child.filter(|c| self.domains[c.get()].state == RunState::Faulted) {
            if replied {
                // seL4's fault reply: the child retries the faulting instruction with every
                // register as it was. A parent that fixed nothing sees the same fault again.
                self.domains[child.get()].state = RunState::Ready;
                self.sync(child);
            } else {
                let _ = writeln!(
                    out,
                    "FS|hypervisor|stopped pd={} reason={}",
                    self.domains[child.get()].name,
                    StopReason::Parent.word()
                );
                self.stop(child);
            }
        }
        self.schedule()
    }

    fn fault(
        &mut self,
        current: DomainIndex,
        report: FaultReport,
        out: &mut dyn Write,
    ) -> Decision {
        self.counters.faults += 1;
        let domain = &mut self.domains[current.get()];
        domain.faults = domain.faults.saturating_add(1);
        let parent = domain.parent;
        let parent = parent.filter(|&p| self.domains[p.get()].state != RunState::Stopped);
        let name = self.domains[current.get()].name.clone();
        if let Some(parent) = parent {
            let _ = writeln!(
                out,
                "FS|hypervisor|fault pd={} {} to={}",
                name,
                report,
                self.domains[parent.get()].name
            );
            // Blocked, not stopped: the parent's reply decides. Its callers and notifications
            // wait, so a restarted server can still finish the call it was serving.
            let domain = &mut self.domains[current.get()];
            domain.last_fault = Some(report);
            domain.state = RunState::Faulted;
            self.domains[parent.get()].pending_faults |= current.bit();
            self.sync(current);
            self.sync(parent);
            return self.schedule();
        }
        let _ = writeln!(out, "FS|hypervisor|fault pd={name} {report}");
        if report.injectable && self.domains[current.get()].faults <= MAX_INJECTED_FAULTS {
            return Decision::InjectAbort(current);
        }
        self.stop_abnormally(current, StopReason::Fault, out);
        self.schedule()
    }

    /// Stops a domain for good. A caller blocked on it gets `INVALID_PARAMETER` back, so no PD
    /// waits forever for a dead server; a faulted child waiting for its answer stops too, since
    /// nobody is left to restart it.
    fn stop(&mut self, index: DomainIndex) {
        let domain = &mut self.domains[index.get()];
        let was = domain.state;
        domain.state = RunState::Stopped;
        domain.serving = None;
        domain.handling_fault = None;
        domain.pending_notifications = 0;
        domain.pending_faults = 0;
        domain.pending_callers = 0;
        let parent = domain.parent;
        self.ready.remove(index);
        // Take back what it was owed or owing elsewhere, so no stale bit makes a PD runnable.
        if let RunState::Calling { server, .. } = was {
            self.domains[server.get()].pending_callers &= !index.bit();
            self.sync(server);
        }
        if let Some(parent) = parent {
            self.domains[parent.get()].pending_faults &= !index.bit();
            self.sync(parent);
        }
        for caller in 0..self.domains.len() {
            let caller = DomainIndex(caller as u8);
            let domain = &mut self.domains[caller.get()];
            if matches!(domain.state, RunState::Calling { server, .. } if server == index) {
                domain.registers.set_status(INVALID_PARAMETER);
                domain.state = RunState::Ready;
                self.resume_caller(caller);
            }
        }
        // Children come after their parent (boot_info.rs), so one forward pass also reaches
        // grandchildren whose parent this loop has just stopped.
        for child in index.get() + 1..self.domains.len() {
            let orphaned = self.domains[child].state == RunState::Faulted
                && self.domains[child]
                    .parent
                    .is_some_and(|p| self.domains[p.get()].state == RunState::Stopped);
            if orphaned {
                self.stop(DomainIndex(child as u8));
            }
        }
    }

    /// A caller whose protected call ended runs next at its priority, with the budget it had:
    /// calls go only to higher priorities, so at its own priority the call was a preemption.
    fn resume_caller(&mut self, caller: DomainIndex) {
        if !self.ready.contains(caller) {
            self.enqueue(caller, true);
        }
    }

    /// Makes `index`'s place in the ready queues agree with whether it has work: a domain that
    /// just got work joins the tail of its queue; one that has none left leaves it. A domain
    /// already queued keeps its place.
    fn sync(&mut self, index: DomainIndex) {
        if self.has_work(index) {
            if !self.ready.contains(index) {
                self.enqueue(index, false);
            }
        } else {
            self.ready.remove(index);
        }
    }

    /// The undelivered caller of `server` with the highest priority (lowest index on a tie).
    fn next_caller(&self, server: DomainIndex) -> Option<DomainIndex> {
        let mut callers = self.domains.get(server.get())?.pending_callers;
        let mut best: Option<(u8, DomainIndex)> = None;
        while callers != 0 {
            let caller = DomainIndex(callers.trailing_zeros() as u8);
            callers &= callers - 1;
            let priority = self.domains.get(caller.get()).map_or(0, |d| d.priority);
            if best.is_none_or(|(best_priority, _)| priority > best_priority) {
                best = Some((priority, caller));
            }
        }
        best.map(|(_, caller)| caller)
    }

    fn has_work(&self, index: DomainIndex) -> bool {
        let Some(domain) = self.domains.get(index.get()) else {
            return false;
        };
        match domain.state {
            RunState::Ready => true,
            RunState::Waiting => {
                domain.pending_notifications != 0
                    || domain.pending_faults != 0
                    || domain.pending_callers != 0
            }
            RunState::Calling { .. } | RunState::Faulted | RunState::Stopped => false,
        }
    }

    /// Runs the head of the highest non-empty ready queue ("Scheduling" above).
    fn schedule(&mut self) -> Decision {
        self.expire();
        // Each pass either returns or takes a stale event (or the domain) out: bounded.
        loop {
            let Some(chosen) = self.ready.first() else {
                return self.idle();
            };
            if self.domains[chosen.get()].state == RunState::Waiting {
                self.deliver(chosen);
                if self.domains[chosen.get()].state == RunState::Waiting {
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
        let wakeable = self.irqs.iter().any(|b| {
            !matches!(
                self.domains[b.domain.get()].state,
                RunState::Stopped | RunState::Faulted
            )
        });
        if wakeable {
            return Decision::WaitForInterrupt;
        }
        // Nothing runs and nothing can wake anyone: a domain still blocked on another (a call,
        // a fault for its parent) waits for ever, and the work it was doing is lost.
        let deadlocked =
            (0..self.domains.len()).any(|d| self.blocked_on(DomainIndex(d as u8)).is_some());
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

    /// Gives a waiting domain its next event (calls first, then child faults, then
    /// notifications) in the `PD_REPLY_RECV` result registers.
    fn deliver(&mut self, index: DomainIndex) {
        if let Some(caller) = self.next_caller(index) {
            self.domains[index.get()].pending_callers &= !caller.bit();
            let (message, server_channel) = match self.domains[caller.get()].state {
                RunState::Calling { server_channel, .. } => {
                    let mut message = [0u64; 9];
                    message.copy_from_slice(&self.domains[caller.get()].registers.x[2..=10]);
                    (message, server_channel)
                }
                // A stale bit (never set without the caller's state): consumed above.
                _ => return,
            };
            if let RunState::Calling { delivered, .. } = &mut self.domains[caller.get()].state {
                *delivered = true;
            }
            let server = &mut self.domains[index.get()];
            server.registers.set_status(SUCCESS);
            server.registers.x[1] = EVENT_PROTECTED;
            server.registers.x[2..=10].copy_from_slice(&message);
            server.registers.x[11] = u64::from(server_channel);
            server.serving = Some(caller);
            server.state = RunState::Ready;
            return;
        }
        let pending_faults = self.domains[index.get()].pending_faults;
        if pending_faults != 0 {
            let child = DomainIndex(pending_faults.trailing_zeros() as u8);
            let child_id = self.domains[child.get()].child_id;
            let report = self.domains[child.get()].last_fault;
            let parent = &mut self.domains[index.get()];
            parent.pending_faults &= !child.bit();
            if let Some(report) = report {
                let (details, count) = report.message();
                parent.registers.set_status(SUCCESS);
                parent.registers.x[1] = EVENT_FAULT;
                parent.registers.x[2] = MessageInfo::new(report.kind.label(), count).0;
                parent.registers.x[3..6].copy_from_slice(&details);
                parent.registers.x[11] = child_id;
                parent.handling_fault = Some(child);
                parent.state = RunState::Ready;
                return;
            }
        }
        let domain = &mut self.domains[index.get()];
        if domain.pending_notifications != 0 {
            domain.registers.set_status(SUCCESS);
            domain.registers.x[1] = EVENT_NOTIFIED;
            domain.registers.x[2] = domain.pending_notifications;
            domain.pending_notifications = 0;
            domain.state = RunState::Ready;
        }
    }
}
