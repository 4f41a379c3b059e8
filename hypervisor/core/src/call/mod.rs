//! Calls decoded into types: raw registers become a typed request in one place, before any
//! kernel logic sees them, and replies are encoded in one place (tock's
//! `Syscall::from_register_arguments`; Hafnium's `handler.c` calling `api.c`).
//!
//! ```text
//!   registers ──PdCall::decode──> PdCall ──kernel logic──> Reply ──Reply::write──> registers
//!                     │
//!                     └──> CallError ──code()──> x0 (and nothing else changes)
//! ```
//!
//! | module | what |
//! | --- | --- |
//! | [`pd`] | [`PdCall`]: every PD call of docs/ABI.md family 2, the VMM calls included |
//! | [`guest`] | [`GuestCall`]: every guest call of family 1 |
//! | [`reply`] | [`Reply`]: what a call or an event writes back |
//!
//! The argument types check their own ranges: a [`ChannelId`] or [`ChildId`] is at most 61, a
//! [`PageRange`] starts page aligned inside the IPA space and has 1 to 512 pages, [`Rights`]
//! has only known bits and at least one, and a register that carries a narrow value has no bit
//! set above it. A malformed argument refuses the whole call with [`CallError::Invalid`] and
//! nothing changes.
//!
//! [`Rights`]: crate::descriptor::Rights

pub mod guest;
pub mod pd;
pub mod reply;

pub use guest::{GuestCall, GuestCallError};
pub use pd::{PdCall, StopCause, VcpuRegister};
pub use reply::{Event, Reply};

use frameshift_abi::boot_info::MAX_CHANNEL_ID;
use frameshift_abi::guest_call::{
    PSCI_ALREADY_ON, PSCI_DENIED, PSCI_INVALID_ADDRESS, PSCI_INVALID_PARAMETERS, PSCI_NOT_SUPPORTED,
};
use frameshift_abi::pd_call::MESSAGE_REGISTERS;
use frameshift_abi::smccc;

use crate::addr::{Ipa, IPA_BITS, PAGE_SIZE};
use crate::descriptor::Rights;
use crate::domain::MAX_CHILD_ID;
use crate::engine::MAX_RANGE_PAGES;
use crate::error::Error;

/// Why a call was refused before it did anything.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CallError {
    /// No such function: `NOT_SUPPORTED`.
    NotSupported,
    /// A malformed argument (named for tests and diagnostics): `INVALID_PARAMETER`.
    Invalid(&'static str),
    /// The call was well formed, but the conversion engine refused it.
    Refused(Error),
    /// A PSCI call refused with PSCI's own code (they differ from SMCCC's from -2 on).
    Psci(PsciError),
    /// Well formed, but there is nothing to report (`NOT_REQUIRED`, -2).
    NotRequired,
}

/// PSCI's refusals (DEN0022, "Return error codes").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PsciError {
    /// -1.
    NotSupported,
    /// -2: a bad target or level.
    InvalidParameters,
    /// -3.
    Denied,
    /// -4: the target vCPU is on already.
    AlreadyOn,
    /// -9: the entry point is outside the VM's memory.
    InvalidAddress,
}

impl CallError {
    /// The SMCCC status for `x0`: the one place refusals become codes.
    pub const fn code(self) -> i64 {
        match self {
            Self::NotSupported => smccc::NOT_SUPPORTED,
            Self::Invalid(_) => smccc::INVALID_PARAMETER,
            Self::Refused(error) => error.smccc_code(),
            Self::NotRequired => smccc::NOT_REQUIRED,
            Self::Psci(error) => match error {
                PsciError::NotSupported => PSCI_NOT_SUPPORTED,
                PsciError::InvalidParameters => PSCI_INVALID_PARAMETERS,
                PsciError::Denied => PSCI_DENIED,
                PsciError::AlreadyOn => PSCI_ALREADY_ON,
                PsciError::InvalidAddress => PSCI_INVALID_ADDRESS,
            },
        }
    }
}

impl From<Error> for CallError {
    fn from(error: Error) -> Self {
        Self::Refused(error)
    }
}

