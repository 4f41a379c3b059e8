//! The commit step: applies a prepared [`Plan`] run by run, without deciding anything again.

use super::plan::{Pair, Plan, PlanHead, Run};
use super::Engine;
use crate::addr::{Ipa, BLOCK_SIZE, PAGE_SIZE};
use crate::arch::Stage2Arch;
use crate::descriptor::{Leaf, PageState, Rights};
use crate::domain::{ConversionMode, DomainId};
use crate::error::Error;
use crate::fatal::FatalReason;
use crate::frame_table::FrameStorage;
use crate::ownership::{Holder, OwnerRights, Side};
use crate::stage2::{Entry, Stage2Table};
use crate::table_pool::Reservation;

impl<S: FrameStorage> Engine<S> {
    /// Commit step: applies `plan`, which [`Engine::prepare`] made from the current state. It
    /// cannot fail: the plan counted every table page and borrower slot it takes. A plan made
    /// on another state, or a count that falls short (a bug), halts the hypervisor
    /// ([`FatalReason::CommitInvariant`]) rather than leave a half-applied request behind.
    pub fn commit(&mut self, arch: &mut impl Stage2Arch, plan: Plan) {
        self.commit_runs(arch, &plan.head, &plan.runs);
    }

    /// [`Self::commit`] of a plan's head and runs, wherever they are.
    pub(super) fn commit_runs(
        &mut self,
        arch: &mut impl Stage2Arch,
        plan: &PlanHead,
        runs: &[Run],
    ) {
        if plan.epoch != self.epoch {
            arch.fatal(FatalReason::CommitInvariant);
        }
        let Ok(mut reservation) = self.pool.reserve(plan.tables) else {
            arch.fatal(FatalReason::CommitInvariant)
        };
        self.epoch += 1;
        let pair = plan.pair;
        let mut guest_table = pair.guest_table;
        let mut host_table = pair.host_table;
        let mut page = 0;
        for run in runs {
            let first = Ipa(plan.first.get() + page * PAGE_SIZE);
            if plan.block {
                self.commit_block(arch, &pair, run, first, &mut reservation);
            } else {
                for offset in 0..u64::from(run.pages) {
                    let ipa = Ipa(first.get() + offset * PAGE_SIZE);
                    let frame = run.frame as usize + offset as usize;
                    let tables = (&mut guest_table, &mut host_table);
                    self.commit_page(arch, &pair, run, frame, ipa, tables, &mut reservation);
                }
            }
            page += u64::from(run.pages);
        }
        // Coalesce every touched 2 MiB region that became uniform again, and give back the
        // tables that map nothing any more.
        let bytes = page * PAGE_SIZE;
        self.coalesce_range(arch, &mut guest_table, plan.first, bytes);
        if pair.link.mode == ConversionMode::Split {
            self.coalesce_range(arch, &mut guest_table, plan.first.shared_alias(), bytes);
        }
        if let Some(host_first) = pair.link.window.host_ipa(plan.first) {
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
            block = Ipa(block.get() + BLOCK_SIZE);
        }
    }

    /// The leaf a side gets for frame `frame` in `state`, from the frame table as it is after
    /// the frame's update.
    fn leaf_for(&self, frame: usize, domain: DomainId, state: PageState) -> Leaf {
        let record = self.frames.record_at(frame);
        let rights = match state {
            PageState::SharedBorrowed => self
                .frames
                .borrower_rights(frame, domain)
                .unwrap_or(Rights::READ),
            _ => record.owner_rights(),
        };
        Leaf {
            pa: self.frames.frame_address(frame),
            rights,
            memory: record.memory(),
            state,
        }
    }

    /// Applies one page's transition to the frame table (between removals and new mappings).
    fn update_frame(&mut self, arch: &mut impl Stage2Arch, pair: &Pair, run: &Run, frame: usize) {
        let transition = run.transition;
        if transition.zero {
            // Every mapping that leaves with the frame was removed and invalidated already.
            arch.zero_page(self.frames.frame_address(frame));
        }
        let record = self.frames.record_at(frame);
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
            .set_owner(frame, owner, transition.state, rights, record.memory());
        let mut added = Ok(());
        let host_borrows = transition.host == Side::Mapped(PageState::SharedBorrowed);
        if run.host_borrows && !host_borrows {
            self.frames.remove_borrower(frame, pair.host);
        }
        if !run.host_borrows && host_borrows {
            added = self
                .frames
                .add_borrower(frame, pair.host, transition.borrower_rights);
        }
        let guest_borrows = transition.guest == Side::Mapped(PageState::SharedBorrowed);
        if run.guest_borrows && !guest_borrows {
            self.frames.remove_borrower(frame, pair.guest);
        }
        if !run.guest_borrows && guest_borrows {
            added = added.and(self.frames.add_borrower(
                frame,
                pair.guest,
                transition.borrower_rights,
            ));
        }
        if added.is_err() {
            // Prepare counted the borrower slots.
            arch.fatal(FatalReason::CommitInvariant);
        }
    }

