//! Frameshift's own SDF fixtures (build/tests/fixtures): one file per extension rule, each
//! asserting its full message, plus valid systems whose parsed model is checked.
#![allow(
    clippy::expect_used,
    reason = "a test fails loudly on the first unexpected result"
)]

use std::path::PathBuf;

use frameshift_abi::addr::{Ipa, PhysAddr};
use frameshift_build::sdf::model::{Conversion, VirtualMachine};
use frameshift_build::sdf::{parse_bytes, SdfError, SdfErrorKind, SystemDescription};

fn parse_fixture(name: &str) -> Result<SystemDescription, SdfError> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    let bytes = std::fs::read(&path)
        .unwrap_or_else(|error| panic!("cannot read {}: {error}", path.display()));
    parse_bytes(name, &bytes, &[])
}

/// (fixture, kind, full message).
const REFUSED: [(&str, SdfErrorKind, &str); 28] = [
    (
        "protected_invalid_value.system",
        SdfErrorKind::Microkit,
        "Error: protected must be 'true' or 'false' on element 'virtual_machine': protected_invalid_value.system:8:9",
    ),
    (
        "protected_no_memory.system",
        SdfErrorKind::Protected,
        "Error: protected virtual machine 'guest' maps no memory region @ protected_no_memory.system:8:9",
    ),
    (
        "protected_map_twice.system",
        SdfErrorKind::Protected,
        "Error: protected virtual machine 'guest' maps memory region 'guest_ram' more than once @ protected_map_twice.system:11:13",
    ),
    (
        "protected_phys_addr.system",
        SdfErrorKind::Protected,
        "Error: memory region 'guest_ram' is private to protected virtual machine 'guest' and must not set phys_addr @ protected_phys_addr.system:4:5",
    ),
    (
        "protected_mapped_by_other_pd.system",
        SdfErrorKind::Protected,
        "Error: memory region 'guest_ram' is private to protected virtual machine 'guest' and must not be mapped by protection domain 'spy' @ protected_mapped_by_other_pd.system:15:9",
    ),
    (
        "protected_mapped_by_child_pd.system",
        SdfErrorKind::Protected,
        "Error: memory region 'guest_ram' is private to protected virtual machine 'guest' and must not be mapped by protection domain 'helper' @ protected_mapped_by_child_pd.system:10:13",
    ),
    (
        "protected_mapped_by_other_vm.system",
        SdfErrorKind::Protected,
        "Error: memory region 'guest_ram' is private to protected virtual machine 'guest' and must not be mapped by virtual machine 'guest2' @ protected_mapped_by_other_vm.system:17:13",
    ),
    (
        "protected_no_window.system",
        SdfErrorKind::Protected,
        "Error: protected virtual machine 'guest' maps memory region 'guest_ram' but its parent protection domain 'vmm' has no window map of it @ protected_no_window.system:9:13",
    ),
    (
        "protected_window_executable.system",
        SdfErrorKind::Protected,
        "Error: window map of memory region 'guest_ram' in protection domain 'vmm' must not be executable @ protected_window_executable.system:7:9",
    ),
    (
        "protected_setvar_paddr.system",
        SdfErrorKind::Protected,
        "Error: setvar on symbol 'guest_ram_paddr' exports the physical address of memory region 'guest_ram', which is private to protected virtual machine 'guest' @ protected_setvar_paddr.system:8:9",
    ),
    (
        "setvar_unknown_region.system",
        SdfErrorKind::Frameshift,
        "Error: invalid memory region name 'bufer' on 'setvar' @ setvar_unknown_region.system:8:9",
    ),
    (
        "unsupported_cspace.system",
        SdfErrorKind::NotSupported,
        "Error: element '<cspace>' is not supported by Frameshift: unsupported_cspace.system:9:9",
    ),
    // Issue 7, break 1: names pass frameshift_abi::domain_name::check.
    (
        "name_hypervisor.system",
        SdfErrorKind::Frameshift,
        "Error: invalid name 'hypervisor': the name 'hypervisor' is reserved for the hypervisor's own console lines on element 'protection_domain': name_hypervisor.system:7:5",
    ),
    (
        "name_hypervisor_upper_case.system",
        SdfErrorKind::Frameshift,
        "Error: invalid name 'HYPERVISOR': the name 'hypervisor' is reserved for the hypervisor's own console lines on element 'virtual_machine': name_hypervisor_upper_case.system:7:9",
    ),
    (
        "name_bar.system",
        SdfErrorKind::Frameshift,
        "Error: invalid name 'a|b': character '|' at position 1 cannot appear in a console prefix (allowed: printable ASCII except space and '|') on element 'protection_domain': name_bar.system:4:5",
    ),
    (
        "name_space.system",
        SdfErrorKind::Frameshift,
        "Error: invalid name 'a b': character ' ' at position 1 cannot appear in a console prefix (allowed: printable ASCII except space and '|') on element 'protection_domain': name_space.system:4:5",
    ),
    (
        "name_non_ascii.system",
        SdfErrorKind::Frameshift,
        "Error: invalid name 'gäst': byte 0xc3 at position 1 cannot appear in a console prefix (allowed: printable ASCII except space and '|') on element 'protection_domain': name_non_ascii.system:4:5",
    ),
    (
        "name_too_long.system",
        SdfErrorKind::Frameshift,
        "Error: invalid name 'nnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnn': the name is 64 bytes long; at most 63 fit in a console prefix on element 'protection_domain': name_too_long.system:4:5",
    ),
    // Issue 7, also seen: a zero-size region names its own page size.
    (
        "region_size_zero.system",
        SdfErrorKind::Frameshift,
        "Error: memory region 'empty' has size 0; its size must be a non-zero multiple of its page size 0x1000 @ region_size_zero.system:4:5",
    ),
    // Issue 7, break 4: no DMA-capable device in a domain.
    (
        "device_fw_cfg.system",
        SdfErrorKind::Frameshift,
        "Error: memory region 'fw_cfg' physical address range [0x9020000..0x9021000) overlaps fw_cfg [0x9020000..0x9020018), a DMA-capable device (its DMA interface copies to and from any physical address it is given); no IOMMU stands in front of it on QEMU virt, so a domain that maps it can write any physical memory, bypassing stage 2 @ device_fw_cfg.system:4:5",
    ),
    (
        "device_virtio_mmio.system",
        SdfErrorKind::Frameshift,
        "Error: memory region 'virtio' physical address range [0xa003000..0xa004000) overlaps virtio-mmio transports [0xa000000..0xa004000), a DMA-capable device (32 transports of 0x200 bytes; a virtio device reads and writes its queues anywhere in physical memory); no IOMMU stands in front of it on QEMU virt, so a domain that maps it can write any physical memory, bypassing stage 2 @ device_virtio_mmio.system:4:5",
    ),
    (
        "device_pcie_ecam.system",
        SdfErrorKind::Frameshift,
        "Error: memory region 'ecam' physical address range [0x4010000000..0x4010001000) overlaps PCIe ECAM (high) [0x4010000000..0x4020000000), a DMA-capable device (PCI configuration space: turns on bus mastering of PCI devices, which then DMA anywhere); no IOMMU stands in front of it on QEMU virt, so a domain that maps it can write any physical memory, bypassing stage 2 @ device_pcie_ecam.system:4:5",
    ),
    // Issue 7, also seen: the hypervisor routes at most 64 interrupts.
    (
        "irq_too_many.system",
        SdfErrorKind::Frameshift,
        "Error: too many irqs (65) defined. Maximum is 64 (the hypervisor routes at most 64 interrupts) @ irq_too_many.system:73:9",
    ),
    // Issue 9: the conversion mode of a protected VM.
    (
        "conversion_invalid_value.system",
        SdfErrorKind::Protected,
        "Error: conversion must be 'history' or 'split' on element 'virtual_machine': conversion_invalid_value.system:8:9",
    ),
    (
        "conversion_not_protected.system",
        SdfErrorKind::Protected,
        "Error: conversion is only valid on a protected virtual machine (protected=\"true\") on element 'virtual_machine': conversion_not_protected.system:8:9",
    ),
    (
        "conversion_split_map_in_alias_half.system",
        SdfErrorKind::Protected,
        "Error: map of memory region 'high_ram' in split-mode virtual machine 'guest' ends at 0x8000200000, above 0x8000000000: the upper half of a split-mode guest's IPA space (from IPA bit 39) is where its shared pages appear @ conversion_split_map_in_alias_half.system:14:13",
    ),
    // Issue 9: the hypervisor's own limits on vCPUs and channels.
    (
        "vcpu_too_many.system",
        SdfErrorKind::Frameshift,
        "Error: too many vcpus (5) in virtual machine 'guest'. Maximum is 4 (a Frameshift limit: the hypervisor runs at most 4 vCPUs per virtual machine; Microkit allows more) @ vcpu_too_many.system:12:13",
    ),
    (
        "channel_too_many.system",
        SdfErrorKind::Frameshift,
        "Error: too many channels (257) defined. Maximum is 256 (the hypervisor's channel table holds at most 256 channels) @ channel_too_many.system:1058:5",
    ),
];

