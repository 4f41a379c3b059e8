//! Virtual machines on the Microkit kernel: the VMM calls (docs/ABI.md, "VMM calls"), the guest
//! calls served at EL2 (family 1), and a vCPU's faults to its VMM ("VM faults").
//!
//! A vCPU is a context of its VM's domain and is scheduled like a PD's, at the VM's priority.
//! Its run states:
//!
//! | state | how it gets there | how it leaves |
//! | --- | --- | --- |
//! | `Stopped` | boot; `PD_VCPU_STOP`; `CPU_OFF`, `SYSTEM_OFF`, `SYSTEM_RESET`; teardown; no reply | `PD_VCPU_RESTART`; a sibling's `CPU_ON` |
//! | `Ready` | started; a fault answered with a reply that resumes it | a fault; a stop |
//! | `Faulted` | a fault its VMM must answer (`vm_fault` says which) | the reply (resumes, or no reply: stopped); a stop; teardown |
//!
//! A stop, a restart and a teardown cancel a fault still waiting for its reply: the VMM's
//! reply to it then finds no fault to apply to and changes nothing.
//!
//! A protected VM's registers never reach its VMM once it has run: the VMM may read, write and
//! start its vCPUs only while the VM is *fresh* (no vCPU started since boot or the last
//! teardown); its faults carry no PC, and a data abort carries only the value a write sends.

use core::fmt::Write;

use frameshift_abi::guest_call::{
    features_bitmap, KVM_UID, MEMINFO_GRANULE, MEMINFO_RANGE, PEER_HOST, PEER_NONE,
    PSCI_AFFINITY_INFO, PSCI_CPU_OFF, PSCI_CPU_ON, PSCI_FEATURES, PSCI_NOT_SUPPORTED,
    PSCI_SYSTEM_OFF, PSCI_SYSTEM_RESET, PSCI_VERSION, PSCI_VERSION_1_1, SMCCC_ARCH_FEATURES,
    SMCCC_VERSION, SMCCC_VERSION_1_1, SPLIT_SHARED_BIT, VENDOR_HYP_CALL_UID, VENDOR_HYP_FEATURES,
};
use frameshift_abi::smccc::{NOT_SUPPORTED, SUCCESS};
use frameshift_abi::vcpu::{
    DataAccess, FAULT_VM_ABORT, FAULT_VM_DATA_ABORT, FAULT_VM_EXCEPTION, FAULT_VM_HVC,
    FAULT_VM_POWER, FAULT_VM_SMC, FAULT_VM_VPPI, REG_PC, REG_PSTATE, REG_SP, REG_X30, RESUME_RETRY,
    RESUME_SKIP,
};

use super::fault::{FaultKind, FaultReport, InstructionLength};
use crate::addr::Ipa;
use crate::arch::{Arch, ContextKind, VirtualIrq, VIRTUAL_TIMER_PPI};
use crate::call::{
    CallError, ChildId, Event, GuestCall, GuestCallError, Message, PageRange, PdCall, PsciError,
    Reply,
};
use crate::descriptor::{PageState, Rights};
use crate::domain::{ContextId, ConversionMode, DomainId, DomainKind, Registers, RunState};
use crate::engine::Request;
use crate::hypervisor::{Decision, Hypervisor};
use crate::ownership::Operation;

/// `ESR_EL2.EC` of a data abort from a lower exception level (Arm ARM D17.2.40).
const EC_DATA_ABORT_LOWER: u64 = 0x24;
/// `ESR_EL2.IL`: the trapped instruction is 32 bits wide.
const ESR_IL: u64 = 1 << 25;
/// The length of `HVC` (A64 and A32 alike): the saved PC is this far past it.
const HVC_LENGTH: u64 = 4;
/// The most message registers a VM fault carries.
const VM_FAULT_REGISTERS: usize = 8;

/// A vCPU's fault as its VMM sees it, and what a reply to it may apply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VmFault {
    /// `FAULT_VM_*`.
    pub label: u64,
    /// MR0.. as docs/ABI.md, "VM faults", lists them.
    pub details: [u64; VM_FAULT_REGISTERS],
    /// How many of `details` the message carries.
    pub count: usize,
    /// Bytes `RESUME_SKIP` moves the PC by (the trapped instruction's length; 0 where nothing
    /// trapped).
    pub skip: u64,
    /// The access of a data abort, whose read value a `RESUME_SKIP` writes back.
    pub access: Option<DataAccess>,
}

