//! The trap frame: what the vectors in `entry.rs` save on the EL2 stack on every exception from
//! EL1 (`x0`-`x30`, `SP_EL1`, `ELR_EL2`, `SPSR_EL2`), laid out exactly as the core's
//! [`Registers`], so the frame *is* the trapped context's registers.

use frameshift_core::Registers;

/// Size of the trap frame in bytes; the assembly reserves exactly this much per trap.
pub const FRAME_SIZE: usize = size_of::<Registers>();

/// Offset of the saved `SP_EL1` (the assembly stores it with `x30`).
pub const SP_OFFSET: usize = core::mem::offset_of!(Registers, sp);
/// Offset of the saved `ELR_EL2` (the trapped PC).
pub const PC_OFFSET: usize = core::mem::offset_of!(Registers, pc);
/// Offset of the saved `SPSR_EL2` (the trapped PSTATE).
pub const PSTATE_OFFSET: usize = core::mem::offset_of!(Registers, pstate);

// The assembly in `entry.rs` hard-codes these offsets in its `stp`/`ldp` pairs.
const _: () = assert!(FRAME_SIZE == 272);
const _: () = assert!(SP_OFFSET == 248 && PC_OFFSET == 256 && PSTATE_OFFSET == 264);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_matches_the_trap_frame_offsets() {
        assert_eq!(FRAME_SIZE, 272);
        assert_eq!((SP_OFFSET, PC_OFFSET, PSTATE_OFFSET), (248, 256, 264));
        // x0 first, x30 just below SP_EL1: the pairs the vectors store.
        assert_eq!(core::mem::offset_of!(Registers, x), 0);
    }
}
