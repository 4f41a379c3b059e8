//! Boot from boot information, on the fake arch: the same path the kernel takes.

extern crate std;

use std::boxed::Box;
use std::vec;
use std::vec::Vec;

use frameshift_abi::boot_info::{
    encode, encoded_len, BootInfo, BootInfoHeader, ChannelDesc, DomainDesc, MappingDesc, Tables,
    CHANNEL_A_NOTIFIES_B, DOMAIN_FLAG_PROTECTED, DOMAIN_FLAG_SPLIT, DOMAIN_KIND_PD, DOMAIN_KIND_VM,
    MAPPING_KIND_PROGRAM, MAPPING_KIND_REGION, MAPPING_KIND_STACK, MAPPING_KIND_WINDOW,
    MAPPING_STATE_NO_PAGE, MAPPING_STATE_OWNED, MAPPING_STATE_SHARED_BORROWED,
    MAPPING_STATE_SHARED_OWNED, NAME_LEN, NONE, PD_STACK_TOP, RIGHT_EXECUTE, RIGHT_READ,
    RIGHT_WRITE,
};
use zerocopy::{FromZeros, IntoBytes};

use super::*;
use crate::addr::{Ipa, PhysAddr, PAGE_SIZE};
use crate::arch::fake::FakeArch;
use crate::descriptor::PageState;
use crate::domain::{ContextId, ConversionMode, DomainId, GuestLink, RunState, Window};
use crate::error::Error;

const CONVERTIBLE: u64 = 0x4200_0000;
const HEAP_BASE: u64 = 0x4100_0000;
const POOL_PAGES: u64 = 64;

fn domain(name: &str, priority: u8, first_mapping: u32, mapping_count: u32) -> DomainDesc {
    let mut desc = DomainDesc::new_zeroed();
    desc.name[..name.len()].copy_from_slice(name.as_bytes());
    assert!(name.len() <= NAME_LEN);
    desc.kind = DOMAIN_KIND_PD;
    desc.priority = priority;
    desc.parent = NONE;
    desc.child_id = NONE;
    desc.first_mapping = first_mapping;
    desc.mapping_count = mapping_count;
    desc.entry = 0x20_0000;
    desc.stack_top = PD_STACK_TOP;
    desc
}

fn mapping(
    domain: u32,
    (ipa, pa, pages): (u64, u64, u64),
    rights: u8,
    kind: u8,
    state: u8,
) -> MappingDesc {
    MappingDesc {
        ipa,
        pa,
        size: pages * PAGE_SIZE,
        domain,
        region: NONE,
        rights,
        cached: 1,
        kind,
        state,
        page_shift: 12,
    }
}

fn program(domain: u32, pa: u64) -> MappingDesc {
    let rx = RIGHT_READ | RIGHT_EXECUTE;
    let range = (0x20_0000, pa, 1);
    mapping(domain, range, rx, MAPPING_KIND_PROGRAM, MAPPING_STATE_OWNED)
}

fn stack(domain: u32, pa: u64) -> MappingDesc {
    let rw = RIGHT_READ | RIGHT_WRITE;
    let range = (PD_STACK_TOP - PAGE_SIZE, pa, 1);
    mapping(domain, range, rw, MAPPING_KIND_STACK, MAPPING_STATE_OWNED)
}

fn header(frames: u64) -> BootInfoHeader {
    let mut header = BootInfoHeader::new_zeroed();
    header.ram_base = 0x4000_0000;
    header.ram_size = 0x4000_0000;
    header.hypervisor_base = 0x4000_0000;
    header.hypervisor_size = 0x200_0000;
    header.convertible_base = CONVERTIBLE;
    header.convertible_size = frames * PAGE_SIZE;
    header
}

