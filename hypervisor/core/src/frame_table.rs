//! The frame table: owner, state, borrowers and pin count of every convertible 4 KiB frame.
//!
//! It is the capability derivation tree of the frames: a frame's owner holds its original
//! capability, and each borrower a capability derived from it, with its own rights (a lent
//! frame's owner keeps the original with no access). [`crate::engine::Engine::frame_caps`] lists
//! one domain's capabilities from it.
//!
//! Budget (DESIGN.md 4): 8 bytes per frame, asserted at compile time. A [`FrameRecord`] packs
//!
//! | bits  | field |
//! | ----- | ----- |
//! | 5:0   | owner domain + 1 (0 = no owner: the frame is free) |
//! | 7:6   | frame state: Owned, SharedOwned, Lent |
//! | 10:8  | the owner's rights |
//! | 11    | memory type: 1 = Device (a Microkit `cached="false"` region) |
//! | 19:12 | pin count |
//! | 25:20 | first borrower + 1 (0 = none) |
//! | 28:26 | first borrower's rights |
//! | 44:29 | index + 1 of the next borrower in the side table (0 = none) |
//! | 63    | folded (only in the first record of a 2 MiB group, below) |
//!
//! A free frame's record is all zeros, so a zeroed table is an empty one.
//!
//! **Folded groups: the per-block summary.** The 512 frames of a 2 MiB-aligned physical block
//! that the table covers whole form a group. When all 512 hold the same record and it chains
//! nothing from the side table, the group may be *folded*: bit 63 of its first record says so,
//! that record is every frame's record, and the other 511 are not read. A 2 MiB block that
//! converts as one (the engine's block fast path) then reads and writes one record, not 512.
//! Any change to a single frame of a folded group unfolds it first (512 copies, once); the
//! engine folds a group again when a whole-block commit or a boot block mapping leaves it
//! uniform. Folding is invisible: every reader sees the same records either way, and equality
//! and hashing compare what readers see.
//!
//! Most shared frames have one borrower (the host VMM, or one guest), which fits inline. Frames
//! that several Microkit PDs map at boot chain further [`BorrowerRecord`]s from a fixed-capacity
//! side table; when it is full the request is refused with [`Error::BorrowerTableFull`].
//!
//! The table keeps its records in a [`FrameStorage`]: slices of the hypervisor's heap, sized at
//! boot from the boot information's RAM size ([`StaticStorage`]), or vectors in host tests.

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

use crate::addr::{PhysAddr, PAGE_SIZE};
use crate::descriptor::{MemoryType, Rights};
use crate::domain::{DomainId, MAX_DOMAINS};
use crate::error::Error;

/// A frame's state, from the frame's point of view (each holder's view is a [`PageState`]).
///
/// [`PageState`]: crate::descriptor::PageState
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FrameState {
    /// No owner: not yet given to any domain.
    Free,
    /// Mapped only by its owner.
    Owned,
    /// Mapped by its owner and by every listed borrower.
    SharedOwned,
    /// Not mapped by its owner; the listed borrower (at most one) has exclusive use.
    Lent,
}

/// End of a side-table chain (the side table's own free list).
const NO_LINK: u16 = u16::MAX;

/// Frames in a group (one 2 MiB block).
const GROUP_FRAMES: usize = 512;

/// The folded bit of a group's first record.
const FOLDED: u64 = 1 << 63;

/// One frame's packed record (8 bytes).
#[repr(transparent)]
#[derive(
    Clone, Copy, PartialEq, Eq, Hash, Default, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
pub struct FrameRecord(u64);

const _: () = assert!(size_of::<FrameRecord>() <= 8, "frame budget is 8 bytes");
// Owner ids are stored plus one in 6 bits.
const _: () = assert!(MAX_DOMAINS < 64, "owner field is 6 bits");

impl FrameRecord {
    /// The record of a frame nobody owns: all zeros.
    pub const FREE: Self = Self(0);

    const fn field(self, shift: u32, bits: u32) -> u64 {
        (self.0 >> shift) & ((1 << bits) - 1)
    }

    fn set_field(&mut self, shift: u32, bits: u32, value: u64) {
        let mask = ((1u64 << bits) - 1) << shift;
        self.0 = (self.0 & !mask) | ((value << shift) & mask);
    }

    /// A domain id stored plus one (0 = none).
    fn domain_field(value: u64) -> Option<DomainId> {
        value.checked_sub(1).map(|id| DomainId(id as u8))
    }

    /// The owning domain, if any.
    pub fn owner(self) -> Option<DomainId> {
        Self::domain_field(self.field(0, 6))
    }

    /// The frame's state.
    pub fn state(self) -> FrameState {
        if self.owner().is_none() {
            return FrameState::Free;
        }
        match self.field(6, 2) {
            0 => FrameState::Owned,
            1 => FrameState::SharedOwned,
            2 => FrameState::Lent,
            _ => FrameState::Free,
        }
    }

    /// The owner's rights on its own mapping.
    pub fn owner_rights(self) -> Rights {
        Rights::from_bits_truncate(self.field(8, 3) as u8)
    }

    /// Memory type every mapping of this frame uses.
    pub fn memory(self) -> MemoryType {
        if self.field(11, 1) == 1 {
            MemoryType::Device
        } else {
            MemoryType::Normal
        }
    }

    /// In-flight uses that forbid unsharing.
    pub fn pins(self) -> u8 {
        self.field(12, 8) as u8
    }

    fn first_borrower(self) -> Option<(DomainId, Rights)> {
        Self::domain_field(self.field(20, 6))
            .map(|domain| (domain, Rights::from_bits_truncate(self.field(26, 3) as u8)))
    }

    /// The side-table index of the second borrower, if any.
    fn link(self) -> Option<u16> {
        (self.field(29, 16) as u16).checked_sub(1)
    }

