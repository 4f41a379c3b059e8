//! The boot image builder: a validated [`SystemDescription`] plus ELFs in, one bootable ELF
//! (`frameshift.img`, loaded by QEMU `-kernel`) and a report out.
//!
//! Steps: check the hypervisor ELF ([`layout`] fixes where it goes), plan physical memory and
//! every domain's stage-2 mappings with their initial ownership (`plan`), patch Microkit-style
//! symbols into PD programs (`symbols`), encode the boot information with the ABI crate's
//! encoder, check it with the hypervisor's own reader, patch `FRAMESHIFT_BOOT_INFO` into the
//! hypervisor, and write the ELF (`output`) and the report (`report`). Everything is ordered
//! (vectors and `BTreeMap`s, document order), so the same inputs give byte-identical output.
//! docs/ABI.md ("Boot information") describes the layout.

mod address;
mod elf;
mod error;
pub mod layout;
mod output;
mod plan;
mod report;
mod symbols;

use std::path::{Path, PathBuf};

use frameshift_abi::boot_info::{
    encode, encoded_len, BootInfo, BootInfoHeader, Tables, BOOT_INFO_SYMBOL, PAGE_SIZE,
};
use frameshift_abi::crc32::crc32;
use object::elf::PF_R;
use zerocopy::IntoBytes;

use crate::sdf::model::SystemDescription;

pub use address::{Ipa, PhysAddr};
pub use error::ImageError;
pub use layout::{MemoryLayout, DEFAULT_RAM_SIZE};
pub use report::{kind_text, rights_text, state_text};
pub use symbols::{
    MICROKIT_IRQS, MICROKIT_NAME, MICROKIT_NAME_LEN, MICROKIT_NOTIFICATIONS, MICROKIT_PASSIVE,
    MICROKIT_PPS,
};

use elf::ElfImage;
use layout::{HYPERVISOR_BASE, HYPERVISOR_LOAD_BASE, HYPERVISOR_SIZE};
use plan::OutputSegment;

/// File name [`BuiltImage::write_to`] gives the image.
pub const IMAGE_FILE: &str = "frameshift.img";
/// File name [`BuiltImage::write_to`] gives the report.
pub const REPORT_FILE: &str = "report.txt";

/// What the builder reads besides the system description.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageInputs {
    /// The EL2 kernel ELF (linked at 0x4010_0000, with a `FRAMESHIFT_BOOT_INFO` symbol).
    pub hypervisor_elf: PathBuf,
    /// Directories searched, in order, for relative `program_image` and `prefill_path` files.
    pub search_paths: Vec<PathBuf>,
    /// RAM size QEMU is started with (`-m`), in bytes.
    pub ram_size: u64,
}

impl ImageInputs {
    /// Inputs with the default RAM size ([`DEFAULT_RAM_SIZE`], QEMU `-m 512M`).
    pub fn new(hypervisor_elf: PathBuf, search_paths: Vec<PathBuf>) -> Self {
        Self {
            hypervisor_elf,
            search_paths,
            ram_size: DEFAULT_RAM_SIZE,
        }
    }
}

/// One `PT_LOAD` segment of the image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageSegment {
    /// Physical (= virtual) load address.
    pub pa: PhysAddr,
    /// Bytes stored in the file.
    pub file_size: u64,
    /// Bytes in memory (the rest is zero-filled by the loader).
    pub mem_size: u64,
    /// Offset of its bytes in [`BuiltImage::image`].
    pub offset_in_image: usize,
    /// What it is (e.g. "boot info", "PD `vmm` program segment 0").
    pub label: String,
}

/// A built image, in memory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BuiltImage {
    /// The ELF file QEMU loads with `-kernel`.
    pub image: Vec<u8>,
    /// The report text.
    pub report: String,
    /// The entry point (the hypervisor's).
    pub entry: PhysAddr,
    /// Where the boot information is loaded.
    pub boot_info_pa: PhysAddr,
    /// Offset of the boot information in [`BuiltImage::image`].
    pub boot_info_offset_in_image: usize,
    /// Size of the boot information in bytes.
    pub boot_info_len: usize,
    /// Every segment, in address order.
    pub segments: Vec<ImageSegment>,
}

