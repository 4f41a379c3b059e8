//! The boot information: what the build tool tells the hypervisor about the system (version 2).
//!
//! The blob is untrusted input to the hypervisor (DESIGN.md 3). It is one contiguous, 8-byte
//! aligned region of little-endian `repr(C)` records:
//!
//! ```text
//! +--------------------+ offset 0
//! | BootInfoHeader     |  magic, version, sizes, CRC-32, memory layout, table offsets/counts
//! +--------------------+ header.domains_offset
//! | DomainDesc  [n]    |  one per PD or VM, in system.xml order (parents before children)
//! +--------------------+ header.mappings_offset
//! | MappingDesc [n]    |  every stage-2 mapping of every domain, grouped by domain
//! +--------------------+ header.channels_offset
//! | ChannelDesc [n]    |
//! +--------------------+ header.irqs_offset
//! | IrqDesc     [n]    |
//! +--------------------+ header.total_size
//! ```
//!
//! The hypervisor finds the blob through two `u64` words the build tool patches into the
//! hypervisor ELF, [`BOOT_INFO_SYMBOL`] (`[physical address, size]`).
//! It checks the magic, the version, the CRC-32 and then every field before it uses any of them:
//! [`BootInfo::parse`] is the only way to get typed records out of the bytes, and it refuses a
//! blob with a [`BootInfoError`] naming the record and field at fault. The build tool writes the
//! blob with [`encode`]. docs/ABI.md ("Boot information") lists every field and every check.

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

mod encode;
mod error;
mod parse;

pub use encode::{encode, encoded_len, seal, EncodeError, Tables};
pub use error::{BootInfoError, Fault, Record};
pub use parse::{name_str, BootInfo};

/// The smallest page: every mapping's IPA, PA and size are multiples of it.
pub const PAGE_SIZE: u64 = crate::addr::PAGE_SIZE;
/// The 2 MiB block size a `page_size="0x200000"` region uses.
pub const LARGE_PAGE_SIZE: u64 = crate::addr::BLOCK_SIZE;
/// Domains have a 40-bit IPA space (VTCR_EL2.T0SZ = 24): every mapping ends at or below this.
pub const IPA_LIMIT: u64 = 1 << crate::addr::IPA_BITS;
/// Initial stack pointer of every PD: its stack mapping ends here. The page at and above it is
/// left unmapped, so nothing sits right above the stack.
pub const PD_STACK_TOP: u64 = 0x00FF_FFFF_F000;
/// Highest Microkit channel id (channel ids are bits of a `u64` notification word, 0..=61).
pub const MAX_CHANNEL_ID: u32 = 61;
/// Most channels a system may have: the hypervisor's channel table holds this many, and the
/// build tool refuses a system with more (Microkit bounds only the ids of each PD).
pub const MAX_CHANNELS: usize = 256;
/// Highest `<vcpu id>`. vCPU ids share their parent's child-id space with its child PDs' ids
/// (as in Microkit), whose ids are 0..=61.
pub const MAX_VCPU_ID: u32 = 61;
/// Most vCPUs one virtual machine may have. A Frameshift limit (Microkit allows more): the
/// hypervisor keeps each VM's vCPUs in a fixed array of this size.
pub const MAX_VCPUS: usize = 4;
/// Highest Microkit priority.
pub const MAX_PRIORITY: u8 = 254;
/// Lowest GIC shared peripheral interrupt id (SPI): PDs may only be given SPIs; SGIs and PPIs
/// (the EL2 timer is PPI 26) belong to the hypervisor.
pub const FIRST_SPI: u32 = 32;
/// Highest GIC SPI id (1020..=1023 are special INTIDs).
pub const LAST_SPI: u32 = 1019;

/// The symbol in the hypervisor ELF that holds `[boot info physical address, size in bytes]`.
pub const BOOT_INFO_SYMBOL: &str = "FRAMESHIFT_BOOT_INFO";

/// `b"FSBOOTv1"`: names the format; [`BOOT_INFO_VERSION`] names its layout.
pub const BOOT_INFO_MAGIC: [u8; 8] = *b"FSBOOTv1";
/// The layout version this crate describes. Version 2 added [`DOMAIN_FLAG_SPLIT`] and replaced
/// version 1's always-zero `ipc_buffer` field with [`DomainDesc::vcpu_ids`].
pub const BOOT_INFO_VERSION: u32 = 2;
/// Longest domain name, in bytes, without the NUL padding.
pub const NAME_LEN: usize = 64;
/// "No domain" / "no region" marker for `u32` index fields.
pub const NONE: u32 = u32::MAX;

