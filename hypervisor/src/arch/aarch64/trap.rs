//! The Rust side of the EL2 exception vectors: decode why a domain left EL1, let the portable
//! kernel decide, then switch domains (EL1 registers, GIC virtual interface, stage 2, FP/SIMD)
//! and return.
//!
//! An access to state that EL2 traps to keep domains apart (docs/ISOLATION.md, I9) is refused
//! the way the architecture refuses an instruction that does not exist: the domain takes an
//! Undefined Instruction exception at its own EL1 vector ([`inject_undefined`]).

use aarch64_cpu::asm::barrier;
use aarch64_cpu::registers::*;

use super::console::Pl011;
use super::context::ArchDomain;
use super::entry::{KIND_IRQ, KIND_SYNC};
use super::features::CpuFeatures;
use super::global::GlobalCell;
use super::{gic, psci};
use frameshift_core::addr::Ipa;
use frameshift_core::kernel::fault::{
    abort_ipa, classify_abort, el1_sync_vector_offset, EC_DATA_ABORT_LOWER,
    EC_INSTRUCTION_ABORT_LOWER,
};
use frameshift_core::kernel::system::MAX_DOMAINS;
use frameshift_core::kernel::InstructionLength;
use frameshift_core::kernel::{
    Decision, DomainIndex, Exit, FaultKind, FaultReport, Halt, Kernel, Registers,
};

/// CPTR_EL2 (non-VHE): RES1 bits 13, 9 and 7:0; TZ (bit 8) traps SVE, including `ZCR_EL1`;
/// TSM (bit 12) traps SME (`SMCR_EL1`, `SVCR`, `SMSTART`, ZA); TTA (bit 20) traps the trace
/// registers. On CPUs without SVE or SME bits 8 and 12 are RES1, so the value is the same
/// everywhere. TFP (bit 10) is added while a domain does not own the FP/SIMD registers, TAM
/// (bit 30, activity monitors) where FEAT_AMUv1 exists.
const CPTR_BASE: u64 = 0x33FF | (1 << 20);
const CPTR_TFP: u64 = 1 << 10;
const CPTR_TAM: u64 = 1 << 30;

/// ESR_EL2 exception classes (Arm ARM D17.2.37).
const EC_WFX: u64 = 0x01;
const EC_FP: u64 = 0x07;
const EC_HVC64: u64 = 0x16;
const EC_SMC64: u64 = 0x17;

/// Exception classes of an instruction that EL2 traps only to refuse it (ESR_EL2.EC, Arm ARM
/// D17.2.37): the domain gets it back as UNDEFINED ([`inject_undefined`]).
///
/// | EC | trapped by |
/// | --- | --- |
/// | 0x03, 0x04 | AArch32 EL0 `MCR`/`MRC`, `MCRR`/`MRRC` to CP15 (timer, PMU, ID) |
/// | 0x05, 0x06, 0x0C | AArch32 EL0 `MCR`/`MRC`, `LDC`/`STC`, `MRRC` to CP14 (debug) |
/// | 0x09 | `HCR_EL2.API` = 0: pointer authentication instructions |
/// | 0x0A | `HCRX_EL2` = 0: `LD64B`/`ST64B*` |
/// | 0x18 | `MSR`/`MRS`/`SYS`: `HCR_EL2.{TACR, TIDCP, TSW, TLOR, TERR, APK, EnSCXT=0, ATA=0}`, `MDCR_EL2.{TDA, TDOSA, TDRA, TPM, TPMCR}`, `CNTHCTL_EL2.EL1PCEN` = 0, `ICC_SRE_EL2.Enable` = 0, `ICC_SGI*R_EL1` under `HCR_EL2.IMO` |
/// | 0x19 | `CPTR_EL2.TZ`: SVE |
/// | 0x1D | `CPTR_EL2.TSM`: SME |
const fn is_refused_access(class: u64) -> bool {
    matches!(
        class,
        0x03 | 0x04 | 0x05 | 0x06 | 0x09 | 0x0A | 0x0C | 0x18 | 0x19 | 0x1D
    )
}

/// The hypervisor's state.
#[derive(Debug)]
pub struct Hypervisor {
    /// The portable kernel (filled in place by boot).
    pub kernel: Kernel,
    /// The domain whose FP/SIMD registers are live in the CPU.
    pub fp_owner: Option<DomainIndex>,
    /// What this CPU implements (probed at boot, before any domain runs).
    pub features: CpuFeatures,
    /// Set by boot once the kernel is built; exceptions before that are hypervisor bugs.
    pub running: bool,
}

/// Built in place by boot, then used by every exception.
pub static HYPERVISOR: GlobalCell<Hypervisor> = GlobalCell::new(Hypervisor {
    kernel: Kernel::empty(),
    fp_owner: None,
    features: CpuFeatures::MINIMAL,
    running: false,
});

