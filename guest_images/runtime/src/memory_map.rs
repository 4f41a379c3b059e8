//! A guest's stage 1: what it maps, with which attributes, and the tables that say so.
//!
//! Everything is identity mapped (VA = IPA), so an address a guest names in a hypercall is the
//! address it uses. The tables are built at boot by aarch64-paging's `Mapping` for the EL1&0
//! regime, with a [`TablePool`] of pages from the image's `.bss` as allocator.
//!
//! | range | attributes |
//! | --- | --- |
//! | image `.text` | Normal WB, read-only, executable at EL1 |
//! | image `.rodata` | Normal WB, read-only, execute never |
//! | the rest of RAM (`.data`, `.bss`, stacks, free pages) | Normal WB, read-write, execute never |
//! | split mode: the shared alias of all of RAM (`IPA \| 1 << 39`) | Normal WB, read-write, execute never |
//! | each device page (UART, the program's own) | Device-nGnRE, read-write, execute never |
//!
//! The VA space is 40 bits (`TCR_EL1.T0SZ` = 24), the size of the IPA space, so the alias half
//! starting at bit 39 is reachable; with the 4 KiB granule that makes level 0 the root (Arm ARM
//! D8.2.7: T0SZ 16 to 24 start at level 0). Both views of a shared page use the same memory
//! type, so no mismatched-attribute alias arises.

use aarch64_paging::descriptor::{El1Attributes, PhysicalAddress};
use aarch64_paging::mair::{Mair, MairAttribute, NormalMemory};
use aarch64_paging::paging::{Constraints, El1And0, MemoryRegion, PageTable, Translation, VaRange};
use aarch64_paging::{MapError, Mapping};
use core::ptr::NonNull;
use frameshift_abi::addr::{Ipa, PAGE_SIZE, SHARED_ALIAS_BIT};

/// `TCR_EL1.T0SZ`: a 40-bit VA space, as wide as the IPA space.
pub const T0SZ: u64 = 24;
/// The translation root level for [`T0SZ`] with 4 KiB pages.
pub const ROOT_LEVEL: usize = 0;

/// `MAIR_EL1` index of Device-nGnRE memory.
pub const MAIR_INDEX_DEVICE: u8 = 0;
/// `MAIR_EL1` index of Normal memory, write-back read/write-allocate inner and outer.
pub const MAIR_INDEX_NORMAL: u8 = 1;
/// `MAIR_EL1` for the two attributes above.
pub const MAIR: Mair = Mair::EMPTY
    .with_attribute(MAIR_INDEX_DEVICE, MairAttribute::DEVICE_NGNRE)
    .with_attribute(
        MAIR_INDEX_NORMAL,
        MairAttribute::normal(
            NormalMemory::WriteBackNonTransientReadWriteAllocate,
            NormalMemory::WriteBackNonTransientReadWriteAllocate,
        ),
    );

/// What a mapped range holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RangeKind {
    /// Code: read-only, executable at EL1.
    Code,
    /// Read-only data.
    ReadOnly,
    /// Read-write data.
    ReadWrite,
    /// Device registers.
    Device,
}

impl RangeKind {
    /// The leaf descriptor attributes for this kind. EL0 never gets access (no `USER`) and
    /// never executes (`UXN`); only code is executable at EL1.
    pub fn attributes(self) -> El1Attributes {
        let normal = El1Attributes::VALID
            | El1Attributes::ACCESSED
            | El1Attributes::INNER_SHAREABLE
            | El1Attributes::ATTRIBUTE_INDEX_1
            | El1Attributes::UXN;
        match self {
            Self::Code => normal | El1Attributes::READ_ONLY,
            Self::ReadOnly => normal | El1Attributes::READ_ONLY | El1Attributes::PXN,
            Self::ReadWrite => normal | El1Attributes::PXN,
            Self::Device => {
                El1Attributes::VALID
                    | El1Attributes::ACCESSED
                    | El1Attributes::ATTRIBUTE_INDEX_0
                    | El1Attributes::UXN
                    | El1Attributes::PXN
            }
        }
    }
}

