//! Host tests of virtual machines on the fake arch: the VMM calls, the guest calls served at
//! EL2 and a vCPU's faults, each played from the VMM's or the guest's side as its runtime would
//! (registers set, then `HVC`, or the fault the arch layer would report). Every accepted call
//! is checked for its result and a clean I1-I4 audit; every refused one for its code and for
//! leaving the frame table, the tables, memory and every register but the result unchanged.

extern crate std;

use std::string::String;
use std::vec::Vec;

use frameshift_abi::boot_info::{
    MappingDesc, DOMAIN_FLAG_PROTECTED, DOMAIN_FLAG_SPLIT, DOMAIN_KIND_PD, DOMAIN_KIND_VM,
    MAPPING_KIND_REGION, MAPPING_KIND_WINDOW, MAPPING_STATE_NO_PAGE, MAPPING_STATE_OWNED, NONE,
    RIGHT_EXECUTE, RIGHT_READ, RIGHT_WRITE,
};
use frameshift_abi::guest_call::{
    self as guest, features_bitmap, AFFINITY_OFF, AFFINITY_ON, KVM_UID, PEER_HOST, PEER_NONE,
    PSCI_ALREADY_ON, PSCI_INVALID_ADDRESS, PSCI_INVALID_PARAMETERS, PSCI_NOT_SUPPORTED,
    SPLIT_SHARED_BIT,
};
use frameshift_abi::pd_call::{
    MessageInfo, CAP_DERIVED, CAP_ORIGINAL, EVENT_FAULT, PD_AUDIT, PD_FRAME_CAPS, PD_MEM_DONATE,
    PD_MEM_LEND, PD_MEM_RECLAIM, PD_MEM_SHARE_WITH_GUEST, PD_MEM_UNSHARE_FROM_GUEST, PD_REPLY_RECV,
    PD_VCPU_ACK_VPPI, PD_VCPU_INJECT_IRQ, PD_VCPU_READ_REG, PD_VCPU_RESTART, PD_VCPU_STOP,
    PD_VCPU_WRITE_REG, PD_VM_CONSOLE_WRITE, PD_VM_TEARDOWN, REPLY_MESSAGE, REPLY_NONE,
};
use frameshift_abi::smccc::{INVALID_PARAMETER, NOT_REQUIRED, NOT_SUPPORTED, SUCCESS};
use frameshift_abi::vcpu::{
    DataAccess, FAULT_VM_ABORT, FAULT_VM_DATA_ABORT, FAULT_VM_EXCEPTION, FAULT_VM_HVC,
    FAULT_VM_POWER, FAULT_VM_SMC, FAULT_VM_VPPI, REG_MPIDR_EL1, REG_PC, REG_SCTLR_EL1,
    RESUME_RETRY, RESUME_SKIP,
};

use super::test_system::{domain_desc, TestSystem};
use super::*;
use crate::addr::{Ipa, PhysAddr, PAGE_SIZE};
use crate::arch::fake::FakeArch;
use crate::arch::{Arch, VirtualIrq};
use crate::descriptor::PageState;
use crate::domain::{ContextId, DomainId, Registers, RunState};
use crate::hypervisor::{Decision, Exit, HaltReason};

const CONVERTIBLE: u64 = 0x4200_0000;
/// The guest's RAM: 8 pages at this IPA, private from boot.
const RAM: u64 = 0x4000_0000;
const RAM_PAGES: u64 = 8;
/// The VMM's window onto it.
const WINDOW: u64 = 0x2000_0000;
/// An IPA outside the guest's memory, for MMIO.
const MMIO: u64 = 0x1000_0000;

const VMM: ContextId = ContextId::pd(DomainId(0));
const VM: DomainId = DomainId(1);
const VCPU0: ContextId = ContextId {
    domain: VM,
    index: 0,
};
const VCPU1: ContextId = ContextId {
    domain: VM,
    index: 1,
};
const HELPER: ContextId = ContextId::pd(DomainId(2));
/// The vCPUs' ids (their child ids at the VMM), and the helper PD's.
const ID0: u64 = 3;
const ID1: u64 = 4;
const HELPER_ID: u64 = 7;

fn region(domain: u32, ipa: u64, rights: u8, kind: u8, state: u8) -> MappingDesc {
    MappingDesc {
        ipa,
        pa: CONVERTIBLE,
        size: RAM_PAGES * PAGE_SIZE,
        domain,
        region: 0,
        rights,
        cached: 1,
        kind,
        state,
        page_shift: 12,
    }
}

/// The running system, the console it wrote, and the decision of its last step.
struct Machine {
    system: TestSystem,
    out: String,
}

impl Machine {
    /// A VMM (priority 100), its VM with vCPUs 3 and 4 (priority 50) and a helper child PD
    /// with id 7 (priority 10). With `protected`, the VM's 8 pages of RAM are private from boot
    /// and the VMM has a window onto them; `split` adds `DOMAIN_FLAG_SPLIT`.
    fn boot(protected: bool, split: bool) -> Self {
        Self::boot_with(protected, split, 100)
    }

    /// [`Machine::boot`] with the VMM at `vmm_priority`.
    fn boot_with(protected: bool, split: bool, vmm_priority: u8) -> Self {
        let mut vmm = domain_desc("vmm", DOMAIN_KIND_PD, vmm_priority, NONE, NONE);
        let mut vm = domain_desc("guest", DOMAIN_KIND_VM, 50, 0, ID0 as u32);
        vm.vcpu_ids = (1 << ID0) | (1 << ID1);
        let mut helper = domain_desc("helper", DOMAIN_KIND_PD, 10, 0, HELPER_ID as u32);
        let rwx = RIGHT_READ | RIGHT_WRITE | RIGHT_EXECUTE;
        let mappings = if protected {
            vm.flags = DOMAIN_FLAG_PROTECTED | if split { DOMAIN_FLAG_SPLIT } else { 0 };
            vmm.mapping_count = 1;
            vm.first_mapping = 1;
            vm.mapping_count = 1;
            helper.first_mapping = 2;
            std::vec![
                region(
                    0,
                    WINDOW,
                    RIGHT_READ | RIGHT_WRITE,
                    MAPPING_KIND_WINDOW,
                    MAPPING_STATE_NO_PAGE
                ),
                region(1, RAM, rwx, MAPPING_KIND_REGION, MAPPING_STATE_OWNED),
            ]
        } else {
            vm.mapping_count = 1;
            helper.first_mapping = 1;
            std::vec![region(
                1,
                RAM,
                rwx,
                MAPPING_KIND_REGION,
                MAPPING_STATE_OWNED
            )]
        };
        let system = TestSystem::with_mappings(&[vmm, vm, helper], &mappings, &[], &[]).unwrap();
        let mut machine = Self {
            system,
            out: String::new(),
        };
        assert_eq!(machine.system.start(0), Decision::Run(VMM));
        machine
    }

    /// `HVC #0` from the running context with `args` in `x0`.. (the PC already past it).
    fn call(&mut self, args: &[u64]) -> Decision {
        let current = self.system.current().unwrap();
        let registers = self.system.registers_mut(current).unwrap();
        registers.x[..args.len()].copy_from_slice(args);
        registers.pc += 4;
        self.system.handle(Exit::Hypercall, 0, &mut self.out)
    }

    /// A call from the running context that must be answered at once: its `x0`..`x6`.
    fn answer(&mut self, args: &[u64]) -> [u64; 7] {
        let current = self.system.current().unwrap();
        assert_eq!(self.call(args), Decision::Run(current), "{args:x?}");
        let x = self.registers(current).x;
        core::array::from_fn(|index| x[index])
    }

