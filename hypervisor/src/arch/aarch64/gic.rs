//! GICv3 (distributor 0x0800_0000, redistributors 0x080A_0000) through the `arm-gic` driver, and
//! the EL2 physical timer (`CNTHP_*`, PPI 26) that ends a domain's budget. The kernel keeps the
//! budgets in ticks of the physical counter (`CNTPCT_EL0`), the counter `CNTHP_CVAL_EL2` is
//! compared with.

use core::ptr::NonNull;

use aarch64_cpu::asm::barrier;
use aarch64_cpu::registers::*;
use arm_gic::gicv3::registers::{Gicd, GicrSgi};
use arm_gic::gicv3::{GicCpuInterface, GicError, GicV3};
use arm_gic::{IntId, InterruptGroup, Trigger, UniqueMmioPointer};

use super::global::GlobalCell;

/// The GIC driver, kept after boot to mask and unmask PDs' interrupts.
static GIC: GlobalCell<Option<GicV3<'static>>> = GlobalCell::new(None);

/// Priority of PDs' interrupts (below the timer's 0x80, so the time slice always wins).
const DEVICE_PRIORITY: u8 = 0xA0;

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
pub unsafe fn init() -> Result<(), GicError> {
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
    // SAFETY: boot is single-threaded; nobody else holds the cell yet.
    unsafe { *GIC.get_mut() = Some(gic) };
    Ok(())
}

fn with_gic<T>(
    body: impl FnOnce(&mut GicV3<'static>) -> Result<T, GicError>,
) -> Result<T, GicError> {
    // SAFETY: single CPU, EL2 not re-entered (global.rs); the reference does not escape `body`.
    match unsafe { GIC.get_mut() } {
        Some(gic) => body(gic),
        None => Err(GicError::InvalidGicCpuIntid(EL2_TIMER)),
    }
}

/// The INTID of shared peripheral interrupt `intid` (32..1020), or the error for a bad one.
fn spi(intid: u32) -> Result<IntId, GicError> {
    match intid.checked_sub(32) {
        Some(index) if index < IntId::MAX_SPI_COUNT => Ok(IntId::spi(index)),
        _ => Err(GicError::InvalidGicCpuIntid(EL2_TIMER)),
    }
}

/// Sets up a shared peripheral interrupt that belongs to a PD and enables it.
pub fn configure_device_interrupt(intid: u32, edge: bool) -> Result<(), GicError> {
    let intid = spi(intid)?;
    let trigger = if edge { Trigger::Edge } else { Trigger::Level };
    with_gic(|gic| {
        gic.set_interrupt_priority(intid, None, DEVICE_PRIORITY)?;
        gic.set_trigger(intid, None, trigger)?;
        gic.enable_interrupt(intid, None, true)
    })
}

/// Unmasks a PD's interrupt after the PD acknowledged it.
pub fn unmask(intid: u32) {
    let _ = with_gic(|gic| gic.enable_interrupt(spi(intid)?, None, true));
}

/// An interrupt taken at EL2.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Interrupt {
    /// The running domain's budget ran out (the timer is stopped until the next decision).
    TimeSlice,
    /// A PD's interrupt, now masked until the PD acknowledges it.
    Device(u32),
}

/// A full time slice in counter ticks.
pub fn slice_ticks() -> u64 {
    CNTFRQ_EL0.get() / SLICES_PER_SECOND
}

/// The physical counter, the time base of the kernel's budgets.
pub fn now() -> u64 {
    // Without the ISB the read could be taken early, before the exit it stamps (Arm ARM
    // D12.1.2, "Reading the counter").
    barrier::isb(barrier::SY);
    CNTPCT_EL0.get()
}

/// Arms the EL2 physical timer to fire at counter value `deadline` (the running domain's
/// [`Kernel::slice_end`](crate::kernel::Kernel::slice_end)); `None` stops it. A deadline already
/// past fires at once.
pub fn arm_slice(deadline: Option<u64>) {
    let Some(deadline) = deadline else {
        stop_slice();
        return;
    };
    // SAFETY: CNTHP_CVAL_EL2 only sets the EL2 timer's compare value; aarch64-cpu has no accessor.
    unsafe { core::arch::asm!("msr cnthp_cval_el2, {}", in(reg) deadline, options(nostack)) };
    // ENABLE = 1, IMASK = 0.
    CNTHP_CTL_EL2.set(1);
}

/// Stops the time-slice timer (while the CPU waits for a PD's interrupt).
pub fn stop_slice() {
    CNTHP_CTL_EL2.set(0);
}

/// Acknowledges the pending interrupt, if any. A PD's interrupt is masked at the distributor
/// before the end of interrupt, so it cannot fire again until the PD acknowledges it (Microkit
/// `irq_ack`); SGIs, other PPIs and spurious interrupts are ended and ignored.
pub fn take_interrupt() -> Option<Interrupt> {
    let intid = GicCpuInterface::get_and_acknowledge_interrupt(InterruptGroup::Group1)?;
    let taken = if intid == EL2_TIMER {
        // Stop it before EOI so the level-triggered line is low again; the kernel's decision
        // re-arms it for whichever domain runs next.
        stop_slice();
        Some(Interrupt::TimeSlice)
    } else if let Some(index) = intid.spi_index() {
        let _ = with_gic(|gic| gic.enable_interrupt(intid, None, false));
        Some(Interrupt::Device(index as u32 + 32))
    } else {
        None
    };
    GicCpuInterface::end_interrupt(intid, InterruptGroup::Group1);
    taken
}
