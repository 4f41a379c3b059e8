//! Exhaustive model checking of the ownership core on small systems (host only).
//!
//! Breadth-first exploration of every state reachable from boot under each [`Scenario`]: a
//! system [`Layout`] and a request alphabet (see the [`scenarios`](mod@scenarios) module).
//! States are deduplicated by a canonical encoding (frame-table records with borrower sets
//! instead of side-table links, each domain's descriptors as runs, independent of where table
//! pages were allocated, and what capacity refusals depend on: the pool's free pages and how
//! deep the tables reach at the probe points).
//!
//! Every transition is run on the engine and on the [`reference`](mod@reference) model, written from the
//! design independently of `ownership::decide`, and checked:
//! - the answer: accepted, or refused with the same [`Error`], as the reference model says
//!   (so a legal request wrongly refused fails, as does a wrong refusal code). Capacity
//!   refusals are predicted too: the model counts side-table records, and the table pool is
//!   judged by [`table_pages_to_reserve`];
//! - the resulting state: the engine's frame table and every domain's mappings, read back
//!   through the walker ([`observe`]), equal the model's;
//! - I1-I4 by [`frameshift_core::audit`](mod@frameshift_core::audit) in every new state; I5 (only relinquish and teardown write
//!   frames, exactly the frames the model zeroes, only frames leaving the guest, and they end
//!   zeroed); I6 (the fake arch's stale-translation tracking, and an independent before/after
//!   comparison of translations against the recorded invalidations); I7 (the fake's
//!   break-before-make check); I8 (a refused request leaves engine and memory identical).

extern crate std;

pub mod reference;
pub mod scenarios;

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::fmt;
use std::format;
use std::hash::{Hash, Hasher};
use std::rc::Rc;
use std::string::String;
use std::vec;
use std::vec::Vec;

use frameshift_core::addr::{Ipa, PhysAddr, BLOCK_SIZE, PAGES_PER_BLOCK, PAGE_SIZE};
use frameshift_core::arch::fake::Invalidation;
use frameshift_core::arch::PhysMemory;
use frameshift_core::descriptor::{level_span, Rights};
use frameshift_core::domain::{ConversionMode, DomainId};
use frameshift_core::engine::Request;
use frameshift_core::error::Error;
use frameshift_core::ownership::Operation;
use frameshift_core::small_system::{Layout, System, HOST};
use frameshift_core::stage2::{Reach, Stage2Table};
use frameshift_core::walk::{for_each_leaf, LeafKind, Walk};
use reference::{Frame, Model, Plan, State, View, Write};
use scenarios::{scenarios, Scenario};

/// One request of an alphabet.
#[derive(Clone, Copy, Debug)]
pub enum Step {
    /// A conversion request.
    Convert(Request),
    /// Teardown of a guest.
    Teardown(DomainId),
    /// A pin on a frame.
    Pin(PhysAddr),
    /// Dropping a pin.
    Unpin(PhysAddr),
}

/// Every kind of step, in report order: the eight requests, teardown, pin, unpin.
pub const KINDS: [&str; 11] = [
    "Donate",
    "Share",
    "Unshare",
    "Relinquish",
    "ShareWithGuest",
    "UnshareFromGuest",
    "Lend",
    "Reclaim",
    "Teardown",
    "Pin",
    "Unpin",
];

impl Step {
    /// The step's index in [`KINDS`].
    pub fn kind(&self) -> usize {
        match self {
            Self::Convert(request) => Operation::REQUESTS
                .iter()
                .position(|&operation| operation == request.operation)
                .unwrap_or(8),
            Self::Teardown(_) => 8,
            Self::Pin(_) => 9,
            Self::Unpin(_) => 10,
        }
    }
}

/// Pins a frame may hold in the exploration (bounded so the space is finite; the counter's
/// own limit of 255 is `frame_table`'s unit tests' business).
pub const PIN_LIMIT: u8 = 1;

/// One scenario's numbers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScenarioReport {
    /// The scenario's name.
    pub name: &'static str,
    /// Distinct states.
    pub states: usize,
    /// Transitions explored.
    pub transitions: usize,
    /// Of which accepted.
    pub accepted: usize,
    /// Whether it was explored completely.
    pub complete: bool,
}

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
    /// Per scenario.
    pub scenarios: Vec<ScenarioReport>,
    /// Per step kind (index into [`KINDS`]): accepted, refused.
    pub by_kind: [(usize, usize); KINDS.len()],
    /// Refusals per reason (a teardown that returned some pages counts under its error too).
    pub by_error: BTreeMap<String, usize>,
}