    /// `x0` of a call answered at once, as a status.
    fn status(&mut self, args: &[u64]) -> i64 {
        self.answer(args)[0] as i64
    }

    /// A call that must be refused with `code` and change nothing but `x0`..`x(results-1)`.
    fn refused(&mut self, args: &[u64], code: i64, results: usize) {
        let current = self.system.current().unwrap();
        // The arguments are in place before the snapshot: only the results may differ.
        self.system.registers_mut(current).unwrap().x[..args.len()].copy_from_slice(args);
        let before = self.system.snapshot();
        let pc = self.registers(current).pc;
        assert_eq!(self.status(args), code, "{args:x?}");
        self.system.registers_mut(current).unwrap().pc = pc;
        assert!(
            self.system.unchanged_since(&before, current, results),
            "{args:x?} changed something"
        );
    }

    /// A call that must be accepted (`x0` = 0) and leave the audit clean.
    fn accepted(&mut self, args: &[u64]) -> [u64; 7] {
        let answer = self.answer(args);
        assert_eq!(answer[0] as i64, SUCCESS, "{args:x?}: {answer:x?}");
        self.audit_clean();
        answer
    }

    /// I1-I4 hold (the audit), and the fake saw no I6 or I7 violation in the call.
    fn audit_clean(&mut self) {
        let (hypervisor, arch) = self.system.parts();
        let summary = hypervisor
            .run_audit(arch, &mut |violation| panic!("audit: {violation}"))
            .unwrap();
        assert_eq!(summary.violations, 0);
        arch.end_call();
        let violations = arch.take_violations();
        assert!(violations.is_empty(), "{violations:?}");
    }

    fn registers(&self, context: ContextId) -> Registers {
        self.system.context(context).unwrap().registers
    }

    fn state(&self, context: ContextId) -> RunState {
        self.system.context(context).unwrap().state
    }

    fn page_state(&self, domain: DomainId, ipa: u64) -> Option<PageState> {
        self.system
            .engine()
            .page_state(self.system.arch(), self.system.domains(), domain, Ipa(ipa))
            .unwrap()
    }

    /// The frame behind guest RAM page `index`.
    fn frame(index: u64) -> PhysAddr {
        PhysAddr(CONVERTIBLE + index * PAGE_SIZE)
    }

    /// From the VMM: set vCPU 3's `x0`, start it at the RAM base, wait; the vCPU runs.
    fn start_guest(&mut self) {
        assert_eq!(self.system.current(), Some(VMM));
        self.accepted(&[PD_VCPU_WRITE_REG.into(), ID0, 0, 0xD7B]);
        self.accepted(&[PD_VCPU_RESTART.into(), ID0, RAM]);
        assert_eq!(
            self.call(&[PD_REPLY_RECV.into(), REPLY_NONE]),
            Decision::Run(VCPU0)
        );
    }

    /// The running vCPU faults with `report`; its VMM must run next with the fault event.
    fn fault(&mut self, report: FaultReport) -> [u64; 12] {
        let current = self.system.current().unwrap();
        self.system.registers_mut(current).unwrap().pc = report.pc;
        let decision = self.system.handle(Exit::Fault(report), 0, &mut self.out);
        assert_eq!(decision, Decision::Run(VMM));
        assert_eq!(self.state(current), RunState::Faulted);
        self.event()
    }

    /// The VMM's registers `x0`-`x11` after an event was delivered.
    fn event(&self) -> [u64; 12] {
        let x = self.registers(VMM).x;
        core::array::from_fn(|index| x[index])
    }

    /// The VMM ends its handler with a reply labelled `label` and MR0.. = `registers`.
    fn reply(&mut self, label: u64, registers: &[u64]) -> Decision {
        self.call(&reply_args(label, registers))
    }
}

/// The registers of `PD_REPLY_RECV` with a reply labelled `label` and MR0.. = `registers`.
fn reply_args(label: u64, registers: &[u64]) -> [u64; 11] {
    let mut args = [0u64; 11];
    args[0] = PD_REPLY_RECV.into();
    args[1] = REPLY_MESSAGE;
    args[2] = MessageInfo::new(label, registers.len()).0;
    args[3..3 + registers.len()].copy_from_slice(registers);
    args
}

/// A data abort `ESR_EL2` from EL1 with a valid syndrome: size `sas` (log2 bytes), register
/// `srt`, sign extension, 64-bit register, write.
fn data_abort(sas: u64, srt: u64, sign: bool, wide: bool, write: bool) -> u64 {
    0x24 << 26
        | 1 << 25
        | 1 << 24
        | sas << 22
        | u64::from(sign) << 21
        | srt << 16
        | u64::from(wide) << 15
        | u64::from(write) << 6
        | 0x07
}

fn abort_at(ipa: u64, esr: u64) -> FaultReport {
    FaultReport {
        kind: FaultKind::Translation,
        ipa: Ipa(ipa),
        esr,
        pc: RAM + 0x100,
        injectable: false,
    }
}

#[test]
fn vcpus_start_stopped_with_their_mpidr_and_the_vmm_steers_a_fresh_vm() {
    let mut machine = Machine::boot(true, false);
    for (vcpu, mpidr) in [(VCPU0, 0), (VCPU1, 1)] {
        let record = machine.system.context(vcpu).unwrap();
        assert_eq!(record.state, RunState::Stopped);
        assert_eq!(
            FakeArch::vcpu_register(&record.arch, REG_MPIDR_EL1),
            Some(mpidr)
        );
    }
    // Registers of a fresh protected VM: written and read back, core and EL1 ones.
    machine.accepted(&[PD_VCPU_WRITE_REG.into(), ID1, 5, 0x55]);
    machine.accepted(&[PD_VCPU_WRITE_REG.into(), ID1, REG_SCTLR_EL1, 0x30D0_0800]);
    assert_eq!(
        machine.accepted(&[PD_VCPU_READ_REG.into(), ID1, 5])[1],
        0x55
    );
    assert_eq!(
        machine.accepted(&[PD_VCPU_READ_REG.into(), ID1, REG_SCTLR_EL1])[1],
        0x30D0_0800
    );
    assert_eq!(
        machine.accepted(&[PD_VCPU_READ_REG.into(), ID1, REG_MPIDR_EL1])[1],
        1
    );
    // MPIDR is fixed; a child PD's id and an id nobody has are no vCPU of the caller.
    machine.refused(
        &[PD_VCPU_WRITE_REG.into(), ID1, REG_MPIDR_EL1, 9],
        INVALID_PARAMETER,
        1,
    );
    for id in [HELPER_ID, 9] {
        machine.refused(&[PD_VCPU_READ_REG.into(), id, 0], INVALID_PARAMETER, 1);
        machine.refused(&[PD_VCPU_RESTART.into(), id, RAM], INVALID_PARAMETER, 1);
        machine.refused(&[PD_VCPU_STOP.into(), id], INVALID_PARAMETER, 1);
        machine.refused(&[PD_VM_TEARDOWN.into(), id], INVALID_PARAMETER, 1);
        machine.refused(&[PD_MEM_RECLAIM.into(), id, RAM, 1], INVALID_PARAMETER, 1);
    }
    // Restart: the PC and PSTATE are set, every other register keeps its value.
    machine.accepted(&[PD_VCPU_WRITE_REG.into(), ID0, 0, 0xD7B]);
    machine.accepted(&[PD_VCPU_RESTART.into(), ID0, RAM + 0x40]);
    let registers = machine.registers(VCPU0);
    assert_eq!(
        (registers.pc, registers.pstate, registers.x[0]),
        (RAM + 0x40, FakeArch::ENTRY_PSTATE, 0xD7B)
    );
    assert_eq!(machine.state(VCPU0), RunState::Ready);
    // The VM has run: its registers are the guest's own from now on, and no other vCPU can be
    // started into it by the VMM.
    machine.refused(&[PD_VCPU_READ_REG.into(), ID0, 0], INVALID_PARAMETER, 1);
    machine.refused(&[PD_VCPU_READ_REG.into(), ID1, 5], INVALID_PARAMETER, 1);
    machine.refused(&[PD_VCPU_WRITE_REG.into(), ID1, 5, 1], INVALID_PARAMETER, 1);
    machine.refused(&[PD_VCPU_RESTART.into(), ID1, RAM], INVALID_PARAMETER, 1);
    machine.refused(&[PD_VCPU_RESTART.into(), ID0, RAM], INVALID_PARAMETER, 1);
    // The vCPU runs at the VM's priority once the VMM waits; the helper (lower) after it.
    assert_eq!(
        machine.call(&[PD_REPLY_RECV.into(), REPLY_NONE]),
        Decision::Run(VCPU0)
    );
    assert_eq!(machine.system.ready_queue(50).collect::<Vec<_>>(), [VCPU0]);
}

