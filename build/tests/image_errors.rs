//! Every build-time refusal of the image builder, with its message: a bad system or a bad ELF
//! is a build error, never a boot-time surprise.
#![allow(
    clippy::expect_used,
    reason = "a test fails loudly on the first unexpected result"
)]

mod image_support;

use std::path::PathBuf;

use frameshift_abi::addr::{Ipa, PhysAddr};
use frameshift_build::image::{build, ImageError, ImageInputs};
use frameshift_build::sdf::model::SystemDescription;
use image_support::*;
use object::elf::{EM_X86_64, ET_DYN, PF_R, PF_W};

/// Builds `system` with the standard fixtures after `prepare` edits them; returns the error
/// and its message.
fn refused(
    name: &str,
    prepare: impl FnOnce(&std::path::Path, &mut ImageInputs, &mut SystemDescription),
) -> (ImageError, String) {
    let dir = scratch(name);
    let mut inputs = write_fixtures(&dir);
    let mut system = system();
    prepare(&dir, &mut inputs, &mut system);
    let error = build(&system, &inputs).expect_err("the build must be refused");
    let message = error.to_string();
    (error, message)
}

fn assert_mentions(message: &str, parts: &[&str]) {
    for part in parts {
        assert!(message.contains(part), "message {message:?} lacks {part:?}");
    }
}

#[test]
fn running_out_of_memory() {
    let (error, message) = refused("out-of-memory", |_, _, system| {
        system.memory_regions[SHARED].size = 0x2000_0000; // 512 MiB > 480 MiB convertible
    });
    assert!(
        matches!(
            error,
            ImageError::OutOfMemory {
                size: 0x2000_0000,
                ..
            }
        ),
        "{error:?}"
    );
    assert_mentions(
        &message,
        &["out of memory", "memory region `shared`", "0x20000000"],
    );
}

#[test]
fn running_out_of_memory_with_less_ram() {
    let (error, message) = refused("small-ram", |_, inputs, _| inputs.ram_size = 36 << 20);
    assert!(matches!(error, ImageError::OutOfMemory { .. }), "{error:?}");
    assert_mentions(&message, &["out of memory", "guest_ram"]);
}

#[test]
fn invalid_ram_size() {
    let (error, message) = refused("bad-ram", |_, inputs, _| inputs.ram_size = 16 << 20);
    assert!(
        matches!(error, ImageError::InvalidRamSize { .. }),
        "{error:?}"
    );
    assert_mentions(&message, &["RAM size 0x1000000"]);
}

#[test]
fn overlapping_fixed_regions() {
    let (error, message) = refused("overlap-regions", |_, _, system| {
        system.memory_regions[SHARED].phys_addr = Some(PhysAddr(0x4300_0000));
        system.memory_regions[BLOB].phys_addr = Some(PhysAddr(0x4300_0000));
        system.memory_regions[BLOB].prefill_path = None;
    });
    assert!(
        matches!(error, ImageError::RegionsOverlap { .. }),
        "{error:?}"
    );
    assert_mentions(&message, &["memory regions `shared` and `blob` overlap"]);
}

#[test]
fn overlapping_device_regions() {
    let (error, message) = refused("overlap-devices", |_, _, system| {
        system.memory_regions[SHARED].phys_addr = Some(PhysAddr(GPIO_PA));
    });
    assert!(
        matches!(error, ImageError::RegionsOverlap { .. }),
        "{error:?}"
    );
    assert_mentions(&message, &["`shared` and `gpio` overlap"]);
}

#[test]
fn region_in_hypervisor_memory() {
    let (error, message) = refused("region-in-hypervisor", |_, _, system| {
        system.memory_regions[SHARED].phys_addr = Some(PhysAddr(0x4100_0000));
    });
    assert!(
        matches!(error, ImageError::RegionInHypervisorMemory { .. }),
        "{error:?}"
    );
    assert_mentions(
        &message,
        &["`shared`", "hypervisor's reserved memory", "I4"],
    );
}

