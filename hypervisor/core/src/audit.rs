//! The audit: cross-checks every domain's stage-2 table against the frame table (I1-I4).
//!
//! It reads the tables through the software walker ([`crate::walk`]), the way the hardware
//! would, never through the engine's own bookkeeping, and reports every violation with its
//! domain, IPA, physical address and invariant. It allocates nothing: the caller lends a
//! scratch counter per frame. I5-I8 are properties of calls, not of a state; the host fake
//! (`arch::fake`) and the tests check them (docs/ISOLATION.md).
//!
//! Two entry points make the same checks at different costs:
//!
//! | audit | descriptor -> record | record -> descriptor | cost |
//! | --- | --- | --- | --- |
//! | [`audit`] (`PD_AUDIT`, tests, test builds' boot) | every descriptor of every domain | every frame, once per domain | O(frames x domains) |
//! | [`audit_boot`] (the EL2 kernel's boot) | every descriptor of every domain | the frames boot mapped ([`Engine::boot_frames`]), once | O(mapped pages + tables) |
//!
//! The full audit counts each domain's holdings of each frame in a scratch byte it clears per
//! domain. The boot audit clears only the frames boot mapped, counts every domain's holdings of
//! a frame into one byte, and marks the frame while a domain's walk is on it: a second holding
//! by the same domain is the duplicate the full audit's record pass reports. Since every
//! counted descriptor is also checked to belong to a distinct holder, a frame whose count
//! equals its number of holders has exactly one descriptor per holder. What the boot audit
//! does not look at is the frame table outside what boot mapped, which boot never wrote (the
//! table starts all free): a holding recorded there is reported when a domain maps it, and a
//! record there that nobody maps is left to the full audit.

use core::cmp::Ordering;
use core::fmt;

use crate::addr::{Ipa, PhysAddr, PAGE_SIZE};
use crate::arch::PhysMemory;
use crate::descriptor::{level_span, Leaf, PageState};
use crate::domain::{ConversionMode, DomainId, Domains};
use crate::engine::Engine;
use crate::frame_table::{FrameState, FrameStorage};
use crate::walk::{for_each_leaf, LeafEntry, LeafKind};

/// The numbered invariants of docs/ISOLATION.md.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Invariant {
    /// Exclusive: an `Owned` or `Lent` frame is mapped in exactly one stage-2 table.
    I1,
    /// Sharing: a shared frame is mapped exactly in its owner and listed borrowers, with rights
    /// no wider than granted.
    I2,
    /// Agreement: descriptors and frame-table holder records correspond one to one.
    I3,
    /// Hypervisor memory is mapped in no domain.
    I4,
    /// Contents: only relinquish and teardown zero, only frames leaving their owner.
    I5,
    /// TLB: no stale translation survives a call that removed or narrowed it.
    I6,
    /// Break-before-make.
    I7,
    /// Atomicity: a refused request changes nothing.
    I8,
}

/// One violation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Violation {
    /// Which invariant.
    pub invariant: Invariant,
    /// The domain whose table shows it.
    pub domain: DomainId,
    /// The IPA concerned, where there is exactly one. `None` for what the frame-table side
    /// finds (the frame table records who holds a frame, not where they map it) and for a
    /// root-table page (it translates half of the IPA space, not one address).
    pub ipa: Option<Ipa>,
    /// The physical address concerned (frame, or table page).
    pub pa: PhysAddr,
    /// What exactly is wrong.
    pub what: &'static str,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?} {}", self.invariant, self.domain)?;
        if let Some(ipa) = self.ipa {
            write!(f, " ipa {ipa}")?;
        }
        write!(f, " pa {}: {}", self.pa, self.what)
    }
}

/// What the audit looked at.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AuditSummary {
    /// 4 KiB frames' worth of valid leaves examined.
    pub mapped_pages: usize,
    /// Violations reported: the number of times the audit called its `report` callback.
    pub violations: usize,
}

/// The one way a violation leaves the audit: it is counted and passed on in the same step, so
/// the summary's count is the number of reports by construction (the boot line's
/// `violations=N` cannot disagree with the violation lines printed before it).
struct Reporter<'a> {
    report: &'a mut dyn FnMut(Violation),
    reported: usize,
}

impl Reporter<'_> {
    fn report(&mut self, violation: Violation) {
        self.reported += 1;
        (self.report)(violation);
    }
}

/// Audits every domain. `scratch` needs one byte per tracked frame; with less, the audit
/// refuses to run and returns `None` (the kernel carves it from its heap with the frame table).
pub fn audit<S: FrameStorage, C>(
    engine: &Engine<S>,
    domains: &Domains<C>,
    memory: &impl PhysMemory,
    scratch: &mut [u8],
    report: &mut dyn FnMut(Violation),
) -> Option<AuditSummary> {
    let counters = scratch.get_mut(..engine.frame_table().frames())?;
    let mut reporter = Reporter {
        report,
        reported: 0,
    };
    let mut mapped_pages = 0;
    for (domain_id, domain) in domains.iter() {
        let mut auditor = DomainAudit::new(engine, domain_id, domain, counters, &mut reporter);
        let root = domain.vspace.table.root();
        auditor.counters.fill(0);
        auditor.check_table(memory, root);
        auditor.check_records();
        mapped_pages += auditor.mapped_pages;
    }
    Some(AuditSummary {
        mapped_pages,
        violations: reporter.reported,
    })
}

/// The boot audit: every descriptor of every domain, as [`audit`] checks it, and the frames
/// boot mapped ([`Engine::boot_frames`]) against the descriptors, in time proportional to what
/// boot mapped rather than to frames x domains (module doc). It reports the same descriptor
/// violations and duplicates as [`audit`]; a holder without its descriptor is reported once
/// per frame, naming the frame's owner (which holder lacks it is what the full audit tells).
/// `scratch` is as for [`audit`].
pub fn audit_boot<S: FrameStorage, C>(
    engine: &Engine<S>,
    domains: &Domains<C>,
    memory: &impl PhysMemory,
    scratch: &mut [u8],
    report: &mut dyn FnMut(Violation),
) -> Option<AuditSummary> {
    let frames = engine.frame_table();
    let counters = scratch.get_mut(..frames.frames())?;
    let boot = engine.boot_frames();
    counters.get_mut(boot.clone())?.fill(0);
    let mut reporter = Reporter {
        report,
        reported: 0,
    };
    let mut mapped_pages = 0;
    for (domain_id, domain) in domains.iter() {
        let mut auditor = DomainAudit::new(engine, domain_id, domain, counters, &mut reporter);
        auditor.tally = Tally::Boot {
            start: boot.start,
            end: boot.end,
        };
        let root = domain.vspace.table.root();
        auditor.check_table(memory, root);
        auditor.unmark(memory, root);
        mapped_pages += auditor.mapped_pages;
    }
    for index in boot {
        let record = frames.record_at(index);
        let Some(owner) = record.owner() else {
            continue;
        };
        // The owner maps the frame (or, lent, keeps its annotation); each borrower maps it.
        let holders = 1 + frames.borrower_count(index);
        if usize::from(counters[index] & BOOT_COUNT) < holders {
            reporter.report(Violation {
                invariant: Invariant::I3,
                domain: owner,
                ipa: None,
                pa: frames.frame_address(index),
                what: "holder record without a descriptor",
            });
        }
    }
    Some(AuditSummary {
        mapped_pages,
        violations: reporter.reported,
    })
}

/// The scratch byte of one frame while one domain is audited: the domain's holder mappings of
/// the frame in the low nibble, its lent-away annotations naming the frame in the high nibble.
/// Each nibble stops at 15, so a count never spills into the other one.
const MAPPINGS: u8 = 0x0F;
const ANNOTATIONS: u8 = 0xF0;

fn count_mapping(counter: &mut u8) {
    if *counter & MAPPINGS != MAPPINGS {
        *counter += 1;
    }
}

