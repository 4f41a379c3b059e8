//! `cargo xtask audit [--system FILE] [--console FILE] [--out DIR]`: the auditor's view.
//!
//! It boots a system (default: tests/systems/hostile.xml with a short plan) whose PDs ask for
//! the hypervisor's dump (`PD_AUDIT` with `AUDIT_DUMP`; the hypervisor then dumps again at the
//! halt), or reads a saved console with `--console`. For every dump it re-runs the I1-I4 audit
//! on the host ([`check`]), independently of the kernel, and writes into `--out` (default
//! `target/audit/`):
//!
//! - `audit.json` (schema `frameshift-audit/1`, docs/ISOLATION.md "The auditor's view");
//! - `holdings.svg`: who holds which frame, and every domain's mappings ([`svg::holdings`]);
//! - `timeline.svg`: the logged conversions over time ([`svg::timeline`]).
//!
//! Its last line: `audit: dumps=D domains=N frame-runs=F mapped-ranges=M conversions=C
//! findings=X kernel-violations=K`; exit status 0 only when X and K are 0 and the run halted
//! with status 0.

pub mod check;
pub mod dump;
pub mod svg;

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;

use frameshift_vm_protocol::hostile::{Params, PLAN_ATTACKS, PLAN_CYCLES, PLAN_SOAK};

use super::{build_system, hostile, TaskError, TaskResult};
use crate::console;
use crate::firmware;
use crate::install;

/// The schema name written into `audit.json`.
pub const SCHEMA: &str = "frameshift-audit/1";

/// The default system's plan: a short soak, the attacks, three cycles.
pub const DEFAULT_PARAMS: Params = Params {
    calls: 2000,
    seed: 0xa0d1,
    cycles: 3,
    plan: PLAN_SOAK | PLAN_ATTACKS | PLAN_CYCLES,
};

/// One dump with the host's findings.
#[derive(Serialize)]
struct AuditedDump<'a> {
    #[serde(flatten)]
    dump: &'a dump::Dump,
    findings: Vec<check::Finding>,
}

/// `audit.json`.
#[derive(Serialize)]
struct Report<'a> {
    schema: &'static str,
    source: String,
    halt: Option<String>,
    kernel_violations: Vec<&'a str>,
    dumps: Vec<AuditedDump<'a>>,
    findings: usize,
    clean: bool,
}

/// What the audit of one console found.
#[derive(Debug)]
pub struct Outcome {
    /// The summary line.
    pub line: String,
    /// No finding, no kernel violation, a halt with status 0.
    pub clean: bool,
}

/// Audits `console` (from `source`) and writes `audit.json` and the two pictures into `out`.
pub fn audit_console(console_text: &str, source: &str, out: &Path) -> Result<Outcome, TaskError> {
    let dumps = dump::parse(console_text).map_err(|error| TaskError::new(error.to_string()))?;
    let Some(last) = dumps.last() else {
        return Err(TaskError::new(format!(
            "{source}: no dump in the console (a PD must call PD_AUDIT with AUDIT_DUMP)"
        )));
    };
    let halt = console::find_halt(console_text);
    let kernel_violations: Vec<&str> = console::lines_of(console_text, "hypervisor")
        .filter(|text| text.starts_with("audit violation"))
        .collect();
    let audited: Vec<AuditedDump> = dumps
        .iter()
        .map(|dump| AuditedDump {
            dump,
            findings: check::audit(dump),
        })
        .collect();
    let findings: usize = audited.iter().map(|audited| audited.findings.len()).sum();
    for audited in &audited {
        for finding in &audited.findings {
            eprintln!(
                "audit: {} dump: {} pa={:#x} domain={:?}: {}",
                audited.dump.at, finding.invariant, finding.pa, finding.domain, finding.what
            );
        }
    }
    let clean = findings == 0
        && kernel_violations.is_empty()
        && halt.as_ref().is_some_and(|halt| halt.status == 0);
    let report = Report {
        schema: SCHEMA,
        source: source.to_owned(),
        halt: halt.as_ref().map(ToString::to_string),
        kernel_violations: kernel_violations.clone(),
        dumps: audited,
        findings,
        clean,
    };
    fs::create_dir_all(out)?;
    let json = serde_json::to_string_pretty(&report)?;
    fs::write(out.join("audit.json"), json)?;
    // The holdings of the first dump where something is shared or lent (the most to see),
    // else of the last one.
    let pictured = dumps
        .iter()
        .find(|dump| {
            dump.frame_runs
                .iter()
                .any(|run| run.state == "shared" || run.state == "lent")
        })
        .unwrap_or(last);
    fs::write(out.join("holdings.svg"), svg::holdings(pictured))?;
    fs::write(out.join("timeline.svg"), svg::timeline(last))?;
    let line = format!(
        "audit: dumps={} domains={} frame-runs={} mapped-ranges={} conversions={} findings={findings} kernel-violations={}",
        dumps.len(),
        last.domains.len(),
        last.frame_runs.len(),
        last.maps.len(),
        last.conversions,
        kernel_violations.len()
    );
    Ok(Outcome { line, clean })
}