impl VmFault {
    fn new(label: u64, details: &[u64], skip: u64) -> Self {
        let count = details.len().min(VM_FAULT_REGISTERS);
        let mut registers = [0u64; VM_FAULT_REGISTERS];
        registers[..count].copy_from_slice(&details[..count]);
        Self {
            label,
            details: registers,
            count,
            skip,
            access: None,
        }
    }

    /// The `EVENT_FAULT` its VMM receives for vCPU `child`.
    pub fn event(&self, child: u8) -> Event {
        Event::fault(self.label, &self.details[..self.count], child)
    }
}

/// Whether an Arm architecture call, PSCI call or vendor discovery call is one the hypervisor
/// serves (`SMCCC_ARCH_FEATURES`).
fn arch_feature(function: u32) -> bool {
    matches!(
        function,
        SMCCC_VERSION | SMCCC_ARCH_FEATURES | VENDOR_HYP_CALL_UID | VENDOR_HYP_FEATURES
    ) || psci_feature(function)
}

/// Whether a function id is a PSCI call the hypervisor implements (`PSCI_FEATURES`;
/// `SMCCC_VERSION` too, which Linux asks about this way).
fn psci_feature(function: u32) -> bool {
    matches!(
        function,
        PSCI_VERSION
            | PSCI_CPU_OFF
            | PSCI_CPU_ON
            | PSCI_AFFINITY_INFO
            | PSCI_SYSTEM_OFF
            | PSCI_SYSTEM_RESET
            | PSCI_FEATURES
            | SMCCC_VERSION
    )
}

/// The instruction length `ESR_EL2.IL` gives.
fn trapped_length(esr: u64) -> u64 {
    if esr & ESR_IL != 0 {
        4
    } else {
        2
    }
}

/// One of the core's registers of a vCPU (`x0`-`x30`, SP, PC, PSTATE), by `vcpu::REG_*`.
fn core_register(registers: &mut Registers, number: u64) -> Option<&mut u64> {
    match number {
        0..=REG_X30 => registers.x.get_mut(number as usize),
        REG_SP => Some(&mut registers.sp),
        REG_PC => Some(&mut registers.pc),
        REG_PSTATE => Some(&mut registers.pstate),
        _ => None,
    }
}

impl<A: Arch> Hypervisor<A> {
    // ---------------------------------------------------------------------- VMM calls --