/// A Microkit channel id, 0..=61 (a bit of a PD's notification word).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ChannelId(u8);

impl ChannelId {
    /// The id in `raw`, if it is one.
    pub fn new(raw: u64) -> Result<Self, CallError> {
        u8::try_from(raw)
            .ok()
            .filter(|&id| u32::from(id) <= MAX_CHANNEL_ID)
            .map(Self)
            .ok_or(CallError::Invalid("channel id above 61"))
    }

    /// The id.
    pub const fn get(self) -> u8 {
        self.0
    }
}

/// A Microkit child id, 0..=61: a child PD's `id` or a vCPU's `<vcpu id>` (a VM is named by
/// any of its vCPUs).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ChildId(u8);

impl ChildId {
    /// The id in `raw`, if it is one.
    pub fn new(raw: u64) -> Result<Self, CallError> {
        u8::try_from(raw)
            .ok()
            .filter(|&id| id <= MAX_CHILD_ID)
            .map(Self)
            .ok_or(CallError::Invalid("child id above 61"))
    }

    /// The id.
    pub const fn get(self) -> u8 {
        self.0
    }
}

/// A range of guest pages a memory call names: a page-aligned IPA inside the 40-bit IPA space
/// and 1 to 512 pages that stay inside it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PageRange {
    /// The first page.
    pub ipa: Ipa,
    /// Pages, `1..=MAX_RANGE_PAGES`.
    pub pages: u64,
}

impl PageRange {
    /// The range `(ipa, pages)`; `zero_means_one` for the guest calls, where 0 pages is a
    /// legacy single-page request.
    pub fn new(ipa: u64, pages: u64, zero_means_one: bool) -> Result<Self, CallError> {
        let pages = if zero_means_one && pages == 0 {
            1
        } else {
            pages
        };
        let ipa = Ipa(ipa);
        if !ipa.is_page_aligned() {
            return Err(CallError::Invalid("IPA not page aligned"));
        }
        if pages == 0 || pages > MAX_RANGE_PAGES {
            return Err(CallError::Invalid("page count not in 1..=512"));
        }
        let end = ipa
            .get()
            .checked_add(pages * PAGE_SIZE)
            .filter(|&end| end <= 1 << IPA_BITS);
        if end.is_none() {
            return Err(CallError::Invalid("range beyond the IPA space"));
        }
        Ok(Self { ipa, pages })
    }
}

/// Rights a grant names (`RIGHT_*` bits of the boot information): at least one, none unknown.
pub fn grant(raw: u64) -> Result<Rights, CallError> {
    u8::try_from(raw)
        .ok()
        .and_then(Rights::from_bits)
        .filter(|rights| !rights.is_empty())
        .ok_or(CallError::Invalid("rights empty or with unknown bits"))
}

/// A message: its `MessageInfo` word and the message registers (`x2`, `x3`-`x10`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Message {
    /// The `MessageInfo` word.
    pub info: u64,
    /// MR0-MR7.
    pub registers: [u64; MESSAGE_REGISTERS],
}

/// Up to `N` bytes carried in registers, little endian, 8 per register.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Bytes<const N: usize> {
    bytes: [u8; N],
    len: usize,
}

impl<const N: usize> Bytes<N> {
    /// `count` bytes from `registers`; refused if `count` is above `N` or the registers cannot
    /// hold it.
    pub fn new(count: u64, registers: &[u64]) -> Result<Self, CallError> {
        let len = usize::try_from(count)
            .ok()
            .filter(|&len| len <= N && len <= registers.len() * 8)
            .ok_or(CallError::Invalid("byte count too big"))?;
        let mut bytes = [0u8; N];
        for (chunk, register) in bytes.chunks_mut(8).zip(registers) {
            chunk.copy_from_slice(&register.to_le_bytes()[..chunk.len()]);
        }
        // Only the bytes sent count: two messages with the same bytes are equal.
        bytes[len..].fill(0);
        Ok(Self { bytes, len })
    }

