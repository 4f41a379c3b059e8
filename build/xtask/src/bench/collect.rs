//! Booting a benchmark system and reading its `bench` lines, checked.
//!
//! A PD prints, through the console (so the hypervisor prefixes it with the PD's name),
//!
//! ```text
//! FS|<pd>|bench <name> instructions=<n> [iterations=<N> ticks=<t> rep=<r>]
//! ```
//!
//! A run counts only if it ends with `halt status=0`, every line is well formed, and every
//! figure the system measures is printed exactly as often as it should be, by no one else.
//! The measurements of one figure (two in one boot, or one in each of two boots) must be equal:
//! under icount the same instructions give the same count, so a difference means something in
//! the run is not deterministic, and the figure cannot be trusted.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::catalogue::BenchSystem;
use super::systems;
use crate::console::{self, HYPERVISOR_DOMAIN};
use crate::firmware::Firmware;
use crate::qemu::{self, QemuOptions};
use crate::tasks::build_system;

/// How long one benchmark boot may take (host time) before it counts as hung.
pub const BOOT_TIMEOUT: Duration = Duration::from_secs(120);

/// One parsed `bench` line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BenchLine {
    /// The PD that printed it.
    pub domain: String,
    /// The figure's name as the PD knows it.
    pub name: String,
    /// Instructions per operation (or since reset, for a boot figure).
    pub instructions: u64,
    /// Operations in the timed loop (absent for a boot figure).
    pub iterations: Option<u64>,
    /// Counter ticks of the timed loop (or since reset).
    pub ticks: Option<u64>,
    /// Which measurement of the run (absent for a boot figure).
    pub repetition: Option<u64>,
}

/// A figure, measured and checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Measurement {
    /// The figure's name in the report.
    pub figure: String,
    /// Instructions per operation: every run agreed on it.
    pub instructions: u64,
    /// Every measurement, in order.
    pub runs: Vec<u64>,
    /// Operations per timed loop, if it was a loop.
    pub iterations: Option<u64>,
    /// The system file that measured it.
    pub system: PathBuf,
}

/// Why a benchmark could not give its figures.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BenchError {
    /// The system could not be written or built.
    Setup {
        /// The benchmark system.
        system: String,
        /// What went wrong.
        detail: String,
    },
    /// The run did not end well (no halt line, a non-zero status, a timeout, a QEMU failure).
    Run {
        /// The benchmark system.
        system: String,
        /// The run's verdict.
        detail: String,
        /// The console's last lines.
        console_tail: String,
    },
    /// The run's `bench` lines are malformed, missing or unexpected.
    Lines {
        /// The benchmark system.
        system: String,
        /// What is wrong.
        detail: String,
    },
    /// Two measurements of one figure differ.
    Unequal {
        /// The figure.
        figure: String,
        /// Every measurement.
        runs: Vec<u64>,
    },
}

impl fmt::Display for BenchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Setup { system, detail } => write!(f, "bench system {system}: {detail}"),
            Self::Run {
                system,
                detail,
                console_tail,
            } => write!(
                f,
                "bench system {system}: the run failed: {detail}; the console ended with:\n{console_tail}"
            ),
            Self::Lines { system, detail } => write!(f, "bench system {system}: {detail}"),
            Self::Unequal { figure, runs } => {
                let runs: Vec<String> = runs.iter().map(u64::to_string).collect();
                write!(
                    f,
                    "bench {figure}: the measurements differ ({} instructions): under icount the \
                     same instructions must give the same count, so something in the run is not \
                     deterministic and the figure cannot be trusted",
                    runs.join(" vs ")
                )
            }
        }
    }
}

impl std::error::Error for BenchError {}

/// Parses the text of one console line (after `FS|<pd>|`). `None`: not a `bench` line;
/// `Some(Err)`: a `bench` line that is malformed.
pub fn parse_line(domain: &str, text: &str) -> Option<Result<BenchLine, String>> {
    let rest = text.strip_prefix("bench ")?;
    Some(parse_fields(domain, rest).map_err(|error| format!("{error} in {text:?}")))
}

