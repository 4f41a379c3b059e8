//! Protected guests in the image, from system files like the pending end-to-end systems
//! (tests/pending): the guest's flat image lands in the frames the guest owns from boot and
//! nowhere else, the VMM's read-only copy lands in its own region, and the VMM's symbols
//! (`setvar_vaddr`, `setvar_size`, `setvar_prefill_size`, `setvar_id` on `<vcpu>` and on
//! channel ends) are patched with the values the file says. The programs are stand-ins, so the
//! test needs no firmware; `pending_systems.rs` builds the same files with the real programs.
#![allow(
    clippy::expect_used,
    reason = "a test fails loudly on the first unexpected result"
)]

mod image_support;

use std::path::{Path, PathBuf};

use frameshift_abi::boot_info::{
    BootInfo, DomainDesc, MappingDesc, DOMAIN_FLAG_PROTECTED, DOMAIN_FLAG_SPLIT, DOMAIN_KIND_PD,
    DOMAIN_KIND_VM, MAPPING_KIND_PROGRAM, MAPPING_KIND_REGION, MAPPING_KIND_WINDOW,
    MAPPING_STATE_NO_PAGE, MAPPING_STATE_OWNED, RIGHT_READ,
};
use frameshift_build::image::{build, BuiltImage, ImageInputs, DEFAULT_RAM_SIZE};
use frameshift_build::sdf::{parse_bytes, parse_file, SystemDescription};
use image_support::*;
use zerocopy::IntoBytes;

/// The symbols the pending systems patch into protected_vmm.elf, in [`setvar_address`] order.
const VMM_SETVARS: [&str; 7] = [
    "guest_ram_vaddr",
    "guest_ram_size",
    "guest_image_vaddr",
    "guest_image_size",
    "guest_vcpu_id",
    "vmm_done_channel",
    "vmm_start_channel",
];

/// A stand-in flat guest image: not a multiple of a page, and no zero byte, so that a byte
/// loaded short or one too many shows.
fn guest_image() -> Vec<u8> {
    (0..0x2345u32).map(|i| (i % 255) as u8 + 1).collect()
}

/// Writes the stand-in hypervisor, protected_vmm.elf and the guest images into `dir`.
fn write_stand_ins(dir: &Path) -> ImageInputs {
    let hypervisor = hypervisor().write(&dir.join("hypervisor.elf"));
    pd(&VMM_SETVARS).write(&dir.join("protected_vmm.elf"));
    for guest in ["demo_guest.bin", "abi_check.bin"] {
        std::fs::write(dir.join(guest), guest_image()).expect("guest image");
    }
    ImageInputs {
        hypervisor_elf: hypervisor,
        search_paths: vec![dir.to_path_buf()],
        ram_size: DEFAULT_RAM_SIZE,
    }
}

/// An image with its boot information copied to aligned storage.
struct Built {
    image: BuiltImage,
    words: Vec<u64>,
}

impl Built {
    fn info(&self) -> BootInfo<'_> {
        BootInfo::parse(&self.words.as_bytes()[..self.image.boot_info_len]).expect("valid")
    }

    /// The `u64` the image loads for setvar symbol `symbol` of the PD that is domain `domain`.
    fn setvar(&self, domain: usize, symbol: &str) -> u64 {
        let number = VMM_SETVARS
            .iter()
            .position(|name| *name == symbol)
            .expect("a VMM setvar");
        let data = mapping(self.info().domain_mappings(domain), |m| {
            m.kind == MAPPING_KIND_PROGRAM && m.ipa == PD_DATA
        })
        .pa;
        let pa = data + (setvar_address(number) - PD_DATA);
        let bytes = loaded_bytes(&self.image.image, pa, 8).expect("the symbol is loaded");
        u64::from_le_bytes(bytes.try_into().expect("8 bytes"))
    }
}

fn build_system(system: &SystemDescription, inputs: &ImageInputs) -> Built {
    let image = build(system, inputs).expect("the system builds");
    let words = aligned(image.boot_info());
    Built { image, words }
}

fn mapping(mappings: &[MappingDesc], matches: impl Fn(&MappingDesc) -> bool) -> MappingDesc {
    *mappings
        .iter()
        .find(|m| matches(m))
        .unwrap_or_else(|| panic!("no such mapping in {mappings:#?}"))
}