/// A two-PD system encoded and sealed exactly as the image builder does.
fn blob(frames: u64) -> Vec<u64> {
    let domains = [domain("first", 10, 0, 2), domain("second", 20, 2, 2)];
    let mappings = [
        program(0, CONVERTIBLE),
        stack(0, CONVERTIBLE + 0x1000),
        program(1, CONVERTIBLE + 0x2000),
        stack(1, CONVERTIBLE + 0x3000),
    ];
    let channels = [ChannelDesc {
        domain_a: 0,
        id_a: 1,
        domain_b: 1,
        id_b: 2,
        flags: CHANNEL_A_NOTIFIES_B,
        reserved0: 0,
    }];
    let tables = Tables {
        domains: &domains,
        mappings: &mappings,
        channels: &channels,
        irqs: &[],
    };
    // u64 words keep the buffer 8-byte aligned, as the parser requires.
    let mut words = vec![0u64; encoded_len(&tables).div_ceil(8)];
    encode(&header(frames), &tables, words.as_mut_bytes()).unwrap();
    words
}

/// A heap of `pool_pages` table pages after the structures `frames` frames need, with memory
/// for those structures only (the fake arch keeps the pool's pages).
fn heap(frames: u64, pool_pages: u64) -> (Heap, FakeArch) {
    let carved = heap_bytes(frames).next_multiple_of(2 * PAGE_SIZE);
    let end = HEAP_BASE + carved + pool_pages * PAGE_SIZE;
    let memory: &'static mut [u64] =
        Box::leak(vec![0u64; (heap_bytes(frames) / 8) as usize].into_boxed_slice());
    let heap = Heap::new(PhysAddr(HEAP_BASE), PhysAddr(end), memory.as_mut_bytes());
    (heap, FakeArch::new(PhysAddr(HEAP_BASE), PhysAddr(end)))
}

type Booted = (
    Result<BootReport, BootError>,
    Box<Hypervisor<FakeArch>>,
    FakeArch,
);

fn boot_tables(tables: &BootTables<'_>, pool_pages: u64) -> Booted {
    let frames = tables.header.convertible_size / PAGE_SIZE;
    let (heap, mut arch) = heap(frames, pool_pages);
    let mut hypervisor = Box::new(Hypervisor::EMPTY);
    let mut violations = Vec::new();
    let result = hypervisor.boot_tables(tables, &mut arch, heap, &mut |violation| {
        violations.push(violation)
    });
    assert!(violations.is_empty(), "{violations:?}");
    (result, hypervisor, arch)
}

fn state(
    hypervisor: &Hypervisor<FakeArch>,
    arch: &FakeArch,
    domain: u8,
    ipa: u64,
) -> Option<PageState> {
    hypervisor
        .engine
        .page_state(arch, &hypervisor.domains, DomainId(domain), Ipa(ipa))
        .unwrap()
}

#[test]
fn a_valid_blob_builds_domains_tables_and_a_clean_audit() {
    let words = blob(64);
    let info = BootInfo::parse(words.as_bytes()).unwrap();
    let (heap, mut arch) = heap(64, POOL_PAGES);
    let mut hypervisor = Box::new(Hypervisor::EMPTY);
    let report = hypervisor
        .boot(&info, &mut arch, heap, &mut |violation| {
            panic!("{violation}")
        })
        .unwrap();
    assert_eq!(report.mapped_pages, 4);
    assert_eq!(report.frames, 64);
    assert_eq!(hypervisor.domains().len(), 2);
    assert_eq!(hypervisor.audits(), 1);
    assert_eq!(
        state(&hypervisor, &arch, 0, 0x20_0000),
        Some(PageState::Owned)
    );
    let stack_page = PD_STACK_TOP - PAGE_SIZE;
    assert_eq!(
        state(&hypervisor, &arch, 1, stack_page),
        Some(PageState::Owned)
    );
    assert_eq!(state(&hypervisor, &arch, 0, 0x20_1000), None);
    // Domain i runs on VMID i + 1.
    let second = ContextId::pd(DomainId(1));
    assert_eq!(hypervisor.vttbr(second).unwrap() >> 48, 2);
    // Priority 20 inits first.
    assert_eq!(hypervisor.start(0), Decision::Run(second));
}

