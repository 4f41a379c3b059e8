//! `cargo xtask model-check`: the ownership core's exhaustive model checker.
//!
//! The checker lives in the host test harness (`frameshift_harness::model_check`), whose
//! `model-check` binary this task runs through cargo, so that xtask itself links no hypervisor
//! crate. The binary prints the report's `Display`, which
//! has a line per scenario (`scenario <name>: states=.. transitions=.. accepted=..
//! complete=..`), the accepted and refused transitions per operation
//! (`model-check: accepted Donate=.. Share=.. ..`, `model-check: refused ..`), the refusals
//! per reason (`model-check: refusals ..`), and ends with the line
//! `model-check: states=N transitions=M violations=V complete=true|false`. The verdict is read
//! back from that last line, so the task and the checker cannot disagree about what was
//! printed.

use std::process::{Command, Stdio};

use super::TaskResult;
use crate::firmware;

/// The numbers of the report's last line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ModelCheckLine {
    /// Distinct states visited.
    pub states: u64,
    /// Transitions explored.
    pub transitions: u64,
    /// Invariant violations found.
    pub violations: u64,
    /// Whether the whole state space was explored.
    pub complete: bool,
}

impl ModelCheckLine {
    /// Passed: nothing violated and the exploration finished.
    pub fn passed(&self) -> bool {
        self.violations == 0 && self.complete
    }
}

/// Parses `model-check: states=N transitions=M violations=V complete=true|false`.
pub fn parse_line(line: &str) -> Option<ModelCheckLine> {
    let rest = line.trim().strip_prefix("model-check:")?;
    let mut states = None;
    let mut transitions = None;
    let mut violations = None;
    let mut complete = None;
    for token in rest.split_whitespace() {
        let (key, value) = token.split_once('=')?;
        match key {
            "states" => states = Some(value.parse().ok()?),
            "transitions" => transitions = Some(value.parse().ok()?),
            "violations" => violations = Some(value.parse().ok()?),
            "complete" => complete = Some(value.parse().ok()?),
            _ => return None,
        }
    }
    Some(ModelCheckLine {
        states: states?,
        transitions: transitions?,
        violations: violations?,
        complete: complete?,
    })
}

/// The outcome of one model-checker run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModelCheckOutcome {
    /// The report exactly as the checker displays it.
    pub report: String,
    /// Its last line (the summary line).
    pub line: String,
    /// Whether it passed (no violations, complete).
    pub passed: bool,
}

/// Judges a displayed report by its last line. A report whose last line is not the summary line
/// fails: a verdict that cannot be read is not a pass.
pub fn judge(report: String) -> ModelCheckOutcome {
    let line = report.lines().last().unwrap_or_default().to_owned();
    let passed = parse_line(&line).is_some_and(|summary| summary.passed());
    ModelCheckOutcome {
        report,
        line,
        passed,
    }
}

/// The cargo arguments that build and run the harness's `model-check` binary.
pub fn cargo_args() -> Vec<String> {
    [
        "run",
        "--quiet",
        "--package",
        "frameshift-harness",
        "--bin",
        "model-check",
    ]
    .into_iter()
    .map(str::to_owned)
    .collect()
}

/// Runs the model checker with its default (exhaustive) bound, through cargo. Whatever the
/// binary prints is judged by its last line, so a binary that failed to build or run (no
/// summary line) fails too; cargo's own errors go to stderr as usual.
pub fn run_model_check() -> ModelCheckOutcome {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let output = Command::new(cargo)
        .args(cargo_args())
        .current_dir(firmware::workspace_root())
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output();
    match output {
        Ok(output) => {
            let report = String::from_utf8_lossy(&output.stdout)
                .trim_end()
                .to_owned();
            let mut outcome = judge(report);
            // The binary's exit status agrees with its last line; trust neither alone.
            outcome.passed &= output.status.success();
            outcome
        }
        Err(error) => judge(format!("cannot run cargo: {error}")),
    }
}

/// Runs the model checker, prints its report, and fails on violations or an incomplete search.
pub fn model_check() -> TaskResult {
    eprintln!("xtask: model-checking the ownership core");
    let outcome = run_model_check();
    println!("{}", outcome.report);
    Ok(if outcome.passed { 0 } else { 1 })
}

#[cfg(test)]
// A failed expectation in a test is the test failing, which is what panicking reports.
#[allow(clippy::expect_used, clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn runs_the_harness_binary_through_cargo() {
        assert_eq!(
            cargo_args().join(" "),
            "run --quiet --package frameshift-harness --bin model-check"
        );
    }

    #[test]
    fn parses_the_summary_line() {
        assert_eq!(
            parse_line("model-check: states=120 transitions=3400 violations=0 complete=true"),
            Some(ModelCheckLine {
                states: 120,
                transitions: 3400,
                violations: 0,
                complete: true
            })
        );
        assert_eq!(
            parse_line("model-check: states=1 transitions=2 violations=0"),
            None
        );
        assert_eq!(
            parse_line("model-check: states=1 transitions=2 violations=0 complete=maybe"),
            None
        );
        assert_eq!(
            parse_line("states=1 transitions=2 violations=0 complete=true"),
            None
        );
    }

    #[test]
    fn judges_by_the_last_line() {
        assert!(
            judge(
                "explored\nmodel-check: states=5 transitions=9 violations=0 complete=true".into()
            )
            .passed
        );
        assert!(
            !judge("model-check: states=5 transitions=9 violations=1 complete=true".into()).passed
        );
        assert!(
            !judge("model-check: states=5 transitions=9 violations=0 complete=false".into()).passed
        );
        assert!(
            !judge(
                "model-check: states=5 transitions=9 violations=0 complete=true\ntrailing".into()
            )
            .passed
        );
        assert!(!judge(String::new()).passed);
    }

    #[test]
    fn the_per_operation_lines_are_not_the_verdict() {
        let report = "scenario tiny: states=5 transitions=9 accepted=4 complete=true\n\
                      model-check: accepted Donate=1 Share=0\n\
                      model-check: refused Donate=2 Share=6\n\
                      model-check: states=5 transitions=9 violations=0 complete=true";
        let outcome = judge(report.into());
        assert!(outcome.passed);
        assert_eq!(
            outcome.line,
            "model-check: states=5 transitions=9 violations=0 complete=true"
        );
        assert_eq!(parse_line("model-check: accepted Donate=1 Share=0"), None);
        // A report cut after the per-operation lines has no verdict.
        assert!(!judge("model-check: accepted Donate=1 Share=0".into()).passed);
    }
}
