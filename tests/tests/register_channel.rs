//! No register channel between domains (docs/ISOLATION.md, I9), on each CPU the hypervisor
//! supports: tests/systems/register_channel.xml runs four copies of `regchannel`, which fill
//! every EL1/EL0 register that holds data with a pattern and check it after other domains ran
//! (a notification to a higher-priority reader, and time-slice preemption between two equal
//! spinners). Every register the hypervisor refuses must be refused as UNDEFINED, with the PD
//! running on, from AArch64 EL1 and from AArch32 EL0. Each run prints `register channel cpu=<cpu> registers=<held> leaks=<n>`.
//!
//! vCPUs too: tests/systems/vcpu_arch.xml runs the `arch_check` guest, whose two vCPUs fill the
//! EL1 registers a guest owns (and the boot vCPU a list register) with complementary values and
//! re-check them while the other vCPU and the VMM (a PD) run in between, on each CPU. Each run
//! prints `register channel vcpu cpu=<cpu> registers=<n> leaks=<n> lr-leaks=<n>`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Mutex;

use frameshift_tests::protocol::{self, texts};
use frameshift_tests::scenario;
use frameshift_xtask::qemu::{Cpu, QemuOptions, RunOutcome};

const SYSTEM: &str = "register_channel";
const DOMAINS: [&str; 4] = ["reader", "writer", "spin_a", "spin_b"];

/// Registers that hold data on every supported CPU: each must be switched per domain
/// (hypervisor/src/arch/aarch64/context.rs, gic.rs; FPCR/FPSR lazily with FP; PSTATE fields
/// with the trap frame).
const HELD_EVERYWHERE: [&str; 32] = [
    "SCTLR_EL1",
    "CPACR_EL1",
    "TTBR0_EL1",
    "TTBR1_EL1",
    "TCR_EL1",
    "MAIR_EL1",
    "CONTEXTIDR_EL1",
    "TPIDR_EL1",
    "TPIDR_EL0",
    "TPIDRRO_EL0",
    "SP_EL0",
    "PAR_EL1",
    "CNTKCTL_EL1",
    "CSSELR_EL1",
    "CNTV_CVAL_EL0",
    "CNTV_CTL_EL0",
    "DAIF",
    "FPCR",
    "FPSR",
    "ICC_PMR_EL1",
    "ICC_BPR0_EL1",
    "ICC_BPR1_EL1",
    "ICC_CTLR_EL1",
    "ICC_IGRPEN0_EL1",
    "ICC_IGRPEN1_EL1",
    "ICC_AP0R0_EL1",
    "ICC_AP1R0_EL1",
    "ESR_EL1",
    "FAR_EL1",
    "ELR_EL1",
    "SPSR_EL1",
    "VBAR_EL1",
];

/// Registers that hold data only on `max` (FEAT_PAN, FEAT_UAO, FEAT_DIT, FEAT_SSBS, FEAT_SME,
/// FEAT_RAS).
const HELD_ON_MAX: [&str; 6] = ["PAN", "UAO", "DIT", "SSBS", "TPIDR2_EL0", "DISR_EL1"];

/// Registers QEMU 7.2 models as constants on every supported CPU (writes ignored): they carry
/// nothing. `ICC_SRE_EL1` is among them because QEMU does not implement the
/// `ICC_SRE_EL2.Enable` trap; the cortex-a57/a53 implementation-defined registers because it
/// does not implement `HCR_EL2.TIDCP`.
const FIXED_EVERYWHERE: [&str; 11] = [
    "AFSR0_EL1",
    "AFSR1_EL1",
    "AMAIR_EL1",
    "ICC_SRE_EL1",
    "L2CTLR_EL1",
    "L2ECTLR_EL1",
    "L2ACTLR_EL1",
    "CPUACTLR_EL1",
    "CPUECTLR_EL1",
    "CPUMERRSR_EL1",
    "L2MERRSR_EL1",
];

/// Constant only on `max` (FEAT_SME without priority support: RES0).
const FIXED_ON_MAX: [&str; 1] = ["SMPRI_EL1"];

/// Registers the hypervisor traps and refuses on every CPU where they exist (so `undef`, like
/// every register absent from the CPU); the test requires that each of them was probed.
const REFUSED: [&str; 26] = [
    "ACTLR_EL1",
    "ICC_SGI1R_EL1",
    "CNTP_CTL_EL0",
    "CNTP_CVAL_EL0",
    "MDSCR_EL1",
    "DBGBCR0_EL1",
    "DBGWVR0_EL1",
    "OSLAR_EL1",
    "OSDLR_EL1",
    "MDCCINT_EL1",
    "PMCR_EL0",
    "PMCNTENSET_EL0",
    "PMUSERENR_EL0",
    "PMCCNTR_EL0",
    "PMEVTYPER0_EL0",
    "APIAKEYLO_EL1",
    "APGAKEYHI_EL1",
    "SCXTNUM_EL0",
    "SCXTNUM_EL1",
    "LORSA_EL1",
    "ERRIDR_EL1",
    "ZCR_EL1",
    "SMCR_EL1",
    "SVCR",
    "SVE_RDVL",
    "PAUTH_PACGA",
];

