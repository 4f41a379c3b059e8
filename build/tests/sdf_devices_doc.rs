//! docs/SDF.md prints the table of QEMU virt's devices that the build tool enforces
//! (`frameshift_build::sdf::devices`); this keeps the two equal, row for row.
// A failed expectation in a test is the test failing, which is what panicking reports.
#![allow(clippy::expect_used)]

use std::path::PathBuf;

use frameshift_build::sdf::devices::{self, Device};

/// `0x0800_0000`: hexadecimal in groups of four digits, as the document writes addresses.
fn hex(value: u64) -> String {
    let digits = format!("{value:x}");
    let mut groups: Vec<&str> = Vec::new();
    let mut end = digits.len();
    while end > 4 {
        groups.push(&digits[end - 4..end]);
        end -= 4;
    }
    groups.push(&digits[..end]);
    groups.reverse();
    format!("0x{}", groups.join("_"))
}

fn row(device: &Device) -> String {
    format!(
        "| {} | {} | {} | {} | {} | {} |",
        device.name,
        hex(device.base),
        hex(device.size),
        if device.dma { "yes" } else { "no" },
        device.owner.word(),
        device.why
    )
}

#[test]
fn the_document_lists_exactly_the_devices_the_tool_enforces() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/SDF.md");
    let text = std::fs::read_to_string(&path).expect("read docs/SDF.md");
    let section = text
        .split_once("## 8. Devices of QEMU virt")
        .map(|(_, rest)| rest)
        .expect("docs/SDF.md has the devices section");
    let rows: Vec<&str> = section
        .lines()
        .skip_while(|line| !line.starts_with("| device |"))
        .skip(2)
        .take_while(|line| line.starts_with('|'))
        .collect();
    let expected: Vec<String> = devices::all().map(row).collect();
    assert_eq!(
        rows,
        expected,
        "docs/SDF.md section 8 must list these rows:\n{}",
        expected.join("\n")
    );
}

#[test]
fn hex_groups_digits_by_four() {
    assert_eq!(hex(0), "0x0");
    assert_eq!(hex(0x18), "0x18");
    assert_eq!(hex(0x0800_0000), "0x800_0000");
    assert_eq!(hex(0x80_0000_0000), "0x80_0000_0000");
}
