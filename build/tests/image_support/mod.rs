//! Shared fixtures of the image tests: stand-in AArch64 ELFs written with `object::write`, and a
//! small system built in code (no XML parser needed).
#![allow(
    dead_code,
    reason = "each test binary uses a different subset of the fixtures"
)]
#![allow(
    unreachable_pub,
    reason = "a test-support module shared by several test binaries"
)]
#![allow(
    clippy::expect_used,
    reason = "fixture setup failing is a test failure"
)]

use std::path::{Path, PathBuf};

use frameshift_abi::addr::{Ipa, PhysAddr};
use frameshift_build::image::{ImageInputs, DEFAULT_RAM_SIZE};
use frameshift_build::sdf::model::{
    Channel, ChannelEnd, Conversion, IdSetVar, Irq, IrqTrigger, Map, MemoryRegion, Perms,
    ProtectionDomain, SetVar, SystemDescription, VirtualMachine,
};
use object::elf::{
    EM_AARCH64, ET_EXEC, PF_R, PF_W, PF_X, PT_LOAD, SHN_ABS, STB_GLOBAL, STT_OBJECT,
};
use object::write::elf::{FileHeader, ProgramHeader, Sym, Writer};
use object::Endianness;

/// One `PT_LOAD` segment of a stand-in ELF.
#[derive(Clone, Debug)]
pub struct Segment {
    pub vaddr: u64,
    pub data: Vec<u8>,
    pub mem_size: u64,
    pub flags: u32,
}

/// A stand-in static executable.
#[derive(Clone, Debug)]
pub struct StandInElf {
    pub machine: u16,
    pub e_type: u16,
    pub entry: u64,
    pub segments: Vec<Segment>,
    /// (name, address, size).
    pub symbols: Vec<(String, u64, u64)>,
}

impl StandInElf {
    /// The ELF file bytes: file header, program headers, segment data, `.symtab`, `.strtab`,
    /// `.shstrtab` and section headers.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut buffer = Vec::new();
        let mut writer = Writer::new(Endianness::Little, true, &mut buffer);
        writer.reserve_file_header();
        writer.reserve_program_headers(self.segments.len() as u32);
        let mut offsets = Vec::new();
        for segment in &self.segments {
            offsets.push(writer.reserve(segment.data.len(), 0x1000));
        }
        writer.reserve_null_section_index();
        let names: Vec<_> = self
            .symbols
            .iter()
            .map(|(name, _, _)| writer.add_string(name.as_bytes()))
            .collect();
        writer.reserve_null_symbol_index();
        for _ in &self.symbols {
            writer.reserve_symbol_index(None);
        }
        writer.reserve_symtab_section_index();
        writer.reserve_strtab_section_index();
        writer.reserve_shstrtab_section_index();
        writer.reserve_symtab();
        writer.reserve_strtab();
        writer.reserve_shstrtab();
        writer.reserve_section_headers();

        writer
            .write_file_header(&FileHeader {
                os_abi: 0,
                abi_version: 0,
                e_type: self.e_type,
                e_machine: self.machine,
                e_entry: self.entry,
                e_flags: 0,
            })
            .expect("file header");
        writer.write_align_program_headers();
        for (segment, &offset) in self.segments.iter().zip(&offsets) {
            writer.write_program_header(&ProgramHeader {
                p_type: PT_LOAD,
                p_flags: segment.flags,
                p_offset: offset as u64,
                p_vaddr: segment.vaddr,
                p_paddr: segment.vaddr,
                p_filesz: segment.data.len() as u64,
                p_memsz: segment.mem_size,
                p_align: 0x1000,
            });
        }
        for (segment, &offset) in self.segments.iter().zip(&offsets) {
            writer.pad_until(offset);
            writer.write(&segment.data);
        }
        writer.write_null_symbol();
        for ((_, address, size), name) in self.symbols.iter().zip(&names) {
            writer.write_symbol(&Sym {
                name: Some(*name),
                section: None,
                st_info: (STB_GLOBAL << 4) | STT_OBJECT,
                st_other: 0,
                st_shndx: SHN_ABS,
                st_value: *address,
                st_size: *size,
            });
        }
        writer.write_strtab();
        writer.write_shstrtab();
        writer.write_null_section_header();
        writer.write_symtab_section_header(1);
        writer.write_strtab_section_header();
        writer.write_shstrtab_section_header();
        buffer
    }

    pub fn write(&self, path: &Path) -> PathBuf {
        std::fs::write(path, self.to_bytes()).expect("write stand-in ELF");
        path.to_path_buf()
    }
}

/// Where the stand-in hypervisor keeps `FRAMESHIFT_BOOT_INFO`.
pub const HYPERVISOR_BOOT_INFO_SYMBOL_AT: u64 = 0x4010_2010;
/// One past the stand-in hypervisor's last segment byte (its `.bss`).
pub const HYPERVISOR_END: u64 = 0x4010_5800;

