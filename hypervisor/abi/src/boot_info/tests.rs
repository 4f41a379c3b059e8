//! Unit tests of the reader: a valid blob parses, any corrupted byte is refused, and each rule
//! refuses a blob (with a correct CRC) that breaks only that rule, naming the record and field.
#![allow(
    clippy::expect_used,
    reason = "a test fails loudly on the first unexpected result"
)]

extern crate std;

use std::string::ToString;
use std::vec;
use std::vec::Vec;

use zerocopy::{FromBytes, IntoBytes};

use super::*;

const MIB: u64 = 0x10_0000;
const RAM: u64 = 0x4000_0000;
const CONVERTIBLE: u64 = 0x4200_0000;
const GUEST_RAM_PA: u64 = CONVERTIBLE + 0x40_0000;
const SHARED_PA: u64 = CONVERTIBLE + 0x10_0000;

/// The records of a small valid system: a VMM PD with a protected guest, and a client PD.
#[derive(Clone)]
struct Sample {
    layout: BootInfoHeader,
    domains: Vec<DomainDesc>,
    mappings: Vec<MappingDesc>,
    channels: Vec<ChannelDesc>,
    irqs: Vec<IrqDesc>,
}

/// Backing storage with 8-byte alignment, as the hypervisor's 4 KiB-aligned blob has.
struct Aligned {
    words: Vec<u64>,
    len: usize,
}

impl Aligned {
    fn bytes(&self) -> &[u8] {
        &self.words.as_bytes()[..self.len]
    }
    fn bytes_mut(&mut self) -> &mut [u8] {
        &mut self.words.as_mut_bytes()[..self.len]
    }
}

fn name(text: &str) -> [u8; NAME_LEN] {
    let mut field = [0; NAME_LEN];
    field[..text.len()].copy_from_slice(text.as_bytes());
    field
}

fn domain(text: &str, kind: u8, parent: u32, child_id: u32, first: u32, count: u32) -> DomainDesc {
    DomainDesc {
        name: name(text),
        kind,
        priority: 100,
        flags: 0,
        reserved0: 0,
        parent,
        child_id,
        first_mapping: first,
        mapping_count: count,
        reserved1: 0,
        entry: if kind == DOMAIN_KIND_PD { 0x20_0000 } else { 0 },
        stack_top: if kind == DOMAIN_KIND_PD {
            PD_STACK_TOP
        } else {
            0
        },
        vcpu_ids: 0,
    }
}

#[allow(clippy::too_many_arguments)] // reason: one positional row per mapping reads as a table
fn mapping(
    domain: u32,
    ipa: u64,
    pa: u64,
    size: u64,
    rights: u8,
    kind: u8,
    state: u8,
) -> MappingDesc {
    let page_shift = if size.is_multiple_of(LARGE_PAGE_SIZE)
        && pa.is_multiple_of(LARGE_PAGE_SIZE)
        && ipa.is_multiple_of(LARGE_PAGE_SIZE)
    {
        21
    } else {
        12
    };
    MappingDesc {
        ipa,
        pa,
        size,
        domain,
        region: NONE,
        rights,
        cached: 1,
        kind,
        state,
        page_shift,
    }
}

const RX: u8 = RIGHT_READ | RIGHT_EXECUTE;
const RW: u8 = RIGHT_READ | RIGHT_WRITE;

impl Sample {
    fn new() -> Self {
        let mut vm = domain("guest", DOMAIN_KIND_VM, 0, 0, 5, 1);
        vm.flags = DOMAIN_FLAG_PROTECTED;
        vm.vcpu_ids = 1 << 0;
        let mut client = domain("client", DOMAIN_KIND_PD, NONE, NONE, 6, 3);
        client.priority = 50;
        Self {
            layout: BootInfoHeader {
                magic: [0; 8],
                version: 0,
                header_size: 0,
                total_size: 0,
                checksum: 0,
                ram_base: RAM,
                ram_size: 512 * MIB,
                hypervisor_base: RAM,
                hypervisor_size: 32 * MIB,
                convertible_base: CONVERTIBLE,
                convertible_size: 480 * MIB,
                domain_count: 0,
                domains_offset: 0,
                mapping_count: 0,
                mappings_offset: 0,
                channel_count: 0,
                channels_offset: 0,
                irq_count: 0,
                irqs_offset: 0,
            },
            domains: vec![domain("vmm", DOMAIN_KIND_PD, NONE, NONE, 0, 5), vm, client],
            mappings: vec![
                // vmm: program, stack, shared buffer (owner), window onto guest RAM, a device.
                mapping(
                    0,
                    0x20_0000,
                    CONVERTIBLE,
                    0x2000,
                    RX,
                    MAPPING_KIND_PROGRAM,
                    MAPPING_STATE_OWNED,
                ),
                mapping(
                    0,
                    PD_STACK_TOP - 0x2000,
                    CONVERTIBLE + 0x2000,
                    0x2000,
                    RW,
                    MAPPING_KIND_STACK,
                    MAPPING_STATE_OWNED,
                ),
                mapping(
                    0,
                    0x100_0000,
                    SHARED_PA,
                    0x1000,
                    RW,
                    MAPPING_KIND_REGION,
                    MAPPING_STATE_SHARED_OWNED,
                ),
                mapping(
                    0,
                    0x2000_0000,
                    GUEST_RAM_PA,
                    2 * MIB,
                    RW,
                    MAPPING_KIND_WINDOW,
                    MAPPING_STATE_NO_PAGE,
                ),
                mapping(
                    0,
                    0x300_0000,
                    PL031_RTC,
                    0x1000,
                    RW,
                    MAPPING_KIND_DEVICE,
                    MAPPING_STATE_UNTRACKED,
                ),
                // guest: its private RAM.
                mapping(
                    1,
                    0x4000_0000,
                    GUEST_RAM_PA,
                    2 * MIB,
                    RW | RIGHT_EXECUTE,
                    MAPPING_KIND_REGION,
                    MAPPING_STATE_OWNED,
                ),
                // client: program, stack, shared buffer (borrower).
                mapping(
                    2,
                    0x20_0000,
                    CONVERTIBLE + 0x4000,
                    0x1000,
                    RX,
                    MAPPING_KIND_PROGRAM,
                    MAPPING_STATE_OWNED,
                ),
                mapping(
                    2,
                    PD_STACK_TOP - 0x1000,
                    CONVERTIBLE + 0x5000,
                    0x1000,
                    RW,
                    MAPPING_KIND_STACK,
                    MAPPING_STATE_OWNED,
                ),
                mapping(
                    2,
                    0x100_0000,
                    SHARED_PA,
                    0x1000,
                    RIGHT_READ,
                    MAPPING_KIND_REGION,
                    MAPPING_STATE_SHARED_BORROWED,
                ),
            ],
            channels: vec![ChannelDesc {
                domain_a: 0,
                id_a: 1,
                domain_b: 2,
                id_b: 2,
                flags: CHANNEL_A_NOTIFIES_B | CHANNEL_B_NOTIFIES_A | CHANNEL_B_CALLS_A,
                reserved0: 0,
            }],
            irqs: vec![IrqDesc {
                domain: 0,
                irq: 79,
                channel_id: 5,
                trigger: IRQ_TRIGGER_LEVEL,
            }],
        }
    }

