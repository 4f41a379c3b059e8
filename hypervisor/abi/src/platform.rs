//! The devices of the machine Frameshift runs on, and which of them a domain may map: one table
//! that the build tool (refusing a `system.xml`) and the hypervisor (refusing a boot image, which
//! is untrusted too) both use.
//!
//! The machine is QEMU 7.2 `virt` with `virtualization=on,gic-version=3` and its defaults
//! (`secure=off`, no IOMMU, `highmem=on`, less than 255 GiB of RAM, so the high regions sit at
//! their legacy addresses). Bases and sizes are QEMU's (`hw/arm/virt.c`, `base_memmap` and
//! `extended_memmap`); the present ones were checked with `info mtree` on QEMU 7.2. RAM
//! (0x4000_0000 onwards) is not a device; the image builder handles it (docs/ABI.md).
//!
//! A device that can read or write physical memory by itself (DMA) does so with physical
//! addresses: QEMU `virt` has no IOMMU in front of any of them, so stage 2 never sees those
//! accesses. Mapping such a device into a domain would let the domain write any memory, the
//! hypervisor's included. So a `phys_addr` memory region may not overlap:
//! - a device the hypervisor keeps for itself ([`Owner::Hypervisor`]), nor
//! - a DMA-capable device ([`Owner::Refused`]).
//!
//! docs/SDF.md ("Devices of QEMU virt") prints this table; a test in the build tool keeps the
//! two equal.

use core::fmt;

/// Who may map a device.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Owner {
    /// The hypervisor keeps it: no domain maps any of it.
    Hypervisor,
    /// No domain maps it: it can DMA and no IOMMU translates its accesses.
    Refused,
    /// It may be given to a protection domain or virtual machine.
    Domain,
}

impl Owner {
    /// The word docs/SDF.md uses.
    pub fn word(self) -> &'static str {
        match self {
            Self::Hypervisor => "hypervisor-owned",
            Self::Refused => "refused",
            Self::Domain => "may be given to a PD",
        }
    }
}

/// One device (or reserved device window) of QEMU `virt`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Device {
    /// What QEMU puts there.
    pub name: &'static str,
    /// First byte.
    pub base: u64,
    /// Size in bytes.
    pub size: u64,
    /// Whether it can access memory by itself (DMA).
    pub dma: bool,
    /// Who may map it.
    pub owner: Owner,
    /// What it is, and why it may or may not be mapped.
    pub why: &'static str,
}

impl Device {
    /// One past the last byte.
    pub fn end(&self) -> u64 {
        self.base + self.size
    }

    /// Whether `[start, start + size)` shares a byte with the device.
    pub fn overlaps(&self, start: u64, size: u64) -> bool {
        start < self.end() && self.base < start.saturating_add(size)
    }
}

impl fmt::Display for Device {
    /// `fw_cfg [0x9020000..0x9020018)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} [{:#x}..{:#x})", self.name, self.base, self.end())
    }
}

const fn device(
    name: &'static str,
    base: u64,
    size: u64,
    dma: bool,
    owner: Owner,
    why: &'static str,
) -> Device {
    Device {
        name,
        base,
        size,
        dma,
        owner,
        why,
    }
}

use Owner::{Domain, Hypervisor, Refused};

