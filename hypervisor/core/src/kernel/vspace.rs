//! Building every domain's stage-2 VSpace at boot from the validated boot information, through
//! the core's conversion [`Engine`] (so the frame table and the descriptors agree from the first
//! instruction, I3).
//!
//! Mapping order: exclusive and owning mappings first, borrowed ones second, so a Microkit
//! memory region mapped into several PDs is owned by the PD the image builder named owner
//! (`MAPPING_STATE_SHARED_OWNED`) whatever the domain order.

use core::fmt;

use frameshift_abi::boot_info::{
    MappingDesc, MAPPING_KIND_DEVICE, MAPPING_STATE_NO_PAGE, MAPPING_STATE_OWNED,
    MAPPING_STATE_SHARED_BORROWED, MAPPING_STATE_SHARED_OWNED, MAPPING_STATE_UNTRACKED,
};

use crate::addr::{DomainId, Ipa, PhysAddr, Vmid, PAGE_SIZE};
use crate::arch::Stage2Arch;
use crate::descriptor::{MemoryType, Rights};
use crate::engine::{BootMapping, BootSharing, Engine};
use crate::error::Error;

/// Why the VSpaces could not be built.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VspaceError {
    /// Creating domain `index` failed.
    Domain {
        /// Domain index.
        index: usize,
        /// The core's refusal.
        error: Error,
    },
    /// Mapping record `index` (in the boot-info mapping table) was refused.
    Mapping {
        /// Mapping index.
        index: usize,
        /// The core's refusal.
        error: Error,
    },
}

impl fmt::Display for VspaceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Domain { index, error } => write!(f, "domain {index}: stage 2: {error}"),
            Self::Mapping { index, error } => write!(f, "mapping {index}: {error}"),
        }
    }
}

/// The core's view of one boot mapping, or `None` for a window (empty until the guest shares).
fn boot_mapping(mapping: &MappingDesc) -> Result<Option<BootMapping>, Error> {
    let rights = Rights::from_bits(mapping.rights).ok_or(Error::InvalidRights)?;
    let memory = if mapping.kind == MAPPING_KIND_DEVICE {
        MemoryType::Device
    } else {
        MemoryType::Normal
    };
    let sharing = match mapping.state {
        MAPPING_STATE_OWNED => BootSharing::Private,
        MAPPING_STATE_SHARED_OWNED | MAPPING_STATE_SHARED_BORROWED | MAPPING_STATE_UNTRACKED => {
            BootSharing::Shareable
        }
        MAPPING_STATE_NO_PAGE => return Ok(None),
        _ => return Err(Error::WrongState),
    };
    if mapping.size == 0 || !mapping.size.is_multiple_of(PAGE_SIZE) {
        return Err(Error::InvalidRange);
    }
    let domain = u8::try_from(mapping.domain).map_err(|_| Error::NoSuchDomain)?;
    Ok(Some(BootMapping {
        domain: DomainId(domain),
        ipa: Ipa(mapping.ipa),
        pa: PhysAddr(mapping.pa),
        pages: mapping.size / PAGE_SIZE,
        rights,
        memory,
        sharing,
    }))
}