    fn encode(&self) -> Aligned {
        let tables = Tables {
            domains: &self.domains,
            mappings: &self.mappings,
            channels: &self.channels,
            irqs: &self.irqs,
        };
        let len = encoded_len(&tables);
        let mut out = Aligned {
            words: vec![0; len.div_ceil(8) + 1],
            len,
        };
        let written =
            encode(&self.layout, &tables, out.bytes_mut()).expect("buffer is large enough");
        assert_eq!(written, len);
        out
    }
}

/// Parses `sample` after `edit` and asserts the refusal names `record`/`field` with a fault
/// that `expect` accepts.
fn assert_refused(
    edit: impl FnOnce(&mut Sample),
    record: Record,
    field: &str,
    expect: impl FnOnce(&Fault) -> bool,
) {
    let mut sample = Sample::new();
    edit(&mut sample);
    let blob = sample.encode();
    let error = BootInfo::parse(blob.bytes()).expect_err("the blob breaks a rule");
    assert_eq!((error.record, error.field), (record, field), "{error}");
    assert!(expect(&error.fault), "unexpected fault: {error}");
}

/// Like [`assert_refused`], but edits the encoded bytes (and re-seals the CRC).
fn assert_bytes_refused(
    edit: impl FnOnce(&mut [u8]),
    record: Record,
    field: &str,
    expect: impl FnOnce(&Fault) -> bool,
) {
    let mut blob = Sample::new().encode();
    edit(blob.bytes_mut());
    seal(blob.bytes_mut());
    let error = BootInfo::parse(blob.bytes()).expect_err("the blob breaks a rule");
    assert_eq!((error.record, error.field), (record, field), "{error}");
    assert!(expect(&error.fault), "unexpected fault: {error}");
}

fn header_of(bytes: &mut [u8]) -> &mut BootInfoHeader {
    BootInfoHeader::mut_from_prefix(bytes)
        .expect("aligned header")
        .0
}

#[test]
fn valid_blob_parses_and_reads_back() {
    let sample = Sample::new();
    let blob = sample.encode();
    let info = BootInfo::parse(blob.bytes()).expect("valid");
    assert_eq!(info.domains(), &sample.domains[..]);
    assert_eq!(info.mappings(), &sample.mappings[..]);
    assert_eq!(info.channels(), &sample.channels[..]);
    assert_eq!(info.irqs(), &sample.irqs[..]);
    assert_eq!(info.domain_name(1), "guest");
    assert_eq!(info.domain_mappings(2), &sample.mappings[6..9]);
    assert_eq!(info.domain_mappings(3), &[]);
    assert_eq!(info.header().total_size as usize, blob.len);
    assert_eq!(
        info.hypervisor_heap(0x4100_0000),
        Some((0x4100_1000, 0x00FF_F000))
    );
}

#[test]
fn trailing_bytes_after_total_size_are_ignored() {
    let sample = Sample::new();
    let mut blob = sample.encode();
    blob.len += 8;
    assert!(BootInfo::parse(blob.bytes()).is_ok());
}

#[test]
fn every_single_byte_corruption_is_refused() {
    let blob = Sample::new().encode();
    for position in 0..blob.len {
        for mask in [0x01u8, 0x80, 0xFF] {
            let mut corrupt = Aligned {
                words: blob.words.clone(),
                len: blob.len,
            };
            corrupt.bytes_mut()[position] ^= mask;
            assert!(
                BootInfo::parse(corrupt.bytes()).is_err(),
                "byte {position} ^ {mask:#x} was accepted"
            );
        }
    }
}

#[test]
fn misaligned_buffer_is_refused() {
    let blob = Sample::new().encode();
    let mut shifted = vec![0u64; blob.words.len() + 1];
    shifted.as_mut_bytes()[4..4 + blob.len].copy_from_slice(blob.bytes());
    let error = BootInfo::parse(&shifted.as_bytes()[4..4 + blob.len]).expect_err("misaligned");
    assert_eq!(error.fault, Fault::BufferMisaligned);
}

#[test]
fn short_buffer_is_refused() {
    let blob = Sample::new().encode();
    let error = BootInfo::parse(&blob.bytes()[..50]).expect_err("short");
    assert!(
        matches!(error.fault, Fault::TooShort { len: 50, .. }),
        "{error}"
    );
}

#[test]
fn truncated_buffer_is_refused() {
    let blob = Sample::new().encode();
    let error = BootInfo::parse(&blob.bytes()[..blob.len - 8]).expect_err("truncated");
    assert_eq!((error.record, error.field), (Record::Header, "total_size"));
}

#[test]
fn bad_magic_is_refused() {
    assert_bytes_refused(
        |b| b[0] = b'X',
        Record::Header,
        "magic",
        |f| *f == Fault::BadMagic,
    );
}

#[test]
fn other_version_is_refused() {
    assert_bytes_refused(
        |b| header_of(b).version = 1,
        Record::Header,
        "version",
        |f| {
            matches!(
                f,
                Fault::NotExpected {
                    found: 1,
                    expected: 2
                }
            )
        },
    );
}

#[test]
fn wrong_header_size_is_refused() {
    assert_bytes_refused(
        |b| header_of(b).header_size = 96,
        Record::Header,
        "header_size",
        |f| matches!(f, Fault::NotExpected { found: 96, .. }),
    );
}

