//! Why a boot-information blob was refused: the record, the field and the fault.

use core::fmt;

use crate::domain_name::DomainNameError;

/// The record a [`BootInfoError`] is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Record {
    /// The buffer the blob was given in.
    Buffer,
    /// The [`super::BootInfoHeader`].
    Header,
    /// [`super::DomainDesc`] number `n`.
    Domain(u32),
    /// [`super::MappingDesc`] number `n`.
    Mapping(u32),
    /// [`super::ChannelDesc`] number `n`.
    Channel(u32),
    /// [`super::IrqDesc`] number `n`.
    Irq(u32),
}

/// What is wrong with the field.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// The buffer does not start on an 8-byte boundary.
    BufferMisaligned,
    /// The buffer (or `total_size`) is shorter than the header.
    TooShort {
        /// Bytes available.
        len: u64,
        /// Bytes needed.
        need: u64,
    },
    /// The magic is not `FSBOOTv1`.
    BadMagic,
    /// A value that must be exactly `expected`.
    NotExpected {
        /// The value found.
        found: u64,
        /// The value required.
        expected: u64,
    },
    /// `total_size` is larger than the buffer.
    BeyondBuffer {
        /// `total_size`.
        total_size: u64,
        /// Buffer length.
        len: u64,
    },
    /// The stored CRC-32 does not match the contents.
    ChecksumMismatch {
        /// The stored checksum.
        stored: u32,
        /// The CRC-32 of the blob.
        computed: u32,
    },
    /// A reserved field is not zero.
    NotZero {
        /// The value found.
        found: u64,
    },
    /// A value is not a multiple of `align`.
    Misaligned {
        /// The value found.
        found: u64,
        /// The required alignment.
        align: u64,
    },
    /// `base + size` (or `offset + count * record size`) overflows.
    Overflow,
    /// A range or index ends past `limit`.
    OutOfBounds {
        /// The end (exclusive) or index found.
        found: u64,
        /// The limit it must not exceed (exclusive for indices, inclusive for range ends).
        limit: u64,
    },
    /// A value below the allowed minimum.
    TooSmall {
        /// The value found.
        found: u64,
        /// The minimum.
        min: u64,
    },
    /// A value that is not one of the defined constants or flag bits.
    UnknownValue {
        /// The value found.
        found: u64,
    },
    /// Two tables of the blob overlap (or overlap the header).
    TablesOverlap,
    /// A name that is empty, not UTF-8, or has bytes after its NUL padding.
    BadName,
    /// A name that breaks the domain-name rule ([`crate::domain_name`]): reserved for the
    /// hypervisor, or with a byte that would not print as itself in a console prefix.
    DomainName(DomainNameError),
    /// Another domain already has this name: both would print the same console prefix.
    DuplicateName {
        /// The index of the earlier domain with the same name.
        other: u32,
    },
    /// The parent index is not smaller than the domain's own index.
    ParentNotBefore {
        /// The parent index.
        parent: u32,
    },
    /// The parent is not a protection domain.
    ParentNotPd {
        /// The parent index.
        parent: u32,
    },
    /// A virtual machine without a parent PD.
    VmWithoutParent,
    /// A flag that is not allowed for this kind of domain.
    FlagNotAllowed {
        /// The flag bits at fault.
        flags: u64,
    },
    /// A flag that needs another flag the domain does not have ([`super::DOMAIN_FLAG_SPLIT`]
    /// without [`super::DOMAIN_FLAG_PROTECTED`]).
    FlagRequires {
        /// The flag bits at fault.
        flags: u64,
        /// The flag bits they need.
        requires: u64,
    },
    /// A protection domain with vCPU ids (only a VM has vCPUs).
    VcpusOnPd {
        /// The `vcpu_ids` found.
        ids: u64,
    },
    /// A virtual machine without a vCPU.
    NoVcpus,
    /// A vCPU id above [`super::MAX_VCPU_ID`].
    VcpuIdTooLarge {
        /// The highest id found.
        id: u32,
    },
    /// More vCPUs than [`super::MAX_VCPUS`].
    TooManyVcpus {
        /// How many the VM has.
        count: u32,
    },
    /// An id already claimed by a sibling: child PD ids and vCPU ids share their parent's
    /// child-id space.
    DuplicateChildId {
        /// The id claimed twice.
        id: u32,
        /// The earlier child (domain index) that claims it.
        other: u32,
    },
    /// A mapping of a split-mode VM that reaches the shared alias half of its IPA space (IPA bit
    /// 39 and above), where its shared pages appear.
    InSharedAliasHalf {
        /// Where the mapping ends (exclusive).
        end: u64,
    },
    /// Domain mapping ranges must partition the mapping table in domain order.
    NotContiguous {
        /// The `first_mapping` the previous domains imply.
        expected: u64,
    },
    /// The mapping sits in the range of another domain.
    WrongDomain {
        /// The domain whose range contains the mapping.
        expected: u32,
    },
    /// The physical range touches the hypervisor's reserved range (invariant I4).
    HypervisorMemory {
        /// First byte.
        pa: u64,
        /// Size in bytes.
        size: u64,
    },
    /// A RAM mapping outside the convertible range.
    NotConvertible {
        /// First byte.
        pa: u64,
        /// Size in bytes.
        size: u64,
    },
    /// A device mapping that touches RAM.
    DeviceInRam {
        /// First byte.
        pa: u64,
        /// Size in bytes.
        size: u64,
    },
    /// A device mapping that touches a device no domain may map: one the hypervisor drives, or
    /// one that can DMA with no IOMMU in front of it (docs/ISOLATION.md, I10).
    ForbiddenDevice {
        /// The device's name in [`crate::platform`]'s table.
        device: &'static str,
    },
    /// A second virtual machine under one parent PD (Microkit allows one).
    SecondVirtualMachine {
        /// Index of the parent's first VM.
        other: u32,
    },
    /// The ownership state is not allowed for this mapping kind.
    StateNotAllowed {
        /// `MAPPING_KIND_*`.
        kind: u8,
        /// `MAPPING_STATE_*`.
        state: u8,
    },
    /// The mapping kind is not allowed in this kind of domain.
    KindNotAllowed {
        /// `MAPPING_KIND_*`.
        kind: u8,
    },
    /// An exclusively owned physical range is also mapped by another mapping.
    PhysicalOverlap {
        /// The other mapping's index.
        other: u32,
    },
    /// Two mappings of one domain overlap in its IPA space.
    IpaOverlap {
        /// The other mapping's index.
        other: u32,
    },
    /// A borrowed or window mapping without the mapping it refers to (the `SHARED_OWNED`
    /// mapping of the same range, or the protected child's `OWNED` mapping).
    NoOwner,
    /// A channel or IRQ names a virtual machine, not a protection domain.
    NotAPd {
        /// The domain index.
        domain: u32,
    },
    /// The channel id is already used by another channel or IRQ of the same domain.
    DuplicateChannelId {
        /// The id.
        id: u32,
    },
    /// The interrupt is already given to another record.
    DuplicateIrq {
        /// The other IRQ record.
        other: u32,
    },
}

