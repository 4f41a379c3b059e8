//! The conversion engine: carries out the ownership state machine on the frame table and the
//! domains' stage-2 tables, all-or-nothing. It owns the frame table, the table pool and the
//! list of hypervisor memory ranges; the domains' address spaces ([`VSpace`]) belong to the
//! domains, which every call names.
//!
//! Every request runs in three steps (Hafnium's `mm_ptable_prepare`/`commit`):
//! 1. **prepare** ([`Engine::prepare`], `plan.rs`) checks every page of the range: arguments,
//!    [`decide`](crate::ownership::decide) (rights included), destination slots, borrower
//!    side-table room and the table pages the commit will allocate. Any refusal returns before
//!    anything is written (I8).
//! 2. the **plan** ([`Plan`]) it returns is owned: the range as a short list of uniform runs
//!    (contiguous pages of contiguous frames with the same transition), and the exact number of
//!    table pages the commit takes.
//! 3. **commit** ([`Engine::commit`], `commit.rs`) consumes the plan and never decides again. It
//!    applies each run in the order that keeps the invariants: access that goes away is removed
//!    and invalidated first, then the frame is zeroed if it leaves its owner (I5, I6), then the
//!    frame table changes, then new access is mapped. It cannot fail: the table pages it needs
//!    were counted exactly and are reserved first; a broken promise (a bug) halts the hypervisor
//!    with [`FatalReason::CommitInvariant`](crate::fatal::FatalReason).
//!
//! A range that is one whole, aligned, uniform 2 MiB block is converted with one level-2
//! descriptor change per side; a conversion inside a block splits it, and a region that becomes
//! uniform again is coalesced back into a block; a table that maps nothing any more goes back to
//! the pool. When each side's 2 MiB is one level-2 descriptor (or nothing) and the block's frame
//! group is folded (one record for its 512 frames, [`crate::frame_table`]), prepare plans the
//! first page alone and commit writes the one record: the conversion costs the same for 512
//! pages as for one. Otherwise both go page by page, and commit folds the group it leaves
//! uniform.
//!
//! | file | what |
//! | --- | --- |
//! | `mod.rs` | the engine, memory set-up, address spaces, guest links, pins |
//! | `boot.rs` | the boot-time mappings from the boot information |
//! | `plan.rs` | requests, prepare, the plan and its table-page count |
//! | `commit.rs` | commit |
//! | `teardown.rs` | a dead guest's teardown |
//! | `caps.rs` | one domain's frame capabilities, as runs |
//!
//! Within a range no frame appears twice: by I3 two IPAs of one domain never map the same frame,
//! and the audit checks I3.

mod boot;
mod caps;
mod commit;
mod plan;
mod teardown;
#[cfg(test)]
mod tests;

pub use boot::{BootMapping, BootSharing};
pub use caps::{CapHeld, CapRun};
pub use plan::{Plan, Request, MAX_RANGE_PAGES};

use crate::addr::{Ipa, PhysAddr, Vmid, IPA_BITS, PAGE_SIZE, SHARED_ALIAS_BIT};
use crate::arch::Stage2Arch;
use crate::descriptor::{PageState, Rights};
use crate::domain::{ConversionMode, DomainId, Domains, GuestLink, VSpace};
use crate::error::Error;
use crate::frame_table::{FrameStorage, FrameTable};
use crate::ownership::Operation;
use crate::stage2::Stage2Table;
use crate::table_pool::TablePool;

const MAX_PROTECTED_RANGES: usize = 8;

/// The ownership core: frame table, table pool and hypervisor memory.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Engine<S: FrameStorage> {
    frames: FrameTable<S>,
    pool: TablePool,
    protected: [(PhysAddr, PhysAddr); MAX_PROTECTED_RANGES],
    protected_count: usize,
    /// Bumped by every change, so a plan can only be committed on the state it was made from.
    epoch: u64,
    /// The frame indices `[start, end)` that boot mappings recorded holders for: the hull of
    /// what boot mapped, which the boot audit ([`crate::audit::audit_boot`]) checks.
    boot_frames: (usize, usize),
}

