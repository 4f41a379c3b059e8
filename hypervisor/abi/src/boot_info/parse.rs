//! The validating reader: bytes in, typed records out, or the first rule the blob breaks.
//!
//! Checks run in this order, each only once the ones it relies on passed: buffer alignment and
//! length, magic, version, header size, total size, CRC-32, memory layout, table placement, then
//! every domain, mapping, channel and IRQ record, then the cross-record rules (ownership of
//! shared frames, IPA overlaps, channel-id and IRQ uniqueness). Nothing here panics or indexes
//! without a bound check: the blob is untrusted (DESIGN.md 3).

use core::mem::size_of;

use zerocopy::FromBytes;

use super::encode::checksum;
use super::error::{BootInfoError, Fault, Record};
use super::{
    BootInfoHeader, ChannelDesc, DomainDesc, IrqDesc, MappingDesc, BOOT_INFO_MAGIC,
    BOOT_INFO_VERSION, CHANNEL_A_CALLS_B, CHANNEL_A_NOTIFIES_B, CHANNEL_B_CALLS_A,
    CHANNEL_B_NOTIFIES_A, DOMAIN_FLAG_PASSIVE, DOMAIN_FLAG_PROTECTED, DOMAIN_FLAG_SPLIT,
    DOMAIN_KIND_PD, DOMAIN_KIND_VM, FIRST_SPI, IPA_LIMIT, IRQ_TRIGGER_EDGE, IRQ_TRIGGER_LEVEL,
    LARGE_PAGE_SIZE, LAST_SPI, MAPPING_KIND_DEVICE, MAPPING_KIND_IPC_BUFFER, MAPPING_KIND_PROGRAM,
    MAPPING_KIND_REGION, MAPPING_KIND_STACK, MAPPING_KIND_WINDOW, MAPPING_STATE_NO_PAGE,
    MAPPING_STATE_OWNED, MAPPING_STATE_SHARED_BORROWED, MAPPING_STATE_SHARED_OWNED,
    MAPPING_STATE_UNTRACKED, MAX_CHANNEL_ID, MAX_PRIORITY, MAX_VCPUS, MAX_VCPU_ID, NAME_LEN, NONE,
    PAGE_SIZE, RIGHT_EXECUTE, RIGHT_READ, RIGHT_WRITE,
};
use crate::addr::SHARED_ALIAS_BIT;
use crate::domain_name;

/// A boot-information blob that passed every check of [`BootInfo::parse`].
#[derive(Clone, Copy, Debug)]
pub struct BootInfo<'a> {
    header: &'a BootInfoHeader,
    domains: &'a [DomainDesc],
    mappings: &'a [MappingDesc],
    channels: &'a [ChannelDesc],
    irqs: &'a [IrqDesc],
}

/// The name in a NUL-padded name field, if it is non-empty UTF-8 with only NULs after it.
pub fn name_str(field: &[u8; NAME_LEN]) -> Option<&str> {
    let len = field.iter().position(|&byte| byte == 0).unwrap_or(NAME_LEN);
    let (name, padding) = field.split_at(len);
    if name.is_empty() || padding.iter().any(|&byte| byte != 0) {
        return None;
    }
    core::str::from_utf8(name).ok()
}

/// The ids a child claims in its parent's child-id space, as a bit set: a PD its `child_id`,
/// a VM its vCPU ids. `None` for a domain without a parent (or a `child_id` past 63, which the
/// caller has refused already).
fn child_ids(domain: &DomainDesc) -> Option<u64> {
    if domain.parent == NONE {
        None
    } else if domain.kind == DOMAIN_KIND_VM {
        Some(domain.vcpu_ids)
    } else {
        1u64.checked_shl(domain.child_id)
    }
}

/// Shorthand for building an error.
const fn refuse(record: Record, field: &'static str, fault: Fault) -> BootInfoError {
    BootInfoError::new(record, field, fault)
}

/// Record indices are `u32` in the blob; every index here is below a `u32` count.
fn index(value: usize) -> u32 {
    u32::try_from(value).unwrap_or(NONE)
}

/// `[a, a + a_size)` and `[b, b + b_size)` share a byte (ends already checked not to overflow).
fn overlaps(a: u64, a_size: u64, b: u64, b_size: u64) -> bool {
    a < b.saturating_add(b_size) && b < a.saturating_add(a_size)
}

