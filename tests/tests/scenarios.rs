//! QEMU scenario tests: each boots one system of tests/systems/ (or the top-level system.xml),
//! reads the console and the halt status, and checks what every domain printed, line by line.
//! Each run has a 30 s timeout; a timeout fails the test.

use frameshift_tests::protocol::{self, position, position_starting, texts, HYPERVISOR};
use frameshift_tests::scenario::{self, finished};
use frameshift_xtask::console::HaltLine;

/// The halt line says why the run ended (`reason`, and `by` for a system-off) and counts what
/// happened; `expected` lists the counters this scenario fixes exactly.
fn halt_fields(halt: &HaltLine, console: &str, reason: &str, expected: &[(&str, &str)]) {
    assert_eq!(halt.reason, reason, "{console}");
    for (key, value) in expected {
        assert_eq!(
            halt.field(key),
            Some(*value),
            "halt field {key}; console:\n{console}"
        );
    }
}

/// `first` appears, and strictly before `second`.
fn before(console: &str, first: Option<usize>, second: Option<usize>, what: &str) {
    match (first, second) {
        (Some(a), Some(b)) if a < b => {}
        _ => panic!(
            "{what}: order wrong or line missing ({first:?}, {second:?}); console:\n{console}"
        ),
    }
}

#[test]
fn hello_prints_and_the_idle_system_halts_with_status_0() -> Result<(), String> {
    let run = scenario::run("hello")?;
    let halt = finished(&run, &["hello"], 0)?;
    halt_fields(
        &halt,
        &run.console,
        "idle",
        &[("faults", "0"), ("calls", "0")],
    );
    assert_eq!(
        texts(&run.console, "hello"),
        ["hello from hello"],
        "{}",
        run.console
    );
    Ok(())
}

#[test]
fn ping_and_pong_exchange_1000_notifications() -> Result<(), String> {
    let run = scenario::run("pingpong")?;
    let halt = finished(&run, &["ping", "pong"], 0)?;
    halt_fields(
        &halt,
        &run.console,
        "idle",
        &[("faults", "0"), ("notifications", "2000")],
    );
    assert_eq!(
        texts(&run.console, "ping"),
        [
            "ping start rounds=1000",
            "ping done sent=1000 received=1000"
        ],
        "{}",
        run.console
    );
    assert_eq!(
        texts(&run.console, "pong"),
        ["pong done received=1000 sent=1000"],
        "{}",
        run.console
    );
    Ok(())
}

#[test]
fn client_calls_the_higher_priority_server_with_message_registers() -> Result<(), String> {
    let run = scenario::run("ppc")?;
    let halt = finished(&run, &["client", "server"], 0)?;
    halt_fields(
        &halt,
        &run.console,
        "idle",
        &[("faults", "0"), ("calls", "3")],
    );
    let console = run.console.as_str();
    assert_eq!(
        texts(console, "server"),
        [
            "server ready",
            "server call=1 count=4 sum=10",
            "server call=2 count=4 sum=20",
            "server call=3 count=4 sum=30",
        ],
        "{console}"
    );
    assert_eq!(
        texts(console, "client"),
        [
            "client call=1 args=[1, 2, 3, 4] reply label=0x6 count=1 sum=10",
            "client call=2 args=[2, 4, 6, 8] reply label=0x6 count=1 sum=20",
            "client call=3 args=[3, 6, 9, 12] reply label=0x6 count=1 sum=30",
            "client done calls=3 correct=3",
        ],
        "{console}"
    );
    // The server handles each call while the client waits in it.
    for call in 1..=3 {
        let sum = 10 * call;
        before(
            console,
            position(
                console,
                "server",
                &format!("server call={call} count=4 sum={sum}"),
            ),
            position_starting(console, "client", &format!("client call={call} ")),
            "server reply before client sees it",
        );
    }
    Ok(())
}