#[test]
fn region_on_the_hypervisors_gic_or_uart() {
    for (address, device) in [
        (0x0800_0000, "GICv3 distributor"),
        (0x080A_0000, "GICv3 redistributors"),
        (0x0900_0000, "PL011"),
    ] {
        let (error, message) = refused("region-on-device", |_, _, system| {
            system.memory_regions[SHARED].phys_addr = Some(PhysAddr(address));
        });
        assert!(
            matches!(error, ImageError::RegionOnDevice { .. }),
            "{error:?}"
        );
        assert_mentions(
            &message,
            &["`shared`", device, "the hypervisor keeps for itself"],
        );
    }
}

#[test]
fn region_on_a_dma_capable_device() {
    // Issue 7, break 4: fw_cfg's DMA interface, virtio-mmio and PCIe write physical memory
    // behind stage 2, so no domain may map them.
    for (address, device) in [
        (0x0902_0000, "fw_cfg [0x9020000..0x9020018)"),
        (0x0A00_0000, "virtio-mmio transports"),
        (0x0C00_0000, "platform bus"),
        (0x1000_0000, "PCIe MMIO window"),
        (0x3EFF_0000, "PCIe PIO window"),
        (0x3F00_0000, "PCIe ECAM (low)"),
        (0x40_1000_0000, "PCIe ECAM (high)"),
        (0x80_0000_0000, "PCIe MMIO window (high)"),
    ] {
        let (error, message) = refused("region-on-dma-device", |_, _, system| {
            system.memory_regions[GPIO].phys_addr = Some(PhysAddr(address));
        });
        assert!(
            matches!(error, ImageError::RegionOnDevice { .. }),
            "{error:?}"
        );
        assert_mentions(&message, &["`gpio`", device, "DMA", "bypassing stage 2"]);
    }
}

#[test]
fn devices_that_cannot_dma_may_be_mapped() {
    // Liveness: the RTC, the GPIO and flash stay available to domains.
    for address in [0x0901_0000, 0x0903_0000, 0x0100_0000] {
        let dir = scratch("device-ok");
        let inputs = write_fixtures(&dir);
        let mut system = system();
        system.memory_regions[GPIO].phys_addr = Some(PhysAddr(address));
        if let Err(error) = build(&system, &inputs) {
            panic!("{address:#x} refused: {error}");
        }
    }
}

#[test]
fn region_straddling_the_end_of_ram() {
    let (error, message) = refused("straddle", |_, _, system| {
        system.memory_regions[SHARED].phys_addr = Some(PhysAddr(0x5FFF_F000));
        system.memory_regions[SHARED].size = 0x2000;
    });
    assert!(
        matches!(error, ImageError::RegionStraddlesRam { .. }),
        "{error:?}"
    );
    assert_mentions(&message, &["`shared`", "partly RAM"]);
}

#[test]
fn misaligned_phys_addr() {
    let (error, message) = refused("misaligned-phys", |_, _, system| {
        system.memory_regions[GUEST_RAM].phys_addr = Some(PhysAddr(0x4300_1000));
    });
    assert!(
        matches!(error, ImageError::RegionMisaligned { .. }),
        "{error:?}"
    );
    assert_mentions(&message, &["`guest_ram`", "0x43001000", "0x200000"]);
}

#[test]
fn missing_program_elf() {
    let (error, message) = refused("missing-elf", |_, _, system| {
        system.protection_domains[1].program_image = PathBuf::from("nope.elf");
    });
    assert!(
        matches!(error, ImageError::FileNotFound { .. }),
        "{error:?}"
    );
    assert_mentions(
        &message,
        &["program image of PD `client`", "nope.elf", "not found"],
    );
}

