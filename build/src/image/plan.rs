//! From a validated system description to a physical plan: where every region, program segment
//! and stack lives, every domain's stage-2 mappings with their initial ownership, channels and
//! interrupts, and the bytes to load.
//!
//! Initial ownership of a region (DESIGN.md 4 and 7), decided per `<memory_region>`:
//!
//! | region is mapped by                          | mapping kind / state                       |
//! |----------------------------------------------|--------------------------------------------|
//! | a `phys_addr` outside RAM (device)           | `DEVICE` / `UNTRACKED` in every domain     |
//! | one domain, once                             | `REGION` / `OWNED`                         |
//! | several maps, no protected VM                | first map `SHARED_OWNED`, others `SHARED_BORROWED` |
//! | a protected VM (once) and its parent VMM     | VM `REGION` / `OWNED` (guest-private); VMM `WINDOW` / `NO_PAGE` |
//! | a protected VM and any other domain          | build error                                |
//!
//! "First" is document order: domains in order (a PD, then its VM), maps in order.

use std::path::{Path, PathBuf};

use frameshift_abi::boot_info::{
    ChannelDesc, DomainDesc, IrqDesc, MappingDesc, CHANNEL_A_CALLS_B, CHANNEL_A_NOTIFIES_B,
    CHANNEL_B_CALLS_A, CHANNEL_B_NOTIFIES_A, DOMAIN_FLAG_PASSIVE, DOMAIN_FLAG_PROTECTED,
    DOMAIN_FLAG_SPLIT, DOMAIN_KIND_PD, DOMAIN_KIND_VM, IPA_LIMIT, IRQ_TRIGGER_EDGE,
    IRQ_TRIGGER_LEVEL, MAPPING_KIND_DEVICE, MAPPING_KIND_PROGRAM, MAPPING_KIND_REGION,
    MAPPING_KIND_STACK, MAPPING_KIND_WINDOW, MAPPING_STATE_NO_PAGE, MAPPING_STATE_OWNED,
    MAPPING_STATE_SHARED_BORROWED, MAPPING_STATE_SHARED_OWNED, MAPPING_STATE_UNTRACKED,
    MAX_CHANNELS, MAX_PRIORITY, MAX_VCPUS, MAX_VCPU_ID, NAME_LEN, NONE, PAGE_SIZE, PD_STACK_TOP,
    RIGHT_EXECUTE, RIGHT_READ, RIGHT_WRITE,
};
use object::elf::{PF_R, PF_W};

use frameshift_abi::boot_info::MAX_IRQS;
use frameshift_abi::domain_name;

use crate::sdf::devices;
use crate::sdf::model::{
    Conversion, IrqTrigger, Map, MemoryRegion, SystemDescription, VirtualMachine, PAGE_SIZES,
};
use crate::sdf::DisjointRanges;

use super::address::{align_up, ranges_overlap, Ipa, PhysAddr};
use super::elf::ElfImage;
use super::error::ImageError;
use super::layout::{
    Allocation, MemoryLayout, PhysicalAllocator, HYPERVISOR_BASE, HYPERVISOR_SIZE,
};
use super::symbols;

/// One stage-2 mapping with a human-readable description for errors and the report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct PlannedMapping {
    pub(crate) desc: MappingDesc,
    pub(crate) label: String,
}

/// One domain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct PlannedDomain {
    pub(crate) name: String,
    pub(crate) desc: DomainDesc,
    pub(crate) mappings: Vec<PlannedMapping>,
    /// The program image file (PDs).
    pub(crate) program: Option<PathBuf>,
}

/// Where a `<memory_region>` ended up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct RegionPlacement {
    pub(crate) pa: PhysAddr,
    /// Outside RAM: a device mapping.
    pub(crate) device: bool,
    /// Placed by `phys_addr` rather than allocated.
    pub(crate) fixed: bool,
    /// The prefill file, if any.
    pub(crate) prefill: Option<PathBuf>,
}

