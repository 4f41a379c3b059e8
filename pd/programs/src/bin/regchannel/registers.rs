//! The registers the register-channel scenario probes, and the probes themselves: one `mrs` and
//! one `msr` per register in a table of assembly stubs, so that an access the CPU or the
//! hypervisor refuses (an Undefined Instruction exception at this PD's EL1 vector) is survived
//! and reported instead of ending the PD.
//!
//! Encodings are `op0, op1, CRn, CRm, op2` as the Arm ARM (DDI 0487) register descriptions give
//! them, written in the assembler's generic `s<op0>_<op1>_c<n>_c<m>_<op2>` form so that no
//! assembler feature flag is needed. The instruction probes use `.inst` with the A64 encoding.
//!
//! This module holds all of the program's assembly; everything else is safe code.
#![allow(unsafe_code)]

/// When a register is probed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Phase {
    /// Expected to hold data or to be absent: every role writes its pattern and checks it.
    Data,
    /// Expected to be refused by the hypervisor (or absent): only the writer probes it, after
    /// the exchange, because the hypervisor before the register-channel fix stopped a PD on such
    /// an access.
    Refused,
}

/// One probed register (or instruction).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Register {
    /// The architectural name, as the console line prints it.
    pub(crate) name: &'static str,
    /// Bits a PD may set to a pattern without changing how it runs (stage 1 stays off, FP stays
    /// on, no alignment checks, no pointer authentication); the check compares these bits.
    pub(crate) mask: u64,
    /// When it is probed.
    pub(crate) phase: Phase,
}

/// Every bit.
const ALL: u64 = u64::MAX;
/// The low 32 bits.
const LOW32: u64 = 0xFFFF_FFFF;
/// SCTLR_EL1 bits that only concern EL0 or AArch32 EL0: SA0, CP15BEN, ITD, SED, UMA, DZE, UCT,
/// nTWI, nTWE, UCI.
const SCTLR_EL0_BITS: u64 = (1 << 4)
    | (1 << 5)
    | (1 << 7)
    | (1 << 8)
    | (1 << 9)
    | (1 << 14)
    | (1 << 15)
    | (1 << 16)
    | (1 << 18)
    | (1 << 26);
/// CPACR_EL1 ZEN (17:16), SMEN (25:24), TTA (28); FPEN stays on.
const CPACR_TRAP_BITS: u64 = (3 << 16) | (3 << 24) | (1 << 28);
/// FPCR: Len, FZ16, Stride, RMode, FZ, DN, AHP.
const FPCR_BITS: u64 = 0x07FF_0000;
/// FPSR: N, Z, C, V, QC and the cumulative exception flags.
const FPSR_BITS: u64 = 0xF800_009F;

macro_rules! registers {
    ($( $name:literal $kind:ident $encoding:literal $mask:expr, $phase:ident; )*) => {
        /// The table, in probe order. Index `i` is stub `i` of both assembly tables.
        pub(crate) const REGISTERS: &[Register] = &[
            $( Register { name: $name, mask: $mask, phase: Phase::$phase }, )*
        ];

        #[cfg(all(target_arch = "aarch64", target_os = "none"))]
        core::arch::global_asm!(
            ".macro REGCHAN_READ_sysreg encoding",
            "    mrs x0, \\encoding",
            "    ret",
            ".endm",
            ".macro REGCHAN_WRITE_sysreg encoding",
            "    msr \\encoding, x0",
            "    ret",
            ".endm",
            ".macro REGCHAN_READ_insn word",
            "    .inst \\word",
            "    ret",
            ".endm",
            ".macro REGCHAN_WRITE_insn word",
            "    .inst \\word",
            "    ret",
            ".endm",
            ".section .text.regchan_probes, \"ax\"",
            ".balign 8",
            "regchan_probe_start:",
            "regchan_read_table:",
            $( concat!("REGCHAN_READ_", stringify!($kind), " ", $encoding), )*
            "regchan_write_table:",
            $( concat!("REGCHAN_WRITE_", stringify!($kind), " ", $encoding), )*
            "regchan_probe_end:",
        );
    };
}

