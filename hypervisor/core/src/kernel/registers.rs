//! A domain's saved general-purpose register context, in the layout the EL2 trap frame uses.

/// The register state a trap saves and an `ERET` restores.
///
/// The layout is shared with the assembly in `arch/aarch64/entry.rs` (offsets 0, 248, 256, 264),
/// so the trap frame on the hypervisor stack *is* a `Registers` value.
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

/// Size of [`Registers`] in bytes; the assembly reserves exactly this much per trap.
pub const REGISTERS_SIZE: usize = size_of::<Registers>();

/// `SPSR_EL2` for a domain's first entry: EL1h (SP_EL1), AArch64, with D, A, I and F masked.
/// The domain can unmask its own exceptions; physical interrupts still go to EL2
/// (`HCR_EL2.IMO`/`FMO`).
pub const INITIAL_PSTATE: u64 = 0x3C5;

impl Registers {
    /// The context a domain starts with: PC at its entry point, SP at its stack top, every other
    /// register zero.
    pub const fn initial(entry: u64, stack_top: u64) -> Self {
        Self {
            x: [0; 31],
            sp: stack_top,
            pc: entry,
            pstate: INITIAL_PSTATE,
        }
    }

    /// Sets `x0` to an SMCCC status code.
    pub fn set_status(&mut self, status: i64) {
        self.x[0] = status as u64;
    }
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    reason = "a test fails loudly on an unexpected error"
)]
mod tests {
    use super::*;

    #[test]
    fn layout_matches_the_trap_frame_offsets() {
        assert_eq!(REGISTERS_SIZE, 272);
        assert_eq!(core::mem::offset_of!(Registers, sp), 248);
        assert_eq!(core::mem::offset_of!(Registers, pc), 256);
        assert_eq!(core::mem::offset_of!(Registers, pstate), 264);
    }
}