    fn set_link(&mut self, link: Option<u16>) {
        self.set_field(29, 16, link.map_or(0, |index| u64::from(index) + 1));
    }

    /// The raw 64-bit value (for dumps).
    pub fn raw(self) -> u64 {
        self.0
    }
}

impl core::fmt::Debug for FrameRecord {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("FrameRecord")
            .field("owner", &self.owner())
            .field("state", &self.state())
            .field("pins", &self.pins())
            .finish_non_exhaustive()
    }
}

/// One extra borrower of a frame, chained from its record (4 bytes).
#[repr(C)]
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, Default, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
pub struct BorrowerRecord {
    domain: u8,
    rights: u8,
    next: u16,
}

impl BorrowerRecord {
    const UNUSED: Self = Self {
        domain: u8::MAX,
        rights: 0,
        next: NO_LINK,
    };
}

/// Where a frame table keeps its records: one [`FrameRecord`] per tracked frame and the
/// borrower side table.
pub trait FrameStorage {
    /// The frame records (at least as many as the table tracks).
    fn records(&self) -> &[FrameRecord];
    /// The frame records, for writing.
    fn records_mut(&mut self) -> &mut [FrameRecord];
    /// The side table of extra borrowers.
    fn borrowers(&self) -> &[BorrowerRecord];
    /// The side table, for writing.
    fn borrowers_mut(&mut self) -> &mut [BorrowerRecord];
}

/// Records lent for the hypervisor's whole run: carved from its heap at boot, once the boot
/// information says how much RAM there is. [`StaticStorage::EMPTY`] is all zeros (no slices),
/// so a hypervisor object holding it can sit in `.bss` until boot.
#[derive(Debug, Default)]
pub struct StaticStorage {
    records: Option<&'static mut [FrameRecord]>,
    borrowers: Option<&'static mut [BorrowerRecord]>,
}

impl StaticStorage {
    /// No records at all.
    pub const EMPTY: Self = Self {
        records: None,
        borrowers: None,
    };

    /// Storage over these slices.
    pub fn new(
        records: &'static mut [FrameRecord],
        borrowers: &'static mut [BorrowerRecord],
    ) -> Self {
        Self {
            records: Some(records),
            borrowers: Some(borrowers),
        }
    }
}

impl FrameStorage for StaticStorage {
    fn records(&self) -> &[FrameRecord] {
        self.records.as_deref().unwrap_or_default()
    }

    fn records_mut(&mut self) -> &mut [FrameRecord] {
        self.records.as_deref_mut().unwrap_or_default()
    }

    fn borrowers(&self) -> &[BorrowerRecord] {
        self.borrowers.as_deref().unwrap_or_default()
    }

    fn borrowers_mut(&mut self) -> &mut [BorrowerRecord] {
        self.borrowers.as_deref_mut().unwrap_or_default()
    }
}

/// Records in vectors (host tests and the model checker, which clone whole systems).
#[cfg(any(test, feature = "fake"))]
use std::vec::Vec;

#[cfg(any(test, feature = "fake"))]
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct VecStorage {
    records: Vec<FrameRecord>,
    borrowers: Vec<BorrowerRecord>,
}

#[cfg(any(test, feature = "fake"))]
impl VecStorage {
    /// Room for `frames` records and `borrowers` side-table records.
    pub fn new(frames: usize, borrowers: usize) -> Self {
        Self {
            records: std::vec![FrameRecord::FREE; frames],
            borrowers: std::vec![BorrowerRecord::UNUSED; borrowers],
        }
    }
}

#[cfg(any(test, feature = "fake"))]
impl FrameStorage for VecStorage {
    fn records(&self) -> &[FrameRecord] {
        &self.records
    }

    fn records_mut(&mut self) -> &mut [FrameRecord] {
        &mut self.records
    }

    fn borrowers(&self) -> &[BorrowerRecord] {
        &self.borrowers
    }

    fn borrowers_mut(&mut self) -> &mut [BorrowerRecord] {
        &mut self.borrowers
    }
}

/// The frame table over `[base, base + frames * 4 KiB)`, with as many records and side-table
/// records as its storage has. Fixed capacity, no heap. Equality and hashing are over what
/// readers see (folded groups as their 512 records).
#[derive(Clone, Debug)]
pub struct FrameTable<S> {
    base: PhysAddr,
    frames: usize,
    storage: S,
    free_borrower_head: u16,
    free_borrowers: usize,
}

impl<S: FrameStorage> PartialEq for FrameTable<S> {
    fn eq(&self, other: &Self) -> bool {
        self.base == other.base
            && self.frames == other.frames
            && self.free_borrower_head == other.free_borrower_head
            && self.free_borrowers == other.free_borrowers
            && self.storage.borrowers() == other.storage.borrowers()
            && (0..self.frames).all(|index| self.record_at(index) == other.record_at(index))
    }
}

impl<S: FrameStorage> Eq for FrameTable<S> {}

impl<S: FrameStorage> core::hash::Hash for FrameTable<S> {
    fn hash<H: core::hash::Hasher>(&self, state: &mut H) {
        self.base.hash(state);
        self.frames.hash(state);
        self.free_borrower_head.hash(state);
        self.free_borrowers.hash(state);
        self.storage.borrowers().hash(state);
        for index in 0..self.frames {
            self.record_at(index).hash(state);
        }
    }
}

impl<S: FrameStorage> FrameTable<S> {
    /// A table covering no memory over `storage` (a `const` initialiser); call
    /// [`FrameTable::init`]. Every field is zero (with no free side-table slot counted, the
    /// free-list head is never read), so a static holding it needs no file bytes.
    pub const fn new(storage: S) -> Self {
        Self {
            base: PhysAddr(0),
            frames: 0,
            storage,
            free_borrower_head: 0,
            free_borrowers: 0,
        }
    }

