//! What the VMM answers when the hypervisor hands it a guest's call or trap.
//!
//! - A forwarded `HVC`/`SMC` (one the hypervisor does not serve: PSCI `MIGRATE_INFO_TYPE`, the
//!   SMCCC TRNG, ...) gets `NOT_SUPPORTED`, as SMCCC says for an unknown function.
//! - A trapped system-register access (`ESR_EL2` EC 0x18) is decoded. Writing `ICC_SGI1R_EL1`
//!   (trapped because `HCR_EL2.IMO` is set) sends SGIs, which the VMM delivers; every other
//!   trapped register (debug and PMU registers, which `MDCR_EL2` traps) reads as zero and
//!   ignores writes: Linux only resets and probes them at boot.

use frameshift_abi::smccc;

/// `ESR_EL2.EC` of a trapped `MSR`/`MRS`.
pub const EC_SYSREG: u64 = 0x18;

/// A trapped `MSR`/`MRS`, decoded from its `ESR_EL2`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SysRegAccess {
    /// `(op0, op1, CRn, CRm, op2)`.
    pub encoding: (u8, u8, u8, u8, u8),
    /// The general register (31 = `xzr`).
    pub register: u8,
    /// `MRS` (else `MSR`).
    pub read: bool,
}

/// `ICC_SGI1R_EL1`: S3_0_C12_C11_5.
pub const ICC_SGI1R_EL1: (u8, u8, u8, u8, u8) = (3, 0, 12, 11, 5);
/// `ICC_ASGI1R_EL1`: S3_0_C12_C11_6 (Linux sends none, but it is the same shape).
pub const ICC_ASGI1R_EL1: (u8, u8, u8, u8, u8) = (3, 0, 12, 11, 6);

impl SysRegAccess {
    /// Decodes `esr`, or `None` if it is not a trapped system-register access.
    pub fn decode(esr: u64) -> Option<Self> {
        if (esr >> 26) & 0x3F != EC_SYSREG {
            return None;
        }
        let field = |shift: u32, bits: u32| ((esr >> shift) & ((1 << bits) - 1)) as u8;
        Some(Self {
            encoding: (
                field(20, 2),
                field(14, 3),
                field(10, 4),
                field(1, 4),
                field(17, 3),
            ),
            register: field(5, 5),
            read: esr & 1 != 0,
        })
    }

    /// The access sends SGIs.
    pub fn is_sgi(&self) -> bool {
        !self.read && (self.encoding == ICC_SGI1R_EL1 || self.encoding == ICC_ASGI1R_EL1)
    }
}

/// The SGI a write of `value` to `ICC_SGI1R_EL1` sends, and to which vCPUs (bit `n` = vCPU
/// `n`), from vCPU `sender` in a VM of `vcpus` vCPUs. vCPU `n` has MPIDR Aff0 = `n` and the
/// other affinity levels 0, so a target list naming another cluster or range sends nothing.
pub fn sgi_targets(value: u64, sender: usize, vcpus: usize) -> (u32, u64) {
    let intid = ((value >> 24) & 0xF) as u32;
    let all: u64 = if vcpus >= 64 {
        u64::MAX
    } else {
        (1 << vcpus) - 1
    };
    let targets = if value & (1 << 40) != 0 {
        // IRM: every PE but the sender.
        all & !(1u64.checked_shl(sender as u32).unwrap_or(0))
    } else {
        let affinity_above = value & 0x00FF_00FF_00FF_0000; // Aff3, Aff2, Aff1
        let range = (value >> 44) & 0xF;
        if affinity_above != 0 || range != 0 {
            0
        } else {
            value & 0xFFFF & all
        }
    };
    (intid, targets)
}

/// The answer to a forwarded `HVC` or `SMC`: `x0` = `NOT_SUPPORTED`, `x1`-`x3` = 0.
pub const fn forwarded_call(_registers: &[u64; 8]) -> [u64; 4] {
    [smccc::NOT_SUPPORTED as u64, 0, 0, 0]
}

#[cfg(test)]
// A failed expectation in a test is the test failing, which is what panicking reports.
#[allow(clippy::expect_used, clippy::unwrap_used)]
mod tests {
    use super::*;

    /// `ESR_EL2` of an `MSR`/`MRS` (EC 0x18, IL 1) with these fields.
    fn esr(encoding: (u8, u8, u8, u8, u8), register: u8, read: bool) -> u64 {
        let (op0, op1, crn, crm, op2) = encoding;
        EC_SYSREG << 26
            | 1 << 25
            | u64::from(op0) << 20
            | u64::from(op2) << 17
            | u64::from(op1) << 14
            | u64::from(crn) << 10
            | u64::from(register) << 5
            | u64::from(crm) << 1
            | u64::from(read)
    }

    #[test]
    fn a_sgi1r_write_decodes() {
        // msr icc_sgi1r_el1, x3: EC 0x18, IL, op0 3, op2 5, op1 0, CRn 12, Rt 3, CRm 11, write.
        let access = SysRegAccess::decode(0x623A_3076).expect("a sysreg trap");
        assert_eq!(access.encoding, ICC_SGI1R_EL1);
        assert_eq!((access.register, access.read), (3, false));
        assert!(access.is_sgi());
        assert_eq!(
            SysRegAccess::decode(esr(ICC_SGI1R_EL1, 7, false)),
            Some(SysRegAccess {
                encoding: ICC_SGI1R_EL1,
                register: 7,
                read: false
            })
        );
    }

    #[test]
    fn other_traps_and_reads_are_not_sgis() {
        // mrs x1, mdscr_el1 (S2_0_C0_C2_2).
        let mdscr = SysRegAccess::decode(esr((2, 0, 0, 2, 2), 1, true)).unwrap();
        assert!(mdscr.read && !mdscr.is_sgi());
        let read_sgi = SysRegAccess::decode(esr(ICC_SGI1R_EL1, 1, true)).unwrap();
        assert!(!read_sgi.is_sgi());
        // A data abort (EC 0x24) and an HVC (EC 0x16) are not system-register traps.
        assert_eq!(SysRegAccess::decode(0x9300_0046), None);
        assert_eq!(SysRegAccess::decode(0x5A00_0000), None);
    }

    #[test]
    fn sgi_targets_follow_the_target_list_and_irm() {
        // SGI 1 to vCPU 1 (TargetList bit 1), from vCPU 0, two vCPUs.
        assert_eq!(sgi_targets(1 << 24 | 0b10, 0, 2), (1, 0b10));
        // TargetList names a vCPU that does not exist: dropped.
        assert_eq!(sgi_targets(2 << 24 | 0b100, 0, 2), (2, 0));
        // IRM: everyone but the sender.
        assert_eq!(sgi_targets(1 << 40 | 3 << 24, 1, 2), (3, 0b01));
        assert_eq!(sgi_targets(1 << 40, 0, 4), (0, 0b1110));
        // Another cluster (Aff1 = 1) or range: nobody.
        assert_eq!(sgi_targets(1 << 16 | 0b1, 0, 2), (0, 0));
        assert_eq!(sgi_targets(1 << 44 | 0b1, 0, 2), (0, 0));
    }

    #[test]
    fn forwarded_calls_are_not_supported() {
        let call = [0x8400_0006, 0, 0, 0, 0, 0, 0, 0];
        assert_eq!(forwarded_call(&call), [u64::MAX, 0, 0, 0]);
    }
}