/// The files [`BuiltImage::write_to`] wrote.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WrittenImage {
    /// `<dir>/frameshift.img`.
    pub image: PathBuf,
    /// `<dir>/report.txt`.
    pub report: PathBuf,
}

impl BuiltImage {
    /// The boot-information bytes inside the image.
    pub fn boot_info(&self) -> &[u8] {
        let end = self.boot_info_offset_in_image + self.boot_info_len;
        self.image
            .get(self.boot_info_offset_in_image..end)
            .unwrap_or_default()
    }

    /// Writes [`IMAGE_FILE`] and [`REPORT_FILE`] into `dir` (created if missing).
    pub fn write_to(&self, dir: &Path) -> Result<WrittenImage, ImageError> {
        let io = |path: &Path, what| {
            let path = path.to_path_buf();
            move |source| ImageError::Io { path, what, source }
        };
        std::fs::create_dir_all(dir).map_err(io(dir, "output directory"))?;
        let written = WrittenImage {
            image: dir.join(IMAGE_FILE),
            report: dir.join(REPORT_FILE),
        };
        std::fs::write(&written.image, &self.image).map_err(io(&written.image, "image"))?;
        std::fs::write(&written.report, &self.report).map_err(io(&written.report, "report"))?;
        Ok(written)
    }
}

/// Loads and checks the hypervisor ELF: AArch64, identity mapped, inside its load range, with
/// the boot-info symbol.
fn load_hypervisor(path: &Path) -> Result<ElfImage, ImageError> {
    let elf = ElfImage::load(path, "hypervisor ELF")?;
    elf.check_disjoint(false)?;
    let range_end = HYPERVISOR_BASE.0 + HYPERVISOR_SIZE;
    for segment in &elf.segments {
        if segment.vaddr != segment.paddr {
            return Err(ImageError::HypervisorNotIdentity {
                path: path.to_path_buf(),
                vaddr: segment.vaddr,
                paddr: segment.paddr,
            });
        }
        let end = segment.paddr.saturating_add(segment.mem_size);
        if segment.paddr < HYPERVISOR_LOAD_BASE.0 || end > range_end {
            return Err(ImageError::HypervisorSegmentOutside {
                path: path.to_path_buf(),
                start: PhysAddr(segment.paddr),
                end: PhysAddr(end),
            });
        }
    }
    if elf.symbol(BOOT_INFO_SYMBOL).is_none() {
        return Err(ImageError::SymbolMissing {
            path: path.to_path_buf(),
            symbol: BOOT_INFO_SYMBOL.to_string(),
            needed_by: "the hypervisor finds the boot information through it".to_string(),
        });
    }
    Ok(elf)
}