/// A stand-in EL2 kernel: code at 0x4010_0000, data + bss after it.
pub fn hypervisor() -> StandInElf {
    StandInElf {
        machine: EM_AARCH64,
        e_type: ET_EXEC,
        entry: 0x4010_0000,
        segments: vec![
            Segment {
                vaddr: 0x4010_0000,
                data: (0..0x1800u32).map(|i| (i % 251) as u8).collect(),
                mem_size: 0x1800,
                flags: PF_R | PF_X,
            },
            Segment {
                vaddr: 0x4010_2000,
                data: vec![0xAA; 0x100],
                mem_size: HYPERVISOR_END - 0x4010_2000,
                flags: PF_R | PF_W,
            },
        ],
        symbols: vec![(
            "FRAMESHIFT_BOOT_INFO".to_string(),
            HYPERVISOR_BOOT_INFO_SYMBOL_AT,
            16,
        )],
    }
}

/// Data-segment base of every stand-in PD.
pub const PD_DATA: u64 = 0x20_1000;
/// Address of each patched symbol in a stand-in PD.
pub const PD_SYMBOLS: [(&str, u64, u64); 5] = [
    ("microkit_name", PD_DATA, 64),
    ("microkit_notifications", PD_DATA + 0x40, 8),
    ("microkit_pps", PD_DATA + 0x48, 8),
    ("microkit_irqs", PD_DATA + 0x50, 8),
    ("microkit_passive", PD_DATA + 0x58, 1),
];

/// A stand-in PD: code at 0x20_0000, data at [`PD_DATA`] holding the Microkit runtime symbols
/// and then `setvars` (8 bytes each from `PD_DATA + 0x80`, file-backed up to `PD_DATA + 0x100`).
pub fn pd(setvars: &[&str]) -> StandInElf {
    let mut symbols: Vec<(String, u64, u64)> = PD_SYMBOLS
        .iter()
        .map(|&(name, address, size)| (name.to_string(), address, size))
        .collect();
    for (number, name) in setvars.iter().enumerate() {
        symbols.push((name.to_string(), setvar_address(number), 8));
    }
    StandInElf {
        machine: EM_AARCH64,
        e_type: ET_EXEC,
        entry: 0x20_0000,
        segments: vec![
            Segment {
                vaddr: 0x20_0000,
                data: vec![0xD5; 0x800],
                mem_size: 0x800,
                flags: PF_R | PF_X,
            },
            Segment {
                vaddr: PD_DATA,
                data: vec![0x11; 0x100],
                mem_size: 0x2000,
                flags: PF_R | PF_W,
            },
        ],
        symbols,
    }
}

/// Address of the `number`th setvar symbol of a stand-in PD.
pub fn setvar_address(number: usize) -> u64 {
    PD_DATA + 0x80 + 8 * number as u64
}

/// A fresh scratch directory for one test.
pub fn scratch(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join("image-tests")
        .join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch directory");
    dir
}

/// Writes the stand-in ELFs and the prefill file of [`system`] into `dir`; returns the inputs.
pub fn write_fixtures(dir: &Path) -> ImageInputs {
    let hypervisor_path = hypervisor().write(&dir.join("hypervisor.elf"));
    pd(&["shared_vaddr", "guest_ram_vaddr", "guest_ram_paddr"]).write(&dir.join("vmm.elf"));
    pd(CLIENT_SETVARS).write(&dir.join("client.elf"));
    std::fs::write(dir.join("blob.bin"), PREFILL).expect("prefill file");
    ImageInputs {
        hypervisor_elf: hypervisor_path,
        search_paths: vec![dir.to_path_buf()],
        ram_size: DEFAULT_RAM_SIZE,
    }
}

/// The setvar symbols of the client PD, in [`setvar_address`] order.
pub const CLIENT_SETVARS: &[&str] = &["blob_size", "blob_prefill_size", "server_channel"];

/// Contents of the prefilled region.
pub const PREFILL: &[u8] = b"prefilled bytes of the blob region";

pub const RW: Perms = Perms {
    read: true,
    write: true,
    execute: false,
};
pub const R: Perms = Perms {
    read: true,
    write: false,
    execute: false,
};
pub const RWX: Perms = Perms {
    read: true,
    write: true,
    execute: true,
};

pub fn map(memory_region: usize, vaddr: u64, perms: Perms) -> Map {
    Map {
        memory_region,
        vaddr: Ipa(vaddr),
        perms,
        cached: true,
        setvar_vaddr: None,
        setvar_size: None,
        setvar_prefill_size: None,
    }
}

pub fn region(name: &str, size: u64) -> MemoryRegion {
    MemoryRegion {
        name: name.to_string(),
        size,
        page_size: 0x1000,
        phys_addr: None,
        prefill_path: None,
        prefill_len: None,
    }
}

pub fn protection_domain(name: &str, priority: u8, program: &str) -> ProtectionDomain {
    ProtectionDomain {
        name: name.to_string(),
        parent: None,
        child_id: None,
        priority,
        budget: 1000,
        period: 1000,
        passive: false,
        stack_size: 0x2000,
        program_image: PathBuf::from(program),
        maps: Vec::new(),
        irqs: Vec::new(),
        setvars: Vec::new(),
        virtual_machine: None,
        fpu: true,
        program_image_for_symbols: None,
        id_setvars: Vec::new(),
    }
}

