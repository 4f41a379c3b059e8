//! A software stage-2 table walker that reads descriptors the way the hardware does.
//!
//! Arm ARM D8.2 (4 KiB granule, T0SZ = 24, start level 1): the walk starts in two concatenated
//! level-1 tables indexed by `IPA[39:30]`, then level 2 by `IPA[29:21]` and level 3 by `IPA[20:12]`.
//! An invalid descriptor, or 0b01 at level 3, is a translation fault at that level. The audit
//! and the engine use this walker, never a cached copy of what they think they wrote.

use crate::addr::{Ipa, PhysAddr, IPA_BITS};
use crate::arch::PhysMemory;
use crate::descriptor::{decode, decode_lent_away, level_span, Descriptor, Leaf, Rights};

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

/// What a non-empty descriptor found by [`for_each_leaf`] holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LeafKind {
    /// A valid leaf.
    Mapped(Leaf),
    /// A valid leaf the core would never write (raw value).
    Malformed(u64),
    /// An invalid "lent away" annotation naming this frame (no translation).
    LentAway(PhysAddr),
    /// An invalid descriptor with stray bits set (raw value): no translation, but not ours.
    Stray(u64),
    /// A table descriptor the caller's `table_ok` refused to follow (the table's address).
    BadTable(PhysAddr),
}

/// One non-empty descriptor found by [`for_each_leaf`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LeafEntry {
    /// First IPA the descriptor covers.
    pub ipa: Ipa,
    /// Level (the entry spans `level_span(level)` bytes).
    pub level: u8,
    /// What it holds.
    pub kind: LeafKind,
    /// Physical address of the descriptor.
    pub descriptor: PhysAddr,
}

/// Visits every valid leaf and every non-zero invalid descriptor of the table rooted at `root`,
/// in IPA order. `table_ok` vets every next-level table address before it is followed (the
/// audit refuses tables outside the pool); a refused table is visited as
/// [`LeafKind::BadTable`].
pub fn for_each_leaf(
    memory: &impl PhysMemory,
    root: PhysAddr,
    table_ok: &dyn Fn(PhysAddr) -> bool,
    visit: &mut dyn FnMut(LeafEntry),
) {
    visit_table(memory, root, 1, Ipa(0), 1024, table_ok, visit);
}

fn visit_table(
    memory: &impl PhysMemory,
    table: PhysAddr,
    level: u8,
    base: Ipa,
    entries: u64,
    table_ok: &dyn Fn(PhysAddr) -> bool,
    visit: &mut dyn FnMut(LeafEntry),
) {
    // Level 1 is two concatenated pages; read each page once.
    for page in 0..entries.div_ceil(512) {
        let page_pa = PhysAddr(table.0 + page * 4096);
        memory.with_page(page_pa, &mut |words| {
            for (offset, &raw) in words.iter().enumerate() {
                if raw == 0 {
                    continue;
                }
                let index = page * 512 + offset as u64;
                let ipa = Ipa(base.0 + index * level_span(level));
                let slot = PhysAddr(table.0 + index * 8);
                let kind = match decode(raw, level) {
                    Descriptor::Invalid => match decode_lent_away(raw, level) {
                        Some(pa) => LeafKind::LentAway(pa),
                        None => LeafKind::Stray(raw),
                    },
                    Descriptor::Table(next) => {
                        if !table_ok(next) {
                            let kind = LeafKind::BadTable(next);
                            visit(LeafEntry {
                                ipa,
                                level,
                                kind,
                                descriptor: slot,
                            });
                            continue;
                        }
                        visit_table(memory, next, level + 1, ipa, 512, table_ok, visit);
                        continue;
                    }
                    Descriptor::Leaf(leaf) => LeafKind::Mapped(leaf),
                    Descriptor::Malformed(raw) => LeafKind::Malformed(raw),
                };
                visit(LeafEntry {
                    ipa,
                    level,
                    kind,
                    descriptor: slot,
                });
            }
        });
    }
}

/// The first non-empty leaf-level entry (leaf, malformed leaf or annotation) that covers or
/// follows `from`, in IPA order. Used to iterate over a table while changing it (teardown).
pub fn next_entry(memory: &impl PhysMemory, root: PhysAddr, from: Ipa) -> Option<LeafEntry> {
    next_in_table(memory, root, 1, Ipa(0), 1024, from)
}

fn next_in_table(
    memory: &impl PhysMemory,
    table: PhysAddr,
    level: u8,
    base: Ipa,
    entries: u64,
    from: Ipa,
) -> Option<LeafEntry> {
    let span = level_span(level);
    let first = from.0.saturating_sub(base.0) / span;
    for index in first..entries {
        let ipa = Ipa(base.0 + index * span);
        let slot = PhysAddr(table.0 + index * 8);
        let raw = memory.read_u64(slot);
        let kind = match decode(raw, level) {
            Descriptor::Invalid if raw == 0 => continue,
            Descriptor::Invalid => match decode_lent_away(raw, level) {
                Some(pa) => LeafKind::LentAway(pa),
                None => LeafKind::Stray(raw),
            },
            Descriptor::Table(next) => {
                let start = if from.0 > ipa.0 { from } else { ipa };
                match next_in_table(memory, next, level + 1, ipa, 512, start) {
                    Some(entry) => return Some(entry),
                    None => continue,
                }
            }
            Descriptor::Leaf(leaf) => LeafKind::Mapped(leaf),
            Descriptor::Malformed(raw) => LeafKind::Malformed(raw),
        };
        return Some(LeafEntry {
            ipa,
            level,
            kind,
            descriptor: slot,
        });
    }
    None
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test fails loudly on an unexpected error"
)]
mod tests {
    extern crate std;
    use super::*;
    use crate::arch::fake::FakeArch;
    use crate::arch::PhysMemory;
    use crate::descriptor::{encode_leaf, encode_lent_away, encode_table, MemoryType, PageState};
    use std::vec::Vec;