registers! {
    // The stage-1 and exception state every ARMv8.0 CPU has (context.rs switches it).
    "SCTLR_EL1" sysreg "s3_0_c1_c0_0" SCTLR_EL0_BITS, Data;
    "CPACR_EL1" sysreg "s3_0_c1_c0_2" CPACR_TRAP_BITS, Data;
    "TTBR0_EL1" sysreg "s3_0_c2_c0_0" ALL, Data;
    "TTBR1_EL1" sysreg "s3_0_c2_c0_1" ALL, Data;
    "TCR_EL1" sysreg "s3_0_c2_c0_2" ALL, Data;
    "AFSR0_EL1" sysreg "s3_0_c5_c1_0" ALL, Data;
    "AFSR1_EL1" sysreg "s3_0_c5_c1_1" ALL, Data;
    "MAIR_EL1" sysreg "s3_0_c10_c2_0" ALL, Data;
    "AMAIR_EL1" sysreg "s3_0_c10_c3_0" ALL, Data;
    "CONTEXTIDR_EL1" sysreg "s3_0_c13_c0_1" ALL, Data;
    "TPIDR_EL1" sysreg "s3_0_c13_c0_4" ALL, Data;
    "TPIDR_EL0" sysreg "s3_3_c13_c0_2" ALL, Data;
    "TPIDRRO_EL0" sysreg "s3_3_c13_c0_3" ALL, Data;
    "SP_EL0" sysreg "s3_0_c4_c1_0" ALL, Data;
    "PAR_EL1" sysreg "s3_0_c7_c4_0" ALL, Data;
    "CNTKCTL_EL1" sysreg "s3_0_c14_c1_0" 0x3FF, Data;
    "CSSELR_EL1" sysreg "s3_2_c0_c0_0" 0xF, Data;
    "CNTV_CVAL_EL0" sysreg "s3_3_c14_c3_2" ALL, Data;
    "CNTV_CTL_EL0" sysreg "s3_3_c14_c3_1" 0x3, Data;
    // PSTATE fields: they travel in SPSR_EL2 with the trap frame.
    "DAIF" sysreg "s3_3_c4_c2_1" 0x3C0, Data;
    "PAN" sysreg "s3_0_c4_c2_3" 1 << 22, Data;
    "UAO" sysreg "s3_0_c4_c2_4" 1 << 23, Data;
    "DIT" sysreg "s3_3_c4_c2_5" 1 << 24, Data;
    "SSBS" sysreg "s3_3_c4_c2_6" 1 << 12, Data;
    "TCO" sysreg "s3_3_c4_c2_7" 1 << 25, Data;
    // FP control and status: switched lazily with the FP/SIMD registers.
    "FPCR" sysreg "s3_3_c4_c4_0" FPCR_BITS, Data;
    "FPSR" sysreg "s3_3_c4_c4_1" FPSR_BITS, Data;
    // The GIC CPU interface: with HCR_EL2.IMO/FMO these are the ICV_* registers.
    "ICC_PMR_EL1" sysreg "s3_0_c4_c6_0" 0xFF, Data;
    "ICC_BPR0_EL1" sysreg "s3_0_c12_c8_3" 0x7, Data;
    "ICC_BPR1_EL1" sysreg "s3_0_c12_c12_3" 0x7, Data;
    "ICC_CTLR_EL1" sysreg "s3_0_c12_c12_4" 0x3, Data;
    "ICC_IGRPEN0_EL1" sysreg "s3_0_c12_c12_6" 0x1, Data;
    "ICC_IGRPEN1_EL1" sysreg "s3_0_c12_c12_7" 0x1, Data;
    "ICC_AP0R0_EL1" sysreg "s3_0_c12_c8_4" LOW32, Data;
    "ICC_AP0R1_EL1" sysreg "s3_0_c12_c8_5" LOW32, Data;
    "ICC_AP0R2_EL1" sysreg "s3_0_c12_c8_6" LOW32, Data;
    "ICC_AP0R3_EL1" sysreg "s3_0_c12_c8_7" LOW32, Data;
    "ICC_AP1R0_EL1" sysreg "s3_0_c12_c9_0" LOW32, Data;
    "ICC_AP1R1_EL1" sysreg "s3_0_c12_c9_1" LOW32, Data;
    "ICC_AP1R2_EL1" sysreg "s3_0_c12_c9_2" LOW32, Data;
    "ICC_AP1R3_EL1" sysreg "s3_0_c12_c9_3" LOW32, Data;
    // Feature registers of `max`.
    "TPIDR2_EL0" sysreg "s3_3_c13_c0_5" ALL, Data;
    "DISR_EL1" sysreg "s3_0_c12_c1_1" ALL, Data;
    "SMPRI_EL1" sysreg "s3_0_c1_c2_4" 0xF, Data;
    // Implementation defined (cortex-a57/a53): HCR_EL2.TIDCP traps them on hardware.
    "L2CTLR_EL1" sysreg "s3_1_c11_c0_2" ALL, Data;
    "L2ECTLR_EL1" sysreg "s3_1_c11_c0_3" ALL, Data;
    "L2ACTLR_EL1" sysreg "s3_1_c15_c0_0" ALL, Data;
    "CPUACTLR_EL1" sysreg "s3_1_c15_c2_0" ALL, Data;
    "CPUECTLR_EL1" sysreg "s3_1_c15_c2_1" ALL, Data;
    "CPUMERRSR_EL1" sysreg "s3_1_c15_c2_2" ALL, Data;
    "L2MERRSR_EL1" sysreg "s3_1_c15_c2_3" ALL, Data;
    // Exception syndrome and return state, and the vector base: written last, read first.
    "ESR_EL1" sysreg "s3_0_c5_c2_0" ALL, Data;
    "FAR_EL1" sysreg "s3_0_c6_c0_0" ALL, Data;
    "ELR_EL1" sysreg "s3_0_c4_c0_1" ALL, Data;
    "SPSR_EL1" sysreg "s3_0_c4_c0_0" ALL, Data;
    "VBAR_EL1" sysreg "s3_0_c12_c0_0" !0x7FF, Data;

    // Refused by EL2 traps (trap.rs configure_el2), or absent.
    "ACTLR_EL1" sysreg "s3_0_c1_c0_1" ALL, Refused;
    "ICC_SRE_EL1" sysreg "s3_0_c12_c12_5" 0x7, Refused;
    "ICC_SGI1R_EL1" sysreg "s3_0_c12_c11_5" 0, Refused;
    "ICC_SGI0R_EL1" sysreg "s3_0_c12_c11_7" 0, Refused;
    "ICC_ASGI1R_EL1" sysreg "s3_0_c12_c11_6" 0, Refused;
    "CNTP_CTL_EL0" sysreg "s3_3_c14_c2_1" 0x3, Refused;
    "CNTP_CVAL_EL0" sysreg "s3_3_c14_c2_2" ALL, Refused;
    "CNTP_TVAL_EL0" sysreg "s3_3_c14_c2_0" LOW32, Refused;
    "MDSCR_EL1" sysreg "s2_0_c0_c2_2" ALL, Refused;
    "MDCCINT_EL1" sysreg "s2_0_c0_c2_0" ALL, Refused;
    "OSDTRRX_EL1" sysreg "s2_0_c0_c0_2" ALL, Refused;
    "OSDTRTX_EL1" sysreg "s2_0_c0_c3_2" ALL, Refused;
    "OSECCR_EL1" sysreg "s2_0_c0_c6_2" ALL, Refused;
    "DBGBVR0_EL1" sysreg "s2_0_c0_c0_4" ALL, Refused;
    "DBGBCR0_EL1" sysreg "s2_0_c0_c0_5" ALL, Refused;
    "DBGWVR0_EL1" sysreg "s2_0_c0_c0_6" ALL, Refused;
    "DBGWCR0_EL1" sysreg "s2_0_c0_c0_7" ALL, Refused;
    "MDRAR_EL1" sysreg "s2_0_c1_c0_0" ALL, Refused;
    "OSLAR_EL1" sysreg "s2_0_c1_c0_4" 1, Refused;
    "OSLSR_EL1" sysreg "s2_0_c1_c1_4" ALL, Refused;
    "OSDLR_EL1" sysreg "s2_0_c1_c3_4" 1, Refused;
    "DBGPRCR_EL1" sysreg "s2_0_c1_c4_4" 1, Refused;
    "DBGCLAIMSET_EL1" sysreg "s2_0_c7_c8_6" 0xFF, Refused;
    "DBGCLAIMCLR_EL1" sysreg "s2_0_c7_c9_6" 0xFF, Refused;
    "DBGAUTHSTATUS_EL1" sysreg "s2_0_c7_c14_6" ALL, Refused;
    "MDCCSR_EL0" sysreg "s2_3_c0_c1_0" ALL, Refused;
    "DBGDTR_EL0" sysreg "s2_3_c0_c4_0" ALL, Refused;
    "DBGDTRRX_EL0" sysreg "s2_3_c0_c5_0" ALL, Refused;
    "PMCR_EL0" sysreg "s3_3_c9_c12_0" ALL, Refused;
    "PMCNTENSET_EL0" sysreg "s3_3_c9_c12_1" ALL, Refused;
    "PMCNTENCLR_EL0" sysreg "s3_3_c9_c12_2" ALL, Refused;
    "PMOVSCLR_EL0" sysreg "s3_3_c9_c12_3" ALL, Refused;
    "PMSWINC_EL0" sysreg "s3_3_c9_c12_4" ALL, Refused;
    "PMSELR_EL0" sysreg "s3_3_c9_c12_5" 0x1F, Refused;
    "PMCEID0_EL0" sysreg "s3_3_c9_c12_6" ALL, Refused;
    "PMCCNTR_EL0" sysreg "s3_3_c9_c13_0" ALL, Refused;
    "PMXEVTYPER_EL0" sysreg "s3_3_c9_c13_1" ALL, Refused;
    "PMXEVCNTR_EL0" sysreg "s3_3_c9_c13_2" ALL, Refused;
    "PMUSERENR_EL0" sysreg "s3_3_c9_c14_0" 0xF, Refused;
    "PMOVSSET_EL0" sysreg "s3_3_c9_c14_3" ALL, Refused;
    "PMINTENSET_EL1" sysreg "s3_0_c9_c14_1" ALL, Refused;
    "PMINTENCLR_EL1" sysreg "s3_0_c9_c14_2" ALL, Refused;
    "PMMIR_EL1" sysreg "s3_0_c9_c14_6" ALL, Refused;
    "PMEVCNTR0_EL0" sysreg "s3_3_c14_c8_0" ALL, Refused;
    "PMEVTYPER0_EL0" sysreg "s3_3_c14_c12_0" ALL, Refused;
    "PMCCFILTR_EL0" sysreg "s3_3_c14_c15_7" ALL, Refused;
    "APIAKEYLO_EL1" sysreg "s3_0_c2_c1_0" ALL, Refused;
    "APIAKEYHI_EL1" sysreg "s3_0_c2_c1_1" ALL, Refused;
    "APIBKEYLO_EL1" sysreg "s3_0_c2_c1_2" ALL, Refused;
    "APIBKEYHI_EL1" sysreg "s3_0_c2_c1_3" ALL, Refused;
    "APDAKEYLO_EL1" sysreg "s3_0_c2_c2_0" ALL, Refused;
    "APDAKEYHI_EL1" sysreg "s3_0_c2_c2_1" ALL, Refused;
    "APDBKEYLO_EL1" sysreg "s3_0_c2_c2_2" ALL, Refused;
    "APDBKEYHI_EL1" sysreg "s3_0_c2_c2_3" ALL, Refused;
    "APGAKEYLO_EL1" sysreg "s3_0_c2_c3_0" ALL, Refused;
    "APGAKEYHI_EL1" sysreg "s3_0_c2_c3_1" ALL, Refused;
    "SCXTNUM_EL0" sysreg "s3_3_c13_c0_7" ALL, Refused;
    "SCXTNUM_EL1" sysreg "s3_0_c13_c0_7" ALL, Refused;
    "LORSA_EL1" sysreg "s3_0_c10_c4_0" ALL, Refused;
    "LOREA_EL1" sysreg "s3_0_c10_c4_1" ALL, Refused;
    "LORN_EL1" sysreg "s3_0_c10_c4_2" ALL, Refused;
    "LORC_EL1" sysreg "s3_0_c10_c4_3" ALL, Refused;
    "LORID_EL1" sysreg "s3_0_c10_c4_7" ALL, Refused;
    "ERRIDR_EL1" sysreg "s3_0_c5_c3_0" ALL, Refused;
    "ERRSELR_EL1" sysreg "s3_0_c5_c3_1" ALL, Refused;
    "ERXCTLR_EL1" sysreg "s3_0_c5_c4_1" ALL, Refused;
    "ERXSTATUS_EL1" sysreg "s3_0_c5_c4_2" ALL, Refused;
    "ZCR_EL1" sysreg "s3_0_c1_c2_0" 0xF, Refused;
    "SMCR_EL1" sysreg "s3_0_c1_c2_6" 0xF, Refused;
    "SVCR" sysreg "s3_3_c4_c2_2" 0x3, Refused;
    "GCR_EL1" sysreg "s3_0_c1_c0_6" ALL, Refused;
    "RGSR_EL1" sysreg "s3_0_c1_c0_5" ALL, Refused;
    "TFSR_EL1" sysreg "s3_0_c5_c6_0" ALL, Refused;
    "TFSRE0_EL1" sysreg "s3_0_c5_c6_1" ALL, Refused;
    "AMCR_EL0" sysreg "s3_3_c13_c2_0" ALL, Refused;
    "AMUSERENR_EL0" sysreg "s3_3_c13_c2_3" ALL, Refused;
    "AMCNTENSET0_EL0" sysreg "s3_3_c13_c2_5" ALL, Refused;
    "PMSCR_EL1" sysreg "s3_0_c9_c9_0" ALL, Refused;
    "TRFCR_EL1" sysreg "s3_0_c1_c2_1" ALL, Refused;
    "MPAM0_EL1" sysreg "s3_0_c10_c5_1" ALL, Refused;
    "MPAM1_EL1" sysreg "s3_0_c10_c5_0" ALL, Refused;
    "TCR2_EL1" sysreg "s3_0_c2_c0_3" ALL, Refused;
    "SCTLR2_EL1" sysreg "s3_0_c1_c0_3" ALL, Refused;
    "PIR_EL1" sysreg "s3_0_c10_c2_3" ALL, Refused;
    "PIRE0_EL1" sysreg "s3_0_c10_c2_2" ALL, Refused;
    "POR_EL1" sysreg "s3_0_c10_c2_4" ALL, Refused;
    "POR_EL0" sysreg "s3_3_c10_c2_4" ALL, Refused;
    "ACCDATA_EL1" sysreg "s3_0_c13_c0_5" ALL, Refused;
    // Instructions of disabled features (both stubs execute the instruction once).
    "SVE_RDVL" insn "0x04bf5020" 0, Refused;
    "SME_SMSTART" insn "0xd503477f" 0, Refused;
    "PAUTH_PACGA" insn "0x9ac13000" 0, Refused;
}

