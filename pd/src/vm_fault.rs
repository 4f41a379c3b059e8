//! A guest's faults as its VMM's `fault()` handler sees them, decoded, and the replies that
//! resume it (docs/ABI.md, "VM faults"). Decode, then dispatch (STYLE rule 17): the handler
//! matches on [`VmFault`] and never reads a message register itself.
//!
//! | label | [`VmFault`] | replies that make sense |
//! | --- | --- | --- |
//! | 3 `FAULT_VM_DATA_ABORT` | `DataAbort` | `skip()` after an emulated write, `skip_with_read(v)` after a read |
//! | 4 `FAULT_VM_ABORT` | `Abort` | `retry()` once the page is there, or `stop()` |
//! | 5, 6 `FAULT_VM_HVC`, `FAULT_VM_SMC` | `Hvc`, `Smc` | `skip_with_results([x0, x1, x2, x3])` |
//! | 7 `FAULT_VM_POWER` | `Power` | `stop()` (the VM or vCPU is off) |
//! | 8 `FAULT_VM_VPPI` | `Vppi` | inject, acknowledge, `retry()` |
//! | 9 `FAULT_VM_EXCEPTION` | `Exception` | `stop()` |

use crate::message::{self, MessageInfo, MESSAGE_REGISTERS};
use crate::Ipa;
pub use frameshift_abi::vcpu::DataAccess;
use frameshift_abi::vcpu::{
    FAULT_VM_ABORT, FAULT_VM_DATA_ABORT, FAULT_VM_EXCEPTION, FAULT_VM_HVC, FAULT_VM_POWER,
    FAULT_VM_SMC, FAULT_VM_VPPI, RESUME_RETRY, RESUME_SKIP,
};

/// One fault of a VM's vCPU.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VmFault {
    /// A data abort the VMM may emulate: MMIO (for a protected VM, on a page it registered).
    DataAbort {
        /// The faulting IPA.
        ipa: Ipa,
        /// The access, from the syndrome.
        access: DataAccess,
        /// The value of a write (0 for a read, or without a valid syndrome).
        value: u64,
        /// `ESR_EL2`.
        esr: u64,
        /// The faulting PC (0 for a protected VM).
        pc: u64,
    },
    /// An abort the VMM may not emulate (for a protected VM: an unregistered MMIO page, or its
    /// own memory unmapped).
    Abort {
        /// The faulting IPA.
        ipa: Ipa,
        /// `ESR_EL2`.
        esr: u64,
    },
    /// An `HVC` the hypervisor does not serve: the guest's `x0`-`x7`.
    Hvc {
        /// `x0`-`x7`.
        x: [u64; 8],
    },
    /// An `SMC` (always forwarded): the guest's `x0`-`x7`.
    Smc {
        /// `x0`-`x7`.
        x: [u64; 8],
    },
    /// PSCI `SYSTEM_OFF`, `SYSTEM_RESET` or `CPU_OFF`: the VM (or the vCPU) has stopped.
    Power {
        /// The PSCI function id.
        function: u64,
    },
    /// The virtual timer's PPI fired.
    Vppi {
        /// Its INTID.
        irq: u64,
    },
    /// Any other exception the hypervisor does not handle.
    Exception {
        /// `ESR_EL2`.
        esr: u64,
        /// The faulting PC (0 for a protected VM).
        pc: u64,
    },
}

/// A fault label that is not a VM's (a child PD's `FAULT_STAGE2_ABORT`/`FAULT_UNKNOWN`, or a
/// label this runtime does not know).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NotAVmFault {
    /// The label.
    pub label: u64,
}

impl VmFault {
    /// Decodes a fault message: its label and message registers MR0-MR7.
    pub const fn decode(
        message: MessageInfo,
        mrs: &[u64; MESSAGE_REGISTERS],
    ) -> Result<Self, NotAVmFault> {
        let fault = match message.label() {
            FAULT_VM_DATA_ABORT => Self::DataAbort {
                ipa: Ipa(mrs[0]),
                access: DataAccess::from_word(mrs[1]),
                value: mrs[2],
                esr: mrs[3],
                pc: mrs[4],
            },
            FAULT_VM_ABORT => Self::Abort {
                ipa: Ipa(mrs[0]),
                esr: mrs[1],
            },
            FAULT_VM_HVC => Self::Hvc { x: *mrs },
            FAULT_VM_SMC => Self::Smc { x: *mrs },
            FAULT_VM_POWER => Self::Power { function: mrs[0] },
            FAULT_VM_VPPI => Self::Vppi { irq: mrs[0] },
            FAULT_VM_EXCEPTION => Self::Exception {
                esr: mrs[0],
                pc: mrs[1],
            },
            label => return Err(NotAVmFault { label }),
        };
        Ok(fault)
    }

    /// Decodes the fault the `fault()` handler was given: `message` and the PD's message
    /// registers, which the runtime loaded with the event.
    pub fn from_message(message: MessageInfo) -> Result<Self, NotAVmFault> {
        let mrs = core::array::from_fn(message::get_mr);
        Self::decode(message, &mrs)
    }
}

/// How a `fault()` handler answers a VM fault.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VmReply {
    /// No reply: the vCPU stays stopped.
    Stop,
    /// Retry the faulting instruction, registers unchanged.
    Retry,
    /// Move past the faulting instruction after applying `registers[..count]` (MR0..): the
    /// value of an emulated read, or an `HVC`/`SMC`'s `x0`-`x3`.
    Skip {
        /// MR0-MR3.
        registers: [u64; 4],
        /// How many of them the reply carries.
        count: usize,
    },
}

