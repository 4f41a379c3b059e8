//! Typed wrappers for the hypervisor's calls (ABI family 1, docs/ABI.md "Guest to hypervisor"):
//! the Arm architecture calls, KVM's vendor UID and `FEATURES`, pKVM's memory calls and
//! `MMIO_GUARD`, and Frameshift's state query and console. PSCI is in [`crate::psci`].
//!
//! Each wrapper sends exactly the registers the ABI names (unused argument registers zero) and
//! turns a negative `x0` into [`SmcccError`]. [`raw`] sends any registers and returns `x0`-`x7`
//! unchanged, for checks that look at every bit of an answer (the `abi_check` guest).

use crate::conduit::{self, Conduit};
use frameshift_abi::addr::Ipa;
use frameshift_abi::guest_call::{
    self as guest, MemState, CONSOLE_WRITE_MAX, FS_CONSOLE_WRITE, FS_MEM_STATE, HYP_MEMINFO,
    MEM_RELINQUISH, MEM_SHARE, MEM_UNSHARE, MMIO_GUARD, SMCCC_ARCH_FEATURES, SMCCC_VERSION,
    VENDOR_HYP_CALL_UID, VENDOR_HYP_FEATURES,
};
use frameshift_abi::smccc;

/// A refusal: the negative SMCCC status the hypervisor returned in `x0`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SmcccError(pub i64);

impl SmcccError {
    /// -1: the function is not implemented.
    pub const NOT_SUPPORTED: Self = Self(smccc::NOT_SUPPORTED);
    /// -2: nothing needed doing.
    pub const NOT_REQUIRED: Self = Self(smccc::NOT_REQUIRED);
    /// -3: an argument is invalid; nothing changed.
    pub const INVALID_PARAMETER: Self = Self(smccc::INVALID_PARAMETER);
}

impl core::fmt::Display for SmcccError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let name = match *self {
            Self::NOT_SUPPORTED => "NOT_SUPPORTED",
            Self::NOT_REQUIRED => "NOT_REQUIRED",
            Self::INVALID_PARAMETER => "INVALID_PARAMETER",
            _ => "unknown error",
        };
        write!(f, "{name} ({})", self.0)
    }
}

/// `Ok(x0)` for a non-negative status, else the error.
const fn status(x0: u64) -> Result<u64, SmcccError> {
    if (x0 as i64) < 0 {
        Err(SmcccError(x0 as i64))
    } else {
        Ok(x0)
    }
}

fn hvc(function: u32, args: &[u64]) -> [u64; 18] {
    let mut registers = [0u64; 17];
    for (slot, arg) in registers.iter_mut().zip(args) {
        *slot = *arg;
    }
    conduit::call(Conduit::Hvc, function, registers)
}

/// Any call, through either conduit: `x1`-`x7` = `args`; returns `x0`-`x7` as they came back.
pub fn raw(conduit: Conduit, function: u32, args: [u64; 7]) -> [u64; 8] {
    let mut registers = [0u64; 17];
    registers[..7].copy_from_slice(&args);
    let results = conduit::call(conduit, function, registers);
    core::array::from_fn(|index| results[index])
}

/// `SMCCC_VERSION`: the SMCCC version (`0x1_0001` is 1.1).
pub fn smccc_version() -> u64 {
    hvc(SMCCC_VERSION, &[])[0]
}

/// `SMCCC_ARCH_FEATURES`: `Ok` if `function` is implemented.
pub fn smccc_arch_features(function: u32) -> Result<u64, SmcccError> {
    status(hvc(SMCCC_ARCH_FEATURES, &[u64::from(function)])[0])
}

/// The vendor hypervisor service's UID, `x0`-`x3` (KVM's, [`guest::KVM_UID`], for Frameshift).
pub fn call_uid() -> [u64; 4] {
    let results = hvc(VENDOR_HYP_CALL_UID, &[]);
    [results[0], results[1], results[2], results[3]]
}

/// `FEATURES`: the bitmap of implemented vendor function numbers, 32 bits per register.
pub fn features() -> [u64; 4] {
    let results = hvc(VENDOR_HYP_FEATURES, &[]);
    [results[0], results[1], results[2], results[3]]
}

/// Whether `FEATURES` bitmap `words` advertises vendor function `number`.
pub const fn has_feature(words: [u64; 4], number: u32) -> bool {
    number < 128 && words[(number / 32) as usize] & (1 << (number % 32)) != 0
}

