//! Building each domain's stage-2 VSpace at boot from the validated boot information, with the
//! core's [`Stage2Table`] (prepare: reserve the table pages a mapping needs; commit: write it).

use core::fmt;

use frameshift_abi::boot_info::{
    MappingDesc, MAPPING_KIND_DEVICE, MAPPING_STATE_NO_PAGE, MAPPING_STATE_OWNED,
    MAPPING_STATE_SHARED_BORROWED, MAPPING_STATE_SHARED_OWNED, MAPPING_STATE_UNTRACKED,
};

use crate::addr::{Ipa, PhysAddr, Vmid, BLOCK_SIZE, PAGE_SIZE};
use crate::arch::Stage2Arch;
use crate::descriptor::{Leaf, MemoryType, PageState, Rights};
use crate::error::Error;
use crate::stage2::Stage2Table;
use crate::table_pool::TablePool;

/// Why a domain's VSpace could not be built.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VspaceError {
    /// Index of the mapping record (in the domain's own list), if one was at fault.
    pub mapping: Option<usize>,
    /// What went wrong.
    pub error: Error,
}

impl fmt::Display for VspaceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.mapping {
            Some(index) => write!(f, "mapping {index}: {}", self.error),
            None => write!(f, "{}", self.error),
        }
    }
}

/// The physical range no domain may map (I4): the hypervisor's reserved range.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HypervisorRange {
    /// First byte.
    pub base: PhysAddr,
    /// Size in bytes.
    pub size: u64,
}

impl HypervisorRange {
    fn overlaps(&self, pa: u64, size: u64) -> bool {
        let end = pa.saturating_add(size);
        pa < self.base.get().saturating_add(self.size) && self.base.get() < end
    }
}

/// The leaf a boot mapping asks for, or `None` for a window whose pages appear only when shared.
fn leaf_for(mapping: &MappingDesc) -> Result<Option<(Rights, MemoryType, PageState)>, Error> {
    let rights = Rights::from_bits(mapping.rights).ok_or(Error::InvalidRights)?;
    let memory = if mapping.kind == MAPPING_KIND_DEVICE {
        MemoryType::Device
    } else {
        MemoryType::Normal
    };
    let state = match mapping.state {
        MAPPING_STATE_OWNED => PageState::Owned,
        MAPPING_STATE_SHARED_OWNED => PageState::SharedOwned,
        MAPPING_STATE_SHARED_BORROWED => PageState::SharedBorrowed,
        MAPPING_STATE_UNTRACKED => PageState::Passthrough,
        MAPPING_STATE_NO_PAGE => return Ok(None),
        _ => return Err(Error::WrongState),
    };
    Ok(Some((rights, memory, state)))
}

/// Builds `vmid`'s stage-2 table holding `mappings`. Every table page comes from `pool`; a
/// mapping that would reach `hypervisor` memory is refused (I4). Nothing here trusts the
/// records beyond what [`frameshift_abi::boot_info::BootInfo::parse`] checked, and re-checks
/// what the table relies on.
pub fn build_stage2(
    arch: &mut impl Stage2Arch,
    pool: &mut TablePool,
    vmid: Vmid,
    mappings: &[MappingDesc],
    hypervisor: HypervisorRange,
) -> Result<Stage2Table, VspaceError> {
    let whole = |error| VspaceError {
        mapping: None,
        error,
    };
    let mut table = Stage2Table::new(arch, pool, vmid).map_err(whole)?;
    for (index, mapping) in mappings.iter().enumerate() {
        let at = |error| VspaceError {
            mapping: Some(index),
            error,
        };
        let Some((rights, memory, state)) = leaf_for(mapping).map_err(at)? else {
            continue;
        };
        if mapping.size == 0 || mapping.size % PAGE_SIZE != 0 {
            return Err(at(Error::InvalidRange));
        }
        if mapping.ipa % PAGE_SIZE != 0 || mapping.pa % PAGE_SIZE != 0 {
            return Err(at(Error::Misaligned));
        }
        if hypervisor.overlaps(mapping.pa, mapping.size) {
            return Err(at(Error::HypervisorMemory));
        }
        let ipa_end = Ipa(mapping.ipa)
            .checked_add(mapping.size)
            .ok_or(at(Error::InvalidRange))?;
        if !Ipa(ipa_end.get() - 1).is_in_ipa_space() {
            return Err(at(Error::IpaOutOfRange));
        }
        let pages = mapping.size / PAGE_SIZE;
        let needed = table.tables_needed(arch, Ipa(mapping.ipa), pages);
        let mut reservation = pool.reserve(needed).map_err(at)?;
        let blocks = mapping.page_shift == 21
            && mapping.ipa % BLOCK_SIZE == 0
            && mapping.pa % BLOCK_SIZE == 0
            && mapping.size % BLOCK_SIZE == 0;
        let step = if blocks { BLOCK_SIZE } else { PAGE_SIZE };
        let mut offset = 0;
        let mut result = Ok(());
        while offset < mapping.size && result.is_ok() {
            let leaf = Leaf {
                pa: PhysAddr(mapping.pa + offset),
                rights,
                memory,
                state,
            };
            let ipa = Ipa(mapping.ipa + offset);
            result = if blocks {
                table.set_block(arch, pool, &mut reservation, ipa, Some(leaf))
            } else {
                table.set_page(arch, pool, &mut reservation, ipa, Some(leaf))
            };
            offset += step;
        }
        pool.release(reservation);
        result.map_err(at)?;
    }
    Ok(table)
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    reason = "a test fails loudly on an unexpected error"
)]
mod tests {
    extern crate std;
    use super::*;
    use crate::fake_arch::FakeArch;
    use frameshift_abi::boot_info::{MAPPING_KIND_PROGRAM, NONE, RIGHT_READ, RIGHT_WRITE};

