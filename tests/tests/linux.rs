//! An unmodified Linux boots under Frameshift's Linux VMM (issue 12): Debian's own arm64 kernel
//! (`linux-image-6.12-cloud-arm64`) with the busybox initramfs that `cargo xtask linux` builds,
//! in a non-protected VM with two vCPUs (tests/systems/linux.xml) and in a protected VM
//! (tests/systems/linux-protected.xml); and the same kernel under plain QEMU, with no
//! hypervisor, in the same run, so a failure under Frameshift is Frameshift's, not the guest's.
//!
//! Each boot must show Linux's own lines: PSCI's version, the SMC Calling Convention's version,
//! its CPUs up, `/init`'s markers and `reboot: Power down`. Under Frameshift Linux must also
//! find the hypervisor's vendor services (`smccc: KVM: hypervisor services detected`) with
//! exactly the FEATURES bits the ABI advertises, and its PSCI `SYSTEM_OFF` must stop the VM,
//! whose VMM then ends the system with status 0. Plain QEMU's firmware says SMCCC 1.0, so there
//! Linux makes no vendor calls.
//!
//! The last test boots the one-vCPU systems and plain QEMU (`-smp 1`) under
//! `-icount shift=0,sleep=off` and prints the init marker's timestamp for each: virtual
//! nanoseconds from the kernel's clock start to user space, one per instruction executed (by
//! the guest, the hypervisor and the VMM alike) while the CPU is busy. Their ratio is the cost of
//! virtualization the README gives; it is printed, never asserted.

use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use frameshift_abi::guest_call::features_bitmap;
use frameshift_build::image::{self, ImageInputs};
use frameshift_tests::protocol::{self, texts};
use frameshift_tests::scenario;
use frameshift_xtask::firmware;
use frameshift_xtask::linux::{self, console, plain, GuestFiles};
use frameshift_xtask::qemu::{self, QemuOptions, RunOutcome};
use frameshift_xtask::tasks::linux::{check_plain_boot, PlainBootReport};

/// The longest any one boot may take (wall time) before it counts as hung.
const TIMEOUT: Duration = Duration::from_secs(40);

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

/// One QEMU at a time: the machine is shared, and a timeout should measure a stuck boot, not a
/// queue.
fn one_at_a_time() -> MutexGuard<'static, ()> {
    static QEMU: Mutex<()> = Mutex::new(());
    QEMU.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Builds `tests/systems/<name>.xml` with the guest's files on the search path and boots it.
fn run_system(name: &str, icount: bool) -> Result<RunOutcome, String> {
    let files = guest_files()?;
    let firmware = scenario::firmware()?;
    let kernel = firmware.kernel().map_err(|error| error.to_string())?;
    let search_paths: Vec<PathBuf> = vec![firmware.programs_dir.clone(), files.dir.clone()];
    let system = scenario::system_path(name);
    let description = frameshift_build::sdf::parse_file(&system, &search_paths)
        .map_err(|error| error.to_string())?;
    let inputs = ImageInputs::new(kernel.to_owned(), search_paths);
    let built = image::build(&description, &inputs).map_err(|error| error.to_string())?;
    let suffix = if icount { "-icount" } else { "" };
    let written = built
        .write_to(&scenario::image_dir(&format!("{name}{suffix}")))
        .map_err(|error| error.to_string())?;
    let options = QemuOptions {
        timeout: Some(TIMEOUT),
        icount,
        ..QemuOptions::default()
    };
    let _one = one_at_a_time();
    let outcome = qemu::run(&written.image, &options).map_err(|error| error.to_string())?;
    if outcome.timed_out {
        return Err(format!(
            "{name} timed out after {TIMEOUT:?}; console so far:\n{}",
            outcome.console
        ));
    }
    Ok(outcome)
}

/// Boots the guest under plain QEMU with `options` and checks it.
fn plain_boot(options: &plain::PlainBoot) -> Result<(PlainBootReport, String), String> {
    let files = guest_files()?;
    let _one = one_at_a_time();
    let outcome = plain::boot(&files.vmlinuz, &files.initramfs, options)
        .map_err(|error| format!("running QEMU: {error}"))?;
    let report = check_plain_boot(&outcome, files, options.cpus)?;
    Ok((report, outcome.console))
}

