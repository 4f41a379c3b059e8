//! Per-context architectural state beyond the trap frame: the EL1 system registers, the GIC
//! virtual CPU interface and the FP/SIMD register file, switched when the running context
//! changes (the stage-2 root, `VTTBR_EL2`, is the context's domain's). docs/ISOLATION.md (I9) lists every register EL1
//! and EL0 can write on the supported CPUs and whether it is switched here, trapped or disabled.
//!
//! FP/SIMD is switched lazily: entering a domain that does not own the register file sets
//! `CPTR_EL2.TFP`; its first FP instruction traps (EC 0x07), and only then is the previous
//! owner's state saved and this domain's loaded. A domain that never uses FP costs nothing.

use aarch64_cpu::registers::*;

use super::entry::{fs_fp_restore, fs_fp_save};
use super::features::CpuFeatures;
use super::gic::VirtualInterface;

/// `SCTLR_EL1` for a fresh domain: stage 1 off, caches governed by `HCR_EL2.DC`; only RES1 bits.
const SCTLR_EL1_RESET: u64 = 0x30D0_0800;
/// `CPACR_EL1.FPEN` = 0b11: EL1 and EL0 may use FP/SIMD (PD programs are built with NEON).
const CPACR_EL1_FP_ON: u64 = 3 << 20;

/// The EL1 system registers (and the EL1 virtual timer) a domain can change; each domain has
/// its own copy. The last two exist only with the CPU feature named; the others on every
/// ARMv8.0 CPU.
#[derive(Clone, Copy, Debug, Default)]
#[repr(C)]
pub struct El1Registers {
    sctlr: u64,
    ttbr0: u64,
    ttbr1: u64,
    tcr: u64,
    mair: u64,
    amair: u64,
    vbar: u64,
    contextidr: u64,
    tpidr_el1: u64,
    tpidr_el0: u64,
    tpidrro_el0: u64,
    sp_el0: u64,
    esr: u64,
    far: u64,
    afsr0: u64,
    afsr1: u64,
    par: u64,
    elr: u64,
    spsr: u64,
    cpacr: u64,
    cntkctl: u64,
    csselr: u64,
    cntv_ctl: u64,
    cntv_cval: u64,
    /// FEAT_SME's `TPIDR2_EL0`: only FEAT_FGT could trap it, so it is switched.
    tpidr2_el0: u64,
    /// FEAT_RAS's `DISR_EL1` as EL1 sees it: with `HCR_EL2.AMO` set, EL1's `DISR_EL1` accesses
    /// reach `VDISR_EL2` (Arm ARM, the `DISR_EL1` description), so that is what each domain
    /// owns.
    vdisr_el2: u64,
}

impl El1Registers {
    /// A fresh domain's EL1 state.
    pub const fn initial() -> Self {
        Self {
            sctlr: SCTLR_EL1_RESET,
            cpacr: CPACR_EL1_FP_ON,
            ..Self::zeroed()
        }
    }

    /// All zero: the state of an unused slot (never loaded into a CPU).
    pub const fn zeroed() -> Self {
        Self {
            sctlr: 0,
            ttbr0: 0,
            ttbr1: 0,
            tcr: 0,
            mair: 0,
            amair: 0,
            vbar: 0,
            contextidr: 0,
            tpidr_el1: 0,
            tpidr_el0: 0,
            tpidrro_el0: 0,
            sp_el0: 0,
            esr: 0,
            far: 0,
            afsr0: 0,
            afsr1: 0,
            par: 0,
            elr: 0,
            spsr: 0,
            cpacr: 0,
            cntkctl: 0,
            csselr: 0,
            cntv_ctl: 0,
            cntv_cval: 0,
            tpidr2_el0: 0,
            vdisr_el2: 0,
        }
    }

    /// Reads the live EL1 registers (the outgoing domain's).
    pub fn save(&mut self, features: &CpuFeatures) {
        self.sctlr = SCTLR_EL1.get();
        self.ttbr0 = TTBR0_EL1.get();
        self.ttbr1 = TTBR1_EL1.get();
        self.tcr = TCR_EL1.get();
        self.mair = MAIR_EL1.get();
        self.amair = AMAIR_EL1.get();
        self.vbar = VBAR_EL1.get();
        self.contextidr = CONTEXTIDR_EL1.get();
        self.tpidr_el1 = TPIDR_EL1.get();
        self.tpidr_el0 = TPIDR_EL0.get();
        self.tpidrro_el0 = TPIDRRO_EL0.get();
        self.sp_el0 = SP_EL0.get();
        self.esr = ESR_EL1.get();
        self.far = FAR_EL1.get();
        self.afsr0 = AFSR0_EL1.get();
        self.afsr1 = AFSR1_EL1.get();
        self.par = PAR_EL1.get();
        self.elr = ELR_EL1.get();
        self.spsr = SPSR_EL1.get();
        self.cpacr = CPACR_EL1.get();
        self.cntkctl = CNTKCTL_EL1.get();
        self.csselr = CSSELR_EL1.get();
        // The virtual timer is EL1's own: each domain has its own compare value and control.
        self.cntv_ctl = CNTV_CTL_EL0.get();
        self.cntv_cval = CNTV_CVAL_EL0.get();
        if features.sme {
            self.tpidr2_el0 = read_tpidr2_el0();
        }
        if features.ras {
            self.vdisr_el2 = read_vdisr_el2();
        }
    }

