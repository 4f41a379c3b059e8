//! Guest to hypervisor calls (ABI family 1): SMCCC `HVC #0` from a virtual machine, compatible
//! with KVM's and pKVM's protected-guest ABI, so that a guest written for pKVM runs unchanged.
//!
//! docs/ABI.md, "Guest to hypervisor", documents every call with its registers and errors. The
//! numbers below are facts of the published interfaces (SMCCC DEN0028, PSCI DEN0022, Linux's
//! `include/linux/arm-smccc.h` for the KVM vendor range); Frameshift's own calls take function
//! numbers in the KVM vendor range that neither KVM nor pKVM defines or reserves.
//!
//! Vendor hypervisor service function numbers (owner 6), as Linux 6.12 lists them:
//!
//! | number | call | who |
//! | --- | --- | --- |
//! | 0 | `FEATURES` | KVM |
//! | 1 | `PTP` | KVM (not implemented here) |
//! | 2, 3, 4 | `HYP_MEMINFO`, `MEM_SHARE`, `MEM_UNSHARE` | pKVM |
//! | 5..=63 | reserved for pKVM (7 = `MMIO_GUARD`, 9 = Android's `MEM_RELINQUISH`) | pKVM |
//! | 64, 65 | `DISCOVER_IMPL_VER`, `DISCOVER_IMPL_CPUS` | KVM |
//! | 120, 121 | `FS_MEM_STATE`, `FS_CONSOLE_WRITE` | **Frameshift** |
//! | 127 | `FEATURES_2` (reserved) | KVM |

/// Builds a fast SMCCC function identifier: `0x8000_0000 | smc64 << 30 | owner << 24 | number`.
pub const fn fast_call(smc64: bool, owner: u32, number: u32) -> u32 {
    0x8000_0000 | (smc64 as u32) << 30 | (owner & 0x3F) << 24 | (number & 0xFFFF)
}

/// SMCCC owner: Arm architecture calls.
pub const OWNER_ARCH: u32 = 0;
/// SMCCC owner: standard secure service calls (PSCI).
pub const OWNER_STANDARD: u32 = 4;
/// SMCCC owner: vendor-specific hypervisor service calls (KVM's range).
pub const OWNER_VENDOR_HYP: u32 = 6;

// ---------------------------------------------------------------------------- Arm (owner 0) --

/// `SMCCC_VERSION`: returns the implemented SMCCC version in `x0` ([`SMCCC_VERSION_1_1`]).
pub const SMCCC_VERSION: u32 = fast_call(false, OWNER_ARCH, 0);
/// `SMCCC_ARCH_FEATURES`: `x1` = a function identifier; `x0` = 0 if it is implemented, else
/// `NOT_SUPPORTED`.
pub const SMCCC_ARCH_FEATURES: u32 = fast_call(false, OWNER_ARCH, 1);
/// The SMCCC version Frameshift reports: 1.1 (major 1 in bits 30:16, minor 1 in 15:0). Linux
/// only looks for vendor hypervisor services at 1.1 or later.
pub const SMCCC_VERSION_1_1: u64 = 0x1_0001;

// --------------------------------------------------------------------- PSCI (owner 4) --

/// PSCI `PSCI_VERSION`: returns [`PSCI_VERSION_1_1`].
pub const PSCI_VERSION: u32 = fast_call(false, OWNER_STANDARD, 0);
/// PSCI `CPU_OFF`: stops the calling vCPU; its VMM is told.
pub const PSCI_CPU_OFF: u32 = fast_call(false, OWNER_STANDARD, 2);
/// PSCI `CPU_ON` (SMC64): `x1` = target MPIDR, `x2` = entry point, `x3` = context id (the
/// target's `x0`). Starts a stopped secondary vCPU of the same VM.
pub const PSCI_CPU_ON: u32 = fast_call(true, OWNER_STANDARD, 3);
/// PSCI `AFFINITY_INFO` (SMC64): `x1` = target MPIDR, `x2` = affinity level (only 0); returns
/// 0 (on), 1 (off) or 2 (on pending).
pub const PSCI_AFFINITY_INFO: u32 = fast_call(true, OWNER_STANDARD, 4);
/// PSCI `SYSTEM_OFF`: stops this VM only (never the machine) and tells its VMM.
pub const PSCI_SYSTEM_OFF: u32 = fast_call(false, OWNER_STANDARD, 8);
/// PSCI `SYSTEM_RESET`: stops this VM only and tells its VMM, which may restart it.
pub const PSCI_SYSTEM_RESET: u32 = fast_call(false, OWNER_STANDARD, 9);
/// PSCI `PSCI_FEATURES`: `x1` = a PSCI function identifier; returns 0 if implemented, else
/// [`PSCI_NOT_SUPPORTED`].
pub const PSCI_FEATURES: u32 = fast_call(false, OWNER_STANDARD, 10);
/// The PSCI version Frameshift reports: 1.1.
pub const PSCI_VERSION_1_1: u64 = 0x1_0001;