#[test]
fn an_unprotected_vm_shows_its_registers_and_stops_where_it_is() {
    let mut machine = Machine::boot(false, false);
    machine.start_guest();
    let pc = machine.registers(VCPU0).pc;
    // An MMIO read: the PC is reported for a VM that is not protected.
    let event = machine.fault(abort_at(MMIO, data_abort(2, 1, false, false, false)));
    assert_eq!(event[3..8], [MMIO, event[4], 0, event[6], RAM + 0x100]);
    assert_eq!(event[4] & 1, 0);
    // While it waits for the reply the VMM may read and write its registers.
    assert_eq!(
        machine.accepted(&[PD_VCPU_READ_REG.into(), ID0, REG_PC])[1],
        RAM + 0x100
    );
    machine.accepted(&[PD_VCPU_WRITE_REG.into(), ID0, 9, 0x99]);
    // Stop: the fault is cancelled, so the reply finds nothing to resume.
    machine.accepted(&[PD_VCPU_STOP.into(), ID0]);
    assert_eq!(machine.state(VCPU0), RunState::Stopped);
    let decision = machine.reply(RESUME_SKIP, &[7]);
    assert_eq!(decision, Decision::Run(HELPER));
    assert_eq!(machine.state(VCPU0), RunState::Stopped);
    assert_eq!(machine.registers(VCPU0).x[1], 0);
    assert_eq!(machine.registers(VCPU0).x[9], 0x99);
    assert_eq!(machine.registers(VCPU0).pc, RAM + 0x100);
    assert_ne!(pc, RAM + 0x100);
}

#[test]
fn inject_and_acknowledge_reach_the_vcpus_list_registers() {
    let mut machine = Machine::boot(true, false);
    for intid in [33u64, 34, 35, 1019] {
        machine.accepted(&[PD_VCPU_INJECT_IRQ.into(), ID1, intid, 0xA0, 1]);
    }
    let injected = machine
        .system
        .context(VCPU1)
        .unwrap()
        .arch
        .list_registers
        .clone();
    assert_eq!(
        injected[0],
        VirtualIrq {
            intid: 33,
            priority: 0xA0,
            group: 1
        }
    );
    assert_eq!(injected.len(), 4);
    // Every list register in use; malformed INTIDs and groups.
    machine.refused(
        &[PD_VCPU_INJECT_IRQ.into(), ID1, 36, 0xA0, 1],
        INVALID_PARAMETER,
        1,
    );
    machine.refused(
        &[PD_VCPU_INJECT_IRQ.into(), ID0, 1020, 0, 0],
        INVALID_PARAMETER,
        1,
    );
    machine.refused(
        &[PD_VCPU_INJECT_IRQ.into(), ID0, 40, 0, 2],
        INVALID_PARAMETER,
        1,
    );
    machine.accepted(&[PD_VCPU_ACK_VPPI.into(), ID0, 27]);
    machine.refused(&[PD_VCPU_ACK_VPPI.into(), ID0, 26], INVALID_PARAMETER, 1);
}

#[test]
fn the_guests_discovery_calls_answer_bit_for_bit() {
    for split in [false, true] {
        let mut machine = Machine::boot(true, split);
        machine.start_guest();
        assert_eq!(machine.answer(&[guest::SMCCC_VERSION.into()])[0], 0x1_0001);
        for listed in [
            guest::SMCCC_VERSION,
            guest::SMCCC_ARCH_FEATURES,
            guest::PSCI_VERSION,
            guest::PSCI_CPU_ON,
            guest::PSCI_SYSTEM_OFF,
            guest::PSCI_FEATURES,
            guest::VENDOR_HYP_CALL_UID,
            guest::VENDOR_HYP_FEATURES,
        ] {
            let args = [guest::SMCCC_ARCH_FEATURES.into(), listed.into()];
            assert_eq!(machine.status(&args), 0, "{listed:#x}");
        }
        for other in [guest::MEM_SHARE, 0x8000_8000, 0xC600_0050] {
            let args = [guest::SMCCC_ARCH_FEATURES.into(), other.into()];
            assert_eq!(machine.status(&args), NOT_SUPPORTED, "{other:#x}");
        }
        assert_eq!(machine.answer(&[guest::PSCI_VERSION.into()])[0], 0x1_0001);
        for implemented in [
            guest::PSCI_VERSION,
            guest::PSCI_CPU_OFF,
            guest::PSCI_CPU_ON,
            guest::PSCI_AFFINITY_INFO,
            guest::PSCI_SYSTEM_OFF,
            guest::PSCI_SYSTEM_RESET,
            guest::PSCI_FEATURES,
            guest::SMCCC_VERSION,
        ] {
            let args = [guest::PSCI_FEATURES.into(), implemented.into()];
            assert_eq!(machine.status(&args), 0, "{implemented:#x}");
        }
        for missing in [0xC400_0001u64, 0xC400_0005, 0xC400_000E] {
            let args = [guest::PSCI_FEATURES.into(), missing];
            assert_eq!(machine.status(&args), PSCI_NOT_SUPPORTED);
        }
        let uid = machine.answer(&[guest::VENDOR_HYP_CALL_UID.into()]);
        assert_eq!(uid[..4], KVM_UID);
        assert_eq!(
            uid[..4],
            [0xb66f_b428, 0xe911_c52e, 0x564b_caa9, 0x743a_004d]
        );
        let features = machine.answer(&[guest::VENDOR_HYP_FEATURES.into()]);
        assert_eq!(features[..4], [0x29D, 0, 0, 0x0300_0000]);
        assert_eq!(features[..4], features_bitmap());
        // Every other register is preserved.
        machine.system.registers_mut(VCPU0).unwrap().x[6] = 0x66;
        let meminfo = machine.answer(&[guest::HYP_MEMINFO.into(), 0, 0, 0]);
        let alias = if split { SPLIT_SHARED_BIT } else { 0 };
        assert_eq!(meminfo[..4], [4096, 1, alias, 0]);
        assert_eq!(meminfo[6], 0x66);
        machine.refused(&[guest::HYP_MEMINFO.into(), 1, 0, 0], INVALID_PARAMETER, 1);
        machine.refused(&[guest::HYP_MEMINFO.into(), 0, 0, 1], INVALID_PARAMETER, 1);
    }
}

