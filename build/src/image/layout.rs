//! The physical memory layout of QEMU `virt` that the image is built for, and the allocator that
//! hands out domain memory from the convertible range.
//!
//! ```text
//! 0x4000_0000 +------------------------+  RAM base; hypervisor reserved range starts
//!             | free for QEMU's DTB    |  1 MiB
//! 0x4010_0000 +------------------------+
//!             | hypervisor ELF         |  PT_LOAD segments, linked here
//!             | boot info (4 KiB al.)  |  right after the last segment
//!             | hypervisor heap        |  stage-2 tables, frame table, stacks
//! 0x4200_0000 +------------------------+  convertible range starts
//!             | domain memory          |  regions, then per PD program + stack,
//!             |                        |  allocated in document order
//!    RAM end  +------------------------+
//! ```

use super::address::{align_up, ranges_overlap, PhysAddr};
use super::error::ImageError;

// The layout constants are the ABI crate's, which the hypervisor shares.
pub use frameshift_abi::layout::{
    CONVERTIBLE_BASE, DEFAULT_RAM_SIZE, HYPERVISOR_BASE, HYPERVISOR_LOAD_BASE, HYPERVISOR_SIZE,
    RAM_BASE,
};
/// The layout for one RAM size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemoryLayout {
    /// RAM size in bytes.
    pub ram_size: u64,
}

impl MemoryLayout {
    /// Checks `ram_size`: a multiple of 2 MiB that leaves some convertible memory.
    pub fn new(ram_size: u64) -> Result<Self, ImageError> {
        let valid = ram_size.is_multiple_of(2 << 20)
            && ram_size > HYPERVISOR_SIZE
            && RAM_BASE.0.checked_add(ram_size).is_some();
        if !valid {
            return Err(ImageError::InvalidRamSize { ram_size });
        }
        Ok(Self { ram_size })
    }

    /// One past the last RAM byte.
    pub fn ram_end(&self) -> PhysAddr {
        PhysAddr(RAM_BASE.0 + self.ram_size)
    }

    /// Size of the convertible range.
    pub fn convertible_size(&self) -> u64 {
        self.ram_end().0 - CONVERTIBLE_BASE.0
    }

    /// `[pa, pa + size)` lies entirely outside RAM.
    pub fn outside_ram(&self, pa: PhysAddr, size: u64) -> bool {
        !ranges_overlap(pa.0, size, RAM_BASE.0, self.ram_size)
    }

    /// `[pa, pa + size)` lies inside the convertible range.
    pub fn in_convertible(&self, pa: PhysAddr, size: u64) -> bool {
        pa >= CONVERTIBLE_BASE && pa.0.saturating_add(size) <= self.ram_end().0
    }
}

/// One block the allocator handed out (or that was placed by `phys_addr`), for the report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Allocation {
    /// First byte.
    pub pa: PhysAddr,
    /// Size in bytes.
    pub size: u64,
    /// What it holds.
    pub label: String,
}

/// A bump allocator over the convertible range that steps over fixed (`phys_addr`) blocks.
/// Deterministic: the same requests in the same order give the same addresses.
#[derive(Debug)]
pub(crate) struct PhysicalAllocator {
    cursor: u64,
    end: u64,
    /// Disjoint (the planner refuses overlapping `phys_addr` regions), sorted by address, so
    /// the block in the way of a candidate is found by binary search.
    fixed: Vec<Allocation>,
    allocations: Vec<Allocation>,
}

impl PhysicalAllocator {
    pub(crate) fn new(layout: &MemoryLayout, mut fixed: Vec<Allocation>) -> Self {
        fixed.sort_by_key(|block| block.pa);
        Self {
            cursor: CONVERTIBLE_BASE.0,
            end: layout.ram_end().0,
            fixed,
            allocations: Vec::new(),
        }
    }

    /// `size` bytes aligned to `align`, labelled `label` (named in the error when RAM runs out).
    pub(crate) fn allocate(
        &mut self,
        size: u64,
        align: u64,
        label: String,
    ) -> Result<PhysAddr, ImageError> {
        let mut candidate = align_up(self.cursor, align);
        while let Some(start) = candidate {
            let Some(end) = start.checked_add(size) else {
                break;
            };
            if end > self.end {
                break;
            }
            // Step over any fixed block in the way and try again just after it. The first block
            // ending after `start` is the only one that can be in the way first.
            let first_after = self
                .fixed
                .partition_point(|block| block.pa.0.saturating_add(block.size) <= start);
            match self
                .fixed
                .get(first_after)
                .filter(|block| ranges_overlap(start, size, block.pa.0, block.size))
            {
                Some(block) => candidate = align_up(block.pa.0 + block.size, align),
                None => {
                    self.cursor = end;
                    self.allocations.push(Allocation {
                        pa: PhysAddr(start),
                        size,
                        label,
                    });
                    return Ok(PhysAddr(start));
                }
            }
        }
        Err(ImageError::OutOfMemory {
            what: label,
            size,
            align,
            free: self.end.saturating_sub(self.cursor),
        })
    }

