//! The `<system>` element: its children in document order, then the whole-system checks in
//! Microkit's order, then Frameshift's own rules.
//!
//! Check order (each stage runs only if the previous one passed):
//!
//! | stage | what | messages |
//! | --- | --- | --- |
//! | 0 | input limits (`limits.rs`), UTF-8, well-formed XML, root element `<system>` (`mod.rs`) | Frameshift / roxmltree |
//! | 1 | text outside elements directly under `<system>` | Microkit |
//! | 2 | each child of `<system>` in document order (PDs with all their children, memory regions, `<domains>`, `<io_address_space>`); the Frameshift attributes `protected` and `conversion` of a `<virtual_machine>` are read here too | Microkit; Frameshift for `conversion` |
//! | 3 | nested PD ids, PD count and names, channels, cap-map PD names, region names, VM names, IRQs, channel ids, PPC priorities, maps, cap slots, physical overlaps, unused regions (warning), `setvar_prefill_size` | Microkit |
//! | 4 | elements Frameshift does not support (first in document order) | `... is not supported by Frameshift` |
//! | 5 | PD and VM names pass `frameshift_abi::domain_name::check` (`frameshift.rs`) | Frameshift |
//! | 6 | no memory region of size 0 (`frameshift.rs`) | Frameshift |
//! | 7 | no `phys_addr` region on a hypervisor-owned or DMA-capable device (`frameshift.rs`, `devices.rs`) | Frameshift |
//! | 8 | at most 64 `<irq>`s, then at most 256 `<channel>`s, then at most 4 `<vcpu>`s per VM (`frameshift.rs`) | Frameshift |
//! | 9 | protected virtual machines (`protected.rs`) | Frameshift |
//! | 10 | `setvar region_paddr` names a region (`lower.rs`) | Frameshift |

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;

use frameshift_abi::addr::PhysAddr;
use roxmltree::Node;

use super::channel::RawChannel;
use super::domains::Domains;
use super::error::{SdfError, SdfErrorKind, SdfResult};
use super::memory_region::{check_maps, regions_by_name, DisjointRanges, RawMemoryRegion};
use super::platform::{self, MAX_PDS, MONITOR_PD_NAME};
use super::protection_domain::{checked_add_setvar, flatten, RawPd, RawSetVar, SetVarKind};
use super::xml::{elements, Pos, SdfFile};

/// Everything a valid `<system>` declares, after the Microkit checks.
#[derive(Debug)]
pub(crate) struct RawSystem {
    pub(crate) pds: Vec<RawPd>,
    pub(crate) regions: Vec<RawMemoryRegion>,
    pub(crate) channels: Vec<RawChannel>,
    pub(crate) warnings: Vec<String>,
    /// Microkit elements and attributes Frameshift refuses, with their positions.
    pub(crate) unsupported: Vec<(Pos, String)>,
}

/// Microkit `check_no_text`: only whitespace and comments may sit directly in `<system>`.
/// (Microkit does not look inside nested elements, and neither do we.)
fn check_no_text(file: &SdfFile<'_>, node: Node<'_, '_>) -> SdfResult<()> {
    let name = node.tag_name().name();
    let at = file.loc(file.pos(node));
    if node.text().is_some_and(|text| !text.trim().is_empty()) {
        return Err(SdfError::microkit(format!(
            "Error: unexpected text found in element '{name}' @ {at}"
        )));
    }
    if node.tail().is_some() {
        return Err(SdfError::microkit(format!(
            "Error: unexpected text found after element '{name}' @ {at}"
        )));
    }
    for child in node.children() {
        if !child.is_comment() && !child.is_element() && !child.is_pi() {
            check_text_node(file, child)?;
        }
    }
    Ok(())
}

/// A text child of `<system>` (Microkit applies `check_no_text` to it, without recursion).
fn check_text_node(file: &SdfFile<'_>, node: Node<'_, '_>) -> SdfResult<()> {
    if node.text().is_some_and(|text| !text.trim().is_empty()) {
        return Err(SdfError::microkit(format!(
            "Error: unexpected text found in element '' @ {}",
            file.loc(file.pos(node))
        )));
    }
    Ok(())
}

