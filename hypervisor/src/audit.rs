//! The audit: cross-checks every domain's stage-2 table against the frame table (I1-I4).
//!
//! It reads the tables through the software walker ([`crate::walk`]), the way the hardware
//! would, never through the engine's own bookkeeping, and reports every violation with its
//! domain, IPA, physical address and invariant. It allocates nothing: the caller lends a
//! scratch counter per frame. I5-I8 are properties of calls, not of a state; the host fake
//! (`fake_arch`) and the tests check them (docs/ISOLATION.md).

use core::fmt;

use crate::addr::{DomainId, Ipa, PhysAddr, PAGE_SIZE};
use crate::arch::PhysMemory;
use crate::descriptor::{level_span, PageState};
use crate::engine::{ConversionMode, Engine};
use crate::frame_table::FrameState;
use crate::walk::{for_each_leaf, LeafKind};

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
    /// The IPA concerned.
    pub ipa: Ipa,
    /// The physical address concerned (frame, or table page).
    pub pa: PhysAddr,
    /// What exactly is wrong.
    pub what: &'static str,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:?} {} ipa {} pa {}: {}",
            self.invariant, self.domain, self.ipa, self.pa, self.what
        )
    }
}

/// What the audit looked at.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AuditSummary {
    /// 4 KiB frames' worth of valid leaves examined.
    pub mapped_pages: usize,
    /// Violations reported.
    pub violations: usize,
}

/// Audits every domain. `scratch` needs one byte per tracked frame; with less, the audit
/// refuses to run and returns `None` (the kernel sizes it with the frame table).
pub fn audit<const FRAMES: usize, const BORROWERS: usize>(
    engine: &Engine<FRAMES, BORROWERS>,
    memory: &impl PhysMemory,
    scratch: &mut [u8],
    report: &mut dyn FnMut(Violation),
) -> Option<AuditSummary> {
    let frames = engine.frame_table();
    let counters = scratch.get_mut(..frames.frames())?;
    let mut summary = AuditSummary::default();
    let pool = engine.pool();
    for (domain_id, domain) in engine.domains() {
        counters.fill(0);
        let split = domain
            .link
            .is_some_and(|link| link.mode == ConversionMode::Split);
        let mut emit = |invariant, ipa, pa, what| {
            summary.violations += 1;
            report(Violation {
                invariant,
                domain: domain_id,
                ipa,
                pa,
                what,
            });
        };
        let root = domain.table.root();
        if !pool.contains(root) || !pool.contains(PhysAddr(root.get() + PAGE_SIZE)) {
            emit(
                Invariant::I4,
                Ipa(0),
                root,
                "stage-2 root outside the table pool",
            );
        }
        let table_ok = |table: PhysAddr| pool.contains(table) && table.is_page_aligned();
        let mut visit = |entry: crate::walk::LeafEntry| {
            if let LeafKind::BadTable(table) = entry.kind {
                emit(
                    Invariant::I4,
                    entry.ipa,
                    table,
                    "translation table outside the table pool",
                );
                return;
            }
            let pages = level_span(entry.level) / PAGE_SIZE;
            for page in 0..pages {
                let ipa = Ipa(entry.ipa.get() + page * PAGE_SIZE);
                match entry.kind {
                    LeafKind::Mapped(leaf) => {
                        summary.mapped_pages += 1;
                        let pa = PhysAddr(leaf.pa.get() + page * PAGE_SIZE);
                        check_leaf(engine, domain_id, split, ipa, pa, leaf, counters, &mut emit);
                    }
                    LeafKind::LentAway(pa) => {
                        let owner_lent = frames.record(pa).is_some_and(|record| {
                            record.owner() == Some(domain_id) && record.state() == FrameState::Lent
                        });
                        if !owner_lent {
                            emit(
                                Invariant::I3,
                                ipa,
                                pa,
                                "lent-away annotation for a frame not lent by this domain",
                            );
                        } else if let Some(index) = frames.index(pa) {
                            // Annotations count in the high nibble.
                            counters[index] = counters[index].saturating_add(0x10);
                        }
                    }
                    LeafKind::Malformed(raw) | LeafKind::Stray(raw) => {
                        let pa = PhysAddr(raw & 0x0000_FFFF_FFFF_F000);
                        emit(Invariant::I3, ipa, pa, "descriptor the core never writes");
                    }
                    LeafKind::BadTable(_) => {}
                }
            }
        };
        for_each_leaf(memory, root, &table_ok, &mut visit);
        // Record -> descriptor: every holder has exactly one entry.
        for (index, &count) in counters.iter().enumerate() {
            let record = frames.record_at(index);
            let pa = frames.frame_address(index);
            let mapped = count & 0x0F;
            let annotations = count >> 4;
            let owner = record.owner() == Some(domain_id);
            let borrower = frames.borrower_rights(index, domain_id).is_some();
            let (expected_mapped, expected_annotations) = match record.state() {
                FrameState::Free => (0, 0),
                FrameState::Owned | FrameState::SharedOwned => (u8::from(owner || borrower), 0),
                FrameState::Lent => (u8::from(borrower), u8::from(owner)),
            };
            if mapped != expected_mapped {
                let (invariant, what) = match (record.state(), mapped > expected_mapped) {
                    (FrameState::Owned | FrameState::Lent, true) => {
                        (Invariant::I1, "exclusive frame mapped more than once")
                    }
                    (FrameState::SharedOwned, true) => (
                        Invariant::I2,
                        "shared frame mapped more than once by one holder",
                    ),
                    (FrameState::Free, _) => (Invariant::I3, "free frame mapped"),
                    _ => (Invariant::I3, "holder record without a descriptor"),
                };
                let mut emit = |invariant, ipa, pa, what| {
                    summary.violations += 1;
                    report(Violation {
                        invariant,
                        domain: domain_id,
                        ipa,
                        pa,
                        what,
                    });
                };
                emit(invariant, Ipa(0), pa, what);
            }
            if annotations != expected_annotations {
                summary.violations += 1;
                report(Violation {
                    invariant: Invariant::I3,
                    domain: domain_id,
                    ipa: Ipa(0),
                    pa,
                    what: "lent frame without exactly one lent-away annotation in its owner",
                });
            }
        }
    }
    Some(summary)
}

