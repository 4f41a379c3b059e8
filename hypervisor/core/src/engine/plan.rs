//! Requests and the prepare step: every page checked, decided and grouped into runs, and the
//! exact number of table pages the commit will take counted, before anything is written.

use heapless::Vec;

use super::Engine;
use crate::addr::{Ipa, BLOCK_SIZE, PAGES_PER_BLOCK, PAGE_SIZE};
use crate::arch::Stage2Arch;
use crate::descriptor::{MemoryType, PageState, Rights};
use crate::domain::{ConversionMode, DomainId, Domains, GuestLink};
use crate::error::Error;
use crate::frame_table::{FrameState, FrameStorage};
use crate::ownership::{decide, FrameView, Holder, Operation, Side, Transition};
use crate::stage2::{BlockSlot, Entry, Reach, Stage2Table};

/// Longest range one conversion request may name (one 2 MiB block).
pub const MAX_RANGE_PAGES: u64 = PAGES_PER_BLOCK;

/// Most runs a plan holds: one per page at worst.
const MAX_RUNS: usize = MAX_RANGE_PAGES as usize;

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

impl Request {
    /// A request that grants no rights.
    pub const fn new(
        operation: Operation,
        host: DomainId,
        guest: DomainId,
        ipa: Ipa,
        pages: u64,
    ) -> Self {
        Self {
            operation,
            host,
            guest,
            ipa,
            pages,
            rights: Rights::empty(),
        }
    }
}

/// The (host, guest) pair of a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Pair {
    pub(super) host: DomainId,
    pub(super) guest: DomainId,
    pub(super) host_table: Stage2Table,
    pub(super) guest_table: Stage2Table,
    pub(super) link: GuestLink,
}

/// Where the guest holds (or will hold) a page: nowhere, at the IPA, or at its split-mode alias.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(super) enum Location {
    /// No entry.
    Nowhere,
    /// At the (private) IPA.
    Private,
    /// At the shared alias `IPA | 1 << 39`.
    Alias,
}

impl Location {
    /// The IPA this location names for guest IPA `ipa`.
    pub(super) fn at(self, ipa: Ipa) -> Option<Ipa> {
        match self {
            Self::Nowhere => None,
            Self::Private => Some(ipa),
            Self::Alias => Some(ipa.shared_alias()),
        }
    }
}

/// A run of pages of one request: contiguous guest IPAs over contiguous frames, every page with
/// the same transition, borrows, rights and guest locations ([`RunKey`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Run {
    /// Pages in the run (they follow the previous run's).
    pub(super) pages: u16,
    /// The frame-table index of the first page's frame.
    pub(super) frame: u32,
    /// What happens to each frame.
    pub(super) transition: Transition,
    /// The host borrowed the frames before.
    pub(super) host_borrows: bool,
    /// The guest borrowed the frames before.
    pub(super) guest_borrows: bool,
    /// Where the guest's entry is now.
    pub(super) guest_old: Location,
    /// Where the guest's entry will be.
    pub(super) guest_new: Location,
}

/// An accepted request, prepared and not yet applied: its range as runs of uniform pages and the
/// table pages the commit takes. Owned, so it can be inspected and then given to
/// [`Engine::commit`], which applies it without deciding anything again. At most 512 runs of 20
/// bytes: 10 KiB on the 128 KiB EL2 stack for the worst range. ([`Engine::convert`] keeps the
/// runs where it made them and never moves a plan: a move copies all 10 KiB.)
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    pub(super) head: PlanHead,
    pub(super) runs: Vec<Run, MAX_RUNS>,
}

/// Everything in a plan but its runs (small, so it moves for free).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct PlanHead {
    pub(super) pair: Pair,
    pub(super) first: Ipa,
    /// One whole, aligned, uniform 2 MiB block: one level-2 descriptor change per side.
    pub(super) block: bool,
    /// Table pages the commit allocates.
    pub(super) tables: usize,
    /// The engine's epoch the plan was made in.
    pub(super) epoch: u64,
}

impl Plan {
    /// The runs of uniform pages (one per page at worst).
    pub fn runs(&self) -> usize {
        self.runs.len()
    }

    /// Pages in the range.
    pub fn pages(&self) -> u64 {
        self.runs.iter().map(|run| u64::from(run.pages)).sum()
    }

    /// Whether the range is converted as one 2 MiB block.
    pub fn is_block(&self) -> bool {
        self.head.block
    }

