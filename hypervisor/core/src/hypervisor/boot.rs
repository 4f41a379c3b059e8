//! From validated boot information to a system ready to run, in place: the domain, channel and
//! interrupt tables checked; the frame table and the audit's scratch carved from the
//! hypervisor's heap, sized from the boot information's RAM; every domain's address space built
//! through the engine (the VMM windows included, as each protected guest's link to its host);
//! and the I1-I4 audit, all before any domain runs. Portable: the arch layer only finds the blob
//! and the heap, and host tests run the same path against the fake arch.

use core::fmt;

use frameshift_abi::boot_info::{
    BootInfo, BootInfoHeader, ChannelDesc, DomainDesc, IrqDesc, MappingDesc, DOMAIN_FLAG_PASSIVE,
    DOMAIN_FLAG_PROTECTED, DOMAIN_FLAG_SPLIT, DOMAIN_KIND_PD, DOMAIN_KIND_VM, IRQ_TRIGGER_EDGE,
    IRQ_TRIGGER_LEVEL, MAPPING_KIND_DEVICE, MAPPING_KIND_WINDOW, MAPPING_STATE_NO_PAGE,
    MAPPING_STATE_OWNED, MAPPING_STATE_SHARED_BORROWED, MAPPING_STATE_SHARED_OWNED,
    MAPPING_STATE_UNTRACKED, NONE,
};
use frameshift_abi::domain_name::DomainNameError;
use zerocopy::FromBytes;

use super::{Hypervisor, IrqBinding, MAX_IRQS, MAX_PRIORITY};
use crate::addr::{Ipa, PhysAddr, Vmid, PAGE_SIZE};
use crate::arch::{Arch, ContextKind};
use crate::audit::{audit, Violation};
use crate::descriptor::{MemoryType, Rights};
use crate::domain::{
    Context, ConversionMode, Domain, DomainId, DomainKind, Events, GuestLink, Registers, RunState,
    Window, MAX_CHILD_ID, MAX_DOMAINS,
};
use crate::engine::{BootMapping, BootSharing, Engine};
use crate::error::Error;
use crate::frame_table::{BorrowerRecord, FrameRecord, StaticStorage};
use crate::kernel::channels::{ChannelError, ChannelTable, MAX_CHANNEL_ID};
use crate::kernel::console::{ConsoleName, LineBuffer};
use crate::kernel::ready_queues::ReadyQueues;
use crate::table_pool::TablePool;

/// Records of the frame table's borrower side table (frames shared with more than one domain).
pub const SIDE_TABLE_RECORDS: usize = 1024;

/// The boot information's tables, as [`BootInfo::parse`] checked them (host tests may build
/// them directly, to test the hypervisor's own checks).
#[derive(Clone, Copy, Debug)]
pub struct BootTables<'a> {
    /// The header: the memory layout.
    pub header: &'a BootInfoHeader,
    /// One record per PD or VM.
    pub domains: &'a [DomainDesc],
    /// Every stage-2 mapping.
    pub mappings: &'a [MappingDesc],
    /// The channels.
    pub channels: &'a [ChannelDesc],
    /// The interrupts routed to PDs.
    pub irqs: &'a [IrqDesc],
}

impl<'a> BootTables<'a> {
    /// The tables of validated boot information.
    pub fn of(info: &BootInfo<'a>) -> Self {
        Self {
            header: info.header(),
            domains: info.domains(),
            mappings: info.mappings(),
            channels: info.channels(),
            irqs: info.irqs(),
        }
    }
}

/// The hypervisor's heap: the physical range `[base, end)` after the boot information, and the
/// memory at its start, which the hypervisor may use as it likes for its whole run. Boot carves
/// the frame table and the audit's scratch from the front of it, sized from the RAM the boot
/// information describes, and builds the stage-2 table pool from the rest of the range.
///
/// In the kernel `memory` is the identity-mapped heap itself; a host test lends a smaller
/// buffer (the fake arch keeps the table pool's pages), as long as it holds what is carved.
#[derive(Debug)]
pub struct Heap {
    base: PhysAddr,
    end: PhysAddr,
    memory: &'static mut [u8],
}