#[test]
fn missing_hypervisor_elf() {
    let (error, message) = refused("missing-hypervisor", |dir, inputs, _| {
        inputs.hypervisor_elf = dir.join("absent.elf");
    });
    assert!(matches!(error, ImageError::Io { .. }), "{error:?}");
    assert_mentions(&message, &["hypervisor ELF", "absent.elf"]);
}

#[test]
fn missing_prefill_file() {
    let (error, message) = refused("missing-prefill", |dir, _, _| {
        std::fs::remove_file(dir.join("blob.bin")).expect("remove");
    });
    assert!(
        matches!(error, ImageError::FileNotFound { .. }),
        "{error:?}"
    );
    assert_mentions(&message, &["prefill of memory region `blob`", "blob.bin"]);
}

#[test]
fn program_that_is_not_an_elf() {
    let (error, message) = refused("not-elf", |dir, _, _| {
        std::fs::write(dir.join("client.elf"), b"#!/bin/sh\n").expect("write");
    });
    assert!(matches!(error, ImageError::NotElf64 { .. }), "{error:?}");
    assert_mentions(&message, &["client.elf", "not a little-endian ELF64"]);
}

#[test]
fn program_that_is_not_aarch64() {
    let (error, message) = refused("not-aarch64", |dir, _, _| {
        let mut elf = pd(CLIENT_SETVARS);
        elf.machine = EM_X86_64;
        elf.write(&dir.join("client.elf"));
    });
    assert!(
        matches!(error, ImageError::NotAarch64 { machine: 62, .. }),
        "{error:?}"
    );
    assert_mentions(&message, &["client.elf", "not an AArch64 ELF"]);
}

#[test]
fn hypervisor_that_is_not_aarch64() {
    let (error, message) = refused("hypervisor-not-aarch64", |dir, _, _| {
        let mut elf = hypervisor();
        elf.machine = EM_X86_64;
        elf.write(&dir.join("hypervisor.elf"));
    });
    assert!(matches!(error, ImageError::NotAarch64 { .. }), "{error:?}");
    assert_mentions(&message, &["hypervisor.elf", "not an AArch64 ELF"]);
}

#[test]
fn program_that_is_not_a_static_executable() {
    let (error, message) = refused("not-exec", |dir, _, _| {
        let mut elf = pd(CLIENT_SETVARS);
        elf.e_type = ET_DYN;
        elf.write(&dir.join("client.elf"));
    });
    assert!(
        matches!(error, ImageError::NotExecutable { e_type: 3, .. }),
        "{error:?}"
    );
    assert_mentions(&message, &["not a static executable"]);
}

#[test]
fn hypervisor_linked_outside_its_range() {
    for vaddr in [0x4000_0000u64, 0x41FF_F000] {
        let (error, message) = refused("hypervisor-outside", |dir, _, _| {
            let mut elf = hypervisor();
            elf.segments[1].vaddr = vaddr;
            elf.write(&dir.join("hypervisor.elf"));
        });
        assert!(
            matches!(error, ImageError::HypervisorSegmentOutside { .. }),
            "{error:?}"
        );
        assert_mentions(&message, &["leaves the hypervisor load range"]);
    }
}

#[test]
fn hypervisor_without_boot_info_symbol() {
    let (error, message) = refused("hypervisor-no-symbol", |dir, _, _| {
        let mut elf = hypervisor();
        elf.symbols.clear();
        elf.write(&dir.join("hypervisor.elf"));
    });
    assert!(
        matches!(error, ImageError::SymbolMissing { .. }),
        "{error:?}"
    );
    assert_mentions(&message, &["FRAMESHIFT_BOOT_INFO", "not found"]);
}

#[test]
fn hypervisor_boot_info_symbol_in_bss() {
    let (error, message) = refused("hypervisor-bss-symbol", |dir, _, _| {
        let mut elf = hypervisor();
        elf.symbols[0].1 = 0x4010_3000;
        elf.write(&dir.join("hypervisor.elf"));
    });
    assert!(matches!(error, ImageError::SymbolInBss { .. }), "{error:?}");
    assert_mentions(&message, &["FRAMESHIFT_BOOT_INFO", ".bss", ".data"]);
}

