//! The human-readable report (report.txt): the physical layout, every domain's stage-2 map with
//! rights, kind and initial ownership, channels, interrupts, for protected VMs where each
//! private region is and where its window is, and a summary of every VM (its vCPUs with their
//! indices, protection, conversion mode, RAM and windows).

use std::fmt::Write;

use frameshift_abi::addr::SHARED_ALIAS_BIT;
use frameshift_abi::boot_info::{
    ChannelDesc, DomainDesc, CHANNEL_A_CALLS_B, CHANNEL_A_NOTIFIES_B, CHANNEL_B_CALLS_A,
    CHANNEL_B_NOTIFIES_A, DOMAIN_FLAG_PASSIVE, DOMAIN_FLAG_PROTECTED, DOMAIN_FLAG_SPLIT,
    DOMAIN_KIND_VM, IRQ_TRIGGER_EDGE, MAPPING_KIND_DEVICE, MAPPING_KIND_IPC_BUFFER,
    MAPPING_KIND_PROGRAM, MAPPING_KIND_REGION, MAPPING_KIND_STACK, MAPPING_KIND_WINDOW,
    MAPPING_STATE_NO_PAGE, MAPPING_STATE_OWNED, MAPPING_STATE_SHARED_BORROWED,
    MAPPING_STATE_SHARED_OWNED, MAPPING_STATE_UNTRACKED, NONE, RIGHT_EXECUTE, RIGHT_READ,
    RIGHT_WRITE,
};
use object::elf::{PF_R, PF_W, PF_X};

use crate::sdf::model::SystemDescription;

use super::address::PhysAddr;
use super::layout::{
    MemoryLayout, CONVERTIBLE_BASE, HYPERVISOR_BASE, HYPERVISOR_LOAD_BASE, HYPERVISOR_SIZE,
    RAM_BASE,
};
use super::plan::{OutputSegment, Plan, PlannedDomain};

/// What the report needs beyond the plan.
#[derive(Debug)]
pub(crate) struct ReportInputs<'a> {
    pub(crate) system: &'a SystemDescription,
    pub(crate) layout: &'a MemoryLayout,
    pub(crate) plan: &'a Plan,
    pub(crate) hypervisor_path: &'a std::path::Path,
    pub(crate) hypervisor_segments: &'a [OutputSegment],
    pub(crate) entry: PhysAddr,
    pub(crate) boot_info_pa: PhysAddr,
    pub(crate) boot_info_len: u64,
    pub(crate) boot_info_crc: u32,
    pub(crate) heap: (PhysAddr, u64),
}

/// `rwx`-style rights.
pub fn rights_text(rights: u8) -> String {
    let bit = |flag: u8, letter: char| if rights & flag != 0 { letter } else { '-' };
    [
        bit(RIGHT_READ, 'r'),
        bit(RIGHT_WRITE, 'w'),
        bit(RIGHT_EXECUTE, 'x'),
    ]
    .iter()
    .collect()
}

fn flags_text(flags: u32) -> String {
    let bit = |flag: u32, letter: char| if flags & flag != 0 { letter } else { '-' };
    [bit(PF_R, 'r'), bit(PF_W, 'w'), bit(PF_X, 'x')]
        .iter()
        .collect()
}

/// The name of a `MAPPING_KIND_*`.
pub fn kind_text(kind: u8) -> &'static str {
    match kind {
        MAPPING_KIND_PROGRAM => "program",
        MAPPING_KIND_REGION => "region",
        MAPPING_KIND_STACK => "stack",
        MAPPING_KIND_IPC_BUFFER => "ipc-buffer",
        MAPPING_KIND_DEVICE => "device",
        MAPPING_KIND_WINDOW => "window",
        _ => "?",
    }
}

/// The name of a `MAPPING_STATE_*` (DESIGN.md 4 names).
pub fn state_text(state: u8) -> &'static str {
    match state {
        MAPPING_STATE_OWNED => "Owned",
        MAPPING_STATE_SHARED_OWNED => "SharedOwned",
        MAPPING_STATE_SHARED_BORROWED => "SharedBorrowed",
        MAPPING_STATE_NO_PAGE => "NoPage",
        MAPPING_STATE_UNTRACKED => "untracked",
        _ => "?",
    }
}

