//! The core's address types: the shared `PhysAddr` and `Ipa`, and VMIDs (domain ids are
//! [`crate::domain::DomainId`]).
//!
//! No bare `u64` address crosses an API boundary of the core: a `PhysAddr` cannot be passed where
//! an `Ipa` is expected, which is the whole point of stage 2.

// The address newtypes and the sizes they are checked against live in the ABI crate, which the
// build tool and PDs share; they are re-exported here so the core keeps one `crate::addr` path.
pub use frameshift_abi::addr::{
    Ipa, PhysAddr, BLOCK_SIZE, IPA_BITS, PAGES_PER_BLOCK, PAGE_SIZE, PA_BITS, SHARED_ALIAS_BIT,
};

/// A stage-2 virtual machine identifier (VTTBR_EL2.VMID, 8 bits without FEAT_VMID16).
#[repr(transparent)]
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct Vmid(pub u16);