#[test]
fn each_rule_has_its_message() {
    for (name, kind, message) in REFUSED {
        match parse_fixture(name) {
            Ok(_) => panic!("{name}: accepted, expected {message}"),
            Err(error) => {
                assert_eq!(error.to_string(), message, "{name}");
                assert_eq!(error.kind(), kind, "{name}");
                assert_eq!(error.first_line(), message, "{name}");
            }
        }
    }
}

#[test]
fn sample_system_with_protected_guest_parses() {
    let system = match parse_fixture("sample_protected_system.system") {
        Ok(system) => system,
        Err(error) => panic!("sample refused: {error}"),
    };
    assert!(system.warnings.is_empty(), "{:?}", system.warnings);

    let names: Vec<&str> = system
        .protection_domains
        .iter()
        .map(|pd| pd.name.as_str())
        .collect();
    assert_eq!(names, ["vmm", "rtc_driver"]);
    let regions: Vec<&str> = system
        .memory_regions
        .iter()
        .map(|region| region.name.as_str())
        .collect();
    assert_eq!(regions, ["guest_ram", "rtc"]);

    let [vmm, rtc_driver] = &system.protection_domains[..] else {
        panic!("two PDs expected");
    };
    assert_eq!((vmm.priority, rtc_driver.priority), (100, 150));
    assert_eq!(vmm.stack_size, 0x2000);
    assert_eq!(vmm.maps.len(), 1);
    assert_eq!(vmm.maps[0].memory_region, 0);
    assert_eq!(vmm.maps[0].vaddr, Ipa(0x2000_0000));
    assert!(vmm.maps[0].perms.read && vmm.maps[0].perms.write && !vmm.maps[0].perms.execute);
    assert_eq!(vmm.maps[0].setvar_vaddr.as_deref(), Some("guest_ram_vaddr"));

    let Some(guest) = &vmm.virtual_machine else {
        panic!("vmm has no virtual machine");
    };
    assert_eq!(guest.name, "guest");
    assert!(guest.protected);
    assert_eq!(guest.vcpus, [0]);
    assert_eq!(guest.maps.len(), 1);
    assert_eq!(guest.maps[0].memory_region, 0);
    assert_eq!(guest.maps[0].vaddr, Ipa(0x4000_0000));
    assert!(guest.maps[0].perms.execute);

    assert_eq!(system.memory_regions[0].page_size, 0x20_0000);
    assert_eq!(
        system.memory_regions[1].phys_addr,
        Some(PhysAddr(0x901_0000))
    );
    assert_eq!(rtc_driver.irqs.len(), 1);
    assert_eq!((rtc_driver.irqs[0].irq, rtc_driver.irqs[0].id), (34, 1));
    assert!(!rtc_driver.maps[0].cached);

    assert_eq!(system.channels.len(), 1);
    let [end_a, end_b] = &system.channels[0].ends;
    assert_eq!((end_a.pd, end_a.id), (0, 1));
    assert_eq!((end_b.pd, end_b.id), (1, 2));
    assert!(end_a.notify && !end_a.pp);
    assert_eq!(rtc_driver.id_setvars.len(), 1);
    assert_eq!(rtc_driver.id_setvars[0].symbol, "vmm_channel");
    assert_eq!(rtc_driver.id_setvars[0].id, 2);
}

