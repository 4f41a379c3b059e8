//! The VMM's configuration. One program drives any guest in either conversion mode; a system
//! configures each VMM PD with symbols the build tool patches (libvmm's and Microkit's idiom):
//!
//! | symbol | system.xml | meaning |
//! | --- | --- | --- |
//! | `guest_ram_vaddr`, `guest_ram_size` | `setvar_vaddr`/`setvar_size` on the VMM's map of the guest's RAM | the window |
//! | `guest_image_vaddr`, `guest_image_size` | `setvar_vaddr`/`setvar_prefill_size` on a read-only map of a region prefilled with the guest's `.bin` | the clean image restored after a teardown |
//! | `guest_vcpu_id` | `setvar_id` on the boot `<vcpu>` | the vCPU the VMM starts (default 0) |
//! | `vmm_start_channel` | `setvar_id` on a channel end | wait for a notification there before starting (default: start at once) |
//! | `vmm_done_channel` | `setvar_id` on a channel end | when every run passed, notify there instead of ending the system |
//!
//! The conversion mode is no VMM setting: it belongs to the VM in system.xml, the hypervisor
//! enforces it, and the guest learns it from the hypervisor and tells the VMM.

use frameshift_abi::addr::{Ipa, PAGE_SIZE};

/// A `setvar_id` symbol the build tool left alone (no such attribute in system.xml).
pub const UNSET: u64 = u64::MAX;

/// Highest vCPU or channel id Microkit allows (the ABI crate's; both are 61).
pub const MAX_ID: u64 = frameshift_abi::boot_info::MAX_CHANNEL_ID as u64;
const _: () = assert!(frameshift_abi::boot_info::MAX_VCPU_ID as u64 == MAX_ID);

/// A `setvar_id` symbol's value is above [`MAX_ID`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IdOutOfRange;

/// A `setvar_id` symbol: `None` when the build tool left it [`UNSET`], the id when it is in
/// range.
pub const fn optional_id(raw: u64) -> Result<Option<u64>, IdOutOfRange> {
    match raw {
        UNSET => Ok(None),
        id if id <= MAX_ID => Ok(Some(id)),
        _ => Err(IdOutOfRange),
    }
}

/// The window `guest_ram_vaddr` and `guest_ram_size` describe: its first address, when that is
/// not zero and is page aligned and the size is a nonzero multiple of `granule` bytes.
pub fn window(vaddr: u64, size: u64, granule: u64) -> Option<Ipa> {
    let window = Ipa(vaddr);
    let whole = size != 0 && size.is_multiple_of(granule);
    (window.get() != 0 && window.is_page_aligned() && whole).then_some(window)
}

/// The raw symbol values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Symbols {
    /// `guest_ram_vaddr`.
    pub guest_ram_vaddr: u64,
    /// `guest_ram_size`.
    pub guest_ram_size: u64,
    /// `guest_image_vaddr`.
    pub guest_image_vaddr: u64,
    /// `guest_image_size`.
    pub guest_image_size: u64,
    /// `guest_vcpu_id`.
    pub guest_vcpu_id: u64,
    /// `vmm_start_channel`.
    pub vmm_start_channel: u64,
    /// `vmm_done_channel`.
    pub vmm_done_channel: u64,
}

/// A checked configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Config {
    /// The window's first address in the VMM.
    pub window: Ipa,
    /// The guest's RAM, in pages (the window's size).
    pub pages: u64,
    /// The clean image's first address in the VMM.
    pub image: Ipa,
    /// The clean image's length in bytes.
    pub image_bytes: u64,
    /// The boot vCPU.
    pub vcpu: usize,
    /// Wait for a notification on this channel before starting.
    pub start_channel: Option<usize>,
    /// Notify this channel when every run passed, instead of ending the system.
    pub done_channel: Option<usize>,
}

/// Why the symbols make no configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConfigError {
    /// The window is missing, unaligned or not a whole number of pages.
    Window,
    /// The clean image is missing, or larger than the guest's RAM.
    Image,
    /// A vCPU or channel id is out of range.
    Id,
}

impl core::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            Self::Window => "guest_ram_vaddr/guest_ram_size do not describe a page-aligned window",
            Self::Image => "guest_image_vaddr/guest_image_size do not describe an image that fits the guest's RAM",
            Self::Id => "a vCPU or channel id is out of range (0..=61)",
        })
    }
}