#[test]
fn reads_of_other_domains_and_hypervisor_memory_fault_and_the_survivor_runs_on(
) -> Result<(), String> {
    let run = scenario::run("isolation")?;
    let halt = finished(&run, &["survivor", "attacker"], 0)?;
    halt_fields(&halt, &run.console, "idle", &[("faults", "3")]);
    let console = run.console.as_str();
    assert!(!console.contains("LEAKED"), "{console}");
    assert_eq!(
        texts(console, "attacker"),
        [
            "attacker read survivor-secret ipa=0x10000000 faulted ec=0x25 far=0x10000000",
            "attacker read hypervisor ipa=0x40100000 faulted ec=0x25 far=0x40100000",
            // Its read-only mapping of the same region: the read is allowed (the secret), the
            // write is a stage-2 permission fault (I2).
            "attacker read read-only-secret ipa=0x20000000 value=0x5ec2e75ec2e70001",
            "attacker write read-only-secret ipa=0x20000000 faulted ec=0x25 far=0x20000000",
        ],
        "{console}"
    );
    let write_fault = console
        .lines()
        .find(|line| line.starts_with("FS|hypervisor|fault pd=attacker ipa=0x20000000 "))
        .unwrap_or_default();
    assert!(
        write_fault.ends_with(" kind=permission"),
        "the write to the read-only mapping: {write_fault:?}\n{console}"
    );
    assert_eq!(
        texts(console, "survivor"),
        [
            "survivor secret written at 0x10000000",
            "survivor alive after attack secret=0x5ec2e75ec2e70001 intact=true",
        ],
        "{console}"
    );
    let written = position(console, "survivor", "survivor secret written at 0x10000000");
    let fault_secret = position_starting(console, HYPERVISOR, "fault pd=attacker ipa=0x10000000 ");
    let seen_secret = position_starting(console, "attacker", "attacker read survivor-secret ");
    let fault_hypervisor =
        position_starting(console, HYPERVISOR, "fault pd=attacker ipa=0x40100000 ");
    let seen_hypervisor = position_starting(console, "attacker", "attacker read hypervisor ");
    let alive = position_starting(console, "survivor", "survivor alive ");
    before(
        console,
        written,
        fault_secret,
        "secret written before the attack",
    );
    before(
        console,
        fault_secret,
        seen_secret,
        "hypervisor reports the fault first",
    );
    before(console, seen_secret, fault_hypervisor, "attacks in order");
    before(
        console,
        fault_hypervisor,
        seen_hypervisor,
        "hypervisor reports the fault first",
    );
    before(
        console,
        seen_hypervisor,
        alive,
        "survivor runs after the attacks",
    );
    // Exactly the three faults, all of the attacker.
    let faults: Vec<&str> = texts(console, HYPERVISOR)
        .into_iter()
        .filter(|text| text.starts_with("fault "))
        .collect();
    assert_eq!(faults.len(), 3, "{console}");
    for fault in faults {
        for key in ["esr=0x", "pc=0x", "kind="] {
            assert!(fault.contains(key), "fault line without {key}: {fault}");
        }
    }
    Ok(())
}

#[test]
fn a_spinning_pd_is_preempted_so_the_worker_finishes() -> Result<(), String> {
    let run = scenario::run("preemption")?;
    let halt = finished(&run, &["spinner", "worker"], 0)?;
    let console = run.console.as_str();
    halt_fields(
        &halt,
        console,
        "system-off",
        &[("by", "worker"), ("faults", "0")],
    );
    let preemptions = halt
        .field("preemptions")
        .and_then(|count| count.parse::<u64>().ok());
    // Each move the worker saw needs the CPU taken from the worker and then from the spinner.
    assert!(
        preemptions.is_some_and(|count| count >= 3),
        "too few preemptions: {console}"
    );
    assert_eq!(texts(console, "spinner"), ["spinner start"], "{console}");
    assert_eq!(
        texts(console, "worker"),
        ["worker start", "worker saw spinner run moves=3"],
        "{console}"
    );
    Ok(())
}

#[test]
fn fp_simd_registers_survive_preemption_by_other_domains() -> Result<(), String> {
    let run = scenario::run("fp")?;
    let domains = ["fpa", "fpb", "fpc"];
    let halt = finished(&run, &domains, 0)?;
    let console = run.console.as_str();
    halt_fields(&halt, console, "idle", &[("faults", "0"), ("stopped", "0")]);
    // The check means something only if the three loops were interleaved: each time slice ends
    // with another domain's FP/SIMD values loaded in the same registers.
    let preemptions = halt
        .field("preemptions")
        .and_then(|count| count.parse::<u64>().ok());
    assert!(
        preemptions.is_some_and(|count| count >= 3),
        "too few preemptions to interleave the checks: {console}"
    );
    let mut patterns = Vec::new();
    for domain in domains {
        let lines = texts(console, domain);
        assert_eq!(lines.len(), 1, "{domain}: {console}");
        let line = lines[0];
        assert!(
            line.starts_with("fpcheck done pattern=0x") && line.ends_with(" mismatches=0"),
            "{domain}: {line}"
        );
        patterns.push(line.to_owned());
    }
    // Distinct names give distinct patterns, so a leaked register would have been seen.
    patterns.sort();
    patterns.dedup();
    assert_eq!(patterns.len(), domains.len(), "{console}");
    Ok(())
}

