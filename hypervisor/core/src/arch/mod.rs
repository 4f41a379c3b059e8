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

/// The virtual timer's PPI (the GIC INTID the generic timer's EL1 virtual timer raises on
/// QEMU `virt`): the only virtual PPI the arch layer delivers (`FAULT_VM_VPPI`).
pub const VIRTUAL_TIMER_PPI: u32 = 27;

/// What a fresh context is for: the arch layer configures the trap controls (`HCR_EL2`) and
/// the EL1 reset state from it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ContextKind {
    /// A protection domain's only context: Microkit PD semantics, stage 1 governed by the
    /// hypervisor (`HCR_EL2.DC` on AArch64).
    Pd,
    /// One vCPU of a virtual machine: runs its own EL1 with its own stage 1 (MMU off at first
    /// entry), sees `mpidr` as its `MPIDR_EL1`, and gets virtual interrupts through the GIC list
    /// registers.
    Vcpu {
        /// The vCPU's `MPIDR_EL1` as the guest reads it (on AArch64, `VMPIDR_EL2`).
        mpidr: u64,
    },
}

/// One virtual interrupt a VMM injects (`PD_VCPU_INJECT_IRQ`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct VirtualIrq {
    /// GIC INTID, at most 1019.
    pub intid: u32,
    /// Priority (the GIC's 8-bit priority; the arch keeps the bits the CPU implements).
    pub priority: u8,
    /// Interrupt group: 0 or 1.
    pub group: u8,
}

/// Every list register of the vCPU already holds an interrupt (`PD_VCPU_INJECT_IRQ` is refused).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ListRegistersFull;

/// The whole machine as the portable [`Hypervisor`](crate::Hypervisor) sees it: stage-2 memory
/// management plus the per-context state it keeps for the arch layer.
///
/// The methods that take a `&Self::Context` work on a context that is **off** the CPU: its
/// state is the copy the arch layer saved when it last left it. On one core a VMM's call always
/// runs while the vCPU it names is off the CPU, so the saved copy is the vCPU's state.
pub trait Arch: Stage2Arch {
    /// The arch's own state of one context (EL1 system registers, FP/SIMD, GIC virtual
    /// interface on AArch64), switched by the arch layer when the running context changes.
    type Context: Clone + fmt::Debug;

    /// `SPSR_EL2` of a context's first entry (EL1h with every exception masked on AArch64).
    const ENTRY_PSTATE: u64;

    /// The state a fresh context of `kind` starts with (also a vCPU's state after a teardown,
    /// or when PSCI `CPU_ON` starts it again).
    fn new_context(&self, kind: ContextKind) -> Self::Context;

    /// One of a vCPU's EL1 registers (`frameshift_abi::vcpu::REG_SP_EL0` to `REG_MPIDR_EL1`)
    /// from its saved state; `None` for any other number. (`x0`-`x30`, SP, PC and PSTATE are in
    /// the core's [`Registers`](crate::domain::Registers).)
    fn vcpu_register(context: &Self::Context, register: u64) -> Option<u64>;

    /// Sets one of a vCPU's EL1 registers in its saved state; `false` (and nothing changes) for
    /// a number outside `REG_SP_EL0..=REG_MPIDR_EL1` or for `REG_MPIDR_EL1`, which is fixed.
    fn set_vcpu_register(context: &mut Self::Context, register: u64, value: u64) -> bool;

    /// Puts `irq` into a free list register of the vCPU's saved GIC virtual interface, pending;
    /// the guest sees it when the vCPU next runs. Refused when every list register holds an
    /// interrupt (pending or active).
    fn inject_virtual_irq(
        context: &mut Self::Context,
        irq: VirtualIrq,
    ) -> Result<(), ListRegistersFull>;

    /// Lets the vCPU's virtual PPI `intid` (27, the virtual timer) fire again: after
    /// [`Exit::VirtualTimer`](crate::Exit::VirtualTimer) the arch layer keeps it masked for that
    /// vCPU until this call (`PD_VCPU_ACK_VPPI`). `false` for an INTID that is not a virtual PPI
    /// the arch layer delivers.
    fn ack_virtual_ppi(context: &mut Self::Context, intid: u32) -> bool;
}

/// The host fake: a checking arena machine for tests (feature `fake`).
#[cfg(any(test, feature = "fake"))]
pub mod fake;