/// Bytes the image loads at a physical address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct OutputSegment {
    pub(crate) pa: PhysAddr,
    pub(crate) data: Vec<u8>,
    /// At least `data.len()`; QEMU zero-fills the rest.
    pub(crate) mem_size: u64,
    /// ELF `p_flags`.
    pub(crate) flags: u32,
    pub(crate) label: String,
}

/// The whole physical plan.
#[derive(Clone, Debug)]
pub(crate) struct Plan {
    pub(crate) domains: Vec<PlannedDomain>,
    pub(crate) regions: Vec<RegionPlacement>,
    pub(crate) channels: Vec<ChannelDesc>,
    pub(crate) irqs: Vec<IrqDesc>,
    pub(crate) segments: Vec<OutputSegment>,
    pub(crate) blocks: Vec<Allocation>,
    pub(crate) convertible_used: u64,
}

/// Finds `path` in the first search path that has it (as Microkit does), else as given (an
/// absolute path, or one the SDF parser already resolved against a search path).
pub(crate) fn resolve(
    path: &Path,
    search_paths: &[PathBuf],
    needed_by: impl FnOnce() -> String,
) -> Result<PathBuf, ImageError> {
    let in_search_path = || {
        search_paths
            .iter()
            .map(|dir| dir.join(path))
            .find(|candidate| candidate.is_file())
    };
    let found = if path.is_absolute() {
        None
    } else {
        in_search_path()
    };
    if let Some(found) = found {
        return Ok(found);
    }
    if path.is_file() {
        return Ok(path.to_path_buf());
    }
    Err(ImageError::FileNotFound {
        path: path.to_path_buf(),
        needed_by: needed_by(),
        searched: search_paths.to_vec(),
    })
}

/// The boot-info name field of a domain. The name must pass the one rule for domain names: its
/// console prefix is unforgeable, and it is short enough that the field and `microkit_name` keep
/// a terminating NUL.
fn domain_name(name: &str) -> Result<[u8; NAME_LEN], ImageError> {
    domain_name::check(name.as_bytes()).map_err(|reason| ImageError::BadName {
        name: name.escape_debug().to_string(),
        reason: reason.to_string(),
    })?;
    let mut field = [0; NAME_LEN];
    field[..name.len()].copy_from_slice(name.as_bytes());
    Ok(field)
}

fn check_priority(name: &str, priority: u8) -> Result<u8, ImageError> {
    if priority > MAX_PRIORITY {
        return Err(ImageError::BadPriority {
            domain: name.to_string(),
            priority,
        });
    }
    Ok(priority)
}

fn to_u32(value: u64, what: impl FnOnce() -> String) -> Result<u32, ImageError> {
    u32::try_from(value).map_err(|_| ImageError::BadReference { what: what() })
}

fn perms_rights(map: &Map) -> u8 {
    let mut rights = 0;
    if map.perms.read {
        rights |= RIGHT_READ;
    }
    if map.perms.write {
        rights |= RIGHT_WRITE;
    }
    if map.perms.execute {
        rights |= RIGHT_EXECUTE;
    }
    rights
}

fn page_shift(page_size: u64) -> u32 {
    page_size.trailing_zeros()
}

/// The bytes of `region`'s prefill file at `path`: they fit the region, and their length is
/// the one the system description was checked with (a file changed since would otherwise get
/// a `setvar_prefill_size` that the check never saw).
fn read_prefill(region: &MemoryRegion, path: &Path) -> Result<Vec<u8>, ImageError> {
    let data = std::fs::read(path).map_err(|source| ImageError::Io {
        path: path.to_path_buf(),
        what: "prefill file",
        source,
    })?;
    let len = data.len() as u64;
    if len > region.size {
        return Err(ImageError::PrefillTooLarge {
            region: region.name.clone(),
            len,
            size: region.size,
        });
    }
    if let Some(checked) = region.prefill_len.filter(|&checked| checked != len) {
        return Err(ImageError::PrefillChanged {
            region: region.name.clone(),
            checked,
            len,
        });
    }
    Ok(data)
}

