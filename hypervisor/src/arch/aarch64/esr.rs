//! Decoding why a domain left EL1: the exception syndrome (`ESR_EL2`, Arm ARM D24.2.40), the
//! faulting IPA (`HPFAR_EL2`, `FAR_EL2`), and what the arch layer writes back when it gives an
//! exception to a domain's own EL1 vector. Pure functions of register values: the trap handler
//! reads the registers and the core sees only the typed exit ([`Exit`](frameshift_core::Exit)).

use frameshift_core::kernel::{FaultKind, FaultReport, InstructionLength};
use frameshift_core::Ipa;

/// `ESR_EL2.EC` (bits 31:26): the exception class.
pub const fn exception_class(esr: u64) -> u64 {
    (esr >> 26) & 0x3F
}

/// `ESR_EL2.IL` (bit 25).
const IL: u64 = 1 << 25;
/// `ESR_EL2.ISS.WnR` of a data abort (bit 6): the access was a write.
const WNR: u64 = 1 << 6;

/// EC 0x01: a trapped `WFI` or `WFE`.
pub const EC_WFX: u64 = 0x01;
/// EC 0x07: an FP/SIMD access trapped by `CPTR_EL2.TFP`.
pub const EC_FP: u64 = 0x07;
/// EC 0x16: `HVC` from AArch64.
pub const EC_HVC64: u64 = 0x16;
/// EC 0x17: `SMC` from AArch64, trapped by `HCR_EL2.TSC`.
pub const EC_SMC64: u64 = 0x17;
/// EC 0x20: an instruction abort from a lower EL.
pub const EC_INSTRUCTION_ABORT_LOWER: u64 = 0x20;
/// EC 0x21: an instruction abort taken without a change of EL.
pub const EC_INSTRUCTION_ABORT_SAME: u64 = 0x21;
/// EC 0x24: a data abort from a lower EL.
pub const EC_DATA_ABORT_LOWER: u64 = 0x24;
/// EC 0x25: a data abort taken without a change of EL.
pub const EC_DATA_ABORT_SAME: u64 = 0x25;

/// Exception classes of an instruction that EL2 traps only to refuse it: the domain gets it back
/// as UNDEFINED (docs/ISOLATION.md, I9).
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
pub const fn is_refused_access(class: u64) -> bool {
    matches!(
        class,
        0x03 | 0x04 | 0x05 | 0x06 | 0x09 | 0x0A | 0x0C | 0x18 | 0x19 | 0x1D
    )
}

/// The length of the instruction a trap was taken on, from `ESR_EL2.IL` (bit 25): 0 for a 16-bit
/// T32 instruction, 1 for a 32-bit one (every A64 instruction). A trap that resumes past the
/// instruction (a refused `SMC`, a yielding `WFI`) must skip exactly this much: a T32 `WFI` from
/// an AArch32 EL0 is 2 bytes, and skipping 4 would jump over the instruction after it.
pub const fn instruction_length(esr: u64) -> InstructionLength {
    if esr & IL == 0 {
        InstructionLength::Narrow
    } else {
        InstructionLength::Wide
    }
}

/// The class of a stage-2 abort from its fault status code (ESR bits 5:0): translation faults
/// are 0x04-0x07 by level, permission faults 0x0D-0x0F (DESIGN.md 9).
pub const fn classify_abort(esr: u64) -> FaultKind {
    match esr & 0x3F {
        0x04..=0x07 => FaultKind::Translation,
        0x0D..=0x0F => FaultKind::Permission,
        _ => FaultKind::OtherAbort,
    }
}

/// The faulting IPA of a stage-2 abort: the page from `HPFAR_EL2.FIPA` (bits 39:4 hold IPA
/// bits 47:12), the offset from `FAR_EL2` (DESIGN.md 9).
pub const fn abort_ipa(hpfar: u64, far: u64) -> Ipa {
    Ipa(((hpfar & 0xF_FFFF_FFF0) << 8) | (far & 0xFFF))
}

/// `ESR_EL1` of the synchronous external abort given back to the domain: a data abort becomes
/// EC 0x25 (data abort, same EL) and keeps WnR; an instruction abort becomes EC 0x21. IL = 1,
/// FSC = 0x10 (synchronous external abort, not on a table walk).
pub const fn injected_abort_syndrome(report: &FaultReport) -> u64 {
    let (class, wnr) = if exception_class(report.esr) == EC_DATA_ABORT_LOWER {
        (EC_DATA_ABORT_SAME, report.esr & WNR)
    } else {
        (EC_INSTRUCTION_ABORT_SAME, 0)
    };
    (class << 26) | IL | wnr | 0x10
}

