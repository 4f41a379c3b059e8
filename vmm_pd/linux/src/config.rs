//! The Linux VMM's configuration, from the symbols the build tool patches (libvmm's and
//! Microkit's idiom):
//!
//! | symbol | system.xml | meaning |
//! | --- | --- | --- |
//! | `guest_ram_vaddr`, `guest_ram_size` | `setvar_vaddr`/`setvar_size` on the VMM's map of the guest's RAM | the window onto guest RAM |
//! | `kernel_vaddr`, `kernel_size` | `setvar_vaddr`/`setvar_prefill_size` on a read-only map of a region prefilled with `vmlinuz` | the kernel Image |
//! | `initrd_vaddr`, `initrd_size` | the same, for `initramfs.cpio.gz` | the initramfs |
//! | `guest_vcpu_id` | `setvar_id` on the boot `<vcpu>` | the boot vCPU (default 0) |
//! | `guest_vcpu2_id` | `setvar_id` on a second `<vcpu>` | a second vCPU, started by Linux with PSCI `CPU_ON` (default: none) |
//!
//! Whether the VM is protected is no setting: the VMM asks the hypervisor what it holds in its
//! window (`PD_FRAME_CAPS`).

use frameshift_abi::addr::{Ipa, BLOCK_SIZE, PAGE_SIZE};
pub use frameshift_vmm::config::UNSET;
use frameshift_vmm::config::{optional_id, window};

/// The raw symbol values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Symbols {
    /// `guest_ram_vaddr`.
    pub guest_ram_vaddr: u64,
    /// `guest_ram_size`.
    pub guest_ram_size: u64,
    /// `kernel_vaddr`.
    pub kernel_vaddr: u64,
    /// `kernel_size`.
    pub kernel_size: u64,
    /// `initrd_vaddr`.
    pub initrd_vaddr: u64,
    /// `initrd_size`.
    pub initrd_size: u64,
    /// `guest_vcpu_id`.
    pub guest_vcpu_id: u64,
    /// `guest_vcpu2_id`.
    pub guest_vcpu2_id: u64,
}

/// A file the VMM reads from one of its own regions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct File {
    /// Its first byte in the VMM.
    pub base: Ipa,
    /// Its length.
    pub bytes: u64,
}

/// A checked configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Config {
    /// The window's first address in the VMM.
    pub window: Ipa,
    /// The guest's RAM in bytes (a whole number of 2 MiB blocks: the kernel is placed on a
    /// 2 MiB boundary and the device tree in the last block).
    pub ram_bytes: u64,
    /// The kernel Image.
    pub kernel: File,
    /// The initramfs.
    pub initrd: File,
    /// The vCPU ids (`<vcpu id>`), boot vCPU first; index = the vCPU's MPIDR Aff0.
    pub vcpus: [u64; 2],
    /// How many of `vcpus` exist.
    pub vcpu_count: usize,
}

/// Why the symbols make no configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConfigError {
    /// The window is missing, unaligned or not a whole number of 2 MiB blocks.
    Window,
    /// The kernel or the initramfs is missing.
    File(&'static str),
    /// A vCPU id is out of range, or both vCPUs have the same id.
    Vcpu,
}

impl core::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Window => f.write_str(
                "guest_ram_vaddr/guest_ram_size do not describe a window of whole 2 MiB blocks",
            ),
            Self::File(name) => write!(f, "{name}_vaddr/{name}_size do not describe a file"),
            Self::Vcpu => f.write_str("the vCPU ids are out of range (0..=61) or the same"),
        }
    }
}

impl Config {
    /// Checks the symbols.
    pub fn from_symbols(symbols: &Symbols) -> Result<Self, ConfigError> {
        let ram_bytes = symbols.guest_ram_size;
        let window =
            window(symbols.guest_ram_vaddr, ram_bytes, BLOCK_SIZE).ok_or(ConfigError::Window)?;
        let file = |base: u64, bytes: u64, name| {
            if base == 0 || bytes == 0 || !base.is_multiple_of(PAGE_SIZE) {
                Err(ConfigError::File(name))
            } else {
                Ok(File {
                    base: Ipa(base),
                    bytes,
                })
            }
        };
        let kernel = file(symbols.kernel_vaddr, symbols.kernel_size, "kernel")?;
        let initrd = file(symbols.initrd_vaddr, symbols.initrd_size, "initrd")?;
        let vcpu = |raw| optional_id(raw).map_err(|_| ConfigError::Vcpu);
        let boot = vcpu(symbols.guest_vcpu_id)?.unwrap_or(0);
        let (second, vcpu_count) = match vcpu(symbols.guest_vcpu2_id)? {
            None => (UNSET, 1),
            Some(id) if id != boot => (id, 2),
            Some(_) => return Err(ConfigError::Vcpu),
        };
        Ok(Self {
            window,
            ram_bytes,
            kernel,
            initrd,
            vcpus: [boot, second],
            vcpu_count,
        })
    }

    /// The index (MPIDR Aff0) of the vCPU whose `<vcpu id>` is `id`.
    pub fn vcpu_index(&self, id: u64) -> Option<usize> {
        self.vcpus[..self.vcpu_count]
            .iter()
            .position(|vcpu| *vcpu == id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: Symbols = Symbols {
        guest_ram_vaddr: 0x2000_0000,
        guest_ram_size: 0x800_0000,
        kernel_vaddr: 0x3000_0000,
        kernel_size: 34_891_712,
        initrd_vaddr: 0x3800_0000,
        initrd_size: 986_086,
        guest_vcpu_id: UNSET,
        guest_vcpu2_id: UNSET,
    };

    #[test]
    fn good_symbols_make_a_config() {
        let config = Config::from_symbols(&GOOD).unwrap_or_else(|error| panic!("{error}"));
        assert_eq!(config.window, Ipa(0x2000_0000));
        assert_eq!(config.kernel.bytes, 34_891_712);
        assert_eq!((config.vcpus[0], config.vcpu_count), (0, 1));
        let two = Config::from_symbols(&Symbols {
            guest_vcpu_id: 4,
            guest_vcpu2_id: 7,
            ..GOOD
        });
        let two = two.unwrap_or_else(|error| panic!("{error}"));
        assert_eq!((two.vcpus, two.vcpu_count), ([4, 7], 2));
        assert_eq!(two.vcpu_index(7), Some(1));
        assert_eq!(two.vcpu_index(4), Some(0));
        assert_eq!(two.vcpu_index(5), None);
    }

    #[test]
    fn bad_symbols_are_refused() {
        for (symbols, error) in [
            (
                Symbols {
                    guest_ram_vaddr: 0,
                    ..GOOD
                },
                ConfigError::Window,
            ),
            (
                Symbols {
                    guest_ram_size: 0x10_0000,
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
                    kernel_size: 0,
                    ..GOOD
                },
                ConfigError::File("kernel"),
            ),
            (
                Symbols {
                    initrd_vaddr: 0,
                    ..GOOD
                },
                ConfigError::File("initrd"),
            ),
            (
                Symbols {
                    guest_vcpu_id: 62,
                    ..GOOD
                },
                ConfigError::Vcpu,
            ),
            (
                Symbols {
                    guest_vcpu2_id: 0,
                    ..GOOD
                },
                ConfigError::Vcpu,
            ),
        ] {
            assert_eq!(Config::from_symbols(&symbols), Err(error), "{symbols:?}");
        }
    }
}