#[test]
fn total_size_below_header_is_refused() {
    assert_bytes_refused(
        |b| header_of(b).total_size = 8,
        Record::Header,
        "total_size",
        |f| matches!(f, Fault::TooShort { len: 8, .. }),
    );
}

#[test]
fn wrong_checksum_is_refused() {
    let mut blob = Sample::new().encode();
    header_of(blob.bytes_mut()).checksum ^= 1;
    let error = BootInfo::parse(blob.bytes()).expect_err("bad CRC");
    assert_eq!((error.record, error.field), (Record::Header, "checksum"));
    assert!(error.to_string().contains("CRC-32"), "{error}");
}

#[test]
fn misaligned_ram_is_refused() {
    assert_refused(
        |s| s.layout.ram_size += 1,
        Record::Header,
        "ram_size",
        |f| matches!(f, Fault::Misaligned { .. }),
    );
}

#[test]
fn overflowing_ram_is_refused() {
    assert_refused(
        |s| s.layout.ram_size = u64::MAX - 0xFFF,
        Record::Header,
        "ram_size",
        |f| *f == Fault::Overflow,
    );
}

#[test]
fn hypervisor_range_outside_ram_is_refused() {
    assert_refused(
        |s| s.layout.hypervisor_base = 0x1000_0000,
        Record::Header,
        "hypervisor_size",
        |f| matches!(f, Fault::OutOfBounds { .. }),
    );
}

#[test]
fn convertible_range_outside_ram_is_refused() {
    assert_refused(
        |s| s.layout.convertible_size = 512 * MIB,
        Record::Header,
        "convertible_size",
        |f| matches!(f, Fault::OutOfBounds { .. }),
    );
}

#[test]
fn convertible_range_over_hypervisor_is_refused() {
    assert_refused(
        |s| {
            s.layout.convertible_base = RAM + 16 * MIB;
            s.layout.convertible_size = 496 * MIB;
        },
        Record::Header,
        "convertible_base",
        |f| matches!(f, Fault::HypervisorMemory { .. }),
    );
}

#[test]
fn misaligned_table_offset_is_refused() {
    assert_bytes_refused(
        |b| header_of(b).mappings_offset += 4,
        Record::Header,
        "mappings_offset",
        |f| matches!(f, Fault::Misaligned { align: 8, .. }),
    );
}

#[test]
fn table_past_total_size_is_refused() {
    assert_bytes_refused(
        |b| header_of(b).irq_count = 1000,
        Record::Header,
        "irqs_offset",
        |f| matches!(f, Fault::OutOfBounds { .. }),
    );
}

#[test]
fn table_inside_header_is_refused() {
    assert_bytes_refused(
        |b| header_of(b).channels_offset = 8,
        Record::Header,
        "channels_offset",
        |f| *f == Fault::TablesOverlap,
    );
}

#[test]
fn overlapping_tables_are_refused() {
    assert_bytes_refused(
        |b| {
            let header = header_of(b);
            header.irqs_offset = header.channels_offset;
        },
        Record::Header,
        "channels_offset",
        |f| *f == Fault::TablesOverlap,
    );
}

#[test]
fn bad_names_are_refused() {
    let edits: [fn(&mut Sample); 3] = [
        |s| s.domains[0].name = [0; NAME_LEN],
        |s| s.domains[0].name[0] = 0xFF,
        |s| s.domains[0].name[10] = b'x',
    ];
    for edit in edits {
        assert_refused(edit, Record::Domain(0), "name", |f| *f == Fault::BadName);
    }
}

#[test]
fn names_that_would_forge_or_blur_a_console_prefix_are_refused() {
    use crate::domain_name::DomainNameError;
    // The hypervisor's own name, in any case: its lines would be indistinguishable.
    for reserved in ["hypervisor", "HyperVisor"] {
        assert_refused(
            |s| s.domains[2].name = name(reserved),
            Record::Domain(2),
            "name",
            |f| *f == Fault::DomainName(DomainNameError::Reserved),
        );
    }
    // `a|b` would print a prefix that splits differently; `a b` and `a\x01` are not printed
    // byte for byte either. Valid UTF-8 outside ASCII is refused by the same rule.
    let cases: [(&str, u8, usize); 4] = [
        ("a|b", b'|', 1),
        ("a b", b' ', 1),
        ("ab\x01", 0x01, 2),
        ("\u{e9}t\u{e9}", 0xc3, 0),
    ];
    for (text, byte, position) in cases {
        assert_refused(
            |s| s.domains[0].name = name(text),
            Record::Domain(0),
            "name",
            |f| *f == Fault::DomainName(DomainNameError::BadByte { byte, position }),
        );
    }
    let mut sample = Sample::new();
    sample.domains[0].name = name("hypervisor");
    let error = BootInfo::parse(sample.encode().bytes()).expect_err("reserved name");
    assert_eq!(
        error.to_string(),
        "boot info refused: domain 0 field `name`: the name 'hypervisor' is reserved for the \
         hypervisor's own console lines"
    );
}

#[test]
fn the_longest_name_is_accepted_and_a_full_field_is_refused() {
    let mut sample = Sample::new();
    sample.domains[2].name = [0; NAME_LEN];
    sample.domains[2].name[..NAME_LEN - 1].fill(b'c');
    let blob = sample.encode();
    let info = BootInfo::parse(blob.bytes()).expect("63 printable bytes are a valid name");
    assert_eq!(info.domain_name(2).len(), NAME_LEN - 1);
    // 64 bytes leave no terminating NUL: two names that differ only past the cut would print
    // the same prefix in the PD's own `microkit_name`.
    sample.domains[2].name = [b'c'; NAME_LEN];
    let error = BootInfo::parse(sample.encode().bytes()).expect_err("64 bytes");
    assert!(error.to_string().contains("at most 63"), "{error}");
}

#[test]
fn duplicate_names_are_refused_at_the_second_domain() {
    assert_refused(
        |s| s.domains[2].name = name("vmm"),
        Record::Domain(2),
        "name",
        |f| *f == Fault::DuplicateName { other: 0 },
    );
    // Names differing only in case print different prefixes: both are accepted.
    let mut sample = Sample::new();
    sample.domains[2].name = name("VMM");
    assert!(BootInfo::parse(sample.encode().bytes()).is_ok());
    let mut sample = Sample::new();
    sample.domains[1].name = name("client");
    let error = BootInfo::parse(sample.encode().bytes()).expect_err("duplicate");
    assert_eq!(
        error.to_string(),
        "boot info refused: domain 2 field `name`: the name is already used by domain 1"
    );
}

