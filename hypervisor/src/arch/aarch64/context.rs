//! Per-context architectural state beyond the trap frame: the EL1 system registers, the GIC
//! virtual CPU interface and the FP/SIMD register file, switched when the running context
//! changes (the stage-2 root, `VTTBR_EL2`, is the context's domain's), and the EL2 controls the
//! context runs under (`HCR_EL2`, `VMPIDR_EL2`: controls.rs). PDs and vCPUs switch the same
//! state; a vCPU differs in its controls (its own stage 1), its reset state (MMU and FP off),
//! its list registers and its virtual timer. docs/ISOLATION.md (I9) lists every register EL1
//! and EL0 can write on the supported CPUs and whether it is switched here, trapped or disabled.
//!
//! FP/SIMD is switched lazily: entering a domain that does not own the register file sets
//! `CPTR_EL2.TFP`; its first FP instruction traps (EC 0x07), and only then is the previous
//! owner's state saved and this domain's loaded. A domain that never uses FP costs nothing.

use aarch64_cpu::registers::*;
use frameshift_abi::vcpu;
use frameshift_core::ContextKind;

use super::controls::{hcr_el2, vcpu_vmpidr, HcrFeatures};
use super::entry::{fs_fp_restore, fs_fp_save};
use super::features::CpuFeatures;
use super::gic::VirtualInterface;
use super::list_registers;

/// `SCTLR_EL1` for a fresh context: stage 1 off (M = 0), data and instruction caches off for a
/// vCPU (C = I = 0; a PD's memory attributes come from `HCR_EL2.DC`); only RES1 bits.
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
    /// A fresh PD's EL1 state: stage 1 off, FP/SIMD on (PD programs are built with NEON).
    pub const fn initial() -> Self {
        Self {
            sctlr: SCTLR_EL1_RESET,
            cpacr: CPACR_EL1_FP_ON,
            ..Self::zeroed()
        }
    }

    /// A fresh vCPU's EL1 state, as a CPU comes out of reset into a guest's first instruction:
    /// MMU and caches off, FP/SIMD trapped to the guest's own EL1 (`CPACR_EL1.FPEN` = 0, which
    /// its boot code turns on), virtual timer disabled, everything else zero.
    pub const fn vcpu_reset() -> Self {
        Self {
            sctlr: SCTLR_EL1_RESET,
            ..Self::zeroed()
        }
    }

    /// The field behind a VMM register number (`frameshift_abi::vcpu::REG_SP_EL0` to
    /// `REG_CNTV_CVAL_EL0`; `REG_MPIDR_EL1` is not here: it is the context's `VMPIDR_EL2`).
    pub fn vcpu_register_mut(&mut self, register: u64) -> Option<&mut u64> {
        Some(match register {
            vcpu::REG_SP_EL0 => &mut self.sp_el0,
            vcpu::REG_SCTLR_EL1 => &mut self.sctlr,
            vcpu::REG_TTBR0_EL1 => &mut self.ttbr0,
            vcpu::REG_TTBR1_EL1 => &mut self.ttbr1,
            vcpu::REG_TCR_EL1 => &mut self.tcr,
            vcpu::REG_MAIR_EL1 => &mut self.mair,
            vcpu::REG_VBAR_EL1 => &mut self.vbar,
            vcpu::REG_ELR_EL1 => &mut self.elr,
            vcpu::REG_SPSR_EL1 => &mut self.spsr,
            vcpu::REG_ESR_EL1 => &mut self.esr,
            vcpu::REG_FAR_EL1 => &mut self.far,
            vcpu::REG_TPIDR_EL1 => &mut self.tpidr_el1,
            vcpu::REG_CNTV_CTL_EL0 => &mut self.cntv_ctl,
            vcpu::REG_CNTV_CVAL_EL0 => &mut self.cntv_cval,
            _ => return None,
        })
    }

    /// The saved `SCTLR_EL1.M`: the context's stage 1 is on.
    pub const fn stage1_on(&self) -> bool {
        self.sctlr & 1 != 0
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
    /// A vCPU (else a PD).
    pub vcpu: bool,
    /// `HCR_EL2` while it runs (controls.rs).
    pub hcr: u64,
    /// `VMPIDR_EL2` while it runs: what it reads as `MPIDR_EL1`.
    pub vmpidr: u64,
    /// The vCPU's virtual timer (PPI 27) fired and its VMM has not acknowledged it yet
    /// (`PD_VCPU_ACK_VPPI`): the PPI stays disabled at the redistributor while it runs.
    pub virtual_timer_masked: bool,
    /// Which creation of the context this is (unique per boot): state the CPU keeps lazily
    /// for a context (FP/SIMD, stage-1 TLB entries) belongs to one incarnation only, so a vCPU
    /// the core re-created never inherits its previous life's registers.
    pub incarnation: u64,
}

impl ArchContext {
    /// A context of `kind` about to run for the first time on a CPU with `features` whose own
    /// `MPIDR_EL1` is `cpu_mpidr`.
    pub const fn new(
        kind: ContextKind,
        features: &CpuFeatures,
        cpu_mpidr: u64,
        incarnation: u64,
    ) -> Self {
        let hcr = hcr_el2(
            kind,
            HcrFeatures {
                lor: features.lor,
                ras: features.ras,
            },
        );
        match kind {
            // Exactly what every PD ran with before vCPUs: the CPU's own MPIDR.
            ContextKind::Pd => Self {
                el1: El1Registers::initial(),
                gic: VirtualInterface::new(features, false),
                fp: FpState::zeroed(),
                vcpu: false,
                hcr,
                vmpidr: cpu_mpidr,
                virtual_timer_masked: false,
                incarnation,
            },
            ContextKind::Vcpu { mpidr } => Self {
                el1: El1Registers::vcpu_reset(),
                gic: VirtualInterface::new(features, true),
                fp: FpState::zeroed(),
                vcpu: true,
                hcr,
                vmpidr: vcpu_vmpidr(mpidr),
                virtual_timer_masked: false,
                incarnation,
            },
        }
    }

    /// Whether the virtual timer's PPI may interrupt this context now that it is on the CPU,
    /// given its live list registers ([`list_registers::virtual_timer_wanted`]).
    pub fn virtual_timer_wanted(&self, live_list_registers: &[u64]) -> bool {
        list_registers::virtual_timer_wanted(
            self.vcpu,
            self.virtual_timer_masked,
            frameshift_core::arch::VIRTUAL_TIMER_PPI,
            live_list_registers,
        )
    }
}