    /// Covers `frames` frames from `base` (page aligned), all free; the whole side table is free.
    pub fn init(&mut self, base: PhysAddr, frames: usize) -> Result<(), Error> {
        if !base.is_page_aligned() {
            return Err(Error::Misaligned);
        }
        let side_table = self.storage.borrowers().len();
        if frames > self.storage.records().len()
            || base.checked_add_pages(frames as u64).is_none()
            || side_table >= usize::from(NO_LINK)
        {
            return Err(Error::InvalidRange);
        }
        // Reset in place: the kernel's records are a large slice of its heap.
        self.storage.records_mut().fill(FrameRecord::FREE);
        for (index, entry) in self.storage.borrowers_mut().iter_mut().enumerate() {
            let next = if index + 1 < side_table {
                index as u16 + 1
            } else {
                NO_LINK
            };
            *entry = BorrowerRecord {
                next,
                ..BorrowerRecord::UNUSED
            };
        }
        self.free_borrower_head = if side_table > 0 { 0 } else { NO_LINK };
        self.free_borrowers = side_table;
        self.base = base;
        self.frames = frames;
        Ok(())
    }

    /// First byte of tracked memory.
    pub fn base(&self) -> PhysAddr {
        self.base
    }

    /// Number of tracked frames.
    pub fn frames(&self) -> usize {
        self.frames
    }

    /// End of tracked memory (exclusive).
    pub fn end(&self) -> PhysAddr {
        PhysAddr(self.base.get() + self.frames as u64 * PAGE_SIZE)
    }

    /// The frame index of `pa`, if tracked.
    pub fn index(&self, pa: PhysAddr) -> Option<usize> {
        let offset = pa.get().checked_sub(self.base.get())?;
        let index = (offset / PAGE_SIZE) as usize;
        (index < self.frames).then_some(index)
    }

    /// The frame address of `index`.
    pub fn frame_address(&self, index: usize) -> PhysAddr {
        PhysAddr(self.base.get() + index as u64 * PAGE_SIZE)
    }

    /// The record of the frame containing `pa`.
    pub fn record(&self, pa: PhysAddr) -> Option<FrameRecord> {
        self.index(pa).map(|index| self.record_at(index))
    }

    /// The record at `index` ([`FrameRecord::FREE`] when out of range).
    pub fn record_at(&self, index: usize) -> FrameRecord {
        if index >= self.frames {
            return FrameRecord::FREE;
        }
        let records = self.storage.records();
        if let Some(head) = self.group_head(index) {
            if let Some(&FrameRecord(raw)) = records.get(head) {
                if raw & FOLDED != 0 {
                    return FrameRecord(raw & !FOLDED);
                }
            }
        }
        records.get(index).copied().unwrap_or(FrameRecord::FREE)
    }

    /// The record of frame `index`, for writing: its group is unfolded first.
    fn record_mut(&mut self, index: usize) -> Option<&mut FrameRecord> {
        if index >= self.frames {
            return None;
        }
        if let Some(head) = self.group_head(index) {
            self.unfold(head);
        }
        self.storage.records_mut().get_mut(index)
    }

    /// The first frame of the whole group (2 MiB-aligned block of frames) `index` is in, if the
    /// table covers that group whole.
    fn group_head(&self, index: usize) -> Option<usize> {
        let offset = (self.frame_address(index).get() / PAGE_SIZE) as usize % GROUP_FRAMES;
        let head = index.checked_sub(offset)?;
        (head + GROUP_FRAMES <= self.frames).then_some(head)
    }

    /// The group's record if the group of first frame `head` is folded.
    pub(crate) fn folded_record(&self, head: usize) -> Option<FrameRecord> {
        if self.group_head(head) != Some(head) {
            return None;
        }
        let raw = self.storage.records().get(head)?.0;
        (raw & FOLDED != 0).then_some(FrameRecord(raw & !FOLDED))
    }

    /// Writes the folded group's record into all its frames and clears the folded bit.
    fn unfold(&mut self, head: usize) {
        let Some(record) = self.folded_record(head) else {
            return;
        };
        if let Some(group) = self
            .storage
            .records_mut()
            .get_mut(head..head + GROUP_FRAMES)
        {
            group.fill(record);
        }
    }

    /// Folds the group of first frame `head` if its 512 records are equal and chain nothing;
    /// returns whether the group is folded now.
    pub(crate) fn fold(&mut self, head: usize) -> bool {
        if self.group_head(head) != Some(head) {
            return false;
        }
        let Some(group) = self
            .storage
            .records_mut()
            .get_mut(head..head + GROUP_FRAMES)
        else {
            return false;
        };
        let first = group[0];
        if first.0 & FOLDED != 0 {
            return true;
        }
        if first.link().is_some() || group.iter().any(|&record| record != first) {
            return false;
        }
        group[0] = FrameRecord(first.0 | FOLDED);
        true
    }

