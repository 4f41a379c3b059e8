//! Frameshift's own rules on a file Microkit accepts, checked after every Microkit check so that a
//! file Microkit refuses still gets Microkit's message (stages 5 to 8 of the table in
//! `system.rs`):
//!
//! | stage | rule | why |
//! | --- | --- | --- |
//! | 5 | every PD and VM name passes `frameshift_abi::domain_name::check` | the console prefix `FS\|<name>\|` is the only attribution of a line; no name may print the hypervisor's prefix or the same prefix as another |
//! | 6 | no memory region has size 0 | the image builder gives every region at least one page |
//! | 7 | no `phys_addr` region overlaps a device the hypervisor keeps or a DMA-capable device (`devices.rs`) | a DMA-capable device writes physical memory behind stage 2 |
//! | 8 | at most `MAX_IRQS` (64) `<irq>`s and `MAX_CHANNELS` (256) `<channel>`s in the system, and at most `MAX_VCPUS` (4) `<vcpu>`s in each VM, checked in that order | the hypervisor routes at most that many interrupts, its channel table holds that many channels, and it keeps a VM's vCPUs in an array of that size (Microkit allows more of each) |

use frameshift_abi::boot_info::{MAX_CHANNELS, MAX_IRQS, MAX_VCPUS};
use frameshift_abi::domain_name;

use super::devices;
use super::error::{SdfError, SdfErrorKind, SdfResult};
use super::system::RawSystem;
use super::xml::{Pos, SdfFile};

fn refuse(message: String) -> SdfError {
    SdfError::new(SdfErrorKind::Frameshift, message)
}

/// Stages 5 to 8, in that order.
pub(crate) fn check(file: &SdfFile<'_>, system: &RawSystem) -> SdfResult<()> {
    check_names(file, system)?;
    check_sizes(file, system)?;
    check_devices(file, system)?;
    check_irq_count(file, system)?;
    check_channel_count(file, system)?;
    check_vcpu_count(file, system)
}

/// Stage 5: every name, in document order.
fn check_names(file: &SdfFile<'_>, system: &RawSystem) -> SdfResult<()> {
    let mut names: Vec<(Pos, &str, &str)> = Vec::with_capacity(system.pds.len() * 2);
    for pd in &system.pds {
        names.push((pd.pos, "protection_domain", &pd.name));
        if let Some(vm) = &pd.virtual_machine {
            names.push((vm.pos, "virtual_machine", &vm.name));
        }
    }
    names.sort_by_key(|(pos, _, _)| *pos);
    for (pos, tag, name) in names {
        if let Err(reason) = domain_name::check(name.as_bytes()) {
            // Escaped, so that a control character in a refused name reaches the terminal as
            // text, not as a control sequence.
            return Err(refuse(format!(
                "Error: invalid name '{}': {reason} on element '{tag}': {}",
                name.escape_debug(),
                file.loc(pos)
            )));
        }
    }
    Ok(())
}

/// Stage 6: region sizes, in document order.
fn check_sizes(file: &SdfFile<'_>, system: &RawSystem) -> SdfResult<()> {
    match system.regions.iter().find(|region| region.size == 0) {
        Some(region) => Err(refuse(format!(
            "Error: memory region '{}' has size 0; its size must be a non-zero multiple of its page size {:#x} @ {}",
            region.name,
            region.page_size,
            file.loc(region.pos)
        ))),
        None => Ok(()),
    }
}

/// Stage 7: `phys_addr` regions, in document order.
fn check_devices(file: &SdfFile<'_>, system: &RawSystem) -> SdfResult<()> {
    for region in &system.regions {
        let Some(start) = region.phys_addr.map(|paddr| paddr.get()) else {
            continue;
        };
        if let Some(device) = devices::forbidden(start, region.size) {
            return Err(refuse(format!(
                "Error: memory region '{}' physical address range [{start:#x}..{:#x}) overlaps {device}, {} @ {}",
                region.name,
                start.saturating_add(region.size),
                devices::reason(device),
                file.loc(region.pos)
            )));
        }
    }
    Ok(())
}

/// Stage 8: the `<irq>` past the limit, if any.
fn check_irq_count(file: &SdfFile<'_>, system: &RawSystem) -> SdfResult<()> {
    let total: usize = system.pds.iter().map(|pd| pd.irqs.len()).sum();
    let Some(first_too_many) = system.pds.iter().flat_map(|pd| &pd.irqs).nth(MAX_IRQS) else {
        return Ok(());
    };
    Err(refuse(format!(
        "Error: too many irqs ({total}) defined. Maximum is {MAX_IRQS} (the hypervisor routes at most {MAX_IRQS} interrupts) @ {}",
        file.loc(first_too_many.pos)
    )))
}

/// Stage 8: the `<channel>` past the limit, if any.
fn check_channel_count(file: &SdfFile<'_>, system: &RawSystem) -> SdfResult<()> {
    let Some(first_too_many) = system.channels.get(MAX_CHANNELS) else {
        return Ok(());
    };
    Err(refuse(format!(
        "Error: too many channels ({}) defined. Maximum is {MAX_CHANNELS} (the hypervisor's channel table holds at most {MAX_CHANNELS} channels) @ {}",
        system.channels.len(),
        file.loc(first_too_many.pos)
    )))
}

/// Stage 8: the first `<vcpu>` past the limit of its VM, VMs in document order.
fn check_vcpu_count(file: &SdfFile<'_>, system: &RawSystem) -> SdfResult<()> {
    let mut vms: Vec<_> = system
        .pds
        .iter()
        .filter_map(|pd| pd.virtual_machine.as_ref())
        .collect();
    vms.sort_by_key(|vm| vm.pos);
    for vm in vms {
        if let Some(first_too_many) = vm.vcpus.get(MAX_VCPUS) {
            return Err(refuse(format!(
                "Error: too many vcpus ({}) in virtual machine '{}'. Maximum is {MAX_VCPUS} (a Frameshift limit: the hypervisor runs at most {MAX_VCPUS} vCPUs per virtual machine; Microkit allows more) @ {}",
                vm.vcpus.len(),
                vm.name,
                file.loc(first_too_many.pos)
            )));
        }
    }
    Ok(())
}