    /// Table pages the commit allocates.
    pub fn table_pages(&self) -> usize {
        self.head.tables
    }
}

/// One page's decision, before it joins a run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct PagePlan {
    frame: usize,
    view: FrameView,
    transition: Transition,
    guest_old: Location,
    guest_new: Location,
}

/// What must be equal for two pages to share a run (besides contiguity): everything the commit
/// derives a descriptor or a record from. (Pins, and other domains' borrows, only decide the
/// transition: two frames with the same transition may differ in them.)
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct RunKey {
    transition: Transition,
    host_borrows: bool,
    guest_borrows: bool,
    owner_rights: Rights,
    guest_old: Location,
    guest_new: Location,
    memory: MemoryType,
    host_rights: Option<Rights>,
    guest_rights: Option<Rights>,
}

impl<S: FrameStorage> Engine<S> {
    /// Prepare step: checks the whole request and returns its plan, or refuses it with nothing
    /// changed.
    pub fn prepare<C>(
        &self,
        arch: &impl Stage2Arch,
        domains: &Domains<C>,
        request: Request,
    ) -> Result<Plan, Error> {
        let mut runs = Vec::new();
        let head = self.prepare_runs(arch, domains, request, &mut runs)?;
        Ok(Plan { head, runs })
    }

    /// [`Self::prepare`] into `runs` (empty), which the caller keeps where it is.
    pub(super) fn prepare_runs<C>(
        &self,
        arch: &impl Stage2Arch,
        domains: &Domains<C>,
        request: Request,
        runs: &mut Vec<Run, MAX_RUNS>,
    ) -> Result<PlanHead, Error> {
        let pair = pair(domains, request)?;
        let first = first_ipa(&pair, request)?;
        let slots_needed = match self.plan_uniform_block(arch, &pair, request, first, runs)? {
            Some(slots) => slots,
            None => self.plan_pages(arch, &pair, request, first, runs)?,
        };
        if slots_needed > self.frames.free_borrower_slots() {
            return Err(Error::BorrowerTableFull);
        }
        let block = self.is_block(&pair, request, first, runs);
        let tables = table_pages(arch, &pair, first, runs, block);
        if tables > self.pool.available() {
            return Err(Error::OutOfTableMemory);
        }
        Ok(PlanHead {
            pair,
            first,
            block,
            tables,
            epoch: self.epoch,
        })
    }

    /// The slow path of [`Self::prepare`]: every page planned, runs merged; returns the borrower
    /// side-table slots the commit takes.
    fn plan_pages(
        &self,
        arch: &impl Stage2Arch,
        pair: &Pair,
        request: Request,
        first: Ipa,
        runs: &mut Vec<Run, MAX_RUNS>,
    ) -> Result<usize, Error> {
        let mut last_key = None;
        let mut slots_needed = 0;
        for page in 0..request.pages {
            let ipa = Ipa(first.get() + page * PAGE_SIZE);
            let plan = self.plan_page(arch, pair, request, ipa)?;
            let adds_host = plan.transition.host == Side::Mapped(PageState::SharedBorrowed)
                && !plan.view.host_borrows;
            let adds_guest = plan.transition.guest == Side::Mapped(PageState::SharedBorrowed)
                && !plan.view.guest_borrows;
            if adds_host || adds_guest {
                slots_needed += self.frames.borrower_slots_needed(plan.frame);
            }
            // Only a range of more than one page merges runs.
            let key = (request.pages > 1).then(|| RunKey {
                transition: plan.transition,
                host_borrows: plan.view.host_borrows,
                guest_borrows: plan.view.guest_borrows,
                owner_rights: plan.view.owner_rights,
                guest_old: plan.guest_old,
                guest_new: plan.guest_new,
                memory: self.frames.record_at(plan.frame).memory(),
                host_rights: self.frames.borrower_rights(plan.frame, pair.host),
                guest_rights: self.frames.borrower_rights(plan.frame, pair.guest),
            });
            let extends = runs.last().is_some_and(|run| {
                key.is_some()
                    && last_key == key
                    && run.frame as usize + usize::from(run.pages) == plan.frame
            });
            match runs.last_mut() {
                Some(run) if extends => run.pages += 1,
                _ => {
                    // At most one run per page: the request has at most MAX_RUNS pages.
                    let pushed = runs.push(Run {
                        pages: 1,
                        frame: plan.frame as u32,
                        transition: plan.transition,
                        host_borrows: plan.view.host_borrows,
                        guest_borrows: plan.view.guest_borrows,
                        guest_old: plan.guest_old,
                        guest_new: plan.guest_new,
                    });
                    if pushed.is_err() {
                        return Err(Error::InvalidRange);
                    }
                }
            }
            last_key = key;
        }
        Ok(slots_needed)
    }

