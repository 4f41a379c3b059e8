//! Writing the boot image: one ELF64 AArch64 executable whose `PT_LOAD` segments QEMU's
//! `-kernel` loader copies to their physical addresses (`p_paddr = p_vaddr`).
//!
//! The file has no sections and no timestamps; segments are written in address order, so the
//! same plan always gives the same bytes.

use object::elf::{ELFOSABI_NONE, EM_AARCH64, ET_EXEC, PT_LOAD};
use object::write::elf::{FileHeader, ProgramHeader, Writer};
use object::Endianness;

use super::address::{ranges_overlap, PhysAddr};
use super::error::ImageError;
use super::plan::OutputSegment;

/// File offsets are kept congruent to addresses modulo this, as the ELF spec asks of `p_align`.
const SEGMENT_ALIGN: u64 = 0x1000;

/// Sorts `segments` by address and refuses any two that overlap.
pub(crate) fn sort_and_check(segments: &mut [OutputSegment]) -> Result<(), ImageError> {
    segments.sort_by(|a, b| a.pa.cmp(&b.pa).then_with(|| a.label.cmp(&b.label)));
    for pair in segments.windows(2) {
        let [first, second] = pair else { continue };
        if ranges_overlap(first.pa.0, first.mem_size, second.pa.0, second.mem_size) {
            return Err(ImageError::ImageSegmentsOverlap {
                first: format!("{} at {}", first.label, first.pa),
                second: format!("{} at {}", second.label, second.pa),
            });
        }
    }
    Ok(())
}

/// Writes the ELF; returns it and the file offset of each segment's data (same order).
pub(crate) fn write_elf(
    entry: PhysAddr,
    segments: &[OutputSegment],
) -> Result<(Vec<u8>, Vec<usize>), ImageError> {
    let mut buffer = Vec::new();
    let mut writer = Writer::new(Endianness::Little, true, &mut buffer);
    writer.reserve_file_header();
    writer.reserve_program_headers(segments.len() as u32);
    let mut offsets = Vec::with_capacity(segments.len());
    for segment in segments {
        // The next offset at or after the current end with offset % 4 KiB == pa % 4 KiB.
        let end = writer.reserved_len() as u64;
        let delta =
            (segment.pa.0 % SEGMENT_ALIGN + SEGMENT_ALIGN - end % SEGMENT_ALIGN) % SEGMENT_ALIGN;
        let offset = end + delta;
        let offset = usize::try_from(offset).map_err(|e| ImageError::ElfWrite(e.to_string()))?;
        writer.reserve_until(offset);
        writer.reserve(segment.data.len(), 1);
        offsets.push(offset);
    }
    writer
        .write_file_header(&FileHeader {
            os_abi: ELFOSABI_NONE,
            abi_version: 0,
            e_type: ET_EXEC,
            e_machine: EM_AARCH64,
            e_entry: entry.0,
            e_flags: 0,
        })
        .map_err(|e| ImageError::ElfWrite(e.to_string()))?;
    writer.write_align_program_headers();
    for (segment, &offset) in segments.iter().zip(&offsets) {
        writer.write_program_header(&ProgramHeader {
            p_type: PT_LOAD,
            p_flags: segment.flags,
            p_offset: offset as u64,
            p_vaddr: segment.pa.0,
            p_paddr: segment.pa.0,
            p_filesz: segment.data.len() as u64,
            p_memsz: segment.mem_size,
            p_align: SEGMENT_ALIGN,
        });
    }
    for (segment, &offset) in segments.iter().zip(&offsets) {
        writer.pad_until(offset);
        writer.write(&segment.data);
    }
    Ok((buffer, offsets))
}

#[cfg(test)]
#[allow(
    clippy::expect_used,
    reason = "a test fails loudly on the first unexpected result"
)]
mod tests {
    use super::*;

    fn segment(pa: u64, len: usize, mem_size: u64) -> OutputSegment {
        OutputSegment {
            pa: PhysAddr(pa),
            data: vec![0xA5; len],
            mem_size,
            flags: 4,
            label: format!("{pa:#x}"),
        }
    }

    #[test]
    fn file_offsets_are_congruent_to_addresses() {
        let segments = [
            segment(0x4010_0010, 0x30, 0x30),
            segment(0x4200_0000, 0x1001, 0x2000),
            segment(0x4300_0ff8, 8, 8),
        ];
        let (bytes, offsets) = write_elf(PhysAddr(0x4010_0010), &segments).expect("written");
        for (segment, offset) in segments.iter().zip(offsets) {
            assert_eq!(offset as u64 % SEGMENT_ALIGN, segment.pa.0 % SEGMENT_ALIGN);
            assert_eq!(
                &bytes[offset..offset + segment.data.len()],
                segment.data.as_slice()
            );
        }
    }

    #[test]
    fn overlapping_segments_are_refused_after_sorting() {
        let mut segments = vec![
            segment(0x4200_1000, 0x10, 0x1000),
            segment(0x4200_0000, 0x10, 0x1001),
        ];
        assert!(matches!(
            sort_and_check(&mut segments),
            Err(ImageError::ImageSegmentsOverlap { .. })
        ));
        let mut segments = vec![
            segment(0x4200_1000, 0x10, 0x1000),
            segment(0x4200_0000, 0x10, 0x1000),
        ];
        assert!(sort_and_check(&mut segments).is_ok());
        assert_eq!(segments[0].pa, PhysAddr(0x4200_0000));
    }
}