#[test]
fn unknown_domain_kind_is_refused() {
    assert_refused(
        |s| s.domains[2].kind = 7,
        Record::Domain(2),
        "kind",
        |f| matches!(f, Fault::UnknownValue { found: 7 }),
    );
}

#[test]
fn priority_above_254_is_refused() {
    assert_refused(
        |s| s.domains[2].priority = 255,
        Record::Domain(2),
        "priority",
        |f| {
            matches!(
                f,
                Fault::OutOfBounds {
                    found: 255,
                    limit: 254
                }
            )
        },
    );
}

#[test]
fn unknown_domain_flag_is_refused() {
    assert_refused(
        |s| s.domains[0].flags = 0x80,
        Record::Domain(0),
        "flags",
        |f| matches!(f, Fault::UnknownValue { found: 0x80 }),
    );
}

#[test]
fn protected_pd_is_refused() {
    assert_refused(
        |s| s.domains[0].flags = DOMAIN_FLAG_PROTECTED,
        Record::Domain(0),
        "flags",
        |f| matches!(f, Fault::FlagNotAllowed { .. }),
    );
}

#[test]
fn split_flag_on_a_pd_is_refused() {
    assert_refused(
        |s| s.domains[0].flags = DOMAIN_FLAG_SPLIT,
        Record::Domain(0),
        "flags",
        |f| {
            *f == Fault::FlagNotAllowed {
                flags: DOMAIN_FLAG_SPLIT.into(),
            }
        },
    );
}

#[test]
fn split_flag_without_protected_is_refused() {
    assert_refused(
        |s| s.domains[1].flags = DOMAIN_FLAG_SPLIT,
        Record::Domain(1),
        "flags",
        |f| {
            *f == Fault::FlagRequires {
                flags: DOMAIN_FLAG_SPLIT.into(),
                requires: DOMAIN_FLAG_PROTECTED.into(),
            }
        },
    );
    let mut sample = Sample::new();
    sample.domains[1].flags = DOMAIN_FLAG_SPLIT;
    let error = BootInfo::parse(sample.encode().bytes()).expect_err("split, unprotected");
    assert_eq!(
        error.to_string(),
        "boot info refused: domain 1 field `flags`: flags 0x4 need flags 0x2"
    );
}

#[test]
fn a_protected_split_vm_below_the_alias_half_is_accepted() {
    let mut sample = Sample::new();
    sample.domains[1].flags = DOMAIN_FLAG_PROTECTED | DOMAIN_FLAG_SPLIT;
    // The last 2 MiB below the alias half: ends exactly at bit 39.
    sample.mappings[5].ipa = crate::addr::SHARED_ALIAS_BIT - 2 * MIB;
    let blob = sample.encode();
    let info = BootInfo::parse(blob.bytes()).expect("valid split VM");
    assert_eq!(
        info.domains()[1].flags & DOMAIN_FLAG_SPLIT,
        DOMAIN_FLAG_SPLIT
    );
}

#[test]
fn split_vm_mapping_in_the_alias_half_is_refused() {
    use crate::addr::SHARED_ALIAS_BIT;
    for ipa in [SHARED_ALIAS_BIT, SHARED_ALIAS_BIT + 0x4000_0000] {
        assert_refused(
            |s| {
                s.domains[1].flags |= DOMAIN_FLAG_SPLIT;
                s.mappings[5].ipa = ipa;
            },
            Record::Mapping(5),
            "ipa",
            |f| *f == Fault::InSharedAliasHalf { end: ipa + 2 * MIB },
        );
    }
    // A history-mode guest has no alias half: the same mapping is accepted.
    let mut sample = Sample::new();
    sample.mappings[5].ipa = SHARED_ALIAS_BIT;
    assert!(BootInfo::parse(sample.encode().bytes()).is_ok());
}

#[test]
fn vcpu_ids_on_a_pd_are_refused() {
    assert_refused(
        |s| s.domains[2].vcpu_ids = 1,
        Record::Domain(2),
        "vcpu_ids",
        |f| *f == Fault::VcpusOnPd { ids: 1 },
    );
}

#[test]
fn vm_without_vcpus_is_refused() {
    assert_refused(
        |s| s.domains[1].vcpu_ids = 0,
        Record::Domain(1),
        "vcpu_ids",
        |f| *f == Fault::NoVcpus,
    );
}

#[test]
fn vcpu_id_above_61_is_refused() {
    for id in [62, 63] {
        assert_refused(
            |s| s.domains[1].vcpu_ids = 1 | 1 << id,
            Record::Domain(1),
            "vcpu_ids",
            |f| *f == Fault::VcpuIdTooLarge { id },
        );
    }
    // Id 61 is the highest allowed.
    let mut sample = Sample::new();
    sample.domains[1].vcpu_ids = 1 | 1 << 61;
    assert!(BootInfo::parse(sample.encode().bytes()).is_ok());
}

#[test]
fn more_than_max_vcpus_are_refused() {
    assert_refused(
        |s| s.domains[1].vcpu_ids = 0b1_1111,
        Record::Domain(1),
        "vcpu_ids",
        |f| *f == Fault::TooManyVcpus { count: 5 },
    );
    let mut sample = Sample::new();
    sample.domains[1].vcpu_ids = 0b1_0111_0000_0001;
    sample.domains[1].child_id = 0;
    let error = BootInfo::parse(sample.encode().bytes()).expect_err("5 vCPUs");
    assert_eq!(
        error.to_string(),
        "boot info refused: domain 1 field `vcpu_ids`: 5 vCPUs, at most 4"
    );
    // MAX_VCPUS itself is accepted.
    let mut sample = Sample::new();
    sample.domains[1].vcpu_ids = (1 << MAX_VCPUS) - 1;
    assert!(BootInfo::parse(sample.encode().bytes()).is_ok());
}