/// What a boot under Frameshift showed, checked.
#[derive(Debug)]
struct VmBoot {
    /// The VM's console lines (Linux's), one per line.
    linux: String,
    /// The VMM's lines.
    vmm: Vec<String>,
    /// The init marker's printk timestamp.
    init_marker: Duration,
}

/// The four FEATURES words as Linux prints them: `x3 x2 x1 x0`.
fn advertised_features() -> [u32; 4] {
    let words = features_bitmap();
    [words[3], words[2], words[1], words[0]].map(|word| word as u32)
}

/// Checks a boot of a system whose VM is `linux` under the VMM `vmm`: a clean protocol, Linux's
/// own lines, `cpus` CPUs, the power-off, and the system ended by the VMM with status 0.
fn check_vm_boot(outcome: &RunOutcome, cpus: u32) -> Result<VmBoot, String> {
    let text = outcome.console.as_str();
    let fail = |what: &str| Err(format!("{what}; console:\n{text}"));
    let halt = match protocol::check(text, &["vmm", "linux"]) {
        Ok(halt) => halt,
        Err(error) => return fail(&error),
    };
    let linux = texts(text, "linux").join("\n");
    let vmm: Vec<String> = texts(text, "vmm").into_iter().map(str::to_owned).collect();
    if let Some(panic) = console::panic_line(&linux) {
        return fail(&format!("the kernel panicked: {panic}"));
    }
    if console::psci_version(&linux) != Some((1, 1)) {
        return fail("no `psci: PSCIv1.1 detected` line: the hypervisor serves PSCI 1.1");
    }
    match console::smccc_version(&linux) {
        Some(version) if version >= (1, 1) => {}
        _ => return fail("no `SMC Calling Convention v1.1` (or later) line"),
    }
    if console::kvm_services(&linux) != Some(advertised_features()) {
        return fail(&format!(
            "Linux did not report the advertised FEATURES words {:08x?}",
            advertised_features()
        ));
    }
    let Some(init_marker) = console::init_marker_time(&linux) else {
        return fail("no timestamped init marker line");
    };
    let files = guest_files()?;
    if console::init_kernel_release(&linux) != Some(files.kernel_release.as_str()) {
        return fail(&format!(
            "/init did not report kernel {}",
            files.kernel_release
        ));
    }
    if console::init_cpu_count(&linux) != Some(cpus)
        || console::cpus_brought_up(&linux) != Some(cpus)
    {
        return fail(&format!("Linux did not bring up {cpus} CPUs"));
    }
    if !console::powered_down(&linux) {
        return fail("no `reboot: Power down` line");
    }
    if !vmm
        .iter()
        .any(|line| line == "linux-vmm: the guest powered off (PSCI SYSTEM_OFF)")
    {
        return fail("the VMM did not see the guest's PSCI SYSTEM_OFF");
    }
    if halt.status != 0 || halt.reason != "system-off" || halt.field("by") != Some("vmm") {
        return fail("the VMM did not end the system with status 0");
    }
    if outcome.exit_code() != 0 {
        return fail(&format!("QEMU ended with {}", outcome.qemu_exit));
    }
    Ok(VmBoot {
        linux,
        vmm,
        init_marker,
    })
}

/// The VMM's `injected timer=.. sgi=.. uart=..; emulated mmio=.. sysreg=..` counts.
fn vmm_counts(vmm: &[String], key: &str) -> Option<u64> {
    let line = vmm
        .iter()
        .find(|line| line.starts_with("linux-vmm: injected "))?;
    line.split([' ', ';'])
        .filter_map(|part| part.split_once('='))
        .find(|(name, _)| *name == key)
        .and_then(|(_, value)| value.parse().ok())
}

/// The VMM's lines that report a read or a write of guest kernel memory, and whether each
/// faulted.
fn kernel_accesses(vmm: &[String], verb: &str) -> Vec<bool> {
    let prefix = format!("linux-vmm: {verb} guest kernel memory");
    vmm.iter()
        .filter(|line| line.starts_with(&prefix))
        .map(|line| line.contains(": faulted (esr="))
        .collect()
}

