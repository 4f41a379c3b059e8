//! Teardown of a dead guest: everything it maps goes back where it came from.

use super::plan::Request;
use super::Engine;
use crate::addr::{Ipa, PAGE_SIZE};
use crate::arch::Stage2Arch;
use crate::descriptor::{level_span, PageState};
use crate::domain::{DomainId, Domains};
use crate::error::Error;
use crate::fatal::FatalReason;
use crate::frame_table::FrameStorage;
use crate::ownership::Operation;
use crate::stage2::Entry;
use crate::walk::{next_entry, LeafKind};

impl<S: FrameStorage> Engine<S> {
    /// Tears a guest down: it dies, its owned frames are zeroed and returned to the host, frames
    /// it borrowed are unmapped (host frames stay intact), device pass-through is unmapped.
    ///
    /// Each leaf is its own all-or-nothing step. A step only removes the guest's mapping and
    /// gives the frame back to its host's window: it needs a table page only where the host's
    /// window has no table left for it (the host gave the frames away page by page and its
    /// emptied table went back to the pool), and the guest's tables it empties go back to the
    /// pool as it goes. If a step is refused (the pool is empty just there, or a frame another
    /// domain still borrows), the rest is still returned, the first error is reported, the
    /// guest stays dead, and calling again continues where it stopped.
    pub fn teardown<C>(
        &mut self,
        arch: &mut impl Stage2Arch,
        domains: &mut Domains<C>,
        guest: DomainId,
    ) -> Result<(), Error> {
        let vspace = &mut domains.get_mut(guest).ok_or(Error::NoSuchDomain)?.vspace;
        let link = vspace.link.ok_or(Error::NotLinked)?;
        vspace.alive = false;
        self.epoch += 1;
        let mut table = vspace.table;
        let mut from = Ipa(0);
        let mut result = Ok(());
        while let Some(entry) = next_entry(arch, table.root(), from) {
            let span = level_span(entry.level);
            from = Ipa(entry.ipa.get() + span);
            let LeafKind::Mapped(leaf) = entry.kind else {
                continue;
            };
            if leaf.state == PageState::Passthrough || self.frames.index(leaf.pa).is_none() {
                // A removal never allocates: the leaf is unmapped whole (a block with one
                // level-2 descriptor), so nothing is split.
                let Ok(mut reservation) = self.pool.reserve(0) else {
                    arch.fatal(FatalReason::CommitInvariant)
                };
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
                if done.is_err() {
                    arch.fatal(FatalReason::CommitInvariant);
                }
                table.coalesce(arch, &mut self.pool, entry.ipa);
                continue;
            }
            let step = Request::new(
                Operation::Teardown,
                link.host,
                guest,
                entry.ipa,
                span / PAGE_SIZE,
            );
            // Keep going on a refusal (for example a frame outside the window): the rest of the
            // guest is still returned, and the first error is reported.
            result = result.and(self.convert(arch, domains, step));
        }
        arch.invalidate_vmid(table.vmid());
        result
    }
}
