//! Exhaustive model checking of the ownership core on the [`SmallSystem`] (host only).
//!
//! Breadth-first exploration of every state reachable from boot, under two request alphabets
//! (see [`scenarios`]): *contention* (both guests fight over frame A with every operation, the
//! split-mode guest owns frame B's side, the history-mode guest cycles the block's first page,
//! second page and whole block) and *split block* (the split-mode guest with every operation on
//! the block's first page, second page and whole block). Teardown of each guest is in both.
//! Guest 1 runs in history mode, guest 2 in split mode. States are deduplicated by a
//! canonical encoding (frame-table records with borrower sets instead of side-table links, and
//! each domain's descriptors as runs, independent of where table pages were allocated).
//!
//! Checked in every state: I1-I4 by [`crate::audit`]. Checked on every transition: I5 (only
//! relinquish and teardown write frames, only frames leaving the guest, and they end zeroed),
//! I6 (the fake arch's stale-translation tracking, and an independent before/after comparison
//! of translations against the recorded invalidations), I7 (the fake's break-before-make
//! check) and I8 (a refused request leaves engine and memory identical).

extern crate std;

use std::collections::{HashSet, VecDeque};
use std::fmt;
use std::format;
use std::string::String;
use std::vec::Vec;

use crate::addr::{DomainId, Ipa, PhysAddr, PAGES_PER_BLOCK, PAGE_SIZE};
use crate::arch::PhysMemory;
use crate::descriptor::{level_span, Rights};
use crate::engine::{Request, MAX_RANGE_PAGES};
use crate::fake_arch::Invalidation;
use crate::ownership::Operation;
use crate::small_system::{
    SmallSystem, BLOCK_IPA, FRAME_A_IPA, FRAME_B_IPA, GUEST_HISTORY, GUEST_SPLIT, HOST,
};
use crate::walk::{for_each_leaf, Walk};

/// The model checker's result.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Report {
    /// Distinct states visited.
    pub states: usize,
    /// Transitions explored (accepted and refused requests).
    pub transitions: usize,
    /// Of which accepted.
    pub accepted: usize,
    /// Violations found (the first few are kept in `details`).
    pub violations: usize,
    /// Whether the whole reachable space was explored within the state bound.
    pub complete: bool,
    /// The first violations, described.
    pub details: Vec<String>,
    /// Per scenario: name, states, transitions, complete.
    pub scenarios: Vec<(&'static str, usize, usize, bool)>,
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for detail in &self.details {
            writeln!(f, "violation: {detail}")?;
        }
        for (name, states, transitions, complete) in &self.scenarios {
            writeln!(
                f,
                "scenario {name}: states={states} transitions={transitions} complete={complete}"
            )?;
        }
        writeln!(
            f,
            "explored the small system (host + history-mode guest + split-mode guest; frames A, B \
             and a 2 MiB block) from boot: {} accepted requests",
            self.accepted
        )?;
        write!(
            f,
            "model-check: states={} transitions={} violations={} complete={}",
            self.states, self.transitions, self.violations, self.complete
        )
    }
}

/// One request of an alphabet.
#[derive(Clone, Copy, Debug)]
pub enum Step {
    /// A conversion request.
    Convert(Request),
    /// Teardown of a guest.
    Teardown(DomainId),
}

const EVERY: [Operation; 8] = Operation::REQUESTS;
const GUEST_CYCLE: [Operation; 4] = [
    Operation::Donate,
    Operation::Share,
    Operation::Unshare,
    Operation::Relinquish,
];

fn steps(plan: &[(DomainId, Ipa, u64, &[Operation])]) -> Vec<Step> {
    let mut steps = Vec::new();
    for &(guest, ipa, pages, operations) in plan {
        for &operation in operations {
            let rights = Rights::READ_WRITE;
            steps.push(Step::Convert(Request {
                operation,
                host: HOST,
                guest,
                ipa,
                pages,
                rights,
            }));
        }
    }
    steps.push(Step::Teardown(GUEST_HISTORY));
    steps.push(Step::Teardown(GUEST_SPLIT));
    steps
}

