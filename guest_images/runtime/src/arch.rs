//! The few things only AArch64 can do: system registers, barriers, waiting. Everything is gated on
//! the firmware target; host builds get inert stand-ins so the portable code around them is
//! unit-tested on x86-64 (STYLE rule 2).

use crate::memory_map::ImageLayout;

/// The stage-1 configuration secondary vCPUs load before their MMU goes on: written by the boot
/// vCPU once its own MMU is on, then cleaned to the point of coherency, because a secondary
/// reads it with its MMU (and so its caches) still off.
#[repr(C, align(64))]
#[derive(Debug)]
pub(crate) struct MmuConfig {
    /// `MAIR_EL1`, `TCR_EL1`, `TTBR0_EL1`, `SCTLR_EL1`, in the order the secondary entry loads
    /// them.
    pub(crate) registers: [core::sync::atomic::AtomicU64; 4],
}

/// The boot vCPU's stage-1 configuration, for secondaries (entry.rs reads it by name).
#[no_mangle]
pub(crate) static FRAMESHIFT_GUEST_MMU_CONFIG: MmuConfig = MmuConfig {
    registers: [const { core::sync::atomic::AtomicU64::new(0) }; 4],
};

#[cfg(all(target_arch = "aarch64", target_os = "none"))]
mod target {
    use super::{ImageLayout, FRAMESHIFT_GUEST_MMU_CONFIG};
    use aarch64_cpu::asm::barrier;
    use aarch64_cpu::registers::{
        CurrentEL, Readable, Writeable, MAIR_EL1, SCTLR_EL1, TCR_EL1, TTBR0_EL1,
    };
    use core::sync::atomic::Ordering;

    /// `SCTLR_EL1` bits that are RES1 on ARMv8.0 (Arm ARM D17.2.118: EOS, TSCXT, EIS, SPAN,
    /// nTLSMD, LSMAOE). Writing the whole register rather than modifying it keeps the guest
    /// independent of whatever value its vCPU started with.
    const SCTLR_EL1_RES1: u64 = 1 << 11 | 1 << 20 | 1 << 22 | 1 << 23 | 1 << 28 | 1 << 29;

    extern "C" {
        static __image_start: u8;
        static __text_end: u8;
        static __rodata_end: u8;
        static __image_end: u8;
    }

    pub(crate) fn image_layout() -> ImageLayout {
        // Only the addresses of the linker's symbols are taken, never their contents.
        ImageLayout {
            start: core::ptr::addr_of!(__image_start) as u64,
            text_end: core::ptr::addr_of!(__text_end) as u64,
            rodata_end: core::ptr::addr_of!(__rodata_end) as u64,
            end: core::ptr::addr_of!(__image_end) as u64,
        }
    }

    pub(crate) fn current_el() -> u64 {
        CurrentEL.read(CurrentEL::EL)
    }

    pub(crate) fn mmu_enabled() -> bool {
        SCTLR_EL1.is_set(SCTLR_EL1::M)
    }

    pub(crate) fn mpidr() -> u64 {
        aarch64_cpu::registers::MPIDR_EL1.get()
    }

    /// Turn stage 1 on with the tables at `ttbr0` (Arm ARM D8.2: MAIR and TCR before the tables
    /// can be walked; TLBs invalidated so nothing from before the MMU was on is used).
    ///
    /// # Safety
    ///
    /// `ttbr0` must be the root of complete tables that identity-map every byte this program
    /// touches from here on, with the attributes its accesses need.
    pub(crate) unsafe fn enable_mmu(ttbr0: u64) {
        let mair = crate::memory_map::MAIR.0;
        let tcr = (TCR_EL1::T0SZ.val(crate::memory_map::T0SZ)
            + TCR_EL1::IRGN0::WriteBack_ReadAlloc_WriteAlloc_Cacheable
            + TCR_EL1::ORGN0::WriteBack_ReadAlloc_WriteAlloc_Cacheable
            + TCR_EL1::SH0::Inner
            + TCR_EL1::TG0::KiB_4
            + TCR_EL1::EPD1::DisableTTBR1Walks
            + TCR_EL1::TG1::KiB_4
            + TCR_EL1::IPS::Bits_40)
            .value;
        let sctlr = SCTLR_EL1_RES1
            | (SCTLR_EL1::M::Enable
                + SCTLR_EL1::C::Cacheable
                + SCTLR_EL1::I::Cacheable
                + SCTLR_EL1::SA::Enable)
                .value;
        MAIR_EL1.set(mair);
        TCR_EL1.set(tcr);
        TTBR0_EL1.set(ttbr0);
        barrier::isb(barrier::SY);
        // SAFETY: TLB maintenance has no effect on memory; it drops translations cached from
        // before these tables existed.
        unsafe {
            core::arch::asm!(
                "tlbi vmalle1",
                "dsb nsh",
                "isb",
                options(nostack, preserves_flags)
            );
        }
        SCTLR_EL1.set(sctlr);
        barrier::isb(barrier::SY);
        for (slot, value) in FRAMESHIFT_GUEST_MMU_CONFIG
            .registers
            .iter()
            .zip([mair, tcr, ttbr0, sctlr])
        {
            slot.store(value, Ordering::Release);
        }
        clean_to_poc(core::ptr::addr_of!(FRAMESHIFT_GUEST_MMU_CONFIG) as u64, 64);
    }

    /// `DC CVAC` over `[address, address + bytes)`, then `DSB SY`: a reader with its caches off
    /// (a secondary vCPU before its MMU is on) sees what this vCPU wrote.
    fn clean_to_poc(address: u64, bytes: u64) {
        // 64 bytes is the smallest cache line Armv8 allows (CTR_EL0.DminLine >= 4 words).
        let mut line = address & !63;
        while line < address + bytes {
            // SAFETY: cleaning a line writes it back; memory contents do not change.
            unsafe {
                core::arch::asm!("dc cvac, {line}", line = in(reg) line,
                    options(nostack, preserves_flags));
            }
            line += 64;
        }
        barrier::dsb(barrier::SY);
    }

    pub(crate) fn wait_forever() -> ! {
        loop {
            aarch64_cpu::asm::wfe();
        }
    }

    pub(crate) fn wait_for_event() {
        aarch64_cpu::asm::wfe();
    }

    pub(crate) fn send_event() {
        aarch64_cpu::asm::sev();
    }
}

#[cfg(not(all(target_arch = "aarch64", target_os = "none")))]
mod target {
    //! Host stand-ins: no registers to touch.
    use super::ImageLayout;

    pub(crate) fn image_layout() -> ImageLayout {
        ImageLayout {
            start: 0,
            text_end: 0,
            rodata_end: 0,
            end: 0,
        }
    }

    pub(crate) fn current_el() -> u64 {
        1
    }

    pub(crate) fn mmu_enabled() -> bool {
        false
    }

    pub(crate) fn mpidr() -> u64 {
        0
    }

    /// # Safety
    ///
    /// None on the host: nothing is written.
    pub(crate) unsafe fn enable_mmu(_ttbr0: u64) {}

    pub(crate) fn wait_forever() -> ! {
        loop {
            core::hint::spin_loop();
        }
    }

    pub(crate) fn wait_for_event() {
        core::hint::spin_loop();
    }

    pub(crate) fn send_event() {}
}

pub(crate) use target::*;