impl Heap {
    /// The heap `[base, end)`, whose first `memory.len()` bytes `memory` is. `memory` must be
    /// 8-byte aligned (it holds the frame table).
    pub fn new(base: PhysAddr, end: PhysAddr, memory: &'static mut [u8]) -> Self {
        Self { base, end, memory }
    }

    /// Takes the next `count` records of `T` from the front, 8-byte aligned, or `None` if the
    /// heap cannot hold them.
    fn carve<T: FromBytes + zerocopy::IntoBytes + zerocopy::KnownLayout>(
        &mut self,
        count: usize,
    ) -> Option<&'static mut [T]> {
        let bytes = count.checked_mul(size_of::<T>())?.next_multiple_of(8);
        if bytes > self.memory.len() {
            return None;
        }
        let memory = core::mem::take(&mut self.memory);
        let (taken, rest) = memory.split_at_mut(bytes);
        self.memory = rest;
        self.base = PhysAddr(self.base.get().checked_add(bytes as u64)?);
        let (records, _) = <[T]>::mut_from_prefix_with_elems(taken, count).ok()?;
        Some(records)
    }

    /// What is left as a table pool: from the next 8 KiB boundary (stage-2 roots are 8 KiB
    /// aligned) to the end.
    fn pool(&self) -> (PhysAddr, usize) {
        let base = self.base.get().next_multiple_of(2 * PAGE_SIZE);
        let pages = self.end.get().saturating_sub(base) / PAGE_SIZE;
        (PhysAddr(base), pages as usize)
    }
}

/// Why the kernel refused to build the system from the boot information's tables.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BuildError {
    /// No domains, or more than [`MAX_DOMAINS`].
    DomainCount(usize),
    /// Domain `index` has an unknown kind.
    DomainKind(usize),
    /// Domain `index` has a priority above [`MAX_PRIORITY`].
    Priority(usize),
    /// Domain `index` names a parent that does not exist, is itself, comes later, or is a VM,
    /// or has a child id (or vCPU id) above 61, or more vCPUs than a VM may have.
    Parent(usize),
    /// The channel table is inconsistent.
    Channel(ChannelError),
    /// Interrupt record `index` names a bad domain, channel id, trigger or INTID, or repeats one.
    Irq(usize),
    /// More interrupt records than [`MAX_IRQS`].
    TooManyIrqs {
        /// How many records the boot information has.
        count: usize,
    },
    /// Domain `index` has a name that breaks the domain-name rule (`domain_name::check`).
    Name {
        /// The domain.
        index: usize,
        /// What is wrong with its name.
        error: DomainNameError,
    },
    /// Domain `index` has the same name as the earlier domain `other`.
    DuplicateName {
        /// The domain.
        index: usize,
        /// The earlier domain with that name.
        other: usize,
    },
}

impl fmt::Display for BuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::DomainCount(count) => write!(f, "{count} domains (need 1..={MAX_DOMAINS})"),
            Self::DomainKind(index) => write!(f, "domain {index}: unknown kind"),
            Self::Priority(index) => write!(f, "domain {index}: priority above {MAX_PRIORITY}"),
            Self::Parent(index) => write!(f, "domain {index}: invalid parent"),
            Self::Channel(ChannelError::TooMany) => f.write_str("too many channels"),
            Self::Channel(ChannelError::BadDomain { index }) => {
                write!(f, "channel {index}: unknown domain")
            }
            Self::Channel(ChannelError::BadId { index }) => {
                write!(f, "channel {index}: id above 61")
            }
            Self::Channel(ChannelError::DuplicateId { index }) => {
                write!(f, "channel {index}: id already used at one end")
            }
            Self::Irq(index) => write!(f, "irq {index}: invalid or duplicate"),
            Self::TooManyIrqs { count } => write!(f, "{count} irqs (at most {MAX_IRQS})"),
            Self::Name { index, error } => write!(f, "domain {index}: {error}"),
            Self::DuplicateName { index, other } => {
                write!(f, "domain {index}: name already used by domain {other}")
            }
        }
    }
}

