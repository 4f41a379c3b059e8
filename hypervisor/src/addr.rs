//! Address and identifier newtypes: physical addresses, IPAs, VMIDs and domain ids.
//!
//! No bare `u64` address crosses an API boundary of the core: a `PhysAddr` cannot be passed where
//! an `Ipa` is expected, which is the whole point of stage 2.

use core::fmt;

/// Size of the translation granule and of a frame-table frame (4 KiB).
pub const PAGE_SIZE: u64 = 4096;
/// Size of a level-2 block mapping with the 4 KiB granule (2 MiB).
pub const BLOCK_SIZE: u64 = 2 * 1024 * 1024;
/// Number of 4 KiB pages in one 2 MiB block.
pub const PAGES_PER_BLOCK: u64 = BLOCK_SIZE / PAGE_SIZE;
/// Width of the stage-2 input address space (VTCR_EL2.T0SZ = 24).
pub const IPA_BITS: u32 = 40;
/// Split mode: the shared alias of a private IPA has this bit set (the top bit of the IPA space).
pub const SHARED_ALIAS_BIT: u64 = 1 << (IPA_BITS - 1);
/// Output addresses are limited to 40 bits too (VTCR_EL2.PS = 0b010).
pub const PA_BITS: u32 = 40;

macro_rules! address_newtype {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[repr(transparent)]
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
        pub struct $name(pub u64);

        impl $name {
            /// The raw address value.
            pub const fn get(self) -> u64 {
                self.0
            }

            /// True when the address is 4 KiB aligned.
            pub const fn is_page_aligned(self) -> bool {
                self.0 % PAGE_SIZE == 0
            }

            /// True when the address is 2 MiB aligned.
            pub const fn is_block_aligned(self) -> bool {
                self.0 % BLOCK_SIZE == 0
            }

            /// The address `bytes` further on, or `None` on overflow.
            pub const fn checked_add(self, bytes: u64) -> Option<Self> {
                match self.0.checked_add(bytes) {
                    Some(value) => Some(Self(value)),
                    None => None,
                }
            }

            /// The address `pages` 4 KiB pages further on, or `None` on overflow.
            pub const fn checked_add_pages(self, pages: u64) -> Option<Self> {
                match pages.checked_mul(PAGE_SIZE) {
                    Some(bytes) => self.checked_add(bytes),
                    None => None,
                }
            }

            /// The address rounded down to its 4 KiB page.
            pub const fn page_base(self) -> Self {
                Self(self.0 & !(PAGE_SIZE - 1))
            }

            /// The address rounded down to its 2 MiB block.
            pub const fn block_base(self) -> Self {
                Self(self.0 & !(BLOCK_SIZE - 1))
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!(stringify!($name), "({:#x})"), self.0)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{:#x}", self.0)
            }
        }
    };
}

address_newtype!(
    /// A physical (stage-2 output) address.
    PhysAddr
);
address_newtype!(
    /// An intermediate physical address: a domain's view of memory, the stage-2 input.
    Ipa
);

impl Ipa {
    /// True when the IPA lies inside the 40-bit stage-2 input range.
    pub const fn is_in_ipa_space(self) -> bool {
        self.0 >> IPA_BITS == 0
    }

    /// True when this IPA is in the split-mode shared alias half.
    pub const fn is_shared_alias(self) -> bool {
        self.0 & SHARED_ALIAS_BIT != 0
    }

    /// The split-mode shared alias of this IPA.
    pub const fn shared_alias(self) -> Self {
        Self(self.0 | SHARED_ALIAS_BIT)
    }

    /// The private IPA this (possibly alias) IPA stands for.
    pub const fn private_ipa(self) -> Self {
        Self(self.0 & !SHARED_ALIAS_BIT)
    }
}

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
#[allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test fails loudly on an unexpected error"
)]
mod tests {
    extern crate std;
    use super::*;
    use std::format;

    #[test]
    fn addresses_print_as_hex() {
        assert_eq!(format!("{}", PhysAddr(0x4000_1000)), "0x40001000");
        assert_eq!(format!("{:?}", Ipa(0x1000)), "Ipa(0x1000)");
    }

    #[test]
    fn split_alias_uses_bit_39() {
        let ipa = Ipa(0x4000_0000);
        assert_eq!(ipa.shared_alias(), Ipa(0x80_4000_0000));
        assert!(ipa.shared_alias().is_shared_alias());
        assert_eq!(ipa.shared_alias().private_ipa(), ipa);
        assert!(ipa.shared_alias().is_in_ipa_space());
        assert!(!Ipa(1 << 40).is_in_ipa_space());
    }

    #[test]
    fn alignment_helpers() {
        assert!(PhysAddr(0x20_0000).is_block_aligned());
        assert!(!PhysAddr(0x20_1000).is_block_aligned());
        assert_eq!(PhysAddr(0x20_1234).page_base(), PhysAddr(0x20_1000));
        assert_eq!(Ipa(0x3f_ffff).block_base(), Ipa(0x20_0000));
        assert_eq!(PhysAddr(u64::MAX).checked_add_pages(1), None);
    }
}
