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
use frameshift_abi::vcpu;

use crate::arch::{
    Arch, ContextKind, DescriptorSlot, ListRegistersFull, PageWords, PhysMemory, Stage2Arch,
    VirtualIrq,
};
use crate::descriptor::{decode, is_bbm_safe, level_span, Descriptor};
use crate::fatal::FatalReason;

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

    fn fatal(&mut self, reason: FatalReason) -> ! {
        panic!("the hypervisor halted: {reason}")
    }
}

/// Number of list registers the fake vCPU has (QEMU's GICv3 CPU interface has 4).
pub const FAKE_LIST_REGISTERS: usize = 4;

/// The fake's per-context state: just enough to observe what the core asked of the arch.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FakeContext {
    /// What the context was created as (`None` only for [`Default`]).
    pub kind: Option<ContextKind>,
    /// `vcpu::REG_SP_EL0..=REG_MPIDR_EL1`, indexed from `REG_SP_EL0`.
    pub el1: [u64; EL1_REGISTERS],
    /// Interrupts in the list registers, in injection order.
    pub list_registers: heapless::Vec<VirtualIrq, FAKE_LIST_REGISTERS>,
    /// The virtual timer PPI fired and was not acknowledged yet.
    pub vppi_masked: bool,
}

const EL1_REGISTERS: usize = (vcpu::REG_MPIDR_EL1 - vcpu::REG_SP_EL0 + 1) as usize;

fn el1_index(register: u64) -> Option<usize> {
    (vcpu::REG_SP_EL0..=vcpu::REG_MPIDR_EL1)
        .contains(&register)
        .then(|| (register - vcpu::REG_SP_EL0) as usize)
}

impl Arch for FakeArch {
    type Context = FakeContext;

    /// Not AArch64's 0x3C5 on purpose: a core that hard-coded the real value instead of asking
    /// its arch would fail the host tests.
    const ENTRY_PSTATE: u64 = 0xF0F0;

    fn new_context(&self, kind: ContextKind) -> Self::Context {
        let mut context = FakeContext {
            kind: Some(kind),
            ..FakeContext::default()
        };
        if let ContextKind::Vcpu { mpidr } = kind {
            context.el1[(vcpu::REG_MPIDR_EL1 - vcpu::REG_SP_EL0) as usize] = mpidr;
        }
        context
    }

    fn vcpu_register(context: &Self::Context, register: u64) -> Option<u64> {
        el1_index(register).map(|index| context.el1[index])
    }

    fn set_vcpu_register(context: &mut Self::Context, register: u64, value: u64) -> bool {
        match el1_index(register) {
            Some(index) if register != vcpu::REG_MPIDR_EL1 => {
                context.el1[index] = value;
                true
            }
            _ => false,
        }
    }

    fn inject_virtual_irq(
        context: &mut Self::Context,
        irq: VirtualIrq,
    ) -> Result<(), ListRegistersFull> {
        context
            .list_registers
            .push(irq)
            .map_err(|_| ListRegistersFull)
    }

    fn ack_virtual_ppi(context: &mut Self::Context, intid: u32) -> bool {
        if intid != crate::arch::VIRTUAL_TIMER_PPI {
            return false;
        }
        context.vppi_masked = false;
        true
    }
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test fails loudly on an unexpected error"
)]
mod tests {
    //! Each call check of the fake, planted alone: exactly its own message, and nothing from a
    //! call that follows the rules.
    //!
    //! Mutation check: `cargo xtask mutants hypervisor/core/src/arch/fake.rs`. Explained equivalent
    //! mutants (read by that command, build/xtask/src/tasks/mutants.rs):
    //!
    //! equivalent mutant: hypervisor/core/src/arch/fake.rs:64:78: replace | with ^ in pattern_word -- the page is 4 KiB aligned and `index << 1` is even, so the value multiplied is even, the odd constant keeps the product even, and setting bit 0 with `|` or flipping it with `^` gives the same word.
    //! equivalent mutant: hypervisor/core/src/arch/fake.rs:64:17: replace ^ with | in pattern_word -- every caller passes a page base (4 KiB aligned) and `index << 1` < 1024 fits below bit 12, so the two operands share no bit and `^` equals `|`.

