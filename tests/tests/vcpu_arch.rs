//! What the AArch64 layer gives a vCPU, in QEMU (issue 9, the arch half): tests/systems/vcpu_arch.xml
//! runs the `arch_check` guest (guest_images/programs/src/bin/arch_check.rs) in a protected VM
//! with two vCPUs, twice, with a teardown and a restart in between. The guest checks from inside
//! and prints one line per part; each test below reads one part, in both runs, and the guest's
//! own count of failed checks must be 0.
//!
//! - its MMU turns on with its own stage 1 (`HCR_EL2.DC` clear): an unmapped VA is the guest's
//!   own EL1 translation fault, not a stage-2 fault for the VMM;
//! - the virtual timer fires as `FAULT_VM_VPPI` to the VMM, which injects INTID 27 through a
//!   list register and acknowledges the PPI; the guest takes the tick at its virtual CPU
//!   interface, three times per run polling with IRQs masked, and once more as an IRQ taken at
//!   its own vector;
//! - EL1 registers and list registers stay with their vCPU across the other vCPU and the VMM;
//! - the FP/SIMD registers a run leaves behind (`d31`) are not those the restarted guest finds.

use std::sync::OnceLock;

use frameshift_tests::protocol::{self, position, texts};
use frameshift_tests::scenario;
use frameshift_xtask::qemu::RunOutcome;

const SYSTEM: &str = "vcpu_arch";
const DOMAINS: [&str; 2] = ["vmm", "guest"];
/// The VMM runs the guest twice (protected_vmm `RUNS`).
const RUNS: usize = 2;
/// The registers arch_check fills on each vCPU.
const REGISTERS: u64 = 17;

/// The one boot every test reads.
fn run() -> Result<&'static RunOutcome, String> {
    static RUN: OnceLock<Result<RunOutcome, String>> = OnceLock::new();
    RUN.get_or_init(|| scenario::run(SYSTEM))
        .as_ref()
        .map_err(Clone::clone)
}

/// The guest's lines starting with `prefix`: one per run.
fn per_run<'a>(console: &'a str, prefix: &str) -> Vec<&'a str> {
    let lines: Vec<&str> = texts(console, "guest")
        .into_iter()
        .filter(|text| text.starts_with(prefix))
        .collect();
    assert_eq!(
        lines.len(),
        RUNS,
        "one `{prefix}` line per run; console:\n{console}"
    );
    lines
}

/// The numeric `key=value` fields of a line (a `a,b` value counts as its two numbers).
fn field(line: &str, key: &str) -> Vec<u64> {
    line.split(' ')
        .filter_map(|part| part.split_once('='))
        .filter(|(name, _)| *name == key)
        .flat_map(|(_, value)| value.split(',').map(|number| number.parse().ok()))
        .map(|number| number.unwrap_or(u64::MAX))
        .collect()
}

#[test]
fn both_runs_pass_and_the_system_ends_cleanly() -> Result<(), String> {
    let run = run()?;
    let console = run.console.as_str();
    for line in per_run(console, "arch-check ") {
        assert_eq!(field(line, "failed"), [0], "{console}");
        assert_eq!(field(line, "passed"), [24], "{console}");
    }
    assert!(
        !texts(console, "guest")
            .iter()
            .any(|text| text.starts_with("FAIL")),
        "{console}"
    );
    assert!(
        position(console, "vmm", "all 2 runs passed").is_some(),
        "{console}"
    );
    let halt = protocol::check(console, &DOMAINS)
        .map_err(|error| format!("{error}\nconsole:\n{console}"))?;
    assert_eq!((halt.status, run.exit_code()), (0, 0), "{console}");
    assert_eq!(halt.reason, "system-off", "{console}");
    assert_eq!(halt.field("by"), Some("vmm"), "{console}");
    Ok(())
}

#[test]
fn the_guest_mmu_is_its_own_stage_1() -> Result<(), String> {
    let console = run()?.console.as_str();
    for line in per_run(console, "history mode: arch_check booted") {
        assert!(line.contains("at EL1 with its MMU on"), "{console}");
    }
    // ESR_EL1 0x96000005: EC 0x25 (data abort at the same EL, the guest's EL1), IL, level-1
    // translation fault; FAR_EL1 the VA itself. With HCR_EL2.DC set the guest's stage 1 would
    // be off, the read a stage-2 fault, and the VMM would stop the guest.
    for line in per_run(console, "stage 1: ") {
        assert_eq!(
            line,
            "stage 1: VA 0x7000000000 is not in my tables: EL1 data abort esr=0x96000005 far=0x7000000000",
            "{console}"
        );
    }
    Ok(())
}

#[test]
fn the_virtual_timer_ticks_through_the_vmm() -> Result<(), String> {
    let console = run()?.console.as_str();
    for line in per_run(console, "timer: 3 ticks") {
        assert_eq!(
            line,
            "timer: 3 ticks of the virtual timer, each through the VMM (FAULT_VM_VPPI, inject, ack)",
            "{console}"
        );
    }
    // And once with IRQs unmasked: the listed interrupt is taken at the guest's IRQ vector.
    per_run(
        console,
        "timer: a tick taken as an IRQ at the guest's own vector",
    );
    // Each tick was a VM fault to the VMM (FAULT_VM_VPPI): the halt line counts them with the
    // guest's emulated console and doorbell accesses, so there are at least 3 per run.
    let halt = protocol::check(console, &DOMAINS)?;
    let faults: u64 = halt
        .field("faults")
        .and_then(|value| value.parse().ok())
        .unwrap_or(0);
    assert!(faults >= 3 * RUNS as u64, "{console}");
    Ok(())
}

#[test]
fn registers_and_list_registers_stay_with_their_vcpu() -> Result<(), String> {
    let console = run()?.console.as_str();
    for line in per_run(console, "registers ") {
        assert_eq!(field(line, "checked"), [REGISTERS], "{console}");
        // Every register held different values on the two vCPUs, so a missing switch shows.
        assert_eq!(field(line, "distinct"), [REGISTERS], "{console}");
        assert_eq!(field(line, "leaks"), [0], "{console}");
        assert_eq!(field(line, "lr-leaks"), [0], "{console}");
        let interleavings = field(line, "interleavings");
        assert!(
            interleavings.len() == 2 && interleavings.iter().all(|&n| n >= 1),
            "{console}"
        );
        let vmm_runs = field(line, "vmm-runs");
        assert!(
            vmm_runs.len() == 2 && vmm_runs.iter().all(|&n| n >= 1),
            "{console}"
        );
    }
    // The second vCPU started with PSCI CPU_ON and ended with CPU_OFF, in each run.
    let offs = texts(console, "vmm")
        .into_iter()
        .filter(|text| *text == "vCPU 1 turned itself off (PSCI CPU_OFF)")
        .count();
    assert_eq!(offs, RUNS, "{console}");
    Ok(())
}
