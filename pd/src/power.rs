//! Ending the run (`PD_SYSTEM_OFF`), or only this PD (`PD_STOP`).

use crate::call::{self, CallRegisters};
use frameshift_abi::pd_call::{PD_STOP, PD_SYSTEM_OFF, STOP_EXCEPTION, STOP_PANIC};

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

/// Why a PD gives up ([`stop_self`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopReason {
    /// Its code panicked.
    Panic,
    /// It took an exception the runtime cannot handle.
    Exception,
}

/// Stop this PD for good (`PD_STOP`): the hypervisor prints `stopped pd=<name> reason=<why>`,
/// never runs it again, and lets the other PDs run on. Never returns; should the hypervisor
/// refuse, the PD spins rather than carry on in a broken state.
pub fn stop_self(reason: StopReason) -> ! {
    let mut registers = CallRegisters::new(PD_STOP);
    registers.0[1] = match reason {
        StopReason::Panic => STOP_PANIC,
        StopReason::Exception => STOP_EXCEPTION,
    };
    call::hvc(&mut registers);
    loop {
        core::hint::spin_loop();
    }
}