#[test]
fn a_protected_guest_that_is_never_started_blocks_nobody() -> Result<(), String> {
    let run = scenario::run("unstarted_vm")?;
    let halt = finished(&run, &["vmm", "echo", "guest"], 0)?;
    let console = run.console.as_str();
    halt_fields(
        &halt,
        console,
        "idle",
        &[("faults", "0"), ("notifications", "2")],
    );
    assert_eq!(
        texts(console, "vmm"),
        ["vmm window guest_ram_vaddr=0x20000000", "vmm peer answered"],
        "{console}"
    );
    assert_eq!(
        texts(console, "echo"),
        ["echo ready", "echo notified by vmm count=1"],
        "{console}"
    );
    Ok(())
}

/// The bystander, a lower-priority PD, printed its line after `stopped pd=<crashed>`: one PD's
/// crash stopped that PD only.
fn bystander_runs_on(console: &str, crashed: &str, reason: &str) {
    let stopped = position(
        console,
        HYPERVISOR,
        &format!("stopped pd={crashed} reason={reason}"),
    );
    before(
        console,
        stopped,
        position(console, "bystander", "hello from bystander"),
        "the bystander runs on after the crashed PD is stopped",
    );
}

#[test]
fn a_refused_notify_panics_the_pd_which_alone_stops_and_the_run_fails_with_status_1(
) -> Result<(), String> {
    let run = scenario::run("panic")?;
    let halt = finished(&run, &["panicker", "bystander"], 1)?;
    let console = run.console.as_str();
    halt_fields(&halt, console, "idle", &[("faults", "0"), ("stopped", "1")]);
    let lines = texts(console, "panicker");
    assert_eq!(lines.len(), 2, "{console}");
    assert_eq!(
        lines[0],
        "panicker notifies channel 5, which it does not have"
    );
    // `panic at <file>:<line>: ...`, located at the caller's line, not inside the runtime.
    assert!(
        lines[1].starts_with("panic at pd/programs/src/bin/panicker.rs:")
            && lines[1].ends_with(": notify on channel 5 refused with status -3"),
        "{console}"
    );
    bystander_runs_on(console, "panicker", "panic");
    Ok(())
}

#[test]
fn a_stray_load_is_reported_and_the_runtime_stops_only_that_pd() -> Result<(), String> {
    let run = scenario::run("wild")?;
    let halt = finished(&run, &["wild", "bystander"], 1)?;
    let console = run.console.as_str();
    halt_fields(&halt, console, "idle", &[("faults", "1"), ("stopped", "1")]);
    let fault = position_starting(console, HYPERVISOR, "fault pd=wild ipa=0x10000000 ");
    // Vector 4 = synchronous, current EL with SP_ELx; ESR = EC 0x25, IL, FSC 0x10 (external
    // abort) as injected.
    let exception = position_starting(
        console,
        "wild",
        "unexpected exception vector=4 esr=0x96000010 elr=0x",
    );
    before(
        console,
        fault,
        exception,
        "hypervisor reports the fault first",
    );
    let lines = texts(console, "wild");
    assert_eq!(lines.len(), 2, "{console}");
    assert_eq!(lines[0], "wild loads from 0x10000000");
    assert!(lines[1].ends_with(" far=0x10000000"), "{console}");
    before(
        console,
        exception,
        position(console, HYPERVISOR, "stopped pd=wild reason=exception"),
        "the runtime stops the PD after printing the exception",
    );
    bystander_runs_on(console, "wild", "exception");
    Ok(())
}

