//! GICv3 (distributor 0x0800_0000, redistributors 0x080A_0000) through the `arm-gic` driver, and
//! the EL2 physical timer (`CNTHP_*`, PPI 26) that ends a domain's budget, and the per-domain
//! state of the GIC virtual CPU interface that EL1's `ICC_*` accesses reach. The kernel keeps the
//! budgets in ticks of the physical counter (`CNTPCT_EL0`), the counter `CNTHP_CVAL_EL2` is
//! compared with.

use core::ptr::NonNull;

use aarch64_cpu::asm::barrier;
use aarch64_cpu::registers::*;
use arm_gic::gicv3::registers::{Gicd, GicrSgi};
use arm_gic::gicv3::{GicCpuInterface, GicError, GicV3};
use arm_gic::{IntId, InterruptGroup, Trigger, UniqueMmioPointer};

use super::features::CpuFeatures;

/// The GIC driver, kept (in [`super::machine::El2Machine`]) after boot to mask and unmask PDs'
/// interrupts.
pub type Gic = GicV3<'static>;

/// Priority of PDs' interrupts (below the timer's 0x80, so the time slice always wins).
const DEVICE_PRIORITY: u8 = 0xA0;

const GICD_BASE: usize = 0x0800_0000;
const GICR_BASE: usize = 0x080A_0000;

/// The EL2 physical timer's interrupt (DESIGN.md 9).
pub const EL2_TIMER: IntId = IntId::ppi(10);

/// Length of a time slice: 1/200 s = 5 ms.
const SLICES_PER_SECOND: u64 = 200;

/// Brings up the GIC for CPU 0 and enables the EL2 timer interrupt; completes `features` with
/// the size of the virtual CPU interface and puts that interface in its boot state. Returns the
/// driver.
///
/// # Safety
///
/// Call once, at boot, after [`super::mmu::enable`] mapped the GIC as Device memory.
pub unsafe fn init(features: &mut CpuFeatures) -> Result<Gic, GicError> {
    // EL2 uses the ICC_* system registers; EL1's own accesses to ICC_SRE_EL1 trap to EL2.
    GicCpuInterface::enable_system_register_el2(false);
    // The ICH_* registers are reachable now that ICC_SRE_EL2.SRE is set.
    *features = features.with_virtual_interface(ICH_VTR_EL2.get());
    reset_virtual_interface(features);
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
    Ok(gic)
}

/// The INTID of shared peripheral interrupt `intid` (32..1020), or the error for a bad one.
fn spi(intid: u32) -> Result<IntId, GicError> {
    match intid.checked_sub(32) {
        Some(index) if index < IntId::MAX_SPI_COUNT => Ok(IntId::spi(index)),
        _ => Err(GicError::InvalidGicCpuIntid(EL2_TIMER)),
    }
}

/// Sets up a shared peripheral interrupt that belongs to a PD and enables it.
pub fn configure_device_interrupt(gic: &mut Gic, intid: u32, edge: bool) -> Result<(), GicError> {
    let intid = spi(intid)?;
    let trigger = if edge { Trigger::Edge } else { Trigger::Level };
    gic.set_interrupt_priority(intid, None, DEVICE_PRIORITY)?;
    gic.set_trigger(intid, None, trigger)?;
    gic.enable_interrupt(intid, None, true)
}

/// Unmasks a PD's interrupt after the PD acknowledged it.
pub fn unmask(gic: &mut Gic, intid: u32) {
    if let Ok(intid) = spi(intid) {
        let _ = gic.enable_interrupt(intid, None, true);
    }
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
/// [`Kernel::slice_end`](frameshift_core::kernel::Kernel::slice_end)); `None` stops it. A deadline already
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
pub fn take_interrupt(gic: &mut Gic) -> Option<Interrupt> {
    let intid = GicCpuInterface::get_and_acknowledge_interrupt(InterruptGroup::Group1)?;
    let taken = if intid == EL2_TIMER {
        // Stop it before EOI so the level-triggered line is low again; the kernel's decision
        // re-arms it for whichever domain runs next.
        stop_slice();
        Some(Interrupt::TimeSlice)
    } else if let Some(index) = intid.spi_index() {
        let _ = gic.enable_interrupt(intid, None, false);
        Some(Interrupt::Device(index as u32 + 32))
    } else {
        None
    };
    GicCpuInterface::end_interrupt(intid, InterruptGroup::Group1);
    taken
}

/// The GIC virtual CPU interface state EL1 can change. With `HCR_EL2.IMO` and `FMO` set, every
/// EL1 access to an `ICC_*` register of the CPU interface reaches its `ICV_*` twin instead
/// (GICv3 architecture specification 2.4, "Virtual CPU interface"), and those are backed by
/// EL2 registers that a domain switch must carry over:
///
/// | EL1 writes | backed by |
/// | --- | --- |
/// | `ICC_PMR_EL1`, `ICC_BPR0/1_EL1`, `ICC_IGRPEN0/1_EL1`, `ICC_CTLR_EL1` (CBPR, EOImode) | `ICH_VMCR_EL2` |
/// | `ICC_AP0R<n>_EL1`, `ICC_AP1R<n>_EL1`, and the priority drop of `ICC_EOIR0/1_EL1` | `ICH_AP0R<n>_EL2`, `ICH_AP1R<n>_EL2` |
///
/// The list registers `ICH_LR<n>_EL2` are not part of it: the hypervisor never makes one valid
/// (no virtual interrupts yet), and EL1 can only move a valid entry between states (acknowledge,
/// end of interrupt, deactivate), so they stay zero for every domain ([`reset_virtual_interface`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VirtualInterface {
    vmcr: u64,
    ap0r: [u64; 4],
    ap1r: [u64; 4],
}