impl Report {
    /// Accepted transitions of a kind named in [`KINDS`].
    pub fn accepted_of(&self, kind: &str) -> usize {
        KINDS
            .iter()
            .position(|&name| name == kind)
            .map_or(0, |index| self.by_kind[index].0)
    }

    /// Refused transitions of a kind named in [`KINDS`].
    pub fn refused_of(&self, kind: &str) -> usize {
        KINDS
            .iter()
            .position(|&name| name == kind)
            .map_or(0, |index| self.by_kind[index].1)
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for detail in &self.details {
            writeln!(f, "violation: {detail}")?;
        }
        for scenario in &self.scenarios {
            writeln!(
                f,
                "scenario {}: states={} transitions={} accepted={} complete={}",
                scenario.name,
                scenario.states,
                scenario.transitions,
                scenario.accepted,
                scenario.complete
            )?;
        }
        for (label, pick) in [("accepted", 0), ("refused", 1)] {
            write!(f, "model-check: {label}")?;
            for (name, counts) in KINDS.iter().zip(&self.by_kind) {
                let count = if pick == 0 { counts.0 } else { counts.1 };
                write!(f, " {name}={count}")?;
            }
            writeln!(f)?;
        }
        write!(f, "model-check: refusals")?;
        for (error, count) in &self.by_error {
            write!(f, " {error}={count}")?;
        }
        writeln!(f)?;
        write!(
            f,
            "model-check: states={} transitions={} violations={} complete={}",
            self.states, self.transitions, self.violations, self.complete
        )
    }
}

// ------------------------------------------------------------------ what the engine shows --

/// The engine's state as the reference model writes it: its frame table, every page its
/// tables map or annotate (read through the walker), and which guests are alive. A descriptor
/// the model has no word for is an error.
pub fn observe(system: &System) -> Result<State, String> {
    let table = system.engine.frame_table();
    let frames = (0..table.frames())
        .map(|index| {
            let record = table.record_at(index);
            let mut borrowers = BTreeMap::new();
            table.for_each_borrower(index, |domain, rights| {
                borrowers.insert(domain, rights);
            });
            Frame {
                owner: record.owner(),
                state: record.state(),
                owner_rights: record.owner_rights(),
                borrowers,
                pins: record.pins(),
            }
        })
        .collect();
    let mut views = BTreeMap::new();
    let mut alive = BTreeMap::new();
    let mut problem = None;
    for (id, domain) in system.domains.iter() {
        let vspace = domain.vspace;
        if vspace.link.is_some() {
            alive.insert(id, vspace.alive);
        }
        let mut visit = |entry: frameshift_core::walk::LeafEntry| {
            let span = level_span(entry.level);
            match entry.kind {
                LeafKind::Mapped(leaf) => {
                    for page in 0..span / PAGE_SIZE {
                        let ipa = Ipa(entry.ipa.get() + page * PAGE_SIZE);
                        let pa = PhysAddr(leaf.pa.get() + page * PAGE_SIZE);
                        views.insert((id, ipa), View::Mapped(pa, leaf.rights, leaf.state));
                    }
                }
                LeafKind::LentAway(pa) if entry.level == 3 => {
                    views.insert((id, entry.ipa), View::LentAway(pa));
                }
                other => {
                    problem.get_or_insert(format!("{id} ipa {}: {other:?}", entry.ipa));
                }
            }
        };
        for_each_leaf(&system.arch, vspace.table.root(), &|_| true, &mut visit);
    }
    match problem {
        Some(problem) => Err(problem),
        None => Ok(State {
            frames,
            views,
            alive,
        }),
    }
}

/// Where the engine's state and the model's differ, briefly.
pub fn difference(engine: &State, model: &State) -> Option<String> {
    if engine == model {
        return None;
    }
    let frames: Vec<_> = (0..engine.frames.len().max(model.frames.len()))
        .filter(|&index| engine.frames.get(index) != model.frames.get(index))
        .take(2)
        .map(|index| {
            format!(
                "frame {index}: engine {:?} model {:?}",
                engine.frames.get(index),
                model.frames.get(index)
            )
        })
        .collect();
    let only_engine: Vec<_> = engine
        .views
        .iter()
        .filter(|(key, view)| model.views.get(key) != Some(view))
        .take(3)
        .collect();
    let only_model: Vec<_> = model
        .views
        .iter()
        .filter(|(key, view)| engine.views.get(key) != Some(view))
        .take(3)
        .collect();
    Some(format!(
        "engine and reference model differ: {frames:?}; views only the engine has {only_engine:?}; \
         only the model {only_model:?}; alive engine {:?} model {:?}",
        engine.alive, model.alive
    ))
}

