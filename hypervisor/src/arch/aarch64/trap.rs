//! The Rust side of the EL2 exception vectors: decode why a context left EL1 ([`esr`]), let the
//! portable [`Hypervisor`] decide, then switch contexts (EL1 registers, GIC virtual interface,
//! stage 2, FP/SIMD) and return.
//!
//! An access to state that EL2 traps to keep domains apart (docs/ISOLATION.md, I9) is refused
//! the way the architecture refuses an instruction that does not exist: the domain takes an
//! Undefined Instruction exception at its own EL1 vector ([`inject_undefined`]).

use aarch64_cpu::asm::barrier;
use aarch64_cpu::registers::*;

use frameshift_core::kernel::FaultReport;
use frameshift_core::{
    ContextId, ContextKind, Decision, Exit, FatalReason, Halt, Hypervisor, Registers,
};

use super::boot::{State, STATE};
use super::console::Pl011;
use super::controls::{hcr_el2, HcrFeatures};
use super::entry::{KIND_IRQ, KIND_SYNC};
use super::esr::{
    decode_sync, el1_sync_vector_offset, injected_abort_syndrome, undefined_syndrome,
    unknown_fault, SyncAction, SyncSyndrome, Trapped,
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
            let Some(arch) = hypervisor.context(current).map(|context| &context.arch) else {
                fatal(FatalReason::NoCurrentContext)
            };
            let trapped = Trapped {
                vcpu: arch.vcpu,
                // A PD's stage 1 is off through HCR_EL2.DC whatever its SCTLR_EL1 says.
                stage1_off: !arch.vcpu || SCTLR_EL1.get() & 1 == 0,
                has_vectors: VBAR_EL1.get() != 0,
            };
            let syndrome = SyncSyndrome {
                esr: ESR_EL2.get(),
                hpfar: HPFAR_EL2.get(),
                far: FAR_EL2.get(),
                pc: frame.pc,
            };
            match decode_sync(syndrome, trapped) {
                SyncAction::SwitchFp => {
                    switch_fp(hypervisor, machine, current);
                    return;
                }
                SyncAction::Undefined => {
                    inject_undefined(syndrome.esr, frame);
                    return;
                }
                SyncAction::Exit(exit) => exit,
            }
        }
        KIND_IRQ => match machine.gic.as_mut().and_then(gic::take_interrupt) {
            Some(gic::Interrupt::TimeSlice) => Exit::TimerTick,
            Some(gic::Interrupt::Device(intid)) => Exit::Interrupt(intid),
            Some(gic::Interrupt::VirtualTimer) => {
                machine.virtual_timer_enabled = false;
                match hypervisor.context_mut(current) {
                    Some(context) if context.arch.vcpu => {
                        context.arch.virtual_timer_masked = true;
                        Exit::VirtualTimer
                    }
                    // Signalled just as a vCPU left the CPU: nobody's tick.
                    _ => return,
                }
            }
            None => return,
        },
        // FIQ, SError, anything from AArch32.
        _ => Exit::Fault(unknown_fault(ESR_EL2.get(), frame.pc)),
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
            update_virtual_timer(hypervisor, machine, next);
            load_frame(hypervisor, next, frame);
        }
        Decision::InjectAbort(context) => {
            gic::arm_slice(hypervisor.slice_end());
            update_virtual_timer(hypervisor, machine, context);
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
    set_virtual_timer(machine, false);
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
            // Signalled before the PPI was disabled: no vCPU runs to take it.
            Some(gic::Interrupt::VirtualTimer) => machine.virtual_timer_enabled = false,
            None => {}
        }
    }
}

