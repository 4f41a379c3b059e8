//! A hypervisor on the fake arch, booted from domain, channel and interrupt tables alone (no
//! memory mappings), for the kernel's host tests: each test plays the PDs' side.

extern crate std;

use core::fmt::Write;
use core::ops::{Deref, DerefMut};
use std::boxed::Box;
use std::vec;

use frameshift_abi::boot_info::{BootInfoHeader, ChannelDesc, DomainDesc, IrqDesc};
use zerocopy::{FromZeros, IntoBytes};

use crate::addr::{PhysAddr, PAGE_SIZE};
use crate::arch::fake::FakeArch;
use crate::domain::{ContextId, RunState};
use crate::domain::{DomainKind, Registers};
use crate::hypervisor::{
    heap_bytes, BootError, BootTables, BuildError, Decision, Exit, Heap, Hypervisor,
};

/// Frames the test systems' convertible range has.
const FRAMES: u64 = 16;
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
            mappings: &[],
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
