//! The auditor's record: a log of the conversions since boot, the audit after each one (feature
//! `audit-every-conversion`), and the compact dump `cargo xtask audit` reads (docs/ABI.md,
//! "The audit dump").
//!
//! The dump is a run of console lines, each `FS|hypervisor|dump <kind> key=value...`:
//!
//! | kind | one per | fields |
//! | --- | --- | --- |
//! | `begin` | dump | `at` (`call`, `halt`), `time` (counter ticks), `base`, `frames`, `conversions` (since boot), `logged` |
//! | `domain` | domain | `id`, `name`, `kind` (`pd`, `vm`), `protected` |
//! | `frames` | run of like frames | `pa`, `count`, `state` (`free`, `owned`, `shared`, `lent`), `owner`, `rights`, `borrowers` (`id:rights,...` or `-`) |
//! | `map` | run of like leaves | `domain`, `ipa`, `pa`, `pages`, `state` (`owned`, `shared-owned`, `shared-borrowed`, `passthrough`, `lent-away`), `rights`, `memory` |
//! | `conversion` | logged conversion, oldest first | `seq`, `time`, `by`, `vm`, `op`, `ipa`, `pages`, `pa` (all ones: mapped nowhere), `code` |
//! | `end` | dump | `lines` (the lines between `begin` and `end`) |
//!
//! The dump reads the tables through the software walker and the frame table, as the audit
//! does; the host re-runs the I1-I4 audit on it without trusting the kernel's own verdict.

use core::fmt::{self, Write};

use crate::addr::{Ipa, PhysAddr, PAGE_SIZE};
use crate::arch::Arch;
use crate::call::PageRange;
use crate::descriptor::{level_span, MemoryType, PageState, Rights};
use crate::domain::DomainId;
use crate::engine::MAX_RANGE_PAGES;
use crate::error::Error;
use crate::frame_table::{FrameRecord, FrameState};
use crate::hypervisor::{Decision, Halt, HaltReason, Hypervisor};
use crate::ownership::Operation;
use crate::walk::{for_each_leaf, LeafKind};

/// Conversions the log keeps (the most recent ones).
pub const LOG_CAPACITY: usize = 128;

/// One conversion request, accepted or refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConversionRecord {
    /// Its number since boot (from 1).
    pub seq: u64,
    /// The counter value of the exit that made it.
    pub time: u64,
    /// Who asked: the VMM for its calls, the VM for a guest call or a teardown's subject.
    pub by: DomainId,
    /// The VM whose memory it converts.
    pub vm: DomainId,
    /// What.
    pub operation: Operation,
    /// The first guest page.
    pub ipa: Ipa,
    /// Pages asked for.
    pub pages: u64,
    /// The first frame, where a table maps it after the request (`None`: mapped nowhere).
    pub frame: Option<PhysAddr>,
    /// 0 if accepted, else the refusal's code.
    pub code: i64,
}

/// A conversion request as it was made (dump.rs's record of it before the engine ran).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Attempt {
    by: DomainId,
    vm: DomainId,
    operation: Operation,
    range: PageRange,
    before: u64,
}

/// FNV-1a over words: the I8 fingerprint (not a defence against an adversary, who cannot
/// choose what the kernel's own tables hold; a detector of a refused request that wrote).
struct Fnv(u64);

impl Default for Fnv {
    fn default() -> Self {
        Self(0xcbf2_9ce4_8422_2325)
    }
}

impl Fnv {
    fn add(&mut self, word: u64) {
        for byte in word.to_le_bytes() {
            self.0 = (self.0 ^ u64::from(byte)).wrapping_mul(0x100_0000_01b3);
        }
    }
}

/// The conversion log: a ring of the last [`LOG_CAPACITY`] records.
#[derive(Debug)]
pub struct ConversionLog {
    records: heapless::Deque<ConversionRecord, LOG_CAPACITY>,
    total: u64,
    /// A conversion was made since the last audit (feature `audit-every-conversion`).
    unaudited: bool,
    /// A refused request whose range's fingerprint changed (an I8 violation).
    refusal_changed: Option<Attempt>,
}

impl ConversionLog {
    /// An empty log.
    pub const fn new() -> Self {
        Self {
            records: heapless::Deque::new(),
            total: 0,
            unaudited: false,
            refusal_changed: None,
        }
    }

    /// Conversions requested since boot.
    pub fn total(&self) -> u64 {
        self.total
    }

    /// The records kept, oldest first.
    pub fn records(&self) -> impl Iterator<Item = &ConversionRecord> {
        self.records.iter()
    }