    use super::*;
    use crate::descriptor::{encode_leaf, encode_table, Leaf, MemoryType, PageState, Rights};
    use std::vec;

    const POOL: (PhysAddr, PhysAddr) = (PhysAddr(0x1000_0000), PhysAddr(0x1001_0000));
    const VMID: Vmid = Vmid(2);
    const FRAME: PhysAddr = PhysAddr(0x4000_0000);
    const OTHER_FRAME: PhysAddr = PhysAddr(0x4000_1000);
    const IPA: Ipa = Ipa(0x4000_0000);

    /// A fake whose first two pool pages are zeroed tables (as the pool hands them out).
    fn fake() -> FakeArch {
        let mut arch = FakeArch::new(POOL.0, POOL.1);
        arch.zero_page(POOL.0);
        arch.zero_page(PhysAddr(POOL.0.get() + PAGE_SIZE));
        assert_eq!(
            arch.take_frame_writes(),
            vec![],
            "table pages are not frames"
        );
        arch
    }

    /// The level-3 slot for `IPA` in a table at the start of the pool.
    fn slot() -> DescriptorSlot {
        DescriptorSlot {
            pa: POOL.0,
            vmid: VMID,
            ipa: IPA,
            level: 3,
        }
    }

    fn page(pa: PhysAddr, rights: Rights) -> u64 {
        encode_leaf(
            &Leaf {
                pa,
                rights,
                memory: MemoryType::Normal,
                state: PageState::Owned,
            },
            3,
        )
    }

    /// A fake with a live read-write page at `IPA` and no call in progress.
    fn mapped() -> FakeArch {
        let mut arch = fake();
        arch.write_descriptor(slot(), page(FRAME, Rights::READ_WRITE));
        arch.end_call();
        assert_eq!(arch.take_violations(), Vec::<String>::new());
        arch
    }

    fn nothing(arch: &mut FakeArch) {
        assert_eq!(arch.take_violations(), Vec::<String>::new());
    }

    // ------------------------------------------------------------- rule-abiding calls --

    #[test]
    fn break_invalidate_make_is_clean() {
        let mut arch = mapped();
        arch.write_descriptor(slot(), 0);
        arch.invalidate_ipa(VMID, IPA);
        arch.write_descriptor(slot(), page(OTHER_FRAME, Rights::READ_WRITE));
        assert_eq!(arch.end_call(), vec![Invalidation::Ipa(VMID, IPA)]);
        nothing(&mut arch);
        assert_eq!(
            arch.end_call(),
            vec![],
            "the invalidations were handed over"
        );
    }

    #[test]
    fn widening_in_place_needs_no_invalidation() {
        let mut arch = mapped();
        arch.write_descriptor(slot(), page(FRAME, Rights::ALL));
        assert_eq!(arch.end_call(), vec![]);
        nothing(&mut arch);
    }

    #[test]
    fn narrowing_in_place_then_invalidating_is_clean() {
        let mut arch = mapped();
        arch.write_descriptor(slot(), page(FRAME, Rights::READ));
        arch.invalidate_ipa(VMID, IPA);
        arch.end_call();
        nothing(&mut arch);
    }

    #[test]
    fn a_vmid_wide_invalidation_clears_a_removed_table() {
        let mut arch = fake();
        let l2 = DescriptorSlot {
            pa: POOL.0,
            vmid: VMID,
            ipa: Ipa(0),
            level: 2,
        };
        arch.write_descriptor(l2, encode_table(PhysAddr(POOL.0.get() + PAGE_SIZE)));
        arch.end_call();
        arch.write_descriptor(l2, 0);
        arch.invalidate_vmid(VMID);
        assert_eq!(arch.end_call(), vec![Invalidation::Vmid(VMID)]);
        nothing(&mut arch);
    }

    #[test]
    fn writing_a_frame_after_its_translation_is_invalidated_is_clean() {
        let mut arch = mapped();
        arch.write_descriptor(slot(), 0);
        arch.invalidate_ipa(VMID, IPA);
        arch.zero_page(FRAME);
        arch.end_call();
        nothing(&mut arch);
        assert_eq!(arch.take_frame_writes(), vec![FRAME]);
        assert!(arch.is_zero(FRAME));
    }

