//! Stage-2 translation tables in the VMSAv8-64 format, updated with break-before-make.
//!
//! Geometry (DESIGN.md 9, Arm ARM D8.2): 4 KiB granule, 40-bit IPA, walk starting at level 1
//! in two concatenated level-1 tables (8 KiB, 8 KiB aligned), VTCR_EL2 = [`VTCR_EL2`]. Leaves
//! are 4 KiB pages (level 3) or 2 MiB blocks (level 2); we never create 1 GiB blocks.
//!
//! Hand-written rather than `aarch64_paging::Mapping`, whose descriptor constants we do use,
//! because that crate cannot keep our invariants:
//! - its root is a single 4 KiB table, not the concatenated 8 KiB level-1 root a 40-bit IPA
//!   space starting at level 1 needs;
//! - its TLB maintenance is its own inline `TLBI IPAS2E1IS`, which is not enough on this QEMU
//!   (DESIGN.md 9) and cannot be routed through [`Stage2Arch`], so the host fake could not
//!   check I6/I7;
//! - its table allocation is infallible (`Translation::allocate_table`), while ours must come
//!   from a fixed pool reserved in a prepare step, so a commit never runs out half-way.
//!
//! Every change to a live descriptor goes through `Stage2Table::replace`, which applies
//! break-before-make (Arm ARM D8.16.1) and invalidates after any removal or narrowing (I6, I7).

use crate::addr::{Ipa, PhysAddr, Vmid, BLOCK_SIZE, IPA_BITS, PAGE_SIZE};
use crate::arch::{DescriptorSlot, PhysMemory, Stage2Arch};
use crate::descriptor::{
    decode, decode_lent_away, encode_leaf, encode_lent_away, encode_table, is_bbm_safe, level_span,
    Descriptor, Leaf,
};
use crate::error::Error;
use crate::table_pool::{Reservation, TablePool};
use crate::walk::{descriptor_address, translate, Walk};

/// VTCR_EL2 for these tables (defined once, in the ABI crate's layout).
pub use frameshift_abi::layout::VTCR_EL2;

/// What a 4 KiB slot should hold after an update.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Entry {
    /// Nothing (descriptor 0).
    Empty,
    /// The owner's invalid "lent away" annotation for this frame.
    LentAway(PhysAddr),
    /// A valid page mapping.
    Mapped(Leaf),
}

impl Entry {
    fn encode(self, level: u8) -> u64 {
        match self {
            Self::Empty => 0,
            Self::LentAway(pa) => encode_lent_away(pa),
            Self::Mapped(leaf) => encode_leaf(&leaf, level),
        }
    }

    fn needs_table(self) -> bool {
        self != Self::Empty
    }
}

/// How far a table's translation tables reach at one IPA: what a page-level write there may
/// have to allocate (the prepare step counts it, [`crate::engine`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Reach {
    /// The level-1 slot holds no table: a write needs a level-2 and a level-3 table.
    Level1,
    /// A level-2 table, whose slot is empty: a write needs a level-3 table.
    Level2,
    /// A level-2 block leaf: a page-level write splits it into a new level-3 table.
    Block,
    /// A level-3 table: a page-level write needs nothing.
    Level3,
}

/// What the level-2 slot of a 2 MiB region holds ([`Stage2Table::block_slot`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BlockSlot {
    /// Nothing: no level-2 table, or a zero slot. All 512 pages are empty alike.
    Empty,
    /// One 2 MiB block leaf: all 512 pages are mapped alike.
    Block(Leaf),
    /// A level-3 table, or anything else: the pages may differ.
    Other,
}

/// One domain's stage-2 translation table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Stage2Table {
    root: PhysAddr,
    vmid: Vmid,
}

impl Stage2Table {
    /// Allocates an empty table (an 8 KiB root of two zeroed level-1 tables) for `vmid`.
    pub fn new(
        memory: &mut impl PhysMemory,
        pool: &mut TablePool,
        vmid: Vmid,
    ) -> Result<Self, Error> {
        let root = pool.take_root(memory)?;
        Ok(Self { root, vmid })
    }

    /// Physical address of the 8 KiB root.
    pub fn root(&self) -> PhysAddr {
        self.root
    }

