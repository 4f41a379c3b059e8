//! The conversion engine: carries out the ownership state machine on the frame table and the
//! stage-2 tables, all-or-nothing.
//!
//! Every request runs in two steps (Hafnium's `mm_ptable_prepare`/`commit`):
//! 1. **prepare** checks every page of the range: arguments, [`decide`], destination slots,
//!    borrower side-table room, and reserves every table page the commit may need. Any refusal
//!    returns before anything is written (I8).
//! 2. **commit** applies the accepted transitions page by page, in the order that keeps the
//!    invariants: access that goes away is removed and invalidated first, then the frame is
//!    zeroed if it leaves its owner (I5, I6), then the frame table changes, then new access is
//!    mapped. It cannot fail: the reservation covers its allocations.
//!
//! A range that is one whole, aligned, uniform 2 MiB block is converted with one level-2
//! descriptor change per side; a conversion inside a block splits it, and a region that becomes
//! uniform again is coalesced back into a block.
//!
//! Within a range no frame appears twice: by I3 two IPAs of one domain never map the same frame,
//! and the audit checks I3.

use crate::addr::{
    DomainId, Ipa, PhysAddr, Vmid, MAX_DOMAINS, PAGES_PER_BLOCK, PAGE_SIZE, SHARED_ALIAS_BIT,
};
use crate::arch::Stage2Arch;
use crate::descriptor::{Leaf, MemoryType, PageState, Rights};
use crate::error::Error;
use crate::frame_table::{FrameState, FrameTable};
use crate::ownership::{decide, FrameView, Holder, Operation, OwnerRights, Side, Transition};
use crate::stage2::{Entry, Stage2Table};
use crate::table_pool::{Reservation, TablePool};
use crate::walk::{next_entry, LeafKind};

/// Longest range one conversion request may name (one 2 MiB block).
pub const MAX_RANGE_PAGES: u64 = PAGES_PER_BLOCK;

/// How a guest tells shared from private memory (DESIGN.md 4).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ConversionMode {
    /// pKVM style: one IPA space; the state comes from the hypercall history.
    History,
    /// TDX/SEV/CCA style: shared pages are mapped at the alias `IPA | 1 << 39`.
    Split,
}

/// The host's window onto a guest's memory: guest IPA `guest_base + x` is host IPA
/// `host_base + x` (libvmm's `guest_ram_vaddr` idiom).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Window {
    /// First guest IPA covered.
    pub guest_base: Ipa,
    /// Where it appears in the host.
    pub host_base: Ipa,
    /// Bytes covered.
    pub size: u64,
}

impl Window {
    /// The host IPA of guest IPA `ipa`, if the window covers it.
    pub fn host_ipa(&self, ipa: Ipa) -> Option<Ipa> {
        let offset = ipa.get().checked_sub(self.guest_base.get())?;
        (offset < self.size).then(|| Ipa(self.host_base.get() + offset))
    }
}

/// A guest's relation to its host.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct GuestLink {
    /// The host VMM's domain.
    pub host: DomainId,
    /// The host's window onto the guest's memory.
    pub window: Window,
    /// History or split mode.
    pub mode: ConversionMode,
}

/// One domain's stage-2 state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Domain {
    /// Its stage-2 table.
    pub table: Stage2Table,
    /// Set for guests (virtual machines under a host VMM).
    pub link: Option<GuestLink>,
    /// Cleared when a guest is torn down.
    pub alive: bool,
}

/// How a boot-time mapping of convertible memory is owned.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BootSharing {
    /// The frames must be free; the domain owns them exclusively (`Owned`). Protected guests.
    Private,
    /// A Microkit memory region that may be mapped into several PDs: the first mapper owns the
    /// frames (`SharedOwned`), later mappers borrow them (`SharedBorrowed`).
    Shareable,
}

/// One boot-info mapping: "map this PA range at this IPA with these rights".
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct BootMapping {
    /// The domain to map into.
    pub domain: DomainId,
    /// First IPA.
    pub ipa: Ipa,
    /// First physical address.
    pub pa: PhysAddr,
    /// Number of 4 KiB pages.
    pub pages: u64,
    /// Access rights.
    pub rights: Rights,
    /// Normal (cached) or Device memory.
    pub memory: MemoryType,
    /// Ownership of convertible frames; memory outside the frame table is passed through.
    pub sharing: BootSharing,
}

/// A conversion request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Request {
    /// The operation.
    pub operation: Operation,
    /// The host VMM.
    pub host: DomainId,
    /// The guest.
    pub guest: DomainId,
    /// First guest IPA (a split-mode guest may name the private IPA or its alias).
    pub ipa: Ipa,
    /// Number of pages, `1..=MAX_RANGE_PAGES`.
    pub pages: u64,
    /// Rights granted to the guest by share-to-guest and lend (ignored otherwise).
    pub rights: Rights,
}

const MAX_PROTECTED_RANGES: usize = 8;

/// The ownership core: frame table, table pool and every domain's stage-2 table.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Engine<const FRAMES: usize, const BORROWERS: usize> {
    frames: FrameTable<FRAMES, BORROWERS>,
    pool: TablePool,
    domains: [Option<Domain>; MAX_DOMAINS],
    protected: [(PhysAddr, PhysAddr); MAX_PROTECTED_RANGES],
    protected_count: usize,
}

/// The (host, guest) pair of a request.
#[derive(Clone, Copy, Debug)]
struct Pair {
    host: DomainId,
    guest: DomainId,
    host_table: Stage2Table,
    guest_table: Stage2Table,
    link: GuestLink,
}

/// One page's accepted plan.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct PagePlan {
    frame: usize,
    pa: PhysAddr,
    view: FrameView,
    transition: Transition,
    /// Where the guest's current entry for the frame is, if it holds one.
    guest_old: Option<Ipa>,
    /// Where the guest's entry will be, if it holds one afterwards.
    guest_new: Option<Ipa>,
    /// The host's window IPA.
    host_ipa: Ipa,
}

impl<const FRAMES: usize, const BORROWERS: usize> Engine<FRAMES, BORROWERS> {
    /// An engine with no memory, usable as a `static` initialiser; call [`Engine::init`].
    pub const fn empty() -> Self {
        Self {
            frames: FrameTable::empty(),
            pool: TablePool::empty(),
            domains: [None; MAX_DOMAINS],
            protected: [(PhysAddr(0), PhysAddr(0)); MAX_PROTECTED_RANGES],
            protected_count: 0,
        }
    }

    /// Sets up the table pool and the frame table over `frames` frames from `frame_base`.
    /// The pool range becomes hypervisor memory (I4).
    pub fn init(
        &mut self,
        pool: TablePool,
        frame_base: PhysAddr,
        frames: usize,
    ) -> Result<(), Error> {
        // Reset field by field, in place: `Self::empty()` as a temporary would put the whole
        // frame table on the kernel stack.
        self.domains = [None; MAX_DOMAINS];
        self.protected_count = 0;
        self.pool = TablePool::empty();
        self.frames.init(frame_base, frames)?;
        let (start, end) = pool.range();
        if start < self.frames.end() && self.frames.base() < end {
            return Err(Error::HypervisorMemory);
        }
        self.pool = pool;
        self.protect(start, end)
    }

    /// Records `[start, end)` as hypervisor memory (kernel image, frame table, boot info) that
    /// no domain may ever map (I4).
    pub fn protect(&mut self, start: PhysAddr, end: PhysAddr) -> Result<(), Error> {
        if start >= end {
            return Err(Error::InvalidRange);
        }
        if start < self.frames.end() && self.frames.base() < end {
            return Err(Error::HypervisorMemory);
        }
        let slot = self
            .protected
            .get_mut(self.protected_count)
            .ok_or(Error::InvalidRange)?;
        *slot = (start, end);
        self.protected_count += 1;
        Ok(())
    }

