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

/// Highest channel id Microkit allows (the ABI crate's).
const MAX_CHANNEL: u64 = frameshift_abi::boot_info::MAX_CHANNEL_ID as u64;

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
    match raw {
        UNSET => Ok(None),
        id if id <= MAX_CHANNEL => Ok(Some(id as usize)),
        _ => Err(ConfigError::Id),
    }
}

impl Config {
    /// Checks the symbols.
    pub fn from_symbols(symbols: &Symbols) -> Result<Self, ConfigError> {
        let window = Ipa(symbols.guest_ram_vaddr);
        let size = symbols.guest_ram_size;
        if window.get() == 0
            || !window.is_page_aligned()
            || size == 0
            || !size.is_multiple_of(PAGE_SIZE)
        {
            return Err(ConfigError::Window);
        }
        let image = Ipa(symbols.guest_image_vaddr);
        let image_bytes = symbols.guest_image_size;
        if image.get() == 0 || image_bytes == 0 || image_bytes > size {
            return Err(ConfigError::Image);
        }
        let vcpu = match symbols.guest_vcpu_id {
            UNSET => 0,
            id if id <= MAX_CHANNEL => id as usize,
            _ => return Err(ConfigError::Id),
        };
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
