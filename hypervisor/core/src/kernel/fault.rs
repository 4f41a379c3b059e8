//! What the arch layer reports about a domain's fault, and how the kernel words it.

use core::fmt;

use frameshift_abi::pd_call::{FAULT_STAGE2_ABORT, FAULT_UNKNOWN};

use crate::addr::Ipa;

/// The class of a domain fault.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultKind {
    /// Stage-2 translation fault: the IPA is not mapped for the domain.
    Translation,
    /// Stage-2 permission fault: mapped, but without the right used (e.g. a write to read-only).
    Permission,
    /// Any other stage-2 abort (access flag, external abort, ...).
    OtherAbort,
    /// An exception the kernel does not serve (trapped system register, illegal state, ...).
    Unknown,
}

impl FaultKind {
    /// The word used in `kind=` on the console.
    pub const fn word(self) -> &'static str {
        match self {
            Self::Translation => "translation",
            Self::Permission => "permission",
            Self::OtherAbort => "abort",
            Self::Unknown => "unknown",
        }
    }

    /// The `FAULT_*` label of the parent's `fault` event.
    pub const fn label(self) -> u64 {
        match self {
            Self::Unknown => FAULT_UNKNOWN,
            _ => FAULT_STAGE2_ABORT,
        }
    }
}

/// One fault, as the arch layer decoded it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FaultReport {
    /// Class.
    pub kind: FaultKind,
    /// Faulting IPA (stage-2 aborts; zero otherwise).
    pub ipa: Ipa,
    /// `ESR_EL2`.
    pub esr: u64,
    /// Faulting PC (`ELR_EL2`).
    pub pc: u64,
    /// Whether the fault can be given back to the domain as a synchronous external abort at EL1
    /// (a data or instruction abort, and the domain has installed an exception vector).
    pub injectable: bool,
}

impl FaultReport {
    /// The message registers of the parent's `fault` event (pd_call.rs `FAULT_*` docs).
    pub fn message(&self) -> ([u64; 3], usize) {
        match self.kind {
            FaultKind::Unknown => ([self.esr, self.pc, 0], 2),
            _ => ([self.ipa.get(), self.esr, self.pc], 3),
        }
    }
}

/// The length of the instruction a trap was taken on, from `ESR_EL2.IL` (bit 25; Arm ARM
/// D17.2.37): 0 for a 16-bit T32 instruction, 1 for a 32-bit one (every A64 instruction). A
/// trap that resumes past the instruction (a refused `SMC`, a yielding `WFI`) must skip exactly
/// this much: a T32 `WFI` from an AArch32 EL0 is 2 bytes, and skipping 4 would jump over the
/// instruction after it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InstructionLength {
    /// A 16-bit T32 instruction (`ESR_EL2.IL` = 0).
    Narrow,
    /// A 32-bit instruction (`ESR_EL2.IL` = 1).
    Wide,
}

impl InstructionLength {
    /// `ESR_EL2.IL` as a length.
    pub const fn from_esr(esr: u64) -> Self {
        if esr & (1 << 25) == 0 {
            Self::Narrow
        } else {
            Self::Wide
        }
    }

    /// The length in bytes.
    pub const fn bytes(self) -> u64 {
        match self {
            Self::Narrow => 2,
            Self::Wide => 4,
        }
    }
}

/// ESR_EL2 exception class of a data abort from a lower EL.
pub const EC_DATA_ABORT_LOWER: u64 = 0x24;
/// ESR_EL2 exception class of an instruction abort from a lower EL.
pub const EC_INSTRUCTION_ABORT_LOWER: u64 = 0x20;

/// The class of a stage-2 abort from its fault status code (ESR bits 5:0, Arm ARM D17.2.37):
/// translation faults are 0x04-0x07 by level, permission faults 0x0D-0x0F (DESIGN.md 9).
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

impl FaultReport {
    /// `ESR_EL1` of the synchronous external abort given back to the domain: a data abort
    /// becomes EC 0x25 (data abort, same EL) and keeps WnR; an instruction abort becomes EC 0x21.
    /// IL = 1, FSC = 0x10 (synchronous external abort, not on a table walk).
    pub const fn injected_syndrome(&self) -> u64 {
        let (class, wnr) = if self.esr >> 26 == EC_DATA_ABORT_LOWER {
            (0x25, self.esr & (1 << 6))
        } else {
            (0x21, 0)
        };
        (class << 26) | (1 << 25) | wnr | 0x10
    }
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

impl fmt::Display for FaultReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "ipa={} esr={:#x} pc={:#x} kind={}",
            self.ipa,
            self.esr,
            self.pc,
            self.kind.word()
        )
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
            write.injected_syndrome(),
            (0x25 << 26) | (1 << 25) | (1 << 6) | 0x10
        );
        let fetch = report((0x20 << 26) | (1 << 25) | 0x0F);
        assert_eq!(fetch.injected_syndrome(), (0x21 << 26) | (1 << 25) | 0x10);
    }

    #[test]
    fn the_instruction_length_comes_from_esr_il() {
        // A T32 WFI trapped from EL0: EC 0x01, IL = 0, CV = 1, COND = 0xE.
        let t32_wfi = (0x01 << 26) | (1 << 24) | (0xE << 20);
        assert_eq!(InstructionLength::from_esr(t32_wfi).bytes(), 2);
        // An A64 WFI and SMC: IL = 1.
        assert_eq!(
            InstructionLength::from_esr((0x01 << 26) | (1 << 25)).bytes(),
            4
        );
        assert_eq!(InstructionLength::from_esr(0x5E00_0000).bytes(), 4);
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
}
