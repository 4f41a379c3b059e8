//! The Rust side of the EL2 exception vectors: decode why a context left EL1 ([`esr`]), let the
//! portable [`Hypervisor`] decide, then switch contexts (EL1 registers, GIC virtual interface,
//! stage 2, FP/SIMD) and return.
//!
//! An access to state that EL2 traps to keep domains apart (docs/ISOLATION.md, I9) is refused
//! the way the architecture refuses an instruction that does not exist: the domain takes an
//! Undefined Instruction exception at its own EL1 vector ([`inject_undefined`]).

use aarch64_cpu::asm::barrier;
use aarch64_cpu::registers::*;

use frameshift_core::kernel::{FaultKind, FaultReport};
use frameshift_core::{ContextId, Decision, Exit, FatalReason, Halt, Hypervisor, Ipa, Registers};

use super::boot::{State, STATE};
use super::console::Pl011;
use super::entry::{KIND_IRQ, KIND_SYNC};
use super::esr::{
    abort_ipa, classify_abort, el1_sync_vector_offset, exception_class, injected_abort_syndrome,
    instruction_length, is_refused_access, undefined_syndrome, EC_DATA_ABORT_LOWER, EC_FP,
    EC_HVC64, EC_INSTRUCTION_ABORT_LOWER, EC_SMC64, EC_WFX,
};
use super::features::CpuFeatures;
use super::global::Exclusive;
use super::machine::El2Machine;
use super::spsr::SPSR_EL1H_MASKED;
use super::{gic, psci};

/// CPTR_EL2 (non-VHE): RES1 bits 13, 9 and 7:0; TZ (bit 8) traps SVE, including `ZCR_EL1`;
/// TSM (bit 12) traps SME (`SMCR_EL1`, `SVCR`, `SMSTART`, ZA); TTA (bit 20) traps the trace
/// registers. On CPUs without SVE or SME bits 8 and 12 are RES1, so the value is the same
/// everywhere. TFP (bit 10) is added while a context does not own the FP/SIMD registers, TAM
/// (bit 30, activity monitors) where FEAT_AMUv1 exists.
const CPTR_BASE: u64 = 0x33FF | (1 << 20);
const CPTR_TFP: u64 = 1 << 10;
const CPTR_TAM: u64 = 1 << 30;

/// Prints the final status line of a fatal hypervisor error, `halt status=<2|3> reason=<word>`,
/// and powers off. Touches no state: it may run inside any entry.
pub fn fatal(reason: FatalReason) -> ! {
    crate::hv_line!("{reason}");
    psci::system_off()
}

/// The state, once boot has built it.
fn running(witness: &mut Exclusive) -> &mut State {
    let state = STATE.get_mut(witness);
    if !state.machine.running {
        fatal(FatalReason::NotRunning);
    }
    state
}

/// An exception taken at EL2 itself: a hypervisor bug, never a domain's doing.
#[no_mangle]
extern "C" fn fs_trap_current(kind: u64, esr: u64, elr: u64, far: u64) -> ! {
    if super::mmu::is_stack_guard(far) {
        crate::hv_line!("panic EL2 stack overflow elr={elr:#x}");
        fatal(FatalReason::StackOverflow);
    }
    crate::hv_line!("panic exception at EL2 kind={kind} esr={esr:#x} elr={elr:#x} far={far:#x}");
    fatal(FatalReason::ExceptionAtEl2)
}

/// Fills the first trap frame with the first context's registers (called by `fs_run_first`).
///
/// # Safety
///
/// `frame` points to the frame `fs_run_first` reserved; boot has built [`STATE`].
#[no_mangle]
unsafe extern "C" fn fs_fill_first_frame(frame: *mut Registers) {
    // SAFETY: the top of this entry; boot's token is gone with boot's stack (`fs_run_first`).
    let mut witness = unsafe { Exclusive::enter() };
    // SAFETY: the frame is a live, exclusive stack slot (caller's contract).
    let frame = unsafe { &mut *frame };
    let State {
        hypervisor,
        machine,
    } = running(&mut witness);
    hypervisor.set_time_slice(gic::slice_ticks());
    let decision = hypervisor.start(gic::now());
    apply(hypervisor, machine, None, decision, None, frame);
}

