//! What the arch layer reports about a domain's fault, and how the kernel words it.

use core::fmt;

use frameshift_abi::pd_call::{FAULT_STAGE2_ABORT, FAULT_UNKNOWN};

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
    pub ipa: u64,
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
            _ => ([self.ipa, self.esr, self.pc], 3),
        }
    }
}

impl fmt::Display for FaultReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "ipa={:#x} esr={:#x} pc={:#x} kind={}",
            self.ipa,
            self.esr,
            self.pc,
            self.kind.word()
        )
    }
}