/// Where the linker put the image (all page aligned; see link.ld).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ImageLayout {
    /// The image's first byte (the link base).
    pub start: u64,
    /// End of `.text`.
    pub text_end: u64,
    /// End of `.rodata`.
    pub rodata_end: u64,
    /// End of `.bss`, stacks included.
    pub end: u64,
}

/// The guest's RAM: `pages` 4 KiB pages from `base`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GuestRam {
    /// The first IPA.
    pub base: Ipa,
    /// Its size in pages.
    pub pages: u64,
}

impl GuestRam {
    /// One past the last byte.
    pub const fn end(&self) -> Ipa {
        Ipa(self.base.0 + self.pages * PAGE_SIZE)
    }

    /// Whether `ipa` lies in the RAM.
    pub const fn contains(&self, ipa: Ipa) -> bool {
        ipa.0 >= self.base.0 && ipa.0 < self.end().0
    }
}

/// One identity-mapped range.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MappedRange {
    /// First address.
    pub start: u64,
    /// One past the last.
    pub end: u64,
    /// What it holds.
    pub kind: RangeKind,
}

/// Most ranges a plan holds: four for RAM and its alias, plus devices.
pub const MAX_RANGES: usize = 12;

/// Why a stage-1 plan cannot be made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PlanError {
    /// The image does not lie in the RAM, in order.
    ImageOutsideRam,
    /// A device page is unaligned, inside the RAM, or there are too many.
    BadDevice(Ipa),
}

/// What boot maps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemoryPlan {
    ranges: [Option<MappedRange>; MAX_RANGES],
}

impl MemoryPlan {
    /// The plan for an image in `ram`, the alias half too if `split`, and one device page at each
    /// of `devices`.
    pub fn new(
        image: &ImageLayout,
        ram: &GuestRam,
        split: bool,
        devices: &[Ipa],
    ) -> Result<Self, PlanError> {
        let ram_end = ram.end().get();
        let ordered = ram.base.get() == image.start
            && image.start <= image.text_end
            && image.text_end <= image.rodata_end
            && image.rodata_end <= image.end
            && image.end <= ram_end;
        if !ordered {
            return Err(PlanError::ImageOutsideRam);
        }
        let mut ranges = [None; MAX_RANGES];
        let mut next = ranges.iter_mut();
        let mut push = |range: MappedRange| next.next().map(|slot| *slot = Some(range)).is_some();
        push(MappedRange {
            start: image.start,
            end: image.text_end,
            kind: RangeKind::Code,
        });
        push(MappedRange {
            start: image.text_end,
            end: image.rodata_end,
            kind: RangeKind::ReadOnly,
        });
        push(MappedRange {
            start: image.rodata_end,
            end: ram_end,
            kind: RangeKind::ReadWrite,
        });
        if split {
            push(MappedRange {
                start: ram.base.get() | SHARED_ALIAS_BIT,
                end: ram_end | SHARED_ALIAS_BIT,
                kind: RangeKind::ReadWrite,
            });
        }
        for device in devices {
            let inside_ram = ram.contains(*device) || ram.contains(device.private_ipa());
            if !device.is_page_aligned() || inside_ram || !device.is_in_ipa_space() {
                return Err(PlanError::BadDevice(*device));
            }
            let range = MappedRange {
                start: device.get(),
                end: device.get() + PAGE_SIZE,
                kind: RangeKind::Device,
            };
            if !push(range) {
                return Err(PlanError::BadDevice(*device));
            }
        }
        Ok(Self { ranges })
    }

    /// The ranges, in the order they are mapped.
    pub fn ranges(&self) -> impl Iterator<Item = &MappedRange> {
        self.ranges
            .iter()
            .flatten()
            .filter(|range| range.start < range.end)
    }
}

/// One 4 KiB, 4 KiB-aligned page of table memory.
#[derive(Debug)]
#[repr(C, align(4096))]
pub struct TablePage(pub [u8; PAGE_SIZE as usize]);