/// Descriptor -> record checks for one mapped 4 KiB page.
#[allow(clippy::too_many_arguments, reason = "the context of one audited page")]
fn check_leaf<const FRAMES: usize, const BORROWERS: usize>(
    engine: &Engine<FRAMES, BORROWERS>,
    domain: DomainId,
    split: bool,
    ipa: Ipa,
    pa: PhysAddr,
    leaf: crate::descriptor::Leaf,
    counters: &mut [u8],
    emit: &mut impl FnMut(Invariant, Ipa, PhysAddr, &'static str),
) {
    let frames = engine.frame_table();
    let protected = engine
        .protected_ranges()
        .iter()
        .any(|&(start, end)| start <= pa && pa < end);
    if protected {
        emit(
            Invariant::I4,
            ipa,
            pa,
            "hypervisor memory mapped in a domain",
        );
        return;
    }
    let Some(index) = frames.index(pa) else {
        if leaf.state != PageState::Passthrough {
            emit(
                Invariant::I3,
                ipa,
                pa,
                "untracked memory mapped with an ownership state",
            );
        }
        return;
    };
    counters[index] = counters[index].saturating_add(1);
    let record = frames.record_at(index);
    let owner = record.owner() == Some(domain);
    let borrowed = frames.borrower_rights(index, domain);
    let expected = match record.state() {
        FrameState::Owned if owner => Some(PageState::Owned),
        FrameState::SharedOwned if owner => Some(PageState::SharedOwned),
        FrameState::Owned | FrameState::SharedOwned | FrameState::Lent if borrowed.is_some() => {
            Some(PageState::SharedBorrowed)
        }
        _ => None,
    };
    let Some(expected) = expected else {
        let (invariant, what) = match record.state() {
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
        emit(invariant, ipa, pa, what);
        return;
    };
    if leaf.state != expected {
        emit(
            Invariant::I3,
            ipa,
            pa,
            "software state bits disagree with the frame table",
        );
    }
    let granted = borrowed
        .filter(|_| !owner)
        .unwrap_or_else(|| record.owner_rights());
    if !granted.contains(leaf.rights) {
        emit(
            Invariant::I2,
            ipa,
            pa,
            "mapping grants more rights than the frame table records",
        );
    }
    if leaf.memory != record.memory() {
        emit(
            Invariant::I3,
            ipa,
            pa,
            "memory type disagrees with the frame table",
        );
    }
    if split && ipa.is_shared_alias() == (expected == PageState::Owned) {
        emit(
            Invariant::I3,
            ipa,
            pa,
            "split-mode page in the wrong half (private vs shared alias)",
        );
    }
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test fails loudly on an unexpected error"
)]
mod tests {
    extern crate std;
    use super::*;
    use crate::arch::{DescriptorSlot, Stage2Arch};
    use crate::descriptor::{encode_leaf, encode_table, Leaf, MemoryType, Rights};
    use crate::small_system::*;
    use crate::walk::descriptor_address;
    use std::string::String;
    use std::vec::Vec;

    /// A system where guest 1 owns frame A, so its level-3 table covering A and B exists.
    fn system() -> SmallSystem {
        let mut system = SmallSystem::boot().unwrap();
        let (engine, arch) = (&mut system.engine, &mut system.arch);
        engine
            .donate(arch, HOST, GUEST_HISTORY, FRAME_A_IPA, 1)
            .unwrap();
        arch.end_call();
        assert_eq!(system.audit(), Vec::<String>::new());
        system
    }

    /// Writes a raw level-3 descriptor into guest 1's table at `ipa` (a slot next to A).
    fn plant(system: &mut SmallSystem, ipa: Ipa, value: u64) {
        let table = system.engine.domain(GUEST_HISTORY).unwrap().table;
        let pa = table.translate_descriptor(&system.arch, ipa);
        let slot = DescriptorSlot {
            pa,
            vmid: table.vmid(),
            ipa,
            level: 3,
        };
        system.arch.write_descriptor(slot, value);
    }

    fn leaf(pa: PhysAddr, rights: Rights, state: PageState) -> u64 {
        encode_leaf(
            &Leaf {
                pa,
                rights,
                memory: MemoryType::Normal,
                state,
            },
            3,
        )
    }

    fn expect(system: &SmallSystem, invariant: &str, fragment: &str) {
        let found = system.audit();
        assert!(
            found
                .iter()
                .any(|line| line.starts_with(invariant) && line.contains(fragment)),
            "expected {invariant} mentioning {fragment}, got {found:?}"
        );
    }

    #[test]
    fn i1_exclusive_frame_mapped_twice() {
        let mut system = system();
        // Map the host's own frame B into the guest as if the guest owned it.
        plant(
            &mut system,
            FRAME_B_IPA,
            leaf(SmallSystem::frame(513), Rights::ALL, PageState::Owned),
        );
        expect(&system, "I1", "domain1 ipa 0x40201000 pa 0x40201000");
    }

    #[test]
    fn i2_borrower_rights_wider_than_granted() {
        let mut system = system();
        let (engine, arch) = (&mut system.engine, &mut system.arch);
        engine
            .share_with_guest(arch, HOST, GUEST_HISTORY, FRAME_B_IPA, 1, Rights::READ)
            .unwrap();
        arch.end_call();
        assert_eq!(system.audit(), Vec::<String>::new());
        let rw = leaf(
            SmallSystem::frame(513),
            Rights::READ_WRITE,
            PageState::SharedBorrowed,
        );
        plant(&mut system, FRAME_B_IPA, rw);
        expect(&system, "I2", "more rights");
    }

    #[test]
    fn i3_state_bits_and_missing_descriptor() {
        let mut system = system();
        let owned = leaf(SmallSystem::frame(512), Rights::ALL, PageState::SharedOwned);
        plant(&mut system, FRAME_A_IPA, owned);
        expect(&system, "I3", "software state bits disagree");
        plant(&mut system, FRAME_A_IPA, 0);
        expect(&system, "I3", "holder record without a descriptor");
    }

    #[test]
    fn i4_hypervisor_memory_and_foreign_tables() {
        let mut system = system();
        plant(
            &mut system,
            FRAME_B_IPA,
            leaf(HYPERVISOR.0, Rights::READ, PageState::Passthrough),
        );
        expect(&system, "I4", "hypervisor memory mapped");
        // A level-2 descriptor pointing at a "table" in guest-reachable memory.
        let table = system.engine.domain(GUEST_SPLIT).unwrap().table;
        let l1 = descriptor_address(table.root(), Ipa(0), 1);
        let slot = DescriptorSlot {
            pa: l1,
            vmid: table.vmid(),
            ipa: Ipa(0),
            level: 1,
        };
        system
            .arch
            .write_descriptor(slot, encode_table(SmallSystem::frame(7)));
        let found = system.audit();
        assert!(
            found
                .iter()
                .any(|line| line.starts_with("I4 domain2")
                    && line.contains("outside the table pool")),
            "{found:?}"
        );
    }

    #[test]
    fn scratch_too_small_is_refused_not_a_panic() {
        let system = system();
        let mut scratch = [0u8; 4];
        assert!(audit(&system.engine, &system.arch, &mut scratch, &mut |_| {}).is_none());
    }
}