/// `ESR_EL1` of an Undefined Instruction exception (EC 0) for a trapped instruction: only IL
/// survives, as the trapped instruction's own.
pub const fn undefined_syndrome(esr: u64) -> u64 {
    esr & IL
}

/// Offset from `VBAR_EL1` of the synchronous exception vector for an exception taken to EL1
/// from the mode in `pstate` (Arm ARM D1.3.1): EL1h 0x200, EL1t 0x000, EL0 (AArch64) 0x400,
/// EL0 in AArch32 (`M[4]` set; EL1 itself is always AArch64, `HCR_EL2.RW`) 0x600.
pub const fn el1_sync_vector_offset(pstate: u64) -> u64 {
    if pstate & 0x10 != 0 {
        return 0x600;
    }
    match pstate & 0xF {
        0b0101 => 0x200,
        0b0100 => 0x000,
        _ => 0x400,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(esr: u64) -> FaultReport {
        FaultReport {
            kind: classify_abort(esr),
            ipa: Ipa(0),
            esr,
            pc: 0,
            injectable: true,
        }
    }

    #[test]
    fn aborts_are_classified_by_their_status_code() {
        assert_eq!(classify_abort(0x9200_0007), FaultKind::Translation);
        assert_eq!(classify_abort(0x9200_0004), FaultKind::Translation);
        assert_eq!(classify_abort(0x9200_004F), FaultKind::Permission);
        assert_eq!(classify_abort(0x9200_000B), FaultKind::OtherAbort);
        assert_eq!(exception_class(0x9200_0007), EC_DATA_ABORT_LOWER);
    }

    #[test]
    fn the_ipa_joins_hpfar_page_and_far_offset() {
        // IPA 0x12_3456_7ABC: HPFAR_EL2.FIPA = IPA >> 12 placed at bit 4.
        let hpfar = (0x12_3456_7ABC_u64 >> 12) << 4;
        assert_eq!(abort_ipa(hpfar, 0xFFFF_0000_0000_0ABC), Ipa(0x12_3456_7ABC));
    }

    #[test]
    fn injected_aborts_keep_the_direction_and_say_external() {
        // A data abort write (WnR = bit 6) from EL1.
        let write = report((0x24 << 26) | (1 << 25) | (1 << 6) | 0x07);
        assert_eq!(
            injected_abort_syndrome(&write),
            (0x25 << 26) | (1 << 25) | (1 << 6) | 0x10
        );
        let fetch = report((0x20 << 26) | (1 << 25) | 0x0F);
        assert_eq!(
            injected_abort_syndrome(&fetch),
            (0x21 << 26) | (1 << 25) | 0x10
        );
    }

    #[test]
    fn the_instruction_length_comes_from_esr_il() {
        // A T32 WFI trapped from EL0: EC 0x01, IL = 0, CV = 1, COND = 0xE.
        let t32_wfi = (0x01 << 26) | (1 << 24) | (0xE << 20);
        assert_eq!(instruction_length(t32_wfi).bytes(), 2);
        assert_eq!(undefined_syndrome(t32_wfi), 0);
        // An A64 WFI and SMC: IL = 1.
        assert_eq!(instruction_length((0x01 << 26) | (1 << 25)).bytes(), 4);
        assert_eq!(instruction_length(0x5E00_0000).bytes(), 4);
        assert_eq!(undefined_syndrome(0x5E00_0000), 1 << 25);
    }

    #[test]
    fn the_vector_depends_on_the_mode_the_abort_came_from() {
        assert_eq!(el1_sync_vector_offset(0x3C5), 0x200);
        assert_eq!(el1_sync_vector_offset(0x3C4), 0x000);
        assert_eq!(el1_sync_vector_offset(0x3C0), 0x400);
        // AArch32 User mode (M = 0b10000), A32 or T32.
        assert_eq!(el1_sync_vector_offset(0x1D0), 0x600);
        assert_eq!(el1_sync_vector_offset(0x1F0), 0x600);
    }

    #[test]
    fn only_the_classes_trapped_to_refuse_them_are_refused() {
        for class in 0..64u64 {
            let refused = [0x03, 0x04, 0x05, 0x06, 0x09, 0x0A, 0x0C, 0x18, 0x19, 0x1D];
            assert_eq!(
                is_refused_access(class),
                refused.contains(&class),
                "{class:#x}"
            );
        }
    }
}