#[test]
fn the_frame_table_is_sized_from_the_boot_information() {
    // 1 GiB of RAM: 253,952 frames, well past the 512 MiB the kernel once hard-coded.
    let frames = (0x4000_0000 - 0x200_0000) / PAGE_SIZE;
    let domains = [domain("first", 10, 0, 2)];
    let high = CONVERTIBLE + (frames - 2) * PAGE_SIZE;
    let mappings = [program(0, high), stack(0, high + PAGE_SIZE)];
    let header = header(frames);
    let tables = BootTables {
        header: &header,
        domains: &domains,
        mappings: &mappings,
        channels: &[],
        irqs: &[],
    };
    let (report, hypervisor, arch) = boot_tables(&tables, POOL_PAGES);
    let report = report.unwrap();
    assert_eq!(report.frames, frames as usize);
    assert_eq!(hypervisor.engine.frame_table().frames(), frames as usize);
    assert_eq!(
        state(&hypervisor, &arch, 0, 0x20_0000),
        Some(PageState::Owned)
    );
    let record = hypervisor.engine.frame_table().record(PhysAddr(high));
    assert_eq!(record.and_then(|record| record.owner()), Some(DomainId(0)));
}

#[test]
fn a_heap_too_small_for_the_frame_table_is_refused() {
    let words = blob(64);
    let info = BootInfo::parse(words.as_bytes()).unwrap();
    // Memory for one word less than the frames need.
    let short = (heap_bytes(64) / 8 - 1) as usize;
    let memory: &'static mut [u64] = Box::leak(vec![0u64; short].into_boxed_slice());
    let end = PhysAddr(HEAP_BASE + 0x10_0000);
    let heap = Heap::new(PhysAddr(HEAP_BASE), end, memory.as_mut_bytes());
    let mut arch = FakeArch::new(PhysAddr(HEAP_BASE), end);
    let mut hypervisor = Box::new(Hypervisor::EMPTY);
    let error = hypervisor
        .boot(&info, &mut arch, heap, &mut |_| {})
        .unwrap_err();
    assert_eq!(
        error,
        BootError::HeapTooSmall {
            frames: 64,
            heap: short * 8
        }
    );
    let text = std::format!("{error}");
    assert!(text.starts_with("the hypervisor heap"), "{text}");
    assert!(hypervisor.domains().is_empty(), "refused: nothing built");
}

#[test]
fn a_table_pool_too_small_for_every_domain_is_refused() {
    let words = blob(64);
    let info = BootInfo::parse(words.as_bytes()).unwrap();
    // One 8 KiB root fits; the second domain's does not.
    let (heap, mut arch) = heap(64, 3);
    let mut hypervisor = Box::new(Hypervisor::EMPTY);
    let error = hypervisor
        .boot(&info, &mut arch, heap, &mut |_| {})
        .unwrap_err();
    assert_eq!(
        error,
        BootError::Domain {
            index: 1,
            error: Error::OutOfTableMemory
        }
    );
}

/// Tables of `domains` and `mappings`.
fn tables<'a>(
    header: &'a BootInfoHeader,
    domains: &'a [DomainDesc],
    mappings: &'a [MappingDesc],
) -> BootTables<'a> {
    BootTables {
        header,
        domains,
        mappings,
        channels: &[],
        irqs: &[],
    }
}

#[test]
fn program_stack_and_shared_region_map_with_their_states() {
    let rw = RIGHT_READ | RIGHT_WRITE;
    let (kind, read) = (MAPPING_KIND_REGION, RIGHT_READ);
    let region = (0x1000_0000, CONVERTIBLE + 0x8000, 1);
    let mappings = [
        // Domain 0 borrows the region domain 1 owns: listed first, mapped second.
        mapping(0, region, rw, kind, MAPPING_STATE_SHARED_BORROWED),
        mapping(
            0,
            (0x20_0000, CONVERTIBLE, 2),
            read,
            kind,
            MAPPING_STATE_OWNED,
        ),
        mapping(1, region, rw, kind, MAPPING_STATE_SHARED_OWNED),
        mapping(
            1,
            (0x20_0000, CONVERTIBLE + 0x2000, 1),
            read,
            kind,
            MAPPING_STATE_OWNED,
        ),
    ];
    let domains = [domain("a", 1, 0, 2), domain("b", 1, 2, 2)];
    let header = header(64);
    let (result, hypervisor, arch) = boot_tables(&tables(&header, &domains, &mappings), 64);
    result.unwrap();
    let state = |domain, ipa| state(&hypervisor, &arch, domain, ipa);
    assert_eq!(state(0, 0x20_1000), Some(PageState::Owned));
    assert_eq!(state(0, 0x20_2000), None);
    assert_eq!(state(1, 0x1000_0000), Some(PageState::SharedOwned));
    assert_eq!(state(0, 0x1000_0000), Some(PageState::SharedBorrowed));
}