/// The boot-info flags of a VM: protected, and split if it converts in split mode.
fn vm_flags(vm: &VirtualMachine) -> Result<u8, ImageError> {
    let mut flags = 0;
    if vm.protected {
        flags |= DOMAIN_FLAG_PROTECTED;
    }
    match (vm.conversion, vm.protected) {
        (Some(conversion), false) => {
            return Err(ImageError::ConversionWithoutProtection {
                vm: vm.name.clone(),
                conversion: conversion.as_str(),
            })
        }
        (Some(Conversion::Split), true) => flags |= DOMAIN_FLAG_SPLIT,
        // History mode is the default of a protected VM.
        (Some(Conversion::History) | None, _) => {}
    }
    Ok(flags)
}

/// The boot-info vCPU id set of a VM: at most [`MAX_VCPUS`] distinct ids, each at most
/// [`MAX_VCPU_ID`] (Microkit's own checks cover the ids of a parsed file; a model built in code
/// is checked here too).
fn vcpu_id_set(vm: &VirtualMachine) -> Result<u64, ImageError> {
    if vm.vcpus.is_empty() || vm.vcpus.len() > MAX_VCPUS {
        return Err(ImageError::VcpuCount {
            vm: vm.name.clone(),
            count: vm.vcpus.len(),
        });
    }
    let mut set = 0u64;
    for &id in &vm.vcpus {
        let bit = Some(id)
            .filter(|&id| id <= u64::from(MAX_VCPU_ID))
            .map(|id| 1u64 << id)
            .filter(|bit| set & bit == 0)
            .ok_or_else(|| ImageError::BadVcpuId {
                vm: vm.name.clone(),
                id,
            })?;
        set |= bit;
    }
    Ok(set)
}

/// Places `phys_addr` regions; returns the placements (None for regions still to allocate) and
/// the fixed RAM blocks the allocator must step over.
fn place_fixed_regions(
    regions: &[MemoryRegion],
    layout: &MemoryLayout,
) -> Result<(Vec<Option<RegionPlacement>>, Vec<Allocation>), ImageError> {
    let mut placements = Vec::with_capacity(regions.len());
    let mut fixed_blocks: Vec<(usize, Allocation)> = Vec::new();
    // The fixed blocks by address, to find an overlap without comparing with every earlier one.
    let mut fixed_ranges: DisjointRanges<usize> = DisjointRanges::new();
    for (index, region) in regions.iter().enumerate() {
        let name = || region.name.clone();
        if !PAGE_SIZES.contains(&region.page_size)
            || region.size == 0
            || !region.size.is_multiple_of(region.page_size)
        {
            return Err(ImageError::RegionSize {
                region: name(),
                size: region.size,
                page_size: region.page_size,
            });
        }
        let Some(phys_addr) = region.phys_addr else {
            placements.push(None);
            continue;
        };
        if !phys_addr.is_aligned_to(region.page_size) {
            return Err(ImageError::RegionMisaligned {
                region: name(),
                phys_addr,
                page_size: region.page_size,
            });
        }
        if phys_addr.checked_add(region.size).is_none() {
            return Err(ImageError::RegionStraddlesRam {
                region: name(),
                phys_addr,
            });
        }
        if ranges_overlap(phys_addr.0, region.size, HYPERVISOR_BASE.0, HYPERVISOR_SIZE) {
            return Err(ImageError::RegionInHypervisorMemory {
                region: name(),
                phys_addr,
            });
        }
        if let Some(device) = devices::forbidden(phys_addr.0, region.size) {
            return Err(ImageError::RegionOnDevice {
                region: name(),
                device: *device,
            });
        }
        let device = layout.outside_ram(phys_addr, region.size);
        if device {
            if region.prefill_path.is_some() {
                return Err(ImageError::PrefillOnDevice { region: name() });
            }
        } else if !layout.in_convertible(phys_addr, region.size) {
            return Err(ImageError::RegionStraddlesRam {
                region: name(),
                phys_addr,
            });
        }
        if let Err((other, _, _)) =
            fixed_ranges.insert(index, phys_addr.0, phys_addr.0 + region.size)
        {
            let first = regions
                .get(other)
                .map(|r| r.name.clone())
                .unwrap_or_default();
            return Err(ImageError::RegionsOverlap {
                first,
                second: name(),
            });
        }
        let label = format!("memory region `{}` (phys_addr)", region.name);
        fixed_blocks.push((
            index,
            Allocation {
                pa: phys_addr,
                size: region.size,
                label,
            },
        ));
        placements.push(Some(RegionPlacement {
            pa: phys_addr,
            device,
            fixed: true,
            prefill: None,
        }));
    }
    let ram_blocks = fixed_blocks
        .into_iter()
        .filter(|(index, _)| {
            placements
                .get(*index)
                .is_some_and(|p| p.as_ref().is_some_and(|p| !p.device))
        })
        .map(|(_, block)| block)
        .collect();
    Ok((placements, ram_blocks))
}

