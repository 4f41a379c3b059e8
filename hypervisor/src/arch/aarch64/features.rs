//! What this CPU implements, read once at boot from its ID registers: which EL1 state exists to
//! be switched or trapped (docs/ISOLATION.md, I9), so that EL2 never touches a register the CPU
//! lacks (such an access is UNDEFINED at EL2 too).
//!
//! | feature (field) | EL1/EL0 state | handled by |
//! | --- | --- | --- |
//! | FEAT_RAS (`ID_AA64PFR0_EL1.RAS`) | `DISR_EL1`, `ERR*` | `VDISR_EL2` switched; `HCR_EL2.TERR` |
//! | FEAT_SME (`ID_AA64PFR1_EL1.SME`) | `TPIDR2_EL0`, `SMCR_EL1`, `SVCR`, ZA | `TPIDR2_EL0` switched; `CPTR_EL2.TSM` |
//! | FEAT_LOR (`ID_AA64MMFR1_EL1.LO`) | `LORSA/LOREA/LORN/LORC_EL1` | `HCR_EL2.TLOR` |
//! | FEAT_HCX (`ID_AA64MMFR1_EL1.HCX`) | enables of later features | `HCRX_EL2` = 0 |
//! | FEAT_AMUv1 (`ID_AA64PFR0_EL1.AMU`) | `AMCNTEN*`, `AMUSERENR_EL0` | `CPTR_EL2.TAM` |
//! | GICv3 virtual interface (`ICH_VTR_EL2`, read by gic.rs) | `ICV_*` | `ICH_VMCR_EL2`, `ICH_AP{0,1}R<n>_EL2` switched |
//!
//! Features whose EL1 state needs fine-grained traps this hypervisor does not program are
//! refused at boot by [`IdRegisters::unhandled_feature`]: no QEMU 7.2 CPU has them.

use aarch64_cpu::registers::*;

/// The raw ID registers the probe reads (Arm ARM D19.2, "Identification registers").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IdRegisters {
    /// `ID_AA64PFR0_EL1`.
    pub pfr0: u64,
    /// `ID_AA64PFR1_EL1`.
    pub pfr1: u64,
    /// `ID_AA64MMFR1_EL1`.
    pub mmfr1: u64,
    /// `ID_AA64MMFR3_EL1` (RAZ where the CPU predates it: it lies in the ID register space).
    pub mmfr3: u64,
    /// `ID_AA64DFR0_EL1`.
    pub dfr0: u64,
}

/// The 4-bit ID field at `shift` (every AArch64 ID field is 4 bits wide).
const fn field(register: u64, shift: u32) -> u64 {
    (register >> shift) & 0xF
}

impl IdRegisters {
    /// Reads this CPU's ID registers (EL2 may read all of them).
    pub fn read() -> Self {
        let mmfr3: u64;
        // SAFETY: ID_AA64MMFR3_EL1 is op0=3, op1=0, CRn=0, CRm=7, op2=3 (Arm ARM register
        // description); aarch64-cpu has no accessor. The encodings op0=3, op1=0, CRn=0,
        // CRm=1..7 are the ID register space, whose unallocated registers the Arm ARM makes RAZ,
        // so this read has no effect and cannot UNDEF (checked on cortex-a53/a57 in QEMU 7.2).
        unsafe {
            core::arch::asm!("mrs {}, s3_0_c0_c7_3", out(reg) mmfr3, options(nomem, nostack));
        }
        Self {
            pfr0: ID_AA64PFR0_EL1.get(),
            pfr1: ID_AA64PFR1_EL1.get(),
            mmfr1: ID_AA64MMFR1_EL1.get(),
            mmfr3,
            dfr0: ID_AA64DFR0_EL1.get(),
        }
    }