    /// The bytes.
    pub fn as_slice(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

/// A register that must hold a value of at most `max`.
fn at_most(raw: u64, max: u64, what: &'static str) -> Result<u64, CallError> {
    if raw <= max {
        Ok(raw)
    } else {
        Err(CallError::Invalid(what))
    }
}

#[cfg(test)]
mod tests {
    //! Decoding is total: any registers give a call or a refusal, never a panic, and what is
    //! decoded keeps the argument types' own promises.

    extern crate std;

    use proptest::prelude::*;

    use super::*;
    use crate::domain::Registers;

    /// Function ids worth hitting: every PD and guest call, and a few unknown ones.
    fn function() -> impl Strategy<Value = u64> {
        let known: [u32; 42] = [
            0xC600_0100,
            0xC600_0101,
            0xC600_0102,
            0xC600_0103,
            0xC600_0104,
            0xC600_0105,
            0xC600_0106,
            0xC600_0107,
            0xC600_0108,
            0xC600_0109,
            0xC600_010A,
            0xC600_010B,
            0xC600_010C,
            0xC600_0110,
            0xC600_0111,
            0xC600_0112,
            0xC600_0113,
            0xC600_0114,
            0xC600_0115,
            0xC600_0116,
            0xC600_0117,
            0xC600_0118,
            0xC600_0119,
            0x8000_0000,
            0x8000_0001,
            0x8400_0000,
            0x8400_0002,
            0xC400_0003,
            0xC400_0004,
            0x8400_0008,
            0x8400_0009,
            0x8400_000A,
            0x8600_FF01,
            0x8600_0000,
            0xC600_0002,
            0xC600_0003,
            0xC600_0004,
            0xC600_0007,
            0xC600_0009,
            0xC600_0078,
            0xC600_0079,
            0xC600_0050,
        ];
        prop_oneof![
            proptest::sample::select(known.to_vec()).prop_map(u64::from),
            any::<u64>(),
        ]
    }

    /// Argument values near every boundary the decoders check, and anything.
    fn argument() -> impl Strategy<Value = u64> {
        prop_oneof![
            proptest::sample::select(std::vec![
                0u64,
                1,
                2,
                31,
                40,
                41,
                48,
                49,
                61,
                62,
                512,
                513,
                1019,
                1020,
                0x4000_0000,
                0x4000_0008,
                (1 << 40) - 0x1000,
                1 << 40,
                u64::MAX,
            ]),
            any::<u64>(),
        ]
    }

    proptest! {
        #[test]
        fn decoding_any_registers_is_total_and_keeps_the_argument_promises(
            x0 in function(),
            rest in proptest::collection::vec(argument(), 10),
        ) {
            let mut registers = Registers::default();
            registers.x[0] = x0;
            registers.x[1..11].copy_from_slice(&rest);
            let check_range = |range: &PageRange| {
                prop_assert!(range.ipa.is_page_aligned());
                prop_assert!((1..=MAX_RANGE_PAGES).contains(&range.pages));
                prop_assert!(range.ipa.get() + range.pages * PAGE_SIZE <= 1 << IPA_BITS);
                Ok(())
            };
            match PdCall::decode(&registers) {
                Ok(
                    PdCall::MemDonate { range, .. }
                    | PdCall::MemUnshareFromGuest { range, .. }
                    | PdCall::MemReclaim { range, .. }
                    | PdCall::MemShareWithGuest { range, .. }
                    | PdCall::MemLend { range, .. },
                ) => check_range(&range)?,
                Ok(PdCall::DebugWrite(bytes)) => prop_assert!(bytes.as_slice().len() <= 48),
                Ok(_) => {}
                Err(error) => prop_assert!(error.code() < 0),
            }
            match GuestCall::decode(&registers) {
                Ok(
                    GuestCall::MemShare(range)
                    | GuestCall::MemUnshare(range)
                    | GuestCall::MemRelinquish(range)
                    | GuestCall::MemState(range),
                ) => check_range(&range)?,
                Ok(GuestCall::ConsoleWrite(bytes)) => prop_assert!(bytes.as_slice().len() <= 40),
                Ok(_) => {}
                Err(error) => prop_assert!(error.error.code() < 0),
            }
        }
    }
}