/// `<io_address_space>`: an IOMMU address space. Microkit knows no AArch64 device identifier,
/// so on this configuration every one is refused after its name checks.
fn io_address_space(
    file: &SdfFile<'_>,
    node: Node<'_, '_>,
    names: &mut Vec<String>,
) -> SdfResult<()> {
    file.check_attributes(node, &["name", "peripheral_id", "domain_id"])?;
    let name = file.required(node, "name")?;
    if names.iter().any(|other| other == name) {
        return Err(file.value_error(node, format_args!("duplicate name '{name}'")));
    }
    names.push(name.to_string());
    let peripheral_id = file.required(node, "peripheral_id")?;
    Err(file.value_error(
        node,
        format_args!(
            "failed to parse device peripheral_id '{peripheral_id}': IOMMU device identifiers are not supported on AArch64"
        ),
    ))
}

/// Stages 1 to 3 of the module table.
pub(crate) fn parse_system(
    file: &SdfFile<'_>,
    system: Node<'_, '_>,
    search_paths: &[PathBuf],
) -> Result<RawSystem, (SdfError, Vec<String>)> {
    let mut warnings = Vec::new();
    match parse_inner(file, system, search_paths, &mut warnings) {
        Ok(raw) => Ok(raw),
        Err(error) => Err((error, warnings)),
    }
}