#[test]
fn linux_boots_in_a_non_protected_vm_with_two_vcpus_and_powers_off() -> Result<(), String> {
    let outcome = run_system("linux", false)?;
    let boot = check_vm_boot(&outcome, 2)?;
    let console = &outcome.console;
    assert!(
        boot.vmm
            .iter()
            .any(|line| line.ends_with("2 vCPU(s), a non-protected VM")),
        "{console}"
    );
    // The second CPU came up through PSCI CPU_ON and took interrupts: SGIs (IPIs) went through
    // the VMM's trapped ICC_SGI1R_EL1 path into list registers, and the timer ticked.
    assert!(
        boot.linux
            .contains("CPU1: Booted secondary processor 0x0000000001"),
        "{console}"
    );
    assert!(
        vmm_counts(&boot.vmm, "sgi").is_some_and(|sgis| sgis > 0),
        "{console}"
    );
    assert!(
        vmm_counts(&boot.vmm, "timer").is_some_and(|ticks| ticks > 0),
        "{console}"
    );
    assert!(
        vmm_counts(&boot.vmm, "mmio").is_some_and(|accesses| accesses > 0),
        "{console}"
    );
    // The UART's lines are the VM's own console lines, Linux's banner first.
    assert!(
        texts(console, "linux")
            .first()
            .is_some_and(|line| line.contains("Booting Linux on physical CPU 0x0000000000")),
        "{console}"
    );
    // A non-protected VM's memory is the VMM's to read: it never tried and faulted.
    assert_eq!(
        kernel_accesses(&boot.vmm, "reading"),
        Vec::<bool>::new(),
        "{console}"
    );
    assert!(!console.contains("FS|hypervisor|fault pd=vmm"), "{console}");
    Ok(())
}

#[test]
fn linux_boots_in_a_protected_vm_whose_memory_the_vmm_cannot_read() -> Result<(), String> {
    let outcome = run_system("linux-protected", false)?;
    let boot = check_vm_boot(&outcome, 1)?;
    let console = &outcome.console;
    assert!(
        boot.vmm
            .iter()
            .any(|line| line.ends_with("1 vCPU(s), a protected VM")),
        "{console}"
    );
    // Every page of its RAM went to the guest with its contents before it ran.
    assert!(
        boot.vmm.iter().any(|line| line
            == "linux-vmm: all 65536 pages donated to the guest with their contents; the VMM keeps none"),
        "{console}"
    );
    // The VMM read and wrote guest kernel memory through its window, before the boot and after
    // the power-off, and every access faulted; the hypervisor reports each as the VMM's fault.
    assert_eq!(
        kernel_accesses(&boot.vmm, "reading"),
        [true, true],
        "{console}"
    );
    assert_eq!(
        kernel_accesses(&boot.vmm, "writing"),
        [true, true],
        "{console}"
    );
    let window_faults = console
        .lines()
        .filter(|line| line.starts_with("FS|hypervisor|fault pd=vmm ipa=0x20000000 "))
        .count();
    // One more: the VMM's first probe, which told it the VM is protected.
    assert_eq!(window_faults, 5, "{console}");
    // Console, timer and interrupts still work for a guest with no pKVM driver.
    assert!(
        vmm_counts(&boot.vmm, "timer").is_some_and(|ticks| ticks > 0),
        "{console}"
    );
    assert!(
        vmm_counts(&boot.vmm, "mmio").is_some_and(|accesses| accesses > 0),
        "{console}"
    );
    Ok(())
}

#[test]
fn debians_kernel_boots_to_init_and_powers_off_under_plain_qemu() -> Result<(), String> {
    let (report, text) = plain_boot(&plain::PlainBoot::default())?;
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
fn the_cost_of_virtualization_in_instructions_under_icount() -> Result<(), String> {
    let options = plain::PlainBoot {
        cpus: 1,
        icount: true,
        ..plain::PlainBoot::default()
    };
    let (report, _) = plain_boot(&options)?;
    let plain_ns = report.init_marker.as_nanos();
    let up = check_vm_boot(&run_system("linux-up", true)?, 1)?;
    let protected = check_vm_boot(&run_system("linux-protected", true)?, 1)?;
    // Measurements, printed for the README; the boots' checks above are the test.
    println!(
        "-icount shift=0,sleep=off, 1 CPU, 256 MiB: init marker at (virtual ns = instructions)"
    );
    println!("  plain QEMU:                     {plain_ns}");
    for (name, boot) in [
        ("Frameshift, non-protected VM:", &up),
        ("Frameshift, protected VM:    ", &protected),
    ] {
        let ns = boot.init_marker.as_nanos();
        println!("  {name}   {ns} (x{:.3})", ns as f64 / plain_ns as f64);
    }
    Ok(())
}