    /// The VMM calls (every `PdCall` not served in microkit.rs), from PD `current`.
    pub(crate) fn vmm_call(
        &mut self,
        arch: &mut A,
        current: ContextId,
        call: PdCall,
        out: &mut dyn Write,
    ) -> Result<Reply, CallError> {
        let caller = current.domain;
        match call {
            PdCall::VcpuRestart { vcpu, entry } => {
                let vcpu = self.vcpu_of(caller, vcpu)?;
                self.steerable(vcpu)?;
                self.cancel_vm_fault(vcpu);
                let record = &mut self.domains[vcpu];
                record.registers.pc = entry;
                record.registers.pstate = A::ENTRY_PSTATE;
                record.state = RunState::Ready;
                self.domains[vcpu.domain].fresh = false;
                self.sync(vcpu);
                Ok(Reply::Status(SUCCESS))
            }
            PdCall::VcpuStop { vcpu } => {
                let vcpu = self.vcpu_of(caller, vcpu)?;
                self.power_down(vcpu);
                Ok(Reply::Status(SUCCESS))
            }
            PdCall::VcpuReadRegister { vcpu, register } => {
                let vcpu = self.vcpu_of(caller, vcpu)?;
                self.steerable(vcpu)?;
                let number = u64::from(register.get());
                let record = &mut self.domains[vcpu];
                let value = match core_register(&mut record.registers, number) {
                    Some(value) => *value,
                    None => A::vcpu_register(&record.arch, number)
                        .ok_or(CallError::Invalid("no such vCPU register"))?,
                };
                Ok(Reply::success(&[value]))
            }
            PdCall::VcpuWriteRegister {
                vcpu,
                register,
                value,
            } => {
                let vcpu = self.vcpu_of(caller, vcpu)?;
                self.steerable(vcpu)?;
                let number = u64::from(register.get());
                let record = &mut self.domains[vcpu];
                if matches!(record.state, RunState::Ready | RunState::Waiting) {
                    return Err(CallError::Invalid("the vCPU is running"));
                }
                match core_register(&mut record.registers, number) {
                    Some(slot) => *slot = value,
                    None => {
                        if !A::set_vcpu_register(&mut record.arch, number, value) {
                            return Err(CallError::Invalid("register not writable"));
                        }
                    }
                }
                Ok(Reply::Status(SUCCESS))
            }
            PdCall::VcpuInjectIrq {
                vcpu,
                intid,
                priority,
                group,
            } => {
                let vcpu = self.vcpu_of(caller, vcpu)?;
                let irq = VirtualIrq {
                    intid: u32::from(intid),
                    priority,
                    group,
                };
                A::inject_virtual_irq(&mut self.domains[vcpu].arch, irq)
                    .map_err(|_| CallError::Invalid("every list register is in use"))?;
                Ok(Reply::Status(SUCCESS))
            }
            PdCall::VcpuAckVppi { vcpu, intid } => {
                let vcpu = self.vcpu_of(caller, vcpu)?;
                if !A::ack_virtual_ppi(&mut self.domains[vcpu].arch, u32::from(intid)) {
                    return Err(CallError::Invalid("not a virtual PPI"));
                }
                Ok(Reply::Status(SUCCESS))
            }
            PdCall::MemDonate { vm, range } => {
                self.vmm_memory(arch, caller, vm, Operation::Donate, range, Rights::empty())
            }
            PdCall::MemShareWithGuest { vm, range, rights } => {
                self.vmm_memory(arch, caller, vm, Operation::ShareWithGuest, range, rights)
            }
            PdCall::MemUnshareFromGuest { vm, range } => self.vmm_memory(
                arch,
                caller,
                vm,
                Operation::UnshareFromGuest,
                range,
                Rights::empty(),
            ),
            PdCall::MemLend { vm, range, rights } => {
                self.vmm_memory(arch, caller, vm, Operation::Lend, range, rights)
            }
            PdCall::MemReclaim { vm, range } => {
                self.vmm_memory(arch, caller, vm, Operation::Reclaim, range, Rights::empty())
            }
            PdCall::VmTeardown { vm } => {
                let vm = self.vcpu_of(caller, vm)?.domain;
                self.teardown_vm(arch, vm, out)?;
                Ok(Reply::Status(SUCCESS))
            }
            PdCall::VmConsoleWrite { vm, bytes } => {
                let vm = self.vcpu_of(caller, vm)?.domain;
                let domain = &mut self.domains[vm];
                let _ = domain.line.push_bytes(&domain.name, bytes.as_slice(), out);
                Ok(Reply::Status(SUCCESS))
            }
            // Served in microkit.rs; never routed here.
            PdCall::DebugWrite(_)
            | PdCall::Notify { .. }
            | PdCall::IrqAck { .. }
            | PdCall::PpCall { .. }
            | PdCall::ReplyRecv { .. }
            | PdCall::SystemOff { .. }
            | PdCall::Stop(_)
            | PdCall::FrameCaps { .. }
            | PdCall::Audit { .. } => Err(CallError::NotSupported),
        }
    }

    /// The vCPU `id` of a VM whose parent is `caller`: refused for anything else (no such
    /// child, or a child PD).
    fn vcpu_of(&self, caller: DomainId, id: ChildId) -> Result<ContextId, CallError> {
        self.domains
            .child_context(caller, id.get())
            .filter(|vcpu| !self.domains[vcpu.domain].is_pd())
            .ok_or(CallError::Invalid("not a vCPU of the caller's VM"))
    }