impl<S: FrameStorage> Engine<S> {
    /// An engine with no memory over `storage` (a `const` initialiser); call [`Engine::init`].
    pub const fn new(storage: S) -> Self {
        Self {
            frames: FrameTable::new(storage),
            pool: TablePool::empty(),
            protected: [(PhysAddr(0), PhysAddr(0)); MAX_PROTECTED_RANGES],
            protected_count: 0,
            epoch: 0,
            boot_frames: (0, 0),
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
        self.epoch += 1;
        self.protected_count = 0;
        self.boot_frames = (0, 0);
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
        self.epoch += 1;
        Ok(())
    }

    /// Hypervisor memory ranges.
    pub fn protected_ranges(&self) -> &[(PhysAddr, PhysAddr)] {
        &self.protected[..self.protected_count]
    }

    /// The frame indices boot mappings recorded holders for (the hull: frames in between that
    /// no boot mapping named are included). Empty before the first boot mapping.
    pub fn boot_frames(&self) -> core::ops::Range<usize> {
        self.boot_frames.0..self.boot_frames.1
    }

    /// The frame table.
    pub fn frame_table(&self) -> &FrameTable<S> {
        &self.frames
    }

    /// Unfolds every frame group: the next whole-block conversions take the slow path (see
    /// [`FrameTable::unfold_all`]).
    #[cfg(any(test, feature = "fake"))]
    pub fn unfold_frame_groups(&mut self) {
        self.frames.unfold_all();
    }

    /// The frame table, for tests that corrupt it behind the engine's back.
    #[cfg(test)]
    pub(crate) fn frame_table_mut(&mut self) -> &mut FrameTable<S> {
        &mut self.frames
    }

    /// Takes a pin on a frame (in-flight use).
    pub fn pin(&mut self, pa: PhysAddr) -> Result<(), Error> {
        self.frames.pin(pa)?;
        self.epoch += 1;
        Ok(())
    }

    /// Drops a pin.
    pub fn unpin(&mut self, pa: PhysAddr) -> Result<(), Error> {
        self.frames.unpin(pa)?;
        self.epoch += 1;
        Ok(())
    }

    /// The table page pool.
    pub fn pool(&self) -> &TablePool {
        &self.pool
    }

    /// A new, empty address space tagged `vmid` (its 8 KiB root comes from the pool).
    pub fn create_vspace(
        &mut self,
        arch: &mut impl Stage2Arch,
        vmid: Vmid,
    ) -> Result<VSpace, Error> {
        let table = Stage2Table::new(arch, &mut self.pool, vmid)?;
        self.epoch += 1;
        Ok(VSpace::new(table))
    }

    /// Makes `guest` a guest of `link.host` with the given window and mode.
    pub fn link_guest<C>(
        &self,
        domains: &mut Domains<C>,
        guest: DomainId,
        link: GuestLink,
    ) -> Result<(), Error> {
        if guest == link.host || domains.get(link.host).is_none() {
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
            ConversionMode::History => 1 << IPA_BITS,
            ConversionMode::Split => SHARED_ALIAS_BIT,
        };
        if guest_end.get() > guest_limit || host_end.get() > 1 << IPA_BITS {
            return Err(Error::IpaOutOfRange);
        }
        let vspace = &mut domains.get_mut(guest).ok_or(Error::NoSuchDomain)?.vspace;
        if vspace.link.is_some() {
            return Err(Error::DomainExists);
        }
        vspace.link = Some(link);
        Ok(())
    }

    /// What `domain` sees at `ipa`: its state there, if mapped (the guest state query).
    pub fn page_state<C>(
        &self,
        arch: &impl Stage2Arch,
        domains: &Domains<C>,
        domain: DomainId,
        ipa: Ipa,
    ) -> Result<Option<PageState>, Error> {
        let vspace = domains.vspace(domain).ok_or(Error::NoSuchDomain)?;
        Ok(vspace.table.lookup(arch, ipa).map(|leaf| leaf.state))
    }

    /// Runs one conversion request, all-or-nothing: prepare, then commit.
    pub fn convert<C>(
        &mut self,
        arch: &mut impl Stage2Arch,
        domains: &Domains<C>,
        request: Request,
    ) -> Result<(), Error> {
        // The runs stay here: a `Plan` moved from prepare to commit is a 10 KiB copy.
        let mut runs = heapless::Vec::new();
        let head = self.prepare_runs(arch, domains, request, &mut runs)?;
        self.commit_runs(arch, &head, &runs);
        Ok(())
    }

    /// Host donates frames (at the window of `ipa`) to the guest at `ipa`.
    pub fn donate<C>(
        &mut self,
        arch: &mut impl Stage2Arch,
        domains: &Domains<C>,
        host: DomainId,
        guest: DomainId,
        ipa: Ipa,
        pages: u64,
    ) -> Result<(), Error> {
        let request = Request::new(Operation::Donate, host, guest, ipa, pages);
        self.convert(arch, domains, request)
    }

    /// Guest shares owned frames with its host (pKVM `MEM_SHARE`).
    pub fn share<C>(
        &mut self,
        arch: &mut impl Stage2Arch,
        domains: &Domains<C>,
        guest: DomainId,
        ipa: Ipa,
        pages: u64,
    ) -> Result<(), Error> {
        let host = host_of(domains, guest)?;
        let request = Request::new(Operation::Share, host, guest, ipa, pages);
        self.convert(arch, domains, request)
    }

    /// Guest unshares frames (pKVM `MEM_UNSHARE`); the host's access is gone on return.
    pub fn unshare<C>(
        &mut self,
        arch: &mut impl Stage2Arch,
        domains: &Domains<C>,
        guest: DomainId,
        ipa: Ipa,
        pages: u64,
    ) -> Result<(), Error> {
        let host = host_of(domains, guest)?;
        let request = Request::new(Operation::Unshare, host, guest, ipa, pages);
        self.convert(arch, domains, request)
    }

    /// Guest relinquishes owned frames (zeroed, back to the host) or lent frames.
    pub fn relinquish<C>(
        &mut self,
        arch: &mut impl Stage2Arch,
        domains: &Domains<C>,
        guest: DomainId,
        ipa: Ipa,
        pages: u64,
    ) -> Result<(), Error> {
        let host = host_of(domains, guest)?;
        let request = Request::new(Operation::Relinquish, host, guest, ipa, pages);
        self.convert(arch, domains, request)
    }

    /// Host shares its frames with the guest at `ipa` with `rights`.
    #[allow(clippy::too_many_arguments, reason = "the request's own fields")]
    pub fn share_with_guest<C>(
        &mut self,
        arch: &mut impl Stage2Arch,
        domains: &Domains<C>,
        host: DomainId,
        guest: DomainId,
        ipa: Ipa,
        pages: u64,
        rights: Rights,
    ) -> Result<(), Error> {
        let request = Request {
            rights,
            ..Request::new(Operation::ShareWithGuest, host, guest, ipa, pages)
        };
        self.convert(arch, domains, request)
    }

    /// Host takes shared frames back from the guest.
    pub fn unshare_from_guest<C>(
        &mut self,
        arch: &mut impl Stage2Arch,
        domains: &Domains<C>,
        host: DomainId,
        guest: DomainId,
        ipa: Ipa,
        pages: u64,
    ) -> Result<(), Error> {
        let request = Request::new(Operation::UnshareFromGuest, host, guest, ipa, pages);
        self.convert(arch, domains, request)
    }

    /// Host lends frames for the guest's exclusive use.
    #[allow(clippy::too_many_arguments, reason = "the request's own fields")]
    pub fn lend<C>(
        &mut self,
        arch: &mut impl Stage2Arch,
        domains: &Domains<C>,
        host: DomainId,
        guest: DomainId,
        ipa: Ipa,
        pages: u64,
        rights: Rights,
    ) -> Result<(), Error> {
        let request = Request {
            rights,
            ..Request::new(Operation::Lend, host, guest, ipa, pages)
        };
        self.convert(arch, domains, request)
    }

    /// Host reclaims lent frames the guest relinquished (or that a dead guest held).
    pub fn reclaim<C>(
        &mut self,
        arch: &mut impl Stage2Arch,
        domains: &Domains<C>,
        host: DomainId,
        guest: DomainId,
        ipa: Ipa,
        pages: u64,
    ) -> Result<(), Error> {
        let request = Request::new(Operation::Reclaim, host, guest, ipa, pages);
        self.convert(arch, domains, request)
    }
}

/// The host of a guest.
fn host_of<C>(domains: &Domains<C>, guest: DomainId) -> Result<DomainId, Error> {
    let vspace = domains.vspace(guest).ok_or(Error::NoSuchDomain)?;
    Ok(vspace.link.ok_or(Error::NotLinked)?.host)
}