    /// Hypervisor memory ranges.
    pub fn protected_ranges(&self) -> &[(PhysAddr, PhysAddr)] {
        &self.protected[..self.protected_count]
    }

    /// The frame table.
    pub fn frame_table(&self) -> &FrameTable<FRAMES, BORROWERS> {
        &self.frames
    }

    /// Takes a pin on a frame (in-flight use).
    pub fn pin(&mut self, pa: PhysAddr) -> Result<(), Error> {
        self.frames.pin(pa)
    }

    /// Drops a pin.
    pub fn unpin(&mut self, pa: PhysAddr) -> Result<(), Error> {
        self.frames.unpin(pa)
    }

    /// The table page pool.
    pub fn pool(&self) -> &TablePool {
        &self.pool
    }

    /// A domain, if it exists.
    pub fn domain(&self, id: DomainId) -> Option<&Domain> {
        self.domains.get(id.index()?)?.as_ref()
    }

    /// Every existing domain.
    pub fn domains(&self) -> impl Iterator<Item = (DomainId, &Domain)> {
        self.domains
            .iter()
            .enumerate()
            .filter_map(|(index, domain)| Some((DomainId(index as u8), domain.as_ref()?)))
    }

    /// The VTTBR_EL2 value for a domain.
    pub fn vttbr(&self, id: DomainId) -> Option<u64> {
        Some(self.domain(id)?.table.vttbr())
    }

    /// Creates a domain with an empty stage-2 table.
    pub fn create_domain(
        &mut self,
        arch: &mut impl Stage2Arch,
        id: DomainId,
        vmid: Vmid,
    ) -> Result<(), Error> {
        let index = id.index().ok_or(Error::NoSuchDomain)?;
        if self.domains[index].is_some() {
            return Err(Error::DomainExists);
        }
        let table = Stage2Table::new(arch, &mut self.pool, vmid)?;
        self.domains[index] = Some(Domain {
            table,
            link: None,
            alive: true,
        });
        Ok(())
    }

    /// Makes `guest` a guest of `link.host` with the given window and mode.
    pub fn link_guest(&mut self, guest: DomainId, link: GuestLink) -> Result<(), Error> {
        if guest == link.host || self.domain(link.host).is_none() {
            return Err(Error::NoSuchDomain);
        }
        let window = link.window;
        let aligned = window.guest_base.is_page_aligned()
            && window.host_base.is_page_aligned()
            && window.size.is_multiple_of(PAGE_SIZE)
            && window.size > 0;
        if !aligned {
            return Err(Error::Misaligned);
        }
        let guest_end = window
            .guest_base
            .checked_add(window.size)
            .ok_or(Error::InvalidRange)?;
        let host_end = window
            .host_base
            .checked_add(window.size)
            .ok_or(Error::InvalidRange)?;
        let guest_limit = match link.mode {
            ConversionMode::History => 1 << crate::addr::IPA_BITS,
            ConversionMode::Split => SHARED_ALIAS_BIT,
        };
        if guest_end.get() > guest_limit || host_end.get() > 1 << crate::addr::IPA_BITS {
            return Err(Error::IpaOutOfRange);
        }
        let index = guest.index().ok_or(Error::NoSuchDomain)?;
        let domain = self.domains[index].as_mut().ok_or(Error::NoSuchDomain)?;
        if domain.link.is_some() {
            return Err(Error::DomainExists);
        }
        domain.link = Some(link);
        Ok(())
    }

    /// What `domain` sees at `ipa`: its state there, if mapped (the guest state query).
    pub fn page_state(
        &self,
        arch: &impl Stage2Arch,
        domain: DomainId,
        ipa: Ipa,
    ) -> Result<Option<PageState>, Error> {
        let domain = self.domain(domain).ok_or(Error::NoSuchDomain)?;
        Ok(domain.table.lookup(arch, ipa).map(|leaf| leaf.state))
    }

    // ---------------------------------------------------------------- boot-time mappings --

    /// Builds part of a domain's initial stage-2 from boot info. All-or-nothing.
    pub fn map_at_boot(
        &mut self,
        arch: &mut impl Stage2Arch,
        mapping: &BootMapping,
    ) -> Result<(), Error> {
        let domain = *self.domain(mapping.domain).ok_or(Error::NoSuchDomain)?;
        if !mapping.ipa.is_page_aligned() || !mapping.pa.is_page_aligned() {
            return Err(Error::Misaligned);
        }
        if mapping.pages == 0 || mapping.rights.is_empty() {
            return Err(if mapping.pages == 0 {
                Error::InvalidRange
            } else {
                Error::InvalidRights
            });
        }
        let ipa_end = mapping
            .ipa
            .checked_add_pages(mapping.pages)
            .ok_or(Error::InvalidRange)?;
        let pa_end = mapping
            .pa
            .checked_add_pages(mapping.pages)
            .ok_or(Error::InvalidRange)?;
        if ipa_end.get() > 1 << crate::addr::IPA_BITS || pa_end.get() > 1 << crate::addr::PA_BITS {
            return Err(Error::IpaOutOfRange);
        }
        if self
            .protected_ranges()
            .iter()
            .any(|&(start, end)| mapping.pa < end && start < pa_end)
        {
            return Err(Error::HypervisorMemory);
        }
        // Prepare.
        let mut slots_needed = 0;
        for page in 0..mapping.pages {
            let ipa = Ipa(mapping.ipa.get() + page * PAGE_SIZE);
            let pa = PhysAddr(mapping.pa.get() + page * PAGE_SIZE);
            if domain.table.entry(arch, ipa) != Entry::Empty {
                return Err(Error::AlreadyMapped);
            }
            let Some(index) = self.frames.index(pa) else {
                continue;
            };
            let record = self.frames.record_at(index);
            if record.owner() == Some(mapping.domain)
                || self.frames.borrower_rights(index, mapping.domain).is_some()
            {
                return Err(Error::AlreadyMapped);
            }
            match (mapping.sharing, record.state()) {
                (_, FrameState::Free) => {}
                (BootSharing::Shareable, FrameState::SharedOwned)
                    if record.memory() == mapping.memory =>
                {
                    slots_needed += self.frames.borrower_slots_needed(index);
                }
                _ => return Err(Error::WrongState),
            }
        }
        if slots_needed > self.frames.free_borrower_slots() {
            return Err(Error::BorrowerTableFull);
        }
        let needed = domain.table.tables_needed(arch, mapping.ipa, mapping.pages);
        let mut reservation = self.pool.reserve(needed)?;
        // Commit.
        let mut table = domain.table;
        let mut page = 0;
        while page < mapping.pages {
            let ipa = Ipa(mapping.ipa.get() + page * PAGE_SIZE);
            let pa = PhysAddr(mapping.pa.get() + page * PAGE_SIZE);
            let block_state = if ipa.is_block_aligned()
                && pa.is_block_aligned()
                && page + PAGES_PER_BLOCK <= mapping.pages
            {
                self.uniform_boot_state(mapping, pa)
            } else {
                None
            };
            let step = if let Some(state) = block_state {
                for offset in 0..PAGES_PER_BLOCK {
                    self.record_boot_frame(mapping, PhysAddr(pa.get() + offset * PAGE_SIZE));
                }
                let leaf = Leaf {
                    pa,
                    rights: mapping.rights,
                    memory: mapping.memory,
                    state,
                };
                let done = table.set_block(arch, &mut self.pool, &mut reservation, ipa, Some(leaf));
                debug_assert!(done.is_ok(), "prepare reserved the tables");
                PAGES_PER_BLOCK
            } else {
                let state = self.record_boot_frame(mapping, pa);
                let leaf = Leaf {
                    pa,
                    rights: mapping.rights,
                    memory: mapping.memory,
                    state,
                };
                let done = table.set_page(
                    arch,
                    &mut self.pool,
                    &mut reservation,
                    ipa,
                    Entry::Mapped(leaf),
                );
                debug_assert!(done.is_ok(), "prepare reserved the tables");
                1
            };
            page += step;
        }
        self.pool.release(reservation);
        Ok(())
    }