#[test]
fn hypervisor_segments_overlapping_each_other() {
    let (error, message) = refused("hypervisor-overlap", |dir, _, _| {
        let mut elf = hypervisor();
        elf.segments[1].vaddr = 0x4010_1000;
        elf.symbols[0].1 = 0x4010_1010;
        elf.write(&dir.join("hypervisor.elf"));
    });
    assert!(
        matches!(error, ImageError::ElfSegmentsOverlap { .. }),
        "{error:?}"
    );
    assert_mentions(&message, &["0x40100000", "0x40101000", "overlap"]);
}

#[test]
fn program_segments_sharing_a_page() {
    let (error, message) = refused("pd-share-page", |dir, _, _| {
        let mut elf = pd(CLIENT_SETVARS);
        elf.segments[0].data.truncate(0x100);
        elf.segments[0].mem_size = 0x100;
        elf.segments.push(Segment {
            vaddr: 0x20_0800,
            data: vec![1; 8],
            mem_size: 8,
            flags: PF_R | PF_W,
        });
        elf.write(&dir.join("client.elf"));
    });
    assert!(
        matches!(
            error,
            ImageError::ElfSegmentsOverlap {
                first: 0x20_0000,
                second: 0x20_0800,
                ..
            }
        ),
        "{error:?}"
    );
    assert_mentions(&message, &["client.elf", "share a 4 KiB"]);
}

#[test]
fn map_overlapping_a_program_segment() {
    let (error, message) = refused("map-over-program", |_, _, system| {
        system.protection_domains[1].maps[1].vaddr = Ipa(0x20_0000);
    });
    assert!(
        matches!(error, ImageError::MappingsOverlap { .. }),
        "{error:?}"
    );
    assert_mentions(
        &message,
        &[
            "`client`",
            "program segment 0 at IPA 0x200000",
            "map of `blob`",
        ],
    );
}

#[test]
fn map_overlapping_the_stack() {
    let (error, message) = refused("map-over-stack", |_, _, system| {
        system.protection_domains[1].maps[1].vaddr = Ipa(0xFF_FFFF_E000);
    });
    assert!(
        matches!(error, ImageError::MappingsOverlap { .. }),
        "{error:?}"
    );
    assert_mentions(&message, &["stack at IPA", "map of `blob`"]);
}

#[test]
fn map_beyond_the_ipa_space() {
    let (error, message) = refused("map-beyond-ipa", |_, _, system| {
        system.protection_domains[1].maps[1].vaddr = Ipa(0x100_0000_0000);
    });
    assert!(
        matches!(error, ImageError::BeyondIpaSpace { .. }),
        "{error:?}"
    );
    assert_mentions(&message, &["`client`", "map of `blob`", "40-bit IPA space"]);
}

#[test]
fn map_misaligned_for_a_large_page_region() {
    let (error, message) = refused("map-misaligned", |_, _, system| {
        if let Some(vm) = &mut system.protection_domains[0].virtual_machine {
            vm.maps[0].vaddr = Ipa(0x4000_1000);
        }
    });
    assert!(
        matches!(error, ImageError::MapMisaligned { .. }),
        "{error:?}"
    );
    assert_mentions(&message, &["`guest`", "`guest_ram`", "0x40001000"]);
}

#[test]
fn map_without_perms() {
    let (error, message) = refused("map-no-perms", |_, _, system| {
        system.protection_domains[1].maps[0].perms = Default::default();
    });
    assert!(
        matches!(error, ImageError::MapWithoutRights { .. }),
        "{error:?}"
    );
    assert_mentions(&message, &["`client`", "`shared`", "empty perms"]);
}

