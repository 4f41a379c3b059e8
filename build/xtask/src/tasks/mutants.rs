//! `cargo xtask mutants [FILE]`: a mutation check of one source file with cargo-mutants.
//!
//! cargo-mutants changes the file one small way at a time (an operator, a match arm, a whole
//! function body) and runs the tests; a change no test notices is a *survivor*. The task runs it
//! on one file (default [`DEFAULT_FILE`]), prints `mutants: caught=C total=T ...` and every
//! survivor, and fails unless each survivor is an explained equivalent mutant.
//!
//! **Which tests run.** Each mutant's test run is the mutated crate's lib unit tests (`--lib`:
//! no integration tests, so neither the differential proptest nor the QEMU scenarios) filtered
//! to the file's own module (`ownership::`) plus, in the core crate (`hypervisor/core`), the
//! engine's tests (`engine::tests::`: the engine is the one caller of every ownership module,
//! and its tests are fast). The model checker is in another crate (`frameshift-harness`), so it
//! never runs here: it takes minutes. See [`test_filters`].
//!
//! **Explained equivalents.** A mutant that no test can catch because it does not change what
//! the program does is written down in the file itself, in a comment (by convention in its test
//! module), one per line:
//!
//! ```text
//! //! equivalent mutant: hypervisor/core/src/audit.rs:87:23: replace += with *= in f -- why no test can tell
//! ```
//!
//! The name is the one cargo-mutants prints, line and column included, so an explanation goes
//! stale when the code it explains moves or changes and has to be looked at again. An
//! explanation whose mutant was caught, or was not generated at all, fails the task too: an
//! equivalent mutant cannot be caught, so that explanation was wrong or is out of date.

use std::fmt::Write as _;
use std::fs;
use std::path::{Component, Path, PathBuf};
use std::process::Command;

use super::{TaskError, TaskResult};
use crate::firmware;
use crate::install;

/// The file checked when none is given.
pub const DEFAULT_FILE: &str = "hypervisor/core/src/ownership.rs";

/// What starts an explanation line (after the comment markers).
pub const EQUIVALENT_MARKER: &str = "equivalent mutant:";

/// Separates an explained mutant's name from the reason.
const REASON_SEPARATOR: &str = " -- ";

/// Where cargo-mutants writes its `mutants.out/` (under the workspace's ignored `target/`).
const OUTPUT_DIR: &str = "target/mutants";

/// One explained equivalent mutant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Explanation {
    /// The mutant's name as cargo-mutants prints it (`file:line:col: description`).
    pub mutant: String,
    /// Why no test can tell it from the original.
    pub reason: String,
    /// The line of the source file the explanation is written on (1-based).
    pub line: usize,
}

/// Reads every explanation line of a source file. An explanation without a reason is an error:
/// the point of the list is the reason.
pub fn parse_explanations(source: &str) -> Result<Vec<Explanation>, String> {
    let mut explanations = Vec::new();
    for (index, text) in source.lines().enumerate() {
        let comment = text
            .trim_start()
            .trim_start_matches('/')
            .trim_start_matches('!');
        let Some(rest) = comment.trim_start().strip_prefix(EQUIVALENT_MARKER) else {
            continue;
        };
        let line = index + 1;
        let Some((mutant, reason)) = rest.split_once(REASON_SEPARATOR) else {
            return Err(format!(
                "line {line}: an explained mutant needs a reason after `{}`",
                REASON_SEPARATOR.trim()
            ));
        };
        let (mutant, reason) = (mutant.trim(), reason.trim());
        if mutant.is_empty() || reason.is_empty() {
            return Err(format!(
                "line {line}: an explained mutant needs a name and a reason"
            ));
        }
        explanations.push(Explanation {
            mutant: mutant.to_owned(),
            reason: reason.to_owned(),
            line,
        });
    }
    Ok(explanations)
}

