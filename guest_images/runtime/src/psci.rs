//! PSCI over `HVC #0`, the conduit both Frameshift (docs/ABI.md, PSCI) and QEMU's own PSCI on a
//! machine without EL2 use. The calls come from the `smccc` crate; the power-off calls here
//! never return, since a guest must not carry on as if the VM had stopped.

use crate::conduit::Hvc;
use frameshift_abi::addr::Ipa;
pub use smccc::psci::{AffinityState, Error as PsciError, LowestAffinityLevel, Version};

/// `PSCI_VERSION`.
pub fn version() -> Result<Version, PsciError> {
    smccc::psci::version::<Hvc>()
}

/// `PSCI_FEATURES`: `Ok` if `function` is implemented.
pub fn features(function: u32) -> Result<u32, PsciError> {
    smccc::psci::psci_features::<Hvc>(function)
}

/// `CPU_ON`: start vCPU `mpidr` at `entry` with `x0` = `context`, its MMU off.
pub fn cpu_on(mpidr: u64, entry: Ipa, context: u64) -> Result<(), PsciError> {
    smccc::psci::cpu_on::<Hvc>(mpidr, entry.get(), context)
}

/// `AFFINITY_INFO` at affinity level 0 (one vCPU).
pub fn affinity_info(mpidr: u64) -> Result<AffinityState, PsciError> {
    smccc::psci::affinity_info::<Hvc>(mpidr, LowestAffinityLevel::All)
}

/// `CPU_OFF`: stop this vCPU.
pub fn cpu_off() -> ! {
    let _ = smccc::psci::cpu_off::<Hvc>();
    crate::arch::wait_forever()
}

/// `SYSTEM_OFF`: stop this VM (under Frameshift; the machine when there is no hypervisor).
pub fn system_off() -> ! {
    let _ = smccc::psci::system_off::<Hvc>();
    crate::arch::wait_forever()
}

/// `SYSTEM_RESET`: stop this VM and let its VMM decide whether it starts again.
pub fn system_reset() -> ! {
    let _ = smccc::psci::system_reset::<Hvc>();
    crate::arch::wait_forever()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conduit::{install_fake, Conduit};

    #[test]
    fn cpu_on_sends_target_entry_and_context() {
        install_fake(|conduit, registers| {
            assert_eq!(conduit, Conduit::Hvc);
            assert_eq!(registers[..4], [0xC400_0003, 1, 0x4000_0800, 0x77]);
            registers[0] = -4i64 as u64;
        });
        assert_eq!(cpu_on(1, Ipa(0x4000_0800), 0x77), Err(PsciError::AlreadyOn));
    }

    #[test]
    fn affinity_info_asks_level_0() {
        install_fake(|_, registers| {
            assert_eq!(registers[..3], [0xC400_0004, 1, 0]);
            registers[0] = 1;
        });
        assert_eq!(affinity_info(1), Ok(AffinityState::Off));
    }
}