/// PSCI return code: success.
pub const PSCI_SUCCESS: i64 = 0;
/// PSCI return code: not supported (PSCI's codes differ from SMCCC's from -2 on).
pub const PSCI_NOT_SUPPORTED: i64 = -1;
/// PSCI return code: invalid parameters.
pub const PSCI_INVALID_PARAMETERS: i64 = -2;
/// PSCI return code: denied.
pub const PSCI_DENIED: i64 = -3;
/// PSCI return code: the target vCPU is already on.
pub const PSCI_ALREADY_ON: i64 = -4;
/// PSCI return code: the entry point is not a valid address for the VM.
pub const PSCI_INVALID_ADDRESS: i64 = -9;

/// `AFFINITY_INFO`: the vCPU is on.
pub const AFFINITY_ON: u64 = 0;
/// `AFFINITY_INFO`: the vCPU is off.
pub const AFFINITY_OFF: u64 = 1;

// ------------------------------------------------------ vendor hypervisor (owner 6) --

/// Vendor function number of `FEATURES`.
pub const FUNC_FEATURES: u32 = 0;
/// Vendor function number of `HYP_MEMINFO`.
pub const FUNC_HYP_MEMINFO: u32 = 2;
/// Vendor function number of `MEM_SHARE`.
pub const FUNC_MEM_SHARE: u32 = 3;
/// Vendor function number of `MEM_UNSHARE`.
pub const FUNC_MEM_UNSHARE: u32 = 4;
/// Vendor function number of `MMIO_GUARD`.
pub const FUNC_MMIO_GUARD: u32 = 7;
/// Vendor function number of `MEM_RELINQUISH` (Android pKVM).
pub const FUNC_MEM_RELINQUISH: u32 = 9;
/// Vendor function number of Frameshift's state query.
pub const FUNC_FS_MEM_STATE: u32 = 120;
/// Vendor function number of Frameshift's console write.
pub const FUNC_FS_CONSOLE_WRITE: u32 = 121;

