//! Debian's own arm64 kernel (`linux-image-6.12-cloud-arm64`) and the busybox initramfs that
//! `cargo xtask linux` builds boot under plain QEMU, with no hypervisor (issue 12): the same
//! kernel the Linux VMM boots under Frameshift, so a failure there is Frameshift's, not the
//! guest's.
//!
//! Each boot must show Linux's own lines: PSCI's version, the SMC Calling Convention's version
//! (1.0: QEMU's firmware PSCI, so no vendor hypervisor calls and no `smccc: KVM:` line), both
//! CPUs up, `/init`'s markers, and `reboot: Power down`, after which PSCI `SYSTEM_OFF` ends
//! QEMU with status 0. The second boot runs under `-icount shift=0,sleep=off` and reports the
//! init marker's timestamp: virtual nanoseconds, one per instruction executed, from the
//! kernel's clock start to user space; half of the cost-of-virtualization ratio (README,
//! "Linux guests").

use std::sync::{Mutex, OnceLock};

use frameshift_xtask::firmware;
use frameshift_xtask::linux::{self, console, plain, GuestFiles};
use frameshift_xtask::tasks::linux::{check_plain_boot, PlainBootReport};

/// The guest's files: what `cargo xtask test` prepared, else fetched (or found cached) here.
fn guest_files() -> Result<&'static GuestFiles, String> {
    static FILES: OnceLock<Result<GuestFiles, String>> = OnceLock::new();
    FILES
        .get_or_init(|| match GuestFiles::from_env() {
            Some(files) => Ok(files),
            None => linux::prepare(&firmware::workspace_root(), false)
                .map_err(|error| error.to_string()),
        })
        .as_ref()
        .map_err(Clone::clone)
}

/// Boots the guest with `options` (one QEMU at a time: the machine is shared) and checks it.
fn boot(options: &plain::PlainBoot) -> Result<(PlainBootReport, String), String> {
    static QEMU: Mutex<()> = Mutex::new(());
    let files = guest_files()?;
    let _one_at_a_time = QEMU.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let outcome = plain::boot(&files.vmlinuz, &files.initramfs, options)
        .map_err(|error| format!("running QEMU: {error}"))?;
    let report = check_plain_boot(&outcome, files, options.cpus)?;
    Ok((report, outcome.console))
}

#[test]
fn debians_kernel_boots_to_init_and_powers_off_under_plain_qemu() -> Result<(), String> {
    let (report, text) = boot(&plain::PlainBoot::default())?;
    assert_eq!(report.psci, (1, 1), "QEMU 7.2's PSCI firmware is 1.1");
    assert_eq!(report.smccc, (1, 0), "QEMU's firmware says SMCCC 1.0");
    assert_eq!(report.cpus, 2);
    assert_eq!(
        console::kvm_services(&text),
        None,
        "no vendor hypervisor calls without a hypervisor: {text}"
    );
    Ok(())
}

#[test]
fn the_plain_boot_is_measured_in_instructions_under_icount() -> Result<(), String> {
    let options = plain::PlainBoot {
        icount: true,
        ..plain::PlainBoot::default()
    };
    let (report, _) = boot(&options)?;
    // A measurement, printed for the README's ratio; the checks above are the test.
    println!(
        "plain QEMU, -smp {} -icount shift=0,sleep=off: init marker at {} virtual ns (instructions)",
        options.cpus,
        report.init_marker.as_nanos()
    );
    Ok(())
}