    /// The state a boot mapping gives the frame at `pa` (without changing anything).
    fn boot_state(&self, mapping: &BootMapping, pa: PhysAddr) -> PageState {
        match self.frames.index(pa) {
            None => PageState::Passthrough,
            Some(index) => match (self.frames.record_at(index).state(), mapping.sharing) {
                (FrameState::Free, BootSharing::Private) => PageState::Owned,
                (FrameState::Free, BootSharing::Shareable) => PageState::SharedOwned,
                _ => PageState::SharedBorrowed,
            },
        }
    }

    /// The common state of the 2 MiB at `pa`, if every frame there gets the same one.
    fn uniform_boot_state(&self, mapping: &BootMapping, pa: PhysAddr) -> Option<PageState> {
        let first = self.boot_state(mapping, pa);
        (1..PAGES_PER_BLOCK)
            .all(|offset| {
                self.boot_state(mapping, PhysAddr(pa.get() + offset * PAGE_SIZE)) == first
            })
            .then_some(first)
    }

    /// Records the boot mapping of one frame in the frame table; returns the domain's state.
    fn record_boot_frame(&mut self, mapping: &BootMapping, pa: PhysAddr) -> PageState {
        let state = self.boot_state(mapping, pa);
        let Some(index) = self.frames.index(pa) else {
            return state;
        };
        match state {
            PageState::Owned | PageState::SharedOwned => {
                let frame_state = if state == PageState::Owned {
                    FrameState::Owned
                } else {
                    FrameState::SharedOwned
                };
                self.frames.set_owner(
                    index,
                    mapping.domain,
                    frame_state,
                    mapping.rights,
                    mapping.memory,
                );
            }
            _ => {
                let added = self
                    .frames
                    .add_borrower(index, mapping.domain, mapping.rights);
                debug_assert!(added.is_ok(), "prepare counted the borrower slots");
            }
        }
        state
    }

    // -------------------------------------------------------------------- conversions --

    /// Runs one conversion request, all-or-nothing.
    pub fn convert(&mut self, arch: &mut impl Stage2Arch, request: Request) -> Result<(), Error> {
        let pair = self.pair(request)?;
        let first = self.first_ipa(&pair, request)?;
        let reservation = self.prepare(arch, &pair, request, first)?;
        self.commit(arch, &pair, request, first, reservation);
        Ok(())
    }

    /// Host donates frames (at the window of `ipa`) to the guest at `ipa`.
    pub fn donate(
        &mut self,
        arch: &mut impl Stage2Arch,
        host: DomainId,
        guest: DomainId,
        ipa: Ipa,
        pages: u64,
    ) -> Result<(), Error> {
        self.convert(
            arch,
            request(Operation::Donate, host, guest, ipa, pages, Rights::empty()),
        )
    }

    /// Guest shares owned frames with its host (pKVM `MEM_SHARE`).
    pub fn share(
        &mut self,
        arch: &mut impl Stage2Arch,
        guest: DomainId,
        ipa: Ipa,
        pages: u64,
    ) -> Result<(), Error> {
        let host = self.host_of(guest)?;
        self.convert(
            arch,
            request(Operation::Share, host, guest, ipa, pages, Rights::empty()),
        )
    }

    /// Guest unshares frames (pKVM `MEM_UNSHARE`); the host's access is gone on return.
    pub fn unshare(
        &mut self,
        arch: &mut impl Stage2Arch,
        guest: DomainId,
        ipa: Ipa,
        pages: u64,
    ) -> Result<(), Error> {
        let host = self.host_of(guest)?;
        self.convert(
            arch,
            request(Operation::Unshare, host, guest, ipa, pages, Rights::empty()),
        )
    }

    /// Guest relinquishes owned frames (zeroed, back to the host) or lent frames.
    pub fn relinquish(
        &mut self,
        arch: &mut impl Stage2Arch,
        guest: DomainId,
        ipa: Ipa,
        pages: u64,
    ) -> Result<(), Error> {
        let host = self.host_of(guest)?;
        let operation = Operation::Relinquish;
        self.convert(
            arch,
            request(operation, host, guest, ipa, pages, Rights::empty()),
        )
    }

    /// Host shares its frames with the guest at `ipa` with `rights`.
    pub fn share_with_guest(
        &mut self,
        arch: &mut impl Stage2Arch,
        host: DomainId,
        guest: DomainId,
        ipa: Ipa,
        pages: u64,
        rights: Rights,
    ) -> Result<(), Error> {
        self.convert(
            arch,
            request(Operation::ShareWithGuest, host, guest, ipa, pages, rights),
        )
    }

    /// Host takes shared frames back from the guest.
    pub fn unshare_from_guest(
        &mut self,
        arch: &mut impl Stage2Arch,
        host: DomainId,
        guest: DomainId,
        ipa: Ipa,
        pages: u64,
    ) -> Result<(), Error> {
        let operation = Operation::UnshareFromGuest;
        self.convert(
            arch,
            request(operation, host, guest, ipa, pages, Rights::empty()),
        )
    }

    /// Host lends frames for the guest's exclusive use.
    pub fn lend(
        &mut self,
        arch: &mut impl Stage2Arch,
        host: DomainId,
        guest: DomainId,
        ipa: Ipa,
        pages: u64,
        rights: Rights,
    ) -> Result<(), Error> {
        self.convert(
            arch,
            request(Operation::Lend, host, guest, ipa, pages, rights),
        )
    }

    /// Host reclaims lent frames the guest relinquished (or that a dead guest held).
    pub fn reclaim(
        &mut self,
        arch: &mut impl Stage2Arch,
        host: DomainId,
        guest: DomainId,
        ipa: Ipa,
        pages: u64,
    ) -> Result<(), Error> {
        self.convert(
            arch,
            request(Operation::Reclaim, host, guest, ipa, pages, Rights::empty()),
        )
    }

    /// Tears a dead guest down: its owned frames are zeroed and returned to the host, frames it
    /// borrowed are unmapped (host frames stay intact), device pass-through is unmapped.
    ///
    /// Each leaf is its own all-or-nothing step. If the table pool runs out half-way, the error
    /// is returned, the guest stays dead, and calling again continues where it stopped.
    pub fn teardown(&mut self, arch: &mut impl Stage2Arch, guest: DomainId) -> Result<(), Error> {
        let index = guest.index().ok_or(Error::NoSuchDomain)?;
        let domain = self.domains[index].as_mut().ok_or(Error::NoSuchDomain)?;
        let link = domain.link.ok_or(Error::NotLinked)?;
        domain.alive = false;
        let mut table = domain.table;
        let mut from = Ipa(0);
        let mut result = Ok(());
        while let Some(entry) = next_entry(arch, table.root(), from) {
            let span = crate::descriptor::level_span(entry.level);
            from = Ipa(entry.ipa.get() + span);
            let LeafKind::Mapped(leaf) = entry.kind else {
                continue;
            };
            if leaf.state == PageState::Passthrough || self.frames.index(leaf.pa).is_none() {
                let mut reservation = self.pool.reserve(0)?;
                let done = if entry.level == 2 {
                    table.set_block(arch, &mut self.pool, &mut reservation, entry.ipa, None)
                } else {
                    table.set_page(
                        arch,
                        &mut self.pool,
                        &mut reservation,
                        entry.ipa,
                        Entry::Empty,
                    )
                };
                self.pool.release(reservation);
                result = result.and(done);
                continue;
            }
            let operation = Operation::Teardown;
            let pages = span / PAGE_SIZE;
            let step = request(
                operation,
                link.host,
                guest,
                entry.ipa,
                pages,
                Rights::empty(),
            );
            // Keep going on a refusal (for example a frame outside the window): the rest of the
            // guest is still returned, and the first error is reported.
            result = result.and(self.convert(arch, step));
        }
        arch.invalidate_vmid(table.vmid());
        result
    }

