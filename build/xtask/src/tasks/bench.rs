//! `cargo xtask bench`: boots every benchmark system under `-icount shift=0,sleep=off`, prints
//! the table and one `bench <name> instructions=<n> [anchor=<a> ratio=<r>]` line per measured
//! figure, and writes `bench.json` (and the conversion-vs-bounce plot) to
//! `out/bench/`. See [`crate::bench`] for how figures are measured and checked.
//!
//! With `--engine` it also runs the host engine benchmark (criterion, `cargo bench -p
//! frameshift-harness --bench engine`); without, it says how to.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::{TaskError, TaskResult, OUT_DIR_NAME};
use crate::bench::collect::{self, Measurement};
use crate::bench::report::{self, Setup};
use crate::bench::{bench_systems, figures, plot};
use crate::firmware;
use crate::install;
use crate::qemu::{QemuOptions, MACHINE};

/// The host engine benchmark's cargo arguments.
pub const ENGINE_BENCH_ARGS: [&str; 5] = ["bench", "-p", "frameshift-harness", "--bench", "engine"];

/// `cargo xtask bench` options.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BenchArgs {
    /// Where results go (default: [`default_bench_dir`]).
    pub out: Option<PathBuf>,
    /// Also run the host engine benchmark.
    pub engine: bool,
    /// Host seconds one benchmark boot may take.
    pub timeout_secs: u64,
}

/// `<workspace>/out/bench`.
pub fn default_bench_dir() -> PathBuf {
    firmware::workspace_root().join(OUT_DIR_NAME).join("bench")
}

/// `path` relative to the workspace root when it is inside it (for `bench.json`).
fn workspace_relative(path: &Path) -> PathBuf {
    path.strip_prefix(firmware::workspace_root())
        .map_or_else(|_| path.to_owned(), Path::to_owned)
}

/// Measures every benchmark system, prints the results and writes `bench.json`.
pub fn bench(args: &BenchArgs) -> TaskResult {
    let tools = install::ensure_tools()?;
    let root = firmware::workspace_root();
    let mut firmware = firmware::build(&root)?;
    // The figures are the shipped kernel's: without the audit after every conversion that the
    // tests' kernel runs.
    if firmware.kernel.is_some() {
        firmware.kernel = Some(firmware::build_bench_kernel(&root)?);
    }
    let out = args.out.clone().unwrap_or_else(default_bench_dir);
    std::fs::create_dir_all(&out)
        .map_err(|error| TaskError::new(format!("cannot create {}: {error}", out.display())))?;
    let timeout = Duration::from_secs(args.timeout_secs);

    let mut measurements: Vec<Measurement> = Vec::new();
    for system in bench_systems() {
        let start = Instant::now();
        let (file, image) = collect::prepare(&system, &firmware, &out)?;
        let measured = collect::measure_system(&system, &file, &image, timeout)?;
        let names: Vec<String> = measured
            .iter()
            .map(|m| format!("{}={}", m.figure, m.instructions))
            .collect();
        eprintln!(
            "xtask: bench {} ({} boot{}, {:.1}s): {}",
            system.name(),
            system.boots,
            if system.boots == 1 { "" } else { "s" },
            start.elapsed().as_secs_f64(),
            names.join(" ")
        );
        measurements.extend(measured.into_iter().map(|m| Measurement {
            system: workspace_relative(&m.system),
            ..m
        }));
    }

    let rows = report::rows(&figures(), &measurements);
    println!("{}\n", report::table(&rows));
    for line in report::script_lines(&rows) {
        println!("{line}");
    }
    println!();

    let plot_written = match plot::svg(&plot::points(&rows)) {
        Ok(svg) => {
            let file = out.join(plot::FILE_NAME);
            std::fs::write(&file, svg).map_err(|error| {
                TaskError::new(format!("cannot write {}: {error}", file.display()))
            })?;
            println!("plot: {}", file.display());
            Some(plot::FILE_NAME)
        }
        Err(why) => {
            println!(
                "plot: not written ({why}): the bench guest's conversion and bounce figures \
                 are missing"
            );
            None
        }
    };
    let options = QemuOptions::default();
    let setup = Setup {
        qemu: tools.qemu_version.to_string(),
        machine: MACHINE.to_owned(),
        cpu: options.cpu.qemu_name().to_owned(),
        memory: options.memory,
        icount: "shift=0,sleep=off".to_owned(),
    };
    let json_file = out.join("bench.json");
    std::fs::write(&json_file, report::json(&rows, &setup, plot_written)).map_err(|error| {
        TaskError::new(format!("cannot write {}: {error}", json_file.display()))
    })?;
    println!("results: {}", json_file.display());

    if args.engine {
        return engine_bench(&root);
    }
    println!(
        "host engine benchmark (criterion): cargo {} (or cargo xtask bench --engine)",
        ENGINE_BENCH_ARGS.join(" ")
    );
    Ok(0)
}

/// Runs the criterion engine benchmark; its status is the task's.
fn engine_bench(root: &Path) -> TaskResult {
    eprintln!("xtask: cargo {}", ENGINE_BENCH_ARGS.join(" "));
    let status = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
        .args(ENGINE_BENCH_ARGS)
        .current_dir(root)
        .stdin(Stdio::null())
        .status()
        .map_err(|error| TaskError::new(format!("cannot run cargo: {error}")))?;
    Ok(if status.success() { 0 } else { 1 })
}

#[cfg(test)]
// A failed expectation in a test is the test failing, which is what panicking reports.
#[allow(clippy::expect_used, clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn results_go_under_out_and_paths_are_workspace_relative() {
        let root = firmware::workspace_root();
        assert_eq!(default_bench_dir(), root.join("out").join("bench"));
        assert_eq!(
            workspace_relative(&root.join("tests/systems/bench/null.xml")),
            PathBuf::from("tests/systems/bench/null.xml")
        );
        assert_eq!(
            workspace_relative(Path::new("/elsewhere/x.xml")),
            PathBuf::from("/elsewhere/x.xml")
        );
    }

    #[test]
    fn the_engine_benchmark_is_the_harness_criterion_bench() {
        assert_eq!(
            ENGINE_BENCH_ARGS.join(" "),
            "bench -p frameshift-harness --bench engine"
        );
    }
}