#[test]
fn hypervisor_memory_and_double_owners_are_refused() {
    let (kind, read, owned) = (MAPPING_KIND_REGION, RIGHT_READ, MAPPING_STATE_OWNED);
    let header = header(64);
    let into_hypervisor = [mapping(0, (0x20_0000, 0x4010_0000, 1), read, kind, owned)];
    let one = [domain("a", 1, 0, 1)];
    let (result, _, _) = boot_tables(&tables(&header, &one, &into_hypervisor), 64);
    assert_eq!(
        result.unwrap_err(),
        BootError::Mapping {
            index: 0,
            error: Error::HypervisorMemory
        }
    );
    let twice = [
        mapping(0, (0x20_0000, CONVERTIBLE, 1), read, kind, owned),
        mapping(1, (0x20_0000, CONVERTIBLE, 1), read, kind, owned),
    ];
    let two = [domain("a", 1, 0, 1), domain("b", 1, 1, 1)];
    let (result, _, _) = boot_tables(&tables(&header, &two, &twice), 64);
    assert_eq!(
        result.unwrap_err(),
        BootError::Mapping {
            index: 1,
            error: Error::WrongState
        }
    );
}

#[test]
fn malformed_records_are_refused() {
    let header = header(64);
    let one = [domain("a", 1, 0, 1)];
    let (kind, owned) = (MAPPING_KIND_REGION, MAPPING_STATE_OWNED);
    let mut odd = mapping(0, (0x20_0000, CONVERTIBLE, 1), RIGHT_READ, kind, owned);
    odd.size = 0x1800;
    let (result, _, _) = boot_tables(&tables(&header, &one, &[odd]), 64);
    assert_eq!(
        result.unwrap_err(),
        BootError::Mapping {
            index: 0,
            error: Error::InvalidRange
        }
    );
    let rights = mapping(0, (0x20_0000, CONVERTIBLE, 1), 0x80, kind, owned);
    let (result, _, _) = boot_tables(&tables(&header, &one, &[rights]), 64);
    assert_eq!(
        result.unwrap_err(),
        BootError::Mapping {
            index: 0,
            error: Error::InvalidRights
        }
    );
}

/// A VMM PD and its protected VM: the VM's region of `pages` pages at guest IPA 0x4000_0000,
/// and the VMM's window onto it at 0x2000_0000.
fn vmm_and_guest(pages: u64) -> ([DomainDesc; 2], [MappingDesc; 2]) {
    let mut vm = domain("guest", 1, 1, 1);
    vm.kind = DOMAIN_KIND_VM;
    vm.flags = DOMAIN_FLAG_PROTECTED;
    vm.parent = 0;
    vm.child_id = 5;
    vm.vcpu_ids = 1 << 5;
    vm.entry = 0;
    vm.stack_top = 0;
    let rwx = RIGHT_READ | RIGHT_WRITE | RIGHT_EXECUTE;
    let rw = RIGHT_READ | RIGHT_WRITE;
    let mappings = [
        mapping(
            0,
            (0x2000_0000, CONVERTIBLE, pages),
            rw,
            MAPPING_KIND_WINDOW,
            MAPPING_STATE_NO_PAGE,
        ),
        mapping(
            1,
            (0x4000_0000, CONVERTIBLE, pages),
            rwx,
            MAPPING_KIND_REGION,
            MAPPING_STATE_OWNED,
        ),
    ];
    ([domain("vmm", 2, 0, 1), vm], mappings)
}