impl VirtualInterface {
    /// A fresh domain's interface: every field zero (the CPU raises the binary points to their
    /// minimum on the first write of `ICH_VMCR_EL2`), no active priority.
    pub const fn initial() -> Self {
        Self {
            vmcr: 0,
            ap0r: [0; 4],
            ap1r: [0; 4],
        }
    }

    /// Reads the live interface state (the outgoing domain's).
    pub fn save(&mut self, features: &CpuFeatures) {
        self.vmcr = ICH_VMCR_EL2.get();
        for index in 0..features.active_priority_registers.min(4) {
            self.ap0r[index] = read_ap0r(index);
            self.ap1r[index] = read_ap1r(index);
        }
    }

    /// Loads this state into the interface (the incoming domain's).
    pub fn restore(&self, features: &CpuFeatures) {
        ICH_VMCR_EL2.set(self.vmcr);
        for index in 0..features.active_priority_registers.min(4) {
            write_ap0r(index, self.ap0r[index]);
            write_ap1r(index, self.ap1r[index]);
        }
    }
}

/// Puts the virtual CPU interface in a known state at boot (its reset state is UNKNOWN on
/// hardware): no virtual interrupt enabled or listed, no maintenance interrupt, no trap, no
/// active priority. Every domain then starts from [`VirtualInterface::initial`].
pub fn reset_virtual_interface(features: &CpuFeatures) {
    ICH_HCR_EL2.set(0);
    for index in 0..features.list_registers.min(16) {
        write_list_register(index, 0);
    }
    VirtualInterface::initial().restore(features);
}

fn read_ap0r(index: usize) -> u64 {
    match index {
        0 => ICH_AP0R0_EL2.get(),
        1 => ICH_AP0R1_EL2.get(),
        2 => ICH_AP0R2_EL2.get(),
        _ => ICH_AP0R3_EL2.get(),
    }
}

fn read_ap1r(index: usize) -> u64 {
    match index {
        0 => ICH_AP1R0_EL2.get(),
        1 => ICH_AP1R1_EL2.get(),
        2 => ICH_AP1R2_EL2.get(),
        _ => ICH_AP1R3_EL2.get(),
    }
}

fn write_ap0r(index: usize, value: u64) {
    match index {
        0 => ICH_AP0R0_EL2.set(value),
        1 => ICH_AP0R1_EL2.set(value),
        2 => ICH_AP0R2_EL2.set(value),
        _ => ICH_AP0R3_EL2.set(value),
    }
}

fn write_ap1r(index: usize, value: u64) {
    match index {
        0 => ICH_AP1R0_EL2.set(value),
        1 => ICH_AP1R1_EL2.set(value),
        2 => ICH_AP1R2_EL2.set(value),
        _ => ICH_AP1R3_EL2.set(value),
    }
}

fn write_list_register(index: usize, value: u64) {
    match index {
        0 => ICH_LR0_EL2.set(value),
        1 => ICH_LR1_EL2.set(value),
        2 => ICH_LR2_EL2.set(value),
        3 => ICH_LR3_EL2.set(value),
        4 => ICH_LR4_EL2.set(value),
        5 => ICH_LR5_EL2.set(value),
        6 => ICH_LR6_EL2.set(value),
        7 => ICH_LR7_EL2.set(value),
        8 => ICH_LR8_EL2.set(value),
        9 => ICH_LR9_EL2.set(value),
        10 => ICH_LR10_EL2.set(value),
        11 => ICH_LR11_EL2.set(value),
        12 => ICH_LR12_EL2.set(value),
        13 => ICH_LR13_EL2.set(value),
        14 => ICH_LR14_EL2.set(value),
        _ => ICH_LR15_EL2.set(value),
    }
}