/// The hypervisor state, once boot has built it.
///
/// # Safety
///
/// No other reference to [`HYPERVISOR`] may be live (each exception takes it once).
unsafe fn running_hypervisor() -> &'static mut Hypervisor {
    // SAFETY: the caller guarantees exclusivity (global.rs).
    let hypervisor = unsafe { HYPERVISOR.get_mut() };
    if !hypervisor.running {
        fatal(3, "panic");
    }
    hypervisor
}

/// Per-domain EL1 and FP/SIMD state and stage-2 roots, indexed like the kernel's domains.
/// Zero until boot fills the slots in use, so it costs the image file nothing (`.bss`).
pub static ARCH_DOMAINS: GlobalCell<[ArchDomain; MAX_DOMAINS]> =
    GlobalCell::new([ArchDomain::zeroed(); MAX_DOMAINS]);

/// Prints the final status line of a fatal hypervisor error and powers off.
pub fn fatal(status: u8, reason: &str) -> ! {
    crate::hv_line!("halt status={status} reason={reason}");
    psci::system_off()
}

/// An exception taken at EL2 itself: a hypervisor bug, never a domain's doing.
#[no_mangle]
extern "C" fn fs_trap_current(kind: u64, esr: u64, elr: u64, far: u64) -> ! {
    if super::mmu::is_stack_guard(far) {
        crate::hv_line!("panic EL2 stack overflow elr={elr:#x}");
    }
    crate::hv_line!("panic exception at EL2 kind={kind} esr={esr:#x} elr={elr:#x} far={far:#x}");
    fatal(3, "panic")
}