/// The fixed header at offset 0 of the boot information.
#[derive(Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct BootInfoHeader {
    /// [`BOOT_INFO_MAGIC`].
    pub magic: [u8; 8],
    /// [`BOOT_INFO_VERSION`].
    pub version: u32,
    /// `size_of::<BootInfoHeader>()`.
    pub header_size: u32,
    /// Size of the whole blob in bytes, header included.
    pub total_size: u32,
    /// CRC-32 (IEEE 802.3, as zlib's `crc32`) of the whole blob with this field read as zero.
    pub checksum: u32,
    /// Physical base of RAM (QEMU `virt`: 0x4000_0000).
    pub ram_base: u64,
    /// RAM size in bytes.
    pub ram_size: u64,
    /// Physical range reserved for the hypervisor (its image, stacks, heap for tables, and this
    /// blob). No domain may map any part of it (I4).
    pub hypervisor_base: u64,
    /// Size of the hypervisor's reserved range.
    pub hypervisor_size: u64,
    /// Physical range whose 4 KiB frames the frame table tracks (all domain memory lies in it).
    pub convertible_base: u64,
    /// Size of the convertible range.
    pub convertible_size: u64,
    /// Number of [`DomainDesc`] records.
    pub domain_count: u32,
    /// Byte offset of the first [`DomainDesc`].
    pub domains_offset: u32,
    /// Number of [`MappingDesc`] records.
    pub mapping_count: u32,
    /// Byte offset of the first [`MappingDesc`].
    pub mappings_offset: u32,
    /// Number of [`ChannelDesc`] records.
    pub channel_count: u32,
    /// Byte offset of the first [`ChannelDesc`].
    pub channels_offset: u32,
    /// Number of [`IrqDesc`] records.
    pub irq_count: u32,
    /// Byte offset of the first [`IrqDesc`].
    pub irqs_offset: u32,
}

/// [`DomainDesc::kind`]: a Microkit protection domain.
pub const DOMAIN_KIND_PD: u8 = 0;
/// [`DomainDesc::kind`]: a virtual machine (a child of its VMM PD).
pub const DOMAIN_KIND_VM: u8 = 1;

/// [`DomainDesc::flags`]: Microkit `passive="true"`.
pub const DOMAIN_FLAG_PASSIVE: u8 = 1 << 0;
/// [`DomainDesc::flags`]: a protected VM (the Frameshift extension, docs/SDF.md).
pub const DOMAIN_FLAG_PROTECTED: u8 = 1 << 1;
/// [`DomainDesc::flags`]: a protected VM in split conversion mode (`conversion="split"`): its
/// shared pages appear at their IPA with [`crate::addr::SHARED_ALIAS_BIT`] set, so all of its
/// mappings lie below that bit. Without it a protected VM is in history mode. Only on a VM, and
/// only with [`DOMAIN_FLAG_PROTECTED`].
pub const DOMAIN_FLAG_SPLIT: u8 = 1 << 2;

/// One protection domain or virtual machine.
#[derive(Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct DomainDesc {
    /// The name from system.xml, NUL padded (at most [`NAME_LEN`] bytes, UTF-8).
    pub name: [u8; NAME_LEN],
    /// [`DOMAIN_KIND_PD`] or [`DOMAIN_KIND_VM`].
    pub kind: u8,
    /// Microkit priority, 0..=254.
    pub priority: u8,
    /// `DOMAIN_FLAG_*` bits.
    pub flags: u8,
    /// Reserved, zero.
    pub reserved0: u8,
    /// Index of the parent domain, or [`NONE`].
    pub parent: u32,
    /// The `id` this domain has as a child of its parent (Microkit child id), or [`NONE`]. For a
    /// VM, its lowest `<vcpu id>`.
    pub child_id: u32,
    /// Index of the domain's first record in the mapping table.
    pub first_mapping: u32,
    /// Number of consecutive mapping records that belong to this domain.
    pub mapping_count: u32,
    /// Reserved, zero.
    pub reserved1: u32,
    /// Entry point (IPA; for a PD with stage 1 off this is the ELF entry address).
    pub entry: u64,
    /// Initial stack pointer (IPA): the top of the stack mapping. Zero for a VM.
    pub stack_top: u64,
    /// VM: bit `id` set for each `<vcpu id>` (ids 0..=[`MAX_VCPU_ID`], 1 to [`MAX_VCPUS`] bits).
    /// vCPU index `n` is the `n`th lowest id, and its MPIDR Aff0 is `n` ([`DomainDesc::vcpus`]).
    /// PD: zero.
    pub vcpu_ids: u64,
}

impl DomainDesc {
    /// The vCPU ids of a VM in index order (ascending); empty for a PD. The position of an id
    /// in this sequence is the vCPU's index.
    pub fn vcpus(&self) -> impl Iterator<Item = u32> {
        let mut remaining = self.vcpu_ids;
        core::iter::from_fn(move || {
            if remaining == 0 {
                return None;
            }
            let id = remaining.trailing_zeros();
            remaining &= remaining - 1;
            Some(id)
        })
    }
}

/// [`MappingDesc::rights`]: readable.
pub const RIGHT_READ: u8 = 1 << 0;
/// [`MappingDesc::rights`]: writable.
pub const RIGHT_WRITE: u8 = 1 << 1;
/// [`MappingDesc::rights`]: executable.
pub const RIGHT_EXECUTE: u8 = 1 << 2;