#[test]
fn protected_rules_apply_only_to_protected_guests() {
    // Sharing, phys_addr, an executable VMM map and a region_paddr setvar are all plain Microkit.
    match parse_fixture("unprotected_shared_ok.system") {
        Ok(system) => {
            let vm = system.protection_domains[0].virtual_machine.as_ref();
            assert_eq!(vm.map(|vm| vm.protected), Some(false));
            assert_eq!(system.protection_domains[0].setvars.len(), 1);
            assert_eq!(system.protection_domains[0].setvars[0].region_paddr, 0);
        }
        Err(error) => panic!("refused: {error}"),
    }
}

#[test]
fn devices_that_cannot_dma_and_the_irq_limit_itself_are_accepted() {
    // Liveness for issue 7: the PL031 RTC may be given to a PD, and 64 irqs are routed.
    match parse_fixture("device_rtc_ok.system") {
        Ok(system) => assert_eq!(
            system.memory_regions[0].phys_addr,
            Some(PhysAddr(0x901_0000))
        ),
        Err(error) => panic!("refused: {error}"),
    }
    match parse_fixture("irq_at_limit_ok.system") {
        Ok(system) => {
            let irqs: usize = system
                .protection_domains
                .iter()
                .map(|pd| pd.irqs.len())
                .sum();
            assert_eq!(irqs, 64);
        }
        Err(error) => panic!("refused: {error}"),
    }
}