    /// Whether the VMM may see or steer `vcpu`'s registers: always for a VM that is not
    /// protected; for a protected one only while it is fresh.
    fn steerable(&self, vcpu: ContextId) -> Result<(), CallError> {
        let vm = &self.domains[vcpu.domain];
        if vm.is_protected() && !vm.fresh {
            return Err(CallError::Invalid("a protected VM that has run"));
        }
        Ok(())
    }

    /// A VMM memory call on its VM `vm` through the engine (window positions).
    fn vmm_memory(
        &mut self,
        arch: &mut A,
        caller: DomainId,
        vm: ChildId,
        operation: Operation,
        range: PageRange,
        rights: Rights,
    ) -> Result<Reply, CallError> {
        let guest = self.vcpu_of(caller, vm)?.domain;
        let request = Request {
            rights,
            ..Request::new(operation, caller, guest, range.ipa, range.pages)
        };
        let attempt = self.attempt(arch, caller, guest, operation, range);
        let result = self.engine.convert(arch, &self.domains, request);
        self.record_conversion(arch, attempt, result);
        result?;
        Ok(Reply::Status(SUCCESS))
    }

    /// `PD_VM_TEARDOWN`: every vCPU off and fresh, pending faults cancelled, the guard table
    /// cleared, and (for a protected VM) the guest's frames back to its VMM zeroed. The VM can
    /// then be populated and started again.
    fn teardown_vm(
        &mut self,
        arch: &mut A,
        vm: DomainId,
        out: &mut dyn Write,
    ) -> Result<(), CallError> {
        for index in 0..self.domains[vm].contexts.len() {
            let vcpu = ContextId {
                domain: vm,
                index: index as u8,
            };
            self.power_down(vcpu);
            let fresh = arch.new_context(ContextKind::Vcpu {
                mpidr: index as u64,
            });
            let record = &mut self.domains[vcpu];
            record.registers = Registers::default();
            record.arch = fresh;
        }
        let domain = &mut self.domains[vm];
        let _ = domain.line.flush_partial(&domain.name, out);
        domain.mmio_guard.clear();
        domain.fresh = true;
        if domain.vspace.link.is_none() {
            return Ok(());
        }
        domain.vspace.alive = false;
        let by = self.domains[vm].parent.unwrap_or(vm);
        let whole = PageRange {
            ipa: Ipa(0),
            pages: 0,
        };
        let attempt = self.attempt(arch, by, vm, Operation::Teardown, whole);
        let result = self.engine.teardown(arch, &mut self.domains, vm);
        self.record_conversion(arch, attempt, result);
        result?;
        // Every frame is back: the VM lives again, empty, for its VMM to populate.
        self.domains[vm].vspace.alive = true;
        Ok(())
    }

    /// Stops a vCPU where it is and cancels any fault of it still waiting for a reply.
    fn power_down(&mut self, vcpu: ContextId) {
        self.cancel_vm_fault(vcpu);
        self.domains[vcpu].state = RunState::Stopped;
        self.ready.remove(vcpu);
    }

    /// Forgets `vcpu`'s pending fault: undelivered, it is taken back; delivered, the handler's
    /// reply finds nothing to apply (its `handling_fault` is cleared).
    fn cancel_vm_fault(&mut self, vcpu: ContextId) {
        let record = &mut self.domains[vcpu];
        record.vm_fault = None;
        let child_id = record.child_id;
        let parent = self.domains[vcpu.domain].parent;
        if let (Some(parent), Some(child_id)) = (parent, child_id) {
            let events = &mut self.domains[parent].events;
            events.child_faults &= !(1 << child_id);
            if events.handling_fault == Some(child_id) {
                events.handling_fault = None;
            }
            self.sync(ContextId::pd(parent));
        }
    }

    // ------------------------------------------------------------------- VM faults --

