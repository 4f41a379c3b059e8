//! Where things are in the guest: its physical map (QEMU `virt`'s, so the kernel finds the same
//! devices with or without the hypervisor), the arm64 Image header, and where the boot
//! protocol (Linux's Documentation/arch/arm64/booting.rst) lets the kernel, the initramfs and
//! the device tree go.
//!
//! ```text
//! 0x0800_0000  GIC distributor, redistributors (vgic)      emulated from stage-2 faults
//! 0x0900_0000  PL011 UART (pl011), SPI 1 = INTID 33        emulated from stage-2 faults
//! 0x4000_0000  RAM base = kernel Image (text_offset 0)     2 MiB aligned, image_size reserved
//!              ...
//!              initramfs                                   page aligned, right below the DTB
//! RAM end - 2 MiB  device tree                             2 MiB aligned, at most 2 MiB
//! ```

use frameshift_abi::addr::{Ipa, BLOCK_SIZE, PAGE_SIZE};

/// The guest's RAM base (QEMU `virt`'s).
pub const RAM_BASE: Ipa = Ipa(0x4000_0000);
/// The PL011's page.
pub const UART_BASE: Ipa = Ipa(0x0900_0000);
/// The PL011's size.
pub const UART_SIZE: u64 = 0x1000;
/// The PL011's SPI as the device tree numbers it (SPI 1), and its INTID.
pub const UART_SPI: u32 = 1;
/// The PL011's INTID (32 + its SPI number).
pub const UART_INTID: u32 = 32 + UART_SPI;
/// The largest device tree the boot protocol allows.
pub const DTB_MAX: u64 = 0x20_0000;

/// `MZ`-free arm64 Image magic at offset 56: `ARM\x64`.
const IMAGE_MAGIC: u32 = 0x644d_5241;

/// The fields of an arm64 Image header this VMM needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ImageHeader {
    /// Where in a 2 MiB-aligned block the Image is placed.
    pub text_offset: u64,
    /// How much memory from its start the kernel uses, `.bss` and early tables included.
    pub image_size: u64,
    /// Bit 0: big endian; bits 2:1: page size; bit 3: anywhere in RAM.
    pub flags: u64,
}

/// Why a guest cannot be laid out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LayoutError {
    /// The kernel file is not an arm64 Image (no magic, or too short).
    NotAnImage,
    /// A big-endian kernel: this VMM boots little-endian guests.
    BigEndian,
    /// The kernel, the initramfs and the device tree do not fit the RAM.
    TooBig,
}

impl core::fmt::Display for LayoutError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            Self::NotAnImage => "the kernel is not an arm64 Image (no ARM\\x64 magic)",
            Self::BigEndian => "the kernel is big endian",
            Self::TooBig => "the kernel, initramfs and device tree do not fit the guest's RAM",
        })
    }
}

impl ImageHeader {
    /// Reads the header from the Image's first 64 bytes, as eight little-endian words.
    pub fn parse(words: &[u64; 8]) -> Result<Self, LayoutError> {
        // Word 7 holds `magic` (low half) and `res5`.
        if words[7] as u32 != IMAGE_MAGIC {
            return Err(LayoutError::NotAnImage);
        }
        let header = Self {
            text_offset: words[1],
            image_size: words[2],
            flags: words[3],
        };
        if header.flags & 1 != 0 {
            return Err(LayoutError::BigEndian);
        }
        Ok(header)
    }
}

/// Where everything goes, as guest IPAs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Placement {
    /// The kernel Image's first byte, which is also its entry point.
    pub kernel: Ipa,
    /// The initramfs's first byte.
    pub initrd: Ipa,
    /// One past its last byte (`linux,initrd-end`).
    pub initrd_end: Ipa,
    /// The device tree (`x0` at entry).
    pub dtb: Ipa,
}