    /// Loads these registers into the CPU (the incoming domain's).
    pub fn restore(&self, features: &CpuFeatures) {
        SCTLR_EL1.set(self.sctlr);
        TTBR0_EL1.set(self.ttbr0);
        TTBR1_EL1.set(self.ttbr1);
        TCR_EL1.set(self.tcr);
        MAIR_EL1.set(self.mair);
        AMAIR_EL1.set(self.amair);
        VBAR_EL1.set(self.vbar);
        CONTEXTIDR_EL1.set(self.contextidr);
        TPIDR_EL1.set(self.tpidr_el1);
        TPIDR_EL0.set(self.tpidr_el0);
        TPIDRRO_EL0.set(self.tpidrro_el0);
        SP_EL0.set(self.sp_el0);
        ESR_EL1.set(self.esr);
        FAR_EL1.set(self.far);
        AFSR0_EL1.set(self.afsr0);
        AFSR1_EL1.set(self.afsr1);
        PAR_EL1.set(self.par);
        ELR_EL1.set(self.elr);
        SPSR_EL1.set(self.spsr);
        CPACR_EL1.set(self.cpacr);
        CNTKCTL_EL1.set(self.cntkctl);
        CSSELR_EL1.set(self.csselr);
        CNTV_CVAL_EL0.set(self.cntv_cval);
        CNTV_CTL_EL0.set(self.cntv_ctl);
        if features.sme {
            write_tpidr2_el0(self.tpidr2_el0);
        }
        if features.ras {
            write_vdisr_el2(self.vdisr_el2);
        }
    }
}

// aarch64-cpu has no accessors for the next two registers. Encodings from the Arm ARM (DDI 0487)
// register descriptions, the same in QEMU 7.2's target/arm/helper.c: TPIDR2_EL0 is op0=3,
// op1=3, CRn=13, CRm=0, op2=5; VDISR_EL2 is op0=3, op1=4, CRn=12, CRm=1, op2=1. Callers check
// the feature first: on a CPU without it the access is UNDEFINED at EL2.

fn read_tpidr2_el0() -> u64 {
    let value: u64;
    // SAFETY: reads a thread-ID register of the outgoing domain; no memory, no side effect.
    unsafe { core::arch::asm!("mrs {}, s3_3_c13_c0_5", out(reg) value, options(nomem, nostack)) };
    value
}

fn write_tpidr2_el0(value: u64) {
    // SAFETY: TPIDR2_EL0 is scratch state of the domain about to run; EL2 does not use it.
    unsafe { core::arch::asm!("msr s3_3_c13_c0_5, {}", in(reg) value, options(nomem, nostack)) };
}

fn read_vdisr_el2() -> u64 {
    let value: u64;
    // SAFETY: reads the deferred virtual SError status of the outgoing domain; no side effect.
    unsafe { core::arch::asm!("mrs {}, s3_4_c12_c1_1", out(reg) value, options(nomem, nostack)) };
    value
}

fn write_vdisr_el2(value: u64) {
    // SAFETY: VDISR_EL2 only holds what the incoming domain reads as DISR_EL1; the hypervisor
    // never raises a virtual SError (HCR_EL2.VSE stays clear), so nothing else depends on it.
    unsafe { core::arch::asm!("msr s3_4_c12_c1_1, {}", in(reg) value, options(nomem, nostack)) };
}

/// A domain's FP/SIMD register file: `q0`-`q31`, then FPSR and FPCR (the layout `fs_fp_save`
/// uses).
#[derive(Clone, Copy, Debug)]
#[repr(C, align(16))]
pub struct FpState([u8; 528]);

impl FpState {
    /// All zero (the architectural reset state the domain would otherwise see is UNKNOWN).
    pub const fn zeroed() -> Self {
        Self([0; 528])
    }

    /// Saves the live register file here. `CPTR_EL2.TFP` must be clear.
    pub fn save(&mut self) {
        // SAFETY: `self.0` is 528 writable bytes, 16-byte aligned, exactly what fs_fp_save stores;
        // the routine clobbers only x1 and x2 (caller-saved) and is a leaf.
        unsafe { fs_fp_save(self.0.as_mut_ptr()) }
    }

    /// Loads the register file from here. `CPTR_EL2.TFP` must be clear.
    pub fn restore(&self) {
        // SAFETY: as in `save`, reading instead of writing; the FP registers it overwrites belong
        // to the domains, never to the (soft-float) hypervisor.
        unsafe { fs_fp_restore(self.0.as_ptr()) }
    }
}

/// Everything the arch layer keeps per context ([`frameshift_core::Arch::Context`]): the
/// core's [`Context`](frameshift_core::Context) holds it next to the general registers, so
/// there is no array of arch state beside the domains.
#[derive(Clone, Copy, Debug)]
pub struct ArchContext {
    /// EL1 system registers while the context is off the CPU.
    pub el1: El1Registers,
    /// The GIC virtual CPU interface while the context is off the CPU.
    pub gic: VirtualInterface,
    /// FP/SIMD registers while another context owns the register file.
    pub fp: FpState,
}

impl ArchContext {
    /// A context about to run for the first time.
    pub const fn initial() -> Self {
        Self {
            el1: El1Registers::initial(),
            gic: VirtualInterface::initial(),
            fp: FpState::zeroed(),
        }
    }
}