/// Why the system could not be built. Every variant means no domain ever runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BootError {
    /// The domain, channel or interrupt tables are inconsistent.
    Kernel(BuildError),
    /// The heap cannot hold the frame table and the audit's scratch for this much RAM.
    HeapTooSmall {
        /// Frames the convertible range has.
        frames: u64,
        /// Bytes of heap memory there are.
        heap: usize,
    },
    /// The table pool, frame table or hypervisor range was refused by the core.
    Memory(Error),
    /// Creating domain `index`'s address space failed.
    Domain {
        /// Domain index.
        index: usize,
        /// The core's refusal.
        error: Error,
    },
    /// Mapping record `index` (in the boot-info mapping table) was refused.
    Mapping {
        /// Mapping index.
        index: usize,
        /// The core's refusal.
        error: Error,
    },
    /// The audit found the tables and the frame table in disagreement (a hypervisor bug), or
    /// could not run.
    Audit {
        /// Violations reported.
        violations: usize,
    },
}

impl fmt::Display for BootError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Kernel(error) => write!(f, "{error}"),
            Self::HeapTooSmall { frames, heap } => write!(
                f,
                "the hypervisor heap ({heap} bytes) cannot hold the frame table and audit \
                 scratch of {frames} frames ({} bytes)",
                heap_bytes(*frames)
            ),
            Self::Memory(error) => write!(f, "memory layout: {error}"),
            Self::Domain { index, error } => write!(f, "domain {index}: stage 2: {error}"),
            Self::Mapping { index, error } => write!(f, "mapping {index}: {error}"),
            Self::Audit { violations } => write!(f, "boot audit: {violations} violations"),
        }
    }
}

/// Heap bytes boot carves for `frames` frames: their records, the side table, the scratch.
pub const fn heap_bytes(frames: u64) -> u64 {
    let records = frames * size_of::<FrameRecord>() as u64;
    let side_table = (SIDE_TABLE_RECORDS * size_of::<BorrowerRecord>()) as u64;
    records.next_multiple_of(8) + side_table.next_multiple_of(8) + frames.next_multiple_of(8)
}

/// What boot built, for the console.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BootReport {
    /// Pages the boot audit examined.
    pub mapped_pages: usize,
    /// Frames the frame table tracks.
    pub frames: usize,
    /// Table pages still free in the pool.
    pub table_pages_free: usize,
}

impl<A: Arch> Hypervisor<A> {
    /// Builds the system `info` describes into this (empty) hypervisor, in place: the object is
    /// far too big for the EL2 stack. `heap` is the hypervisor's heap; each audit violation is
    /// passed to `report`. On an error nothing may run; the object is left empty.
    pub fn boot(
        &mut self,
        info: &BootInfo<'_>,
        arch: &mut A,
        heap: Heap,
        report: &mut dyn FnMut(Violation),
    ) -> Result<BootReport, BootError> {
        self.boot_tables(&BootTables::of(info), arch, heap, report)
    }

    /// [`Hypervisor::boot`] from the tables themselves.
    pub fn boot_tables(
        &mut self,
        tables: &BootTables<'_>,
        arch: &mut A,
        heap: Heap,
        report: &mut dyn FnMut(Violation),
    ) -> Result<BootReport, BootError> {
        let result = self.build(tables, arch, heap, report);
        if result.is_err() {
            self.clear();
        }
        result
    }

    /// Back to [`Hypervisor::EMPTY`]'s state, in place (the heap slices are dropped).
    fn clear(&mut self) {
        self.domains.clear();
        self.engine = Engine::new(StaticStorage::EMPTY);
        self.channels = ChannelTable::empty();
        self.irqs.clear();
        self.acknowledged = 0;
        self.current = None;
        self.counters = super::Counters::default();
        self.ready = ReadyQueues::new();
        self.time_slice = super::DEFAULT_TIME_SLICE;
        self.slice_start = 0;
        self.charged = None;
        self.audit_scratch = None;
        self.audits = 0;
    }

