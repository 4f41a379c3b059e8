//! The Frameshift extension: `<virtual_machine protected="true">` (docs/SDF.md, DESIGN.md 7).
//!
//! A protected guest's memory regions are private to it from boot. Its parent PD (the VMM) keeps
//! its own map of each region, the *window*: at run time only the pages the guest has shared are
//! reachable through it. The rules below make the file say exactly that, so the image builder
//! never has to guess who else can reach private memory.
//!
//! | rule | refuses |
//! | --- | --- |
//! | P1 | a protected VM that maps no memory region |
//! | P2 | a protected VM mapping the same region twice (two IPAs aliasing one private page) |
//! | P3 | a private region with `phys_addr` (private memory is RAM the builder allocates, never a fixed or device range) |
//! | P4 | a private region mapped by any PD other than the parent VMM, or by any other VM |
//! | P5 | a private region the parent VMM has no window map of |
//! | P6 | an executable window map (the host never executes guest memory) |
//! | P7 | a `setvar region_paddr` on a private region (a physical address is what DMA programming needs) |

use super::error::{SdfError, SdfErrorKind, SdfResult};
use super::memory_region::RawMap;
use super::protection_domain::{RawPd, RawVm, SetVarKind};
use super::system::RawSystem;
use super::xml::SdfFile;

fn refuse(message: String) -> SdfError {
    SdfError::new(SdfErrorKind::Protected, message)
}

/// Checks rules P1 to P7 for every protected VM, in document order.
pub(crate) fn check(file: &SdfFile<'_>, system: &RawSystem) -> SdfResult<()> {
    for (vmm_index, vmm) in system.pds.iter().enumerate() {
        let Some(vm) = vmm.virtual_machine.as_ref().filter(|vm| vm.protected) else {
            continue;
        };
        if vm.maps.is_empty() {
            return Err(refuse(format!(
                "Error: protected virtual machine '{}' maps no memory region @ {}",
                vm.name,
                file.loc(vm.pos)
            )));
        }
        for (index, map) in vm.maps.iter().enumerate() {
            check_private_map(file, system, vmm_index, vmm, vm, index, map)?;
        }
    }
    Ok(())
}

fn check_private_map(
    file: &SdfFile<'_>,
    system: &RawSystem,
    vmm_index: usize,
    vmm: &RawPd,
    vm: &RawVm,
    index: usize,
    map: &RawMap,
) -> SdfResult<()> {
    let region_name = &map.mr;
    if vm
        .maps
        .iter()
        .take(index)
        .any(|earlier| earlier.mr == *region_name)
    {
        return Err(refuse(format!(
            "Error: protected virtual machine '{}' maps memory region '{region_name}' more than once @ {}",
            vm.name,
            file.loc(map.pos)
        )));
    }
    if let Some(region) = system
        .regions
        .iter()
        .find(|region| region.name == *region_name && region.phys_addr.is_some())
    {
        return Err(refuse(format!(
            "Error: memory region '{region_name}' is private to protected virtual machine '{}' and must not set phys_addr @ {}",
            vm.name,
            file.loc(region.pos)
        )));
    }

    for (other_index, other) in system.pds.iter().enumerate() {
        if other_index != vmm_index {
            if let Some(other_map) = other.maps.iter().find(|m| m.mr == *region_name) {
                return Err(refuse(format!(
                    "Error: memory region '{region_name}' is private to protected virtual machine '{}' and must not be mapped by protection domain '{}' @ {}",
                    vm.name,
                    other.name,
                    file.loc(other_map.pos)
                )));
            }
        }
        let Some(other_vm) = other.virtual_machine.as_ref() else {
            continue;
        };
        if other_index != vmm_index {
            if let Some(other_map) = other_vm.maps.iter().find(|m| m.mr == *region_name) {
                return Err(refuse(format!(
                    "Error: memory region '{region_name}' is private to protected virtual machine '{}' and must not be mapped by virtual machine '{}' @ {}",
                    vm.name,
                    other_vm.name,
                    file.loc(other_map.pos)
                )));
            }
        }
    }

    let windows: Vec<&RawMap> = vmm.maps.iter().filter(|m| m.mr == *region_name).collect();
    if windows.is_empty() {
        return Err(refuse(format!(
            "Error: protected virtual machine '{}' maps memory region '{region_name}' but its parent protection domain '{}' has no window map of it @ {}",
            vm.name,
            vmm.name,
            file.loc(map.pos)
        )));
    }
    if let Some(window) = windows.iter().find(|window| window.perms.execute) {
        return Err(refuse(format!(
            "Error: window map of memory region '{region_name}' in protection domain '{}' must not be executable @ {}",
            vmm.name,
            file.loc(window.pos)
        )));
    }

    for pd in &system.pds {
        for setvar in &pd.setvars {
            if let SetVarKind::Paddr { region, pos } = &setvar.kind {
                if region == region_name {
                    return Err(refuse(format!(
                        "Error: setvar on symbol '{}' exports the physical address of memory region '{region_name}', which is private to protected virtual machine '{}' @ {}",
                        setvar.symbol,
                        vm.name,
                        file.loc(*pos)
                    )));
                }
            }
        }
    }
    Ok(())
}