fn size_text(size: u64) -> String {
    if size >= 1 << 20 && size.is_multiple_of(1 << 20) {
        format!("{} MiB", size >> 20)
    } else if size >= 1 << 10 && size.is_multiple_of(1 << 10) {
        format!("{} KiB", size >> 10)
    } else {
        format!("{size} B")
    }
}

fn range(start: u64, size: u64) -> String {
    format!("[{start:#012x}, {:#012x})", start.saturating_add(size))
}

fn domain_name(plan: &Plan, index: u32) -> &str {
    plan.domains
        .get(index as usize)
        .map_or("?", |domain| domain.name.as_str())
}

/// Renders the report. Only ordered data is used, so the text is deterministic.
pub(crate) fn render(inputs: &ReportInputs<'_>) -> String {
    let mut out = String::new();
    // Writing to a String cannot fail; the results are ignored for that reason.
    let _ = write_report(&mut out, inputs);
    out
}

fn write_report(out: &mut String, inputs: &ReportInputs<'_>) -> std::fmt::Result {
    let ReportInputs { layout, plan, .. } = inputs;
    writeln!(out, "Frameshift boot image report")?;
    writeln!(out, "============================")?;
    writeln!(out)?;
    writeln!(out, "Physical memory (QEMU virt)")?;
    writeln!(
        out,
        "  RAM                        {}  {}",
        range(RAM_BASE.0, layout.ram_size),
        size_text(layout.ram_size)
    )?;
    writeln!(
        out,
        "  hypervisor reserved range  {}  {}  (mapped in no domain, I4)",
        range(HYPERVISOR_BASE.0, HYPERVISOR_SIZE),
        size_text(HYPERVISOR_SIZE)
    )?;
    writeln!(
        out,
        "    {}  left free for QEMU's device tree",
        range(RAM_BASE.0, HYPERVISOR_LOAD_BASE.0 - RAM_BASE.0)
    )?;
    for (number, segment) in inputs.hypervisor_segments.iter().enumerate() {
        writeln!(
            out,
            "    {}  hypervisor segment {number} {} ({} file bytes)",
            range(segment.pa.0, segment.mem_size),
            flags_text(segment.flags),
            segment.data.len()
        )?;
    }
    writeln!(
        out,
        "    {}  boot info: {} bytes, CRC-32 {:#010x}",
        range(inputs.boot_info_pa.0, inputs.boot_info_len),
        inputs.boot_info_len,
        inputs.boot_info_crc
    )?;
    writeln!(
        out,
        "    {}  hypervisor heap ({})",
        range(inputs.heap.0 .0, inputs.heap.1),
        size_text(inputs.heap.1)
    )?;
    writeln!(
        out,
        "  hypervisor ELF '{}', entry {}",
        inputs.hypervisor_path.display(),
        inputs.entry
    )?;
    writeln!(
        out,
        "  convertible range          {}  {}, {:#x} bytes in use",
        range(CONVERTIBLE_BASE.0, layout.convertible_size()),
        size_text(layout.convertible_size()),
        plan.convertible_used
    )?;
    for block in &plan.blocks {
        writeln!(
            out,
            "    {}  {}",
            range(block.pa.0, block.size),
            block.label
        )?;
    }
    writeln!(out)?;

    writeln!(out, "Memory regions")?;
    for (region, placement) in inputs.system.memory_regions.iter().zip(&plan.regions) {
        let how = match (placement.device, placement.fixed) {
            (true, _) => "device (outside RAM)",
            (false, true) => "phys_addr",
            (false, false) => "allocated",
        };
        write!(
            out,
            "  `{}`  {}  page {:#x}  {}",
            region.name,
            range(placement.pa.0, region.size),
            region.page_size,
            how
        )?;
        if let Some(path) = &placement.prefill {
            write!(out, "  prefill '{}'", path.display())?;
        }
        writeln!(out)?;
    }
    writeln!(out)?;

    writeln!(out, "Domains")?;
    for (index, domain) in plan.domains.iter().enumerate() {
        write_domain(out, plan, index, domain)?;
    }

    let vms: Vec<(usize, &PlannedDomain)> = plan
        .domains
        .iter()
        .enumerate()
        .filter(|(_, domain)| domain.desc.kind == DOMAIN_KIND_VM)
        .collect();
    if !vms.is_empty() {
        writeln!(out)?;
        writeln!(out, "Virtual machines")?;
        for (index, vm) in vms {
            write_vm(out, inputs.system, plan, index, vm)?;
        }
    }
    Ok(())
}