#[test]
fn a_guest_range_share_is_all_or_nothing_in_both_modes() {
    for split in [false, true] {
        let mut machine = Machine::boot(true, split);
        machine.start_guest();
        let share = u64::from(guest::MEM_SHARE);
        let unshare = u64::from(guest::MEM_UNSHARE);
        // Two pages, 0 pages meaning 1: the VMM sees exactly those through its window.
        assert_eq!(machine.accepted(&[share, RAM, 2, 0])[1], 2);
        assert_eq!(machine.accepted(&[share, RAM + 3 * PAGE_SIZE, 0, 0])[1], 1);
        for (page, shared) in [(0, true), (1, true), (2, false), (3, true)] {
            let window = WINDOW + page * PAGE_SIZE;
            let expected = shared.then_some(PageState::SharedBorrowed);
            assert_eq!(machine.page_state(DomainId(0), window), expected, "{page}");
        }
        let guest_view = if split { RAM | SPLIT_SHARED_BIT } else { RAM };
        assert_eq!(
            machine.page_state(VM, guest_view),
            Some(PageState::SharedOwned)
        );
        // Refused whole: a page already shared, a page past the end of RAM, malformed ranges;
        // x1 = 0 pages done and nothing changes.
        machine.refused(&[share, RAM + PAGE_SIZE, 2, 0], INVALID_PARAMETER, 2);
        let last_two = RAM + (RAM_PAGES - 2) * PAGE_SIZE;
        machine.refused(&[share, last_two, 3, 0], INVALID_PARAMETER, 2);
        machine.refused(&[share, RAM + 8, 1, 0], INVALID_PARAMETER, 2);
        machine.refused(&[share, RAM, 513, 0], INVALID_PARAMETER, 2);
        machine.refused(&[share, RAM + 5 * PAGE_SIZE, 1, 1], INVALID_PARAMETER, 2);
        machine.refused(&[share, MMIO, 1, 0], INVALID_PARAMETER, 2);
        assert_eq!(machine.answer(&[share, last_two, 3, 0])[1], 0);
        assert_eq!(
            machine.page_state(DomainId(0), WINDOW + 6 * PAGE_SIZE),
            None
        );
        // Unshare by either half in split mode; the alias is no page in history mode.
        let named = if split { RAM | SPLIT_SHARED_BIT } else { RAM };
        assert_eq!(machine.accepted(&[unshare, named, 2, 0])[1], 2);
        assert_eq!(machine.page_state(DomainId(0), WINDOW), None);
        assert_eq!(machine.page_state(VM, RAM), Some(PageState::Owned));
        if !split {
            machine.refused(&[share, RAM | SPLIT_SHARED_BIT, 1, 0], INVALID_PARAMETER, 2);
        }
        machine.refused(&[unshare, RAM, 1, 0], INVALID_PARAMETER, 2);
    }
}

#[test]
fn the_state_query_is_the_guests_own_view() {
    for split in [false, true] {
        let mut machine = Machine::boot(true, split);
        machine.start_guest();
        let state = u64::from(guest::FS_MEM_STATE);
        let rwx = 7;
        assert_eq!(
            machine.accepted(&[state, RAM, 0])[1..6],
            [1, 1, PEER_NONE, rwx, RAM]
        );
        assert_eq!(
            machine.accepted(&[state, RAM, 8])[1..6],
            [8, 1, PEER_NONE, rwx, RAM]
        );
        machine.accepted(&[guest::MEM_SHARE.into(), RAM + 2 * PAGE_SIZE, 1, 0]);
        // The run stops at the shared page; the shared page says where the guest sees it.
        assert_eq!(machine.accepted(&[state, RAM, 8])[1], 2);
        let view = if split {
            (RAM + 2 * PAGE_SIZE) | SPLIT_SHARED_BIT
        } else {
            RAM + 2 * PAGE_SIZE
        };
        assert_eq!(
            machine.accepted(&[state, RAM + 2 * PAGE_SIZE, 1])[1..6],
            [1, 2, PEER_HOST, rwx, view]
        );
        // An IPA the VM does not map is state 0, not an error.
        assert_eq!(machine.accepted(&[state, MMIO, 4])[1..6], [4, 0, 0, 0, 0]);
        machine.refused(&[state, RAM + 1, 1], INVALID_PARAMETER, 1);
        machine.refused(&[state, RAM, 513], INVALID_PARAMETER, 1);
        machine.refused(&[state, (1 << 40) - PAGE_SIZE, 2], INVALID_PARAMETER, 1);
    }
}

#[test]
fn the_guest_console_and_the_vmm_console_print_the_vms_own_lines() {
    let mut machine = Machine::boot(true, false);
    let word = u64::from_le_bytes(*b"from vmm");
    machine.accepted(&[PD_VM_CONSOLE_WRITE.into(), ID1, 9, word, u64::from(b'\n')]);
    machine.refused(&[PD_VM_CONSOLE_WRITE.into(), ID1, 41], INVALID_PARAMETER, 1);
    machine.start_guest();
    let word = u64::from_le_bytes(*b"guest!\n\0");
    machine.accepted(&[guest::FS_CONSOLE_WRITE.into(), 7, word]);
    machine.refused(&[guest::FS_CONSOLE_WRITE.into(), 41], INVALID_PARAMETER, 1);
    assert_eq!(machine.out, "FS|guest|from vmm\nFS|guest|guest!\n");
}

