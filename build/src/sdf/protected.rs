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
//! | P8 | a map of a split-mode VM (`conversion="split"`) that ends above IPA bit 39: the upper half of its IPA space is where its shared pages appear |
//!
//! The `conversion` attribute itself (its value, and that only a protected VM has one) is
//! checked where the `<virtual_machine>` is parsed, as the `protected` value is.

use std::collections::{HashMap, HashSet};

use frameshift_abi::addr::SHARED_ALIAS_BIT;

use super::error::{SdfError, SdfErrorKind, SdfResult};
use super::memory_region::{RawMap, RawMemoryRegion};
use super::model::Conversion;
use super::protection_domain::{RawPd, RawVm, SetVarKind};
use super::system::RawSystem;
use super::xml::{Pos, SdfFile};

fn refuse(message: String) -> SdfError {
    SdfError::new(SdfErrorKind::Protected, message)
}

/// A domain's first map of a region: (index of the PD, whether the map is its VM's, the domain's
/// name, the map's position).
type User<'s> = (usize, bool, &'s str, Pos);

/// What the rules look up, indexed once so that checking every map of every protected VM is
/// linear in the size of the file rather than comparing each map with every other.
struct Index<'s> {
    regions: HashMap<&'s str, &'s RawMemoryRegion>,
    /// For each region, the first map of it by each domain, in PD order (a PD's own map before
    /// its VM's): at most two entries per PD.
    users: HashMap<&'s str, Vec<User<'s>>>,
    /// For each region, the first `setvar region_paddr` on it, in PD order.
    paddr_setvars: HashMap<&'s str, (&'s str, Pos)>,
}

impl<'s> Index<'s> {
    fn new(system: &'s RawSystem) -> Self {
        let mut regions = HashMap::with_capacity(system.regions.len());
        for region in &system.regions {
            regions.entry(region.name.as_str()).or_insert(region);
        }
        let mut users: HashMap<&str, Vec<User<'_>>> = HashMap::new();
        let mut paddr_setvars = HashMap::new();
        for (pd_index, pd) in system.pds.iter().enumerate() {
            let vm = pd.virtual_machine.as_ref();
            let domains = std::iter::once((false, pd.name.as_str(), pd.maps.as_slice()))
                .chain(vm.map(|vm| (true, vm.name.as_str(), vm.maps.as_slice())));
            for (is_vm, name, maps) in domains {
                let mut seen = HashSet::new();
                for map in maps {
                    if seen.insert(map.mr.as_str()) {
                        users
                            .entry(map.mr.as_str())
                            .or_default()
                            .push((pd_index, is_vm, name, map.pos));
                    }
                }
            }
            for setvar in &pd.setvars {
                if let SetVarKind::Paddr { region, pos } = &setvar.kind {
                    paddr_setvars
                        .entry(region.as_str())
                        .or_insert((setvar.symbol.as_str(), *pos));
                }
            }
        }
        Self {
            regions,
            users,
            paddr_setvars,
        }
    }
}

/// The parent VMM's maps of each region: the first one, and the first executable one.
type Windows<'s> = HashMap<&'s str, (Pos, Option<Pos>)>;

fn windows(vmm: &RawPd) -> Windows<'_> {
    let mut windows: Windows<'_> = HashMap::new();
    for map in &vmm.maps {
        let entry = windows.entry(map.mr.as_str()).or_insert((map.pos, None));
        if map.perms.execute && entry.1.is_none() {
            entry.1 = Some(map.pos);
        }
    }
    windows
}

/// Checks rules P1 to P7 for every protected VM, in document order.
pub(crate) fn check(file: &SdfFile<'_>, system: &RawSystem) -> SdfResult<()> {
    let mut index = None;
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
        let index = index.get_or_insert_with(|| Index::new(system));
        let windows = windows(vmm);
        let mut mapped = HashSet::with_capacity(vm.maps.len());
        for map in &vm.maps {
            if !mapped.insert(map.mr.as_str()) {
                return Err(refuse(format!(
                    "Error: protected virtual machine '{}' maps memory region '{}' more than once @ {}",
                    vm.name,
                    map.mr,
                    file.loc(map.pos)
                )));
            }
            check_private_map(file, index, &windows, vmm_index, vmm, vm, map)?;
            if vm.conversion == Some(Conversion::Split) {
                check_split_map(file, index, vm, map)?;
            }
        }
    }
    Ok(())
}

fn check_private_map(
    file: &SdfFile<'_>,
    index: &Index<'_>,
    windows: &Windows<'_>,
    vmm_index: usize,
    vmm: &RawPd,
    vm: &RawVm,
    map: &RawMap,
) -> SdfResult<()> {
    let region_name = map.mr.as_str();
    if let Some(region) = index
        .regions
        .get(region_name)
        .filter(|region| region.phys_addr.is_some())
    {
        return Err(refuse(format!(
            "Error: memory region '{region_name}' is private to protected virtual machine '{}' and must not set phys_addr @ {}",
            vm.name,
            file.loc(region.pos)
        )));
    }

    // Every domain but the VMM and this VM (the VMM's own VM) is foreign.
    let foreign = index
        .users
        .get(region_name)
        .into_iter()
        .flatten()
        .find(|(pd_index, _, _, _)| *pd_index != vmm_index);
    if let Some((_, is_vm, other, pos)) = foreign {
        let kind = if *is_vm {
            "virtual machine"
        } else {
            "protection domain"
        };
        return Err(refuse(format!(
            "Error: memory region '{region_name}' is private to protected virtual machine '{}' and must not be mapped by {kind} '{other}' @ {}",
            vm.name,
            file.loc(*pos)
        )));
    }

    let Some((_, executable)) = windows.get(region_name) else {
        return Err(refuse(format!(
            "Error: protected virtual machine '{}' maps memory region '{region_name}' but its parent protection domain '{}' has no window map of it @ {}",
            vm.name,
            vmm.name,
            file.loc(map.pos)
        )));
    };
    if let Some(window) = executable {
        return Err(refuse(format!(
            "Error: window map of memory region '{region_name}' in protection domain '{}' must not be executable @ {}",
            vmm.name,
            file.loc(*window)
        )));
    }

    if let Some((symbol, pos)) = index.paddr_setvars.get(region_name) {
        return Err(refuse(format!(
            "Error: setvar on symbol '{symbol}' exports the physical address of memory region '{region_name}', which is private to protected virtual machine '{}' @ {}",
            vm.name,
            file.loc(*pos)
        )));
    }
    Ok(())
}

/// P8: the map ends at or below the shared alias bit (IPA bit 39).
fn check_split_map(
    file: &SdfFile<'_>,
    index: &Index<'_>,
    vm: &RawVm,
    map: &RawMap,
) -> SdfResult<()> {
    let size = index
        .regions
        .get(map.mr.as_str())
        .map_or(0, |region| region.size);
    let end = map.vaddr.get().saturating_add(size);
    if end > SHARED_ALIAS_BIT {
        return Err(refuse(format!(
            "Error: map of memory region '{}' in split-mode virtual machine '{}' ends at {end:#x}, above {SHARED_ALIAS_BIT:#x}: the upper half of a split-mode guest's IPA space (from IPA bit 39) is where its shared pages appear @ {}",
            map.mr,
            vm.name,
            file.loc(map.pos)
        )));
    }
    Ok(())
}