    /// Hands `fault` of the running vCPU to its VMM: the vCPU blocks until the VMM's handler
    /// ends. With no live VMM to take it, the vCPU stops.
    fn report_vm_fault(&mut self, vcpu: ContextId, fault: VmFault) -> Decision {
        let parent = self.domains[vcpu.domain]
            .parent
            .filter(|&parent| self.domains[ContextId::pd(parent)].state != RunState::Stopped);
        let record = &mut self.domains[vcpu];
        match (parent, record.child_id) {
            (Some(parent), Some(child_id)) => {
                record.vm_fault = Some(fault);
                record.state = RunState::Faulted;
                let events = &mut self.domains[parent].events;
                // A handler still busy with an older event of this vCPU (a power fault, before
                // a sibling's `CPU_ON` restarted it) must not answer this one unseen.
                if events.handling_fault == Some(child_id) {
                    events.handling_fault = None;
                }
                events.child_faults |= 1 << child_id;
                self.sync(vcpu);
                self.sync(ContextId::pd(parent));
            }
            _ => self.power_down(vcpu),
        }
        self.schedule()
    }

    /// A vCPU's stage-2 abort or unhandled exception (`Exit::Fault`).
    pub(crate) fn vm_fault(&mut self, arch: &A, vcpu: ContextId, report: FaultReport) -> Decision {
        self.counters.faults += 1;
        let record = &mut self.domains[vcpu];
        record.faults = record.faults.saturating_add(1);
        let vm = &self.domains[vcpu.domain];
        let protected = vm.is_protected();
        let pc = if protected { 0 } else { report.pc };
        let skip = trapped_length(report.esr);
        if report.kind == FaultKind::Unknown {
            let fault = VmFault::new(FAULT_VM_EXCEPTION, &[report.esr, pc], skip);
            return self.report_vm_fault(vcpu, fault);
        }
        let page = report.ipa.page_base();
        let data = (report.esr >> 26) & 0x3F == EC_DATA_ABORT_LOWER;
        // Only a translation fault outside the VM's memory can be a device. A protected guest
        // that has registered any page with MMIO_GUARD must also have registered this one, so
        // a VMM cannot pass its memory off as MMIO; one that never registered a page (an
        // unmodified kernel, with no pKVM guest driver) has not enrolled, as with pKVM's
        // enrolment, and its device accesses are emulated.
        let emulated = data
            && report.kind == FaultKind::Translation
            && !self.in_vm_memory(arch, vcpu.domain, page)
            && (!protected || vm.mmio_guard.is_empty() || vm.mmio_guard.contains(&page));
        if !emulated {
            let fault = VmFault::new(FAULT_VM_ABORT, &[report.ipa.get(), report.esr], skip);
            return self.report_vm_fault(vcpu, fault);
        }
        let access = DataAccess::from_esr(report.esr);
        let written = if access.valid && access.write {
            let value = match access.register {
                31 => 0,
                register => self.domains[vcpu].registers.x[usize::from(register)],
            };
            value & (u64::MAX >> (64 - 8 * access.bytes()))
        } else {
            0
        };
        let details = [report.ipa.get(), access.to_word(), written, report.esr, pc];
        let fault = VmFault {
            access: Some(access),
            ..VmFault::new(FAULT_VM_DATA_ABORT, &details, skip)
        };
        self.report_vm_fault(vcpu, fault)
    }

    /// A vCPU's `SMC` (always trapped): to its VMM with `x0`-`x7`.
    pub(crate) fn vm_smc(&mut self, vcpu: ContextId, length: InstructionLength) -> Decision {
        let registers = self.domains[vcpu].registers;
        let fault = VmFault::new(FAULT_VM_SMC, &registers.x[..8], length.bytes());
        self.report_vm_fault(vcpu, fault)
    }

    /// The vCPU's virtual timer fired: to its VMM as `FAULT_VM_VPPI`.
    pub(crate) fn vm_virtual_timer(&mut self, vcpu: ContextId) -> Decision {
        let fault = VmFault::new(FAULT_VM_VPPI, &[u64::from(VIRTUAL_TIMER_PPI)], 0);
        self.report_vm_fault(vcpu, fault)
    }

    /// Whether a reply `message` may answer `vcpu`'s pending fault: `RESUME_RETRY` always;
    /// `RESUME_SKIP` except for an abort the VMM may not emulate; no other label.
    pub(crate) fn check_vm_reply(
        &self,
        vcpu: ContextId,
        message: &Message,
    ) -> Result<(), CallError> {
        let Some(fault) = self.domains[vcpu].vm_fault else {
            return Ok(());
        };
        match message.label() {
            RESUME_RETRY => Ok(()),
            RESUME_SKIP if fault.label != FAULT_VM_ABORT => Ok(()),
            _ => Err(CallError::Invalid("reply label not allowed for this fault")),
        }
    }