fn channel(raw: u64) -> Result<Option<usize>, ConfigError> {
    match optional_id(raw) {
        Ok(id) => Ok(id.map(|id| id as usize)),
        Err(IdOutOfRange) => Err(ConfigError::Id),
    }
}

impl Config {
    /// Checks the symbols.
    pub fn from_symbols(symbols: &Symbols) -> Result<Self, ConfigError> {
        let size = symbols.guest_ram_size;
        let window = window(symbols.guest_ram_vaddr, size, PAGE_SIZE).ok_or(ConfigError::Window)?;
        let image = Ipa(symbols.guest_image_vaddr);
        let image_bytes = symbols.guest_image_size;
        if image.get() == 0 || image_bytes == 0 || image_bytes > size {
            return Err(ConfigError::Image);
        }
        let vcpu = channel(symbols.guest_vcpu_id)?.unwrap_or(0);
        Ok(Self {
            window,
            pages: size / PAGE_SIZE,
            image,
            image_bytes,
            vcpu,
            start_channel: channel(symbols.vmm_start_channel)?,
            done_channel: channel(symbols.vmm_done_channel)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: Symbols = Symbols {
        guest_ram_vaddr: 0x2000_0000,
        guest_ram_size: 0x20_0000,
        guest_image_vaddr: 0x3000_0000,
        guest_image_size: 62_300,
        guest_vcpu_id: UNSET,
        vmm_start_channel: UNSET,
        vmm_done_channel: 2,
    };

    #[test]
    fn ids_are_unset_or_in_range() {
        assert_eq!(optional_id(UNSET), Ok(None));
        assert_eq!(optional_id(0), Ok(Some(0)));
        assert_eq!(optional_id(MAX_ID), Ok(Some(61)));
        assert_eq!(optional_id(MAX_ID + 1), Err(IdOutOfRange));
        assert_eq!(optional_id(UNSET - 1), Err(IdOutOfRange));
    }

    #[test]
    fn a_window_is_page_aligned_and_whole_granules() {
        const BLOCK: u64 = 0x20_0000;
        assert_eq!(
            window(0x2000_0000, BLOCK, PAGE_SIZE),
            Some(Ipa(0x2000_0000))
        );
        assert_eq!(
            window(0x2000_1000, 2 * BLOCK, BLOCK),
            Some(Ipa(0x2000_1000))
        );
        assert_eq!(
            window(0x2000_0000, PAGE_SIZE, BLOCK),
            None,
            "not a whole block"
        );
        assert_eq!(window(0x2000_0000, 0, PAGE_SIZE), None, "empty");
        assert_eq!(window(0, BLOCK, PAGE_SIZE), None, "no address");
        assert_eq!(window(0x2000_0008, BLOCK, PAGE_SIZE), None, "unaligned");
    }

    #[test]
    fn good_symbols_make_a_config_with_defaults() {
        assert_eq!(
            Config::from_symbols(&GOOD),
            Ok(Config {
                window: Ipa(0x2000_0000),
                pages: 512,
                image: Ipa(0x3000_0000),
                image_bytes: 62_300,
                vcpu: 0,
                start_channel: None,
                done_channel: Some(2),
            })
        );
    }

    #[test]
    fn bad_symbols_are_refused() {
        let cases = [
            (
                Symbols {
                    guest_ram_vaddr: 0,
                    ..GOOD
                },
                ConfigError::Window,
            ),
            (
                Symbols {
                    guest_ram_vaddr: 0x2000_0800,
                    ..GOOD
                },
                ConfigError::Window,
            ),
            (
                Symbols {
                    guest_ram_size: 0x1800,
                    ..GOOD
                },
                ConfigError::Window,
            ),
            (
                Symbols {
                    guest_image_size: 0,
                    ..GOOD
                },
                ConfigError::Image,
            ),
            (
                Symbols {
                    guest_image_size: 0x20_0001,
                    ..GOOD
                },
                ConfigError::Image,
            ),
            (
                Symbols {
                    guest_image_vaddr: 0,
                    ..GOOD
                },
                ConfigError::Image,
            ),
            (
                Symbols {
                    guest_vcpu_id: 62,
                    ..GOOD
                },
                ConfigError::Id,
            ),
            (
                Symbols {
                    vmm_start_channel: 62,
                    ..GOOD
                },
                ConfigError::Id,
            ),
        ];
        for (symbols, error) in cases {
            assert_eq!(Config::from_symbols(&symbols), Err(error), "{symbols:?}");
        }
    }
}