/// Region indices of [`system`].
pub const SHARED: usize = 0;
pub const GUEST_RAM: usize = 1;
pub const GPIO: usize = 2;
pub const BLOB: usize = 3;

/// IPAs used by [`system`].
pub const SHARED_VADDR: u64 = 0x100_0000;
pub const WINDOW_VADDR: u64 = 0x2000_0000;
pub const GUEST_RAM_IPA: u64 = 0x4000_0000;
pub const GPIO_VADDR: u64 = 0x300_0000;
pub const BLOB_VADDR: u64 = 0x400_0000;
/// The PL061 GPIO of QEMU virt: a device a domain may map (it cannot DMA).
pub const GPIO_PA: u64 = 0x0903_0000;

/// A VMM PD with a protected guest, and a passive client PD sharing a buffer with it.
pub fn system() -> SystemDescription {
    let mut guest_ram = region("guest_ram", 0x40_0000);
    guest_ram.page_size = 0x20_0000;
    let mut gpio = region("gpio", 0x1000);
    gpio.phys_addr = Some(PhysAddr(GPIO_PA));
    let mut blob = region("blob", 0x2000);
    blob.prefill_path = Some(PathBuf::from("blob.bin"));
    blob.prefill_len = Some(PREFILL.len() as u64);

    let mut vmm = protection_domain("vmm", 100, "vmm.elf");
    let mut shared_map = map(SHARED, SHARED_VADDR, RW);
    shared_map.setvar_vaddr = Some("shared_vaddr".to_string());
    let mut window_map = map(GUEST_RAM, WINDOW_VADDR, RW);
    window_map.setvar_vaddr = Some("guest_ram_vaddr".to_string());
    let mut gpio_map = map(GPIO, GPIO_VADDR, RW);
    gpio_map.cached = false;
    vmm.maps = vec![shared_map, window_map, gpio_map];
    vmm.setvars = vec![SetVar {
        symbol: "guest_ram_paddr".to_string(),
        region_paddr: GUEST_RAM,
    }];
    vmm.irqs = vec![Irq {
        irq: 79,
        id: 5,
        trigger: IrqTrigger::Level,
    }];
    vmm.virtual_machine = Some(VirtualMachine {
        name: "guest".to_string(),
        priority: 90,
        budget: 1000,
        period: 1000,
        vcpus: vec![0],
        maps: vec![map(GUEST_RAM, GUEST_RAM_IPA, RWX)],
        protected: true,
        conversion: Some(Conversion::History),
    });

    let mut client = protection_domain("client", 50, "client.elf");
    client.passive = true;
    let mut blob_map = map(BLOB, BLOB_VADDR, R);
    blob_map.setvar_size = Some("blob_size".to_string());
    blob_map.setvar_prefill_size = Some("blob_prefill_size".to_string());
    client.id_setvars = vec![IdSetVar {
        symbol: "server_channel".to_string(),
        id: 2,
    }];
    client.maps = vec![map(SHARED, SHARED_VADDR, R), blob_map];

    SystemDescription {
        protection_domains: vec![vmm, client],
        memory_regions: vec![region("shared", 0x1000), guest_ram, gpio, blob],
        channels: vec![Channel {
            ends: [
                ChannelEnd {
                    pd: 0,
                    id: 1,
                    notify: true,
                    pp: false,
                },
                ChannelEnd {
                    pd: 1,
                    id: 2,
                    notify: true,
                    pp: true,
                },
            ],
        }],
        warnings: Vec::new(),
    }
}

/// Copies `bytes` into 8-byte aligned storage (the boot-info reader requires it).
pub fn aligned(bytes: &[u8]) -> Vec<u64> {
    let mut words = vec![0u64; bytes.len().div_ceil(8)];
    zerocopy::IntoBytes::as_mut_bytes(words.as_mut_slice())[..bytes.len()].copy_from_slice(bytes);
    words
}

/// The bytes an image loads at `[pa, pa + len)` (zero where only `p_memsz` covers it), or
/// `None` if no single `PT_LOAD` segment covers the range.
pub fn loaded_bytes(image: &[u8], pa: u64, len: usize) -> Option<Vec<u8>> {
    use object::elf::PT_LOAD;
    use object::read::elf::{ElfFile64, ProgramHeader as _};
    let file = ElfFile64::<Endianness>::parse(image).expect("image is ELF64");
    let endian = file.endian();
    let header = file.elf_program_headers().iter().find(|header| {
        let start = header.p_paddr(endian);
        header.p_type(endian) == PT_LOAD
            && pa >= start
            && pa + len as u64 <= start + header.p_memsz(endian)
    })?;
    let data = header.data(endian, image).expect("segment data");
    let offset = (pa - header.p_paddr(endian)) as usize;
    Some(
        (0..len)
            .map(|index| data.get(offset + index).copied().unwrap_or(0))
            .collect(),
    )
}