/// `history` or `split`: the conversion mode of a protected VM's flags.
fn conversion_text(flags: u8) -> &'static str {
    if flags & DOMAIN_FLAG_SPLIT != 0 {
        "split"
    } else {
        "history"
    }
}

/// `id 0 (index 0), id 3 (index 1)`: each vCPU id with the index (and MPIDR Aff0) it gets.
fn vcpus_text(desc: &DomainDesc) -> String {
    let vcpus: Vec<String> = desc
        .vcpus()
        .enumerate()
        .map(|(index, id)| format!("id {id} (index {index})"))
        .collect();
    vcpus.join(", ")
}

/// The summary of one VM: its VMM, protection and conversion mode, vCPUs, and each map with
/// whatever else maps the same frames (its VMM's window, for a protected guest).
fn write_vm(
    out: &mut String,
    system: &SystemDescription,
    plan: &Plan,
    index: usize,
    vm: &PlannedDomain,
) -> std::fmt::Result {
    let desc = &vm.desc;
    write!(
        out,
        "  `{}` (domain {index}), VMM `{}`: ",
        vm.name,
        domain_name(plan, desc.parent)
    )?;
    if desc.flags & DOMAIN_FLAG_PROTECTED != 0 {
        write!(out, "protected, conversion {}", conversion_text(desc.flags))?;
        if desc.flags & DOMAIN_FLAG_SPLIT != 0 {
            write!(
                out,
                " (shared pages at IPA + {SHARED_ALIAS_BIT:#x}, private RAM below it)"
            )?;
        }
        writeln!(out)?;
    } else {
        writeln!(out, "not protected")?;
    }
    for (vcpu_index, id) in desc.vcpus().enumerate() {
        writeln!(
            out,
            "    vcpu id {id}: index {vcpu_index} (MPIDR Aff0 {vcpu_index})"
        )?;
    }
    for mapping in &vm.mappings {
        let m = &mapping.desc;
        let what = if m.kind == MAPPING_KIND_DEVICE {
            "device"
        } else {
            "RAM"
        };
        let region = system
            .memory_regions
            .get(m.region as usize)
            .map_or("?", |region| region.name.as_str());
        write!(
            out,
            "    {what} `{region}`: guest IPA {} -> PA {}  {}  {}",
            range(m.ipa, m.size),
            range(m.pa, m.size),
            size_text(m.size),
            state_text(m.state)
        )?;
        let others = plan
            .domains
            .iter()
            .enumerate()
            .filter(|&(other, _)| other != index)
            .flat_map(|(_, d)| d.mappings.iter().map(move |w| (d, w)))
            .filter(|(_, w)| w.desc.pa == m.pa && w.desc.size == m.size);
        for (other, window) in others {
            let how = if window.desc.kind == MAPPING_KIND_WINDOW {
                "window in"
            } else {
                "also mapped by"
            };
            write!(
                out,
                "; {how} `{}` at IPA {} ({})",
                other.name,
                range(window.desc.ipa, window.desc.size),
                state_text(window.desc.state)
            )?;
        }
        writeln!(out)?;
    }
    Ok(())
}