    /// The fast path of [`Self::prepare`] for a whole 2 MiB block that is uniform: on each side
    /// one level-2 descriptor or nothing ([`BlockSlot`]), and one folded frame group
    /// ([`crate::frame_table`]). Its 512 pages would all plan as its first does, so the first
    /// is planned and the run covers all 512. `Ok(None)` when the range is not such a block;
    /// a refusal is the first page's, which is the slow path's too.
    fn plan_uniform_block(
        &self,
        arch: &impl Stage2Arch,
        pair: &Pair,
        request: Request,
        first: Ipa,
        runs: &mut Vec<Run, MAX_RUNS>,
    ) -> Result<Option<usize>, Error> {
        if request.pages != PAGES_PER_BLOCK || !first.is_block_aligned() {
            return Ok(None);
        }
        let Some(host_first) = pair.link.window.host_ipa(first) else {
            return Ok(None);
        };
        let alias = match pair.link.mode {
            ConversionMode::Split => pair.guest_table.block_slot(arch, first.shared_alias()),
            ConversionMode::History => BlockSlot::Empty,
        };
        let slots = [
            pair.host_table.block_slot(arch, host_first),
            pair.guest_table.block_slot(arch, first),
            alias,
        ];
        if !host_first.is_block_aligned() || slots.contains(&BlockSlot::Other) {
            return Ok(None);
        }
        let plan = self.plan_page(arch, pair, request, first)?;
        // A block leaf's frame is 2 MiB aligned: the head of its group, if the table has it.
        if self.frames.folded_record(plan.frame).is_none() {
            return Ok(None);
        }
        let adds_borrower = (plan.transition.host == Side::Mapped(PageState::SharedBorrowed)
            && !plan.view.host_borrows)
            || (plan.transition.guest == Side::Mapped(PageState::SharedBorrowed)
                && !plan.view.guest_borrows);
        let slots_needed = if adds_borrower {
            self.frames.borrower_slots_needed(plan.frame) * PAGES_PER_BLOCK as usize
        } else {
            0
        };
        let run = Run {
            pages: PAGES_PER_BLOCK as u16,
            frame: plan.frame as u32,
            transition: plan.transition,
            host_borrows: plan.view.host_borrows,
            guest_borrows: plan.view.guest_borrows,
            guest_old: plan.guest_old,
            guest_new: plan.guest_new,
        };
        if runs.push(run).is_err() {
            return Err(Error::InvalidRange);
        }
        Ok(Some(slots_needed))
    }

    /// Whether the range is one whole aligned 2 MiB block that the commit can convert with one
    /// descriptor per side: one run over aligned frames, at aligned positions, not lent away
    /// (annotations are per page).
    fn is_block(&self, pair: &Pair, request: Request, first: Ipa, runs: &[Run]) -> bool {
        let [run] = runs else {
            return false;
        };
        request.pages == PAGES_PER_BLOCK
            && first.is_block_aligned()
            && self
                .frames
                .frame_address(run.frame as usize)
                .is_block_aligned()
            && pair
                .link
                .window
                .host_ipa(first)
                .is_some_and(Ipa::is_block_aligned)
            && run.transition.host != Side::LentAway
    }

    /// The view of frame `index` from the pair's side.
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
            owner_rights: record.owner_rights(),
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

