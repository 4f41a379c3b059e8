//! The pending end-to-end systems (tests/pending, issue 9) with the real firmware: each passes
//! `cargo xtask check`'s parse and `cargo xtask build`'s build, every protected guest gets its
//! conversion mode and vCPUs in the boot information, its flat image (`<guest>.bin`, built by
//! `cargo xtask` next to the PD programs) lands in the frames it owns from boot, and the real
//! protected_vmm.elf reads, at each patched symbol, the value the file gives it.
//!
//! The firmware is what `cargo xtask test` passes in, or is built here.
#![allow(
    clippy::expect_used,
    reason = "a test fails loudly on the first unexpected result"
)]

// The image tests' fixtures, shared with the build tool's own tests.
#[path = "../../tests/image_support/mod.rs"]
mod image_support;

use std::path::{Path, PathBuf};

use frameshift_abi::boot_info::{
    BootInfo, MappingDesc, DOMAIN_FLAG_PROTECTED, DOMAIN_FLAG_SPLIT, DOMAIN_KIND_VM,
    MAPPING_KIND_PROGRAM, MAPPING_KIND_REGION, MAPPING_KIND_WINDOW, MAPPING_STATE_NO_PAGE,
    MAPPING_STATE_OWNED,
};
use frameshift_build::image::{self, BuiltImage, ImageInputs};
use frameshift_build::sdf::model::{Conversion, SystemDescription};
use frameshift_xtask::firmware::{self, Firmware};
use frameshift_xtask::tasks::{build_system, search_paths};
use image_support::{aligned, loaded_bytes, scratch};
use object::{Object, ObjectSymbol};
use zerocopy::IntoBytes;

const PENDING: [&str; 4] = [
    "system.xml",
    "systems/protected_demo_history.xml",
    "systems/protected_demo_split.xml",
    "systems/protected_abi_check.xml",
];

fn firmware() -> Firmware {
    Firmware::from_env().unwrap_or_else(|| {
        firmware::build(&firmware::workspace_root()).expect("the firmware builds")
    })
}

fn pending(file: &str) -> PathBuf {
    firmware::workspace_root().join("tests/pending").join(file)
}

/// The `u64` the image loads at symbol `symbol` of `program`, the PD that is domain `domain`.
fn symbol_value(
    built: &BuiltImage,
    info: &BootInfo<'_>,
    program: &Path,
    domain: usize,
    symbol: &str,
) -> u64 {
    let bytes = std::fs::read(program).expect("the program");
    let elf = object::File::parse(&*bytes).expect("an ELF");
    let address = elf
        .symbols()
        .find(|candidate| candidate.name() == Ok(symbol))
        .unwrap_or_else(|| panic!("{}: no symbol `{symbol}`", program.display()))
        .address();
    let segment: &MappingDesc = info
        .domain_mappings(domain)
        .iter()
        .find(|m| m.kind == MAPPING_KIND_PROGRAM && m.ipa <= address && address < m.ipa + m.size)
        .expect("the symbol lies in a program segment");
    let pa = segment.pa + (address - segment.ipa);
    let loaded = loaded_bytes(&built.image, pa, 8).expect("the symbol is loaded from the file");
    u64::from_le_bytes(loaded.try_into().expect("8 bytes"))
}

