//! The core's address and identifier types: the shared `PhysAddr` and `Ipa`, VMIDs, domain ids.
//!
//! No bare `u64` address crosses an API boundary of the core: a `PhysAddr` cannot be passed where
//! an `Ipa` is expected, which is the whole point of stage 2.

use core::fmt;

// The address newtypes and the sizes they are checked against live in the ABI crate, which the
// build tool and PDs share; they are re-exported here so the core keeps one `crate::addr` path.
pub use frameshift_abi::addr::{
    Ipa, PhysAddr, BLOCK_SIZE, IPA_BITS, PAGES_PER_BLOCK, PAGE_SIZE, PA_BITS, SHARED_ALIAS_BIT,
};

/// A stage-2 virtual machine identifier (VTTBR_EL2.VMID, 8 bits without FEAT_VMID16).
#[repr(transparent)]
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct Vmid(pub u16);

/// Largest number of domains the frame table can name (6-bit owner field, 63 = nobody).
pub const MAX_DOMAINS: usize = 63;

/// A domain (protection domain or virtual machine) index, `0..MAX_DOMAINS`.
#[repr(transparent)]
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct DomainId(pub u8);

impl DomainId {
    /// The domain id as an index, if it is in range.
    pub const fn index(self) -> Option<usize> {
        if (self.0 as usize) < MAX_DOMAINS {
            Some(self.0 as usize)
        } else {
            None
        }
    }
}

impl fmt::Display for DomainId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "domain{}", self.0)
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::format;

    #[test]
    fn domain_ids_past_the_owner_field_have_no_index() {
        assert_eq!(DomainId(0).index(), Some(0));
        assert_eq!(DomainId(62).index(), Some(62));
        assert_eq!(DomainId(63).index(), None);
        assert_eq!(format!("{}", DomainId(7)), "domain7");
    }
}