fn parse_fields(domain: &str, rest: &str) -> Result<BenchLine, String> {
    let mut words = rest.split(' ');
    let name = words
        .next()
        .filter(|name| !name.is_empty() && !name.contains('='));
    let name = name.ok_or("no figure name")?;
    let mut fields = BTreeMap::new();
    for word in words {
        let (key, value) = word
            .split_once('=')
            .ok_or_else(|| format!("{word:?} is not key=value"))?;
        let value: u64 = value
            .parse()
            .map_err(|_| format!("{key}={value:?} is not a whole number"))?;
        if fields.insert(key, value).is_some() {
            return Err(format!("{key} given twice"));
        }
    }
    let mut take = |key: &str| fields.remove(key);
    let line = BenchLine {
        domain: domain.to_owned(),
        name: name.to_owned(),
        instructions: take("instructions").ok_or("no instructions=")?,
        iterations: take("iterations"),
        ticks: take("ticks"),
        repetition: take("rep"),
    };
    if let Some(key) = fields.keys().next() {
        return Err(format!("unknown field {key}"));
    }
    Ok(line)
}

/// Every `bench` line a domain other than the hypervisor printed, in order.
pub fn bench_lines(console: &str) -> Result<Vec<BenchLine>, String> {
    console::lines(console)
        .filter(|line| line.domain != HYPERVISOR_DOMAIN)
        .filter_map(|line| parse_line(line.domain, line.text))
        .collect()
}

/// Checks one boot's lines against what `system` measures: each of its figures printed exactly
/// [`BenchSystem::lines_per_boot`] times, numbered 1, 2, ... when numbered, and nothing else.
pub fn check_boot(system: &BenchSystem, lines: &[BenchLine]) -> Result<(), String> {
    for line in lines {
        if !system.figures.iter().any(|(name, _)| *name == line.name) {
            return Err(format!(
                "{} printed bench line {:?}, which this system does not measure",
                line.domain, line.name
            ));
        }
    }
    for (name, _) in &system.figures {
        let printed: Vec<&BenchLine> = lines.iter().filter(|line| line.name == *name).collect();
        if printed.len() != system.lines_per_boot() {
            return Err(format!(
                "bench {name} printed {} times in one boot, expected {}",
                printed.len(),
                system.lines_per_boot()
            ));
        }
        let numbers: Vec<Option<u64>> = printed.iter().map(|line| line.repetition).collect();
        let numbered = (1..).take(numbers.len()).map(Some).collect::<Vec<_>>();
        if numbers.iter().any(Option::is_some) && numbers != numbered {
            return Err(format!("bench {name} repetitions are {numbers:?}"));
        }
    }
    Ok(())
}

/// The figures of `boots` (each boot's checked lines), checked for agreement.
pub fn measurements(
    system: &BenchSystem,
    file: &Path,
    boots: &[Vec<BenchLine>],
) -> Result<Vec<Measurement>, BenchError> {
    let mut measured = Vec::new();
    for (name, figure) in &system.figures {
        let printed: Vec<&BenchLine> = boots
            .iter()
            .flatten()
            .filter(|line| line.name == *name)
            .collect();
        let runs: Vec<u64> = printed.iter().map(|line| line.instructions).collect();
        let Some(&first) = runs.first() else {
            return Err(BenchError::Lines {
                system: system.name(),
                detail: format!("bench {name} was never printed"),
            });
        };
        if runs.iter().any(|&run| run != first) {
            return Err(BenchError::Unequal {
                figure: figure.clone(),
                runs,
            });
        }
        measured.push(Measurement {
            figure: figure.clone(),
            instructions: first,
            runs,
            iterations: printed.first().and_then(|line| line.iterations),
            system: file.to_owned(),
        });
    }
    Ok(measured)
}

