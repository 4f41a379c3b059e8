//! Hostile guest, hostile VMM, ToCToU, teardown/restart cycles and an attacker PD next to the VM,
//! in QEMU (issue 10): tests/systems/hostile.xml, one boot that every test below reads. The
//! kernel runs with `audit-every-conversion` (every firmware build): the full I1-I4 audit after
//! every accepted conversion and the I8 check after every refused one, halting on a violation.
//!
//! The runs, in order: a soak of [`SOAK_CALLS`] seeded random hypercalls; the VMM's attacks on
//! the guest's private pages; ToCToU; [`CYCLES`] teardown/restart cycles; semihosting `HLT`;
//! unregistered MMIO; a spin with interrupts masked while the attacker PD tries every guest IPA
//! and PA it can name. Each test prints the figures it checked on one line.

use std::sync::OnceLock;
use std::time::Duration;

use frameshift_tests::protocol::{self, texts};
use frameshift_tests::scenario;
use frameshift_vm_protocol::hostile::{Params, PLAN_ALL, TOCTOU_FAULTS};
use frameshift_xtask::qemu::RunOutcome;
use frameshift_xtask::tasks::audit;
use frameshift_xtask::tasks::hostile::{self, number};

const DOMAINS: [&str; 3] = ["vmm", "guest", "attacker"];
/// The soak's calls in this test (`cargo xtask soak` runs the CI's figure).
const SOAK_CALLS: u64 = 20_000;
/// Teardown/restart cycles.
const CYCLES: u64 = 100;
/// Runs: soak, attacks, ToCToU, the cycles, HLT, MMIO, spin.
const RUNS: u64 = 6 + CYCLES;
/// The split-mode run's soak and cycles.
const SPLIT_SOAK_CALLS: u64 = 10_000;
const SPLIT_CYCLES: u64 = 5;
/// Window pages (2 MiB of guest RAM).
const WINDOW_PAGES: u64 = 512;

fn run() -> Result<&'static RunOutcome, String> {
    static RUN: OnceLock<Result<RunOutcome, String>> = OnceLock::new();
    RUN.get_or_init(|| {
        let firmware = scenario::firmware()?;
        let params = Params {
            calls: SOAK_CALLS,
            seed: 0x1055_0010,
            cycles: CYCLES,
            plan: PLAN_ALL,
        };
        let dir = scenario::image_dir("hostile");
        let built = hostile::build(&hostile::system_path(), &params, firmware, &dir)
            .map_err(|error| error.to_string())?;
        let outcome = hostile::boot(&built.image, Duration::from_secs(240), false)
            .map_err(|error| error.to_string())?;
        let _ = std::fs::write(dir.join("console.txt"), &outcome.console);
        if outcome.timed_out {
            return Err(format!("timed out; console:\n{}", outcome.console));
        }
        Ok(outcome)
    })
    .as_ref()
    .map_err(Clone::clone)
}

/// The split-mode run: tests/systems/hostile_split.xml, a shorter plan.
fn split_run() -> Result<&'static RunOutcome, String> {
    static RUN: OnceLock<Result<RunOutcome, String>> = OnceLock::new();
    RUN.get_or_init(|| {
        let firmware = scenario::firmware()?;
        let params = Params {
            calls: SPLIT_SOAK_CALLS,
            seed: 0x5_9117,
            cycles: SPLIT_CYCLES,
            plan: PLAN_ALL,
        };
        let system = hostile::system_path().with_file_name("hostile_split.xml");
        let dir = scenario::image_dir("hostile_split");
        let built =
            hostile::build(&system, &params, firmware, &dir).map_err(|error| error.to_string())?;
        let outcome = hostile::boot(&built.image, Duration::from_secs(240), false)
            .map_err(|error| error.to_string())?;
        let _ = std::fs::write(dir.join("console.txt"), &outcome.console);
        if outcome.timed_out {
            return Err(format!("timed out; console:\n{}", outcome.console));
        }
        Ok(outcome)
    })
    .as_ref()
    .map_err(Clone::clone)
}

/// The one text of `domain` that starts with `prefix`.
fn one<'a>(console: &'a str, domain: &str, prefix: &str) -> &'a str {
    let found: Vec<&str> = texts(console, domain)
        .into_iter()
        .filter(|text| text.starts_with(prefix))
        .collect();
    assert_eq!(
        found.len(),
        1,
        "one `{prefix}` line of {domain}; console tail:\n{}",
        tail(console)
    );
    found[0]
}

