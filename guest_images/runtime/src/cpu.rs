//! What a guest can ask its own (virtual) CPU: whether an address translates through its stage 1
//! (`AT S1E1R`, a probed load), and its virtual GIC CPU interface and virtual timer, which it
//! polls with IRQs masked. These are what the QEMU tests of the hypervisor's vCPUs look at
//! (tests/tests/vcpu_arch.rs); on the host every call is an inert stand-in.

/// A probed access that took a synchronous exception at EL1.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Abort {
    /// `ESR_EL1`.
    pub esr: u64,
    /// `FAR_EL1`.
    pub far: u64,
}

impl Abort {
    /// `ESR_EL1.EC`.
    pub const fn class(&self) -> u64 {
        (self.esr >> 26) & 0x3F
    }

    /// `ESR_EL1.ISS.DFSC`.
    pub const fn status(&self) -> u64 {
        self.esr & 0x3F
    }
}

use core::sync::atomic::{AtomicUsize, Ordering};

/// The program's IRQ handler (a `fn()` as usize; 0 for none).
static IRQ_HANDLER: AtomicUsize = AtomicUsize::new(0);

/// Sets the function an IRQ taken at EL1 runs (with IRQs masked); it acknowledges and ends the
/// interrupt itself. Without one, an IRQ is an unexpected exception (entry.rs).
pub fn set_irq_handler(handler: fn()) {
    IRQ_HANDLER.store(handler as usize, Ordering::Release);
}

/// Called by the IRQ vector (entry.rs) with every caller-saved register saved.
#[cfg(all(target_arch = "aarch64", target_os = "none"))]
#[no_mangle]
extern "C" fn frameshift_guest_irq() {
    let handler = IRQ_HANDLER.load(Ordering::Acquire);
    if handler == 0 {
        crate::entry::unexpected_irq();
    }
    // SAFETY: the only value ever stored is a `fn()` cast to usize, in `set_irq_handler`.
    let handler: fn() = unsafe { core::mem::transmute::<usize, fn()>(handler) };
    handler();
}

/// Unmasks IRQs (PSTATE.I = 0): a pending virtual interrupt is then taken at the IRQ vector.
pub fn enable_irqs() {
    target::set_irq_mask(false);
}

/// Masks IRQs again (PSTATE.I = 1).
pub fn disable_irqs() {
    target::set_irq_mask(true);
}

/// The virtual timer's interrupt (PPI 27).
pub const VIRTUAL_TIMER_INTID: u32 = 27;
/// What `ICC_IAR1_EL1` reads when nothing is pending.
pub const SPURIOUS_INTID: u32 = 1023;

#[cfg(all(target_arch = "aarch64", target_os = "none"))]
mod target {
    use super::Abort;

    #[repr(C)]
    struct ProbeResult {
        value: u64,
        esr: u64,
    }

    extern "C" {
        fn frameshift_guest_probe_read(address: u64) -> ProbeResult;
    }

    pub(super) fn probe_read(address: u64) -> Result<u64, Abort> {
        // SAFETY: the routine is one load and a return (entry.rs); an abort of that load is
        // caught by the vector, which returns here with the syndrome. It writes nothing.
        let result = unsafe { frameshift_guest_probe_read(address) };
        if result.esr == 0 {
            Ok(result.value)
        } else {
            Err(Abort {
                esr: result.esr,
                far: result.value,
            })
        }
    }

    pub(super) fn translate(address: u64) -> u64 {
        let par: u64;
        // SAFETY: an address translation instruction only writes PAR_EL1.
        unsafe {
            core::arch::asm!(
                "at s1e1r, {address}",
                "isb",
                "mrs {par}, par_el1",
                address = in(reg) address,
                par = out(reg) par,
                options(nostack, preserves_flags)
            );
        }
        par
    }

    pub(super) fn enable_group1(priority_mask: u8) {
        // SAFETY: the vCPU's own virtual CPU interface (ICV_* under HCR_EL2.IMO); no memory.
        unsafe {
            core::arch::asm!(
                "msr icc_pmr_el1, {pmr}",
                "msr icc_igrpen1_el1, {one}",
                "isb",
                pmr = in(reg) u64::from(priority_mask),
                one = in(reg) 1u64,
                options(nostack, preserves_flags)
            );
        }
    }

    pub(super) fn acknowledge() -> u32 {
        let intid: u64;
        // SAFETY: reads (and acknowledges) the highest-priority pending virtual interrupt.
        unsafe {
            core::arch::asm!("mrs {}, icc_iar1_el1", out(reg) intid,
                options(nostack, preserves_flags));
        }
        intid as u32
    }

    pub(super) fn highest_pending() -> u32 {
        let intid: u64;
        // SAFETY: reads the highest-priority pending virtual interrupt without acknowledging it.
        unsafe {
            core::arch::asm!("mrs {}, icc_hppir1_el1", out(reg) intid,
                options(nostack, preserves_flags));
        }
        intid as u32
    }

    pub(super) fn end_of_interrupt(intid: u32) {
        // SAFETY: completes a virtual interrupt this vCPU acknowledged.
        unsafe {
            core::arch::asm!("msr icc_eoir1_el1, {}", "isb", in(reg) u64::from(intid),
                options(nostack, preserves_flags));
        }
    }