    fn build(
        &mut self,
        tables: &BootTables<'_>,
        arch: &mut A,
        mut heap: Heap,
        report: &mut dyn FnMut(Violation),
    ) -> Result<BootReport, BootError> {
        self.clear();
        // The domain, channel and interrupt tables first: they bound everything else.
        self.check_domains(tables.domains)
            .map_err(BootError::Kernel)?;
        self.channels = ChannelTable::new(tables.channels, tables.domains.len())
            .map_err(|error| BootError::Kernel(BuildError::Channel(error)))?;
        self.build_irqs(tables.domains, tables.irqs)
            .map_err(BootError::Kernel)?;
        // Memory: the frame table covers the convertible range of the RAM the image was built
        // for, whatever its size.
        let header = tables.header;
        let frames = header.convertible_size / PAGE_SIZE;
        let too_small = BootError::HeapTooSmall {
            frames,
            heap: heap.memory.len(),
        };
        let count = usize::try_from(frames).map_err(|_| too_small)?;
        let records = heap.carve::<FrameRecord>(count).ok_or(too_small)?;
        let borrowers = heap
            .carve::<BorrowerRecord>(SIDE_TABLE_RECORDS)
            .ok_or(too_small)?;
        self.audit_scratch = Some(heap.carve::<u8>(count).ok_or(too_small)?);
        self.engine = Engine::new(StaticStorage::new(records, borrowers));
        let (pool_base, pool_pages) = heap.pool();
        let hypervisor_end = header
            .hypervisor_base
            .saturating_add(header.hypervisor_size);
        let pool = TablePool::new(pool_base, pool_pages).map_err(BootError::Memory)?;
        self.engine
            .init(pool, PhysAddr(header.convertible_base), count)
            .and_then(|()| {
                self.engine
                    .protect(PhysAddr(header.hypervisor_base), PhysAddr(hypervisor_end))
            })
            .map_err(BootError::Memory)?;
        // Every domain with its address space and contexts.
        for (index, desc) in tables.domains.iter().enumerate() {
            let vmid = Vmid(index as u16 + 1);
            let vspace = self
                .engine
                .create_vspace(arch, vmid)
                .map_err(|error| BootError::Domain { index, error })?;
            let domain = new_domain(index, desc, vspace, arch, self.time_slice)
                .map_err(BootError::Kernel)?;
            if self.domains.push(domain).is_none() {
                return Err(BootError::Kernel(BuildError::DomainCount(
                    tables.domains.len(),
                )));
            }
        }
        self.link_guests(tables)?;
        // Exclusive and owning mappings first, borrowed ones second, so a Microkit memory region
        // mapped into several PDs is owned by the PD the image builder named owner
        // (`MAPPING_STATE_SHARED_OWNED`) whatever the domain order.
        for borrowed_pass in [false, true] {
            for (index, record) in tables.mappings.iter().enumerate() {
                if (record.state == MAPPING_STATE_SHARED_BORROWED) != borrowed_pass {
                    continue;
                }
                let error = |error| BootError::Mapping { index, error };
                if let Some(mapping) = boot_mapping(record).map_err(error)? {
                    self.engine
                        .map_at_boot(arch, &self.domains, &mapping)
                        .map_err(error)?;
                }
            }
        }
        // Every PD starts runnable (its `init`), queued in table order.
        for context in self
            .domains
            .context_ids()
            .collect::<heapless::Vec<_, 256>>()
        {
            self.sync(context);
        }
        let summary = self.run_boot_audit(arch, report);
        match summary {
            Some(summary) if summary.violations == 0 => Ok(BootReport {
                mapped_pages: summary.mapped_pages,
                frames: count,
                table_pages_free: self.engine.pool().available(),
            }),
            Some(summary) => Err(BootError::Audit {
                violations: summary.violations,
            }),
            None => Err(BootError::Audit { violations: 0 }),
        }
    }