/// How deep a walk of `ipa` gets: 1 = no level-2 table, 2 = no level-3 table, 3 = a level-3
/// table covers it.
fn walk_depth(memory: &impl PhysMemory, table: Stage2Table, ipa: Ipa) -> u8 {
    match table.translate(memory, ipa) {
        Walk::Fault { level } | Walk::Malformed { level, .. } => level,
        Walk::Mapped(translation) => translation.level,
    }
}

/// The table pages the engine's prepare step counts for `request`, whose reference plan is
/// `plan`, from the engine's tables as they are (the model has none): the mirror of the engine's
/// rule (`engine/plan.rs`, `table_pages`), written from its description. Every slot the plan
/// writes is named by the reference plan (the host's window slot of every page, the guest's slot
/// it leaves and the one it takes). A slot that gets a mapping or an annotation needs a level-2
/// table in its 1 GiB region and, written page by page, a level-3 table in its 2 MiB region; a
/// region the plan only clears slots in needs a level-3 table only to split a block there. A
/// whole aligned uniform block (one run, not lent away) is written as level-2 descriptors: only
/// the level-2 tables count. `None` if the request names no linked guest (it is refused before
/// capacity matters).
pub fn table_pages_to_reserve(system: &System, request: &Request, plan: &Plan) -> Option<usize> {
    const GIGABYTE: u64 = 1 << 30;
    let link = system.vspace(request.guest)?.link?;
    let first = match link.mode {
        ConversionMode::History => request.ipa,
        ConversionMode::Split => request.ipa.private_ipa(),
    };
    let block = request.pages == PAGES_PER_BLOCK
        && first.is_block_aligned()
        && plan.uniform()
        && plan.first_frame().is_some_and(PhysAddr::is_block_aligned)
        && link
            .window
            .host_ipa(first)
            .is_some_and(Ipa::is_block_aligned)
        && !plan.host_lent();
    let writes: Vec<Write> = if block {
        // The first page's slots are the blocks' own.
        let per_page = plan.writes().count() / PAGES_PER_BLOCK as usize;
        plan.writes().take(per_page).collect()
    } else {
        plan.writes().collect()
    };
    let mut gigabytes = BTreeSet::new();
    let mut filled = BTreeSet::new();
    let mut emptied = BTreeSet::new();
    for (domain, ipa, maps) in writes {
        let region = (domain, ipa.get() & !(BLOCK_SIZE - 1));
        if maps {
            gigabytes.insert((domain, ipa.get() & !(GIGABYTE - 1)));
            if !block {
                filled.insert(region);
            }
        } else if !block {
            emptied.insert(region);
        }
    }
    let reach = |(domain, base): (DomainId, u64)| {
        system
            .vspace(domain)
            .map(|vspace| vspace.table.reach(&system.arch, Ipa(base)))
    };
    let level2 = gigabytes
        .iter()
        .filter(|&&region| reach(region) == Some(Reach::Level1))
        .count();
    let level3 = filled
        .iter()
        .filter(|&&region| reach(region) != Some(Reach::Level3))
        .count();
    let splits = emptied
        .difference(&filled)
        .filter(|&&region| reach(region) == Some(Reach::Block))
        .count();
    Some(level2 + level3 + splits)
}

/// Whether the engine's pool can hold what `request` (planned as `plan`) takes.
pub fn pool_suffices(system: &System, request: &Request, plan: &Plan) -> bool {
    table_pages_to_reserve(system, request, plan)
        .is_some_and(|needed| needed <= system.engine.pool().available())
}