#[test]
fn mmio_is_emulated_only_on_registered_pages_of_a_protected_guest() {
    let mut machine = Machine::boot(true, false);
    machine.start_guest();
    let guard = u64::from(guest::MMIO_GUARD);
    // Not an MMIO page: its own RAM, unaligned, beyond the IPA space, reserved arguments.
    machine.refused(&[guard, RAM + PAGE_SIZE, 0, 0], INVALID_PARAMETER, 1);
    machine.refused(&[guard, MMIO + 4, 0, 0], INVALID_PARAMETER, 1);
    machine.refused(&[guard, 1 << 40, 0, 0], INVALID_PARAMETER, 1);
    machine.refused(&[guard, MMIO, 1, 0], INVALID_PARAMETER, 1);
    // A guest that has registered no page has not enrolled in the guard (an unmodified
    // kernel): its device accesses are the VMM's to emulate.
    let read = data_abort(2, 1, false, false, false);
    let event = machine.fault(abort_at(MMIO + PAGE_SIZE + 0x10, read));
    assert_eq!(
        MessageInfo(event[2]),
        MessageInfo::new(FAULT_VM_DATA_ABORT, 5)
    );
    assert_eq!(machine.reply(RESUME_SKIP, &[0]), Decision::Run(VCPU0));
    // Its own memory is never MMIO, enrolled or not.
    let event = machine.fault(abort_at(RAM + 5 * PAGE_SIZE, read));
    assert_eq!(MessageInfo(event[2]).label(), FAULT_VM_ABORT);
    assert_eq!(machine.reply(RESUME_RETRY, &[]), Decision::Run(VCPU0));
    // Once it registers one page, an unregistered MMIO page is an abort the VMM may not
    // emulate, and may not skip.
    machine.accepted(&[guard, MMIO + PAGE_SIZE, 0, 0]);
    let event = machine.fault(abort_at(MMIO + 0x10, read));
    assert_eq!(event[1], EVENT_FAULT);
    assert_eq!(MessageInfo(event[2]), MessageInfo::new(FAULT_VM_ABORT, 2));
    assert_eq!(event[3..5], [MMIO + 0x10, read]);
    assert_eq!(event[11], ID0);
    machine.refused(&reply_args(RESUME_SKIP, &[5]), INVALID_PARAMETER, 1);
    // A retry resumes it at the access.
    assert_eq!(machine.reply(RESUME_RETRY, &[]), Decision::Run(VCPU0));
    assert_eq!(machine.registers(VCPU0).pc, RAM + 0x100);
    // Registered (twice is fine), reads and writes are the VMM's to emulate.
    machine.accepted(&[guard, MMIO, 0, 0]);
    machine.accepted(&[guard, MMIO, 0, 0]);
    let byte_read = data_abort(0, 2, true, true, false);
    let event = machine.fault(abort_at(MMIO + 0x18, byte_read));
    assert_eq!(
        MessageInfo(event[2]),
        MessageInfo::new(FAULT_VM_DATA_ABORT, 5)
    );
    let access = DataAccess::from_word(event[4]);
    assert_eq!(access, DataAccess::from_esr(byte_read));
    // A protected guest's PC is never shown, nor any register for a read.
    assert_eq!(
        [event[3], event[5], event[6], event[7]],
        [MMIO + 0x18, 0, byte_read, 0]
    );
    // The reply's value reaches x2, truncated to a byte and sign extended to 64 bits; the PC
    // moves past the access.
    assert_eq!(
        machine.reply(RESUME_SKIP, &[0x1234_5680]),
        Decision::Run(VCPU0)
    );
    let registers = machine.registers(VCPU0);
    assert_eq!(registers.x[2], 0xFFFF_FFFF_FFFF_FF80);
    assert_eq!(registers.pc, RAM + 0x104);
    // A halfword write of w3: only its value, cut to the access size, is sent.
    machine.system.registers_mut(VCPU0).unwrap().x[3] = 0xAAAA_BBBB_CCCC_DDDD;
    let write = data_abort(1, 3, false, false, true);
    let event = machine.fault(abort_at(MMIO, write));
    assert_eq!(event[5], 0xDDDD);
    assert_eq!(event[4] & 1, 1);
    let before = machine.registers(VCPU0);
    assert_eq!(machine.reply(RESUME_SKIP, &[0x77]), Decision::Run(VCPU0));
    let after = machine.registers(VCPU0);
    assert_eq!(after.x, before.x);
    assert_eq!(after.pc, RAM + 0x104);
    // A read into xzr writes no register.
    let zero_read = data_abort(3, 31, false, true, false);
    machine.fault(abort_at(MMIO, zero_read));
    let before = machine.registers(VCPU0);
    assert_eq!(machine.reply(RESUME_SKIP, &[0x77]), Decision::Run(VCPU0));
    assert_eq!(machine.registers(VCPU0).x, before.x);
    // The guest's own memory is never MMIO, registered or not: an abort.
    let event = machine.fault(abort_at(RAM + 5 * PAGE_SIZE, read));
    assert_eq!(MessageInfo(event[2]).label(), FAULT_VM_ABORT);
    // Unknown labels are refused for any fault.
    machine.refused(&reply_args(2, &[]), INVALID_PARAMETER, 1);
    machine.refused(&reply_args(RESUME_SKIP, &[]), INVALID_PARAMETER, 1);
    assert_eq!(machine.state(VCPU0), RunState::Faulted);
}

#[test]
fn unknown_hvcs_smcs_exceptions_and_the_timer_go_to_the_vmm() {
    let mut machine = Machine::boot(true, false);
    machine.start_guest();
    // An HVC the hypervisor does not serve (a PD call's id included): x0-x7 to the VMM.
    for function in [0xC600_0050u64, 0xC600_0105] {
        let args = [function, 1, 2, 3, 4, 5, 6, 7];
        let pc = machine.registers(VCPU0).pc;
        assert_eq!(machine.call(&args), Decision::Run(VMM));
        let event = machine.event();
        assert_eq!(MessageInfo(event[2]), MessageInfo::new(FAULT_VM_HVC, 8));
        assert_eq!(event[3..11], args);
        // Skip: MR0-MR3 become x0-x3 and the guest goes on after the HVC.
        assert_eq!(
            machine.reply(RESUME_SKIP, &[9, 8, 7, 6, 5]),
            Decision::Run(VCPU0)
        );
        let registers = machine.registers(VCPU0);
        assert_eq!(registers.x[..5], [9, 8, 7, 6, 4]);
        assert_eq!(registers.pc, pc + 4);
    }
    // A retry executes the HVC again.
    let pc = machine.registers(VCPU0).pc;
    assert_eq!(machine.call(&[0xC600_0050]), Decision::Run(VMM));
    assert_eq!(machine.reply(RESUME_RETRY, &[]), Decision::Run(VCPU0));
    assert_eq!(machine.registers(VCPU0).pc, pc);
    // An SMC (even one naming PSCI): the same, skipped by its length.
    machine.system.registers_mut(VCPU0).unwrap().x[0] = guest::PSCI_SYSTEM_OFF.into();
    let decision = machine.system.handle(
        Exit::SecureMonitorCall(InstructionLength::Wide),
        0,
        &mut machine.out,
    );
    assert_eq!(decision, Decision::Run(VMM));
    let event = machine.event();
    assert_eq!(MessageInfo(event[2]).label(), FAULT_VM_SMC);
    assert_eq!(event[3], u64::from(guest::PSCI_SYSTEM_OFF));
    assert_eq!(machine.reply(RESUME_SKIP, &[0]), Decision::Run(VCPU0));
    assert_eq!(machine.registers(VCPU0).pc, pc + 4);
    // An exception the hypervisor does not handle: ESR and no PC.
    let trapped = FaultReport {
        kind: FaultKind::Unknown,
        ipa: Ipa(0),
        esr: 0x18 << 26 | 1 << 25,
        pc: RAM + 0x200,
        injectable: false,
    };
    let event = machine.fault(trapped);
    assert_eq!(
        MessageInfo(event[2]),
        MessageInfo::new(FAULT_VM_EXCEPTION, 2)
    );
    assert_eq!(event[3..5], [trapped.esr, 0]);
    assert_eq!(machine.reply(RESUME_SKIP, &[]), Decision::Run(VCPU0));
    assert_eq!(machine.registers(VCPU0).pc, RAM + 0x204);
    // The virtual timer: FAULT_VM_VPPI with its INTID.
    let decision = machine
        .system
        .handle(Exit::VirtualTimer, 0, &mut machine.out);
    assert_eq!(decision, Decision::Run(VMM));
    assert_eq!(machine.event()[2], MessageInfo::new(FAULT_VM_VPPI, 1).0);
    assert_eq!(machine.event()[3], 27);
    // No reply leaves the vCPU stopped.
    assert_eq!(
        machine.call(&[PD_REPLY_RECV.into(), REPLY_NONE]),
        Decision::Run(HELPER)
    );
    assert_eq!(machine.state(VCPU0), RunState::Stopped);
}