    /// Runs the I1-I4 audit over every domain now; `None` if the scratch is missing.
    pub(crate) fn run_audit(
        &mut self,
        memory: &A,
        report: &mut dyn FnMut(Violation),
    ) -> Option<crate::audit::AuditSummary> {
        let scratch = self.audit_scratch.as_deref_mut()?;
        self.audits += 1;
        audit(&self.engine, &self.domains, memory, scratch, report)
    }

    /// The audit boot runs: in proportion to what boot mapped ([`crate::audit::audit_boot`]);
    /// test builds run the full audit.
    fn run_boot_audit(
        &mut self,
        memory: &A,
        report: &mut dyn FnMut(Violation),
    ) -> Option<crate::audit::AuditSummary> {
        if cfg!(test) {
            return self.run_audit(memory, report);
        }
        let scratch = self.audit_scratch.as_deref_mut()?;
        self.audits += 1;
        crate::audit::audit_boot(&self.engine, &self.domains, memory, scratch, report)
    }

    /// Checks the domain table: kinds, priorities, parents (earlier PDs), child ids, names.
    fn check_domains(&self, domains: &[DomainDesc]) -> Result<(), BuildError> {
        if domains.is_empty() || domains.len() > MAX_DOMAINS {
            return Err(BuildError::DomainCount(domains.len()));
        }
        for (index, desc) in domains.iter().enumerate() {
            if desc.kind != DOMAIN_KIND_PD && desc.kind != DOMAIN_KIND_VM {
                return Err(BuildError::DomainKind(index));
            }
            if desc.priority > MAX_PRIORITY {
                return Err(BuildError::Priority(index));
            }
            if desc.parent != NONE {
                let parent = usize::try_from(desc.parent).map_err(|_| BuildError::Parent(index))?;
                // Parents come first (boot_info.rs), so this also rules out cycles.
                if parent >= index || domains[parent].kind != DOMAIN_KIND_PD {
                    return Err(BuildError::Parent(index));
                }
                if desc.child_id > u32::from(MAX_CHILD_ID) {
                    return Err(BuildError::Parent(index));
                }
            }
            // Every console line of this domain starts with its name: it must print as itself
            // and differ from every other (the boot-info reader checked this too).
            let name = ConsoleName::from_padded(&desc.name)
                .map_err(|error| BuildError::Name { index, error })?;
            for (other, earlier) in domains[..index].iter().enumerate() {
                if ConsoleName::from_padded(&earlier.name).is_ok_and(|earlier| earlier == name) {
                    return Err(BuildError::DuplicateName { index, other });
                }
            }
        }
        Ok(())
    }

    /// Checks and binds the interrupts: SPIs only, to PDs, on channel ids the PD does not use
    /// otherwise, none twice.
    fn build_irqs(&mut self, domains: &[DomainDesc], irqs: &[IrqDesc]) -> Result<(), BuildError> {
        if irqs.len() > MAX_IRQS {
            return Err(BuildError::TooManyIrqs { count: irqs.len() });
        }
        for (index, irq) in irqs.iter().enumerate() {
            let domain = usize::try_from(irq.domain)
                .ok()
                .filter(|&d| d < domains.len() && domains[d].kind == DOMAIN_KIND_PD)
                .ok_or(BuildError::Irq(index))?;
            let domain = DomainId(domain as u8);
            let channel = u8::try_from(irq.channel_id)
                .ok()
                .filter(|&c| u32::from(c) <= MAX_CHANNEL_ID)
                .ok_or(BuildError::Irq(index))?;
            let edge = match irq.trigger {
                IRQ_TRIGGER_LEVEL => false,
                IRQ_TRIGGER_EDGE => true,
                _ => return Err(BuildError::Irq(index)),
            };
            let clash = self
                .irqs
                .iter()
                .any(|b| b.intid == irq.irq || (b.domain == domain && b.channel == channel));
            // Only shared peripheral interrupts can be given to a PD; SGIs and PPIs belong to
            // the hypervisor (the EL2 timer among them).
            if !(32..1020).contains(&irq.irq) || clash || self.channels.uses(domain, channel) {
                return Err(BuildError::Irq(index));
            }
            let binding = IrqBinding {
                domain,
                intid: irq.irq,
                channel,
                edge,
            };
            self.irqs
                .push(binding)
                .map_err(|_| BuildError::Irq(index))?;
        }
        Ok(())
    }