/// The table allocator: hands out zeroed pages from a fixed pool and never takes them back (a
/// guest maps once, at boot).
#[derive(Debug)]
pub struct TablePool {
    pages: NonNull<TablePage>,
    capacity: usize,
    used: usize,
}

impl TablePool {
    /// A pool of the `capacity` pages at `pages`.
    ///
    /// # Safety
    ///
    /// The pages must be zeroed, used by nothing else for as long as the tables live, and
    /// identity mapped once the MMU is on (the tables' addresses are their physical ones).
    pub unsafe fn new(pages: NonNull<TablePage>, capacity: usize) -> Self {
        Self {
            pages,
            capacity,
            used: 0,
        }
    }

    /// Pages handed out so far.
    pub fn used(&self) -> usize {
        self.used
    }
}

impl Translation<El1Attributes> for TablePool {
    fn allocate_table(&mut self) -> (NonNull<PageTable<El1Attributes>>, PhysicalAddress) {
        if self.used >= self.capacity {
            panic!("stage-1 table pool of {} pages exhausted", self.capacity);
        }
        // SAFETY: `used < capacity`, so the page lies in the pool `new`'s contract gave us.
        let page = unsafe { self.pages.add(self.used) };
        self.used += 1;
        (page.cast(), PhysicalAddress(page.as_ptr() as usize))
    }

    unsafe fn deallocate_table(&mut self, _page_table: NonNull<PageTable<El1Attributes>>) {
        // Nothing is ever unmapped; a page given back would only be leaked.
    }

    fn physical_to_virtual(&self, pa: PhysicalAddress) -> NonNull<PageTable<El1Attributes>> {
        // Identity mapping: a table's physical address is its address.
        NonNull::new(pa.0 as *mut PageTable<El1Attributes>).unwrap_or(NonNull::dangling())
    }
}

