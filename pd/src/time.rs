//! The generic timer's physical counter, for PDs that pace themselves (the hypervisor lets EL1
//! read it: `CNTHCTL_EL2.EL1PCTEN`). Under QEMU's `-icount` it counts executed instructions, so
//! pacing by it is repeatable.

/// The physical counter (`CNTPCT_EL0`).
#[cfg(all(target_arch = "aarch64", target_os = "none"))]
pub fn counter() -> u64 {
    let value: u64;
    // SAFETY: reads a counter register into a fresh register; no memory, no stack. The ISB keeps
    // the read from being taken early, ahead of the code before it (Arm ARM D12.1.2).
    unsafe {
        core::arch::asm!("isb", "mrs {}, cntpct_el0", out(reg) value, options(nomem, nostack));
    }
    value
}

/// The counter's frequency in Hz (`CNTFRQ_EL0`).
#[cfg(all(target_arch = "aarch64", target_os = "none"))]
pub fn counter_frequency() -> u64 {
    let value: u64;
    // SAFETY: reads a read-only ID-like register into a fresh register; no memory, no stack.
    unsafe {
        core::arch::asm!("mrs {}, cntfrq_el0", out(reg) value, options(nomem, nostack));
    }
    value
}

/// A host build has no counter: time stands still.
#[cfg(not(all(target_arch = "aarch64", target_os = "none")))]
pub fn counter() -> u64 {
    0
}

/// A host build has no counter; 1 Hz keeps divisions by the frequency defined.
#[cfg(not(all(target_arch = "aarch64", target_os = "none")))]
pub fn counter_frequency() -> u64 {
    1
}