/// What `HYP_MEMINFO` says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemInfo {
    /// The protection granule in bytes (`x0`).
    pub granule: u64,
    /// `x1`: bit 0 set when the memory calls take a page count (pKVM's range form).
    pub flags: u64,
    /// `x2`: the shared-alias bit of a split-mode VM (`1 << 39`), 0 in history mode (a
    /// Frameshift addition: pKVM leaves `x2` zero, which reads as history mode).
    pub shared_alias: u64,
}

impl MemInfo {
    /// The memory calls take a page count in `x2`.
    pub const fn range_calls(&self) -> bool {
        self.flags & guest::MEMINFO_RANGE != 0
    }
}

/// `HYP_MEMINFO`.
pub fn hyp_meminfo() -> Result<MemInfo, SmcccError> {
    let results = hvc(HYP_MEMINFO, &[0, 0, 0]);
    Ok(MemInfo {
        granule: status(results[0])?,
        flags: results[1],
        shared_alias: results[2],
    })
}

fn range_call(function: u32, ipa: Ipa, pages: u64) -> Result<u64, SmcccError> {
    let results = hvc(function, &[ipa.get(), pages, 0]);
    status(results[0])?;
    Ok(results[1])
}

/// `MEM_SHARE`: share `pages` pages from `ipa` with the VMM (0 means 1). Returns the pages
/// shared, which is all of them: a range is all or nothing.
pub fn mem_share(ipa: Ipa, pages: u64) -> Result<u64, SmcccError> {
    range_call(MEM_SHARE, ipa, pages)
}

/// `MEM_UNSHARE`: take shared pages back. When it returns, the VMM's mapping is gone.
pub fn mem_unshare(ipa: Ipa, pages: u64) -> Result<u64, SmcccError> {
    range_call(MEM_UNSHARE, ipa, pages)
}

/// `MEM_RELINQUISH`: give private pages back to the VMM, zeroed (or drop lent pages).
pub fn mem_relinquish(ipa: Ipa, pages: u64) -> Result<u64, SmcccError> {
    range_call(MEM_RELINQUISH, ipa, pages)
}

/// `MMIO_GUARD`: register the MMIO page at `ipa`, so that accesses to it reach the VMM for
/// emulation. A protected guest must register every device page before touching it.
pub fn mmio_guard(ipa: Ipa) -> Result<(), SmcccError> {
    status(hvc(MMIO_GUARD, &[ipa.get(), 0, 0])[0]).map(|_| ())
}

/// The hypervisor's answer to the state query.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemStateAnswer {
    /// How many pages from the queried IPA on are in the same state as the first (`x1`).
    pub run: u64,
    /// The raw state (`x2`); see [`Self::state`].
    pub state_raw: u64,
    /// The peer (`x3`): [`guest::PEER_NONE`] or [`guest::PEER_HOST`].
    pub peer: u64,
    /// The guest's rights on the page (`x4`): read 1, write 2, execute 4.
    pub rights: u64,
    /// Where the guest maps the page (`x5`): the shared alias in split mode.
    pub mapped_at: Ipa,
}

impl MemStateAnswer {
    /// The state, if it is one the ABI defines.
    pub const fn state(&self) -> Option<MemState> {
        MemState::from_raw(self.state_raw)
    }

    /// The page is private to this guest: owned, and nobody else holds it.
    pub fn is_private(&self) -> bool {
        self.state() == Some(MemState::Owned) && self.peer == guest::PEER_NONE
    }
}

/// `FS_MEM_STATE`: the hypervisor's own view of `pages` pages from `ipa` (0 means 1).
pub fn mem_state(ipa: Ipa, pages: u64) -> Result<MemStateAnswer, SmcccError> {
    let results = hvc(FS_MEM_STATE, &[ipa.get(), pages]);
    status(results[0])?;
    Ok(MemStateAnswer {
        run: results[1],
        state_raw: results[2],
        peer: results[3],
        rights: results[4],
        mapped_at: Ipa(results[5]),
    })
}

/// The `x1`-`x6` of one `FS_CONSOLE_WRITE` carrying `bytes` (at most 40; more are dropped).
pub fn console_write_arguments(bytes: &[u8]) -> [u64; 6] {
    let bytes = bytes
        .get(..bytes.len().min(CONSOLE_WRITE_MAX as usize))
        .unwrap_or(&[]);
    let mut arguments = [0u64; 6];
    arguments[0] = bytes.len() as u64;
    for (slot, chunk) in arguments[1..].iter_mut().zip(bytes.chunks(8)) {
        let mut word = [0u8; 8];
        for (byte_slot, byte) in word.iter_mut().zip(chunk) {
            *byte_slot = *byte;
        }
        *slot = u64::from_le_bytes(word);
    }
    arguments
}

