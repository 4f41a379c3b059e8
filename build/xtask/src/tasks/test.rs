//! `cargo xtask test`: everything CI checks, on a fresh machine, with one summary at the end.
//!
//! Steps: make the tools ready (rustup targets, QEMU), build the firmware, make the Linux
//! guest's files ready (Debian's kernel and busybox, fetched once and cached, and the
//! initramfs), lint (rustfmt and clippy with `-D warnings`, for the host and for both AArch64
//! targets), run the host and QEMU tests with `cargo test`, run the ownership model checker, and
//! run the hostile guest's soak (`cargo xtask soak --calls 500000`, issue 10). A failing step
//! does not hide the
//! later ones (except missing tools, which every later step needs); the exit status is 1 if any
//! step failed.

use std::fmt::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::{model_check, soak, TaskResult};
use crate::firmware::{self, Firmware, FirmwarePlan};
use crate::install;
use crate::linux::{self, GuestFiles};

/// One step's result, for the summary.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StepResult {
    /// The step's name.
    pub name: &'static str,
    /// Whether it passed.
    pub passed: bool,
    /// One line of detail.
    pub detail: String,
    /// How long it took.
    pub duration: Duration,
}

/// The `cargo test` arguments: the whole workspace except the firmware-only crates, which do not
/// build for the host. `--no-fail-fast` so one failure does not hide the others.
pub fn cargo_test_args(plan: &FirmwarePlan) -> Vec<String> {
    let mut args = vec![
        "test".to_owned(),
        "--workspace".to_owned(),
        "--no-fail-fast".to_owned(),
    ];
    for package in &plan.firmware_only {
        args.push("--exclude".to_owned());
        args.push(package.clone());
    }
    args
}

/// The summary table printed at the end.
pub fn summary(steps: &[StepResult], total: Duration) -> String {
    let mut text = String::from("\nxtask test summary:\n");
    for step in steps {
        let verdict = if step.passed { "ok" } else { "FAILED" };
        let _ = writeln!(
            text,
            "  {:<12} {:<7} {:>6.1}s  {}",
            step.name,
            verdict,
            step.duration.as_secs_f64(),
            step.detail
        );
    }
    let passed = steps.iter().all(|step| step.passed);
    let _ = write!(
        text,
        "xtask test: {} in {:.0}s",
        if passed { "PASSED" } else { "FAILED" },
        total.as_secs_f64()
    );
    text
}

/// Runs every step and prints the summary.
pub fn test() -> TaskResult {
    let start = Instant::now();
    let root = firmware::workspace_root();
    let mut steps = Vec::new();

    let step_start = Instant::now();
    let tools = install::ensure_tools();
    let tools_ok = tools.is_ok();
    steps.push(StepResult {
        name: "tools",
        passed: tools_ok,
        detail: match &tools {
            Ok(tools) => format!("rust targets ready, qemu {}", tools.qemu_version),
            Err(error) => error.to_string(),
        },
        duration: step_start.elapsed(),
    });
    if tools_ok {
        let (firmware, plan) = firmware_step(&root, &mut steps);
        let guest = linux_step(&root, &mut steps);
        steps.push(lint_step(&root, &plan));
        steps.push(cargo_test_step(
            &root,
            &plan,
            firmware.as_ref(),
            guest.as_ref(),
        ));
        steps.push(model_check_step());
        steps.push(soak_step(firmware.as_ref()));
    }

    let passed = steps.iter().all(|step| step.passed);
    println!("{}", summary(&steps, start.elapsed()));
    Ok(if passed { 0 } else { 1 })
}

/// The hostile guest's soak (issue 10): [`soak::CI_CALLS`] seeded random hypercalls, the seed
/// from the clock and printed in the detail.
fn soak_step(firmware: Option<&Firmware>) -> StepResult {
    let step_start = Instant::now();
    let (passed, detail) = match firmware {
        None => (false, "no firmware".to_owned()),
        Some(firmware) => match soak::run(firmware, soak::CI_CALLS, None, false) {
            Ok((line, ok)) => (ok, line),
            Err(error) => (false, error.to_string()),
        },
    };
    StepResult {
        name: "soak",
        passed,
        detail,
        duration: step_start.elapsed(),
    }
}