    /// The first frames of the groups the table covers whole.
    fn group_heads(&self) -> impl Iterator<Item = usize> + '_ {
        let skew = (self.base.get() / PAGE_SIZE) as usize % GROUP_FRAMES;
        let first = (GROUP_FRAMES - skew) % GROUP_FRAMES;
        (first..self.frames)
            .step_by(GROUP_FRAMES)
            .filter(|&head| head + GROUP_FRAMES <= self.frames)
    }

    /// Folded groups (tests, benchmarks).
    pub fn folded_groups(&self) -> usize {
        self.group_heads()
            .filter(|&head| self.folded_record(head).is_some())
            .count()
    }

    /// Unfolds every group, so that the engine's next whole-block conversion takes the slow
    /// path (the differential test runs both paths on every step and compares them).
    #[cfg(any(test, feature = "fake"))]
    pub fn unfold_all(&mut self) {
        let heads: Vec<usize> = self.group_heads().collect();
        for head in heads {
            self.unfold(head);
        }
    }

    /// Overwrites the raw records of a folded group but its first (which readers never see)
    /// with `value`, so a test can tell whether anything wrote them.
    #[cfg(test)]
    pub(crate) fn scribble_on_folded(&mut self, head: usize, value: u64) {
        if self.folded_record(head).is_some() {
            if let Some(rest) = self
                .storage
                .records_mut()
                .get_mut(head + 1..head + GROUP_FRAMES)
            {
                rest.fill(FrameRecord(value));
            }
        }
    }

    /// Whether the raw records of the group but its first all hold `value`.
    #[cfg(test)]
    pub(crate) fn scribbled(&self, head: usize, value: u64) -> bool {
        self.storage
            .records()
            .get(head + 1..head + GROUP_FRAMES)
            .is_some_and(|rest| rest.iter().all(|record| record.0 == value))
    }

    /// Whole-group [`Self::set_owner`] of a folded group: one record written.
    pub(crate) fn set_group_owner(
        &mut self,
        head: usize,
        owner: DomainId,
        state: FrameState,
        rights: Rights,
        memory: MemoryType,
    ) -> bool {
        if self.folded_record(head).is_none() {
            return false;
        }
        let Some(record) = self.storage.records_mut().get_mut(head) else {
            return false;
        };
        Self::write_owner(record, owner, state, rights, memory);
        true
    }

    /// Whole-group borrower change of a folded group, which keeps its one borrower at most
    /// inline: `add` sets the inline borrower (there must be none), else the inline borrower
    /// `domain` is removed. Returns whether the group was changed.
    pub(crate) fn set_group_borrower(
        &mut self,
        head: usize,
        domain: DomainId,
        rights: Rights,
        add: bool,
    ) -> bool {
        let Some(current) = self.folded_record(head) else {
            return false;
        };
        let first = current.first_borrower().map(|(borrower, _)| borrower);
        let changed = match (add, first) {
            (true, None) => domain.index().is_some(),
            (false, Some(borrower)) => borrower == domain,
            _ => false,
        };
        let Some(record) = self.storage.records_mut().get_mut(head).filter(|_| changed) else {
            return false;
        };
        // Bit for bit what `add_borrower` and `remove_borrower` write into each frame's record.
        if add {
            record.set_field(20, 6, u64::from(domain.0) + 1);
            record.set_field(26, 3, u64::from(rights.bits()));
        } else {
            record.set_field(20, 6, 0);
        }
        true
    }

    /// Free side-table slots.
    pub fn free_borrower_slots(&self) -> usize {
        self.free_borrowers
    }

    /// Side-table slots that adding one borrower to the frame at `index` consumes (0 or 1).
    pub fn borrower_slots_needed(&self, index: usize) -> usize {
        usize::from(self.record_at(index).first_borrower().is_some())
    }

    /// The rights `domain` borrows the frame at `index` with, if it is a borrower.
    pub fn borrower_rights(&self, index: usize, domain: DomainId) -> Option<Rights> {
        let mut found = None;
        self.for_each_borrower(index, |borrower, rights| {
            if borrower == domain {
                found = Some(rights);
            }
        });
        found
    }

    /// Number of borrowers of the frame at `index`.
    pub fn borrower_count(&self, index: usize) -> usize {
        let mut count = 0;
        self.for_each_borrower(index, |_, _| count += 1);
        count
    }

    /// Calls `visit` for every borrower of the frame at `index`, first borrower first.
    pub fn for_each_borrower(&self, index: usize, mut visit: impl FnMut(DomainId, Rights)) {
        let record = self.record_at(index);
        if let Some((domain, rights)) = record.first_borrower() {
            visit(domain, rights);
        }
        let side_table = self.storage.borrowers();
        let mut link = record.link();
        // The chain is acyclic by construction; the bound keeps a corrupted one from hanging.
        for _ in 0..side_table.len() {
            let Some(borrower) = link.and_then(|link| side_table.get(usize::from(link))) else {
                break;
            };
            visit(
                DomainId(borrower.domain),
                Rights::from_bits_truncate(borrower.rights),
            );
            link = (borrower.next != NO_LINK).then_some(borrower.next);
        }
    }

    /// Makes `owner` the owner of the frame at `index`, in `state`.
    pub(crate) fn set_owner(
        &mut self,
        index: usize,
        owner: DomainId,
        state: FrameState,
        rights: Rights,
        memory: MemoryType,
    ) {
        let Some(record) = self.record_mut(index) else {
            return;
        };
        Self::write_owner(record, owner, state, rights, memory);
    }

    fn write_owner(
        record: &mut FrameRecord,
        owner: DomainId,
        state: FrameState,
        rights: Rights,
        memory: MemoryType,
    ) {
        record.set_field(0, 6, u64::from(owner.0) + 1);
        record.set_field(8, 3, u64::from(rights.bits()));
        record.set_field(11, 1, u64::from(memory == MemoryType::Device));
        Self::write_state(record, state);
    }

    /// Changes the state, keeping owner and borrowers.
    #[cfg(test)]
    pub(crate) fn set_state(&mut self, index: usize, state: FrameState) {
        if let Some(record) = self.record_mut(index) {
            Self::write_state(record, state);
        }
    }

    fn write_state(record: &mut FrameRecord, state: FrameState) {
        let value = match state {
            FrameState::Owned | FrameState::Free => 0,
            FrameState::SharedOwned => 1,
            FrameState::Lent => 2,
        };
        record.set_field(6, 2, value);
        if state == FrameState::Free {
            record.set_field(0, 6, 0);
        }
    }

    /// Adds a borrower. Refuses a duplicate or a full side table, changing nothing.
    pub(crate) fn add_borrower(
        &mut self,
        index: usize,
        domain: DomainId,
        rights: Rights,
    ) -> Result<(), Error> {
        if index >= self.frames || domain.index().is_none() {
            return Err(Error::InvalidRange);
        }
        if self.borrower_rights(index, domain).is_some() {
            return Err(Error::AlreadyBorrowed);
        }
        let record = self.record_at(index);
        if record.first_borrower().is_none() {
            if let Some(record) = self.record_mut(index) {
                record.set_field(20, 6, u64::from(domain.0) + 1);
                record.set_field(26, 3, u64::from(rights.bits()));
            }
            return Ok(());
        }
        let slot = self.free_borrower_head;
        let Some(entry) = self.storage.borrowers_mut().get_mut(usize::from(slot)) else {
            return Err(Error::BorrowerTableFull);
        };
        let next_free = entry.next;
        *entry = BorrowerRecord {
            domain: domain.0,
            rights: rights.bits(),
            next: record.link().unwrap_or(NO_LINK),
        };
        self.free_borrower_head = next_free;
        self.free_borrowers -= 1;
        if let Some(record) = self.record_mut(index) {
            record.set_link(Some(slot));
        }
        Ok(())
    }

    /// Removes a borrower; returns whether it was one.
    pub(crate) fn remove_borrower(&mut self, index: usize, domain: DomainId) -> bool {
        if index >= self.frames {
            return false;
        }
        let record = self.record_at(index);
        if record.first_borrower().map(|(first, _)| first) == Some(domain) {
            // Promote the first chained borrower, if any, into the inline slot.
            let link = record.link();
            let next =
                link.and_then(|link| self.storage.borrowers().get(usize::from(link)).copied());
            let Some(record) = self.record_mut(index) else {
                return false;
            };
            match (link, next) {
                (Some(link), Some(next)) => {
                    record.set_field(20, 6, u64::from(next.domain) + 1);
                    record.set_field(26, 3, u64::from(next.rights));
                    record.set_link((next.next != NO_LINK).then_some(next.next));
                    self.free_slot(link);
                }
                _ => record.set_field(20, 6, 0),
            }
            return true;
        }
        let mut previous: Option<u16> = None;
        let mut link = record.link();
        for _ in 0..self.storage.borrowers().len() {
            let Some(current) = link else {
                return false;
            };
            let Some(entry) = self.storage.borrowers().get(usize::from(current)).copied() else {
                return false;
            };
            if entry.domain == domain.0 {
                let after = (entry.next != NO_LINK).then_some(entry.next);
                match previous {
                    None => {
                        if let Some(record) = self.record_mut(index) {
                            record.set_link(after);
                        }
                    }
                    Some(previous) => {
                        if let Some(previous) =
                            self.storage.borrowers_mut().get_mut(usize::from(previous))
                        {
                            previous.next = entry.next;
                        }
                    }
                }
                self.free_slot(current);
                return true;
            }
            previous = Some(current);
            link = after_link(entry.next);
        }
        false
    }

    fn free_slot(&mut self, slot: u16) {
        let head = self.free_borrower_head;
        if let Some(entry) = self.storage.borrowers_mut().get_mut(usize::from(slot)) {
            *entry = BorrowerRecord {
                next: head,
                ..BorrowerRecord::UNUSED
            };
            self.free_borrower_head = slot;
            self.free_borrowers += 1;
        }
    }

    /// Takes a pin (an in-flight use such as device DMA); refused at 255.
    pub fn pin(&mut self, pa: PhysAddr) -> Result<(), Error> {
        let index = self.index(pa).ok_or(Error::NotTracked)?;
        let record = self.record_mut(index).ok_or(Error::NotTracked)?;
        let pins = record.pins();
        if pins == u8::MAX || record.owner().is_none() {
            return Err(Error::WrongState);
        }
        record.set_field(12, 8, u64::from(pins) + 1);
        Ok(())
    }

    /// Drops a pin.
    pub fn unpin(&mut self, pa: PhysAddr) -> Result<(), Error> {
        let index = self.index(pa).ok_or(Error::NotTracked)?;
        let record = self.record_mut(index).ok_or(Error::NotTracked)?;
        let pins = record.pins();
        if pins == 0 {
            return Err(Error::WrongState);
        }
        record.set_field(12, 8, u64::from(pins) - 1);
        Ok(())
    }
}

