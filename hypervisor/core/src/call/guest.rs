//! Guest calls (docs/ABI.md family 1, SMCCC `HVC #0` from a virtual machine) as a type: one
//! variant per call the hypervisor serves at EL2, with typed arguments. Any other function id
//! is [`CallError::NotSupported`], which the kernel hands to the VM's VMM as `FAULT_VM_HVC`.

use frameshift_abi::guest_call::{
    CONSOLE_WRITE_MAX, FS_CONSOLE_WRITE, FS_MEM_STATE, HYP_MEMINFO, MEM_RELINQUISH, MEM_SHARE,
    MEM_UNSHARE, MMIO_GUARD, PSCI_AFFINITY_INFO, PSCI_CPU_OFF, PSCI_CPU_ON, PSCI_FEATURES,
    PSCI_SYSTEM_OFF, PSCI_SYSTEM_RESET, PSCI_VERSION, SMCCC_ARCH_FEATURES, SMCCC_VERSION,
    VENDOR_HYP_CALL_UID, VENDOR_HYP_FEATURES,
};

use super::{Bytes, CallError, PageRange, PsciError, Reply};
use crate::addr::{Ipa, IPA_BITS};
use crate::domain::Registers;

/// The affinity fields of an MPIDR (Aff3 and Aff2-Aff0), as PSCI compares a target.
const MPIDR_AFFINITY: u64 = 0xFF_00FF_FFFF;

/// One guest call, decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum GuestCall {
    /// `SMCCC_VERSION`.
    SmcccVersion,
    /// `SMCCC_ARCH_FEATURES`: is `function` implemented?
    SmcccArchFeatures {
        /// The function id asked about (`w1`).
        function: u32,
    },
    /// `PSCI_VERSION`.
    PsciVersion,
    /// `PSCI_FEATURES`: is `function` implemented?
    PsciFeatures {
        /// The function id asked about (`w1`).
        function: u32,
    },
    /// `CPU_OFF`.
    CpuOff,
    /// `CPU_ON`.
    CpuOn {
        /// The target's affinity (Aff0 = its vCPU index), other MPIDR bits dropped.
        target: u64,
        /// Where it starts.
        entry: u64,
        /// Its `x0`.
        context: u64,
    },
    /// `AFFINITY_INFO` at level 0.
    AffinityInfo {
        /// The target's affinity.
        target: u64,
    },
    /// `SYSTEM_OFF`.
    SystemOff,
    /// `SYSTEM_RESET`.
    SystemReset,
    /// The vendor hypervisor service call UID.
    VendorUid,
    /// The vendor `FEATURES` bitmap.
    VendorFeatures,
    /// `HYP_MEMINFO`.
    HypMeminfo,
    /// `MEM_SHARE`.
    MemShare(PageRange),
    /// `MEM_UNSHARE`.
    MemUnshare(PageRange),
    /// `MEM_RELINQUISH`.
    MemRelinquish(PageRange),
    /// `MMIO_GUARD`: register the MMIO page at `page`.
    MmioGuard {
        /// A page-aligned IPA inside the IPA space.
        page: Ipa,
    },
    /// `FS_MEM_STATE`.
    MemState(PageRange),
    /// `FS_CONSOLE_WRITE`.
    ConsoleWrite(Bytes<{ CONSOLE_WRITE_MAX as usize }>),
}

/// Why a guest call was refused at decode, and how the refusal is written back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GuestCallError {
    /// The refusal.
    pub error: CallError,
    /// A range call (`MEM_SHARE`, `MEM_UNSHARE`, `MEM_RELINQUISH`): `x1` = 0 pages done.
    pub range: bool,
}

impl GuestCallError {
    /// The registers the refusal writes: `x0` = the code, and `x1` = 0 for a range call.
    pub fn reply(&self) -> Reply {
        if self.range {
            Reply::with_status(self.error.code(), &[0])
        } else {
            Reply::Status(self.error.code())
        }
    }
}

impl From<CallError> for GuestCallError {
    fn from(error: CallError) -> Self {
        Self {
            error,
            range: false,
        }
    }
}