    /// One page: finds the frame, checks the descriptors agree with the frame table, decides,
    /// checks the destinations.
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
            (Entry::Empty, Entry::Empty) => (Entry::Empty, Location::Nowhere),
            (Entry::Empty, alias) => (alias, Location::Alias),
            (private, Entry::Empty) => (private, Location::Private),
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
        let host_expected = expected_state(&view, Holder::Host, view.host_borrows);
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
        let guest_expected = expected_state(&view, Holder::Guest, view.guest_borrows);
        let guest_old = match guest_entry {
            Entry::Mapped(leaf)
                if leaf.pa == pa
                    && Some(leaf.state) == guest_expected
                    && guest_at == guest_location(pair, leaf.state) =>
            {
                guest_at
            }
            _ => Location::Nowhere,
        };
        if (guest_old != Location::Nowhere) != guest_expected.is_some() {
            return Err(Error::WrongState);
        }
        let transition = decide(request.operation, view, request.rights)?;
        // Destinations must be free unless they already hold this frame.
        let guest_new = match transition.guest {
            Side::Mapped(state) => guest_location(pair, state),
            _ => Location::Nowhere,
        };
        let guest_busy = guest_at != Location::Nowhere;
        if guest_new != Location::Nowhere && guest_old == Location::Nowhere && guest_busy {
            return Err(Error::AlreadyMapped);
        }
        if transition.host != Side::NoPage && !host_holds && host_entry != Entry::Empty {
            return Err(Error::AlreadyMapped);
        }
        Ok(PagePlan {
            frame,
            view,
            transition,
            guest_old,
            guest_new,
        })
    }
}

/// The state the pair's `holder` side should see for a frame, per the frame table as `view`
/// shows it (`borrows`: that side is a listed borrower).
fn expected_state(view: &FrameView, holder: Holder, borrows: bool) -> Option<PageState> {
    if view.owner == holder {
        return match view.state {
            FrameState::Owned => Some(PageState::Owned),
            FrameState::SharedOwned => Some(PageState::SharedOwned),
            _ => None,
        };
    }
    borrows.then_some(PageState::SharedBorrowed)
}