    // --------------------------------------------------------- each check, planted alone --

    #[test]
    fn a_descriptor_write_outside_the_pool_is_reported() {
        let mut arch = fake();
        let outside = DescriptorSlot {
            pa: POOL.1,
            ..slot()
        };
        arch.write_descriptor(outside, 0);
        assert_eq!(
            arch.take_violations(),
            vec!["descriptor write outside the table pool at 0x10010000".to_owned()]
        );
        // The last word inside the pool is fine.
        let last = DescriptorSlot {
            pa: PhysAddr(POOL.1.get() - 8),
            ..slot()
        };
        arch.write_descriptor(last, 0);
        nothing(&mut arch);
    }

    #[test]
    fn i7_a_live_descriptor_changing_its_output_address_is_reported() {
        let mut arch = mapped();
        let old = page(FRAME, Rights::READ_WRITE);
        let new = page(OTHER_FRAME, Rights::READ_WRITE);
        arch.write_descriptor(slot(), new);
        assert_eq!(
            arch.take_violations(),
            vec![format!(
                "I7: live descriptor at 0x10000000 (vmid 2 ipa 0x40000000 level 3) changed \
                 {old:#x} -> {new:#x} without break-before-make"
            )]
        );
        // Changing the output address in place is not a removal: nothing goes stale.
        arch.end_call();
        nothing(&mut arch);
    }

    #[test]
    fn i7_a_make_before_the_break_is_invalidated_is_reported() {
        let mut arch = mapped();
        arch.write_descriptor(slot(), 0);
        arch.write_descriptor(slot(), page(OTHER_FRAME, Rights::READ_WRITE));
        assert_eq!(
            arch.take_violations(),
            vec![
                "I7: descriptor at 0x10000000 (vmid 2 ipa 0x40000000) made before its break was \
                 invalidated"
                    .to_owned()
            ]
        );
        arch.invalidate_ipa(VMID, IPA);
        arch.end_call();
        nothing(&mut arch);
    }

    #[test]
    fn i7_a_make_inside_a_broken_block_is_reported() {
        // A 2 MiB block broken and not invalidated; a page made in its range overlaps it.
        let mut arch = fake();
        let block = DescriptorSlot {
            pa: PhysAddr(POOL.0.get() + 0x800),
            vmid: VMID,
            ipa: Ipa(0x4000_0000),
            level: 2,
        };
        let leaf = Leaf {
            pa: FRAME,
            rights: Rights::READ_WRITE,
            memory: MemoryType::Normal,
            state: PageState::Owned,
        };
        arch.write_descriptor(block, encode_leaf(&leaf, 2));
        arch.end_call();
        arch.write_descriptor(block, 0);
        let inside = DescriptorSlot {
            pa: POOL.0,
            vmid: VMID,
            ipa: Ipa(0x401F_F000),
            level: 3,
        };
        arch.write_descriptor(inside, page(FRAME, Rights::READ));
        assert_eq!(
            arch.take_violations(),
            vec![
                "I7: descriptor at 0x10000000 (vmid 2 ipa 0x401ff000) made before its break was \
                 invalidated"
                    .to_owned()
            ]
        );
    }

    #[test]
    fn a_make_next_to_a_break_or_in_another_vmid_is_not_overlapping() {
        let mut arch = mapped();
        arch.write_descriptor(slot(), 0);
        let next = DescriptorSlot {
            pa: PhysAddr(POOL.0.get() + 8),
            ipa: Ipa(IPA.get() + PAGE_SIZE),
            ..slot()
        };
        arch.write_descriptor(next, page(OTHER_FRAME, Rights::READ_WRITE));
        let before = DescriptorSlot {
            pa: PhysAddr(POOL.0.get() + 16),
            ipa: Ipa(IPA.get() - PAGE_SIZE),
            ..slot()
        };
        arch.write_descriptor(before, page(OTHER_FRAME, Rights::READ_WRITE));
        let other_vmid = DescriptorSlot {
            pa: PhysAddr(POOL.0.get() + PAGE_SIZE),
            vmid: Vmid(3),
            ..slot()
        };
        arch.write_descriptor(other_vmid, page(OTHER_FRAME, Rights::READ_WRITE));
        nothing(&mut arch);
    }