/// A refused boot-information blob. `Display` prints one line naming the record and field; the
/// hypervisor prints it and powers off with a failure status.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BootInfoError {
    /// The record at fault.
    pub record: Record,
    /// The field at fault (as named in the Rust layout and docs/ABI.md).
    pub field: &'static str,
    /// What is wrong with it.
    pub fault: Fault,
}

impl BootInfoError {
    pub(super) const fn new(record: Record, field: &'static str, fault: Fault) -> Self {
        Self {
            record,
            field,
            fault,
        }
    }
}

impl fmt::Display for Record {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Buffer => write!(f, "buffer"),
            Self::Header => write!(f, "header"),
            Self::Domain(n) => write!(f, "domain {n}"),
            Self::Mapping(n) => write!(f, "mapping {n}"),
            Self::Channel(n) => write!(f, "channel {n}"),
            Self::Irq(n) => write!(f, "irq {n}"),
        }
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::BufferMisaligned => write!(f, "buffer is not 8-byte aligned"),
            Self::TooShort { len, need } => write!(f, "{len} bytes, need at least {need}"),
            Self::BadMagic => write!(f, "magic is not \"FSBOOTv1\""),
            Self::NotExpected { found, expected } => {
                write!(f, "is {found}, must be {expected}")
            }
            Self::BeyondBuffer { total_size, len } => {
                write!(f, "{total_size} bytes exceeds the {len}-byte buffer")
            }
            Self::ChecksumMismatch { stored, computed } => {
                write!(
                    f,
                    "stored CRC-32 {stored:#010x} but contents give {computed:#010x}"
                )
            }
            Self::NotZero { found } => write!(f, "reserved, must be zero, is {found:#x}"),
            Self::Misaligned { found, align } => {
                write!(f, "{found:#x} is not a multiple of {align:#x}")
            }
            Self::Overflow => write!(f, "address arithmetic overflows"),
            Self::OutOfBounds { found, limit } => write!(f, "{found:#x} is beyond {limit:#x}"),
            Self::TooSmall { found, min } => write!(f, "{found:#x} is below {min:#x}"),
            Self::UnknownValue { found } => write!(f, "unknown value {found:#x}"),
            Self::TablesOverlap => write!(f, "table overlaps the header or another table"),
            Self::BadName => write!(f, "not a non-empty NUL-padded UTF-8 name"),
            Self::DomainName(error) => write!(f, "{error}"),
            Self::DuplicateName { other } => {
                write!(f, "the name is already used by domain {other}")
            }
            Self::ParentNotBefore { parent } => {
                write!(f, "parent {parent} does not come before the domain")
            }
            Self::ParentNotPd { parent } => {
                write!(f, "parent {parent} is not a protection domain")
            }
            Self::VmWithoutParent => write!(f, "a virtual machine needs a parent PD"),
            Self::FlagNotAllowed { flags } => {
                write!(f, "flags {flags:#x} not allowed for this kind of domain")
            }
            Self::FlagRequires { flags, requires } => {
                write!(f, "flags {flags:#x} need flags {requires:#x}")
            }
            Self::VcpusOnPd { ids } => write!(
                f,
                "a protection domain has no vCPUs, but vCPU id set {ids:#x} is given"
            ),
            Self::NoVcpus => write!(f, "a virtual machine needs at least one vCPU"),
            Self::VcpuIdTooLarge { id } => {
                write!(f, "vCPU id {id} is above {}", super::MAX_VCPU_ID)
            }
            Self::TooManyVcpus { count } => {
                write!(f, "{count} vCPUs, at most {}", super::MAX_VCPUS)
            }
            Self::DuplicateChildId { id, other } => write!(
                f,
                "child id {id} is already used by domain {other}, a child of the same parent \
                 (child PD ids and vCPU ids share one id space)"
            ),
            Self::InSharedAliasHalf { end } => write!(
                f,
                "a split-mode VM's mapping ends at {end:#x}, in the shared alias half (from {:#x})",
                crate::addr::SHARED_ALIAS_BIT
            ),
            Self::NotContiguous { expected } => write!(
                f,
                "mapping ranges must follow each other in domain order (expected {expected})"
            ),
            Self::WrongDomain { expected } => {
                write!(f, "mapping lies in the range of domain {expected}")
            }
            Self::HypervisorMemory { pa, size } => write!(
                f,
                "[{pa:#x}, +{size:#x}) touches the hypervisor's reserved memory (I4)"
            ),
            Self::NotConvertible { pa, size } => {
                write!(
                    f,
                    "[{pa:#x}, +{size:#x}) is not inside the convertible range"
                )
            }
            Self::DeviceInRam { pa, size } => {
                write!(f, "device range [{pa:#x}, +{size:#x}) touches RAM")
            }
            Self::ForbiddenDevice { device } => write!(
                f,
                "maps {device}, which no domain may map (the hypervisor drives it, or it can DMA around stage 2)"
            ),
            Self::SecondVirtualMachine { other } => write!(
                f,
                "its parent already has a virtual machine (domain {other}); a PD has at most one"
            ),
            Self::StateNotAllowed { kind, state } => {
                write!(f, "state {state} not allowed for mapping kind {kind}")
            }
            Self::KindNotAllowed { kind } => {
                write!(f, "mapping kind {kind} not allowed in this kind of domain")
            }
            Self::PhysicalOverlap { other } => {
                write!(
                    f,
                    "exclusively owned frames are also mapped by mapping {other}"
                )
            }
            Self::IpaOverlap { other } => write!(f, "overlaps mapping {other} in the IPA space"),
            Self::NoOwner => write!(f, "no owning mapping of the same physical range"),
            Self::NotAPd { domain } => write!(f, "domain {domain} is not a protection domain"),
            Self::DuplicateChannelId { id } => {
                write!(f, "channel id {id} is already used in this domain")
            }
            Self::DuplicateIrq { other } => write!(f, "interrupt already given by irq {other}"),
        }
    }
}

impl fmt::Display for BootInfoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "boot info refused: {} field `{}`: {}",
            self.record, self.field, self.fault
        )
    }
}