/// What the reference model answers for `step` in `model` (whose engine twin is `system`),
/// and the model afterwards if the step changes it, and the frames it zeroes.
pub fn reference_answer(
    system: &System,
    model: &Model,
    step: Step,
) -> (Result<(), Error>, Option<Model>, Vec<PhysAddr>) {
    match step {
        Step::Convert(request) => {
            let plan = model.plan(&request).and_then(|plan| {
                if plan.side_records() > model.free_side_records() {
                    Err(Error::BorrowerTableFull)
                } else if !pool_suffices(system, &request, &plan) {
                    Err(Error::OutOfTableMemory)
                } else {
                    Ok(plan)
                }
            });
            match plan {
                Ok(plan) => {
                    let mut next = model.clone();
                    let zeroed = next.commit(plan);
                    (Ok(()), Some(next), zeroed)
                }
                Err(error) => (Err(error), None, Vec::new()),
            }
        }
        Step::Teardown(guest) => {
            let host = system
                .vspace(guest)
                .and_then(|vspace| vspace.link)
                .map_or(HOST, |link| link.host);
            // The engine tears down leaf by leaf: a page's step is its leaf's, planned on the
            // model as it is (with the guest dead, as teardown makes it first).
            let mut dead = model.clone();
            dead.state.alive.insert(guest, false);
            let mut leaves: BTreeMap<Ipa, bool> = BTreeMap::new();
            let mut next = model.clone();
            let (result, zeroed) = next.teardown(guest, |ipa| {
                let (base, pages) = system
                    .vspace(guest)
                    .and_then(|vspace| match vspace.table.translate(&system.arch, ipa) {
                        Walk::Mapped(translation) => {
                            let span = level_span(translation.level);
                            Some((Ipa(ipa.get() & !(span - 1)), span / PAGE_SIZE))
                        }
                        _ => None,
                    })
                    .unwrap_or((ipa, 1));
                *leaves.entry(base).or_insert_with(|| {
                    let request = Request::new(Operation::Teardown, host, guest, base, pages);
                    // A refused leaf is refused for its own reason, before capacity counts.
                    dead.plan(&request)
                        .map_or(true, |plan| pool_suffices(system, &request, &plan))
                })
            });
            (result, Some(next), zeroed)
        }
        Step::Pin(pa) | Step::Unpin(pa) => {
            let mut next = model.clone();
            let result = if matches!(step, Step::Pin(_)) {
                next.pin(pa)
            } else {
                next.unpin(pa)
            };
            let changed = result.is_ok().then_some(next);
            (result, changed, Vec::new())
        }
    }
}

/// Runs `step` on the engine.
pub fn engine_answer(system: &mut System, step: Step) -> Result<(), Error> {
    match step {
        Step::Convert(request) => system.convert(request),
        Step::Teardown(guest) => system.teardown(guest),
        Step::Pin(pa) => system.engine.pin(pa),
        Step::Unpin(pa) => system.engine.unpin(pa),
    }
}

// --------------------------------------------------------------------------- call checks --

/// IPAs whose translations are compared before and after every request (I6): each probe in
/// every guest (and at its alias), and its position in the host's window.
pub fn probe_points(layout: &Layout, probes: &[Ipa]) -> Vec<(DomainId, Ipa)> {
    let mut points = Vec::new();
    for &ipa in probes {
        for &(guest, link) in &layout.guests {
            points.push((guest, ipa));
            points.push((guest, ipa.shared_alias()));
            if let Some(host_ipa) = link.window.host_ipa(ipa) {
                if !points.contains(&(link.host, host_ipa)) {
                    points.push((link.host, host_ipa));
                }
            }
        }
    }
    points
}

/// A translation as the walker sees it: (page PA, rights, leaf base IPA, leaf span).
type Seen = Option<(PhysAddr, Rights, Ipa, u64)>;