impl GuestCall {
    /// Decodes the call in `registers` (function id in `w0`), or says why it is refused;
    /// [`CallError::NotSupported`] for an id the hypervisor does not serve.
    pub fn decode(registers: &Registers) -> Result<Self, GuestCallError> {
        let x = &registers.x;
        let zero = |registers: &[u64]| {
            if registers.iter().all(|&word| word == 0) {
                Ok(())
            } else {
                Err(CallError::Invalid("reserved argument not zero"))
            }
        };
        let range_call = |make: fn(PageRange) -> Self| {
            let range = zero(&x[3..4]).and_then(|()| PageRange::new(x[1], x[2], true));
            range
                .map(make)
                .map_err(|error| GuestCallError { error, range: true })
        };
        let call = match x[0] as u32 {
            SMCCC_VERSION => Self::SmcccVersion,
            SMCCC_ARCH_FEATURES => Self::SmcccArchFeatures {
                function: x[1] as u32,
            },
            PSCI_VERSION => Self::PsciVersion,
            PSCI_FEATURES => Self::PsciFeatures {
                function: x[1] as u32,
            },
            PSCI_CPU_OFF => Self::CpuOff,
            PSCI_CPU_ON => Self::CpuOn {
                target: x[1] & MPIDR_AFFINITY,
                entry: x[2],
                context: x[3],
            },
            PSCI_AFFINITY_INFO => {
                if x[2] != 0 {
                    return Err(CallError::Psci(PsciError::InvalidParameters).into());
                }
                Self::AffinityInfo {
                    target: x[1] & MPIDR_AFFINITY,
                }
            }
            PSCI_SYSTEM_OFF => Self::SystemOff,
            PSCI_SYSTEM_RESET => Self::SystemReset,
            VENDOR_HYP_CALL_UID => Self::VendorUid,
            VENDOR_HYP_FEATURES => Self::VendorFeatures,
            HYP_MEMINFO => {
                zero(&x[1..4])?;
                Self::HypMeminfo
            }
            MEM_SHARE => return range_call(Self::MemShare),
            MEM_UNSHARE => return range_call(Self::MemUnshare),
            MEM_RELINQUISH => return range_call(Self::MemRelinquish),
            MMIO_GUARD => {
                zero(&x[2..4])?;
                let page = Ipa(x[1]);
                if !page.is_page_aligned() || x[1] >= 1 << IPA_BITS {
                    return Err(CallError::Invalid("not a page of the IPA space").into());
                }
                Self::MmioGuard { page }
            }
            FS_MEM_STATE => Self::MemState(PageRange::new(x[1], x[2], true)?),
            FS_CONSOLE_WRITE => Self::ConsoleWrite(Bytes::new(x[1], &x[2..7])?),
            _ => return Err(CallError::NotSupported.into()),
        };
        Ok(call)
    }
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    reason = "a test fails loudly on an unexpected error"
)]
mod tests {
    use super::*;
    use frameshift_abi::smccc::{INVALID_PARAMETER, NOT_SUPPORTED};

    fn decode(words: &[u64]) -> Result<GuestCall, GuestCallError> {
        let mut registers = Registers::default();
        registers.x[..words.len()].copy_from_slice(words);
        GuestCall::decode(&registers)
    }

    const IPA: u64 = 0x4000_0000;

    #[test]
    fn every_guest_call_decodes_with_its_typed_arguments() {
        let range = |pages| PageRange::new(IPA, pages, false).unwrap();
        let word = u64::from_le_bytes(*b"guest ok");
        let cases = [
            (vec_of(SMCCC_VERSION, &[]), GuestCall::SmcccVersion),
            (
                vec_of(SMCCC_ARCH_FEATURES, &[(7 << 32) | 0x8000_0001]),
                GuestCall::SmcccArchFeatures {
                    function: 0x8000_0001,
                },
            ),
            (vec_of(PSCI_VERSION, &[]), GuestCall::PsciVersion),
            (
                vec_of(PSCI_FEATURES, &[u64::from(PSCI_CPU_ON)]),
                GuestCall::PsciFeatures {
                    function: PSCI_CPU_ON,
                },
            ),
            (vec_of(PSCI_CPU_OFF, &[]), GuestCall::CpuOff),
            (
                vec_of(PSCI_CPU_ON, &[0x8000_0001, 0x4000_1000, 0xC0]),
                GuestCall::CpuOn {
                    target: 1,
                    entry: 0x4000_1000,
                    context: 0xC0,
                },
            ),
            (
                vec_of(PSCI_AFFINITY_INFO, &[1, 0]),
                GuestCall::AffinityInfo { target: 1 },
            ),
            (vec_of(PSCI_SYSTEM_OFF, &[]), GuestCall::SystemOff),
            (vec_of(PSCI_SYSTEM_RESET, &[]), GuestCall::SystemReset),
            (vec_of(VENDOR_HYP_CALL_UID, &[]), GuestCall::VendorUid),
            (vec_of(VENDOR_HYP_FEATURES, &[]), GuestCall::VendorFeatures),
            (vec_of(HYP_MEMINFO, &[0, 0, 0]), GuestCall::HypMeminfo),
            (
                vec_of(MEM_SHARE, &[IPA, 0, 0]),
                GuestCall::MemShare(range(1)),
            ),
            (
                vec_of(MEM_UNSHARE, &[IPA, 512, 0]),
                GuestCall::MemUnshare(range(512)),
            ),
            (
                vec_of(MEM_RELINQUISH, &[IPA, 3, 0]),
                GuestCall::MemRelinquish(range(3)),
            ),
            (
                vec_of(MMIO_GUARD, &[0x900_0000, 0, 0]),
                GuestCall::MmioGuard {
                    page: Ipa(0x900_0000),
                },
            ),
            (
                vec_of(FS_MEM_STATE, &[IPA, 0, 9]),
                GuestCall::MemState(range(1)),
            ),
            (
                vec_of(FS_CONSOLE_WRITE, &[8, word]),
                GuestCall::ConsoleWrite(Bytes::new(8, &[word]).unwrap()),
            ),
        ];
        for (words, expected) in cases {
            assert_eq!(decode(&words), Ok(expected), "{words:x?}");
        }
        // A split-mode guest may name the shared alias.
        let alias = IPA | 1 << 39;
        assert!(matches!(
            decode(&vec_of(MEM_SHARE, &[alias, 1, 0])),
            Ok(GuestCall::MemShare(PageRange { ipa: Ipa(a), pages: 1 })) if a == alias
        ));
    }

