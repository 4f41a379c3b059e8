//! Writing a boot-information blob (used by the build tool and by tests).
//!
//! The encoder owns the framing (magic, version, sizes, table offsets and counts, CRC-32) so that
//! the builder and the reader cannot disagree on it. It does not check the records: the build
//! tool checks its layout itself and then parses its own output with [`super::BootInfo::parse`].

use core::fmt;
use core::mem::size_of;

use zerocopy::IntoBytes;

use super::{
    BootInfoHeader, ChannelDesc, DomainDesc, IrqDesc, MappingDesc, BOOT_INFO_MAGIC,
    BOOT_INFO_VERSION,
};
use crate::crc32::Crc32;

/// Byte offset of [`BootInfoHeader::checksum`]: the CRC is computed with these 4 bytes as zero.
pub(super) const CHECKSUM_OFFSET: usize = 20;

/// The record tables of a blob, in the order they are written.
#[derive(Clone, Copy, Debug)]
pub struct Tables<'a> {
    /// Domains, parents before children.
    pub domains: &'a [DomainDesc],
    /// Mappings, grouped by domain in domain order.
    pub mappings: &'a [MappingDesc],
    /// Channels.
    pub channels: &'a [ChannelDesc],
    /// Interrupts.
    pub irqs: &'a [IrqDesc],
}

/// Why [`encode`] could not write a blob.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EncodeError {
    /// The output buffer is smaller than [`encoded_len`].
    BufferTooSmall {
        /// Bytes needed.
        need: usize,
    },
    /// The blob would not fit the `u32` size and offset fields.
    TooLarge,
}

impl fmt::Display for EncodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BufferTooSmall { need } => write!(f, "boot info needs a {need}-byte buffer"),
            Self::TooLarge => write!(f, "boot info exceeds 4 GiB"),
        }
    }
}

/// The size in bytes of the blob [`encode`] writes for `tables`.
pub fn encoded_len(tables: &Tables<'_>) -> usize {
    size_of::<BootInfoHeader>()
        + size_of_val(tables.domains)
        + size_of_val(tables.mappings)
        + size_of_val(tables.channels)
        + size_of_val(tables.irqs)
}

/// Writes the blob into the start of `out` and returns its length.
///
/// The memory-layout fields (`ram_*`, `hypervisor_*`, `convertible_*`) are taken from `layout`;
/// every other header field (magic, version, sizes, offsets, counts, checksum) is computed here.
/// Tables follow the header back to back; every record size is a multiple of 8, so each table
/// starts 8-byte aligned.
pub fn encode(
    layout: &BootInfoHeader,
    tables: &Tables<'_>,
    out: &mut [u8],
) -> Result<usize, EncodeError> {
    let total = encoded_len(tables);
    if out.len() < total {
        return Err(EncodeError::BufferTooSmall { need: total });
    }
    let to_u32 = |value: usize| u32::try_from(value).map_err(|_| EncodeError::TooLarge);
    let header_size = size_of::<BootInfoHeader>();
    let domains_offset = header_size;
    let mappings_offset = domains_offset + size_of_val(tables.domains);
    let channels_offset = mappings_offset + size_of_val(tables.mappings);
    let irqs_offset = channels_offset + size_of_val(tables.channels);
    let header = BootInfoHeader {
        magic: BOOT_INFO_MAGIC,
        version: BOOT_INFO_VERSION,
        header_size: to_u32(header_size)?,
        total_size: to_u32(total)?,
        checksum: 0,
        ram_base: layout.ram_base,
        ram_size: layout.ram_size,
        hypervisor_base: layout.hypervisor_base,
        hypervisor_size: layout.hypervisor_size,
        convertible_base: layout.convertible_base,
        convertible_size: layout.convertible_size,
        domain_count: to_u32(tables.domains.len())?,
        domains_offset: to_u32(domains_offset)?,
        mapping_count: to_u32(tables.mappings.len())?,
        mappings_offset: to_u32(mappings_offset)?,
        channel_count: to_u32(tables.channels.len())?,
        channels_offset: to_u32(channels_offset)?,
        irq_count: to_u32(tables.irqs.len())?,
        irqs_offset: to_u32(irqs_offset)?,
    };
    let pieces: [&[u8]; 5] = [
        header.as_bytes(),
        tables.domains.as_bytes(),
        tables.mappings.as_bytes(),
        tables.channels.as_bytes(),
        tables.irqs.as_bytes(),
    ];
    let mut at = 0;
    for piece in pieces {
        let end = at + piece.len();
        if let Some(target) = out.get_mut(at..end) {
            target.copy_from_slice(piece);
        }
        at = end;
    }
    seal(out.get_mut(..total).unwrap_or_default());
    Ok(total)
}

/// The CRC-32 of `blob` with its checksum field read as zero.
pub(super) fn checksum(blob: &[u8]) -> u32 {
    let mut crc = Crc32::new();
    let (before, rest) = blob.split_at(CHECKSUM_OFFSET.min(blob.len()));
    crc.update(before);
    crc.update(&[0; 4]);
    crc.update(rest.get(4..).unwrap_or_default());
    crc.finish()
}

/// Recomputes and stores the checksum of a complete blob (after editing one, e.g. in a test).
pub fn seal(blob: &mut [u8]) {
    let sum = checksum(blob);
    if let Some(field) = blob.get_mut(CHECKSUM_OFFSET..CHECKSUM_OFFSET + 4) {
        field.copy_from_slice(&sum.to_le_bytes());
    }
}