fn count_annotation(counter: &mut u8) {
    if *counter & ANNOTATIONS != ANNOTATIONS {
        *counter += 0x10;
    }
}

/// The scratch byte of one frame during the boot audit: the holdings of every domain audited so
/// far (a frame has at most one per domain, and fewer than 64 domains), a mark while the current
/// domain's walk has counted it, and whether that domain's duplicate was reported already.
const BOOT_COUNT: u8 = 0x3F;
const BOOT_MARK: u8 = 0x80;
const BOOT_DUPLICATE: u8 = 0x40;

/// How a domain's holdings are counted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Tally {
    /// [`audit`]: per domain, mappings and annotations apart, checked by the record pass.
    PerDomain,
    /// [`audit_boot`]: into the running count of the frames boot mapped, `[start, end)`.
    Boot { start: usize, end: usize },
}

/// What a counted holding is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Holding {
    /// A holder's mapping.
    Mapping,
    /// The owner's lent-away annotation.
    Annotation,
}

/// The audit of one domain's stage-2 table.
struct DomainAudit<'a, 'r, S: FrameStorage> {
    engine: &'a Engine<S>,
    domain: DomainId,
    /// A split-mode guest: private pages below the alias bit, shared ones above it.
    split: bool,
    counters: &'a mut [u8],
    reporter: &'a mut Reporter<'r>,
    mapped_pages: usize,
    tally: Tally,
}

impl<'a, 'r, S: FrameStorage> DomainAudit<'a, 'r, S> {
    fn new<C>(
        engine: &'a Engine<S>,
        id: DomainId,
        domain: &crate::domain::Domain<C>,
        counters: &'a mut [u8],
        reporter: &'a mut Reporter<'r>,
    ) -> Self {
        let split = domain
            .vspace
            .link
            .is_some_and(|link| link.mode == ConversionMode::Split);
        Self {
            engine,
            domain: id,
            split,
            counters,
            reporter,
            mapped_pages: 0,
            tally: Tally::PerDomain,
        }
    }

    fn emit(&mut self, invariant: Invariant, ipa: Option<Ipa>, pa: PhysAddr, what: &'static str) {
        self.reporter.report(Violation {
            invariant,
            domain: self.domain,
            ipa,
            pa,
            what,
        });
    }

    /// Checks every descriptor of the table rooted at `root` against the frame table, counting
    /// the holdings it finds.
    fn check_table(&mut self, memory: &impl PhysMemory, root: PhysAddr) {
        let pool = self.engine.pool();
        // The root is two concatenated level-1 tables (VTCR_EL2.SL0 = 1, T0SZ = 24): both pages
        // are translation tables and must be hypervisor memory.
        for page in [root, PhysAddr(root.get() + PAGE_SIZE)] {
            if !pool.contains(page) {
                self.emit(
                    Invariant::I4,
                    None,
                    page,
                    "stage-2 root page outside the table pool",
                );
            }
        }
        // The walker hands over table addresses already masked to a page (descriptor::decode).
        let table_ok = |table: PhysAddr| pool.contains(table);
        for_each_leaf(memory, root, &table_ok, &mut |entry| {
            self.check_entry(entry)
        });
    }

    /// Counts one holding of frame `index` (found at `ipa`).
    fn count(&mut self, index: usize, ipa: Ipa, holding: Holding) {
        let Tally::Boot { start, end } = self.tally else {
            match holding {
                Holding::Mapping => count_mapping(&mut self.counters[index]),
                Holding::Annotation => count_annotation(&mut self.counters[index]),
            }
            return;
        };
        let frames = self.engine.frame_table();
        let pa = frames.frame_address(index);
        if !(start..end).contains(&index) {
            self.emit(
                Invariant::I3,
                Some(ipa),
                pa,
                "holder record outside the frames boot mapped",
            );
            return;
        }
        let counter = self.counters[index];
        if counter & BOOT_MARK == 0 {
            self.counters[index] =
                BOOT_MARK | (counter & BOOT_COUNT).saturating_add(1).min(BOOT_COUNT);
            return;
        }
        if counter & BOOT_DUPLICATE != 0 {
            return;
        }
        self.counters[index] = counter | BOOT_DUPLICATE;
        let (invariant, what) = match (holding, frames.record_at(index).state()) {
            (Holding::Annotation, _) => (
                Invariant::I3,
                "lent frame with more than one lent-away annotation in its owner",
            ),
            (Holding::Mapping, FrameState::SharedOwned) => (
                Invariant::I2,
                "shared frame mapped more than once by one holder",
            ),
            (Holding::Mapping, _) => (Invariant::I1, "exclusive frame mapped more than once"),
        };
        self.emit(invariant, None, pa, what);
    }

    /// After a boot-audit walk: clears this domain's marks (a second walk of the same table, so
    /// the cost stays proportional to what it maps).
    fn unmark(&mut self, memory: &impl PhysMemory, root: PhysAddr) {
        let Tally::Boot { start, end } = self.tally else {
            return;
        };
        let pool = self.engine.pool();
        let frames = self.engine.frame_table();
        let counters = &mut *self.counters;
        let mut clear = |pa: PhysAddr| {
            if let Some(counter) = frames
                .index(pa)
                .filter(|index| (start..end).contains(index))
                .and_then(|index| counters.get_mut(index))
            {
                *counter &= BOOT_COUNT;
            }
        };
        for_each_leaf(
            memory,
            root,
            &|table| pool.contains(table),
            &mut |entry| match entry.kind {
                LeafKind::Mapped(leaf) => {
                    for page in 0..level_span(entry.level) / PAGE_SIZE {
                        clear(PhysAddr(leaf.pa.get() + page * PAGE_SIZE));
                    }
                }
                LeafKind::LentAway(pa) => clear(pa),
                _ => {}
            },
        );
    }

    /// Descriptor -> record: one non-empty descriptor.
    fn check_entry(&mut self, entry: LeafEntry) {
        let frames = self.engine.frame_table();
        match entry.kind {
            LeafKind::Mapped(leaf) => {
                // Ownership is per frame: a block is checked page by page.
                for page in 0..level_span(entry.level) / PAGE_SIZE {
                    self.mapped_pages += 1;
                    let ipa = Ipa(entry.ipa.get() + page * PAGE_SIZE);
                    let pa = PhysAddr(leaf.pa.get() + page * PAGE_SIZE);
                    self.check_leaf(ipa, pa, leaf);
                }
            }
            LeafKind::LentAway(pa) => {
                let lent_by_this_domain = frames.record(pa).is_some_and(|record| {
                    record.owner() == Some(self.domain) && record.state() == FrameState::Lent
                });
                match frames.index(pa) {
                    Some(index) if lent_by_this_domain => {
                        self.count(index, entry.ipa, Holding::Annotation);
                    }
                    _ => self.emit(
                        Invariant::I3,
                        Some(entry.ipa),
                        pa,
                        "lent-away annotation for a frame not lent by this domain",
                    ),
                }
            }
            // One report per descriptor: a stray level-1 entry is one fault, not 262144.
            LeafKind::Malformed(raw) | LeafKind::Stray(raw) => self.emit(
                Invariant::I3,
                Some(entry.ipa),
                PhysAddr(raw & 0x0000_FFFF_FFFF_F000),
                "descriptor the core never writes",
            ),
            LeafKind::BadTable(table) => self.emit(
                Invariant::I4,
                Some(entry.ipa),
                table,
                "translation table outside the table pool",
            ),
        }
    }