fn field(text: &str, key: &str) -> u64 {
    number(text, key).unwrap_or_else(|| panic!("no {key}= in {text:?}"))
}

fn tail(console: &str) -> String {
    let lines: Vec<&str> = console.lines().collect();
    lines[lines.len().saturating_sub(60)..].join("\n")
}

#[test]
fn the_system_survives_every_run_and_ends_cleanly() -> Result<(), String> {
    let run = run()?;
    let console = run.console.as_str();
    let halt = protocol::check(console, &DOMAINS)
        .map_err(|error| format!("{error}\nconsole tail:\n{}", tail(console)))?;
    assert_eq!(
        (halt.status, halt.reason.as_str()),
        (0, "system-off"),
        "{}",
        tail(console)
    );
    assert_eq!(halt.field("stopped"), Some("0"));
    let runs = field(one(console, "vmm", "hostile-vmm runs="), "runs");
    assert_eq!(runs, RUNS);
    let failures: Vec<&str> = console
        .lines()
        .filter(|line| line.contains("FAIL"))
        .collect();
    assert!(failures.is_empty(), "{failures:#?}");
    assert!(!console.contains("audit violation"), "{}", tail(console));
    let audit = one(console, "vmm", "audit: ");
    assert!(audit.starts_with("audit: 0 violations"), "{audit}");
    println!("hostile: runs={runs} {audit} halt={halt}");
    Ok(())
}

#[test]
fn the_soak_makes_its_calls_and_finds_nothing() -> Result<(), String> {
    let console = run()?.console.as_str();
    let summary = one(console, "guest", "hostile soak calls=");
    let outcomes = one(console, "guest", "hostile soak outcomes");
    assert_eq!(field(summary, "calls"), SOAK_CALLS);
    assert_eq!(field(summary, "violations"), 0);
    assert_eq!(field(summary, "mismatches"), 0);
    // Liveness: legal calls were accepted and converted memory (each one audited).
    assert!(field(outcomes, "ok") > 0, "{outcomes}");
    assert!(field(summary, "audits") > 1, "{summary}");
    // Safety: refusals of every kind, forwarded ids and SMCs reached the VMM.
    for key in ["not-supported", "invalid", "smc", "random-ids"] {
        assert!(field(outcomes, key) > 0, "{key}: {outcomes}");
    }
    println!("hostile soak: {summary}; {outcomes}");
    Ok(())
}

#[test]
fn every_vmm_attack_faults_or_is_refused_and_the_secret_holds() -> Result<(), String> {
    let console = run()?.console.as_str();
    let guest = one(console, "guest", "hostile vmm-attacks");
    assert_eq!(field(guest, "wrong-codes"), 0, "{guest}");
    assert_eq!(field(guest, "mismatches"), 0, "{guest}");
    let vmm = one(console, "vmm", "hostile-vmm runs=");
    assert_eq!(field(vmm, "window-landed"), 0, "{vmm}");
    assert_eq!(field(vmm, "accepted-attacks"), 0, "{vmm}");
    // Every private page of the window, read and written: all faulted (the page the guest gave
    // back for the share-twice attack is the VMM's own and is skipped).
    let window_faults = field(vmm, "window-faults");
    assert_eq!(window_faults, 2 * (WINDOW_PAGES - 1), "{vmm}");
    let attacks: Vec<&str> = texts(console, "vmm")
        .into_iter()
        .filter(|text| text.starts_with("attack ") && text.contains("refused code="))
        .collect();
    assert_eq!(attacks.len() as u64, field(vmm, "refusals"), "{attacks:#?}");
    // Each attack refused with its code: INVALID_PARAMETER (-3) for the VMM calls it may make
    // but not on these pages or vCPUs, NOT_SUPPORTED (-1) for a guest call made by a PD.
    for (expected, code) in [
        ("vcpu-restart-outside-ram", -3),
        ("vcpu-write-x0-in-flight", -3),
        ("vcpu-read-pc", -3),
        ("inject-nonexistent-irq", -3),
        ("relinquish-for-the-guest", -1),
        ("share-twice", -3),
        ("donate-not-owned", -3),
        ("reclaim-live", -3),
        ("lend-not-owned", -3),
        ("share-not-owned", -3),
        ("unshare-not-shared", -3),
    ] {
        let wanted = format!("attack {expected}: refused code={code}");
        assert!(
            attacks.iter().any(|text| *text == wanted),
            "{wanted} missing: {attacks:#?}"
        );
    }
    println!(
        "hostile vmm-attacks: window-faults={window_faults} refusals={} {guest}",
        attacks.len()
    );
    Ok(())
}