#[test]
fn psci_starts_and_stops_secondary_vcpus() {
    let mut machine = Machine::boot(true, false);
    machine.start_guest();
    let affinity = |machine: &mut Machine, target: u64, level: u64| {
        machine.status(&[guest::PSCI_AFFINITY_INFO.into(), target, level])
    };
    assert_eq!(affinity(&mut machine, 0, 0), AFFINITY_ON as i64);
    assert_eq!(affinity(&mut machine, 1, 0), AFFINITY_OFF as i64);
    assert_eq!(affinity(&mut machine, 7, 0), PSCI_INVALID_PARAMETERS);
    assert_eq!(affinity(&mut machine, 0, 1), PSCI_INVALID_PARAMETERS);
    let cpu_on = u64::from(guest::PSCI_CPU_ON);
    let entry = RAM + 0x800;
    machine.refused(&[cpu_on, 0, entry, 0], PSCI_ALREADY_ON, 1);
    machine.refused(&[cpu_on, 7, entry, 0], PSCI_INVALID_PARAMETERS, 1);
    machine.refused(&[cpu_on, 1, MMIO, 0], PSCI_INVALID_ADDRESS, 1);
    assert_eq!(machine.status(&[cpu_on, 0x8000_0001, entry, 0xC0FFEE]), 0);
    let secondary = machine.registers(VCPU1);
    assert_eq!(
        (secondary.pc, secondary.x[0], secondary.pstate),
        (entry, 0xC0FFEE, FakeArch::ENTRY_PSTATE)
    );
    assert_eq!(affinity(&mut machine, 1, 0), AFFINITY_ON as i64);
    // Both share the CPU at the VM's priority: a yield hands over to the secondary.
    let yielded = machine.system.handle(
        Exit::WaitForInterrupt(InstructionLength::Wide),
        0,
        &mut machine.out,
    );
    assert_eq!(yielded, Decision::Run(VCPU1));
    // CPU_OFF: only this vCPU stops, and its VMM hears of it.
    assert_eq!(
        machine.call(&[guest::PSCI_CPU_OFF.into()]),
        Decision::Run(VMM)
    );
    let event = machine.event();
    assert_eq!(MessageInfo(event[2]), MessageInfo::new(FAULT_VM_POWER, 1));
    assert_eq!((event[3], event[11]), (guest::PSCI_CPU_OFF.into(), ID1));
    assert_eq!(machine.state(VCPU1), RunState::Stopped);
    // Any reply leaves it off; the primary runs on.
    assert_eq!(machine.reply(RESUME_SKIP, &[]), Decision::Run(VCPU0));
    assert_eq!(machine.state(VCPU1), RunState::Stopped);
    assert_eq!(affinity(&mut machine, 1, 0), AFFINITY_OFF as i64);
}

#[test]
fn system_off_and_reset_stop_this_vm_only_and_the_system_runs_on() {
    for function in [guest::PSCI_SYSTEM_OFF, guest::PSCI_SYSTEM_RESET] {
        system_power(function);
    }
}

fn system_power(function: u32) {
    let mut machine = Machine::boot(true, false);
    machine.start_guest();
    assert_eq!(
        machine.status(&[guest::PSCI_CPU_ON.into(), 1, RAM, 0]),
        SUCCESS
    );
    assert_eq!(machine.call(&[function.into()]), Decision::Run(VMM));
    let event = machine.event();
    assert_eq!(MessageInfo(event[2]).label(), FAULT_VM_POWER);
    assert_eq!(event[3], u64::from(function));
    // A protected VM that has run cannot be restarted by its VMM without a teardown.
    machine.refused(&[PD_VCPU_RESTART.into(), ID0, RAM], INVALID_PARAMETER, 1);
    assert_eq!(machine.state(VCPU0), RunState::Stopped);
    assert_eq!(machine.state(VCPU1), RunState::Stopped);
    // The VMM and the helper run on; the run ends idle, not by a system off.
    assert_eq!(
        machine.call(&[PD_REPLY_RECV.into(), REPLY_MESSAGE]),
        Decision::Run(HELPER)
    );
    let decision = machine.call(&[PD_REPLY_RECV.into(), REPLY_NONE]);
    let Decision::Halt(halt) = decision else {
        panic!("{decision:?}")
    };
    assert_eq!((halt.status, halt.reason), (0, HaltReason::Idle));
}

#[test]
fn the_vmm_memory_calls_move_frames_through_the_window() {
    let mut machine = Machine::boot(true, false);
    let page = RAM + 4 * PAGE_SIZE;
    let window = WINDOW + 4 * PAGE_SIZE;
    machine.start_guest();
    // The guest relinquishes a page: the VMM owns it, zeroed, at its window position.
    machine.arch_poke(Machine::frame(4), 0x5A5A);
    assert_eq!(
        machine.accepted(&[guest::MEM_RELINQUISH.into(), page, 1, 0])[1],
        1
    );
    assert!(machine.system.arch().is_zero(Machine::frame(4)));
    assert_eq!(
        machine.page_state(DomainId(0), window),
        Some(PageState::Owned)
    );
    machine.refused(
        &[guest::MEM_RELINQUISH.into(), page, 1, 0],
        INVALID_PARAMETER,
        2,
    );
    // Back to the VMM: it shares the page (read only), takes it back, lends it, reclaims it
    // once the guest gives it up, and donates it with its contents.
    machine.system.registers_mut(VCPU0).unwrap().pc = RAM;
    let decision = machine
        .system
        .handle(Exit::VirtualTimer, 0, &mut machine.out);
    assert_eq!(decision, Decision::Run(VMM));
    machine.accepted(&[PD_MEM_SHARE_WITH_GUEST.into(), ID0, page, 1, 1]);
    assert_eq!(
        machine.page_state(VM, page),
        Some(PageState::SharedBorrowed)
    );
    let lookup = machine.system.domains()[VM]
        .vspace
        .table
        .lookup(machine.system.arch(), Ipa(page))
        .unwrap();
    assert_eq!(lookup.rights, crate::descriptor::Rights::READ);
    machine.refused(
        &[PD_MEM_SHARE_WITH_GUEST.into(), ID0, page, 1, 3],
        INVALID_PARAMETER,
        1,
    );
    machine.refused(&[PD_MEM_DONATE.into(), ID0, page, 1], INVALID_PARAMETER, 1);
    machine.accepted(&[PD_MEM_UNSHARE_FROM_GUEST.into(), ID0, page, 1]);
    assert_eq!(machine.page_state(VM, page), None);
    machine.accepted(&[PD_MEM_LEND.into(), ID0, page, 1, 3]);
    assert_eq!(machine.page_state(DomainId(0), window), None);
    machine.refused(&[PD_MEM_RECLAIM.into(), ID0, page, 1], INVALID_PARAMETER, 1);
    // The guest drops the lent page; the VMM reclaims it.
    assert_eq!(machine.reply(RESUME_RETRY, &[]), Decision::Run(VCPU0));
    assert_eq!(
        machine.accepted(&[guest::MEM_RELINQUISH.into(), page, 1, 0])[1],
        1
    );
    let decision = machine
        .system
        .handle(Exit::VirtualTimer, 0, &mut machine.out);
    assert_eq!(decision, Decision::Run(VMM));
    machine.accepted(&[PD_MEM_RECLAIM.into(), ID0, page, 1]);
    assert_eq!(
        machine.page_state(DomainId(0), window),
        Some(PageState::Owned)
    );
    machine.arch_poke(Machine::frame(4), 0xBEEF);
    machine.accepted(&[PD_MEM_DONATE.into(), ID0, page, 1]);
    assert_eq!(machine.page_state(VM, page), Some(PageState::Owned));
    assert_eq!(machine.system.arch().peek(Machine::frame(4)), 0xBEEF);
    // A range with a page the VMM does not own is refused whole.
    machine.refused(
        &[PD_MEM_DONATE.into(), ID0, RAM + 3 * PAGE_SIZE, 2],
        INVALID_PARAMETER,
        1,
    );
    machine.refused(&[PD_MEM_DONATE.into(), ID0, RAM, 0], INVALID_PARAMETER, 1);
}

impl Machine {
    fn arch_poke(&mut self, pa: PhysAddr, value: u64) {
        let (_, arch) = self.system.parts();
        arch.poke(pa, value);
    }
}

