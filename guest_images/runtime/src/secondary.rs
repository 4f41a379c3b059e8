//! Secondary vCPUs: PSCI `CPU_ON` with the runtime's secondary entry, which turns the MMU on with
//! the boot vCPU's tables and calls a function of the program. One secondary stack exists, so
//! one secondary runs at a time: start the next only once `AFFINITY_INFO` says the last is off.

use crate::psci::{self, PsciError};
use core::sync::atomic::{AtomicUsize, Ordering};
use frameshift_abi::addr::Ipa;

static SECONDARY_MAIN: AtomicUsize = AtomicUsize::new(0);

/// Start vCPU `mpidr` (PSCI `CPU_ON`) running `main(context)` with its MMU on. When `main`
/// returns, the vCPU turns itself off (`CPU_OFF`).
pub fn start(mpidr: u64, main: fn(u64), context: u64) -> Result<(), PsciError> {
    SECONDARY_MAIN.store(main as usize, Ordering::Release);
    psci::cpu_on(mpidr, entry(), context)
}

/// The secondary entry's address: what `CPU_ON` is given.
pub fn entry() -> Ipa {
    #[cfg(all(target_arch = "aarch64", target_os = "none"))]
    {
        extern "C" {
            fn frameshift_guest_secondary_entry();
        }
        Ipa(frameshift_guest_secondary_entry as *const () as u64)
    }
    #[cfg(not(all(target_arch = "aarch64", target_os = "none")))]
    Ipa(0)
}

/// Called by the secondary entry once the MMU is on.
#[cfg(all(target_arch = "aarch64", target_os = "none"))]
#[no_mangle]
extern "C" fn frameshift_guest_secondary_main(context: u64) -> ! {
    let main = SECONDARY_MAIN.load(Ordering::Acquire);
    if main != 0 {
        // SAFETY: the only value ever stored is a `fn(u64)` cast to usize, in `start`.
        let main: fn(u64) = unsafe { core::mem::transmute::<usize, fn(u64)>(main) };
        main(context);
    }
    psci::cpu_off()
}

/// This vCPU's `MPIDR_EL1` (under Frameshift, Aff0 is the vCPU's index in the VM).
pub fn current_mpidr() -> u64 {
    crate::arch::mpidr()
}

/// Wake vCPUs waiting in [`wait_for_event`] (`SEV`).
pub fn send_event() {
    crate::arch::send_event();
}

/// Wait for an event or a while (`WFE`); a hypervisor that traps `WFE` runs another vCPU.
pub fn wait_for_event() {
    crate::arch::wait_for_event();
}