    /// Descriptor -> record: one mapped 4 KiB page. Only a holder's mapping is counted for the
    /// record pass; any other mapping is reported here, once.
    fn check_leaf(&mut self, ipa: Ipa, pa: PhysAddr, leaf: Leaf) {
        let engine = self.engine;
        let frames = engine.frame_table();
        let protected = engine
            .protected_ranges()
            .iter()
            .any(|&(start, end)| start <= pa && pa < end);
        if protected {
            self.emit(
                Invariant::I4,
                Some(ipa),
                pa,
                "hypervisor memory mapped in a domain",
            );
            return;
        }
        let Some(index) = frames.index(pa) else {
            if leaf.state != PageState::Passthrough {
                self.emit(
                    Invariant::I3,
                    Some(ipa),
                    pa,
                    "untracked memory mapped with an ownership state",
                );
            }
            return;
        };
        let record = frames.record_at(index);
        let owner = record.owner() == Some(self.domain);
        let borrowed = frames.borrower_rights(index, self.domain);
        let expected = match record.state() {
            FrameState::Owned if owner => PageState::Owned,
            FrameState::SharedOwned if owner => PageState::SharedOwned,
            FrameState::Owned | FrameState::SharedOwned | FrameState::Lent
                if borrowed.is_some() =>
            {
                PageState::SharedBorrowed
            }
            not_held => {
                let (invariant, what) = match not_held {
                    FrameState::Owned => (
                        Invariant::I1,
                        "owned frame mapped by a domain that is not its owner",
                    ),
                    FrameState::Lent => (
                        Invariant::I1,
                        "lent frame mapped by a domain other than its borrower",
                    ),
                    FrameState::SharedOwned => (
                        Invariant::I2,
                        "shared frame mapped by a domain that is not a holder",
                    ),
                    FrameState::Free => (Invariant::I3, "free frame mapped"),
                };
                self.emit(invariant, Some(ipa), pa, what);
                return;
            }
        };
        self.count(index, ipa, Holding::Mapping);
        if leaf.state != expected {
            self.emit(
                Invariant::I3,
                Some(ipa),
                pa,
                "software state bits disagree with the frame table",
            );
        }
        let granted = borrowed
            .filter(|_| !owner)
            .unwrap_or_else(|| record.owner_rights());
        if !granted.contains(leaf.rights) {
            self.emit(
                Invariant::I2,
                Some(ipa),
                pa,
                "mapping grants more rights than the frame table records",
            );
        }
        if leaf.memory != record.memory() {
            self.emit(
                Invariant::I3,
                Some(ipa),
                pa,
                "memory type disagrees with the frame table",
            );
        }
        if self.split && ipa.is_shared_alias() == (expected == PageState::Owned) {
            self.emit(
                Invariant::I3,
                Some(ipa),
                pa,
                "split-mode page in the wrong half (private vs shared alias)",
            );
        }
    }

    /// Record -> descriptor: every holding of this domain has exactly one descriptor (a
    /// mapping, or for the owner of a lent frame its lent-away annotation).
    fn check_records(&mut self) {
        let frames = self.engine.frame_table();
        for index in 0..self.counters.len() {
            let count = self.counters[index];
            let record = frames.record_at(index);
            // A free frame no descriptor names expects nothing and has nothing: most of RAM,
            // skipped without the borrower lookup (the audit after every conversion in QEMU).
            if count == 0 && record.state() == FrameState::Free {
                continue;
            }
            let pa = frames.frame_address(index);
            let owner = record.owner() == Some(self.domain);
            let borrower = frames.borrower_rights(index, self.domain).is_some();
            let (expected_mappings, expected_annotations) = match record.state() {
                FrameState::Free => (0, 0),
                FrameState::Owned | FrameState::SharedOwned => (u8::from(owner || borrower), 0),
                FrameState::Lent => (u8::from(borrower), u8::from(owner)),
            };
            match (count & MAPPINGS).cmp(&expected_mappings) {
                Ordering::Greater if record.state() == FrameState::SharedOwned => self.emit(
                    Invariant::I2,
                    None,
                    pa,
                    "shared frame mapped more than once by one holder",
                ),
                Ordering::Greater => self.emit(
                    Invariant::I1,
                    None,
                    pa,
                    "exclusive frame mapped more than once",
                ),
                Ordering::Less => self.emit(
                    Invariant::I3,
                    None,
                    pa,
                    "holder record without a descriptor",
                ),
                Ordering::Equal => {}
            }
            match ((count & ANNOTATIONS) >> 4).cmp(&expected_annotations) {
                Ordering::Greater => self.emit(
                    Invariant::I3,
                    None,
                    pa,
                    "lent frame with more than one lent-away annotation in its owner",
                ),
                Ordering::Less => self.emit(
                    Invariant::I3,
                    None,
                    pa,
                    "lent frame without a lent-away annotation in its owner",
                ),
                Ordering::Equal => {}
            }
        }
    }
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test fails loudly on an unexpected error"
)]
mod tests {
    //! Every check of the audit, planted alone in an otherwise clean system, with the whole
    //! answer asserted: exactly one violation (invariant, domain, IPA, PA, text) and a count of
    //! exactly one.
    //!
    //! Mutation check: `cargo xtask mutants hypervisor/core/src/audit.rs`. Explained equivalent
    //! mutants, one `equivalent mutant: <name> -- <why>` line each, which that command reads
    //! (build/src/tasks/mutants.rs):
    //!
    //! equivalent mutant: hypervisor/core/src/audit.rs:329:27: replace | with ^ in DomainAudit<'a, 'r, S>::count -- the count is masked with BOOT_COUNT (bits 5:0) and capped at it, so it shares no bit with BOOT_MARK (bit 7): `|` and `^` give the same byte.
    //! equivalent mutant: hypervisor/core/src/audit.rs:335:40: replace | with ^ in DomainAudit<'a, 'r, S>::count -- the line is reached only when `counter & BOOT_DUPLICATE` is zero (checked just above), so setting the bit with `|` or flipping it with `^` gives the same byte.
    //! equivalent mutant: hypervisor/core/src/audit.rs:536:22: replace == with != in DomainAudit<'a, 'r, S>::check_records -- the descriptor pass never counts a holding of a free frame (check_leaf and check_entry report it and return before counting), so a free frame's count is always 0: the mutant skips nothing and the full check of such a frame expects no mapping and finds none; only the skip's speed differs.

    extern crate std;
    use super::*;
    use crate::arch::{DescriptorSlot, Stage2Arch};
    use crate::descriptor::{encode_leaf, encode_lent_away, encode_table, MemoryType, Rights};
    use crate::engine::{BootMapping, BootSharing};
    use crate::small_system::*;
    use crate::walk::descriptor_address;
    use std::vec;
    use std::vec::Vec;

    /// Frame `C[n]` of the 2 MiB block: its guest IPA and physical address.
    fn block_page(n: u64) -> (Ipa, PhysAddr) {
        (
            Ipa(BLOCK_IPA.get() + n * PAGE_SIZE),
            PhysAddr(FRAME_BASE.get() + n * PAGE_SIZE),
        )
    }

    fn host_ipa(guest_ipa: Ipa) -> Ipa {
        window().host_ipa(guest_ipa).unwrap()
    }

    const FRAME_A: PhysAddr = PhysAddr(0x4020_0000);
    const FRAME_B: PhysAddr = PhysAddr(0x4020_1000);

    /// Valid leaves of the clean system: the host's 514-page window less A, C0 and C1
    /// (donated) and B and C3 (lent: an annotation, not a mapping), plus its borrowed C1
    /// (510); guest 1's A, B and C4 (3); guest 2's C0, C1, C2 and C3 (4).
    const CLEAN_MAPPED_PAGES: usize = 517;