    fn vec_of(function: u32, rest: &[u64]) -> [u64; 8] {
        let mut words = [0u64; 8];
        words[0] = u64::from(function);
        words[1..=rest.len()].copy_from_slice(rest);
        words
    }

    #[test]
    fn malformed_guest_arguments_get_their_code_and_range_calls_report_no_page_done() {
        let invalid = |words: [u64; 8], range: bool| {
            let error = decode(&words).unwrap_err();
            assert!(matches!(error.error, CallError::Invalid(_)), "{words:x?}");
            assert_eq!(error.range, range, "{words:x?}");
            let mut registers = Registers::default();
            registers.x[1] = 77;
            error.reply().write(&mut registers);
            assert_eq!(registers.x[0] as i64, INVALID_PARAMETER);
            assert_eq!(registers.x[1], if range { 0 } else { 77 });
        };
        for function in [MEM_SHARE, MEM_UNSHARE, MEM_RELINQUISH] {
            invalid(vec_of(function, &[IPA + 8, 1, 0]), true);
            invalid(vec_of(function, &[IPA, 513, 0]), true);
            invalid(vec_of(function, &[IPA, 1, 1]), true);
            invalid(vec_of(function, &[(1 << 40) - 0x1000, 2, 0]), true);
        }
        invalid(vec_of(HYP_MEMINFO, &[1, 0, 0]), false);
        invalid(vec_of(HYP_MEMINFO, &[0, 0, 1]), false);
        invalid(vec_of(MMIO_GUARD, &[0x900_0004, 0, 0]), false);
        invalid(vec_of(MMIO_GUARD, &[1 << 40, 0, 0]), false);
        invalid(vec_of(MMIO_GUARD, &[0x900_0000, 1, 0]), false);
        invalid(vec_of(FS_MEM_STATE, &[IPA + 1, 1]), false);
        invalid(vec_of(FS_MEM_STATE, &[IPA, 513]), false);
        invalid(vec_of(FS_CONSOLE_WRITE, &[41]), false);
        let level = decode(&vec_of(PSCI_AFFINITY_INFO, &[0, 1])).unwrap_err();
        assert_eq!(level.error.code(), -2);
        // The largest legal values are taken.
        assert!(decode(&vec_of(FS_CONSOLE_WRITE, &[40])).is_ok());
        assert!(decode(&vec_of(MEM_SHARE, &[(1 << 40) - 0x1000, 1, 0])).is_ok());
    }

    #[test]
    fn an_unknown_guest_function_is_not_supported_and_pd_calls_are_unknown() {
        for function in [
            0xC600_0050u32,
            0xC600_0100,
            0xC600_0105,
            0xC300_0001,
            0x8000_8000,
        ] {
            let error = decode(&vec_of(function, &[])).unwrap_err();
            assert_eq!(error.error, CallError::NotSupported);
            assert_eq!(error.error.code(), NOT_SUPPORTED);
        }
    }
}