/// Lays out a guest with `ram_bytes` of RAM (whole 2 MiB blocks) for a kernel file of
/// `kernel_bytes` with `header`, and an initramfs of `initrd_bytes`.
pub fn place(
    ram_bytes: u64,
    header: &ImageHeader,
    kernel_bytes: u64,
    initrd_bytes: u64,
) -> Result<Placement, LayoutError> {
    // An image_size of 0 is an old kernel's: the boot protocol then asks for text_offset
    // within the first 2 MiB and gives no size, so the file is all that is known.
    let text_offset = header.text_offset % BLOCK_SIZE;
    let kernel = RAM_BASE.add(text_offset);
    let kernel_end = kernel
        .get()
        .checked_add(header.image_size.max(kernel_bytes))
        .ok_or(LayoutError::TooBig)?;
    let ram_end = RAM_BASE
        .get()
        .checked_add(ram_bytes)
        .ok_or(LayoutError::TooBig)?;
    let dtb = ram_end
        .checked_sub(DTB_MAX)
        .map(|address| address & !(BLOCK_SIZE - 1))
        .ok_or(LayoutError::TooBig)?;
    let initrd = dtb
        .checked_sub(initrd_bytes)
        .map(|address| address & !(PAGE_SIZE - 1))
        .ok_or(LayoutError::TooBig)?;
    if initrd < kernel_end || dtb < RAM_BASE.get() {
        return Err(LayoutError::TooBig);
    }
    Ok(Placement {
        kernel,
        initrd: Ipa(initrd),
        initrd_end: Ipa(initrd + initrd_bytes),
        dtb: Ipa(dtb),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The header of Debian's 6.12.117 cloud Image: text_offset 0, image_size 0x224_0000,
    /// flags 0xa (little endian, 4 KiB pages, anywhere in RAM).
    const DEBIAN: [u64; 8] = [
        0x1400_0000_FA40_5A4D,
        0,
        0x224_0000,
        0xA,
        0,
        0,
        0,
        0x0000_0040_644D_5241,
    ];

    #[test]
    fn debians_header_parses() {
        assert_eq!(
            ImageHeader::parse(&DEBIAN),
            Ok(ImageHeader {
                text_offset: 0,
                image_size: 0x224_0000,
                flags: 0xA
            })
        );
        let mut no_magic = DEBIAN;
        no_magic[7] = 0;
        assert_eq!(ImageHeader::parse(&no_magic), Err(LayoutError::NotAnImage));
        let mut big = DEBIAN;
        big[3] |= 1;
        assert_eq!(ImageHeader::parse(&big), Err(LayoutError::BigEndian));
    }

    #[test]
    fn the_kernel_sits_at_the_ram_base_and_the_dtb_in_the_last_block() {
        let header = ImageHeader::parse(&DEBIAN).unwrap_or_else(|error| panic!("{error}"));
        let placement = place(0x800_0000, &header, 34_891_712, 986_086);
        assert_eq!(
            placement,
            Ok(Placement {
                kernel: Ipa(0x4000_0000),
                initrd: Ipa(0x47D0_F000),
                initrd_end: Ipa(0x47D0_F000 + 986_086),
                dtb: Ipa(0x47E0_0000),
            })
        );
    }

    #[test]
    fn what_does_not_fit_is_refused() {
        let header = ImageHeader::parse(&DEBIAN).unwrap_or_else(|error| panic!("{error}"));
        // 36 MiB of RAM: the kernel's 34.25 MiB and the 2 MiB for the DTB leave no room.
        assert_eq!(
            place(0x240_0000, &header, 34_891_712, 4096),
            Err(LayoutError::TooBig)
        );
        assert_eq!(place(0x10_0000, &header, 1, 1), Err(LayoutError::TooBig));
        assert_eq!(
            place(0x800_0000, &header, 1, 0x800_0000),
            Err(LayoutError::TooBig)
        );
        // A file longer than image_size (an old kernel's 0) reserves the file.
        let old = ImageHeader {
            text_offset: 0x8_0000,
            image_size: 0,
            flags: 0,
        };
        let placement = place(0x400_0000, &old, 0x100_0000, 0x1000);
        assert_eq!(placement.map(|p| p.kernel), Ok(Ipa(0x4008_0000)));
        assert_eq!(
            place(0x400_0000, &old, 0x3F0_0000, 0x1000),
            Err(LayoutError::TooBig)
        );
    }
}