    fn host_of(&self, guest: DomainId) -> Result<DomainId, Error> {
        let domain = self.domain(guest).ok_or(Error::NoSuchDomain)?;
        Ok(domain.link.ok_or(Error::NotLinked)?.host)
    }

    fn pair(&self, request: Request) -> Result<Pair, Error> {
        let guest = self.domain(request.guest).ok_or(Error::NoSuchDomain)?;
        let link = guest.link.ok_or(Error::NotLinked)?;
        if link.host != request.host {
            return Err(Error::NotLinked);
        }
        let host = self.domain(request.host).ok_or(Error::NoSuchDomain)?;
        let dead_allowed = matches!(request.operation, Operation::Reclaim | Operation::Teardown);
        if request.operation == Operation::Teardown && guest.alive {
            return Err(Error::WrongState);
        }
        if !guest.alive && !dead_allowed {
            return Err(Error::DomainDead);
        }
        Ok(Pair {
            host: request.host,
            guest: request.guest,
            host_table: host.table,
            guest_table: guest.table,
            link,
        })
    }

    /// Checks the range and returns its first private guest IPA.
    fn first_ipa(&self, pair: &Pair, request: Request) -> Result<Ipa, Error> {
        if !request.ipa.is_page_aligned() {
            return Err(Error::Misaligned);
        }
        if request.pages == 0 || request.pages > MAX_RANGE_PAGES {
            return Err(Error::InvalidRange);
        }
        let first = match pair.link.mode {
            ConversionMode::History => request.ipa,
            ConversionMode::Split => request.ipa.private_ipa(),
        };
        let last = first
            .checked_add_pages(request.pages - 1)
            .ok_or(Error::InvalidRange)?;
        if pair.link.window.host_ipa(first).is_none() || pair.link.window.host_ipa(last).is_none() {
            return Err(Error::IpaOutOfRange);
        }
        Ok(first)
    }

    /// Where the guest's entry for a frame in `state` lives.
    fn guest_location(pair: &Pair, ipa: Ipa, state: PageState) -> Ipa {
        match (pair.link.mode, state) {
            (ConversionMode::Split, PageState::SharedOwned | PageState::SharedBorrowed) => {
                ipa.shared_alias()
            }
            _ => ipa,
        }
    }

    /// The state `domain` should see for frame `index`, per the frame table.
    fn expected_state(&self, index: usize, domain: DomainId) -> Option<PageState> {
        let record = self.frames.record_at(index);
        if record.owner() == Some(domain) {
            return match record.state() {
                FrameState::Owned => Some(PageState::Owned),
                FrameState::SharedOwned => Some(PageState::SharedOwned),
                _ => None,
            };
        }
        self.frames
            .borrower_rights(index, domain)
            .map(|_| PageState::SharedBorrowed)
    }

    fn view(&self, index: usize, pair: &Pair) -> FrameView {
        let record = self.frames.record_at(index);
        let owner = match record.owner() {
            None => Holder::Nobody,
            Some(owner) if owner == pair.host => Holder::Host,
            Some(owner) if owner == pair.guest => Holder::Guest,
            Some(_) => Holder::Other,
        };
        let mut view = FrameView {
            state: record.state(),
            owner,
            host_borrows: false,
            guest_borrows: false,
            other_borrowers: false,
            pinned: record.pins() > 0,
        };
        self.frames.for_each_borrower(index, |borrower, _| {
            if borrower == pair.host {
                view.host_borrows = true;
            } else if borrower == pair.guest {
                view.guest_borrows = true;
            } else {
                view.other_borrowers = true;
            }
        });
        view
    }

    /// Prepare step for one page: finds the frame, decides, checks the destinations.
    fn plan_page(
        &self,
        arch: &impl Stage2Arch,
        pair: &Pair,
        request: Request,
        ipa: Ipa,
    ) -> Result<PagePlan, Error> {
        let host_ipa = pair.link.window.host_ipa(ipa).ok_or(Error::IpaOutOfRange)?;
        let host_entry = pair.host_table.entry(arch, host_ipa);
        let guest_private = pair.guest_table.entry(arch, ipa);
        let guest_alias = match pair.link.mode {
            ConversionMode::Split => pair.guest_table.entry(arch, ipa.shared_alias()),
            ConversionMode::History => Entry::Empty,
        };
        let (guest_entry, guest_at) = match (guest_private, guest_alias) {
            (Entry::Empty, Entry::Empty) => (Entry::Empty, None),
            (Entry::Empty, alias) => (alias, Some(ipa.shared_alias())),
            (private, Entry::Empty) => (private, Some(ipa)),
            // Both halves mapped: never created by the engine; the audit reports it.
            _ => return Err(Error::WrongState),
        };
        // The frame, found where the caller holds it.
        let pa = match request.operation {
            Operation::Donate | Operation::ShareWithGuest | Operation::Lend => match host_entry {
                Entry::Mapped(leaf) => leaf.pa,
                Entry::LentAway(_) => return Err(Error::WrongState),
                Entry::Empty => return Err(Error::NotMapped),
            },
            Operation::Reclaim => match host_entry {
                Entry::LentAway(pa) => pa,
                Entry::Mapped(_) => return Err(Error::WrongState),
                Entry::Empty => return Err(Error::NotMapped),
            },
            _ => match guest_entry {
                Entry::Mapped(leaf) => leaf.pa,
                _ => return Err(Error::NotMapped),
            },
        };
        let frame = self.frames.index(pa).ok_or(Error::NotTracked)?;
        let view = self.view(frame, pair);
        // The descriptors must agree with the frame table (I3); never act on a disagreement.
        let host_expected = self.expected_state(frame, pair.host);
        let host_holds = match host_entry {
            Entry::Mapped(leaf) if leaf.pa == pa => Some(leaf.state) == host_expected,
            Entry::LentAway(lent) if lent == pa => {
                view.owner == Holder::Host && view.state == FrameState::Lent
            }
            _ => false,
        };
        let host_should_hold = host_expected.is_some()
            || (view.owner == Holder::Host && view.state == FrameState::Lent);
        if host_holds != host_should_hold {
            return Err(Error::WrongState);
        }
        let guest_expected = self.expected_state(frame, pair.guest);
        let guest_old = match guest_entry {
            Entry::Mapped(leaf)
                if leaf.pa == pa
                    && Some(leaf.state) == guest_expected
                    && guest_at == Some(Self::guest_location(pair, ipa, leaf.state)) =>
            {
                guest_at
            }
            _ => None,
        };
        if guest_old.is_some() != guest_expected.is_some() {
            return Err(Error::WrongState);
        }
        let transition = decide(request.operation, view)?;
        // Destinations must be free unless they already hold this frame.
        let guest_new = match transition.guest {
            Side::Mapped(state) => Some(Self::guest_location(pair, ipa, state)),
            _ => None,
        };
        if guest_new.is_some() && guest_old.is_none() && guest_at.is_some() {
            return Err(Error::AlreadyMapped);
        }
        if transition.host != Side::NoPage && !host_holds && host_entry != Entry::Empty {
            return Err(Error::AlreadyMapped);
        }
        let grants = matches!(
            request.operation,
            Operation::ShareWithGuest | Operation::Lend
        );
        if grants {
            let owner_rights = self.frames.record_at(frame).owner_rights();
            if request.rights.is_empty() || !owner_rights.contains(request.rights) {
                return Err(Error::InvalidRights);
            }
        }
        Ok(PagePlan {
            frame,
            pa,
            view,
            transition,
            guest_old,
            guest_new,
            host_ipa,
        })
    }