    pub(super) fn virtual_counter() -> u64 {
        let count: u64;
        // SAFETY: reads the virtual counter.
        unsafe {
            core::arch::asm!("isb", "mrs {}, cntvct_el0", out(reg) count,
                options(nostack, preserves_flags));
        }
        count
    }

    pub(super) fn counter_frequency() -> u64 {
        let frequency: u64;
        // SAFETY: reads the counter frequency.
        unsafe {
            core::arch::asm!("mrs {}, cntfrq_el0", out(reg) frequency,
                options(nostack, preserves_flags));
        }
        frequency
    }

    pub(super) fn set_irq_mask(masked: bool) {
        // SAFETY: only PSTATE.I changes; the IRQ vector saves and restores what it uses.
        unsafe {
            if masked {
                core::arch::asm!("msr daifset, #2", options(nostack, preserves_flags));
            } else {
                core::arch::asm!("msr daifclr, #2", options(nostack, preserves_flags));
            }
        }
    }

    pub(super) fn set_virtual_timer(deadline: Option<u64>) {
        // SAFETY: programs this vCPU's own EL1 virtual timer.
        unsafe {
            match deadline {
                Some(deadline) => core::arch::asm!(
                    "msr cntv_cval_el0, {deadline}",
                    "msr cntv_ctl_el0, {enable}",
                    "isb",
                    deadline = in(reg) deadline,
                    enable = in(reg) 1u64,
                    options(nostack, preserves_flags)
                ),
                None => core::arch::asm!(
                    "msr cntv_ctl_el0, xzr",
                    "isb",
                    options(nostack, preserves_flags)
                ),
            }
        }
    }
}

#[cfg(not(all(target_arch = "aarch64", target_os = "none")))]
mod target {
    //! Host stand-ins: nothing to translate, no interrupt, no time.
    use super::{Abort, SPURIOUS_INTID};

    pub(super) fn probe_read(_address: u64) -> Result<u64, Abort> {
        Ok(0)
    }

    pub(super) fn translate(_address: u64) -> u64 {
        1
    }

    pub(super) fn enable_group1(_priority_mask: u8) {}

    pub(super) fn acknowledge() -> u32 {
        SPURIOUS_INTID
    }

    pub(super) fn highest_pending() -> u32 {
        SPURIOUS_INTID
    }

    pub(super) fn end_of_interrupt(_intid: u32) {}

    pub(super) fn virtual_counter() -> u64 {
        0
    }

    pub(super) fn counter_frequency() -> u64 {
        1
    }

    pub(super) fn set_virtual_timer(_deadline: Option<u64>) {}

    pub(super) fn set_irq_mask(_masked: bool) {}
}

/// Reads the 64-bit word at virtual address `address` (8-byte aligned), or returns the abort
/// the read took at EL1: a stage-1 fault of the guest's own tables lands here, a stage-2 fault
/// goes to the hypervisor instead and never returns here.
pub fn probe_read(address: u64) -> Result<u64, Abort> {
    target::probe_read(address)
}

/// `AT S1E1R` on `address`: `Ok(physical address)` (an IPA under a hypervisor) when the guest's
/// stage 1 maps it for reading, else `Err(PAR_EL1)` with its fault status.
pub fn translate(address: u64) -> Result<u64, u64> {
    let par = target::translate(address);
    if par & 1 == 0 {
        Ok((par & 0x000F_FFFF_FFFF_F000) | (address & 0xFFF))
    } else {
        Err(par)
    }
}

/// Enables group 1 virtual interrupts with `priority_mask` (`ICC_PMR_EL1`). PSTATE.I stays as it
/// is: a guest polls [`acknowledge`].
pub fn enable_group1(priority_mask: u8) {
    target::enable_group1(priority_mask);
}

/// `ICC_IAR1_EL1`: acknowledges the highest-priority pending group 1 interrupt and returns its
/// INTID, or [`SPURIOUS_INTID`].
pub fn acknowledge() -> u32 {
    target::acknowledge()
}

/// `ICC_HPPIR1_EL1`: the highest-priority pending group 1 interrupt, left pending, or
/// [`SPURIOUS_INTID`].
pub fn highest_pending() -> u32 {
    target::highest_pending()
}

/// `ICC_EOIR1_EL1`: completes `intid` (priority drop and deactivation, `EOImode` 0).
pub fn end_of_interrupt(intid: u32) {
    target::end_of_interrupt(intid);
}

/// `CNTVCT_EL0`.
pub fn virtual_counter() -> u64 {
    target::virtual_counter()
}

/// `CNTFRQ_EL0`: counter ticks per second.
pub fn counter_frequency() -> u64 {
    target::counter_frequency()
}

/// Arms the virtual timer to fire at virtual counter value `deadline` (`CNTV_CVAL_EL0`, ENABLE
/// set, IMASK clear), or disables it (`None`).
pub fn set_virtual_timer(deadline: Option<u64>) {
    target::set_virtual_timer(deadline);
}