/// Writes `system`'s file (with its idle PDs) and builds its boot image under
/// `<out_dir>/images/<name>/`; returns the system file and the image.
pub fn prepare(
    system: &BenchSystem,
    firmware: &Firmware,
    out_dir: &Path,
) -> Result<(PathBuf, PathBuf), BenchError> {
    let setup = |detail: String| BenchError::Setup {
        system: system.name(),
        detail,
    };
    let file = systems::system_file(system, out_dir).map_err(setup)?;
    let image_dir = out_dir.join("images").join(system.name());
    let built = build_system(&file, firmware, &image_dir).map_err(|e| setup(e.to_string()))?;
    Ok((file, built.image))
}

/// The QEMU options of a benchmark boot: icount, the default machine, no streaming.
pub fn qemu_options(timeout: Duration) -> QemuOptions {
    QemuOptions {
        timeout: Some(timeout),
        icount: true,
        ..QemuOptions::default()
    }
}

/// Boots `image` (of `system`) once under icount and returns its checked `bench` lines.
pub fn run_once(
    system: &BenchSystem,
    image: &Path,
    timeout: Duration,
) -> Result<Vec<BenchLine>, BenchError> {
    let outcome = qemu::run(image, &qemu_options(timeout)).map_err(|error| BenchError::Setup {
        system: system.name(),
        detail: error.to_string(),
    })?;
    if outcome.exit_code() != 0 {
        let lines: Vec<&str> = outcome.console.lines().collect();
        let tail = lines
            .get(lines.len().saturating_sub(12)..)
            .unwrap_or_default();
        return Err(BenchError::Run {
            system: system.name(),
            detail: outcome.summary(),
            console_tail: tail.join("\n"),
        });
    }
    let lines_error = |detail: String| BenchError::Lines {
        system: system.name(),
        detail,
    };
    let lines = bench_lines(&outcome.console).map_err(lines_error)?;
    check_boot(system, &lines).map_err(lines_error)?;
    Ok(lines)
}

/// Measures every figure of `system`: boots it [`BenchSystem::boots`] times and checks that every
/// measurement of a figure agrees.
pub fn measure_system(
    system: &BenchSystem,
    file: &Path,
    image: &Path,
    timeout: Duration,
) -> Result<Vec<Measurement>, BenchError> {
    let boots = (0..system.boots)
        .map(|_| run_once(system, image, timeout))
        .collect::<Result<Vec<_>, _>>()?;
    measurements(system, file, &boots)
}

