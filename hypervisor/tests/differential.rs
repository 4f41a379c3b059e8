//! Differential property test: random request sequences run on the engine (real stage-2 tables
//! in the fake arch) and on the reference model (plain maps). After every step the two agree,
//! the audit passes (I1-I4), the fake saw no break-before-make or stale-TLB violation (I6, I7),
//! the recorded invalidations cover every removed or narrowed translation (I6), only
//! relinquish/teardown wrote frames and only to zero them (I5), and a refused request changed
//! nothing (I8).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test fails loudly on an unexpected error"
)]

mod reference_model;

use std::collections::BTreeMap;

use frameshift_hypervisor::addr::PAGE_SIZE;
use frameshift_hypervisor::fake_arch::Invalidation;
use frameshift_hypervisor::small_system::{
    SmallSystem, BLOCK_IPA, FRAMES, GUEST_HISTORY, GUEST_SPLIT, HOST,
};
use frameshift_hypervisor::walk::{for_each_leaf, LeafKind};
use frameshift_hypervisor::{
    descriptor::level_span, DomainId, Error, Ipa, Operation, Request, Rights,
};
use proptest::prelude::*;
use reference_model::{Model, Op, View};

/// One random step.
#[derive(Clone, Debug)]
enum Step {
    Convert {
        op: Op,
        guest: DomainId,
        ipa: Ipa,
        pages: u64,
        rights: Rights,
    },
    Teardown(DomainId),
    Pin(usize),
    Unpin(usize),
}

fn guest() -> impl Strategy<Value = DomainId> {
    prop_oneof![Just(GUEST_HISTORY), Just(GUEST_SPLIT)]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        Just(Op::Donate),
        Just(Op::Share),
        Just(Op::Unshare),
        Just(Op::Relinquish),
        Just(Op::ShareWithGuest),
        Just(Op::UnshareFromGuest),
        Just(Op::Lend),
        Just(Op::Reclaim),
    ]
}

/// A guest IPA: mostly the interesting pages (block start, second page, last block page, the
/// lone frames), sometimes any page, an alias, a misaligned or out-of-window address.
fn ipa() -> impl Strategy<Value = Ipa> {
    let page = |index: u64| Ipa(BLOCK_IPA.get() + index * PAGE_SIZE);
    prop_oneof![
        8 => prop_oneof![Just(0u64), Just(1), Just(511), Just(512), Just(513)].prop_map(page),
        2 => (0u64..FRAMES as u64).prop_map(page),
        1 => (0u64..FRAMES as u64).prop_map(move |index| page(index).shared_alias()),
        1 => prop_oneof![Just(Ipa(BLOCK_IPA.get() + 0x800)), Just(Ipa(0x7000_0000)), Just(Ipa(1 << 40))],
    ]
}

fn pages() -> impl Strategy<Value = u64> {
    prop_oneof![8 => Just(1u64), 2 => 2u64..4, 4 => Just(512), 1 => Just(0), 1 => Just(513)]
}

fn rights() -> impl Strategy<Value = Rights> {
    (0u8..8).prop_map(Rights::from_bits_truncate)
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        12 => (op(), guest(), ipa(), pages(), rights())
            .prop_map(|(op, guest, ipa, pages, rights)| Step::Convert { op, guest, ipa, pages, rights }),
        1 => guest().prop_map(Step::Teardown),
        1 => prop_oneof![Just(0usize), Just(1), Just(512), Just(513)].prop_map(Step::Pin),
        1 => prop_oneof![Just(0usize), Just(1), Just(512), Just(513)].prop_map(Step::Unpin),
    ]
}

fn operation(op: Op) -> Operation {
    match op {
        Op::Donate => Operation::Donate,
        Op::Share => Operation::Share,
        Op::Unshare => Operation::Unshare,
        Op::Relinquish => Operation::Relinquish,
        Op::ShareWithGuest => Operation::ShareWithGuest,
        Op::UnshareFromGuest => Operation::UnshareFromGuest,
        Op::Lend => Operation::Lend,
        Op::Reclaim => Operation::Reclaim,
    }
}

