//! Boot-time mappings: a domain's initial stage 2, built from the boot information through the
//! engine, so that the frame table and the descriptors agree from the first instruction (I3).

use super::Engine;
use crate::addr::{Ipa, PhysAddr, IPA_BITS, PAGES_PER_BLOCK, PAGE_SIZE, PA_BITS};
use crate::arch::Stage2Arch;
use crate::descriptor::{Leaf, MemoryType, PageState, Rights};
use crate::domain::{DomainId, Domains};
use crate::error::Error;
use crate::fatal::FatalReason;
use crate::frame_table::{FrameState, FrameStorage};
use crate::stage2::Entry;

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

impl<S: FrameStorage> Engine<S> {
    /// Builds part of a domain's initial stage-2 from boot info. All-or-nothing.
    pub fn map_at_boot<C>(
        &mut self,
        arch: &mut impl Stage2Arch,
        domains: &Domains<C>,
        mapping: &BootMapping,
    ) -> Result<(), Error> {
        let vspace = *domains.vspace(mapping.domain).ok_or(Error::NoSuchDomain)?;
        if !mapping.ipa.is_page_aligned() || !mapping.pa.is_page_aligned() {
            return Err(Error::Misaligned);
        }
        if mapping.pages == 0 {
            return Err(Error::InvalidRange);
        }
        if mapping.rights.is_empty() {
            return Err(Error::InvalidRights);
        }
        let ipa_end = mapping
            .ipa
            .checked_add_pages(mapping.pages)
            .ok_or(Error::InvalidRange)?;
        let pa_end = mapping
            .pa
            .checked_add_pages(mapping.pages)
            .ok_or(Error::InvalidRange)?;
        if ipa_end.get() > 1 << IPA_BITS || pa_end.get() > 1 << PA_BITS {
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
            if vspace.table.entry(arch, ipa) != Entry::Empty {
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
        let needed = vspace.table.tables_needed(arch, mapping.ipa, mapping.pages);
        let mut reservation = self.pool.reserve(needed)?;
        // Commit: cannot fail, everything above was counted.
        self.epoch += 1;
        let mut table = vspace.table;
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
            let (done, step) = if let Some(state) = block_state {
                for offset in 0..PAGES_PER_BLOCK {
                    let frame = PhysAddr(pa.get() + offset * PAGE_SIZE);
                    self.record_boot_frame(arch, mapping, frame);
                }
                // A block mapped whole at boot converts whole in O(1) (a folded frame group).
                if let Some(head) = self.frames.index(pa) {
                    self.frames.fold(head);
                }
                let leaf = Leaf {
                    pa,
                    rights: mapping.rights,
                    memory: mapping.memory,
                    state,
                };
                let done = table.set_block(arch, &mut self.pool, &mut reservation, ipa, Some(leaf));
                (done, PAGES_PER_BLOCK)
            } else {
                let state = self.record_boot_frame(arch, mapping, pa);
                let leaf = Leaf {
                    pa,
                    rights: mapping.rights,
                    memory: mapping.memory,
                    state,
                };
                let entry = Entry::Mapped(leaf);
                let done = table.set_page(arch, &mut self.pool, &mut reservation, ipa, entry);
                (done, 1)
            };
            if done.is_err() {
                arch.fatal(FatalReason::CommitInvariant);
            }
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
    fn record_boot_frame(
        &mut self,
        arch: &mut impl Stage2Arch,
        mapping: &BootMapping,
        pa: PhysAddr,
    ) -> PageState {
        let state = self.boot_state(mapping, pa);
        let Some(index) = self.frames.index(pa) else {
            return state;
        };
        self.boot_frames = if self.boot_frames.0 == self.boot_frames.1 {
            (index, index + 1)
        } else {
            (
                self.boot_frames.0.min(index),
                self.boot_frames.1.max(index + 1),
            )
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
                if self
                    .frames
                    .add_borrower(index, mapping.domain, mapping.rights)
                    .is_err()
                {
                    // Prepare counted the borrower slots.
                    arch.fatal(FatalReason::CommitInvariant);
                }
            }
        }
        state
    }
}
