//! A VMM's control of its guest's vCPUs: Microkit's `microkit_vcpu_*` (rust-sel4's
//! `sel4-microkit` puts them on `Child`, and so does this runtime). docs/ABI.md, "VMM calls",
//! documents each call; a vCPU is named by its `<vcpu id>`, the child id its faults arrive with.
//!
//! A protected VM's vCPU can be started, and its registers read or written, only while it is
//! fresh (never run since the VM's memory was last populated): the VMM never steers a running
//! protected guest. Those refusals come back as [`CallError::Refused`].

use crate::call::{self, CallError, CallRegisters};
use crate::channel::Child;
use crate::Ipa;
use frameshift_abi::pd_call::{
    PD_VCPU_ACK_VPPI, PD_VCPU_INJECT_IRQ, PD_VCPU_READ_REG, PD_VCPU_RESTART, PD_VCPU_STOP,
    PD_VCPU_WRITE_REG,
};
use frameshift_abi::vcpu as registers;

/// A vCPU register, by the ABI's number (`frameshift_abi::vcpu::REG_*`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct VcpuRegister(u64);

impl VcpuRegister {
    /// The stack pointer of the guest's current exception level.
    pub const SP: Self = Self(registers::REG_SP);
    /// The program counter.
    pub const PC: Self = Self(registers::REG_PC);
    /// PSTATE (as `SPSR_EL2` holds it).
    pub const PSTATE: Self = Self(registers::REG_PSTATE);
    /// `SP_EL0`.
    pub const SP_EL0: Self = Self(registers::REG_SP_EL0);
    /// `SCTLR_EL1`.
    pub const SCTLR_EL1: Self = Self(registers::REG_SCTLR_EL1);
    /// `TTBR0_EL1`.
    pub const TTBR0_EL1: Self = Self(registers::REG_TTBR0_EL1);
    /// `TTBR1_EL1`.
    pub const TTBR1_EL1: Self = Self(registers::REG_TTBR1_EL1);
    /// `TCR_EL1`.
    pub const TCR_EL1: Self = Self(registers::REG_TCR_EL1);
    /// `MAIR_EL1`.
    pub const MAIR_EL1: Self = Self(registers::REG_MAIR_EL1);
    /// `VBAR_EL1`.
    pub const VBAR_EL1: Self = Self(registers::REG_VBAR_EL1);
    /// `ELR_EL1`.
    pub const ELR_EL1: Self = Self(registers::REG_ELR_EL1);
    /// `SPSR_EL1`.
    pub const SPSR_EL1: Self = Self(registers::REG_SPSR_EL1);
    /// `ESR_EL1`.
    pub const ESR_EL1: Self = Self(registers::REG_ESR_EL1);
    /// `FAR_EL1`.
    pub const FAR_EL1: Self = Self(registers::REG_FAR_EL1);
    /// `TPIDR_EL1`.
    pub const TPIDR_EL1: Self = Self(registers::REG_TPIDR_EL1);
    /// `CNTV_CTL_EL0`.
    pub const CNTV_CTL_EL0: Self = Self(registers::REG_CNTV_CTL_EL0);
    /// `CNTV_CVAL_EL0`.
    pub const CNTV_CVAL_EL0: Self = Self(registers::REG_CNTV_CVAL_EL0);
    /// `MPIDR_EL1` as the vCPU sees it (read only).
    pub const MPIDR_EL1: Self = Self(registers::REG_MPIDR_EL1);

    /// General register `x<n>`, `n` in 0..=30. A larger `n` is a bug in the VMM and panics (at
    /// compile time in a `const`).
    pub const fn x(n: u8) -> Self {
        assert!(n as u64 <= registers::REG_X30, "x0..x30 only");
        Self(n as u64)
    }

    /// The register with ABI number `number`, if there is one.
    pub const fn from_number(number: u64) -> Option<Self> {
        if number < registers::REG_COUNT {
            Some(Self(number))
        } else {
            None
        }
    }

    /// The ABI number.
    pub const fn number(self) -> u64 {
        self.0
    }
}

fn vcpu_call(function: u32, vcpu: Child, arguments: &[u64]) -> Result<CallRegisters, CallError> {
    let mut registers = CallRegisters::new(function);
    registers.0[1] = vcpu.index() as u64;
    for (slot, argument) in registers.0[2..].iter_mut().zip(arguments) {
        *slot = *argument;
    }
    call::hvc(&mut registers);
    registers.result().map(|()| registers)
}

impl Child {
    /// Start or restart this vCPU at `entry` (EL1h, interrupts masked, MMU off), with the
    /// registers it has (Microkit `microkit_vcpu_restart`).
    pub fn vcpu_restart(self, entry: Ipa) -> Result<(), CallError> {
        vcpu_call(PD_VCPU_RESTART, self, &[entry.get()]).map(|_| ())
    }

