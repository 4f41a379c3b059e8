//! From validated boot information to a system ready to run: the ownership core initialised
//! over the convertible range, the Microkit kernel state, every domain's stage 2, and the I1-I4
//! audit, all before any domain runs. Portable: the arch layer only finds the blob and the
//! heap, and host tests run the same path against the fake arch.

use core::fmt;

use frameshift_abi::boot_info::BootInfo;

use super::system::{BuildError, Kernel};
use super::vspace::{build_vspaces, VspaceError};
use crate::addr::{PhysAddr, PAGE_SIZE};
use crate::arch::Stage2Arch;
use crate::audit::{audit, AuditSummary, Violation};
use crate::engine::Engine;
use crate::error::Error;
use crate::table_pool::TablePool;

/// Why the system could not be built. Every variant means no domain ever runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BootError {
    /// The convertible range has more frames than the kernel's frame table holds.
    TooManyFrames {
        /// Frames the boot information asks for.
        frames: u64,
        /// Frames the frame table holds.
        capacity: usize,
    },
    /// The table pool, frame table or hypervisor range was refused by the core.
    Memory(Error),
    /// The domain, channel or interrupt tables are inconsistent.
    Kernel(BuildError),
    /// A domain's stage 2 could not be built.
    Vspace(VspaceError),
    /// The audit found the tables and the frame table in disagreement (a hypervisor bug), or
    /// could not run.
    Audit {
        /// Violations reported.
        violations: usize,
    },
}

impl fmt::Display for BootError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TooManyFrames { frames, capacity } => write!(
                f,
                "convertible range has {frames} frames, the frame table holds {capacity}"
            ),
            Self::Memory(error) => write!(f, "memory layout: {error}"),
            Self::Kernel(error) => write!(f, "{error}"),
            Self::Vspace(error) => write!(f, "{error}"),
            Self::Audit { violations } => write!(f, "boot audit: {violations} violations"),
        }
    }
}

/// Builds the system described by `info` into `kernel` and `engine`, both in place (they are
/// far too big for the hypervisor stack). Stage-2 tables come from the pool
/// `[pool_base, pool_base + pool_pages * 4 KiB)` (8 KiB aligned); `audit_scratch` needs one byte
/// per convertible frame; each audit violation is passed to `report`.
pub fn build_system<const FRAMES: usize, const BORROWERS: usize>(
    info: &BootInfo<'_>,
    kernel: &mut Kernel,
    engine: &mut Engine<FRAMES, BORROWERS>,
    arch: &mut impl Stage2Arch,
    pool: (PhysAddr, usize),
    audit_scratch: &mut [u8],
    report: &mut dyn FnMut(Violation),
) -> Result<AuditSummary, BootError> {
    // The domain, channel and interrupt tables first: they bound everything else.
    kernel
        .init(info.domains(), info.channels(), info.irqs())
        .map_err(BootError::Kernel)?;
    let header = info.header();
    let frames = header.convertible_size / PAGE_SIZE;
    if frames > FRAMES as u64 {
        return Err(BootError::TooManyFrames {
            frames,
            capacity: FRAMES,
        });
    }
    let hypervisor_end = header
        .hypervisor_base
        .saturating_add(header.hypervisor_size);
    let pool = TablePool::new(pool.0, pool.1).map_err(BootError::Memory)?;
    engine
        .init(pool, PhysAddr(header.convertible_base), frames as usize)
        .and_then(|()| engine.protect(PhysAddr(header.hypervisor_base), PhysAddr(hypervisor_end)))
        .map_err(BootError::Memory)?;
    build_vspaces(engine, arch, info.domains().len(), info.mappings())
        .map_err(BootError::Vspace)?;
    match audit(engine, arch, audit_scratch, report) {
        Some(summary) if summary.violations == 0 => Ok(summary),
        Some(summary) => Err(BootError::Audit {
            violations: summary.violations,
        }),
        None => Err(BootError::Audit { violations: 0 }),
    }
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    reason = "a test fails loudly on an unexpected error"
)]
mod tests {
    extern crate std;
    use std::boxed::Box;
    use std::vec;
    use std::vec::Vec;

    use frameshift_abi::boot_info::{
        encode, encoded_len, BootInfoHeader, ChannelDesc, DomainDesc, MappingDesc, Tables,
        CHANNEL_A_NOTIFIES_B, DOMAIN_KIND_PD, MAPPING_KIND_PROGRAM, MAPPING_KIND_STACK,
        MAPPING_STATE_OWNED, NAME_LEN, NONE, PD_STACK_TOP, RIGHT_EXECUTE, RIGHT_READ, RIGHT_WRITE,
    };
    use zerocopy::{FromZeros, IntoBytes};

    use super::*;
    use crate::addr::{DomainId, Ipa};
    use crate::arch::fake::FakeArch;
    use crate::descriptor::PageState;
    use crate::kernel::Decision;

    const FRAMES: usize = 64;
    const CONVERTIBLE: u64 = 0x4200_0000;
    const POOL: u64 = 0x4100_0000;
    const POOL_PAGES: usize = 64;

    fn domain(name: &str, priority: u8, first_mapping: u32) -> DomainDesc {
        let mut desc = DomainDesc::new_zeroed();
        desc.name[..name.len()].copy_from_slice(name.as_bytes());
        assert!(name.len() <= NAME_LEN);
        desc.kind = DOMAIN_KIND_PD;
        desc.priority = priority;
        desc.parent = NONE;
        desc.child_id = NONE;
        desc.first_mapping = first_mapping;
        desc.mapping_count = 2;
        desc.entry = 0x20_0000;
        desc.stack_top = PD_STACK_TOP;
        desc
    }