    const ROOT: PhysAddr = PhysAddr(0x1000_0000);
    const L2: PhysAddr = PhysAddr(0x1000_2000);
    const L3: PhysAddr = PhysAddr(0x1000_3000);

    fn leaf(pa: u64) -> Leaf {
        Leaf {
            pa: PhysAddr(pa),
            rights: Rights::READ,
            memory: MemoryType::Normal,
            state: PageState::Owned,
        }
    }

    /// IPA 0x4000_0000 (L1 index 1) -> L2 -> L3; IPA 0x80_0000_0000 - 1 GiB (index 511 of the
    /// second concatenated page, i.e. entry 1023) -> a 1 GiB block.
    fn tables() -> FakeArch {
        let mut arch = FakeArch::new(ROOT, PhysAddr(0x1001_0000));
        for page in [ROOT, PhysAddr(ROOT.get() + 4096), L2, L3] {
            arch.page_mut(page).fill(0);
        }
        arch.page_mut(ROOT)[1] = encode_table(L2);
        arch.page_mut(PhysAddr(ROOT.get() + 4096))[511] = encode_leaf(&leaf(0x80_0000_0000), 1);
        arch.page_mut(L2)[0] = encode_table(L3);
        arch.page_mut(L2)[1] = encode_leaf(&leaf(0x4060_0000), 2);
        arch.page_mut(L3)[5] = encode_leaf(&leaf(0x4123_4000), 3);
        arch.page_mut(L3)[6] = encode_lent_away(PhysAddr(0x4123_5000));
        arch
    }

    #[test]
    fn walks_pages_blocks_and_concatenated_root_like_the_hardware() {
        let arch = tables();
        let Walk::Mapped(page) = translate(&arch, ROOT, Ipa(0x4000_5123)) else {
            panic!()
        };
        assert_eq!((page.leaf.pa, page.level), (PhysAddr(0x4123_4000), 3));
        let Walk::Mapped(block) = translate(&arch, ROOT, Ipa(0x4027_7000)) else {
            panic!()
        };
        assert_eq!((block.leaf.pa, block.level), (PhysAddr(0x4067_7000), 2));
        let top = Ipa((1 << 40) - 0x1000);
        let Walk::Mapped(giant) = translate(&arch, ROOT, top) else {
            panic!()
        };
        assert_eq!((giant.leaf.pa, giant.level), (PhysAddr(0x80_3FFF_F000), 1));
        assert_eq!(
            translate(&arch, ROOT, Ipa(0x4000_6000)),
            Walk::Fault { level: 3 }
        );
        assert_eq!(
            translate(&arch, ROOT, Ipa(0x4040_0000)),
            Walk::Fault { level: 2 }
        );
        assert_eq!(translate(&arch, ROOT, Ipa(0)), Walk::Fault { level: 1 });
        assert_eq!(
            translate(&arch, ROOT, Ipa(1 << 40)),
            Walk::Fault { level: 1 }
        );
    }

    #[test]
    fn enumerates_every_entry_in_ipa_order() {
        let arch = tables();
        let mut seen = Vec::new();
        for_each_leaf(&arch, ROOT, &|_| true, &mut |entry| {
            seen.push((entry.ipa, entry.level))
        });
        let expected = [
            (Ipa(0x4000_5000), 3),
            (Ipa(0x4000_6000), 3),
            (Ipa(0x4020_0000), 2),
            (Ipa(0xFF_C000_0000), 1),
        ];
        assert_eq!(seen, expected);
        let next = next_entry(&arch, ROOT, Ipa(0x4000_6000)).unwrap();
        assert_eq!(next.kind, LeafKind::LentAway(PhysAddr(0x4123_5000)));
        let after = next_entry(&arch, ROOT, Ipa(0x4000_7000)).unwrap();
        assert_eq!(after.ipa, Ipa(0x4020_0000));
        // An entry that covers `from` counts.
        let covering = next_entry(&arch, ROOT, Ipa(0xFF_C000_1000)).unwrap();
        assert_eq!((covering.ipa, covering.level), (Ipa(0xFF_C000_0000), 1));
        assert!(next_entry(&arch, ROOT, Ipa(1 << 40)).is_none());
        let mut refused = Vec::new();
        for_each_leaf(&arch, ROOT, &|table| table != L3, &mut |entry| {
            refused.push(entry.kind)
        });
        assert!(refused.contains(&LeafKind::BadTable(L3)));
    }
}