/// The libtest filters for mutants of `file` (relative to the workspace root): the file's module
/// path (`hypervisor/core/src/kernel/boot.rs` -> `kernel::boot::`), plus `engine::tests::` in
/// the core crate (`hypervisor/core`) for a file outside the engine. `None` for a file outside
/// a crate's `src/`.
pub fn test_filters(file: &Path) -> Option<Vec<String>> {
    let parts: Vec<&str> = file
        .components()
        .filter_map(|component| match component {
            Component::Normal(part) => part.to_str(),
            _ => None,
        })
        .collect();
    let src = parts.iter().position(|part| *part == "src")?;
    let mut module: Vec<&str> = parts.get(src + 1..)?.to_vec();
    let last = module.pop()?.strip_suffix(".rs")?;
    if !matches!(last, "lib" | "main" | "mod") {
        module.push(last);
    }
    let mut filters = Vec::new();
    if module.is_empty() {
        // The crate root: its tests are not under any module path.
        filters.push("tests::".to_owned());
    } else {
        filters.push(format!("{}::", module.join("::")));
    }
    let in_core = parts.get(..src) == Some(&["hypervisor", "core"][..]);
    if in_core && module.first() != Some(&"engine") {
        filters.push("engine::tests::".to_owned());
    }
    Some(filters)
}

/// The cargo-mutants command line for `file` (workspace-relative) with `jobs` parallel jobs.
pub fn cargo_mutants_args(file: &Path, filters: &[String], jobs: usize) -> Vec<String> {
    let mut args: Vec<String> = [
        "mutants",
        "--no-shuffle",
        "--output",
        OUTPUT_DIR,
        "--cargo-arg=--lib",
        "--jobs",
    ]
    .into_iter()
    .map(str::to_owned)
    .collect();
    args.push(jobs.to_string());
    args.push("--file".to_owned());
    args.push(file.to_string_lossy().into_owned());
    // The first `--` ends cargo-mutants' options; the second passes the filters to libtest.
    args.push("--".to_owned());
    args.push("--".to_owned());
    args.extend(filters.iter().cloned());
    args
}

/// What happened to the mutants, by name, as listed in `mutants.out/*.txt`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Outcomes {
    /// A test failed: the mutant was noticed.
    pub caught: Vec<String>,
    /// Every test passed: the survivors.
    pub missed: Vec<String>,
    /// The tests did not finish in time (typically a loop that no longer ends): noticed.
    pub timeout: Vec<String>,
    /// The mutant did not build: nothing to test.
    pub unviable: Vec<String>,
}

impl Outcomes {
    /// Parses the four lists.
    pub fn parse(caught: &str, missed: &str, timeout: &str, unviable: &str) -> Self {
        let names = |text: &str| -> Vec<String> {
            text.lines()
                .map(str::trim)
                .filter(|line| !line.is_empty())
                .map(str::to_owned)
                .collect()
        };
        Self {
            caught: names(caught),
            missed: names(missed),
            timeout: names(timeout),
            unviable: names(unviable),
        }
    }

    /// Reads `mutants.out/{caught,missed,timeout,unviable}.txt`.
    pub fn read(out: &Path) -> std::io::Result<Self> {
        let read = |name: &str| fs::read_to_string(out.join(name));
        Ok(Self::parse(
            &read("caught.txt")?,
            &read("missed.txt")?,
            &read("timeout.txt")?,
            &read("unviable.txt")?,
        ))
    }

    /// Every mutant generated.
    pub fn total(&self) -> usize {
        self.caught.len() + self.missed.len() + self.timeout.len() + self.unviable.len()
    }
}

/// The verdict on one run.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Verdict {
    /// Survivors with their explanation.
    pub explained: Vec<(String, String)>,
    /// Survivors nobody explained.
    pub unexplained: Vec<String>,
    /// Explanations of mutants that did not survive (caught, timed out, unviable, or not
    /// generated: the code moved or changed).
    pub stale: Vec<Explanation>,
}

