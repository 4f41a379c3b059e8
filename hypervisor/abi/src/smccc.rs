//! SMCCC function identifiers and return codes used by Frameshift (SMCCC v1.4, Arm DEN0028).
//!
//! Guest-facing identifiers follow pKVM's protected-guest ABI so that a pKVM guest runs unchanged.

/// `SMCCC_VERSION`.
pub const SMCCC_VERSION: u32 = 0x8000_0000;
/// Vendor-specific hypervisor service: call UID / `FEATURES` bitmap query (pKVM `KVM_FUNC_FEATURES`).
pub const VENDOR_HYP_FEATURES: u32 = 0x8600_0000;
/// Vendor-specific hypervisor service call UID query.
pub const VENDOR_HYP_CALL_UID: u32 = 0x8600_FF01;
/// pKVM `HYP_MEMINFO`: returns the protection granule in x0.
pub const HYP_MEMINFO: u32 = 0xC600_0002;
/// pKVM `MEM_SHARE`: x1 = IPA, x2 and x3 must be zero.
pub const MEM_SHARE: u32 = 0xC600_0003;
/// pKVM `MEM_UNSHARE`: x1 = IPA, x2 and x3 must be zero.
pub const MEM_UNSHARE: u32 = 0xC600_0004;
/// pKVM `MMIO_GUARD`.
pub const MMIO_GUARD: u32 = 0xC600_0007;

/// PSCI 0.2+ `PSCI_VERSION`.
pub const PSCI_VERSION: u32 = 0x8400_0000;
/// PSCI `SYSTEM_OFF`.
pub const PSCI_SYSTEM_OFF: u32 = 0x8400_0008;
/// PSCI `SYSTEM_RESET`.
pub const PSCI_SYSTEM_RESET: u32 = 0x8400_0009;
/// PSCI `CPU_ON` (SMC64).
pub const PSCI_CPU_ON: u32 = 0xC400_0003;

/// SMCCC return code: success.
pub const SUCCESS: i64 = 0;
/// SMCCC return code: function not supported.
pub const NOT_SUPPORTED: i64 = -1;
/// SMCCC return code: not required.
pub const NOT_REQUIRED: i64 = -2;
/// SMCCC return code: invalid parameter.
pub const INVALID_PARAMETER: i64 = -3;
