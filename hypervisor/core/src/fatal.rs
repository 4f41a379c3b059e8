//! Why the hypervisor stopped itself: one named reason per cause, each printed with its own word
//! on the final line, `FS|hypervisor|halt status=<2|3> reason=<word>` (docs/ABI.md, "End of the
//! run"). Every one of them but a refused image is a hypervisor bug or an unsupported machine:
//! no domain input can cause one.

use core::fmt;

/// A reason the hypervisor halts the machine on its own.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FatalReason {
    /// The boot information was refused (status 2): the image is bad, no domain ran.
    BadBootInfo,
    /// The CPU has a feature whose EL1 state this hypervisor neither switches nor traps (I9).
    UnsupportedCpu,
    /// The GIC could not be brought up.
    GicInit,
    /// The heap cannot hold the frame table and the audit's scratch for this much RAM.
    HeapTooSmall,
    /// The audit found the boot-time tables and the frame table in disagreement.
    BootAudit,
    /// A commit found that its prepare step under-counted (a table page missing, a borrower
    /// slot missing, a plan made on another state): the state may be half changed.
    CommitInvariant,
    /// A Rust panic in the hypervisor.
    Panic,
    /// An exception taken at EL2 itself.
    ExceptionAtEl2,
    /// The EL2 stack overflowed into its guard page.
    StackOverflow,
    /// A trap from EL1 with no current context to charge it to.
    NoCurrentContext,
    /// A trap from EL1 before boot finished (or after the hypervisor stopped running).
    NotRunning,
}

impl FatalReason {
    /// Every reason (documentation and tests).
    pub const ALL: [Self; 11] = [
        Self::BadBootInfo,
        Self::UnsupportedCpu,
        Self::GicInit,
        Self::HeapTooSmall,
        Self::BootAudit,
        Self::CommitInvariant,
        Self::Panic,
        Self::ExceptionAtEl2,
        Self::StackOverflow,
        Self::NoCurrentContext,
        Self::NotRunning,
    ];

    /// The word after `reason=`.
    pub const fn word(self) -> &'static str {
        match self {
            Self::BadBootInfo => "bad-boot-info",
            Self::UnsupportedCpu => "unsupported-cpu",
            Self::GicInit => "gic-init",
            Self::HeapTooSmall => "heap-too-small",
            Self::BootAudit => "boot-audit",
            Self::CommitInvariant => "commit-invariant",
            Self::Panic => "panic",
            Self::ExceptionAtEl2 => "el2-exception",
            Self::StackOverflow => "el2-stack-overflow",
            Self::NoCurrentContext => "no-current-context",
            Self::NotRunning => "not-running",
        }
    }

    /// The halt status: 2 for a refused image (the input's fault), 3 for everything else.
    pub const fn status(self) -> u8 {
        match self {
            Self::BadBootInfo => 2,
            _ => 3,
        }
    }
}

impl fmt::Display for FatalReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "halt status={} reason={}", self.status(), self.word())
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::collections::BTreeSet;
    use std::format;

    #[test]
    fn every_reason_has_its_own_word_and_prints_its_halt_line() {
        let words: BTreeSet<&str> = FatalReason::ALL.iter().map(|r| r.word()).collect();
        assert_eq!(words.len(), FatalReason::ALL.len());
        assert_eq!(
            format!("{}", FatalReason::BadBootInfo),
            "halt status=2 reason=bad-boot-info"
        );
        assert_eq!(
            format!("{}", FatalReason::CommitInvariant),
            "halt status=3 reason=commit-invariant"
        );
        for reason in FatalReason::ALL {
            assert_eq!(reason.status() == 2, reason == FatalReason::BadBootInfo);
        }
    }
}
