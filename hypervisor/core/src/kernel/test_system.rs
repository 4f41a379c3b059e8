//! A hypervisor on the fake arch, booted from domain, channel and interrupt tables alone (no
//! memory mappings), for the kernel's host tests: each test plays the PDs' side.

extern crate std;

use core::fmt::Write;
use core::ops::{Deref, DerefMut};
use std::boxed::Box;
use std::vec;
use std::vec::Vec;

use frameshift_abi::boot_info::{
    BootInfoHeader, ChannelDesc, DomainDesc, IrqDesc, MappingDesc, DOMAIN_KIND_PD, NAME_LEN,
};
use zerocopy::{FromZeros, IntoBytes};

use crate::addr::{PhysAddr, PAGE_SIZE};
use crate::arch::fake::{FakeArch, FakeContext};
use crate::descriptor::Rights;
use crate::domain::{ContextId, DomainId, Domains, RunState};
use crate::domain::{DomainKind, Registers};
use crate::frame_table::FrameRecord;
use crate::hypervisor::{
    heap_bytes, BootError, BootTables, BuildError, Decision, Exit, Heap, Hypervisor,
};

/// A domain of a test system's boot information: a PD (entry 0x20_0000, stack top 0x40_0000)
/// or a VM (no entry; its vCPUs are set by the caller), with no mappings yet.
pub(super) fn domain_desc(
    name: &str,
    kind: u8,
    priority: u8,
    parent: u32,
    child_id: u32,
) -> DomainDesc {
    let mut padded = [0u8; NAME_LEN];
    padded[..name.len()].copy_from_slice(name.as_bytes());
    let pd = kind == DOMAIN_KIND_PD;
    DomainDesc {
        name: padded,
        kind,
        priority,
        flags: 0,
        reserved0: 0,
        parent,
        child_id,
        first_mapping: 0,
        mapping_count: 0,
        reserved1: 0,
        entry: if pd { 0x20_0000 } else { 0 },
        stack_top: if pd { 0x40_0000 } else { 0 },
        vcpu_ids: 0,
    }
}

/// Frames the test systems' convertible range has.
pub(super) const FRAMES: u64 = 16;
/// Where the test systems' heap (the table pool) is.
const HEAP: (u64, u64) = (0x4100_0000, 0x4200_0000);

/// The hypervisor and its fake machine.
#[derive(Debug)]
pub(super) struct TestSystem {
    hypervisor: Box<Hypervisor<FakeArch>>,
    arch: FakeArch,
}

impl TestSystem {
    /// Boots the system these tables describe, or returns the kernel's refusal.
    pub(super) fn new(
        domains: &[DomainDesc],
        channels: &[ChannelDesc],
        irqs: &[IrqDesc],
    ) -> Result<Self, BuildError> {
        Self::with_mappings(domains, &[], channels, irqs)
    }

    /// Boots the system these tables describe, memory mappings included (the convertible
    /// range is [`FRAMES`] frames from 0x4200_0000).
    pub(super) fn with_mappings(
        domains: &[DomainDesc],
        mappings: &[MappingDesc],
        channels: &[ChannelDesc],
        irqs: &[IrqDesc],
    ) -> Result<Self, BuildError> {
        let mut header = BootInfoHeader::new_zeroed();
        header.ram_base = 0x4000_0000;
        header.ram_size = 0x2000_0000;
        header.hypervisor_base = 0x4000_0000;
        header.hypervisor_size = 0x200_0000;
        header.convertible_base = 0x4200_0000;
        header.convertible_size = FRAMES * PAGE_SIZE;
        let tables = BootTables {
            header: &header,
            domains,
            mappings,
            channels,
            irqs,
        };
        let words = (heap_bytes(FRAMES) / 8) as usize;
        let memory: &'static mut [u64] = Box::leak(vec![0u64; words].into_boxed_slice());
        let heap = Heap::new(PhysAddr(HEAP.0), PhysAddr(HEAP.1), memory.as_mut_bytes());
        let mut arch = FakeArch::new(PhysAddr(HEAP.0), PhysAddr(HEAP.1));
        let mut hypervisor = Box::new(Hypervisor::EMPTY);
        match hypervisor.boot_tables(&tables, &mut arch, heap, &mut |violation| {
            panic!("boot audit: {violation}")
        }) {
            Ok(_) => Ok(Self { hypervisor, arch }),
            Err(BootError::Kernel(error)) => Err(error),
            Err(other) => panic!("boot failed: {other}"),
        }
    }

