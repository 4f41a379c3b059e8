//! Address newtypes shared by the build tool, the hypervisor and PDs: `PhysAddr` and `Ipa`.
//!
//! A `PhysAddr` cannot be passed where an `Ipa` is expected, which is the whole point of stage 2.
//! Both are `repr(transparent)` over `u64` and print as hex (`Display` as `0x…`, `Debug` as
//! `Ipa(0x…)`). They live here, in the one `no_std` crate every side links, so that the build
//! tool, the kernel and PDs agree on one type and trait impls stay legal under the orphan rule.

use core::fmt;

/// Size of the translation granule and of a frame-table frame (4 KiB).
pub const PAGE_SIZE: u64 = 0x1000;
/// Size of a level-2 block mapping with the 4 KiB granule (2 MiB).
pub const BLOCK_SIZE: u64 = 0x20_0000;
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

            /// True when the address is a multiple of `align` (any non-zero size, e.g. a
            /// memory region's `page_size`); an `align` of 0 holds only for address 0.
            pub const fn is_aligned_to(self, align: u64) -> bool {
                self.0.is_multiple_of(align)
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

            /// The address `bytes` further on, wrapping at 2^64. For addresses that come from
            /// the build tool's own patched symbols (a PD's regions); anything an untrusted
            /// party supplies goes through [`Self::checked_add`] instead.
            pub const fn add(self, bytes: u64) -> Self {
                Self(self.0.wrapping_add(bytes))
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

        /// `{:x}` / `{:#x}` print the raw value, so an address sits in a hex format string
        /// like the `u64` it replaced.
        impl fmt::LowerHex for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::LowerHex::fmt(&self.0, f)
            }
        }
    };
}

address_newtype!(
    /// A physical (stage-2 output) address: where QEMU loads the image and what stage 2 maps to.
    PhysAddr
);
address_newtype!(
    /// An intermediate physical address: a domain's view of memory, the stage-2 input. PDs run
    /// with stage 1 off, so a PD's `vaddr` is an IPA.
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

impl PhysAddr {
    /// True when the address fits the 40-bit output range stage 2 can name.
    pub const fn is_in_pa_space(self) -> bool {
        self.0 >> PA_BITS == 0
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::format;

    #[test]
    fn addresses_print_as_hex() {
        assert_eq!(format!("{}", PhysAddr(0x4000_1000)), "0x40001000");
        assert_eq!(format!("{}", Ipa(0x4010_0000)), "0x40100000");
        assert_eq!(format!("{:?}", Ipa(0x1000)), "Ipa(0x1000)");
        assert_eq!(format!("{:?}", PhysAddr(0)), "PhysAddr(0x0)");
        assert_eq!(format!("{:#x}", Ipa(0xabc)), "0xabc");
        assert_eq!(format!("{:08x}", PhysAddr(0xabc)), "00000abc");
    }

    #[test]
    fn split_alias_uses_bit_39() {
        let ipa = Ipa(0x4000_0000);
        assert_eq!(ipa.shared_alias(), Ipa(0x80_4000_0000));
        assert!(ipa.shared_alias().is_shared_alias());
        assert!(!ipa.is_shared_alias());
        assert_eq!(ipa.shared_alias().private_ipa(), ipa);
        assert!(ipa.shared_alias().is_in_ipa_space());
        assert!(!Ipa(1 << 40).is_in_ipa_space());
        assert!(PhysAddr((1 << 40) - 1).is_in_pa_space());
        assert!(!PhysAddr(1 << 40).is_in_pa_space());
    }

    #[test]
    fn alignment_helpers() {
        assert!(PhysAddr(0x20_0000).is_block_aligned());
        assert!(!PhysAddr(0x20_1000).is_block_aligned());
        assert!(Ipa(0x20_1000).is_page_aligned());
        assert!(!Ipa(0x20_1008).is_page_aligned());
        assert!(PhysAddr(0x40_0000).is_aligned_to(0x20_0000));
        assert!(!PhysAddr(0x41_0000).is_aligned_to(0x20_0000));
        assert!(!PhysAddr(0x1000).is_aligned_to(0));
        assert_eq!(PhysAddr(0x20_1234).page_base(), PhysAddr(0x20_1000));
        assert_eq!(Ipa(0x3f_ffff).block_base(), Ipa(0x20_0000));
    }

    #[test]
    fn additions_check_or_wrap_as_named() {
        assert_eq!(Ipa(0x1000).add(0x10), Ipa(0x1010));
        assert_eq!(Ipa(u64::MAX).add(2), Ipa(1));
        assert_eq!(PhysAddr(0x1000).checked_add(0x10), Some(PhysAddr(0x1010)));
        assert_eq!(PhysAddr(u64::MAX).checked_add(1), None);
        assert_eq!(
            PhysAddr(0x1000).checked_add_pages(2),
            Some(PhysAddr(0x3000))
        );
        assert_eq!(PhysAddr(u64::MAX).checked_add_pages(1), None);
        assert_eq!(PhysAddr(0).checked_add_pages(u64::MAX), None);
    }
}