/// What one access did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Access {
    /// It completed (a read returns the value).
    Done(u64),
    /// It took an Undefined Instruction exception (`ESR_EL1.EC` = 0).
    Undefined,
}

impl Access {
    /// The value read, if the read completed.
    pub(crate) const fn value(self) -> Option<u64> {
        match self {
            Self::Done(value) => Some(value),
            Self::Undefined => None,
        }
    }
}

#[cfg(all(target_arch = "aarch64", target_os = "none"))]
mod probe {
    use super::{Access, REGISTERS};

    // The probe entry points and this PD's EL1 vector table. A probe jumps to stub `index` of a
    // table (8 bytes each: the access, then `ret`) with x1 = 0. Only an Undefined Instruction
    // exception raised by a stub is survived: the vector sets x1 = 1 and resumes at the stub's
    // `ret`. Anything else goes to `regchan_unexpected`, which prints it and stops this PD.
    core::arch::global_asm!(
        r#"
    .section .text.regchan_probe_entry, "ax"
    .global regchan_read
regchan_read:
    adrp    x9, regchan_read_table
    add     x9, x9, :lo12:regchan_read_table
    add     x9, x9, x0, lsl #3
    mov     x1, #0
    br      x9

    .global regchan_write
regchan_write:
    adrp    x9, regchan_write_table
    add     x9, x9, :lo12:regchan_write_table
    add     x9, x9, x0, lsl #3
    mov     x0, x1
    mov     x1, #0
    br      x9

    // regchan_aarch32(entry: x0, r0: x1) -> (r0: x0, ESR_EL1: x1): runs the A32 code at
    // `entry` in AArch32 User mode with R0 = r0, until its first exception returns here through
    // the vector at 0x600 (lower EL, AArch32). AArch32 User mode uses X0-X14 only (R13_usr is
    // X13), so SP_EL1 still points at the frame pushed here.
    .global regchan_aarch32
regchan_aarch32:
    stp     x29, x30, [sp, #-32]!
    stp     x19, x20, [sp, #16]
    msr     elr_el1, x0
    // SPSR: AArch32 User mode (M = 0b10000), A32, little-endian, A, I and F masked.
    mov     x2, #0x1d0
    msr     spsr_el1, x2
    mov     x0, x1
    eret
regchan_aarch32_return:
    mrs     x1, esr_el1
    ldp     x19, x20, [sp, #16]
    ldp     x29, x30, [sp], #32
    ret

    // A32 code (little-endian words): each sequence ends with SVC #0.
    .balign 4
    .global regchan_a32_tpidrurw
regchan_a32_tpidrurw:
    .word   0xee0d0f50      // MCR p15, 0, r0, c13, c0, 2: TPIDRURW = r0
    .word   0xe3a00000      // MOV r0, #0
    .word   0xee1d0f50      // MRC p15, 0, r0, c13, c0, 2: r0 = TPIDRURW
    .word   0xef000000      // SVC #0
    .global regchan_a32_cntp_ctl
regchan_a32_cntp_ctl:
    .word   0xee1e0f32      // MRC p15, 0, r0, c14, c2, 1: r0 = CNTP_CTL
    .word   0xef000000      // SVC #0

    .section .text.regchan_vectors, "ax"
    .balign 2048
    .global regchan_vectors
regchan_vectors:
    .irp kind, 0, 1, 2, 3
    .balign 0x80
    mov     x0, #\kind
    b       regchan_vector_unexpected
    .endr
    .balign 0x80
    b       regchan_sync_current
    .irp kind, 5, 6, 7, 8, 9, 10, 11
    .balign 0x80
    mov     x0, #\kind
    b       regchan_vector_unexpected
    .endr
    .balign 0x80
    b       regchan_aarch32_return
    .irp kind, 13, 14, 15
    .balign 0x80
    mov     x0, #\kind
    b       regchan_vector_unexpected
    .endr

regchan_sync_current:
    stp     x2, x3, [sp, #-16]!
    mrs     x2, elr_el1
    adrp    x3, regchan_probe_start
    add     x3, x3, :lo12:regchan_probe_start
    cmp     x2, x3
    b.lo    1f
    adrp    x3, regchan_probe_end
    add     x3, x3, :lo12:regchan_probe_end
    cmp     x2, x3
    b.hs    1f
    mrs     x3, esr_el1
    lsr     x3, x3, #26
    cbnz    x3, 1f
    add     x2, x2, #4
    msr     elr_el1, x2
    mov     x1, #1
    ldp     x2, x3, [sp], #16
    eret
1:  ldp     x2, x3, [sp], #16
    mov     x0, #4
regchan_vector_unexpected:
    mrs     x1, esr_el1
    mrs     x2, elr_el1
    mrs     x3, far_el1
    bl      regchan_unexpected
2:  wfe
    b       2b
"#
    );

    extern "C" {
        fn regchan_read();
        fn regchan_write();
        fn regchan_aarch32();
        static regchan_vectors: u8;
        static regchan_a32_tpidrurw: u8;
        static regchan_a32_cntp_ctl: u8;
    }

    /// A32 code run at AArch32 EL0 by [`aarch32_el0`].
    #[derive(Clone, Copy, Debug)]
    pub(crate) enum A32Code {
        /// Writes R0 to TPIDRURW, clears R0, reads TPIDRURW back into R0.
        Tpidrurw,
        /// Reads CNTP_CTL (the EL1 physical timer, which EL2 keeps from EL1 and EL0).
        CntpCtl,
    }

    /// Runs `code` in AArch32 User mode with R0 = `r0`; returns R0 and `ESR_EL1` of the
    /// exception that ended it (an SVC, or the refusal of its access).
    pub(crate) fn aarch32_el0(code: A32Code, r0: u64) -> (u64, u64) {
        let entry = match code {
            A32Code::Tpidrurw => core::ptr::addr_of!(regchan_a32_tpidrurw),
            A32Code::CntpCtl => core::ptr::addr_of!(regchan_a32_cntp_ctl),
        } as u64;
        let result: u64;
        let syndrome: u64;
        // SAFETY: `regchan_aarch32` saves x19, x20, x29 and x30 on this stack (the compiler may
        // not be told they change), drops to AArch32 EL0 at `entry` (A32 code of this image,
        // which touches only R0, i.e. x0) and returns through the 0x600 vector on its first
        // exception, restoring what it saved. The Arm ARM leaves the upper halves of the
        // general registers UNKNOWN across AArch32 execution, so every other one is declared
        // clobbered; memory is not touched outside the 32 bytes it pushes below SP.
        unsafe {
            core::arch::asm!(
                "blr {entry}",
                entry = in(reg) regchan_aarch32 as *const () as usize,
                inout("x0") entry => result,
                inout("x1") r0 => syndrome,
                out("x2") _, out("x3") _, out("x4") _, out("x5") _, out("x6") _,
                out("x7") _, out("x8") _, out("x9") _, out("x10") _, out("x11") _,
                out("x12") _, out("x13") _, out("x14") _, out("x15") _, out("x16") _,
                out("x17") _, out("x18") _, out("x21") _, out("x22") _, out("x23") _,
                out("x24") _, out("x25") _, out("x26") _, out("x27") _, out("x28") _,
                out("x30") _,
            );
        }
        (result, syndrome)
    }

    /// An exception no probe raised: print it and stop this PD.
    #[no_mangle]
    extern "C" fn regchan_unexpected(kind: u64, esr: u64, elr: u64, far: u64) -> ! {
        frameshift_pd::debug_println!(
            "unexpected exception vector={kind} esr={esr:#x} elr={elr:#x} far={far:#x}"
        );
        frameshift_pd::stop_self(frameshift_pd::StopReason::Exception)
    }

    /// Points `VBAR_EL1` at this module's vectors, which survive the probes' refusals.
    pub(crate) fn install_vectors() {
        let base = core::ptr::addr_of!(regchan_vectors) as u64;
        // SAFETY: the table is 2 KiB aligned and handles every exception EL1 can take here.
        unsafe { core::arch::asm!("msr vbar_el1, {}", "isb", in(reg) base, options(nostack)) };
    }

    /// Reads register `index`.
    pub(crate) fn read(index: usize) -> Access {
        assert!(index < REGISTERS.len());
        let value: u64;
        let undefined: u64;
        // SAFETY: `regchan_read` jumps to stub `index` (bounds checked above), which reads one
        // system register into x0 (or executes one instruction whose only output is x0) and
        // returns; if it is refused, the vector resumes it with x1 = 1. It uses x0, x1, x9 and
        // the link register, all declared, and no memory or stack of this program. The
        // registers it may read have no side effect on this program's memory.
        unsafe {
            core::arch::asm!(
                "blr {entry}",
                entry = in(reg) regchan_read as *const () as usize,
                inout("x0") index => value,
                out("x1") undefined,
                out("x9") _,
                out("x30") _,
            );
        }
        if undefined == 0 {
            Access::Done(value)
        } else {
            Access::Undefined
        }
    }

    /// Writes `value` to register `index`.
    pub(crate) fn write(index: usize, value: u64) -> Access {
        assert!(index < REGISTERS.len());
        let undefined: u64;
        // SAFETY: as in `read`, with stub `index` of the write table, which moves x0 into one
        // system register. Every value written is within the register's mask (see `Register`),
        // which leaves stage 1 off, FP on and this program's memory untouched.
        unsafe {
            core::arch::asm!(
                "blr {entry}",
                entry = in(reg) regchan_write as *const () as usize,
                inout("x0") index => _,
                inout("x1") value => undefined,
                out("x9") _,
                out("x30") _,
            );
        }
        if undefined == 0 {
            Access::Done(0)
        } else {
            Access::Undefined
        }
    }
}

#[cfg(all(target_arch = "aarch64", target_os = "none"))]
pub(crate) use probe::{aarch32_el0, install_vectors, read, write, A32Code};

/// A host build (clippy) has no registers: every access completes and reads zero.
#[cfg(not(all(target_arch = "aarch64", target_os = "none")))]
mod host {
    use super::Access;

    pub(crate) fn install_vectors() {}

    #[derive(Clone, Copy, Debug)]
    pub(crate) enum A32Code {
        Tpidrurw,
        CntpCtl,
    }

    pub(crate) fn aarch32_el0(_code: A32Code, _r0: u64) -> (u64, u64) {
        (0, 0)
    }

    pub(crate) fn read(_index: usize) -> Access {
        Access::Done(0)
    }

    pub(crate) fn write(_index: usize, _value: u64) -> Access {
        Access::Done(0)
    }
}

#[cfg(not(all(target_arch = "aarch64", target_os = "none")))]
pub(crate) use host::{aarch32_el0, install_vectors, read, write, A32Code};
