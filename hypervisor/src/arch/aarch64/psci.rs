//! Powering off through PSCI `SYSTEM_OFF` (SMC from EL2 reaches QEMU's firmware emulation, which
//! ends the QEMU process: DESIGN.md 9).

use smccc::Smc;

/// Powers the machine off. Never returns; if PSCI refuses, the CPU parks.
pub fn system_off() -> ! {
    let _ = smccc::psci::system_off::<Smc>();
    loop {
        aarch64_cpu::asm::wfe();
    }
}
