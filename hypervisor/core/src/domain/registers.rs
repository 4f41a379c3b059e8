//! A context's saved general-purpose registers.

/// The register state a trap saves and an `ERET` restores. `repr(C)`: the AArch64 arch layer's
/// trap frame is laid out as this struct (`frameshift-hypervisor`'s `arch/aarch64/frame.rs`
/// asserts the offsets its assembly uses), so the frame on the EL2 stack *is* a `Registers`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct Registers {
    /// `x0`..`x30`.
    pub x: [u64; 31],
    /// The domain's stack pointer (`SP_EL1`: PDs run at EL1h).
    pub sp: u64,
    /// The address the domain resumes at (`ELR_EL2`).
    pub pc: u64,
    /// The domain's PSTATE (`SPSR_EL2`).
    pub pstate: u64,
}

impl Registers {
    /// The context a domain starts with: PC at its entry point, SP at its stack top, PSTATE
    /// as the arch starts a context ([`crate::arch::Arch::ENTRY_PSTATE`]), every other register
    /// zero.
    pub const fn initial(entry: u64, stack_top: u64, pstate: u64) -> Self {
        Self {
            x: [0; 31],
            sp: stack_top,
            pc: entry,
            pstate,
        }
    }

    /// Sets `x0` to an SMCCC status code.
    pub fn set_status(&mut self, status: i64) {
        self.x[0] = status as u64;
    }
}