#[test]
fn after_mem_unshare_returns_no_vmm_write_lands() -> Result<(), String> {
    let console = run()?.console.as_str();
    let guest = one(console, "guest", "hostile toctou");
    assert_eq!(field(guest, "changes"), 0, "{guest}");
    assert_eq!(field(guest, "late-writes"), 0, "{guest}");
    assert!(field(guest, "vmm-writes-landed") > 0, "{guest}");
    assert!(field(guest, "guest-reads") > 1000, "{guest}");
    let vmm = one(console, "vmm", "hostile-vmm toctou-landed=");
    assert_eq!(field(vmm, "toctou-faults"), TOCTOU_FAULTS, "{vmm}");
    assert_eq!(field(vmm, "toctou-late"), 0, "{vmm}");
    println!("hostile toctou: {guest}; {vmm}");
    Ok(())
}

#[test]
fn a_hundred_teardown_cycles_leak_nothing() -> Result<(), String> {
    let console = run()?.console.as_str();
    let cycles: Vec<&str> = texts(console, "guest")
        .into_iter()
        .filter(|text| text.starts_with("hostile cycle "))
        .collect();
    assert_eq!(cycles.len() as u64, CYCLES, "{}", tail(console));
    for cycle in &cycles {
        assert_eq!(field(cycle, "mismatches"), 0, "{cycle}");
        assert!(field(cycle, "pages-filled") > 100, "{cycle}");
    }
    let vmm = one(console, "vmm", "hostile-vmm zero-pages=");
    // Every run but the last is torn down, and every window page checked to be zero.
    assert_eq!(field(vmm, "zero-pages"), (RUNS - 1) * WINDOW_PAGES, "{vmm}");
    assert_eq!(field(vmm, "nonzero-pages"), 0, "{vmm}");
    assert_eq!(field(vmm, "count-drift"), 0, "{vmm}");
    // After every re-donation, the VMM's read and write of the page it had just written fault
    // (the donation invalidated the VMM's cached translation).
    assert_eq!(field(vmm, "donated-faults"), 2 * (RUNS - 1), "{vmm}");
    assert_eq!(field(vmm, "donated-landed"), 0, "{vmm}");
    println!("hostile cycles: {} cycles; {vmm}", cycles.len());
    Ok(())
}

#[test]
fn hlt_mmio_and_a_masked_spin_end_nothing_but_the_guest_run() -> Result<(), String> {
    let run = run()?;
    let console = run.console.as_str();
    // HLT #0xF000 is the guest's own undefined instruction (semihosting is off): its runtime
    // reports it, the VM powers off, and the system goes on.
    let hlt = protocol::position_starting(console, "guest", "hostile hlt").ok_or("no hlt run")?;
    let exception = protocol::position_starting(console, "guest", "exception sync")
        .ok_or("the HLT was not the guest's exception")?;
    assert!(exception > hlt);
    let vmm = one(console, "vmm", "hostile-vmm toctou-landed=");
    assert_eq!(field(vmm, "mmio-aborts"), 1, "{vmm}");
    let spin = one(console, "guest", "hostile spin");
    assert!(spin.contains("DAIF masked"), "{spin}");
    // The masked spin was taken off the CPU again and again, and the attacker PD ran then.
    assert!(field(spin, "descheduled") > 0, "{spin}");
    let attacker = protocol::position_starting(console, "attacker", "vm-attacker tries=")
        .ok_or("no attacker line")?;
    let spun =
        protocol::position_starting(console, "guest", "hostile spin").ok_or("no spin line")?;
    assert!(attacker < spun, "the attacker finished before the spin did");
    let halt = run.halt.as_ref().ok_or("no halt line")?;
    let preemptions: u64 = halt
        .field("preemptions")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    assert!(preemptions > 0, "{halt}");
    println!("hostile terminal runs: hlt, mmio-aborts=1, {spin}, preemptions={preemptions}");
    Ok(())
}

#[test]
fn the_attacker_pd_reads_nothing_of_the_guest() -> Result<(), String> {
    let console = run()?.console.as_str();
    let attacker = one(console, "attacker", "vm-attacker tries=");
    let tries = field(attacker, "tries");
    assert!(tries >= 2 * WINDOW_PAGES, "{attacker}");
    assert_eq!(field(attacker, "faults"), tries, "{attacker}");
    assert_eq!(field(attacker, "leaked"), 0, "{attacker}");
    let fault_lines = texts(console, "hypervisor")
        .into_iter()
        .filter(|text| text.starts_with("fault pd=attacker"))
        .count() as u64;
    assert_eq!(
        fault_lines, tries,
        "every try is a fault the hypervisor reported"
    );
    println!("hostile attacker: {attacker}");
    Ok(())
}

