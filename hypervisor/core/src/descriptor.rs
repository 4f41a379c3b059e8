//! VMSAv8-64 stage-2 descriptors (4 KiB granule): typed leaves and their bit encoding.
//!
//! Attribute bits are the named constants of `aarch64_paging::descriptor::Stage2Attributes`
//! (Arm ARM D8.3, "Translation table descriptor formats"; D8.5.5 stage-2 attributes):
//!
//! | bits  | field | our use |
//! | ----- | ----- | ------- |
//! | 1:0   | type  | 0b11 table (L1/L2) or page (L3); 0b01 block (L1/L2) |
//! | 5:2   | MemAttr | Normal WB = 0b1111, Device-nGnRE = 0b0001 |
//! | 7:6   | S2AP  | bit 6 read, bit 7 write |
//! | 9:8   | SH    | inner shareable for Normal memory |
//! | 10    | AF    | always 1: the core never relies on access-flag faults |
//! | 47:12 | OA    | output address (40 bits used, VTCR_EL2.PS = 40 bits) |
//! | 54    | XN    | set unless the mapping grants execute |
//! | 58:55 | software | the ownership [`PageState`] as seen by this domain |
//!
//! An owner that lent a frame keeps an *invalid* level-3 descriptor holding the frame's address
//! and software state 5 ("lent away"), as pKVM annotates invalid host PTEs: the walker ignores
//! every bit of an invalid descriptor (Arm ARM D8.3.1), and reclaim finds the frame again.

use aarch64_paging::descriptor::Stage2Attributes as Attr;
use bitflags::bitflags;

use crate::addr::PhysAddr;

bitflags! {
    /// Access rights of a mapping; the values match `frameshift_abi::boot_info::RIGHT_*`.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
    pub struct Rights: u8 {
        /// Data reads.
        const READ = 1 << 0;
        /// Data writes.
        const WRITE = 1 << 1;
        /// Instruction fetches.
        const EXECUTE = 1 << 2;
    }
}

impl Rights {
    /// Read and write, no execute: what a borrower gets by default.
    pub const READ_WRITE: Self = Self::READ.union(Self::WRITE);
    /// Everything: what an owner of ordinary memory gets.
    pub const ALL: Self = Self::READ.union(Self::WRITE).union(Self::EXECUTE);
}

/// Memory type of a mapping (the stage-2 MemAttr field).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum MemoryType {
    /// Normal memory, inner and outer write-back (MemAttr 0b1111), inner shareable.
    Normal,
    /// Device-nGnRE (MemAttr 0b0001), never executable.
    Device,
}

/// Ownership state of a mapping as seen by the domain it belongs to, kept in software bits
/// 55-58 of the leaf (DESIGN.md 4). `Lent` and `NoPage` have no descriptor by definition.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum PageState {
    /// Exclusive: mapped only here.
    Owned = 1,
    /// The owner's mapping of a frame it shares with the frame table's listed borrowers.
    SharedOwned = 2,
    /// A borrower's mapping (shared, or exclusive use of a lent frame).
    SharedBorrowed = 3,
    /// Memory outside the frame table (device MMIO) passed through at boot; never converted.
    Passthrough = 4,
}

impl PageState {
    /// Decodes the software-bit value; 0 and unknown values are not a state.
    pub const fn from_bits(bits: u8) -> Option<Self> {
        match bits {
            1 => Some(Self::Owned),
            2 => Some(Self::SharedOwned),
            3 => Some(Self::SharedBorrowed),
            4 => Some(Self::Passthrough),
            _ => None,
        }
    }
}

/// A leaf mapping: what a page or block descriptor says.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Leaf {
    /// Output address of the first byte.
    pub pa: PhysAddr,
    /// Access rights.
    pub rights: Rights,
    /// Memory type.
    pub memory: MemoryType,
    /// Ownership state in the software bits.
    pub state: PageState,
}