/// Who maps a region: (domain index, mapping index in that domain).
type RegionUsers = Vec<Vec<(usize, usize)>>;

/// Lays out `system` for `layout`, loading programs and prefill files through `search_paths`.
pub(crate) fn plan(
    system: &SystemDescription,
    layout: &MemoryLayout,
    search_paths: &[PathBuf],
) -> Result<Plan, ImageError> {
    let regions = &system.memory_regions;
    let (fixed, ram_blocks) = place_fixed_regions(regions, layout)?;
    let mut allocator = PhysicalAllocator::new(layout, ram_blocks);
    let mut placements = Vec::with_capacity(regions.len());
    // Each prefill file is read once: the bytes loaded and the length patched into
    // `setvar_prefill_size` symbols come from the same read.
    let mut prefills: Vec<Option<Vec<u8>>> = Vec::with_capacity(regions.len());
    for (region, fixed) in regions.iter().zip(fixed) {
        let mut placement = match fixed {
            Some(placement) => placement,
            None => {
                let label = format!("memory region `{}`", region.name);
                let pa = allocator.allocate(region.size, region.page_size, label)?;
                RegionPlacement {
                    pa,
                    device: false,
                    fixed: false,
                    prefill: None,
                }
            }
        };
        let mut prefill_data = None;
        if let Some(prefill) = &region.prefill_path {
            let needed_by = || format!("prefill of memory region `{}`", region.name);
            let path = resolve(prefill, search_paths, needed_by)?;
            prefill_data = Some(read_prefill(region, &path)?);
            placement.prefill = Some(path);
        }
        placements.push(placement);
        prefills.push(prefill_data);
    }
    let prefill_len = |region: usize| {
        prefills
            .get(region)
            .and_then(Option::as_ref)
            .map(|data| data.len() as u64)
    };

    let mut domains: Vec<PlannedDomain> = Vec::new();
    let mut pd_domain: Vec<usize> = Vec::with_capacity(system.protection_domains.len());
    let mut programs: Vec<(usize, ElfImage)> = Vec::new();
    let mut region_users: RegionUsers = vec![Vec::new(); regions.len()];

    for (pd_index, pd) in system.protection_domains.iter().enumerate() {
        let index = domains.len();
        pd_domain.push(index);
        let parent = match pd.parent {
            None => NONE,
            Some(parent) if parent < pd_index => to_u32(pd_domain[parent] as u64, || {
                format!("parent of PD `{}`", pd.name)
            })?,
            Some(_) => {
                return Err(ImageError::BadReference {
                    what: format!("parent of PD `{}`", pd.name),
                })
            }
        };
        let child_id = match pd.child_id {
            Some(id) if parent != NONE => to_u32(id, || format!("id of PD `{}`", pd.name))?,
            _ => NONE,
        };
        let needed_by = || format!("program image of PD `{}`", pd.name);
        let program_path = resolve(&pd.program_image, search_paths, needed_by)?;
        let mut elf = ElfImage::load(&program_path, "program image")?;
        if let Some(symbols_path) = &pd.program_image_for_symbols {
            let needed_by = || format!("path_for_symbols of PD `{}`", pd.name);
            let symbols_path = resolve(symbols_path, search_paths, needed_by)?;
            elf.use_symbols_of(ElfImage::load(&symbols_path, "program image for symbols")?);
        }
        elf.check_disjoint(true)?;
        let entry_in_code = elf.segments.iter().any(|segment| {
            segment.rights() & RIGHT_EXECUTE != 0
                && elf.entry >= segment.vaddr
                && elf.entry < segment.vaddr + segment.mem_size
        });
        if !entry_in_code {
            return Err(ImageError::EntryNotExecutable {
                path: elf.path.clone(),
                entry: elf.entry,
            });
        }
        let mut mappings = Vec::new();
        for (number, segment) in elf.segments.iter().enumerate() {
            if segment.rights() == 0 {
                return Err(ImageError::SegmentWithoutRights {
                    path: elf.path.clone(),
                    vaddr: segment.vaddr,
                });
            }
            let start = segment.page_start();
            let end = segment.page_end().unwrap_or(u64::MAX);
            let label = format!("program segment {number} of PD `{}`", pd.name);
            let pa = allocator.allocate(end - start, PAGE_SIZE, label)?;
            mappings.push(PlannedMapping {
                desc: MappingDesc {
                    ipa: start,
                    pa: pa.0,
                    size: end - start,
                    domain: to_u32(index as u64, || "domain index".to_string())?,
                    region: NONE,
                    rights: segment.rights(),
                    cached: 1,
                    kind: MAPPING_KIND_PROGRAM,
                    state: MAPPING_STATE_OWNED,
                    page_shift: page_shift(PAGE_SIZE),
                },
                label: format!("program segment {number}"),
            });
        }
        let stack_size = align_up(pd.stack_size.max(PAGE_SIZE), PAGE_SIZE)
            .filter(|&size| size < PD_STACK_TOP)
            .ok_or_else(|| ImageError::BeyondIpaSpace {
                domain: pd.name.clone(),
                what: "the stack".to_string(),
                end: pd.stack_size,
            })?;
        let stack_pa =
            allocator.allocate(stack_size, PAGE_SIZE, format!("stack of PD `{}`", pd.name))?;
        mappings.push(PlannedMapping {
            desc: MappingDesc {
                ipa: PD_STACK_TOP - stack_size,
                pa: stack_pa.0,
                size: stack_size,
                domain: index as u32,
                region: NONE,
                rights: RIGHT_READ | RIGHT_WRITE,
                cached: 1,
                kind: MAPPING_KIND_STACK,
                state: MAPPING_STATE_OWNED,
                page_shift: page_shift(PAGE_SIZE),
            },
            label: "stack".to_string(),
        });
        let name = domain_name(&pd.name)?;
        let mut flags = 0;
        if pd.passive {
            flags |= DOMAIN_FLAG_PASSIVE;
        }
        domains.push(PlannedDomain {
            name: pd.name.clone(),
            desc: DomainDesc {
                name,
                kind: DOMAIN_KIND_PD,
                priority: check_priority(&pd.name, pd.priority)?,
                flags,
                reserved0: 0,
                parent,
                child_id,
                first_mapping: 0,
                mapping_count: 0,
                reserved1: 0,
                entry: elf.entry,
                stack_top: PD_STACK_TOP,
                vcpu_ids: 0,
            },
            mappings,
            program: Some(program_path),
        });
        add_maps(
            system,
            &placements,
            &mut domains,
            index,
            &pd.maps,
            &mut region_users,
        )?;
        programs.push((index, elf));

        if let Some(vm) = &pd.virtual_machine {
            {
                let vm_index = domains.len();
                if let Some(symbol) = vm
                    .maps
                    .iter()
                    .find_map(|map| map.setvar_vaddr.clone().or(map.setvar_size.clone()))
                {
                    return Err(ImageError::SetVarOnVm {
                        vm: vm.name.clone(),
                        symbol,
                    });
                }
                let flags = vm_flags(vm)?;
                let vcpu_ids = vcpu_id_set(vm)?;
                // The VM's child id is its lowest vCPU id (docs/ABI.md); a set is never empty.
                let child_id = vcpu_ids.trailing_zeros();
                domains.push(PlannedDomain {
                    name: vm.name.clone(),
                    desc: DomainDesc {
                        name: domain_name(&vm.name)?,
                        kind: DOMAIN_KIND_VM,
                        priority: check_priority(&vm.name, vm.priority)?,
                        flags,
                        reserved0: 0,
                        parent: index as u32,
                        child_id,
                        first_mapping: 0,
                        mapping_count: 0,
                        reserved1: 0,
                        entry: 0,
                        stack_top: 0,
                        vcpu_ids,
                    },
                    mappings: Vec::new(),
                    program: None,
                });
                add_maps(
                    system,
                    &placements,
                    &mut domains,
                    vm_index,
                    &vm.maps,
                    &mut region_users,
                )?;
            }
        }
    }

    assign_ownership(system, &placements, &mut domains, &region_users)?;
    for domain in &domains {
        check_ipa_space(domain)?;
    }

    let mut segments = Vec::new();
    for (index, mut elf) in programs {
        let pd_index = pd_domain
            .iter()
            .position(|&d| d == index)
            .unwrap_or(usize::MAX);
        let Some(pd) = system.protection_domains.get(pd_index) else {
            continue;
        };
        let region_pa = |region: usize| placements.get(region).map(|placement| placement.pa);
        let mut patches = symbols::setvar_patches(system, pd, region_pa, prefill_len)?;
        patches.extend(symbols::runtime_patches(system, pd_index));
        symbols::apply(&mut elf, &patches)?;
        let Some(domain) = domains.get(index) else {
            continue;
        };
        for (segment, mapping) in elf.segments.iter().zip(&domain.mappings) {
            let mut data = vec![0; (segment.vaddr - mapping.desc.ipa) as usize];
            data.extend_from_slice(&segment.data);
            segments.push(OutputSegment {
                pa: PhysAddr(mapping.desc.pa),
                data,
                mem_size: mapping.desc.size,
                flags: segment.flags,
                label: format!("PD `{}` {}", domain.name, mapping.label),
            });
        }
    }
    for ((region, placement), data) in regions.iter().zip(&placements).zip(prefills) {
        let Some(data) = data else {
            continue;
        };
        segments.push(OutputSegment {
            pa: placement.pa,
            mem_size: data.len() as u64,
            data,
            flags: PF_R | PF_W,
            label: format!("prefill of memory region `{}`", region.name),
        });
    }

    let channels = plan_channels(system, &pd_domain)?;
    let irqs = plan_irqs(system, &pd_domain)?;

    let mut first = 0u32;
    for domain in &mut domains {
        domain.desc.first_mapping = first;
        domain.desc.mapping_count = domain.mappings.len() as u32;
        first += domain.desc.mapping_count;
    }
    Ok(Plan {
        domains,
        regions: placements,
        channels,
        irqs,
        segments,
        blocks: allocator.blocks(),
        convertible_used: allocator.used(),
    })
}