    /// Makes every protected VM a guest of its parent, through the window the parent maps its
    /// memory at (`MAPPING_KIND_WINDOW`): the VM's mapping and the parent's window cover the same
    /// frames, so guest IPA `vm.ipa + x` is host IPA `window.ipa + x`. A VM's windows must form
    /// one window (one offset between its IPAs and its host's). The link's conversion mode is
    /// the VM's (split with `DOMAIN_FLAG_SPLIT`, else history).
    fn link_guests(&mut self, tables: &BootTables<'_>) -> Result<(), BootError> {
        for (index, window) in tables.mappings.iter().enumerate() {
            if window.kind != MAPPING_KIND_WINDOW {
                continue;
            }
            let refused = |error| BootError::Mapping { index, error };
            let host = u8::try_from(window.domain)
                .map(DomainId)
                .map_err(|_| refused(Error::NoSuchDomain))?;
            // The protected child VM mapping exactly these frames.
            let guest_mapping = tables.mappings.iter().find(|mapping| {
                mapping.kind != MAPPING_KIND_WINDOW
                    && mapping.pa == window.pa
                    && mapping.size == window.size
                    && u8::try_from(mapping.domain).is_ok_and(|guest| {
                        self.domains.get(DomainId(guest)).is_some_and(|domain| {
                            domain.parent == Some(host)
                                && matches!(
                                    domain.kind,
                                    DomainKind::Vm {
                                        protected: true,
                                        ..
                                    }
                                )
                        })
                    })
            });
            let Some(guest_mapping) = guest_mapping else {
                return Err(refused(Error::NotLinked));
            };
            let guest = DomainId(guest_mapping.domain as u8);
            let size = window.size;
            let mode = match self.domains[guest].kind {
                DomainKind::Vm { mode, .. } => mode,
                DomainKind::Pd { .. } => ConversionMode::History,
            };
            let vspace = &mut self.domains[guest].vspace;
            let link = match vspace.link {
                // Another region of the same guest: the windows must be one.
                Some(link) => {
                    let offset = link
                        .window
                        .host_base
                        .get()
                        .wrapping_sub(link.window.guest_base.get());
                    let this = window.ipa.wrapping_sub(guest_mapping.ipa);
                    let guest_start = link.window.guest_base.get().min(guest_mapping.ipa);
                    let guest_end = (link.window.guest_base.get() + link.window.size)
                        .max(guest_mapping.ipa.saturating_add(size));
                    if this != offset {
                        return Err(refused(Error::NotLinked));
                    }
                    vspace.link = None;
                    GuestLink {
                        window: Window {
                            guest_base: Ipa(guest_start),
                            host_base: Ipa(guest_start.wrapping_add(offset)),
                            size: guest_end - guest_start,
                        },
                        ..link
                    }
                }
                None => GuestLink {
                    host,
                    window: Window {
                        guest_base: Ipa(guest_mapping.ipa),
                        host_base: Ipa(window.ipa),
                        size,
                    },
                    mode,
                },
            };
            self.engine
                .link_guest(&mut self.domains, guest, link)
                .map_err(refused)?;
        }
        Ok(())
    }
}