/// `[inner, inner + inner_size)` lies inside `[outer, outer + outer_size)`.
fn inside(inner: u64, inner_size: u64, outer: u64, outer_size: u64) -> bool {
    inner >= outer && inner.saturating_add(inner_size) <= outer.saturating_add(outer_size)
}

impl<'a> BootInfo<'a> {
    /// Validates `bytes` (which must start 8-byte aligned and hold at least `total_size` bytes)
    /// and returns typed views of its records. Bytes past `total_size` are ignored.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, BootInfoError> {
        if !(bytes.as_ptr() as usize).is_multiple_of(8) {
            return Err(refuse(Record::Buffer, "address", Fault::BufferMisaligned));
        }
        let header_size = size_of::<BootInfoHeader>();
        let Ok((header, _)) = BootInfoHeader::ref_from_prefix(bytes) else {
            return Err(refuse(
                Record::Buffer,
                "length",
                Fault::TooShort {
                    len: bytes.len() as u64,
                    need: header_size as u64,
                },
            ));
        };
        Self::check_framing(header, bytes)?;
        let blob = bytes.get(..header.total_size as usize).unwrap_or_default();
        Self::check_layout(header)?;
        let info = Self {
            header,
            domains: table(
                blob,
                header,
                "domains_offset",
                header.domains_offset,
                header.domain_count,
            )?,
            mappings: table(
                blob,
                header,
                "mappings_offset",
                header.mappings_offset,
                header.mapping_count,
            )?,
            channels: table(
                blob,
                header,
                "channels_offset",
                header.channels_offset,
                header.channel_count,
            )?,
            irqs: table(
                blob,
                header,
                "irqs_offset",
                header.irqs_offset,
                header.irq_count,
            )?,
        };
        info.check_tables_disjoint()?;
        info.check_domains()?;
        info.check_mappings()?;
        info.check_mapping_ownership()?;
        info.check_channels()?;
        info.check_irqs()?;
        Ok(info)
    }

    /// The header.
    pub fn header(&self) -> &'a BootInfoHeader {
        self.header
    }

    /// Every domain, parents before children.
    pub fn domains(&self) -> &'a [DomainDesc] {
        self.domains
    }

    /// Every mapping, grouped by domain.
    pub fn mappings(&self) -> &'a [MappingDesc] {
        self.mappings
    }

    /// Every channel.
    pub fn channels(&self) -> &'a [ChannelDesc] {
        self.channels
    }

    /// Every interrupt.
    pub fn irqs(&self) -> &'a [IrqDesc] {
        self.irqs
    }

    /// The mappings of domain `domain` (empty if there is no such domain).
    pub fn domain_mappings(&self, domain: usize) -> &'a [MappingDesc] {
        let Some(desc) = self.domains.get(domain) else {
            return &[];
        };
        let first = desc.first_mapping as usize;
        self.mappings
            .get(first..first + desc.mapping_count as usize)
            .unwrap_or_default()
    }

    /// The name of domain `domain` (empty if there is no such domain).
    pub fn domain_name(&self, domain: usize) -> &'a str {
        self.domains
            .get(domain)
            .and_then(|desc| name_str(&desc.name))
            .unwrap_or_default()
    }

    /// The physical range a validated blob leaves for the hypervisor's own heap: from the end
    /// of the blob at `blob_pa` to the end of the hypervisor's reserved range, or `None` if
    /// the blob does not lie inside that range.
    pub fn hypervisor_heap(&self, blob_pa: u64) -> Option<(u64, u64)> {
        let header = self.header;
        let start = blob_pa.checked_add(u64::from(header.total_size))?;
        let start = start.checked_next_multiple_of(PAGE_SIZE)?;
        let end = header.hypervisor_base + header.hypervisor_size;
        (blob_pa >= header.hypervisor_base && start <= end).then_some((start, end - start))
    }

    fn check_framing(header: &BootInfoHeader, bytes: &[u8]) -> Result<(), BootInfoError> {
        let field = |name, fault| Err(refuse(Record::Header, name, fault));
        if header.magic != BOOT_INFO_MAGIC {
            return field("magic", Fault::BadMagic);
        }
        if header.version != BOOT_INFO_VERSION {
            let fault = Fault::NotExpected {
                found: header.version.into(),
                expected: BOOT_INFO_VERSION.into(),
            };
            return field("version", fault);
        }
        let header_size = size_of::<BootInfoHeader>() as u64;
        if u64::from(header.header_size) != header_size {
            let fault = Fault::NotExpected {
                found: header.header_size.into(),
                expected: header_size,
            };
            return field("header_size", fault);
        }
        let total = u64::from(header.total_size);
        if total < header_size {
            return field(
                "total_size",
                Fault::TooShort {
                    len: total,
                    need: header_size,
                },
            );
        }
        if total > bytes.len() as u64 {
            let fault = Fault::BeyondBuffer {
                total_size: total,
                len: bytes.len() as u64,
            };
            return field("total_size", fault);
        }
        let blob = bytes.get(..header.total_size as usize).unwrap_or_default();
        let computed = checksum(blob);
        if computed != header.checksum {
            return field(
                "checksum",
                Fault::ChecksumMismatch {
                    stored: header.checksum,
                    computed,
                },
            );
        }
        Ok(())
    }

    fn check_layout(header: &BootInfoHeader) -> Result<(), BootInfoError> {
        let ranges = [
            ("ram_base", "ram_size", header.ram_base, header.ram_size),
            (
                "hypervisor_base",
                "hypervisor_size",
                header.hypervisor_base,
                header.hypervisor_size,
            ),
            (
                "convertible_base",
                "convertible_size",
                header.convertible_base,
                header.convertible_size,
            ),
        ];
        for (base_name, size_name, base, size) in ranges {
            check_page_range(Record::Header, base_name, size_name, base, size, PAGE_SIZE)?;
        }
        let (ram, ram_size) = (header.ram_base, header.ram_size);
        let inside_ram = [
            (
                "hypervisor_size",
                header.hypervisor_base,
                header.hypervisor_size,
            ),
            (
                "convertible_size",
                header.convertible_base,
                header.convertible_size,
            ),
        ];
        for (size_name, base, size) in inside_ram {
            if !inside(base, size, ram, ram_size) {
                let fault = Fault::OutOfBounds {
                    found: base.saturating_add(size),
                    limit: ram + ram_size,
                };
                return Err(refuse(Record::Header, size_name, fault));
            }
        }
        if overlaps(
            header.convertible_base,
            header.convertible_size,
            header.hypervisor_base,
            header.hypervisor_size,
        ) {
            let fault = Fault::HypervisorMemory {
                pa: header.convertible_base,
                size: header.convertible_size,
            };
            return Err(refuse(Record::Header, "convertible_base", fault));
        }
        Ok(())
    }

    fn check_tables_disjoint(&self) -> Result<(), BootInfoError> {
        let header = self.header;
        let spans = [
            (
                "domains_offset",
                header.domains_offset,
                size_of_val(self.domains),
            ),
            (
                "mappings_offset",
                header.mappings_offset,
                size_of_val(self.mappings),
            ),
            (
                "channels_offset",
                header.channels_offset,
                size_of_val(self.channels),
            ),
            ("irqs_offset", header.irqs_offset, size_of_val(self.irqs)),
        ];
        for (position, &(name, offset, len)) in spans.iter().enumerate() {
            let clash = spans
                .iter()
                .skip(position + 1)
                .any(|&(_, other, other_len)| {
                    len != 0
                        && other_len != 0
                        && overlaps(offset.into(), len as u64, other.into(), other_len as u64)
                });
            if clash {
                return Err(refuse(Record::Header, name, Fault::TablesOverlap));
            }
        }
        Ok(())
    }

    fn check_domains(&self) -> Result<(), BootInfoError> {
        let mut expected_first: u64 = 0;
        for (position, domain) in self.domains.iter().enumerate() {
            let record = Record::Domain(index(position));
            let err = |field, fault| Err(refuse(record, field, fault));
            let Some(name) = name_str(&domain.name) else {
                return err("name", Fault::BadName);
            };
            // The name becomes the domain's console prefix: it must print as itself and must
            // not be the hypervisor's (domain_name.rs).
            if let Err(error) = domain_name::check(name.as_bytes()) {
                return err("name", Fault::DomainName(error));
            }
            // Two domains with one name would print the same prefix. Quadratic, like the
            // mapping checks; the table is bounded by the blob (and the kernel takes 63).
            if let Some(other) = self.domains[..position]
                .iter()
                .position(|earlier| earlier.name == domain.name)
            {
                let fault = Fault::DuplicateName {
                    other: index(other),
                };
                return err("name", fault);
            }
            if domain.kind != DOMAIN_KIND_PD && domain.kind != DOMAIN_KIND_VM {
                return err(
                    "kind",
                    Fault::UnknownValue {
                        found: domain.kind.into(),
                    },
                );
            }
            if domain.priority > MAX_PRIORITY {
                let fault = Fault::OutOfBounds {
                    found: domain.priority.into(),
                    limit: MAX_PRIORITY.into(),
                };
                return err("priority", fault);
            }
            let known = DOMAIN_FLAG_PASSIVE | DOMAIN_FLAG_PROTECTED | DOMAIN_FLAG_SPLIT;
            if domain.flags & !known != 0 {
                return err(
                    "flags",
                    Fault::UnknownValue {
                        found: domain.flags.into(),
                    },
                );
            }
            let not_for_kind = if domain.kind == DOMAIN_KIND_PD {
                DOMAIN_FLAG_PROTECTED | DOMAIN_FLAG_SPLIT
            } else {
                DOMAIN_FLAG_PASSIVE
            };
            if domain.flags & not_for_kind != 0 {
                return err(
                    "flags",
                    Fault::FlagNotAllowed {
                        flags: (domain.flags & not_for_kind).into(),
                    },
                );
            }
            // Split mode is a way of converting protected memory: an unprotected VM has none.
            if domain.flags & DOMAIN_FLAG_SPLIT != 0 && domain.flags & DOMAIN_FLAG_PROTECTED == 0 {
                let fault = Fault::FlagRequires {
                    flags: DOMAIN_FLAG_SPLIT.into(),
                    requires: DOMAIN_FLAG_PROTECTED.into(),
                };
                return err("flags", fault);
            }
            if domain.reserved0 != 0 {
                return err(
                    "reserved0",
                    Fault::NotZero {
                        found: domain.reserved0.into(),
                    },
                );
            }
            if domain.reserved1 != 0 {
                return err(
                    "reserved1",
                    Fault::NotZero {
                        found: domain.reserved1.into(),
                    },
                );
            }
            if domain.parent == NONE {
                if domain.kind == DOMAIN_KIND_VM {
                    return err("parent", Fault::VmWithoutParent);
                }
                if domain.child_id != NONE {
                    let fault = Fault::NotExpected {
                        found: domain.child_id.into(),
                        expected: NONE.into(),
                    };
                    return err("child_id", fault);
                }
            } else {
                let parent = domain.parent;
                if parent as usize >= position {
                    return err("parent", Fault::ParentNotBefore { parent });
                }
                let parent_kind = self.domains.get(parent as usize).map(|desc| desc.kind);
                if parent_kind != Some(DOMAIN_KIND_PD) {
                    return err("parent", Fault::ParentNotPd { parent });
                }
                if domain.kind == DOMAIN_KIND_VM {
                    let earlier_vm = self.domains[..position]
                        .iter()
                        .position(|desc| desc.kind == DOMAIN_KIND_VM && desc.parent == parent);
                    if let Some(other) = earlier_vm {
                        let fault = Fault::SecondVirtualMachine {
                            other: index(other),
                        };
                        return err("parent", fault);
                    }
                }
                if domain.child_id > MAX_CHANNEL_ID {
                    let fault = Fault::OutOfBounds {
                        found: domain.child_id.into(),
                        limit: MAX_CHANNEL_ID.into(),
                    };
                    return err("child_id", fault);
                }
            }
            if u64::from(domain.first_mapping) != expected_first {
                let fault = Fault::NotContiguous {
                    expected: expected_first,
                };
                return err("first_mapping", fault);
            }
            expected_first += u64::from(domain.mapping_count);
            if expected_first > self.mappings.len() as u64 {
                let fault = Fault::OutOfBounds {
                    found: expected_first,
                    limit: self.mappings.len() as u64,
                };
                return err("mapping_count", fault);
            }
            if domain.entry >= IPA_LIMIT {
                return err(
                    "entry",
                    Fault::OutOfBounds {
                        found: domain.entry,
                        limit: IPA_LIMIT,
                    },
                );
            }
            if domain.stack_top > IPA_LIMIT {
                let fault = Fault::OutOfBounds {
                    found: domain.stack_top,
                    limit: IPA_LIMIT,
                };
                return err("stack_top", fault);
            }
            if !domain.stack_top.is_multiple_of(16) {
                // AArch64 requires SP to be 16-byte aligned when it is used for an access.
                return err(
                    "stack_top",
                    Fault::Misaligned {
                        found: domain.stack_top,
                        align: 16,
                    },
                );
            }
            self.check_vcpus(position, domain)?;
        }
        if expected_first != self.mappings.len() as u64 {
            let fault = Fault::NotExpected {
                found: self.mappings.len() as u64,
                expected: expected_first,
            };
            return Err(refuse(Record::Header, "mapping_count", fault));
        }
        Ok(())
    }

    /// The vCPU rules of domain `position`, whose parent and `child_id` were checked: a VM has
    /// 1 to [`MAX_VCPUS`] vCPU ids, each at most [`MAX_VCPU_ID`], and its `child_id` is the lowest;
    /// a PD has none; and no id is claimed twice among the children of one parent (PD child ids
    /// and vCPU ids share the parent's child-id space, as in Microkit).
    fn check_vcpus(&self, position: usize, domain: &DomainDesc) -> Result<(), BootInfoError> {
        let record = Record::Domain(index(position));
        let err = |field, fault| Err(refuse(record, field, fault));
        let ids = domain.vcpu_ids;
        if domain.kind != DOMAIN_KIND_VM {
            if ids != 0 {
                return err("vcpu_ids", Fault::VcpusOnPd { ids });
            }
        } else {
            if ids == 0 {
                return err("vcpu_ids", Fault::NoVcpus);
            }
            let highest = u64::BITS - 1 - ids.leading_zeros();
            if highest > MAX_VCPU_ID {
                return err("vcpu_ids", Fault::VcpuIdTooLarge { id: highest });
            }
            let count = ids.count_ones();
            if count as usize > MAX_VCPUS {
                return err("vcpu_ids", Fault::TooManyVcpus { count });
            }
            let lowest = ids.trailing_zeros();
            if domain.child_id != lowest {
                let fault = Fault::NotExpected {
                    found: domain.child_id.into(),
                    expected: lowest.into(),
                };
                return err("child_id", fault);
            }
        }
        let Some(claimed) = child_ids(domain) else {
            return Ok(());
        };
        let earlier = self.domains.iter().take(position).enumerate();
        for (other_position, other) in earlier {
            if other.parent != domain.parent {
                continue;
            }
            let common = child_ids(other).unwrap_or(0) & claimed;
            if common != 0 {
                let field = if domain.kind == DOMAIN_KIND_VM {
                    "vcpu_ids"
                } else {
                    "child_id"
                };
                let fault = Fault::DuplicateChildId {
                    id: common.trailing_zeros(),
                    other: index(other_position),
                };
                return err(field, fault);
            }
        }
        Ok(())
    }

    /// The domain whose mapping range holds mapping `position` (ranges checked contiguous).
    fn owner_of(&self, position: usize) -> Option<(usize, &'a DomainDesc)> {
        self.domains.iter().enumerate().find(|(_, desc)| {
            let first = desc.first_mapping as usize;
            position >= first && position < first + desc.mapping_count as usize
        })
    }

    fn check_mappings(&self) -> Result<(), BootInfoError> {
        let header = self.header;
        for (position, mapping) in self.mappings.iter().enumerate() {
            let record = Record::Mapping(index(position));
            let err = |field, fault| Err(refuse(record, field, fault));
            let Some((owner, domain)) = self.owner_of(position) else {
                // Unreachable after check_domains (the ranges cover the table); refuse anyway.
                return err(
                    "domain",
                    Fault::NotContiguous {
                        expected: position as u64,
                    },
                );
            };
            if mapping.domain as usize != owner {
                return err(
                    "domain",
                    Fault::WrongDomain {
                        expected: index(owner),
                    },
                );
            }
            let rights = RIGHT_READ | RIGHT_WRITE | RIGHT_EXECUTE;
            if mapping.rights == 0 || mapping.rights & !rights != 0 {
                return err(
                    "rights",
                    Fault::UnknownValue {
                        found: mapping.rights.into(),
                    },
                );
            }
            if mapping.cached > 1 {
                return err(
                    "cached",
                    Fault::UnknownValue {
                        found: mapping.cached.into(),
                    },
                );
            }
            if mapping.kind > MAPPING_KIND_WINDOW {
                return err(
                    "kind",
                    Fault::UnknownValue {
                        found: mapping.kind.into(),
                    },
                );
            }
            if mapping.state > MAPPING_STATE_UNTRACKED {
                return err(
                    "state",
                    Fault::UnknownValue {
                        found: mapping.state.into(),
                    },
                );
            }
            let kind_allowed = match domain.kind {
                DOMAIN_KIND_VM => {
                    matches!(mapping.kind, MAPPING_KIND_REGION | MAPPING_KIND_DEVICE)
                }
                _ => true,
            };
            if !kind_allowed {
                return err("kind", Fault::KindNotAllowed { kind: mapping.kind });
            }
            let state_allowed = match mapping.kind {
                MAPPING_KIND_PROGRAM | MAPPING_KIND_STACK | MAPPING_KIND_IPC_BUFFER => {
                    mapping.state == MAPPING_STATE_OWNED
                }
                MAPPING_KIND_REGION => matches!(
                    mapping.state,
                    MAPPING_STATE_OWNED
                        | MAPPING_STATE_SHARED_OWNED
                        | MAPPING_STATE_SHARED_BORROWED
                ),
                MAPPING_KIND_DEVICE => mapping.state == MAPPING_STATE_UNTRACKED,
                _ => mapping.state == MAPPING_STATE_NO_PAGE,
            };
            if !state_allowed {
                let fault = Fault::StateNotAllowed {
                    kind: mapping.kind,
                    state: mapping.state,
                };
                return err("state", fault);
            }
            let granule = match mapping.page_shift {
                12 => PAGE_SIZE,
                21 => LARGE_PAGE_SIZE,
                other => {
                    return err(
                        "page_shift",
                        Fault::UnknownValue {
                            found: other.into(),
                        },
                    )
                }
            };
            check_page_range(record, "ipa", "size", mapping.ipa, mapping.size, granule)?;
            check_page_range(record, "pa", "size", mapping.pa, mapping.size, granule)?;
            if mapping.ipa + mapping.size > IPA_LIMIT {
                let fault = Fault::OutOfBounds {
                    found: mapping.ipa + mapping.size,
                    limit: IPA_LIMIT,
                };
                return err("ipa", fault);
            }
            // A split-mode guest reaches its shared pages at IPA | SHARED_ALIAS_BIT: nothing
            // of its own may sit in that half.
            let split = domain.kind == DOMAIN_KIND_VM && domain.flags & DOMAIN_FLAG_SPLIT != 0;
            if split && mapping.ipa + mapping.size > SHARED_ALIAS_BIT {
                let fault = Fault::InSharedAliasHalf {
                    end: mapping.ipa + mapping.size,
                };
                return err("ipa", fault);
            }
            let (pa, size) = (mapping.pa, mapping.size);
            if overlaps(pa, size, header.hypervisor_base, header.hypervisor_size) {
                return err("pa", Fault::HypervisorMemory { pa, size });
            }
            if mapping.kind == MAPPING_KIND_DEVICE {
                if overlaps(pa, size, header.ram_base, header.ram_size) {
                    return err("pa", Fault::DeviceInRam { pa, size });
                }
                if let Some(device) = crate::platform::forbidden(pa, size) {
                    return err(
                        "pa",
                        Fault::ForbiddenDevice {
                            device: device.name,
                        },
                    );
                }
            } else if !inside(pa, size, header.convertible_base, header.convertible_size) {
                return err("pa", Fault::NotConvertible { pa, size });
            }
            let first = domain.first_mapping as usize;
            let later = self
                .mappings
                .iter()
                .enumerate()
                .skip(position + 1)
                .take((first + domain.mapping_count as usize).saturating_sub(position + 1));
            for (other_position, other) in later {
                if overlaps(mapping.ipa, mapping.size, other.ipa, other.size) {
                    return err(
                        "ipa",
                        Fault::IpaOverlap {
                            other: index(other_position),
                        },
                    );
                }
            }
        }
        Ok(())
    }

    /// `child` is a protected VM whose parent is `parent`.
    fn is_protected_child(&self, child: u32, parent: u32) -> bool {
        self.domains.get(child as usize).is_some_and(|desc| {
            desc.kind == DOMAIN_KIND_VM
                && desc.flags & DOMAIN_FLAG_PROTECTED != 0
                && desc.parent == parent
        })
    }

    /// May mappings `a` and `b`, whose physical ranges overlap, coexist at boot?
    fn may_share(&self, a: &MappingDesc, b: &MappingDesc) -> bool {
        let same_range = a.pa == b.pa && a.size == b.size;
        let pair = (a.state, b.state);
        match pair {
            // Devices are not tracked: several domains may map one device.
            (MAPPING_STATE_UNTRACKED, MAPPING_STATE_UNTRACKED) => true,
            (MAPPING_STATE_SHARED_OWNED, MAPPING_STATE_SHARED_BORROWED)
            | (MAPPING_STATE_SHARED_BORROWED, MAPPING_STATE_SHARED_OWNED)
            | (MAPPING_STATE_SHARED_BORROWED, MAPPING_STATE_SHARED_BORROWED) => same_range,
            // A protected guest's private RAM and its VMM's window onto it.
            (MAPPING_STATE_OWNED, MAPPING_STATE_NO_PAGE) => {
                same_range && self.is_protected_child(a.domain, b.domain)
            }
            (MAPPING_STATE_NO_PAGE, MAPPING_STATE_OWNED) => {
                same_range && self.is_protected_child(b.domain, a.domain)
            }
            _ => false,
        }
    }

    fn check_mapping_ownership(&self) -> Result<(), BootInfoError> {
        for (position, mapping) in self.mappings.iter().enumerate() {
            let record = Record::Mapping(index(position));
            for (other_position, other) in self.mappings.iter().enumerate() {
                if other_position == position
                    || !overlaps(mapping.pa, mapping.size, other.pa, other.size)
                {
                    continue;
                }
                if !self.may_share(mapping, other) {
                    let fault = Fault::PhysicalOverlap {
                        other: index(other_position),
                    };
                    return Err(refuse(record, "pa", fault));
                }
            }
            let needs = match mapping.state {
                MAPPING_STATE_SHARED_BORROWED => Some(MAPPING_STATE_SHARED_OWNED),
                MAPPING_STATE_NO_PAGE => Some(MAPPING_STATE_OWNED),
                _ => None,
            };
            if let Some(owner_state) = needs {
                let found = self.mappings.iter().any(|other| {
                    other.state == owner_state
                        && other.pa == mapping.pa
                        && other.size == mapping.size
                        && self.may_share(mapping, other)
                });
                if !found {
                    return Err(refuse(record, "state", Fault::NoOwner));
                }
            }
        }
        Ok(())
    }

    /// Refuses `domain` unless it is a PD.
    fn check_pd(
        &self,
        record: Record,
        field: &'static str,
        domain: u32,
    ) -> Result<(), BootInfoError> {
        match self.domains.get(domain as usize) {
            None => {
                let fault = Fault::OutOfBounds {
                    found: domain.into(),
                    limit: self.domains.len() as u64,
                };
                Err(refuse(record, field, fault))
            }
            Some(desc) if desc.kind != DOMAIN_KIND_PD => {
                Err(refuse(record, field, Fault::NotAPd { domain }))
            }
            Some(_) => Ok(()),
        }
    }

    /// Every (domain, channel id) that a channel end or an IRQ claims, in table order.
    fn claims(&self) -> impl Iterator<Item = (Record, &'static str, u32, u32)> + 'a {
        let channels = self
            .channels
            .iter()
            .enumerate()
            .flat_map(|(position, channel)| {
                let record = Record::Channel(index(position));
                [
                    (record, "id_a", channel.domain_a, channel.id_a),
                    (record, "id_b", channel.domain_b, channel.id_b),
                ]
            });
        let irqs = self.irqs.iter().enumerate().map(|(position, irq)| {
            (
                Record::Irq(index(position)),
                "channel_id",
                irq.domain,
                irq.channel_id,
            )
        });
        channels.chain(irqs)
    }

    fn check_channel_id(record: Record, field: &'static str, id: u32) -> Result<(), BootInfoError> {
        if id > MAX_CHANNEL_ID {
            let fault = Fault::OutOfBounds {
                found: id.into(),
                limit: MAX_CHANNEL_ID.into(),
            };
            return Err(refuse(record, field, fault));
        }
        Ok(())
    }

    fn check_channels(&self) -> Result<(), BootInfoError> {
        for (position, channel) in self.channels.iter().enumerate() {
            let record = Record::Channel(index(position));
            self.check_pd(record, "domain_a", channel.domain_a)?;
            self.check_pd(record, "domain_b", channel.domain_b)?;
            Self::check_channel_id(record, "id_a", channel.id_a)?;
            Self::check_channel_id(record, "id_b", channel.id_b)?;
            let known =
                CHANNEL_A_NOTIFIES_B | CHANNEL_B_NOTIFIES_A | CHANNEL_A_CALLS_B | CHANNEL_B_CALLS_A;
            if channel.flags & !known != 0 {
                return Err(refuse(
                    record,
                    "flags",
                    Fault::UnknownValue {
                        found: channel.flags.into(),
                    },
                ));
            }
            if channel.reserved0 != 0 {
                let fault = Fault::NotZero {
                    found: channel.reserved0.into(),
                };
                return Err(refuse(record, "reserved0", fault));
            }
        }
        Ok(())
    }

    fn check_irqs(&self) -> Result<(), BootInfoError> {
        for (position, irq) in self.irqs.iter().enumerate() {
            let record = Record::Irq(index(position));
            self.check_pd(record, "domain", irq.domain)?;
            if irq.irq < FIRST_SPI {
                let fault = Fault::TooSmall {
                    found: irq.irq.into(),
                    min: FIRST_SPI.into(),
                };
                return Err(refuse(record, "irq", fault));
            }
            if irq.irq > LAST_SPI {
                let fault = Fault::OutOfBounds {
                    found: irq.irq.into(),
                    limit: LAST_SPI.into(),
                };
                return Err(refuse(record, "irq", fault));
            }
            Self::check_channel_id(record, "channel_id", irq.channel_id)?;
            if irq.trigger != IRQ_TRIGGER_LEVEL && irq.trigger != IRQ_TRIGGER_EDGE {
                let fault = Fault::UnknownValue {
                    found: irq.trigger.into(),
                };
                return Err(refuse(record, "trigger", fault));
            }
            if let Some(other) = self
                .irqs
                .iter()
                .take(position)
                .position(|o| o.irq == irq.irq)
            {
                let fault = Fault::DuplicateIrq {
                    other: index(other),
                };
                return Err(refuse(record, "irq", fault));
            }
        }
        // Channel ids are bits of one notification word per PD: two claims of one bit in one
        // domain would make events indistinguishable.
        for (position, (record, field, domain, id)) in self.claims().enumerate() {
            let clash = self
                .claims()
                .take(position)
                .any(|(_, _, other_domain, other_id)| other_domain == domain && other_id == id);
            if clash {
                return Err(refuse(record, field, Fault::DuplicateChannelId { id }));
            }
        }
        Ok(())
    }
}