    fn prepare(
        &mut self,
        arch: &impl Stage2Arch,
        pair: &Pair,
        request: Request,
        first: Ipa,
    ) -> Result<Reservation, Error> {
        let mut slots_needed = 0;
        for page in 0..request.pages {
            let plan = self.plan_page(arch, pair, request, Ipa(first.get() + page * PAGE_SIZE))?;
            let adds_host = plan.transition.host == Side::Mapped(PageState::SharedBorrowed)
                && !plan.view.host_borrows;
            let adds_guest = plan.transition.guest == Side::Mapped(PageState::SharedBorrowed)
                && !plan.view.guest_borrows;
            if adds_host || adds_guest {
                slots_needed += self.frames.borrower_slots_needed(plan.frame);
            }
        }
        if slots_needed > self.frames.free_borrower_slots() {
            return Err(Error::BorrowerTableFull);
        }
        let host_ipa = pair
            .link
            .window
            .host_ipa(first)
            .ok_or(Error::IpaOutOfRange)?;
        let mut needed = pair.host_table.tables_needed(arch, host_ipa, request.pages)
            + pair.guest_table.tables_needed(arch, first, request.pages);
        if pair.link.mode == ConversionMode::Split {
            needed += pair
                .guest_table
                .tables_needed(arch, first.shared_alias(), request.pages);
        }
        self.pool.reserve(needed)
    }

    fn commit(
        &mut self,
        arch: &mut impl Stage2Arch,
        pair: &Pair,
        request: Request,
        first: Ipa,
        mut reservation: Reservation,
    ) {
        let mut guest_table = pair.guest_table;
        let mut host_table = pair.host_table;
        let whole_block = request.pages == PAGES_PER_BLOCK && first.is_block_aligned();
        let block_plan = if whole_block {
            self.uniform_block(arch, pair, request, first)
        } else {
            None
        };
        if let Some(plan) = block_plan {
            self.commit_block(arch, pair, request, &plan, &mut reservation);
        } else {
            for page in 0..request.pages {
                // The state is unchanged since prepare except for earlier pages of this range,
                // which are other frames, so the plan is the one prepare accepted.
                let ipa = Ipa(first.get() + page * PAGE_SIZE);
                let Ok(plan) = self.plan_page(arch, pair, request, ipa) else {
                    debug_assert!(false, "commit re-planning differs from prepare");
                    continue;
                };
                self.commit_page(
                    arch,
                    pair,
                    request,
                    &plan,
                    &mut guest_table,
                    &mut host_table,
                    &mut reservation,
                );
            }
        }
        // Coalesce every touched 2 MiB region that became uniform again.
        let bytes = request.pages * PAGE_SIZE;
        self.coalesce_range(arch, &mut guest_table, first, bytes);
        if pair.link.mode == ConversionMode::Split {
            self.coalesce_range(arch, &mut guest_table, first.shared_alias(), bytes);
        }
        if let Some(host_first) = pair.link.window.host_ipa(first) {
            self.coalesce_range(arch, &mut host_table, host_first, bytes);
        }
        self.pool.release(reservation);
    }

    fn coalesce_range(
        &mut self,
        arch: &mut impl Stage2Arch,
        table: &mut Stage2Table,
        first: Ipa,
        bytes: u64,
    ) {
        let mut block = first.block_base();
        while block.get() < first.get() + bytes {
            table.coalesce(arch, &mut self.pool, block);
            block = Ipa(block.get() + crate::addr::BLOCK_SIZE);
        }
    }

    /// The leaf a side gets for frame `plan.frame` in `state`.
    fn leaf_for(&self, plan: &PagePlan, domain: DomainId, state: PageState) -> Leaf {
        let record = self.frames.record_at(plan.frame);
        let rights = match state {
            PageState::SharedBorrowed => self
                .frames
                .borrower_rights(plan.frame, domain)
                .unwrap_or(Rights::READ),
            _ => record.owner_rights(),
        };
        Leaf {
            pa: plan.pa,
            rights,
            memory: record.memory(),
            state,
        }
    }

    /// Applies one page's transition to the frame table (between removals and new mappings).
    fn update_frame(
        &mut self,
        arch: &mut impl Stage2Arch,
        pair: &Pair,
        request: Request,
        plan: &PagePlan,
    ) {
        let transition = plan.transition;
        if transition.zero {
            // Every mapping that leaves with the frame was removed and invalidated already.
            arch.zero_page(plan.pa);
        }
        let record = self.frames.record_at(plan.frame);
        let owner = if transition.owner == Holder::Guest {
            pair.guest
        } else {
            pair.host
        };
        let rights = match transition.owner_rights {
            OwnerRights::Keep => record.owner_rights(),
            OwnerRights::All => Rights::ALL,
            OwnerRights::ReadWrite => Rights::READ_WRITE,
        };
        self.frames
            .set_owner(plan.frame, owner, transition.state, rights, record.memory());
        let host_borrows = transition.host == Side::Mapped(PageState::SharedBorrowed);
        if plan.view.host_borrows && !host_borrows {
            self.frames.remove_borrower(plan.frame, pair.host);
        }
        if !plan.view.host_borrows && host_borrows {
            let added = self
                .frames
                .add_borrower(plan.frame, pair.host, Rights::READ_WRITE);
            debug_assert!(added.is_ok(), "prepare counted the borrower slots");
        }
        let guest_borrows = transition.guest == Side::Mapped(PageState::SharedBorrowed);
        if plan.view.guest_borrows && !guest_borrows {
            self.frames.remove_borrower(plan.frame, pair.guest);
        }
        if !plan.view.guest_borrows && guest_borrows {
            let added = self
                .frames
                .add_borrower(plan.frame, pair.guest, request.rights);
            debug_assert!(added.is_ok(), "prepare counted the borrower slots");
        }
    }

    #[allow(clippy::too_many_arguments, reason = "the commit state of one page")]
    fn commit_page(
        &mut self,
        arch: &mut impl Stage2Arch,
        pair: &Pair,
        request: Request,
        plan: &PagePlan,
        guest_table: &mut Stage2Table,
        host_table: &mut Stage2Table,
        reservation: &mut Reservation,
    ) {
        let transition = plan.transition;
        let pool = &mut self.pool;
        let mut results = [Ok(()), Ok(()), Ok(()), Ok(())];
        // 1. Remove (and invalidate) access that goes away.
        if let Some(old) = plan.guest_old {
            if plan.guest_new != Some(old) {
                results[0] = guest_table.set_page(arch, pool, reservation, old, Entry::Empty);
            }
        }
        match transition.host {
            Side::NoPage => {
                results[1] =
                    host_table.set_page(arch, pool, reservation, plan.host_ipa, Entry::Empty);
            }
            Side::LentAway => {
                let entry = Entry::LentAway(plan.pa);
                results[1] = host_table.set_page(arch, pool, reservation, plan.host_ipa, entry);
            }
            Side::Mapped(_) => {}
        }
        // 2. Zero and record.
        self.update_frame(arch, pair, request, plan);
        // 3. Map new access (or restate kept access in place).
        if let (Side::Mapped(state), Some(at)) = (transition.guest, plan.guest_new) {
            let leaf = self.leaf_for(plan, pair.guest, state);
            results[2] =
                guest_table.set_page(arch, &mut self.pool, reservation, at, Entry::Mapped(leaf));
        }
        if let Side::Mapped(state) = transition.host {
            let leaf = self.leaf_for(plan, pair.host, state);
            let entry = Entry::Mapped(leaf);
            results[3] =
                host_table.set_page(arch, &mut self.pool, reservation, plan.host_ipa, entry);
        }
        debug_assert!(
            results.iter().all(Result::is_ok),
            "prepare reserved the tables"
        );
    }