impl Verdict {
    /// Passed: every survivor explained, every explanation used.
    pub fn passed(&self) -> bool {
        self.unexplained.is_empty() && self.stale.is_empty()
    }
}

/// Matches survivors against explanations, one explanation per survivor.
pub fn judge(outcomes: &Outcomes, explanations: &[Explanation]) -> Verdict {
    let mut unused: Vec<&Explanation> = explanations.iter().collect();
    let mut verdict = Verdict::default();
    for survivor in &outcomes.missed {
        match unused
            .iter()
            .position(|explanation| explanation.mutant == *survivor)
        {
            Some(index) => {
                let explanation = unused.remove(index);
                verdict
                    .explained
                    .push((survivor.clone(), explanation.reason.clone()));
            }
            None => verdict.unexplained.push(survivor.clone()),
        }
    }
    verdict.stale = unused.into_iter().cloned().collect();
    verdict
}

/// The report: the summary line, then every survivor and stale explanation.
pub fn report(file: &Path, outcomes: &Outcomes, verdict: &Verdict) -> String {
    let mut text = format!(
        "mutants: caught={} total={} timeouts={} unviable={} survivors={} explained={} unexplained={}\n",
        outcomes.caught.len(),
        outcomes.total(),
        outcomes.timeout.len(),
        outcomes.unviable.len(),
        outcomes.missed.len(),
        verdict.explained.len(),
        verdict.unexplained.len(),
    );
    for (mutant, reason) in &verdict.explained {
        let _ = writeln!(
            text,
            "  survivor (explained equivalent): {mutant}\n    why: {reason}"
        );
    }
    for mutant in &verdict.unexplained {
        let _ = writeln!(text, "  SURVIVOR (unexplained): {mutant}");
    }
    for explanation in &verdict.stale {
        let _ = writeln!(
            text,
            "  STALE explanation at {}:{}: `{}` did not survive (caught, or no longer generated)",
            file.display(),
            explanation.line,
            explanation.mutant
        );
    }
    if !verdict.passed() {
        let _ = writeln!(
            text,
            "Kill each unexplained survivor with a test, or, if it cannot change behaviour, add\n\
             `{EQUIVALENT_MARKER} <name>{REASON_SEPARATOR}<why>` to the file's test module; \
             remove stale explanations."
        );
    }
    text
}

/// Runs cargo-mutants on `file` (default [`DEFAULT_FILE`]) and judges the survivors.
pub fn mutants(file: Option<&Path>, jobs: usize) -> TaskResult {
    let root = firmware::workspace_root();
    let file = match file {
        Some(file) => relative_to(&root, file)?,
        None => PathBuf::from(DEFAULT_FILE),
    };
    let source = fs::read_to_string(root.join(&file))
        .map_err(|error| TaskError::new(format!("cannot read {}: {error}", file.display())))?;
    let explanations = parse_explanations(&source)
        .map_err(|error| TaskError::new(format!("{}: {error}", file.display())))?;
    let filters = test_filters(&file).ok_or_else(|| {
        TaskError::new(format!(
            "{} is not a source file under a crate's src/",
            file.display()
        ))
    })?;
    install::ensure_cargo_mutants()?;
    let out = root.join(OUTPUT_DIR).join("mutants.out");
    // A previous run's lists must not be read as this run's.
    if out.exists() {
        fs::remove_dir_all(&out)?;
    }
    let args = cargo_mutants_args(&file, &filters, jobs.max(1));
    eprintln!("xtask: cargo {}", args.join(" "));
    let status = Command::new("cargo")
        .args(&args)
        .current_dir(&root)
        .status()
        .map_err(|error| TaskError::new(format!("cannot run cargo mutants: {error}")))?;
    // cargo-mutants exits 0 (all caught), 2 (survivors) or 3 (timeouts) after a complete run;
    // anything else (a failing baseline, a usage error) means there are no results to judge.
    if !matches!(status.code(), Some(0 | 2 | 3)) {
        return Err(TaskError::new(format!(
            "cargo mutants failed ({status}); see {}",
            out.join("debug.log").display()
        )));
    }
    let outcomes = Outcomes::read(&out)?;
    let verdict = judge(&outcomes, &explanations);
    print!("{}", report(&file, &outcomes, &verdict));
    Ok(if verdict.passed() { 0 } else { 1 })
}