    #[test]
    fn i7_a_make_where_a_translation_was_only_narrowed_is_not_a_make_before_break() {
        // A narrowed block still translates (with fewer rights): nothing was broken, so making
        // a page inside its range breaks no break-before-make rule. Only I6 remains to report.
        let mut arch = fake();
        let block = DescriptorSlot {
            pa: PhysAddr(POOL.0.get() + 0x800),
            vmid: VMID,
            ipa: Ipa(0x4000_0000),
            level: 2,
        };
        let leaf = |rights| Leaf {
            pa: FRAME,
            rights,
            memory: MemoryType::Normal,
            state: PageState::Owned,
        };
        arch.write_descriptor(block, encode_leaf(&leaf(Rights::READ_WRITE), 2));
        arch.end_call();
        arch.write_descriptor(block, encode_leaf(&leaf(Rights::READ), 2));
        arch.write_descriptor(slot(), page(FRAME, Rights::READ));
        nothing(&mut arch);
        arch.end_call();
        assert_eq!(
            arch.take_violations(),
            vec![
                "I6: stale translation survives the call: vmid 2 ipa 0x40000000 span 0x200000 \
                 (narrowed)"
                    .to_owned()
            ]
        );
    }

    #[test]
    fn i6_a_removal_not_invalidated_by_the_end_of_the_call_is_reported() {
        let mut arch = mapped();
        arch.write_descriptor(slot(), 0);
        nothing(&mut arch);
        assert_eq!(arch.end_call(), vec![]);
        assert_eq!(
            arch.take_violations(),
            vec![
                "I6: stale translation survives the call: vmid 2 ipa 0x40000000 span 0x1000"
                    .to_owned()
            ]
        );
        // Reported once: the next call starts clean.
        arch.end_call();
        nothing(&mut arch);
    }

    #[test]
    fn i6_a_narrowing_not_invalidated_is_reported_as_narrowed() {
        // Losing read, losing write, losing execute (XN set).
        for (before, narrower) in [
            (Rights::READ_WRITE, Rights::READ),
            (Rights::READ_WRITE, Rights::WRITE),
            (Rights::ALL, Rights::READ_WRITE),
        ] {
            let mut arch = fake();
            arch.write_descriptor(slot(), page(FRAME, before));
            arch.end_call();
            let narrower = page(FRAME, narrower);
            arch.write_descriptor(slot(), narrower);
            arch.end_call();
            assert_eq!(
                arch.take_violations(),
                vec![
                    "I6: stale translation survives the call: vmid 2 ipa 0x40000000 span 0x1000 \
                     (narrowed)"
                        .to_owned()
                ],
                "{narrower:#x}"
            );
        }
    }

    #[test]
    fn i6_invalidating_another_address_or_vmid_does_not_help() {
        let mut arch = mapped();
        arch.write_descriptor(slot(), 0);
        arch.invalidate_ipa(VMID, Ipa(IPA.get() + PAGE_SIZE));
        arch.invalidate_ipa(VMID, Ipa(IPA.get() - PAGE_SIZE));
        arch.invalidate_ipa(Vmid(3), IPA);
        arch.invalidate_vmid(Vmid(3));
        arch.end_call();
        assert_eq!(
            arch.take_violations(),
            vec![
                "I6: stale translation survives the call: vmid 2 ipa 0x40000000 span 0x1000"
                    .to_owned()
            ]
        );
    }

    #[test]
    fn i6_an_ipa_invalidation_inside_a_broken_block_clears_it() {
        let mut arch = fake();
        let block = DescriptorSlot {
            pa: POOL.0,
            vmid: VMID,
            ipa: Ipa(0x4000_0000),
            level: 2,
        };
        let leaf = Leaf {
            pa: FRAME,
            rights: Rights::READ_WRITE,
            memory: MemoryType::Normal,
            state: PageState::Owned,
        };
        arch.write_descriptor(block, encode_leaf(&leaf, 2));
        arch.end_call();
        arch.write_descriptor(block, 0);
        arch.invalidate_ipa(VMID, Ipa(0x401F_F000));
        arch.end_call();
        nothing(&mut arch);
    }

