//! Host fake of [`Stage2Arch`]: a copy-on-write memory arena plus a strict model of the TLB.
//!
//! Like Hafnium's `src/arch/fake`, it exists to make tests fail loudly. It records, and reports
//! through [`FakeArch::take_violations`]:
//! - I7: a live descriptor whose output address, memory type or structure changes in place, or
//!   a slot made valid again while its broken translation is still un-invalidated;
//! - I6: a removed or narrowed translation still un-invalidated when the call returns
//!   ([`FakeArch::end_call`]), or a frame written while a stale translation can still reach it;
//! - descriptor writes outside the table pool.
//!
//! Pages never written read as a pattern derived from their address, so a frame's contents are
//! known without storing them, and cloning the arena (for the model checker) is cheap.

extern crate std;

use std::collections::BTreeMap;
use std::format;
use std::rc::Rc;
use std::string::String;
use std::vec::Vec;

use crate::addr::{Ipa, PhysAddr, Vmid, PAGE_SIZE};
use crate::arch::{DescriptorSlot, PageWords, PhysMemory, Stage2Arch};
use crate::descriptor::{decode, is_bbm_safe, level_span, Descriptor};

/// A recorded TLB invalidation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Invalidation {
    /// `invalidate_ipa`.
    Ipa(Vmid, Ipa),
    /// `invalidate_vmid`.
    Vmid(Vmid),
}

/// A translation that a TLB may still hold although the tables no longer say so.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Stale {
    vmid: Vmid,
    ipa: Ipa,
    span: u64,
    /// Output range the stale entry can reach (none for a table descriptor).
    output: Option<(PhysAddr, u64)>,
    /// A table descriptor: walk caches for the whole span; only a VMID-wide invalidation clears it.
    table: bool,
    narrowed: bool,
}

/// The host fake machine.
#[derive(Clone, Debug)]
pub struct FakeArch {
    pages: BTreeMap<u64, Rc<PageWords>>,
    table_region: (PhysAddr, PhysAddr),
    stale: Vec<Stale>,
    invalidations: Vec<Invalidation>,
    frame_writes: Vec<PhysAddr>,
    violations: Vec<String>,
    /// One shared zero page: zeroed pages point at it, so clones and comparisons stay cheap.
    zero: Rc<PageWords>,
}

/// The contents a never-written page has: distinct per page and per word, never zero.
pub fn pattern_word(page: PhysAddr, index: usize) -> u64 {
    (page.get() ^ ((index as u64) << 1)).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1
}

impl FakeArch {
    /// A fake whose translation tables must all lie in `[table_base, table_end)`.
    pub fn new(table_base: PhysAddr, table_end: PhysAddr) -> Self {
        Self {
            pages: BTreeMap::new(),
            table_region: (table_base, table_end),
            stale: Vec::new(),
            invalidations: Vec::new(),
            frame_writes: Vec::new(),
            violations: Vec::new(),
            zero: Rc::new([0; 512]),
        }
    }

    /// Ends one hypervisor call: every removed or narrowed translation must have been
    /// invalidated by now (I6). Returns and clears the invalidations recorded during the call.
    pub fn end_call(&mut self) -> Vec<Invalidation> {
        for stale in core::mem::take(&mut self.stale) {
            self.violations.push(format!(
                "I6: stale translation survives the call: vmid {} ipa {} span {:#x}{}",
                stale.vmid.0,
                stale.ipa,
                stale.span,
                if stale.narrowed { " (narrowed)" } else { "" }
            ));
        }
        core::mem::take(&mut self.invalidations)
    }

    /// Violations recorded so far (and clears them).
    pub fn take_violations(&mut self) -> Vec<String> {
        core::mem::take(&mut self.violations)
    }

    /// Frames (non-table pages) written since the last call, in order (and clears the log).
    pub fn take_frame_writes(&mut self) -> Vec<PhysAddr> {
        core::mem::take(&mut self.frame_writes)
    }

    /// True when both fakes hold the same memory contents (pages never written count as their
    /// pattern, so a page written back to its pattern still differs: any write is a change).
    pub fn same_memory(&self, other: &Self) -> bool {
        self.pages.len() == other.pages.len()
            && self.pages.iter().zip(&other.pages).all(
                |((page, words), (other_page, other_words))| {
                    page == other_page && (Rc::ptr_eq(words, other_words) || words == other_words)
                },
            )
    }

    /// A digest of a page's contents (FNV-1a over its words).
    pub fn digest(&self, page: PhysAddr) -> u64 {
        let mut hash = 0xcbf2_9ce4_8422_2325u64;
        for index in 0..512 {
            let word = self.word(page, index);
            hash = (hash ^ word).wrapping_mul(0x0000_0100_0000_01B3);
        }
        hash
    }

    /// True when every word of the page is zero.
    pub fn is_zero(&self, page: PhysAddr) -> bool {
        match self.pages.get(&(page.get() / PAGE_SIZE)) {
            Some(words) => Rc::ptr_eq(words, &self.zero) || words.iter().all(|&word| word == 0),
            None => false,
        }
    }

    /// True when the page still has its initial pattern (never written).
    pub fn is_pristine(&self, page: PhysAddr) -> bool {
        !self.pages.contains_key(&(page.get() / PAGE_SIZE))
    }

    /// Writes a word of a frame as a domain would through its mapping (tests use it to give
    /// frames distinctive contents).
    pub fn poke(&mut self, pa: PhysAddr, value: u64) {
        let page = pa.page_base();
        let index = ((pa.get() % PAGE_SIZE) / 8) as usize;
        self.page_entry(page)[index] = value;
    }