#[test]
fn setvar_symbol_missing_from_the_elf() {
    let (error, message) = refused("setvar-missing", |_, _, system| {
        system.protection_domains[1].maps[0].setvar_vaddr = Some("not_there".to_string());
    });
    assert!(
        matches!(error, ImageError::SymbolMissing { .. }),
        "{error:?}"
    );
    assert_mentions(
        &message,
        &["client.elf", "`not_there`", "setvar_vaddr", "`shared`"],
    );
}

#[test]
fn region_paddr_setvar_missing_from_the_elf() {
    let (error, message) = refused("setvar-paddr-missing", |dir, _, _| {
        pd(&["shared_vaddr", "guest_ram_vaddr"]).write(&dir.join("vmm.elf"));
    });
    assert!(
        matches!(error, ImageError::SymbolMissing { .. }),
        "{error:?}"
    );
    assert_mentions(
        &message,
        &["vmm.elf", "`guest_ram_paddr`", "region_paddr=\"guest_ram\""],
    );
}

#[test]
fn setvar_symbol_too_small() {
    let (error, message) = refused("setvar-small", |dir, _, _| {
        let mut elf = pd(CLIENT_SETVARS);
        elf.symbols.last_mut().expect("setvar").2 = 4;
        elf.write(&dir.join("client.elf"));
    });
    assert!(
        matches!(
            error,
            ImageError::SymbolTooSmall {
                size: 4,
                need: 8,
                ..
            }
        ),
        "{error:?}"
    );
    assert_mentions(&message, &["`server_channel` is 4 bytes"]);
}

#[test]
fn setvar_on_a_vm_map() {
    let (error, message) = refused("setvar-vm", |_, _, system| {
        if let Some(vm) = &mut system.protection_domains[0].virtual_machine {
            vm.maps[0].setvar_vaddr = Some("guest_thing".to_string());
        }
    });
    assert!(matches!(error, ImageError::SetVarOnVm { .. }), "{error:?}");
    assert_mentions(&message, &["`guest`", "guest_thing"]);
}

#[test]
fn private_region_mapped_by_a_third_domain() {
    let (error, message) = refused("private-shared", |_, _, system| {
        system.protection_domains[1]
            .maps
            .push(map(GUEST_RAM, 0x8000_0000, R));
    });
    assert!(
        matches!(error, ImageError::PrivateRegionShared { .. }),
        "{error:?}"
    );
    assert_mentions(
        &message,
        &[
            "`guest_ram`",
            "protected virtual machine `guest`",
            "`client`",
        ],
    );
}

#[test]
fn private_region_mapped_twice_by_the_guest() {
    let (error, message) = refused("private-twice", |_, _, system| {
        if let Some(vm) = &mut system.protection_domains[0].virtual_machine {
            vm.maps.push(map(GUEST_RAM, 0x8000_0000, RW));
        }
    });
    assert!(
        matches!(error, ImageError::PrivateRegionShared { .. }),
        "{error:?}"
    );
    assert_mentions(&message, &["`guest_ram`"]);
}

#[test]
fn prefill_larger_than_its_region() {
    let (error, message) = refused("prefill-large", |dir, _, _| {
        std::fs::write(dir.join("blob.bin"), vec![7; 0x2001]).expect("write");
    });
    assert!(
        matches!(
            error,
            ImageError::PrefillTooLarge {
                len: 0x2001,
                size: 0x2000,
                ..
            }
        ),
        "{error:?}"
    );
    assert_mentions(&message, &["`blob`", "larger than the region"]);
}

#[test]
fn prefill_of_a_device_region() {
    let (error, message) = refused("prefill-device", |_, _, system| {
        system.memory_regions[GPIO].prefill_path = Some(PathBuf::from("blob.bin"));
    });
    assert!(
        matches!(error, ImageError::PrefillOnDevice { .. }),
        "{error:?}"
    );
    assert_mentions(&message, &["`gpio`", "cannot be prefilled"]);
}