fn firmware_step(root: &Path, steps: &mut Vec<StepResult>) -> (Option<Firmware>, FirmwarePlan) {
    let step_start = Instant::now();
    let result = firmware::plan(root).and_then(|plan| {
        let firmware = firmware::build_planned(root, &plan)?;
        Ok((firmware, plan))
    });
    let (passed, detail, firmware, plan) = match result {
        Ok((firmware, plan)) => {
            // The PD programs are still built and passed on without a kernel, so the host tests
            // run, but no QEMU test can: that is a failure of this step, not a skip.
            let (passed, kernel) = match firmware.kernel() {
                Ok(_) => (true, "kernel".to_owned()),
                Err(error) => (false, error.to_string()),
            };
            let detail = format!("{kernel}, {} PD programs", firmware.programs.len());
            (passed, detail, Some(firmware), plan)
        }
        Err(error) => {
            eprintln!("xtask: firmware: {error}");
            (false, error.to_string(), None, FirmwarePlan::default())
        }
    };
    steps.push(StepResult {
        name: "firmware",
        passed,
        detail,
        duration: step_start.elapsed(),
    });
    (firmware, plan)
}

/// The Linux guest's files: fetched from the Debian archive the first time (the same archive
/// the tools step installs QEMU from), from the cache after that. The tests get their directory
/// in [`linux::GUEST_DIR_ENV`]; when this step fails, the Linux boot tests try again themselves
/// and fail with the same message.
fn linux_step(root: &Path, steps: &mut Vec<StepResult>) -> Option<GuestFiles> {
    let step_start = Instant::now();
    let result = linux::prepare(root, false);
    let (passed, detail) = match &result {
        Ok(files) => (
            true,
            format!(
                "kernel {}, busybox {}, initramfs built",
                files.kernel_release, files.busybox_version
            ),
        ),
        Err(error) => {
            eprintln!("xtask: linux: {error}");
            (false, error.to_string())
        }
    };
    steps.push(StepResult {
        name: "linux",
        passed,
        detail,
        duration: step_start.elapsed(),
    });
    result.ok()
}

/// The lint commands, each a `cargo` argument list: rustfmt over the workspace, then clippy with
/// warnings denied for the host crates, for the kernel (soft-float, `el2`) and for every firmware
/// crate (PD programs, VMMs, guests) on `aarch64-unknown-none`.
pub fn lint_commands(plan: &FirmwarePlan) -> Vec<Vec<String>> {
    let strings = |words: &[&str]| words.iter().map(|word| (*word).to_owned()).collect();
    let mut commands: Vec<Vec<String>> = vec![
        strings(&["fmt", "--all", "--check"]),
        strings(&[
            "clippy",
            "--workspace",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ]),
    ];
    if plan.kernel {
        commands.push(strings(&[
            "clippy",
            "--package",
            "frameshift-hypervisor",
            "--features",
            "el2",
            "--target",
            "aarch64-unknown-none-softfloat",
            "--bins",
            "--",
            "-D",
            "warnings",
        ]));
    }
    if !plan.firmware_only.is_empty() {
        // The runtimes are host-tested too, but their entry code only exists on the target.
        let mut firmware: Vec<String> = strings(&[
            "clippy",
            "--package",
            "frameshift-pd",
            "--package",
            "frameshift-guest",
        ]);
        for package in &plan.firmware_only {
            firmware.push("--package".to_owned());
            firmware.push(package.clone());
        }
        firmware.extend(strings(&[
            "--target",
            "aarch64-unknown-none",
            "--",
            "-D",
            "warnings",
        ]));
        commands.push(firmware);
    }
    commands
}

fn lint_step(root: &Path, plan: &FirmwarePlan) -> StepResult {
    let step_start = Instant::now();
    let mut failed = Vec::new();
    for args in lint_commands(plan) {
        eprintln!("xtask: cargo {}", args.join(" "));
        let mut command = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
        command.args(&args).current_dir(root).stdin(Stdio::null());
        match command.status() {
            Ok(status) if status.success() => {}
            Ok(_) => failed.push(format!("cargo {}", args[..2].join(" "))),
            Err(error) => failed.push(format!("cannot run cargo: {error}")),
        }
    }
    let passed = failed.is_empty();
    StepResult {
        name: "lint",
        passed,
        detail: if passed {
            "rustfmt, clippy -D warnings (host, kernel, firmware)".to_owned()
        } else {
            format!("failed: {}; see the output above", failed.join(", "))
        },
        duration: step_start.elapsed(),
    }
}

