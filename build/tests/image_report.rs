//! The report names every mapping of every domain, the channels, the interrupts, the protected
//! guest's private memory with its window, the hypervisor range and the boot-info location.
#![allow(
    clippy::expect_used,
    reason = "a test fails loudly on the first unexpected result"
)]

mod image_support;

use frameshift_abi::boot_info::BootInfo;
use frameshift_build::image::{build, kind_text, rights_text, state_text, BuiltImage};
use image_support::*;
use zerocopy::IntoBytes;

fn built(name: &str) -> BuiltImage {
    let dir = scratch(name);
    build(&system(), &write_fixtures(&dir)).expect("the fixture system builds")
}

fn range(start: u64, size: u64) -> String {
    format!("[{start:#012x}, {:#012x})", start + size)
}

#[test]
fn report_lists_every_mapping_with_rights_kind_and_state() {
    let image = built("report-mappings");
    let words = aligned(image.boot_info());
    let info = BootInfo::parse(&words.as_bytes()[..image.boot_info_len]).expect("valid");
    let report = &image.report;
    assert!(
        info.mappings().len() >= 12,
        "the fixture has a dozen mappings"
    );
    for (domain_index, domain) in info.domains().iter().enumerate() {
        let name = info.domain_name(domain_index);
        let heading = format!("domain {domain_index}: ");
        let start = report
            .find(&heading)
            .unwrap_or_else(|| panic!("no {heading:?} in report"));
        let section = &report[start..];
        let end = section[1..]
            .find("\ndomain ")
            .map_or(section.len(), |end| end + 1);
        let section = &section[..end];
        assert!(section.contains(&format!("`{name}`")), "{section}");
        assert!(
            section.contains(&format!("mappings ({}):", domain.mapping_count)),
            "{section}"
        );
        for mapping in info.domain_mappings(domain_index) {
            let line = section
                .lines()
                .find(|line| {
                    line.trim_start()
                        .starts_with(&range(mapping.ipa, mapping.size))
                        && line.contains(&format!("-> {}", range(mapping.pa, mapping.size)))
                })
                .unwrap_or_else(|| panic!("no line for {mapping:?} in\n{section}"));
            for part in [
                rights_text(mapping.rights),
                kind_text(mapping.kind).to_string(),
                state_text(mapping.state).to_string(),
                format!("{:#x}", mapping.size),
            ] {
                assert!(line.contains(&part), "{line:?} lacks {part:?}");
            }
        }
    }
}

#[test]
fn report_shows_channels_irqs_and_the_protected_window() {
    let image = built("report-channels");
    let report = &image.report;
    for part in [
        "id 1 -> `client` id 2  notify: yes  pp: no",
        "id 2 -> `vmm` id 1  notify: yes  pp: yes",
        "irq 79 -> channel id 5  (level)",
        "VM `guest`  priority 90  protected  conversion history  parent `vmm`\n  vcpus (1): id 0 (index 0)\n",
        "protected memory (private to this guest from boot):",
        "Owned by `guest`; window in `vmm` at IPA 0x20000000 (NoPage",
        "PD `client`  priority 50  passive",
    ] {
        assert!(report.contains(part), "report lacks {part:?}:\n{report}");
    }
}

#[test]
fn report_shows_the_hypervisor_range_and_boot_info_location() {
    let image = built("report-layout");
    let report = &image.report;
    let boot_info = format!(
        "{}  boot info: {} bytes",
        range(image.boot_info_pa.0, image.boot_info_len as u64),
        image.boot_info_len
    );
    for part in [
        "hypervisor reserved range  [0x0040000000, 0x0042000000)  32 MiB  (mapped in no domain, I4)",
        "convertible range          [0x0042000000, 0x0060000000)  480 MiB",
        "[0x0040100000, 0x0040101800)  hypervisor segment 0 r-x",
        boot_info.as_str(),
        "hypervisor heap",
        "`gpio`  [0x0009030000, 0x0009031000)  page 0x1000  device (outside RAM)",
    ] {
        assert!(report.contains(part), "report lacks {part:?}:\n{report}");
    }
}

#[test]
fn report_summarises_each_vm_with_vcpus_mode_ram_and_window() {
    use frameshift_build::sdf::model::{Conversion, VirtualMachine};
    let dir = scratch("report-vms");
    let inputs = write_fixtures(&dir);
    let mut system = system();
    if let Some(guest) = &mut system.protection_domains[0].virtual_machine {
        guest.vcpus = vec![5, 2];
        guest.conversion = Some(Conversion::Split);
    }
    // The client gets an unprotected VM whose RAM it shares.
    system.memory_regions.push(region("plain_ram", 0x1000));
    let plain_ram = system.memory_regions.len() - 1;
    system.protection_domains[1]
        .maps
        .push(map(plain_ram, 0x500_0000, RW));
    system.protection_domains[1].virtual_machine = Some(VirtualMachine {
        name: "plain".to_string(),
        priority: 10,
        budget: 1000,
        period: 1000,
        vcpus: vec![0],
        maps: vec![map(plain_ram, 0x4000_0000, RWX)],
        protected: false,
        conversion: None,
    });
    let image = build(&system, &inputs).expect("build");
    let words = aligned(image.boot_info());
    let info = BootInfo::parse(&words.as_bytes()[..image.boot_info_len]).expect("valid");
    let guest_ram = info.domain_mappings(1)[0];
    let window = info
        .domain_mappings(0)
        .iter()
        .find(|m| m.pa == guest_ram.pa)
        .expect("the window");
    let plain = info.domain_mappings(3)[0];
    let client_map = info
        .domain_mappings(2)
        .iter()
        .find(|m| m.pa == plain.pa)
        .expect("the client's map");
    let report = &image.report;
    let summary = &report[report.find("\nVirtual machines\n").expect("a VM section")..];
    let expected = format!(
        "
Virtual machines
  `guest` (domain 1), VMM `vmm`: protected, conversion split (shared pages at IPA + 0x8000000000, private RAM below it)
    vcpu id 2: index 0 (MPIDR Aff0 0)
    vcpu id 5: index 1 (MPIDR Aff0 1)
    RAM `guest_ram`: guest IPA {} -> PA {}  4 MiB  Owned; window in `vmm` at IPA {} (NoPage)
  `plain` (domain 3), VMM `client`: not protected
    vcpu id 0: index 0 (MPIDR Aff0 0)
    RAM `plain_ram`: guest IPA {} -> PA {}  4 KiB  SharedBorrowed; also mapped by `client` at IPA {} (SharedOwned)
",
        range(GUEST_RAM_IPA, 0x40_0000),
        range(guest_ram.pa, 0x40_0000),
        range(window.ipa, 0x40_0000),
        range(0x4000_0000, 0x1000),
        range(plain.pa, 0x1000),
        range(client_map.ipa, 0x1000),
    );
    assert_eq!(summary, expected);
    assert!(
        report.contains(
            "domain 1: VM `guest`  priority 90  protected  conversion split  parent `vmm`\n  vcpus (2): id 2 (index 0), id 5 (index 1)\n"
        ),
        "{report}"
    );
    assert!(
        report.contains(
            "domain 3: VM `plain`  priority 10  parent `client`\n  vcpus (1): id 0 (index 0)\n"
        ),
        "{report}"
    );
}