fn write_domain(
    out: &mut String,
    plan: &Plan,
    index: usize,
    domain: &PlannedDomain,
) -> std::fmt::Result {
    let desc = &domain.desc;
    let is_vm = desc.kind == DOMAIN_KIND_VM;
    write!(
        out,
        "domain {index}: {} `{}`  priority {}",
        if is_vm { "VM" } else { "PD" },
        domain.name,
        desc.priority
    )?;
    if desc.flags & DOMAIN_FLAG_PASSIVE != 0 {
        write!(out, "  passive")?;
    }
    if desc.flags & DOMAIN_FLAG_PROTECTED != 0 {
        write!(
            out,
            "  protected  conversion {}",
            conversion_text(desc.flags)
        )?;
    }
    if is_vm {
        write!(out, "  parent `{}`", domain_name(plan, desc.parent))?;
    } else if desc.parent != NONE {
        write!(
            out,
            "  parent `{}` (child id {})",
            domain_name(plan, desc.parent),
            desc.child_id
        )?;
    }
    writeln!(out)?;
    if is_vm {
        writeln!(
            out,
            "  vcpus ({}): {}",
            desc.vcpus().count(),
            vcpus_text(desc)
        )?;
    }
    if let Some(program) = &domain.program {
        writeln!(
            out,
            "  program '{}'  entry {:#x}  stack top {:#x}",
            program.display(),
            desc.entry,
            desc.stack_top
        )?;
    }
    writeln!(out, "  mappings ({}):", domain.mappings.len())?;
    writeln!(
        out,
        "    {:<32}    {:<32}  {:>10}  rights  cache     kind      state           what",
        "IPA range", "PA range", "size"
    )?;
    for mapping in &domain.mappings {
        let m = &mapping.desc;
        writeln!(
            out,
            "    {:<32} -> {:<32}  {:>10}  {:<6}  {:<8}  {:<8}  {:<14}  {}",
            range(m.ipa, m.size),
            range(m.pa, m.size),
            format!("{:#x}", m.size),
            rights_text(m.rights),
            if m.kind == MAPPING_KIND_DEVICE {
                "device"
            } else if m.cached == 1 {
                "cached"
            } else {
                "uncached"
            },
            kind_text(m.kind),
            state_text(m.state),
            mapping.label
        )?;
    }
    let channels: Vec<(&ChannelDesc, bool)> = plan
        .channels
        .iter()
        .filter_map(|c| {
            if c.domain_a as usize == index {
                Some((c, true))
            } else if c.domain_b as usize == index {
                Some((c, false))
            } else {
                None
            }
        })
        .collect();
    if !channels.is_empty() {
        writeln!(out, "  channels:")?;
        for (channel, is_a) in channels {
            let (own_id, other, other_id, notify, pp) = if is_a {
                (
                    channel.id_a,
                    channel.domain_b,
                    channel.id_b,
                    CHANNEL_A_NOTIFIES_B,
                    CHANNEL_A_CALLS_B,
                )
            } else {
                (
                    channel.id_b,
                    channel.domain_a,
                    channel.id_a,
                    CHANNEL_B_NOTIFIES_A,
                    CHANNEL_B_CALLS_A,
                )
            };
            writeln!(
                out,
                "    id {own_id} -> `{}` id {other_id}  notify: {}  pp: {}",
                domain_name(plan, other),
                if channel.flags & notify != 0 {
                    "yes"
                } else {
                    "no"
                },
                if channel.flags & pp != 0 { "yes" } else { "no" },
            )?;
        }
    }
    let irqs: Vec<_> = plan
        .irqs
        .iter()
        .filter(|irq| irq.domain as usize == index)
        .collect();
    if !irqs.is_empty() {
        writeln!(out, "  irqs:")?;
        for irq in irqs {
            let trigger = if irq.trigger == IRQ_TRIGGER_EDGE {
                "edge"
            } else {
                "level"
            };
            writeln!(
                out,
                "    irq {} -> channel id {}  ({trigger})",
                irq.irq, irq.channel_id
            )?;
        }
    }
    if desc.flags & DOMAIN_FLAG_PROTECTED != 0 {
        writeln!(out, "  protected memory (private to this guest from boot):")?;
        let own_region_maps = domain
            .mappings
            .iter()
            .filter(|m| m.desc.state == MAPPING_STATE_OWNED && m.desc.kind == MAPPING_KIND_REGION);
        for mapping in own_region_maps {
            let m = &mapping.desc;
            write!(
                out,
                "    {}  PA {}  guest IPA {:#x}: Owned by `{}`",
                mapping.label,
                range(m.pa, m.size),
                m.ipa,
                domain.name
            )?;
            let windows: Vec<_> = plan
                .domains
                .iter()
                .flat_map(|d| d.mappings.iter().map(move |w| (d, w)))
                .filter(|(_, w)| {
                    w.desc.kind == MAPPING_KIND_WINDOW && w.desc.pa == m.pa && w.desc.size == m.size
                })
                .collect();
            if windows.is_empty() {
                writeln!(out, "; no window")?;
            }
            for (vmm, window) in windows {
                writeln!(
                    out,
                    "; window in `{}` at IPA {:#x} ({}: no page accessible until the guest shares it)",
                    vmm.name,
                    window.desc.ipa,
                    state_text(window.desc.state)
                )?;
            }
        }
    }
    Ok(())
}