/// An exception from a domain (EL1).
///
/// # Safety
///
/// Called only by the vectors with `frame` pointing at the frame they saved.
#[no_mangle]
unsafe extern "C" fn fs_trap_lower(frame: *mut Registers, kind: u64) {
    // Read first, so the domain pays for its own time and not for the hypervisor's.
    let now = gic::now();
    // SAFETY: the top of this entry: EL2 is not re-entered (global.rs), so no other token lives.
    let mut witness = unsafe { Exclusive::enter() };
    // SAFETY: the vector passed its own stack frame, exclusively ours until we return.
    let frame = unsafe { &mut *frame };
    let State {
        hypervisor,
        machine,
    } = running(&mut witness);
    let Some(current) = hypervisor.current() else {
        fatal(FatalReason::NoCurrentContext)
    };
    let exit = match kind {
        KIND_SYNC => {
            let esr = ESR_EL2.get();
            match exception_class(esr) {
                EC_FP => {
                    switch_fp(hypervisor, machine, current);
                    return;
                }
                EC_HVC64 => Exit::Hypercall,
                EC_SMC64 => Exit::SecureMonitorCall(instruction_length(esr)),
                EC_WFX => Exit::WaitForInterrupt(instruction_length(esr)),
                EC_DATA_ABORT_LOWER | EC_INSTRUCTION_ABORT_LOWER => {
                    Exit::Fault(stage2_abort(esr, frame.pc))
                }
                class if is_refused_access(class) && VBAR_EL1.get() != 0 => {
                    inject_undefined(esr, frame);
                    return;
                }
                _ => Exit::Fault(unknown(esr, frame.pc)),
            }
        }
        KIND_IRQ => match machine.gic.as_mut().and_then(gic::take_interrupt) {
            Some(gic::Interrupt::TimeSlice) => Exit::TimerTick,
            Some(gic::Interrupt::Device(intid)) => Exit::Interrupt(intid),
            None => return,
        },
        // FIQ, SError, anything from AArch32.
        _ => Exit::Fault(unknown(ESR_EL2.get(), frame.pc)),
    };
    if let Some(saved) = hypervisor.registers_mut(current) {
        *saved = *frame;
    }
    let decision = hypervisor.handle(machine, exit, now, &mut Pl011);
    unmask_acknowledged(hypervisor, machine);
    let fault = match exit {
        Exit::Fault(report) => Some(report),
        _ => None,
    };
    apply(hypervisor, machine, Some(current), decision, fault, frame);
}

fn unknown(esr: u64, pc: u64) -> FaultReport {
    FaultReport {
        kind: FaultKind::Unknown,
        ipa: Ipa(0),
        esr,
        pc,
        injectable: false,
    }
}

/// Decodes a stage-2 abort: the IPA comes from HPFAR_EL2 (page) and FAR_EL2 (offset), as
/// DESIGN.md 9 verified; the DFSC/IFSC (ESR bits 5:0) says which fault.
fn stage2_abort(esr: u64, pc: u64) -> FaultReport {
    let ipa = abort_ipa(HPFAR_EL2.get(), FAR_EL2.get());
    // Only a domain that installed an exception vector can take the abort back.
    let injectable = VBAR_EL1.get() != 0;
    FaultReport {
        kind: classify_abort(esr),
        ipa,
        esr,
        pc,
        injectable,
    }
}

/// Carries out the hypervisor's decision on the trap frame.
fn apply(
    hypervisor: &mut Hypervisor<El2Machine>,
    machine: &mut El2Machine,
    previous: Option<ContextId>,
    decision: Decision,
    fault: Option<FaultReport>,
    frame: &mut Registers,
) {
    match decision {
        Decision::Run(next) => {
            if previous != Some(next) {
                switch_context(hypervisor, machine, previous, next);
            }
            // The kernel keeps each context's budget; the timer ends it when it runs out.
            gic::arm_slice(hypervisor.slice_end());
            load_frame(hypervisor, next, frame);
        }
        Decision::InjectAbort(context) => {
            gic::arm_slice(hypervisor.slice_end());
            load_frame(hypervisor, context, frame);
            if let Some(fault) = fault {
                inject_external_abort(fault, frame);
            }
        }
        Decision::WaitForInterrupt => {
            let decision = wait_for_interrupt(hypervisor, machine);
            apply(hypervisor, machine, previous, decision, None, frame);
        }
        Decision::Halt(halt) => halt_system(hypervisor, &halt),
    }
}