    /// The VMID that tags this table's TLB entries.
    pub fn vmid(&self) -> Vmid {
        self.vmid
    }

    /// The VTTBR_EL2 value that activates this table: BADDR = root, VMID in bits 63:48.
    pub fn vttbr(&self) -> u64 {
        self.root.get() | (u64::from(self.vmid.0) << 48)
    }

    /// What the hardware would do with an access to `ipa`.
    pub fn translate(&self, memory: &impl PhysMemory, ipa: Ipa) -> Walk {
        translate(memory, self.root, ipa)
    }

    /// The leaf mapping `ipa`, if any (malformed leaves count as none).
    pub fn lookup(&self, memory: &impl PhysMemory, ipa: Ipa) -> Option<Leaf> {
        match self.translate(memory, ipa) {
            Walk::Mapped(translation) => Some(translation.leaf),
            _ => None,
        }
    }

    /// Physical address of the descriptor a walk for `ipa` ends at (the leaf or the faulting
    /// slot), for tests that read descriptors back bit by bit.
    pub fn translate_descriptor(&self, memory: &impl PhysMemory, ipa: Ipa) -> PhysAddr {
        let mut table = self.root;
        for level in 1..=3u8 {
            let slot = descriptor_address(table, ipa, level);
            match decode(memory.read_u64(slot), level) {
                Descriptor::Table(next) => table = next,
                _ => return slot,
            }
        }
        table
    }

    /// What the 4 KiB slot for `ipa` holds: a mapping (possibly inside a block), a lent-away
    /// annotation, or nothing. One walk, as [`Self::translate`] walks (a malformed descriptor
    /// or an IPA out of range holds nothing).
    pub fn entry(&self, memory: &impl PhysMemory, ipa: Ipa) -> Entry {
        if ipa.0 >> IPA_BITS != 0 {
            return Entry::Empty;
        }
        let mut table = self.root;
        for level in 1..=3u8 {
            let raw = memory.read_u64(descriptor_address(table, ipa, level));
            match decode(raw, level) {
                Descriptor::Table(next) => table = next,
                Descriptor::Leaf(leaf) => {
                    let offset = ipa.0 & (level_span(level) - 1) & !(PAGE_SIZE - 1);
                    return Entry::Mapped(Leaf {
                        pa: PhysAddr(leaf.pa.0 + offset),
                        ..leaf
                    });
                }
                Descriptor::Invalid if level == 3 => {
                    return decode_lent_away(raw, 3).map_or(Entry::Empty, Entry::LentAway);
                }
                Descriptor::Invalid | Descriptor::Malformed(_) => return Entry::Empty,
            }
        }
        Entry::Empty
    }

    /// Level of the leaf mapping `ipa` (2 = inside a block), if mapped.
    pub fn leaf_level(&self, memory: &impl PhysMemory, ipa: Ipa) -> Option<u8> {
        match self.translate(memory, ipa) {
            Walk::Mapped(translation) => Some(translation.level),
            _ => None,
        }
    }

    /// How far the tables reach at `ipa` ([`Reach`]). A malformed slot counts as empty (the
    /// engine never writes one; a write over it is refused by [`Self::set_page`]).
    pub fn reach(&self, memory: &impl PhysMemory, ipa: Ipa) -> Reach {
        let Descriptor::Table(l2_table) =
            decode(memory.read_u64(descriptor_address(self.root, ipa, 1)), 1)
        else {
            return Reach::Level1;
        };
        match decode(memory.read_u64(descriptor_address(l2_table, ipa, 2)), 2) {
            Descriptor::Table(_) => Reach::Level3,
            Descriptor::Leaf(_) => Reach::Block,
            Descriptor::Invalid | Descriptor::Malformed(_) => Reach::Level2,
        }
    }