    /// Reads the word at `pa`.
    pub fn peek(&self, pa: PhysAddr) -> u64 {
        self.word(pa.page_base(), ((pa.get() % PAGE_SIZE) / 8) as usize)
    }

    fn word(&self, page: PhysAddr, index: usize) -> u64 {
        match self.pages.get(&(page.get() / PAGE_SIZE)) {
            Some(words) => words[index],
            None => pattern_word(page, index),
        }
    }

    fn page_entry(&mut self, page: PhysAddr) -> &mut PageWords {
        let entry = self.pages.entry(page.get() / PAGE_SIZE).or_insert_with(|| {
            let mut words = [0u64; 512];
            for (index, word) in words.iter_mut().enumerate() {
                *word = pattern_word(page, index);
            }
            Rc::new(words)
        });
        Rc::make_mut(entry)
    }

    fn in_table_region(&self, pa: PhysAddr) -> bool {
        self.table_region.0 <= pa && pa < self.table_region.1
    }
}

impl PhysMemory for FakeArch {
    fn read_u64(&self, pa: PhysAddr) -> u64 {
        self.peek(pa)
    }

    fn with_page<R>(&self, pa: PhysAddr, visit: &mut dyn FnMut(&PageWords) -> R) -> R {
        match self.pages.get(&(pa.get() / PAGE_SIZE)) {
            Some(words) => visit(words),
            None => {
                let mut words = [0u64; 512];
                for (index, word) in words.iter_mut().enumerate() {
                    *word = pattern_word(pa.page_base(), index);
                }
                visit(&words)
            }
        }
    }

    fn zero_page(&mut self, pa: PhysAddr) {
        let page = pa.page_base();
        self.note_frame_write(page);
        self.pages
            .insert(page.get() / PAGE_SIZE, Rc::clone(&self.zero));
    }

    fn page_mut(&mut self, pa: PhysAddr) -> &mut PageWords {
        let page = pa.page_base();
        self.note_frame_write(page);
        self.page_entry(page)
    }
}

impl FakeArch {
    /// Logs a write to a frame (not a table page) and checks no stale translation reaches it.
    fn note_frame_write(&mut self, page: PhysAddr) {
        if !self.in_table_region(page) {
            self.frame_writes.push(page);
            for stale in &self.stale {
                if let Some((base, size)) = stale.output {
                    if base <= page && page.get() < base.get() + size {
                        self.violations.push(format!(
                            "I6: frame {page} written while vmid {} can still reach it at {}",
                            stale.vmid.0, stale.ipa
                        ));
                    }
                }
            }
        }
    }
}

impl Stage2Arch for FakeArch {
    fn write_descriptor(&mut self, slot: DescriptorSlot, value: u64) {
        if !self.in_table_region(slot.pa) {
            self.violations.push(format!(
                "descriptor write outside the table pool at {}",
                slot.pa
            ));
        }
        let old = self.peek(slot.pa);
        let old_valid = old & 1 != 0;
        let new_valid = value & 1 != 0;
        let span = level_span(slot.level);
        if old_valid && new_valid && !is_bbm_safe(old, value) {
            self.violations.push(format!(
                "I7: live descriptor at {} (vmid {} ipa {} level {}) changed {old:#x} -> {value:#x} \
                 without break-before-make",
                slot.pa, slot.vmid.0, slot.ipa, slot.level
            ));
        }
        if !old_valid && new_valid {
            let overlapping = self.stale.iter().any(|stale| {
                stale.vmid == slot.vmid
                    && !stale.narrowed
                    && stale.ipa.get() < slot.ipa.get() + span
                    && slot.ipa.get() < stale.ipa.get() + stale.span
            });
            if overlapping {
                self.violations.push(format!(
                    "I7: descriptor at {} (vmid {} ipa {}) made before its break was invalidated",
                    slot.pa, slot.vmid.0, slot.ipa
                ));
            }
        }
        let old_decoded = decode(old, slot.level);
        let narrowed = old_valid && new_valid && {
            const S2AP: u64 = 0b11 << 6;
            const XN: u64 = 1 << 54;
            (old & S2AP) & !(value & S2AP) != 0 || (value & XN != 0 && old & XN == 0)
        };
        if (old_valid && !new_valid) || narrowed {
            let (output, table) = match old_decoded {
                Descriptor::Leaf(leaf) => (Some((leaf.pa, span)), false),
                Descriptor::Table(_) => (None, true),
                _ => (Some((PhysAddr(old & 0x0000_FFFF_FFFF_F000), span)), false),
            };
            self.stale.push(Stale {
                vmid: slot.vmid,
                ipa: slot.ipa,
                span,
                output,
                table,
                narrowed,
            });
        }
        self.poke(slot.pa, value);
    }

    fn invalidate_ipa(&mut self, vmid: Vmid, ipa: Ipa) {
        self.invalidations.push(Invalidation::Ipa(vmid, ipa));
        self.stale.retain(|stale| {
            !(stale.vmid == vmid
                && !stale.table
                && stale.ipa <= ipa
                && ipa.get() < stale.ipa.get() + stale.span)
        });
    }

    fn invalidate_vmid(&mut self, vmid: Vmid) {
        self.invalidations.push(Invalidation::Vmid(vmid));
        self.stale.retain(|stale| stale.vmid != vmid);
    }
}
