//! Frameshift's own SDF fixtures (build/tests/fixtures): one file per extension rule, each
//! asserting its full message, plus valid systems whose parsed model is checked.

use std::path::PathBuf;

use frameshift_abi::addr::{Ipa, PhysAddr};
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
const REFUSED: [(&str, SdfErrorKind, &str); 23] = [
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
            ]
            .map(String::from),
        )
        .collect();
    covered.sort();
    assert_eq!(on_disk, covered);
}
