//! `cargo xtask run` through the real binary: it builds the firmware and the image, boots the
//! system in QEMU, streams the console to stdout and exits with the halt line's status.
//!
//! One test function on purpose: every run rebuilds the same firmware directory, and running
//! them one after another keeps the cargo invocations from queueing on its lock.
// A failed expectation in a test is the test failing, which is what panicking reports.
#![allow(clippy::expect_used, clippy::unwrap_used)]

mod support;

use std::path::Path;
use std::process::{Command, Output};

use frameshift_xtask::console;
use support::scratch_dir;

fn xtask_run(system: &Path, out: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(["run", "--timeout", "120", "--system"])
        .arg(system)
        .arg("--out")
        .arg(out)
        .output()
        .expect("run xtask")
}

#[test]
fn run_boots_streams_and_exits_with_the_halt_status() {
    let dir = scratch_dir();

    // A valid one-PD system: boots, prints, and halts.
    let system = dir.join("hello.xml");
    std::fs::write(
        &system,
        r#"<system>
    <protection_domain name="hello">
        <program_image path="hello.elf" />
    </protection_domain>
</system>
"#,
    )
    .expect("write system");
    let out = dir.join("out");
    let output = xtask_run(&system, &out);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let halt = console::find_halt(&stdout)
        .unwrap_or_else(|| panic!("no halt line on stdout:\n{stdout}\nstderr:\n{stderr}"));
    assert_eq!(
        output.status.code(),
        Some(halt.exit_code()),
        "{stdout}\n{stderr}"
    );
    assert_eq!(halt.status, 0, "{stdout}\n{stderr}");
    assert!(
        console::lines_of(&stdout, "hello").next().is_some(),
        "the PD printed: {stdout}"
    );
    assert!(out.join("frameshift.img").is_file());
    assert!(out.join("report.txt").is_file());
    assert!(stderr.contains("xtask: halt status=0"), "{stderr}");

    // An invalid system: the Microkit message, status 1, and QEMU never started.
    let invalid = dir.join("invalid.xml");
    std::fs::write(&invalid, "<system>\n    <protection_domain />\n</system>\n").expect("write");
    let output = xtask_run(&invalid, &dir.join("out-invalid"));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("xtask: error: Error: Missing required attribute 'name'"),
        "{stderr}"
    );
    assert!(!stderr.contains("booting"), "{stderr}");
    assert!(output.stdout.is_empty());
}
