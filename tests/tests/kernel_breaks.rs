//! QEMU tests of the kernel's fixes for the isolation breaks found by attacking the running
//! system (issue 7): each boots a system built to break the rule and checks that it now holds.
//!
//! - A boot image whose boot information names a domain `hypervisor` is refused before anything
//!   runs, so no PD can print lines that look like the hypervisor's.
//! - A PD that notifies a higher-priority PD every 250 us cannot starve its equal-priority peer.
//! - A 16-bit T32 `wfi` trapped from EL0 resumes at the next instruction, not 4 bytes on.
//! - A parent blocked calling its own faulting child ends the run as a deadlock, not a success.

use std::mem::{offset_of, size_of};

use frameshift_abi::boot_info::{seal, DomainDesc, NAME_LEN};
use frameshift_tests::boot_info::{self, expected_refusal, find};
use frameshift_tests::protocol::{self, position, position_starting, texts, HYPERVISOR};
use frameshift_tests::scenario::{self, finished};
use frameshift_xtask::qemu::{QemuOptions, RunOutcome};

/// Builds and boots `tests/systems/<name>.xml`; `icount` makes counter time follow executed
/// instructions, so a run does not depend on host load.
fn run(name: &str, icount: bool) -> Result<RunOutcome, String> {
    scenario::run_with(
        name,
        QemuOptions {
            icount,
            ..QemuOptions::default()
        },
    )
}

/// Renames domain `index` of the boot-information `blob` to `name` and re-seals the CRC, so
/// only the hypervisor's field checks can catch it.
fn rename_domain(blob: &mut [u8], index: usize, name: &str) -> Option<()> {
    let header = boot_info::header(blob)?;
    let at = header.domains_offset as usize
        + index * size_of::<DomainDesc>()
        + offset_of!(DomainDesc, name);
    let field = blob.get_mut(at..at + NAME_LEN)?;
    field.fill(0);
    field
        .get_mut(..name.len())?
        .copy_from_slice(name.as_bytes());
    seal(blob);
    Some(())
}

#[test]
fn a_domain_renamed_hypervisor_in_the_boot_info_is_refused_before_anything_runs(
) -> Result<(), String> {
    let built = scenario::build(&scenario::system_path("hello"))?;
    let range =
        built.boot_info_offset_in_image..built.boot_info_offset_in_image + built.boot_info_len;
    assert_eq!(find(&built.image), Some(range.clone()));
    let mut bytes = built.image.clone();
    rename_domain(&mut bytes[range.clone()], 0, HYPERVISOR)
        .ok_or("the hello image has no domain 0 to rename")?;
    // The shared validator (the code the hypervisor runs) must refuse it, for its name.
    let expected = expected_refusal(&bytes[range])
        .ok_or("the validator accepts a domain named `hypervisor`")?;
    assert_eq!(
        expected,
        "FS|hypervisor|error boot-info: boot info refused: domain 0 field `name`: the name \
         'hypervisor' is reserved for the hypervisor's own console lines"
    );
    let dir = scenario::image_dir("renamed-hypervisor");
    std::fs::create_dir_all(&dir).map_err(|error| error.to_string())?;
    let image = dir.join("renamed.img");
    std::fs::write(&image, &bytes).map_err(|error| error.to_string())?;

    let run = scenario::boot(&image)?;
    let console = run.console.as_str();
    // No domain may speak at all: only the hypervisor's lines are allowed.
    let halt = finished(&run, &[], 2)?;
    assert_eq!(halt.reason, "bad-boot-info", "{console}");
    let lines = protocol::transcript_lines(console);
    assert!(lines.len() >= 2, "{console}");
    assert_eq!(lines[lines.len() - 2], expected, "{console}");
    // Nothing ran: no start line, no PD output (the PD would have printed "hello from ...").
    assert_eq!(
        position_starting(console, HYPERVISOR, "start "),
        None,
        "{console}"
    );
    assert!(!console.contains("hello from"), "{console}");
    Ok(())
}

