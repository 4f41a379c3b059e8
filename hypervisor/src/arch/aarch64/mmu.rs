//! The hypervisor's own EL2 stage-1 translation: an identity map with caches on.
//!
//! | VA = PA range               | what                              | attributes          |
//! |-----------------------------|-----------------------------------|---------------------|
//! | 0x0000_0000..0x4000_0000    | flash, GIC, PL011, virtio, ...    | Device-nGnRE, XN    |
//! | 0x4000_0000..0x1_0000_0000  | RAM (QEMU virt, up to 3 GiB)      | Normal WB, inner sh.|
//!
//! Four level-1 block descriptors cover it, so this is written by hand: a paging library would be
//! more code than the table. Hypervisor code and data share the RAM block (no W^X split yet).

use aarch64_cpu::asm::barrier;
use aarch64_cpu::registers::*;

use super::global::GlobalCell;

#[repr(C, align(4096))]
struct Level1Table([u64; 512]);

static EL2_LEVEL1: GlobalCell<Level1Table> = GlobalCell::new(Level1Table([0; 512]));

/// MAIR_EL2: index 0 = Device-nGnRE (0x04), index 1 = Normal inner/outer write-back
/// read/write-allocate (0xFF).
const MAIR_VALUE: u64 = 0x04 | (0xFF << 8);

const BLOCK: u64 = 0b01;
const ATTR_DEVICE: u64 = 0 << 2;
const ATTR_NORMAL: u64 = 1 << 2;
/// AP[1] is RES1 in the EL2 regime; AP[2] = 0: read/write.
const AP_RW_EL2: u64 = 1 << 6;
const SH_INNER: u64 = 0b11 << 8;
const ACCESS_FLAG: u64 = 1 << 10;
/// XN (bit 54) in the EL2 regime.
const EXECUTE_NEVER: u64 = 1 << 54;

/// TCR_EL2: T0SZ = 25 (39-bit VA, walk starts at level 1), inner/outer WB-WA walks, inner
/// shareable, 4 KiB granule, PS = 40 bits, RES1 bits 31 and 23.
const TCR_VALUE: u64 =
    (1 << 31) | (1 << 23) | (0b010 << 16) | (0b11 << 12) | (1 << 10) | (1 << 8) | 25;

/// SCTLR_EL2: RES1 bits, plus M (MMU), C (data cache), SA (stack alignment check), I (icache).
const SCTLR_VALUE: u64 = 0x30C5_0830 | (1 << 0) | (1 << 2) | (1 << 3) | (1 << 12);

/// Builds the identity map and turns the MMU and caches on.
///
/// # Safety
///
/// Call once, at boot, with the MMU off, before any other user of [`EL2_LEVEL1`].
pub unsafe fn enable() {
    // SAFETY: boot is single-threaded and this is the table's only writer (caller's contract).
    let table = unsafe { EL2_LEVEL1.get_mut() };
    table.0[0] = BLOCK | ATTR_DEVICE | AP_RW_EL2 | ACCESS_FLAG | EXECUTE_NEVER;
    for gigabyte in 1..4u64 {
        table.0[gigabyte as usize] =
            (gigabyte << 30) | BLOCK | ATTR_NORMAL | AP_RW_EL2 | SH_INNER | ACCESS_FLAG;
    }
    MAIR_EL2.set(MAIR_VALUE);
    TCR_EL2.set(TCR_VALUE);
    TTBR0_EL2.set(EL2_LEVEL1.as_ptr() as u64);
    barrier::dsb(barrier::SY);
    barrier::isb(barrier::SY);
    // SAFETY: invalidating every EL2 translation is always allowed; nothing depends on any.
    unsafe { core::arch::asm!("tlbi alle2", "dsb ish", "isb", options(nostack)) };
    SCTLR_EL2.set(SCTLR_VALUE);
    barrier::isb(barrier::SY);
}
