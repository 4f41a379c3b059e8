//! `cargo xtask check FILE` through the real binary: `OK` and status 0, or the error message as
//! the first line of stdout and status 1.
// A failed expectation in a test is the test failing, which is what panicking reports.
#![allow(clippy::expect_used, clippy::unwrap_used)]

mod support;

use std::path::Path;
use std::process::Command;

use support::{check, stdout_lines, write_system};

#[test]
fn valid_system_prints_ok() {
    let path = write_system(
        "valid.system",
        r#"<?xml version="1.0" encoding="UTF-8"?>
<system>
    <protection_domain name="hello">
        <program_image path="hello.elf" />
    </protection_domain>
</system>
"#,
    );
    let output = check(&path);
    assert_eq!(stdout_lines(&output), vec!["OK"], "{output:?}");
    assert_eq!(output.status.code(), Some(0));
}

#[test]
fn invalid_system_prints_the_microkit_message_first() {
    let path = write_system(
        "missing_id.system",
        r#"<system>
    <protection_domain name="hello">
        <program_image path="hello.elf" />
    </protection_domain>
    <protection_domain name="world">
        <program_image path="world.elf" />
    </protection_domain>
    <channel>
        <end pd="hello" />
        <end pd="world" id="1" />
    </channel>
</system>
"#,
    );
    let output = check(&path);
    let expected = format!(
        "Error: Missing required attribute 'id' on element 'end': {}:9:9",
        path.display()
    );
    assert_eq!(stdout_lines(&output).first(), Some(&expected), "{output:?}");
    assert_eq!(output.status.code(), Some(1));
}

#[test]
fn unreadable_file_is_an_error_not_ok() {
    let path = Path::new(env!("CARGO_TARGET_TMPDIR")).join("xtask_check/does-not-exist.system");
    let output = check(&path);
    let lines = stdout_lines(&output);
    let first = lines.first().expect("an error line");
    assert!(
        first.starts_with("Error: cannot read system description"),
        "{first}"
    );
    assert_eq!(output.status.code(), Some(1));
}

/// The CLI and the conformance test agree on every Microkit fixture: `cargo xtask check`, run
/// beside the fixture with the prefill directory on its search path (as the expected messages
/// were produced), prints exactly the first line that the library (`sdf::parse_bytes`, which the conformance
/// test holds to Microkit's messages) gives.
#[test]
fn every_microkit_fixture_prints_the_conformance_first_line() {
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/microkit-sdf");
    let sdf_dir = fixtures.join("sdf");
    let prefills = fixtures.join("prefills");
    let mut names: Vec<String> = std::fs::read_dir(&sdf_dir)
        .expect("fixture directory")
        .map(|entry| {
            entry
                .expect("entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    names.sort();
    assert_eq!(names.len(), 143, "the Microkit tool has 143 fixtures");
    for name in names {
        let output = Command::new(env!("CARGO_BIN_EXE_xtask"))
            .current_dir(&sdf_dir)
            .args(["check", &name, "--search-path"])
            .arg(&prefills)
            .output()
            .expect("run xtask");
        let bytes = std::fs::read(sdf_dir.join(&name)).expect("read fixture");
        let library =
            frameshift_build::sdf::parse_bytes(&name, &bytes, std::slice::from_ref(&prefills));
        let (expected, status) = match library {
            Ok(_) => ("OK".to_owned(), 0),
            Err(error) => (error.first_line().to_owned(), 1),
        };
        let lines = stdout_lines(&output);
        assert_eq!(lines.first(), Some(&expected), "{name}: {output:?}");
        assert_eq!(output.status.code(), Some(status), "{name}");
    }
}