    /// A system where every kind of holding is present, so that each check runs over states it
    /// must accept (a false alarm fails the clean test):
    /// - guest 1 (history): owns A, borrows the host's lent B, borrows C4 read-only;
    /// - guest 2 (split): owns C0 (private half), owns C1 shared with the host (alias), borrows
    ///   the host's shared C2 and lent C3 (alias);
    /// - the host owns the rest of its window, C2 and C4 shared, B and C3 lent away.
    fn system() -> SmallSystem {
        let mut system = SmallSystem::boot().unwrap();
        let (mut engine, arch) = system.parts();
        engine
            .donate(arch, HOST, GUEST_HISTORY, FRAME_A_IPA, 1)
            .unwrap();
        engine
            .lend(
                arch,
                HOST,
                GUEST_HISTORY,
                FRAME_B_IPA,
                1,
                Rights::READ_WRITE,
            )
            .unwrap();
        engine
            .share_with_guest(arch, HOST, GUEST_HISTORY, block_page(4).0, 1, Rights::READ)
            .unwrap();
        engine
            .donate(arch, HOST, GUEST_SPLIT, block_page(0).0, 2)
            .unwrap();
        engine.share(arch, GUEST_SPLIT, block_page(1).0, 1).unwrap();
        engine
            .share_with_guest(
                arch,
                HOST,
                GUEST_SPLIT,
                block_page(2).0,
                1,
                Rights::READ_WRITE,
            )
            .unwrap();
        engine
            .lend(
                arch,
                HOST,
                GUEST_SPLIT,
                block_page(3).0,
                1,
                Rights::READ_WRITE,
            )
            .unwrap();
        arch.end_call();
        assert_eq!(arch.take_violations(), Vec::<String>::new());
        system
    }

    /// The whole answer of the full audit, after checking that the boot audit agrees with it
    /// ([`assert_boot_audit_agrees`]): every test that plants a violation checks both.
    fn run(system: &SmallSystem) -> (Vec<Violation>, AuditSummary) {
        let (found, summary) = run_with(system, audit);
        assert_boot_audit_agrees(system, &found, summary);
        (found, summary)
    }

    /// The signature of [`audit`] and [`audit_boot`].
    type AuditFn = fn(
        &Engine<crate::frame_table::VecStorage>,
        &SmallDomains,
        &crate::arch::fake::FakeArch,
        &mut [u8],
        &mut dyn FnMut(Violation),
    ) -> Option<AuditSummary>;

    /// The whole answer of one audit, run on a scratch full of stale counts (an audit must
    /// clear what it uses).
    fn run_with(system: &SmallSystem, which: AuditFn) -> (Vec<Violation>, AuditSummary) {
        let mut scratch = [0xA5u8; FRAMES];
        let mut found = Vec::new();
        let summary = which(
            &system.engine,
            &system.domains,
            &system.arch,
            &mut scratch,
            &mut |violation| {
                found.push(violation);
            },
        )
        .unwrap();
        (found, summary)
    }

    /// The violations a missing descriptor causes: the full audit names the holder that lacks
    /// it, the boot audit the frame (and its owner).
    fn is_missing(violation: &Violation) -> bool {
        matches!(
            violation.what,
            "holder record without a descriptor"
                | "lent frame without a lent-away annotation in its owner"
        )
    }

    /// Asserts that the boot audit, on a system whose every frame boot mapped (the default
    /// layout's host window) or outside of which nothing is held, finds what the full audit
    /// found: the same descriptor violations and duplicates, one missing-descriptor report for
    /// each frame the full audit reports one or more for, the same pages examined.
    fn assert_boot_audit_agrees(system: &SmallSystem, full: &[Violation], summary: AuditSummary) {
        let (boot, boot_summary) = run_with(system, audit_boot);
        assert_eq!(boot_summary.mapped_pages, summary.mapped_pages);
        assert_eq!(boot_summary.violations, boot.len());
        let key = |violation: &Violation| std::format!("{violation:?}");
        let mut full_kept: Vec<String> = full.iter().filter(|v| !is_missing(v)).map(key).collect();
        let mut boot_kept: Vec<String> = boot.iter().filter(|v| !is_missing(v)).map(key).collect();
        full_kept.sort();
        boot_kept.sort();
        assert_eq!(boot_kept, full_kept, "descriptor violations and duplicates");
        let mut full_missing: Vec<PhysAddr> = full
            .iter()
            .filter(|v| is_missing(v))
            .map(|v| v.pa)
            .collect();
        full_missing.sort();
        full_missing.dedup();
        let boot_missing: Vec<PhysAddr> = boot
            .iter()
            .filter(|v| is_missing(v))
            .map(|v| v.pa)
            .collect();
        assert_eq!(
            boot_missing, full_missing,
            "frames with a missing descriptor"
        );
    }

    /// Asserts that the audit reports exactly `expected`, counts one violation, and examined
    /// `mapped_pages` pages.
    fn assert_only(system: &SmallSystem, expected: Violation, mapped_pages: usize) {
        let (found, summary) = run(system);
        assert_eq!(found, vec![expected]);
        assert_eq!(
            summary,
            AuditSummary {
                mapped_pages,
                violations: 1
            }
        );
    }

    fn violation(
        invariant: Invariant,
        domain: DomainId,
        ipa: Option<Ipa>,
        pa: PhysAddr,
        what: &'static str,
    ) -> Violation {
        Violation {
            invariant,
            domain,
            ipa,
            pa,
            what,
        }
    }

    /// Writes `value` into `domain`'s table at the level-`level` slot for `ipa`; every table
    /// above it must already exist.
    fn plant(system: &mut SmallSystem, domain: DomainId, ipa: Ipa, level: u8, value: u64) {
        let table = system.vspace(domain).unwrap().table;
        let mut next = table.root();
        for upper in 1..level {
            let raw = system.arch.peek(descriptor_address(next, ipa, upper));
            match crate::descriptor::decode(raw, upper) {
                crate::descriptor::Descriptor::Table(table) => next = table,
                other => panic!("no level-{} table for {ipa}: {other:?}", upper + 1),
            }
        }
        let slot = DescriptorSlot {
            pa: descriptor_address(next, ipa, level),
            vmid: table.vmid(),
            ipa,
            level,
        };
        system.arch.write_descriptor(slot, value);
    }

    fn page(pa: PhysAddr, rights: Rights, memory: MemoryType, state: PageState) -> u64 {
        encode_leaf(
            &Leaf {
                pa,
                rights,
                memory,
                state,
            },
            3,
        )
    }

    fn normal(pa: PhysAddr, rights: Rights, state: PageState) -> u64 {
        page(pa, rights, MemoryType::Normal, state)
    }

    /// The small system with frame B left free: the host's window maps only C and A.
    fn system_with_free_frame_b() -> SmallSystem {
        let layout = Layout {
            domains: vec![HOST, GUEST_HISTORY],
            guests: Vec::new(),
            boot: vec![BootMapping {
                domain: GUEST_HISTORY,
                ipa: BLOCK_IPA,
                pa: FRAME_BASE,
                pages: FRAMES as u64 - 1,
                rights: Rights::READ_WRITE,
                memory: MemoryType::Normal,
                sharing: BootSharing::Private,
            }],
            ..default_layout()
        };
        SmallSystem::boot_layout(&layout).unwrap()
    }

    /// The default layout with the host's window over the first 510 frames of block C only:
    /// C510, C511, A and B are left free, outside what boot mapped.
    fn system_with_most_of_block_c() -> SmallSystem {
        let layout = Layout {
            boot: vec![BootMapping {
                pages: 510,
                ..default_layout().boot[0]
            }],
            ..default_layout()
        };
        SmallSystem::boot_layout(&layout).unwrap()
    }

    #[test]
    fn a_block_two_domains_map_whole_is_clean_for_both_audits() {
        // The host shares block C with guest 1 as a block: one 2 MiB descriptor in each table
        // over the same 512 frames. The boot audit must clear every frame's mark after the
        // host's walk, or guest 1's walk would find 511 false duplicates.
        let mut system = SmallSystem::boot().unwrap();
        let (mut engine, arch) = system.parts();
        engine
            .share_with_guest(arch, HOST, GUEST_HISTORY, BLOCK_IPA, 512, Rights::READ)
            .unwrap();
        let guest = system.vspace(GUEST_HISTORY).unwrap().table;
        assert_eq!(guest.leaf_level(&system.arch, BLOCK_IPA), Some(2));
        let clean = AuditSummary {
            mapped_pages: FRAMES + 512,
            violations: 0,
        };
        assert_eq!(run(&system), (vec![], clean));
        assert_eq!(run_with(&system, audit_boot), (vec![], clean));
    }