fn parse_inner(
    file: &SdfFile<'_>,
    system: Node<'_, '_>,
    search_paths: &[PathBuf],
    warnings: &mut Vec<String>,
) -> SdfResult<RawSystem> {
    check_no_text(file, system)?;

    let mut roots = Vec::new();
    let mut regions = Vec::new();
    let mut channel_nodes = Vec::new();
    let mut io_space_names = Vec::new();
    let mut domains = Domains::default();
    let mut unsupported = Vec::new();

    for child in elements(system) {
        match child.tag_name().name() {
            "protection_domain" => roots.push(RawPd::from_xml(file, child, 0, &domains)?),
            "channel" => channel_nodes.push(child),
            "memory_region" => {
                let region = RawMemoryRegion::from_xml(file, child, search_paths)?;
                if region.prefill_bootinfo {
                    unsupported.push((
                        region.pos,
                        "attribute 'prefill_bootinfo' on element '<memory_region>'".to_string(),
                    ));
                }
                regions.push(region);
            }
            "io_address_space" => io_address_space(file, child, &mut io_space_names)?,
            "virtual_machine" => {
                return Err(SdfError::microkit(format!(
                    "Error: virtual machine must be a child of a protection domain: {}",
                    file.loc(file.pos(child))
                )));
            }
            "domains" => {
                if domains.has_domains() {
                    return Err(file.value_error(child, "domains must only be specified once"));
                }
                domains = Domains::from_xml(file, child)?;
                unsupported.push((file.pos(child), "element '<domains>'".to_string()));
            }
            other => {
                return Err(SdfError::microkit(format!(
                    "Error: invalid XML element '{other}': {}",
                    file.loc(file.pos(child))
                )));
            }
        }
    }

    let mut pds = flatten(file, roots)?;

    if pds.is_empty() {
        return Err(SdfError::microkit(
            "Error: at least one protection domain must be defined".to_string(),
        ));
    }
    if pds.len() > MAX_PDS {
        return Err(SdfError::microkit(format!(
            "Error: too many protection domains ({}) defined. Maximum is {MAX_PDS}.",
            pds.len()
        )));
    }
    for pd in &pds {
        if pds.iter().filter(|other| other.name == pd.name).count() > 1 {
            return Err(SdfError::microkit(format!(
                "Error: duplicate protection domain name '{}'.",
                pd.name
            )));
        }
        if pd.name == MONITOR_PD_NAME {
            return Err(SdfError::microkit(
                "Error: the PD name 'monitor' is reserved for the Microkit Monitor.".to_string(),
            ));
        }
    }

    let mut channels = Vec::new();
    for node in channel_nodes {
        let channel = RawChannel::from_xml(file, node, &pds)?;
        for end in &channel.ends {
            if let (Some(symbol), Some(pd)) = (&end.setvar_id, pds.get_mut(end.pd)) {
                let setvar = RawSetVar {
                    symbol: symbol.clone(),
                    kind: SetVarKind::Id { id: end.id },
                };
                checked_add_setvar(file, &mut pd.setvars, setvar, node)?;
            }
        }
        channels.push(channel);
    }

    for pd in &pds {
        for cap_map in &pd.cap_maps {
            if !pds.iter().any(|other| other.name == cap_map.pd) {
                return Err(SdfError::microkit(format!(
                    "Error: unknown PD name '{}': {}",
                    cap_map.pd,
                    file.loc(cap_map.pos)
                )));
            }
        }
    }

    // The first region (in document order) whose name appears more than once.
    let mut name_counts: HashMap<&str, usize> = HashMap::with_capacity(regions.len());
    for region in &regions {
        *name_counts.entry(region.name.as_str()).or_default() += 1;
    }
    if let Some(region) = regions.iter().find(|region| {
        name_counts
            .get(region.name.as_str())
            .is_some_and(|n| *n > 1)
    }) {
        return Err(SdfError::microkit(format!(
            "Error: duplicate memory region name '{}'.",
            region.name
        )));
    }
    let by_name = regions_by_name(&regions);

    let mut vm_names: Vec<&str> = Vec::new();
    for pd in &pds {
        if let Some(vm) = &pd.virtual_machine {
            if vm_names.contains(&vm.name.as_str()) {
                return Err(SdfError::microkit(format!(
                    "Error: duplicate virtual machine name '{}'.",
                    vm.name
                )));
            }
            vm_names.push(&vm.name);
        }
    }

    check_ids(file, &pds, &channels)?;

    for pd in &pds {
        check_maps(
            file,
            &by_name,
            &pd.maps,
            &format!("protection domain '{}'", pd.name),
            platform::pd_map_max_vaddr(pd.stack_size),
        )?;
        if let Some(vm) = &pd.virtual_machine {
            check_maps(
                file,
                &by_name,
                &vm.maps,
                &format!("virtual machine '{}'", vm.name),
                platform::vm_map_max_vaddr(),
            )?;
        }
    }

    check_cap_slots(file, &pds)?;
    check_physical_overlaps(file, &regions)?;

    let used: HashSet<&str> = pds
        .iter()
        .flat_map(|pd| {
            pd.maps
                .iter()
                .chain(pd.virtual_machine.iter().flat_map(|vm| vm.maps.iter()))
        })
        .map(|map| map.mr.as_str())
        .collect();
    for region in &regions {
        if !used.contains(region.name.as_str()) {
            warnings.push(format!("WARNING: unused memory region '{}'", region.name));
        }
    }

    for pd in &pds {
        for setvar in &pd.setvars {
            if let SetVarKind::PrefillSize { mr } = &setvar.kind {
                if let Some(region) = by_name
                    .get(mr.as_str())
                    .filter(|region| region.prefill_path.is_none())
                {
                    return Err(SdfError::microkit(format!(
                        "Error: 'setvar_prefill_size' used for MR without a `prefill_path` @ '{}' {}",
                        region.name,
                        file.loc(region.pos)
                    )));
                }
            }
        }
    }

    for pd in &pds {
        if let Some(pos) = pd.cspace_pos {
            unsupported.push((pos, "element '<cspace>'".to_string()));
        }
    }
    unsupported.sort_by_key(|(pos, _)| *pos);

    Ok(RawSystem {
        pds,
        regions,
        channels,
        warnings: std::mem::take(warnings),
        unsupported,
    })
}