/// Enables the virtual timer's PPI exactly while a vCPU that may take it runs
/// ([`ArchContext::virtual_timer_wanted`](super::context::ArchContext::virtual_timer_wanted)),
/// so that a PD's virtual timer, or a masked vCPU's, never interrupts anyone.
fn update_virtual_timer(
    hypervisor: &Hypervisor<El2Machine>,
    machine: &mut El2Machine,
    running: ContextId,
) {
    let wanted = match hypervisor.context(running) {
        Some(context) if context.arch.vcpu => {
            // The incoming context's list registers are live now (restored by the switch,
            // or never left the CPU).
            let (images, count) = gic::live_list_registers(&machine.features);
            context.arch.virtual_timer_wanted(&images[..count])
        }
        _ => false,
    };
    set_virtual_timer(machine, wanted);
}

/// Enables or disables the virtual timer's PPI, touching the redistributor only on a change.
fn set_virtual_timer(machine: &mut El2Machine, enabled: bool) {
    if machine.virtual_timer_enabled == enabled {
        return;
    }
    if let Some(gic) = machine.gic.as_mut() {
        gic::set_virtual_timer(gic, enabled);
        machine.virtual_timer_enabled = enabled;
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
    let features = &{ machine.features };
    if let Some(previous) = previous.and_then(|p| hypervisor.context_mut(p)) {
        previous.arch.el1.save(features);
        previous.arch.gic.save(features);
    }
    let (Some(incoming), Some(vttbr)) = (hypervisor.context(next), hypervisor.vttbr(next)) else {
        fatal(FatalReason::NoCurrentContext)
    };
    incoming.arch.el1.restore(features);
    incoming.arch.gic.restore(features);
    HCR_EL2.set(incoming.arch.hcr);
    VMPIDR_EL2.set(incoming.arch.vmpidr);
    VTTBR_EL2.set(vttbr);
    let incarnation = incoming.arch.incarnation;
    if incoming.arch.vcpu && machine.last_vcpu != Some((next, incarnation)) {
        // Another vCPU of the same VM may have left stage-1 entries under this VMID: they are
        // not this vCPU's translations (its TTBRs differ, its ASIDs may not).
        barrier::isb(barrier::SY);
        // SAFETY: drops this CPU's cached EL1&0 translations for the VMID just loaded; no
        // memory is touched.
        unsafe { core::arch::asm!("tlbi vmalle1", "dsb nsh", options(nostack)) };
        machine.last_vcpu = Some((next, incarnation));
    }
    let fp_trap = if machine.fp_owner == Some((next, incarnation)) {
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
    if let Some((owner, incarnation)) = machine.fp_owner {
        match hypervisor.context_mut(owner) {
            Some(owner) if owner.arch.incarnation == incarnation => owner.arch.fp.save(),
            // Re-created since it last used FP: the live registers are its previous life's,
            // and are dropped (overwritten below).
            _ => {}
        }
    }
    machine.fp_owner = None;
    if let Some(incoming) = hypervisor.context(current) {
        incoming.arch.fp.restore();
        machine.fp_owner = Some((current, incoming.arch.incarnation));
    }
}

/// EL2 controls for running domains (Arm ARM D13.2.48 `HCR_EL2` and friends). Registers and
/// bits that exist only with an optional feature are touched only where `features` has it.
pub fn configure_el2(features: &CpuFeatures) {
    // A PD's controls (controls.rs); each context switch loads the incoming context's own.
    let hcr = hcr_el2(
        ContextKind::Pd,
        HcrFeatures {
            lor: features.lor,
            ras: features.ras,
        },
    );
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
    // Every context's virtual counter is the physical one: no offset, so a guest's CNTVCT_EL0
    // and the CNTV_CVAL_EL0 it programs (saved per context) are in the same time base as the
    // hypervisor's budgets, and nothing about the time a vCPU spent off the CPU is hidden.
    CNTVOFF_EL2.set(0);
    VMPIDR_EL2.set(MPIDR_EL1.get());
    // SAFETY: VPIDR_EL2 only sets what EL1 reads as MIDR_EL1; aarch64-cpu has no accessor.
    unsafe {
        core::arch::asm!("mrs {v}, midr_el1", "msr vpidr_el2, {v}", v = out(reg) _, options(nostack));
    }
    barrier::isb(barrier::SY);
}