    /// What the level-2 slot of the 2 MiB region at `ipa` holds: whether its 512 pages are
    /// alike without reading them (the engine's block fast path).
    pub fn block_slot(&self, memory: &impl PhysMemory, ipa: Ipa) -> BlockSlot {
        let upper = memory.read_u64(descriptor_address(self.root, ipa, 1));
        let l2_table = match decode(upper, 1) {
            Descriptor::Table(table) => table,
            _ if upper == 0 => return BlockSlot::Empty,
            _ => return BlockSlot::Other,
        };
        let raw = memory.read_u64(descriptor_address(l2_table, ipa, 2));
        match decode(raw, 2) {
            _ if raw == 0 => BlockSlot::Empty,
            Descriptor::Leaf(leaf) => BlockSlot::Block(leaf),
            _ => BlockSlot::Other,
        }
    }

    /// Prepare step: an upper bound on the table pages that changing `pages` pages from `ipa`
    /// can allocate. One level-2 table per level-1 entry that is not a table yet, one level-3
    /// table per 2 MiB region whose level-2 entry is not a table yet (a block to split, or an
    /// empty region that gets pages). Coalescing only frees pages.
    pub fn tables_needed(&self, memory: &impl PhysMemory, ipa: Ipa, pages: u64) -> usize {
        let mut needed = 0;
        let end = ipa.0 + pages * PAGE_SIZE;
        let mut gigabyte = ipa.0 & !((1 << 30) - 1);
        while gigabyte < end {
            let l1 = decode(
                memory.read_u64(descriptor_address(self.root, Ipa(gigabyte), 1)),
                1,
            );
            let l2_table = match l1 {
                Descriptor::Table(next) => Some(next),
                _ => {
                    needed += 1;
                    None
                }
            };
            let first = gigabyte.max(ipa.0) & !(BLOCK_SIZE - 1);
            let last = end.min(gigabyte + (1 << 30));
            let mut block = first;
            while block < last {
                let is_table = l2_table.is_some_and(|table| {
                    matches!(
                        decode(memory.read_u64(descriptor_address(table, Ipa(block), 2)), 2),
                        Descriptor::Table(_)
                    )
                });
                if !is_table {
                    needed += 1;
                }
                block += BLOCK_SIZE;
            }
            gigabyte += 1 << 30;
        }
        needed
    }

    /// Sets the 4 KiB page at `ipa` to `new`, splitting a covering block and
    /// creating tables as needed from `reservation`. Returns `Err` only if the reservation was
    /// too small, which [`Self::tables_needed`] rules out.
    pub fn set_page(
        &mut self,
        arch: &mut impl Stage2Arch,
        pool: &mut TablePool,
        reservation: &mut Reservation,
        ipa: Ipa,
        new: Entry,
    ) -> Result<(), Error> {
        let Some(l2_table) = self.next_table(arch, pool, reservation, self.root, ipa, 1, new)?
        else {
            return Ok(());
        };
        let Some(l3_table) = self.next_table(arch, pool, reservation, l2_table, ipa, 2, new)?
        else {
            return Ok(());
        };
        let value = new.encode(3);
        self.replace(arch, self.slot(l3_table, ipa, 3), value);
        Ok(())
    }

    /// Sets the whole 2 MiB region at `ipa` (block aligned) with one level-2 descriptor: a block
    /// mapping `new`, or nothing. A level-3 table there is unlinked, invalidated and freed.
    pub fn set_block(
        &mut self,
        arch: &mut impl Stage2Arch,
        pool: &mut TablePool,
        reservation: &mut Reservation,
        ipa: Ipa,
        new: Option<Leaf>,
    ) -> Result<(), Error> {
        let entry = new.map_or(Entry::Empty, Entry::Mapped);
        let Some(l2_table) = self.next_table(arch, pool, reservation, self.root, ipa, 1, entry)?
        else {
            return Ok(());
        };
        let value = new.map_or(0, |leaf| encode_leaf(&leaf, 2));
        let slot = self.slot(l2_table, ipa, 2);
        let old = arch.read_u64(slot.pa);
        if let Descriptor::Table(l3_table) = decode(old, 2) {
            self.unlink_table(arch, pool, slot, l3_table);
        }
        self.replace(arch, slot, value);
        Ok(())
    }

