//! What the arch layer reports about a domain's fault (decoded from the machine's registers by
//! the arch layer), and how the kernel words it.

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

/// The length of the instruction a trap was taken on, as the arch layer decoded it (on AArch64
/// from `ESR_EL2.IL`). A trap that resumes past the instruction (a refused `SMC`, a yielding
/// `WFI`) must skip exactly this much: a T32 `WFI` from an AArch32 EL0 is 2 bytes, and skipping
/// 4 would jump over the instruction after it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InstructionLength {
    /// A 16-bit T32 instruction.
    Narrow,
    /// A 32-bit instruction (every A64 instruction).
    Wide,
}

impl InstructionLength {
    /// The length in bytes.
    pub const fn bytes(self) -> u64 {
        match self {
            Self::Narrow => 2,
            Self::Wide => 4,
        }
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
    extern crate std;
    use super::*;
    use std::format;

    #[test]
    fn a_fault_is_worded_and_reported_to_the_parent() {
        let abort = FaultReport {
            kind: FaultKind::Permission,
            ipa: Ipa(0x1000_0008),
            esr: 0x9200_004F,
            pc: 0x20_0040,
            injectable: false,
        };
        assert_eq!(
            format!("{abort}"),
            "ipa=0x10000008 esr=0x9200004f pc=0x200040 kind=permission"
        );
        assert_eq!(abort.message(), ([0x1000_0008, 0x9200_004F, 0x20_0040], 3));
        assert_eq!(abort.kind.label(), FAULT_STAGE2_ABORT);
        let unknown = FaultReport {
            kind: FaultKind::Unknown,
            ..abort
        };
        assert_eq!(unknown.message(), ([0x9200_004F, 0x20_0040, 0], 2));
        assert_eq!(unknown.kind.label(), FAULT_UNKNOWN);
        assert_eq!(InstructionLength::Narrow.bytes(), 2);
        assert_eq!(InstructionLength::Wide.bytes(), 4);
    }
}