#[test]
fn an_equal_priority_peer_finishes_while_a_pd_kicks_a_higher_priority_every_250us(
) -> Result<(), String> {
    let run = run("starvation", true)?;
    let console = run.console.as_str();
    // Before round robin kept budgets and queue places, the kicker kept the CPU for ever and
    // the peer never ran at all: the run timed out.
    let halt = finished(&run, &["kicker", "peer", "kicked"], 0)?;
    assert_eq!(halt.reason, "system-off", "{console}");
    assert_eq!(halt.field("by"), Some("peer"), "{console}");
    assert_eq!(halt.field("faults"), Some("0"), "{console}");
    let peer = texts(console, "peer");
    assert_eq!(peer.len(), 2, "{console}");
    assert_eq!(peer[0], "peer start", "{console}");
    // The kicking went on while the peer worked: the peer got its share under attack, not
    // after the attacker stopped.
    let kicks = peer[1]
        .strip_prefix("peer done rounds=8000000 kicks-while-working=")
        .and_then(|rest| rest.split(' ').next())
        .and_then(|count| count.parse::<u64>().ok())
        .ok_or_else(|| format!("no peer done line:\n{console}"))?;
    assert!(kicks > 0, "no kicks while the peer worked:\n{console}");
    let notifications = halt
        .field("notifications")
        .and_then(|count| count.parse::<u64>().ok());
    assert!(
        notifications.is_some_and(|count| count >= kicks),
        "{console}"
    );
    assert!(
        texts(console, "kicker")
            .first()
            .is_some_and(|line| line.starts_with("kicker start period=")),
        "{console}"
    );
    Ok(())
}

#[test]
fn a_16_bit_t32_wfi_trapped_from_el0_resumes_at_the_next_instruction() -> Result<(), String> {
    let run = run("thumb", false)?;
    let console = run.console.as_str();
    let halt = finished(&run, &["thumb"], 0)?;
    assert_eq!(halt.reason, "idle", "{console}");
    assert_eq!(halt.field("faults"), Some("0"), "{console}");
    // QEMU's cortex-a57 runs AArch32 at EL0 (ID_AA64PFR0_EL1.EL0 = 0b0010); without it the
    // check below could not be made, and the test fails rather than pass vacuously.
    assert_eq!(
        texts(console, "thumb"),
        [
            "thumb id_aa64pfr0_el1.el0=0x2",
            "thumb a64 wfi then 2 adds: x=2",
            // r0=1 would mean the hypervisor skipped 4 bytes over the 2-byte `wfi`, and with
            // them the first `adds`. EC 0x11: the SVC from AArch32 brought it back.
            "thumb t32 wfi then 2 adds: r0=2 back by svc esr_ec=0x11",
        ],
        "{console}"
    );
    Ok(())
}

#[test]
fn a_parent_blocked_calling_its_faulting_child_ends_as_a_deadlock_with_status_1(
) -> Result<(), String> {
    let run = run("deadlock", false)?;
    let console = run.console.as_str();
    // Before, nothing could run any more and the run still ended `status=0 reason=idle`.
    let halt = finished(&run, &["client", "faulting_server"], 1)?;
    assert_eq!(halt.reason, "deadlock", "{console}");
    assert_eq!(halt.field("faults"), Some("1"), "{console}");
    assert_eq!(halt.field("calls"), Some("1"), "{console}");
    assert_eq!(
        texts(console, "faulting_server"),
        [
            "faulting_server ready",
            "faulting_server call on channel 0 loads from 0x10000000"
        ],
        "{console}"
    );
    // The client never got a reply: it printed nothing.
    assert_eq!(texts(console, "client"), Vec::<&str>::new(), "{console}");
    let fault = position_starting(
        console,
        HYPERVISOR,
        "fault pd=faulting_server ipa=0x10000000 ",
    );
    let caller = position(
        console,
        HYPERVISOR,
        "blocked pd=client waits-for=faulting_server in=call",
    );
    let child = position(
        console,
        HYPERVISOR,
        "blocked pd=faulting_server waits-for=client in=fault",
    );
    let lines = protocol::transcript_lines(console);
    // The fault is reported first; the two blocked lines come right before the halt line.
    assert!(
        fault.is_some_and(|fault| lines[fault].ends_with(" to=client")),
        "{console}"
    );
    assert!(fault < caller, "{console}");
    assert_eq!(caller, Some(lines.len() - 3), "{console}");
    assert_eq!(child, Some(lines.len() - 2), "{console}");
    Ok(())
}