/// A side-table `next` field as a link.
fn after_link(next: u16) -> Option<u16> {
    (next != NO_LINK).then_some(next)
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test fails loudly on an unexpected error"
)]
mod tests {
    //! Mutation check: `cargo xtask mutants hypervisor/core/src/frame_table.rs`. Explained
    //! equivalent mutants:
    //!
    //! equivalent mutant: hypervisor/core/src/frame_table.rs:93:35: replace | with ^ in FrameRecord::set_field -- the left operand has the field's bits cleared by `!mask` and the right one has only the field's bits (`& mask`): they share no bit, so `|` and `^` agree.
    //! equivalent mutant: hypervisor/core/src/frame_table.rs:481:40: replace | with ^ in FrameTable<S>::fold -- the line is reached only when the first record's FOLDED bit is clear (checked above), so setting it with `|` or flipping it with `^` gives the same record.

    extern crate std;
    use super::*;
    use std::vec::Vec;

    type Table = FrameTable<VecStorage>;

    fn table() -> Table {
        FrameTable::new(VecStorage::new(8, 4))
    }

    fn borrowers(table: &Table, index: usize) -> Vec<(u8, u8)> {
        let mut list = Vec::new();
        table.for_each_borrower(index, |domain, rights| list.push((domain.0, rights.bits())));
        list.sort_unstable();
        list
    }