    /// Applies a reply [`Hypervisor::check_vm_reply`] accepted and resumes the vCPU.
    pub(crate) fn apply_vm_reply(&mut self, vcpu: ContextId, message: &Message) {
        let record = &mut self.domains[vcpu];
        let Some(fault) = record.vm_fault.take() else {
            return;
        };
        if message.label() == RESUME_SKIP {
            let registers = &mut record.registers;
            match fault.label {
                FAULT_VM_DATA_ABORT => {
                    // The read's value goes to the register the syndrome names, truncated and
                    // extended as it says; x31 is XZR, so nothing is written.
                    if let Some(access) = fault.access.filter(|a| a.valid && !a.write) {
                        if let Some(slot) = registers.x.get_mut(usize::from(access.register)) {
                            *slot = access.read_result(message.registers[0]);
                        }
                    }
                }
                FAULT_VM_HVC | FAULT_VM_SMC => {
                    registers.x[..4].copy_from_slice(&message.registers[..4]);
                }
                _ => {}
            }
            registers.pc = registers.pc.wrapping_add(fault.skip);
        }
        record.state = RunState::Ready;
        self.sync(vcpu);
    }

    // ------------------------------------------------------------------ guest calls --

    /// An `HVC` from a vCPU: a guest call served here, or (an id the hypervisor does not
    /// serve) a `FAULT_VM_HVC` for its VMM.
    pub(crate) fn guest_call(
        &mut self,
        arch: &mut A,
        vcpu: ContextId,
        out: &mut dyn Write,
    ) -> Decision {
        let call = match GuestCall::decode(&self.domains[vcpu].registers) {
            Ok(call) => call,
            Err(GuestCallError {
                error: CallError::NotSupported,
                ..
            }) => return self.forward_hvc(vcpu),
            Err(error) => return self.finish_with(vcpu, error.reply()),
        };
        let vm = vcpu.domain;
        let reply = match call {
            GuestCall::SmcccVersion => Reply::Status(SMCCC_VERSION_1_1 as i64),
            GuestCall::SmcccArchFeatures { function } => Reply::Status(if arch_feature(function) {
                SUCCESS
            } else {
                NOT_SUPPORTED
            }),
            GuestCall::PsciVersion => Reply::Status(PSCI_VERSION_1_1 as i64),
            GuestCall::PsciFeatures { function } => Reply::Status(if psci_feature(function) {
                SUCCESS
            } else {
                PSCI_NOT_SUPPORTED
            }),
            GuestCall::CpuOff => return self.power_off(vcpu, PSCI_CPU_OFF, false),
            GuestCall::SystemOff => return self.power_off(vcpu, PSCI_SYSTEM_OFF, true),
            GuestCall::SystemReset => return self.power_off(vcpu, PSCI_SYSTEM_RESET, true),
            GuestCall::CpuOn {
                target,
                entry,
                context,
            } => match self.cpu_on(arch, vm, target, entry, context) {
                Ok(()) => Reply::Status(SUCCESS),
                Err(error) => Reply::Status(error.code()),
            },
            GuestCall::AffinityInfo { target } => match self.vcpu_at(vm, target) {
                Some(target) if self.domains[target].state == RunState::Stopped => {
                    Reply::Status(frameshift_abi::guest_call::AFFINITY_OFF as i64)
                }
                Some(_) => Reply::Status(frameshift_abi::guest_call::AFFINITY_ON as i64),
                None => Reply::Status(CallError::Psci(PsciError::InvalidParameters).code()),
            },
            GuestCall::VendorUid => Reply::with_status(KVM_UID[0] as i64, &KVM_UID[1..]),
            GuestCall::VendorFeatures => {
                let words = features_bitmap();
                Reply::with_status(words[0] as i64, &words[1..])
            }
            GuestCall::HypMeminfo => {
                let alias = match self.domains[vm].kind {
                    DomainKind::Vm {
                        mode: ConversionMode::Split,
                        ..
                    } => SPLIT_SHARED_BIT,
                    _ => 0,
                };
                Reply::with_status(MEMINFO_GRANULE as i64, &[MEMINFO_RANGE, alias])
            }
            GuestCall::MemShare(range) => self.guest_memory(arch, vm, Operation::Share, range),
            GuestCall::MemUnshare(range) => self.guest_memory(arch, vm, Operation::Unshare, range),
            GuestCall::MemRelinquish(range) => {
                self.guest_memory(arch, vm, Operation::Relinquish, range)
            }
            GuestCall::MmioGuard { page } => match self.mmio_guard(arch, vm, page) {
                Ok(()) => Reply::Status(SUCCESS),
                Err(error) => Reply::Status(error.code()),
            },
            GuestCall::MemState(range) => self.mem_state(arch, vm, range),
            GuestCall::ConsoleWrite(bytes) => {
                let domain = &mut self.domains[vm];
                let _ = domain.line.push_bytes(&domain.name, bytes.as_slice(), out);
                Reply::Status(SUCCESS)
            }
        };
        self.finish_with(vcpu, reply)
    }

