//! QEMU scenario tests of protected VMs (issue 9): the demo of DESIGN.md 8 in both conversion
//! modes, the default system (`system.xml`), and the guest ABI checker.
//!
//! What they check, on the console only (DESIGN.md 8):
//! - the demo in each mode: every step's line in order, on both sides; the VMM's read after
//!   `MEM_UNSHARE` faults (the hypervisor's `fault pd=` line sits between the VMM's two lines);
//!   the buffer's frame is the same before and after; the guest is torn down, comes back
//!   zeroed, restarts from the clean image and passes again; `SYSTEM_OFF` of the guest stops
//!   only the VM; status 0 only at the end;
//! - the ABI checker in each mode: `failed=0` in both runs, the `FS_CONSOLE_WRITE` line, the
//!   forwarded calls, and the MMIO guard's abort.

use frameshift_tests::protocol::{self, position, position_starting, texts, HYPERVISOR};
use frameshift_tests::scenario;
use frameshift_vm_protocol::demo::PLAINTEXT;
use frameshift_xtask::console::HaltLine;
use frameshift_xtask::qemu::RunOutcome;

/// The guest runs each VMM makes: the first boot and one restart after a teardown.
const RUNS: usize = 2;

fn finished(run: &RunOutcome, domains: &[&str], by: &str) -> Result<HaltLine, String> {
    let halt = protocol::check(&run.console, domains)
        .map_err(|error| format!("{error}\nconsole:\n{}", run.console))?;
    if halt.status != 0 || run.exit_code() != 0 || halt.reason != "system-off" {
        return Err(format!(
            "expected a clean system-off, got {halt}; console:\n{}",
            run.console
        ));
    }
    assert_eq!(halt.field("by"), Some(by), "{}", run.console);
    Ok(halt)
}

fn count(lines: &[&str], prefix: &str) -> usize {
    lines.iter().filter(|line| line.starts_with(prefix)).count()
}

/// The first index of a line of `lines` starting with `prefix` at or after `from`.
fn find_from(lines: &[&str], from: usize, prefix: &str, console: &str) -> usize {
    match lines
        .iter()
        .skip(from)
        .position(|line| line.starts_with(prefix))
    {
        Some(offset) => from + offset,
        None => panic!("no line starting {prefix:?} after line {from}; console:\n{console}"),
    }
}

/// The demo's lines of `guest` (in `mode`) and its VMM `vmm`, for every run.
fn check_demo(console: &str, vmm: &str, guest: &str, mode: &str) {
    let guest_lines = texts(console, guest);
    let vmm_lines = texts(console, vmm);
    assert!(
        guest_lines
            .first()
            .is_some_and(|line| line.starts_with(&format!(
                "{mode} mode: demo_guest booted at EL1 with its MMU on, RAM 0x40000000..0x40200000"
            ))),
        "the guest's first line names its mode; console:\n{console}"
    );
    assert_eq!(count(&guest_lines, "FAIL"), 0, "{console}");
    let plaintext = std::str::from_utf8(PLAINTEXT).unwrap_or_default();
    let mut at = 0;
    for _ in 0..RUNS {
        for prefix in [
            &format!("{mode} mode: demo_guest booted"),
            "doorbell page 0xa000000 registered with MMIO_GUARD",
            "hypervisor: UID is (KVM's), FEATURES 0x29d 0x0 0x0 0x3000000, granule 4096 bytes",
            "step 1: buffer page at IPA 0x",
            "MEM_SHARE done: the hypervisor says shared with the VMM, reached at 0x",
            "the VMM wrote an encrypted frame into it",
            "step 2: MEM_UNSHARE",
            "the VMM's read of the page faulted, as it must",
            "step 3: FS_MEM_STATE",
            &format!("decrypted in place: \"{plaintext}\""),
            "step 4: sharing the page again",
            "the VMM read the plaintext at the same physical address",
            "demo passed (",
        ] {
            at = find_from(&guest_lines, at, prefix, console) + 1;
        }
    }
    // In split mode the shared view is the alias, bit 39: 0x80_4xxx_xxxx.
    let alias = if mode == "split" { "0x804" } else { "0x40" };
    let reached = guest_lines
        .iter()
        .find(|line| line.starts_with("MEM_SHARE done"))
        .map_or("", |line| line.rsplit(' ').next().unwrap_or(""));
    assert!(
        reached.starts_with(alias),
        "shared view {reached:?} in {mode} mode"
    );

    let mut at = 0;
    for run in 1..=RUNS {
        for prefix in [
            &format!("run {run}: vCPU 0 started at 0x40000000"),
            &format!("guest is demo_guest in {mode} mode"),
            &format!("step 1: the guest shared its buffer {alias}"),
            "wrote the ChaCha20-encrypted frame",
            "step 2: the guest unshared",
            "the read faulted",
            &format!("step 4: the guest shared {alias}"),
            "buffer frame before",
            "the guest reports 0 failed checks",
            "the guest stopped its VM (PSCI SYSTEM_OFF); the system runs on",
            &format!("run {run} passed"),
        ] {
            at = find_from(&vmm_lines, at, prefix, console) + 1;
        }
    }
    for line in vmm_lines
        .iter()
        .filter(|line| line.starts_with("buffer frame before"))
    {
        let words: Vec<&str> = line.split([' ', ',', ':']).collect();
        let before = words.get(3).copied().unwrap_or("?");
        let after = words.get(6).copied().unwrap_or("!");
        assert_eq!(before, after, "the frame moved: {line}");
        assert!(
            line.ends_with("the same physical page, nothing moved or was copied"),
            "{line}"
        );
    }
    for prefix in [
        "teardown: the VM stopped; its 512 pages came back into the window, every byte zero",
        "clean image (",
        "the window no longer reaches them",
        "audit: 0 violations",
        "all 2 runs passed",
    ] {
        assert_eq!(
            count(&vmm_lines, prefix),
            1,
            "{prefix}; console:\n{console}"
        );
    }
    // The hypervisor shows the VMM's faulting read, between the VMM's two lines about it.
    let read = position_starting(console, vmm, "step 2: the guest unshared");
    let fault = protocol::transcript_lines(console)
        .iter()
        .enumerate()
        .skip(read.unwrap_or(0))
        .find(|(_, line)| line.starts_with(&format!("FS|{HYPERVISOR}|fault pd={vmm} ")))
        .map(|(index, _)| index);
    let caught = position_starting(console, vmm, "the read faulted");
    assert!(
        matches!((read, fault, caught), (Some(a), Some(b), Some(c)) if a < b && b < c),
        "read {read:?}, fault {fault:?}, caught {caught:?}; console:\n{console}"
    );
}