/// `FEATURES` (fast, SMC32): returns the 128-bit bitmap of implemented vendor function numbers
/// in `x0` (bits 0-31), `x1` (32-63), `x2` (64-95), `x3` (96-127). See [`features_bitmap`].
pub const VENDOR_HYP_FEATURES: u32 = fast_call(false, OWNER_VENDOR_HYP, FUNC_FEATURES);
/// Vendor hypervisor service call UID (fast, SMC32): returns KVM's UID in `x0`-`x3`.
pub const VENDOR_HYP_CALL_UID: u32 = fast_call(false, OWNER_VENDOR_HYP, 0xFF01);
/// `HYP_MEMINFO` (fast, SMC64): returns the protection granule (4096) in `x0`,
/// [`MEMINFO_RANGE`] in `x1`, and the shared-alias bit in `x2` ([`SPLIT_SHARED_BIT`] in split
/// mode, 0 in history mode: a Frameshift addition in a register pKVM leaves zero).
pub const HYP_MEMINFO: u32 = fast_call(true, OWNER_VENDOR_HYP, FUNC_HYP_MEMINFO);
/// `MEM_SHARE` (fast, SMC64): `x1` = IPA, `x2` = pages (0 means 1), `x3` = 0. Returns `x0` = 0
/// or an SMCCC error, `x1` = pages shared (all of them, or 0: a range is all or nothing).
pub const MEM_SHARE: u32 = fast_call(true, OWNER_VENDOR_HYP, FUNC_MEM_SHARE);
/// `MEM_UNSHARE` (fast, SMC64): as [`MEM_SHARE`]. When it returns, the VMM's access is gone and
/// no stale translation of it survives (I6).
pub const MEM_UNSHARE: u32 = fast_call(true, OWNER_VENDOR_HYP, FUNC_MEM_UNSHARE);
/// `MMIO_GUARD` (fast, SMC64): `x1` = IPA of an MMIO page, `x2` = `x3` = 0. Registers the page:
/// a protected guest's access to MMIO is reported to its VMM for emulation only on registered
/// pages.
pub const MMIO_GUARD: u32 = fast_call(true, OWNER_VENDOR_HYP, FUNC_MMIO_GUARD);
/// `MEM_RELINQUISH` (fast, SMC64): `x1` = IPA, `x2` = pages (0 means 1), `x3` = 0. Gives owned
/// pages back to the VMM, zeroed (ballooning), or drops a lent page. Returns as [`MEM_SHARE`].
pub const MEM_RELINQUISH: u32 = fast_call(true, OWNER_VENDOR_HYP, FUNC_MEM_RELINQUISH);
/// Frameshift state query (fast, SMC64): `x1` = IPA, `x2` = pages (0 means 1). Returns `x0` = 0
/// or an SMCCC error; `x1` = how many pages from `x1` on are in the same state as the first;
/// `x2` = [`MemState`] of the first; `x3` = its peer ([`PEER_NONE`], [`PEER_HOST`]); `x4` = the
/// guest's rights on it (`RIGHT_*` bits of the boot information: read 1, write 2, execute 4);
/// `x5` = the IPA at which the guest maps the page (the shared alias in split mode). The answer
/// is the hypervisor's own view, so a guest can check its pages without trusting its VMM.
pub const FS_MEM_STATE: u32 = fast_call(true, OWNER_VENDOR_HYP, FUNC_FS_MEM_STATE);
/// Frameshift console write (fast, SMC64): `x1` = byte count (0..=40), `x2`-`x6` = the bytes,
/// little endian. The hypervisor prints them as the VM's own console line (`FS|<vm>|...`),
/// without going through the VMM.
pub const FS_CONSOLE_WRITE: u32 = fast_call(true, OWNER_VENDOR_HYP, FUNC_FS_CONSOLE_WRITE);
/// Most bytes one [`FS_CONSOLE_WRITE`] carries.
pub const CONSOLE_WRITE_MAX: u64 = 40;

/// `HYP_MEMINFO` `x1`: `MEM_SHARE`/`MEM_UNSHARE`/`MEM_RELINQUISH` take a page count in `x2`.
pub const MEMINFO_RANGE: u64 = 1;
/// The protection granule `HYP_MEMINFO` reports.
pub const MEMINFO_GRANULE: u64 = 4096;
/// Most pages one range call may name (one 2 MiB block).
pub const MAX_RANGE_PAGES: u64 = 512;

/// KVM's vendor hypervisor UID 28b46fb6-2ec5-11e9-a9ca-4b564d003a74 as `x0`-`x3`, in the word
/// order Linux's `kvm_init_hyp_services` compares.
pub const KVM_UID: [u64; 4] = [0xb66f_b428, 0xe911_c52e, 0x564b_caa9, 0x743a_004d];

/// The vendor function numbers Frameshift implements, which `FEATURES` advertises.
pub const IMPLEMENTED_VENDOR_FUNCTIONS: [u32; 8] = [
    FUNC_FEATURES,
    FUNC_HYP_MEMINFO,
    FUNC_MEM_SHARE,
    FUNC_MEM_UNSHARE,
    FUNC_MMIO_GUARD,
    FUNC_MEM_RELINQUISH,
    FUNC_FS_MEM_STATE,
    FUNC_FS_CONSOLE_WRITE,
];