    /// An `HVC` the hypervisor does not serve: to the VMM with `x0`-`x7`. The saved PC is
    /// moved back onto the `HVC`, so `RESUME_RETRY` retries it and `RESUME_SKIP` passes it.
    fn forward_hvc(&mut self, vcpu: ContextId) -> Decision {
        let registers = &mut self.domains[vcpu].registers;
        registers.pc = registers.pc.wrapping_sub(HVC_LENGTH);
        let fault = VmFault::new(FAULT_VM_HVC, &registers.x[..8], HVC_LENGTH);
        self.report_vm_fault(vcpu, fault)
    }

    /// `MEM_SHARE`, `MEM_UNSHARE`, `MEM_RELINQUISH` through the engine, all or nothing:
    /// `x1` = the pages done (all, or none).
    fn guest_memory(
        &mut self,
        arch: &mut A,
        vm: DomainId,
        operation: Operation,
        range: PageRange,
    ) -> Reply {
        let attempt = self.attempt(arch, vm, vm, operation, range);
        let result = self
            .domains
            .vspace(vm)
            .and_then(|vspace| vspace.link)
            .ok_or(crate::error::Error::NotLinked)
            .and_then(|link| {
                let request = Request::new(operation, link.host, vm, range.ipa, range.pages);
                self.engine.convert(arch, &self.domains, request)
            });
        self.record_conversion(arch, attempt, result);
        match result {
            Ok(()) => Reply::success(&[range.pages]),
            Err(error) => Reply::with_status(CallError::Refused(error).code(), &[0]),
        }
    }

    /// `MMIO_GUARD`: registers an MMIO page (again is fine). Refused for the VM's own memory
    /// or with the table full.
    fn mmio_guard(&mut self, arch: &A, vm: DomainId, page: Ipa) -> Result<(), CallError> {
        if self.in_vm_memory(arch, vm, page) {
            return Err(CallError::Invalid("the page is the VM's memory"));
        }
        let guard = &mut self.domains[vm].mmio_guard;
        if guard.contains(&page) {
            return Ok(());
        }
        guard
            .push(page)
            .map_err(|_| CallError::Invalid("the guard table is full"))
    }

    /// Whether the page at `page` is the VM's memory: inside its window (either half in split
    /// mode), or mapped in its stage 2.
    fn in_vm_memory(&self, arch: &A, vm: DomainId, page: Ipa) -> bool {
        let vspace = &self.domains[vm].vspace;
        if let Some(link) = vspace.link {
            let private = match link.mode {
                ConversionMode::Split => page.private_ipa(),
                ConversionMode::History => page,
            };
            if link.window.host_ipa(private).is_some() {
                return true;
            }
        }
        vspace.table.lookup(arch, page).is_some()
    }

