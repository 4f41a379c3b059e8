//! `cargo xtask linux`: make the Linux guest's files ready (fetch or find the cached Debian
//! packages, build the initramfs), say where they are, and with `--boot` boot them under plain
//! QEMU twice: once as it comes, once under `-icount shift=0,sleep=off` for the boot's figure in
//! virtual time (one nanosecond per instruction).

use std::time::Duration;

use super::{TaskError, TaskResult};
use crate::firmware;
use crate::install;
use crate::linux::{self, console, plain, GuestFiles};

/// `cargo xtask linux` options.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LinuxArgs {
    /// Ask the archive for the current versions even when some are pinned and cached.
    pub refresh: bool,
    /// Boot the guest under plain QEMU and print the figures.
    pub boot: bool,
}

/// What a plain boot showed, checked: the lines a test requires.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlainBootReport {
    /// PSCI's version.
    pub psci: (u32, u32),
    /// The SMC Calling Convention's version.
    pub smccc: (u32, u32),
    /// The kernel's clock at the init marker.
    pub init_marker: Duration,
    /// The CPUs `/init` counted.
    pub cpus: u32,
}

/// Checks a plain boot's console and exit: the kernel found PSCI and the SMCCC, reached
/// `/init` (whose lines name the expected kernel release and `cpus` CPUs), and powered off
/// with PSCI, which ends QEMU with status 0. Returns what it read, or what was missing.
pub fn check_plain_boot(
    outcome: &plain::PlainOutcome,
    files: &GuestFiles,
    cpus: u32,
) -> Result<PlainBootReport, String> {
    let text = &outcome.console;
    let fail = |what: &str| Err(format!("{what}; console:\n{text}"));
    if outcome.timed_out {
        return fail("the boot timed out");
    }
    if let Some(panic) = console::panic_line(text) {
        return fail(&format!("the kernel panicked: {panic}"));
    }
    let Some(psci) = console::psci_version(text) else {
        return fail("no `psci: PSCIv<x.y> detected` line");
    };
    let Some(smccc) = console::smccc_version(text) else {
        return fail("no `SMC Calling Convention v<x.y>` line");
    };
    let Some(init_marker) = console::init_marker_time(text) else {
        return fail("no timestamped init marker line");
    };
    if console::init_kernel_release(text) != Some(files.kernel_release.as_str()) {
        return fail(&format!(
            "/init did not report kernel {}",
            files.kernel_release
        ));
    }
    if console::init_cpu_count(text) != Some(cpus) || console::cpus_brought_up(text) != Some(cpus) {
        return fail(&format!("Linux did not bring up {cpus} CPUs"));
    }
    if !console::powered_down(text) || !outcome.status.success() {
        return fail(&format!(
            "no clean power-off (QEMU ended with {})",
            outcome.status
        ));
    }
    Ok(PlainBootReport {
        psci,
        smccc,
        init_marker,
        cpus,
    })
}

/// Runs the task.
pub fn linux(args: LinuxArgs) -> TaskResult {
    let root = firmware::workspace_root();
    let files = linux::prepare(&root, args.refresh)?;
    println!(
        "linux: kernel {} ({}), busybox {}",
        files.kernel_release, files.kernel_package, files.busybox_version
    );
    println!("linux: {}", files.vmlinuz.display());
    println!("linux: {}", files.initramfs.display());
    if !args.boot {
        return Ok(0);
    }
    install::ensure_qemu()?;
    for icount in [false, true] {
        let options = plain::PlainBoot {
            icount,
            ..plain::PlainBoot::default()
        };
        let outcome = plain::boot(&files.vmlinuz, &files.initramfs, &options)?;
        let report = check_plain_boot(&outcome, &files, options.cpus).map_err(TaskError::new)?;
        let clock = if icount {
            format!(
                "{} virtual ns = instructions under -icount shift=0,sleep=off",
                report.init_marker.as_nanos()
            )
        } else {
            format!("{:?} on the kernel's clock", report.init_marker)
        };
        println!(
            "linux: plain QEMU{}: PSCI {}.{}, SMCCC {}.{}, {} CPUs, init marker at {clock}; \
             powered off ({:.1}s wall)",
            if icount { " -icount" } else { "" },
            report.psci.0,
            report.psci.1,
            report.smccc.0,
            report.smccc.1,
            report.cpus,
            outcome.wall.as_secs_f64()
        );
    }
    Ok(0)
}