/// Runs the task.
pub fn audit(
    system: Option<&Path>,
    saved_console: Option<&Path>,
    out: Option<&Path>,
) -> TaskResult {
    let root = firmware::workspace_root();
    let out: PathBuf = out.map_or_else(|| root.join("target").join("audit"), Path::to_owned);
    let (text, source) = match saved_console {
        Some(file) => (
            fs::read_to_string(file)
                .map_err(|error| TaskError::new(format!("{}: {error}", file.display())))?,
            file.display().to_string(),
        ),
        None => {
            install::ensure_tools()?;
            let firmware = firmware::build(&root)?;
            let work = out.join("image");
            let system_file = system.map_or_else(hostile::system_path, Path::to_owned);
            let built = if system.is_none() {
                hostile::build(&system_file, &DEFAULT_PARAMS, &firmware, &work)?
            } else {
                build_system(&system_file, &firmware, &work)?
            };
            eprintln!("xtask: booting {} for the audit", system_file.display());
            let outcome = hostile::boot(&built.image, Duration::from_secs(120), false)?;
            eprintln!("xtask: {}", outcome.summary());
            fs::create_dir_all(&out)?;
            fs::write(out.join("console.txt"), &outcome.console)?;
            (outcome.console, system_file.display().to_string())
        }
    };
    let outcome = audit_console(&text, &source, &out)?;
    println!("{} -> {}", outcome.line, out.display());
    Ok(if outcome.clean { 0 } else { 1 })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::dump::tests::CLEAN;
    use super::*;

    fn halted(console: &str) -> String {
        format!("{console}FS|hypervisor|halt status=0 reason=system-off by=vmm faults=0 notifications=0 calls=0 preemptions=0 stopped=0\n")
    }

    #[test]
    fn a_clean_console_writes_the_json_and_both_pictures() {
        let out = std::env::temp_dir().join(format!("frameshift-audit-{}", std::process::id()));
        let outcome = audit_console(&halted(CLEAN), "test", &out).unwrap();
        assert!(outcome.clean, "{}", outcome.line);
        assert!(
            outcome.line.contains("findings=0 kernel-violations=0"),
            "{}",
            outcome.line
        );
        let json: serde_json::Value =
            serde_json::from_str(&fs::read_to_string(out.join("audit.json")).unwrap()).unwrap();
        assert_eq!(json["schema"], SCHEMA);
        assert_eq!(json["dumps"][0]["maps"].as_array().unwrap().len(), 5);
        assert_eq!(json["dumps"][0]["findings"].as_array().unwrap().len(), 0);
        assert!(fs::read_to_string(out.join("holdings.svg"))
            .unwrap()
            .starts_with("<svg"));
        assert!(fs::read_to_string(out.join("timeline.svg"))
            .unwrap()
            .starts_with("<svg"));
        let _ = fs::remove_dir_all(&out);
    }

    #[test]
    fn a_planted_violation_makes_the_audit_fail() {
        let out = std::env::temp_dir().join(format!("frameshift-audit-bad-{}", std::process::id()));
        // The VMM's own page is mapped by the guest too: an exclusive frame mapped twice.
        let planted = CLEAN.replace(
            "FS|hypervisor|dump end lines=13",
            "FS|hypervisor|dump map domain=1 ipa=0x40100000 pa=0x42003000 pages=1 state=owned rights=rw memory=normal\nFS|hypervisor|dump end lines=14",
        );
        let outcome = audit_console(&halted(&planted), "test", &out).unwrap();
        assert!(!outcome.clean);
        assert!(outcome.line.contains("findings=2"), "{}", outcome.line);
        let json: serde_json::Value =
            serde_json::from_str(&fs::read_to_string(out.join("audit.json")).unwrap()).unwrap();
        assert_eq!(json["clean"], false);
        assert_eq!(json["dumps"][0]["findings"][0]["invariant"], "I1");
        let _ = fs::remove_dir_all(&out);
    }

    #[test]
    fn a_console_without_a_dump_is_an_error() {
        let out = std::env::temp_dir();
        assert!(audit_console("FS|hypervisor|halt status=0 reason=idle\n", "x", &out).is_err());
    }
}