#[test]
fn split_mode_runs_every_task_with_the_same_verdicts() -> Result<(), String> {
    let run = split_run()?;
    let console = run.console.as_str();
    let halt = protocol::check(console, &DOMAINS)
        .map_err(|error| format!("{error}\nconsole tail:\n{}", tail(console)))?;
    assert_eq!(
        (halt.status, halt.reason.as_str()),
        (0, "system-off"),
        "{}",
        tail(console)
    );
    assert_eq!(halt.field("stopped"), Some("0"));
    assert!(
        texts(console, "guest")
            .iter()
            .any(|text| text.starts_with("hostile guest: task soak in split mode")),
        "{}",
        tail(console)
    );
    let failures: Vec<&str> = console
        .lines()
        .filter(|line| line.contains("FAIL"))
        .collect();
    assert!(failures.is_empty(), "{failures:#?}");
    assert!(!console.contains("audit violation"));
    let soak = one(console, "guest", "hostile soak calls=");
    assert_eq!(field(soak, "calls"), SPLIT_SOAK_CALLS);
    assert!(field(soak, "audits") > 1, "{soak}");
    assert_eq!(
        (field(soak, "violations"), field(soak, "mismatches")),
        (0, 0)
    );
    let vmm = one(console, "vmm", "hostile-vmm runs=");
    assert_eq!(field(vmm, "runs"), 6 + SPLIT_CYCLES);
    assert_eq!(field(vmm, "window-faults"), 2 * (WINDOW_PAGES - 1), "{vmm}");
    assert_eq!(
        (field(vmm, "window-landed"), field(vmm, "accepted-attacks")),
        (0, 0)
    );
    let toctou = one(console, "guest", "hostile toctou");
    assert_eq!(
        (field(toctou, "changes"), field(toctou, "late-writes")),
        (0, 0),
        "{toctou}"
    );
    let counts = one(console, "vmm", "hostile-vmm zero-pages=");
    for key in ["nonzero-pages", "count-drift", "donated-landed"] {
        assert_eq!(field(counts, key), 0, "{key}: {counts}");
    }
    let attacker = one(console, "attacker", "vm-attacker tries=");
    assert_eq!(field(attacker, "leaked"), 0, "{attacker}");
    println!("hostile split: {soak}; {vmm}; {toctou}; {counts}; {attacker}");
    Ok(())
}

#[test]
fn the_hosts_own_audit_of_the_kernels_dumps_finds_nothing_and_pictures_everything(
) -> Result<(), String> {
    let console = run()?.console.as_str();
    let out = scenario::image_dir("hostile").join("audit");
    let outcome = audit::audit_console(console, "hostile.xml", &out).map_err(|e| e.to_string())?;
    assert!(outcome.clean, "{}", outcome.line);
    // Three dumps: while the guest shares a page, the VMM's last call, and the halt.
    let dumps = audit::dump::parse(console).map_err(|e| e.to_string())?;
    assert_eq!(dumps.len(), 3, "{}", outcome.line);
    assert_eq!(
        dumps
            .iter()
            .map(|dump| dump.at.as_str())
            .collect::<Vec<_>>(),
        ["call", "call", "halt"]
    );
    let shared = &dumps[0];
    assert!(shared.frame_runs.iter().any(|run| run.state == "shared"));
    let holdings = std::fs::read_to_string(out.join("holdings.svg")).map_err(|e| e.to_string())?;
    for domain in &shared.domains {
        assert!(holdings.contains(&format!("id=\"domain-{}\"", domain.id)));
    }
    for map in &shared.maps {
        let key = format!("data-domain=\"{}\" data-ipa=\"{:#x}\"", map.domain, map.ipa);
        assert!(holdings.contains(&key), "{map:?} not pictured");
    }
    let timeline = std::fs::read_to_string(out.join("timeline.svg")).map_err(|e| e.to_string())?;
    // A row for every frame range an accepted conversion of the last dump's log named.
    let last = dumps.last().ok_or("no dump")?;
    for entry in last.log.iter().filter(|entry| entry.code == 0) {
        if let Some(pa) = entry.pa {
            assert!(
                timeline.contains(&format!("{pa:#x} \u{d7}")),
                "{entry:?} has no row"
            );
        }
    }
    println!("hostile audit: {}", outcome.line);
    Ok(())
}