/// The `FEATURES` answer: bit `n` of the 128-bit map is set for each implemented function `n`,
/// split into `x0`..`x3` (32 bits each, as Linux reads them).
pub const fn features_bitmap() -> [u64; 4] {
    let mut words = [0u64; 4];
    let mut index = 0;
    while index < IMPLEMENTED_VENDOR_FUNCTIONS.len() {
        let number = IMPLEMENTED_VENDOR_FUNCTIONS[index];
        words[(number / 32) as usize] |= 1 << (number % 32);
        index += 1;
    }
    words
}

/// A page's state as the state query reports it (DESIGN.md 4, seen from the guest).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u64)]
pub enum MemState {
    /// Not mapped for the guest.
    NoPage = 0,
    /// Private: mapped only in this guest.
    Owned = 1,
    /// The guest's page, shared with its VMM.
    SharedOwned = 2,
    /// The VMM's page, shared with this guest (or lent to it).
    SharedBorrowed = 3,
    /// Not convertible memory (device pass-through).
    Passthrough = 4,
}

impl MemState {
    /// The state for a raw `x2` value.
    pub const fn from_raw(raw: u64) -> Option<Self> {
        match raw {
            0 => Some(Self::NoPage),
            1 => Some(Self::Owned),
            2 => Some(Self::SharedOwned),
            3 => Some(Self::SharedBorrowed),
            4 => Some(Self::Passthrough),
            _ => None,
        }
    }
}

/// State query `x3`: nobody else holds the page.
pub const PEER_NONE: u64 = 0;
/// State query `x3`: the VMM holds the page too (it is shared, one way or the other).
pub const PEER_HOST: u64 = 1;

/// The bit that selects the shared alias of a split-mode guest's IPA (IPA bit 39).
pub const SPLIT_SHARED_BIT: u64 = 1 << 39;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_are_the_published_ones() {
        assert_eq!(SMCCC_VERSION, 0x8000_0000);
        assert_eq!(SMCCC_ARCH_FEATURES, 0x8000_0001);
        assert_eq!(PSCI_VERSION, 0x8400_0000);
        assert_eq!(PSCI_CPU_OFF, 0x8400_0002);
        assert_eq!(PSCI_CPU_ON, 0xC400_0003);
        assert_eq!(PSCI_AFFINITY_INFO, 0xC400_0004);
        assert_eq!(PSCI_SYSTEM_OFF, 0x8400_0008);
        assert_eq!(PSCI_SYSTEM_RESET, 0x8400_0009);
        assert_eq!(PSCI_FEATURES, 0x8400_000A);
        assert_eq!(VENDOR_HYP_FEATURES, 0x8600_0000);
        assert_eq!(VENDOR_HYP_CALL_UID, 0x8600_FF01);
        assert_eq!(HYP_MEMINFO, 0xC600_0002);
        assert_eq!(MEM_SHARE, 0xC600_0003);
        assert_eq!(MEM_UNSHARE, 0xC600_0004);
        assert_eq!(MMIO_GUARD, 0xC600_0007);
        assert_eq!(MEM_RELINQUISH, 0xC600_0009);
        assert_eq!(FS_MEM_STATE, 0xC600_0078);
        assert_eq!(FS_CONSOLE_WRITE, 0xC600_0079);
    }

    #[test]
    fn frameshift_numbers_avoid_kvm_and_pkvm() {
        for number in [FUNC_FS_MEM_STATE, FUNC_FS_CONSOLE_WRITE] {
            // 0..=65 are KVM's or reserved for pKVM; 127 is FEATURES_2; 128 functions in all.
            assert!((66..127).contains(&number), "{number}");
        }
    }

    #[test]
    fn features_bitmap_sets_exactly_the_implemented_bits() {
        let words = features_bitmap();
        assert_eq!(
            words[0],
            1 << 0 | 1 << 2 | 1 << 3 | 1 << 4 | 1 << 7 | 1 << 9
        );
        assert_eq!(words[1], 0);
        assert_eq!(words[2], 0);
        assert_eq!(words[3], 1 << (120 - 96) | 1 << (121 - 96));
    }
}
