//! Why an image could not be built. Every message names the file, domain, region or symbol at
//! fault: the builder's job is to turn a bad system into a build error, never a boot surprise.

use std::fmt;
use std::io;
use std::path::PathBuf;

use frameshift_abi::boot_info::{BootInfoError, MAX_CHANNELS, MAX_IRQS, MAX_VCPUS, MAX_VCPU_ID};

use crate::sdf::devices::{self, Device};

use super::address::{Ipa, PhysAddr};

/// A build error.
#[derive(Debug)]
#[non_exhaustive]
pub enum ImageError {
    /// `ram_size` is not a multiple of 2 MiB larger than the hypervisor's 32 MiB.
    InvalidRamSize {
        /// The requested size.
        ram_size: u64,
    },
    /// A file could not be read or written.
    Io {
        /// The file.
        path: PathBuf,
        /// What it is (e.g. "hypervisor ELF").
        what: &'static str,
        /// The error.
        source: io::Error,
    },
    /// A program image or prefill file named in system.xml is in none of the search paths.
    FileNotFound {
        /// The path from system.xml.
        path: PathBuf,
        /// Who needs it (e.g. "program image of PD `vmm`").
        needed_by: String,
        /// The directories searched.
        searched: Vec<PathBuf>,
    },
    /// The file is not a little-endian ELF64 file.
    NotElf64 {
        /// The file.
        path: PathBuf,
        /// The parser's complaint.
        reason: String,
    },
    /// The ELF is not for AArch64.
    NotAarch64 {
        /// The file.
        path: PathBuf,
        /// Its `e_machine`.
        machine: u16,
    },
    /// The ELF is not a static executable (`ET_EXEC`).
    NotExecutable {
        /// The file.
        path: PathBuf,
        /// Its `e_type`.
        e_type: u16,
    },
    /// A hypervisor segment lies outside `[0x4010_0000, 0x4200_0000)`.
    HypervisorSegmentOutside {
        /// The file.
        path: PathBuf,
        /// Segment start.
        start: PhysAddr,
        /// Segment end (exclusive).
        end: PhysAddr,
    },
    /// A hypervisor segment whose virtual and physical addresses differ (the EL2 kernel runs
    /// identity mapped).
    HypervisorNotIdentity {
        /// The file.
        path: PathBuf,
        /// `p_vaddr`.
        vaddr: u64,
        /// `p_paddr`.
        paddr: u64,
    },
    /// The hypervisor ELF has no loadable segment.
    NoSegments {
        /// The file.
        path: PathBuf,
    },
    /// Two loadable segments of one ELF overlap, or share a 4 KiB page.
    ElfSegmentsOverlap {
        /// The file.
        path: PathBuf,
        /// First segment start.
        first: u64,
        /// Second segment start.
        second: u64,
    },
    /// A loadable segment whose memory size runs past the end of the 64-bit address space.
    SegmentTooLarge {
        /// The file.
        path: PathBuf,
        /// Segment start.
        vaddr: u64,
        /// `p_memsz`.
        mem_size: u64,
    },
    /// A PD segment with no R, W or X flag.
    SegmentWithoutRights {
        /// The file.
        path: PathBuf,
        /// Segment start.
        vaddr: u64,
    },
    /// The ELF entry point is not inside an executable segment.
    EntryNotExecutable {
        /// The file.
        path: PathBuf,
        /// `e_entry`.
        entry: u64,
    },
    /// A symbol the build must patch is not in the ELF.
    SymbolMissing {
        /// The file.
        path: PathBuf,
        /// The symbol.
        symbol: String,
        /// Why it is needed (e.g. "setvar_vaddr of map `buffer`").
        needed_by: String,
    },
    /// A symbol is smaller than the value patched into it.
    SymbolTooSmall {
        /// The file.
        path: PathBuf,
        /// The symbol.
        symbol: String,
        /// Its `st_size`.
        size: u64,
        /// Bytes the value needs.
        need: u64,
    },
    /// A symbol does not lie inside a loadable segment, so patching it would change nothing.
    SymbolOutsideSegments {
        /// The file.
        path: PathBuf,
        /// The symbol.
        symbol: String,
        /// Its address.
        address: u64,
    },
    /// A symbol to patch lies in `.bss` (past the segment's file bytes).
    SymbolInBss {
        /// The file.
        path: PathBuf,
        /// The symbol.
        symbol: String,
        /// Its address.
        address: u64,
    },
    /// The convertible range has no room left.
    OutOfMemory {
        /// What was being allocated.
        what: String,
        /// Bytes asked for.
        size: u64,
        /// Alignment asked for.
        align: u64,
        /// Bytes left after the last allocation.
        free: u64,
    },
    /// A `phys_addr` that is not a multiple of the region's page size.
    RegionMisaligned {
        /// Region name.
        region: String,
        /// `phys_addr`.
        phys_addr: PhysAddr,
        /// `page_size`.
        page_size: u64,
    },
    /// A region size that is zero or not a multiple of its page size.
    RegionSize {
        /// Region name.
        region: String,
        /// `size`.
        size: u64,
        /// `page_size`.
        page_size: u64,
    },
    /// A `phys_addr` region inside the hypervisor's reserved range (I4).
    RegionInHypervisorMemory {
        /// Region name.
        region: String,
        /// `phys_addr`.
        phys_addr: PhysAddr,
    },
    /// A `phys_addr` region on a device the hypervisor keeps for itself, or on a DMA-capable
    /// device (which would write memory behind stage 2): `sdf::devices`.
    RegionOnDevice {
        /// Region name.
        region: String,
        /// The device.
        device: Device,
    },
    /// A `phys_addr` region that is partly RAM and partly not.
    RegionStraddlesRam {
        /// Region name.
        region: String,
        /// `phys_addr`.
        phys_addr: PhysAddr,
    },
    /// Two `phys_addr` regions overlap.
    RegionsOverlap {
        /// First region name.
        first: String,
        /// Second region name.
        second: String,
    },
    /// A prefill file larger than its region.
    PrefillTooLarge {
        /// Region name.
        region: String,
        /// File length.
        len: u64,
        /// Region size.
        size: u64,
    },
    /// A prefill file whose length differs from the one the system description was checked
    /// with (it changed in between).
    PrefillChanged {
        /// Region name.
        region: String,
        /// The length when the system description was checked.
        checked: u64,
        /// The length now.
        len: u64,
    },
    /// A device region with a prefill file.
    PrefillOnDevice {
        /// Region name.
        region: String,
    },
    /// A `<map>` whose vaddr is not a multiple of the region's page size.
    MapMisaligned {
        /// Domain name.
        domain: String,
        /// Region name.
        region: String,
        /// `vaddr`.
        vaddr: Ipa,
        /// `page_size`.
        page_size: u64,
    },
    /// A `<map>` with empty `perms`.
    MapWithoutRights {
        /// Domain name.
        domain: String,
        /// Region name.
        region: String,
    },
    /// A `<map>`, `<setvar>` or end naming a region or PD index that does not exist.
    BadReference {
        /// What refers to it.
        what: String,
    },
    /// Two mappings of one domain overlap in its IPA space.
    MappingsOverlap {
        /// Domain name.
        domain: String,
        /// First mapping.
        first: String,
        /// Second mapping.
        second: String,
    },
    /// A mapping past the 40-bit IPA space.
    BeyondIpaSpace {
        /// Domain name.
        domain: String,
        /// The mapping.
        what: String,
        /// Its end.
        end: u64,
    },
    /// A protected VM's private region mapped by a domain other than the VM and its VMM.
    PrivateRegionShared {
        /// Region name.
        region: String,
        /// The protected VM.
        vm: String,
        /// The other domain.
        other: String,
    },
    /// A VM `<map>` with a setvar attribute (a VM has no ELF to patch).
    SetVarOnVm {
        /// VM name.
        vm: String,
        /// The symbol.
        symbol: String,
    },
    /// A domain name that fails `frameshift_abi::domain_name::check`, or is too long for
    /// `microkit_name` and its NUL.
    BadName {
        /// The name (escaped).
        name: String,
        /// Why.
        reason: String,
    },
    /// More `<irq>`s than the hypervisor routes.
    TooManyIrqs {
        /// How many the system has.
        count: usize,
    },
    /// More `<channel>`s than the hypervisor's channel table holds (`MAX_CHANNELS`).
    TooManyChannels {
        /// How many the system has.
        count: usize,
    },
    /// A VM with no vCPU, or with more than `MAX_VCPUS` (a Frameshift limit).
    VcpuCount {
        /// VM name.
        vm: String,
        /// How many vCPUs it has.
        count: usize,
    },
    /// A vCPU id above 61, or given twice in one VM.
    BadVcpuId {
        /// VM name.
        vm: String,
        /// The id.
        id: u64,
    },
    /// A `conversion` mode on a VM that is not protected (only protected memory is converted).
    ConversionWithoutProtection {
        /// VM name.
        vm: String,
        /// The mode (`history` or `split`).
        conversion: &'static str,
    },
    /// A priority above 254.
    BadPriority {
        /// Domain name.
        domain: String,
        /// The priority.
        priority: u8,
    },
    /// The boot info does not fit in the hypervisor's reserved range.
    BootInfoTooLarge {
        /// Where it would start.
        pa: PhysAddr,
        /// Its size.
        len: u64,
    },
    /// The builder's output failed the hypervisor's own boot-info checks (the builder runs
    /// `BootInfo::parse` on what it wrote, so a rule it does not check itself, such as an IRQ
    /// that is not an SPI, is still caught at build time).
    BootInfoRefused(BootInfoError),
    /// Two segments of the output image overlap.
    ImageSegmentsOverlap {
        /// First segment.
        first: String,
        /// Second segment.
        second: String,
    },
    /// The output ELF could not be written.
    ElfWrite(String),
}