/// Idles the CPU until a PD's interrupt makes some context runnable. EL2 keeps interrupts
/// masked: `WFI` still wakes on a pending one, which is then taken by hand.
fn wait_for_interrupt(
    hypervisor: &mut Hypervisor<El2Machine>,
    machine: &mut El2Machine,
) -> Decision {
    gic::stop_slice();
    loop {
        aarch64_cpu::asm::wfi();
        match machine.gic.as_mut().and_then(gic::take_interrupt) {
            Some(gic::Interrupt::Device(intid)) => {
                let exit = Exit::Interrupt(intid);
                let decision = hypervisor.handle(machine, exit, gic::now(), &mut Pl011);
                unmask_acknowledged(hypervisor, machine);
                if decision != Decision::WaitForInterrupt {
                    return decision;
                }
            }
            // A slice that expired just before the CPU went idle: no context to slice.
            Some(gic::Interrupt::TimeSlice) => gic::stop_slice(),
            None => {}
        }
    }
}

/// Unmasks every interrupt its PD acknowledged during the last call.
fn unmask_acknowledged(hypervisor: &mut Hypervisor<El2Machine>, machine: &mut El2Machine) {
    while let Some(intid) = hypervisor.take_acknowledged_irq() {
        if let Some(gic) = machine.gic.as_mut() {
            gic::unmask(gic, intid);
        }
    }
}

fn load_frame(hypervisor: &mut Hypervisor<El2Machine>, context: ContextId, frame: &mut Registers) {
    match hypervisor.registers_mut(context) {
        Some(registers) => *frame = *registers,
        None => fatal(FatalReason::NoCurrentContext),
    }
}

/// Flushes every domain's partial line, prints the final status line and powers off.
pub fn halt_system(hypervisor: &mut Hypervisor<El2Machine>, halt: &Halt) -> ! {
    hypervisor.flush_console(&mut Pl011);
    let _ = hypervisor.write_halt_line(halt, &mut Pl011);
    psci::system_off()
}

/// Gives a domain its stage-2 abort back as a synchronous external abort taken to its own EL1
/// vector, the way pKVM treats a host access to memory it does not own (DESIGN.md 2).
fn inject_external_abort(fault: FaultReport, frame: &mut Registers) {
    ESR_EL1.set(injected_abort_syndrome(&fault));
    // Stage 1 is off, so the faulting VA is the IPA.
    FAR_EL1.set(fault.ipa.get());
    enter_el1_sync_vector(frame);
}

/// Refuses a trapped instruction (an [`is_refused_access`] class) as the architecture refuses
/// one that does not exist: an Undefined Instruction exception (`ESR_EL1.EC` = 0) at the
/// domain's own EL1 vector, preferred return address the instruction itself. The domain sees
/// the feature as absent, whatever the CPU has; its runtime can observe and survive that, as KVM
/// guests do. `ESR_EL1.IL` is the trapped instruction's (`ESR_EL2.IL`, 0 for a 16-bit T32
/// instruction at AArch32 EL0).
fn inject_undefined(esr: u64, frame: &mut Registers) {
    ESR_EL1.set(undefined_syndrome(esr));
    enter_el1_sync_vector(frame);
}

/// Takes a synchronous exception to the domain's EL1 vector from where the frame stands, as the
/// CPU would (Arm ARM D1.3): the return address and PSTATE go to `ELR_EL1`/`SPSR_EL1`, and the
/// domain resumes at `VBAR_EL1` + the offset for the mode it was in, in EL1h with every
/// exception masked.
fn enter_el1_sync_vector(frame: &mut Registers) {
    ELR_EL1.set(frame.pc);
    SPSR_EL1.set(frame.pstate);
    frame.pc = VBAR_EL1
        .get()
        .wrapping_add(el1_sync_vector_offset(frame.pstate));
    frame.pstate = SPSR_EL1H_MASKED;
}

/// Switches the EL1 registers, the GIC virtual interface and stage 2 from `previous` to `next`.
fn switch_context(
    hypervisor: &mut Hypervisor<El2Machine>,
    machine: &mut El2Machine,
    previous: Option<ContextId>,
    next: ContextId,
) {
    let features = &machine.features;
    if let Some(previous) = previous.and_then(|p| hypervisor.context_mut(p)) {
        previous.arch.el1.save(features);
        previous.arch.gic.save(features);
    }
    let (Some(incoming), Some(vttbr)) = (hypervisor.context(next), hypervisor.vttbr(next)) else {
        fatal(FatalReason::NoCurrentContext)
    };
    incoming.arch.el1.restore(features);
    incoming.arch.gic.restore(features);
    VTTBR_EL2.set(vttbr);
    let fp_trap = if machine.fp_owner == Some(next) {
        0
    } else {
        CPTR_TFP
    };
    CPTR_EL2.set(cptr_base(features) | fp_trap);
    barrier::isb(barrier::SY);
}