/// The (host, guest) pair of a request, if the request may be made at all.
fn pair<C>(domains: &Domains<C>, request: Request) -> Result<Pair, Error> {
    let guest = domains.vspace(request.guest).ok_or(Error::NoSuchDomain)?;
    let link = guest.link.ok_or(Error::NotLinked)?;
    if link.host != request.host {
        return Err(Error::NotLinked);
    }
    let host = domains.vspace(request.host).ok_or(Error::NoSuchDomain)?;
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
fn first_ipa(pair: &Pair, request: Request) -> Result<Ipa, Error> {
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
fn guest_location(pair: &Pair, state: PageState) -> Location {
    match (pair.link.mode, state) {
        (ConversionMode::Split, PageState::SharedOwned | PageState::SharedBorrowed) => {
            Location::Alias
        }
        _ => Location::Private,
    }
}

/// The table pages a commit of `runs` allocates, counted from the tables as they are: for every
/// region a side writes a mapping or annotation into, the level-2 table its 1 GiB region lacks
/// and, for page-level writes, the level-3 table its 2 MiB region lacks (a block there is split
/// into one); for a region a side only removes pages from, a level-3 table only if a block there
/// must be split. A whole-block plan writes level-2 descriptors: it can need a level-2 table,
/// never a level-3 one. Removing never allocates anything else, so a teardown needs pages only
/// where its host has no table left for a frame coming back.
fn table_pages(
    arch: &impl Stage2Arch,
    pair: &Pair,
    first: Ipa,
    runs: &[Run],
    block: bool,
) -> usize {
    let host_ipa = |ipa: Ipa| pair.link.window.host_ipa(ipa).unwrap_or(ipa);
    if let ([run], false) = (runs, block) {
        if run.pages == 1 {
            return page_table_pages(arch, pair, run, first, host_ipa(first));
        }
    }
    let mut count = TableCount::default();
    if block {
        if let Some(run) = runs.first() {
            if run.transition.host != Side::NoPage {
                count.block_write(HOST_TABLE, host_ipa(first));
            }
            if let Some(at) = run.guest_new.at(first) {
                count.block_write(GUEST_TABLE, at);
            }
        }
    } else {
        // Per run and location, the 2 MiB regions its pages fall in (a run is at most 512
        // pages: two regions at most), not every page.
        let mut page = 0;
        for run in runs {
            let start = Ipa(first.get() + page * PAGE_SIZE);
            let last = Ipa(start.get() + (u64::from(run.pages) - 1) * PAGE_SIZE);
            let mut each_region = |at: &dyn Fn(Ipa) -> Option<Ipa>, guest: bool, maps: bool| {
                if let (Some(from), Some(to)) = (at(start), at(last)) {
                    for region in [from, to] {
                        count.page_write(guest, region, maps);
                    }
                }
            };
            let writes_host = run.transition.host != Side::NoPage;
            each_region(&|ipa| Some(host_ipa(ipa)), HOST_TABLE, writes_host);
            if run.guest_old != run.guest_new {
                each_region(&|ipa| run.guest_old.at(ipa), GUEST_TABLE, false);
            }
            each_region(&|ipa| run.guest_new.at(ipa), GUEST_TABLE, true);
            page += u64::from(run.pages);
        }
    }
    count.total(arch, pair)
}

/// [`table_pages`] of a one-page plan: each location it writes is its own 2 MiB region (the
/// host's is in another table; the guest's old and new locations, when they differ, are the
/// private IPA and its alias), so the count is a sum, one walk per location.
fn page_table_pages(
    arch: &impl Stage2Arch,
    pair: &Pair,
    run: &Run,
    ipa: Ipa,
    host_ipa: Ipa,
) -> usize {
    let needed = |table: Stage2Table, at: Ipa, maps: bool| match (table.reach(arch, at), maps) {
        (Reach::Level1, true) => 2,
        (Reach::Level2 | Reach::Block, true) | (Reach::Block, false) => 1,
        _ => 0,
    };
    let mut total = needed(
        pair.host_table,
        host_ipa,
        run.transition.host != Side::NoPage,
    );
    if run.guest_old != run.guest_new {
        if let Some(old) = run.guest_old.at(ipa) {
            total += needed(pair.guest_table, old, false);
        }
    }
    if let Some(new) = run.guest_new.at(ipa) {
        total += needed(pair.guest_table, new, true);
    }
    total
}

/// [`TableCount`]'s name for the host's table.
const HOST_TABLE: bool = false;
/// [`TableCount`]'s name for the guest's table.
const GUEST_TABLE: bool = true;

/// The regions one commit writes into, per table (false = the host's, true = the guest's).
#[derive(Default)]
struct TableCount {
    /// 1 GiB regions a whole-block plan maps or annotates in.
    block_gigabytes: Vec<(bool, u64), 8>,
    /// 2 MiB regions that get a page-level mapping or annotation.
    filled: Vec<(bool, u64), 8>,
    /// 2 MiB regions that only lose pages.
    emptied: Vec<(bool, u64), 8>,
}

/// Adds `item` to `set` if it is not there (the sets are tiny: a range spans at most two
/// regions per location).
fn insert(set: &mut Vec<(bool, u64), 8>, item: (bool, u64)) {
    if !set.contains(&item) {
        // A range of at most 512 pages touches at most 2 regions of each size at each of its 3
        // locations (host window, guest IPA, guest alias): 6 < 8.
        let _ = set.push(item);
    }
}

/// The 1 GiB region of `ipa`.
const fn gigabyte(ipa: u64) -> u64 {
    ipa & !((1 << 30) - 1)
}

impl TableCount {
    fn page_write(&mut self, guest: bool, ipa: Ipa, maps: bool) {
        let region = (guest, ipa.get() & !(BLOCK_SIZE - 1));
        if maps {
            insert(&mut self.filled, region);
        } else {
            insert(&mut self.emptied, region);
        }
    }

    fn block_write(&mut self, guest: bool, ipa: Ipa) {
        insert(&mut self.block_gigabytes, (guest, gigabyte(ipa.get())));
    }

    /// One level-3 table per filled region that has none; one level-2 table per 1 GiB region
    /// written into that has none (a region's reach is `Level1` exactly when its 1 GiB region
    /// has no level-2 table, so one walk per region answers both); one level-3 table per
    /// emptied region that is a block to split.
    fn total(&self, arch: &impl Stage2Arch, pair: &Pair) -> usize {
        let table = |guest: bool| {
            if guest {
                pair.guest_table
            } else {
                pair.host_table
            }
        };
        let reach = |(guest, base): (bool, u64)| table(guest).reach(arch, Ipa(base));
        let mut missing_level2: Vec<(bool, u64), 8> = Vec::new();
        let mut level3 = 0;
        for &(guest, base) in &self.filled {
            let region_reach = reach((guest, base));
            level3 += usize::from(region_reach != Reach::Level3);
            if region_reach == Reach::Level1 {
                insert(&mut missing_level2, (guest, gigabyte(base)));
            }
        }
        for &region in &self.block_gigabytes {
            if reach(region) == Reach::Level1 {
                insert(&mut missing_level2, region);
            }
        }
        let splits = self
            .emptied
            .iter()
            .filter(|&&region| !self.filled.contains(&region) && reach(region) == Reach::Block)
            .count();
        missing_level2.len() + level3 + splits
    }
}