/// The request alphabets, each explored from boot.
///
/// Frames are independent, so the state space is the product of per-frame states; one alphabet
/// with every operation of both guests on all five targets would be far too large to explore in
/// seconds. *Contention* keeps the cross-guest interplay (frame A) and the history-mode block
/// cycle; *split block* gives the split-mode guest every operation, host-side ones included, on
/// the block (split, alias, lent-away annotations over a block, coalescing). The property test
/// samples the remaining combinations.
pub fn scenarios() -> Vec<(&'static str, Vec<Step>)> {
    let second_page = Ipa(BLOCK_IPA.get() + PAGE_SIZE);
    let contention = steps(&[
        (GUEST_HISTORY, FRAME_A_IPA, 1, &EVERY),
        (GUEST_HISTORY, BLOCK_IPA, 1, &GUEST_CYCLE),
        (GUEST_HISTORY, second_page, 1, &GUEST_CYCLE),
        (GUEST_HISTORY, BLOCK_IPA, MAX_RANGE_PAGES, &GUEST_CYCLE),
        (GUEST_SPLIT, FRAME_A_IPA, 1, &EVERY),
        (GUEST_SPLIT, FRAME_B_IPA, 1, &EVERY),
    ]);
    let split_block = steps(&[
        (GUEST_SPLIT, BLOCK_IPA, 1, &EVERY),
        (GUEST_SPLIT, second_page, 1, &EVERY),
        (GUEST_SPLIT, BLOCK_IPA, MAX_RANGE_PAGES, &EVERY),
    ]);
    std::vec![("contention", contention), ("split-block", split_block)]
}

/// IPAs whose translations are compared before and after every request (I6).
pub fn probe_points() -> Vec<(DomainId, Ipa)> {
    let guest_ipas = [
        FRAME_A_IPA,
        FRAME_B_IPA,
        BLOCK_IPA,
        Ipa(BLOCK_IPA.get() + PAGE_SIZE),
        Ipa(BLOCK_IPA.get() + 2 * PAGE_SIZE),
        Ipa(BLOCK_IPA.get() + (PAGES_PER_BLOCK - 1) * PAGE_SIZE),
    ];
    let window = crate::small_system::window();
    let mut points = Vec::new();
    for ipa in guest_ipas {
        for guest in [GUEST_HISTORY, GUEST_SPLIT] {
            points.push((guest, ipa));
            points.push((guest, ipa.shared_alias()));
        }
        if let Some(host_ipa) = window.host_ipa(ipa) {
            points.push((HOST, host_ipa));
        }
    }
    points
}

/// A translation as the walker sees it: (page PA, rights, leaf base IPA, leaf span).
type Seen = Option<(PhysAddr, Rights, Ipa, u64)>;

/// Translations at the probe points.
pub fn translations(system: &SmallSystem, points: &[(DomainId, Ipa)]) -> Vec<Seen> {
    points
        .iter()
        .map(|&(domain, ipa)| {
            let table = system.engine.domain(domain)?.table;
            match table.translate(&system.arch, ipa) {
                Walk::Mapped(translation) => {
                    let span = level_span(translation.level);
                    let base = Ipa(ipa.get() & !(span - 1));
                    Some((translation.leaf.pa, translation.leaf.rights, base, span))
                }
                _ => None,
            }
        })
        .collect()
}

/// I6, independently of the fake's own tracking: every translation at a probe point that a call
/// removed or narrowed must be covered by an invalidation recorded during the call.
pub fn check_invalidations(
    system: &SmallSystem,
    points: &[(DomainId, Ipa)],
    before: &[Seen],
    after: &[Seen],
    invalidations: &[Invalidation],
) -> Vec<String> {
    let mut problems = Vec::new();
    for ((&(domain, ipa), old), new) in points.iter().zip(before).zip(after) {
        let Some((old_pa, old_rights, base, span)) = *old else {
            continue;
        };
        let kept =
            matches!(*new, Some((pa, rights, _, _)) if pa == old_pa && rights.contains(old_rights));
        if kept {
            continue;
        }
        let Some(vmid) = system
            .engine
            .domain(domain)
            .map(|domain| domain.table.vmid())
        else {
            continue;
        };
        let covered = invalidations
            .iter()
            .any(|invalidation| match *invalidation {
                Invalidation::Vmid(target) => target == vmid,
                Invalidation::Ipa(target, at) => {
                    target == vmid && base <= at && at.get() < base.get() + span
                }
            });
        if !covered {
            problems.push(format!(
                "I6: {domain} ipa {ipa} lost or narrowed its translation to {old_pa} without an invalidation"
            ));
        }
    }
    problems
}