    fn push(&mut self, mut record: ConversionRecord) {
        self.total += 1;
        record.seq = self.total;
        if self.records.is_full() {
            self.records.pop_front();
        }
        let _ = self.records.push_back(record);
    }
}

impl Default for ConversionLog {
    fn default() -> Self {
        Self::new()
    }
}

/// Where a dump was asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DumpPoint {
    /// `PD_AUDIT` with `x1` = `AUDIT_DUMP`.
    Call,
    /// Just before the halt line.
    Halt,
}

fn operation_name(operation: Operation) -> &'static str {
    match operation {
        Operation::Donate => "donate",
        Operation::Share => "share",
        Operation::Unshare => "unshare",
        Operation::Relinquish => "relinquish",
        Operation::ShareWithGuest => "share-with-guest",
        Operation::UnshareFromGuest => "unshare-from-guest",
        Operation::Lend => "lend",
        Operation::Reclaim => "reclaim",
        Operation::Teardown => "teardown",
    }
}

/// Rights as `r`, `w`, `x` letters (`-` for none).
struct RightsText(Rights);

impl fmt::Display for RightsText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("-");
        }
        for (flag, letter) in [
            (Rights::READ, "r"),
            (Rights::WRITE, "w"),
            (Rights::EXECUTE, "x"),
        ] {
            if self.0.contains(flag) {
                f.write_str(letter)?;
            }
        }
        Ok(())
    }
}

fn frame_state_name(state: FrameState) -> &'static str {
    match state {
        FrameState::Free => "free",
        FrameState::Owned => "owned",
        FrameState::SharedOwned => "shared",
        FrameState::Lent => "lent",
    }
}

fn page_state_name(state: PageState) -> &'static str {
    match state {
        PageState::Owned => "owned",
        PageState::SharedOwned => "shared-owned",
        PageState::SharedBorrowed => "shared-borrowed",
        PageState::Passthrough => "passthrough",
    }
}

/// One run of leaves being coalesced for a `map` line.
#[derive(Clone, Copy, PartialEq, Eq)]
struct MapRun {
    ipa: u64,
    pa: u64,
    pages: u64,
    state: &'static str,
    rights: Rights,
    memory: MemoryType,
}

impl MapRun {
    fn extends(&self, next: &MapRun) -> bool {
        let bytes = self.pages * PAGE_SIZE;
        self.state == next.state
            && self.rights == next.rights
            && self.memory == next.memory
            && self.ipa + bytes == next.ipa
            && self.pa + bytes == next.pa
    }
}

impl<A: Arch> Hypervisor<A> {
    /// A conversion request about to be made: who, what, and (feature
    /// `audit-every-conversion`) the fingerprint of what it may touch, for the I8 check.
    pub(crate) fn attempt(
        &self,
        arch: &A,
        by: DomainId,
        vm: DomainId,
        operation: Operation,
        range: PageRange,
    ) -> Attempt {
        let before = if self.audit_conversions {
            self.fingerprint(arch, vm, range)
        } else {
            0
        };
        Attempt {
            by,
            vm,
            operation,
            range,
            before,
        }
    }

    /// Logs one conversion request and its result. Accepted, it is due the full audit; refused,
    /// what it may have touched must be as it was (I8), checked here.
    pub(crate) fn record_conversion(
        &mut self,
        arch: &A,
        attempt: Attempt,
        result: Result<(), Error>,
    ) {
        let frame = self.frame_behind(arch, attempt.vm, attempt.range.ipa);
        let code = match result {
            Ok(()) => 0,
            Err(error) => crate::call::CallError::Refused(error).code(),
        };
        self.conversions.push(ConversionRecord {
            seq: 0,
            time: self.slice_start,
            by: attempt.by,
            vm: attempt.vm,
            operation: attempt.operation,
            ipa: attempt.range.ipa,
            pages: attempt.range.pages,
            frame,
            code,
        });
        if self.audit_conversions {
            if result.is_ok() {
                self.conversions.unaudited = true;
            } else if self.fingerprint(arch, attempt.vm, attempt.range) != attempt.before {
                self.conversions.refusal_changed = Some(attempt);
            }
        }
    }