/// A domain as the boot information describes it, with a fresh context per thread of execution:
/// a PD's one (ready to run `init` at its entry), or one per vCPU of a VM, named by its
/// `<vcpu id>` (stopped until its VMM starts it). A VM's conversion mode is split with
/// `DOMAIN_FLAG_SPLIT`, else history.
fn new_domain<A: Arch>(
    index: usize,
    desc: &DomainDesc,
    vspace: crate::domain::VSpace,
    arch: &A,
    budget: u64,
) -> Result<Domain<A::Context>, BuildError> {
    let kind = if desc.kind == DOMAIN_KIND_PD {
        DomainKind::Pd {
            passive: desc.flags & DOMAIN_FLAG_PASSIVE != 0,
        }
    } else {
        let mode = if desc.flags & DOMAIN_FLAG_SPLIT != 0 {
            ConversionMode::Split
        } else {
            ConversionMode::History
        };
        DomainKind::Vm {
            protected: desc.flags & DOMAIN_FLAG_PROTECTED != 0,
            mode,
        }
    };
    let parent = (desc.parent != NONE).then_some(DomainId(desc.parent as u8));
    let context = |registers, state, child_id, kind| Context {
        registers,
        state,
        child_id,
        budget,
        overrun: 0,
        last_fault: None,
        vm_fault: None,
        faults: 0,
        arch: arch.new_context(kind),
    };
    let mut contexts = heapless::Vec::new();
    match kind {
        DomainKind::Pd { .. } => {
            let registers = Registers::initial(desc.entry, desc.stack_top, A::ENTRY_PSTATE);
            let child_id = parent.map(|_| desc.child_id as u8);
            // Cannot fail: one context, capacity MAX_VCPUS.
            let _ = contexts.push(context(
                registers,
                RunState::Ready,
                child_id,
                ContextKind::Pd,
            ));
        }
        // One context per vCPU, named by its `<vcpu id>` (its child id at the VMM), stopped
        // until its VMM starts it (`PD_VCPU_RESTART`).
        DomainKind::Vm { .. } => {
            for (position, id) in desc.vcpus().enumerate() {
                let id = u8::try_from(id)
                    .ok()
                    .filter(|&id| id <= MAX_CHILD_ID)
                    .ok_or(BuildError::Parent(index))?;
                // MPIDR: Aff0 = the vCPU's position in the VM (docs/ABI.md, PSCI).
                let kind = ContextKind::Vcpu {
                    mpidr: position as u64,
                };
                let vcpu = context(Registers::default(), RunState::Stopped, Some(id), kind);
                contexts.push(vcpu).map_err(|_| BuildError::Parent(index))?;
            }
        }
    }
    Ok(Domain {
        // Checked by `check_domains` already.
        name: ConsoleName::from_padded(&desc.name)
            .map_err(|error| BuildError::Name { index, error })?,
        kind,
        priority: desc.priority,
        parent,
        vspace,
        contexts,
        events: Events::default(),
        line: LineBuffer::new(),
        fresh: true,
        mmio_guard: heapless::Vec::new(),
    })
}

/// The core's view of one boot mapping, or `None` for a window (empty until the guest shares).
fn boot_mapping(mapping: &MappingDesc) -> Result<Option<BootMapping>, Error> {
    let rights = Rights::from_bits(mapping.rights).ok_or(Error::InvalidRights)?;
    let memory = if mapping.kind == MAPPING_KIND_DEVICE {
        MemoryType::Device
    } else {
        MemoryType::Normal
    };
    let sharing = match mapping.state {
        MAPPING_STATE_OWNED => BootSharing::Private,
        MAPPING_STATE_SHARED_OWNED | MAPPING_STATE_SHARED_BORROWED | MAPPING_STATE_UNTRACKED => {
            BootSharing::Shareable
        }
        MAPPING_STATE_NO_PAGE => return Ok(None),
        _ => return Err(Error::WrongState),
    };
    if mapping.size == 0 || !mapping.size.is_multiple_of(PAGE_SIZE) {
        return Err(Error::InvalidRange);
    }
    let domain = u8::try_from(mapping.domain).map_err(|_| Error::NoSuchDomain)?;
    Ok(Some(BootMapping {
        domain: DomainId(domain),
        ipa: Ipa(mapping.ipa),
        pa: PhysAddr(mapping.pa),
        pages: mapping.size / PAGE_SIZE,
        rights,
        memory,
        sharing,
    }))
}