impl fmt::Display for ImageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::InvalidRamSize { ram_size } => write!(
                f,
                "RAM size {ram_size:#x} must be a multiple of 2 MiB larger than the hypervisor's 32 MiB"
            ),
            Self::Io { path, what, source } => {
                write!(f, "cannot access {what} '{}': {source}", path.display())
            }
            Self::FileNotFound { path, needed_by, searched } => {
                write!(f, "{needed_by}: '{}' not found (searched:", path.display())?;
                for dir in searched {
                    write!(f, " '{}'", dir.display())?;
                }
                write!(f, ")")
            }
            Self::NotElf64 { path, reason } => {
                write!(f, "'{}' is not a little-endian ELF64 file: {reason}", path.display())
            }
            Self::NotAarch64 { path, machine } => write!(
                f,
                "'{}' is not an AArch64 ELF (e_machine {machine}, expected 183)",
                path.display()
            ),
            Self::NotExecutable { path, e_type } => write!(
                f,
                "'{}' is not a static executable (e_type {e_type}, expected ET_EXEC)",
                path.display()
            ),
            Self::HypervisorSegmentOutside { path, start, end } => write!(
                f,
                "hypervisor ELF '{}': segment [{start}, {end}) leaves the hypervisor load range \
                 [0x40100000, 0x42000000)",
                path.display()
            ),
            Self::HypervisorNotIdentity { path, vaddr, paddr } => write!(
                f,
                "hypervisor ELF '{}': segment p_vaddr {vaddr:#x} != p_paddr {paddr:#x} (the EL2 \
                 kernel runs identity mapped)",
                path.display()
            ),
            Self::NoSegments { path } => {
                write!(f, "'{}' has no loadable (PT_LOAD) segment", path.display())
            }
            Self::ElfSegmentsOverlap { path, first, second } => write!(
                f,
                "'{}': loadable segments at {first:#x} and {second:#x} overlap or share a 4 KiB \
                 page (link with page-aligned segments)",
                path.display()
            ),
            Self::SegmentTooLarge { path, vaddr, mem_size } => write!(
                f,
                "'{}': loadable segment at {vaddr:#x} has a memory size of {mem_size:#x} bytes, \
                 which runs past the end of the 64-bit address space",
                path.display()
            ),
            Self::SegmentWithoutRights { path, vaddr } => write!(
                f,
                "'{}': loadable segment at {vaddr:#x} has none of the R, W, X flags",
                path.display()
            ),
            Self::EntryNotExecutable { path, entry } => write!(
                f,
                "'{}': entry point {entry:#x} is not inside an executable segment",
                path.display()
            ),
            Self::SymbolMissing { path, symbol, needed_by } => write!(
                f,
                "'{}': symbol `{symbol}` ({needed_by}) not found",
                path.display()
            ),
            Self::SymbolTooSmall { path, symbol, size, need } => write!(
                f,
                "'{}': symbol `{symbol}` is {size} bytes, the patched value needs {need}",
                path.display()
            ),
            Self::SymbolOutsideSegments { path, symbol, address } => write!(
                f,
                "'{}': symbol `{symbol}` at {address:#x} is not inside a loadable segment",
                path.display()
            ),
            Self::SymbolInBss { path, symbol, address } => write!(
                f,
                "'{}': symbol `{symbol}` at {address:#x} is in .bss, which start-up code zeroes; \
                 place it in .data (e.g. #[link_section = \".data\"])",
                path.display()
            ),
            Self::OutOfMemory { what, size, align, free } => write!(
                f,
                "out of memory: cannot allocate {size:#x} bytes ({align:#x} aligned) for {what}; \
                 {free:#x} bytes left in the convertible range (increase the RAM size)"
            ),
            Self::RegionMisaligned { region, phys_addr, page_size } => write!(
                f,
                "memory region `{region}`: phys_addr {phys_addr} is not a multiple of its page \
                 size {page_size:#x}"
            ),
            Self::RegionSize { region, size, page_size } => write!(
                f,
                "memory region `{region}`: size {size:#x} is not a non-zero multiple of its page \
                 size {page_size:#x}"
            ),
            Self::RegionInHypervisorMemory { region, phys_addr } => write!(
                f,
                "memory region `{region}`: phys_addr {phys_addr} lies in the hypervisor's reserved \
                 memory [0x40000000, 0x42000000) (I4)"
            ),
            Self::RegionOnDevice { region, device } => write!(
                f,
                "memory region `{region}`: phys_addr range overlaps {device}, {}",
                devices::reason(device)
            ),
            Self::RegionStraddlesRam { region, phys_addr } => write!(
                f,
                "memory region `{region}`: phys_addr {phys_addr} range is partly RAM and partly not"
            ),
            Self::RegionsOverlap { first, second } => {
                write!(f, "memory regions `{first}` and `{second}` overlap in physical memory")
            }
            Self::PrefillTooLarge { region, len, size } => write!(
                f,
                "memory region `{region}`: prefill file is {len:#x} bytes, larger than the region \
                 ({size:#x})"
            ),
            Self::PrefillChanged { region, checked, len } => write!(
                f,
                "memory region `{region}`: prefill file is {len:#x} bytes, but was {checked:#x} \
                 bytes when the system description was checked (it changed; check again)"
            ),
            Self::PrefillOnDevice { region } => {
                write!(f, "memory region `{region}`: a device region cannot be prefilled")
            }
            Self::MapMisaligned { domain, region, vaddr, page_size } => write!(
                f,
                "`{domain}`: map of `{region}` at vaddr {vaddr} is not a multiple of the region's \
                 page size {page_size:#x}"
            ),
            Self::MapWithoutRights { domain, region } => {
                write!(f, "`{domain}`: map of `{region}` has empty perms")
            }
            Self::BadReference { what } => write!(f, "{what} refers to nothing"),
            Self::MappingsOverlap { domain, first, second } => {
                write!(f, "`{domain}`: {first} overlaps {second}")
            }
            Self::BeyondIpaSpace { domain, what, end } => write!(
                f,
                "`{domain}`: {what} ends at {end:#x}, beyond the 40-bit IPA space"
            ),
            Self::PrivateRegionShared { region, vm, other } => write!(
                f,
                "memory region `{region}` is private to protected virtual machine `{vm}` but is \
                 also mapped by `{other}` (only the VM's parent VMM may map it, as a window)"
            ),
            Self::SetVarOnVm { vm, symbol } => write!(
                f,
                "virtual machine `{vm}`: setvar `{symbol}` on a VM map (a VM has no ELF to patch)"
            ),
            Self::BadName { name, reason } => write!(f, "domain name `{name}`: {reason}"),
            Self::TooManyIrqs { count } => write!(
                f,
                "the system has {count} irqs; the hypervisor routes at most {MAX_IRQS}"
            ),
            Self::TooManyChannels { count } => write!(
                f,
                "the system has {count} channels; the hypervisor's channel table holds at most \
                 {MAX_CHANNELS}"
            ),
            Self::VcpuCount { vm, count } => write!(
                f,
                "virtual machine `{vm}` has {count} vCPUs; it needs 1 to {MAX_VCPUS} (at most \
                 {MAX_VCPUS} is a Frameshift limit; Microkit allows more)"
            ),
            Self::BadVcpuId { vm, id } => write!(
                f,
                "virtual machine `{vm}`: vCPU id {id} is above {MAX_VCPU_ID} or given twice"
            ),
            Self::ConversionWithoutProtection { vm, conversion } => write!(
                f,
                "virtual machine `{vm}` has conversion mode `{conversion}` but is not protected \
                 (only a protected VM converts memory)"
            ),
            Self::BadPriority { domain, priority } => {
                write!(f, "`{domain}`: priority {priority} is above 254")
            }
            Self::BootInfoTooLarge { pa, len } => write!(
                f,
                "boot info ({len:#x} bytes at {pa}) does not fit in the hypervisor's reserved range"
            ),
            Self::BootInfoRefused(error) => {
                write!(f, "the system breaks a rule the hypervisor enforces: {error}")
            }
            Self::ImageSegmentsOverlap { first, second } => {
                write!(f, "image segments overlap: {first} and {second}")
            }
            Self::ElfWrite(reason) => write!(f, "cannot write the image ELF: {reason}"),
        }
    }
}

impl std::error::Error for ImageError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}