    /// [`Self::update_frame`] of a whole folded frame group at once: one record written (the
    /// frames are still zeroed one by one when they leave their owner). `false`, with nothing
    /// done, when the group is not folded or would end with more than the one borrower a folded
    /// record keeps inline: the caller then updates the 512 frames.
    fn update_group(&mut self, arch: &mut impl Stage2Arch, pair: &Pair, run: &Run) -> bool {
        let head = run.frame as usize;
        let Some(record) = self.frames.folded_record(head) else {
            return false;
        };
        let transition = run.transition;
        let host_borrows = transition.host == Side::Mapped(PageState::SharedBorrowed);
        let guest_borrows = transition.guest == Side::Mapped(PageState::SharedBorrowed);
        let borrowers = self.frames.borrower_count(head)
            + usize::from(!run.host_borrows && host_borrows)
            + usize::from(!run.guest_borrows && guest_borrows);
        let leaving = usize::from(run.host_borrows && !host_borrows)
            + usize::from(run.guest_borrows && !guest_borrows);
        if borrowers.saturating_sub(leaving) > 1 {
            return false;
        }
        if transition.zero {
            // Every mapping that leaves with the frames was removed and invalidated already.
            for offset in 0..usize::from(run.pages) {
                arch.zero_page(self.frames.frame_address(head + offset));
            }
        }
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
        let mut done =
            self.frames
                .set_group_owner(head, owner, transition.state, rights, record.memory());
        // Removals first, so the inline slot is free for an addition.
        for (domain, before, after) in [
            (pair.host, run.host_borrows, host_borrows),
            (pair.guest, run.guest_borrows, guest_borrows),
        ] {
            if before && !after {
                done &= self
                    .frames
                    .set_group_borrower(head, domain, Rights::empty(), false);
            }
        }
        for (domain, before, after) in [
            (pair.host, run.host_borrows, host_borrows),
            (pair.guest, run.guest_borrows, guest_borrows),
        ] {
            if !before && after {
                done &=
                    self.frames
                        .set_group_borrower(head, domain, transition.borrower_rights, true);
            }
        }
        if !done {
            // Prepare saw these holders in the folded record.
            arch.fatal(FatalReason::CommitInvariant);
        }
        true
    }

    #[allow(clippy::too_many_arguments, reason = "the commit state of one page")]
    fn commit_page(
        &mut self,
        arch: &mut impl Stage2Arch,
        pair: &Pair,
        run: &Run,
        frame: usize,
        ipa: Ipa,
        (guest_table, host_table): (&mut Stage2Table, &mut Stage2Table),
        reservation: &mut Reservation,
    ) {
        let transition = run.transition;
        let host_ipa = pair.link.window.host_ipa(ipa).unwrap_or(ipa);
        let pool = &mut self.pool;
        let mut done: Result<(), Error> = Ok(());
        // 1. Remove (and invalidate) access that goes away.
        if run.guest_old != run.guest_new {
            if let Some(old) = run.guest_old.at(ipa) {
                done = done.and(guest_table.set_page(arch, pool, reservation, old, Entry::Empty));
            }
        }
        match transition.host {
            Side::NoPage => {
                done =
                    done.and(host_table.set_page(arch, pool, reservation, host_ipa, Entry::Empty));
            }
            Side::LentAway => {
                let entry = Entry::LentAway(self.frames.frame_address(frame));
                done = done.and(host_table.set_page(arch, pool, reservation, host_ipa, entry));
            }
            Side::Mapped(_) => {}
        }
        // 2. Zero and record.
        self.update_frame(arch, pair, run, frame);
        // 3. Map new access (or restate kept access in place).
        if let (Side::Mapped(state), Some(at)) = (transition.guest, run.guest_new.at(ipa)) {
            let entry = Entry::Mapped(self.leaf_for(frame, pair.guest, state));
            done = done.and(guest_table.set_page(arch, &mut self.pool, reservation, at, entry));
        }
        if let Side::Mapped(state) = transition.host {
            let entry = Entry::Mapped(self.leaf_for(frame, pair.host, state));
            done =
                done.and(host_table.set_page(arch, &mut self.pool, reservation, host_ipa, entry));
        }
        if done.is_err() {
            // Prepare counted the table pages.
            arch.fatal(FatalReason::CommitInvariant);
        }
    }

    /// Commits a whole-block plan: one level-2 descriptor change per side.
    fn commit_block(
        &mut self,
        arch: &mut impl Stage2Arch,
        pair: &Pair,
        run: &Run,
        first: Ipa,
        reservation: &mut Reservation,
    ) {
        let transition = run.transition;
        let mut guest_table = pair.guest_table;
        let mut host_table = pair.host_table;
        let host_ipa = pair.link.window.host_ipa(first).unwrap_or(first);
        let mut done: Result<(), Error> = Ok(());
        if run.guest_old != run.guest_new {
            if let Some(old) = run.guest_old.at(first) {
                done =
                    done.and(guest_table.set_block(arch, &mut self.pool, reservation, old, None));
            }
        }
        if transition.host == Side::NoPage {
            done =
                done.and(host_table.set_block(arch, &mut self.pool, reservation, host_ipa, None));
        }
        let head = run.frame as usize;
        if !self.update_group(arch, pair, run) {
            for offset in 0..usize::from(run.pages) {
                self.update_frame(arch, pair, run, head + offset);
            }
            // The block is uniform now: the next whole-block conversion is O(1).
            self.frames.fold(head);
        }
        if let (Side::Mapped(state), Some(at)) = (transition.guest, run.guest_new.at(first)) {
            let leaf = self.leaf_for(head, pair.guest, state);
            done =
                done.and(guest_table.set_block(arch, &mut self.pool, reservation, at, Some(leaf)));
        }
        if let Side::Mapped(state) = transition.host {
            let leaf = self.leaf_for(head, pair.host, state);
            done = done.and(host_table.set_block(
                arch,
                &mut self.pool,
                reservation,
                host_ipa,
                Some(leaf),
            ));
        }
        if done.is_err() {
            arch.fatal(FatalReason::CommitInvariant);
        }
    }
}
