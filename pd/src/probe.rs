//! Probing an address: a read or a write that may fault, turned into a `Result`.
//!
//! When a PD touches memory it holds no right to, the hypervisor reports the fault and injects a
//! synchronous external abort at EL1 (DESIGN 2). A read through [`read_u64`] or a write through
//! [`write_u64`] are the only places the runtime's vectors resume from such an abort, so a PD (the isolation tests' attacker) can
//! observe the refusal and carry on. Any other faulting access ends the run.

use crate::Ipa;

/// The syndrome of a read that faulted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AccessFault {
    /// `ESR_EL1` as the hypervisor injected it.
    pub esr: u64,
    /// `FAR_EL1`: the faulting address.
    pub far: Ipa,
}

impl AccessFault {
    /// The exception class (`ESR_EL1.EC`); 0x25 is a data abort taken without a change in EL.
    pub const fn exception_class(&self) -> u64 {
        self.esr >> 26 & 0x3f
    }
}

/// Read the 8 bytes at `address`, or report the abort the access raised.
#[cfg(all(target_arch = "aarch64", target_os = "none"))]
pub fn read_u64(address: Ipa) -> Result<u64, AccessFault> {
    let value: u64;
    let faulted: u64;
    let esr: u64;
    let far: u64;
    // SAFETY: `frameshift_pd_probe_read` (entry.rs) performs one 8-byte load from `address` and
    // returns; if the load aborts, the EL1 vector resumes it at its fixup with x1 = 1. It uses
    // only x0-x3 and the link register, all declared here, and touches no stack. The load may
    // read any byte of this PD's VSpace, which is memory safe: the value is returned as plain
    // bits and no Rust object is aliased mutably by a read.
    unsafe {
        core::arch::asm!(
            "bl frameshift_pd_probe_read",
            inout("x0") address.0 => value,
            out("x1") faulted,
            out("x2") esr,
            out("x3") far,
            out("x30") _,
            options(nostack),
        );
    }
    if faulted == 0 {
        Ok(value)
    } else {
        Err(AccessFault { esr, far: Ipa(far) })
    }
}

/// Write the 8 bytes `value` at `address`, or report the abort the access raised (then nothing
/// was written).
#[cfg(all(target_arch = "aarch64", target_os = "none"))]
pub fn write_u64(address: Ipa, value: u64) -> Result<(), AccessFault> {
    let faulted: u64;
    let esr: u64;
    let far: u64;
    // SAFETY: `frameshift_pd_probe_write` (entry.rs) performs one 8-byte store of x4 to
    // `address` and returns; if the store aborts, the EL1 vector resumes it at the probes'
    // fixup with x1 = 1. It uses only x0-x4 and the link register, all declared here, and touches
    // no stack. Callers aim it at memory no Rust object lives in (another domain's region, a
    // read-only mapping): a store that succeeds changes only those bytes.
    unsafe {
        core::arch::asm!(
            "bl frameshift_pd_probe_write",
            inout("x0") address.0 => _,
            out("x1") faulted,
            out("x2") esr,
            out("x3") far,
            in("x4") value,
            out("x30") _,
            options(nostack),
        );
    }
    if faulted == 0 {
        Ok(())
    } else {
        Err(AccessFault { esr, far: Ipa(far) })
    }
}

/// A host build (e.g. `cargo clippy --workspace`) has no VSpace to probe: like the host call
/// backend refusing every call, every probe reports an abort (syndrome 0).
#[cfg(not(all(target_arch = "aarch64", target_os = "none")))]
pub fn read_u64(address: Ipa) -> Result<u64, AccessFault> {
    Err(AccessFault {
        esr: 0,
        far: address,
    })
}

/// See [`read_u64`]'s host version: every probe reports an abort.
#[cfg(not(all(target_arch = "aarch64", target_os = "none")))]
pub fn write_u64(address: Ipa, _value: u64) -> Result<(), AccessFault> {
    Err(AccessFault {
        esr: 0,
        far: address,
    })
}