    /// Stop this vCPU where it is (Microkit `microkit_vcpu_stop`).
    pub fn vcpu_stop(self) -> Result<(), CallError> {
        vcpu_call(PD_VCPU_STOP, self, &[]).map(|_| ())
    }

    /// Read one of this vCPU's registers.
    pub fn vcpu_read_reg(self, register: VcpuRegister) -> Result<u64, CallError> {
        vcpu_call(PD_VCPU_READ_REG, self, &[register.number()]).map(|registers| registers.0[1])
    }

    /// Write one of this vCPU's registers (only while it does not run).
    pub fn vcpu_write_reg(self, register: VcpuRegister, value: u64) -> Result<(), CallError> {
        vcpu_call(PD_VCPU_WRITE_REG, self, &[register.number(), value]).map(|_| ())
    }

    /// Inject virtual interrupt `irq` through a GICv3 list register (Microkit
    /// `microkit_vcpu_arm_inject_irq`).
    pub fn vcpu_inject_irq(self, irq: u16, priority: u8, group: u8) -> Result<(), CallError> {
        let arguments = [u64::from(irq), u64::from(priority), u64::from(group)];
        vcpu_call(PD_VCPU_INJECT_IRQ, self, &arguments).map(|_| ())
    }

    /// Let virtual PPI `irq` fire again (Microkit `microkit_vcpu_arm_ack_vppi`).
    pub fn vcpu_ack_vppi(self, irq: u16) -> Result<(), CallError> {
        vcpu_call(PD_VCPU_ACK_VPPI, self, &[u64::from(irq)]).map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use frameshift_abi::smccc;
    use std::cell::RefCell;
    use std::rc::Rc;
    use std::vec::Vec;

    /// A fake that logs `x0`-`x4` and answers `x0` = `status`, `x1` = 0x77.
    fn fake(status: i64) -> Rc<RefCell<Vec<[u64; 5]>>> {
        let log = Rc::new(RefCell::new(Vec::new()));
        let calls = log.clone();
        call::install_fake(move |registers| {
            let r = registers.0;
            calls.borrow_mut().push([r[0], r[1], r[2], r[3], r[4]]);
            registers.0 = [0; 12];
            registers.0[0] = status as u64;
            registers.0[1] = 0x77;
        });
        log
    }

    #[test]
    fn each_call_names_the_vcpu_and_its_arguments() {
        let log = fake(0);
        let vcpu = Child::new(3);
        assert_eq!(vcpu.vcpu_write_reg(VcpuRegister::x(0), 0xF00D), Ok(()));
        assert_eq!(vcpu.vcpu_restart(Ipa(0x4000_0000)), Ok(()));
        assert_eq!(vcpu.vcpu_read_reg(VcpuRegister::PC), Ok(0x77));
        assert_eq!(vcpu.vcpu_inject_irq(27, 0xA0, 1), Ok(()));
        assert_eq!(vcpu.vcpu_ack_vppi(27), Ok(()));
        assert_eq!(vcpu.vcpu_stop(), Ok(()));
        assert_eq!(
            *log.borrow(),
            [
                [0xC600_010A, 3, 0, 0xF00D, 0],
                [0xC600_0107, 3, 0x4000_0000, 0, 0],
                [0xC600_0109, 3, 32, 0, 0],
                [0xC600_010B, 3, 27, 0xA0, 1],
                [0xC600_010C, 3, 27, 0, 0],
                [0xC600_0108, 3, 0, 0, 0],
            ]
        );
    }

    #[test]
    fn a_refusal_is_an_error_and_no_value() {
        let _log = fake(smccc::INVALID_PARAMETER);
        let refused = Err(CallError::Refused(smccc::INVALID_PARAMETER));
        assert_eq!(Child::new(0).vcpu_read_reg(VcpuRegister::x(1)), refused);
        assert_eq!(
            Child::new(0).vcpu_restart(Ipa(0x4000_0000)),
            Err(CallError::Refused(smccc::INVALID_PARAMETER))
        );
    }

    #[test]
    fn register_numbers_are_the_abi_ones() {
        assert_eq!(VcpuRegister::x(30).number(), 30);
        assert_eq!(VcpuRegister::SP.number(), 31);
        assert_eq!(VcpuRegister::MPIDR_EL1.number(), 48);
        assert_eq!(VcpuRegister::from_number(48), Some(VcpuRegister::MPIDR_EL1));
        assert_eq!(VcpuRegister::from_number(49), None);
    }

    #[test]
    #[should_panic(expected = "x0..x30 only")]
    fn x31_is_not_a_general_register() {
        let _ = VcpuRegister::x(31);
    }
}