    /// If the 512 pages from `first` have identical plans over one contiguous, aligned 2 MiB of
    /// frames, returns the first page's plan.
    fn uniform_block(
        &self,
        arch: &impl Stage2Arch,
        pair: &Pair,
        request: Request,
        first: Ipa,
    ) -> Option<PagePlan> {
        let head = self.plan_page(arch, pair, request, first).ok()?;
        if !head.pa.is_block_aligned()
            || !head.host_ipa.is_block_aligned()
            || head.transition.host == Side::LentAway
        {
            return None;
        }
        let head_record = self.frames.record_at(head.frame);
        for page in 1..PAGES_PER_BLOCK {
            let ipa = Ipa(first.get() + page * PAGE_SIZE);
            let plan = self.plan_page(arch, pair, request, ipa).ok()?;
            let record = self.frames.record_at(plan.frame);
            let same = plan.pa.get() == head.pa.get() + page * PAGE_SIZE
                && plan.view == head.view
                && plan.transition == head.transition
                && record.owner_rights() == head_record.owner_rights()
                && record.memory() == head_record.memory()
                && self.frames.borrower_rights(plan.frame, pair.guest)
                    == self.frames.borrower_rights(head.frame, pair.guest)
                && plan.guest_old.map(|at| at.get() - page * PAGE_SIZE)
                    == head.guest_old.map(Ipa::get)
                && plan.guest_new.map(|at| at.get() - page * PAGE_SIZE)
                    == head.guest_new.map(Ipa::get);
            if !same {
                return None;
            }
        }
        Some(head)
    }

    /// Commits a whole-block conversion: one level-2 descriptor change per side.
    fn commit_block(
        &mut self,
        arch: &mut impl Stage2Arch,
        pair: &Pair,
        request: Request,
        head: &PagePlan,
        reservation: &mut Reservation,
    ) {
        let transition = head.transition;
        let mut guest_table = pair.guest_table;
        let mut host_table = pair.host_table;
        let mut results = [Ok(()), Ok(()), Ok(()), Ok(())];
        if let Some(old) = head.guest_old {
            if head.guest_new != Some(old) {
                results[0] = guest_table.set_block(arch, &mut self.pool, reservation, old, None);
            }
        }
        if transition.host == Side::NoPage {
            results[1] =
                host_table.set_block(arch, &mut self.pool, reservation, head.host_ipa, None);
        }
        for page in 0..PAGES_PER_BLOCK {
            let plan = PagePlan {
                frame: head.frame + page as usize,
                pa: PhysAddr(head.pa.get() + page * PAGE_SIZE),
                ..*head
            };
            self.update_frame(arch, pair, request, &plan);
        }
        if let (Side::Mapped(state), Some(at)) = (transition.guest, head.guest_new) {
            let leaf = self.leaf_for(head, pair.guest, state);
            results[2] = guest_table.set_block(arch, &mut self.pool, reservation, at, Some(leaf));
        }
        if let Side::Mapped(state) = transition.host {
            let leaf = self.leaf_for(head, pair.host, state);
            results[3] =
                host_table.set_block(arch, &mut self.pool, reservation, head.host_ipa, Some(leaf));
        }
        debug_assert!(
            results.iter().all(Result::is_ok),
            "prepare reserved the tables"
        );
    }
}

fn request(
    operation: Operation,
    host: DomainId,
    guest: DomainId,
    ipa: Ipa,
    pages: u64,
    rights: Rights,
) -> Request {
    Request {
        operation,
        host,
        guest,
        ipa,
        pages,
        rights,
    }
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test fails loudly on an unexpected error"
)]
mod tests {
    extern crate std;
    use super::*;
    use crate::small_system::*;
    use std::string::String;
    use std::vec::Vec;

    fn quiet(system: &mut SmallSystem) -> Vec<crate::arch::fake::Invalidation> {
        let invalidations = system.arch.end_call();
        assert_eq!(system.arch.take_violations(), Vec::<String>::new());
        assert_eq!(system.audit(), Vec::<String>::new());
        invalidations
    }

    fn host_state(system: &SmallSystem, guest_ipa: Ipa) -> Option<PageState> {
        let host_ipa = window().host_ipa(guest_ipa).unwrap();
        system
            .engine
            .page_state(&system.arch, HOST, host_ipa)
            .unwrap()
    }

    #[test]
    fn boot_maps_the_block_as_one_descriptor_and_audits_clean() {
        let mut system = SmallSystem::boot().unwrap();
        quiet(&mut system);
        let host = system.engine.domain(HOST).unwrap().table;
        assert_eq!(host.leaf_level(&system.arch, WINDOW_HOST_BASE), Some(2));
        assert_eq!(host.leaf_level(&system.arch, Ipa(0x8020_0000)), Some(3));
        assert_eq!(host_state(&system, FRAME_A_IPA), Some(PageState::Owned));
        assert_eq!(system.engine.frame_table().record_at(0).owner(), Some(HOST));
    }

    #[test]
    fn donate_share_unshare_relinquish_history_mode() {
        let mut system = SmallSystem::boot().unwrap();
        let (engine, arch) = (&mut system.engine, &mut system.arch);
        arch.poke(SmallSystem::frame(512), 0xC0FFEE);
        engine
            .donate(arch, HOST, GUEST_HISTORY, FRAME_A_IPA, 1)
            .unwrap();
        let invalidations = quiet(&mut system);
        assert!(!invalidations.is_empty(), "the host's mapping was removed");
        assert_eq!(host_state(&system, FRAME_A_IPA), None);
        let (engine, arch) = (&mut system.engine, &mut system.arch);
        assert_eq!(
            engine.page_state(arch, GUEST_HISTORY, FRAME_A_IPA),
            Ok(Some(PageState::Owned))
        );
        engine.share(arch, GUEST_HISTORY, FRAME_A_IPA, 1).unwrap();
        quiet(&mut system);
        assert_eq!(
            host_state(&system, FRAME_A_IPA),
            Some(PageState::SharedBorrowed)
        );
        let (engine, arch) = (&mut system.engine, &mut system.arch);
        assert_eq!(
            engine.share(arch, GUEST_HISTORY, FRAME_A_IPA, 1),
            Err(Error::WrongState)
        );
        engine.unshare(arch, GUEST_HISTORY, FRAME_A_IPA, 1).unwrap();
        assert!(
            !quiet(&mut system).is_empty(),
            "unshare invalidates the host's translation"
        );
        assert_eq!(host_state(&system, FRAME_A_IPA), None);
        assert_eq!(
            system.arch.peek(SmallSystem::frame(512)),
            0xC0FFEE,
            "no copy, no change"
        );
        let (engine, arch) = (&mut system.engine, &mut system.arch);
        engine
            .relinquish(arch, GUEST_HISTORY, FRAME_A_IPA, 1)
            .unwrap();
        quiet(&mut system);
        assert!(system.arch.is_zero(SmallSystem::frame(512)));
        assert_eq!(host_state(&system, FRAME_A_IPA), Some(PageState::Owned));
    }

    #[test]
    fn split_mode_uses_the_alias_for_shared_pages() {
        let mut system = SmallSystem::boot().unwrap();
        let (engine, arch) = (&mut system.engine, &mut system.arch);
        engine
            .donate(arch, HOST, GUEST_SPLIT, FRAME_B_IPA, 1)
            .unwrap();
        engine.share(arch, GUEST_SPLIT, FRAME_B_IPA, 1).unwrap();
        quiet(&mut system);
        let (engine, arch) = (&mut system.engine, &mut system.arch);
        assert_eq!(engine.page_state(arch, GUEST_SPLIT, FRAME_B_IPA), Ok(None));
        let alias = FRAME_B_IPA.shared_alias();
        assert_eq!(
            engine.page_state(arch, GUEST_SPLIT, alias),
            Ok(Some(PageState::SharedOwned))
        );
        // The guest may name the alias when unsharing.
        engine.unshare(arch, GUEST_SPLIT, alias, 1).unwrap();
        quiet(&mut system);
        let (engine, arch) = (&mut system.engine, &mut system.arch);
        assert_eq!(
            engine.page_state(arch, GUEST_SPLIT, FRAME_B_IPA),
            Ok(Some(PageState::Owned))
        );
        assert_eq!(engine.page_state(arch, GUEST_SPLIT, alias), Ok(None));
    }