/// Creates `domain_count` domains (domain `i` gets VMID `i + 1`; VMID 0 stays unused) and maps
/// every boot mapping. The engine must be initialised and the hypervisor's memory protected.
pub fn build_vspaces<const FRAMES: usize, const BORROWERS: usize>(
    engine: &mut Engine<FRAMES, BORROWERS>,
    arch: &mut impl Stage2Arch,
    domain_count: usize,
    mappings: &[MappingDesc],
) -> Result<(), VspaceError> {
    for index in 0..domain_count {
        let error = |error| VspaceError::Domain { index, error };
        let id = u8::try_from(index).map_err(|_| error(Error::NoSuchDomain))?;
        engine
            .create_domain(arch, DomainId(id), Vmid(u16::from(id) + 1))
            .map_err(error)?;
    }
    for borrowed_pass in [false, true] {
        for (index, record) in mappings.iter().enumerate() {
            if (record.state == MAPPING_STATE_SHARED_BORROWED) != borrowed_pass {
                continue;
            }
            let error = |error| VspaceError::Mapping { index, error };
            if let Some(mapping) = boot_mapping(record).map_err(error)? {
                engine.map_at_boot(arch, &mapping).map_err(error)?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    reason = "a test fails loudly on an unexpected error"
)]
mod tests {
    extern crate std;
    use std::boxed::Box;

    use super::*;
    use crate::arch::fake::FakeArch;
    use crate::descriptor::PageState;
    use crate::table_pool::TablePool;
    use frameshift_abi::boot_info::{MAPPING_KIND_PROGRAM, NONE, RIGHT_READ, RIGHT_WRITE};

    const POOL: u64 = 0x4100_0000;
    const FRAMES_BASE: u64 = 0x4200_0000;
    type TestEngine = Engine<64, 8>;

    fn mapping(domain: u32, ipa: u64, pa: u64, pages: u64, rights: u8, state: u8) -> MappingDesc {
        MappingDesc {
            ipa,
            pa,
            size: pages * PAGE_SIZE,
            domain,
            region: NONE,
            rights,
            cached: 1,
            kind: MAPPING_KIND_PROGRAM,
            state,
            page_shift: 12,
        }
    }

    fn setup() -> (Box<TestEngine>, FakeArch) {
        let arch = FakeArch::new(PhysAddr(POOL), PhysAddr(POOL + 64 * PAGE_SIZE));
        let mut engine = Box::new(TestEngine::empty());
        engine
            .init(
                TablePool::new(PhysAddr(POOL), 64).unwrap(),
                PhysAddr(FRAMES_BASE),
                64,
            )
            .unwrap();
        engine
            .protect(PhysAddr(0x4000_0000), PhysAddr(0x4200_0000))
            .unwrap();
        (engine, arch)
    }

    #[test]
    fn program_stack_and_shared_region_map_with_their_states() {
        let (mut engine, mut arch) = setup();
        let rw = RIGHT_READ | RIGHT_WRITE;
        let mappings = [
            // Domain 0 borrows the region domain 1 owns: listed first, mapped second.
            mapping(
                0,
                0x1000_0000,
                FRAMES_BASE + 0x8000,
                1,
                rw,
                MAPPING_STATE_SHARED_BORROWED,
            ),
            mapping(
                0,
                0x20_0000,
                FRAMES_BASE,
                2,
                RIGHT_READ,
                MAPPING_STATE_OWNED,
            ),
            mapping(
                1,
                0x1000_0000,
                FRAMES_BASE + 0x8000,
                1,
                rw,
                MAPPING_STATE_SHARED_OWNED,
            ),
            mapping(
                1,
                0x20_0000,
                FRAMES_BASE + 0x2000,
                1,
                RIGHT_READ,
                MAPPING_STATE_OWNED,
            ),
        ];
        build_vspaces(&mut engine, &mut arch, 2, &mappings).unwrap();
        let state = |domain, ipa| {
            engine
                .page_state(&arch, DomainId(domain), Ipa(ipa))
                .unwrap()
        };
        assert_eq!(state(0, 0x20_1000), Some(PageState::Owned));
        assert_eq!(state(0, 0x20_2000), None);
        assert_eq!(state(1, 0x1000_0000), Some(PageState::SharedOwned));
        assert_eq!(state(0, 0x1000_0000), Some(PageState::SharedBorrowed));
        assert_eq!(engine.vttbr(DomainId(1)).unwrap() >> 48, 2);
    }

    #[test]
    fn hypervisor_memory_and_double_owners_are_refused() {
        let (mut engine, mut arch) = setup();
        let into_hypervisor = [mapping(
            0,
            0x20_0000,
            0x4010_0000,
            1,
            RIGHT_READ,
            MAPPING_STATE_OWNED,
        )];
        assert_eq!(
            build_vspaces(&mut engine, &mut arch, 1, &into_hypervisor),
            Err(VspaceError::Mapping {
                index: 0,
                error: Error::HypervisorMemory
            })
        );
        let (mut engine, mut arch) = setup();
        let twice = [
            mapping(
                0,
                0x20_0000,
                FRAMES_BASE,
                1,
                RIGHT_READ,
                MAPPING_STATE_OWNED,
            ),
            mapping(
                1,
                0x20_0000,
                FRAMES_BASE,
                1,
                RIGHT_READ,
                MAPPING_STATE_OWNED,
            ),
        ];
        assert_eq!(
            build_vspaces(&mut engine, &mut arch, 2, &twice),
            Err(VspaceError::Mapping {
                index: 1,
                error: Error::WrongState
            })
        );
    }

    #[test]
    fn windows_start_empty_and_malformed_records_are_refused() {
        let (mut engine, mut arch) = setup();
        let window = mapping(
            0,
            0x20_0000,
            FRAMES_BASE,
            1,
            RIGHT_READ,
            MAPPING_STATE_NO_PAGE,
        );
        build_vspaces(&mut engine, &mut arch, 1, &[window]).unwrap();
        assert_eq!(
            engine
                .page_state(&arch, DomainId(0), Ipa(0x20_0000))
                .unwrap(),
            None
        );
        let (mut engine, mut arch) = setup();
        let mut odd = mapping(
            0,
            0x20_0000,
            FRAMES_BASE,
            1,
            RIGHT_READ,
            MAPPING_STATE_OWNED,
        );
        odd.size = 0x1800;
        assert_eq!(
            build_vspaces(&mut engine, &mut arch, 1, &[odd]),
            Err(VspaceError::Mapping {
                index: 0,
                error: Error::InvalidRange
            })
        );
        let mut rights = mapping(0, 0x20_0000, FRAMES_BASE, 1, 0x80, MAPPING_STATE_OWNED);
        rights.rights = 0x80;
        let (mut engine, mut arch) = setup();
        assert_eq!(
            build_vspaces(&mut engine, &mut arch, 1, &[rights]),
            Err(VspaceError::Mapping {
                index: 0,
                error: Error::InvalidRights
            })
        );
    }
}