/// What the writer must report for `register` on `cpu`.
fn expected_outcome(cpu: Cpu, register: &str) -> &'static str {
    let max = cpu == Cpu::Max;
    if HELD_EVERYWHERE.contains(&register) || (max && HELD_ON_MAX.contains(&register)) {
        "held"
    } else if FIXED_EVERYWHERE.contains(&register) || (max && FIXED_ON_MAX.contains(&register)) {
        "fixed"
    } else {
        "undef"
    }
}

/// The vCPU system and its domains.
const VCPU_SYSTEM: &str = "vcpu_arch";
const VCPU_DOMAINS: [&str; 2] = ["vmm", "guest"];

/// The image of `system`, built once per test binary.
fn image(system: &'static str) -> Result<PathBuf, String> {
    static IMAGES: Mutex<BTreeMap<&str, Result<PathBuf, String>>> = Mutex::new(BTreeMap::new());
    let mut images = IMAGES
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    images
        .entry(system)
        .or_insert_with(|| scenario::build_image(&scenario::system_path(system), system))
        .clone()
}

/// Boots the image on `cpu`, one QEMU at a time, with the scenario timeout.
fn boot(cpu: Cpu) -> Result<RunOutcome, String> {
    boot_system(SYSTEM, cpu)
}

/// Boots `system` on `cpu`, one QEMU at a time, with the scenario timeout.
fn boot_system(system: &'static str, cpu: Cpu) -> Result<RunOutcome, String> {
    let image = image(system)?;
    scenario::boot_with(
        &image,
        QemuOptions {
            cpu,
            ..QemuOptions::default()
        },
    )
}

/// The numeric `key=value` fields of `domain`'s summary line (the one starting with `prefix`),
/// if it printed exactly one.
fn summary(console: &str, domain: &str, prefix: &str) -> Option<BTreeMap<String, u64>> {
    let lines: Vec<&str> = texts(console, domain)
        .into_iter()
        .filter(|text| text.starts_with(prefix))
        .collect();
    let [line] = lines.as_slice() else {
        return None;
    };
    line.split(' ')
        .filter_map(|field| field.split_once('='))
        .map(|(key, value)| Some((key.to_owned(), value.parse().ok()?)))
        .collect()
}

fn check(cpu: Cpu) -> Result<(), String> {
    let run = boot(cpu)?;
    let console = run.console.as_str();
    let held = HELD_EVERYWHERE.len()
        + if cpu == Cpu::Max {
            HELD_ON_MAX.len()
        } else {
            0
        };

    let summaries = [
        summary(console, "reader", "reader "),
        summary(console, "writer", "writer "),
        summary(console, "spin_a", "spinner "),
        summary(console, "spin_b", "spinner "),
    ];
    // Printed before anything is asserted, so a failing run shows its count too; a copy that
    // printed no summary counts as absent here and fails below.
    let leaks: u64 = summaries
        .iter()
        .flatten()
        .filter_map(|fields| fields.get("leaks"))
        .sum();
    let checked = summaries[0]
        .as_ref()
        .and_then(|fields| fields.get("checked").copied())
        .unwrap_or(0);
    println!(
        "register channel cpu={} registers={checked} leaks={leaks}",
        cpu.qemu_name()
    );
    let [Some(reader), Some(writer), Some(spin_a), Some(spin_b)] = &summaries else {
        return Err(format!(
            "a copy printed no summary line: {summaries:?}\nconsole:\n{console}"
        ));
    };
    let leak_lines: Vec<&str> = DOMAINS
        .iter()
        .flat_map(|domain| texts(console, domain))
        .filter(|text| text.starts_with("leak "))
        .collect();
    assert!(
        leak_lines.is_empty(),
        "leaks: {leak_lines:#?}\nconsole:\n{console}"
    );
    assert_eq!(leaks, 0, "{console}");

    // Every copy checked every register that holds data on this CPU, and each one's value
    // differed from the writer's, so a register that was not switched could not have hidden.
    let held = held as u64;
    assert_eq!(reader.get("checked"), Some(&held), "{console}");
    assert_eq!(reader.get("distinct"), Some(&held), "{console}");
    assert_eq!(writer.get("checked"), Some(&held), "{console}");
    for fields in [spin_a, spin_b] {
        assert_eq!(fields.get("checked"), Some(&held), "{console}");
        // The other spinner ran while this one was between two checks.
        assert!(
            fields.get("interleavings").is_some_and(|&n| n >= 1),
            "{console}"
        );
    }

    // The writer's outcome for every register, as documented in docs/ISOLATION.md (I9).
    let outcomes: BTreeMap<&str, &str> = texts(console, "writer")
        .into_iter()
        .filter_map(|text| text.strip_prefix("reg "))
        .filter_map(|text| text.split_once(' '))
        .collect();
    let mut wrong = Vec::new();
    for (register, outcome) in &outcomes {
        let expected = expected_outcome(cpu, register);
        if *outcome != expected {
            wrong.push(format!("{register}: {outcome}, expected {expected}"));
        }
    }
    for register in HELD_EVERYWHERE
        .iter()
        .chain(&FIXED_EVERYWHERE)
        .chain(&HELD_ON_MAX)
        .chain(&FIXED_ON_MAX)
        .chain(&REFUSED)
    {
        if !outcomes.contains_key(register) {
            wrong.push(format!("{register}: not probed"));
        }
    }
    assert!(wrong.is_empty(), "{wrong:#?}\nconsole:\n{console}");

    // AArch32 EL0: TPIDRURW is TPIDR_EL0's low half (so switching TPIDR_EL0 covers it), and a
    // refused AArch32 access (CNTP_CTL, EC 0x03 at EL2) comes back as UNDEFINED (EC 0, IL 1)
    // at the AArch32 vector, VBAR_EL1 + 0x600.
    for line in [
        "aarch32 TPIDRURW wrote=0x13579bdf read=0x13579bdf ec=0x11 TPIDR_EL0=0x13579bdf",
        "aarch32 CNTP_CTL undef esr=0x2000000",
    ] {
        assert!(
            protocol::position(console, "writer", line).is_some(),
            "missing `{line}`; console:\n{console}"
        );
    }

    // Refused accesses left every PD running: nobody faulted or was stopped, and the run
    // ended idle with status 0 after time-slice preemptions.
    let halt = protocol::check(console, &DOMAINS)
        .map_err(|error| format!("{error}\nconsole:\n{console}"))?;
    assert_eq!((halt.status, run.exit_code()), (0, 0), "{console}");
    assert_eq!(halt.reason, "idle", "{console}");
    assert_eq!(halt.field("faults"), Some("0"), "{console}");
    assert_eq!(halt.field("stopped"), Some("0"), "{console}");
    let preemptions: u64 = halt
        .field("preemptions")
        .and_then(|value| value.parse().ok())
        .unwrap_or(0);
    assert!(preemptions >= 1, "{console}");
    Ok(())
}