fn check_guests(system: &SystemDescription, built: &BuiltImage, firmware: &Firmware, file: &str) {
    let words = aligned(built.boot_info());
    let info = BootInfo::parse(&words.as_bytes()[..built.boot_info_len]).expect("valid");
    let mut guests = 0;
    for (domain, desc) in info.domains().iter().enumerate() {
        if desc.kind != DOMAIN_KIND_VM {
            continue;
        }
        guests += 1;
        let vmm_domain = desc.parent as usize;
        let vmm = system
            .protection_domains
            .iter()
            .find(|pd| pd.name == info.domain_name(vmm_domain))
            .expect("the VMM");
        let vm = vmm.virtual_machine.as_ref().expect("its VM");
        let split = vm.conversion == Some(Conversion::Split);
        let flags = DOMAIN_FLAG_PROTECTED | if split { DOMAIN_FLAG_SPLIT } else { 0 };
        assert_eq!(desc.flags, flags, "{file}: {}", vm.name);
        let mut ids: Vec<u32> = vm.vcpus.iter().map(|&id| id as u32).collect();
        ids.sort_unstable();
        assert_eq!(desc.vcpus().collect::<Vec<_>>(), ids, "{file}");

        // The guest's flat image in its own frames, and nothing else there.
        let ram_region = &system.memory_regions[vm.maps[0].memory_region];
        let bin_path = firmware.programs_dir.join(
            ram_region
                .prefill_path
                .as_ref()
                .and_then(|p| p.file_name())
                .expect("prefilled"),
        );
        let bin = std::fs::read(&bin_path).expect("the guest's flat image");
        let [ram] = info.domain_mappings(domain) else {
            panic!("{file}: one guest mapping expected");
        };
        assert_eq!(
            (ram.kind, ram.state),
            (MAPPING_KIND_REGION, MAPPING_STATE_OWNED)
        );
        let in_ram: Vec<_> = built
            .segments
            .iter()
            .filter(|s| s.pa.0 < ram.pa + ram.size && ram.pa < s.pa.0 + s.mem_size)
            .collect();
        let [segment] = in_ram[..] else {
            panic!("{file}: one segment expected in the guest's RAM: {in_ram:#?}");
        };
        assert_eq!((segment.pa.0, segment.mem_size), (ram.pa, bin.len() as u64));
        assert_eq!(
            loaded_bytes(&built.image, ram.pa, bin.len()),
            Some(bin.clone())
        );
        let window = info
            .domain_mappings(vmm_domain)
            .iter()
            .find(|m| m.pa == ram.pa)
            .expect("the window");
        assert_eq!(
            (window.kind, window.state),
            (MAPPING_KIND_WINDOW, MAPPING_STATE_NO_PAGE)
        );

        // protected_vmm.elf's symbols.
        let program = firmware.programs_dir.join(&vmm.program_image);
        let value = |symbol: &str| symbol_value(built, &info, &program, vmm_domain, symbol);
        for map in &vmm.maps {
            let region = &system.memory_regions[map.memory_region];
            if let Some(symbol) = &map.setvar_vaddr {
                assert_eq!(value(symbol), map.vaddr.get(), "{file}: {symbol}");
            }
            if let Some(symbol) = &map.setvar_size {
                assert_eq!(value(symbol), region.size, "{file}: {symbol}");
            }
            if let Some(symbol) = &map.setvar_prefill_size {
                assert_eq!(value(symbol), bin.len() as u64, "{file}: {symbol}");
            }
        }
        assert!(
            !vmm.id_setvars.is_empty(),
            "{file}: the VMM learns its guest's vCPU id"
        );
        for setvar in &vmm.id_setvars {
            assert_eq!(
                value(&setvar.symbol),
                setvar.id,
                "{file}: {}",
                setvar.symbol
            );
        }
    }
    assert!(guests > 0, "{file}: protected guests expected");
}

#[test]
fn pending_systems_check_and_build_with_the_real_programs() {
    let firmware = firmware();
    for file in PENDING {
        let path = pending(file);
        let paths = search_paths(&path, &firmware.programs_dir);
        let system = frameshift_build::sdf::parse_file(&path, &paths)
            .unwrap_or_else(|error| panic!("{file}: {error}"));
        // What `cargo xtask build --system FILE` does after building the firmware.
        let out = scratch(&format!("pending-real-{}", file.replace('/', "-")));
        let written =
            build_system(&path, &firmware, &out).unwrap_or_else(|error| panic!("{file}: {error}"));
        assert!(written.image.is_file() && written.report.is_file());
        let inputs = ImageInputs::new(firmware.kernel().expect("a kernel").to_owned(), paths);
        let built = image::build(&system, &inputs).expect("the image builds");
        assert_eq!(
            std::fs::read(&written.image).expect("the image"),
            built.image
        );
        check_guests(&system, &built, &firmware, file);
    }
}