    #[test]
    fn whole_block_conversion_is_one_descriptor_change_and_inner_pages_split() {
        let mut system = SmallSystem::boot().unwrap();
        let (engine, arch) = (&mut system.engine, &mut system.arch);
        engine
            .donate(arch, HOST, GUEST_HISTORY, BLOCK_IPA, 512)
            .unwrap();
        let invalidations = quiet(&mut system);
        assert_eq!(
            invalidations.len(),
            1,
            "one block, one invalidation: {invalidations:?}"
        );
        let guest = system.engine.domain(GUEST_HISTORY).unwrap().table;
        assert_eq!(guest.leaf_level(&system.arch, BLOCK_IPA), Some(2));
        let (engine, arch) = (&mut system.engine, &mut system.arch);
        let second = Ipa(BLOCK_IPA.get() + PAGE_SIZE);
        engine.share(arch, GUEST_HISTORY, second, 1).unwrap();
        quiet(&mut system);
        assert_eq!(guest.leaf_level(&system.arch, BLOCK_IPA), Some(3), "split");
        let (engine, arch) = (&mut system.engine, &mut system.arch);
        engine.unshare(arch, GUEST_HISTORY, second, 1).unwrap();
        quiet(&mut system);
        assert_eq!(
            guest.leaf_level(&system.arch, BLOCK_IPA),
            Some(2),
            "coalesced"
        );
    }

    #[test]
    fn refused_requests_change_nothing() {
        let mut system = SmallSystem::boot().unwrap();
        let (engine, arch) = (&mut system.engine, &mut system.arch);
        engine
            .donate(arch, HOST, GUEST_HISTORY, FRAME_A_IPA, 1)
            .unwrap();
        quiet(&mut system);
        let before = system.clone();
        let (engine, arch) = (&mut system.engine, &mut system.arch);
        // The range covers A (guest-owned) and B (host-owned): all or nothing.
        assert_eq!(
            engine.share(arch, GUEST_HISTORY, FRAME_A_IPA, 2),
            Err(Error::NotMapped)
        );
        assert_eq!(
            engine.donate(arch, HOST, GUEST_SPLIT, FRAME_A_IPA, 2),
            Err(Error::NotMapped)
        );
        assert_eq!(
            engine.donate(arch, HOST, GUEST_HISTORY, Ipa(0x4020_0800), 1),
            Err(Error::Misaligned)
        );
        assert_eq!(
            engine.lend(arch, HOST, GUEST_HISTORY, FRAME_B_IPA, 1, Rights::empty()),
            Err(Error::InvalidRights)
        );
        assert_eq!(
            engine.unshare(arch, GUEST_HISTORY, FRAME_A_IPA, 1),
            Err(Error::WrongState)
        );
        assert_eq!(
            engine.donate(arch, HOST, GUEST_HISTORY, Ipa(0x7000_0000), 1),
            Err(Error::IpaOutOfRange)
        );
        assert_eq!(
            engine.donate(arch, HOST, DomainId(9), FRAME_B_IPA, 1),
            Err(Error::NoSuchDomain)
        );
        assert!(system.arch.end_call().is_empty());
        assert_eq!(system.engine, before.engine);
    }

    #[test]
    fn each_refusal_names_its_reason() {
        let mut system = SmallSystem::boot().unwrap();
        let (engine, arch) = (&mut system.engine, &mut system.arch);
        let second = Ipa(BLOCK_IPA.get() + PAGE_SIZE);
        engine
            .donate(arch, HOST, GUEST_HISTORY, FRAME_A_IPA, 1)
            .unwrap();
        engine
            .share_with_guest(arch, HOST, GUEST_SPLIT, FRAME_B_IPA, 1, Rights::READ)
            .unwrap();
        // The host no longer holds A: nothing to donate there.
        assert_eq!(
            engine.donate(arch, HOST, GUEST_SPLIT, FRAME_A_IPA, 1),
            Err(Error::NotMapped)
        );
        // The block's second page goes to guest 2; a second donate finds the host's slot empty.
        engine.donate(arch, HOST, GUEST_SPLIT, second, 1).unwrap();
        assert_eq!(
            engine.donate(arch, HOST, GUEST_SPLIT, second, 1),
            Err(Error::NotMapped)
        );
        // Sharing B with guest 2 twice.
        assert_eq!(
            engine.share_with_guest(arch, HOST, GUEST_SPLIT, FRAME_B_IPA, 1, Rights::READ),
            Err(Error::AlreadyBorrowed)
        );
        // Granting more than the owner has.
        assert_eq!(
            engine.share_with_guest(arch, HOST, GUEST_HISTORY, FRAME_B_IPA, 1, Rights::ALL),
            Err(Error::InvalidRights)
        );
        // The block's first page is shared with guest 1; lending it as well is refused (the
        // host no longer holds it exclusively).
        engine
            .share_with_guest(arch, HOST, GUEST_HISTORY, BLOCK_IPA, 1, Rights::READ)
            .unwrap();
        assert_eq!(
            engine.lend(arch, HOST, GUEST_HISTORY, BLOCK_IPA, 1, Rights::READ),
            Err(Error::WrongState)
        );
        // Nothing lent: reclaim finds no annotation.
        assert_eq!(
            engine.reclaim(arch, HOST, GUEST_HISTORY, FRAME_B_IPA, 1),
            Err(Error::WrongState)
        );
        assert_eq!(
            engine.reclaim(arch, HOST, GUEST_HISTORY, FRAME_A_IPA, 1),
            Err(Error::NotMapped)
        );
        // Unshare of a page the guest owns but never shared.
        assert_eq!(
            engine.unshare(arch, GUEST_HISTORY, FRAME_A_IPA, 1),
            Err(Error::WrongState)
        );
        // A guest cannot relinquish what it merely borrows from a share.
        assert_eq!(
            engine.relinquish(arch, GUEST_SPLIT, FRAME_B_IPA, 1),
            Err(Error::WrongState)
        );
        // Ranges: zero pages, more than a block, wrapping.
        assert_eq!(
            engine.share(arch, GUEST_HISTORY, FRAME_A_IPA, 0),
            Err(Error::InvalidRange)
        );
        assert_eq!(
            engine.share(arch, GUEST_HISTORY, FRAME_A_IPA, 513),
            Err(Error::InvalidRange)
        );
        assert_eq!(
            engine.share(arch, GUEST_HISTORY, Ipa(!0xFFF), 2),
            Err(Error::InvalidRange)
        );
        // Who may ask: the guest's host only.
        assert_eq!(
            engine.donate(arch, GUEST_SPLIT, GUEST_HISTORY, FRAME_B_IPA, 1),
            Err(Error::NotLinked)
        );
        assert_eq!(
            engine.share(arch, HOST, FRAME_A_IPA, 1),
            Err(Error::NotLinked)
        );
        quiet(&mut system);
    }

    #[test]
    fn pinned_shared_frame_cannot_be_unshared() {
        let mut system = SmallSystem::boot().unwrap();
        let (engine, arch) = (&mut system.engine, &mut system.arch);
        engine
            .donate(arch, HOST, GUEST_HISTORY, FRAME_A_IPA, 1)
            .unwrap();
        engine.share(arch, GUEST_HISTORY, FRAME_A_IPA, 1).unwrap();
        engine.pin(SmallSystem::frame(512)).unwrap();
        assert_eq!(
            engine.unshare(arch, GUEST_HISTORY, FRAME_A_IPA, 1),
            Err(Error::Pinned)
        );
        engine.unpin(SmallSystem::frame(512)).unwrap();
        engine.unshare(arch, GUEST_HISTORY, FRAME_A_IPA, 1).unwrap();
        quiet(&mut system);
    }

