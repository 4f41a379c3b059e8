//! Why a request was refused. Every refusal changes nothing (I8) and maps to an SMCCC code.

use core::fmt;

use frameshift_abi::smccc;

/// A precise reason for refusing a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Error {
    /// An address is not 4 KiB aligned (or a root pool is not 8 KiB aligned).
    Misaligned,
    /// An IPA is outside the 40-bit input range, or in the split-mode alias half where a private
    /// IPA is required.
    IpaOutOfRange,
    /// A range is empty, too long, or wraps.
    InvalidRange,
    /// No mapping at the IPA (the caller is `NoPage` there).
    NotMapped,
    /// The destination IPA already has a mapping.
    AlreadyMapped,
    /// The frame is not in the frame table (not convertible memory).
    NotTracked,
    /// The physical range overlaps hypervisor memory (I4).
    HypervisorMemory,
    /// The caller is not in the state the operation requires.
    WrongState,
    /// The frame is pinned by an in-flight use.
    Pinned,
    /// The domain already borrows the frame, or the frame has no room for this borrower.
    AlreadyBorrowed,
    /// The fixed-capacity borrower side table is full.
    BorrowerTableFull,
    /// The stage-2 table page pool cannot satisfy the request.
    OutOfTableMemory,
    /// The domain id is out of range or the domain does not exist.
    NoSuchDomain,
    /// The domain exists already.
    DomainExists,
    /// The guest is not linked to this host (no window), or the domain is not a guest.
    NotLinked,
    /// The guest has been torn down.
    DomainDead,
    /// Rights requested are not allowed (for example a borrower asking for more than granted).
    InvalidRights,
}

impl Error {
    /// The SMCCC return code for this refusal. pKVM returns `INVALID_PARAMETER` for every
    /// refused memory transition, and a legacy pKVM guest must see no difference; the precise
    /// reason is returned as [`Error::detail`] in x1.
    pub const fn smccc_code(self) -> i64 {
        match self {
            Self::OutOfTableMemory | Self::BorrowerTableFull => smccc::NOT_SUPPORTED,
            _ => smccc::INVALID_PARAMETER,
        }
    }

    /// A stable small number naming the reason (returned in x1 beside the SMCCC code).
    pub const fn detail(self) -> u64 {
        self as u64 + 1
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_map_to_smccc_codes_and_distinct_details() {
        assert_eq!(Error::WrongState.smccc_code(), smccc::INVALID_PARAMETER);
        assert_eq!(Error::Misaligned.smccc_code(), smccc::INVALID_PARAMETER);
        assert_eq!(Error::OutOfTableMemory.smccc_code(), smccc::NOT_SUPPORTED);
        let all = [
            Error::Misaligned,
            Error::IpaOutOfRange,
            Error::InvalidRange,
            Error::NotMapped,
            Error::AlreadyMapped,
            Error::NotTracked,
            Error::HypervisorMemory,
            Error::WrongState,
            Error::Pinned,
            Error::AlreadyBorrowed,
            Error::BorrowerTableFull,
            Error::OutOfTableMemory,
            Error::NoSuchDomain,
            Error::DomainExists,
            Error::NotLinked,
            Error::DomainDead,
            Error::InvalidRights,
        ];
        for (index, error) in all.iter().enumerate() {
            assert_eq!(error.detail(), index as u64 + 1);
            assert!(error.smccc_code() < 0);
        }
    }
}