#[test]
fn conversion_modes_and_the_limits_themselves_are_accepted() {
    // Liveness for issue 9: a split-mode map may end exactly at IPA bit 39, a history-mode one
    // may lie above it, a VM may have 4 vCPUs, and the system 256 channels.
    let system = match parse_fixture("conversion_split_ok.system") {
        Ok(system) => system,
        Err(error) => panic!("refused: {error}"),
    };
    let vms: Vec<&VirtualMachine> = system
        .protection_domains
        .iter()
        .filter_map(|pd| pd.virtual_machine.as_ref())
        .collect();
    let [split, history] = vms[..] else {
        panic!("two VMs expected");
    };
    assert_eq!(split.conversion, Some(Conversion::Split));
    assert_eq!(split.vcpus, [3, 0, 61, 7]);
    assert_eq!(split.maps[0].vaddr, Ipa(0x7f_ffe0_0000));
    assert_eq!(history.conversion, Some(Conversion::History), "the default");
    assert_eq!(history.maps[0].vaddr, Ipa(0x80_0000_0000));
    match parse_fixture("channel_at_limit_ok.system") {
        Ok(system) => assert_eq!(system.channels.len(), 256),
        Err(error) => panic!("refused: {error}"),
    }
    // An unprotected VM has no conversion mode.
    match parse_fixture("unprotected_shared_ok.system") {
        Ok(system) => {
            let vm = system.protection_domains[0].virtual_machine.as_ref();
            assert_eq!(vm.map(|vm| vm.conversion), Some(None));
        }
        Err(error) => panic!("refused: {error}"),
    }
}

/// A VMM with one guest whose `<virtual_machine>` attributes are `vm_attributes`, mapping its
/// 2 MiB of RAM at `guest_ipa`.
fn guest_system(vm_attributes: &str, guest_ipa: &str) -> String {
    format!(
        r#"<system>
    <memory_region name="guest_ram" size="0x20_0000" page_size="0x20_0000" />
    <protection_domain name="vmm">
        <program_image path="vmm.elf" />
        <map mr="guest_ram" vaddr="0x2000_0000" perms="rw" />
        <virtual_machine name="guest" {vm_attributes}>
            <vcpu id="0" />
            <map mr="guest_ram" vaddr="{guest_ipa}" perms="rwx" />
        </virtual_machine>
    </protection_domain>
</system>
"#
    )
}