/// Canonical encoding of a state: independent of table-page placement and side-table links.
pub fn canonical(system: &SmallSystem) -> Vec<u64> {
    let mut code = Vec::new();
    let frames = system.engine.frame_table();
    let mut run: Option<(u64, u64)> = None;
    let flush = |code: &mut Vec<u64>, run: &mut Option<(u64, u64)>| {
        if let Some((value, count)) = run.take() {
            code.push(value);
            code.push(count);
        }
    };
    for index in 0..frames.frames() {
        let record = frames.record_at(index);
        let mut value = record.owner().map_or(63, |owner| u64::from(owner.0))
            | (record.state() as u64) << 6
            | u64::from(record.owner_rights().bits()) << 8
            | u64::from(record.pins()) << 12;
        frames.for_each_borrower(index, |domain, rights| {
            value |= (8 | u64::from(rights.bits())) << (20 + 4 * u32::from(domain.0.min(10)));
        });
        match &mut run {
            Some((current, count)) if *current == value => *count += 1,
            _ => {
                flush(&mut code, &mut run);
                run = Some((value, 1));
            }
        }
    }
    flush(&mut code, &mut run);
    for (id, domain) in system.engine.domains() {
        code.push(u64::MAX);
        code.push(u64::from(id.0) << 1 | u64::from(domain.alive));
        let mut runs: Vec<[u64; 4]> = Vec::new();
        let mut visit = |entry: crate::walk::LeafEntry| {
            let raw = system.arch.read_u64(entry.descriptor);
            let level = u64::from(entry.level);
            if let Some(last) = runs.last_mut() {
                let next_ipa = last[0] + last[3] * PAGE_SIZE;
                let next_raw = last[2] + last[3] * PAGE_SIZE;
                if level == 3 && last[1] == 3 && entry.ipa.get() == next_ipa && raw == next_raw {
                    last[3] += 1;
                    return;
                }
            }
            runs.push([entry.ipa.get(), level, raw, 1]);
        };
        for_each_leaf(&system.arch, domain.table.root(), &|_| true, &mut visit);
        for entry in runs {
            code.extend_from_slice(&entry);
        }
    }
    code
}