/// Every page the engine's tables map or annotate, as the model would write it, plus the span
/// of the leaf each page sits in (for the I6 check).
fn engine_views(system: &SmallSystem) -> BTreeMap<(DomainId, Ipa), (View, u64)> {
    let mut views = BTreeMap::new();
    for (domain, state) in system.engine.domains() {
        let mut visit = |entry: frameshift_hypervisor::walk::LeafEntry| {
            let span = level_span(entry.level);
            for page in 0..span / PAGE_SIZE {
                let ipa = Ipa(entry.ipa.get() + page * PAGE_SIZE);
                let view = match entry.kind {
                    LeafKind::Mapped(leaf) => View::Mapped(
                        frameshift_hypervisor::PhysAddr(leaf.pa.get() + page * PAGE_SIZE),
                        leaf.rights,
                        leaf.state,
                    ),
                    LeafKind::LentAway(pa) => View::LentAway(pa),
                    other => panic!("unexpected descriptor {other:?} at {ipa}"),
                };
                views.insert((domain, ipa), (view, span));
            }
        };
        for_each_leaf(&system.arch, state.table.root(), &|_| true, &mut visit);
    }
    views
}

/// The engine's frame table, as the model writes it.
fn engine_frames(
    system: &SmallSystem,
) -> BTreeMap<frameshift_hypervisor::PhysAddr, reference_model::Frame> {
    let table = system.engine.frame_table();
    (0..table.frames())
        .map(|index| {
            let record = table.record_at(index);
            let mut borrowers = BTreeMap::new();
            table.for_each_borrower(index, |domain, rights| {
                borrowers.insert(domain, rights);
            });
            let frame = reference_model::Frame {
                owner: record.owner(),
                state: record.state(),
                owner_rights: record.owner_rights(),
                borrowers,
                pins: record.pins(),
            };
            (table.frame_address(index), frame)
        })
        .collect()
}

fn vmid(system: &SmallSystem, domain: DomainId) -> frameshift_hypervisor::Vmid {
    system.engine.domain(domain).unwrap().table.vmid()
}

