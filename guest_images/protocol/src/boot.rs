//! The boot convention between a Frameshift VMM and its guests.
//!
//! ```text
//! IPA 0x4000_0000  +------------------------+ GUEST_RAM_IPA = link base = entry
//!                  | .text (_start first)   |
//!                  | .rodata, .data         | the flat image (<name>.bin) ends here
//!                  | .bss, stack, tables    | zeroed by the guest itself
//!                  | rest of the guest RAM  |
//!                  +------------------------+
//! ```
//!
//! Guest images are linked at [`GUEST_RAM_IPA`], the base of the guest's RAM `<map>` in
//! system.xml, and entered there: the VMM starts the boot vCPU at [`GUEST_ENTRY`] with the MMU off
//! and [`BOOT_MAGIC`] in `x0`. The flat image's first byte belongs at [`GUEST_RAM_IPA`], so the
//! build tool can place it in the guest's RAM with `prefill_path` (the guest then owns its image
//! from boot and nobody wrote a guest-private page), and the VMM can copy the same bytes into its
//! own pages and donate them after a teardown.
//!
//! `x0` only says *who* started the guest: a guest that finds anything else (QEMU's own loader
//! gives 0 or a device-tree address) runs without hypervisor. A guest never takes anything it has
//! to trust from the VMM: its conversion mode and its RAM come from the hypervisor
//! (`FS_MEM_STATE`), so a lying VMM can at worst keep it from making calls, which is denial of
//! service, and the VMM may deny service anyway (DESIGN.md 3).

use frameshift_abi::addr::Ipa;

/// Where every guest image is linked: the first IPA of its RAM.
pub const GUEST_RAM_IPA: Ipa = Ipa(0x4000_0000);

/// Where the VMM starts the boot vCPU: the image's `_start`, its first byte.
pub const GUEST_ENTRY: Ipa = GUEST_RAM_IPA;

/// `x0` at entry when a Frameshift VMM started the guest: ASCII "FSVMBOOT", little endian.
pub const BOOT_MAGIC: u64 = u64::from_le_bytes(*b"FSVMBOOT");

/// Who started the guest, as `x0` at entry says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Launcher {
    /// A Frameshift VMM: the guest runs under the hypervisor and may make its calls.
    FrameshiftVmm,
    /// Anything else (QEMU's loader on a machine without the hypervisor): no hypercalls.
    Bare,
}

impl Launcher {
    /// The launcher `x0` names.
    pub const fn from_boot_register(x0: u64) -> Self {
        if x0 == BOOT_MAGIC {
            Self::FrameshiftVmm
        } else {
            Self::Bare
        }
    }
}

/// How a guest tells shared from private memory (DESIGN.md 4), fixed per VM in system.xml.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConversionMode {
    /// pKVM style: one IPA space; a page's state comes from the call history.
    History,
    /// SEV/TDX/CCA style: a shared page is mapped at its alias `IPA | 1 << 39`.
    Split,
}

impl ConversionMode {
    /// The word a guest prints and sends: `history` or `split`.
    pub const fn name(self) -> &'static str {
        match self {
            Self::History => "history",
            Self::Split => "split",
        }
    }

    /// The IPA at which the guest reaches page `ipa` while it is shared: its alias in split
    /// mode, itself in history mode.
    pub const fn shared_view(self, ipa: Ipa) -> Ipa {
        match self {
            Self::History => ipa,
            Self::Split => ipa.shared_alias(),
        }
    }

    /// The number a doorbell `HELLO` carries.
    pub const fn code(self) -> u64 {
        match self {
            Self::History => 1,
            Self::Split => 2,
        }
    }

    /// The mode a doorbell `HELLO` names.
    pub const fn from_code(code: u64) -> Option<Self> {
        match code {
            1 => Some(Self::History),
            2 => Some(Self::Split),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_magic_means_a_frameshift_vmm() {
        assert_eq!(
            Launcher::from_boot_register(BOOT_MAGIC),
            Launcher::FrameshiftVmm
        );
        assert_eq!(BOOT_MAGIC, 0x544f_4f42_4d56_5346);
        for other in [0, 0x4000_0000, 0x4800_0000, BOOT_MAGIC ^ 1, u64::MAX] {
            assert_eq!(Launcher::from_boot_register(other), Launcher::Bare);
        }
    }

    #[test]
    fn the_shared_view_is_the_alias_only_in_split_mode() {
        let page = Ipa(0x4001_2000);
        assert_eq!(ConversionMode::History.shared_view(page), page);
        assert_eq!(ConversionMode::Split.shared_view(page), Ipa(0x80_4001_2000));
        for mode in [ConversionMode::History, ConversionMode::Split] {
            assert_eq!(ConversionMode::from_code(mode.code()), Some(mode));
        }
        assert_eq!(ConversionMode::from_code(0), None);
        assert_eq!(ConversionMode::from_code(3), None);
    }
}