    #[test]
    fn record_is_eight_bytes() {
        assert_eq!(size_of::<FrameRecord>(), 8);
    }

    #[test]
    fn owner_state_and_rights_round_trip() {
        let mut table = table();
        table.init(PhysAddr(0x4000_0000), 8).unwrap();
        assert_eq!(
            table.record(PhysAddr(0x4000_1000)).unwrap().state(),
            FrameState::Free
        );
        table.set_owner(
            1,
            DomainId(62),
            FrameState::SharedOwned,
            Rights::READ,
            MemoryType::Device,
        );
        let record = table.record(PhysAddr(0x4000_1abc)).unwrap();
        assert_eq!(record.owner(), Some(DomainId(62)));
        assert_eq!(record.state(), FrameState::SharedOwned);
        assert_eq!(record.owner_rights(), Rights::READ);
        assert_eq!(record.memory(), MemoryType::Device);
        assert_eq!(table.record(PhysAddr(0x4000_8000)), None);
        table.set_state(1, FrameState::Free);
        assert_eq!(table.record_at(1).owner(), None);
    }

    #[test]
    fn many_borrowers_use_the_side_table_and_overflow_is_an_error() {
        let mut table = table();
        table.init(PhysAddr(0x4000_0000), 8).unwrap();
        table.set_owner(
            0,
            DomainId(0),
            FrameState::SharedOwned,
            Rights::ALL,
            MemoryType::Normal,
        );
        for domain in 1..=5 {
            table
                .add_borrower(0, DomainId(domain), Rights::READ)
                .unwrap();
        }
        assert_eq!(table.free_borrower_slots(), 0);
        assert_eq!(
            table.add_borrower(0, DomainId(6), Rights::READ),
            Err(Error::BorrowerTableFull)
        );
        assert_eq!(
            table.add_borrower(0, DomainId(3), Rights::READ),
            Err(Error::AlreadyBorrowed)
        );
        assert_eq!(
            borrowers(&table, 0),
            [(1, 1), (2, 1), (3, 1), (4, 1), (5, 1)]
        );
        // A second frame can still take an inline borrower.
        table
            .add_borrower(1, DomainId(9), Rights::READ_WRITE)
            .unwrap();
        assert!(table.remove_borrower(0, DomainId(1)));
        assert!(table.remove_borrower(0, DomainId(4)));
        assert!(!table.remove_borrower(0, DomainId(4)));
        assert_eq!(borrowers(&table, 0), [(2, 1), (3, 1), (5, 1)]);
        assert_eq!(table.free_borrower_slots(), 2);
        for domain in [2, 3, 5] {
            assert!(table.remove_borrower(0, DomainId(domain)));
        }
        assert_eq!(table.borrower_count(0), 0);
        assert_eq!(table.free_borrower_slots(), 4);
        assert_eq!(borrowers(&table, 1), [(9, 3)]);
    }

    #[test]
    fn init_resets_records_and_the_borrower_chain_in_place() {
        let mut table = table();
        table.init(PhysAddr(0x4000_0000), 8).unwrap();
        table.set_owner(
            0,
            DomainId(0),
            FrameState::SharedOwned,
            Rights::ALL,
            MemoryType::Normal,
        );
        for domain in 1..=5 {
            table
                .add_borrower(0, DomainId(domain), Rights::READ)
                .unwrap();
        }
        table.init(PhysAddr(0x5000_0000), 4).unwrap();
        assert_eq!(table.record_at(0), FrameRecord::FREE);
        assert_eq!(table.free_borrower_slots(), 4);
        assert_eq!(table.index(PhysAddr(0x5000_3000)), Some(3));
        assert_eq!(table.index(PhysAddr(0x5000_4000)), None);
        assert_eq!(
            table.init(PhysAddr(0x5000_0000), 9),
            Err(Error::InvalidRange)
        );
        table.set_owner(
            0,
            DomainId(0),
            FrameState::SharedOwned,
            Rights::ALL,
            MemoryType::Normal,
        );
        for domain in 1..=5 {
            table
                .add_borrower(0, DomainId(domain), Rights::READ)
                .unwrap();
        }
        assert_eq!(table.borrower_count(0), 5);
    }

    proptest::proptest! {
        /// Random borrower additions and removals agree with a plain map, never panic, and a
        /// full side table is an error that changes nothing.
        #[test]
        fn borrower_lists_match_a_plain_model(
            steps in proptest::collection::vec((0usize..8, 0u8..63, 0u8..8, proptest::bool::ANY), 1..200)
        ) {
            let mut table = table();
            table.init(PhysAddr(0x4000_0000), 8).unwrap();
            let mut model: std::collections::BTreeMap<(usize, u8), u8> = Default::default();
            for (frame, domain, rights, add) in steps {
                let rights = Rights::from_bits_truncate(rights);
                if add {
                    let before = table.clone();
                    match table.add_borrower(frame, DomainId(domain), rights) {
                        Ok(()) => {
                            proptest::prop_assert!(model.insert((frame, domain), rights.bits()).is_none());
                        }
                        Err(Error::AlreadyBorrowed) => {
                            proptest::prop_assert!(model.contains_key(&(frame, domain)));
                            proptest::prop_assert_eq!(&table, &before);
                        }
                        Err(Error::BorrowerTableFull) => {
                            proptest::prop_assert_eq!(table.free_borrower_slots(), 0);
                            proptest::prop_assert_eq!(&table, &before);
                        }
                        Err(other) => proptest::prop_assert!(false, "unexpected {:?}", other),
                    }
                } else {
                    let removed = table.remove_borrower(frame, DomainId(domain));
                    proptest::prop_assert_eq!(removed, model.remove(&(frame, domain)).is_some());
                }
                let used: usize = (0..8).map(|index| table.borrower_count(index).saturating_sub(1)).sum();
                proptest::prop_assert_eq!(used + table.free_borrower_slots(), 4);
            }
            for frame in 0..8 {
                let expected: Vec<(u8, u8)> = model
                    .iter()
                    .filter(|((index, _), _)| *index == frame)
                    .map(|((_, domain), rights)| (*domain, *rights))
                    .collect();
                proptest::prop_assert_eq!(borrowers(&table, frame), expected);
            }
        }
    }