/// IRQ numbers are unique in the system; IRQ and channel ids share one id space per PD; a PPC
/// goes to a strictly higher priority.
fn check_ids(file: &SdfFile<'_>, pds: &[RawPd], channels: &[RawChannel]) -> SdfResult<()> {
    let duplicate_channel_id = |id: u64, pd: &RawPd| {
        SdfError::microkit(format!(
            "Error: duplicate channel id: {id} in protection domain: '{}' @ {}",
            pd.name,
            file.loc(pd.pos)
        ))
    };

    let mut all_irqs: HashSet<u64> = HashSet::new();
    for pd in pds {
        for irq in &pd.irqs {
            if !all_irqs.insert(irq.irq) {
                return Err(SdfError::microkit(format!(
                    "Error: duplicate irq: {} in protection domain: '{}' @ {}",
                    irq.irq,
                    pd.name,
                    file.loc(pd.pos)
                )));
            }
        }
    }

    let mut ids: Vec<Vec<u64>> = Vec::with_capacity(pds.len());
    for pd in pds {
        let mut pd_ids = Vec::new();
        for irq in &pd.irqs {
            if pd_ids.contains(&irq.id) {
                return Err(duplicate_channel_id(irq.id, pd));
            }
            pd_ids.push(irq.id);
        }
        ids.push(pd_ids);
    }

    for channel in channels {
        let [end_a, end_b] = &channel.ends;
        let (Some(pd_a), Some(pd_b)) = (pds.get(end_a.pd), pds.get(end_b.pd)) else {
            continue;
        };
        for (end, pd) in [(end_a, pd_a), (end_b, pd_b)] {
            if ids
                .get(end.pd)
                .is_some_and(|pd_ids| pd_ids.contains(&end.id))
            {
                return Err(duplicate_channel_id(end.id, pd));
            }
        }
        let ppc_error = |from: &RawPd, to: &RawPd| {
            SdfError::microkit(format!(
                "Error: PPCs must be to protection domains of strictly higher priorities; channel with PPC exists from pd {} (priority: {}) to pd {} (priority: {})",
                from.name, from.priority, to.name, to.priority
            ))
        };
        if end_a.pp && pd_a.priority >= pd_b.priority {
            return Err(ppc_error(pd_a, pd_b));
        }
        if end_b.pp && pd_b.priority >= pd_a.priority {
            return Err(ppc_error(pd_b, pd_a));
        }
        for end in [end_a, end_b] {
            if let Some(pd_ids) = ids.get_mut(end.pd) {
                pd_ids.push(end.id);
            }
        }
    }
    Ok(())
}

/// No two cap maps of one PD target the same slot (listed in slot order, then document order).
fn check_cap_slots(file: &SdfFile<'_>, pds: &[RawPd]) -> SdfResult<()> {
    for pd in pds {
        let mut by_slot: BTreeMap<u64, Vec<_>> = BTreeMap::new();
        for cap_map in &pd.cap_maps {
            by_slot.entry(cap_map.slot).or_default().push(cap_map);
        }
        if let Some((slot, cap_maps)) = by_slot.iter().find(|(_, cap_maps)| cap_maps.len() > 1) {
            let lines: String = cap_maps
                .iter()
                .map(|cap_map| {
                    format!(
                        "\n  type {:?} from '{}' at '{}'",
                        cap_map.cap_type,
                        cap_map.pd,
                        file.loc(cap_map.pos)
                    )
                })
                .collect();
            return Err(SdfError::microkit(format!(
                "Error: overlapping user caps in slot {slot} of protection domain '{}':{lines}",
                pd.name
            )));
        }
    }
    Ok(())
}

/// Regions with a `phys_addr` do not overlap each other.
fn check_physical_overlaps(file: &SdfFile<'_>, regions: &[RawMemoryRegion]) -> SdfResult<()> {
    let mut checked: DisjointRanges<&str> = DisjointRanges::new();
    for region in regions {
        let Some(start) = region.phys_addr.map(PhysAddr::get) else {
            continue;
        };
        let Some(end) = start.checked_add(region.size) else {
            // Not a Microkit message: Microkit would wrap around here.
            return Err(SdfError::new(
                SdfErrorKind::Frameshift,
                format!(
                    "Error: memory region '{}' physical address range overflows @ {}",
                    region.name,
                    file.loc(region.pos)
                ),
            ));
        };
        if let Err((name, other_start, other_end)) = checked.insert(&region.name, start, end) {
            return Err(SdfError::microkit(format!(
                "Error: memory region '{}' physical address range [{start:#x}..{end:#x}) overlaps with another memory region '{name}' [{other_start:#x}..{other_end:#x}) @ {}",
                region.name,
                file.loc(region.pos)
            )));
        }
    }
    Ok(())
}
