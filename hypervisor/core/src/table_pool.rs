//! The fixed pool of physical pages that stage-2 translation tables are built from.
//!
//! The kernel hands over a range of its own memory at boot; nothing else is ever allocated.
//! Pages are bumped from the range, and freed pages go on a free list threaded through the
//! pages themselves, so the pool needs no heap and no metadata array. A request first
//! [`TablePool::reserve`]s every page its commit may need (prepare), so the commit step cannot
//! run out.

use crate::addr::{PhysAddr, PAGE_SIZE};
use crate::arch::PhysMemory;
use crate::error::Error;

/// A fixed pool of 4 KiB pages for translation tables.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct TablePool {
    /// First byte of the pool range.
    base: PhysAddr,
    /// End of the pool range (exclusive).
    end: PhysAddr,
    /// Next never-used page.
    bump: PhysAddr,
    /// Head of the free list (0 = empty); each free page's word 0 holds the next one.
    free_head: u64,
    /// Pages on the free list.
    free_count: usize,
    /// Pages promised to a prepared request and not yet taken.
    reserved: usize,
}

/// Pages set aside by [`TablePool::reserve`] for one request's commit step.
#[derive(Debug)]
#[must_use = "return unused pages with TablePool::release"]
pub struct Reservation {
    pages: usize,
}

impl Reservation {
    /// Pages still available to this reservation.
    pub fn remaining(&self) -> usize {
        self.pages
    }
}

impl TablePool {
    /// A pool with no pages (a `static` initialiser; replace it with [`TablePool::new`]).
    pub const fn empty() -> Self {
        Self {
            base: PhysAddr(0),
            end: PhysAddr(0),
            bump: PhysAddr(0),
            free_head: 0,
            free_count: 0,
            reserved: 0,
        }
    }

    /// A pool over `[base, base + pages * 4 KiB)`. `base` must be 8 KiB aligned so that stage-2
    /// roots (two concatenated level-1 tables) can be carved from it.
    pub fn new(base: PhysAddr, pages: usize) -> Result<Self, Error> {
        let end = (pages as u64)
            .checked_mul(PAGE_SIZE)
            .and_then(|bytes| base.checked_add(bytes))
            .ok_or(Error::InvalidRange)?;
        if !base.get().is_multiple_of(2 * PAGE_SIZE) || base.get() == 0 {
            return Err(Error::Misaligned);
        }
        Ok(Self {
            base,
            end,
            bump: base,
            free_head: 0,
            free_count: 0,
            reserved: 0,
        })
    }

    /// The physical range the pool owns (hypervisor memory for I4).
    pub fn range(&self) -> (PhysAddr, PhysAddr) {
        (self.base, self.end)
    }

    /// Pages that can still be handed out (free list + untouched tail - reserved).
    pub fn available(&self) -> usize {
        let tail = ((self.end.get() - self.bump.get()) / PAGE_SIZE) as usize;
        (tail + self.free_count).saturating_sub(self.reserved)
    }

    /// Prepare step: promise `pages` pages to one request, or refuse without changing anything.
    pub fn reserve(&mut self, pages: usize) -> Result<Reservation, Error> {
        if pages > self.available() {
            return Err(Error::OutOfTableMemory);
        }
        self.reserved += pages;
        Ok(Reservation { pages })
    }

    /// Commit step: take one zeroed page from a reservation.
    ///
    /// The reservation counted this page, so the pool holds it; `None` would mean the prepare
    /// step under-counted, which the callers' tests rule out. Callers still handle it without
    /// panicking.
    pub fn take(
        &mut self,
        memory: &mut impl PhysMemory,
        reservation: &mut Reservation,
    ) -> Option<PhysAddr> {
        if reservation.pages == 0 {
            return None;
        }
        let page = self.pop(memory)?;
        reservation.pages -= 1;
        self.reserved -= 1;
        memory.zero_page(page);
        Some(page)
    }

    /// Returns a reservation's unused pages to the pool.
    pub fn release(&mut self, reservation: Reservation) {
        self.reserved -= reservation.pages;
    }

    /// Allocates an 8 KiB aligned, zeroed pair of pages for a stage-2 root (two concatenated
    /// level-1 tables). Roots come from the untouched tail, where contiguity is known.
    pub fn take_root(&mut self, memory: &mut impl PhysMemory) -> Result<PhysAddr, Error> {
        let mut start = self.bump;
        let mut skipped = None;
        if !start.get().is_multiple_of(2 * PAGE_SIZE) {
            skipped = Some(start);
            start = PhysAddr(start.get() + PAGE_SIZE);
        }
        let needed = 2 + usize::from(skipped.is_some());
        let tail = ((self.end.get() - self.bump.get()) / PAGE_SIZE) as usize;
        if tail < needed || tail + self.free_count < needed + self.reserved {
            return Err(Error::OutOfTableMemory);
        }
        self.bump = PhysAddr(start.get() + 2 * PAGE_SIZE);
        if let Some(page) = skipped {
            self.push(memory, page);
        }
        memory.zero_page(start);
        memory.zero_page(PhysAddr(start.get() + PAGE_SIZE));
        Ok(start)
    }

    /// Returns a table page no descriptor points at any more (after its TLB invalidation).
    pub fn free(&mut self, memory: &mut impl PhysMemory, page: PhysAddr) {
        self.push(memory, page);
    }

    fn push(&mut self, memory: &mut impl PhysMemory, page: PhysAddr) {
        memory.zero_page(page);
        memory.page_mut(page)[0] = self.free_head;
        self.free_head = page.get();
        self.free_count += 1;
    }

    fn pop(&mut self, memory: &mut impl PhysMemory) -> Option<PhysAddr> {
        if self.free_head != 0 {
            let page = PhysAddr(self.free_head);
            self.free_head = memory.read_u64(page);
            self.free_count -= 1;
            return Some(page);
        }
        if self.bump < self.end {
            let page = self.bump;
            self.bump = PhysAddr(page.get() + PAGE_SIZE);
            return Some(page);
        }
        None
    }

    /// True when `pa` lies in the pool range.
    pub fn contains(&self, pa: PhysAddr) -> bool {
        self.base <= pa && pa < self.end
    }
}