/// Fills the first trap frame with the first domain's registers (called by `fs_run_first`).
///
/// # Safety
///
/// `frame` points to the frame `fs_run_first` reserved; boot has stored [`HYPERVISOR`].
#[no_mangle]
unsafe extern "C" fn fs_fill_first_frame(frame: *mut Registers) {
    // SAFETY: the frame is a live, exclusive stack slot (caller's contract).
    let frame = unsafe { &mut *frame };
    // SAFETY: EL2 is not re-entered (global.rs); this is the only live reference.
    let hypervisor = unsafe { running_hypervisor() };
    // SAFETY: as above.
    let arch = unsafe { ARCH_DOMAINS.get_mut() };
    hypervisor.kernel.set_time_slice(gic::slice_ticks());
    let decision = hypervisor.kernel.start(gic::now());
    apply(hypervisor, arch, None, decision, None, frame);
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
    // SAFETY: the vector passed its own stack frame, exclusively ours until we return.
    let frame = unsafe { &mut *frame };
    // SAFETY: EL2 is not re-entered (global.rs); this is the only live reference.
    let hypervisor = unsafe { running_hypervisor() };
    // SAFETY: as above.
    let arch = unsafe { ARCH_DOMAINS.get_mut() };
    let Some(current) = hypervisor.kernel.current() else {
        fatal(3, "panic")
    };
    let exit = match kind {
        KIND_SYNC => {
            let esr = ESR_EL2.get();
            match esr >> 26 {
                EC_FP => {
                    switch_fp(hypervisor, arch, current);
                    return;
                }
                EC_HVC64 => Exit::Hypercall,
                EC_SMC64 => Exit::SecureMonitorCall(InstructionLength::from_esr(esr)),
                EC_WFX => Exit::WaitForInterrupt(InstructionLength::from_esr(esr)),
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
        KIND_IRQ => match gic::take_interrupt() {
            Some(gic::Interrupt::TimeSlice) => Exit::TimerTick,
            Some(gic::Interrupt::Device(intid)) => Exit::Interrupt(intid),
            None => return,
        },
        // FIQ, SError, anything from AArch32.
        _ => Exit::Fault(unknown(ESR_EL2.get(), frame.pc)),
    };
    if let Some(saved) = hypervisor.kernel.registers_mut(current) {
        *saved = *frame;
    }
    let decision = hypervisor.kernel.handle(exit, now, &mut Pl011);
    unmask_acknowledged(hypervisor);
    let fault = match exit {
        Exit::Fault(report) => Some(report),
        _ => None,
    };
    apply(hypervisor, arch, Some(current), decision, fault, frame);
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

/// Carries out the kernel's decision on the trap frame.
fn apply(
    hypervisor: &mut Hypervisor,
    arch: &mut [ArchDomain; MAX_DOMAINS],
    previous: Option<DomainIndex>,
    decision: Decision,
    fault: Option<FaultReport>,
    frame: &mut Registers,
) {
    match decision {
        Decision::Run(next) => {
            if previous != Some(next) {
                switch_domain(hypervisor, arch, previous, next);
            }
            // The kernel keeps each domain's budget; the timer ends it when it runs out.
            gic::arm_slice(hypervisor.kernel.slice_end());
            load_frame(hypervisor, next, frame);
        }
        Decision::InjectAbort(domain) => {
            gic::arm_slice(hypervisor.kernel.slice_end());
            load_frame(hypervisor, domain, frame);
            if let Some(fault) = fault {
                inject_external_abort(fault, frame);
            }
        }
        Decision::WaitForInterrupt => {
            let decision = wait_for_interrupt(hypervisor);
            apply(hypervisor, arch, previous, decision, None, frame);
        }
        Decision::Halt(halt) => halt_system(hypervisor, &halt),
    }
}

/// Idles the CPU until a PD's interrupt makes some domain runnable. EL2 keeps interrupts
/// masked: `WFI` still wakes on a pending one, which is then taken by hand.
fn wait_for_interrupt(hypervisor: &mut Hypervisor) -> Decision {
    gic::stop_slice();
    loop {
        aarch64_cpu::asm::wfi();
        match gic::take_interrupt() {
            Some(gic::Interrupt::Device(intid)) => {
                let decision =
                    hypervisor
                        .kernel
                        .handle(Exit::Interrupt(intid), gic::now(), &mut Pl011);
                unmask_acknowledged(hypervisor);
                if decision != Decision::WaitForInterrupt {
                    return decision;
                }
            }
            // A slice that expired just before the CPU went idle: no domain to slice.
            Some(gic::Interrupt::TimeSlice) => gic::stop_slice(),
            None => {}
        }
    }
}

/// Unmasks every interrupt its PD acknowledged during the last call.
fn unmask_acknowledged(hypervisor: &mut Hypervisor) {
    while let Some(intid) = hypervisor.kernel.take_acknowledged_irq() {
        gic::unmask(intid);
    }
}

fn load_frame(hypervisor: &mut Hypervisor, domain: DomainIndex, frame: &mut Registers) {
    match hypervisor.kernel.registers_mut(domain) {
        Some(registers) => *frame = *registers,
        None => fatal(3, "panic"),
    }
}

/// Flushes every domain's partial line, prints the final status line and powers off.
pub fn halt_system(hypervisor: &mut Hypervisor, halt: &Halt) -> ! {
    hypervisor.kernel.flush_console(&mut Pl011);
    let _ = hypervisor.kernel.write_halt_line(halt, &mut Pl011);
    psci::system_off()
}

/// Gives a domain its stage-2 abort back as a synchronous external abort taken to its own EL1
/// vector, the way pKVM treats a host access to memory it does not own (DESIGN.md 2).
fn inject_external_abort(fault: FaultReport, frame: &mut Registers) {
    ESR_EL1.set(fault.injected_syndrome());
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
    const IL: u64 = 1 << 25;
    ESR_EL1.set(esr & IL);
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
    frame.pstate = frameshift_core::kernel::registers::INITIAL_PSTATE;
}

/// Switches the EL1 registers and stage 2 from `previous` to `next`.
fn switch_domain(
    hypervisor: &mut Hypervisor,
    arch: &mut [ArchDomain; MAX_DOMAINS],
    previous: Option<DomainIndex>,
    next: DomainIndex,
) {
    let features = &hypervisor.features;
    if let Some(previous) = previous.and_then(|p| arch.get_mut(p.get())) {
        previous.el1.save(features);
        previous.gic.save(features);
    }
    let Some(incoming) = arch.get(next.get()) else {
        fatal(3, "panic")
    };
    incoming.el1.restore(features);
    incoming.gic.restore(features);
    VTTBR_EL2.set(incoming.vttbr);
    let fp_trap = if hypervisor.fp_owner == Some(next) {
        0
    } else {
        CPTR_TFP
    };
    CPTR_EL2.set(cptr_base(features) | fp_trap);
    barrier::isb(barrier::SY);
}

/// `CPTR_EL2` while the running domain owns the FP/SIMD registers.
const fn cptr_base(features: &CpuFeatures) -> u64 {
    if features.amu {
        CPTR_BASE | CPTR_TAM
    } else {
        CPTR_BASE
    }
}

/// Lazy FP/SIMD switch on the first FP instruction of a domain that does not own the registers.
fn switch_fp(
    hypervisor: &mut Hypervisor,
    arch: &mut [ArchDomain; MAX_DOMAINS],
    current: DomainIndex,
) {
    CPTR_EL2.set(cptr_base(&hypervisor.features));
    barrier::isb(barrier::SY);
    if let Some(owner) = hypervisor.fp_owner.and_then(|o| arch.get_mut(o.get())) {
        owner.fp.save();
    }
    if let Some(incoming) = arch.get(current.get()) {
        incoming.fp.restore();
    }
    hypervisor.fp_owner = Some(current);
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
    VTCR_EL2.set(0x8002_3558);
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