    #[test]
    fn boot_frames_are_the_hull_of_what_boot_mapped() {
        assert_eq!(SmallSystem::boot().unwrap().engine.boot_frames(), 0..FRAMES);
        assert_eq!(system_with_most_of_block_c().engine.boot_frames(), 0..510);
        let layout = Layout {
            boot: vec![
                boot_mapping(
                    HOST,
                    FRAME_A_IPA,
                    FRAME_A,
                    1,
                    Rights::READ,
                    BootSharing::Private,
                ),
                boot_mapping(
                    HOST,
                    BLOCK_IPA,
                    FRAME_BASE,
                    1,
                    Rights::READ,
                    BootSharing::Private,
                ),
            ],
            ..default_layout()
        };
        let system = SmallSystem::boot_layout(&layout).unwrap();
        assert_eq!(system.engine.boot_frames(), 0..513);
    }

    #[test]
    fn boot_audit_reports_a_holding_outside_what_boot_mapped_where_the_full_audit_cannot() {
        // The frame table and the host's table agree that the host owns C510, but boot never
        // mapped C510: only a bug could have recorded it, and the boot audit says so.
        let mut system = system_with_most_of_block_c();
        let (guest_ipa, pa) = block_page(510);
        let index = system.engine.frame_table().index(pa).unwrap();
        system.engine.frame_table_mut().set_owner(
            index,
            HOST,
            FrameState::Owned,
            Rights::READ_WRITE,
            MemoryType::Normal,
        );
        let ipa = host_ipa(guest_ipa);
        plant(
            &mut system,
            HOST,
            ipa,
            3,
            normal(pa, Rights::READ_WRITE, PageState::Owned),
        );
        let clean = AuditSummary {
            mapped_pages: 511,
            violations: 0,
        };
        assert_eq!(run_with(&system, audit), (vec![], clean));
        let expected = violation(
            Invariant::I3,
            HOST,
            Some(ipa),
            pa,
            "holder record outside the frames boot mapped",
        );
        assert_eq!(
            run_with(&system, audit_boot),
            (
                vec![expected],
                AuditSummary {
                    violations: 1,
                    ..clean
                }
            )
        );
    }

    #[test]
    fn boot_audit_reads_no_record_outside_what_boot_mapped() {
        // A record of B, which boot never mapped and nobody maps: the full audit finds the
        // holder without a descriptor; the boot audit, whose cost follows what boot mapped,
        // does not look there (module doc).
        let mut system = system_with_most_of_block_c();
        let index = system.engine.frame_table().index(FRAME_B).unwrap();
        system.engine.frame_table_mut().set_owner(
            index,
            HOST,
            FrameState::Owned,
            Rights::READ_WRITE,
            MemoryType::Normal,
        );
        let missing = violation(
            Invariant::I3,
            HOST,
            None,
            FRAME_B,
            "holder record without a descriptor",
        );
        assert_eq!(
            run_with(&system, audit),
            (
                vec![missing],
                AuditSummary {
                    mapped_pages: 510,
                    violations: 1
                }
            )
        );
        assert_eq!(
            run_with(&system, audit_boot),
            (
                vec![],
                AuditSummary {
                    mapped_pages: 510,
                    violations: 0
                }
            )
        );
    }

    #[test]
    fn boot_audit_names_the_owner_of_a_frame_a_borrower_does_not_map() {
        // Guest 1 borrows C4 read-only but its descriptor is gone: the full audit names guest 1,
        // the boot audit the frame's owner, the host.
        let mut system = system();
        let (ipa, pa) = block_page(4);
        plant(&mut system, GUEST_HISTORY, ipa, 3, 0);
        let missing = |domain| {
            violation(
                Invariant::I3,
                domain,
                None,
                pa,
                "holder record without a descriptor",
            )
        };
        assert_eq!(run(&system).0, vec![missing(GUEST_HISTORY)]);
        assert_eq!(run_with(&system, audit_boot).0, vec![missing(HOST)]);
    }

    #[test]
    fn a_clean_system_has_no_violation() {
        let system = system();
        assert_eq!(
            run(&system),
            (
                vec![],
                AuditSummary {
                    mapped_pages: CLEAN_MAPPED_PAGES,
                    violations: 0
                }
            )
        );
    }

    #[test]
    fn the_boot_system_is_clean_and_counts_the_block_page_by_page() {
        // The host maps block C as one 2 MiB descriptor plus A and B.
        let system = SmallSystem::boot().unwrap();
        assert_eq!(
            run(&system),
            (
                vec![],
                AuditSummary {
                    mapped_pages: FRAMES,
                    violations: 0
                }
            )
        );
    }

    #[test]
    fn untracked_memory_passed_through_is_clean() {
        // Just past the hypervisor's image: neither protected nor tracked.
        let mut system = system();
        let (ipa, pa) = (Ipa(0x4020_2000), HYPERVISOR.1);
        plant(
            &mut system,
            GUEST_HISTORY,
            ipa,
            3,
            page(
                pa,
                Rights::READ_WRITE,
                MemoryType::Device,
                PageState::Passthrough,
            ),
        );
        assert_eq!(
            run(&system),
            (
                vec![],
                AuditSummary {
                    mapped_pages: CLEAN_MAPPED_PAGES + 1,
                    violations: 0
                }
            )
        );
    }

    // ------------------------------------------------------------------------ I1 --

    #[test]
    fn i1_owned_frame_mapped_twice_by_its_owner() {
        let mut system = system();
        let value = normal(FRAME_A, Rights::ALL, PageState::Owned);
        plant(&mut system, GUEST_HISTORY, Ipa(0x4020_2000), 3, value);
        let expected = violation(
            Invariant::I1,
            GUEST_HISTORY,
            None,
            FRAME_A,
            "exclusive frame mapped more than once",
        );
        assert_only(&system, expected, CLEAN_MAPPED_PAGES + 1);
    }

    #[test]
    fn i1_lent_frame_mapped_twice_by_its_borrower() {
        let mut system = system();
        let value = normal(FRAME_B, Rights::READ_WRITE, PageState::SharedBorrowed);
        plant(&mut system, GUEST_HISTORY, Ipa(0x4020_2000), 3, value);
        let expected = violation(
            Invariant::I1,
            GUEST_HISTORY,
            None,
            FRAME_B,
            "exclusive frame mapped more than once",
        );
        assert_only(&system, expected, CLEAN_MAPPED_PAGES + 1);
    }

    #[test]
    fn i1_a_frame_mapped_seventeen_times_is_still_one_violation() {
        // The per-frame mapping count saturates at 15 without spilling into the annotation
        // count (it once did: 16 mappings read as one annotation and none mapped).
        let mut system = system();
        let value = normal(FRAME_A, Rights::ALL, PageState::Owned);
        for slot in 2..18 {
            let ipa = Ipa(0x4020_0000 + slot * PAGE_SIZE);
            plant(&mut system, GUEST_HISTORY, ipa, 3, value);
        }
        let expected = violation(
            Invariant::I1,
            GUEST_HISTORY,
            None,
            FRAME_A,
            "exclusive frame mapped more than once",
        );
        assert_only(&system, expected, CLEAN_MAPPED_PAGES + 16);
    }

    #[test]
    fn i1_owned_frame_mapped_by_another_domain() {
        // The host maps guest 1's frame A again, next to where it mapped it before donating.
        let mut system = system();
        let ipa = Ipa(0x8020_2000);
        let value = normal(FRAME_A, Rights::READ_WRITE, PageState::SharedBorrowed);
        plant(&mut system, HOST, ipa, 3, value);
        let expected = violation(
            Invariant::I1,
            HOST,
            Some(ipa),
            FRAME_A,
            "owned frame mapped by a domain that is not its owner",
        );
        assert_only(&system, expected, CLEAN_MAPPED_PAGES + 1);
    }