/// Runs one step on `system`, checking the call-level invariants; returns whether it was
/// accepted and any violations.
fn apply(
    before: &SmallSystem,
    seen_before: &[Seen],
    step: Step,
    points: &[(DomainId, Ipa)],
) -> (SmallSystem, bool, Vec<String>) {
    let mut next = before.clone();
    let system = &mut next;
    let result = match step {
        Step::Convert(request) => system.engine.convert(&mut system.arch, request),
        Step::Teardown(guest) => system.engine.teardown(&mut system.arch, guest),
    };
    let invalidations = system.arch.end_call();
    let mut problems: Vec<String> = system.arch.take_violations();
    let frame_writes = system.arch.take_frame_writes();
    let describe = |problem: String| format!("{step:?}: {problem}");
    if result.is_err() {
        if system.engine != before.engine || !system.arch.same_memory(&before.arch) {
            problems.push(String::from("I8: a refused request changed the state"));
        }
        let problems = problems.into_iter().map(describe).collect();
        return (next, false, problems);
    }
    // I5: only relinquish and teardown write frames, only those that left the guest, zeroed.
    let zeroing = matches!(
        step,
        Step::Teardown(_)
            | Step::Convert(Request {
                operation: Operation::Relinquish,
                ..
            })
    );
    let guest = match step {
        Step::Convert(request) => request.guest,
        Step::Teardown(guest) => guest,
    };
    for frame in frame_writes {
        let old_owner = before
            .engine
            .frame_table()
            .record(frame)
            .and_then(|record| record.owner());
        let new_owner = system
            .engine
            .frame_table()
            .record(frame)
            .and_then(|record| record.owner());
        let left_guest = old_owner == Some(guest) && new_owner == Some(HOST);
        if !zeroing || !left_guest || !system.arch.is_zero(frame) {
            problems.push(format!(
                "I5: frame {frame} written (left guest: {left_guest})"
            ));
        }
    }
    // I5 (confidentiality side): a frame that left the guest for the host is zero.
    let frames = system.engine.frame_table();
    for index in 0..frames.frames() {
        let old_owner = before.engine.frame_table().record_at(index).owner();
        let new_owner = frames.record_at(index).owner();
        let frame = frames.frame_address(index);
        if old_owner == Some(guest) && new_owner == Some(HOST) && !system.arch.is_zero(frame) {
            problems.push(format!(
                "I5: frame {frame} left the guest without being zeroed"
            ));
        }
    }
    let seen_after = translations(system, points);
    problems.extend(check_invalidations(
        system,
        points,
        seen_before,
        &seen_after,
        &invalidations,
    ));
    let problems = problems.into_iter().map(describe).collect();
    (next, true, problems)
}

/// Explores the small system breadth-first under every scenario, visiting at most
/// `max_states` states per scenario.
pub fn run(max_states: usize) -> Report {
    let mut report = Report {
        states: 0,
        transitions: 0,
        accepted: 0,
        violations: 0,
        complete: true,
        details: Vec::new(),
        scenarios: Vec::new(),
    };
    for (name, steps) in scenarios() {
        let (states, transitions) = (report.states, report.transitions);
        let complete = explore(&steps, max_states, &mut report);
        report.complete &= complete;
        report.scenarios.push((
            name,
            report.states - states,
            report.transitions - transitions,
            complete,
        ));
    }
    report
}

fn record(report: &mut Report, problems: Vec<String>) {
    report.violations += problems.len();
    for problem in problems {
        if report.details.len() < 20 {
            report.details.push(problem);
        }
    }
}

/// One breadth-first exploration from boot; returns whether it finished.
fn explore(steps: &[Step], max_states: usize, report: &mut Report) -> bool {
    let initial = match SmallSystem::boot() {
        Ok(system) => system,
        Err(error) => {
            record(report, std::vec![format!("boot failed: {error:?}")]);
            return false;
        }
    };
    let points = probe_points();
    let mut seen: HashSet<Vec<u64>> = HashSet::new();
    let mut queue = VecDeque::new();
    seen.insert(canonical(&initial));
    record(report, initial.audit());
    let mut states = 1;
    report.states += 1;
    queue.push_back(initial);
    while let Some(state) = queue.pop_front() {
        let seen_before = translations(&state, &points);
        for &step in steps {
            let (next, accepted, problems) = apply(&state, &seen_before, step, &points);
            report.transitions += 1;
            record(report, problems);
            if !accepted {
                continue;
            }
            report.accepted += 1;
            if seen.insert(canonical(&next)) {
                if states >= max_states {
                    return false;
                }
                states += 1;
                report.states += 1;
                let audit = next.audit();
                let problems = audit
                    .into_iter()
                    .map(|line| format!("{step:?}: {line}"))
                    .collect();
                record(report, problems);
                queue.push_back(next);
            }
        }
    }
    true
}

/// The default bound: far above the reachable space, so `complete` means exhaustive.
pub const DEFAULT_MAX_STATES: usize = 2_000_000;

/// Runs the default configuration (what `cargo xtask model-check` prints).
pub fn run_default() -> Report {
    run(DEFAULT_MAX_STATES)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_check_explores_everything_without_violations() {
        let report = run_default();
        std::println!("{report}");
        assert_eq!(report.violations, 0, "{report}");
        assert!(report.complete, "{report}");
        assert!(report.states > 100, "the space is not trivial: {report}");
    }
}