fn parse_text(text: &str) -> Result<SystemDescription, SdfError> {
    parse_bytes("t.system", text.as_bytes(), &[])
}

#[test]
fn conversion_needs_protected_true_and_a_known_value() {
    let not_protected = "Error: conversion is only valid on a protected virtual machine (protected=\"true\") on element 'virtual_machine': t.system:6:9";
    for attributes in [
        r#"protected="false" conversion="split""#,
        r#"protected="false" conversion="history""#,
        r#"conversion="split""#,
    ] {
        let error = parse_text(&guest_system(attributes, "0x4000_0000"))
            .expect_err("conversion without protected=\"true\"");
        assert_eq!(error.to_string(), not_protected, "{attributes}");
        assert_eq!(error.kind(), SdfErrorKind::Protected);
    }
    // The value is checked first, whatever `protected` says.
    let bad_value =
        "Error: conversion must be 'history' or 'split' on element 'virtual_machine': t.system:6:9";
    for attributes in [
        r#"protected="false" conversion="History""#,
        r#"protected="true" conversion="""#,
        r#"protected="true" conversion=" split""#,
    ] {
        let error = parse_text(&guest_system(attributes, "0x4000_0000")).expect_err("bad value");
        assert_eq!(error.to_string(), bad_value, "{attributes}");
    }
    for (attributes, mode) in [
        (r#"protected="true""#, Conversion::History),
        (
            r#"protected="true" conversion="history""#,
            Conversion::History,
        ),
        (r#"conversion="split" protected="true""#, Conversion::Split),
    ] {
        let system = parse_text(&guest_system(attributes, "0x4000_0000"))
            .unwrap_or_else(|error| panic!("{attributes}: {error}"));
        let vm = system.protection_domains[0].virtual_machine.as_ref();
        assert_eq!(vm.and_then(|vm| vm.conversion), Some(mode), "{attributes}");
    }
}

#[test]
fn a_split_mode_map_in_the_alias_half_is_refused_wherever_it_starts() {
    let split = r#"protected="true" conversion="split""#;
    for (ipa, end) in [
        ("0x80_0000_0000", "0x8000200000"),
        ("0xc0_0000_0000", "0xc000200000"),
    ] {
        let error = parse_text(&guest_system(split, ipa)).expect_err("in the alias half");
        assert_eq!(
            error.to_string(),
            format!("Error: map of memory region 'guest_ram' in split-mode virtual machine 'guest' ends at {end}, above 0x8000000000: the upper half of a split-mode guest's IPA space (from IPA bit 39) is where its shared pages appear @ t.system:8:13")
        );
    }
    // The same maps in history mode are accepted.
    for ipa in ["0x80_0000_0000", "0xc0_0000_0000"] {
        let history = guest_system(r#"protected="true" conversion="history""#, ipa);
        assert!(parse_text(&history).is_ok(), "{ipa}");
    }
}

#[test]
fn every_fixture_is_covered() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let mut on_disk: Vec<String> = std::fs::read_dir(&dir)
        .unwrap_or_else(|error| panic!("cannot list {}: {error}", dir.display()))
        .filter_map(|entry| entry.ok())
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".system"))
        .collect();
    on_disk.sort();
    let mut covered: Vec<String> = REFUSED
        .iter()
        .map(|(name, _, _)| name.to_string())
        .chain(
            [
                "sample_protected_system.system",
                "unprotected_shared_ok.system",
                "device_rtc_ok.system",
                "irq_at_limit_ok.system",
                "conversion_split_ok.system",
                "channel_at_limit_ok.system",
            ]
            .map(String::from),
        )
        .collect();
    covered.sort();
    assert_eq!(on_disk, covered);
}