/// Translations at the probe points.
pub fn translations(system: &System, points: &[(DomainId, Ipa)]) -> Vec<Seen> {
    points
        .iter()
        .map(|&(domain, ipa)| {
            let table = system.vspace(domain)?.table;
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
    system: &System,
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
        let Some(vmid) = system.vspace(domain).map(|vspace| vspace.table.vmid()) else {
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
/// Besides records and leaves it holds what capacity refusals depend on: the pool's free pages
/// and, at each of `points`, how deep the tables reach (an empty table still saves a page).
pub fn canonical(system: &System, points: &[(DomainId, Ipa)]) -> Vec<u64> {
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
    for (id, domain) in system.domains.iter() {
        let vspace = domain.vspace;
        code.push(u64::MAX);
        code.push(u64::from(id.0) << 1 | u64::from(vspace.alive));
        let mut runs: Vec<[u64; 4]> = Vec::new();
        let mut visit = |entry: frameshift_core::walk::LeafEntry| {
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
        for_each_leaf(&system.arch, vspace.table.root(), &|_| true, &mut visit);
        for entry in runs {
            code.extend_from_slice(&entry);
        }
    }
    code.push(system.engine.pool().available() as u64);
    for &(domain, ipa) in points {
        if let Some(vspace) = system.vspace(domain) {
            code.push(u64::from(walk_depth(&system.arch, vspace.table, ipa)));
        }
    }
    code
}

/// One state of the exploration: the engine and its reference twin.
#[derive(Clone, Debug)]
struct Node {
    system: System,
    model: Model,
}

/// What one transition did.
struct Outcome {
    result: Result<(), Error>,
    /// The next state, if the step changed the state and engine and model agree on the answer.
    next: Option<Node>,
    problems: Vec<String>,
}

/// Runs one step on the engine and the model, checking the call-level invariants.
fn transition(
    before: &Node,
    seen_before: &[Seen],
    step: Step,
    points: &[(DomainId, Ipa)],
) -> Outcome {
    let mut system = before.system.clone();
    let result = engine_answer(&mut system, step);
    let (expected, model, zeroed) = reference_answer(&before.system, &before.model, step);
    let invalidations = system.arch.end_call();
    let mut problems: Vec<String> = system.arch.take_violations();
    let frame_writes = system.arch.take_frame_writes();
    let agree = result == expected;
    if !agree {
        problems.push(format!(
            "the engine answered {result:?}, the reference model {expected:?}"
        ));
    }
    let describe = |problem: String| format!("{step:?}: {problem}");
    // A refused teardown may still have returned some pages: only conversions and pins are
    // all-or-nothing.
    let changed = result.is_ok() || matches!(step, Step::Teardown(_));
    if !changed {
        let unchanged = system.engine == before.system.engine
            && system.domains == before.system.domains
            && system.arch.same_memory(&before.system.arch);
        if !unchanged {
            problems.push(String::from("I8: a refused request changed the state"));
        }
        if !invalidations.is_empty() || !frame_writes.is_empty() {
            problems.push(String::from("I8: a refused request touched the machine"));
        }
        return Outcome {
            result,
            next: None,
            problems: problems.into_iter().map(describe).collect(),
        };
    }
    // I5: exactly the frames the model zeroes are written, and they end zeroed.
    let written: BTreeSet<PhysAddr> = frame_writes.iter().copied().collect();
    let expected_zero: BTreeSet<PhysAddr> = zeroed.iter().copied().collect();
    if agree && written != expected_zero {
        problems.push(format!(
            "I5: frames written {written:?}, the model zeroes {expected_zero:?}"
        ));
    }
    for &frame in &written {
        if !system.arch.is_zero(frame) {
            problems.push(format!("I5: frame {frame} written with non-zero contents"));
        }
    }
    // I5, without the model: a frame written left the guest for the host; a frame that left
    // the guest for the host is zero.
    let guest = match step {
        Step::Convert(request) => Some(request.guest),
        Step::Teardown(guest) => Some(guest),
        Step::Pin(_) | Step::Unpin(_) => None,
    };
    let old_frames = before.system.engine.frame_table();
    let new_frames = system.engine.frame_table();
    for index in 0..new_frames.frames() {
        let left_guest = guest.is_some()
            && old_frames.record_at(index).owner() == guest
            && new_frames.record_at(index).owner() == Some(HOST);
        let frame = new_frames.frame_address(index);
        if written.contains(&frame) && !left_guest {
            problems.push(format!(
                "I5: frame {frame} written but it did not leave the guest"
            ));
        }
        if left_guest && !system.arch.is_zero(frame) {
            problems.push(format!(
                "I5: frame {frame} left the guest without being zeroed"
            ));
        }
    }
    let seen_after = translations(&system, points);
    problems.extend(check_invalidations(
        &system,
        points,
        seen_before,
        &seen_after,
        &invalidations,
    ));
    let next = match (agree, model) {
        (true, Some(model)) => Some(Node { system, model }),
        _ => None,
    };
    Outcome {
        result,
        next,
        problems: problems.into_iter().map(describe).collect(),
    }
}

fn record(report: &mut Report, problems: Vec<String>) {
    report.violations += problems.len();
    for problem in problems {
        if report.details.len() < 20 {
            report.details.push(problem);
        }
    }
}

/// A fast, deterministic 64-bit hash (the multiply-rotate step of rustc's FxHasher): states
/// are hashed on every accepted transition, and SipHash dominated the run time. A collision
/// can only hide a divergence, never report a false one.
struct QuickHasher(u64);

impl QuickHasher {
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(0x517c_c1b7_2722_0a95);
    }
}

impl Hasher for QuickHasher {
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.add(u64::from_le_bytes(word));
        }
    }

    fn write_u8(&mut self, value: u8) {
        self.add(u64::from(value));
    }

    fn write_u16(&mut self, value: u16) {
        self.add(u64::from(value));
    }

    fn write_u32(&mut self, value: u32) {
        self.add(u64::from(value));
    }

    fn write_u64(&mut self, value: u64) {
        self.add(value);
    }

    fn write_usize(&mut self, value: usize) {
        self.add(value as u64);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

fn model_hash(state: &State) -> u64 {
    let mut hasher = QuickHasher(0);
    state.hash(&mut hasher);
    hasher.finish()
}

/// Checks a state seen for the first time: the audit, and the engine against the model.
fn check_new_state(node: &Node) -> Vec<String> {
    let mut problems = node.system.audit();
    match observe(&node.system) {
        Ok(engine) => problems.extend(difference(&engine, &node.model.state)),
        Err(problem) => problems.push(format!("unexpected descriptor: {problem}")),
    }
    problems
}

/// One breadth-first exploration of `scenario` from boot.
fn explore(scenario: &Scenario, max_states: usize, report: &mut Report) -> ScenarioReport {
    let mut numbers = ScenarioReport {
        name: scenario.name,
        states: 0,
        transitions: 0,
        accepted: 0,
        complete: false,
    };
    let layout = Rc::new(scenario.layout.clone());
    let booted = System::boot_layout(&layout).map_err(|error| format!("{error:?}"));
    let model = Model::boot(layout.clone()).map_err(|error| format!("{error:?}"));
    let initial = match (booted, model) {
        (Ok(system), Ok(model)) => Node { system, model },
        (system, model) => {
            let problem = format!("{}: boot failed: {system:?} / {model:?}", scenario.name);
            record(report, vec![problem]);
            return numbers;
        }
    };
    let points = probe_points(&layout, &scenario.probes);
    let mut seen: HashMap<Vec<u64>, u64> = HashMap::new();
    let mut queue = VecDeque::new();
    seen.insert(
        canonical(&initial.system, &points),
        model_hash(&initial.model.state),
    );
    let problems = check_new_state(&initial)
        .into_iter()
        .map(|problem| format!("{}: boot: {problem}", scenario.name))
        .collect();
    record(report, problems);
    numbers.states = 1;
    queue.push_back(initial);
    while let Some(node) = queue.pop_front() {
        let seen_before = translations(&node.system, &points);
        for &step in &scenario.steps {
            if let Step::Pin(pa) = step {
                let pins = node.system.engine.frame_table().record(pa);
                if pins.is_some_and(|record| record.pins() >= PIN_LIMIT) {
                    continue;
                }
            }
            let outcome = transition(&node, &seen_before, step, &points);
            numbers.transitions += 1;
            let counts = &mut report.by_kind[step.kind()];
            match outcome.result {
                Ok(()) => {
                    numbers.accepted += 1;
                    counts.0 += 1;
                }
                Err(error) => {
                    counts.1 += 1;
                    *report.by_error.entry(format!("{error:?}")).or_default() += 1;
                }
            }
            record(report, outcome.problems);
            let Some(next) = outcome.next else {
                continue;
            };
            let code = canonical(&next.system, &points);
            let hash = model_hash(&next.model.state);
            if let Some(&known) = seen.get(&code) {
                if known != hash {
                    let problem = format!(
                        "{step:?}: the engine reached a known state, the reference model a different one"
                    );
                    record(report, vec![problem]);
                }
                continue;
            }
            if numbers.states >= max_states {
                return numbers;
            }
            seen.insert(code, hash);
            numbers.states += 1;
            let problems = check_new_state(&next)
                .into_iter()
                .map(|problem| format!("{step:?}: {problem}"))
                .collect();
            record(report, problems);
            queue.push_back(next);
        }
    }
    numbers.complete = true;
    numbers
}

/// Explores every scenario breadth-first, visiting at most `max_states` states per scenario.
pub fn run(max_states: usize) -> Report {
    let mut report = Report {
        states: 0,
        transitions: 0,
        accepted: 0,
        violations: 0,
        complete: true,
        details: Vec::new(),
        scenarios: Vec::new(),
        by_kind: [(0, 0); KINDS.len()],
        by_error: BTreeMap::new(),
    };
    for scenario in scenarios() {
        let numbers = explore(&scenario, max_states, &mut report);
        report.states += numbers.states;
        report.transitions += numbers.transitions;
        report.accepted += numbers.accepted;
        report.complete &= numbers.complete;
        report.scenarios.push(numbers);
    }
    report
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
    fn the_report_prints_a_line_per_scenario_and_the_counts_per_operation() {
        let mut by_kind = [(0, 0); KINDS.len()];
        by_kind[1] = (3, 4);
        let report = Report {
            states: 7,
            transitions: 9,
            accepted: 3,
            violations: 0,
            complete: true,
            details: Vec::new(),
            scenarios: std::vec![ScenarioReport {
                name: "tiny",
                states: 7,
                transitions: 9,
                accepted: 3,
                complete: true,
            }],
            by_kind,
            by_error: [(String::from("Pinned"), 4)].into_iter().collect(),
        };
        let text = std::format!("{report}");
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines,
            [
                "scenario tiny: states=7 transitions=9 accepted=3 complete=true",
                "model-check: accepted Donate=0 Share=3 Unshare=0 Relinquish=0 ShareWithGuest=0 \
                 UnshareFromGuest=0 Lend=0 Reclaim=0 Teardown=0 Pin=0 Unpin=0",
                "model-check: refused Donate=0 Share=4 Unshare=0 Relinquish=0 ShareWithGuest=0 \
                 UnshareFromGuest=0 Lend=0 Reclaim=0 Teardown=0 Pin=0 Unpin=0",
                "model-check: refusals Pinned=4",
                "model-check: states=7 transitions=9 violations=0 complete=true",
            ]
        );
        assert_eq!(
            (report.accepted_of("Share"), report.refused_of("Share")),
            (3, 4)
        );
    }

    #[test]
    fn model_check_explores_everything_without_violations() {
        let report = run_default();
        std::println!("{report}");
        assert_eq!(report.violations, 0, "{report}");
        assert!(report.complete, "{report}");
        // The exact size of each scenario's space (states, transitions, accepted): a change to
        // the engine, the reference model or an alphabet that changes what is reachable shows
        // here. docs/ISOLATION.md quotes these numbers.
        let sizes: Vec<_> = report
            .scenarios
            .iter()
            .map(|scenario| {
                (
                    scenario.name,
                    scenario.states,
                    scenario.transitions,
                    scenario.accepted,
                )
            })
            .collect();
        assert_eq!(
            sizes,
            std::vec![
                ("contention", 118, 3068, 613),
                ("history-block", 92, 1656, 504),
                ("split-block", 448, 11648, 2240),
                ("block-sharing", 8, 48, 24),
                ("rights-and-pins", 720, 22320, 4396),
                ("two-page-range", 278, 8757, 1203),
                ("third-domain", 162, 5265, 653),
                ("table-pool", 64, 1280, 280),
                ("guest-rights", 340, 7480, 2012),
            ],
            "{report}"
        );
        assert_eq!((report.states, report.transitions), (2230, 61522));
        // Accepted transitions per kind, in KINDS order (the `model-check: accepted` line).
        let accepted: Vec<usize> = report.by_kind.iter().map(|counts| counts.0).collect();
        assert_eq!(
            accepted,
            [572, 701, 612, 1365, 773, 571, 454, 751, 4246, 940, 940],
            "{report}"
        );
        // Every kind of step is both accepted and refused somewhere.
        for kind in KINDS {
            assert!(
                report.accepted_of(kind) > 0,
                "{kind} never accepted: {report}"
            );
            assert!(
                report.refused_of(kind) > 0,
                "{kind} never refused: {report}"
            );
        }
        // The refusals the new alphabets exist for are reached: pins, rights, a frame borrowed
        // twice, a taken destination, and both capacities running out.
        for reason in [
            "Pinned",
            "InvalidRights",
            "AlreadyBorrowed",
            "AlreadyMapped",
            "BorrowerTableFull",
            "OutOfTableMemory",
        ] {
            assert!(
                report.by_error.get(reason).is_some_and(|&count| count > 0),
                "no {reason} refusal: {report}"
            );
        }
    }
}
