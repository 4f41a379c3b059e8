//! The devices of QEMU `virt` and which of them a domain may map: the table itself is
//! `frameshift_abi::platform`, shared with the hypervisor's boot-info check; this module adds
//! the build tool's wording.

pub use frameshift_abi::platform::{all, forbidden, Device, Owner};

/// Why a domain may not map `device`, for messages.
pub fn reason(device: &Device) -> String {
    match device.owner {
        Owner::Hypervisor => format!(
            "which the hypervisor keeps for itself ({})",
            device.why
        ),
        Owner::Refused | Owner::Domain => format!(
            "a DMA-capable device ({}); no IOMMU stands in front of it on QEMU virt, so a domain that maps it can write any physical memory, bypassing stage 2",
            device.why
        ),
    }
}