    #[test]
    fn i1_a_block_of_foreign_frames_is_one_violation_per_page() {
        // Guest 1 maps the host's block C with one 2 MiB descriptor: every page is a frame it
        // does not own, each reported at its own IPA and PA, and the count is the list.
        let mut system = SmallSystem::boot().unwrap();
        let (mut engine, arch) = system.parts();
        engine
            .donate(arch, HOST, GUEST_HISTORY, FRAME_A_IPA, 1)
            .unwrap();
        let leaf = Leaf {
            pa: FRAME_BASE,
            rights: Rights::READ_WRITE,
            memory: MemoryType::Normal,
            state: PageState::Owned,
        };
        plant(
            &mut system,
            GUEST_HISTORY,
            BLOCK_IPA,
            2,
            encode_leaf(&leaf, 2),
        );
        let expected: Vec<Violation> = (0..512)
            .map(|page| {
                let (ipa, pa) = block_page(page);
                violation(
                    Invariant::I1,
                    GUEST_HISTORY,
                    Some(ipa),
                    pa,
                    "owned frame mapped by a domain that is not its owner",
                )
            })
            .collect();
        let (found, summary) = run(&system);
        assert_eq!(found, expected);
        assert_eq!(
            summary,
            AuditSummary {
                mapped_pages: FRAMES + 512,
                violations: 512
            }
        );
    }

    #[test]
    fn i1_lent_frame_mapped_by_its_owner() {
        let mut system = system();
        let (ipa, pa) = (host_ipa(block_page(3).0), block_page(3).1);
        // The owner's annotation stays; a mapping appears next to it.
        let value = normal(pa, Rights::READ_WRITE, PageState::Owned);
        plant(&mut system, HOST, Ipa(ipa.get() - 3 * PAGE_SIZE), 3, value);
        let expected = violation(
            Invariant::I1,
            HOST,
            Some(host_ipa(block_page(0).0)),
            pa,
            "lent frame mapped by a domain other than its borrower",
        );
        assert_only(&system, expected, CLEAN_MAPPED_PAGES + 1);
    }

    #[test]
    fn i1_lent_frame_mapped_by_a_third_domain() {
        let mut system = system();
        let value = normal(FRAME_B, Rights::READ_WRITE, PageState::SharedBorrowed);
        let ipa = block_page(5).0.shared_alias();
        plant(&mut system, GUEST_SPLIT, ipa, 3, value);
        let expected = violation(
            Invariant::I1,
            GUEST_SPLIT,
            Some(ipa),
            FRAME_B,
            "lent frame mapped by a domain other than its borrower",
        );
        assert_only(&system, expected, CLEAN_MAPPED_PAGES + 1);
    }

    // ------------------------------------------------------------------------ I2 --

    #[test]
    fn i2_borrower_rights_wider_than_granted() {
        let mut system = system();
        let (ipa, pa) = block_page(4);
        let value = normal(pa, Rights::READ_WRITE, PageState::SharedBorrowed);
        plant(&mut system, GUEST_HISTORY, ipa, 3, value);
        let expected = violation(
            Invariant::I2,
            GUEST_HISTORY,
            Some(ipa),
            pa,
            "mapping grants more rights than the frame table records",
        );
        assert_only(&system, expected, CLEAN_MAPPED_PAGES);
    }

    #[test]
    fn i2_owner_rights_wider_than_recorded() {
        // The host owns its window frames read-write: execute is more.
        let mut system = system();
        let (ipa, pa) = (host_ipa(block_page(5).0), block_page(5).1);
        plant(
            &mut system,
            HOST,
            ipa,
            3,
            normal(pa, Rights::ALL, PageState::Owned),
        );
        let expected = violation(
            Invariant::I2,
            HOST,
            Some(ipa),
            pa,
            "mapping grants more rights than the frame table records",
        );
        assert_only(&system, expected, CLEAN_MAPPED_PAGES);
    }

    #[test]
    fn i2_shared_frame_mapped_by_a_domain_that_is_not_a_holder() {
        let mut system = system();
        let (ipa, pa) = block_page(2);
        let value = normal(pa, Rights::READ, PageState::SharedBorrowed);
        plant(&mut system, GUEST_HISTORY, ipa, 3, value);
        let expected = violation(
            Invariant::I2,
            GUEST_HISTORY,
            Some(ipa),
            pa,
            "shared frame mapped by a domain that is not a holder",
        );
        assert_only(&system, expected, CLEAN_MAPPED_PAGES + 1);
    }

    #[test]
    fn i2_shared_frame_mapped_twice_by_a_borrower() {
        let mut system = system();
        let pa = block_page(4).1;
        let value = normal(pa, Rights::READ, PageState::SharedBorrowed);
        plant(&mut system, GUEST_HISTORY, block_page(5).0, 3, value);
        let expected = violation(
            Invariant::I2,
            GUEST_HISTORY,
            None,
            pa,
            "shared frame mapped more than once by one holder",
        );
        assert_only(&system, expected, CLEAN_MAPPED_PAGES + 1);
    }

    // ------------------------------------------------------------------------ I3 --

    #[test]
    fn i3_free_frame_mapped() {
        let mut system = system_with_free_frame_b();
        assert_eq!(run(&system).0, vec![]);
        let ipa = Ipa(0x4020_2000);
        let value = normal(FRAME_B, Rights::READ_WRITE, PageState::Owned);
        plant(&mut system, GUEST_HISTORY, ipa, 3, value);
        let expected = violation(
            Invariant::I3,
            GUEST_HISTORY,
            Some(ipa),
            FRAME_B,
            "free frame mapped",
        );
        assert_only(&system, expected, FRAMES);
    }

    #[test]
    fn i3_holder_record_without_a_descriptor() {
        let mut system = system();
        plant(&mut system, GUEST_HISTORY, FRAME_A_IPA, 3, 0);
        let expected = violation(
            Invariant::I3,
            GUEST_HISTORY,
            None,
            FRAME_A,
            "holder record without a descriptor",
        );
        assert_only(&system, expected, CLEAN_MAPPED_PAGES - 1);
    }

    #[test]
    fn i3_borrower_without_a_descriptor() {
        let mut system = system();
        let (ipa, pa) = block_page(2);
        plant(&mut system, GUEST_SPLIT, ipa.shared_alias(), 3, 0);
        let expected = violation(
            Invariant::I3,
            GUEST_SPLIT,
            None,
            pa,
            "holder record without a descriptor",
        );
        assert_only(&system, expected, CLEAN_MAPPED_PAGES - 1);
    }

    #[test]
    fn i3_lent_frame_without_its_annotation() {
        let mut system = system();
        let (ipa, pa) = (host_ipa(block_page(3).0), block_page(3).1);
        plant(&mut system, HOST, ipa, 3, 0);
        let expected = violation(
            Invariant::I3,
            HOST,
            None,
            pa,
            "lent frame without a lent-away annotation in its owner",
        );
        assert_only(&system, expected, CLEAN_MAPPED_PAGES);
    }

    #[test]
    fn i3_lent_frame_with_two_annotations() {
        let mut system = system();
        let pa = block_page(3).1;
        // C0's host slot is empty since C0 was donated.
        plant(
            &mut system,
            HOST,
            host_ipa(block_page(0).0),
            3,
            encode_lent_away(pa),
        );
        let expected = violation(
            Invariant::I3,
            HOST,
            None,
            pa,
            "lent frame with more than one lent-away annotation in its owner",
        );
        assert_only(&system, expected, CLEAN_MAPPED_PAGES);
    }

    #[test]
    fn i3_seventeen_annotations_are_still_one_violation() {
        // The annotation count saturates at 15 without overflowing into the mapping count.
        let mut system = system();
        let pa = block_page(3).1;
        for slot in 2..18 {
            let ipa = Ipa(0x8020_0000 + slot * PAGE_SIZE);
            plant(&mut system, HOST, ipa, 3, encode_lent_away(pa));
        }
        let expected = violation(
            Invariant::I3,
            HOST,
            None,
            pa,
            "lent frame with more than one lent-away annotation in its owner",
        );
        assert_only(&system, expected, CLEAN_MAPPED_PAGES);
    }