/// Adds the `<map>`s of domain `index`, with a provisional state fixed by [`assign_ownership`].
fn add_maps(
    system: &SystemDescription,
    placements: &[RegionPlacement],
    domains: &mut [PlannedDomain],
    index: usize,
    maps: &[Map],
    region_users: &mut RegionUsers,
) -> Result<(), ImageError> {
    let Some(domain) = domains.get_mut(index) else {
        return Ok(());
    };
    for map in maps {
        let reference = || ImageError::BadReference {
            what: format!("a map of `{}`", domain.name),
        };
        let region = system
            .memory_regions
            .get(map.memory_region)
            .ok_or_else(reference)?;
        let placement = placements.get(map.memory_region).ok_or_else(reference)?;
        if !map.vaddr.is_aligned_to(region.page_size) {
            return Err(ImageError::MapMisaligned {
                domain: domain.name.clone(),
                region: region.name.clone(),
                vaddr: map.vaddr,
                page_size: region.page_size,
            });
        }
        let rights = perms_rights(map);
        if rights == 0 {
            return Err(ImageError::MapWithoutRights {
                domain: domain.name.clone(),
                region: region.name.clone(),
            });
        }
        let (kind, state) = if placement.device {
            (MAPPING_KIND_DEVICE, MAPPING_STATE_UNTRACKED)
        } else {
            (MAPPING_KIND_REGION, MAPPING_STATE_OWNED)
        };
        if let Some(users) = region_users.get_mut(map.memory_region) {
            users.push((index, domain.mappings.len()));
        }
        domain.mappings.push(PlannedMapping {
            desc: MappingDesc {
                ipa: map.vaddr.get(),
                pa: placement.pa.0,
                size: region.size,
                domain: index as u32,
                region: map.memory_region as u32,
                rights,
                cached: u8::from(map.cached),
                kind,
                state,
                page_shift: page_shift(region.page_size),
            },
            label: format!("map of `{}`", region.name),
        });
    }
    Ok(())
}