/// A decoded descriptor at a given level, interpreted the way the table walker does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Descriptor {
    /// Bit 0 clear, or the reserved encoding 0b01 at level 3: a translation fault.
    Invalid,
    /// Next-level table (levels 1 and 2).
    Table(PhysAddr),
    /// Block (levels 1 and 2) or page (level 3) leaf.
    Leaf(Leaf),
    /// A valid leaf the core would never write (AF clear, unknown MemAttr or state bits,
    /// output address beyond 40 bits). The audit reports it; the walker still decodes it.
    Malformed(u64),
}

const OUTPUT_ADDRESS_MASK: u64 = 0x0000_FFFF_FFFF_F000;
const MEMATTR_MASK: u64 = 0b1111 << 2;
const MEMATTR_NORMAL_WB: u64 =
    Attr::MEMATTR_NORMAL_INNER_WB.bits() as u64 | Attr::MEMATTR_NORMAL_OUTER_WB.bits() as u64;
const MEMATTR_DEVICE_NGNRE: u64 = Attr::MEMATTR_DEVICE_nGnRE.bits() as u64;
const S2AP_READ: u64 = Attr::S2AP_ACCESS_RO.bits() as u64;
const S2AP_WRITE: u64 = Attr::S2AP_ACCESS_WO.bits() as u64;
const SH_INNER: u64 = Attr::SH_INNER.bits() as u64;
const ACCESS_FLAG: u64 = Attr::ACCESS_FLAG.bits() as u64;
const XN: u64 = Attr::XN.bits() as u64;
/// XN[0] with FEAT_XNX (bit 53); we never set it but decode it conservatively.
const XN_LOW: u64 = 1 << 53;
const SOFTWARE_SHIFT: u32 = 55;
const SOFTWARE_MASK: u64 = 0b1111 << SOFTWARE_SHIFT;
const VALID: u64 = Attr::VALID.bits() as u64;
const TABLE_OR_PAGE: u64 = Attr::TABLE_OR_PAGE.bits() as u64;

/// Software state of a lent-away annotation in an invalid descriptor.
const LENT_AWAY: u64 = 5;

/// Encodes the invalid "lent away" annotation of the owner's slot for frame `pa`.
pub const fn encode_lent_away(pa: PhysAddr) -> u64 {
    (pa.0 & OUTPUT_ADDRESS_MASK) | (LENT_AWAY << SOFTWARE_SHIFT)
}

/// The frame a level-3 "lent away" annotation names, if `raw` is one.
pub const fn decode_lent_away(raw: u64, level: u8) -> Option<PhysAddr> {
    if level == 3 && raw & VALID == 0 && (raw & SOFTWARE_MASK) >> SOFTWARE_SHIFT == LENT_AWAY {
        Some(PhysAddr(raw & OUTPUT_ADDRESS_MASK))
    } else {
        None
    }
}

/// Size in bytes of what one descriptor maps at `level` (4 KiB granule).
pub const fn level_span(level: u8) -> u64 {
    match level {
        1 => 1 << 30,
        2 => 1 << 21,
        _ => 1 << 12,
    }
}

/// Encodes a table descriptor pointing at `next_table`.
pub const fn encode_table(next_table: PhysAddr) -> u64 {
    (next_table.0 & OUTPUT_ADDRESS_MASK) | VALID | TABLE_OR_PAGE
}

/// Encodes a leaf: a page at level 3, a block at levels 1 and 2.
pub fn encode_leaf(leaf: &Leaf, level: u8) -> u64 {
    let kind = if level == 3 {
        VALID | TABLE_OR_PAGE
    } else {
        VALID
    };
    let mut value = (leaf.pa.0 & OUTPUT_ADDRESS_MASK) | kind | ACCESS_FLAG;
    if leaf.rights.contains(Rights::READ) {
        value |= S2AP_READ;
    }
    if leaf.rights.contains(Rights::WRITE) {
        value |= S2AP_WRITE;
    }
    match leaf.memory {
        MemoryType::Normal => value |= MEMATTR_NORMAL_WB | SH_INNER,
        MemoryType::Device => value |= MEMATTR_DEVICE_NGNRE,
    }
    // Device memory is never executable: speculative instruction fetch from MMIO is an attack
    // surface and Arm ARM B2.7.2 makes execution from Device memory CONSTRAINED UNPREDICTABLE.
    if !leaf.rights.contains(Rights::EXECUTE) || leaf.memory == MemoryType::Device {
        value |= XN;
    }
    value | ((leaf.state as u64) << SOFTWARE_SHIFT)
}