    /// After a commit: if the 2 MiB region at `ipa` is a level-3 table whose 512 pages now form
    /// one uniform, contiguous, 2 MiB aligned mapping, replace it by a block; if it maps
    /// nothing, remove it. Either way the table page goes back to the pool. Then, if the level-2
    /// table above holds nothing any more, it goes back to the pool too: an unmapped range keeps
    /// no table pages.
    pub fn coalesce(&mut self, arch: &mut impl Stage2Arch, pool: &mut TablePool, ipa: Ipa) {
        self.coalesce_block(arch, pool, ipa);
        self.release_empty_level2(arch, pool, ipa);
    }

    /// Unlinks and frees the level-2 table under `ipa`'s level-1 slot if every entry is empty.
    fn release_empty_level2(&mut self, arch: &mut impl Stage2Arch, pool: &mut TablePool, ipa: Ipa) {
        let slot = self.slot(self.root, ipa, 1);
        let Descriptor::Table(l2_table) = decode(arch.read_u64(slot.pa), 1) else {
            return;
        };
        if arch.with_page(l2_table, &mut |words| words.iter().all(|&word| word == 0)) {
            self.unlink_table(arch, pool, slot, l2_table);
        }
    }

    /// The level-3 half of [`Self::coalesce`].
    fn coalesce_block(&mut self, arch: &mut impl Stage2Arch, pool: &mut TablePool, ipa: Ipa) {
        let block_ipa = ipa.block_base();
        let Descriptor::Table(l2_table) = decode(
            arch.read_u64(descriptor_address(self.root, block_ipa, 1)),
            1,
        ) else {
            return;
        };
        let slot = self.slot(l2_table, block_ipa, 2);
        let Descriptor::Table(l3_table) = decode(arch.read_u64(slot.pa), 2) else {
            return;
        };
        let replacement = arch.with_page(l3_table, &mut |words| match decode(words[0], 3) {
            // Lent-away annotations keep the table alive: they are state, not garbage.
            Descriptor::Invalid => words.iter().all(|&word| word == 0).then_some(0),
            Descriptor::Leaf(leaf) if leaf.pa.is_block_aligned() => {
                let uniform = words.iter().enumerate().skip(1).all(|(index, &word)| {
                    let pa = PhysAddr(leaf.pa.0 + index as u64 * PAGE_SIZE);
                    word == encode_leaf(&Leaf { pa, ..leaf }, 3)
                });
                uniform.then(|| encode_leaf(&leaf, 2))
            }
            _ => None,
        });
        let Some(replacement) = replacement else {
            return;
        };
        self.unlink_table(arch, pool, slot, l3_table);
        if replacement != 0 {
            arch.write_descriptor(slot, replacement);
        }
    }

    /// Breaks a table descriptor (write invalid, invalidate every translation and walk-cache
    /// entry of the VMID, since a table covers many IPAs) and frees the table page.
    fn unlink_table(
        &mut self,
        arch: &mut impl Stage2Arch,
        pool: &mut TablePool,
        slot: DescriptorSlot,
        table: PhysAddr,
    ) {
        arch.write_descriptor(slot, 0);
        arch.invalidate_vmid(self.vmid);
        pool.free(arch, table);
    }

    /// Writes `value` into a live slot: break-before-make when the output address, memory type
    /// or structure changes; an invalidation after every removal or permission narrowing.
    fn replace(&mut self, arch: &mut impl Stage2Arch, slot: DescriptorSlot, value: u64) {
        let old = arch.read_u64(slot.pa);
        if old == value {
            return;
        }
        let old_valid = old & 1 != 0;
        if !old_valid {
            // Invalid descriptors are never cached (Arm ARM D8.16.2), so no invalidation.
            arch.write_descriptor(slot, value);
            return;
        }
        if !is_bbm_safe(old, value) || value & 1 == 0 {
            arch.write_descriptor(slot, 0);
            arch.invalidate_ipa(self.vmid, slot.ipa);
            if value != 0 {
                arch.write_descriptor(slot, value);
            }
            return;
        }
        arch.write_descriptor(slot, value);
        if narrows(old, value) {
            arch.invalidate_ipa(self.vmid, slot.ipa);
        }
    }