#[test]
fn teardown_zeroes_the_guest_cancels_its_fault_and_lets_it_start_again() {
    let mut machine = Machine::boot(true, false);
    machine.arch_poke(Machine::frame(0), 0x5EC2E7);
    machine.arch_poke(Machine::frame(1), 0x5EC2E7);
    machine.start_guest();
    machine.accepted(&[guest::MEM_SHARE.into(), RAM + PAGE_SIZE, 1, 0]);
    machine.accepted(&[guest::MMIO_GUARD.into(), MMIO, 0, 0]);
    // Page 6 goes back to the VMM, which lends it to the guest again.
    let lent = RAM + 6 * PAGE_SIZE;
    machine.accepted(&[guest::MEM_RELINQUISH.into(), lent, 1, 0]);
    // A fault the VMM is handling when it tears the VM down.
    let read = data_abort(2, 1, false, false, false);
    machine.fault(abort_at(MMIO, read));
    machine.accepted(&[PD_MEM_LEND.into(), ID0, lent, 1, 3]);
    // What the guest writes into the lent page while it has it to itself is private too.
    machine.arch_poke(Machine::frame(6), 0x5EC2E7);
    machine.accepted(&[PD_VM_TEARDOWN.into(), ID1]);
    for vcpu in [VCPU0, VCPU1] {
        let record = machine.system.context(vcpu).unwrap();
        assert_eq!(record.state, RunState::Stopped);
        assert_eq!(record.registers, Registers::default());
        assert_eq!(record.vm_fault, None);
    }
    // Every frame the guest owned is the VMM's again, zeroed, in its window; the lent one is
    // still lent away, unmapped from the guest, and zeroed as well (I5).
    assert_eq!(machine.page_state(VM, lent), None);
    assert!(machine.system.arch().is_zero(Machine::frame(6)));
    assert_eq!(
        machine.page_state(DomainId(0), WINDOW + 6 * PAGE_SIZE),
        None
    );
    for page in (0..RAM_PAGES).filter(|&page| page != 6) {
        assert!(
            machine.system.arch().is_zero(Machine::frame(page)),
            "{page}"
        );
        assert_eq!(
            machine.page_state(DomainId(0), WINDOW + page * PAGE_SIZE),
            Some(PageState::Owned)
        );
        assert_eq!(machine.page_state(VM, RAM + page * PAGE_SIZE), None);
    }
    assert!(&machine.system.domains()[VM].mmio_guard.is_empty());
    // The late reply changes nothing.
    let before = machine.system.snapshot();
    let vm_before = machine.system.domains()[VM].clone();
    assert_eq!(machine.reply(RESUME_SKIP, &[0x1234]), Decision::Run(HELPER));
    assert!(machine.system.memory_unchanged_since(&before));
    assert_eq!(&machine.system.domains()[VM], &vm_before);
    // The helper waits; the VMM is back (the helper notifies nobody): drive the VMM again by
    // the helper's fault to it.
    let report = FaultReport {
        kind: FaultKind::Unknown,
        ipa: Ipa(0),
        esr: 0,
        pc: 0,
        injectable: false,
    };
    assert_eq!(
        machine
            .system
            .handle(Exit::Fault(report), 0, &mut machine.out),
        Decision::Run(VMM)
    );
    // The lent frame comes back to the VMM, and the VM is fresh and alive: the VMM populates
    // it and starts it again.
    machine.accepted(&[PD_MEM_RECLAIM.into(), ID0, lent, 1]);
    assert_eq!(
        machine.page_state(DomainId(0), WINDOW + 6 * PAGE_SIZE),
        Some(PageState::Owned)
    );
    machine.accepted(&[PD_MEM_DONATE.into(), ID0, RAM, 2]);
    assert_eq!(machine.page_state(VM, RAM), Some(PageState::Owned));
    machine.accepted(&[PD_VCPU_WRITE_REG.into(), ID0, 0, 1]);
    machine.accepted(&[PD_VCPU_RESTART.into(), ID0, RAM]);
    assert_eq!(machine.state(VCPU0), RunState::Ready);
}

#[test]
fn frame_caps_and_audit_report_the_callers_view() {
    let mut machine = Machine::boot(true, false);
    // The VMM's window holds nothing yet.
    machine.refused(&[PD_FRAME_CAPS.into(), 0], NOT_REQUIRED, 1);
    machine.refused(&[PD_FRAME_CAPS.into(), 1], INVALID_PARAMETER, 1);
    machine.refused(&[PD_FRAME_CAPS.into(), 1 << 40], INVALID_PARAMETER, 1);
    let audit = machine.accepted(&[PD_AUDIT.into()]);
    assert_eq!(audit[1..3], [0, RAM_PAGES]);
    let audits = audit[3];
    assert_eq!(machine.accepted(&[PD_AUDIT.into()])[3], audits + 2);
    machine.start_guest();
    machine.accepted(&[guest::MEM_SHARE.into(), RAM + 2 * PAGE_SIZE, 2, 0]);
    let decision = machine
        .system
        .handle(Exit::VirtualTimer, 0, &mut machine.out);
    assert_eq!(decision, Decision::Run(VMM));
    // The VMM holds two derived capabilities from the guest, at its window position.
    let run = machine.accepted(&[PD_FRAME_CAPS.into(), 0]);
    assert_eq!(
        run[1..7],
        [
            WINDOW + 2 * PAGE_SIZE,
            Machine::frame(2).get(),
            2,
            CAP_DERIVED,
            3,
            u64::from(VM.0)
        ]
    );
    // From the second page on, and nothing after the run.
    let second = machine.accepted(&[PD_FRAME_CAPS.into(), WINDOW + 3 * PAGE_SIZE]);
    assert_eq!(
        second[1..4],
        [WINDOW + 3 * PAGE_SIZE, Machine::frame(3).get(), 1]
    );
    machine.refused(
        &[PD_FRAME_CAPS.into(), WINDOW + 4 * PAGE_SIZE],
        NOT_REQUIRED,
        1,
    );
    assert_eq!(
        machine.accepted(&[PD_AUDIT.into()])[1..3],
        [0, RAM_PAGES + 2]
    );
    // The guest's own view: original capabilities, shared with the VMM.
    let caps = {
        let (hypervisor, arch) = machine.system.parts();
        hypervisor
            .engine()
            .frame_caps(&*arch, hypervisor.domains(), VM, Ipa(RAM + 2 * PAGE_SIZE))
            .unwrap()
            .unwrap()
    };
    assert_eq!(caps.held, crate::engine::CapHeld::Original);
    assert_eq!(caps.peer, Some(DomainId(0)));
    let _ = CAP_ORIGINAL;
}

/// A small deterministic generator (xorshift64*): the same sequence on every run.
struct Sequence(u64);

impl Sequence {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn pick<T: Copy>(&mut self, choices: &[T]) -> T {
        choices[(self.next() % choices.len() as u64) as usize]
    }
}

