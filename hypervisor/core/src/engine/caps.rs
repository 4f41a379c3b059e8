//! One domain's frame capabilities, read from the frame table (the capability derivation tree)
//! and the domain's own stage-2 table, as runs of contiguous pages.

use super::Engine;
use crate::addr::{Ipa, PhysAddr, PAGE_SIZE};
use crate::arch::PhysMemory;
use crate::descriptor::{level_span, Rights};
use crate::domain::{DomainId, Domains};
use crate::error::Error;
use crate::frame_table::{FrameState, FrameStorage};
use crate::walk::{next_entry, LeafKind};

/// How a domain holds a frame capability.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CapHeld {
    /// The original capability: the domain owns the frame and maps it.
    Original,
    /// A capability derived from the owner's: the domain borrows the frame.
    Derived,
    /// The original capability of a frame the domain lent away: no access until reclaimed.
    LentAway,
}

/// A run of one domain's frame capabilities: contiguous IPAs over contiguous frames, held the
/// same way, with the same rights and the same peer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct CapRun {
    /// First IPA in the domain's address space.
    pub ipa: Ipa,
    /// Its frame.
    pub pa: PhysAddr,
    /// Pages in the run.
    pub pages: u64,
    /// How the capabilities are held.
    pub held: CapHeld,
    /// The domain's rights (for a lent-away frame, the rights it gets back on reclaim).
    pub rights: Rights,
    /// The other holder: the owner of a derived capability; the lowest-numbered borrower of an
    /// original one shared or lent away; none for a frame nobody else holds.
    pub peer: Option<DomainId>,
}

/// One page's capability.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Cap {
    ipa: Ipa,
    pa: PhysAddr,
    held: CapHeld,
    rights: Rights,
    peer: Option<DomainId>,
}

impl<S: FrameStorage> Engine<S> {
    /// `domain`'s capability run that contains `from` (reported from `from` on), else the
    /// first one above it; `None` when there is none. Memory outside the frame table (device
    /// pass-through) is no frame capability and is skipped. `from` must be page aligned.
    pub fn frame_caps<C>(
        &self,
        memory: &impl PhysMemory,
        domains: &Domains<C>,
        domain: DomainId,
        from: Ipa,
    ) -> Result<Option<CapRun>, Error> {
        let vspace = domains.vspace(domain).ok_or(Error::NoSuchDomain)?;
        if !from.is_page_aligned() {
            return Err(Error::Misaligned);
        }
        if !from.is_in_ipa_space() {
            return Err(Error::IpaOutOfRange);
        }
        let root = vspace.table.root();
        let mut run: Option<CapRun> = None;
        let mut cursor = from;
        while let Some(entry) = next_entry(memory, root, cursor) {
            let span = level_span(entry.level);
            let end = entry.ipa.get() + span;
            let start = entry.ipa.get().max(cursor.get());
            for ipa in (start..end).step_by(PAGE_SIZE as usize) {
                let ipa = Ipa(ipa);
                let Some(cap) = self.cap_at(domain, entry.kind, entry.ipa, ipa) else {
                    if run.is_some() {
                        return Ok(run);
                    }
                    continue;
                };
                match &mut run {
                    None => {
                        run = Some(CapRun {
                            ipa: cap.ipa,
                            pa: cap.pa,
                            pages: 1,
                            held: cap.held,
                            rights: cap.rights,
                            peer: cap.peer,
                        });
                    }
                    Some(current) => {
                        let next_ipa = current.ipa.get() + current.pages * PAGE_SIZE;
                        let next_pa = current.pa.get() + current.pages * PAGE_SIZE;
                        let continues = cap.ipa.get() == next_ipa
                            && cap.pa.get() == next_pa
                            && cap.held == current.held
                            && cap.rights == current.rights
                            && cap.peer == current.peer;
                        if !continues {
                            return Ok(run);
                        }
                        current.pages += 1;
                    }
                }
            }
            cursor = Ipa(end);
        }
        Ok(run)
    }

    /// The capability `domain` holds at `ipa`, inside the entry starting at `entry_ipa`.
    fn cap_at(&self, domain: DomainId, kind: LeafKind, entry_ipa: Ipa, ipa: Ipa) -> Option<Cap> {
        let offset = ipa.get() - entry_ipa.get();
        let (pa, annotated) = match kind {
            LeafKind::Mapped(leaf) => (PhysAddr(leaf.pa.get() + offset), false),
            LeafKind::LentAway(pa) => (pa, true),
            _ => return None,
        };
        let index = self.frames.index(pa)?;
        let record = self.frames.record_at(index);
        let mut lowest_borrower: Option<DomainId> = None;
        let mut own_rights = None;
        self.frames.for_each_borrower(index, |borrower, rights| {
            if borrower == domain {
                own_rights = Some(rights);
            } else if lowest_borrower.is_none_or(|lowest| borrower < lowest) {
                lowest_borrower = Some(borrower);
            }
        });
        let owner = record.owner()?;
        let (held, rights, peer) = if owner == domain {
            let held = match (record.state(), annotated) {
                (FrameState::Lent, true) => CapHeld::LentAway,
                (FrameState::Owned | FrameState::SharedOwned, false) => CapHeld::Original,
                _ => return None,
            };
            (held, record.owner_rights(), lowest_borrower)
        } else if !annotated {
            (CapHeld::Derived, own_rights?, Some(owner))
        } else {
            return None;
        };
        Some(Cap {
            ipa,
            pa,
            held,
            rights,
            peer,
        })
    }
}