    /// Returns the next-level table under `ipa` at `level`, creating it (or splitting a block
    /// into it) when `new` maps something. `Ok(None)` when there is nothing to unmap below.
    #[allow(clippy::too_many_arguments, reason = "the walk state of one level")]
    fn next_table(
        &mut self,
        arch: &mut impl Stage2Arch,
        pool: &mut TablePool,
        reservation: &mut Reservation,
        table: PhysAddr,
        ipa: Ipa,
        level: u8,
        new: Entry,
    ) -> Result<Option<PhysAddr>, Error> {
        let slot = self.slot(table, ipa, level);
        let old = arch.read_u64(slot.pa);
        match decode(old, level) {
            Descriptor::Table(next) => Ok(Some(next)),
            Descriptor::Invalid if !new.needs_table() => Ok(None),
            Descriptor::Invalid => {
                let next = pool
                    .take(arch, reservation)
                    .ok_or(Error::OutOfTableMemory)?;
                arch.write_descriptor(slot, encode_table(next));
                Ok(Some(next))
            }
            Descriptor::Leaf(leaf) => {
                // Split: build the equivalent next-level table while it is unreachable, then
                // break the block and make the table (Arm ARM D8.16.1).
                let next = pool
                    .take(arch, reservation)
                    .ok_or(Error::OutOfTableMemory)?;
                let child_level = level + 1;
                let child_span = level_span(child_level);
                for index in 0..512 {
                    let child = Leaf {
                        pa: PhysAddr(leaf.pa.0 + index * child_span),
                        ..leaf
                    };
                    arch.page_mut(next)[index as usize] = encode_leaf(&child, child_level);
                }
                arch.write_descriptor(slot, 0);
                arch.invalidate_ipa(self.vmid, slot.ipa);
                arch.write_descriptor(slot, encode_table(next));
                Ok(Some(next))
            }
            // The core never writes malformed leaves; refuse to build on one.
            Descriptor::Malformed(_) => Err(Error::WrongState),
        }
    }

    fn slot(&self, table: PhysAddr, ipa: Ipa, level: u8) -> DescriptorSlot {
        let span = level_span(level);
        DescriptorSlot {
            pa: descriptor_address(table, ipa, level),
            vmid: self.vmid,
            ipa: Ipa(ipa.0 & !(span - 1)),
            level,
        }
    }
}

