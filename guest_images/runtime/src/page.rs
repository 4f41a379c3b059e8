//! The guest's free RAM (the pages after its image), handed out one page at a time, and the two
//! ways to touch a page: volatile words while it may be shared (the VMM can change it at any
//! time, so it is never a Rust reference), and a plain `&mut` once it is private again.

use core::sync::atomic::{AtomicU64, Ordering};
use frameshift_abi::addr::{Ipa, PAGE_SIZE};

static NEXT_FREE: AtomicU64 = AtomicU64::new(0);
static FREE_END: AtomicU64 = AtomicU64::new(0);

/// Boot hands the free RAM `[first, end)` to the allocator.
pub(crate) fn init(first: Ipa, end: Ipa) {
    NEXT_FREE.store(first.page_base().get(), Ordering::Relaxed);
    FREE_END.store(end.get(), Ordering::Relaxed);
}

/// A free page of RAM, zeroed, or `None` when there is none left. Pages are never given back.
pub fn allocate_page() -> Option<Ipa> {
    let page = NEXT_FREE
        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |next| {
            let end = next.checked_add(PAGE_SIZE)?;
            (end <= FREE_END.load(Ordering::Relaxed)).then_some(end)
        })
        .ok()?;
    let page = Ipa(page);
    let view = WordView::new(page);
    (0..PAGE_SIZE / 8).for_each(|index| view.write(index * 8, 0));
    Some(page)
}

/// A page reached through volatile 8-byte accesses at an address this guest maps read-write
/// (the shared view of a shared page, or any private page).
#[derive(Clone, Copy, Debug)]
pub struct WordView {
    base: Ipa,
}

impl WordView {
    /// The page at `base` (rounded down to its page).
    pub const fn new(base: Ipa) -> Self {
        Self {
            base: base.page_base(),
        }
    }

    fn word(&self, offset: u64) -> *mut u64 {
        // An offset outside the page is a bug in the program.
        assert!(
            offset.is_multiple_of(8) && offset < PAGE_SIZE,
            "offset {offset:#x} outside the page"
        );
        self.base.add(offset).get() as *mut u64
    }

    /// The word at `offset`.
    pub fn read(&self, offset: u64) -> u64 {
        // SAFETY: the word lies in a page this guest maps readable (the caller names only its
        // own pages, and shared ones by their shared view); a volatile read creates no
        // reference, so a VMM writing the same page concurrently breaks no Rust rule.
        unsafe { self.word(offset).read_volatile() }
    }

    /// Write the word at `offset`.
    pub fn write(&self, offset: u64, value: u64) {
        // SAFETY: as in `read`, for a page this guest maps writable.
        unsafe { self.word(offset).write_volatile(value) }
    }
}

/// The bytes of the page at `ipa`, for in-place work on private memory.
///
/// # Safety
///
/// The page must be this guest's, mapped read-write at `ipa`, and private (`FS_MEM_STATE`: no
/// peer), so nobody else can change it; no other reference to it may be alive while the
/// returned one is.
pub unsafe fn private_bytes<'page>(ipa: Ipa) -> &'page mut [u8; PAGE_SIZE as usize] {
    // SAFETY: the caller guarantees the page is mapped, writable and exclusively ours; a page
    // is 4 KiB aligned, which satisfies the array's alignment of 1.
    unsafe { &mut *(ipa.page_base().get() as *mut [u8; PAGE_SIZE as usize]) }
}
