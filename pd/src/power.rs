//! Ending the run: `PD_SYSTEM_OFF`.

use crate::call::{self, CallRegisters};
use frameshift_abi::pd_call::PD_SYSTEM_OFF;

/// Power the system off with `status` (0 = success). The hypervisor prints its final
/// `halt status=<status>` line and turns QEMU off; this never returns. Should the hypervisor
/// refuse, the PD spins: it must not carry on as if the system had ended.
pub fn system_off(status: u64) -> ! {
    let mut registers = CallRegisters::new(PD_SYSTEM_OFF);
    registers.0[1] = status;
    call::hvc(&mut registers);
    loop {
        core::hint::spin_loop();
    }
}