#[test]
fn vm_child_id_must_be_its_lowest_vcpu_id() {
    assert_refused(
        |s| s.domains[1].vcpu_ids = 0b110,
        Record::Domain(1),
        "child_id",
        |f| {
            *f == Fault::NotExpected {
                found: 0,
                expected: 1,
            }
        },
    );
    assert_refused(
        |s| {
            s.domains[1].vcpu_ids = 0b11;
            s.domains[1].child_id = 1;
        },
        Record::Domain(1),
        "child_id",
        |f| {
            *f == Fault::NotExpected {
                found: 1,
                expected: 0,
            }
        },
    );
    let mut sample = Sample::new();
    sample.domains[1].vcpu_ids = 0b1100;
    sample.domains[1].child_id = 2;
    assert!(BootInfo::parse(sample.encode().bytes()).is_ok());
}

/// The sample with a second VM under the VMM, after the client: no mappings, vCPU ids `ids`.
/// Gives `client` (domain 2) a child PD with child id `child_id` (domain 3) and then a VM with
/// vCPU ids `ids` (domain 4): a second parent, so ids can meet among one parent's children in
/// both orders.
fn with_children_of_client(s: &mut Sample, child_id: u32, ids: u64) {
    let first = s.mappings.len() as u32;
    s.domains
        .push(domain("helper", DOMAIN_KIND_PD, 2, child_id, first, 0));
    let mut vm = domain("guest2", DOMAIN_KIND_VM, 2, ids.trailing_zeros(), first, 0);
    vm.vcpu_ids = ids;
    s.domains.push(vm);
}

#[test]
fn child_ids_shared_by_siblings_are_refused() {
    // A child PD of the VMM taking the guest's vCPU id 0 (the VM comes first).
    assert_refused(
        |s| {
            s.domains[2].parent = 0;
            s.domains[2].child_id = 0;
        },
        Record::Domain(2),
        "child_id",
        |f| *f == Fault::DuplicateChildId { id: 0, other: 1 },
    );
    // A VM whose vCPU id meets an earlier child PD's id (the child PD comes first).
    assert_refused(
        |s| with_children_of_client(s, 4, 1 << 4 | 1 << 5),
        Record::Domain(4),
        "vcpu_ids",
        |f| *f == Fault::DuplicateChildId { id: 4, other: 3 },
    );
    // Distinct ids are accepted.
    let mut sample = Sample::new();
    sample.domains[2].parent = 0;
    sample.domains[2].child_id = 1;
    with_children_of_client(&mut sample, 4, 0b1100);
    assert!(BootInfo::parse(sample.encode().bytes()).is_ok());
}

#[test]
fn vcpus_are_listed_in_index_order() {
    let mut desc = Sample::new().domains[1];
    desc.vcpu_ids = 1 << 7 | 1 << 0 | 1 << 61 | 1 << 5;
    assert_eq!(desc.vcpus().collect::<Vec<_>>(), [0, 5, 7, 61]);
    assert_eq!(Sample::new().domains[0].vcpus().count(), 0);
}

#[test]
fn domain_reserved_fields_must_be_zero() {
    assert_refused(
        |s| s.domains[0].reserved0 = 1,
        Record::Domain(0),
        "reserved0",
        |f| matches!(f, Fault::NotZero { found: 1 }),
    );
    assert_refused(
        |s| s.domains[1].reserved1 = 9,
        Record::Domain(1),
        "reserved1",
        |f| matches!(f, Fault::NotZero { found: 9 }),
    );
}

#[test]
fn parent_after_child_is_refused() {
    assert_refused(
        |s| s.domains[1].parent = 2,
        Record::Domain(1),
        "parent",
        |f| matches!(f, Fault::ParentNotBefore { parent: 2 }),
    );
}

#[test]
fn parent_that_is_a_vm_is_refused() {
    assert_refused(
        |s| {
            s.domains[2].parent = 1;
            s.domains[2].child_id = 3;
        },
        Record::Domain(2),
        "parent",
        |f| matches!(f, Fault::ParentNotPd { parent: 1 }),
    );
}

/// A device a PD may map: the PL031 real-time clock, which cannot DMA.
const PL031_RTC: u64 = 0x0901_0000;

#[test]
fn devices_that_dma_or_that_the_hypervisor_drives_are_refused() {
    for (pa, device) in [
        (0x0902_0000, "fw_cfg"),
        (0x0A00_0000, "virtio-mmio transports"),
        (0x0900_0000, "PL011 UART (console)"),
        (0x0800_0000, "GICv3 distributor"),
        (0x40_1000_0000, "PCIe ECAM (high)"),
    ] {
        assert_refused(
            |s| s.mappings[4].pa = pa,
            Record::Mapping(4),
            "pa",
            |f| *f == Fault::ForbiddenDevice { device },
        );
    }
}

#[test]
fn a_second_virtual_machine_under_one_parent_is_refused() {
    let mut sample = Sample::new();
    let mut second = sample.domains[1];
    second.name = name("guest2");
    second.child_id = 3;
    second.vcpu_ids = 1 << 3;
    second.first_mapping = sample.mappings.len() as u32;
    second.mapping_count = 0;
    sample.domains.push(second);
    let error = BootInfo::parse(sample.encode().bytes()).expect_err("two VMs under one PD");
    assert_eq!(
        (error.record, error.field),
        (Record::Domain(3), "parent"),
        "{error}"
    );
    assert_eq!(error.fault, Fault::SecondVirtualMachine { other: 1 });
}

#[test]
fn vm_without_parent_is_refused() {
    assert_refused(
        |s| {
            s.domains[1].parent = NONE;
            s.domains[1].child_id = NONE;
        },
        Record::Domain(1),
        "parent",
        |f| *f == Fault::VmWithoutParent,
    );
}

#[test]
fn child_id_rules_are_enforced() {
    assert_refused(
        |s| s.domains[1].child_id = 62,
        Record::Domain(1),
        "child_id",
        |f| matches!(f, Fault::OutOfBounds { found: 62, .. }),
    );
    assert_refused(
        |s| s.domains[0].child_id = 1,
        Record::Domain(0),
        "child_id",
        |f| matches!(f, Fault::NotExpected { found: 1, .. }),
    );
}

#[test]
fn non_contiguous_mapping_ranges_are_refused() {
    assert_refused(
        |s| s.domains[2].first_mapping = 5,
        Record::Domain(2),
        "first_mapping",
        |f| matches!(f, Fault::NotContiguous { expected: 6 }),
    );
}