/// `FS_CONSOLE_WRITE`, as many times as `bytes` needs: the hypervisor prints them as this VM's
/// console line, without the VMM. Stops at the first refusal.
pub fn console_write(bytes: &[u8]) -> Result<(), SmcccError> {
    for chunk in bytes.chunks(CONSOLE_WRITE_MAX as usize) {
        status(hvc(FS_CONSOLE_WRITE, &console_write_arguments(chunk))[0])?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conduit::install_fake;
    use std::cell::RefCell;
    use std::rc::Rc;
    use std::vec::Vec;

    /// A fake that logs `x0`-`x3` of each call and answers with `answer`.
    fn fake(answer: [u64; 6]) -> Rc<RefCell<Vec<[u64; 4]>>> {
        let log = Rc::new(RefCell::new(Vec::new()));
        let calls = log.clone();
        install_fake(move |conduit, registers| {
            assert_eq!(conduit, Conduit::Hvc);
            calls
                .borrow_mut()
                .push([registers[0], registers[1], registers[2], registers[3]]);
            *registers = [0; 18];
            registers[..6].copy_from_slice(&answer);
        });
        log
    }

    #[test]
    fn mem_share_sends_ipa_pages_and_zero_and_returns_pages_done() {
        let log = fake([0, 4, 0, 0, 0, 0]);
        assert_eq!(mem_share(Ipa(0x4001_0000), 4), Ok(4));
        assert_eq!(mem_unshare(Ipa(0x4001_0000), 0), Ok(4));
        assert_eq!(mem_relinquish(Ipa(0x4002_0000), 1), Ok(4));
        assert_eq!(
            *log.borrow(),
            [
                [0xC600_0003, 0x4001_0000, 4, 0],
                [0xC600_0004, 0x4001_0000, 0, 0],
                [0xC600_0009, 0x4002_0000, 1, 0],
            ]
        );
    }

    #[test]
    fn a_negative_status_is_an_error_whatever_x1_says() {
        let _log = fake([smccc::INVALID_PARAMETER as u64, 7, 0, 0, 0, 0]);
        assert_eq!(
            mem_share(Ipa(0x4001_0008), 1),
            Err(SmcccError::INVALID_PARAMETER)
        );
        assert_eq!(
            mmio_guard(Ipa(0x4000_0000)),
            Err(SmcccError::INVALID_PARAMETER)
        );
        assert_eq!(hyp_meminfo(), Err(SmcccError::INVALID_PARAMETER));
    }

    #[test]
    fn mem_state_decodes_all_six_registers() {
        let log = fake([0, 3, 2, 1, 3, 0x80_4001_0000]);
        let answer = mem_state(Ipa(0x4001_0000), 8);
        assert_eq!(
            answer,
            Ok(MemStateAnswer {
                run: 3,
                state_raw: 2,
                peer: 1,
                rights: 3,
                mapped_at: Ipa(0x80_4001_0000),
            })
        );
        assert_eq!(answer.map(|a| a.state()), Ok(Some(MemState::SharedOwned)));
        assert_eq!(*log.borrow(), [[0xC600_0078, 0x4001_0000, 8, 0]]);
    }

    #[test]
    fn console_write_packs_little_endian_words_in_chunks_of_40() {
        let log = fake([0; 6]);
        let text: Vec<u8> = (0..45u8).collect();
        assert_eq!(console_write(&text), Ok(()));
        let log = log.borrow();
        assert_eq!(log.len(), 2);
        assert_eq!(log[0][1], 40);
        assert_eq!(log[0][2], u64::from_le_bytes([0, 1, 2, 3, 4, 5, 6, 7]));
        assert_eq!(log[1][1], 5);
        assert_eq!(log[1][2], u64::from_le_bytes([40, 41, 42, 43, 44, 0, 0, 0]));
        assert_eq!(console_write_arguments(&[b'x'; 50])[0], 40);
    }

    #[test]
    fn features_bits_are_read_per_register() {
        let words = guest::features_bitmap();
        for number in guest::IMPLEMENTED_VENDOR_FUNCTIONS {
            assert!(has_feature(words, number), "{number}");
        }
        assert!(!has_feature(words, 1));
        assert!(!has_feature(words, 127));
        assert!(!has_feature(words, 500));
    }

    #[test]
    fn meminfo_and_uid_read_their_registers() {
        let _log = fake([4096, 1, 0, 0, 0, 0]);
        let info = hyp_meminfo();
        assert_eq!(
            info.map(|info| (info.granule, info.range_calls())),
            Ok((4096, true))
        );
        let _log = fake([0xb66f_b428, 0xe911_c52e, 0x564b_caa9, 0x743a_004d, 0, 0]);
        assert_eq!(call_uid(), guest::KVM_UID);
    }
}