    #[test]
    fn i6_a_removed_table_needs_a_vmid_wide_invalidation() {
        // Walk caches hold a table for its whole span; an IPA invalidation does not reach them.
        let mut arch = fake();
        let l2 = DescriptorSlot {
            pa: POOL.0,
            vmid: VMID,
            ipa: Ipa(0),
            level: 2,
        };
        arch.write_descriptor(l2, encode_table(PhysAddr(POOL.0.get() + PAGE_SIZE)));
        arch.end_call();
        arch.write_descriptor(l2, 0);
        arch.invalidate_ipa(VMID, Ipa(0));
        arch.end_call();
        assert_eq!(
            arch.take_violations(),
            vec![
                "I6: stale translation survives the call: vmid 2 ipa 0x0 span 0x200000".to_owned()
            ]
        );
    }

    #[test]
    fn i6_a_frame_written_while_a_stale_translation_reaches_it_is_reported() {
        let mut arch = mapped();
        arch.write_descriptor(slot(), 0);
        arch.page_mut(FRAME)[0] = 7;
        assert_eq!(
            arch.take_violations(),
            vec![
                "I6: frame 0x40000000 written while vmid 2 can still reach it at 0x40000000"
                    .to_owned()
            ]
        );
        // A frame next to it is out of reach, and table pages are not frames.
        arch.zero_page(OTHER_FRAME);
        arch.zero_page(PhysAddr(POOL.0.get() + PAGE_SIZE));
        nothing(&mut arch);
        assert_eq!(arch.take_frame_writes(), vec![FRAME, OTHER_FRAME]);
    }

    #[test]
    fn i6_a_frame_inside_a_broken_block_is_reached() {
        let mut arch = fake();
        let block = DescriptorSlot {
            pa: POOL.0,
            vmid: VMID,
            ipa: Ipa(0x4000_0000),
            level: 2,
        };
        let leaf = Leaf {
            pa: FRAME,
            rights: Rights::READ_WRITE,
            memory: MemoryType::Normal,
            state: PageState::Owned,
        };
        arch.write_descriptor(block, encode_leaf(&leaf, 2));
        arch.end_call();
        arch.write_descriptor(block, 0);
        let last = PhysAddr(FRAME.get() + 0x1F_F000);
        arch.zero_page(last);
        arch.zero_page(PhysAddr(FRAME.get() + 0x20_0000));
        assert_eq!(
            arch.take_violations(),
            vec![
                "I6: frame 0x401ff000 written while vmid 2 can still reach it at 0x40000000"
                    .to_owned()
            ]
        );
    }

    #[test]
    fn breaking_an_already_broken_slot_again_is_not_a_make() {
        let mut arch = mapped();
        arch.write_descriptor(slot(), 0);
        arch.write_descriptor(slot(), 0);
        nothing(&mut arch);
        arch.invalidate_ipa(VMID, IPA);
        arch.end_call();
        nothing(&mut arch);
    }

    #[test]
    fn i6_a_broken_block_reaches_from_its_decoded_base() {
        // Bits 20:12 of a level-2 block's output address are RES0: the walker reads the block
        // as starting at the 2 MiB boundary, so that is where the stale entry reaches from.
        let mut arch = fake();
        let block = DescriptorSlot {
            pa: POOL.0,
            vmid: VMID,
            ipa: Ipa(0x4000_0000),
            level: 2,
        };
        let leaf = Leaf {
            pa: FRAME,
            rights: Rights::READ_WRITE,
            memory: MemoryType::Normal,
            state: PageState::Owned,
        };
        arch.write_descriptor(block, encode_leaf(&leaf, 2) | OTHER_FRAME.get());
        arch.end_call();
        arch.write_descriptor(block, 0);
        arch.zero_page(FRAME);
        assert_eq!(
            arch.take_violations(),
            vec![
                "I6: frame 0x40000000 written while vmid 2 can still reach it at 0x40000000"
                    .to_owned()
            ]
        );
    }