#[test]
fn mapping_range_past_table_is_refused() {
    assert_refused(
        |s| s.domains[2].mapping_count = 4,
        Record::Domain(2),
        "mapping_count",
        |f| {
            matches!(
                f,
                Fault::OutOfBounds {
                    found: 10,
                    limit: 9
                }
            )
        },
    );
}

#[test]
fn mappings_left_without_domain_are_refused() {
    assert_refused(
        |s| s.domains[2].mapping_count = 2,
        Record::Header,
        "mapping_count",
        |f| {
            matches!(
                f,
                Fault::NotExpected {
                    found: 9,
                    expected: 8
                }
            )
        },
    );
}

#[test]
fn entry_and_stack_outside_ipa_space_are_refused() {
    assert_refused(
        |s| s.domains[0].entry = IPA_LIMIT,
        Record::Domain(0),
        "entry",
        |f| matches!(f, Fault::OutOfBounds { .. }),
    );
    assert_refused(
        |s| s.domains[0].stack_top = IPA_LIMIT + 16,
        Record::Domain(0),
        "stack_top",
        |f| matches!(f, Fault::OutOfBounds { .. }),
    );
    assert_refused(
        |s| s.domains[0].stack_top -= 8,
        Record::Domain(0),
        "stack_top",
        |f| matches!(f, Fault::Misaligned { align: 16, .. }),
    );
}

#[test]
fn mapping_of_another_domain_is_refused() {
    assert_refused(
        |s| s.mappings[7].domain = 0,
        Record::Mapping(7),
        "domain",
        |f| matches!(f, Fault::WrongDomain { expected: 2 }),
    );
}

#[test]
fn unknown_rights_are_refused() {
    assert_refused(
        |s| s.mappings[0].rights = 0x10,
        Record::Mapping(0),
        "rights",
        |f| matches!(f, Fault::UnknownValue { found: 0x10 }),
    );
    assert_refused(
        |s| s.mappings[0].rights = 0,
        Record::Mapping(0),
        "rights",
        |f| matches!(f, Fault::UnknownValue { found: 0 }),
    );
}

#[test]
fn unknown_cached_value_is_refused() {
    assert_refused(
        |s| s.mappings[0].cached = 2,
        Record::Mapping(0),
        "cached",
        |f| matches!(f, Fault::UnknownValue { found: 2 }),
    );
}

#[test]
fn unknown_mapping_kind_is_refused() {
    assert_refused(
        |s| s.mappings[0].kind = 6,
        Record::Mapping(0),
        "kind",
        |f| matches!(f, Fault::UnknownValue { found: 6 }),
    );
}

#[test]
fn unknown_state_is_refused() {
    assert_refused(
        |s| s.mappings[0].state = 5,
        Record::Mapping(0),
        "state",
        |f| matches!(f, Fault::UnknownValue { found: 5 }),
    );
}

#[test]
fn program_mapping_in_vm_is_refused() {
    assert_refused(
        |s| s.mappings[5].kind = MAPPING_KIND_PROGRAM,
        Record::Mapping(5),
        "kind",
        |f| {
            matches!(
                f,
                Fault::KindNotAllowed {
                    kind: MAPPING_KIND_PROGRAM
                }
            )
        },
    );
}

#[test]
fn state_not_matching_kind_is_refused() {
    assert_refused(
        |s| s.mappings[0].state = MAPPING_STATE_SHARED_OWNED,
        Record::Mapping(0),
        "state",
        |f| matches!(f, Fault::StateNotAllowed { .. }),
    );
    assert_refused(
        |s| s.mappings[4].state = MAPPING_STATE_OWNED,
        Record::Mapping(4),
        "state",
        |f| matches!(f, Fault::StateNotAllowed { .. }),
    );
    assert_refused(
        |s| s.mappings[3].state = MAPPING_STATE_OWNED,
        Record::Mapping(3),
        "state",
        |f| matches!(f, Fault::StateNotAllowed { .. }),
    );
}

#[test]
fn unknown_page_shift_is_refused() {
    assert_refused(
        |s| s.mappings[0].page_shift = 16,
        Record::Mapping(0),
        "page_shift",
        |f| matches!(f, Fault::UnknownValue { found: 16 }),
    );
}

#[test]
fn misaligned_mappings_are_refused() {
    assert_refused(
        |s| s.mappings[0].ipa += 0x800,
        Record::Mapping(0),
        "ipa",
        |f| matches!(f, Fault::Misaligned { .. }),
    );
    assert_refused(
        |s| s.mappings[0].pa += 0x10,
        Record::Mapping(0),
        "pa",
        |f| matches!(f, Fault::Misaligned { .. }),
    );
    assert_refused(
        |s| s.mappings[0].size = 0x1800,
        Record::Mapping(0),
        "size",
        |f| matches!(f, Fault::Misaligned { .. }),
    );
    // A 2 MiB mapping must be 2 MiB aligned.
    assert_refused(
        |s| s.mappings[5].ipa += 0x1000,
        Record::Mapping(5),
        "ipa",
        |f| {
            matches!(
                f,
                Fault::Misaligned {
                    align: LARGE_PAGE_SIZE,
                    ..
                }
            )
        },
    );
}

#[test]
fn empty_mapping_is_refused() {
    assert_refused(
        |s| s.mappings[0].size = 0,
        Record::Mapping(0),
        "size",
        |f| matches!(f, Fault::TooSmall { .. }),
    );
}

#[test]
fn overflowing_mapping_is_refused() {
    assert_refused(
        |s| s.mappings[4].pa = u64::MAX - 0xFFF,
        Record::Mapping(4),
        "size",
        |f| *f == Fault::Overflow,
    );
}

#[test]
fn mapping_beyond_ipa_space_is_refused() {
    assert_refused(
        |s| s.mappings[1].ipa = IPA_LIMIT - 0x1000,
        Record::Mapping(1),
        "ipa",
        |f| matches!(f, Fault::OutOfBounds { .. }),
    );
}