fn cargo_test_step(
    root: &Path,
    plan: &FirmwarePlan,
    firmware: Option<&Firmware>,
    guest: Option<&GuestFiles>,
) -> StepResult {
    let step_start = Instant::now();
    let args = cargo_test_args(plan);
    eprintln!("xtask: cargo {}", args.join(" "));
    let mut command = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    command.args(&args).current_dir(root).stdin(Stdio::null());
    for (name, value) in firmware.map(Firmware::env_vars).unwrap_or_default() {
        command.env(name, value);
    }
    if let Some(guest) = guest {
        command.env(linux::GUEST_DIR_ENV, &guest.dir);
    }
    let (passed, detail) = match command.status() {
        Ok(status) if status.success() => (true, "all tests passed".to_owned()),
        Ok(status) => (
            false,
            format!("cargo test failed ({status}); see the output above"),
        ),
        Err(error) => (false, format!("cannot run cargo: {error}")),
    };
    StepResult {
        name: "cargo test",
        passed,
        detail,
        duration: step_start.elapsed(),
    }
}

fn model_check_step() -> StepResult {
    let step_start = Instant::now();
    eprintln!("xtask: model-checking the ownership core");
    let outcome = model_check::run_model_check();
    let (passed, detail) = (outcome.passed, outcome.line);
    StepResult {
        name: "model-check",
        passed,
        detail,
        duration: step_start.elapsed(),
    }
}

#[cfg(test)]
// A failed expectation in a test is the test failing, which is what panicking reports.
#[allow(clippy::expect_used, clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn excludes_firmware_only_crates() {
        let plan = FirmwarePlan {
            firmware_only: vec![
                "frameshift-pd-programs".to_owned(),
                "frameshift-vmm-pd".to_owned(),
            ],
            ..FirmwarePlan::default()
        };
        assert_eq!(
            cargo_test_args(&plan).join(" "),
            "test --workspace --no-fail-fast --exclude frameshift-pd-programs --exclude frameshift-vmm-pd"
        );
        assert_eq!(
            cargo_test_args(&FirmwarePlan::default()).join(" "),
            "test --workspace --no-fail-fast"
        );
    }

    #[test]
    fn lint_covers_the_host_the_kernel_and_every_firmware_crate() {
        let plan = FirmwarePlan {
            kernel: true,
            firmware_only: vec!["frameshift-pd-programs".to_owned(), "demo".to_owned()],
            ..FirmwarePlan::default()
        };
        let lines: Vec<String> = lint_commands(&plan)
            .iter()
            .map(|args| args.join(" "))
            .collect();
        assert_eq!(
            lines,
            [
                "fmt --all --check",
                "clippy --workspace --all-targets -- -D warnings",
                "clippy --package frameshift-hypervisor --features el2 --target aarch64-unknown-none-softfloat --bins -- -D warnings",
                "clippy --package frameshift-pd --package frameshift-guest --package frameshift-pd-programs --package demo --target aarch64-unknown-none -- -D warnings",
            ]
        );
    }

    #[test]
    fn summary_fails_if_any_step_failed() {
        let step = |name, passed| StepResult {
            name,
            passed,
            detail: String::new(),
            duration: Duration::from_secs(1),
        };
        let all_ok = summary(
            &[step("tools", true), step("cargo test", true)],
            Duration::from_secs(2),
        );
        assert!(all_ok.ends_with("xtask test: PASSED in 2s"), "{all_ok}");
        let one_failed = summary(
            &[step("tools", true), step("cargo test", false)],
            Duration::from_secs(2),
        );
        assert!(one_failed.contains("cargo test   FAILED"), "{one_failed}");
        assert!(
            one_failed.ends_with("xtask test: FAILED in 2s"),
            "{one_failed}"
        );
    }
}