#[test]
fn entry_point_outside_code() {
    let (error, message) = refused("entry-outside", |dir, _, _| {
        let mut elf = pd(CLIENT_SETVARS);
        elf.entry = PD_DATA;
        elf.write(&dir.join("client.elf"));
    });
    assert!(
        matches!(error, ImageError::EntryNotExecutable { .. }),
        "{error:?}"
    );
    assert_mentions(&message, &["entry point 0x201000"]);
}

#[test]
fn segment_without_rights() {
    let (error, message) = refused("segment-no-rights", |dir, _, _| {
        let mut elf = pd(CLIENT_SETVARS);
        elf.segments[1].flags = 0;
        elf.write(&dir.join("client.elf"));
    });
    assert!(
        matches!(error, ImageError::SegmentWithoutRights { .. }),
        "{error:?}"
    );
    assert_mentions(&message, &["none of the R, W, X flags"]);
}

#[test]
fn name_too_long() {
    let (error, message) = refused("long-name", |_, _, system| {
        system.protection_domains[1].name = "c".repeat(64);
    });
    assert!(matches!(error, ImageError::BadName { .. }), "{error:?}");
    assert_mentions(&message, &["64 bytes long", "at most 63 fit"]);
    let (_, message) = refused("longer-name", |_, _, system| {
        system.protection_domains[1].name = "c".repeat(65);
    });
    assert_mentions(
        &message,
        &["65 bytes long; at most 63 fit in a console prefix"],
    );
}

#[test]
fn names_that_would_forge_or_merge_console_prefixes() {
    // Issue 7, break 1: the builder applies frameshift_abi::domain_name::check to PDs and VMs.
    for (name, vm, reason) in [
        ("hypervisor", false, "reserved for the hypervisor"),
        ("Hypervisor", true, "reserved for the hypervisor"),
        ("a|b", false, "character '|' at position 1"),
        ("a b", true, "character ' ' at position 1"),
        ("g\u{e4}st", false, "byte 0xc3 at position 1"),
        ("bell\u{7}", false, "byte 0x07 at position 4"),
    ] {
        let (error, message) = refused("bad-name", |_, _, system| {
            if vm {
                if let Some(vm) = system.protection_domains[0].virtual_machine.as_mut() {
                    vm.name = name.to_string();
                }
            } else {
                system.protection_domains[1].name = name.to_string();
            }
        });
        assert!(matches!(error, ImageError::BadName { .. }), "{error:?}");
        assert_mentions(&message, &[reason]);
        // A control character reaches the terminal escaped.
        assert!(!message.contains('\u{7}'), "{message:?}");
    }
}

#[test]
fn more_irqs_than_the_hypervisor_routes() {
    let (error, message) = refused("too-many-irqs", |_, _, system| {
        let irqs = (0..65u64).map(|number| frameshift_build::sdf::model::Irq {
            irq: 100 + number,
            id: number % 62,
            trigger: frameshift_build::sdf::model::IrqTrigger::Edge,
        });
        system.protection_domains[0].irqs = irqs.collect();
    });
    assert!(
        matches!(error, ImageError::TooManyIrqs { count: 65 }),
        "{error:?}"
    );
    assert_mentions(&message, &["65 irqs", "at most 64"]);
}

#[test]
fn a_segment_running_past_the_address_space() {
    // Issue 7, also seen: a huge p_memsz was reported as "file size exceeds memory size".
    let (error, message) = refused("huge-segment", |dir, _, _| {
        let mut elf = pd(CLIENT_SETVARS);
        elf.segments[1].mem_size = u64::MAX - 0x1000;
        elf.write(&dir.join("client.elf"));
    });
    assert!(
        matches!(error, ImageError::SegmentTooLarge { .. }),
        "{error:?}"
    );
    assert_mentions(
        &message,
        &[
            "client.elf",
            "memory size of 0xffffffffffffefff bytes",
            "past the end",
        ],
    );
    assert!(!message.contains("file size exceeds"), "{message}");
}