#[test]
fn mapping_of_hypervisor_memory_is_refused() {
    // I4: as a RAM mapping and as a "device" mapping.
    assert_refused(
        |s| s.mappings[1].pa = RAM + 0x10_0000,
        Record::Mapping(1),
        "pa",
        |f| matches!(f, Fault::HypervisorMemory { .. }),
    );
    assert_refused(
        |s| s.mappings[4].pa = CONVERTIBLE - 0x1000,
        Record::Mapping(4),
        "pa",
        |f| matches!(f, Fault::HypervisorMemory { .. }),
    );
}

#[test]
fn device_mapping_in_ram_is_refused() {
    assert_refused(
        |s| s.mappings[4].pa = CONVERTIBLE + 100 * MIB,
        Record::Mapping(4),
        "pa",
        |f| matches!(f, Fault::DeviceInRam { .. }),
    );
}

#[test]
fn ram_mapping_outside_convertible_range_is_refused() {
    assert_refused(
        |s| s.mappings[0].pa = 0x1_0000_0000,
        Record::Mapping(0),
        "pa",
        |f| matches!(f, Fault::NotConvertible { .. }),
    );
}

#[test]
fn overlapping_ipas_in_one_domain_are_refused() {
    assert_refused(
        |s| s.mappings[2].ipa = 0x20_1000,
        Record::Mapping(0),
        "ipa",
        |f| matches!(f, Fault::IpaOverlap { other: 2 }),
    );
}

#[test]
fn owned_frames_mapped_twice_are_refused() {
    // The client's program frame aliased onto the VMM's program frame.
    assert_refused(
        |s| s.mappings[6].pa = CONVERTIBLE,
        Record::Mapping(0),
        "pa",
        |f| matches!(f, Fault::PhysicalOverlap { other: 6 }),
    );
}

#[test]
fn window_of_unprotected_guest_is_refused() {
    assert_refused(
        |s| s.domains[1].flags = 0,
        Record::Mapping(3),
        "pa",
        |f| matches!(f, Fault::PhysicalOverlap { other: 5 }),
    );
}

#[test]
fn window_without_guest_mapping_is_refused() {
    assert_refused(
        |s| s.mappings[5].pa = GUEST_RAM_PA + 2 * MIB,
        Record::Mapping(3),
        "state",
        |f| *f == Fault::NoOwner,
    );
}

#[test]
fn borrowed_frames_without_owner_are_refused() {
    assert_refused(
        |s| s.mappings[2].state = MAPPING_STATE_SHARED_BORROWED,
        Record::Mapping(2),
        "state",
        |f| *f == Fault::NoOwner,
    );
}

#[test]
fn borrowed_range_differing_from_owner_is_refused() {
    assert_refused(
        |s| {
            s.mappings[2].size = 0x2000;
        },
        Record::Mapping(2),
        "pa",
        |f| matches!(f, Fault::PhysicalOverlap { other: 8 }),
    );
}

#[test]
fn channel_to_missing_domain_is_refused() {
    assert_refused(
        |s| s.channels[0].domain_b = 3,
        Record::Channel(0),
        "domain_b",
        |f| matches!(f, Fault::OutOfBounds { found: 3, limit: 3 }),
    );
}

#[test]
fn channel_to_vm_is_refused() {
    assert_refused(
        |s| s.channels[0].domain_a = 1,
        Record::Channel(0),
        "domain_a",
        |f| matches!(f, Fault::NotAPd { domain: 1 }),
    );
}

#[test]
fn channel_id_above_61_is_refused() {
    assert_refused(
        |s| s.channels[0].id_b = 62,
        Record::Channel(0),
        "id_b",
        |f| {
            matches!(
                f,
                Fault::OutOfBounds {
                    found: 62,
                    limit: 61
                }
            )
        },
    );
}

#[test]
fn unknown_channel_flags_are_refused() {
    assert_refused(
        |s| s.channels[0].flags |= 0x100,
        Record::Channel(0),
        "flags",
        |f| matches!(f, Fault::UnknownValue { .. }),
    );
}

#[test]
fn channel_reserved_must_be_zero() {
    assert_refused(
        |s| s.channels[0].reserved0 = 1,
        Record::Channel(0),
        "reserved0",
        |f| matches!(f, Fault::NotZero { found: 1 }),
    );
}

#[test]
fn irq_for_vm_is_refused() {
    assert_refused(
        |s| s.irqs[0].domain = 1,
        Record::Irq(0),
        "domain",
        |f| matches!(f, Fault::NotAPd { domain: 1 }),
    );
}

#[test]
fn non_spi_irqs_are_refused() {
    // PPI 26 is the hypervisor's EL2 timer.
    assert_refused(
        |s| s.irqs[0].irq = 26,
        Record::Irq(0),
        "irq",
        |f| matches!(f, Fault::TooSmall { found: 26, min: 32 }),
    );
    assert_refused(
        |s| s.irqs[0].irq = 1020,
        Record::Irq(0),
        "irq",
        |f| matches!(f, Fault::OutOfBounds { found: 1020, .. }),
    );
}

#[test]
fn irq_channel_id_above_61_is_refused() {
    assert_refused(
        |s| s.irqs[0].channel_id = 64,
        Record::Irq(0),
        "channel_id",
        |f| matches!(f, Fault::OutOfBounds { found: 64, .. }),
    );
}

#[test]
fn unknown_trigger_is_refused() {
    assert_refused(
        |s| s.irqs[0].trigger = 2,
        Record::Irq(0),
        "trigger",
        |f| matches!(f, Fault::UnknownValue { found: 2 }),
    );
}

#[test]
fn duplicate_irq_is_refused() {
    assert_refused(
        |s| {
            s.irqs.push(IrqDesc {
                domain: 2,
                irq: 79,
                channel_id: 9,
                trigger: IRQ_TRIGGER_EDGE,
            })
        },
        Record::Irq(1),
        "irq",
        |f| matches!(f, Fault::DuplicateIrq { other: 0 }),
    );
}

#[test]
fn duplicate_channel_id_is_refused() {
    // The IRQ takes channel id 1 of the VMM, which the channel already uses.
    assert_refused(
        |s| s.irqs[0].channel_id = 1,
        Record::Irq(0),
        "channel_id",
        |f| matches!(f, Fault::DuplicateChannelId { id: 1 }),
    );
}