/// Runs one step on both and checks everything; returns a description of the first problem.
fn check_step(system: &mut SmallSystem, model: &mut Model, step: &Step) -> Result<(), String> {
    let before_engine = system.engine.clone();
    let before_arch = system.arch.clone();
    let before_views = engine_views(system);
    let (engine_ok, model_ok, zeroing, guest) = match *step {
        Step::Convert {
            op,
            guest,
            ipa,
            pages,
            rights,
        } => {
            let request = Request {
                operation: operation(op),
                host: HOST,
                guest,
                ipa,
                pages,
                rights,
            };
            let engine_result = system.engine.convert(&mut system.arch, request);
            let before_model = model.clone();
            let mut model_ok = model.request(op, guest, ipa, pages, rights);
            // The reference model has no capacity limits. The engine's fixed borrower side
            // table and table pool may run out (e.g. a 512-page range shared with a second
            // guest needs 512 side records): that refusal is allowed, and like every refusal it
            // must change nothing (the I8 check below), so the model step is undone.
            if model_ok
                && matches!(
                    engine_result,
                    Err(Error::BorrowerTableFull | Error::OutOfTableMemory)
                )
            {
                *model = before_model;
                model_ok = false;
            }
            (
                engine_result.is_ok(),
                model_ok,
                op == Op::Relinquish,
                Some(guest),
            )
        }
        Step::Teardown(guest) => {
            let engine_ok = system.engine.teardown(&mut system.arch, guest).is_ok();
            model.teardown(guest);
            (engine_ok, true, true, Some(guest))
        }
        Step::Pin(index) => {
            let pa = SmallSystem::frame(index);
            (system.engine.pin(pa).is_ok(), model.pin(pa), false, None)
        }
        Step::Unpin(index) => {
            let pa = SmallSystem::frame(index);
            (
                system.engine.unpin(pa).is_ok(),
                model.unpin(pa),
                false,
                None,
            )
        }
    };
    if engine_ok != model_ok {
        return Err(format!(
            "engine accepted={engine_ok} but model accepted={model_ok}"
        ));
    }
    let invalidations = system.arch.end_call();
    let violations = system.arch.take_violations();
    if !violations.is_empty() {
        return Err(format!("fake arch violations: {violations:?}"));
    }
    let frame_writes = system.arch.take_frame_writes();
    if !engine_ok {
        // I8: a refusal changes nothing at all.
        if system.engine != before_engine || !system.arch.same_memory(&before_arch) {
            return Err("I8: refused request changed the state".into());
        }
        if !invalidations.is_empty() || !frame_writes.is_empty() {
            return Err("I8: refused request touched the machine".into());
        }
    }
    // Agreement with the model.
    let after_views = engine_views(system);
    let engine_plain: BTreeMap<_, _> = after_views
        .iter()
        .map(|(key, (view, _))| (*key, *view))
        .collect();
    if engine_plain != model.views {
        let only_engine: Vec<_> = engine_plain
            .iter()
            .filter(|(k, v)| model.views.get(k) != Some(v))
            .take(4)
            .collect();
        let only_model: Vec<_> = model
            .views
            .iter()
            .filter(|(k, v)| engine_plain.get(k) != Some(v))
            .take(4)
            .collect();
        return Err(format!(
            "mappings differ: engine {only_engine:?} model {only_model:?}"
        ));
    }
    if engine_frames(system) != model.frames {
        return Err("frame tables differ".into());
    }
    // I1-I4.
    let audit = system.audit();
    if !audit.is_empty() {
        return Err(format!("audit: {audit:?}"));
    }
    // I5: only relinquish/teardown write frames, only frames the guest lost, and only zeroes.
    for frame in frame_writes {
        let left_guest = before_engine
            .frame_table()
            .record(frame)
            .and_then(|r| r.owner())
            == guest
            && system
                .engine
                .frame_table()
                .record(frame)
                .and_then(|r| r.owner())
                == Some(HOST);
        if !zeroing || !left_guest || !system.arch.is_zero(frame) {
            return Err(format!("I5: frame {frame} written"));
        }
    }
    // I5 (confidentiality side): a frame that left the guest for the host is zero.
    if let (Some(guest), true) = (guest, engine_ok) {
        let frames = system.engine.frame_table();
        for index in 0..frames.frames() {
            let left = before_engine.frame_table().record_at(index).owner() == Some(guest)
                && frames.record_at(index).owner() == Some(HOST);
            if left && !system.arch.is_zero(frames.frame_address(index)) {
                return Err(format!(
                    "I5: frame {index} left the guest without being zeroed"
                ));
            }
        }
    }
    // I6: every removed or narrowed translation is covered by a recorded invalidation.
    for ((domain, ipa), (view, span)) in &before_views {
        let View::Mapped(pa, rights, _) = *view else {
            continue;
        };
        let kept = matches!(after_views.get(&(*domain, *ipa)), Some((View::Mapped(new_pa, new_rights, _), _))
            if *new_pa == pa && new_rights.contains(rights));
        if kept {
            continue;
        }
        let vmid = vmid(system, *domain);
        let base = ipa.get() & !(span - 1);
        let covered = invalidations
            .iter()
            .any(|invalidation| match *invalidation {
                Invalidation::Vmid(target) => target == vmid,
                Invalidation::Ipa(target, at) => {
                    target == vmid && base <= at.get() && at.get() < base + span
                }
            });
        if !covered {
            return Err(format!(
                "I6: {domain} {ipa} lost {pa} without an invalidation"
            ));
        }
    }
    Ok(())
}

proptest! {
    #[test]
    fn engine_agrees_with_the_reference_model(steps in proptest::collection::vec(step(), 1..24)) {
        let mut system = SmallSystem::boot().unwrap();
        let mut model = Model::boot();
        let pristine: Vec<u64> = (0..FRAMES).map(|index| system.arch.digest(SmallSystem::frame(index))).collect();
        for (number, step) in steps.iter().enumerate() {
            if let Err(problem) = check_step(&mut system, &mut model, step) {
                prop_assert!(false, "step {number} {step:?}: {problem}");
            }
        }
        // I5 over the whole run: every frame holds its original contents unless it was zeroed.
        for (index, digest) in pristine.iter().enumerate() {
            let frame = SmallSystem::frame(index);
            if model.zeroed.contains(&frame) {
                prop_assert!(system.arch.is_zero(frame), "zeroed frame {} not zero", frame);
            } else {
                prop_assert_eq!(system.arch.digest(frame), *digest, "frame {} changed", frame);
            }
        }
    }
}