#[test]
fn a_segment_whose_file_size_exceeds_its_memory_size() {
    let (error, message) = refused("filesz-over-memsz", |dir, _, _| {
        let mut elf = pd(CLIENT_SETVARS);
        elf.segments[1].mem_size = 1;
        elf.write(&dir.join("client.elf"));
    });
    assert!(matches!(error, ImageError::NotElf64 { .. }), "{error:?}");
    assert_mentions(&message, &["file size", "exceeds memory size 0x1"]);
}

#[test]
fn priority_above_254() {
    let (error, message) = refused("priority", |_, _, system| {
        system.protection_domains[1].priority = 255;
    });
    assert!(
        matches!(error, ImageError::BadPriority { priority: 255, .. }),
        "{error:?}"
    );
    assert_mentions(&message, &["`client`", "priority 255"]);
}

#[test]
fn channel_id_above_61_is_caught_by_the_boot_info_self_check() {
    let (error, message) = refused("channel-id", |_, _, system| {
        system.channels[0].ends[1].id = 62;
    });
    assert!(matches!(error, ImageError::BootInfoRefused(_)), "{error:?}");
    assert_mentions(&message, &["channel 0 field `id_b`"]);
}

#[test]
fn stripped_program_without_path_for_symbols() {
    let (error, message) = refused("stripped", |dir, _, _| {
        let mut elf = pd(CLIENT_SETVARS);
        elf.symbols.clear();
        elf.write(&dir.join("client.elf"));
    });
    assert!(
        matches!(error, ImageError::SymbolMissing { .. }),
        "{error:?}"
    );
    assert_mentions(&message, &["client.elf", "`blob_size`"]);
}

#[test]
fn id_setvar_missing_from_the_elf() {
    let (error, message) = refused("id-setvar-missing", |dir, _, _| {
        pd(&["blob_size", "blob_prefill_size"]).write(&dir.join("client.elf"));
    });
    assert!(
        matches!(error, ImageError::SymbolMissing { .. }),
        "{error:?}"
    );
    assert_mentions(&message, &["`server_channel`", "setvar id 2"]);
}

/// The fixture's guest, for edits.
fn guest(system: &mut SystemDescription) -> &mut frameshift_build::sdf::model::VirtualMachine {
    system.protection_domains[0]
        .virtual_machine
        .as_mut()
        .expect("the fixture's VMM has a guest")
}

#[test]
fn more_channels_than_the_hypervisor_holds() {
    // 257 channels between the VMM and the client, on ids the two PDs do not run out of in the
    // model (the id checks are the SDF parser's; the count is the builder's own).
    let (error, message) = refused("too-many-channels", |_, _, system| {
        let template = system.channels[0].clone();
        system.channels = (0..257).map(|_| template.clone()).collect();
    });
    assert!(
        matches!(error, ImageError::TooManyChannels { count: 257 }),
        "{error:?}"
    );
    assert_eq!(
        message,
        "the system has 257 channels; the hypervisor's channel table holds at most 256"
    );
}

#[test]
fn more_vcpus_than_a_vm_may_have_or_none() {
    for (vcpus, count) in [(vec![0, 1, 2, 3, 4], 5), (vec![], 0)] {
        let (error, message) = refused("too-many-vcpus", |_, _, system| {
            guest(system).vcpus = vcpus.clone();
        });
        assert!(
            matches!(&error, ImageError::VcpuCount { count: found, .. } if *found == count),
            "{error:?}"
        );
        assert_eq!(
            message,
            format!(
                "virtual machine `guest` has {count} vCPUs; it needs 1 to 4 (at most 4 is a \
                 Frameshift limit; Microkit allows more)"
            )
        );
    }
}