impl VmReply {
    /// Leave the vCPU stopped.
    pub const fn stop() -> Self {
        Self::Stop
    }

    /// Retry the faulting instruction.
    pub const fn retry() -> Self {
        Self::Retry
    }

    /// Move past the faulting instruction (an emulated write).
    pub const fn skip() -> Self {
        Self::Skip {
            registers: [0; 4],
            count: 0,
        }
    }

    /// Move past an emulated read that returned `value` (the hypervisor truncates and extends
    /// it as the syndrome says).
    pub const fn skip_with_read(value: u64) -> Self {
        Self::Skip {
            registers: [value, 0, 0, 0],
            count: 1,
        }
    }

    /// Move past an `HVC`/`SMC`, which returns `x0`-`x3` = `results`.
    pub const fn skip_with_results(results: [u64; 4]) -> Self {
        Self::Skip {
            registers: results,
            count: 4,
        }
    }

    /// The reply's message info and MR0-MR3, or `None` for no reply.
    pub const fn encode(&self) -> Option<(MessageInfo, [u64; 4])> {
        match *self {
            Self::Stop => None,
            Self::Retry => Some((MessageInfo::new(RESUME_RETRY, 0), [0; 4])),
            Self::Skip { registers, count } => {
                Some((MessageInfo::new(RESUME_SKIP, count), registers))
            }
        }
    }

    /// What `fault()` returns: loads the reply's message registers and gives its message info.
    pub fn send(self) -> Option<MessageInfo> {
        let (message, registers) = self.encode()?;
        for (index, value) in registers.into_iter().enumerate() {
            message::set_mr(index, value);
        }
        Some(message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::get_mr;
    use frameshift_abi::pd_call::{FAULT_STAGE2_ABORT, FAULT_UNKNOWN};

    fn decode(label: u64, mrs: [u64; 8]) -> Result<VmFault, NotAVmFault> {
        VmFault::decode(MessageInfo::new(label, 8), &mrs)
    }

    #[test]
    fn a_data_abort_decodes_ipa_access_and_value() {
        // `str w1, [x0]` at the UART: ISV, word, register 1, write.
        let access = DataAccess::from_esr(0x9200_0000 | 1 << 24 | 2 << 22 | 1 << 16 | 1 << 6);
        let fault = decode(
            3,
            [0x0900_0000, access.to_word(), 0x41, 0x9300_0046, 0, 0, 0, 0],
        );
        assert_eq!(
            fault,
            Ok(VmFault::DataAbort {
                ipa: Ipa(0x0900_0000),
                access,
                value: 0x41,
                esr: 0x9300_0046,
                pc: 0,
            })
        );
        let Ok(VmFault::DataAbort { access, .. }) = fault else {
            unreachable!()
        };
        assert!(access.valid && access.write && access.bytes() == 4 && access.register == 1);
    }

    #[test]
    fn every_vm_label_decodes_and_others_are_refused() {
        let mrs = [1, 2, 3, 4, 5, 6, 7, 8];
        assert_eq!(
            decode(4, mrs),
            Ok(VmFault::Abort {
                ipa: Ipa(1),
                esr: 2
            })
        );
        assert_eq!(decode(5, mrs), Ok(VmFault::Hvc { x: mrs }));
        assert_eq!(decode(6, mrs), Ok(VmFault::Smc { x: mrs }));
        assert_eq!(decode(7, mrs), Ok(VmFault::Power { function: 1 }));
        assert_eq!(decode(8, mrs), Ok(VmFault::Vppi { irq: 1 }));
        assert_eq!(decode(9, mrs), Ok(VmFault::Exception { esr: 1, pc: 2 }));
        for label in [0, FAULT_STAGE2_ABORT, FAULT_UNKNOWN, 10, 1 << 40] {
            assert_eq!(decode(label, mrs), Err(NotAVmFault { label }));
        }
    }

    #[test]
    fn from_message_reads_the_message_registers() {
        for (index, value) in [0x0a00_0008u64, 0x8000_0006, 0, 0, 0]
            .into_iter()
            .enumerate()
        {
            message::set_mr(index, value);
        }
        let fault = VmFault::from_message(MessageInfo::new(3, 5));
        let Ok(VmFault::DataAbort { ipa, access, .. }) = fault else {
            panic!("{fault:?}")
        };
        assert_eq!(ipa, Ipa(0x0a00_0008));
        assert!(access.valid && !access.write && access.bytes() == 8);
    }

    #[test]
    fn replies_encode_label_count_and_registers() {
        assert_eq!(VmReply::stop().encode(), None);
        assert_eq!(
            VmReply::retry().encode(),
            Some((MessageInfo::new(0, 0), [0; 4]))
        );
        assert_eq!(
            VmReply::skip().encode(),
            Some((MessageInfo::new(1, 0), [0; 4]))
        );
        assert_eq!(
            VmReply::skip_with_read(0x60).encode(),
            Some((MessageInfo::new(1, 1), [0x60, 0, 0, 0]))
        );
        assert_eq!(
            VmReply::skip_with_results([u64::MAX, 2, 3, 4]).encode(),
            Some((MessageInfo::new(1, 4), [u64::MAX, 2, 3, 4]))
        );
    }

    #[test]
    fn send_loads_the_message_registers() {
        let message = VmReply::skip_with_results([9, 8, 7, 6]).send();
        assert_eq!(message, Some(MessageInfo::new(1, 4)));
        assert_eq!([get_mr(0), get_mr(1), get_mr(2), get_mr(3)], [9, 8, 7, 6]);
        assert_eq!(VmReply::stop().send(), None);
    }
}