/// [`MappingDesc::kind`]: a loadable segment of the domain's program image.
pub const MAPPING_KIND_PROGRAM: u8 = 0;
/// [`MappingDesc::kind`]: a `<map>` of a `<memory_region>`.
pub const MAPPING_KIND_REGION: u8 = 1;
/// [`MappingDesc::kind`]: the domain's stack.
pub const MAPPING_KIND_STACK: u8 = 2;
/// [`MappingDesc::kind`]: the domain's IPC buffer.
pub const MAPPING_KIND_IPC_BUFFER: u8 = 3;
/// [`MappingDesc::kind`]: a device region (`phys_addr` outside RAM); mapped as Device memory.
pub const MAPPING_KIND_DEVICE: u8 = 4;
/// [`MappingDesc::kind`]: a VMM's window onto a protected guest's RAM (only shared pages are
/// accessible through it).
pub const MAPPING_KIND_WINDOW: u8 = 5;

/// [`MappingDesc::state`]: the domain owns the frames exclusively (DESIGN 4 `Owned`).
pub const MAPPING_STATE_OWNED: u8 = 0;
/// [`MappingDesc::state`]: the domain owns the frames and shares them with the domains holding
/// `MAPPING_STATE_SHARED_BORROWED` mappings of the same physical range (`SharedOwned`).
pub const MAPPING_STATE_SHARED_OWNED: u8 = 1;
/// [`MappingDesc::state`]: the frames belong to the domain holding the `SHARED_OWNED` mapping of
/// the same physical range; this domain borrows them (`SharedBorrowed`).
pub const MAPPING_STATE_SHARED_BORROWED: u8 = 2;
/// [`MappingDesc::state`]: nothing is accessible yet (`NoPage`). Used by a
/// [`MAPPING_KIND_WINDOW`] mapping: the protected guest owns the frames (guest-private from
/// boot), and pages appear in the window only when the guest shares them.
pub const MAPPING_STATE_NO_PAGE: u8 = 3;
/// [`MappingDesc::state`]: device memory outside RAM; not tracked by the frame table.
pub const MAPPING_STATE_UNTRACKED: u8 = 4;

/// One stage-2 mapping: `size` bytes at `ipa` in `domain`'s VSpace onto `pa`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct MappingDesc {
    /// IPA of the first byte; 4 KiB aligned.
    pub ipa: u64,
    /// Physical address of the first byte; 4 KiB aligned.
    pub pa: u64,
    /// Size in bytes; a multiple of 4 KiB.
    pub size: u64,
    /// Index of the owning domain.
    pub domain: u32,
    /// Index of the memory region this mapping comes from (in system.xml order), or [`NONE`].
    pub region: u32,
    /// `RIGHT_*` bits.
    pub rights: u8,
    /// 1 if cached (Normal write-back), 0 if uncached/device.
    pub cached: u8,
    /// `MAPPING_KIND_*`.
    pub kind: u8,
    /// Initial ownership state of the mapped frames as seen by `domain` (`MAPPING_STATE_*`).
    pub state: u8,
    /// Page size the builder chose: 12 (4 KiB) or 21 (2 MiB), as a shift.
    pub page_shift: u32,
}

/// [`ChannelDesc::flags`]: end A may notify end B.
pub const CHANNEL_A_NOTIFIES_B: u32 = 1 << 0;
/// [`ChannelDesc::flags`]: end B may notify end A.
pub const CHANNEL_B_NOTIFIES_A: u32 = 1 << 1;
/// [`ChannelDesc::flags`]: end A may make a protected procedure call to end B.
pub const CHANNEL_A_CALLS_B: u32 = 1 << 2;
/// [`ChannelDesc::flags`]: end B may make a protected procedure call to end A.
pub const CHANNEL_B_CALLS_A: u32 = 1 << 3;

/// One Microkit channel between two PDs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct ChannelDesc {
    /// Domain index of end A.
    pub domain_a: u32,
    /// Channel id at end A (0..=61).
    pub id_a: u32,
    /// Domain index of end B.
    pub domain_b: u32,
    /// Channel id at end B (0..=61).
    pub id_b: u32,
    /// `CHANNEL_*` bits.
    pub flags: u32,
    /// Reserved, zero.
    pub reserved0: u32,
}

/// [`IrqDesc::trigger`]: level triggered.
pub const IRQ_TRIGGER_LEVEL: u32 = 0;
/// [`IrqDesc::trigger`]: edge triggered.
pub const IRQ_TRIGGER_EDGE: u32 = 1;
/// Most interrupts a system may route to PDs: the hypervisor's interrupt table holds this many
/// (one bit each in a `u64` of acknowledgements), and the build tool refuses a system with more.
pub const MAX_IRQS: usize = 64;

/// One hardware interrupt delivered to a PD as a notification on a channel id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct IrqDesc {
    /// Domain index of the PD that receives it.
    pub domain: u32,
    /// GIC interrupt id (INTID).
    pub irq: u32,
    /// Channel id the PD sees it on (0..=61).
    pub channel_id: u32,
    /// `IRQ_TRIGGER_*`.
    pub trigger: u32,
}

#[cfg(test)]
mod tests;