    /// The guest's view of one page: (state, peer, rights, the IPA it is mapped at).
    fn page_view(&self, arch: &A, vm: DomainId, ipa: Ipa) -> [u64; 4] {
        let vspace = &self.domains[vm].vspace;
        let mode = vspace.link.map(|link| link.mode);
        let candidates = match mode {
            Some(ConversionMode::Split) => [ipa.private_ipa(), ipa.private_ipa().shared_alias()],
            _ => [ipa, ipa],
        };
        for at in candidates {
            if let Some(leaf) = vspace.table.lookup(arch, at) {
                let peer = match leaf.state {
                    PageState::SharedOwned | PageState::SharedBorrowed => PEER_HOST,
                    PageState::Owned | PageState::Passthrough => PEER_NONE,
                };
                return [
                    leaf.state as u64,
                    peer,
                    u64::from(leaf.rights.bits()),
                    at.get(),
                ];
            }
        }
        [0, PEER_NONE, 0, 0]
    }

    /// `FS_MEM_STATE`: the first page's state and how many pages from it share it.
    fn mem_state(&self, arch: &A, vm: DomainId, range: PageRange) -> Reply {
        let first = self.page_view(arch, vm, range.ipa);
        let same = (1..range.pages)
            .take_while(|&index| {
                let ipa = Ipa(range.ipa.get() + index * crate::addr::PAGE_SIZE);
                self.page_view(arch, vm, ipa)[..3] == first[..3]
            })
            .count() as u64;
        Reply::success(&[same + 1, first[0], first[1], first[2], first[3]])
    }

    /// The vCPU of `vm` whose MPIDR affinity is `target` (Aff0 = its index).
    fn vcpu_at(&self, vm: DomainId, target: u64) -> Option<ContextId> {
        let index = u8::try_from(target).ok()?;
        (usize::from(index) < self.domains[vm].contexts.len())
            .then_some(ContextId { domain: vm, index })
    }

    /// PSCI `CPU_ON`: starts a stopped sibling at `entry` with `x0` = `context`, MMU off.
    fn cpu_on(
        &mut self,
        arch: &A,
        vm: DomainId,
        target: u64,
        entry: u64,
        context: u64,
    ) -> Result<(), CallError> {
        let target = self
            .vcpu_at(vm, target)
            .ok_or(CallError::Psci(PsciError::InvalidParameters))?;
        if self.domains[target].state != RunState::Stopped {
            return Err(CallError::Psci(PsciError::AlreadyOn));
        }
        let in_memory = entry >> crate::addr::IPA_BITS == 0
            && self.in_vm_memory(arch, vm, Ipa(entry).page_base());
        if !in_memory {
            return Err(CallError::Psci(PsciError::InvalidAddress));
        }
        let fresh = arch.new_context(ContextKind::Vcpu {
            mpidr: u64::from(target.index),
        });
        let record = &mut self.domains[target];
        record.registers = Registers::initial(entry, 0, A::ENTRY_PSTATE);
        record.registers.x[0] = context;
        record.arch = fresh;
        record.state = RunState::Ready;
        self.sync(target);
        Ok(())
    }

    /// PSCI `CPU_OFF` (this vCPU) or `SYSTEM_OFF` / `SYSTEM_RESET` (`whole`: every vCPU of
    /// this VM, never the machine): the vCPUs stop, and the VMM hears of it as
    /// `FAULT_VM_POWER`.
    fn power_off(&mut self, vcpu: ContextId, function: u32, whole: bool) -> Decision {
        if whole {
            for index in 0..self.domains[vcpu.domain].contexts.len() {
                self.power_down(ContextId {
                    domain: vcpu.domain,
                    index: index as u8,
                });
            }
        } else {
            self.power_down(vcpu);
        }
        let parent = self.domains[vcpu.domain]
            .parent
            .filter(|&parent| self.domains[ContextId::pd(parent)].state != RunState::Stopped);
        if let (Some(parent), Some(child_id)) = (parent, self.domains[vcpu].child_id) {
            self.domains[vcpu].vm_fault =
                Some(VmFault::new(FAULT_VM_POWER, &[u64::from(function)], 0));
            self.domains[parent].events.child_faults |= 1 << child_id;
            self.sync(ContextId::pd(parent));
        }
        self.schedule()
    }
}