    #[test]
    fn i3_annotation_for_a_frame_the_domain_owns_but_did_not_lend() {
        let mut system = system();
        let ipa = Ipa(0x4020_2000);
        plant(
            &mut system,
            GUEST_HISTORY,
            ipa,
            3,
            encode_lent_away(FRAME_A),
        );
        let expected = violation(
            Invariant::I3,
            GUEST_HISTORY,
            Some(ipa),
            FRAME_A,
            "lent-away annotation for a frame not lent by this domain",
        );
        assert_only(&system, expected, CLEAN_MAPPED_PAGES);
    }

    #[test]
    fn i3_annotation_for_a_frame_another_domain_lent() {
        let mut system = system();
        let (ipa, pa) = block_page(3);
        plant(&mut system, GUEST_SPLIT, ipa, 3, encode_lent_away(pa));
        let expected = violation(
            Invariant::I3,
            GUEST_SPLIT,
            Some(ipa),
            pa,
            "lent-away annotation for a frame not lent by this domain",
        );
        assert_only(&system, expected, CLEAN_MAPPED_PAGES);
    }

    #[test]
    fn i3_annotation_for_untracked_memory() {
        let mut system = system();
        let ipa = Ipa(0x4020_2000);
        plant(
            &mut system,
            GUEST_HISTORY,
            ipa,
            3,
            encode_lent_away(HYPERVISOR.1),
        );
        let expected = violation(
            Invariant::I3,
            GUEST_HISTORY,
            Some(ipa),
            HYPERVISOR.1,
            "lent-away annotation for a frame not lent by this domain",
        );
        assert_only(&system, expected, CLEAN_MAPPED_PAGES);
    }

    #[test]
    fn i3_stray_invalid_descriptor() {
        let mut system = system();
        let ipa = Ipa(0x4020_2000);
        // Invalid (bit 0 clear) but not empty and not an annotation.
        plant(&mut system, GUEST_HISTORY, ipa, 3, FRAME_B.get() | 0b10);
        let expected = violation(
            Invariant::I3,
            GUEST_HISTORY,
            Some(ipa),
            FRAME_B,
            "descriptor the core never writes",
        );
        assert_only(&system, expected, CLEAN_MAPPED_PAGES);
    }

    #[test]
    fn i3_stray_level_2_descriptor_is_one_violation() {
        // One descriptor, one report: not one per 4 KiB page it would have covered.
        let mut system = system();
        let ipa = Ipa(0x4060_0000);
        plant(&mut system, GUEST_HISTORY, ipa, 2, 0x4000_0000 | 0b100);
        let expected = violation(
            Invariant::I3,
            GUEST_HISTORY,
            Some(ipa),
            PhysAddr(0x4000_0000),
            "descriptor the core never writes",
        );
        assert_only(&system, expected, CLEAN_MAPPED_PAGES);
    }

    #[test]
    fn i3_malformed_page() {
        // A valid page with the access flag clear: reported, not counted as mapped.
        const ACCESS_FLAG: u64 = 1 << 10;
        let mut system = system();
        let ipa = Ipa(0x4020_2000);
        let raw = normal(FRAME_B, Rights::READ, PageState::Owned) & !ACCESS_FLAG;
        plant(&mut system, GUEST_HISTORY, ipa, 3, raw);
        let expected = violation(
            Invariant::I3,
            GUEST_HISTORY,
            Some(ipa),
            FRAME_B,
            "descriptor the core never writes",
        );
        assert_only(&system, expected, CLEAN_MAPPED_PAGES);
    }

    #[test]
    fn i3_malformed_block_is_one_violation() {
        // A 2 MiB block with an unknown software state: one descriptor, one report.
        let mut system = system();
        let ipa = Ipa(0x4060_0000);
        let leaf = Leaf {
            pa: FRAME_BASE,
            rights: Rights::READ,
            memory: MemoryType::Normal,
            state: PageState::Owned,
        };
        let unknown_state = 0b1111 << 55;
        plant(
            &mut system,
            GUEST_HISTORY,
            ipa,
            2,
            encode_leaf(&leaf, 2) | unknown_state,
        );
        let expected = violation(
            Invariant::I3,
            GUEST_HISTORY,
            Some(ipa),
            FRAME_BASE,
            "descriptor the core never writes",
        );
        assert_only(&system, expected, CLEAN_MAPPED_PAGES);
    }

    #[test]
    fn i3_wrong_software_state_bits() {
        let mut system = system();
        let value = normal(FRAME_A, Rights::ALL, PageState::SharedOwned);
        plant(&mut system, GUEST_HISTORY, FRAME_A_IPA, 3, value);
        let expected = violation(
            Invariant::I3,
            GUEST_HISTORY,
            Some(FRAME_A_IPA),
            FRAME_A,
            "software state bits disagree with the frame table",
        );
        assert_only(&system, expected, CLEAN_MAPPED_PAGES);
    }

    #[test]
    fn i3_wrong_memory_type() {
        let mut system = system();
        // Device memory is never executable, so these rights are within the owner's.
        let value = page(
            FRAME_A,
            Rights::READ_WRITE,
            MemoryType::Device,
            PageState::Owned,
        );
        plant(&mut system, GUEST_HISTORY, FRAME_A_IPA, 3, value);
        let expected = violation(
            Invariant::I3,
            GUEST_HISTORY,
            Some(FRAME_A_IPA),
            FRAME_A,
            "memory type disagrees with the frame table",
        );
        assert_only(&system, expected, CLEAN_MAPPED_PAGES);
    }

    #[test]
    fn i3_split_mode_private_page_at_the_alias() {
        let mut system = system();
        let (ipa, pa) = block_page(0);
        plant(&mut system, GUEST_SPLIT, ipa, 3, 0);
        let value = normal(pa, Rights::ALL, PageState::Owned);
        plant(&mut system, GUEST_SPLIT, ipa.shared_alias(), 3, value);
        let expected = violation(
            Invariant::I3,
            GUEST_SPLIT,
            Some(ipa.shared_alias()),
            pa,
            "split-mode page in the wrong half (private vs shared alias)",
        );
        assert_only(&system, expected, CLEAN_MAPPED_PAGES);
    }

    #[test]
    fn i3_split_mode_shared_page_in_the_private_half() {
        let mut system = system();
        let (ipa, pa) = block_page(2);
        plant(&mut system, GUEST_SPLIT, ipa.shared_alias(), 3, 0);
        let value = normal(pa, Rights::READ_WRITE, PageState::SharedBorrowed);
        plant(&mut system, GUEST_SPLIT, ipa, 3, value);
        let expected = violation(
            Invariant::I3,
            GUEST_SPLIT,
            Some(ipa),
            pa,
            "split-mode page in the wrong half (private vs shared alias)",
        );
        assert_only(&system, expected, CLEAN_MAPPED_PAGES);
    }

    #[test]
    fn i3_history_mode_pages_may_use_either_half() {
        // Only split mode has halves: the same private page at guest 1's "alias" is fine
        // once the original mapping is gone.
        let mut system = system();
        plant(&mut system, GUEST_HISTORY, FRAME_A_IPA, 3, 0);
        let alias = block_page(0).0.shared_alias();
        let value = normal(FRAME_A, Rights::ALL, PageState::Owned);
        let table = system.vspace(GUEST_HISTORY).unwrap().table;
        // Guest 1 has no tables at the alias: point a free level-1 slot at a level-2 table
        // taken from the pool, and a level-2 slot at a level-3 one.
        let (l2, l3) = (PhysAddr(0x1007_0000), PhysAddr(0x1007_1000));
        system.arch.zero_page(l2);
        system.arch.zero_page(l3);
        let l1_slot = descriptor_address(table.root(), alias, 1);
        system.arch.poke(l1_slot, encode_table(l2));
        system
            .arch
            .poke(descriptor_address(l2, alias, 2), encode_table(l3));
        system.arch.poke(descriptor_address(l3, alias, 3), value);
        assert_eq!(
            run(&system),
            (
                vec![],
                AuditSummary {
                    mapped_pages: CLEAN_MAPPED_PAGES,
                    violations: 0
                }
            )
        );
    }