#[test]
fn vcpu_id_above_61_or_given_twice() {
    for (vcpus, id) in [
        (vec![0, 62], 62),
        (vec![3, 1, 3], 3),
        (vec![u64::MAX], u64::MAX),
    ] {
        let (error, message) = refused("bad-vcpu-id", |_, _, system| {
            guest(system).vcpus = vcpus.clone();
        });
        assert!(
            matches!(&error, ImageError::BadVcpuId { id: found, .. } if *found == id),
            "{error:?}"
        );
        assert_eq!(
            message,
            format!("virtual machine `guest`: vCPU id {id} is above 61 or given twice")
        );
    }
}

#[test]
fn conversion_mode_on_an_unprotected_vm() {
    use frameshift_build::sdf::model::Conversion;
    for conversion in [Conversion::History, Conversion::Split] {
        let (error, message) = refused("conversion-unprotected", |_, _, system| {
            let vm = guest(system);
            vm.protected = false;
            vm.conversion = Some(conversion);
        });
        assert!(
            matches!(error, ImageError::ConversionWithoutProtection { .. }),
            "{error:?}"
        );
        assert_eq!(
            message,
            format!(
                "virtual machine `guest` has conversion mode `{conversion}` but is not protected \
                 (only a protected VM converts memory)"
            )
        );
    }
}

#[test]
fn split_vm_map_in_the_alias_half_is_caught_by_the_boot_info_self_check() {
    use frameshift_build::sdf::model::Conversion;
    let (error, message) = refused("split-alias-half", |_, _, system| {
        let vm = guest(system);
        vm.conversion = Some(Conversion::Split);
        vm.maps[0].vaddr = Ipa(0x80_0000_0000);
    });
    assert!(matches!(error, ImageError::BootInfoRefused(_)), "{error:?}");
    assert_eq!(
        message,
        "the system breaks a rule the hypervisor enforces: boot info refused: mapping 6 field \
         `ipa`: a split-mode VM's mapping ends at 0x8000400000, in the shared alias half (from \
         0x8000000000)"
    );
}

#[test]
fn vcpu_id_shared_with_a_child_pd_is_caught_by_the_boot_info_self_check() {
    // The client becomes a child of the VMM with id 0, the guest's vCPU id.
    let (error, message) = refused("vcpu-child-clash", |_, _, system| {
        system.protection_domains[1].parent = Some(0);
        system.protection_domains[1].child_id = Some(0);
    });
    assert!(matches!(error, ImageError::BootInfoRefused(_)), "{error:?}");
    assert_eq!(
        message,
        "the system breaks a rule the hypervisor enforces: boot info refused: domain 2 field \
         `child_id`: child id 0 is already used by domain 1, a child of the same parent (child \
         PD ids and vCPU ids share one id space)"
    );
}

#[test]
fn prefill_file_changed_since_the_system_was_checked() {
    let (error, message) = refused("prefill-changed", |dir, _, _| {
        std::fs::write(dir.join("blob.bin"), b"shorter").expect("write");
    });
    assert!(
        matches!(
            error,
            ImageError::PrefillChanged {
                checked,
                len: 7,
                ..
            } if checked == PREFILL.len() as u64
        ),
        "{error:?}"
    );
    assert_eq!(
        message,
        format!(
            "memory region `blob`: prefill file is 0x7 bytes, but was {:#x} bytes when the \
             system description was checked (it changed; check again)",
            PREFILL.len()
        )
    );
}

#[test]
fn setvar_prefill_size_on_a_region_without_prefill() {
    let (error, message) = refused("prefill-size-no-prefill", |_, _, system| {
        system.protection_domains[1].maps[0].setvar_prefill_size = Some("blob_size".to_string());
        system.protection_domains[1].maps[1].setvar_size = None;
    });
    assert!(
        matches!(error, ImageError::BadReference { .. }),
        "{error:?}"
    );
    assert_eq!(
        message,
        "setvar_prefill_size `blob_size` of PD `client` (memory region `shared` has no prefill \
         file) refers to nothing"
    );
}