/// QEMU `virt`'s devices, by address.
pub const QEMU_VIRT_DEVICES: [Device; 24] = [
    device(
        "flash0 (CFI flash)",
        0x0000_0000,
        0x0400_0000,
        false,
        Domain,
        "boot flash; registers and ROM only",
    ),
    device(
        "flash1 (CFI flash)",
        0x0400_0000,
        0x0400_0000,
        false,
        Domain,
        "flash; registers and ROM only",
    ),
    device(
        "GICv3 distributor",
        0x0800_0000,
        0x1_0000,
        false,
        Hypervisor,
        "the interrupt controller the hypervisor programs",
    ),
    device(
        "GIC reserved window (GICv2 interfaces)",
        0x0801_0000,
        0x7_0000,
        false,
        Hypervisor,
        "GICv2 CPU, v2m, hypervisor and vCPU interfaces on a GICv2 machine; empty with GICv3",
    ),
    device(
        "GICv3 ITS",
        0x0808_0000,
        0x2_0000,
        true,
        Hypervisor,
        "translates MSIs; reads its command queue and writes its tables in memory",
    ),
    device(
        "GICv3 redistributors",
        0x080A_0000,
        0xF6_0000,
        true,
        Hypervisor,
        "per-CPU interrupt state; read and write the LPI tables in memory",
    ),
    device(
        "PL011 UART (console)",
        0x0900_0000,
        0x1000,
        false,
        Hypervisor,
        "the console: only the hypervisor writes the line prefixes",
    ),
    device(
        "PL031 RTC",
        0x0901_0000,
        0x1000,
        false,
        Domain,
        "real-time clock; registers only",
    ),
    device(
        "fw_cfg",
        0x0902_0000,
        0x18,
        true,
        Refused,
        "its DMA interface copies to and from any physical address it is given",
    ),
    device(
        "PL061 GPIO",
        0x0903_0000,
        0x1000,
        false,
        Domain,
        "GPIO (the power button); registers only",
    ),
    device(
        "secure UART (absent: secure=off)",
        0x0904_0000,
        0x1000,
        false,
        Domain,
        "not present with secure=off; registers only",
    ),
    device(
        "SMMUv3 (absent: no iommu)",
        0x0905_0000,
        0x2_0000,
        true,
        Refused,
        "not present without iommu=smmuv3; reads its stream tables and queues in memory",
    ),
    device(
        "memory hotplug ACPI (absent)",
        0x0907_0000,
        0x18,
        false,
        Domain,
        "not present without ACPI firmware; registers only",
    ),
    device(
        "ACPI GED (absent)",
        0x0908_0000,
        0x4,
        false,
        Domain,
        "not present without ACPI firmware; registers only",
    ),
    device(
        "NVDIMM ACPI (absent)",
        0x0909_0000,
        0x4,
        true,
        Refused,
        "not present without NVDIMMs; its DSM interface reads and writes a buffer at a physical address it is given",
    ),
    device(
        "paravirtual time (absent: KVM only)",
        0x090A_0000,
        0x1_0000,
        false,
        Domain,
        "not present under TCG; a page of times, no DMA",
    ),
    device(
        "secure GPIO (absent: secure=off)",
        0x090B_0000,
        0x1000,
        false,
        Domain,
        "not present with secure=off; registers only",
    ),
    device(
        "virtio-mmio transports",
        0x0A00_0000,
        0x4000,
        true,
        Refused,
        "32 transports of 0x200 bytes; a virtio device reads and writes its queues anywhere in physical memory",
    ),
    device(
        "platform bus",
        0x0C00_0000,
        0x200_0000,
        true,
        Refused,
        "dynamically added devices (e.g. VFIO platform devices) can be bus masters",
    ),
    device(
        "secure memory (absent: secure=off)",
        0x0E00_0000,
        0x100_0000,
        false,
        Domain,
        "not present with secure=off; secure-world RAM",
    ),
    device(
        "PCIe MMIO window",
        0x1000_0000,
        0x2EFF_0000,
        true,
        Refused,
        "memory BARs of PCI devices, which can be bus masters",
    ),
    device(
        "PCIe PIO window",
        0x3EFF_0000,
        0x1_0000,
        true,
        Refused,
        "I/O BARs of PCI devices, which can be bus masters",
    ),
    device(
        "PCIe ECAM (low)",
        0x3F00_0000,
        0x100_0000,
        true,
        Refused,
        "unused by QEMU 7.2 virt with highmem (the high ECAM serves); configuration space turns on bus mastering",
    ),
    device(
        "GICv3 redistributors, second region",
        0x40_0000_0000,
        0x400_0000,
        true,
        Hypervisor,
        "not present with fewer than 124 CPUs; redistributors read and write the LPI tables in memory",
    ),
];

/// QEMU `virt`'s devices above 4 GiB (`highmem`), by address.
pub const QEMU_VIRT_HIGH_DEVICES: [Device; 2] = [
    device(
        "PCIe ECAM (high)",
        0x40_1000_0000,
        0x1000_0000,
        true,
        Refused,
        "PCI configuration space: turns on bus mastering of PCI devices, which then DMA anywhere",
    ),
    device(
        "PCIe MMIO window (high)",
        0x80_0000_0000,
        0x80_0000_0000,
        true,
        Refused,
        "memory BARs of PCI devices, which can be bus masters",
    ),
];

/// Every device of the machine, by address.
pub fn all() -> impl Iterator<Item = &'static Device> {
    QEMU_VIRT_DEVICES
        .iter()
        .chain(QEMU_VIRT_HIGH_DEVICES.iter())
}

/// Why a domain may not map `[start, start + size)`: the first device it overlaps that no domain
/// may map, if any.
pub fn forbidden(start: u64, size: u64) -> Option<&'static Device> {
    all().find(|device| device.owner != Domain && device.overlaps(start, size))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_is_sorted_disjoint_and_consistent() {
        let mut previous: Option<&Device> = None;
        for device in all() {
            if let Some(first) = previous {
                assert!(first.end() <= device.base, "{first} / {device}");
            }
            previous = Some(device);
        }
        let devices = all();
        for device in devices {
            assert!(device.size > 0, "{device}");
            // DMA-capable means no domain may map it.
            assert!(!device.dma || device.owner != Domain, "{device}");
        }
        // The GIC and the console are the hypervisor's, from 0x0800_0000 to the UART's end.
        let hypervisor_span: u64 = all()
            .filter(|device| device.owner == Hypervisor && device.base < 0x1000_0000)
            .map(|device| device.size)
            .sum();
        assert_eq!(hypervisor_span, 0x0100_1000);
    }

    #[test]
    fn forbidden_finds_dma_and_hypervisor_devices_only() {
        let name = |start, size| forbidden(start, size).map(|device| device.name);
        assert_eq!(name(0x0902_0000, 0x1000), Some("fw_cfg"));
        assert_eq!(name(0x0A00_3000, 0x1000), Some("virtio-mmio transports"));
        assert_eq!(name(0x40_1000_0000, 0x1000), Some("PCIe ECAM (high)"));
        assert_eq!(name(0x0900_0000, 0x1000), Some("PL011 UART (console)"));
        // A region spanning several devices names the first one it overlaps.
        assert_eq!(name(0x0901_0000, 0x2_0000), Some("fw_cfg"));
        assert_eq!(name(0x0901_0000, 0x1000), None);
        assert_eq!(name(0x0903_0000, 0x1000), None);
        assert_eq!(name(0x0100_0000, 0x1000), None);
        // Holes and memory above the high regions are not devices.
        assert_eq!(name(0x0B00_0000, 0x1000), None);
        assert_eq!(name(0x1_0000_0000, 0x1000), None);
        assert_eq!(name(u64::MAX - 0xFFF, 0x1000), None);
    }
}