#[cfg(test)]
// A failed expectation in a test is the test failing, which is what panicking reports.
#[allow(clippy::expect_used, clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::bench::catalogue::bench_systems;

    fn system(name: &str) -> BenchSystem {
        bench_systems()
            .into_iter()
            .find(|system| system.name() == name)
            .unwrap()
    }

    const PPC: &str = "\
FS|hypervisor|boot frameshift el2\r
FS|bench_caller|bench ppc_active_mr0 instructions=2381 iterations=1024 ticks=152385 rep=1\r
FS|bench_caller|bench ppc_active_mr0 instructions=2381 iterations=1024 ticks=152385 rep=2\r
FS|bench_caller|bench ppc_active_mr4 instructions=2390 iterations=1024 ticks=152961 rep=1\r
FS|bench_caller|bench ppc_active_mr4 instructions=2390 iterations=1024 ticks=152961 rep=2\r
FS|hypervisor|bench null_call instructions=1\r
FS|hypervisor|halt status=0 reason=idle\r
";

    #[test]
    fn reads_a_pds_bench_lines_and_ignores_the_hypervisors() {
        let lines = bench_lines(PPC).unwrap();
        assert_eq!(lines.len(), 4);
        assert_eq!(
            lines[2],
            BenchLine {
                domain: "bench_caller".to_owned(),
                name: "ppc_active_mr4".to_owned(),
                instructions: 2390,
                iterations: Some(1024),
                ticks: Some(152_961),
                repetition: Some(1),
            }
        );
        let system = system("ppc_active");
        check_boot(&system, &lines).unwrap();
        let measured = measurements(&system, Path::new("ppc.xml"), &[lines]).unwrap();
        assert_eq!(measured[0].figure, "ppc_active_mr0");
        assert_eq!(measured[0].instructions, 2381);
        assert_eq!(measured[0].runs, [2381, 2381]);
        assert_eq!(measured[0].iterations, Some(1024));
        assert_eq!(measured[1].instructions, 2390);
    }

    #[test]
    fn a_boot_line_has_only_instructions_and_ticks() {
        let lines = bench_lines("FS|bench_boot|bench boot instructions=5541504 ticks=346344\n");
        let lines = lines.unwrap();
        assert_eq!(lines[0].instructions, 5_541_504);
        assert_eq!((lines[0].iterations, lines[0].repetition), (None, None));
        check_boot(&system("boot"), &lines).unwrap();
    }

    #[test]
    fn malformed_lines_are_refused_with_the_reason() {
        for (text, reason) in [
            ("bench", ""),
            ("bench  instructions=3", "no figure name"),
            ("bench x", "no instructions="),
            ("bench x instructions=-3", "not a whole number"),
            ("bench x instructions=3.5", "not a whole number"),
            ("bench x instructions=3 instructions=3", "given twice"),
            ("bench x instructions=3 speed=9", "unknown field speed"),
            ("bench x instructions", "not key=value"),
        ] {
            match parse_line("pd", text) {
                None => assert_eq!(reason, "", "{text}"),
                Some(result) => {
                    let error = result.expect_err(text);
                    assert!(error.contains(reason), "{text}: {error}");
                }
            }
        }
        assert!(parse_line("pd", "benchmark x instructions=1").is_none());
    }

    #[test]
    fn a_missing_extra_or_repeated_figure_fails_the_boot() {
        let system = system("ppc_active");
        let lines = bench_lines(PPC).unwrap();
        let error = check_boot(&system, &lines[..3]).unwrap_err();
        assert!(error.contains("ppc_active_mr4 printed 1 times"), "{error}");
        let mut extra = lines.clone();
        extra.push(BenchLine {
            name: "ppc_passive_mr0".to_owned(),
            ..lines[0].clone()
        });
        let error = check_boot(&system, &extra).unwrap_err();
        assert!(error.contains("does not measure"), "{error}");
        let mut renumbered = lines.clone();
        renumbered[1].repetition = Some(1);
        let error = check_boot(&system, &renumbered).unwrap_err();
        assert!(error.contains("repetitions"), "{error}");
    }

    #[test]
    fn measurements_that_differ_fail_with_a_clear_message() {
        let system = system("ppc_active");
        let mut lines = bench_lines(PPC).unwrap();
        lines[1].instructions = 2382;
        let error = measurements(&system, Path::new("ppc.xml"), &[lines]).unwrap_err();
        assert_eq!(
            error,
            BenchError::Unequal {
                figure: "ppc_active_mr0".to_owned(),
                runs: vec![2381, 2382],
            }
        );
        let message = error.to_string();
        assert!(
            message.starts_with(
                "bench ppc_active_mr0: the measurements differ (2381 vs 2382 instructions)"
            ),
            "{message}"
        );
    }

    #[test]
    fn boot_figures_compare_across_boots() {
        let system = system("boot_idle50");
        let boot = |count: u64| {
            bench_lines(&format!("FS|bench_boot|bench boot instructions={count}\n")).unwrap()
        };
        let same = measurements(&system, Path::new("b.xml"), &[boot(16), boot(16)]).unwrap();
        assert_eq!(same[0].figure, "boot_51pd");
        assert_eq!(same[0].runs, [16, 16]);
        let error = measurements(&system, Path::new("b.xml"), &[boot(16), boot(32)]).unwrap_err();
        assert!(matches!(error, BenchError::Unequal { .. }), "{error}");
    }

    #[test]
    fn benchmark_boots_count_instructions() {
        let options = qemu_options(BOOT_TIMEOUT);
        assert!(options.icount && !options.stream);
        assert_eq!(options.timeout, Some(BOOT_TIMEOUT));
    }
}
