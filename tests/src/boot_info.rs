//! Finding the boot information inside a built boot image, and corrupting it for the refusal
//! tests.
//!
//! The image is an ELF file whose segments hold the hypervisor and the blob. The blob is found by
//! its magic and accepted only if the shared validator (`frameshift_abi::boot_info::BootInfo`,
//! the code the hypervisor runs) accepts it, so a copy of the magic in the hypervisor's read-only
//! data is never mistaken for it. The same validator gives the exact refusal message a
//! corrupted blob must produce on the console.

use std::mem::{offset_of, size_of};
use std::ops::Range;

use frameshift_abi::boot_info::{
    seal, BootInfo, BootInfoError, BootInfoHeader, MappingDesc, BOOT_INFO_MAGIC,
};
use zerocopy::{FromBytes, IntoBytes};

/// Validate `blob` with the hypervisor's own validator (from an 8-byte aligned copy, as the
/// hypervisor's copy is).
pub fn validate(blob: &[u8]) -> Result<(), BootInfoError> {
    let mut words = vec![0u64; blob.len().div_ceil(8)];
    words.as_mut_bytes()[..blob.len()].copy_from_slice(blob);
    BootInfo::parse(&words.as_bytes()[..blob.len()]).map(|_| ())
}

/// The byte range of the (valid) boot information in `image`.
pub fn find(image: &[u8]) -> Option<Range<usize>> {
    let total_size_at = offset_of!(BootInfoHeader, total_size);
    let mut start = 0;
    while let Some(found) = image
        .get(start..)?
        .windows(BOOT_INFO_MAGIC.len())
        .position(|window| window == BOOT_INFO_MAGIC)
    {
        let offset = start + found;
        let total = image
            .get(offset + total_size_at..offset + total_size_at + 4)
            .and_then(|bytes| u32::read_from_bytes(bytes).ok())
            .map(|total| total as usize);
        if let Some(blob) = total.and_then(|total| image.get(offset..offset.checked_add(total)?)) {
            if validate(blob).is_ok() {
                return Some(offset..offset + blob.len());
            }
        }
        start = offset + 1;
    }
    None
}

/// The blob's header.
pub fn header(blob: &[u8]) -> Option<BootInfoHeader> {
    BootInfoHeader::read_from_prefix(blob)
        .ok()
        .map(|(header, _)| header)
}

/// Point mapping `index` of the blob at physical address `pa` and re-seal the checksum, so only
/// the field checks can catch it.
pub fn retarget_mapping(blob: &mut [u8], index: usize, pa: u64) -> Option<()> {
    let header = header(blob)?;
    let at = header.mappings_offset as usize
        + index * size_of::<MappingDesc>()
        + offset_of!(MappingDesc, pa);
    blob.get_mut(at..at + 8)?.copy_from_slice(&pa.to_le_bytes());
    seal(blob);
    Some(())
}

/// Flip every bit of the byte at `offset` (checksum left stale).
pub fn flip_byte(blob: &mut [u8], offset: usize) -> Option<()> {
    let byte = blob.get_mut(offset)?;
    *byte ^= 0xff;
    Some(())
}

/// The console line the hypervisor must print for `blob`, from the shared validator.
pub fn expected_refusal(blob: &[u8]) -> Option<String> {
    validate(blob)
        .err()
        .map(|error| format!("FS|hypervisor|error boot-info: {error}"))
}
