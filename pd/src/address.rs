//! `Ipa`: an address in this PD's VSpace (stage 1 is off for PDs, so a PD address is an IPA).

/// An intermediate physical address in this PD's VSpace.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
#[repr(transparent)]
pub struct Ipa(pub u64);

impl Ipa {
    /// The address as a number.
    pub const fn get(self) -> u64 {
        self.0
    }

    /// This address plus `offset` bytes.
    pub const fn add(self, offset: u64) -> Self {
        Self(self.0.wrapping_add(offset))
    }
}

impl core::fmt::Display for Ipa {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{:#x}", self.0)
    }
}

impl core::fmt::LowerHex for Ipa {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        core::fmt::LowerHex::fmt(&self.0, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipa_prints_as_hex() {
        assert_eq!(std::format!("{}", Ipa(0x4010_0000)), "0x40100000");
        assert_eq!(Ipa(0x1000).add(0x10), Ipa(0x1010));
    }
}