    /// A digest of everything a request on `range` of `vm`'s memory can change: for each page
    /// (at most [`MAX_RANGE_PAGES`], the most a request may name), the guest's leaves at the
    /// IPA and its alias, the VMM's window leaf, and the frame records behind them. A teardown
    /// (no range) digests the whole frame table.
    fn fingerprint(&self, arch: &A, vm: DomainId, range: PageRange) -> u64 {
        let mut hash = Fnv::default();
        let frames = self.engine.frame_table();
        let Some(vspace) = self.domains.vspace(vm) else {
            return 0;
        };
        if range.pages == 0 {
            (0..frames.frames()).for_each(|index| hash.add(frames.record_at(index).raw()));
            return hash.0;
        }
        let host = vspace
            .link
            .and_then(|link| Some((link, self.domains.vspace(link.host)?)));
        for index in 0..range.pages.min(MAX_RANGE_PAGES) {
            let Some(ipa) = range.ipa.get().checked_add(index * PAGE_SIZE) else {
                break;
            };
            let private = Ipa(ipa).private_ipa();
            let mut leaves = [None; 3];
            leaves[0] = vspace.table.lookup(arch, private);
            leaves[1] = vspace.table.lookup(arch, private.shared_alias());
            if let Some((link, host)) = host {
                leaves[2] = link
                    .window
                    .host_ipa(private)
                    .and_then(|at| host.table.lookup(arch, at));
            }
            for leaf in leaves {
                match leaf {
                    Some(leaf) => {
                        hash.add(
                            leaf.pa.0 | u64::from(leaf.rights.bits()) | (leaf.state as u64) << 8,
                        );
                        hash.add(frames.record(leaf.pa).map_or(u64::MAX, FrameRecord::raw));
                    }
                    None => hash.add(0),
                }
            }
        }
        hash.0
    }

    /// The frame behind guest page `ipa` now: the guest's mapping (either view in split mode),
    /// else the VMM's window mapping of it.
    fn frame_behind(&self, arch: &A, vm: DomainId, ipa: Ipa) -> Option<PhysAddr> {
        let vspace = self.domains.vspace(vm)?;
        let private = ipa.private_ipa();
        for at in [ipa, private, private.shared_alias()] {
            if let Some(leaf) = vspace.table.lookup(arch, at) {
                return Some(leaf.pa);
            }
        }
        let link = vspace.link?;
        let host_ipa = link.window.host_ipa(private)?;
        let host = self.domains.vspace(link.host)?;
        host.table.lookup(arch, host_ipa).map(|leaf| leaf.pa)
    }

    /// The conversion log.
    pub fn conversions(&self) -> &ConversionLog {
        &self.conversions
    }

    /// Feature `audit-every-conversion`: after an exit that converted memory, runs the full
    /// I1-I4 audit; after a refused request, reports an I8 violation if what it names changed.
    /// A violation prints `audit violation <what>` and halts the system: `halt status=3
    /// reason=audit-violation`.
    pub(crate) fn audit_after_conversion(
        &mut self,
        arch: &A,
        out: &mut dyn Write,
    ) -> Option<Decision> {
        let mut violations = 0;
        if let Some(attempt) = self.conversions.refusal_changed.take() {
            violations += 1;
            let _ = writeln!(
                out,
                "FS|hypervisor|audit violation I8 {} ipa {} pages {}: a refused {} changed what it names",
                attempt.vm,
                attempt.range.ipa,
                attempt.range.pages,
                operation_name(attempt.operation),
            );
        }
        if self.conversions.unaudited {
            self.conversions.unaudited = false;
            let summary = self.run_audit(arch, &mut |violation| {
                let _ = writeln!(out, "FS|hypervisor|audit violation {violation}");
            })?;
            violations += summary.violations as u64;
        }
        if violations == 0 {
            return None;
        }
        self.audit_violations += violations;
        Some(Decision::Halt(Halt {
            status: 3,
            reason: HaltReason::AuditViolation,
        }))
    }

