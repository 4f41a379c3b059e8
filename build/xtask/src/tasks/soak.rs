//! `cargo xtask soak --calls N [--seed S]`: boots the hostile system with only its soak run, in
//! which the hostile guest makes N seeded random hypercalls with the audit after every
//! conversion, and ends with one line:
//! `soak: calls=N audits=A violations=V mismatches=M panics=P seed=S` (exit status 0 only when
//! V, M and P are 0 and the system halted with status 0).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use frameshift_vm_protocol::hostile::{Params, PLAN_SOAK};

use super::hostile::{self, SoakFigures};
use super::{TaskError, TaskResult};
use crate::firmware::{self, Firmware};
use crate::install;

/// The time a run may take: a fixed part for boot and build, and a generous rate per call.
pub fn timeout_for(calls: u64) -> Duration {
    Duration::from_secs(60) + Duration::from_micros(calls.saturating_mul(500))
}

/// A seed from the clock, when none is given (it is printed, so the run can be repeated).
fn clock_seed() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(1, |elapsed| elapsed.as_nanos() as u64)
}

/// The soak CI runs (`cargo xtask test`). The issue asks for 10^6 calls, which take 235-260 s on
/// a 2-core machine with the audit after every accepted conversion; with the hostile QEMU tests
/// that is over the CI budget of 5 minutes, so CI makes half as many (about 2 minutes).
/// `cargo xtask soak` makes 10^6 by default (README.md, "Hostile runs").
pub const CI_CALLS: u64 = 500_000;

/// One soak of `calls` calls with the firmware: its figures line, and whether it passed (clean
/// figures, every call made, halt status 0).
pub fn run(
    firmware: &Firmware,
    calls: u64,
    seed: Option<u64>,
    stream: bool,
) -> Result<(String, bool), TaskError> {
    let root = firmware::workspace_root();
    let params = Params {
        calls,
        seed: seed.unwrap_or_else(clock_seed),
        cycles: 0,
        plan: PLAN_SOAK,
    };
    let dir = root.join("target").join("soak");
    let built = hostile::build(&hostile::system_path(), &params, firmware, &dir)?;
    eprintln!(
        "xtask: soak of {calls} calls, seed {:#x}; image {}",
        params.seed,
        built.image.display()
    );
    let started = std::time::Instant::now();
    let outcome = hostile::boot(&built.image, timeout_for(calls), stream)?;
    let console_file = dir.join("console.txt");
    std::fs::write(&console_file, &outcome.console)?;
    eprintln!(
        "xtask: {} after {:.1}s (console in {})",
        outcome.summary(),
        started.elapsed().as_secs_f64(),
        console_file.display()
    );
    Ok(
        match SoakFigures::from_console(&outcome.console, outcome.halt.as_ref()) {
            Some(figures) => {
                let ok = figures.clean() && outcome.exit_code() == 0 && figures.calls == calls;
                (figures.line(), ok)
            }
            None => (
                format!(
                    "soak: calls=0 audits=0 violations=0 mismatches=0 panics=1 seed={:#x} (no summary from the guest)",
                    params.seed
                ),
                false,
            ),
        },
    )
}

/// `cargo xtask soak`.
pub fn soak(calls: u64, seed: Option<u64>, stream: bool) -> TaskResult {
    install::ensure_tools()?;
    let firmware = firmware::build(&firmware::workspace_root())?;
    let (line, ok) = run(&firmware, calls, seed, stream)?;
    println!("{line}");
    Ok(if ok { 0 } else { 1 })
}