#[test]
fn random_calls_and_exits_never_panic_and_keep_every_invariant() {
    let functions: Vec<u64> = [
        PD_VCPU_RESTART,
        PD_VCPU_STOP,
        PD_VCPU_READ_REG,
        PD_VCPU_WRITE_REG,
        PD_VCPU_INJECT_IRQ,
        PD_VCPU_ACK_VPPI,
        PD_MEM_DONATE,
        PD_MEM_SHARE_WITH_GUEST,
        PD_MEM_UNSHARE_FROM_GUEST,
        PD_MEM_LEND,
        PD_MEM_RECLAIM,
        PD_VM_TEARDOWN,
        PD_FRAME_CAPS,
        PD_AUDIT,
        PD_VM_CONSOLE_WRITE,
        PD_REPLY_RECV,
        guest::SMCCC_VERSION,
        guest::SMCCC_ARCH_FEATURES,
        guest::PSCI_FEATURES,
        guest::PSCI_CPU_ON,
        guest::PSCI_CPU_OFF,
        guest::PSCI_AFFINITY_INFO,
        guest::PSCI_SYSTEM_RESET,
        guest::HYP_MEMINFO,
        guest::MEM_SHARE,
        guest::MEM_UNSHARE,
        guest::MEM_RELINQUISH,
        guest::MMIO_GUARD,
        guest::FS_MEM_STATE,
        guest::FS_CONSOLE_WRITE,
        0xC600_0050,
    ]
    .iter()
    .map(|&function| u64::from(function))
    .collect();
    let values = [
        0,
        1,
        2,
        3,
        4,
        7,
        27,
        33,
        61,
        62,
        512,
        513,
        RAM,
        RAM + PAGE_SIZE,
        RAM + 6 * PAGE_SIZE,
        RAM + 7 * PAGE_SIZE,
        RAM + 8,
        RAM | SPLIT_SHARED_BIT,
        WINDOW,
        MMIO,
        1 << 40,
        u64::MAX,
        MessageInfo::new(RESUME_SKIP, 1).0,
    ];
    let mut sequence = Sequence(0x9E37_79B9_7F4A_7C15);
    let mut accepted = 0;
    let mut guest_accepted = 0;
    let mut steps = 0;
    for split in [false, true] {
        let mut machine = Machine::boot(true, split);
        for _ in 0..3000 {
            let Some(current) = machine.system.current() else {
                break;
            };
            // Keep the guest alive often: a VMM whose vCPUs are all off tears the VM down and
            // starts it again (every step of which must be accepted).
            let off = [VCPU0, VCPU1]
                .iter()
                .all(|&vcpu| machine.state(vcpu) == RunState::Stopped);
            if current == VMM && off && sequence.next().is_multiple_of(2) {
                machine.accepted(&[PD_VM_TEARDOWN.into(), ID0]);
                machine.accepted(&[PD_MEM_DONATE.into(), ID0, RAM, RAM_PAGES]);
                machine.accepted(&[PD_VCPU_RESTART.into(), ID0, RAM]);
                continue;
            }
            let exit = match sequence.next() % 20 {
                0 => Exit::Fault(FaultReport {
                    kind: sequence.pick(&[
                        FaultKind::Translation,
                        FaultKind::Permission,
                        FaultKind::OtherAbort,
                        FaultKind::Unknown,
                    ]),
                    ipa: Ipa(sequence.pick(&values)),
                    esr: sequence.next(),
                    pc: sequence.next(),
                    injectable: false,
                }),
                1 => Exit::SecureMonitorCall(InstructionLength::Wide),
                2 => Exit::WaitForInterrupt(InstructionLength::Wide),
                3 => Exit::VirtualTimer,
                // The helper only waits (the run ends when nothing else can run).
                _ if current == HELPER => {
                    let registers = machine.system.registers_mut(current).unwrap();
                    registers.x[..2].copy_from_slice(&[PD_REPLY_RECV.into(), REPLY_NONE]);
                    Exit::Hypercall
                }
                // The VMM ends its handler often, with a reply a fault may take.
                4..=7 if current == VMM => {
                    let label = sequence.pick(&[RESUME_RETRY, RESUME_SKIP]);
                    let mut args = reply_args(label, &[sequence.pick(&values)]);
                    args[1] = sequence.pick(&[REPLY_NONE, REPLY_MESSAGE, REPLY_MESSAGE]);
                    let registers = machine.system.registers_mut(current).unwrap();
                    registers.x[..11].copy_from_slice(&args);
                    Exit::Hypercall
                }
                _ => {
                    let registers = machine.system.registers_mut(current).unwrap();
                    registers.x[0] = sequence.pick(&functions);
                    for register in &mut registers.x[1..11] {
                        *register = sequence.pick(&values);
                    }
                    Exit::Hypercall
                }
            };
            let decision = machine.system.handle(exit, 0, &mut machine.out);
            machine.audit_clean();
            if machine.registers(current).x[0] == 0 {
                accepted += 1;
                if current.domain == VM {
                    guest_accepted += 1;
                }
            }
            steps += 1;
            if let Decision::Halt(_) = decision {
                machine = Machine::boot(true, split);
            }
        }
    }
    // Legal requests were made too, by the VMM and by the guest, not only refused ones (the
    // sequence is fixed: 443 and 112 of 5,611 steps today).
    assert!(
        accepted > 400 && guest_accepted > 100,
        "{accepted} {guest_accepted} {steps}"
    );
}

#[test]
fn a_handler_preempted_by_its_vm_never_answers_a_fault_it_has_not_seen() {
    // The VMM below its VM: the VM's vCPUs preempt the VMM's handler.
    let mut machine = Machine::boot_with(false, false, 20);
    machine.accepted(&[PD_VCPU_WRITE_REG.into(), ID0, 0, 1]);
    assert_eq!(
        machine.call(&[PD_VCPU_RESTART.into(), ID0, RAM]),
        Decision::Run(VCPU0)
    );
    assert_eq!(
        machine.status(&[guest::PSCI_CPU_ON.into(), 1, RAM, 0]),
        SUCCESS
    );
    // vCPU 3 powers off (its VMM will hear of it), vCPU 4 faults.
    assert_eq!(
        machine.call(&[guest::PSCI_CPU_OFF.into()]),
        Decision::Run(VCPU1)
    );
    assert_eq!(machine.call(&[0xC600_0050]), Decision::Run(VMM));
    // The VMM takes the power event of vCPU 3 and, in that handler, restarts vCPU 4, which
    // preempts it and starts vCPU 3 again; vCPU 3 faults.
    assert_eq!(
        machine.call(&[PD_REPLY_RECV.into(), REPLY_NONE]),
        Decision::Run(VMM)
    );
    assert_eq!(
        (MessageInfo(machine.event()[2]).label(), machine.event()[11]),
        (FAULT_VM_POWER, ID0)
    );
    assert_eq!(
        machine.call(&[PD_VCPU_RESTART.into(), ID1, RAM + 0x900]),
        Decision::Run(VCPU1)
    );
    assert_eq!(
        machine.status(&[guest::PSCI_CPU_ON.into(), 0, RAM, 0]),
        SUCCESS
    );
    let yielded = machine.system.handle(
        Exit::WaitForInterrupt(InstructionLength::Wide),
        0,
        &mut machine.out,
    );
    assert_eq!(yielded, Decision::Run(VCPU0));
    assert_eq!(machine.call(&[0xC600_0050, 0x30]), Decision::Run(VCPU1));
    assert_eq!(
        machine.call(&[guest::PSCI_CPU_OFF.into()]),
        Decision::Run(VMM)
    );
    // The VMM's reply ends the power event's handler: it must not resume vCPU 3, whose new
    // fault it has not been shown; that fault comes next.
    assert_eq!(machine.reply(RESUME_SKIP, &[0x77]), Decision::Run(VMM));
    assert_eq!(machine.state(VCPU0), RunState::Faulted);
    assert_eq!(machine.registers(VCPU0).x[..2], [0xC600_0050, 0x30]);
    let event = machine.event();
    assert_eq!(
        (MessageInfo(event[2]).label(), event[3], event[11]),
        (FAULT_VM_HVC, 0xC600_0050, ID0)
    );
}