#[test]
fn errors_display_record_and_field() {
    let mut sample = Sample::new();
    sample.domains[2].priority = 255;
    let blob = sample.encode();
    let error = BootInfo::parse(blob.bytes()).expect_err("invalid");
    let text = error.to_string();
    assert_eq!(
        text,
        "boot info refused: domain 2 field `priority`: 0xff is beyond 0xfe"
    );
}

#[test]
fn encode_refuses_a_small_buffer() {
    let sample = Sample::new();
    let tables = Tables {
        domains: &sample.domains,
        mappings: &[],
        channels: &[],
        irqs: &[],
    };
    let mut out = [0u8; 16];
    assert_eq!(
        encode(&sample.layout, &tables, &mut out),
        Err(EncodeError::BufferTooSmall {
            need: encoded_len(&tables)
        })
    );
}

#[test]
fn record_layout_matches_docs_abi_md() {
    use core::mem::{offset_of, size_of};
    assert_eq!(size_of::<BootInfoHeader>(), 104);
    assert_eq!(offset_of!(BootInfoHeader, checksum), 20);
    assert_eq!(offset_of!(BootInfoHeader, ram_base), 24);
    assert_eq!(offset_of!(BootInfoHeader, convertible_size), 64);
    assert_eq!(offset_of!(BootInfoHeader, domain_count), 72);
    assert_eq!(offset_of!(BootInfoHeader, irqs_offset), 100);
    assert_eq!(size_of::<DomainDesc>(), 112);
    assert_eq!(offset_of!(DomainDesc, kind), 64);
    assert_eq!(offset_of!(DomainDesc, parent), 68);
    assert_eq!(offset_of!(DomainDesc, reserved1), 84);
    assert_eq!(offset_of!(DomainDesc, entry), 88);
    assert_eq!(offset_of!(DomainDesc, vcpu_ids), 104);
    assert_eq!(size_of::<MappingDesc>(), 40);
    assert_eq!(offset_of!(MappingDesc, domain), 24);
    assert_eq!(offset_of!(MappingDesc, rights), 32);
    assert_eq!(offset_of!(MappingDesc, state), 35);
    assert_eq!(offset_of!(MappingDesc, page_shift), 36);
    assert_eq!(size_of::<ChannelDesc>(), 24);
    assert_eq!(offset_of!(ChannelDesc, flags), 16);
    assert_eq!(size_of::<IrqDesc>(), 16);
    assert_eq!(offset_of!(IrqDesc, trigger), 12);
}

mod properties {
    //! Random edits of a valid blob, with the CRC recomputed so that the semantic checks are
    //! what decides: the reader never panics, and whatever it accepts keeps I4 (no mapping of
    //! hypervisor memory), I1 (an `OWNED` frame is mapped once, a window onto it aside) and the
    //! vCPU and split-mode rules.

    use proptest::prelude::*;

    use super::*;

    fn check_accepted(info: &BootInfo<'_>) {
        let header = info.header();
        let hypervisor_end = header.hypervisor_base + header.hypervisor_size;
        for (index, mapping) in info.mappings().iter().enumerate() {
            assert!(
                mapping.pa + mapping.size <= header.hypervisor_base || mapping.pa >= hypervisor_end,
                "I4 broken by accepted mapping {index}: {mapping:?}"
            );
            if mapping.state != MAPPING_STATE_OWNED {
                continue;
            }
            for (other_index, other) in info.mappings().iter().enumerate() {
                let overlap = other_index != index
                    && mapping.pa < other.pa + other.size
                    && other.pa < mapping.pa + mapping.size;
                assert!(
                    !overlap || other.kind == MAPPING_KIND_WINDOW,
                    "I1 broken: owned mapping {index} overlaps mapping {other_index}"
                );
            }
        }
        for desc in info.domains() {
            // Every accepted VM has 1 to MAX_VCPUS vCPU ids up to 61, the lowest its child id;
            // a PD has none; split mode only on a protected VM.
            if desc.kind == DOMAIN_KIND_VM {
                let count = desc.vcpus().count();
                assert!((1..=MAX_VCPUS).contains(&count), "{desc:?}");
                assert_eq!(desc.vcpu_ids >> (MAX_VCPU_ID + 1), 0, "{desc:?}");
                assert_eq!(desc.child_id, desc.vcpu_ids.trailing_zeros(), "{desc:?}");
            } else {
                assert_eq!(desc.vcpu_ids, 0, "{desc:?}");
            }
            if desc.flags & DOMAIN_FLAG_SPLIT != 0 {
                assert_eq!(desc.kind, DOMAIN_KIND_VM, "{desc:?}");
                assert_ne!(desc.flags & DOMAIN_FLAG_PROTECTED, 0, "{desc:?}");
            }
        }
        for domain in 0..info.domains().len() {
            let _ = info.domain_mappings(domain);
            let name = info.domain_name(domain);
            // Every accepted name prints as itself and no two print the same prefix.
            assert_eq!(
                crate::domain_name::check(name.as_bytes()),
                Ok(()),
                "{name:?}"
            );
            assert!(
                (0..domain).all(|other| info.domain_name(other) != name),
                "duplicate name {name:?} accepted"
            );
        }
    }

    proptest! {
        #[test]
        fn resealed_random_edits_never_panic_and_keep_i1_i4(
            edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..6)
        ) {
            let mut blob = Sample::new().encode();
            for (position, value) in edits {
                let position = position % blob.len;
                blob.bytes_mut()[position] = value;
            }
            seal(blob.bytes_mut());
            if let Ok(info) = BootInfo::parse(blob.bytes()) {
                check_accepted(&info);
            }
        }

        #[test]
        fn random_bytes_are_refused(bytes in proptest::collection::vec(any::<u64>(), 0..64)) {
            prop_assert!(BootInfo::parse(bytes.as_bytes()).is_err());
        }

        #[test]
        fn random_bytes_with_a_valid_header_never_panic(
            tail in proptest::collection::vec(any::<u8>(), 0..512)
        ) {
            let mut blob = Sample::new().encode();
            let header_size = size_of::<BootInfoHeader>();
            let end = (header_size + tail.len()).min(blob.len);
            blob.bytes_mut()[header_size..end].copy_from_slice(&tail[..end - header_size]);
            seal(blob.bytes_mut());
            if let Ok(info) = BootInfo::parse(blob.bytes()) {
                check_accepted(&info);
            }
        }
    }
}
