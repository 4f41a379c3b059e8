//! The hypervisor's own EL2 stage-1 translation: an identity map with caches on, W^X, and a
//! guard page under the stack.
//!
//! | VA = PA range               | what                              | attributes               |
//! |-----------------------------|-----------------------------------|--------------------------|
//! | 0x0000_0000..0x4000_0000    | flash, GIC, PL011, virtio, ...    | Device-nGnRE, XN (1 GiB) |
//! | 0x4000_0000..0x4200_0000    | hypervisor reserved range         | 4 KiB pages, see below   |
//! | 0x4200_0000..0x8000_0000    | domain RAM                        | Normal WB, RW, XN (2 MiB)|
//! | 0x8000_0000..0x1_0000_0000  | more RAM on bigger machines       | Normal WB, RW, XN (1 GiB)|
//!
//! In the reserved range, kernel text is read-only and executable, read-only data is read-only
//! and XN, the page under the stack is unmapped, and everything else is read/write and XN.
//! SCTLR_EL2.WXN makes every writable page XN in hardware too.
//!
//! The tables are fixed statics written by hand: the layout is static and small, and a paging
//! library would need an allocator for them.

use aarch64_cpu::asm::barrier;
use aarch64_cpu::registers::*;

use super::global::{Exclusive, GlobalCell};

/// End of the hypervisor's reserved range, mapped with 4 KiB pages.
const RESERVED_BASE: u64 = 0x4000_0000;
const RESERVED_END: u64 = 0x4200_0000;
const PAGE: u64 = 0x1000;
const BLOCK_2M: u64 = 0x20_0000;
const RESERVED_BLOCKS: usize = ((RESERVED_END - RESERVED_BASE) / BLOCK_2M) as usize;

#[repr(C, align(4096))]
struct Table([u64; 512]);

struct Tables {
    level1: Table,
    /// Level 2 for 0x4000_0000..0x8000_0000.
    level2: Table,
    /// Level 3 for each 2 MiB block of the reserved range.
    level3: [Table; RESERVED_BLOCKS],
}

static TABLES: GlobalCell<Tables> = GlobalCell::new(Tables {
    level1: Table([0; 512]),
    level2: Table([0; 512]),
    level3: [const { Table([0; 512]) }; RESERVED_BLOCKS],
});

extern "C" {
    static __text_start: u8;
    static __text_end: u8;
    static __rodata_start: u8;
    static __rodata_end: u8;
    static __stack_guard: u8;
}

/// MAIR_EL2: index 0 = Device-nGnRE (0x04), index 1 = Normal inner/outer write-back
/// read/write-allocate (0xFF).
const MAIR_VALUE: u64 = 0x04 | (0xFF << 8);

const VALID_BLOCK: u64 = 0b01;
const VALID_TABLE_OR_PAGE: u64 = 0b11;
const ATTR_DEVICE: u64 = 0 << 2;
const ATTR_NORMAL: u64 = 1 << 2;
/// AP[1] is RES1 in the EL2 regime; AP[2] selects read-only.
const AP_RW: u64 = 0b01 << 6;
const AP_RO: u64 = 0b11 << 6;
const SH_INNER: u64 = 0b11 << 8;
const ACCESS_FLAG: u64 = 1 << 10;
/// XN (bit 54) in the EL2 regime.
const EXECUTE_NEVER: u64 = 1 << 54;

const NORMAL_RW: u64 = ATTR_NORMAL | AP_RW | SH_INNER | ACCESS_FLAG | EXECUTE_NEVER;
const NORMAL_RO: u64 = ATTR_NORMAL | AP_RO | SH_INNER | ACCESS_FLAG | EXECUTE_NEVER;
const NORMAL_RX: u64 = ATTR_NORMAL | AP_RO | SH_INNER | ACCESS_FLAG;

/// TCR_EL2: T0SZ = 25 (39-bit VA, walk starts at level 1), inner/outer WB-WA walks, inner
/// shareable, 4 KiB granule, PS = 40 bits, RES1 bits 31 and 23.
const TCR_VALUE: u64 =
    (1 << 31) | (1 << 23) | (0b010 << 16) | (0b11 << 12) | (1 << 10) | (1 << 8) | 25;

/// SCTLR_EL2: RES1 bits, plus M (MMU), C (data cache), SA (stack alignment check), I (icache),
/// WXN (writable implies execute-never).
const SCTLR_VALUE: u64 = 0x30C5_0830 | (1 << 0) | (1 << 2) | (1 << 3) | (1 << 12) | (1 << 19);

fn symbol(address: *const u8) -> u64 {
    address as u64
}

/// The leaf for the reserved-range page at `pa`: text RX, rodata RO, guard unmapped, rest RW.
fn reserved_page(pa: u64) -> u64 {
    let text = symbol(core::ptr::addr_of!(__text_start))..symbol(core::ptr::addr_of!(__text_end));
    let rodata =
        symbol(core::ptr::addr_of!(__rodata_start))..symbol(core::ptr::addr_of!(__rodata_end));
    let guard = symbol(core::ptr::addr_of!(__stack_guard));
    if pa == guard {
        0
    } else if text.contains(&pa) {
        pa | NORMAL_RX | VALID_TABLE_OR_PAGE
    } else if rodata.contains(&pa) {
        pa | NORMAL_RO | VALID_TABLE_OR_PAGE
    } else {
        pa | NORMAL_RW | VALID_TABLE_OR_PAGE
    }
}

/// Whether `address` lies in the unmapped page under the EL2 stack.
pub fn is_stack_guard(address: u64) -> bool {
    let guard = symbol(core::ptr::addr_of!(__stack_guard));
    (guard..guard + PAGE).contains(&address)
}

/// Builds the identity map and turns the MMU and caches on.
///
/// # Safety
///
/// Call once, at boot, with the MMU off: the tables become live translation tables, and
/// nothing may write them after that.
pub unsafe fn enable(witness: &mut Exclusive) {
    let tables = TABLES.get_mut(witness);
    tables.level1.0[0] = VALID_BLOCK | ATTR_DEVICE | AP_RW | ACCESS_FLAG | EXECUTE_NEVER;
    tables.level1.0[1] = (&raw const tables.level2 as u64) | VALID_TABLE_OR_PAGE;
    for gigabyte in 2..4u64 {
        tables.level1.0[gigabyte as usize] = (gigabyte << 30) | NORMAL_RW | VALID_BLOCK;
    }
    for (index, entry) in tables.level2.0.iter_mut().enumerate() {
        let pa = RESERVED_BASE + index as u64 * BLOCK_2M;
        *entry = pa | NORMAL_RW | VALID_BLOCK;
    }
    for (block, table) in tables.level3.iter_mut().enumerate() {
        let base = RESERVED_BASE + block as u64 * BLOCK_2M;
        for (index, entry) in table.0.iter_mut().enumerate() {
            *entry = reserved_page(base + index as u64 * PAGE);
        }
        tables.level2.0[block] = (table as *const Table as u64) | VALID_TABLE_OR_PAGE;
    }
    MAIR_EL2.set(MAIR_VALUE);
    TCR_EL2.set(TCR_VALUE);
    TTBR0_EL2.set(&raw const tables.level1 as u64);
    barrier::dsb(barrier::SY);
    barrier::isb(barrier::SY);
    // SAFETY: invalidating every EL2 translation is always allowed; nothing depends on any.
    unsafe { core::arch::asm!("tlbi alle2", "dsb ish", "isb", options(nostack)) };
    SCTLR_EL2.set(SCTLR_VALUE);
    barrier::isb(barrier::SY);
}
