//! The physical memory layout of QEMU `virt` that the build tool lays images out for and the
//! hypervisor runs in, and the stage-2 geometry both assume. Defined here once.
//!
//! ```text
//! 0x4000_0000 +------------------------+  RAM base; hypervisor reserved range starts
//!             | free for QEMU's DTB    |  1 MiB
//! 0x4010_0000 +------------------------+  HYPERVISOR_LOAD_BASE
//!             | hypervisor ELF         |  PT_LOAD segments, linked here
//!             | boot info (4 KiB al.)  |  right after the last segment
//!             | hypervisor heap        |  frame table, audit scratch, stage-2 table pool
//! 0x4200_0000 +------------------------+  CONVERTIBLE_BASE = HYPERVISOR_END
//!             | domain memory          |
//!    RAM end  +------------------------+  RAM_BASE + the RAM size in the boot information
//! ```

use crate::addr::PhysAddr;

/// Base of RAM on QEMU `virt`.
pub const RAM_BASE: PhysAddr = PhysAddr(0x4000_0000);
/// RAM size images are laid out for by default (`-m 512M`); the boot information carries the
/// real one.
pub const DEFAULT_RAM_SIZE: u64 = 512 << 20;
/// Base of the hypervisor's reserved range: the start of RAM.
pub const HYPERVISOR_BASE: PhysAddr = RAM_BASE;
/// Size of the hypervisor's reserved range (no domain maps any of it, I4).
pub const HYPERVISOR_SIZE: u64 = 32 << 20;
/// End of the hypervisor's reserved range.
pub const HYPERVISOR_END: PhysAddr = PhysAddr(HYPERVISOR_BASE.0 + HYPERVISOR_SIZE);
/// Where the hypervisor ELF is linked: QEMU puts the DTB in the first 1 MiB of RAM.
pub const HYPERVISOR_LOAD_BASE: PhysAddr = PhysAddr(0x4010_0000);
/// Start of the convertible range (all domain memory), right after the hypervisor's range.
pub const CONVERTIBLE_BASE: PhysAddr = HYPERVISOR_END;

/// `VTCR_EL2` for every domain's stage-2 table: T0SZ = 24 (40-bit IPA, [`crate::addr::IPA_BITS`]),
/// SL0 = 1 (the walk starts at level 1, in two concatenated tables), IRGN0/ORGN0 write-back
/// write-allocate, SH0 inner shareable, TG0 4 KiB, PS = 40 bits, RES1 bit 31. Verified on QEMU
/// 7.2 (DESIGN.md 9).
pub const VTCR_EL2: u64 =
    (1 << 31) | (0b010 << 16) | (0b11 << 12) | (0b01 << 10) | (0b01 << 8) | (0b01 << 6) | 24;

// The kernel is linked inside its reserved range, after the DTB's megabyte.
const _: () =
    assert!(HYPERVISOR_LOAD_BASE.0 > RAM_BASE.0 && HYPERVISOR_LOAD_BASE.0 < HYPERVISOR_END.0);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_layout_is_the_one_design_md_verified() {
        assert_eq!(VTCR_EL2, 0x8002_3558);
        assert_eq!(HYPERVISOR_END, PhysAddr(0x4200_0000));
        assert_eq!(CONVERTIBLE_BASE, HYPERVISOR_END);
    }
}
