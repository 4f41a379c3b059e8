//! Smoke test of `cargo xtask bench`'s systems: each boots once, under icount as the benchmark
//! does, halts with status 0 and prints every `bench` line it should, well formed. It checks
//! that the benchmarks work, never how fast anything is (issue 11: no benchmark is a timed
//! test); `cargo xtask bench` itself also checks that the measurements repeat. It boots the
//! kernel the benchmark measures (`firmware::build_bench_kernel`).

use frameshift_tests::scenario;
use frameshift_xtask::bench::catalogue::{GUEST_SYSTEM, REPETITIONS};
use frameshift_xtask::bench::collect::{prepare, run_once};
use frameshift_xtask::bench::{bench_systems, figures};

/// Fewest operations a PD's timed loop may have (`frameshift_pd_programs::bench::MIN_ITERATIONS`).
const MIN_ITERATIONS: u64 = 256;
/// Fewest operations a bench guest's figure averages (bench_guest.rs `MIN_OPERATIONS`): a 2 MiB
/// bounce costs about half a million instructions, so it is timed over several shorter loops.
const MIN_GUEST_ITERATIONS: u64 = 64;

#[test]
fn every_benchmark_system_boots_and_prints_its_figures() {
    let mut firmware = scenario::firmware()
        .unwrap_or_else(|error| panic!("firmware: {error}"))
        .clone();
    // The kernel `cargo xtask bench` measures: without the audit after every conversion, which
    // would make each of the bench guest's conversions cost millions of instructions.
    let root = frameshift_xtask::firmware::workspace_root();
    let kernel = frameshift_xtask::firmware::build_bench_kernel(&root)
        .unwrap_or_else(|error| panic!("bench kernel: {error}"));
    firmware.kernel = Some(kernel);
    let firmware = &firmware;
    let out = scenario::image_dir("bench");
    let mut failures = Vec::new();
    let mut printed = Vec::new();
    for system in bench_systems() {
        let result = prepare(&system, firmware, &out)
            .and_then(|(_, image)| run_once(&system, &image, scenario::TIMEOUT));
        let lines = match result {
            Ok(lines) => lines,
            Err(error) => {
                failures.push(error.to_string());
                continue;
            }
        };
        let min_iterations = if system.system == GUEST_SYSTEM {
            MIN_GUEST_ITERATIONS
        } else {
            MIN_ITERATIONS
        };
        for line in &lines {
            // A count of zero would mean the counter or the loop did not run.
            let looped = line.iterations.is_some();
            let well_formed = line.instructions > 0
                && (!looped
                    || (line.iterations >= Some(min_iterations)
                        && line.ticks.is_some_and(|ticks| ticks > 0)));
            if !well_formed {
                failures.push(format!("{}: implausible line {line:?}", system.name()));
            }
        }
        for (name, figure) in &system.figures {
            let count = lines.iter().filter(|line| line.name == *name).count();
            printed.push((figure.clone(), count * system.boots));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    // Every figure the catalogue says is measured was printed, as often as the benchmark needs.
    let mut measured: Vec<String> = figures()
        .into_iter()
        .filter(|figure| figure.source.is_some())
        .map(|figure| figure.name)
        .collect();
    measured.sort();
    let mut names: Vec<String> = printed.iter().map(|(name, _)| name.clone()).collect();
    names.sort();
    assert_eq!(names, measured);
    assert!(
        printed.iter().all(|(_, count)| *count == REPETITIONS),
        "{printed:?}"
    );
}