    /// Writes the dump (the module doc's format) to `out`.
    pub fn write_dump(&self, arch: &A, at: DumpPoint, out: &mut dyn Write) -> fmt::Result {
        let frames = self.engine.frame_table();
        let domains = self.domains.iter().count();
        writeln!(
            out,
            "FS|hypervisor|dump begin at={} time={} base={} frames={} domains={domains} conversions={} logged={}",
            match at {
                DumpPoint::Call => "call",
                DumpPoint::Halt => "halt",
            },
            self.slice_start,
            frames.base(),
            frames.frames(),
            self.conversions.total,
            self.conversions.records.len(),
        )?;
        let mut lines = 0u64;
        for (id, domain) in self.domains.iter() {
            writeln!(
                out,
                "FS|hypervisor|dump domain id={} name={} kind={} protected={}",
                id.0,
                domain.name.as_str(),
                if domain.is_pd() { "pd" } else { "vm" },
                u8::from(domain.is_protected()),
            )?;
            lines += 1;
        }
        // Frames: runs of frames whose records agree and whose borrowers agree.
        let mut start = 0;
        while start < frames.frames() {
            let record = frames.record_at(start);
            let mut end = start + 1;
            while end < frames.frames()
                && same_fields(frames.record_at(end), record)
                && self.same_borrowers(start, end)
            {
                end += 1;
            }
            self.write_frames(out, start, end - start, record)?;
            lines += 1;
            start = end;
        }
        // Mappings: runs of leaves contiguous in IPA and PA with the same attributes.
        let pool = self.engine.pool();
        for (id, domain) in self.domains.iter() {
            let mut run: Option<MapRun> = None;
            let mut result = Ok(());
            let table_ok = |table: PhysAddr| pool.contains(table);
            for_each_leaf(arch, domain.vspace.table.root(), &table_ok, &mut |entry| {
                let next = match entry.kind {
                    LeafKind::Mapped(leaf) => MapRun {
                        ipa: entry.ipa.0,
                        pa: leaf.pa.0,
                        pages: level_span(entry.level) / PAGE_SIZE,
                        state: page_state_name(leaf.state),
                        rights: leaf.rights,
                        memory: leaf.memory,
                    },
                    LeafKind::LentAway(pa) => MapRun {
                        ipa: entry.ipa.0,
                        pa: pa.0,
                        pages: 1,
                        state: "lent-away",
                        rights: Rights::empty(),
                        memory: MemoryType::Normal,
                    },
                    // The audit reports these; the dump shows what translates or names a frame.
                    _ => return,
                };
                match run.as_mut() {
                    Some(current) if current.extends(&next) => current.pages += next.pages,
                    Some(current) => {
                        let done = *current;
                        result = result.and(write_map(out, id, &done));
                        lines += 1;
                        run = Some(next);
                    }
                    None => run = Some(next),
                }
            });
            result?;
            if let Some(done) = run {
                write_map(out, id, &done)?;
                lines += 1;
            }
        }
        for record in self.conversions.records() {
            writeln!(
                out,
                "FS|hypervisor|dump conversion seq={} time={} by={} vm={} op={} ipa={} pages={} pa={:#x} code={}",
                record.seq,
                record.time,
                record.by.0,
                record.vm.0,
                operation_name(record.operation),
                record.ipa,
                record.pages,
                record.frame.map_or(u64::MAX, |pa| pa.0),
                record.code,
            )?;
            lines += 1;
        }
        writeln!(out, "FS|hypervisor|dump end lines={lines}")
    }

    fn same_borrowers(&self, a: usize, b: usize) -> bool {
        let frames = self.engine.frame_table();
        if frames.borrower_count(a) != frames.borrower_count(b) {
            return false;
        }
        let mut same = true;
        frames.for_each_borrower(a, |domain, rights| {
            same &= frames.borrower_rights(b, domain) == Some(rights);
        });
        same
    }

    fn write_frames(
        &self,
        out: &mut dyn Write,
        index: usize,
        count: usize,
        record: FrameRecord,
    ) -> fmt::Result {
        let frames = self.engine.frame_table();
        write!(
            out,
            "FS|hypervisor|dump frames pa={} count={count} state={} owner=",
            frames.frame_address(index),
            frame_state_name(record.state()),
        )?;
        match record.owner() {
            Some(owner) => write!(out, "{}", owner.0)?,
            None => out.write_str("-")?,
        }
        write!(
            out,
            " rights={} borrowers=",
            RightsText(record.owner_rights())
        )?;
        let mut first = true;
        let mut result = Ok(());
        frames.for_each_borrower(index, |domain, rights| {
            let separator = if first { "" } else { "," };
            first = false;
            result = result.and(write!(
                out,
                "{separator}{}:{}",
                domain.0,
                RightsText(rights)
            ));
        });
        result?;
        if first {
            out.write_str("-")?;
        }
        writeln!(out)
    }
}

/// Whether two frame records print the same (state, owner, rights): one `frames` line.
fn same_fields(a: FrameRecord, b: FrameRecord) -> bool {
    (a.state(), a.owner(), a.owner_rights()) == (b.state(), b.owner(), b.owner_rights())
}

fn write_map(out: &mut dyn Write, domain: DomainId, run: &MapRun) -> fmt::Result {
    writeln!(
        out,
        "FS|hypervisor|dump map domain={} ipa={} pa={} pages={} state={} rights={} memory={}",
        domain.0,
        Ipa(run.ipa),
        PhysAddr(run.pa),
        run.pages,
        run.state,
        RightsText(run.rights),
        match run.memory {
            MemoryType::Normal => "normal",
            MemoryType::Device => "device",
        }
    )
}