    fn mapping(domain: u32, ipa: u64, pa: u64, rights: u8, kind: u8) -> MappingDesc {
        MappingDesc {
            ipa,
            pa,
            size: PAGE_SIZE,
            domain,
            region: NONE,
            rights,
            cached: 1,
            kind,
            state: MAPPING_STATE_OWNED,
            page_shift: 12,
        }
    }

    /// A two-PD system encoded and sealed exactly as the image builder does.
    fn blob(frames: u64) -> Vec<u64> {
        let domains = [domain("first", 10, 0), domain("second", 20, 2)];
        let mappings = [
            mapping(
                0,
                0x20_0000,
                CONVERTIBLE,
                RIGHT_READ | RIGHT_EXECUTE,
                MAPPING_KIND_PROGRAM,
            ),
            mapping(
                0,
                PD_STACK_TOP - PAGE_SIZE,
                CONVERTIBLE + 0x1000,
                RIGHT_READ | RIGHT_WRITE,
                MAPPING_KIND_STACK,
            ),
            mapping(
                1,
                0x20_0000,
                CONVERTIBLE + 0x2000,
                RIGHT_READ | RIGHT_EXECUTE,
                MAPPING_KIND_PROGRAM,
            ),
            mapping(
                1,
                PD_STACK_TOP - PAGE_SIZE,
                CONVERTIBLE + 0x3000,
                RIGHT_READ | RIGHT_WRITE,
                MAPPING_KIND_STACK,
            ),
        ];
        let channels = [ChannelDesc {
            domain_a: 0,
            id_a: 1,
            domain_b: 1,
            id_b: 2,
            flags: CHANNEL_A_NOTIFIES_B,
            reserved0: 0,
        }];
        let tables = Tables {
            domains: &domains,
            mappings: &mappings,
            channels: &channels,
            irqs: &[],
        };
        let mut layout = BootInfoHeader::new_zeroed();
        layout.ram_base = 0x4000_0000;
        layout.ram_size = 0x2000_0000;
        layout.hypervisor_base = 0x4000_0000;
        layout.hypervisor_size = 0x200_0000;
        layout.convertible_base = CONVERTIBLE;
        layout.convertible_size = frames * PAGE_SIZE;
        // u64 words keep the buffer 8-byte aligned, as the parser requires.
        let mut words = vec![0u64; encoded_len(&tables).div_ceil(8)];
        encode(&layout, &tables, words.as_mut_bytes()).unwrap();
        words
    }

    /// What a boot attempt leaves: its result, the engine and the fake machine.
    type Booted = (
        Result<(Box<Kernel>, AuditSummary), BootError>,
        Box<Engine<FRAMES, 8>>,
        FakeArch,
    );

    fn boot(words: &[u64], pool_pages: usize) -> Booted {
        let info = BootInfo::parse(words.as_bytes()).unwrap();
        let mut engine = Box::new(Engine::<FRAMES, 8>::empty());
        let mut arch = FakeArch::new(
            PhysAddr(POOL),
            PhysAddr(POOL + POOL_PAGES as u64 * PAGE_SIZE),
        );
        let mut scratch = [0u8; FRAMES];
        let mut violations = Vec::new();
        let mut kernel = Box::new(Kernel::empty());
        let result = build_system(
            &info,
            &mut kernel,
            &mut engine,
            &mut arch,
            (PhysAddr(POOL), pool_pages),
            &mut scratch,
            &mut |violation| violations.push(violation),
        );
        assert!(violations.is_empty(), "{violations:?}");
        (result.map(|summary| (kernel, summary)), engine, arch)
    }

    #[test]
    fn a_valid_blob_builds_domains_tables_and_a_clean_audit() {
        let (result, engine, arch) = boot(&blob(FRAMES as u64), POOL_PAGES);
        let (mut kernel, summary) = result.unwrap();
        assert_eq!(summary.mapped_pages, 4);
        assert_eq!(kernel.domain_count(), 2);
        let state = |domain, ipa| {
            engine
                .page_state(&arch, DomainId(domain), Ipa(ipa))
                .unwrap()
        };
        assert_eq!(state(0, 0x20_0000), Some(PageState::Owned));
        assert_eq!(state(1, PD_STACK_TOP - PAGE_SIZE), Some(PageState::Owned));
        assert_eq!(state(0, 0x20_1000), None);
        // Priority 20 inits first.
        assert_eq!(
            kernel.start(0),
            Decision::Run(crate::kernel::DomainIndex(1))
        );
    }

    #[test]
    fn more_frames_than_the_frame_table_holds_are_refused() {
        let (result, _, _) = boot(&blob(FRAMES as u64 + 1), POOL_PAGES);
        assert_eq!(
            result.err(),
            Some(BootError::TooManyFrames {
                frames: FRAMES as u64 + 1,
                capacity: FRAMES
            })
        );
    }

    #[test]
    fn a_table_pool_too_small_for_every_domain_is_refused() {
        // One 8 KiB root fits; the second domain's does not.
        let (result, _, _) = boot(&blob(FRAMES as u64), 3);
        assert_eq!(
            result.err(),
            Some(BootError::Vspace(VspaceError::Domain {
                index: 1,
                error: Error::OutOfTableMemory
            }))
        );
    }
}