/// Checks every protected guest of `system` (built as `built`) and its VMM: where the image
/// bytes land, the mappings, the boot-info record and the VMM's patched symbols.
fn check_protected_guests(system: &SystemDescription, built: &Built) {
    let info = built.info();
    let bin = guest_image();
    let mut guests = 0;
    for (domain_index, desc) in info.domains().iter().enumerate() {
        if desc.kind != DOMAIN_KIND_VM {
            continue;
        }
        guests += 1;
        let vmm_index = desc.parent as usize;
        let vmm = system
            .protection_domains
            .iter()
            .find(|pd| pd.name == info.domain_name(vmm_index))
            .expect("the VMM in the model");
        let vm = vmm.virtual_machine.as_ref().expect("the VM in the model");
        check_vm_record(desc, vm);

        // The guest's RAM: owned by the guest, prefilled with exactly the flat image, and
        // reachable by the VMM only through its window.
        let ram_region = vm.maps[0].memory_region;
        let [ram] = info.domain_mappings(domain_index) else {
            panic!("one guest mapping expected");
        };
        assert_eq!(
            (ram.kind, ram.state),
            (MAPPING_KIND_REGION, MAPPING_STATE_OWNED)
        );
        assert_eq!(ram.region as usize, ram_region);
        check_only_the_prefill_lands_in(built, ram, &bin);
        let window = mapping(info.domain_mappings(vmm_index), |m| m.pa == ram.pa);
        assert_eq!(
            (window.kind, window.state, window.size),
            (MAPPING_KIND_WINDOW, MAPPING_STATE_NO_PAGE, ram.size)
        );

        // The VMM's clean copy: its own read-only region, holding the same bytes.
        let image_region = vmm
            .maps
            .iter()
            .find(|map| map.setvar_prefill_size.is_some())
            .expect("the VMM maps the guest image")
            .memory_region;
        let copy = mapping(info.domain_mappings(vmm_index), |m| {
            m.region as usize == image_region
        });
        assert_eq!(
            (copy.kind, copy.state, copy.rights),
            (MAPPING_KIND_REGION, MAPPING_STATE_OWNED, RIGHT_READ)
        );
        assert_ne!(copy.pa, ram.pa);
        check_only_the_prefill_lands_in(built, &copy, &bin);

        // The VMM's symbols, as the file sets them.
        let window_map = &vmm.maps[0];
        assert_eq!(window_map.memory_region, ram_region);
        assert_eq!(
            built.setvar(vmm_index, "guest_ram_vaddr"),
            window_map.vaddr.get()
        );
        assert_eq!(built.setvar(vmm_index, "guest_ram_vaddr"), window.ipa);
        assert_eq!(built.setvar(vmm_index, "guest_ram_size"), ram.size);
        assert_eq!(built.setvar(vmm_index, "guest_image_vaddr"), copy.ipa);
        assert_eq!(
            built.setvar(vmm_index, "guest_image_size"),
            bin.len() as u64
        );
        for setvar in &vmm.id_setvars {
            assert_eq!(
                built.setvar(vmm_index, &setvar.symbol),
                setvar.id,
                "{}",
                setvar.symbol
            );
        }
    }
    assert!(guests > 0, "the system has protected guests");
}

/// The VM's boot-info record says what the model says.
fn check_vm_record(desc: &DomainDesc, vm: &frameshift_build::sdf::model::VirtualMachine) {
    use frameshift_build::sdf::model::Conversion;
    let split = vm.conversion == Some(Conversion::Split);
    assert!(vm.protected);
    assert_eq!(
        desc.flags,
        DOMAIN_FLAG_PROTECTED | if split { DOMAIN_FLAG_SPLIT } else { 0 },
        "{}",
        vm.name
    );
    let mut ids: Vec<u32> = vm.vcpus.iter().map(|&id| id as u32).collect();
    ids.sort_unstable();
    assert_eq!(desc.vcpus().collect::<Vec<_>>(), ids);
    assert_eq!(Some(&desc.child_id), ids.first());
}

/// Of all the image's bytes, only `bin` lands in the frames of `mapping`: one segment, at the
/// first frame, exactly `bin` long; the rest of the region is left to QEMU's zeroed RAM.
fn check_only_the_prefill_lands_in(built: &Built, mapping: &MappingDesc, bin: &[u8]) {
    let (start, end) = (mapping.pa, mapping.pa + mapping.size);
    let inside: Vec<_> = built
        .image
        .segments
        .iter()
        .filter(|segment| segment.pa.0 < end && start < segment.pa.0 + segment.mem_size)
        .collect();
    let [segment] = inside[..] else {
        panic!("one segment expected in [{start:#x}, {end:#x}): {inside:#?}");
    };
    assert_eq!(segment.pa.0, start);
    assert_eq!(
        (segment.file_size, segment.mem_size),
        (bin.len() as u64, bin.len() as u64)
    );
    assert!(
        segment.label.starts_with("prefill of memory region"),
        "{}",
        segment.label
    );
    let loaded = loaded_bytes(&built.image.image, start, bin.len()).expect("loaded");
    assert_eq!(loaded, bin);
    assert_eq!(
        loaded_bytes(&built.image.image, start + bin.len() as u64, 1),
        None,
        "no byte past the image is loaded into the guest's frames"
    );
}

fn pending(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/pending")
        .join(path)
}