/// `CPTR_EL2` while the running context owns the FP/SIMD registers.
const fn cptr_base(features: &CpuFeatures) -> u64 {
    if features.amu {
        CPTR_BASE | CPTR_TAM
    } else {
        CPTR_BASE
    }
}

/// Lazy FP/SIMD switch on the first FP instruction of a context that does not own the
/// registers.
fn switch_fp(
    hypervisor: &mut Hypervisor<El2Machine>,
    machine: &mut El2Machine,
    current: ContextId,
) {
    CPTR_EL2.set(cptr_base(&machine.features));
    barrier::isb(barrier::SY);
    if let Some(owner) = machine.fp_owner.and_then(|o| hypervisor.context_mut(o)) {
        owner.arch.fp.save();
    }
    if let Some(incoming) = hypervisor.context(current) {
        incoming.arch.fp.restore();
    }
    machine.fp_owner = Some(current);
}

/// EL2 controls for running domains (Arm ARM D13.2.48 `HCR_EL2` and friends). Registers and
/// bits that exist only with an optional feature are touched only where `features` has it.
pub fn configure_el2(features: &CpuFeatures) {
    // VM, SWIO, FMO, IMO, AMO: stage 2 on, interrupts and SErrors to EL2.
    // DC: stage-1-off PDs get Normal cacheable memory (DESIGN.md 9).
    // TWI, TWE: WFI/WFE yield the time slice instead of sleeping the CPU.
    // TSC: SMC traps (no direct PSCI for domains). TIDCP, TACR, TSW: implementation-defined
    // registers, ACTLR and set/way cache maintenance trap. RW: EL1 is AArch64.
    // Left clear on purpose, so that the feature is refused (docs/ISOLATION.md, I9): APK and
    // API (pointer authentication keys and instructions trap), EnSCXT (SCXTNUM_EL0/EL1 trap),
    // ATA (MTE allocation tags and GCR/RGSR/TFSR* trap), FIEN (RAS fault injection traps).
    let mut hcr: u64 = (1 << 0)
        | (1 << 1)
        | (1 << 3)
        | (1 << 4)
        | (1 << 5)
        | (1 << 12)
        | (1 << 13)
        | (1 << 14)
        | (1 << 19)
        | (1 << 20)
        | (1 << 21)
        | (1 << 22)
        | (1 << 31);
    if features.lor {
        // TLOR: the LORegion registers trap (they are RES0 in HCR_EL2 without FEAT_LOR).
        hcr |= 1 << 35;
    }
    if features.ras {
        // TERR: the error record registers (ERRIDR_EL1, ERRSELR_EL1, ERX*) trap.
        hcr |= 1 << 36;
    }
    HCR_EL2.set(hcr);
    if features.hcx {
        // Every HCRX_EL2 enable off (its reset value is UNKNOWN): the later features it gates
        // (LS64, MOPS, TCR2, SCTLR2, GCS, FPMR...) stay refused at EL1.
        // SAFETY: HCRX_EL2 is op0=3, op1=4, CRn=1, CRm=2, op2=2 (Arm ARM register description);
        // aarch64-cpu has no accessor, and it exists because FEAT_HCX does.
        unsafe { core::arch::asm!("msr s3_4_c1_c2_2, xzr", options(nomem, nostack)) };
    }
    // DESIGN.md 9: T0SZ=24, SL0=1, WB-WA, inner shareable, 4 KiB granule, PS=40-bit.
    VTCR_EL2.set(frameshift_abi::layout::VTCR_EL2);
    CPTR_EL2.set(cptr_base(features) | CPTR_TFP);
    // Debug and PMU registers trap (TDRA, TDOSA, TDA, TPM, TPMCR); HPMN is kept.
    MDCR_EL2.set(MDCR_EL2.get() | (1 << 11) | (1 << 10) | (1 << 9) | (1 << 6) | (1 << 5));
    // EL1 may read the physical counter (EL1PCTEN) but not program the physical timer (EL1PCEN).
    CNTHCTL_EL2.set(1);
    CNTVOFF_EL2.set(0);
    VMPIDR_EL2.set(MPIDR_EL1.get());
    // SAFETY: VPIDR_EL2 only sets what EL1 reads as MIDR_EL1; aarch64-cpu has no accessor.
    unsafe {
        core::arch::asm!("mrs {v}, midr_el1", "msr vpidr_el2, {v}", v = out(reg) _, options(nostack));
    }
    barrier::isb(barrier::SY);
}