/// Decodes a descriptor read from a table at `level` exactly as the table walker would.
pub fn decode(raw: u64, level: u8) -> Descriptor {
    if raw & VALID == 0 {
        return Descriptor::Invalid;
    }
    let is_table_or_page = raw & TABLE_OR_PAGE != 0;
    if level < 3 && is_table_or_page {
        return Descriptor::Table(PhysAddr(raw & OUTPUT_ADDRESS_MASK));
    }
    if level == 3 && !is_table_or_page {
        // Arm ARM D8.3.1: 0b01 at level 3 is reserved and behaves as invalid.
        return Descriptor::Invalid;
    }
    // A level-1 block keeps OA[47:30], a level-2 block OA[47:21]: the bits below are RES0
    // for the output address.
    let pa = raw & OUTPUT_ADDRESS_MASK & !(level_span(level) - 1);
    let memory = match raw & MEMATTR_MASK {
        MEMATTR_NORMAL_WB => MemoryType::Normal,
        MEMATTR_DEVICE_NGNRE => MemoryType::Device,
        _ => return Descriptor::Malformed(raw),
    };
    let Some(state) = PageState::from_bits(((raw & SOFTWARE_MASK) >> SOFTWARE_SHIFT) as u8) else {
        return Descriptor::Malformed(raw);
    };
    if raw & ACCESS_FLAG == 0 || pa >> crate::addr::PA_BITS != 0 {
        return Descriptor::Malformed(raw);
    }
    let mut rights = Rights::empty();
    if raw & S2AP_READ != 0 {
        rights |= Rights::READ;
    }
    if raw & S2AP_WRITE != 0 {
        rights |= Rights::WRITE;
    }
    // Without FEAT_XNX only bit 54 counts; with it XN = 0b11 allows EL1 execution. Report
    // execute whenever either reading allows it, so the audit errs towards "too wide".
    let xn_high = raw & XN != 0;
    let xn_low = raw & XN_LOW != 0;
    if !xn_high || xn_low {
        rights |= Rights::EXECUTE;
    }
    Descriptor::Leaf(Leaf {
        pa: PhysAddr(pa),
        rights,
        memory,
        state,
    })
}

/// Arm ARM D8.16.1: a live descriptor may change without break-before-make only when the output
/// address, the memory type and the block/table structure stay the same (permissions,
/// software bits and AF may change). Same predicate as aarch64-paging's `is_bbm_safe`, on raw
/// values.
pub fn is_bbm_safe(old: u64, new: u64) -> bool {
    if old & VALID == 0 || new & VALID == 0 {
        return true;
    }
    let allowed = VALID | S2AP_READ | S2AP_WRITE | ACCESS_FLAG | XN | SOFTWARE_MASK;
    (old ^ new) & !allowed == 0
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test fails loudly on an unexpected error"
)]
mod tests {
    use super::*;

    fn normal(pa: u64, rights: Rights, state: PageState) -> Leaf {
        Leaf {
            pa: PhysAddr(pa),
            rights,
            memory: MemoryType::Normal,
            state,
        }
    }

    #[test]
    fn rw_normal_page_matches_the_value_verified_on_qemu() {
        // DESIGN.md 9: RW normal = PA|0x7FF (with execute allowed, XN clear).
        let raw = encode_leaf(&normal(0x4020_3000, Rights::ALL, PageState::Owned), 3);
        assert_eq!(raw & 0xFFF, 0x7FF);
        assert_eq!(raw & OUTPUT_ADDRESS_MASK, 0x4020_3000);
        assert_eq!(raw >> 54 & 1, 0, "XN clear");
        assert_eq!(raw >> 55 & 0xF, 1, "software state Owned");
    }

    #[test]
    fn ro_normal_page_matches_the_value_verified_on_qemu() {
        let raw = encode_leaf(
            &normal(
                0x4020_3000,
                Rights::READ | Rights::EXECUTE,
                PageState::SharedBorrowed,
            ),
            3,
        );
        assert_eq!(raw & 0xFFF, 0x77F);
        assert_eq!(raw >> 55 & 0xF, 3);
    }