#[test]
fn every_pending_system_builds_with_its_guest_in_guest_owned_frames() {
    for file in [
        "system.xml",
        "systems/protected_demo_history.xml",
        "systems/protected_demo_split.xml",
        "systems/protected_abi_check.xml",
    ] {
        let dir = scratch(&format!("pending-{}", file.replace('/', "-")));
        let inputs = write_stand_ins(&dir);
        let system = parse_file(&pending(file), &inputs.search_paths)
            .unwrap_or_else(|error| panic!("{file}: {error}"));
        let built = build_system(&system, &inputs);
        check_protected_guests(&system, &built);
    }
}

#[test]
fn vcpu_and_channel_setvar_ids_patch_the_vmm() {
    // The default pending system's shape, with ids that differ from each other and from 0.
    let xml = r#"<system>
    <memory_region name="history_ram" size="0x200000" page_size="0x200000" prefill_path="demo_guest.bin" />
    <memory_region name="history_image" prefill_path="demo_guest.bin" />
    <memory_region name="split_ram" size="0x400000" page_size="0x200000" prefill_path="demo_guest.bin" />
    <memory_region name="split_image" prefill_path="demo_guest.bin" />
    <protection_domain name="vmm_history" priority="100">
        <program_image path="protected_vmm.elf" />
        <map mr="history_ram" vaddr="0x20000000" perms="rw" setvar_vaddr="guest_ram_vaddr" setvar_size="guest_ram_size" />
        <map mr="history_image" vaddr="0x30000000" perms="r" setvar_vaddr="guest_image_vaddr" setvar_prefill_size="guest_image_size" />
        <virtual_machine name="guest_history" priority="50" protected="true" conversion="history">
            <vcpu id="5" setvar_id="guest_vcpu_id" />
            <vcpu id="2" />
            <map mr="history_ram" vaddr="0x40000000" perms="rwx" />
        </virtual_machine>
    </protection_domain>
    <protection_domain name="vmm_split" priority="100">
        <program_image path="protected_vmm.elf" />
        <map mr="split_ram" vaddr="0x28000000" perms="rw" setvar_vaddr="guest_ram_vaddr" setvar_size="guest_ram_size" />
        <map mr="split_image" vaddr="0x38000000" perms="r" setvar_vaddr="guest_image_vaddr" setvar_prefill_size="guest_image_size" />
        <virtual_machine name="guest_split" priority="50" protected="true" conversion="split">
            <vcpu id="3" />
            <vcpu id="9" setvar_id="guest_vcpu_id" />
            <map mr="split_ram" vaddr="0x7fffc00000" perms="rwx" />
        </virtual_machine>
    </protection_domain>
    <channel>
        <end pd="vmm_history" id="7" notify="true" setvar_id="vmm_done_channel" />
        <end pd="vmm_split" id="11" notify="false" setvar_id="vmm_start_channel" />
    </channel>
</system>
"#;
    let dir = scratch("setvar-ids");
    let inputs = write_stand_ins(&dir);
    let system =
        parse_bytes("ids.xml", xml.as_bytes(), &inputs.search_paths).expect("the file is valid");
    let built = build_system(&system, &inputs);
    check_protected_guests(&system, &built);

    let info = built.info();
    let names: Vec<&str> = (0..4).map(|d| info.domain_name(d)).collect();
    assert_eq!(
        names,
        ["vmm_history", "guest_history", "vmm_split", "guest_split"]
    );
    assert_eq!(info.domains()[0].kind, DOMAIN_KIND_PD);
    assert_eq!(built.setvar(0, "guest_vcpu_id"), 5);
    assert_eq!(built.setvar(0, "vmm_done_channel"), 7);
    assert_eq!(built.setvar(2, "guest_vcpu_id"), 9);
    assert_eq!(built.setvar(2, "vmm_start_channel"), 11);
    assert_eq!(built.setvar(2, "guest_ram_vaddr"), 0x2800_0000);
    assert_eq!(built.setvar(2, "guest_ram_size"), 0x40_0000);
    assert_eq!(built.setvar(2, "guest_image_vaddr"), 0x3800_0000);
    assert_eq!(
        built.setvar(2, "guest_image_size"),
        guest_image().len() as u64
    );
    // A symbol no setvar names keeps its linked bytes.
    assert_eq!(built.setvar(0, "vmm_start_channel"), 0x1111_1111_1111_1111);
    assert_eq!(built.setvar(2, "vmm_done_channel"), 0x1111_1111_1111_1111);

    let [_, history, _, split] = info.domains() else {
        panic!("four domains");
    };
    assert_eq!((history.vcpu_ids, history.child_id), (1 << 5 | 1 << 2, 2));
    assert_eq!(history.flags, DOMAIN_FLAG_PROTECTED);
    assert_eq!((split.vcpu_ids, split.child_id), (1 << 3 | 1 << 9, 3));
    assert_eq!(split.flags, DOMAIN_FLAG_PROTECTED | DOMAIN_FLAG_SPLIT);
    // The split guest's RAM ends exactly at IPA bit 39.
    let split_ram = info.domain_mappings(3)[0];
    assert_eq!(split_ram.ipa + split_ram.size, 1 << 39);
}