/// The stage-1 tables of `plan`, not yet active.
pub fn build(plan: &MemoryPlan, pool: TablePool) -> Result<Mapping<TablePool, El1And0>, MapError> {
    let mut mapping = Mapping::with_asid_and_va_range(pool, 0, ROOT_LEVEL, El1And0, VaRange::Lower);
    for range in plan.ranges() {
        let region = MemoryRegion::new(range.start as usize, range.end as usize);
        mapping.map_range(
            &region,
            PhysicalAddress(range.start as usize),
            range.kind.attributes(),
            Constraints::empty(),
        )?;
    }
    Ok(mapping)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::vec::Vec;

    const IMAGE: ImageLayout = ImageLayout {
        start: 0x4000_0000,
        text_end: 0x4000_3000,
        rodata_end: 0x4000_5000,
        end: 0x4003_0000,
    };
    const RAM: GuestRam = GuestRam {
        base: Ipa(0x4000_0000),
        pages: 512,
    };
    const UART: Ipa = Ipa(0x0900_0000);
    const DOORBELL: Ipa = Ipa(0x0a00_0000);

    fn kinds(plan: &MemoryPlan) -> Vec<(u64, u64, RangeKind)> {
        plan.ranges()
            .map(|range| (range.start, range.end, range.kind))
            .collect()
    }

    #[test]
    fn history_plan_maps_image_ram_and_devices() {
        let plan = MemoryPlan::new(&IMAGE, &RAM, false, &[UART, DOORBELL]);
        assert_eq!(
            plan.as_ref().map(kinds),
            Ok(std::vec![
                (0x4000_0000, 0x4000_3000, RangeKind::Code),
                (0x4000_3000, 0x4000_5000, RangeKind::ReadOnly),
                (0x4000_5000, 0x4020_0000, RangeKind::ReadWrite),
                (0x0900_0000, 0x0900_1000, RangeKind::Device),
                (0x0a00_0000, 0x0a00_1000, RangeKind::Device),
            ])
        );
    }

    #[test]
    fn split_plan_adds_the_alias_of_all_of_ram() {
        let plan = MemoryPlan::new(&IMAGE, &RAM, true, &[UART]);
        let ranges = plan.as_ref().map(kinds).unwrap_or_default();
        assert!(ranges.contains(&(0x80_4000_0000, 0x80_4020_0000, RangeKind::ReadWrite)));
        assert_eq!(ranges.len(), 5);
    }

    #[test]
    fn bad_layouts_and_devices_are_refused() {
        let outside = ImageLayout {
            end: 0x4030_0000,
            ..IMAGE
        };
        assert_eq!(
            MemoryPlan::new(&outside, &RAM, false, &[]),
            Err(PlanError::ImageOutsideRam)
        );
        for device in [
            Ipa(0x0900_0004),
            Ipa(0x4001_0000),
            Ipa(0x80_4001_0000),
            Ipa(1 << 40),
        ] {
            assert_eq!(
                MemoryPlan::new(&IMAGE, &RAM, true, &[device]),
                Err(PlanError::BadDevice(device))
            );
        }
        let many = [UART; MAX_RANGES];
        assert!(MemoryPlan::new(&IMAGE, &RAM, true, &many).is_err());
    }

    #[test]
    fn attributes_follow_the_table() {
        let code = RangeKind::Code.attributes();
        assert!(code.contains(El1Attributes::READ_ONLY | El1Attributes::UXN));
        assert!(!code.contains(El1Attributes::PXN));
        assert!(RangeKind::ReadOnly
            .attributes()
            .contains(El1Attributes::PXN));
        let data = RangeKind::ReadWrite.attributes();
        assert!(!data.contains(El1Attributes::READ_ONLY));
        let device = RangeKind::Device.attributes();
        assert_eq!(
            device & El1Attributes::ATTRIBUTE_INDEX_7,
            El1Attributes::ATTRIBUTE_INDEX_0
        );
        assert_eq!(
            data & El1Attributes::ATTRIBUTE_INDEX_7,
            El1Attributes::ATTRIBUTE_INDEX_1
        );
        assert_eq!(MAIR.0, 0xFF04);
    }

    /// Builds the split plan's tables in host memory and walks them: every address is mapped to
    /// itself with its range's attributes, and nothing else is mapped.
    #[test]
    fn tables_map_each_range_to_itself() {
        let mut pages: Vec<TablePage> = (0..24).map(|_| TablePage([0; 4096])).collect();
        let pointer = NonNull::new(pages.as_mut_ptr()).unwrap_or(NonNull::dangling());
        // SAFETY: `pages` is zeroed, lives until the end of the test and is used only here;
        // host addresses are "physical" to the identity translation.
        let pool = unsafe { TablePool::new(pointer, pages.len()) };
        let plan = MemoryPlan::new(&IMAGE, &RAM, true, &[UART, DOORBELL]);
        let Ok(plan) = plan else {
            panic!("plan refused")
        };
        let Ok(mapping) = build(&plan, pool) else {
            panic!("tables refused")
        };
        assert!(
            mapping.translation().used() <= 12,
            "{}",
            mapping.translation().used()
        );
        let lookup = |address: usize| {
            let mut found = None;
            let region = MemoryRegion::new(address, address + 1);
            let _ = mapping.walk_range(&region, &mut |_range, descriptor, level| {
                if descriptor.is_valid() {
                    // The output address is the block's or page's base.
                    let granule = 4096usize << (9 * (3 - level));
                    let offset = address & (granule - 1);
                    found = Some((descriptor.output_address().0 + offset, descriptor.flags()));
                }
                Ok(())
            });
            found
        };
        for range in plan.ranges() {
            for address in [range.start, range.end - 8] {
                let Some((output, flags)) = lookup(address as usize) else {
                    panic!("{address:#x} not mapped");
                };
                assert_eq!(output, address as usize);
                let wanted = range.kind.attributes() - El1Attributes::TABLE_OR_PAGE;
                assert_eq!(flags - El1Attributes::TABLE_OR_PAGE, wanted, "{address:#x}");
            }
        }
        for unmapped in [
            0x0900_1000,
            0x4020_0000,
            0x80_4020_0000,
            0x80_0000_0000,
            0x1000,
        ] {
            assert_eq!(lookup(unmapped), None, "{unmapped:#x}");
        }
    }
}