/// Builds the image for `system`.
pub fn build(system: &SystemDescription, inputs: &ImageInputs) -> Result<BuiltImage, ImageError> {
    let layout = MemoryLayout::new(inputs.ram_size)?;
    let mut hypervisor = load_hypervisor(&inputs.hypervisor_elf)?;
    let plan = plan::plan(system, &layout, &inputs.search_paths)?;

    let domains: Vec<_> = plan.domains.iter().map(|domain| domain.desc).collect();
    let mappings: Vec<_> = plan
        .domains
        .iter()
        .flat_map(|domain| domain.mappings.iter().map(|m| m.desc))
        .collect();
    let tables = Tables {
        domains: &domains,
        mappings: &mappings,
        channels: &plan.channels,
        irqs: &plan.irqs,
    };
    let header = BootInfoHeader {
        magic: [0; 8],
        version: 0,
        header_size: 0,
        total_size: 0,
        checksum: 0,
        ram_base: layout::RAM_BASE.0,
        ram_size: layout.ram_size,
        hypervisor_base: HYPERVISOR_BASE.0,
        hypervisor_size: HYPERVISOR_SIZE,
        convertible_base: layout::CONVERTIBLE_BASE.0,
        convertible_size: layout.convertible_size(),
        domain_count: 0,
        domains_offset: 0,
        mapping_count: 0,
        mappings_offset: 0,
        channel_count: 0,
        channels_offset: 0,
        irq_count: 0,
        irqs_offset: 0,
    };
    // u64 backing keeps the blob 8-byte aligned, as the reader requires.
    let len = encoded_len(&tables);
    let mut words = vec![0u64; len.div_ceil(8)];
    let written = encode(&header, &tables, &mut words.as_mut_bytes()[..len])
        .map_err(|e| ImageError::ElfWrite(e.to_string()))?;
    let blob_bytes = &words.as_bytes()[..written];
    let info = BootInfo::parse(blob_bytes).map_err(ImageError::BootInfoRefused)?;
    let blob = blob_bytes.to_vec();

    let kernel_end = hypervisor
        .segments
        .iter()
        .map(|segment| segment.paddr + segment.mem_size)
        .max()
        .unwrap_or(HYPERVISOR_LOAD_BASE.0);
    let boot_info_pa = PhysAddr(kernel_end.next_multiple_of(PAGE_SIZE));
    let range_end = HYPERVISOR_BASE.0 + HYPERVISOR_SIZE;
    let heap_start = (boot_info_pa.0 + blob.len() as u64).next_multiple_of(PAGE_SIZE);
    if heap_start > range_end {
        return Err(ImageError::BootInfoTooLarge {
            pa: boot_info_pa,
            len: blob.len() as u64,
        });
    }
    let heap = info
        .hypervisor_heap(boot_info_pa.0)
        .map(|(start, size)| (PhysAddr(start), size))
        .unwrap_or((PhysAddr(heap_start), range_end - heap_start));

    let mut location = [0u8; 16];
    location[..8].copy_from_slice(&boot_info_pa.0.to_le_bytes());
    location[8..].copy_from_slice(&(blob.len() as u64).to_le_bytes());
    hypervisor.patch(BOOT_INFO_SYMBOL, &location)?;

    let hypervisor_segments: Vec<OutputSegment> = hypervisor
        .segments
        .iter()
        .enumerate()
        .map(|(number, segment)| OutputSegment {
            pa: PhysAddr(segment.paddr),
            data: segment.data.clone(),
            mem_size: segment.mem_size,
            flags: segment.flags,
            label: format!("hypervisor segment {number}"),
        })
        .collect();
    let entry = PhysAddr(hypervisor.entry);
    let report = report::render(&report::ReportInputs {
        system,
        layout: &layout,
        plan: &plan,
        hypervisor_path: &inputs.hypervisor_elf,
        hypervisor_segments: &hypervisor_segments,
        entry,
        boot_info_pa,
        boot_info_len: blob.len() as u64,
        boot_info_crc: crc32(&blob),
        heap,
    });

    let mut segments = hypervisor_segments;
    segments.push(OutputSegment {
        pa: boot_info_pa,
        mem_size: blob.len() as u64,
        data: blob,
        flags: PF_R,
        label: "boot info".to_string(),
    });
    segments.extend(plan.segments.iter().cloned());
    output::sort_and_check(&mut segments)?;
    let (image, offsets) = output::write_elf(entry, &segments)?;
    let segments: Vec<ImageSegment> = segments
        .into_iter()
        .zip(offsets)
        .map(|(segment, offset)| ImageSegment {
            pa: segment.pa,
            file_size: segment.data.len() as u64,
            mem_size: segment.mem_size,
            offset_in_image: offset,
            label: segment.label,
        })
        .collect();
    let boot_info = segments.iter().find(|segment| segment.pa == boot_info_pa);
    let boot_info_offset_in_image = boot_info.map_or(0, |segment| segment.offset_in_image);
    Ok(BuiltImage {
        image,
        report,
        entry,
        boot_info_pa,
        boot_info_offset_in_image,
        boot_info_len: len,
        segments,
    })
}