    /// Every block, fixed and allocated, by address.
    pub(crate) fn blocks(&self) -> Vec<Allocation> {
        let mut blocks: Vec<Allocation> = self
            .fixed
            .iter()
            .chain(self.allocations.iter())
            .cloned()
            .collect();
        blocks.sort_by_key(|block| block.pa);
        blocks
    }

    /// Bytes of the convertible range in use.
    pub(crate) fn used(&self) -> u64 {
        self.fixed
            .iter()
            .chain(self.allocations.iter())
            .map(|block| block.size)
            .sum()
    }
}

#[cfg(test)]
#[allow(
    clippy::expect_used,
    reason = "a test fails loudly on the first unexpected result"
)]
mod tests {
    use super::*;

    fn block(pa: u64, size: u64) -> Allocation {
        Allocation {
            pa: PhysAddr(pa),
            size,
            label: "fixed".to_string(),
        }
    }

    #[test]
    fn allocation_is_aligned_sequential_and_deterministic() {
        let layout = MemoryLayout::new(DEFAULT_RAM_SIZE).expect("valid size");
        let run = || {
            let mut allocator = PhysicalAllocator::new(&layout, Vec::new());
            let a = allocator
                .allocate(0x1000, 0x1000, "a".into())
                .expect("room");
            let b = allocator
                .allocate(0x20_0000, 0x20_0000, "b".into())
                .expect("room");
            let c = allocator
                .allocate(0x3000, 0x1000, "c".into())
                .expect("room");
            (a, b, c, allocator.used())
        };
        let (a, b, c, used) = run();
        assert_eq!(
            (a, b, c),
            (
                CONVERTIBLE_BASE,
                PhysAddr(0x4220_0000),
                PhysAddr(0x4240_0000)
            )
        );
        assert_eq!(used, 0x1000 + 0x20_0000 + 0x3000);
        assert_eq!(run(), (a, b, c, used));
    }

    #[test]
    fn allocation_steps_over_fixed_blocks() {
        let layout = MemoryLayout::new(DEFAULT_RAM_SIZE).expect("valid size");
        let fixed = vec![block(0x4200_0000, 0x2000), block(0x4200_3000, 0x1000)];
        let mut allocator = PhysicalAllocator::new(&layout, fixed);
        assert_eq!(
            allocator.allocate(0x1000, 0x1000, "a".into()).ok(),
            Some(PhysAddr(0x4200_2000))
        );
        assert_eq!(
            allocator.allocate(0x1000, 0x1000, "b".into()).ok(),
            Some(PhysAddr(0x4200_4000))
        );
        let blocks: Vec<u64> = allocator.blocks().iter().map(|b| b.pa.0).collect();
        assert_eq!(blocks, [0x4200_0000, 0x4200_2000, 0x4200_3000, 0x4200_4000]);
    }

    #[test]
    fn exhausting_ram_names_the_request() {
        let layout = MemoryLayout::new(34 << 20).expect("valid size");
        let mut allocator = PhysicalAllocator::new(&layout, Vec::new());
        assert!(allocator
            .allocate(0x10_0000, 0x1000, "first".into())
            .is_ok());
        match allocator.allocate(0x20_0000, 0x1000, "second".into()) {
            Err(ImageError::OutOfMemory {
                what, size, free, ..
            }) => {
                assert_eq!(
                    (what.as_str(), size, free),
                    ("second", 0x20_0000, 0x10_0000)
                );
            }
            other => panic!("expected OutOfMemory, got {other:?}"),
        }
    }

    #[test]
    fn ram_size_must_leave_convertible_memory() {
        assert!(MemoryLayout::new(32 << 20).is_err());
        assert!(MemoryLayout::new((64 << 20) + 0x1000).is_err());
        assert!(MemoryLayout::new(u64::MAX - 0x1F_FFFF).is_err());
        let layout = MemoryLayout::new(64 << 20).expect("valid");
        assert_eq!(layout.convertible_size(), 32 << 20);
        assert!(layout.outside_ram(PhysAddr(0x0A00_0000), 0x1000));
        assert!(!layout.outside_ram(PhysAddr(0x3FFF_F000), 0x2000));
        assert!(layout.in_convertible(PhysAddr(0x4200_0000), 32 << 20));
        assert!(!layout.in_convertible(PhysAddr(0x41FF_F000), 0x1000));
    }
}