/// True when `new` grants less than `old` (an S2AP bit cleared or XN set), so a stale TLB
/// entry would grant too much and must go (I6). Software bits are ignored by the walker.
fn narrows(old: u64, new: u64) -> bool {
    const S2AP: u64 = 0b11 << 6;
    const XN: u64 = 1 << 54;
    (old & S2AP) & !(new & S2AP) != 0 || (new & XN != 0 && old & XN == 0)
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
    use crate::arch::fake::{FakeArch, Invalidation};
    use crate::descriptor::{MemoryType, PageState, Rights};

    const POOL: PhysAddr = PhysAddr(0x1000_0000);

    fn setup() -> (FakeArch, TablePool, Stage2Table) {
        let mut arch = FakeArch::new(POOL, PhysAddr(POOL.0 + 64 * PAGE_SIZE));
        let mut pool = TablePool::new(POOL, 64).unwrap();
        let table = Stage2Table::new(&mut arch, &mut pool, Vmid(5)).unwrap();
        (arch, pool, table)
    }

    fn leaf(pa: u64, rights: Rights) -> Leaf {
        Leaf {
            pa: PhysAddr(pa),
            rights,
            memory: MemoryType::Normal,
            state: PageState::Owned,
        }
    }

    fn map_page(
        arch: &mut FakeArch,
        pool: &mut TablePool,
        table: &mut Stage2Table,
        ipa: u64,
        new: Option<Leaf>,
    ) {
        let new = new.map_or(Entry::Empty, Entry::Mapped);
        let mut reservation = pool
            .reserve(table.tables_needed(arch, Ipa(ipa), 1))
            .unwrap();
        table
            .set_page(arch, pool, &mut reservation, Ipa(ipa), new)
            .unwrap();
        pool.release(reservation);
    }

    #[test]
    fn root_is_two_concatenated_level1_tables_8k_aligned() {
        let (arch, _, table) = setup();
        assert_eq!(table.root().get() % 8192, 0);
        assert_eq!(table.vttbr(), table.root().get() | (5 << 48));
        // IPA[39:30] indexes 1024 entries: the top gigabyte uses the second 4 KiB page.
        let top = descriptor_address(table.root(), Ipa((1 << 40) - PAGE_SIZE), 1);
        assert_eq!(top.get(), table.root().get() + 4096 + 511 * 8);
        assert!(matches!(
            table.translate(&arch, Ipa(0)),
            Walk::Fault { level: 1 }
        ));
    }

    #[test]
    fn page_mapping_reads_back_bit_by_bit() {
        let (mut arch, mut pool, mut table) = setup();
        let ipa = 0x80_4000_3000 & ((1 << 40) - 1);
        map_page(
            &mut arch,
            &mut pool,
            &mut table,
            ipa,
            Some(leaf(0x4123_4000, Rights::ALL)),
        );
        let Walk::Mapped(translation) = table.translate(&arch, Ipa(ipa)) else {
            panic!("not mapped");
        };
        assert_eq!(translation.level, 3);
        let raw = arch.read_u64(translation.descriptor);
        assert_eq!(raw, 0x4123_4000 | 0x7FF | (1 << 55));
        // Level-1 and level-2 descriptors are table descriptors (0b11) into the pool.
        let l1 = arch.read_u64(descriptor_address(table.root(), Ipa(ipa), 1));
        assert_eq!(l1 & 0b11, 0b11);
        assert!(pool.contains(PhysAddr(l1 & 0xFFFF_FFFF_F000)));
        assert!(translation.permits(Rights::READ | Rights::WRITE));
        // Mapping a fresh slot never needs an invalidation.
        assert!(arch.end_call().is_empty());
        assert!(arch.take_violations().is_empty());
    }

    #[test]
    fn narrowing_and_unmapping_invalidate_widening_does_not() {
        let (mut arch, mut pool, mut table) = setup();
        map_page(
            &mut arch,
            &mut pool,
            &mut table,
            0x1000,
            Some(leaf(0x4000_0000, Rights::READ)),
        );
        arch.end_call();
        map_page(
            &mut arch,
            &mut pool,
            &mut table,
            0x1000,
            Some(leaf(0x4000_0000, Rights::ALL)),
        );
        assert!(arch.end_call().is_empty(), "widening needs no TLBI");
        map_page(
            &mut arch,
            &mut pool,
            &mut table,
            0x1000,
            Some(leaf(0x4000_0000, Rights::READ)),
        );
        assert_eq!(arch.end_call(), [Invalidation::Ipa(Vmid(5), Ipa(0x1000))]);
        map_page(&mut arch, &mut pool, &mut table, 0x1000, None);
        assert_eq!(arch.end_call(), [Invalidation::Ipa(Vmid(5), Ipa(0x1000))]);
        assert!(table.lookup(&arch, Ipa(0x1000)).is_none());
        assert!(arch.take_violations().is_empty());
    }

    #[test]
    fn changing_the_output_address_breaks_first() {
        let (mut arch, mut pool, mut table) = setup();
        map_page(
            &mut arch,
            &mut pool,
            &mut table,
            0x1000,
            Some(leaf(0x4000_0000, Rights::ALL)),
        );
        map_page(
            &mut arch,
            &mut pool,
            &mut table,
            0x1000,
            Some(leaf(0x4000_5000, Rights::ALL)),
        );
        assert_eq!(arch.end_call(), [Invalidation::Ipa(Vmid(5), Ipa(0x1000))]);
        assert!(arch.take_violations().is_empty());
        assert_eq!(
            table.lookup(&arch, Ipa(0x1000)).unwrap().pa,
            PhysAddr(0x4000_5000)
        );
    }

    #[test]
    fn fake_catches_a_make_without_break() {
        // The fake itself must be strict: an in-place output change is an I7 violation.
        let (mut arch, mut pool, mut table) = setup();
        map_page(
            &mut arch,
            &mut pool,
            &mut table,
            0x1000,
            Some(leaf(0x4000_0000, Rights::ALL)),
        );
        let Walk::Mapped(translation) = table.translate(&arch, Ipa(0x1000)) else {
            panic!("not mapped");
        };
        let slot = DescriptorSlot {
            pa: translation.descriptor,
            vmid: Vmid(5),
            ipa: Ipa(0x1000),
            level: 3,
        };
        arch.write_descriptor(slot, encode_leaf(&leaf(0x4000_7000, Rights::ALL), 3));
        let violations = arch.take_violations();
        assert_eq!(violations.len(), 1);
        assert!(violations[0].starts_with("I7"));
        arch.write_descriptor(slot, 0);
        arch.end_call();
        assert!(arch.take_violations()[0].starts_with("I6"));
    }

    #[test]
    fn block_split_and_coalesce() {
        let (mut arch, mut pool, mut table) = setup();
        let block = Leaf {
            pa: PhysAddr(0x4020_0000),
            ..leaf(0, Rights::ALL)
        };
        let mut reservation = pool
            .reserve(table.tables_needed(&arch, Ipa(0x20_0000), 512))
            .unwrap();
        table
            .set_block(
                &mut arch,
                &mut pool,
                &mut reservation,
                Ipa(0x20_0000),
                Some(block),
            )
            .unwrap();
        pool.release(reservation);
        let raw_block = arch.read_u64(table.translate_descriptor(&arch, Ipa(0x20_0000)));
        assert_eq!(raw_block & 0b11, 0b01, "a level-2 block descriptor");
        assert_eq!(table.leaf_level(&arch, Ipa(0x21_0000)), Some(2));
        assert_eq!(
            table.lookup(&arch, Ipa(0x20_1000)).unwrap().pa,
            PhysAddr(0x4020_1000)
        );
        let free_before = pool.available();

        // Narrowing one page splits the block (one table page) and invalidates the block.
        let narrowed = Leaf {
            pa: PhysAddr(0x4020_1000),
            ..leaf(0, Rights::READ)
        };
        map_page(&mut arch, &mut pool, &mut table, 0x20_1000, Some(narrowed));
        assert_eq!(pool.available(), free_before - 1);
        assert_eq!(table.leaf_level(&arch, Ipa(0x20_1000)), Some(3));
        assert_eq!(
            table.lookup(&arch, Ipa(0x20_1000)).unwrap().rights,
            Rights::READ
        );
        assert_eq!(
            table.lookup(&arch, Ipa(0x20_2000)).unwrap().rights,
            Rights::ALL
        );
        assert_eq!(
            table.lookup(&arch, Ipa(0x3F_F000)).unwrap().pa,
            PhysAddr(0x403F_F000)
        );
        let invalidations = arch.end_call();
        assert!(invalidations.contains(&Invalidation::Ipa(Vmid(5), Ipa(0x20_0000))));
        assert!(arch.take_violations().is_empty());

        // Not uniform yet: coalescing leaves it alone.
        table.coalesce(&mut arch, &mut pool, Ipa(0x20_0000));
        assert_eq!(table.leaf_level(&arch, Ipa(0x20_1000)), Some(3));

        // Uniform again: one block, the table page back in the pool.
        let restored = Leaf {
            pa: PhysAddr(0x4020_1000),
            ..leaf(0, Rights::ALL)
        };
        map_page(&mut arch, &mut pool, &mut table, 0x20_1000, Some(restored));
        table.coalesce(&mut arch, &mut pool, Ipa(0x20_0000));
        assert_eq!(table.leaf_level(&arch, Ipa(0x20_1000)), Some(2));
        assert_eq!(pool.available(), free_before);
        arch.end_call();
        assert!(arch.take_violations().is_empty());
    }

    #[test]
    fn reservation_bounds_allocation() {
        let (mut arch, mut pool, mut table) = setup();
        assert_eq!(table.tables_needed(&arch, Ipa(0x1000), 1), 2);
        let mut reservation = pool.reserve(1).unwrap();
        let result = table.set_page(
            &mut arch,
            &mut pool,
            &mut reservation,
            Ipa(0x1000),
            Entry::Mapped(leaf(0x4000_0000, Rights::ALL)),
        );
        assert_eq!(result, Err(Error::OutOfTableMemory));
        pool.release(reservation);
        let everything = pool.available();
        assert_eq!(
            pool.reserve(everything + 1).err(),
            Some(Error::OutOfTableMemory)
        );
    }
}