#[test]
fn no_register_carries_data_between_domains_on_cortex_a57() -> Result<(), String> {
    check(Cpu::CortexA57)
}

#[test]
fn no_register_carries_data_between_domains_on_cortex_a53() -> Result<(), String> {
    check(Cpu::CortexA53)
}

#[test]
fn no_register_carries_data_between_domains_on_max() -> Result<(), String> {
    check(Cpu::Max)
}

/// The vCPU case: both runs of arch_check report every register held apart on both vCPUs, no
/// leak, no list-register leak, and the other vCPU and the VMM ran between checks.
fn check_vcpus(cpu: Cpu) -> Result<(), String> {
    let run = boot_system(VCPU_SYSTEM, cpu)?;
    let console = run.console.as_str();
    let lines: Vec<BTreeMap<String, u64>> = texts(console, "guest")
        .into_iter()
        .filter(|text| text.starts_with("registers "))
        .map(|text| {
            text.split(' ')
                .filter_map(|field| field.split_once('='))
                .map(|(key, value)| {
                    // `a,b` (one number per vCPU) counts as the smaller.
                    let number = value
                        .split(',')
                        .map(|part| part.parse::<u64>().unwrap_or(0))
                        .min()
                        .unwrap_or(0);
                    (key.to_owned(), number)
                })
                .collect()
        })
        .collect();
    let total = |key: &str| -> u64 {
        lines
            .iter()
            .map(|fields| fields.get(key).copied().unwrap_or(u64::MAX))
            .sum()
    };
    println!(
        "register channel vcpu cpu={} registers={} leaks={} lr-leaks={}",
        cpu.qemu_name(),
        lines
            .first()
            .and_then(|fields| fields.get("checked"))
            .copied()
            .unwrap_or(0),
        total("leaks"),
        total("lr-leaks"),
    );
    assert_eq!(
        lines.len(),
        2,
        "one registers line per run; console:\n{console}"
    );
    for fields in &lines {
        assert_eq!(fields.get("checked"), Some(&17), "{console}");
        assert_eq!(fields.get("distinct"), Some(&17), "{console}");
        assert_eq!(fields.get("leaks"), Some(&0), "{console}");
        assert_eq!(fields.get("lr-leaks"), Some(&0), "{console}");
        assert!(
            fields.get("interleavings").is_some_and(|&n| n >= 1),
            "{console}"
        );
        assert!(fields.get("vmm-runs").is_some_and(|&n| n >= 1), "{console}");
    }
    let halt = protocol::check(console, &VCPU_DOMAINS)
        .map_err(|error| format!("{error}\nconsole:\n{console}"))?;
    assert_eq!((halt.status, run.exit_code()), (0, 0), "{console}");
    assert_eq!(halt.reason, "system-off", "{console}");
    Ok(())
}

#[test]
fn no_register_carries_data_between_vcpus_on_cortex_a53() -> Result<(), String> {
    check_vcpus(Cpu::CortexA53)
}

#[test]
fn no_register_carries_data_between_vcpus_on_max() -> Result<(), String> {
    check_vcpus(Cpu::Max)
}