#[test]
fn a_window_links_the_protected_guest_to_its_vmm_and_starts_empty() {
    let (domains, mappings) = vmm_and_guest(4);
    let header = header(64);
    let (result, mut hypervisor, mut arch) = boot_tables(&tables(&header, &domains, &mappings), 64);
    result.unwrap();
    let (vmm, guest) = (DomainId(0), DomainId(1));
    assert_eq!(
        hypervisor.domains.vspace(guest).unwrap().link,
        Some(GuestLink {
            host: vmm,
            window: Window {
                guest_base: Ipa(0x4000_0000),
                host_base: Ipa(0x2000_0000),
                size: 4 * PAGE_SIZE,
            },
            mode: ConversionMode::History,
        })
    );
    // The guest owns its memory; the window shows none of it.
    assert_eq!(
        state(&hypervisor, &arch, 1, 0x4000_1000),
        Some(PageState::Owned)
    );
    assert_eq!(state(&hypervisor, &arch, 0, 0x2000_1000), None);
    // The engine knows the pair from the first instruction: the guest's share appears in the
    // window, at the same offset.
    let hypervisor = &mut *hypervisor;
    hypervisor
        .engine
        .share(&mut arch, &hypervisor.domains, guest, Ipa(0x4000_1000), 1)
        .unwrap();
    assert_eq!(
        state(hypervisor, &arch, 0, 0x2000_1000),
        Some(PageState::SharedBorrowed)
    );
    // The VM's vCPU is its parent's child, stopped, with its child id.
    let vcpu = hypervisor.context(ContextId::pd(guest)).unwrap();
    assert_eq!(vcpu.child_id, Some(5));
    assert_eq!(vcpu.state, RunState::Stopped);
}

#[test]
fn a_window_onto_no_protected_guest_of_its_own_is_refused() {
    let (mut domains, mappings) = vmm_and_guest(4);
    // The VM is not protected: a window onto it makes no sense.
    domains[1].flags = 0;
    let header = header(64);
    let (result, _, _) = boot_tables(&tables(&header, &domains, &mappings), 64);
    assert_eq!(
        result.unwrap_err(),
        BootError::Mapping {
            index: 0,
            error: Error::NotLinked
        }
    );
}

#[test]
fn a_split_mode_guest_gets_its_mode_and_one_context_per_vcpu() {
    let (mut domains, mappings) = vmm_and_guest(4);
    domains[1].flags |= DOMAIN_FLAG_SPLIT;
    domains[1].vcpu_ids = (1 << 5) | (1 << 9);
    let header = header(64);
    let (result, mut hypervisor, mut arch) = boot_tables(&tables(&header, &domains, &mappings), 64);
    result.unwrap();
    let guest = DomainId(1);
    let link = hypervisor.domains.vspace(guest).unwrap().link.unwrap();
    assert_eq!(link.mode, ConversionMode::Split);
    assert_eq!(
        hypervisor.domain(guest).unwrap().kind,
        crate::domain::DomainKind::Vm {
            protected: true,
            mode: ConversionMode::Split
        }
    );
    // vCPU index n is the n-th lowest id; each is its VMM's child by that id.
    let vcpus: Vec<_> = hypervisor
        .domain(guest)
        .unwrap()
        .contexts
        .iter()
        .map(|vcpu| (vcpu.child_id, vcpu.state))
        .collect();
    assert_eq!(
        vcpus,
        [(Some(5), RunState::Stopped), (Some(9), RunState::Stopped)]
    );
    assert_eq!(
        hypervisor.domains.child_context(DomainId(0), 9),
        Some(ContextId {
            domain: guest,
            index: 1
        })
    );
    // A split-mode guest's share lands at its alias; the window shows it at the same offset.
    let hypervisor = &mut *hypervisor;
    hypervisor
        .engine
        .share(&mut arch, &hypervisor.domains, guest, Ipa(0x4000_1000), 1)
        .unwrap();
    let alias = Ipa(0x4000_1000).shared_alias().get();
    assert_eq!(
        state(hypervisor, &arch, 1, alias),
        Some(PageState::SharedOwned)
    );
    assert_eq!(state(hypervisor, &arch, 1, 0x4000_1000), None);
    assert_eq!(
        state(hypervisor, &arch, 0, 0x2000_1000),
        Some(PageState::SharedBorrowed)
    );
}