#[test]
fn a_child_pd_fault_goes_to_its_parent_fault_handler() -> Result<(), String> {
    let run = scenario::run("child_fault")?;
    let halt = finished(&run, &["supervisor", "wild"], 0)?;
    let console = run.console.as_str();
    halt_fields(&halt, console, "idle", &[("faults", "1")]);
    // The child printed only its first line: the fault stopped it, nothing was injected.
    assert_eq!(
        texts(console, "wild"),
        ["wild loads from 0x10000000"],
        "{console}"
    );
    let fault = position_starting(console, HYPERVISOR, "fault pd=wild ipa=0x10000000 ");
    let fault_line = fault.map(|index| protocol::transcript_lines(console)[index]);
    assert!(
        fault_line.is_some_and(|line| line.ends_with(" to=supervisor")),
        "{console}"
    );
    let supervisor = texts(console, "supervisor");
    assert_eq!(supervisor.len(), 2, "{console}");
    assert_eq!(supervisor[0], "supervisor ready");
    // Label 1 = FAULT_STAGE2_ABORT with three registers: IPA, ESR_EL2, PC; the ESR and PC are
    // the ones the hypervisor reported, and the ESR is a data abort from a lower EL (EC 0x24).
    let (Some(reported), Some(handled)) = (
        fault_line,
        supervisor[1].strip_prefix("supervisor child=1 faulted label=1 count=3 ipa=0x10000000 "),
    ) else {
        return Err(format!(
            "fault line or handler line missing or wrong:\n{console}"
        ));
    };
    assert!(reported.contains(&format!(" {handled} ")), "{console}");
    let esr = handled
        .strip_prefix("esr=0x")
        .and_then(|rest| rest.split(' ').next())
        .and_then(|hex| u64::from_str_radix(hex, 16).ok());
    assert_eq!(esr.map(|esr| esr >> 26), Some(0x24), "{console}");
    before(
        console,
        fault,
        position_starting(console, "supervisor", "supervisor child=1 "),
        "hypervisor reports the fault before the parent handles it",
    );
    Ok(())
}

#[test]
fn a_fault_reply_restarts_the_child_at_the_faulting_instruction() -> Result<(), String> {
    let run = scenario::run("restart")?;
    let halt = finished(&run, &["restarter", "wild"], 0)?;
    let console = run.console.as_str();
    // Three replies, each followed by the retried load faulting again, then no reply.
    halt_fields(&halt, console, "idle", &[("faults", "4"), ("stopped", "0")]);
    // The restarts resumed the load itself, not the program: its first line appears once.
    assert_eq!(
        texts(console, "wild"),
        ["wild loads from 0x10000000"],
        "{console}"
    );
    let lines = protocol::transcript_lines(console);
    let faults: Vec<&str> = lines
        .iter()
        .filter_map(|line| line.strip_prefix("FS|hypervisor|fault pd=wild "))
        .collect();
    assert_eq!(faults.len(), 4, "{console}");
    // Every fault is the same load at the same PC, reported to the restarter.
    assert!(
        faults
            .iter()
            .all(|line| *line == faults[0] && line.ends_with(" to=restarter")),
        "{console}"
    );
    let pc = faults[0]
        .split(' ')
        .find_map(|field| field.strip_prefix("pc="))
        .ok_or_else(|| format!("no pc in the fault line:\n{console}"))?;
    let expected: Vec<String> = (1..=4)
        .map(|fault| {
            let verdict = if fault <= 3 {
                "restart"
            } else {
                "leave-stopped"
            };
            format!("restarter child=1 fault={fault} label=1 ipa=0x10000000 pc={pc} {verdict}")
        })
        .collect();
    let mut restarter = vec!["restarter ready restarts=3".to_owned()];
    restarter.extend(expected);
    assert_eq!(texts(console, "restarter"), restarter, "{console}");
    // No reply: the hypervisor says the child is stopped, after the last handler ran.
    before(
        console,
        position(console, "restarter", &restarter[4]),
        position(console, HYPERVISOR, "stopped pd=wild reason=parent"),
        "the child stops only once the restarter declines to reply",
    );
    Ok(())
}

#[test]
fn a_passive_server_serves_calls_and_a_notification() -> Result<(), String> {
    let run = scenario::run("passive")?;
    let halt = finished(&run, &["passive_client", "passive_server"], 0)?;
    let console = run.console.as_str();
    halt_fields(
        &halt,
        console,
        "idle",
        &[("faults", "0"), ("calls", "2"), ("notifications", "1")],
    );
    assert_eq!(
        texts(console, "passive_server"),
        [
            "passive_server ready passive=true",
            "passive_server call=1 sum=11",
            "passive_server call=2 sum=22",
            "passive_server notified channels=0x1 after calls=2",
        ],
        "{console}"
    );
    // The notification runs the higher-priority server at once, before the client goes on.
    assert_eq!(
        texts(console, "passive_client"),
        [
            "passive_client calls=2 correct=2",
            "passive_client notified"
        ],
        "{console}"
    );
    before(
        console,
        position(
            console,
            "passive_server",
            "passive_server notified channels=0x1 after calls=2",
        ),
        position(console, "passive_client", "passive_client notified"),
        "a notification runs the passive server on the notifier's behalf at once",
    );
    Ok(())
}