    #[test]
    fn i6_a_broken_malformed_leaf_still_reaches_its_frame() {
        // The access flag is clear: the core never writes this, but a TLB may hold it.
        const ACCESS_FLAG: u64 = 1 << 10;
        let mut arch = fake();
        arch.write_descriptor(slot(), page(FRAME, Rights::READ_WRITE) & !ACCESS_FLAG);
        arch.end_call();
        arch.write_descriptor(slot(), 0);
        arch.zero_page(FRAME);
        assert_eq!(
            arch.take_violations(),
            vec![
                "I6: frame 0x40000000 written while vmid 2 can still reach it at 0x40000000"
                    .to_owned()
            ]
        );
    }

    // ------------------------------------------------------ contents (I5) and memory (I8) --

    #[test]
    fn pages_read_as_their_pattern_until_written() {
        let mut arch = fake();
        assert!(arch.is_pristine(FRAME));
        assert!(!arch.is_zero(FRAME));
        assert_eq!(arch.peek(PhysAddr(FRAME.get() + 8)), pattern_word(FRAME, 1));
        assert_ne!(pattern_word(FRAME, 1), pattern_word(FRAME, 2));
        assert_ne!(pattern_word(FRAME, 1), pattern_word(OTHER_FRAME, 1));
        let before = arch.digest(FRAME);
        let twin = arch.clone();
        arch.poke(PhysAddr(FRAME.get() + 8), 5);
        assert_eq!(arch.peek(PhysAddr(FRAME.get() + 8)), 5);
        assert_eq!(
            arch.peek(PhysAddr(FRAME.get() + 16)),
            pattern_word(FRAME, 2)
        );
        assert!(!arch.is_pristine(FRAME));
        assert_ne!(arch.digest(FRAME), before);
        assert!(!arch.same_memory(&twin));
        // Writing the pattern back is still a write: any write is a change.
        arch.poke(PhysAddr(FRAME.get() + 8), pattern_word(FRAME, 1));
        assert_eq!(arch.digest(FRAME), before);
        assert!(!arch.same_memory(&twin));
        assert!(twin.same_memory(&twin.clone()));
    }

    #[test]
    fn every_pattern_word_differs_and_none_is_zero() {
        let mut words: Vec<u64> = (0..512).map(|index| pattern_word(FRAME, index)).collect();
        words.extend((0..512).map(|index| pattern_word(OTHER_FRAME, index)));
        assert!(words.iter().all(|&word| word != 0));
        words.sort_unstable();
        words.dedup();
        assert_eq!(words.len(), 1024);
    }

    #[test]
    fn same_memory_compares_addresses_and_contents() {
        // Equal contents at different addresses are different memory.
        let (mut one, mut other) = (fake(), fake());
        one.zero_page(FRAME);
        other.zero_page(OTHER_FRAME);
        assert!(!one.same_memory(&other));
        // Equal contents written separately (no shared page) are the same memory.
        let (mut one, mut other) = (fake(), fake());
        one.poke(FRAME, 5);
        other.poke(FRAME, 5);
        assert!(one.same_memory(&other));
        other.poke(FRAME, 6);
        assert!(!one.same_memory(&other));
    }

    #[test]
    fn a_page_written_to_all_zeroes_is_zero() {
        let mut arch = fake();
        arch.page_mut(FRAME).fill(0);
        assert!(arch.is_zero(FRAME));
    }

    #[test]
    fn zeroing_is_seen_by_is_zero_and_with_page() {
        let mut arch = fake();
        arch.zero_page(FRAME);
        assert!(arch.is_zero(FRAME));
        assert_eq!(arch.with_page(FRAME, &mut |words| words[511]), 0);
        arch.poke(FRAME, 1);
        assert!(!arch.is_zero(FRAME));
        assert_eq!(
            arch.with_page(OTHER_FRAME, &mut |words| words[3]),
            pattern_word(OTHER_FRAME, 3)
        );
    }
}
