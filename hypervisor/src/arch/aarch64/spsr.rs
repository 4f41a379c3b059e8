//! `SPSR_EL2` values the hypervisor writes (Arm ARM C5.2.19, `SPSR_EL2`): the PSTATE a domain
//! is entered with.

/// M[3:0] = 0b0101: EL1 with its own stack pointer (EL1h), AArch64 (M[4] = 0).
const M_EL1H: u64 = 0b0101;
/// F, I, A, D: FIQ, IRQ, SError and debug exceptions masked.
const DAIF: u64 = 0b1111 << 6;

/// A context's first entry, and where an exception injected at its EL1 vector leaves it:
/// EL1h, AArch64, with D, A, I and F masked. The domain can unmask its own exceptions;
/// physical interrupts still go to EL2 (`HCR_EL2.IMO`/`FMO`).
pub const SPSR_EL1H_MASKED: u64 = DAIF | M_EL1H;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_is_el1h_with_everything_masked() {
        // The value DESIGN.md 9 verified on QEMU 7.2.
        assert_eq!(SPSR_EL1H_MASKED, 0x3C5);
    }
}
