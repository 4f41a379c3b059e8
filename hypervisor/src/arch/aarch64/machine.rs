//! The machine the portable core runs on ([`Arch`]): physical memory through the EL2 identity
//! map, descriptor stores made visible to the walker, the TLB maintenance DESIGN.md 9
//! verified, and the per-context state the arch layer switches ([`ArchContext`]).

use aarch64_cpu::registers::*;

use frameshift_core::addr::{Ipa, PhysAddr, Vmid};
use frameshift_core::arch::{Arch, DescriptorSlot, PageWords, PhysMemory, Stage2Arch};
use frameshift_core::{ContextId, ContextKind, FatalReason, ListRegistersFull, VirtualIrq};

use super::context::ArchContext;
use super::features::CpuFeatures;
use super::gic::Gic;
use super::spsr::SPSR_EL1H_MASKED;

/// The CPU as the hypervisor uses it. Physical memory is what the EL2 identity map (`mmu`)
/// shows: the core touches only stage-2 table pages from the kernel's table pool and frames it
/// converts, all in RAM, which the identity map covers as Normal write-back memory.
#[derive(Debug)]
pub struct El2Machine {
    /// What this CPU implements (probed at boot, before any domain runs).
    pub features: CpuFeatures,
    /// The context whose FP/SIMD registers are live in the CPU.
    pub fp_owner: Option<ContextId>,
    /// Set by boot once the hypervisor is built; a trap before that is a hypervisor bug.
    pub running: bool,
    /// The GIC driver (from boot on), to mask and unmask PDs' interrupts.
    pub gic: Option<Gic>,
}

impl El2Machine {
    /// Before boot: every field zero (the feature probe fills `features`).
    pub const EMPTY: Self = Self {
        features: CpuFeatures::NONE,
        fp_owner: None,
        running: false,
        gic: None,
    };
}

impl PhysMemory for El2Machine {
    fn read_u64(&self, pa: PhysAddr) -> u64 {
        // SAFETY: `pa` is an aligned descriptor inside a table page of the pool (RAM, identity
        // mapped); volatile because the table walker may set bits the compiler cannot see.
        unsafe { (pa.get() as *const u64).read_volatile() }
    }

    fn page_mut(&mut self, pa: PhysAddr) -> &mut PageWords {
        // SAFETY: the core asks only for page-aligned pages no domain can reach (fresh table pages
        // or unmapped frames being zeroed, arch.rs contract), in identity-mapped RAM; the single
        // EL2 thread holds no other reference to them.
        unsafe { &mut *(pa.get() as *mut PageWords) }
    }

    fn with_page<R>(&self, pa: PhysAddr, visit: &mut dyn FnMut(&PageWords) -> R) -> R {
        // SAFETY: the core passes page-aligned table pages of the pool (arch.rs contract), in
        // identity-mapped RAM. Only this single EL2 thread writes them, and not while `visit`
        // runs (it holds `&self`); the walker never writes them either, because VTCR_EL2.HA/HD
        // are clear (no hardware access-flag or dirty-state updates). So a shared borrow is sound
        // and saves the default's 4 KiB copy onto the small EL2 stack.
        visit(unsafe { &*(pa.get() as *const PageWords) })
    }
}

/// Runs `body` with `vmid` in VTTBR_EL2 (TLBI by IPA and VMALLE1 act on the current VMID), then
/// restores the running domain's VTTBR_EL2.
fn with_vmid(vmid: Vmid, body: impl FnOnce()) {
    let saved = VTTBR_EL2.get();
    VTTBR_EL2.set((saved & 0x0000_FFFF_FFFF_FFFF) | (u64::from(vmid.0) << 48));
    aarch64_cpu::asm::barrier::isb(aarch64_cpu::asm::barrier::SY);
    body();
    VTTBR_EL2.set(saved);
    aarch64_cpu::asm::barrier::isb(aarch64_cpu::asm::barrier::SY);
}

impl Stage2Arch for El2Machine {
    fn write_descriptor(&mut self, slot: DescriptorSlot, value: u64) {
        // SAFETY: `slot.pa` is an aligned descriptor in a pool table page (identity-mapped RAM).
        // DSB ISHST makes the store visible to the walker before any later TLBI or ERET.
        unsafe {
            (slot.pa.get() as *mut u64).write_volatile(value);
            core::arch::asm!("dsb ishst", options(nostack));
        }
    }

    fn invalidate_ipa(&mut self, vmid: Vmid, ipa: Ipa) {
        with_vmid(vmid, || {
            // SAFETY: TLB maintenance only drops cached translations. IPAS2E1IS alone leaves the
            // combined stage-1+2 entries on this QEMU (DESIGN.md 9), hence the VMALLE1IS too.
            unsafe {
                core::arch::asm!(
                    "tlbi ipas2e1is, {page}",
                    "dsb ish",
                    "tlbi vmalle1is",
                    "dsb ish",
                    "isb",
                    page = in(reg) ipa.get() >> 12,
                    options(nostack)
                );
            }
        });
    }

    fn invalidate_vmid(&mut self, vmid: Vmid) {
        with_vmid(vmid, || {
            // SAFETY: TLB maintenance only drops cached translations for this VMID.
            unsafe { core::arch::asm!("tlbi vmalls12e1is", "dsb ish", "isb", options(nostack)) };
        });
    }

    fn fatal(&mut self, reason: FatalReason) -> ! {
        super::trap::fatal(reason)
    }
}

impl Arch for El2Machine {
    type Context = ArchContext;

    const ENTRY_PSTATE: u64 = SPSR_EL1H_MASKED;

    fn new_context(&self, _kind: ContextKind) -> ArchContext {
        ArchContext::initial()
    }

    // vCPUs do not run yet (the protected-VM issue): until they do, the VMM calls that reach
    // the arch's per-vCPU state are refused here.
    fn vcpu_register(_context: &ArchContext, _register: u64) -> Option<u64> {
        None
    }

    fn set_vcpu_register(_context: &mut ArchContext, _register: u64, _value: u64) -> bool {
        false
    }

    fn inject_virtual_irq(
        _context: &mut ArchContext,
        _irq: VirtualIrq,
    ) -> Result<(), ListRegistersFull> {
        Err(ListRegistersFull)
    }

    fn ack_virtual_ppi(_context: &mut ArchContext, _intid: u32) -> bool {
        false
    }
}