/// Sets the kind and state of every region mapping (see the module table).
fn assign_ownership(
    system: &SystemDescription,
    placements: &[RegionPlacement],
    domains: &mut [PlannedDomain],
    region_users: &RegionUsers,
) -> Result<(), ImageError> {
    let is_protected_vm = |domain: &PlannedDomain| {
        domain.desc.kind == DOMAIN_KIND_VM && domain.desc.flags & DOMAIN_FLAG_PROTECTED != 0
    };
    for (region_index, users) in region_users.iter().enumerate() {
        if placements
            .get(region_index)
            .is_none_or(|placement| placement.device)
        {
            continue;
        }
        let region_name = system
            .memory_regions
            .get(region_index)
            .map(|r| r.name.clone())
            .unwrap_or_default();
        let protected_users: Vec<(usize, usize)> = users
            .iter()
            .copied()
            .filter(|&(domain, _)| domains.get(domain).is_some_and(is_protected_vm))
            .collect();
        fn set(
            domains: &mut [PlannedDomain],
            (domain, mapping): (usize, usize),
            kind: u8,
            state: u8,
        ) {
            if let Some(entry) = domains
                .get_mut(domain)
                .and_then(|d| d.mappings.get_mut(mapping))
            {
                entry.desc.kind = kind;
                entry.desc.state = state;
            }
        }
        if let Some(&(vm, _)) = protected_users.first() {
            let vm_name = domains.get(vm).map(|d| d.name.clone()).unwrap_or_default();
            let vmm = domains.get(vm).map_or(NONE, |d| d.desc.parent) as usize;
            for &(domain, _) in users.iter() {
                let twice = domain == vm && protected_users.len() > 1;
                if (domain != vm && domain != vmm) || twice {
                    let other = domains
                        .get(domain)
                        .map(|d| d.name.clone())
                        .unwrap_or_default();
                    return Err(ImageError::PrivateRegionShared {
                        region: region_name,
                        vm: vm_name,
                        other,
                    });
                }
            }
            for &user in users {
                if user.0 == vm {
                    set(domains, user, MAPPING_KIND_REGION, MAPPING_STATE_OWNED);
                } else {
                    set(domains, user, MAPPING_KIND_WINDOW, MAPPING_STATE_NO_PAGE);
                }
            }
        } else if users.len() > 1 {
            for (position, &user) in users.iter().enumerate() {
                let state = if position == 0 {
                    MAPPING_STATE_SHARED_OWNED
                } else {
                    MAPPING_STATE_SHARED_BORROWED
                };
                set(domains, user, MAPPING_KIND_REGION, state);
            }
        }
    }
    Ok(())
}

