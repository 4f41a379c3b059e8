//! vCPU register numbers and the encodings of a virtual machine's faults, shared by the VMM (the
//! PD runtime) and the hypervisor. docs/ABI.md, "VMM calls" and "VM faults", is the reference.
//!
//! A VM's fault reaches its parent PD's `fault` handler as an `EVENT_FAULT` whose child id
//! (`x11`) is the faulting vCPU's id and whose `MessageInfo` label is one of the `FAULT_VM_*`
//! values below; the message registers MR0.. carry the details. The VMM answers with
//! `PD_REPLY_RECV`: `REPLY_NONE` leaves the vCPU stopped, `REPLY_MESSAGE` resumes it as the
//! reply's label ([`RESUME_RETRY`] or [`RESUME_SKIP`]) says.

/// `x0`..=`x30` are register numbers 0..=30.
pub const REG_X30: u64 = 30;
/// The guest's stack pointer at its current exception level (`SP_EL1` for EL1h).
pub const REG_SP: u64 = 31;
/// The program counter (`ELR_EL2` while the vCPU is off the CPU).
pub const REG_PC: u64 = 32;
/// The guest's PSTATE (`SPSR_EL2` while the vCPU is off the CPU).
pub const REG_PSTATE: u64 = 33;
/// `SP_EL0`.
pub const REG_SP_EL0: u64 = 34;
/// `SCTLR_EL1`.
pub const REG_SCTLR_EL1: u64 = 35;
/// `TTBR0_EL1`.
pub const REG_TTBR0_EL1: u64 = 36;
/// `TTBR1_EL1`.
pub const REG_TTBR1_EL1: u64 = 37;
/// `TCR_EL1`.
pub const REG_TCR_EL1: u64 = 38;
/// `MAIR_EL1`.
pub const REG_MAIR_EL1: u64 = 39;
/// `VBAR_EL1`.
pub const REG_VBAR_EL1: u64 = 40;
/// `ELR_EL1`.
pub const REG_ELR_EL1: u64 = 41;
/// `SPSR_EL1`.
pub const REG_SPSR_EL1: u64 = 42;
/// `ESR_EL1`.
pub const REG_ESR_EL1: u64 = 43;
/// `FAR_EL1`.
pub const REG_FAR_EL1: u64 = 44;
/// `TPIDR_EL1`.
pub const REG_TPIDR_EL1: u64 = 45;
/// `CNTV_CTL_EL0`.
pub const REG_CNTV_CTL_EL0: u64 = 46;
/// `CNTV_CVAL_EL0`.
pub const REG_CNTV_CVAL_EL0: u64 = 47;
/// `MPIDR_EL1` as the vCPU sees it (`VMPIDR_EL2`); read only.
pub const REG_MPIDR_EL1: u64 = 48;
/// One past the last register number.
pub const REG_COUNT: u64 = 49;

/// Fault label: a stage-2 data abort the VMM may emulate (an MMIO access; for a protected VM,
/// only on a page the guest registered with `MMIO_GUARD`). MR0 = IPA, MR1 = [`DataAccess`]
/// word, MR2 = the value written (writes with a valid syndrome; else 0), MR3 = `ESR_EL2`, MR4 =
/// the faulting PC (0 for a protected VM, whose PC the VMM never sees).
pub const FAULT_VM_DATA_ABORT: u64 = 3;
/// Fault label: a stage-2 abort the VMM may not emulate: a protected VM's access to an MMIO
/// page it did not register, an instruction fetch outside its memory, or any access to its own
/// memory range that is not mapped. MR0 = IPA, MR1 = `ESR_EL2`. A `RESUME_RETRY` reply retries
/// the access (useful after the VMM donated the page); `RESUME_SKIP` is refused.
pub const FAULT_VM_ABORT: u64 = 4;
/// Fault label: an `HVC` the hypervisor does not serve itself (an unknown function id).
/// MR0-MR7 = `x0`-`x7`. A `RESUME_SKIP` reply's MR0-MR3 become `x0`-`x3`.
pub const FAULT_VM_HVC: u64 = 5;
/// Fault label: an `SMC` from the guest (always trapped). MR0-MR7 = `x0`-`x7`; replies as
/// [`FAULT_VM_HVC`].
pub const FAULT_VM_SMC: u64 = 6;
/// Fault label: the guest called PSCI `SYSTEM_OFF`, `SYSTEM_RESET` or `CPU_OFF`: MR0 = the
/// PSCI function id. The VM (for `CPU_OFF`, the vCPU) is stopped; the reply is ignored.
pub const FAULT_VM_POWER: u64 = 7;
/// Fault label: a virtual PPI fired (the guest's virtual timer, INTID 27): MR0 = INTID. It stays
/// masked until the VMM calls `PD_VCPU_ACK_VPPI`; the VMM normally injects it first.
pub const FAULT_VM_VPPI: u64 = 8;
/// Fault label: any other exception the hypervisor does not handle (a trapped system register,
/// an illegal state). MR0 = `ESR_EL2`, MR1 = the faulting PC (0 for a protected VM).
pub const FAULT_VM_EXCEPTION: u64 = 9;

/// Reply label: resume the vCPU at the faulting instruction, registers unchanged.
pub const RESUME_RETRY: u64 = 0;
/// Reply label: resume the vCPU after the faulting instruction (by `ESR_EL2.IL`). For an
/// emulated read, MR0 is the value read, written to the destination register as the syndrome
/// says (size, sign extension); for an `HVC`/`SMC`, MR0-MR3 become `x0`-`x3`.
pub const RESUME_SKIP: u64 = 1;

