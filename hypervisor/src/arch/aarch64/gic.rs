//! GICv3 (distributor 0x0800_0000, redistributors 0x080A_0000) through the `arm-gic` driver, and
//! the EL2 physical timer (`CNTHP_*`, PPI 26) that slices domains' time.

use core::ptr::NonNull;

use aarch64_cpu::registers::*;
use arm_gic::gicv3::registers::{Gicd, GicrSgi};
use arm_gic::gicv3::{GicCpuInterface, GicV3};
use arm_gic::{IntId, InterruptGroup, Trigger, UniqueMmioPointer};

const GICD_BASE: usize = 0x0800_0000;
const GICR_BASE: usize = 0x080A_0000;

/// The EL2 physical timer's interrupt (DESIGN.md 9).
pub const EL2_TIMER: IntId = IntId::ppi(10);

/// Length of a time slice: 1/200 s = 5 ms.
const SLICES_PER_SECOND: u64 = 200;

/// Brings up the GIC for CPU 0 and enables the EL2 timer interrupt.
///
/// # Safety
///
/// Call once, at boot, after [`super::mmu::enable`] mapped the GIC as Device memory.
pub unsafe fn init() -> Result<(), arm_gic::gicv3::GicError> {
    // EL2 uses the ICC_* system registers; EL1's own accesses to ICC_SRE_EL1 trap to EL2.
    GicCpuInterface::enable_system_register_el2(false);
    // SAFETY: GICD_BASE is QEMU virt's distributor, mapped Device-nGnRE, and this is the only
    // pointer to it (caller's contract: called once).
    let distributor =
        unsafe { UniqueMmioPointer::new(NonNull::new_unchecked(GICD_BASE as *mut Gicd)) };
    // SAFETY: as above, for the redistributor frames of the single CPU.
    let mut gic = unsafe {
        GicV3::new(
            distributor,
            NonNull::new_unchecked(GICR_BASE as *mut GicrSgi),
            1,
        )?
    };
    gic.setup(0);
    GicCpuInterface::set_priority_mask(0xff);
    gic.set_interrupt_priority(EL2_TIMER, Some(0), 0x80)?;
    gic.set_trigger(EL2_TIMER, Some(0), Trigger::Level)?;
    gic.enable_interrupt(EL2_TIMER, Some(0), true)?;
    Ok(())
}

/// Starts a fresh time slice on the EL2 physical timer.
pub fn start_slice() {
    let ticks = CNTFRQ_EL0.get() / SLICES_PER_SECOND;
    // SAFETY: CNTHP_TVAL_EL2 only sets the EL2 timer's countdown; aarch64-cpu has no accessor.
    unsafe { core::arch::asm!("msr cnthp_tval_el2, {}", in(reg) ticks, options(nostack)) };
    // ENABLE = 1, IMASK = 0.
    CNTHP_CTL_EL2.set(1);
}

/// Acknowledges the pending interrupt. Returns whether it was the time-slice timer; any other
/// interrupt is ended and ignored (none is routed to domains in this version).
pub fn take_interrupt() -> bool {
    let Some(intid) = GicCpuInterface::get_and_acknowledge_interrupt(InterruptGroup::Group1) else {
        return false;
    };
    let timer = intid == EL2_TIMER;
    if timer {
        // Re-arm before EOI so the level-triggered line is low again.
        start_slice();
    }
    GicCpuInterface::end_interrupt(intid, InterruptGroup::Group1);
    timer
}