    #[test]
    fn fields_sit_where_the_arm_arm_puts_them() {
        let raw = encode_leaf(
            &normal(0x8000_0000, Rights::READ_WRITE, PageState::SharedOwned),
            3,
        );
        assert_eq!(raw & 0b11, 0b11, "page descriptor type");
        assert_eq!(raw >> 2 & 0b1111, 0b1111, "MemAttr normal WB");
        assert_eq!(raw >> 6 & 0b11, 0b11, "S2AP RW");
        assert_eq!(raw >> 8 & 0b11, 0b11, "SH inner");
        assert_eq!(raw >> 10 & 1, 1, "AF");
        assert_eq!(raw >> 54 & 1, 1, "XN");
        assert_eq!(raw >> 55 & 0b1111, 2, "software state");

        let block = encode_leaf(&normal(0x4020_0000, Rights::READ, PageState::Owned), 2);
        assert_eq!(block & 0b11, 0b01, "block descriptor type");
        assert_eq!(block >> 6 & 0b11, 0b01, "S2AP RO");

        let device = encode_leaf(
            &Leaf {
                pa: PhysAddr(0x0900_0000),
                rights: Rights::ALL,
                memory: MemoryType::Device,
                state: PageState::Passthrough,
            },
            3,
        );
        assert_eq!(device >> 2 & 0b1111, 0b0001, "MemAttr Device-nGnRE");
        assert_eq!(device >> 54 & 1, 1, "device is never executable");

        assert_eq!(encode_table(PhysAddr(0x4100_2000)), 0x4100_2003);
    }

    #[test]
    fn decode_inverts_encode_and_follows_the_walker_rules() {
        let leaf = normal(0x4020_3000, Rights::READ_WRITE, PageState::SharedOwned);
        assert_eq!(decode(encode_leaf(&leaf, 3), 3), Descriptor::Leaf(leaf));
        let block = normal(0x4020_0000, Rights::ALL, PageState::Owned);
        assert_eq!(decode(encode_leaf(&block, 2), 2), Descriptor::Leaf(block));
        // A block encoding at level 3 is reserved: the walker faults.
        assert_eq!(decode(encode_leaf(&block, 2), 3), Descriptor::Invalid);
        assert_eq!(
            decode(0x4100_2003, 1),
            Descriptor::Table(PhysAddr(0x4100_2000))
        );
        assert_eq!(decode(0x4100_2002, 2), Descriptor::Invalid);
        // AF clear is not something we write.
        assert!(matches!(
            decode(0x4000_0000 | 0x3FF, 3),
            Descriptor::Malformed(_)
        ));
        // State bits 0 are not a state.
        assert!(matches!(
            decode(0x4000_0000 | 0x7FF, 3),
            Descriptor::Malformed(_)
        ));
    }

    #[test]
    fn lent_away_annotation_is_invalid_to_the_walker() {
        let raw = encode_lent_away(PhysAddr(0x4020_3000));
        assert_eq!(raw & 1, 0);
        assert_eq!(decode(raw, 3), Descriptor::Invalid);
        assert_eq!(decode_lent_away(raw, 3), Some(PhysAddr(0x4020_3000)));
        assert_eq!(decode_lent_away(raw, 2), None);
        assert_eq!(decode_lent_away(0, 3), None);
    }

    #[test]
    fn break_before_make_predicate() {
        let rw = encode_leaf(
            &normal(0x4000_0000, Rights::READ_WRITE, PageState::Owned),
            3,
        );
        let ro = encode_leaf(
            &normal(0x4000_0000, Rights::READ, PageState::SharedOwned),
            3,
        );
        let moved = encode_leaf(
            &normal(0x4000_1000, Rights::READ_WRITE, PageState::Owned),
            3,
        );
        assert!(is_bbm_safe(rw, ro));
        assert!(!is_bbm_safe(rw, moved));
        assert!(is_bbm_safe(0, moved));
        assert!(!is_bbm_safe(encode_table(PhysAddr(0x4000_0000)), rw));
    }
}