/// The decoded access of a [`FAULT_VM_DATA_ABORT`] (MR1), from `ESR_EL2`'s ISS when its ISV bit
/// is set (Arm ARM D17.2.40, "ISS encoding for a Data Abort").
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct DataAccess {
    /// The syndrome is valid: size, register and sign are known. Without it (a load/store pair,
    /// a write-back addressing mode) the access cannot be emulated from the syndrome alone.
    pub valid: bool,
    /// A write (else a read).
    pub write: bool,
    /// Access size as log2 bytes: 0 = byte, 1 = halfword, 2 = word, 3 = doubleword.
    pub size_log2: u8,
    /// The register transferred (`x0`..`x30`; 31 means `xzr`).
    pub register: u8,
    /// A read is sign extended.
    pub sign_extend: bool,
    /// The register is 64 bits wide (else 32: a `w` register).
    pub sixty_four: bool,
}

impl DataAccess {
    const VALID: u64 = 1 << 31;
    const WRITE: u64 = 1;
    const SIGN: u64 = 1 << 16;
    const SIXTY_FOUR: u64 = 1 << 17;

    /// Decodes a data abort's `ESR_EL2`.
    pub const fn from_esr(esr: u64) -> Self {
        Self {
            valid: esr & (1 << 24) != 0,
            write: esr & (1 << 6) != 0,
            size_log2: ((esr >> 22) & 0b11) as u8,
            register: ((esr >> 16) & 0b1_1111) as u8,
            sign_extend: esr & (1 << 21) != 0,
            sixty_four: esr & (1 << 15) != 0,
        }
    }

    /// The MR1 word: bit 31 valid, bit 0 write, bits 2:1 size, bits 12:8 register, bit 16 sign
    /// extend, bit 17 sixty-four.
    pub const fn to_word(self) -> u64 {
        (if self.valid { Self::VALID } else { 0 })
            | (if self.write { Self::WRITE } else { 0 })
            | (self.size_log2 as u64 & 0b11) << 1
            | (self.register as u64 & 0b1_1111) << 8
            | (if self.sign_extend { Self::SIGN } else { 0 })
            | (if self.sixty_four { Self::SIXTY_FOUR } else { 0 })
    }

    /// Decodes an MR1 word.
    pub const fn from_word(word: u64) -> Self {
        Self {
            valid: word & Self::VALID != 0,
            write: word & Self::WRITE != 0,
            size_log2: ((word >> 1) & 0b11) as u8,
            register: ((word >> 8) & 0b1_1111) as u8,
            sign_extend: word & Self::SIGN != 0,
            sixty_four: word & Self::SIXTY_FOUR != 0,
        }
    }

    /// Access size in bytes.
    pub const fn bytes(self) -> u64 {
        1 << self.size_log2
    }

    /// The value a read of `raw` leaves in the destination register: truncated to the access
    /// size, sign extended if asked, then cut to 32 bits for a `w` register.
    pub const fn read_result(self, raw: u64) -> u64 {
        let bits = 8 * self.bytes() as u32;
        let mut value = if bits == 64 {
            raw
        } else {
            raw & ((1u64 << bits) - 1)
        };
        if self.sign_extend && bits < 64 && value & (1 << (bits - 1)) != 0 {
            value |= !0u64 << bits;
        }
        if !self.sixty_four {
            value &= 0xFFFF_FFFF;
        }
        value
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_str_w1_syndrome_decodes() {
        // ISV, SAS=2 (word), SRT=1, WnR: `str w1, [x0]`.
        let esr = 0x9200_0000 | 1 << 24 | 2 << 22 | 1 << 16 | 1 << 6 | 0x7;
        let access = DataAccess::from_esr(esr);
        assert_eq!(
            access,
            DataAccess {
                valid: true,
                write: true,
                size_log2: 2,
                register: 1,
                sign_extend: false,
                sixty_four: false
            }
        );
        assert_eq!(DataAccess::from_word(access.to_word()), access);
    }

    #[test]
    fn words_round_trip_for_every_field_combination() {
        for bits in 0..(1u32 << 10) {
            let access = DataAccess {
                valid: bits & 1 != 0,
                write: bits & 2 != 0,
                size_log2: ((bits >> 2) & 3) as u8,
                register: (bits >> 4) as u8 & 0b1_1111 | (bits as u8 & 1),
                sign_extend: bits & 0x100 != 0,
                sixty_four: bits & 0x200 != 0,
            };
            assert_eq!(DataAccess::from_word(access.to_word()), access);
        }
    }

    #[test]
    fn reads_truncate_and_extend_as_the_syndrome_says() {
        let byte = |sign, wide| DataAccess {
            valid: true,
            size_log2: 0,
            sign_extend: sign,
            sixty_four: wide,
            ..DataAccess::default()
        };
        assert_eq!(byte(false, true).read_result(0x1234_5680), 0x80);
        assert_eq!(byte(true, true).read_result(0x80), 0xFFFF_FFFF_FFFF_FF80);
        assert_eq!(byte(true, false).read_result(0x80), 0xFFFF_FF80);
        let double = DataAccess {
            valid: true,
            size_log2: 3,
            sixty_four: true,
            ..DataAccess::default()
        };
        assert_eq!(double.read_result(u64::MAX), u64::MAX);
    }
}
