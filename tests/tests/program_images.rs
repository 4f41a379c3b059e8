//! The PD program images are what the image builder and the hypervisor expect: AArch64 ET_EXEC
//! linked at 0x20_0000, loadable segments that share no 4 KiB page, and every symbol the builder
//! patches present, of the right size, in bytes the file actually holds.

use std::path::Path;

use object::elf::{EM_AARCH64, ET_EXEC, PT_LOAD};
use object::read::elf::{ElfFile64, FileHeader, ProgramHeader};
use object::{Endianness, Object, ObjectSection, ObjectSymbol, SectionKind};

use frameshift_tests::scenario;

/// Programs and the setvar symbols their systems patch.
const PROGRAMS: [(&str, &[&str]); 14] = [
    ("hello", &[]),
    ("ping", &[]),
    ("pong", &[]),
    ("client", &[]),
    ("server", &[]),
    ("attacker", &[]),
    ("survivor", &["secret_vaddr"]),
    ("spinner", &["ticks_vaddr"]),
    ("worker", &["ticks_vaddr"]),
    ("echo", &[]),
    ("panicker", &[]),
    ("wild", &[]),
    ("supervisor", &[]),
    ("vmm", &["guest_ram_vaddr"]),
];

const MICROKIT_SYMBOLS: [(&str, u64); 5] = [
    ("microkit_name", 64),
    ("microkit_passive", 1),
    ("microkit_notifications", 8),
    ("microkit_pps", 8),
    ("microkit_irqs", 8),
];

fn check_program(path: &Path, setvars: &[&str]) -> Result<(), String> {
    let bytes = std::fs::read(path).map_err(|error| format!("{}: {error}", path.display()))?;
    let elf = ElfFile64::<Endianness>::parse(&*bytes).map_err(|error| error.to_string())?;
    let header = elf.elf_header();
    let endian = elf.endian();
    if header.e_type(endian) != ET_EXEC || header.e_machine(endian) != EM_AARCH64 {
        return Err("not an AArch64 ET_EXEC".to_owned());
    }
    if elf.entry() != 0x20_0000 {
        return Err(format!("entry {:#x}, expected 0x200000", elf.entry()));
    }
    let mut pages: Vec<(u64, u64)> = elf
        .elf_program_headers()
        .iter()
        .filter(|segment| segment.p_type(endian) == PT_LOAD)
        .map(|segment| {
            let start = segment.p_vaddr(endian);
            let end = start + segment.p_memsz(endian);
            (start & !0xfff, (end + 0xfff) & !0xfff)
        })
        .collect();
    pages.sort();
    if pages.windows(2).any(|pair| pair[0].1 > pair[1].0) {
        return Err(format!("loadable segments share a page: {pages:x?}"));
    }
    let wanted = MICROKIT_SYMBOLS
        .iter()
        .copied()
        .chain(setvars.iter().map(|name| (*name, 8)));
    for (name, size) in wanted {
        let Some(symbol) = elf.symbols().find(|symbol| symbol.name() == Ok(name)) else {
            return Err(format!("symbol {name} missing"));
        };
        if symbol.size() != size {
            return Err(format!(
                "symbol {name} is {} bytes, expected {size}",
                symbol.size()
            ));
        }
        let section = symbol
            .section_index()
            .and_then(|index| elf.section_by_index(index).ok())
            .ok_or_else(|| format!("symbol {name} has no section"))?;
        // The builder patches file bytes: the symbol must not sit in .bss.
        if section.kind() == SectionKind::UninitializedData || section.file_range().is_none() {
            return Err(format!("symbol {name} is not backed by file bytes"));
        }
    }
    Ok(())
}

#[test]
fn every_pd_program_is_an_image_the_builder_can_patch() -> Result<(), String> {
    let firmware = scenario::firmware()?;
    let mut failures = Vec::new();
    for (program, setvars) in PROGRAMS {
        let path = firmware.programs_dir.join(format!("{program}.elf"));
        if let Err(error) = check_program(&path, setvars) {
            failures.push(format!("{program}: {error}"));
        }
    }
    if failures.is_empty() {
        Ok(())
    } else {
        Err(failures.join("\n"))
    }
}