/// Checks that `[base, base + size)` is non-empty, `align`-aligned and does not overflow.
fn check_page_range(
    record: Record,
    base_name: &'static str,
    size_name: &'static str,
    base: u64,
    size: u64,
    align: u64,
) -> Result<(), BootInfoError> {
    if !base.is_multiple_of(align) {
        return Err(refuse(
            record,
            base_name,
            Fault::Misaligned { found: base, align },
        ));
    }
    if size == 0 {
        return Err(refuse(
            record,
            size_name,
            Fault::TooSmall {
                found: 0,
                min: align,
            },
        ));
    }
    if !size.is_multiple_of(align) {
        return Err(refuse(
            record,
            size_name,
            Fault::Misaligned { found: size, align },
        ));
    }
    if base.checked_add(size).is_none() {
        return Err(refuse(record, size_name, Fault::Overflow));
    }
    Ok(())
}

/// The `count` records of type `T` at `offset` in `blob`, checked in bounds and aligned.
fn table<'a, T: FromBytes + zerocopy::Immutable + zerocopy::KnownLayout>(
    blob: &'a [u8],
    header: &BootInfoHeader,
    field: &'static str,
    offset: u32,
    count: u32,
) -> Result<&'a [T], BootInfoError> {
    let err = |fault| Err(refuse(Record::Header, field, fault));
    let offset_bytes = u64::from(offset);
    if !offset_bytes.is_multiple_of(8) {
        return err(Fault::Misaligned {
            found: offset_bytes,
            align: 8,
        });
    }
    if offset_bytes < u64::from(header.header_size) {
        return err(Fault::TablesOverlap);
    }
    // u32 * record size fits in u64 without overflow.
    let end = offset_bytes + u64::from(count) * size_of::<T>() as u64;
    if end > blob.len() as u64 {
        return err(Fault::OutOfBounds {
            found: end,
            limit: blob.len() as u64,
        });
    }
    let bytes = blob.get(offset as usize..end as usize).unwrap_or_default();
    match <[T]>::ref_from_bytes(bytes) {
        Ok(records) => Ok(records),
        Err(_) => err(Fault::Misaligned {
            found: offset_bytes,
            align: 8,
        }),
    }
}