    /// A feature with EL1-writable state that Frameshift neither switches nor traps, if this CPU
    /// has one. Each of these is reachable at EL1 unless EL2 programs its fine-grained traps
    /// (FEAT_FGT) or its own control registers, which this hypervisor does not.
    pub const fn unhandled_feature(&self) -> Option<&'static str> {
        if field(self.pfr0, 40) != 0 || field(self.pfr1, 16) != 0 {
            Some("FEAT_MPAM (MPAM0_EL1, MPAM1_EL1)")
        } else if field(self.dfr0, 32) != 0 {
            Some("FEAT_SPE (PMSCR_EL1 and the PMS* registers)")
        } else if field(self.dfr0, 40) != 0 {
            Some("FEAT_TRF (TRFCR_EL1)")
        } else if field(self.dfr0, 44) != 0 {
            Some("FEAT_TRBE (TRBLIMITR_EL1 and the TRB* registers)")
        } else if field(self.dfr0, 52) != 0 {
            Some("FEAT_BRBE (BRBCR_EL1 and the branch records)")
        } else if field(self.mmfr3, 8) != 0 {
            Some("FEAT_S1PIE (PIR_EL1, PIRE0_EL1)")
        } else if field(self.mmfr3, 16) != 0 {
            Some("FEAT_S1POE (POR_EL0, POR_EL1)")
        } else {
            None
        }
    }

    /// What the EL2 code must switch, trap or avoid on this CPU; the GIC virtual interface's
    /// size is [`CpuFeatures::MINIMAL`]'s until [`CpuFeatures::with_virtual_interface`].
    pub const fn features(&self) -> CpuFeatures {
        CpuFeatures {
            ras: field(self.pfr0, 28) != 0,
            sme: field(self.pfr1, 24) != 0,
            lor: field(self.mmfr1, 16) != 0,
            hcx: field(self.mmfr1, 40) != 0,
            amu: field(self.pfr0, 44) != 0,
            ..CpuFeatures::MINIMAL
        }
    }
}

/// The optional architecture features the EL2 code depends on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CpuFeatures {
    /// FEAT_RAS: `DISR_EL1` exists (at EL1 it is `VDISR_EL2` while `HCR_EL2.AMO` is set), and
    /// so does `HCR_EL2.TERR`.
    pub ras: bool,
    /// FEAT_SME: `TPIDR2_EL0` exists (no EL2 trap for it without FEAT_FGT).
    pub sme: bool,
    /// FEAT_LOR: the LORegion registers and `HCR_EL2.TLOR` exist.
    pub lor: bool,
    /// FEAT_HCX: `HCRX_EL2` exists.
    pub hcx: bool,
    /// FEAT_AMUv1: the activity monitors and `CPTR_EL2.TAM` exist.
    pub amu: bool,
    /// `ICH_AP0R<n>_EL2` and `ICH_AP1R<n>_EL2` registers that exist (1, 2 or 4).
    pub active_priority_registers: usize,
    /// `ICH_LR<n>_EL2` registers that exist (1 to 16).
    pub list_registers: usize,
}

impl CpuFeatures {
    /// Nothing at all, not even the minimum: all zeros, the state before the probe runs (no
    /// register is switched with it).
    pub const NONE: Self = Self {
        ras: false,
        sme: false,
        lor: false,
        hcx: false,
        amu: false,
        active_priority_registers: 0,
        list_registers: 0,
    };

    /// Before the probe: nothing optional, one active-priority register per group (the minimum).
    pub const MINIMAL: Self = Self {
        ras: false,
        sme: false,
        lor: false,
        hcx: false,
        amu: false,
        active_priority_registers: 1,
        list_registers: 1,
    };

    /// These features with the GIC virtual interface's size from `ICH_VTR_EL2` (readable only
    /// once `ICC_SRE_EL2.SRE` is set: gic.rs reads it).
    pub const fn with_virtual_interface(self, ich_vtr: u64) -> Self {
        // ICH_VTR_EL2.PRIbits (31:29) is the number of virtual priority bits minus one: 5 bits
        // need one active-priority register per group, 6 need two, 7 need four (GICv3
        // architecture specification, ICH_AP0R<n>_EL2).
        let active_priority_registers = match ((ich_vtr >> 29) & 0x7) + 1 {
            0..=5 => 1,
            6 => 2,
            _ => 4,
        };
        Self {
            active_priority_registers,
            // ICH_VTR_EL2.ListRegs (4:0) is the number of list registers minus one.
            list_registers: (ich_vtr & 0x1F) as usize + 1,
            ..self
        }
    }
}