    #[test]
    fn pins_count_up_and_down() {
        let mut table = table();
        table.init(PhysAddr(0x4000_0000), 8).unwrap();
        assert_eq!(table.pin(PhysAddr(0x4000_0000)), Err(Error::WrongState));
        table.set_owner(
            0,
            DomainId(0),
            FrameState::Owned,
            Rights::ALL,
            MemoryType::Normal,
        );
        table.pin(PhysAddr(0x4000_0000)).unwrap();
        assert_eq!(table.record_at(0).pins(), 1);
        table.unpin(PhysAddr(0x4000_0000)).unwrap();
        assert_eq!(table.unpin(PhysAddr(0x4000_0000)), Err(Error::WrongState));
        assert_eq!(table.pin(PhysAddr(0x5000_0000)), Err(Error::NotTracked));
    }

    /// 1536 frames from 1 MiB below a 2 MiB boundary: a partial group (256 frames), two whole
    /// groups (heads 256 and 768), a partial group (256 frames).
    fn groups() -> Table {
        let mut table = FrameTable::new(VecStorage::new(1536, 4));
        table.init(PhysAddr(0x4010_0000), 1536).unwrap();
        for index in 0..1536 {
            table.set_owner(
                index,
                DomainId(3),
                FrameState::Owned,
                Rights::READ_WRITE,
                MemoryType::Normal,
            );
        }
        table
    }

    fn hash_of(table: &Table) -> u64 {
        use core::hash::{Hash, Hasher};
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        table.hash(&mut hasher);
        hasher.finish()
    }

    #[test]
    fn only_whole_uniform_groups_fold() {
        let mut table = groups();
        assert_eq!(table.group_heads().collect::<Vec<_>>(), [256, 768]);
        // Not a head, and heads of partial groups.
        assert!(!table.fold(0) && !table.fold(257) && !table.fold(1280));
        table.set_owner(
            1000,
            DomainId(4),
            FrameState::Owned,
            Rights::READ_WRITE,
            MemoryType::Normal,
        );
        assert!(table.fold(256));
        assert!(!table.fold(768), "frame 1000 differs");
        assert_eq!(table.folded_groups(), 1);
        // A borrower chained from the side table (a second borrower) keeps a group unfolded.
        let mut chained = groups();
        for index in 256..768 {
            chained
                .add_borrower(index, DomainId(5), Rights::READ)
                .unwrap();
        }
        assert!(chained.fold(256), "one inline borrower folds");
        chained
            .add_borrower(300, DomainId(6), Rights::READ)
            .unwrap();
        assert_eq!(chained.folded_groups(), 0, "a write unfolds");
        assert!(!chained.fold(256));
    }

    #[test]
    fn folding_is_invisible_and_a_single_write_unfolds() {
        let plain = groups();
        let mut folded = groups();
        assert!(folded.fold(256) && folded.fold(768));
        assert!(folded == plain && hash_of(&folded) == hash_of(&plain));
        for index in [0, 255, 256, 257, 767, 768, 1279, 1535] {
            assert_eq!(folded.record_at(index), plain.record_at(index), "{index}");
        }
        // One frame changes; the rest of its group reads as before, the other group stays folded.
        let mut expected = plain.clone();
        for table in [&mut folded, &mut expected] {
            table.pin(PhysAddr(0x4010_0000 + 300 * PAGE_SIZE)).unwrap();
        }
        assert_eq!(folded.folded_groups(), 1);
        assert!(folded == expected);
        assert_eq!(folded.record_at(300).pins(), 1);
        assert_eq!(folded.record_at(301).pins(), 0);
    }

    #[test]
    fn group_writes_equal_the_same_writes_frame_by_frame() {
        let mut folded = groups();
        let mut plain = groups();
        assert!(folded.fold(768));
        assert!(folded.set_group_owner(
            768,
            DomainId(7),
            FrameState::SharedOwned,
            Rights::READ,
            MemoryType::Device
        ));
        assert!(folded.set_group_borrower(768, DomainId(3), Rights::READ, true));
        // Refused: a second inline borrower, removing one that is not there, an unfolded group.
        assert!(!folded.set_group_borrower(768, DomainId(4), Rights::READ, true));
        assert!(!folded.set_group_borrower(768, DomainId(4), Rights::READ, false));
        assert!(!folded.set_group_owner(
            256,
            DomainId(7),
            FrameState::Owned,
            Rights::READ,
            MemoryType::Normal
        ));
        for index in 768..1280 {
            plain.set_owner(
                index,
                DomainId(7),
                FrameState::SharedOwned,
                Rights::READ,
                MemoryType::Device,
            );
            plain
                .add_borrower(index, DomainId(3), Rights::READ)
                .unwrap();
        }
        assert!(folded == plain);
        assert_eq!(folded.folded_groups(), 1);
        assert!(folded.set_group_borrower(768, DomainId(3), Rights::empty(), false));
        for index in 768..1280 {
            assert!(plain.remove_borrower(index, DomainId(3)));
        }
        assert!(folded == plain);
        // Raw bit for bit, once unfolded: the group writes leave what the frame writes leave.
        folded.unfold_all();
        assert_eq!(folded.storage.records, plain.storage.records);
    }

