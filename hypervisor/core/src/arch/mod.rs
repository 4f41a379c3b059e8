//! The two small traits through which the portable core touches the machine: physical memory
//! access and stage-2 descriptor writes with TLB maintenance.
//!
//! The EL2 kernel implements them in the `frameshift-hypervisor` crate, under
//! `src/arch/aarch64` (identity-mapped memory, `DSB`/`TLBI`); host tests use [`fake::FakeArch`],
//! an arena that also checks break-before-make (I7) and that every removed or narrowed
//! translation was invalidated (I6).

use core::fmt;

use crate::addr::{Ipa, PhysAddr, Vmid};
use crate::fatal::FatalReason;

/// A 4 KiB page seen as 512 64-bit words (a translation table, or a frame being zeroed).
pub type PageWords = [u64; 512];

/// Access to physical memory: the identity map in the kernel, an arena in host tests.
pub trait PhysMemory {
    /// Reads the naturally aligned 64-bit word at `pa` (a stage-2 descriptor).
    fn read_u64(&self, pa: PhysAddr) -> u64;

    /// The 4 KiB page at `pa` (page aligned) for writing. The core uses it only for pages that
    /// no domain can reach through a live descriptor: fresh table pages, and frames being
    /// zeroed after their last mapping was removed and invalidated.
    fn page_mut(&mut self, pa: PhysAddr) -> &mut PageWords;

    /// Zeroes the 4 KiB page at `pa` (page aligned); same rules as [`PhysMemory::page_mut`].
    fn zero_page(&mut self, pa: PhysAddr) {
        self.page_mut(pa).fill(0);
    }

    /// Runs `visit` on the 4 KiB page at `pa` (page aligned) for reading a whole table at once.
    /// The default reads it word by word; implementations with direct access lend the page.
    fn with_page<R>(&self, pa: PhysAddr, visit: &mut dyn FnMut(&PageWords) -> R) -> R {
        let mut words = [0u64; 512];
        for (index, word) in words.iter_mut().enumerate() {
            *word = self.read_u64(PhysAddr(pa.get() + index as u64 * 8));
        }
        visit(&words)
    }
}

/// Where a descriptor write lands, so an implementation can invalidate the right translations
/// and a checking fake can reason about break-before-make.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DescriptorSlot {
    /// Physical address of the 64-bit descriptor.
    pub pa: PhysAddr,
    /// VMID of the table the descriptor belongs to.
    pub vmid: Vmid,
    /// First IPA the descriptor translates.
    pub ipa: Ipa,
    /// Translation level (1, 2 or 3).
    pub level: u8,
}

impl DescriptorSlot {
    /// Bytes of IPA space the descriptor covers at its level (4 KiB granule).
    pub const fn span(&self) -> u64 {
        match self.level {
            1 => 1 << 30,
            2 => 1 << 21,
            _ => 1 << 12,
        }
    }
}

/// Stage-2 descriptor updates and TLB maintenance (Arm ARM D8.16, "TLB maintenance").
///
/// The core calls these in the break-before-make order required by Arm ARM D8.16.1: write an
/// invalid descriptor, invalidate, then write the new one.
pub trait Stage2Arch: PhysMemory {
    /// Writes one descriptor and makes it visible to the table walker (the kernel: store, then
    /// `DSB ISHST`).
    fn write_descriptor(&mut self, slot: DescriptorSlot, value: u64);

    /// Removes every cached translation of `ipa` for `vmid`, including the combined
    /// stage-1+2 entries, and waits for completion. On this QEMU `TLBI IPAS2E1IS` alone is not
    /// enough (DESIGN.md 9): the kernel issues `TLBI IPAS2E1IS; DSB ISH; TLBI VMALLE1IS;
    /// DSB ISH; ISB` with `vmid` loaded in VTTBR_EL2.
    fn invalidate_ipa(&mut self, vmid: Vmid, ipa: Ipa);

    /// Removes every cached stage-1 and stage-2 translation and walk-cache entry for `vmid`
    /// (`TLBI VMALLS12E1IS; DSB ISH; ISB`). Used when a table descriptor is removed.
    fn invalidate_vmid(&mut self, vmid: Vmid);

    /// Halts the machine for `reason`: the core found a promise of its own broken (a commit
    /// whose prepare under-counted), so the state may be half changed and nothing may run on.
    /// The kernel prints the halt line and powers off; the host fake panics, failing the test.
    fn fatal(&mut self, reason: FatalReason) -> !;
}

/// The whole machine as the portable [`Hypervisor`](crate::Hypervisor) sees it: stage-2 memory
/// management plus the per-context state it keeps for the arch layer.
pub trait Arch: Stage2Arch {
    /// The arch's own state of one context (EL1 system registers, FP/SIMD, GIC virtual
    /// interface on AArch64), switched by the arch layer when the running context changes.
    type Context: Clone + fmt::Debug;

    /// `SPSR_EL2` of a context's first entry (EL1h with every exception masked on AArch64).
    const ENTRY_PSTATE: u64;

    /// The state a fresh context starts with.
    fn new_context(&self) -> Self::Context;
}

/// The host fake: a checking arena machine for tests (feature `fake`).
#[cfg(any(test, feature = "fake"))]
pub mod fake;