    #[test]
    fn lend_relinquish_reclaim_and_teardown() {
        let mut system = SmallSystem::boot().unwrap();
        let (engine, arch) = (&mut system.engine, &mut system.arch);
        arch.poke(SmallSystem::frame(513), 77);
        engine
            .lend(arch, HOST, GUEST_SPLIT, FRAME_B_IPA, 1, Rights::READ_WRITE)
            .unwrap();
        quiet(&mut system);
        assert_eq!(host_state(&system, FRAME_B_IPA), None);
        let (engine, arch) = (&mut system.engine, &mut system.arch);
        assert_eq!(
            engine.reclaim(arch, HOST, GUEST_SPLIT, FRAME_B_IPA, 1),
            Err(Error::AlreadyBorrowed)
        );
        engine
            .relinquish(arch, GUEST_SPLIT, FRAME_B_IPA, 1)
            .unwrap();
        engine
            .reclaim(arch, HOST, GUEST_SPLIT, FRAME_B_IPA, 1)
            .unwrap();
        quiet(&mut system);
        assert_eq!(
            system.arch.peek(SmallSystem::frame(513)),
            77,
            "lent frames are not zeroed"
        );
        // Teardown: the guest's own frames are zeroed, host-shared ones kept.
        let (engine, arch) = (&mut system.engine, &mut system.arch);
        arch.poke(SmallSystem::frame(0), 1);
        engine
            .donate(arch, HOST, GUEST_SPLIT, BLOCK_IPA, 512)
            .unwrap();
        engine
            .share(arch, GUEST_SPLIT, Ipa(BLOCK_IPA.get() + PAGE_SIZE), 1)
            .unwrap();
        engine
            .share_with_guest(arch, HOST, GUEST_SPLIT, FRAME_B_IPA, 1, Rights::READ)
            .unwrap();
        engine.teardown(arch, GUEST_SPLIT).unwrap();
        quiet(&mut system);
        assert!(system.arch.is_zero(SmallSystem::frame(0)));
        assert!(system.arch.is_zero(SmallSystem::frame(1)));
        assert_eq!(system.arch.peek(SmallSystem::frame(513)), 77);
        assert_eq!(host_state(&system, BLOCK_IPA), Some(PageState::Owned));
        assert_eq!(host_state(&system, FRAME_B_IPA), Some(PageState::Owned));
        let (engine, arch) = (&mut system.engine, &mut system.arch);
        assert_eq!(
            engine.share(arch, GUEST_SPLIT, BLOCK_IPA, 1),
            Err(Error::DomainDead)
        );
        let host = engine.domain(HOST).unwrap().table;
        assert_eq!(
            host.leaf_level(arch, WINDOW_HOST_BASE),
            Some(2),
            "the block coalesced back"
        );
    }

    #[test]
    fn microkit_region_shared_by_many_pds_fills_the_side_table_with_an_error() {
        // A Microkit region mapped into several PDs at boot: the first mapper owns the frames,
        // the others borrow them; the side table here has room for 3 extra borrowers.
        let mut pool_arch =
            crate::arch::fake::FakeArch::new(PhysAddr(0x2000_0000), PhysAddr(0x2010_0000));
        let mut shared: Engine<4, 3> = Engine::empty();
        shared
            .init(
                TablePool::new(PhysAddr(0x2000_0000), 256).unwrap(),
                PhysAddr(0x5000_0000),
                4,
            )
            .unwrap();
        let region = |domain| BootMapping {
            domain: DomainId(domain),
            ipa: Ipa(0x1000_0000),
            pa: PhysAddr(0x5000_0000),
            pages: 2,
            rights: Rights::READ,
            memory: MemoryType::Normal,
            sharing: BootSharing::Shareable,
        };
        for domain in 0..8 {
            shared
                .create_domain(
                    &mut pool_arch,
                    DomainId(domain),
                    Vmid(u16::from(domain) + 1),
                )
                .unwrap();
        }
        // Owner + 1 inline borrower + 3 side-table records per frame: 2 frames need 6 > 3.
        shared.map_at_boot(&mut pool_arch, &region(0)).unwrap();
        shared.map_at_boot(&mut pool_arch, &region(1)).unwrap();
        shared.map_at_boot(&mut pool_arch, &region(2)).unwrap();
        let before = shared.clone();
        assert_eq!(
            shared.map_at_boot(&mut pool_arch, &region(3)),
            Err(Error::BorrowerTableFull)
        );
        assert_eq!(shared, before, "refused, nothing changed");
        assert_eq!(shared.frame_table().borrower_count(0), 2);
        assert_eq!(
            shared.page_state(&pool_arch, DomainId(2), Ipa(0x1000_0000)),
            Ok(Some(PageState::SharedBorrowed))
        );
        assert_eq!(
            shared.page_state(&pool_arch, DomainId(0), Ipa(0x1000_0000)),
            Ok(Some(PageState::SharedOwned))
        );
    }

    #[test]
    fn exhausted_table_pool_refuses_and_changes_nothing() {
        let mut arch =
            crate::arch::fake::FakeArch::new(PhysAddr(0x2000_0000), PhysAddr(0x2000_4000));
        let mut engine: Engine<1024, 4> = Engine::empty();
        engine
            .init(
                TablePool::new(PhysAddr(0x2000_0000), 4).unwrap(),
                PhysAddr(0x4000_0000),
                1024,
            )
            .unwrap();
        engine
            .create_domain(&mut arch, DomainId(0), Vmid(1))
            .unwrap();
        let mapping = |ipa: u64, pa: u64| BootMapping {
            domain: DomainId(0),
            ipa: Ipa(ipa),
            pa: PhysAddr(pa),
            pages: 1,
            rights: Rights::READ_WRITE,
            memory: MemoryType::Normal,
            sharing: BootSharing::Private,
        };
        // Root (2 pages) + level-2 + level-3 table: the pool is now empty.
        engine
            .map_at_boot(&mut arch, &mapping(0x1000, 0x4000_0000))
            .unwrap();
        assert_eq!(engine.pool().available(), 0);
        let before = engine.clone();
        let arch_before = arch.clone();
        assert_eq!(
            engine.map_at_boot(&mut arch, &mapping(0x40_0000_0000 - 0x1000, 0x4000_1000)),
            Err(Error::OutOfTableMemory)
        );
        assert_eq!(engine, before);
        assert!(arch.same_memory(&arch_before));
        // Same table, no new table needed: still fine.
        engine
            .map_at_boot(&mut arch, &mapping(0x2000, 0x4000_2000))
            .unwrap();
    }

    #[test]
    fn boot_mapping_refuses_hypervisor_memory_and_double_mapping() {
        let mut system = SmallSystem::boot().unwrap();
        let mut mapping = BootMapping {
            domain: GUEST_HISTORY,
            ipa: Ipa(0x1000_0000),
            pa: HYPERVISOR.0,
            pages: 1,
            rights: Rights::READ,
            memory: MemoryType::Normal,
            sharing: BootSharing::Shareable,
        };
        let (engine, arch) = (&mut system.engine, &mut system.arch);
        assert_eq!(
            engine.map_at_boot(arch, &mapping),
            Err(Error::HypervisorMemory)
        );
        mapping.pa = POOL_BASE;
        assert_eq!(
            engine.map_at_boot(arch, &mapping),
            Err(Error::HypervisorMemory)
        );
        mapping.pa = SmallSystem::frame(3);
        assert_eq!(
            engine.map_at_boot(arch, &mapping),
            Err(Error::WrongState),
            "host owns it privately"
        );
        mapping.pa = PhysAddr(0x0900_0000);
        mapping.memory = MemoryType::Device;
        engine.map_at_boot(arch, &mapping).unwrap();
        assert_eq!(
            engine.page_state(arch, GUEST_HISTORY, mapping.ipa),
            Ok(Some(PageState::Passthrough))
        );
        assert_eq!(
            engine.map_at_boot(arch, &mapping),
            Err(Error::AlreadyMapped)
        );
        quiet(&mut system);
    }
}