/// `file` relative to the workspace root (cargo-mutants names files that way).
fn relative_to(root: &Path, file: &Path) -> Result<PathBuf, TaskError> {
    let absolute = if file.is_absolute() {
        file.to_path_buf()
    } else {
        std::env::current_dir()?.join(file)
    };
    let absolute = absolute
        .canonicalize()
        .map_err(|error| TaskError::new(format!("{}: {error}", file.display())))?;
    let root = root.canonicalize()?;
    absolute
        .strip_prefix(&root)
        .map(Path::to_path_buf)
        .map_err(|_| {
            TaskError::new(format!(
                "{} is outside the workspace {}",
                file.display(),
                root.display()
            ))
        })
}

#[cfg(test)]
// A failed expectation in a test is the test failing, which is what panicking reports.
#[allow(clippy::expect_used, clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn reads_explanations_with_their_reasons_and_lines() {
        let source = "fn f() {}\n\
                      #[cfg(test)]\n\
                      mod tests {\n\
                      \x20   //! equivalent mutant: a.rs:1:1: replace f with () -- f does nothing\n\
                      \x20   // equivalent mutant: a.rs:2:5: replace + with - in g --  x + 0 == x - 0 \n\
                      \x20   // an equivalent mutant is mentioned here, not declared\n\
                      }\n";
        assert_eq!(
            parse_explanations(source),
            Ok(vec![
                Explanation {
                    mutant: "a.rs:1:1: replace f with ()".to_owned(),
                    reason: "f does nothing".to_owned(),
                    line: 4,
                },
                Explanation {
                    mutant: "a.rs:2:5: replace + with - in g".to_owned(),
                    reason: "x + 0 == x - 0".to_owned(),
                    line: 5,
                },
            ])
        );
    }

    #[test]
    fn an_explanation_without_a_reason_is_an_error() {
        assert_eq!(
            parse_explanations("// ok\n//! equivalent mutant: a.rs:1:1: replace f with ()\n"),
            Err("line 2: an explained mutant needs a reason after `--`".to_owned())
        );
        assert_eq!(
            parse_explanations("//! equivalent mutant: a.rs:1:1: replace f with () --  \n"),
            Err("line 1: an explained mutant needs a name and a reason".to_owned())
        );
    }

    #[test]
    fn filters_follow_the_module_path() {
        let filters = |file: &str| test_filters(Path::new(file));
        let with = |parts: &[&str]| -> Option<Vec<String>> {
            Some(parts.iter().map(|part| (*part).to_owned()).collect())
        };
        assert_eq!(
            filters("hypervisor/core/src/ownership.rs"),
            with(&["ownership::", "engine::tests::"])
        );
        assert_eq!(
            filters("hypervisor/core/src/kernel/boot.rs"),
            with(&["kernel::boot::", "engine::tests::"])
        );
        assert_eq!(
            filters("hypervisor/core/src/kernel/mod.rs"),
            with(&["kernel::", "engine::tests::"])
        );
        assert_eq!(
            filters("hypervisor/core/src/engine.rs"),
            with(&["engine::"])
        );
        assert_eq!(
            filters("hypervisor/core/src/engine/plan.rs"),
            with(&["engine::plan::"])
        );
        assert_eq!(
            filters("hypervisor/src/arch/aarch64/esr.rs"),
            with(&["arch::aarch64::esr::"])
        );
        assert_eq!(filters("build/src/install.rs"), with(&["install::"]));
        assert_eq!(filters("hypervisor/abi/src/addr.rs"), with(&["addr::"]));
        assert_eq!(filters("build/src/lib.rs"), with(&["tests::"]));
        assert_eq!(filters("README.md"), None);
        assert_eq!(filters("hypervisor/src/notes.txt"), None);
    }

    #[test]
    fn the_command_scopes_the_tests() {
        let filters = test_filters(Path::new("hypervisor/core/src/audit.rs")).unwrap();
        assert_eq!(
            cargo_mutants_args(Path::new("hypervisor/core/src/audit.rs"), &filters, 2).join(" "),
            "mutants --no-shuffle --output target/mutants --cargo-arg=--lib --jobs 2 \
             --file hypervisor/core/src/audit.rs -- -- audit:: engine::tests::"
        );
    }

    fn explanation(mutant: &str, line: usize) -> Explanation {
        Explanation {
            mutant: mutant.to_owned(),
            reason: format!("reason {line}"),
            line,
        }
    }

    #[test]
    fn every_survivor_needs_its_own_explanation() {
        let outcomes = Outcomes::parse(
            "a.rs:1:1: caught one\n",
            "a.rs:2:1: twin\na.rs:2:1: twin\na.rs:3:1: lone\n\n",
            "a.rs:4:1: loops\n",
            "a.rs:5:1: does not build\n",
        );
        assert_eq!(outcomes.total(), 6);
        // One explanation covers one survivor, even of the same name.
        let verdict = judge(&outcomes, &[explanation("a.rs:2:1: twin", 10)]);
        assert_eq!(
            verdict,
            Verdict {
                explained: vec![("a.rs:2:1: twin".to_owned(), "reason 10".to_owned())],
                unexplained: vec!["a.rs:2:1: twin".to_owned(), "a.rs:3:1: lone".to_owned()],
                stale: vec![],
            }
        );
        assert!(!verdict.passed());
        let all = [
            explanation("a.rs:2:1: twin", 10),
            explanation("a.rs:3:1: lone", 11),
            explanation("a.rs:2:1: twin", 12),
        ];
        assert!(judge(&outcomes, &all).passed());
    }

    #[test]
    fn an_explanation_of_a_caught_or_missing_mutant_is_stale() {
        let outcomes = Outcomes::parse("a.rs:1:1: caught one\n", "", "", "");
        let explanations = [
            explanation("a.rs:1:1: caught one", 7),
            explanation("a.rs:9:9: gone", 8),
        ];
        let verdict = judge(&outcomes, &explanations);
        assert_eq!(verdict.stale, explanations.to_vec());
        assert!(!verdict.passed());
        assert!(judge(&outcomes, &[]).passed());
    }

    #[test]
    fn the_report_starts_with_the_counts_and_lists_every_survivor() {
        let outcomes = Outcomes::parse(
            "a.rs:1:1: c1\na.rs:1:2: c2\n",
            "a.rs:2:1: s1\na.rs:2:2: s2\n",
            "a.rs:3:1: t\n",
            "",
        );
        let verdict = judge(&outcomes, &[explanation("a.rs:2:1: s1", 4)]);
        let text = report(Path::new("a.rs"), &outcomes, &verdict);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[..4],
            [
                "mutants: caught=2 total=5 timeouts=1 unviable=0 survivors=2 explained=1 unexplained=1",
                "  survivor (explained equivalent): a.rs:2:1: s1",
                "    why: reason 4",
                "  SURVIVOR (unexplained): a.rs:2:2: s2",
            ]
        );
        let clean = judge(&Outcomes::parse("a.rs:1:1: c1\n", "", "", ""), &[]);
        assert_eq!(
            report(Path::new("a.rs"), &Outcomes::parse("a.rs:1:1: c1\n", "", "", ""), &clean),
            "mutants: caught=1 total=1 timeouts=0 unviable=0 survivors=0 explained=0 unexplained=0\n"
        );
    }
}