    #[test]
    fn i3_untracked_memory_mapped_with_an_ownership_state() {
        let mut system = system();
        let ipa = Ipa(0x4020_2000);
        let value = page(
            HYPERVISOR.1,
            Rights::READ_WRITE,
            MemoryType::Device,
            PageState::Owned,
        );
        plant(&mut system, GUEST_HISTORY, ipa, 3, value);
        let expected = violation(
            Invariant::I3,
            GUEST_HISTORY,
            Some(ipa),
            HYPERVISOR.1,
            "untracked memory mapped with an ownership state",
        );
        assert_only(&system, expected, CLEAN_MAPPED_PAGES + 1);
    }

    // ------------------------------------------------------------------------ I4 --

    #[test]
    fn i4_hypervisor_image_mapped() {
        let mut system = system();
        let ipa = Ipa(0x4020_2000);
        let value = normal(HYPERVISOR.0, Rights::READ, PageState::Passthrough);
        plant(&mut system, GUEST_HISTORY, ipa, 3, value);
        let expected = violation(
            Invariant::I4,
            GUEST_HISTORY,
            Some(ipa),
            HYPERVISOR.0,
            "hypervisor memory mapped in a domain",
        );
        assert_only(&system, expected, CLEAN_MAPPED_PAGES + 1);
    }

    #[test]
    fn i4_table_pool_mapped() {
        // The last page of the pool: protected up to, not including, its end.
        let mut system = system();
        let ipa = Ipa(0x4020_2000);
        let last = PhysAddr(POOL_BASE.get() + (POOL_PAGES as u64 - 1) * PAGE_SIZE);
        let value = normal(last, Rights::READ, PageState::Passthrough);
        plant(&mut system, GUEST_HISTORY, ipa, 3, value);
        let expected = violation(
            Invariant::I4,
            GUEST_HISTORY,
            Some(ipa),
            last,
            "hypervisor memory mapped in a domain",
        );
        assert_only(&system, expected, CLEAN_MAPPED_PAGES + 1);
    }

    #[test]
    fn i4_level_2_table_outside_the_pool() {
        let mut system = system();
        // Guest 2 holds nothing in its first GiB: the table it points at is not walked.
        let table = SmallSystem::frame(7);
        plant(&mut system, GUEST_SPLIT, Ipa(0), 1, encode_table(table));
        let expected = violation(
            Invariant::I4,
            GUEST_SPLIT,
            Some(Ipa(0)),
            table,
            "translation table outside the table pool",
        );
        assert_only(&system, expected, CLEAN_MAPPED_PAGES);
    }

    #[test]
    fn i4_level_3_table_outside_the_pool() {
        let mut system = system();
        let (ipa, table) = (Ipa(0x4060_0000), PhysAddr(0x2000_0000));
        plant(&mut system, GUEST_HISTORY, ipa, 2, encode_table(table));
        let expected = violation(
            Invariant::I4,
            GUEST_HISTORY,
            Some(ipa),
            table,
            "translation table outside the table pool",
        );
        assert_only(&system, expected, CLEAN_MAPPED_PAGES);
    }

    /// Audits guest 1 alone as if its root were at `root`, a copy of its real root.
    fn audit_guest_1_at_root(system: &mut SmallSystem, root: PhysAddr) -> (Vec<Violation>, usize) {
        let real = system.vspace(GUEST_HISTORY).unwrap().table.root();
        for word in 0..1024 {
            let value = system.arch.peek(PhysAddr(real.get() + word * 8));
            system.arch.poke(PhysAddr(root.get() + word * 8), value);
        }
        let mut counters = [0u8; FRAMES];
        let mut found = Vec::new();
        let mut report = |violation| found.push(violation);
        let mut reporter = Reporter {
            report: &mut report,
            reported: 0,
        };
        let mut auditor = DomainAudit {
            engine: &system.engine,
            domain: GUEST_HISTORY,
            split: false,
            counters: &mut counters,
            reporter: &mut reporter,
            mapped_pages: 0,
            tally: Tally::PerDomain,
        };
        auditor.counters.fill(0);
        auditor.check_table(&system.arch, root);
        auditor.check_records();
        assert_eq!(auditor.mapped_pages, 3);
        let reported = reporter.reported;
        (found, reported)
    }

    #[test]
    fn i4_root_inside_the_pool_is_clean() {
        let mut system = system();
        let inside = PhysAddr(POOL_BASE.get() + (POOL_PAGES as u64 - 2) * PAGE_SIZE);
        assert_eq!(audit_guest_1_at_root(&mut system, inside), (vec![], 0));
    }

    #[test]
    fn i4_first_root_page_outside_the_pool() {
        let mut system = system();
        let root = PhysAddr(POOL_BASE.get() - PAGE_SIZE);
        let expected = violation(
            Invariant::I4,
            GUEST_HISTORY,
            None,
            root,
            "stage-2 root page outside the table pool",
        );
        assert_eq!(
            audit_guest_1_at_root(&mut system, root),
            (vec![expected], 1)
        );
    }

    #[test]
    fn i4_second_root_page_outside_the_pool() {
        let mut system = system();
        let end = PhysAddr(POOL_BASE.get() + POOL_PAGES as u64 * PAGE_SIZE);
        let root = PhysAddr(end.get() - PAGE_SIZE);
        let expected = violation(
            Invariant::I4,
            GUEST_HISTORY,
            None,
            end,
            "stage-2 root page outside the table pool",
        );
        assert_eq!(
            audit_guest_1_at_root(&mut system, root),
            (vec![expected], 1)
        );
    }

    // -------------------------------------------------------------- the report --

    #[test]
    fn violations_print_with_and_without_an_ipa() {
        let with = violation(
            Invariant::I1,
            DomainId(1),
            Some(Ipa(0x4020_1000)),
            FRAME_B,
            "owned frame mapped by a domain that is not its owner",
        );
        assert_eq!(
            std::format!("{with}"),
            "I1 domain1 ipa 0x40201000 pa 0x40201000: owned frame mapped by a domain that is not its owner"
        );
        let without = Violation { ipa: None, ..with };
        assert_eq!(
            std::format!("{without}"),
            "I1 domain1 pa 0x40201000: owned frame mapped by a domain that is not its owner"
        );
    }

    #[test]
    fn the_count_is_the_number_of_reports() {
        // Several violations in several domains: the count equals the reports, one by one.
        let mut system = system();
        plant(&mut system, GUEST_HISTORY, FRAME_A_IPA, 3, 0);
        plant(
            &mut system,
            GUEST_SPLIT,
            Ipa(0),
            1,
            encode_table(SmallSystem::frame(7)),
        );
        let value = normal(HYPERVISOR.0, Rights::READ, PageState::Passthrough);
        plant(&mut system, HOST, Ipa(0x8020_2000), 3, value);
        let (found, summary) = run(&system);
        assert_eq!(found.len(), 3, "{found:?}");
        assert_eq!(summary.violations, found.len());
    }

    #[test]
    fn scratch_too_small_is_refused_not_a_panic() {
        let system = system();
        let mut scratch = [0u8; FRAMES - 1];
        let mut reports = 0;
        let answer = audit(
            &system.engine,
            &system.domains,
            &system.arch,
            &mut scratch,
            &mut |_| {
                reports += 1;
            },
        );
        assert_eq!((answer, reports), (None, 0));
        let mut scratch = [0u8; FRAMES];
        assert!(audit(
            &system.engine,
            &system.domains,
            &system.arch,
            &mut scratch,
            &mut |_| {}
        )
        .is_some());
    }
}