    const POOL: u64 = 0x4100_0000;
    const HYPERVISOR: HypervisorRange = HypervisorRange {
        base: PhysAddr(0x4000_0000),
        size: 0x200_0000,
    };

    fn mapping(ipa: u64, pa: u64, size: u64, rights: u8) -> MappingDesc {
        MappingDesc {
            ipa,
            pa,
            size,
            domain: 0,
            region: NONE,
            rights,
            cached: 1,
            kind: MAPPING_KIND_PROGRAM,
            state: MAPPING_STATE_OWNED,
            page_shift: 12,
        }
    }

    fn setup() -> (FakeArch, TablePool) {
        let arch = FakeArch::new(PhysAddr(POOL), PhysAddr(POOL + 64 * PAGE_SIZE));
        let pool = TablePool::new(PhysAddr(POOL), 64).unwrap();
        (arch, pool)
    }

    #[test]
    fn mappings_land_with_their_rights() {
        let (mut arch, mut pool) = setup();
        let mappings = [
            mapping(0x20_0000, 0x4200_0000, 0x2000, RIGHT_READ),
            mapping(
                0xFF_FFFF_E000,
                0x4200_2000,
                0x1000,
                RIGHT_READ | RIGHT_WRITE,
            ),
        ];
        let table = build_stage2(&mut arch, &mut pool, Vmid(1), &mappings, HYPERVISOR).unwrap();
        let leaf = table.lookup(&arch, Ipa(0x20_1000)).unwrap();
        assert_eq!(
            (leaf.pa, leaf.rights),
            (PhysAddr(0x4200_1000), Rights::READ)
        );
        let stack = table.lookup(&arch, Ipa(0xFF_FFFF_E000)).unwrap();
        assert_eq!(stack.rights, Rights::READ_WRITE);
        assert_eq!(table.lookup(&arch, Ipa(0x20_2000)), None);
        assert_eq!(table.vttbr() >> 48, 1);
        assert!(arch.take_violations().is_empty());
    }

    #[test]
    fn hypervisor_memory_is_never_mapped() {
        let (mut arch, mut pool) = setup();
        let mappings = [mapping(0x20_0000, 0x41FF_F000, 0x2000, RIGHT_READ)];
        let error = build_stage2(&mut arch, &mut pool, Vmid(1), &mappings, HYPERVISOR).unwrap_err();
        assert_eq!(
            error,
            VspaceError {
                mapping: Some(0),
                error: Error::HypervisorMemory
            }
        );
    }

    #[test]
    fn windows_start_empty_and_bad_records_are_refused() {
        let (mut arch, mut pool) = setup();
        let mut window = mapping(0x20_0000, 0x4200_0000, 0x1000, RIGHT_READ);
        window.state = MAPPING_STATE_NO_PAGE;
        let table = build_stage2(&mut arch, &mut pool, Vmid(2), &[window], HYPERVISOR).unwrap();
        assert_eq!(table.lookup(&arch, Ipa(0x20_0000)), None);
        let odd = mapping(0x20_0000, 0x4200_0000, 0x1800, RIGHT_READ);
        assert_eq!(
            build_stage2(&mut arch, &mut pool, Vmid(3), &[odd], HYPERVISOR)
                .unwrap_err()
                .error,
            Error::InvalidRange
        );
        let mut rights = mapping(0x20_0000, 0x4200_0000, 0x1000, 0);
        rights.rights = 0x80;
        assert_eq!(
            build_stage2(&mut arch, &mut pool, Vmid(4), &[rights], HYPERVISOR)
                .unwrap_err()
                .error,
            Error::InvalidRights
        );
    }

    #[test]
    fn large_pages_use_blocks() {
        let (mut arch, mut pool) = setup();
        let mut big = mapping(
            0x4000_0000,
            0x4400_0000,
            0x40_0000,
            RIGHT_READ | RIGHT_WRITE,
        );
        big.page_shift = 21;
        let table = build_stage2(&mut arch, &mut pool, Vmid(5), &[big], HYPERVISOR).unwrap();
        assert_eq!(table.leaf_level(&arch, Ipa(0x4020_1000)), Some(2));
        assert_eq!(
            table.lookup(&arch, Ipa(0x4020_1000)).unwrap().pa,
            PhysAddr(0x4420_1000)
        );
    }
}