    /// Handles an exit of the current context (see [`Hypervisor::handle`]).
    pub(super) fn handle(&mut self, exit: Exit, now: u64, out: &mut dyn Write) -> Decision {
        self.hypervisor.handle(&mut self.arch, exit, now, out)
    }

    /// What the tests look at of one PD.
    pub(super) fn domain(&self, pd: ContextId) -> Option<DomainView> {
        let domain = self.hypervisor.domain(pd.domain)?;
        let context = self.hypervisor.context(pd)?;
        Some(DomainView {
            state: context.state,
            budget: context.budget,
            registers: context.registers,
            pending_notifications: domain.events.notifications,
            pending_faults: domain.events.child_faults,
            priority: domain.priority,
            parent: domain.parent.map(ContextId::pd),
            handling_fault: domain.events.handling_fault,
            passive: matches!(domain.kind, DomainKind::Pd { passive: true }),
        })
    }

    /// Number of domains.
    pub(super) fn domain_count(&self) -> usize {
        self.hypervisor.domains().len()
    }

    /// The fake machine.
    pub(super) fn arch(&self) -> &FakeArch {
        &self.arch
    }

    /// The hypervisor and its machine, for calls that take both.
    pub(super) fn parts(&mut self) -> (&mut Hypervisor<FakeArch>, &mut FakeArch) {
        (&mut self.hypervisor, &mut self.arch)
    }

    /// Everything a refused call must leave as it was: every frame record and its borrowers,
    /// every page of memory (tables included), every domain (contexts, registers, events).
    pub(super) fn snapshot(&self) -> Snapshot {
        let frames = self.hypervisor.engine().frame_table();
        let records = (0..frames.frames())
            .map(|index| {
                let mut borrowers = Vec::new();
                frames.for_each_borrower(index, |domain, rights| borrowers.push((domain, rights)));
                (frames.record_at(index), borrowers)
            })
            .collect();
        Snapshot {
            records,
            arch: self.arch.clone(),
            domains: self.hypervisor.domains().clone(),
        }
    }

    /// Whether nothing differs from `before` but the first `results` registers (`x0`..) of
    /// `caller`, where a refused call writes its code.
    pub(super) fn unchanged_since(
        &self,
        before: &Snapshot,
        caller: ContextId,
        results: usize,
    ) -> bool {
        let mut now = self.snapshot();
        if let (Some(now), Some(then)) = (
            now.domains.context_mut(caller),
            before.domains.context(caller),
        ) {
            now.registers.x[..results].copy_from_slice(&then.registers.x[..results]);
        }
        now.records == before.records
            && now.domains == before.domains
            && self.arch.same_memory(&before.arch)
    }
}

impl TestSystem {
    /// Whether the frame table and memory (tables included) are as in `before`.
    pub(super) fn memory_unchanged_since(&self, before: &Snapshot) -> bool {
        self.snapshot().records == before.records && self.arch.same_memory(&before.arch)
    }
}

/// The state [`TestSystem::snapshot`] takes.
#[derive(Clone, Debug)]
pub(super) struct Snapshot {
    records: Vec<(FrameRecord, Vec<(DomainId, Rights)>)>,
    arch: FakeArch,
    domains: Domains<FakeContext>,
}

impl Deref for TestSystem {
    type Target = Hypervisor<FakeArch>;

    fn deref(&self) -> &Self::Target {
        &self.hypervisor
    }
}

impl DerefMut for TestSystem {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.hypervisor
    }
}

/// One PD's state as the tests check it.
#[derive(Clone, Copy, Debug)]
pub(super) struct DomainView {
    pub(super) state: RunState,
    pub(super) budget: u64,
    pub(super) registers: Registers,
    pub(super) pending_notifications: u64,
    pub(super) pending_faults: u64,
    pub(super) priority: u8,
    pub(super) parent: Option<ContextId>,
    pub(super) handling_fault: Option<u8>,
    pub(super) passive: bool,
}
