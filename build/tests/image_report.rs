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
        "VM `guest`  priority 90  protected  parent `vmm` (vcpu id 0)",
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
