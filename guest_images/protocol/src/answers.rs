//! How a Frameshift VMM answers the calls the hypervisor forwards to it (`FAULT_VM_HVC` for an
//! `HVC` it does not serve, `FAULT_VM_SMC` for every `SMC`). The answer names its origin, so a
//! guest can check that the call really went to its VMM, and what the VMM saw.
//!
//! | register | answer |
//! | --- | --- |
//! | `x0` | `NOT_SUPPORTED` (-1) |
//! | `x1` | [`VMM_HVC_MARK`] or [`VMM_SMC_MARK`] |
//! | `x2` | the `x0` (function identifier) the VMM saw |
//! | `x3` | the `x1` the VMM saw |

use frameshift_abi::smccc;

/// `x1` of the VMM's answer to a forwarded `HVC`: ASCII "VMM-HVC".
pub const VMM_HVC_MARK: u64 = u64::from_le_bytes(*b"VMM-HVC\0");
/// `x1` of the VMM's answer to a forwarded `SMC`: ASCII "VMM-SMC".
pub const VMM_SMC_MARK: u64 = u64::from_le_bytes(*b"VMM-SMC\0");

/// The conduit a forwarded call came through.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Conduit {
    /// `HVC #0`.
    Hvc,
    /// `SMC #0`.
    Smc,
}

/// The VMM's `x0`-`x3` for a forwarded call whose `x0`-`x7` were `registers`.
pub const fn forwarded_call_answer(conduit: Conduit, registers: &[u64; 8]) -> [u64; 4] {
    let mark = match conduit {
        Conduit::Hvc => VMM_HVC_MARK,
        Conduit::Smc => VMM_SMC_MARK,
    };
    [
        smccc::NOT_SUPPORTED as u64,
        mark,
        registers[0],
        registers[1],
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_answer_names_conduit_function_and_argument() {
        let call = [0xC600_0050, 0x1234, 0, 0, 0, 0, 0, 9];
        assert_eq!(
            forwarded_call_answer(Conduit::Hvc, &call),
            [u64::MAX, VMM_HVC_MARK, 0xC600_0050, 0x1234]
        );
        assert_eq!(forwarded_call_answer(Conduit::Smc, &call)[1], VMM_SMC_MARK);
        assert_ne!(VMM_HVC_MARK, VMM_SMC_MARK);
    }
}