#[test]
fn the_demo_runs_in_history_mode() -> Result<(), String> {
    let run = scenario::run("protected_demo_history")?;
    finished(&run, &["vmm", "guest"], "vmm")?;
    check_demo(&run.console, "vmm", "guest", "history");
    Ok(())
}

#[test]
fn the_demo_runs_in_split_mode() -> Result<(), String> {
    let run = scenario::run("protected_demo_split")?;
    finished(&run, &["vmm", "guest"], "vmm")?;
    check_demo(&run.console, "vmm", "guest", "split");
    Ok(())
}

#[test]
fn the_default_system_shows_both_modes_one_after_the_other() -> Result<(), String> {
    let system = frameshift_xtask::firmware::workspace_root().join("system.xml");
    let image = scenario::build_image(&system, "default-system-protected")?;
    let run = scenario::boot(&image)?;
    let domains = ["vmm_history", "guest_history", "vmm_split", "guest_split"];
    finished(&run, &domains, "vmm_split")?;
    let console = run.console.as_str();
    check_demo(console, "vmm_history", "guest_history", "history");
    check_demo(console, "vmm_split", "guest_split", "split");
    let handed_over = position(console, "vmm_history", "vmm: done; notifying channel 1");
    let split_starts = position_starting(console, "vmm_split", "run 1: vCPU 0 started");
    assert!(
        matches!((handed_over, split_starts), (Some(a), Some(b)) if a < b),
        "{console}"
    );
    Ok(())
}

#[test]
fn the_abi_checker_passes_in_both_modes() -> Result<(), String> {
    let run = scenario::run("protected_abi_check")?;
    let domains = ["vmm_history", "abi_history", "vmm_split", "abi_split"];
    finished(&run, &domains, "vmm_split")?;
    let console = run.console.as_str();
    for (vmm, guest, mode) in [
        ("vmm_history", "abi_history", "history"),
        ("vmm_split", "abi_split", "split"),
    ] {
        let guest_lines = texts(console, guest);
        assert_eq!(count(&guest_lines, "FAIL"), 0, "{console}");
        assert_eq!(
            count(
                &guest_lines,
                &format!("{mode} mode: abi_check booted at EL1 with its MMU on")
            ),
            RUNS
        );
        let verdicts: Vec<&&str> = guest_lines
            .iter()
            .filter(|line| line.starts_with("abi-check passed="))
            .collect();
        assert_eq!(verdicts.len(), RUNS, "{console}");
        assert!(
            verdicts.iter().all(|line| line.ends_with(" failed=0")),
            "{console}"
        );
        // FS_CONSOLE_WRITE reaches the console without the VMM.
        assert_eq!(count(&guest_lines, "console-write ok"), RUNS, "{console}");
        let vmm_lines = texts(console, vmm);
        let guard = "MMIO guard: the guest's access to unregistered 0xa001000 arrived as an abort";
        assert_eq!(count(&vmm_lines, guard), RUNS, "{console}");
        // Four HVCs and two SMCs per run reach the VMM, none the hypervisor or the firmware.
        assert_eq!(count(&vmm_lines, "forwarded HVC"), 4 * RUNS, "{console}");
        assert_eq!(count(&vmm_lines, "forwarded SMC"), 2 * RUNS, "{console}");
        assert_eq!(count(&vmm_lines, "all 2 runs passed"), 1, "{console}");
        assert!(
            vmm_lines
                .iter()
                .any(|line| line.starts_with("vCPU 1 turned itself off")),
            "{console}"
        );
    }
    Ok(())
}
