//! A software stage-2 table walker that reads descriptors the way the hardware does.
//!
//! Arm ARM D8.2 (4 KiB granule, T0SZ = 24, start level 1): the walk starts in two concatenated
//! level-1 tables indexed by IPA[39:30], then level 2 by IPA[29:21] and level 3 by IPA[20:12].
//! An invalid descriptor, or 0b01 at level 3, is a translation fault at that level. The audit
//! and the engine use this walker, never a cached copy of what they think they wrote.

use crate::addr::{Ipa, PhysAddr, IPA_BITS};
use crate::arch::PhysMemory;
use crate::descriptor::{decode, level_span, Descriptor, Leaf, Rights};

/// Index of the descriptor for `ipa` in the table at `level`. Level 1 has 1024 entries because
/// of the two concatenated tables.
pub const fn table_index(ipa: Ipa, level: u8) -> u64 {
    match level {
        1 => (ipa.0 >> 30) & 0x3FF,
        2 => (ipa.0 >> 21) & 0x1FF,
        _ => (ipa.0 >> 12) & 0x1FF,
    }
}

/// The physical address of the descriptor for `ipa` in the table at `table` and `level`.
pub const fn descriptor_address(table: PhysAddr, ipa: Ipa, level: u8) -> PhysAddr {
    PhysAddr(table.0 + table_index(ipa, level) * 8)
}

/// Where a successful walk ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Translation {
    /// The leaf, with `pa` already offset to the page containing the input IPA.
    pub leaf: Leaf,
    /// Level of the leaf (2 = 2 MiB block, 3 = page, 1 = 1 GiB block).
    pub level: u8,
    /// Physical address of the leaf descriptor.
    pub descriptor: PhysAddr,
}

impl Translation {
    /// Whether a stage-2 access of this kind is permitted (S2AP and XN, Arm ARM D8.5.3).
    pub fn permits(&self, access: Rights) -> bool {
        self.leaf.rights.contains(access)
    }
}

/// Outcome of a walk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Walk {
    /// Translation fault at this level.
    Fault {
        /// The level whose descriptor was invalid.
        level: u8,
    },
    /// A valid leaf.
    Mapped(Translation),
    /// A valid leaf the core would never write; the audit reports it.
    Malformed {
        /// Level of the descriptor.
        level: u8,
        /// Its raw value.
        raw: u64,
    },
}

/// Translates one IPA through the table rooted at `root` (8 KiB, two level-1 tables).
pub fn translate(memory: &impl PhysMemory, root: PhysAddr, ipa: Ipa) -> Walk {
    if ipa.0 >> IPA_BITS != 0 {
        // Arm ARM D8.2.6: an input address above T0SZ's range faults at the start level.
        return Walk::Fault { level: 1 };
    }
    let mut table = root;
    for level in 1..=3u8 {
        let slot = descriptor_address(table, ipa, level);
        let raw = memory.read_u64(slot);
        match decode(raw, level) {
            Descriptor::Invalid => return Walk::Fault { level },
            Descriptor::Table(next) => table = next,
            Descriptor::Leaf(mut leaf) => {
                let offset = ipa.0 & (level_span(level) - 1) & !0xFFF;
                leaf.pa = PhysAddr(leaf.pa.0 + offset);
                return Walk::Mapped(Translation {
                    leaf,
                    level,
                    descriptor: slot,
                });
            }
            Descriptor::Malformed(raw) => return Walk::Malformed { level, raw },
        }
    }
    // Level 3 never decodes as a table, so the loop always returns; a fault is the safe answer.
    Walk::Fault { level: 3 }
}

/// One valid descriptor found by [`for_each_leaf`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LeafEntry {
    /// First IPA the leaf maps.
    pub ipa: Ipa,
    /// Level (the leaf spans `level_span(level)` bytes).
    pub level: u8,
    /// Decoded leaf, or the raw value if malformed.
    pub leaf: Result<Leaf, u64>,
    /// Physical address of the descriptor.
    pub descriptor: PhysAddr,
}

/// Visits every valid leaf of the table rooted at `root`, in IPA order. `table_ok` vets every
/// next-level table address before it is followed (the audit refuses tables outside the pool);
/// a refused table is reported through `bad_table`.
pub fn for_each_leaf(
    memory: &impl PhysMemory,
    root: PhysAddr,
    table_ok: &dyn Fn(PhysAddr) -> bool,
    visit: &mut dyn FnMut(LeafEntry),
    bad_table: &mut dyn FnMut(Ipa, u8, PhysAddr),
) {
    visit_table(memory, root, 1, Ipa(0), 1024, table_ok, visit, bad_table);
}

#[allow(clippy::too_many_arguments)] // Recursive helper; the arguments are the walk state.
fn visit_table(
    memory: &impl PhysMemory,
    table: PhysAddr,
    level: u8,
    base: Ipa,
    entries: u64,
    table_ok: &dyn Fn(PhysAddr) -> bool,
    visit: &mut dyn FnMut(LeafEntry),
    bad_table: &mut dyn FnMut(Ipa, u8, PhysAddr),
) {
    for index in 0..entries {
        let ipa = Ipa(base.0 + index * level_span(level));
        let slot = PhysAddr(table.0 + index * 8);
        match decode(memory.read_u64(slot), level) {
            Descriptor::Invalid => {}
            Descriptor::Table(next) => {
                if table_ok(next) {
                    visit_table(
                        memory,
                        next,
                        level + 1,
                        ipa,
                        512,
                        table_ok,
                        visit,
                        bad_table,
                    );
                } else {
                    bad_table(ipa, level, next);
                }
            }
            Descriptor::Leaf(leaf) => {
                visit(LeafEntry {
                    ipa,
                    level,
                    leaf: Ok(leaf),
                    descriptor: slot,
                });
            }
            Descriptor::Malformed(raw) => {
                visit(LeafEntry {
                    ipa,
                    level,
                    leaf: Err(raw),
                    descriptor: slot,
                });
            }
        }
    }
}