/// Refuses IPA overlaps inside one domain and mappings past the 40-bit IPA space.
fn check_ipa_space(domain: &PlannedDomain) -> Result<(), ImageError> {
    let mut by_ipa: Vec<&PlannedMapping> = domain.mappings.iter().collect();
    by_ipa.sort_by_key(|mapping| mapping.desc.ipa);
    for mapping in &by_ipa {
        let end = mapping.desc.ipa.saturating_add(mapping.desc.size);
        if end > IPA_LIMIT {
            return Err(ImageError::BeyondIpaSpace {
                domain: domain.name.clone(),
                what: mapping.label.clone(),
                end,
            });
        }
    }
    for pair in by_ipa.windows(2) {
        let [first, second] = pair else { continue };
        if ranges_overlap(
            first.desc.ipa,
            first.desc.size,
            second.desc.ipa,
            second.desc.size,
        ) {
            return Err(ImageError::MappingsOverlap {
                domain: domain.name.clone(),
                first: format!("{} at IPA {}", first.label, Ipa(first.desc.ipa)),
                second: format!("{} at IPA {}", second.label, Ipa(second.desc.ipa)),
            });
        }
    }
    Ok(())
}

fn plan_channels(
    system: &SystemDescription,
    pd_domain: &[usize],
) -> Result<Vec<ChannelDesc>, ImageError> {
    if system.channels.len() > MAX_CHANNELS {
        return Err(ImageError::TooManyChannels {
            count: system.channels.len(),
        });
    }
    let mut channels = Vec::with_capacity(system.channels.len());
    for (number, channel) in system.channels.iter().enumerate() {
        let what = || format!("channel {number}");
        let [a, b] = &channel.ends;
        let domain_of = |pd: usize| {
            pd_domain
                .get(pd)
                .map(|&d| d as u32)
                .ok_or_else(|| ImageError::BadReference { what: what() })
        };
        let mut flags = 0;
        if a.notify {
            flags |= CHANNEL_A_NOTIFIES_B;
        }
        if b.notify {
            flags |= CHANNEL_B_NOTIFIES_A;
        }
        if a.pp {
            flags |= CHANNEL_A_CALLS_B;
        }
        if b.pp {
            flags |= CHANNEL_B_CALLS_A;
        }
        channels.push(ChannelDesc {
            domain_a: domain_of(a.pd)?,
            id_a: to_u32(a.id, what)?,
            domain_b: domain_of(b.pd)?,
            id_b: to_u32(b.id, what)?,
            flags,
            reserved0: 0,
        });
    }
    Ok(channels)
}

fn plan_irqs(system: &SystemDescription, pd_domain: &[usize]) -> Result<Vec<IrqDesc>, ImageError> {
    let count: usize = system
        .protection_domains
        .iter()
        .map(|pd| pd.irqs.len())
        .sum();
    if count > MAX_IRQS {
        return Err(ImageError::TooManyIrqs { count });
    }
    let mut irqs = Vec::with_capacity(count);
    for (pd_index, pd) in system.protection_domains.iter().enumerate() {
        let domain = pd_domain.get(pd_index).copied().unwrap_or(usize::MAX) as u32;
        for irq in &pd.irqs {
            let what = || format!("irq {} of PD `{}`", irq.irq, pd.name);
            irqs.push(IrqDesc {
                domain,
                irq: to_u32(irq.irq, what)?,
                channel_id: to_u32(irq.id, what)?,
                trigger: match irq.trigger {
                    IrqTrigger::Level => IRQ_TRIGGER_LEVEL,
                    IrqTrigger::Edge => IRQ_TRIGGER_EDGE,
                },
            });
        }
    }
    Ok(irqs)
}