    #[test]
    fn group_heads_follow_the_physical_alignment() {
        // 2048 frames from 512 KiB past a 2 MiB boundary: the first whole group starts 384
        // frames in (1.5 MiB on), and the partial group at the end is left out.
        let mut table = FrameTable::new(VecStorage::new(2048, 0));
        table.init(PhysAddr(0x4008_0000), 2048).unwrap();
        assert_eq!(table.group_heads().collect::<Vec<_>>(), [384, 896, 1408]);
        assert!(table.fold(384) && !table.fold(128));
    }

    #[test]
    fn tables_differing_in_any_one_part_are_unequal() {
        use core::hash::{Hash, Hasher};
        let hash_of = |table: &Table| {
            let mut hasher = std::collections::hash_map::DefaultHasher::new();
            table.hash(&mut hasher);
            hasher.finish()
        };
        let mut base = table();
        base.init(PhysAddr(0x4000_0000), 8).unwrap();
        base.add_borrower(0, DomainId(1), Rights::READ).unwrap();
        base.add_borrower(0, DomainId(2), Rights::READ).unwrap();
        let mut variants = Vec::new();
        let mut moved = base.clone();
        moved.base = PhysAddr(0x4000_1000);
        variants.push(moved);
        let mut fewer = base.clone();
        fewer.frames = 7;
        variants.push(fewer);
        let mut head = base.clone();
        head.free_borrower_head = 3;
        variants.push(head);
        let mut count = base.clone();
        count.free_borrowers -= 1;
        variants.push(count);
        // The chained borrower's rights: only the side table differs.
        let mut side = base.clone();
        assert!(side.remove_borrower(0, DomainId(2)));
        side.add_borrower(0, DomainId(2), Rights::READ_WRITE)
            .unwrap();
        variants.push(side);
        let mut record = base.clone();
        record.set_owner(
            7,
            DomainId(4),
            FrameState::Owned,
            Rights::READ,
            MemoryType::Normal,
        );
        variants.push(record);
        for (index, variant) in variants.iter().enumerate() {
            assert!(*variant != base, "variant {index}");
            assert_ne!(hash_of(variant), hash_of(&base), "variant {index}");
        }
        assert!(base.clone() == base);
    }

    #[test]
    fn init_refuses_what_does_not_fit_and_chains_the_side_table() {
        let mut table = table();
        assert_eq!(
            table.init(PhysAddr(0x4000_0000), 9),
            Err(Error::InvalidRange)
        );
        let top = PhysAddr(!(PAGE_SIZE - 1));
        assert_eq!(table.init(top, 2), Err(Error::InvalidRange));
        table.init(PhysAddr(0x4000_0000), 8).unwrap();
        assert_eq!(table.end(), PhysAddr(0x4000_8000));
        let links: Vec<u16> = table
            .storage
            .borrowers
            .iter()
            .map(|entry| entry.next)
            .collect();
        assert_eq!(links, [1, 2, 3, NO_LINK]);
        assert_eq!((table.free_borrower_head, table.free_borrowers), (0, 4));
        let mut bare = FrameTable::new(VecStorage::new(8, 0));
        bare.init(PhysAddr(0x4000_0000), 8).unwrap();
        assert_eq!((bare.free_borrower_head, bare.free_borrowers), (NO_LINK, 0));
    }

    #[test]
    fn a_borrower_outside_the_table_or_not_a_domain_is_refused() {
        let mut table = table();
        table.init(PhysAddr(0x4000_0000), 8).unwrap();
        let before = table.clone();
        assert_eq!(
            table.add_borrower(8, DomainId(1), Rights::READ),
            Err(Error::InvalidRange)
        );
        assert_eq!(
            table.add_borrower(0, DomainId(63), Rights::READ),
            Err(Error::InvalidRange)
        );
        assert!(table == before);
        table.add_borrower(7, DomainId(62), Rights::READ).unwrap();
        assert_eq!(borrowers(&table, 7), [(62, Rights::READ.bits())]);
    }

    #[test]
    fn records_print_and_dump_what_they_hold() {
        let mut table = table();
        table.init(PhysAddr(0x4000_0000), 8).unwrap();
        table.set_owner(
            2,
            DomainId(5),
            FrameState::Lent,
            Rights::READ,
            MemoryType::Device,
        );
        let record = table.record_at(2);
        // Owner 5 + 1, state 2 (Lent), rights READ, Device.
        let raw = 6 | 2 << 6 | u64::from(Rights::READ.bits()) << 8 | 1 << 11;
        assert_eq!(record.raw(), raw);
        assert_eq!(FrameRecord::FREE.raw(), 0);
        let printed = std::format!("{record:?}");
        assert!(
            printed.contains("DomainId(5)") && printed.contains("Lent"),
            "{printed}"
        );
    }

    #[test]
    fn static_storage_lends_its_slices_whole() {
        let records = std::vec![FrameRecord::FREE; 8].leak();
        let side = std::vec![BorrowerRecord::default(); 4].leak();
        let mut table = FrameTable::new(StaticStorage::new(records, side));
        table.init(PhysAddr(0x4000_0000), 8).unwrap();
        table.set_owner(
            7,
            DomainId(1),
            FrameState::SharedOwned,
            Rights::READ,
            MemoryType::Normal,
        );
        table.add_borrower(7, DomainId(2), Rights::READ).unwrap();
        table.add_borrower(7, DomainId(3), Rights::READ).unwrap();
        assert_eq!(table.record_at(7).owner(), Some(DomainId(1)));
        assert_eq!(table.borrower_count(7), 2);
        assert_eq!(table.free_borrower_slots(), 3);
        assert_eq!(
            FrameTable::new(StaticStorage::EMPTY).init(PhysAddr(0), 1),
            Err(Error::InvalidRange)
        );
    }
}
